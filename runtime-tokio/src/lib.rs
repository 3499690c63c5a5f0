//! # beethoven-tokio
//!
//! Runs a Beethoven cluster member on tokio. [`start`] binds one UDP socket and
//! spawns one task for the node, and returns a cloneable [`Handle`]: getters,
//! commands that answer (a [`Reply`] to await), the node's events as an async
//! stream ([`Handle::events`], with filtered views such as [`Handle::subscribe`]),
//! callbacks ([`Handle::alert_me`]) and [`Handle::shutdown`]. `beethoven-smol` has the same
//! API on smol.
//!
//! ```no_run
//! use beethoven_tokio::{Config, NodeName, NodeStatus, Options, Update};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let options = Options::new(NodeName::new("api@10.0.0.7")?)
//!         .config(Config::for_cluster("shop"))
//!         .bind("0.0.0.0:7946".parse()?)
//!         .advertise("10.0.0.7:7946".parse()?) // what the others dial
//!         .seed_host("seed.shop.internal:7946") // resolved at start, again for each seed re-probe
//!         .seed("10.0.0.0/24:7946".parse::<beethoven_tokio::Seed>()?); // scan a range
//!     let node = beethoven_tokio::start(options).await?;
//!     node.alert_me(|name: &NodeName, status: NodeStatus| println!("{name} is {status}"))?;
//!     let mut updates = node.subscribe();
//!     while let Some(update) = updates.recv().await {
//!         match update {
//!             Update::Node { node: name, status } => println!("{name}: {status}, mode {}", node.mode()),
//!             Update::Lagged { missed } => println!("missed {missed} updates"),
//!             _ => {}
//!         }
//!     }
//!     node.leave().await?; // the node answers once it applied it; the others mark it offline at once
//!     node.shutdown().await; // waits for the leave to spread, then closes the socket
//!     Ok(())
//! }
//! ```
//!
//! This crate is only glue. The node runs on a thread of its own
//! ([`Driver::spawn_thread`] of `beethoven-driver`, the same loop on every
//! runtime), asleep until a command, a datagram or its deadline: a quiet node
//! then costs the least CPU (a task on tokio would also wake at each of its timer
//! wheel's slot boundaries and on every send's writability). The runtime-independent
//! [`Driver`] owns the rest (the [`Handle`], subscribers, options, the UDP
//! transport); its docs say how addresses are chosen, why subscribers never block
//! the node, and how a node stops. On tokio run the [`Handle`]'s futures,
//! callbacks and seed lookups (tokio's blocking pool).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::Arc;

use beethoven_driver::{BlockingWork, Driver, Runtime};

pub use beethoven_driver::prelude::*;

/// Binds the socket, resolves `host:port` seeds (on tokio's blocking pool),
/// creates the node, joins the seeds (if any) and starts the node's thread.
///
/// # Panics
///
/// Outside a tokio runtime (like `tokio::spawn`).
pub async fn start(options: Options) -> Result<Handle, StartError> {
    let runtime = Arc::new(Tokio(tokio::runtime::Handle::current()));
    Driver::start_on_thread(options, runtime).await
}

/// The blocking pool of the tokio runtime `start` ran on.
#[derive(Debug)]
struct Tokio(tokio::runtime::Handle);

impl Runtime for Tokio {
    fn spawn_blocking(&self, work: BlockingWork) {
        drop(self.0.spawn_blocking(work));
    }
}
