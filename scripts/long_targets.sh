#!/usr/bin/env bash
# Runs every `#[ignore]`d target of the testkit, one after another, in release
# (they are the long ones: the 20-seed 50 %-loss run, the N=1000 partitions,
# the N=10,000 steady run, the larger property sweep), and prints each one's
# wall time and result. Stops at the first failure (non-zero exit).
#
#   scripts/long_targets.sh              # all of them (the N=10,000 one needs ~13 GB)
#   SKIP_10K=1 scripts/long_targets.sh   # all but the N=10,000 steady run
#   ONLY=grey_zone scripts/long_targets.sh   # one test file's
#
# Time on the 2-core machine and what each run gave: BENCHMARKS.md, "Long targets".
set -euo pipefail
cd "$(dirname "$0")/.."

# test file : test name (every #[ignore] in testkit/tests).
targets=(
  "grey_zone:fifty_percent_loss_declares_no_healthy_node_offline_and_a_silent_crash_is_offline_everywhere_within_15s_over_20_seeds"
  "grey_zone:a_third_of_1000_nodes_partitioned_for_30s_or_600s_converges_within_2s_of_the_heal"
  "targets:steady_traffic_at_10000_nodes_is_at_most_1kb_and_within_1_2x_of_10_nodes"
  "properties:random_fault_schedules_on_larger_clusters_keep_every_invariant"
  "hostile:brownouts_declare_no_healthy_node_offline_over_10_seeds"
  "hostile:bursts_of_70_percent_loss_declare_no_healthy_node_offline_over_10_seeds"
  "hostile:a_tenth_of_1000_nodes_failing_at_once_is_offline_everywhere_within_2s_p99"
  "hostile:a_silent_crash_at_100_nodes_is_offline_everywhere_in_1_2s_p50_and_1_5s_p99_over_120_crashes"
  "hostile:eight_or_sixteen_slow_members_at_100_300_1000_nodes_over_20_seeds"
  "user_events:at_1000_nodes_one_event_reaches_every_node_within_300_ms"
  "user_events:at_1000_nodes_and_ten_events_a_second_each_node_receives_at_most_two_copies"
  "user_events:at_100_nodes_and_50_percent_loss_for_300_s_999_per_mille_arrive_within_10_s_all_within_60_s_with_no_false_offline"
  "user_events:one_node_flooding_1000_events_a_second_leaves_the_others_delivery_as_it_was"
  "user_events:every_node_sending_5_events_a_second_leaves_silent_crash_detection_p99_within_10_percent"
)

# Every ignored test must be listed here: one added without it is an error.
listed=$(printf '%s\n' "${targets[@]}" | cut -d: -f2 | sort)
found=$(grep -h -A3 '#\[ignore' testkit/tests/*.rs | grep -o 'fn [a-z0-9_]*' | cut -c4- | sort)
if [ "$listed" != "$found" ]; then
  echo "long_targets.sh: the ignored tests in testkit/tests differ from this script's list:" >&2
  diff <(echo "$listed") <(echo "$found") >&2 || true
  exit 2
fi

echo "== building (cargo test --release -p beethoven-testkit --no-run)"
nice -n 10 cargo test --release -q -p beethoven-testkit --no-run 2>&1 | tail -n 3
started=$(date +%s)
for target in "${targets[@]}"; do
  file=${target%%:*}
  name=${target#*:}
  if [ -n "${ONLY:-}" ] && [ "$ONLY" != "$file" ]; then continue; fi
  if [ -n "${SKIP_10K:-}" ] && [[ "$name" == *10000* ]]; then
    echo "-- skipped (SKIP_10K): $file::$name"
    continue
  fi
  echo "== $file::$name"
  t0=$(date +%s)
  nice -n 10 cargo test --release -q -p beethoven-testkit --test "$file" -- --ignored --exact "$name" --nocapture
  echo "-- passed in $(( $(date +%s) - t0 )) s: $file::$name"
done
echo "== every long target passed in $(( $(date +%s) - started )) s"
