//! The pump: many nodes on one [`Network`], in virtual time that jumps to the
//! next datagram or deadline.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use beethoven_core::chrono::{DateTime, Utc};
use beethoven_core::{Config, Event, Node, NodeName, Seed};

use crate::network::{InFlight, Network};
use crate::{addr, config, epoch, name};

/// Steps one `run_*` call may take before the pump calls it a livelock.
const MAX_STEPS: u64 = 50_000_000;

/// Many nodes, a seeded network and virtual time.
///
/// Node `i` is `nodes[i]` (`None` once crashed), named `names[i]` at `addrs[i]`.
/// After every input a node gets, the pump drains it as a runtime would: its
/// datagrams go into the network, its events into `events[i]`.
#[derive(Debug)]
pub struct Pump {
    /// The running processes; `None` after a crash.
    pub nodes: Vec<Option<Node>>,
    /// Each node's name (kept across crashes and restarts).
    pub names: Vec<NodeName>,
    /// Each node's current address.
    pub addrs: Vec<SocketAddr>,
    /// Every event each node emitted, with the time.
    pub events: Vec<Vec<(Instant, Event)>>,
    /// Whether events are kept in `events` (on); off, they are dropped as drained,
    /// so that a long quiet run grows no log.
    pub record_events: bool,
    /// Time zero of the run.
    pub epoch: Instant,
    /// The current virtual time.
    pub now: Instant,
    wall: DateTime<Utc>,
    /// The network between the nodes.
    pub net: Network,
    /// Datagrams handed to a node.
    pub delivered: u64,
    /// Unreachable hints handed to a node.
    pub hints_delivered: u64,
    /// Deadlines a node was woken for.
    pub timeouts: u64,
    /// While [`Pump::capture`] runs: the datagrams delivered, as (from, to, bytes).
    pub(crate) tap: Option<Vec<(usize, usize, Vec<u8>)>>,
}

impl Pump {
    /// An empty pump whose network is seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        let (now, wall) = epoch();
        Self {
            nodes: Vec::new(),
            names: Vec::new(),
            addrs: Vec::new(),
            events: Vec::new(),
            record_events: true,
            epoch: now,
            now,
            wall,
            net: Network::new(seed),
            delivered: 0,
            hints_delivered: 0,
            timeouts: 0,
            tap: None,
        }
    }

    /// `n` nodes with [`config`]`(seed * 1000 + i)`; node 0 starts alone, every
    /// other one joins through node 0.
    pub fn cluster(n: usize, seed: u64) -> Self {
        Self::cluster_with(n, seed, |i| config(seed * 1000 + i as u64))
    }

    /// `n` nodes with `config(i)` each; node 0 starts alone, every other one joins
    /// through node 0.
    pub fn cluster_with(n: usize, seed: u64, mut config: impl FnMut(usize) -> Config) -> Self {
        let mut pump = Self::new(seed);
        for i in 0..n {
            pump.add_node(config(i));
        }
        for i in 1..n {
            pump.join(i, &[Seed::Addr(pump.addrs[0])]);
        }
        pump
    }

    /// The wall clock now.
    pub fn wall_now(&self) -> DateTime<Utc> {
        self.wall + (self.now - self.epoch)
    }

    /// Starts node `i` = the next index, named [`name`]`(i)` at [`addr`]`(i)`,
    /// standalone. Returns `i`.
    pub fn add_node(&mut self, config: Config) -> usize {
        let i = self.nodes.len();
        self.add_node_named(config, name(i), addr(i))
    }

    /// Starts the next node with this name and address, standalone. Returns its index.
    pub fn add_node_named(&mut self, config: Config, name: NodeName, addr: SocketAddr) -> usize {
        let node = Node::new(config, name.clone(), addr, self.now, self.wall_now())
            .expect("the pump's configs are valid");
        self.nodes.push(Some(node));
        self.names.push(name);
        self.addrs.push(addr);
        self.events.push(Vec::new());
        let i = self.nodes.len() - 1;
        self.drain(i);
        i
    }

    /// Replaces node `i` by a fresh process with the same name (at `new_addr`,
    /// which may be its old one); it joins through node `seed`.
    pub fn restart(&mut self, i: usize, new_addr: SocketAddr, seed: usize, config: Config) {
        let node = Node::new(
            config,
            self.names[i].clone(),
            new_addr,
            self.now,
            self.wall_now(),
        )
        .expect("the pump's configs are valid");
        self.addrs[i] = new_addr;
        self.nodes[i] = Some(node);
        self.drain(i);
        self.join(i, &[Seed::Addr(self.addrs[seed])]);
    }

    /// Node `i`, which must be running.
    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("callers name a running node")
    }

    /// Node `i`, which must be running. Drain it after a command ([`Pump::drain`]).
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().expect("callers name a running node")
    }

    /// Node `i` joins through `seeds`.
    pub fn join(&mut self, i: usize, seeds: &[Seed]) {
        let now = self.now;
        self.node_mut(i)
            .join(now, seeds)
            .expect("a running node can start a join");
        self.drain(i);
    }

    /// Stops node `i` at once: no leave, no more deadlines; datagrams to it are
    /// lost (or bounce, see [`Network::hosts_stay_up`]). Returns the stopped
    /// process, frozen as it was.
    pub fn crash(&mut self, i: usize) -> Option<Node> {
        self.nodes[i].take()
    }

    /// The indices of the running nodes.
    pub fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].is_some())
    }

    /// Drains node `i`'s output: datagrams into the network, events into the log.
    pub fn drain(&mut self, i: usize) {
        let Some(node) = self.nodes[i].as_mut() else {
            return;
        };
        let from = (i, self.addrs[i]);
        let max = node.config().max_packet_size;
        while let Some(t) = node.poll_transmit() {
            assert!(t.payload.len() <= max, "a packet over max_packet_size");
            let to = (self.addrs.iter().position(|a| *a == t.to), t.to);
            self.net.send(self.now, from, to, t.payload, max);
        }
        while let Some(event) = node.poll_event() {
            if self.record_events {
                self.events[i].push((self.now, event));
            }
        }
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now + duration;
        let mut steps = 0u64;
        while self.step(until) {
            steps += 1;
            assert!(steps < MAX_STEPS, "livelock: too many steps");
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
        let mut steps = 0u64;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if !self.step(until) {
                self.now = until;
                return done(self).then(|| self.now - start);
            }
            steps += 1;
            assert!(steps < MAX_STEPS, "livelock: too many steps");
        }
    }

    /// Advances to the next datagram or deadline and handles it; false when
    /// nothing is left before `until`.
    pub(crate) fn step(&mut self, until: Instant) -> bool {
        let packet_at = self.net.next_at();
        let timer = self
            .live()
            .filter_map(|i| self.node(i).poll_timeout().map(|at| (at, i)))
            .min();
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
            let packet = self.net.pop().expect("a datagram arrives at `packet_at`");
            self.deliver(packet);
        } else if let Some((_, i)) = timer {
            let now = self.now;
            self.node_mut(i).handle_timeout(now);
            self.timeouts += 1;
            self.drain(i);
        }
        true
    }

    fn deliver(&mut self, packet: InFlight) {
        let now = self.now;
        let to = self.addrs.iter().position(|a| *a == packet.to);
        match to {
            Some(j) if self.nodes[j].is_some() => {
                if packet.unreachable {
                    // `to` is the original sender; `from` the address that bounced.
                    self.node_mut(j).handle_unreachable(now, packet.from);
                    self.hints_delivered += 1;
                } else {
                    self.node_mut(j)
                        .handle_packet(now, packet.from, &packet.bytes);
                    self.delivered += 1;
                    let from = self.addrs.iter().position(|a| *a == packet.from);
                    if let (Some(tap), Some(from)) = (&mut self.tap, from) {
                        tap.push((from, j, packet.bytes.clone()));
                    }
                }
                self.net.recycle(packet.bytes);
                self.drain(j);
            }
            Some(_) if self.net.hosts_stay_up && !packet.unreachable => {
                self.net.bounce(now, &packet);
                self.net.recycle(packet.bytes);
            }
            _ => self.net.recycle(packet.bytes),
        }
    }
}
