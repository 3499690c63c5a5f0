//! # beethoven-testkit
//!
//! A deterministic simulator for [`beethoven_core`]: many nodes on a seeded,
//! simulated network, with faults, invariant checkers, metrics and proptest
//! strategies. Virtual time jumps from one event to the next and never sleeps;
//! the same seed and scenario replay the same run, event for event.
//!
//! ```
//! use std::time::Duration;
//! use beethoven_testkit::{Fault, HostFate, NetworkModel, Sim, WatchKind};
//!
//! let mut sim = Sim::builder()
//!     .nodes(5)
//!     .seed(7)
//!     .network(NetworkModel::lan())
//!     .build()?; // formed: every node sees every node online
//! sim.apply(Fault::Crash { node: 3, host: HostFate::Vanishes });
//! sim.run_for(Duration::from_secs(10));
//! assert_eq!(sim.metrics().latencies(WatchKind::Crash).len(), 1, "detected everywhere");
//! let settled = sim.liveness_gate(sim.timing().liveness)?; // heal, restart, wait
//! assert!(settled < sim.timing().liveness);
//! assert!(sim.violations().is_empty(), "{:?}", sim.violations());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules, by what they hold:
//!
//! - [`sim`]: the simulator, its builder and the run loop;
//! - [`network`]: latency, jitter, loss, duplication, reordering, partitions, link rules,
//!   members whose inbound datagrams are late;
//! - [`fault`]: node and network faults (tag changes among them), schedules, and a
//!   planner for random ones;
//! - [`invariant`]: the checkers and their typed [`Violation`]s; what counts as a
//!   healthy node for accuracy (under partitions, link rules, loss and delays) is
//!   defined in [`invariant::accuracy`];
//! - [`metrics`]: spread watches (detection, join, leave, tag change), traffic, percentiles;
//! - [`strategy`]: proptest strategies for clusters, fault schedules, tags and tag changes;
//! - [`scenario`]: the named scenarios the `beethoven-sim` binary runs, the grey-zone
//!   ones (partitions, split clusters, heavy loss, slow members, name conflicts) and
//!   tag changes included; every node can start with tags of a chosen size;
//! - [`report`]: their reports, as a table or JSON;
//! - [`trace`]: the event trace and its replay hash.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod fault;
pub mod invariant;
pub mod metrics;
pub mod network;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod strategy;
pub mod trace;

pub use fault::{Fault, FaultKind, HostFate, Outcome, Planner, Scheduled};
pub use invariant::{Standing, Timing, Violation, ViolationKind};
pub use metrics::{Metrics, Traffic, Watch, WatchKind, percentile};
pub use network::{LinkRule, Network, NetworkModel};
pub use sim::{BuildError, Formation, Sim, SimBuilder};
pub use trace::Trace;
