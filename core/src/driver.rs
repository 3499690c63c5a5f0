//! The runtime-independent half of a runtime (`beethoven-tokio`, `beethoven-smol`,
//! or your own): one [`Driver`] per node owns the [`Node`], applies the
//! [`Command`]s a [`Control`] queues, routes notifications into bounded subscriber
//! queues ([`Sink`]), and publishes the state the getters read. A runtime only adds
//! the socket, the timer, the task and the channels.
//!
//! Still sans-IO: the driver reads no clock, sends through a closure it is given,
//! and never waits.
//!
//! ## The loop a runtime writes
//!
//! ```no_run
//! use std::net::{SocketAddr, UdpSocket};
//! use std::sync::mpsc;
//! use std::time::{Duration, Instant};
//! use beethoven_core::{Driver, Flow, Input, NodeName, Options};
//!
//! let options = Options::new(NodeName::new("api@127.0.0.1")?).bind("127.0.0.1:0".parse()?);
//! let socket = UdpSocket::bind(options.bind_addr())?;
//! let (tx, commands) = mpsc::channel();
//! let (mut driver, control) = Driver::new(
//!     options,
//!     socket.local_addr()?,
//!     &[],
//!     Instant::now(),
//!     std::time::SystemTime::now().into(),
//!     move |command| tx.send(command).map_err(|e| e.0),
//! )?;
//! let _ = control; // hand this to the application
//! let mut wake_at = Some(Instant::now());
//! let mut buf = [0u8; 65_536];
//! loop {
//!     // wait for a datagram, a command, or the deadline (a real runtime selects over all three)
//!     let wait = wake_at.map_or(Duration::from_millis(50), |at| at.saturating_duration_since(Instant::now()));
//!     socket.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
//!     let received = socket.recv_from(&mut buf);
//!     let input = match (&received, commands.try_recv()) {
//!         (_, Ok(command)) => Input::Command(command),
//!         (Ok((len, from)), _) => Input::Datagram { from: *from, bytes: &buf[..*len] },
//!         (Err(_), _) => Input::Timeout,
//!     };
//!     let mut send = |to: SocketAddr, payload: &[u8]| socket.send_to(payload, to).map(drop);
//!     match driver.step(Instant::now(), input, &mut send) {
//!         Flow::Continue { wake_at: next } => wake_at = next,
//!         Flow::Stop => break,
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod control;
mod options;
mod router;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use tracing::{debug, info, warn};

use crate::discovery::{JoinError, Seed};
use crate::event::Event;
use crate::node::Node;

pub use control::{Command, CommandError, Control, IoErrors};
use control::{CommandKind, SharedSnapshot, Snapshot, lock};
pub use options::{DEFAULT_PORT, DEFAULT_QUEUE_CAPACITY, Options, StartError};
use router::Router;

/// The names an application of a runtime crate needs besides the runtime's own
/// `start`, `Handle` and `Updates`. `beethoven-tokio` and `beethoven-smol` both
/// re-export exactly this, so their APIs match item for item.
pub mod prelude {
    pub use crate::{
        Cidr, CommandError, Config, Control, Health, IoErrors, Mode, NodeName, NodeStatus,
        NodeUpdate, Options, Seed, StartError, Stats, SubscriberId, TrackerRow, Update,
    };
}
pub use router::{NodeUpdate, Sink, SinkError, SubscriberId, Update};

/// What woke the runtime's task.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input<'a> {
    /// A datagram arrived.
    Datagram {
        /// Who sent it.
        from: SocketAddr,
        /// Its bytes.
        bytes: &'a [u8],
    },
    /// Receiving failed (e.g. `ECONNREFUSED` after an ICMP error). Logged; the
    /// loop goes on.
    RecvError(io::Error),
    /// The OS reported that nothing listens at this address (ICMP port unreachable
    /// read from the socket's error queue).
    Unreachable(SocketAddr),
    /// The deadline from the last [`Flow::Continue`] passed (early calls are harmless).
    Timeout,
    /// A command from a [`Control`].
    Command(Command),
    /// The command channel closed: every `Handle`/`Control` was dropped.
    Closed,
}

/// What the runtime does after a step.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flow {
    /// Keep running; call [`Driver::step`] with [`Input::Timeout`] at `wake_at`
    /// (`None`: nothing is scheduled, wait for input only).
    Continue {
        /// The node's next deadline.
        wake_at: Option<Instant>,
    },
    /// End the task and close the socket.
    Stop,
}

/// One node and everything around it that is not IO: commands, subscriber
/// routing, the published snapshot. See the module docs for the loop.
#[derive(Debug)]
pub struct Driver {
    node: Node,
    router: Router,
    snapshot: SharedSnapshot,
    rows_dirty: bool,
    io_errors: IoErrors,
    /// `leave` ran and its `LeaveFinished` has not come yet.
    leaving: bool,
    /// A stop came while leaving: stop when the leave finishes.
    stop_after_leave: bool,
    /// Reused buffers: events of one step, addresses that bounced.
    events: Vec<Event>,
    bounced: Vec<SocketAddr>,
}

/// How a driver reaches the network: a non-blocking send, and (where the OS
/// tells) which destinations bounced. Any `FnMut(SocketAddr, &[u8]) ->
/// io::Result<()>` is a transport that never learns of bounces.
pub trait Transport {
    /// Sends one datagram without waiting.
    fn send_to(&mut self, to: SocketAddr, payload: &[u8]) -> io::Result<()>;

    /// Appends the destinations whose datagrams bounced ("port unreachable"),
    /// as queued by the OS since the last call. The default knows of none.
    fn take_bounced(&mut self, out: &mut Vec<SocketAddr>) {
        let _ = out;
    }
}

impl<F: FnMut(SocketAddr, &[u8]) -> io::Result<()>> Transport for F {
    fn send_to(&mut self, to: SocketAddr, payload: &[u8]) -> io::Result<()> {
        self(to, payload)
    }
}

impl Driver {
    /// Creates the node for `options` on a socket bound at `bound` (the real
    /// address, after port 0 was resolved), joins the seeds (`options.seeds()` plus
    /// `resolved_hosts`, the addresses `options.seed_hosts()` resolved to), and
    /// returns the [`Control`] that queues commands through `send_command`.
    ///
    /// Seeds that are all this node's own address are not an error: the node starts
    /// standalone. `send_command` must not block; it returns the command back when
    /// the channel is closed.
    pub fn new(
        options: Options,
        bound: SocketAddr,
        resolved_hosts: &[SocketAddr],
        now: Instant,
        wall_clock_at_now: DateTime<Utc>,
        send_command: impl Fn(Command) -> Result<(), Command> + Send + Sync + 'static,
    ) -> Result<(Self, Control), StartError> {
        let advertised = options.advertised_addr(bound);
        let config = options.protocol_config().clone();
        let mut node = Node::new(
            config.clone(),
            options.name().clone(),
            advertised,
            now,
            wall_clock_at_now,
        )?;
        let mut seeds = options.seeds().to_vec();
        seeds.extend(resolved_hosts.iter().copied().map(Seed::Addr));
        if !seeds.is_empty() {
            match node.join(now, &seeds) {
                Ok(()) => {}
                Err(JoinError::NoSeeds) => info!("no seed but this node: starting standalone"),
                Err(error) => return Err(error.into()),
            }
        }
        let snapshot = Arc::new(Mutex::new(Snapshot {
            mode: node.mode(),
            rows: node.tracker().sorted_rows().into_iter().cloned().collect(),
            stats: node.stats().clone(),
            lagged: 0,
            io_errors: IoErrors::default(),
            running: true,
        }));
        let control = Control::new(
            options.name().clone(),
            bound,
            advertised,
            &config,
            options.subscriber_queue_capacity(),
            Arc::clone(&snapshot),
            Box::new(send_command),
        );
        info!(name = %options.name(), %bound, %advertised, "node started");
        let driver = Self {
            node,
            router: Router::default(),
            snapshot,
            rows_dirty: false,
            io_errors: IoErrors::default(),
            leaving: false,
            stop_after_leave: false,
            events: Vec::new(),
            bounced: Vec::new(),
        };
        Ok((driver, control))
    }

    /// The node, for inspection.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Handles one input, then sends every queued datagram through `transport`
    /// (errors are logged and the datagram is lost, as UDP allows), routes every
    /// event, publishes the snapshot, and says when to wake next.
    ///
    /// A receive or send failing with `ConnectionRefused` means the OS holds
    /// "port unreachable" reports for earlier datagrams: the driver then asks
    /// [`Transport::take_bounced`] which destinations bounced and hands each to
    /// [`Node::handle_unreachable`]. The refused send is tried once more (the
    /// error belonged to an earlier datagram).
    pub fn step(&mut self, now: Instant, input: Input<'_>, transport: &mut dyn Transport) -> Flow {
        let mut stop = false;
        let mut refused = matches!(
            &input,
            Input::RecvError(error) if error.kind() == io::ErrorKind::ConnectionRefused
        );
        match input {
            Input::Datagram { from, bytes } => self.node.handle_packet(now, from, bytes),
            Input::RecvError(error) => {
                self.io_errors.recv += 1;
                debug!(%error, "receive failed; the node goes on");
            }
            Input::Unreachable(addr) => self.node.handle_unreachable(now, addr),
            Input::Timeout => self.node.handle_timeout(now),
            Input::Command(Command(kind)) => stop = self.execute(now, kind),
            Input::Closed => {
                debug!(name = %self.node.name(), "every handle is gone: stopping");
                return Flow::Stop;
            }
        }
        refused |= self.flush(transport);
        // Hint probes send more; their own bounces come later. A few rounds at most.
        for _ in 0..4 {
            if !std::mem::take(&mut refused) {
                break;
            }
            let mut bounced = std::mem::take(&mut self.bounced);
            transport.take_bounced(&mut bounced);
            for addr in bounced.drain(..) {
                self.node.handle_unreachable(now, addr);
            }
            self.bounced = bounced;
            refused = self.flush(transport);
        }
        // Publish first, so a subscriber woken by an update reads a table and mode
        // that already include it.
        let mut events = std::mem::take(&mut self.events);
        events.extend(std::iter::from_fn(|| self.node.poll_event()));
        self.rows_dirty |= events.iter().any(|e| matches!(e, Event::Tracker(_)));
        self.publish();
        for event in events.drain(..) {
            stop |= self.route(event);
        }
        self.events = events;
        let _ = self.router.flush();
        self.publish();
        if stop {
            Flow::Stop
        } else {
            Flow::Continue {
                wake_at: self.node.poll_timeout(),
            }
        }
    }

    /// Sends every queued datagram. Returns whether the OS refused one because of
    /// an earlier bounce (then retried once).
    fn flush(&mut self, transport: &mut dyn Transport) -> bool {
        let mut refused = false;
        while let Some(transmit) = self.node.poll_transmit() {
            let (to, payload) = (transmit.to, transmit.payload);
            let mut result = transport.send_to(to, payload);
            if matches!(&result, Err(e) if e.kind() == io::ErrorKind::ConnectionRefused) {
                refused = true;
                result = transport.send_to(to, payload);
            }
            if let Err(error) = result {
                self.io_errors.send += 1;
                debug!(%to, %error, "send failed; the datagram is lost");
            }
        }
        refused
    }

    /// Applies a command; returns whether the task should stop now.
    fn execute(&mut self, now: Instant, command: CommandKind) -> bool {
        match command {
            CommandKind::NewNode { name, addr } => {
                if let Err(error) = self.node.new_node(now, name.clone(), addr) {
                    warn!(%name, %error, "new_node refused");
                }
            }
            CommandKind::Restore(rows) => self.node.restore(now, rows),
            CommandKind::Join(seeds) => match self.node.join(now, &seeds) {
                Ok(()) => self.leaving = false,
                Err(error) => warn!(%error, "join refused"),
            },
            CommandKind::Leave => match self.node.leave(now) {
                Ok(()) => self.leaving = true,
                Err(error) => debug!(%error, "leave refused"),
            },
            CommandKind::Subscribe { id, sink } => {
                self.router.insert(id, sink);
            }
            CommandKind::Unsubscribe(id) => {
                self.router.remove(id);
            }
            CommandKind::Stop if self.leaving => self.stop_after_leave = true,
            CommandKind::Stop => return true,
        }
        self.stop_after_leave && !self.leaving
    }

    /// Routes one event; returns whether the task should stop now.
    fn route(&mut self, event: Event) -> bool {
        match event {
            Event::NodeUpdate { node, status } => {
                self.router.broadcast(&Update::Node { node, status });
            }
            Event::Tracker(_) => {}
            Event::ModeChanged(mode) => info!(name = %self.node.name(), ?mode, "mode changed"),
            Event::LeaveFinished { spread } => {
                info!(name = %self.node.name(), spread, "leave finished");
                self.leaving = false;
                return self.stop_after_leave;
            }
            other => info!(name = %self.node.name(), event = ?other, "membership event"),
        }
        false
    }

    fn publish(&mut self) {
        let mut snapshot = lock(&self.snapshot);
        snapshot.mode = self.node.mode();
        snapshot.stats.clone_from(self.node.stats());
        snapshot.lagged = self.router.lagged_total();
        snapshot.io_errors = self.io_errors;
        if std::mem::take(&mut self.rows_dirty) {
            snapshot.rows = self
                .node
                .tracker()
                .sorted_rows()
                .into_iter()
                .cloned()
                .collect();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        lock(&self.snapshot).running = false;
        debug!(name = %self.node.name(), "node stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::event::Mode;
    use crate::name::NodeName;
    use crate::tracker::{Health, NodeStatus};

    struct Peer {
        driver: Driver,
        control: Control,
        commands: mpsc::Receiver<Command>,
        wake_at: Option<Instant>,
    }

    fn peer(name: &str, port: u16, seeds: &[u16], now: Instant) -> Peer {
        let mut options = Options::new(NodeName::new(name).expect("valid name"))
            .config(Config::for_cluster("driver-test"))
            .queue_capacity(4);
        for seed in seeds {
            options = options.seed(SocketAddr::from(([127, 0, 0, 1], *seed)));
        }
        let (tx, commands) = mpsc::channel();
        let send = move |command| tx.send(command).map_err(|e| e.0);
        let bound = SocketAddr::from(([127, 0, 0, 1], port));
        let (driver, control) =
            Driver::new(options, bound, &[], now, DateTime::UNIX_EPOCH, send).expect("valid");
        Peer {
            driver,
            control,
            commands,
            wake_at: Some(now),
        }
    }

    /// Runs the peers on a lossless in-memory network with virtual time until `until`.
    /// Returns the peers that stopped.
    fn pump(peers: &mut [Peer], start: Instant, until: Duration) -> Vec<usize> {
        let mut stopped = Vec::new();
        let mut now = start;
        let mut wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
        while now < start + until {
            for (i, peer) in peers.iter_mut().enumerate() {
                if stopped.contains(&i) {
                    continue;
                }
                let me = peer.control.advertised_addr();
                let mut inputs: Vec<Input<'_>> =
                    peer.commands.try_iter().map(Input::Command).collect();
                let mine: Vec<_> = wire
                    .iter()
                    .filter(|(_, to, _)| *to == me)
                    .cloned()
                    .collect();
                wire.retain(|(_, to, _)| *to != me);
                let datagrams: Vec<Input<'_>> = mine
                    .iter()
                    .map(|(from, _, bytes)| Input::Datagram { from: *from, bytes })
                    .collect();
                inputs.extend(datagrams);
                if peer.wake_at.is_some_and(|at| at <= now) {
                    inputs.push(Input::Timeout);
                }
                for input in inputs {
                    let mut send = |to: SocketAddr, payload: &[u8]| {
                        wire.push((me, to, payload.to_vec()));
                        Ok(())
                    };
                    match peer.driver.step(now, input, &mut send) {
                        Flow::Continue { wake_at } => peer.wake_at = wake_at,
                        Flow::Stop => {
                            stopped.push(i);
                            break;
                        }
                    }
                }
            }
            now += Duration::from_millis(10);
        }
        stopped
    }

    #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn two_drivers_join_publish_and_route_to_subscribers() {
        let start = origin();
        let mut peers = vec![peer("a", 7001, &[], start), peer("b", 7002, &[7001], start)];
        let (tx, rx) = mpsc::sync_channel(8);
        let sink = Sink::new(move |update| {
            tx.try_send(update).map_err(|e| match e {
                mpsc::TrySendError::Full(_) => SinkError::Full,
                mpsc::TrySendError::Disconnected(_) => SinkError::Closed,
            })
        });
        peers[0].control.attach(sink).expect("running");
        assert_eq!(peers[0].control.mode(), Mode::Standalone);
        assert!(pump(&mut peers, start, Duration::from_secs(3)).is_empty());
        for peer in &peers {
            assert_eq!(peer.control.mode(), Mode::Clustered);
            assert_eq!(peer.control.active_nodes().len(), 2);
        }
        let updates: Vec<Update> = rx.try_iter().collect();
        assert_eq!(
            updates,
            vec![Update::Node {
                node: NodeName::new("b").expect("valid name"),
                status: NodeStatus::Online
            }],
            "one update, about the other node only"
        );
        assert!(peers[1].control.stats().packets_received > 0);
    }

    #[test]
    fn stop_after_leave_waits_for_the_leave_to_spread() {
        let start = origin();
        let mut peers = vec![peer("a", 7001, &[], start), peer("b", 7002, &[7001], start)];
        assert!(pump(&mut peers, start, Duration::from_secs(2)).is_empty());
        peers[1].control.leave().expect("running");
        peers[1].control.stop().expect("running");
        let later = start + Duration::from_secs(2);
        let stopped = pump(&mut peers, later, Duration::from_secs(4));
        assert_eq!(stopped, vec![1]);
        let row = peers[0]
            .control
            .cluster_nodes()
            .into_iter()
            .find(|row| row.node.as_str() == "b")
            .expect("b is tracked");
        assert_eq!(row.health, Health::Left);
        assert_eq!(peers[0].control.mode(), Mode::Standalone);
    }

    #[test]
    fn closing_the_channel_stops_at_once_and_marks_the_control_stopped() {
        let start = origin();
        let mut a = peer("a", 7001, &[], start);
        let control = a.control.clone();
        let flow = a
            .driver
            .step(start, Input::Closed, &mut |_: SocketAddr, _: &[u8]| Ok(()));
        assert_eq!(flow, Flow::Stop);
        assert!(control.is_running());
        drop(a);
        assert!(!control.is_running());
    }

    #[test]
    fn send_and_receive_errors_do_not_stop_the_node() {
        let start = origin();
        let mut a = peer("a", 7001, &[7002], start);
        let mut refuse =
            |_: SocketAddr, _: &[u8]| Err(io::Error::from(io::ErrorKind::ConnectionRefused));
        let flow = a.driver.step(start, Input::Timeout, &mut refuse);
        assert!(matches!(flow, Flow::Continue { wake_at: Some(_) }));
        let error = io::Error::from(io::ErrorKind::ConnectionRefused);
        let flow = a.driver.step(start, Input::RecvError(error), &mut refuse);
        assert!(matches!(flow, Flow::Continue { .. }));
        let errors = a.control.io_errors();
        assert!(errors.send >= 1, "the join request failed to send");
        assert_eq!(errors.recv, 1);
    }

    /// Reports one bounce and refuses the first send, like a socket with
    /// `IP_RECVERR` after an ICMP "port unreachable".
    struct Bouncy {
        refuse_next: bool,
        bounced: Option<SocketAddr>,
        sent: usize,
    }

    impl Transport for Bouncy {
        fn send_to(&mut self, _: SocketAddr, _: &[u8]) -> io::Result<()> {
            if std::mem::take(&mut self.refuse_next) {
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            self.sent += 1;
            Ok(())
        }

        fn take_bounced(&mut self, out: &mut Vec<SocketAddr>) {
            out.extend(self.bounced.take());
        }
    }

    #[test]
    fn a_refused_send_is_retried_and_the_bounce_reaches_the_node() {
        let start = origin();
        let mut a = peer("a", 7001, &[7002], start);
        let gone: SocketAddr = "127.0.0.1:7999".parse().expect("valid");
        let mut transport = Bouncy {
            refuse_next: true,
            bounced: Some(gone),
            sent: 0,
        };
        let flow = a.driver.step(start, Input::Timeout, &mut transport);
        assert!(matches!(flow, Flow::Continue { .. }));
        assert_eq!(transport.sent, 1, "the join request went out on the retry");
        assert_eq!(a.control.io_errors().send, 0);
        // 7999 is no member's: the node counts the hint and ignores it.
        assert_eq!(
            a.driver
                .node()
                .stats()
                .dropped(crate::DropReason::UnknownAddress),
            1
        );
    }
}
