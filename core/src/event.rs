//! What a node tells its owner: tracker changes, node updates, mode changes.

use std::net::SocketAddr;

use crate::name::NodeName;
use crate::tracker::{NodeStatus, TrackerRow};

/// Whether this node is alone (the original's `serverStatus`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Mode {
    /// No other node is online.
    Standalone,
    /// At least one other node is online.
    Clustered,
}

/// The kind of tracker change (the original's Mnesia `:write` / `:delete`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Op {
    /// A row was added or replaced.
    Write,
    /// A row was removed (only with `offline_retention`).
    Delete,
}

/// One change of the tracker, with the row before it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TrackerEvent {
    /// Write or delete.
    pub op: Op,
    /// The row after a write; the removed row for a delete.
    pub new_row: TrackerRow,
    /// The row before the change; `None` when the node was not tracked.
    pub old_row: Option<TrackerRow>,
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
    },
    /// `leave` finished: `spread` says whether the announcement was sent its full
    /// number of times before `leave_timeout`.
    LeaveFinished {
        /// Whether the announcement was fully disseminated.
        spread: bool,
    },
}
