//! Refusal notices: a node answers a packet it cannot open (or that is
//! another cluster's) with a small unsealed notice saying so, and a joining
//! node that receives one from a seed it sent its join to reports the reason
//! if the join fails. The wire form and what an attacker can do with it are
//! in `wire/notice.rs`.
//!
//! The sending side is limited: at most one notice per source address per
//! [`NOTICE_INTERVAL`], at most [`NOTICE_RATE`] a second in all, and never to
//! a packet shorter than the notice (no amplification). The receiving side
//! takes a notice only while a join is in progress and only from an address
//! the join was sent to; it changes nothing but the reason reported, and
//! never ends the join.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::{Node, Outgoing};
use crate::event::JoinRefusal;
use crate::limiter::{Bucket, make_room};
use crate::stats::DropReason;
use crate::wire::{self, DecodeError, Refusal};

/// Least time between two notices to one source address.
pub(super) const NOTICE_INTERVAL: Duration = Duration::from_secs(5);

/// Most notices a node sends per second, whatever their sources (a flood of
/// spoofed sources is not reflected at full rate).
pub(super) const NOTICE_RATE: u32 = 10;

/// Most source addresses remembered; when full, the one answered longest ago
/// is forgotten.
const MAX_SOURCES: usize = 1024;

/// Most refusals one join remembers (a CIDR scan may reach many addresses).
const MAX_REFUSALS: usize = 16;

/// The notices sent recently.
#[derive(Debug)]
pub(super) struct Notices {
    last: BTreeMap<SocketAddr, Instant>,
    bucket: Bucket,
}

impl Notices {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            last: BTreeMap::new(),
            bucket: Bucket::full(NOTICE_RATE, now),
        }
    }

    /// Whether `to` may be sent a notice now; records it if so.
    fn allow(&mut self, now: Instant, to: SocketAddr) -> bool {
        if self
            .last
            .get(&to)
            .is_some_and(|at| now.saturating_duration_since(*at) < NOTICE_INTERVAL)
        {
            return false;
        }
        if !self.bucket.take(now, NOTICE_RATE, NOTICE_RATE) {
            return false;
        }
        make_room(&mut self.last, &to, MAX_SOURCES, |at| *at);
        self.last.insert(to, now);
        true
    }
}

/// What a notice says about a packet that failed to decode this way, if
/// anything: only a packet of this protocol and version that this node cannot
/// open, or that is another cluster's, is answered.
fn refusal_for(error: &DecodeError) -> Option<Refusal> {
    match error {
        DecodeError::Authentication => Some(Refusal::KeyMismatch),
        DecodeError::NotSealed => Some(Refusal::SealRequired),
        DecodeError::UnexpectedSeal => Some(Refusal::NoKeys),
        DecodeError::WrongCluster => Some(Refusal::OtherCluster),
        _ => None,
    }
}

impl Node {
    /// A packet from `from` did not decode with `error`: answers it with a
    /// notice if the error is one a notice reports and the limits allow.
    pub(super) fn refuse(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        error: &DecodeError,
    ) {
        let Some(reason) = refusal_for(error) else {
            return;
        };
        let mut notice = Vec::new();
        if !wire::encode_notice(bytes, reason, &mut notice) || !self.notices.allow(now, from) {
            return;
        }
        debug!(%from, %reason, "answered a packet this node cannot open with a refusal notice");
        self.outbox.push_back(Outgoing::Notice {
            to: from,
            bytes: notice,
        });
    }

    /// A plaintext packet this node (holding keys) refused: is it a notice?
    /// Returns whether it was one and was taken.
    pub(super) fn receive_notice(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> bool {
        match wire::decode_notice(bytes, self.config.cluster_id) {
            Some(reason) => {
                self.handle_refusal(now, from, reason);
                true
            }
            None => false,
        }
    }

    /// A notice from `from`: kept as the reason to report if the join in
    /// progress fails, when `from` is one of its seeds; otherwise dropped.
    pub(super) fn handle_refusal(&mut self, _now: Instant, from: SocketAddr, reason: Refusal) {
        if !self
            .join_targets()
            .is_some_and(|targets| targets.contains(&from))
        {
            self.stats
                .count_dropped_packet(DropReason::Unsolicited, from);
            debug!(%from, %reason, "dropped a refusal notice: no join was sent there");
            return;
        }
        let refusals = &mut self.joining.refusals;
        if refusals.iter().any(|refusal| refusal.seed == from) || refusals.len() >= MAX_REFUSALS {
            return;
        }
        let refusal = JoinRefusal { seed: from, reason };
        warn!(seed = %from, %reason, "{refusal}");
        refusals.push(refusal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{Key, KeyRing};
    use crate::node::testing::*;
    use crate::wire::HEADER_LEN;

    fn keyed(now: Instant, key: u8, port: u16, cluster: &str) -> Node {
        let config = Config {
            keys: Some(KeyRing::new(Key::new([key; 32]))),
            join_attempts: 2,
            ..Config::for_cluster(cluster)
        };
        let mut node =
            Node::new(config, name(&format!("n{port}")), addr(port), now, wall()).expect("valid");
        while node.poll_event().is_some() {}
        node
    }

    /// Every datagram `from` sends, handed to `to`; returns how many.
    fn deliver(from: &mut Node, to: &mut Node, now: Instant) -> usize {
        let mut out = Vec::new();
        while let Some(t) = from.poll_transmit() {
            out.push((t.to, t.payload.to_vec()));
        }
        let count = out.len();
        for (at, bytes) in out {
            if at == to.addr() {
                to.handle_packet(now, from.addr(), &bytes);
            }
        }
        count
    }

    fn join_failed(node: &mut Node) -> Option<Vec<JoinRefusal>> {
        std::iter::from_fn(|| node.poll_event()).find_map(|event| match event {
            Event::JoinFailed { refused, .. } => Some(refused),
            _ => None,
        })
    }

    /// Runs `joiner`'s join through `seed` to its end; the seed answers what
    /// it receives. Returns the refusals the failed join reported.
    fn failed_join(joiner: &mut Node, seed: &mut Node, mut now: Instant) -> Vec<JoinRefusal> {
        joiner
            .join(now, &[Seed::Addr(seed.addr())])
            .expect("a seed");
        for _ in 0..200 {
            deliver(joiner, seed, now);
            deliver(seed, joiner, now);
            if let Some(refused) = join_failed(joiner) {
                return refused;
            }
            now = joiner.poll_timeout().expect("joining").max(now);
            joiner.handle_timeout(now);
            seed.handle_timeout(now);
        }
        panic!("the join neither failed nor succeeded");
    }

    #[test]
    fn a_join_with_another_key_fails_naming_the_seed_and_the_reason() {
        let now = epoch();
        let mut seed = keyed(now, 1, 2, "unit");
        let mut joiner = keyed(now, 2, 1, "unit");
        let refused = failed_join(&mut joiner, &mut seed, now);
        assert_eq!(
            refused,
            [JoinRefusal {
                seed: addr(2),
                reason: Refusal::KeyMismatch
            }]
        );
        assert_eq!(
            refused[0].to_string(),
            "seed 127.0.0.1:2 could not open our packets: a different key or cluster name (it holds none of our keys)"
        );
        assert_eq!(seed.stats().dropped(DropReason::Authentication), 2);
    }

    #[test]
    fn a_join_to_another_cluster_or_without_keys_fails_with_its_reason() {
        let now = epoch();
        let mut seed = keyed(now, 1, 2, "other");
        let mut joiner = keyed(now, 1, 1, "unit");
        let refused = failed_join(&mut joiner, &mut seed, now);
        assert_eq!(refused[0].reason, Refusal::OtherCluster);
        // Neither side has keys, and the clusters differ: the notice is read
        // as a plain message.
        let mut seed = node(now);
        let config = Config {
            join_attempts: 2,
            ..Config::for_cluster("another")
        };
        let mut joiner = Node::new(config, name("j"), addr(5), now, wall()).expect("valid");
        let refused = failed_join(&mut joiner, &mut seed, now);
        assert_eq!(refused[0].reason, Refusal::OtherCluster);
        // The seed requires keys, the joiner has none.
        let mut seed = keyed(now, 1, 2, "unit");
        let mut joiner = node(now);
        joiner.config.join_attempts = 2;
        let refused = failed_join(&mut joiner, &mut seed, now);
        assert_eq!(refused[0].reason, Refusal::SealRequired);
    }

    /// A sealed join from `node` to port 2, as bytes.
    fn sealed_join(node: &mut Node, now: Instant) -> Vec<u8> {
        node.join(now, &[Seed::Addr(addr(2))]).expect("a seed");
        let bytes = node.poll_transmit().expect("a join").payload.to_vec();
        while node.poll_transmit().is_some() {}
        bytes
    }

    fn drain(node: &mut Node) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| node.poll_transmit().map(|t| t.payload.to_vec())).collect()
    }

    #[test]
    fn notices_go_at_most_once_per_source_per_interval_and_never_larger_than_the_packet() {
        let now = epoch();
        let mut seed = keyed(now, 1, 2, "unit");
        let mut stranger = keyed(now, 2, 1, "unit");
        let join = sealed_join(&mut stranger, now);
        let mut notices = Vec::new();
        for _ in 0..5 {
            seed.handle_packet(now, addr(1), &join);
            notices.extend(drain(&mut seed));
        }
        assert_eq!(notices.len(), 1, "one per source within the interval");
        assert!(notices[0].len() < join.len(), "no amplification");
        let later = now + NOTICE_INTERVAL;
        seed.handle_packet(later, addr(1), &join);
        assert_eq!(drain(&mut seed).len(), 1, "again after the interval");
        // A packet shorter than the notice is not answered.
        seed.handle_packet(later, addr(7), &join[..HEADER_LEN + 4]);
        assert!(drain(&mut seed).is_empty());
        // A flood of sources is answered at NOTICE_RATE at most.
        for port in 100..200 {
            seed.handle_packet(later, addr(port), &join);
        }
        let sent = drain(&mut seed).len();
        assert!(sent < NOTICE_RATE as usize, "{sent}");
    }

    #[test]
    fn a_notice_is_taken_only_during_a_join_and_only_from_its_seeds() {
        let now = epoch();
        let mut seed = keyed(now, 1, 2, "unit");
        let mut stranger = keyed(now, 2, 9, "unit");
        let packet = sealed_join(&mut stranger, now);
        seed.handle_packet(now, addr(9), &packet);
        let notice = drain(&mut seed).pop().expect("a notice");
        // Not joining: dropped as unsolicited.
        let mut joiner = keyed(now, 2, 1, "unit");
        joiner.handle_packet(now, addr(2), &notice);
        assert_eq!(joiner.stats().dropped(DropReason::Unsolicited), 1);
        // Joining through port 3: a notice from port 2 is not taken, and it
        // does not end the join.
        joiner.join(now, &[Seed::Addr(addr(3))]).expect("a seed");
        let _ = drain(&mut joiner);
        joiner.handle_packet(now, addr(2), &notice);
        assert_eq!(joiner.stats().dropped(DropReason::Unsolicited), 2);
        joiner.handle_packet(now, addr(3), &notice);
        assert_eq!(joiner.joining.refusals.len(), 1);
        assert!(joiner.join_targets().is_some(), "the join goes on");
    }
}
