//! Time as input. Every timer of the node is named in [`Timer`], and its deadline
//! is kept in one table, [`Timers`]: `poll_timeout` is the earliest deadline in
//! the table (of the timers that have work to do), and `handle_timeout` runs each
//! part's timer work, in the order of the enum.
//!
//! - Most timers keep their deadline only in the table: the probe cycle, the
//!   gossip tick, anti-entropy, join attempts, the seed re-probe, the end of a
//!   leave, the reaper.
//! - Work that comes in many items (the probes in flight, the nacks owed to
//!   others, the running suspicions) keeps its deadlines in the items, and the
//!   table holds one entry per kind: the earliest of them, recomputed by
//!   [`Node::reschedule`] at the end of every input. Items change only during an
//!   input, and only the earliest can wake the node.
//! - Three periodic timers keep their schedule while they have nothing to do, but
//!   do not wake the node then ([`Node::wakes`]): probing and anti-entropy after
//!   `leave` or with nobody to talk to, the gossip tick with nothing pending.
//!   They still run when the node is awake for another reason.
//!
//! `handle_timeout` calls every part whatever the table says, and each part
//! checks its own deadlines (a leave also checks whether its news has spread), so
//! a call that comes early or twice does nothing more. A deadline missed by far tells this node that it stalled itself
//! ([`Node::observe_input`]).

use std::time::{Duration, Instant};

use tracing::debug;

use super::Node;

/// The timers of a node, in the order `handle_timeout` runs their work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// The earliest step of a probe in flight: its indirect round, or its verdict.
    ProbeStep,
    /// The next probe of the round-robin cycle.
    Probe,
    /// The earliest nack owed for an indirect probe run for another member.
    Nack,
    /// The earliest suspicion due: its last-chance ping, or the verdict after it.
    Suspicion,
    /// The next gossip tick.
    Gossip,
    /// The next anti-entropy exchange.
    AntiEntropy,
    /// The next contact with a node believed dead or forgotten.
    Reunion,
    /// The next join attempt, while joining.
    Join,
    /// The next re-probe of the seeds, once a join has ended.
    Rejoin,
    /// The latest time a leave reports that it finished (it does sooner once
    /// its news has spread).
    Leave,
    /// The next scan for offline rows past their retention.
    Reap,
    /// User events: pulls to ask again, gaps to give up, the window to keep.
    UserEvents,
    /// Queries: the earliest end of a running query, or expiry of a token.
    Queries,
}

impl Timer {
    /// Every timer, in declaration order.
    const ALL: [Timer; 13] = [
        Timer::ProbeStep,
        Timer::Probe,
        Timer::Nack,
        Timer::Suspicion,
        Timer::Gossip,
        Timer::AntiEntropy,
        Timer::Reunion,
        Timer::Join,
        Timer::Rejoin,
        Timer::Leave,
        Timer::Reap,
        Timer::UserEvents,
        Timer::Queries,
    ];
}

/// The deadline of every timer; `None` when it is stopped.
#[derive(Clone, Debug, Default)]
pub(super) struct Timers {
    deadlines: [Option<Instant>; Timer::ALL.len()],
}

impl Timers {
    pub(super) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    pub(super) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    /// Whether the timer runs and its deadline has come.
    pub(super) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|at| at <= now)
    }

    /// The earliest deadline among the timers that `wakes` lets wake the node.
    fn next_timeout(&self, wakes: impl Fn(Timer) -> bool) -> Option<Instant> {
        Timer::ALL
            .into_iter()
            .filter(|&timer| wakes(timer))
            .filter_map(|timer| self.get(timer))
            .min()
    }
}

impl Node {
    /// Runs each part's timer work, in the order of [`Timer`]; each part checks
    /// its own deadlines.
    pub(super) fn run_timers(&mut self, now: Instant) {
        self.run_probes(now);
        self.run_relays(now);
        self.run_suspicions(now);
        self.run_gossip(now);
        self.run_anti_entropy(now);
        self.run_reunion(now);
        self.run_join(now);
        self.run_rejoin(now);
        self.run_leave(now);
        self.run_reap(now);
        self.run_user_events(now);
        self.run_queries(now);
    }

    /// The earliest deadline of the timers that have work to do.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        let next = self.timers.next_timeout(|timer| self.wakes(timer));
        // The last sends of a leave's news are counted when its datagrams are
        // taken (`poll_transmit`), after the timers ran: nothing else may wake the
        // node before the leave's deadline, so a leave that has spread asks to be
        // woken at once to report it.
        if self.timers.get(Timer::Leave).is_some() && self.leave_has_spread() {
            return Some(self.last_input_at);
        }
        next
    }

    /// Whether a timer's deadline wakes the node now. Three periodic timers keep
    /// their schedule while they have nothing to do, without waking it.
    fn wakes(&self, timer: Timer) -> bool {
        let has_members = self.members.len() > 0;
        match timer {
            // The round-robin probe in flight ends no later than this deadline
            // (on it, unless the probe went out early), so the deadline always
            // finds the cycle free and needs no condition of its own.
            Timer::Probe => !self.left && has_members,
            Timer::Gossip => has_members && !self.gossip.is_empty(),
            Timer::AntiEntropy => !self.left && (has_members || self.dead.len() > 0),
            Timer::Reunion => self.has_reunion_work(),
            Timer::UserEvents => self.broadcast.has_pending_work(),
            Timer::ProbeStep
            | Timer::Nack
            | Timer::Suspicion
            | Timer::Join
            | Timer::Rejoin
            | Timer::Leave
            | Timer::Reap
            | Timer::Queries => true,
        }
    }

    /// Sets the entry of each kind of many-item work to its earliest item.
    pub(super) fn reschedule(&mut self) {
        let entries = [
            (Timer::ProbeStep, self.probing.next_step_at()),
            (Timer::Nack, self.probing.next_nack_at()),
            (Timer::Suspicion, self.next_suspicion_due()),
            (Timer::Queries, self.queries.next_deadline()),
        ];
        for (timer, at) in entries {
            match at {
                Some(at) => self.timers.set(timer, at),
                None => self.timers.stop(timer),
            }
        }
    }

    /// Notes that the node is being driven at `now`. If it was not driven for a while
    /// *and* missed a deadline meanwhile, this node itself stalled (GC, CPU
    /// starvation, a paused process): replies may be waiting unread, so pending
    /// verdicts get more time instead of blaming others (Lifeguard's local health).
    pub(super) fn observe_input(&mut self, now: Instant) {
        let threshold = self.config.probe_timeout;
        let idle = now.saturating_duration_since(self.last_input_at);
        if idle > threshold
            && let Some(deadline) = self.next_wake()
            && deadline + threshold < now
        {
            self.on_stall(now, now - deadline);
        }
        self.last_input_at = self.last_input_at.max(now);
    }

    fn on_stall(&mut self, now: Instant, late_by: Duration) {
        debug!(
            ?late_by,
            "this node stalled: giving pending verdicts more time"
        );
        self.stats.stalls += 1;
        self.probing
            .local_health
            .worsen(self.config.max_local_health);
        // Probes in flight prove nothing: their answers may be unread.
        self.probing.probes.clear();
        // The pings read right away are the stall's backlog (a few
        // milliseconds of reading); those of probes sent since arrive later,
        // or their indirect round reaches this node after the window.
        self.probing.backlog_until = Some(now + self.config.probe_timeout);
        if let Some(at) = self.timers.get(Timer::Probe) {
            self.timers.set(Timer::Probe, at.max(now));
        }
        let grace = now + self.config.probe_interval;
        for suspicion in self.suspicions.values_mut() {
            suspicion.extend_to(grace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Timer, Timers};
    use crate::node::testing::*;

    #[test]
    fn every_timer_has_its_own_entry() {
        for (i, timer) in Timer::ALL.into_iter().enumerate() {
            assert_eq!(timer as usize, i, "ALL is in declaration order");
        }
    }

    #[test]
    fn the_next_timeout_is_the_earliest_deadline_that_wakes() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let mut timers = Timers::default();
        assert_eq!(timers.next_timeout(|_| true), None, "all stopped");
        timers.set(Timer::Reap, now + Duration::from_secs(3));
        timers.set(Timer::Gossip, now + Duration::from_secs(1));
        timers.set(Timer::Join, now + Duration::from_secs(2));
        assert_eq!(
            timers.next_timeout(|_| true),
            Some(now + Duration::from_secs(1))
        );
        assert_eq!(
            timers.next_timeout(|timer| timer != Timer::Gossip),
            Some(now + Duration::from_secs(2)),
            "a timer that does not wake keeps its deadline but is skipped"
        );
        assert_eq!(
            timers.get(Timer::Gossip),
            Some(now + Duration::from_secs(1))
        );
        timers.stop(Timer::Join);
        assert_eq!(
            timers.next_timeout(|timer| timer != Timer::Gossip),
            Some(now + Duration::from_secs(3))
        );
        assert!(timers.is_expired(Timer::Gossip, now + Duration::from_secs(1)));
        assert!(!timers.is_expired(Timer::Gossip, now));
        assert!(!timers.is_expired(Timer::Join, now + Duration::from_secs(9)));
    }

    #[test]
    fn spurious_timeouts_are_harmless() {
        let now = epoch();
        let mut node = node(now);
        for i in 0..10 {
            node.handle_timeout(now + Duration::from_millis(i));
        }
        assert!(node.poll_event().is_none());
        assert!(node.poll_transmit().is_none());
        assert_eq!(node.tracker().len(), 1);
    }

    #[test]
    fn a_stalled_node_gives_its_suspicions_more_time() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        let suspected = suspect("peer", 2, 0, "other");
        node.handle_packet(
            now,
            addr(3),
            &packet("other", 0, Message::Gossip, &[&suspected]),
        );
        let deadline = node.suspicions[&name("peer")].deadline();
        // The process sleeps far past the deadline, then is driven again.
        let late = deadline + Duration::from_secs(5);
        node.handle_timeout(late);
        assert_eq!(node.stats().stalls, 1);
        assert_eq!(
            node.row(&name("peer")).map(|r| r.health),
            Some(Health::Suspect),
            "not declared dead on waking"
        );
        assert!(node.local_health().score() > 0);
    }

    #[test]
    fn pings_read_right_after_a_stall_are_its_backlog_and_get_no_ack() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        let _ = sent(&mut node);
        let acks_to_peer = |node: &mut Node| {
            sent(node)
                .into_iter()
                .filter(|(to, p)| *to == addr(2) && matches!(p.message, Message::Ack { .. }))
                .count()
        };
        node.handle_packet(now, addr(2), &ping_from_peer(1, "me", &[]));
        assert_eq!(acks_to_peer(&mut node), 1, "answered while running");
        // The process sleeps for 10 s; the first input after it shows the stall.
        let woke = now + Duration::from_secs(10);
        node.handle_timeout(woke);
        assert_eq!(node.stats().stalls, 1);
        // Pings that waited unread would tell their senders this node answers
        // seconds late: left unanswered.
        for seq in 2..5 {
            node.handle_packet(woke, addr(2), &ping_from_peer(seq, "me", &[]));
        }
        assert_eq!(acks_to_peer(&mut node), 0, "the backlog is not answered");
        let later = woke + node.config().probe_timeout;
        node.handle_packet(later, addr(2), &ping_from_peer(5, "me", &[]));
        assert_eq!(acks_to_peer(&mut node), 1, "pings sent since are answered");
    }
}
