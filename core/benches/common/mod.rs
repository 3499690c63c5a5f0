//! Shared harness of the core benchmarks: nodes, an in-memory network, and packets
//! captured from real nodes (the wire codec is internal, so every packet a bench
//! feeds is one a node really sent).
//!
//! Each bench file uses a part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use beethoven_core::chrono::{DateTime, Utc};
use beethoven_core::{Config, DropReason, Node, NodeName, Seed};

/// The benchmark's epoch. Only offsets from it matter.
pub(crate) fn epoch() -> (Instant, DateTime<Utc>) {
    #[allow(clippy::disallowed_methods)] // the harness's epoch; the core only sees offsets
    let now = Instant::now();
    let wall = DateTime::from_timestamp_millis(1_764_000_000_000).expect("in range");
    (now, wall)
}

/// Address of node `i`: distinct for up to 2^24 nodes.
pub(crate) fn addr(i: usize) -> SocketAddr {
    let i = i as u32;
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7946))
}

/// Name of node `i` (inline-sized, like most real names).
pub(crate) fn name(i: usize) -> NodeName {
    NodeName::new(&format!("node-{i:05}@10.0.0.1")).expect("valid name")
}

/// Node `i` with the LAN defaults and its own seed.
pub(crate) fn node(i: usize, now: Instant, wall: DateTime<Utc>) -> Node {
    node_with(i, now, wall, config(i))
}

/// The LAN defaults with node `i`'s seed.
pub(crate) fn config(i: usize) -> Config {
    Config::for_cluster("bench").with_rng_seed(i as u64)
}

/// Node `i` with `config`.
pub(crate) fn node_with(i: usize, now: Instant, wall: DateTime<Utc>, config: Config) -> Node {
    Node::new(config, name(i), addr(i), now, wall).expect("valid config")
}

/// Every queued datagram of `node`, copied out; events are dropped.
pub(crate) fn drain(node: &mut Node) -> Vec<(SocketAddr, Vec<u8>)> {
    while node.poll_event().is_some() {}
    let mut out = Vec::new();
    while let Some(t) = node.poll_transmit() {
        out.push((t.to, t.payload.to_vec()));
    }
    out
}

/// Drops everything `node` wants to say.
pub(crate) fn discard(node: &mut Node) {
    while node.poll_event().is_some() {}
    while node.poll_transmit().is_some() {}
}

/// Nodes `0..n` on a lossless, zero-latency in-memory network.
pub(crate) struct Net {
    pub(crate) nodes: Vec<Node>,
    pub(crate) now: Instant,
    pub(crate) wall: DateTime<Utc>,
    /// Nodes whose datagrams are lost both ways.
    pub(crate) down: Vec<bool>,
    queue: VecDeque<(usize, usize, Vec<u8>)>,
    /// When set, every datagram delivered is also recorded here.
    pub(crate) tap: Option<Vec<(usize, usize, Vec<u8>)>>,
}

impl Net {
    /// `n` nodes with the defaults, all joining through node 0.
    pub(crate) fn joined(n: usize) -> Self {
        Self::joined_with(n, config)
    }

    /// `n` nodes with `config(i)` each, all joining through node 0.
    pub(crate) fn joined_with(n: usize, config: impl Fn(usize) -> Config) -> Self {
        let (now, wall) = epoch();
        let mut nodes: Vec<Node> = (0..n).map(|i| node_with(i, now, wall, config(i))).collect();
        for node in nodes.iter_mut().skip(1) {
            node.join(now, &[Seed::Addr(addr(0))]).expect("join starts");
        }
        Self {
            nodes,
            now,
            wall,
            down: vec![false; n],
            queue: VecDeque::new(),
            tap: None,
        }
    }

    fn index(addr: SocketAddr) -> usize {
        let SocketAddr::V4(v4) = addr else {
            unreachable!("the harness only hands out IPv4 addresses")
        };
        let [_, a, b, c] = v4.ip().octets();
        (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c)
    }

    fn drain(&mut self, i: usize) {
        while self.nodes[i].poll_event().is_some() {}
        let n = self.nodes.len();
        while let Some(t) = self.nodes[i].poll_transmit() {
            let to = Self::index(t.to);
            if to < n {
                self.queue.push_back((i, to, t.payload.to_vec()));
            }
        }
    }

    fn deliver_all(&mut self) {
        while let Some((from, to, bytes)) = self.queue.pop_front() {
            if self.down[from] || self.down[to] {
                continue;
            }
            self.nodes[to].handle_packet(self.now, addr(from), &bytes);
            if let Some(tap) = &mut self.tap {
                tap.push((from, to, bytes));
            }
            self.drain(to);
        }
    }

    /// Runs every node's timers for `duration` of virtual time.
    pub(crate) fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
        self.deliver_all();
        loop {
            let next = (0..self.nodes.len())
                .filter(|&i| !self.down[i])
                .filter_map(|i| self.nodes[i].poll_timeout().map(|at| (at, i)))
                .min();
            let Some((at, i)) = next.filter(|(at, _)| *at <= until) else {
                break;
            };
            self.now = self.now.max(at);
            self.nodes[i].handle_timeout(self.now);
            self.drain(i);
            self.deliver_all();
        }
        self.now = until;
    }

    /// Whether every node is online in every node's tracker and nothing is pending.
    pub(crate) fn quiet(&self) -> bool {
        let n = self.nodes.len();
        self.nodes
            .iter()
            .all(|node| node.tracker().online_count() == n && node.pending_updates() == 0)
    }

    /// Runs until `pick` accepts a delivered datagram (from, to, bytes) and
    /// returns it. `pick` may use the nodes to check the datagram. Panics after
    /// `limit` of virtual time: the benchmark would measure nothing.
    pub(crate) fn capture(
        &mut self,
        limit: Duration,
        mut pick: impl FnMut(&mut Net, usize, usize, &[u8]) -> bool,
    ) -> (usize, usize, Vec<u8>) {
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        while waited < limit {
            self.tap = Some(Vec::new());
            self.run_for(step);
            waited += step;
            let tap = self.tap.take().expect("set above");
            for (from, to, bytes) in tap {
                if pick(self, from, to, &bytes) {
                    return (from, to, bytes);
                }
            }
        }
        panic!("no matching datagram within {limit:?}");
    }
}

/// Whether `bytes` is a Ping: a node that is not its target drops it as
/// `WrongTarget` (it is decoded in full first), and the target answers it.
pub(crate) fn is_ping_for(net: &mut Net, from: usize, to: usize, bytes: &[u8]) -> bool {
    let bystander = (0..net.nodes.len())
        .find(|&k| k != from && k != to)
        .expect("the check needs a third node");
    let probe = &mut net.nodes[bystander];
    let before = probe.stats().dropped(DropReason::WrongTarget);
    probe.handle_packet(net.now, addr(from), bytes);
    discard(probe);
    probe.stats().dropped(DropReason::WrongTarget) == before + 1
}

/// A node that tracks `rows` rows: itself and `rows - 1` others added with
/// `new_node`, with its dissemination queue drained so it is quiet.
pub(crate) fn big_node(i: usize, rows: usize, now: Instant, wall: DateTime<Utc>) -> Node {
    let mut node = node(i, now, wall);
    for k in (0..rows).filter(|&k| k != i).take(rows - 1) {
        node.new_node(now, name(k), addr(k))
            .expect("room in the tracker");
        discard(&mut node);
    }
    assert_eq!(node.tracker().len(), rows);
    quieten(&mut node, now, (i + 1) % rows);
    node
}

/// Sends (and drops) packets until `node` has no pending update left, using
/// `new_node` on a member it already holds online, which queues one digest packet.
pub(crate) fn quieten(node: &mut Node, now: Instant, member: usize) {
    let mut rounds = 0;
    while node.pending_updates() > 0 {
        node.new_node(now, name(member), addr(member))
            .expect("member is known");
        discard(node);
        rounds += 1;
        assert!(rounds < 1_000_000, "dissemination queue never drained");
    }
}

/// The JoinReply chunks `seed` sends to a fresh node `joiner_index` (whose Join
/// packet is captured first), at `now`.
pub(crate) fn join_reply(
    seed: &mut Node,
    seed_index: usize,
    joiner_index: usize,
    now: Instant,
    wall: DateTime<Utc>,
) -> JoinCapture {
    let mut joiner = node(joiner_index, now, wall);
    joiner
        .join(now, &[Seed::Addr(addr(seed_index))])
        .expect("join starts");
    let join = drain(&mut joiner);
    assert_eq!(join.len(), 1, "one seed, one join request");
    let join_packet = join.into_iter().next().expect("checked").1;
    seed.handle_packet(now, addr(joiner_index), &join_packet);
    let chunks: Vec<Vec<u8>> = drain(seed)
        .into_iter()
        .filter(|(to, _)| *to == addr(joiner_index))
        .map(|(_, bytes)| bytes)
        .collect();
    assert!(!chunks.is_empty(), "the seed answered the join");
    JoinCapture {
        join_packet,
        chunks,
    }
}

/// What `join_reply` captured.
pub(crate) struct JoinCapture {
    pub(crate) join_packet: Vec<u8>,
    pub(crate) chunks: Vec<Vec<u8>>,
}

/// A fresh node `i` that has sent its Join to `seed_index` and so accepts
/// JoinReply chunks.
pub(crate) fn joining_node(i: usize, seed_index: usize, now: Instant, wall: DateTime<Utc>) -> Node {
    let mut joiner = node(i, now, wall);
    joiner
        .join(now, &[Seed::Addr(addr(seed_index))])
        .expect("join starts");
    discard(&mut joiner);
    joiner
}

/// Handles `bytes` at `node` and sends what it answers into `out` (the last
/// datagram), as a runtime would. Returns the number of datagrams sent.
pub(crate) fn handle_and_send(
    node: &mut Node,
    now: std::time::Instant,
    from: usize,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> usize {
    node.handle_packet(now, addr(from), bytes);
    while node.poll_event().is_some() {}
    let mut sent = 0;
    while let Some(t) = node.poll_transmit() {
        out.clear();
        out.extend_from_slice(t.payload);
        sent += 1;
    }
    sent
}

/// A quiet three-node cluster and a Ping from node 0 to node 1 captured in it.
pub(crate) fn quiet_ping() -> (Net, Vec<u8>) {
    quiet_ping_with(config)
}

/// The same with another configuration.
pub(crate) fn quiet_ping_with(config: impl Fn(usize) -> Config) -> (Net, Vec<u8>) {
    let mut net = Net::joined_with(3, config);
    net.run_for(Duration::from_secs(20));
    assert!(net.quiet(), "the cluster converged");
    let (_, _, ping) = net.capture(Duration::from_secs(5), |net, from, to, bytes| {
        from == 0 && to == 1 && is_ping_for(net, from, to, bytes)
    });
    (net, ping)
}

/// A quiet three-node cluster in which node 0 has just learned `k` new nodes,
/// and a Ping from node 0 to node 1 that carries updates (at least `k` rows
/// worth of bytes more than a plain ping).
///
/// `new_node` sends a digest packet to each new node, and each of those carries
/// the pending updates too; the retransmit multiplier is raised (to 64) so that
/// those packets do not use up every update's budget before a ping goes out.
pub(crate) fn ping_with_updates(k: usize) -> (Net, Vec<u8>) {
    let (mut net, plain) = quiet_ping_with(|i| {
        let mut c = config(i);
        c.retransmit_mult = 64;
        // The k new nodes do not exist: as indirect-probe helpers they never nack,
        // and Lifeguard's local health would slow node 0's probing for a while.
        c.max_local_health = 0;
        c
    });
    for extra in 0..k {
        let (now, i) = (net.now, 1000 + extra);
        net.nodes[0]
            .new_node(now, name(i), addr(i))
            .expect("room in the tracker");
    }
    // A row is well over 20 bytes on the wire (name, address, incarnation, health, time).
    let min_len = plain.len() + 20 * k;
    // Node 1 is now one of k + 2 members probed in turn: allow a few rounds.
    let (_, _, ping) = net.capture(Duration::from_secs(20), |net, from, to, bytes| {
        from == 0 && to == 1 && bytes.len() >= min_len && is_ping_for(net, from, to, bytes)
    });
    (net, ping)
}
