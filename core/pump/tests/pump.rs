//! The pump itself: its network, its clock and its captures behave as the core's
//! tests and benches assume.

use std::collections::BTreeSet;
use std::time::Duration;

use beethoven_core::{Health, NodeStatus};
use beethoven_pump::lone::handle_and_send;
use beethoven_pump::{MAX_NODES, Pump, addr, name, quiet_ping};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn three_nodes_go_quiet_within_twenty_seconds() {
    let mut pump = Pump::cluster(3, 1);
    pump.run_for(20 * SECOND);
    assert!(pump.quiet() && pump.converged());
    assert_eq!(pump.now - pump.epoch, 20 * SECOND, "run_for ends on time");
}

#[test]
fn a_blocked_link_carries_nothing_until_cleared() {
    let mut pump = Pump::cluster(2, 2);
    pump.run_until(5 * SECOND, |p| p.all_live_online())
        .expect("two nodes meet");
    pump.net.blocked.insert((0, 1));
    pump.run_for(SECOND); // what was in flight lands
    let received = pump.node(1).stats().packets_received;
    pump.run_for(10 * SECOND);
    assert_eq!(pump.node(1).stats().packets_received, received);
    pump.net.blocked.clear();
    pump.run_until(60 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("the two meet again");
    assert!(pump.node(1).stats().packets_received > received);
}

#[test]
fn a_crashed_process_bounces_hints_only_while_its_host_stays_up() {
    for hosts_stay_up in [false, true] {
        let mut pump = Pump::cluster(3, 3);
        pump.net.hosts_stay_up = hosts_stay_up;
        pump.run_until(5 * SECOND, |p| p.all_live_online())
            .expect("three nodes meet");
        let frozen = pump.crash(2).expect("node 2 was running");
        assert_eq!(
            frozen.name(),
            &pump.names[2],
            "crash hands back the process"
        );
        pump.run_until(30 * SECOND, |p| p.all_see(2, Health::Dead))
            .expect("the crash is detected");
        assert_eq!(pump.hints_delivered > 0, hosts_stay_up);
        assert_eq!(pump.status(0, 2), Some(NodeStatus::Offline));
    }
}

#[test]
fn the_network_creates_no_buffer_once_warm() {
    let mut pump = Pump::cluster(3, 4);
    pump.record_events = false;
    pump.run_for(35 * SECOND);
    let (buffers, delivered) = (pump.net.buffers(), pump.delivered);
    pump.run_for(60 * SECOND);
    assert!(pump.delivered - delivered > 2000, "the minute was busy");
    assert_eq!(pump.net.buffers(), buffers);
}

#[test]
fn with_the_event_log_off_events_are_dropped_as_drained() {
    let mut pump = Pump::cluster(3, 5);
    pump.run_until(5 * SECOND, |p| p.all_live_online())
        .expect("three nodes meet");
    let logged: Vec<usize> = pump.events.iter().map(Vec::len).collect();
    pump.record_events = false;
    pump.crash(2);
    pump.run_until(30 * SECOND, |p| p.all_see(2, Health::Dead))
        .expect("the crash is detected");
    let after: Vec<usize> = pump.events.iter().map(Vec::len).collect();
    assert_eq!(after, logged);
}

#[test]
fn the_same_seed_delivers_the_same_datagrams_at_the_same_times() {
    let run = |seed| {
        let mut pump = Pump::cluster(5, seed);
        pump.net.loss = 0.1;
        pump.run_for(10 * SECOND);
        let log: Vec<String> = pump
            .events
            .iter()
            .flatten()
            .map(|(at, e)| format!("{:?} {e:?}", *at - pump.epoch))
            .collect();
        (pump.delivered, pump.timeouts, log)
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6), "another seed, another run");
}

#[test]
fn a_captured_ping_is_answered_by_one_ack() {
    let (mut pump, ping) = quiet_ping();
    let now = pump.now;
    let mut ack = Vec::new();
    assert_eq!(
        handle_and_send(pump.node_mut(1), now, 0, &ping, &mut ack),
        1
    );
    assert!(!ack.is_empty());
}

#[test]
fn names_are_stored_inline_and_addresses_are_distinct() {
    assert!(name(MAX_NODES - 1).as_str().len() <= 30);
    assert_eq!(addr(0), "10.0.0.1:7946".parse().expect("a valid address"));
    let all: BTreeSet<_> = (0..MAX_NODES).map(addr).collect();
    assert_eq!(all.len(), MAX_NODES);
}
