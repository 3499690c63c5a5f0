//! `POST /v1/query`: runs a query from this node and streams its acks and
//! answers as they come (`beethoven query`).
//!
//! The body names the query and whom it is for:
//! `{"name": "uptime", "payload": "...", "base64": false, "nodes": ["a"],
//! "tags": ["role=db", "zone"], "timeout": "2s", "ack": true}` (all but
//! `name` optional; no `nodes` and no `tags`: every member, this one
//! included; `timeout`: the core's default, which grows with the cluster).
//! A name under the reserved `beethoven.` prefix (the agent's own queries),
//! a bad name, payload, filter or timeout is a 422 and a node running
//! queries too fast a 429, before anything is sent. Otherwise the answer is
//! NDJSON (`application/x-ndjson`), one line per item, each with `event` and
//! `ts`:
//!
//! | `event` | fields |
//! |---|---|
//! | `ack` | `from` (a member received the query; with `"ack": true` only) |
//! | `response` | `from`, `payload`, `base64` (a member's answer, once per member) |
//! | `done` | `expected` (matching members online at the send), `acked`, `responded`, `timed_out`: the last line |

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use beethoven_tokio::{NodeName, Query, QueryReply, TagQuery};
use futures_lite::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tracing::info;

use crate::api::{Api, error};
use crate::events::{Payload, line};
use crate::keys_cluster::refuse_reserved;
use crate::verbs::{body, refused};

/// `POST /v1/query` body (see the module's docs).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryBody {
    name: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    base64: bool,
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    timeout: Option<String>,
    #[serde(default)]
    ack: bool,
}

impl QueryBody {
    /// The query it asks for; a message saying what is wrong otherwise.
    fn query(self) -> Result<Query, String> {
        let payload = Payload {
            payload: self.payload,
            base64: self.base64,
        }
        .bytes()?;
        let mut query = Query::new(self.name, payload);
        for name in &self.nodes {
            let node =
                NodeName::new(name).map_err(|bad| format!("bad node name `{name}`: {bad}"))?;
            query = query.node(node);
        }
        for tag in &self.tags {
            let Ok(tag) = tag.parse::<TagQuery>();
            query = query.tag(tag);
        }
        if let Some(text) = &self.timeout {
            query = query.timeout(timeout(text)?);
        }
        if self.ack {
            query = query.request_ack();
        }
        Ok(query)
    }
}

/// A timeout as `humantime` writes it (`500ms`, `2s`).
pub(crate) fn timeout(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|bad| format!("bad timeout `{text}`: {bad} (e.g. \"500ms\", \"2s\")"))
}

/// `POST /v1/query`: see the module's docs.
pub(crate) async fn run_query(
    State(api): State<Api>,
    given: Result<Json<QueryBody>, JsonRejection>,
) -> Response {
    let given = match body(
        given,
        r#"{"name": "...", "payload": "...", "nodes": [...], "tags": ["key=value"], "timeout": "2s", "ack": false}"#,
    ) {
        Ok(given) => given,
        Err((status, message)) => return error(status, message),
    };
    let name = given.name.clone();
    if let Err(message) = refuse_reserved("query", &name) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, message);
    }
    let query = match given.query() {
        Ok(query) => query,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    let responses = match api.node.query(query).await {
        Ok(responses) => responses,
        Err(refusal) => return refused(&refusal),
    };
    info!(%name, "query sent over HTTP");
    let lines = responses.map(|reply| Ok::<_, Infallible>(reply_line(&reply)));
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// One item of a query's answer as its line.
fn reply_line(reply: &QueryReply) -> String {
    match reply {
        QueryReply::Ack { from } => line("ack", json!({ "from": from.as_str() })),
        QueryReply::Response { from, payload } => {
            let payload = Payload::of(payload);
            line(
                "response",
                json!({ "from": from.as_str(), "payload": payload.payload, "base64": payload.base64 }),
            )
        }
        QueryReply::Done(done) => line(
            "done",
            json!({
                "expected": done.expected,
                "acked": done.acked,
                "responded": done.responded,
                "timed_out": done.timed_out,
            }),
        ),
        // A kind of item this agent does not know yet: a line that says so.
        other => line("unknown", json!({ "item": format!("{other:?}") })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> QueryBody {
        serde_json::from_str(text).expect("a query body")
    }

    #[test]
    fn a_body_becomes_a_query_with_its_filter_timeout_and_ack() {
        let query = body(
            r#"{"name":"uptime","payload":"AP8=","base64":true,"nodes":["a"],"tags":["role=db","zone"],"timeout":"1500ms","ack":true}"#,
        )
        .query()
        .expect("valid");
        assert_eq!(query.name, "uptime");
        assert_eq!(query.payload, [0, 0xff]);
        assert_eq!(query.filter.nodes, [NodeName::new("a").expect("a name")]);
        assert_eq!(
            query.filter.tags,
            [TagQuery::key_value("role", "db"), TagQuery::key("zone")]
        );
        assert_eq!(query.timeout, Some(Duration::from_millis(1500)));
        assert!(query.request_ack);
        let plain = body(r#"{"name":"uptime"}"#).query().expect("valid");
        assert!(plain.filter.is_empty() && plain.timeout.is_none() && !plain.request_ack);
    }

    #[test]
    fn a_bad_timeout_node_name_or_base64_says_what_is_wrong() {
        let error = body(r#"{"name":"q","timeout":"soon"}"#)
            .query()
            .expect_err("bad timeout");
        assert!(error.contains("bad timeout `soon`"), "{error}");
        let error = body(r#"{"name":"q","nodes":[""]}"#)
            .query()
            .expect_err("bad name");
        assert!(error.contains("bad node name"), "{error}");
        let error = body(r#"{"name":"q","payload":"!","base64":true}"#)
            .query()
            .expect_err("bad base64");
        assert!(error.contains("base64"), "{error}");
    }
}
