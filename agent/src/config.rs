//! The agent's settings, from three sources: flags win over `BEETHOVEN_*`
//! environment variables, which win over the TOML config file (`--config`).
//!
//! One struct, [`Settings`], is both the clap arguments (each flag with its
//! environment variable) and the file's schema, so a setting cannot exist in one
//! source and not the others. An unknown key in the file is an error naming it;
//! durations are written the human way (`"150ms"`, `"2s"`, `"1m 30s"`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use beethoven_tokio::{Config, NodeName, Seed, Tags};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Deserializer};

use crate::error::AgentError;
use crate::handlers::{self, HandlerSpec};
use crate::tags;

/// The default UDP address: every interface, the cluster port.
pub(crate) const DEFAULT_BIND: &str = "0.0.0.0:7946";
/// The default cluster name.
pub(crate) const DEFAULT_CLUSTER: &str = "beethoven";

/// How log lines are written (to stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// How `--events` writes the node's events on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EventsFormat {
    /// One JSON object per line, as `GET /v1/events` (see `beethoven monitor`).
    Json,
}

/// A duration written the human way: `150ms`, `2s`, `1m 30s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HumanDuration(pub(crate) Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s)
            .map(HumanDuration)
            .map_err(|error| {
                format!("bad duration `{s}` ({error}); write e.g. \"150ms\", \"2s\", \"1m 30s\"")
            })
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// Every setting of `beethoven agent`: a flag, an environment variable and a
/// config file key each. `None` (or empty) means "not given here".
#[derive(Args, Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// TOML file with any of these settings (keys as the flags, with `_`).
    #[arg(long, env = "BEETHOVEN_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub(crate) config: Option<PathBuf>,
    /// This node's name (stable across restarts), e.g. `api@10.0.0.7`.
    #[arg(long, env = "BEETHOVEN_NAME")]
    pub(crate) name: Option<String>,
    /// UDP address to bind; port 0 picks a free one [default: 0.0.0.0:7946].
    #[arg(long, env = "BEETHOVEN_BIND", value_name = "IP:PORT")]
    pub(crate) bind: Option<SocketAddr>,
    /// Address the others reach this node at [default: the bound address; a
    /// wildcard IP becomes 127.0.0.1, which only works on one host].
    #[arg(long, env = "BEETHOVEN_ADVERTISE", value_name = "IP:PORT")]
    pub(crate) advertise: Option<SocketAddr>,
    /// A member to join through: `ip:port`, `host:port` or `cidr:port` (scans
    /// the range); repeatable, or comma-separated in the environment.
    #[arg(
        long = "seed",
        env = "BEETHOVEN_SEEDS",
        value_delimiter = ',',
        value_name = "SEED"
    )]
    #[serde(default)]
    pub(crate) seeds: Vec<String>,
    /// A tag of this node, `key=value` (e.g. `role=db`); repeatable, or
    /// comma-separated (so a value with a comma goes in the config file: a
    /// `[tags]` table or a list of `key=value`). Changeable live with `PUT /v1/tags`.
    #[arg(
        long = "tag",
        env = "BEETHOVEN_TAGS",
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    #[serde(default, deserialize_with = "tags::deserialize_texts")]
    pub(crate) tags: Vec<String>,
    /// Cluster name; other clusters' packets are dropped [default: beethoven].
    #[arg(long, env = "BEETHOVEN_CLUSTER")]
    pub(crate) cluster: Option<String>,
    /// File of hex keys, one per line: the first seals, all open. Re-read on
    /// SIGHUP and on `POST /v1/keys/reload`; rewritten (atomically) when keys
    /// are installed, used or removed over HTTP (`beethoven keys`).
    #[arg(long, env = "BEETHOVEN_KEY_FILE", value_name = "FILE")]
    pub(crate) key_file: Option<PathBuf>,
    /// Folder for what survives a restart: live tag changes and the last
    /// member table, to rejoin through when the seeds are gone [default: keep
    /// nothing].
    #[arg(long, env = "BEETHOVEN_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Serve the HTTP API, metrics and status page here (off by default), e.g.
    /// 127.0.0.1:7947.
    #[arg(long, env = "BEETHOVEN_HTTP", value_name = "IP:PORT")]
    pub(crate) http: Option<SocketAddr>,
    /// File whose first line is the HTTP API's token (at least 16 characters):
    /// every change needs it, and off loopback every request does. The token
    /// may instead come from `BEETHOVEN_HTTP_TOKEN`; never from a flag.
    #[arg(long, env = "BEETHOVEN_HTTP_TOKEN_FILE", value_name = "FILE")]
    pub(crate) http_token_file: Option<PathBuf>,
    /// Serve the HTTP API off loopback without a token (anyone who reaches
    /// the port reads the member table; changes stay off) [default: refuse to start].
    #[arg(long, env = "BEETHOVEN_HTTP_ALLOW_NO_TOKEN")]
    #[serde(default)]
    pub(crate) http_allow_no_token: bool,
    /// PEM certificate chain: serve the HTTP API over TLS (with --http-tls-key).
    #[arg(long, env = "BEETHOVEN_HTTP_TLS_CERT", value_name = "FILE")]
    pub(crate) http_tls_cert: Option<PathBuf>,
    /// PEM private key of --http-tls-cert.
    #[arg(long, env = "BEETHOVEN_HTTP_TLS_KEY", value_name = "FILE")]
    pub(crate) http_tls_key: Option<PathBuf>,
    /// Log filter, e.g. `info` or `beethoven_core=debug` [default: RUST_LOG, else info].
    #[arg(long, env = "BEETHOVEN_LOG_LEVEL", value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
    /// Log line format [default: text].
    #[arg(long, env = "BEETHOVEN_LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,
    /// Print the node's events on stdout (logs stay on stderr): every row
    /// change, node updates, mode and tag changes, name conflicts; the same
    /// lines as `GET /v1/events` [default: off].
    #[arg(long, env = "BEETHOVEN_EVENTS", value_enum)]
    pub(crate) events: Option<EventsFormat>,
    /// Time between probes [default: 150ms].
    #[arg(long, env = "BEETHOVEN_PROBE_INTERVAL", value_name = "DURATION")]
    pub(crate) probe_interval: Option<HumanDuration>,
    /// How long a probe waits for its ack [default: 75ms].
    #[arg(long, env = "BEETHOVEN_PROBE_TIMEOUT", value_name = "DURATION")]
    pub(crate) probe_timeout: Option<HumanDuration>,
    /// Shortest suspicion before a member is declared offline [default: 500ms].
    #[arg(long, env = "BEETHOVEN_SUSPICION_MIN", value_name = "DURATION")]
    pub(crate) suspicion_min: Option<HumanDuration>,
    /// Time between gossip ticks [default: 100ms].
    #[arg(long, env = "BEETHOVEN_GOSSIP_INTERVAL", value_name = "DURATION")]
    pub(crate) gossip_interval: Option<HumanDuration>,
    /// First wait between join attempts (it doubles) [default: 1s].
    #[arg(long, env = "BEETHOVEN_JOIN_RETRY", value_name = "DURATION")]
    pub(crate) join_retry: Option<HumanDuration>,
    /// Time between re-probes of the seeds once a join has ended [default: 30s].
    #[arg(long, env = "BEETHOVEN_REJOIN_INTERVAL", value_name = "DURATION")]
    pub(crate) rejoin_interval: Option<HumanDuration>,
    /// Longest wait for a leave to spread before exiting [default: 2s].
    #[arg(long, env = "BEETHOVEN_LEAVE_TIMEOUT", value_name = "DURATION")]
    pub(crate) leave_timeout: Option<HumanDuration>,
    /// Forget offline members after this long [default: keep them].
    #[arg(long, env = "BEETHOVEN_OFFLINE_RETENTION", value_name = "DURATION")]
    pub(crate) offline_retention: Option<HumanDuration>,
    /// Run PROGRAM on member events: `[KINDS=]PROGRAM`, KINDS a comma-separated
    /// list of member-join, member-leave, member-failed, member-update,
    /// member-reap (all when none); repeatable, or `;`-separated in the
    /// environment. See the README's event handlers section.
    #[arg(
        long = "event-handler",
        env = "BEETHOVEN_EVENT_HANDLERS",
        value_delimiter = ';',
        value_name = "[KINDS=]PROGRAM"
    )]
    #[serde(default)]
    pub(crate) event_handlers: Vec<String>,
    /// Longest run of an event handler; it is killed with its process group
    /// after it [default: 30s].
    #[arg(long, env = "BEETHOVEN_EVENT_HANDLER_TIMEOUT", value_name = "DURATION")]
    pub(crate) event_handler_timeout: Option<HumanDuration>,
}

impl Settings {
    /// These settings, with what `lower` has filled in where these have nothing.
    pub(crate) fn over(self, lower: Settings) -> Settings {
        Settings {
            config: self.config.or(lower.config),
            name: self.name.or(lower.name),
            bind: self.bind.or(lower.bind),
            advertise: self.advertise.or(lower.advertise),
            seeds: if self.seeds.is_empty() {
                lower.seeds
            } else {
                self.seeds
            },
            tags: if self.tags.is_empty() {
                lower.tags
            } else {
                self.tags
            },
            cluster: self.cluster.or(lower.cluster),
            key_file: self.key_file.or(lower.key_file),
            data_dir: self.data_dir.or(lower.data_dir),
            http: self.http.or(lower.http),
            http_token_file: self.http_token_file.or(lower.http_token_file),
            http_allow_no_token: self.http_allow_no_token || lower.http_allow_no_token,
            http_tls_cert: self.http_tls_cert.or(lower.http_tls_cert),
            http_tls_key: self.http_tls_key.or(lower.http_tls_key),
            log_level: self.log_level.or(lower.log_level),
            log_format: self.log_format.or(lower.log_format),
            events: self.events.or(lower.events),
            probe_interval: self.probe_interval.or(lower.probe_interval),
            probe_timeout: self.probe_timeout.or(lower.probe_timeout),
            suspicion_min: self.suspicion_min.or(lower.suspicion_min),
            gossip_interval: self.gossip_interval.or(lower.gossip_interval),
            join_retry: self.join_retry.or(lower.join_retry),
            rejoin_interval: self.rejoin_interval.or(lower.rejoin_interval),
            leave_timeout: self.leave_timeout.or(lower.leave_timeout),
            offline_retention: self.offline_retention.or(lower.offline_retention),
            event_handlers: if self.event_handlers.is_empty() {
                lower.event_handlers
            } else {
                self.event_handlers
            },
            event_handler_timeout: self.event_handler_timeout.or(lower.event_handler_timeout),
        }
    }

    /// The settings of a TOML config file.
    pub(crate) fn from_file(path: &Path) -> Result<Settings, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|source| AgentError::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(path, &text)
    }

    fn from_toml(path: &Path, text: &str) -> Result<Settings, AgentError> {
        toml::from_str(text).map_err(|error| AgentError::ConfigParse {
            path: path.to_owned(),
            message: error.to_string().trim_end().to_owned(),
        })
    }

    /// The node's name, checked.
    pub(crate) fn node_name(&self) -> Result<NodeName, AgentError> {
        let name = self.name.as_deref().ok_or(AgentError::MissingName)?;
        NodeName::new(name).map_err(|error| AgentError::BadName {
            name: name.to_owned(),
            reason: error.to_string(),
        })
    }

    /// Where to bind the UDP socket.
    pub(crate) fn bind_addr(&self) -> SocketAddr {
        self.bind.unwrap_or_else(|| {
            DEFAULT_BIND
                .parse()
                .expect("DEFAULT_BIND is a valid socket address")
        })
    }

    /// The cluster's name as configured.
    pub(crate) fn cluster_name(&self) -> &str {
        self.cluster.as_deref().unwrap_or(DEFAULT_CLUSTER)
    }

    /// The protocol configuration: the cluster and any timings given.
    pub(crate) fn protocol(&self, rng_seed: u64) -> Result<Config, AgentError> {
        let cluster = self.cluster_name();
        if cluster.is_empty() {
            return Err(AgentError::BadCluster {
                cluster: cluster.to_owned(),
                reason: "a cluster name is not empty".to_owned(),
            });
        }
        let mut config = Config::for_cluster(cluster).with_rng_seed(rng_seed);
        let timings = [
            (self.probe_interval, &mut config.probe_interval),
            (self.probe_timeout, &mut config.probe_timeout),
            (self.suspicion_min, &mut config.suspicion_min),
            (self.gossip_interval, &mut config.gossip_interval),
            (self.join_retry, &mut config.join_retry),
            (self.rejoin_interval, &mut config.rejoin_interval),
            (self.leave_timeout, &mut config.leave_timeout),
        ];
        for (given, field) in timings {
            if let Some(HumanDuration(value)) = given {
                *field = value;
            }
        }
        if let Some(HumanDuration(retention)) = self.offline_retention {
            config.offline_retention = Some(retention);
        }
        config
            .validate()
            .map_err(|error| AgentError::Protocol(error.to_string()))?;
        Ok(config)
    }

    /// The node's starting tags, checked for form (the size limits are checked
    /// at start, against the protocol configuration).
    /// The event handlers, each checked: a bad spec or a program that is
    /// missing or not executable stops the agent before it starts.
    pub(crate) fn handlers(&self) -> Result<Vec<HandlerSpec>, AgentError> {
        self.event_handlers
            .iter()
            .filter(|text| !text.trim().is_empty())
            .map(|text| {
                let spec: HandlerSpec =
                    text.parse().map_err(|reason| AgentError::BadHandlerSpec {
                        spec: text.clone(),
                        reason,
                    })?;
                spec.check()?;
                Ok(spec)
            })
            .collect()
    }

    /// The longest run of an event handler.
    pub(crate) fn handler_timeout(&self) -> Duration {
        self.event_handler_timeout
            .map_or(handlers::DEFAULT_TIMEOUT, |timeout| timeout.0)
    }

    pub(crate) fn parsed_tags(&self) -> Result<Tags, AgentError> {
        tags::parse(&self.tags).map_err(AgentError::BadTag)
    }

    /// The seeds: addresses, ranges and `host:port` names (resolved by the
    /// runtime at start and again before each seed re-probe).
    pub(crate) fn parsed_seeds(&self) -> Result<Vec<Seed>, AgentError> {
        self.seeds
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|text| {
                text.parse::<Seed>().map_err(|_| AgentError::BadSeed {
                    seed: text.to_owned(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(text: &str) -> Result<Settings, AgentError> {
        Settings::from_toml(Path::new("agent.toml"), text)
    }

    #[test]
    fn a_file_reads_every_kind_of_value() {
        let settings = toml(
            "name = \"a\"\nbind = \"127.0.0.1:7000\"\nseeds = [\"127.0.0.1:7001\", \"db:7946\"]\n\
             probe_interval = \"200ms\"\nleave_timeout = \"1m 30s\"\nlog_format = \"json\"\n",
        )
        .expect("valid file");
        assert_eq!(settings.name.as_deref(), Some("a"));
        assert_eq!(
            settings.probe_interval,
            Some(HumanDuration(Duration::from_millis(200)))
        );
        assert_eq!(
            settings.leave_timeout,
            Some(HumanDuration(Duration::from_secs(90)))
        );
        assert_eq!(settings.log_format, Some(LogFormat::Json));
        let seeds = settings.parsed_seeds().expect("valid seeds");
        assert_eq!(seeds[1].host_port().as_deref(), Some("db:7946"));
    }

    #[test]
    fn tags_are_a_table_or_a_list_in_the_file() {
        let table = toml("[tags]\nrole = \"db\"\nzone = \"eu-1\"\n").expect("a table");
        let list = toml("tags = [\"zone=eu-1\", \"role=db\"]\n").expect("a list");
        let expected = Tags::from_pairs([("role", "db"), ("zone", "eu-1")]).expect("valid");
        assert_eq!(table.parsed_tags().expect("valid"), expected);
        assert_eq!(list.parsed_tags().expect("valid"), expected);
        let message = toml("tags = 3\n").expect_err("not tags").to_string();
        assert!(message.contains("tags are a table of strings"), "{message}");
        let message = toml("[tags]\n\"a=b\" = \"c\"\n")
            .expect_err("a key with `=`")
            .to_string();
        assert!(message.contains("bad tag key `a=b`"), "{message}");
        let bad = toml("tags = [\"role\"]\n").expect("a list of texts");
        assert!(matches!(bad.parsed_tags(), Err(AgentError::BadTag(_))));
    }

    #[test]
    fn an_unknown_key_is_named() {
        let error = toml("name = \"a\"\nprobe_intervall = \"1s\"\n").expect_err("unknown key");
        let message = error.to_string();
        assert!(
            message.contains("unknown field `probe_intervall`"),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn a_bad_duration_is_named_with_its_key() {
        let error = toml("probe_interval = \"fast\"\n").expect_err("bad duration");
        let message = error.to_string();
        assert!(message.contains("bad duration `fast`"), "{message}");
        assert!(message.contains("probe_interval"), "{message}");
    }

    #[test]
    fn the_higher_source_wins_and_the_lower_fills_gaps() {
        let flags = Settings {
            name: Some("flag".into()),
            ..Settings::default()
        };
        let file = Settings {
            name: Some("file".into()),
            cluster: Some("shop".into()),
            seeds: vec!["127.0.0.1:1".into()],
            ..Settings::default()
        };
        let merged = flags.over(file);
        assert_eq!(merged.name.as_deref(), Some("flag"));
        assert_eq!(merged.cluster.as_deref(), Some("shop"));
        assert_eq!(merged.seeds, ["127.0.0.1:1"]);
    }

    #[test]
    fn seeds_are_addresses_ranges_or_host_names() {
        let settings = Settings {
            seeds: vec![
                "127.0.0.1:7946".into(),
                "10.0.0.0/24:7946".into(),
                "seed.internal:7946".into(),
            ],
            ..Settings::default()
        };
        let seeds = settings.parsed_seeds().expect("valid");
        assert_eq!(seeds.len(), 3);
        assert_eq!(seeds[2].host_port().as_deref(), Some("seed.internal:7946"));
        for bad in ["no-port", "a b:1", "host:99999"] {
            let settings = Settings {
                seeds: vec![bad.into()],
                ..Settings::default()
            };
            assert!(
                matches!(settings.parsed_seeds(), Err(AgentError::BadSeed { .. })),
                "{bad}"
            );
        }
    }
}
