//! The application's side of a running node, the same on every runtime.
//!
//! A [`Handle`] never touches the node: it queues a [`Command`] for the node's
//! thread, which decides on it (see [`Driver::step`](crate::Driver::step)) and
//! answers through the command's [`Reply`]. Getters read the state the node
//! publishes after every step, so they never wait for it.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use async_channel::Sender;
use beethoven_core::{
    KeyRing, Mode, NodeName, NodeStatus, Query, QueryToken, Seed, Stats, TagQuery, Tags, TrackerRow,
};
use futures_core::Stream;

use crate::command::{Command, CommandKind, Order, Reader, Reply};
use crate::error::CommandError;
use crate::options::Options;
use crate::query::PendingQuery;
use crate::router::{Inbox, Interest, NodeUpdate, Poke, SubscriberId, Update, queue};
use crate::snapshot::{IoErrors, SharedSnapshot, Snapshot};

/// A running node. Cheap to clone; every clone controls the same node.
///
/// Commands are decided by the node's thread, which answers each through a
/// [`Reply`]; getters read the state the node's thread last published (a few
/// milliseconds old at most while the node runs, and never older than the last
/// reply received). Every clone keeps the node running; dropping the last one
/// closes the command channel, and the node's thread stops and closes its socket.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

struct Shared {
    name: NodeName,
    local_addr: SocketAddr,
    advertised_addr: SocketAddr,
    queue_capacity: usize,
    snapshot: SharedSnapshot,
    commands: Sender<Command>,
    next_subscriber: AtomicU64,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.shared.name)
            .field("local_addr", &self.shared.local_addr)
            .field("advertised_addr", &self.shared.advertised_addr)
            .finish_non_exhaustive()
    }
}

impl Handle {
    pub(crate) fn new(
        options: &Options,
        local_addr: SocketAddr,
        snapshot: SharedSnapshot,
        commands: Sender<Command>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                name: options.name().clone(),
                local_addr,
                advertised_addr: options.advertised_addr(local_addr),
                queue_capacity: options.subscriber_queue_capacity(),
                snapshot,
                commands,
                next_subscriber: AtomicU64::new(1),
            }),
        }
    }

    fn send(&self, kind: CommandKind) -> Result<(), CommandError> {
        let command = Command(kind);
        self.shared
            .commands
            .try_send(command)
            .map_err(|_| CommandError::Closed)
    }

    /// Queues `order`; the node answers through the reply.
    fn decide(&self, order: Order) -> Reply {
        let (answer, reply) = Reply::channel();
        match self.send(CommandKind::Decide { order, answer }) {
            Ok(()) => reply,
            Err(closed) => Reply::ready(Err(closed)),
        }
    }

    fn snapshot(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.shared.snapshot.lock()
    }

    // ----- getters -----

    /// This node's name.
    pub fn name(&self) -> &NodeName {
        &self.shared.name
    }

    /// The address the UDP socket is bound to (with the real port when port 0 was
    /// asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The address other nodes reach this one at (see
    /// [`Options::advertised_addr`]).
    pub fn advertised_addr(&self) -> SocketAddr {
        self.shared.advertised_addr
    }

    /// `Clustered` while any other node is online (the original's `get_mode/0`).
    #[doc(alias = "get_mode")]
    pub fn mode(&self) -> Mode {
        self.snapshot().mode
    }

    /// Every row of the tracker, self included, ordered by name. Rows serialize,
    /// so this is also how to save the table for [`Handle::restore`].
    pub fn cluster_nodes(&self) -> Vec<TrackerRow> {
        self.snapshot().rows.clone()
    }

    /// Names of the online nodes, self included.
    pub fn active_nodes(&self) -> Vec<NodeName> {
        self.snapshot()
            .rows
            .iter()
            .filter(|row| row.status == NodeStatus::Online)
            .map(|row| row.node.clone())
            .collect()
    }

    /// The members whose tags match `query` (a key, or a key and its value),
    /// ordered by name: online ones only, unless the query
    /// [includes offline](TagQuery::including_offline) members. Self included.
    /// Service discovery: `members_with_tag(&TagQuery::key_value("role", "db"))`,
    /// then read each row's `addr` and other tags.
    pub fn members_with_tag(&self, query: &TagQuery) -> Vec<TrackerRow> {
        self.snapshot()
            .rows
            .iter()
            .filter(|row| {
                (query.includes_offline() || row.status == NodeStatus::Online)
                    && query.matches(&row.tags)
            })
            .cloned()
            .collect()
    }

    /// This node's own tags, as last published.
    pub fn tags(&self) -> Tags {
        self.snapshot()
            .rows
            .iter()
            .find(|row| row.node == self.shared.name)
            .map(|row| row.tags.clone())
            .unwrap_or_default()
    }

    /// Traffic and drop counters of the node.
    pub fn stats(&self) -> Stats {
        self.snapshot().stats.clone()
    }

    /// Updates dropped for subscribers whose queues were full, all together.
    pub fn lagged_updates(&self) -> u64 {
        self.snapshot().lagged
    }

    /// Socket errors the node's thread met and went on from.
    pub fn io_errors(&self) -> IoErrors {
        self.snapshot().io_errors
    }

    /// Whether `leave` was called (and no `join` since): the node's own answer
    /// ([`Node::has_left`](beethoven_core::Node::has_left)) as last published,
    /// so true once a `leave`'s [`Reply`] has come back.
    pub fn has_left(&self) -> bool {
        self.snapshot().left
    }

    /// Whether the node's thread still runs.
    pub fn is_running(&self) -> bool {
        self.snapshot().running
    }

    /// Where the process that kept this node's name listens, once this node
    /// lost it to that process (see
    /// [`Event::NameConflict`](beethoven_core::Event::NameConflict) for the
    /// rule); `None` while the name is this node's. Once set, every command but
    /// `stop` and `shutdown` returns [`CommandError::NameTaken`]: stop the
    /// process, or restart it under another name.
    pub fn name_taken_by(&self) -> Option<SocketAddr> {
        self.snapshot().name_taken_by
    }

    /// Depth of each subscriber's queue.
    pub fn queue_capacity(&self) -> usize {
        self.shared.queue_capacity
    }

    // ----- commands -----
    //
    // Each is decided by the node, which answers through the `Reply`: the
    // checks are the node's own, applied in queue order with everything else.

    /// Adds a discovered node as online (the original's `new_node/1`); see
    /// [`Node::new_node`](beethoven_core::Node::new_node).
    pub fn new_node(&self, name: NodeName, addr: SocketAddr) -> Reply {
        self.decide(Order::NewNode { name, addr })
    }

    /// Loads a saved table (what [`Handle::cluster_nodes`] returned before a
    /// restart, e.g. kept as JSON); see [`Node::restore`](beethoven_core::Node::restore).
    /// Call it before `join`, so the node knows its peers from the first probe.
    pub fn restore(&self, rows: Vec<TrackerRow>) -> Reply {
        self.decide(Order::Restore(rows))
    }

    /// Joins the cluster through `seeds` (the original's `add_node_to_mnesia/1`);
    /// see [`Node::join`](beethoven_core::Node::join). After `leave`, brings the
    /// node back. Host names ([`Seed::Host`]) are not resolved here (that would
    /// block): give them to [`Options::seed`] at start, where they are resolved
    /// and re-resolved; here they count as no address. The reply says whether
    /// the join started; [`Update::Joined`] or [`Update::JoinFailed`] on
    /// [`events`](Handle::events) say how it ended.
    pub fn join(&self, seeds: &[Seed]) -> Reply {
        self.decide(Order::Join(seeds.to_vec()))
    }

    /// Leaves the cluster: the others mark this node offline at once, without
    /// suspicion; see [`Node::leave`](beethoven_core::Node::leave). The node keeps
    /// running (and can `join` again); a shutdown after `leave` first lets the
    /// announcement spread, for at most `leave_timeout`
    /// ([`Update::LeaveFinished`] says when it has).
    pub fn leave(&self) -> Reply {
        self.decide(Order::Leave)
    }

    /// Replaces this node's tags; see [`Node::set_tags`](beethoven_core::Node::set_tags).
    /// Tags that break a limit (`max_tags_size`, `max_tags`, a row that fits a
    /// datagram) are refused with [`CommandError::Tags`], and nothing changes.
    pub fn set_tags(&self, tags: Tags) -> Reply {
        self.decide(Order::SetTags(tags))
    }

    /// Sends a user event to every live member; see
    /// [`Node::send_event`](beethoven_core::Node::send_event). Each member's
    /// process delivers it once, in this node's order, on its event stream
    /// ([`Update::User`](crate::Update::User)); this node does not. An empty
    /// or too long name, a payload over the limit, or sending faster than
    /// `user_events.send_rate` is refused with [`CommandError::SendEvent`],
    /// and nothing is sent.
    pub fn send_event(&self, name: impl Into<String>, payload: impl Into<Vec<u8>>) -> Reply {
        self.decide(Order::SendEvent {
            name: name.into(),
            payload: payload.into(),
        })
    }

    /// Runs a query ([`Node::query`](beethoven_core::Node::query)): every
    /// member its filter picks, this node included, gets an
    /// [`Update::Query`](crate::Update::Query) on [`Handle::events`] and may
    /// answer with [`Handle::respond`]. Returns the stream of acks and answers,
    /// which ends with [`QueryReply::Done`](crate::QueryReply::Done) at the
    /// timeout or once every matching online member answered. A bad name,
    /// payload, timeout or filter is refused with [`CommandError::Query`]
    /// before anything is sent.
    ///
    /// The query is queued when this returns, as a command is; await the
    /// [`PendingQuery`] for its stream.
    pub fn query(&self, query: Query) -> PendingQuery {
        let (answer, receiver) = async_channel::bounded(1);
        let queued = self.send(CommandKind::Query { query, answer });
        PendingQuery::new(queued, receiver)
    }

    /// Answers a query this node received ([`Update::Query`](crate::Update::Query))
    /// with `payload`, sent to its origin directly and through relays. An
    /// unknown, answered or expired token, or a payload over
    /// `queries.max_response_size`, is refused with [`CommandError::Respond`].
    pub fn respond(&self, token: QueryToken, payload: impl Into<Vec<u8>>) -> Reply {
        self.decide(Order::Respond {
            token,
            payload: payload.into(),
        })
    }

    /// Replaces the key ring (or turns sealing off with `None`): the way to rotate
    /// keys on a live cluster; see
    /// [`Node::set_key_ring`](beethoven_core::Node::set_key_ring). Rotate in three
    /// steps, each applied on every node before the next: accept the new key, make
    /// it primary, drop the old one.
    pub fn set_key_ring(&self, ring: Option<KeyRing>) -> Reply {
        self.decide(Order::SetKeyRing(ring))
    }

    /// Marks an offline member `left`, and with `prune` removes it from every
    /// node's table; see [`Node::force_leave`](beethoven_core::Node::force_leave).
    /// An unknown or online member is refused with [`CommandError::ForceLeave`].
    pub fn force_leave(&self, name: NodeName, prune: bool) -> Reply {
        self.decide(Order::ForceLeave { name, prune })
    }

    /// Ends a subscription; its queue is closed (a callback's thread finishes).
    /// An id that is not subscribed (any more) is fine.
    pub fn unsubscribe(&self, subscriber: SubscriberId) -> Reply {
        self.decide(Order::Unsubscribe(subscriber))
    }

    // ----- events -----

    /// Every event of the node, in the order the node emitted it, from the
    /// moment the node applies the subscription: tracker writes and deletes
    /// (with the row before), other nodes going online or offline, tag
    /// changes, mode changes, join results, name conflicts, the end of a
    /// leave; and [`Update::Lagged`] markers when the stream is read too slowly
    /// (its queue holds [`Options::queue_capacity`] updates). Each call is a
    /// subscription of its own; it ends when the node stops (at once if it has
    /// stopped already), and dropping it unsubscribes.
    ///
    /// The node runs on a thread of its own, so what happened between `start`
    /// and this call (a join's first replies, say) is in the table, not in the
    /// stream: to hear it too, use [`events_with_current`](Handle::events_with_current).
    pub fn events(&self) -> Updates {
        self.stream(Interest::All, false)
    }

    /// [`events`](Handle::events), whose stream first carries the state at the
    /// moment the node applies the subscription, as the updates that would
    /// have brought a new reader there: a tracker write (`old_row: None`) for
    /// every row, ordered by name, each followed by what it implies for
    /// another node (its tags, and that it is online), then the mode, and, if
    /// this process has lost its name already, the [`Update::NameConflict`]
    /// and [`Update::NameLost`] that said so. Then
    /// every change after it: nothing is missed and nothing is told twice
    /// (the replay counts against the queue like any update: a table larger
    /// than the queue gives an [`Update::Lagged`] marker, as a slow reader
    /// would). For a reader that reports or mirrors the table.
    pub fn events_with_current(&self) -> Updates {
        self.stream(Interest::All, true)
    }

    /// Calls `callback.node_update(node, status)` for every online/offline change of
    /// another node, never this one (the original's `alert_me/1`), on a blocking
    /// thread of the runtime, so the node never waits for it: a view of
    /// [`events`](Handle::events) with node changes, name conflicts and lag markers.
    ///
    /// Every call is a subscription of its own, with a new [`SubscriberId`]:
    /// calling it twice (even with one closure, in a loop) calls back twice.
    /// End one with [`unsubscribe`](Handle::unsubscribe).
    ///
    /// Changes are reported from the moment the node applies the subscription.
    /// A `start` with seeds joins at once, so nodes met before this call are only in
    /// [`cluster_nodes`](Handle::cluster_nodes): to hear about every node, start
    /// without seeds, subscribe, then [`join`](Handle::join), or use
    /// [`subscribe_with_current`](Handle::subscribe_with_current).
    pub fn alert_me<C: NodeUpdate>(&self, callback: C) -> Result<SubscriberId, CommandError> {
        let id = self.next_id();
        let (queue, updates) = self.queue();
        let reader = Reader(Box::new(move || {
            while let Some(update) = updates.recv_blocking() {
                update.dispatch(&callback);
            }
        }));
        self.send(CommandKind::Subscribe {
            id,
            queue,
            reader: Some(reader),
            interest: Interest::Nodes,
            replay: false,
        })?;
        Ok(id)
    }

    /// A view of [`events`](Handle::events): online/offline changes of other
    /// nodes ([`Update::Node`]), name conflicts, and [`Update::Lagged`] markers.
    /// Otherwise like `events`.
    pub fn subscribe(&self) -> Updates {
        self.stream(Interest::Nodes, false)
    }

    /// [`subscribe`](Handle::subscribe), whose stream first carries an
    /// `Update::Node { status: Online }` for every other node online at the
    /// moment the node applies the subscription, then every change after it
    /// (see [`events_with_current`](Handle::events_with_current)).
    pub fn subscribe_with_current(&self) -> Updates {
        self.stream(Interest::Nodes, true)
    }

    /// A view of [`events`](Handle::events): tag changes of other nodes
    /// ([`Update::Tags`], with a node's tags each time they change, or when a
    /// node is first heard of with tags) and [`Update::Lagged`] markers.
    /// Otherwise like `events`.
    pub fn subscribe_tags(&self) -> Updates {
        self.stream(Interest::Tags, false)
    }

    /// [`subscribe_tags`](Handle::subscribe_tags), whose stream first carries an
    /// [`Update::Tags`] for every other node that holds tags at the moment the
    /// node applies the subscription, then every change after it.
    pub fn subscribe_tags_with_current(&self) -> Updates {
        self.stream(Interest::Tags, true)
    }

    fn next_id(&self) -> SubscriberId {
        SubscriberId::new(self.shared.next_subscriber.fetch_add(1, Ordering::Relaxed))
    }

    fn queue(&self) -> (crate::router::Outbox, Inbox) {
        let commands = self.shared.commands.downgrade();
        let poke = Poke::new(move || {
            if let Some(commands) = commands.upgrade() {
                let _ = commands.try_send(Command(CommandKind::Flush));
            }
        });
        queue(self.queue_capacity(), poke)
    }

    fn stream(&self, interest: Interest, replay: bool) -> Updates {
        let (queue, updates) = self.queue();
        // On a stopped node the refused command drops `queue`: the stream ends at once.
        let _ = self.send(CommandKind::Subscribe {
            id: self.next_id(),
            queue,
            reader: None,
            interest,
            replay,
        });
        Updates { queue: updates }
    }

    /// A watch on what the getters read: [`Changes::changed`] waits until the
    /// table ([`cluster_nodes`](Handle::cluster_nodes)), the mode, whether the node
    /// has left, lost its name or still runs changed, so a reader that mirrors them
    /// need not poll. The counters ([`stats`](Handle::stats)) are not watched: they
    /// change with every datagram.
    pub fn watch(&self) -> Changes {
        Changes {
            seen: self.snapshot().version,
            published: Arc::clone(&self.shared.snapshot),
        }
    }

    /// Asks the node's thread to stop without waiting for it ([`shutdown`](Handle::shutdown)
    /// also waits). Nothing is announced: to the others this is a crash unless
    /// [`leave`](Handle::leave) came first.
    pub fn stop(&self) -> Result<(), CommandError> {
        self.send(CommandKind::Stop)
    }

    /// Stops the node and waits until its thread has ended and its socket is closed.
    /// After [`leave`](Handle::leave) it first lets the announcement spread (at most
    /// `leave_timeout`). Other clones of the handle then get
    /// [`CommandError::Closed`].
    pub async fn shutdown(self) {
        // Already stopped is fine: then the channel is closed too.
        let _ = self.stop();
        // The node's thread drops its end of the channel after its socket.
        self.shared.commands.closed().await;
    }
}

/// Changes of what a [`Handle`]'s getters read (see [`Handle::watch`]).
#[derive(Debug)]
pub struct Changes {
    published: SharedSnapshot,
    /// The version of the snapshot this watch last reported.
    seen: u64,
}

impl Changes {
    /// Waits until the published state changed since the last call (since
    /// [`Handle::watch`] for the first), then returns `true`; several changes in
    /// between are reported once, so read the getters after it returns. Returns
    /// `false`, at once, once the node has stopped.
    pub async fn changed(&mut self) -> bool {
        if !self.published.lock().running {
            return false;
        }
        // The node's thread raises the version as it stops, so this wait ends then too.
        self.seen = self.published.changed_since(self.seen).await;
        self.published.lock().running
    }
}

/// The updates of one subscription (see [`Handle::subscribe`]); a
/// [`Stream`](futures_core::Stream).
#[derive(Debug)]
#[must_use = "updates are delivered only to a stream that is read"]
pub struct Updates {
    queue: Inbox,
}

impl Updates {
    /// The next update; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<Update> {
        std::future::poll_fn(|cx| Pin::new(&mut self.queue).poll_next(cx)).await
    }

    #[cfg(test)]
    pub(crate) fn try_recv(&self) -> Option<Update> {
        self.queue.try_recv()
    }
}

impl Stream for Updates {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        Pin::new(&mut self.queue).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use async_channel::Receiver;
    use futures_lite::future::block_on;

    use super::*;
    use crate::snapshot::Published;

    fn handle() -> (Handle, Receiver<Command>) {
        let (commands, queue) = async_channel::unbounded();
        let options = Options::new(NodeName::new("me").expect("valid name")).queue_capacity(8);
        let snapshot = Arc::new(Published::new(Snapshot {
            version: 0,
            mode: Mode::Standalone,
            rows: Vec::new(),
            stats: Stats::default(),
            lagged: 0,
            io_errors: IoErrors::default(),
            running: true,
            left: false,
            name_taken_by: None,
        }));
        let local = "127.0.0.1:7000".parse().expect("valid address");
        let handle = Handle::new(&options, local, snapshot, commands);
        (handle, queue)
    }

    fn queued(queue: &Receiver<Command>) -> Vec<Command> {
        std::iter::from_fn(|| queue.try_recv().ok()).collect()
    }

    #[test]
    fn a_command_is_queued_before_its_reply_is_awaited_and_the_reply_is_the_nodes() {
        let (handle, queue) = handle();
        let reply = handle.leave();
        let mut commands = queued(&queue);
        assert_eq!(commands.len(), 1, "queued at once");
        let Some(Command(CommandKind::Decide {
            order: Order::Leave,
            answer,
        })) = commands.pop()
        else {
            panic!("a leave order was queued");
        };
        answer.send(Err(CommandError::Closed));
        assert_eq!(block_on(reply), Err(CommandError::Closed));
    }

    #[test]
    fn a_command_the_node_never_answers_replies_closed() {
        let (handle, queue) = handle();
        let reply = handle.set_tags(Tags::default());
        drop(queued(&queue));
        assert_eq!(block_on(reply), Err(CommandError::Closed));
    }

    #[test]
    fn a_closed_channel_reports_closed_and_changes_nothing() {
        let (handle, queue) = handle();
        drop(queue);
        assert_eq!(block_on(handle.leave()), Err(CommandError::Closed));
        assert!(!handle.has_left());
        assert_eq!(handle.stop(), Err(CommandError::Closed));
    }

    #[test]
    fn every_alert_me_is_a_subscription_of_its_own_even_with_one_callback() {
        let (handle, queue) = handle();
        let callback = |_: &NodeName, _: NodeStatus| {};
        let first = handle.alert_me(callback).expect("open");
        let second = handle.alert_me(callback).expect("open");
        assert_ne!(first, second);
        let subscribed = queued(&queue)
            .into_iter()
            .filter(|command| matches!(command, Command(CommandKind::Subscribe { .. })))
            .count();
        assert_eq!(subscribed, 2);
    }
}
