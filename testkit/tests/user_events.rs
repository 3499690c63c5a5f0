//! User events in the simulator: the issue's targets (simulated time, so
//! deterministic), the delivery checker over restarts, apps that send and
//! hear of refused sends.
//!
//! The long targets (N=1000; 300 s at 50 % loss; a flood; crash detection
//! under load) take a few minutes each, and are listed in
//! `scripts/long_targets.sh`:
//!
//! ```text
//! cargo test --release -p beethoven-testkit --test user_events -- --ignored --nocapture
//! ```
//!
//! Each has a `beethoven-sim` command that reproduces its number (in its
//! doc), but for the flood and the crashes under load, which only the test runs.

#![allow(clippy::print_stderr)] // the measured numbers are printed for the record

use std::time::Duration;

use beethoven_core::SendEventError;
use beethoven_testkit::delivery::{DeliveryLog, Recorder};
use beethoven_testkit::scenario::user_events::{Flood, UserEventReport, run_with};
use beethoven_testkit::scenario::{Params, ScenarioKind};
use beethoven_testkit::{
    App, Context, Event, Fault, HostFate, NetworkModel, Sim, WatchKind, percentile,
};

const SECOND: Duration = Duration::from_secs(1);

fn params(nodes: usize, rate: f64, duration: Duration, loss: f64, seed: u64) -> Params {
    Params {
        nodes,
        seed,
        duration,
        event_rate: rate,
        network: NetworkModel::lan().with_loss(loss),
        ..Params::new(ScenarioKind::UserEvents)
    }
}

fn user_events(
    nodes: usize,
    rate: f64,
    duration: Duration,
    loss: f64,
    seed: u64,
) -> UserEventReport {
    report(&params(nodes, rate, duration, loss, seed), None)
}

fn report(params: &Params, flood: Option<Flood>) -> UserEventReport {
    let report = run_with(params, flood, &mut |_, _| {}).expect("the cluster forms");
    eprintln!("{}", report.table());
    report
}

/// The checker's faults other than a missing delivery.
fn wrong_deliveries(report: &UserEventReport) -> Vec<&String> {
    report
        .first_faults
        .iter()
        .filter(|f| !f.starts_with("Missing"))
        .collect()
}

/// `beethoven-sim --nodes 100 --scenario user-events --rate 10 --duration 300 --loss 0.5`
#[test]
#[ignore = "300 s at 50 % loss: run with --release --ignored"]
fn at_100_nodes_and_50_percent_loss_for_300_s_999_per_mille_arrive_within_10_s_all_within_60_s_with_no_false_offline()
 {
    let report = user_events(100, 10.0, 300 * SECOND, 0.5, 1);
    assert_eq!(report.events_sent, 3000);
    assert!(
        wrong_deliveries(&report).is_empty(),
        "{:?}",
        report.first_faults
    );
    assert!(
        report.delivered_within_10s >= 0.999,
        "{}",
        report.delivered_within_10s
    );
    assert_eq!(report.delivered_within_60s, 1.0);
    assert_eq!(report.false_offline, 0);
}

/// `beethoven-sim --nodes 30 --scenario user-events --rate 5 --duration 30 --loss 0.5 --seed 6`:
/// the same target, smaller.
#[test]
fn at_30_nodes_and_50_percent_loss_events_arrive_within_10_s_with_no_false_offline() {
    let report = user_events(30, 5.0, 30 * SECOND, 0.5, 6);
    assert!(
        wrong_deliveries(&report).is_empty(),
        "{:?}",
        report.first_faults
    );
    assert_eq!(report.delivered_within_10s, 1.0);
    assert_eq!(report.false_offline, 0);
}

/// `beethoven-sim --nodes 30 --scenario user-events --rate 5 --duration 71 --partition-secs 60 --seed 7`
/// (at 100 nodes and 10 events/s: `--nodes 100 --rate 10`).
#[test]
fn a_third_cut_off_for_60_s_gets_the_other_sides_events_within_1_s_of_the_heal_once_each() {
    let partitioned = Params {
        partition: Some(60 * SECOND),
        ..params(30, 5.0, 71 * SECOND, 0.0, 7)
    };
    let report = report(&partitioned, None);
    assert_eq!(report.faults, 0, "{:?}", report.first_faults);
    assert!(
        report.far_side_deliveries > 1_000,
        "{}",
        report.far_side_deliveries
    );
    let after_heal = report.far_side_after_heal_max_ms.expect("a partition");
    assert!(after_heal <= 1000.0, "{after_heal} ms after the heal");
}

/// `beethoven-sim --nodes 50 --scenario user-events --rate 10 --duration 20 --seed 8`,
/// then the same with node 0 sending 1,000 events a second beside them (no
/// `beethoven-sim` option: `scenario::user_events::run_with` and a `Flood`): the
/// other origins' latency and delivery ratio are those of the run without
/// it, the flood is refused at its sender beyond `send_rate` and dropped at
/// the receivers beyond `origin_rate`, both counted, and no one is declared
/// offline.
#[test]
#[ignore = "20 s of a 1,000 events/s flood: run with --release --ignored"]
fn one_node_flooding_1000_events_a_second_leaves_the_others_delivery_as_it_was() {
    let mut config = beethoven_core::Config::for_cluster("sim");
    // The flood reaches the network: the receivers' limit is what holds it.
    config.user_events.send_rate = 2000;
    config.user_events.send_burst = 2000;
    let calm = Params {
        config,
        ..params(50, 10.0, 20 * SECOND, 0.0, 8)
    };
    let without = report(&calm, None);
    let with = report(
        &calm,
        Some(Flood {
            node: 0,
            rate: 1000.0,
        }),
    );
    assert_eq!(without.faults, 0, "{:?}", without.first_faults);
    assert!(
        wrong_deliveries(&with).is_empty(),
        "{:?}",
        with.first_faults
    );
    assert_eq!(with.delivery_ratio, without.delivery_ratio);
    let p99 = |r: &UserEventReport| r.latency_p99_ms.expect("deliveries");
    assert!(
        p99(&with) <= p99(&without) * 1.1 + 1.0,
        "p99 {} ms with the flood, {} ms without",
        p99(&with),
        p99(&without)
    );
    assert!(with.flood_sent >= 19_000, "{}", with.flood_sent);
    assert!(
        with.rate_limited > 0,
        "the receivers drop what is over the origin's rate"
    );
    assert_eq!(with.false_offline, 0);
}

/// `beethoven-sim --nodes 100 --scenario user-events --rate 10 --duration 20`
#[test]
fn at_100_nodes_every_event_reaches_every_node_once_within_300_ms_with_under_two_copies() {
    let report = user_events(100, 10.0, 20 * SECOND, 0.0, 1);
    assert_eq!(report.events_sent, 200);
    assert_eq!(report.faults, 0, "{:?}", report.first_faults);
    assert_eq!(report.delivery_ratio, 1.0);
    assert!(report.latency_p99_ms.is_some_and(|p99| p99 <= 300.0));
    assert!(
        report.copies_per_node_per_event <= 2.0,
        "{}",
        report.copies_per_node_per_event
    );
}

/// `beethoven-sim --nodes 100 --scenario user-events --rate 10 --duration 100 --loss 0.1`
#[test]
fn at_100_nodes_with_ten_percent_loss_1000_events_arrive_all_once_in_order() {
    let report = user_events(100, 10.0, 100 * SECOND, 0.1, 2);
    assert_eq!(report.events_sent, 1000);
    assert_eq!(report.faults, 0, "{:?}", report.first_faults);
    assert_eq!(report.delivery_ratio, 1.0);
}

/// `beethoven-sim --nodes 1000 --scenario user-events --rate 1 --duration 1`
#[test]
#[ignore = "1000 nodes: run with --release --ignored"]
fn at_1000_nodes_one_event_reaches_every_node_within_300_ms() {
    let report = user_events(1000, 1.0, SECOND, 0.0, 3);
    assert_eq!(report.events_sent, 1);
    assert_eq!(report.faults, 0, "{:?}", report.first_faults);
    assert_eq!(report.delivery_ratio, 1.0);
    assert!(report.latency_p99_ms.is_some_and(|p99| p99 <= 300.0));
}

/// `beethoven-sim --nodes 1000 --scenario user-events --rate 10 --duration 20`
#[test]
#[ignore = "1000 nodes: run with --release --ignored"]
fn at_1000_nodes_and_ten_events_a_second_each_node_receives_at_most_two_copies() {
    let report = user_events(1000, 10.0, 20 * SECOND, 0.0, 4);
    assert_eq!(report.faults, 0, "{:?}", report.first_faults);
    assert!(report.copies_per_node_per_event <= 2.0);
    assert!(
        report.growth_over_payload <= 3.0,
        "steady bytes grew {:.2}x the payload delivered",
        report.growth_over_payload
    );
}

/// Records deliveries and, on node 0, sends an event every 200 ms through
/// its `Context`.
struct Chatty {
    recorder: Recorder,
    index: usize,
}

impl App for Chatty {
    fn start(&mut self, ctx: &mut Context<'_>) {
        self.recorder.start(ctx);
        if self.index == 0 {
            ctx.set_timer(SECOND, 0);
        }
    }

    fn event(&mut self, ctx: &mut Context<'_>, event: &Event) {
        self.recorder.event(ctx, event);
    }

    fn timer(&mut self, ctx: &mut Context<'_>, _: u64) {
        ctx.send_event("chat", ctx.now().as_millis().to_le_bytes().to_vec());
        ctx.set_timer(SECOND / 5, 0);
    }
}

#[test]
fn an_app_sends_events_and_a_restarted_process_gets_none_from_before_its_start() {
    let log = DeliveryLog::new();
    let factory = log.clone();
    let mut sim = Sim::builder()
        .nodes(20)
        .seed(5)
        .app(move |index, _| Chatty {
            recorder: factory.recorder(index),
            index,
        })
        .build()
        .expect("forms");
    let mut restarted_at = Duration::MAX;
    for k in 0..20u8 {
        let origin = 1 + usize::from(k % 3);
        let sent = log.send(&mut sim, origin, "test", &[k]).expect("running");
        assert!(sent.is_ok(), "{sent:?}");
        sim.run_for(SECOND / 4);
        if k == 5 {
            sim.apply(Fault::Crash {
                node: 7,
                host: HostFate::Vanishes,
            });
        }
        if k == 10 {
            restarted_at = sim.now();
            sim.apply(Fault::Restart {
                node: 7,
                new_addr: false,
            });
        }
    }
    sim.run_for(5 * SECOND);
    let up: Vec<bool> = (0..20).map(|i| sim.is_up(i)).collect();
    let faults = log.check(&up, sim.now(), SECOND);
    assert!(faults.is_empty(), "{faults:?}");
    let chats = log
        .deliveries()
        .iter()
        .filter(|d| d.node == 3 && d.id.origin == *sim.name(0))
        .count();
    assert!(
        chats >= 20,
        "node 0's app sent through its context: {chats}"
    );
    let restarted: Vec<_> = log
        .deliveries()
        .into_iter()
        .filter(|d| d.node == 7)
        .collect();
    let second_life = restarted
        .iter()
        .filter(|d| d.process >= restarted_at)
        .count();
    assert!(
        second_life > 0,
        "the restarted process delivers later events"
    );
}

/// Sends a 100-byte event every `every` (from a phase set by its index), and
/// counts the sends its node refused.
struct Talker {
    every: Option<Duration>,
    index: usize,
    refused: Vec<(String, SendEventError)>,
}

impl App for Talker {
    fn start(&mut self, ctx: &mut Context<'_>) {
        if let Some(every) = self.every {
            let phase = every.mul_f64((self.index % 97) as f64 / 97.0);
            ctx.set_timer(phase + Duration::from_micros(1), 0);
        }
    }

    fn event(&mut self, _: &mut Context<'_>, _: &Event) {}

    fn timer(&mut self, ctx: &mut Context<'_>, _: u64) {
        ctx.send_event("load", vec![7; 100]);
        if let Some(every) = self.every {
            ctx.set_timer(every, 0);
        }
    }

    fn send_refused(&mut self, _: &mut Context<'_>, name: &str, error: &SendEventError) {
        self.refused.push((name.to_string(), error.clone()));
    }
}

/// Silent crashes at N=100, one every 10 s from 1 s (six), each node's app
/// sending an event every `every` (none when `None`): the detection
/// latencies (offline everywhere), the crashes not detected, the false
/// offline declarations and the sends refused.
fn crashes_under_load(seed: u64, every: Option<Duration>) -> (Vec<Duration>, usize, usize, usize) {
    let n = 100;
    let mut sim = Sim::builder()
        .nodes(n)
        .seed(seed)
        .app(move |index, _| Talker {
            every,
            index,
            refused: Vec::new(),
        })
        .build()
        .expect("forms");
    sim.run_for(5 * SECOND);
    sim.metrics_mut().reset();
    let start = sim.now();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut victims: Vec<usize> = (0..n).collect();
    for k in 0..6u32 {
        let node = victims.swap_remove(rng.usize(..victims.len()));
        let at = start + SECOND + 10 * SECOND * k;
        sim.schedule(
            at,
            Fault::Crash {
                node,
                host: HostFate::Vanishes,
            },
        );
    }
    sim.run_for(65 * SECOND);
    let refused = sim
        .apps::<Talker>()
        .map(|(_, talker)| talker.refused.len())
        .sum();
    let m = sim.metrics();
    (
        m.latencies(WatchKind::Crash),
        m.unfinished(WatchKind::Crash),
        m.false_offline.len(),
        refused,
    )
}

/// Every node sending 5 events a second (500 a second cluster-wide), and
/// the same cluster quiet, over the same seeds and crash schedules: the
/// silent-crash detection p99 is within 10 % of the quiet one. Measured
/// (2026-12-07, seeds 1 to 10): quiet 1.008 s, loaded 0.958 s.
#[test]
#[ignore = "sixty silent crashes twice, one run with 500 events/s: 7 min (341 s of CPU) on a shared 2-core machine; run with --release --ignored"]
fn every_node_sending_5_events_a_second_leaves_silent_crash_detection_p99_within_10_percent() {
    let (mut quiet, mut loaded) = (Vec::new(), Vec::new());
    for seed in 1..=10 {
        for (every, into) in [(None, &mut quiet), (Some(SECOND / 5), &mut loaded)] {
            let (latencies, undetected, false_offline, refused) = crashes_under_load(seed, every);
            assert_eq!(undetected, 0, "seed {seed}, load {every:?}");
            assert_eq!(false_offline, 0, "seed {seed}, load {every:?}");
            assert_eq!(refused, 0, "5 events/s is within send_rate");
            into.extend(latencies);
        }
    }
    let p99 = |v: &[Duration]| percentile(v, 99.0).expect("detections").as_secs_f64();
    eprintln!(
        "silent crash p99, N=100, {} crashes: quiet {:.3} s, every node at 5 events/s {:.3} s",
        quiet.len(),
        p99(&quiet),
        p99(&loaded)
    );
    assert_eq!(quiet.len(), 60);
    assert_eq!(loaded.len(), 60);
    assert!(p99(&loaded) <= p99(&quiet) * 1.1);
}

/// Node 0's app sends `sends` events and one without a name in one
/// callback, a second after its start; it keeps the refusals it hears of.
struct Burster {
    sends: usize,
    refused: Vec<(String, SendEventError, Duration)>,
}

impl App for Burster {
    fn start(&mut self, ctx: &mut Context<'_>) {
        if ctx.index() == 0 {
            ctx.set_timer(SECOND, 0);
        }
    }

    fn event(&mut self, _: &mut Context<'_>, _: &Event) {}

    fn timer(&mut self, ctx: &mut Context<'_>, _: u64) {
        for k in 0..self.sends {
            ctx.send_event(format!("burst-{k}"), Vec::new());
        }
        ctx.send_event("", Vec::new());
    }

    fn send_refused(&mut self, ctx: &mut Context<'_>, name: &str, error: &SendEventError) {
        self.refused
            .push((name.to_string(), error.clone(), ctx.now()));
    }
}

/// An app that sends past its node's burst, and with an empty name, hears
/// of each refusal (`App::send_refused`), a microsecond later.
#[test]
fn an_app_hears_of_every_event_its_node_refused() {
    let burst = beethoven_core::Config::for_cluster("sim")
        .user_events
        .send_burst as usize;
    let mut sim = Sim::builder()
        .nodes(3)
        .seed(9)
        .form(false)
        .app(move |_, _| Burster {
            sends: burst + 5,
            refused: Vec::new(),
        })
        .build()
        .expect("builds");
    sim.run_for(2 * SECOND);
    let app = sim.app::<Burster>(0).expect("node 0 runs");
    let names: Vec<&str> = app.refused.iter().map(|(name, ..)| name.as_str()).collect();
    let expected: Vec<String> = (burst..burst + 5).map(|k| format!("burst-{k}")).collect();
    assert_eq!(
        names[..5],
        expected.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    assert_eq!(names.len(), 6);
    assert!(
        app.refused[..5]
            .iter()
            .all(|(_, error, _)| *error == SendEventError::Busy)
    );
    assert_eq!(app.refused[5].1, SendEventError::EmptyName);
    assert!(app.refused.iter().all(|(.., at)| *at > SECOND));
    assert_eq!(
        sim.node(0).expect("runs").stats().user_events.sent,
        burst as u64
    );
}
