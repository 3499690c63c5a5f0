//! Lifeguard's dynamic suspicion timeout.
//!
//! A suspicion starts with the longest timeout. Each *independent* confirmation
//! (another member that suspected the same incarnation on its own) shrinks it
//! logarithmically toward the minimum, reached at `k` confirmations. A lone,
//! possibly mistaken suspicion therefore waits long enough to be refuted, while a
//! real failure, seen by many, is declared fast.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::name::NodeName;

/// The timeout after `confirmations` independent confirmations.
///
/// `max - (max - min) · ln(c + 1) / ln(k + 1)`, never below `min`; with `k == 0`
/// the minimum applies at once.
pub fn suspicion_timeout(min: Duration, max: Duration, k: u32, confirmations: u32) -> Duration {
    if k == 0 || confirmations >= k || max <= min {
        return min;
    }
    let fraction = f64::from(confirmations + 1).ln() / f64::from(k + 1).ln();
    let span = (max - min).as_secs_f64();
    let timeout = max.as_secs_f64() - span * fraction;
    Duration::from_secs_f64(timeout).max(min)
}

/// The bounds of the timeout for a cluster of `members` live nodes:
/// `min = base · max(1, log10(members))`, `max = factor · min`.
pub fn suspicion_bounds(base: Duration, factor: u32, members: usize) -> (Duration, Duration) {
    let scale = (members.max(1) as f64).log10().max(1.0);
    let min = base.mul_f64(scale);
    (min, min * factor)
}

/// One running suspicion of one node.
#[derive(Debug, Clone)]
pub(crate) struct Suspicion {
    /// The incarnation suspected; a higher one refutes.
    pub(crate) incarnation: u64,
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
    pub(crate) last_chance: Option<LastChance>,
    /// A deadline set by bounce evidence, earlier than the computed one.
    cap: Option<Instant>,
}

/// Before declaring a suspect dead, this node pings it once more itself, with the
/// suspicion piggybacked. A live suspect answers with its refutation on the ack;
/// this closes the gap where the refutation's gossip missed this one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LastChance {
    pub(crate) seq: u32,
    pub(crate) until: Instant,
    pub(crate) acked: bool,
}

impl Suspicion {
    pub(crate) fn new(
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
        }
    }

    /// Brings the deadline forward to `at` (never later than it already is).
    pub(crate) fn cap_deadline(&mut self, at: Instant) {
        self.cap = Some(self.cap.map_or(at, |cap| cap.min(at)));
    }

    /// When something is due: the last-chance ping, or the verdict after it.
    pub(crate) fn due_at(&self) -> Instant {
        match self.last_chance {
            Some(last) => last.until,
            None => self.deadline(),
        }
    }

    /// Starts the timeout over (the suspect answered its last-chance ping: it is
    /// alive, and now knows it must refute).
    pub(crate) fn restart(&mut self, now: Instant) {
        self.started = now;
        self.confirmers.clear();
        self.grace = Duration::ZERO;
        self.last_chance = None;
        self.cap = None;
    }

    /// Records that `from` suspects the same incarnation. Returns whether it was a new,
    /// independent confirmation (worth re-gossiping).
    pub(crate) fn confirm(&mut self, from: &NodeName) -> bool {
        if *from == self.origin || self.confirmers.len() as u32 >= self.k {
            return false;
        }
        self.confirmers.insert(from.clone())
    }

    pub(crate) fn confirmations(&self) -> u32 {
        self.confirmers.len() as u32
    }

    /// When the suspect is declared dead unless refuted.
    pub(crate) fn deadline(&self) -> Instant {
        let computed =
            self.started + suspicion_timeout(self.min, self.max, self.k, self.confirmations());
        self.cap.map_or(computed, |cap| cap.min(computed)) + self.grace
    }

    /// Gives the suspect more time because this node, not the suspect, was stalled:
    /// refutations may be waiting unread in the socket.
    pub(crate) fn extend_to(&mut self, not_before: Instant) {
        let deadline = self.deadline();
        if deadline < not_before {
            self.grace += not_before - deadline;
        }
        if let Some(last) = &mut self.last_chance {
            last.until = last.until.max(not_before);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(4);

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
            until: now + MAX + MIN,
            acked: false,
        });
        assert_eq!(s.due_at(), now + MAX + MIN);
        s.restart(now + MAX);
        assert_eq!(s.confirmations(), 0);
        assert_eq!(s.due_at(), now + MAX + MAX, "a fresh full timeout");
    }
}
