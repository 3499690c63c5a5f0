//! # beethoven-tokio
//!
//! Runs a [Beethoven](beethoven_core) cluster member on tokio: one UDP socket and
//! one task per node, driven by the sans-IO [`Driver`](beethoven_core::Driver) of
//! `beethoven-core`. [`start`] returns a cloneable [`Handle`]: getters and commands
//! (through [`Control`], which `Handle` dereferences to), callbacks ([`Handle::alert_me`]),
//! an async stream of updates ([`Handle::subscribe`]) and [`Handle::shutdown`].
//! `beethoven-smol` has the same API on smol.
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
//!         .seed_host("seed.shop.internal:7946") // resolved once, at start
//!         .seed("10.0.0.0/24:7946".parse::<beethoven_tokio::Seed>()?); // scan a range
//!     let node = beethoven_tokio::start(options).await?;
//!     node.alert_me(|name: &NodeName, status: NodeStatus| println!("{name} is {status:?}"))?;
//!     let mut updates = node.subscribe();
//!     while let Some(update) = updates.recv().await {
//!         match update {
//!             Update::Node { node: name, status } => println!("{name}: {status:?}, mode {:?}", node.mode()),
//!             Update::Lagged { missed } => println!("missed {missed} updates"),
//!             _ => {}
//!         }
//!     }
//!     node.leave()?; // the others mark this node offline at once
//!     node.shutdown().await; // waits for the leave to spread, then closes the socket
//!     Ok(())
//! }
//! ```
//!
//! ## Addresses
//!
//! The socket binds [`Options::bind`]; port 0 picks a free port and
//! [`Control::local_addr`] reports the real one. Other nodes must be told a
//! reachable address: [`Options::advertise`], or else the bound address, where a
//! wildcard IP (`0.0.0.0`, `::`) is replaced by loopback (`127.0.0.1:port`) — fine for
//! clusters on one host only. [`Control::advertised_addr`] says what was chosen.
//!
//! ## Subscribers never block the node
//!
//! Every subscriber has a bounded queue ([`Options::queue_capacity`]); the node
//! only ever `try_send`s into it. A callback runs on tokio's blocking pool, so a
//! slow or panicking one (the panic is caught and logged) stalls only itself. A
//! subscriber that falls behind loses updates and then receives
//! [`Update::Lagged`] with how many it missed.
//!
//! ## Stopping
//!
//! [`Handle::shutdown`] ends the task and closes the socket (after a pending
//! `leave` has spread, at most `leave_timeout`); dropping the last `Handle` does the
//! same at once. Without `leave` the others see a crash and declare the node
//! offline after their failure detector runs out.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod handle;
mod task;

pub use beethoven_core::prelude::*;
pub use handle::{Handle, Updates, start};
