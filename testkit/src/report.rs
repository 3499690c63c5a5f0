//! Reports of scenario runs: one run as a table or JSON, and percentiles over
//! runs of several seeds; with the `report` feature, one run drawn as an HTML
//! page ([`html`]).

#[cfg(feature = "report")]
pub mod html;

use std::fmt::Write as _;

use serde::Serialize;

use crate::metrics::percentile_f64;
use crate::scenario::kind::ScenarioKind;
use crate::sim::Formation;

/// What one scenario run measured. Times are simulated seconds unless named `wall`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: ScenarioKind,
    /// Cluster size.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Network loss probability.
    pub loss: f64,
    /// Network base latency, ms.
    pub latency_ms: f64,
    /// The measured window, s.
    pub duration_s: f64,
    /// How the cluster was formed.
    pub formation: Formation,
    /// Simulated time the cluster took to form (until everyone agrees).
    pub formation_s: f64,
    /// Simulated time after formation until no node had updates pending (the
    /// window starts then).
    pub quiet_after_s: f64,
    /// Wall time of the formation (and of waiting for quiet).
    pub formation_wall_s: f64,
    /// Crashes detected everywhere.
    pub detections: usize,
    /// Crashes not (yet) offline on every survivor at the end of the window.
    pub undetected: usize,
    /// Detection latency (crash → offline on all survivors), median.
    pub detection_p50_s: Option<f64>,
    /// Detection latency, 99th percentile.
    pub detection_p99_s: Option<f64>,
    /// Every detection latency of the run (for pooling over seeds).
    pub detection_latencies_s: Vec<f64>,
    /// Healthy nodes declared dead (distinct node and incarnation).
    pub false_offline: usize,
    /// Tracker writes anywhere that took a node offline as dead.
    pub offline_writes: u64,
    /// Those about nodes no fault touched (in `pause`: about anyone but the paused node).
    pub offline_writes_untouched: u64,
    /// Joins (and restarts) online everywhere.
    pub joins: usize,
    /// Every join latency (to 100%) of the run (for pooling over seeds).
    pub join_latencies_s: Vec<f64>,
    /// Join → online on 99.99% of nodes, 99th percentile.
    pub join_most_p99_s: Option<f64>,
    /// Join → online on every node, median.
    pub join_all_p50_s: Option<f64>,
    /// Join → online on every node, 99th percentile.
    pub join_all_p99_s: Option<f64>,
    /// Encoded bytes of every node's starting tags (0: none).
    pub tag_bytes: usize,
    /// Tag changes that reached every node.
    pub tag_changes: usize,
    /// Tag-change spread (until every node holds the new tags), p50.
    pub tag_spread_p50_s: Option<f64>,
    /// Tag-change spread, p99.
    pub tag_spread_p99_s: Option<f64>,
    /// Datagrams sent per node per second over the window.
    pub msgs_per_node_s: f64,
    /// Bytes sent per node per second over the window.
    pub bytes_per_node_s: f64,
    /// Wakeups per node per second over the window ([`Metrics::wakes`](crate::Metrics::wakes)):
    /// on a real machine, what a quiet node's CPU time follows.
    pub wakes_per_node_s: f64,
    /// Heal → identical trackers with every up node online.
    pub convergence_after_heal_s: Option<f64>,
    /// The grey-zone scenarios' own figures (absent from the others' reports).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub grey: Option<GreyFigures>,
    /// After the window: heal, restart the crashed, and the time until settled.
    pub settled_after_s: Option<f64>,
    /// The liveness gate's violation, if it failed.
    pub gate_violation: Option<String>,
    /// Invariant violations found during the run.
    pub violations: u64,
    /// The first of them.
    pub first_violation: Option<String>,
    /// Scheduled faults that fired.
    pub faults_fired: usize,
    /// Scheduled faults.
    pub faults_scheduled: usize,
    /// Unreachable hints given to senders.
    pub unreachable_hints: u64,
    /// Simulator events processed.
    pub steps: u64,
    /// Hash of the event trace (the replay fingerprint).
    pub trace_hash: String,
    /// Resident memory growth while forming, per tracked row (nodes²); set by the binary.
    pub memory_per_tracked_node_bytes: Option<f64>,
    /// Wall time of the measured window (and the liveness gate after it).
    pub window_wall_s: f64,
    /// Wall time of the whole run.
    pub wall_s: f64,
}

/// What the grey-zone scenarios (partitions of a chosen length,
/// `partition-retention`, `split-merge`, `loss`, `slow`, `name-conflict`)
/// measure beyond the common figures. Counts of core counters are summed over
/// the nodes running at both ends of the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct GreyFigures {
    /// How long the network stayed partitioned, s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_s: Option<f64>,
    /// The nodes' `offline_retention`, s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_s: Option<f64>,
    /// `split-merge`: from the moment the two clusters can reach each other
    /// (one node is given a seed of the other) until one cluster: identical
    /// trackers with every node online everywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_after_s: Option<f64>,
    /// Distinct declarations of degraded members (excused: paused, slow,
    /// seconds late, sharing a name).
    pub degraded_declared: usize,
    /// Distinct declarations across a cut (excused: writer and target apart).
    pub apart_declared: usize,
    /// `slow`: the members whose inbound datagrams are late.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slow_members: Vec<usize>,
    /// `slow`: datagrams per node per second of the same cluster before the
    /// delays began (the quiet figure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet_msgs_per_node_s: Option<f64>,
    /// `slow`: the window's datagrams per node per second over the quiet figure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgs_ratio_to_quiet: Option<f64>,
    /// The busiest node's datagrams sent per second over the window.
    pub max_node_msgs_per_s: f64,
    /// `slow`: the busiest healthy (not slow) node's datagrams per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_healthy_node_msgs_per_s: Option<f64>,
    /// The highest datagrams per node per second over any 10 s of the window.
    pub peak_msgs_per_node_s: f64,
    /// Datagrams per node per second over each whole minute of the window
    /// (is slow members' traffic contained, or still rising?).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub msgs_per_node_s_by_minute: Vec<f64>,
    /// Refutations (a node raising its incarnation against a suspicion or a
    /// death of itself) over the window.
    pub refutations: u64,
    /// Probes that ended without any ack, over the window.
    pub probes_failed: u64,
    /// Acks that came after their probe had ended, over the window.
    pub late_acks: u64,
    /// `name-conflict`: second process started → first report of the
    /// conflict (`Event::NameConflict` on any node). `None`: never reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_detected_after_s: Option<f64>,
    /// `name-conflict`: growth of the name's highest incarnation over 60 s from
    /// detection (from the second start while nothing detects it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_incarnation_growth_60s: Option<u64>,
    /// `name-conflict`: tracker writes anywhere that moved the name's row to
    /// another address, over the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_addr_flips: Option<u64>,
    /// `name-conflict`: tracker writes anywhere that took the name offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_offline_writes: Option<u64>,
}

impl GreyFigures {
    /// Rows of (metric, value) for the table: the optional figures only when set.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = Vec::new();
        let mut some = |name: &'static str, v: Option<String>| {
            if let Some(v) = v {
                rows.push((name, v));
            }
        };
        let f3 = |v: f64| format!("{v:.3}");
        some("partition s", self.partition_s.map(f3));
        some("offline retention s", self.retention_s.map(f3));
        some("one cluster after merge s", self.merged_after_s.map(f3));
        some(
            "slow members",
            (!self.slow_members.is_empty()).then(|| format!("{:?}", self.slow_members)),
        );
        some(
            "quiet msgs/node/s",
            self.quiet_msgs_per_node_s.map(|v| format!("{v:.2}")),
        );
        some(
            "msgs vs quiet",
            self.msgs_ratio_to_quiet.map(|v| format!("{v:.2}x")),
        );
        some(
            "busiest healthy node msgs/s",
            self.max_healthy_node_msgs_per_s.map(|v| format!("{v:.2}")),
        );
        if let Some(flips) = self.conflict_addr_flips {
            let growth = self.conflict_incarnation_growth_60s;
            some(
                "conflict detected after s",
                Some(opt(self.conflict_detected_after_s)),
            );
            some(
                "conflict incarnation +60 s",
                Some(growth.map_or("-".into(), |g| g.to_string())),
            );
            some("conflict address flips", Some(flips.to_string()));
            some(
                "conflict offline writes",
                self.conflict_offline_writes.map(|v| v.to_string()),
            );
        }
        rows.extend([
            (
                "busiest node msgs/s",
                format!("{:.2}", self.max_node_msgs_per_s),
            ),
            (
                "peak msgs/node/s (10 s)",
                format!("{:.2}", self.peak_msgs_per_node_s),
            ),
            (
                "declared while degraded",
                self.degraded_declared.to_string(),
            ),
            ("declared while apart", self.apart_declared.to_string()),
            ("refutations", self.refutations.to_string()),
            ("probes failed", self.probes_failed.to_string()),
            ("late acks", self.late_acks.to_string()),
        ]);
        rows
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

impl Report {
    /// Rows of (metric, value) for the table.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let mut rows = vec![
            ("scenario", format!("{:?}", self.scenario)),
            ("nodes", self.nodes.to_string()),
            ("seed", self.seed.to_string()),
            ("loss", format!("{:.3}", self.loss)),
            ("latency ms", format!("{:.3}", self.latency_ms)),
            ("window s", format!("{:.1}", self.duration_s)),
            ("formation", format!("{:?}", self.formation)),
            ("formation s (sim)", format!("{:.3}", self.formation_s)),
            (
                "quiet after formation s",
                format!("{:.3}", self.quiet_after_s),
            ),
            (
                "formation s (wall)",
                format!("{:.3}", self.formation_wall_s),
            ),
            ("detections", self.detections.to_string()),
            ("undetected", self.undetected.to_string()),
            ("detection p50 s", opt(self.detection_p50_s)),
            ("detection p99 s", opt(self.detection_p99_s)),
            ("false offline", self.false_offline.to_string()),
            ("offline writes", self.offline_writes.to_string()),
            (
                "offline writes, untouched nodes",
                self.offline_writes_untouched.to_string(),
            ),
            ("joins", self.joins.to_string()),
            ("join 99.99% p99 s", opt(self.join_most_p99_s)),
            ("join 100% p50 s", opt(self.join_all_p50_s)),
            ("join 100% p99 s", opt(self.join_all_p99_s)),
            ("tag bytes per node", self.tag_bytes.to_string()),
            ("tag changes", self.tag_changes.to_string()),
            ("tag spread p50 s", opt(self.tag_spread_p50_s)),
            ("tag spread p99 s", opt(self.tag_spread_p99_s)),
            ("msgs/node/s", format!("{:.2}", self.msgs_per_node_s)),
            ("bytes/node/s", format!("{:.1}", self.bytes_per_node_s)),
            ("wakes/node/s", format!("{:.2}", self.wakes_per_node_s)),
            (
                "convergence after heal s",
                opt(self.convergence_after_heal_s),
            ),
        ];
        rows.extend(self.grey.iter().flat_map(GreyFigures::rows));
        rows.extend([
            ("settled after gate s", opt(self.settled_after_s)),
            (
                "gate violation",
                self.gate_violation.clone().unwrap_or_else(|| "-".into()),
            ),
            ("violations", self.violations.to_string()),
            (
                "first violation",
                self.first_violation.clone().unwrap_or_else(|| "-".into()),
            ),
            (
                "faults fired",
                format!("{}/{}", self.faults_fired, self.faults_scheduled),
            ),
            ("unreachable hints", self.unreachable_hints.to_string()),
            ("sim events", self.steps.to_string()),
            ("trace hash", self.trace_hash.clone()),
            (
                "memory B/tracked node",
                opt(self.memory_per_tracked_node_bytes).replace(".000", ""),
            ),
            ("window s (wall)", format!("{:.3}", self.window_wall_s)),
            ("wall s", format!("{:.3}", self.wall_s)),
        ]);
        rows
    }

    /// The report as an aligned two-column table.
    pub fn table(&self) -> String {
        table(
            &["metric", "value"],
            self.rows().into_iter().map(|(k, v)| vec![k.to_string(), v]),
        )
    }
}

/// Percentiles of each numeric metric over several runs (seeds).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// How many runs.
    pub runs: usize,
    /// (metric, p50, p99, max) for each metric with at least one value.
    pub metrics: Vec<(String, f64, f64, f64)>,
    /// Total violations over all runs.
    pub violations: u64,
    /// Runs whose liveness gate failed.
    pub gate_failures: usize,
}

impl Summary {
    /// Summarizes `reports`.
    pub fn of(reports: &[Report]) -> Self {
        type Get = fn(&Report) -> Option<f64>;
        let metrics: [(&str, Get); 31] = [
            ("formation s (sim)", |r| Some(r.formation_s)),
            ("formation s (wall)", |r| Some(r.formation_wall_s)),
            ("detection p50 s", |r| r.detection_p50_s),
            ("detection p99 s", |r| r.detection_p99_s),
            ("false offline", |r| Some(r.false_offline as f64)),
            ("offline writes, untouched nodes", |r| {
                Some(r.offline_writes_untouched as f64)
            }),
            ("join 99.99% p99 s", |r| r.join_most_p99_s),
            ("join 100% p50 s", |r| r.join_all_p50_s),
            ("join 100% p99 s", |r| r.join_all_p99_s),
            ("tag spread p99 s", |r| r.tag_spread_p99_s),
            ("msgs/node/s", |r| Some(r.msgs_per_node_s)),
            ("bytes/node/s", |r| Some(r.bytes_per_node_s)),
            ("wakes/node/s", |r| Some(r.wakes_per_node_s)),
            ("convergence after heal s", |r| r.convergence_after_heal_s),
            ("one cluster after merge s", |r| {
                r.grey.as_ref()?.merged_after_s
            }),
            ("quiet msgs/node/s", |r| {
                r.grey.as_ref()?.quiet_msgs_per_node_s
            }),
            ("msgs vs quiet", |r| r.grey.as_ref()?.msgs_ratio_to_quiet),
            ("busiest node msgs/s", |r| {
                Some(r.grey.as_ref()?.max_node_msgs_per_s)
            }),
            ("busiest healthy node msgs/s", |r| {
                r.grey.as_ref()?.max_healthy_node_msgs_per_s
            }),
            ("peak msgs/node/s (10 s)", |r| {
                Some(r.grey.as_ref()?.peak_msgs_per_node_s)
            }),
            ("declared while degraded", |r| {
                Some(r.grey.as_ref()?.degraded_declared as f64)
            }),
            ("declared while apart", |r| {
                Some(r.grey.as_ref()?.apart_declared as f64)
            }),
            ("refutations", |r| Some(r.grey.as_ref()?.refutations as f64)),
            ("conflict detected after s", |r| {
                r.grey.as_ref()?.conflict_detected_after_s
            }),
            ("conflict incarnation +60 s", |r| {
                Some(r.grey.as_ref()?.conflict_incarnation_growth_60s? as f64)
            }),
            ("conflict address flips", |r| {
                Some(r.grey.as_ref()?.conflict_addr_flips? as f64)
            }),
            ("undetected crashes", |r| {
                r.grey.as_ref().map(|_| r.undetected as f64)
            }),
            ("settled after gate s", |r| r.settled_after_s),
            ("memory B/tracked node", |r| r.memory_per_tracked_node_bytes),
            ("window s (wall)", |r| Some(r.window_wall_s)),
            ("wall s", |r| Some(r.wall_s)),
        ];
        type Samples = fn(&Report) -> &[f64];
        let pooled: [(&str, Samples); 2] = [
            ("detection, every crash s", |r| &r.detection_latencies_s),
            ("join 100%, every join s", |r| &r.join_latencies_s),
        ];
        let pooled = pooled.iter().filter_map(|(name, get)| {
            let values: Vec<f64> = reports
                .iter()
                .flat_map(|r| get(r).iter().copied())
                .collect();
            let p50 = percentile_f64(&values, 50.0)?;
            let p99 = percentile_f64(&values, 99.0)?;
            let max = percentile_f64(&values, 100.0)?;
            Some((format!("{name} (n={})", values.len()), p50, p99, max))
        });
        let metrics = metrics
            .iter()
            .filter_map(|(name, get)| {
                let values: Vec<f64> = reports.iter().filter_map(get).collect();
                let p50 = percentile_f64(&values, 50.0)?;
                let p99 = percentile_f64(&values, 99.0)?;
                let max = percentile_f64(&values, 100.0)?;
                Some((name.to_string(), p50, p99, max))
            })
            .chain(pooled)
            .collect();
        Self {
            runs: reports.len(),
            metrics,
            violations: reports.iter().map(|r| r.violations).sum(),
            gate_failures: reports
                .iter()
                .filter(|r| r.gate_violation.is_some())
                .count(),
        }
    }

    /// The summary as an aligned table.
    pub fn table(&self) -> String {
        let mut rows: Vec<Vec<String>> = self
            .metrics
            .iter()
            .map(|(name, p50, p99, max)| {
                vec![
                    name.clone(),
                    format!("{p50:.3}"),
                    format!("{p99:.3}"),
                    format!("{max:.3}"),
                ]
            })
            .collect();
        rows.push(vec![
            "runs".into(),
            self.runs.to_string(),
            String::new(),
            String::new(),
        ]);
        rows.push(vec![
            "violations (total)".into(),
            self.violations.to_string(),
            String::new(),
            String::new(),
        ]);
        rows.push(vec![
            "gate failures".into(),
            self.gate_failures.to_string(),
            String::new(),
            String::new(),
        ]);
        table(
            &["metric over seeds", "p50", "p99", "max"],
            rows.into_iter(),
        )
    }
}

/// Formats rows as a table with aligned columns.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows)
        .collect();
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (k, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let sep = if c + 1 == columns { "\n" } else { "  " };
            let _ = write!(out, "{cell:<width$}{sep}", width = widths[c]);
        }
        if k == 0 {
            let total = widths.iter().sum::<usize>() + 2 * (columns - 1);
            let _ = writeln!(out, "{}", "-".repeat(total));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seed: u64, detection: f64) -> Report {
        Report {
            scenario: ScenarioKind::Crash,
            nodes: 10,
            seed,
            loss: 0.0,
            latency_ms: 1.0,
            duration_s: 10.0,
            formation: Formation::Join,
            formation_s: 1.0,
            formation_wall_s: 0.1,
            quiet_after_s: 0.5,
            detections: 1,
            undetected: 0,
            detection_p50_s: Some(detection),
            detection_p99_s: Some(detection),
            detection_latencies_s: vec![detection],
            false_offline: 0,
            offline_writes: 9,
            offline_writes_untouched: 0,
            joins: 0,
            join_latencies_s: Vec::new(),
            join_most_p99_s: None,
            join_all_p50_s: None,
            join_all_p99_s: None,
            tag_bytes: 0,
            tag_changes: 0,
            tag_spread_p50_s: None,
            tag_spread_p99_s: None,
            msgs_per_node_s: 5.0,
            bytes_per_node_s: 400.0,
            wakes_per_node_s: 18.0,
            convergence_after_heal_s: None,
            grey: None,
            settled_after_s: Some(1.0),
            gate_violation: None,
            violations: 0,
            first_violation: None,
            faults_fired: 1,
            faults_scheduled: 1,
            unreachable_hints: 0,
            steps: 1000,
            trace_hash: "00".into(),
            memory_per_tracked_node_bytes: None,
            window_wall_s: 0.1,
            wall_s: 0.2,
        }
    }

    #[test]
    fn table_lists_every_metric_aligned() {
        let table = report(1, 2.5).table();
        assert!(table.contains("detection p50 s"));
        assert!(table.contains("2.500"));
        let widths: Vec<usize> = table
            .lines()
            .filter(|l| !l.starts_with('-'))
            .map(|l| l.find(char::is_whitespace).unwrap_or(0))
            .collect();
        assert!(!widths.is_empty());
        let json = serde_json::to_string(&report(1, 2.5)).expect("serializes");
        assert!(json.contains("\"detection_p50_s\":2.5"));
    }

    #[test]
    fn summary_takes_percentiles_over_runs() {
        let reports: Vec<Report> = (1..=10).map(|s| report(s, s as f64)).collect();
        let summary = Summary::of(&reports);
        let detection = summary
            .metrics
            .iter()
            .find(|(name, ..)| name == "detection p50 s")
            .expect("present");
        assert_eq!((detection.1, detection.2, detection.3), (5.0, 10.0, 10.0));
        assert!(
            summary
                .metrics
                .iter()
                .any(|(name, ..)| name == "detection, every crash s (n=10)")
        );
        assert!(summary.table().contains("runs"));
        assert!(
            !summary
                .metrics
                .iter()
                .any(|(name, ..)| name.starts_with("join"))
        );
    }
}
