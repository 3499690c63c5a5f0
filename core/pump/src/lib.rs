//! # beethoven-pump
//!
//! The one in-memory cluster pump of `beethoven-core`'s integration tests and
//! benchmarks (dev-only, never published). It drives real
//! [`Node`](beethoven_core::Node)s through their public API alone: a [`Pump`]
//! holds many nodes, a seeded [`Network`] with latency, jitter, loss and blocked
//! links, virtual time that jumps to the next datagram or deadline, and a log of
//! every event each node emitted.
//!
//! Once warm it allocates nothing per datagram (buffers are reused), so the dhat
//! tests can count the core's own allocations in a running cluster.
//!
//! The benchmarks also need packets a real node sent (the wire codec is internal
//! to the core): [`Pump::capture`] and the helpers of [`lone`] produce them.
//!
//! ## Why a crate and not a module of the core
//!
//! A `#[doc(hidden)]` module behind a feature would ship a harness (and a clock
//! read, for its epoch) in the sans-IO library, sit in its semver surface, and
//! need the feature switched on for every test and bench. As a dev-only crate the
//! pump is none of that: the core dev-depends on it, a cycle (core → pump → core)
//! that cargo allows for integration tests and benches, which link the same core
//! library as the pump. It still lives under `core/`, so `core/clippy.toml`
//! applies to it too.
//!
//! ## Pumps that stay elsewhere
//!
//! - `beethoven-testkit` is the full simulator (fault plans, invariants, metrics,
//!   traces, drivers and runtimes); this pump is the small core-only one.
//! - `fuzz/` lets the fuzzer choose every delivery, loss, corruption and replay.
//! - `bench-foca/` drives foca and beethoven through one loop, so that both
//!   libraries are measured alike.
//! - The driver's unit tests pump `Driver`s (commands, a stop), not bare nodes,
//!   and move out of the core with the driver.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod capture;
mod checks;
pub mod lone;
mod network;
mod pump;

use std::net::SocketAddr;
use std::time::Instant;

use beethoven_core::chrono::{DateTime, Utc};
use beethoven_core::{Config, NodeName};

pub use capture::{bench_cluster, is_ping_for, ping_with_updates, quiet_ping, quiet_ping_with};
pub use network::Network;
pub use pump::Pump;

/// The port of every node unless a test picks another.
pub const PORT: u16 = 7946;

/// Nodes the address scheme keeps distinct (see [`addr`]).
pub const MAX_NODES: usize = 250 * 256;

/// Name of node `i`: `node-00042@10.0.0.1`, 19 bytes, stored inline like most
/// real names. The packet sizes in `BENCHMARKS.md` are measured with these names.
pub fn name(i: usize) -> NodeName {
    NodeName::new(&format!("node-{i:05}@10.0.0.1")).expect("ASCII names under 30 bytes are valid")
}

/// Address of node `i` on [`PORT`]: node 0 is `10.0.0.1`, node 1 `10.0.0.2`, and
/// so on, 250 hosts per /24, so that a CIDR seed such as `10.0.0.0/28` finds the
/// first nodes.
pub fn addr(i: usize) -> SocketAddr {
    addr_on_port(i, PORT)
}

/// Address of node `i` (as [`addr`]) on another port.
pub fn addr_on_port(i: usize, port: u16) -> SocketAddr {
    assert!(
        i < MAX_NODES,
        "node {i}: the address scheme holds {MAX_NODES} nodes"
    );
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], port))
}

/// The LAN defaults of the pump's cluster, with the node's random seed.
pub fn config(seed: u64) -> Config {
    Config::for_cluster("pump").with_rng_seed(seed)
}

/// The epoch of a pump or bench: a monotonic instant and the wall clock at it.
/// Only offsets from it matter to the core.
pub fn epoch() -> (Instant, DateTime<Utc>) {
    #[allow(clippy::disallowed_methods)] // the harness's epoch; the core only sees offsets
    let now = Instant::now();
    let wall = DateTime::from_timestamp_millis(1_764_000_000_000)
        .expect("a fixed timestamp in chrono's range");
    (now, wall)
}
