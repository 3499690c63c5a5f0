//! The node: one member's whole protocol state, driven by `handle_*` calls and
//! drained by `poll_*` calls.
//!
//! This file holds the node itself and its whole public API: creation, getters,
//! the `handle_*` inputs and the commands (thin wrappers, all run through
//! `Node::input`), the `poll_*` outputs, and the helpers every part uses.
//!
//! Each part of the protocol lives in one file that holds its state, the messages
//! it handles and its timer work:
//!
//! - `input`: a datagram is decoded, validated and dispatched to the parts below;
//! - `timer`: the timers by name and their deadline table, the order of
//!   `handle_timeout`, and noticing that this node itself stalled;
//! - `probing`: the probe cycle, indirect probes run for others and their nacks,
//!   unreachable hints and bounces, Lifeguard's local health;
//! - `lateness`: members, or this node's own path, known to answer late, and how
//!   long a probe waits for them;
//! - `suspicion`: suspicion timeouts and confirmations, last-chance pings,
//!   declaring a member dead;
//! - `dissemination`: updates piggybacked on every packet, the gossip tick;
//! - `anti_entropy`: digest exchanges, and rows streamed in chunks;
//! - `join_leave`: join attempts and replies, the seed re-probe, leave, and the
//!   retention that reaps offline rows;
//! - `membership`: applying rows (precedence, news about this node itself) and
//!   what follows a change: events, member lists, mode;
//! - `answers`: the limit on answering outdated bad news at once.
//! - `broadcast`: user events: pushed along a tree, announced, pulled,
//!   delivered once in each origin's order.
//! - `query`: queries: pushed along the same tree, filtered at each member,
//!   answered straight to the origin and through relays.
//! - `conflict`: two live processes under one name: the handshake between them,
//!   the rule for who keeps the name, and what observers report.
//! - `tombstone`: `force_leave`, and the tombstones a prune spreads so that a
//!   member is removed from every table.

mod answers;
mod anti_entropy;
mod broadcast;
mod conflict;
mod dissemination;
mod input;
mod join_leave;
mod lateness;
mod membership;
mod probing;
mod query;
mod refusal;
mod reunion;
mod suspicion;
mod timer;
mod tombstone;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use chrono::{DateTime, Utc};
use fastrand::Rng;

use crate::config::{Config, ConfigError};
use crate::discovery::{JoinError, Seed};
use crate::event::{Event, Mode};
use crate::keyring::{KeyRing, Sealer};
use crate::members::Members;
use crate::name::{NameTaken, NodeName, fnv1a};
use crate::query::{Query, QueryError, QueryId, QueryToken, RespondError};
use crate::stats::Stats;
use crate::tags::Tags;
use crate::tracker::{Health, RowId, Tracker, TrackerRow};
use crate::user::{SendEventError, UserEventId};
use crate::wire::{self, Message, Sender, Update};
use answers::Answers;
use anti_entropy::RowStream;
use broadcast::Broadcast;
use conflict::Conflicts;
use dissemination::GossipQueue;
use join_leave::{Joining, LeaveNotice};
use lateness::Lateness;
use membership::Source;
use probing::Probing;
use query::Queries;
use refusal::Notices;
use reunion::Reunion;
use suspicion::Suspicion;
use timer::{Timer, Timers};
use tombstone::Tombstones;

pub use dissemination::retransmit_limit;
pub use join_leave::LeaveError;
pub use membership::{NewNodeError, SetTagsError};
pub use probing::LocalHealth;
pub use suspicion::{suspicion_bounds, suspicion_timeout};
pub use tombstone::ForceLeaveError;

/// A datagram to send: `payload` to `to`. Borrowed from the node; send it before
/// the next call on the node.
#[derive(Debug)]
pub struct Transmit<'a> {
    /// Destination.
    pub to: SocketAddr,
    /// The datagram, at most `max_packet_size` bytes.
    pub payload: &'a [u8],
}

/// What waits to go out.
#[derive(Debug)]
enum Outgoing {
    /// One message.
    Message { to: SocketAddr, message: Message },
    /// Tracker rows, cut into datagrams as they are sent.
    Rows(RowStream),
    /// A refusal notice, encoded whole (`refusal.rs`): no sender of this
    /// node's, nothing piggybacked, never sealed.
    Notice { to: SocketAddr, bytes: Vec<u8> },
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

/// One cluster member's protocol state: a pure state machine (see the crate docs
/// for the loop that drives it).
///
/// Methods come in four groups: getters; `handle_*` for input; commands
/// (`new_node`, `join`, `leave`, ...); `poll_*` for output. After every input
/// or command, drain `poll_transmit`, then `poll_event`, then read `poll_timeout`.
#[derive(Debug)]
pub struct Node {
    config: Config,
    name: NodeName,
    addr: SocketAddr,
    incarnation: u64,
    /// This node's own tags (see `set_tags`).
    tags: Tags,
    epoch: Instant,
    wall_epoch: DateTime<Utc>,
    rng: Rng,
    tracker: Tracker,
    /// Online nodes other than self.
    members: Members,
    /// Dead (not left) nodes, for the occasional anti-entropy exchange that heals partitions.
    dead: Members,
    mode: Mode,
    /// Whether `leave` was called (and no `join` since).
    left: bool,
    events: VecDeque<Event>,
    outbox: VecDeque<Outgoing>,
    send_buf: Vec<u8>,
    /// Every deadline, by timer.
    timers: Timers,
    probing: Probing,
    /// Members (or this node's own path) known to answer late.
    lateness: Lateness,
    /// Running suspicions of other nodes.
    suspicions: BTreeMap<NodeName, Suspicion>,
    /// Updates waiting to be piggybacked.
    gossip: GossipQueue,
    /// Answers sent to outdated bad news, for their limit.
    answers: Answers,
    joining: Joining,
    /// The pings that carried this node's `Left` row to a few members, and their acks.
    leave_notice: LeaveNotice,
    /// Addresses of reaped rows, still contacted for a while.
    reunion: Reunion,
    /// When the node was last driven (for noticing that it stalled).
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
    /// Other processes under this node's name, and conflicts seen about others.
    conflicts: Conflicts,
    /// The incarnation of the last death of this node it warned about (see
    /// `apply_row_about_self`): each death is logged once.
    death_warned: Option<u64>,
    /// User events.
    broadcast: Broadcast,
    /// Queries: this node's running ones, and those it received.
    queries: Queries,
    /// Members pruned from every table, for a while.
    tombstones: Tombstones,
    /// Refusal notices sent recently, for their limits.
    notices: Notices,
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
        let seed = config.rng_seed ^ fnv1a(name.as_bytes());
        let mut rng = Rng::with_seed(seed);
        let mut timers = Timers::default();
        timers.set(Timer::Probe, now);
        timers.set(Timer::Gossip, now);
        // Jittered from the start, so nodes created together do not exchange in lockstep.
        let first_sync = now + config.anti_entropy_interval.mul_f64(0.5 + rng.f64());
        timers.set(Timer::AntiEntropy, first_sync);
        timers.set(Timer::Reunion, now);
        timers.set(Timer::UserEvents, now);
        if config.offline_retention.is_some() {
            timers.set(Timer::Reap, now);
        }
        let joining = Joining::new(&config);
        let broadcast = Broadcast::new(&config, now);
        let queries = Queries::new(&config, now);
        let mut node = Self {
            config,
            name,
            addr,
            incarnation: 0,
            tags: Tags::new(),
            epoch: now,
            wall_epoch: wall_clock_at_now,
            rng,
            tracker: Tracker::new(),
            members: Members::default(),
            dead: Members::default(),
            mode: Mode::Standalone,
            left: false,
            events: VecDeque::new(),
            outbox: VecDeque::new(),
            send_buf: Vec::new(),
            timers,
            probing: Probing::default(),
            lateness: Lateness::default(),
            suspicions: BTreeMap::new(),
            gossip: GossipQueue::default(),
            answers: Answers::default(),
            joining,
            leave_notice: LeaveNotice::default(),
            reunion: Reunion::default(),
            last_input_at: now,
            stats: Stats::default(),
            scratch: Vec::new(),
            addr_scratch: Vec::new(),
            sealer: None,
            open_buf: Vec::new(),
            conflicts: Conflicts::new(seed),
            death_warned: None,
            broadcast,
            queries,
            tombstones: Tombstones::default(),
            notices: Notices::new(now),
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

    /// This node's own tags.
    pub fn tags(&self) -> &Tags {
        &self.tags
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
        self.probing.local_health
    }

    /// The share of datagrams this node estimates are lost on its paths,
    /// `0.0..=0.75`, from how many of its probes' pings were acked directly
    /// (averaged over the last ~32 probes). Above 0.1 it stretches the
    /// suspicion timeouts this node starts and repeats its last-chance checks,
    /// so heavy loss delays verdicts instead of causing false ones.
    pub fn measured_loss(&self) -> f64 {
        self.probing.loss.loss()
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

    /// Where the process that kept this node's name listens, once this node lost
    /// it ([`Event::NameLost`]); `None` while the name is this node's. A node
    /// that lost its name is inert for good.
    pub fn name_taken_by(&self) -> Option<SocketAddr> {
        self.conflicts.lost_to()
    }

    /// The wall-clock time at `now`, derived from the anchor given at creation.
    pub fn wall_clock(&self, now: Instant) -> DateTime<Utc> {
        self.wall_epoch + now.saturating_duration_since(self.epoch)
    }

    // ----- input -----

    /// Handles one received datagram. Never fails: bad packets are dropped, counted
    /// in [`stats`](Node::stats) by reason, logged at debug level, and change no state.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let taken = self.input(now, |node| {
            // Awake for it anyway: a probe due soon goes out now. Not for a
            // dropped packet, which changes nothing.
            if node.receive(now, from, bytes) {
                node.probe_early(now);
            }
        });
        if taken.is_err() {
            self.stats.packets_received += 1;
            self.stats.bytes_received += bytes.len() as u64;
            self.stats.count_drop(crate::DropReason::NameLost);
        }
    }

    /// Does whatever is due at `now`. Calling it early or twice is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _inert = self.input(now, |node| node.run_timers(now));
    }

    /// Hint from the OS that nothing listens at `addr` (ICMP port unreachable).
    ///
    /// Strong but unproven evidence, never enough on its own: a probe of the
    /// member at `addr` starts at once, with indirect probes through `k` others
    /// who report whether the target bounced for them too. When two independent
    /// bounces agree, the member is suspected with the short `unreachable_grace`
    /// timeout, and declared dead if its last-chance ping bounces as well. A member
    /// that answers (a process restarted on the same port) refutes as usual.
    /// Hints about addresses no member uses are counted as
    /// [`DropReason::UnknownAddress`](crate::DropReason::UnknownAddress) and change
    /// nothing.
    pub fn handle_unreachable(&mut self, now: Instant, addr: SocketAddr) {
        let _inert = self.input(now, |node| node.unreachable(now, addr));
    }

    // ----- commands -----

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
        self.input(now, |node| node.add_node(now, name, addr))?
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
    /// ([`DropReason::TrackerFull`](crate::DropReason::TrackerFull)), and so
    /// are rows whose tags break `max_tags_size` or `max_tags` (under the tag
    /// reasons, as a peer's would be).
    pub fn restore(&mut self, now: Instant, rows: impl IntoIterator<Item = TrackerRow>) {
        let limits = self.config.tag_limits();
        let _inert = self.input(now, |node| {
            for row in rows {
                if let Err(error) = row.tags.check(limits) {
                    node.stats.count_drop((&error).into());
                    continue;
                }
                let _ = node.apply_row(now, row, None, Source::Bulk);
            }
        });
    }

    /// Joins the cluster through `seeds` (the original's `add_node_to_mnesia/1` and
    /// Locator): sends join requests now, retries with backoff, and after
    /// `join_attempts` unanswered attempts reports [`Event::JoinFailed`] and stays
    /// standalone. Afterwards the seeds are re-probed every `rejoin_interval` so
    /// split clusters merge. After `leave`, `join` brings the node back with a
    /// higher incarnation.
    pub fn join(&mut self, now: Instant, seeds: &[Seed]) -> Result<(), JoinError> {
        self.input(now, |node| node.begin_join(now, seeds))?
    }

    /// Replaces the addresses of the seeds that the slow re-probe contacts once
    /// a join has ended (see [`join`](Node::join)): what a runtime calls after
    /// resolving [`Seed::Host`] names again, as the addresses behind a name
    /// change. Before a join has ended it changes nothing (the join's own seeds
    /// are re-probed when it ends). Refused like `join` when the seeds expand to
    /// no address or too many; nothing changes then.
    pub fn refresh_seeds(&mut self, now: Instant, seeds: &[Seed]) -> Result<(), JoinError> {
        self.input(now, |node| node.replace_rejoin_targets(seeds))?
    }

    /// Leaves the cluster gracefully: writes this node `Left` and spreads it
    /// (pinging up to `gossip_fanout` members with it at once, then by gossip);
    /// the others mark it offline at once, without suspicion. Probing stops, and
    /// the node judges nobody any more: suspicions it hears of start no timer of
    /// its own (no last-chance pings, no verdicts); the members it left keep watch.
    /// [`Event::LeaveFinished`] reports when the news has spread (every pinged
    /// member acked, or gossip sent it out) or `leave_timeout` passed; then the
    /// node can be dropped.
    pub fn leave(&mut self, now: Instant) -> Result<(), LeaveError> {
        self.input(now, |node| node.begin_leave(now))?
    }

    /// Replaces this node's tags. A change raises the incarnation and writes
    /// the own row (one `Event::Tracker` write, with the old row), and spreads
    /// it like a refutation, so every replica converges on it; setting the tags
    /// already held changes nothing. Refused, with nothing changed, when the tags
    /// break `max_tags_size` or `max_tags`, or the own row would not fit one
    /// datagram ([`TagsError`](crate::TagsError) names the limit). After
    /// `leave`, the tags are kept and announced by the next `join`.
    pub fn set_tags(&mut self, now: Instant, tags: Tags) -> Result<(), SetTagsError> {
        self.input(now, |node| node.change_tags(now, tags))?
    }

    /// Sends a user event named `name` with `payload` to every live member.
    /// Each member's process delivers it once, as [`Event::User`], after the
    /// events this node sent before it; a process that starts later never
    /// delivers it. The payload travels to each member about once, along a
    /// tree over the members this node knows; announcements of its id and
    /// pulls repair losses within the window (`user_events.window_count` and
    /// `window_age`). This node does not deliver its own events.
    ///
    /// Refused, with nothing sent, for an empty or too long name, a payload
    /// over `user_events.max_payload`, an event that does not fit one
    /// datagram, or when this node sends faster than `user_events.send_rate`
    /// or its user queue is full ([`SendEventError::Busy`]).
    pub fn send_event(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
    ) -> Result<UserEventId, SendEventError> {
        self.input(now, |node| node.originate(now, name, payload))?
    }

    /// Runs a query: sends `query` to every member its filter picks (this
    /// node included, if it matches), each of which gets an
    /// [`Event::Query`] with a token to answer it with ([`Node::respond`]).
    /// This node then reports, from [`poll_event`](Node::poll_event), an
    /// [`Event::QueryAck`] per member that acked (if
    /// [asked](Query::request_ack)), an [`Event::QueryResponse`] per member
    /// that answered (once each), and one [`Event::QueryDone`] at the timeout
    /// or once every matching member online here has answered. Answers after
    /// that are counted (`Stats::queries.late`) and dropped.
    ///
    /// The timeout defaults to `gossip_interval × queries.timeout_mult ×
    /// ceil(log10(N + 1))` for N online members.
    ///
    /// Refused, with nothing sent, for an empty or too long name, a payload
    /// over `user_events.max_payload`, a zero timeout or one above
    /// `queries.max_timeout`, a bad filter, a query that does not fit one
    /// datagram, or when this node runs queries too fast or too many
    /// ([`QueryError::Busy`]).
    pub fn query(&mut self, now: Instant, query: Query) -> Result<QueryId, QueryError> {
        self.input(now, |node| node.start_query(now, query))?
    }

    /// Answers a query this node received ([`Event::Query`]) with `payload`:
    /// sent straight to the query's origin and through `queries.relays` other
    /// members. One answer per token.
    ///
    /// Refused, with nothing sent, for a token that is unknown, answered
    /// already or past its query's timeout, or a payload over
    /// `queries.max_response_size`.
    pub fn respond(
        &mut self,
        now: Instant,
        token: QueryToken,
        payload: &[u8],
    ) -> Result<(), RespondError> {
        self.input(now, |node| node.answer_query(now, token, payload))?
    }

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

    // ----- output -----

    /// The next datagram to send, with pending updates piggybacked. Call until `None`.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        let (to, message) = loop {
            // User datagrams wait until the membership protocol's are out.
            let user = || {
                self.broadcast
                    .outbox
                    .pop_front()
                    .map(|(to, message)| Outgoing::Message { to, message })
            };
            let Some(next) = self.outbox.pop_front().or_else(user) else {
                trim(&mut self.outbox);
                return None;
            };
            match next {
                Outgoing::Message { to, message } => break (to, message),
                Outgoing::Rows(stream) => {
                    if let Some(chunk) = self.next_chunk(stream) {
                        break chunk;
                    }
                }
                Outgoing::Notice { to, bytes } => {
                    self.send_buf.clear();
                    self.send_buf.extend_from_slice(&bytes);
                    self.stats.packets_sent += 1;
                    self.stats.bytes_sent += bytes.len() as u64;
                    return Some(Transmit {
                        to,
                        payload: &self.send_buf,
                    });
                }
            }
        };
        let mut base = wire::base_len(self.sender(), &message);
        // A claim goes where a dead predecessor may have lived (`conflict.rs`):
        // updates sent there would spend their retransmissions on nobody.
        let claim = matches!(message, Message::Claim { .. });
        // Tombstones first: they are few and small, and rows they cover must
        // not outrun them.
        let tombstones = if claim {
            Vec::new()
        } else {
            self.piggyback_tombstones(base)
        };
        base += tombstones.iter().map(wire::encoded_len).sum::<usize>();
        let updates = if claim {
            Vec::new()
        } else {
            self.piggyback(to, base)
        };
        if let &Message::Ping { seq, .. } = &message
            && !updates.iter().any(|update| update.row.0.node == self.name)
        {
            // Only a ping that carried the `Left` row proves, by its ack, that the row arrived.
            self.leave_notice.forget(seq);
        }
        let refs: Vec<&Update> = updates.iter().collect();
        let event_ids = if self.broadcast.has_announcements() && !claim {
            let used: usize = base + updates.iter().map(wire::encoded_len).sum::<usize>();
            // Two bytes of slack for the item count's varint, as for updates.
            let budget = self.config.max_packet_size.saturating_sub(used + 2);
            self.broadcast
                .take_announcements(self.last_input_at, to, budget)
        } else {
            Vec::new()
        };
        // Built field by field (not with `sender()`) so the borrows stay disjoint.
        let sender = Sender {
            cluster: self.config.cluster_id,
            name: &self.name,
            incarnation: self.incarnation,
            sealed: self.sealer.is_some(),
        };
        wire::encode_items(
            sender,
            &message,
            &refs,
            &event_ids,
            &tombstones,
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

    /// When [`handle_timeout`](Node::handle_timeout) should be called next; `None`
    /// when nothing is scheduled (always, once the node lost its name). Read it
    /// after draining the other `poll_*` calls.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.conflicts.lost_to().is_some() {
            return None;
        }
        self.next_wake()
    }

    // ----- the one way in -----

    /// Runs one input (a `handle_*` call or a command): refuses it once this
    /// node lost its name (the one place that is checked: such a node takes no
    /// input at all), else first notices whether this node stalled (from the
    /// deadlines as they stood), then acts, then brings the timer table up to
    /// date for `poll_timeout`.
    fn input<T>(&mut self, now: Instant, act: impl FnOnce(&mut Self) -> T) -> Result<T, NameTaken> {
        if let Some(by) = self.conflicts.lost_to() {
            return Err(NameTaken { by });
        }
        self.observe_input(now);
        let out = act(self);
        self.reschedule();
        Ok(out)
    }

    // ----- helpers shared by the parts -----

    fn own_row(&self, now: Instant, health: Health) -> TrackerRow {
        TrackerRow::new(
            self.name.clone(),
            self.addr,
            health,
            self.incarnation,
            self.wall_clock(now),
        )
        .with_tags(self.tags.clone())
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
}

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
