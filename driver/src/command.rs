//! What a [`Handle`](crate::Handle) asks of the node's thread, the node's
//! answer, and why it may refuse.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_channel::Sender;
use beethoven_core::{KeyRing, NodeName, Query, QueryToken, Seed, Tags, TrackerRow};

use crate::error::CommandError;
use crate::query::QueryResponses;
use crate::router::{Interest, Outbox, SubscriberId};
use crate::runtime::BlockingWork;

/// A request for the node's thread, made by a [`Handle`](crate::Handle). Opaque: a
/// runtime only carries it from [`Driver::next_command`](crate::Driver::next_command)
/// to [`Driver::step`](crate::Driver::step).
#[derive(Debug)]
pub struct Command(pub(crate) CommandKind);

#[derive(Debug)]
pub(crate) enum CommandKind {
    /// A command the node decides on; its answer goes back through `answer`.
    Decide {
        order: Order,
        answer: Answer,
    },
    Subscribe {
        id: SubscriberId,
        queue: Outbox,
        /// Reads the queue on a blocking thread (a callback); started only if the
        /// subscription is new.
        reader: Option<Reader>,
        /// What the subscriber hears.
        interest: Interest,
        /// Whether it first hears the current state (see
        /// [`Handle::events_with_current`](crate::Handle::events_with_current)).
        replay: bool,
    },
    /// Runs a query; its stream, or the refusal, goes back through `answer`.
    Query {
        query: Query,
        answer: Sender<Result<QueryResponses, CommandError>>,
    },
    /// What the `host:port` seeds resolve to now (see `Driver::resolve_if_due`).
    SeedsResolved(Vec<SocketAddr>),
    /// A reader made room in its queue: the step sends lag markers that waited.
    Flush,
    Stop,
}

/// A command the node decides on, answered through a [`Reply`].
#[derive(Debug)]
pub(crate) enum Order {
    NewNode { name: NodeName, addr: SocketAddr },
    Restore(Vec<TrackerRow>),
    Join(Vec<Seed>),
    Leave,
    SetTags(Tags),
    SetKeyRing(Option<KeyRing>),
    ForceLeave { name: NodeName, prune: bool },
    Unsubscribe(SubscriberId),
    SendEvent { name: String, payload: Vec<u8> },
    Respond { token: QueryToken, payload: Vec<u8> },
}

/// Where the node's answer to one command goes.
#[derive(Debug)]
pub(crate) struct Answer(Sender<Result<(), CommandError>>);

impl Answer {
    /// Sends the node's decision; a caller that dropped its [`Reply`] is not
    /// waiting for it.
    pub(crate) fn send(self, decision: Result<(), CommandError>) {
        let _ = self.0.try_send(decision);
    }
}

/// The node's answer to one command of a [`Handle`](crate::Handle): a
/// [`Future`] of `Ok(())` once the node applied it (the getters then show its
/// effect), or the node's reason to refuse it (nothing changed then).
///
/// The command is queued when the `Handle` method returns, not when the reply is
/// awaited: a reply may be dropped, and the command is still applied (its
/// refusal is then logged at debug level only).
#[must_use = "the command is queued; await the reply to learn whether the node applied it"]
pub struct Reply(Pin<Box<dyn Future<Output = Result<(), CommandError>> + Send + 'static>>);

impl Reply {
    /// A reply, and where the node sends it.
    pub(crate) fn channel() -> (Answer, Reply) {
        let (sender, receiver) = async_channel::bounded(1);
        let reply = Reply(Box::pin(async move {
            // The node's thread ended before answering: it has shut down.
            receiver.recv().await.unwrap_or(Err(CommandError::Closed))
        }));
        (Answer(sender), reply)
    }

    /// A reply that is known already (the command could not be queued).
    pub(crate) fn ready(decision: Result<(), CommandError>) -> Reply {
        Reply(Box::pin(std::future::ready(decision)))
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reply")
    }
}

impl Future for Reply {
    type Output = Result<(), CommandError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// The loop that hands a callback its updates, to start on a blocking thread.
pub(crate) struct Reader(pub(crate) BlockingWork);

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reader")
    }
}
