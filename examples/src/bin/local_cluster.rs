//! The main demo: five nodes on loopback in one process. They join, one crashes,
//! one leaves gracefully, the crashed one comes back on a new port. Every
//! notification is printed as it happens, with the tracker table between acts,
//! and a summary of the measured detection times at the end.
//!
//! ```sh
//! cargo run -p beethoven-examples --bin local_cluster            # ~15 s
//! cargo run -p beethoven-examples --bin local_cluster -- --quick # shorter pauses
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use beethoven_tokio::{Config, Handle, NodeName, NodeStatus, Options, Seed, TrackerRow, Update};
use tokio::sync::mpsc;
use tokio::time::sleep;

const NODES: usize = 5;
const CLUSTER: &str = "local-demo";

/// A notification, as one node heard it.
struct Heard {
    at: Instant,
    listener: String,
    node: NodeName,
    status: NodeStatus,
}

// One thread is plenty: each node runs on a thread of its own.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let pause = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    let started = Instant::now();
    let (heard_tx, mut heard_rx) = mpsc::unbounded_channel::<Heard>();

    // Prints every notification as it comes, and keeps them for the summary.
    let printer = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(heard) = heard_rx.recv().await {
            println!(
                "  [{:>6.3}s] {:<7} hears: {} is {}",
                (heard.at - started).as_secs_f64(),
                heard.listener,
                heard.node,
                heard.status
            );
            all.push(heard);
        }
        all
    });

    println!("== 1. five nodes start on 127.0.0.1 and join through node-0");
    let mut nodes: BTreeMap<usize, Handle> = BTreeMap::new();
    for i in 0..NODES {
        let seed = nodes.get(&0).map(|first| first.local_addr());
        let handle = start_node(i, seed, &heard_tx).await?;
        nodes.insert(i, handle);
    }
    wait_until(
        "everyone sees five nodes online",
        Duration::from_secs(10),
        || nodes.values().all(|n| n.active_nodes().len() == NODES),
    )
    .await;
    print_table(&nodes[&0].cluster_nodes());
    sleep(pause).await;

    println!("\n== 2. node-3 crashes (its task and socket vanish, no goodbye)");
    let crashed = nodes.remove(&3).expect("node-3 runs");
    let crashed_name = crashed.name().clone();
    drop(crashed);
    let crash_at = Instant::now();
    wait_until(
        "every survivor sees node-3 offline",
        Duration::from_secs(15),
        || {
            nodes
                .values()
                .all(|n| status_of(n, &crashed_name) == Some(NodeStatus::Offline))
        },
    )
    .await;
    print_table(&nodes[&0].cluster_nodes());
    sleep(pause).await;

    println!("\n== 3. node-4 leaves gracefully");
    let leaving = nodes.remove(&4).expect("node-4 runs");
    let left_name = leaving.name().clone();
    let leave_at = Instant::now();
    leaving.leave().await?;
    leaving.shutdown().await;
    wait_until(
        "every remaining node sees node-4 offline",
        Duration::from_secs(10),
        || {
            nodes
                .values()
                .all(|n| status_of(n, &left_name) == Some(NodeStatus::Offline))
        },
    )
    .await;
    sleep(pause).await;

    println!("\n== 4. node-3 restarts under the same name on a new port");
    let seed = nodes[&0].local_addr();
    let restarted = start_node(3, Some(seed), &heard_tx).await?;
    let new_addr = restarted.advertised_addr();
    let restart_at = Instant::now();
    nodes.insert(3, restarted);
    wait_until(
        "everyone sees node-3 online at its new address",
        Duration::from_secs(10),
        || {
            nodes.values().all(|n| {
                n.cluster_nodes().iter().any(|r| {
                    r.node == crashed_name && r.status == NodeStatus::Online && r.addr == new_addr
                })
            })
        },
    )
    .await;
    let back_after = restart_at.elapsed();
    print_table(&nodes[&0].cluster_nodes());

    for node in nodes.into_values() {
        node.shutdown().await;
    }
    drop(heard_tx);
    let heard = printer.await?;

    println!("\n== summary");
    let detected = latencies(&heard, &crashed_name, NodeStatus::Offline, crash_at);
    let left = latencies(&heard, &left_name, NodeStatus::Offline, leave_at);
    println!(
        "  crash of node-3 seen offline by {} nodes: {}",
        detected.len(),
        spread(&detected)
    );
    println!(
        "  leave of node-4 seen offline by {} nodes: {}",
        left.len(),
        spread(&left)
    );
    println!(
        "  restarted node-3 online everywhere after {:.0} ms",
        back_after.as_secs_f64() * 1000.0
    );
    println!(
        "  {} notifications in {:.1} s",
        heard.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn start_node(
    i: usize,
    seed: Option<std::net::SocketAddr>,
    heard: &mpsc::UnboundedSender<Heard>,
) -> Result<Handle, Box<dyn std::error::Error>> {
    let name = NodeName::new(&format!("node-{i}"))?;
    let mut options = Options::new(name)
        .config(Config::for_cluster(CLUSTER).with_rng_seed(std::process::id().into()))
        .bind("127.0.0.1:0".parse()?);
    if let Some(seed) = seed {
        options = options.seed(Seed::Addr(seed));
    }
    let handle = beethoven_tokio::start(options).await?;
    let mut updates = handle.subscribe();
    let (listener, heard) = (format!("node-{i}"), heard.clone());
    tokio::spawn(async move {
        while let Some(update) = updates.recv().await {
            if let Update::Node { node, status } = update {
                let at = Instant::now();
                let _ = heard.send(Heard {
                    at,
                    listener: listener.clone(),
                    node,
                    status,
                });
            }
        }
    });
    Ok(handle)
}

fn status_of(node: &Handle, name: &NodeName) -> Option<NodeStatus> {
    node.cluster_nodes()
        .iter()
        .find(|r| r.node == *name)
        .map(|r| r.status)
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            eprintln!("  !! gave up waiting: {what}");
            return;
        }
        sleep(Duration::from_millis(10)).await;
    }
    println!(
        "  -> {what} ({:.0} ms)",
        start.elapsed().as_secs_f64() * 1000.0
    );
}

fn latencies(
    heard: &[Heard],
    node: &NodeName,
    status: NodeStatus,
    since: Instant,
) -> Vec<Duration> {
    heard
        .iter()
        .filter(|h| h.node == *node && h.status == status && h.at >= since)
        .map(|h| h.at - since)
        .collect()
}

fn spread(latencies: &[Duration]) -> String {
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    match (latencies.iter().min(), latencies.iter().max()) {
        (Some(min), Some(max)) => format!(
            "first after {:.0} ms, last after {:.0} ms",
            ms(min),
            ms(max)
        ),
        _ => "not seen".to_owned(),
    }
}

fn print_table(rows: &[TrackerRow]) {
    let line = "  +---------+---------+---------+-----+--------------+-----------------------+";
    println!("{line}");
    println!("  | node    | status  | health  | inc | last change  | address               |");
    println!("{line}");
    for row in rows {
        println!(
            "  | {:<7} | {:<7} | {:<7} | {:>3} | {} | {:<21} |",
            row.node.as_str(),
            row.status.as_str(),
            row.health.as_str(),
            row.incarnation,
            row.last_change.format("%H:%M:%S%.3f"),
            row.addr.to_string(),
        );
    }
    println!("{line}");
}
