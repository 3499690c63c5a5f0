//! Your own cluster logic in the simulator: an [`App`] runs beside each
//! simulated node, hears that node's events at the simulated moment the node
//! emits them, issues the node's commands and sets timers of its own; user
//! [`invariant`](crate::Sim::invariant)s check all nodes' app states.
//!
//! An app's state follows its node's fate. It is built by the factory given to
//! [`SimBuilder::app`](crate::SimBuilder::app) when the node's process starts
//! (formation, [`Fault::Start`](crate::Fault::Start), every restart), is frozen
//! while the node is paused (its timers fire when the pause ends, after the
//! node's backlog), and is dropped when the process ends (a crash, a finished
//! leave, a panic). A restarted node gets a fresh state from the factory, as a
//! restarted process would.
//!
//! Everything runs on the simulator's one event queue, so a run with apps
//! replays from its seed exactly as one without does.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use beethoven_core::{
    Event, KeyRing, Node, NodeName, Query, QueryToken, SendEventError, Tags, TagsError, TrackerRow,
};

/// Per-node application logic the simulator runs beside each node.
///
/// Only [`event`](App::event) is required. Callbacks get a [`Context`] to read
/// the node and to queue commands and timers; queued commands run right after
/// the callback returns, and their own events come back through `event`.
pub trait App: Any + Send {
    /// The node's process just started, before its first event.
    fn start(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// One event of this node: [`Event::NodeUpdate`] (another node went online
    /// or offline), [`Event::Tracker`] (a row was written or removed),
    /// [`Event::ModeChanged`], and the rest, in the order the node emitted them.
    fn event(&mut self, ctx: &mut Context<'_>, event: &Event);

    /// A timer set with [`Context::set_timer`] is due.
    fn timer(&mut self, ctx: &mut Context<'_>, timer: u64) {
        let _ = (ctx, timer);
    }

    /// An event this app sent with [`Context::send_event`] was refused by its
    /// node (`Node::send_event`'s error: a bad name or payload, or
    /// [`Busy`](SendEventError::Busy): the send rate or queue is at its
    /// limit); nothing was sent. Called a microsecond (of simulated time)
    /// after the callback that sent it, and not at all if the process ended
    /// meanwhile.
    fn send_refused(&mut self, ctx: &mut Context<'_>, name: &str, error: &SendEventError) {
        let _ = (ctx, name, error);
    }
}

/// What an [`App`] callback may read and do: the node (read-only), the
/// simulated time, and the node's own commands, which run when the callback
/// returns.
pub struct Context<'a> {
    index: usize,
    now: Duration,
    node: &'a Node,
    requests: &'a mut Vec<Request>,
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("index", &self.index)
            .field("now", &self.now)
            .field("node", self.node.name())
            .finish_non_exhaustive()
    }
}

/// A command an app queued, run after its callback.
#[derive(Debug)]
pub(crate) enum Request {
    Leave,
    Join(Vec<SocketAddr>),
    NewNode(NodeName, SocketAddr),
    Timer(Duration, u64),
    SetTags(Tags),
    Restore(Vec<TrackerRow>),
    SetKeyRing(Option<KeyRing>),
    Note(String),
    SendEvent(String, Vec<u8>),
    Query(Query),
    Respond(QueryToken, Vec<u8>),
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        index: usize,
        now: Duration,
        node: &'a Node,
        requests: &'a mut Vec<Request>,
    ) -> Self {
        Self {
            index,
            now,
            node,
            requests,
        }
    }

    /// The node's index in the simulator.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The node's name.
    pub fn name(&self) -> &NodeName {
        self.node.name()
    }

    /// Simulated time since the start of the run.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The node itself, to read: its tracker, mode, rows.
    pub fn node(&self) -> &Node {
        self.node
    }

    /// The node leaves the cluster gracefully (as [`Fault::Leave`](crate::Fault::Leave)
    /// does); its process, and this app, stop once the leave is reported finished.
    pub fn leave(&mut self) {
        self.requests.push(Request::Leave);
    }

    /// The node joins through these addresses (a row's `addr` is one).
    pub fn join(&mut self, seeds: impl IntoIterator<Item = SocketAddr>) {
        self.requests
            .push(Request::Join(seeds.into_iter().collect()));
    }

    /// The node adds a node it discovered (`Node::new_node`).
    pub fn new_node(&mut self, name: NodeName, addr: SocketAddr) {
        self.requests.push(Request::NewNode(name, addr));
    }

    /// The node replaces its tags (`Node::set_tags`), as the driver's
    /// `Handle::set_tags` does: the limits (`max_tags_size`, `max_tags`, a row
    /// that fits a datagram) are checked here, so a refusal is this call's
    /// `Err` and nothing changes. The change spreads like a
    /// [`Fault::SetTags`](crate::Fault::SetTags) (a tag-spread watch measures
    /// it), and a later restart of the node keeps the tags.
    pub fn set_tags(&mut self, tags: Tags) -> Result<(), TagsError> {
        let node = self.node;
        node.config().check_tags(node.name(), node.addr(), &tags)?;
        self.requests.push(Request::SetTags(tags));
        Ok(())
    }

    /// The node loads a saved table (`Node::restore`), as `Handle::restore` does.
    pub fn restore(&mut self, rows: Vec<TrackerRow>) {
        self.requests.push(Request::Restore(rows));
    }

    /// The node replaces its key ring, or turns sealing off with `None`
    /// (`Node::set_key_ring`), as `Handle::set_key_ring` does.
    pub fn set_key_ring(&mut self, ring: Option<KeyRing>) {
        self.requests.push(Request::SetKeyRing(ring));
    }

    /// The node sends a user event to every live member (`Node::send_event`);
    /// a refusal (a bad name or payload, too fast) comes back to
    /// [`App::send_refused`].
    /// [`DeliveryLog::send`](crate::delivery::DeliveryLog::send) sends one
    /// from a test and logs it for the delivery checker.
    pub fn send_event(&mut self, name: impl Into<String>, payload: impl Into<Vec<u8>>) {
        self.requests
            .push(Request::SendEvent(name.into(), payload.into()));
    }

    /// The node runs a query (`Node::query`); its acks, answers and end come
    /// back through [`App::event`] as `Event::QueryAck`, `Event::QueryResponse`
    /// and `Event::QueryDone`. A refusal (a bad name, payload, timeout or
    /// filter, too fast) is logged at debug level; run one through
    /// [`Sim::command`](crate::Sim::command) to see it.
    pub fn query(&mut self, query: Query) {
        self.requests.push(Request::Query(query));
    }

    /// The node answers a query it received (`Event::Query`) with `payload`
    /// (`Node::respond`); a refusal (an unknown or expired token, a payload
    /// too large) is logged at debug level.
    pub fn respond(&mut self, token: QueryToken, payload: impl Into<Vec<u8>>) {
        self.requests.push(Request::Respond(token, payload.into()));
    }

    /// Adds a line to the run's story (see [`crate::story`]), under this
    /// node's name at the current simulated time: what the app decided ("I
    /// lead now"), so a failure's timeline shows it beside what the node heard.
    pub fn note(&mut self, text: impl Into<String>) {
        self.requests.push(Request::Note(text.into()));
    }

    /// [`App::timer`] is called with `timer` after `after` of simulated time
    /// (at least a microsecond; later if the node is paused then; never if its
    /// process has ended). Timers are not cancelled: give each a token and
    /// ignore stale ones.
    pub fn set_timer(&mut self, after: Duration, timer: u64) {
        self.requests.push(Request::Timer(after, timer));
    }
}

type BuildApp = dyn Fn(usize, &NodeName) -> Box<dyn App> + Send + Sync;

/// Builds each node's app state when its process starts: given the node's
/// index and name.
#[derive(Clone)]
pub(crate) struct AppFactory(std::sync::Arc<BuildApp>);

impl AppFactory {
    pub(crate) fn new<A: App>(
        factory: impl Fn(usize, &NodeName) -> A + Send + Sync + 'static,
    ) -> Self {
        Self(std::sync::Arc::new(move |i, name| {
            Box::new(factory(i, name))
        }))
    }

    pub(crate) fn build(&self, i: usize, name: &NodeName) -> Box<dyn App> {
        (self.0)(i, name)
    }
}

impl fmt::Debug for AppFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AppFactory")
    }
}

/// One node's app state, as the simulator holds it.
pub(crate) struct Hosted(pub(crate) Box<dyn App>);

impl Hosted {
    pub(crate) fn downcast<A: App>(&self) -> Option<&A> {
        let any: &dyn Any = self.0.as_ref();
        any.downcast_ref()
    }
}

impl fmt::Debug for Hosted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hosted")
    }
}

/// When a user invariant is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum When {
    /// After every event the simulator processes (a datagram, a timer, a fault,
    /// an app timer). Thorough; costs one call per event.
    EveryEvent,
    /// Every period of simulated time, from when it is added.
    Every(Duration),
    /// Only when the test calls [`Sim::check_invariants`](crate::Sim::check_invariants):
    /// for properties that hold only at chosen moments (after calm, say). An
    /// invariant never checked fails [`Sim::ensure_clean`](crate::Sim::ensure_clean)
    /// ([`ViolationKind::Unchecked`](crate::ViolationKind::Unchecked)): a
    /// forgotten call cannot pass a test.
    Asked,
}

/// Why a user invariant does not hold: a message, and the node it is about if
/// it is about one (its index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The node the failure is about, if one.
    pub node: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl Failure {
    /// A failure about the cluster as a whole.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            node: None,
            message: message.into(),
        }
    }

    /// A failure about node `node`.
    pub fn at(node: usize, message: impl Into<String>) -> Self {
        Self {
            node: Some(node),
            message: message.into(),
        }
    }
}

type Check = Box<dyn Fn(&crate::Sim) -> Result<(), Failure> + Send + Sync>;

/// A registered user invariant.
pub(crate) struct UserInvariant {
    pub(crate) name: String,
    pub(crate) when: When,
    pub(crate) check: Check,
    /// Only the first failure of each invariant is recorded.
    pub(crate) failed: bool,
    /// Whether [`Sim::check_invariants`](crate::Sim::check_invariants) checked it.
    pub(crate) checked: bool,
}

impl fmt::Debug for UserInvariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserInvariant")
            .field("name", &self.name)
            .field("when", &self.when)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl UserInvariant {
    pub(crate) fn new(
        name: &str,
        when: When,
        check: impl Fn(&crate::Sim) -> Result<(), Failure> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.to_string(),
            when,
            check: Box::new(check),
            failed: false,
            checked: false,
        }
    }
}
