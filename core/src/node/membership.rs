//! Membership: applying rows heard from peers, loaded by `restore` or decided
//! here. Precedence decides what is kept, news about this node itself is refuted
//! (a row at another address also asks whether a rival lives there:
//! `conflict.rs`), and every change becomes events, member lists and the mode.
//! Also `new_node`, which vouches for a node the owner discovered.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, warn};

use super::Node;
use crate::event::{Event, Mode, Op, TrackerEvent};
use crate::name::NodeName;
use crate::stats::DropReason;
use crate::tags::{Tags, TagsError};
use crate::tracker::{Health, NodeStatus, RowChange, TrackerRow};
use crate::wire::{Message, WireRow};

/// Why `new_node` refused. No state changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NewNodeError {
    /// The name is this node's own.
    #[error("a node cannot add itself")]
    IsSelf,
    /// The tracker already holds `max_nodes` rows.
    #[error("the tracker is full (max_nodes)")]
    TrackerFull,
    /// This node lost its name and takes no more commands.
    #[error(transparent)]
    NameTaken(#[from] crate::NameTaken),
}

/// Why `set_tags` refused. No state changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetTagsError {
    /// The tags break a limit; the error names it.
    #[error(transparent)]
    Invalid(#[from] TagsError),
    /// This node lost its name and takes no more commands.
    #[error(transparent)]
    NameTaken(#[from] crate::NameTaken),
}

/// Outdated bad news, as `apply_row` found it: `node` is online here at the
/// newer `incarnation`, and the current row is queued for the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Outdated {
    pub(super) node: NodeName,
    pub(super) incarnation: u64,
}

/// Where a row came from; decides whether it is passed on by gossip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// Decided here or heard by gossip: spread it.
    Gossip,
    /// Part of a bulk transfer (join reply, anti-entropy, a restored table): the
    /// sender's peers mostly hold it already, so it is spread only when it flips a
    /// node's status.
    Bulk,
    /// A bulk transfer to a node that already had a cluster: a row introducing a
    /// node is news for this side too (two clusters meeting, a partition healed
    /// past the retention), so it is spread like gossip.
    Merge,
}

impl Node {
    /// See [`Node::new_node`].
    pub(super) fn add_node(
        &mut self,
        now: Instant,
        name: NodeName,
        addr: SocketAddr,
    ) -> Result<(), NewNodeError> {
        if name == self.name {
            return Err(NewNodeError::IsSelf);
        }
        let incarnation = match self.tracker.get(&name) {
            None if self.tracker.len() >= self.config.max_nodes => {
                return Err(NewNodeError::TrackerFull);
            }
            None => 0,
            Some(row) if row.status == NodeStatus::Online => {
                self.send_sync(row.addr, false);
                return Ok(());
            }
            Some(row) => row.incarnation.saturating_add(1),
        };
        let row = TrackerRow::new(name, addr, Health::Alive, incarnation, self.wall_clock(now));
        let _ = self.apply_row(now, row, None, Source::Gossip);
        self.send_sync(addr, false);
        Ok(())
    }

    /// See [`Node::set_tags`].
    pub(super) fn change_tags(&mut self, now: Instant, tags: Tags) -> Result<(), SetTagsError> {
        if tags == self.tags {
            return Ok(());
        }
        self.config.check_tags(&self.name, self.addr, &tags)?;
        self.tags = tags;
        if self.left {
            return Ok(());
        }
        self.incarnation = self.incarnation.saturating_add(1);
        self.write_own_row(now, Health::Alive);
        // Tell a few members right away rather than at the next gossip tick:
        // services wait on the change.
        self.gossip_to_random_members();
        Ok(())
    }

    /// Applies the rows of a bulk transfer (join reply, anti-entropy). Returns
    /// whether one of them was outdated bad news about this node itself (the
    /// sender missed its refutation and is owed its current row).
    pub(super) fn apply_bulk(&mut self, now: Instant, rows: Vec<WireRow>, source: Source) -> bool {
        let mut outdated_about_self = false;
        for row in rows {
            let outdated = self.apply_row(now, row.0, None, source);
            outdated_about_self |= outdated.is_some_and(|outdated| outdated.node == self.name);
        }
        outdated_about_self
    }

    /// Whether an online row was last changed longer ago than an anti-entropy
    /// interval: its node has been around for a while.
    fn is_long_known(&self, now: Instant, row: &TrackerRow) -> bool {
        row.status == NodeStatus::Online
            && (self.wall_clock(now) - row.last_change)
                .to_std()
                .is_ok_and(|age| age > self.config.anti_entropy_interval)
    }

    /// Applies a row heard from a peer or decided here. `suspecter` names who raised
    /// a suspicion (for Lifeguard's independent confirmations).
    ///
    /// Returns the row as outdated bad news if it was: it says a node is suspect,
    /// dead or gone at an older incarnation than the one held here, where that
    /// node is online. Whoever sent it missed the newer row (it was paused, or
    /// declared dead itself while the news spread) and may be about to take a
    /// live node offline; the current row is queued again for the caller to send
    /// (within the limit of `answers`).
    pub(super) fn apply_row(
        &mut self,
        now: Instant,
        row: TrackerRow,
        suspecter: Option<NodeName>,
        source: Source,
    ) -> Option<Outdated> {
        if row.node == self.name {
            return self.apply_row_about_self(now, row, suspecter.as_ref());
        }
        if self.is_expired(now, &row) || self.is_pruned(now, &row.node, row.incarnation) {
            return None;
        }
        // One lookup serves the checks and the merge: this is the hot path of
        // every piggybacked row.
        let known_id = self.tracker.id_of(&row.node);
        let known = known_id.and_then(|id| self.tracker.by_id(id));
        if known.is_none() && self.tracker.len() >= self.config.max_nodes {
            self.stats.count_drop(DropReason::TrackerFull);
            debug!(node = %row.node, "tracker full: update about an unknown node dropped");
            return None;
        }
        if let Some(known) = known
            && row.health != Health::Alive
            && row.incarnation < known.incarnation
            && known.status == NodeStatus::Online
        {
            let outdated = Outdated {
                node: known.node.clone(),
                incarnation: known.incarnation,
            };
            if !self.gossip.contains(&known.node) {
                let current = known.clone();
                self.push_gossip(now, current, None);
            }
            return Some(outdated);
        }
        // A death learned in bulk (an exchange, a join reply, a restored table) at
        // the very incarnation held online here is checked before it takes the
        // node offline: after a partition heals, each side's tables hold the other
        // dead at the incarnations the other side holds alive, and copying them
        // would take nodes that stayed reachable offline until they refuted. It
        // becomes a suspicion of this node's own instead: the suspect is pinged
        // with it (and refutes if alive), and is declared dead here only if no
        // answer comes. Deaths heard as gossip are fresh and apply as they are.
        let mut ask_suspect = false;
        let row = match known {
            Some(known)
                if source != Source::Gossip
                    && row.health == Health::Dead
                    && row.incarnation == known.incarnation
                    && known.status == NodeStatus::Online =>
            {
                if known.health == Health::Suspect {
                    return None;
                }
                ask_suspect = true;
                known.with_health(Health::Suspect, self.wall_clock(now))
            }
            _ => row,
        };
        // A suspicion of the incarnation already suspected is a confirmation.
        if let (Some(known), Some(from)) = (known, &suspecter)
            && row.health == Health::Suspect
            && known.health == Health::Suspect
            && known.incarnation == row.incarnation
        {
            self.confirm_suspicion(now, &row, from);
        }
        // Nothing changed: nothing to record, and no outdated news either.
        let change = self.tracker.merge_known(known_id, row)?;
        if ask_suspect {
            // Asked now, not at the suspicion's last chance: the suspect is sent
            // its suspected row and answers with its current one (it may have
            // refuted already, and the gossip of that missed this node), or
            // refutes (see `handle_rows`).
            let suspected = WireRow(change.new.clone());
            self.send_rows_now(change.new.addr, vec![suspected]);
        }
        let status_flipped = change
            .old
            .as_ref()
            .is_some_and(|old| old.status != change.new.status);
        let suspecter = (change.new.health == Health::Suspect)
            .then_some(suspecter)
            .flatten();
        // A pending update about this node is now outdated: replace it with the
        // new row rather than keep spreading the old one.
        let introduced = source == Source::Merge
            && change.old.is_none()
            && change.new.status == NodeStatus::Online;
        if source == Source::Gossip
            || status_flipped
            || introduced
            || self.gossip.contains(&change.new.node)
        {
            self.push_gossip(now, change.new.clone(), suspecter.clone());
        }
        if source != Source::Bulk && change.old.is_none() && self.is_long_known(now, &change.new) {
            // A node met for the first time whose row is old is no joiner: this
            // side was cut off from it (two clusters meeting, a side forgotten past
            // the retention). Gossip may miss a few of the many such rows; an
            // exchange soon picks up the rest.
            self.sync_soon(now);
        }
        self.track_suspicion(now, &change.new, suspecter);
        // A death refuted soon after its accusation shows a member slow to
        // hear, to every node at once (see `lateness`).
        let old_health = change.old.as_ref().map(|old| old.health);
        match change.new.health {
            Health::Suspect if old_health != Some(Health::Suspect) => {
                self.lateness.accused(now, &change.new.node);
            }
            Health::Alive => {
                let was_dead = old_health == Some(Health::Dead);
                self.lateness.acquitted(now, &change.new.node, was_dead);
            }
            _ => {}
        }
        self.note_move(now, &change);
        self.record(change);
        None
    }

    /// News about this node itself: refute anything that says it is not alive at its
    /// current incarnation and address; otherwise merge (converging on a tie).
    /// The refutation also goes straight to whoever raised a suspicion: that
    /// node's timer runs first, and gossip alone may happen to miss it.
    ///
    /// Bad news at an older incarnation is returned as [`Outdated`]: its sender
    /// missed the refutation and is answered with the current row.
    fn apply_row_about_self(
        &mut self,
        now: Instant,
        row: TrackerRow,
        suspecter: Option<&NodeName>,
    ) -> Option<Outdated> {
        if self.left {
            return None;
        }
        let current = row.incarnation == self.incarnation
            && row.health == Health::Alive
            && row.addr == self.addr
            && row.tags == self.tags;
        if current {
            if let Some(change) = self.tracker.merge(row) {
                self.record(change);
            }
            return None;
        }
        self.warn_if_declared_dead(&row);
        if row.incarnation < self.incarnation {
            // A peer holds an outdated view of this node, likely because the
            // refutation's gossip missed it: announce the current row again, and
            // answer the sender if the news was bad.
            if !self.gossip.contains(&self.name)
                && let Some(own) = self.tracker.get(&self.name).cloned()
            {
                self.push_gossip(now, own, None);
            }
            return (row.health != Health::Alive).then(|| Outdated {
                node: self.name.clone(),
                incarnation: self.incarnation,
            });
        }
        // Someone holds a view of this node at or above its incarnation that is
        // wrong (suspect, dead, left, another address or other tags): outbid it. A row at
        // another address may be a live process under this name: ask it
        // (`conflict.rs`); until it answers, it is a predecessor's row.
        if row.addr != self.addr {
            self.suspect_rival(now, row.addr);
        }
        if row.health == Health::Suspect {
            self.probing
                .local_health
                .worsen(self.config.max_local_health);
        }
        // Rows from the wire are at most MAX_INCARNATION, so this cannot saturate
        // in practice; saturating keeps a bug from wrapping to 0.
        self.incarnation = row.incarnation.saturating_add(1);
        self.stats.refutations += 1;

        debug!(
            incarnation = self.incarnation,
            refuted = ?row.health,
            "refuting news about self"
        );
        self.write_own_row(now, Health::Alive);
        if row.status == NodeStatus::Offline {
            // Peers that held this node dead or gone stopped sending to it: it has
            // missed news, so it compares tables soon instead of at the next
            // periodic exchange.
            self.sync_soon(now);
        }
        if let Some(accuser) = suspecter.and_then(|name| self.tracker.get(name)) {
            let to = accuser.addr;
            self.send(to, Message::Gossip);
        }
        None
    }

    /// A node that was paused (or starved) past the suspicion timeout hears
    /// on resuming that it was declared dead, at its latest incarnation or the
    /// one just before (it may have refuted a suspicion first). That is logged
    /// once per death, as a warning: the operator sees why it was offline. A
    /// restart hearing of its previous life's death has seen no stall: quiet.
    fn warn_if_declared_dead(&mut self, row: &TrackerRow) {
        let recent = row.incarnation.saturating_add(1) >= self.incarnation;
        let new = self.death_warned.is_none_or(|at| row.incarnation > at);
        if row.health == Health::Dead && recent && new && self.stats.stalls > 0 {
            self.death_warned = Some(row.incarnation);
            warn!(
                incarnation = row.incarnation,
                "this node was declared dead by the cluster while it was paused or starved (longer than the suspicion timeout); refuting and coming back"
            );
        }
    }

    /// Writes and spreads this node's own row at its current incarnation.
    pub(super) fn write_own_row(&mut self, now: Instant, health: Health) {
        let own = self.own_row(now, health);
        if let Some(change) = self.tracker.merge(own.clone()) {
            self.push_gossip(now, own, None);
            self.record(change);
        }
    }

    /// Events, member lists and mode after a tracker change.
    pub(super) fn record(&mut self, change: RowChange) {
        let RowChange { id, old, new } = change;
        let node = new.node.clone();
        let old_status = old.as_ref().map(|row| row.status);
        if node != self.name {
            match new.status {
                NodeStatus::Online => {
                    self.members.insert(id, &mut self.rng);
                    self.probing.slots.insert(&node, id);
                    if self.dead.contains(id) {
                        self.dead.remove(id);
                        self.revived(new.addr);
                        self.tell_revived(new.addr);
                    }
                }
                NodeStatus::Offline => {
                    self.members.remove(id);
                    self.probing.slots.remove(&node, id);
                    if new.health == Health::Dead {
                        self.dead.insert(id, &mut self.rng);
                    } else {
                        self.dead.remove(id);
                    }
                }
            }
        }
        let status = new.status;
        self.events.push_back(Event::Tracker(TrackerEvent {
            op: Op::Write,
            new_row: new,
            old_row: old,
        }));
        // A first sighting counts as a transition only when the node is online:
        // hearing of a node that is already gone tells a subscriber nothing.
        let transition = match old_status {
            Some(before) => before != status,
            None => status == NodeStatus::Online,
        };
        if node != self.name && transition {
            self.events.push_back(Event::NodeUpdate { node, status });
        }
        self.refresh_mode();
    }

    pub(super) fn refresh_mode(&mut self) {
        let mode = if !self.left && self.members.len() > 0 {
            Mode::Clustered
        } else {
            Mode::Standalone
        };
        if mode != self.mode {
            self.mode = mode;
            self.events.push_back(Event::ModeChanged(mode));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::node::testing::*;

    #[test]
    fn a_suspicion_from_an_outdated_row_is_answered_with_the_current_one() {
        let now = epoch();
        // This node knows "peer" refuted a suspicion: alive at incarnation 2.
        let mut node = node_knowing_peer_refuted(now);
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
            matches!(&answer.message, Message::Rows { rows }
                if rows.iter().any(|r| r.0.node == name("peer") && r.0.incarnation == 2)),
            "with the current row itself: {answer:?}"
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
    fn outdated_bad_news_about_self_is_answered_with_the_current_row() {
        let now = epoch();
        let mut node = node(now);
        // Refutes a suspicion: alive at incarnation 1.
        let peer = alive("peer", 2, 0);
        let suspicion = suspect("me", 1, 0, "peer");
        node.handle_packet(
            now,
            addr(2),
            &packet("peer", 0, Message::Gossip, &[&peer, &suspicion]),
        );
        assert_eq!(node.incarnation(), 1);
        let _ = sent(&mut node);
        let answered_with_own_row = |out: &[(SocketAddr, Packet)], to: SocketAddr| {
            out.iter().any(|(at, packet)| {
                *at == to
                    && matches!(&packet.message, Message::Rows { rows }
                        if rows.iter().any(|r| r.0.node == name("me") && r.0.incarnation == 1))
            })
        };
        // "late" missed the refutation: its gossip is answered with the row.
        let late = suspect("me", 1, 0, "late");
        node.handle_packet(now, addr(4), &packet("late", 0, Message::Gossip, &[&late]));
        assert!(answered_with_own_row(&sent(&mut node), addr(4)));
        // So are rows sent in bulk by a node that holds this one dead or suspect.
        let rows = vec![dead("me", 1, 0).row];
        node.handle_packet(now, addr(5), &packet("far", 0, Message::Rows { rows }, &[]));
        assert!(answered_with_own_row(&sent(&mut node), addr(5)));
        assert_eq!(node.incarnation(), 1, "no new refutation");
        // Outdated good news needs no answer.
        let rows = vec![alive("me", 1, 0).row];
        node.handle_packet(now, addr(6), &packet("far", 0, Message::Rows { rows }, &[]));
        assert!(!answered_with_own_row(&sent(&mut node), addr(6)));
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
            !std::iter::from_fn(|| node.poll_event())
                .any(|e| matches!(e, Event::NodeUpdate { .. })),
            "never a notification about self"
        );
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
    fn a_tag_change_raises_the_incarnation_and_is_a_write_with_the_old_row() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        while node.poll_event().is_some() {}
        let _ = sent(&mut node);
        let db = tags(&[("role", "db")]);
        node.set_tags(now, db.clone()).expect("within the limits");
        assert_eq!(node.incarnation(), 1);
        assert_eq!(node.tags(), &db);
        let own = node.row(&name("me")).expect("self").clone();
        assert_eq!((own.incarnation, &own.tags), (1, &db));
        match node.poll_event() {
            Some(Event::Tracker(TrackerEvent {
                op: Op::Write,
                new_row,
                old_row: Some(old),
            })) => {
                assert_eq!(new_row, own);
                assert!(old.tags.is_empty());
                assert_eq!(old.incarnation, 0);
            }
            other => panic!("expected a write with the old row, got {other:?}"),
        }
        assert!(
            node.poll_event().is_none(),
            "no node update for a tag change"
        );
        // The change is gossiped; setting the same tags again changes nothing.
        assert!(node.gossip.contains(&name("me")));
        node.set_tags(now, db).expect("same tags");
        assert_eq!(node.incarnation(), 1);
        assert!(node.poll_event().is_none());
    }

    #[test]
    fn set_tags_over_each_limit_is_refused_naming_it_and_changes_nothing() {
        let now = epoch();
        let config = Config {
            max_tags_size: 1000,
            max_tags: 3,
            ..Config::for_cluster("unit")
        };
        let mut node = Node::new(config, name("me"), addr(1), now, wall()).expect("valid");
        while node.poll_event().is_some() {}
        let large = Tags::from_pairs([("k", "x".repeat(1000))]).expect("valid");
        let error = node.set_tags(now, large).expect_err("too large");
        assert_eq!(
            error,
            SetTagsError::Invalid(TagsError::TooLarge {
                size: 1004,
                limit: 1000
            })
        );
        assert!(error.to_string().contains("max_tags_size"), "{error}");
        let many = tags(&[("a", ""), ("b", ""), ("c", ""), ("d", "")]);
        let error = node.set_tags(now, many).expect_err("too many");
        assert_eq!(
            error,
            SetTagsError::Invalid(TagsError::TooMany { count: 4, limit: 3 })
        );
        assert!(error.to_string().contains("max_tags"), "{error}");
        assert_eq!(
            Tags::from_pairs([("a", "1"), ("a", "2")]),
            Err(TagsError::DuplicateKey { key: "a".into() }),
            "duplicate keys never make tags"
        );
        // Within max_tags_size, but the row with a long name does not fit a datagram.
        let config = Config {
            max_packet_size: 1024,
            max_tags_size: 1000,
            ..Config::for_cluster("unit")
        };
        let long = name(&"n".repeat(200));
        let mut node = Node::new(config, long.clone(), addr(1), now, wall()).expect("valid");
        while node.poll_event().is_some() {}
        let near = Tags::from_pairs([("k", "x".repeat(800))]).expect("valid");
        let error = node.set_tags(now, near).expect_err("row too large");
        assert!(
            matches!(
                error,
                SetTagsError::Invalid(TagsError::RowTooLarge {
                    max_packet_size: 1024,
                    ..
                })
            ),
            "{error:?}"
        );
        assert_eq!(node.incarnation(), 0);
        assert!(node.tags().is_empty());
        assert!(node.row(&long).expect("self").tags.is_empty());
        assert!(node.poll_event().is_none(), "nothing changed");
    }

    #[test]
    fn peer_rows_with_tags_over_the_limits_are_dropped_by_reason() {
        let now = epoch();
        let config = Config {
            max_tags: 2,
            max_tags_size: 100,
            ..Config::for_cluster("unit")
        };
        let mut node = Node::new(config, name("me"), addr(1), now, wall()).expect("valid");
        while node.poll_event().is_some() {}
        let with = |pairs: Tags| {
            let mut update = alive("peer", 2, 0);
            update.row.0 = update.row.0.with_tags(pairs);
            packet("peer", 0, Message::Gossip, &[&update])
        };
        let before = node.tracker().clone();
        node.handle_packet(
            now,
            addr(2),
            &with(tags(&[("a", ""), ("b", ""), ("c", "")])),
        );
        assert_eq!(node.stats().dropped(DropReason::TooManyTags), 1);
        let large = Tags::from_pairs([("k", "x".repeat(100))]).expect("valid");
        node.handle_packet(now, addr(2), &with(large));
        assert_eq!(node.stats().dropped(DropReason::TagsTooLarge), 1);
        assert_eq!(node.tracker(), &before, "state unchanged");
        assert!(node.poll_event().is_none());
        node.handle_packet(now, addr(2), &with(tags(&[("role", "db")])));
        assert_eq!(
            node.row(&name("peer")).map(|r| r.tags.get("role")),
            Some(Some("db"))
        );
    }

    #[test]
    fn packets_of_protocol_version_2_are_dropped_as_unsupported() {
        let now = epoch();
        let mut node = node(now);
        let mut old = packet("peer", 0, Message::Gossip, &[&alive("peer", 2, 0)]);
        old[4] = 2;
        node.handle_packet(now, addr(2), &old);
        assert_eq!(node.stats().dropped(DropReason::UnsupportedVersion), 1);
        assert!(node.row(&name("peer")).is_none());
    }

    #[test]
    fn a_peer_holding_this_node_with_other_tags_at_its_incarnation_is_outbid() {
        let now = epoch();
        let mut node = node(now);
        node.set_tags(now, tags(&[("role", "db")])).expect("valid");
        let mut stale = alive("me", 1, 1);
        stale.row.0 = stale.row.0.with_tags(tags(&[("role", "old")]));
        node.handle_packet(now, addr(2), &packet("peer", 0, Message::Gossip, &[&stale]));
        assert_eq!(node.incarnation(), 2, "refuted");
        let own = node.row(&name("me")).expect("self");
        assert_eq!(own.tags.get("role"), Some("db"));
    }

    #[test]
    fn restored_rows_with_tags_over_the_limits_are_dropped_by_reason() {
        let now = epoch();
        let config = Config {
            max_tags: 1,
            ..Config::for_cluster("unit")
        };
        let mut node = Node::new(config, name("me"), addr(1), now, wall()).expect("valid");
        let two = alive("a", 2, 0)
            .row
            .0
            .with_tags(tags(&[("a", ""), ("b", "")]));
        let one = alive("b", 3, 0).row.0.with_tags(tags(&[("role", "db")]));
        node.restore(now, [two, one]);
        assert_eq!(node.stats().dropped(DropReason::TooManyTags), 1);
        assert!(node.row(&name("a")).is_none());
        assert_eq!(node.row(&name("b")).map(|r| r.tags.len()), Some(1));
    }

    #[test]
    fn a_death_heard_after_a_stall_is_noted_once_and_a_restart_hears_its_old_death_quietly() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        // Never stalled: its own death (a previous life's, after a restart) is
        // refuted without the warning.
        let news = packet("peer", 0, Message::Gossip, &[&dead("me", 1, 0)]);
        node.handle_packet(now, addr(2), &news);
        assert_eq!(node.death_warned, None);
        assert_eq!(node.incarnation(), 1);
        // Asleep for 10 s: the first input after it shows the stall.
        let woke = now + Duration::from_secs(10);
        node.handle_timeout(woke);
        assert_eq!(node.stats().stalls, 1);
        // The death at the incarnation it held is noted once, however often
        // the news arrives, including after the refutation raised it.
        for _ in 0..3 {
            let news = packet("peer", 0, Message::Gossip, &[&dead("me", 1, 1)]);
            node.handle_packet(woke, addr(2), &news);
            assert_eq!(node.death_warned, Some(1));
        }
        assert_eq!(node.incarnation(), 2, "refuted once");
    }
}
