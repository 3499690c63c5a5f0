//! The node's task: waits for a command, a datagram or the node's deadline, and
//! hands it to the driver.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use beethoven_core::{Command, Driver, Flow, Input};
use beethoven_udp::UdpTransport;
use smol::channel::{Receiver, RecvError};
use smol::{Async, Timer, future};

/// Room for the largest UDP payload, so oversized packets are seen (and counted)
/// rather than cut.
const RECV_BUFFER: usize = 65_536;

/// What the task woke up for, before it is borrowed into an [`Input`].
enum Wake {
    Command(Result<Command, RecvError>),
    Datagram(io::Result<(usize, SocketAddr)>),
    Deadline,
}

pub(crate) async fn run(mut driver: Driver, socket: Async<UdpSocket>, commands: Receiver<Command>) {
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut timer = Timer::at(Instant::now());
    loop {
        // `or` polls its left side first: commands are not starved by datagrams.
        let wake = future::or(async { Wake::Command(commands.recv().await) }, async {
            future::or(
                async { Wake::Datagram(socket.recv_from(&mut buf).await) },
                async {
                    (&mut timer).await;
                    Wake::Deadline
                },
            )
            .await
        })
        .await;
        let input = match wake {
            Wake::Command(Ok(command)) => Input::Command(command),
            Wake::Command(Err(RecvError)) => Input::Closed,
            Wake::Datagram(Ok((len, from))) => Input::Datagram {
                from,
                bytes: &buf[..len],
            },
            Wake::Datagram(Err(error)) => Input::RecvError(error),
            Wake::Deadline => Input::Timeout,
        };
        // The socket is non-blocking: a full buffer loses the datagram, as UDP may,
        // instead of holding up the node.
        match driver.step(
            Instant::now(),
            input,
            &mut UdpTransport::new(socket.get_ref()),
        ) {
            Flow::Continue { wake_at: Some(at) } => timer.set_at(at),
            Flow::Continue { wake_at: None } => timer = Timer::never(),
            Flow::Stop => break,
        }
    }
    // The socket closes before the command channel, so whoever waits on the
    // channel closing (`Handle::shutdown`) finds the port free.
    drop(socket);
    drop(driver);
    drop(commands);
}
