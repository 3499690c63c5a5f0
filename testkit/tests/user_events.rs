//! User events in the simulator: the issue's targets (simulated time, so
//! deterministic), the delivery checker over restarts, and apps that send.
//!
//! The 1000-node targets take a few minutes each:
//!
//! ```text
//! cargo test --release -p beethoven-testkit --test user_events -- --ignored --nocapture
//! ```
//!
//! Each has a `beethoven-sim` command that reproduces its number (in its doc).

#![allow(clippy::print_stderr)] // the measured numbers are printed for the record

use std::time::Duration;

use beethoven_testkit::delivery::{DeliveryLog, Recorder};
use beethoven_testkit::scenario::user_events::{UserEventReport, run};
use beethoven_testkit::scenario::{Params, ScenarioKind};
use beethoven_testkit::{App, Context, Event, Fault, HostFate, NetworkModel, Sim};

const SECOND: Duration = Duration::from_secs(1);

fn user_events(
    nodes: usize,
    rate: f64,
    duration: Duration,
    loss: f64,
    seed: u64,
) -> UserEventReport {
    let params = Params {
        nodes,
        seed,
        duration,
        event_rate: rate,
        network: NetworkModel::lan().with_loss(loss),
        ..Params::new(ScenarioKind::UserEvents)
    };
    let report = run(&params, &mut |_, _| {}).expect("the cluster forms");
    eprintln!("{}", report.table());
    report
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
