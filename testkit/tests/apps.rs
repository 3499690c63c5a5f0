//! The worked example of the crate docs: users' own logic on top of
//! membership, property-tested under random faults.
//!
//! - `Leader`: the lowest online name is the leader. After calm, every live
//!   node names the same leader, the lowest-named live node, within the
//!   detection bound.
//! - `Shards`: a rendezvous-hash shard map. After convergence, each shard has
//!   exactly one owner among the live nodes.
//! - `ForgetfulShards`: the same map with a bug (a node that went offline is
//!   never taken back). The property test must find it and shrink it to a
//!   short fault schedule; the test asserts that it does.
//!
//! Each app keeps its own view of the cluster from its node's update stream
//! (`Event::NodeUpdate`), as a real subscriber would, and is checked after
//! every event against its own node's tracker. Failing cases are kept in
//! `apps.proptest-regressions` beside this file and replayed first.

use std::collections::BTreeSet;
use std::time::Duration;

use beethoven_testkit::{
    App, Context, Event, Failure, NodeName, NodeStatus, Scenario, Sim, When, arb_scenario,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestError, TestRng, TestRunner};

/// Shards in the map.
const SHARDS: u64 = 16;

/// The other nodes a node has been told are online, from its update stream.
#[derive(Debug)]
struct View {
    me: NodeName,
    online: BTreeSet<NodeName>,
    /// A node that went offline is never taken back: `ForgetfulShards`' bug.
    forgets: bool,
    gone: BTreeSet<NodeName>,
}

impl View {
    fn new(me: &NodeName, forgets: bool) -> Self {
        Self {
            me: me.clone(),
            online: BTreeSet::new(),
            forgets,
            gone: BTreeSet::new(),
        }
    }

    fn hear(&mut self, event: &Event) {
        let Event::NodeUpdate { node, status } = event else {
            return;
        };
        match status {
            NodeStatus::Online if self.forgets && self.gone.contains(node) => {}
            NodeStatus::Online => {
                self.online.insert(node.clone());
            }
            NodeStatus::Offline => {
                self.online.remove(node);
                self.gone.insert(node.clone());
            }
        }
    }

    /// This node and every other it believes online.
    fn members(&self) -> impl Iterator<Item = &NodeName> {
        std::iter::once(&self.me).chain(&self.online)
    }
}

/// The lowest online name is the leader.
#[derive(Debug)]
struct Leader(View);

impl App for Leader {
    fn event(&mut self, _: &mut Context<'_>, event: &Event) {
        self.0.hear(event);
    }
}

impl Leader {
    fn leader(&self) -> &NodeName {
        // `members` starts with this node: never empty.
        self.0.members().min().unwrap_or(&self.0.me)
    }
}

/// A rendezvous-hash shard map: a shard belongs to the member with the highest
/// hash of (shard, name). `forgets` plants the bug.
#[derive(Debug)]
struct Shards(View);

impl App for Shards {
    fn event(&mut self, _: &mut Context<'_>, event: &Event) {
        self.0.hear(event);
    }
}

impl Shards {
    fn owns(&self, shard: u64) -> bool {
        let owner = self.0.members().max_by_key(|name| weight(shard, name));
        owner == Some(&self.0.me)
    }
}

/// FNV-1a of (shard, name): the same in every process and build.
fn weight(shard: u64, name: &NodeName) -> u64 {
    let bytes = shard.to_le_bytes().into_iter().chain(name.as_str().bytes());
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Node `i`'s view agrees with its own tracker: whom it believes online is
/// exactly whom its tracker holds online (checked after every event, so it
/// compares without allocating).
fn view_matches_tracker(sim: &Sim, i: usize, view: &View) -> Result<(), Failure> {
    let Some(node) = sim.node(i) else {
        return Ok(());
    };
    let tracked = node
        .tracker()
        .rows()
        .filter(|row| row.status == NodeStatus::Online && row.node != view.me)
        .count();
    let online = |name: &NodeName| node.row(name).map(|row| row.status) == Some(NodeStatus::Online);
    if tracked == view.online.len() && view.online.iter().all(online) {
        return Ok(());
    }
    Err(Failure::at(
        i,
        format!(
            "believes {:?} online, its tracker holds {tracked} others online",
            view.online
        ),
    ))
}

/// Every live node names the lowest-named live node as leader.
fn one_leader(sim: &Sim) -> Result<(), Failure> {
    let lowest = sim.up().into_iter().map(|i| sim.name(i)).min();
    for i in sim.up() {
        let Some(app) = sim.app::<Leader>(i) else {
            continue;
        };
        if Some(app.leader()) != lowest {
            return Err(Failure::at(
                i,
                format!("names {} leader, not {lowest:?}", app.leader()),
            ));
        }
    }
    Ok(())
}

/// Each shard is owned by exactly one live node.
fn one_owner_per_shard<A: App>(sim: &Sim, owns: impl Fn(&A, u64) -> bool) -> Result<(), Failure> {
    let up = sim.up();
    for shard in 0..SHARDS {
        let owners: Vec<&NodeName> = up
            .iter()
            .filter(|&&i| sim.app::<A>(i).is_some_and(|app| owns(app, shard)))
            .map(|&i| sim.name(i))
            .collect();
        if owners.len() != 1 {
            return Err(Failure::new(format!(
                "shard {shard} is owned by {owners:?}"
            )));
        }
    }
    Ok(())
}

/// Chaos, then calm; then the apps' invariant must hold within the detection
/// bound, and nothing, the testkit's invariants included, may have failed.
fn after_calm(mut sim: Sim, scenario: &Scenario) -> Result<(), TestCaseError> {
    scenario.run_chaos(&mut sim);
    let gate = sim.liveness_gate(sim.timing().liveness);
    prop_assert!(gate.is_ok(), "liveness gate: {:?}", gate);
    let bound = sim.timing().detection;
    sim.run_until(bound, Duration::from_millis(10), Sim::invariants_hold);
    // Records the failure, if any, with the time and the node.
    let _ = sim.check_invariants();
    sim.ensure_clean()?;
    Ok(())
}

fn leader_election(scenario: &Scenario) -> Result<(), TestCaseError> {
    let mut sim = scenario
        .builder()
        .app(|_, name| Leader(View::new(name, false)))
        .build()?;
    sim.invariant("views match trackers", When::EveryEvent, |sim| {
        sim.apps::<Leader>()
            .try_for_each(|(i, app)| view_matches_tracker(sim, i, &app.0))
    });
    sim.invariant("one leader after calm", When::Asked, one_leader);
    after_calm(sim, scenario)
}

fn shard_map(scenario: &Scenario, forgets: bool) -> Result<(), TestCaseError> {
    let mut sim = scenario
        .builder()
        .app(move |_, name| Shards(View::new(name, forgets)))
        .build()?;
    sim.invariant("one owner per shard after calm", When::Asked, |sim| {
        one_owner_per_shard(sim, Shards::owns)
    });
    after_calm(sim, scenario)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_lowest_online_name_is_the_one_leader_after_calm(scenario in arb_scenario()) {
        leader_election(&scenario)?;
    }

    #[test]
    fn every_shard_has_exactly_one_live_owner_after_convergence(scenario in arb_scenario()) {
        shard_map(&scenario, false)?;
    }
}

#[test]
fn the_property_test_finds_the_forgetful_shard_map_and_shrinks_its_schedule() {
    // A fixed RNG and no persistence: the search is the same on every run, and
    // this deliberate failure is not written to the regressions file.
    let config = RunnerConfig {
        cases: 256,
        max_shrink_iters: 500,
        failure_persistence: None,
        ..RunnerConfig::default()
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&arb_scenario(), |scenario| shard_map(&scenario, true));
    let Err(TestError::Fail(reason, minimal)) = result else {
        panic!("the bug was not found: {result:?}");
    };
    let reason = reason.to_string();
    assert!(
        reason.contains("one owner per shard after calm") && reason.contains("seed "),
        "reported with the invariant and the seed: {reason}"
    );
    assert!(
        minimal.schedule.len() <= 2,
        "shrunk to a short schedule: {:#?}",
        minimal.schedule
    );
    assert!(!minimal.schedule.is_empty(), "a fault is needed to trip it");
    // The minimal case replays from its seed: the same failure again.
    let again = shard_map(&minimal, true).expect_err("fails again");
    assert_eq!(again.to_string(), TestCaseError::fail(reason).to_string());
}
