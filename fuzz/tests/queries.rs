//! Queries under the fuzz harness: the `Query` and `Respond` actions of the
//! `node_ops` target. Refused queries and answers change nothing; a query
//! answered through loss, duplicates and replays ends once, with each answer
//! once (the harness's `Mirror` checks every ack, response and end); real
//! query datagrams cut short or with a byte flipped pass the `handle_packet`
//! target's checks; and seeded runs of arbitrary actions, a third of them
//! queries or answers, keep every invariant.
//!
//! ```sh
//! cargo test --manifest-path fuzz/Cargo.toml --test queries
//! ```

use arbitrary::{Arbitrary, Unstructured};
use beethoven_fuzz::{Action, Datagram, Setup, Sim, check_kinds_mangled, message_kind};

/// Message kinds of queries (`core/src/wire/query.rs`).
const QUERY: u64 = 14;
const QUERY_ACK: u64 = 15;
const QUERY_RESPONSE: u64 = 16;
const QUERY_RELAY: u64 = 17;
const QUERY_PUSH_ACK: u64 = 18;

/// A query for every member, asking for acks, with `timeout_ms`.
fn query(node: u8, name: &str, timeout_ms: Option<u32>) -> Action {
    Action::Query {
        node,
        name: name.to_string(),
        payload: b"load?".to_vec(),
        nodes: Vec::new(),
        tags: Vec::new(),
        timeout_ms,
        request_ack: true,
    }
}

/// An answer of `len` bytes to the first token `node` was handed.
fn respond(node: u8, len: u16) -> Action {
    Action::Respond {
        node,
        pick: 0,
        other: false,
        len,
    }
}

/// A formed plaintext cluster where node 0 queries everyone and each node
/// answers, node 1's direct answer lost (so its relayed copy is what
/// arrives): every datagram delivered.
fn query_traffic() -> (Sim, Vec<Datagram>) {
    let mut sim = Setup::Clustered.build();
    sim.capture = Some(Vec::new());
    sim.apply(&query(0, "load", Some(5_000)));
    sim.apply(&Action::Run { ms: 200 });
    for node in 0..3 {
        sim.apply(&respond(node, 100));
        if node == 1 {
            let direct = sim
                .in_flight
                .iter()
                .position(|d| message_kind(&d.bytes) == Some(QUERY_RESPONSE))
                .expect("node 1 answered its origin directly");
            sim.apply(&Action::Lose { pick: direct as u8 });
        }
    }
    sim.apply(&Action::Run { ms: 1_000 });
    let traffic = sim.capture.take().unwrap_or_default();
    (sim, traffic)
}

#[test]
fn a_query_whose_direct_answer_is_lost_still_ends_with_every_answer_once() {
    let (sim, _) = query_traffic();
    let origin = &sim.members[0];
    let (id, asked) = origin
        .mirror
        .queries
        .iter()
        .next()
        .expect("node 0 ran its query");
    assert!(asked.done, "every member answered, so {id:?} ended");
    let names: Vec<String> = asked.responded.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["n0", "n1", "n2"]);
    assert_eq!(asked.acked.len(), 3, "every member acked, the origin too");
    let node = origin.node.as_ref().expect("running");
    assert_eq!(
        node.stats().queries.responses_received,
        6,
        "3 answers, 3 acks, each once"
    );
}

#[test]
fn query_datagrams_cut_short_or_with_a_byte_flipped_pass_the_target_checks() {
    let (_, traffic) = query_traffic();
    check_kinds_mangled(
        &traffic,
        &[
            QUERY,
            QUERY_ACK,
            QUERY_RESPONSE,
            QUERY_RELAY,
            QUERY_PUSH_ACK,
        ],
    );
}

#[test]
fn a_query_answered_through_loss_duplicates_and_replays_ends_once() {
    let mut sim = Setup::Clustered.build();
    sim.apply(&query(0, "q", Some(3_000)));
    for round in 0..6u8 {
        sim.apply(&Action::Duplicate { pick: round });
        sim.apply(&Action::Replay {
            pick: round * 5,
            to: None,
        });
        sim.apply(&Action::Lose { pick: round * 3 });
        sim.apply(&Action::Deliver { pick: 1 });
        if round == 2 {
            for node in 0..3 {
                sim.apply(&respond(node, 10));
            }
        }
        sim.apply(&Action::Run { ms: 100 });
    }
    sim.apply(&Action::Run { ms: 5_000 });
    let asked = sim.members[0]
        .mirror
        .queries
        .values()
        .next()
        .expect("node 0 ran its query");
    assert!(asked.done, "it ended: answered, or at its timeout");
}

#[test]
fn refused_queries_and_answers_change_nothing() {
    let mut sim = Setup::Clustered.build();
    let bad_tag = |key: &str, offline| Action::Query {
        node: 0,
        name: "q".into(),
        payload: Vec::new(),
        nodes: vec![1],
        tags: vec![(key.to_string(), Some("db".to_string()), offline)],
        timeout_ms: None,
        request_ack: false,
    };
    for refused in [
        query(0, "", None),
        query(0, &"n".repeat(129), None),
        query(0, "q", Some(0)),
        query(0, "q", Some(300_001)),
        bad_tag("", false),
        bad_tag("role", true),
        Action::Query {
            node: 0,
            name: "big".into(),
            payload: vec![0; 1025],
            nodes: Vec::new(),
            tags: Vec::new(),
            timeout_ms: None,
            request_ack: false,
        },
    ] {
        sim.apply(&refused);
    }
    let stats = |sim: &Sim, i: usize| {
        let node = sim.members[i].node.as_ref().expect("running");
        node.stats().queries.clone()
    };
    assert_eq!(stats(&sim, 0).sent, 0, "every one refused");
    assert!(sim.members[0].mirror.queries.is_empty());
    // One good query, with a short timeout; no token yet: nothing to answer.
    sim.apply(&respond(1, 10));
    sim.apply(&query(0, "q", Some(500)));
    sim.apply(&Action::Run { ms: 100 });
    for node in 1..3 {
        assert_eq!(
            sim.members[node].mirror.tokens.len(),
            1,
            "node {node} got it"
        );
    }
    // Over the response size, then twice under one token.
    sim.apply(&respond(1, 1025));
    sim.apply(&respond(1, 10));
    sim.apply(&respond(1, 10));
    assert_eq!(stats(&sim, 1).responses_sent, 1, "one answer per token");
    // Past the timeout the token is refused.
    sim.apply(&Action::Run { ms: 1_000 });
    sim.apply(&respond(2, 10));
    assert_eq!(
        stats(&sim, 2).responses_sent,
        0,
        "an expired token is refused"
    );
    let asked = sim.members[0].mirror.queries.values().next().expect("ran");
    assert!(asked.done);
    assert_eq!(asked.responded.len(), 1, "node 1 alone answered in time");
}

/// A small deterministic generator of fuzz input bytes (xorshift64*).
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn seeded_runs_of_arbitrary_actions_with_queries_and_answers_keep_every_invariant() {
    let (mut queries, mut answers) = (0, 0);
    for seed in 0..40 {
        let data = bytes(seed, 8_192);
        let mut u = Unstructured::new(&data);
        let mut sim = Sim::formed(seed % 2 == 1);
        for step in 0..80 {
            // A third queries, a third answers, a third anything at all.
            let action = match step % 3 {
                0 => Action::Query {
                    node: u.arbitrary().unwrap_or(0),
                    name: ["q", "", "load"][usize::from(u.arbitrary::<u8>().unwrap_or(0) % 3)]
                        .to_string(),
                    payload: u.arbitrary().unwrap_or_default(),
                    nodes: u.arbitrary().unwrap_or_default(),
                    tags: u.arbitrary().unwrap_or_default(),
                    timeout_ms: u.arbitrary::<Option<u16>>().unwrap_or(None).map(u32::from),
                    request_ack: u.arbitrary().unwrap_or(false),
                },
                1 => Action::Respond {
                    node: u.arbitrary().unwrap_or(0),
                    pick: u.arbitrary().unwrap_or(0),
                    other: u.arbitrary().unwrap_or(false),
                    len: u.arbitrary().unwrap_or(0),
                },
                _ => Action::arbitrary(&mut u).unwrap_or(Action::Run { ms: 50 }),
            };
            sim.apply(&action);
        }
        sim.apply(&Action::Run { ms: 5_000 });
        for member in &sim.members {
            if let Some(node) = &member.node {
                queries += node.stats().queries.sent;
                answers += node.stats().queries.responses_sent;
            }
        }
    }
    eprintln!("queries sent {queries}, answers sent {answers}");
    assert!(queries > 20, "the runs sent queries ({queries})");
    assert!(answers > 20, "and answered them ({answers})");
}
