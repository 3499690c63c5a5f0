//! The messages and the piggybacked items of a packet, each behind its kind
//! and its length (see the parent module's layout).
//!
//! ```text
//! kind  message      fields
//!  0    Ping         seq (varint) | target name
//!  1    Ack          seq
//!  2    PingReq      seq | target name | target addr
//!  3    Nack         seq
//!  4    Join         row
//!  5    JoinReply    row count (varint) | row*
//!  6    Sync         digest (8 bytes per bucket) | reply (1 byte)
//!  7    Rows         row count | row*
//!  8    Gossip       (none)
//!  9    Bounced      seq
//! 10    Claim        addr | started (zigzag varint) | nonce (varint)
//!                    | echo (0, or 1 and a varint) | confirmed (1 byte)
//!
//! 11    Event        (user events: `user.rs`)
//! 12    EventPull    (user events: `user.rs`)
//! 13    EventAck     (user events: `user.rs`)
//! 14    Query        (queries: `query.rs`)
//! 15    QueryAck     (queries: `query.rs`)
//! 16    QueryResponse (queries: `query.rs`)
//! 17    QueryRelay   (queries: `query.rs`)
//! 18    QueryPushAck (queries: `query.rs`)
//!
//! 20    Refused      (the refusal notice, never sealed: `notice.rs`)
//! 21    Tombstones   (pruned members: `tombstone.rs`)
//!
//! kind  item         fields
//!  0    Update       row | suspecter (0, or 1 and a name)
//!  1    EventId      (user events: `user.rs`)
//!  4    Tombstone    (a pruned member: `tombstone.rs`)
//! ```
//!
//! The kinds are fixed here, not by the order of the enum's variants. A kind
//! a node does not know is skipped (its length says how far) and counted; a
//! known kind's fields beyond the ones it knows are ignored.

use serde::{Deserialize, Serialize, Serializer};

use super::notice::{self, Refusal};
use super::query::{self, WireQuery, WireResponse};
use super::row::{Framed, UncheckedRow, WireAddr, WireRow};
use super::tombstone::{self, Tombstone};
use super::user::{self, EventId, EventKey, WireEvent};
use super::{DecodeError, WireDigest};
use crate::name::NodeName;
use crate::tags::{TagLimits, TagsError};
use std::net::SocketAddr;

/// Message kinds.
mod kind {
    pub(super) const PING: u32 = 0;
    pub(super) const ACK: u32 = 1;
    pub(super) const PING_REQ: u32 = 2;
    pub(super) const NACK: u32 = 3;
    pub(super) const JOIN: u32 = 4;
    pub(super) const JOIN_REPLY: u32 = 5;
    pub(super) const SYNC: u32 = 6;
    pub(super) const ROWS: u32 = 7;
    pub(super) const GOSSIP: u32 = 8;
    pub(super) const BOUNCED: u32 = 9;
    pub(super) const CLAIM: u32 = 10;
}

/// Piggybacked item kinds.
mod item {
    pub(super) const UPDATE: u32 = 0;
}

/// What a packet is for. Piggybacked updates ride along with every kind. `R` is
/// the row as sent ([`WireRow`]) or as received before its tags are checked
/// ([`UncheckedRow`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Message<R = WireRow> {
    /// Are you there? `target` guards against a new process at an old address.
    Ping { seq: u32, target: NodeName },
    /// Yes (answers `Ping`, or relays a target's answer to an indirect prober).
    Ack { seq: u32 },
    /// Please ping `target` for me and relay its ack.
    PingReq {
        seq: u32,
        target: NodeName,
        target_addr: SocketAddr,
    },
    /// I tried `PingReq` `seq` and the target did not answer me either (Lifeguard).
    Nack { seq: u32 },
    /// Let me in; here is my own row (alive, at my incarnation and address).
    Join { row: R },
    /// A chunk of the tracker, answering `Join`; every chunk applies on its own.
    JoinReply { rows: Vec<R> },
    /// My digest; send me the rows of the buckets where yours differs.
    /// `reply` is set on the answer, so the exchange stops after one round trip.
    Sync { digest: WireDigest, reply: bool },
    /// A chunk of rows, answering `Sync`.
    Rows { rows: Vec<R> },
    /// Nothing but the piggybacked updates.
    Gossip,
    /// I tried `PingReq` `seq` and the target's port was unreachable for me too.
    Bounced { seq: u32 },
    /// I am a live process under your name (the envelope's sender is the name
    /// both claim): the name-conflict handshake (`node/conflict.rs`). `addr` is
    /// where I listen, `started` my start (the wall-clock anchor of my
    /// creation, Unix milliseconds), `nonce` mine for you, `echo` yours that I
    /// received last, and `confirmed` whether I already hold an echo of mine
    /// from you (then you need not answer).
    Claim {
        addr: SocketAddr,
        started: i64,
        nonce: u64,
        echo: Option<u64>,
        confirmed: bool,
    },
    /// A user event (`user.rs`), pushed along the ring or answering a pull.
    Event(Box<WireEvent>),
    /// Send me this user event (I heard its announcement, or it is the gap
    /// before one I hold).
    EventPull(EventKey),
    /// Your push of this user event along the tree arrived.
    EventAck(EventKey),
    /// A query (`query.rs`), pushed along the ring.
    Query(Box<WireQuery>),
    /// I (the name) received your query (it asked for acks).
    QueryAck(EventKey, NodeName),
    /// An answer to your query, from its responder or through a relay.
    QueryResponse(Box<WireResponse>),
    /// Please send this answer on to its query's origin.
    QueryRelay(Box<WireResponse>),
    /// Your push of this query along the tree arrived.
    QueryPushAck(EventKey),
    /// I cannot open your packets (or they are another cluster's): the
    /// refusal notice, sent unsealed and without anything of this cluster's
    /// (`notice.rs`).
    Refused(Refusal),
    /// These members were pruned: you sent me a row that one of them covers
    /// (`node/tombstone.rs`).
    Tombstones(Vec<Tombstone>),
    /// A kind this build does not know (a later version's message): its fields
    /// are skipped, the piggybacked items still apply. Sent only by tests, with
    /// no fields, to stand for such a message.
    Unknown { kind: u32 },
}

/// One piggybacked update: a row, and for a suspicion who raised it (so that
/// independent confirmations can be counted, Lifeguard). `R` is as for
/// [`Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Update<R = WireRow> {
    pub(crate) row: R,
    pub(crate) suspecter: Option<NodeName>,
}

/// `kind | length | fields`.
fn frame<S: Serializer, T: Serialize>(
    serializer: S,
    kind: u32,
    fields: &T,
) -> Result<S::Ok, S::Error> {
    (kind, Framed(fields)).serialize(serializer)
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Message::Ping { seq, target } => frame(s, kind::PING, &(seq, target)),
            Message::Ack { seq } => frame(s, kind::ACK, seq),
            Message::PingReq {
                seq,
                target,
                target_addr,
            } => frame(
                s,
                kind::PING_REQ,
                &(seq, target, WireAddr::from(*target_addr)),
            ),
            Message::Nack { seq } => frame(s, kind::NACK, seq),
            Message::Join { row } => frame(s, kind::JOIN, row),
            Message::JoinReply { rows } => frame(s, kind::JOIN_REPLY, rows),
            Message::Sync { digest, reply } => frame(s, kind::SYNC, &(digest, reply)),
            Message::Rows { rows } => frame(s, kind::ROWS, rows),
            Message::Gossip => frame(s, kind::GOSSIP, &()),
            Message::Bounced { seq } => frame(s, kind::BOUNCED, seq),
            Message::Claim {
                addr,
                started,
                nonce,
                echo,
                confirmed,
            } => frame(
                s,
                kind::CLAIM,
                &(WireAddr::from(*addr), started, nonce, echo, confirmed),
            ),
            Message::Event(event) => frame(s, user::kind::EVENT, event),
            Message::EventPull(key) => frame(s, user::kind::EVENT_PULL, key),
            Message::EventAck(key) => frame(s, user::kind::EVENT_ACK, key),
            Message::Query(q) => frame(s, query::kind::QUERY, q),
            Message::QueryAck(key, from) => frame(s, query::kind::QUERY_ACK, &(key, from)),
            Message::QueryResponse(r) => frame(s, query::kind::QUERY_RESPONSE, r),
            Message::QueryRelay(r) => frame(s, query::kind::QUERY_RELAY, r),
            Message::QueryPushAck(key) => frame(s, query::kind::QUERY_PUSH_ACK, key),
            Message::Refused(refusal) => frame(s, notice::REFUSED, &refusal.code()),
            Message::Tombstones(tombstones) => frame(
                s,
                tombstone::TOMBSTONES,
                &tombstone::TombstoneList(tombstones),
            ),
            Message::Unknown { kind } => frame(s, *kind, &()),
        }
    }
}

impl Serialize for Tombstone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        frame(
            s,
            tombstone::TOMBSTONE_ITEM,
            &(&self.node, self.incarnation, self.pruned_at),
        )
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        frame(
            s,
            user::EVENT_ID_ITEM,
            &(&self.key, &self.sent_at, &self.age_ms),
        )
    }
}

impl Serialize for Update {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        frame(s, item::UPDATE, &(&self.row, &self.suspecter))
    }
}

/// The fields a build knows, from the front of a frame; those a later version
/// appended are ignored.
fn fields<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    postcard::take_from_bytes(bytes)
        .map(|(value, _later_fields)| value)
        .map_err(|_| DecodeError::Malformed)
}

impl Message<UncheckedRow> {
    /// The message of `kind` from its frame's bytes.
    pub(super) fn decode(kind: u32, bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(match kind {
            kind::PING => {
                let (seq, target) = fields(bytes)?;
                Message::Ping { seq, target }
            }
            kind::ACK => Message::Ack {
                seq: fields(bytes)?,
            },
            kind::PING_REQ => {
                let (seq, target, addr): (u32, NodeName, WireAddr) = fields(bytes)?;
                Message::PingReq {
                    seq,
                    target,
                    target_addr: addr.into(),
                }
            }
            kind::NACK => Message::Nack {
                seq: fields(bytes)?,
            },
            kind::JOIN => Message::Join {
                row: fields(bytes)?,
            },
            kind::JOIN_REPLY => Message::JoinReply {
                rows: fields(bytes)?,
            },
            kind::SYNC => {
                let (digest, reply) = fields(bytes)?;
                Message::Sync { digest, reply }
            }
            kind::ROWS => Message::Rows {
                rows: fields(bytes)?,
            },
            kind::GOSSIP => Message::Gossip,
            kind::BOUNCED => Message::Bounced {
                seq: fields(bytes)?,
            },
            kind::CLAIM => {
                let (addr, started, nonce, echo, confirmed): (
                    WireAddr,
                    i64,
                    u64,
                    Option<u64>,
                    bool,
                ) = fields(bytes)?;
                Message::Claim {
                    addr: addr.into(),
                    started,
                    nonce,
                    echo,
                    confirmed,
                }
            }
            user::kind::EVENT => Message::Event(Box::new(fields(bytes)?)),
            user::kind::EVENT_PULL => Message::EventPull(fields(bytes)?),
            user::kind::EVENT_ACK => Message::EventAck(fields(bytes)?),
            query::kind::QUERY => Message::Query(Box::new(fields(bytes)?)),
            query::kind::QUERY_ACK => {
                let (key, from) = fields(bytes)?;
                Message::QueryAck(key, from)
            }
            query::kind::QUERY_RESPONSE => Message::QueryResponse(Box::new(fields(bytes)?)),
            query::kind::QUERY_RELAY => Message::QueryRelay(Box::new(fields(bytes)?)),
            query::kind::QUERY_PUSH_ACK => Message::QueryPushAck(fields(bytes)?),
            notice::REFUSED => Message::Refused(Refusal::from_code(fields(bytes)?)),
            tombstone::TOMBSTONES => {
                let tombstones: Vec<(NodeName, u64, i64)> = fields(bytes)?;
                Message::Tombstones(
                    tombstones
                        .into_iter()
                        .map(checked_tombstone)
                        .collect::<Result<_, _>>()?,
                )
            }
            kind => Message::Unknown { kind },
        })
    }

    /// The message with every row's tags checked against `limits`.
    pub(super) fn check(self, limits: TagLimits) -> Result<Message, TagsError> {
        Ok(match self {
            Message::Join { row } => Message::Join {
                row: row.check(limits)?,
            },
            Message::JoinReply { rows } => Message::JoinReply {
                rows: check_rows(rows, limits)?,
            },
            Message::Rows { rows } => Message::Rows {
                rows: check_rows(rows, limits)?,
            },
            Message::Ping { seq, target } => Message::Ping { seq, target },
            Message::Ack { seq } => Message::Ack { seq },
            Message::PingReq {
                seq,
                target,
                target_addr,
            } => Message::PingReq {
                seq,
                target,
                target_addr,
            },
            Message::Nack { seq } => Message::Nack { seq },
            Message::Sync { digest, reply } => Message::Sync { digest, reply },
            Message::Gossip => Message::Gossip,
            Message::Bounced { seq } => Message::Bounced { seq },
            Message::Claim {
                addr,
                started,
                nonce,
                echo,
                confirmed,
            } => Message::Claim {
                addr,
                started,
                nonce,
                echo,
                confirmed,
            },
            Message::Event(event) => Message::Event(event),
            Message::EventPull(key) => Message::EventPull(key),
            Message::EventAck(key) => Message::EventAck(key),
            Message::Query(q) => Message::Query(q),
            Message::QueryAck(key, from) => Message::QueryAck(key, from),
            Message::QueryResponse(r) => Message::QueryResponse(r),
            Message::QueryRelay(r) => Message::QueryRelay(r),
            Message::QueryPushAck(key) => Message::QueryPushAck(key),
            Message::Refused(refusal) => Message::Refused(refusal),
            Message::Tombstones(tombstones) => Message::Tombstones(tombstones),
            Message::Unknown { kind } => Message::Unknown { kind },
        })
    }
}

fn check_rows(rows: Vec<UncheckedRow>, limits: TagLimits) -> Result<Vec<WireRow>, TagsError> {
    rows.into_iter().map(|row| row.check(limits)).collect()
}

/// A piggybacked item, decoded.
pub(super) enum Item {
    Update(Update<UncheckedRow>),
    EventId(EventId),
    Tombstone(Tombstone),
    /// A kind this build does not know: skipped, counted.
    Unknown,
}

impl Item {
    /// The item of `kind` from its frame's bytes.
    pub(super) fn decode(kind: u32, bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(match kind {
            item::UPDATE => {
                let (row, suspecter) = fields(bytes)?;
                Item::Update(Update { row, suspecter })
            }
            user::EVENT_ID_ITEM => {
                let (key, sent_at, age_ms) = fields(bytes)?;
                Item::EventId(EventId {
                    key,
                    sent_at,
                    age_ms,
                })
            }
            tombstone::TOMBSTONE_ITEM => Item::Tombstone(checked_tombstone(fields(bytes)?)?),
            _ => Item::Unknown,
        })
    }
}

/// A tombstone from its fields; an incarnation no row can have is malformed
/// (as in a row: refuting it would overflow).
fn checked_tombstone(
    (node, incarnation, pruned_at): (NodeName, u64, i64),
) -> Result<Tombstone, DecodeError> {
    if incarnation > crate::tracker::MAX_INCARNATION {
        return Err(DecodeError::Malformed);
    }
    Ok(Tombstone {
        node,
        incarnation,
        pruned_at,
    })
}

impl Update<UncheckedRow> {
    pub(super) fn check(self, limits: TagLimits) -> Result<Update, TagsError> {
        Ok(Update {
            row: self.row.check(limits)?,
            suspecter: self.suspecter,
        })
    }
}
