//! The grey-zone scenarios: partitions of a chosen length, a split
//! that outlasts `offline_retention`, two clusters merging, heavy loss, slow
//! members, two processes under one name. Their faults and their figures.

use std::time::Duration;

use beethoven_core::Config;

use super::{Params, ScenarioKind};
use crate::fault::{Fault, HostFate};
use crate::report::GreyFigures;
use crate::sim::{Formation, Sim};

/// When the partition (or the merge) happens, from the window's start.
pub(super) const PARTITION_AT: Duration = Duration::from_secs(1);
/// How much of the window follows a heal at least (twice the nodes' default
/// `rejoin_interval`: a merge that waits for the slow seed re-probe is seen).
pub(super) const AFTER_HEAL: Duration = Duration::from_secs(60);
/// The span the name's incarnation growth is measured over.
pub(super) const CONFLICT_SPAN: Duration = Duration::from_secs(60);
/// The shortest `name-conflict` window: the span, after a detection within 10 s.
pub(super) const CONFLICT_WINDOW: Duration = Duration::from_secs(70);
/// How long `slow` measures the quiet figure before the delays.
const QUIET: Duration = Duration::from_secs(30);
/// `partition-retention`'s `offline_retention` unless one is given.
const DEFAULT_RETENTION: Duration = Duration::from_secs(60);
/// The figures over this stretch of the window for the traffic peak.
const PEAK_SPAN: usize = 10;

/// `offline_retention` of `partition-retention`.
fn retention(params: &Params) -> Duration {
    params.retention.unwrap_or(DEFAULT_RETENTION)
}

/// How long the partition of `partition` (when given) and
/// `partition-retention` (default: the retention plus 60 s) lasts.
pub(super) fn partition_length(params: &Params) -> Option<Duration> {
    match params.scenario {
        ScenarioKind::Partition => params.partition,
        ScenarioKind::PartitionRetention => Some(
            params
                .partition
                .unwrap_or(retention(params) + Duration::from_secs(60)),
        ),
        _ => None,
    }
}

/// The node config: `partition-retention` sets the retention.
pub(super) fn config(params: &Params) -> Config {
    let mut config = params.config.clone();
    if params.scenario == ScenarioKind::PartitionRetention {
        config.offline_retention = Some(retention(params));
    }
    config
}

/// The formation: `split-merge` starts from two clusters.
pub(super) fn formation(params: &Params) -> Formation {
    match params.scenario {
        ScenarioKind::SplitMerge => Formation::Split,
        _ => params.formation,
    }
}

/// Runs the quiet cluster for a while; its datagrams per node per second.
pub(super) fn quiet_figure(sim: &mut Sim) -> f64 {
    let before = sim.traffic();
    sim.run_for(QUIET);
    before.rate(sim.traffic(), sim.up().len(), QUIET).msgs
}

/// What a grey-zone scenario scheduled.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// A grey-zone scenario: the report carries [`GreyFigures`].
    grey: bool,
    /// Whether the liveness gate follows the window.
    pub(super) gate: bool,
    /// `split-merge`: when the clusters can first reach each other.
    pub(super) merge_at: Option<Duration>,
    /// The partition's length.
    partition: Option<Duration>,
    /// `slow`: the slow members.
    slow: Vec<usize>,
}

impl Plan {
    /// Whether the report carries grey-zone figures.
    pub(super) fn is_grey(&self) -> bool {
        self.grey
    }
}

/// Schedules a grey-zone scenario's faults from `start`.
pub(super) fn schedule(
    sim: &mut Sim,
    params: &Params,
    rng: &mut fastrand::Rng,
    start: Duration,
) -> Plan {
    let n = params.nodes;
    let mut plan = Plan {
        grey: true,
        gate: true,
        ..Plan::default()
    };
    match params.scenario {
        ScenarioKind::Partition | ScenarioKind::PartitionRetention => {
            let Some(length) = partition_length(params) else {
                return plan;
            };
            let size = if params.scenario == ScenarioKind::Partition {
                n.div_ceil(3)
            } else {
                n * 2 / 5
            };
            let offset = rng.usize(..n.max(1));
            let group: Vec<usize> = (0..size).map(|k| (offset + k) % n).collect();
            let groups = vec![group];
            sim.schedule(start + PARTITION_AT, Fault::Partition { groups });
            sim.schedule(start + PARTITION_AT + length, Fault::Heal);
            plan.partition = Some(length);
        }
        ScenarioKind::SplitMerge if n >= 2 => {
            let half = n / 2;
            let node = half + rng.usize(..n - half);
            let through = vec![rng.usize(..half)];
            let at = start + PARTITION_AT;
            sim.schedule(at, Fault::Join { node, through });
            plan.merge_at = Some(at);
        }
        ScenarioKind::Loss if n >= 1 => {
            let node = rng.usize(..n);
            let host = HostFate::Vanishes;
            sim.schedule(start + params.window() / 2, Fault::Crash { node, host });
        }
        ScenarioKind::Slow => {
            let mut candidates: Vec<usize> = (0..n).collect();
            let (min, max) = params.slow_delay;
            for _ in 0..params.slow_members.min(n) {
                let node = candidates.swap_remove(rng.usize(..candidates.len()));
                plan.slow.push(node);
                sim.schedule(start, Fault::Delay { node, min, max });
            }
            plan.slow.sort_unstable();
            let crash_at = start + params.window() * 3 / 4;
            for &node in plan.slow.iter().take(params.slow_crashes) {
                let host = HostFate::Vanishes;
                sim.schedule(crash_at, Fault::Crash { node, host });
            }
        }
        ScenarioKind::NameConflict if n >= 1 => {
            let of = rng.usize(..n);
            sim.schedule(start, Fault::StartTwin { node: n, of });
            plan.gate = false;
        }
        _ => {}
    }
    plan
}

/// Per-node core counters at one moment (`None`: not running then).
#[derive(Debug)]
pub(super) struct Counters(Vec<Option<[u64; 4]>>);

impl Counters {
    /// Datagrams sent, refutations, failed probes and late acks of every node now.
    pub(super) fn take(sim: &Sim) -> Self {
        Self(
            (0..sim.len())
                .map(|i| {
                    let stats = sim.node(i)?.stats();
                    Some([
                        stats.packets_sent,
                        stats.refutations,
                        stats.probes_failed,
                        stats.late_acks,
                    ])
                })
                .collect(),
        )
    }

    /// Each node's growth of each counter from `self` to `later` (nodes
    /// running at both moments).
    fn growth(&self, later: &Counters) -> Vec<(usize, [u64; 4])> {
        self.0
            .iter()
            .zip(&later.0)
            .enumerate()
            .filter_map(|(i, (a, b))| {
                let (a, b) = ((*a)?, (*b)?);
                Some((i, std::array::from_fn(|k| b[k].saturating_sub(a[k]))))
            })
            .collect()
    }
}

/// The grey-zone figures of a finished window of length `window`.
/// `per_second` holds the cluster's datagrams sent so far at the window's
/// start and after each of its seconds.
pub(super) fn figures(
    sim: &Sim,
    params: &Params,
    plan: &Plan,
    before: &Counters,
    per_second: &[u64],
    window: Duration,
    quiet: Option<f64>,
) -> GreyFigures {
    let m = sim.metrics();
    let secs = window.as_secs_f64().max(f64::MIN_POSITIVE);
    let up = sim.up().len().max(1) as f64;
    let growth = before.growth(&Counters::take(sim));
    let rate = |sent: u64| sent as f64 / secs;
    let busiest = |slow_too: bool| {
        growth
            .iter()
            .filter(|(i, _)| slow_too || !plan.slow.contains(i))
            .map(|(_, g)| rate(g[0]))
            .fold(0.0, f64::max)
    };
    let total = |k: usize| growth.iter().map(|(_, g)| g[k]).sum::<u64>();
    let msgs = (per_second.last().copied().unwrap_or(0) - per_second[0]) as f64 / (up * secs);
    let span = PEAK_SPAN.min(per_second.len().saturating_sub(1)).max(1);
    let peak = per_second
        .windows(span + 1)
        .map(|w| (w[span] - w[0]) as f64 / (up * span as f64))
        .fold(0.0, f64::max);
    let conflict = m.conflicts.first();
    GreyFigures {
        partition_s: plan.partition.map(|p| p.as_secs_f64()),
        retention_s: (params.scenario == ScenarioKind::PartitionRetention)
            .then(|| retention(params).as_secs_f64()),
        merged_after_s: None,
        degraded_declared: m.degraded_declared.len(),
        apart_declared: m.apart_declared.len(),
        slow_members: plan.slow.clone(),
        quiet_msgs_per_node_s: quiet,
        msgs_ratio_to_quiet: quiet.map(|q| msgs / q.max(f64::MIN_POSITIVE)),
        max_node_msgs_per_s: busiest(true),
        max_healthy_node_msgs_per_s: (!plan.slow.is_empty()).then(|| busiest(false)),
        peak_msgs_per_node_s: peak,
        msgs_per_node_s_by_minute: Vec::new(),
        refutations: total(1),
        probes_failed: total(2),
        late_acks: total(3),
        conflict_detected_after_s: conflict
            .and_then(|c| Some((c.detected_at? - c.since).as_secs_f64())),
        conflict_incarnation_growth_60s: conflict
            .and_then(|c| c.incarnation_growth(CONFLICT_SPAN, sim.now())),
        conflict_addr_flips: conflict.map(|c| c.addr_flips),
        conflict_offline_writes: conflict
            .map(|c| m.offline_writes_about.get(&c.subject).copied().unwrap_or(0)),
    }
}
