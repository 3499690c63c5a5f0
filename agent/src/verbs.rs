//! The operator's verbs over HTTP, beside the basics of `http.rs`:
//! `GET /v1/info`, `POST /v1/join`, `POST /v1/force-leave`, `PATCH /v1/tags`
//! (merge), `DELETE /v1/tags/{key}` and `POST /v1/event`. Each refusal is a 4xx with
//! `{"error": ...}` naming what to change.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use beethoven_tokio::{
    CommandError, Health, NodeName, NodeStatus, QueryError, Seed, SendEventError, Tags,
};
use serde::Deserialize;
use serde_json::json;
use tracing::info;

use crate::api::{Api, error};
use crate::events::Payload;
use crate::{keys_cluster, seed_names, tags};

/// A JSON body, or the 4xx (status and message) that says what was expected.
pub(crate) fn body<T>(
    body: Result<Json<T>, JsonRejection>,
    expected: &str,
) -> Result<T, (StatusCode, String)> {
    body.map(|Json(value)| value).map_err(|rejection| {
        (
            rejection.status(),
            format!("{}; expected {expected}", rejection.body_text()),
        )
    })
}

/// The node's refusal of a command, as an answer.
pub(crate) fn refused(refusal: &CommandError) -> Response {
    let status = match refusal {
        CommandError::Closed | CommandError::NameTaken { .. } => StatusCode::SERVICE_UNAVAILABLE,
        CommandError::ForceLeave(beethoven_tokio::ForceLeaveError::Unknown(_)) => {
            StatusCode::NOT_FOUND
        }
        CommandError::SendEvent(SendEventError::Busy) | CommandError::Query(QueryError::Busy) => {
            StatusCode::TOO_MANY_REQUESTS
        }
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error(status, refusal.to_string())
}

/// `GET /v1/info`: what `serf info` tells.
pub(crate) async fn info(State(api): State<Api>) -> Response {
    let node = &api.node;
    let rows = node.cluster_nodes();
    let own = rows.iter().find(|row| &row.node == node.name());
    let count = |keep: &dyn Fn(&beethoven_tokio::TrackerRow) -> bool| {
        rows.iter().filter(|row| keep(row)).count()
    };
    let health = |health: Health| count(&|row| row.health == health);
    // The ring in use, not the file: what the node seals and opens with.
    let keys = api.keys.count().await;
    let body = json!({
        "name": node.name().as_str(),
        "cluster": api.cluster,
        "addr": node.advertised_addr().to_string(),
        "bound": node.local_addr().to_string(),
        "incarnation": own.map(|row| row.incarnation),
        "mode": node.mode(),
        "members": {
            "total": rows.len(),
            "online": count(&|row| row.status == NodeStatus::Online),
            "offline": count(&|row| row.status == NodeStatus::Offline),
            "alive": health(Health::Alive),
            "suspect": health(Health::Suspect),
            "dead": health(Health::Dead),
            "left": health(Health::Left),
        },
        "tags": node.tags(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": Instant::now().duration_since(api.started).as_secs(),
        "encrypted": keys > 0,
        "keys": keys,
    });
    Json(body).into_response()
}

/// `POST /v1/join` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinBody {
    /// `ip:port`, `cidr:port` or `host:port`.
    seeds: Vec<String>,
}

/// `POST /v1/join` with `{"seeds": ["10.0.0.7:7946", "db.internal:7946"]}`:
/// joins (again) through these seeds; names are resolved now.
pub(crate) async fn join(
    State(api): State<Api>,
    given: Result<Json<JoinBody>, JsonRejection>,
) -> Response {
    let given = match body(given, r#"{"seeds": ["ip:port", ...]}"#) {
        Ok(given) => given,
        Err((status, message)) => return error(status, message),
    };
    if given.seeds.is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "no seed given");
    }
    let mut seeds = Vec::new();
    for text in &given.seeds {
        let Ok(seed) = text.trim().parse::<Seed>() else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("bad seed `{text}`: expected `ip:port`, `host:port` or `cidr:port`"),
            );
        };
        match seed.host_port() {
            Some(host) => match seed_names::lookup(&host).await {
                Ok(addrs) => seeds.extend(addrs.into_iter().map(Seed::Addr)),
                Err(reason) => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("seed `{host}` does not resolve: {reason}"),
                    );
                }
            },
            None => seeds.push(seed),
        }
    }
    match api.node.join(&seeds).await {
        Ok(()) => {
            info!(seeds = ?given.seeds, "joining over HTTP");
            Json(json!({ "joining": given.seeds })).into_response()
        }
        Err(refusal) => refused(&refusal),
    }
}

/// `POST /v1/force-leave` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForceLeaveBody {
    name: String,
    #[serde(default)]
    prune: bool,
}

/// `POST /v1/force-leave` with `{"name": "b", "prune": false}`: an offline
/// member is marked left (and with `prune` removed from every member's table,
/// where it stays out for `prune_retention` unless it comes back).
pub(crate) async fn force_leave(
    State(api): State<Api>,
    given: Result<Json<ForceLeaveBody>, JsonRejection>,
) -> Response {
    let given = match body(given, r#"{"name": "...", "prune": false}"#) {
        Ok(given) => given,
        Err((status, message)) => return error(status, message),
    };
    let name = match NodeName::new(&given.name) {
        Ok(name) => name,
        Err(bad) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("bad node name `{}`: {bad}", given.name),
            );
        }
    };
    match api.node.force_leave(name.clone(), given.prune).await {
        Ok(()) => {
            info!(node = %name, prune = given.prune, "member forced out over HTTP");
            Json(json!({ "left": name.as_str(), "pruned": given.prune })).into_response()
        }
        Err(refusal) => refused(&refusal),
    }
}

/// Sets this node's tags (`how`: replaced, merged, deleted) and answers with
/// them; the agent's own tags (`beethoven.*`) stay as the agent has them.
pub(crate) async fn apply_tags(api: &Api, tags: Tags, how: &str) -> Response {
    let tags = api.keys.with_reserved(&tags).await;
    match api.node.set_tags(tags.clone()).await {
        Ok(()) => {
            info!(%tags, how, "tags changed over HTTP");
            Json(keys_cluster::without_reserved(&tags)).into_response()
        }
        Err(CommandError::Tags(limit)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("bad tags: {limit}"),
        ),
        Err(refusal) => refused(&refusal),
    }
}

/// `PATCH /v1/tags` with a JSON object of strings: these tags are set, the
/// others kept.
pub(crate) async fn merge_tags(
    State(api): State<Api>,
    given: Result<Json<BTreeMap<String, String>>, JsonRejection>,
) -> Response {
    let given = match body(given, r#"a JSON object of strings, e.g. {"role":"db"}"#) {
        Ok(given) => given,
        Err((status, message)) => return error(status, message),
    };
    let mut merged: BTreeMap<String, String> = api
        .node
        .tags()
        .iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    merged.extend(given);
    match tags::from_map(merged) {
        Ok(tags) => apply_tags(&api, tags, "merged").await,
        Err(bad) => error(StatusCode::UNPROCESSABLE_ENTITY, bad.to_string()),
    }
}

/// `DELETE /v1/tags/{key}`: removes one tag; an absent key is a 404.
pub(crate) async fn delete_tag(State(api): State<Api>, Path(key): Path<String>) -> Response {
    let mut left: BTreeMap<String, String> = api
        .node
        .tags()
        .iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    if left.remove(&key).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no tag `{key}` on this node"),
        );
    }
    apply_tags(&api, Tags::from(left), "deleted").await
}

/// `POST /v1/event` body: the name, and the payload in its one JSON form
/// ([`Payload`]: text, or base64 with `"base64": true`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventBody {
    name: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    base64: bool,
}

/// `POST /v1/event` with `{"name": "deploy", "payload": "v2"}`: sends a user
/// event to every other live member. An empty or too long name, a payload
/// over the limit (422) or a node sending too fast (429) is refused before
/// anything is sent.
pub(crate) async fn send_event(
    State(api): State<Api>,
    given: Result<Json<EventBody>, JsonRejection>,
) -> Response {
    let given = match body(
        given,
        r#"{"name": "...", "payload": "...", "base64": false}"#,
    ) {
        Ok(given) => given,
        Err((status, message)) => return error(status, message),
    };
    if let Err(message) = crate::keys_cluster::refuse_reserved("event", &given.name) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, message);
    }
    let payload = Payload {
        payload: given.payload,
        base64: given.base64,
    };
    let payload = match payload.bytes() {
        Ok(payload) => payload,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    let size = payload.len();
    match api.node.send_event(given.name.clone(), payload).await {
        Ok(()) => {
            info!(name = %given.name, size, "user event sent over HTTP");
            Json(json!({ "sent": given.name, "payload_bytes": size })).into_response()
        }
        Err(refusal) => refused(&refusal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_sending_too_fast_is_told_to_slow_down_and_a_bad_event_to_change_it() {
        let busy = refused(&CommandError::SendEvent(SendEventError::Busy));
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        let empty = refused(&CommandError::SendEvent(SendEventError::EmptyName));
        assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let busy = refused(&CommandError::Query(QueryError::Busy));
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        let closed = refused(&CommandError::Closed);
        assert_eq!(closed.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
