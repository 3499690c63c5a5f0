//! Queries at one node, fed hand-made packets.

use super::*;
use crate::node::testing::*;
use crate::query::QueryStats;
use crate::tags::TagQuery;

fn query_from(origin: &str, seq: u64, tags: Vec<(String, Option<String>)>) -> WireQuery {
    WireQuery {
        key: EventKey {
            origin: name(origin),
            started: wall().timestamp_millis() - 1_000,
            seq,
        },
        sent_at: wall().timestamp_millis(),
        timeout_ms: 1_000,
        request_ack: true,
        name: "load".into(),
        payload: b"1m".to_vec(),
        nodes: Vec::new(),
        tags,
        span: Some(0),
    }
}

fn push(node: &mut Node, now: Instant, query: WireQuery) {
    let bytes = packet("peer", 0, Message::Query(Box::new(query)), &[]);
    node.handle_packet(now, addr(2), &bytes);
}

fn requests(node: &mut Node) -> Vec<QueryRequest> {
    std::iter::from_fn(|| node.poll_event())
        .filter_map(|event| match event {
            Event::Query(request) => Some(request),
            _ => None,
        })
        .collect()
}

fn answers(node: &mut Node) -> Vec<Message> {
    sent(node)
        .into_iter()
        .map(|(_, packet)| packet.message)
        .filter(|message| {
            matches!(
                message,
                Message::QueryAck(..) | Message::QueryResponse(_) | Message::QueryRelay(_)
            )
        })
        .collect()
}

fn response_to_me(node: &Node, seq: u64, from: &str, payload: &[u8]) -> Vec<u8> {
    let response = WireResponse {
        key: EventKey {
            origin: name("me"),
            started: node.started_ms(),
            seq,
        },
        responder: name(from),
        payload: payload.to_vec(),
    };
    packet(from, 0, Message::QueryResponse(Box::new(response)), &[])
}

/// A node knowing "peer" (port 2, `role=db`) and "web" (port 3).
fn node_with_members(now: Instant) -> Node {
    let mut node = node(now);
    let mut db = alive("peer", 2, 0);
    db.row.0 = db.row.0.with_tags(tags(&[("role", "db")]));
    let web = alive("web", 3, 0);
    node.handle_packet(
        now,
        addr(2),
        &packet("peer", 0, Message::Gossip, &[&db, &web]),
    );
    let _ = sent(&mut node);
    while node.poll_event().is_some() {}
    node
}

#[test]
fn a_matching_query_is_delivered_once_and_acked_to_its_origin() {
    let now = epoch();
    let mut node = node_with_members(now);
    push(&mut node, now, query_from("peer", 1, Vec::new()));
    push(&mut node, now, query_from("peer", 1, Vec::new()));
    let delivered = requests(&mut node);
    assert_eq!(delivered.len(), 1, "the copy is a duplicate");
    assert_eq!(delivered[0].name, "load");
    assert_eq!(node.stats().queries.duplicates, 1);
    let acks = answers(&mut node);
    assert!(matches!(&acks[..], [Message::QueryAck(_, from)] if *from == name("me")));
}

#[test]
fn a_member_outside_the_filter_sends_nothing_back_and_counts_it() {
    let now = epoch();
    let mut node = node_with_members(now);
    let role_web = vec![("role".to_string(), Some("web".to_string()))];
    push(&mut node, now, query_from("peer", 1, role_web));
    assert!(requests(&mut node).is_empty());
    assert!(answers(&mut node).is_empty());
    assert_eq!(node.stats().queries.filtered_out, 1);
}

#[test]
fn a_response_goes_to_the_origin_and_through_relays_once_per_token() {
    let now = epoch();
    let mut node = node_with_members(now);
    push(&mut node, now, query_from("peer", 1, Vec::new()));
    let token = requests(&mut node)[0].token;
    let _ = answers(&mut node);
    node.respond(now, token, b"0.5").expect("a fresh token");
    let sent = answers(&mut node);
    let direct = sent
        .iter()
        .filter(|m| matches!(m, Message::QueryResponse(r) if r.payload == b"0.5"))
        .count();
    let relayed = sent
        .iter()
        .filter(|m| matches!(m, Message::QueryRelay(_)))
        .count();
    assert_eq!(direct, 1);
    assert_eq!(relayed, 1, "the one member besides the origin relays");
    assert_eq!(
        node.respond(now, token, b"again"),
        Err(RespondError::UnknownToken)
    );
}

#[test]
fn a_response_too_large_or_after_the_timeout_is_refused_at_the_responder() {
    let now = epoch();
    let mut node = node_with_members(now);
    push(&mut node, now, query_from("peer", 1, Vec::new()));
    let token = requests(&mut node)[0].token;
    let limit = node.config().queries.max_response_size;
    assert_eq!(
        node.respond(now, token, &vec![0; limit + 1]),
        Err(RespondError::PayloadTooLarge {
            len: limit + 1,
            limit
        })
    );
    let late = now + Duration::from_secs(1);
    assert_eq!(
        node.respond(late, token, b"ok"),
        Err(RespondError::UnknownToken)
    );
}

#[test]
fn bad_queries_are_refused_before_anything_is_sent() {
    let now = epoch();
    let mut node = node_with_members(now);
    let refused = [
        (Query::new("", Vec::new()), QueryError::EmptyName),
        (
            Query::new("q", Vec::new()).timeout(Duration::ZERO),
            QueryError::BadTimeout {
                timeout: Duration::ZERO,
                limit: node.config().queries.max_timeout,
            },
        ),
        (
            Query::new("q", Vec::new()).tag(TagQuery::key("")),
            QueryError::BadFilter {
                reason: "a tag query has an empty key",
            },
        ),
    ];
    for (query, error) in refused {
        assert_eq!(node.query(now, query), Err(error));
    }
    let too_large = Query::new("q", vec![0; node.config().user_events.max_payload + 1]);
    assert!(matches!(
        node.query(now, too_large),
        Err(QueryError::PayloadTooLarge { .. })
    ));
    assert!(sent(&mut node).is_empty());
    assert_eq!(node.stats().queries, QueryStats::default());
}

#[test]
fn the_origin_reports_each_member_once_and_ends_when_every_match_answered() {
    let now = epoch();
    let mut node = node_with_members(now);
    let role_db = Query::new("q", Vec::new()).tag(TagQuery::key_value("role", "db"));
    let id = node.query(now, role_db).expect("a valid query");
    let pushed = sent(&mut node)
        .iter()
        .filter(|(_, p)| matches!(p.message, Message::Query(_)))
        .count();
    assert_eq!(
        pushed, 2,
        "pushed to both members: the tree ignores the filter"
    );
    assert!(requests(&mut node).is_empty(), "this node is not a db");
    let answer = response_to_me(&node, id.seq, "peer", b"ok");
    node.handle_packet(now, addr(2), &answer);
    node.handle_packet(now, addr(3), &answer);
    let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    assert!(matches!(&events[..], [
        Event::QueryResponse { from, payload, .. },
        Event::QueryDone(QueryDone { expected: 1, responded: 1, timed_out: false, .. }),
    ] if *from == name("peer") && payload == b"ok"));
    assert_eq!(node.stats().queries.duplicates, 1, "the relayed copy");
    let other = response_to_me(&node, id.seq, "web", b"ok");
    node.handle_packet(now, addr(3), &other);
    assert_eq!(node.stats().queries.late, 1, "after the end: late");
}

#[test]
fn a_query_ends_at_its_timeout_and_this_node_answers_itself_if_it_matches() {
    let now = epoch();
    let mut node = node_with_members(now);
    let timeout = Duration::from_millis(500);
    let query = Query::new("q", Vec::new()).timeout(timeout).request_ack();
    let id = node.query(now, query).expect("a valid query");
    let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    let token = match &events[..] {
        [Event::QueryAck { from, .. }, Event::Query(request)] if *from == name("me") => {
            request.token
        }
        other => panic!("expected its own ack and request, got {other:?}"),
    };
    node.respond(now, token, b"self").expect("a fresh token");
    assert!(
        matches!(node.poll_event(), Some(Event::QueryResponse { from, .. }) if from == name("me"))
    );
    assert_eq!(
        node.poll_timeout(),
        Some(now + timeout).min(node.poll_timeout())
    );
    node.handle_timeout(now + timeout);
    let done = std::iter::from_fn(|| node.poll_event()).find_map(|event| match event {
        Event::QueryDone(done) => Some(done),
        _ => None,
    });
    assert_eq!(
        done,
        Some(QueryDone {
            id,
            expected: 3,
            acked: 1,
            responded: 1,
            timed_out: true,
        })
    );
}

#[test]
fn the_default_timeout_grows_with_log_n() {
    let now = epoch();
    let single = node(now);
    let interval = single.config().gossip_interval;
    assert_eq!(single.default_query_timeout(), interval * 16);
    let three = node_with_members(now);
    assert_eq!(three.default_query_timeout(), interval * 16);
    let mut many = node(now);
    let rows: Vec<Update> = (0..12)
        .map(|i| alive(&format!("n{i}"), 10 + i, 0))
        .collect();
    let refs: Vec<&Update> = rows.iter().collect();
    many.handle_packet(now, addr(10), &packet("n0", 0, Message::Gossip, &refs));
    assert_eq!(
        many.default_query_timeout(),
        interval * 32,
        "13 online: log10(14) → 2"
    );
}

#[test]
fn a_query_over_its_origins_rate_is_dropped_and_counted() {
    let now = epoch();
    let mut node = node_with_members(now);
    let burst = node.config().queries.origin_burst as u64;
    for seq in 1..=burst + 3 {
        push(&mut node, now, query_from("peer", seq, Vec::new()));
    }
    assert_eq!(node.stats().queries.rate_limited, 3);
    assert_eq!(node.stats().queries.received, burst);
}
