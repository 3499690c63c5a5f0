//! `beethoven-node`: one cluster member as a process, for humans and for
//! `scripts/idle_cost.py` (the chaos tests run the agent, `beethoven agent
//! --events json`, whose lines are these). Prints node updates, mode changes and
//! tracker changes (found by the driver's `TableMirror`; node updates start with
//! the nodes already online, `Handle::subscribe_with_current`), as text or
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
//! cargo run -p beethoven-examples --bin beethoven-node -- --name d --bind 127.0.0.1:7949 --seed 127.0.0.1:7946 --runtime smol
//! cargo run -p beethoven-examples --bin beethoven-node -- --name db1 --bind 127.0.0.1:7950 --seed 127.0.0.1:7946 --tag role=db --tag grpc=7000
//! ```
//!
//! `--runtime` picks the runtime the whole process runs on (tokio or smol); the
//! output is the same. `--stats-every SECONDS` adds a `stats` line with the node's
//! counters (datagrams and bytes sent and received), for `scripts/idle_cost.py`.
//! `--probe-interval-ms` trades failure detection for CPU (the probe timeout is
//! half of it; BENCHMARKS.md, "idle cost", has what each interval costs).
//!
//! Tags (`--tag key=value`, repeatable) travel in this node's row: rows in
//! `tracker` events carry them, and a `tags` event reports each change of
//! another node's tags.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use beethoven_core::chrono::{DateTime, SecondsFormat, Utc};
use beethoven_core::{Cidr, Key, KeyRing};
use beethoven_tokio::{
    Config, Handle, NodeName, NodeStatus, Options, Seed, StartError, TableChange, TableMirror,
    Tags, TrackerRow, Update,
};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use smol::future;

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
    /// The runtime the process runs on.
    #[arg(long, value_enum, default_value_t = RuntimeChoice::Tokio)]
    runtime: RuntimeChoice,
    /// Print the node's counters (`stats`) every this many seconds.
    #[arg(long)]
    stats_every: Option<f64>,
    /// A tag of this node, `key=value`; repeatable (e.g. `--tag role=db --tag grpc=7000`).
    #[arg(long = "tag", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// The probe interval in milliseconds, with the probe timeout at half of it
    /// (default: the LAN defaults, 150 ms and 75 ms). Slower probing costs less
    /// CPU and finds failures later (BENCHMARKS.md, "idle cost").
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..=60_000))]
    probe_interval_ms: Option<u64>,
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

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RuntimeChoice {
    Tokio,
    Smol,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // The CLI on the main thread; the node on its own (see `Driver::spawn_thread`):
    // a quiet node wakes only for its own timers and datagrams.
    let status = match args.runtime {
        RuntimeChoice::Tokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(args, Tokio))?,
        RuntimeChoice::Smol => {
            let executor: smol::Executor<'static> = smol::Executor::new();
            // `future::block_on` rather than `smol::block_on`: the reactor stays on
            // its own thread, which then sleeps until an event instead of polling on
            // a backoff after each one.
            future::block_on(executor.run(run(args, Smol(&executor))))?
        }
    };
    if let Some(code) = status {
        std::process::exit(code);
    }
    Ok(())
}

/// What the CLI needs from a runtime beyond the node itself.
trait Runtime {
    fn start(&self, options: Options) -> impl Future<Output = Result<Handle, StartError>>;
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()>;
    /// Ctrl-C or SIGTERM, as one stream of "please stop".
    fn termination(&self) -> std::io::Result<async_channel::Receiver<()>>;
}

struct Tokio;

impl Runtime for Tokio {
    async fn start(&self, options: Options) -> Result<Handle, StartError> {
        beethoven_tokio::start(options).await
    }

    async fn sleep_until(&self, at: Instant) {
        tokio::time::sleep_until(at.into()).await;
    }

    fn termination(&self) -> std::io::Result<async_channel::Receiver<()>> {
        let (tx, rx) = async_channel::bounded(1);
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
}

/// smol, with every task on the executor the main thread runs.
struct Smol<'a>(&'a smol::Executor<'static>);

impl Runtime for Smol<'_> {
    async fn start(&self, options: Options) -> Result<Handle, StartError> {
        beethoven_smol::start(options).await
    }

    async fn sleep_until(&self, at: Instant) {
        smol::Timer::at(at).await;
    }

    fn termination(&self) -> std::io::Result<async_channel::Receiver<()>> {
        use async_signal::{Signal, Signals};
        use smol::stream::StreamExt;
        let mut signals = Signals::new([Signal::Int, Signal::Term])?;
        let (tx, rx) = async_channel::bounded(1);
        self.0
            .spawn(async move {
                if signals.next().await.is_some() {
                    let _ = tx.send(()).await;
                }
            })
            .detach();
        Ok(rx)
    }
}

/// What woke the CLI's loop.
enum Wake {
    Update(Option<Update>),
    Tags(Option<Update>),
    Changed(bool),
    Stats,
    Deadline,
    Terminate,
}

/// Runs the node until a signal, `--for` or a lost name; returns the exit status
/// to end with, if not success.
async fn run(args: Args, runtime: impl Runtime) -> Result<Option<i32>, Box<dyn std::error::Error>> {
    let mut config = Config::for_cluster(&args.cluster).with_rng_seed(seed_from_clock());
    if let Some(ms) = args.probe_interval_ms {
        let interval = Duration::from_millis(ms);
        config = config
            .with_probe_interval(interval)
            .with_probe_timeout(interval / 2);
    }
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
    let node = runtime.start(options).await?;
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

    let mut updates = node.subscribe_with_current();
    // Woken by what the getters read changing (the table, the mode, a lost name),
    // never on a clock: an idle node's CLI sleeps.
    let mut changes = node.watch();
    let mut tag_changes = node.subscribe_tags_with_current();
    let mut mirror = TableMirror::new();
    report_changes(&mut mirror, &node, &out);
    let started = Instant::now();
    let deadline = args.run_for.map(|s| started + Duration::from_secs_f64(s));
    let stats_every = args.stats_every.map(Duration::from_secs_f64);
    let mut next_stats = stats_every.map(|every| started + every);
    let terminate = runtime.termination()?;
    let mut own_conflict_printed = false;
    let mut running = true;
    loop {
        let wake = future::or(
            future::or(
                future::or(async { Wake::Update(updates.recv().await) }, async {
                    Wake::Tags(tag_changes.recv().await)
                }),
                async {
                    if running {
                        Wake::Changed(changes.changed().await)
                    } else {
                        future::pending().await
                    }
                },
            ),
            future::or(
                async {
                    let _ = terminate.recv().await;
                    Wake::Terminate
                },
                future::or(
                    async {
                        at_or_never(&runtime, deadline).await;
                        Wake::Deadline
                    },
                    async {
                        at_or_never(&runtime, next_stats).await;
                        Wake::Stats
                    },
                ),
            ),
        )
        .await;
        match wake {
            Wake::Update(update) => match update {
                Some(Update::Node {
                    node: other,
                    status,
                }) => {
                    out.emit(
                        "node_update",
                        json!({"node": other.as_str(), "status": status_str(status)}),
                        &format!("{other} is {status:?}"),
                    );
                    report_changes(&mut mirror, &node, &out);
                }
                Some(Update::Lagged { missed }) => {
                    out.emit(
                        "lagged",
                        json!({"missed": missed}),
                        &format!("missed {missed} updates"),
                    );
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
            Wake::Tags(change) => match change {
                Some(Update::Tags { node: other, tags }) => {
                    out.emit(
                        "tags",
                        json!({"node": other.as_str(), "tags": tags}),
                        &format!("{other} tags [{tags}]"),
                    );
                }
                Some(_) => {}
                // The node stopped: its streams end.
                None => break,
            },
            Wake::Changed(still_running) => {
                running = still_running;
                report_changes(&mut mirror, &node, &out);
                if node.name_taken_by().is_some() {
                    break;
                }
            }
            Wake::Stats => {
                out.stats(&node);
                next_stats = next_stats.zip(stats_every).map(|(at, every)| at + every);
            }
            Wake::Deadline | Wake::Terminate => break,
        }
    }
    if let Some(winner) = node.name_taken_by() {
        if !own_conflict_printed {
            // The loss was seen in the published state, before the stream's update.
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
        return Ok(Some(EXIT_NAME_TAKEN));
    }
    if node.leave().is_ok() {
        out.emit("leaving", json!({}), "leaving the cluster");
    }
    node.shutdown().await;
    out.emit("stopped", json!({}), "stopped");
    Ok(None)
}

/// Waits until `at`, or forever.
async fn at_or_never(runtime: &impl Runtime, at: Option<Instant>) {
    match at {
        Some(at) => runtime.sleep_until(at).await,
        None => future::pending().await,
    }
}

/// Prints what changed in the published table and mode since the mirror last looked.
fn report_changes(mirror: &mut TableMirror, node: &Handle, out: &Output) {
    for change in mirror.update(node) {
        match change {
            TableChange::Write { new_row, old_row } => out.emit(
                "tracker",
                json!({"op": "write", "new_row": row_json(&new_row), "old_row": old_row.as_ref().map(row_json)}),
                &format!(
                    "tracker: {} {:?}/{:?} inc {} at {} tags [{}]",
                    new_row.node,
                    new_row.status,
                    new_row.health,
                    new_row.incarnation,
                    new_row.addr,
                    new_row.tags
                ),
            ),
            TableChange::Delete { old_row } => out.emit(
                "tracker",
                json!({"op": "delete", "new_row": row_json(&old_row), "old_row": null}),
                &format!("tracker: {} deleted", old_row.node),
            ),
            TableChange::Mode(mode) => out.emit(
                "mode",
                json!({"mode": format!("{mode:?}").to_lowercase()}),
                &format!("mode: {mode:?}"),
            ),
            _ => {}
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

    fn stats(&self, node: &Handle) {
        let stats = node.stats();
        self.emit(
            "stats",
            json!({
                "packets_sent": stats.packets_sent,
                "packets_received": stats.packets_received,
                "bytes_sent": stats.bytes_sent,
                "bytes_received": stats.bytes_received,
            }),
            &format!(
                "stats: {} datagrams sent, {} received",
                stats.packets_sent, stats.packets_received
            ),
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
