//! beethoven-core and foca side by side: N nodes of each through the same
//! seeded, discrete-event, in-memory pump, with the same probe settings and
//! seeds. Prints our/foca ratios for handled packets per second, bytes per
//! packet, time for the cluster to converge after joining, and detection time
//! of one crash.
//!
//! Run: `cargo run --release --manifest-path bench-foca/Cargo.toml -- [--nodes 200] [--runs 5]`

mod engines;
mod pump;

use std::time::Duration;

use engines::{Foca, Ours};
use pump::{Engine, Outcome, Scenario, run};

struct Args {
    nodes: usize,
    runs: u64,
    steady: Duration,
}

fn args() -> Args {
    let mut args = Args {
        nodes: 200,
        runs: 5,
        steady: Duration::from_secs(30),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--nodes" => args.nodes = value() as usize,
            "--runs" => args.runs = value(),
            "--steady-secs" => args.steady = Duration::from_secs(value()),
            // `cargo bench` style flags are ignored.
            _ => {}
        }
    }
    args
}

/// Reads one metric of a run (`None`: it never happened).
type Metric = fn(&Outcome) -> Option<f64>;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn main() {
    let args = args();
    let scenario = Scenario {
        nodes: args.nodes,
        steady: args.steady,
        converge_limit: Duration::from_secs(120),
        detect_limit: Duration::from_secs(60),
    };
    println!(
        "N = {}, {} runs (seeds 1..={}), steady window {:?}, probe every 150 ms, \
         ack timeout 75 ms, 3 indirect probes, gossip every 100 ms to 3",
        args.nodes, args.runs, args.runs, args.steady
    );
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for seed in 1..=args.runs {
        // Alternate which library goes first, so neither always runs on a warmer machine.
        let (a, b) = if seed % 2 == 0 {
            let b = run::<Foca>(&scenario, seed);
            (run::<Ours>(&scenario, seed), b)
        } else {
            let a = run::<Ours>(&scenario, seed);
            (a, run::<Foca>(&scenario, seed))
        };
        for (name, o) in [(Ours::NAME, &a), (Foca::NAME, &b)] {
            println!("seed {seed} {name:>9}: {}", o.line());
        }
        ours.push(a);
        theirs.push(b);
    }
    let pick = |runs: &[Outcome], f: Metric| -> Option<f64> {
        let values: Option<Vec<f64>> = runs.iter().map(f).collect();
        values.map(median)
    };
    println!();
    println!(
        "| metric (median of {} runs) | beethoven-core | foca 2 | ours/foca |",
        args.runs
    );
    println!("|---|---|---|---|");
    let metrics: [(&str, Metric, &str); 7] = [
        (
            "handled packets per second (steady state, one core)",
            |o| Some(o.packets_per_sec()),
            "≥ 2 wanted",
        ),
        (
            "bytes per packet (steady state)",
            |o| Some(o.steady_bytes_per_packet()),
            "lower is better",
        ),
        (
            "packets per node per second (steady state)",
            |o| Some(o.packets_per_node_sec()),
            "lower is better",
        ),
        (
            "bytes per packet (join phase)",
            |o| Some(o.join_bytes_per_packet()),
            "lower is better",
        ),
        (
            "time until 99% of node pairs know each other, s",
            |o| o.converged_99.map(|d| d.as_secs_f64()),
            "lower is better",
        ),
        (
            "time to converge after joining (every node knows every node), s",
            |o| o.converged.map(|d| d.as_secs_f64()),
            "lower is better",
        ),
        (
            "crash detected by every survivor, s",
            |o| o.detected_all.map(|d| d.as_secs_f64()),
            "lower is better",
        ),
    ];
    for (label, f, hint) in metrics {
        let (a, b) = (pick(&ours, f), pick(&theirs, f));
        let show = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.3}"));
        let ratio = match (a, b) {
            (Some(a), Some(b)) if b != 0.0 => format!("{:.2} ({hint})", a / b),
            _ => "n/a".to_string(),
        };
        println!("| {label} | {} | {} | {ratio} |", show(a), show(b));
    }
    // The machine is shared: the ratio within each run (both libraries measured
    // back to back) is steadier than the ratio of medians.
    let ratios: Vec<f64> = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| a.packets_per_sec() / b.packets_per_sec())
        .collect();
    println!(
        "| handled packets per second: median of the per-run ratios | | | {:.2} (min {:.2}, max {:.2}) |",
        median(ratios.clone()),
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );
    let (a, b) = (
        pick(&ours, |o| o.detected_median.map(|d| d.as_secs_f64())),
        pick(&theirs, |o| o.detected_median.map(|d| d.as_secs_f64())),
    );
    if let (Some(a), Some(b)) = (a, b) {
        println!(
            "| crash detected by the median survivor, s | {a:.3} | {b:.3} | {:.2} (lower is better) |",
            a / b
        );
    }
}
