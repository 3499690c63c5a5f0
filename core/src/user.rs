//! User events: the application's own named messages, carried by the cluster
//! to every live member and delivered once to each process, in each origin's
//! order. The types a user sees; the protocol is in `node/broadcast.rs`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::error::ConfigError;
use crate::name::{NameTaken, NodeName};

/// Which event: the process that sent it (its name and its start, Unix ms)
/// and its sequence number there, counted from 1.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserEventId {
    /// The node that sent it.
    pub origin: NodeName,
    /// When the origin's process started (its wall clock, Unix ms): a
    /// restarted process's events are not its earlier life's.
    pub started: i64,
    /// Its place in the origin process's events, from 1.
    pub seq: u64,
}

/// A user event delivered to this node ([`Event::User`](crate::Event::User)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserEvent {
    /// Which event.
    pub id: UserEventId,
    /// Its name, as the sender gave it.
    pub name: String,
    /// Its payload, as the sender gave it.
    pub payload: Vec<u8>,
    /// The origin's Lamport time when it sent it: an event sent after this
    /// node's delivery of another has a higher one.
    pub lamport: u64,
    /// When the origin sent it, by the origin's clock.
    pub sent_at: DateTime<Utc>,
}

/// Why [`Node::send_event`](crate::Node::send_event) refused an event. Nothing
/// was sent and no state changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendEventError {
    /// The name is empty.
    #[error("an event's name must not be empty")]
    EmptyName,
    /// The name is longer than `user_events.max_name_len` bytes.
    #[error("the event's name has {len} bytes, more than the limit of {limit}")]
    NameTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The payload is larger than `user_events.max_payload` bytes.
    #[error("the event's payload has {len} bytes, more than the limit of {limit}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The event, with this node's name, does not fit one datagram.
    #[error("the event takes {len} bytes on the wire, more than a datagram's {limit}")]
    TooLargeForDatagram {
        /// Its encoded size.
        len: usize,
        /// `max_packet_size`.
        limit: usize,
    },
    /// This node sends faster than `user_events.send_rate` allows, or its
    /// queue of user datagrams is full: try again later.
    #[error("too many events: the send rate or the send queue is at its limit")]
    Busy,
    /// The node lost its name and takes no more commands.
    #[error(transparent)]
    NameTaken(#[from] NameTaken),
}

/// The limits and tuning of user events (`Config::user_events`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserEventConfig {
    /// Longest event name, in bytes. Default 128.
    pub max_name_len: usize,
    /// Largest payload, in bytes. Default 1024, which with a name of up to
    /// 128 bytes fits the default 1400-byte datagram: one event, one
    /// datagram. With smaller datagrams an event that does not fit is refused
    /// at the sender ([`SendEventError::TooLargeForDatagram`]).
    pub max_payload: usize,
    /// How many recent events a node keeps to answer pulls (the window within
    /// which a missed event is repaired). Default 1024.
    pub window_count: usize,
    /// How long a node keeps an event to answer pulls; older events are not
    /// accepted at all, so none is ever delivered twice. Default 120 s: an
    /// event sent at the start of a one-minute partition still crosses it
    /// after the heal.
    pub window_age: Duration,
    /// Members each holder of an event pushes it to (the ring's branching).
    /// Default 4.
    pub fanout: usize,
    /// How many packets each node piggybacks an event's announcement on,
    /// stretched under the loss the node measures as suspicion is. Default 2.
    pub announce_transmits: u32,
    /// Events this node may send per second, after a burst of `send_burst`.
    /// Default 100.
    pub send_rate: u32,
    /// See `send_rate`. Default 200.
    pub send_burst: u32,
    /// Events a receiver accepts from one origin per second, after a burst of
    /// `origin_burst`; the rest are dropped and counted. Default 200.
    pub origin_rate: u32,
    /// See `origin_rate`. Default 400.
    pub origin_burst: u32,
    /// Most user datagrams waiting to be sent; beyond it, sends are refused
    /// and forwards dropped (pulls repair them). Default 4096.
    pub max_queued: usize,
    /// How long a pull waits for its answer before it is asked again. Default 250 ms.
    pub pull_timeout: Duration,
    /// How long a node that heard of an event it lacks (an announcement, or
    /// a gap before one it holds) waits before pulling it: the push along
    /// the tree is likely on its way. Default 50 ms.
    pub pull_delay: Duration,
}

impl Default for UserEventConfig {
    fn default() -> Self {
        Self {
            max_name_len: 128,
            max_payload: 1024,
            window_count: 1024,
            window_age: Duration::from_secs(120),
            fanout: 4,
            announce_transmits: 2,
            send_rate: 100,
            send_burst: 200,
            origin_rate: 200,
            origin_burst: 400,
            max_queued: 4096,
            pull_timeout: Duration::from_millis(250),
            pull_delay: Duration::from_millis(50),
        }
    }
}

/// Bytes of a datagram an event's fields other than its name and payload
/// may take: the envelope and its seal, two names of 64 bytes, the varints.
const EVENT_OVERHEAD: usize = 240;

impl UserEventConfig {
    /// Checks every field against `max_packet_size`.
    pub(crate) fn validate(&self, max_packet_size: usize) -> Result<(), ConfigError> {
        let invalid = |field, reason| Err(ConfigError::Invalid { field, reason });
        if self.max_name_len == 0 {
            return invalid("user_events.max_name_len", "must be positive");
        }
        if self.max_name_len + EVENT_OVERHEAD > max_packet_size {
            return invalid(
                "user_events.max_name_len",
                "with 240 bytes of envelope, must fit max_packet_size",
            );
        }
        if self.window_count == 0 || self.window_age.is_zero() {
            return invalid("user_events.window_count", "the window must be positive");
        }
        if !(1..=64).contains(&self.fanout) {
            return invalid("user_events.fanout", "must be between 1 and 64");
        }
        if self.send_rate == 0 || self.send_burst == 0 {
            return invalid("user_events.send_rate", "must be positive");
        }
        if self.origin_rate == 0 || self.origin_burst == 0 {
            return invalid("user_events.origin_rate", "must be positive");
        }
        if self.max_queued < self.fanout || self.pull_timeout.is_zero() {
            return invalid(
                "user_events.max_queued",
                "must hold one event's pushes, and pull_timeout be positive",
            );
        }
        Ok(())
    }
}

/// Counters of user events at one node ([`Stats::user_events`](crate::Stats::user_events)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserEventStats {
    /// Events this node sent.
    pub sent: u64,
    /// Events delivered to this node's owner.
    pub delivered: u64,
    /// Payload copies received (pushes and pull answers), wanted or not.
    pub copies_received: u64,
    /// Copies of events already delivered, held or skipped.
    pub duplicates: u64,
    /// Events older than the window, or sent before this process started:
    /// never delivered here.
    pub too_old: u64,
    /// Events dropped because their origin was over `origin_rate` here
    /// (given up for good: not pulled again when announced).
    pub rate_limited: u64,
    /// Pushes dropped because the send queue was full (pulls repair them).
    pub queue_full: u64,
    /// Pulls this node sent.
    pub pulls_sent: u64,
    /// Events given up on: a gap held longer than half the window's age,
    /// skipped so that the origin's later events are delivered, or one
    /// before an event dropped for its origin's rate.
    pub gaps_skipped: u64,
    /// Events with a name or payload over the limits, or a push that names
    /// this node as its origin: dropped.
    pub invalid: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_fit_a_default_datagram_and_a_name_too_long_for_one_does_not() {
        let defaults = UserEventConfig::default();
        assert_eq!(defaults.validate(1400), Ok(()));
        assert!(defaults.max_name_len + defaults.max_payload + EVENT_OVERHEAD <= 1400);
        let long = UserEventConfig {
            max_name_len: 1200,
            ..UserEventConfig::default()
        };
        assert!(long.validate(1400).is_err());
        assert_eq!(long.validate(9000), Ok(()));
    }
}
