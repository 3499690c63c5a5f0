//! The state a [`Handle`](crate::Handle)'s getters read: published by the node's
//! thread after every step, so a getter never waits for it, and a signal for
//! the readers that wait for it to change ([`Handle::watch`](crate::Handle::watch)).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use beethoven_core::{Mode, Node, Stats, TrackerRow};
use event_listener::Event;

/// What the driver last published about its node.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Raised when something a reader sees changes: the rows, the mode, `left`,
    /// `name_taken_by` or `running` (not the counters, which change
    /// with every datagram).
    pub(crate) version: u64,
    pub(crate) mode: Mode,
    pub(crate) rows: Vec<TrackerRow>,
    pub(crate) stats: Stats,
    pub(crate) lagged: u64,
    pub(crate) io_errors: IoErrors,
    pub(crate) running: bool,
    /// The node's own [`Node::has_left`], the one place that fact is kept.
    pub(crate) left: bool,
    /// The node's own [`Node::name_taken_by`].
    pub(crate) name_taken_by: Option<SocketAddr>,
}

impl Snapshot {
    pub(crate) fn of(node: &Node) -> Self {
        Self {
            version: 0,
            mode: node.mode(),
            rows: node.tracker().sorted_rows().into_iter().cloned().collect(),
            stats: node.stats().clone(),
            lagged: 0,
            io_errors: IoErrors::default(),
            running: true,
            left: node.has_left(),
            name_taken_by: node.name_taken_by(),
        }
    }
}

/// Socket errors the node's thread met and went on from (they never end it).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub struct IoErrors {
    /// Sends that failed (the datagram is lost, as UDP allows).
    pub send: u64,
    /// Receives that failed, e.g. `ECONNREFUSED` after an earlier datagram bounced
    /// off a closed port.
    pub recv: u64,
}

/// The snapshot, shared by the driver and its handles, and the signal of its
/// changes.
#[derive(Debug)]
pub(crate) struct Published {
    snapshot: Mutex<Snapshot>,
    changed: Event,
}

impl Published {
    pub(crate) fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot: Mutex::new(snapshot),
            changed: Event::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Snapshot> {
        lock(&self.snapshot)
    }

    /// Wakes every reader waiting in [`Published::changed_since`]; call after
    /// raising the version.
    pub(crate) fn notify_changed(&self) {
        self.changed.notify(usize::MAX);
    }

    /// Waits until the version differs from `seen`; returns the new one.
    pub(crate) async fn changed_since(&self, seen: u64) -> u64 {
        loop {
            // Listen before reading, so a change between the two is not missed.
            let listener = self.changed.listen();
            let version = self.lock().version;
            if version != seen {
                return version;
            }
            listener.await;
        }
    }
}

pub(crate) type SharedSnapshot = Arc<Published>;

/// Locks one of this crate's mutexes; nobody panics while holding one, so a
/// poisoned lock still holds a whole value.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
