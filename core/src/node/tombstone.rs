//! `force_leave`, and the tombstones a prune leaves: a member removed from
//! every table, not only this node's.
//!
//! A prune writes a tombstone (the member's name, the incarnation it was
//! pruned at, and when). The tombstone spreads like gossip (piggybacked,
//! pushed to a few members at once by each node that learns it), and every
//! node that learns it removes the member's row at that incarnation or below
//! (an `Op::Delete` event; a row still online there is first written `left`,
//! so its subscribers hear it go offline). For `prune_retention` after the
//! prune, rows at those incarnations are refused, so a late gossip or an
//! exchange with a node that missed the tombstone does not bring the row
//! back; such a node is answered with the tombstone itself (once per peer and
//! member within `suspicion_min`, as outdated news is). A member that really
//! comes back outbids it: a row at a higher incarnation is taken as usual and
//! ends the tombstone, and a restarted member that hears its own tombstone
//! refutes it with a higher incarnation.
//!
//! Memory is bounded: at most [`MAX_TOMBSTONES`] are held (the oldest prune
//! goes first), each for at most `prune_retention`, every node letting it go
//! at the same time (the retention runs from the pruning node's clock).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::Node;
use super::dissemination::retransmit_limit;
use super::membership::Source;
use crate::limiter::make_room;
use crate::name::NodeName;
use crate::tracker::{Health, NodeStatus};
use crate::wire::{self, Message, Packet, Tombstone};

/// Most tombstones a node holds. At the longest name a tombstone costs about
/// 300 bytes, so the bound is about 1.2 MB; pruning more members than this
/// within `prune_retention` lets the oldest prunes go early.
pub(crate) const MAX_TOMBSTONES: usize = 4096;

/// Most tombstones piggybacked on one packet: they are rare, and the rows
/// and announcements beside them keep their room.
const PER_PACKET: usize = 4;

/// Why `force_leave` refused. No state changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForceLeaveError {
    /// No member by that name is in the tracker.
    #[error("no member named `{0}`")]
    Unknown(NodeName),
    /// The name is this node's own: a node leaves with `leave`.
    #[error("a node cannot force itself out: it leaves with `leave`")]
    IsSelf,
    /// The member is online: it would refute being marked left, and a live
    /// member leaves with its own `leave`.
    #[error("`{0}` is online: only an offline member can be forced out")]
    Online(NodeName),
    /// This node lost its name and takes no more commands.
    #[error(transparent)]
    NameTaken(#[from] crate::NameTaken),
}

/// The tombstones this node holds, and those still to be piggybacked.
#[derive(Debug, Default)]
pub(super) struct Tombstones {
    /// By member: the incarnation pruned up to, and when (Unix ms).
    held: BTreeMap<NodeName, Held>,
    /// Still to be piggybacked, with how many times each went out.
    pending: Vec<(Tombstone, u32)>,
    /// The earliest `pruned_at` among `held` (when the first one expires).
    oldest: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    incarnation: u64,
    pruned_at: i64,
}

impl Tombstones {
    /// Whether a row of `node` at `incarnation` was pruned.
    pub(super) fn covers(&self, node: &NodeName, incarnation: u64) -> bool {
        self.held
            .get(node)
            .is_some_and(|held| incarnation <= held.incarnation)
    }

    /// How many are held.
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }

    /// Lets go of the tombstones pruned at or before `before` (Unix ms).
    fn expire(&mut self, before: i64) {
        if self.oldest.is_none_or(|oldest| oldest > before) {
            return;
        }
        self.held.retain(|_, held| held.pruned_at > before);
        self.pending
            .retain(|(tombstone, _)| tombstone.pruned_at > before);
        self.oldest = self.held.values().map(|held| held.pruned_at).min();
    }

    /// Holds `tombstone` (and queues it to spread), making room by letting go
    /// of the oldest prune when full.
    fn insert(&mut self, tombstone: Tombstone) {
        if let Some(oldest) = make_room(&mut self.held, &tombstone.node, MAX_TOMBSTONES, |held| {
            held.pruned_at
        }) {
            self.pending.retain(|(queued, _)| queued.node != oldest);
        }
        let held = Held {
            incarnation: tombstone.incarnation,
            pruned_at: tombstone.pruned_at,
        };
        self.held.insert(tombstone.node.clone(), held);
        self.oldest = Some(
            self.oldest
                .map_or(held.pruned_at, |o| o.min(held.pruned_at)),
        );
        self.pending
            .retain(|(queued, _)| queued.node != tombstone.node);
        self.pending.push((tombstone, 0));
    }

    /// Lets go of the tombstone of `node` (it came back, or room is needed).
    fn forget(&mut self, node: &NodeName) {
        if self.held.remove(node).is_some() {
            self.pending.retain(|(queued, _)| queued.node != *node);
            self.oldest = self.held.values().map(|held| held.pruned_at).min();
        }
    }

    /// The held tombstone of `node`, in its wire form.
    fn get(&self, node: &NodeName) -> Option<Tombstone> {
        self.held.get(node).map(|held| Tombstone {
            node: node.clone(),
            incarnation: held.incarnation,
            pruned_at: held.pruned_at,
        })
    }

    /// Whether any tombstone waits to be piggybacked.
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Tombstones for one packet with `budget` bytes free (newest first), each
    /// counted as sent once more; one sent `limit` times is not sent again.
    pub(super) fn take_for_packet(&mut self, mut budget: usize, limit: u32) -> Vec<Tombstone> {
        let mut picked = Vec::new();
        for (tombstone, sends) in self.pending.iter_mut().rev() {
            if picked.len() == PER_PACKET {
                break;
            }
            let size = wire::encoded_len(tombstone);
            if size <= budget {
                budget -= size;
                *sends += 1;
                picked.push(tombstone.clone());
            }
        }
        self.pending.retain(|(_, sends)| *sends < limit);
        picked
    }
}

impl Node {
    /// Marks an offline member `left` (serf's `force-leave`): a member declared
    /// dead that will not come back is then reported as gone on purpose, and
    /// the row spreads like gossip (at one incarnation `Left` outranks `Dead`,
    /// so every replica converges on it; if the member does come back it
    /// refutes with a higher incarnation). A member already left is kept as it
    /// is.
    ///
    /// With `prune`, the member is also removed from every node's tracker (an
    /// `Op::Delete` event on each), through a tombstone that spreads like
    /// gossip and is kept for `prune_retention`: meanwhile its rows at the
    /// pruned incarnation or below are refused everywhere, so neither late
    /// gossip nor an anti-entropy exchange brings it back. A restart of the
    /// member comes back at a higher incarnation and is let in again.
    ///
    /// Refused, with nothing changed, for an unknown name, this node's own, and
    /// an online member.
    pub fn force_leave(
        &mut self,
        now: Instant,
        name: &NodeName,
        prune: bool,
    ) -> Result<(), ForceLeaveError> {
        self.input(now, |node| node.mark_left(now, name, prune))?
    }

    fn mark_left(
        &mut self,
        now: Instant,
        name: &NodeName,
        prune: bool,
    ) -> Result<(), ForceLeaveError> {
        if *name == self.name {
            return Err(ForceLeaveError::IsSelf);
        }
        let row = self
            .tracker
            .get(name)
            .ok_or_else(|| ForceLeaveError::Unknown(name.clone()))?;
        if row.status == NodeStatus::Online {
            return Err(ForceLeaveError::Online(name.clone()));
        }
        let incarnation = row.incarnation;
        if row.health == Health::Dead {
            let left = row.with_health(Health::Left, self.wall_clock(now));
            let _ = self.apply_row(now, left, None, Source::Gossip);
        }
        if prune {
            let tombstone = Tombstone {
                node: name.clone(),
                incarnation,
                pruned_at: self.wall_clock(now).timestamp_millis(),
            };
            if self.apply_tombstone(now, tombstone) {
                self.gossip_to_random_members();
            }
        }
        Ok(())
    }

    /// Applies the tombstones a packet carries (before its rows, which they
    /// may cover); those new here are pushed on to a few members at once.
    pub(super) fn apply_tombstones(&mut self, now: Instant, tombstones: Vec<Tombstone>) {
        let mut news = false;
        for tombstone in tombstones {
            news |= self.apply_tombstone(now, tombstone);
        }
        if news {
            self.gossip_to_random_members();
        }
    }

    /// Applies one tombstone; returns whether it is news here (then it is
    /// held and queued to spread). One about this node itself is refuted.
    fn apply_tombstone(&mut self, now: Instant, tombstone: Tombstone) -> bool {
        if tombstone.node == self.name {
            if !self.left && tombstone.incarnation >= self.incarnation {
                // Pruned while alive (a restart under the name, or a prune
                // that raced a comeback): outbid it, as any news of a death.
                self.incarnation = tombstone.incarnation.saturating_add(1);
                self.stats.refutations += 1;
                debug!(
                    incarnation = self.incarnation,
                    "refuting a prune of this node"
                );
                self.write_own_row(now, Health::Alive);
                self.sync_soon(now);
            }
            return false;
        }
        let expired_before = self.expire_tombstones(now);
        if tombstone.pruned_at <= expired_before
            || self
                .tombstones
                .covers(&tombstone.node, tombstone.incarnation)
        {
            return false;
        }
        let row = self.tracker.get(&tombstone.node);
        if row.is_some_and(|row| row.incarnation > tombstone.incarnation) {
            // The member came back after the prune: the tombstone is over.
            return false;
        }
        if let Some(row) = row
            && row.status == NodeStatus::Online
        {
            // Subscribers hear it go offline before the row goes.
            let left = row.with_health(Health::Left, self.wall_clock(now));
            let _ = self.apply_row(now, left, None, Source::Bulk);
        }
        let name = tombstone.node.clone();
        self.tombstones.insert(tombstone);
        self.remove_row(now, &name);
        debug!(node = %name, "member pruned");
        true
    }

    /// Lets go of the tombstones older than `prune_retention`; returns the
    /// time (Unix ms) at or before which a prune is expired.
    fn expire_tombstones(&mut self, now: Instant) -> i64 {
        let wall = self.wall_clock(now).timestamp_millis();
        let retention = i64::try_from(self.config.prune_retention.as_millis()).unwrap_or(i64::MAX);
        let expired_before = wall.saturating_sub(retention);
        self.tombstones.expire(expired_before);
        expired_before
    }

    /// Called for a row about to be applied: whether a tombstone covers it
    /// (then it is refused). A row above the tombstone ends it.
    pub(super) fn is_pruned(&mut self, now: Instant, node: &NodeName, incarnation: u64) -> bool {
        if self.tombstones.len() == 0 {
            return false;
        }
        self.expire_tombstones(now);
        if self.tombstones.covers(node, incarnation) {
            return true;
        }
        self.tombstones.forget(node);
        false
    }

    /// The tombstones covering rows of `packet` that `from` may be told about
    /// now (once per peer and member within `suspicion_min`): it holds rows
    /// that were pruned, and sends them on.
    pub(super) fn tombstones_owed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: &Packet,
    ) -> Vec<Tombstone> {
        if self.tombstones.len() == 0 {
            return Vec::new();
        }
        self.expire_tombstones(now);
        let rows = match &packet.message {
            Message::Join { row } => std::slice::from_ref(row),
            Message::JoinReply { rows } | Message::Rows { rows } => rows.as_slice(),
            _ => &[],
        };
        let gossip = packet.gossip.iter().map(|update| &update.row);
        let mut owed: Vec<Tombstone> = Vec::new();
        for row in rows.iter().chain(gossip) {
            let row = &row.0;
            if !self.tombstones.covers(&row.node, row.incarnation)
                || owed.iter().any(|tombstone| tombstone.node == row.node)
            {
                continue;
            }
            let Some(tombstone) = self.tombstones.get(&row.node) else {
                continue;
            };
            let window = self.config.suspicion_min;
            if self
                .answers
                .allow(now, window, from, &row.node, tombstone.incarnation)
            {
                owed.push(tombstone);
            }
        }
        owed
    }

    /// Sends `tombstones` to `from` in as many messages as fit a datagram.
    pub(super) fn send_tombstones(&mut self, to: SocketAddr, tombstones: Vec<Tombstone>) {
        let budget = self.config.max_packet_size.saturating_sub(
            wire::base_len(self.sender(), &Message::Tombstones(Vec::new())) + wire::ROW_SLACK,
        );
        let mut chunk = Vec::new();
        let mut used = 0;
        for tombstone in tombstones {
            let size = wire::encoded_len(&tombstone);
            if used + size > budget && !chunk.is_empty() {
                self.send(to, Message::Tombstones(std::mem::take(&mut chunk)));
                used = 0;
            }
            used += size;
            chunk.push(tombstone);
        }
        if !chunk.is_empty() {
            self.send(to, Message::Tombstones(chunk));
        }
    }

    /// The tombstones to piggyback on a packet whose own part takes `base`
    /// bytes, counted as sent once more.
    pub(super) fn piggyback_tombstones(&mut self, base: usize) -> Vec<Tombstone> {
        if !self.tombstones.has_pending() {
            return Vec::new();
        }
        // Two bytes of slack for the item count's varint, as for updates.
        let budget = self.config.max_packet_size.saturating_sub(base + 2);
        let limit = retransmit_limit(self.config.retransmit_mult, self.tracker.online_count());
        self.tombstones.take_for_packet(budget, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::ForceLeaveError;
    use super::{MAX_TOMBSTONES, Tombstones};
    use crate::node::testing::*;
    use crate::wire::Tombstone;

    /// A packet from `from` carrying `message` and `tombstones` piggybacked.
    fn packet_with_tombstones(from: &str, message: Message, tombstones: &[Tombstone]) -> Vec<u8> {
        let sender = name(from);
        let mut out = Vec::new();
        crate::wire::encode_items(
            Sender {
                cluster: Config::for_cluster("unit").cluster_id,
                name: &sender,
                incarnation: 0,
                sealed: false,
            },
            &message,
            &[],
            &[],
            tombstones,
            &mut out,
            None,
        );
        out
    }

    #[test]
    fn force_leave_marks_a_dead_member_left_and_spreads_it() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        let news = packet("other", 0, Message::Gossip, &[&dead("peer", 2, 0)]);
        node.handle_packet(now, addr(3), &news);
        while node.poll_event().is_some() {}
        node.force_leave(now, &name("peer"), false)
            .expect("a dead member can be forced out");
        let row = node.tracker().get(&name("peer")).expect("still tracked");
        assert_eq!(row.health, Health::Left);
        assert_eq!(row.incarnation, 0);
        assert!(node.gossip.contains(&name("peer")), "the left row spreads");
    }

    #[test]
    fn force_leave_with_prune_removes_the_row_with_a_delete_event() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        let news = packet("other", 0, Message::Gossip, &[&dead("peer", 2, 0)]);
        node.handle_packet(now, addr(3), &news);
        while node.poll_event().is_some() {}
        node.force_leave(now, &name("peer"), true)
            .expect("a dead member can be pruned");
        assert!(node.tracker().get(&name("peer")).is_none());
        let mut deleted = false;
        while let Some(event) = node.poll_event() {
            if let Event::Tracker(TrackerEvent {
                op: Op::Delete,
                new_row,
                ..
            }) = event
            {
                deleted |= new_row.node == name("peer");
            }
        }
        assert!(deleted, "the removal is an Op::Delete event");
    }

    #[test]
    fn force_leave_refuses_an_unknown_an_online_member_and_itself_changing_nothing() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        while node.poll_event().is_some() {}
        assert_eq!(
            node.force_leave(now, &name("ghost"), false),
            Err(ForceLeaveError::Unknown(name("ghost")))
        );
        assert_eq!(
            node.force_leave(now, &name("peer"), true),
            Err(ForceLeaveError::Online(name("peer")))
        );
        assert_eq!(
            node.force_leave(now, &name("me"), false),
            Err(ForceLeaveError::IsSelf)
        );
        let row = node.tracker().get(&name("peer")).expect("still tracked");
        assert_eq!(row.health, Health::Alive);
        assert!(node.poll_event().is_none(), "nothing changed");
    }

    /// A node that knows "other" (port 3) alive and "peer" (port 2) dead at
    /// incarnation 1; events and datagrams drained.
    fn node_with_dead_peer(now: Instant) -> Node {
        let mut node = node(now);
        let news = packet(
            "other",
            0,
            Message::Gossip,
            &[&alive("other", 3, 0), &dead("peer", 2, 1)],
        );
        node.handle_packet(now, addr(3), &news);
        while node.poll_event().is_some() {}
        let _ = sent(&mut node);
        node
    }

    fn tombstone(node: &str, incarnation: u64, at: DateTime<Utc>) -> Tombstone {
        Tombstone {
            node: name(node),
            incarnation,
            pruned_at: at.timestamp_millis(),
        }
    }

    /// The tombstones `node` sent, piggybacked or as a message, by address.
    fn tombstones_sent(node: &mut Node) -> Vec<(SocketAddr, Tombstone)> {
        sent(node)
            .into_iter()
            .flat_map(|(to, packet)| {
                let direct = match packet.message {
                    Message::Tombstones(list) => list,
                    _ => Vec::new(),
                };
                direct
                    .into_iter()
                    .chain(packet.tombstones)
                    .map(move |t| (to, t))
            })
            .collect()
    }

    fn deleted(node: &mut Node) -> Vec<NodeName> {
        std::iter::from_fn(|| node.poll_event())
            .filter_map(|event| match event {
                Event::Tracker(TrackerEvent {
                    op: Op::Delete,
                    new_row,
                    ..
                }) => Some(new_row.node),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_prune_sends_its_tombstone_to_the_members_at_once() {
        let now = epoch();
        let mut node = node_with_dead_peer(now);
        node.force_leave(now, &name("peer"), true).expect("dead");
        assert_eq!(deleted(&mut node), [name("peer")]);
        let out = tombstones_sent(&mut node);
        assert!(
            out.iter()
                .any(|(to, t)| *to == addr(3) && t.node == name("peer") && t.incarnation == 1),
            "{out:?}"
        );
    }

    #[test]
    fn a_tombstone_heard_removes_the_row_with_a_delete_and_is_passed_on() {
        let now = epoch();
        let mut node = node_with_dead_peer(now);
        let gone = tombstone("peer", 1, wall());
        let bytes = packet_with_tombstones("other", Message::Gossip, std::slice::from_ref(&gone));
        node.handle_packet(now, addr(3), &bytes);
        assert!(node.row(&name("peer")).is_none());
        assert_eq!(deleted(&mut node), [name("peer")]);
        assert!(
            tombstones_sent(&mut node).iter().any(|(_, t)| *t == gone),
            "passed on"
        );
        // Heard again: nothing more to do.
        node.handle_packet(now, addr(3), &bytes);
        assert!(node.poll_event().is_none());
        assert!(tombstones_sent(&mut node).is_empty());
    }

    #[test]
    fn a_tombstone_of_a_row_still_online_here_writes_it_left_before_removing_it() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        while node.poll_event().is_some() {}
        let bytes =
            packet_with_tombstones("other", Message::Gossip, &[tombstone("peer", 0, wall())]);
        node.handle_packet(now, addr(3), &bytes);
        let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
        assert!(events.contains(&Event::NodeUpdate {
            node: name("peer"),
            status: NodeStatus::Offline
        }));
        assert!(matches!(
            events.iter().rev().find(|e| matches!(e, Event::Tracker(_))),
            Some(Event::Tracker(TrackerEvent { op: Op::Delete, .. }))
        ));
        assert!(node.row(&name("peer")).is_none());
    }

    #[test]
    fn a_pruned_row_heard_again_is_refused_and_its_sender_told_once_per_window() {
        let now = epoch();
        let mut node = node_with_dead_peer(now);
        node.force_leave(now, &name("peer"), true).expect("dead");
        let _ = sent(&mut node);
        while node.poll_event().is_some() {}
        // "late" missed the prune and still gossips the dead row, then sends it
        // in an exchange.
        let stale = packet("late", 0, Message::Gossip, &[&dead("peer", 2, 1)]);
        node.handle_packet(now, addr(4), &stale);
        assert!(node.row(&name("peer")).is_none(), "not brought back");
        assert!(node.poll_event().is_none());
        let answers = |node: &mut Node| {
            sent(node)
                .into_iter()
                .filter(|(to, p)| *to == addr(4) && matches!(p.message, Message::Tombstones(_)))
                .count()
        };
        assert_eq!(answers(&mut node), 1, "told at once");
        let rows = vec![dead("peer", 2, 1).row];
        node.handle_packet(
            now,
            addr(4),
            &packet("late", 0, Message::Rows { rows }, &[]),
        );
        assert!(node.row(&name("peer")).is_none(), "not brought back");
        assert_eq!(answers(&mut node), 0, "told once within the window");
    }

    #[test]
    fn a_member_back_at_a_higher_incarnation_ends_its_tombstone() {
        let now = epoch();
        let mut node = node_with_dead_peer(now);
        node.force_leave(now, &name("peer"), true).expect("dead");
        while node.poll_event().is_some() {}
        let back = packet("peer", 2, Message::Gossip, &[&alive("peer", 2, 2)]);
        node.handle_packet(now, addr(2), &back);
        let row = node.row(&name("peer")).expect("let in again");
        assert_eq!((row.health, row.incarnation), (Health::Alive, 2));
        assert_eq!(node.tombstones.len(), 0, "the tombstone is over");
    }

    #[test]
    fn a_restarted_member_hearing_its_own_tombstone_outbids_it() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        let bytes = packet_with_tombstones("peer", Message::Gossip, &[tombstone("me", 3, wall())]);
        node.handle_packet(now, addr(2), &bytes);
        assert_eq!(node.incarnation(), 4);
        assert_eq!(node.tombstones.len(), 0, "not held about itself");
        assert!(node.gossip.contains(&name("me")), "the new row spreads");
    }

    #[test]
    fn a_tombstone_is_let_go_after_the_retention_and_an_expired_one_is_ignored() {
        let now = epoch();
        let mut node = node_with_dead_peer(now);
        node.force_leave(now, &name("peer"), true).expect("dead");
        let retention = node.config().prune_retention;
        let later = now + retention + Duration::from_secs(1);
        let stale = packet("late", 0, Message::Gossip, &[&dead("peer", 2, 1)]);
        node.handle_packet(later, addr(4), &stale);
        assert_eq!(node.tombstones.len(), 0);
        let row = node
            .row(&name("peer"))
            .expect("after the retention a row is taken again");
        assert_eq!(row.health, Health::Dead);
        // A tombstone pruned longer ago than the retention is not taken.
        let old = tombstone("peer", 1, wall());
        let bytes = packet_with_tombstones("late", Message::Gossip, &[old]);
        node.handle_packet(later, addr(4), &bytes);
        assert!(node.row(&name("peer")).is_some());
    }

    #[test]
    fn at_most_max_tombstones_are_held_the_oldest_prune_going_first() {
        let mut tombstones = Tombstones::default();
        for i in 0..MAX_TOMBSTONES + 10 {
            tombstones.insert(Tombstone {
                node: name(&format!("n{i}")),
                incarnation: 0,
                pruned_at: i as i64,
            });
        }
        assert_eq!(tombstones.len(), MAX_TOMBSTONES);
        assert!(!tombstones.covers(&name("n0"), 0), "the oldest went first");
        assert!(tombstones.covers(&name(&format!("n{}", MAX_TOMBSTONES + 9)), 0));
        assert!(tombstones.pending.len() <= MAX_TOMBSTONES);
    }

    #[test]
    fn a_tombstone_goes_out_on_a_bounded_number_of_packets() {
        let mut tombstones = Tombstones::default();
        tombstones.insert(Tombstone {
            node: name("gone"),
            incarnation: 0,
            pruned_at: 0,
        });
        let sends = (0..10)
            .filter(|_| !tombstones.take_for_packet(1000, 3).is_empty())
            .count();
        assert_eq!(sends, 3);
        assert!(!tombstones.has_pending());
        assert!(tombstones.covers(&name("gone"), 0), "still held");
    }
}
