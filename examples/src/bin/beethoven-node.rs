//! `beethoven-node`: one cluster member as a process, for humans and for the
//! chaos tests. Prints node updates, mode changes and tracker changes, as text or
//! (`--json`) one JSON object per line with a timestamp. Ctrl-C or SIGTERM leaves
//! the cluster gracefully before exiting.
//!
//! Name conflicts are printed (`name_conflict`). If another live process under
//! this name started first, this one loses the name: it prints `name_lost` and a
//! message naming the other address on stderr, and exits with status 3 without
//! leaving (a leave would take the other process's name offline).
//!
//! ```sh
//! cargo run -p beethoven-examples --bin beethoven-node -- --name a --bind 127.0.0.1:7946
//! cargo run -p beethoven-examples --bin beethoven-node -- --name b --bind 127.0.0.1:7947 --seed 127.0.0.1:7946
//! cargo run -p beethoven-examples --bin beethoven-node -- --name c --bind 127.0.0.1:7948 --scan 127.0.0.1/32
//! cargo run -p beethoven-examples --bin beethoven-node -- --name db1 --bind 127.0.0.1:7949 --seed 127.0.0.1:7946 --tag role=db --tag grpc=7000
//! ```
//!
//! Tags (`--tag key=value`, repeatable) travel in this node's row: rows in
//! `tracker` events carry them, and a `tags` event reports each change of
//! another node's tags.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use beethoven_core::chrono::{DateTime, SecondsFormat, Utc};
use beethoven_core::{Cidr, Key, KeyRing};
use beethoven_tokio::{
    Config, Handle, Mode, NodeName, NodeStatus, Options, Seed, Tags, TrackerRow, Update,
};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(name = "beethoven-node", about = "Run one Beethoven cluster member")]
struct Args {
    /// This node's name (stable across restarts), e.g. `api@10.0.0.7`.
    #[arg(long)]
    name: String,
    /// Address to bind; port 0 picks a free one.
    #[arg(long, default_value = "0.0.0.0:7946")]
    bind: SocketAddr,
    /// Address the others should use to reach this node (default: the bound
    /// address, with a wildcard IP replaced by 127.0.0.1).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// A member to join through, `ip:port` or `host:port`; repeatable.
    #[arg(long)]
    seed: Vec<String>,
    /// Scan this range on the cluster port (the bind port), e.g. `10.0.0.0/24`.
    #[arg(long)]
    scan: Vec<Cidr>,
    /// Cluster name; other clusters' packets are dropped.
    #[arg(long, default_value = "beethoven")]
    cluster: String,
    /// File with hex keys, one per line: the first seals, all open.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Leave and exit after this many seconds.
    #[arg(long = "for")]
    run_for: Option<f64>,
    /// A tag of this node, `key=value`; repeatable (e.g. `--tag role=db --tag grpc=7000`).
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
}

/// `key=value`, split at the first `=`.
fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err(format!("`{text}` is not key=value")),
    }
}

/// Exit status when another live process kept this node's name.
const EXIT_NAME_TAKEN: i32 = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut config = Config::for_cluster(&args.cluster).with_rng_seed(seed_from_clock());
    if let Some(path) = &args.key_file {
        config.keys = Some(read_keys(path)?);
    }
    let mut options = Options::new(NodeName::new(&args.name)?)
        .config(config)
        .bind(args.bind)
        .tags(Tags::from_pairs(args.tags.iter().cloned())?);
    if let Some(advertise) = args.advertise {
        options = options.advertise(advertise);
    }
    for seed in &args.seed {
        options = match seed.parse::<Seed>() {
            Ok(seed) => options.seed(seed),
            Err(_) => options.seed_host(seed.clone()),
        };
    }
    for cidr in &args.scan {
        options = options.seed(Seed::Range {
            cidr: *cidr,
            port: args.bind.port(),
        });
    }
    let node = beethoven_tokio::start(options).await?;
    let out = Output {
        json: args.json,
        name: args.name.clone(),
    };
    out.emit(
        "started",
        json!({
            "name": node.name().as_str(),
            "addr": node.advertised_addr().to_string(),
            "tags": node.tags(),
        }),
        &format!(
            "{} listening on {} (advertised {}) tags [{}]",
            node.name(),
            node.local_addr(),
            node.advertised_addr(),
            node.tags()
        ),
    );

    let mut updates = node.subscribe();
    let mut tag_changes = node.subscribe_tags();
    let mut watch = Watch::default();
    watch.diff(&node, &out);
    let deadline = args
        .run_for
        .map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s));
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut terminate = termination()?;
    let mut own_conflict_printed = false;
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(Update::Node { node: other, status }) => {
                    out.emit(
                        "node_update",
                        json!({"node": other.as_str(), "status": status_str(status)}),
                        &format!("{other} is {status:?}"),
                    );
                    watch.diff(&node, &out);
                }
                Some(Update::Lagged { missed }) => {
                    out.emit("lagged", json!({"missed": missed}), &format!("missed {missed} updates"));
                }
                Some(Update::NameConflict { node: name, addrs }) => {
                    out.conflict(&name, addrs);
                    if name == *node.name() {
                        own_conflict_printed = true;
                    }
                    if node.name_taken_by().is_some() {
                        break;
                    }
                }
                Some(_) => {}
                None => break,
            },
            change = tag_changes.recv() => {
                if let Some(Update::Tags { node: other, tags }) = change {
                    out.emit(
                        "tags",
                        json!({"node": other.as_str(), "tags": tags}),
                        &format!("{other} tags [{tags}]"),
                    );
                }
            }
            _ = tick.tick() => {
                watch.diff(&node, &out);
                if node.name_taken_by().is_some()
                    || deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
                {
                    break;
                }
            }
            _ = terminate.recv() => break,
        }
    }
    if let Some(winner) = node.name_taken_by() {
        if !own_conflict_printed {
            // The loss was seen on the tick, before the stream's update.
            let me = node.advertised_addr();
            out.conflict(node.name(), [me.min(winner), me.max(winner)]);
        }
        // No leave: the name is the other process's now.
        out.emit(
            "name_lost",
            json!({"node": node.name().as_str(), "winner": winner.to_string()}),
            &format!("lost the name {} to the process at {winner}", node.name()),
        );
        let name = node.name().clone();
        node.shutdown().await;
        out.emit("stopped", json!({}), "stopped");
        eprintln!(
            "beethoven-node: the name `{name}` is taken by another live process at {winner}, \
             which started first and keeps it; this process stops. Restart it under another name."
        );
        std::process::exit(EXIT_NAME_TAKEN);
    }
    if node.leave().is_ok() {
        out.emit("leaving", json!({}), "leaving the cluster");
    }
    node.shutdown().await;
    out.emit("stopped", json!({}), "stopped");
    Ok(())
}

/// Ctrl-C or SIGTERM, as one stream of "please stop".
fn termination() -> std::io::Result<tokio::sync::mpsc::Receiver<()>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let ctrl_c = tx.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = ctrl_c.send(()).await;
        }
    });
    #[cfg(unix)]
    {
        let mut sigterm =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            if sigterm.recv().await.is_some() {
                let _ = tx.send(()).await;
            }
        });
    }
    Ok(rx)
}

/// Tracks the published table and mode, and reports their changes.
#[derive(Default)]
struct Watch {
    rows: BTreeMap<NodeName, TrackerRow>,
    mode: Option<Mode>,
}

impl Watch {
    fn diff(&mut self, node: &Handle, out: &Output) {
        for row in node.cluster_nodes() {
            let old = self.rows.get(&row.node);
            if old == Some(&row) {
                continue;
            }
            out.emit(
                "tracker",
                json!({"op": "write", "new_row": row_json(&row), "old_row": old.map(row_json)}),
                &format!(
                    "tracker: {} {:?}/{:?} inc {} at {} tags [{}]",
                    row.node, row.status, row.health, row.incarnation, row.addr, row.tags
                ),
            );
            self.rows.insert(row.node.clone(), row);
        }
        let mode = node.mode();
        if self.mode != Some(mode) {
            self.mode = Some(mode);
            out.emit(
                "mode",
                json!({"mode": format!("{mode:?}").to_lowercase()}),
                &format!("mode: {mode:?}"),
            );
        }
    }
}

struct Output {
    json: bool,
    /// Prefixes text lines, so several nodes can share a terminal.
    name: String,
}

impl Output {
    fn conflict(&self, name: &NodeName, addrs: [SocketAddr; 2]) {
        let [a, b] = addrs;
        self.emit(
            "name_conflict",
            json!({"node": name.as_str(), "addrs": [a.to_string(), b.to_string()]}),
            &format!("name conflict: two live processes claim {name}, at {a} and {b}"),
        );
    }

    fn emit(&self, event: &str, mut fields: Value, text: &str) {
        let now = DateTime::<Utc>::from(SystemTime::now());
        if self.json {
            if let Value::Object(map) = &mut fields {
                map.insert(
                    "ts".into(),
                    now.to_rfc3339_opts(SecondsFormat::Micros, true).into(),
                );
                map.insert("event".into(), event.into());
            }
            println!("{fields}");
        } else {
            println!("{} [{}] {text}", now.format("%H:%M:%S%.3f"), self.name);
        }
    }
}

fn row_json(row: &TrackerRow) -> Value {
    json!({
        "node": row.node.as_str(),
        "addr": row.addr.to_string(),
        "status": status_str(row.status),
        "health": format!("{:?}", row.health).to_lowercase(),
        "incarnation": row.incarnation,
        "last_change": row.last_change.to_rfc3339_opts(SecondsFormat::Millis, true),
        "tags": row.tags,
    })
}

fn status_str(status: NodeStatus) -> &'static str {
    match status {
        NodeStatus::Online => "online",
        NodeStatus::Offline => "offline",
    }
}

fn read_keys(path: &PathBuf) -> Result<KeyRing, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)?;
    let mut keys = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(Key::from_hex);
    let primary = keys.next().ok_or("the key file has no key")??;
    let mut ring = KeyRing::new(primary);
    for key in keys {
        ring = ring.accepting(key?);
    }
    Ok(ring)
}

/// Each process gets its own random stream (probe order, gossip targets).
fn seed_from_clock() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}
