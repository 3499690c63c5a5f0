//! Cluster-wide keys over queries, as serf's internal keyring queries:
//! `beethoven keys list|install|use|remove` asks its local agent once
//! (`GET /v1/keys/cluster`, `POST /v1/keys/cluster/{install,use,remove}`), and
//! that agent asks every member with a query of a reserved name:
//!
//! | query | payload | each member |
//! |---|---|---|
//! | `beethoven.keys.list` | none | answers its fingerprints |
//! | `beethoven.keys.install` | the key, 64 hex digits | writes it to its key file, then opens with it |
//! | `beethoven.keys.use` | a fingerprint | seals with that key |
//! | `beethoven.keys.remove` | a fingerprint | drops that key (never its primary) |
//!
//! Every member answers `{"ok": true|false, "changed": bool, "keys": "FP FP",
//! "error": "..."}`: its fingerprints after the change, the primary first, or
//! why it refused (with its fingerprints as they stay).
//!
//! The key travels in the install query's payload. What protects it is that
//! every packet, this query too, is sealed with the cluster's primary key; an
//! agent without keys, whose packets are not sealed, refuses to send one. The payload is never logged, and these queries are neither
//! shown on the event stream nor given to event handlers.
//!
//! A `use` or `remove` is checked first, unless forced, with a list query: it
//! is refused when an online member does not hold the key (`use`) or still
//! seals with it (`remove`). A member that does not answer the list is judged
//! by its `beethoven.keys` tag (the refusal says so); one without that tag is
//! unknown, which refuses the change too.
//!
//! A member of an older build has no handler for these queries and does not
//! answer: it is reported as "no answer", and the command fails. There is no
//! fallback over each member's HTTP API: that would send the operator's token
//! to addresses read from gossip. Such a member's key file is changed on its
//! host, then `beethoven reload-keys` there.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use beethoven_tokio::{Handle, NodeStatus, Query, QueryConfig, QueryReply, TrackerRow, Update};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::api::{Api, error};
use crate::keys::{Fingerprint, Secret};
use crate::keys_cluster::{self, Change, ClusterKeys, KeysError, KeysView, MemberKeys};
use crate::verbs::{body, refused};

/// What a keys query asks of every member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    List,
    Install,
    Use,
    Remove,
}

impl Verb {
    const ALL: [Verb; 4] = [Verb::List, Verb::Install, Verb::Use, Verb::Remove];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verb::List => "list",
            Verb::Install => "install",
            Verb::Use => "use",
            Verb::Remove => "remove",
        }
    }

    /// The query's reserved name.
    fn query_name(self) -> &'static str {
        match self {
            Verb::List => "beethoven.keys.list",
            Verb::Install => "beethoven.keys.install",
            Verb::Use => "beethoven.keys.use",
            Verb::Remove => "beethoven.keys.remove",
        }
    }

    fn of_query(name: &str) -> Option<Verb> {
        Self::ALL.into_iter().find(|verb| verb.query_name() == name)
    }

    /// A verb of `POST /v1/keys/cluster/{verb}` (a change: not `list`).
    fn of_path(text: &str) -> Option<Verb> {
        Self::ALL
            .into_iter()
            .find(|verb| *verb != Verb::List && verb.as_str() == text)
    }
}

/// The longest error a member puts in its answer, in bytes.
const ERROR_LEN: usize = 300;

/// A member's answer to a keys query: the response's payload, as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    changed: bool,
    /// Its fingerprints after the change, space-separated, the primary first
    /// (empty: it runs without keys).
    #[serde(default)]
    keys: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Answer {
    fn of(view: &KeysView, error: Option<String>) -> Self {
        let keys: Vec<String> = view.fingerprints.iter().map(ToString::to_string).collect();
        Answer {
            ok: error.is_none(),
            changed: view.changed,
            keys: keys.join(" "),
            error,
        }
    }

    /// The payload, within `limit` bytes: a long error is cut, and an answer
    /// that still does not fit says so instead.
    fn encode(&self, limit: usize) -> Vec<u8> {
        let mut answer = self.clone();
        if let Some(error) = &mut answer.error
            && error.len() > ERROR_LEN
        {
            let mut end = ERROR_LEN;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
            error.push('…');
        }
        let json = |answer: &Answer| {
            serde_json::to_vec(answer).expect("an answer of strings and booleans is always JSON")
        };
        let bytes = json(&answer);
        if bytes.len() <= limit {
            return bytes;
        }
        json(&Answer {
            ok: false,
            changed: answer.changed,
            keys: String::new(),
            error: Some(format!(
                "holds too many keys ({}) to list them in an answer of {limit} bytes",
                answer.keys.split(' ').count()
            )),
        })
    }
}

/// Answers every keys query that reaches this node (it is among the members
/// its own queries ask), one at a time, with a subscription of its own.
pub(crate) fn answer_queries(node: &Handle, keys: Arc<ClusterKeys>) {
    let mut updates = node.events();
    let node = node.clone();
    tokio::spawn(async move {
        let limit = QueryConfig::default().max_response_size;
        while let Some(update) = updates.recv().await {
            let Update::Query(request) = update else {
                continue;
            };
            // Another `beethoven.` name (a newer build's): not answered, as
            // an older build does not answer these.
            let Some(verb) = Verb::of_query(&request.name) else {
                continue;
            };
            let answer = answer(&keys, &node, verb, &request.payload).await;
            let origin = request.id.origin.as_str();
            if verb == Verb::List {
                debug!(origin, "keys list query answered");
            } else {
                info!(
                    origin,
                    verb = verb.as_str(),
                    ok = answer.ok,
                    changed = answer.changed,
                    error = answer.error.as_deref().unwrap_or(""),
                    "keys query answered"
                );
            }
            if let Err(refusal) = node.respond(request.token, answer.encode(limit)).await {
                warn!(origin, verb = verb.as_str(), %refusal, "keys query answer refused (too late?)");
            }
        }
    });
}

/// This member's answer to `verb` with `payload`; the change, if any, made.
async fn answer(keys: &ClusterKeys, node: &Handle, verb: Verb, payload: &[u8]) -> Answer {
    let bad = |what: &str| {
        KeysError::BadBody(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the query's payload is not {what}"),
        )
    };
    let text = std::str::from_utf8(payload).map(str::trim);
    let result = match verb {
        Verb::List => Ok(keys.view(node, false).await),
        Verb::Install => match text.map(Secret::from_hex) {
            Ok(Ok(secret)) => keys.change(node, Change::Install(secret)).await,
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(bad("a key")),
        },
        Verb::Use | Verb::Remove => match text.map(str::parse::<Fingerprint>) {
            Ok(Ok(key)) if verb == Verb::Use => keys.change(node, Change::Use(key)).await,
            Ok(Ok(key)) => keys.change(node, Change::Remove(key)).await,
            _ => Err(bad("a key fingerprint")),
        },
    };
    match result {
        Ok(view) => Answer::of(&view, None),
        Err(refusal) => Answer::of(&keys.view(node, false).await, Some(refusal.to_string())),
    }
}

/// How one member's part ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Ok,
    Failed,
    NoAnswer,
}

/// Where a member's fingerprints in a report come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    /// Its own answer.
    Answer,
    /// Its `beethoven.keys` tag: it did not answer.
    Tags,
    /// Neither.
    Unknown,
}

/// One member in a cluster-wide keys report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberReport {
    pub(crate) name: String,
    pub(crate) outcome: Outcome,
    /// Whether its keys changed.
    pub(crate) changed: bool,
    /// The key it seals with (after the change).
    pub(crate) primary: Option<Fingerprint>,
    /// Every key it holds, the primary first.
    pub(crate) fingerprints: Vec<Fingerprint>,
    pub(crate) source: Source,
    /// Why it failed.
    pub(crate) error: Option<String>,
}

impl MemberReport {
    /// An online member that did not answer, judged by its tag.
    fn unanswered(row: &TrackerRow) -> Self {
        let tag = MemberKeys::from_row(row);
        MemberReport {
            name: row.node.as_str().to_owned(),
            outcome: Outcome::NoAnswer,
            changed: false,
            primary: tag.as_ref().map(|keys| keys.primary.clone()),
            source: if tag.is_some() {
                Source::Tags
            } else {
                Source::Unknown
            },
            fingerprints: tag.map(|keys| keys.keys).unwrap_or_default(),
            error: None,
        }
    }

    fn answered(name: String, answer: Answer) -> Self {
        let keys = MemberKeys::from_tag(&name, &answer.keys);
        MemberReport {
            outcome: if answer.ok {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
            changed: answer.changed,
            primary: keys.as_ref().map(|keys| keys.primary.clone()),
            fingerprints: keys.map(|keys| keys.keys).unwrap_or_default(),
            source: Source::Answer,
            error: answer.error,
            name,
        }
    }

    /// What it holds, if known.
    pub(crate) fn keys(&self) -> Option<MemberKeys> {
        Some(MemberKeys {
            name: self.name.clone(),
            primary: self.primary.clone()?,
            keys: self.fingerprints.clone(),
        })
    }
}

/// The answer of `/v1/keys/cluster…`: every member online when the query
/// was sent, and any other that answered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) verb: String,
    /// The key installed, used or removed.
    pub(crate) key: Option<Fingerprint>,
    pub(crate) members: Vec<MemberReport>,
    pub(crate) online: usize,
    pub(crate) ok: usize,
    pub(crate) failed: usize,
    pub(crate) no_answer: usize,
}

impl Report {
    fn new(verb: Verb, key: Option<Fingerprint>, members: Vec<MemberReport>) -> Self {
        let count = |outcome| {
            members
                .iter()
                .filter(|member| member.outcome == outcome)
                .count()
        };
        Report {
            verb: verb.as_str().to_owned(),
            key,
            online: members.len(),
            ok: count(Outcome::Ok),
            failed: count(Outcome::Failed),
            no_answer: count(Outcome::NoAnswer),
            members,
        }
    }
}

/// Runs the keys query `verb` to every member and waits for its end.
async fn ask(
    node: &Handle,
    verb: Verb,
    payload: Vec<u8>,
    timeout: Option<Duration>,
) -> Result<Vec<MemberReport>, Response> {
    let online: Vec<TrackerRow> = node
        .cluster_nodes()
        .into_iter()
        .filter(|row| row.status == NodeStatus::Online)
        .collect();
    let mut query = Query::new(verb.query_name(), payload);
    if let Some(timeout) = timeout {
        query = query.timeout(timeout);
    }
    let mut replies = node
        .query(query)
        .await
        .map_err(|refusal| refused(&refusal))?;
    let mut members: BTreeMap<String, MemberReport> = online
        .iter()
        .map(|row| (row.node.as_str().to_owned(), MemberReport::unanswered(row)))
        .collect();
    // The stream ends after its last item, the query's end.
    while let Some(reply) = replies.recv().await {
        if let QueryReply::Response { from, payload } = reply {
            let answer = serde_json::from_slice(&payload).unwrap_or_else(|bad| Answer {
                error: Some(format!("an answer this agent cannot read: {bad}")),
                ..Answer::default()
            });
            let name = from.as_str().to_owned();
            members.insert(name.clone(), MemberReport::answered(name, answer));
        }
    }
    Ok(members.into_values().collect())
}

/// Why `verb` (`use` or `remove`) of `key` would cut a member off, if it would.
fn refusal(members: &[MemberReport], key: &Fingerprint, verb: Verb) -> Option<String> {
    let why = cut_off(members, key, verb)?;
    let judged: Vec<&str> = members
        .iter()
        .filter(|member| member.source == Source::Tags)
        .map(|member| member.name.as_str())
        .collect();
    if judged.is_empty() {
        return Some(why);
    }
    Some(format!(
        "{why} (did not answer, judged by their `{}` tag: {})",
        keys_cluster::KEYS_TAG,
        judged.join(", ")
    ))
}

fn cut_off(members: &[MemberReport], key: &Fingerprint, verb: Verb) -> Option<String> {
    let verb_name = verb.as_str();
    let unknown: Vec<&str> = members
        .iter()
        .filter(|member| member.keys().is_none())
        .map(|member| member.name.as_str())
        .collect();
    if !unknown.is_empty() {
        return Some(format!(
            "{verb_name} of key {key} refused: the keys of {} are unknown (no answer, and no `{}` tag); --force to go ahead",
            unknown.join(", "),
            keys_cluster::KEYS_TAG
        ));
    }
    let known: Vec<MemberKeys> = members.iter().filter_map(MemberReport::keys).collect();
    if verb == Verb::Use {
        let lacking: Vec<&str> = known
            .iter()
            .filter(|member| !member.keys.contains(key))
            .map(|member| member.name.as_str())
            .collect();
        if lacking.is_empty() {
            return None;
        }
        // What the cluster would be: the holders seal with the key.
        let planned: Vec<MemberKeys> = known
            .iter()
            .map(|member| {
                let mut member = member.clone();
                if member.keys.contains(key) {
                    member.primary = key.clone();
                }
                member
            })
            .collect();
        let cut = keys_cluster::cuts(&planned);
        return Some(format!(
            "use of key {key} refused: {} do not hold it ({}); install it first, or --force",
            lacking.join(", "),
            keys_cluster::describe(&cut)
        ));
    }
    let sealing: Vec<&str> = known
        .iter()
        .filter(|member| &member.primary == key)
        .map(|member| member.name.as_str())
        .collect();
    (!sealing.is_empty()).then(|| {
        format!(
            "remove of key {key} refused: it is the primary of {} (the others could not read them); `keys use` another key first",
            sealing.join(", ")
        )
    })
}

/// `GET /v1/keys/cluster[?timeout=2s]` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListParams {
    timeout: Option<String>,
}

/// `GET /v1/keys/cluster`: every member's fingerprints, over a list query.
pub(crate) async fn list(
    State(api): State<Api>,
    params: Result<UrlQuery<ListParams>, QueryRejection>,
) -> Response {
    let timeout = match params.map(|UrlQuery(params)| params.timeout) {
        Ok(text) => match parse_timeout(text.as_deref()) {
            Ok(timeout) => timeout,
            Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, message),
        },
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    match ask(&api.node, Verb::List, Vec::new(), timeout).await {
        Ok(members) => Json(Report::new(Verb::List, None, members)).into_response(),
        Err(response) => response,
    }
}

/// `POST /v1/keys/cluster/{install,use,remove}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeBody {
    /// The key to install (64 hex digits).
    key: Option<String>,
    /// The key to use or remove.
    fingerprint: Option<Fingerprint>,
    /// Go ahead even if a member would be cut off.
    #[serde(default)]
    force: bool,
    /// Each query's timeout (`2s`); the core's default otherwise.
    timeout: Option<String>,
}

fn parse_timeout(text: Option<&str>) -> Result<Option<Duration>, String> {
    text.map(crate::query::timeout).transpose()
}

/// `POST /v1/keys/cluster/{verb}`: installs, uses or removes a key on every
/// member, over a query; `use` and `remove` checked first unless forced.
pub(crate) async fn change(
    State(api): State<Api>,
    Path(verb): Path<String>,
    given: Result<Json<ChangeBody>, JsonRejection>,
) -> Response {
    let Some(verb) = Verb::of_path(&verb) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no cluster-wide key verb `{verb}`: install, use or remove"),
        );
    };
    let given = match body(
        given,
        r#"{"key": "<64 hex digits>"} (install) or {"fingerprint": "<16 hex digits>", "force": false} (use, remove), with "timeout": "2s" optional"#,
    ) {
        Ok(given) => given,
        Err((status, message)) => return error(status, message),
    };
    let timeout = match parse_timeout(given.timeout.as_deref()) {
        Ok(timeout) => timeout,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, message),
    };
    let (key, payload) = match (verb, given.key, given.fingerprint) {
        (Verb::Install, Some(text), None) => match Secret::from_hex(&text) {
            Ok(secret) => (secret.fingerprint(), secret.hex().into_bytes()),
            Err(bad) => {
                return error(StatusCode::UNPROCESSABLE_ENTITY, format!("bad key: {bad}"));
            }
        },
        (Verb::Use | Verb::Remove, None, Some(key)) => {
            let payload = key.to_string().into_bytes();
            (key, payload)
        }
        _ => {
            let wanted = if verb == Verb::Install {
                "`key` (and no `fingerprint`)"
            } else {
                "`fingerprint` (and no `key`)"
            };
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{} needs {wanted}", verb.as_str()),
            );
        }
    };
    // Without keys this agent's packets are not sealed: the key would
    // travel in the clear.
    if verb == Verb::Install && api.keys.count().await == 0 {
        return error(
            StatusCode::CONFLICT,
            format!(
                "{}; an install query from it would carry the key unsealed",
                KeysError::NoKeys
            ),
        );
    }
    if verb != Verb::Install && !given.force {
        let members = match ask(&api.node, Verb::List, Vec::new(), timeout).await {
            Ok(members) => members,
            Err(response) => return response,
        };
        if let Some(why) = refusal(&members, &key, verb) {
            info!(verb = verb.as_str(), %key, "cluster-wide key change refused: it would cut a member off");
            return error(StatusCode::CONFLICT, why);
        }
    }
    let members = match ask(&api.node, verb, payload, timeout).await {
        Ok(members) => members,
        Err(response) => return response,
    };
    let report = Report::new(verb, Some(key), members);
    info!(
        verb = verb.as_str(),
        key = %report.key.as_ref().map_or_else(String::new, ToString::to_string),
        forced = given.force,
        online = report.online,
        ok = report.ok,
        failed = report.failed,
        no_answer = report.no_answer,
        "cluster-wide key change asked of every member"
    );
    Json(report).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(digit: char) -> Fingerprint {
        digit.to_string().repeat(16).parse().expect("hex digits")
    }

    /// A member that answered with `keys` (primary first).
    fn member(name: &str, keys: &[char]) -> MemberReport {
        let keys: Vec<String> = keys.iter().map(|&digit| key(digit).to_string()).collect();
        MemberReport::answered(
            name.to_owned(),
            Answer {
                ok: true,
                keys: keys.join(" "),
                ..Answer::default()
            },
        )
    }

    fn row(name: &str, keys_tag: Option<&str>) -> TrackerRow {
        let tags = keys_tag.map_or_else(String::new, |keys| {
            format!(r#""{}":"{keys}""#, keys_cluster::KEYS_TAG)
        });
        let json = format!(
            r#"{{"node":"{name}","addr":"127.0.0.1:1","health":"alive","incarnation":1,"last_change":"2026-01-01T00:00:00.000Z","tags":{{{tags}}}}}"#
        );
        serde_json::from_str(&json).expect("a row in its one form")
    }

    #[test]
    fn use_needs_every_member_to_hold_the_key_and_remove_no_member_to_seal_with_it() {
        let members = [member("a", &['1', '2']), member("b", &['1'])];
        let refused = refusal(&members, &key('2'), Verb::Use).expect("b lacks it");
        assert!(
            refused.contains("b do not hold it (b could not read a)"),
            "{refused}"
        );
        assert_eq!(refusal(&members, &key('1'), Verb::Use), None);
        assert_eq!(refusal(&members, &key('2'), Verb::Remove), None);
        let refused = refusal(&members, &key('1'), Verb::Remove).expect("a primary");
        assert!(refused.contains("it is the primary of a, b"), "{refused}");
    }

    #[test]
    fn a_silent_member_is_judged_by_its_tag_and_one_without_a_tag_stops_the_change() {
        let tagged = format!("{}", key('1'));
        let members = [
            member("a", &['1', '2']),
            MemberReport::unanswered(&row("quiet", Some(&tagged))),
        ];
        let refused = refusal(&members, &key('2'), Verb::Use).expect("quiet lacks it");
        assert!(
            refused.contains("quiet do not hold it")
                && refused.contains("judged by their `beethoven.keys` tag: quiet"),
            "{refused}"
        );
        let silent = [
            member("a", &['1', '2']),
            MemberReport::unanswered(&row("silent", None)),
        ];
        for verb in [Verb::Use, Verb::Remove] {
            let refused = refusal(&silent, &key('2'), verb).expect("unknown keys");
            assert!(
                refused.contains("the keys of silent are unknown"),
                "{refused}"
            );
        }
    }

    #[test]
    fn an_answer_reads_back_and_a_long_one_is_cut_to_the_limit() {
        let answer = Answer {
            ok: false,
            changed: false,
            keys: format!("{} {}", key('a'), key('b')),
            error: Some("x".repeat(2000)),
        };
        let bytes = answer.encode(1024);
        assert!(bytes.len() <= 1024);
        let read: Answer = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(read.keys, answer.keys);
        assert!(read.error.is_some_and(|error| error.len() < 400));
        let many = Answer {
            ok: true,
            keys: vec![key('c').to_string(); 80].join(" "),
            ..Answer::default()
        };
        let read: Answer = serde_json::from_slice(&many.encode(1024)).expect("JSON");
        assert!(!read.ok, "an answer that does not fit is not ok");
        assert!(
            read.error
                .as_ref()
                .is_some_and(|error| error.contains("too many keys (80)")),
            "{read:?}"
        );
        let reported = MemberReport::answered("m".to_owned(), answer);
        assert_eq!(reported.primary, Some(key('a')));
        assert_eq!(reported.outcome, Outcome::Failed);
    }

    #[test]
    fn only_the_reserved_names_are_keys_queries() {
        for verb in Verb::ALL {
            assert_eq!(Verb::of_query(verb.query_name()), Some(verb));
            assert!(keys_cluster::is_reserved(verb.query_name()));
        }
        assert_eq!(Verb::of_query("keys.list"), None);
        assert_eq!(Verb::of_query("beethoven.keys.rotate"), None);
        assert_eq!(Verb::of_path("list"), None, "list is a GET");
        assert_eq!(Verb::of_path("use"), Some(Verb::Use));
    }
}
