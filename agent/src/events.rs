//! The node's events as JSON lines, for `GET /v1/events`, `beethoven agent
//! --events json` (stdout) and `beethoven monitor`.
//!
//! Every reader has a subscription of its own to the node's one event stream
//! ([`Handle::events_with_current`], or [`Handle::events`] without the current
//! state): the driver's bounded queue, in the node's order, with lag markers.
//! Each update becomes one JSON object with `event` and `ts` (RFC 3339, UTC,
//! milliseconds), the same lines for every reader:
//!
//! | `event` | fields |
//! |---|---|
//! | `started` | `name`, `addr`, `tags` (first line of `--events json` only) |
//! | `tracker` | `op` (`write` or `delete`), `new_row`, `old_row` (a row: `node`, `addr`, `status`, `health`, `incarnation`, `last_change`, `tags`; every change, each once) |
//! | `node_update` | `node`, `status` (another node went online or offline) |
//! | `tags` | `node`, `tags` (another node's tags changed; follows its `tracker` line) |
//! | `mode` | `mode` (`standalone` or `clustered`) |
//! | `joined` | `seed` (a seed answered the join) |
//! | `join_failed` | `attempts`, `refused` (no seed answered: standalone, re-probing the seeds slowly; `refused` lists `{seed, reason}` for each seed that said it could not open this node's packets: `key_mismatch`, `seal_required`, `no_keys`, `other_cluster`) |
//! | `name_conflict` | `node`, `addrs` (two live processes claim one name; once per conflict) |
//! | `name_lost` | `node`, `winner` (this process lost its name; it stops) |
//! | `leave_finished` | `spread` (the leave has spread, or `leave_timeout` passed) |
//! | `query` | `origin`, `origin_started`, `seq`, `name`, `payload`, `base64`, `deadline` (the origin's clock, RFC 3339 UTC ms): a query this node's filter picked (`beethoven query`), once per query; the agent's `query` handlers answer it |
//! | `user_event` | `origin`, `origin_started` (the origin process's start, Unix ms), `seq` (its place in that process's events, from 1), `name`, `payload`, `base64`, `lamport`, `sent_at` (the origin's clock, RFC 3339 UTC ms): a user event from another node (`beethoven event`), once per event, in each origin's order |
//! | `lagged` | `missed` (this reader fell behind: `missed` updates were dropped for it) |
//! | `stopped` | (the node stopped; the stream ends after it) |
//!
//! With the current state (the default), a reader first gets a `tracker` write
//! (`old_row: null`) for every row, each followed by the `tags` and
//! `node_update` lines it implies for another node, then the `mode`, and, if
//! the process lost its name before the reader came (a twin can lose it on the
//! join's reply, a millisecond after its start), its `name_conflict` and
//! `name_lost`: nothing is missed and nothing is told twice. The node never waits for a reader: one
//! that falls behind loses lines and is told how many (`lagged`).
//!
//! User events and queries named under the reserved `beethoven.` prefix (the
//! agent's own keys queries, whose payload may be a key) are not shown.
//!
//! A payload is bytes: `payload` is its text when it is UTF-8 (`base64`
//! false), else its standard base64 (`base64` true), the form
//! `POST /v1/event` and `POST /v1/query` take too ([`Payload`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use beethoven_tokio::{Handle, NodeName, QueryRequest, Update, Updates, UserEvent, timestamp};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::keys_cluster::is_reserved;

/// Every reader of the node's event lines: how many read now, and how many
/// lines they lost together (for `/metrics`).
#[derive(Debug)]
pub(crate) struct EventLines {
    node: Handle,
    readers: AtomicUsize,
    dropped: AtomicU64,
}

impl EventLines {
    pub(crate) fn new(node: Handle) -> Arc<Self> {
        Arc::new(Self {
            node,
            readers: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// A new reader: with `current`, its first lines are the node's state.
    pub(crate) fn reader(self: &Arc<Self>, current: bool) -> Lines {
        let updates = if current {
            self.node.events_with_current()
        } else {
            self.node.events()
        };
        self.readers.fetch_add(1, Ordering::SeqCst);
        Lines {
            updates,
            lines: Arc::clone(self),
            ended: false,
        }
    }

    /// The `started` line: this node as it started.
    pub(crate) fn started(&self) -> String {
        let node = &self.node;
        line(
            "started",
            json!({
                "name": node.name().as_str(),
                "addr": node.advertised_addr().to_string(),
                "tags": node.tags(),
            }),
        )
    }

    /// Lines lost by readers that fell behind, all together.
    pub(crate) fn dropped_lines(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every reader has taken the end of its stream (or gone), for
    /// at most `limit`: the process's exit would cut their last lines.
    pub(crate) async fn drained(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.readers.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// One reader's lines (see [`EventLines::reader`]).
#[derive(Debug)]
pub(crate) struct Lines {
    updates: Updates,
    lines: Arc<EventLines>,
    ended: bool,
}

impl Lines {
    /// The next line (with its newline); `stopped` once the node stopped, then `None`.
    pub(crate) async fn next(&mut self) -> Option<String> {
        if self.ended {
            return None;
        }
        loop {
            match self.updates.recv().await {
                Some(update) => {
                    if let Update::Lagged { missed } = update {
                        self.lines.dropped.fetch_add(missed, Ordering::Relaxed);
                    }
                    if let Some(text) = update_line(&self.lines.node, &update) {
                        return Some(text);
                    }
                }
                None => {
                    self.ended = true;
                    return Some(line("stopped", json!({})));
                }
            }
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.lines.readers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The line of one update; `None` for a kind this agent does not know yet.
fn update_line(node: &Handle, update: &Update) -> Option<String> {
    let fields = match update {
        Update::Tracker(change) => json!({
            "op": change.op,
            "new_row": change.new_row,
            "old_row": change.old_row,
        }),
        Update::Node {
            node: other,
            status,
        } => json!({"node": other.as_str(), "status": status.as_str()}),
        Update::Tags { node: other, tags } => json!({"node": other.as_str(), "tags": tags}),
        Update::Mode(mode) => json!({"mode": mode}),
        Update::Joined { seed } => json!({"seed": seed.to_string()}),
        Update::JoinFailed { attempts, refused } => {
            let refused: Vec<Value> = refused
                .iter()
                .map(|refusal| {
                    json!({"seed": refusal.seed.to_string(), "reason": refusal.reason.as_str()})
                })
                .collect();
            json!({"attempts": attempts, "refused": refused})
        }
        Update::NameConflict { node: name, addrs } => {
            json!({"node": name.as_str(), "addrs": addr_strings(*addrs)})
        }
        Update::NameLost { winner } => {
            json!({"node": node.name().as_str(), "winner": winner.to_string()})
        }
        Update::LeaveFinished { spread } => json!({"spread": spread}),
        // The agent's own (its keys queries, whose payload may be a key).
        Update::User(UserEvent { name, .. }) | Update::Query(QueryRequest { name, .. })
            if is_reserved(name) =>
        {
            return None;
        }
        Update::User(event) => user_event_fields(event),
        Update::Query(request) => {
            let mut fields = message_fields(
                &request.id.origin,
                request.id.started,
                request.id.seq,
                &request.name,
                &request.payload,
            );
            fields["deadline"] = timestamp(request.deadline).into();
            fields
        }
        Update::Lagged { missed } => json!({"missed": missed}),
        _ => return None,
    };
    Some(line(update.kind(), fields))
}

/// A user event's fields (see the module's table).
fn user_event_fields(event: &UserEvent) -> Value {
    let mut fields = message_fields(
        &event.id.origin,
        event.id.started,
        event.id.seq,
        &event.name,
        &event.payload,
    );
    fields["lamport"] = event.lamport.into();
    fields["sent_at"] = timestamp(event.sent_at).into();
    fields
}

/// What user events and queries both carry: which (origin, its process's
/// start, its place there), name and payload.
fn message_fields(origin: &NodeName, started: i64, seq: u64, name: &str, payload: &[u8]) -> Value {
    let payload = Payload::of(payload);
    json!({
        "origin": origin.as_str(),
        "origin_started": started,
        "seq": seq,
        "name": name,
        "payload": payload.payload,
        "base64": payload.base64,
    })
}

/// A payload's one JSON form: its text when the bytes are UTF-8, else their
/// standard base64 with `base64: true`. Event lines and query answers carry
/// it, and `POST /v1/event` and `POST /v1/query` take it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Payload {
    /// The text, or the base64 of the bytes.
    pub(crate) payload: String,
    /// Whether `payload` is base64.
    pub(crate) base64: bool,
}

impl Payload {
    /// The form of `bytes`: text when they are UTF-8.
    pub(crate) fn of(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Payload {
                payload: text.to_owned(),
                base64: false,
            },
            Err(_) => Payload {
                payload: BASE64_STANDARD.encode(bytes),
                base64: true,
            },
        }
    }

    /// The bytes; an error says why base64 did not decode.
    pub(crate) fn bytes(&self) -> Result<Vec<u8>, String> {
        if self.base64 {
            BASE64_STANDARD
                .decode(&self.payload)
                .map_err(|bad| format!("the payload is not standard base64: {bad}"))
        } else {
            Ok(self.payload.clone().into_bytes())
        }
    }
}

fn addr_strings(addrs: [SocketAddr; 2]) -> [String; 2] {
    addrs.map(|addr| addr.to_string())
}

/// One JSON line: `fields` with `event` and `ts`.
pub(crate) fn line(event: &str, mut fields: Value) -> String {
    let now = DateTime::<Utc>::from(SystemTime::now());
    if let Value::Object(map) = &mut fields {
        map.insert("event".into(), event.into());
        map.insert("ts".into(), timestamp(now).into());
    }
    format!("{fields}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_names_its_event_and_carries_a_millisecond_utc_time() {
        let text = line("lagged", json!({"missed": 3}));
        let value: Value = serde_json::from_str(&text).expect("one JSON object");
        assert_eq!(value["event"], "lagged");
        assert_eq!(value["missed"], 3);
        let ts = value["ts"].as_str().expect("a time");
        assert!(
            ts.ends_with('Z') && ts.len() == "2026-12-07T02:46:32.123Z".len(),
            "{ts}"
        );
    }

    #[test]
    fn a_utf8_payload_is_its_text_and_other_bytes_are_base64_both_read_back() {
        let text = Payload::of("v1.2 ✓".as_bytes());
        assert_eq!(text.payload, "v1.2 ✓");
        assert!(!text.base64);
        assert_eq!(text.bytes().expect("text"), "v1.2 ✓".as_bytes());
        let binary = Payload::of(&[0, 159, 146, 150]);
        assert_eq!(binary.payload, "AJ+Slg==");
        assert!(binary.base64);
        assert_eq!(binary.bytes().expect("base64"), [0, 159, 146, 150]);
        let bad = Payload {
            payload: "not base64!".to_owned(),
            base64: true,
        };
        assert!(bad.bytes().expect_err("bad").contains("base64"), "{bad:?}");
    }

    #[test]
    fn a_user_event_line_carries_its_id_name_payload_and_times() {
        let event = UserEvent {
            id: beethoven_tokio::UserEventId {
                origin: beethoven_tokio::NodeName::new("a").expect("a name"),
                started: 1_700_000_000_000,
                seq: 7,
            },
            name: "deploy".to_owned(),
            payload: b"v2".to_vec(),
            lamport: 12,
            sent_at: DateTime::from_timestamp_millis(1_700_000_001_234).expect("a time"),
        };
        let fields = user_event_fields(&event);
        assert_eq!(
            fields,
            json!({
                "origin": "a", "origin_started": 1_700_000_000_000_i64, "seq": 7,
                "name": "deploy", "payload": "v2", "base64": false, "lamport": 12,
                "sent_at": "2023-11-14T22:13:21.234Z",
            })
        );
    }
}
