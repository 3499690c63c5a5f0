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
//! every event against its own node's tracker. The real properties' failing
//! cases are kept in `apps.proptest-regressions` beside this file and replayed
//! first (`regressions::kept()`); the planted bug's never are
//! (`regressions::planted()`). A failure prints its case as Rust: pasted into
//! a test (as `a_pasted_case_fails_the_same_way` does), it fails the same way.

use std::collections::BTreeSet;
use std::time::Duration;

use beethoven_testkit::scenario::code::*;
use beethoven_testkit::{
    App, Context, Event, Failure, NodeName, NodeStatus, Sim, ViolationKind, When, arb_scenario,
    regressions,
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
    // Until they hold, or the bound: what still fails then, the check records.
    let _ = sim.run_until(bound, Duration::from_millis(10), Sim::invariants_hold);
    // Records the failure, if any, with the time and the node. Forgetting this
    // call fails `ensure_clean`: an invariant checked only when asked was not.
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
        failure_persistence: regressions::kept(),
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
        failure_persistence: regressions::planted(),
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
    assert_eq!(
        again.to_string(),
        TestCaseError::fail(reason.clone()).to_string()
    );
    // The report shows the story and the case as Rust; that Rust, read back,
    // is the same case, and `beethoven-sim` replays it.
    assert!(reason.contains("timeline of "), "{reason}");
    let code = minimal.to_code();
    assert!(
        reason.contains(&format!("replay in a test: {code}")),
        "{reason}"
    );
    assert!(reason.contains(&minimal.command()), "{reason}");
    assert_eq!(code.parse::<Scenario>(), Ok(minimal));
}

/// A case as the failure above printed it (`replay in a test:`), pasted here.
fn pasted_case() -> Scenario {
    Scenario::new(4)
        .seed(0)
        .network(NetworkModel {
            latency: us(200),
            jitter: us(100),
            ..NetworkModel::lan()
        })
        .fault_at(
            secs(0),
            Fault::Pause {
                node: 2,
                duration: ms(1082),
            },
        )
}

#[test]
fn a_pasted_case_fails_the_same_way() {
    let failure = shard_map(&pasted_case(), true).expect_err("the planted bug trips");
    let failure = failure.to_string();
    assert!(
        failure.contains("one owner per shard after calm"),
        "{failure}"
    );
    shard_map(&pasted_case(), false).expect("the correct map holds on the same case");
}

#[test]
fn forgetting_to_check_an_asked_invariant_fails_the_run() {
    let mut sim = Scenario::new(4)
        .builder()
        .app(|_, name| Leader(View::new(name, false)))
        .build()
        .expect("forms");
    sim.invariant("one leader after calm", When::Asked, one_leader);
    sim.run_for(Duration::from_secs(2));
    // No `sim.check_invariants()`: the run cannot pass.
    let failure = sim
        .ensure_clean()
        .expect_err("an asked invariant was never checked");
    assert_eq!(
        failure.violations[0].kind,
        ViolationKind::Unchecked {
            invariant: "one leader after calm".into()
        }
    );
    assert!(failure.to_string().contains("never checked"), "{failure}");
    sim.check_invariants().expect("one leader");
    sim.ensure_clean().expect("checked, and it holds");
}
