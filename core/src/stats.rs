//! Counters a node keeps about its own traffic, and why it dropped what it dropped.

use std::net::SocketAddr;

use crate::query::QueryStats;
use crate::tags::TagsError;
use crate::user::UserEventStats;
use crate::wire::DecodeError;

/// Why an incoming packet (or a part of one: an update, a message, a
/// piggybacked item) was dropped. A dropped packet changes no state.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum DropReason {
    /// Larger than `max_packet_size`.
    Oversized,
    /// Shorter than the fixed header.
    Truncated,
    /// Does not start with the protocol's magic bytes.
    BadMagic,
    /// A protocol version this build does not speak.
    UnsupportedVersion,
    /// Another cluster's packet.
    WrongCluster,
    /// The body does not decode (bad encoding, bad name, trailing bytes, time out of range).
    Malformed,
    /// Claims to come from this node's own name (a loop, or a name clash).
    FromSelf,
    /// A reply nobody asked for (e.g. rows of a join this node never sent).
    Unsolicited,
    /// A ping meant for another node name (the address now belongs to someone
    /// else), or a name-conflict claim from a process under another name.
    WrongTarget,
    /// The tracker is full (`max_nodes`): updates about further unknown nodes are dropped.
    TrackerFull,
    /// `handle_unreachable` named an address no tracked node uses.
    UnknownAddress,
    /// A plaintext packet while this node requires sealed ones (keys are set).
    NotSealed,
    /// A sealed packet, but this node has no keys.
    UnexpectedSeal,
    /// Sealed with a key this node does not hold, or altered on the way.
    Authentication,
    /// A join of an unknown name from a source over its `join_rate`.
    RateLimited,
    /// Anything that reaches a node after it lost its name to another live
    /// process ([`Event::NameLost`](crate::Event::NameLost)): such a node takes
    /// no more input.
    NameLost,
    /// A row's tags take more encoded bytes than `max_tags_size` (the whole
    /// packet is dropped, as for every tag rule below).
    TagsTooLarge,
    /// A row has more tags than `max_tags`.
    TooManyTags,
    /// A row's tag keys are not in strictly increasing order (unsorted or duplicate).
    TagsUnsorted,
    /// A row's tag key or value is not UTF-8.
    TagsInvalidUtf8,
    /// A message of a kind this build does not know (a later version's): it
    /// is skipped, the updates piggybacked on it still apply.
    UnknownMessage,
    /// A piggybacked item of a kind this build does not know (a later
    /// version's): it is skipped, the rest of the packet still applies.
    UnknownPiggyback,
}

labels!(DropReason {
    Oversized => "oversized",
    Truncated => "truncated",
    BadMagic => "bad_magic",
    UnsupportedVersion => "unsupported_version",
    WrongCluster => "wrong_cluster",
    Malformed => "malformed",
    FromSelf => "from_self",
    Unsolicited => "unsolicited",
    WrongTarget => "wrong_target",
    TrackerFull => "tracker_full",
    UnknownAddress => "unknown_address",
    NotSealed => "not_sealed",
    UnexpectedSeal => "unexpected_seal",
    Authentication => "authentication",
    RateLimited => "rate_limited",
    NameLost => "name_lost",
    TagsTooLarge => "tags_too_large",
    TooManyTags => "too_many_tags",
    TagsUnsorted => "tags_unsorted",
    TagsInvalidUtf8 => "tags_invalid_utf8",
    UnknownMessage => "unknown_message",
    UnknownPiggyback => "unknown_piggyback",
});

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 22] = [
        DropReason::Oversized,
        DropReason::Truncated,
        DropReason::BadMagic,
        DropReason::UnsupportedVersion,
        DropReason::WrongCluster,
        DropReason::Malformed,
        DropReason::FromSelf,
        DropReason::Unsolicited,
        DropReason::WrongTarget,
        DropReason::TrackerFull,
        DropReason::UnknownAddress,
        DropReason::NotSealed,
        DropReason::UnexpectedSeal,
        DropReason::Authentication,
        DropReason::RateLimited,
        DropReason::NameLost,
        DropReason::TagsTooLarge,
        DropReason::TooManyTags,
        DropReason::TagsUnsorted,
        DropReason::TagsInvalidUtf8,
        DropReason::UnknownMessage,
        DropReason::UnknownPiggyback,
    ];
}

/// The one place a datagram that does not decode becomes a counted drop.
impl From<DecodeError> for DropReason {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::Truncated => DropReason::Truncated,
            DecodeError::BadMagic => DropReason::BadMagic,
            DecodeError::UnsupportedVersion => DropReason::UnsupportedVersion,
            DecodeError::WrongCluster => DropReason::WrongCluster,
            DecodeError::Malformed => DropReason::Malformed,
            DecodeError::NotSealed => DropReason::NotSealed,
            DecodeError::UnexpectedSeal => DropReason::UnexpectedSeal,
            DecodeError::Authentication => DropReason::Authentication,
            DecodeError::Tags(error) => (&error).into(),
        }
    }
}

/// The reason a row with broken tags is dropped for (from a peer, or a
/// restored table).
impl From<&TagsError> for DropReason {
    fn from(error: &TagsError) -> Self {
        match error {
            TagsError::TooLarge { .. } | TagsError::RowTooLarge { .. } => DropReason::TagsTooLarge,
            TagsError::TooMany { .. } => DropReason::TooManyTags,
            TagsError::Unsorted | TagsError::DuplicateKey { .. } => DropReason::TagsUnsorted,
            TagsError::InvalidUtf8 => DropReason::TagsInvalidUtf8,
            TagsError::Malformed => DropReason::Malformed,
        }
    }
}

/// Traffic and drop counters of one node, cumulative since it was created.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Datagrams handed to `poll_transmit`'s caller.
    pub packets_sent: u64,
    /// Bytes in those datagrams.
    pub bytes_sent: u64,
    /// Datagrams given to `handle_packet`, dropped ones included.
    pub packets_received: u64,
    /// Bytes in those datagrams.
    pub bytes_received: u64,
    /// Probes started.
    pub probes_sent: u64,
    /// Probes that ended without any ack.
    pub probes_failed: u64,
    /// Acks that came after their probe had ended (the gossip they carry is still used).
    pub late_acks: u64,
    /// Indirect probes (ping-reqs) this node asked others to make for its probes.
    pub indirect_probes_sent: u64,
    /// Members this node began to suspect because its own probe failed.
    pub suspicions_raised: u64,
    /// Suspects this node declared dead (their suspicion ran out unrefuted).
    pub deaths_declared: u64,
    /// Times this node refuted a suspicion (or a death) of itself.
    pub refutations: u64,
    /// Updates evicted from the gossip queue by `max_pending_updates`.
    pub gossip_evicted: u64,
    /// Anti-entropy exchanges that found a difference.
    pub anti_entropy_repairs: u64,
    /// Times this node found it had not been driven for a while and missed a
    /// deadline (it was paused or starved), and gave pending verdicts more time.
    pub stalls: u64,
    /// User events: sent, delivered, copies received, dropped.
    pub user_events: UserEventStats,
    /// Queries: sent, delivered, responses, late and dropped.
    pub queries: QueryStats,
    drops: [u64; DropReason::ALL.len()],
    /// Where the last packet dropped for each reason came from: an operator's
    /// warning about a misconfigured peer (keys, cluster) names it.
    last_sources: [Option<SocketAddr>; DropReason::ALL.len()],
}

impl Stats {
    /// How many packets (or updates) were dropped for this reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Drops for every reason together.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// The non-zero drop counters.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .into_iter()
            .map(|reason| (reason, self.dropped(reason)))
            .filter(|(_, count)| *count > 0)
    }

    /// Where the last packet dropped for `reason` came from (`None` for drops
    /// of updates rather than packets, or none yet).
    pub fn last_dropped_from(&self, reason: DropReason) -> Option<SocketAddr> {
        self.last_sources[reason as usize]
    }

    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// Counts a dropped packet and remembers its source.
    pub(crate) fn count_dropped_packet(&mut self, reason: DropReason, from: SocketAddr) {
        self.count_drop(reason);
        self.last_sources[reason as usize] = Some(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter() {
        let mut stats = Stats::default();
        for (i, reason) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i, "ALL is in declaration order");
            stats.count_drop(reason);
        }
        assert_eq!(stats.dropped_total(), DropReason::ALL.len() as u64);
        assert_eq!(stats.drops().count(), DropReason::ALL.len());
        assert_eq!(stats.dropped(DropReason::Malformed), 1);
        assert_eq!(stats.last_dropped_from(DropReason::Malformed), None);
        let from = SocketAddr::from(([10, 0, 0, 7], 7946));
        stats.count_dropped_packet(DropReason::WrongCluster, from);
        assert_eq!(stats.dropped(DropReason::WrongCluster), 2);
        assert_eq!(
            stats.last_dropped_from(DropReason::WrongCluster),
            Some(from)
        );
    }

    #[test]
    fn each_broken_tag_rule_is_its_own_reason() {
        let cases = [
            (
                TagsError::TooLarge { size: 2, limit: 1 },
                DropReason::TagsTooLarge,
            ),
            (
                TagsError::TooMany { count: 2, limit: 1 },
                DropReason::TooManyTags,
            ),
            (TagsError::Unsorted, DropReason::TagsUnsorted),
            (TagsError::InvalidUtf8, DropReason::TagsInvalidUtf8),
            (TagsError::Malformed, DropReason::Malformed),
        ];
        for (error, reason) in cases {
            assert_eq!(DropReason::from(DecodeError::Tags(error)), reason);
        }
    }
}
