//! `user-events`: random members send `rate` events a second cluster-wide,
//! each with a payload of `event_bytes`, over the window (with `--loss` from
//! its start). Figures: delivery latency, the delivery ratio, payload copies
//! received per node per event, and bytes per node per second against the
//! quiet cluster's; the [`DeliveryLog`] checker's faults.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::{Params, percentile};
use crate::delivery::{DeliveryFault, DeliveryLog};
use crate::fault::Fault;
use crate::network::NetworkModel;
use crate::sim::{BuildError, Sim};

/// How long the quiet cluster is measured before the events.
const QUIET: Duration = Duration::from_secs(10);
/// How long the run goes on after the last event, for the last deliveries.
const DRAIN: Duration = Duration::from_secs(10);

/// What a `user-events` run measured.
#[derive(Clone, Debug, Serialize)]
pub struct UserEventReport {
    /// Cluster size.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Events sent per second, cluster-wide.
    pub rate: f64,
    /// Each event's payload, bytes.
    pub event_bytes: usize,
    /// Loss over the window.
    pub loss: f64,
    /// Events sent (accepted by their origin).
    pub events_sent: usize,
    /// Sends refused (`SendEventError`).
    pub sends_refused: usize,
    /// Delivery latency after the send, ms: median.
    pub latency_p50_ms: Option<f64>,
    /// Delivery latency, ms: 99th percentile.
    pub latency_p99_ms: Option<f64>,
    /// Delivery latency, ms: the slowest.
    pub latency_max_ms: Option<f64>,
    /// Deliveries made of those owed (every node that ran from the send to
    /// the end, but the origin).
    pub delivery_ratio: f64,
    /// Payload copies received per node per event.
    pub copies_per_node_per_event: f64,
    /// Bytes sent per node per second, quiet.
    pub bytes_per_node_s_quiet: f64,
    /// Bytes sent per node per second while events were sent.
    pub bytes_per_node_s_events: f64,
    /// Payload bytes delivered per node per second.
    pub payload_bytes_delivered_per_node_s: f64,
    /// The growth of bytes per node per second over the payload bytes delivered.
    pub growth_over_payload: f64,
    /// The nodes' user-event counters, summed (`Stats::user_events`).
    pub counters: String,
    /// What the delivery checker found (twice, out of order, before the
    /// process's start, missing), the first ten written out.
    pub faults: usize,
    /// The first faults.
    pub first_faults: Vec<String>,
}

/// Runs `user-events` with `params` (its `event_rate` and `event_bytes`).
pub fn run(
    params: &Params,
    progress: &mut dyn FnMut(Duration, Duration),
) -> Result<UserEventReport, BuildError> {
    let log = DeliveryLog::new();
    let recorder = log.clone();
    let mut sim = Sim::builder()
        .nodes(params.nodes)
        .seed(params.seed)
        .config(params.config.clone())
        .network(NetworkModel {
            loss: 0.0,
            ..params.network.clone()
        })
        .formation(params.formation)
        .app(move |i, _| recorder.recorder(i))
        .build()?;
    let quiet_limit = 10 * sim.timing().liveness;
    let _ = sim.run_until(quiet_limit, Duration::from_millis(100), Sim::quiet);
    let n = params.nodes;
    let before = sim.traffic();
    sim.run_for(QUIET);
    let quiet = before.rate(sim.traffic(), n, QUIET).bytes;
    let loss = params.window_loss();
    if loss > 0.0 {
        sim.apply(Fault::Loss { loss });
    }
    let copies = |sim: &Sim| -> u64 {
        (0..n)
            .filter_map(|i| sim.node(i))
            .map(|node| node.stats().user_events.copies_received)
            .sum()
    };
    let copies_before = copies(&sim);
    let start = sim.now();
    let window = params.duration;
    let total = (window.as_secs_f64() * params.event_rate).round() as usize;
    let gap = Duration::from_secs_f64(1.0 / params.event_rate.max(f64::MIN_POSITIVE));
    let mut rng = fastrand::Rng::with_seed(params.seed ^ 0x00e7_e275);
    let mut payload = vec![0u8; params.event_bytes];
    let mut refused = 0;
    let traffic_start = sim.traffic();
    let mut last_progress = start;
    for k in 0..total {
        let up = sim.up();
        if let Some(&origin) = (!up.is_empty()).then(|| &up[rng.usize(..up.len())]) {
            payload
                .iter_mut()
                .zip(k.to_le_bytes().iter().cycle())
                .for_each(|(b, k)| *b = *k);
            if let Some(Err(_)) = log.send(&mut sim, origin, "sim", &payload) {
                refused += 1;
            }
        }
        let next = start + gap.mul_f64((k + 1) as f64);
        sim.run_for(next.saturating_sub(sim.now()));
        if sim.now() >= last_progress + Duration::from_secs(1) {
            last_progress = sim.now();
            progress(sim.now() - start, window + DRAIN);
        }
    }
    let sending = sim.now() - start;
    let with_events = traffic_start.rate(sim.traffic(), n, sending).bytes;
    let copies_during = copies(&sim) - copies_before;
    sim.run_for(DRAIN);
    progress(window + DRAIN, window + DRAIN);
    let end = sim.now();
    let up: Vec<bool> = (0..n).map(|i| sim.is_up(i)).collect();
    let mut sum = beethoven_core::UserEventStats::default();
    for node in (0..n).filter_map(|i| sim.node(i)) {
        let c = &node.stats().user_events;
        sum.pulls_sent += c.pulls_sent;
        sum.duplicates += c.duplicates;
        sum.gaps_skipped += c.gaps_skipped;
        sum.too_old += c.too_old;
        sum.rate_limited += c.rate_limited;
        sum.queue_full += c.queue_full;
        sum.invalid += c.invalid;
    }
    let counters = format!(
        "pulls {}, duplicates {}, gaps skipped {}, too old {}, rate limited {}, queue full {}, invalid {}",
        sum.pulls_sent,
        sum.duplicates,
        sum.gaps_skipped,
        sum.too_old,
        sum.rate_limited,
        sum.queue_full,
        sum.invalid
    );
    let faults = log.check(&up, end, DRAIN / 2);
    let owed = log.owed(&up, end, DRAIN / 2);
    let sent = log.sent();
    let sent_at: std::collections::BTreeMap<_, _> = sent.iter().map(|s| (&s.id, s.at)).collect();
    let deliveries = log.deliveries();
    let latencies: Vec<Duration> = deliveries
        .iter()
        .filter_map(|d| sent_at.get(&d.id).map(|&at| d.at.saturating_sub(at)))
        .collect();
    let ms = |p: f64| percentile(&latencies, p).map(|d| d.as_secs_f64() * 1000.0);
    let delivered_owed = owed.saturating_sub(
        faults
            .iter()
            .filter(|f| matches!(f, DeliveryFault::Missing { .. }))
            .count(),
    );
    let events = sent.len().max(1) as f64;
    let payload_rate = deliveries.len() as f64 * params.event_bytes as f64
        / (n as f64 * sending.as_secs_f64().max(f64::MIN_POSITIVE));
    Ok(UserEventReport {
        nodes: n,
        seed: params.seed,
        rate: params.event_rate,
        event_bytes: params.event_bytes,
        loss,
        events_sent: sent.len(),
        sends_refused: refused,
        latency_p50_ms: ms(50.0),
        latency_p99_ms: ms(99.0),
        latency_max_ms: ms(100.0),
        delivery_ratio: if owed == 0 {
            1.0
        } else {
            delivered_owed as f64 / owed as f64
        },
        copies_per_node_per_event: copies_during as f64 / (events * (n.max(2) - 1) as f64),
        bytes_per_node_s_quiet: quiet,
        bytes_per_node_s_events: with_events,
        payload_bytes_delivered_per_node_s: payload_rate,
        growth_over_payload: (with_events - quiet) / payload_rate.max(f64::MIN_POSITIVE),
        counters,
        faults: faults.len(),
        first_faults: faults.iter().take(10).map(|f| format!("{f:?}")).collect(),
    })
}

impl UserEventReport {
    /// The report as a table.
    pub fn table(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "user-events: {} nodes, seed {}, {} events/s of {} B, loss {}",
            self.nodes, self.seed, self.rate, self.event_bytes, self.loss
        );
        let rows = [
            ("events sent", self.events_sent.to_string()),
            ("sends refused", self.sends_refused.to_string()),
            ("delivery latency p50 (ms)", opt(self.latency_p50_ms)),
            ("delivery latency p99 (ms)", opt(self.latency_p99_ms)),
            ("delivery latency max (ms)", opt(self.latency_max_ms)),
            ("delivery ratio", format!("{:.5}", self.delivery_ratio)),
            (
                "payload copies per node per event",
                format!("{:.3}", self.copies_per_node_per_event),
            ),
            (
                "bytes/node/s quiet",
                format!("{:.0}", self.bytes_per_node_s_quiet),
            ),
            (
                "bytes/node/s with events",
                format!("{:.0}", self.bytes_per_node_s_events),
            ),
            (
                "payload bytes delivered/node/s",
                format!("{:.0}", self.payload_bytes_delivered_per_node_s),
            ),
            (
                "growth / payload delivered",
                format!("{:.2}x", self.growth_over_payload),
            ),
            ("counters", self.counters.clone()),
            ("delivery faults", self.faults.to_string()),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "  {name:<36} {value}");
        }
        for fault in &self.first_faults {
            let _ = writeln!(out, "  ! {fault}");
        }
        out
    }
}
