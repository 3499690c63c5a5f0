//! Dissemination: updates ride on every outgoing packet, plus a gossip tick to a
//! few random members while any are pending.
//!
//! One pending update per node (a newer one replaces the older). Updates that were
//! sent the fewest times go first, the newest first among equals; an update is
//! dropped after it was sent `limit` times, which the caller derives from the
//! number of online members ([`retransmit_limit`], smooth in it: no member
//! joining or dying changes it by more than one send).

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::Node;
use super::timer::Timer;
use crate::logarithm;
use crate::name::{FnvBuild, NodeName};
use crate::tracker::{Health, TrackerRow};
use crate::wire::{self, Message, Update, WireRow, encoded_len};

/// How many times each update is sent without loss:
/// `round(mult · (1 + log10(members + 1)))`.
///
/// Smooth in the cluster size: one member more or less changes it by at most
/// one. (It used to be `mult · ceil(log10(members + 1))`, equal to this at 10,
/// 100, 1000... members plus one, but a third lower just below: one crash in a
/// cluster of 100 cut every update's sends from 12 to 8.)
pub fn retransmit_limit(mult: u32, members: usize) -> u32 {
    let scale = 1.0 + logarithm::log10((members + 1) as f64);
    (f64::from(mult) * scale).round() as u32
}

#[derive(Debug)]
struct Pending {
    update: Update,
    size: usize,
}

/// How many times each update is sent before it is dropped.
#[derive(Clone, Copy, Debug)]
struct SendLimits {
    /// Every update but a death.
    plain: u32,
    /// A death (see `Node::piggyback`).
    death: u32,
}

impl SendLimits {
    #[cfg(test)]
    fn all(limit: u32) -> Self {
        Self {
            plain: limit,
            death: limit,
        }
    }
}

/// Fewest sends first, then newest first (`seq` is unique, so it is the whole key).
type OrderKey = (u32, Reverse<u64>);

/// Updates waiting to be piggybacked.
#[derive(Debug, Default)]
pub(super) struct GossipQueue {
    order: BTreeMap<OrderKey, Pending>,
    by_name: HashMap<NodeName, OrderKey, FnvBuild>,
    next_seq: u64,
}

/// How many queued updates one packet looks at before giving up on filling its
/// remaining space: keeps the cost per packet bounded when the queue is long.
const SCAN_LIMIT: usize = 64;

/// No update encodes smaller than this (a one-byte name, an IPv4 address, small
/// numbers): a packet with less room left is full.
const MIN_UPDATE_LEN: usize = 12;

impl GossipQueue {
    /// Queues an update, replacing any pending one about the same node.
    /// Returns how many updates were evicted to stay within `capacity`.
    fn push(&mut self, update: Update, capacity: usize) -> u64 {
        let name = update.row.0.node.clone();
        self.remove(&name);
        let key = (0, Reverse(self.next_seq));
        self.next_seq += 1;
        let size = encoded_len(&update);
        self.order.insert(key, Pending { update, size });
        self.by_name.insert(name, key);
        let mut evicted = 0;
        while self.order.len() > capacity {
            // The last key has been sent the most times, and is the oldest among those.
            let Some((_, victim)) = self.order.pop_last() else {
                break;
            };
            self.by_name.remove(&victim.update.row.0.node);
            evicted += 1;
        }
        evicted
    }

    /// Gives back the index's room once a burst has drained to a quarter of it:
    /// a formation wave queues an update per node, and a hash map never shrinks
    /// by itself. Amortized O(1): a shrink follows at least 3/4 of its size in removals.
    fn trim(&mut self) {
        const KEEP: usize = 64;
        let capacity = self.by_name.capacity();
        if capacity > 4 * KEEP && self.by_name.len() < capacity / 4 {
            self.by_name.shrink_to(KEEP.max(self.by_name.len() * 2));
        }
    }

    /// Drops the pending update about `name`, if any.
    pub(super) fn remove(&mut self, name: &NodeName) {
        if let Some(key) = self.by_name.remove(name) {
            self.order.remove(&key);
            self.trim();
        }
    }

    /// Picks updates that fit in `budget` bytes for a packet to `to`, counts them as
    /// sent once more, and forgets those sent `limit` times. Returns them to encode.
    ///
    /// An update announcing the recipient itself alive at its address stays queued
    /// for others: the recipient knows it, and right after a join most of the
    /// seed's packets go to the joiner (reply, acks, the first exchange), which
    /// would use up every send of the joiner's row before anyone else heard of it.
    /// News the recipient must see about itself (suspect, dead, left, another
    /// address) is sent as usual, so it can refute.
    ///
    /// A death is sent `limits.death` times, others `limits.plain` times.
    fn take_for_packet(
        &mut self,
        mut budget: usize,
        limits: SendLimits,
        to: SocketAddr,
    ) -> Vec<Update> {
        let mut keys = Vec::new();
        for (key, pending) in self.order.iter().take(SCAN_LIMIT) {
            if budget < MIN_UPDATE_LEN {
                break;
            }
            let row = &pending.update.row.0;
            if row.addr == to && row.health == Health::Alive {
                continue;
            }
            if pending.size <= budget {
                budget -= pending.size;
                keys.push(*key);
            }
        }
        let mut picked = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(pending) = self.order.remove(&key) else {
                continue;
            };
            let (sent, seq) = key;
            let limit = if pending.update.row.0.health == Health::Dead {
                limits.death
            } else {
                limits.plain
            };
            if sent + 1 >= limit {
                self.by_name.remove(&pending.update.row.0.node);
                picked.push(pending.update);
            } else {
                let next = (sent + 1, seq);
                picked.push(pending.update.clone());
                if let Some(slot) = self.by_name.get_mut(&pending.update.row.0.node) {
                    *slot = next;
                }
                self.order.insert(next, pending);
            }
        }
        self.trim();
        picked
    }

    /// Whether an update about `name` is still pending.
    pub(super) fn contains(&self, name: &NodeName) -> bool {
        self.by_name.contains_key(name)
    }

    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl Node {
    /// Queues an update for dissemination.
    pub(super) fn push_gossip(
        &mut self,
        now: Instant,
        row: TrackerRow,
        suspecter: Option<NodeName>,
    ) {
        if self.gossip.is_empty() && self.timers.get(Timer::Gossip).is_some_and(|at| at < now) {
            // The tick was idle: restart it from now instead of from a stale past.
            self.timers.set(Timer::Gossip, now);
        } else if row.health == Health::Dead
            && self.timers.get(Timer::Gossip).is_some_and(|at| at > now)
        {
            // A death is the news every member waits on ("offline everywhere"):
            // the tick goes now rather than on its grid, so each hop of its
            // spread costs a datagram's trip, not up to a gossip interval. One
            // tick early per death heard.
            self.timers.set(Timer::Gossip, now);
        }
        let update = Update {
            row: WireRow(row),
            suspecter,
        };
        // An update no packet from here could carry would wait forever (only a
        // row with large tags relayed by a node with a long name: see `rows_chunk`).
        let room = self
            .config
            .max_packet_size
            .saturating_sub(wire::base_len(self.sender(), &Message::Gossip) + 2);
        if encoded_len(&update) > room {
            debug!(node = %update.row.0.node, "update too large for a datagram from here");
            return;
        }
        self.stats.gossip_evicted += self.gossip.push(update, self.config.max_pending_updates);
    }

    /// The updates to piggyback on a packet to `to` whose own part takes `base`
    /// bytes, counted as sent once more.
    pub(super) fn piggyback(&mut self, to: SocketAddr, base: usize) -> Vec<Update> {
        // Two bytes of slack for the update count's varint growing past one byte.
        let budget = self.config.max_packet_size.saturating_sub(base + 2);
        let plain = retransmit_limit(self.config.retransmit_mult, self.tracker.online_count());
        // Under measured loss a death is sent more times, stretched as
        // suspicions are. It is the one piece of news every member must hear
        // (a suspicion or a refutation missed is made up by the next probe's
        // or the suspect's own news); at 50 % loss, with the plain count,
        // about one member in a hundred missed it and waited seconds for an
        // exchange. Deaths are rare, so this costs little, where stretching
        // every update doubled the bytes sent at 50 % loss.
        let death = (f64::from(plain) * self.probing.loss.suspicion_stretch()).ceil() as u32;
        self.gossip
            .take_for_packet(budget, SendLimits { plain, death }, to)
    }

    pub(super) fn run_gossip(&mut self, now: Instant) {
        if !self.timers.is_expired(Timer::Gossip, now) {
            return;
        }
        self.timers
            .set(Timer::Gossip, now + self.config.gossip_interval);
        if self.gossip.is_empty() {
            return;
        }
        self.gossip_to_random_members();
    }

    /// Sends the pending updates to `gossip_fanout` random members.
    pub(super) fn gossip_to_random_members(&mut self) {
        let targets = self.sample_members(self.config.gossip_fanout, None);
        for &target in &targets {
            if let Some(row) = self.tracker.by_id(target) {
                let to = row.addr;
                self.send(to, Message::Gossip);
            }
        }
        self.recycle(targets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn update(name: &str, incarnation: u64) -> Update {
        Update {
            row: WireRow(TrackerRow::new(
                NodeName::new(name).expect("valid"),
                "127.0.0.1:1".parse().expect("valid"),
                Health::Alive,
                incarnation,
                DateTime::from_timestamp_millis(0).expect("in range"),
            )),
            suspecter: None,
        }
    }

    /// Not the address the test updates are about.
    fn elsewhere() -> SocketAddr {
        "127.0.0.1:2".parse().expect("valid")
    }

    fn names(updates: &[Update]) -> Vec<String> {
        updates.iter().map(|u| u.row.0.node.to_string()).collect()
    }

    #[test]
    fn the_retransmit_limit_has_no_cliff_and_never_falls_below_the_old_steps() {
        let old = |members: usize| 4 * ((members + 1) as f64).log10().ceil() as u32;
        assert_eq!(retransmit_limit(4, 100), 12);
        assert_eq!(retransmit_limit(4, 1000), 16);
        assert_eq!(
            retransmit_limit(4, 99),
            12,
            "one crash at 100 used to give 8"
        );
        for members in 1..20_000 {
            let (here, next) = (
                retransmit_limit(4, members),
                retransmit_limit(4, members + 1),
            );
            assert!(
                next >= here && next - here <= 1,
                "{members}: {here} -> {next}"
            );
            assert!(here >= old(members), "{members}: {here} < {}", old(members));
        }
    }

    #[test]
    fn newest_first_and_dropped_after_the_limit() {
        let mut queue = GossipQueue::default();
        queue.push(update("a", 0), 100);
        queue.push(update("b", 0), 100);
        assert_eq!(
            names(&queue.take_for_packet(1000, SendLimits::all(2), elsewhere())),
            ["b", "a"]
        );
        queue.push(update("c", 0), 100);
        // c was sent least, so it leads; a and b go out a second time and are done
        assert_eq!(
            names(&queue.take_for_packet(1000, SendLimits::all(2), elsewhere())),
            ["c", "b", "a"]
        );
        assert_eq!(
            names(&queue.take_for_packet(1000, SendLimits::all(2), elsewhere())),
            ["c"]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn a_death_is_sent_up_to_its_own_limit() {
        let mut queue = GossipQueue::default();
        let mut dead = update("dead", 0);
        dead.row.0.health = Health::Dead;
        queue.push(dead, 100);
        queue.push(update("alive", 0), 100);
        let limits = SendLimits { plain: 2, death: 4 };
        let mut sends = Vec::new();
        while !queue.is_empty() {
            sends.extend(names(&queue.take_for_packet(1000, limits, elsewhere())));
        }
        let count = |who: &str| sends.iter().filter(|name| *name == who).count();
        assert_eq!((count("alive"), count("dead")), (2, 4));
    }

    #[test]
    fn a_drained_burst_gives_its_index_back() {
        let mut queue = GossipQueue::default();
        for i in 0..5000 {
            queue.push(update(&format!("n{i}"), 0), 10_000);
        }
        let peak = queue.by_name.capacity();
        assert!(peak >= 5000);
        while !queue.is_empty() {
            let _sent = queue.take_for_packet(1400, SendLimits::all(1), elsewhere());
        }
        assert!(queue.by_name.capacity() <= 512, "{peak} kept");
        // and a queue that stays small never reallocates its index
        let small = queue.by_name.capacity();
        for round in 0..100 {
            queue.push(update("a", round), 10_000);
            let _sent = queue.take_for_packet(1400, SendLimits::all(1), elsewhere());
        }
        assert_eq!(queue.by_name.capacity(), small);
    }

    #[test]
    fn a_newer_update_replaces_the_pending_one() {
        let mut queue = GossipQueue::default();
        queue.push(update("a", 0), 100);
        queue.push(update("a", 1), 100);
        assert_eq!(queue.len(), 1);
        let sent = queue.take_for_packet(1000, SendLimits::all(5), elsewhere());
        assert_eq!(sent[0].row.0.incarnation, 1);
    }

    #[test]
    fn only_what_fits_is_taken() {
        let mut queue = GossipQueue::default();
        queue.push(update("a", 0), 100);
        let size = encoded_len(&update("a", 0));
        assert!(
            queue
                .take_for_packet(size - 1, SendLimits::all(5), elsewhere())
                .is_empty()
        );
        assert_eq!(
            queue
                .take_for_packet(size, SendLimits::all(5), elsewhere())
                .len(),
            1
        );
    }

    #[test]
    fn capacity_evicts_the_most_sent() {
        let mut queue = GossipQueue::default();
        queue.push(update("old", 0), 2);
        let _ = queue.take_for_packet(1000, SendLimits::all(10), elsewhere());
        queue.push(update("x", 0), 2);
        assert_eq!(queue.push(update("y", 0), 2), 1);
        assert!(!queue.contains(&NodeName::new("old").expect("valid")));
        assert_eq!(queue.len(), 2);
    }

    #[test]
    fn the_recipient_is_not_told_it_is_alive_but_is_told_it_is_suspected() {
        let mut queue = GossipQueue::default();
        let recipient: SocketAddr = "127.0.0.1:1".parse().expect("valid");
        queue.push(update("joiner", 0), 100);
        for _ in 0..10 {
            assert!(
                queue
                    .take_for_packet(1000, SendLimits::all(2), recipient)
                    .is_empty()
            );
        }
        assert_eq!(
            names(&queue.take_for_packet(1000, SendLimits::all(2), elsewhere())),
            ["joiner"],
            "its sends were kept for others"
        );
        let mut suspected = update("joiner", 0);
        suspected.row.0 = suspected
            .row
            .0
            .with_health(Health::Suspect, suspected.row.0.last_change);
        queue.push(suspected, 100);
        assert_eq!(
            names(&queue.take_for_packet(1000, SendLimits::all(2), recipient)),
            ["joiner"]
        );
    }
}
