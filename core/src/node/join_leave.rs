//! Joining and leaving: join attempts with backoff and the replies that answer
//! them, the slow re-probe of the seeds that lets split clusters merge, answering
//! others' joins (rate-limited per source), a graceful leave, and the retention
//! that reaps offline rows.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::Node;
use super::anti_entropy::{ALL_BUCKETS, RowsKind};
use super::membership::Source;
use super::timer::Timer;
use crate::config::Config;
use crate::discovery::{JoinError, Seed, expand_seeds};
use crate::event::{Event, JoinRefusal, Op, TrackerEvent};
use crate::limiter::JoinLimiter;
use crate::name::NodeName;
use crate::tracker::{Health, NodeStatus, TrackerRow};
use crate::wire::{Message, WireRow};

/// Most often the reaper scans the tracker.
const REAP_PERIOD: Duration = Duration::from_secs(1);

/// Why `leave` refused. No state changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaveError {
    /// `leave` was already called (and no `join` since).
    #[error("the node has already left")]
    AlreadyLeft,
    /// This node lost its name and takes no more commands.
    #[error(transparent)]
    NameTaken(#[from] crate::NameTaken),
}

/// The join side of the node: its own join in progress, the seeds it re-probes,
/// and the limit on joins from strangers.
#[derive(Debug)]
pub(super) struct Joining {
    /// The join in progress (its next attempt: [`Timer::Join`]).
    attempts: Option<JoinAttempts>,
    /// The seeds re-probed once a join has ended (when: [`Timer::Rejoin`]).
    rejoin_targets: Vec<SocketAddr>,
    /// Until when join replies are accepted (later chunks of an answered join, or
    /// answers to a seed re-probe).
    replies_until: Option<Instant>,
    /// Caps how fast one source can introduce new nodes by joining.
    limiter: JoinLimiter,
    /// The last join (or seed re-probe) began with nobody online here: what its
    /// replies bring is this node's first view, not news for anyone else.
    fresh: bool,
    /// The refusal notices of the join in progress, by seed (`refusal.rs`).
    pub(super) refusals: Vec<JoinRefusal>,
}

impl Joining {
    pub(super) fn new(config: &Config) -> Self {
        Self {
            attempts: None,
            rejoin_targets: Vec::new(),
            replies_until: None,
            limiter: JoinLimiter::new(config.join_rate, config.join_burst),
            fresh: true,
            refusals: Vec::new(),
        }
    }
}

/// A leave's own announcement: pings carrying the `Left` row to up to
/// `gossip_fanout` members at once. Their acks prove the row arrived, so on a
/// healthy cluster the leave has spread after one round trip instead of after
/// the row's last gossip send; a lost ping or ack falls back to that.
#[derive(Debug, Default)]
pub(super) struct LeaveNotice {
    /// The sequence numbers of the pings whose ack is awaited.
    awaited: Vec<u32>,
    /// How many pings went out (acked or not).
    sent: usize,
    /// How many of them were acked.
    acked: usize,
}

impl LeaveNotice {
    /// Every ping was acked: each recipient holds the `Left` row.
    fn confirmed(&self) -> bool {
        self.sent > 0 && self.acked == self.sent
    }

    /// The ping `seq` left without the `Left` row: its ack proves nothing.
    pub(super) fn forget(&mut self, seq: u32) {
        self.awaited.retain(|&awaited| awaited != seq);
    }

    /// Counts the ack of a ping of the announcement; false for any other ack.
    fn acked(&mut self, seq: u32) -> bool {
        let Some(at) = self.awaited.iter().position(|&awaited| awaited == seq) else {
            return false;
        };
        self.awaited.swap_remove(at);
        self.acked += 1;
        true
    }
}

/// Progress of a join: attempts with exponential backoff, then standalone.
#[derive(Clone, Debug)]
struct JoinAttempts {
    targets: Vec<SocketAddr>,
    made: u32,
    first_wait: Duration,
}

impl JoinAttempts {
    fn new(targets: Vec<SocketAddr>, first_wait: Duration) -> Self {
        Self {
            targets,
            made: 0,
            first_wait,
        }
    }

    /// Records an attempt made at `now`; returns when the next is due (the wait
    /// doubles each time).
    fn record_attempt(&mut self, now: Instant) -> Instant {
        let wait = self.first_wait * 2u32.saturating_pow(self.made.min(16));
        self.made += 1;
        now + wait
    }
}

impl Node {
    /// See [`Node::join`].
    pub(super) fn begin_join(&mut self, now: Instant, seeds: &[Seed]) -> Result<(), JoinError> {
        let targets = expand_seeds(seeds, self.addr, self.config.max_join_targets)?;
        if self.left {
            self.left = false;
            self.timers.stop(Timer::Leave);
            self.leave_notice = LeaveNotice::default();
            self.incarnation = self.incarnation.saturating_add(1);
            self.write_own_row(now, Health::Alive);
        }
        self.stop_rejoin();
        self.joining.fresh = self.members.len() == 0;
        self.joining.refusals.clear();
        self.joining.attempts = Some(JoinAttempts::new(targets, self.config.join_retry));
        self.timers.set(Timer::Join, now);
        self.run_join(now);
        Ok(())
    }

    /// See [`Node::leave`].
    pub(super) fn begin_leave(&mut self, now: Instant) -> Result<(), LeaveError> {
        if self.left {
            return Err(LeaveError::AlreadyLeft);
        }
        self.left = true;
        self.stop_join();
        self.stop_rejoin();
        self.probing.probes.clear();
        self.suspicions.clear();
        self.timers
            .set(Timer::Leave, now + self.config.leave_timeout);
        self.write_own_row(now, Health::Left);
        self.announce_leave();
        Ok(())
    }

    /// Pings up to `gossip_fanout` members at once (all of them when fewer); the
    /// `Left` row rides on each ping as the newest news, and each ack says it arrived.
    fn announce_leave(&mut self) {
        self.leave_notice = LeaveNotice::default();
        let targets = self.sample_members(self.config.gossip_fanout, None);
        for &target in &targets {
            if let Some(row) = self.tracker.by_id(target) {
                let (to, target) = (row.addr, row.node.clone());
                let seq = self.probing.next_seq();
                self.leave_notice.awaited.push(seq);
                self.leave_notice.sent += 1;
                self.send(to, Message::Ping { seq, target });
            }
        }
        self.recycle(targets);
    }

    /// Counts an ack to one of the leave's pings; false for any other ack.
    pub(super) fn leave_acked(&mut self, seq: u32) -> bool {
        self.leave_notice.acked(seq)
    }

    /// Whether a join from `from` may be applied: a join of a name already tracked
    /// always may; a new name takes a token from its source's budget.
    pub(super) fn admits_join(&mut self, now: Instant, from: SocketAddr, row: &TrackerRow) -> bool {
        self.tracker.get(&row.node).is_some() || self.joining.limiter.allow(from, now)
    }

    /// How rows of a bulk transfer arriving now are taken: as news to spread
    /// when they introduce a node ([`Source::Merge`]), unless this node is taking
    /// its first view of the cluster from a join it began alone.
    pub(super) fn bulk_source(&self, now: Instant) -> Source {
        let first_view = self.joining.fresh && self.accepts_join_replies(now);
        if first_view || self.members.len() == 0 {
            Source::Bulk
        } else {
            Source::Merge
        }
    }

    pub(super) fn accepts_join_replies(&self, now: Instant) -> bool {
        self.joining.attempts.is_some()
            || self.joining.replies_until.is_some_and(|until| now <= until)
    }

    pub(super) fn handle_join(&mut self, now: Instant, from: SocketAddr, row: TrackerRow) {
        let _ = self.apply_row(now, row, None, Source::Gossip);
        self.send_rows(from, ALL_BUCKETS, RowsKind::JoinReply);
    }

    pub(super) fn handle_join_reply(&mut self, now: Instant, from: SocketAddr, rows: Vec<WireRow>) {
        let known = self.tracker.len();
        let knew_others = known > 1;
        self.apply_bulk(now, rows, self.bulk_source(now));
        if let Some(join) = self.stop_join() {
            self.events.push_back(Event::Joined { seed: from });
            self.schedule_rejoin(now, join.targets);
            // Rows that joined at the same time as this node were not in the reply,
            // and bulk rows are not gossiped on: compare digests with a random member
            // soon rather than at the first periodic exchange.
            self.sync_soon(now);
        }
        // Later chunks of this reply are still welcome for a while.
        self.joining.replies_until = Some(now + self.config.join_retry);
        if knew_others {
            // Two clusters meeting: make sure the seed's side learns ours too.
            self.send_sync(from, false);
        }
    }

    /// Sends the next join attempt when due; gives up after `join_attempts`.
    pub(super) fn run_join(&mut self, now: Instant) {
        let Some(join) = &mut self.joining.attempts else {
            return;
        };
        if !self.timers.is_expired(Timer::Join, now) {
            return;
        }
        if join.made >= self.config.join_attempts {
            let attempts = join.made;
            let targets = std::mem::take(&mut join.targets);
            self.stop_join();
            debug!(attempts, "no seed answered: running standalone");
            let refused = std::mem::take(&mut self.joining.refusals);
            self.events
                .push_back(Event::JoinFailed { attempts, refused });
            self.schedule_rejoin(now, targets);
            return;
        }
        let next = join.record_attempt(now);
        let targets = join.targets.clone();
        self.timers.set(Timer::Join, next);
        self.send_joins(&targets);
    }

    /// The addresses the join in progress sends to; `None` when not joining.
    pub(super) fn join_targets(&self) -> Option<&[SocketAddr]> {
        self.joining
            .attempts
            .as_ref()
            .map(|join| join.targets.as_slice())
    }

    /// Ends the join in progress, if any, and returns it.
    fn stop_join(&mut self) -> Option<JoinAttempts> {
        self.timers.stop(Timer::Join);
        self.joining.attempts.take()
    }

    fn schedule_rejoin(&mut self, now: Instant, targets: Vec<SocketAddr>) {
        self.joining.rejoin_targets = targets;
        self.timers
            .set(Timer::Rejoin, now + self.config.rejoin_interval);
    }

    /// See [`Node::refresh_seeds`].
    pub(super) fn replace_rejoin_targets(&mut self, seeds: &[Seed]) -> Result<(), JoinError> {
        let targets = expand_seeds(seeds, self.addr, self.config.max_join_targets)?;
        if self.timers.get(Timer::Rejoin).is_some() {
            self.joining.rejoin_targets = targets;
        }
        Ok(())
    }

    fn stop_rejoin(&mut self) {
        self.joining.rejoin_targets = Vec::new();
        self.timers.stop(Timer::Rejoin);
    }

    /// Re-probes the seeds that no online member uses, so split clusters merge.
    pub(super) fn run_rejoin(&mut self, now: Instant) {
        if !self.timers.is_expired(Timer::Rejoin, now) {
            return;
        }
        self.timers
            .set(Timer::Rejoin, now + self.config.rejoin_interval);
        let mut online = std::mem::take(&mut self.addr_scratch);
        online.clear();
        online.extend(self.member_rows().map(|row| row.addr));
        online.sort_unstable();
        let targets: Vec<SocketAddr> = self
            .joining
            .rejoin_targets
            .iter()
            .copied()
            .filter(|addr| online.binary_search(addr).is_err())
            .collect();
        online.clear();
        online.shrink_to(super::KEEP_QUEUED);
        self.addr_scratch = online;
        self.rejoin_through(now, &targets);
    }

    /// Sends joins to `targets` outside a join (a seed re-probe, a forgotten
    /// address); their replies are welcome for a while.
    pub(super) fn rejoin_through(&mut self, now: Instant, targets: &[SocketAddr]) {
        if !targets.is_empty() {
            self.joining.fresh = self.members.len() == 0;
            self.joining.replies_until = Some(now + self.config.join_retry * 2);
            self.send_joins(targets);
        }
    }

    fn send_joins(&mut self, targets: &[SocketAddr]) {
        let Some(own) = self.tracker.get(&self.name).cloned() else {
            return;
        };
        for &to in targets {
            let row = WireRow(own.clone());
            self.send(to, Message::Join { row });
        }
    }

    /// Reports the end of a leave: once the news has spread, or at the deadline.
    pub(super) fn run_leave(&mut self, now: Instant) {
        let Some(until) = self.timers.get(Timer::Leave) else {
            return;
        };
        let spread = self.leave_has_spread();
        if spread || now >= until {
            self.timers.stop(Timer::Leave);
            self.events.push_back(Event::LeaveFinished { spread });
        }
    }

    /// Whether this node's leave has gone out: every member pinged with it
    /// acked, or its news was sent as many times as any update is, or there is
    /// nobody to tell.
    pub(super) fn leave_has_spread(&self) -> bool {
        self.leave_notice.confirmed()
            || !self.gossip.contains(&self.name)
            || self.members.len() == 0
    }

    pub(super) fn run_reap(&mut self, now: Instant) {
        let Some(retention) = self.config.offline_retention else {
            return;
        };
        if self.timers.is_expired(Timer::Reap, now) {
            self.reap(now);
            self.timers
                .set(Timer::Reap, now + retention.min(REAP_PERIOD));
        }
    }

    /// Whether an offline row is older than the retention: it was reaped (or is about
    /// to be) and must not come back through a slower replica.
    pub(super) fn is_expired(&self, now: Instant, row: &TrackerRow) -> bool {
        match self.config.offline_retention {
            Some(retention) if row.status == NodeStatus::Offline => {
                let age = self.wall_clock(now) - row.last_change;
                age.to_std().is_ok_and(|age| age >= retention)
            }
            _ => false,
        }
    }

    /// Removes offline rows older than the retention, with `Op::Delete` events.
    fn reap(&mut self, now: Instant) {
        let expired: Vec<NodeName> = self
            .tracker
            .rows()
            .filter(|row| row.node != self.name && self.is_expired(now, row))
            .map(|row| row.node.clone())
            .collect();
        for name in expired {
            self.remove_row(now, &name);
        }
    }

    /// Removes an offline row from the tracker, with an `Op::Delete` event (the
    /// retention's reap, and `force_leave` with `prune`).
    pub(super) fn remove_row(&mut self, now: Instant, name: &NodeName) {
        if let Some(id) = self.tracker.id_of(name) {
            self.dead.remove(id);
            self.members.remove(id);
            self.probing.slots.remove(name, id);
        }
        if let Some(old) = self.tracker.remove(name) {
            self.gossip.remove(name);
            if old.health == Health::Dead {
                self.remember_reaped(now, old.addr);
            }
            self.events.push_back(Event::Tracker(TrackerEvent {
                op: Op::Delete,
                new_row: old,
                old_row: None,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{JoinAttempts, LeaveError, LeaveNotice};
    use crate::node::testing::*;

    #[test]
    fn attempts_back_off_exponentially() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let mut attempts = JoinAttempts::new(vec![], Duration::from_secs(1));
        assert_eq!(attempts.record_attempt(now), now + Duration::from_secs(1));
        assert_eq!(attempts.record_attempt(now), now + Duration::from_secs(2));
        assert_eq!(attempts.record_attempt(now), now + Duration::from_secs(4));
        assert_eq!(attempts.made, 3);
    }

    #[test]
    fn an_unsolicited_join_reply_is_dropped() {
        let now = epoch();
        let mut node = node(now);
        let bytes = packet(
            "peer",
            0,
            Message::JoinReply {
                rows: vec![alive("peer", 2, 0).row],
            },
            &[],
        );
        node.handle_packet(now, addr(2), &bytes);
        assert_eq!(node.stats().dropped(DropReason::Unsolicited), 1);
        assert_eq!(node.tracker().len(), 1);
    }

    #[test]
    fn a_join_must_announce_its_own_sender_alive() {
        let now = epoch();
        let mut node = node(now);
        let forged = packet(
            "peer",
            0,
            Message::Join {
                row: alive("victim", 3, 5).row,
            },
            &[],
        );
        node.handle_packet(now, addr(2), &forged);
        assert_eq!(node.stats().dropped(DropReason::Malformed), 1);
        assert_eq!(node.tracker().len(), 1);
    }

    #[test]
    fn a_join_is_answered_with_the_tracker() {
        let now = epoch();
        let mut node = node(now);
        let join = packet(
            "peer",
            0,
            Message::Join {
                row: alive("peer", 2, 0).row,
            },
            &[],
        );
        node.handle_packet(now, addr(2), &join);
        let replies: Vec<_> = sent(&mut node)
            .into_iter()
            .filter_map(|(to, p)| match p.message {
                Message::JoinReply { rows } => Some((to, rows.len())),
                _ => None,
            })
            .collect();
        assert_eq!(replies, [(addr(2), 2)]);
    }

    #[test]
    fn refreshed_seeds_are_the_ones_the_slow_re_probe_contacts() {
        let mut now = epoch();
        let mut node = node(now);
        node.join(now, &[Seed::Addr(addr(2))]).expect("a seed");
        // Nobody answers: the join ends and the re-probe is scheduled.
        let mut failed = false;
        for _ in 0..64 {
            now = node.poll_timeout().expect("a timer runs").max(now);
            node.handle_timeout(now);
            let _ = sent(&mut node);
            failed |= std::iter::from_fn(|| node.poll_event())
                .any(|e| matches!(e, Event::JoinFailed { .. }));
            if failed {
                break;
            }
        }
        assert!(failed, "the join gave up");
        node.refresh_seeds(now, &[Seed::Addr(addr(3))])
            .expect("an address");
        assert_eq!(
            node.refresh_seeds(
                now,
                &[Seed::Host {
                    name: "db".into(),
                    port: 1
                }]
            ),
            Err(JoinError::NoSeeds),
            "a name the core cannot resolve is no address"
        );
        now += node.config().rejoin_interval;
        node.handle_timeout(now);
        let joins: Vec<SocketAddr> = sent(&mut node)
            .into_iter()
            .filter(|(_, p)| matches!(p.message, Message::Join { .. }))
            .map(|(to, _)| to)
            .collect();
        assert_eq!(joins, [addr(3)]);
    }

    #[test]
    fn a_standalone_leave_finishes_at_the_next_timeout_not_at_the_deadline() {
        let now = epoch();
        let mut node = node(now);
        node.leave(now).expect("first leave");
        let _ = sent(&mut node);
        let wake = node.poll_timeout().expect("the leave asks to be woken");
        assert!(wake <= now, "woken at once, not after leave_timeout");
        node.handle_timeout(now);
        let events: Vec<_> = std::iter::from_fn(|| node.poll_event()).collect();
        assert!(events.contains(&Event::LeaveFinished { spread: true }));
    }

    /// A node that knows "peer" (port 2) and "other" (port 3) alive; what it
    /// sent is drained.
    fn node_with_two_members(now: Instant) -> Node {
        let mut node = node(now);
        let news = packet(
            "peer",
            0,
            Message::Gossip,
            &[&alive("peer", 2, 0), &alive("other", 3, 0)],
        );
        node.handle_packet(now, addr(2), &news);
        let _ = sent(&mut node);
        while node.poll_event().is_some() {}
        node
    }

    /// The pings `leave` sent, by address, each with whether it carried the `Left` row.
    fn leave_pings(node: &mut Node) -> Vec<(SocketAddr, u32, bool)> {
        sent(node)
            .into_iter()
            .filter_map(|(to, packet)| match packet.message {
                Message::Ping { seq, .. } => {
                    let carried = packet
                        .gossip
                        .iter()
                        .any(|u| u.row.0.node == name("me") && u.row.0.health == Health::Left);
                    Some((to, seq, carried))
                }
                _ => None,
            })
            .collect()
    }

    fn leave_finished(node: &mut Node) -> Option<bool> {
        std::iter::from_fn(|| node.poll_event()).find_map(|event| match event {
            Event::LeaveFinished { spread } => Some(spread),
            _ => None,
        })
    }

    #[test]
    fn leave_pings_every_member_at_once_with_its_left_row() {
        let now = epoch();
        let mut node = node_with_two_members(now);
        node.leave(now).expect("first leave");
        let mut pinged: Vec<_> = leave_pings(&mut node)
            .into_iter()
            .map(|(to, _, carried)| (to, carried))
            .collect();
        pinged.sort();
        assert_eq!(pinged, [(addr(2), true), (addr(3), true)]);
    }

    #[test]
    fn the_leave_has_spread_once_every_pinged_member_acked() {
        let now = epoch();
        let mut node = node_with_two_members(now);
        node.leave(now).expect("first leave");
        let pings = leave_pings(&mut node);
        let soon = now + Duration::from_millis(1);
        let (first, second) = (pings[0].1, pings[1].1);
        node.handle_packet(
            soon,
            addr(2),
            &packet("peer", 0, Message::Ack { seq: first }, &[]),
        );
        node.handle_timeout(soon);
        assert_eq!(
            leave_finished(&mut node),
            None,
            "one of two acks is not enough"
        );
        node.handle_packet(
            soon,
            addr(3),
            &packet("other", 0, Message::Ack { seq: second }, &[]),
        );
        assert!(
            node.poll_timeout().is_some_and(|wake| wake <= soon),
            "the last ack wakes the node at once"
        );
        node.handle_timeout(soon);
        assert_eq!(leave_finished(&mut node), Some(true));
        assert!(
            soon < now + node.config().gossip_interval,
            "before any gossip tick"
        );
    }

    #[test]
    fn a_leave_ping_that_went_out_without_the_left_row_can_never_confirm_the_leave() {
        let mut notice = LeaveNotice::default();
        for seq in [7, 8] {
            notice.awaited.push(seq);
            notice.sent += 1;
        }
        assert!(notice.acked(7));
        notice.forget(8);
        assert!(!notice.acked(8), "its ack proves nothing");
        assert!(
            !notice.confirmed(),
            "one of the two recipients may lack the row"
        );
        assert!(!LeaveNotice::default().confirmed(), "no ping, no proof");
    }

    #[test]
    fn acks_of_other_pings_do_not_count_for_the_leave() {
        let now = epoch();
        let mut node = node_with_two_members(now);
        node.leave(now).expect("first leave");
        let pings = leave_pings(&mut node);
        let unrelated = pings.iter().map(|p| p.1).max().expect("two pings") + 100;
        let soon = now + Duration::from_millis(1);
        for _ in 0..2 {
            let ack = packet("peer", 0, Message::Ack { seq: unrelated }, &[]);
            node.handle_packet(soon, addr(2), &ack);
        }
        let ack = packet("peer", 0, Message::Ack { seq: pings[0].1 }, &[]);
        node.handle_packet(soon, addr(2), &ack);
        node.handle_packet(soon, addr(2), &ack);
        node.handle_timeout(soon);
        assert_eq!(leave_finished(&mut node), None, "one member acked, twice");
    }

    #[test]
    fn without_acks_the_leave_ends_when_its_news_was_sent_out_or_at_the_deadline() {
        let now = epoch();
        let mut node = node_with_two_members(now);
        node.leave(now).expect("first leave");
        let _ = leave_pings(&mut node);
        let deadline = now + node.config().leave_timeout;
        let (spread, at) = loop {
            let at = node
                .poll_timeout()
                .expect("a leave in progress keeps a deadline");
            assert!(at <= deadline, "never past leave_timeout");
            node.handle_timeout(at);
            let _ = sent(&mut node);
            if let Some(spread) = leave_finished(&mut node) {
                break (spread, at);
            }
        };
        assert!(spread, "the gossip sends ran out before the deadline");
        assert!(at > now, "not before the gossip ticks");
    }

    #[test]
    fn leave_twice_is_an_error_and_join_afterwards_comes_back_higher() {
        let now = epoch();
        let mut node = node(now);
        node.leave(now).expect("first leave");
        assert_eq!(node.leave(now), Err(LeaveError::AlreadyLeft));
        assert_eq!(node.row(&name("me")).map(|r| r.health), Some(Health::Left));
        node.join(now, &[Seed::Addr(addr(2))]).expect("join");
        assert!(!node.has_left());
        let own = node.row(&name("me")).expect("self");
        assert_eq!((own.health, own.incarnation), (Health::Alive, 1));
    }

    #[test]
    fn join_refuses_seed_lists_with_nothing_but_self() {
        let now = epoch();
        let mut node = node(now);
        assert_eq!(
            node.join(now, &[Seed::Addr(addr(1))]),
            Err(JoinError::NoSeeds)
        );
        assert_eq!(node.join(now, &[]), Err(JoinError::NoSeeds));
    }
}
