//! The node's task: waits for a command, a datagram or the node's deadline, and
//! hands it to the driver.

use std::future::pending;
use std::time::Instant;

use beethoven_core::{Command, Driver, Flow, Input};
use beethoven_udp::UdpTransport;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::sleep_until;

/// Room for the largest UDP payload, so oversized packets are seen (and counted)
/// rather than cut.
const RECV_BUFFER: usize = 65_536;

pub(crate) async fn run(
    mut driver: Driver,
    socket: UdpSocket,
    mut commands: UnboundedReceiver<Command>,
) {
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut wake_at = Some(Instant::now());
    loop {
        // Commands first, so a stop is not starved by a datagram flood.
        let input = tokio::select! {
            biased;
            command = commands.recv() => command.map_or(Input::Closed, Input::Command),
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, from)) => Input::Datagram { from, bytes: &buf[..len] },
                Err(error) => Input::RecvError(error),
            },
            () = deadline(wake_at) => Input::Timeout,
        };
        // Direct non-blocking sends: a full socket buffer loses the datagram, as
        // UDP may, instead of holding up the node.
        match driver.step(Instant::now(), input, &mut UdpTransport::new(&socket)) {
            Flow::Continue { wake_at: next } => wake_at = next,
            Flow::Stop => break,
        }
    }
    // The socket closes before the command channel, so whoever waits on the
    // channel closing (`Handle::shutdown`) finds the port free.
    drop(socket);
    drop(driver);
    drop(commands);
}

async fn deadline(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at.into()).await,
        None => pending().await,
    }
}
