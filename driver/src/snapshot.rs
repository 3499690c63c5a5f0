//! The state a [`Handle`](crate::Handle)'s getters read: published by the node's
//! task after every step, so a getter never waits for the task.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use beethoven_core::{Mode, Node, Stats, TrackerRow};

/// What the driver last published about its node.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) mode: Mode,
    pub(crate) rows: Vec<TrackerRow>,
    pub(crate) stats: Stats,
    pub(crate) lagged: u64,
    pub(crate) io_errors: IoErrors,
    pub(crate) running: bool,
    /// The node's own [`Node::has_left`], the one place that fact is kept.
    pub(crate) left: bool,
    /// The ticket of the last `join` or `leave` the node applied: a handle compares
    /// it with what it queued since (see `Handle::has_left`).
    pub(crate) applied: u64,
    /// The node's own [`Node::name_taken_by`].
    pub(crate) name_taken_by: Option<SocketAddr>,
}

impl Snapshot {
    pub(crate) fn of(node: &Node) -> Self {
        Self {
            mode: node.mode(),
            rows: node.tracker().sorted_rows().into_iter().cloned().collect(),
            stats: node.stats().clone(),
            lagged: 0,
            io_errors: IoErrors::default(),
            running: true,
            left: node.has_left(),
            applied: 0,
            name_taken_by: node.name_taken_by(),
        }
    }
}

/// Socket errors the node's task met and went on from (they never end it).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub struct IoErrors {
    /// Sends that failed (the datagram is lost, as UDP allows).
    pub send: u64,
    /// Receives that failed, e.g. `ECONNREFUSED` after an earlier datagram bounced
    /// off a closed port.
    pub recv: u64,
}

pub(crate) type SharedSnapshot = Arc<Mutex<Snapshot>>;

/// Locks one of this crate's mutexes; nobody panics while holding one, so a
/// poisoned lock still holds a whole value.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
