//! # beethoven-smol
//!
//! Runs a Beethoven cluster member on smol. [`start`] binds one UDP socket and
//! starts the node on a thread of its own, and returns a
//! cloneable [`Handle`]: getters, commands that answer (a [`Reply`] to await),
//! the node's events as an async stream ([`Handle::events`], with filtered views
//! such as [`Handle::subscribe`]), callbacks ([`Handle::alert_me`]) and
//! [`Handle::shutdown`].
//! `beethoven-tokio` has the same API on tokio.
//!
//! ```no_run
//! use beethoven_smol::{Config, NodeName, NodeStatus, Options, Update};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     smol::block_on(async {
//!         let options = Options::new(NodeName::new("api@10.0.0.7")?)
//!             .config(Config::for_cluster("shop"))
//!             .bind("0.0.0.0:7946".parse()?)
//!             .advertise("10.0.0.7:7946".parse()?) // what the others dial
//!             .seed_host("seed.shop.internal:7946") // resolved at start, again for each seed re-probe
//!             .seed("10.0.0.0/24:7946".parse::<beethoven_smol::Seed>()?); // scan a range
//!         let node = beethoven_smol::start(options).await?;
//!         node.alert_me(|name: &NodeName, status: NodeStatus| println!("{name} is {status}"))?;
//!         let mut updates = node.subscribe();
//!         while let Some(update) = updates.recv().await {
//!             if let Update::Lagged { missed } = update {
//!                 println!("missed {missed} updates; {} nodes online", node.active_nodes().len());
//!             }
//!         }
//!         node.leave().await?; // the node answers once it applied it; the others mark it offline at once
//!         node.shutdown().await; // waits for the leave to spread, then closes the socket
//!         Ok(())
//!     })
//! }
//! ```
//!
//! Only glue lives here. The node runs on a thread of its own
//! ([`Driver::spawn_thread`] of `beethoven-driver`, the same loop on every
//! runtime), asleep until a command, a datagram or its deadline: a quiet node
//! then costs the least CPU (a task on smol would cross from the reactor's thread
//! to the executor's at every event). The [`Driver`] owns the [`Handle`],
//! subscribers, options and the UDP transport, and documents addresses,
//! subscribers that never block the node, and stopping. On smol run the
//! [`Handle`]'s futures, callbacks and seed lookups (smol's blocking thread pool,
//! [`smol::unblock`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::sync::Arc;

use beethoven_driver::{BlockingWork, Driver, Runtime};

pub use beethoven_driver::prelude::*;

/// Binds the socket, resolves `host:port` seeds (on smol's blocking pool),
/// creates the node, joins the seeds (if any) and starts the node's thread.
pub async fn start(options: Options) -> Result<Handle, StartError> {
    Driver::start_on_thread(options, Arc::new(Smol)).await
}

/// smol's blocking thread pool.
#[derive(Debug)]
struct Smol;

impl Runtime for Smol {
    fn spawn_blocking(&self, work: BlockingWork) {
        smol::unblock(work).detach();
    }
}
