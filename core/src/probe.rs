//! Probing state: the probe this node has in flight, the indirect probes it runs
//! for others, and Lifeguard's local health score.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::name::NodeName;

/// A probe in flight: ping, then `k` ping-reqs at `indirect_at`, then a verdict
/// at `ends_at`. One regular probe runs at a time; probes started by unreachable
/// hints run beside it.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    pub(crate) seq: u32,
    pub(crate) target: NodeName,
    pub(crate) target_addr: SocketAddr,
    /// The incarnation probed; a suspicion names it.
    pub(crate) incarnation: u64,
    /// Part of the round-robin cycle (as opposed to started by an unreachable hint).
    pub(crate) regular: bool,
    pub(crate) indirect_at: Instant,
    pub(crate) ends_at: Instant,
    pub(crate) acked: bool,
    pub(crate) indirect_sent: bool,
    pub(crate) nacks_expected: u32,
    pub(crate) nacks: u32,
    /// Independent "port unreachable" evidence: our own hint plus helpers' reports.
    pub(crate) bounces: u32,
    /// Whether the bounces already led to a (short) suspicion.
    pub(crate) fast_suspected: bool,
}

/// Most probes started by unreachable hints at once.
pub(crate) const MAX_HINT_PROBES: usize = 4;

/// Whether a finished probe tells something about this node's own health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
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
    pub(crate) fn verdict(&self) -> Verdict {
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
pub(crate) struct Relay {
    pub(crate) seq: u32,
    pub(crate) requester: SocketAddr,
    pub(crate) requester_seq: u32,
    pub(crate) target_addr: SocketAddr,
    pub(crate) nack_at: Instant,
}

/// Most indirect probes run for others at once; more requests are ignored, which
/// bounds memory when a peer floods ping-reqs.
pub(crate) const MAX_RELAYS: usize = 256;

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

    pub(crate) fn worsen(&mut self, max: u32) {
        self.score = (self.score + 1).min(max);
    }

    pub(crate) fn improve(&mut self) {
        self.score = self.score.saturating_sub(1);
    }

    /// `duration · (1 + score)`.
    pub(crate) fn scale(self, duration: Duration) -> Duration {
        duration * (self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            indirect_sent: true,
            nacks_expected: 3,
            nacks: 3,
            bounces: 0,
            fast_suspected: false,
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
}
