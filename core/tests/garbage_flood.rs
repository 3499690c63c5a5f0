//! A million garbage datagrams: every one is dropped and counted, and the node's
//! tracker, queues and heap are exactly as before.
//!
//! One test per file, without libtest (`harness = false`): dhat counts the whole
//! process, and libtest's own thread allocates now and then while it waits (seen
//! as a few hundred bytes kept when the machine is busy).

use std::time::Duration;

use beethoven_core::{HEADER_LEN, MAGIC, VERSION};
use beethoven_pump::Pump;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const FLOOD: usize = 1_000_000;

fn a_million_garbage_packets_change_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut pump = Pump::cluster(3, 91);
    pump.run_until(Duration::from_secs(5), |p| {
        p.all_live_online() && p.converged()
    })
    .expect("converges");
    pump.run_for(Duration::from_secs(2));
    // Real packets, to cut short: a truncated packet never decodes.
    let mut real = Vec::new();
    let now = pump.now;
    let node = pump.node_mut(1);
    node.handle_timeout(now + Duration::from_secs(1));
    while let Some(t) = node.poll_transmit() {
        real.push(t.payload.to_vec());
    }
    while node.poll_event().is_some() {}
    let cluster = pump.node(0).config().cluster_id.0.to_le_bytes();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut datagram = Vec::with_capacity(2048);
    let make = |rng: &mut fastrand::Rng, out: &mut Vec<u8>| {
        out.clear();
        match rng.u8(..6) {
            // random bytes of any length, oversized included
            0 => out.extend((0..rng.usize(0..1600)).map(|_| rng.u8(..))),
            // a valid header, then random bytes
            1 | 2 => {
                out.extend_from_slice(&MAGIC);
                out.push(VERSION);
                out.push(0);
                out.extend_from_slice(&cluster);
                out.extend((0..rng.usize(0..1400)).map(|_| rng.u8(..)));
            }
            // a real packet cut short
            3 if !real.is_empty() => {
                let packet = &real[rng.usize(..real.len())];
                out.extend_from_slice(&packet[..rng.usize(..packet.len())]);
            }
            // another cluster, or another version
            4 => {
                out.extend_from_slice(&MAGIC);
                out.push(if rng.bool() { VERSION + 1 } else { VERSION });
                out.push(0);
                out.extend_from_slice(&rng.u64(..).to_le_bytes());
                out.extend((0..rng.usize(0..200)).map(|_| rng.u8(..)));
            }
            // the magic and a bit more
            _ => {
                out.extend_from_slice(&MAGIC[..rng.usize(..=4)]);
                out.extend((0..rng.usize(0..HEADER_LEN)).map(|_| rng.u8(..)));
            }
        }
    };
    let from = "10.9.9.9:9".parse().expect("valid");
    let now = pump.now;
    let node = pump.node_mut(0);
    // Warm the node's reusable buffers, then measure.
    for _ in 0..1000 {
        make(&mut rng, &mut datagram);
        node.handle_packet(now, from, &datagram);
    }
    let tracker = node.tracker().clone();
    let pending = node.pending_updates();
    let mode = node.mode();
    let dropped = node.stats().dropped_total();
    let heap = dhat::HeapStats::get();
    for _ in 0..FLOOD {
        make(&mut rng, &mut datagram);
        node.handle_packet(now, from, &datagram);
    }
    let after = dhat::HeapStats::get();
    assert_eq!(
        node.stats().dropped_total() - dropped,
        FLOOD as u64,
        "every one dropped"
    );
    assert_eq!(node.tracker(), &tracker);
    assert_eq!(node.pending_updates(), pending);
    assert_eq!(node.mode(), mode);
    // Another cluster's packets are answered with a refusal notice, at most
    // one per source every few seconds (`now` stands still here); nothing
    // else answers garbage.
    let answers = std::iter::from_fn(|| node.poll_transmit().map(|_| ())).count();
    assert!(answers <= 1, "{answers} answers to garbage from one source");
    assert!(node.poll_event().is_none());
    assert_eq!(after.curr_bytes, heap.curr_bytes, "no memory kept");
    assert_eq!(after.curr_blocks, heap.curr_blocks);
}

#[allow(clippy::print_stdout)] // the test's report line, as libtest would print it
fn main() {
    a_million_garbage_packets_change_nothing();
    println!("test a_million_garbage_packets_change_nothing ... ok");
}
