//! This member's key endpoints (`/v1/keys`,
//! `/v1/keys/{install,use,remove,reload}`): the HTTP face of
//! [`ClusterKeys`](crate::keys_cluster::ClusterKeys), apart from it so that
//! the key logic imports nothing of the API that holds it.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::{Api, error};
use crate::keys::{Fingerprint, Secret};
use crate::keys_cluster::{Change, KeysError, KeysView};

fn answer(result: Result<KeysView, KeysError>) -> Response {
    match result {
        Ok(view) => Json(view).into_response(),
        Err(refused) => error(refused.status(), refused.to_string()),
    }
}

/// A JSON body, or the error that says what was expected.
fn body<T>(body: Result<Json<T>, JsonRejection>, example: &str) -> Result<T, KeysError> {
    body.map(|Json(value)| value).map_err(|rejection| {
        KeysError::BadBody(
            rejection.status(),
            format!("{}; expected e.g. {example}", rejection.body_text()),
        )
    })
}

/// `GET /v1/keys`: this member's key fingerprints.
pub(crate) async fn own_keys(State(api): State<Api>) -> Response {
    Json(api.keys.view(&api.node, false).await).into_response()
}

/// `POST /v1/keys/install` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InstallBody {
    key: String,
}

/// `POST /v1/keys/use` and `/v1/keys/remove` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FingerprintBody {
    fingerprint: Fingerprint,
}

/// `POST /v1/keys/install` with `{"key": "<64 hex>"}`: this member also opens with it.
pub(crate) async fn install(
    State(api): State<Api>,
    given: Result<Json<InstallBody>, JsonRejection>,
) -> Response {
    let given = match body(given, r#"{"key":"<64 hex digits>"}"#) {
        Ok(given) => given,
        Err(refused) => return answer(Err(refused)),
    };
    let secret = match Secret::from_hex(&given.key) {
        Ok(secret) => secret,
        Err(bad) => return answer(Err(bad.into())),
    };
    answer(api.keys.change(&api.node, Change::Install(secret)).await)
}

/// `POST /v1/keys/use` with `{"fingerprint": "..."}`: this member seals with it.
pub(crate) async fn use_key(
    State(api): State<Api>,
    given: Result<Json<FingerprintBody>, JsonRejection>,
) -> Response {
    by_fingerprint(&api, given, Change::Use).await
}

/// `POST /v1/keys/remove` with `{"fingerprint": "..."}`: this member drops it
/// (never its primary).
pub(crate) async fn remove(
    State(api): State<Api>,
    given: Result<Json<FingerprintBody>, JsonRejection>,
) -> Response {
    by_fingerprint(&api, given, Change::Remove).await
}

async fn by_fingerprint(
    api: &Api,
    given: Result<Json<FingerprintBody>, JsonRejection>,
    change: fn(Fingerprint) -> Change,
) -> Response {
    let result = match body(given, r#"{"fingerprint":"<16 hex digits>"}"#) {
        Ok(given) => api.keys.change(&api.node, change(given.fingerprint)).await,
        Err(refused) => Err(refused),
    };
    answer(result)
}

/// `POST /v1/keys/reload?force=true|false` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReloadQuery {
    force: Option<bool>,
}

/// `POST /v1/keys/reload[?force=true]`: re-read the key file.
pub(crate) async fn reload(
    State(api): State<Api>,
    query: Result<Query<ReloadQuery>, QueryRejection>,
) -> Response {
    let force = match query {
        Ok(Query(query)) => query.force.unwrap_or(false),
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    answer(api.keys.reload(&api.node, force).await)
}
