#!/usr/bin/env bash
# Runs the driver's tests (the node's thread), both runtime suites and the
# examples' tests RUNS times in a row (default 20)
# with a busy loop on every core beside them, and stops at the first failure.
# Tests that pass only on an idle machine have a race or a timing assumption: this
# is how to find them. Not part of CI (it takes long and loads the whole machine).
#
#   scripts/stress_tests.sh            # 20 rounds
#   RUNS=3 scripts/stress_tests.sh     # a quick look
#   BUSY=0 scripts/stress_tests.sh     # no busy loops (a baseline)
#
# Each round runs the already-built test binaries (built once, first), so the
# rounds measure the tests, not the compiler. Failing output is kept in
# target/stress/round-N.log.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-20}"
BUSY="${BUSY:-$(nproc)}"
JOBS="${JOBS:-2}"
LOGS=target/stress
mkdir -p "$LOGS"

suites=(-p beethoven-driver -p beethoven-tokio -p beethoven-smol -p beethoven-examples)
echo "== building the test binaries (cargo test --no-run ${suites[*]})"
cargo test -j "$JOBS" --no-run "${suites[@]}" 2>&1 | tail -n 3

busy_pids=()
stop_busy() {
  for pid in "${busy_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
}
trap stop_busy EXIT
for _ in $(seq 1 "$BUSY"); do
  # A plain busy loop, one per core, at normal priority.
  ( while :; do :; done ) &
  busy_pids+=("$!")
done
echo "== $RUNS rounds, $BUSY busy loops beside them"

started=$(date +%s)
for round in $(seq 1 "$RUNS"); do
  log="$LOGS/round-$round.log"
  t0=$(date +%s)
  if cargo test -j "$JOBS" "${suites[@]}" >"$log" 2>&1; then
    passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s}')
    echo "round $round/$RUNS: ok ($passed tests, $(( $(date +%s) - t0 )) s)"
    rm -f "$log"
  else
    echo "round $round/$RUNS: FAILED after $(( $(date +%s) - t0 )) s; output in $log:"
    grep -E 'panicked|FAILED|failures:' "$log" | head -n 20
    exit 1
  fi
done
echo "$RUNS passed, 0 failed: $RUNS rounds in $(( $(date +%s) - started )) s with $BUSY busy loops"
