//! Why a command was refused: the one error of every command a handle sends.

use std::net::SocketAddr;

use beethoven_core::{
    ForceLeaveError, JoinError, LeaveError, NameTaken, NewNodeError, QueryError, RespondError,
    SendEventError, SetTagsError, TagsError,
};
/// Why a command was refused. Nothing changed.
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
    /// `force_leave` refused: an unknown or online member, or this node itself.
    #[error(transparent)]
    ForceLeave(#[from] ForceLeaveError),
    /// `set_tags` refused: the tags break a limit, which the error names.
    #[error(transparent)]
    Tags(#[from] TagsError),
    /// `set_tags` refused for a reason other than a broken limit.
    #[error(transparent)]
    SetTags(SetTagsError),
    /// `send_event` refused: a bad name or payload, or the node sends too fast.
    #[error(transparent)]
    SendEvent(SendEventError),
    /// `query` refused: a bad name, payload, timeout or filter, or the node
    /// runs queries too fast.
    #[error(transparent)]
    Query(QueryError),
    /// `respond` refused: an unknown, answered or expired token, or a payload
    /// too large.
    #[error(transparent)]
    Respond(RespondError),
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

impl From<NameTaken> for CommandError {
    fn from(NameTaken { by }: NameTaken) -> Self {
        CommandError::NameTaken { by }
    }
}

impl From<SendEventError> for CommandError {
    fn from(error: SendEventError) -> Self {
        match error {
            SendEventError::NameTaken(taken) => taken.into(),
            other => CommandError::SendEvent(other),
        }
    }
}

impl From<QueryError> for CommandError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::NameTaken(taken) => taken.into(),
            other => CommandError::Query(other),
        }
    }
}

impl From<RespondError> for CommandError {
    fn from(error: RespondError) -> Self {
        match error {
            RespondError::NameTaken(taken) => taken.into(),
            other => CommandError::Respond(other),
        }
    }
}

impl From<SetTagsError> for CommandError {
    fn from(error: SetTagsError) -> Self {
        match error {
            SetTagsError::Invalid(limit) => CommandError::Tags(limit),
            SetTagsError::NameTaken(taken) => taken.into(),
            other => CommandError::SetTags(other),
        }
    }
}
