//! Nodes outside any pump, for the benchmarks: built, fed and drained by hand,
//! with time standing still, so that a replayed packet is measured alone.
//!
//! Node `i` is named [`name`]`(i)` at [`addr`]`(i)` with [`config`]`(i)`, as in a
//! pump; a bench refers to a sender by its index.

use std::net::SocketAddr;
use std::time::Instant;

use beethoven_core::chrono::{DateTime, Utc};
use beethoven_core::{Config, Node, Seed};

use crate::{addr, config, name};

/// Node `i` with the LAN defaults and its own seed, standalone.
pub fn node(i: usize, now: Instant, wall: DateTime<Utc>) -> Node {
    node_with(i, now, wall, config(i as u64))
}

/// Node `i` with `config`, standalone.
pub fn node_with(i: usize, now: Instant, wall: DateTime<Utc>, config: Config) -> Node {
    Node::new(config, name(i), addr(i), now, wall).expect("the pump's configs are valid")
}

/// Every queued datagram of `node` as (to, bytes), copied out; events are dropped.
pub fn sent(node: &mut Node) -> Vec<(SocketAddr, Vec<u8>)> {
    while node.poll_event().is_some() {}
    let mut out = Vec::new();
    while let Some(t) = node.poll_transmit() {
        out.push((t.to, t.payload.to_vec()));
    }
    out
}

/// Drops everything `node` wants to say.
pub fn discard(node: &mut Node) {
    while node.poll_event().is_some() {}
    while node.poll_transmit().is_some() {}
}

/// Handles `bytes` from node `from` at `node` and sends what it answers into
/// `out` (which keeps the last datagram), as a runtime would, without allocating.
/// Returns the number of datagrams sent.
pub fn handle_and_send(
    node: &mut Node,
    now: Instant,
    from: usize,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> usize {
    node.handle_packet(now, addr(from), bytes);
    while node.poll_event().is_some() {}
    let mut sent = 0;
    while let Some(t) = node.poll_transmit() {
        out.clear();
        out.extend_from_slice(t.payload);
        sent += 1;
    }
    sent
}

/// Node `i` tracking `rows` rows: itself and `rows - 1` others added with
/// `new_node`, its dissemination queue drained so that it is quiet.
pub fn big_node(i: usize, rows: usize, now: Instant, wall: DateTime<Utc>) -> Node {
    let mut node = node(i, now, wall);
    for k in (0..rows).filter(|&k| k != i).take(rows - 1) {
        node.new_node(now, name(k), addr(k))
            .expect("a fresh tracker has room for the bench's rows");
        discard(&mut node);
    }
    assert_eq!(node.tracker().len(), rows);
    quieten(&mut node, now, (i + 1) % rows);
    node
}

/// Sends (and drops) packets until `node` has no pending update left, using
/// `new_node` on `member`, which it holds online: each call queues one digest
/// packet, which carries pending updates.
pub fn quieten(node: &mut Node, now: Instant, member: usize) {
    let mut rounds = 0;
    while node.pending_updates() > 0 {
        node.new_node(now, name(member), addr(member))
            .expect("callers pass a member the node holds");
        discard(node);
        rounds += 1;
        assert!(rounds < 1_000_000, "dissemination queue never drained");
    }
}

/// What [`join_reply`] captured.
#[derive(Debug)]
pub struct JoinCapture {
    /// The joiner's Join request.
    pub join_packet: Vec<u8>,
    /// The seed's JoinReply chunks.
    pub chunks: Vec<Vec<u8>>,
}

/// The JoinReply chunks `seed` (node `seed_index`) sends to a fresh node
/// `joiner_index`, whose Join packet is captured first, at `now`.
pub fn join_reply(
    seed: &mut Node,
    seed_index: usize,
    joiner_index: usize,
    now: Instant,
    wall: DateTime<Utc>,
) -> JoinCapture {
    let mut joiner = node(joiner_index, now, wall);
    joiner
        .join(now, &[Seed::Addr(addr(seed_index))])
        .expect("a fresh node can start a join");
    let join = sent(&mut joiner);
    assert_eq!(join.len(), 1, "one seed, one join request");
    let join_packet = join.into_iter().next().expect("checked: one packet").1;
    seed.handle_packet(now, addr(joiner_index), &join_packet);
    let chunks: Vec<Vec<u8>> = sent(seed)
        .into_iter()
        .filter(|(to, _)| *to == addr(joiner_index))
        .map(|(_, bytes)| bytes)
        .collect();
    assert!(!chunks.is_empty(), "the seed answered the join");
    JoinCapture {
        join_packet,
        chunks,
    }
}

/// A fresh node `i` that has sent its Join to node `seed_index`, and so accepts
/// JoinReply chunks.
pub fn joining_node(i: usize, seed_index: usize, now: Instant, wall: DateTime<Utc>) -> Node {
    let mut joiner = node(i, now, wall);
    joiner
        .join(now, &[Seed::Addr(addr(seed_index))])
        .expect("a fresh node can start a join");
    discard(&mut joiner);
    joiner
}
