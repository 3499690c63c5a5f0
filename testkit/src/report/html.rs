//! A run drawn as one self-contained HTML page (no network access needed to
//! open it): a timeline per node (or per bucket of nodes) of what the rest of
//! the cluster believed about it, with the fault windows and false verdicts; a
//! CDF of crash detection; traffic per node per second; the run's parameters,
//! seed and trace hash, and how to replay it. The charts are SVG drawn by
//! `plotters`; this module needs the `report` feature (part of `cli`, the
//! default).
//!
//! The timeline and traffic come from the run's
//! [`Timeline`](crate::timeline::Timeline), which is recorded only when asked
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

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::metrics::{WatchKind, percentile};
use crate::report::Report;
use crate::sim::Sim;
use crate::timeline::{Belief, FaultWindow, Timeline, WindowKind};

/// At most this many timeline rows: above, nodes share a row (a bucket shows
/// the worst belief among its nodes).
const MAX_ROWS: usize = 100;
/// Time columns of the timeline: a belief shorter than a column still colours
/// the whole column, so a flap of a few hundred ms stays visible.
const COLUMNS: usize = 900;
const WIDTH: u32 = 1100;

/// The colour of a belief on the timeline.
pub fn belief_colour(belief: Belief) -> RGBColor {
    match belief {
        Belief::Absent => WHITE,
        Belief::Online => RGBColor(0xCB, 0xE8, 0xD2),
        Belief::Suspected => RGBColor(0xF2, 0xB7, 0x05),
        Belief::OfflineSome => RGBColor(0xE8, 0x74, 0x3B),
        Belief::OfflineEverywhere => RGBColor(0xB3, 0x26, 0x1E),
    }
}

/// The colour of a fault window (the timeline's strips, the traffic charts'
/// shading).
pub fn window_colour(kind: WindowKind) -> RGBColor {
    match kind {
        WindowKind::Crash => RGBColor(0x22, 0x22, 0x22),
        WindowKind::Leave => RGBColor(0x77, 0x77, 0x77),
        WindowKind::Pause => RGBColor(0x7B, 0x3F, 0xBF),
        WindowKind::Slow => RGBColor(0x1F, 0x77, 0xB4),
        WindowKind::Partition => RGBColor(0x12, 0xA4, 0xA4),
        WindowKind::Loss => RGBColor(0x8C, 0x6D, 0x31),
    }
}

/// The outline of a false verdict on the timeline.
const FALSE_VERDICT: RGBColor = RGBColor(0xFF, 0x00, 0xC8);
const MARK: RGBColor = RGBColor(0x55, 0x55, 0x55);

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

/// The recorded span of time: the x axis of the timeline and traffic charts.
#[derive(Clone, Copy, Debug)]
struct Span {
    from: Duration,
    secs: f64,
}

impl Span {
    /// Seconds since the span's start.
    fn x(self, at: Duration) -> f64 {
        at.saturating_sub(self.from).as_secs_f64().min(self.secs)
    }
}

/// Where the plot area of a chart is, in the SVG's pixels (for tests and
/// readers of the page that map times to positions).
#[derive(Clone, Copy, Debug)]
struct PlotArea {
    left: i32,
    right: i32,
}

impl PlotArea {
    fn attributes(self, span: Span) -> String {
        format!(
            "data-plot-left=\"{}\" data-plot-right=\"{}\" data-span-s=\"{:.3}\"",
            self.left, self.right, span.secs
        )
    }
}

fn count(faults: &[FaultWindow], kind: WindowKind) -> usize {
    faults.iter().filter(|w| w.kind == kind).count()
}

fn detections(sim: &Sim) -> Vec<Duration> {
    let mut latencies = sim.metrics().latencies(WatchKind::Crash);
    latencies.sort_unstable();
    latencies
}

/// Rows of the timeline and nodes per row.
fn rows(nodes: usize) -> (usize, usize) {
    let per_row = nodes.div_ceil(MAX_ROWS).max(1);
    (nodes.div_ceil(per_row), per_row)
}

fn row_label(row: usize, per_row: usize, nodes: usize) -> String {
    if per_row == 1 {
        format!("node-{row}")
    } else {
        let first = row * per_row;
        format!("{first}-{}", (first + per_row).min(nodes) - 1)
    }
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

fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// Draws onto an SVG of `size` pixels; the SVG text.
fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<PlotArea, Box<dyn Error>>,
) -> Result<(String, PlotArea), Box<dyn Error>> {
    let mut out = String::new();
    let plot = {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)?;
        let plot = draw(&root)?;
        root.present()?;
        plot
    };
    Ok((out, plot))
}

/// The worst belief of each column for the nodes of one row.
fn row_columns(t: &Timeline, nodes: std::ops::Range<usize>, span: Span) -> Vec<Belief> {
    let mut columns = vec![Belief::Absent; COLUMNS];
    let column =
        |at: Duration| ((span.x(at) / span.secs * COLUMNS as f64) as usize).min(COLUMNS - 1);
    let end = span.from + Duration::from_secs_f64(span.secs);
    for i in nodes {
        let changes = t.beliefs(i);
        for (k, &(at, belief)) in changes.iter().enumerate() {
            let until = changes.get(k + 1).map_or(end, |&(next, _)| next);
            let (first, last) = (column(at), column(until.max(at)));
            for worst in &mut columns[first..=last] {
                *worst = (*worst).max(belief);
            }
        }
    }
    columns
}

/// The timeline: a row per node (or bucket), the belief as the row's bar, the
/// faults in a strip above it, false verdicts outlined, marks as lines.
fn timeline_chart(t: &Timeline, span: Span) -> Result<(String, PlotArea), Box<dyn Error>> {
    let nodes = t.nodes();
    let (rows, per_row) = rows(nodes);
    let row_px = if rows <= 30 { 14 } else { 8 };
    let height = (rows as u32 + 1) * row_px + 90;
    let total = rows as f64 + 1.0;
    // Row r (the network is row -1, on top) spans y in [total - r - 2, total - r - 1].
    let top = |r: isize| total - r as f64 - 1.0;
    svg((WIDTH, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..span.secs, 0f64..total)?;
        let label = |y: &f64| {
            let r = (total - y - 1.0).floor();
            if r < 0.0 {
                "network".to_string()
            } else if r as usize >= rows {
                String::new()
            } else {
                row_label(r as usize, per_row, nodes)
            }
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("simulated seconds since the recording began")
            .y_labels(rows.min(20) + 1)
            .y_label_formatter(&label)
            .draw()?;
        let secs = |c: usize| c as f64 * span.secs / COLUMNS as f64;
        let mut bars = Vec::new();
        for r in 0..rows {
            let columns = row_columns(t, r * per_row..((r + 1) * per_row).min(nodes), span);
            let mut c = 0;
            while c < COLUMNS {
                let belief = columns[c];
                let run = columns[c..].iter().take_while(|&&b| b == belief).count();
                if belief != Belief::Absent {
                    let y = top(r as isize);
                    bars.push(Rectangle::new(
                        [(secs(c), y - 0.35), (secs(c + run), y - 1.0)],
                        belief_colour(belief).filled(),
                    ));
                }
                c += run;
            }
        }
        chart.draw_series(bars)?;
        let mut strips = Vec::new();
        for window in t.faults() {
            let (x0, x1) = (
                span.x(window.from),
                window.until.map_or(span.secs, |u| span.x(u)),
            );
            let style = window_colour(window.kind).filled();
            let mut rows_hit: Vec<isize> = window
                .nodes
                .iter()
                .map(|&i| (i / per_row) as isize)
                .collect();
            rows_hit.sort_unstable();
            rows_hit.dedup();
            if window.nodes.is_empty() || window.kind == WindowKind::Partition {
                rows_hit.insert(0, -1);
            }
            for r in rows_hit {
                let y = top(r);
                strips.push(Rectangle::new(
                    [(x0, y), (x1.max(x0 + 0.05), y - 0.35)],
                    style,
                ));
            }
        }
        chart.draw_series(strips)?;
        let outline = ShapeStyle {
            color: FALSE_VERDICT.to_rgba(),
            filled: false,
            stroke_width: 2,
        };
        chart.draw_series(t.false_verdicts().iter().map(|v| {
            let y = top((v.node / per_row) as isize);
            let x1 = v.until.map_or(span.secs, |u| span.x(u));
            Rectangle::new(
                [(span.x(v.at), y), (x1.max(span.x(v.at) + 0.1), y - 1.0)],
                outline,
            )
        }))?;
        for (at, text) in t.marks() {
            let x = span.x(*at);
            chart.draw_series(LineSeries::new(
                [(x, 0.0), (x, total)],
                MARK.stroke_width(1),
            ))?;
            chart.draw_series(std::iter::once(Text::new(
                text.clone(),
                (x, total),
                ("sans-serif", 11)
                    .into_font()
                    .color(&MARK)
                    .pos(Pos::new(HPos::Right, VPos::Top)),
            )))?;
        }
        // The network's row is above the mesh's labels: name it by hand.
        let (px, py) = chart.backend_coord(&(0.0, total));
        root.draw(&Text::new(
            "network",
            (px - 6, py - 4),
            ("sans-serif", 11)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))?;
        let (x, _) = chart.plotting_area().get_pixel_range();
        Ok(PlotArea {
            left: x.start,
            right: x.end,
        })
    })
}

/// The CDF of detection latencies with p50 and p99 marked.
fn detection_chart(sorted: &[Duration]) -> Result<String, Box<dyn Error>> {
    let secs: Vec<f64> = sorted.iter().map(Duration::as_secs_f64).collect();
    let max = secs.last().copied().unwrap_or(1.0).max(0.001) * 1.1;
    let n = secs.len() as f64;
    let (svg, _) = svg((WIDTH / 2 + 150, 300), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..max, 0f64..1.05)?;
        chart
            .configure_mesh()
            .x_desc("seconds from crash to offline everywhere")
            .y_desc("fraction of crashes")
            .draw()?;
        let mut steps = vec![(0.0, 0.0)];
        for (k, &x) in secs.iter().enumerate() {
            steps.push((x, k as f64 / n));
            steps.push((x, (k + 1) as f64 / n));
        }
        let line = RGBColor(0x1F, 0x4E, 0x9C);
        chart.draw_series(LineSeries::new(steps, line.stroke_width(2)))?;
        for (p, colour) in [
            (50.0, RGBColor(0x2E, 0x8B, 0x57)),
            (99.0, RGBColor(0xB3, 0x26, 0x1E)),
        ] {
            if let Some(x) = crate::metrics::percentile_f64(&secs, p) {
                chart.draw_series(LineSeries::new(
                    [(x, 0.0), (x, 1.05)],
                    colour.stroke_width(1),
                ))?;
                chart.draw_series(std::iter::once(Text::new(
                    format!("p{p:.0} {x:.2} s"),
                    (x, if p < 60.0 { 0.3 } else { 0.15 }),
                    ("sans-serif", 12).into_font().color(&colour),
                )))?;
            }
        }
        Ok(PlotArea { left: 0, right: 0 })
    })?;
    Ok(svg)
}

/// Messages (or bytes) per node per second: the mean over running nodes and
/// the busiest node, with the fault windows.
fn traffic_chart(t: &Timeline, span: Span, bytes: bool) -> Result<String, Box<dyn Error>> {
    let seconds = t.traffic();
    let mean: Vec<(f64, f64)> = seconds
        .iter()
        .map(|s| {
            let total = if bytes { s.bytes } else { s.msgs };
            (
                s.second as f64 + 0.5,
                total as f64 / s.running.max(1) as f64,
            )
        })
        .collect();
    let busiest: Vec<(f64, f64)> = seconds
        .iter()
        .map(|s| {
            let most = if bytes {
                s.max_node_bytes
            } else {
                s.max_node_msgs
            };
            (s.second as f64 + 0.5, most as f64)
        })
        .collect();
    let top = busiest.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let (svg, _) = svg((WIDTH, 260), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..span.secs, 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("simulated seconds since the recording began")
            .y_desc(if bytes { "bytes / s" } else { "datagrams / s" })
            .draw()?;
        // Network-wide windows shade the chart; a node's fault is a line where it began.
        for window in t.faults() {
            let colour = window_colour(window.kind);
            let x0 = span.x(window.from);
            if window.nodes.is_empty() || window.kind == WindowKind::Partition {
                let x1 = window.until.map_or(span.secs, |u| span.x(u));
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x0, 0.0), (x1, top)],
                    colour.mix(0.15).filled(),
                )))?;
            } else {
                chart.draw_series(LineSeries::new([(x0, 0.0), (x0, top)], colour.mix(0.5)))?;
            }
        }
        let blue = RGBColor(0x1F, 0x4E, 0x9C);
        let orange = RGBColor(0xE8, 0x74, 0x3B);
        chart
            .draw_series(LineSeries::new(mean, blue.stroke_width(2)))?
            .label("mean per node")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], blue.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(busiest, orange.stroke_width(1)))?
            .label("busiest node")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], orange.stroke_width(1)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        Ok(PlotArea { left: 0, right: 0 })
    })?;
    Ok(svg)
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

    #[test]
    fn a_thousand_nodes_share_a_hundred_rows() {
        assert_eq!(rows(1000), (100, 10));
        assert_eq!(rows(100), (100, 1));
        assert_eq!(rows(101), (51, 2));
        assert_eq!(row_label(3, 10, 1000), "30-39");
    }
}
