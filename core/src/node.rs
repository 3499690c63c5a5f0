//! The node: one member's whole protocol state, driven by `handle_*` calls and
//! drained by `poll_*` calls.

mod incoming;
mod membership;
mod probing;
mod timers;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use chrono::{DateTime, Utc};
use fastrand::Rng;

use crate::config::{Config, ConfigError};
use crate::discovery::{JoinAttempts, JoinError, Seed, expand_seeds};
use crate::event::{Event, Mode};
use crate::gossip::GossipQueue;
use crate::keyring::{KeyRing, Sealer};
use crate::limiter::JoinLimiter;
use crate::members::Members;
use crate::name::{NodeName, fnv1a};
use crate::probe::{LocalHealth, Probe, Relay};
use crate::stats::Stats;
use crate::suspicion::Suspicion;
use crate::tracker::{Health, RowId, Tracker, TrackerRow};
use crate::wire::{self, Message, Sender, Update, WireRow};

/// A datagram to send: `payload` to `to`. Borrowed from the node; send it before
/// the next call on the node.
#[derive(Debug)]
pub struct Transmit<'a> {
    /// Destination.
    pub to: SocketAddr,
    /// The datagram, at most `max_packet_size` bytes.
    pub payload: &'a [u8],
}

/// Why `new_node` refused. No state changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NewNodeError {
    /// The name is this node's own.
    #[error("a node cannot add itself")]
    IsSelf,
    /// The tracker already holds `max_nodes` rows.
    #[error("the tracker is full (max_nodes)")]
    TrackerFull,
}

/// Why `leave` refused. No state changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaveError {
    /// `leave` was already called (and no `join` since).
    #[error("the node has already left")]
    AlreadyLeft,
}

/// What waits to go out.
#[derive(Debug)]
enum Outgoing {
    /// One message.
    Message { to: SocketAddr, message: Message },
    /// Tracker rows from id `next` on (of the buckets in `buckets`, a bit mask),
    /// cut into datagrams as they are sent: a node answering many joins at once
    /// holds a cursor per answer, not a copy of its table, and other traffic
    /// interleaves with the chunks.
    Rows {
        to: SocketAddr,
        next: RowId,
        buckets: u32,
        kind: RowsKind,
    },
}

/// Which message carries streamed rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowsKind {
    JoinReply,
    Rows,
}

impl RowsKind {
    fn message(self, rows: Vec<WireRow>) -> Message {
        match self {
            RowsKind::JoinReply => Message::JoinReply { rows },
            RowsKind::Rows => Message::Rows { rows },
        }
    }
}

/// Most entries a drained queue keeps room for. A burst (a join reply of 10,000
/// rows queues 20,000 events) must not pin its peak for the node's lifetime: at
/// ~180 bytes an event that would triple the memory a tracked node costs.
pub(crate) const KEEP_QUEUED: usize = 256;

/// Gives a drained queue's burst capacity back, keeping room for `KEEP_QUEUED`
/// (so the steady state never reallocates).
fn trim<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > KEEP_QUEUED {
        queue.shrink_to(KEEP_QUEUED);
    }
}

/// Every digest bucket.
const ALL_BUCKETS: u32 = u32::MAX >> (32 - crate::tracker::DIGEST_BUCKETS);
const _: () = assert!(crate::tracker::DIGEST_BUCKETS <= 32, "bucket masks are u32");

/// Periodic re-probe of the seeds after a join ended, so split clusters merge.
#[derive(Debug)]
struct Rejoin {
    targets: Vec<SocketAddr>,
    next_at: Instant,
}

/// Where a row came from; decides whether it is passed on by gossip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Decided here or heard by gossip: spread it.
    Gossip,
    /// Part of a bulk transfer (join reply, anti-entropy): the sender's peers
    /// mostly hold it already, so it is spread only when it flips a node's status.
    Bulk,
}

/// One cluster member's protocol state: a pure state machine (see the crate docs
/// for the loop that drives it).
///
/// Methods come in four groups: getters; `handle_*` for input; commands
/// (`new_node`, `join`, `leave`, ...); `poll_*` for output.
#[derive(Debug)]
pub struct Node {
    config: Config,
    name: NodeName,
    addr: SocketAddr,
    incarnation: u64,
    epoch: Instant,
    wall_epoch: DateTime<Utc>,
    rng: Rng,
    tracker: Tracker,
    /// Online nodes other than self.
    members: Members,
    /// Dead (not left) nodes, for the occasional anti-entropy exchange that heals partitions.
    dead: Members,
    mode: Mode,
    events: VecDeque<Event>,
    outbox: VecDeque<Outgoing>,
    send_buf: Vec<u8>,
    gossip: GossipQueue,
    probes: Vec<Probe>,
    next_probe_at: Instant,
    relays: Vec<Relay>,
    next_seq: u32,
    local_health: LocalHealth,
    suspicions: BTreeMap<NodeName, Suspicion>,
    next_gossip_at: Instant,
    next_sync_at: Instant,
    join: Option<JoinAttempts>,
    join_replies_until: Option<Instant>,
    rejoin: Option<Rejoin>,
    leaving_until: Option<Instant>,
    left: bool,
    next_reap_at: Option<Instant>,
    last_input_at: Instant,
    stats: Stats,
    /// Reused buffer for random member picks.
    scratch: Vec<RowId>,
    /// Reused buffer for the addresses of online members (for the seed
    /// re-probe; trimmed after use, so a large cluster does not pin one per member).
    addr_scratch: Vec<SocketAddr>,
    /// Seals and opens packets when a key ring is configured.
    sealer: Option<Sealer>,
    /// Reused buffer for opened packet bodies.
    open_buf: Vec<u8>,
    /// Caps how fast one source can introduce new nodes by joining.
    join_limiter: JoinLimiter,
}

impl Node {
    /// A node named `name` listening at `addr`. `wall_clock_at_now` anchors the
    /// wall-clock times of the rows this node writes (`last_change`).
    ///
    /// The node starts standalone, with itself online in its tracker (one
    /// `Event::Tracker` is queued for that row).
    pub fn new(
        config: Config,
        name: NodeName,
        addr: SocketAddr,
        now: Instant,
        wall_clock_at_now: DateTime<Utc>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        // Mixing in the name keeps nodes given one seed from walking in lockstep.
        let mut rng = Rng::with_seed(config.rng_seed ^ fnv1a(name.as_bytes()));
        // Jittered from the start, so nodes created together do not exchange in lockstep.
        let next_sync_at = now + config.anti_entropy_interval.mul_f64(0.5 + rng.f64());
        let next_reap_at = config.offline_retention.map(|_| now);
        let join_limiter = JoinLimiter::new(config.join_rate, config.join_burst);
        let mut node = Self {
            config,
            name,
            addr,
            incarnation: 0,
            epoch: now,
            wall_epoch: wall_clock_at_now,
            rng,
            tracker: Tracker::new(),
            members: Members::default(),
            dead: Members::default(),
            mode: Mode::Standalone,
            events: VecDeque::new(),
            outbox: VecDeque::new(),
            send_buf: Vec::new(),
            gossip: GossipQueue::default(),
            probes: Vec::new(),
            next_probe_at: now,
            relays: Vec::new(),
            next_seq: 0,
            local_health: LocalHealth::default(),
            suspicions: BTreeMap::new(),
            next_gossip_at: now,
            next_sync_at,
            join: None,
            join_replies_until: None,
            rejoin: None,
            leaving_until: None,
            left: false,
            next_reap_at,
            last_input_at: now,
            stats: Stats::default(),
            scratch: Vec::new(),
            addr_scratch: Vec::new(),
            sealer: None,
            open_buf: Vec::new(),
            join_limiter,
        };
        node.sealer = node.config.keys.as_ref().map(|ring| node.new_sealer(ring));
        node.write_own_row(now, Health::Alive);
        Ok(node)
    }

    // ----- getters -----

    /// This node's name.
    pub fn name(&self) -> &NodeName {
        &self.name
    }

    /// The address this node announces.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// This node's current incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// `Clustered` while any other node is online (the original's `get_mode/0`).
    #[doc(alias = "get_mode")]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The whole replicated table.
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// One node's row.
    pub fn row(&self, name: &NodeName) -> Option<&TrackerRow> {
        self.tracker.get(name)
    }

    /// Names of the online nodes, self included (the original's active node list).
    pub fn active_nodes(&self) -> impl Iterator<Item = &NodeName> + '_ {
        self.tracker.online().map(|row| &row.node)
    }

    /// Traffic and drop counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Lifeguard's local health score (0 = healthy).
    pub fn local_health(&self) -> LocalHealth {
        self.local_health
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many updates are waiting to be disseminated (0 when the cluster is quiet).
    pub fn pending_updates(&self) -> usize {
        self.gossip.len()
    }

    /// Whether `leave` was called (and no `join` since).
    pub fn has_left(&self) -> bool {
        self.left
    }

    /// The wall-clock time at `now`, derived from the anchor given at creation.
    pub fn wall_clock(&self, now: Instant) -> DateTime<Utc> {
        self.wall_epoch + now.saturating_duration_since(self.epoch)
    }

    // ----- commands -----

    /// Replaces the key ring (or turns sealing off with `None`): the way to rotate
    /// keys on a live cluster. Rotate in three steps, each applied on every node
    /// before the next: accept the new key, make it primary, drop the old one.
    pub fn set_key_ring(&mut self, ring: Option<KeyRing>) {
        self.sealer = ring.as_ref().map(|ring| self.new_sealer(ring));
        self.config.keys = ring;
    }

    /// A sealer whose nonces never repeat those of another node or of an earlier
    /// run of this one: the prefix mixes name, address, seed and creation time.
    fn new_sealer(&self, ring: &KeyRing) -> Sealer {
        let created = self.wall_epoch.timestamp_nanos_opt().unwrap_or(i64::MAX);
        let mut material = Vec::with_capacity(self.name.as_bytes().len() + 64);
        material.extend_from_slice(self.name.as_bytes());
        material.extend_from_slice(self.addr.to_string().as_bytes());
        material.extend_from_slice(&self.config.rng_seed.to_le_bytes());
        material.extend_from_slice(&created.to_le_bytes());
        let first = fnv1a(&material);
        material.push(0x5a);
        let second = fnv1a(&material);
        let mut prefix = [0u8; 16];
        prefix[..8].copy_from_slice(&first.to_le_bytes());
        prefix[8..].copy_from_slice(&second.to_le_bytes());
        Sealer::new(ring, prefix)
    }

    /// Adds a discovered node as online (the original's `new_node/1`), and starts an
    /// anti-entropy exchange with it so both learn each other's table.
    ///
    /// An unknown node is written `Alive`. A tracked node that is offline is brought
    /// back online with its incarnation raised by one, the only case where another
    /// node raises an incarnation: the operator vouches for it, and if it is not
    /// actually there the failure detector takes it offline again. A node that is
    /// already online is left as it is (its address is not overwritten).
    pub fn new_node(
        &mut self,
        now: Instant,
        name: NodeName,
        addr: SocketAddr,
    ) -> Result<(), NewNodeError> {
        self.observe_input(now);
        if name == self.name {
            return Err(NewNodeError::IsSelf);
        }
        let incarnation = match self.tracker.get(&name) {
            None if self.tracker.len() >= self.config.max_nodes => {
                return Err(NewNodeError::TrackerFull);
            }
            None => 0,
            Some(row) if row.status == crate::tracker::NodeStatus::Online => {
                self.send_sync(row.addr, false);
                return Ok(());
            }
            Some(row) => row.incarnation.saturating_add(1),
        };
        let row = TrackerRow::new(name, addr, Health::Alive, incarnation, self.wall_clock(now));
        let _ = self.apply_row(now, row, None, Source::Gossip);
        self.send_sync(addr, false);
        Ok(())
    }

    /// Loads rows of a table this node can trust as a starting point: what a
    /// previous run of it held (`tracker().rows()` saved before a restart), or a
    /// peer's table handed over out of band. The node knows its peers at once
    /// instead of waiting for a join reply; `join` is still how it announces itself.
    ///
    /// Rows are merged as a join reply's are: a row replaces what is held only when
    /// it ranks higher; nothing is gossiped unless it flips the status of a node
    /// already known; online rows enter the probe rotation, so a stale one is found
    /// dead by the failure detector. A row about this node that outranks its own
    /// (an earlier life's) is refuted with a higher incarnation, as when a peer
    /// holds one. Rows past `max_nodes` are dropped and counted
    /// ([`DropReason::TrackerFull`](crate::DropReason::TrackerFull)).
    pub fn restore(&mut self, now: Instant, rows: impl IntoIterator<Item = TrackerRow>) {
        self.observe_input(now);
        for row in rows {
            let _ = self.apply_row(now, row, None, Source::Bulk);
        }
    }

    /// Joins the cluster through `seeds` (the original's `add_node_to_mnesia/1` and
    /// Locator): sends join requests now, retries with backoff, and after
    /// `join_attempts` unanswered attempts reports [`Event::JoinFailed`] and stays
    /// standalone. Afterwards the seeds are re-probed every `rejoin_interval` so
    /// split clusters merge. After `leave`, `join` brings the node back with a
    /// higher incarnation.
    pub fn join(&mut self, now: Instant, seeds: &[Seed]) -> Result<(), JoinError> {
        self.observe_input(now);
        let targets = expand_seeds(seeds, self.addr, self.config.max_join_targets)?;
        if self.left {
            self.left = false;
            self.leaving_until = None;
            self.incarnation = self.incarnation.saturating_add(1);
            self.write_own_row(now, Health::Alive);
        }
        self.rejoin = None;
        self.join = Some(JoinAttempts::new(targets, now, self.config.join_retry));
        self.run_join(now);
        Ok(())
    }

    /// Leaves the cluster gracefully: writes this node `Left` and spreads it; the
    /// others mark it offline at once, without suspicion. Probing stops.
    /// [`Event::LeaveFinished`] reports when the news has spread or `leave_timeout`
    /// passed; then the node can be dropped.
    pub fn leave(&mut self, now: Instant) -> Result<(), LeaveError> {
        self.observe_input(now);
        if self.left {
            return Err(LeaveError::AlreadyLeft);
        }
        self.left = true;
        self.join = None;
        self.rejoin = None;
        self.probes.clear();
        self.suspicions.clear();
        self.leaving_until = Some(now + self.config.leave_timeout);
        self.write_own_row(now, Health::Left);
        // Tell a few members right away rather than waiting for the gossip tick.
        self.gossip_to_random_members();
        Ok(())
    }

    // ----- output -----

    /// The next datagram to send, with pending updates piggybacked. Call until `None`.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        let (to, message) = loop {
            let Some(next) = self.outbox.pop_front() else {
                trim(&mut self.outbox);
                return None;
            };
            match next {
                Outgoing::Message { to, message } => break (to, message),
                Outgoing::Rows {
                    to,
                    next,
                    buckets,
                    kind,
                } => {
                    let (rows, rest) = self.rows_chunk(next, buckets, kind);
                    if let Some(next) = rest {
                        self.outbox.push_back(Outgoing::Rows {
                            to,
                            next,
                            buckets,
                            kind,
                        });
                    }
                    if !rows.is_empty() {
                        break (to, kind.message(rows));
                    }
                }
            }
        };
        // Built field by field (not with `sender()`) so the borrows stay disjoint.
        let sender = Sender {
            cluster: self.config.cluster_id,
            name: &self.name,
            incarnation: self.incarnation,
            sealed: self.sealer.is_some(),
        };
        let base = wire::base_len(sender, &message);
        // Two bytes of slack for the update count's varint growing past one byte.
        let budget = self.config.max_packet_size.saturating_sub(base + 2);
        let limit = retransmit_limit(self.config.retransmit_mult, self.tracker.online_count());
        let updates = self.gossip.take_for_packet(budget, limit, to);
        let refs: Vec<&Update> = updates.iter().collect();
        wire::encode(
            sender,
            &message,
            &refs,
            &mut self.send_buf,
            self.sealer.as_mut(),
        );
        debug_assert!(self.send_buf.len() <= self.config.max_packet_size);
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += self.send_buf.len() as u64;
        Some(Transmit {
            to,
            payload: &self.send_buf,
        })
    }

    /// The next event for the owner. Call until `None`.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if event.is_none() {
            trim(&mut self.events);
        }
        event
    }

    // ----- helpers shared by the submodules -----

    fn own_row(&self, now: Instant, health: Health) -> TrackerRow {
        TrackerRow::new(
            self.name.clone(),
            self.addr,
            health,
            self.incarnation,
            self.wall_clock(now),
        )
    }

    fn sender(&self) -> Sender<'_> {
        Sender {
            cluster: self.config.cluster_id,
            name: &self.name,
            incarnation: self.incarnation,
            sealed: self.sealer.is_some(),
        }
    }

    fn send(&mut self, to: SocketAddr, message: Message) {
        self.outbox.push_back(Outgoing::Message { to, message });
    }

    /// The rows of the online members (self excluded), in no particular order.
    fn member_rows(&self) -> impl Iterator<Item = &TrackerRow> + '_ {
        self.members
            .ids()
            .iter()
            .filter_map(|&id| self.tracker.by_id(id))
    }

    /// Up to `count` random members other than `exclude`, in a reused buffer:
    /// hand it back with [`Node::recycle`].
    fn sample_members(&mut self, count: usize, exclude: Option<RowId>) -> Vec<RowId> {
        let mut picked = std::mem::take(&mut self.scratch);
        picked.clear();
        self.members
            .sample_into(count, exclude, &mut self.rng, &mut picked);
        picked
    }

    fn recycle(&mut self, picked: Vec<RowId>) {
        self.scratch = picked;
    }

    /// Sends the pending updates to `gossip_fanout` random members.
    fn gossip_to_random_members(&mut self) {
        let targets = self.sample_members(self.config.gossip_fanout, None);
        for &target in &targets {
            if let Some(row) = self.tracker.by_id(target) {
                let to = row.addr;
                self.send(to, Message::Gossip);
            }
        }
        self.recycle(targets);
    }

    fn send_sync(&mut self, to: SocketAddr, reply: bool) {
        let digest = self.tracker.digest().into();
        self.send(to, Message::Sync { digest, reply });
    }

    fn next_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    /// Queues the rows of `buckets` (a bit mask) to `to`; they are cut into
    /// datagrams when sent, and every one applies on its own.
    fn send_rows(&mut self, to: SocketAddr, buckets: u32, kind: RowsKind) {
        self.outbox.push_back(Outgoing::Rows {
            to,
            next: 0,
            buckets,
            kind,
        });
    }

    /// The rows for one datagram from id `next` on, and where the next datagram
    /// starts (`None` when these were the last).
    fn rows_chunk(
        &self,
        next: RowId,
        buckets: u32,
        kind: RowsKind,
    ) -> (Vec<WireRow>, Option<RowId>) {
        // Slack: the row count's varint may grow, and the incarnation may grow
        // before the chunk is encoded.
        let empty = kind.message(Vec::new());
        let budget = self
            .config
            .max_packet_size
            .saturating_sub(wire::base_len(self.sender(), &empty) + 12);
        let mut rows = Vec::new();
        let mut used = 0;
        for (id, row) in self.tracker.rows_from(next) {
            if buckets & (1 << TrackerRow::bucket(&row.node)) == 0 {
                continue;
            }
            let row = WireRow(row.clone());
            let size = wire::encoded_len(&row);
            if used + size > budget && !rows.is_empty() {
                return (rows, Some(id));
            }
            used += size;
            rows.push(row);
        }
        (rows, None)
    }
}

/// How many times each update is sent: `mult · ceil(log10(members + 1))`.
pub fn retransmit_limit(mult: u32, members: usize) -> u32 {
    let scale = ((members + 1) as f64).log10().ceil().max(1.0) as u32;
    mult * scale
}

#[cfg(test)]
mod tests;
