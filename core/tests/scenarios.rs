//! Whole-cluster behaviour, driven through the core's in-memory pump
//! (`beethoven-pump`).

use std::time::Duration;

use beethoven_core::{Event, Health, Mode, NodeStatus, Seed};
use beethoven_pump::{Pump, addr, addr_on_port, config, name};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn three_nodes_join_and_hold_identical_trackers() {
    let mut pump = Pump::cluster(3, 1);
    let took = pump
        .run_until(5 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("three nodes converge");
    assert!(took < 2 * SECOND, "took {took:?}");
    for i in 0..3 {
        assert_eq!(pump.mode(i), Mode::Clustered);
        assert!(
            pump.events[i]
                .iter()
                .any(|(_, e)| *e == Event::ModeChanged(Mode::Clustered))
        );
        assert_eq!(pump.node(i).tracker().len(), 3);
    }
    for i in 1..3 {
        assert!(
            pump.events[i]
                .iter()
                .any(|(_, e)| matches!(e, Event::Joined { .. }))
        );
    }
    pump.run_for(10 * SECOND);
    for i in 0..3 {
        pump.check_notifications(i);
    }
}

#[test]
fn fifty_nodes_converge_with_everyone_online_and_stay_so() {
    let mut pump = Pump::cluster(50, 2);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("fifty nodes converge");
    pump.run_for(30 * SECOND);
    assert!(pump.all_live_online());
    assert!(pump.converged());
    for i in 0..50 {
        assert_eq!(
            pump.offline_writes(&pump.names[i]),
            0,
            "node {i} never offline"
        );
        pump.check_notifications(i);
    }
}

#[test]
fn crashed_node_goes_offline_on_every_survivor() {
    let mut pump = Pump::cluster(10, 3);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("converges");
    pump.crash(4);
    let took = pump
        .run_until(30 * SECOND, |p| p.all_see(4, Health::Dead))
        .expect("the crash is detected everywhere");
    assert!(took < 6 * SECOND, "detection took {took:?}");
    let crashed = pump.names[4].clone();
    for i in pump.live().collect::<Vec<_>>() {
        assert_eq!(pump.offline_updates(i, &crashed), 1, "node {i} told once");
        for j in pump.live() {
            assert_eq!(
                pump.offline_writes(&pump.names[j]),
                0,
                "live node {j} never offline"
            );
        }
    }
    pump.run_until(20 * SECOND, |p| p.converged())
        .expect("converges after the crash");
}

#[test]
fn false_suspicion_is_refuted_and_the_node_stays_online() {
    let mut pump = Pump::cluster(8, 4);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("converges");
    // Node 5 hears nothing for 700 ms: long enough to be suspected, far shorter
    // than the suspicion timeout.
    for j in 0..8 {
        pump.net.blocked.insert((j, 5));
    }
    let suspected = pump.run_until(10 * SECOND, |p| {
        (0..8).any(|i| i != 5 && p.row(i, 5).is_some_and(|r| r.health == Health::Suspect))
    });
    assert!(suspected.is_some(), "node 5 was suspected");
    pump.net.blocked.clear();
    pump.run_until(10 * SECOND, |p| {
        p.all_see(5, Health::Alive) && p.converged()
    })
    .expect("the suspicion is refuted");
    assert!(
        pump.node(5).incarnation() > 0,
        "refuted by a higher incarnation"
    );
    assert!(pump.node(5).stats().refutations > 0);
    assert_eq!(pump.offline_writes(&pump.names[5]), 0);
}

#[test]
fn leave_marks_the_node_offline_at_once_without_suspicion() {
    let mut pump = Pump::cluster(6, 5);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("converges");
    let now = pump.now;
    pump.node_mut(2).leave(now).expect("first leave");
    assert_eq!(
        pump.node_mut(2).leave(now),
        Err(beethoven_core::LeaveError::AlreadyLeft)
    );
    pump.drain(2);
    let took = pump
        .run_until(5 * SECOND, |p| p.all_see(2, Health::Left))
        .expect("everyone sees the leave");
    assert!(took < SECOND, "leave spread in {took:?}");
    let finished = pump
        .run_until(5 * SECOND, |p| {
            p.events[2]
                .iter()
                .any(|(_, e)| matches!(e, Event::LeaveFinished { spread: true }))
        })
        .expect("the leaver learns its news spread");
    // As soon as its news went out, not at the deadline (`leave_timeout`, 2 s):
    // a shutdown after `leave` waits for this.
    assert!(
        took + finished < SECOND,
        "the leave finished after {:?}",
        took + finished
    );
    assert_eq!(pump.mode(2), Mode::Standalone);
    // No one ever suspected it on the way.
    for i in 0..6 {
        assert!(!pump.events[i].iter().any(|(_, e)| matches!(e,
            Event::Tracker(t) if t.new_row.node == pump.names[2] && t.new_row.health == Health::Suspect)));
    }
    pump.crash(2);
    pump.run_for(20 * SECOND);
    assert!(pump.all_see(2, Health::Left), "a left node stays left");
}

#[test]
fn restart_with_a_new_address_comes_back_online_everywhere() {
    let mut pump = Pump::cluster(6, 6);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("converges");
    pump.crash(3);
    pump.run_until(30 * SECOND, |p| p.all_see(3, Health::Dead))
        .expect("crash detected");
    let new_addr = addr_on_port(3, 9000);
    pump.restart(3, new_addr, 0, config(777));
    let took = pump
        .run_until(10 * SECOND, |p| {
            p.all_see(3, Health::Alive)
                && p.live()
                    .all(|i| p.row(i, 3).is_some_and(|r| r.addr == new_addr))
                && p.converged()
        })
        .expect("back online at the new address");
    assert!(took < 3 * SECOND, "took {took:?}");
    assert!(pump.node(3).incarnation() > 0);
    for i in [0, 1, 2, 4, 5] {
        let online_again = pump.events[i].iter().any(|(_, e)| {
            matches!(e, Event::NodeUpdate { node, status: NodeStatus::Online, .. }
                if *node == pump.names[3])
        });
        assert!(online_again);
        pump.check_notifications(i);
    }
}

#[test]
fn restart_at_the_same_address_before_detection_is_seamless() {
    let mut pump = Pump::cluster(5, 7);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("converges");
    pump.crash(1);
    let same = pump.addrs[1];
    pump.restart(1, same, 0, config(4242));
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("converges");
    assert_eq!(pump.offline_writes(&pump.names[1]), 0);
}

#[test]
fn partition_then_heal_gives_identical_trackers_with_everyone_online() {
    let mut pump = Pump::cluster(8, 8);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("converges");
    let (a, b) = ([0usize, 1, 2], [3usize, 4, 5, 6, 7]);
    for &i in &a {
        for &j in &b {
            pump.net.blocked.insert((i, j));
            pump.net.blocked.insert((j, i));
        }
    }
    pump.run_until(30 * SECOND, |p| {
        a.iter().all(|&i| {
            b.iter()
                .all(|&j| p.status(i, j) == Some(NodeStatus::Offline))
        }) && b.iter().all(|&j| {
            a.iter()
                .all(|&i| p.status(j, i) == Some(NodeStatus::Offline))
        })
    })
    .expect("each side declares the other offline");
    pump.net.blocked.clear();
    let took = pump
        .run_until(60 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("heals");
    assert!(took < 30 * SECOND, "healing took {took:?}");
    for i in 0..8 {
        pump.check_notifications(i);
        assert_eq!(pump.mode(i), Mode::Clustered);
    }
}

#[test]
fn each_transition_is_one_node_update_and_nobody_hears_about_itself() {
    let mut pump = Pump::cluster(2, 9);
    pump.run_until(5 * SECOND, |p| p.all_live_online())
        .expect("two nodes meet");
    let about_one: Vec<_> = pump.events[0]
        .iter()
        .filter(|(_, e)| matches!(e, Event::NodeUpdate { .. }))
        .collect();
    assert_eq!(about_one.len(), 1, "one transition, one node update");
    for i in 0..2 {
        pump.check_notifications(i);
    }
}

#[test]
fn new_node_on_an_offline_row_brings_it_online_with_a_write_and_a_notification() {
    let mut pump = Pump::cluster(3, 10);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("converges");
    // Cut node 2 off until it is declared dead, then let it back.
    for j in 0..3 {
        pump.net.blocked.insert((j, 2));
        pump.net.blocked.insert((2, j));
    }
    pump.run_until(30 * SECOND, |p| p.status(0, 2) == Some(NodeStatus::Offline))
        .expect("declared offline");
    pump.net.blocked.clear();
    let before = pump.events[0].len();
    let (now, name, at) = (pump.now, pump.names[2].clone(), pump.addrs[2]);
    pump.node_mut(0)
        .new_node(now, name.clone(), at)
        .expect("adds");
    pump.drain(0);
    let after = &pump.events[0][before..];
    assert!(after.iter().any(|(_, e)| matches!(e,
        Event::Tracker(t) if t.new_row.node == name && t.new_row.status == NodeStatus::Online)));
    assert!(after.iter().any(|(_, e)| matches!(e,
        Event::NodeUpdate { node, status: NodeStatus::Online, .. } if *node == name)));
    pump.run_until(20 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("everyone agrees it is back");
    let own = pump.names[0].clone();
    assert_eq!(
        pump.node_mut(0).new_node(now, own, at),
        Err(beethoven_core::NewNodeError::IsSelf)
    );
}

#[test]
fn new_node_adds_an_unknown_node_and_both_learn_each_other() {
    let mut pump = Pump::new(11);
    pump.add_node(config(1));
    pump.add_node(config(2));
    let (now, name, at) = (pump.now, pump.names[1].clone(), pump.addrs[1]);
    pump.node_mut(0).new_node(now, name, at).expect("adds");
    pump.drain(0);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("both see each other");
}

#[test]
fn join_without_answer_falls_back_to_standalone_and_keeps_trying() {
    let mut pump = Pump::new(12);
    pump.add_node(config(1));
    pump.join(0, &[Seed::Addr(addr(99))]);
    pump.run_until(30 * SECOND, |p| {
        p.events[0]
            .iter()
            .any(|(_, e)| matches!(e, Event::JoinFailed { attempts: 3, .. }))
    })
    .expect("gives up after three attempts");
    assert_eq!(pump.mode(0), Mode::Standalone);
    // The seed comes up later: the slow re-probe finds it and the two merge.
    pump.add_node_named(config(2), name(99), addr(99));
    pump.run_until(60 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("the late seed is found by the re-probe");
    assert_eq!(pump.mode(0), Mode::Clustered);
}

#[test]
fn join_by_scanning_a_cidr_range_finds_the_cluster() {
    let mut pump = Pump::new(13);
    pump.add_node(config(1)); // 10.0.0.1
    pump.add_node(config(2)); // 10.0.0.2
    pump.join(1, &["10.0.0.0/28:7946".parse().expect("valid seed")]);
    pump.run_until(5 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("found by the scan");
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let trace = |seed| {
        let mut pump = Pump::cluster(12, seed);
        pump.run_for(5 * SECOND);
        pump.crash(7);
        pump.run_for(15 * SECOND);
        (
            pump.events
                .iter()
                .flatten()
                .map(|(at, e)| format!("{:?} {e:?}", *at - pump.epoch))
                .collect::<Vec<_>>(),
            pump.delivered,
            pump.live()
                .map(|i| format!("{:?}", pump.node(i).tracker()))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(trace(21), trace(21));
    assert_ne!(trace(21).0, trace(22).0, "another seed, another run");
}

#[test]
fn a_crashed_process_on_a_live_host_goes_offline_in_under_a_second() {
    let mut pump = Pump::cluster(20, 14);
    pump.net.hosts_stay_up = true;
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("converges");
    pump.crash(9);
    let took = pump
        .run_until(10 * SECOND, |p| p.all_see(9, Health::Dead))
        .expect("detected");
    assert!(
        pump.hints_delivered > 0,
        "the crash produced unreachable hints"
    );
    assert!(took < SECOND, "detection took {took:?}");
    for j in pump.live().collect::<Vec<_>>() {
        assert_eq!(pump.offline_writes(&pump.names[j]), 0);
    }
}

#[test]
fn a_process_restarting_on_the_same_port_within_200ms_is_never_offline() {
    for seed in 0..5 {
        let mut pump = Pump::cluster(10, 15 + seed);
        pump.net.hosts_stay_up = true;
        pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
            .expect("converges");
        pump.crash(4);
        pump.run_for(Duration::from_millis(190));
        let same = pump.addrs[4];
        pump.restart(4, same, 0, config(99 + seed));
        pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
            .expect("back");
        pump.run_for(5 * SECOND);
        assert_eq!(
            pump.offline_writes(&pump.names[4]),
            0,
            "seed {seed}: a quick restart is not an outage"
        );
    }
}

#[test]
fn keys_rotate_across_a_live_cluster_without_anyone_going_offline() {
    use beethoven_core::{DropReason, Key, KeyRing};
    let (old, new) = (Key::new([1; 32]), Key::new([2; 32]));
    let mut pump = Pump::new(16);
    for i in 0..5 {
        let mut config = config(160 + i);
        config.keys = Some(KeyRing::new(old.clone()));
        pump.add_node(config);
    }
    for i in 1..5 {
        pump.join(i, &[Seed::Addr(pump.addrs[0])]);
    }
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("a sealed cluster forms");
    let steps = [
        KeyRing::new(old.clone()).accepting(new.clone()),
        KeyRing::new(new.clone()).accepting(old.clone()),
        KeyRing::new(new.clone()),
    ];
    for ring in steps {
        // Applied node by node, with traffic flowing between the updates.
        for i in 0..5 {
            pump.node_mut(i).set_key_ring(Some(ring.clone()));
            pump.run_for(Duration::from_millis(300));
        }
        pump.run_for(3 * SECOND);
    }
    assert!(pump.all_live_online() && pump.converged());
    for i in 0..5 {
        assert_eq!(
            pump.offline_writes(&pump.names[i]),
            0,
            "node {i} never offline"
        );
        assert_eq!(pump.node(i).stats().dropped(DropReason::Authentication), 0);
    }
    // A node still on the old key, or on none, is shut out and changes nothing.
    let before = pump.node(0).tracker().clone();
    let mut stale = config(170);
    stale.keys = Some(KeyRing::new(old));
    let stale_node = pump.add_node(stale);
    pump.join(stale_node, &[Seed::Addr(pump.addrs[0])]);
    let plain_node = pump.add_node(config(171));
    pump.join(plain_node, &[Seed::Addr(pump.addrs[0])]);
    pump.run_for(2 * SECOND);
    assert_eq!(pump.node(0).tracker(), &before);
    assert!(pump.node(0).stats().dropped(DropReason::Authentication) > 0);
    assert!(pump.node(0).stats().dropped(DropReason::NotSealed) > 0);
}
