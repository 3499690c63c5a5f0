//! What a [`Handle`](crate::Handle) asks of the node's thread, and why it may refuse.

use std::fmt;
use std::net::SocketAddr;

use async_channel::Sender;
use beethoven_core::{
    JoinError, KeyRing, LeaveError, NewNodeError, NodeName, Seed, Tags, TagsError, TrackerRow,
};

use crate::router::{Interest, SubscriberId, Update};
use crate::runtime::BlockingWork;

/// A request for the node's thread, made by a [`Handle`](crate::Handle). Opaque: a
/// runtime only carries it from [`Driver::next_command`](crate::Driver::next_command)
/// to [`Driver::step`](crate::Driver::step).
#[derive(Debug)]
pub struct Command(pub(crate) CommandKind);

#[derive(Debug)]
pub(crate) enum CommandKind {
    NewNode {
        name: NodeName,
        addr: SocketAddr,
    },
    Restore(Vec<TrackerRow>),
    /// `ticket` orders joins and leaves (see `Handle::has_left`).
    Join {
        seeds: Vec<Seed>,
        ticket: u64,
    },
    Leave {
        ticket: u64,
    },
    SetTags(Tags),
    Subscribe {
        id: SubscriberId,
        queue: Sender<Update>,
        /// Reads the queue on a blocking thread (a callback); started only if the
        /// subscription is new.
        reader: Option<Reader>,
        /// What the subscriber hears.
        interest: Interest,
        /// Whether it first hears the current state (see
        /// [`Handle::subscribe_with_current`](crate::Handle::subscribe_with_current)).
        replay: bool,
    },
    Unsubscribe(SubscriberId),
    SetKeyRing(Option<KeyRing>),
    /// What the `host:port` seeds resolve to now (see `Driver::resolve_if_due`).
    SeedsResolved(Vec<SocketAddr>),
    Stop,
}

/// The loop that hands a callback its updates, to start on a blocking thread.
pub(crate) struct Reader(pub(crate) BlockingWork);

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reader")
    }
}

/// Why a command was refused. Nothing changed, and nothing was queued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The node's thread has stopped (shut down, or every handle was dropped).
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
    /// `set_tags` refused: the tags break a limit, which the error names.
    #[error(transparent)]
    Tags(#[from] TagsError),
    /// This node lost its name to the live process at `by`
    /// ([`Event::NameLost`](beethoven_core::Event::NameLost)): it takes no more
    /// commands but `stop` (and `shutdown`). Restart it under another name.
    #[error(
        "the name is taken by the process at {by}: this node lost it and takes no more commands"
    )]
    NameTaken {
        /// Where the process that kept the name listens.
        by: SocketAddr,
    },
}
