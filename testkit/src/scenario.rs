//! Named scenarios: what the `beethoven-sim` binary runs, and the building
//! blocks of the performance-target tests.
//!
//! Each scenario forms a cluster, resets the metrics, runs its faults over the
//! given duration (traffic is measured over that window), then, if it had
//! faults, passes the liveness gate. The result is a [`Report`].

use std::time::{Duration, Instant};

use beethoven_core::Config;
use serde::Serialize;

use crate::fault::{Fault, FaultKind, HostFate, random_schedule};
use crate::metrics::{WatchKind, percentile};
use crate::network::NetworkModel;
pub use crate::report::Report;
use crate::sim::{BuildError, Formation, Sim};

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ScenarioKind {
    /// No faults: traffic and false offline declarations of a healthy cluster.
    Steady,
    /// A crash every 10 s (silent unless `crash_host` says the host stays up):
    /// detection latency.
    Crash,
    /// A third of the nodes is cut off, then healed halfway: convergence after heal.
    Partition,
    /// Random crashes (silent and with unreachable hints), restarts (some at new
    /// addresses), pauses and leaves.
    Churn,
    /// One node paused 2 s every 60 s (the first at 30 s): no one else declared offline.
    Pause,
    /// A tenth of the cluster (at least one node, or `joiners`) joins at once:
    /// join spread.
    JoinStorm,
}

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
            config: Config::for_cluster("sim"),
        }
    }
}

/// Runs a scenario. `progress` is told the simulated time done and the total,
/// about once per simulated second.
pub fn run(
    params: &Params,
    progress: &mut dyn FnMut(Duration, Duration),
) -> Result<Report, BuildError> {
    #[allow(clippy::disallowed_methods)] // wall time of the run, reported only
    let wall = Instant::now();
    let standby = match params.scenario {
        ScenarioKind::JoinStorm => params.joiners.unwrap_or((params.nodes / 10).max(1)),
        _ => 0,
    };
    let mut sim = Sim::builder()
        .nodes(params.nodes)
        .standby(standby)
        .seed(params.seed)
        .config(params.config.clone())
        .network(params.network.clone())
        .formation(params.formation)
        .build()?;
    let formed_at = sim.now();
    // Let formation's gossip die down so the window measures a steady state.
    let quiet_limit = 10 * sim.timing().liveness;
    sim.run_until(quiet_limit, Duration::from_millis(100), Sim::quiet);
    sim.metrics_mut().reset();
    let quiet_after = sim.now() - formed_at;
    let formation_wall = wall.elapsed();
    let mut rng = fastrand::Rng::with_seed(params.seed ^ 0x5ce7_a210);
    let start = sim.now();
    let n = params.nodes;
    let d = params.duration;
    let mut has_faults = true;
    match params.scenario {
        ScenarioKind::Steady => has_faults = false,
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
        ScenarioKind::JoinStorm => {
            for node in n..n + standby {
                sim.schedule(start + Duration::from_secs(1), Fault::Start { node });
            }
        }
    }
    let before = sim.traffic();
    let step = Duration::from_secs(1);
    let mut done = Duration::ZERO;
    let mut convergence_after_heal = None;
    while done < d {
        let chunk = step.min(d - done);
        let target = start + done + chunk;
        if let Some(heal) = sim.last_heal()
            && convergence_after_heal.is_none()
        {
            if sim
                .run_until(chunk, Duration::from_millis(50), Sim::settled)
                .is_some()
            {
                convergence_after_heal = Some(sim.now() - heal);
            }
            let rest = target.saturating_sub(sim.now());
            sim.run_for(rest);
        } else {
            sim.run_for(chunk);
        }
        done += chunk;
        progress(done, d);
    }
    let traffic = before.rate(sim.traffic(), sim.up().len(), d);
    let gate = if has_faults {
        Some(sim.liveness_gate(sim.timing().liveness))
    } else {
        None
    };
    Ok(build_report(
        params,
        &sim,
        (formed_at, quiet_after),
        formation_wall,
        traffic,
        convergence_after_heal,
        gate,
        wall,
    ))
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    params: &Params,
    sim: &Sim,
    (formed_at, quiet_after): (Duration, Duration),
    formation_wall: Duration,
    (msgs, bytes): (f64, f64),
    convergence_after_heal: Option<Duration>,
    gate: Option<Result<Duration, crate::invariant::Violation>>,
    wall: Instant,
) -> Report {
    let m = sim.metrics();
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let detections = m.latencies(WatchKind::Crash);
    let joins = m.latencies(WatchKind::Join);
    let joins_most = m.most_latencies(WatchKind::Join);
    let (gate_settled, gate_violation) = match gate {
        None => (None, None),
        Some(Ok(took)) => (Some(took.as_secs_f64()), None),
        Some(Err(v)) => (None, Some(v.to_string())),
    };
    Report {
        scenario: params.scenario,
        nodes: params.nodes,
        seed: params.seed,
        loss: params.network.loss,
        latency_ms: params.network.latency.as_secs_f64() * 1000.0,
        duration_s: params.duration.as_secs_f64(),
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
        msgs_per_node_s: msgs,
        bytes_per_node_s: bytes,
        convergence_after_heal_s: secs(convergence_after_heal),
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
