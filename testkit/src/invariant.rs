//! Invariant checkers: reusable functions and small incremental checkers that
//! return a typed [`Violation`] with context.
//!
//! The simulator runs the incremental ones on every state change (every drained
//! event, every node it drives); the whole-cluster ones ([`check_converged`],
//! [`check_complete`], [`check_live`]) at the liveness gate. Each can also be
//! fed a recorded history, which is how the self-tests at the bottom check that
//! they catch deliberately broken ones.
//!
//! What counts as healthy for the accuracy invariant (and why a partitioned,
//! paused or seconds-late member is not, while a lossy one is) is defined in
//! [`accuracy`].

pub mod accuracy;

pub use accuracy::{Reachability, Standing};

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use beethoven_core::{
    Config, Event, Health, Mode, Node, NodeName, NodeStatus, Op, TrackerEvent, TrackerRow,
    retransmit_limit, suspicion_bounds,
};
use serde::Serialize;

use crate::story::Story;

/// An invariant that did not hold, when, and the context to debug it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("at {}: {kind}", fmt_at(*at))]
pub struct Violation {
    /// Simulated time since the start of the run.
    pub at: Duration,
    /// What went wrong.
    pub kind: ViolationKind,
}

pub(crate) fn debug_string<T: fmt::Debug, S: serde::Serializer>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{value:?}"))
}

fn fmt_at(at: Duration) -> String {
    format!("{:.3}s", at.as_secs_f64())
}

/// The invariants, each with the facts that broke it. Node names are strings so
/// that violations serialize and print as they are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum ViolationKind {
    /// A call into the core panicked.
    Panic {
        /// The node whose call panicked.
        node: String,
        /// The panic message.
        message: String,
    },
    /// A node was driven in a loop without time moving (its deadline stayed in the past).
    Livelock {
        /// The node.
        node: String,
    },
    /// A tracker transition was not followed by its notification.
    MissingNotification {
        /// The node that should have notified.
        node: String,
        /// The node the notification is about.
        about: String,
        /// The status that should have been notified.
        status: NodeStatus,
    },
    /// A notification without a matching tracker transition, or out of order.
    UnexpectedNotification {
        /// The node that notified.
        node: String,
        /// The node the notification is about.
        about: String,
        /// The notified status.
        status: NodeStatus,
        /// What was expected instead, if anything.
        expected: Option<(String, NodeStatus)>,
    },
    /// A node reported a node update about itself.
    NotifiedAboutSelf {
        /// The node.
        node: String,
    },
    /// A node's mode disagrees with its tracker.
    ModeMismatch {
        /// The node.
        node: String,
        /// The mode it reports.
        #[serde(serialize_with = "debug_string")]
        mode: Mode,
        /// Other nodes online in its tracker.
        others_online: usize,
        /// Whether it has left.
        left: bool,
    },
    /// A healthy node was declared offline by a node it was connected to (see
    /// [`accuracy`] for the definition of healthy).
    FalseOffline {
        /// Who wrote it offline.
        observer: String,
        /// The healthy node.
        target: String,
        /// The health written.
        health: Health,
        /// The incarnation written.
        incarnation: u64,
    },
    /// Live, connected nodes still hold different trackers after the bound.
    NotConverged {
        /// How long the cluster was given.
        bound: Duration,
        /// A node whose tracker differs from the first one's.
        node: String,
        /// The first differing row, as each of the two sees it.
        detail: String,
    },
    /// A crashed or departed node is still online somewhere.
    Incomplete {
        /// Who still sees it online.
        observer: String,
        /// The node that is down.
        target: String,
    },
    /// A live node is missing or offline in another live node's tracker.
    NotLive {
        /// Who does not see it online.
        observer: String,
        /// The live node.
        target: String,
    },
    /// A user invariant over the apps' states (see [`Sim::invariant`](crate::Sim::invariant))
    /// did not hold.
    App {
        /// The invariant's name.
        invariant: String,
        /// The node it is about, if one.
        node: Option<String>,
        /// What the check said.
        message: String,
    },
    /// A user invariant checked only when asked ([`When::Asked`](crate::When::Asked))
    /// was never checked ([`Sim::check_invariants`](crate::Sim::check_invariants))
    /// by the time the run was judged ([`Sim::ensure_clean`](crate::Sim::ensure_clean)).
    Unchecked {
        /// The invariant's name.
        invariant: String,
    },
}

impl ViolationKind {
    /// The nodes the violation names (observer first where there are two);
    /// empty when it is about the cluster as a whole.
    pub fn nodes(&self) -> Vec<&str> {
        match self {
            Self::Panic { node, .. }
            | Self::Livelock { node }
            | Self::NotifiedAboutSelf { node }
            | Self::ModeMismatch { node, .. }
            | Self::NotConverged { node, .. } => vec![node],
            Self::MissingNotification { node, about, .. }
            | Self::UnexpectedNotification { node, about, .. } => vec![node, about],
            Self::FalseOffline {
                observer, target, ..
            }
            | Self::Incomplete { observer, target }
            | Self::NotLive { observer, target } => vec![observer, target],
            Self::App { node, .. } => node.iter().map(String::as_str).collect(),
            Self::Unchecked { .. } => Vec::new(),
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Panic { node, message } => write!(f, "{node} panicked: {message}"),
            Self::Livelock { node } => {
                write!(f, "{node} livelocked: its deadline stays in the past")
            }
            Self::MissingNotification {
                node,
                about,
                status,
            } => {
                write!(f, "{node} did not notify that {about} is {status:?}")
            }
            Self::UnexpectedNotification {
                node,
                about,
                status,
                expected,
            } => write!(
                f,
                "{node} notified {about} {status:?} without a matching transition (expected {expected:?})"
            ),
            Self::NotifiedAboutSelf { node } => write!(f, "{node} notified about itself"),
            Self::ModeMismatch {
                node,
                mode,
                others_online,
                left,
            } => write!(
                f,
                "{node} is {mode:?} with {others_online} other nodes online (left: {left})"
            ),
            Self::FalseOffline {
                observer,
                target,
                health,
                incarnation,
            } => write!(
                f,
                "{observer} wrote healthy {target} {health:?} at incarnation {incarnation}"
            ),
            Self::NotConverged {
                bound,
                node,
                detail,
            } => write!(f, "trackers differ after {bound:?}: {node} holds {detail}"),
            Self::Incomplete { observer, target } => {
                write!(f, "{observer} still sees down node {target} online")
            }
            Self::NotLive { observer, target } => {
                write!(f, "{observer} does not see live node {target} online")
            }
            Self::App {
                invariant,
                node: Some(node),
                message,
            } => write!(f, "app invariant `{invariant}` failed at {node}: {message}"),
            Self::App {
                invariant,
                node: None,
                message,
            } => write!(f, "app invariant `{invariant}` failed: {message}"),
            Self::Unchecked { invariant } => write!(
                f,
                "app invariant `{invariant}` (When::Asked) was never checked: \
                 call `sim.check_invariants()` where it must hold"
            ),
        }
    }
}

/// A run that broke invariants: the seed that replays it, how many violations
/// there were, those kept, the story of the first, and the scenario to replay.
/// Returned by [`Sim::ensure_clean`](crate::Sim::ensure_clean); `?` turns it
/// into a failed proptest case. Its `Display` is the whole report:
///
/// ```text
/// seed 3: 1 violation(s)
///   at 21.337s: app invariant `one leader after calm` failed at node-1: names node-0
/// timeline of node-1, up to 21.337s:
///       9.842s  fault Fault::Crash { node: 0, host: HostFate::Vanishes }
///      11.259s  node-1 hears node-0 is offline
///      ...
/// replay in a test: Scenario::new(4).seed(3).fault_at(ms(1432), Fault::Crash { node: 0, host: HostFate::Vanishes })
/// replay the run:   beethoven-sim --case 'Scenario::new(4).seed(3)...'
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.report())]
#[non_exhaustive]
pub struct RunFailure {
    /// The simulator's seed.
    pub seed: u64,
    /// Violations found (kept or not).
    pub count: u64,
    /// The violations kept, in order.
    pub violations: Vec<Violation>,
    /// The first violation's story: up to it, trimmed to the nodes it names
    /// (see [`crate::story`]).
    pub story: Option<Box<Story>>,
    /// The scenario the run was built from, as the Rust that rebuilds it
    /// (set by [`Scenario::builder`](crate::Scenario::builder)).
    pub case: Option<String>,
}

impl RunFailure {
    fn report(&self) -> String {
        let mut text = format!("seed {}: {} violation(s)", self.seed, self.count);
        for violation in self.violations.iter().take(10) {
            text.push_str(&format!("\n  {violation}"));
        }
        if let Some(story) = &self.story {
            text.push_str(&format!("\n{story}"));
        }
        if let Some(case) = &self.case {
            text.push_str(&format!("\nreplay in a test: {case}"));
            text.push_str(&format!(
                "\nreplay the run:   {}",
                crate::scenario::code::values::command(case)
            ));
        }
        text
    }
}

/// Whether a tracker event is an online/offline transition that must be reported
/// as a node update: a write whose old and new status differ, or a first row that is online.
pub fn is_transition(event: &TrackerEvent) -> bool {
    event.op == Op::Write
        && match &event.old_row {
            Some(old) => old.status != event.new_row.status,
            None => event.new_row.status == NodeStatus::Online,
        }
}

/// Incremental check of one node's notifications: each transition of another node
/// is followed, in order, by exactly one `NodeUpdate`, before the next tracker
/// event; none is about the node itself.
#[derive(Clone, Debug)]
pub struct NotificationChecker {
    me: NodeName,
    expected: VecDeque<(NodeName, NodeStatus)>,
}

impl NotificationChecker {
    /// A checker for node `me`.
    pub fn new(me: NodeName) -> Self {
        Self {
            me,
            expected: VecDeque::new(),
        }
    }

    /// Feeds the next event the node emitted.
    pub fn observe(&mut self, event: &Event) -> Result<(), ViolationKind> {
        match event {
            Event::Tracker(change) => {
                self.flush()?;
                if change.new_row.node != self.me && is_transition(change) {
                    self.expected
                        .push_back((change.new_row.node.clone(), change.new_row.status));
                }
                Ok(())
            }
            Event::NodeUpdate { node, status, .. } => {
                if *node == self.me {
                    return Err(ViolationKind::NotifiedAboutSelf {
                        node: self.me.to_string(),
                    });
                }
                match self.expected.pop_front() {
                    Some((about, want)) if about == *node && want == *status => Ok(()),
                    other => Err(ViolationKind::UnexpectedNotification {
                        node: self.me.to_string(),
                        about: node.to_string(),
                        status: *status,
                        expected: other.map(|(n, s)| (n.to_string(), s)),
                    }),
                }
            }
            _ => Ok(()),
        }
    }

    /// Called when the node's event queue is drained: every expected
    /// notification must have come.
    pub fn flush(&mut self) -> Result<(), ViolationKind> {
        match self.expected.pop_front() {
            None => Ok(()),
            Some((about, status)) => {
                self.expected.clear();
                Err(ViolationKind::MissingNotification {
                    node: self.me.to_string(),
                    about: about.to_string(),
                    status,
                })
            }
        }
    }
}

/// Checks a whole recorded history of one node's events for notification errors.
pub fn check_notifications(me: &NodeName, events: &[Event]) -> Result<(), ViolationKind> {
    let mut checker = NotificationChecker::new(me.clone());
    events.iter().try_for_each(|e| checker.observe(e))?;
    checker.flush()
}

/// The mode a node must report: clustered while it has not left and any other
/// node is online in its tracker.
pub fn expected_mode(left: bool, others_online: usize) -> Mode {
    if !left && others_online > 0 {
        Mode::Clustered
    } else {
        Mode::Standalone
    }
}

/// Checks that a live node's mode matches its tracker.
pub fn check_mode(node: &Node) -> Result<(), ViolationKind> {
    let own_online = node
        .row(node.name())
        .is_some_and(|row| row.status == NodeStatus::Online);
    let others_online = node.tracker().online_count() - usize::from(own_online);
    let left = node.has_left();
    let mode = node.mode();
    if mode == expected_mode(left, others_online) {
        Ok(())
    } else {
        Err(ViolationKind::ModeMismatch {
            node: node.name().to_string(),
            mode,
            others_online,
            left,
        })
    }
}

/// Replays a recorded history of one node's events (tracker writes, deletes and
/// mode changes, from its creation) and checks at the end of it that the last
/// reported mode matches the replayed tracker.
pub fn check_mode_history(me: &NodeName, events: &[Event]) -> Result<(), ViolationKind> {
    let mut rows: BTreeMap<NodeName, TrackerRow> = BTreeMap::new();
    let mut mode = Mode::Standalone;
    for event in events {
        match event {
            Event::Tracker(change) if change.op == Op::Write => {
                rows.insert(change.new_row.node.clone(), change.new_row.clone());
            }
            Event::Tracker(change) => {
                rows.remove(&change.new_row.node);
            }
            Event::ModeChanged(m) => mode = *m,
            _ => {}
        }
    }
    let left = rows.get(me).is_some_and(|row| row.health == Health::Left);
    let others_online = rows
        .values()
        .filter(|row| row.node != *me && row.status == NodeStatus::Online)
        .count();
    if mode == expected_mode(left, others_online) {
        Ok(())
    } else {
        Err(ViolationKind::ModeMismatch {
            node: me.to_string(),
            mode,
            others_online,
            left,
        })
    }
}

/// Whether a tracker event declares a node dead that was online before: the
/// event accuracy is about.
pub fn is_declaration(event: &TrackerEvent) -> bool {
    event.op == Op::Write
        && event.new_row.health == Health::Dead
        && event
            .old_row
            .as_ref()
            .is_some_and(|old| old.status == NodeStatus::Online)
}

/// Checks one tracker event of `observer` against the ground truth: declaring a
/// node dead is wrong when `healthy` says it was healthy and reachable (its
/// [`Standing`] towards the observer is [`Standing::Healthy`]; see [`accuracy`]).
pub fn check_accuracy(
    observer: &NodeName,
    event: &TrackerEvent,
    healthy: impl FnOnce(&NodeName) -> bool,
) -> Result<(), ViolationKind> {
    if is_declaration(event) && healthy(&event.new_row.node) {
        Err(ViolationKind::FalseOffline {
            observer: observer.to_string(),
            target: event.new_row.node.to_string(),
            health: event.new_row.health,
            incarnation: event.new_row.incarnation,
        })
    } else {
        Ok(())
    }
}

/// Checks that live, connected nodes hold identical trackers.
pub fn check_converged<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    bound: Duration,
) -> Result<(), ViolationKind> {
    let mut nodes = nodes.into_iter();
    let Some(first) = nodes.next() else {
        return Ok(());
    };
    for node in nodes {
        if node.tracker() == first.tracker() {
            continue;
        }
        let theirs = |n: &Node, name: &NodeName| format!("{:?}", n.row(name));
        let differing = node
            .tracker()
            .rows()
            .map(|row| &row.node)
            .chain(first.tracker().rows().map(|row| &row.node))
            .find(|name| node.row(name) != first.row(name));
        let detail = differing.map_or_else(String::new, |name| {
            format!(
                "{} vs {} at {}: {}",
                theirs(node, name),
                theirs(first, name),
                first.name(),
                name
            )
        });
        return Err(ViolationKind::NotConverged {
            bound,
            node: node.name().to_string(),
            detail,
        });
    }
    Ok(())
}

/// Checks that every node in `down` (crashed or departed) is offline (or absent)
/// in every live node's tracker.
pub fn check_complete<'a>(
    live: impl IntoIterator<Item = &'a Node>,
    down: &[NodeName],
) -> Result<(), ViolationKind> {
    for node in live {
        for target in down {
            if node
                .row(target)
                .is_some_and(|row| row.status == NodeStatus::Online)
            {
                return Err(ViolationKind::Incomplete {
                    observer: node.name().to_string(),
                    target: target.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Checks that every live node sees every live node (itself included) online.
pub fn check_live<'a>(
    live: impl IntoIterator<Item = &'a Node> + Clone,
) -> Result<(), ViolationKind> {
    for observer in live.clone() {
        for target in live.clone() {
            let online = observer
                .row(target.name())
                .is_some_and(|row| row.status == NodeStatus::Online);
            if !online {
                return Err(ViolationKind::NotLive {
                    observer: observer.name().to_string(),
                    target: target.name().to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Time bounds derived from the protocol's own timers, for a cluster of `nodes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// The longest suspicion timeout (no confirmations).
    pub suspicion_max: Duration,
    /// A failure should be offline everywhere within this: a probe period to be
    /// probed, a probe timeout, the longest suspicion, a last-chance ping, and
    /// dissemination to everyone.
    pub detection: Duration,
    /// How long after a node's own fault ends a declaration of it is excused (a
    /// suspicion raised during the fault may still run out).
    pub grace: Duration,
    /// After faults stop and everything is healed and restarted, the cluster must
    /// be whole again within this: a re-join (its retries and the slow seed
    /// re-probe), a few anti-entropy rounds, and a detection.
    pub liveness: Duration,
}

impl Timing {
    /// The bounds for `config` and `nodes` nodes.
    pub fn new(config: &Config, nodes: usize) -> Self {
        let (_, suspicion_max) =
            suspicion_bounds(config.suspicion_min, config.suspicion_max_factor, nodes);
        let rounds = retransmit_limit(config.retransmit_mult, nodes);
        let dissemination = config.gossip_interval * rounds;
        let stretched = config.probe_interval * (1 + config.max_local_health);
        let detection =
            2 * config.probe_interval + 2 * config.probe_timeout + suspicion_max + dissemination;
        let join_backoff = config.join_retry * ((1u32 << config.join_attempts.min(16)) - 1);
        Self {
            suspicion_max,
            detection,
            grace: suspicion_max + 2 * config.probe_interval,
            liveness: config.rejoin_interval
                + join_backoff
                + 4 * config.anti_entropy_interval
                + detection
                + stretched,
        }
    }
}

#[cfg(test)]
#[path = "invariant/tests.rs"]
mod tests;
