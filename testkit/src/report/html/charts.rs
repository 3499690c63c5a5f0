//! The charts of the report page, drawn as SVG by `plotters`: the timeline,
//! the detection CDF, traffic; their colours and layout.

use std::error::Error;
use std::time::Duration;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::timeline::{Belief, Timeline, WindowKind};

/// At most this many timeline rows: above, nodes share a row (a bucket shows
/// the worst belief among its nodes).
pub(super) const MAX_ROWS: usize = 100;
/// Time columns of the timeline: a belief shorter than a column still colours
/// the whole column, so a flap of a few hundred ms stays visible.
pub(super) const COLUMNS: usize = 900;
pub(super) const WIDTH: u32 = 1100;

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
pub(super) const FALSE_VERDICT: RGBColor = RGBColor(0xFF, 0x00, 0xC8);
pub(super) const MARK: RGBColor = RGBColor(0x55, 0x55, 0x55);

/// The recorded span of time: the x axis of the timeline and traffic charts.
#[derive(Clone, Copy, Debug)]
pub(super) struct Span {
    pub(super) from: Duration,
    pub(super) secs: f64,
}

impl Span {
    /// Seconds since the span's start.
    pub(super) fn x(self, at: Duration) -> f64 {
        at.saturating_sub(self.from).as_secs_f64().min(self.secs)
    }
}

/// Where the plot area of a chart is, in the SVG's pixels (for tests and
/// readers of the page that map times to positions).
#[derive(Clone, Copy, Debug)]
pub(super) struct PlotArea {
    pub(super) left: i32,
    pub(super) right: i32,
}

impl PlotArea {
    pub(super) fn attributes(self, span: Span) -> String {
        format!(
            "data-plot-left=\"{}\" data-plot-right=\"{}\" data-span-s=\"{:.3}\"",
            self.left, self.right, span.secs
        )
    }
}

/// Rows of the timeline and nodes per row.
pub(super) fn rows(nodes: usize) -> (usize, usize) {
    let per_row = nodes.div_ceil(MAX_ROWS).max(1);
    (nodes.div_ceil(per_row), per_row)
}

pub(super) fn row_label(row: usize, per_row: usize, nodes: usize) -> String {
    if per_row == 1 {
        format!("node-{row}")
    } else {
        let first = row * per_row;
        format!("{first}-{}", (first + per_row).min(nodes) - 1)
    }
}

pub(super) fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// Draws onto an SVG of `size` pixels; the SVG text.
pub(super) fn svg(
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
pub(super) fn row_columns(t: &Timeline, nodes: std::ops::Range<usize>, span: Span) -> Vec<Belief> {
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
pub(super) fn timeline_chart(
    t: &Timeline,
    span: Span,
) -> Result<(String, PlotArea), Box<dyn Error>> {
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
pub(super) fn detection_chart(sorted: &[Duration]) -> Result<String, Box<dyn Error>> {
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
pub(super) fn traffic_chart(
    t: &Timeline,
    span: Span,
    bytes: bool,
) -> Result<String, Box<dyn Error>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thousand_nodes_share_a_hundred_rows() {
        assert_eq!(rows(1000), (100, 10));
        assert_eq!(rows(100), (100, 1));
        assert_eq!(rows(101), (51, 2));
        assert_eq!(row_label(3, 10, 1000), "30-39");
    }
}
