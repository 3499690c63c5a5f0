//! The loop every runtime runs a node in: one OS thread per node, asleep in the
//! OS's readiness wait (`epoll` on Linux, through mio) until the socket is
//! readable, a [`Handle`](crate::Handle) queues a command, or the node's deadline
//! passes, which is the wait's timeout.
//!
//! Why a thread of its own rather than a task on the application's runtime: idle
//! cost (BENCHMARKS.md, "idle cost"). A quiet node needs about 20
//! wakeups a second (its probe deadlines, the acks, the pings of others), and on
//! a VM each costs 20–30 µs of switching alone. A task on tokio wakes about as
//! often again for nothing: tokio's timer wheel wakes its thread at the boundary
//! of a 64 ms slot on the way to every deadline further away (the probe period
//! always is), and tokio registers a UDP socket for writability too, so every
//! send raises an event. On smol every event crosses from the reactor's thread to
//! the executor's. Here the socket is registered for readability only and the
//! deadline is the wait's own timeout, so the thread wakes exactly when the node
//! has work. Commands wake it through the channel's waker, which writes to the
//! poll's eventfd (mio's `Waker`); nothing here needs `unsafe`.

use std::io;
use std::net::UdpSocket;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use mio::{Events, Interest, Token};
use tracing::error;

use crate::driver::{Driver, Flow, Input, RECV_BUFFER_SIZE};
use crate::handle::Handle;
use crate::options::{Options, StartError};
use crate::runtime::Runtime;
use crate::transport::UdpTransport;

/// The socket's readiness.
const SOCKET: Token = Token(0);
/// A command was queued (the channel's waker fired).
const COMMANDS: Token = Token(1);

/// Wakes the node's thread out of its wait when the command channel has news.
#[derive(Debug)]
struct CommandsWaker(mio::Waker);

impl Wake for CommandsWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Fails only if the eventfd cannot be written, which its counter rules
        // out short of 2^64 - 1 unread wakes; the thread then still wakes at its
        // deadline and reads the commands.
        if let Err(error) = self.0.wake() {
            error!(%error, "could not wake the node's thread");
        }
    }
}

impl Driver {
    /// What a runtime crate's `start` does: binds a UDP socket at
    /// [`Options::bind_addr`], creates the driver with [`Driver::start`] (blocking
    /// work, such as seed lookups, goes to `runtime`) and runs it on a thread of
    /// its own ([`Driver::spawn_thread`]). Returns the node's [`Handle`].
    pub async fn start_on_thread(
        options: Options,
        runtime: Arc<dyn Runtime>,
    ) -> Result<Handle, StartError> {
        let socket = UdpSocket::bind(options.bind_addr());
        let (driver, handle, socket) = Driver::start(options, socket, runtime).await?;
        driver.spawn_thread(socket)?;
        Ok(handle)
    }

    /// Runs this driver on an OS thread of its own (named `beethoven`), on
    /// `socket` (the one [`Driver::start`] returned), until [`Flow::Stop`]: the
    /// second half of [`Driver::start_on_thread`].
    ///
    /// A thread and not a task of the application's runtime, for what a quiet node
    /// costs: it sleeps in the OS's readiness wait, with the socket registered for
    /// readability only and its deadline as the wait's timeout, so it wakes only
    /// for its own deadlines, datagrams and commands. A task on tokio also woke at
    /// its timer wheel's slot boundaries and on every send's writability, and one
    /// on smol crossed from the reactor's thread at every event: a quiet node
    /// cost 1.6 times the CPU on tokio, 2.3 times on smol (BENCHMARKS.md, "idle
    /// cost").
    ///
    /// Fails if the socket cannot be made non-blocking, or the OS refuses a poll
    /// instance or a thread; the driver is then dropped, which ends its handles'
    /// commands.
    pub fn spawn_thread(self, socket: UdpSocket) -> Result<(), StartError> {
        self.try_spawn_thread(socket)
            .map_err(|source| StartError::Thread { source })
    }

    fn try_spawn_thread(self, socket: UdpSocket) -> io::Result<()> {
        socket.set_nonblocking(true)?;
        let mut socket = mio::net::UdpSocket::from_std(socket);
        let poll = mio::Poll::new()?;
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let waker = mio::Waker::new(poll.registry(), COMMANDS)?;
        let waker = Waker::from(Arc::new(CommandsWaker(waker)));
        std::thread::Builder::new()
            .name("beethoven".into())
            .spawn(move || run(self, socket, poll, &waker))?;
        Ok(())
    }
}

/// The node's thread: commands first (a stop is not starved by a flood), then a
/// deadline that has passed, then the datagrams the socket holds; then wait.
fn run(mut driver: Driver, socket: mio::net::UdpSocket, mut poll: mio::Poll, waker: &Waker) {
    let mut context = Context::from_waker(waker);
    let mut commands = driver.commands();
    let mut events = Events::with_capacity(4);
    let mut buf = vec![0u8; RECV_BUFFER_SIZE];
    let mut wake_at = Some(Instant::now());
    // mio's readiness is edge-triggered: the socket is read until it would block,
    // and datagrams queued before the registration are read at the start. The
    // channel is polled at the start (which registers the waker) and again only
    // when the waker fired: a wakeup for a datagram does not look at it.
    let mut readable = true;
    let mut commands_woken = true;
    loop {
        let transport = &mut UdpTransport::new(&socket);
        let now = Instant::now();
        let command = if commands_woken {
            match commands.poll_next(&mut context) {
                Poll::Ready(input) => Some(input),
                Poll::Pending => {
                    commands_woken = false;
                    None
                }
            }
        } else {
            None
        };
        let flow = if let Some(input) = command {
            driver.step(now, input, transport)
        } else if wake_at.is_some_and(|at| at <= now) {
            driver.step(now, Input::Timeout, transport)
        } else if readable {
            let mut drained = false;
            let recv = |buf: &mut [u8]| {
                let received = socket.recv_from(buf);
                drained = matches!(&received, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
                received
            };
            let flow = driver.receive(&mut buf, recv, transport);
            // Not drained: `receive` stopped at its limit, the rest comes after the
            // commands and the deadline have had their turn.
            readable = !drained;
            flow
        } else {
            let timeout = wake_at.map(|at| at.saturating_duration_since(now));
            match poll.poll(&mut events, timeout) {
                Ok(()) => {
                    for event in &events {
                        match event.token() {
                            SOCKET => readable = true,
                            COMMANDS => commands_woken = true,
                            _ => {}
                        }
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // Not seen in practice (epoll_wait fails only on bad arguments);
                    // the node cannot go on without a way to wait.
                    error!(%error, "the node's poll failed: stopping the node");
                    break;
                }
            }
            continue;
        };
        match flow {
            Flow::Continue { wake_at: next } => wake_at = next,
            Flow::Stop => break,
        }
    }
    // The socket closes before the driver's command channel, so whoever waits on
    // that channel closing (`Handle::shutdown`) finds the port free.
    drop(socket);
    drop(commands);
    drop(driver);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use beethoven_core::NodeName;

    use super::*;
    use crate::runtime::Threads;

    /// A node on its thread, bound on loopback; the socket is handed over only
    /// when `before_start` has run on it.
    fn node_on_thread(before_start: impl FnOnce(&UdpSocket)) -> Handle {
        // Nothing timed within the test's patience: only a datagram or a command
        // wakes the thread.
        let hour = Duration::from_secs(3600);
        let config = beethoven_core::Config::default()
            .with_probe_interval(hour)
            .with_probe_timeout(hour / 2)
            .with_gossip_interval(hour)
            .with_anti_entropy_interval(hour)
            .with_join_retry(hour)
            .with_rejoin_interval(hour);
        let options = Options::new(NodeName::new("n").expect("valid name"))
            .config(config)
            .bind("127.0.0.1:0".parse().expect("valid address"));
        let socket = UdpSocket::bind(options.bind_addr()).expect("bind on loopback");
        let bound = socket.local_addr().expect("bound");
        let (driver, handle) = Driver::new(
            options,
            bound,
            &[],
            Instant::now(),
            SystemTime::now().into(),
            Arc::new(Threads),
        )
        .expect("valid options");
        before_start(&socket);
        driver.spawn_thread(socket).expect("thread started");
        handle
    }

    /// Polls `done` until it holds, for at most 10 s (a loaded machine is slow,
    /// never this slow).
    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let since = Instant::now();
        while !done() {
            assert!(since.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_burst_larger_than_one_read_is_read_to_the_end() {
        // Queued before the thread starts, so the readiness edge is long gone: the
        // thread must read past `MAX_DATAGRAMS_PER_WAKE` without another event.
        let burst = 5 * crate::driver::MAX_DATAGRAMS_PER_WAKE / 2;
        let sender = UdpSocket::bind("127.0.0.1:0").expect("bind on loopback");
        let handle = node_on_thread(|socket| {
            let to = socket.local_addr().expect("bound");
            for _ in 0..burst {
                sender.send_to(b"not a beethoven packet", to).expect("sent");
            }
        });
        let received = || handle.stats().packets_received;
        eventually("every datagram of the burst was read", || {
            received() == burst as u64
        });
        // And the thread still waits for more afterwards.
        sender
            .send_to(b"one more", handle.local_addr())
            .expect("sent");
        eventually("a later datagram was read", || {
            received() == burst as u64 + 1
        });
        assert_eq!(handle.stats().dropped_total(), burst as u64 + 1);
    }

    #[test]
    fn a_command_wakes_the_waiting_thread_and_dropping_the_handles_ends_it() {
        let handle = node_on_thread(|_| {});
        let addr = handle.local_addr();
        // The node's deadlines are an hour away: the command is seen because it
        // wakes the thread.
        let reply = handle.new_node(
            NodeName::new("m").expect("valid name"),
            "127.0.0.1:9".parse().expect("valid"),
        );
        assert_eq!(futures_lite::future::block_on(reply), Ok(()));
        assert_eq!(
            handle.cluster_nodes().len(),
            2,
            "published before the reply"
        );
        drop(handle);
        // The thread closes its socket once the last handle is gone.
        eventually("the port is free again", || UdpSocket::bind(addr).is_ok());
    }
}
