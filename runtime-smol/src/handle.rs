//! The application's side of a running node.

use std::net::UdpSocket;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use beethoven_core::{
    Command, CommandError, Control, Driver, NodeUpdate, Options, Sink, SinkError, StartError,
    SubscriberId, Update,
};
use smol::Async;
use smol::channel::{self, Receiver, Sender, TrySendError};
use smol::stream::Stream;

use crate::task;

/// Binds the socket, resolves `host:port` seeds, creates the node, joins the seeds
/// (if any) and spawns the node's task on smol's global executor.
pub async fn start(options: Options) -> Result<Handle, StartError> {
    let addr = options.bind_addr();
    let bind_error = |source| StartError::Bind { addr, source };
    let socket = Async::<UdpSocket>::bind(addr).map_err(bind_error)?;
    let bound = socket.get_ref().local_addr().map_err(bind_error)?;
    beethoven_udp::report_bounces(socket.get_ref());
    let mut resolved = Vec::new();
    for host in options.seed_hosts() {
        let addrs = smol::net::resolve(host.as_str()).await;
        resolved.extend(addrs.map_err(|source| StartError::Resolve {
            host: host.clone(),
            source,
        })?);
    }
    let (commands, inbox) = channel::unbounded();
    let queue = commands.clone();
    let (driver, control) = Driver::new(
        options,
        bound,
        &resolved,
        Instant::now(),
        SystemTime::now().into(),
        move |command| {
            queue
                .try_send(command)
                .map_err(|refused| refused.into_inner())
        },
    )?;
    smol::spawn(task::run(driver, socket, inbox)).detach();
    Ok(Handle::new(control, commands))
}

/// A running node. Cheap to clone; every clone controls the same node. Getters and
/// commands (`mode`, `cluster_nodes`, `active_nodes`, `stats`, `name`,
/// `local_addr`, `new_node`, `join`, `leave`, ...) come from [`Control`], which a
/// `Handle` dereferences to.
///
/// Dropping the last clone stops the node's task and closes its socket.
#[derive(Clone, Debug)]
pub struct Handle {
    control: Control,
    /// A sender of the task's command channel, kept to learn when the task has
    /// ended (the channel closes when the task drops its end).
    commands: Sender<Command>,
}

impl Handle {
    pub(crate) fn new(control: Control, commands: Sender<Command>) -> Self {
        Self { control, commands }
    }

    /// Calls `callback.node_update(node, status)` for every online/offline change of
    /// another node (the original's `alert_me/1`), on smol's blocking thread pool.
    /// Each call is a subscription of its own; end it with
    /// [`unsubscribe`](Control::unsubscribe).
    pub fn alert_me(&self, callback: impl NodeUpdate) -> Result<SubscriberId, CommandError> {
        let (sink, queue) = bounded(self.queue_capacity());
        let id = self.attach(sink)?;
        let deliver_all = move || {
            while let Ok(update) = queue.recv_blocking() {
                update.dispatch(&callback);
            }
        };
        smol::unblock(deliver_all).detach();
        Ok(id)
    }

    /// A stream of online/offline changes of other nodes, with
    /// [`Update::Lagged`] markers when it is read too slowly. It ends when the node
    /// stops (at once if it has stopped already); dropping it unsubscribes.
    pub fn subscribe(&self) -> Updates {
        let (sink, queue) = bounded(self.queue_capacity());
        // If the node has stopped, `attach` drops the sink: the stream ends at once.
        if self.attach(sink).is_err() {
            queue.close();
        }
        Updates {
            queue: Box::pin(queue),
        }
    }

    /// Stops the node and waits until its task has ended and its socket is closed.
    /// After [`leave`](Control::leave) it first lets the announcement spread (at most
    /// `leave_timeout`). Other clones of the handle then get
    /// [`CommandError::Closed`].
    pub async fn shutdown(self) {
        if self.stop().is_ok() {
            self.commands.closed().await;
        }
    }
}

fn bounded(capacity: usize) -> (Sink, Receiver<Update>) {
    let (sender, queue) = channel::bounded(capacity);
    let sink = Sink::new(move |update| match sender.try_send(update) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) => Err(SinkError::Full),
        Err(TrySendError::Closed(_)) => Err(SinkError::Closed),
    });
    (sink, queue)
}

/// The updates of one subscription (see [`Handle::subscribe`]); a
/// [`Stream`](smol::stream::Stream).
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
}

impl Stream for Updates {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        self.queue.as_mut().poll_next(cx)
    }
}

impl Deref for Handle {
    type Target = Control;

    fn deref(&self) -> &Control {
        &self.control
    }
}
