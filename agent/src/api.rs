//! What every HTTP handler shares: the agent's state ([`Api`]) and the one
//! form of an error answer. Below the handlers, which import it, and the
//! router (`http.rs`), which imports them.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use beethoven_tokio::Handle;
use serde_json::json;
use tokio::sync::mpsc;

use crate::events::EventLines;
use crate::handlers::HandlerCounts;
use crate::keys_cluster::ClusterKeys;

/// What the handlers share.
#[derive(Clone, Debug)]
pub(crate) struct Api {
    pub(crate) node: Handle,
    /// The key ring, its file, and the tags that publish them.
    pub(crate) keys: Arc<ClusterKeys>,
    /// Tells the agent to stop (after a leave asked over HTTP).
    pub(crate) stop: mpsc::Sender<()>,
    /// The node's event lines, for `/v1/events`.
    pub(crate) events: Arc<EventLines>,
    /// The cluster's name, for `/v1/info`.
    pub(crate) cluster: String,
    /// When the agent started, for `/v1/info`'s uptime.
    pub(crate) started: std::time::Instant,
    /// How the event handlers' runs ended, for `/metrics`.
    pub(crate) handlers: Arc<HandlerCounts>,
}

/// An error answer: `status` with `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}
