//! Routing of the node's events into bounded subscriber queues, with lag
//! accounting, and the callback trait of the original (`node_update/2`). This is
//! the one registry of a node's subscribers.
//!
//! Every event the node emits becomes one or two [`Update`]s, in the order the
//! node emitted them, and each subscriber's queue receives those its
//! [`Interest`] covers: everything ([`Handle::events`](crate::Handle::events)),
//! or a filtered view (node changes for `alert_me` and `subscribe`, tag changes
//! for `subscribe_tags`).
//!
//! The node never waits for a subscriber: every delivery is a non-blocking
//! `try_send` into the subscriber's queue. A full queue costs the subscriber the
//! update, which is counted; once the queue has room again the subscriber first
//! receives [`Update::Lagged`] with the number it missed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use async_channel::{Receiver, Sender, TrySendError};
use futures_core::Stream;

use beethoven_core::{
    Event, JoinRefusal, Mode, NodeName, NodeStatus, Op, QueryRequest, Tags, TrackerEvent,
    TrackerRow, UserEvent,
};
use tracing::{debug, error, warn};

/// One subscription of a running node: returned by
/// [`Handle::alert_me`](crate::Handle::alert_me), given back to
/// [`Handle::unsubscribe`](crate::Handle::unsubscribe).
///
/// Every subscription has an id of its own: two `alert_me` calls are two
/// subscriptions, whatever their callbacks.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SubscriberId(u64);

impl SubscriberId {
    /// The id of the `n`-th subscription of a node.
    pub(crate) fn new(n: u64) -> Self {
        Self(n)
    }
}

/// What a subscription hears besides lag markers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Interest {
    /// Every update ([`Handle::events`](crate::Handle::events)).
    All,
    /// Online/offline changes and name conflicts (`alert_me`, `subscribe`).
    Nodes,
    /// Tag changes of other nodes (`subscribe_tags`).
    Tags,
}

/// One item of a node's event stream ([`Handle::events`](crate::Handle::events)),
/// in the order the node emitted it; the filtered views
/// ([`subscribe`](crate::Handle::subscribe), [`alert_me`](crate::Handle::alert_me),
/// [`subscribe_tags`](crate::Handle::subscribe_tags)) carry some of them.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Update {
    /// The tracker changed: a row written (with the row before, if any) or
    /// deleted. Every change, this node's own row included.
    Tracker(TrackerEvent),
    /// Another node went online or offline. Never about this node itself.
    Node {
        /// Which node changed.
        node: NodeName,
        /// Its new status.
        status: NodeStatus,
    },
    /// Another node changed its tags, or was first heard of with tags: what it
    /// holds now. Never about this node itself (its own tags are in its
    /// [`Update::Tracker`] row). Follows the tracker write that carried it.
    Tags {
        /// Which node.
        node: NodeName,
        /// Its tags now.
        tags: Tags,
    },
    /// Standalone ↔ clustered.
    Mode(Mode),
    /// A seed answered a join: the node is part of a cluster.
    Joined {
        /// The seed that answered first.
        seed: SocketAddr,
    },
    /// No seed answered within the configured attempts: the node runs
    /// standalone and keeps re-probing its seeds slowly.
    JoinFailed {
        /// How many attempts were made.
        attempts: u32,
        /// The seeds that said they could not open this node's packets (a
        /// different key or cluster name): see
        /// [`JoinRefusal`](beethoven_core::JoinRefusal).
        refused: Vec<JoinRefusal>,
    },
    /// Two live processes claim the name `node`, one at each of `addrs` (lower
    /// first): see [`Event::NameConflict`](beethoven_core::Event::NameConflict)
    /// for who keeps it. Once per conflict. `node` may be this node's own name:
    /// then an [`Update::NameLost`] follows if this process lost it.
    NameConflict {
        /// The name both processes claim.
        node: NodeName,
        /// Where the two processes listen, lower address first.
        addrs: [SocketAddr; 2],
    },
    /// This process lost its name to the live process at `winner`: it takes no
    /// more commands but `stop` (see [`Handle::name_taken_by`](crate::Handle::name_taken_by)).
    NameLost {
        /// Where the process that kept the name listens.
        winner: SocketAddr,
    },
    /// `leave` finished: `spread` says whether every member pinged with the
    /// announcement acked it (or it was sent its full number of times) before
    /// `leave_timeout`.
    LeaveFinished {
        /// Whether the announcement was fully disseminated.
        spread: bool,
    },
    /// A user event from another node ([`Handle::send_event`](crate::Handle::send_event)):
    /// delivered once per process, in its origin's order. On
    /// [`Handle::events`](crate::Handle::events) only.
    User(UserEvent),
    /// A query for this node from another node (or itself)
    /// ([`Handle::query`](crate::Handle::query)): answer it with
    /// [`Handle::respond`](crate::Handle::respond) and its token before its
    /// deadline. Once per query. On [`Handle::events`](crate::Handle::events) only.
    Query(QueryRequest),
    /// The subscriber's queue was full: `missed` updates were dropped for it just
    /// before this marker. Read the tracker (`cluster_nodes`) to catch up.
    Lagged {
        /// How many updates were lost.
        missed: u64,
    },
}

impl Update {
    /// The updates one event of the node becomes, in order: itself, and after a
    /// tracker write that changed another node's tags, an [`Update::Tags`].
    /// `own` is this node's name.
    pub(crate) fn of_event(own: &NodeName, event: Event) -> impl Iterator<Item = Update> {
        let (first, second) = match event {
            Event::Tracker(change) => {
                let tags = tags_changed(own, &change).then(|| Update::Tags {
                    node: change.new_row.node.clone(),
                    tags: change.new_row.tags.clone(),
                });
                (Some(Update::Tracker(change)), tags)
            }
            Event::NodeUpdate { node, status } => (Some(Update::Node { node, status }), None),
            Event::ModeChanged(mode) => (Some(Update::Mode(mode)), None),
            Event::Joined { seed } => (Some(Update::Joined { seed }), None),
            Event::JoinFailed { attempts, refused } => {
                (Some(Update::JoinFailed { attempts, refused }), None)
            }
            Event::NameConflict { node, addrs } => {
                (Some(Update::NameConflict { node, addrs }), None)
            }
            Event::NameLost { winner } => (Some(Update::NameLost { winner }), None),
            Event::LeaveFinished { spread } => (Some(Update::LeaveFinished { spread }), None),
            Event::User(event) => (Some(Update::User(event)), None),
            Event::Query(request) => (Some(Update::Query(request)), None),
            other => {
                debug!(event = ?other, "an event this driver does not route");
                (None, None)
            }
        };
        first.into_iter().chain(second)
    }

    /// The updates that bring a new subscriber to the current state: every row
    /// as a write (with the tags and online updates it implies for other
    /// nodes), then the mode. What [`Update::of_event`] would have told a
    /// subscriber present from the start, without the history.
    ///
    /// `lost`: this process's own address and the winner's, when it has lost
    /// its name already. A reader that came after the loss (the node may lose
    /// its name within a millisecond of its start, on the join's reply) is
    /// told the conflict and the loss as the updates that said so: the node is
    /// inert from then on, which no row shows.
    pub(crate) fn replay<'a>(
        own: &'a NodeName,
        rows: impl IntoIterator<Item = &'a TrackerRow> + 'a,
        mode: Mode,
        lost: Option<(SocketAddr, SocketAddr)>,
    ) -> impl Iterator<Item = Update> + 'a {
        let rows = rows.into_iter().flat_map(move |row| {
            let online =
                (row.node != *own && row.status == NodeStatus::Online).then(|| Update::Node {
                    node: row.node.clone(),
                    status: NodeStatus::Online,
                });
            let write = Event::Tracker(TrackerEvent {
                op: Op::Write,
                new_row: row.clone(),
                old_row: None,
            });
            Update::of_event(own, write).chain(online)
        });
        let lost = lost.into_iter().flat_map(move |(addr, winner)| {
            let conflict = Update::NameConflict {
                node: own.clone(),
                // As the core reports it: lower address first.
                addrs: [addr.min(winner), addr.max(winner)],
            };
            [conflict, Update::NameLost { winner }]
        });
        rows.chain(std::iter::once(Update::Mode(mode))).chain(lost)
    }

    /// Whether a subscription with `interest` hears it.
    fn heard_by(&self, interest: Interest) -> bool {
        matches!(
            (interest, self),
            (Interest::All, _)
                | (_, Update::Lagged { .. })
                | (
                    Interest::Nodes,
                    Update::Node { .. } | Update::NameConflict { .. }
                )
                | (Interest::Tags, Update::Tags { .. })
        )
    }

    /// The update's name, in snake case (`tracker`, `node_update`, `mode`, ...):
    /// for logs and JSON lines.
    pub fn kind(&self) -> &'static str {
        match self {
            Update::Tracker(_) => "tracker",
            Update::Node { .. } => "node_update",
            Update::Tags { .. } => "tags",
            Update::Mode(_) => "mode",
            Update::Joined { .. } => "joined",
            Update::JoinFailed { .. } => "join_failed",
            Update::NameConflict { .. } => "name_conflict",
            Update::NameLost { .. } => "name_lost",
            Update::LeaveFinished { .. } => "leave_finished",
            Update::User(_) => "user_event",
            Update::Query(_) => "query",
            Update::Lagged { .. } => "lagged",
        }
    }

    /// Hands this update to a callback: `node_update` for a node change,
    /// `lagged` for a lag marker, `name_conflict` for a conflict; nothing else
    /// reaches a callback. A panic in the callback is caught and logged, so
    /// one bad update does not end the subscription.
    pub fn dispatch<C: NodeUpdate + ?Sized>(self, callback: &C) {
        let outcome = catch_unwind(AssertUnwindSafe(|| match &self {
            Update::Node { node, status } => callback.node_update(node, *status),
            Update::Lagged { missed } => callback.lagged(*missed),
            Update::NameConflict { node, addrs } => callback.name_conflict(node, *addrs),
            _ => {}
        }));
        if outcome.is_err() {
            error!(
                update = self.kind(),
                "a node_update callback panicked; the subscription stays"
            );
        }
    }
}

/// Whether a tracker change is news about another node's tags: a write whose
/// tags differ from the row before (or, for a node first heard of, are not empty).
fn tags_changed(own: &NodeName, change: &TrackerEvent) -> bool {
    change.op == Op::Write
        && change.new_row.node != *own
        && change
            .old_row
            .as_ref()
            .map_or(!change.new_row.tags.is_empty(), |old| {
                old.tags != change.new_row.tags
            })
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

/// How a reader that emptied its queue asks the node's thread for a lag marker
/// that waits for room (a quiet node would not step on its own). The handle
/// makes it from its command queue, so the router needs no command type.
pub(crate) struct Poke(Box<dyn Fn() + Send + Sync>);

impl Poke {
    pub(crate) fn new(poke: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Box::new(poke))
    }
}

impl std::fmt::Debug for Poke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Poke")
    }
}

/// A new subscription's queue of `capacity` updates: the router's end and the
/// reader's (see [`Poke`] for `poke`).
pub(crate) fn queue(capacity: usize, poke: Poke) -> (Outbox, Inbox) {
    let (sender, receiver) = async_channel::bounded(capacity);
    let marker_waiting = Arc::new(AtomicBool::new(false));
    let outbox = Outbox {
        sender,
        marker_waiting: Arc::clone(&marker_waiting),
    };
    let inbox = Inbox {
        receiver: Box::pin(receiver),
        marker_waiting,
        poke,
    };
    (outbox, inbox)
}

/// The router's end of a subscriber's queue.
#[derive(Debug)]
pub(crate) struct Outbox {
    sender: Sender<Update>,
    /// Set when an update was dropped for a full queue: its marker waits for room.
    marker_waiting: Arc<AtomicBool>,
}

/// The reader's end of a subscriber's queue.
#[derive(Debug)]
pub(crate) struct Inbox {
    receiver: Pin<Box<Receiver<Update>>>,
    marker_waiting: Arc<AtomicBool>,
    poke: Poke,
}

impl Inbox {
    /// The queue is empty: if a lag marker waits for room, asks the node's
    /// thread to send it now. The flag is set only while the queue is full, so
    /// a reader that finds the queue empty cannot miss it.
    fn queue_empty(&self) {
        if self.marker_waiting.swap(false, Ordering::SeqCst) {
            (self.poke.0)();
        }
    }

    /// The next update, waiting on this thread; `None` once the node stopped.
    pub(crate) fn recv_blocking(&self) -> Option<Update> {
        match self.receiver.try_recv() {
            Ok(update) => return Some(update),
            Err(async_channel::TryRecvError::Closed) => return None,
            Err(async_channel::TryRecvError::Empty) => self.queue_empty(),
        }
        self.receiver.recv_blocking().ok()
    }

    #[cfg(test)]
    pub(crate) fn try_recv(&self) -> Option<Update> {
        self.receiver.try_recv().ok()
    }
}

impl Stream for Inbox {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        let polled = self.receiver.as_mut().poll_next(cx);
        if polled.is_pending() {
            self.queue_empty();
        }
        polled
    }
}

/// The subscription has no receiver any more.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Gone;

#[derive(Debug)]
struct Route {
    queue: Outbox,
    interest: Interest,
    /// Updates dropped since the last lag marker went through.
    missed: u64,
}

impl Route {
    /// Offers one item without waiting: `Ok(false)` when the queue is full.
    fn try_send(&self, update: Update) -> Result<bool, Gone> {
        match self.queue.sender.try_send(update) {
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
            self.queue.marker_waiting.store(true, Ordering::SeqCst);
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
    /// subscribed already (ids are never reused, so only by mistake).
    pub(crate) fn insert(&mut self, id: SubscriberId, queue: Outbox, interest: Interest) -> bool {
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
    /// receivers are gone are removed. Nothing is copied when nobody listens.
    pub(crate) fn broadcast(&mut self, update: Update) {
        let ids: Vec<SubscriberId> = self
            .routes
            .iter()
            .filter(|(_, route)| update.heard_by(route.interest))
            .map(|(id, _)| *id)
            .collect();
        let Some((&last, rest)) = ids.split_last() else {
            return;
        };
        for &id in rest {
            let _ = self.deliver(id, update.clone());
        }
        let _ = self.deliver(last, update);
    }

    /// Offers `update` to one subscriber, if its interest covers it. `Err(Gone)`
    /// means its receiver is gone and the route was removed.
    pub(crate) fn deliver(&mut self, id: SubscriberId, update: Update) -> Result<(), Gone> {
        let Some(route) = self.routes.get_mut(&id) else {
            return Ok(());
        };
        if !update.heard_by(route.interest) {
            return Ok(());
        }
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

    /// A queue whose reader pokes nobody.
    fn test_queue(capacity: usize) -> (Outbox, Inbox) {
        queue(capacity, Poke::new(|| {}))
    }

    fn online(name: &str) -> Update {
        Update::Node {
            node: NodeName::new(name).expect("valid name"),
            status: NodeStatus::Online,
        }
    }

    fn drain(queue: &Inbox) -> Vec<Update> {
        std::iter::from_fn(|| queue.try_recv()).collect()
    }

    #[test]
    fn a_full_queue_drops_and_later_reports_the_lag_before_anything_new() {
        let (sender, queue) = test_queue(2);
        let mut router = Router::default();
        let id = SubscriberId::new(7);
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
        let (sender, queue) = test_queue(1);
        let mut router = Router::default();
        let id = SubscriberId::new(1);
        router.insert(id, sender, Interest::Nodes);
        router.deliver(id, online("a")).expect("open");
        router.deliver(id, online("b")).expect("open");
        assert!(router.flush().is_empty(), "still full: marker pending");
        assert_eq!(drain(&queue), vec![online("a")]);
        assert!(router.flush().is_empty());
        assert_eq!(drain(&queue), vec![Update::Lagged { missed: 1 }]);
    }

    #[test]
    fn a_reader_that_empties_its_queue_asks_for_the_waiting_marker() {
        let pokes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&pokes);
        let (outbox, inbox) = queue(
            1,
            Poke::new(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            }),
        );
        let poked = || pokes.load(Ordering::SeqCst);
        let mut router = Router::default();
        let id = SubscriberId::new(1);
        router.insert(id, outbox, Interest::All);
        router.deliver(id, online("a")).expect("open");
        router.deliver(id, online("b")).expect("open");
        assert_eq!(poked(), 0, "nothing asked while the reader has work");
        assert_eq!(inbox.try_recv(), Some(online("a")));
        let waker = std::task::Waker::noop();
        let mut inbox = inbox;
        let polled = Pin::new(&mut inbox).poll_next(&mut Context::from_waker(waker));
        assert!(polled.is_pending());
        assert_eq!(
            poked(),
            1,
            "an empty queue with a marker waiting asks the node's thread"
        );
        let _ = router.flush();
        assert_eq!(inbox.try_recv(), Some(Update::Lagged { missed: 1 }));
    }

    #[test]
    fn a_closed_queue_ends_the_route() {
        let (sender, queue) = test_queue(4);
        let mut router = Router::default();
        let id = SubscriberId::new(3);
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
        let (first, first_queue) = test_queue(4);
        let (second, second_queue) = test_queue(4);
        let mut router = Router::default();
        let id = SubscriberId::new(5);
        assert!(router.insert(id, first, Interest::Nodes));
        assert!(!router.insert(id, second, Interest::Nodes));
        assert!(
            second_queue.receiver.is_closed(),
            "the refused queue was dropped"
        );
        router.broadcast(online("a"));
        assert_eq!(drain(&first_queue), vec![online("a")]);
    }

    #[test]
    fn tag_changes_reach_tag_subscribers_only_and_node_changes_the_others() {
        let (nodes, nodes_queue) = test_queue(4);
        let (tags, tags_queue) = test_queue(4);
        let mut router = Router::default();
        router.insert(SubscriberId::new(1), nodes, Interest::Nodes);
        router.insert(SubscriberId::new(2), tags, Interest::Tags);
        let change = Update::Tags {
            node: NodeName::new("a").expect("valid name"),
            tags: Tags::from_pairs([("role", "db")]).expect("valid tags"),
        };
        router.broadcast(online("a"));
        router.broadcast(change.clone());
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
