//! Tuning knobs, with defaults for a LAN of up to ~1000 nodes.

pub(crate) mod error;
pub use error::ConfigError;

use std::net::SocketAddr;
use std::time::Duration;

use chrono::DateTime;

use crate::keyring::KeyRing;
use crate::name::{ClusterId, NodeName};
use crate::query::QueryConfig;
use crate::tags::{TagLimits, Tags, TagsError};
use crate::tracker::{Health, MAX_INCARNATION, TrackerRow};
use crate::user::UserEventConfig;
use crate::wire::{self, Message, Sender, WireRow};

/// Everything a [`Node`](crate::Node) can be tuned with.
///
/// The defaults ([`Config::lan`]) aim at a LAN (sub-millisecond to a few
/// milliseconds of latency): a silent failure is offline everywhere in about 1.5 s
/// at 100 nodes, and 10% packet loss causes no false offline declarations. Each
/// node sends about 14 small datagrams a second (≈ 430 bytes/s) when quiet,
/// whatever the cluster size. [`Config::wan`] trades speed for tolerance of
/// higher, jittery latency.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Packets carrying another cluster id are dropped.
    pub cluster_id: ClusterId,
    /// Seed of the node's random generator (probe order, gossip targets).
    /// Give every node its own; the same seed and inputs give the same outputs.
    pub rng_seed: u64,
    /// Largest datagram sent or accepted, in bytes. Default 1400 (fits an Ethernet MTU).
    pub max_packet_size: usize,

    /// Time between two probes of this node (one member each). Default 150 ms: every
    /// node is probed about 7 times a second, so a crash is noticed quickly.
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others to probe. Default 75 ms.
    pub probe_timeout: Duration,
    /// How many members are asked to probe indirectly (SWIM's `k`). Default 3.
    pub indirect_probes: usize,
    /// When members independently find a member's port unreachable (its process
    /// died, its host is up), it is declared offline after this grace, unless it
    /// answers: a process restarting on the same port within it is never offline.
    /// Default 200 ms.
    pub unreachable_grace: Duration,
    /// Upper bound of the local health multiplier (Lifeguard); the probe interval
    /// and timeout are stretched by `1 + score`, up to `1 + max_local_health`. Default 8.
    pub max_local_health: u32,

    /// Suspicion timeout with all expected confirmations, per unit of `log10(members)`
    /// (at least one unit). Default 500 ms, i.e. 1 s at 100 members. A node that
    /// measures more than 10% loss stretches both bounds of the timeouts it starts
    /// by `(0.9 / (1 - loss))²` (×3.2 at 50% loss; see
    /// [`Node::measured_loss`](crate::Node::measured_loss)).
    pub suspicion_min: Duration,
    /// The timeout with no confirmation is `suspicion_max_factor` times the minimum. Default 4.
    pub suspicion_max_factor: u32,
    /// How many independent confirmations shrink the timeout all the way to the
    /// minimum (Lifeguard's `K`). Default 3.
    pub suspicion_confirmations: u32,

    /// Time between gossip ticks while updates are pending. Default 100 ms.
    pub gossip_interval: Duration,
    /// Members each gossip tick sends to. Default 3.
    pub gossip_fanout: usize,
    /// Each update is sent `round(retransmit_mult * (1 + log10(members + 1)))` times
    /// (12 at 100 members, 16 at 1000). Default 4.
    pub retransmit_mult: u32,
    /// Most updates held for dissemination; the oldest, most-sent ones are dropped first
    /// (anti-entropy repairs what gossip missed). Default 4096.
    pub max_pending_updates: usize,

    /// Time between two anti-entropy digest exchanges. Default 5 s.
    pub anti_entropy_interval: Duration,

    /// Join attempts before the node settles as standalone. Default 3.
    pub join_attempts: u32,
    /// Wait after the first join attempt; doubles after each. Default 1 s.
    pub join_retry: Duration,
    /// Time between slow re-probes of the seeds once joined or standalone, so split
    /// clusters merge. Default 30 s.
    pub rejoin_interval: Duration,
    /// Most addresses one join attempt sends to (CIDR ranges are scanned up to this). Default 4096.
    pub max_join_targets: usize,

    /// How long `leave` waits for its announcement to spread before reporting. Default 2 s.
    pub leave_timeout: Duration,
    /// Offline rows are reaped (with `Op::Delete`) this long after they went offline.
    /// `None` (default) keeps them forever, as the original did.
    pub offline_retention: Option<Duration>,
    /// How long a member pruned with `force_leave` stays pruned: its rows at
    /// the pruned incarnation or below are refused everywhere meanwhile, so
    /// that a node that missed the prune cannot bring it back. Counted from
    /// the prune on the pruning node's clock. Default 1 hour.
    pub prune_retention: Duration,
    /// When set, every packet is sealed (XChaCha20-Poly1305) with the ring's primary
    /// key and only packets sealed with one of its keys are accepted. `None`
    /// (default): plaintext, kept apart from other clusters by `cluster_id` only.
    pub keys: Option<KeyRing>,
    /// New nodes one source address (IP and port) may introduce by `Join` per second, after a
    /// burst of `join_burst`; further joins of unknown names from it are dropped as
    /// [`DropReason::RateLimited`](crate::DropReason::RateLimited). Default 20.
    pub join_rate: u32,
    /// See `join_rate`. Default 100.
    pub join_burst: u32,
    /// Most rows the tracker holds; updates about further unknown nodes are dropped
    /// and counted. Default 65 536.
    pub max_nodes: usize,
    /// Most encoded bytes of a node's tags (keys, values and their length
    /// prefixes: see [`Tags::encoded_len`](crate::Tags::encoded_len)). A local
    /// `set_tags` over it is refused; a peer's row over it is dropped and
    /// counted ([`DropReason::TagsTooLarge`](crate::DropReason::TagsTooLarge)).
    /// Give every node of a cluster the same value. Default 1024.
    ///
    /// A row must also fit one datagram: with the default 1400-byte packets,
    /// 1024 bytes of tags leave room for the names of the row's node and of the
    /// node relaying it up to about 130 bytes each.
    pub max_tags_size: usize,
    /// Most tags (entries) a node may have; enforced like `max_tags_size`
    /// ([`DropReason::TooManyTags`](crate::DropReason::TooManyTags)). Default 64.
    pub max_tags: usize,
    /// User events: limits, window, rates (see [`UserEventConfig`]).
    pub user_events: UserEventConfig,
    /// Queries: timeouts, response limit, relays, rates (see [`QueryConfig`]).
    pub queries: QueryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cluster_id: ClusterId::from_name("beethoven"),
            rng_seed: 0x5eed,
            max_packet_size: 1400,
            probe_interval: Duration::from_millis(150),
            probe_timeout: Duration::from_millis(75),
            indirect_probes: 3,
            unreachable_grace: Duration::from_millis(200),
            max_local_health: 8,
            suspicion_min: Duration::from_millis(500),
            suspicion_max_factor: 4,
            suspicion_confirmations: 3,
            gossip_interval: Duration::from_millis(100),
            gossip_fanout: 3,
            retransmit_mult: 4,
            max_pending_updates: 4096,
            anti_entropy_interval: Duration::from_secs(5),
            join_attempts: 3,
            join_retry: Duration::from_secs(1),
            rejoin_interval: Duration::from_secs(30),
            max_join_targets: 4096,
            leave_timeout: Duration::from_secs(2),
            offline_retention: None,
            prune_retention: Duration::from_secs(3600),
            keys: None,
            join_rate: 20,
            join_burst: 100,
            max_nodes: 65_536,
            max_tags_size: 1024,
            max_tags: 64,
            user_events: UserEventConfig::default(),
            queries: QueryConfig::default(),
        }
    }
}

/// The smallest `max_packet_size` that still fits a header and one row, with names of the longest length.
pub const MIN_PACKET_SIZE: usize = 1024;

impl Config {
    /// The LAN preset: the same as `Config::default()`.
    pub fn lan() -> Self {
        Self::default()
    }

    /// A preset for links with tens to hundreds of milliseconds of latency and
    /// jitter: slower probing, longer timeouts, more patient suspicion.
    pub fn wan() -> Self {
        Self {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            suspicion_min: Duration::from_secs(2),
            gossip_interval: Duration::from_millis(200),
            anti_entropy_interval: Duration::from_secs(15),
            leave_timeout: Duration::from_secs(5),
            ..Self::default()
        }
    }

    /// A config for a cluster with this name, with defaults everywhere else.
    pub fn for_cluster(name: &str) -> Self {
        Self {
            cluster_id: ClusterId::from_name(name),
            ..Self::default()
        }
    }

    /// Checks every field; the error names the first one that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(ok: bool, field: &'static str, reason: &'static str) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid { field, reason })
            }
        }
        check(
            (MIN_PACKET_SIZE..=65_507).contains(&self.max_packet_size),
            "max_packet_size",
            "must be between 1024 and 65507 bytes",
        )?;
        check(
            !self.probe_interval.is_zero(),
            "probe_interval",
            "must be positive",
        )?;
        check(
            !self.probe_timeout.is_zero() && self.probe_timeout < self.probe_interval,
            "probe_timeout",
            "must be positive and shorter than probe_interval",
        )?;
        check(
            !self.unreachable_grace.is_zero(),
            "unreachable_grace",
            "must be positive",
        )?;
        check(
            self.max_local_health <= 64,
            "max_local_health",
            "must be at most 64",
        )?;
        check(
            !self.suspicion_min.is_zero(),
            "suspicion_min",
            "must be positive",
        )?;
        check(
            (1..=100).contains(&self.suspicion_max_factor),
            "suspicion_max_factor",
            "must be between 1 and 100",
        )?;
        check(
            self.suspicion_confirmations <= 64,
            "suspicion_confirmations",
            "must be at most 64",
        )?;
        check(
            !self.gossip_interval.is_zero(),
            "gossip_interval",
            "must be positive",
        )?;
        check(
            (1..=64).contains(&self.gossip_fanout),
            "gossip_fanout",
            "must be between 1 and 64",
        )?;
        check(
            (1..=64).contains(&self.retransmit_mult),
            "retransmit_mult",
            "must be between 1 and 64",
        )?;
        check(
            self.max_pending_updates >= 16,
            "max_pending_updates",
            "must be at least 16",
        )?;
        check(
            !self.anti_entropy_interval.is_zero(),
            "anti_entropy_interval",
            "must be positive",
        )?;
        check(
            (1..=100).contains(&self.join_attempts),
            "join_attempts",
            "must be between 1 and 100",
        )?;
        check(!self.join_retry.is_zero(), "join_retry", "must be positive")?;
        check(
            !self.rejoin_interval.is_zero(),
            "rejoin_interval",
            "must be positive",
        )?;
        check(
            (1..=1 << 20).contains(&self.max_join_targets),
            "max_join_targets",
            "must be between 1 and 1048576",
        )?;
        check(
            self.offline_retention.is_none_or(|d| !d.is_zero()),
            "offline_retention",
            "must be positive when set",
        )?;
        check(
            !self.prune_retention.is_zero(),
            "prune_retention",
            "must be positive",
        )?;
        check(self.max_nodes >= 2, "max_nodes", "must be at least 2")?;
        check(self.join_rate >= 1, "join_rate", "must be at least 1")?;
        check(self.join_burst >= 1, "join_burst", "must be at least 1")?;
        check(
            self.max_tags_size < self.max_packet_size,
            "max_tags_size",
            "must be below max_packet_size (a row travels in one datagram)",
        )?;
        self.user_events.validate(self.max_packet_size)?;
        self.queries.validate(self.max_packet_size)
    }

    /// Checks tags a node named `name` at `addr` would set: `max_tags_size`,
    /// `max_tags`, and that its row with them fits one datagram it sends
    /// (sealed if keys are set; at the highest incarnation, so the answer does
    /// not depend on the node's state). What [`Node::set_tags`](crate::Node::set_tags)
    /// checks; a runtime's handle checks it before queuing the command.
    pub fn check_tags(
        &self,
        name: &NodeName,
        addr: SocketAddr,
        tags: &Tags,
    ) -> Result<(), TagsError> {
        tags.check(self.tag_limits())?;
        let row = TrackerRow::new(
            name.clone(),
            addr,
            Health::Alive,
            MAX_INCARNATION,
            DateTime::UNIX_EPOCH,
        )
        .with_tags(tags.clone());
        let sender = Sender {
            cluster: self.cluster_id,
            name,
            incarnation: MAX_INCARNATION,
            sealed: self.keys.is_some(),
        };
        // The widest timestamp varint, so the bound holds at any time.
        const WIDEST_TIME: usize = 10;
        let size = wire::base_len(
            sender,
            &Message::Rows {
                rows: vec![WireRow(row)],
            },
        ) + wire::ROW_SLACK
            + WIDEST_TIME;
        if size > self.max_packet_size {
            return Err(TagsError::RowTooLarge {
                size,
                max_packet_size: self.max_packet_size,
            });
        }
        Ok(())
    }

    /// The tag limits of this config.
    pub(crate) fn tag_limits(&self) -> TagLimits {
        TagLimits {
            max_size: self.max_tags_size,
            max_count: self.max_tags,
        }
    }
}

/// `with_<field>` setters, one per field: `Config` is `#[non_exhaustive]`, so code
/// outside this crate cannot write `Config { field, ..Config::default() }`; it
/// chains these instead. Nothing is checked here: [`Config::validate`] (called by
/// `Node::new`) is the one place values are judged.
macro_rules! setters {
    ($($setter:ident => $field:ident: $ty:ty,)*) => {
        impl Config {
            $(
                #[doc = concat!("The same config with [`", stringify!($field), "`](Config::", stringify!($field), ") set (builder style).")]
                #[must_use]
                pub fn $setter(mut self, $field: $ty) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}

setters! {
    with_cluster_id => cluster_id: ClusterId,
    with_rng_seed => rng_seed: u64,
    with_max_packet_size => max_packet_size: usize,
    with_probe_interval => probe_interval: Duration,
    with_probe_timeout => probe_timeout: Duration,
    with_indirect_probes => indirect_probes: usize,
    with_unreachable_grace => unreachable_grace: Duration,
    with_max_local_health => max_local_health: u32,
    with_suspicion_min => suspicion_min: Duration,
    with_suspicion_max_factor => suspicion_max_factor: u32,
    with_suspicion_confirmations => suspicion_confirmations: u32,
    with_gossip_interval => gossip_interval: Duration,
    with_gossip_fanout => gossip_fanout: usize,
    with_retransmit_mult => retransmit_mult: u32,
    with_max_pending_updates => max_pending_updates: usize,
    with_anti_entropy_interval => anti_entropy_interval: Duration,
    with_join_attempts => join_attempts: u32,
    with_join_retry => join_retry: Duration,
    with_rejoin_interval => rejoin_interval: Duration,
    with_max_join_targets => max_join_targets: usize,
    with_leave_timeout => leave_timeout: Duration,
    with_offline_retention => offline_retention: Option<Duration>,
    with_prune_retention => prune_retention: Duration,
    with_keys => keys: Option<KeyRing>,
    with_join_rate => join_rate: u32,
    with_join_burst => join_burst: u32,
    with_max_nodes => max_nodes: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
        assert_eq!(Config::lan(), Config::default());
        assert_eq!(Config::wan().validate(), Ok(()));
    }

    #[test]
    fn every_field_can_be_set_by_its_setter() {
        let config = Config::lan()
            .with_probe_interval(Duration::from_millis(300))
            .with_probe_timeout(Duration::from_millis(100))
            .with_offline_retention(Some(Duration::from_secs(60)))
            .with_gossip_fanout(5)
            .with_max_nodes(10);
        assert_eq!(config.probe_interval, Duration::from_millis(300));
        assert_eq!(config.probe_timeout, Duration::from_millis(100));
        assert_eq!(config.offline_retention, Some(Duration::from_secs(60)));
        assert_eq!(config.gossip_fanout, 5);
        assert_eq!(config.max_nodes, 10);
        let same = Config {
            probe_interval: Duration::from_millis(300),
            probe_timeout: Duration::from_millis(100),
            offline_retention: Some(Duration::from_secs(60)),
            gossip_fanout: 5,
            max_nodes: 10,
            ..Config::lan()
        };
        assert_eq!(config, same, "a setter touches its own field only");
    }

    #[test]
    fn validate_names_the_offending_field() {
        let config = Config {
            probe_timeout: Duration::from_secs(5),
            ..Config::default()
        };
        assert_eq!(
            config.validate(),
            Err(ConfigError::Invalid {
                field: "probe_timeout",
                reason: "must be positive and shorter than probe_interval"
            })
        );
        let config = Config {
            max_packet_size: 100,
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                field: "max_packet_size",
                ..
            })
        ));
        let config = Config {
            gossip_fanout: 0,
            ..Config::default()
        };
        assert!(
            config
                .validate()
                .expect_err("zero fanout")
                .to_string()
                .contains("gossip_fanout")
        );
    }
}
