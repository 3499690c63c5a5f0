//! Time as input: `handle_timeout` runs each part's due work, `poll_timeout` says
//! when that is next, and a deadline missed by far tells this node it stalled.

use std::time::{Duration, Instant};

use tracing::debug;

use super::Node;

impl Node {
    /// Does whatever is due at `now`. Calling it early or twice is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe_input(now);
        self.run_probes(now);
        self.run_relays(now);
        self.run_suspicions(now);
        self.run_gossip(now);
        self.run_anti_entropy(now);
        self.run_join(now);
        self.run_rejoin(now);
        self.run_leave(now);
        self.run_reap(now);
    }

    /// When [`handle_timeout`](Node::handle_timeout) should be called next; `None`
    /// when nothing is scheduled. Read it after draining the other `poll_*` calls.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut consider = |at: Instant| {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        };
        let has_members = self.members.len() > 0;
        self.probing
            .next_step_at()
            .into_iter()
            .for_each(&mut consider);
        if !self.left && has_members && !self.probing.regular_in_flight() {
            consider(self.next_probe_at);
        }
        self.probing
            .next_nack_at()
            .into_iter()
            .for_each(&mut consider);
        self.next_suspicion_due()
            .into_iter()
            .for_each(&mut consider);
        if has_members && !self.gossip.is_empty() {
            consider(self.next_gossip_at);
        }
        if !self.left && (has_members || self.dead.len() > 0) {
            consider(self.next_sync_at);
        }
        self.joining
            .next_attempt_at()
            .into_iter()
            .for_each(&mut consider);
        self.joining
            .next_rejoin_at()
            .into_iter()
            .for_each(&mut consider);
        self.leaving_until.into_iter().for_each(&mut consider);
        self.next_reap_at.into_iter().for_each(&mut consider);
        earliest
    }

    /// Notes that the node is being driven at `now`. If it was not driven for a while
    /// *and* missed a deadline meanwhile, this node itself stalled (GC, CPU
    /// starvation, a paused process): replies may be waiting unread, so pending
    /// verdicts get more time instead of blaming others (Lifeguard's local health).
    pub(super) fn observe_input(&mut self, now: Instant) {
        let threshold = self.config.probe_timeout;
        let idle = now.saturating_duration_since(self.last_input_at);
        if idle > threshold
            && let Some(deadline) = self.poll_timeout()
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
        self.next_probe_at = self.next_probe_at.max(now);
        let grace = now + self.config.probe_interval;
        for suspicion in self.suspicions.values_mut() {
            suspicion.extend_to(grace);
        }
    }
}
