//! The command set a runtime's `Handle` exposes, and the state snapshot its
//! getters read.
//!
//! A [`Control`] never touches the node: it checks what can be checked without it,
//! then queues a [`Command`] on the runtime's channel; the node's task applies it
//! (see [`Driver::step`](crate::Driver::step)). Getters read a [`Snapshot`] the task
//! publishes after every step, so they never wait for the task.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::config::Config;
use crate::discovery::{JoinError, Seed, expand_seeds};
use crate::driver::router::{Sink, SubscriberId};
use crate::event::Mode;
use crate::name::NodeName;
use crate::node::{LeaveError, NewNodeError};
use crate::stats::Stats;
use crate::tracker::{NodeStatus, TrackerRow};

/// A request for the node's task, made by a [`Control`]. Opaque: a runtime only
/// carries it from its channel to [`Driver::step`](crate::Driver::step).
#[derive(Debug)]
pub struct Command(pub(crate) CommandKind);

#[derive(Debug)]
pub(crate) enum CommandKind {
    NewNode { name: NodeName, addr: SocketAddr },
    Restore(Vec<TrackerRow>),
    Join(Vec<Seed>),
    Leave,
    Subscribe { id: SubscriberId, sink: Sink },
    Unsubscribe(SubscriberId),
    Stop,
}

/// Why a command was refused. Nothing changed, and nothing was queued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The node's task has stopped (shut down, or every handle was dropped).
    #[error("the node has shut down")]
    Closed,
    /// `new_node` refused.
    #[error(transparent)]
    NewNode(#[from] NewNodeError),
    /// `join` refused to start.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// `leave` refused.
    #[error(transparent)]
    Leave(#[from] LeaveError),
}

/// What the getters of a [`Control`] read; published by the driver after each step.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) mode: Mode,
    pub(crate) rows: Vec<TrackerRow>,
    pub(crate) stats: Stats,
    pub(crate) lagged: u64,
    pub(crate) io_errors: IoErrors,
    pub(crate) running: bool,
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

/// Locks a snapshot; a writer never panics while holding it, so a poisoned lock
/// still holds a whole value.
pub(crate) fn lock(snapshot: &SharedSnapshot) -> MutexGuard<'_, Snapshot> {
    snapshot.lock().unwrap_or_else(PoisonError::into_inner)
}

type SendCommand = dyn Fn(Command) -> Result<(), Command> + Send + Sync;

struct Shared {
    name: NodeName,
    local_addr: SocketAddr,
    advertised_addr: SocketAddr,
    max_join_targets: usize,
    max_nodes: usize,
    queue_capacity: usize,
    snapshot: SharedSnapshot,
    send: Box<SendCommand>,
    /// Mirrors the node's "has left": `leave` sets it, `join` clears it. Held while
    /// the command is queued so the flag and the queue agree on the order.
    left: Mutex<bool>,
    next_subscriber: AtomicU64,
}

/// The command and query side of a running node, shared by every clone of a
/// runtime's `Handle` (which dereferences to it).
///
/// Commands are checked here and applied by the node's task right after; getters
/// read the state the task last published (a few milliseconds old at most while
/// the task runs). Every clone, of a `Handle` or of a `Control`, keeps the node
/// running; when the last one is dropped the command channel closes and the task
/// stops.
#[derive(Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control")
            .field("name", &self.shared.name)
            .field("local_addr", &self.shared.local_addr)
            .field("advertised_addr", &self.shared.advertised_addr)
            .finish_non_exhaustive()
    }
}

impl Control {
    pub(crate) fn new(
        name: NodeName,
        local_addr: SocketAddr,
        advertised_addr: SocketAddr,
        config: &Config,
        queue_capacity: usize,
        snapshot: SharedSnapshot,
        send: Box<SendCommand>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                name,
                local_addr,
                advertised_addr,
                max_join_targets: config.max_join_targets,
                max_nodes: config.max_nodes,
                queue_capacity,
                snapshot,
                send,
                left: Mutex::new(false),
                next_subscriber: AtomicU64::new(1),
            }),
        }
    }

    fn send(&self, kind: CommandKind) -> Result<(), CommandError> {
        (self.shared.send)(Command(kind)).map_err(|_| CommandError::Closed)
    }

    fn snapshot(&self) -> MutexGuard<'_, Snapshot> {
        lock(&self.shared.snapshot)
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
    /// [`Options::advertised_addr`](crate::Options::advertised_addr)).
    pub fn advertised_addr(&self) -> SocketAddr {
        self.shared.advertised_addr
    }

    /// `Clustered` while any other node is online (the original's `get_mode/0`).
    #[doc(alias = "get_mode")]
    pub fn mode(&self) -> Mode {
        self.snapshot().mode
    }

    /// Every row of the tracker, self included, ordered by name. Rows serialize,
    /// so this is also how to save the table for [`Control::restore`].
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

    /// Traffic and drop counters of the node.
    pub fn stats(&self) -> Stats {
        self.snapshot().stats.clone()
    }

    /// Updates dropped for subscribers whose queues were full, all together.
    pub fn lagged_updates(&self) -> u64 {
        self.snapshot().lagged
    }

    /// Socket errors the node's task met and went on from.
    pub fn io_errors(&self) -> IoErrors {
        self.snapshot().io_errors
    }

    /// Whether `leave` was called (and no `join` since).
    pub fn has_left(&self) -> bool {
        *self
            .shared
            .left
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the node's task still runs.
    pub fn is_running(&self) -> bool {
        self.snapshot().running
    }

    /// Depth of each subscriber's queue.
    pub fn queue_capacity(&self) -> usize {
        self.shared.queue_capacity
    }

    // ----- commands -----

    /// Adds a discovered node as online (the original's `new_node/1`); see
    /// [`Node::new_node`](crate::Node::new_node).
    ///
    /// `TrackerFull` is checked against the last published tracker.
    pub fn new_node(&self, name: NodeName, addr: SocketAddr) -> Result<(), CommandError> {
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

    /// Loads a saved table (what [`Control::cluster_nodes`] returned before a
    /// restart, e.g. kept as JSON); see [`Node::restore`](crate::Node::restore).
    /// Call it before `join`, so the node knows its peers from the first probe.
    pub fn restore(&self, rows: Vec<TrackerRow>) -> Result<(), CommandError> {
        self.send(CommandKind::Restore(rows))
    }

    /// Joins the cluster through `seeds` (the original's `add_node_to_mnesia/1`);
    /// see [`Node::join`](crate::Node::join). After `leave`, brings the node back.
    pub fn join(&self, seeds: &[Seed]) -> Result<(), CommandError> {
        expand_seeds(
            seeds,
            self.shared.advertised_addr,
            self.shared.max_join_targets,
        )?;
        let mut left = self
            .shared
            .left
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.send(CommandKind::Join(seeds.to_vec()))?;
        *left = false;
        Ok(())
    }

    /// Leaves the cluster: the others mark this node offline at once, without
    /// suspicion; see [`Node::leave`](crate::Node::leave). The node keeps running
    /// (and can `join` again); a shutdown after `leave` first lets the announcement
    /// spread, for at most `leave_timeout`.
    pub fn leave(&self) -> Result<(), CommandError> {
        let mut left = self
            .shared
            .left
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *left {
            return Err(LeaveError::AlreadyLeft.into());
        }
        self.send(CommandKind::Leave)?;
        *left = true;
        Ok(())
    }

    /// Attaches a queue to the node: every online/offline change of another node is
    /// offered to `sink` without waiting. The runtime's `alert_me` and `subscribe`
    /// are built on this. Returns the id to [`unsubscribe`](Control::unsubscribe) with.
    pub fn attach(&self, sink: Sink) -> Result<SubscriberId, CommandError> {
        let id = SubscriberId(self.shared.next_subscriber.fetch_add(1, Ordering::Relaxed));
        self.send(CommandKind::Subscribe { id, sink })?;
        Ok(id)
    }

    /// Ends a subscription; its queue is closed (a stream ends, a callback's
    /// thread finishes).
    pub fn unsubscribe(&self, subscriber: SubscriberId) -> Result<(), CommandError> {
        self.send(CommandKind::Unsubscribe(subscriber))
    }

    /// Asks the node's task to stop without waiting for it (a runtime's `shutdown`
    /// also waits). Nothing is announced: to the others this is a crash unless
    /// [`leave`](Control::leave) came first.
    pub fn stop(&self) -> Result<(), CommandError> {
        self.send(CommandKind::Stop)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn control(max_nodes: usize) -> (Control, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel();
        let config = Config {
            max_nodes,
            ..Config::default()
        };
        let snapshot = Arc::new(Mutex::new(Snapshot {
            mode: Mode::Standalone,
            rows: Vec::new(),
            stats: Stats::default(),
            lagged: 0,
            io_errors: IoErrors::default(),
            running: true,
        }));
        let send = move |command| tx.send(command).map_err(|e| e.0);
        let control = Control::new(
            NodeName::new("me").expect("valid name"),
            "127.0.0.1:7000".parse().expect("valid address"),
            "127.0.0.1:7000".parse().expect("valid address"),
            &config,
            8,
            snapshot,
            Box::new(send),
        );
        (control, rx)
    }

    #[test]
    fn commands_that_cannot_work_are_refused_before_queueing() {
        let (control, rx) = control(16);
        let me = NodeName::new("me").expect("valid name");
        let addr: SocketAddr = "127.0.0.1:7001".parse().expect("valid address");
        assert_eq!(
            control.new_node(me, addr),
            Err(CommandError::NewNode(NewNodeError::IsSelf))
        );
        assert_eq!(
            control.join(&[Seed::Addr(control.advertised_addr())]),
            Err(CommandError::Join(JoinError::NoSeeds))
        );
        assert!(rx.try_recv().is_err(), "nothing was queued");
    }

    #[test]
    fn leave_twice_is_refused_and_join_clears_it() {
        let (control, rx) = control(16);
        assert_eq!(control.leave(), Ok(()));
        assert!(control.has_left());
        assert_eq!(
            control.leave(),
            Err(CommandError::Leave(LeaveError::AlreadyLeft))
        );
        let seed: SocketAddr = "127.0.0.1:7001".parse().expect("valid address");
        assert_eq!(control.join(&[Seed::Addr(seed)]), Ok(()));
        assert!(!control.has_left());
        let queued: Vec<Command> = rx.try_iter().collect();
        assert!(matches!(
            queued.as_slice(),
            [Command(CommandKind::Leave), Command(CommandKind::Join(_))]
        ));
    }

    #[test]
    fn a_closed_channel_reports_closed_and_changes_nothing() {
        let (control, rx) = control(16);
        drop(rx);
        assert_eq!(control.leave(), Err(CommandError::Closed));
        assert!(!control.has_left());
        assert_eq!(control.stop(), Err(CommandError::Closed));
    }

    #[test]
    fn subscriber_ids_are_distinct() {
        let (control, _rx) = control(16);
        let a = control.attach(Sink::new(|_| Ok(()))).expect("open");
        let b = control.attach(Sink::new(|_| Ok(()))).expect("open");
        assert_ne!(a, b);
    }
}
