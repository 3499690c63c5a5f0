//! Datagrams a later build may send (a message or a piggybacked item of a kind
//! this build does not know, fields appended to known ones) and frames cut
//! short: each passes the `handle_packet` target's checks in every setup, and a
//! member of a formed cluster applies the rows beside the unknown parts.
//!
//! ```sh
//! cargo test --manifest-path fuzz/Cargo.toml
//! ```

use beethoven_core::{ClusterId, DropReason, HEADER_LEN, Health, MAGIC, VERSION};
use beethoven_fuzz::{CLUSTER, Datagram, Setup, Sim, addr, check_datagram, name};

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A length-prefixed byte string (names, tags, frames' fields).
fn bytes(value: &[u8], out: &mut Vec<u8>) {
    varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

fn frame(kind: u64, fields: &[u8], out: &mut Vec<u8>) {
    varint(kind, out);
    bytes(fields, out);
}

/// A plaintext datagram of the fuzz cluster from node `from`, with a message
/// frame and the item frames after it (counted).
fn datagram(from: u8, message: (u64, &[u8]), items: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&ClusterId::from_name(CLUSTER).0.to_le_bytes());
    assert_eq!(out.len(), HEADER_LEN);
    bytes(name(from).as_str().as_bytes(), &mut out);
    varint(0, &mut out);
    frame(message.0, message.1, &mut out);
    varint(items.len() as u64, &mut out);
    for (kind, fields) in items {
        frame(*kind, fields, &mut out);
    }
    out
}

/// An update item's fields: node `who` alive at incarnation 0 at its address,
/// no tags, no suspecter; `extra` appended to the row (a later version's field).
fn alive_update(who: u8, extra: &[u8]) -> Vec<u8> {
    let mut row = Vec::new();
    bytes(name(who).as_str().as_bytes(), &mut row);
    row.push(0); // IPv4
    let at = addr(who);
    match at.ip() {
        std::net::IpAddr::V4(ip) => row.extend_from_slice(&ip.octets()),
        std::net::IpAddr::V6(_) => unreachable!("the harness's addresses are IPv4"),
    }
    varint(u64::from(at.port()), &mut row);
    varint(0, &mut row); // incarnation
    row.push(0); // alive
    let millis: i64 = 1_700_000_000_000;
    varint(((millis << 1) ^ (millis >> 63)) as u64, &mut row); // zigzag
    bytes(&[], &mut row); // tags
    row.extend_from_slice(extra);
    let mut update = Vec::new();
    bytes(&row, &mut update);
    update.push(0); // no suspecter
    update
}

const GOSSIP: (u64, &[u8]) = (8, &[]);
const UPDATE: u64 = 0;
const TOMBSTONE: u64 = 4;
const TOMBSTONES: u64 = 21;

/// A tombstone item's fields: node `who` pruned at incarnation 0; `extra`
/// appended (a later version's field).
fn tombstone(who: u8, extra: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    bytes(name(who).as_str().as_bytes(), &mut out);
    varint(0, &mut out); // incarnation
    varint(2 * 1_700_000_000_000, &mut out); // pruned at, zigzag
    out.extend_from_slice(extra);
    out
}

/// A `Tombstones` message's fields: one tombstone of node `who`.
fn tombstones(who: u8) -> Vec<u8> {
    let mut out = Vec::new();
    varint(1, &mut out);
    out.extend_from_slice(&tombstone(who, &[]));
    out
}

fn later_version_datagrams() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "an unknown message kind with a row",
            datagram(
                2,
                (300, b"a later message"),
                &[(UPDATE, alive_update(5, &[]))],
            ),
        ),
        (
            "an unknown item kind beside a row",
            datagram(
                2,
                GOSSIP,
                &[
                    (77, b"an event id".to_vec()),
                    (UPDATE, alive_update(5, &[])),
                ],
            ),
        ),
        (
            "a row with a field appended",
            datagram(2, GOSSIP, &[(UPDATE, alive_update(5, &[1, 2, 3]))]),
        ),
    ]
}

/// Kinds added since the framing (tombstones of pruned members), the last one
/// with a field appended as a later version would.
fn added_kinds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "a tombstone of an unknown member beside a row",
            datagram(
                2,
                GOSSIP,
                &[
                    (TOMBSTONE, tombstone(9, &[])),
                    (UPDATE, alive_update(5, &[])),
                ],
            ),
        ),
        (
            "tombstones as a message",
            datagram(
                2,
                (TOMBSTONES, &tombstones(9)),
                &[(UPDATE, alive_update(5, &[]))],
            ),
        ),
        (
            "a tombstone with a field appended",
            datagram(2, GOSSIP, &[(TOMBSTONE, tombstone(9, &[1, 2]))]),
        ),
    ]
}

#[test]
fn a_later_versions_datagrams_pass_the_target_checks_in_every_setup() {
    let mut cut = datagram(2, GOSSIP, &[(UPDATE, alive_update(5, &[]))]);
    cut.truncate(cut.len() - 3);
    let mut inputs = later_version_datagrams();
    inputs.extend(added_kinds());
    inputs.push(("a frame cut short", cut));
    for (what, bytes) in inputs {
        for setup in [
            Setup::Fresh,
            Setup::Joining,
            Setup::Clustered,
            Setup::Sealed,
        ] {
            eprintln!("{what}, {setup:?}");
            let mut input = vec![setup.byte()];
            input.extend_from_slice(&bytes);
            check_datagram(&input);
        }
    }
}

#[test]
fn a_member_applies_the_rows_beside_a_later_versions_parts_and_counts_the_parts() {
    for (what, bytes) in later_version_datagrams() {
        let mut sim = Sim::formed(false);
        sim.deliver(Datagram {
            from: addr(2),
            to: addr(0),
            bytes,
        });
        let node = sim.members[0].node.as_ref().expect("running");
        assert_eq!(
            node.row(&name(5)).map(|row| row.health),
            Some(Health::Alive),
            "{what}: the row applied"
        );
        let skipped = node.stats().dropped(DropReason::UnknownMessage)
            + node.stats().dropped(DropReason::UnknownPiggyback);
        assert_eq!(
            node.stats().dropped_total(),
            skipped,
            "{what}: nothing else dropped"
        );
    }
}

/// A query's fields (kind 14) from origin `from`: query `seq`, sent at a
/// fixed time, `timeout_ms`, asking for acks, no filter, pushed with a span.
fn query_fields(from: u8, seq: u64, timeout_ms: u64) -> Vec<u8> {
    let zigzag = |millis: i64| ((millis << 1) ^ (millis >> 63)) as u64;
    let mut out = Vec::new();
    bytes(name(from).as_str().as_bytes(), &mut out);
    varint(zigzag(1_700_000_000_000), &mut out); // origin start
    varint(seq, &mut out);
    varint(zigzag(1_700_000_000_500), &mut out); // sent at
    varint(timeout_ms, &mut out);
    out.push(1); // request ack
    bytes(b"load", &mut out);
    bytes(b"1m", &mut out);
    varint(0, &mut out); // filter nodes
    varint(0, &mut out); // filter tags
    out.push(1); // a span
    varint(u64::MAX / 3, &mut out);
    out
}

/// Query messages (kinds 14 to 18) well formed, with a zero timeout, cut
/// short, or of garbage: each passes the target's checks in every setup.
#[test]
fn query_datagrams_whole_forged_or_cut_pass_the_target_checks_in_every_setup() {
    let whole = query_fields(2, 1, 1_000);
    let zero_timeout = query_fields(2, 2, 0);
    let cut = &whole[..whole.len() - 4];
    let mut inputs: Vec<(String, Vec<u8>)> = vec![
        ("a query".into(), datagram(2, (14, &whole), &[])),
        (
            "a zero timeout".into(),
            datagram(2, (14, &zero_timeout), &[]),
        ),
        ("a query cut short".into(), datagram(2, (14, cut), &[])),
    ];
    for kind in 14..=18u64 {
        inputs.push((
            format!("kind {kind} of garbage"),
            datagram(
                2,
                (kind, &[0xff, 0x01, 0x80]),
                &[(UPDATE, alive_update(5, &[]))],
            ),
        ));
    }
    for (what, bytes) in inputs {
        for setup in [
            Setup::Fresh,
            Setup::Joining,
            Setup::Clustered,
            Setup::Sealed,
        ] {
            eprintln!("{what}, {setup:?}");
            let mut input = vec![setup.byte()];
            input.extend_from_slice(&bytes);
            check_datagram(&input);
        }
    }
}
