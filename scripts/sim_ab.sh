#!/bin/sh
# Compares two beethoven-sim binaries on one scenario, interleaved (A, B, A, B, ...)
# so machine load hits both alike; prints each run's CPU time (user + sys, the
# figure that load disturbs least), wall time, the window's wall time and the
# trace hash (which must match when the change is not meant to alter behaviour).
#
#   scripts/sim_ab.sh BEFORE AFTER [ROUNDS] -- SIM ARGS
#   scripts/sim_ab.sh /tmp/before/beethoven-sim target/release/beethoven-sim 2 -- \
#       --nodes 10000 --scenario steady --duration 60 --seed 1
set -eu
a=$1; b=$2; rounds=${3:-2}
shift 3 2>/dev/null || shift 2
[ "${1:-}" = "--" ] && shift
out=$(mktemp -d)
printf '%-6s %-7s %9s %9s %9s %10s  %s\n' round binary cpu_s wall_s window_s maxrss_mb trace_hash
for round in $(seq "$rounds"); do
  for side in A B; do
    if [ "$side" = A ]; then bin=$a; else bin=$b; fi
    /usr/bin/time -f '%U %S %e %M' -o "$out/time" "$bin" "$@" > "$out/report" 2>/dev/null
    read -r user sys wall rss < "$out/time"
    window=$(awk '/^window s \(wall\)/ {print $4}' "$out/report")
    hash=$(awk '/^trace hash/ {print $3}' "$out/report")
    cpu=$(echo "$user + $sys" | bc)
    printf '%-6s %-7s %9s %9s %9s %10s  %s\n' "$round" "$side" "$cpu" "$wall" "$window" "$((rss / 1024))" "$hash"
  done
done
rm -r "$out"
