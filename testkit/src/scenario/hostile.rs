//! The correlated-trouble scenarios: brownouts (the whole network loses most
//! datagrams for a second or a few, then recovers), Gilbert–Elliott bursts of
//! loss, and a rack's worth of nodes failing at once. Slow members at any size
//! are the grey-zone `slow` scenario, whose traffic is also reported per minute.

use std::time::Duration;

use super::{Params, ScenarioKind};
use crate::fault::Fault;
use crate::network::BurstModel;
use crate::sim::Sim;
use crate::strategy::burst_schedule;

/// A brownout scenario's brownouts: how heavy, how long, how often.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BrownoutSpec {
    /// Loss during a brownout. Default 1 (nothing gets through).
    pub loss: f64,
    /// How long each lasts. Default 1 s.
    pub length: Duration,
    /// One every this long, the first after half of it. Default 30 s.
    pub every: Duration,
}

impl Default for BrownoutSpec {
    fn default() -> Self {
        Self {
            loss: 1.0,
            length: Duration::from_secs(1),
            every: Duration::from_secs(30),
        }
    }
}

/// The loss between bursts, which `bursts` runs with from the window's start
/// (the model's loss, when that is set).
pub(super) fn window_loss(params: &Params) -> Option<f64> {
    (params.scenario == ScenarioKind::Bursts && params.network.loss == 0.0)
        .then_some(params.bursts.loss_out)
}

/// Schedules a correlated-trouble scenario's faults from `start`.
///
/// - `brownout`: a brownout every `every` (the first at half of it), and in
///   each one node crashes silently halfway through it.
/// - `bursts`: cluster-wide bursts drawn from the burst model with the seed.
/// - `rack`: at 1 s, `rack_fraction` of the nodes crash at once (silently
///   unless `crash_host` says the host stays up): to the others a vanished
///   host is what a stopped (SIGSTOP) process is until it resumes.
pub(super) fn schedule(sim: &mut Sim, params: &Params, rng: &mut fastrand::Rng, start: Duration) {
    let n = params.nodes;
    let window = params.window();
    let host = params.crash_host;
    let mut victims: Vec<usize> = (0..n).collect();
    match params.scenario {
        ScenarioKind::Brownout => {
            let spec = &params.brownout;
            let every = spec.every.max(Duration::from_millis(1));
            let mut at = every / 2;
            while at < window {
                sim.schedule(
                    start + at,
                    Fault::Brownout {
                        loss: spec.loss,
                        duration: spec.length,
                        links: Vec::new(),
                    },
                );
                if victims.len() > n.div_ceil(2) {
                    let node = victims.swap_remove(rng.usize(..victims.len()));
                    sim.schedule(start + at + spec.length / 2, Fault::Crash { node, host });
                }
                at += every;
            }
        }
        ScenarioKind::Bursts => {
            let bursts: &BurstModel = &params.bursts;
            let schedule = burst_schedule(bursts, rng.u64(..), window, &[]);
            sim.schedule_all(start, &schedule);
        }
        ScenarioKind::Rack => {
            let count = ((n as f64 * params.rack_fraction).round() as usize).min(n / 2);
            for _ in 0..count.min(victims.len()) {
                let node = victims.swap_remove(rng.usize(..victims.len()));
                sim.schedule(start + Duration::from_secs(1), Fault::Crash { node, host });
            }
        }
        _ => {}
    }
}

/// Datagrams per node per second over each whole minute of the window, from
/// the cluster's datagrams sent at its start and after each of its seconds.
pub(super) fn per_minute(per_second: &[u64], nodes: usize) -> Vec<f64> {
    per_second
        .iter()
        .step_by(60)
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / (60.0 * nodes.max(1) as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_minute_rates_cover_whole_minutes_only() {
        let per_second: Vec<u64> = (0..=150).map(|s| s * 20).collect();
        assert_eq!(per_minute(&per_second, 10), [2.0, 2.0]);
        assert!(per_minute(&per_second[..30], 10).is_empty());
    }
}
