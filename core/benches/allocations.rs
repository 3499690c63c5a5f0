//! Heap allocations per handled packet, and core memory per tracked node.
//!
//! Counted with `dhat::Alloc` as the global allocator (no unsafe code). This is
//! not a criterion bench: it counts, it does not time, and prints one table.
//! It fails (exits non-zero) when the steady-state ping → ack path allocates, so
//! `cargo bench` reports the regression loudly.
//!
//! Run: `cargo bench -p beethoven-core --bench allocations`
#![allow(clippy::print_stdout)] // a bench reports by printing

use std::process::ExitCode;
use std::time::Instant;

use beethoven_core::Node;
use beethoven_pump::lone::{
    big_node, discard, handle_and_send, join_reply, joining_node, quieten, sent,
};
use beethoven_pump::{Pump, addr, epoch, name, ping_with_updates, quiet_ping};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Allocations (blocks, bytes) made while `run` handles `packets` packets.
fn count(packets: u64, mut run: impl FnMut()) -> (f64, f64) {
    let before = dhat::HeapStats::get();
    run();
    let after = dhat::HeapStats::get();
    let blocks = (after.total_blocks - before.total_blocks) as f64 / packets as f64;
    let bytes = (after.total_bytes - before.total_bytes) as f64 / packets as f64;
    (blocks, bytes)
}

const WARM: usize = 1_000;
const ROUNDS: usize = 20_000;

fn row(what: &str, (blocks, bytes): (f64, f64)) {
    println!("| {what} | {blocks:.3} | {bytes:.1} |");
}

fn apply(node: &mut Node, now: Instant, from: usize, packets: &[Vec<u8>]) {
    for packet in packets {
        node.handle_packet(now, addr(from), packet);
        discard(node);
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; running under `cargo test --benches` passes
    // nothing special either: this binary always does its (quick) count.
    //
    // With `DHAT_FILE=path` set, a full dhat profile is saved there at exit (view
    // it with dh_view.html; "bytes at end" attributes the 10,000-row node's memory).
    let _profiler = match std::env::var("DHAT_FILE") {
        Ok(file) => dhat::Profiler::builder().file_name(file).build(),
        Err(_) => dhat::Profiler::builder().testing().build(),
    };

    println!(
        "| handled packet (steady state, after {WARM} warm-up rounds) | allocations / packet | bytes allocated / packet |"
    );
    println!("|---|---|---|");

    // Ping → ack in a quiet three-node cluster.
    let (mut pump, ping) = quiet_ping();
    let now = pump.now;
    let (mut ack, mut sink) = (Vec::with_capacity(2048), Vec::with_capacity(2048));
    let mut round_trip = |pump: &mut Pump| {
        handle_and_send(pump.node_mut(1), now, 0, &ping, &mut ack);
        handle_and_send(pump.node_mut(0), now, 1, &ack, &mut sink);
    };
    for _ in 0..WARM {
        round_trip(&mut pump);
    }
    let ping_ack = count(2 * ROUNDS as u64, || {
        for _ in 0..ROUNDS {
            round_trip(&mut pump);
        }
    });
    row(
        "ping → ack (ping handled + ack sent + ack handled)",
        ping_ack,
    );

    // A ping carrying 8 rows the receiver already holds.
    let (mut pump, rich) = ping_with_updates(8);
    let now = pump.now;
    for _ in 0..WARM {
        handle_and_send(pump.node_mut(1), now, 0, &rich, &mut ack);
    }
    row(
        &format!(
            "ping carrying updates ({} B; sender learned 8 nodes, receiver knows them) → ack",
            rich.len()
        ),
        count(ROUNDS as u64, || {
            for _ in 0..ROUNDS {
                handle_and_send(pump.node_mut(1), now, 0, &rich, &mut ack);
            }
        }),
    );

    // Join: a seed of 1000 rows answering one Join; a joiner applying the reply.
    let (now, wall) = epoch();
    let mut seed = big_node(0, 1000, now, wall);
    let capture = join_reply(&mut seed, 0, 5000, now, wall);
    for _ in 0..10 {
        handle_and_send(&mut seed, now, 5000, &capture.join_packet, &mut sink);
    }
    row(
        &format!(
            "Join at a seed of 1000 rows (answer: {} chunks)",
            capture.chunks.len()
        ),
        count(100, || {
            for _ in 0..100 {
                handle_and_send(&mut seed, now, 5000, &capture.join_packet, &mut sink);
            }
        }),
    );
    let mut joiner = joining_node(5000, 0, now, wall);
    let chunks = capture.chunks.len() as u64;
    row(
        "JoinReply chunk applied by a joiner (new rows)",
        count(chunks, || apply(&mut joiner, now, 0, &capture.chunks)),
    );

    // Anti-entropy with equal digests.
    quieten(&mut joiner, now, 0);
    joiner.new_node(now, name(0), addr(0)).expect("known");
    let sync = sent(&mut joiner).remove(0).1;
    apply(&mut seed, now, 5000, std::slice::from_ref(&sync));
    row(
        "digest packet with equal digests (1000 rows)",
        count(ROUNDS as u64, || {
            for _ in 0..ROUNDS {
                apply(&mut seed, now, 5000, std::slice::from_ref(&sync));
            }
        }),
    );
    drop((seed, joiner));

    // Memory per tracked node at N = 10,000.
    println!();
    println!("| one node tracking 10,000 rows | heap bytes | bytes / row |");
    println!("|---|---|---|");
    let rows = 10_000usize;
    let mut seed = big_node(0, rows, now, wall);
    let capture = join_reply(&mut seed, 0, 20_000, now, wall);
    let before = dhat::HeapStats::get().curr_bytes;
    let mut joiner = joining_node(20_000, 0, now, wall);
    apply(&mut joiner, now, 0, &capture.chunks);
    assert_eq!(joiner.tracker().len(), rows + 1);
    let fed = dhat::HeapStats::get().curr_bytes - before;
    println!(
        "| fed by JoinReply packets, updates still queued for gossip | {fed} | {:.1} |",
        fed as f64 / rows as f64
    );
    quieten(&mut joiner, now, 0);
    let quiet = dhat::HeapStats::get().curr_bytes - before;
    drop(seed);
    drop(capture);
    println!(
        "| same node once its gossip queue drained | {quiet} | {:.1} |",
        quiet as f64 / rows as f64
    );
    if std::env::var_os("DHAT_FILE").is_some() {
        // Keep only the 10,000-row node alive at exit, for the profile.
        std::mem::forget(joiner);
        return ExitCode::SUCCESS;
    }
    drop(joiner);
    let before = dhat::HeapStats::get().curr_bytes;
    let built = big_node(1, rows, now, wall);
    let by_new_node = dhat::HeapStats::get().curr_bytes - before;
    println!(
        "| built with `new_node` × 9,999, queue drained | {by_new_node} | {:.1} |",
        by_new_node as f64 / rows as f64
    );
    drop(built);

    if ping_ack.0 > 0.0 {
        println!("\nFAIL: the steady-state ping → ack path allocates");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
