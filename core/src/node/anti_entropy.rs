//! Anti-entropy: now and then this node sends a digest of its tracker to a random
//! member (one time in four to a node believed dead, so partitions heal); the
//! receiver answers only where the digests differ, with the rows of the differing
//! buckets and its own digest, so one round trip repairs both sides.
//!
//! Rows go out as a stream cut into datagrams when they are sent (join replies use
//! the same stream): every chunk applies on its own, and other traffic interleaves.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::membership::Outdated;
use super::timer::Timer;
use super::{Node, Outgoing};
use crate::tracker::{DIGEST_BUCKETS, Digest, RowId, TrackerRow};
use crate::wire::{self, Message, WireRow};

/// Every digest bucket.
pub(super) const ALL_BUCKETS: u32 = u32::MAX >> (32 - DIGEST_BUCKETS);
const _: () = assert!(DIGEST_BUCKETS <= 32, "bucket masks are u32");

/// Tracker rows waiting to go out: those from id `next` on, of the buckets in
/// `buckets` (a bit mask). A node answering many joins at once holds a cursor per
/// answer, not a copy of its table.
#[derive(Clone, Copy, Debug)]
pub(super) struct RowStream {
    to: SocketAddr,
    next: RowId,
    buckets: u32,
    kind: RowsKind,
}

/// Which message carries streamed rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RowsKind {
    JoinReply,
    Rows,
}

impl RowsKind {
    fn message(self, rows: Vec<WireRow>) -> Message {
        match self {
            RowsKind::JoinReply => Message::JoinReply { rows },
            RowsKind::Rows => Message::Rows { rows },
        }
    }
}

impl Node {
    pub(super) fn run_anti_entropy(&mut self, now: Instant) {
        if self.left || !self.timers.is_expired(Timer::AntiEntropy, now) {
            return;
        }
        let interval = self.config.anti_entropy_interval;
        // Jitter keeps nodes from exchanging in lockstep. Under measured loss
        // exchanges run more often, stretched as suspicions are: repairing
        // this node takes a round trip (its digest out, the rows back), and
        // an exchange is what reaches a member that every copy of a piece of
        // gossip missed (at 50 % loss one in a hundred members misses a death
        // and, at the plain interval, waited tens of seconds for its repair).
        let stretch = self.probing.loss.suspicion_stretch();
        let next = now + interval.mul_f64((0.75 + self.rng.f64() * 0.5) / stretch);
        self.timers.set(Timer::AntiEntropy, next);
        // One exchange in four goes to a node believed dead: if it is in fact
        // alive behind a healed partition, it learns of its death and refutes it.
        let pool = if self.dead.len() > 0 && (self.members.len() == 0 || self.rng.u8(..4) == 0) {
            &self.dead
        } else {
            &self.members
        };
        let target = pool
            .pick(&mut self.rng)
            .and_then(|id| self.tracker.by_id(id))
            .map(|row| row.addr);
        // A member just revived goes first (see `Node::revived`).
        if let Some(to) = self.reunion.exchange_with.take().or(target) {
            self.send_sync(to, false);
        }
    }

    /// Brings the next anti-entropy exchange forward to within a probe period or
    /// two, for a node that knows it has missed news.
    pub(super) fn sync_soon(&mut self, now: Instant) {
        let soon = now + self.config.probe_interval.mul_f64(1.0 + self.rng.f64());
        let next = self
            .timers
            .get(Timer::AntiEntropy)
            .map_or(soon, |at| at.min(soon));
        self.timers.set(Timer::AntiEntropy, next);
    }

    /// Sends this node's digest to `to`; `reply` marks the answer to theirs.
    pub(super) fn send_sync(&mut self, to: SocketAddr, reply: bool) {
        let digest = self.tracker.digest().into();
        self.send(to, Message::Sync { digest, reply });
    }

    pub(super) fn handle_sync(&mut self, from: SocketAddr, theirs: Digest, reply: bool) {
        let ours = self.tracker.digest();
        if ours == theirs {
            return;
        }
        self.stats.anti_entropy_repairs += 1;
        let differing = (0..DIGEST_BUCKETS)
            .filter(|&bucket| ours[bucket] != theirs[bucket])
            .fold(0u32, |mask, bucket| mask | 1 << bucket);
        self.send_rows(from, differing, RowsKind::Rows);
        if !reply {
            self.send_sync(from, true);
        }
    }

    /// Rows from an exchange, from a node that holds this one dead (see
    /// `reunion.rs`) or suspects it (see `apply_row`), or an answer to outdated
    /// news. A refutation they caused, or the current row when they were
    /// outdated about this node, goes straight back to `from`: it holds this node
    /// dead, suspect or outdated and is the first that needs to know.
    pub(super) fn handle_rows(&mut self, now: Instant, from: SocketAddr, rows: Vec<WireRow>) {
        let incarnation = self.incarnation;
        let outdated = self.apply_bulk(now, rows, self.bulk_source(now));
        if self.incarnation != incarnation || outdated {
            let own = Outdated {
                node: self.name.clone(),
                incarnation: self.incarnation,
            };
            if let Some(own) = self.answer_for(now, from, &own) {
                self.send_rows_now(from, vec![own]);
            }
        }
    }

    /// Queues the rows of `buckets` (a bit mask) to `to`; they are cut into
    /// datagrams when sent, and every one applies on its own.
    pub(super) fn send_rows(&mut self, to: SocketAddr, buckets: u32, kind: RowsKind) {
        self.outbox.push_back(Outgoing::Rows(RowStream {
            to,
            next: 0,
            buckets,
            kind,
        }));
    }

    /// The next datagram of a row stream, if any rows are left; the rest of the
    /// stream goes to the back of the outbox, so other traffic interleaves.
    pub(super) fn next_chunk(&mut self, stream: RowStream) -> Option<(SocketAddr, Message)> {
        let (rows, rest) = self.rows_chunk(stream.next, stream.buckets, stream.kind);
        if let Some(next) = rest {
            self.outbox
                .push_back(Outgoing::Rows(RowStream { next, ..stream }));
        }
        (!rows.is_empty()).then(|| (stream.to, stream.kind.message(rows)))
    }

    /// Room for rows in one datagram of `kind` from this node.
    fn rows_budget(&self, kind: RowsKind) -> usize {
        let empty = kind.message(Vec::new());
        self.config
            .max_packet_size
            .saturating_sub(wire::base_len(self.sender(), &empty) + wire::ROW_SLACK)
    }

    /// Sends `rows` to `to` now, in as few `Rows` datagrams as fit
    /// `max_packet_size` (answers and contacts: a few rows, whose tags may make
    /// them large). A row too large for any datagram from here is skipped, as in
    /// a stream.
    pub(super) fn send_rows_now(&mut self, to: SocketAddr, rows: Vec<WireRow>) {
        let budget = self.rows_budget(RowsKind::Rows);
        let mut chunk = Vec::new();
        let mut used = 0;
        for row in rows {
            let size = wire::encoded_len(&row);
            if size > budget {
                debug!(node = %row.0.node, size, budget, "row too large for a datagram from here");
                continue;
            }
            if used + size > budget && !chunk.is_empty() {
                let full = std::mem::take(&mut chunk);
                self.send(to, Message::Rows { rows: full });
                used = 0;
            }
            used += size;
            chunk.push(row);
        }
        if !chunk.is_empty() {
            self.send(to, Message::Rows { rows: chunk });
        }
    }

    /// The rows for one datagram from id `next` on, and where the next datagram
    /// starts (`None` when these were the last).
    fn rows_chunk(
        &self,
        next: RowId,
        buckets: u32,
        kind: RowsKind,
    ) -> (Vec<WireRow>, Option<RowId>) {
        let budget = self.rows_budget(kind);
        let mut rows = Vec::new();
        let mut used = 0;
        for (id, row) in self.tracker.rows_from(next) {
            if buckets & (1 << TrackerRow::bucket(&row.node)) == 0 {
                continue;
            }
            let row = WireRow(row.clone());
            let size = wire::encoded_len(&row);
            if size > budget {
                // Only a row with large tags relayed by a node with a long name
                // can be this large (its owner checked that it fits its own
                // packets): skipped, never sent oversized; others can relay it.
                debug!(node = %row.0.node, size, budget, "row too large for a datagram from here");
                continue;
            }
            if used + size > budget && !rows.is_empty() {
                return (rows, Some(id));
            }
            used += size;
            rows.push(row);
        }
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::Timer;
    use crate::node::testing::*;

    #[test]
    fn join_replies_are_chunked_within_the_packet_size() {
        let now = epoch();
        let mut node = node(now);
        let updates: Vec<Update> = (0..200)
            .map(|i| alive(&format!("peer-with-a-long-name-{i:04}"), 1000 + i, 0))
            .collect();
        for chunk in updates.chunks(10) {
            let refs: Vec<&Update> = chunk.iter().collect();
            node.handle_packet(now, addr(2), &packet("peer", 0, Message::Gossip, &refs));
        }
        let _ = sent(&mut node);
        node.handle_packet(now, addr(3), &join_from_joiner());
        let mut rows = 0;
        let mut chunks = 0;
        let cluster = node.config.cluster_id;
        while let Some(t) = node.poll_transmit() {
            assert!(t.payload.len() <= 1400);
            let packet = crate::wire::decode(
                t.payload,
                cluster,
                None,
                &mut Vec::new(),
                crate::config::Config::default().tag_limits(),
            )
            .expect("decodes");
            if let Message::JoinReply { rows: chunk } = packet.message {
                rows += chunk.len();
                chunks += 1;
            }
        }
        assert_eq!(rows, 202, "every row, self and joiner included");
        assert!(chunks > 1);
    }

    #[test]
    fn answers_to_outdated_news_about_members_with_large_tags_fit_their_datagrams() {
        let now = epoch();
        let mut node = node(now);
        let large =
            |i: usize| Tags::from_pairs([("k", format!("{i}").repeat(900))]).expect("valid");
        // Three members refuted with large tags (incarnation 1); a late peer
        // gossips a suspicion of each at incarnation 0, without tags: the three
        // current rows do not fit one datagram.
        let mut current = Vec::new();
        let mut outdated = Vec::new();
        for i in 0..3 {
            let mut update = alive(&format!("peer-{i}"), 1000 + i as u16, 1);
            update.row.0 = update.row.0.with_tags(large(i));
            current.push(update);
            outdated.push(suspect(&format!("peer-{i}"), 1000 + i as u16, 0, "late"));
        }
        for update in &current {
            node.handle_packet(now, addr(2), &packet("peer", 0, Message::Gossip, &[update]));
        }
        let _ = sent(&mut node);
        let refs: Vec<&Update> = outdated.iter().collect();
        node.handle_packet(now, addr(4), &packet("late", 0, Message::Gossip, &refs));
        let cluster = node.config.cluster_id;
        let limits = node.config.tag_limits();
        let mut answered = Vec::new();
        while let Some(t) = node.poll_transmit() {
            assert!(t.payload.len() <= 1400, "{} bytes", t.payload.len());
            let to = t.to;
            let packet = crate::wire::decode(t.payload, cluster, None, &mut Vec::new(), limits)
                .expect("decodes");
            if let (true, Message::Rows { rows }) = (to == addr(4), packet.message) {
                answered.extend(rows.into_iter().map(|row| (row.0.node, row.0.incarnation)));
            }
        }
        answered.sort();
        let expected: Vec<_> = (0..3).map(|i| (name(&format!("peer-{i}")), 1)).collect();
        assert_eq!(
            answered, expected,
            "every current row, over several datagrams"
        );
    }

    #[test]
    fn rows_with_near_limit_tags_are_chunked_within_the_packet_size() {
        let now = epoch();
        let mut node = node(now);
        let near_limit = |i: usize| {
            // 1020 of the 1024 encoded bytes allowed by default.
            Tags::from_pairs([(format!("k{i:02}"), "v".repeat(1014))]).expect("valid")
        };
        for i in 0..30 {
            let mut update = alive(&format!("peer-{i:04}"), 1000 + i as u16, 0);
            update.row.0 = update.row.0.with_tags(near_limit(i));
            assert_eq!(update.row.0.tags.encoded_len(), 1020);
            node.handle_packet(
                now,
                addr(2),
                &packet("peer", 0, Message::Gossip, &[&update]),
            );
        }
        node.set_tags(now, near_limit(99)).expect("fits");
        let _ = sent(&mut node);
        node.handle_packet(now, addr(3), &join_from_joiner());
        // The sync exchange answers with rows too.
        let digest: WireDigest = [0u64; crate::tracker::DIGEST_BUCKETS].into();
        let sync = packet(
            "peer",
            0,
            Message::Sync {
                digest,
                reply: true,
            },
            &[],
        );
        node.handle_packet(now, addr(2), &sync);
        let (mut replied, mut repaired) = (0, 0);
        let cluster = node.config.cluster_id;
        let limits = node.config.tag_limits();
        while let Some(t) = node.poll_transmit() {
            assert!(t.payload.len() <= 1400, "{} bytes", t.payload.len());
            let packet = crate::wire::decode(t.payload, cluster, None, &mut Vec::new(), limits)
                .expect("decodes");
            match packet.message {
                Message::JoinReply { rows } => replied += rows.len(),
                Message::Rows { rows } => repaired += rows.len(),
                _ => {}
            }
        }
        assert_eq!(replied, 32, "every row, self and joiner included");
        assert_eq!(repaired, 32);
    }

    /// At 50 % measured loss an exchange repairs its sender a quarter as
    /// often (its digest and the rows back must both arrive): the exchanges
    /// run as much more often as suspicions are stretched, with the same
    /// jitter, so a member that gossip missed is repaired as soon as without
    /// loss.
    #[test]
    fn exchanges_run_more_often_under_measured_loss() {
        let now = epoch();
        let gap = |loss_in_four: bool| {
            let mut node = node(now);
            let peer = alive("peer", 2, 0);
            node.handle_packet(now, addr(2), &packet("peer", 0, Message::Gossip, &[&peer]));
            let _ = sent(&mut node);
            if loss_in_four {
                // One round trip in four comes back: 50 % loss a datagram.
                for i in 0..1000 {
                    node.probing.loss.record(i % 4 == 0);
                }
            }
            let due = node
                .timers
                .get(Timer::AntiEntropy)
                .expect("a node with a member exchanges");
            node.run_anti_entropy(due);
            let next = node.timers.get(Timer::AntiEntropy).expect("rescheduled");
            (next - due, node.probing.loss.suspicion_stretch())
        };
        let (plain, one) = gap(false);
        let (lossy, stretch) = gap(true);
        assert_eq!(one, 1.0);
        assert!(stretch > 3.0, "{stretch}");
        let interval = crate::config::Config::default().anti_entropy_interval;
        assert!(plain >= interval.mul_f64(0.75) && plain <= interval.mul_f64(1.25));
        let expected = plain.as_secs_f64() / stretch;
        assert!(
            (lossy.as_secs_f64() - expected).abs() < 1e-6,
            "{lossy:?} against {plain:?} / {stretch}"
        );
    }

    #[test]
    fn a_matching_digest_costs_no_reply() {
        let now = epoch();
        let mut node = node(now);
        let digest: WireDigest = node.tracker().digest().into();
        let sync = packet(
            "peer",
            0,
            Message::Sync {
                digest,
                reply: false,
            },
            &[],
        );
        node.handle_packet(now, addr(2), &sync);
        assert!(sent(&mut node).is_empty());
        let other = packet(
            "peer",
            0,
            Message::Sync {
                digest: [0u64; crate::tracker::DIGEST_BUCKETS].into(),
                reply: false,
            },
            &[],
        );
        node.handle_packet(now, addr(2), &other);
        let kinds: Vec<_> = sent(&mut node)
            .into_iter()
            .map(|(_, p)| std::mem::discriminant(&p.message))
            .collect();
        assert_eq!(
            kinds.len(),
            2,
            "rows of the differing bucket, then our digest"
        );
    }
}
