//! The discrete-event simulator: many [`Node`]s, a seeded [`Network`], faults,
//! and virtual time that jumps from one event to the next and never sleeps.
//!
//! Every datagram goes through the real wire codec (the bytes `poll_transmit`
//! gives), every event a node emits is checked by the incremental invariant
//! checkers, measured by the metrics, and folded into the trace hash.
//!
//! Scale: pending work sits in one heap keyed by (time, sequence number). Each
//! node has at most one live timer entry; a generation token makes older entries
//! stale, so they are skipped when popped instead of being searched for and
//! removed. A step costs O(log events), never a scan of all nodes.

mod apply;
mod drive;
mod formation;
mod host;
mod record;

pub use apply::Applied;

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use beethoven_core::chrono::{DateTime, Utc};
use beethoven_core::{Config, ConfigError, Node, NodeName, NodeStatus, Tags};

use crate::app::{App, AppFactory, Hosted, UserInvariant};
use crate::fault::{Fault, HostFate, Outcome, Scheduled};
use crate::invariant::{NotificationChecker, Reachability, Timing, Violation, ViolationKind};
use crate::metrics::{Metrics, Traffic};
use crate::network::{Network, NetworkModel};
use crate::trace::{Fnv, Trace};

/// The port simulated nodes listen on (restarts elsewhere add their life count).
pub const PORT: u16 = 7946;

/// Deterministic and cheaper than SipHash for the lookups every packet and
/// event makes (addresses and names here are the simulator's own).
type FnvBuild = std::hash::BuildHasherDefault<Fnv>;

/// Most violations kept (all are counted).
const MAX_KEPT_VIOLATIONS: usize = 1000;

/// The name of node `i` in a simulator of `slots` node slots (cluster and
/// standby): `node-` and the index, zero-padded to the width of the highest
/// index, so that names sort in index order (`node-09` before `node-10` in a
/// cluster of 11 to 100 nodes; `node-0` to `node-9` up to 10 nodes).
///
/// ```
/// use beethoven_testkit::sim::node_name;
/// assert_eq!(node_name(7, 100).as_str(), "node-07");
/// assert_eq!(node_name(7, 8).as_str(), "node-7");
/// ```
pub fn node_name(i: usize, slots: usize) -> NodeName {
    let width = slots.saturating_sub(1).max(1).ilog10() as usize + 1;
    // A short ASCII name is always valid (1..=255 bytes).
    NodeName::new(&format!("node-{i:0width$}"))
        .unwrap_or_else(|_| unreachable!("node-N is a valid name"))
}

/// The address of node `i` in life `life` (a restart elsewhere moves the port).
pub fn node_addr(i: usize, life: u16) -> SocketAddr {
    let ip = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
    SocketAddr::from((ip, PORT.wrapping_add(life)))
}

/// What runs in a node slot.
#[derive(Debug)]
enum Proc {
    /// Built with `standby`, not started yet.
    Standby,
    /// A running process.
    Running(Box<Node>),
    /// Crashed; whether its host stays up decides if senders get a hint.
    Crashed(HostFate),
    /// Stopped after a graceful leave.
    Stopped,
}

#[derive(Debug)]
struct Slot {
    name: NodeName,
    addr: SocketAddr,
    life: u16,
    proc: Proc,
    paused_until: Option<Duration>,
    inbox: Vec<(SocketAddr, Vec<u8>)>,
    slow: Option<(Duration, Duration)>,
    busy_until: Duration,
    /// The last instant the running process was given an input (for
    /// [`Metrics::wakes`]).
    woken_at: Option<Duration>,
    timer_at: Option<Duration>,
    token: u64,
    fired_at: Duration,
    fire_count: u32,
    /// Not healthy before this (a fault of its own, plus grace); `Duration::MAX` while down.
    disturbed_until: Duration,
    leaving: bool,
    joined: bool,
    /// A second process under another slot's name (`Fault::StartTwin`).
    twin_of: Option<usize>,
    /// The tags every process of this slot starts with (and the last
    /// `Fault::SetTags`).
    tags: Tags,
    checker: NotificationChecker,
    /// The user's app beside the running process, if the simulator has a factory.
    app: Option<Hosted>,
}

impl Slot {
    fn node(&self) -> Option<&Node> {
        match &self.proc {
            Proc::Running(node) => Some(node),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum Action {
    Deliver {
        from: SocketAddr,
        from_node: usize,
        from_life: u16,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        token: u64,
    },
    Unreachable {
        node: usize,
        life: u16,
        addr: SocketAddr,
    },
    Resume {
        node: usize,
        life: u16,
    },
    Fault(usize),
    /// A timer an app set (in the node's life `life`).
    AppTimer {
        node: usize,
        life: u16,
        timer: u64,
    },
    /// An event an app sent (in the node's life `life`) was refused.
    AppRefused {
        node: usize,
        life: u16,
        name: String,
        error: beethoven_core::SendEventError,
    },
    /// A periodic user invariant (its index) is due.
    Check(usize),
}

#[derive(Debug)]
struct Entry {
    at: Duration,
    seq: u64,
    action: Action,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Why a simulator could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The node config is invalid.
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    /// The cluster did not form within the limit.
    #[error("the cluster did not form within {limit:?}: {violation}")]
    Formation {
        /// The limit.
        limit: Duration,
        /// What was still wrong.
        violation: Violation,
    },
}

/// How [`SimBuilder::build`] brings the cluster together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum Formation {
    /// Real protocol traffic: node 0 starts alone and the others join in waves
    /// of doubling size, each through one random earlier node. Its cost grows as
    /// N² rows sent and merged; minutes beyond a few thousand nodes.
    #[default]
    Join,
    /// A cluster that formed long ago: every node starts at time zero and, at a
    /// random moment within the first probe interval, loads the whole table
    /// with [`Node::restore`] (every node alive at incarnation 0). No join
    /// traffic, and the nodes' probe cycles are not in lockstep. The way to start
    /// 10,000 nodes.
    Restore,
    /// No cluster: every node standalone and unjoined at time zero.
    #[cfg_attr(feature = "cli", value(skip))]
    None,
    /// Two clusters that do not know each other: nodes `0..n/2` and `n/2..n`
    /// each form as [`Formation::Join`] does, every joiner through an earlier
    /// node of its own half (disjoint seeds). The build waits until each half
    /// agrees on itself. What `split-merge` starts from.
    #[cfg_attr(feature = "cli", value(skip))]
    Split,
}

/// Builds a [`Sim`]: N nodes with a config and a seed.
#[derive(Clone, Debug)]
pub struct SimBuilder {
    nodes: usize,
    standby: usize,
    seed: u64,
    config: Config,
    network: NetworkModel,
    formation: Formation,
    formation_limit: Duration,
    keep_trace: bool,
    max_wave: usize,
    app: Option<AppFactory>,
    tags: NodeTags,
    case: Option<String>,
    record_timeline: bool,
    timer_lateness: Duration,
}

/// The tags of each node slot, given to the builder.
#[derive(Clone, Default)]
struct NodeTags(Option<Arc<dyn Fn(usize) -> Tags + Send + Sync>>);

impl fmt::Debug for NodeTags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "NodeTags(..)"
        } else {
            "NodeTags(none)"
        })
    }
}

impl Default for SimBuilder {
    fn default() -> Self {
        Self {
            nodes: 3,
            standby: 0,
            seed: 0,
            config: Config::for_cluster("sim"),
            network: NetworkModel::lan(),
            formation: Formation::Join,
            formation_limit: Duration::from_secs(600),
            keep_trace: false,
            max_wave: 512,
            app: None,
            tags: NodeTags::default(),
            case: None,
            record_timeline: false,
            timer_lateness: Duration::ZERO,
        }
    }
}

impl SimBuilder {
    /// The tags node `i` starts with (standby nodes included; restarts keep
    /// them). Default: none.
    pub fn tags(mut self, tags: impl Fn(usize) -> Tags + Send + Sync + 'static) -> Self {
        self.tags = NodeTags(Some(Arc::new(tags)));
        self
    }

    /// How many nodes form the cluster.
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Extra nodes that exist but start only when a [`Fault::Start`] says so;
    /// their indices follow the cluster's.
    pub fn standby(mut self, standby: usize) -> Self {
        self.standby = standby;
        self
    }

    /// The seed of everything random: the network, the nodes' generators, the
    /// choice of seeds to join through.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The node config (each node gets its own `rng_seed` derived from the seed).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The network model.
    pub fn network(mut self, network: NetworkModel) -> Self {
        self.network = network;
        self
    }

    /// Whether `build` forms the cluster by joining (default) or leaves every
    /// node standalone and unjoined at time zero (`false`).
    pub fn form(mut self, form: bool) -> Self {
        self.formation = if form {
            Formation::Join
        } else {
            Formation::None
        };
        self
    }

    /// How `build` brings the cluster together (default [`Formation::Join`]).
    pub fn formation(mut self, formation: Formation) -> Self {
        self.formation = formation;
        self
    }

    /// Most simulated time formation may take (default 600 s).
    pub fn formation_limit(mut self, limit: Duration) -> Self {
        self.formation_limit = limit;
        self
    }

    /// Keep every event in memory, not only the trace hash.
    pub fn keep_trace(mut self, keep: bool) -> Self {
        self.keep_trace = keep;
        self
    }

    /// Runs an [`App`] beside every node: `factory` builds a node's state from
    /// its index and name each time the node's process starts (formation
    /// included, so the apps hear the whole cluster form). See [`crate::app`].
    pub fn app<A: App>(
        mut self,
        factory: impl Fn(usize, &NodeName) -> A + Send + Sync + 'static,
    ) -> Self {
        self.app = Some(AppFactory::new(factory));
        self
    }

    /// The [`Scenario`](crate::Scenario) this simulator runs
    /// ([`Scenario::builder`](crate::Scenario::builder) sets it): a failed run
    /// ([`Sim::ensure_clean`]) prints it as the Rust that rebuilds it and the
    /// `beethoven-sim` command that replays it.
    pub fn case(mut self, scenario: &crate::Scenario) -> Self {
        self.case = Some(scenario.to_code());
        self
    }

    /// Records the run's [`Timeline`](crate::timeline::Timeline) from the
    /// start, formation included (default: off; [`Sim::record_timeline`]
    /// starts it later). What the HTML report draws.
    pub fn record_timeline(mut self, record: bool) -> Self {
        self.record_timeline = record;
        self
    }

    /// How late each node's timers fire, at most: every wakeup comes a
    /// uniformly random time in `0..=lateness` after the deadline the node
    /// asked for, as a real process's timers do (tokio's by up to a
    /// millisecond, more on a busy host). Default zero: on time, as the
    /// golden traces and published figures assume. A core that counts from
    /// its wakeup instead of its deadline drifts only under this.
    pub fn timer_lateness(mut self, lateness: Duration) -> Self {
        self.timer_lateness = lateness;
        self
    }

    /// Most nodes joining in one formation wave (default 512).
    pub fn max_wave(mut self, max_wave: usize) -> Self {
        self.max_wave = max_wave.max(1);
        self
    }

    /// Builds the simulator. Unless the formation is [`Formation::None`], the
    /// cluster is formed (see [`Formation`]) over a loss-free network with the
    /// model's latency; then the run continues until every node holds the same
    /// tracker with everyone online. Metrics start after that.
    pub fn build(self) -> Result<Sim, BuildError> {
        self.config.validate()?;
        #[allow(clippy::disallowed_methods)] // the simulator's epoch; only offsets matter
        let epoch = Instant::now();
        let total = self.nodes + self.standby;
        let mut sim = Sim {
            epoch,
            wall_epoch_nanos: 1_764_000_000_000_000_000,
            now: Duration::ZERO,
            seed: self.seed,
            rng: fastrand::Rng::with_seed(self.seed),
            config: self.config.clone(),
            slots: Vec::with_capacity(total),
            by_addr: HashMap::with_capacity_and_hasher(total, FnvBuild::default()),
            by_name: HashMap::with_capacity_and_hasher(total, FnvBuild::default()),
            heap: BinaryHeap::new(),
            seq: 0,
            network: Network::new(NetworkModel {
                loss: 0.0,
                duplicate: 0.0,
                reorder: 0.0,
                ..self.network.clone()
            }),
            schedule: Vec::new(),
            outcomes: Vec::new(),
            violations: Vec::new(),
            violation_count: 0,
            metrics: Metrics::default(),
            trace: Trace::new(self.keep_trace),
            steps: 0,
            timing: Timing::new(&self.config, self.nodes.max(2)),
            reachability: Reachability::new(Duration::ZERO),
            loss_before_fault: None,
            running: 0,
            watching: HashMap::default(),
            datagram_buf: Vec::new(),
            event_buf: Vec::new(),
            last_heal: None,
            verdicts: HashSet::default(),
            app_factory: self.app.clone(),
            invariants: Vec::new(),
            every_event_checks: false,
            case: self.case.clone(),
            timeline: None,
            timer_lateness: self.timer_lateness,
        };
        for i in 0..total {
            let name = node_name(i, total);
            let addr = node_addr(i, 0);
            sim.by_addr.insert(addr, i);
            sim.by_name.insert(name.clone(), i);
            sim.slots.push(Slot {
                checker: NotificationChecker::new(name.clone()),
                name,
                addr,
                life: 0,
                proc: Proc::Standby,
                paused_until: None,
                inbox: Vec::new(),
                slow: None,
                busy_until: Duration::ZERO,
                woken_at: None,
                timer_at: None,
                token: 0,
                fired_at: Duration::ZERO,
                fire_count: 0,
                disturbed_until: Duration::ZERO,
                leaving: false,
                joined: false,
                twin_of: None,
                app: None,
                tags: self.tags.0.as_ref().map_or_else(Tags::new, |tags| tags(i)),
            });
        }
        sim.reachability = Reachability::new(sim.timing.grace);
        if self.record_timeline {
            sim.record_timeline();
        }
        match self.formation {
            Formation::Join => sim.form(self.nodes, self.max_wave, self.formation_limit)?,
            Formation::Split => {
                let half = self.nodes / 2;
                sim.form_range(0..half, self.max_wave, self.formation_limit);
                sim.form_range(half..self.nodes, self.max_wave, self.formation_limit);
                sim.await_settled([0..half, half..self.nodes], self.formation_limit)?;
            }
            Formation::Restore => sim.restore_formed(self.nodes, self.formation_limit)?,
            Formation::None => {
                for i in 0..self.nodes {
                    sim.spawn(i);
                }
            }
        }
        sim.network.set_model(self.network);
        sim.metrics = Metrics::default();
        sim.trace.story_mut().start();
        Ok(sim)
    }
}

/// The simulator. See the module docs.
#[derive(Debug)]
pub struct Sim {
    epoch: Instant,
    wall_epoch_nanos: i64,
    now: Duration,
    seed: u64,
    rng: fastrand::Rng,
    config: Config,
    slots: Vec<Slot>,
    by_addr: HashMap<SocketAddr, usize, FnvBuild>,
    by_name: HashMap<NodeName, usize, FnvBuild>,
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    network: Network,
    schedule: Vec<Scheduled>,
    outcomes: Vec<Option<Outcome>>,
    violations: Vec<Violation>,
    violation_count: u64,
    metrics: Metrics,
    trace: Trace,
    steps: u64,
    timing: Timing,
    /// Which nodes were cut off from which, lately: the accuracy checker's
    /// ground truth for [`Standing::Apart`](crate::invariant::Standing::Apart).
    reachability: Reachability,
    /// The model's loss before the first `Fault::Loss` (restored by `Heal`).
    loss_before_fault: Option<f64>,
    /// Running processes (paused and leaving ones included).
    running: usize,
    /// Unfinished watches by subject.
    watching: HashMap<usize, Vec<usize>, FnvBuild>,
    /// Reused by `drain`.
    datagram_buf: Vec<(SocketAddr, Vec<u8>)>,
    /// Reused by `drain`.
    event_buf: Vec<beethoven_core::Event>,
    last_heal: Option<Duration>,
    /// Every death written so far, as (node index, incarnation): the accuracy
    /// checker judges each verdict where it is first written.
    verdicts: HashSet<(usize, u64), FnvBuild>,
    /// Builds each node's app when its process starts (none: no apps).
    app_factory: Option<AppFactory>,
    /// The user's invariants.
    invariants: Vec<UserInvariant>,
    /// Whether any user invariant is checked after every event.
    every_event_checks: bool,
    /// The scenario this simulator runs, as code (see [`SimBuilder::case`]).
    case: Option<String>,
    /// The recording for the report, when asked for (`record_timeline`).
    timeline: Option<Box<crate::timeline::Timeline>>,
    /// How late timers fire, at most (`SimBuilder::timer_lateness`).
    timer_lateness: Duration,
}

/// [`Sim::run_until`]'s condition did not hold within its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the condition did not hold within {limit:?} (simulated time now {now:?})")]
pub struct Timeout {
    /// The limit it was given.
    pub limit: Duration,
    /// Simulated time at the end of the wait.
    pub now: Duration,
}

impl Sim {
    /// A builder with defaults: 3 nodes, seed 0, default config, a LAN.
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    // ----- getters -----

    /// Simulated time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The `Instant` the nodes were given for simulated time `at`.
    pub fn instant(&self, at: Duration) -> Instant {
        self.epoch + at
    }

    /// The seed the simulator was built with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The node config (without the per-node `rng_seed`).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of node slots (cluster and standby).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no node slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Node `i`'s name.
    ///
    /// # Panics
    /// If `i` is not below [`Sim::len`]: an index the test made up.
    pub fn name(&self, i: usize) -> &NodeName {
        &self.slots[i].name
    }

    /// Node `i`'s current address.
    ///
    /// # Panics
    /// If `i` is not below [`Sim::len`].
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.slots[i].addr
    }

    /// The index of a node by name.
    pub fn index(&self, name: &NodeName) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Node `i`'s process, while it runs (`None` too for an `i` past the cluster).
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.slots.get(i).and_then(Slot::node)
    }

    /// Whether node `i` is a member in good standing: running, not leaving.
    pub fn is_up(&self, i: usize) -> bool {
        self.slots
            .get(i)
            .is_some_and(|slot| slot.node().is_some() && !slot.leaving)
    }

    /// Whether node `i` is paused right now.
    pub fn is_paused(&self, i: usize) -> bool {
        self.slots
            .get(i)
            .is_some_and(|slot| slot.paused_until.is_some())
    }

    /// Indices of the nodes that are up.
    pub fn up(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.is_up(i)).collect()
    }

    /// Names of the nodes that are down: crashed, or stopped after leaving
    /// (second processes under another node's name are not counted).
    pub fn down(&self) -> Vec<NodeName> {
        self.slots
            .iter()
            .filter(|s| matches!(s.proc, Proc::Crashed(_) | Proc::Stopped) && s.twin_of.is_none())
            .map(|s| s.name.clone())
            .collect()
    }

    /// What node `observer` believes about node `of`.
    pub fn status(&self, observer: usize, of: usize) -> Option<NodeStatus> {
        self.node(observer)?
            .row(&self.slots[of].name)
            .map(|row| row.status)
    }

    /// The network (to partition it or change the model mid-run).
    pub fn network_mut(&mut self) -> &mut Network {
        &mut self.network
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Every violation the incremental checkers found so far (the first 1000),
    /// in order: each with its simulated time (since the start) and what broke.
    /// Empty for a clean run; [`Sim::ensure_clean`] turns them into a report.
    ///
    /// ```
    /// use beethoven_testkit::{Sim, ViolationKind};
    ///
    /// let sim = Sim::builder().nodes(3).build()?;
    /// assert!(sim.violations().is_empty());
    /// let panics = sim.violations().iter().filter(|v| matches!(v.kind, ViolationKind::Panic { .. }));
    /// assert_eq!(panics.count(), 0);
    /// # Ok::<(), beethoven_testkit::BuildError>(())
    /// ```
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// How many violations were found (including those not kept).
    pub fn violation_count(&self) -> u64 {
        self.violation_count
    }

    /// The metrics since formation.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The metrics, to reset or adjust.
    pub fn metrics_mut(&mut self) -> &mut Metrics {
        &mut self.metrics
    }

    /// Traffic handed to the network so far (since formation).
    pub fn traffic(&self) -> Traffic {
        Traffic {
            packets: self.metrics.packets_sent,
            bytes: self.metrics.bytes_sent,
            wakes: self.metrics.wakes,
        }
    }

    /// The event trace.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Cuts the trace now (see [`Trace::cut`]): returns the events kept so far
    /// (formation, say) and keeps every event from here on.
    pub fn cut_trace(&mut self) -> Vec<crate::trace::TraceEntry> {
        self.trace.cut()
    }

    /// Bounds derived from the protocol's timers for this cluster's size.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Events processed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Scheduled faults with what became of each (`None`: not yet due), in
    /// the order they were scheduled, with their times counted from the start
    /// of the simulation.
    ///
    /// ```
    /// use std::time::Duration;
    /// use beethoven_testkit::{Fault, Outcome, Sim};
    ///
    /// let mut sim = Sim::builder().nodes(4).build()?;
    /// let soon = sim.now() + Duration::from_secs(1);
    /// sim.schedule(soon, Fault::Leave { node: 1 });
    /// sim.schedule(soon, Fault::Restart { node: 2, new_addr: false }); // not crashed
    /// sim.run_for(Duration::from_secs(2));
    /// let outcomes: Vec<_> = sim.outcomes().map(|(s, o)| (s.at, o.cloned())).collect();
    /// assert_eq!(
    ///     outcomes,
    ///     [(soon, Some(Outcome::Fired)), (soon, Some(Outcome::Skipped("not crashed")))]
    /// );
    /// # Ok::<(), beethoven_testkit::BuildError>(())
    /// ```
    pub fn outcomes(&self) -> impl Iterator<Item = (&Scheduled, Option<&Outcome>)> + '_ {
        self.schedule
            .iter()
            .zip(self.outcomes.iter().map(Option::as_ref))
    }

    /// When the network was last healed, if ever.
    pub fn last_heal(&self) -> Option<Duration> {
        self.last_heal
    }

    /// Where node `of` stands towards node `observer` now, for the accuracy
    /// invariant: what a declaration of `of` by `observer` would be judged by
    /// (see [`invariant::accuracy`](crate::invariant::accuracy)).
    pub fn standing(&self, observer: usize, of: usize) -> crate::invariant::Standing {
        use crate::invariant::Standing;
        let slot = &self.slots[of];
        let delayed = self
            .network
            .inbound_delay(of)
            .is_some_and(|(_, max)| max >= self.config.probe_timeout);
        if slot.node().is_none() || slot.leaving {
            Standing::Down
        } else if slot.paused_until.is_some()
            || slot.slow.is_some_and(|(_, until)| until > self.now)
            || self.now < slot.disturbed_until
            || delayed
        {
            Standing::Degraded
        } else if self.reachability.apart_within(observer, of, self.now) {
            Standing::Apart
        } else {
            Standing::Healthy
        }
    }

    // ----- commands -----

    /// Schedules `fault` at simulated time `at`, counted from the start of the
    /// simulation (formation included: `sim.now() + delay` for a delay from
    /// now); at once if `at` has passed.
    pub fn schedule(&mut self, at: Duration, fault: Fault) {
        let index = self.schedule.len();
        self.schedule.push(Scheduled { at, fault });
        self.outcomes.push(None);
        self.push(at.max(self.now), Action::Fault(index));
    }

    /// Schedules every fault of a schedule whose times count from `offset`
    /// (a [`Scenario`](crate::Scenario)'s count from its chaos phase's start:
    /// [`Scenario::run_chaos`](crate::Scenario::run_chaos) passes `sim.now()`).
    pub fn schedule_all(&mut self, offset: Duration, schedule: &[Scheduled]) {
        for s in schedule {
            self.schedule(offset + s.at, s.fault.clone());
        }
    }

    /// Runs a command on running node `i` at the current time (then drains it).
    /// Returns `None` if the node is not running.
    pub fn command<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> Option<R> {
        self.drive(i, f)
    }

    /// Runs every event up to `now + duration`; time then stands there.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        while self.step(until) {}
        self.now = until;
    }

    /// Runs until `done` holds, checking it every `every` of simulated time, or
    /// until `limit` passed. Returns how long it took, or a [`Timeout`]: a
    /// wait whose end matters is checked (`?`, `expect`); one that is only a
    /// pause before other checks says so (`let _ =`, `.ok()`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use beethoven_testkit::Sim;
    ///
    /// let mut sim = Sim::builder().nodes(3).form(false).build()?;
    /// let limit = Duration::from_secs(1);
    /// let timeout = sim.run_until(limit, Duration::from_millis(10), Sim::settled);
    /// assert_eq!(timeout.map_err(|t| t.limit), Err(limit), "three standalone nodes never settle");
    /// # Ok::<(), beethoven_testkit::BuildError>(())
    /// ```
    #[must_use = "a timeout is an error: check it, or say it does not matter with `let _ =`"]
    pub fn run_until(
        &mut self,
        limit: Duration,
        every: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<Duration, Timeout> {
        let start = self.now;
        let end = start + limit;
        let every = every.max(Duration::from_micros(1));
        loop {
            if done(self) {
                return Ok(self.now - start);
            }
            if self.now >= end {
                return Err(Timeout {
                    limit,
                    now: self.now,
                });
            }
            let until = (self.now + every).min(end);
            while self.step(until) {}
            self.now = until;
        }
    }

    /// Whether every up node holds the same tracker (compared by digest, and by
    /// size), in which every up node is online and every down node is not.
    pub fn settled(&self) -> bool {
        let up = self.up();
        let Some(&first) = up.first() else {
            return true;
        };
        let Some(reference) = self.node(first) else {
            return false;
        };
        let (digest, len) = (reference.tracker().digest(), reference.tracker().len());
        let same = up.iter().all(|&i| {
            self.node(i)
                .is_some_and(|n| n.tracker().len() == len && n.tracker().digest() == digest)
        });
        same && up
            .iter()
            .all(|&i| self.status(first, i) == Some(NodeStatus::Online))
            && reference.tracker().online_count() == up.len()
    }

    /// Whether the running nodes of `group` hold identical trackers in which
    /// exactly they are online.
    pub fn settled_among(&self, group: std::ops::Range<usize>) -> bool {
        let up: Vec<usize> = group.filter(|&i| self.is_up(i)).collect();
        let Some(reference) = up.first().and_then(|&i| self.node(i)) else {
            return true;
        };
        let (digest, len) = (reference.tracker().digest(), reference.tracker().len());
        up.iter().all(|&i| {
            self.node(i)
                .is_some_and(|n| n.tracker().len() == len && n.tracker().digest() == digest)
                && reference
                    .row(&self.slots[i].name)
                    .is_some_and(|row| row.status == NodeStatus::Online)
        }) && reference.tracker().online_count() == up.len()
    }

    /// Whether no up node has updates waiting to be disseminated (gossip has
    /// died down; steady-state traffic is measured from here).
    pub fn quiet(&self) -> bool {
        self.up()
            .into_iter()
            .all(|i| self.node(i).is_some_and(|n| n.pending_updates() == 0))
    }

    /// Heals the network, ends every pause and slowness, and restarts every
    /// crashed node (at its old address); then runs until the cluster has
    /// settled, checking the whole-cluster invariants (convergence,
    /// completeness, liveness) if it does not within `bound`. Returns how long
    /// settling took.
    ///
    /// Healing is [`Fault::Heal`]: partitions, link rules and inbound delays
    /// end, and loss turned on by [`Fault::Loss`] (the scenarios' `--loss`)
    /// returns to the loss the simulator was built with. That base loss is the
    /// network's climate, not a fault: it stays, and the bound must cover it.
    /// A second process under another node's name (`Fault::StartTwin`) is not
    /// restarted if it crashed.
    pub fn liveness_gate(&mut self, bound: Duration) -> Result<Duration, Violation> {
        self.apply(Fault::Heal);
        for i in 0..self.slots.len() {
            if matches!(self.slots[i].proc, Proc::Crashed(_)) && self.slots[i].twin_of.is_none() {
                self.apply(Fault::Restart {
                    node: i,
                    new_addr: false,
                });
            }
            self.slots[i].slow = None;
            if let Some(until) = self.slots[i].paused_until {
                let life = self.slots[i].life;
                self.push(until, Action::Resume { node: i, life });
            }
        }
        let every = if self.slots.len() > 1000 {
            Duration::from_millis(500)
        } else {
            Duration::from_millis(50)
        };
        if let Ok(took) = self.run_until(bound, every, Sim::settled) {
            return Ok(took);
        }
        Err(self.whole_cluster_violation(bound))
    }

    /// The first whole-cluster invariant that does not hold now, checked exactly
    /// (row by row): convergence, then completeness, then liveness.
    pub fn whole_cluster_violation(&self, bound: Duration) -> Violation {
        let up: Vec<&Node> = self.up().into_iter().filter_map(|i| self.node(i)).collect();
        let kind = crate::invariant::check_converged(up.iter().copied(), bound)
            .and_then(|()| crate::invariant::check_complete(up.iter().copied(), &self.down()))
            .and_then(|()| crate::invariant::check_live(up.iter().copied()))
            .err()
            .unwrap_or(ViolationKind::NotConverged {
                bound,
                node: String::new(),
                detail: "digests differ but rows agree".into(),
            });
        Violation { at: self.now, kind }
    }

    // ----- internals shared by the submodules -----

    fn push(&mut self, at: Duration, action: Action) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            action,
        }));
    }

    fn violation(&mut self, kind: ViolationKind) {
        self.violation_count += 1;
        tracing::debug!(at = ?self.now, %kind, "invariant violated");
        if self.violations.len() < MAX_KEPT_VIOLATIONS {
            self.violations.push(Violation { at: self.now, kind });
        }
    }

    fn wall_clock(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(self.wall_epoch_nanos + self.now.as_nanos() as i64)
    }

    /// The config of node `i` in life `life`: its own seeded generator.
    fn node_config(&self, i: usize, life: u16) -> Config {
        let mut h = Fnv::default();
        std::hash::Hasher::write(&mut h, &self.seed.to_le_bytes());
        std::hash::Hasher::write(&mut h, &(i as u64).to_le_bytes());
        std::hash::Hasher::write(&mut h, &life.to_le_bytes());
        self.config
            .clone()
            .with_rng_seed(std::hash::Hasher::finish(&h))
    }

    /// One event; false when none is due by `until`.
    fn step(&mut self, until: Duration) -> bool {
        match self.heap.peek() {
            Some(Reverse(entry)) if entry.at <= until => {}
            _ => return false,
        }
        let Some(Reverse(entry)) = self.heap.pop() else {
            return false;
        };
        self.now = self.now.max(entry.at);
        self.steps += 1;
        self.dispatch(entry);
        if self.every_event_checks {
            self.check_every_event();
        }
        true
    }
}
