//! User events in the simulator: a log of every event sent and every
//! delivery, the app that fills it ([`Recorder`]), and the checker of what
//! "once" means ([`DeliveryLog::check`]).
//!
//! The checker reports an event delivered twice to one process, one delivered
//! out of its origin's order, one delivered to a process that started after
//! it was sent, and one never delivered to a node that ran one process from
//! the send to the end of the run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use beethoven_core::{Event, SendEventError, UserEventId};

use crate::app::{App, Context};
use crate::sim::Sim;

/// One event sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Which event.
    pub id: UserEventId,
    /// The sender's index.
    pub origin: usize,
    /// When (simulated time).
    pub at: Duration,
}

/// One delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The receiver's index.
    pub node: usize,
    /// When the receiving process started (simulated time).
    pub process: Duration,
    /// Which event.
    pub id: UserEventId,
    /// When (simulated time).
    pub at: Duration,
}

/// A delivery owed to a node (see [`DeliveryLog::owed_deliveries`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owed {
    /// The event.
    pub sent: Sent,
    /// The receiver's index.
    pub node: usize,
    /// When the receiver delivered it (the first time); `None`: never.
    pub delivered_at: Option<Duration>,
}

#[derive(Debug, Default)]
struct Entries {
    sent: Vec<Sent>,
    deliveries: Vec<Delivery>,
    /// Each node's process starts, in order.
    starts: BTreeMap<usize, Vec<Duration>>,
}

/// What the checker found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryFault {
    /// One process delivered the event twice.
    Twice {
        /// The receiver.
        node: usize,
        /// The event.
        id: UserEventId,
    },
    /// The event came after a later one of its origin.
    OutOfOrder {
        /// The receiver.
        node: usize,
        /// The event.
        id: UserEventId,
    },
    /// The receiving process started after the event was sent.
    BeforeStart {
        /// The receiver.
        node: usize,
        /// The event.
        id: UserEventId,
    },
    /// A node that ran one process from the send to the end never delivered it.
    Missing {
        /// The receiver.
        node: usize,
        /// The event.
        id: UserEventId,
    },
}

/// The shared log of a run's user events; clones share it.
#[derive(Clone, Debug, Default)]
pub struct DeliveryLog(Arc<Mutex<Entries>>);

impl DeliveryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves plain data behind: still readable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Node `origin` sends an event now (`Node::send_event`); logged if accepted.
    /// `None` when the node is not running.
    pub fn send(
        &self,
        sim: &mut Sim,
        origin: usize,
        name: &str,
        payload: &[u8],
    ) -> Option<Result<UserEventId, SendEventError>> {
        let at = sim.now();
        let result = sim.command(origin, |node, now| node.send_event(now, name, payload))?;
        if let Ok(id) = &result {
            self.entries().sent.push(Sent {
                id: id.clone(),
                origin,
                at,
            });
        }
        Some(result)
    }

    /// Every event sent, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.entries().sent.clone()
    }

    /// Every delivery, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.entries().deliveries.clone()
    }

    /// Whether `node`'s process running at `end` started before `at`.
    fn ran_since(starts: &BTreeMap<usize, Vec<Duration>>, node: usize, at: Duration) -> bool {
        starts
            .get(&node)
            .and_then(|s| s.last())
            .is_some_and(|&start| start <= at)
    }

    /// Checks the log after a run: `up_at_end[i]` says whether node `i` runs
    /// at the end. Events sent within `grace` of the end are not required
    /// anywhere.
    pub fn check(&self, up_at_end: &[bool], end: Duration, grace: Duration) -> Vec<DeliveryFault> {
        let entries = self.entries();
        let mut faults = Vec::new();
        let sent_at: BTreeMap<&UserEventId, &Sent> =
            entries.sent.iter().map(|s| (&s.id, s)).collect();
        let mut seen: BTreeSet<(usize, Duration, &UserEventId)> = BTreeSet::new();
        let mut last: BTreeMap<(usize, Duration, &beethoven_core::NodeName, i64), u64> =
            BTreeMap::new();
        for d in &entries.deliveries {
            if !seen.insert((d.node, d.process, &d.id)) {
                faults.push(DeliveryFault::Twice {
                    node: d.node,
                    id: d.id.clone(),
                });
            }
            let stream = (d.node, d.process, &d.id.origin, d.id.started);
            let before = last.insert(stream, d.id.seq).unwrap_or(0);
            if d.id.seq <= before {
                faults.push(DeliveryFault::OutOfOrder {
                    node: d.node,
                    id: d.id.clone(),
                });
            }
            if sent_at.get(&d.id).is_some_and(|s| s.at < d.process) {
                faults.push(DeliveryFault::BeforeStart {
                    node: d.node,
                    id: d.id.clone(),
                });
            }
        }
        let owed = Self::owed_in(&entries, up_at_end, end, grace);
        faults.extend(
            owed.into_iter()
                .filter(|o| o.delivered_at.is_none())
                .map(|o| DeliveryFault::Missing {
                    node: o.node,
                    id: o.sent.id,
                }),
        );
        faults
    }

    /// The (receiver, event) pairs owed: a node running one process from the
    /// send to the end, not the origin, for every event sent `grace` before `end`.
    pub fn owed(&self, up_at_end: &[bool], end: Duration, grace: Duration) -> usize {
        self.owed_deliveries(up_at_end, end, grace).len()
    }

    /// Each owed (receiver, event) pair (see [`owed`](Self::owed)), with when
    /// the receiver delivered the event, if it did.
    pub fn owed_deliveries(&self, up_at_end: &[bool], end: Duration, grace: Duration) -> Vec<Owed> {
        Self::owed_in(&self.entries(), up_at_end, end, grace)
    }

    fn owed_in(entries: &Entries, up_at_end: &[bool], end: Duration, grace: Duration) -> Vec<Owed> {
        let mut delivered: BTreeMap<(usize, &UserEventId), Duration> = BTreeMap::new();
        for d in &entries.deliveries {
            delivered.entry((d.node, &d.id)).or_insert(d.at);
        }
        let mut owed = Vec::new();
        for s in entries.sent.iter().filter(|s| s.at + grace <= end) {
            for (node, &up) in up_at_end.iter().enumerate() {
                if up && node != s.origin && Self::ran_since(&entries.starts, node, s.at) {
                    owed.push(Owed {
                        sent: s.clone(),
                        node,
                        delivered_at: delivered.get(&(node, &s.id)).copied(),
                    });
                }
            }
        }
        owed
    }

    /// An app for every node that logs its deliveries into this log
    /// (`SimBuilder::app(move |i, _| log.recorder(i))`).
    pub fn recorder(&self, node: usize) -> Recorder {
        Recorder {
            log: self.clone(),
            node,
            process: Duration::ZERO,
        }
    }
}

/// The app that logs its node's user-event deliveries.
#[derive(Debug)]
pub struct Recorder {
    log: DeliveryLog,
    node: usize,
    process: Duration,
}

impl App for Recorder {
    fn start(&mut self, ctx: &mut Context<'_>) {
        self.process = ctx.now();
        self.log
            .entries()
            .starts
            .entry(self.node)
            .or_default()
            .push(ctx.now());
    }

    fn event(&mut self, ctx: &mut Context<'_>, event: &Event) {
        if let Event::User(user) = event {
            self.log.entries().deliveries.push(Delivery {
                node: self.node,
                process: self.process,
                id: user.id.clone(),
                at: ctx.now(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beethoven_core::NodeName;

    fn id(seq: u64) -> UserEventId {
        UserEventId {
            origin: NodeName::new("o").expect("valid"),
            started: 0,
            seq,
        }
    }

    fn log_with(deliveries: &[(usize, Duration, u64)]) -> DeliveryLog {
        let log = DeliveryLog::new();
        {
            let mut e = log.entries();
            for seq in 1..=3 {
                e.sent.push(Sent {
                    id: id(seq),
                    origin: 0,
                    at: Duration::from_secs(seq),
                });
            }
            e.starts.insert(1, vec![Duration::ZERO]);
            e.starts
                .insert(2, vec![Duration::ZERO, Duration::from_secs(2)]);
            for &(node, process, seq) in deliveries {
                e.deliveries.push(Delivery {
                    node,
                    process,
                    id: id(seq),
                    at: Duration::from_secs(seq),
                });
            }
        }
        log
    }

    #[test]
    fn the_checker_names_each_kind_of_wrong_delivery() {
        let zero = Duration::ZERO;
        let two = Duration::from_secs(2);
        let log = log_with(&[(1, zero, 2), (1, zero, 1), (1, zero, 2), (2, two, 1)]);
        let faults = log.check(&[true, true, true], Duration::from_secs(10), zero);
        assert!(faults.contains(&DeliveryFault::OutOfOrder { node: 1, id: id(1) }));
        assert!(faults.contains(&DeliveryFault::Twice { node: 1, id: id(2) }));
        assert!(faults.contains(&DeliveryFault::BeforeStart { node: 2, id: id(1) }));
        assert!(faults.contains(&DeliveryFault::Missing { node: 1, id: id(3) }));
        // Node 2's process started at 2 s: it owes events 2 and 3, not 1.
        assert!(faults.contains(&DeliveryFault::Missing { node: 2, id: id(3) }));
        assert!(!faults.contains(&DeliveryFault::Missing { node: 2, id: id(1) }));
        assert_eq!(
            log.owed(&[true, true, true], Duration::from_secs(10), zero),
            5
        );
    }

    #[test]
    fn a_clean_log_has_no_faults() {
        let zero = Duration::ZERO;
        let two = Duration::from_secs(2);
        let log = log_with(&[
            (1, zero, 1),
            (1, zero, 2),
            (1, zero, 3),
            (2, two, 2),
            (2, two, 3),
        ]);
        assert!(
            log.check(&[true, true, true], Duration::from_secs(10), zero)
                .is_empty()
        );
    }
}
