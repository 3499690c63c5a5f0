//! The tracker at scale: merging 10,000 rows (new and already known), and the
//! anti-entropy digest exchange (equal digests, one differing bucket).
//!
//! The tracker's merge is internal, so rows arrive the way they do in a cluster:
//! as the JoinReply chunks a seed that tracks 10,000 nodes really sent.
//!
//! Run: `cargo bench -p beethoven-core --bench tracker`

use std::hint::black_box;
use std::time::Duration;

use beethoven_core::Node;
use beethoven_pump::lone::{big_node, join_reply, joining_node, quieten, sent};
use beethoven_pump::{addr, epoch, name};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const ROWS: usize = 10_000;
/// The joiner's index (its name and address).
const JOINER: usize = 20_000;

fn apply(node: &mut Node, now: std::time::Instant, from: usize, packets: &[Vec<u8>]) -> usize {
    let mut sent = 0;
    for packet in packets {
        node.handle_packet(now, addr(from), packet);
        while node.poll_event().is_some() {}
        while node.poll_transmit().is_some() {
            sent += 1;
        }
    }
    sent
}

fn tracker(c: &mut Criterion) {
    let (now, wall) = epoch();
    let mut seed = big_node(0, ROWS, now, wall);
    let capture = join_reply(&mut seed, 0, JOINER, now, wall);

    let mut group = c.benchmark_group("tracker");
    group.sample_size(20);
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function(
        format!(
            "merge_{ROWS}_new_rows ({} JoinReply chunks)",
            capture.chunks.len()
        ),
        |b| {
            b.iter_batched(
                || joining_node(JOINER, 0, now, wall),
                |mut node| {
                    apply(&mut node, now, 0, &capture.chunks);
                    assert_eq!(node.tracker().len(), ROWS + 1);
                    node
                },
                BatchSize::LargeInput,
            );
        },
    );
    let mut joiner = joining_node(JOINER, 0, now, wall);
    apply(&mut joiner, now, 0, &capture.chunks);
    group.bench_function(format!("merge_{ROWS}_known_rows"), |b| {
        b.iter(|| apply(&mut joiner, now, 0, black_box(&capture.chunks)));
    });
    group.finish();

    // The joiner now holds the seed's rows: their digests agree.
    quieten(&mut joiner, now, 0);
    assert_eq!(
        joiner.tracker(),
        seed.tracker(),
        "seed and joiner converged"
    );
    joiner
        .new_node(now, name(0), addr(0))
        .expect("the seed is a known member");
    let sync = sent(&mut joiner);
    assert_eq!(sync.len(), 1, "one digest packet");
    let sync = &sync[0].1;

    let mut group = c.benchmark_group("anti_entropy");
    group.throughput(Throughput::Elements(1));
    group.bench_function(
        format!("digest_equal/{ROWS}_rows ({} B)", sync.len()),
        |b| {
            b.iter(|| {
                let sent = apply(
                    &mut seed,
                    now,
                    JOINER,
                    std::slice::from_ref(black_box(sync)),
                );
                debug_assert_eq!(sent, 0, "equal digests: nothing to repair");
                sent
            });
        },
    );
    group.bench_function(format!("send_digest/{ROWS}_rows"), |b| {
        b.iter(|| {
            joiner
                .new_node(now, name(0), addr(0))
                .expect("the seed is a known member");
            let t = joiner.poll_transmit().expect("one digest packet");
            black_box(t.payload.len())
        });
    });
    // One row the joiner lacks: the seed answers with that bucket's rows.
    let extra = 30_000;
    seed.new_node(now, name(extra), addr(extra))
        .expect("room in the tracker");
    quieten(&mut seed, now, 1);
    let repair = apply(&mut seed, now, JOINER, std::slice::from_ref(sync));
    assert!(
        repair >= 2,
        "rows of the differing bucket and a digest back"
    );
    group.sample_size(20);
    group.bench_function(
        format!("one_bucket_differs/{ROWS}_rows ({repair} packets sent)"),
        |b| {
            b.iter(|| {
                apply(
                    &mut seed,
                    now,
                    JOINER,
                    std::slice::from_ref(black_box(sync)),
                )
            })
        },
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = tracker
}
criterion_main!(benches);
