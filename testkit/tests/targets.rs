//! Performance targets (failure detection, traffic, joins, tags), measured in
//! simulated time: deterministic, so they are ordinary tests. LAN defaults:
//! 1 ms ± 0.5 ms, default config.
//!
//! All run in `cargo test --workspace` (the core and the testkit are optimized
//! in test builds, see the root `Cargo.toml`), except the 10,000-node one,
//! which needs ~13 GB of memory and about two minutes:
//!
//! ```text
//! cargo test --release -p beethoven-testkit --test targets -- --ignored --nocapture
//! ```
//!
//! Each also has a `beethoven-sim` command that reproduces its number (in its doc).

#![allow(clippy::print_stderr)] // the measured numbers are printed for the record

use std::time::Duration;

use beethoven_core::Config;
use beethoven_testkit::metrics::percentile;
use beethoven_testkit::scenario::{self, Params, ScenarioKind, sized_tags};
use beethoven_testkit::{Fault, Formation, HostFate, NetworkModel, Outcome, Sim, WatchKind};

const SECOND: Duration = Duration::from_secs(1);
const SEEDS: u64 = 20;

fn lan(nodes: usize, standby: usize, seed: u64) -> Sim {
    lan_tagged(nodes, standby, seed, 0)
}

/// [`lan`] with every node carrying `tag_bytes` of tags ([`sized_tags`]).
fn lan_tagged(nodes: usize, standby: usize, seed: u64, tag_bytes: usize) -> Sim {
    Sim::builder()
        .nodes(nodes)
        .standby(standby)
        .seed(seed)
        .config(Config::for_cluster("targets"))
        .network(NetworkModel::lan())
        .tags(move |i| sized_tags(tag_bytes, i as u64))
        .build()
        .expect("the cluster forms")
}

/// One crash per seed on a formed `nodes`-node LAN cluster: the time until the
/// crashed node is offline on every survivor (`Duration::MAX` if it never is
/// within 60 s).
fn detection_latencies(nodes: usize, host: HostFate) -> Vec<Duration> {
    (1..=SEEDS)
        .map(|seed| {
            let mut sim = lan(nodes, 0, seed);
            let victim = (seed as usize * 37) % nodes;
            assert_eq!(
                sim.apply(Fault::Crash { node: victim, host }),
                Outcome::Fired
            );
            let _ = sim.run_until(60 * SECOND, SECOND / 10, |s| {
                s.metrics().unfinished(WatchKind::Crash) == 0
            });
            assert!(sim.violations().is_empty(), "{:#?}", sim.violations());
            sim.metrics()
                .latencies(WatchKind::Crash)
                .first()
                .copied()
                .unwrap_or(Duration::MAX)
        })
        .collect()
}

fn p(values: &[Duration], q: f64) -> Duration {
    percentile(values, q).expect("values")
}

/// `beethoven-sim --nodes 100 --scenario crash --seeds 20 --duration 60` reports the same
/// metric over 5 crashes per seed.
#[test]
fn silent_crash_at_100_nodes_is_offline_everywhere_p50_3s_p99_6s() {
    let latencies = detection_latencies(100, HostFate::Vanishes);
    let (p50, p99) = (p(&latencies, 50.0), p(&latencies, 99.0));
    eprintln!("silent crash, N=100, {SEEDS} seeds: p50 {p50:?}, p99 {p99:?}");
    assert!(p50 <= 3 * SECOND, "p50 {p50:?}");
    assert!(p99 <= 6 * SECOND, "p99 {p99:?}");
}

/// `beethoven-sim --nodes 100 --scenario crash --hints --seeds 20 --duration 60`.
#[test]
fn process_crash_with_unreachable_hints_at_100_nodes_is_offline_everywhere_p50_half_a_second_p99_1s()
 {
    let latencies = detection_latencies(100, HostFate::StaysUp);
    let (p50, p99) = (p(&latencies, 50.0), p(&latencies, 99.0));
    eprintln!("process crash with hints, N=100, {SEEDS} seeds: p50 {p50:?}, p99 {p99:?}");
    assert!(p50 <= SECOND / 2, "p50 {p50:?}");
    assert!(p99 <= SECOND, "p99 {p99:?}");
}

/// A process that dies and comes back on the same port within 200 ms is never
/// offline, even though its datagrams bounced meanwhile.
#[test]
fn a_process_restarting_on_the_same_port_within_200ms_is_never_declared_offline() {
    let mut hints = 0;
    for seed in 1..=8 {
        let mut sim = lan(100, 0, seed);
        let node = (seed as usize * 53) % 100;
        let host = HostFate::StaysUp;
        assert_eq!(sim.apply(Fault::Crash { node, host }), Outcome::Fired);
        sim.run_for(Duration::from_millis(190));
        let restart = Fault::Restart {
            node,
            new_addr: false,
        };
        assert_eq!(sim.apply(restart), Outcome::Fired);
        sim.run_for(10 * SECOND);
        hints += sim.metrics().unreachable_hints;
        assert_eq!(
            sim.metrics().offline_writes_about.get(&node),
            None,
            "seed {seed}: node {node} written offline"
        );
        assert_eq!(sim.metrics().offline_writes, 0, "seed {seed}");
        assert!(sim.violations().is_empty(), "{:#?}", sim.violations());
    }
    assert!(
        hints > 0,
        "the crashes bounced datagrams: the fast path was exercised"
    );
}

/// One node joining a formed 100-node cluster per seed, every node carrying
/// `tag_bytes` of tags: the time until it is online everywhere. The joiner
/// starts with its tags, so every row of it anyone holds carries them: online
/// everywhere is online with its tags everywhere (checked too).
fn join_latencies(tag_bytes: usize) -> Vec<Duration> {
    (1..=SEEDS)
        .map(|seed| {
            let mut sim = lan_tagged(100, 1, seed, tag_bytes);
            sim.apply(Fault::Start { node: 100 });
            let _ = sim.run_until(30 * SECOND, SECOND / 10, |s| {
                s.metrics().unfinished(WatchKind::Join) == 0
            });
            assert!(sim.violations().is_empty(), "{:#?}", sim.violations());
            let (name, tags) = (sim.name(100).clone(), sized_tags(tag_bytes, 100));
            for j in sim.up() {
                let held = sim.node(j).and_then(|n| n.row(&name)).map(|r| &r.tags);
                assert_eq!(held, Some(&tags), "seed {seed}: node {j}");
            }
            sim.metrics()
                .latencies(WatchKind::Join)
                .first()
                .copied()
                .unwrap_or(Duration::MAX)
        })
        .collect()
}

/// `beethoven-sim --nodes 100 --scenario join-storm --joiners 1 --seeds 20 --duration 10`.
#[test]
fn a_node_joining_100_nodes_is_online_everywhere_within_1s_p99() {
    let latencies = join_latencies(0);
    let p99 = p(&latencies, 99.0);
    eprintln!(
        "join into N=100, {SEEDS} seeds: p50 {:?}, p99 {p99:?}",
        p(&latencies, 50.0)
    );
    assert!(p99 <= SECOND, "p99 {p99:?}");
}

/// `beethoven-sim --nodes 100 --scenario join-storm --joiners 1 --tag-bytes 256
/// --seeds 20 --duration 10`.
#[test]
fn a_node_with_256_bytes_of_tags_joining_100_tagged_nodes_is_online_with_its_tags_everywhere_within_0_3s_p99()
 {
    let latencies = join_latencies(256);
    let p99 = p(&latencies, 99.0);
    eprintln!(
        "join with 256 B of tags into N=100 (each with 256 B), {SEEDS} seeds: p50 {:?}, p99 {p99:?}",
        p(&latencies, 50.0)
    );
    assert!(p99 <= 3 * SECOND / 10, "p99 {p99:?}");
}

/// Steady-state traffic per node per second, measured over `window` (clusters
/// over 1000 nodes start restored, as `beethoven-sim` does).
fn steady_bytes(nodes: usize, window: Duration) -> f64 {
    steady_bytes_tagged(nodes, window, 0)
}

/// [`steady_bytes`] with `tag_bytes` of tags on every node.
fn steady_bytes_tagged(nodes: usize, window: Duration, tag_bytes: usize) -> f64 {
    let report = steady(nodes, window, tag_bytes);
    eprintln!(
        "steady N={nodes}, {tag_bytes} B of tags per node: {:.1} B/node/s, {:.2} msgs/node/s",
        report.bytes_per_node_s, report.msgs_per_node_s
    );
    report.bytes_per_node_s
}

/// `beethoven-sim --scenario steady` over `window`, checked for violations.
fn steady(nodes: usize, window: Duration, tag_bytes: usize) -> scenario::Report {
    let params = Params {
        nodes,
        duration: window,
        seed: 1,
        tag_bytes,
        formation: if nodes > 1000 {
            Formation::Restore
        } else {
            Formation::Join
        },
        ..Params::new(ScenarioKind::Steady)
    };
    let report = scenario::run(&params, &mut |_, _| {}).expect("forms");
    assert_eq!(report.violations, 0, "{:?}", report.first_violation);
    assert_eq!(report.offline_writes, 0);
    report
}

/// `beethoven-sim --nodes 30 --scenario steady --duration 60`: a quiet node's
/// wakeups, which are what it costs on a real machine (BENCHMARKS.md, "idle
/// cost"). Each probe interval brings three inputs at distinct times: the probe
/// deadline, the ack, and a ping from another member. A probe due within half an
/// interval runs when a datagram wakes the node anyway, which takes about half
/// of the deadlines' wakeups away.
#[test]
fn a_quiet_node_wakes_at_most_2_7_times_per_probe_interval() {
    let report = steady(30, 60 * SECOND, 0);
    let interval = Config::default().probe_interval;
    let per_interval = report.wakes_per_node_s * interval.as_secs_f64();
    eprintln!(
        "steady N=30: {:.2} wakes/node/s, {per_interval:.2} per probe interval, {:.2} msgs/node/s",
        report.wakes_per_node_s, report.msgs_per_node_s
    );
    assert!(
        per_interval <= 2.7,
        "{per_interval:.2} wakes per probe interval"
    );
    // The probes are as many as before: one per interval, each a ping and an ack.
    let msgs_per_interval = report.msgs_per_node_s * interval.as_secs_f64();
    assert!(
        (2.0..2.1).contains(&msgs_per_interval),
        "{msgs_per_interval:.2}"
    );
}

/// `beethoven-sim --nodes 100 --scenario steady --duration 60`.
#[test]
fn steady_traffic_at_100_nodes_is_at_most_1kb_per_node_per_second() {
    let bytes = steady_bytes(100, 60 * SECOND);
    assert!(bytes <= 1000.0, "{bytes:.1} B/node/s");
}

/// `beethoven-sim --nodes 1000 --scenario steady --duration 60` and `--nodes 10`.
#[test]
fn steady_traffic_at_1000_nodes_is_at_most_1kb_and_within_1_2x_of_10_nodes() {
    let small = steady_bytes(10, 60 * SECOND);
    let big = steady_bytes(1000, 60 * SECOND);
    eprintln!("ratio N=1000 / N=10: {:.3}", big / small);
    assert!(big <= 1000.0, "{big:.1} B/node/s");
    assert!(big <= 1.2 * small, "{big:.1} vs {small:.1} B/node/s");
}

/// `beethoven-sim --nodes 10000 --scenario steady --duration 60`: ~12.5 GB of
/// memory and about two minutes on the 2-core machine.
#[test]
#[ignore = "N=10000: run in release, needs ~13 GB"]
fn steady_traffic_at_10000_nodes_is_at_most_1kb_and_within_1_2x_of_10_nodes() {
    let small = steady_bytes(10, 60 * SECOND);
    let big = steady_bytes(10_000, 60 * SECOND);
    eprintln!("ratio N=10000 / N=10: {:.3}", big / small);
    assert!(big <= 1000.0, "{big:.1} B/node/s");
    assert!(big <= 1.2 * small, "{big:.1} vs {small:.1} B/node/s");
}

/// `beethoven-sim --nodes 1000 --scenario join-storm --joiners 1 --duration 10`
/// measures one join; here five nodes join one after another (each join is one
/// update, spread by gossip from the node that answered it), and the slowest
/// of the five must make the bounds.
#[test]
fn one_update_reaches_99_99_percent_of_1000_nodes_in_1_5s_and_all_in_2_5s() {
    const JOINS: usize = 5;
    let mut sim = lan(1000, JOINS, 1);
    for joiner in 1000..1000 + JOINS {
        assert_eq!(sim.apply(Fault::Start { node: joiner }), Outcome::Fired);
        let _ = sim.run_until(30 * SECOND, SECOND / 10, |s| {
            s.metrics().unfinished(WatchKind::Join) == 0
        });
        // Let the join's gossip die down before the next one.
        sim.run_for(3 * SECOND);
    }
    let most = sim.metrics().most_latencies(WatchKind::Join);
    let all = sim.metrics().latencies(WatchKind::Join);
    eprintln!("update spread, N=1000, {JOINS} joins: 99.99% {most:?}, 100% {all:?}");
    assert!(sim.violations().is_empty(), "{:#?}", sim.violations());
    assert_eq!((most.len(), all.len()), (JOINS, JOINS), "every join spread");
    assert!(
        most.iter().all(|d| *d <= 3 * SECOND / 2),
        "99.99%: {most:?}"
    );
    assert!(all.iter().all(|d| *d <= 5 * SECOND / 2), "100%: {all:?}");
}

fn lossy_hour(scenario: ScenarioKind) -> scenario::Report {
    let params = Params {
        nodes: 100,
        duration: 3600 * SECOND,
        network: NetworkModel::lan().with_loss(0.10),
        ..Params::new(scenario)
    };
    let report = scenario::run(&params, &mut |_, _| {}).expect("forms");
    eprintln!(
        "{scenario:?}, N=100, 10% loss, 1 h: {} offline writes ({} about untouched nodes), {} false declarations, {} violations (first: {:?})",
        report.offline_writes,
        report.offline_writes_untouched,
        report.false_offline,
        report.violations,
        report.first_violation
    );
    report
}

/// `beethoven-sim --nodes 100 --loss 0.1 --scenario steady --duration 3600`.
#[test]
fn ten_percent_loss_for_an_hour_at_100_nodes_declares_no_one_offline() {
    let report = lossy_hour(ScenarioKind::Steady);
    assert_eq!(report.offline_writes, 0);
    assert_eq!(report.violations, 0, "{:?}", report.first_violation);
}

/// `beethoven-sim --nodes 100 --loss 0.1 --scenario pause --duration 3600`.
#[test]
fn a_node_paused_2s_every_minute_under_10_percent_loss_gets_no_one_else_declared_offline() {
    let report = lossy_hour(ScenarioKind::Pause);
    assert_eq!(report.faults_fired, 60);
    assert_eq!(report.offline_writes_untouched, 0);
    assert_eq!(report.violations, 0, "{:?}", report.first_violation);
}

// ----- tags -----

/// Five tag changes of 64 bytes, each by another node of a formed `nodes`-node
/// cluster whose nodes all carry 64 bytes of tags, one after another: the time
/// until every other node holds the new tags.
fn tag_spreads(nodes: usize) -> Vec<Duration> {
    const CHANGES: u64 = 5;
    let mut sim = lan_tagged(nodes, 0, 1, 64);
    // Let formation's gossip die down, as the scenarios do.
    let _ = sim.run_until(10 * SECOND, SECOND / 10, Sim::quiet);
    for k in 0..CHANGES {
        let node = (k as usize * 37 + 11) % nodes;
        let tags = sized_tags(64, 1_000 + k);
        let change = Fault::SetTags {
            node,
            tags: tags.clone(),
        };
        assert_eq!(sim.apply(change), Outcome::Fired);
        let _ = sim.run_until(10 * SECOND, SECOND / 100, |s| {
            s.metrics().unfinished(WatchKind::Tags) == 0
        });
        let name = sim.name(node).clone();
        for j in sim.up() {
            let held = sim.node(j).and_then(|n| n.row(&name)).map(|r| &r.tags);
            assert_eq!(held, Some(&tags), "node {j} holds node {node}'s new tags");
        }
        // Let the change's gossip die down before the next one.
        sim.run_for(3 * SECOND);
    }
    assert!(sim.violations().is_empty(), "{:#?}", sim.violations());
    let spreads = sim.metrics().latencies(WatchKind::Tags);
    assert_eq!(spreads.len(), CHANGES as usize, "every change spread");
    spreads
}

/// `beethoven-sim --nodes 100 --scenario tag-change --tag-bytes 64 --duration 30`.
#[test]
fn a_tag_change_reaches_every_node_of_100_within_0_3s() {
    let spreads = tag_spreads(100);
    let p99 = p(&spreads, 99.0);
    eprintln!("tag change, N=100, 5 changes: {spreads:?}, p99 {p99:?}");
    assert!(p99 <= 3 * SECOND / 10, "p99 {p99:?}");
}

/// `beethoven-sim --nodes 1000 --scenario tag-change --tag-bytes 64 --duration 30`.
#[test]
fn a_tag_change_reaches_every_node_of_1000_within_0_5s_p99_over_5_changes() {
    let spreads = tag_spreads(1000);
    let p99 = p(&spreads, 99.0);
    eprintln!("tag change, N=1000, 5 changes: {spreads:?}, p99 {p99:?}");
    assert!(p99 <= SECOND / 2, "p99 {p99:?}");
}

/// `beethoven-sim --nodes 100 --scenario steady` with and without `--tag-bytes 256`.
#[test]
fn steady_traffic_at_100_nodes_with_256_bytes_of_tags_is_within_10_percent_of_none() {
    let none = steady_bytes(100, 60 * SECOND);
    let tagged = steady_bytes_tagged(100, 60 * SECOND, 256);
    assert!(tagged <= 1.1 * none, "{tagged:.1} vs {none:.1} B/node/s");
}

/// `beethoven-sim --nodes 1000 --scenario steady` with and without `--tag-bytes 256`.
#[test]
fn steady_traffic_at_1000_nodes_with_256_bytes_of_tags_is_within_10_percent_of_none() {
    let none = steady_bytes(1000, 60 * SECOND);
    let tagged = steady_bytes_tagged(1000, 60 * SECOND, 256);
    assert!(tagged <= 1.1 * none, "{tagged:.1} vs {none:.1} B/node/s");
}
