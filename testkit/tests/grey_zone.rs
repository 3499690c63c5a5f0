//! Hostile-network targets, measured in simulated time on the
//! grey-zone scenarios: partitions, heavy loss, slow members, split clusters,
//! two processes under one name. LAN defaults (1 ms ± 0.5 ms), default config.
//!
//! Every target is met. The variants too costly for every test run (more
//! seeds, N=1000 for 600 s) are `#[ignore]`d with the reason; run them with
//!
//! ```text
//! cargo test --release -p beethoven-testkit --test grey_zone -- --ignored --nocapture
//! ```
//!
//! Each has a `beethoven-sim` command that reproduces its figures (in its doc);
//! BENCHMARKS.md has today's figures, docs/benchmarks-log.md ("Grey zone") their history.

#![allow(clippy::print_stderr)] // the measured numbers are printed for the record

use std::time::Duration;

use beethoven_testkit::Formation;
use beethoven_testkit::metrics::percentile_f64;
use beethoven_testkit::report::{GreyFigures, Report};
use beethoven_testkit::scenario::{self, Params, ScenarioKind};

const SECOND: Duration = Duration::from_secs(1);

fn run(params: &Params) -> Report {
    scenario::run(params, &mut |_, _| {}).expect("the cluster forms")
}

fn grey(report: &Report) -> &GreyFigures {
    report
        .grey
        .as_ref()
        .expect("a grey-zone scenario reports its figures")
}

/// Heal → converged (identical trackers, everyone online everywhere) for a
/// third of `nodes` partitioned for `partition`, over `seeds`: (p50, p99).
fn partition_heal(nodes: usize, partition: Duration, seeds: u64) -> (f64, f64) {
    let times: Vec<f64> = (1..=seeds)
        .map(|seed| {
            let report = run(&Params {
                nodes,
                seed,
                partition: Some(partition),
                ..Params::new(ScenarioKind::Partition)
            });
            assert_eq!(report.violations, 0, "{:?}", report.first_violation);
            report.convergence_after_heal_s.unwrap_or(f64::INFINITY)
        })
        .collect();
    let p = |q| percentile_f64(&times, q).expect("runs");
    eprintln!(
        "a third of N={nodes} partitioned {partition:?}, {seeds} seeds: heal -> converged {times:?}"
    );
    (p(50.0), p(99.0))
}

/// `beethoven-sim --nodes 100 --scenario partition --partition-secs 30 --seeds 10`.
#[test]
fn a_third_of_100_nodes_partitioned_for_30s_converges_within_1s_of_the_heal_p99_over_10_seeds() {
    let (_, p99) = partition_heal(100, 30 * SECOND, 10);
    assert!(p99 <= 1.0, "p99 {p99:.3} s");
}

/// `beethoven-sim --nodes 100 --scenario partition --partition-secs 600 --seeds 10`.
#[test]
fn a_third_of_100_nodes_partitioned_for_600s_converges_within_1s_of_the_heal_p99_over_10_seeds() {
    let (_, p99) = partition_heal(100, 600 * SECOND, 10);
    assert!(p99 <= 1.0, "p99 {p99:.3} s");
}

/// `beethoven-sim --nodes 1000 --scenario partition --partition-secs 30 --seed 1`:
/// one seed in every test run (about a minute of CPU); all of them below.
#[test]
fn a_third_of_1000_nodes_partitioned_for_30s_converges_within_2s_of_the_heal() {
    let (_, p99) = partition_heal(1000, 30 * SECOND, 1);
    assert!(p99 <= 2.0, "p99 {p99:.3} s");
}

/// `beethoven-sim --nodes 1000 --scenario partition --partition-secs 30 --seeds 3`
/// and `--partition-secs 600`.
#[test]
#[ignore = "on demand: six runs at N=1000 take several minutes of CPU"]
fn a_third_of_1000_nodes_partitioned_for_30s_or_600s_converges_within_2s_of_the_heal() {
    for partition in [30 * SECOND, 600 * SECOND] {
        let (_, p99) = partition_heal(1000, partition, 3);
        assert!(p99 <= 2.0, "{partition:?}: p99 {p99:.3} s");
    }
}

/// `beethoven-sim --nodes 100 --scenario partition-retention --seeds 5`: a 2|3
/// split for 120 s with `offline_retention` 60 s, so each side has reaped the
/// other's rows when the network heals.
#[test]
fn a_two_three_split_that_outlasts_offline_retention_is_one_cluster_within_2s_of_the_heal() {
    for seed in 1..=5 {
        let report = run(&Params {
            seed,
            ..Params::new(ScenarioKind::PartitionRetention)
        });
        let took = report.convergence_after_heal_s;
        eprintln!(
            "2|3 split outlasting retention, N=100, seed {seed}: heal -> one cluster {took:?} s"
        );
        assert_eq!(report.violations, 0, "{:?}", report.first_violation);
        assert!(took.is_some_and(|t| t <= 2.0), "seed {seed}: {took:?}");
    }
}

/// `beethoven-sim --nodes 100 --scenario split-merge --seeds 5`.
#[test]
fn two_clusters_of_50_are_one_within_3s_of_reaching_each_other_through_one_seed() {
    for seed in 1..=5 {
        let report = run(&Params {
            seed,
            ..Params::new(ScenarioKind::SplitMerge)
        });
        let took = grey(&report).merged_after_s;
        eprintln!("two clusters of 50, seed {seed}: one cluster after {took:?} s");
        assert_eq!(report.violations, 0, "{:?}", report.first_violation);
        assert!(took.is_some_and(|t| t <= 3.0), "seed {seed}: {took:?}");
    }
}

/// 50 % loss on every datagram for 300 s at N=100, a node crashing silently
/// halfway: no healthy node declared offline, the crash offline everywhere
/// within 15 s, the cluster whole after the heal. Over `seeds`; returns the
/// detection times.
fn fifty_percent_loss(seeds: std::ops::RangeInclusive<u64>) -> Vec<f64> {
    let mut times = Vec::new();
    for seed in seeds {
        let report = run(&Params {
            seed,
            duration: 300 * SECOND,
            ..Params::new(ScenarioKind::Loss)
        });
        eprintln!(
            "50% loss, N=100, 300 s, seed {seed}: {} false offline, crash offline everywhere after {:?} s",
            report.false_offline, report.detection_p99_s
        );
        assert_eq!(
            report.false_offline, 0,
            "seed {seed}: {:?}",
            report.first_violation
        );
        assert_eq!(
            (report.detections, report.undetected),
            (1, 0),
            "seed {seed}"
        );
        assert!(
            report.detection_p99_s.is_some_and(|t| t <= 15.0),
            "seed {seed}"
        );
        assert_eq!(report.gate_violation, None, "seed {seed}");
        times.extend(report.detection_p99_s);
    }
    times
}

/// `beethoven-sim --nodes 100 --scenario loss --loss 0.5 --duration 300`: seed 1
/// only, so that `cargo test --workspace` stays short (a 300-s run at 50 % loss
/// takes 10–30 s on the 2-core machine); twenty seeds run in the
/// `..._over_20_seeds` variant, behind `--ignored`.
#[test]
fn fifty_percent_loss_declares_no_healthy_node_offline_and_a_silent_crash_is_offline_everywhere_within_15s()
 {
    fifty_percent_loss(1..=1);
}

/// `beethoven-sim --nodes 100 --scenario loss --loss 0.5 --duration 300 --seed S`
/// for S in 1–20 (about 10 min in release on the shared machine). Each crash
/// within the 15-s target, and the median near today's figure: 3.84 s, the
/// slowest 6.0 s. (Before exchanges and a death's sends were stretched by the
/// measured loss, a member the death's gossip missed waited for an exchange
/// at the plain interval: the slowest seed took 36 s.)
#[test]
#[ignore = "twenty 300-s runs at 50% loss: run with --release --ignored"]
fn fifty_percent_loss_declares_no_healthy_node_offline_and_a_silent_crash_is_offline_everywhere_within_15s_over_20_seeds()
 {
    let mut times = fifty_percent_loss(1..=20);
    times.sort_by(f64::total_cmp);
    let median = (times[9] + times[10]) / 2.0;
    eprintln!(
        "50% loss, 20 seeds: median {median:.2} s, slowest {:.2} s",
        times[19]
    );
    assert!(median <= 5.0, "{times:?}");
}

/// `beethoven-sim --nodes 100 --scenario slow --duration 300`: 8 members
/// receive every datagram 1–5 s late. No healthy member is declared offline,
/// and traffic stays within 3× quiet since answers to outdated news are limited
/// (`core/src/node/answers.rs`) and probes wait for members known to answer
/// late (`core/src/node/lateness.rs`): 2.24× (50.5× before). About 5 s wall.
#[test]
fn eight_slow_members_get_no_healthy_member_declared_offline_and_traffic_stays_within_3x_quiet() {
    let report = run(&Params {
        duration: 300 * SECOND,
        ..Params::new(ScenarioKind::Slow)
    });
    let g = grey(&report);
    eprintln!(
        "8 slow of N=100, 300 s: {} false offline, {:.2} msgs/node/s vs {:.2} quiet ({:.1}x), busiest node {:.1}/s",
        report.false_offline,
        report.msgs_per_node_s,
        g.quiet_msgs_per_node_s.unwrap_or(f64::NAN),
        g.msgs_ratio_to_quiet.unwrap_or(f64::NAN),
        g.max_node_msgs_per_s
    );
    assert_eq!(report.false_offline, 0, "{:?}", report.first_violation);
    assert_eq!(report.offline_writes_untouched, 0);
    assert!(g.msgs_ratio_to_quiet.is_some_and(|r| r <= 3.0), "{g:?}");
}

/// `beethoven-sim --nodes 100 --scenario slow --slow-crashes 2 --duration 300`:
/// what waiting for members known late costs (`core/src/node/lateness.rs`).
/// Two of the 8 slow members crash silently at 225 s, long after the cluster
/// learned they answer 1–5 s late: a probe of such a member waits
/// `MAX_PATIENCE` (10 s) before it fails, and its last-chance check as long
/// again, so each is offline everywhere after about 19 s (seeds 1–6:
/// 18.5–21.2 s), where a member not known late takes about 1 s. The bound
/// keeps the cost near that figure; no crash may go undetected, and no
/// healthy member offline.
#[test]
fn a_slow_member_known_late_that_crashes_is_offline_everywhere_within_22s() {
    let report = run(&Params {
        duration: 300 * SECOND,
        slow_crashes: 2,
        ..Params::new(ScenarioKind::Slow)
    });
    eprintln!(
        "8 slow of N=100, 2 of them crashed at 225 s: offline everywhere after {:?} s, {} false offline",
        report.detection_latencies_s, report.false_offline
    );
    assert_eq!((report.detections, report.undetected), (2, 0));
    assert_eq!(report.false_offline, 0, "{:?}", report.first_violation);
    assert!(
        report
            .detection_p99_s
            .is_some_and(|t| (15.0..=22.0).contains(&t)),
        "{:?}",
        report.detection_latencies_s
    );
}

/// `beethoven-sim --nodes 100 --scenario steady --duration 60` and
/// `--nodes 1000 --scenario steady --duration 60 --formation restore`: the
/// grey-zone fixes may cost at most 10% of steady traffic (437.0 and 458.7
/// B/node/s before them; N=1000 is restored here, 457.2 B/node/s, to keep the
/// test short).
#[test]
fn steady_traffic_at_100_and_1000_nodes_rises_at_most_10_percent_over_437_and_459_bytes() {
    for (nodes, formation, before) in [
        (100, Formation::Join, 437.0),
        (1000, Formation::Restore, 459.0),
    ] {
        let report = run(&Params {
            nodes,
            formation,
            ..Params::new(ScenarioKind::Steady)
        });
        eprintln!(
            "steady N={nodes}: {:.1} B/node/s (limit {:.1})",
            report.bytes_per_node_s,
            1.1 * before
        );
        assert_eq!(report.violations, 0, "{:?}", report.first_violation);
        assert!(report.bytes_per_node_s <= 1.1 * before, "N={nodes}");
    }
}

/// `beethoven-sim --nodes 100 --scenario name-conflict --seeds 5`: a second
/// process claims a live node's name at another address. Detected when any
/// node first reports `Event::NameConflict` (the two processes' handshake:
/// milliseconds after the second one's join); the growth is counted from there.
#[test]
fn two_live_processes_under_one_name_are_detected_within_5s_and_the_incarnation_then_grows_at_most_10_in_60s()
 {
    for seed in 1..=5 {
        let report = run(&Params {
            seed,
            ..Params::new(ScenarioKind::NameConflict)
        });
        let g = grey(&report);
        eprintln!(
            "name conflict, N=100, seed {seed}: detected after {:?} s, incarnation +{:?} in 60 s, {:?} address flips",
            g.conflict_detected_after_s, g.conflict_incarnation_growth_60s, g.conflict_addr_flips
        );
        assert_eq!(report.violations, 0, "{:?}", report.first_violation);
        assert_eq!(
            g.conflict_offline_writes,
            Some(0),
            "seed {seed}: the name's holder was written offline"
        );
        assert!(
            g.conflict_detected_after_s.is_some_and(|t| t <= 5.0),
            "seed {seed}"
        );
        assert!(
            g.conflict_incarnation_growth_60s.is_some_and(|g| g <= 10),
            "seed {seed}"
        );
    }
}
