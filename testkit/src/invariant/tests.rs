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
