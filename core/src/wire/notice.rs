//! The refusal notice: what a node answers to a packet it cannot open, or
//! that is another cluster's, so that a joiner with the wrong key or cluster
//! name learns why its join goes unanswered.
//!
//! ```text
//! notice = header: magic | version | flags 0 (never sealed)
//!                  | cluster id (echoed from the refused packet)
//!        | sender "-" (no name of the cluster's) | incarnation 0
//!        | message 20 Refused: reason (1 byte) | item count 0
//! ```
//!
//! It is an ordinary v4 packet, so a node of a build without notices counts it
//! like any unknown message (`UnknownMessage`), or, holding keys, as
//! `NotSealed`, and goes on. It holds nothing of the refusing cluster's: the
//! cluster id is the refused packet's own, the sender is a placeholder, and
//! the reason is one of four codes.
//!
//! # What an attacker can do with it
//!
//! The notice cannot be authenticated: its receiver has no key in common with
//! its sender (that is what it reports). So:
//!
//! - **A forged notice** can make a joiner log a wrong reason, nothing more.
//!   It is accepted only while a join is in progress and only from an address
//!   the join was sent to, it changes no state but the reason reported if the
//!   join fails, and it never ends or slows the join: a seed that answers
//!   properly still lets the node in.
//! - **Reflection and amplification.** A node answers at most one notice per
//!   source address per [`NOTICE_INTERVAL`](crate::node) and a few per second
//!   in all, and never to a packet shorter than the notice: a spoofed source
//!   receives no more bytes than were sent in its name.
//! - **An oracle.** The reason tells whether the cluster id matched and
//!   whether the node seals. Both are readable in the header of any packet
//!   the cluster sends, and without keys a join with a guessed cluster id was
//!   already answered or not; with keys nothing can be joined without one.

use super::{FLAG_SEALED, HEADER_LEN, MAGIC, VERSION, take};
use crate::name::{ClusterId, NodeName};

/// Message kind of the notice (20..=23 belong to this part of the wire; 21 is
/// `Tombstones`, `tombstone.rs`).
pub(super) const REFUSED: u32 = 20;

/// The placeholder sender of every notice.
const SENDER: &str = "-";

/// Why a node refused a packet, as its refusal notice says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The packet was sealed with a key the refusing node does not hold.
    KeyMismatch,
    /// The refusing node requires sealed packets; this one was plaintext.
    SealRequired,
    /// The refusing node has no keys; this packet was sealed.
    NoKeys,
    /// The packet was another cluster's (its cluster name differs).
    OtherCluster,
    /// A reason this build does not know (a later version's).
    Unknown,
}

labels!(Refusal {
    KeyMismatch => "key_mismatch",
    SealRequired => "seal_required",
    NoKeys => "no_keys",
    OtherCluster => "other_cluster",
    Unknown => "unknown",
});

impl Refusal {
    /// What the refusal means for the node whose packet was refused, as the
    /// end of "seed 10.0.0.2:7946 …".
    pub fn explain(self) -> &'static str {
        match self {
            Refusal::KeyMismatch => {
                "could not open our packets: a different key or cluster name (it holds none of our keys)"
            }
            Refusal::SealRequired => {
                "could not open our packets: a different key or cluster name (it requires keys and this node has none)"
            }
            Refusal::NoKeys => {
                "could not open our packets: a different key or cluster name (it has no keys and this node seals)"
            }
            Refusal::OtherCluster => {
                "could not open our packets: a different key or cluster name (its cluster name differs)"
            }
            Refusal::Unknown => "refused our packets for a reason this build does not know",
        }
    }

    pub(super) fn code(self) -> u8 {
        match self {
            Refusal::KeyMismatch => 0,
            Refusal::SealRequired => 1,
            Refusal::NoKeys => 2,
            Refusal::OtherCluster => 3,
            Refusal::Unknown => u8::MAX,
        }
    }

    pub(super) fn from_code(code: u8) -> Self {
        match code {
            0 => Refusal::KeyMismatch,
            1 => Refusal::SealRequired,
            2 => Refusal::NoKeys,
            3 => Refusal::OtherCluster,
            _ => Refusal::Unknown,
        }
    }
}

/// Encodes the notice answering `refused` (a datagram whose header is this
/// protocol's and version's) for `reason` into `out`. Returns `false`, with
/// `out` cleared, unless the notice is shorter than what it answers: no
/// amplification, and a notice is never answered with another.
pub(crate) fn encode_notice(refused: &[u8], reason: Refusal, out: &mut Vec<u8>) -> bool {
    out.clear();
    if refused.len() < HEADER_LEN {
        return false;
    }
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&refused[6..HEADER_LEN]);
    let sender = NodeName::new(SENDER).expect("the placeholder sender is a valid name");
    let message = super::Message::Refused(reason);
    let taken = std::mem::take(out);
    *out = postcard::to_extend(&(sender, 0u64, message, 0u32), taken)
        .expect("encoding in-memory values into a Vec cannot fail");
    if out.len() >= refused.len() {
        out.clear();
        return false;
    }
    true
}

/// The reason of a notice, if `bytes` is one for `cluster`: a plaintext
/// packet of this version whose message is `Refused` and that carries nothing
/// else. A node holding keys reads notices with this (its `decode` refuses
/// plaintext).
pub(crate) fn decode_notice(bytes: &[u8], cluster: ClusterId) -> Option<Refusal> {
    if bytes.len() < HEADER_LEN || bytes[..4] != MAGIC || bytes[4] != VERSION {
        return None;
    }
    if bytes[5] & FLAG_SEALED != 0 || bytes[6..HEADER_LEN] != cluster.0.to_le_bytes() {
        return None;
    }
    let body = &bytes[HEADER_LEN..];
    let (_sender, rest): (NodeName, _) = take(body).ok()?;
    let (_incarnation, rest): (u64, _) = take(rest).ok()?;
    let ((kind, fields), rest): ((u32, &[u8]), _) = take(rest).ok()?;
    if kind != REFUSED {
        return None;
    }
    let (code, _later_fields): (u8, _) = postcard::take_from_bytes(fields).ok()?;
    let (count, rest): (u32, _) = take(rest).ok()?;
    (count == 0 && rest.is_empty()).then(|| Refusal::from_code(code))
}
