//! Routing of subscriber notifications into bounded queues, with lag accounting,
//! and the callback trait of the original (`node_update/2`).
//!
//! The node never waits for a subscriber: every delivery is a non-blocking
//! `try_send` into a queue the runtime owns. A full queue costs the subscriber the
//! update, which is counted; once the queue has room again the subscriber first
//! receives [`Update::Lagged`] with the number it missed.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use tracing::{error, warn};

use crate::name::NodeName;
use crate::tracker::NodeStatus;

/// One subscription of a running node: returned by `alert_me` and `attach`, given
/// back to `unsubscribe`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SubscriberId(pub u64);

/// One item of a subscription: the original's `node_update(node, status)`, or a
/// marker that the subscriber fell behind.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Update {
    /// Another node went online or offline. Never about this node itself.
    Node {
        /// Which node changed.
        node: NodeName,
        /// Its new status.
        status: NodeStatus,
    },
    /// The subscriber's queue was full: `missed` updates were dropped for it just
    /// before this marker. Read the tracker (`cluster_nodes`) to catch up.
    Lagged {
        /// How many updates were lost.
        missed: u64,
    },
}

impl Update {
    /// Hands this update to a callback: `node_update` for a node change,
    /// `lagged` for a lag marker. A panic in the callback is caught and logged, so
    /// one bad update does not end the subscription.
    pub fn dispatch<C: NodeUpdate + ?Sized>(self, callback: &C) {
        let outcome = catch_unwind(AssertUnwindSafe(|| match &self {
            Update::Node { node, status } => callback.node_update(node, *status),
            Update::Lagged { missed } => callback.lagged(*missed),
        }));
        if outcome.is_err() {
            error!(update = ?self, "a node_update callback panicked; the subscription stays");
        }
    }
}

/// A subscriber callback (the original's behaviour with `node_update/2`).
///
/// It runs on a thread of its own, never on the node's task: a slow or panicking
/// callback delays only its own later updates. Closures
/// `Fn(&NodeName, NodeStatus)` implement it.
pub trait NodeUpdate: Send + Sync + 'static {
    /// `node` (never this node) is now `status`.
    fn node_update(&self, node: &NodeName, status: NodeStatus);

    /// The callback fell behind and `missed` updates were dropped for it. The
    /// default logs a warning.
    fn lagged(&self, missed: u64) {
        warn!(
            missed,
            "a node_update subscriber fell behind; updates were dropped"
        );
    }
}

impl<F> NodeUpdate for F
where
    F: Fn(&NodeName, NodeStatus) + Send + Sync + 'static,
{
    fn node_update(&self, node: &NodeName, status: NodeStatus) {
        self(node, status)
    }
}

/// Why a [`Sink`] did not take an update.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum SinkError {
    /// The queue is full; the subscriber is still there.
    Full,
    /// Nobody receives any more: the subscription ends.
    Closed,
}

/// The sending end of one subscriber's bounded queue, as a non-blocking
/// `try_send` (a runtime wraps its channel's sender in one).
pub struct Sink(Box<dyn FnMut(Update) -> Result<(), SinkError> + Send>);

impl Sink {
    /// Wraps a non-blocking send. It must never wait.
    pub fn new(try_send: impl FnMut(Update) -> Result<(), SinkError> + Send + 'static) -> Self {
        Self(Box::new(try_send))
    }

    fn try_send(&mut self, update: Update) -> Result<(), SinkError> {
        (self.0)(update)
    }
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sink")
    }
}

/// The subscription has no receiver any more.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Gone;

#[derive(Debug)]
struct Route {
    sink: Sink,
    /// Updates dropped since the last lag marker went through.
    missed: u64,
}

impl Route {
    /// Sends the pending lag marker, if any. `Ok(false)` when it is still pending.
    fn send_marker(&mut self) -> Result<bool, Gone> {
        if self.missed == 0 {
            return Ok(true);
        }
        match self.sink.try_send(Update::Lagged {
            missed: self.missed,
        }) {
            Ok(()) => {
                self.missed = 0;
                Ok(true)
            }
            Err(SinkError::Full) => Ok(false),
            Err(SinkError::Closed) => Err(Gone),
        }
    }

    fn offer(&mut self, update: Update) -> Result<(), Gone> {
        // Order is kept: nothing new goes in before the marker of what was lost.
        if !self.send_marker()? {
            self.missed += 1;
            return Ok(());
        }
        match self.sink.try_send(update) {
            Ok(()) => Ok(()),
            Err(SinkError::Full) => {
                self.missed += 1;
                Ok(())
            }
            Err(SinkError::Closed) => Err(Gone),
        }
    }
}

/// Subscribers by id, each with its queue and lag count.
#[derive(Debug, Default)]
pub(crate) struct Router {
    routes: BTreeMap<SubscriberId, Route>,
    /// Updates dropped for full queues, all subscribers together.
    lagged_total: u64,
}

impl Router {
    pub(crate) fn insert(&mut self, id: SubscriberId, sink: Sink) {
        self.routes.insert(id, Route { sink, missed: 0 });
    }

    pub(crate) fn remove(&mut self, id: SubscriberId) -> bool {
        self.routes.remove(&id).is_some()
    }

    pub(crate) fn lagged_total(&self) -> u64 {
        self.lagged_total
    }

    /// Offers `update` to every subscriber; routes whose receivers are gone are
    /// removed.
    pub(crate) fn broadcast(&mut self, update: &Update) {
        let ids: Vec<SubscriberId> = self.routes.keys().copied().collect();
        for id in ids {
            let _ = self.deliver(id, update.clone());
        }
    }

    /// Offers `update` to one subscriber. `Err(Gone)` means its receiver is gone and
    /// the route was removed.
    pub(crate) fn deliver(&mut self, id: SubscriberId, update: Update) -> Result<(), Gone> {
        let Some(route) = self.routes.get_mut(&id) else {
            return Ok(());
        };
        let missed_before = route.missed;
        let result = route.offer(update);
        self.lagged_total += route.missed.saturating_sub(missed_before);
        if result.is_err() {
            self.routes.remove(&id);
        }
        result
    }

    /// Retries pending lag markers (a reader may have made room since). Returns the
    /// subscribers whose receivers are gone; their routes are removed.
    pub(crate) fn flush(&mut self) -> Vec<SubscriberId> {
        let mut gone = Vec::new();
        for (id, route) in &mut self.routes {
            if route.send_marker().is_err() {
                gone.push(*id);
            }
        }
        for id in &gone {
            self.routes.remove(id);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A bounded queue shared with the test.
    fn queue(capacity: usize) -> (Sink, Arc<Mutex<Option<Vec<Update>>>>) {
        let items = Arc::new(Mutex::new(Some(Vec::new())));
        let shared = Arc::clone(&items);
        let sink = Sink::new(move |update| {
            let mut guard = shared.lock().expect("test mutex is never poisoned");
            match guard.as_mut() {
                None => Err(SinkError::Closed),
                Some(items) if items.len() >= capacity => Err(SinkError::Full),
                Some(items) => {
                    items.push(update);
                    Ok(())
                }
            }
        });
        (sink, items)
    }

    fn online(name: &str) -> Update {
        Update::Node {
            node: NodeName::new(name).expect("valid name"),
            status: NodeStatus::Online,
        }
    }

    #[test]
    fn a_full_queue_drops_and_later_reports_the_lag_before_anything_new() {
        let (sink, items) = queue(2);
        let mut router = Router::default();
        let id = SubscriberId(7);
        router.insert(id, sink);
        for name in ["a", "b", "c", "d", "e"] {
            assert_eq!(router.deliver(id, online(name)), Ok(()));
        }
        assert_eq!(router.lagged_total(), 3);
        // The reader drains; the marker goes first, then the next update.
        let drained: Vec<Update> = std::mem::take(
            items
                .lock()
                .expect("test mutex")
                .as_mut()
                .expect("queue open"),
        );
        assert_eq!(drained, vec![online("a"), online("b")]);
        assert_eq!(router.deliver(id, online("f")), Ok(()));
        let got = items
            .lock()
            .expect("test mutex")
            .clone()
            .expect("queue open");
        assert_eq!(got, vec![Update::Lagged { missed: 3 }, online("f")]);
    }

    #[test]
    fn flush_sends_a_pending_marker_without_a_new_update() {
        let (sink, items) = queue(1);
        let mut router = Router::default();
        let id = SubscriberId(1);
        router.insert(id, sink);
        router.deliver(id, online("a")).expect("open");
        router.deliver(id, online("b")).expect("open");
        assert!(router.flush().is_empty(), "still full: marker pending");
        items.lock().expect("test mutex").replace(Vec::new());
        assert!(router.flush().is_empty());
        let got = items
            .lock()
            .expect("test mutex")
            .clone()
            .expect("queue open");
        assert_eq!(got, vec![Update::Lagged { missed: 1 }]);
    }

    #[test]
    fn a_closed_queue_ends_the_route() {
        let (sink, items) = queue(4);
        let mut router = Router::default();
        let id = SubscriberId(3);
        router.insert(id, sink);
        items.lock().expect("test mutex").take();
        assert_eq!(router.deliver(id, online("a")), Err(Gone));
        assert!(router.routes.is_empty());
        assert_eq!(
            router.deliver(id, online("b")),
            Ok(()),
            "unknown ids are ignored"
        );
    }

    #[test]
    fn dispatch_survives_a_panicking_callback_and_reports_lag() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let callback = move |node: &NodeName, status: NodeStatus| {
            assert_ne!(node.as_str(), "boom", "deliberate test panic");
            log.lock().expect("test mutex").push((node.clone(), status));
        };
        online("boom").dispatch(&callback);
        online("fine").dispatch(&callback);
        Update::Lagged { missed: 2 }.dispatch(&callback);
        let seen = seen.lock().expect("test mutex");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0.as_str(), "fine");
    }
}
