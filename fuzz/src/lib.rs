//! Shared harness of the fuzz targets: an in-memory cluster of real
//! `beethoven_core::Node`s whose network (delivery, loss, corruption, replay,
//! time) is driven by the fuzzer, and the invariants checked after every step.
//!
//! Nothing here does IO: addresses are from TEST-NET-1 (192.0.2.0/24, reserved
//! for documentation) and only ever used as map keys.
//!
//! Why this is not the core's shared pump (`beethoven-pump`, in `core/pump`):
//! here the fuzzer, not a seeded model, decides every delivery, loss,
//! corruption, replay and clock step, and a [`Mirror`] rebuilt from each node's
//! events is checked after every one of them. A pump that chooses its own fates
//! could not be steered by the input; and this crate is its own workspace, built
//! with nightly `cargo fuzz`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use beethoven_core::chrono::{DateTime, Utc};
use beethoven_core::{
    Cidr, Config, DropReason, Event, Health, Key, KeyRing, Mode, Node, NodeName, NodeStatus, Op,
    Query, QueryId, QueryToken, Seed, Stats, TagQuery, Tags, TrackerRow,
};

/// Cluster name of every node the harness builds.
pub const CLUSTER: &str = "fuzz";
/// Nodes of the in-memory cluster.
pub const NODES: usize = 3;
/// Datagrams kept in flight (the oldest are lost beyond this).
const MAX_IN_FLIGHT: usize = 256;
/// Datagrams remembered for replays.
const HISTORY: usize = 64;
/// Bound on the work (deliveries and wake-ups) of one `Run` or `Advance`.
const MAX_RUN_STEPS: usize = 1_500;
/// Bound on the work of a whole simulation, so every input finishes quickly.
const MAX_TOTAL_STEPS: usize = 20_000;

/// One monotonic origin for every run (the core only ever sees differences).
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Fixed wall clock at `origin()`.
pub fn wall() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_750_000_000_000).expect("a fixed, valid timestamp")
}

/// Address `i` (mod 8): 192.0.2.(i+1):7946. Nodes start at 0..NODES; the rest
/// are addresses with nobody behind them, or new addresses after a restart.
pub fn addr(i: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i % 8) + 1)), 7946)
}

/// Name `i` (mod 6): `n0`..`n5`; `n0`..`n2` belong to the cluster's nodes.
pub fn name(i: u8) -> NodeName {
    NodeName::new(&format!("n{}", i % 6)).expect("short ASCII names are valid")
}

/// The key every sealed node uses (`key_byte` picks other, wrong keys).
pub fn key(key_byte: u8) -> Key {
    Key::new([key_byte; 32])
}

/// The configuration of node `i`.
pub fn config(i: u8, sealed: bool) -> Config {
    let mut config = Config::for_cluster(CLUSTER).with_rng_seed(0xf00d + u64::from(i));
    if sealed {
        config.keys = Some(KeyRing::new(key(7)));
    }
    config
}

/// A datagram between two addresses.
#[derive(Clone, Debug)]
pub struct Datagram {
    /// Sender.
    pub from: SocketAddr,
    /// Destination.
    pub to: SocketAddr,
    /// Payload.
    pub bytes: Vec<u8>,
}

/// The message kind of a plaintext datagram (after the header, the
/// sender's name and incarnation), for tests that pick datagrams by kind
/// (`core/src/wire/message.rs`, `user.rs`, `query.rs` number them).
pub fn message_kind(bytes: &[u8]) -> Option<u64> {
    fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut at = beethoven_core::HEADER_LEN;
    let name = varint(bytes, &mut at)?;
    at += usize::try_from(name).ok()?;
    varint(bytes, &mut at)?;
    varint(bytes, &mut at)
}

/// What the owner of a node has seen of it, rebuilt from its events only, to be
/// compared with the node's own state.
#[derive(Debug, Default)]
pub struct Mirror {
    rows: BTreeMap<NodeName, TrackerRow>,
    mode: Option<Mode>,
    /// The last user event delivered of each origin process (name, start).
    user_events: BTreeMap<(NodeName, i64), u64>,
    /// Tokens of the queries handed to the owner, in arrival order.
    pub tokens: Vec<QueryToken>,
    /// Tokens this node accepted an answer for: never accepted again.
    pub answered: BTreeSet<QueryToken>,
    /// This process's own queries, by id.
    pub queries: BTreeMap<QueryId, Asked>,
}

/// What the owner heard of one of its queries.
#[derive(Debug, Default)]
pub struct Asked {
    /// Members that acked it.
    pub acked: BTreeSet<NodeName>,
    /// Members that answered it.
    pub responded: BTreeSet<NodeName>,
    /// Whether it ended.
    pub done: bool,
}

impl Mirror {
    /// The running query `id` of this process, for an event about it.
    fn asked(&mut self, node: &Node, id: &QueryId, what: &str) -> &mut Asked {
        assert_eq!(&id.origin, node.name(), "{what} for another node's query");
        let asked = self
            .queries
            .get_mut(id)
            .unwrap_or_else(|| panic!("{what} for a query this process never ran"));
        assert!(!asked.done, "{what} after the query ended");
        asked
    }
}

impl Mirror {
    /// Checks one event against what came before it.
    fn on_event(&mut self, node: &Node, event: Event) {
        match event {
            Event::Tracker(change) => match change.op {
                Op::Write => {
                    let row = change.new_row;
                    assert_eq!(row.status, row.health.status(), "status follows health");
                    let before = self.rows.insert(row.node.clone(), row);
                    assert_eq!(before, change.old_row, "old_row is the row it replaced");
                }
                Op::Delete => {
                    let removed = self.rows.remove(&change.new_row.node);
                    assert_eq!(
                        removed.as_ref(),
                        Some(&change.new_row),
                        "delete names the row"
                    );
                    assert_ne!(
                        &change.new_row.node,
                        node.name(),
                        "a node never reaps itself"
                    );
                }
            },
            Event::NodeUpdate {
                node: other,
                status,
            } => {
                assert_ne!(&other, node.name(), "no notification about self");
                let row = self
                    .rows
                    .get(&other)
                    .expect("a notification follows its row");
                assert_eq!(row.status, status, "notification matches the row");
            }
            Event::ModeChanged(mode) => {
                assert_ne!(self.mode, Some(mode), "mode change to the same mode");
                self.mode = Some(mode);
            }
            Event::User(user) => {
                assert_ne!(
                    &user.id.origin,
                    node.name(),
                    "a node delivers none of its own events"
                );
                let stream = (user.id.origin.clone(), user.id.started);
                let last = self.user_events.insert(stream, user.id.seq).unwrap_or(0);
                assert!(
                    user.id.seq > last,
                    "a user event delivered twice or out of its origin's order"
                );
            }
            Event::Query(request) => {
                assert!(
                    !self.tokens.contains(&request.token)
                        && !self.answered.contains(&request.token),
                    "a query token handed out twice"
                );
                self.tokens.push(request.token);
            }
            Event::QueryAck { id, from } => {
                let asked = self.asked(node, &id, "an ack");
                assert!(asked.acked.insert(from), "a member acked a query twice");
            }
            Event::QueryResponse { id, from, .. } => {
                let asked = self.asked(node, &id, "a response");
                assert!(
                    asked.responded.insert(from),
                    "a member answered a query twice"
                );
            }
            Event::QueryDone(done) => {
                let asked = self.asked(node, &done.id, "the end");
                asked.done = true;
                assert_eq!(
                    done.responded,
                    asked.responded.len(),
                    "the end counts the responses given"
                );
                assert_eq!(
                    done.acked,
                    asked.acked.len(),
                    "the end counts the acks given"
                );
                assert!(
                    done.timed_out || done.responded >= done.expected,
                    "a query ended early without every expected answer"
                );
            }
            _ => {}
        }
    }
}

/// Invariants of one node after its output was drained.
pub fn check_node(node: &Node, mirror: &Mirror) {
    let tracker = node.tracker();
    let own = tracker
        .get(node.name())
        .expect("a node always holds its own row");
    if node.has_left() {
        assert_eq!(own.health, Health::Left, "a node that left says so");
        assert_eq!(
            node.mode(),
            Mode::Standalone,
            "a node that left is standalone"
        );
    } else {
        assert_eq!(own.health, Health::Alive, "a live node holds itself alive");
        assert_eq!(
            own.incarnation,
            node.incarnation(),
            "own row at own incarnation"
        );
        assert_eq!(own.addr, node.addr(), "own row at own address");
        assert_eq!(&own.tags, node.tags(), "own row with own tags");
        let others_online = tracker.online().any(|row| &row.node != node.name());
        let expected = if others_online {
            Mode::Clustered
        } else {
            Mode::Standalone
        };
        assert_eq!(node.mode(), expected, "mode matches the tracker");
    }
    let mut online = 0;
    for row in tracker.rows() {
        assert_eq!(row.status, row.health.status(), "status follows health");
        online += usize::from(row.status == NodeStatus::Online);
    }
    assert_eq!(online, tracker.online_count(), "online count");
    let mirrored: Vec<&TrackerRow> = mirror.rows.values().collect();
    let mut actual: Vec<&TrackerRow> = tracker.rows().collect();
    actual.sort_by(|a, b| a.node.cmp(&b.node)); // rows() has no set order
    assert_eq!(mirrored, actual, "tracker events replay to the tracker");
    if let Some(mode) = mirror.mode {
        assert_eq!(mode, node.mode(), "ModeChanged events replay to the mode");
    } else {
        assert_eq!(node.mode(), Mode::Standalone, "a node starts standalone");
    }
}

/// Drains a node: datagrams into `out`, events into the mirror; then checks it.
pub fn drain(node: &mut Node, mirror: &mut Mirror, out: &mut impl FnMut(Datagram)) {
    let from = node.addr();
    let max = node.config().max_packet_size;
    while let Some(t) = node.poll_transmit() {
        assert!(t.payload.len() <= max, "datagram over max_packet_size");
        out(Datagram {
            from,
            to: t.to,
            bytes: t.payload.to_vec(),
        });
    }
    while let Some(event) = node.poll_event() {
        mirror.on_event(node, event);
    }
    check_node(node, mirror);
}

/// One cluster member slot.
#[derive(Debug)]
pub struct Member {
    /// `None` while crashed.
    pub node: Option<Node>,
    /// What its owner has seen.
    pub mirror: Mirror,
    /// Index for names, seeds and configs.
    pub index: u8,
    /// Whether it seals packets.
    pub sealed: bool,
}

/// An in-memory cluster whose network the caller drives step by step.
#[derive(Debug)]
pub struct Sim {
    /// The current time.
    pub now: Instant,
    /// The members.
    pub members: Vec<Member>,
    /// Datagrams sent and not yet delivered or lost.
    pub in_flight: VecDeque<Datagram>,
    /// Recently delivered datagrams, for replays.
    pub history: VecDeque<Datagram>,
    /// Every datagram delivered, when capturing a corpus.
    pub capture: Option<Vec<Datagram>>,
    /// Work left for `Run` and `Advance` (see `MAX_TOTAL_STEPS`).
    steps_left: usize,
}

impl Sim {
    /// `NODES` nodes, none joined yet.
    pub fn new(sealed: bool) -> Self {
        let now = origin();
        let mut sim = Self {
            now,
            members: Vec::new(),
            in_flight: VecDeque::new(),
            history: VecDeque::new(),
            capture: None,
            steps_left: MAX_TOTAL_STEPS,
        };
        for i in 0..NODES as u8 {
            let node = Node::new(config(i, sealed), name(i), addr(i), now, wall())
                .expect("the harness config is valid");
            sim.members.push(Member {
                node: Some(node),
                mirror: Mirror::default(),
                index: i,
                sealed,
            });
            sim.drain(usize::from(i));
        }
        sim
    }

    /// A formed cluster: everyone joined through node 0 and the network ran a while.
    pub fn formed(sealed: bool) -> Self {
        let mut sim = Self::new(sealed);
        for i in 1..NODES as u8 {
            sim.apply(&Action::Join { node: i, seed: 0 });
        }
        sim.apply(&Action::Run { ms: 1_000 });
        sim
    }

    fn drain(&mut self, i: usize) {
        let member = &mut self.members[i];
        let Some(node) = member.node.as_mut() else {
            return;
        };
        let in_flight = &mut self.in_flight;
        drain(node, &mut member.mirror, &mut |d| {
            if in_flight.len() >= MAX_IN_FLIGHT {
                in_flight.pop_front();
            }
            in_flight.push_back(d);
        });
    }

    fn member_at(&self, to: SocketAddr) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.node.as_ref().is_some_and(|n| n.addr() == to))
    }

    /// Hands a datagram to whoever listens at its destination. Returns whether
    /// somebody did.
    pub fn deliver(&mut self, d: Datagram) -> bool {
        let Some(i) = self.member_at(d.to) else {
            return false;
        };
        let now = self.now;
        if let Some(node) = self.members[i].node.as_mut() {
            node.handle_packet(now, d.from, &d.bytes);
        }
        self.drain(i);
        if let Some(capture) = self.capture.as_mut() {
            capture.push(d.clone());
        }
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(d);
        true
    }

    fn take(&mut self, pick: u8) -> Option<Datagram> {
        if self.in_flight.is_empty() {
            return None;
        }
        let at = usize::from(pick) % self.in_flight.len();
        self.in_flight.remove(at)
    }

    fn node_index(&self, node: u8) -> usize {
        usize::from(node) % self.members.len()
    }

    fn with_node(&mut self, node: u8, f: impl FnOnce(&mut Node, Instant)) {
        let i = self.node_index(node);
        let now = self.now;
        if let Some(n) = self.members[i].node.as_mut() {
            f(n, now);
        }
        self.drain(i);
    }

    /// Wakes every live node whose deadline has come, except those in `frozen`.
    fn fire_due(&mut self, frozen: u8) {
        for i in 0..self.members.len() {
            if frozen & (1 << i) != 0 {
                continue;
            }
            let now = self.now;
            let due = self.members[i]
                .node
                .as_ref()
                .and_then(Node::poll_timeout)
                .is_some_and(|at| at <= now);
            if due {
                if let Some(node) = self.members[i].node.as_mut() {
                    node.handle_timeout(now);
                    // Otherwise a runtime would spin on the same deadline.
                    assert!(
                        node.poll_timeout().is_none_or(|at| at > now),
                        "after handle_timeout(now) the next deadline is still due"
                    );
                }
                self.drain(i);
            }
        }
    }

    /// The earliest deadline among the live nodes not in `frozen`.
    fn next_deadline(&self, frozen: u8) -> Option<Instant> {
        self.members
            .iter()
            .enumerate()
            .filter(|(i, _)| frozen & (1 << i) == 0)
            .filter_map(|(_, m)| m.node.as_ref().and_then(Node::poll_timeout))
            .min()
    }

    /// Lets `ms` of time pass. With `network`, datagrams are delivered at once
    /// (and bounce back as unreachable hints where nobody listens); without it
    /// they stay in flight. Nodes in `frozen` are not woken (a stalled process).
    fn pass(&mut self, ms: u16, network: bool, frozen: u8) {
        let end = self.now + Duration::from_millis(u64::from(ms));
        let budget = MAX_RUN_STEPS.min(self.steps_left);
        let mut steps = 0;
        loop {
            if network {
                while let Some(d) = self.in_flight.pop_front() {
                    steps += 1;
                    if steps > budget {
                        break;
                    }
                    let (from, to) = (d.from, d.to);
                    if !self.deliver(d)
                        && let Some(i) = self.member_at(from)
                    {
                        let now = self.now;
                        if let Some(node) = self.members[i].node.as_mut() {
                            node.handle_unreachable(now, to);
                        }
                        self.drain(i);
                    }
                }
            }
            steps += 1;
            if steps > budget {
                break;
            }
            match self.next_deadline(frozen) {
                Some(at) if at <= end => {
                    // Time never goes backwards, even for a deadline already past.
                    self.now = self.now.max(at);
                    self.fire_due(frozen);
                }
                _ => break,
            }
        }
        self.steps_left = self.steps_left.saturating_sub(steps);
        // Out of budget: time still passes, as a wake-up at the end.
        self.now = self.now.max(end);
        self.fire_due(frozen);
    }

    /// Applies one fuzzer-chosen action.
    pub fn apply(&mut self, action: &Action) {
        match *action {
            Action::Deliver { pick } => {
                if let Some(d) = self.take(pick) {
                    self.deliver(d);
                }
            }
            Action::DeliverCorrupted { pick, at, xor } => {
                if let Some(mut d) = self.take(pick) {
                    if !d.bytes.is_empty() {
                        let at = usize::from(at) % d.bytes.len();
                        d.bytes[at] ^= xor.max(1);
                    }
                    self.deliver(d);
                }
            }
            Action::DeliverTruncated { pick, len } => {
                if let Some(mut d) = self.take(pick) {
                    d.bytes.truncate(usize::from(len) % (d.bytes.len() + 1));
                    self.deliver(d);
                }
            }
            Action::Duplicate { pick } => {
                if !self.in_flight.is_empty() {
                    let at = usize::from(pick) % self.in_flight.len();
                    let d = self.in_flight[at].clone();
                    self.deliver(d);
                }
            }
            Action::Lose { pick } => {
                self.take(pick);
            }
            Action::Redirect { pick, to } => {
                if let Some(mut d) = self.take(pick) {
                    d.to = addr(to);
                    self.deliver(d);
                }
            }
            Action::Replay { pick, to } => {
                if !self.history.is_empty() {
                    let at = usize::from(pick) % self.history.len();
                    let mut d = self.history[at].clone();
                    if let Some(to) = to {
                        d.to = addr(to);
                    }
                    self.deliver(d);
                }
            }
            Action::Raw {
                from,
                to,
                ref bytes,
            } => {
                self.deliver(Datagram {
                    from: addr(from),
                    to: addr(to),
                    bytes: bytes.clone(),
                });
            }
            Action::Run { ms } => self.pass(ms, true, 0),
            Action::Advance { ms, frozen } => self.pass(ms, false, frozen),
            Action::Timeout { node } => self.with_node(node, |n, now| n.handle_timeout(now)),
            Action::Unreachable { node, to } => {
                self.with_node(node, |n, now| n.handle_unreachable(now, addr(to)));
            }
            Action::NewNode { node, who, at } => self.with_node(node, |n, now| {
                let _ = n.new_node(now, name(who), addr(at));
            }),
            Action::Join { node, seed } => self.with_node(node, |n, now| {
                let _ = n.join(now, &[Seed::Addr(addr(seed))]);
            }),
            Action::JoinRange { node, prefix } => self.with_node(node, |n, now| {
                let network = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0));
                if let Ok(cidr) = Cidr::new(network, prefix % 33) {
                    let _ = n.join(now, &[Seed::Range { cidr, port: 7946 }]);
                }
            }),
            Action::Leave { node } => self.with_node(node, |n, now| {
                let _ = n.leave(now);
            }),
            Action::SetKeys { node, key: choice } => self.with_node(node, |n, _| {
                n.set_key_ring(
                    choice.map(|byte| KeyRing::new(key(byte % 2 + 7)).accepting(key(7))),
                );
            }),
            Action::SetTags { node, ref tags } => self.with_node(node, |n, now| {
                let before = (n.incarnation(), n.tags().clone());
                let refused = match Tags::from_pairs(tags.iter().map(|(k, v)| (k, v))) {
                    Ok(tags) => n.set_tags(now, tags).is_err(),
                    Err(_) => true,
                };
                if refused {
                    assert_eq!(
                        (n.incarnation(), n.tags().clone()),
                        before,
                        "a refused set_tags changed nothing"
                    );
                }
            }),
            Action::SendEvent {
                node,
                ref name,
                ref payload,
            } => self.with_node(node, |n, now| {
                let before = n.stats().user_events.clone();
                if n.send_event(now, name, payload).is_err() {
                    assert_eq!(
                        n.stats().user_events,
                        before,
                        "a refused send_event changed nothing"
                    );
                }
            }),
            Action::Query {
                node,
                ref name,
                ref payload,
                ref nodes,
                ref tags,
                timeout_ms,
                request_ack,
            } => {
                let mut query = Query::new(name.clone(), payload.clone());
                for &who in nodes {
                    query = query.node(self::name(who));
                }
                for (key, value, offline) in tags {
                    let mut tag = match value {
                        Some(value) => TagQuery::key_value(key.clone(), value.clone()),
                        None => TagQuery::key(key.clone()),
                    };
                    if *offline {
                        tag = tag.including_offline();
                    }
                    query = query.tag(tag);
                }
                if let Some(ms) = timeout_ms {
                    query = query.timeout(Duration::from_millis(u64::from(ms)));
                }
                if request_ack {
                    query = query.request_ack();
                }
                self.query(node, query);
            }
            Action::Respond {
                node,
                pick,
                other,
                len,
            } => self.respond(node, pick, other, len),
            Action::Crash { node } => {
                let i = self.node_index(node);
                self.members[i].node = None;
            }
            Action::Restart { node, move_to } => {
                let i = self.node_index(node);
                let member = &self.members[i];
                if member.node.is_some() {
                    return;
                }
                let at = match move_to {
                    // A new address nobody else uses.
                    true => addr(member.index + 5),
                    false => addr(member.index),
                };
                if self.member_at(at).is_some() {
                    return;
                }
                let (index, sealed) = (member.index, member.sealed);
                let now = self.now;
                let wall_now = wall() + (now - origin());
                let mut node = Node::new(config(index, sealed), name(index), at, now, wall_now)
                    .expect("the harness config is valid");
                let seeds: Vec<Seed> = (0..NODES as u8)
                    .filter(|&j| j != index)
                    .map(|j| Seed::Addr(addr(j)))
                    .collect();
                let _ = node.join(now, &seeds);
                self.members[i] = Member {
                    node: Some(node),
                    mirror: Mirror::default(),
                    index,
                    sealed,
                };
                self.drain(i);
            }
        }
    }

    /// `query` at `node`: a refused one changes nothing; an accepted one is
    /// the owner's to hear of (its acks, answers and end, checked by the
    /// mirror).
    pub fn query(&mut self, node: u8, query: Query) {
        let i = self.node_index(node);
        let now = self.now;
        let member = &mut self.members[i];
        let Some(n) = member.node.as_mut() else {
            return;
        };
        let before = n.stats().queries.clone();
        match n.query(now, query) {
            Ok(id) => {
                assert_eq!(n.stats().queries.sent, before.sent + 1, "a query counted");
                let fresh = member.mirror.queries.insert(id, Asked::default());
                assert!(fresh.is_none(), "a query id given twice");
            }
            Err(_) => assert_eq!(n.stats().queries, before, "a refused query changed nothing"),
        }
        self.drain(i);
    }

    /// `respond` at `node` with `len` bytes (mod 4096, past both limits):
    /// to the token `pick` of those it was handed, or (`other`) of those
    /// another node was handed, which this node may not know. A refused
    /// answer changes nothing; an accepted one is counted once, and its
    /// token is refused ever after.
    pub fn respond(&mut self, node: u8, pick: u8, other: bool, len: u16) {
        let i = self.node_index(node);
        let from = if other {
            (i + 1) % self.members.len()
        } else {
            i
        };
        let tokens = &self.members[from].mirror.tokens;
        let Some(&token) = tokens.get(usize::from(pick) % tokens.len().max(1)) else {
            return;
        };
        let now = self.now;
        let member = &mut self.members[i];
        let Some(n) = member.node.as_mut() else {
            return;
        };
        let before = n.stats().queries.clone();
        let payload = vec![0x5a; usize::from(len) % 4096];
        match n.respond(now, token, &payload) {
            Ok(()) => {
                assert!(
                    member.mirror.answered.insert(token),
                    "an answered token accepted again"
                );
                assert_eq!(
                    n.stats().queries.responses_sent,
                    before.responses_sent + 1,
                    "an answer counted once"
                );
            }
            Err(_) => assert_eq!(
                n.stats().queries,
                before,
                "a refused answer changed nothing"
            ),
        }
        self.drain(i);
    }

    /// Names of the nodes that are running.
    pub fn live(&self) -> BTreeSet<NodeName> {
        self.members
            .iter()
            .filter_map(|m| m.node.as_ref().map(|n| n.name().clone()))
            .collect()
    }
}

/// One step of a fuzzed run.
#[derive(Arbitrary, Clone, Debug)]
pub enum Action {
    /// Deliver the in-flight datagram `pick` (mod their number).
    Deliver { pick: u8 },
    /// Deliver it with one byte flipped.
    DeliverCorrupted { pick: u8, at: u16, xor: u8 },
    /// Deliver only its first `len` bytes (mod its length + 1).
    DeliverTruncated { pick: u8, len: u16 },
    /// Deliver a copy and keep the original in flight.
    Duplicate { pick: u8 },
    /// Lose it.
    Lose { pick: u8 },
    /// Deliver it to another address (a new process at an old address).
    Redirect { pick: u8, to: u8 },
    /// Deliver an old datagram again, to its destination or another.
    Replay { pick: u8, to: Option<u8> },
    /// Arbitrary bytes from any address to any address.
    Raw { from: u8, to: u8, bytes: Vec<u8> },
    /// A healthy network for `ms` milliseconds.
    Run { ms: u16 },
    /// `ms` milliseconds in which nothing is delivered; nodes in `frozen` (bit
    /// mask) are not woken either.
    Advance { ms: u16, frozen: u8 },
    /// A spurious wake-up.
    Timeout { node: u8 },
    /// An unreachable hint about any address.
    Unreachable { node: u8, to: u8 },
    /// `new_node` with any name and address.
    NewNode { node: u8, who: u8, at: u8 },
    /// `join` through one address.
    Join { node: u8, seed: u8 },
    /// `join` scanning a range of 192.0.2.0.
    JoinRange { node: u8, prefix: u8 },
    /// `leave`.
    Leave { node: u8 },
    /// Replace the key ring (or remove it).
    SetKeys { node: u8, key: Option<u8> },
    /// `set_tags` with any pairs (duplicates and tags over the limits are
    /// refused, and must change nothing).
    SetTags {
        node: u8,
        tags: Vec<(String, String)>,
    },
    /// The process dies (its datagrams in flight stay in flight).
    Crash { node: u8 },
    /// A crashed node starts again under its name, at its address or a new one,
    /// and joins through the others.
    Restart { node: u8, move_to: bool },
    /// `send_event` with any name and payload (empty, too long or too fast
    /// are refused, and must change nothing).
    SendEvent {
        node: u8,
        name: String,
        payload: Vec<u8>,
    },
    /// `query` with any name, payload, filter (names `n0`..`n5`; tag
    /// queries by key, value and whether they include offline members) and
    /// timeout (`None`: the default; zero and over the limit are refused, as
    /// are empty keys and offline members, and must change nothing).
    Query {
        node: u8,
        name: String,
        payload: Vec<u8>,
        nodes: Vec<u8>,
        tags: Vec<(String, Option<String>, bool)>,
        timeout_ms: Option<u32>,
        request_ack: bool,
    },
    /// `respond` with `len` bytes (mod 4096) to the `pick`th token this node
    /// was handed, or (`other`) another node was: answered, expired, unknown
    /// here or valid.
    Respond {
        node: u8,
        pick: u8,
        other: bool,
        len: u16,
    },
}

/// The node states the `handle_packet` target feeds bytes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// Just created, standalone.
    Fresh,
    /// Joining (accepts join replies).
    Joining,
    /// Member of a formed three-node cluster.
    Clustered,
    /// Member of a formed cluster that seals packets.
    Sealed,
}

impl Setup {
    /// The setup a selector byte names.
    pub fn from_byte(byte: u8) -> Self {
        match byte % 4 {
            0 => Setup::Fresh,
            1 => Setup::Joining,
            2 => Setup::Clustered,
            _ => Setup::Sealed,
        }
    }

    /// Its selector byte.
    pub fn byte(self) -> u8 {
        match self {
            Setup::Fresh => 0,
            Setup::Joining => 1,
            Setup::Clustered => 2,
            Setup::Sealed => 3,
        }
    }

    /// A simulation in this state; node 0 is the one under test.
    pub fn build(self) -> Sim {
        match self {
            Setup::Fresh => Sim::new(false),
            Setup::Joining => {
                let mut sim = Sim::new(false);
                sim.apply(&Action::Join { node: 0, seed: 1 });
                sim.in_flight.clear();
                sim
            }
            Setup::Clustered => Sim::formed(false),
            Setup::Sealed => Sim::formed(true),
        }
    }
}

/// Drops of whole datagrams: every drop but the skipped parts of a later wire
/// version.
fn datagram_drops(stats: &Stats) -> u64 {
    stats.dropped_total()
        - stats.dropped(DropReason::UnknownMessage)
        - stats.dropped(DropReason::UnknownPiggyback)
}

/// The `handle_packet` target: the first byte picks the node's state, the rest is
/// one datagram for node 0 from node 1's address. Panics on a broken invariant:
/// every datagram counted; a dropped one (a drop counter went up) changes nothing
/// (tracker, mode, incarnation, no event, no datagram sent but at most one
/// refusal notice, shorter than it); the node's
/// invariants hold afterwards. Skipped parts of a later wire version (an
/// unknown message or piggybacked item kind) are counted too, but the rest of
/// their datagram applies, so they are not drops of the datagram.
pub fn check_datagram(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let mut sim = Setup::from_byte(selector).build();
    let now = sim.now;
    let member = &mut sim.members[0];
    let node = member.node.as_mut().expect("node 0 is running");
    let tracker = node.tracker().clone();
    let (mode, incarnation) = (node.mode(), node.incarnation());
    let dropped = datagram_drops(node.stats());
    let received = node.stats().packets_received;

    node.handle_packet(now, addr(1), bytes);

    assert_eq!(
        node.stats().packets_received,
        received + 1,
        "every datagram is counted"
    );
    if datagram_drops(node.stats()) > dropped {
        assert_eq!(
            datagram_drops(node.stats()),
            dropped + 1,
            "one datagram, one drop"
        );
        assert!(
            node.tracker() == &tracker,
            "a dropped datagram changed the tracker"
        );
        assert_eq!(node.mode(), mode, "a dropped datagram changed the mode");
        assert_eq!(
            node.incarnation(),
            incarnation,
            "a dropped datagram changed the incarnation"
        );
        // A packet the node cannot open, or another cluster's, may be
        // answered by one refusal notice: unsealed, and shorter than it.
        if let Some(sent) = node.poll_transmit() {
            assert!(
                sent.payload.len() < bytes.len() && sent.payload.get(5) == Some(&0),
                "a dropped datagram caused a send other than a refusal notice"
            );
        }
        assert!(
            node.poll_transmit().is_none(),
            "a dropped datagram caused more than one send"
        );
        assert!(
            node.poll_event().is_none(),
            "a dropped datagram caused an event"
        );
    }
    drain(node, &mut member.mirror, &mut |_| {});
}

/// [`check_mangled`] on the first datagram of each of `kinds` in `traffic`
/// (each must be there).
pub fn check_kinds_mangled(traffic: &[Datagram], kinds: &[u64]) {
    for &kind in kinds {
        let d = traffic
            .iter()
            .find(|d| message_kind(&d.bytes) == Some(kind))
            .unwrap_or_else(|| panic!("the traffic has a message of kind {kind}"));
        check_mangled(&d.bytes);
    }
}

/// [`check_datagram`] on a real datagram for node 0 as it is (in the fresh,
/// clustered and sealed setups), cut short at every length past the header,
/// and with each byte past the header flipped (clustered).
pub fn check_mangled(bytes: &[u8]) {
    for setup in [Setup::Fresh, Setup::Clustered, Setup::Sealed] {
        let mut input = vec![setup.byte()];
        input.extend_from_slice(bytes);
        check_datagram(&input);
    }
    let clustered = Setup::Clustered.byte();
    for cut in beethoven_core::HEADER_LEN..bytes.len() {
        let mut input = vec![clustered];
        input.extend_from_slice(&bytes[..cut]);
        check_datagram(&input);
    }
    for at in beethoven_core::HEADER_LEN..bytes.len() {
        let mut input = vec![clustered];
        input.extend_from_slice(bytes);
        input[1 + at] ^= 0xff;
        check_datagram(&input);
    }
}
