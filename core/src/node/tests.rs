//! Unit tests of one node, fed hand-made packets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::DateTime;

use super::*;
use crate::discovery::{JoinError, Seed};
use crate::event::{Op, TrackerEvent};
use crate::stats::DropReason;
use crate::tracker::NodeStatus;
use crate::wire::{Packet, Sender, WireDigest, WireRow, encode};

fn epoch() -> Instant {
    #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
    Instant::now()
}

fn wall() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_764_000_000_000).expect("in range")
}

fn name(s: &str) -> NodeName {
    NodeName::new(s).expect("valid")
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn node(now: Instant) -> Node {
    let config = Config::for_cluster("unit");
    let mut node = Node::new(config, name("me"), addr(1), now, wall()).expect("valid config");
    while node.poll_event().is_some() {}
    node
}

fn packet(from: &str, incarnation: u64, message: Message, gossip: &[&Update]) -> Vec<u8> {
    let sender = name(from);
    let mut out = Vec::new();
    encode(
        Sender {
            cluster: Config::for_cluster("unit").cluster_id,
            name: &sender,
            incarnation,
            sealed: false,
        },
        &message,
        gossip,
        &mut out,
        None,
    );
    out
}

fn alive(who: &str, port: u16, incarnation: u64) -> Update {
    Update {
        row: WireRow(TrackerRow::new(
            name(who),
            addr(port),
            Health::Alive,
            incarnation,
            wall(),
        )),
        suspecter: None,
    }
}

fn suspect(who: &str, port: u16, incarnation: u64, by: &str) -> Update {
    let mut update = alive(who, port, incarnation);
    update.row.0 = update.row.0.with_health(Health::Suspect, wall());
    update.suspecter = Some(name(by));
    update
}

fn dead(who: &str, port: u16, incarnation: u64) -> Update {
    let mut update = alive(who, port, incarnation);
    update.row.0 = update.row.0.with_health(Health::Dead, wall());
    update
}

fn sent(node: &mut Node) -> Vec<(SocketAddr, Packet)> {
    let cluster = node.config().cluster_id;
    let mut out = Vec::new();
    while let Some(t) = node.poll_transmit() {
        let packet = crate::wire::decode(t.payload, cluster, None, &mut Vec::new())
            .expect("own packets decode");
        out.push((t.to, packet));
    }
    out
}

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
fn spurious_timeouts_are_harmless() {
    let now = epoch();
    let mut node = node(now);
    for i in 0..10 {
        node.handle_timeout(now + Duration::from_millis(i));
    }
    assert!(node.poll_event().is_none());
    assert!(node.poll_transmit().is_none());
    assert_eq!(node.tracker().len(), 1);
}

#[test]
fn a_ping_is_acked_and_its_gossip_applied() {
    let now = epoch();
    let mut node = node(now);
    let update = alive("peer", 2, 0);
    let ping = packet(
        "peer",
        0,
        Message::Ping {
            seq: 42,
            target: name("me"),
        },
        &[&update],
    );
    node.handle_packet(now, addr(2), &ping);
    let out = sent(&mut node);
    assert!(
        out.iter()
            .any(|(to, p)| *to == addr(2) && p.message == Message::Ack { seq: 42 })
    );
    assert_eq!(node.mode(), Mode::Clustered);
    let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    assert!(matches!(&events[0], Event::Tracker(t) if t.new_row.node == name("peer")));
    assert_eq!(
        events[1],
        Event::NodeUpdate {
            node: name("peer"),
            status: NodeStatus::Online
        }
    );
    assert_eq!(events[2], Event::ModeChanged(Mode::Clustered));
}

#[test]
fn a_ping_for_another_name_is_dropped_whole() {
    let now = epoch();
    let mut node = node(now);
    let update = alive("peer", 2, 0);
    let ping = packet(
        "peer",
        0,
        Message::Ping {
            seq: 1,
            target: name("someone-else"),
        },
        &[&update],
    );
    node.handle_packet(now, addr(2), &ping);
    assert_eq!(node.stats().dropped(DropReason::WrongTarget), 1);
    assert!(sent(&mut node).is_empty());
    assert_eq!(
        node.tracker().len(),
        1,
        "the piggybacked update was not applied"
    );
}

#[test]
fn packets_claiming_to_be_from_self_are_dropped() {
    let now = epoch();
    let mut node = node(now);
    let bytes = packet("me", 9, Message::Gossip, &[&alive("x", 3, 0)]);
    node.handle_packet(now, addr(9), &bytes);
    assert_eq!(node.stats().dropped(DropReason::FromSelf), 1);
    assert_eq!(node.tracker().len(), 1);
}

#[test]
fn an_unsolicited_join_reply_is_dropped() {
    let now = epoch();
    let mut node = node(now);
    let bytes = packet(
        "peer",
        0,
        Message::JoinReply {
            rows: vec![alive("peer", 2, 0).row],
        },
        &[],
    );
    node.handle_packet(now, addr(2), &bytes);
    assert_eq!(node.stats().dropped(DropReason::Unsolicited), 1);
    assert_eq!(node.tracker().len(), 1);
}

#[test]
fn a_join_must_announce_its_own_sender_alive() {
    let now = epoch();
    let mut node = node(now);
    let forged = packet(
        "peer",
        0,
        Message::Join {
            row: alive("victim", 3, 5).row,
        },
        &[],
    );
    node.handle_packet(now, addr(2), &forged);
    assert_eq!(node.stats().dropped(DropReason::Malformed), 1);
    assert_eq!(node.tracker().len(), 1);
}

#[test]
fn a_join_is_answered_with_the_tracker() {
    let now = epoch();
    let mut node = node(now);
    let join = packet(
        "peer",
        0,
        Message::Join {
            row: alive("peer", 2, 0).row,
        },
        &[],
    );
    node.handle_packet(now, addr(2), &join);
    let replies: Vec<_> = sent(&mut node)
        .into_iter()
        .filter_map(|(to, p)| match p.message {
            Message::JoinReply { rows } => Some((to, rows.len())),
            _ => None,
        })
        .collect();
    assert_eq!(replies, [(addr(2), 2)]);
}

#[test]
fn join_replies_are_chunked_within_the_packet_size() {
    let now = epoch();
    let mut node = node(now);
    let updates: Vec<Update> = (0..200)
        .map(|i| alive(&format!("peer-with-a-long-name-{i:04}"), 1000 + i, 0))
        .collect();
    for chunk in updates.chunks(10) {
        let refs: Vec<&Update> = chunk.iter().collect();
        node.handle_packet(now, addr(2), &packet("peer", 0, Message::Gossip, &refs));
    }
    let _ = sent(&mut node);
    let join = packet(
        "joiner",
        0,
        Message::Join {
            row: alive("joiner", 3, 0).row,
        },
        &[],
    );
    node.handle_packet(now, addr(3), &join);
    let mut rows = 0;
    let mut chunks = 0;
    let cluster = node.config.cluster_id;
    while let Some(t) = node.poll_transmit() {
        assert!(t.payload.len() <= 1400);
        let packet =
            crate::wire::decode(t.payload, cluster, None, &mut Vec::new()).expect("decodes");
        if let Message::JoinReply { rows: chunk } = packet.message {
            rows += chunk.len();
            chunks += 1;
        }
    }
    assert_eq!(rows, 202, "every row, self and joiner included");
    assert!(chunks > 1);
}

#[test]
fn a_matching_digest_costs_no_reply() {
    let now = epoch();
    let mut node = node(now);
    let digest: WireDigest = node.tracker().digest().into();
    let sync = packet(
        "peer",
        0,
        Message::Sync {
            digest,
            reply: false,
        },
        &[],
    );
    node.handle_packet(now, addr(2), &sync);
    assert!(sent(&mut node).is_empty());
    let other = packet(
        "peer",
        0,
        Message::Sync {
            digest: [0u64; crate::tracker::DIGEST_BUCKETS].into(),
            reply: false,
        },
        &[],
    );
    node.handle_packet(now, addr(2), &other);
    let kinds: Vec<_> = sent(&mut node)
        .into_iter()
        .map(|(_, p)| std::mem::discriminant(&p.message))
        .collect();
    assert_eq!(
        kinds.len(),
        2,
        "rows of the differing bucket, then our digest"
    );
}

#[test]
fn a_suspicion_from_an_outdated_row_is_answered_with_the_current_one() {
    let now = epoch();
    let mut node = node(now);
    // This node knows "peer" refuted a suspicion: alive at incarnation 2.
    let current = alive("peer", 2, 2);
    node.handle_packet(
        now,
        addr(3),
        &packet("other", 0, Message::Gossip, &[&current]),
    );
    let _ = sent(&mut node);
    while node.poll_event().is_some() {}
    // "late" missed that and suspects it at incarnation 1.
    let outdated = suspect("peer", 2, 1, "late");
    node.handle_packet(
        now,
        addr(4),
        &packet("late", 0, Message::Gossip, &[&outdated]),
    );
    let row = node.row(&name("peer")).expect("tracked");
    assert_eq!(
        (row.health, row.incarnation),
        (Health::Alive, 2),
        "unchanged"
    );
    assert!(node.poll_event().is_none(), "no state change");
    let out = sent(&mut node);
    let answer = out
        .iter()
        .find(|(to, _)| *to == addr(4))
        .map(|(_, packet)| packet)
        .expect("the suspecter is answered at once");
    assert!(
        answer
            .gossip
            .iter()
            .any(|u| u.row.0.node == name("peer") && u.row.0.incarnation == 2),
        "with the current row: {answer:?}"
    );
    // Outdated good news needs no answer.
    let stale_alive = alive("peer", 2, 1);
    node.handle_packet(
        now,
        addr(4),
        &packet("late", 0, Message::Gossip, &[&stale_alive]),
    );
    assert!(sent(&mut node).is_empty());
}

#[test]
fn a_node_that_refutes_its_own_death_compares_tables_soon() {
    let now = epoch();
    let mut node = node(now);
    let peer = alive("peer", 2, 0);
    node.handle_packet(now, addr(2), &packet("peer", 0, Message::Gossip, &[&peer]));
    let death = dead("me", 1, 0);
    node.handle_packet(now, addr(2), &packet("peer", 0, Message::Gossip, &[&death]));
    assert_eq!(node.incarnation(), 1);
    let _ = sent(&mut node);
    // Peers stopped sending to a node they held dead: it missed news.
    let soon = now + 2 * node.config().probe_interval;
    assert!(node.config().anti_entropy_interval > 4 * node.config().probe_interval);
    let mut synced = false;
    while let Some(at) = node.poll_timeout().filter(|at| *at <= soon) {
        node.handle_timeout(at);
        synced |= sent(&mut node)
            .iter()
            .any(|(_, p)| matches!(p.message, Message::Sync { .. }));
    }
    assert!(synced, "an anti-entropy exchange within two probe periods");
}

#[test]
fn news_of_own_death_is_refuted_with_a_higher_incarnation() {
    let now = epoch();
    let mut node = node(now);
    let death = dead("me", 1, 3);
    node.handle_packet(now, addr(2), &packet("peer", 0, Message::Gossip, &[&death]));
    assert_eq!(node.incarnation(), 4);
    assert_eq!(node.stats().refutations, 1);
    let own = node.row(&name("me")).expect("self");
    assert_eq!((own.health, own.incarnation), (Health::Alive, 4));
    assert!(
        node.poll_event().is_some(),
        "the own row's write is an event"
    );
    assert!(
        !std::iter::from_fn(|| node.poll_event()).any(|e| matches!(e, Event::NodeUpdate { .. })),
        "never a notification about self"
    );
}

#[test]
fn unreachable_hints_for_unknown_addresses_are_counted_and_ignored() {
    let now = epoch();
    let mut node = node(now);
    node.handle_unreachable(now, addr(99));
    assert_eq!(node.stats().dropped(DropReason::UnknownAddress), 1);
    assert!(sent(&mut node).is_empty());
}

#[test]
fn an_unreachable_hint_starts_a_probe_but_never_a_verdict() {
    let now = epoch();
    let mut node = node(now);
    node.handle_packet(
        now,
        addr(2),
        &packet("peer", 0, Message::Gossip, &[&alive("peer", 2, 0)]),
    );
    let _ = sent(&mut node);
    node.handle_unreachable(now, addr(2));
    let out = sent(&mut node);
    assert!(
        out.iter()
            .any(|(to, p)| *to == addr(2) && matches!(p.message, Message::Ping { .. }))
    );
    assert_eq!(
        node.row(&name("peer")).map(|r| r.health),
        Some(Health::Alive)
    );
}

#[test]
fn leave_twice_is_an_error_and_join_afterwards_comes_back_higher() {
    let now = epoch();
    let mut node = node(now);
    node.leave(now).expect("first leave");
    assert_eq!(node.leave(now), Err(LeaveError::AlreadyLeft));
    assert_eq!(node.row(&name("me")).map(|r| r.health), Some(Health::Left));
    node.join(now, &[Seed::Addr(addr(2))]).expect("join");
    assert!(!node.has_left());
    let own = node.row(&name("me")).expect("self");
    assert_eq!((own.health, own.incarnation), (Health::Alive, 1));
}

#[test]
fn new_node_refuses_self_and_a_full_tracker() {
    let now = epoch();
    let config = Config {
        max_nodes: 2,
        ..Config::for_cluster("unit")
    };
    let mut node = Node::new(config, name("me"), addr(1), now, wall()).expect("valid");
    assert_eq!(
        node.new_node(now, name("me"), addr(1)),
        Err(NewNodeError::IsSelf)
    );
    node.new_node(now, name("a"), addr(2))
        .expect("room for one");
    assert_eq!(
        node.new_node(now, name("b"), addr(3)),
        Err(NewNodeError::TrackerFull)
    );
    assert_eq!(node.tracker().len(), 2);
    // gossip about further unknown nodes is counted, not stored
    node.handle_packet(
        now,
        addr(2),
        &packet("a", 0, Message::Gossip, &[&alive("c", 4, 0)]),
    );
    assert_eq!(node.stats().dropped(DropReason::TrackerFull), 1);
    assert_eq!(node.tracker().len(), 2);
}

#[test]
fn join_refuses_seed_lists_with_nothing_but_self() {
    let now = epoch();
    let mut node = node(now);
    assert_eq!(
        node.join(now, &[Seed::Addr(addr(1))]),
        Err(JoinError::NoSeeds)
    );
    assert_eq!(node.join(now, &[]), Err(JoinError::NoSeeds));
}

#[test]
fn a_stalled_node_gives_its_suspicions_more_time() {
    let now = epoch();
    let mut node = node(now);
    node.handle_packet(
        now,
        addr(2),
        &packet("peer", 0, Message::Gossip, &[&alive("peer", 2, 0)]),
    );
    let suspected = suspect("peer", 2, 0, "other");
    node.handle_packet(
        now,
        addr(3),
        &packet("other", 0, Message::Gossip, &[&suspected]),
    );
    let deadline = node.suspicions[&name("peer")].deadline();
    // The process sleeps far past the deadline, then is driven again.
    let late = deadline + Duration::from_secs(5);
    node.handle_timeout(late);
    assert_eq!(node.stats().stalls, 1);
    assert_eq!(
        node.row(&name("peer")).map(|r| r.health),
        Some(Health::Suspect),
        "not declared dead on waking"
    );
    assert!(node.local_health().score() > 0);
}

/// Found by fuzzing: a forged "you are suspect at incarnation u64::MAX" made the
/// refutation overflow (a panic, or in release a wrap to 0 that kept the node
/// dead everywhere). Out-of-range incarnations are now malformed.
#[test]
fn an_incarnation_beyond_the_maximum_is_malformed_and_the_maximum_is_outbid() {
    let now = epoch();
    let mut node = node(now);
    let mut forged = alive("me", 1, u64::MAX);
    forged.row.0.health = Health::Suspect;
    forged.row.0.status = NodeStatus::Online;
    node.handle_packet(
        now,
        addr(2),
        &packet("peer", 0, Message::Gossip, &[&forged]),
    );
    assert_eq!(node.stats().dropped(DropReason::Malformed), 1);
    assert_eq!(node.incarnation(), 0);
    let mut highest = alive("me", 1, crate::tracker::MAX_INCARNATION);
    highest.row.0 = highest.row.0.with_health(Health::Suspect, wall());
    node.handle_packet(
        now,
        addr(2),
        &packet("peer", 0, Message::Gossip, &[&highest]),
    );
    assert_eq!(node.incarnation(), crate::tracker::MAX_INCARNATION + 1);
    assert_eq!(node.row(&name("me")).map(|r| r.health), Some(Health::Alive));
}

#[test]
fn a_restored_table_makes_the_node_clustered_without_gossip_and_refutes_an_old_self() {
    let now = epoch();
    // A saved table: an earlier life of "me" at incarnation 4, and two peers, one dead.
    let saved: Vec<TrackerRow> = [alive("a", 2, 0), alive("b", 3, 1), alive("me", 1, 4)]
        .into_iter()
        .map(|update| match update.row.0 {
            row if row.node == name("b") => row.with_health(Health::Dead, wall()),
            row => row,
        })
        .collect();

    let mut node = node(now);
    node.restore(now, saved.clone());
    assert_eq!(node.mode(), Mode::Clustered);
    assert_eq!(node.tracker().len(), 3);
    assert_eq!(
        node.row(&name("a")).map(|r| r.status),
        Some(NodeStatus::Online)
    );
    assert_eq!(
        node.row(&name("b")).map(|r| r.status),
        Some(NodeStatus::Offline)
    );
    assert_eq!(
        node.incarnation(),
        5,
        "the earlier life's incarnation 4 is outbid"
    );
    // Only the refutation is news: restored peers are not gossiped.
    assert_eq!(node.pending_updates(), 1);
    let mut updates = Vec::new();
    while let Some(event) = node.poll_event() {
        if let Event::NodeUpdate { node, status, .. } = event {
            updates.push((node, status));
        }
    }
    assert_eq!(updates, vec![(name("a"), NodeStatus::Online)]);
    // Restoring again changes nothing; the restored peer is probed.
    node.restore(now, saved);
    assert_eq!(node.tracker().len(), 3);
    node.handle_timeout(now);
    let pings: Vec<SocketAddr> = sent(&mut node)
        .into_iter()
        .filter(|(_, p)| matches!(p.message, Message::Ping { .. }))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(pings, vec![addr(2)]);
}

#[test]
fn restore_respects_max_nodes() {
    let now = epoch();
    let config = Config {
        max_nodes: 2,
        ..Config::for_cluster("unit")
    };
    let mut node = Node::new(config, name("me"), addr(1), now, wall()).expect("valid");
    node.restore(now, [alive("a", 2, 0).row.0, alive("b", 3, 0).row.0]);
    assert_eq!(node.tracker().len(), 2);
    assert_eq!(node.stats().dropped(DropReason::TrackerFull), 1);
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
