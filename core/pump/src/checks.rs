//! What the tests ask of a pump's cluster: rows, agreement, and the event log.

use beethoven_core::{Event, Health, Mode, NodeName, NodeStatus, Op, TrackerRow};

use crate::Pump;

impl Pump {
    /// Node `i`'s row about node `of`.
    pub fn row(&self, i: usize, of: usize) -> Option<&TrackerRow> {
        self.node(i).row(&self.names[of])
    }

    /// Node `i`'s view of node `of`.
    pub fn status(&self, i: usize, of: usize) -> Option<NodeStatus> {
        self.row(i, of).map(|r| r.status)
    }

    /// Node `i`'s mode.
    pub fn mode(&self, i: usize) -> Mode {
        self.node(i).mode()
    }

    /// Every live node holds identical trackers.
    pub fn converged(&self) -> bool {
        let mut live = self.live();
        let Some(first) = live.next() else {
            return true;
        };
        live.all(|i| self.node(i).tracker() == self.node(first).tracker())
    }

    /// Every live node sees every live node online.
    pub fn all_live_online(&self) -> bool {
        self.live().all(|i| {
            self.live()
                .all(|j| self.status(i, j) == Some(NodeStatus::Online))
        })
    }

    /// Every live node sees every live node online and has nothing left to gossip:
    /// only probes and matching digests go over the wire.
    pub fn quiet(&self) -> bool {
        self.all_live_online() && self.live().all(|i| self.node(i).pending_updates() == 0)
    }

    /// Every live node but `of` sees `of` with this health.
    pub fn all_see(&self, of: usize, health: Health) -> bool {
        self.live()
            .filter(|&i| i != of)
            .all(|i| self.row(i, of).is_some_and(|r| r.health == health))
    }

    /// Offline notifications node `i` emitted about `about`.
    pub fn offline_updates(&self, i: usize, about: &NodeName) -> usize {
        self.events[i]
            .iter()
            .filter(|(_, e)| {
                matches!(e, Event::NodeUpdate { node, status: NodeStatus::Offline, .. } if node == about)
            })
            .count()
    }

    /// How many times any node wrote `about` offline in its tracker.
    pub fn offline_writes(&self, about: &NodeName) -> usize {
        self.events
            .iter()
            .flatten()
            .filter(|(_, e)| match e {
                Event::Tracker(t) => {
                    t.new_row.node == *about
                        && t.new_row.status == NodeStatus::Offline
                        && t.old_row
                            .as_ref()
                            .is_some_and(|o| o.status == NodeStatus::Online)
                }
                _ => false,
            })
            .count()
    }

    /// Checks that node `i`'s notifications follow its tracker's online/offline
    /// transitions exactly, in order, and are never about the node itself.
    pub fn check_notifications(&self, i: usize) {
        let mut expected = Vec::new();
        let mut actual = Vec::new();
        for (_, event) in &self.events[i] {
            match event {
                Event::Tracker(t) if t.new_row.node != self.names[i] => {
                    let before = t.old_row.as_ref().map(|r| r.status);
                    let after = t.new_row.status;
                    let flip = match before {
                        Some(b) => b != after,
                        None => after == NodeStatus::Online,
                    };
                    if flip && t.op == Op::Write {
                        expected.push((t.new_row.node.clone(), after));
                    }
                }
                Event::NodeUpdate { node, status, .. } => {
                    assert_ne!(*node, self.names[i], "a node is never told about itself");
                    actual.push((node.clone(), *status));
                }
                _ => {}
            }
        }
        assert_eq!(actual, expected, "notifications of node {i}");
    }
}
