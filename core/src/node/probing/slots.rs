//! Probe slots: which member this node probes when, so that across the
//! cluster every member is probed about once per probe interval.
//!
//! # Why
//!
//! With SWIM's randomized round-robin each node probes each member once per
//! round (N - 1 probe intervals), at a random place in its own order. The
//! first probe of a member that just crashed then comes after the first of
//! N - 1 independent random waits: exponential, with a mean of one probe
//! interval but a long tail (at N=100 and 150 ms, no one has probed it after
//! 0.5 s in about one crash in 30, after 0.7 s in one in 100). That wait was
//! most of the slowest detections.
//!
//! # How
//!
//! Time is cut into slots of one probe interval on the wall clock, numbered
//! the same on every node. Every node places the members and itself on a ring
//! ordered by a hash of the name (the same order everywhere), and in slot `s`
//! probes the member `1 + s mod (N - 1)` places after itself. In one slot the
//! shift is the same for every node, so every member is probed by exactly one
//! node per slot, and each node still probes every member once per N - 1
//! slots, as in SWIM. Each node serves its slots at its own offset within the
//! interval (a hash of its name), so the pings of the cluster stay spread over
//! the interval rather than all sent at one instant: a member is probed again
//! at most two intervals after the last probe, whatever its luck.
//!
//! # What it costs
//!
//! - It relies on the nodes' wall clocks agreeing to well under a probe
//!   interval, and on their member lists agreeing. Where they do not (skewed
//!   clocks, members still joining, a node of an older build probing at
//!   random) two nodes may probe one member in the same slot and another may
//!   wait: the spacing degrades towards the random order's, nothing worse.
//! - The order is no secret: a peer can tell when it will be probed. Probes
//!   were never a security boundary (a member answering is all they check).
//! - A ring of the members, a 32-bit key and a row id each, beside the
//!   member list; finding the place after a membership change walks it once.

use std::collections::BTreeSet;
use std::ops::Bound;
use std::time::Duration;

use crate::name::{NodeName, fnv1a};
use crate::tracker::RowId;

/// The ring place of a node: a hash of its name, the same on every node.
pub(in crate::node) fn ring_key(name: &NodeName) -> u32 {
    // FNV-1a mixes the last bytes of short, similar names poorly: finish it
    // with a multiply-xorshift so the keys spread over the whole ring.
    let mut x = fnv1a(name.as_bytes());
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 32) as u32
}

/// The members on the ring, and where this node's walk of it stands.
#[derive(Debug, Default)]
pub(in crate::node) struct ProbeSlots {
    ring: BTreeSet<(u32, RowId)>,
    /// The last slot served and the member probed in it; cleared by a
    /// membership change (the places after it moved).
    cursor: Option<(u64, (u32, RowId))>,
}

impl ProbeSlots {
    /// A member went online.
    pub(in crate::node) fn insert(&mut self, name: &NodeName, id: RowId) {
        if self.ring.insert((ring_key(name), id)) {
            self.cursor = None;
        }
    }

    /// A member went offline or was forgotten.
    pub(in crate::node) fn remove(&mut self, name: &NodeName, id: RowId) {
        if self.ring.remove(&(ring_key(name), id)) {
            self.cursor = None;
        }
    }

    /// The member this node (ring place `own`) probes in `slot`. A node that
    /// probes slower than one slot an interval (`walk`: its local health
    /// stretches its interval) takes one step along its ring per probe
    /// instead: serving only every k-th slot's member would skip members for
    /// as long as it is stretched whenever k and the ring's length share a
    /// factor (every other member, at twice the interval and an even count).
    pub(in crate::node) fn target(&mut self, own: u32, slot: u64, walk: bool) -> Option<RowId> {
        let members = self.ring.len();
        let entry = match self.cursor {
            // The next slot probes the next member on the ring: one step.
            Some((last, entry)) if slot == last.wrapping_add(1) || (walk && slot > last) => self
                .ring
                .range((Bound::Excluded(entry), Bound::Unbounded))
                .next()
                .or_else(|| self.ring.first())
                .copied(),
            _ if members == 0 => None,
            // Own place among the members, then `slot mod members` on.
            _ => {
                let place = self.ring.range(..(own, 0)).count();
                let shift = (slot % members as u64) as usize;
                self.ring.iter().nth((place + shift) % members).copied()
            }
        }?;
        self.cursor = Some((slot, entry));
        Some(entry.1)
    }
}

/// Slot arithmetic on the wall clock, in nanoseconds since the Unix epoch:
/// slots of `interval`, this node's starting `offset` into each.
#[derive(Clone, Copy, Debug)]
pub(in crate::node) struct SlotClock {
    interval: u128,
    offset: u128,
}

impl SlotClock {
    /// Slots of `interval`, served at the offset into each that `own` (this
    /// node's ring key) picks.
    pub(in crate::node) fn new(interval: Duration, own: u32) -> Self {
        let interval = interval.as_nanos().max(1);
        Self {
            interval,
            offset: (u128::from(own) * interval) >> 32,
        }
    }

    /// The slot whose start is nearest to `wall` (ns since the epoch).
    pub(in crate::node) fn slot(self, wall: u128) -> u64 {
        let shifted = wall + self.interval - self.offset;
        ((shifted + self.interval / 2) / self.interval) as u64
    }

    /// How long after `wall` (ns since the epoch) the next slot starts: 0 at
    /// a slot's start, less than an interval otherwise.
    pub(in crate::node) fn wait(self, wall: u128) -> u128 {
        let phase = (wall + self.interval - self.offset) % self.interval;
        (self.interval - phase) % self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<NodeName> {
        (0..n)
            .map(|i| NodeName::new(&format!("node-{i:02}")).expect("a valid name"))
            .collect()
    }

    /// The ring of node `me` in a cluster of `all`: every other node, row ids
    /// given in a different order on each node (they are local).
    fn ring_of(all: &[NodeName], me: usize) -> ProbeSlots {
        let mut slots = ProbeSlots::default();
        for (i, name) in all.iter().enumerate().rev() {
            if i != me {
                slots.insert(name, ((i + me * 7) % all.len()) as RowId);
            }
        }
        slots
    }

    #[test]
    fn in_every_slot_every_member_is_probed_by_exactly_one_node() {
        let all = names(10);
        let mut rings: Vec<ProbeSlots> = (0..all.len()).map(|me| ring_of(&all, me)).collect();
        for slot in 1000..1030u64 {
            let mut probed = vec![0; all.len()];
            for (me, ring) in rings.iter_mut().enumerate() {
                let id = ring
                    .target(ring_key(&all[me]), slot, false)
                    .expect("members");
                let target = (0..all.len())
                    .find(|&i| i != me && ((i + me * 7) % all.len()) as RowId == id)
                    .expect("a member's id");
                probed[target] += 1;
            }
            assert_eq!(probed, vec![1; all.len()], "slot {slot}");
        }
    }

    #[test]
    fn each_node_probes_every_member_once_per_round_after_a_change_too() {
        let all = names(8);
        let mut ring = ring_of(&all, 3);
        let own = ring_key(&all[3]);
        let round = |ring: &mut ProbeSlots, from: u64, len: u64| {
            let seen: BTreeSet<RowId> = (from..from + len)
                .map(|slot| ring.target(own, slot, false).expect("members"))
                .collect();
            seen.len() as u64
        };
        assert_eq!(round(&mut ring, 50, 7), 7);
        ring.remove(&all[5], ((5 + 21) % 8) as RowId);
        assert_eq!(round(&mut ring, 57, 6), 6);
        // A skipped slot (a slower probe rate) finds its place again.
        assert!(ring.target(own, 100, false).is_some());
        assert!(ProbeSlots::default().target(own, 1, false).is_none());
    }

    #[test]
    fn a_node_probing_every_other_slot_walks_its_whole_ring() {
        let all = names(5);
        let own = ring_key(&all[0]);
        let served = |walk: bool| {
            let mut ring = ring_of(&all, 0);
            (0..8u64)
                .map(|k| ring.target(own, 200 + 2 * k, walk).expect("members"))
                .collect::<BTreeSet<RowId>>()
                .len()
        };
        // Four members, every other slot: the slots' own members are two of them.
        assert_eq!(served(false), 2);
        assert_eq!(served(true), 4);
    }

    #[test]
    fn slots_are_numbered_from_the_offset_and_the_wait_is_for_the_next_start() {
        let interval = Duration::from_millis(150);
        let clock = SlotClock::new(interval, u32::MAX / 3);
        let start = 1_000_000 * 150_000_000 + clock.offset;
        assert_eq!(clock.slot(start) + 1, clock.slot(start + 150_000_000));
        assert_eq!(clock.slot(start + 74_000_000), clock.slot(start));
        assert_eq!(clock.wait(start), 0);
        assert_eq!(clock.wait(start + 10), 149_999_990);
        assert_eq!(clock.wait(start + 149_999_990), 10);
        for wall in (start..start + 300_000_000).step_by(7_777_777) {
            let next = wall + clock.wait(wall);
            assert_eq!(clock.wait(next), 0);
            assert!(next - wall < 150_000_000);
        }
    }
}
