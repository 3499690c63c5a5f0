//! Queries: the origin pushes a query along a tree over the members it knows
//! (the same tree as a user event's, `broadcast/tree.rs`); every receiver
//! forwards it along its run, and hands it to its owner only when it matches
//! the filter. A matching member acks at once if asked, and answers when its
//! owner responds: straight to the origin (more than once under the loss it
//! measures), and through `queries.relays` other members so that loss does
//! not eat the answer. A push unacked is sent again while its query runs. The origin counts
//! each member's answer once and ends the query at its timeout or when every
//! matching member it knew online has answered.
//!
//! - **Never gossip.** Answers are unicast; nothing of a query rides on
//!   membership packets. Query datagrams wait in the user queue, after the
//!   membership protocol's (`broadcast.rs`).
//! - **Nothing back from the others.** A member outside the filter forwards
//!   the query along its run and sends nothing to the origin (counted as
//!   `filtered_out`).
//! - **Bounded.** Running queries, tokens and the memory of queries seen are
//!   each at most `queries.max_running`; each receiver limits each origin's
//!   rate. A response after its query ended is counted (`late`) and dropped.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::DateTime;
use tracing::debug;

use super::Node;
use super::broadcast::tree;
use crate::config::Config;
use crate::event::Event;
use crate::limiter::Bucket;
use crate::logarithm::log10;
use crate::name::NodeName;
use crate::query::{
    Query, QueryDone, QueryError, QueryFilter, QueryId, QueryRequest, QueryToken, RespondError,
};
use crate::tags::TagQuery;
use crate::wire::{self, EventKey, Message, WireQuery, WireResponse};

/// Most origins whose rate is followed at once; when full, the map restarts
/// (each bucket was refilling anyway).
const MAX_ORIGINS: usize = 4096;
/// Ended queries whose responders are remembered, so that a relayed copy of
/// an answer that arrives after its query ended is a duplicate, not late.
const ENDED_KEPT: usize = 64;
/// How many times a push along the tree is sent before its run is given up
/// (while its query runs): a run lost is every member in it unasked, and
/// queries have no announcements to repair it, so as many as a user event's
/// push. At 10 % loss three tries left about one member in 400 unasked.
const PUSH_TRIES: u32 = 8;
/// The chance that every copy of an answer is lost that a responder aims
/// under, by the loss it measures (see `Node::direct_copies`).
const LOST_ANSWER: f64 = 1e-4;
/// Most copies of an answer sent straight to the origin.
const MAX_DIRECT: u32 = 4;

/// One of this node's queries, running.
#[derive(Debug)]
struct Running {
    id: QueryId,
    deadline: Instant,
    /// Matching members online when it was sent (self included if it matched).
    expected: BTreeSet<NodeName>,
    acked: BTreeSet<NodeName>,
    responded: BTreeSet<NodeName>,
}

/// A received query this node's owner may still answer.
#[derive(Debug)]
struct Pending {
    key: EventKey,
    deadline: Instant,
}

/// A node's query state.
#[derive(Debug)]
pub(super) struct Queries {
    next_seq: u64,
    send_bucket: Bucket,
    /// This node's running queries, by their sequence number.
    running: BTreeMap<u64, Running>,
    /// The latest ended queries: their number and who answered.
    ended: VecDeque<(u64, BTreeSet<NodeName>)>,
    /// Queries received, until their deadline: a copy is a duplicate.
    seen: BTreeMap<EventKey, Instant>,
    /// Received queries awaiting the owner's answer, by token.
    tokens: BTreeMap<u64, Pending>,
    next_token: u64,
    /// Each origin's rate here.
    origins: BTreeMap<NodeName, Bucket>,
    /// Pushes along the tree not acked yet: the push (with its run), when to
    /// send it again, the tries made.
    unacked: BTreeMap<(EventKey, SocketAddr), (Box<WireQuery>, Instant, u32)>,
}

impl Queries {
    pub(super) fn new(config: &Config, now: Instant) -> Self {
        Self {
            next_seq: 1,
            send_bucket: Bucket::full(config.queries.send_burst, now),
            running: BTreeMap::new(),
            ended: VecDeque::new(),
            seen: BTreeMap::new(),
            tokens: BTreeMap::new(),
            next_token: 1,
            origins: BTreeMap::new(),
            unacked: BTreeMap::new(),
        }
    }

    /// The earliest deadline: a running query's end, a token's or a memory's expiry.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let running = self.running.values().map(|q| q.deadline);
        let tokens = self.tokens.values().map(|p| p.deadline);
        let seen = self.seen.values().copied();
        let again = self.unacked.values().map(|(_, again, _)| *again);
        running.chain(tokens).chain(seen).chain(again).min()
    }
}

/// Drops the entry of `map` that expires first, to make room.
fn evict_soonest<K: Ord + Clone, V>(map: &mut BTreeMap<K, V>, deadline: impl Fn(&V) -> Instant) {
    let soonest = map
        .iter()
        .min_by_key(|(_, value)| deadline(value))
        .map(|(key, _)| key.clone());
    if let Some(key) = soonest {
        map.remove(&key);
    }
}

fn public_id(key: &EventKey) -> QueryId {
    QueryId {
        origin: key.origin.clone(),
        started: key.started,
        seq: key.seq,
    }
}

/// The filter as it travels, and back.
fn wire_tags(filter: &QueryFilter) -> Vec<(String, Option<String>)> {
    filter
        .tags
        .iter()
        .map(|tag| {
            let (key, value) = tag.parts();
            (key.to_owned(), value.map(str::to_owned))
        })
        .collect()
}

fn filter_of(query: &WireQuery) -> QueryFilter {
    let mut filter = QueryFilter::default();
    filter.nodes.clone_from(&query.nodes);
    filter.tags = query
        .tags
        .iter()
        .map(|(key, value)| match value {
            Some(value) => TagQuery::key_value(key, value),
            None => TagQuery::key(key),
        })
        .collect();
    filter
}

impl Node {
    /// The default timeout for a cluster of the members online here:
    /// `gossip_interval × timeout_mult × ceil(log10(N + 1))`, as serf's.
    pub(super) fn default_query_timeout(&self) -> Duration {
        let online = self.members.len() as f64 + 1.0;
        let scale = log10(online + 1.0).ceil().max(1.0);
        self.config.gossip_interval * self.config.queries.timeout_mult * scale as u32
    }

    /// See [`Node::query`].
    pub(super) fn start_query(
        &mut self,
        now: Instant,
        query: Query,
    ) -> Result<QueryId, QueryError> {
        let limits = &self.config.user_events;
        if query.name.is_empty() {
            return Err(QueryError::EmptyName);
        }
        if query.name.len() > limits.max_name_len {
            return Err(QueryError::NameTooLong {
                len: query.name.len(),
                limit: limits.max_name_len,
            });
        }
        if query.payload.len() > limits.max_payload {
            return Err(QueryError::PayloadTooLarge {
                len: query.payload.len(),
                limit: limits.max_payload,
            });
        }
        let timeout = query
            .timeout
            .unwrap_or_else(|| self.default_query_timeout());
        let max_timeout = self.config.queries.max_timeout;
        if timeout.is_zero() || timeout > max_timeout {
            return Err(QueryError::BadTimeout {
                timeout,
                limit: max_timeout,
            });
        }
        for tag in &query.filter.tags {
            if tag.parts().0.is_empty() {
                return Err(QueryError::BadFilter {
                    reason: "a tag query has an empty key",
                });
            }
            if tag.includes_offline() {
                return Err(QueryError::BadFilter {
                    reason: "a tag query includes offline members, which a query cannot reach",
                });
            }
        }
        let sent_at = self.wall_clock(now).timestamp_millis();
        let mut wire = WireQuery {
            key: EventKey {
                origin: self.name.clone(),
                started: self.started_ms(),
                seq: self.queries.next_seq,
            },
            sent_at,
            timeout_ms: timeout.as_millis().try_into().unwrap_or(u64::MAX),
            request_ack: query.request_ack,
            name: query.name,
            payload: query.payload,
            nodes: query.filter.nodes.clone(),
            tags: wire_tags(&query.filter),
            // Sized with the largest span a push carries.
            span: Some(u64::MAX),
        };
        let widest = Message::Query(Box::new(wire));
        let len = wire::base_len(self.sender(), &widest);
        let Message::Query(unboxed) = widest else {
            unreachable!("built as a query just above");
        };
        wire = *unboxed;
        if len > self.config.max_packet_size {
            return Err(QueryError::TooLargeForDatagram {
                len,
                limit: self.config.max_packet_size,
            });
        }
        let (fanout, max_queued) = (
            self.config.user_events.fanout,
            self.config.user_events.max_queued,
        );
        let queries = &self.config.queries;
        if self.queries.running.len() >= queries.max_running
            || self.broadcast.outbox.len() + fanout > max_queued
            || !self
                .queries
                .send_bucket
                .take(now, queries.send_rate, queries.send_burst)
        {
            return Err(QueryError::Busy);
        }
        self.queries.next_seq += 1;
        self.stats.queries.sent += 1;
        let id = public_id(&wire.key);
        let mut expected: BTreeSet<NodeName> = self
            .member_rows()
            .filter(|row| query.filter.matches(&row.node, &row.tags))
            .map(|row| row.node.clone())
            .collect();
        let self_matches = query.filter.matches(&self.name, &self.tags);
        if self_matches {
            expected.insert(self.name.clone());
        }
        let nobody = expected.is_empty();
        self.queries.running.insert(
            wire.key.seq,
            Running {
                id: id.clone(),
                deadline: now + timeout,
                expected,
                acked: BTreeSet::new(),
                responded: BTreeSet::new(),
            },
        );
        let me = tree::position(tree::event_hash(&wire.key), &self.name);
        self.push_query(now, &wire, me);
        if self_matches {
            self.deliver_query(now, &wire, timeout);
        }
        if nobody {
            self.finish_query(wire.key.seq, false);
        }
        Ok(id)
    }

    /// Pushes `query` to the first member of each run of the span up to `end`.
    fn push_query(&mut self, now: Instant, query: &WireQuery, end: u64) {
        let hash = tree::event_hash(&query.key);
        let me = tree::position(hash, &self.name);
        let mut positions: Vec<(u64, SocketAddr)> = self
            .member_rows()
            .map(|row| (tree::position(hash, &row.node), row.addr))
            .collect();
        let mut pushes = Vec::new();
        tree::children(
            me,
            end,
            self.config.user_events.fanout,
            &mut positions,
            &mut pushes,
        );
        for (to, run_end) in pushes {
            let mut copy = query.clone();
            copy.span = Some(run_end);
            self.push_query_to(now, to, Box::new(copy), 1);
        }
    }

    /// One push along the tree, awaiting its ack (`tries` so far, this one included).
    fn push_query_to(&mut self, now: Instant, to: SocketAddr, push: Box<WireQuery>, tries: u32) {
        if self.queries.unacked.len() < self.config.user_events.max_queued {
            let again = now + self.config.user_events.pull_timeout;
            let key = (push.key.clone(), to);
            self.queries
                .unacked
                .insert(key, (push.clone(), again, tries));
        }
        self.send_user(to, Message::Query(push));
    }

    /// A push of ours arrived.
    pub(super) fn handle_query_push_ack(&mut self, from: SocketAddr, key: &EventKey) {
        self.queries.unacked.remove(&(key.clone(), from));
    }

    /// Pushes whose ack did not come: sent again, up to `PUSH_TRIES` times.
    fn push_queries_again(&mut self, now: Instant) {
        let due: Vec<(EventKey, SocketAddr)> = self
            .queries
            .unacked
            .iter()
            .filter(|(_, (_, again, _))| *again <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some((push, _, tries)) = self.queries.unacked.remove(&id) else {
                continue;
            };
            if tries < PUSH_TRIES && self.query_runs(&id.0, now) {
                self.push_query_to(now, id.1, push, tries + 1);
            }
        }
    }

    /// Whether the query of `key` still waits for answers: running here if
    /// it is this node's, not past its timeout if another's.
    fn query_runs(&self, key: &EventKey, now: Instant) -> bool {
        if self.is_own(key) {
            self.queries.running.contains_key(&key.seq)
        } else {
            self.queries.seen.get(key).is_some_and(|&until| until > now)
        }
    }

    /// How many copies of an answer go straight to the origin: one, and more
    /// under the loss this node measures (at most `MAX_DIRECT`), so that the
    /// chance that all of them and every relay's (two hops each) are lost
    /// stays under `LOST_ANSWER`. None is added below about 3 % loss; at 10 %
    /// (measured), with two relays, three copies leave one answer in 28,000
    /// lost, not one in 280.
    fn direct_copies(&self) -> u32 {
        let loss = self.probing.loss.loss();
        let relays = i32::try_from(self.config.queries.relays).unwrap_or(i32::MAX);
        let relayed = (1.0 - (1.0 - loss).powi(2)).powi(relays);
        let mut copies = 1;
        while copies < MAX_DIRECT && loss.powi(copies as i32) * relayed > LOST_ANSWER {
            copies += 1;
        }
        copies
    }

    fn is_valid_query(&self, query: &WireQuery) -> bool {
        let limits = &self.config.user_events;
        let timeout = Duration::from_millis(query.timeout_ms);
        !query.name.is_empty()
            && query.name.len() <= limits.max_name_len
            && query.payload.len() <= limits.max_payload
            && query.key.seq >= 1
            && !timeout.is_zero()
            && timeout <= self.config.queries.max_timeout
            && query.tags.iter().all(|(key, _)| !key.is_empty())
    }

    fn is_own(&self, key: &EventKey) -> bool {
        key.origin == self.name && key.started == self.started_ms()
    }

    /// A query pushed to this node: forwarded along its run, and handed to the
    /// owner if it matches.
    pub(super) fn handle_query(&mut self, now: Instant, from: SocketAddr, mut query: WireQuery) {
        if !self.is_valid_query(&query) {
            self.stats.queries.invalid += 1;
            debug!(%from, "dropped an invalid query");
            return;
        }
        if query.span.is_some() {
            // Acked even when a duplicate: the pusher need not push again.
            self.send_user(from, Message::QueryPushAck(query.key.clone()));
        }
        if self.is_own(&query.key) || self.queries.seen.contains_key(&query.key) {
            self.stats.queries.duplicates += 1;
            return;
        }
        let limits = &self.config.queries;
        let (rate, burst) = (limits.origin_rate, limits.origin_burst);
        let origins = &mut self.queries.origins;
        if !origins.contains_key(&query.key.origin) && origins.len() >= MAX_ORIGINS {
            origins.clear();
        }
        let bucket = origins
            .entry(query.key.origin.clone())
            .or_insert_with(|| Bucket::full(burst, now));
        if !bucket.take(now, rate, burst) {
            self.stats.queries.rate_limited += 1;
            debug!(origin = %query.key.origin, "query over its origin's rate: dropped");
            return;
        }
        let timeout = Duration::from_millis(query.timeout_ms);
        if self.queries.seen.len() >= self.config.queries.max_running {
            evict_soonest(&mut self.queries.seen, |at| *at);
        }
        self.queries.seen.insert(query.key.clone(), now + timeout);
        self.stats.queries.received += 1;
        if let Some(end) = query.span.take() {
            self.push_query(now, &query, end);
        }
        if filter_of(&query).matches(&self.name, &self.tags) {
            self.deliver_query(now, &query, timeout);
        } else {
            self.stats.queries.filtered_out += 1;
        }
    }

    /// Hands a matching query to the owner with a token, and acks it if asked.
    fn deliver_query(&mut self, now: Instant, query: &WireQuery, timeout: Duration) {
        self.stats.queries.delivered += 1;
        if self.queries.tokens.len() >= self.config.queries.max_running {
            evict_soonest(&mut self.queries.tokens, |pending| pending.deadline);
        }
        let token = self.queries.next_token;
        self.queries.next_token += 1;
        self.queries.tokens.insert(
            token,
            Pending {
                key: query.key.clone(),
                deadline: now + timeout,
            },
        );
        if query.request_ack {
            self.stats.queries.acks_sent += 1;
            let me = self.name.clone();
            if self.is_own(&query.key) {
                self.record_answer(&query.key, me, None);
            } else if let Some(origin) = self.origin_addr(&query.key) {
                self.send_user(origin, Message::QueryAck(query.key.clone(), me));
            }
        }
        let deadline_ms = query
            .sent_at
            .saturating_add(query.timeout_ms.try_into().unwrap_or(i64::MAX));
        self.events.push_back(Event::Query(QueryRequest {
            id: public_id(&query.key),
            token: QueryToken(token),
            name: query.name.clone(),
            payload: query.payload.clone(),
            deadline: DateTime::from_timestamp_millis(deadline_ms).unwrap_or_default(),
        }));
    }

    /// Where the origin of `key` listens, if it is an online member here.
    fn origin_addr(&self, key: &EventKey) -> Option<SocketAddr> {
        self.tracker
            .get(&key.origin)
            .filter(|row| row.status == crate::tracker::NodeStatus::Online)
            .map(|row| row.addr)
    }

    /// See [`Node::respond`].
    pub(super) fn answer_query(
        &mut self,
        now: Instant,
        token: QueryToken,
        payload: &[u8],
    ) -> Result<(), RespondError> {
        let Some(pending) = self.queries.tokens.get(&token.0) else {
            return Err(RespondError::UnknownToken);
        };
        if pending.deadline <= now {
            self.queries.tokens.remove(&token.0);
            return Err(RespondError::UnknownToken);
        }
        let limit = self.config.queries.max_response_size;
        if payload.len() > limit {
            return Err(RespondError::PayloadTooLarge {
                len: payload.len(),
                limit,
            });
        }
        let key = pending.key.clone();
        let response = WireResponse {
            key,
            responder: self.name.clone(),
            payload: payload.to_vec(),
        };
        let len = wire::base_len(
            self.sender(),
            &Message::QueryRelay(Box::new(response.clone())),
        );
        if len > self.config.max_packet_size {
            let fits = payload.len() - (len - self.config.max_packet_size);
            return Err(RespondError::PayloadTooLarge {
                len: payload.len(),
                limit: fits,
            });
        }
        let Some(pending) = self.queries.tokens.remove(&token.0) else {
            return Err(RespondError::UnknownToken);
        };
        self.stats.queries.responses_sent += 1;
        if self.is_own(&pending.key) {
            let me = self.name.clone();
            self.record_answer(&pending.key, me, Some(payload.to_vec()));
            return Ok(());
        }
        let origin_id = self.tracker.id_of(&response.key.origin);
        if let Some(origin) = self.origin_addr(&response.key) {
            for _ in 0..self.direct_copies() {
                let direct = Message::QueryResponse(Box::new(response.clone()));
                self.send_user(origin, direct);
            }
        }
        let picked = self.sample_members(self.config.queries.relays, origin_id);
        let relays: Vec<SocketAddr> = picked
            .iter()
            .filter_map(|&id| self.tracker.by_id(id))
            .map(|row| row.addr)
            .collect();
        self.recycle(picked);
        for relay in relays {
            self.send_user(relay, Message::QueryRelay(Box::new(response.clone())));
        }
        Ok(())
    }

    /// An answer (or, without a payload, an ack) to one of this node's
    /// queries: reported once per member; late ones are counted and dropped.
    fn record_answer(&mut self, key: &EventKey, from: NodeName, payload: Option<Vec<u8>>) {
        let Some(running) = self.queries.running.get_mut(&key.seq) else {
            let copy = self
                .queries
                .ended
                .iter()
                .any(|(seq, responded)| *seq == key.seq && responded.contains(&from));
            if copy {
                self.stats.queries.duplicates += 1;
                return;
            }
            self.stats.queries.late += 1;
            debug!(%from, seq = key.seq, "an answer after its query ended: dropped");
            return;
        };
        let id = running.id.clone();
        let Some(payload) = payload else {
            if running.acked.insert(from.clone()) {
                self.stats.queries.responses_received += 1;
                self.events.push_back(Event::QueryAck { id, from });
            } else {
                self.stats.queries.duplicates += 1;
            }
            return;
        };
        if !running.responded.insert(from.clone()) {
            self.stats.queries.duplicates += 1;
            return;
        }
        let complete = running.expected.is_subset(&running.responded);
        self.stats.queries.responses_received += 1;
        self.events
            .push_back(Event::QueryResponse { id, from, payload });
        if complete {
            self.finish_query(key.seq, false);
        }
    }

    fn finish_query(&mut self, seq: u64, timed_out: bool) {
        if let Some(running) = self.queries.running.remove(&seq) {
            self.events.push_back(Event::QueryDone(QueryDone {
                id: running.id,
                expected: running.expected.len(),
                acked: running.acked.len(),
                responded: running.responded.len(),
                timed_out,
            }));
            if self.queries.ended.len() >= ENDED_KEPT {
                self.queries.ended.pop_front();
            }
            self.queries.ended.push_back((seq, running.responded));
        }
    }

    /// An ack of a member for one of this node's queries.
    pub(super) fn handle_query_ack(&mut self, key: &EventKey, from: NodeName) {
        if !self.is_own(key) {
            self.stats.queries.invalid += 1;
            return;
        }
        self.record_answer(key, from, None);
    }

    /// A response to one of this node's queries, direct or relayed.
    pub(super) fn handle_query_response(&mut self, response: WireResponse) {
        if response.key.origin != self.name
            || response.payload.len() > self.config.queries.max_response_size
        {
            self.stats.queries.invalid += 1;
            return;
        }
        if response.key.started != self.started_ms() {
            // An earlier life's query: it ended with that process.
            self.stats.queries.late += 1;
            return;
        }
        let WireResponse {
            key,
            responder,
            payload,
        } = response;
        self.record_answer(&key, responder, Some(payload));
    }

    /// A response to relay to its origin.
    pub(super) fn handle_query_relay(&mut self, response: WireResponse) {
        if response.payload.len() > self.config.queries.max_response_size {
            self.stats.queries.invalid += 1;
            return;
        }
        if response.key.origin == self.name {
            self.handle_query_response(response);
            return;
        }
        match self.origin_addr(&response.key) {
            Some(origin) => {
                self.stats.queries.relayed += 1;
                self.send_user(origin, Message::QueryResponse(Box::new(response)));
            }
            None => self.stats.queries.invalid += 1,
        }
    }

    /// Ends queries at their timeout; forgets expired tokens and memories.
    pub(super) fn run_queries(&mut self, now: Instant) {
        let ended: Vec<u64> = self
            .queries
            .running
            .iter()
            .filter(|(_, running)| running.deadline <= now)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in ended {
            self.finish_query(seq, true);
        }
        self.push_queries_again(now);
        self.queries
            .tokens
            .retain(|_, pending| pending.deadline > now);
        self.queries.seen.retain(|_, &mut until| until > now);
    }
}

#[cfg(test)]
mod tests;
