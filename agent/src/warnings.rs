//! The warnings an operator must see: packets dropped for keys or cluster id,
//! a wildcard bind advertising loopback, seeds of another address family, and
//! a join that no seed answered (the node's `join_failed` event, naming each
//! seed that said it could not open this node's packets). Each kind at most
//! once per [`PERIOD`].
//!
//! (Name conflicts are logged by the core.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use beethoven_tokio::{DropReason, Handle, JoinRefusal, Seed, Stats};
use tracing::warn;

use crate::logging::RateLimit;

/// How often one kind of warning may repeat.
pub(crate) const PERIOD: Duration = Duration::from_secs(30);

/// Drops that mean a misconfigured peer, with what to check.
const DROPS: [(DropReason, &str); 4] = [
    (
        DropReason::Authentication,
        "sealed with a key this node does not hold (check the key files of every node)",
    ),
    (
        DropReason::NotSealed,
        "sent without keys while this node requires them (give every node the key file)",
    ),
    (
        DropReason::UnexpectedSeal,
        "sealed while this node has no keys (give this node the key file)",
    ),
    (
        DropReason::WrongCluster,
        "from another cluster (check --cluster on every node)",
    ),
];

/// Checks at start, then on every tick of the agent.
#[derive(Debug)]
pub(crate) struct Warnings {
    limit: RateLimit<&'static str>,
    /// Each reason's count when it was last reported.
    reported: [u64; DROPS.len()],
    seeds: String,
}

impl Warnings {
    /// `seeds` as given (shown in the warning).
    pub(crate) fn new(seeds: &[String]) -> Self {
        Self {
            limit: RateLimit::new(PERIOD),
            reported: [0; DROPS.len()],
            seeds: seeds.join(", "),
        }
    }

    /// The node reported that no seed answered its join; `refused` names the
    /// seeds that said they could not open its packets, and why.
    pub(crate) fn join_failed(&mut self, attempts: u32, refused: &[JoinRefusal]) {
        if !self.limit.allow("alone", Instant::now()) {
            return;
        }
        for refusal in refused {
            warn!(
                seed = %refusal.seed,
                reason = %refusal.reason,
                attempts,
                "join failed: {refusal}; running standalone and re-probing the seeds slowly"
            );
        }
        if refused.is_empty() {
            warn!(
                seeds = %self.seeds,
                attempts,
                "no seed answered: running standalone and re-probing the seeds slowly (is a seed up? a seed whose --cluster or keys differ from this node's drops its join and warns naming this node's address)"
            );
        }
    }

    /// What can be told before the node runs.
    pub(crate) fn at_start(
        bind: SocketAddr,
        advertised: SocketAddr,
        explicit: bool,
        seeds: &[Seed],
    ) {
        if bind.ip().is_unspecified() && !explicit && advertised.ip().is_loopback() {
            warn!(
                %bind,
                %advertised,
                "bound to every interface but advertising loopback: nodes on other hosts cannot reach this one; set --advertise to this host's address"
            );
        }
        for seed in seeds {
            if let Seed::Addr(addr) = seed
                && addr.is_ipv4() != advertised.is_ipv4()
            {
                warn!(
                    seed = %addr,
                    %advertised,
                    "seed of another address family than this node's: it cannot be reached from this socket"
                );
            }
        }
    }

    /// Compares the node's counters with the last check.
    pub(crate) fn check(&mut self, now: Instant, node: &Handle) {
        self.check_drops(now, &node.stats());
    }

    fn check_drops(&mut self, now: Instant, stats: &Stats) {
        for (i, (reason, hint)) in DROPS.iter().enumerate() {
            let count = stats.dropped(*reason);
            let new = count.saturating_sub(self.reported[i]);
            if new > 0 && self.limit.allow(hint, now) {
                self.reported[i] = count;
                let from = stats
                    .last_dropped_from(*reason)
                    .map_or_else(|| "unknown".to_owned(), |addr| addr.to_string());
                warn!(%reason, dropped = new, %from, "dropped packets {hint}");
            }
        }
    }
}
