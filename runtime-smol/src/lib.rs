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
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Instant;

use beethoven_driver::{
    BlockingWork, Driver, Flow, Input, RECV_BUFFER_SIZE, Runtime, UdpTransport,
};
use smol::{Async, Timer, future};

pub use beethoven_driver::prelude::*;

/// Binds the socket, resolves `host:port` seeds, creates the node, joins the seeds
/// (if any) and spawns the node's task on smol's global executor. A process that
/// keeps its nodes on one thread of its own costs less when quiet: see
/// [`start_on`].
pub async fn start(options: Options) -> Result<Handle, StartError> {
    let (driver, handle, socket) = bind(options).await?;
    smol::spawn(run(driver, socket)).detach();
    Ok(handle)
}

/// [`start`], with the node's task spawned on `executor` instead of smol's global
/// executor: for an application that runs its own, for instance on the thread
/// that waits for its events. A quiet node then costs less: smol's global
/// executor runs on threads of its own, so each wakeup of the task would hop
/// between threads, and while a thread sits in `smol::block_on` the reactor's
/// helper thread polls on a short backoff after every event.
///
/// ```no_run
/// use beethoven_smol::{NodeName, Options};
///
/// let executor = smol::Executor::new();
/// // `future::block_on` leaves the reactor to its own thread (see above).
/// smol::future::block_on(executor.run(async {
///     let options = Options::new(NodeName::new("a")?).bind("127.0.0.1:0".parse()?);
///     let node = beethoven_smol::start_on(&executor, options).await?;
///     println!("{} nodes online", node.active_nodes().len());
///     node.shutdown().await;
///     Ok::<(), Box<dyn std::error::Error>>(())
/// }))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub async fn start_on(
    executor: &smol::Executor<'_>,
    options: Options,
) -> Result<Handle, StartError> {
    let (driver, handle, socket) = bind(options).await?;
    executor.spawn(run(driver, socket)).detach();
    Ok(handle)
}

async fn bind(options: Options) -> Result<(Driver, Handle, Async<UdpSocket>), StartError> {
    let socket = Async::<UdpSocket>::bind(options.bind_addr());
    Driver::start(options, socket, Arc::new(Smol)).await
}

/// smol's blocking thread pool.
#[derive(Debug)]
struct Smol;

impl Runtime for Smol {
    fn spawn_blocking(&self, work: BlockingWork) {
        smol::unblock(work).detach();
    }
}

/// What woke the node's task.
enum Wake {
    Input(Input<'static>),
    Readable(io::Result<()>),
}

/// The node's task.
async fn run(mut driver: Driver, socket: Async<UdpSocket>) {
    let mut buf = vec![0u8; RECV_BUFFER_SIZE];
    let mut commands = driver.commands();
    let mut wake_at = Some(Instant::now());
    // One timer, moved only when the deadline moves: each move wakes the reactor.
    let mut timer = Timer::at(Instant::now());
    loop {
        let command = async { Wake::Input(commands.next().await) };
        let deadline = async {
            (&mut timer).await;
            Wake::Input(Input::Timeout)
        };
        let readable = async { Wake::Readable(socket.readable().await) };
        // `or` polls its left side first: commands are not starved by datagrams,
        // and a deadline that has passed comes before more datagrams.
        let wake = future::or(command, future::or(deadline, readable)).await;
        // The socket is non-blocking: a full buffer loses the datagram, as UDP may,
        // instead of holding up the node.
        let transport = &mut UdpTransport::new(socket.get_ref());
        let timed_out = matches!(wake, Wake::Input(Input::Timeout));
        let flow = match wake {
            Wake::Input(input) => driver.step(Instant::now(), input, transport),
            // Every datagram queued meanwhile, in this one wakeup.
            Wake::Readable(Ok(())) => {
                driver.receive(&mut buf, |buf| socket.get_ref().recv_from(buf), transport)
            }
            Wake::Readable(Err(error)) => {
                driver.step(Instant::now(), Input::RecvError(error), transport)
            }
        };
        match flow {
            // A timer that fired is spent: set it again even for the same deadline.
            Flow::Continue { wake_at: next } if timed_out || next != wake_at => {
                match next {
                    Some(at) => timer.set_at(at),
                    None => timer = Timer::never(),
                }
                wake_at = next;
            }
            Flow::Continue { .. } => {}
            Flow::Stop => break,
        }
    }
    // The socket closes first: `Handle::shutdown` waits for the driver's command
    // channel to close, and then finds the port free.
    drop(socket);
    drop(commands);
    drop(driver);
}
