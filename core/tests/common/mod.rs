//! A small in-test message pump: many `Node`s, a seeded network with latency, loss
//! and blocked links, and virtual time that jumps to the next event. The testkit
//! crate has the full simulator; this one keeps the core's own tests free of it.

#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use beethoven_core::chrono::{DateTime, Utc};
use beethoven_core::{Config, Event, Health, Mode, Node, NodeName, NodeStatus, Seed, TrackerRow};

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    /// A "port unreachable" hint: `from` bounced a datagram; tell `to`.
    unreachable: bool,
    bytes: Vec<u8>,
}

pub struct Pump {
    pub nodes: Vec<Option<Node>>,
    pub names: Vec<NodeName>,
    pub addrs: Vec<SocketAddr>,
    /// Every event each node emitted, with the time.
    pub events: Vec<Vec<(Instant, Event)>>,
    pub epoch: Instant,
    pub now: Instant,
    wall: DateTime<Utc>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    pub latency: Duration,
    pub loss: f64,
    /// Directed links that drop everything: (from index, to index).
    pub blocked: BTreeSet<(usize, usize)>,
    rng: fastrand::Rng,
    pub delivered: u64,
    /// Crashed processes leave their host up: datagrams to them bounce with an
    /// unreachable hint back to the sender.
    pub hosts_stay_up: bool,
    pub hints_delivered: u64,
}

pub fn name(i: usize) -> NodeName {
    NodeName::new(&format!("node-{i}")).expect("valid name")
}

pub fn addr(i: usize, port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], port))
}

pub fn config(seed: u64) -> Config {
    Config::for_cluster("pump").with_rng_seed(seed)
}

impl Pump {
    pub fn new(seed: u64) -> Self {
        #[allow(clippy::disallowed_methods)] // the pump's epoch; only offsets matter
        let epoch = Instant::now();
        Self {
            nodes: Vec::new(),
            names: Vec::new(),
            addrs: Vec::new(),
            events: Vec::new(),
            epoch,
            now: epoch,
            wall: DateTime::from_timestamp_millis(1_764_000_000_000).expect("in range"),
            queue: BinaryHeap::new(),
            seq: 0,
            latency: Duration::from_millis(1),
            loss: 0.0,
            blocked: BTreeSet::new(),
            rng: fastrand::Rng::with_seed(seed),
            delivered: 0,
            hosts_stay_up: false,
            hints_delivered: 0,
        }
    }

    /// `n` nodes; node 0 starts alone, every other one joins through node 0.
    pub fn cluster(n: usize, seed: u64) -> Self {
        let mut pump = Self::new(seed);
        for i in 0..n {
            pump.add_node(config(seed * 1000 + i as u64));
        }
        for i in 1..n {
            pump.join(i, &[Seed::Addr(pump.addrs[0])]);
        }
        pump
    }

    pub fn wall_now(&self) -> DateTime<Utc> {
        self.wall + (self.now - self.epoch)
    }

    pub fn add_node(&mut self, config: Config) -> usize {
        let i = self.nodes.len();
        self.add_node_named(config, name(i), addr(i, 7946))
    }

    pub fn add_node_named(&mut self, config: Config, name: NodeName, addr: SocketAddr) -> usize {
        let node = Node::new(config, name.clone(), addr, self.now, self.wall_now())
            .expect("test config is valid");
        self.nodes.push(Some(node));
        self.names.push(name);
        self.addrs.push(addr);
        self.events.push(Vec::new());
        let i = self.nodes.len() - 1;
        self.drain(i);
        i
    }

    /// Replaces node `i` by a fresh process with the same name (optionally at a new
    /// address); it joins through `seed`.
    pub fn restart(&mut self, i: usize, new_addr: SocketAddr, seed: usize, config: Config) {
        let node = Node::new(
            config,
            self.names[i].clone(),
            new_addr,
            self.now,
            self.wall_now(),
        )
        .expect("test config is valid");
        self.addrs[i] = new_addr;
        self.nodes[i] = Some(node);
        self.drain(i);
        self.join(i, &[Seed::Addr(self.addrs[seed])]);
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().expect("node is running")
    }

    pub fn join(&mut self, i: usize, seeds: &[Seed]) {
        let now = self.now;
        self.node_mut(i).join(now, seeds).expect("join starts");
        self.drain(i);
    }

    pub fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    pub fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].is_some())
    }

    /// Drains node `i`'s output into the network and the event log.
    pub fn drain(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let from = self.addrs[i];
        let max = node.config().max_packet_size;
        while let Some(t) = node.poll_transmit() {
            assert!(t.payload.len() <= max);
            let to = t.to;
            let bytes = t.payload.to_vec();
            let to_index = self.addrs.iter().position(|a| *a == to);
            let blocked = to_index.is_some_and(|j| self.blocked.contains(&(i, j)));
            if blocked || (self.loss > 0.0 && self.rng.f64() < self.loss) {
                continue;
            }
            let jitter = Duration::from_micros(self.rng.u64(0..500));
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at: self.now + self.latency + jitter,
                seq: self.seq,
                from,
                to,
                unreachable: false,
                bytes,
            }));
        }
        while let Some(event) = node.poll_event() {
            self.events[i].push((self.now, event));
        }
    }

    fn next_timer(&self) -> Option<(Instant, usize)> {
        self.live()
            .filter_map(|i| self.node(i).poll_timeout().map(|at| (at, i)))
            .min()
    }

    /// Advances to the next event; false when nothing is left before `until`.
    fn step(&mut self, until: Instant) -> bool {
        let packet_at = self.queue.peek().map(|Reverse(p)| p.at);
        let timer = self.next_timer();
        let next = match (packet_at, timer) {
            (Some(p), Some((t, _))) => p.min(t),
            (Some(p), None) => p,
            (None, Some((t, _))) => t,
            (None, None) => return false,
        };
        if next > until {
            return false;
        }
        self.now = self.now.max(next);
        if packet_at == Some(next) {
            let Reverse(packet) = self.queue.pop().expect("peeked");
            let now = self.now;
            let target = self.addrs.iter().position(|a| *a == packet.to);
            match target {
                Some(j) if self.nodes[j].is_some() => {
                    if packet.unreachable {
                        // `to` is the original sender; `from` the address that bounced.
                        self.node_mut(j).handle_unreachable(now, packet.from);
                        self.hints_delivered += 1;
                    } else {
                        self.node_mut(j)
                            .handle_packet(now, packet.from, &packet.bytes);
                        self.delivered += 1;
                    }
                    self.drain(j);
                }
                Some(_) if self.hosts_stay_up && !packet.unreachable => {
                    self.seq += 1;
                    self.queue.push(Reverse(InFlight {
                        at: now + self.latency,
                        seq: self.seq,
                        from: packet.to,
                        to: packet.from,
                        unreachable: true,
                        bytes: Vec::new(),
                    }));
                }
                _ => {}
            }
        } else if let Some((_, i)) = timer {
            let now = self.now;
            self.node_mut(i).handle_timeout(now);
            self.drain(i);
        }
        true
    }

    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        let mut steps = 0u64;
        while self.step(until) {
            steps += 1;
            assert!(steps < 50_000_000, "livelock: too many steps");
        }
        self.now = until;
    }

    /// Runs until `done` holds (checked after every step) or `limit` passes.
    /// Returns the time it took, or `None` on timeout.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Pump) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let until = self.now + limit;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if !self.step(until) {
                self.now = until;
                return done(self).then(|| self.now - start);
            }
        }
    }

    pub fn row(&self, i: usize, of: usize) -> Option<&TrackerRow> {
        self.node(i).row(&self.names[of])
    }

    pub fn status(&self, i: usize, of: usize) -> Option<NodeStatus> {
        self.row(i, of).map(|r| r.status)
    }

    /// Every live node holds identical trackers.
    pub fn converged(&self) -> bool {
        let mut live = self.live();
        let Some(first) = live.next() else {
            return true;
        };
        live.all(|i| self.node(i).tracker() == self.node(first).tracker())
    }

    /// Every live node sees every live node online.
    pub fn all_live_online(&self) -> bool {
        let live: Vec<usize> = self.live().collect();
        live.iter().all(|&i| {
            live.iter()
                .all(|&j| self.status(i, j) == Some(NodeStatus::Online))
        })
    }

    /// Every live node sees `of` with this health.
    pub fn all_see(&self, of: usize, health: Health) -> bool {
        self.live()
            .filter(|&i| i != of)
            .all(|i| self.row(i, of).is_some_and(|r| r.health == health))
    }

    /// Offline notifications node `i` emitted about `about`.
    pub fn offline_updates(&self, i: usize, about: &NodeName) -> usize {
        self.events[i]
            .iter()
            .filter(|(_, e)| {
                matches!(e, Event::NodeUpdate { node, status: NodeStatus::Offline, .. } if node == about)
            })
            .count()
    }

    /// How many times any node wrote `about` offline in its tracker.
    pub fn offline_writes(&self, about: &NodeName) -> usize {
        self.events
            .iter()
            .flatten()
            .filter(|(_, e)| match e {
                Event::Tracker(t) => {
                    t.new_row.node == *about
                        && t.new_row.status == NodeStatus::Offline
                        && t.old_row
                            .as_ref()
                            .is_some_and(|o| o.status == NodeStatus::Online)
                }
                _ => false,
            })
            .count()
    }

    pub fn mode(&self, i: usize) -> Mode {
        self.node(i).mode()
    }

    /// Checks that notifications follow the tracker's online/offline transitions
    /// exactly, in order, and are never about the node itself.
    pub fn check_notifications(&self, i: usize) {
        let mut expected = Vec::new();
        let mut actual = Vec::new();
        for (_, event) in &self.events[i] {
            match event {
                Event::Tracker(t) if t.new_row.node != self.names[i] => {
                    let before = t.old_row.as_ref().map(|r| r.status);
                    let after = t.new_row.status;
                    let flip = match before {
                        Some(b) => b != after,
                        None => after == NodeStatus::Online,
                    };
                    if flip && t.op == beethoven_core::Op::Write {
                        expected.push((t.new_row.node.clone(), after));
                    }
                }
                Event::NodeUpdate { node, status, .. } => {
                    assert_ne!(*node, self.names[i], "a node is never told about itself");
                    actual.push((node.clone(), *status));
                }
                _ => {}
            }
        }
        assert_eq!(actual, expected, "notifications of node {i}");
    }
}
