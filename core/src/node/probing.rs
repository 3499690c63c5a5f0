//! The probe cycle (SWIM with Lifeguard's nacks) and the fast path for crashed
//! processes: "port unreachable" hints from the OS start probes at once, and
//! bounces confirmed by independent members shorten the suspicion to
//! `unreachable_grace`.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::Node;
use crate::name::NodeName;
use crate::probe::{MAX_HINT_PROBES, Probe, Verdict};
use crate::stats::DropReason;
use crate::tracker::Health;
use crate::wire::Message;

/// Independent bounces (ours and helpers') that make a crash likely enough to
/// take the short suspicion.
const BOUNCES_TO_SUSPECT: u32 = 2;

impl Node {
    /// Hint from the OS that nothing listens at `addr` (ICMP port unreachable).
    ///
    /// Strong but unproven evidence, never enough on its own: a probe of the
    /// member at `addr` starts at once, with indirect probes through `k` others
    /// who report whether the target bounced for them too. When two independent
    /// bounces agree, the member is suspected with the short `unreachable_grace`
    /// timeout, and declared dead if its last-chance ping bounces as well. A member
    /// that answers (a process restarted on the same port) refutes as usual.
    /// Hints about addresses no member uses are counted as
    /// [`DropReason::UnknownAddress`] and change nothing.
    pub fn handle_unreachable(&mut self, now: Instant, addr: SocketAddr) {
        self.observe_input(now);
        let mut used = self.relay_bounced(addr);
        let member = self
            .member_rows()
            .find(|row| row.addr == addr)
            .map(|row| row.node.clone());
        if let Some(target) = member {
            used = true;
            self.last_chance_bounced(now, &target);
            match self.probes.iter().position(|probe| probe.target == target) {
                Some(at) => self.record_bounce(now, at),
                None => self.start_hint_probe(now, target),
            }
        }
        if !used {
            self.stats.count_drop(DropReason::UnknownAddress);
            debug!(%addr, "unreachable hint for an address no member uses");
        }
    }

    /// A helper's ping for someone else's indirect probe bounced: tell the requester.
    fn relay_bounced(&mut self, addr: SocketAddr) -> bool {
        let mut any = false;
        let mut i = 0;
        while i < self.relays.len() {
            if self.relays[i].target_addr == addr {
                let relay = self.relays.swap_remove(i);
                self.send(
                    relay.requester,
                    Message::Bounced {
                        seq: relay.requester_seq,
                    },
                );
                any = true;
            } else {
                i += 1;
            }
        }
        any
    }

    /// The last-chance ping of an already suspected member bounced: it is gone.
    fn last_chance_bounced(&mut self, now: Instant, target: &NodeName) {
        let Some(suspicion) = self.suspicions.get(target) else {
            return;
        };
        if suspicion.last_chance.is_some_and(|last| !last.acked) {
            let incarnation = suspicion.incarnation;
            debug!(node = %target, "last-chance ping bounced");
            self.declare_dead(now, target, incarnation);
        }
    }

    /// A member asked to probe for us reports that the target bounced for it too.
    pub(super) fn handle_bounced(&mut self, now: Instant, seq: u32) {
        if let Some(at) = self.probes.iter().position(|probe| probe.seq == seq) {
            self.probes[at].nacks += 1;
            self.record_bounce(now, at);
        }
    }

    fn record_bounce(&mut self, now: Instant, at: usize) {
        let probe = &mut self.probes[at];
        probe.bounces += 1;
        if !probe.indirect_sent && !probe.acked {
            self.probe_indirectly(at);
        }
        let probe = &self.probes[at];
        if probe.bounces >= BOUNCES_TO_SUSPECT && !probe.acked && !probe.fast_suspected {
            let (target, incarnation) = (probe.target.clone(), probe.incarnation);
            self.probes[at].fast_suspected = true;
            debug!(node = %target, "bounces confirmed: short suspicion");
            self.suspect(now, &target, incarnation);
            if let Some(suspicion) = self.suspicions.get_mut(&target)
                && suspicion.incarnation == incarnation
            {
                suspicion.cap_deadline(now + self.config.unreachable_grace);
            }
        }
    }

    /// A probe outside the round-robin order, for a member the OS says is gone:
    /// the hint itself counts as one bounce, and helpers are asked at once.
    fn start_hint_probe(&mut self, now: Instant, target: NodeName) {
        if self.left || self.probes.iter().filter(|p| !p.regular).count() >= MAX_HINT_PROBES {
            return;
        }
        if let Some(at) = self.start_probe(now, target, false) {
            self.record_bounce(now, at);
        }
    }

    pub(super) fn run_probes(&mut self, now: Instant) {
        for at in 0..self.probes.len() {
            let probe = &self.probes[at];
            if !probe.acked && !probe.indirect_sent && now >= probe.indirect_at {
                self.probe_indirectly(at);
            }
        }
        let mut at = 0;
        while at < self.probes.len() {
            if now >= self.probes[at].ends_at {
                let probe = self.probes.swap_remove(at);
                self.finish_probe(now, probe);
            } else {
                at += 1;
            }
        }
        let probing = self.probes.iter().any(|probe| probe.regular);
        if !probing && !self.left && now >= self.next_probe_at {
            let next = self.members.next_probe_target(&mut self.rng);
            match next
                .and_then(|id| self.tracker.by_id(id))
                .map(|row| row.node.clone())
            {
                Some(target) => {
                    let _ = self.start_probe(now, target, true);
                }
                None => self.next_probe_at = now + self.config.probe_interval,
            }
        }
    }

    /// Pings `target` now. A regular probe also schedules the next one, one
    /// (health-scaled) interval later. Returns the probe's index.
    fn start_probe(&mut self, now: Instant, target: NodeName, regular: bool) -> Option<usize> {
        let row = self.tracker.get(&target)?;
        let (addr, incarnation) = (row.addr, row.incarnation);
        let seq = self.next_seq();
        let interval = self.local_health.scale(self.config.probe_interval);
        let timeout = self.local_health.scale(self.config.probe_timeout);
        self.ping(now, &target, seq);
        self.probes.push(Probe {
            seq,
            target,
            target_addr: addr,
            incarnation,
            regular,
            indirect_at: now + timeout,
            ends_at: now + interval,
            acked: false,
            indirect_sent: false,
            nacks_expected: 0,
            nacks: 0,
            bounces: 0,
            fast_suspected: false,
        });
        if regular {
            self.next_probe_at = now + interval;
        }
        self.stats.probes_sent += 1;
        Some(self.probes.len() - 1)
    }

    /// Pings a member. A suspect gets its suspicion piggybacked (Lifeguard's buddy
    /// system), so if alive it learns it must refute and can answer on the ack.
    pub(super) fn ping(&mut self, now: Instant, target: &NodeName, seq: u32) {
        let Some(row) = self.tracker.get(target) else {
            return;
        };
        let addr = row.addr;
        if row.health == Health::Suspect && !self.gossip.contains(target) {
            let row = row.clone();
            self.push_gossip(now, row, None);
        }
        self.send(
            addr,
            Message::Ping {
                seq,
                target: target.clone(),
            },
        );
    }

    /// No direct ack in time (or a bounce): ask `k` others to ping the target, and
    /// ping it once more ourselves (a lost datagram is the likeliest cause).
    fn probe_indirectly(&mut self, at: usize) {
        let probe = &self.probes[at];
        let (seq, target, target_addr) = (probe.seq, probe.target.clone(), probe.target_addr);
        let asked = self.ask_helpers(seq, &target, target_addr);
        self.send(target_addr, Message::Ping { seq, target });
        let probe = &mut self.probes[at];
        probe.indirect_sent = true;
        probe.nacks_expected = asked;
    }

    /// Asks `k` random members to ping `target` for us under `seq`; their acks
    /// come back relayed under the same `seq`. Returns how many were asked.
    pub(super) fn ask_helpers(
        &mut self,
        seq: u32,
        target: &NodeName,
        target_addr: SocketAddr,
    ) -> u32 {
        let helpers = self.sample_members(self.config.indirect_probes, self.tracker.id_of(target));
        let mut asked = 0;
        for &helper in &helpers {
            if let Some(row) = self.tracker.by_id(helper) {
                let to = row.addr;
                self.send(
                    to,
                    Message::PingReq {
                        seq,
                        target: target.clone(),
                        target_addr,
                    },
                );
                asked += 1;
            }
        }
        self.recycle(helpers);
        asked
    }

    fn finish_probe(&mut self, now: Instant, probe: Probe) {
        match probe.verdict() {
            Verdict::Acked => self.local_health.improve(),
            verdict => {
                self.stats.probes_failed += 1;
                if verdict == Verdict::FailedWithMissingNacks {
                    self.local_health.worsen(self.config.max_local_health);
                }
                debug!(target = %probe.target, ?verdict, "probe failed");
                self.suspect(now, &probe.target, probe.incarnation);
            }
        }
    }
}
