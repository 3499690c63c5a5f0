//! The ground truth of the accuracy invariant: when declaring a node dead is
//! wrong.
//!
//! # When a node is healthy
//!
//! A declaration is a tracker write that takes a node that was online to
//! `Dead` ([`is_declaration`](super::is_declaration)). The simulator judges each
//! verdict — a (node, incarnation) pair — once, where it is first written, by
//! the [`Standing`] of the target *towards the node that wrote it*, at that
//! moment:
//!
//! - [`Standing::Down`]: the target's process is not running (crashed, never
//!   started, stopped) or is leaving. Declaring it dead is right.
//! - [`Standing::Degraded`]: the target runs but cannot answer in time, by a
//!   fault of its own: it is paused, slow to process (`Fault::Slow`), receives
//!   every datagram at least a probe timeout late (`Fault::Delay` with a largest
//!   delay of at least `probe_timeout`), shares its name with a second live
//!   process (`Fault::StartTwin`), or one of these ended — or the process was
//!   (re)started — less than a grace ago (the longest suspicion plus two probe
//!   periods: a suspicion raised during the fault may still run out). DESIGN §4 allows declaring such a member
//!   offline; the declaration is counted, not a violation.
//! - [`Standing::Apart`]: writer and target were in different components of
//!   the network at some moment of the last grace. Two nodes are in one
//!   component when datagrams can go both ways between them, directly or through
//!   other nodes, over links that are not cut (a partition, a one-way block, a
//!   blocked link, or a loss of 1 cut a link; see
//!   [`Network::components`](crate::network::Network::components)). A node cut
//!   off from the writer is rightly declared dead by it; once the network heals
//!   it must come back (the liveness gate and the partition scenarios check
//!   that), and a suspicion raised while apart may still run out within the grace.
//! - [`Standing::Healthy`]: none of the above. Loss below 1 (model-wide or on a
//!   link), extra latency on a link, and a member whose datagrams are late by
//!   less than a probe timeout leave a node healthy: declaring it dead is a
//!   false offline ([`ViolationKind::FalseOffline`](super::ViolationKind::FalseOffline)).
//!
//! So the checker keeps judging under link rules and loss: only the pairs a cut
//! actually separates are excused, and only for as long as they are separated
//! plus the grace.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

/// Where a node stands, towards one observer, for the accuracy invariant (see
/// the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Standing {
    /// Running, answering in time, and connected to the observer: declaring it
    /// dead is a false offline.
    Healthy,
    /// Not running, or leaving.
    Down,
    /// Running but unable to answer in time by a fault of its own (or within a
    /// grace after one).
    Degraded,
    /// In another network component than the observer (or was, within a grace).
    Apart,
}

/// The history of the network's components, as far back as a grace reaches:
/// which pairs of nodes were apart, and until when.
#[derive(Clone, Debug)]
pub struct Reachability {
    grace: Duration,
    /// `(from, labels)`: the components in force from `from` until the next
    /// entry's `from`. `None`: one component (nothing cut).
    epochs: VecDeque<(Duration, Option<Vec<u32>>)>,
}

impl Reachability {
    /// A history that starts at time zero with one component, and remembers a
    /// separation for `grace` after it ends.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            epochs: VecDeque::from([(Duration::ZERO, None)]),
        }
    }

    /// From `at` on, the components are `labels` (a label per node index, as
    /// [`Network::components`](crate::network::Network::components) gives them;
    /// `None`: one component). Forgets what ended more than a grace before `at`.
    pub fn record(&mut self, at: Duration, labels: Option<Vec<u32>>) {
        let horizon = at.saturating_sub(self.grace);
        while self.epochs.len() > 1 && self.epochs[1].0 <= horizon {
            self.epochs.pop_front();
        }
        if labels.is_none() && self.epochs.back().is_some_and(|(_, l)| l.is_none()) {
            return;
        }
        self.epochs.push_back((at, labels));
    }

    /// Whether `a` and `b` are in one component now (as last recorded).
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.epochs
            .back()
            .is_none_or(|(_, labels)| same(labels.as_deref(), a, b))
    }

    /// Whether `a` and `b` were in different components at any moment from a
    /// grace before `now` until `now`.
    pub fn apart_within(&self, a: usize, b: usize, now: Duration) -> bool {
        let horizon = now.saturating_sub(self.grace);
        self.epochs.iter().enumerate().any(|(k, (from, labels))| {
            let until = self.epochs.get(k + 1).map_or(Duration::MAX, |(t, _)| *t);
            *from <= now && until > horizon && !same(labels.as_deref(), a, b)
        })
    }
}

fn same(labels: Option<&[u32]>, a: usize, b: usize) -> bool {
    labels.is_none_or(|l| l.get(a) == l.get(b))
}
