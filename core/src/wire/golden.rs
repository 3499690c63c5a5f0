//! Golden bytes: every message kind, row form and envelope, encoded and compared
//! with the hex checked in under `core/tests/golden/`, then decoded back from
//! it. A change of any wire byte fails here, so that it is made on purpose:
//! peers of the previous build must still understand the new bytes (see
//! ARCHITECTURE.md, "The wire version").
//!
//! After a deliberate change, run with `BEETHOVEN_BLESS_GOLDEN=1` to rewrite
//! the fixtures, and review the diff.

use std::path::PathBuf;

use chrono::DateTime;

use super::row::UncheckedRow;
use super::tombstone::Tombstone;
use super::*;
use crate::keyring::{Key, KeyRing};
use crate::tags::Tags;
use crate::tracker::{Health, TrackerRow};

const CLUSTER: ClusterId = ClusterId(0x0123_4567_89ab_cdef);
const LIMITS: TagLimits = TagLimits {
    max_size: 512,
    max_count: 64,
};

fn name(s: &str) -> NodeName {
    NodeName::new(s).expect("a valid test name")
}

fn row(node: &str, addr: &str, health: Health, tags: &[(&str, &str)]) -> WireRow {
    WireRow(
        TrackerRow::new(
            name(node),
            addr.parse().expect("a valid test address"),
            health,
            300,
            DateTime::from_timestamp_millis(1_700_000_000_123).expect("in range"),
        )
        .with_tags(Tags::from_pairs(tags.iter().copied()).expect("valid test tags")),
    )
}

fn db_row(node: &str, health: Health) -> WireRow {
    row(
        node,
        "10.1.2.3:7946",
        health,
        &[("role", "db"), ("zone", "b")],
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.bytes().filter(|b| !b.is_ascii_whitespace()))
        .collect();
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("fixtures are ASCII hex");
            u8::from_str_radix(pair, 16).expect("fixtures are hex digit pairs")
        })
        .collect()
}

/// Compares `bytes` with the fixture `name`, or rewrites it when blessing.
fn assert_golden(name: &str, what: &str, bytes: &[u8]) {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "golden", name]
        .iter()
        .collect::<PathBuf>()
        .with_extension("hex");
    if std::env::var_os("BEETHOVEN_BLESS_GOLDEN").is_some() {
        let text = format!("# {what}\n{}\n", hex(bytes));
        std::fs::write(&path, text).expect("the golden directory is writable");
        return;
    }
    let golden = std::fs::read_to_string(&path)
        .map(|text| unhex(&text))
        .unwrap_or_default();
    assert!(
        golden == bytes,
        "the wire encoding of {what} changed.\n  golden ({}): {}\n  now:    {}\n\
         If this is deliberate (and peers of the previous build still understand \
         it), rerun with BEETHOVEN_BLESS_GOLDEN=1 to rewrite the fixture.",
        path.display(),
        hex(&golden),
        hex(bytes),
    );
}

fn sender(me: &NodeName, sealed: bool) -> Sender<'_> {
    Sender {
        cluster: CLUSTER,
        name: me,
        incarnation: 5,
        sealed,
    }
}

/// A plaintext packet from "me" carrying `message` and `gossip`.
fn packet(message: &Message, gossip: &[&Update]) -> Vec<u8> {
    let me = name("me");
    let mut out = Vec::new();
    encode(sender(&me, false), message, gossip, &mut out, None);
    out
}

/// Encodes `message` alone, checks it against its fixture, and decodes the
/// fixture's bytes back to the same message.
fn assert_message(fixture: &str, message: Message) {
    let bytes = packet(&message, &[]);
    assert_golden(fixture, &format!("a plaintext packet: {message:?}"), &bytes);
    let decoded = decode(&bytes, CLUSTER, None, &mut Vec::new(), LIMITS).expect("decodes");
    assert_eq!(decoded.message, message);
    assert_eq!(decoded.sender, name("me"));
    assert_eq!(decoded.incarnation, 5);
}

macro_rules! golden_messages {
    ($($test:ident: $fixture:literal => $message:expr;)*) => {$(
        #[test]
        fn $test() {
            assert_message($fixture, $message);
        }
    )*};
}

golden_messages! {
    a_ping_keeps_its_bytes: "message_ping" => Message::Ping { seq: 1_000, target: name("you") };
    an_ack_keeps_its_bytes: "message_ack" => Message::Ack { seq: u32::MAX };
    a_ping_req_keeps_its_bytes: "message_ping_req" => Message::PingReq {
        seq: 77,
        target: name("far"),
        target_addr: "[2001:db8::1]:7946".parse().expect("valid"),
    };
    a_nack_keeps_its_bytes: "message_nack" => Message::Nack { seq: 78 };
    a_join_keeps_its_bytes: "message_join" => Message::Join { row: db_row("me", Health::Alive) };
    a_join_reply_keeps_its_bytes: "message_join_reply" => Message::JoinReply {
        rows: vec![db_row("a", Health::Alive), db_row("b", Health::Dead)],
    };
    a_sync_keeps_its_bytes: "message_sync" => Message::Sync {
        digest: WireDigest(std::array::from_fn(|i| (i as u64 * 0x0101_0101).to_le_bytes())),
        reply: true,
    };
    rows_keep_their_bytes: "message_rows" => Message::Rows {
        rows: vec![db_row("c", Health::Left), row("d", "[::1]:1", Health::Suspect, &[])],
    };
    a_gossip_keeps_its_bytes: "message_gossip" => Message::Gossip;
    a_bounced_keeps_its_bytes: "message_bounced" => Message::Bounced { seq: 79 };
    a_claim_keeps_its_bytes: "message_claim" => Message::Claim {
        addr: "10.0.0.2:7946".parse().expect("valid"),
        started: 1_700_000_000_000,
        nonce: 0xfeed_beef,
        echo: Some(7),
        confirmed: false,
    };
}

#[test]
fn every_row_form_keeps_its_bytes() {
    let forms = [
        ("row_alive_v4_tags", db_row("a", Health::Alive)),
        (
            "row_suspect_v6",
            row("b", "[fe80::2]:9", Health::Suspect, &[]),
        ),
        ("row_dead", db_row("c", Health::Dead)),
        ("row_left", db_row("d", Health::Left)),
    ];
    for (fixture, row) in forms {
        let bytes = postcard::to_allocvec(&row).expect("encodes");
        assert_golden(fixture, &format!("a row: {:?}", row.0), &bytes);
        let decoded: UncheckedRow = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(decoded.check(LIMITS).expect("valid tags"), row);
    }
}

#[test]
fn a_plaintext_envelope_with_piggybacked_updates_keeps_its_bytes() {
    let suspected = Update {
        row: db_row("s", Health::Suspect),
        suspecter: Some(name("me")),
    };
    let alive = Update {
        row: row("t", "10.9.9.9:1", Health::Alive, &[]),
        suspecter: None,
    };
    let message = Message::Ping {
        seq: 2,
        target: name("you"),
    };
    let bytes = packet(&message, &[&suspected, &alive]);
    assert_golden(
        "envelope_plain",
        "a plaintext ping with a suspicion and an alive row piggybacked",
        &bytes,
    );
    let decoded = decode(&bytes, CLUSTER, None, &mut Vec::new(), LIMITS).expect("decodes");
    assert_eq!(decoded.message, message);
    assert_eq!(decoded.gossip, vec![suspected, alive]);
}

#[test]
fn a_sealed_envelope_keeps_its_bytes() {
    let ring = KeyRing::new(Key::new([7; 32]));
    let mut sealer = Sealer::new(&ring, [9; 16]);
    let me = name("me");
    let update = Update {
        row: db_row("s", Health::Alive),
        suspecter: None,
    };
    let message = Message::Ack { seq: 3 };
    let mut bytes = Vec::new();
    encode(
        sender(&me, true),
        &message,
        &[&update],
        &mut bytes,
        Some(&mut sealer),
    );
    assert_golden(
        "envelope_sealed",
        "an ack with one row, sealed with key [7; 32] and nonce prefix [9; 16]",
        &bytes,
    );
    let decoded = decode(&bytes, CLUSTER, Some(&sealer), &mut Vec::new(), LIMITS).expect("opens");
    assert_eq!(decoded.message, message);
    assert_eq!(decoded.gossip, vec![update]);
}

fn user_event_key() -> EventKey {
    EventKey {
        origin: name("origin"),
        started: 1_700_000_000_000,
        seq: 42,
    }
}

golden_messages! {
    a_user_event_keeps_its_bytes: "message_user_event" => Message::Event(Box::new(WireEvent {
        key: user_event_key(),
        sent_at: 1_700_000_000_500,
        prev_sent_at: 1_700_000_000_400,
        lamport: 9,
        name: "deploy".into(),
        payload: b"v1.2".to_vec(),
        span: Some(u64::MAX / 3),
        age_ms: 250,
    }));
    a_user_event_pull_keeps_its_bytes: "message_user_event_pull" => Message::EventPull(user_event_key());
    a_user_event_ack_keeps_its_bytes: "message_user_event_ack" => Message::EventAck(user_event_key());
}

#[test]
fn an_envelope_with_a_user_events_announcement_keeps_its_bytes() {
    let me = name("me");
    let update = Update {
        row: row("t", "10.9.9.9:1", Health::Alive, &[]),
        suspecter: None,
    };
    let id = EventId {
        key: user_event_key(),
        sent_at: 1_700_000_000_500,
        age_ms: 250,
    };
    let mut bytes = Vec::new();
    encode_with_ids(
        sender(&me, false),
        &Message::Gossip,
        &[&update],
        std::slice::from_ref(&id),
        &mut bytes,
        None,
    );
    assert_golden(
        "envelope_user_event_id",
        "a gossip with an alive row and a user event's announcement piggybacked",
        &bytes,
    );
    let decoded = decode(&bytes, CLUSTER, None, &mut Vec::new(), LIMITS).expect("decodes");
    assert_eq!(decoded.gossip, vec![update]);
    assert_eq!(decoded.event_ids, vec![id]);
    assert_eq!(decoded.unknown_items, 0);
}

fn query_response() -> WireResponse {
    WireResponse {
        key: user_event_key(),
        responder: name("db-1"),
        payload: b"0.42".to_vec(),
    }
}

fn pruned() -> Tombstone {
    Tombstone {
        node: name("gone"),
        incarnation: 300,
        pruned_at: 1_700_000_000_123,
    }
}

golden_messages! {
    a_query_keeps_its_bytes: "message_query" => Message::Query(Box::new(WireQuery {
        key: user_event_key(),
        sent_at: 1_700_000_000_500,
        timeout_ms: 4_800,
        request_ack: true,
        name: "load".into(),
        payload: b"1m".to_vec(),
        nodes: vec![name("db-1")],
        tags: vec![("role".into(), Some("db".into())), ("zone".into(), None)],
        span: Some(u64::MAX / 3),
    }));
    a_query_ack_keeps_its_bytes: "message_query_ack" => Message::QueryAck(user_event_key(), name("db-1"));
    a_query_response_keeps_its_bytes: "message_query_response" => Message::QueryResponse(Box::new(query_response()));
    a_query_relay_keeps_its_bytes: "message_query_relay" => Message::QueryRelay(Box::new(query_response()));
    a_query_push_ack_keeps_its_bytes: "message_query_push_ack" => Message::QueryPushAck(user_event_key());
    tombstones_keep_their_bytes: "message_tombstones" => Message::Tombstones(vec![
        pruned(),
        Tombstone { node: name("also-gone"), incarnation: 0, pruned_at: -1 },
    ]);
    a_refusal_keeps_its_bytes: "message_refused" => Message::Refused(Refusal::OtherCluster);
}

#[test]
fn an_envelope_with_a_tombstone_keeps_its_bytes() {
    let me = name("me");
    let update = Update {
        row: row("t", "10.9.9.9:1", Health::Alive, &[]),
        suspecter: None,
    };
    let mut bytes = Vec::new();
    encode_items(
        sender(&me, false),
        &Message::Gossip,
        &[&update],
        &[],
        &[pruned()],
        &mut bytes,
        None,
    );
    assert_golden(
        "envelope_tombstone",
        "a gossip with an alive row and a tombstone piggybacked",
        &bytes,
    );
    let decoded = decode(&bytes, CLUSTER, None, &mut Vec::new(), LIMITS).expect("decodes");
    assert_eq!(decoded.gossip, vec![update]);
    assert_eq!(decoded.tombstones, vec![pruned()]);
    assert_eq!(decoded.unknown_items, 0);
}

#[test]
fn a_refusal_notice_keeps_its_bytes_and_echoes_the_refused_cluster_id() {
    let ring = KeyRing::new(Key::new([7; 32]));
    let mut sealer = Sealer::new(&ring, [9; 16]);
    let me = name("me");
    let mut join = Vec::new();
    encode(
        sender(&me, true),
        &Message::Join {
            row: db_row("me", Health::Alive),
        },
        &[],
        &mut join,
        Some(&mut sealer),
    );
    let mut notice = Vec::new();
    assert!(encode_notice(&join, Refusal::KeyMismatch, &mut notice));
    assert_golden(
        "notice_key_mismatch",
        "the refusal notice answering a sealed join: plaintext, the join's cluster id, sender \"-\"",
        &notice,
    );
    assert!(
        notice.len() < join.len(),
        "never larger than what it answers"
    );
    assert_eq!(decode_notice(&notice, CLUSTER), Some(Refusal::KeyMismatch));
    assert_eq!(
        decode_notice(&notice, ClusterId(1)),
        None,
        "another cluster's"
    );
    assert_eq!(
        decode_notice(&join, CLUSTER),
        None,
        "a sealed packet is no notice"
    );
    let plain = packet(&Message::Gossip, &[]);
    assert_eq!(
        decode_notice(&plain, CLUSTER),
        None,
        "nor is another message"
    );
    let mut short = Vec::new();
    assert!(
        !encode_notice(&join[..HEADER_LEN + 2], Refusal::KeyMismatch, &mut short),
        "a packet shorter than the notice is not answered"
    );
    assert!(short.is_empty());
    // A node without keys reads it as a plain `Refused` message.
    let decoded = decode(&notice, CLUSTER, None, &mut Vec::new(), LIMITS).expect("decodes");
    assert_eq!(decoded.message, Message::Refused(Refusal::KeyMismatch));
}
