//! Golden trace hashes: a handful of scenarios and seeds whose whole trace
//! (every event, fault and delivery, in order) must hash to the value pinned
//! here. A change meant to keep behaviour (a refactor, a speed-up) must leave
//! them all as they are; one that changes behaviour changes some, on purpose.
//!
//! Updating a hash is a deliberate change: copy the actual hash the failure
//! prints into its constant below, and say in the commit message why the
//! behaviour changed (e.g. "wire framing: every datagram two bytes shorter").

use std::time::Duration;

use beethoven_testkit::scenario::{self, Params, ScenarioKind};

const SECOND: Duration = Duration::from_secs(1);

// One line each, so an update is a one-line diff.
const STEADY_30_SEED_1: &str = "a788ce71a9ae520b";
const CRASH_50_SEED_2: &str = "e03938105c7016fd";
const CHURN_100_SEED_1: &str = "566620ce241497e6";
const PARTITION_30_SEED_3: &str = "a3dc60c5c263054b";
const TAG_CHANGE_30_SEED_1: &str = "eb5f7009d5a4af6d";

/// The pinned runs: name, parameters, expected hash.
fn golden() -> Vec<(&'static str, Params, &'static str)> {
    vec![
        (
            "steady, N=30, seed 1, 60 s",
            Params {
                nodes: 30,
                ..Params::new(ScenarioKind::Steady)
            },
            STEADY_30_SEED_1,
        ),
        (
            "crash, N=50, seed 2, 60 s",
            Params {
                nodes: 50,
                seed: 2,
                ..Params::new(ScenarioKind::Crash)
            },
            CRASH_50_SEED_2,
        ),
        (
            "churn, N=100, seed 1, 60 s",
            Params::new(ScenarioKind::Churn),
            CHURN_100_SEED_1,
        ),
        (
            "partition, N=30, seed 3, 10 s cut",
            Params {
                nodes: 30,
                seed: 3,
                partition: Some(10 * SECOND),
                ..Params::new(ScenarioKind::Partition)
            },
            PARTITION_30_SEED_3,
        ),
        (
            "tag-change, N=30, seed 1, 64 B, 30 s",
            Params {
                nodes: 30,
                tag_bytes: 64,
                duration: 30 * SECOND,
                ..Params::new(ScenarioKind::TagChange)
            },
            TAG_CHANGE_30_SEED_1,
        ),
    ]
}

#[test]
fn pinned_scenarios_produce_their_golden_trace_hashes() {
    let mut lines = Vec::new();
    let mut changed = 0;
    for (name, params, expected) in golden() {
        let report = scenario::run(&params, &mut |_, _| {}).expect("the cluster forms");
        let same = report.trace_hash == expected;
        changed += usize::from(!same);
        lines.push(format!(
            "{} {name}: actual {} (pinned {expected})",
            if same { "same   " } else { "CHANGED" },
            report.trace_hash
        ));
    }
    assert!(
        changed == 0,
        "{changed} trace hash(es) changed: the simulated behaviour is not what it was.\n{}\n\
         If the change is meant to alter behaviour, copy each actual hash into its constant in \
         testkit/tests/golden_traces.rs and give the reason in the commit message; otherwise \
         the change altered behaviour it was meant to keep.",
        lines.join("\n")
    );
}
