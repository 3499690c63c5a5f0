//! The node's events as JSON lines, for `GET /v1/events`, `beethoven agent
//! --events json` (stdout) and `beethoven monitor`.
//!
//! One task ([`follow`]) reads the node's subscriptions and its published table
//! (through the driver's [`TableMirror`]), turns every change into one JSON
//! object with `event` and `ts`, and hands it to a broadcast channel. The events
//! and their fields:
//!
//! | `event` | fields |
//! |---|---|
//! | `started` | `name`, `addr`, `tags` |
//! | `tracker` | `op` (`write` or `delete`), `new_row`, `old_row` (a row: `node`, `addr`, `status`, `health`, `incarnation`, `last_change`, `tags`) |
//! | `node_update` | `node`, `status` (another node went online or offline; first one `online` per node online when the agent's stream began: `Handle::subscribe_with_current`) |
//! | `mode` | `mode` (`standalone` or `clustered`) |
//! | `tags` | `node`, `tags` (another node's tags changed; first the tags held when the stream began) |
//! | `name_conflict` | `node`, `addrs` (two live processes claim one name; once per conflict) |
//! | `name_lost` | `node`, `winner` (this process lost its name; it stops) |
//! | `lagged` | `missed` (this reader fell behind: `missed` lines were dropped for it; or the stream's own subscription did, and the `tracker` lines after it catch up) |
//! | `stopped` | (the node stopped; the stream ends after it) |
//!
//! A node going offline gives a `node_update` and a `tracker` line, in either
//! order (the subscription and the published table are two sources).
//!
//! The node never waits for a reader: the channel is bounded, and a reader that
//! falls behind loses the oldest lines and is told how many (`lagged`). At exit
//! the agent waits until its readers took the last line, at most a few seconds
//! (see `run.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use beethoven_tokio::{Handle, NodeName, TableChange, TableMirror, TrackerRow, Update};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::metrics::label;

/// How many lines a reader may fall behind before it loses some.
pub(crate) const READER_BACKLOG: usize = 1024;

/// One item of the stream: a JSON line (with its newline), or its end.
#[derive(Clone, Debug)]
pub(crate) enum Item {
    Line(Arc<str>),
    End,
}

/// The node's event lines, for any number of readers.
#[derive(Debug)]
pub(crate) struct EventHub {
    /// The table as last reported and the channel, under one lock: a reader that
    /// subscribes gets the table as of its first line, nothing older after it.
    state: Mutex<HubState>,
    /// Lines lost by readers that fell behind, all together (for `/metrics`).
    dropped: AtomicU64,
}

#[derive(Debug)]
struct HubState {
    mirror: TableMirror,
    sender: broadcast::Sender<Item>,
    own_conflict: OwnConflict,
    name_lost_reported: bool,
}

/// This node's own name conflict reaches the hub twice: as the subscription's
/// update, and as the loss in the published table, in either order. It is
/// reported once, and always before `name_lost`.
#[derive(Debug, Default)]
struct OwnConflict {
    reported: bool,
    /// Reported from the table before the update came: the update is not news.
    ahead: bool,
}

impl OwnConflict {
    /// The subscription's conflict update about the own name came: whether to report it.
    fn update_came(&mut self) -> bool {
        if std::mem::take(&mut self.ahead) {
            return false;
        }
        self.reported = true;
        true
    }

    /// The table shows the name lost: whether a conflict line must go first.
    fn loss_seen(&mut self) -> bool {
        if self.reported {
            return false;
        }
        self.reported = true;
        self.ahead = true;
        true
    }
}

/// What a new reader gets: the current table as lines (if asked), then the stream.
pub(crate) struct Subscription {
    pub(crate) first: Vec<Arc<str>>,
    pub(crate) receiver: broadcast::Receiver<Item>,
}

impl EventHub {
    pub(crate) fn new(backlog: usize) -> Arc<Self> {
        let (sender, _) = broadcast::channel(backlog);
        Arc::new(Self {
            state: Mutex::new(HubState {
                mirror: TableMirror::new(),
                sender,
                own_conflict: OwnConflict::default(),
                name_lost_reported: false,
            }),
            dropped: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Nothing panics while holding it, so a poisoned lock still holds a whole state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new reader. With `snapshot`, its first lines are every row as last
    /// reported (`tracker` writes) and the mode, so it can mirror the table.
    pub(crate) fn subscribe(&self, snapshot: bool) -> Subscription {
        let state = self.lock();
        let mut first = Vec::new();
        if snapshot {
            first.extend(state.mirror.rows().map(|row| {
                line(
                    "tracker",
                    json!({"op": "write", "new_row": row_json(row), "old_row": null}),
                )
            }));
            first.extend(state.mirror.mode().map(mode_line));
        }
        Subscription {
            first,
            receiver: state.sender.subscribe(),
        }
    }

    /// Reports what changed in the published table since the last look, then
    /// `name_lost` once the node lost its name.
    fn report_table(&self, node: &Handle) {
        let mut state = self.lock();
        for change in state.mirror.update(node) {
            let text = match change {
                TableChange::Write { new_row, old_row } => line(
                    "tracker",
                    json!({"op": "write", "new_row": row_json(&new_row), "old_row": old_row.as_ref().map(row_json)}),
                ),
                TableChange::Delete { old_row } => line(
                    "tracker",
                    json!({"op": "delete", "new_row": row_json(&old_row), "old_row": null}),
                ),
                TableChange::Mode(mode) => mode_line(mode),
                _ => continue,
            };
            send(&state.sender, text);
        }
        if let Some(winner) = node.name_taken_by()
            && !state.name_lost_reported
        {
            if state.own_conflict.loss_seen() {
                let me = node.advertised_addr();
                let addrs = [me.min(winner), me.max(winner)];
                send(&state.sender, conflict_line(node.name(), addrs));
            }
            let fields = json!({"node": node.name().as_str(), "winner": winner.to_string()});
            send(&state.sender, line("name_lost", fields));
            state.name_lost_reported = true;
        }
    }

    fn publish(&self, text: Arc<str>) {
        send(&self.lock().sender, text);
    }

    fn end(&self) {
        // No reader is not an error: the next one starts from the table.
        let _ = self.lock().sender.send(Item::End);
    }
}

fn send(sender: &broadcast::Sender<Item>, text: Arc<str>) {
    let _ = sender.send(Item::Line(text));
}

/// Follows the node until it stops: its subscriptions (node updates, tag
/// changes, name conflicts) and its published table. Ends the stream with `stopped`.
pub(crate) async fn follow(node: Handle, hub: Arc<EventHub>) {
    let mut updates = node.subscribe_with_current();
    let mut tag_changes = node.subscribe_tags_with_current();
    let mut changes = node.watch();
    hub.publish(line(
        "started",
        json!({
            "name": node.name().as_str(),
            "addr": node.advertised_addr().to_string(),
            "tags": node.tags(),
        }),
    ));
    hub.report_table(&node);
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(update) => {
                    report_update(&hub, &node, update);
                    hub.report_table(&node);
                }
                None => break,
            },
            update = tag_changes.recv() => match update {
                Some(update) => report_update(&hub, &node, update),
                None => break,
            },
            running = changes.changed() => {
                hub.report_table(&node);
                if !running {
                    break;
                }
            }
        }
    }
    hub.report_table(&node);
    hub.publish(line("stopped", json!({})));
    hub.end();
}

fn report_update(hub: &EventHub, node: &Handle, update: Update) {
    let text = match update {
        Update::Node {
            node: other,
            status,
        } => line(
            "node_update",
            json!({"node": other.as_str(), "status": label(status)}),
        ),
        Update::Tags { node: other, tags } => {
            line("tags", json!({"node": other.as_str(), "tags": tags}))
        }
        Update::NameConflict { node: name, addrs } => {
            if name == *node.name() && !hub.lock().own_conflict.update_came() {
                return;
            }
            conflict_line(&name, addrs)
        }
        // The hub's own subscription fell behind: the table diff catches up.
        Update::Lagged { missed } => line("lagged", json!({"missed": missed})),
        _ => return,
    };
    hub.publish(text);
}

impl EventHub {
    /// The next line for a reader: `Some(line)`, a `lagged` line when it fell
    /// behind, or `None` once the stream ended.
    pub(crate) async fn next_line(
        &self,
        receiver: &mut broadcast::Receiver<Item>,
    ) -> Option<Arc<str>> {
        match receiver.recv().await {
            Ok(Item::Line(text)) => Some(text),
            Ok(Item::End) | Err(RecvError::Closed) => None,
            Err(RecvError::Lagged(missed)) => {
                self.dropped.fetch_add(missed, Ordering::Relaxed);
                Some(line("lagged", json!({"missed": missed})))
            }
        }
    }

    /// Lines lost by readers that fell behind, all together.
    pub(crate) fn dropped_lines(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every reader has taken the end of the stream (or gone),
    /// for at most `limit`: the process's exit would cut their last lines.
    pub(crate) async fn drained(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.lock().sender.receiver_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

fn conflict_line(name: &NodeName, addrs: [SocketAddr; 2]) -> Arc<str> {
    let [a, b] = addrs;
    line(
        "name_conflict",
        json!({"node": name.as_str(), "addrs": [a.to_string(), b.to_string()]}),
    )
}

fn mode_line(mode: beethoven_tokio::Mode) -> Arc<str> {
    line("mode", json!({"mode": label(mode)}))
}

/// One JSON line: `fields` with `event` and `ts` (RFC 3339, UTC, microseconds).
fn line(event: &str, mut fields: Value) -> Arc<str> {
    let now = DateTime::<Utc>::from(SystemTime::now());
    if let Value::Object(map) = &mut fields {
        map.insert("event".into(), event.into());
        map.insert(
            "ts".into(),
            now.to_rfc3339_opts(SecondsFormat::Micros, true).into(),
        );
    }
    format!("{fields}\n").into()
}

fn row_json(row: &TrackerRow) -> Value {
    json!({
        "node": row.node.as_str(),
        "addr": row.addr.to_string(),
        "status": label(row.status),
        "health": label(row.health),
        "incarnation": row.incarnation,
        "last_change": row.last_change.to_rfc3339_opts(SecondsFormat::Millis, true),
        "tags": row.tags,
    })
}

#[cfg(test)]
mod tests {
    use super::OwnConflict;

    #[test]
    fn the_own_conflict_is_reported_once_whichever_source_comes_first() {
        let mut update_first = OwnConflict::default();
        assert!(update_first.update_came());
        assert!(!update_first.loss_seen(), "already reported by the update");

        let mut loss_first = OwnConflict::default();
        assert!(
            loss_first.loss_seen(),
            "a conflict line goes before name_lost"
        );
        assert!(!loss_first.update_came(), "the update is not news any more");
        assert!(
            loss_first.update_came(),
            "a later conflict under the name is news again"
        );
    }
}
