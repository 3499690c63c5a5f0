//! Dissemination: the queue of updates waiting to ride on outgoing packets.
//!
//! One pending update per node (a newer one replaces the older). Updates that were
//! sent the fewest times go first, the newest first among equals; an update is
//! dropped after it was sent `limit` times, which the caller derives from the
//! cluster size (`retransmit_mult · ceil(log10(n + 1))`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use crate::name::NodeName;
use crate::wire::{Update, encoded_len};

#[derive(Debug)]
struct Pending {
    update: Update,
    size: usize,
    sent: u32,
    seq: u64,
}

type OrderKey = (u32, Reverse<u64>, NodeName);

/// Updates waiting to be piggybacked.
#[derive(Debug, Default)]
pub(crate) struct GossipQueue {
    pending: BTreeMap<NodeName, Pending>,
    order: BTreeSet<OrderKey>,
    next_seq: u64,
}

/// How many queued updates one packet looks at before giving up on filling its
/// remaining space: keeps the cost per packet bounded when the queue is long.
const SCAN_LIMIT: usize = 64;

impl GossipQueue {
    /// Queues an update, replacing any pending one about the same node.
    /// Returns how many updates were evicted to stay within `capacity`.
    pub(crate) fn push(&mut self, update: Update, capacity: usize) -> u64 {
        let name = update.row.0.node.clone();
        self.remove(&name);
        let seq = self.next_seq;
        self.next_seq += 1;
        let size = encoded_len(&update);
        self.order.insert((0, Reverse(seq), name.clone()));
        self.pending.insert(
            name,
            Pending {
                update,
                size,
                sent: 0,
                seq,
            },
        );
        let mut evicted = 0;
        while self.pending.len() > capacity {
            // The last key has been sent the most times, and is the oldest among those.
            let Some((_, _, victim)) = self.order.pop_last() else {
                break;
            };
            self.pending.remove(&victim);
            evicted += 1;
        }
        evicted
    }

    /// Drops the pending update about `name`, if any.
    pub(crate) fn remove(&mut self, name: &NodeName) {
        if let Some(old) = self.pending.remove(name) {
            self.order
                .remove(&(old.sent, Reverse(old.seq), name.clone()));
        }
    }

    /// Picks updates that fit in `budget` bytes, counts them as sent once more, and
    /// forgets those sent `limit` times. Returns clones to encode.
    pub(crate) fn take_for_packet(&mut self, mut budget: usize, limit: u32) -> Vec<Update> {
        let mut picked = Vec::new();
        let mut keys = Vec::new();
        for key in self.order.iter().take(SCAN_LIMIT) {
            let pending = &self.pending[&key.2];
            if pending.size <= budget {
                budget -= pending.size;
                keys.push(key.clone());
                picked.push(pending.update.clone());
            }
            if budget == 0 {
                break;
            }
        }
        for key in keys {
            self.order.remove(&key);
            let (sent, seq, name) = key;
            let pending = self
                .pending
                .get_mut(&name)
                .expect("order and pending hold the same names");
            pending.sent = sent + 1;
            if pending.sent >= limit {
                self.pending.remove(&name);
            } else {
                self.order.insert((sent + 1, seq, name));
            }
        }
        picked
    }

    /// Whether an update about `name` is still pending.
    pub(crate) fn contains(&self, name: &NodeName) -> bool {
        self.pending.contains_key(name)
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{Health, TrackerRow};
    use crate::wire::WireRow;
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

    fn names(updates: &[Update]) -> Vec<String> {
        updates.iter().map(|u| u.row.0.node.to_string()).collect()
    }

    #[test]
    fn newest_first_and_dropped_after_the_limit() {
        let mut queue = GossipQueue::default();
        queue.push(update("a", 0), 100);
        queue.push(update("b", 0), 100);
        assert_eq!(names(&queue.take_for_packet(1000, 2)), ["b", "a"]);
        queue.push(update("c", 0), 100);
        // c was sent least, so it leads; a and b go out a second time and are done
        assert_eq!(names(&queue.take_for_packet(1000, 2)), ["c", "b", "a"]);
        assert_eq!(names(&queue.take_for_packet(1000, 2)), ["c"]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_newer_update_replaces_the_pending_one() {
        let mut queue = GossipQueue::default();
        queue.push(update("a", 0), 100);
        queue.push(update("a", 1), 100);
        assert_eq!(queue.len(), 1);
        let sent = queue.take_for_packet(1000, 5);
        assert_eq!(sent[0].row.0.incarnation, 1);
    }

    #[test]
    fn only_what_fits_is_taken() {
        let mut queue = GossipQueue::default();
        queue.push(update("a", 0), 100);
        let size = encoded_len(&update("a", 0));
        assert!(queue.take_for_packet(size - 1, 5).is_empty());
        assert_eq!(queue.take_for_packet(size, 5).len(), 1);
    }

    #[test]
    fn capacity_evicts_the_most_sent() {
        let mut queue = GossipQueue::default();
        queue.push(update("old", 0), 2);
        let _ = queue.take_for_packet(1000, 10);
        queue.push(update("x", 0), 2);
        assert_eq!(queue.push(update("y", 0), 2), 1);
        assert!(!queue.contains(&NodeName::new("old").expect("valid")));
        assert_eq!(queue.len(), 2);
    }
}
