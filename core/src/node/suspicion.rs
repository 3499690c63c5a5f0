//! Suspicion: a member that missed its probe is `Suspect` (still online) until a
//! timeout runs out unrefuted, then gets a last-chance check, then is declared dead.
//!
//! Lifeguard's dynamic timeout: a suspicion starts with the longest timeout. Each
//! *independent* confirmation (another member that suspected the same incarnation
//! on its own) shrinks it logarithmically toward the minimum, reached at `k`
//! confirmations. A lone, possibly mistaken suspicion therefore waits long enough
//! to be refuted, while a real failure, seen by many, is declared fast.
//!
//! # Under loss
//!
//! On a lossy network confirmations prove little: every member's probes fail
//! now and then, so a live member is suspected by several at once and its
//! suspicion runs at the minimum. What saves it is its refutation reaching every
//! accuser in time, or its answer to the last-chance check. Both take longer
//! the more datagrams are lost, so each node scales them by the loss it measures
//! itself (`LossMeter` in `probing.rs`):
//!
//! - **The estimate.** The share of this node's round-robin probes whose direct
//!   ping was acked before the indirect round, averaged over the last ~32 probes
//!   (about 5 s at the default probe interval). A round trip is two datagrams,
//!   so a success rate `s` means a loss of `p = 1 - sqrt(s)`, capped at 0.75.
//!   Available as [`Node::measured_loss`].
//! - **Timeout bounds** are multiplied by `((1 - 0.1) / (1 - p))²` when a
//!   suspicion starts, never by less than 1: nothing changes up to 10 % loss
//!   (which the defaults ride out already), ×3.2 at 50 %, ×13 at most. Squared
//!   because a refutation needs two trips through the network: the news of the
//!   suspicion to the suspect, its refutation back to the accusers.
//! - **Last-chance rounds.** A round is two pings and `k` ping-reqs, answered
//!   within a probe timeout. At a loss above 10 %, as many rounds, one after
//!   another, as it takes for a live suspect to miss all of them with a chance
//!   below 1/1000 (each round's miss chance computed from `p`), at most 8:
//!   one round up to 10 % loss, 6 at 40 %, 8 at 50 %.
//!
//! # In a storm
//!
//! The loss estimate is too slow for a brownout: it is over before the
//! estimate moves. So verdicts also wait while this node's probes end silent
//! (`weather` in `probing`): during a storm and the minimum timeout after it,
//! a suspicion that runs out starts no last-chance check; and a last-chance
//! check that fewer than two of its helpers answered (no nack, no bounce: this
//! node's own datagrams are not getting through) puts its verdict off by a
//! probe interval, at most 20 times.
//!
//! A crashed member is still found: its probes fail for everyone, so
//! confirmations take its suspicion to the (stretched) minimum, and no round
//! of its last-chance check is answered; it only takes a few seconds longer
//! (docs/benchmarks-log.md, "Loss tolerance (after)").

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tracing::debug;

use super::Node;
use super::membership::Source;
use super::probing::LossMeter;
use crate::logarithm::{ln, log10};
use crate::name::NodeName;
use crate::tracker::{Health, NodeStatus, TrackerRow};
use crate::wire::Message;

/// The timeout after `confirmations` independent confirmations.
///
/// `max - (max - min) · ln(c + 1) / ln(k + 1)`, never below `min`; with `k == 0`
/// the minimum applies at once.
pub fn suspicion_timeout(min: Duration, max: Duration, k: u32, confirmations: u32) -> Duration {
    if k == 0 || confirmations >= k || max <= min {
        return min;
    }
    let fraction = ln(f64::from(confirmations + 1)) / ln(f64::from(k + 1));
    let span = (max - min).as_secs_f64();
    let timeout = max.as_secs_f64() - span * fraction;
    Duration::from_secs_f64(timeout).max(min)
}

/// The bounds of the timeout for a cluster of `members` live nodes:
/// `min = base · max(1, log10(members))`, `max = factor · min`.
pub fn suspicion_bounds(base: Duration, factor: u32, members: usize) -> (Duration, Duration) {
    let scale = log10(members.max(1) as f64).max(1.0);
    let min = base.mul_f64(scale);
    (min, min * factor)
}

/// One running suspicion of one node.
#[derive(Debug, Clone)]
pub(super) struct Suspicion {
    /// The incarnation suspected; a higher one refutes.
    pub(super) incarnation: u64,
    started: Instant,
    min: Duration,
    max: Duration,
    k: u32,
    /// Who raised it first; not a confirmation of itself.
    origin: NodeName,
    confirmers: BTreeSet<NodeName>,
    /// Extra time granted after this node itself stalled.
    grace: Duration,
    /// The final ping sent when the timeout ran out.
    last_chance: Option<LastChance>,
    /// A deadline set by bounce evidence, earlier than the computed one.
    cap: Option<Instant>,
    /// Verdicts put off because no helper answered the last-chance check.
    silent_verdicts: u32,
}

/// Before declaring a suspect dead, this node pings it once more itself, with the
/// suspicion piggybacked. A live suspect answers with its refutation on the ack;
/// this closes the gap where the refutation's gossip missed this one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LastChance {
    seq: u32,
    /// When its first round was sent: the round trip of an ack that comes
    /// after the verdict is measured from here (see `lateness`).
    sent_at: Instant,
    until: Instant,
    acked: bool,
    /// Further rounds of pings to try, one after another, before the verdict.
    rounds_left: u32,
    /// Helpers asked in the rounds so far.
    helpers: u32,
    /// Helpers' answers (nacks, or the target's bounces): this node's
    /// datagrams get through.
    helpers_heard: u32,
}

/// Most rounds of a last-chance check, whatever the loss.
const MAX_LAST_CHANCE_ROUNDS: u32 = 8;

/// Helpers' answers to a last-chance check (all of them when fewer were
/// asked) without which its verdict is put off. Two, not one: in a burst of
/// heavy loss a single nack still slips through now and then.
const HELPERS_HEARD_TO_JUDGE: u32 = 2;

/// Most verdicts put off, one probe interval each, because too few helpers
/// answered a suspect's last-chance check (the network failing this node, not the
/// suspect: Lifeguard's nack reasoning at the verdict). Bounded, so that a node
/// cut off for good still judges in the end: about 3 s at the defaults.
const MAX_SILENT_VERDICTS: u32 = 20;

/// How many last-chance rounds make it unlikely (below `MISS`) that a live
/// suspect misses all of them at datagram loss `loss`, when each round is
/// `direct` pings and `helpers` ping-reqs: a direct round trip is two
/// datagrams, an indirect one four. One round up to the tolerated loss.
fn last_chance_rounds(loss: f64, direct: u32, helpers: u32) -> u32 {
    const MISS: f64 = 1e-3;
    if loss <= LossMeter::TOLERATED {
        return 1;
    }
    let delivered = 1.0 - loss;
    let miss_direct = (1.0 - delivered.powi(2)).powi(direct as i32);
    let miss_indirect = (1.0 - delivered.powi(4)).powi(helpers as i32);
    let miss = miss_direct * miss_indirect;
    if miss <= MISS {
        return 1;
    }
    let rounds = (ln(MISS) / ln(miss)).ceil();
    (rounds as u32).clamp(1, MAX_LAST_CHANCE_ROUNDS)
}

impl Suspicion {
    fn new(
        now: Instant,
        incarnation: u64,
        origin: NodeName,
        (min, max): (Duration, Duration),
        k: u32,
    ) -> Self {
        Self {
            incarnation,
            started: now,
            min,
            max,
            k,
            origin,
            confirmers: BTreeSet::new(),
            grace: Duration::ZERO,
            last_chance: None,
            cap: None,
            silent_verdicts: 0,
        }
    }

    /// The minimum timeout (all confirmations in), as stretched for loss.
    pub(super) fn min(&self) -> Duration {
        self.min
    }

    /// Holds the verdict until `until` at least (the network is failing this
    /// node: see `weather`): an unanswered last-chance check is dropped, and a
    /// fresh one starts once the hold is over.
    fn hold(&mut self, until: Instant) {
        if self.last_chance.is_some_and(|last| !last.acked) {
            self.last_chance = None;
        }
        self.extend_to(until);
    }

    /// Brings the deadline forward to `at` (never later than it already is).
    pub(super) fn cap_deadline(&mut self, at: Instant) {
        self.cap = Some(self.cap.map_or(at, |cap| cap.min(at)));
    }

    /// When something is due: the last-chance ping, or the verdict after it.
    fn due_at(&self) -> Instant {
        match self.last_chance {
            Some(last) => last.until,
            None => self.deadline(),
        }
    }

    /// Starts the timeout over (the suspect answered its last-chance ping: it is
    /// alive, and now knows it must refute).
    fn restart(&mut self, now: Instant) {
        self.started = now;
        self.confirmers.clear();
        self.grace = Duration::ZERO;
        self.last_chance = None;
        self.cap = None;
    }

    /// Records that `from` suspects the same incarnation. Returns whether it was a new,
    /// independent confirmation (worth re-gossiping).
    fn confirm(&mut self, from: &NodeName) -> bool {
        if *from == self.origin || self.confirmers.len() as u32 >= self.k {
            return false;
        }
        self.confirmers.insert(from.clone())
    }

    fn confirmations(&self) -> u32 {
        self.confirmers.len() as u32
    }

    /// When the suspect is declared dead unless refuted.
    pub(super) fn deadline(&self) -> Instant {
        let computed =
            self.started + suspicion_timeout(self.min, self.max, self.k, self.confirmations());
        self.cap.map_or(computed, |cap| cap.min(computed)) + self.grace
    }

    /// Gives the suspect more time because this node, not the suspect, was stalled:
    /// refutations may be waiting unread in the socket.
    pub(super) fn extend_to(&mut self, not_before: Instant) {
        let deadline = self.deadline();
        if deadline < not_before {
            self.grace += not_before - deadline;
        }
        if let Some(last) = &mut self.last_chance {
            last.until = last.until.max(not_before);
        }
    }
}

impl Node {
    /// Suspects `target` at `incarnation` because this node's own probe failed.
    pub(super) fn suspect(&mut self, now: Instant, target: &NodeName, incarnation: u64) {
        let Some(row) = self.tracker.get(target) else {
            return;
        };
        if row.incarnation != incarnation || row.status == NodeStatus::Offline {
            return;
        }
        let me = self.name.clone();
        if row.health == Health::Suspect {
            // Already suspected by someone else: ours is an independent confirmation.
            let row = row.clone();
            self.confirm_suspicion(now, &row, &me);
            return;
        }
        let suspected = row.with_health(Health::Suspect, self.wall_clock(now));
        let addr = suspected.addr;
        self.stats.suspicions_raised += 1;
        let _ = self.apply_row(now, suspected, Some(me), Source::Gossip);
        // Tell the suspect directly so it can refute before the news has spread.
        self.send(addr, Message::Gossip);
    }

    /// `from` suspects `row`, at the incarnation already suspected here. A new,
    /// independent confirmation shortens the timeout and is passed on.
    pub(super) fn confirm_suspicion(&mut self, now: Instant, row: &TrackerRow, from: &NodeName) {
        if let Some(suspicion) = self.suspicions.get_mut(&row.node)
            && suspicion.confirm(from)
        {
            self.push_gossip(now, row.clone(), Some(from.clone()));
        }
    }

    /// Starts, keeps or ends the suspicion timer of a node after its row changed.
    pub(super) fn track_suspicion(
        &mut self,
        now: Instant,
        row: &TrackerRow,
        origin: Option<NodeName>,
    ) {
        // A node that left judges nobody: the members it left keep the watch.
        if row.health != Health::Suspect || self.left {
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
        let (min, max) = suspicion_bounds(
            self.config.suspicion_min,
            self.config.suspicion_max_factor,
            members,
        );
        let stretch = self.probing.loss.suspicion_stretch();
        let bounds = (min.mul_f64(stretch), max.mul_f64(stretch));
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

    /// When the first suspicion is due (a last-chance ping or a verdict).
    pub(super) fn next_suspicion_due(&self) -> Option<Instant> {
        self.suspicions.values().map(Suspicion::due_at).min()
    }

    /// Expired suspicions get a last-chance check: rounds of two pings and `k`
    /// members asked to ping, as many as the measured loss needs (one without
    /// loss), one after another; those still unanswered after it are declared dead.
    pub(super) fn run_suspicions(&mut self, now: Instant) {
        let due: Vec<NodeName> = self
            .suspicions
            .iter()
            .filter(|(_, suspicion)| suspicion.due_at() <= now)
            .map(|(name, _)| name.clone())
            .collect();
        let hold = self.verdicts_held_until(now);
        for name in due {
            let Some(suspicion) = self.suspicions.get_mut(&name) else {
                continue;
            };
            if let Some(until) = hold
                && !suspicion.last_chance.is_some_and(|last| last.acked)
            {
                debug!(node = %name, "verdict held: the network is failing this node");
                suspicion.hold(until);
                continue;
            }
            match suspicion.last_chance {
                Some(last) if last.acked => {
                    if let Some(suspicion) = self.suspicions.get_mut(&name) {
                        suspicion.restart(now);
                    }
                }
                Some(last) if last.rounds_left > 0 => {
                    self.last_chance_round(now, &name, last.seq, last.rounds_left - 1);
                }
                None => {
                    let seq = self.probing.next_seq();
                    let rounds = last_chance_rounds(
                        self.probing.loss.loss(),
                        2,
                        self.config.indirect_probes as u32,
                    );
                    self.last_chance_round(now, &name, seq, rounds - 1);
                }
                Some(last)
                    if last.helpers_heard < last.helpers.min(HELPERS_HEARD_TO_JUDGE)
                        && suspicion.silent_verdicts < MAX_SILENT_VERDICTS =>
                {
                    // Not the suspect, and too few helpers answered: this
                    // node's own datagrams are not getting through; try again.
                    debug!(node = %name, "helpers silent to the last-chance check: verdict put off");
                    suspicion.silent_verdicts += 1;
                    suspicion.hold(now + self.config.probe_interval);
                }
                Some(last) => {
                    let incarnation = suspicion.incarnation;
                    // An ack that comes after the verdict shows the suspect
                    // alive but slow: kept like a failed probe, it makes this
                    // node patient with it from then on (see `lateness`).
                    self.lateness
                        .ping_unanswered(last.seq, name.clone(), last.sent_at);
                    self.declare_dead(now, &name, incarnation);
                }
            }
        }
    }

    /// Until when verdicts wait because the network as a whole is failing this
    /// node (see `weather`): during a storm, re-checked every probe interval;
    /// after it, for the minimum suspicion timeout, so that refutations and
    /// last-chance answers get through again before anyone is judged.
    fn verdicts_held_until(&self, now: Instant) -> Option<Instant> {
        let (grace, _) = suspicion_bounds(
            self.config.suspicion_min,
            self.config.suspicion_max_factor,
            self.tracker.online_count(),
        );
        self.probing
            .weather
            .hold(now, self.config.probe_interval, grace)
    }

    /// One round of the last-chance check of `name`, answered under `seq` (the
    /// same for every round, so a late ack of an earlier round still counts).
    fn last_chance_round(&mut self, now: Instant, name: &NodeName, seq: u32, rounds_left: u32) {
        let timeout = self.probing.local_health.scale(self.config.probe_timeout);
        // A suspect known to answer late is waited for (see `lateness`), and
        // helpers, who would hear from it as late, are not asked.
        let patience = self.lateness.patience(name);
        let until = now + patience.map_or(timeout, |patience| patience.max(timeout));
        // Twice directly, and through `k` others: lost datagrams must not
        // decide a death.
        self.ping(now, name, seq);
        self.ping(now, name, seq);
        let mut asked = 0;
        if let Some(addr) = self.tracker.get(name).map(|row| row.addr)
            && patience.is_none()
        {
            asked = self.ask_helpers(seq, name, addr);
        }
        if let Some(suspicion) = self.suspicions.get_mut(name) {
            // Earlier rounds of this check (same `seq`) count.
            let (sent_at, helpers, helpers_heard) = suspicion
                .last_chance
                .filter(|last| last.seq == seq)
                .map_or((now, 0, 0), |last| {
                    (last.sent_at, last.helpers, last.helpers_heard)
                });
            suspicion.last_chance = Some(LastChance {
                seq,
                sent_at,
                until,
                acked: false,
                rounds_left,
                helpers: helpers + asked,
                helpers_heard,
            });
        }
    }

    /// A helper of a last-chance check under `seq` answered (a nack or a
    /// bounce): this node's datagrams get through. Returns whether one matched.
    pub(super) fn last_chance_helper_heard(&mut self, seq: u32) -> bool {
        if let Some(last) = self
            .suspicions
            .values_mut()
            .filter_map(|suspicion| suspicion.last_chance.as_mut())
            .find(|last| last.seq == seq)
        {
            last.helpers_heard += 1;
            return true;
        }
        false
    }

    /// An ack under `seq` answers a last-chance ping: the suspect is alive. Returns
    /// whether one did.
    pub(super) fn last_chance_acked(&mut self, seq: u32) -> bool {
        if let Some(last) = self
            .suspicions
            .values_mut()
            .filter_map(|suspicion| suspicion.last_chance.as_mut())
            .find(|last| last.seq == seq)
        {
            last.acked = true;
            return true;
        }
        false
    }

    /// The last-chance ping of an already suspected member bounced: it is gone.
    pub(super) fn last_chance_bounced(&mut self, now: Instant, target: &NodeName) {
        let Some(suspicion) = self.suspicions.get(target) else {
            return;
        };
        if suspicion.last_chance.is_some_and(|last| !last.acked) {
            let incarnation = suspicion.incarnation;
            debug!(node = %target, "last-chance ping bounced");
            self.declare_dead(now, target, incarnation);
        }
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
        self.stats.deaths_declared += 1;
        let _ = self.apply_row(now, dead, None, Source::Gossip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::node::testing::{self, addr, epoch, name, node_knowing_peer, packet, sent};
    use std::collections::BTreeMap;

    const MIN: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(4);

    #[test]
    fn last_chance_rounds_grow_with_loss_above_the_tolerated_and_are_capped() {
        assert_eq!(last_chance_rounds(0.0, 2, 3), 1);
        assert_eq!(last_chance_rounds(LossMeter::TOLERATED, 2, 3), 1);
        let rounds: Vec<u32> = [0.2, 0.3, 0.4, 0.5, 0.75]
            .into_iter()
            .map(|loss| last_chance_rounds(loss, 2, 3))
            .collect();
        assert_eq!(rounds, [2, 4, 6, 8, 8]);
        assert_eq!(last_chance_rounds(0.5, 2, 0), MAX_LAST_CHANCE_ROUNDS);
    }

    /// A node whose probes measured `loss` (one direct round trip in `every`).
    fn lossy_node_suspecting_peer(now: Instant, every: usize) -> Node {
        let mut node = node_knowing_peer(now);
        for i in 0..1000 {
            node.probing.loss.record(i % every == 0);
        }
        let suspected = testing::suspect("peer", 2, 0, "other");
        node.handle_packet(
            now,
            addr(3),
            &packet("other", 0, Message::Gossip, &[&suspected]),
        );
        node
    }

    #[test]
    fn a_node_that_measures_heavy_loss_gives_a_suspect_longer_and_several_last_chance_rounds() {
        let now = epoch();
        let peer = name("peer");
        let quiet = lossy_node_suspecting_peer(now, 1);
        let mut lossy = lossy_node_suspecting_peer(now, 4);
        let (quiet_deadline, lossy_deadline) = (
            quiet.suspicions[&peer].deadline(),
            lossy.suspicions[&peer].deadline(),
        );
        let stretch = (lossy_deadline - now).as_secs_f64() / (quiet_deadline - now).as_secs_f64();
        assert!((2.5..4.0).contains(&stretch), "{stretch}");

        // Nothing answers: pings under one sequence number, round after round,
        // then the verdict.
        let _ = sent(&mut lossy);
        let mut pings = BTreeMap::<u32, u32>::new();
        while lossy
            .row(&peer)
            .is_some_and(|row| row.health == Health::Suspect)
        {
            let at = lossy.poll_timeout().expect("the suspicion is due");
            lossy.handle_timeout(at);
            for (to, packet) in sent(&mut lossy) {
                if let (true, Message::Ping { seq, .. }) = (to == addr(2), packet.message) {
                    *pings.entry(seq).or_default() += 1;
                }
            }
        }
        assert_eq!(lossy.row(&peer).map(|row| row.health), Some(Health::Dead));
        let last_chance = pings.values().max().copied().unwrap_or(0);
        let expected = last_chance_rounds(lossy.measured_loss(), 2, 3);
        assert!(expected > 1);
        assert_eq!(last_chance, 2 * expected, "two pings a round");
    }

    #[test]
    fn a_suspect_that_answers_a_later_last_chance_round_is_not_declared_dead() {
        let now = epoch();
        let peer = name("peer");
        let mut node = lossy_node_suspecting_peer(now, 4);
        let rounds_left = |node: &Node| node.suspicions[&peer].last_chance.map(|l| l.rounds_left);
        let mut at = now;
        let mut first = None;
        // Until the third round is in flight.
        while first.is_none_or(|first: u32| rounds_left(&node) != Some(first - 2)) {
            at = node.poll_timeout().expect("the suspicion is due");
            node.handle_timeout(at);
            let _ = sent(&mut node);
            first = first.or(rounds_left(&node));
        }
        let seq = node.suspicions[&peer]
            .last_chance
            .map(|last| last.seq)
            .expect("in its third round");
        node.handle_packet(at, addr(2), &packet("peer", 0, Message::Ack { seq }, &[]));
        let until = node.suspicions[&peer].due_at();
        node.handle_timeout(until);
        assert_eq!(node.row(&peer).map(|row| row.health), Some(Health::Suspect));
        assert!(
            node.suspicions[&peer].last_chance.is_none(),
            "the timeout starts over"
        );
    }

    #[test]
    fn a_node_that_left_neither_pings_a_suspect_nor_declares_it_dead() {
        let now = epoch();
        let peer = name("peer");
        let mut node = node_knowing_peer(now);
        node.leave(now).expect("a member can leave");
        let _ = sent(&mut node);
        while node.poll_event().is_some() {}
        // A suspicion of the peer still reaches it, riding on a late packet.
        let rumour = testing::suspect("peer", 2, 0, "other");
        node.handle_packet(
            now,
            addr(3),
            &packet("other", 0, Message::Gossip, &[&rumour]),
        );
        let mut at = now;
        let until = now + Duration::from_secs(60);
        let mut pinged = 0;
        while let Some(next) = node.poll_timeout().filter(|next| *next <= until) {
            at = next.max(at);
            node.handle_timeout(at);
            pinged += sent(&mut node)
                .iter()
                .filter(|(to, p)| *to == addr(2) && matches!(p.message, Message::Ping { .. }))
                .count();
        }
        assert_eq!(pinged, 0, "a node that left checks nobody");
        assert_ne!(node.row(&peer).map(|row| row.health), Some(Health::Dead));
        let offline = std::iter::from_fn(|| node.poll_event()).any(|event| {
            matches!(event, crate::Event::NodeUpdate { node, status } if node == peer && status == crate::NodeStatus::Offline)
        });
        assert!(!offline, "its subscribers hear no verdict of its own");
    }

    #[test]
    fn timeout_starts_at_max_and_reaches_min_at_k() {
        assert_eq!(suspicion_timeout(MIN, MAX, 3, 0), MAX);
        assert_eq!(suspicion_timeout(MIN, MAX, 3, 3), MIN);
        assert_eq!(suspicion_timeout(MIN, MAX, 3, 10), MIN);
        // ln(2)/ln(4) = 1/2: halfway after one of three confirmations
        let one = suspicion_timeout(MIN, MAX, 3, 1);
        assert!((one.as_secs_f64() - 2.5).abs() < 1e-9, "{one:?}");
        let two = suspicion_timeout(MIN, MAX, 3, 2);
        assert!(two < one && two > MIN);
    }

    #[test]
    fn timeout_without_k_or_span_is_min() {
        assert_eq!(suspicion_timeout(MIN, MAX, 0, 0), MIN);
        assert_eq!(suspicion_timeout(MAX, MIN, 3, 0), MAX);
    }

    #[test]
    fn bounds_scale_with_log10_of_members() {
        let base = Duration::from_millis(500);
        assert_eq!(suspicion_bounds(base, 4, 5), (base, base * 4));
        let (min, max) = suspicion_bounds(base, 4, 100);
        assert_eq!(min, Duration::from_secs(1));
        assert_eq!(max, Duration::from_secs(4));
        let (min, _) = suspicion_bounds(base, 4, 1000);
        assert!((min.as_secs_f64() - 1.5).abs() < 1e-9);
    }

    #[test]
    fn a_cap_brings_the_deadline_forward_only() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let origin = NodeName::new("a").expect("valid");
        let mut s = Suspicion::new(now, 1, origin, (MIN, MAX), 3);
        s.cap_deadline(now + MAX * 2);
        assert_eq!(s.deadline(), now + MAX, "a later cap changes nothing");
        s.cap_deadline(now + MIN / 2);
        s.cap_deadline(now + MIN);
        assert_eq!(s.deadline(), now + MIN / 2, "the earliest cap holds");
    }

    #[test]
    fn only_independent_confirmations_count() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let origin = NodeName::new("a").expect("valid");
        let mut s = Suspicion::new(now, 1, origin.clone(), (MIN, MAX), 2);
        assert_eq!(s.deadline(), now + MAX);
        assert!(!s.confirm(&origin), "the origin does not confirm itself");
        let b = NodeName::new("b").expect("valid");
        assert!(s.confirm(&b));
        assert!(
            !s.confirm(&b),
            "twice from the same node is one confirmation"
        );
        assert!(s.confirm(&NodeName::new("c").expect("valid")));
        assert!(
            !s.confirm(&NodeName::new("d").expect("valid")),
            "capped at k"
        );
        assert_eq!(s.deadline(), now + MIN);
        s.extend_to(now + MAX);
        assert_eq!(s.deadline(), now + MAX);
        assert_eq!(s.due_at(), now + MAX);
        s.last_chance = Some(LastChance {
            seq: 1,
            sent_at: now + MAX,
            until: now + MAX + MIN,
            acked: false,
            rounds_left: 0,
            helpers: 0,
            helpers_heard: 0,
        });
        assert_eq!(s.due_at(), now + MAX + MIN);
        s.restart(now + MAX);
        assert_eq!(s.confirmations(), 0);
        assert_eq!(s.due_at(), now + MAX + MAX, "a fresh full timeout");
    }

    /// How long after a suspicion of "peer" (port 2) a node knowing three
    /// helpers (ports 3–5) declares it, when "peer" never answers and each
    /// helper acks its own pings and answers ping-reqs with a nack or not.
    fn declared_after(helpers_nack: bool) -> Duration {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        let helpers = [("h1", 3), ("h2", 4), ("h3", 5)];
        for (helper, port) in helpers {
            let row = testing::alive(helper, port, 0);
            node.handle_packet(
                now,
                addr(port),
                &packet(helper, 0, Message::Gossip, &[&row]),
            );
        }
        let suspected = testing::suspect("peer", 2, 0, "h1");
        node.handle_packet(
            now,
            addr(3),
            &packet("h1", 0, Message::Gossip, &[&suspected]),
        );
        let peer = name("peer");
        let mut at = now;
        while node
            .row(&peer)
            .is_some_and(|row| row.health == Health::Suspect)
        {
            at = node.poll_timeout().expect("the suspicion is due");
            assert!(at < now + Duration::from_secs(60), "never declared");
            node.handle_timeout(at);
            for (to, sent) in sent(&mut node) {
                let Some(&(helper, _)) = helpers.iter().find(|(_, port)| addr(*port) == to) else {
                    continue;
                };
                let answer = match sent.message {
                    Message::Ping { seq, .. } => Message::Ack { seq },
                    Message::PingReq { seq, .. } if helpers_nack => Message::Nack { seq },
                    _ => continue,
                };
                node.handle_packet(at, to, &packet(helper, 0, answer, &[]));
            }
        }
        at - now
    }

    #[test]
    fn a_last_chance_check_too_few_helpers_answer_puts_the_verdict_off() {
        let answered = declared_after(true);
        let silent = declared_after(false);
        let interval = Config::default().probe_interval;
        assert!(
            silent >= answered + interval * MAX_SILENT_VERDICTS,
            "{answered:?} vs {silent:?}"
        );
    }

    #[test]
    fn during_a_storm_verdicts_wait_for_its_end_and_a_grace() {
        let now = epoch();
        let mut node = lossy_node_suspecting_peer(now, 1);
        for _ in 0..2 {
            node.probing
                .weather
                .record(now, crate::node::probing::Outcome::Silent);
        }
        let peer = name("peer");
        let mut at = now;
        while at < now + Duration::from_secs(30) {
            at = node.poll_timeout().expect("something is due");
            node.handle_timeout(at);
            let _ = sent(&mut node);
        }
        assert_eq!(
            node.row(&peer).map(|row| row.health),
            Some(Health::Suspect),
            "held while the storm lasts"
        );
    }
}
