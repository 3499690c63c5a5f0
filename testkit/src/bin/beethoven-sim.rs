//! `beethoven-sim`: runs a scenario on a simulated cluster and prints a report.
//!
//! ```text
//! beethoven-sim --nodes 1000 --scenario crash --seeds 5 --duration 60
//! beethoven-sim --nodes 100 --loss 0.1 --scenario steady --duration 3600 --json
//! beethoven-sim --nodes 10000 --scenario steady --duration 60
//! beethoven-sim --nodes 100 --scenario partition --partition-secs 600 --seeds 10
//! beethoven-sim --nodes 100 --scenario loss --loss 0.5 --duration 300 --seeds 5
//! beethoven-sim --nodes 100 --scenario slow --duration 300
//! beethoven-sim --case 'Scenario::new(4).seed(3).fault_at(ms(1432), Fault::Crash { node: 0, host: HostFate::Vanishes })'
//! beethoven-sim --nodes 100 --scenario partition --report out.html
//! beethoven-sim --nodes 100 --scenario brownout --brownout-loss 0.9 --brownout-secs 3 --brownout-every-secs 60 --duration 300
//! beethoven-sim --nodes 100 --scenario bursts --duration 300 --seeds 10
//! beethoven-sim --nodes 1000 --scenario rack --rack-fraction 0.1
//! beethoven-sim --nodes 1000 --scenario user-events --rate 10 --duration 30
//! beethoven-sim --nodes 100 --scenario query --rate 2 --duration 20
//! ```
//!
//! `--case` replays one case of a property test: the scenario written as the
//! Rust that builds it, as a failed run prints it (`replay the run:`). It
//! forms the cluster, runs the chaos phase and the liveness gate
//! (`Scenario::replay`), and prints the whole timeline, the violations and the
//! trace hash, which equals that of the same scenario run in a test without an
//! app that acts. `--case-file` reads the case from a file. The other scenario
//! flags do not apply to a case.
//!
//! `--report FILE.html` draws the run (the first seed's) as one self-contained
//! page: what the cluster believed about each node over time, the fault
//! windows, detection, traffic, and the command that replays it.
//!
//! `--loss` is the network's loss over the measured window: the cluster forms,
//! and formation's gossip dies down, on a loss-free network; the loss is turned
//! on when the window starts. Scenarios with faults end with the liveness gate,
//! which heals that loss with the partitions and delays before it waits for the
//! cluster to settle, so it reports only what the healed network leaves wrong.
//!
//! Clusters of up to 1000 nodes are formed by real joins; larger ones start
//! restored (every node loads the whole table, as a cluster formed long ago),
//! since join formation costs N² rows sent and merged. `--formation` overrides.
//!
//! Memory per tracked node is the growth of resident memory while the cluster
//! forms, divided by nodes² (every node tracks every node). Read from
//! `/proc/self/statm`, so it needs Linux and includes allocator overhead and the
//! simulator's own per-node state; it is an upper bound, not an exact heap count
//! (a counting global allocator would need `unsafe`, which the workspace forbids).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool prints

use std::process::ExitCode;
use std::time::Duration;

use beethoven_testkit::BurstModel;
use beethoven_testkit::metrics::resident_memory;
use beethoven_testkit::report::html::Page;
use beethoven_testkit::report::{Report, Summary};
use beethoven_testkit::scenario::{self, BrownoutSpec, Params, ScenarioKind};
use beethoven_testkit::{BuildError, Formation, HostFate, NetworkModel, Replay, Scenario};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

/// Run a scenario on a simulated beethoven cluster and report what happened.
#[derive(Debug, Parser)]
#[command(name = "beethoven-sim", version)]
struct Args {
    /// Cluster size.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    nodes: u32,
    /// The seed (the first one with --seeds).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Repeat over this many consecutive seeds and report percentiles.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// Packet loss probability over the measured window, 0.0..=1.0 (turned on
    /// after formation; healed before the liveness gate). `loss` defaults to 0.5.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    loss: f64,
    /// One-way latency in milliseconds (jitter is half of it).
    #[arg(long, default_value_t = 1.0, value_parser = non_negative)]
    latency: f64,
    /// Simulated seconds of the measured window.
    #[arg(long, default_value_t = 60.0, value_parser = non_negative)]
    duration: f64,
    /// What to run.
    #[arg(long, value_enum, default_value_t = ScenarioKind::Steady)]
    scenario: ScenarioKind,
    /// join-storm: how many nodes join at once (default: a tenth of --nodes).
    #[arg(long)]
    joiners: Option<usize>,
    /// crash: the host stays up and bounces datagrams, so senders get
    /// unreachable hints (default: the host vanishes silently).
    #[arg(long)]
    hints: bool,
    /// How the cluster forms before the window: real joins, or every node
    /// restored with the whole table. Default: join up to 1000 nodes, restore above.
    #[arg(long, value_enum)]
    formation: Option<Formation>,
    /// partition, partition-retention: cut the nodes off at 1 s for this many
    /// seconds, then heal (the window grows to at least this + 61 s).
    /// Default: partition heals halfway through the window;
    /// partition-retention lasts the retention + 60 s.
    #[arg(long, value_parser = non_negative)]
    partition_secs: Option<f64>,
    /// partition-retention: the nodes' offline_retention in seconds (default 60).
    #[arg(long, value_parser = non_negative)]
    retention_secs: Option<f64>,
    /// slow: how many members receive every datagram late.
    #[arg(long, default_value_t = 8)]
    slow_members: usize,
    /// slow: the shortest delay of a datagram to a slow member, seconds.
    #[arg(long, default_value_t = 1.0, value_parser = non_negative)]
    slow_min_secs: f64,
    /// slow: the longest delay of a datagram to a slow member, seconds.
    #[arg(long, default_value_t = 5.0, value_parser = non_negative)]
    slow_max_secs: f64,
    /// slow: how many of the slow members crash silently at three quarters of
    /// the window (their detection everywhere is reported).
    #[arg(long, default_value_t = 0)]
    slow_crashes: usize,
    /// brownout: the loss of each brownout.
    #[arg(long, default_value_t = 1.0, value_parser = probability)]
    brownout_loss: f64,
    /// brownout: how long each brownout lasts, seconds.
    #[arg(long, default_value_t = 1.0, value_parser = non_negative)]
    brownout_secs: f64,
    /// brownout: one brownout every this many seconds (the first at half of it).
    #[arg(long, default_value_t = 30.0, value_parser = non_negative)]
    brownout_every_secs: f64,
    /// bursts: the mean length of a burst, seconds.
    #[arg(long, default_value_t = 1.0, value_parser = non_negative)]
    burst_secs: f64,
    /// bursts: the mean time between bursts, seconds.
    #[arg(long, default_value_t = 10.0, value_parser = non_negative)]
    burst_gap_secs: f64,
    /// bursts: the loss inside a burst.
    #[arg(long, default_value_t = 0.7, value_parser = probability)]
    burst_loss: f64,
    /// bursts: the loss between bursts (unless --loss is set).
    #[arg(long, default_value_t = 0.02, value_parser = probability)]
    burst_loss_out: f64,
    /// rack: the share of nodes that fail at once (at most half).
    #[arg(long, default_value_t = 0.1, value_parser = probability)]
    rack_fraction: f64,
    /// Give every node tags of this many encoded bytes from the start (and
    /// tag-change: change to tags of this size; default 64 there).
    #[arg(long, default_value_t = 0)]
    tag_bytes: usize,
    /// The nodes' probe interval in milliseconds, with the probe timeout at half
    /// of it (default: `Config::default()`'s, 150 ms and 75 ms).
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..=60_000))]
    probe_interval_ms: Option<u64>,
    /// user-events: events per second, cluster-wide; query: queries per second.
    #[arg(long, default_value_t = 10.0, value_parser = non_negative)]
    rate: f64,
    /// user-events: each event's payload, bytes.
    #[arg(long, default_value_t = 100)]
    event_bytes: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Replay one case: a scenario as Rust (`Scenario::new(4).seed(3)...`), as
    /// a failed property test prints it.
    #[arg(long, conflicts_with = "case_file")]
    case: Option<String>,
    /// Replay the case written in this file.
    #[arg(long)]
    case_file: Option<std::path::PathBuf>,
    /// Also draw the run (the first seed's) as an HTML page here.
    #[arg(long, value_name = "FILE.html")]
    report: Option<std::path::PathBuf>,
}

/// Replays one case and prints its story; exit code 2 if anything failed.
fn replay(code: &str) -> ExitCode {
    let scenario: Scenario = match code.parse() {
        Ok(scenario) => scenario,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Replay { sim, gate } = match scenario.replay() {
        Ok(replay) => replay,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("case: {scenario}");
    println!("{}", sim.story(&[]));
    match &gate {
        Ok(took) => println!("liveness gate: settled after {:.3}s", took.as_secs_f64()),
        Err(violation) => println!("liveness gate: failed {violation}"),
    }
    let clean = sim.ensure_clean();
    match &clean {
        Ok(()) => println!("violations: none"),
        Err(failure) => println!("violations: {failure}"),
    }
    println!("steps: {}", sim.steps());
    println!("trace hash: {:016x}", sim.trace().hash());
    if gate.is_err() || clean.is_err() {
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

/// A finite number of at least zero (seconds or milliseconds).
fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (0.0..=1e9).contains(&x) => Ok(x),
        Ok(_) => Err("must be a finite number from 0 to 1e9".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A probability: a number from 0 to 1.
fn probability(text: &str) -> Result<f64, String> {
    match non_negative(text)? {
        p if p <= 1.0 => Ok(p),
        _ => Err("must be from 0.0 to 1.0".into()),
    }
}

/// Draws the run as an HTML page at `path`, with the command that replays it.
fn write_page(
    path: &std::path::Path,
    sim: &beethoven_testkit::Sim,
    report: &Report,
    seed: u64,
) -> std::io::Result<()> {
    // The command as given, for this seed alone, without the page itself.
    let mut replay = vec!["beethoven-sim".to_string()];
    let mut given = std::env::args().skip(1);
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--seed" | "--seeds" | "--report" => {
                given.next();
            }
            _ if ["--seed=", "--seeds=", "--report="]
                .iter()
                .any(|p| arg.starts_with(p)) => {}
            _ => replay.push(shell_word(&arg)),
        }
    }
    replay.push(format!("--seed {seed}"));
    let title = format!(
        "beethoven-sim: {:?}, {} nodes, seed {seed}",
        report.scenario, report.nodes
    );
    Page::new(sim)
        .title(title)
        .replay(replay.join(" "))
        .report(report)
        .write(path)
}

/// `word`, quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// `--scenario user-events`: one report per seed; fails when the delivery
/// checker finds a fault.
fn user_events(base: &Params, seeds: u64, json: bool) -> ExitCode {
    reports(base, seeds, json, scenario::user_events::run, |report| {
        (report.table(), report.faults > 0)
    })
}

/// `--scenario query`: one report per seed; fails when a member outside a
/// query's filter answered it.
fn query(base: &Params, seeds: u64, json: bool) -> ExitCode {
    reports(base, seeds, json, scenario::query::run, |report| {
        let outside = report.all.answers_from_outside + report.db.answers_from_outside;
        (report.table(), outside > 0)
    })
}

/// A scenario with a report of its own (`user_events::run`, `query::run`).
type ScenarioRun<R> = fn(&Params, &mut dyn FnMut(Duration, Duration)) -> Result<R, BuildError>;

/// One report of `run` per seed, as a table or JSON; `judge` gives the table
/// and whether the report is a failure (exit code 2).
fn reports<R: serde::Serialize>(
    base: &Params,
    seeds: u64,
    json: bool,
    run: ScenarioRun<R>,
    judge: fn(&R) -> (String, bool),
) -> ExitCode {
    let mut failed = false;
    for k in 0..seeds {
        let params = Params {
            seed: base.seed + k,
            ..base.clone()
        };
        let report = match run(&params, &mut |_, _| {}) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("seed {}: {e}", params.seed);
                return ExitCode::FAILURE;
            }
        };
        let (table, bad) = judge(&report);
        failed |= bad;
        if json {
            match serde_json::to_string_pretty(&report) {
                Ok(text) => println!("{text}"),
                Err(e) => {
                    eprintln!("cannot serialize the report: {e}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            print!("{table}");
        }
    }
    if failed {
        eprintln!("faults found (see the report)");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(path) = &args.case_file {
        return match std::fs::read_to_string(path) {
            Ok(code) => replay(&code),
            Err(e) => {
                eprintln!("cannot read {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    if let Some(code) = &args.case {
        return replay(code);
    }
    let network = NetworkModel::lan()
        .with_latency(Duration::from_secs_f64(args.latency / 1000.0))
        .with_loss(args.loss);
    let nodes = args.nodes as usize;
    let secs = Duration::from_secs_f64;
    let mut base = Params {
        scenario: args.scenario,
        nodes,
        seed: args.seed,
        network: network.clone(),
        duration: secs(args.duration),
        joiners: args.joiners,
        crash_host: if args.hints {
            HostFate::StaysUp
        } else {
            HostFate::Vanishes
        },
        formation: args.formation.unwrap_or(if nodes > 1000 {
            Formation::Restore
        } else {
            Formation::Join
        }),
        partition: args.partition_secs.map(secs),
        retention: args.retention_secs.map(secs),
        slow_members: args.slow_members,
        slow_delay: (secs(args.slow_min_secs), secs(args.slow_max_secs)),
        slow_crashes: args.slow_crashes,
        tag_bytes: args.tag_bytes,
        brownout: BrownoutSpec {
            loss: args.brownout_loss,
            length: secs(args.brownout_secs),
            every: secs(args.brownout_every_secs),
        },
        bursts: BurstModel {
            mean_burst: secs(args.burst_secs),
            mean_gap: secs(args.burst_gap_secs),
            loss_in: args.burst_loss,
            loss_out: args.burst_loss_out,
        },
        rack_fraction: args.rack_fraction,
        event_rate: args.rate,
        event_bytes: args.event_bytes,
        ..Params::new(args.scenario)
    };
    if let Some(ms) = args.probe_interval_ms {
        let interval = Duration::from_millis(ms);
        base.config = base
            .config
            .with_probe_interval(interval)
            .with_probe_timeout(interval / 2);
    }
    if args.scenario == ScenarioKind::UserEvents {
        return user_events(&base, args.seeds, args.json);
    }
    if args.scenario == ScenarioKind::Query {
        return query(&base, args.seeds, args.json);
    }
    let window = base.window().as_secs_f64();
    let long = nodes >= 1000 || window >= 600.0 || args.seeds > 1;
    let bar = if long && !args.json {
        let bar = ProgressBar::new(args.seeds * window.ceil() as u64);
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} sim s {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };
    let mut reports: Vec<Report> = Vec::new();
    for k in 0..args.seeds {
        let params = Params {
            seed: args.seed + k,
            ..base.clone()
        };
        if let Some(bar) = &bar {
            bar.set_message(format!("seed {} forming", params.seed));
        }
        let rss_before = resident_memory();
        let base = k * window.ceil() as u64;
        let mut formed = None;
        let mut progress = |done: Duration, _total: Duration| {
            if formed.is_none() {
                formed = resident_memory();
            }
            if let Some(bar) = &bar {
                bar.set_message(format!("seed {}", params.seed));
                bar.set_position(base + done.as_secs());
            }
        };
        let draw = args.report.as_ref().filter(|_| k == 0);
        let run = match draw {
            Some(_) => {
                scenario::run_recorded(&params, &mut progress).map(|(r, sim)| (r, Some(sim)))
            }
            None => scenario::run(&params, &mut progress).map(|r| (r, None)),
        };
        let (mut report, sim) = match run {
            Ok(run) => run,
            Err(e) => {
                eprintln!("seed {}: {e}", params.seed);
                return ExitCode::FAILURE;
            }
        };
        if let (Some(path), Some(sim)) = (draw, &sim)
            && let Err(e) = write_page(path, sim, &report, params.seed)
        {
            eprintln!("cannot write the report {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        if let (Some(before), Some(after)) = (rss_before, formed)
            && k == 0
        {
            let rows = (nodes as f64) * (nodes as f64);
            report.memory_per_tracked_node_bytes = Some(after.saturating_sub(before) as f64 / rows);
        }
        reports.push(report);
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let failed = reports
        .iter()
        .any(|r| r.violations > 0 || r.gate_violation.is_some());
    if args.json {
        let out = if reports.len() == 1 {
            serde_json::to_string_pretty(&reports[0])
        } else {
            serde_json::to_string_pretty(&serde_json::json!({
                "runs": reports,
                "summary": Summary::of(&reports),
            }))
        };
        match out {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("cannot serialize the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else if reports.len() == 1 {
        print!("{}", reports[0].table());
    } else {
        print!("{}", Summary::of(&reports).table());
    }
    if failed {
        eprintln!("invariant violations found (see the report)");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
