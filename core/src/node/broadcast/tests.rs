//! User events at one node, fed hand-made packets.

use super::*;
use crate::node::testing::*;
use crate::user::SendEventError;
use crate::wire::{EventId, EventKey, WireEvent};

fn event_from(origin: &str, seq: u64, sent_at: i64) -> WireEvent {
    WireEvent {
        key: EventKey {
            origin: name(origin),
            started: wall().timestamp_millis() - 1_000,
            seq,
        },
        sent_at,
        prev_sent_at: if seq == 1 { i64::MIN } else { sent_at - 1 },
        lamport: 40 + seq,
        name: "deploy".into(),
        payload: vec![seq as u8; 10],
        span: None,
        // Its age at `epoch()` (at least 0): `sent_at` reads the same clock as `wall()`.
        age_ms: u64::try_from(wall().timestamp_millis() - sent_at).unwrap_or(0),
    }
}

fn push(node: &mut Node, now: Instant, event: WireEvent) {
    let bytes = packet("peer", 0, Message::Event(Box::new(event)), &[]);
    node.handle_packet(now, addr(2), &bytes);
}

fn delivered(node: &mut Node) -> Vec<(String, u64)> {
    std::iter::from_fn(|| node.poll_event())
        .filter_map(|event| match event {
            Event::User(user) => Some((user.id.origin.to_string(), user.id.seq)),
            _ => None,
        })
        .collect()
}

fn at(now: Instant) -> i64 {
    wall().timestamp_millis() + (now - epoch()).as_millis() as i64
}

#[test]
fn an_event_is_delivered_once_with_its_origin_name_payload_and_lamport_time() {
    let now = epoch();
    let mut node = node_knowing_peer(now);
    let _ = delivered(&mut node);
    let event = event_from("peer", 1, wall().timestamp_millis());
    push(&mut node, now, event.clone());
    push(&mut node, now, event);
    let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    let users: Vec<&UserEvent> = events
        .iter()
        .filter_map(|e| match e {
            Event::User(user) => Some(user),
            _ => None,
        })
        .collect();
    assert_eq!(users.len(), 1, "the second copy is a duplicate");
    assert_eq!(users[0].name, "deploy");
    assert_eq!(users[0].payload, vec![1; 10]);
    assert_eq!(users[0].lamport, 41);
    assert_eq!(node.stats().user_events.duplicates, 1);
    assert_eq!(node.stats().user_events.copies_received, 2);
}

#[test]
fn a_gap_is_held_and_pulled_from_the_sender_then_delivered_in_order() {
    let now = epoch();
    let mut node = node_knowing_peer(now);
    let _ = sent(&mut node);
    let t = wall().timestamp_millis();
    push(&mut node, now, event_from("peer", 1, t));
    push(&mut node, now, event_from("peer", 3, t + 2));
    assert_eq!(delivered(&mut node), vec![("peer".into(), 1)]);
    assert!(pulls(&mut node).is_empty(), "the push may be on its way");
    let due = now + node.config().user_events.pull_delay;
    assert!(node.poll_timeout().is_some_and(|at| at <= due));
    node.handle_timeout(due);
    assert_eq!(pulls(&mut node), vec![(addr(2), 2)]);
    push(&mut node, due, event_from("peer", 2, t + 1));
    assert_eq!(
        delivered(&mut node),
        vec![("peer".into(), 2), ("peer".into(), 3)]
    );
}

fn pulls(node: &mut Node) -> Vec<(SocketAddr, u64)> {
    sent(node)
        .into_iter()
        .filter_map(|(to, p)| match p.message {
            Message::EventPull(key) => Some((to, key.seq)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_event_sent_before_this_process_started_is_never_delivered() {
    let now = epoch();
    let mut node = node_knowing_peer(now);
    let _ = delivered(&mut node);
    let before = wall().timestamp_millis() - 10;
    push(&mut node, now, event_from("peer", 5, before));
    assert!(delivered(&mut node).is_empty());
    assert_eq!(node.stats().user_events.too_old, 1);
    // The next one begins this process's share, without waiting for a gap.
    let mut next = event_from("peer", 6, at(now) + 5);
    next.prev_sent_at = before;
    push(&mut node, now, next);
    assert_eq!(delivered(&mut node), vec![("peer".into(), 6)]);
}

#[test]
fn an_announcement_of_a_missing_event_is_pulled_and_a_pull_is_answered_from_the_window() {
    let now = epoch();
    let mut node = node_knowing_peer(now);
    let _ = sent(&mut node);
    let id = EventId {
        key: event_from("other", 1, 0).key,
        sent_at: at(now),
        age_ms: 0,
    };
    let mut bytes = Vec::new();
    crate::wire::encode_with_ids(
        Sender {
            cluster: node.config().cluster_id,
            name: &name("peer"),
            incarnation: 0,
            sealed: false,
        },
        &Message::Gossip,
        &[],
        std::slice::from_ref(&id),
        &mut bytes,
        None,
    );
    node.handle_packet(now, addr(2), &bytes);
    assert!(pulls(&mut node).is_empty(), "not before pull_delay");
    node.handle_timeout(now + node.config().user_events.pull_delay);
    assert_eq!(pulls(&mut node), vec![(addr(2), 1)]);
    // Asked for an event it holds, it answers with the payload.
    let mine = node.send_event(now, "hello", b"world").expect("valid");
    let _ = sent(&mut node);
    let key = EventKey {
        origin: mine.origin,
        started: mine.started,
        seq: mine.seq,
    };
    node.handle_packet(
        now,
        addr(2),
        &packet("peer", 0, Message::EventPull(key), &[]),
    );
    let answers: Vec<_> = sent(&mut node)
        .into_iter()
        .filter_map(|(to, p)| match p.message {
            Message::Event(event) => Some((to, event.payload, event.span)),
            _ => None,
        })
        .collect();
    assert_eq!(answers, vec![(addr(2), b"world".to_vec(), None)]);
}

#[test]
fn forged_and_malformed_events_are_counted_drops() {
    let now = epoch();
    let mut node = node_knowing_peer(now);
    let _ = delivered(&mut node);
    let t = wall().timestamp_millis();
    let mut empty = event_from("peer", 1, t);
    empty.name.clear();
    push(&mut node, now, empty);
    let mut large = event_from("peer", 1, t);
    large.payload = vec![0; 1025];
    push(&mut node, now, large);
    let mut zero = event_from("peer", 0, t);
    zero.prev_sent_at = i64::MIN;
    push(&mut node, now, zero);
    let mut mine = event_from("me", 1, t);
    mine.key.started = wall().timestamp_millis();
    push(&mut node, now, mine);
    assert!(delivered(&mut node).is_empty());
    assert_eq!(node.stats().user_events.invalid, 3);
    assert_eq!(node.stats().user_events.duplicates, 1, "its own event");
    // Cut short: the whole packet is a counted drop.
    let bytes = packet(
        "peer",
        0,
        Message::Event(Box::new(event_from("peer", 1, t))),
        &[],
    );
    for cut in 14..bytes.len() {
        node.handle_packet(now, addr(2), &bytes[..cut]);
    }
    assert!(delivered(&mut node).is_empty());
    assert!(node.stats().dropped(DropReason::Malformed) >= (bytes.len() - 14) as u64 / 2);
}

#[test]
fn bad_names_and_payloads_are_refused_at_the_sender_before_anything_is_sent() {
    let now = epoch();
    let mut node = node_knowing_peer(now);
    let _ = sent(&mut node);
    assert_eq!(
        node.send_event(now, "", b""),
        Err(SendEventError::EmptyName)
    );
    let long = "n".repeat(129);
    assert_eq!(
        node.send_event(now, &long, b""),
        Err(SendEventError::NameTooLong {
            len: 129,
            limit: 128
        })
    );
    assert_eq!(
        node.send_event(now, "big", &[0; 1025]),
        Err(SendEventError::PayloadTooLarge {
            len: 1025,
            limit: 1024
        })
    );
    assert!(sent(&mut node).is_empty());
    assert_eq!(node.stats().user_events.sent, 0);
    let id = node
        .send_event(now, "ok", &[0; 1024])
        .expect("at the limit");
    assert_eq!(id.seq, 1);
}

#[test]
fn a_sender_over_its_rate_gets_busy_and_its_later_events_keep_their_order() {
    let now = epoch();
    let mut node = node_knowing_peer(now);
    let burst = node.config().user_events.send_burst as usize;
    let accepted = (0..burst + 50)
        .filter(|_| node.send_event(now, "e", b"").is_ok())
        .count();
    assert_eq!(accepted, burst);
    assert_eq!(node.send_event(now, "e", b""), Err(SendEventError::Busy));
    let later = now + Duration::from_secs(1);
    let id = node.send_event(later, "e", b"").expect("refilled");
    assert_eq!(id.seq, burst as u64 + 1, "refusals take no number");
}

#[test]
fn membership_datagrams_go_out_before_queued_user_events() {
    let now = epoch();
    let mut node = node_knowing_peer(now);
    let _ = sent(&mut node);
    node.send_event(now, "e", &[7; 500]).expect("valid");
    node.handle_packet(now, addr(2), &ping_from_peer(5, "me", &[]));
    let kinds: Vec<bool> = sent(&mut node)
        .into_iter()
        .map(|(_, p)| matches!(p.message, Message::Event(_)))
        .collect();
    assert_eq!(kinds, vec![false, true], "the ack first, then the event");
}

#[test]
fn a_flooding_origin_is_limited_and_counted_at_the_receiver() {
    let now = epoch();
    let mut node = node_knowing_peer(now);
    let burst = u64::from(node.config().user_events.origin_burst);
    let t = wall().timestamp_millis();
    for seq in 1..=burst + 100 {
        push(&mut node, now, event_from("peer", seq, t));
    }
    assert_eq!(delivered(&mut node).len() as u64, burst);
    assert_eq!(node.stats().user_events.rate_limited, 100);
    // What was dropped is not pulled when announced: it would be dropped again.
    let _ = sent(&mut node);
    let id = EventId {
        key: event_from("peer", burst + 50, t).key,
        sent_at: t,
        age_ms: 0,
    };
    let mut bytes = Vec::new();
    crate::wire::encode_with_ids(
        Sender {
            cluster: node.config().cluster_id,
            name: &name("peer"),
            incarnation: 0,
            sealed: false,
        },
        &Message::Gossip,
        &[],
        std::slice::from_ref(&id),
        &mut bytes,
        None,
    );
    node.handle_packet(now, addr(2), &bytes);
    node.handle_timeout(now + node.config().user_events.pull_delay);
    assert!(pulls(&mut node).is_empty());
}

#[test]
fn whether_an_event_predates_this_process_is_told_by_its_age_not_by_the_origins_clock() {
    let now = epoch();
    let mut node = node_knowing_peer(now);
    let _ = delivered(&mut node);
    let hour = 3_600_000;
    let later = now + Duration::from_secs(10);
    // The origin's clock is an hour behind: its event, 2 s old, came after
    // this process started (10 s ago), whatever its clock says.
    let mut behind = event_from("peer", 1, wall().timestamp_millis() - hour);
    behind.age_ms = 2_000;
    push(&mut node, later, behind);
    assert_eq!(delivered(&mut node), vec![("peer".into(), 1)]);
    // Another origin's clock is an hour ahead: its event, 20 s old, was sent
    // before this process started, though its clock says an hour from now.
    let mut ahead = event_from("other", 3, wall().timestamp_millis() + hour);
    ahead.age_ms = 20_000;
    push(&mut node, later, ahead);
    assert!(delivered(&mut node).is_empty());
    assert_eq!(node.stats().user_events.too_old, 1);
    // Its next one, 1 s old, 30 s after the one before by the origin's own
    // clock: the one before predates this process, so this one begins its
    // share at once (no gap to pull).
    let mut next = event_from("other", 4, wall().timestamp_millis() + hour + 30_000);
    next.prev_sent_at = wall().timestamp_millis() + hour;
    next.age_ms = 1_000;
    push(&mut node, later, next);
    assert_eq!(delivered(&mut node), vec![("other".into(), 4)]);
    // Older than the window by its age: dropped, whatever its clock says.
    let mut stale = event_from("third", 1, wall().timestamp_millis() + hour);
    stale.age_ms = 1 + node.config().user_events.window_age.as_millis() as u64;
    push(&mut node, later + Duration::from_secs(200), stale);
    assert!(delivered(&mut node).is_empty());
    assert_eq!(node.stats().user_events.too_old, 2);
}
