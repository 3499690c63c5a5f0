//! What a node tells its owner: tracker changes, node updates, mode changes,
//! name conflicts.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::name::NodeName;
use crate::query::{QueryDone, QueryId, QueryRequest};
use crate::tracker::{NodeStatus, TrackerRow};
use crate::user::UserEvent;
use crate::wire::Refusal;

/// Whether this node is alone (the original's `serverStatus`). Serializes as
/// its [`as_str`](Mode::as_str) name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// No other node is online.
    Standalone,
    /// At least one other node is online.
    Clustered,
}

/// The kind of tracker change (the original's Mnesia `:write` / `:delete`).
/// Serializes as its [`as_str`](Op::as_str) name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// A row was added or replaced.
    Write,
    /// A row was removed (by `offline_retention`, or a prune: `force_leave`).
    Delete,
}

labels!(Mode {
    Standalone => "standalone",
    Clustered => "clustered",
});

labels!(Op {
    Write => "write",
    Delete => "delete",
});

/// One change of the tracker, with the row before it.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TrackerEvent {
    /// Write or delete.
    pub op: Op,
    /// The row after a write; the removed row for a delete.
    pub new_row: TrackerRow,
    /// The row before the change; `None` when the node was not tracked.
    pub old_row: Option<TrackerRow>,
}

/// A seed's refusal notice, as a failed join reports it: the seed could not
/// open this node's packets, for `reason`. Displays as the operator's line,
/// e.g. "seed 10.0.0.2:7946 could not open our packets: a different key or
/// cluster name (it holds none of our keys)".
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct JoinRefusal {
    /// The seed that sent the notice (a join was sent there).
    pub seed: SocketAddr,
    /// What the notice says.
    pub reason: Refusal,
}

impl std::fmt::Display for JoinRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seed {} {}", self.seed, self.reason.explain())
    }
}

/// Output of [`Node::poll_event`](crate::Node::poll_event).
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The tracker changed.
    Tracker(TrackerEvent),
    /// Another node went online or offline: what the original's `node_update/2`
    /// callback is told. Reported once per transition, never about this node
    /// itself; a runtime fans it out to its subscribers.
    NodeUpdate {
        /// Which node changed.
        node: NodeName,
        /// Its new status.
        status: NodeStatus,
    },
    /// Standalone ↔ clustered.
    ModeChanged(Mode),
    /// A seed answered a join: the node is part of a cluster.
    Joined {
        /// The seed that answered first.
        seed: SocketAddr,
    },
    /// No seed answered within the configured attempts: the node runs standalone and
    /// keeps re-probing its seeds slowly.
    JoinFailed {
        /// How many attempts were made.
        attempts: u32,
        /// The seeds that answered with a refusal notice: they could not
        /// open this node's packets (a different key) or are of another
        /// cluster. Unauthenticated, so a hint for the operator, never proof.
        refused: Vec<JoinRefusal>,
    },
    /// `leave` finished: `spread` says whether, before `leave_timeout`, every
    /// member pinged with the announcement acked it or it was sent its full
    /// number of times.
    LeaveFinished {
        /// Whether the announcement was fully disseminated.
        spread: bool,
    },
    /// Two live processes claim the name `node`, one at each of `addrs` (lower
    /// address first). Reported once per conflict by every node that sees it
    /// (and logged as a warning):
    ///
    /// - the two processes themselves, once each has proof that the other is
    ///   alive: a round trip of the name-conflict handshake, a nonce of its own
    ///   echoed from the other address. A process that restarted elsewhere is
    ///   not in conflict with its own dead predecessor: nobody at the old
    ///   address answers, and the new process wins by refuting, as before;
    /// - any other node whose row of `node` moved from one address to the other
    ///   and back, at rising incarnations, within 10 s: only a live process at
    ///   the first address can have raised its incarnation after the move.
    ///
    /// **Who keeps the name.** The process that started first (the wall-clock
    /// anchor given to [`Node::new`](crate::Node::new), exchanged in the
    /// handshake), and on a tie the lower address. Both compute it from the
    /// same two (start, address) pairs, so they agree even when their clocks
    /// disagree. Started-first means that a newcomer (a copied config, a typo)
    /// can never take a serving node's name away: the newcomer is the one told
    /// to go, and told where the name lives. The loser reports
    /// [`Event::NameLost`] and falls silent; the winner refutes the loser's last
    /// row once, and the name's incarnation stops rising.
    NameConflict {
        /// The name both processes claim.
        node: NodeName,
        /// Where the two processes listen, lower address first.
        addrs: [SocketAddr; 2],
    },
    /// This node lost its name to the live process at `winner` (see
    /// [`Event::NameConflict`] for the rule). From now on the node is inert: it
    /// no longer refutes, probes, gossips or answers (it never announces
    /// `Left`, which would take the winner offline), its deadlines are gone
    /// (`poll_timeout` is `None`), every datagram is dropped and counted
    /// ([`DropReason::NameLost`](crate::DropReason::NameLost)), and `join`,
    /// `leave` and `new_node` are refused with a `NameTaken` error. The owner
    /// should stop the process, or restart it under another name.
    NameLost {
        /// Where the process that kept the name listens.
        winner: SocketAddr,
    },
    /// A user event reached this node: delivered once per process, in its
    /// origin's order, never one sent before this process started.
    User(UserEvent),
    /// A query for this node reached it: answer it with
    /// [`Node::respond`](crate::Node::respond) and its token, before its
    /// deadline. Once per query and process; never for queries this node's
    /// filter excludes.
    Query(QueryRequest),
    /// A member acked this node's query `id` (asked with
    /// [`Query::request_ack`](crate::Query::request_ack)). Once per member.
    QueryAck {
        /// Which query.
        id: QueryId,
        /// The member that acked.
        from: NodeName,
    },
    /// A member answered this node's query `id`. Once per member.
    QueryResponse {
        /// Which query.
        id: QueryId,
        /// The member that answered.
        from: NodeName,
        /// Its answer.
        payload: Vec<u8>,
    },
    /// This node's query ended: at its timeout, or once every matching
    /// online member answered. Nothing more comes for it.
    QueryDone(QueryDone),
}
