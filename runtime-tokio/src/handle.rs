//! The application's side of a running node.

use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use beethoven_core::{
    Command, CommandError, Control, Driver, NodeUpdate, Options, Sink, SinkError, StartError,
    SubscriberId, Update,
};
use futures_core::Stream;
use tokio::net::{UdpSocket, lookup_host};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{self, UnboundedSender};

use crate::task;

/// Binds the socket, resolves `host:port` seeds, creates the node, joins the seeds
/// (if any) and spawns the node's task on the current tokio runtime.
///
/// # Panics
///
/// Outside a tokio runtime (like `tokio::spawn`).
pub async fn start(options: Options) -> Result<Handle, StartError> {
    let addr = options.bind_addr();
    let socket = UdpSocket::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let bound = socket
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    beethoven_udp::report_bounces(&socket);
    let mut resolved = Vec::new();
    for host in options.seed_hosts() {
        match lookup_host(host.as_str()).await {
            Ok(addrs) => resolved.extend(addrs),
            Err(source) => {
                let host = host.clone();
                return Err(StartError::Resolve { host, source });
            }
        }
    }
    let (commands, inbox) = mpsc::unbounded_channel();
    let queue = commands.clone();
    let now = Instant::now();
    let send_command = move |command| queue.send(command).map_err(|refused| refused.0);
    let (driver, control) = Driver::new(
        options,
        bound,
        &resolved,
        now,
        SystemTime::now().into(),
        send_command,
    )?;
    tokio::spawn(task::run(driver, socket, inbox));
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
    commands: UnboundedSender<Command>,
    runtime: tokio::runtime::Handle,
}

impl Handle {
    /// Called by `start` inside the runtime.
    pub(crate) fn new(control: Control, commands: UnboundedSender<Command>) -> Self {
        Self {
            control,
            commands,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Calls `callback.node_update(node, status)` for every online/offline change of
    /// another node (the original's `alert_me/1`), on tokio's blocking pool. Each
    /// call is a subscription of its own; end it with
    /// [`unsubscribe`](Control::unsubscribe).
    pub fn alert_me(&self, callback: impl NodeUpdate) -> Result<SubscriberId, CommandError> {
        let (sink, mut queue) = bounded(self.queue_capacity());
        let id = self.attach(sink)?;
        self.runtime.spawn_blocking(move || {
            while let Some(update) = queue.blocking_recv() {
                update.dispatch(&callback);
            }
        });
        Ok(id)
    }

    /// A stream of online/offline changes of other nodes, with
    /// [`Update::Lagged`] markers when it is read too slowly. It ends when the node
    /// stops (at once if it has stopped already); dropping it unsubscribes.
    pub fn subscribe(&self) -> Updates {
        let (sink, queue) = bounded(self.queue_capacity());
        // On a stopped node the command, and with it the sender, is dropped: the
        // stream then ends at once, as documented.
        let _ = self.attach(sink);
        Updates { queue }
    }

    /// Stops the node and waits until its task has ended and its socket is closed.
    /// After [`leave`](Control::leave) it first lets the announcement spread (at most
    /// `leave_timeout`). Other clones of the handle then get
    /// [`CommandError::Closed`].
    pub async fn shutdown(self) {
        // Already stopped is fine: then the channel is closed too.
        let _ = self.stop();
        self.commands.closed().await;
    }
}

fn bounded(capacity: usize) -> (Sink, mpsc::Receiver<Update>) {
    let (sender, queue) = mpsc::channel(capacity);
    let sink = Sink::new(move |update| {
        sender.try_send(update).map_err(|error| match error {
            TrySendError::Full(_) => SinkError::Full,
            TrySendError::Closed(_) => SinkError::Closed,
        })
    });
    (sink, queue)
}

/// The updates of one subscription (see [`Handle::subscribe`]); a
/// [`Stream`](futures_core::Stream).
#[derive(Debug)]
#[must_use = "updates are delivered only to a stream that is read"]
pub struct Updates {
    queue: mpsc::Receiver<Update>,
}

impl Updates {
    /// The next update; `None` once the node has stopped.
    pub async fn recv(&mut self) -> Option<Update> {
        self.queue.recv().await
    }
}

impl Stream for Updates {
    type Item = Update;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Update>> {
        self.queue.poll_recv(cx)
    }
}

impl Deref for Handle {
    type Target = Control;

    fn deref(&self) -> &Control {
        &self.control
    }
}
