//! Unit tests of the node as a whole; each part's own tests are at the bottom of its file.

use super::testing::*;

#[test]
fn a_new_node_is_standalone_with_itself_online() {
    let now = epoch();
    let config = Config::for_cluster("unit");
    let mut node = Node::new(config, name("me"), addr(1), now, wall()).expect("valid config");
    assert_eq!(node.mode(), Mode::Standalone);
    assert_eq!(node.tracker().len(), 1);
    assert_eq!(node.active_nodes().collect::<Vec<_>>(), [&name("me")]);
    match node.poll_event() {
        Some(Event::Tracker(TrackerEvent {
            op: Op::Write,
            new_row,
            old_row: None,
        })) => {
            assert_eq!(new_row.node, name("me"));
            assert_eq!(new_row.status, NodeStatus::Online);
            assert_eq!(new_row.last_change, wall());
        }
        other => panic!("expected the own row, got {other:?}"),
    }
    assert!(node.poll_event().is_none());
    assert!(node.poll_transmit().is_none(), "alone, it sends nothing");
    assert_eq!(
        node.poll_timeout(),
        None,
        "alone and not joining, it sleeps"
    );
}

#[test]
fn invalid_config_is_refused_with_the_field_named() {
    let config = Config {
        gossip_fanout: 0,
        ..Config::default()
    };
    let err = Node::new(config, name("me"), addr(1), epoch(), wall()).expect_err("invalid");
    assert!(err.to_string().contains("gossip_fanout"));
}

#[test]
fn a_drained_burst_of_events_gives_its_memory_back() {
    let now = epoch();
    let mut node = node(now);
    node.restore(
        now,
        (0..2000).map(|i| alive(&format!("n{i}"), 2 + i as u16, 0).row.0),
    );
    assert!(
        node.events.len() >= 4000,
        "a row event and an update per peer"
    );
    while node.poll_event().is_some() {}
    assert!(node.events.capacity() <= KEEP_QUEUED);
}
