//! `user-events`: random members send `rate` events a second cluster-wide,
//! each with a payload of `event_bytes`, over the window (with `--loss` from
//! its start, and with `--partition-secs` a third of the nodes cut off from
//! 1 s into the window for that long). Figures: delivery latency, the
//! delivery ratio (and the share made within 10 s and 60 s of the send),
//! payload copies received per node per event, bytes per node per second
//! against the quiet cluster's, false offline declarations, how long after
//! the heal the far side got the events sent during a partition; the
//! [`DeliveryLog`] checker's faults.
//!
//! [`run_with`] adds a [`Flood`]: one node sending far faster than the rest.
//! Its events are left out of the latency and ratio figures, which are then
//! the other origins' own.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::{Params, percentile};
use crate::delivery::DeliveryLog;
use crate::fault::Fault;
use crate::network::NetworkModel;
use crate::sim::{BuildError, Sim};

/// How long the quiet cluster is measured before the events.
const QUIET: Duration = Duration::from_secs(10);
/// How long the run goes on after the last event, for the last deliveries.
const DRAIN: Duration = Duration::from_secs(10);
/// When a partition starts, into the window.
const PARTITION_AT: Duration = Duration::from_secs(1);
/// The window lasts at least this long after a partition's heal.
const AFTER_HEAL: Duration = Duration::from_secs(10);

/// One node sending `rate` events a second on top of the cluster's `rate`
/// (whose origins are then the other nodes).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Flood {
    /// The flooding node.
    pub node: usize,
    /// Its events per second.
    pub rate: f64,
}

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
    /// How long a third of the nodes was cut off, seconds.
    pub partition_s: Option<f64>,
    /// The flood, if any.
    pub flood: Option<Flood>,
    /// Events sent (accepted by their origin), the flood's left out.
    pub events_sent: usize,
    /// Sends refused (`SendEventError`), the flood's left out.
    pub sends_refused: usize,
    /// The flood's events accepted by the flooding node.
    pub flood_sent: usize,
    /// The flood's sends refused at the flooding node (`SendEventError::Busy`).
    pub flood_refused: usize,
    /// Delivery latency after the send, ms: median.
    pub latency_p50_ms: Option<f64>,
    /// Delivery latency, ms: 99th percentile.
    pub latency_p99_ms: Option<f64>,
    /// Delivery latency, ms: the slowest.
    pub latency_max_ms: Option<f64>,
    /// Deliveries made of those owed (every node that ran from the send to
    /// the end, but the origin).
    pub delivery_ratio: f64,
    /// The share of those owed made within 10 s of the send (of the events
    /// sent at least 10 s before the end).
    pub delivered_within_10s: f64,
    /// The share of those owed made within 60 s of the send (of the events
    /// sent at least 60 s before the end).
    pub delivered_within_60s: f64,
    /// Of the events sent during the partition, deliveries across it (origin
    /// and receiver on different sides).
    pub far_side_deliveries: usize,
    /// The last of those after the heal, ms (0 when all came before it).
    pub far_side_after_heal_max_ms: Option<f64>,
    /// Healthy nodes declared offline (the cut-off side during a partition
    /// is not counted: that is not a false declaration).
    pub false_offline: usize,
    /// Events dropped by receivers for their origin's rate, summed.
    pub rate_limited: u64,
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

/// Runs `user-events` with `params` (its `event_rate`, `event_bytes`,
/// `partition`).
pub fn run(
    params: &Params,
    progress: &mut dyn FnMut(Duration, Duration),
) -> Result<UserEventReport, BuildError> {
    run_with(params, None, progress)
}

/// [`run`], with one node flooding the cluster beside the regular events.
pub fn run_with(
    params: &Params,
    flood: Option<Flood>,
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
    sim.metrics_mut().reset();
    let copies = |sim: &Sim| -> u64 {
        (0..n)
            .filter_map(|i| sim.node(i))
            .map(|node| node.stats().user_events.copies_received)
            .sum()
    };
    let copies_before = copies(&sim);
    let start = sim.now();
    let mut rng = fastrand::Rng::with_seed(params.seed ^ 0x00e7_e275);
    // A third of the nodes, from a random offset, cut off for a while.
    let partition = params.partition.filter(|_| n >= 3).map(|length| {
        let offset = rng.usize(..n);
        let side: Vec<usize> = (0..n.div_ceil(3)).map(|k| (offset + k) % n).collect();
        let at = start + PARTITION_AT;
        sim.schedule(
            at,
            Fault::Partition {
                groups: vec![side.clone()],
            },
        );
        sim.schedule(at + length, Fault::Heal);
        (side, at, at + length)
    });
    let window = match &partition {
        Some((_, _, heal)) => params.duration.max(*heal + AFTER_HEAL - start),
        None => params.duration,
    };
    let total = (window.as_secs_f64() * params.event_rate).round() as usize;
    let every = |rate: f64| Duration::from_secs_f64(1.0 / rate.max(f64::MIN_POSITIVE));
    let gap = every(params.event_rate);
    let flood_gap = flood.map(|f| every(f.rate));
    let mut payload = vec![0u8; params.event_bytes];
    let (mut refused, mut flood_sent, mut flood_refused) = (0, 0, 0);
    let mut flood_ids = std::collections::BTreeSet::new();
    let traffic_start = sim.traffic();
    let mut last_progress = start;
    let mut next_flood = flood_gap.map(|_| start);
    let mut k = 0;
    while k < total {
        let next_regular = start + gap.mul_f64(k as f64);
        if let (Some(at), Some(f), Some(g)) = (next_flood, flood, flood_gap)
            && at < next_regular
        {
            sim.run_for(at.saturating_sub(sim.now()));
            match log.send(&mut sim, f.node, "flood", &payload) {
                Some(Ok(id)) => {
                    flood_sent += 1;
                    flood_ids.insert(id);
                }
                Some(Err(_)) => flood_refused += 1,
                None => {}
            }
            next_flood = Some(at + g);
            continue;
        }
        sim.run_for(next_regular.saturating_sub(sim.now()));
        let up: Vec<usize> = sim
            .up()
            .into_iter()
            .filter(|&i| flood.is_none_or(|f| f.node != i))
            .collect();
        if let Some(&origin) = (!up.is_empty()).then(|| &up[rng.usize(..up.len())]) {
            payload
                .iter_mut()
                .zip(k.to_le_bytes().iter().cycle())
                .for_each(|(b, k)| *b = *k);
            if let Some(Err(_)) = log.send(&mut sim, origin, "sim", &payload) {
                refused += 1;
            }
        }
        k += 1;
        if sim.now() >= last_progress + Duration::from_secs(1) {
            last_progress = sim.now();
            progress(sim.now() - start, window + DRAIN);
        }
    }
    let last = start + gap.mul_f64(total as f64);
    sim.run_for(last.saturating_sub(sim.now()));
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
    // The figures are the regular events': the flood's are left out.
    let owed: Vec<_> = log
        .owed_deliveries(&up, end, DRAIN / 2)
        .into_iter()
        .filter(|o| !flood_ids.contains(&o.sent.id))
        .collect();
    let sent: Vec<_> = log
        .sent()
        .into_iter()
        .filter(|s| !flood_ids.contains(&s.id))
        .collect();
    let sent_at: std::collections::BTreeMap<_, _> = sent.iter().map(|s| (&s.id, s)).collect();
    let deliveries = log.deliveries();
    let latencies: Vec<Duration> = deliveries
        .iter()
        .filter_map(|d| sent_at.get(&d.id).map(|s| d.at.saturating_sub(s.at)))
        .collect();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let percentile_ms = |p: f64| percentile(&latencies, p).map(ms);
    // Of the deliveries owed for events sent at least `within` before the
    // end (all of them for `None`), the share made within it of the send.
    let share = |within: Option<Duration>| -> f64 {
        let judged: Vec<_> = owed
            .iter()
            .filter(|o| within.is_none_or(|w| o.sent.at + w <= end))
            .collect();
        if judged.is_empty() {
            return 1.0;
        }
        let made = judged
            .iter()
            .filter(|o| {
                o.delivered_at
                    .is_some_and(|at| within.is_none_or(|w| at.saturating_sub(o.sent.at) <= w))
            })
            .count();
        made as f64 / judged.len() as f64
    };
    // Deliveries across the cut of the events sent while it stood.
    let far_side: Vec<Duration> = match &partition {
        Some((side, from, heal)) => {
            let cut_off = |i: usize| side.contains(&i);
            deliveries
                .iter()
                .filter_map(|d| {
                    let s = sent_at.get(&d.id)?;
                    (s.at >= *from && s.at < *heal && cut_off(s.origin) != cut_off(d.node))
                        .then(|| d.at.saturating_sub(*heal))
                })
                .collect()
        }
        None => Vec::new(),
    };
    let events = sent.len().max(1) as f64;
    let delivered_count = latencies.len();
    let payload_rate = delivered_count as f64 * params.event_bytes as f64
        / (n as f64 * sending.as_secs_f64().max(f64::MIN_POSITIVE));
    Ok(UserEventReport {
        nodes: n,
        seed: params.seed,
        rate: params.event_rate,
        event_bytes: params.event_bytes,
        loss,
        partition_s: partition
            .as_ref()
            .map(|(_, from, heal)| (*heal - *from).as_secs_f64()),
        flood,
        events_sent: sent.len(),
        sends_refused: refused,
        flood_sent,
        flood_refused,
        latency_p50_ms: percentile_ms(50.0),
        latency_p99_ms: percentile_ms(99.0),
        latency_max_ms: percentile_ms(100.0),
        delivery_ratio: share(None),
        delivered_within_10s: share(Some(Duration::from_secs(10))),
        delivered_within_60s: share(Some(Duration::from_secs(60))),
        far_side_deliveries: far_side.len(),
        far_side_after_heal_max_ms: partition
            .as_ref()
            .map(|_| far_side.iter().copied().max().map_or(0.0, ms)),
        false_offline: sim.metrics().false_offline.len(),
        rate_limited: sum.rate_limited,
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
        let mut rows = vec![
            ("events sent", self.events_sent.to_string()),
            ("sends refused", self.sends_refused.to_string()),
            ("delivery latency p50 (ms)", opt(self.latency_p50_ms)),
            ("delivery latency p99 (ms)", opt(self.latency_p99_ms)),
            ("delivery latency max (ms)", opt(self.latency_max_ms)),
            ("delivery ratio", format!("{:.5}", self.delivery_ratio)),
            (
                "delivered within 10 s / 60 s",
                format!(
                    "{:.5} / {:.5}",
                    self.delivered_within_10s, self.delivered_within_60s
                ),
            ),
            ("false offline", self.false_offline.to_string()),
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
        if let Some(partition) = self.partition_s {
            rows.push(("partition of a third (s)", format!("{partition:.0}")));
            rows.push((
                "deliveries across the cut",
                self.far_side_deliveries.to_string(),
            ));
            rows.push((
                "last across the cut after heal (ms)",
                opt(self.far_side_after_heal_max_ms),
            ));
        }
        if let Some(flood) = self.flood {
            rows.push((
                "flood (node, events/s)",
                format!("node {}, {}", flood.node, flood.rate),
            ));
            rows.push((
                "flood sent / refused",
                format!("{} / {}", self.flood_sent, self.flood_refused),
            ));
            rows.push(("rate limited at receivers", self.rate_limited.to_string()));
        }
        for (name, value) in rows {
            let _ = writeln!(out, "  {name:<36} {value}");
        }
        for fault in &self.first_faults {
            let _ = writeln!(out, "  ! {fault}");
        }
        out
    }
}
