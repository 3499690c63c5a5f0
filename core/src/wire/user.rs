//! User events on the wire: the event itself (a message), a pull asking for
//! one (a message), and the announcement of one (a piggybacked item).
//!
//! ```text
//! kind  message      fields
//! 11    Event        id | sent at | previous sent at | lamport | name | payload
//!                    | span (0, or 1 and a varint) | age (varint, ms)
//! 12    EventPull    id
//! 13    EventAck     id   (a push along the tree arrived)
//!
//! kind  item         fields
//!  1    EventId      id | sent at | age (varint, ms)
//!
//! id    = origin name | origin start (zigzag varint, Unix ms) | seq (varint)
//! times = zigzag varints, the origin's wall clock in Unix ms (only their
//!         differences are compared: the age, not the times, tells how old
//!         an event is)
//! name  = varint length | UTF-8;  payload = varint length | bytes
//! ```
//!
//! A node of a build without user events skips all three by their length and
//! counts them (`UnknownMessage`, `UnknownPiggyback`).

use serde::{Deserialize, Serialize};

use crate::name::NodeName;

/// Message kinds of user events (after the membership messages' 0..=10).
pub(super) mod kind {
    pub(in crate::wire) const EVENT: u32 = 11;
    pub(in crate::wire) const EVENT_PULL: u32 = 12;
    pub(in crate::wire) const EVENT_ACK: u32 = 13;
}

/// Piggybacked item kind of an event's announcement (after `Update`'s 0).
pub(super) const EVENT_ID_ITEM: u32 = 1;

/// One event of one origin process: the process's name, its start (so that a
/// restarted process's events are told apart from its earlier life's), and
/// its sequence number, counted from 1.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct EventKey {
    pub(crate) origin: NodeName,
    pub(crate) started: i64,
    pub(crate) seq: u64,
}

/// A user event as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireEvent {
    pub(crate) key: EventKey,
    /// When the origin sent it (its wall clock, Unix ms).
    pub(crate) sent_at: i64,
    /// When the origin sent the one before (`i64::MIN` for the first): a node
    /// that started after it knows nothing earlier is its to deliver.
    pub(crate) prev_sent_at: i64,
    /// The origin's Lamport time at the send.
    pub(crate) lamport: u64,
    pub(crate) name: String,
    pub(crate) payload: Vec<u8>,
    /// The end of the ring span the receiver forwards it to (see
    /// `node/broadcast/tree.rs`); `None` on an answer to a pull.
    pub(crate) span: Option<u64>,
    /// How long ago the origin sent it, ms: 0 at the origin, and each node
    /// that passes it on adds how long it kept it (the time on the wire is
    /// not counted). No clock is compared with another's.
    pub(crate) age_ms: u64,
}

/// An event's announcement, piggybacked: who lacks it pulls it. Serialized
/// as a framed item (`message.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EventId {
    pub(crate) key: EventKey,
    pub(crate) sent_at: i64,
    /// The event's age when this announcement was sent (see `WireEvent::age_ms`).
    pub(crate) age_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_key_orders_by_origin_then_start_then_seq() {
        let key = |origin: &str, started, seq| EventKey {
            origin: NodeName::new(origin).expect("valid"),
            started,
            seq,
        };
        assert!(key("a", 5, 9) < key("a", 6, 1));
        assert!(key("a", 6, 1) < key("a", 6, 2));
        assert!(key("a", 9, 9) < key("b", 0, 0));
    }
}
