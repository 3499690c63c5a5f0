#!/bin/sh
# Screenshots of `beethoven-sim --report` pages for the README: a partition and
# crashes on 100 simulated nodes, drawn and photographed by headless Chromium
# into docs/img/report-partition.png and docs/img/report-crash.png.
#
#   scripts/report_screenshots.sh
#
# The browser is $STATUS_PAGE_BROWSER, or the first of chromium-headless-shell,
# chromium, chromium-browser on PATH (apt-get install chromium-headless-shell).
set -eu
cd "$(dirname "$0")/.."
browser="${STATUS_PAGE_BROWSER:-}"
for candidate in chromium-headless-shell chromium chromium-browser; do
  [ -n "$browser" ] && break
  browser="$(command -v "$candidate" || true)"
done
[ -n "$browser" ] || { echo "no Chromium: set STATUS_PAGE_BROWSER or apt-get install chromium-headless-shell" >&2; exit 1; }
cargo build --release -q -p beethoven-testkit --bin beethoven-sim
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p docs/img
for scenario in partition crash; do
  ./target/release/beethoven-sim --nodes 100 --scenario "$scenario" --report "$scratch/$scenario.html" >/dev/null
  # The summary and the timeline; for crashes the detection CDF too (the
  # traffic charts follow below on the page).
  height=1280
  [ "$scenario" = crash ] && height=1620
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$scratch/profile" --window-size="1180,$height" \
    --screenshot="docs/img/report-$scenario.png" "file://$scratch/$scenario.html" 2>/dev/null
  echo "docs/img/report-$scenario.png: $(wc -c < "docs/img/report-$scenario.png") bytes"
done
