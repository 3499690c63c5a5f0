//! proptest strategies: clusters (size, seed, network), coherent fault
//! schedules, and tags and tag changes.
//!
//! A schedule is drawn as raw (time, kind, number) triples and made coherent by
//! the [`Planner`], so proptest shrinks the raw draws and every shrunk case is
//! still a schedule whose faults can all fire. A failing case prints the cluster
//! (with its seed) and the minimal schedule.

use std::time::Duration;

use beethoven_core::{Config, Tags};
use proptest::prelude::*;

use crate::fault::{Fault, FaultKind, Planner, Scheduled};
use crate::network::NetworkModel;
use crate::sim::{BuildError, Sim};

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
        Sim::builder()
            .nodes(self.nodes)
            .seed(self.seed)
            .config(config)
            .network(self.network.clone())
            .build()
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
    let span_ms = span.as_millis().max(1) as u64;
    let draw = (0..span_ms, proptest::sample::select(kinds), any::<u64>());
    proptest::collection::vec(draw, 1..=max_faults.max(1)).prop_map(move |mut draws| {
        draws.sort_by_key(|&(at, ..)| at);
        let mut planner = Planner::new(nodes);
        for (at, kind, pick) in draws {
            planner.push(Duration::from_millis(at), kind, pick);
        }
        planner.finish()
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
