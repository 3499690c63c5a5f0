//! The two libraries behind one small interface, configured alike.

use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::time::{Duration, Instant};

use beethoven_core::chrono::DateTime;
use beethoven_core::{
    Config, Node, NodeName, NodeStatus, Seed, retransmit_limit, suspicion_bounds,
};
use foca::{NoCustomBroadcast, Notification, PostcardCodec, Runtime, Timer};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};

use crate::pump::{Engine, Out, addr, index};

/// Probe period, ack timeout and indirect probes used by both.
pub const PROBE_PERIOD: Duration = Duration::from_millis(150);
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(75);
pub const INDIRECT_PROBES: usize = 3;
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);
pub const GOSSIP_FANOUT: usize = 3;
/// Our anti-entropy period; foca's periodic announce gets the same period.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(5);

// ----- beethoven-core -----

pub struct Ours {
    nodes: Vec<Node>,
    names: Vec<NodeName>,
    /// The deadline each node's pending wake-up was scheduled for.
    scheduled: Vec<Option<Instant>>,
}

impl Ours {
    fn name(i: usize) -> NodeName {
        NodeName::new(&format!("node-{i:05}")).expect("valid name")
    }

    /// Sends what node `i` wants to send and schedules its next wake-up.
    fn drain(&mut self, i: usize, out: &mut Out<Instant>) {
        let node = &mut self.nodes[i];
        while node.poll_event().is_some() {}
        while let Some(t) = node.poll_transmit() {
            let mut buf = out.buffer();
            buf.extend_from_slice(t.payload);
            out.sends.push((i, index(t.to), buf));
        }
        let next = node.poll_timeout();
        if next != self.scheduled[i] {
            self.scheduled[i] = next;
            if let Some(at) = next {
                out.timers.push((i, at, at));
            }
        }
    }
}

impl Engine for Ours {
    const NAME: &'static str = "beethoven";
    /// The deadline the wake-up was scheduled for (stale ones are skipped).
    type Timer = Instant;

    fn new(n: usize, seed: u64, now: Instant) -> Self {
        let wall = DateTime::from_timestamp_millis(1_764_000_000_000).expect("in range");
        let names: Vec<NodeName> = (0..n).map(Self::name).collect();
        let nodes = (0..n)
            .map(|i| {
                // The defaults already are the shared settings; spelled out to keep them in step.
                let mut config =
                    Config::for_cluster("versus-foca").with_rng_seed(seed * 1_000_003 + i as u64);
                config.probe_interval = PROBE_PERIOD;
                config.probe_timeout = PROBE_TIMEOUT;
                config.indirect_probes = INDIRECT_PROBES;
                config.gossip_interval = GOSSIP_INTERVAL;
                config.gossip_fanout = GOSSIP_FANOUT;
                config.anti_entropy_interval = SYNC_INTERVAL;
                Node::new(config, names[i].clone(), addr(i), now, wall).expect("valid config")
            })
            .collect();
        Self {
            nodes,
            names,
            scheduled: vec![None; n],
        }
    }

    fn start(&mut self, now: Instant, out: &mut Out<Instant>) {
        for i in 0..self.nodes.len() {
            if i > 0 {
                self.nodes[i]
                    .join(now, &[Seed::Addr(addr(0))])
                    .expect("join starts");
            }
            self.drain(i, out);
        }
    }

    fn packet(
        &mut self,
        i: usize,
        from: usize,
        bytes: &[u8],
        now: Instant,
        out: &mut Out<Instant>,
    ) {
        self.nodes[i].handle_packet(now, addr(from), bytes);
        self.drain(i, out);
    }

    fn timer(&mut self, i: usize, at: Instant, now: Instant, out: &mut Out<Instant>) {
        if self.scheduled[i] != Some(at) {
            return; // superseded by an earlier or later deadline
        }
        self.scheduled[i] = None;
        self.nodes[i].handle_timeout(now);
        self.drain(i, out);
    }

    fn active_count(&self, i: usize) -> usize {
        self.nodes[i].tracker().online_count() - 1
    }

    fn sees_down(&self, i: usize, j: usize) -> bool {
        self.nodes[i]
            .row(&self.names[j])
            .is_some_and(|row| row.status == NodeStatus::Offline)
    }
}

// ----- foca -----

/// Foca's identity: the address plus a bump to rejoin with (its documented pattern).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Id {
    addr: SocketAddr,
    bump: u16,
}

impl foca::Identity for Id {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            addr: self.addr,
            bump: self.bump.wrapping_add(1),
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        // Newer bump wins, with wrap-around.
        self.bump.wrapping_sub(adversary.bump) < u16::MAX / 2
    }
}

type FocaNode = foca::Foca<Id, PostcardCodec, SmallRng, NoCustomBroadcast>;

pub struct Foca {
    nodes: Vec<FocaNode>,
    ids: Vec<Id>,
    /// `down[i][j]`: node `i` was told `j` is down (and not up again since).
    down: Vec<Vec<bool>>,
    errors: u64,
}

/// The runtime handed to foca during one call of node `node`.
struct Rt<'a> {
    node: usize,
    now: Instant,
    out: &'a mut Out<Timer<Id>>,
    down: &'a mut [bool],
}

impl Runtime<Id> for Rt<'_> {
    fn notify(&mut self, notification: Notification<'_, Id>) {
        match notification {
            Notification::MemberDown(id) => self.down[index(id.addr)] = true,
            Notification::MemberUp(id) => self.down[index(id.addr)] = false,
            _ => {}
        }
    }

    fn send_to(&mut self, to: Id, data: &[u8]) {
        let mut buf = self.out.buffer();
        buf.extend_from_slice(data);
        self.out.sends.push((self.node, index(to.addr), buf));
    }

    fn submit_after(&mut self, event: Timer<Id>, after: Duration) {
        self.out.timers.push((self.node, self.now + after, event));
    }
}

impl Foca {
    fn config(n: usize) -> foca::Config {
        let mut config = foca::Config::new_lan(NonZeroU32::new(n as u32).expect("n > 0"));
        config.probe_period = PROBE_PERIOD;
        config.probe_rtt = PROBE_TIMEOUT;
        config.num_indirect_probes = NonZeroUsize::new(INDIRECT_PROBES).expect("3");
        // The same number of piggyback transmissions as ours at this size.
        let ours = retransmit_limit(Config::default().retransmit_mult, n);
        config.max_transmissions = NonZeroU8::new(ours.min(255) as u8).expect("positive");
        // Our suspicion timeout shrinks from max to min as confirmations arrive;
        // foca's is fixed: it gets our *minimum*, the most favourable setting for it.
        let defaults = Config::default();
        let (min, _max) =
            suspicion_bounds(defaults.suspicion_min, defaults.suspicion_max_factor, n);
        config.suspect_to_down_after = min;
        config.periodic_gossip = Some(foca::PeriodicParams {
            frequency: GOSSIP_INTERVAL,
            num_members: NonZeroUsize::new(GOSSIP_FANOUT).expect("3"),
        });
        config.periodic_announce = Some(foca::PeriodicParams {
            frequency: SYNC_INTERVAL,
            num_members: NonZeroUsize::new(1).expect("1"),
        });
        config
    }

    fn rt<'a>(
        &'a mut self,
        i: usize,
        now: Instant,
        out: &'a mut Out<Timer<Id>>,
    ) -> (&'a mut FocaNode, Rt<'a>) {
        (
            &mut self.nodes[i],
            Rt {
                node: i,
                now,
                out,
                down: &mut self.down[i],
            },
        )
    }
}

impl Engine for Foca {
    const NAME: &'static str = "foca";
    type Timer = Timer<Id>;

    fn new(n: usize, seed: u64, _now: Instant) -> Self {
        let ids: Vec<Id> = (0..n)
            .map(|i| Id {
                addr: addr(i),
                bump: 0,
            })
            .collect();
        let nodes = (0..n)
            .map(|i| {
                let rng = SmallRng::seed_from_u64(seed * 1_000_003 + i as u64);
                foca::Foca::new(ids[i], Self::config(n), rng, PostcardCodec)
            })
            .collect();
        Self {
            nodes,
            ids,
            down: vec![vec![false; n]; n],
            errors: 0,
        }
    }

    fn start(&mut self, now: Instant, out: &mut Out<Timer<Id>>) {
        let seed = self.ids[0];
        for i in 1..self.nodes.len() {
            let (node, mut rt) = self.rt(i, now, out);
            if node.announce(seed, &mut rt).is_err() {
                self.errors += 1;
            }
        }
    }

    fn packet(
        &mut self,
        i: usize,
        _from: usize,
        bytes: &[u8],
        now: Instant,
        out: &mut Out<Timer<Id>>,
    ) {
        let (node, mut rt) = self.rt(i, now, out);
        if node.handle_data(bytes, &mut rt).is_err() {
            self.errors += 1;
        }
    }

    fn timer(&mut self, i: usize, timer: Timer<Id>, now: Instant, out: &mut Out<Timer<Id>>) {
        let (node, mut rt) = self.rt(i, now, out);
        if node.handle_timer(timer, &mut rt).is_err() {
            self.errors += 1;
        }
    }

    fn active_count(&self, i: usize) -> usize {
        self.nodes[i].num_members()
    }

    fn sees_down(&self, i: usize, j: usize) -> bool {
        self.down[i][j]
    }

    fn errors(&self) -> u64 {
        self.errors
    }
}
