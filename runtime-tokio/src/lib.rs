//! # beethoven-tokio
//!
//! Runs a Beethoven cluster member on tokio. [`start`] binds one UDP socket and
//! spawns one task for the node, and returns a cloneable [`Handle`]: getters,
//! commands, callbacks ([`Handle::alert_me`]), an async stream of updates
//! ([`Handle::subscribe`]) and [`Handle::shutdown`]. `beethoven-smol` has the same
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
//! This crate is only glue: the node's task waits for a command, a datagram or
//! the node's deadline and hands it to the runtime-independent
//! [`Driver`] of `beethoven-driver`, which owns the rest
//! (the [`Handle`], subscribers, options, the UDP transport); its docs say how
//! addresses are chosen, why subscribers never block the node, and how a node
//! stops. Callbacks and seed lookups run on tokio's blocking pool.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io;
use std::sync::Arc;
use std::time::Instant;

use beethoven_driver::{
    BlockingWork, Driver, Flow, Input, RECV_BUFFER_SIZE, Runtime, UdpTransport,
};
use tokio::net::UdpSocket;
use tokio::time::sleep_until;

pub use beethoven_driver::prelude::*;

/// Binds the socket, resolves `host:port` seeds, creates the node, joins the seeds
/// (if any) and spawns the node's task on the current tokio runtime.
///
/// # Panics
///
/// Outside a tokio runtime (like `tokio::spawn`).
pub async fn start(options: Options) -> Result<Handle, StartError> {
    let socket = UdpSocket::bind(options.bind_addr()).await;
    let runtime = Arc::new(Tokio(tokio::runtime::Handle::current()));
    let (driver, handle, socket) = Driver::start(options, socket, runtime).await?;
    tokio::spawn(run(driver, socket));
    Ok(handle)
}

/// The blocking pool of the tokio runtime `start` ran on.
#[derive(Debug)]
struct Tokio(tokio::runtime::Handle);

impl Runtime for Tokio {
    fn spawn_blocking(&self, work: BlockingWork) {
        drop(self.0.spawn_blocking(work));
    }
}

/// What woke the node's task.
enum Wake {
    Input(Input<'static>),
    Readable(io::Result<()>),
}

/// The node's task.
async fn run(mut driver: Driver, socket: UdpSocket) {
    let mut buf = vec![0u8; RECV_BUFFER_SIZE];
    let mut commands = driver.commands();
    let mut wake_at = Some(Instant::now());
    // One timer for the task's life, moved only when the deadline moves.
    let timer = sleep_until(Instant::now().into());
    tokio::pin!(timer);
    loop {
        // Commands first, so a stop is not starved by a datagram flood; then the
        // timer, which is ready only once its deadline has passed.
        let wake = tokio::select! {
            biased;
            command = commands.next() => Wake::Input(command),
            () = &mut timer, if wake_at.is_some() => Wake::Input(Input::Timeout),
            ready = socket.readable() => Wake::Readable(ready),
        };
        // Direct non-blocking sends: a full socket buffer loses the datagram, as UDP
        // may, instead of holding up the node.
        let transport = &mut UdpTransport::new(&socket);
        let timed_out = matches!(wake, Wake::Input(Input::Timeout));
        let flow = match wake {
            Wake::Input(input) => driver.step(Instant::now(), input, transport),
            // Every datagram queued meanwhile, in this one wakeup.
            Wake::Readable(Ok(())) => {
                driver.receive(&mut buf, |buf| socket.try_recv_from(buf), transport)
            }
            Wake::Readable(Err(error)) => {
                driver.step(Instant::now(), Input::RecvError(error), transport)
            }
        };
        match flow {
            Flow::Continue { wake_at: next } => {
                if let Some(at) = next
                    && (timed_out || next != wake_at)
                {
                    timer.as_mut().reset(at.into());
                }
                wake_at = next;
            }
            Flow::Stop => break,
        }
    }
    // The socket closes before the driver's command channel, so whoever waits on
    // that channel closing (`Handle::shutdown`) finds the port free.
    drop(socket);
    drop(commands);
    drop(driver);
}
