//! What the node's unit tests share: a node, hand-made packets and updates, and
//! a decoder of what the node sent. Each part's tests `use` this whole module.

pub(super) use std::net::SocketAddr;
pub(super) use std::time::{Duration, Instant};

pub(super) use chrono::{DateTime, Utc};

pub(super) use super::{KEEP_QUEUED, NewNodeError, Node, SetTagsError};
pub(super) use crate::config::Config;
pub(super) use crate::discovery::{JoinError, Seed};
pub(super) use crate::event::{Event, Mode, Op, TrackerEvent};
pub(super) use crate::name::NodeName;
pub(super) use crate::stats::DropReason;
pub(super) use crate::tags::{Tags, TagsError};
pub(super) use crate::tracker::{Health, NodeStatus, TrackerRow};
pub(super) use crate::wire::{Message, Packet, Sender, Update, WireDigest, WireRow, encode};

pub(super) fn epoch() -> Instant {
    #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
    Instant::now()
}

pub(super) fn wall() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_764_000_000_000).expect("in range")
}

pub(super) fn name(s: &str) -> NodeName {
    NodeName::new(s).expect("valid")
}

pub(super) fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub(super) fn node(now: Instant) -> Node {
    let config = Config::for_cluster("unit");
    let mut node = Node::new(config, name("me"), addr(1), now, wall()).expect("valid config");
    while node.poll_event().is_some() {}
    node
}

pub(super) fn packet(
    from: &str,
    incarnation: u64,
    message: Message,
    gossip: &[&Update],
) -> Vec<u8> {
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

/// A node that heard by gossip of "peer", alive at port 2.
pub(super) fn node_knowing_peer(now: Instant) -> Node {
    let mut node = node(now);
    let gossip = packet("peer", 0, Message::Gossip, &[&alive("peer", 2, 0)]);
    node.handle_packet(now, addr(2), &gossip);
    node
}

/// A node that heard from "other" that "peer" (port 2) refuted a suspicion: it
/// holds it alive at incarnation 2. What it sent is drained.
pub(super) fn node_knowing_peer_refuted(now: Instant) -> Node {
    let mut node = node(now);
    let current = alive("peer", 2, 2);
    node.handle_packet(
        now,
        addr(3),
        &packet("other", 0, Message::Gossip, &[&current]),
    );
    let _ = sent(&mut node);
    node
}

/// A join request from "joiner" (port 3).
pub(super) fn join_from_joiner() -> Vec<u8> {
    let row = alive("joiner", 3, 0).row;
    packet("joiner", 0, Message::Join { row }, &[])
}

/// A ping from "peer" for `target`, carrying `gossip`.
pub(super) fn ping_from_peer(seq: u32, target: &str, gossip: &[&Update]) -> Vec<u8> {
    let target = name(target);
    packet("peer", 0, Message::Ping { seq, target }, gossip)
}

pub(super) fn alive(who: &str, port: u16, incarnation: u64) -> Update {
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

/// `pairs` as tags.
pub(super) fn tags(pairs: &[(&str, &str)]) -> Tags {
    Tags::from_pairs(pairs.iter().copied()).expect("valid tags")
}

pub(super) fn suspect(who: &str, port: u16, incarnation: u64, by: &str) -> Update {
    let mut update = alive(who, port, incarnation);
    update.row.0 = update.row.0.with_health(Health::Suspect, wall());
    update.suspecter = Some(name(by));
    update
}

pub(super) fn dead(who: &str, port: u16, incarnation: u64) -> Update {
    let mut update = alive(who, port, incarnation);
    update.row.0 = update.row.0.with_health(Health::Dead, wall());
    update
}

pub(super) fn sent(node: &mut Node) -> Vec<(SocketAddr, Packet)> {
    let cluster = node.config().cluster_id;
    let mut out = Vec::new();
    while let Some(t) = node.poll_transmit() {
        let limits = Config::default().tag_limits();
        let packet = crate::wire::decode(t.payload, cluster, None, &mut Vec::new(), limits)
            .expect("own packets decode");
        out.push((t.to, packet));
    }
    out
}
