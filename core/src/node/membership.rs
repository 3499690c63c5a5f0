//! Applying row changes: precedence, refutation of news about self, suspicion
//! bookkeeping, and the events that follow a change.

use std::time::Instant;

use tracing::debug;

use super::{Node, Source};
use crate::event::{Event, Mode, Op, TrackerEvent};
use crate::name::NodeName;
use crate::stats::DropReason;
use crate::suspicion::{Suspicion, suspicion_bounds};
use crate::tracker::{Health, NodeStatus, RowChange, TrackerRow};
use crate::wire::{Update, WireRow};

impl Node {
    /// Applies a row heard from a peer or decided here. `suspecter` names who raised
    /// a suspicion (for Lifeguard's independent confirmations).
    ///
    /// Returns whether the row was outdated bad news: it says a node is suspect,
    /// dead or gone at an older incarnation than the one held here, where that
    /// node is online. Whoever sent it missed the newer row (it was paused, or
    /// declared dead itself while the news spread) and may be about to take a
    /// live node offline; the current row is queued again for the caller to send.
    pub(super) fn apply_row(
        &mut self,
        now: Instant,
        row: TrackerRow,
        suspecter: Option<NodeName>,
        source: Source,
    ) -> bool {
        if row.node == self.name {
            self.apply_row_about_self(now, row, suspecter.as_ref());
            return false;
        }
        if self.is_expired(now, &row) {
            return false;
        }
        // One lookup serves the checks and the merge: this is the hot path of
        // every piggybacked row.
        let known_id = self.tracker.id_of(&row.node);
        let known = known_id.and_then(|id| self.tracker.by_id(id));
        if known.is_none() && self.tracker.len() >= self.config.max_nodes {
            self.stats.count_drop(DropReason::TrackerFull);
            debug!(node = %row.node, "tracker full: update about an unknown node dropped");
            return false;
        }
        if let Some(known) = known
            && row.health != Health::Alive
            && row.incarnation < known.incarnation
            && known.status == NodeStatus::Online
        {
            if !self.gossip.contains(&known.node) {
                let current = known.clone();
                self.push_gossip(now, current, None);
            }
            return true;
        }
        // A suspicion of the incarnation already suspected is a confirmation.
        if let (Some(known), Some(from)) = (known, &suspecter)
            && row.health == Health::Suspect
            && known.health == Health::Suspect
            && known.incarnation == row.incarnation
            && let Some(suspicion) = self.suspicions.get_mut(&row.node)
            && suspicion.confirm(from)
        {
            self.push_gossip(now, row.clone(), suspecter.clone());
        }
        let Some(change) = self.tracker.merge_known(known_id, row) else {
            return false;
        };
        let status_flipped = change
            .old
            .as_ref()
            .is_some_and(|old| old.status != change.new.status);
        let suspecter = (change.new.health == Health::Suspect)
            .then_some(suspecter)
            .flatten();
        // A pending update about this node is now outdated: replace it with the
        // new row rather than keep spreading the old one.
        if source == Source::Gossip || status_flipped || self.gossip.contains(&change.new.node) {
            self.push_gossip(now, change.new.clone(), suspecter.clone());
        }
        self.track_suspicion(now, &change.new, suspecter);
        self.record(change);
        false
    }

    /// Suspects `target` at `incarnation` because this node's own probe failed.
    pub(super) fn suspect(&mut self, now: Instant, target: &NodeName, incarnation: u64) {
        let Some(row) = self.tracker.get(target) else {
            return;
        };
        if row.incarnation != incarnation || row.status == NodeStatus::Offline {
            return;
        }
        let me = Some(self.name.clone());
        if row.health == Health::Suspect {
            // Already suspected by someone else: ours is an independent confirmation.
            let row = row.clone();
            if let Some(suspicion) = self.suspicions.get_mut(target)
                && suspicion.confirm(&self.name)
            {
                self.push_gossip(now, row, me);
            }
            return;
        }
        let suspected = row.with_health(Health::Suspect, self.wall_clock(now));
        let addr = suspected.addr;
        let _ = self.apply_row(now, suspected, me, Source::Gossip);
        // Tell the suspect directly so it can refute before the news has spread.
        self.send(addr, crate::wire::Message::Gossip);
    }

    /// Declares a suspect dead: its suspicion ran out unrefuted (or its last-chance
    /// ping bounced).
    pub(super) fn declare_dead(&mut self, now: Instant, target: &NodeName, incarnation: u64) {
        self.suspicions.remove(target);
        let Some(row) = self.tracker.get(target) else {
            return;
        };
        if row.health != Health::Suspect || row.incarnation != incarnation {
            return;
        }
        let dead = row.with_health(Health::Dead, self.wall_clock(now));
        debug!(node = %target, incarnation, "declared dead");
        let _ = self.apply_row(now, dead, None, Source::Gossip);
    }

    /// News about this node itself: refute anything that says it is not alive at its
    /// current incarnation and address; otherwise merge (converging on a tie).
    /// The refutation also goes straight to whoever raised a suspicion: that
    /// node's timer runs first, and gossip alone may happen to miss it.
    fn apply_row_about_self(
        &mut self,
        now: Instant,
        row: TrackerRow,
        suspecter: Option<&NodeName>,
    ) {
        if self.left {
            return;
        }
        let current = row.incarnation == self.incarnation
            && row.health == Health::Alive
            && row.addr == self.addr;
        if current {
            if let Some(change) = self.tracker.merge(row) {
                self.record(change);
            }
            return;
        }
        if row.incarnation < self.incarnation {
            // A peer holds an outdated view of this node, likely because the
            // refutation's gossip missed it: announce the current row again.
            if !self.gossip.contains(&self.name)
                && let Some(own) = self.tracker.get(&self.name).cloned()
            {
                self.push_gossip(now, own, None);
            }
            return;
        }
        // Someone holds a view of this node at or above its incarnation that is
        // wrong (suspect, dead, left, another address): outbid it.
        if row.health == Health::Suspect {
            self.local_health.worsen(self.config.max_local_health);
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
            self.send(to, crate::wire::Message::Gossip);
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

    /// Starts, keeps or ends the suspicion timer of a node after its row changed.
    fn track_suspicion(&mut self, now: Instant, row: &TrackerRow, origin: Option<NodeName>) {
        if row.health != Health::Suspect {
            self.suspicions.remove(&row.node);
            return;
        }
        if self
            .suspicions
            .get(&row.node)
            .is_some_and(|s| s.incarnation == row.incarnation)
        {
            return;
        }
        let members = self.tracker.online_count();
        let bounds = suspicion_bounds(
            self.config.suspicion_min,
            self.config.suspicion_max_factor,
            members,
        );
        // Confirmations can only come from members other than the suspect and the origin.
        let k = self
            .config
            .suspicion_confirmations
            .min(members.saturating_sub(2) as u32);
        let origin = origin.unwrap_or_else(|| self.name.clone());
        self.suspicions.insert(
            row.node.clone(),
            Suspicion::new(now, row.incarnation, origin, bounds, k),
        );
    }

    /// Queues an update for dissemination.
    pub(super) fn push_gossip(
        &mut self,
        now: Instant,
        row: TrackerRow,
        suspecter: Option<NodeName>,
    ) {
        if self.gossip.is_empty() && self.next_gossip_at < now {
            // The tick was idle: restart it from now instead of from a stale past.
            self.next_gossip_at = now;
        }
        let update = Update {
            row: WireRow(row),
            suspecter,
        };
        self.stats.gossip_evicted += self.gossip.push(update, self.config.max_pending_updates);
    }

    /// Whether an offline row is older than the retention: it was reaped (or is about
    /// to be) and must not come back through a slower replica.
    fn is_expired(&self, now: Instant, row: &TrackerRow) -> bool {
        match self.config.offline_retention {
            Some(retention) if row.status == NodeStatus::Offline => {
                let age = self.wall_clock(now) - row.last_change;
                age.to_std().is_ok_and(|age| age >= retention)
            }
            _ => false,
        }
    }

    /// Removes offline rows older than the retention, with `Op::Delete` events.
    pub(super) fn reap(&mut self, now: Instant) {
        let expired: Vec<NodeName> = self
            .tracker
            .rows()
            .filter(|row| row.node != self.name && self.is_expired(now, row))
            .map(|row| row.node.clone())
            .collect();
        for name in expired {
            if let Some(id) = self.tracker.id_of(&name) {
                self.dead.remove(id);
                self.members.remove(id);
            }
            if let Some(old) = self.tracker.remove(&name) {
                self.gossip.remove(&name);
                self.events.push_back(Event::Tracker(TrackerEvent {
                    op: Op::Delete,
                    new_row: old,
                    old_row: None,
                }));
            }
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
                    self.dead.remove(id);
                }
                NodeStatus::Offline => {
                    self.members.remove(id);
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
