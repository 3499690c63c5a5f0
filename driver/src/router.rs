//! Routing of subscriber notifications into bounded queues, with lag accounting,
//! and the callback trait of the original (`node_update/2`). This is the one
//! registry of a node's subscribers.
//!
//! The node never waits for a subscriber: every delivery is a non-blocking
//! `try_send` into the subscriber's queue. A full queue costs the subscriber the
//! update, which is counted; once the queue has room again the subscriber first
//! receives [`Update::Lagged`] with the number it missed.

use std::any::TypeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};

use async_channel::{Sender, TrySendError};
use beethoven_core::{NodeName, NodeStatus, Tags};
use tracing::{error, warn};

/// One subscription of a running node: returned by
/// [`Handle::alert_me`](crate::Handle::alert_me), given back to
/// [`Handle::unsubscribe`](crate::Handle::unsubscribe).
///
/// A callback subscription is named by the callback's type, so the same type
/// always gets the same id on a node; each stream has an id of its own.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SubscriberId(Key);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
enum Key {
    Callback(TypeId),
    Stream(u64),
}

impl SubscriberId {
    /// The id of the `alert_me` subscription of callbacks of type `C`.
    pub(crate) fn callback<C: NodeUpdate>() -> Self {
        Self(Key::Callback(TypeId::of::<C>()))
    }

    /// The id of the `n`-th stream of a node.
    pub(crate) fn stream(n: u64) -> Self {
        Self(Key::Stream(n))
    }
}

/// What a subscription hears besides lag markers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Interest {
    /// Online/offline changes and name conflicts (`alert_me`, `subscribe`).
    Nodes,
    /// Tag changes of other nodes (`subscribe_tags`).
    Tags,
}

/// One item of a subscription: the original's `node_update(node, status)`, a tag
/// change (for [`subscribe_tags`](crate::Handle::subscribe_tags) only), or a
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
    /// Two live processes claim the name `node`, one at each of `addrs` (lower
    /// first): see [`Event::NameConflict`](beethoven_core::Event::NameConflict)
    /// for who keeps it. Once per conflict. `node` may be this node's own name:
    /// then [`Handle::name_taken_by`](crate::Handle::name_taken_by) says
    /// whether this process lost it.
    NameConflict {
        /// The name both processes claim.
        node: NodeName,
        /// Where the two processes listen, lower address first.
        addrs: [SocketAddr; 2],
    },
    /// Another node changed its tags, or was first heard of with tags: what it
    /// holds now. Only on [`subscribe_tags`](crate::Handle::subscribe_tags)
    /// streams; never about this node itself.
    Tags {
        /// Which node.
        node: NodeName,
        /// Its tags now.
        tags: Tags,
    },
}

impl Update {
    /// Which subscriptions hear it (`None`: every one).
    fn interest(&self) -> Option<Interest> {
        match self {
            Update::Node { .. } | Update::NameConflict { .. } => Some(Interest::Nodes),
            Update::Tags { .. } => Some(Interest::Tags),
            Update::Lagged { .. } => None,
        }
    }

    /// Hands this update to a callback: `node_update` for a node change,
    /// `lagged` for a lag marker. A panic in the callback is caught and logged, so
    /// one bad update does not end the subscription.
    pub fn dispatch<C: NodeUpdate + ?Sized>(self, callback: &C) {
        let outcome = catch_unwind(AssertUnwindSafe(|| match &self {
            Update::Node { node, status } => callback.node_update(node, *status),
            Update::Lagged { missed } => callback.lagged(*missed),
            Update::NameConflict { node, addrs } => callback.name_conflict(node, *addrs),
            // Callbacks subscribe to node changes only.
            Update::Tags { .. } => {}
        }));
        if outcome.is_err() {
            error!(update = ?self, "a node_update callback panicked; the subscription stays");
        }
    }
}

/// A subscriber callback (the original's behaviour with `node_update/2`).
///
/// It runs on a thread of its own, never on the node's thread: a slow or panicking
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

    /// Two live processes claim the name `node`, at `addrs` (see
    /// [`Update::NameConflict`]). The default does nothing: the node has logged
    /// a warning already.
    fn name_conflict(&self, node: &NodeName, addrs: [SocketAddr; 2]) {
        let _ = (node, addrs);
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

/// The subscription has no receiver any more.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Gone;

#[derive(Debug)]
struct Route {
    queue: Sender<Update>,
    interest: Interest,
    /// Updates dropped since the last lag marker went through.
    missed: u64,
}

impl Route {
    /// Offers one item without waiting: `Ok(false)` when the queue is full.
    fn try_send(&self, update: Update) -> Result<bool, Gone> {
        match self.queue.try_send(update) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => Ok(false),
            Err(TrySendError::Closed(_)) => Err(Gone),
        }
    }

    /// Sends the pending lag marker, if any. `Ok(false)` when it is still pending.
    fn send_marker(&mut self) -> Result<bool, Gone> {
        if self.missed == 0 {
            return Ok(true);
        }
        let sent = self.try_send(Update::Lagged {
            missed: self.missed,
        })?;
        if sent {
            self.missed = 0;
        }
        Ok(sent)
    }

    fn offer(&mut self, update: Update) -> Result<(), Gone> {
        // Order is kept: nothing new goes in before the marker of what was lost.
        if !self.send_marker()? || !self.try_send(update)? {
            self.missed += 1;
        }
        Ok(())
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
    /// Adds a subscriber; returns `false`, and keeps the one it has, when `id` is
    /// subscribed already (a second `alert_me` with a callback of the same type).
    pub(crate) fn insert(
        &mut self,
        id: SubscriberId,
        queue: Sender<Update>,
        interest: Interest,
    ) -> bool {
        if self.routes.contains_key(&id) {
            return false;
        }
        self.routes.insert(
            id,
            Route {
                queue,
                interest,
                missed: 0,
            },
        );
        true
    }

    pub(crate) fn remove(&mut self, id: SubscriberId) -> bool {
        self.routes.remove(&id).is_some()
    }

    pub(crate) fn lagged_total(&self) -> u64 {
        self.lagged_total
    }

    /// Offers `update` to every subscriber interested in it; routes whose
    /// receivers are gone are removed.
    pub(crate) fn broadcast(&mut self, update: &Update) {
        let wanted = update.interest();
        let ids: Vec<SubscriberId> = self
            .routes
            .iter()
            .filter(|(_, route)| wanted.is_none_or(|interest| interest == route.interest))
            .map(|(id, _)| *id)
            .collect();
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

    use async_channel::Receiver;

    use super::*;

    fn online(name: &str) -> Update {
        Update::Node {
            node: NodeName::new(name).expect("valid name"),
            status: NodeStatus::Online,
        }
    }

    fn drain(queue: &Receiver<Update>) -> Vec<Update> {
        std::iter::from_fn(|| queue.try_recv().ok()).collect()
    }

    #[test]
    fn a_full_queue_drops_and_later_reports_the_lag_before_anything_new() {
        let (sender, queue) = async_channel::bounded(2);
        let mut router = Router::default();
        let id = SubscriberId::stream(7);
        router.insert(id, sender, Interest::Nodes);
        for name in ["a", "b", "c", "d", "e"] {
            assert_eq!(router.deliver(id, online(name)), Ok(()));
        }
        assert_eq!(router.lagged_total(), 3);
        // The reader drains; the marker goes first, then the next update.
        assert_eq!(drain(&queue), vec![online("a"), online("b")]);
        assert_eq!(router.deliver(id, online("f")), Ok(()));
        assert_eq!(
            drain(&queue),
            vec![Update::Lagged { missed: 3 }, online("f")]
        );
    }

    #[test]
    fn flush_sends_a_pending_marker_without_a_new_update() {
        let (sender, queue) = async_channel::bounded(1);
        let mut router = Router::default();
        let id = SubscriberId::stream(1);
        router.insert(id, sender, Interest::Nodes);
        router.deliver(id, online("a")).expect("open");
        router.deliver(id, online("b")).expect("open");
        assert!(router.flush().is_empty(), "still full: marker pending");
        assert_eq!(drain(&queue), vec![online("a")]);
        assert!(router.flush().is_empty());
        assert_eq!(drain(&queue), vec![Update::Lagged { missed: 1 }]);
    }

    #[test]
    fn a_closed_queue_ends_the_route() {
        let (sender, queue) = async_channel::bounded(4);
        let mut router = Router::default();
        let id = SubscriberId::stream(3);
        router.insert(id, sender, Interest::Nodes);
        drop(queue);
        assert_eq!(router.deliver(id, online("a")), Err(Gone));
        assert!(router.routes.is_empty());
        assert_eq!(
            router.deliver(id, online("b")),
            Ok(()),
            "unknown ids are ignored"
        );
    }

    #[test]
    fn a_second_subscriber_under_a_taken_id_is_refused_and_the_first_stays() {
        let (first, first_queue) = async_channel::bounded(4);
        let (second, second_queue) = async_channel::bounded(4);
        let mut router = Router::default();
        let id = SubscriberId::callback::<fn(&NodeName, NodeStatus)>();
        assert!(router.insert(id, first, Interest::Nodes));
        assert!(!router.insert(id, second, Interest::Nodes));
        assert!(second_queue.is_closed(), "the refused queue was dropped");
        router.broadcast(&online("a"));
        assert_eq!(drain(&first_queue), vec![online("a")]);
    }

    #[test]
    fn tag_changes_reach_tag_subscribers_only_and_node_changes_the_others() {
        let (nodes, nodes_queue) = async_channel::bounded(4);
        let (tags, tags_queue) = async_channel::bounded(4);
        let mut router = Router::default();
        router.insert(SubscriberId::stream(1), nodes, Interest::Nodes);
        router.insert(SubscriberId::stream(2), tags, Interest::Tags);
        let change = Update::Tags {
            node: NodeName::new("a").expect("valid name"),
            tags: Tags::from_pairs([("role", "db")]).expect("valid tags"),
        };
        router.broadcast(&online("a"));
        router.broadcast(&change);
        assert_eq!(drain(&nodes_queue), vec![online("a")]);
        assert_eq!(drain(&tags_queue), vec![change]);
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
