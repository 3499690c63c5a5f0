//! `query`: a tenth of the nodes (at least one) carry `role=db`; random
//! members run `rate` queries a second, cluster-wide, over the first half of
//! the window to every member, then over the second half to `role=db` only.
//! Every node answers each query it gets at once ([`Answerer`]). With
//! `--loss`, the network loses that share from after the quiet figure. Figures per
//! half: response latency after the send, the response ratio (distinct
//! responders over the live matching members at the send), queries that
//! timed out, bytes per node per second, and what the members outside the
//! filter sent back (acks and answers: there should be none).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use beethoven_core::{Event, NodeName, Query, QueryDone, QueryId, TagQuery, Tags};
use serde::Serialize;

use super::{Params, percentile};
use crate::app::{App, Context};
use crate::fault::Fault;
use crate::network::NetworkModel;
use crate::sim::{BuildError, Sim};

/// How long the run goes on after each half's last query, for its end.
const DRAIN: Duration = Duration::from_secs(6);

#[derive(Debug, Default)]
struct Entries {
    /// Each query's send time and the live matching members then.
    sent: BTreeMap<QueryId, (Duration, usize)>,
    /// Each query's distinct responders, with when each answer came.
    responses: BTreeMap<QueryId, BTreeMap<NodeName, Duration>>,
    done: Vec<QueryDone>,
}

/// The shared log of a run's queries; clones share it.
#[derive(Clone, Debug, Default)]
pub struct QueryLog(Arc<Mutex<Entries>>);

impl QueryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves plain data behind: still readable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `query` on node `origin` now, noting the `live_matching` members
    /// it should reach; `None` if the node is not running, `Some(false)` if it
    /// refused the query.
    pub fn send(
        &self,
        sim: &mut Sim,
        origin: usize,
        query: Query,
        live_matching: usize,
    ) -> Option<bool> {
        let at = sim.now();
        let result = sim.command(origin, |node, now| node.query(now, query))?;
        if let Ok(id) = &result {
            self.entries().sent.insert(id.clone(), (at, live_matching));
        }
        Some(result.is_ok())
    }

    /// The app of node `index`: answers each query with its name, and logs
    /// the answers its own queries get.
    pub fn answerer(&self) -> Answerer {
        Answerer { log: self.clone() }
    }
}

/// Answers every query at once with the node's name; logs answers and ends
/// of the node's own queries.
#[derive(Debug)]
pub struct Answerer {
    log: QueryLog,
}

impl App for Answerer {
    fn event(&mut self, ctx: &mut Context<'_>, event: &Event) {
        match event {
            Event::Query(request) => {
                let name = ctx.name().as_bytes().to_vec();
                ctx.respond(request.token, name);
            }
            Event::QueryResponse { id, from, .. } => {
                let mut entries = self.log.entries();
                let responders = entries.responses.entry(id.clone()).or_default();
                responders.entry(from.clone()).or_insert(ctx.now());
            }
            Event::QueryDone(done) => self.log.entries().done.push(done.clone()),
            _ => {}
        }
    }
}

/// What one half of a `query` run measured.
#[derive(Clone, Debug, Serialize)]
pub struct QueryPhase {
    /// `all`, or the tag filter.
    pub filter: String,
    /// Queries run (accepted by their origin).
    pub queries_sent: usize,
    /// Queries refused (`QueryError`).
    pub queries_refused: usize,
    /// Response latency after the send, ms: median.
    pub latency_p50_ms: Option<f64>,
    /// Response latency, ms: 99th percentile.
    pub latency_p99_ms: Option<f64>,
    /// Response latency, ms: the slowest.
    pub latency_max_ms: Option<f64>,
    /// Distinct responders over the live matching members at each send.
    pub response_ratio: f64,
    /// Queries that ended at their timeout rather than with every answer.
    pub timed_out: usize,
    /// Bytes sent per node per second over the half (queries and answers
    /// beside the membership protocol).
    pub bytes_per_node_s: f64,
    /// Acks and answers sent by members outside the filter (should be 0).
    pub answers_from_outside: u64,
    /// Queries members outside the filter received and did not answer.
    pub filtered_out: u64,
    /// Answers counted late, or dropped as invalid, over the cluster.
    pub late: u64,
}

/// What a `query` run measured.
#[derive(Clone, Debug, Serialize)]
pub struct QueryReport {
    /// Cluster size.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Queries per second, cluster-wide.
    pub rate: f64,
    /// Members with `role=db`.
    pub db_nodes: usize,
    /// Loss over the queries (`--loss`, from after the quiet figure).
    pub loss: f64,
    /// Bytes sent per node per second before any query.
    pub bytes_per_node_s_quiet: f64,
    /// Queries to every member.
    pub all: QueryPhase,
    /// Queries to `role=db`.
    pub db: QueryPhase,
}

/// Runs `query` with `params` (its `event_rate` as the query rate).
pub fn run(
    params: &Params,
    progress: &mut dyn FnMut(Duration, Duration),
) -> Result<QueryReport, BuildError> {
    let log = QueryLog::new();
    let app_log = log.clone();
    let mut sim = Sim::builder()
        .nodes(params.nodes)
        .seed(params.seed)
        .config(params.config.clone())
        .network(NetworkModel {
            loss: 0.0,
            ..params.network.clone()
        })
        .formation(params.formation)
        .app(move |_, _| app_log.answerer())
        .build()?;
    let n = params.nodes;
    let db_nodes = (n / 10).max(1);
    let db_tags = Tags::from_pairs([("role", "db")]).expect("one valid tag");
    for node in 0..db_nodes {
        sim.apply(Fault::SetTags {
            node,
            tags: db_tags.clone(),
        });
    }
    let quiet_limit = 10 * sim.timing().liveness;
    let _ = sim.run_until(quiet_limit, Duration::from_millis(100), Sim::quiet);
    let before = sim.traffic();
    sim.run_for(Duration::from_secs(5));
    let quiet = before.rate(sim.traffic(), n, Duration::from_secs(5)).bytes;
    let loss = params.window_loss();
    if loss > 0.0 {
        sim.apply(Fault::Loss { loss });
    }
    let half = params.duration / 2;
    let total = half + DRAIN;
    let mut rng = fastrand::Rng::with_seed(params.seed ^ 0x0045_e215);
    let everyone: BTreeSet<usize> = (0..n).collect();
    let all = phase(&mut sim, &log, params, &mut rng, None, &everyone);
    progress(total, 2 * total);
    let dbs: BTreeSet<usize> = (0..db_nodes).collect();
    let role_db = TagQuery::key_value("role", "db");
    let db = phase(&mut sim, &log, params, &mut rng, Some(role_db), &dbs);
    progress(2 * total, 2 * total);
    Ok(QueryReport {
        nodes: n,
        seed: params.seed,
        rate: params.event_rate,
        db_nodes,
        loss,
        bytes_per_node_s_quiet: quiet,
        all,
        db,
    })
}

/// One half: queries at `params.event_rate` a second from random live
/// members for half the window, then a drain; the figures of those queries.
fn phase(
    sim: &mut Sim,
    log: &QueryLog,
    params: &Params,
    rng: &mut fastrand::Rng,
    tag: Option<TagQuery>,
    matching: &BTreeSet<usize>,
) -> QueryPhase {
    let n = params.nodes;
    let counters = |sim: &Sim| -> Vec<(u64, u64, u64)> {
        (0..n)
            .map(|i| {
                sim.node(i).map_or((0, 0, 0), |node| {
                    let q = &node.stats().queries;
                    (
                        q.acks_sent + q.responses_sent,
                        q.filtered_out,
                        q.late + q.invalid,
                    )
                })
            })
            .collect()
    };
    let counters_before = counters(sim);
    let sent_before: BTreeSet<QueryId> = log.entries().sent.keys().cloned().collect();
    let traffic_before = sim.traffic();
    let start = sim.now();
    let half = params.duration / 2;
    let count = (half.as_secs_f64() * params.event_rate).round() as usize;
    let gap = Duration::from_secs_f64(1.0 / params.event_rate.max(f64::MIN_POSITIVE));
    let mut refused = 0;
    for k in 0..count {
        let up = sim.up();
        if !up.is_empty() {
            let origin = up[rng.usize(..up.len())];
            let live = up.iter().filter(|i| matching.contains(i)).count();
            let mut query = Query::new("sim", k.to_le_bytes().to_vec()).request_ack();
            if let Some(tag) = &tag {
                query = query.tag(tag.clone());
            }
            if log.send(sim, origin, query, live) == Some(false) {
                refused += 1;
            }
        }
        let next = start + gap.mul_f64((k + 1) as f64);
        sim.run_for(next.saturating_sub(sim.now()));
    }
    sim.run_for(DRAIN);
    let window = sim.now() - start;
    let bytes = traffic_before.rate(sim.traffic(), n, window).bytes;
    let counters_after = counters(sim);
    let mut outside = 0;
    let mut filtered_out = 0;
    let mut late = 0;
    for (i, (after, before)) in counters_after.iter().zip(&counters_before).enumerate() {
        if !matching.contains(&i) {
            outside += after.0.saturating_sub(before.0);
        }
        filtered_out += after.1.saturating_sub(before.1);
        late += after.2.saturating_sub(before.2);
    }
    let entries = log.entries();
    let ours: Vec<(&QueryId, &(Duration, usize))> = entries
        .sent
        .iter()
        .filter(|(id, _)| !sent_before.contains(*id))
        .collect();
    let mut latencies = Vec::new();
    let (mut responded, mut owed) = (0, 0);
    for &(id, &(at, live)) in &ours {
        owed += live;
        if let Some(responders) = entries.responses.get(id) {
            responded += responders.len().min(live);
            latencies.extend(responders.values().map(|&t| t.saturating_sub(at)));
        }
    }
    let timed_out = entries
        .done
        .iter()
        .filter(|done| done.timed_out && ours.iter().any(|(id, _)| **id == done.id))
        .count();
    let ms = |p: f64| percentile(&latencies, p).map(|d| d.as_secs_f64() * 1000.0);
    QueryPhase {
        filter: tag.map_or_else(|| "all".to_string(), |_| "role=db".to_string()),
        queries_sent: ours.len(),
        queries_refused: refused,
        latency_p50_ms: ms(50.0),
        latency_p99_ms: ms(99.0),
        latency_max_ms: ms(100.0),
        response_ratio: if owed == 0 {
            1.0
        } else {
            responded as f64 / owed as f64
        },
        timed_out,
        bytes_per_node_s: bytes,
        answers_from_outside: outside,
        filtered_out,
        late,
    }
}

impl QueryReport {
    /// The report as a table.
    pub fn table(&self) -> String {
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "query: {} nodes ({} with role=db), seed {}, {} queries/s, loss {}; quiet {:.0} B/node/s",
            self.nodes, self.db_nodes, self.seed, self.rate, self.loss, self.bytes_per_node_s_quiet
        );
        for phase in [&self.all, &self.db] {
            let _ = writeln!(out, " to {}:", phase.filter);
            let rows = [
                ("queries sent", phase.queries_sent.to_string()),
                ("queries refused", phase.queries_refused.to_string()),
                ("response latency p50 (ms)", opt(phase.latency_p50_ms)),
                ("response latency p99 (ms)", opt(phase.latency_p99_ms)),
                ("response latency max (ms)", opt(phase.latency_max_ms)),
                ("response ratio", format!("{:.5}", phase.response_ratio)),
                ("timed out", phase.timed_out.to_string()),
                ("bytes/node/s", format!("{:.0}", phase.bytes_per_node_s)),
                (
                    "acks+answers from outside the filter",
                    phase.answers_from_outside.to_string(),
                ),
                (
                    "filtered out (received, silent)",
                    phase.filtered_out.to_string(),
                ),
                ("late or invalid answers", phase.late.to_string()),
            ];
            for (name, value) in rows {
                let _ = writeln!(out, "  {name:<38} {value}");
            }
        }
        out
    }
}
