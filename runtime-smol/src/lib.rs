//! # beethoven-smol
//!
//! Runs a Beethoven cluster member on smol. [`start`] binds one UDP socket and
//! spawns one task for the node on smol's global executor, and returns a
//! cloneable [`Handle`]: getters, commands, callbacks ([`Handle::alert_me`]), an
//! async stream of updates ([`Handle::subscribe`]) and [`Handle::shutdown`].
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
//!         node.alert_me(|name: &NodeName, status: NodeStatus| println!("{name} is {status:?}"))?;
//!         let mut updates = node.subscribe();
//!         while let Some(update) = updates.recv().await {
//!             if let Update::Lagged { missed } = update {
//!                 println!("missed {missed} updates; {} nodes online", node.active_nodes().len());
//!             }
//!         }
//!         node.leave()?; // the others mark this node offline at once
//!         node.shutdown().await; // waits for the leave to spread, then closes the socket
//!         Ok(())
//!     })
//! }
//! ```
//!
//! Only glue lives here: the node's task races a command, a datagram and the
//! node's deadline, and steps the [`Driver`] of
//! `beethoven-driver` with the winner. The driver crate owns the [`Handle`],
//! subscribers, options and the UDP transport, and documents addresses,
//! subscribers that never block the node, and stopping. Callbacks and seed
//! lookups run on smol's blocking thread pool ([`smol::unblock`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use beethoven_driver::{
    BlockingWork, Driver, Flow, Input, RECV_BUFFER_SIZE, Runtime, UdpTransport,
};
use smol::{Async, Timer, future};

pub use beethoven_driver::prelude::*;

/// Binds the socket, resolves `host:port` seeds, creates the node, joins the seeds
/// (if any) and spawns the node's task on smol's global executor.
pub async fn start(options: Options) -> Result<Handle, StartError> {
    let socket = Async::<UdpSocket>::bind(options.bind_addr());
    let (driver, handle, socket) = Driver::start(options, socket, Arc::new(Smol)).await?;
    smol::spawn(run(driver, socket)).detach();
    Ok(handle)
}

/// smol's blocking thread pool.
#[derive(Debug)]
struct Smol;

impl Runtime for Smol {
    fn spawn_blocking(&self, work: BlockingWork) {
        smol::unblock(work).detach();
    }
}

/// What woke the task, before a datagram is borrowed from the buffer.
enum Wake {
    Input(Input<'static>),
    Received(io::Result<(usize, SocketAddr)>),
}

/// The node's task.
async fn run(mut driver: Driver, socket: Async<UdpSocket>) {
    let mut buf = vec![0u8; RECV_BUFFER_SIZE];
    let mut timer = Timer::at(Instant::now());
    loop {
        let command = async { Wake::Input(driver.next_command().await) };
        let datagram = async { Wake::Received(socket.recv_from(&mut buf).await) };
        let deadline = async {
            (&mut timer).await;
            Wake::Input(Input::Timeout)
        };
        // `or` polls its left side first: commands are not starved by datagrams.
        let wake = future::or(command, future::or(datagram, deadline)).await;
        let input = match wake {
            Wake::Input(input) => input,
            Wake::Received(received) => Input::received(received, &buf),
        };
        // The socket is non-blocking: a full buffer loses the datagram, as UDP may,
        // instead of holding up the node.
        let transport = &mut UdpTransport::new(socket.get_ref());
        match driver.step(Instant::now(), input, transport) {
            Flow::Continue { wake_at: Some(at) } => timer.set_at(at),
            Flow::Continue { wake_at: None } => timer = Timer::never(),
            Flow::Stop => break,
        }
    }
    // The socket closes first: `Handle::shutdown` waits for the driver's command
    // channel to close, and then finds the port free.
    drop(socket);
    drop(driver);
}
