//! User events: sent by one node, delivered once to every live member's
//! process, in each origin's order.
//!
//! - **Payload once.** The origin pushes an event along a tree laid over a
//!   ring of the members it knows, new for every event (`tree.rs`): with
//!   agreeing member lists every member receives the payload once.
//! - **Ids many times.** Every holder piggybacks the event's id on its next
//!   few packets (`announce_transmits`); a node that lacks it pulls it from
//!   the announcer. That repairs lost pushes and members a holder did not know.
//! - **Once, in order** (`stream.rs`): each origin process numbers its events
//!   from 1; a receiver delivers them in that order, holding later ones until
//!   a gap is pulled (or, after half the window's age, given up and counted).
//!   Events sent before this process started, or older than the window, are
//!   never delivered: the first event a process delivers of an origin is the
//!   first the origin sent after it started.
//! - **No clock is compared with another's.** Whether an event predates this
//!   process is told by its *age*: 0 at the origin, and every node that
//!   passes it on (a push, a pull's answer, an announcement) adds how long it
//!   held it, by its own monotonic clock. An event older than this process's
//!   uptime was sent before it started; an event older than `window_age` is
//!   dropped. Whether the one before it predates this process too adds the
//!   gap between the two sends, a difference of two readings of the origin's
//!   own clock. Skewed wall clocks change nothing; what an age leaves out is
//!   the time its copies spent on the wire, so an event sent within that
//!   much (milliseconds on a LAN) before a process started may be delivered
//!   to it. The origin's `sent_at` is only shown to the application.
//! - **Under loss** announcements ride on more packets, and more origins are
//!   re-announced a round, by the stretch suspicion takes from the loss this
//!   node measures; a pull is asked again of random members for half the
//!   window's age before it is given up.
//! - **After a partition**, a member back from the dead is told at once the
//!   newest event this node holds of every origin (on a few datagrams to it);
//!   it pulls what it lacks, then walks back the gap before each. Every node
//!   also re-announces the newest stored event of a few origins each second.
//! - **Back pressure.** User datagrams wait in their own queue, sent after
//!   everything the membership protocol queued; a full queue refuses sends
//!   ([`SendEventError::Busy`]) and drops forwards (pulls repair them). Each
//!   receiver limits each origin's rate and counts what it drops.

mod stream;
pub(super) mod tree;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;
use std::time::{Duration, Instant};

use chrono::DateTime;
use tracing::debug;

use super::Node;
use super::timer::Timer;
use crate::config::Config;
use crate::event::Event;
use crate::limiter::Bucket;
use crate::name::NodeName;
use crate::user::{SendEventError, UserEvent, UserEventId};
use crate::wire::{self, EventId, EventKey, Message, WireEvent};
use stream::{Offer, Stream};

/// Most origin processes followed at once; the longest silent is forgotten first.
const MAX_STREAMS: usize = 4096;
/// Most gap events pulled at once for one origin.
const PULL_BATCH: u64 = 8;
/// Origins whose newest event is re-announced each `REANNOUNCE_EVERY`
/// (more under loss).
const REANNOUNCE_STREAMS: usize = 4;
/// How many times a push along the tree is sent before its run is left to
/// announcements and pulls: at 50 % loss one in 256 is never received.
const PUSH_TRIES: u32 = 8;
/// How often the newest events are re-announced (for partitions and tails).
const REANNOUNCE_EVERY: Duration = Duration::from_millis(500);

/// A node's user-event state.
#[derive(Debug)]
pub(super) struct Broadcast {
    /// The sequence number of this process's next event.
    next_seq: u64,
    /// When this process sent its last event (Unix ms; `i64::MIN`: none yet).
    last_sent_at: i64,
    lamport: u64,
    send_bucket: Bucket,
    streams: BTreeMap<(NodeName, i64), Stream>,
    /// How many of `streams` hold events waiting for a gap, kept by
    /// [`StreamMut`]: the timer asks after every input whether any does, and
    /// scanning every origin's stream for it was a tenth of a loaded node's time.
    waiting: usize,
    /// Recent events (the window), to answer pulls, with when each came
    /// (its `age_ms` is its age then).
    store: BTreeMap<EventKey, (WireEvent, Instant)>,
    /// The store's keys in arrival order, for the window's count and age.
    arrivals: VecDeque<(Instant, EventKey)>,
    /// Announcements to piggyback, each with the packets it still rides on
    /// and when it was queued (its `age_ms` is its age then).
    announce: VecDeque<(EventId, u32, Instant)>,
    /// Announcements for one member only (what this node holds, for a member
    /// back from the dead), on the next packets to it before the others.
    targeted: BTreeMap<SocketAddr, Vec<EventId>>,
    /// Events heard of and lacked: when to pull them, and from whom.
    wanted: BTreeMap<EventKey, (Instant, SocketAddr)>,
    /// Pulls in flight: when the last was sent, and when the first was.
    pulls: BTreeMap<EventKey, (Instant, Instant)>,
    /// Stored events this node pushed along its run already (a pull's
    /// answer carries no run: a push that comes after it is still forwarded).
    forwarded: BTreeSet<EventKey>,
    /// Pushes along the tree not acked yet: the run's end, when to push
    /// again, and the tries made.
    unacked: BTreeMap<(EventKey, SocketAddr), (u64, Instant, u32)>,
    /// User datagrams, sent after the membership protocol's.
    pub(super) outbox: VecDeque<(SocketAddr, Message)>,
    next_reannounce: Instant,
    /// The last origin re-announced (the rotation's cursor).
    reannounced: Option<(NodeName, i64)>,
    /// Reused buffers for the tree.
    positions: Vec<(u64, SocketAddr)>,
    pushes: Vec<(SocketAddr, u64)>,
}

impl Broadcast {
    pub(super) fn new(config: &Config, now: Instant) -> Self {
        Self {
            next_seq: 1,
            last_sent_at: i64::MIN,
            lamport: 0,
            send_bucket: Bucket::full(config.user_events.send_burst, now),
            streams: BTreeMap::new(),
            waiting: 0,
            store: BTreeMap::new(),
            arrivals: VecDeque::new(),
            announce: VecDeque::new(),
            targeted: BTreeMap::new(),
            wanted: BTreeMap::new(),
            pulls: BTreeMap::new(),
            unacked: BTreeMap::new(),
            forwarded: BTreeSet::new(),
            outbox: VecDeque::new(),
            next_reannounce: now,
            reannounced: None,
            positions: Vec::new(),
            pushes: Vec::new(),
        }
    }

    /// Whether a timer should wake the node for this part: pulls to make or
    /// in flight, events waiting for a gap.
    pub(super) fn has_pending_work(&self) -> bool {
        !self.wanted.is_empty()
            || !self.pulls.is_empty()
            || !self.unacked.is_empty()
            || self.waiting_streams() > 0
    }

    /// How many streams hold events waiting for a gap.
    fn waiting_streams(&self) -> usize {
        debug_assert_eq!(
            self.waiting,
            self.streams.values().filter(|s| s.is_waiting()).count(),
            "the count of waiting streams follows every change of a stream"
        );
        self.waiting
    }

    /// The stream of `id`, to change (see [`StreamMut`]).
    fn stream_mut(&mut self, id: &(NodeName, i64)) -> Option<StreamMut<'_>> {
        let stream = self.streams.get_mut(id)?;
        Some(StreamMut::new(stream, &mut self.waiting))
    }

    pub(super) fn has_announcements(&self) -> bool {
        !self.announce.is_empty() || !self.targeted.is_empty()
    }

    /// The announcements for a packet to `to` that fit `budget` bytes: those
    /// meant for `to` first, then the others, each counted as sent once.
    pub(super) fn take_announcements(
        &mut self,
        now: Instant,
        to: SocketAddr,
        budget: usize,
    ) -> Vec<EventId> {
        let mut taken = Vec::new();
        let mut left = budget;
        if let Some(ids) = self.targeted.get_mut(&to) {
            while let Some(id) = ids.last() {
                let len = wire::encoded_len(id);
                if len > left {
                    break;
                }
                left -= len;
                taken.extend(ids.pop());
            }
            if ids.is_empty() {
                self.targeted.remove(&to);
            }
        }
        for (id, transmits, queued) in &mut self.announce {
            let len = wire::encoded_len(id);
            if len > left {
                break;
            }
            left -= len;
            let mut aged = id.clone();
            aged.age_ms = aged_ms(id.age_ms, *queued, now);
            taken.push(aged);
            *transmits = transmits.saturating_sub(1);
        }
        self.announce.retain(|(_, transmits, _)| *transmits > 0);
        taken
    }

    /// Queues `event`'s announcement (`event.age_ms` is its age `now`).
    fn queue_announcement(
        &mut self,
        now: Instant,
        event: &WireEvent,
        transmits: u32,
        limit: usize,
    ) {
        if self.announce.len() >= limit {
            self.announce.pop_front();
        }
        let id = EventId {
            key: event.key.clone(),
            sent_at: event.sent_at,
            age_ms: event.age_ms,
        };
        self.announce.push_back((id, transmits, now));
    }

    /// Keeps `event` for pulls, within the window (`event.age_ms` is its age `now`).
    fn store(&mut self, now: Instant, event: &WireEvent) {
        let mut kept = event.clone();
        kept.span = None;
        self.arrivals.push_back((now, kept.key.clone()));
        self.store.insert(kept.key.clone(), (kept, now));
    }

    /// The stored event of `key`, with its age at `now`.
    fn stored(&self, key: &EventKey, now: Instant) -> Option<WireEvent> {
        self.store
            .get(key)
            .map(|(event, came)| aged(event, *came, now))
    }

    fn evict(&mut self, now: Instant, count: usize, age: Duration) {
        while let Some((at, _)) = self.arrivals.front() {
            if self.arrivals.len() <= count && now.saturating_duration_since(*at) < age {
                break;
            }
            if let Some((_, key)) = self.arrivals.pop_front() {
                self.store.remove(&key);
                self.forwarded.remove(&key);
            }
        }
    }

    /// The stream of `key`'s origin process, made if new (forgetting the
    /// longest silent one when full).
    fn stream(
        &mut self,
        key: &EventKey,
        now: Instant,
        burst: u32,
        from: SocketAddr,
    ) -> StreamMut<'_> {
        let id = (key.origin.clone(), key.started);
        if !self.streams.contains_key(&id) && self.streams.len() >= MAX_STREAMS {
            let idle = self
                .streams
                .iter()
                .filter(|(_, stream)| !stream.is_waiting())
                .min_by_key(|(_, stream)| stream.heard_at)
                .map(|(id, _)| id.clone());
            if let Some(idle) = idle {
                self.streams.remove(&idle);
            }
        }
        // Only a stream that waits for nothing is forgotten, and a new one
        // waits for nothing: the count of waiting streams stays true.
        let stream = self
            .streams
            .entry(id)
            .or_insert_with(|| Stream::new(now, burst, from));
        StreamMut::new(stream, &mut self.waiting)
    }
}

/// What a receiver makes of an event's push or pull answer, by its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admit {
    /// Delivered, held, skipped or stored already.
    Known,
    /// New, and within its origin's rate.
    New,
    /// Over its origin's rate: given up, with the gap before it (`skipped`
    /// events counting it).
    OverRate { skipped: u64 },
}

/// A stream borrowed to change: when dropped, it keeps
/// [`Broadcast::waiting`] true of it. Every change of a stream's held events
/// goes through one.
struct StreamMut<'a> {
    stream: &'a mut Stream,
    waiting: &'a mut usize,
    was_waiting: bool,
}

impl<'a> StreamMut<'a> {
    fn new(stream: &'a mut Stream, waiting: &'a mut usize) -> Self {
        let was_waiting = stream.is_waiting();
        Self {
            stream,
            waiting,
            was_waiting,
        }
    }
}

impl std::ops::Deref for StreamMut<'_> {
    type Target = Stream;

    fn deref(&self) -> &Stream {
        self.stream
    }
}

impl std::ops::DerefMut for StreamMut<'_> {
    fn deref_mut(&mut self) -> &mut Stream {
        self.stream
    }
}

impl Drop for StreamMut<'_> {
    fn drop(&mut self) {
        match (self.was_waiting, self.stream.is_waiting()) {
            (false, true) => *self.waiting += 1,
            (true, false) => *self.waiting -= 1,
            _ => {}
        }
    }
}

/// Ids a digest packet carries at most (a default datagram holds more).
const DIGEST_CHUNK: usize = 16;

/// An age in ms taken at `then`, at `now` (this node's time holding it added).
fn aged_ms(age_ms: u64, then: Instant, now: Instant) -> u64 {
    let held = now.saturating_duration_since(then).as_millis();
    age_ms.saturating_add(u64::try_from(held).unwrap_or(u64::MAX))
}

/// A copy of `event` (its age taken at `then`) with its age at `now`.
fn aged(event: &WireEvent, then: Instant, now: Instant) -> WireEvent {
    let mut copy = event.clone();
    copy.age_ms = aged_ms(event.age_ms, then, now);
    copy
}

fn public_id(key: &EventKey) -> UserEventId {
    UserEventId {
        origin: key.origin.clone(),
        started: key.started,
        seq: key.seq,
    }
}

impl Node {
    /// See [`Node::send_event`].
    pub(super) fn originate(
        &mut self,
        now: Instant,
        name: &str,
        payload: &[u8],
    ) -> Result<UserEventId, SendEventError> {
        let limits = &self.config.user_events;
        if name.is_empty() {
            return Err(SendEventError::EmptyName);
        }
        if name.len() > limits.max_name_len {
            return Err(SendEventError::NameTooLong {
                len: name.len(),
                limit: limits.max_name_len,
            });
        }
        if payload.len() > limits.max_payload {
            return Err(SendEventError::PayloadTooLarge {
                len: payload.len(),
                limit: limits.max_payload,
            });
        }
        let sent_at = self
            .wall_clock(now)
            .timestamp_millis()
            .max(self.broadcast.last_sent_at);
        let event = WireEvent {
            key: EventKey {
                origin: self.name.clone(),
                started: self.started_ms(),
                seq: self.broadcast.next_seq,
            },
            sent_at,
            prev_sent_at: self.broadcast.last_sent_at,
            lamport: self.broadcast.lamport + 1,
            name: name.to_string(),
            payload: payload.to_vec(),
            span: None,
            age_ms: 0,
        };
        // Sized with the largest span and age a push carries.
        let widest = Message::Event(Box::new(WireEvent {
            span: Some(u64::MAX),
            age_ms: u64::try_from(limits.window_age.as_millis()).unwrap_or(u64::MAX),
            ..event.clone()
        }));
        let len = wire::base_len(self.sender(), &widest);
        if len > self.config.max_packet_size {
            return Err(SendEventError::TooLargeForDatagram {
                len,
                limit: self.config.max_packet_size,
            });
        }
        let limits = &self.config.user_events;
        if self.broadcast.outbox.len() + limits.fanout > limits.max_queued
            || !self
                .broadcast
                .send_bucket
                .take(now, limits.send_rate, limits.send_burst)
        {
            return Err(SendEventError::Busy);
        }
        self.broadcast.next_seq += 1;
        self.broadcast.last_sent_at = sent_at;
        self.broadcast.lamport += 1;
        self.stats.user_events.sent += 1;
        let id = public_id(&event.key);
        self.broadcast.store(now, &event);
        let (transmits, limit) = (
            self.announce_transmits(),
            self.config.user_events.window_count,
        );
        self.broadcast
            .queue_announcement(now, &event, transmits, limit);
        let hash = tree::event_hash(&event.key);
        let me = tree::position(hash, &self.name);
        self.push_along_tree(now, &event, me);
        Ok(id)
    }

    /// A member came back from the dead (a partition healed, most often):
    /// it is told the newest event this node holds of every origin, so that
    /// it pulls what it missed, walking back each gap, at once rather than
    /// at the next re-announcement.
    pub(super) fn tell_revived(&mut self, to: SocketAddr) {
        let now = self.last_input_at;
        let broadcast = &mut self.broadcast;
        let held: usize = broadcast.targeted.values().map(Vec::len).sum();
        if broadcast.store.is_empty() || held >= self.config.user_events.window_count {
            return;
        }
        let mut ids: Vec<EventId> = Vec::new();
        let mut last: Option<(&NodeName, i64)> = None;
        // The store is ordered by origin, start, seq: the newest of a stream
        // is the last before the next stream begins.
        for (key, (event, came)) in broadcast.store.iter().rev() {
            if last == Some((&key.origin, key.started)) {
                continue;
            }
            last = Some((&key.origin, key.started));
            ids.push(EventId {
                key: key.clone(),
                sent_at: event.sent_at,
                age_ms: aged_ms(event.age_ms, *came, now),
            });
        }
        for _ in 0..ids.len().div_ceil(DIGEST_CHUNK) {
            self.send_user(to, Message::Gossip);
        }
        self.broadcast.targeted.insert(to, ids);
    }

    /// Pushes `event` to the first member of each run of the span up to `end`.
    fn push_along_tree(&mut self, now: Instant, event: &WireEvent, end: u64) {
        self.broadcast.forwarded.insert(event.key.clone());
        let hash = tree::event_hash(&event.key);
        let me = tree::position(hash, &self.name);
        let mut positions = std::mem::take(&mut self.broadcast.positions);
        positions.clear();
        positions.extend(
            self.member_rows()
                .map(|row| (tree::position(hash, &row.node), row.addr)),
        );
        let mut pushes = std::mem::take(&mut self.broadcast.pushes);
        tree::children(
            me,
            end,
            self.config.user_events.fanout,
            &mut positions,
            &mut pushes,
        );
        for &(to, run_end) in &pushes {
            self.push_to(now, event, to, run_end, 1);
        }
        self.broadcast.positions = positions;
        self.broadcast.pushes = pushes;
    }

    /// One push along the tree, awaiting its ack (`tries` so far, this one included).
    fn push_to(
        &mut self,
        now: Instant,
        event: &WireEvent,
        to: SocketAddr,
        run_end: u64,
        tries: u32,
    ) {
        let mut copy = event.clone();
        copy.span = Some(run_end);
        self.send_user(to, Message::Event(Box::new(copy)));
        if self.broadcast.unacked.len() < self.config.user_events.max_queued {
            let again = now + self.config.user_events.pull_timeout;
            self.broadcast
                .unacked
                .insert((event.key.clone(), to), (run_end, again, tries));
        }
    }

    /// A push of ours arrived.
    pub(super) fn handle_event_ack(&mut self, from: SocketAddr, key: &EventKey) {
        self.broadcast.unacked.remove(&(key.clone(), from));
    }

    /// Pushes whose ack did not come: sent again, up to `PUSH_TRIES` times.
    fn push_again(&mut self, now: Instant) {
        let due: Vec<((EventKey, SocketAddr), u64, u32)> = self
            .broadcast
            .unacked
            .iter()
            .filter(|(_, (_, again, _))| *again <= now)
            .map(|(id, &(end, _, tries))| (id.clone(), end, tries))
            .collect();
        for ((key, to), end, tries) in due {
            self.broadcast.unacked.remove(&(key.clone(), to));
            if tries >= PUSH_TRIES {
                continue;
            }
            if let Some(event) = self.broadcast.stored(&key, now) {
                self.push_to(now, &event, to, end, tries + 1);
            }
        }
    }

    /// How long this process has run, ms: an event older than that (by its
    /// `age_ms`) was sent before it started.
    fn uptime_ms(&self, now: Instant) -> u64 {
        let uptime = now.saturating_duration_since(self.epoch).as_millis();
        u64::try_from(uptime).unwrap_or(u64::MAX)
    }

    /// `window_age` in ms.
    fn window_ms(&self) -> u64 {
        u64::try_from(self.config.user_events.window_age.as_millis()).unwrap_or(u64::MAX)
    }

    /// How many packets an event's announcement rides on: `announce_transmits`,
    /// stretched as suspicion is by the loss this node measures, so that
    /// under heavy loss a member the tree missed still hears of the event.
    fn announce_transmits(&self) -> u32 {
        let base = f64::from(self.config.user_events.announce_transmits);
        (base * self.probing.loss.suspicion_stretch()).ceil() as u32
    }

    /// Queues a user datagram; when the queue is full it is dropped and counted.
    pub(super) fn send_user(&mut self, to: SocketAddr, message: Message) {
        if self.broadcast.outbox.len() >= self.config.user_events.max_queued {
            self.stats.user_events.queue_full += 1;
            return;
        }
        self.broadcast.outbox.push_back((to, message));
    }

    fn is_valid_event(&self, event: &WireEvent) -> bool {
        let limits = &self.config.user_events;
        !event.name.is_empty()
            && event.name.len() <= limits.max_name_len
            && event.payload.len() <= limits.max_payload
            && event.key.seq >= 1
            && event.prev_sent_at <= event.sent_at
    }

    /// An event pushed to this node, or answering its pull.
    pub(super) fn handle_user_event(
        &mut self,
        now: Instant,
        from: SocketAddr,
        mut event: WireEvent,
    ) {
        self.stats.user_events.copies_received += 1;
        if !self.is_valid_event(&event) {
            self.stats.user_events.invalid += 1;
            debug!(%from, "dropped an invalid user event");
            return;
        }
        if event.key.origin == self.name && event.key.started == self.started_ms() {
            self.stats.user_events.duplicates += 1;
            return;
        }
        let span = event.span.take();
        if span.is_some() {
            // Acked even when a duplicate: the pusher need not push again.
            self.send_user(from, Message::EventAck(event.key.clone()));
        }
        if event.age_ms > self.window_ms() {
            self.stats.user_events.too_old += 1;
            return;
        }
        let limits = &self.config.user_events;
        let (rate, burst) = (limits.origin_rate, limits.origin_burst);
        let stored = self.broadcast.store.contains_key(&event.key);
        let admit = {
            let mut stream = self.broadcast.stream(&event.key, now, burst, from);
            stream.heard_at = now;
            stream.source = from;
            if stored || stream.has(event.key.seq) {
                Admit::Known
            } else if stream.bucket.take(now, rate, burst) {
                Admit::New
            } else {
                // Given up for good, with any gap before it: pulling it (or the
                // gap) again would only be dropped again, a storm of pulls.
                Admit::OverRate {
                    skipped: stream.skip_to(event.key.seq + 1),
                }
            }
        };
        if admit == Admit::Known {
            self.stats.user_events.duplicates += 1;
            self.broadcast.pulls.remove(&event.key);
            if let Some(end) = span
                && stored
                && !self.broadcast.forwarded.contains(&event.key)
            {
                self.push_along_tree(now, &event, end);
            }
            return;
        }
        if let Admit::OverRate { skipped } = admit {
            self.stats.user_events.rate_limited += 1;
            self.stats.user_events.gaps_skipped += skipped.saturating_sub(1);
            self.broadcast.pulls.remove(&event.key);
            self.broadcast.wanted.remove(&event.key);
            debug!(origin = %event.key.origin, "user event over its origin's rate: dropped");
            let stream_id = (event.key.origin.clone(), event.key.started);
            self.deliver_ready(now, &stream_id);
            return;
        }
        self.broadcast.pulls.remove(&event.key);
        self.broadcast.wanted.remove(&event.key);
        self.broadcast.lamport = self.broadcast.lamport.max(event.lamport);
        self.broadcast.store(now, &event);
        let count = limits.window_count;
        let transmits = self.announce_transmits();
        self.broadcast
            .queue_announcement(now, &event, transmits, count);
        if let Some(end) = span {
            self.push_along_tree(now, &event, end);
        }
        let stream_id = (event.key.origin.clone(), event.key.started);
        let uptime = self.uptime_ms(now);
        let offer = match self.broadcast.stream_mut(&stream_id) {
            Some(mut stream) => stream.offer(event, uptime, now),
            None => return,
        };
        match offer {
            Offer::Held => {}
            Offer::Duplicate => self.stats.user_events.duplicates += 1,
            Offer::BeforeStart => self.stats.user_events.too_old += 1,
        }
        self.deliver_ready(now, &stream_id);
    }

    /// Delivers what is ready of a stream, then pulls its gap.
    fn deliver_ready(&mut self, now: Instant, stream_id: &(NodeName, i64)) {
        let pull_timeout = self.config.user_events.pull_timeout;
        let Some(mut stream) = self.broadcast.stream_mut(stream_id) else {
            return;
        };
        while let Some(event) = stream.pop_ready() {
            self.stats.user_events.delivered += 1;
            self.events.push_back(Event::User(UserEvent {
                id: public_id(&event.key),
                name: event.name,
                payload: event.payload,
                lamport: event.lamport,
                sent_at: DateTime::from_timestamp_millis(event.sent_at).unwrap_or_default(),
            }));
        }
        let missing = stream.missing(PULL_BATCH);
        let mut source = stream.source;
        // The last sender may lack the gap too: after a pull's time, ask
        // another member each round.
        let stuck = stream
            .waiting_since()
            .is_some_and(|since| now.saturating_duration_since(since) >= pull_timeout);
        drop(stream);
        if stuck && !missing.is_empty() {
            let picked = self.sample_members(1, None);
            if let Some(row) = picked.first().and_then(|&id| self.tracker.by_id(id)) {
                source = row.addr;
            }
            self.recycle(picked);
        }
        for seq in missing {
            let key = EventKey {
                origin: stream_id.0.clone(),
                started: stream_id.1,
                seq,
            };
            self.want(now, source, key);
        }
    }

    /// Notes that `from` holds `key`, which this node lacks: pulled after
    /// `pull_delay` unless its push arrives first.
    fn want(&mut self, now: Instant, from: SocketAddr, key: EventKey) {
        let broadcast = &mut self.broadcast;
        if broadcast.pulls.contains_key(&key)
            || broadcast.wanted.contains_key(&key)
            || broadcast.wanted.len() >= self.config.user_events.window_count
        {
            return;
        }
        let at = now + self.config.user_events.pull_delay;
        broadcast.wanted.insert(key, (at, from));
        let due = self
            .timers
            .get(Timer::UserEvents)
            .map_or(at, |next| next.min(at));
        self.timers.set(Timer::UserEvents, due);
    }

    /// Asks `from` for `key`, unless a pull of it is in flight.
    fn pull(&mut self, now: Instant, from: SocketAddr, key: EventKey) {
        let first = match self.broadcast.pulls.get(&key) {
            Some(&(asked, first)) => {
                if now.saturating_duration_since(asked) < self.config.user_events.pull_timeout {
                    return;
                }
                first
            }
            None if self.broadcast.pulls.len() >= self.config.user_events.window_count => return,
            None => now,
        };
        self.broadcast.pulls.insert(key.clone(), (now, first));
        self.stats.user_events.pulls_sent += 1;
        self.send_user(from, Message::EventPull(key));
    }

    /// A peer asks for an event: sent back if it is in the window.
    pub(super) fn handle_event_pull(&mut self, from: SocketAddr, key: EventKey) {
        if let Some(event) = self.broadcast.stored(&key, self.last_input_at) {
            self.send_user(from, Message::Event(Box::new(event)));
        }
    }

    /// Announcements piggybacked on a packet: pull what this process lacks
    /// and may deliver.
    pub(super) fn handle_event_ids(&mut self, now: Instant, from: SocketAddr, ids: Vec<EventId>) {
        let started = self.started_ms();
        // Sent before this process started, or older than the window.
        let oldest = self.uptime_ms(now).min(self.window_ms());
        for id in ids {
            let key = id.key;
            if (key.origin == self.name && key.started == started)
                || id.age_ms > oldest
                || self.broadcast.store.contains_key(&key)
            {
                continue;
            }
            if let Some(stream) = self
                .broadcast
                .streams
                .get_mut(&(key.origin.clone(), key.started))
            {
                stream.source = from;
                if stream.has(key.seq) {
                    continue;
                }
            }
            self.want(now, from, key);
        }
    }

    /// The timer's work: forget expired pulls (so they are asked again), give
    /// up gaps held too long, keep the window, re-announce.
    pub(super) fn run_user_events(&mut self, now: Instant) {
        if !self.timers.is_expired(Timer::UserEvents, now) {
            return;
        }
        let limits = self.config.user_events.clone();
        // Periodic; it wakes the node only while pulls or gaps wait.
        self.timers
            .set(Timer::UserEvents, now + limits.pull_timeout);
        self.broadcast
            .evict(now, limits.window_count, limits.window_age);
        self.pull_again(now);
        self.pull_wanted(now);
        self.push_again(now);
        let waiting: Vec<(NodeName, i64)> = match self.broadcast.waiting_streams() {
            0 => Vec::new(),
            _ => self
                .broadcast
                .streams
                .iter()
                .filter(|(_, stream)| stream.is_waiting())
                .map(|(id, _)| id.clone())
                .collect(),
        };
        for id in waiting {
            if let Some(mut stream) = self.broadcast.stream_mut(&id) {
                let skipped = stream.give_up_stale_gap(now, limits.window_age / 2);
                self.stats.user_events.gaps_skipped += skipped;
            }
            self.deliver_ready(now, &id);
        }
        let silent = limits.window_age * 2;
        self.broadcast.streams.retain(|_, stream| {
            stream.is_waiting() || now.saturating_duration_since(stream.heard_at) < silent
        });
        if now >= self.broadcast.next_reannounce {
            self.broadcast.next_reannounce = now + REANNOUNCE_EVERY;
            // Under loss, more origins a round, as announcements are stretched.
            let origins = REANNOUNCE_STREAMS as f64 * self.probing.loss.suspicion_stretch();
            self.reannounce(now, origins.ceil() as usize, limits.window_count);
        }
        if let Some(&(at, _)) = self.broadcast.wanted.values().min_by_key(|(at, _)| *at) {
            let due = at.min(now + limits.pull_timeout);
            self.timers.set(Timer::UserEvents, due);
        }
        if let Some(again) = self
            .broadcast
            .unacked
            .values()
            .map(|&(_, again, _)| again)
            .min()
        {
            let due = self
                .timers
                .get(Timer::UserEvents)
                .map_or(again, |next| next.min(again));
            self.timers.set(Timer::UserEvents, due);
        }
    }

    /// Pulls whose answer did not come: asked again of a random member (the
    /// event was announced, so most hold it), for as long as a gap is held
    /// (half the window's age): under heavy loss most round trips fail, and
    /// an event given up here would wait for a re-announcement.
    fn pull_again(&mut self, now: Instant) {
        let timeout = self.config.user_events.pull_timeout;
        let patience = self.config.user_events.window_age / 2;
        let due: Vec<(EventKey, Instant)> = self
            .broadcast
            .pulls
            .iter()
            .filter(|(_, (asked, _))| now.saturating_duration_since(*asked) >= timeout)
            .map(|(key, &(_, first))| (key.clone(), first))
            .collect();
        for (key, first) in due {
            if now.saturating_duration_since(first) >= patience {
                self.broadcast.pulls.remove(&key);
                continue;
            }
            let picked = self.sample_members(1, None);
            let to = picked
                .first()
                .and_then(|&id| self.tracker.by_id(id))
                .map(|row| row.addr);
            self.recycle(picked);
            match to {
                Some(to) => self.pull(now, to, key),
                None => {
                    self.broadcast.pulls.remove(&key);
                }
            }
        }
    }

    /// Pulls the wanted events whose delay is over and that did not come.
    fn pull_wanted(&mut self, now: Instant) {
        let due: Vec<(EventKey, SocketAddr)> = self
            .broadcast
            .wanted
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(key, (_, from))| (key.clone(), *from))
            .collect();
        for (key, from) in due {
            self.broadcast.wanted.remove(&key);
            let held = self.broadcast.store.contains_key(&key)
                || self
                    .broadcast
                    .streams
                    .get(&(key.origin.clone(), key.started))
                    .is_some_and(|stream| stream.has(key.seq));
            if !held {
                self.pull(now, from, key);
            }
        }
    }

    /// Announces the newest stored event of the next `origins`, once each.
    fn reannounce(&mut self, now: Instant, origins: usize, limit: usize) {
        let mut first_of_round = None;
        for _ in 0..origins {
            let after = match &self.broadcast.reannounced {
                Some((origin, started)) => Bound::Excluded(EventKey {
                    origin: origin.clone(),
                    started: *started,
                    seq: u64::MAX,
                }),
                None => Bound::Unbounded,
            };
            let first = self
                .broadcast
                .store
                .range((after, Bound::Unbounded))
                .next()
                .or_else(|| self.broadcast.store.iter().next())
                .map(|(key, _)| (key.origin.clone(), key.started));
            let Some((origin, started)) = first else {
                return;
            };
            // Fewer origins than a round: each once.
            let pair = (origin.clone(), started);
            if first_of_round.as_ref() == Some(&pair) {
                return;
            }
            first_of_round.get_or_insert(pair);
            let last = EventKey {
                origin: origin.clone(),
                started,
                seq: u64::MAX,
            };
            let newest = self
                .broadcast
                .store
                .range(..=last)
                .next_back()
                .map(|(_, (event, came))| aged(event, *came, now));
            if let Some(event) = newest {
                self.broadcast.queue_announcement(now, &event, 1, limit);
            }
            self.broadcast.reannounced = Some((origin, started));
        }
    }
}

#[cfg(test)]
mod tests;
