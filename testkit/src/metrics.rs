//! What a run measured: how fast news of a node spread (detection of a crash, a
//! join, a leave), false offline declarations (and the excused ones), name
//! conflicts, and traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use beethoven_core::{Health, NodeStatus};
use serde::Serialize;

/// Why a spread is being watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum WatchKind {
    /// A crash: from the crash until the node is offline everywhere (detection latency).
    Crash,
    /// A graceful leave: from `leave` until the node is offline everywhere.
    Leave,
    /// A join (or restart): from `join` until the node is online everywhere.
    Join,
    /// A tag change: from `set_tags` until every observer holds the node online
    /// at the incarnation of the change or later (tags belong to an
    /// incarnation, so it holds the new tags): the tag-change spread time.
    Tags,
}

/// Watches one node's news spread: how many observers (running nodes other than
/// the subject) see it with the wanted status, and when 99.99% and 100% did.
#[derive(Clone, Debug, Serialize)]
pub struct Watch {
    /// What is watched.
    pub kind: WatchKind,
    /// The subject's node index.
    pub subject: usize,
    /// The status the observers should come to see.
    pub status: NodeStatus,
    /// The lowest incarnation of the subject's row that counts (0: any).
    pub min_incarnation: u64,
    /// When the watch started.
    pub since: Duration,
    /// When 99.99% of the observers saw it (rounded up to whole nodes).
    pub most_at: Option<Duration>,
    /// When every observer saw it.
    pub all_at: Option<Duration>,
    /// Ended early (e.g. the crashed node restarted before everyone noticed).
    pub cancelled: bool,
    #[serde(skip)]
    seen: Vec<bool>,
    #[serde(skip)]
    count: usize,
}

/// The fraction of observers behind [`Watch::most_at`].
pub const MOST: f64 = 0.9999;

impl Watch {
    /// A new watch over `nodes` node slots.
    pub fn new(
        kind: WatchKind,
        subject: usize,
        status: NodeStatus,
        since: Duration,
        nodes: usize,
    ) -> Self {
        Self {
            kind,
            subject,
            status,
            min_incarnation: 0,
            since,
            most_at: None,
            all_at: None,
            cancelled: false,
            seen: vec![false; nodes],
            count: 0,
        }
    }

    /// Whether the watch is finished (everyone saw it, or it was cancelled).
    pub fn is_done(&self) -> bool {
        self.all_at.is_some() || self.cancelled
    }

    /// The same watch, counting only rows at `incarnation` or above.
    pub fn from_incarnation(mut self, incarnation: u64) -> Self {
        self.min_incarnation = incarnation;
        self
    }

    /// Records what observer `node` now sees (or `None` when it stopped running or
    /// has no row), whatever the row's incarnation.
    pub fn set(&mut self, node: usize, status: Option<NodeStatus>) {
        self.record(node, status == Some(self.status));
    }

    /// Records the status and incarnation of the row observer `node` now holds
    /// (or `None` when it stopped running or has no row).
    pub fn set_row(&mut self, node: usize, row: Option<(NodeStatus, u64)>) {
        let sees = row.is_some_and(|(status, incarnation)| {
            status == self.status && incarnation >= self.min_incarnation
        });
        self.record(node, sees);
    }

    fn record(&mut self, node: usize, sees: bool) {
        if node == self.subject || node >= self.seen.len() {
            return;
        }
        if sees != self.seen[node] {
            self.seen[node] = sees;
            if sees {
                self.count += 1;
            } else {
                self.count -= 1;
            }
        }
    }

    /// Checks the thresholds against the number of observers at `now`.
    pub fn update(&mut self, now: Duration, observers: usize) {
        if self.is_done() {
            return;
        }
        let most = ((observers as f64) * MOST).ceil() as usize;
        if self.most_at.is_none() && self.count >= most {
            self.most_at = Some(now - self.since);
        }
        if self.count >= observers {
            self.most_at.get_or_insert(now - self.since);
            self.all_at = Some(now - self.since);
        }
    }
}

/// Which watch in [`Metrics::watches`]: what [`Sim::apply`](crate::Sim::apply)
/// returns for the watch it started. Valid until [`Metrics::reset`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct WatchId(pub usize);

/// Counters and watches of one run, kept by the simulator.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Metrics {
    /// Every watch, in the order started.
    pub watches: Vec<Watch>,
    /// Distinct false declarations: (node index, incarnation) of healthy nodes
    /// declared dead. Each verdict is judged where it is first written; other
    /// nodes' later copies of it are as accurate as it was.
    pub false_offline: BTreeSet<(usize, u64)>,
    /// Distinct declarations of degraded nodes (paused, slow, seconds late, or
    /// sharing a name): excused, not violations (see
    /// [`Standing::Degraded`](crate::invariant::Standing::Degraded)).
    pub degraded_declared: BTreeSet<(usize, u64)>,
    /// Distinct declarations by a node cut off from the target (see
    /// [`Standing::Apart`](crate::invariant::Standing::Apart)).
    pub apart_declared: BTreeSet<(usize, u64)>,
    /// Names claimed by two live processes, one per `Fault::StartTwin`.
    pub conflicts: Vec<Conflict>,
    /// Tracker writes that took a node offline as dead, anywhere.
    pub offline_writes: u64,
    /// Those writes by the node written dead (node index → count).
    pub offline_writes_about: BTreeMap<usize, u64>,
    /// Datagrams handed to the network.
    pub packets_sent: u64,
    /// Bytes handed to the network.
    pub bytes_sent: u64,
    /// Datagrams given to a node.
    pub packets_delivered: u64,
    /// Times a node was woken: the distinct instants at which it was given an
    /// input (a datagram or a deadline). Inputs at the same instant take one
    /// wakeup, as a real node drains its socket in one; on a real machine a
    /// quiet node's CPU time is mostly its wakeups (BENCHMARKS.md, "idle cost").
    pub wakes: u64,
    /// Datagrams the network dropped (loss, partitions, nobody listening).
    pub packets_dropped: u64,
    /// Unreachable hints given to senders.
    pub unreachable_hints: u64,
    /// Suspicions raised, confirmed and refuted, anywhere.
    pub suspicions: Suspicions,
}

/// Suspicions as the trackers record them: each count is of tracker writes on
/// any node (one suspicion seen by 9 observers counts 9), since formation or
/// the last [`Metrics::reset`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Suspicions {
    /// Rows written `Suspect` that were not suspect before.
    pub raised: u64,
    /// Suspect rows written `Dead`: the suspicion ran out, or news of the death came.
    pub confirmed: u64,
    /// Suspect rows written `Alive` again: the member refuted.
    pub refuted: u64,
    /// When the first suspicion was raised (simulated time since the start).
    pub first_raised_at: Option<Duration>,
}

impl Suspicions {
    /// Counts one tracker write at `now` from health `old` (`None`: a new row) to `new`.
    pub fn saw(&mut self, now: Duration, old: Option<Health>, new: Health) {
        let was_suspect = old == Some(Health::Suspect);
        match new {
            Health::Suspect if !was_suspect => {
                self.raised += 1;
                self.first_raised_at.get_or_insert(now);
            }
            Health::Dead if was_suspect => self.confirmed += 1,
            Health::Alive if was_suspect => self.refuted += 1,
            _ => {}
        }
    }

    /// How long after `since` the first suspicion was raised (`None`: none yet,
    /// or only before `since`).
    pub fn time_to_first(&self, since: Duration) -> Option<Duration> {
        self.first_raised_at.and_then(|at| at.checked_sub(since))
    }
}

impl Metrics {
    /// The watch `id` (`None` after a reset).
    pub fn watch(&self, id: WatchId) -> Option<&Watch> {
        self.watches.get(id.0)
    }

    /// Forgets everything measured so far.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The latencies of finished watches of `kind` (to 100% of observers).
    pub fn latencies(&self, kind: WatchKind) -> Vec<Duration> {
        self.watches
            .iter()
            .filter(|w| w.kind == kind)
            .filter_map(|w| w.all_at)
            .collect()
    }

    /// The latencies of watches of `kind` to 99.99% of observers.
    pub fn most_latencies(&self, kind: WatchKind) -> Vec<Duration> {
        self.watches
            .iter()
            .filter(|w| w.kind == kind)
            .filter_map(|w| w.most_at)
            .collect()
    }

    /// Watches of `kind` that neither finished nor were cancelled.
    pub fn unfinished(&self, kind: WatchKind) -> usize {
        self.watches
            .iter()
            .filter(|w| w.kind == kind && !w.is_done())
            .count()
    }
}

/// One name claimed by two live processes (`Fault::StartTwin`): how the
/// cluster's view of the name moved.
#[derive(Clone, Debug, Serialize)]
pub struct Conflict {
    /// The node whose name was taken (its index keys every row of the name).
    pub subject: usize,
    /// The second process's node index.
    pub twin: usize,
    /// When the second process started.
    pub since: Duration,
    /// When a node first reported the conflict (`Event::NameConflict`: the
    /// simulator's `observe` calls [`detect`](Self::detect)); `None` while
    /// nobody has. [`incarnation_growth`](Self::incarnation_growth) counts from
    /// detection, or from the start while there is none.
    pub detected_at: Option<Duration>,
    /// Each time a tracker write anywhere raised the highest incarnation of the
    /// name seen so far: (when, that incarnation). The first entry is the
    /// subject's own incarnation when the second process started.
    pub incarnations: Vec<(Duration, u64)>,
    /// Tracker writes anywhere that moved the name's row to another address.
    pub addr_flips: u64,
}

impl Conflict {
    /// A conflict starting at `since` with the name at `incarnation`.
    pub fn new(subject: usize, twin: usize, since: Duration, incarnation: u64) -> Self {
        Self {
            subject,
            twin,
            since,
            detected_at: None,
            incarnations: vec![(since, incarnation)],
            addr_flips: 0,
        }
    }

    /// A node reported the conflict at `at` (the first report counts). The
    /// simulator calls this on every `Event::NameConflict` about the name.
    pub fn detect(&mut self, at: Duration) {
        self.detected_at.get_or_insert(at);
    }

    /// Records a row of the name at `incarnation`, written at `at`.
    pub fn saw(&mut self, at: Duration, incarnation: u64) {
        if self
            .incarnations
            .last()
            .is_none_or(|&(_, i)| incarnation > i)
        {
            self.incarnations.push((at, incarnation));
        }
    }

    /// The highest incarnation of the name seen by `at`.
    pub fn incarnation_at(&self, at: Duration) -> u64 {
        self.incarnations
            .iter()
            .take_while(|(t, _)| *t <= at)
            .last()
            .map_or(0, |&(_, i)| i)
    }

    /// How much the name's incarnation grew over `span` from detection (from
    /// the second process's start while nothing detects it), given that the
    /// run reached `now`; `None` when it did not reach the end of the span.
    pub fn incarnation_growth(&self, span: Duration, now: Duration) -> Option<u64> {
        let from = self.detected_at.unwrap_or(self.since);
        let to = from + span;
        (to <= now).then(|| self.incarnation_at(to) - self.incarnation_at(from))
    }
}

/// Traffic counters at one moment, to subtract for a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Datagrams sent.
    pub packets: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Wakeups of the nodes ([`Metrics::wakes`]).
    pub wakes: u64,
}

/// [`Traffic`] per node per second over a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TrafficRate {
    /// Datagrams sent.
    pub msgs: f64,
    /// Bytes sent.
    pub bytes: f64,
    /// Wakeups.
    pub wakes: f64,
}

impl Traffic {
    /// Per node per second over `window`, from `self` (earlier) to `later`.
    pub fn rate(self, later: Traffic, nodes: usize, window: Duration) -> TrafficRate {
        let per = nodes.max(1) as f64 * window.as_secs_f64().max(f64::MIN_POSITIVE);
        TrafficRate {
            msgs: (later.packets - self.packets) as f64 / per,
            bytes: (later.bytes - self.bytes) as f64 / per,
            wakes: (later.wakes - self.wakes) as f64 / per,
        }
    }
}

/// The nearest-rank percentile `p` (in `0.0..=100.0`) of `values`, or `None` when empty.
pub fn percentile<T: Copy + Ord>(values: &[T], p: f64) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The nearest-rank percentile of floating-point values (NaNs sort last).
pub fn percentile_f64(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The resident memory of this process, in bytes, read from `/proc/self/statm`
/// (Linux only; `None` elsewhere). Used to measure the core's memory per tracked
/// node without a counting allocator (which would need `unsafe`).
pub fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
        assert_eq!(percentile_f64(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
    }

    #[test]
    fn watch_reports_most_and_all_and_forgets_departed_observers() {
        let mut watch = Watch::new(WatchKind::Crash, 0, NodeStatus::Offline, 10 * MS, 4);
        watch.set(0, Some(NodeStatus::Offline)); // the subject itself does not count
        watch.set(1, Some(NodeStatus::Offline));
        watch.update(20 * MS, 3);
        assert_eq!(watch.most_at, None);
        watch.set(2, Some(NodeStatus::Offline));
        watch.set(2, Some(NodeStatus::Offline)); // idempotent
        watch.update(30 * MS, 3);
        assert!(!watch.is_done());
        // Observer 3 crashes before noticing: the two others are everyone.
        watch.set(3, None);
        watch.update(40 * MS, 2);
        assert_eq!(watch.all_at, Some(30 * MS));
        assert_eq!(watch.most_at, Some(30 * MS));
        assert!(watch.is_done());
    }

    #[test]
    fn a_conflict_counts_incarnation_growth_from_detection_or_else_from_its_start() {
        let s = Duration::from_secs(1);
        let mut conflict = Conflict::new(3, 9, 10 * s, 4);
        conflict.saw(11 * s, 6);
        conflict.saw(12 * s, 5); // lower: not a raise
        conflict.saw(40 * s, 30);
        conflict.saw(80 * s, 90);
        assert_eq!(conflict.incarnation_at(12 * s), 6);
        assert_eq!(
            conflict.incarnation_growth(60 * s, 69 * s),
            None,
            "not reached"
        );
        assert_eq!(conflict.incarnation_growth(60 * s, 70 * s), Some(26));
        conflict.detect(20 * s);
        conflict.detect(30 * s); // the first report counts
        assert_eq!(conflict.incarnation_growth(60 * s, 80 * s), Some(84));
    }

    #[test]
    fn traffic_rate_is_per_node_per_second() {
        let a = Traffic {
            packets: 0,
            bytes: 0,
            wakes: 40,
        };
        let b = Traffic {
            packets: 200,
            bytes: 20_000,
            wakes: 340,
        };
        assert_eq!(
            a.rate(b, 10, Duration::from_secs(2)),
            TrafficRate {
                msgs: 10.0,
                bytes: 1000.0,
                wakes: 15.0
            }
        );
    }

    #[test]
    fn resident_memory_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(resident_memory().is_some_and(|m| m > 0));
        }
    }
}
