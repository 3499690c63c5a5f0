//! The shared in-memory pump: a seeded discrete-event loop that delivers
//! datagrams after a random LAN latency and fires timers in virtual time. Both
//! libraries go through exactly this code; only the [`Engine`] differs.
//!
//! Why this is not the core's shared pump (`beethoven-pump`, in `core/pump`):
//! that one drives beethoven `Node`s alone, while foca hands out timers as
//! events to schedule rather than a deadline to poll. The comparison is fair
//! only if both libraries run through the same loop, with the same latency,
//! timer dispatch and handle-time measurement, so beethoven's side stays here
//! too.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Address of node `i` (distinct for up to 2^24 nodes).
pub fn addr(i: usize) -> SocketAddr {
    let i = i as u32;
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 7946))
}

/// The node index behind an address made by [`addr`].
pub fn index(addr: SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(v4) => {
            let [_, a, b, c] = v4.ip().octets();
            (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c)
        }
        SocketAddr::V6(_) => usize::MAX,
    }
}

/// A library driven by the pump.
pub trait Engine {
    const NAME: &'static str;
    type Timer;
    /// `n` nodes created at `now`, none joined yet.
    fn new(n: usize, seed: u64, now: Instant) -> Self;
    /// Every node but 0 joins through node 0.
    fn start(&mut self, now: Instant, out: &mut Out<Self::Timer>);
    /// Node `i` receives `bytes` from node `from`.
    fn packet(
        &mut self,
        i: usize,
        from: usize,
        bytes: &[u8],
        now: Instant,
        out: &mut Out<Self::Timer>,
    );
    /// A timer of node `i` fires.
    fn timer(&mut self, i: usize, timer: Self::Timer, now: Instant, out: &mut Out<Self::Timer>);
    /// How many *other* nodes node `i` holds as active.
    fn active_count(&self, i: usize) -> usize;
    /// Whether node `i` holds node `j` as down.
    fn sees_down(&self, i: usize, j: usize) -> bool;
    /// Calls that returned an error so far.
    fn errors(&self) -> u64 {
        0
    }
}

/// What an engine produced during one call: datagrams and timers.
pub struct Out<T> {
    pub sends: Vec<(usize, usize, Vec<u8>)>,
    pub timers: Vec<(usize, Instant, T)>,
    pool: Vec<Vec<u8>>,
}

impl<T> Out<T> {
    /// A datagram buffer (reused).
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf
    }
}

enum Kind<T> {
    Deliver {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    Wake {
        node: usize,
        timer: T,
    },
}

struct Entry<T> {
    at: Instant,
    seq: u64,
    kind: Kind<T>,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: the earliest event must compare greatest.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// What to run.
pub struct Scenario {
    pub nodes: usize,
    pub steady: Duration,
    pub converge_limit: Duration,
    pub detect_limit: Duration,
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    pub nodes: usize,
    pub join_packets: u64,
    pub join_bytes: u64,
    pub converged: Option<Duration>,
    /// When 99% of all (node, other node) pairs were known as active.
    pub converged_99: Option<Duration>,
    /// Calls the library reported as failed (foca's `Result`s; ours never fails).
    pub errors: u64,
    pub steady: Duration,
    pub steady_sent: u64,
    pub steady_bytes: u64,
    pub steady_handled: u64,
    pub steady_handle_time: Duration,
    pub detected_all: Option<Duration>,
    pub detected_median: Option<Duration>,
}

impl Outcome {
    pub fn packets_per_sec(&self) -> f64 {
        self.steady_handled as f64 / self.steady_handle_time.as_secs_f64()
    }
    pub fn steady_bytes_per_packet(&self) -> f64 {
        self.steady_bytes as f64 / self.steady_sent.max(1) as f64
    }
    pub fn packets_per_node_sec(&self) -> f64 {
        self.steady_sent as f64 / self.nodes as f64 / self.steady.as_secs_f64()
    }
    pub fn join_bytes_per_packet(&self) -> f64 {
        self.join_bytes as f64 / self.join_packets.max(1) as f64
    }
    pub fn line(&self) -> String {
        let secs =
            |d: Option<Duration>| d.map_or("never".into(), |d| format!("{:.3} s", d.as_secs_f64()));
        format!(
            "converged {} (99% of pairs {}), {} errors, steady {:.0} pkt/s handled ({} pkts, {:.1} B/pkt, {:.1} pkt/node/s), \
             crash seen by all {} (median {})",
            secs(self.converged),
            secs(self.converged_99),
            self.errors,
            self.packets_per_sec(),
            self.steady_handled,
            self.steady_bytes_per_packet(),
            self.packets_per_node_sec(),
            secs(self.detected_all),
            secs(self.detected_median),
        )
    }
}

struct Pump<E: Engine> {
    engine: E,
    heap: BinaryHeap<Entry<E::Timer>>,
    seq: u64,
    now: Instant,
    rng: fastrand::Rng,
    down: Vec<bool>,
    out: Out<E::Timer>,
    // counters of the current phase
    sent: u64,
    bytes: u64,
    handled: u64,
    handle_time: Duration,
}

impl<E: Engine> Pump<E> {
    fn push(&mut self, at: Instant, kind: Kind<E::Timer>) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            kind,
        });
    }

    /// Moves what the engine produced into the event queue.
    fn flush(&mut self) {
        let sends = std::mem::take(&mut self.out.sends);
        for (from, to, bytes) in sends {
            self.sent += 1;
            self.bytes += bytes.len() as u64;
            // LAN latency: 100..600 µs, seeded.
            let latency = Duration::from_micros(self.rng.u64(100..600));
            self.push(self.now + latency, Kind::Deliver { from, to, bytes });
        }
        let timers = std::mem::take(&mut self.out.timers);
        for (node, at, timer) in timers {
            self.push(at.max(self.now), Kind::Wake { node, timer });
        }
    }

    fn reset_counters(&mut self) {
        self.sent = 0;
        self.bytes = 0;
        self.handled = 0;
        self.handle_time = Duration::ZERO;
    }

    /// Runs events up to `until`; `after` is called with the node each event
    /// touched and returns true to stop early.
    fn run_until(
        &mut self,
        until: Instant,
        mut after: impl FnMut(&E, usize, Instant) -> bool,
    ) -> bool {
        while let Some(entry) = self.heap.peek() {
            if entry.at > until {
                break;
            }
            let entry = self.heap.pop().expect("peeked");
            self.now = self.now.max(entry.at);
            let node = match entry.kind {
                Kind::Deliver { from, to, bytes } => {
                    if self.down[from] || self.down[to] || to >= self.down.len() {
                        self.out.pool.push(bytes);
                        continue;
                    }
                    let started = Instant::now();
                    self.engine
                        .packet(to, from, &bytes, self.now, &mut self.out);
                    self.handle_time += started.elapsed();
                    self.handled += 1;
                    self.out.pool.push(bytes);
                    to
                }
                Kind::Wake { node, timer } => {
                    if self.down[node] {
                        continue;
                    }
                    self.engine.timer(node, timer, self.now, &mut self.out);
                    node
                }
            };
            self.flush();
            if after(&self.engine, node, self.now) {
                return true;
            }
        }
        self.now = self.now.max(until);
        false
    }
}

/// One run of the scenario with one engine and one seed.
pub fn run<E: Engine>(scenario: &Scenario, seed: u64) -> Outcome {
    let n = scenario.nodes;
    #[allow(clippy::disallowed_methods)] // the pump's epoch; only offsets matter
    let start = Instant::now();
    let mut pump = Pump {
        engine: E::new(n, seed, start),
        heap: BinaryHeap::new(),
        seq: 0,
        now: start,
        rng: fastrand::Rng::with_seed(seed),
        down: vec![false; n],
        out: Out {
            sends: Vec::new(),
            timers: Vec::new(),
            pool: Vec::new(),
        },
        sent: 0,
        bytes: 0,
        handled: 0,
        handle_time: Duration::ZERO,
    };
    let mut outcome = Outcome {
        nodes: n,
        steady: scenario.steady,
        ..Outcome::default()
    };

    // 1. Everyone joins through node 0 at once.
    pump.engine.start(start, &mut pump.out);
    pump.flush();
    let mut complete = vec![false; n];
    let mut known: Vec<usize> = (0..n).map(|i| pump.engine.active_count(i)).collect();
    let mut pairs: usize = known.iter().sum();
    let goal_99 = (n * (n - 1)) * 99 / 100;
    let mut at_99 = None;
    let mut done = 0;
    for (i, c) in complete.iter_mut().enumerate() {
        if known[i] == n - 1 {
            *c = true;
            done += 1;
        }
    }
    let converged = pump.run_until(start + scenario.converge_limit, |engine, i, now| {
        let count = engine.active_count(i);
        pairs = pairs - known[i] + count; // pairs includes known[i]
        known[i] = count;
        if at_99.is_none() && pairs >= goal_99 {
            at_99 = Some(now - start);
        }
        if !complete[i] && count == n - 1 {
            complete[i] = true;
            done += 1;
        }
        done == n
    });
    outcome.converged_99 = at_99;
    outcome.join_packets = pump.sent;
    outcome.join_bytes = pump.bytes;
    if converged {
        outcome.converged = Some(pump.now - start);
    }

    // 2. Settle, then measure a steady window.
    let settle = pump.now + Duration::from_secs(5);
    pump.run_until(settle, |_, _, _| false);
    pump.reset_counters();
    let steady_end = pump.now + scenario.steady;
    pump.run_until(steady_end, |_, _, _| false);
    outcome.steady_sent = pump.sent;
    outcome.steady_bytes = pump.bytes;
    outcome.steady_handled = pump.handled;
    outcome.steady_handle_time = pump.handle_time;

    // 3. One node crashes silently (no more datagrams, no port-unreachable hints).
    let crashed = n / 2;
    pump.down[crashed] = true;
    let crash_at = pump.now;
    let mut seen: Vec<Option<Duration>> = vec![None; n];
    seen[crashed] = Some(Duration::ZERO);
    let mut remaining = n - 1;
    let all = pump.run_until(crash_at + scenario.detect_limit, |engine, i, now| {
        if seen[i].is_none() && engine.sees_down(i, crashed) {
            seen[i] = Some(now - crash_at);
            remaining -= 1;
        }
        remaining == 0
    });
    outcome.errors = pump.engine.errors();
    let mut times: Vec<Duration> = (0..n)
        .filter(|&i| i != crashed)
        .filter_map(|i| seen[i])
        .collect();
    times.sort();
    if all {
        outcome.detected_all = times.last().copied();
    }
    // The lower median survivor (undefined while fewer than half detected it).
    let median = (n - 1).saturating_sub(1) / 2;
    outcome.detected_median = times.get(median).copied();
    outcome
}
