//! Probing: the probe cycle (SWIM with Lifeguard's nacks), the indirect probes
//! this node runs for others, Lifeguard's local health score, and the fast path
//! for crashed processes: "port unreachable" hints from the OS start probes at
//! once, and a second bounce (another of our datagrams, or a helper's report)
//! shortens the suspicion to `unreachable_grace`. How probes end also tells
//! the weather (`weather`): one member failing, many at once, or the whole
//! network failing this node (a storm, during which verdicts wait).
//!
//! A probe that failed while at least [`CORROBORATING_NACKS`] helpers answered
//! it with nacks, this node measuring little loss and no storm, is the clearest
//! sign that the target itself is gone: the helpers heard this node and
//! answered, only the target is silent to all of them. Its suspicion runs out
//! after [`CORROBORATED_FLOOR`] of the minimum timeout. What it costs: a live
//! member silent to this node and two helpers at once for that long (a pause,
//! a cut around it) is declared sooner; at measured loss above
//! [`CORROBORATION_MAX_LOSS`] nacks prove less and the floor is not shortened.

mod slots;
mod weather;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::Node;
use super::timer::Timer;
use crate::name::NodeName;
use crate::stats::DropReason;
use crate::tracker::Health;
use crate::wire::Message;
pub(super) use slots::ProbeSlots;
use slots::{SlotClock, ring_key};
pub(super) use weather::Outcome;
use weather::Weather;

/// Bounces that make a crash likely enough to take the short suspicion. Each
/// report counts, whoever's datagram bounced: ours (the hint, then the probe's
/// own ping) or a helper's. Requiring a helper's would lose the fast path in a
/// two-node cluster, and "port unreachable" is the target host's own word
/// whichever member asked it.
const BOUNCES_TO_SUSPECT: u32 = 2;

/// Most probes started by unreachable hints at once.
const MAX_HINT_PROBES: usize = 4;

/// Most indirect probes run for others at once; more requests are ignored, which
/// bounds memory when a peer floods ping-reqs.
const MAX_RELAYS: usize = 256;

/// Nacks of one failed probe that make its suspicion corroborated (see the
/// module docs).
const CORROBORATING_NACKS: u32 = 2;

/// A corroborated suspicion runs out after this share of the minimum timeout.
const CORROBORATED_FLOOR: f64 = 0.5;

/// Above this measured loss nacks do not corroborate (a helper's ping to a
/// live target is lost too often).
const CORROBORATION_MAX_LOSS: f64 = 0.05;

/// Helpers drawn per helper needed: the unsuspected among them are asked first.
const HELPER_DRAWS: usize = 2;

/// Probing state: the probes this node has in flight, the indirect probes it runs
/// for others, and its local health.
#[derive(Debug, Default)]
pub(super) struct Probing {
    /// One regular probe at most, plus those started by unreachable hints.
    pub(super) probes: Vec<Probe>,
    relays: Vec<Relay>,
    /// The last sequence number a ping was sent under.
    seq: u32,
    pub(super) local_health: LocalHealth,
    /// The datagram loss this node measures on its own probes.
    pub(super) loss: LossMeter,
    /// Pings read before this instant are the backlog of a stall of this node
    /// (see `on_stall`) and are not answered.
    pub(super) backlog_until: Option<Instant>,
    /// Whether the network as a whole is failing this node now.
    pub(super) weather: Weather,
    /// Which member the round-robin probes when (`slots`).
    pub(super) slots: ProbeSlots,
}

impl Probing {
    /// A fresh sequence number for a ping.
    pub(super) fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Whether the round-robin probe is in flight (a patient one waits aside).
    pub(super) fn regular_in_flight(&self) -> bool {
        self.probes.iter().any(Probe::holds_the_cycle)
    }

    /// When a probe in flight next needs attention: its indirect round, or its
    /// verdict. An answered probe's verdict is settled and waits for the next
    /// wakeup after its end (the next probe's deadline at the latest): after an
    /// early probe (`probe_early`) its end comes before that deadline, and would
    /// otherwise take a wakeup of its own.
    pub(super) fn next_step_at(&self) -> Option<Instant> {
        self.probes
            .iter()
            .filter(|probe| !probe.acked)
            .map(|probe| {
                if probe.indirect_sent {
                    probe.ends_at
                } else {
                    probe.indirect_at.min(probe.ends_at)
                }
            })
            .min()
    }

    /// The probe in flight under `seq`.
    fn probe_mut(&mut self, seq: u32) -> Option<&mut Probe> {
        self.probes.iter_mut().find(|probe| probe.seq == seq)
    }

    /// When the first nack for someone else's indirect probe is owed.
    pub(super) fn next_nack_at(&self) -> Option<Instant> {
        self.relays.iter().map(|relay| relay.nack_at).min()
    }
}

/// A probe in flight: ping, then `k` ping-reqs at `indirect_at`, then a verdict
/// at `ends_at`. One regular probe runs at a time; probes started by unreachable
/// hints run beside it.
#[derive(Clone, Debug)]
pub(super) struct Probe {
    seq: u32,
    target: NodeName,
    target_addr: SocketAddr,
    /// The incarnation probed; a suspicion names it.
    incarnation: u64,
    /// Part of the round-robin cycle (as opposed to started by an unreachable hint).
    regular: bool,
    indirect_at: Instant,
    ends_at: Instant,
    acked: bool,
    /// Acked before the indirect round: the direct ping and its ack both arrived.
    direct_acked: bool,
    indirect_sent: bool,
    nacks_expected: u32,
    nacks: u32,
    /// "Port unreachable" reports for the target: our own hints plus helpers' reports.
    bounces: u32,
    /// Whether the bounces already led to a (short) suspicion.
    fast_suspected: bool,
    sent_at: Instant,
    /// Waits for an answer known to come late, without helpers (see `lateness`).
    patient: bool,
    /// Answered, but after a plain probe would have ended.
    answered_late: bool,
}

/// How late a wakeup may serve its probe deadline's slot: a little late is
/// how real timers fire (tokio's have a millisecond's grain); later, the
/// probe would end too soon after it for its helpers' nacks to come back.
const LATE_WAKEUP: Duration = Duration::from_millis(5);

/// Whether a finished probe tells something about this node's own health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// The target answered.
    Acked,
    /// The target did not answer, but helpers said so too: its problem.
    Failed,
    /// The target did not answer and no helper's nack came back either: this
    /// node may be the one with the bad network (Lifeguard). One nack is enough
    /// to clear it, so helpers that are themselves dead (a rack lost at once) do
    /// not slow the survivors' probing.
    FailedWithMissingNacks,
}

impl Probe {
    /// The round-robin probe the cycle waits on: regular, and not a patient one
    /// (those wait aside for a member known to answer late).
    fn holds_the_cycle(&self) -> bool {
        self.regular && !self.patient
    }

    fn verdict(&self) -> Verdict {
        if self.acked {
            Verdict::Acked
        } else if self.nacks_expected > 0 && self.nacks == 0 {
            Verdict::FailedWithMissingNacks
        } else {
            Verdict::Failed
        }
    }
}

/// An indirect probe run for another member: when our ping's ack comes back it is
/// relayed; if nothing comes by `nack_at`, a nack is sent instead.
#[derive(Clone, Debug)]
struct Relay {
    seq: u32,
    requester: SocketAddr,
    requester_seq: u32,
    target: NodeName,
    target_addr: SocketAddr,
    sent_at: Instant,
    nack_at: Instant,
}

/// Lifeguard's local health multiplier: rises when this node shows signs of its own
/// trouble (missed nacks, having to refute a suspicion of itself, stalls), falls
/// with each successful probe; probe interval and timeout stretch by `1 + score`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalHealth {
    score: u32,
}

impl LocalHealth {
    /// The current score, `0` when healthy.
    pub fn score(self) -> u32 {
        self.score
    }

    pub(super) fn worsen(&mut self, max: u32) {
        self.score = (self.score + 1).min(max);
    }

    pub(super) fn improve(&mut self) {
        self.score = self.score.saturating_sub(1);
    }

    /// `duration · (1 + score)`.
    pub(super) fn scale(self, duration: Duration) -> Duration {
        duration * (self.score + 1)
    }
}

/// This node's estimate of the loss of a datagram on its paths: from the share
/// of its round-robin probes whose direct ping was acked before the indirect
/// round. A round trip is two datagrams, so with independent loss `p` it
/// succeeds with `(1 - p)²`: the estimate is `1 - sqrt(success)`, the success
/// rate being an exponentially weighted average over the last ~`1 / WEIGHT`
/// probes (a few seconds at the default probe interval).
///
/// A crashed member counts as loss until it is declared dead (it is probed
/// about once per cluster round by each node), which is why what it scales
/// starts only above [`LossMeter::TOLERATED`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct LossMeter {
    /// Weighted share of direct round trips that succeeded, `1.0` at the start.
    delivered: f64,
}

impl Default for LossMeter {
    fn default() -> Self {
        Self { delivered: 1.0 }
    }
}

impl LossMeter {
    /// Weight of the newest probe in the average.
    const WEIGHT: f64 = 1.0 / 32.0;
    /// Loss the default timeouts already ride out (10 % loss for an hour
    /// declares no one offline): below it nothing is stretched.
    pub(super) const TOLERATED: f64 = 0.1;
    /// The estimate never goes above this, so the stretches stay bounded even
    /// when every probe fails (this node cut off, or its peers gone).
    const MAX_LOSS: f64 = 0.75;

    pub(super) fn record(&mut self, direct_ack: bool) {
        let sample = if direct_ack { 1.0 } else { 0.0 };
        self.delivered += Self::WEIGHT * (sample - self.delivered);
    }

    /// The estimated loss of one datagram, `0.0..=MAX_LOSS`.
    pub(super) fn loss(self) -> f64 {
        (1.0 - self.delivered.max(0.0).sqrt()).clamp(0.0, Self::MAX_LOSS)
    }

    /// How much longer than without loss a suspicion waits:
    /// `((1 - TOLERATED) / (1 - loss))²`, at least 1. Squared because a
    /// refutation takes two trips through the lossy network: the news of the
    /// suspicion to the suspect, its refutation back to the accusers.
    pub(super) fn suspicion_stretch(self) -> f64 {
        ((1.0 - Self::TOLERATED) / (1.0 - self.loss()))
            .powi(2)
            .max(1.0)
    }
}

impl Node {
    /// The OS says nothing listens at `addr`: see [`Node::handle_unreachable`].
    pub(super) fn unreachable(&mut self, now: Instant, addr: SocketAddr) {
        let mut used = self.relay_bounced(addr);
        let member = self
            .member_rows()
            .find(|row| row.addr == addr)
            .map(|row| row.node.clone());
        if let Some(target) = member {
            used = true;
            self.last_chance_bounced(now, &target);
            match self
                .probing
                .probes
                .iter()
                .position(|probe| probe.target == target)
            {
                Some(at) => self.record_bounce(now, at),
                None => self.start_hint_probe(now, target),
            }
        }
        if !used {
            self.stats.count_drop(DropReason::UnknownAddress);
            debug!(%addr, "unreachable hint for an address no member uses");
        }
    }

    pub(super) fn handle_ping(&mut self, now: Instant, from: SocketAddr, seq: u32) {
        if self.probing.backlog_until.is_some_and(|until| now < until) {
            // Waited unread while this node stalled: its sender gave up on it
            // long ago. An ack now would only tell it that this node answers
            // seconds late, and it would wait up to `MAX_PATIENCE` for this
            // node's answers from then on (see `lateness`).
            debug!(%from, seq, "ping from before a stall left unanswered");
            return;
        }
        self.send(from, Message::Ack { seq });
    }

    /// An ack answers a probe of ours, or one run for someone else (relayed to
    /// them), or a last-chance ping, or a ping announcing our leave; anything
    /// else came too late.
    pub(super) fn handle_ack(&mut self, now: Instant, seq: u32) {
        let in_time = self.probing.local_health.scale(self.config.probe_interval);
        if let Some(probe) = self.probing.probe_mut(seq) {
            probe.acked = true;
            probe.direct_acked |= !probe.indirect_sent;
            let rtt = now.saturating_duration_since(probe.sent_at);
            probe.answered_late |= rtt > in_time;
            let target = probe.target.clone();
            // A direct answer is judged against the plain interval, not the
            // stretched one (see `lateness`, "An answer in time"). One that
            // came after helpers were asked may be a helper's relay, timed
            // by the probe's stretched schedule: judged as the probe is.
            let helped = probe.indirect_sent && !probe.patient;
            let interval = if helped {
                in_time
            } else {
                self.config.probe_interval
            };
            self.lateness.answered(now, target, rtt, interval);
            return;
        }
        if let Some(at) = self
            .probing
            .relays
            .iter()
            .position(|relay| relay.seq == seq)
        {
            let relay = self.probing.relays.swap_remove(at);
            self.send(
                relay.requester,
                Message::Ack {
                    seq: relay.requester_seq,
                },
            );
            return;
        }
        if self.last_chance_acked(seq) || self.leave_acked(seq) {
            return;
        }
        self.stats.late_acks += 1;
        let _ = self.lateness.late_ack(now, seq);
    }

    /// A helper could not reach our probe's target either.
    pub(super) fn handle_nack(&mut self, seq: u32) {
        if let Some(probe) = self.probing.probe_mut(seq) {
            probe.nacks += 1;
        } else {
            let _ = self.last_chance_helper_heard(seq);
        }
    }

    /// Another member asks this one to ping `target` for it.
    pub(super) fn handle_ping_req(
        &mut self,
        now: Instant,
        from: SocketAddr,
        requester_seq: u32,
        target: NodeName,
        target_addr: SocketAddr,
    ) {
        if target == self.name {
            // Asked to probe ourselves: we are evidently here.
            self.send(from, Message::Ack { seq: requester_seq });
            return;
        }
        if self.probing.relays.len() >= MAX_RELAYS {
            debug!(%from, "too many indirect probes in flight: request ignored");
            return;
        }
        let seq = self.probing.next_seq();
        // Nack before the requester's period ends, so it can tell its own trouble
        // from the target's (Lifeguard).
        let window = self
            .config
            .probe_interval
            .saturating_sub(self.config.probe_timeout);
        self.probing.relays.push(Relay {
            seq,
            requester: from,
            requester_seq,
            target: target.clone(),
            target_addr,
            sent_at: now,
            nack_at: now + window.mul_f64(0.8),
        });
        self.send(target_addr, Message::Ping { seq, target });
    }

    /// A member asked to probe for us reports that the target bounced for it too.
    pub(super) fn handle_bounced(&mut self, now: Instant, seq: u32) {
        if let Some(at) = self
            .probing
            .probes
            .iter()
            .position(|probe| probe.seq == seq)
        {
            self.probing.probes[at].nacks += 1;
            self.record_bounce(now, at);
        } else {
            let _ = self.last_chance_helper_heard(seq);
        }
    }

    /// A helper's ping for someone else's indirect probe bounced: tell the requester.
    fn relay_bounced(&mut self, addr: SocketAddr) -> bool {
        let mut any = false;
        let mut i = 0;
        while i < self.probing.relays.len() {
            if self.probing.relays[i].target_addr == addr {
                let relay = self.probing.relays.swap_remove(i);
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

    fn record_bounce(&mut self, now: Instant, at: usize) {
        let probe = &mut self.probing.probes[at];
        probe.bounces += 1;
        if !probe.indirect_sent && !probe.acked {
            self.probe_indirectly(at);
        }
        let probe = &self.probing.probes[at];
        if probe.bounces >= BOUNCES_TO_SUSPECT && !probe.acked && !probe.fast_suspected {
            let (target, incarnation) = (probe.target.clone(), probe.incarnation);
            self.probing.probes[at].fast_suspected = true;
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
        let hint_probes = self.probing.probes.iter().filter(|p| !p.regular).count();
        if self.left || hint_probes >= MAX_HINT_PROBES {
            return;
        }
        if let Some(at) = self.start_probe(now, target, None) {
            self.record_bounce(now, at);
        }
    }

    pub(super) fn run_probes(&mut self, now: Instant) {
        for at in 0..self.probing.probes.len() {
            let probe = &self.probing.probes[at];
            if !probe.acked && !probe.indirect_sent && now >= probe.indirect_at {
                self.probe_indirectly(at);
            }
        }
        let mut at = 0;
        while at < self.probing.probes.len() {
            if now >= self.probing.probes[at].ends_at {
                let probe = self.probing.probes.swap_remove(at);
                self.finish_probe(now, probe);
            } else {
                at += 1;
            }
        }
        let probing = self.probing.regular_in_flight();
        if !probing && !self.left && self.timers.is_expired(Timer::Probe, now) {
            // From the deadline, not from `now`: a real timer always fires a
            // little late, and the next slot start after `now + interval` is
            // then the one after next. Probing every other slot halved the
            // probe rate on real processes and, with an even number of
            // members, left half of them unprobed by this node (a killed
            // process went unnoticed for seconds). The probe started late
            // ends on the next deadline, a little less than an interval
            // after it (see `start_probe`); a deadline missed by more than
            // `LATE_WAKEUP` (a busy or stalled process) would leave it too
            // short a wait for its helpers' nacks, so the schedule starts
            // again from `now`, skipping a slot.
            let due = self
                .timers
                .get(Timer::Probe)
                .filter(|&due| now <= due + LATE_WAKEUP)
                .unwrap_or(now);
            self.next_regular_probe(now, due);
        }
    }

    /// Runs the next round-robin probe now, up to half an interval before its
    /// deadline, if the probe in flight is answered: the node is awake for a
    /// datagram anyway, and the probe at its own deadline would cost a wakeup of
    /// its own. A quiet node's wakeups are most of what it costs (BENCHMARKS.md,
    /// "idle cost"); pings from others come at random times, and in the
    /// simulator about half of the probe deadlines find one in the half interval
    /// before them (a quiet node of 30: 20.4 wakeups a second before, 17.3 after).
    ///
    /// The schedule keeps its grid: the probe after this one is due one interval
    /// after this one's deadline, not after now. So the node probes exactly as
    /// often as before, and no member is probed later than on time. An
    /// unanswered probe is left to its deadline, whose verdict ending it early
    /// would change.
    pub(super) fn probe_early(&mut self, now: Instant) {
        let Some(due) = self.timers.get(Timer::Probe) else {
            return;
        };
        let interval = self.probing.local_health.scale(self.config.probe_interval);
        let early = due.saturating_duration_since(now);
        if self.left || early.is_zero() || early > interval / 2 || self.members.len() == 0 {
            return;
        }
        // One probe at most holds the cycle. Answered, its verdict is known:
        // what its deadline would do, done now.
        if let Some(at) = self.probing.probes.iter().position(Probe::holds_the_cycle) {
            if !self.probing.probes[at].acked {
                return;
            }
            let probe = self.probing.probes.swap_remove(at);
            self.finish_probe(now, probe);
        }
        self.next_regular_probe(now, due);
    }

    /// Starts the round-robin cycle's next probe now, and schedules the one after
    /// it an interval after `due` (its deadline; `now` when it is not early).
    fn next_regular_probe(&mut self, now: Instant, due: Instant) {
        let interval = self.probing.local_health.scale(self.config.probe_interval);
        let own = ring_key(&self.name);
        let clock = SlotClock::new(self.config.probe_interval, own);
        let wall = |at: Instant| {
            let nanos = self.wall_clock(at).timestamp_nanos_opt().unwrap_or(0);
            u128::try_from(nanos).unwrap_or(0)
        };
        // The next probe at the start of a slot: after a start (or at a
        // slower rate) up to an interval later, on time from then on.
        let next_at = {
            let at = due + interval;
            let wait = u64::try_from(clock.wait(wall(at))).unwrap_or(0);
            at + Duration::from_nanos(wait)
        };
        let slot = clock.slot(wall(due));
        let stretched = self.probing.local_health.score() > 0;
        let next = self
            .probing
            .slots
            .target(own, slot, stretched)
            .filter(|&id| self.members.contains(id))
            .or_else(|| self.members.next_probe_target(&mut self.rng));
        match next
            .and_then(|id| self.tracker.by_id(id))
            .map(|row| row.node.clone())
        {
            // A patient probe of it still waits: the next one is its answer.
            Some(target) if self.probing.probes.iter().any(|p| p.target == target) => {
                self.timers.set(Timer::Probe, next_at);
            }
            Some(target) => {
                let _ = self.start_probe(now, target, Some(next_at));
            }
            None => self.timers.set(Timer::Probe, next_at),
        }
    }

    /// Pings `target` now; its verdict comes one (health-scaled) interval later.
    /// A regular probe (of the round-robin cycle) comes with the deadline of the
    /// next one, `next_at`. Returns the probe's index.
    fn start_probe(
        &mut self,
        now: Instant,
        target: NodeName,
        next_at: Option<Instant>,
    ) -> Option<usize> {
        let row = self.tracker.get(&target)?;
        let (addr, incarnation) = (row.addr, row.incarnation);
        let seq = self.probing.next_seq();
        let regular = next_at.is_some();
        let interval = self.probing.local_health.scale(self.config.probe_interval);
        let timeout = self.probing.local_health.scale(self.config.probe_timeout);
        let patience = self.lateness.patience(&target);
        self.ping(now, &target, seq);
        self.probing.probes.push(Probe {
            seq,
            target,
            target_addr: addr,
            incarnation,
            regular,
            indirect_at: now + timeout,
            // A regular probe ends on the next one's deadline at the latest,
            // so that the deadline finds the cycle free (`Node::wakes`).
            ends_at: match (patience, next_at) {
                (Some(patience), _) => now + patience.max(interval),
                (None, Some(next_at)) => next_at.min(now + interval),
                (None, None) => now + interval,
            },
            acked: false,
            direct_acked: false,
            // Helpers' pings would be answered as late as ours.
            indirect_sent: patience.is_some(),
            nacks_expected: 0,
            nacks: 0,
            bounces: 0,
            fast_suspected: false,
            sent_at: now,
            patient: patience.is_some(),
            answered_late: false,
        });
        if let Some(at) = next_at {
            self.timers.set(Timer::Probe, at);
        }
        self.stats.probes_sent += 1;
        Some(self.probing.probes.len() - 1)
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
        let probe = &self.probing.probes[at];
        let (seq, target, target_addr) = (probe.seq, probe.target.clone(), probe.target_addr);
        let asked = self.ask_helpers(seq, &target, target_addr);
        self.send(target_addr, Message::Ping { seq, target });
        let probe = &mut self.probing.probes[at];
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
        // Helpers that are themselves dead (a rack lost at once) waste the
        // round and make it silent: suspected members are asked last.
        let wanted = self.config.indirect_probes;
        let mut helpers = self.sample_members(wanted * HELPER_DRAWS, self.tracker.id_of(target));
        let suspected = |node: &Self, id| {
            node.tracker
                .by_id(id)
                .is_none_or(|row| row.health == Health::Suspect)
        };
        let mut kept = 0;
        for at in 0..helpers.len() {
            if !suspected(self, helpers[at]) {
                helpers.swap(kept, at);
                kept += 1;
            }
        }
        helpers.truncate(wanted);
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
                self.stats.indirect_probes_sent += 1;
            }
        }
        self.recycle(helpers);
        asked
    }

    fn finish_probe(&mut self, now: Instant, probe: Probe) {
        let suspected = self
            .tracker
            .get(&probe.target)
            .is_some_and(|row| row.health == Health::Suspect);
        if probe.holds_the_cycle() && !suspected {
            // Hint probes go to members the OS already reported gone: they would
            // count a crash as loss. A member known to answer late is slow, not
            // lossy: waiting for it measures nothing about the network. A member
            // already suspected counts once, not at every probe until its verdict:
            // behind a partition or a crash each far member then weighs one failed
            // probe, while random loss still shows in every member's probes.
            self.probing.loss.record(probe.direct_acked);
        }
        if probe.holds_the_cycle() {
            let outcome = match probe.verdict() {
                Verdict::Acked => Outcome::Answered,
                Verdict::Failed => Outcome::Failed,
                Verdict::FailedWithMissingNacks => Outcome::Silent,
            };
            let was_stormy = self.probing.weather.is_stormy();
            self.probing.weather.record(now, outcome);
            if self.probing.weather.is_stormy() != was_stormy {
                debug!(storm = !was_stormy, "the weather changed");
            }
        }
        match probe.verdict() {
            // Answered late because this node's own path is slow: its own trouble.
            Verdict::Acked if probe.answered_late && self.lateness.own_path_late() => self
                .probing
                .local_health
                .worsen(self.config.max_local_health),
            // Answered late by a slow member: says nothing about this node.
            Verdict::Acked if probe.answered_late => {}
            Verdict::Acked => self.probing.local_health.improve(),
            verdict => {
                self.stats.probes_failed += 1;
                self.lateness
                    .probe_failed(probe.seq, probe.target.clone(), probe.sent_at);
                // In a storm silence is the network's, already known: verdicts
                // wait (see `weather`), and probing slower would only delay
                // the crashes to find once it is over.
                if verdict == Verdict::FailedWithMissingNacks && !self.probing.weather.is_stormy() {
                    self.probing
                        .local_health
                        .worsen(self.config.max_local_health);
                }
                debug!(target = %probe.target, ?verdict, "probe failed");
                // A silent probe in a storm says nothing about its target: an
                // accusation would only cost a refutation (and a member whose
                // own inbound path is slow would accuse everyone it probes).
                if verdict == Verdict::FailedWithMissingNacks && self.probing.weather.is_stormy() {
                    return;
                }
                self.suspect(now, &probe.target, probe.incarnation);
                let corroborated = probe.nacks >= CORROBORATING_NACKS
                    && !self.probing.weather.is_stormy()
                    && self.probing.loss.loss() <= CORROBORATION_MAX_LOSS;
                if corroborated
                    && let Some(suspicion) = self.suspicions.get_mut(&probe.target)
                    && suspicion.incarnation == probe.incarnation
                {
                    let floor = suspicion.min().mul_f64(CORROBORATED_FLOOR);
                    suspicion.cap_deadline(now + floor);
                }
            }
        }
    }

    /// Nacks the indirect probes run for others whose window ran out.
    pub(super) fn run_relays(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.probing.relays.len() {
            if self.probing.relays[i].nack_at <= now {
                let relay = self.probing.relays.swap_remove(i);
                self.send(
                    relay.requester,
                    Message::Nack {
                        seq: relay.requester_seq,
                    },
                );
                // Its answer may still come, late: then this node knows the
                // target is slow before probing it itself (see `lateness`).
                self.lateness
                    .ping_unanswered(relay.seq, relay.target, relay.sent_at);
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{LocalHealth, LossMeter, Probe, Timer, Verdict};
    use crate::node::testing::*;

    /// A meter fed `probes` outcomes at a steady loss: one in `every` round trips
    /// succeeds.
    fn meter(every: usize, probes: usize) -> LossMeter {
        let mut meter = LossMeter::default();
        for i in 0..probes {
            meter.record(i % every == 0);
        }
        meter
    }

    #[test]
    fn the_loss_meter_reads_the_loss_of_one_datagram_from_round_trips() {
        assert_eq!(LossMeter::default().loss(), 0.0);
        assert_eq!(meter(1, 1000).loss(), 0.0, "every direct ack came");
        // One round trip in four succeeds: each datagram is lost half the time.
        let half = meter(4, 1000).loss();
        assert!((half - 0.5).abs() < 0.05, "{half}");
        assert_eq!(meter(usize::MAX, 1000).loss(), LossMeter::MAX_LOSS);
    }

    #[test]
    fn the_suspicion_stretch_starts_above_the_tolerated_loss_and_is_bounded() {
        assert_eq!(LossMeter::default().suspicion_stretch(), 1.0);
        // One failed probe in a healthy run (a crashed member) stretches nothing.
        let mut one_failure = meter(1, 100);
        one_failure.record(false);
        assert!(one_failure.loss() > 0.0);
        assert_eq!(one_failure.suspicion_stretch(), 1.0);
        let half = meter(4, 1000).suspicion_stretch();
        assert!((2.5..4.0).contains(&half), "{half}");
        let most = meter(usize::MAX, 1000).suspicion_stretch();
        assert!((most - (0.9f64 / 0.25).powi(2)).abs() < 1e-9, "{most}");
    }

    #[test]
    fn only_direct_acks_of_round_robin_probes_count_and_a_suspect_counts_once() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        let _ = sent(&mut node);
        let mut at = now;
        // Acked at once, then twice never answered.
        for answer in [true, false, false] {
            node.handle_timeout(at);
            let seq = sent(&mut node)
                .into_iter()
                .find_map(|(_, p)| match p.message {
                    Message::Ping { seq, .. } => Some(seq),
                    _ => None,
                })
                .expect("a probe is sent each interval");
            if answer {
                node.handle_packet(at, addr(2), &packet("peer", 0, Message::Ack { seq }, &[]));
            }
            // The next probe is at the next start of this node's slot.
            at = node
                .timers
                .get(Timer::Probe)
                .expect("the next probe is due");
            run_until(&mut node, at);
        }
        node.handle_timeout(at);
        let after_two_misses = node.measured_loss();
        assert!(after_two_misses > 0.0);
        assert_eq!(
            node.row(&name("peer")).map(|row| row.health),
            Some(Health::Suspect)
        );
        // The first miss made "peer" a suspect; the second, of a suspect, is not
        // counted (behind a partition or a crash it would be counted at every
        // probe until the verdict, and read as loss).
        let mut expected = LossMeter::default();
        for direct in [true, false] {
            expected.record(direct);
        }
        assert_eq!(after_two_misses, expected.loss());
    }

    #[test]
    fn local_health_is_bounded_and_scales_durations() {
        let mut health = LocalHealth::default();
        let base = Duration::from_millis(100);
        assert_eq!(health.scale(base), base);
        for _ in 0..20 {
            health.worsen(8);
        }
        assert_eq!(health.score(), 8);
        assert_eq!(health.scale(base), base * 9);
        health.improve();
        assert_eq!(health.score(), 7);
        for _ in 0..20 {
            health.improve();
        }
        assert_eq!(health.score(), 0);
    }

    #[test]
    fn verdict_blames_self_only_when_every_nack_goes_missing() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let mut probe = Probe {
            seq: 1,
            target: NodeName::new("t").expect("valid"),
            target_addr: "127.0.0.1:1".parse().expect("valid"),
            incarnation: 0,
            regular: true,
            indirect_at: now,
            ends_at: now,
            acked: false,
            direct_acked: false,
            indirect_sent: true,
            nacks_expected: 3,
            nacks: 3,
            bounces: 0,
            fast_suspected: false,
            sent_at: now,
            patient: false,
            answered_late: false,
        };
        assert_eq!(probe.verdict(), Verdict::Failed);
        probe.nacks = 1;
        assert_eq!(
            probe.verdict(),
            Verdict::Failed,
            "one helper answered: our network works"
        );
        probe.nacks = 0;
        assert_eq!(probe.verdict(), Verdict::FailedWithMissingNacks);
        probe.acked = true;
        assert_eq!(probe.verdict(), Verdict::Acked);
    }

    #[test]
    fn a_ping_is_acked_and_its_gossip_applied() {
        let now = epoch();
        let mut node = node(now);
        let update = alive("peer", 2, 0);
        let ping = ping_from_peer(42, "me", &[&update]);
        node.handle_packet(now, addr(2), &ping);
        let out = sent(&mut node);
        assert!(
            out.iter()
                .any(|(to, p)| *to == addr(2) && p.message == Message::Ack { seq: 42 })
        );
        assert_eq!(node.mode(), Mode::Clustered);
        let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
        assert!(matches!(&events[0], Event::Tracker(t) if t.new_row.node == name("peer")));
        assert_eq!(
            events[1],
            Event::NodeUpdate {
                node: name("peer"),
                status: NodeStatus::Online
            }
        );
        assert_eq!(events[2], Event::ModeChanged(Mode::Clustered));
    }

    #[test]
    fn unreachable_hints_for_unknown_addresses_are_counted_and_ignored() {
        let now = epoch();
        let mut node = node(now);
        node.handle_unreachable(now, addr(99));
        assert_eq!(node.stats().dropped(DropReason::UnknownAddress), 1);
        assert!(sent(&mut node).is_empty());
    }

    #[test]
    fn an_unreachable_hint_starts_a_probe_but_never_a_verdict() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        let _ = sent(&mut node);
        node.handle_unreachable(now, addr(2));
        let out = sent(&mut node);
        assert!(
            out.iter()
                .any(|(to, p)| *to == addr(2) && matches!(p.message, Message::Ping { .. }))
        );
        assert_eq!(
            node.row(&name("peer")).map(|r| r.health),
            Some(Health::Alive)
        );
    }

    /// The pings `node` sent, as (to, seq).
    fn pings_sent(node: &mut Node) -> Vec<(SocketAddr, u32)> {
        sent(node)
            .into_iter()
            .filter_map(|(to, p)| match p.message {
                Message::Ping { seq, .. } => Some((to, seq)),
                _ => None,
            })
            .collect()
    }

    /// A real timer always fires a little late. Woken up to 3 ms after every
    /// deadline, a node of four members still probes once an interval and
    /// reaches every member each round. (Counting the next slot from the late
    /// wakeup made it probe every other slot, and with four members two of
    /// them never: a process killed there went unnoticed for seconds.)
    #[test]
    fn deadlines_handled_late_keep_one_probe_an_interval_and_reach_every_member() {
        let start = epoch();
        let mut node = node(start);
        let members = ["m1", "m2", "m3", "m4"];
        let rows: Vec<Update> = (0u16..)
            .zip(members)
            .map(|(i, member)| alive(member, 10 + i, 0))
            .collect();
        let gossip: Vec<&Update> = rows.iter().collect();
        node.handle_packet(start, addr(10), &packet("m1", 0, Message::Gossip, &gossip));
        let _ = sent(&mut node);
        let interval = node.config().probe_interval;
        let rounds = 10u32;
        let end = start + interval * (4 * rounds);
        let mut probes: std::collections::BTreeMap<SocketAddr, u32> = Default::default();
        let mut now = start;
        let mut lateness = [1000, 200, 3000, 50].iter().cycle();
        while now < end {
            let late = Duration::from_micros(*lateness.next().expect("cycles"));
            now = node.poll_timeout().expect("a probing node has a deadline") + late;
            node.handle_timeout(now);
            for (to, seq) in pings_sent(&mut node) {
                *probes.entry(to).or_default() += 1;
                let member = members[usize::from(to.port() - 10)];
                node.handle_packet(now, to, &packet(member, 0, Message::Ack { seq }, &[]));
                let _ = sent(&mut node);
            }
            // No deadline is left behind to wake it again at once (a probe in
            // flight past the next one's deadline kept the node spinning).
            let next = node.poll_timeout().expect("a probing node has a deadline");
            assert!(next > now, "woken at {now:?}, due again at {next:?}");
        }
        let total: u32 = probes.values().sum();
        assert!(
            total >= 4 * rounds - 2,
            "{total} probes in {} intervals: {probes:?}",
            4 * rounds
        );
        assert_eq!(probes.len(), 4, "every member probed: {probes:?}");
        assert!(probes.values().all(|&n| n >= rounds - 1), "{probes:?}");
    }

    /// Handles every timeout of `node` before `end` (a node whose deadlines are
    /// skipped reads it as a stall of its own).
    fn run_until(node: &mut Node, end: Instant) {
        while let Some(at) = node.poll_timeout().filter(|at| *at < end) {
            node.handle_timeout(at);
        }
    }

    /// Brings `node` to `at` as a driver would: every earlier deadline handled,
    /// what it sent meanwhile dropped.
    fn wake_at(node: &mut Node, at: Instant) {
        run_until(node, at);
        let _ = sent(node);
    }

    /// A node with "peer" as its only member, its first probe (answered)
    /// started at `start` and its second, on the slot grid, at the instant
    /// returned, with the second's sequence number.
    fn probing_peer(start: Instant) -> (Node, u32, Instant) {
        let mut node = node_knowing_peer(start);
        let _ = sent(&mut node);
        node.handle_timeout(start);
        let pings = pings_sent(&mut node);
        assert_eq!(pings.len(), 1, "the first probe: {pings:?}");
        let interval = node.config().probe_interval;
        let ack = packet("peer", 0, Message::Ack { seq: pings[0].1 }, &[]);
        node.handle_packet(start + interval / 10, addr(2), &ack);
        let due = node
            .timers
            .get(Timer::Probe)
            .expect("the next probe is due");
        assert!(due >= start + interval && due < start + interval * 2);
        run_until(&mut node, due);
        node.handle_timeout(due);
        let pings = pings_sent(&mut node);
        assert_eq!(pings.len(), 1, "the second probe: {pings:?}");
        assert_eq!(
            node.timers.get(Timer::Probe),
            Some(due + interval),
            "on the grid"
        );
        (node, pings[0].1, due)
    }

    fn gossip_from_peer() -> Vec<u8> {
        packet("peer", 0, Message::Gossip, &[])
    }

    #[test]
    fn a_datagram_late_in_the_interval_brings_the_answered_probe_cycle_forward() {
        let (mut node, seq, now) = probing_peer(epoch());
        let interval = node.config().probe_interval;
        let ack = packet("peer", 0, Message::Ack { seq }, &[]);
        wake_at(&mut node, now + interval / 10);
        node.handle_packet(now + interval / 10, addr(2), &ack);
        assert!(pings_sent(&mut node).is_empty(), "too early for the next");
        // Awake for a datagram within half an interval of the deadline: the
        // probe goes out now rather than at a wakeup of its own.
        let early = now + interval * 6 / 10;
        wake_at(&mut node, early);
        node.handle_packet(early, addr(2), &gossip_from_peer());
        let pings = pings_sent(&mut node);
        assert_eq!(pings.len(), 1, "probed early");
        assert_eq!(node.stats().probes_sent, 3);
        // The grid holds: the next probe is due an interval after the skipped
        // deadline, and that deadline wakes the node no more.
        assert_eq!(node.timers.get(Timer::Probe), Some(now + interval * 2));
        node.handle_timeout(now + interval);
        assert!(
            pings_sent(&mut node).is_empty(),
            "no second probe on the old deadline"
        );
        assert_eq!(node.local_health().score(), 0);
        // The early probe's verdict is due an interval after its ping, as any
        // probe's (a failure is found no later); once answered, it takes no
        // wakeup of its own and ends with the next probe.
        let ends: Vec<Instant> = node.probing.probes.iter().map(|p| p.ends_at).collect();
        assert_eq!(ends, [early + interval]);
        assert_eq!(
            node.timers.get(Timer::ProbeStep),
            Some(early + node.config().probe_timeout)
        );
        let ack = packet("peer", 0, Message::Ack { seq: pings[0].1 }, &[]);
        wake_at(&mut node, early + interval / 10);
        node.handle_packet(early + interval / 10, addr(2), &ack);
        assert_eq!(node.timers.get(Timer::ProbeStep), None);
        node.handle_timeout(now + interval * 2);
        assert_eq!(
            pings_sent(&mut node).len(),
            1,
            "the next probe, on the grid"
        );
        assert_eq!(node.probing.probes.len(), 1, "the answered one ended");
    }

    #[test]
    fn a_datagram_early_in_the_interval_or_an_unanswered_probe_waits_for_the_deadline() {
        let (mut node, seq, now) = probing_peer(epoch());
        let interval = node.config().probe_interval;
        // Unanswered: its verdict is the deadline's, so nothing moves.
        wake_at(&mut node, now + interval * 6 / 10);
        node.handle_packet(now + interval * 6 / 10, addr(2), &gossip_from_peer());
        assert!(pings_sent(&mut node).is_empty());
        assert_eq!(node.timers.get(Timer::Probe), Some(now + interval));
        // Answered, but more than half an interval before the deadline.
        let ack = packet("peer", 0, Message::Ack { seq }, &[]);
        wake_at(&mut node, now + interval * 4 / 10);
        node.handle_packet(now + interval * 4 / 10, addr(2), &ack);
        assert!(pings_sent(&mut node).is_empty());
        assert_eq!(node.timers.get(Timer::Probe), Some(now + interval));
        // A dropped packet changes nothing, the schedule included.
        wake_at(&mut node, now + interval * 7 / 10);
        node.handle_packet(now + interval * 7 / 10, addr(9), b"not a beethoven packet");
        assert!(pings_sent(&mut node).is_empty());
        assert_eq!(node.timers.get(Timer::Probe), Some(now + interval));
        // On time, the schedule is as it always was.
        node.handle_timeout(now + interval);
        assert_eq!(pings_sent(&mut node).len(), 1);
        assert_eq!(node.timers.get(Timer::Probe), Some(now + interval * 2));
    }
}
