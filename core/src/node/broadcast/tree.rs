//! Where a user event's payload goes: a tree laid over a ring, different for
//! every event, that each holder computes from its own member list.
//!
//! Every member gets a position on a 64-bit ring, a hash of its name and the
//! event's key. The origin holds the whole ring; a holder of a span (from its
//! own position up to `end`, exclusive) sorts the members it knows inside the
//! span, cuts them into `fanout` runs of nearly equal length, and pushes the
//! event to the first member of each run with the run as its span. When every
//! holder knows the same members, each member receives the payload exactly
//! once, after about `log_fanout N` hops. A member one holder does not know
//! falls inside some run and is reached by that run's holder if it knows it;
//! a lost push loses its run, which announcements and pulls repair.

use std::net::SocketAddr;

use crate::name::{NodeName, fnv1a};
use crate::wire::EventKey;

/// A well-mixed 64-bit value (splitmix64's finalizer).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The event's part of every position.
pub(in crate::node) fn event_hash(key: &EventKey) -> u64 {
    let origin = fnv1a(key.origin.as_bytes());
    mix(origin ^ mix(key.started as u64 ^ mix(key.seq)))
}

/// A member's position on the ring of the event hashed to `event`.
pub(in crate::node) fn position(event: u64, name: &NodeName) -> u64 {
    mix(fnv1a(name.as_bytes()) ^ event)
}

/// The pushes a holder at position `me` makes for its span up to `end`
/// (`end == me`: the whole ring): into `out` (cleared first), each member's
/// address and the end of its run. `members` holds every known member's
/// position and address, self excluded; it is sorted in place.
pub(in crate::node) fn children(
    me: u64,
    end: u64,
    fanout: usize,
    members: &mut Vec<(u64, SocketAddr)>,
    out: &mut Vec<(SocketAddr, u64)>,
) {
    out.clear();
    let span = end.wrapping_sub(me);
    // Offsets from `me`; a span of 0 is the whole ring.
    members.retain(|&(position, _)| {
        let offset = position.wrapping_sub(me);
        offset != 0 && (span == 0 || offset < span)
    });
    members.sort_unstable_by_key(|&(position, _)| position.wrapping_sub(me));
    let count = members.len();
    let runs = fanout.min(count);
    for run in 0..runs {
        let first = run * count / runs;
        let next = (run + 1) * count / runs;
        let run_end = if run + 1 < runs { members[next].0 } else { end };
        out.push((members[first].1, run_end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], i))
    }

    /// Every node's pushes, from the origin down, over one shared view:
    /// how many times each node receives the event, and the deepest hop.
    fn spread(n: u16, fanout: usize, seed: u64) -> (BTreeMap<SocketAddr, u32>, u32) {
        let names: Vec<NodeName> = (0..n)
            .map(|i| NodeName::new(&format!("node-{i}")).expect("valid"))
            .collect();
        let key = EventKey {
            origin: names[0].clone(),
            started: 1,
            seq: seed,
        };
        let hash = event_hash(&key);
        let positions: Vec<(u64, SocketAddr)> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (position(hash, name), addr(i as u16)))
            .collect();
        let mut received = BTreeMap::new();
        let mut depth = 0;
        let mut frontier = vec![(0usize, positions[0].0, 0u32)];
        let mut out = Vec::new();
        while let Some((holder, end, hops)) = frontier.pop() {
            depth = depth.max(hops);
            let me = positions[holder].0;
            let mut others: Vec<_> = positions
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != holder)
                .map(|(_, p)| *p)
                .collect();
            children(me, end, fanout, &mut others, &mut out);
            for &(to, run_end) in &out {
                *received.entry(to).or_insert(0) += 1;
                let index = positions.iter().position(|p| p.1 == to).expect("known");
                frontier.push((index, run_end, hops + 1));
            }
        }
        (received, depth)
    }

    #[test]
    fn with_one_view_every_member_receives_the_event_exactly_once() {
        for seed in 1..5 {
            let (received, depth) = spread(300, 4, seed);
            assert_eq!(received.len(), 299, "everyone but the origin");
            assert!(received.values().all(|&copies| copies == 1));
            assert!(depth <= 6, "about log4(300) hops, got {depth}");
        }
    }

    #[test]
    fn a_span_with_fewer_members_than_the_fanout_pushes_to_each() {
        let mut members = vec![(10, addr(1)), (20, addr(2))];
        let mut out = Vec::new();
        children(5, 30, 4, &mut members, &mut out);
        assert_eq!(out, vec![(addr(1), 20), (addr(2), 30)]);
        let mut outside = vec![(40, addr(3)), (3, addr(4))];
        children(5, 30, 4, &mut outside, &mut out);
        assert!(out.is_empty(), "members outside the span are not pushed to");
    }
}
