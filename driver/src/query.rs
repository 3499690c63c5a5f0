//! Queries from the application's side: the stream of one query's acks and
//! answers ([`Handle::query`](crate::Handle::query)), and where the node's
//! thread sends them.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_channel::{Receiver, Sender};
use beethoven_core::{Event, NodeName, QueryDone, QueryId};
use futures_core::Stream;

use crate::error::CommandError;

/// One item of a running query's [`QueryResponses`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryReply {
    /// A member received the query (only when it asked for acks).
    Ack {
        /// The member.
        from: NodeName,
    },
    /// A member's answer. Once per member.
    Response {
        /// The member.
        from: NodeName,
        /// Its answer.
        payload: Vec<u8>,
    },
    /// The query ended (its timeout, or every matching member answered): the
    /// last item.
    Done(QueryDone),
}

/// A running query's acks and answers, as they come, ending with
/// [`QueryReply::Done`] (then the stream ends). Dropping it stops nothing:
/// the query runs to its end and its answers are dropped.
#[derive(Debug)]
pub struct QueryResponses {
    id: QueryId,
    receiver: Pin<Box<Receiver<QueryReply>>>,
}

impl QueryResponses {
    pub(crate) fn new(id: QueryId, receiver: Receiver<QueryReply>) -> Self {
        Self {
            id,
            receiver: Box::pin(receiver),
        }
    }

    /// Which query.
    pub fn id(&self) -> &QueryId {
        &self.id
    }

    /// The next ack or answer, or the end; `None` after the end (or once the
    /// node has stopped).
    pub async fn recv(&mut self) -> Option<QueryReply> {
        self.receiver.recv().await.ok()
    }

    /// Every remaining item, up to and including the end.
    pub async fn collect(mut self) -> Vec<QueryReply> {
        let mut replies = Vec::new();
        while let Some(reply) = self.recv().await {
            replies.push(reply);
        }
        replies
    }
}

impl Stream for QueryResponses {
    type Item = QueryReply;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<QueryReply>> {
        self.receiver.as_mut().poll_next(cx)
    }
}

/// The node's answer to [`Handle::query`](crate::Handle::query): a
/// [`Future`] of the query's [`QueryResponses`], or of the node's reason to
/// refuse it (nothing was sent then). The query is queued already; dropping
/// this does not cancel it.
#[must_use = "the query is queued; await it for its responses"]
pub struct PendingQuery(Pin<Box<dyn Future<Output = Result<QueryResponses, CommandError>> + Send>>);

impl PendingQuery {
    pub(crate) fn new(
        queued: Result<(), CommandError>,
        answer: Receiver<Result<QueryResponses, CommandError>>,
    ) -> Self {
        Self(Box::pin(async move {
            queued?;
            // The node's thread ended before answering: it has shut down.
            answer.recv().await.unwrap_or(Err(CommandError::Closed))
        }))
    }
}

impl fmt::Debug for PendingQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingQuery")
    }
}

impl Future for PendingQuery {
    type Output = Result<QueryResponses, CommandError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// Where each running query's replies go, on the node's thread.
#[derive(Debug, Default)]
pub(crate) struct QuerySinks(BTreeMap<QueryId, Sender<QueryReply>>);

impl QuerySinks {
    /// A new query's channel: the sink kept here, the stream for its caller.
    pub(crate) fn open(&mut self, id: QueryId) -> QueryResponses {
        let (sender, receiver) = async_channel::unbounded();
        self.0.insert(id.clone(), sender);
        QueryResponses::new(id, receiver)
    }

    /// Routes an event about one of this node's queries to its stream;
    /// gives any other event back.
    pub(crate) fn route(&mut self, event: Event) -> Option<Event> {
        let (id, reply) = match event {
            Event::QueryAck { id, from } => (id, QueryReply::Ack { from }),
            Event::QueryResponse { id, from, payload } => {
                (id, QueryReply::Response { from, payload })
            }
            Event::QueryDone(done) => (done.id.clone(), QueryReply::Done(done)),
            other => return Some(other),
        };
        let done = matches!(reply, QueryReply::Done(_));
        if let Some(sink) = self.0.get(&id) {
            // A caller that dropped its stream does not want the rest.
            let _ = sink.try_send(reply);
        }
        if done {
            // Closes the stream once its last item is read.
            self.0.remove(&id);
        }
        None
    }
}
