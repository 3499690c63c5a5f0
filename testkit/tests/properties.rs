//! Property test: random fault schedules on 5–30 nodes keep every invariant.
//!
//! Each case forms a cluster, runs a chaos phase (the drawn faults), then a calm
//! phase: the network heals, every crashed node restarts, and the cluster must
//! settle (identical trackers, every up node online, every departed node
//! offline) within a bound derived from the protocol's own timers. Incremental
//! invariants are checked on every event throughout; each case also asserts
//! that the faults it drew actually fired. Failing cases are kept in
//! `properties.proptest-regressions` beside this file and replayed first
//! (`regressions::kept()`).
//!
//! 256 cases by default (a few seconds); a campaign: `PROPTEST_CASES=40000 cargo test
//! --release -p beethoven-testkit --test properties` (about 6 minutes). A larger
//! sweep (30–120 nodes, up to 25 faults) is `#[ignore]`d: add `-- --ignored`.

use std::time::Duration;

use beethoven_core::Config;
use beethoven_testkit::fault::{Outcome, Scheduled};
use beethoven_testkit::strategy::{
    ClusterSpec, arb_cluster, arb_cluster_of, arb_fault_schedule, arb_tag_changes,
};
use beethoven_testkit::{Scenario, regressions};
use proptest::prelude::*;

/// How long faults are drawn over.
const CHAOS: Duration = Duration::from_secs(20);
/// Most faults per case.
const MAX_FAULTS: usize = 10;

/// A cluster and its schedule as one case: a failure prints it as the Rust
/// that rebuilds it (and the `beethoven-sim` command that replays it).
fn as_case((cluster, schedule): (ClusterSpec, Vec<Scheduled>)) -> Scenario {
    Scenario {
        cluster,
        config: Config::for_cluster("prop"),
        schedule,
        chaos: CHAOS,
    }
}

fn cluster_and_schedule() -> impl Strategy<Value = Scenario> {
    arb_cluster()
        .prop_flat_map(|cluster| {
            let nodes = cluster.nodes;
            (Just(cluster), arb_fault_schedule(nodes, CHAOS, MAX_FAULTS))
        })
        .prop_map(as_case)
}

/// The larger sweep: 30–120 nodes and up to 25 faults.
fn large_cluster_and_schedule() -> impl Strategy<Value = Scenario> {
    arb_cluster_of(30..=120)
        .prop_flat_map(|cluster| {
            let nodes = cluster.nodes;
            (Just(cluster), arb_fault_schedule(nodes, CHAOS, 25))
        })
        .prop_map(as_case)
}

/// Chaos, then calm: the faults fire, the cluster settles within the liveness
/// bound, nothing flaps afterwards, and no invariant is violated on the way.
fn chaos_then_calm(scenario: &Scenario) -> Result<(), TestCaseError> {
    let mut sim = scenario.build()?;
    // Chaos, plus time for the last pause or slowness to end.
    scenario.run_chaos(&mut sim);
    for (scheduled, outcome) in sim.outcomes() {
        prop_assert_eq!(
            outcome,
            Some(&Outcome::Fired),
            "{:?} did not fire",
            scheduled
        );
    }
    let bound = sim.timing().liveness;
    let gate = sim.liveness_gate(bound);
    prop_assert!(
        gate.is_ok(),
        "liveness gate: {}",
        gate.err().map(|v| v.to_string()).unwrap_or_default()
    );
    // A quiet period after settling: nothing may flap. The network may still
    // lose datagrams, so a suspicion can be raised and refuted at any moment;
    // the trackers must agree again within a detection bound, not at every
    // instant.
    let writes = sim.metrics().offline_writes;
    sim.run_for(2 * sim.timing().detection);
    let again = sim.timing().detection;
    let settled = sim.run_until(again, Duration::from_millis(10), |sim| sim.settled());
    prop_assert!(settled.is_ok(), "{}", sim.whole_cluster_violation(again));
    prop_assert_eq!(
        sim.metrics().offline_writes,
        writes,
        "offline writes in the quiet period"
    );
    sim.ensure_clean()?;
    Ok(())
}

fn cluster_and_tag_changes() -> impl Strategy<Value = (ClusterSpec, Vec<Scheduled>)> {
    arb_cluster().prop_flat_map(|cluster| {
        let nodes = cluster.nodes;
        let config = Config::for_cluster("prop");
        (Just(cluster), arb_tag_changes(nodes, CHAOS / 4, 8, &config))
    })
}

/// Tag changes over a lossy network: every change fires and spreads, and the
/// cluster settles with every node's row, everywhere, holding that node's own
/// tags (the convergence check compares tags too).
fn tag_changes_converge(cluster: &ClusterSpec, changes: &[Scheduled]) -> Result<(), TestCaseError> {
    let mut sim = cluster
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let start = sim.now();
    sim.schedule_all(start, changes);
    sim.run_for(CHAOS / 4);
    for (scheduled, outcome) in sim.outcomes() {
        prop_assert_eq!(outcome, Some(&Outcome::Fired), "{:?}", scheduled);
    }
    let bound = sim.timing().liveness;
    let gate = sim.liveness_gate(bound);
    prop_assert!(
        gate.is_ok(),
        "{}",
        gate.err().map(|v| v.to_string()).unwrap_or_default()
    );
    for i in sim.up() {
        let own = sim.node(i).expect("up").tags().clone();
        for j in sim.up() {
            let row = sim.node(j).and_then(|n| n.row(sim.name(i)));
            prop_assert_eq!(
                row.map(|r| &r.tags),
                Some(&own),
                "node {}'s tags on node {}",
                i,
                j
            );
        }
    }
    prop_assert!(sim.violations().is_empty(), "{:#?}", sim.violations());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        max_shrink_iters: 100,
        failure_persistence: regressions::kept(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_tag_changes_converge_to_each_nodes_own_tags(
        (cluster, changes) in cluster_and_tag_changes()
    ) {
        tag_changes_converge(&cluster, &changes)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        max_shrink_iters: 200,
        failure_persistence: regressions::kept(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_fault_schedules_keep_every_invariant(scenario in cluster_and_schedule()) {
        chaos_then_calm(&scenario)?;
    }

    #[test]
    #[ignore = "the larger sweep: run in release, with PROPTEST_CASES for a campaign"]
    fn random_fault_schedules_on_larger_clusters_keep_every_invariant(
        scenario in large_cluster_and_schedule()
    ) {
        chaos_then_calm(&scenario)?;
    }
}
