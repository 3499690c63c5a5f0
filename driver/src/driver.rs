//! The step loop: one [`Driver`] per node owns the [`Node`], applies the commands
//! its [`Handle`] queues, routes notifications to subscribers, and publishes the
//! state the getters read.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use async_channel::{Receiver, TryRecvError, WeakSender};
use beethoven_core::chrono::{DateTime, Utc};
use beethoven_core::{Event, JoinError, Node, Seed};
use futures_core::Stream;
use socket2::SockRef;
use tracing::{debug, info, warn};

use crate::command::{Answer, Command, CommandKind, Order, Reader};
use crate::error::CommandError;
use crate::handle::Handle;
use crate::options::{Options, StartError, resolve_each};
use crate::query::QuerySinks;
use crate::router::{Router, Update};
use crate::runtime::Runtime;
use crate::snapshot::{IoErrors, Published, SharedSnapshot, Snapshot};
use crate::transport::{AsSocket, Transport, report_bounces};

/// Room for the largest UDP payload: a runtime's receive buffer, so oversized
/// packets are seen (and counted) rather than cut.
pub const RECV_BUFFER_SIZE: usize = 65_536;

/// Most datagrams [`Driver::receive`] reads in one go, so a flood cannot keep
/// the loop from its commands and its deadline.
pub const MAX_DATAGRAMS_PER_WAKE: usize = 64;

/// What woke the node's loop.
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
    /// End the loop: drop the socket, then the driver (whose command channel then
    /// closes, which tells [`Handle::shutdown`] the port is free).
    Stop,
}

/// The commands a driver's handles queue (see [`Driver::commands`]).
#[derive(Debug)]
pub struct Commands(Pin<Box<Receiver<Command>>>);

impl Commands {
    /// Waits for the next command; [`Input::Closed`] once every [`Handle`] is gone.
    /// Dropping the future before it is ready loses nothing.
    pub async fn next(&mut self) -> Input<'static> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The next command if one is queued, else `Pending`, and `cx`'s waker is woken
    /// when one is (for a loop that is not async: see the node's thread). Keeps its
    /// registration with the channel, so polling again allocates nothing.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Input<'static>> {
        self.0
            .as_mut()
            .poll_next(cx)
            .map(|command| command.map_or(Input::Closed, Input::Command))
    }
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
    /// Answers to the commands of this step, sent once its events are routed
    /// and its state published: a caller woken by one sees both.
    answers: Vec<(Answer, Result<(), CommandError>)>,
    /// `LeaveFinished` came for the node's latest leave. Whether the node has left
    /// is the node's own fact ([`Node::has_left`]); a leave still spreads while it
    /// has left and this is false.
    leave_finished: bool,
    /// A stop came while the leave was spreading: stop when it finishes.
    stop_after_leave: bool,
    /// Reused buffers: events of one step, addresses that bounced.
    events: Vec<Event>,
    bounced: Vec<SocketAddr>,
    /// The seeds given as addresses or ranges, and as `host:port` names: the
    /// names are resolved again every `rejoin_interval` for the seed re-probe.
    seeds: Vec<Seed>,
    seed_hosts: Vec<String>,
    resolve_at: Option<Instant>,
    /// Where resolved names come back, as a command. Weak, so that the channel
    /// still closes when every handle is gone.
    resolved: WeakSender<Command>,
    /// Where this node's running queries' replies go.
    queries: QuerySinks,
}

impl Driver {
    /// What a runtime's `start` calls with the result of binding its UDP socket at
    /// [`Options::bind_addr`]: reads the bound address, asks the OS to report
    /// bounces ([`report_bounces`]), resolves the `host:port` seeds on a blocking
    /// thread of `runtime`, and creates the driver with [`Driver::new`] at the
    /// current time. Returns the socket too, for the node's thread ([`Driver::spawn_thread`]).
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
        let seed_hosts = options.seed_hosts().to_vec();
        let resolve_at =
            (!seed_hosts.is_empty()).then(|| now + options.protocol_config().rejoin_interval);
        if !seeds.is_empty() {
            match node.join(now, &seeds) {
                Ok(()) => {}
                Err(JoinError::NoSeeds) => info!("no seed but this node: starting standalone"),
                Err(error) => return Err(error.into()),
            }
        }
        let snapshot = Arc::new(Published::new(Snapshot::of(&node)));
        let (sender, commands) = async_channel::unbounded();
        let resolved = sender.downgrade();
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
            answers: Vec::new(),
            leave_finished: false,
            stop_after_leave: false,
            events: Vec::new(),
            bounced: Vec::new(),
            seeds: options.seeds().to_vec(),
            seed_hosts,
            resolve_at,
            resolved,
            queries: QuerySinks::default(),
        };
        Ok((driver, handle))
    }

    /// The node, for inspection.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Waits for the next command from a [`Handle`]; [`Input::Closed`] once every
    /// handle is gone. A loop waits for this, the socket and the deadline at once.
    pub async fn next_command(&self) -> Input<'static> {
        self.commands
            .recv()
            .await
            .map_or(Input::Closed, Input::Command)
    }

    /// The commands of this driver's handles as a [`Commands`] stream, for a
    /// loop to keep across its loop instead of calling
    /// [`next_command`](Driver::next_command) each time: it keeps its registration
    /// with the channel between waits, so a wakeup allocates nothing. Drop it with
    /// the driver, after the socket.
    pub fn commands(&self) -> Commands {
        Commands(Box::pin(self.commands.clone()))
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
        self.resolve_if_due(now);
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
        stop |= self.deliver_events();
        for (answer, decision) in self.answers.drain(..) {
            answer.send(decision);
        }
        if stop {
            Flow::Stop
        } else {
            Flow::Continue {
                wake_at: self.wake_at(),
            }
        }
    }

    /// The earlier of the node's next deadline and the next seed resolution.
    fn wake_at(&self) -> Option<Instant> {
        match (self.node.poll_timeout(), self.resolve_at) {
            (Some(node), Some(resolve)) => Some(node.min(resolve)),
            (node, resolve) => node.or(resolve),
        }
    }

    /// Every `rejoin_interval`, resolves the `host:port` seeds again on a
    /// blocking thread; the addresses come back as a command.
    fn resolve_if_due(&mut self, now: Instant) {
        let Some(at) = self.resolve_at else {
            return;
        };
        if now < at {
            return;
        }
        self.resolve_at = Some(now + self.node.config().rejoin_interval);
        let hosts = self.seed_hosts.clone();
        let back = self.resolved.clone();
        self.runtime.spawn_blocking(Box::new(move || {
            let addrs = resolve_each(&hosts);
            if let Some(commands) = back.upgrade() {
                let _ = commands.try_send(Command(CommandKind::SeedsResolved(addrs)));
            }
        }));
    }

    /// Steps the node with every datagram the socket holds, read with `recv` (the
    /// runtime's non-blocking `recv_from`) into `buf`, until it would block or
    /// [`MAX_DATAGRAMS_PER_WAKE`] were read. What a runtime calls when its socket is
    /// readable: one wakeup then serves every datagram that arrived meanwhile.
    pub fn receive(
        &mut self,
        buf: &mut [u8],
        mut recv: impl FnMut(&mut [u8]) -> io::Result<(usize, SocketAddr)>,
        transport: &mut dyn Transport,
    ) -> Flow {
        for _ in 0..MAX_DATAGRAMS_PER_WAKE {
            let received = match recv(buf) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                received => received,
            };
            if self.step(Instant::now(), Input::received(received, buf), transport) == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue {
            wake_at: self.wake_at(),
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

    /// Routes every event the node emitted since the last call, in its order,
    /// after publishing the state they led to (so a subscriber woken by an
    /// update reads a table and mode that already include it). Returns whether
    /// the loop should stop now (a stop waited for the leave to finish).
    fn deliver_events(&mut self) -> bool {
        let mut stop = false;
        let mut events = std::mem::take(&mut self.events);
        events.extend(std::iter::from_fn(|| self.node.poll_event()));
        self.rows_dirty |= events.iter().any(|e| matches!(e, Event::Tracker(_)));
        self.publish();
        let lagged = self.router.lagged_total();
        for event in events.drain(..) {
            stop |= self.route(event);
        }
        self.events = events;
        let _ = self.router.flush();
        if self.router.lagged_total() != lagged {
            self.publish();
        }
        stop
    }

    /// Applies a command; returns whether the loop should stop now.
    fn execute(&mut self, now: Instant, command: CommandKind) -> bool {
        match command {
            CommandKind::Decide { order, answer } => {
                let decision = self.decide(now, order);
                if let Err(error) = &decision {
                    debug!(%error, "command refused");
                }
                self.answers.push((answer, decision));
            }
            CommandKind::Query { query, answer } => {
                let started = match self.node.name_taken_by() {
                    Some(by) => Err(CommandError::NameTaken { by }),
                    None => self.node.query(now, query).map_err(CommandError::from),
                };
                let decision = started.map(|id| self.queries.open(id));
                if let Err(error) = &decision {
                    debug!(%error, "query refused");
                }
                // The caller may have stopped waiting.
                let _ = answer.try_send(decision);
            }
            CommandKind::Subscribe {
                id,
                queue,
                reader,
                interest,
                replay,
            } => {
                // What happened before the subscription goes to the subscribers
                // before it, so the replay below is not told again.
                let mut stop = self.deliver_events();
                if self.router.insert(id, queue, interest) {
                    if replay {
                        let own = self.node.name();
                        let rows = self.node.tracker().sorted_rows();
                        let lost = self
                            .node
                            .name_taken_by()
                            .map(|winner| (self.node.addr(), winner));
                        for update in Update::replay(own, rows, self.node.mode(), lost) {
                            if self.router.deliver(id, update).is_err() {
                                break; // the subscriber is gone already
                            }
                        }
                    }
                    if let Some(Reader(work)) = reader {
                        self.runtime.spawn_blocking(work);
                    }
                }
                stop |= self.stop_after_leave && !self.leave_spreading();
                return stop;
            }
            CommandKind::SeedsResolved(addrs) => {
                let mut seeds = self.seeds.clone();
                seeds.extend(addrs.into_iter().map(Seed::Addr));
                if let Err(error) = self.node.refresh_seeds(now, &seeds) {
                    debug!(%error, "no seed address to re-probe");
                }
            }
            // The step's delivery retries the markers.
            CommandKind::Flush => {}
            CommandKind::Stop if self.leave_spreading() => self.stop_after_leave = true,
            CommandKind::Stop => return true,
        }
        self.stop_after_leave && !self.leave_spreading()
    }

    /// The node has left and its announcement is still going out.
    fn leave_spreading(&self) -> bool {
        self.node.has_left() && !self.leave_finished
    }

    /// The node's decision on one command. A process that lost its name takes
    /// none but `unsubscribe`: that is checked here, once, for every command.
    fn decide(&mut self, now: Instant, order: Order) -> Result<(), CommandError> {
        if let Some(by) = self.node.name_taken_by()
            && !matches!(order, Order::Unsubscribe(_))
        {
            return Err(CommandError::NameTaken { by });
        }
        match order {
            Order::NewNode { name, addr } => self.node.new_node(now, name, addr)?,
            Order::Restore(rows) => self.node.restore(now, rows),
            Order::Join(seeds) => self.node.join(now, &seeds)?,
            Order::Leave => {
                self.node.leave(now)?;
                self.leave_finished = false;
            }
            Order::SetTags(tags) => self.node.set_tags(now, tags)?,
            Order::SendEvent { name, payload } => {
                self.node.send_event(now, &name, &payload)?;
            }
            Order::Respond { token, payload } => self.node.respond(now, token, &payload)?,
            Order::SetKeyRing(ring) => {
                let keys = ring.as_ref().map_or(0, |r| r.keys().count());
                info!(name = %self.node.name(), keys, "key ring replaced");
                self.node.set_key_ring(ring);
            }
            Order::ForceLeave { name, prune } => self.node.force_leave(now, &name, prune)?,
            Order::Unsubscribe(id) => {
                self.router.remove(id);
            }
        }
        Ok(())
    }

    /// Routes one event, logs what an operator should see, and returns whether
    /// the loop should stop now.
    fn route(&mut self, event: Event) -> bool {
        let Some(event) = self.queries.route(event) else {
            return false;
        };
        let name = self.node.name().clone();
        let mut stop = false;
        match &event {
            Event::ModeChanged(mode) => info!(%name, %mode, "mode changed"),
            Event::Joined { seed } => info!(%name, %seed, "joined"),
            // A warning for whoever reads the stream (the agent's names its seeds).
            Event::JoinFailed { attempts, refused } if refused.is_empty() => info!(
                %name,
                attempts,
                "join failed: no seed answered; running standalone and re-probing the seeds slowly"
            ),
            Event::JoinFailed { attempts, refused } => {
                for refusal in refused {
                    info!(%name, attempts, seed = %refusal.seed, reason = %refusal.reason, "join failed: {refusal}");
                }
            }
            Event::LeaveFinished { spread } => {
                info!(%name, spread, "leave finished");
                self.leave_finished = true;
                stop = self.stop_after_leave;
            }
            // Logged by the node already.
            _ => {}
        }
        for update in Update::of_event(&name, event) {
            self.router.broadcast(update);
        }
        stop
    }

    /// Publishes the counters, and what readers see when it changed: then the
    /// version is raised and the watchers woken. The rows are copied only when an
    /// event said they changed.
    fn publish(&mut self) {
        let mut snapshot = self.snapshot.lock();
        snapshot.stats.clone_from(self.node.stats());
        snapshot.lagged = self.router.lagged_total();
        snapshot.io_errors = self.io_errors;
        let seen = (
            self.node.mode(),
            self.node.has_left(),
            self.node.name_taken_by(),
        );
        let rows_dirty = std::mem::take(&mut self.rows_dirty);
        let changed = rows_dirty || seen != (snapshot.mode, snapshot.left, snapshot.name_taken_by);
        if !changed {
            return;
        }
        (snapshot.mode, snapshot.left, snapshot.name_taken_by) = seen;
        if rows_dirty {
            let rows = self.node.tracker().sorted_rows().into_iter().cloned();
            snapshot.rows.clear();
            snapshot.rows.extend(rows);
        }
        snapshot.version += 1;
        drop(snapshot);
        self.snapshot.notify_changed();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let mut snapshot = self.snapshot.lock();
        snapshot.running = false;
        snapshot.version += 1;
        drop(snapshot);
        self.snapshot.notify_changed();
        debug!(name = %self.node.name(), "node stopped");
    }
}

#[cfg(test)]
mod tests;
