//! Core memory per tracked row when every row carries 64 bytes of tags
//! (the target: at most 250 bytes), measured as in the allocations
//! bench: the heap growth of a node fed a 10,000-row join reply, once its
//! events are drained, divided by the rows.
//!
//! Without libtest (`harness = false`): dhat counts the whole process.

use std::time::Instant;

use beethoven_core::chrono::DateTime;
use beethoven_core::{Tags, TrackerRow};
use beethoven_pump::lone::{discard, join_reply, joining_node, node};
use beethoven_pump::{addr, name};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const ROWS: usize = 10_000;
const TAG_BYTES: usize = 64;
const TARGET: f64 = 250.0;

/// Three realistic entries, padded to exactly `TAG_BYTES` encoded bytes.
fn tags_of(k: usize) -> Tags {
    let make = |pad: usize| {
        let meta = "m".repeat(pad);
        let (role, grpc) = (format!("role-{}", k % 7), format!("{}", 7000 + k % 100));
        Tags::from_pairs([("role", role.as_str()), ("grpc", &grpc), ("meta", &meta)])
            .expect("distinct keys")
    };
    let pad = (0..TAG_BYTES)
        .rev()
        .find(|&pad| make(pad).encoded_len() <= TAG_BYTES)
        .expect("three short entries fit 64 bytes");
    let tags = make(pad);
    assert_eq!(tags.encoded_len(), TAG_BYTES);
    tags
}

/// Row `k`, alive, with its tags: built the way a saved table loads.
fn tagged_row(k: usize, wall_ms: i64) -> TrackerRow {
    let row = serde_json::json!({
        "node": name(k), "addr": addr(k), "incarnation": 1, "health": "Alive",
        "last_change_ms": wall_ms, "tags": tags_of(k),
    });
    serde_json::from_str(&row.to_string()).expect("a valid saved row")
}

fn memory_per_tagged_row() -> f64 {
    #[allow(clippy::disallowed_methods)] // any instant serves as the origin
    let now = Instant::now();
    let wall = DateTime::from_timestamp_millis(1_764_000_000_000).expect("in range");
    let mut seed = node(0, now, wall);
    seed.restore(
        now,
        (1..ROWS).map(|k| tagged_row(k, wall.timestamp_millis())),
    );
    discard(&mut seed);
    assert_eq!(seed.tracker().len(), ROWS);
    let capture = join_reply(&mut seed, 0, 20_000, now, wall);
    let before = dhat::HeapStats::get().curr_bytes;
    let mut joiner = joining_node(20_000, 0, now, wall);
    for chunk in &capture.chunks {
        joiner.handle_packet(now, addr(0), chunk);
        discard(&mut joiner);
    }
    assert_eq!(joiner.tracker().len(), ROWS + 1);
    let held = joiner.row(&name(5)).map(|row| row.tags.clone());
    assert_eq!(held, Some(tags_of(5)), "rows arrived with their tags");
    let grown = dhat::HeapStats::get().curr_bytes - before;
    drop((seed, capture));
    grown as f64 / ROWS as f64
}

#[allow(clippy::print_stdout)] // the test's report line, as libtest would print it
fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let per_row = memory_per_tagged_row();
    println!("memory per tracked row with {TAG_BYTES} B of tags: {per_row:.1} B");
    assert!(per_row <= TARGET, "{per_row:.1} B per row");
    println!("test memory_per_tracked_row_with_64_bytes_of_tags_is_at_most_250_bytes ... ok");
}
