//! Regression bounds: every figure README.md and BENCHMARKS.md publish, held
//! near today's value, exact seeds. These are not the targets (`targets.rs`,
//! `grey_zone.rs` hold those, with their own, looser bounds): they make a
//! slower or chattier core fail CI instead of passing quietly under a target
//! it still meets.
//!
//! Each bound is today's figure plus 10–20 %: room for a small, legitimate
//! drift, none for a 1.5× regression. Simulated time is deterministic, so a
//! figure moves only when the code does. A change that moves one past its
//! bound is either a regression to fix, or a deliberate trade: then the figure
//! and bound here, and the published figure, change together, with the reason
//! in the commit message.

#![allow(clippy::print_stderr)] // the measured figures are printed for the record

use std::time::Duration;

use beethoven_testkit::metrics::percentile_f64;
use beethoven_testkit::report::{GreyFigures, Report};
use beethoven_testkit::scenario::{self, Params, ScenarioKind};

const SECOND: Duration = Duration::from_secs(1);

/// A published figure, its value today (measured at the commit that set it:
/// see `git log -L` of the constant) and its bound.
struct Figure {
    what: &'static str,
    today: f64,
    bound: f64,
}

impl Figure {
    /// Fails if `measured` is over the bound, saying what moved.
    fn check(&self, measured: f64) {
        eprintln!(
            "{}: {measured:.4} (today {:.4}, bound {:.4})",
            self.what, self.today, self.bound
        );
        assert!(
            measured <= self.bound,
            "{} regressed: {measured:.4} over the bound {:.4} (today's figure: {:.4}). \
             Fix the regression, or, if it is a deliberate trade, move the figure, the bound \
             and the published figure together, with the reason in the commit message.",
            self.what,
            self.bound,
            self.today
        );
    }
}

fn run(params: &Params) -> Report {
    let report = scenario::run(params, &mut |_, _| {}).expect("the cluster forms");
    assert_eq!(report.violations, 0, "{:?}", report.first_violation);
    report
}

fn grey(report: &Report) -> &GreyFigures {
    report
        .grey
        .as_ref()
        .expect("a grey-zone scenario reports its figures")
}

fn percentile(values: &[f64], q: f64) -> f64 {
    percentile_f64(values, q).expect("figures measured")
}

/// `beethoven-sim --nodes 100 --scenario crash --seeds 20`: 120 silent crashes
/// (6 per seed), offline on every survivor; p50 and p99 pooled (over fewer
/// seeds the p99 is one crash's luck).
#[test]
fn silent_crash_detection_at_100_nodes_stays_near_p50_0_89s_p99_1_01s() {
    let latencies: Vec<f64> = (1..=20)
        .flat_map(|seed| {
            let report = run(&Params {
                seed,
                ..Params::new(ScenarioKind::Crash)
            });
            assert_eq!(report.undetected, 0, "seed {seed}");
            report.detection_latencies_s
        })
        .collect();
    P50_DETECTION.check(percentile(&latencies, 50.0));
    P99_DETECTION.check(percentile(&latencies, 99.0));
}

const P50_DETECTION: Figure = Figure {
    what: "silent crash, N=100, 20 seeds: detection p50 (s)",
    today: 0.892,
    bound: 1.0,
};
const P99_DETECTION: Figure = Figure {
    what: "silent crash, N=100, 20 seeds: detection p99 (s)",
    today: 1.007,
    bound: 1.15,
};

/// `beethoven-sim --nodes 100 --scenario steady --duration 60`.
#[test]
fn steady_traffic_at_100_nodes_stays_near_453_bytes_per_node_per_second() {
    let report = run(&Params::new(ScenarioKind::Steady));
    assert_eq!(report.offline_writes, 0);
    STEADY_BYTES.check(report.bytes_per_node_s);
}

const STEADY_BYTES: Figure = Figure {
    what: "steady, N=100: bytes/node/s",
    today: 452.6,
    bound: 500.0,
};

/// `beethoven-sim --nodes 100 --scenario partition --partition-secs 30 --seeds 3`:
/// heal to converged, the slowest of three seeds.
#[test]
fn a_partition_of_a_third_of_100_nodes_still_heals_within_0_35s() {
    let heals: Vec<f64> = (1..=3)
        .map(|seed| {
            let report = run(&Params {
                seed,
                partition: Some(30 * SECOND),
                ..Params::new(ScenarioKind::Partition)
            });
            report.convergence_after_heal_s.unwrap_or(f64::INFINITY)
        })
        .collect();
    PARTITION_HEAL.check(heals.iter().copied().fold(0.0, f64::max));
}

const PARTITION_HEAL: Figure = Figure {
    what: "partition of a third, N=100, 30 s, 3 seeds: slowest heal to converged (s)",
    today: 0.35,
    bound: 0.4,
};

/// `beethoven-sim --nodes 100 --scenario slow --duration 300`: 8 members
/// receive everything 1–5 s late; traffic against the quiet figure. 1.475
/// while each node probed in its own random order; 2.42 with the probe slots
/// (each node learned that a member answers late only from its own failed
/// probe, one node per probe interval); 1.38 since helpers, last-chance
/// judges and refuted deaths teach it too (`core/src/node/lateness.rs`);
/// 1.07 since a member learned late from a refuted accusation is waited for
/// the longest patience, not twice one draw of its varying delay; 1.00 since
/// a slow node judges its own answers against the plain probe interval, not
/// the one its local health stretched (it had kept forgetting its own path
/// was late and accusing healthy members).
#[test]
fn slow_members_cost_about_quiet_traffic() {
    let report = run(&Params {
        duration: 300 * SECOND,
        ..Params::new(ScenarioKind::Slow)
    });
    assert_eq!(report.false_offline, 0);
    let ratio = grey(&report).msgs_ratio_to_quiet.expect("a quiet figure");
    SLOW_TRAFFIC.check(ratio);
}

const SLOW_TRAFFIC: Figure = Figure {
    what: "8 slow members of N=100, 300 s: traffic / quiet traffic",
    today: 1.0,
    bound: 1.15,
};

/// `beethoven-sim --nodes 100 --scenario tag-change --tag-bytes 64 --duration 30`.
#[test]
fn a_tag_change_still_reaches_100_nodes_within_about_0_12s() {
    let report = run(&Params {
        tag_bytes: 64,
        duration: 30 * SECOND,
        ..Params::new(ScenarioKind::TagChange)
    });
    assert_eq!(report.tag_changes, 5);
    TAG_SPREAD.check(report.tag_spread_p99_s.expect("changes spread"));
}

const TAG_SPREAD: Figure = Figure {
    what: "tag change, N=100, 64 B, 5 changes: spread p99 (s)",
    today: 0.120,
    bound: 0.14,
};

/// `beethoven-sim --nodes 100 --scenario join-storm --joiners 1 --seeds 5 --duration 10`.
#[test]
fn a_join_still_reaches_100_nodes_within_about_0_09s() {
    let spreads: Vec<f64> = (1..=5)
        .flat_map(|seed| {
            let report = run(&Params {
                seed,
                joiners: Some(1),
                duration: 10 * SECOND,
                ..Params::new(ScenarioKind::JoinStorm)
            });
            assert_eq!(report.joins, 1, "seed {seed}");
            report.join_latencies_s
        })
        .collect();
    JOIN_SPREAD.check(percentile(&spreads, 99.0));
}

const JOIN_SPREAD: Figure = Figure {
    what: "one join into N=100, 5 seeds: online everywhere, slowest (s)",
    today: 0.091,
    bound: 0.105,
};

/// `beethoven-sim --nodes 100 --scenario user-events --rate 10 --duration 20`:
/// every event reaches every node once along its tree; a second copy, a
/// slower push or chattier announcements move these.
#[test]
fn user_events_at_100_nodes_stay_near_one_copy_5ms_p99_and_2_8x_growth() {
    let report = scenario::user_events::run_with(
        &Params {
            duration: 20 * SECOND,
            event_rate: 10.0,
            ..Params::new(ScenarioKind::UserEvents)
        },
        None,
        &mut |_, _| {},
    )
    .expect("the cluster forms");
    assert_eq!(report.delivery_ratio, 1.0);
    assert_eq!(report.faults, 0, "{:?}", report.first_faults);
    EVENT_COPIES.check(report.copies_per_node_per_event);
    EVENT_LATENCY.check(report.latency_p99_ms.expect("deliveries"));
    EVENT_GROWTH.check(report.growth_over_payload);
}

const EVENT_COPIES: Figure = Figure {
    what: "user events, N=100, 10/s: payload copies received per node per event",
    today: 1.0,
    bound: 1.1,
};

const EVENT_LATENCY: Figure = Figure {
    what: "user events, N=100, 10/s: delivery p99 (ms)",
    today: 4.9,
    bound: 5.9,
};

const EVENT_GROWTH: Figure = Figure {
    what: "user events, N=100, 10/s: extra bytes over the payload bytes delivered (x)",
    today: 2.79,
    bound: 3.1,
};

/// `beethoven-sim --nodes 100 --scenario query --rate 2 --duration 20`: a
/// query to every member, answered by all; its p99 and its traffic.
#[test]
fn a_query_to_100_nodes_stays_near_6ms_p99_and_1000_bytes_per_node_per_second() {
    let report = scenario::query::run(
        &Params {
            duration: 20 * SECOND,
            event_rate: 2.0,
            ..Params::new(ScenarioKind::Query)
        },
        &mut |_, _| {},
    )
    .expect("the cluster forms");
    assert_eq!(report.all.response_ratio, 1.0);
    QUERY_LATENCY.check(report.all.latency_p99_ms.expect("answers"));
    QUERY_BYTES.check(report.all.bytes_per_node_s);
}

const QUERY_LATENCY: Figure = Figure {
    what: "query to all of N=100, 2/s: answer p99 (ms)",
    today: 6.0,
    bound: 7.2,
};

const QUERY_BYTES: Figure = Figure {
    what: "query to all of N=100, 2/s: bytes per node per second",
    today: 1003.0,
    bound: 1150.0,
};
