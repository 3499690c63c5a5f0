//! The names of the scenarios, apart from how they run: a report names the
//! scenario it measured without depending on the runner.

use serde::Serialize;

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ScenarioKind {
    /// No faults: traffic and false offline declarations of a healthy cluster.
    Steady,
    /// A crash every 10 s (silent unless `crash_host` says the host stays up):
    /// detection latency.
    Crash,
    /// A third of the nodes is cut off, then healed halfway (or, with
    /// `partition`, cut off at 1 s for that long): convergence after heal.
    Partition,
    /// Random crashes (silent and with unreachable hints), restarts (some at new
    /// addresses), pauses and leaves.
    Churn,
    /// One node paused 2 s every 60 s (the first at 30 s): no one else declared offline.
    Pause,
    /// A tenth of the cluster (at least one node, or `joiners`) joins at once:
    /// join spread.
    JoinStorm,
    /// Nodes keep offline rows for `retention` (default 60 s); two fifths of
    /// the cluster are cut off at 1 s for `partition` (default: the retention
    /// plus 60 s, so each side reaps the other's rows), then healed:
    /// convergence after heal.
    PartitionRetention,
    /// Two clusters of N/2, formed separately with disjoint seeds
    /// ([`Formation::Split`](crate::sim::Formation::Split)); at 1 s one node of the second is given a node of
    /// the first as a seed: time to one cluster.
    SplitMerge,
    /// The network loses `loss` of all datagrams (0.5 when `--loss` is 0) over
    /// the window, from its start; at half of it one node crashes silently:
    /// false offline declarations, and the crash's detection everywhere.
    Loss,
    /// After 30 s of quiet traffic (the quiet figure), `slow_members` random
    /// members receive every datagram `slow_delay` late (uniform per datagram)
    /// over the window: false offline declarations of healthy members, and
    /// traffic against the quiet figure; with `slow_crashes`, that many of
    /// them crash silently at three quarters of the window: their detection.
    Slow,
    /// At the window's start (at least 70 s) a second process is started under a
    /// random node's name at another address: conflict detection, the name's
    /// incarnation growth over 60 s, its row's address flips. No liveness gate
    /// (two processes under one name never settle into one row each).
    NameConflict,
    /// Five tag changes, one every `duration / 6` from 1 s, each by another
    /// random node, to fresh tags of `tag_bytes` encoded bytes (64 when 0):
    /// the time until every node holds the new tags (the tag-change spread).
    TagChange,
    /// A cluster-wide brownout (`brownout`: loss 1 for 1 s by default) every
    /// `brownout.every` (30 s), the first at half of it; one node crashes
    /// silently halfway through each: false offline declarations, and each
    /// crash's detection everywhere.
    Brownout,
    /// Cluster-wide Gilbert–Elliott bursts of loss (`bursts`: 1 s on average,
    /// 10 s apart on average, 70 % loss inside, 2 % outside) over the window:
    /// false offline declarations.
    Bursts,
    /// At 1 s, `rack_fraction` of the nodes (default a tenth) crash at once,
    /// silently unless `crash_host` says otherwise: detection everywhere, and
    /// false offline declarations of the survivors.
    Rack,
    /// Random members send `event_rate` user events a second, cluster-wide,
    /// of `event_bytes` each, over the window: delivery latency and ratio,
    /// payload copies per node per event, bytes per node per second
    /// ([`user_events::run`](super::user_events::run); through
    /// [`run`](super::run), a steady run).
    UserEvents,
    /// A tenth of the nodes carry `role=db`; random members run `event_rate`
    /// queries a second, to every member over the first half of the window,
    /// to `role=db` over the second: response latency and ratio, bytes per
    /// node per second, answers from outside the filter
    /// ([`query::run`](super::query::run); through [`run`](super::run), a
    /// steady run).
    Query,
}
