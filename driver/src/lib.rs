//! # beethoven-driver
//!
//! The runtime-independent half of every Beethoven runtime (`beethoven-tokio`,
//! `beethoven-smol`, or your own). One [`Driver`] per node owns the sans-IO
//! [`Node`](beethoven_core::Node) of `beethoven-core`, decides the commands its
//! [`Handle`] queues (each answered through a [`Reply`]), passes every event of
//! the node on to its subscribers in the node's order (streams and callbacks,
//! each with a bounded queue, lag markers and panic isolation), and publishes
//! the state the getters read. It also runs the node: [`Driver::spawn_thread`] gives it an OS
//! thread of its own, asleep in the OS's readiness wait (mio) until a command, a
//! datagram or its deadline, the cheapest way for a quiet node to wait. A runtime
//! crate adds only `start` and implements [`Runtime`] (somewhere to run blocking
//! work). Uses neither tokio nor smol.
//!
//! ## The loop
//!
//! Wait for the first of a command ([`Driver::next_command`]), a datagram, or the
//! deadline of the last [`Flow::Continue`]; hand it to [`Driver::step`]; repeat
//! until [`Flow::Stop`]. The node's thread ([`Driver::spawn_thread`]) keeps one
//! [`Commands`] stream ([`Driver::commands`]) across its loop, waits with the
//! deadline as its timeout, and on a readable socket calls [`Driver::receive`],
//! which steps once per queued datagram: a quiet node wakes only for its own
//! deadlines and datagrams, and allocates nothing per wakeup. A loop of your own
//! (inside another event loop, say) does the same; here with a plain
//! `std::net::UdpSocket` and nothing else:
//!
//! ```no_run
//! use std::io::ErrorKind;
//! use std::net::UdpSocket;
//! use std::sync::Arc;
//! use std::time::{Duration, Instant, SystemTime};
//!
//! use beethoven_driver::prelude::{NodeName, Options};
//! use beethoven_driver::{
//!     BlockingWork, Driver, Flow, Input, RECV_BUFFER_SIZE, Runtime, UdpTransport, report_bounces,
//! };
//!
//! /// Where callbacks run: here, a thread each.
//! #[derive(Debug)]
//! struct Threads;
//!
//! impl Runtime for Threads {
//!     fn spawn_blocking(&self, work: BlockingWork) {
//!         std::thread::spawn(work);
//!     }
//! }
//!
//! let options = Options::new(NodeName::new("api@127.0.0.1")?).bind("127.0.0.1:0".parse()?);
//! let socket = UdpSocket::bind(options.bind_addr())?;
//! report_bounces(&socket);
//! let now = Instant::now();
//! let wall_clock = SystemTime::now().into();
//! let (mut driver, handle) =
//!     Driver::new(options, socket.local_addr()?, &[], now, wall_clock, Arc::new(Threads))?;
//! // `handle` goes to the application: getters, commands, events, alert_me, shutdown.
//! let mut wake_at = Some(now);
//! let mut buf = vec![0u8; RECV_BUFFER_SIZE];
//! loop {
//!     // 1. wait for a command, a datagram or the deadline (the node's thread waits
//!     //    on the socket's readiness, a waker for commands and the deadline at once)
//!     let input = match driver.try_next_command() {
//!         Some(command) => command,
//!         None => {
//!             let wait = wake_at.map_or(Duration::MAX, |at| at.saturating_duration_since(Instant::now()));
//!             let poll = wait.clamp(Duration::from_millis(1), Duration::from_millis(20));
//!             socket.set_read_timeout(Some(poll))?;
//!             match socket.recv_from(&mut buf) {
//!                 Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
//!                     Input::Timeout // early is harmless
//!                 }
//!                 received => Input::received(received, &buf),
//!             }
//!         }
//!     };
//!     // 2. one step: the driver sends, routes updates, publishes, and says when to wake
//!     match driver.step(Instant::now(), input, &mut UdpTransport::new(&socket)) {
//!         Flow::Continue { wake_at: next } => wake_at = next,
//!         Flow::Stop => break,
//!     }
//! }
//! drop(handle);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A runtime crate's `start` is [`Driver::start_on_thread`] with its own
//! [`Runtime`]: it binds the socket and hands it to [`Driver::start`] (which
//! reads the bound address, turns on bounce reports and resolves `host:port`
//! seeds on the runtime's blocking threads), starts the node's thread
//! ([`Driver::spawn_thread`]) and returns the [`Handle`]. When the loop ends it
//! drops the socket before the driver: the driver's command channel then closes,
//! which is what [`Handle::shutdown`] waits for, so the port is free when it
//! returns.
//!
//! ## Addresses
//!
//! The socket binds [`Options::bind`]; port 0 picks a free port and
//! [`Handle::local_addr`] reports the real one. Other nodes must be told a
//! reachable address: [`Options::advertise`], or else the bound address, where a
//! wildcard IP (`0.0.0.0`, `::`) is replaced by loopback (`127.0.0.1:port`) — fine
//! for clusters on one host only. [`Handle::advertised_addr`] says what was chosen.
//!
//! ## Subscribers never block the node
//!
//! Every subscriber has a bounded queue ([`Options::queue_capacity`]); the node
//! only ever `try_send`s into it. A callback ([`Handle::alert_me`]) runs on a
//! blocking thread of the runtime, so a slow or panicking one (the panic is caught
//! and logged) stalls only itself. A subscriber that falls behind loses updates
//! and then receives [`Update::Lagged`] with how many it missed. The driver's
//! router is the one registry of subscribers; every subscription, callback or
//! stream, has an id of its own.
//!
//! ## One stream of events
//!
//! [`Handle::events`] carries every event of the node ([`Update`]: tracker
//! writes and deletes with the row before, node updates, tags, mode, join
//! results, name conflicts, the end of a leave), in the order the node emitted
//! them; [`Handle::events_with_current`] first replays the state at that moment
//! (every row, then the mode), so a reader misses nothing and hears nothing
//! twice. `subscribe`, `subscribe_tags` and `alert_me` are filtered views of
//! the same stream. The published snapshot serves the getters only.
//!
//! ## Stopping
//!
//! [`Handle::shutdown`] ends the node's thread and closes the socket (after a pending
//! `leave` has spread, at most `leave_timeout`); dropping the last `Handle` does
//! the same at once. Without `leave` the others see a crash and declare the node
//! offline after their failure detector runs out.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod command;
mod driver;
mod error;
mod handle;
mod options;
mod query;
mod router;
mod runtime;
mod snapshot;
mod thread;
mod transport;

pub use command::{Command, Reply};
pub use driver::{Commands, Driver, Flow, Input, MAX_DATAGRAMS_PER_WAKE, RECV_BUFFER_SIZE};
pub use error::CommandError;
pub use handle::{Changes, Handle, Updates};
pub use options::{DEFAULT_PORT, DEFAULT_QUEUE_CAPACITY, Options, StartError};
pub use query::{PendingQuery, QueryReply, QueryResponses};
pub use router::{NodeUpdate, SubscriberId, Update};
pub use runtime::{BlockingWork, Runtime};
pub use snapshot::IoErrors;
pub use transport::{Transport, UdpTransport, report_bounces};

/// The names an application of a runtime crate needs besides the runtime's own
/// `start`. `beethoven-tokio` and `beethoven-smol` both re-export exactly this, so
/// their APIs match item for item.
pub mod prelude {
    pub use crate::{
        Changes, CommandError, Handle, IoErrors, NodeUpdate, Options, PendingQuery, QueryReply,
        QueryResponses, Reply, StartError, SubscriberId, Update, Updates,
    };
    pub use beethoven_core::{
        Cidr, Config, DropReason, ForceLeaveError, Health, JoinError, JoinRefusal, Key, KeyError,
        KeyRing, LeaveError, Mode, NewNodeError, NodeName, NodeStatus, Op, Query, QueryConfig,
        QueryDone, QueryError, QueryFilter, QueryId, QueryRequest, QueryStats, QueryToken, Refusal,
        RespondError, Seed, SendEventError, Stats, TagQuery, Tags, TagsError, TrackerEvent,
        TrackerRow, UserEvent, UserEventConfig, UserEventId, timestamp,
    };
}
