//! Named scenarios: what the `beethoven-sim` binary runs, and the building
//! blocks of the performance-target tests.
//!
//! Each scenario forms a cluster over a loss-free network, waits until
//! formation's gossip has died down, resets the metrics, turns the model's loss
//! on (`--loss`: from the window's start, never during formation), runs its
//! faults over the given duration (traffic is measured over that window), then,
//! if it had faults, passes the liveness gate, which heals that loss first (see
//! [`Sim::liveness_gate`]). The result is a [`Report`].
//!
//! The grey-zone scenarios (partitions of a chosen length,
//! `partition-retention`, `split-merge`, `loss`, `slow`, `name-conflict`) are
//! set up in the `grey` submodule and add their figures to the report's
//! [`GreyFigures`](crate::report::GreyFigures). The correlated-trouble ones
//! (`brownout`, `bursts`, `rack`) are set up in the `hostile` submodule.

pub mod code;
mod grey;
mod hostile;
pub(crate) mod kind;
pub mod query;
pub mod user_events;

pub use hostile::BrownoutSpec;
pub use kind::ScenarioKind;

use std::time::{Duration, Instant};

use beethoven_core::{Config, Tags};
use serde::Serialize;

use crate::fault::{Fault, FaultKind, HostFate, random_schedule};
use crate::metrics::{TrafficRate, WatchKind, percentile};
use crate::network::NetworkModel;
pub use crate::report::Report;
use crate::sim::{BuildError, Formation, Sim};

/// What to run.
#[derive(Clone, Debug, Serialize)]
pub struct Params {
    /// The scenario.
    pub scenario: ScenarioKind,
    /// Cluster size.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// The network.
    pub network: NetworkModel,
    /// The measured window (faults happen within it).
    pub duration: Duration,
    /// How many nodes join in `join-storm` (default: a tenth, at least one).
    pub joiners: Option<usize>,
    /// What a crash in `crash` leaves behind: a vanished host (default) or a host
    /// that bounces datagrams with unreachable hints.
    pub crash_host: HostFate,
    /// How the cluster is formed before the window.
    pub formation: Formation,
    /// `partition` and `partition-retention`: how long the network stays
    /// partitioned, from 1 s into the window. The window is stretched to at
    /// least 1 s + this + 60 s so the heal is measured.
    pub partition: Option<Duration>,
    /// `partition-retention`: the nodes' `offline_retention` (default 60 s).
    pub retention: Option<Duration>,
    /// `slow`: how many members are slow (default 8).
    pub slow_members: usize,
    /// `slow`: the range every datagram to a slow member is late by (default 1–5 s).
    pub slow_delay: (Duration, Duration),
    /// `slow`: how many of the slow members crash silently at three quarters
    /// of the window, once the cluster has learned they answer late (default
    /// 0): the detection of a member waited for patiently.
    pub slow_crashes: usize,
    /// Every node starts with tags of this many encoded bytes ([`sized_tags`]);
    /// 0 (default): none.
    pub tag_bytes: usize,
    /// `brownout`: the brownouts.
    pub brownout: BrownoutSpec,
    /// `bursts`: the burst model.
    pub bursts: crate::network::BurstModel,
    /// `rack`: the share of nodes that fail at once (default 0.1, at most half).
    pub rack_fraction: f64,
    /// `user-events`: events sent per second, cluster-wide (default 10).
    pub event_rate: f64,
    /// `user-events`: each event's payload, bytes (default 100).
    pub event_bytes: usize,
    /// The node config.
    #[serde(skip)]
    pub config: Config,
}

impl Params {
    /// Defaults: 100 nodes, seed 1, a LAN, 60 s, the default config.
    pub fn new(scenario: ScenarioKind) -> Self {
        Self {
            scenario,
            nodes: 100,
            seed: 1,
            network: NetworkModel::lan(),
            duration: Duration::from_secs(60),
            joiners: None,
            crash_host: HostFate::Vanishes,
            formation: Formation::Join,
            partition: None,
            retention: None,
            slow_members: 8,
            slow_delay: (Duration::from_secs(1), Duration::from_secs(5)),
            slow_crashes: 0,
            tag_bytes: 0,
            brownout: BrownoutSpec::default(),
            bursts: crate::network::BurstModel::default(),
            rack_fraction: 0.1,
            event_rate: 10.0,
            event_bytes: 100,
            config: Config::for_cluster("sim"),
        }
    }

    /// The measured window: `duration`, stretched for a partition of a chosen
    /// length to 1 s + the partition + 60 s, and for `name-conflict` to 70 s
    /// (the incarnation growth is measured over 60 s from a detection within 10 s).
    pub fn window(&self) -> Duration {
        match self.scenario {
            ScenarioKind::Partition | ScenarioKind::PartitionRetention => {
                match grey::partition_length(self) {
                    Some(p) => self.duration.max(grey::PARTITION_AT + p + grey::AFTER_HEAL),
                    None => self.duration,
                }
            }
            ScenarioKind::NameConflict => self.duration.max(grey::CONFLICT_WINDOW),
            _ => self.duration,
        }
    }

    /// The loss the network gets from the window's start: `network.loss`, or
    /// when that is 0, 0.5 for `loss` and the loss between bursts for `bursts`.
    pub fn window_loss(&self) -> f64 {
        match self.scenario {
            ScenarioKind::Loss if self.network.loss == 0.0 => 0.5,
            _ => hostile::window_loss(self).unwrap_or(self.network.loss),
        }
    }
}

/// Tags of exactly `bytes` encoded bytes (or the fewest above it, for sizes
/// under 8), different for each `salt`: a `role` and a `meta` entry padded to size.
pub fn sized_tags(bytes: usize, salt: u64) -> Tags {
    if bytes == 0 {
        return Tags::new();
    }
    let role = format!("r{}", salt % 10);
    let make = |pad: usize| {
        let meta = format!("{salt:x}-{}", "x".repeat(pad));
        Tags::from_pairs([("role", role.as_str()), ("meta", meta.as_str())])
            .expect("two distinct keys")
    };
    let mut pad = bytes;
    loop {
        let tags = make(pad);
        if tags.encoded_len() <= bytes || pad == 0 {
            return tags;
        }
        pad -= 1;
    }
}

/// Runs a scenario. `progress` is told the simulated time done and the total,
/// about once per simulated second.
pub fn run(
    params: &Params,
    progress: &mut dyn FnMut(Duration, Duration),
) -> Result<Report, BuildError> {
    run_sim(params, progress, false).map(|(report, _)| report)
}

/// Runs a scenario as [`run`] does, recording its
/// [`Timeline`](crate::timeline::Timeline) from the window's start (for the
/// HTML report); returns the simulator too. The run is the same: same trace hash.
pub fn run_recorded(
    params: &Params,
    progress: &mut dyn FnMut(Duration, Duration),
) -> Result<(Report, Sim), BuildError> {
    run_sim(params, progress, true)
}

fn run_sim(
    params: &Params,
    progress: &mut dyn FnMut(Duration, Duration),
    record: bool,
) -> Result<(Report, Sim), BuildError> {
    #[allow(clippy::disallowed_methods)] // wall time of the run, reported only
    let wall = Instant::now();
    let standby = match params.scenario {
        ScenarioKind::JoinStorm => params.joiners.unwrap_or((params.nodes / 10).max(1)),
        ScenarioKind::NameConflict => 1,
        _ => 0,
    };
    let mut sim = Sim::builder()
        .nodes(params.nodes)
        .standby(standby)
        .seed(params.seed)
        .config(grey::config(params))
        .network(NetworkModel {
            loss: 0.0,
            ..params.network.clone()
        })
        .formation(grey::formation(params))
        .tags({
            let bytes = params.tag_bytes;
            move |i| sized_tags(bytes, i as u64)
        })
        .build()?;
    let formed_at = sim.now();
    // Let formation's gossip die down so the window measures a steady state.
    let quiet_limit = 10 * sim.timing().liveness;
    // A cluster that never quiets down is measured anyway (its traffic shows it).
    let _ = sim.run_until(quiet_limit, Duration::from_millis(100), Sim::quiet);
    sim.metrics_mut().reset();
    let quiet_after = sim.now() - formed_at;
    let formation_wall = wall.elapsed();
    let mut rng = fastrand::Rng::with_seed(params.seed ^ 0x5ce7_a210);
    let quiet = (params.scenario == ScenarioKind::Slow).then(|| grey::quiet_figure(&mut sim));
    let start = sim.now();
    if record {
        sim.record_timeline();
    }
    let loss = params.window_loss();
    if loss > 0.0 {
        sim.apply(Fault::Loss { loss });
    }
    let n = params.nodes;
    let d = params.window();
    let mut has_faults = true;
    let mut plan = grey::Plan::default();
    match params.scenario {
        ScenarioKind::Steady | ScenarioKind::UserEvents | ScenarioKind::Query => has_faults = false,
        ScenarioKind::Crash => {
            let mut at = Duration::from_secs(1);
            let mut victims: Vec<usize> = (0..n).collect();
            while at < d && victims.len() > n.div_ceil(2) {
                let node = victims.swap_remove(rng.usize(..victims.len()));
                let host = params.crash_host;
                sim.schedule(start + at, Fault::Crash { node, host });
                at += Duration::from_secs(10);
            }
        }
        ScenarioKind::Partition if params.partition.is_some() => {
            plan = grey::schedule(&mut sim, params, &mut rng, start);
        }
        ScenarioKind::PartitionRetention
        | ScenarioKind::SplitMerge
        | ScenarioKind::Loss
        | ScenarioKind::Slow
        | ScenarioKind::NameConflict => {
            plan = grey::schedule(&mut sim, params, &mut rng, start);
            has_faults = plan.gate;
        }
        ScenarioKind::Partition => {
            let offset = rng.usize(..n.max(1));
            let group: Vec<usize> = (0..n.div_ceil(3)).map(|k| (offset + k) % n).collect();
            sim.schedule(
                start + Duration::from_secs(1),
                Fault::Partition {
                    groups: vec![group],
                },
            );
            sim.schedule(start + d / 2, Fault::Heal);
        }
        ScenarioKind::Churn => {
            let kinds = [
                FaultKind::Crash,
                FaultKind::CrashWithHint,
                FaultKind::Restart,
                FaultKind::RestartElsewhere,
                FaultKind::Pause,
                FaultKind::Leave,
            ];
            let count = (d.as_secs() as usize / 2).max(1);
            let schedule = random_schedule(&mut rng, n, d, count, &kinds);
            sim.schedule_all(start, &schedule);
        }
        ScenarioKind::Pause => {
            let node = rng.usize(..n.max(1));
            let mut at = Duration::from_secs(30);
            while at < d {
                let duration = Duration::from_secs(2);
                sim.schedule(start + at, Fault::Pause { node, duration });
                at += Duration::from_secs(60);
            }
            has_faults = false;
        }
        ScenarioKind::Brownout | ScenarioKind::Bursts | ScenarioKind::Rack => {
            hostile::schedule(&mut sim, params, &mut rng, start);
        }
        ScenarioKind::JoinStorm => {
            for node in n..n + standby {
                sim.schedule(start + Duration::from_secs(1), Fault::Start { node });
            }
        }
        ScenarioKind::TagChange => {
            let every = d / 6;
            let bytes = if params.tag_bytes == 0 {
                64
            } else {
                params.tag_bytes
            };
            for k in 0..5u32 {
                let node = rng.usize(..n);
                let tags = sized_tags(bytes, 1_000_000 + u64::from(k));
                let at = start + Duration::from_secs(1) + every * k;
                sim.schedule(at, Fault::SetTags { node, tags });
            }
            has_faults = false;
        }
    }
    let before = sim.traffic();
    let counters = grey::Counters::take(&sim);
    let mut per_second = vec![before.packets];
    let step = Duration::from_secs(1);
    let mut done = Duration::ZERO;
    let mut convergence_after_heal = None;
    while done < d {
        let chunk = step.min(d - done);
        let target = start + done + chunk;
        // The clock starts at the heal, or when the clusters of `split-merge`
        // can first reach each other.
        let since = sim
            .last_heal()
            .or(plan.merge_at.filter(|&at| sim.now() >= at));
        if let Some(heal) = since
            && convergence_after_heal.is_none()
        {
            if sim
                .run_until(chunk, Duration::from_millis(50), Sim::settled)
                .is_ok()
            {
                convergence_after_heal = Some(sim.now() - heal);
            }
            let rest = target.saturating_sub(sim.now());
            sim.run_for(rest);
        } else {
            sim.run_for(chunk);
        }
        per_second.push(sim.traffic().packets);
        done += chunk;
        progress(done, d);
    }
    let traffic = before.rate(sim.traffic(), sim.up().len(), d);
    let grey = plan.is_grey().then(|| {
        let mut figures = grey::figures(&sim, params, &plan, &counters, &per_second, d, quiet);
        figures.msgs_per_node_s_by_minute = hostile::per_minute(&per_second, sim.up().len());
        if plan.merge_at.is_some() {
            figures.merged_after_s = convergence_after_heal.map(|t| t.as_secs_f64());
        }
        figures
    });
    let convergence_after_heal = if plan.merge_at.is_some() {
        None
    } else {
        convergence_after_heal
    };
    let gate = if has_faults {
        sim.mark("liveness gate: heal, restart, settle");
        Some(sim.liveness_gate(sim.timing().liveness))
    } else {
        None
    };
    let report = build_report(
        params,
        &sim,
        (formed_at, quiet_after),
        formation_wall,
        traffic,
        convergence_after_heal,
        grey,
        gate,
        wall,
    );
    Ok((report, sim))
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    params: &Params,
    sim: &Sim,
    (formed_at, quiet_after): (Duration, Duration),
    formation_wall: Duration,
    traffic: TrafficRate,
    convergence_after_heal: Option<Duration>,
    grey: Option<crate::report::GreyFigures>,
    gate: Option<Result<Duration, crate::invariant::Violation>>,
    wall: Instant,
) -> Report {
    let m = sim.metrics();
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let detections = m.latencies(WatchKind::Crash);
    let joins = m.latencies(WatchKind::Join);
    let joins_most = m.most_latencies(WatchKind::Join);
    let tag_spreads = m.latencies(WatchKind::Tags);
    let (gate_settled, gate_violation) = match gate {
        None => (None, None),
        Some(Ok(took)) => (Some(took.as_secs_f64()), None),
        Some(Err(v)) => (None, Some(v.to_string())),
    };
    Report {
        scenario: params.scenario,
        nodes: params.nodes,
        seed: params.seed,
        loss: params.window_loss(),
        latency_ms: params.network.latency.as_secs_f64() * 1000.0,
        duration_s: params.window().as_secs_f64(),
        formation: params.formation,
        formation_s: formed_at.as_secs_f64(),
        quiet_after_s: quiet_after.as_secs_f64(),
        formation_wall_s: formation_wall.as_secs_f64(),
        window_wall_s: (wall.elapsed() - formation_wall).as_secs_f64(),
        detections: detections.len(),
        undetected: m.unfinished(WatchKind::Crash),
        detection_p50_s: secs(percentile(&detections, 50.0)),
        detection_p99_s: secs(percentile(&detections, 99.0)),
        detection_latencies_s: detections.iter().map(Duration::as_secs_f64).collect(),
        false_offline: m.false_offline.len(),
        offline_writes: m.offline_writes,
        offline_writes_untouched: {
            let touched = touched_nodes(sim);
            m.offline_writes_about
                .iter()
                .filter(|(node, _)| !touched.contains(node))
                .map(|(_, count)| count)
                .sum()
        },
        joins: joins.len(),
        join_latencies_s: joins.iter().map(Duration::as_secs_f64).collect(),
        join_most_p99_s: secs(percentile(&joins_most, 99.0)),
        join_all_p50_s: secs(percentile(&joins, 50.0)),
        join_all_p99_s: secs(percentile(&joins, 99.0)),
        tag_bytes: params.tag_bytes,
        tag_changes: tag_spreads.len(),
        tag_spread_p50_s: secs(percentile(&tag_spreads, 50.0)),
        tag_spread_p99_s: secs(percentile(&tag_spreads, 99.0)),
        msgs_per_node_s: traffic.msgs,
        bytes_per_node_s: traffic.bytes,
        wakes_per_node_s: traffic.wakes,
        convergence_after_heal_s: secs(convergence_after_heal),
        grey,
        settled_after_s: gate_settled,
        gate_violation,
        violations: sim.violation_count(),
        first_violation: sim.violations().first().map(ToString::to_string),
        faults_fired: sim
            .outcomes()
            .filter(|(_, o)| matches!(o, Some(crate::fault::Outcome::Fired)))
            .count(),
        faults_scheduled: sim.outcomes().count(),
        unreachable_hints: m.unreachable_hints,
        steps: sim.steps(),
        trace_hash: format!("{:016x}", sim.trace().hash()),
        memory_per_tracked_node_bytes: None,
        wall_s: wall.elapsed().as_secs_f64(),
    }
}

/// Nodes any scheduled fault touched (partitions and link rules included).
fn touched_nodes(sim: &Sim) -> std::collections::BTreeSet<usize> {
    let mut touched = std::collections::BTreeSet::new();
    for (scheduled, _) in sim.outcomes() {
        match &scheduled.fault {
            Fault::Partition { groups } => touched.extend(groups.iter().flatten().copied()),
            Fault::OneWay { from, to } => touched.extend(from.iter().chain(to).copied()),
            Fault::Link { from, to, .. } => touched.extend([*from, *to]),
            Fault::Join { node, through } => touched.extend(through.iter().chain([node])),
            Fault::StartTwin { node, of } => touched.extend([*node, *of]),
            fault => touched.extend(fault.node()),
        }
    }
    touched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_runs_on_a_small_cluster_without_violations() {
        for scenario in [
            ScenarioKind::Steady,
            ScenarioKind::Crash,
            ScenarioKind::Partition,
            ScenarioKind::Churn,
            ScenarioKind::Pause,
            ScenarioKind::JoinStorm,
        ] {
            let params = Params {
                nodes: 8,
                duration: Duration::from_secs(40),
                ..Params::new(scenario)
            };
            let report = run(&params, &mut |_, _| {}).expect("forms");
            assert_eq!(
                report.violations, 0,
                "{scenario:?}: {:?}",
                report.first_violation
            );
            assert_eq!(report.gate_violation, None, "{scenario:?}");
            assert_eq!(report.faults_fired, report.faults_scheduled, "{scenario:?}");
        }
    }

    #[test]
    fn every_grey_zone_scenario_runs_on_a_small_cluster_and_reports_its_figures() {
        let small = |scenario| Params {
            nodes: 10,
            duration: Duration::from_secs(20),
            ..Params::new(scenario)
        };
        let mut partition = small(ScenarioKind::Partition);
        partition.partition = Some(Duration::from_secs(5));
        let mut retention = small(ScenarioKind::PartitionRetention);
        retention.retention = Some(Duration::from_secs(5));
        retention.partition = Some(Duration::from_secs(15));
        let mut slow = small(ScenarioKind::Slow);
        slow.slow_members = 2;
        let mut loss = small(ScenarioKind::Loss);
        loss.network = NetworkModel::lan().with_loss(0.1);
        for params in [
            partition,
            retention,
            small(ScenarioKind::SplitMerge),
            loss,
            slow,
            small(ScenarioKind::NameConflict),
        ] {
            let scenario = params.scenario;
            let report = run(&params, &mut |_, _| {}).expect("forms");
            assert_eq!(report.faults_fired, report.faults_scheduled, "{scenario:?}");
            assert!(report.faults_fired > 0, "{scenario:?}");
            let grey = report.grey.as_ref().expect("grey-zone figures");
            assert!(
                report.table().contains("declared while apart"),
                "{scenario:?}"
            );
            match scenario {
                ScenarioKind::Partition => {
                    assert_eq!(report.duration_s, 66.0, "1 s + 5 s + 60 s");
                    assert_eq!(grey.partition_s, Some(5.0));
                    assert!(grey.apart_declared > 0, "both sides declared the other");
                    assert!(report.convergence_after_heal_s.is_some());
                }
                ScenarioKind::PartitionRetention => {
                    assert_eq!(grey.retention_s, Some(5.0));
                    assert!(
                        report.settled_after_s.is_some(),
                        "{:?}",
                        report.gate_violation
                    );
                }
                ScenarioKind::SplitMerge => {
                    assert!(grey.merged_after_s.is_some());
                    assert_eq!(report.convergence_after_heal_s, None);
                }
                ScenarioKind::Loss => {
                    assert_eq!(report.loss, 0.1);
                    assert_eq!(report.detections, 1, "the crash is detected");
                    assert!(report.settled_after_s.is_some(), "the gate heals the loss");
                }
                ScenarioKind::Slow => {
                    assert_eq!(grey.slow_members.len(), 2);
                    assert!(grey.quiet_msgs_per_node_s.is_some_and(|q| q > 0.0));
                    assert!(grey.max_healthy_node_msgs_per_s.is_some());
                }
                ScenarioKind::NameConflict => {
                    assert_eq!(report.duration_s, 70.0);
                    assert!(
                        grey.conflict_detected_after_s.is_some_and(|t| t <= 5.0),
                        "the core reports the conflict: {:?}",
                        grey.conflict_detected_after_s
                    );
                    assert!(grey.conflict_incarnation_growth_60s.is_some());
                    assert!(grey.conflict_addr_flips.is_some());
                    assert_eq!(report.settled_after_s, None, "no gate");
                }
                _ => unreachable!("only grey-zone scenarios here"),
            }
        }
    }

    #[test]
    fn the_correlated_trouble_scenarios_fire_their_faults_on_a_small_cluster() {
        for scenario in [
            ScenarioKind::Brownout,
            ScenarioKind::Bursts,
            ScenarioKind::Rack,
        ] {
            let params = Params {
                nodes: 10,
                duration: Duration::from_secs(40),
                ..Params::new(scenario)
            };
            let report = run(&params, &mut |_, _| {}).expect("forms");
            assert!(report.faults_fired > 0, "{scenario:?}");
            assert_eq!(report.faults_fired, report.faults_scheduled, "{scenario:?}");
            assert_eq!(report.gate_violation, None, "{scenario:?}");
            match scenario {
                // One brownout at 15 s with a crash in it, a second at 45 s is past the window.
                ScenarioKind::Brownout => assert_eq!(report.detections, 1),
                ScenarioKind::Bursts => assert_eq!(report.loss, 0.02),
                _ => assert_eq!(report.detections, 1, "a tenth of 10 nodes"),
            }
        }
    }

    #[test]
    fn without_a_partition_length_the_partition_scenario_reports_as_before() {
        let params = Params {
            nodes: 6,
            duration: Duration::from_secs(20),
            ..Params::new(ScenarioKind::Partition)
        };
        let report = run(&params, &mut |_, _| {}).expect("forms");
        assert_eq!(report.grey, None);
        assert_eq!(report.duration_s, 20.0);
        assert!(!report.table().contains("declared while apart"));
    }

    #[test]
    fn the_same_params_give_the_same_trace() {
        let params = Params {
            nodes: 6,
            duration: Duration::from_secs(20),
            ..Params::new(ScenarioKind::Churn)
        };
        let a = run(&params, &mut |_, _| {}).expect("forms");
        let b = run(&params, &mut |_, _| {}).expect("forms");
        assert_eq!(a.trace_hash, b.trace_hash);
        assert_eq!(a.steps, b.steps);
    }
}
