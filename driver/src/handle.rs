//! The application's side of a running node, the same on every runtime.
//!
//! A [`Handle`] never touches the node: it checks what can be checked without it,
//! then queues a [`Command`] for the node's thread, which applies it (see
//! [`Driver::step`](crate::Driver::step)). Getters read the state the node
//! publishes after every step, so they never wait for it.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use async_channel::{Receiver, Sender};
use beethoven_core::{
    Config, KeyRing, LeaveError, Mode, NewNodeError, NodeName, NodeStatus, Seed, Stats, TagQuery,
    Tags, TrackerRow, expand_seeds,
};
use futures_core::Stream;

use crate::command::{Command, CommandError, CommandKind, Reader};
use crate::options::Options;
use crate::router::{Interest, NodeUpdate, SubscriberId, Update};
use crate::snapshot::{IoErrors, SharedSnapshot, Snapshot, lock};

/// A running node. Cheap to clone; every clone controls the same node.
///
/// Commands are checked here and applied by the node's thread right after; getters
/// read the state the node's thread last published (a few milliseconds old at most while
/// the node runs). Every clone keeps the node running; dropping the last one
/// closes the command channel, and the node's thread stops and closes its socket.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

struct Shared {
    name: NodeName,
    local_addr: SocketAddr,
    advertised_addr: SocketAddr,
    max_join_targets: usize,
    max_nodes: usize,
    /// For checking tags before they are queued.
    config: Config,
    queue_capacity: usize,
    snapshot: SharedSnapshot,
    commands: Sender<Command>,
    /// The last `join` or `leave` queued here. Locked while the command is queued,
    /// so tickets rise in queue order.
    queued: Mutex<Queued>,
    next_stream: AtomicU64,
}

/// A `join` or `leave` on its way to the node: its ticket, and whether the node
/// will have left once it is applied.
#[derive(Clone, Copy, Default, Debug)]
struct Queued {
    ticket: u64,
    left: bool,
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
        let config = options.protocol_config();
        Self {
            shared: Arc::new(Shared {
                name: options.name().clone(),
                local_addr,
                advertised_addr: options.advertised_addr(local_addr),
                max_join_targets: config.max_join_targets,
                max_nodes: config.max_nodes,
                config: config.clone(),
                queue_capacity: options.subscriber_queue_capacity(),
                snapshot,
                commands,
                queued: Mutex::new(Queued::default()),
                next_stream: AtomicU64::new(1),
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

    fn snapshot(&self) -> MutexGuard<'_, Snapshot> {
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

    /// Whether `leave` was called (and no `join` since).
    ///
    /// The node's own answer ([`Node::has_left`](beethoven_core::Node::has_left),
    /// as last published), except while a `join` or `leave` made here is still on
    /// its way to the node: then what that command will make it.
    pub fn has_left(&self) -> bool {
        self.left_after(&lock(&self.shared.queued))
    }

    fn left_after(&self, queued: &Queued) -> bool {
        let snapshot = self.snapshot();
        if queued.ticket > snapshot.applied {
            queued.left
        } else {
            snapshot.left
        }
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

    /// `Err(NameTaken)` once the node lost its name.
    fn check_name(&self) -> Result<(), CommandError> {
        match self.name_taken_by() {
            Some(by) => Err(CommandError::NameTaken { by }),
            None => Ok(()),
        }
    }

    /// Depth of each subscriber's queue.
    pub fn queue_capacity(&self) -> usize {
        self.shared.queue_capacity
    }

    // ----- commands -----

    /// Adds a discovered node as online (the original's `new_node/1`); see
    /// [`Node::new_node`](beethoven_core::Node::new_node).
    ///
    /// `TrackerFull` is checked against the last published tracker.
    pub fn new_node(&self, name: NodeName, addr: SocketAddr) -> Result<(), CommandError> {
        self.check_name()?;
        if name == self.shared.name {
            return Err(NewNodeError::IsSelf.into());
        }
        {
            let snapshot = self.snapshot();
            let known = snapshot.rows.iter().any(|row| row.node == name);
            if !known && snapshot.rows.len() >= self.shared.max_nodes {
                return Err(NewNodeError::TrackerFull.into());
            }
        }
        self.send(CommandKind::NewNode { name, addr })
    }

    /// Loads a saved table (what [`Handle::cluster_nodes`] returned before a
    /// restart, e.g. kept as JSON); see [`Node::restore`](beethoven_core::Node::restore).
    /// Call it before `join`, so the node knows its peers from the first probe.
    pub fn restore(&self, rows: Vec<TrackerRow>) -> Result<(), CommandError> {
        self.check_name()?;
        self.send(CommandKind::Restore(rows))
    }

    /// Joins the cluster through `seeds` (the original's `add_node_to_mnesia/1`);
    /// see [`Node::join`](beethoven_core::Node::join). After `leave`, brings the
    /// node back. Host names ([`Seed::Host`]) are not resolved here (that would
    /// block): give them to [`Options::seed`] at start, where they are resolved
    /// and re-resolved; here they count as no address.
    pub fn join(&self, seeds: &[Seed]) -> Result<(), CommandError> {
        self.check_name()?;
        expand_seeds(
            seeds,
            self.shared.advertised_addr,
            self.shared.max_join_targets,
        )?;
        let mut queued = lock(&self.shared.queued);
        let seeds = seeds.to_vec();
        self.queue_membership(&mut queued, false, |ticket| CommandKind::Join {
            seeds,
            ticket,
        })
    }

    /// Leaves the cluster: the others mark this node offline at once, without
    /// suspicion; see [`Node::leave`](beethoven_core::Node::leave). The node keeps
    /// running (and can `join` again); a shutdown after `leave` first lets the
    /// announcement spread, for at most `leave_timeout`.
    pub fn leave(&self) -> Result<(), CommandError> {
        self.check_name()?;
        let mut queued = lock(&self.shared.queued);
        if self.left_after(&queued) {
            return Err(LeaveError::AlreadyLeft.into());
        }
        self.queue_membership(&mut queued, true, |ticket| CommandKind::Leave { ticket })
    }

    /// Replaces this node's tags; see [`Node::set_tags`](beethoven_core::Node::set_tags).
    /// The limits (`max_tags_size`, `max_tags`, a row that fits a datagram) are
    /// checked here, so a refusal is this call's `Err` and nothing changes.
    pub fn set_tags(&self, tags: Tags) -> Result<(), CommandError> {
        self.check_name()?;
        self.shared
            .config
            .check_tags(&self.shared.name, self.shared.advertised_addr, &tags)?;
        self.send(CommandKind::SetTags(tags))
    }

    /// Queues a `join` (`left: false`) or `leave` under the next ticket.
    fn queue_membership(
        &self,
        queued: &mut Queued,
        left: bool,
        command: impl FnOnce(u64) -> CommandKind,
    ) -> Result<(), CommandError> {
        let ticket = queued.ticket + 1;
        self.send(command(ticket))?;
        *queued = Queued { ticket, left };
        Ok(())
    }

    /// Calls `callback.node_update(node, status)` for every online/offline change of
    /// another node, never this one (the original's `alert_me/1`), on a blocking
    /// thread of the runtime, so the node never waits for it.
    ///
    /// The callback's type names the subscription, as the module named it in the
    /// original: subscribing twice with a callback of the same type is one
    /// subscription. The second call returns the same [`SubscriberId`] and adds
    /// nothing (its callback is dropped). Every closure has a type of its own, but
    /// one closure expression evaluated twice has one type. End the subscription
    /// with [`unsubscribe`](Handle::unsubscribe).
    ///
    /// Changes are reported from the moment of subscribing. A `start` with seeds
    /// joins at once, so nodes met before this call are only in
    /// [`cluster_nodes`](Handle::cluster_nodes): to hear about every node, start
    /// without seeds, subscribe, then [`join`](Handle::join), or read the table
    /// after subscribing.
    pub fn alert_me<C: NodeUpdate>(&self, callback: C) -> Result<SubscriberId, CommandError> {
        self.check_name()?;
        let id = SubscriberId::callback::<C>();
        let (queue, updates) = async_channel::bounded::<Update>(self.queue_capacity());
        let reader = Reader(Box::new(move || {
            while let Ok(update) = updates.recv_blocking() {
                update.dispatch(&callback);
            }
        }));
        let reader = Some(reader);
        self.send(CommandKind::Subscribe {
            id,
            queue,
            reader,
            interest: Interest::Nodes,
            replay: false,
        })?;
        Ok(id)
    }

    /// A stream of online/offline changes of other nodes, with
    /// [`Update::Lagged`] markers when it is read too slowly. Each call is a
    /// subscription of its own. It ends when the node stops (at once if it has
    /// stopped already); dropping it unsubscribes. Like
    /// [`alert_me`](Handle::alert_me), it reports changes from the moment the
    /// node applies the subscription: the node runs on a thread of its own, so
    /// changes between `start` and `subscribe` (a join's first replies, say) are
    /// in the table, not in the stream. To hear them too, use
    /// [`subscribe_with_current`](Handle::subscribe_with_current).
    pub fn subscribe(&self) -> Updates {
        self.stream(Interest::Nodes, false)
    }

    /// [`subscribe`](Handle::subscribe), whose stream first carries an
    /// `Update::Node { status: Online }` for every other node online at the
    /// moment the node applies the subscription, then every change after it:
    /// nothing is missed and nothing is told twice, whenever it is called (the
    /// replay counts against [`Options::queue_capacity`](crate::Options::queue_capacity)
    /// like any update: a larger cluster than the queue holds gets an
    /// [`Update::Lagged`] marker, as a slow reader would). For a reader that
    /// reports or mirrors membership (a CLI, service discovery).
    pub fn subscribe_with_current(&self) -> Updates {
        self.stream(Interest::Nodes, true)
    }

    /// A stream of tag changes of other nodes: [`Update::Tags`] with a node's
    /// tags each time they change (or when a node is first heard of with
    /// tags), and [`Update::Lagged`] markers; nothing else. Otherwise like
    /// [`subscribe`](Handle::subscribe). Online/offline changes stay on
    /// `subscribe` and `alert_me`, as in the original.
    pub fn subscribe_tags(&self) -> Updates {
        self.stream(Interest::Tags, false)
    }

    /// [`subscribe_tags`](Handle::subscribe_tags), whose stream first carries an
    /// [`Update::Tags`] for every other node that holds tags at the moment the
    /// node applies the subscription, then every change after it.
    pub fn subscribe_tags_with_current(&self) -> Updates {
        self.stream(Interest::Tags, true)
    }

    fn stream(&self, interest: Interest, replay: bool) -> Updates {
        let n = self.shared.next_stream.fetch_add(1, Ordering::Relaxed);
        let (queue, updates) = async_channel::bounded(self.queue_capacity());
        let id = SubscriberId::stream(n);
        // On a stopped node the refused command drops `queue`: the stream ends at once.
        let _ = self.send(CommandKind::Subscribe {
            id,
            queue,
            reader: None,
            interest,
            replay,
        });
        Updates {
            queue: Box::pin(updates),
        }
    }

    /// Replaces the key ring (or turns sealing off with `None`): the way to rotate
    /// keys on a live cluster; see
    /// [`Node::set_key_ring`](beethoven_core::Node::set_key_ring). Rotate in three
    /// steps, each applied on every node before the next: accept the new key, make
    /// it primary, drop the old one.
    pub fn set_key_ring(&self, ring: Option<KeyRing>) -> Result<(), CommandError> {
        self.check_name()?;
        self.send(CommandKind::SetKeyRing(ring))
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

    /// Ends a subscription; its queue is closed (a callback's thread finishes).
    pub fn unsubscribe(&self, subscriber: SubscriberId) -> Result<(), CommandError> {
        self.check_name()?;
        self.send(CommandKind::Unsubscribe(subscriber))
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
    queue: Pin<Box<Receiver<Update>>>,
}

impl Updates {
    /// The next update; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<Update> {
        self.queue.recv().await.ok()
    }

    #[cfg(test)]
    pub(crate) fn try_recv(&self) -> Option<Update> {
        self.queue.try_recv().ok()
    }
}

impl Stream for Updates {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        self.queue.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use async_channel::Receiver;
    use beethoven_core::{Config, JoinError};

    use super::*;
    use crate::snapshot::Published;

    fn handle(max_nodes: usize) -> (Handle, Receiver<Command>) {
        let (commands, queue) = async_channel::unbounded();
        let mut config = Config::default();
        config.max_nodes = max_nodes;
        let options = Options::new(NodeName::new("me").expect("valid name"))
            .config(config)
            .queue_capacity(8);
        let snapshot = Arc::new(Published::new(Snapshot {
            version: 0,
            mode: Mode::Standalone,
            rows: Vec::new(),
            stats: Stats::default(),
            lagged: 0,
            io_errors: IoErrors::default(),
            running: true,
            left: false,
            applied: 0,
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
    fn commands_that_cannot_work_are_refused_before_queueing() {
        let (handle, queue) = handle(16);
        let me = NodeName::new("me").expect("valid name");
        let addr: SocketAddr = "127.0.0.1:7001".parse().expect("valid address");
        assert_eq!(
            handle.new_node(me, addr),
            Err(CommandError::NewNode(NewNodeError::IsSelf))
        );
        assert_eq!(
            handle.join(&[Seed::Addr(handle.advertised_addr())]),
            Err(CommandError::Join(JoinError::NoSeeds))
        );
        assert!(queued(&queue).is_empty(), "nothing was queued");
    }

    #[test]
    fn leave_twice_is_refused_and_join_clears_it() {
        let (handle, queue) = handle(16);
        assert_eq!(handle.leave(), Ok(()));
        assert!(handle.has_left());
        assert_eq!(
            handle.leave(),
            Err(CommandError::Leave(LeaveError::AlreadyLeft))
        );
        let seed: SocketAddr = "127.0.0.1:7001".parse().expect("valid address");
        assert_eq!(handle.join(&[Seed::Addr(seed)]), Ok(()));
        assert!(!handle.has_left());
        assert!(matches!(
            queued(&queue).as_slice(),
            [
                Command(CommandKind::Leave { ticket: 1 }),
                Command(CommandKind::Join { ticket: 2, .. })
            ]
        ));
    }

    #[test]
    fn once_the_node_applied_the_last_leave_or_join_its_answer_is_read() {
        let (handle, _queue) = handle(16);
        assert_eq!(handle.leave(), Ok(()));
        {
            let mut published = handle.shared.snapshot.lock();
            published.applied = 1;
            published.left = true;
        }
        assert!(handle.has_left());
        // Only the node's answer counts now: were it to say otherwise, it would win.
        handle.shared.snapshot.lock().left = false;
        assert!(!handle.has_left());
    }

    #[test]
    fn a_closed_channel_reports_closed_and_changes_nothing() {
        let (handle, queue) = handle(16);
        drop(queue);
        assert_eq!(handle.leave(), Err(CommandError::Closed));
        assert!(!handle.has_left());
        assert_eq!(handle.stop(), Err(CommandError::Closed));
    }

    #[test]
    fn subscriber_ids_are_distinct() {
        let (handle, _queue) = handle(16);
        let a = handle
            .alert_me(|_: &NodeName, _: NodeStatus| {})
            .expect("open");
        let b = handle
            .alert_me(|_: &NodeName, _: NodeStatus| {})
            .expect("open");
        assert_ne!(a, b, "two closures are two types");
    }

    #[test]
    fn a_callback_type_always_has_the_same_id() {
        let (handle, queue) = handle(16);
        let callback = |_: &NodeName, _: NodeStatus| {};
        let first = handle.alert_me(callback).expect("open");
        assert_eq!(handle.alert_me(callback), Ok(first));
        assert_eq!(
            queued(&queue).len(),
            2,
            "the node's router drops the second"
        );
    }
}
