//! `force_leave` with `prune` on a simulated cluster: the member is gone from
//! every table within a second or two, stays gone across anti-entropy for the
//! retention (also where a node missed the prune behind a partition), and a
//! restart of it rejoins at a higher incarnation.

use std::time::Duration;

use beethoven_core::{Config, NodeStatus};
use beethoven_testkit::{Fault, HostFate, Sim};

const SECOND: Duration = Duration::from_secs(1);
const PRUNED: usize = 7;

/// A formed cluster of 20 whose node 7 crashed and is offline everywhere.
fn cluster_with_a_dead_member(seed: u64) -> Sim {
    let config = Config::default().with_prune_retention(Duration::from_secs(60));
    let mut sim = Sim::builder()
        .nodes(20)
        .seed(seed)
        .config(config)
        .build()
        .expect("the cluster forms");
    sim.apply(Fault::Crash {
        node: PRUNED,
        host: HostFate::Vanishes,
    });
    sim.run_until(15 * SECOND, SECOND / 10, |sim| {
        sim.up()
            .iter()
            .all(|&i| sim.status(i, PRUNED) == Some(NodeStatus::Offline))
    })
    .expect("the crash is seen everywhere");
    sim
}

/// The running nodes (of `among`) that still hold a row of the pruned member.
fn holders(sim: &Sim, among: &[usize]) -> Vec<usize> {
    let name = sim.name(PRUNED).clone();
    among
        .iter()
        .copied()
        .filter(|&i| sim.node(i).is_some_and(|node| node.row(&name).is_some()))
        .collect()
}

fn prune_from(sim: &mut Sim, observer: usize) {
    let name = sim.name(PRUNED).clone();
    sim.command(observer, |node, now| node.force_leave(now, &name, true))
        .expect("running")
        .expect("an offline member can be pruned");
}

/// Runs `seconds` seconds, checking every second that none of `up` holds a
/// row of the pruned member.
fn stays_gone(sim: &mut Sim, up: &[usize], seconds: usize) {
    for _ in 0..seconds {
        sim.run_for(SECOND);
        assert_eq!(holders(sim, up), Vec::<usize>::new(), "at {:?}", sim.now());
    }
}

fn assert_clean(sim: &Sim) {
    assert!(sim.violations().is_empty(), "{:#?}", sim.violations());
}

#[test]
fn a_pruned_member_is_gone_from_every_table_stays_gone_and_a_restart_of_it_rejoins() {
    let mut sim = cluster_with_a_dead_member(1);
    let up = sim.up();
    prune_from(&mut sim, 0);
    sim.run_until(2 * SECOND, SECOND / 100, |sim| holders(sim, &up).is_empty())
        .expect("gone from every table within 2 s");
    // Anti-entropy runs every 5 s: twelve rounds and more, and nobody brings
    // the row back.
    stays_gone(&mut sim, &up, 50);
    sim.apply(Fault::Restart {
        node: PRUNED,
        new_addr: false,
    });
    let name = sim.name(PRUNED).clone();
    sim.run_until(10 * SECOND, SECOND / 10, |sim| {
        sim.up()
            .iter()
            .all(|&i| sim.status(i, PRUNED) == Some(NodeStatus::Online))
    })
    .expect("the restart is let in everywhere");
    let incarnation = sim
        .node(PRUNED)
        .expect("restarted")
        .row(&name)
        .expect("its own row")
        .incarnation;
    assert!(incarnation >= 1, "it outbid the prune: {incarnation}");
    assert_clean(&sim);
}

#[test]
fn a_node_that_missed_the_prune_behind_a_partition_is_told_and_brings_nothing_back() {
    let mut sim = cluster_with_a_dead_member(2);
    let up = sim.up();
    let cut_off = 3;
    let rest: Vec<usize> = up.iter().copied().filter(|&i| i != cut_off).collect();
    sim.apply(Fault::Partition {
        groups: vec![vec![cut_off]],
    });
    prune_from(&mut sim, 0);
    sim.run_until(2 * SECOND, SECOND / 100, |sim| {
        holders(sim, &rest).is_empty()
    })
    .expect("gone from the connected tables within 2 s");
    // Longer than the tombstones' gossip lasts: only an exchange can tell it.
    sim.run_for(10 * SECOND);
    assert_eq!(
        holders(&sim, &up),
        vec![cut_off],
        "the cut-off node missed it"
    );
    sim.apply(Fault::Heal);
    // Its exchanges (every 5 s, in both directions) offer the row; the answer
    // is the tombstone.
    sim.run_until(20 * SECOND, SECOND / 10, |sim| holders(sim, &up).is_empty())
        .expect("the cut-off node is told of the prune");
    stays_gone(&mut sim, &up, 20);
    assert_clean(&sim);
}
