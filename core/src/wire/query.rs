//! Queries on the wire: the query itself, pushed along a tree like a user
//! event, and the answers that go back to its origin.
//!
//! ```text
//! kind  message        fields
//! 14    Query          id | sent at | timeout (varint, ms) | request ack (1 byte)
//!                      | name | payload | filter nodes (count | name*)
//!                      | filter tags (count | (key | value: 0, or 1 and a string)*)
//!                      | span (0, or 1 and a varint)
//! 15    QueryAck       id | acking member's name   (to the origin)
//! 16    QueryResponse  id | responder name | payload   (to the origin)
//! 17    QueryRelay     id | responder name | payload   (to a relay, which
//!                      sends it on to the origin as a QueryResponse)
//! ```
//!
//! `id` is as for user events (`user.rs`): origin name | origin start | seq.
//! A node of a build without queries skips all four by their length and
//! counts them (`UnknownMessage`).

use serde::{Deserialize, Serialize};

use super::user::EventKey;
use crate::name::NodeName;

/// Message kinds of queries (after user events' 11..=13).
pub(super) mod kind {
    pub(in crate::wire) const QUERY: u32 = 14;
    pub(in crate::wire) const QUERY_ACK: u32 = 15;
    pub(in crate::wire) const QUERY_RESPONSE: u32 = 16;
    pub(in crate::wire) const QUERY_RELAY: u32 = 17;
}

/// A query as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireQuery {
    /// Which query (the origin process and its query number).
    pub(crate) key: EventKey,
    /// When the origin sent it (its wall clock, Unix ms).
    pub(crate) sent_at: i64,
    /// How long the origin waits for answers, in ms.
    pub(crate) timeout_ms: u64,
    pub(crate) request_ack: bool,
    pub(crate) name: String,
    pub(crate) payload: Vec<u8>,
    /// The filter's node names (empty: any).
    pub(crate) nodes: Vec<NodeName>,
    /// The filter's tag queries: a key, and the value if one is wanted.
    pub(crate) tags: Vec<(String, Option<String>)>,
    /// The end of the ring span the receiver forwards it to (see
    /// `node/broadcast/tree.rs`).
    pub(crate) span: Option<u64>,
}

/// A response as it travels, to the origin or through a relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireResponse {
    pub(crate) key: EventKey,
    /// The member that answered (a relay is the packet's sender, not this).
    pub(crate) responder: NodeName,
    pub(crate) payload: Vec<u8>,
}
