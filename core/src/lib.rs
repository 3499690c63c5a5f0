//! # beethoven-core
//!
//! Cluster membership as a pure state machine: every node keeps a replicated
//! table of the cluster's nodes (online/offline, when it last changed), detects
//! failed nodes within seconds (SWIM with the Lifeguard extensions), tells local
//! subscribers when *another* node changes state, and knows whether it is
//! standalone or clustered. It is the Rust successor of the Elixir library
//! Beethoven's `CoreServer`.
//!
//! The core does no IO, reads no clock and holds no global randomness: you give it
//! datagrams and the time, it gives you datagrams to send, events, and the next
//! time it wants to be woken. The same inputs give the same outputs, bit for bit.
//! `beethoven-driver` wraps it in everything a runtime shares (commands, a
//! published snapshot, subscribers), which `beethoven-tokio` and `beethoven-smol`
//! drive on real sockets; `beethoven-testkit` drives many nodes in a deterministic
//! simulator.
//!
//! ## The loop you write
//!
//! After **every** `handle_*` call or command, drain `poll_transmit`, then
//! `poll_event`, then read `poll_timeout`. `now` must never go backwards.
//!
//! ```no_run
//! use std::net::UdpSocket;
//! use std::time::{Duration, Instant};
//! use beethoven_core::{Config, Event, Node, NodeName, Seed};
//!
//! let socket = UdpSocket::bind("127.0.0.1:7946")?;
//! let name = NodeName::new("api@127.0.0.1")?;
//! let mut node = Node::new(
//!     Config::for_cluster("demo"),
//!     name,
//!     socket.local_addr()?,
//!     Instant::now(),
//!     std::time::SystemTime::now().into(), // wall clock at `now`
//! )?;
//! node.join(Instant::now(), &["127.0.0.1:7947".parse::<Seed>()?])?;
//! let mut buf = [0u8; 65_536];
//! loop {
//!     // 1. output: datagrams, then events
//!     while let Some(t) = node.poll_transmit() {
//!         let _ = socket.send_to(t.payload, t.to); // a lost datagram is normal
//!     }
//!     while let Some(event) = node.poll_event() {
//!         if let Event::NodeUpdate { node, status, .. } = event {
//!             println!("{node} is {status:?}");
//!         }
//!     }
//!     // 2. wait for input until the node's next deadline
//!     let wait = node
//!         .poll_timeout()
//!         .map(|at| at.saturating_duration_since(Instant::now()))
//!         .unwrap_or(Duration::from_secs(1));
//!     socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
//!     // 3. input: a datagram, or the deadline
//!     match socket.recv_from(&mut buf) {
//!         Ok((len, from)) => node.handle_packet(Instant::now(), from, &buf[..len]),
//!         Err(_) => node.handle_timeout(Instant::now()),
//!     }
//! }
//! # #[allow(unreachable_code)]
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## From the original
//!
//! | Elixir `Beethoven.CoreServer` | here |
//! |---|---|
//! | tracker table `(node, status, last_change)` | [`Tracker`] of [`TrackerRow`] |
//! | `alert_me/1`, `node_update/2` | [`Event::NodeUpdate`], once per transition of another node (`beethoven-driver` fans it out to the runtimes' subscribers) |
//! | `new_node/1` | [`Node::new_node`] |
//! | `get_mode/0` | [`Node::mode`] |
//! | `add_node_to_mnesia/1`, Locator | [`Node::join`] with [`Seed`]s (addresses or CIDR ranges) |
//! | `trackerEvent` | [`Event::Tracker`] with [`Op::Write`] / [`Op::Delete`] |
//! | *(no per-node metadata)* | [`Tags`] in every [`TrackerRow`]: [`Node::set_tags`], [`Tracker::find`] with a [`TagQuery`] |
//!
//! ## Protocol in brief
//!
//! - **Probing** ([`Config::probe_interval`]): each period one member, in a shuffled
//!   round-robin order, is pinged; without an ack `k` others are asked to ping it,
//!   and they nack if it does not answer them either.
//! - **Suspicion**: a member that missed its probe is `Suspect` (still online)
//!   until a timeout that shrinks as independent members confirm the suspicion;
//!   the suspect refutes by raising its incarnation. Then `Dead` (offline).
//! - **Dissemination**: changes ride on every packet, plus a gossip tick while
//!   any are pending. **Anti-entropy** compares digests and repairs differences.
//! - **Rows merge by precedence** ([`TrackerRow::supersedes`]), so every replica
//!   converges to identical rows.
//! - **Tags**: each node's own small map of UTF-8 keys and values, in its row.
//!   A change raises its incarnation, so precedence spreads it and the digest
//!   repairs it; tags travel on change, in join replies and in repairs, never
//!   on probes.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// Gives a field-less enum its one name for logs, metrics and JSON: `as_str()`
/// (snake case) and `Display` with that name. Labels never come from `Debug`.
macro_rules! labels {
    ($ty:ty { $($variant:ident => $label:literal),* $(,)? }) => {
        impl $ty {
            /// The name in logs, metrics and JSON (snake case).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)*
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod config;
mod discovery;
mod event;
mod keyring;
mod limiter;
mod logarithm;
mod members;
mod name;
mod node;
mod query;
mod saved;
mod stats;
mod tags;
mod tracker;
mod user;
mod wire;

pub use config::{Config, ConfigError, MIN_PACKET_SIZE};
pub use discovery::{Cidr, JoinError, Seed, SeedParseError, expand_seeds};
pub use event::{Event, JoinRefusal, Mode, Op, TrackerEvent};
pub use keyring::{Key, KeyError, KeyRing, SEAL_OVERHEAD};
pub use name::{ClusterId, MAX_NAME_LEN, NameTaken, NodeName, NodeNameError};
pub use node::{
    ForceLeaveError, LeaveError, LocalHealth, NewNodeError, Node, SetTagsError, Transmit,
    retransmit_limit, suspicion_bounds, suspicion_timeout,
};
pub use query::{
    Query, QueryConfig, QueryDone, QueryError, QueryFilter, QueryId, QueryRequest, QueryStats,
    QueryToken, RespondError,
};
pub use saved::timestamp;
pub use stats::{DropReason, Stats};
pub use tags::{TagQuery, Tags, TagsError, TagsIter};
pub use tracker::{
    DIGEST_BUCKETS, Digest, Health, MAX_INCARNATION, NodeStatus, Tracker, TrackerRow,
};
pub use user::{SendEventError, UserEvent, UserEventConfig, UserEventId, UserEventStats};
pub use wire::{HEADER_LEN, MAGIC, Refusal, VERSION};

/// Re-exported so users name the same `DateTime` type as the rows.
pub use chrono;
