//! The HTTP API (off unless `--http` is given): members, health, Prometheus
//! metrics, tags (read, replaced, merged and deleted live), leave, keys (this
//! member's: list by fingerprint, install, use, remove, reload; see
//! [`keys_cluster`]), the operator's verbs (info, join, force-leave, tag merge
//! and delete, user events: [`verbs`]), queries ([`query`]), the event stream
//! (`/v1/events`, NDJSON: see [`events`](crate::events)), and the status page at `/`. Every error is a 4xx or 5xx with a JSON body `{"error": "..."}`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, Request};
use axum::extract::{Query, State};
use axum::http::Method;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use beethoven_tokio::{CommandError, LeaveError, NodeStatus, TrackerRow};
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use crate::api::{Api, error};
use crate::auth::Guard;
use crate::keys_cluster;
use crate::member_filter::MemberFilter;
use crate::{keys_http, keys_query, metrics, query, tags, verbs};

/// The routes.
pub(crate) fn router(api: Api, guard: Guard) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/v1/members", get(members))
        .route("/v1/health", get(health))
        .route(
            "/v1/tags",
            get(own_tags).put(set_tags).patch(verbs::merge_tags),
        )
        .route("/v1/tags/{key}", delete(verbs::delete_tag))
        .route("/v1/info", get(verbs::info))
        .route("/v1/join", post(verbs::join))
        .route("/v1/force-leave", post(verbs::force_leave))
        .route("/v1/event", post(verbs::send_event))
        .route("/v1/query", post(query::run_query))
        .route("/metrics", get(prometheus))
        .route("/v1/leave", post(leave))
        // Keys: this member's (`keys_cluster.rs`); `beethoven keys` calls every member.
        .route("/v1/keys", get(keys_http::own_keys))
        .route("/v1/keys/install", post(keys_http::install))
        .route("/v1/keys/use", post(keys_http::use_key))
        .route("/v1/keys/remove", post(keys_http::remove))
        .route("/v1/keys/reload", post(keys_http::reload))
        .route("/v1/keys/cluster", get(keys_query::list))
        .route("/v1/keys/cluster/{verb}", post(keys_query::change))
        .route("/v1/events", get(event_stream))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(guard, door))
        .with_state(api)
}

/// Every request passes here first (`auth.rs` has the rules). A refusal is
/// logged with the caller's address; so is every change let through.
async fn door(
    State(guard): State<Guard>,
    ConnectInfo(caller): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // The page itself carries no data: off loopback a browser cannot send the
    // token with a navigation, so the page takes it from its URL's fragment
    // (never sent to the agent) and sends it with every request it makes.
    let the_page = method == Method::GET && path == "/";
    if !the_page && let Err(refusal) = guard.check(&method, request.headers()) {
        warn!(%caller, %method, %path, reason = %refusal, "HTTP request refused");
        let status = if refusal.is_unauthorized() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        return error(status, refusal.to_string());
    }
    let change = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let response = next.run(request).await;
    if change {
        info!(%caller, %method, %path, status = response.status().as_u16(), "change over HTTP");
    }
    response
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /v1/members, /v1/health, /v1/info, /v1/tags, /v1/events, /metrics, PUT or PATCH /v1/tags, DELETE /v1/tags/KEY, POST /v1/join, /v1/force-leave, /v1/event, /v1/query, /v1/leave, GET /v1/keys, POST /v1/keys/install|use|remove|reload",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

async fn status_page() -> Html<&'static str> {
    Html(include_str!("status.html"))
}

/// `GET /v1/members?status=online|offline&health=alive|suspect|dead|left&tag=key[=value]&name=GLOB`,
/// `tag` repeatable (see [`MemberFilter`]).
async fn members(
    State(api): State<Api>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let Query(pairs) = match query {
        Ok(query) => query,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let filter = match MemberFilter::from_pairs(pairs) {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let rows: Vec<TrackerRow> = api
        .node
        .cluster_nodes()
        .into_iter()
        .filter(|row| filter.matches(row))
        .collect();
    Json(rows).into_response()
}

/// `GET /v1/events?snapshot=true|false`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Start with the current state (`tracker` writes, then the mode); default true.
    snapshot: Option<bool>,
}

/// `GET /v1/events`: the node's events as NDJSON (one JSON object per line,
/// `application/x-ndjson`), open until the node stops. A reader that falls
/// behind gets a `lagged` line instead of the lines it lost; the node never waits.
async fn event_stream(
    State(api): State<Api>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let lines = api.events.reader(query.snapshot.unwrap_or(true));
    let body = futures_lite::stream::unfold(lines, |mut lines| async move {
        let text = lines.next().await?;
        Some((Ok::<_, Infallible>(text), lines))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}

/// `GET /v1/tags`: this node's tags, but for the agent's own (`beethoven.*`).
async fn own_tags(State(api): State<Api>) -> Response {
    Json(keys_cluster::without_reserved(&api.node.tags())).into_response()
}

/// `PUT /v1/tags` with a JSON object of strings: replaces this node's tags.
async fn set_tags(
    State(api): State<Api>,
    body: Result<Json<BTreeMap<String, String>>, JsonRejection>,
) -> Response {
    let Json(map) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(
                rejection.status(),
                format!(
                    "{}; expected a JSON object of strings, e.g. {{\"role\":\"db\"}}",
                    rejection.body_text()
                ),
            );
        }
    };
    let tags = match tags::from_map(map) {
        Ok(tags) => tags,
        Err(bad) => return error(StatusCode::UNPROCESSABLE_ENTITY, bad.to_string()),
    };
    verbs::apply_tags(&api, tags, "replaced").await
}

async fn health(State(api): State<Api>) -> Response {
    let node = &api.node;
    let online = node
        .cluster_nodes()
        .iter()
        .filter(|row| row.status == NodeStatus::Online)
        .count();
    let running = node.is_running() && !node.has_left();
    let body = json!({
        "name": node.name().as_str(),
        "addr": node.advertised_addr().to_string(),
        "status": if running { "running" } else { "leaving" },
        "mode": node.mode(),
        "online": online,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let status = if running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn prometheus(State(api): State<Api>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics::render(&api.node, api.events.dropped_lines(), &api.handlers),
    )
        .into_response()
}

async fn leave(State(api): State<Api>) -> Response {
    match api.node.leave().await {
        Ok(()) => {
            // The agent's loop sees it and stops once the leave has spread.
            let _ = api.stop.try_send(());
            Json(json!({ "left": true, "name": api.node.name().as_str() })).into_response()
        }
        Err(CommandError::Leave(LeaveError::AlreadyLeft)) => {
            error(StatusCode::CONFLICT, "this node has left already")
        }
        Err(other) => error(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}
