//! # beethoven-testkit
//!
//! A deterministic simulator for [`beethoven_core`]: many nodes on a seeded,
//! simulated network, with faults, invariant checkers, metrics and proptest
//! strategies. Virtual time jumps from one event to the next and never sleeps;
//! the same seed and scenario replay the same run, event for event. Your dev
//! dependencies are `beethoven-testkit` (with `default-features = false`: the
//! default `cli` feature builds the `beethoven-sim` binary and pulls in clap,
//! indicatif and tracing-subscriber) and `proptest`: the core's types a test
//! meets ([`NodeStatus`], [`NodeName`], [`Event`], [`TrackerRow`], [`Config`], ...)
//! are re-exported here, and the whole core crate as [`core`].
//!
//! ## A cluster, a fault, the checks
//!
//! ```
//! use std::time::Duration;
//! use beethoven_testkit::{Fault, HostFate, NetworkModel, Sim};
//!
//! let mut sim = Sim::builder()
//!     .nodes(5)
//!     .seed(7)
//!     .network(NetworkModel::lan())
//!     .build()?; // formed: every node sees every node online
//! let crash = sim.apply(Fault::Crash { node: 3, host: HostFate::Vanishes });
//! sim.run_for(Duration::from_secs(10));
//! let watch = crash.watch.and_then(|id| sim.metrics().watch(id)).expect("a crash is watched");
//! assert!(watch.all_at.is_some(), "offline everywhere");
//! assert!(sim.metrics().suspicions.raised > 0, "suspected before declared");
//! let settled = sim.liveness_gate(sim.timing().liveness)?; // heal, restart, wait
//! assert!(settled < sim.timing().liveness);
//! sim.ensure_clean()?; // every invariant held throughout
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every node's events are checked as they happen (notifications match tracker
//! transitions, mode matches the tracker, no healthy node is declared offline,
//! no panic, no livelock); the liveness gate checks the whole cluster
//! (convergence, completeness, liveness). A broken invariant is a
//! [`Violation`] with the simulated time and the node; [`Sim::ensure_clean`]
//! reports them with the seed that replays the run and the [`story`] of the
//! first: the faults, and what the nodes it names heard, up to it.
//!
//! ## Your own logic on top: apps and your invariants
//!
//! An [`App`] runs beside every simulated node. It hears that node's events
//! (node updates, tracker writes, mode changes) at the simulated moment the
//! node emits them, can issue the node's commands (leave, join, new_node,
//! set_tags, restore, set_key_ring) through its [`Context`], can set timers of
//! its own, and can note what it decided in the run's story. Its state follows
//! its node: frozen while paused, dropped on a crash, rebuilt by your factory
//! on restart. Your invariants over all apps are checked after every event,
//! periodically, or when you ask ([`When`]), and fail like the testkit's own;
//! one checked only when asked that was never checked fails the run.
//!
//! The worked example: the lowest online name is the leader. After the chaos
//! of a random [`Scenario`] (cluster size, seed, network, config, faults) and a
//! calm phase, every live node must name the same leader, the lowest-named live
//! node, within the detection bound.
//!
//! ```
//! use std::collections::BTreeSet;
//! use std::time::Duration;
//! use beethoven_testkit::{
//!     App, Context, Event, Failure, NodeName, NodeStatus, Scenario, Sim, When, arb_scenario,
//!     regressions,
//! };
//! use proptest::prelude::*;
//!
//! /// What a node believes: itself and the others its updates said are online.
//! struct Leader {
//!     me: NodeName,
//!     online: BTreeSet<NodeName>,
//! }
//!
//! impl App for Leader {
//!     fn event(&mut self, _ctx: &mut Context<'_>, event: &Event) {
//!         match event {
//!             Event::NodeUpdate { node, status: NodeStatus::Online } => {
//!                 self.online.insert(node.clone());
//!             }
//!             Event::NodeUpdate { node, status: NodeStatus::Offline } => {
//!                 self.online.remove(node);
//!             }
//!             _ => {}
//!         }
//!     }
//! }
//!
//! impl Leader {
//!     fn leader(&self) -> &NodeName {
//!         self.online.first().filter(|&first| first < &self.me).unwrap_or(&self.me)
//!     }
//! }
//!
//! /// Every live node names the lowest-named live node.
//! fn one_leader(sim: &Sim) -> Result<(), Failure> {
//!     let lowest = sim.up().into_iter().map(|i| sim.name(i)).min();
//!     for (i, app) in sim.apps::<Leader>() {
//!         if sim.is_up(i) && Some(app.leader()) != lowest {
//!             return Err(Failure::at(i, format!("names {}", app.leader())));
//!         }
//!     }
//!     Ok(())
//! }
//!
//! fn leader_after_calm(scenario: &Scenario) -> Result<(), TestCaseError> {
//!     let mut sim = scenario
//!         .builder()
//!         .app(|_index, name| Leader { me: name.clone(), online: BTreeSet::new() })
//!         .build()?;
//!     sim.invariant("one leader after calm", When::Asked, one_leader);
//!     scenario.run_chaos(&mut sim); // the drawn faults
//!     sim.liveness_gate(sim.timing().liveness)?; // heal, restart the crashed, settle
//!     let bound = sim.timing().detection;
//!     // Until it holds, or the bound: what still fails then, the check records.
//!     let _ = sim.run_until(bound, Duration::from_millis(10), Sim::invariants_hold);
//!     let _ = sim.check_invariants(); // records a failure with its time and node
//!     sim.ensure_clean()?; // fails the case: seed, violations, story, the case as Rust
//!     Ok(())
//! }
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig {
//!         cases: 256,
//!         failure_persistence: regressions::kept(), // tests/<file>.proptest-regressions
//!         ..ProptestConfig::default()
//!     })]
//!     #[test]
//!     fn the_lowest_online_name_leads(scenario in arb_scenario()) {
//!         leader_after_calm(&scenario)?;
//!     }
//! }
//! # // Doctests do not run `#[test]`s: run a few cases here.
//! # proptest::test_runner::TestRunner::new(ProptestConfig { cases: 4, failure_persistence: None, ..ProptestConfig::default() })
//! #     .run(&arb_scenario(), |scenario| leader_after_calm(&scenario)).expect("holds");
//! ```
//!
//! **The proptest pattern.** [`arb_scenario`] (or [`arb_scenario_in`] with a
//! [`ScenarioSpace`]) draws every part of a case independently, so a failure
//! shrinks on each: fewer nodes, fewer and earlier faults, a plainer network,
//! the default config. The failure's report ([`RunFailure`]) holds the
//! violations, the story of the first, and the minimal case twice: as the
//! Rust that rebuilds it, showing only what differs from the defaults, and as
//! the command that replays it:
//!
//! ```text
//! replay in a test: Scenario::new(4).seed(0).fault_at(secs(0), Fault::Pause { node: 2, duration: ms(1082) })
//! replay the run:   beethoven-sim --case 'Scenario::new(4).seed(0).fault_at(...)'
//! ```
//!
//! Paste the first into a test (`use beethoven_testkit::scenario::code::*;`
//! brings the builders and [`ms`]/[`secs`]/...) and call the same function: it
//! fails the same way. The second replays the membership run (formation, the
//! faults, the liveness gate; without your app) and prints its whole timeline.
//! proptest prints the same Rust as its minimal failing input, and appends
//! the case to `tests/<test>.proptest-regressions`: commit that file, and
//! every later run replays the case first. For a test that must *find* a bug,
//! drive [`proptest::test_runner::TestRunner`] directly, with
//! [`regressions::planted`] so its failures stay out of that file, and assert
//! on its `Err(TestError::Fail(reason, minimal))` (see `tests/apps.rs`: a
//! rendezvous-hash shard map, and a broken one whose bug is found and shrunk
//! to a single fault).
//!
//! ## Modules, by what they hold
//!
//! - [`sim`]: the simulator, its builder and the run loop;
//! - [`app`]: your logic beside each node ([`App`], [`Context`]) and your
//!   invariants ([`When`], [`Failure`]);
//! - [`network`]: latency, jitter, loss, duplication, reordering, partitions, link rules,
//!   members whose inbound datagrams are late;
//! - [`fault`]: node and network faults (tag changes among them), schedules, and a
//!   planner for random ones;
//! - [`invariant`]: the checkers and their typed [`Violation`]s; what counts as a
//!   healthy node for accuracy (under partitions, link rules, loss and delays) is
//!   defined in [`invariant::accuracy`];
//! - [`metrics`]: spread watches (detection, join, leave, tag change), suspicions,
//!   traffic, percentiles;
//! - [`strategy`]: proptest strategies: whole [`Scenario`]s, clusters,
//!   networks, configs, fault schedules, tags and tag changes;
//! - [`scenario`]: the named scenarios the `beethoven-sim` binary runs, the grey-zone
//!   ones (partitions, split clusters, heavy loss, slow members, name conflicts) and
//!   tag changes included; every node can start with tags of a chosen size;
//!   [`scenario::code`] writes a [`Scenario`] as Rust and reads it back;
//! - [`report`]: their reports, as a table or JSON;
//! - [`story`]: the timeline of a run or a failure;
//! - [`regressions`]: where property tests keep failing cases;
//! - [`timeline`]: an opt-in recording of a run over time (beliefs about each
//!   node, fault windows, false verdicts, traffic per second), which the HTML
//!   report draws;
//! - [`trace`]: the event trace (which can be cut at a chosen moment) and its
//!   replay hash.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// The front page shows the `proptest!` block a user writes, `#[test]` included;
// its doctest runs a few cases through a `TestRunner` instead.
#![allow(clippy::test_attr_in_doctest)]

pub mod app;
pub mod delivery;
pub mod fault;
pub mod invariant;
pub mod metrics;
pub mod network;
pub mod regressions;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod story;
pub mod strategy;
pub mod timeline;
pub mod trace;

pub use app::{App, Context, Failure, When};
pub use fault::{Fault, FaultKind, HostFate, Outcome, Planner, Scheduled};
pub use invariant::{RunFailure, Standing, Timing, Violation, ViolationKind};
pub use metrics::{
    Metrics, Suspicions, Traffic, TrafficRate, Watch, WatchId, WatchKind, percentile,
};
pub use network::{BurstModel, LinkRule, Network, NetworkModel};
pub use scenario::code::{CodeError, Replay, ms, ns, secs, us};
pub use sim::{Applied, BuildError, Formation, Sim, SimBuilder, Timeout};
pub use story::Story;
pub use strategy::{ClusterSpec, Scenario, ScenarioSpace, arb_scenario, arb_scenario_in};
pub use trace::{Trace, TraceEntry};

/// The core's types a test of your own logic meets, so `beethoven-testkit` is
/// the one dev-dependency it needs (with `proptest`); the whole core crate is
/// [`core`].
pub use beethoven_core::{
    ClusterId, Config, Event, Health, Mode, Node, NodeName, NodeStatus, Op, Tags, TrackerEvent,
    TrackerRow,
};

/// The core crate itself, for anything not re-exported above.
pub use beethoven_core as core;
