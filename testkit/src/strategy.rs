//! proptest strategies: whole [`Scenario`]s ([`arb_scenario`]: cluster size,
//! seed, network, config and fault schedule), or their parts: clusters, networks,
//! configs, coherent fault schedules, and tags and tag changes.
//!
//! A schedule is drawn as raw (time, kind, number) triples and made coherent by
//! the [`Planner`], so proptest shrinks the raw draws and every shrunk case is
//! still a schedule whose faults can all fire. [`arb_scenario`] draws every part
//! independently (no `prop_flat_map`): the schedule is planned for whatever size
//! was drawn, so each part shrinks on its own (fewer nodes, fewer and earlier
//! faults, a plainer network, the default config). A failing case prints the
//! scenario, seed included, and proptest keeps it in the test's
//! `.proptest-regressions` file, replayed first on every later run.

use std::time::Duration;

use beethoven_core::{Config, Tags};
use proptest::prelude::*;

use crate::fault::{Fault, FaultKind, Planner, Scheduled};
use crate::network::{BurstModel, NetworkModel};
use crate::sim::{BuildError, Sim, SimBuilder};

/// A cluster to simulate.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSpec {
    /// Cluster size.
    pub nodes: usize,
    /// The simulator's seed.
    pub seed: u64,
    /// The network.
    pub network: NetworkModel,
}

impl ClusterSpec {
    /// Builds and forms the cluster with the default config.
    pub fn build(&self) -> Result<Sim, BuildError> {
        self.build_with(Config::for_cluster("prop"))
    }

    /// Builds and forms the cluster with `config`.
    pub fn build_with(&self, config: Config) -> Result<Sim, BuildError> {
        self.builder(config).build()
    }

    /// A builder for the cluster with `config`, to add to (an app, say).
    pub fn builder(&self, config: Config) -> SimBuilder {
        Sim::builder()
            .nodes(self.nodes)
            .seed(self.seed)
            .config(config)
            .network(self.network.clone())
    }
}

/// A network: 0.2–5 ms latency with half of it as jitter, up to 5% loss, up to 2%
/// duplication, up to 5% reordering.
pub fn arb_network() -> impl Strategy<Value = NetworkModel> {
    (200u64..5000, 0u32..=50, 0u32..=20, 0u32..=50).prop_map(|(latency_us, loss, dup, reorder)| {
        NetworkModel {
            duplicate: f64::from(dup) / 1000.0,
            reorder: f64::from(reorder) / 1000.0,
            ..NetworkModel::lan()
                .with_latency(Duration::from_micros(latency_us))
                .with_loss(f64::from(loss) / 1000.0)
        }
    })
}

/// A cluster of 5–30 nodes with any seed and [`arb_network`].
pub fn arb_cluster() -> impl Strategy<Value = ClusterSpec> {
    arb_cluster_of(5..=30)
}

/// A cluster whose size is drawn from `nodes`.
pub fn arb_cluster_of(
    nodes: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = ClusterSpec> {
    (nodes, any::<u64>(), arb_network()).prop_map(|(nodes, seed, network)| ClusterSpec {
        nodes,
        seed,
        network,
    })
}

/// A coherent schedule of 1–`max_faults` faults of any kind over `span`, for a
/// cluster of `nodes` nodes. Times are offsets from the start of the chaos phase.
pub fn arb_fault_schedule(
    nodes: usize,
    span: Duration,
    max_faults: usize,
) -> impl Strategy<Value = Vec<Scheduled>> {
    arb_fault_schedule_of(nodes, span, max_faults, FaultKind::ALL.to_vec())
}

/// Like [`arb_fault_schedule`], with the kinds to draw from.
pub fn arb_fault_schedule_of(
    nodes: usize,
    span: Duration,
    max_faults: usize,
    kinds: Vec<FaultKind>,
) -> impl Strategy<Value = Vec<Scheduled>> {
    proptest::collection::vec(arb_draw(span, kinds), 1..=max_faults.max(1))
        .prop_map(move |draws| plan(nodes, draws))
}

/// One raw fault draw: (milliseconds into the span, kind, a number the planner
/// picks nodes and durations with).
type Draw = (u64, FaultKind, u64);

fn arb_draw(span: Duration, kinds: Vec<FaultKind>) -> impl Strategy<Value = Draw> {
    let span_ms = span.as_millis().max(1) as u64;
    (0..span_ms, proptest::sample::select(kinds), any::<u64>())
}

/// Raw draws made a coherent schedule for `nodes` nodes.
fn plan(nodes: usize, mut draws: Vec<Draw>) -> Vec<Scheduled> {
    draws.sort_by_key(|&(at, ..)| at);
    let mut planner = Planner::new(nodes);
    for (at, kind, pick) in draws {
        planner.push(Duration::from_millis(at), kind, pick);
    }
    planner.finish()
}

/// A burst model ([`BurstModel`]): bursts of 0.2–3 s on average, 2–30 s
/// apart on average, 30–100 % loss inside, up to 5 % outside.
pub fn arb_burst_model() -> impl Strategy<Value = BurstModel> {
    (200u64..=3000, 2u64..=30, 30u32..=100, 0u32..=5).prop_map(
        |(burst_ms, gap_s, loss_in, loss_out)| BurstModel {
            mean_burst: Duration::from_millis(burst_ms),
            mean_gap: Duration::from_secs(gap_s),
            loss_in: f64::from(loss_in) / 100.0,
            loss_out: f64::from(loss_out) / 100.0,
        },
    )
}

/// Cluster-wide brownouts over `span` drawn from `model` with a drawn seed
/// (Gilbert–Elliott bursts): offsets from the start of the chaos phase. The
/// loss between bursts is the caller's (a [`Fault::Loss`] of `loss_out`).
pub fn arb_bursts(model: BurstModel, span: Duration) -> impl Strategy<Value = Vec<Scheduled>> {
    any::<u64>().prop_map(move |seed| burst_schedule(&model, seed, span, &[]))
}

/// The brownouts of `model` over `span` for `seed`, on `links` (empty: cluster-wide).
pub fn burst_schedule(
    model: &BurstModel,
    seed: u64,
    span: Duration,
    links: &[(usize, usize)],
) -> Vec<Scheduled> {
    model
        .bursts(&mut fastrand::Rng::with_seed(seed), span)
        .into_iter()
        .map(|(at, duration)| Scheduled {
            at,
            fault: Fault::Brownout {
                loss: model.loss_in,
                duration,
                links: links.to_vec(),
            },
        })
        .collect()
}

/// A config near the LAN defaults: probe interval, suspicion minimum, gossip
/// fanout and retransmissions each drawn from a few values, the default first
/// (so a failing case shrinks back to the default config where it can).
pub fn arb_config() -> impl Strategy<Value = Config> {
    use proptest::sample::select;
    (
        select(vec![150u64, 100, 200, 300]),
        select(vec![500u64, 300, 800, 1200]),
        select(vec![3usize, 2, 4]),
        select(vec![4u32, 3, 6]),
    )
        .prop_map(|(probe_ms, suspicion_ms, fanout, retransmit)| {
            Config::for_cluster("prop")
                .with_probe_interval(Duration::from_millis(probe_ms))
                .with_probe_timeout(Duration::from_millis(probe_ms / 2))
                .with_suspicion_min(Duration::from_millis(suspicion_ms))
                .with_gossip_fanout(fanout)
                .with_retransmit_mult(retransmit)
        })
}

/// One random case: a cluster (size, seed, network), a config, and a fault
/// schedule over a chaos phase. See [`arb_scenario`]. Its `Debug` (what
/// proptest prints) is the Rust that builds it ([`Scenario::to_code`], with the
/// builders in [`scenario::code`](crate::scenario::code)).
#[derive(Clone, PartialEq)]
pub struct Scenario {
    /// Size, seed and network.
    pub cluster: ClusterSpec,
    /// The nodes' config.
    pub config: Config,
    /// The faults, as offsets from the start of the chaos phase.
    pub schedule: Vec<Scheduled>,
    /// How long the chaos phase lasts (faults are drawn over it).
    pub chaos: Duration,
}

/// How long after the chaos phase a pause or slowness drawn at its very end may
/// still last (the [`Planner`] draws them up to 3 s).
pub const FAULT_TAIL: Duration = Duration::from_secs(3);

impl Scenario {
    /// A builder for the scenario's cluster and config: add an app, then build.
    /// A failed run of it prints the scenario to replay ([`SimBuilder::case`]).
    pub fn builder(&self) -> SimBuilder {
        self.cluster.builder(self.config.clone()).case(self)
    }

    /// Builds and forms the cluster (no app).
    pub fn build(&self) -> Result<Sim, BuildError> {
        self.builder().build()
    }

    /// Runs the chaos phase on `sim` from now: schedules the faults and runs
    /// until the last of them (and any pause or slowness it started) is over.
    /// Then [`Sim::liveness_gate`] is the calm phase.
    pub fn run_chaos(&self, sim: &mut Sim) {
        sim.schedule_all(sim.now(), &self.schedule);
        sim.run_for(self.chaos + FAULT_TAIL);
    }
}

/// The ranges [`arb_scenario_in`] draws from.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ScenarioSpace {
    /// Cluster sizes. Default 4–8 (crashes need 4: the planner keeps more than
    /// two thirds of the nodes up).
    pub nodes: std::ops::RangeInclusive<usize>,
    /// The chaos phase. Default 8 s.
    pub chaos: Duration,
    /// Most faults (0 is drawn too). Default 4.
    pub max_faults: usize,
    /// The fault kinds drawn from; the first is what a shrunk fault becomes.
    /// Default [`FaultKind::ALL`].
    pub kinds: Vec<FaultKind>,
}

impl Default for ScenarioSpace {
    fn default() -> Self {
        Self {
            nodes: 4..=8,
            chaos: Duration::from_secs(8),
            max_faults: 4,
            kinds: FaultKind::ALL.to_vec(),
        }
    }
}

impl ScenarioSpace {
    /// The same space with cluster sizes `nodes`.
    pub fn with_nodes(mut self, nodes: std::ops::RangeInclusive<usize>) -> Self {
        self.nodes = nodes;
        self
    }

    /// The same space with a chaos phase of `chaos`.
    pub fn with_chaos(mut self, chaos: Duration) -> Self {
        self.chaos = chaos;
        self
    }

    /// The same space with at most `max_faults` faults.
    pub fn with_max_faults(mut self, max_faults: usize) -> Self {
        self.max_faults = max_faults;
        self
    }

    /// The same space drawing faults of `kinds` only.
    pub fn with_kinds(mut self, kinds: Vec<FaultKind>) -> Self {
        self.kinds = kinds;
        self
    }
}

/// Random [`Scenario`]s from the default [`ScenarioSpace`]: 4–8 nodes, any
/// seed, [`arb_network`], [`arb_config`], up to 4 faults of any kind over 8 s.
pub fn arb_scenario() -> impl Strategy<Value = Scenario> {
    arb_scenario_in(ScenarioSpace::default())
}

/// Random [`Scenario`]s from `space`. Every part is drawn independently and
/// shrinks on its own.
pub fn arb_scenario_in(space: ScenarioSpace) -> impl Strategy<Value = Scenario> {
    let ScenarioSpace {
        nodes,
        chaos,
        max_faults,
        kinds,
    } = space;
    let draws = proptest::collection::vec(arb_draw(chaos, kinds), 0..=max_faults);
    (arb_cluster_of(nodes), arb_config(), draws).prop_map(move |(cluster, config, draws)| {
        Scenario {
            schedule: plan(cluster.nodes, draws),
            cluster,
            config,
            chaos,
        }
    })
}

/// Tags of 0–`max_entries` entries: short keys from a small alphabet (so
/// draws share keys and queries find several nodes), values of any printable
/// UTF-8 up to `max_value` chars. Always well-formed; the encoded size is the
/// caller's to bound (see [`arb_tags_within`]).
pub fn arb_tags(max_entries: usize, max_value: usize) -> impl Strategy<Value = Tags> {
    let key = proptest::sample::select(vec!["role", "zone", "grpc", "http", "ver", "db", "é"]);
    let value =
        proptest::string::string_regex(&format!("\\PC{{0,{max_value}}}")).expect("a valid regex");
    proptest::collection::btree_map(key.prop_map(str::to_owned), value, 0..=max_entries)
        .prop_map(Tags::from)
}

/// [`arb_tags`] whose encoded size keeps `config`'s limits.
pub fn arb_tags_within(config: &Config) -> impl Strategy<Value = Tags> + use<> {
    let (max_size, max_count) = (config.max_tags_size, config.max_tags);
    arb_tags(max_count.min(7), 64).prop_filter("within the tag limits", move |tags| {
        tags.encoded_len() <= max_size
    })
}

/// 1–`max_changes` tag changes ([`Fault::SetTags`]) of random nodes of a
/// `nodes`-node cluster over `span`, in time order, with tags within `config`'s limits.
pub fn arb_tag_changes(
    nodes: usize,
    span: Duration,
    max_changes: usize,
    config: &Config,
) -> impl Strategy<Value = Vec<Scheduled>> + use<> {
    let span_ms = span.as_millis().max(1) as u64;
    let change = (0..span_ms, 0..nodes.max(1), arb_tags_within(config));
    proptest::collection::vec(change, 1..=max_changes.max(1)).prop_map(|mut changes| {
        changes.sort_by_key(|&(at, ..)| at);
        changes
            .into_iter()
            .map(|(at, node, tags)| Scheduled {
                at: Duration::from_millis(at),
                fault: Fault::SetTags { node, tags },
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn drawn_clusters_and_schedules_are_in_range_and_coherent() {
        let mut runner = TestRunner::deterministic();
        for _ in 0..50 {
            let cluster = arb_cluster()
                .new_tree(&mut runner)
                .expect("draws")
                .current();
            assert!((5..=30).contains(&cluster.nodes));
            assert!(cluster.network.loss <= 0.05);
            let span = Duration::from_secs(20);
            let schedule = arb_fault_schedule(cluster.nodes, span, 10)
                .new_tree(&mut runner)
                .expect("draws")
                .current();
            assert!(schedule.len() <= 10);
            assert!(schedule.windows(2).all(|w| w[0].at <= w[1].at));
            assert!(schedule.iter().all(|s| s.at <= span));
            for s in &schedule {
                if let Some(node) = s.fault.node() {
                    assert!(node < cluster.nodes);
                }
                if let Fault::Partition { groups } = &s.fault {
                    assert!(groups.iter().flatten().all(|&n| n < cluster.nodes));
                }
            }
        }
    }

    #[test]
    fn drawn_scenarios_are_in_their_space_with_valid_configs() {
        let mut runner = TestRunner::deterministic();
        let space = ScenarioSpace::default().with_max_faults(6);
        for _ in 0..100 {
            let scenario = arb_scenario_in(space.clone())
                .new_tree(&mut runner)
                .expect("draws")
                .current();
            assert!(space.nodes.contains(&scenario.cluster.nodes));
            assert_eq!(scenario.config.validate(), Ok(()));
            assert!(scenario.schedule.len() <= 6);
            assert!(scenario.schedule.iter().all(|s| s.at <= space.chaos));
            let nodes = scenario.cluster.nodes;
            assert!(
                scenario
                    .schedule
                    .iter()
                    .filter_map(|s| s.fault.node())
                    .all(|n| n < nodes)
            );
        }
    }

    #[test]
    fn a_scenario_shrinks_to_fewer_nodes_and_faults_and_the_default_config() {
        let mut runner = TestRunner::deterministic();
        let mut tree = arb_scenario().new_tree(&mut runner).expect("draws");
        // Shrink as if every case failed: proptest's walk to the simplest value.
        let mut steps = 0;
        while tree.simplify() && steps < 10_000 {
            steps += 1;
        }
        let simplest = tree.current();
        assert_eq!(simplest.cluster.nodes, 4);
        assert!(simplest.schedule.is_empty());
        assert_eq!(simplest.config, Config::for_cluster("prop"), "the defaults");
        assert_eq!(simplest.cluster.network.loss, 0.0);
    }

    #[test]
    fn drawn_tag_changes_keep_the_limits_and_the_time_order() {
        let mut runner = TestRunner::deterministic();
        let mut config = Config::default();
        config.max_tags_size = 96;
        let span = Duration::from_secs(5);
        for _ in 0..50 {
            let changes = arb_tag_changes(10, span, 6, &config)
                .new_tree(&mut runner)
                .expect("draws")
                .current();
            assert!((1..=6).contains(&changes.len()));
            assert!(changes.windows(2).all(|w| w[0].at <= w[1].at));
            for change in &changes {
                let Fault::SetTags { node, tags } = &change.fault else {
                    panic!("only tag changes: {change:?}");
                };
                assert!(*node < 10 && change.at <= span);
                assert!(tags.encoded_len() <= 96 && tags.len() <= config.max_tags);
            }
        }
    }
}
