//! A run drawn as one self-contained HTML page (no network access needed to
//! open it): a timeline per node (or per bucket of nodes) of what the rest of
//! the cluster believed about it, with the fault windows and false verdicts; a
//! CDF of crash detection; traffic per node per second; the run's parameters,
//! seed and trace hash, and how to replay it. The charts are SVG drawn by
//! `plotters`; this module needs the `report` feature (part of `cli`, the
//! default).
//!
//! The timeline and traffic come from the run's
//! [`Timeline`], which is recorded only when asked
//! for: build the simulator with
//! [`SimBuilder::record_timeline`](crate::SimBuilder::record_timeline) (or call
//! [`Sim::record_timeline`] when the interesting part begins). Without one the
//! page still shows the parameters, the faults and the detection CDF.
//!
//! A failing property test can leave its picture behind: write the page when
//! a case fails, before returning the failure. Proptest then shrinks the case,
//! and since only failing runs write, the page left is the last failure's: the
//! shrunk counterexample's.
//!
//! ```
//! use std::time::Duration;
//! use beethoven_testkit::{Scenario, Sim, arb_scenario};
//! use proptest::prelude::*;
//!
//! fn calm_after_chaos(scenario: &Scenario) -> Result<(), TestCaseError> {
//!     let mut sim = scenario.builder().record_timeline(true).build()?;
//!     scenario.run_chaos(&mut sim);
//!     let mut checks = || -> Result<(), TestCaseError> {
//!         sim.liveness_gate(sim.timing().liveness)?;
//!         sim.ensure_clean()?;
//!         Ok(())
//!     };
//!     let checked = checks();
//!     if checked.is_err() {
//!         let page = std::env::temp_dir().join("failing-case.html");
//!         let _ = sim.write_report(&page); // the shrunk case's picture, in the end
//!     }
//!     checked
//! }
//!
//! proptest! {
//!     #[test]
//!     fn the_cluster_settles_after_any_chaos(scenario in arb_scenario()) {
//!         calm_after_chaos(&scenario)?;
//!     }
//! }
//! # proptest::test_runner::TestRunner::new(ProptestConfig { cases: 2, failure_persistence: None, ..ProptestConfig::default() })
//! #     .run(&arb_scenario(), |scenario| calm_after_chaos(&scenario)).expect("holds");
//! ```
//!
//! The simplest use, on any run:
//!
//! ```
//! use std::time::Duration;
//! use beethoven_testkit::{Fault, HostFate, Sim};
//!
//! let mut sim = Sim::builder().nodes(5).seed(7).record_timeline(true).build()?;
//! sim.apply(Fault::Crash { node: 3, host: HostFate::Vanishes });
//! sim.run_for(Duration::from_secs(10));
//! let path = std::env::temp_dir().join("beethoven-doc-report.html");
//! sim.write_report(&path)?; // open it in a browser
//! # let html = std::fs::read_to_string(&path)?;
//! # assert!(html.contains("data-crashes=\"1\""));
//! # std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! For more on the page (a title, the command that replays the run, a
//! scenario's [`Report`]), build a [`Page`].

use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::metrics::{WatchKind, percentile};
use crate::report::Report;
use crate::sim::Sim;
use crate::timeline::{Belief, FaultWindow, Timeline, WindowKind};

mod charts;

use charts::{FALSE_VERDICT, Span, detection_chart, hex, rows, timeline_chart, traffic_chart};
pub use charts::{belief_colour, window_colour};

/// The report page of one run. See the module docs.
#[derive(Debug)]
pub struct Page<'a> {
    sim: &'a Sim,
    title: Option<String>,
    replay: Option<String>,
    report: Option<&'a Report>,
}

impl Sim {
    /// Writes this run's HTML report to `path` (see [`crate::report::html`]).
    pub fn write_report(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        Page::new(self).write(path)
    }
}

impl<'a> Page<'a> {
    /// The page of `sim`'s run so far.
    pub fn new(sim: &'a Sim) -> Self {
        Self {
            sim,
            title: None,
            replay: None,
            report: None,
        }
    }

    /// The page's heading (default: the cluster size and seed).
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// The command that replays the run, shown on the page.
    pub fn replay(mut self, command: impl Into<String>) -> Self {
        self.replay = Some(command.into());
        self
    }

    /// The scenario's report: its parameters and figures join the page.
    pub fn report(mut self, report: &'a Report) -> Self {
        self.report = Some(report);
        self
    }

    /// Writes the page to `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(
            path,
            self.render()
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        )
    }

    /// The page as HTML.
    pub fn render(&self) -> Result<String, Box<dyn Error>> {
        let sim = self.sim;
        let timeline = sim.timeline();
        let from = timeline.map_or(Duration::ZERO, Timeline::start);
        let span = Span {
            from,
            secs: (sim.now().saturating_sub(from)).as_secs_f64().max(1.0),
        };
        let crashes = timeline.map_or(0, |t| count(t.faults(), WindowKind::Crash));
        let detections = detections(sim);
        let title = self.title.clone().unwrap_or_else(|| {
            format!(
                "Beethoven simulation: {} nodes, seed {}",
                sim.len(),
                sim.seed()
            )
        });
        let mut html = String::with_capacity(256 * 1024);
        let _ = write!(
            html,
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
            escape(&title),
            escape(&title)
        );
        self.summary(&mut html, crashes, &detections);
        html.push_str("<h2>What the cluster believed about each node</h2>\n");
        html.push_str(&legend());
        match timeline {
            Some(t) => {
                let (svg, plot) = timeline_chart(t, span)?;
                let _ = writeln!(
                    html,
                    "<figure id=\"timeline\" data-crashes=\"{crashes}\" data-rows=\"{}\" \
                     data-nodes-per-row=\"{}\" {}>{svg}</figure>",
                    rows(t.nodes()).0,
                    rows(t.nodes()).1,
                    plot.attributes(span),
                );
            }
            None => html.push_str(NOT_RECORDED),
        }
        html.push_str("<h2>Detection: crash to offline everywhere</h2>\n");
        let (p50, p99) = (percentile(&detections, 50.0), percentile(&detections, 99.0));
        let _ = writeln!(
            html,
            "<figure id=\"detection\" data-detections=\"{}\" data-p50-s=\"{}\" data-p99-s=\"{}\">{}</figure>",
            detections.len(),
            p50.map_or(String::new(), |d| format!("{:.3}", d.as_secs_f64())),
            p99.map_or(String::new(), |d| format!("{:.3}", d.as_secs_f64())),
            if detections.is_empty() {
                "<p>No crash was detected everywhere in this run.</p>".to_string()
            } else {
                detection_chart(&detections)?
            }
        );
        html.push_str("<h2>Traffic per node</h2>\n");
        match timeline {
            Some(t) if !t.traffic().is_empty() => {
                for (id, bytes) in [("traffic-msgs", false), ("traffic-bytes", true)] {
                    let svg = traffic_chart(t, span, bytes)?;
                    let _ = writeln!(
                        html,
                        "<figure id=\"{id}\" data-seconds=\"{}\">{svg}</figure>",
                        t.traffic().len()
                    );
                }
            }
            Some(_) => html.push_str("<p>No whole second of traffic was recorded.</p>\n"),
            None => html.push_str(NOT_RECORDED),
        }
        if let Some(t) = timeline {
            false_verdicts_table(&mut html, t, span);
            faults_table(&mut html, t, span);
        }
        self.parameters(&mut html);
        html.push_str("</body>\n</html>\n");
        Ok(html)
    }

    /// The headline figures.
    fn summary(&self, html: &mut String, crashes: usize, detections: &[Duration]) {
        let sim = self.sim;
        let mut parts = Vec::new();
        let from = sim.timeline().map_or(Duration::ZERO, Timeline::start);
        for window in sim.timeline().map_or(&[][..], Timeline::faults) {
            let secs = |at: Duration| at.saturating_sub(from).as_secs_f64();
            let until = window
                .until
                .map_or("the end".to_string(), |u| format!("{:.1} s", secs(u)));
            match window.kind {
                WindowKind::Partition => parts.push(format!(
                    "{} nodes cut off from {:.1} s to {until}",
                    window.nodes.len(),
                    secs(window.from)
                )),
                WindowKind::Loss => {
                    parts.push(format!("loss from {:.1} s to {until}", secs(window.from)))
                }
                _ => {}
            }
        }
        if crashes > 0 || !detections.is_empty() {
            let mut part = format!(
                "{crashes} crashes, {} detected everywhere",
                detections.len()
            );
            if let (Some(p50), Some(p99)) =
                (percentile(detections, 50.0), percentile(detections, 99.0))
            {
                let _ = write!(
                    part,
                    " (p50 {:.2} s, p99 {:.2} s)",
                    p50.as_secs_f64(),
                    p99.as_secs_f64()
                );
            }
            parts.push(part);
        }
        parts.push(format!(
            "{} false offline verdicts",
            sim.metrics().false_offline.len()
        ));
        if let Some(r) = self.report {
            if let Some(heal) = r.convergence_after_heal_s {
                parts.push(format!("converged {heal:.2} s after the heal"));
            }
            if let Some(settled) = r.settled_after_s {
                parts.push(format!(
                    "settled {settled:.2} s after the liveness gate began"
                ));
            }
            parts.push(format!(
                "{:.1} msgs and {:.0} bytes per node per second",
                r.msgs_per_node_s, r.bytes_per_node_s
            ));
        }
        parts.push(format!("{} invariant violations", sim.violation_count()));
        let _ = writeln!(
            html,
            "<p class=\"summary\">{}.</p>",
            escape(&parts.join("; "))
        );
    }

    /// The run's parameters and how to replay it.
    fn parameters(&self, html: &mut String) {
        let sim = self.sim;
        let model = sim.network().model();
        let mut rows: Vec<(String, String)> = Vec::new();
        if let Some(r) = self.report {
            rows.push(("scenario".into(), format!("{:?}", r.scenario)));
            rows.push(("window".into(), format!("{} s", r.duration_s)));
            rows.push(("formation".into(), format!("{:?}", r.formation)));
            rows.push(("loss in the window".into(), r.loss.to_string()));
        }
        rows.extend([
            ("nodes".into(), sim.len().to_string()),
            ("seed".into(), sim.seed().to_string()),
            (
                "network".into(),
                format!(
                    "latency {:?}, jitter {:?}, loss {} (now)",
                    model.latency, model.jitter, model.loss
                ),
            ),
            (
                "probe interval".into(),
                format!("{:?}", sim.config().probe_interval),
            ),
            (
                "simulated time".into(),
                format!("{:.3} s", sim.now().as_secs_f64()),
            ),
            ("events".into(), sim.steps().to_string()),
            ("trace hash".into(), format!("{:016x}", sim.trace().hash())),
        ]);
        let replay = self.replay.clone().unwrap_or_else(|| {
            format!(
                "rebuild the same Sim (seed {}) and run the same test: the trace hash repeats",
                sim.seed()
            )
        });
        rows.push(("replay".into(), replay));
        html.push_str("<h2>The run</h2>\n<table id=\"parameters\">\n");
        for (key, value) in rows {
            let _ = writeln!(
                html,
                "<tr><th>{}</th><td><code>{}</code></td></tr>",
                escape(&key),
                escape(&value)
            );
        }
        html.push_str("</table>\n");
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1150px}\
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.2em 0 .3em}\
.summary{font-size:1.05em}figure{margin:0}\
table{border-collapse:collapse}th,td{padding:.15em .7em;border-bottom:1px solid #ddd;text-align:left}\
.legend span{display:inline-block;margin-right:1.1em}\
.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}";

const NOT_RECORDED: &str = "<p>Not recorded: build the simulator with \
<code>SimBuilder::record_timeline(true)</code> or call <code>Sim::record_timeline()</code>.</p>\n";

fn count(faults: &[FaultWindow], kind: WindowKind) -> usize {
    faults.iter().filter(|w| w.kind == kind).count()
}

fn detections(sim: &Sim) -> Vec<Duration> {
    let mut latencies = sim.metrics().latencies(WatchKind::Crash);
    latencies.sort_unstable();
    latencies
}

fn legend() -> String {
    let mut html = String::from("<p class=\"legend\">");
    for (label, colour) in [
        ("online", belief_colour(Belief::Online)),
        ("suspected by some", belief_colour(Belief::Suspected)),
        ("offline at some", belief_colour(Belief::OfflineSome)),
        (
            "offline everywhere",
            belief_colour(Belief::OfflineEverywhere),
        ),
    ] {
        let _ = write!(
            html,
            "<span><i style=\"background:{}\"></i>{label}</span>",
            hex(colour)
        );
    }
    html.push_str("<br>Faults (the thin strip above each row; the network's on top): ");
    for kind in [
        WindowKind::Crash,
        WindowKind::Leave,
        WindowKind::Pause,
        WindowKind::Slow,
        WindowKind::Partition,
        WindowKind::Loss,
    ] {
        let _ = write!(
            html,
            "<span><i style=\"background:{}\"></i>{}</span>",
            hex(window_colour(kind)),
            kind.label()
        );
    }
    let _ = writeln!(
        html,
        "<span><i style=\"border:2px solid {}\"></i>false verdict</span></p>",
        hex(FALSE_VERDICT)
    );
    html
}

fn false_verdicts_table(html: &mut String, t: &Timeline, span: Span) {
    html.push_str("<h2>False verdicts: healthy nodes declared offline</h2>\n");
    if t.false_verdicts().is_empty() {
        html.push_str("<p id=\"false-verdicts\" data-count=\"0\">None.</p>\n");
        return;
    }
    let _ = writeln!(
        html,
        "<table id=\"false-verdicts\" data-count=\"{}\"><tr><th>node</th><th>declared by</th><th>at s</th><th>held offline for s</th></tr>",
        t.false_verdicts().len()
    );
    for v in t.false_verdicts() {
        let lasted = v.until.map_or("to the end".to_string(), |u| {
            format!("{:.3}", (u - v.at).as_secs_f64())
        });
        let _ = writeln!(
            html,
            "<tr><td>node-{}</td><td>node-{}</td><td>{:.3}</td><td>{lasted}</td></tr>",
            v.node,
            v.observer,
            span.x(v.at)
        );
    }
    html.push_str("</table>\n");
}

fn faults_table(html: &mut String, t: &Timeline, span: Span) {
    html.push_str("<h2>Faults</h2>\n");
    if t.faults().is_empty() {
        html.push_str("<p id=\"faults\">None.</p>\n");
        return;
    }
    html.push_str(
        "<table id=\"faults\"><tr><th>fault</th><th>from s</th><th>until s</th><th>nodes</th></tr>\n",
    );
    for w in t.faults() {
        let until = w.until.map(|u| span.x(u));
        let nodes = if w.nodes.is_empty() {
            "the network".to_string()
        } else if w.nodes.len() <= 6 {
            w.nodes
                .iter()
                .map(|n| format!("node-{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            format!("{} nodes", w.nodes.len())
        };
        let _ = writeln!(
            html,
            "<tr class=\"fault\" data-kind=\"{}\" data-from-s=\"{:.3}\" data-until-s=\"{}\" data-nodes=\"{}\">\
             <td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
            w.kind.label(),
            span.x(w.from),
            until.map_or(String::new(), |u| format!("{u:.3}")),
            w.nodes.len(),
            w.kind.label(),
            span.x(w.from),
            until.map_or("the end".to_string(), |u| format!("{u:.3}")),
            escape(&nodes)
        );
    }
    html.push_str("</table>\n");
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Fault, HostFate};

    #[test]
    fn a_recorded_crash_is_drawn_once_and_detected() {
        let mut sim = Sim::builder()
            .nodes(6)
            .seed(3)
            .record_timeline(true)
            .build()
            .expect("forms");
        sim.apply(Fault::Crash {
            node: 4,
            host: HostFate::Vanishes,
        });
        sim.run_for(Duration::from_secs(15));
        let html = Page::new(&sim)
            .replay("the unit test")
            .render()
            .expect("draws");
        assert!(html.contains("data-crashes=\"1\""));
        assert!(html.contains("data-detections=\"1\""));
        let crash = format!("fill=\"{}\"", hex(window_colour(WindowKind::Crash)));
        assert_eq!(html.matches(&crash).count(), 1, "one crash strip");
        let everywhere = format!("fill=\"{}\"", hex(belief_colour(Belief::OfflineEverywhere)));
        assert!(html.contains(&everywhere), "node-4 ends offline everywhere");
        assert!(html.contains("the unit test"));
    }

    #[test]
    fn without_a_recording_the_page_says_how_to_get_one() {
        let sim = Sim::builder().nodes(3).build().expect("forms");
        let html = Page::new(&sim).render().expect("draws");
        assert!(html.contains("Not recorded"));
        assert!(html.contains(&format!("{:016x}", sim.trace().hash())));
    }
}
