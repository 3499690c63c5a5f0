//! Heap allocations on the steady-state path: a quiet cluster probing itself
//! (ping → ack, anti-entropy digests that match) must not allocate at all.
//!
//! One test per file: dhat counts the whole process, so nothing may run beside it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use beethoven_core::chrono::DateTime;
use beethoven_core::{Config, Node, NodeName, Seed};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// A three-node cluster with a network that reuses its buffers, so the harness
/// itself allocates nothing once warm.
struct Quiet {
    nodes: Vec<Node>,
    addrs: Vec<SocketAddr>,
    /// Datagrams waiting: (from, to index, buffer index).
    queue: VecDeque<(SocketAddr, usize, usize)>,
    buffers: Vec<Vec<u8>>,
    free: Vec<usize>,
    now: Instant,
}

impl Quiet {
    fn new() -> Self {
        #[allow(clippy::disallowed_methods)] // the harness's epoch; only offsets matter
        let now = Instant::now();
        let wall = DateTime::from_timestamp_millis(1_764_000_000_000).expect("in range");
        let addrs: Vec<SocketAddr> = (0..3u16)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 7000 + i)))
            .collect();
        let mut nodes: Vec<Node> = (0..3)
            .map(|i| {
                let name = NodeName::new(&format!("node-{i}")).expect("valid");
                let config = Config::for_cluster("alloc").with_rng_seed(i as u64);
                Node::new(config, name, addrs[i], now, wall).expect("valid config")
            })
            .collect();
        for node in nodes.iter_mut().skip(1) {
            node.join(now, &[Seed::Addr(addrs[0])])
                .expect("join starts");
        }
        Self {
            nodes,
            addrs,
            queue: VecDeque::with_capacity(256),
            buffers: (0..256).map(|_| Vec::with_capacity(2048)).collect(),
            free: (0..256).collect(),
            now,
        }
    }

    fn drain(&mut self, i: usize) {
        while self.nodes[i].poll_event().is_some() {}
        while let Some(t) = self.nodes[i].poll_transmit() {
            let to = self
                .addrs
                .iter()
                .position(|a| *a == t.to)
                .expect("known address");
            let slot = self.free.pop().expect("256 buffers are plenty for 3 nodes");
            self.buffers[slot].clear();
            self.buffers[slot].extend_from_slice(t.payload);
            self.queue.push_back((self.addrs[i], to, slot));
        }
    }

    fn deliver_all(&mut self) {
        while let Some((from, to, slot)) = self.queue.pop_front() {
            let bytes = std::mem::take(&mut self.buffers[slot]);
            self.nodes[to].handle_packet(self.now, from, &bytes);
            self.buffers[slot] = bytes;
            self.free.push(slot);
            self.drain(to);
        }
    }

    fn run_for(&mut self, duration: Duration) -> u64 {
        let until = self.now + duration;
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
        self.deliver_all();
        let mut handled = 0;
        loop {
            let next = (0..self.nodes.len())
                .filter_map(|i| self.nodes[i].poll_timeout().map(|at| (at, i)))
                .min();
            let Some((at, i)) = next.filter(|(at, _)| *at <= until) else {
                break;
            };
            self.now = self.now.max(at);
            self.nodes[i].handle_timeout(self.now);
            self.drain(i);
            self.deliver_all();
            handled += 1;
        }
        self.now = until;
        handled
    }
}

#[test]
fn a_quiet_cluster_probes_without_allocating() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let mut cluster = Quiet::new();
    // Join, spread, and let every buffer reach its working size (the slowest
    // periodic task, the 30 s seed re-probe, included).
    cluster.run_for(Duration::from_secs(35));
    assert!(
        cluster
            .nodes
            .iter()
            .all(|n| n.tracker().online_count() == 3)
    );
    assert!(cluster.nodes.iter().all(|n| n.pending_updates() == 0));
    let sent_before: u64 = cluster.nodes.iter().map(|n| n.stats().packets_sent).sum();
    let before = dhat::HeapStats::get();
    let timeouts = cluster.run_for(Duration::from_secs(60));
    let after = dhat::HeapStats::get();
    let sent: u64 = cluster
        .nodes
        .iter()
        .map(|n| n.stats().packets_sent)
        .sum::<u64>()
        - sent_before;
    assert!(
        sent > 2000 && timeouts > 1000,
        "the minute was busy: {sent} packets"
    );
    assert_eq!(
        after.total_blocks - before.total_blocks,
        0,
        "allocations during {sent} steady-state packets"
    );
}
