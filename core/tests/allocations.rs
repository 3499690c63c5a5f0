//! Heap allocations on the steady-state path: a quiet cluster probing itself
//! (ping → ack, anti-entropy digests that match) must not allocate at all.
//!
//! The pump reuses its datagram buffers, so once warm it allocates nothing
//! itself; with its event log off, every allocation counted is the core's.
//!
//! One test per file, without libtest (`harness = false`): dhat counts the whole
//! process, so nothing may run beside it, and libtest's own thread allocates now
//! and then while it waits.

use std::time::Duration;

use beethoven_pump::Pump;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn a_quiet_cluster_probes_without_allocating() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut cluster = Pump::cluster(3, 0);
    cluster.record_events = false;
    // Join, spread, and let every buffer reach its working size (the slowest
    // periodic task, the 30 s seed re-probe, included).
    cluster.run_for(Duration::from_secs(35));
    let nodes = || cluster.live().map(|i| cluster.node(i));
    assert!(nodes().all(|n| n.tracker().online_count() == 3));
    assert!(nodes().all(|n| n.pending_updates() == 0));
    let sent_before: u64 = nodes().map(|n| n.stats().packets_sent).sum();
    let timeouts_before = cluster.timeouts;
    let buffers = cluster.net.buffers();
    let before = dhat::HeapStats::get();
    cluster.run_for(Duration::from_secs(60));
    let after = dhat::HeapStats::get();
    let nodes = || cluster.live().map(|i| cluster.node(i));
    let sent = nodes().map(|n| n.stats().packets_sent).sum::<u64>() - sent_before;
    let timeouts = cluster.timeouts - timeouts_before;
    // With probe slots a quiet node of three wakes about 4.6 times a second
    // (831 timer wakeups in the minute; over 1000 before them).
    assert!(
        sent > 2000 && timeouts > 600,
        "the minute was busy: {sent} packets, {timeouts} timer wakeups"
    );
    assert_eq!(
        cluster.net.buffers(),
        buffers,
        "the pump reused its buffers"
    );
    assert_eq!(
        after.total_blocks - before.total_blocks,
        0,
        "allocations during {sent} steady-state packets"
    );
}

#[allow(clippy::print_stdout)] // the test's report line, as libtest would print it
fn main() {
    a_quiet_cluster_probes_without_allocating();
    println!("test a_quiet_cluster_probes_without_allocating ... ok");
}
