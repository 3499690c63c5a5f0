//! Node and network faults, scripted schedules of them, and a planner that turns
//! random draws into a schedule whose every fault can actually fire.

use std::time::Duration;

use beethoven_core::Tags;
use serde::Serialize;

use crate::network::LinkRule;

/// What happens to the host when its process crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum HostFate {
    /// The process is gone but the host stays up: datagrams sent to it bounce, and
    /// about one round trip later the sender is told (`Node::handle_unreachable`),
    /// as an ICMP port-unreachable would.
    StaysUp,
    /// The host vanished: datagrams to it disappear without a trace.
    Vanishes,
}

/// One thing the simulator can do to the cluster at a chosen time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Fault {
    /// The node's process dies; its state is lost.
    Crash {
        /// Node index.
        node: usize,
        /// Whether senders get an unreachable hint.
        host: HostFate,
    },
    /// A crashed node comes back: a fresh process under the same name, which joins
    /// through a few running nodes.
    Restart {
        /// Node index.
        node: usize,
        /// Listen on a new address (a new port) instead of the old one.
        new_addr: bool,
    },
    /// The process stalls (GC, CPU starvation): inbound datagrams queue up and are
    /// handled on resume; its timers do not fire meanwhile.
    Pause {
        /// Node index.
        node: usize,
        /// How long it stalls.
        duration: Duration,
    },
    /// The process becomes slow: every datagram and timer takes `per_event` to
    /// handle, so work queues up behind it.
    Slow {
        /// Node index.
        node: usize,
        /// Processing time of one input.
        per_event: Duration,
        /// How long it stays slow.
        duration: Duration,
    },
    /// The node leaves gracefully; its process stops once the leave is reported finished.
    Leave {
        /// Node index.
        node: usize,
    },
    /// A standby node (built with [`SimBuilder::standby`](crate::SimBuilder::standby))
    /// starts and joins through a few running nodes.
    Start {
        /// Node index.
        node: usize,
    },
    /// A symmetric partition: each listed group is cut off from the others and from
    /// everyone not listed. Replaces an earlier symmetric partition.
    Partition {
        /// Groups of node indices.
        groups: Vec<Vec<usize>>,
    },
    /// Everything sent from `from` to `to` is dropped; the other direction works.
    OneWay {
        /// Senders.
        from: Vec<usize>,
        /// Receivers.
        to: Vec<usize>,
    },
    /// A rule on one directed link.
    Link {
        /// Sender.
        from: usize,
        /// Receiver.
        to: usize,
        /// The rule.
        rule: LinkRule,
    },
    /// Every datagram to `node` arrives late by a uniform draw from
    /// `min..=max` (drawn per datagram), until [`Fault::Heal`]: a member that
    /// is alive but whose inbound traffic is seconds late. With a `max` of at
    /// least the probe timeout the member is
    /// [degraded](crate::invariant::Standing::Degraded) for the accuracy invariant.
    Delay {
        /// Node index.
        node: usize,
        /// The shortest extra delay.
        min: Duration,
        /// The longest extra delay.
        max: Duration,
    },
    /// The whole network loses datagrams with this probability from now on,
    /// until [`Fault::Heal`], which restores the loss the simulator was built with.
    Loss {
        /// Probability that a datagram is lost, in `0.0..=1.0`.
        loss: f64,
    },
    /// A running node joins through the current addresses of other nodes (e.g.
    /// one cluster's node learns a seed of another cluster).
    Join {
        /// Node index.
        node: usize,
        /// The nodes whose addresses it is given as seeds.
        through: Vec<usize>,
    },
    /// A standby node starts as a *second* process under node `of`'s name, at
    /// its own (different) address, and joins through a few running nodes: two
    /// live processes claim one name. Both are
    /// [degraded](crate::invariant::Standing::Degraded) for the accuracy
    /// invariant while they run side by side.
    StartTwin {
        /// The standby node that starts.
        node: usize,
        /// The node whose name it takes.
        of: usize,
    },
    /// The running node replaces its tags (`Node::set_tags`); a
    /// [`WatchKind::Tags`](crate::WatchKind::Tags) watch measures how fast the
    /// change spreads. A later restart keeps these tags.
    SetTags {
        /// Node index.
        node: usize,
        /// The new tags.
        tags: Tags,
    },
    /// Correlated loss: from now, for `duration`, datagrams on `links`
    /// (directed sender → receiver pairs; empty: every link, the whole
    /// cluster) are lost with probability `loss` (or the loss in force, if
    /// higher), then the network is as before. A switch failing over, a
    /// congested uplink, a hypervisor stalling its vNICs. Weather, not a cut:
    /// healthy nodes declared offline during it are false declarations.
    /// [`BurstModel`](crate::network::BurstModel) schedules these.
    Brownout {
        /// Probability that a datagram is lost, in `0.0..=1.0`.
        loss: f64,
        /// How long it lasts.
        duration: Duration,
        /// The directed links it hits; empty: every link.
        links: Vec<(usize, usize)>,
    },
    /// Every partition, link rule, delay and brownout is removed, and loss set by
    /// [`Fault::Loss`] returns to the model's.
    Heal,
}

impl Fault {
    /// The node this fault is about, if it is about one node.
    pub fn node(&self) -> Option<usize> {
        match *self {
            Fault::Crash { node, .. }
            | Fault::Restart { node, .. }
            | Fault::Pause { node, .. }
            | Fault::Slow { node, .. }
            | Fault::Leave { node }
            | Fault::Start { node }
            | Fault::Delay { node, .. }
            | Fault::Join { node, .. }
            | Fault::SetTags { node, .. }
            | Fault::StartTwin { node, .. } => Some(node),
            _ => None,
        }
    }
}

/// A fault at a time. What the time counts from depends on where the
/// schedule is used: [`Sim::schedule`](crate::Sim::schedule) and
/// [`Sim::outcomes`](crate::Sim::outcomes) count from the start of the
/// simulation (formation included); a schedule given to
/// [`Sim::schedule_all`](crate::Sim::schedule_all) counts from the offset it is
/// given, and a [`Scenario`](crate::Scenario)'s schedule (and the strategies'
/// schedules) from the start of its chaos phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scheduled {
    /// When it fires (see above for from when).
    pub at: Duration,
    /// What fires.
    pub fault: Fault,
}

/// What became of a fault the simulator was asked to apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// It took effect.
    Fired,
    /// It could not take effect (e.g. crashing a node that is down), and why.
    Skipped(&'static str),
}

/// The kinds of fault the planner can draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum FaultKind {
    /// A crash; the host vanishes.
    Crash,
    /// A crash; the host stays up and bounces datagrams.
    CrashWithHint,
    /// A restart of a crashed node at its old address.
    Restart,
    /// A restart of a crashed node at a new address.
    RestartElsewhere,
    /// A pause of up to 3 s.
    Pause,
    /// Slow processing for a while.
    Slow,
    /// A graceful leave.
    Leave,
    /// A symmetric partition of a few nodes.
    Partition,
    /// A one-way partition of one node (it cannot hear, or cannot be heard).
    OneWay,
    /// A lossy, slow link.
    Link,
    /// Heal every partition and link rule.
    Heal,
    /// A cluster-wide brownout: 50–100 % loss for 0.2–3 s. Not in
    /// [`ALL`](Self::ALL) (see [`CORRELATED`](Self::CORRELATED)).
    Brownout,
}

impl FaultKind {
    /// The correlated kinds, drawn only when asked for: a brownout is meant
    /// to declare no one offline, which schedules of [`ALL`](Self::ALL) kept
    /// from before it existed do not assume.
    pub const CORRELATED: [FaultKind; 1] = [FaultKind::Brownout];

    /// Every independent kind (each hits one node, one link or one group).
    pub const ALL: [FaultKind; 11] = [
        FaultKind::Crash,
        FaultKind::CrashWithHint,
        FaultKind::Restart,
        FaultKind::RestartElsewhere,
        FaultKind::Pause,
        FaultKind::Slow,
        FaultKind::Leave,
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Link,
        FaultKind::Heal,
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Planned {
    Up,
    Crashed,
    Left,
}

/// Turns draws (a kind, a time, a number to pick nodes with) into a coherent
/// schedule: every fault it emits can fire when its time comes (a crash hits a
/// running node, a restart a crashed one, ...), and at most a third of the nodes
/// are down at once. Draws that cannot be made coherent are dropped.
#[derive(Clone, Debug)]
pub struct Planner {
    state: Vec<Planned>,
    /// Until when each node is paused or slow (its own faults must not overlap).
    busy_until: Vec<Duration>,
    /// Most nodes down (crashed or left) at once.
    max_down: usize,
    schedule: Vec<Scheduled>,
    last_at: Duration,
}

impl Planner {
    /// A planner for `nodes` running nodes.
    pub fn new(nodes: usize) -> Self {
        Self {
            state: vec![Planned::Up; nodes],
            busy_until: vec![Duration::ZERO; nodes],
            max_down: nodes.saturating_sub(1) / 3,
            schedule: Vec::new(),
            last_at: Duration::ZERO,
        }
    }

    /// Adds one draw at `at` (draws must come in time order; an earlier one is
    /// moved to the last time). Returns whether a fault was scheduled.
    pub fn push(&mut self, at: Duration, kind: FaultKind, pick: u64) -> bool {
        let at = at.max(self.last_at);
        let n = self.state.len();
        if n == 0 {
            return false;
        }
        let down = self.state.iter().filter(|s| **s != Planned::Up).count();
        let pick_where = |want: Planned, planner: &Self, idle: bool| {
            let candidates: Vec<usize> = (0..n)
                .filter(|&i| planner.state[i] == want && (!idle || planner.busy_until[i] <= at))
                .collect();
            (!candidates.is_empty()).then(|| candidates[(pick % candidates.len() as u64) as usize])
        };
        let fault = match kind {
            FaultKind::Crash | FaultKind::CrashWithHint => {
                if down >= self.max_down {
                    return false;
                }
                let Some(node) = pick_where(Planned::Up, self, false) else {
                    return false;
                };
                self.state[node] = Planned::Crashed;
                let host = if kind == FaultKind::Crash {
                    HostFate::Vanishes
                } else {
                    HostFate::StaysUp
                };
                Fault::Crash { node, host }
            }
            FaultKind::Restart | FaultKind::RestartElsewhere => {
                let Some(node) = pick_where(Planned::Crashed, self, false) else {
                    return false;
                };
                self.state[node] = Planned::Up;
                Fault::Restart {
                    node,
                    new_addr: kind == FaultKind::RestartElsewhere,
                }
            }
            FaultKind::Pause | FaultKind::Slow => {
                let Some(node) = pick_where(Planned::Up, self, true) else {
                    return false;
                };
                let duration = Duration::from_millis(200 + pick % 2800);
                self.busy_until[node] = at + duration;
                if kind == FaultKind::Pause {
                    Fault::Pause { node, duration }
                } else {
                    let per_event = Duration::from_micros(100 + (pick >> 8) % 4900);
                    Fault::Slow {
                        node,
                        per_event,
                        duration,
                    }
                }
            }
            FaultKind::Leave => {
                if down >= self.max_down {
                    return false;
                }
                let Some(node) = pick_where(Planned::Up, self, true) else {
                    return false;
                };
                self.state[node] = Planned::Left;
                Fault::Leave { node }
            }
            FaultKind::Partition => {
                let size = 1 + (pick % (n as u64 / 2).max(1)) as usize;
                let start = ((pick >> 16) % n as u64) as usize;
                let group: Vec<usize> = (0..size).map(|k| (start + k) % n).collect();
                Fault::Partition {
                    groups: vec![group],
                }
            }
            FaultKind::OneWay => {
                let node = (pick % n as u64) as usize;
                let others: Vec<usize> = (0..n).filter(|&i| i != node).collect();
                if others.is_empty() {
                    return false;
                }
                if (pick >> 16).is_multiple_of(2) {
                    Fault::OneWay {
                        from: vec![node],
                        to: others,
                    }
                } else {
                    Fault::OneWay {
                        from: others,
                        to: vec![node],
                    }
                }
            }
            FaultKind::Link => {
                let from = (pick % n as u64) as usize;
                let to = ((pick >> 16) % n as u64) as usize;
                if from == to {
                    return false;
                }
                Fault::Link {
                    from,
                    to,
                    rule: LinkRule {
                        blocked: false,
                        loss: Some(((pick >> 32) % 60) as f64 / 100.0),
                        extra_latency: Duration::from_millis((pick >> 40) % 50),
                    },
                }
            }
            FaultKind::Heal => Fault::Heal,
            FaultKind::Brownout => Fault::Brownout {
                loss: (50 + pick % 51) as f64 / 100.0,
                duration: Duration::from_millis(200 + (pick >> 8) % 2800),
                links: Vec::new(),
            },
        };
        self.last_at = at;
        self.schedule.push(Scheduled { at, fault });
        true
    }

    /// The schedule so far.
    pub fn schedule(&self) -> &[Scheduled] {
        &self.schedule
    }

    /// The finished schedule.
    pub fn finish(self) -> Vec<Scheduled> {
        self.schedule
    }
}

/// A random coherent schedule of `count` draws spread over `span`, from `kinds`.
pub fn random_schedule(
    rng: &mut fastrand::Rng,
    nodes: usize,
    span: Duration,
    count: usize,
    kinds: &[FaultKind],
) -> Vec<Scheduled> {
    let mut times: Vec<Duration> = (0..count)
        .map(|_| Duration::from_millis(rng.u64(0..=span.as_millis() as u64)))
        .collect();
    times.sort();
    let mut planner = Planner::new(nodes);
    for at in times {
        if kinds.is_empty() {
            break;
        }
        let kind = kinds[rng.usize(..kinds.len())];
        planner.push(at, kind, rng.u64(..));
    }
    planner.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planner_only_restarts_crashed_nodes_and_keeps_two_thirds_up() {
        let mut planner = Planner::new(9);
        let s = Duration::from_secs(1);
        assert!(
            !planner.push(s, FaultKind::Restart, 0),
            "nothing to restart"
        );
        assert!(planner.push(s, FaultKind::Crash, 4));
        assert!(planner.push(2 * s, FaultKind::CrashWithHint, 4));
        assert!(!planner.push(3 * s, FaultKind::Crash, 1), "a third is down");
        assert!(!planner.push(3 * s, FaultKind::Leave, 1), "a third is down");
        assert!(planner.push(4 * s, FaultKind::Restart, 0));
        let schedule = planner.finish();
        let Fault::Crash { node: first, .. } = schedule[0].fault else {
            panic!("first is a crash")
        };
        let Fault::Restart { node, .. } = schedule[2].fault else {
            panic!("third is a restart")
        };
        assert!(
            matches!(schedule[1].fault, Fault::Crash { node, host: HostFate::StaysUp } if node != first)
        );
        assert!(node == first || schedule[1].fault.node() == Some(node));
    }

    #[test]
    fn planner_does_not_overlap_pauses_of_one_node() {
        let mut planner = Planner::new(1);
        let s = Duration::from_secs(1);
        assert!(planner.push(s, FaultKind::Pause, 2799)); // 2.999 s
        assert!(!planner.push(2 * s, FaultKind::Pause, 0), "still paused");
        assert!(planner.push(5 * s, FaultKind::Slow, 0));
    }

    #[test]
    fn planned_brownouts_are_cluster_wide_and_bounded() {
        let mut planner = Planner::new(5);
        for pick in [0, u64::MAX, 12_345_678] {
            assert!(planner.push(Duration::ZERO, FaultKind::Brownout, pick));
        }
        for scheduled in planner.finish() {
            let Fault::Brownout {
                loss,
                duration,
                links,
            } = scheduled.fault
            else {
                panic!("a brownout")
            };
            assert!((0.5..=1.0).contains(&loss), "{loss}");
            assert!(duration >= Duration::from_millis(200) && duration < Duration::from_secs(3));
            assert!(links.is_empty());
        }
    }

    #[test]
    fn random_schedules_are_seeded_and_in_time_order() {
        let make = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            random_schedule(&mut rng, 10, Duration::from_secs(30), 20, &FaultKind::ALL)
        };
        assert_eq!(make(1), make(1));
        let schedule = make(1);
        assert!(!schedule.is_empty());
        assert!(schedule.windows(2).all(|w| w[0].at <= w[1].at));
    }
}
