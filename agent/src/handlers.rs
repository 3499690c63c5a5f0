//! Event handlers: programs the agent runs when something happens to another
//! member, a user event arrives or a query asks this node, like serf's
//! `-event-handler`.
//!
//! `--event-handler [FILTERS=]PROGRAM` (repeatable; `;`-separated in
//! `BEETHOVEN_EVENT_HANDLERS`) runs `PROGRAM` on every event the
//! comma-separated `FILTERS` name (every member event, user event and query
//! when none are given, as serf's handlers):
//!
//! | filter | when |
//! |---|---|
//! | `member-join` | another node went online |
//! | `member-leave` | another node went offline by leaving |
//! | `member-failed` | another node went offline, declared failed |
//! | `member-update` | another node's tags changed |
//! | `member-reap` | an offline node's row was forgotten (`--offline-retention`) |
//! | `user` | a user event arrived from another node (`beethoven event`) |
//! | `user:NAME` | a user event named `NAME` arrived |
//! | `query` | a query picked this node (`beethoven query`) |
//! | `query:NAME` | a query named `NAME` picked this node |
//!
//! The event is in the environment: `BEETHOVEN_EVENT` (`member-join`, ...,
//! `user`, `query`), `BEETHOVEN_SELF_NAME`, `BEETHOVEN_SELF_ADDR`, and
//! `BEETHOVEN_TAG_<KEY>` for each of this node's tags (the key upper-cased,
//! `-` and `.` as `_`). For a member event, the member is on stdin as one
//! line, tab-separated: name, address, status, health, tags
//! (`key=value,...`). For a user event, stdin is its payload, bytes as sent,
//! and the environment also holds `BEETHOVEN_USER_EVENT` (its name),
//! `BEETHOVEN_USER_LTIME` (its Lamport time), `BEETHOVEN_USER_ORIGIN` (the
//! node that sent it) and `BEETHOVEN_USER_SEQ` (its place in the origin
//! process's events). For a query, stdin is its payload, the environment
//! holds `BEETHOVEN_QUERY_NAME`, `BEETHOVEN_QUERY_ORIGIN`,
//! `BEETHOVEN_QUERY_SEQ` and `BEETHOVEN_QUERY_DEADLINE` (RFC 3339, the
//! origin's clock), and the handler's stdout, cut at the response size limit
//! (`queries.max_response_size`, 1024 bytes), is this node's answer when it
//! exits with status 0 (of several handlers of one query, the first to finish
//! answers; the others' answers are refused and logged).
//!
//! Each handler has a queue of its own: its runs happen one at a time, in the
//! order of the events; handlers do not wait for each other, and the node never
//! waits for any of them (a full queue drops the event, counted and logged). A
//! run that outlives `--event-handler-timeout` is killed with its whole process
//! group (`process.rs`). Its stdout and stderr are read up to
//! [`OUTPUT_CAP`](process::OUTPUT_CAP) bytes each (the rest is read and
//! discarded, so a flooding handler neither blocks nor grows the agent's
//! memory) and logged at debug, or stderr at warn when it fails.
//! User events and queries named under the reserved `beethoven.` prefix
//! (the agent's own keys queries) are never given to a handler.
//! A failing, hanging or missing handler is logged and counted
//! (`beethoven_handler_runs{outcome}` in `/metrics`), and never stops the agent.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use beethoven_tokio::{
    Handle, Health, NodeName, NodeStatus, Op, QueryConfig, QueryRequest, QueryToken, TrackerRow,
    Update, UserEvent, timestamp,
};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::error::AgentError;
use crate::keys_cluster::is_reserved;

mod process;

use process::{Ran, run};

/// The default longest run of a handler.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Events waiting for one handler; more are dropped and counted.
const QUEUE: usize = 256;

/// What happened to a member, as a handler's filter names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Join,
    Leave,
    Failed,
    Update,
    Reap,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Join,
        Kind::Leave,
        Kind::Failed,
        Kind::Update,
        Kind::Reap,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Join => "member-join",
            Kind::Leave => "member-leave",
            Kind::Failed => "member-failed",
            Kind::Update => "member-update",
            Kind::Reap => "member-reap",
        }
    }
}

/// What one filter of a handler names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Filter {
    /// One kind of member event.
    Member(Kind),
    /// User events: all of them, or those of one name.
    User(Option<String>),
    /// Queries: all of them, or those of one name.
    Query(Option<String>),
}

impl Filter {
    /// Every member event, user event and query: a handler given no filters.
    fn all() -> Vec<Filter> {
        Kind::ALL
            .into_iter()
            .map(Filter::Member)
            .chain([Filter::User(None), Filter::Query(None)])
            .collect()
    }

    /// `member-join`, ..., `user`, `user:NAME`, `query`, `query:NAME`.
    fn parse(text: &str) -> Option<Filter> {
        let (kind, name) = match text.split_once(':') {
            Some((_, "")) => return None,
            Some((kind, name)) => (kind, Some(name.to_owned())),
            None => (text, None),
        };
        match kind {
            "user" => Some(Filter::User(name)),
            "query" => Some(Filter::Query(name)),
            _ if name.is_none() => Kind::ALL
                .into_iter()
                .find(|member| member.as_str() == kind)
                .map(Filter::Member),
            _ => None,
        }
    }

    fn takes(&self, happening: &Happening) -> bool {
        match (self, happening) {
            (Filter::Member(kind), Happening::Member(happened, _)) => kind == happened,
            (Filter::User(name), Happening::User(event)) => {
                name.as_ref().is_none_or(|name| *name == event.name)
            }
            (Filter::Query(name), Happening::Query(query)) => {
                name.as_ref().is_none_or(|name| *name == query.name)
            }
            _ => false,
        }
    }
}

/// One `--event-handler`: which events, and what to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HandlerSpec {
    filters: Vec<Filter>,
    program: PathBuf,
}

impl FromStr for HandlerSpec {
    type Err = String;

    /// `PROGRAM`, or `FILTER[,FILTER...]=PROGRAM`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (filters, program) = match text.split_once('=') {
            Some((filters, program)) => {
                let filters = filters
                    .split(',')
                    .map(|name| {
                        let name = name.trim();
                        Filter::parse(name).ok_or_else(|| {
                            format!(
                                "unknown event kind `{name}` in `{text}`: use {}",
                                filter_list()
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (filters, program)
            }
            None => (Filter::all(), text),
        };
        if program.trim().is_empty() {
            return Err(format!("no program in `{text}`: write [FILTERS=]PROGRAM"));
        }
        Ok(HandlerSpec {
            filters,
            program: PathBuf::from(program.trim()),
        })
    }
}

fn filter_list() -> String {
    let mut names = Kind::ALL.map(Kind::as_str).to_vec();
    names.extend(["user", "user:NAME", "query", "query:NAME"]);
    names.join(", ")
}

impl HandlerSpec {
    fn takes(&self, happening: &Happening) -> bool {
        self.filters.iter().any(|filter| filter.takes(happening))
    }

    /// Refuses a program that is missing, not a file, or not executable:
    /// found now, at start, rather than at the first event.
    pub(crate) fn check(&self) -> Result<(), AgentError> {
        let refuse = |reason: String| AgentError::BadHandler {
            program: self.program.clone(),
            reason,
        };
        let meta = std::fs::metadata(&self.program).map_err(|error| refuse(error.to_string()))?;
        if !meta.is_file() {
            return Err(refuse("not a file".to_owned()));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(refuse(format!(
                "not executable (chmod +x {})",
                self.program.display()
            )));
        }
        Ok(())
    }
}

/// How handler runs ended, all handlers together (for `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct HandlerCounts {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) not_started: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl HandlerCounts {
    /// `(outcome label, count)` of every outcome.
    pub(crate) fn outcomes(&self) -> [(&'static str, u64); 5] {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        [
            ("ok", read(&self.ok)),
            ("failed", read(&self.failed)),
            ("timed_out", read(&self.timed_out)),
            ("not_started", read(&self.not_started)),
            ("dropped", read(&self.dropped)),
        ]
    }
}

/// What a handler can be run on.
#[derive(Clone, Debug)]
enum Happening {
    /// Something happened to another member: what, and its row.
    Member(Kind, TrackerRow),
    /// A user event arrived.
    User(UserEvent),
    /// A query picked this node.
    Query(QueryRequest),
}

/// One event for one handler: its name for the logs, its environment and
/// stdin, and for a query what answers it.
#[derive(Clone, Debug)]
struct Invocation {
    event: String,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
    answer: Option<QueryToken>,
}

/// Starts the handlers: one task reading the node's events, and one task per
/// handler running its queue.
pub(crate) fn start(
    node: &Handle,
    specs: Vec<HandlerSpec>,
    timeout: Duration,
    counts: Arc<HandlerCounts>,
) {
    if specs.is_empty() {
        return;
    }
    let mut queues = Vec::new();
    for spec in specs {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(work(
            node.clone(),
            spec.program.clone(),
            receiver,
            timeout,
            Arc::clone(&counts),
        ));
        queues.push((spec, sender));
    }
    // With the current state: members online now are joins too, as serf tells
    // a new agent of every member.
    let mut updates = node.events_with_current();
    let node = node.clone();
    tokio::spawn(async move {
        let mut seen = Seen::default();
        while let Some(update) = updates.recv().await {
            let Some(happening) = seen.happened(&node, update) else {
                continue;
            };
            let invocation = invocation(&node, &happening);
            for (spec, queue) in &queues {
                if spec.takes(&happening) && queue.try_send(invocation.clone()).is_err() {
                    counts.dropped.fetch_add(1, Ordering::Relaxed);
                    warn!(
                        program = %spec.program.display(),
                        event = invocation.event,
                        "event handler queue full: event dropped for this handler"
                    );
                }
            }
        }
    });
}

/// What the handlers' reader has seen: the latest row of every node, and
/// whether the latest write was a node's first sighting.
#[derive(Debug, Default)]
struct Seen {
    rows: HashMap<NodeName, TrackerRow>,
    first_sighting: bool,
}

impl Seen {
    /// The handler event an update is.
    fn happened(&mut self, node: &Handle, update: Update) -> Option<Happening> {
        match update {
            Update::Tracker(change) => {
                let row = change.new_row;
                if change.op == Op::Delete {
                    self.rows.remove(&row.node);
                    return (row.node != *node.name())
                        .then_some(Happening::Member(Kind::Reap, row));
                }
                self.first_sighting = change.old_row.is_none();
                self.rows.insert(row.node.clone(), row);
                None
            }
            Update::Node {
                node: other,
                status,
            } => {
                let row = self.rows.get(&other)?.clone();
                let kind = match (status, row.health) {
                    (NodeStatus::Online, _) => Kind::Join,
                    (_, Health::Left) => Kind::Leave,
                    _ => Kind::Failed,
                };
                Some(Happening::Member(kind, row))
            }
            // A new member's first tags come with its join, not as an update
            // (the tags line follows the row's line that says so).
            Update::Tags { node: other, .. } if !self.first_sighting => Some(Happening::Member(
                Kind::Update,
                self.rows.get(&other)?.clone(),
            )),
            // The reserved names are the agent's own (its keys queries, whose
            // payload may be a key): never given to a handler.
            Update::User(event) if !is_reserved(&event.name) => Some(Happening::User(event)),
            Update::Query(request) if !is_reserved(&request.name) => {
                Some(Happening::Query(request))
            }
            _ => None,
        }
    }
}

fn invocation(node: &Handle, happening: &Happening) -> Invocation {
    let (event, mut env, stdin) = match happening {
        Happening::Member(kind, row) => {
            let line = format!(
                "{}\t{}\t{}\t{}\t{}\n",
                row.node,
                row.addr,
                row.status.as_str(),
                row.health.as_str(),
                row.tags
            );
            let kind = kind.as_str();
            (
                kind.to_owned(),
                vec![event_variable(kind)],
                line.into_bytes(),
            )
        }
        Happening::User(user) => (
            format!("user:{}", user.name),
            user_variables(user),
            user.payload.clone(),
        ),
        Happening::Query(query) => (
            format!("query:{}", query.name),
            query_variables(query),
            query.payload.clone(),
        ),
    };
    let answer = match happening {
        Happening::Query(query) => Some(query.token),
        _ => None,
    };
    env.push(("BEETHOVEN_SELF_NAME".to_owned(), node.name().to_string()));
    env.push((
        "BEETHOVEN_SELF_ADDR".to_owned(),
        node.advertised_addr().to_string(),
    ));
    for (key, value) in node.tags().iter() {
        env.push((tag_variable(key), value.to_owned()));
    }
    Invocation {
        event,
        env,
        stdin,
        answer,
    }
}

fn event_variable(kind: &str) -> (String, String) {
    ("BEETHOVEN_EVENT".to_owned(), kind.to_owned())
}

/// A user event's variables (serf's `SERF_USER_EVENT`, `SERF_USER_LTIME`).
fn user_variables(user: &UserEvent) -> Vec<(String, String)> {
    vec![
        event_variable("user"),
        ("BEETHOVEN_USER_EVENT".to_owned(), user.name.clone()),
        ("BEETHOVEN_USER_LTIME".to_owned(), user.lamport.to_string()),
        (
            "BEETHOVEN_USER_ORIGIN".to_owned(),
            user.id.origin.to_string(),
        ),
        ("BEETHOVEN_USER_SEQ".to_owned(), user.id.seq.to_string()),
    ]
}

/// A query's variables (serf's `SERF_QUERY_NAME`).
fn query_variables(query: &QueryRequest) -> Vec<(String, String)> {
    vec![
        event_variable("query"),
        ("BEETHOVEN_QUERY_NAME".to_owned(), query.name.clone()),
        (
            "BEETHOVEN_QUERY_ORIGIN".to_owned(),
            query.id.origin.to_string(),
        ),
        ("BEETHOVEN_QUERY_SEQ".to_owned(), query.id.seq.to_string()),
        (
            "BEETHOVEN_QUERY_DEADLINE".to_owned(),
            timestamp(query.deadline),
        ),
    ]
}

/// `BEETHOVEN_TAG_<KEY>`: the key upper-cased, anything but letters, digits
/// and `_` as `_`.
fn tag_variable(key: &str) -> String {
    let key: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("BEETHOVEN_TAG_{key}")
}

/// One handler's queue, run in order.
async fn work(
    node: Handle,
    program: PathBuf,
    mut queue: mpsc::Receiver<Invocation>,
    timeout: Duration,
    counts: Arc<HandlerCounts>,
) {
    while let Some(invocation) = queue.recv().await {
        let event = invocation.event.as_str();
        let counter = match run(&program, &invocation, timeout).await {
            Ok(Ran::Exited(status, output)) if status.success() => {
                debug!(program = %program.display(), event, stdout = %output.stdout, stderr = %output.stderr, "event handler ran");
                if let Some(token) = invocation.answer {
                    answer(&node, token, &output.stdout.bytes, &program, event).await;
                }
                &counts.ok
            }
            Ok(Ran::Exited(status, output)) => {
                warn!(program = %program.display(), event, %status, stderr = %output.stderr, "event handler failed");
                &counts.failed
            }
            Ok(Ran::TimedOut(output)) => {
                warn!(program = %program.display(), event, timeout = ?timeout, stderr = %output.stderr, "event handler timed out: killed with its process group");
                &counts.timed_out
            }
            Err(error) => {
                warn!(program = %program.display(), event, %error, "event handler could not be started");
                &counts.not_started
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Answers a query with a handler's stdout, cut at the response size limit.
async fn answer(node: &Handle, token: QueryToken, stdout: &[u8], program: &Path, event: &str) {
    let limit = QueryConfig::default().max_response_size;
    let response = &stdout[..stdout.len().min(limit)];
    if response.len() < stdout.len() {
        warn!(program = %program.display(), event, printed = stdout.len(), limit, "query handler printed more than a response holds: its answer is cut");
    }
    match node.respond(token, response.to_vec()).await {
        Ok(()) => {
            debug!(program = %program.display(), event, bytes = response.len(), "query answered")
        }
        Err(refusal) => {
            warn!(program = %program.display(), event, %refusal, "query answer refused (answered by another handler, or too late)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_without_kinds_takes_every_kind_and_one_with_kinds_only_those() {
        let all: HandlerSpec = "/bin/handler".parse().expect("valid");
        assert_eq!(all.filters, Filter::all());
        assert_eq!(all.program, PathBuf::from("/bin/handler"));
        let some: HandlerSpec = "member-join, member-failed=/bin/h".parse().expect("valid");
        assert_eq!(
            some.filters,
            vec![Filter::Member(Kind::Join), Filter::Member(Kind::Failed)]
        );
    }

    #[test]
    fn an_unknown_kind_or_a_missing_program_is_an_error_that_says_what_to_write() {
        let error = "member-joined=/bin/h"
            .parse::<HandlerSpec>()
            .expect_err("unknown kind");
        assert!(
            error.contains("member-joined") && error.contains("member-join,"),
            "{error}"
        );
        let error = "member-join="
            .parse::<HandlerSpec>()
            .expect_err("no program");
        assert!(error.contains("no program"), "{error}");
    }

    #[test]
    fn tag_keys_become_variable_names() {
        assert_eq!(tag_variable("role"), "BEETHOVEN_TAG_ROLE");
        assert_eq!(tag_variable("dc.zone-1"), "BEETHOVEN_TAG_DC_ZONE_1");
    }

    #[test]
    fn a_missing_or_unexecutable_program_is_refused_naming_it() {
        let dir = std::env::temp_dir().join(format!("beethoven-handlers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let script = dir.join("plain.sh");
        std::fs::write(&script, "#!/bin/sh\n").expect("write");
        let spec: HandlerSpec = script.to_str().expect("utf-8").parse().expect("valid");
        let error = spec.check().expect_err("not executable").to_string();
        assert!(
            error.contains("plain.sh") && error.contains("not executable"),
            "{error}"
        );
        let missing: HandlerSpec = dir
            .join("missing.sh")
            .to_str()
            .expect("utf-8")
            .parse()
            .expect("valid");
        let error = missing.check().expect_err("missing").to_string();
        assert!(error.contains("missing.sh"), "{error}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    pub(super) fn user_event(name: &str, payload: &[u8]) -> UserEvent {
        UserEvent {
            id: beethoven_tokio::UserEventId {
                origin: NodeName::new("origin").expect("a name"),
                started: 1,
                seq: 4,
            },
            name: name.to_owned(),
            payload: payload.to_vec(),
            lamport: 9,
            sent_at: chrono::DateTime::from_timestamp_millis(0).expect("a time"),
        }
    }

    #[test]
    fn user_filters_take_every_user_event_or_those_of_their_name_and_no_member_event() {
        let spec: HandlerSpec = "user:deploy,member-join=/bin/h".parse().expect("valid");
        assert!(spec.takes(&Happening::User(user_event("deploy", b""))));
        assert!(!spec.takes(&Happening::User(user_event("restart", b""))));
        let every: HandlerSpec = "user=/bin/h".parse().expect("valid");
        assert!(every.takes(&Happening::User(user_event("restart", b""))));
        let row: TrackerRow = serde_json::from_str(
            r#"{"node":"b","addr":"127.0.0.1:1","health":"alive","incarnation":1,"last_change":"2026-01-01T00:00:00.000Z","tags":{}}"#,
        )
        .expect("a row");
        assert!(!every.takes(&Happening::Member(Kind::Join, row.clone())));
        assert!(spec.takes(&Happening::Member(Kind::Join, row)));
        let all: HandlerSpec = "/bin/h".parse().expect("valid");
        assert!(all.takes(&Happening::User(user_event("any", b""))));
        let error = "user:=/bin/h".parse::<HandlerSpec>().expect_err("no name");
        assert!(error.contains("user:NAME"), "{error}");
        let error = "member-join:x=/bin/h"
            .parse::<HandlerSpec>()
            .expect_err("members have no names");
        assert!(error.contains("member-join:x"), "{error}");
    }
}
