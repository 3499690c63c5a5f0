//! Queries: a named request with a payload, spread to the members a filter
//! picks, each of which may answer the origin. The types a user sees; the
//! protocol is in `node/query.rs`.
//!
//! The origin calls [`Node::query`](crate::Node::query) and gets, through
//! [`Node::poll_event`](crate::Node::poll_event), an
//! [`Event::QueryAck`](crate::Event::QueryAck) per member that received it
//! (when asked for), an [`Event::QueryResponse`](crate::Event::QueryResponse)
//! per answer, and one [`Event::QueryDone`](crate::Event::QueryDone) at the
//! timeout or once every matching online member answered. A matching member
//! gets an [`Event::Query`](crate::Event::Query) carrying a [`QueryToken`]
//! and answers with [`Node::respond`](crate::Node::respond).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::error::ConfigError;
use crate::name::{NameTaken, NodeName};
use crate::tags::{TagQuery, Tags};

/// Which query: the process that sent it (its name and its start, Unix ms)
/// and its sequence number there, counted from 1.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryId {
    /// The node that sent it.
    pub origin: NodeName,
    /// When the origin's process started (its wall clock, Unix ms).
    pub started: i64,
    /// Its place in the origin process's queries, from 1.
    pub seq: u64,
}

/// Which members a query is for: all of them when empty. A member matches when
/// its name is among `nodes` (if any are given) and its tags match every one
/// of `tags`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryFilter {
    /// Member names; empty: any name.
    pub nodes: Vec<NodeName>,
    /// Tag queries that must all match; empty: any tags.
    pub tags: Vec<TagQuery>,
}

impl QueryFilter {
    /// Whether a member named `name` with `tags` is one the query is for.
    pub fn matches(&self, name: &NodeName, tags: &Tags) -> bool {
        (self.nodes.is_empty() || self.nodes.contains(name))
            && self.tags.iter().all(|query| query.matches(tags))
    }

    /// Whether nothing is filtered out.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.tags.is_empty()
    }
}

/// A query to run ([`Node::query`](crate::Node::query)):
///
/// ```
/// use beethoven_core::{Query, TagQuery};
/// use std::time::Duration;
/// let query = Query::new("load", b"1m".to_vec())
///     .tag(TagQuery::key_value("role", "db"))
///     .timeout(Duration::from_secs(2))
///     .request_ack();
/// assert_eq!(query.filter.tags.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Query {
    /// Its name (as for a user event: 1 to `user_events.max_name_len` bytes).
    pub name: String,
    /// Its payload (up to `user_events.max_payload` bytes).
    pub payload: Vec<u8>,
    /// Who it is for.
    pub filter: QueryFilter,
    /// How long the origin waits for answers; `None`: the default, which grows
    /// with the cluster (see [`QueryConfig::timeout_mult`]).
    pub timeout: Option<Duration>,
    /// Whether each matching member acks its receipt at once.
    pub request_ack: bool,
}

impl Query {
    /// A query for every member, with the default timeout and no acks.
    pub fn new(name: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            payload: payload.into(),
            filter: QueryFilter::default(),
            timeout: None,
            request_ack: false,
        }
    }

    /// Only for the member named `node` (and any other given this way).
    pub fn node(mut self, node: NodeName) -> Self {
        self.filter.nodes.push(node);
        self
    }

    /// Only for members whose tags match `tag` (and every other given this way).
    pub fn tag(mut self, tag: TagQuery) -> Self {
        self.filter.tags.push(tag);
        self
    }

    /// Waits `timeout` for answers instead of the default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Asks every matching member to ack the query's receipt at once.
    pub fn request_ack(mut self) -> Self {
        self.request_ack = true;
        self
    }
}

/// What answers one query received at this node: pass it to
/// [`Node::respond`](crate::Node::respond). Valid until the query's timeout,
/// for one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueryToken(pub(crate) u64);

/// A query that reached this node and is for it
/// ([`Event::Query`](crate::Event::Query)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueryRequest {
    /// Which query.
    pub id: QueryId,
    /// To answer it with.
    pub token: QueryToken,
    /// Its name.
    pub name: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Until when the origin waits for the answer, by the origin's clock.
    pub deadline: DateTime<Utc>,
}

/// How a query ended at its origin ([`Event::QueryDone`](crate::Event::QueryDone)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryDone {
    /// Which query.
    pub id: QueryId,
    /// Matching members online at the origin when it was sent (itself included
    /// if it matched).
    pub expected: usize,
    /// Members that acked it.
    pub acked: usize,
    /// Members that responded.
    pub responded: usize,
    /// Whether it ended at its timeout (`false`: every expected member responded).
    pub timed_out: bool,
}

/// Why [`Node::query`](crate::Node::query) refused a query. Nothing was sent
/// and no state changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The name is empty.
    #[error("a query's name must not be empty")]
    EmptyName,
    /// The name is longer than `user_events.max_name_len` bytes.
    #[error("the query's name has {len} bytes, more than the limit of {limit}")]
    NameTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The payload is larger than `user_events.max_payload` bytes.
    #[error("the query's payload has {len} bytes, more than the limit of {limit}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The timeout is zero, or longer than `queries.max_timeout`.
    #[error("the query's timeout {timeout:?} is zero or above the limit of {limit:?}")]
    BadTimeout {
        /// The timeout asked for.
        timeout: Duration,
        /// `queries.max_timeout`.
        limit: Duration,
    },
    /// The filter cannot match as meant: a tag query with an empty key, or one
    /// that includes offline members (a query reaches online members only).
    #[error("bad query filter: {reason}")]
    BadFilter {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The query, with its filter and this node's name, does not fit one datagram.
    #[error("the query takes {len} bytes on the wire, more than a datagram's {limit}")]
    TooLargeForDatagram {
        /// Its encoded size.
        len: usize,
        /// `max_packet_size`.
        limit: usize,
    },
    /// This node runs queries faster than `queries.send_rate` allows, has
    /// `queries.max_running` running, or its user queue is full: try again later.
    #[error(
        "too many queries: the send rate, the running queries or the send queue is at its limit"
    )]
    Busy,
    /// The node lost its name and takes no more commands.
    #[error(transparent)]
    NameTaken(#[from] NameTaken),
}

/// Why [`Node::respond`](crate::Node::respond) refused a response. Nothing
/// was sent and no state changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// No query waits for an answer under this token: it was never given, it
    /// was answered already, or its timeout passed.
    #[error("no query waits for an answer under this token (unknown, answered or expired)")]
    UnknownToken,
    /// The payload is larger than `queries.max_response_size` bytes, or than
    /// what fits one datagram with the response's envelope.
    #[error("the response has {len} bytes, more than the limit of {limit}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The node lost its name and takes no more commands.
    #[error(transparent)]
    NameTaken(#[from] NameTaken),
}

/// The limits and tuning of queries (`Config::queries`). Names and payloads
/// share the limits of user events (`Config::user_events`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryConfig {
    /// The default timeout is `gossip_interval × timeout_mult ×
    /// ceil(log10(N + 1))` for N online members, as serf's. Default 16.
    pub timeout_mult: u32,
    /// The longest timeout a query may ask for. Default 5 minutes.
    pub max_timeout: Duration,
    /// Largest response payload, in bytes. Default 1024.
    pub max_response_size: usize,
    /// Members besides the origin each response is also sent through, so that
    /// loss does not eat it. Default 2.
    pub relays: usize,
    /// Most queries this node runs at once, and most received queries it
    /// keeps tokens and duplicates' memory for. Default 1024.
    pub max_running: usize,
    /// Queries this node may send per second, after a burst of `send_burst`.
    /// Default 20.
    pub send_rate: u32,
    /// See `send_rate`. Default 50.
    pub send_burst: u32,
    /// Queries a receiver accepts from one origin per second, after a burst
    /// of `origin_burst`; the rest are dropped and counted. Default 50.
    pub origin_rate: u32,
    /// See `origin_rate`. Default 100.
    pub origin_burst: u32,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout_mult: 16,
            max_timeout: Duration::from_secs(300),
            max_response_size: 1024,
            relays: 2,
            max_running: 1024,
            send_rate: 20,
            send_burst: 50,
            origin_rate: 50,
            origin_burst: 100,
        }
    }
}

impl QueryConfig {
    /// Checks every field. A response must also fit one datagram with its
    /// envelope: that is checked when it is sent ([`RespondError::PayloadTooLarge`]).
    pub(crate) fn validate(&self, max_packet_size: usize) -> Result<(), ConfigError> {
        let invalid = |field, reason| Err(ConfigError::Invalid { field, reason });
        if self.timeout_mult == 0 || self.max_timeout.is_zero() {
            return invalid("queries.timeout_mult", "must be positive");
        }
        if self.max_response_size == 0 || self.max_response_size > max_packet_size {
            return invalid(
                "queries.max_response_size",
                "must be positive and at most max_packet_size",
            );
        }
        if self.relays > 16 {
            return invalid("queries.relays", "must be at most 16");
        }
        if self.max_running == 0 {
            return invalid("queries.max_running", "must be positive");
        }
        if self.send_rate == 0 || self.send_burst == 0 {
            return invalid("queries.send_rate", "must be positive");
        }
        if self.origin_rate == 0 || self.origin_burst == 0 {
            return invalid("queries.origin_rate", "must be positive");
        }
        Ok(())
    }
}

/// Counters of queries at one node ([`Stats::queries`](crate::Stats::queries)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueryStats {
    /// Queries this node sent.
    pub sent: u64,
    /// Queries received (pushes, each counted once) and passed on.
    pub received: u64,
    /// Received queries this node matched and handed to its owner.
    pub delivered: u64,
    /// Received queries this node did not match: nothing was sent back.
    pub filtered_out: u64,
    /// Acks this node sent.
    pub acks_sent: u64,
    /// Responses this node sent (each once, whatever the relays).
    pub responses_sent: u64,
    /// Responses this node relayed to their origin.
    pub relayed: u64,
    /// Responses and acks received for this node's running queries, first copies.
    pub responses_received: u64,
    /// Copies of queries, responses or acks already seen.
    pub duplicates: u64,
    /// Responses or acks that came after their query ended here: dropped.
    pub late: u64,
    /// Queries dropped because their origin was over `origin_rate` here.
    pub rate_limited: u64,
    /// Queries or responses over the limits, malformed, or about a query of
    /// another origin sent to this node as if it were the origin: dropped.
    pub invalid: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> NodeName {
        NodeName::new(s).expect("valid")
    }

    #[test]
    fn a_filter_matches_by_name_and_by_every_tag_query() {
        let db = Tags::from_pairs([("role", "db"), ("zone", "a")]).expect("valid");
        let web = Tags::from_pairs([("role", "web")]).expect("valid");
        assert!(QueryFilter::default().matches(&name("x"), &web));
        let query = Query::new("q", Vec::new()).tag(TagQuery::key_value("role", "db"));
        assert!(query.filter.matches(&name("x"), &db));
        assert!(!query.filter.matches(&name("x"), &web));
        let both = query.tag(TagQuery::key("zone")).node(name("y"));
        assert!(!both.filter.matches(&name("x"), &db), "not the named node");
        assert!(both.filter.matches(&name("y"), &db));
    }

    #[test]
    fn the_defaults_hold_for_the_smallest_datagram_and_a_response_limit_above_one_does_not() {
        assert_eq!(QueryConfig::default().validate(1400), Ok(()));
        assert_eq!(QueryConfig::default().validate(1024), Ok(()));
        let large = QueryConfig {
            max_response_size: 1401,
            ..QueryConfig::default()
        };
        assert!(large.validate(1400).is_err());
    }
}
