//! Self-tests: the checkers accept real histories and catch deliberately broken ones.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use beethoven_core::chrono::DateTime;
use beethoven_core::{Config, Event, Health, Mode, Node, NodeName, NodeStatus, Op, TrackerEvent};

use super::*;

fn name(s: &str) -> NodeName {
    NodeName::new(s).expect("valid name")
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

/// A real node `a` that learned of `b` through `new_node`: its whole event history.
fn real_history() -> (Node, Vec<Event>) {
    let now = Instant::now();
    let wall = DateTime::from_timestamp_millis(1_764_000_000_000).expect("in range");
    let mut node =
        Node::new(Config::for_cluster("t"), name("a"), addr(1), now, wall).expect("valid config");
    node.new_node(now, name("b"), addr(2)).expect("adds b");
    let mut events = Vec::new();
    while let Some(e) = node.poll_event() {
        events.push(e);
    }
    (node, events)
}

/// The tracker event that added `b` (online, first row).
fn b_online(events: &[Event]) -> TrackerEvent {
    events
        .iter()
        .find_map(|e| match e {
            Event::Tracker(t) if t.new_row.node.as_str() == "b" => Some(t.clone()),
            _ => None,
        })
        .expect("b was added")
}

fn b_dead(online: &TrackerEvent) -> TrackerEvent {
    let mut row = online.new_row.clone();
    row.health = Health::Dead;
    row.status = NodeStatus::Offline;
    TrackerEvent {
        op: Op::Write,
        new_row: row,
        old_row: Some(online.new_row.clone()),
    }
}

fn update(about: &str, status: NodeStatus) -> Event {
    Event::NodeUpdate {
        node: name(about),
        status,
    }
}

#[test]
fn a_real_history_passes_every_checker() {
    let (node, events) = real_history();
    assert_eq!(check_notifications(&name("a"), &events), Ok(()));
    assert_eq!(check_mode_history(&name("a"), &events), Ok(()));
    assert_eq!(check_mode(&node), Ok(()));
    assert_eq!(node.mode(), Mode::Clustered);
}

#[test]
fn a_missing_notification_is_caught() {
    let (_, mut events) = real_history();
    events.retain(|e| !matches!(e, Event::NodeUpdate { .. }));
    assert!(matches!(
        check_notifications(&name("a"), &events),
        Err(ViolationKind::MissingNotification { about, status: NodeStatus::Online, .. }) if about == "b"
    ));
}

#[test]
fn a_notification_without_transition_or_out_of_order_is_caught() {
    let (_, events) = real_history();
    let online = b_online(&events);
    // An extra update with no transition.
    let mut extra = events.clone();
    extra.push(update("b", NodeStatus::Offline));
    assert!(matches!(
        check_notifications(&name("a"), &extra),
        Err(ViolationKind::UnexpectedNotification { expected: None, .. })
    ));
    // The right updates in the wrong order: offline announced before online.
    let history = vec![
        Event::Tracker(online.clone()),
        Event::Tracker(b_dead(&online)),
        update("b", NodeStatus::Offline),
        update("b", NodeStatus::Online),
    ];
    assert!(check_notifications(&name("a"), &history).is_err());
    // A first row that is already offline is not a transition.
    let mut first_dead = b_dead(&online);
    first_dead.old_row = None;
    let history = vec![Event::Tracker(first_dead), update("b", NodeStatus::Offline)];
    assert!(matches!(
        check_notifications(&name("a"), &history),
        Err(ViolationKind::UnexpectedNotification { .. })
    ));
    // One transition, one update: a repeated one is caught.
    let history = vec![Event::Tracker(online), update("b", NodeStatus::Online)];
    assert!(check_notifications(&name("a"), &history).is_ok());
    let mut twice = history;
    twice.push(update("b", NodeStatus::Online));
    assert!(check_notifications(&name("a"), &twice).is_err());
}

#[test]
fn a_notification_about_self_is_caught() {
    let (_, mut events) = real_history();
    events.push(update("a", NodeStatus::Offline));
    assert_eq!(
        check_notifications(&name("a"), &events),
        Err(ViolationKind::NotifiedAboutSelf { node: "a".into() })
    );
}

#[test]
fn a_mode_that_disagrees_with_the_tracker_is_caught() {
    let (_, mut events) = real_history();
    events.push(Event::ModeChanged(Mode::Standalone));
    assert!(matches!(
        check_mode_history(&name("a"), &events),
        Err(ViolationKind::ModeMismatch {
            mode: Mode::Standalone,
            others_online: 1,
            ..
        })
    ));
    let (_, mut events) = real_history();
    let dead = b_dead(&b_online(&events));
    events.push(Event::Tracker(dead));
    assert!(matches!(
        check_mode_history(&name("a"), &events),
        Err(ViolationKind::ModeMismatch {
            mode: Mode::Clustered,
            others_online: 0,
            ..
        })
    ));
}

#[test]
fn declaring_a_healthy_node_dead_is_caught_and_a_crashed_one_is_not() {
    let (_, events) = real_history();
    let dead = b_dead(&b_online(&events));
    assert!(is_declaration(&dead));
    assert!(matches!(
        check_accuracy(&name("a"), &dead, |_| true),
        Err(ViolationKind::FalseOffline {
            health: Health::Dead,
            ..
        })
    ));
    assert_eq!(check_accuracy(&name("a"), &dead, |_| false), Ok(()));
    // Leaving is not a declaration.
    let mut left = dead.clone();
    left.new_row.health = Health::Left;
    assert_eq!(check_accuracy(&name("a"), &left, |_| true), Ok(()));
}

#[test]
fn whole_cluster_checks_catch_divergence_stale_rows_and_missing_nodes() {
    let (a, _) = real_history();
    let now = Instant::now();
    let wall = DateTime::from_timestamp_millis(1_764_000_000_000).expect("in range");
    let b = Node::new(Config::for_cluster("t"), name("b"), addr(2), now, wall).expect("valid");
    let bound = Duration::from_secs(1);
    assert!(matches!(
        check_converged([&a, &b], bound),
        Err(ViolationKind::NotConverged { .. })
    ));
    assert_eq!(check_converged([&a, &a], bound), Ok(()));
    assert!(matches!(
        check_complete([&a], &[name("b")]),
        Err(ViolationKind::Incomplete { .. })
    ));
    assert_eq!(check_complete([&a], &[name("zz")]), Ok(()));
    assert!(matches!(
        check_live([&a, &b]),
        Err(ViolationKind::NotLive { .. })
    ));
    assert_eq!(check_live([&a]), Ok(()));
}

#[test]
fn timing_bounds_grow_with_the_cluster_and_follow_the_config() {
    let config = Config::default();
    let small = Timing::new(&config, 10);
    let big = Timing::new(&config, 1000);
    assert!(big.detection > small.detection);
    assert_eq!(small.suspicion_max, Duration::from_secs(2));
    assert!(small.liveness > config.rejoin_interval);
    let violation = Violation {
        at: Duration::from_millis(1500),
        kind: ViolationKind::NotifiedAboutSelf { node: "a".into() },
    };
    assert_eq!(violation.to_string(), "at 1.500s: a notified about itself");
}

// ----- accuracy under partitions, link rules, loss and delays -----

const S: Duration = Duration::from_secs(1);

#[test]
fn reachability_excuses_a_pair_only_while_cut_and_for_a_grace_after() {
    let mut r = Reachability::new(4 * S);
    assert!(r.connected(0, 1) && !r.apart_within(0, 1, S));
    // 10 s: {0} | {1, 2}; 20 s: healed.
    r.record(10 * S, Some(vec![0, 1, 1]));
    r.record(20 * S, None);
    assert!(!r.apart_within(0, 1, 9 * S), "before the cut");
    assert!(r.apart_within(0, 1, 15 * S) && r.apart_within(1, 0, 15 * S));
    assert!(!r.apart_within(1, 2, 15 * S), "same side");
    assert!(r.connected(0, 1), "healed");
    assert!(
        r.apart_within(0, 1, 23 * S),
        "within the grace after the heal"
    );
    assert!(!r.apart_within(0, 1, 24 * S), "a grace after the heal");
    // Old history is forgotten once a grace past it.
    r.record(60 * S, Some(vec![0, 0, 1]));
    assert!(!r.apart_within(0, 1, 60 * S) && r.apart_within(1, 2, 60 * S));
}

/// A formed 6-node cluster and the tracker event of node 0 writing node 1
/// dead (a deliberately broken history if node 1 is healthy).
fn sim_and_false_death() -> (crate::Sim, TrackerEvent) {
    let sim = crate::Sim::builder()
        .nodes(6)
        .seed(3)
        .build()
        .expect("the cluster forms");
    let online = sim
        .node(0)
        .and_then(|n| n.row(sim.name(1)))
        .cloned()
        .expect("node 0 tracks node 1");
    let event = TrackerEvent {
        op: Op::Write,
        new_row: online.clone(),
        old_row: Some(online),
    };
    (sim, b_dead(&event))
}

fn judge(sim: &crate::Sim, observer: usize, target: usize, event: &TrackerEvent) -> bool {
    let healthy = sim.standing(observer, target) == Standing::Healthy;
    check_accuracy(sim.name(observer), event, |_| healthy).is_err()
}

#[test]
fn a_false_death_under_lossy_and_slow_link_rules_and_loss_is_still_caught() {
    let (mut sim, dead) = sim_and_false_death();
    assert!(judge(&sim, 0, 1, &dead), "caught without faults");
    let rule = crate::LinkRule {
        loss: Some(0.9),
        extra_latency: Duration::from_millis(40),
        ..crate::LinkRule::default()
    };
    for (from, to) in [(0, 1), (1, 0)] {
        let rule = rule.clone();
        sim.apply(crate::Fault::Link { from, to, rule });
    }
    sim.apply(crate::Fault::Loss { loss: 0.5 });
    sim.run_for(S);
    assert_eq!(sim.standing(0, 1), Standing::Healthy);
    assert!(
        judge(&sim, 0, 1, &dead),
        "a lossy, slow link does not excuse it"
    );
    // A blocked link with a detour (0 → 1 cut, 0 → 2 → 1 open) does not either.
    let blocked = crate::LinkRule {
        blocked: true,
        ..crate::LinkRule::default()
    };
    sim.apply(crate::Fault::Link {
        from: 0,
        to: 1,
        rule: blocked,
    });
    assert!(judge(&sim, 0, 1, &dead), "connected through the others");
}

/// The checks a real run at heavy loss relied on while the core could still be
/// fooled there, on a fixed false death instead: 75% loss everywhere and 95%
/// loss on every link to the target leave it healthy, so its death is caught.
#[test]
fn a_false_death_at_heavy_loss_and_behind_very_lossy_links_is_caught() {
    let (mut sim, dead) = sim_and_false_death();
    sim.apply(crate::Fault::Loss { loss: 0.75 });
    for from in [0, 2, 3, 4, 5] {
        let rule = crate::LinkRule {
            loss: Some(0.95),
            ..crate::LinkRule::default()
        };
        sim.apply(crate::Fault::Link { from, to: 1, rule });
    }
    sim.run_for(S);
    assert_eq!(sim.standing(0, 1), Standing::Healthy);
    assert!(judge(&sim, 0, 1, &dead), "heavy loss does not excuse it");
}

#[test]
fn a_death_across_a_partition_is_excused_until_a_grace_after_the_heal() {
    let (mut sim, dead) = sim_and_false_death();
    sim.apply(crate::Fault::Partition {
        groups: vec![vec![0, 2]],
    });
    sim.run_for(10 * S);
    assert_eq!(sim.standing(0, 1), Standing::Apart);
    assert!(!judge(&sim, 0, 1, &dead), "cut off from its writer");
    assert_eq!(sim.standing(2, 0), Standing::Healthy, "same side");
    sim.apply(crate::Fault::Heal);
    sim.run_for(S);
    assert_eq!(sim.standing(0, 1), Standing::Apart, "within the grace");
    sim.run_for(sim.timing().grace);
    assert!(judge(&sim, 0, 1, &dead), "a grace after the heal it counts");
}

#[test]
fn a_node_that_cannot_send_or_cannot_hear_is_apart_from_everyone() {
    let (mut sim, dead) = sim_and_false_death();
    sim.apply(crate::Fault::OneWay {
        from: vec![1],
        to: vec![0, 2, 3, 4, 5],
    });
    assert_eq!(sim.standing(0, 1), Standing::Apart);
    assert!(!judge(&sim, 0, 1, &dead));
    assert_eq!(sim.standing(0, 2), Standing::Healthy);
}

#[test]
fn a_member_seconds_late_is_degraded_and_one_a_little_late_is_healthy() {
    let (mut sim, dead) = sim_and_false_death();
    let ms = Duration::from_millis(1);
    sim.apply(crate::Fault::Delay {
        node: 1,
        min: ms,
        max: 10 * ms,
    });
    assert_eq!(
        sim.standing(0, 1),
        Standing::Healthy,
        "below the probe timeout"
    );
    assert!(judge(&sim, 0, 1, &dead));
    sim.apply(crate::Fault::Delay {
        node: 1,
        min: S,
        max: 5 * S,
    });
    assert_eq!(sim.standing(0, 1), Standing::Degraded);
    assert!(!judge(&sim, 0, 1, &dead));
    // Node 1 is degraded, but whom it accuses is judged.
    assert_eq!(sim.standing(1, 2), Standing::Healthy);
    sim.apply(crate::Fault::Heal);
    assert_eq!(
        sim.standing(0, 1),
        Standing::Degraded,
        "grace after the delay"
    );
    sim.run_for(sim.timing().grace);
    assert_eq!(sim.standing(0, 1), Standing::Healthy);
}

#[test]
fn convergence_compares_tags_too() {
    let (mut a, _) = real_history();
    let (mut b, _) = real_history();
    let now = Instant::now();
    let row = |tags: &str| -> beethoven_core::TrackerRow {
        let json = format!(
            r#"{{"node":"c","addr":"10.0.0.1:3","incarnation":1,"health":"Alive","last_change_ms":1764000000000,"tags":{tags}}}"#
        );
        serde_json::from_str(&json).expect("a valid saved row")
    };
    a.restore(now, [row(r#"{"role":"db"}"#)]);
    b.restore(now, [row("{}")]);
    let bound = Duration::from_secs(1);
    assert!(
        matches!(
            check_converged([&a, &b], bound),
            Err(ViolationKind::NotConverged { .. })
        ),
        "rows that differ only in tags are not converged"
    );
}
