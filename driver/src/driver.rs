//! The step loop: one [`Driver`] per node owns the [`Node`], applies the commands
//! its [`Handle`] queues, routes notifications to subscribers, and publishes the
//! state the getters read.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use async_channel::{Receiver, TryRecvError};
use beethoven_core::chrono::{DateTime, Utc};
use beethoven_core::{Event, JoinError, Node, Op, Seed, TrackerEvent};
use socket2::SockRef;
use tracing::{debug, info, warn};

use crate::command::{Command, CommandKind, Reader};
use crate::handle::Handle;
use crate::options::{Options, StartError};
use crate::router::{Router, Update};
use crate::runtime::Runtime;
use crate::snapshot::{IoErrors, SharedSnapshot, Snapshot, lock};
use crate::transport::{AsSocket, Transport, report_bounces};

/// Room for the largest UDP payload: a runtime's receive buffer, so oversized
/// packets are seen (and counted) rather than cut.
pub const RECV_BUFFER_SIZE: usize = 65_536;

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
    /// A command from a [`Handle`].
    Command(Command),
    /// The command channel closed: every [`Handle`] was dropped.
    Closed,
}

impl<'a> Input<'a> {
    /// The input for what `recv_from` into `buf` returned: a datagram, or the error.
    pub fn received(result: io::Result<(usize, SocketAddr)>, buf: &'a [u8]) -> Self {
        match result {
            Ok((len, from)) => Input::Datagram {
                from,
                bytes: &buf[..len],
            },
            Err(error) => Input::RecvError(error),
        }
    }
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
    /// End the task: drop the socket, then the driver (whose command channel then
    /// closes, which tells [`Handle::shutdown`] the port is free).
    Stop,
}

/// One node and everything around it that is not IO: commands, subscriber
/// routing, the published snapshot. See the crate docs for the loop.
#[derive(Debug)]
pub struct Driver {
    node: Node,
    router: Router,
    snapshot: SharedSnapshot,
    commands: Receiver<Command>,
    runtime: Arc<dyn Runtime>,
    rows_dirty: bool,
    io_errors: IoErrors,
    /// The ticket of the last `join` or `leave` applied, published for the handles.
    applied: u64,
    /// `LeaveFinished` came for the node's latest leave. Whether the node has left
    /// is the node's own fact ([`Node::has_left`]); a leave still spreads while it
    /// has left and this is false.
    leave_finished: bool,
    /// A stop came while the leave was spreading: stop when it finishes.
    stop_after_leave: bool,
    /// Reused buffers: events of one step, addresses that bounced.
    events: Vec<Event>,
    bounced: Vec<SocketAddr>,
}

impl Driver {
    /// What a runtime's `start` calls with the result of binding its UDP socket at
    /// [`Options::bind_addr`]: reads the bound address, asks the OS to report
    /// bounces ([`report_bounces`]), resolves the `host:port` seeds on a blocking
    /// thread of `runtime`, and creates the driver with [`Driver::new`] at the
    /// current time. Returns the socket too, for the runtime's task.
    pub async fn start<S: AsSocket>(
        options: Options,
        socket: io::Result<S>,
        runtime: Arc<dyn Runtime>,
    ) -> Result<(Self, Handle, S), StartError> {
        let addr = options.bind_addr();
        let bind_error = |source| StartError::Bind { addr, source };
        let socket = socket.map_err(bind_error)?;
        let bound = SockRef::from(&socket).local_addr().map_err(bind_error)?;
        let not_ip = || bind_error(io::Error::other("not an IP socket"));
        let bound = bound.as_socket().ok_or_else(not_ip)?;
        report_bounces(&socket);
        let resolved = options.resolve_seed_hosts(runtime.as_ref()).await?;
        let now = Instant::now();
        let wall_clock = SystemTime::now().into();
        let (driver, handle) = Self::new(options, bound, &resolved, now, wall_clock, runtime)?;
        Ok((driver, handle, socket))
    }

    /// Creates the node for `options` on a socket bound at `bound` (the real
    /// address, after port 0 was resolved), joins the seeds (`options.seeds()` plus
    /// `resolved_hosts`, the addresses `options.seed_hosts()` resolved to), and
    /// returns the [`Handle`] the application keeps. Reads no clock.
    ///
    /// Seeds that are all this node's own address are not an error: the node starts
    /// standalone.
    pub fn new(
        options: Options,
        bound: SocketAddr,
        resolved_hosts: &[SocketAddr],
        now: Instant,
        wall_clock_at_now: DateTime<Utc>,
        runtime: Arc<dyn Runtime>,
    ) -> Result<(Self, Handle), StartError> {
        let advertised = options.advertised_addr(bound);
        let config = options.protocol_config().clone();
        let name = options.name().clone();
        let tags = options.initial_tags();
        config.check_tags(&name, advertised, tags)?;
        let mut node = Node::new(config, name, advertised, now, wall_clock_at_now)?;
        // Checked above, and a new node holds its name: nothing left to refuse.
        if !tags.is_empty()
            && let Err(error) = node.set_tags(now, tags.clone())
        {
            warn!(%error, "starting tags refused");
        }
        let mut seeds = options.seeds().to_vec();
        seeds.extend(resolved_hosts.iter().copied().map(Seed::Addr));
        if !seeds.is_empty() {
            match node.join(now, &seeds) {
                Ok(()) => {}
                Err(JoinError::NoSeeds) => info!("no seed but this node: starting standalone"),
                Err(error) => return Err(error.into()),
            }
        }
        let snapshot = Arc::new(Mutex::new(Snapshot::of(&node)));
        let (sender, commands) = async_channel::unbounded();
        let handle = Handle::new(&options, bound, Arc::clone(&snapshot), sender);
        info!(name = %node.name(), %bound, %advertised, "node started");
        let driver = Self {
            node,
            router: Router::default(),
            snapshot,
            commands,
            runtime,
            rows_dirty: false,
            io_errors: IoErrors::default(),
            applied: 0,
            leave_finished: false,
            stop_after_leave: false,
            events: Vec::new(),
            bounced: Vec::new(),
        };
        Ok((driver, handle))
    }

    /// The node, for inspection.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Waits for the next command from a [`Handle`]; [`Input::Closed`] once every
    /// handle is gone. A runtime's task selects over this, the socket and the timer.
    pub async fn next_command(&self) -> Input<'static> {
        self.commands
            .recv()
            .await
            .map_or(Input::Closed, Input::Command)
    }

    /// The next command if one is queued, without waiting (for a loop that is not
    /// async).
    pub fn try_next_command(&self) -> Option<Input<'static>> {
        match self.commands.try_recv() {
            Ok(command) => Some(Input::Command(command)),
            Err(TryRecvError::Closed) => Some(Input::Closed),
            Err(TryRecvError::Empty) => None,
        }
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
            CommandKind::Join { seeds, ticket } => {
                self.applied = ticket;
                if let Err(error) = self.node.join(now, &seeds) {
                    warn!(%error, "join refused");
                }
            }
            CommandKind::Leave { ticket } => {
                self.applied = ticket;
                match self.node.leave(now) {
                    Ok(()) => self.leave_finished = false,
                    Err(error) => debug!(%error, "leave refused"),
                }
            }
            CommandKind::SetTags(tags) => {
                if let Err(error) = self.node.set_tags(now, tags) {
                    warn!(%error, "set_tags refused");
                }
            }
            CommandKind::Subscribe {
                id,
                queue,
                reader,
                interest,
            } => {
                if !self.router.insert(id, queue, interest) {
                    debug!(?id, "subscribed already: one subscription");
                } else if let Some(Reader(work)) = reader {
                    self.runtime.spawn_blocking(work);
                }
            }
            CommandKind::Unsubscribe(id) => {
                self.router.remove(id);
            }
            CommandKind::Stop if self.leave_spreading() => self.stop_after_leave = true,
            CommandKind::Stop => return true,
        }
        self.stop_after_leave && !self.leave_spreading()
    }

    /// The node has left and its announcement is still going out.
    fn leave_spreading(&self) -> bool {
        self.node.has_left() && !self.leave_finished
    }

    /// Routes one event; returns whether the task should stop now.
    fn route(&mut self, event: Event) -> bool {
        match event {
            Event::NodeUpdate { node, status } => {
                self.router.broadcast(&Update::Node { node, status });
            }
            Event::Tracker(TrackerEvent {
                op: Op::Write,
                new_row,
                old_row,
            }) if new_row.node != *self.node.name()
                && old_row
                    .as_ref()
                    .map_or(!new_row.tags.is_empty(), |old| old.tags != new_row.tags) =>
            {
                self.router.broadcast(&Update::Tags {
                    node: new_row.node,
                    tags: new_row.tags,
                });
            }
            Event::Tracker(_) => {}
            Event::ModeChanged(mode) => info!(name = %self.node.name(), ?mode, "mode changed"),
            Event::NameConflict { node, addrs } => {
                self.router.broadcast(&Update::NameConflict { node, addrs });
            }
            Event::NameLost { winner } => {
                // Logged by the node already; from now on the handle refuses
                // commands with `CommandError::NameTaken`.
                debug!(name = %self.node.name(), %winner, "name lost");
            }
            Event::LeaveFinished { spread } => {
                info!(name = %self.node.name(), spread, "leave finished");
                self.leave_finished = true;
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
        snapshot.left = self.node.has_left();
        snapshot.applied = self.applied;
        snapshot.name_taken_by = self.node.name_taken_by();
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
mod tests;
