//! Packet handling: ping → ack (with and without piggybacked updates), the
//! indirect probe cycle, join replies, and the envelope codec seen through
//! `handle_packet` / `poll_transmit`.
//!
//! Every packet fed here was captured from a real node of a small in-memory
//! cluster, then replayed; time stands still, so a replayed packet changes no
//! state after its first delivery (the steady state of a quiet cluster).
//!
//! Run: `cargo bench -p beethoven-core --bench packets`

use std::hint::black_box;
use std::time::Duration;

use beethoven_core::DropReason;
use beethoven_pump::lone::{big_node, handle_and_send, join_reply, joining_node, sent};
use beethoven_pump::{addr, bench_cluster, config, epoch, name, ping_with_updates, quiet_ping};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn ping_ack(c: &mut Criterion) {
    let (mut pump, ping) = quiet_ping();
    let now = pump.now;
    let mut ack = Vec::with_capacity(2048);
    assert_eq!(
        handle_and_send(pump.node_mut(1), now, 0, &ping, &mut ack),
        1,
        "a ping is answered by exactly one ack"
    );
    let mut group = c.benchmark_group("ping_ack");
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("handle_ping_send_ack ({} B)", ping.len()), |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| handle_and_send(pump.node_mut(1), now, 0, black_box(&ping), &mut out));
    });
    group.bench_function(format!("handle_ack ({} B)", ack.len()), |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| handle_and_send(pump.node_mut(0), now, 1, black_box(&ack), &mut out));
    });
    group.throughput(Throughput::Elements(2));
    group.bench_function("round_trip (2 packets)", |b| {
        let (mut ack, mut sink) = (Vec::with_capacity(2048), Vec::with_capacity(2048));
        b.iter(|| {
            handle_and_send(pump.node_mut(1), now, 0, black_box(&ping), &mut ack);
            handle_and_send(pump.node_mut(0), now, 1, &ack, &mut sink)
        });
    });
    group.finish();

    // A ping that carries updates: node 0 has just learned `k` nodes.
    let mut group = c.benchmark_group("ping_ack_piggyback");
    group.throughput(Throughput::Elements(1));
    for k in [1usize, 4, 8] {
        let (mut pump, ping) = ping_with_updates(k);
        let now = pump.now;
        group.bench_function(
            format!(
                "handle_ping_send_ack/sender_learned_{k}_nodes ({} B)",
                ping.len()
            ),
            |b| {
                let mut out = Vec::with_capacity(2048);
                b.iter(|| handle_and_send(pump.node_mut(1), now, 0, black_box(&ping), &mut out));
            },
        );
    }
    group.finish();
}

fn indirect_probe(c: &mut Criterion) {
    let mut pump = bench_cluster(|i| config(i as u64));
    pump.run_for(Duration::from_secs(20));
    assert!(pump.quiet(), "the cluster converged");
    // Node 2 stops answering, frozen as it was; node 0 asks node 1 to probe it.
    let mut target = pump.crash(2).expect("node 2 is running");
    let (_, _, ping_req) = pump.capture(Duration::from_secs(10), |pump, from, to, bytes| {
        if from != 0 || to != 1 {
            return false;
        }
        // A ping-req makes the helper ping the target.
        let now = pump.now;
        let helper = pump.node_mut(1);
        helper.handle_packet(now, addr(0), bytes);
        sent(helper).iter().any(|(to, _)| *to == addr(2))
    });
    let now = pump.now;
    let mut group = c.benchmark_group("indirect_probe");
    group.throughput(Throughput::Elements(4));
    group.bench_function(
        format!(
            "ping_req→ping→ack→ack (4 packets, ping-req {} B)",
            ping_req.len()
        ),
        |b| {
            let (mut a, mut bb) = (Vec::with_capacity(2048), Vec::with_capacity(2048));
            b.iter(|| {
                // helper 1: ping-req from 0 → ping to 2
                let sent = handle_and_send(pump.node_mut(1), now, 0, black_box(&ping_req), &mut a);
                debug_assert_eq!(sent, 1);
                // target 2: ping → ack to 1
                handle_and_send(&mut target, now, 1, &a, &mut bb);
                // helper 1: ack → relayed ack to 0
                handle_and_send(pump.node_mut(1), now, 2, &bb, &mut a);
                // requester 0: the relayed ack
                handle_and_send(pump.node_mut(0), now, 1, &a, &mut bb)
            });
        },
    );
    group.finish();
}

fn join_replies(c: &mut Criterion) {
    let mut group = c.benchmark_group("join");
    group.sample_size(20);
    let (now, wall) = epoch();
    for rows in [100usize, 1000, 10_000] {
        let mut seed = big_node(0, rows, now, wall);
        let joiner = rows + 7;
        let capture = join_reply(&mut seed, 0, joiner, now, wall);
        let bytes: usize = capture.chunks.iter().map(Vec::len).sum();
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(
            format!(
                "seed_handles_join/{rows}_rows ({} chunks, {bytes} B)",
                capture.chunks.len()
            ),
            |b| {
                let mut out = Vec::with_capacity(2048);
                b.iter(|| {
                    handle_and_send(
                        &mut seed,
                        now,
                        joiner,
                        black_box(&capture.join_packet),
                        &mut out,
                    )
                });
            },
        );
        group.bench_function(format!("joiner_applies_reply/{rows}_rows"), |b| {
            b.iter_batched(
                || joining_node(joiner, 0, now, wall),
                |mut node| {
                    let mut out = Vec::new();
                    for chunk in &capture.chunks {
                        handle_and_send(&mut node, now, 0, chunk, &mut out);
                    }
                    assert_eq!(node.tracker().len(), rows + 1);
                    node
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

fn envelope(c: &mut Criterion) {
    let (mut pump, ping) = quiet_ping();
    let now = pump.now;
    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    // Node 2 is not the ping's target: it decodes the whole packet, validates it
    // and drops it, so this is decoding alone.
    group.bench_function(format!("decode_ping ({} B)", ping.len()), |b| {
        b.iter(|| {
            pump.node_mut(2)
                .handle_packet(now, addr(0), black_box(&ping))
        });
    });
    assert!(pump.node(2).stats().dropped(DropReason::WrongTarget) > 0);
    // `new_node` on a member already online queues one digest packet (Sync, 128-byte
    // digest); `poll_transmit` encodes it.
    group.bench_function(
        "encode_digest_packet (new_node of a known member + poll_transmit)",
        |b| {
            b.iter(|| {
                let node = pump.node_mut(0);
                node.new_node(now, name(1), addr(1)).expect("known member");
                let t = node.poll_transmit().expect("one digest packet");
                black_box(t.payload.len())
            });
        },
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = ping_ack, indirect_probe, join_replies, envelope
}
criterion_main!(benches);
