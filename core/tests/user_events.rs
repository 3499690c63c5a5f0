//! User events across whole clusters, driven through the core's in-memory
//! pump (`beethoven-pump`): delivered once everywhere, in each origin's
//! order, through loss, restarts and a partition.

use std::collections::BTreeMap;
use std::time::Duration;

use beethoven_core::{Event, NodeName, UserEvent};
use beethoven_pump::{Pump, addr_on_port, config};

const SECOND: Duration = Duration::from_secs(1);

/// Every user event each node delivered, in delivery order.
fn deliveries(pump: &Pump, i: usize) -> Vec<UserEvent> {
    pump.events[i]
        .iter()
        .filter_map(|(_, event)| match event {
            Event::User(user) => Some(user.clone()),
            _ => None,
        })
        .collect()
}

/// Checks that node `i` delivered each event at most once and each origin's
/// in order; returns how many it delivered per origin process.
fn once_and_in_order(pump: &Pump, i: usize) -> BTreeMap<(NodeName, i64), u64> {
    let mut last: BTreeMap<(NodeName, i64), u64> = BTreeMap::new();
    for user in deliveries(pump, i) {
        let key = (user.id.origin.clone(), user.id.started);
        let before = last.get(&key).copied().unwrap_or(0);
        assert!(
            user.id.seq > before,
            "node {i}: {:?} after seq {before}: twice or out of order",
            user.id
        );
        last.insert(key, user.id.seq);
    }
    let mut counts = BTreeMap::new();
    for user in deliveries(pump, i) {
        *counts
            .entry((user.id.origin.clone(), user.id.started))
            .or_insert(0) += 1;
    }
    counts
}

fn send(pump: &mut Pump, i: usize, name: &str, payload: &[u8]) {
    let now = pump.now;
    pump.node_mut(i)
        .send_event(now, name, payload)
        .expect("a valid event within the rate");
    pump.drain(i);
}

fn converged(n: usize, seed: u64) -> Pump {
    let mut pump = Pump::cluster(n, seed);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("the cluster converges");
    pump
}

#[test]
fn every_member_delivers_every_event_once_in_each_origins_order() {
    let n = 40;
    let mut pump = converged(n, 11);
    for round in 0..10u8 {
        for origin in [0, 7, 23] {
            send(&mut pump, origin, "tick", &[round; 100]);
        }
        pump.run_for(SECOND / 20);
    }
    pump.run_for(2 * SECOND);
    for i in 0..n {
        let counts = once_and_in_order(&pump, i);
        let expected_origins = if [0, 7, 23].contains(&i) { 2 } else { 3 };
        assert_eq!(counts.len(), expected_origins, "node {i}");
        assert!(counts.values().all(|&c| c == 10), "node {i}: {counts:?}");
    }
    let copies: u64 = (0..n)
        .map(|i| pump.node(i).stats().user_events.copies_received)
        .sum();
    let per_node_event = copies as f64 / (30.0 * (n - 1) as f64);
    assert!(
        per_node_event <= 1.2,
        "payload copies per node per event: {per_node_event}"
    );
}

#[test]
fn with_ten_percent_loss_every_event_arrives_once_and_in_order() {
    let n = 30;
    let mut pump = converged(n, 12);
    pump.net.loss = 0.1;
    for round in 0..100u64 {
        send(
            &mut pump,
            (round % 5) as usize,
            "lossy",
            &round.to_le_bytes(),
        );
        pump.run_for(SECOND / 20);
    }
    pump.run_for(10 * SECOND);
    for i in 0..n {
        let counts = once_and_in_order(&pump, i);
        let total: u64 = counts.values().sum();
        let own = if i < 5 { 20 } else { 0 };
        assert_eq!(total, 100 - own, "node {i}: {counts:?}");
    }
}

#[test]
fn a_restarted_process_delivers_no_event_sent_before_it_started() {
    let n = 10;
    let mut pump = converged(n, 13);
    for k in 0..5u8 {
        send(&mut pump, 1, "before", &[k]);
    }
    pump.run_for(SECOND);
    assert_eq!(deliveries(&pump, 4).len(), 5);
    pump.crash(4);
    pump.run_for(SECOND);
    pump.events[4].clear();
    let restarted_at = pump.wall_now().timestamp_millis();
    pump.restart(4, addr_on_port(4, 7000), 0, config(99));
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("the restarted node is back");
    for k in 0..3u8 {
        send(&mut pump, 1, "after", &[k]);
    }
    pump.run_for(3 * SECOND);
    let after = deliveries(&pump, 4);
    assert!(
        after
            .iter()
            .all(|u| u.sent_at.timestamp_millis() >= restarted_at),
        "nothing from before the restart: {after:?}"
    );
    assert_eq!(
        after.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        vec!["after"; 3]
    );
    for i in 0..n {
        once_and_in_order(&pump, i);
    }
}

#[test]
fn events_sent_during_a_partition_reach_the_far_side_after_the_heal() {
    let n = 12;
    let mut pump = converged(n, 14);
    let side = |i: usize| i < 4;
    for a in 0..n {
        for b in 0..n {
            if side(a) != side(b) {
                pump.net.blocked.insert((a, b));
            }
        }
    }
    for k in 0..5u8 {
        send(&mut pump, 1, "small side", &[k]);
        send(&mut pump, 8, "large side", &[k]);
        pump.run_for(SECOND);
    }
    pump.net.blocked.clear();
    pump.run_for(30 * SECOND);
    for i in 0..n {
        let counts = once_and_in_order(&pump, i);
        let total: u64 = counts.values().sum();
        let own = if i == 1 || i == 8 { 5 } else { 0 };
        assert_eq!(total, 10 - own, "node {i}: {counts:?}");
    }
}
