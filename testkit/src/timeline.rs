//! A recording of a run over time, for its pictures (the HTML report): what the
//! rest of the cluster believed about each node, the fault windows, false
//! verdicts, and traffic per second.
//!
//! Opt-in ([`SimBuilder::record_timeline`](crate::SimBuilder::record_timeline)
//! or [`Sim::record_timeline`](crate::Sim::record_timeline)): an ordinary run
//! pays one branch per event. While recording, a tracker write costs a hash-map
//! lookup, a datagram two additions, and a process starting or stopping a pass
//! over the nodes. Only rows that are not plainly online are held (who suspects
//! or holds whom offline), so memory follows the trouble, not N².

use std::collections::HashMap;
use std::time::Duration;

use beethoven_core::{Health, NodeStatus};
use serde::Serialize;

use crate::fault::Fault;
use crate::trace::Fnv;

type FnvBuild = std::hash::BuildHasherDefault<Fnv>;

/// What the rest of the cluster believes about one node at a moment (worst
/// first in the order: later variants are worse).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Belief {
    /// Not started yet (a standby node), so nobody holds a row of it.
    Absent,
    /// No running observer suspects it or holds it offline.
    Online,
    /// Some observers suspect it; none holds it offline.
    Suspected,
    /// Some observers hold it offline, not all.
    OfflineSome,
    /// Every running observer holds it offline.
    OfflineEverywhere,
}

/// One observer's row about a subject, where it is not plainly online.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    Suspect,
    Offline,
}

impl View {
    fn of((status, health): (NodeStatus, Health)) -> Option<View> {
        match (status, health) {
            (NodeStatus::Offline, _) => Some(View::Offline),
            (_, Health::Suspect) => Some(View::Suspect),
            _ => None,
        }
    }
}

/// What a fault window was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum WindowKind {
    /// A process crashed (until it restarts).
    Crash,
    /// A process left gracefully (until it restarts).
    Leave,
    /// A process was paused.
    Pause,
    /// A process was slow, or its inbound datagrams were late.
    Slow,
    /// The network was cut (a partition, a one-way block or a link rule).
    Partition,
    /// The network lost datagrams beyond its base loss.
    Loss,
}

impl WindowKind {
    /// A lowercase label.
    pub fn label(self) -> &'static str {
        match self {
            WindowKind::Crash => "crash",
            WindowKind::Leave => "leave",
            WindowKind::Pause => "pause",
            WindowKind::Slow => "slow",
            WindowKind::Partition => "partition",
            WindowKind::Loss => "loss",
        }
    }
}

/// A fault over a span of time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultWindow {
    /// What it was.
    pub kind: WindowKind,
    /// The nodes it touched (for a partition: the nodes cut off; empty: the
    /// whole network).
    pub nodes: Vec<usize>,
    /// When it began (simulated time since the start).
    pub from: Duration,
    /// When it ended (`None`: still on when the recording was read).
    pub until: Option<Duration>,
}

/// A healthy node declared offline: from the verdict until no observer holds
/// it offline any more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FalseVerdict {
    /// The node declared.
    pub node: usize,
    /// The node that wrote the verdict.
    pub observer: usize,
    /// When it was written.
    pub at: Duration,
    /// When the last observer stopped holding it offline (`None`: not yet).
    pub until: Option<Duration>,
}

/// The datagrams sent over one simulated second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrafficSecond {
    /// Which second since the recording began.
    pub second: u64,
    /// Datagrams sent by all nodes.
    pub msgs: u64,
    /// Bytes sent by all nodes.
    pub bytes: u64,
    /// Datagrams sent by the busiest node.
    pub max_node_msgs: u64,
    /// Bytes sent by the busiest node.
    pub max_node_bytes: u64,
    /// Processes running at the second's end.
    pub running: usize,
}

/// The recording. See the module docs.
#[derive(Clone, Debug)]
pub struct Timeline {
    start: Duration,
    /// By subject: the observers whose row of it is not plainly online.
    views: Vec<HashMap<usize, View, FnvBuild>>,
    suspect: Vec<u32>,
    offline: Vec<u32>,
    running: Vec<bool>,
    running_count: usize,
    started: Vec<bool>,
    /// By subject: each change of belief (the first at the start).
    beliefs: Vec<Vec<(Duration, Belief)>>,
    faults: Vec<FaultWindow>,
    false_verdicts: Vec<FalseVerdict>,
    marks: Vec<(Duration, String)>,
    traffic: Vec<TrafficSecond>,
    second: u64,
    node_msgs: Vec<u64>,
    node_bytes: Vec<u64>,
}

impl Timeline {
    /// An empty recording of `nodes` node slots from `start`; nobody runs yet.
    pub(crate) fn new(start: Duration, nodes: usize) -> Self {
        Self {
            start,
            views: vec![HashMap::default(); nodes],
            suspect: vec![0; nodes],
            offline: vec![0; nodes],
            running: vec![false; nodes],
            running_count: 0,
            started: vec![false; nodes],
            beliefs: vec![vec![(start, Belief::Absent)]; nodes],
            faults: Vec::new(),
            false_verdicts: Vec::new(),
            marks: Vec::new(),
            traffic: Vec::new(),
            second: 0,
            node_msgs: vec![0; nodes],
            node_bytes: vec![0; nodes],
        }
    }

    // ----- what was recorded -----

    /// When the recording began (simulated time since the start).
    pub fn start(&self) -> Duration {
        self.start
    }

    /// Node slots recorded.
    pub fn nodes(&self) -> usize {
        self.beliefs.len()
    }

    /// Every change of what the cluster believed about node `i`, in order: the
    /// first entry is at the recording's start.
    pub fn beliefs(&self, i: usize) -> &[(Duration, Belief)] {
        &self.beliefs[i]
    }

    /// The fault windows, in the order they began.
    pub fn faults(&self) -> &[FaultWindow] {
        &self.faults
    }

    /// The false verdicts, in the order written.
    pub fn false_verdicts(&self) -> &[FalseVerdict] {
        &self.false_verdicts
    }

    /// Labelled moments: [`Sim::mark`](crate::Sim::mark)s, and each heal that
    /// ended a network fault (`"heal"`).
    pub fn marks(&self) -> &[(Duration, String)] {
        &self.marks
    }

    /// Traffic of each whole second recorded so far (a second is complete
    /// once a datagram of a later one was sent).
    pub fn traffic(&self) -> &[TrafficSecond] {
        &self.traffic
    }

    // ----- recording (called by the simulator) -----

    pub(crate) fn mark(&mut self, now: Duration, label: String) {
        self.marks.push((now, label));
    }

    /// Observer `observer` now holds a row of `subject` with this status and
    /// health (`None`: no row).
    pub(crate) fn row(
        &mut self,
        now: Duration,
        observer: usize,
        subject: usize,
        row: Option<(NodeStatus, Health)>,
    ) {
        if observer == subject || subject >= self.views.len() || !self.running[observer] {
            return;
        }
        let view = row.and_then(View::of);
        let old = match view {
            Some(view) => self.views[subject].insert(observer, view),
            None => self.views[subject].remove(&observer),
        };
        if old != view {
            self.count(subject, old, -1);
            self.count(subject, view, 1);
            self.refresh(now, subject);
        }
    }

    /// A healthy `node` was declared offline by `observer`.
    pub(crate) fn false_verdict(&mut self, now: Duration, observer: usize, node: usize) {
        self.false_verdicts.push(FalseVerdict {
            node,
            observer,
            at: now,
            until: None,
        });
    }

    /// Node `i`'s process started.
    pub(crate) fn up(&mut self, now: Duration, i: usize) {
        if !self.running[i] {
            self.running[i] = true;
            self.started[i] = true;
            self.running_count += 1;
            self.refresh_all(now);
        }
    }

    /// Node `i`'s process ended: its rows go with it.
    pub(crate) fn down(&mut self, now: Duration, i: usize) {
        if !self.running[i] {
            return;
        }
        for subject in 0..self.views.len() {
            if let Some(old) = self.views[subject].remove(&i) {
                self.count(subject, Some(old), -1);
            }
        }
        self.running[i] = false;
        self.running_count -= 1;
        self.refresh_all(now);
    }

    /// Node `i` sent a datagram of `bytes` bytes.
    pub(crate) fn sent(&mut self, now: Duration, i: usize, bytes: usize) {
        self.roll(now);
        self.node_msgs[i] += 1;
        self.node_bytes[i] += bytes as u64;
    }

    /// The simulator applied `fault` (it fired).
    pub(crate) fn fault(&mut self, now: Duration, fault: &Fault) {
        let mut open = |kind, nodes: Vec<usize>, until: Option<Duration>| {
            self.faults.push(FaultWindow {
                kind,
                nodes,
                from: now,
                until,
            });
        };
        match fault {
            Fault::Crash { node, .. } => open(WindowKind::Crash, vec![*node], None),
            Fault::Leave { node } => open(WindowKind::Leave, vec![*node], None),
            Fault::Pause { node, duration } => {
                open(WindowKind::Pause, vec![*node], Some(now + *duration));
            }
            Fault::Slow { node, duration, .. } => {
                open(WindowKind::Slow, vec![*node], Some(now + *duration));
            }
            Fault::Delay { node, .. } => open(WindowKind::Slow, vec![*node], None),
            Fault::Partition { groups } => {
                open(WindowKind::Partition, groups.concat(), None);
            }
            Fault::OneWay { from, .. } => open(WindowKind::Partition, from.clone(), None),
            Fault::Link { from, to, .. } => open(WindowKind::Partition, vec![*from, *to], None),
            Fault::Loss { .. } => open(WindowKind::Loss, Vec::new(), None),
            Fault::Brownout {
                duration, links, ..
            } => {
                let nodes = links.iter().flat_map(|&(from, to)| [from, to]).collect();
                open(WindowKind::Loss, nodes, Some(now + *duration));
            }
            Fault::Restart { node, .. } | Fault::Start { node } => {
                let _ = self.close(now, |w| {
                    matches!(w.kind, WindowKind::Crash | WindowKind::Leave) && w.nodes == [*node]
                });
            }
            Fault::Heal => {
                // What `Fault::Heal` ends: cuts, loss and inbound delays.
                let closed = self.close(now, |w| {
                    matches!(w.kind, WindowKind::Partition | WindowKind::Loss)
                        || (w.kind == WindowKind::Slow && w.until.is_none())
                });
                if closed > 0 {
                    self.marks.push((now, "heal".into()));
                }
            }
            Fault::Join { .. } | Fault::StartTwin { .. } | Fault::SetTags { .. } => {}
        }
    }

    /// Ends the open windows `which` picks; how many.
    fn close(&mut self, now: Duration, which: impl Fn(&FaultWindow) -> bool) -> usize {
        let mut closed = 0;
        for window in &mut self.faults {
            if window.until.is_none() && which(window) {
                window.until = Some(now);
                closed += 1;
            }
        }
        closed
    }

    fn count(&mut self, subject: usize, view: Option<View>, by: i32) {
        let counter = match view {
            Some(View::Suspect) => &mut self.suspect[subject],
            Some(View::Offline) => &mut self.offline[subject],
            None => return,
        };
        *counter = counter.saturating_add_signed(by);
    }

    fn belief(&self, subject: usize) -> Belief {
        if !self.started[subject] && self.views[subject].is_empty() {
            return Belief::Absent;
        }
        let observers = self.running_count - usize::from(self.running[subject]);
        let offline = self.offline[subject] as usize;
        if offline > 0 && offline >= observers {
            Belief::OfflineEverywhere
        } else if offline > 0 {
            Belief::OfflineSome
        } else if self.suspect[subject] > 0 {
            Belief::Suspected
        } else {
            Belief::Online
        }
    }

    fn refresh(&mut self, now: Duration, subject: usize) {
        let belief = self.belief(subject);
        let changes = &mut self.beliefs[subject];
        if changes.last().is_some_and(|&(_, last)| last == belief) {
            return;
        }
        let len = changes.len();
        if len > 1 && changes[len - 1].0 == now {
            // Several changes at one instant: the last one stands.
            changes[len - 1].1 = belief;
            if changes[len - 2].1 == belief {
                changes.pop();
            }
        } else {
            changes.push((now, belief));
        }
        if self.offline[subject] == 0 {
            for verdict in &mut self.false_verdicts {
                if verdict.node == subject && verdict.until.is_none() {
                    verdict.until = Some(now);
                }
            }
        }
    }

    fn refresh_all(&mut self, now: Duration) {
        for subject in 0..self.beliefs.len() {
            self.refresh(now, subject);
        }
    }

    /// Closes the seconds before `now`'s.
    fn roll(&mut self, now: Duration) {
        let second = now.saturating_sub(self.start).as_secs();
        while self.second < second {
            self.traffic.push(TrafficSecond {
                second: self.second,
                msgs: self.node_msgs.iter().sum(),
                bytes: self.node_bytes.iter().sum(),
                max_node_msgs: self.node_msgs.iter().copied().max().unwrap_or(0),
                max_node_bytes: self.node_bytes.iter().copied().max().unwrap_or(0),
                running: self.running_count,
            });
            self.node_msgs.fill(0);
            self.node_bytes.fill(0);
            self.second += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_subject_goes_from_suspected_to_offline_everywhere_as_observers_write_it() {
        let mut t = Timeline::new(Duration::ZERO, 3);
        for i in 0..3 {
            t.up(Duration::ZERO, i);
        }
        t.down(S, 2);
        t.row(2 * S, 0, 2, Some((NodeStatus::Online, Health::Suspect)));
        t.row(3 * S, 0, 2, Some((NodeStatus::Offline, Health::Dead)));
        t.row(4 * S, 1, 2, Some((NodeStatus::Offline, Health::Dead)));
        let beliefs: Vec<Belief> = t.beliefs(2).iter().map(|&(_, b)| b).collect();
        assert_eq!(
            beliefs,
            [
                Belief::Absent,
                Belief::Online,
                Belief::Suspected,
                Belief::OfflineSome,
                Belief::OfflineEverywhere
            ]
        );
        assert_eq!(t.beliefs(2)[4].0, 4 * S);
    }

    #[test]
    fn an_observer_that_stops_takes_its_rows_along() {
        let mut t = Timeline::new(Duration::ZERO, 3);
        for i in 0..3 {
            t.up(Duration::ZERO, i);
        }
        t.row(S, 0, 2, Some((NodeStatus::Offline, Health::Dead)));
        t.false_verdict(S, 0, 2);
        assert_eq!(t.beliefs(2).last().map(|b| b.1), Some(Belief::OfflineSome));
        t.down(2 * S, 0);
        assert_eq!(t.beliefs(2).last(), Some(&(2 * S, Belief::Online)));
        assert_eq!(t.false_verdicts()[0].until, Some(2 * S), "closed");
    }

    #[test]
    fn heal_closes_network_windows_and_restart_closes_the_crash() {
        let mut t = Timeline::new(Duration::ZERO, 4);
        let host = crate::fault::HostFate::Vanishes;
        t.fault(S, &Fault::Crash { node: 1, host });
        t.fault(
            S,
            &Fault::Partition {
                groups: vec![vec![2, 3]],
            },
        );
        t.fault(2 * S, &Fault::Loss { loss: 0.5 });
        t.fault(5 * S, &Fault::Heal);
        t.fault(
            6 * S,
            &Fault::Restart {
                node: 1,
                new_addr: false,
            },
        );
        let ends: Vec<_> = t.faults().iter().map(|w| (w.kind, w.until)).collect();
        assert_eq!(
            ends,
            [
                (WindowKind::Crash, Some(6 * S)),
                (WindowKind::Partition, Some(5 * S)),
                (WindowKind::Loss, Some(5 * S)),
            ]
        );
        assert_eq!(t.faults()[1].nodes, [2, 3]);
        assert_eq!(t.marks(), [(5 * S, "heal".to_string())]);
        t.fault(7 * S, &Fault::Heal);
        assert_eq!(t.marks().len(), 1, "nothing left to heal: no mark");
    }

    #[test]
    fn traffic_is_summed_per_second_with_the_busiest_node() {
        let mut t = Timeline::new(Duration::ZERO, 2);
        t.sent(Duration::from_millis(100), 0, 10);
        t.sent(Duration::from_millis(200), 0, 10);
        t.sent(Duration::from_millis(300), 1, 5);
        t.sent(Duration::from_millis(2500), 1, 5);
        let seconds = t.traffic();
        assert_eq!(seconds.len(), 2);
        assert_eq!(
            (
                seconds[0].msgs,
                seconds[0].bytes,
                seconds[0].max_node_msgs,
                seconds[0].max_node_bytes
            ),
            (3, 25, 2, 20)
        );
        assert_eq!(seconds[1].msgs, 0, "a quiet second");
    }
}
