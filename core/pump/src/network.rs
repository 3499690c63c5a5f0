//! The pump's network: datagrams in flight, ordered by arrival, with a seeded
//! latency, jitter and loss, and directed links that drop everything.
//!
//! Payloads travel in buffers the network keeps and reuses, so that once warm it
//! allocates nothing per datagram.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A datagram on its way.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct InFlight {
    pub(crate) at: Instant,
    /// Order of sending: ties on `at` arrive first sent, first delivered.
    seq: u64,
    pub(crate) from: SocketAddr,
    pub(crate) to: SocketAddr,
    /// A "port unreachable" hint: `from` bounced a datagram; tell `to`.
    pub(crate) unreachable: bool,
    pub(crate) bytes: Vec<u8>,
}

/// The network between the pump's nodes; its knobs may change at any time.
#[derive(Debug)]
pub struct Network {
    /// One-way base latency (1 ms).
    pub latency: Duration,
    /// Each datagram waits a further uniform `0..jitter` (500 µs).
    pub jitter: Duration,
    /// Probability that a datagram is lost, in `0.0..=1.0` (0).
    pub loss: f64,
    /// Directed links that drop everything: (from index, to index).
    pub blocked: BTreeSet<(usize, usize)>,
    /// Crashed processes leave their host up: datagrams to them bounce with an
    /// unreachable hint back to the sender (off).
    pub hosts_stay_up: bool,
    queue: BinaryHeap<Reverse<InFlight>>,
    /// Payload buffers no datagram holds, for the next ones.
    spare: Vec<Vec<u8>>,
    /// Buffers ever created: stays put once the network is warm.
    buffers: usize,
    seq: u64,
    rng: fastrand::Rng,
}

impl Network {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            latency: Duration::from_millis(1),
            jitter: Duration::from_micros(500),
            loss: 0.0,
            blocked: BTreeSet::new(),
            hosts_stay_up: false,
            queue: BinaryHeap::new(),
            spare: Vec::new(),
            buffers: 0,
            seq: 0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// Datagrams (and unreachable hints) on their way.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Payload buffers the network has created so far. Once warm, a run adds none:
    /// the network allocates nothing per datagram.
    pub fn buffers(&self) -> usize {
        self.buffers
    }

    /// Sends `payload` from node `from` (at `from_addr`) to `to`, the address of
    /// node `to_index` if any node has it; the datagram may be blocked or lost.
    /// A new buffer gets `capacity` bytes (the sender's largest packet).
    pub(crate) fn send(
        &mut self,
        now: Instant,
        (from, from_addr): (usize, SocketAddr),
        (to_index, to): (Option<usize>, SocketAddr),
        payload: &[u8],
        capacity: usize,
    ) {
        let blocked = to_index.is_some_and(|j| self.blocked.contains(&(from, j)));
        if blocked || (self.loss > 0.0 && self.rng.f64() < self.loss) {
            return;
        }
        let jitter = match self.jitter.as_micros() as u64 {
            0 => Duration::ZERO,
            micros => Duration::from_micros(self.rng.u64(0..micros)),
        };
        let mut bytes = self.buffer(capacity);
        bytes.extend_from_slice(payload);
        self.push(now + self.latency + jitter, from_addr, to, false, bytes);
    }

    /// Bounces `packet` from a host whose process is gone: a "port unreachable"
    /// hint for its sender, one base latency later.
    pub(crate) fn bounce(&mut self, now: Instant, packet: &InFlight) {
        // An empty `Vec` holds no heap memory: the hint costs no allocation.
        self.push(now + self.latency, packet.to, packet.from, true, Vec::new());
    }

    /// When the next datagram arrives.
    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(p)| p.at)
    }

    /// The next datagram to arrive, out of the network.
    pub(crate) fn pop(&mut self) -> Option<InFlight> {
        self.queue.pop().map(|Reverse(p)| p)
    }

    /// Takes back a delivered datagram's buffer (a hint's empty one is dropped).
    pub(crate) fn recycle(&mut self, bytes: Vec<u8>) {
        if bytes.capacity() > 0 {
            self.spare.push(bytes);
        }
    }

    fn buffer(&mut self, capacity: usize) -> Vec<u8> {
        match self.spare.pop() {
            Some(mut bytes) => {
                bytes.clear();
                bytes
            }
            None => {
                self.buffers += 1;
                Vec::with_capacity(capacity)
            }
        }
    }

    fn push(
        &mut self,
        at: Instant,
        from: SocketAddr,
        to: SocketAddr,
        unreachable: bool,
        bytes: Vec<u8>,
    ) {
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at,
            seq: self.seq,
            from,
            to,
            unreachable,
            bytes,
        }));
    }
}
