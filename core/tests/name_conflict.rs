//! Two live processes under one name, driven through the
//! core's in-memory pump: the conflict is found, reported, and resolved by the
//! rule of `Event::NameConflict` (the earlier start keeps the name); a restart at a
//! new address is no conflict.

use std::net::SocketAddr;
use std::time::Duration;

use beethoven_core::{
    Event, Health, JoinError, LeaveError, NameTaken, NewNodeError, NodeStatus, Seed,
};
use beethoven_pump::{Pump, addr, addr_on_port, config, name};

const SECOND: Duration = Duration::from_secs(1);

fn conflicts(pump: &Pump, i: usize) -> Vec<(Duration, [SocketAddr; 2])> {
    pump.events[i]
        .iter()
        .filter_map(|(at, e)| match e {
            Event::NameConflict { addrs, .. } => Some((*at - pump.epoch, *addrs)),
            _ => None,
        })
        .collect()
}

fn lost(pump: &Pump, i: usize) -> Vec<SocketAddr> {
    pump.events[i]
        .iter()
        .filter_map(|(_, e)| match e {
            Event::NameLost { winner } => Some(*winner),
            _ => None,
        })
        .collect()
}

#[test]
fn a_second_live_process_under_a_name_loses_it_to_the_first_and_the_war_stops() {
    let mut pump = Pump::cluster(6, 31);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("converges");
    pump.run_for(2 * SECOND);
    let first = pump.addrs[2];
    let second = addr_on_port(2, 9000);
    let started = pump.now - pump.epoch;
    let twin = pump.add_node_named(config(4040), name(2), second);
    pump.join(twin, &[Seed::Addr(pump.addrs[0])]);
    let detected = pump
        .run_until(10 * SECOND, |p| p.node(twin).name_taken_by().is_some())
        .expect("the later process learns it lost");
    assert!(detected < SECOND, "took {detected:?}");
    assert_eq!(pump.node(twin).name_taken_by(), Some(first));
    assert_eq!(
        lost(&pump, twin),
        vec![first],
        "one NameLost, naming the winner"
    );
    let at_detection = pump.node(2).incarnation();
    // The loser's last claim, which confirms it to the winner, is on its way.
    pump.run_for(SECOND);
    assert!(lost(&pump, 2).is_empty(), "the winner keeps its name");
    let pair = [first, second];
    assert!(pair[0] < pair[1]);
    for i in [2, twin] {
        let seen = conflicts(&pump, i);
        assert_eq!(seen.len(), 1, "node {i} reports once: {seen:?}");
        assert_eq!(seen[0].1, pair);
        assert!(seen[0].0 >= started);
    }
    pump.run_for(60 * SECOND);
    let grown = pump.node(2).incarnation() - at_detection;
    assert!(
        grown <= 2,
        "the winner's incarnation grew by {grown} after detection"
    );
    for i in [0, 1, 3, 4, 5] {
        let row = pump.row(i, 2).expect("tracked");
        assert_eq!(
            (row.addr, row.status, row.health),
            (first, NodeStatus::Online, Health::Alive),
            "node {i} holds the winner's row"
        );
        assert!(
            conflicts(&pump, i).len() <= 1,
            "observers report at most once"
        );
        assert!(lost(&pump, i).is_empty());
        pump.check_notifications(i);
    }
    assert_eq!(
        pump.offline_writes(&name(2)),
        0,
        "the name never went offline"
    );
    // The loser is inert: no deadline, no command.
    let now = pump.now;
    let loser = pump.node_mut(twin);
    assert_eq!(loser.poll_timeout(), None);
    assert_eq!(
        loser.join(now, &[Seed::Addr(addr(0))]),
        Err(JoinError::NameTaken(NameTaken { by: first }))
    );
    assert_eq!(
        loser.leave(now),
        Err(LeaveError::NameTaken(NameTaken { by: first }))
    );
    assert_eq!(
        loser.new_node(now, name(9), addr(9)),
        Err(NewNodeError::NameTaken(NameTaken { by: first }))
    );
    assert!(
        !loser.has_left(),
        "the loser never announces Left for the name"
    );
}

#[test]
fn a_restart_at_a_new_address_before_the_old_process_is_detected_is_no_conflict() {
    let mut pump = Pump::cluster(6, 32);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("converges");
    pump.run_for(2 * SECOND);
    // The old process dies and the new one starts elsewhere at once: the old row
    // is still online everywhere when the new process refutes it.
    pump.crash(3);
    let new_addr = addr_on_port(3, 9000);
    pump.restart(3, new_addr, 0, config(778));
    pump.run_until(10 * SECOND, |p| {
        p.live().all(|i| {
            p.row(i, 3)
                .is_some_and(|r| r.addr == new_addr && r.health == Health::Alive)
        }) && p.converged()
    })
    .expect("back online at the new address");
    pump.run_for(20 * SECOND);
    for i in pump.live().collect::<Vec<_>>() {
        assert!(
            !pump.events[i]
                .iter()
                .any(|(_, e)| matches!(e, Event::NameConflict { .. } | Event::NameLost { .. })),
            "node {i} saw a conflict"
        );
    }
    assert!(pump.node(3).name_taken_by().is_none());
    assert!(pump.all_see(3, Health::Alive));
}

#[test]
fn a_refuted_row_at_an_address_where_nobody_answers_is_no_conflict() {
    // The refutation of a row at an address where nobody lives sends a claim
    // there and nothing else happens: the process keeps its name and reports
    // nothing (observers that saw the row move there and back may report it:
    // a row above the live process's incarnation at another address is one
    // that a rival wrote).
    let mut pump = Pump::cluster(4, 33);
    pump.run_until(10 * SECOND, |p| p.all_live_online() && p.converged())
        .expect("converges");
    let ghost = addr_on_port(1, 9999);
    // A process at `ghost` once wrote this row and died (it never answers).
    let mut row = pump.row(0, 1).expect("tracked").clone();
    row.addr = ghost;
    row.incarnation += 5;
    let now = pump.now;
    pump.node_mut(0).restore(now, [row]);
    pump.drain(0);
    pump.run_for(10 * SECOND);
    assert!(pump.all_see(1, Health::Alive));
    assert!(
        pump.live()
            .all(|i| pump.row(i, 1).is_some_and(|r| r.addr == addr(1)))
    );
    assert!(
        conflicts(&pump, 1).is_empty(),
        "no proof that a rival lives"
    );
    for i in 0..4 {
        assert!(lost(&pump, i).is_empty());
    }
}
