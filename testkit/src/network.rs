//! The simulated network: latency and jitter, loss, duplication, reordering,
//! symmetric and one-way partitions, per-link rules, per-node inbound delays,
//! and correlated loss: brownouts (heavy loss for a while, cluster-wide or on
//! chosen links) and the burst model that schedules them ([`BurstModel`]).
//!
//! A brownout is weather, not a cut: even at a loss of 1 it does not split the
//! network's [components](Network::components), so a healthy node declared
//! offline during one is a false declaration for the accuracy invariant.
//!
//! The network decides, when a datagram is sent, whether it arrives and after what
//! delay (possibly twice, when duplicated). It is seeded through the generator the
//! simulator hands it, so the same seed gives the same fate to every datagram.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

/// The whole-network defaults every datagram is subject to.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetworkModel {
    /// One-way base latency.
    pub latency: Duration,
    /// Each datagram's latency is `latency ± jitter` (uniform), never below zero.
    pub jitter: Duration,
    /// Probability that a datagram is lost, in `0.0..=1.0`.
    pub loss: f64,
    /// Probability that a datagram is delivered twice (the copy has its own delay).
    pub duplicate: f64,
    /// Probability that a datagram is held back by an extra delay of up to
    /// `reorder_delay`, so later datagrams overtake it.
    pub reorder: f64,
    /// Largest extra delay of a reordered datagram.
    pub reorder_delay: Duration,
}

impl NetworkModel {
    /// A LAN: 1 ms ± 0.5 ms, no loss, no duplication, no reordering beyond jitter.
    pub fn lan() -> Self {
        Self {
            latency: Duration::from_millis(1),
            jitter: Duration::from_micros(500),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(10),
        }
    }

    /// The same model with another loss probability (builder style).
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss.clamp(0.0, 1.0);
        self
    }

    /// The same model with another base latency; jitter is set to half of it.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self.jitter = latency / 2;
        self
    }

    /// An upper bound of one round trip: twice the worst one-way delay without reordering.
    pub fn round_trip(&self) -> Duration {
        (self.latency + self.jitter) * 2
    }
}

impl Default for NetworkModel {
    fn default() -> Self {
        Self::lan()
    }
}

/// Extra conditions on one directed link (sender → receiver).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LinkRule {
    /// Drop everything on this link.
    pub blocked: bool,
    /// Loss probability on this link, instead of the model's.
    pub loss: Option<f64>,
    /// Added to the model's latency.
    pub extra_latency: Duration,
}

/// The network state: the model plus the partitions and link rules in force.
#[derive(Clone, Debug, Default)]
pub struct Network {
    model: NetworkModel,
    /// Symmetric partition: a group number per node index; nodes in different
    /// groups cannot reach each other. Absent nodes are in group 0.
    groups: BTreeMap<usize, u32>,
    /// One-way partitions: (from, to) pairs of node indices that drop everything.
    one_way: BTreeSet<(usize, usize)>,
    /// Per-link rules, directed.
    links: BTreeMap<(usize, usize), LinkRule>,
    /// Per-node inbound delay: every datagram to the node arrives late by a
    /// uniform draw from this range (a member whose every datagram is late).
    inbound_delay: BTreeMap<usize, (Duration, Duration)>,
    /// Brownouts in force or to come, in the order they started.
    brownouts: Vec<Brownout>,
}

/// Heavy loss for a while (see [`Network::brown_out`]).
#[derive(Clone, Debug, PartialEq)]
struct Brownout {
    loss: f64,
    /// Simulated time of its end.
    until: Duration,
    /// The directed links it hits; empty: every link.
    links: BTreeSet<(usize, usize)>,
}

impl Brownout {
    fn hits(&self, now: Duration, from: usize, to: usize) -> bool {
        now < self.until && (self.links.is_empty() || self.links.contains(&(from, to)))
    }
}

/// Correlated loss as a continuous-time Gilbert–Elliott chain: the network
/// alternates between a good state (loss `loss_out`, the model's) and bursts
/// (loss `loss_in`), each sojourn exponentially distributed around its mean.
/// [`bursts`](Self::bursts) turns a seeded draw of it into brownouts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BurstModel {
    /// Mean length of a burst.
    pub mean_burst: Duration,
    /// Mean time between two bursts.
    pub mean_gap: Duration,
    /// Loss inside a burst.
    pub loss_in: f64,
    /// Loss between bursts (the model's loss while the bursts run).
    pub loss_out: f64,
}

impl Default for BurstModel {
    /// Bursts of 1 s on average, every 10 s on average, 70 % loss inside, 2 % outside.
    fn default() -> Self {
        Self {
            mean_burst: Duration::from_secs(1),
            mean_gap: Duration::from_secs(10),
            loss_in: 0.7,
            loss_out: 0.02,
        }
    }
}

impl BurstModel {
    /// The bursts of one run over `span` (starting in the good state), as
    /// (start, length) pairs in time order: the same `rng` state gives the
    /// same bursts.
    pub fn bursts(&self, rng: &mut fastrand::Rng, span: Duration) -> Vec<(Duration, Duration)> {
        let exponential = |rng: &mut fastrand::Rng, mean: Duration| {
            // 1 - f64() is in (0, 1]: its logarithm is finite.
            mean.mul_f64(-(1.0 - rng.f64()).ln())
        };
        let mut bursts = Vec::new();
        let mut at = exponential(rng, self.mean_gap);
        while at < span {
            let length = exponential(rng, self.mean_burst).max(Duration::from_millis(1));
            bursts.push((at, length));
            at += length + exponential(rng, self.mean_gap);
        }
        bursts
    }
}

/// What the network does with one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Dropped: lost, or blocked by a partition or a link rule.
    Dropped,
    /// Delivered once after this delay.
    Delivered(Duration),
    /// Delivered twice, after each delay.
    Duplicated(Duration, Duration),
}

impl Network {
    /// A network without partitions or link rules.
    pub fn new(model: NetworkModel) -> Self {
        Self {
            model,
            ..Self::default()
        }
    }

    /// The model in force.
    pub fn model(&self) -> &NetworkModel {
        &self.model
    }

    /// Replaces the model (partitions and link rules stay).
    pub fn set_model(&mut self, model: NetworkModel) {
        self.model = model;
    }

    /// Splits the listed groups of node indices off from each other and from
    /// everyone not listed (who form one more group). Replaces any earlier
    /// symmetric partition.
    pub fn partition(&mut self, groups: &[Vec<usize>]) {
        self.groups.clear();
        for (number, group) in groups.iter().enumerate() {
            for &node in group {
                self.groups.insert(node, number as u32 + 1);
            }
        }
    }

    /// Drops everything sent from any of `from` to any of `to` (but not back).
    pub fn block_one_way(&mut self, from: &[usize], to: &[usize]) {
        for &a in from {
            for &b in to {
                if a != b {
                    self.one_way.insert((a, b));
                }
            }
        }
    }

    /// Sets the rule of the directed link `from → to`.
    pub fn set_link(&mut self, from: usize, to: usize, rule: LinkRule) {
        self.links.insert((from, to), rule);
    }

    /// Every datagram to `node` arrives late by a uniform draw from `min..=max`
    /// (on top of the model's delay and any link rule's), until [`heal`](Self::heal).
    pub fn set_inbound_delay(&mut self, node: usize, min: Duration, max: Duration) {
        self.inbound_delay
            .insert(node, (min.min(max), max.max(min)));
    }

    /// The inbound delay range of `node`, if one is set.
    pub fn inbound_delay(&self, node: usize) -> Option<(Duration, Duration)> {
        self.inbound_delay.get(&node).copied()
    }

    /// The nodes with an inbound delay, in index order.
    pub fn delayed(&self) -> impl Iterator<Item = usize> + '_ {
        self.inbound_delay.keys().copied()
    }

    /// From `now` until `now + duration`, datagrams on `links` (directed;
    /// empty: every link) are lost with probability `loss`, or the loss in
    /// force there if higher. Brownouts may overlap; each ends on its own, or
    /// at [`heal`](Self::heal).
    pub fn brown_out(
        &mut self,
        now: Duration,
        loss: f64,
        duration: Duration,
        links: &[(usize, usize)],
    ) {
        self.brownouts.retain(|b| b.until > now);
        self.brownouts.push(Brownout {
            loss: loss.clamp(0.0, 1.0),
            until: now + duration,
            links: links.iter().copied().collect(),
        });
    }

    /// The highest loss of the brownouts hitting `from → to` at `now`, if any.
    pub fn brownout_loss(&self, now: Duration, from: usize, to: usize) -> Option<f64> {
        self.brownouts
            .iter()
            .filter(|b| b.hits(now, from, to))
            .map(|b| b.loss)
            .reduce(f64::max)
    }

    /// Removes every partition, link rule, inbound delay and brownout; the
    /// model stays.
    pub fn heal(&mut self) {
        self.groups.clear();
        self.one_way.clear();
        self.links.clear();
        self.inbound_delay.clear();
        self.brownouts.clear();
    }

    /// Whether any partition, link rule or inbound delay is in force.
    pub fn is_disturbed(&self) -> bool {
        !self.groups.is_empty()
            || !self.one_way.is_empty()
            || !self.links.is_empty()
            || !self.inbound_delay.is_empty()
    }

    /// Whether a partition, link rule or inbound delay touches node `node`
    /// (either direction).
    pub fn touches(&self, node: usize) -> bool {
        self.groups.contains_key(&node)
            || self.one_way.iter().any(|&(a, b)| a == node || b == node)
            || self.links.keys().any(|&(a, b)| a == node || b == node)
            || self.inbound_delay.contains_key(&node)
    }

    /// Whether nothing sent from `from` to `to` can arrive: a partition, a
    /// one-way block, a blocked link, or a loss of 1 (the link's, else the
    /// model's). Loss below 1 and delays of any size do not cut a link.
    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        let loss = self
            .links
            .get(&(from, to))
            .and_then(|rule| rule.loss)
            .unwrap_or(self.model.loss);
        !self.can_reach(from, to) || loss >= 1.0
    }

    /// The connected components of nodes `0..nodes` over the links that are
    /// not cut (see [`is_cut`](Self::is_cut)) in *both* directions: two nodes
    /// are in one component when datagrams can go back and forth between them,
    /// directly or through other nodes. `None` when nothing is cut (one
    /// component); otherwise a component label per node.
    ///
    /// Cost: near-linear in `nodes` plus the one-way blocks and link rules
    /// (nodes are split by partition group first, then searched with a list of
    /// unvisited nodes, so a cut pair is looked at once per visited node only
    /// inside a group).
    pub fn components(&self, nodes: usize) -> Option<Vec<u32>> {
        if self.groups.is_empty()
            && self.one_way.is_empty()
            && self.model.loss < 1.0
            && self
                .links
                .values()
                .all(|rule| !rule.blocked && rule.loss.is_none_or(|loss| loss < 1.0))
        {
            return None;
        }
        let group = |n: usize| self.groups.get(&n).copied().unwrap_or(0);
        let mut by_group: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for node in 0..nodes {
            by_group.entry(group(node)).or_default().push(node);
        }
        let mut labels = vec![u32::MAX; nodes];
        let mut next = 0u32;
        for (_, mut unvisited) in by_group {
            while let Some(root) = unvisited.pop() {
                labels[root] = next;
                let mut stack = vec![root];
                while let Some(u) = stack.pop() {
                    let mut k = 0;
                    while k < unvisited.len() {
                        let v = unvisited[k];
                        if !self.is_cut(u, v) && !self.is_cut(v, u) {
                            labels[v] = next;
                            stack.push(v);
                            unvisited.swap_remove(k);
                        } else {
                            k += 1;
                        }
                    }
                }
                next += 1;
            }
        }
        Some(labels)
    }

    /// Whether `from` can reach `to` at all (partitions and blocked links only).
    pub fn can_reach(&self, from: usize, to: usize) -> bool {
        let group = |n: usize| self.groups.get(&n).copied().unwrap_or(0);
        group(from) == group(to)
            && !self.one_way.contains(&(from, to))
            && !self.links.get(&(from, to)).is_some_and(|rule| rule.blocked)
    }

    /// Decides the fate of one datagram sent from node `from` to node `to` at
    /// simulated time `now`.
    pub fn route(&self, now: Duration, from: usize, to: usize, rng: &mut fastrand::Rng) -> Fate {
        if !self.can_reach(from, to) {
            return Fate::Dropped;
        }
        let rule = self.links.get(&(from, to));
        let mut loss = rule.and_then(|r| r.loss).unwrap_or(self.model.loss);
        if let Some(brownout) = self.brownout_loss(now, from, to) {
            loss = loss.max(brownout);
        }
        if loss > 0.0 && rng.f64() < loss {
            return Fate::Dropped;
        }
        let mut extra = rule.map_or(Duration::ZERO, |r| r.extra_latency);
        if let Some((min, max)) = self.inbound_delay.get(&to) {
            let span = (*max - *min).as_nanos() as u64;
            extra += *min + Duration::from_nanos(rng.u64(0..=span));
        }
        let first = self.delay(rng) + extra;
        if self.model.duplicate > 0.0 && rng.f64() < self.model.duplicate {
            Fate::Duplicated(first, self.delay(rng) + extra)
        } else {
            Fate::Delivered(first)
        }
    }

    /// One datagram's delay: latency ± jitter, sometimes plus a reordering delay.
    fn delay(&self, rng: &mut fastrand::Rng) -> Duration {
        let model = &self.model;
        let jitter = model.jitter.as_nanos() as u64;
        let mut delay = if jitter == 0 {
            model.latency
        } else {
            let offset = rng.u64(0..=2 * jitter);
            (model.latency + Duration::from_nanos(offset)).saturating_sub(model.jitter)
        };
        if model.reorder > 0.0 && rng.f64() < model.reorder {
            let max = model.reorder_delay.as_nanos() as u64;
            delay += Duration::from_nanos(rng.u64(0..=max));
        }
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn delivered(fate: Fate) -> Option<Duration> {
        match fate {
            Fate::Delivered(d) => Some(d),
            _ => None,
        }
    }

    #[test]
    fn lan_delays_stay_within_latency_plus_minus_jitter() {
        let network = Network::new(NetworkModel::lan());
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..1000 {
            let d =
                delivered(network.route(Duration::ZERO, 0, 1, &mut rng)).expect("no loss on a lan");
            assert!(d >= Duration::from_micros(500) && d <= Duration::from_micros(1500));
        }
    }

    #[test]
    fn loss_drops_about_the_given_fraction() {
        let network = Network::new(NetworkModel::lan().with_loss(0.1));
        let mut rng = fastrand::Rng::with_seed(2);
        let dropped = (0..10_000)
            .filter(|_| network.route(Duration::ZERO, 0, 1, &mut rng) == Fate::Dropped)
            .count();
        assert!((800..1200).contains(&dropped), "dropped {dropped}");
    }

    #[test]
    fn symmetric_partition_blocks_both_ways_and_heals() {
        let mut network = Network::new(NetworkModel::lan());
        let mut rng = fastrand::Rng::with_seed(3);
        network.partition(&[vec![0, 1]]);
        assert_eq!(network.route(Duration::ZERO, 0, 2, &mut rng), Fate::Dropped);
        assert_eq!(network.route(Duration::ZERO, 2, 1, &mut rng), Fate::Dropped);
        assert!(delivered(network.route(Duration::ZERO, 0, 1, &mut rng)).is_some());
        assert!(delivered(network.route(Duration::ZERO, 2, 3, &mut rng)).is_some());
        assert!(network.touches(0) && !network.touches(2));
        network.heal();
        assert!(delivered(network.route(Duration::ZERO, 0, 2, &mut rng)).is_some());
        assert!(!network.is_disturbed());
    }

    #[test]
    fn one_way_partition_blocks_one_direction_only() {
        let mut network = Network::new(NetworkModel::lan());
        let mut rng = fastrand::Rng::with_seed(4);
        network.block_one_way(&[0], &[1, 2]);
        assert_eq!(network.route(Duration::ZERO, 0, 1, &mut rng), Fate::Dropped);
        assert!(delivered(network.route(Duration::ZERO, 1, 0, &mut rng)).is_some());
        assert!(network.can_reach(2, 0) && !network.can_reach(0, 2));
    }

    #[test]
    fn link_rules_override_loss_and_add_latency() {
        let mut network = Network::new(NetworkModel::lan());
        let mut rng = fastrand::Rng::with_seed(5);
        network.set_link(
            0,
            1,
            LinkRule {
                extra_latency: Duration::from_millis(50),
                ..LinkRule::default()
            },
        );
        let d = delivered(network.route(Duration::ZERO, 0, 1, &mut rng)).expect("delivered");
        assert!(d >= Duration::from_millis(50));
        network.set_link(
            1,
            0,
            LinkRule {
                loss: Some(1.0),
                ..LinkRule::default()
            },
        );
        assert_eq!(network.route(Duration::ZERO, 1, 0, &mut rng), Fate::Dropped);
    }

    #[test]
    fn components_join_nodes_that_can_talk_both_ways_directly_or_through_others() {
        let mut network = Network::new(NetworkModel::lan());
        assert_eq!(network.components(4), None, "nothing cut: one component");
        // Lossy and slow links do not cut.
        network.set_link(
            0,
            1,
            LinkRule {
                loss: Some(0.9),
                extra_latency: Duration::from_secs(3),
                ..LinkRule::default()
            },
        );
        network.set_inbound_delay(2, Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(network.components(4), None);
        // A one-way block between 0 and 1 leaves them connected through 2 and 3.
        network.block_one_way(&[0], &[1]);
        let labels = network.components(4).expect("something is cut");
        assert!(labels.iter().all(|&l| l == labels[0]), "{labels:?}");
        // A node that cannot send to anyone is alone.
        network.block_one_way(&[3], &[0, 1, 2]);
        let labels = network.components(4).expect("cut");
        assert_ne!(labels[3], labels[0]);
        assert!(
            labels[0] == labels[1] && labels[1] == labels[2],
            "{labels:?}"
        );
        // A partition splits; a link of loss 1 cuts like a block.
        network.heal();
        network.partition(&[vec![0, 1]]);
        network.set_link(
            2,
            3,
            LinkRule {
                loss: Some(1.0),
                ..LinkRule::default()
            },
        );
        let labels = network.components(5).expect("cut");
        assert_eq!(labels[0], labels[1]);
        assert_ne!(labels[0], labels[2]);
        assert_eq!(labels[2], labels[3], "2 and 3 still talk through 4");
        assert_eq!(labels[3], labels[4]);
        assert!(network.is_cut(2, 3) && !network.is_cut(3, 2));
        network.heal();
        assert_eq!(network.components(5), None);
    }

    #[test]
    fn an_inbound_delay_makes_every_datagram_to_the_node_late_until_healed() {
        let mut network = Network::new(NetworkModel::lan());
        let mut rng = fastrand::Rng::with_seed(7);
        network.set_inbound_delay(1, Duration::from_secs(1), Duration::from_secs(5));
        assert!(network.touches(1) && network.is_disturbed());
        for _ in 0..100 {
            let d = delivered(network.route(Duration::ZERO, 0, 1, &mut rng)).expect("delivered");
            assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(5) + 2 * MS);
            let back = delivered(network.route(Duration::ZERO, 1, 0, &mut rng)).expect("delivered");
            assert!(back < 2 * MS, "only inbound datagrams are late");
        }
        network.heal();
        assert_eq!(network.inbound_delay(1), None);
        let d = delivered(network.route(Duration::ZERO, 0, 1, &mut rng)).expect("delivered");
        assert!(d < 2 * MS);
    }

    #[test]
    fn duplication_and_reordering_happen_when_asked() {
        let model = NetworkModel {
            duplicate: 1.0,
            reorder: 1.0,
            ..NetworkModel::lan()
        };
        let network = Network::new(model);
        let mut rng = fastrand::Rng::with_seed(6);
        let late = (0..100)
            .filter(|_| match network.route(Duration::ZERO, 0, 1, &mut rng) {
                Fate::Duplicated(a, b) => {
                    a > Duration::from_millis(2) || b > Duration::from_millis(2)
                }
                other => panic!("expected a duplicate, got {other:?}"),
            })
            .count();
        assert!(late > 50, "reordered {late}");
    }

    #[test]
    fn a_brownout_loses_on_its_links_until_it_ends_without_cutting_the_network() {
        let mut network = Network::new(NetworkModel::lan());
        let mut rng = fastrand::Rng::with_seed(8);
        let s = Duration::from_secs(1);
        assert!(delivered(network.route(Duration::ZERO, 0, 1, &mut rng)).is_some());
        network.brown_out(s, 1.0, 2 * s, &[]);
        assert_eq!(network.route(s, 0, 1, &mut rng), Fate::Dropped);
        assert_eq!(network.route(2 * s, 1, 0, &mut rng), Fate::Dropped);
        assert!(delivered(network.route(3 * s, 0, 1, &mut rng)).is_some());
        assert_eq!(network.components(3), None, "weather, not a cut");
        network.brown_out(4 * s, 1.0, s, &[(0, 1)]);
        assert_eq!(network.route(4 * s, 0, 1, &mut rng), Fate::Dropped);
        assert!(delivered(network.route(4 * s, 1, 0, &mut rng)).is_some());
        network.heal();
        assert!(delivered(network.route(4 * s, 0, 1, &mut rng)).is_some());
    }

    #[test]
    fn bursts_are_seeded_and_their_lengths_and_gaps_average_near_the_means() {
        let model = BurstModel::default();
        let span = Duration::from_secs(100_000);
        let draw = |seed| model.bursts(&mut fastrand::Rng::with_seed(seed), span);
        assert_eq!(draw(3), draw(3));
        let bursts = draw(3);
        let n = bursts.len() as f64;
        let mean_burst = bursts.iter().map(|b| b.1.as_secs_f64()).sum::<f64>() / n;
        assert!((0.9..1.1).contains(&mean_burst), "{mean_burst}");
        // One burst per burst-and-gap on average.
        assert!((8000.0..10_000.0).contains(&n), "{n}");
        assert!(bursts.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0));
    }
}
