//! What a runtime needs to start a node: name, protocol config, where to bind,
//! what to advertise, where to find the cluster, and how deep subscriber queues are.
//! Also the one place `host:port` seeds are resolved.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use beethoven_core::{Config, ConfigError, JoinError, NodeName, Seed, Tags, TagsError};

use tracing::warn;

use crate::runtime::Runtime;

/// The default UDP port (also the port a CIDR scan probes when none is given).
pub const DEFAULT_PORT: u16 = 7946;

/// The default depth of each subscriber's queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 256;

/// How to start a node on a runtime (builder style).
///
/// ```
/// use beethoven_driver::prelude::{Config, NodeName, Options, Seed};
///
/// let options = Options::new(NodeName::new("api@10.0.0.7")?)
///     .config(Config::for_cluster("shop"))
///     .bind("0.0.0.0:7946".parse()?)
///     .advertise("10.0.0.7:7946".parse()?)
///     .seed("10.0.0.0/24:7946".parse::<Seed>()?)
///     .seed_host("db.internal:7946");
/// assert_eq!(options.name().as_str(), "api@10.0.0.7");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    name: NodeName,
    config: Config,
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
    seeds: Vec<Seed>,
    seed_hosts: Vec<String>,
    queue_capacity: usize,
    tags: Tags,
}

impl Options {
    /// A node named `name` with the default [`Config`], bound to `0.0.0.0:7946`,
    /// with no seeds (it starts standalone) and subscriber queues of 256.
    pub fn new(name: NodeName) -> Self {
        Self {
            name,
            config: Config::default(),
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            advertise: None,
            seeds: Vec::new(),
            seed_hosts: Vec::new(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            tags: Tags::new(),
        }
    }

    /// The protocol configuration (cluster id, timers, limits).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The local address of the UDP socket. Port 0 picks a free port; the runtime
    /// reports the real one.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The address other nodes reach this one at, when it differs from the bound
    /// one (a wildcard bind, NAT, containers). See [`Options::advertised_addr`].
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Adds a seed: a member's address, a CIDR range scanned on a port, or a
    /// host name ([`Seed::Host`], as [`seed_host`](Options::seed_host)).
    pub fn seed(mut self, seed: impl Into<Seed>) -> Self {
        let seed = seed.into();
        match seed.host_port() {
            Some(host_port) => self.seed_hosts.push(host_port),
            None => self.seeds.push(seed),
        }
        self
    }

    /// Adds a seed by `host:port` name. The runtime resolves it at start (a
    /// name that does not resolve then is a [`StartError::Resolve`]), and
    /// every address it resolves to becomes a seed; it resolves the name again
    /// every `rejoin_interval`, for the slow re-probe of the seeds, as the
    /// addresses behind a name change.
    pub fn seed_host(mut self, host_port: impl Into<String>) -> Self {
        self.seed_hosts.push(host_port.into());
        self
    }

    /// Depth of each subscriber's queue (at least 1). When a subscriber falls this
    /// far behind, further updates are dropped for it and reported as
    /// [`Update::Lagged`](crate::Update::Lagged).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// The node's tags from the start (see
    /// [`Node::set_tags`](beethoven_core::Node::set_tags); change them later
    /// with [`Handle::set_tags`](crate::Handle::set_tags)).
    pub fn tags(mut self, tags: Tags) -> Self {
        self.tags = tags;
        self
    }

    /// The tags the node starts with.
    pub fn initial_tags(&self) -> &Tags {
        &self.tags
    }

    /// The node's name.
    pub fn name(&self) -> &NodeName {
        &self.name
    }

    /// The protocol configuration.
    pub fn protocol_config(&self) -> &Config {
        &self.config
    }

    /// Where the socket binds.
    pub fn bind_addr(&self) -> SocketAddr {
        self.bind
    }

    /// The seeds given as addresses or ranges.
    pub fn seeds(&self) -> &[Seed] {
        &self.seeds
    }

    /// The seeds given as `host:port` names, to resolve at start.
    pub fn seed_hosts(&self) -> &[String] {
        &self.seed_hosts
    }

    /// Depth of each subscriber's queue.
    pub fn subscriber_queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// The address this node announces, given the address the socket actually
    /// bound (`bound`, with the real port when port 0 was asked for).
    ///
    /// - An explicit [`advertise`](Options::advertise) address wins; if its port is 0
    ///   the bound port is used.
    /// - Otherwise the bound address, except that a wildcard IP (`0.0.0.0`, `::`)
    ///   cannot be reached by anyone: it is replaced by the loopback address of the
    ///   same family (`127.0.0.1:port`, `[::1]:port`). That default only suits
    ///   clusters on one host; on a network, bind a concrete IP or set `advertise`.
    pub fn advertised_addr(&self, bound: SocketAddr) -> SocketAddr {
        match self.advertise {
            Some(addr) if addr.port() == 0 => SocketAddr::new(addr.ip(), bound.port()),
            Some(addr) => addr,
            None if bound.ip().is_unspecified() => {
                let loopback = match bound.ip() {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
                };
                SocketAddr::new(loopback, bound.port())
            }
            None => bound,
        }
    }

    /// Resolves the [`seed_hosts`](Options::seed_hosts) on a blocking thread of
    /// `runtime` (name lookups block), every name to all its addresses.
    pub(crate) async fn resolve_seed_hosts(
        &self,
        runtime: &dyn Runtime,
    ) -> Result<Vec<SocketAddr>, StartError> {
        if self.seed_hosts.is_empty() {
            return Ok(Vec::new());
        }
        let hosts = self.seed_hosts.clone();
        let (answer, resolved) = async_channel::bounded(1);
        runtime.spawn_blocking(Box::new(move || {
            let _ = answer.try_send(resolve(&hosts));
        }));
        resolved.recv().await.unwrap_or_else(|_| {
            Err(StartError::Resolve {
                host: self.seed_hosts.join(", "),
                source: io::Error::other("the runtime dropped the lookup"),
            })
        })
    }
}

/// Resolves every name it can; a name that does not resolve is logged and
/// skipped (the next re-probe tries it again).
pub(crate) fn resolve_each(hosts: &[String]) -> Vec<SocketAddr> {
    let mut resolved = Vec::new();
    for host in hosts {
        match host.to_socket_addrs() {
            Ok(addrs) => resolved.extend(addrs),
            Err(error) => warn!(%host, %error, "seed name did not resolve; trying again later"),
        }
    }
    resolved
}

fn resolve(hosts: &[String]) -> Result<Vec<SocketAddr>, StartError> {
    let mut resolved = Vec::new();
    for host in hosts {
        let addrs = host
            .to_socket_addrs()
            .map_err(|source| StartError::Resolve {
                host: host.clone(),
                source,
            })?;
        resolved.extend(addrs);
    }
    Ok(resolved)
}

/// Why a runtime could not start a node. Nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The UDP socket could not be bound (address in use, permission, bad address).
    #[error("cannot bind UDP socket at {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// A `host:port` seed did not resolve.
    #[error("cannot resolve seed `{host}`: {source}")]
    Resolve {
        /// The name as given.
        host: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// The protocol configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The seeds cannot be joined (e.g. a range larger than `max_join_targets`).
    #[error(transparent)]
    Join(#[from] JoinError),
    /// The starting tags break a limit of the config.
    #[error(transparent)]
    Tags(#[from] TagsError),
    /// The OS refused the node's thread or its readiness poll (out of threads or
    /// file descriptors).
    #[error("cannot start the node's thread: {source}")]
    Thread {
        /// What the OS said.
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options::new(NodeName::new("n").expect("valid name"))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("valid address")
    }

    #[test]
    fn a_wildcard_bind_advertises_loopback_on_the_real_port() {
        let options = options();
        assert_eq!(
            options.advertised_addr(addr("0.0.0.0:40001")),
            addr("127.0.0.1:40001")
        );
        assert_eq!(
            options.advertised_addr(addr("[::]:40001")),
            addr("[::1]:40001")
        );
        assert_eq!(
            options.advertised_addr(addr("10.1.2.3:40001")),
            addr("10.1.2.3:40001")
        );
    }

    #[test]
    fn an_explicit_advertise_wins_and_borrows_the_bound_port_when_zero() {
        let fixed = options().advertise(addr("10.0.0.7:7000"));
        assert_eq!(
            fixed.advertised_addr(addr("0.0.0.0:40001")),
            addr("10.0.0.7:7000")
        );
        let any_port = options().advertise(addr("10.0.0.7:0"));
        assert_eq!(
            any_port.advertised_addr(addr("0.0.0.0:40001")),
            addr("10.0.0.7:40001")
        );
    }

    #[test]
    fn the_builder_keeps_what_it_is_given() {
        let options = options()
            .bind(addr("127.0.0.1:0"))
            .seed(addr("127.0.0.1:9"))
            .seed_host("localhost:9")
            .seed("db.internal:7946".parse::<Seed>().expect("a host seed"))
            .queue_capacity(0);
        assert_eq!(options.bind_addr(), addr("127.0.0.1:0"));
        assert_eq!(options.seeds(), &[Seed::Addr(addr("127.0.0.1:9"))]);
        assert_eq!(
            options.seed_hosts(),
            &["localhost:9".to_owned(), "db.internal:7946".to_owned()]
        );
        assert_eq!(options.subscriber_queue_capacity(), 1, "clamped to 1");
    }

    #[test]
    fn seed_hosts_resolve_to_every_address_and_a_bad_name_is_a_start_error() {
        use crate::runtime::Threads;
        use futures_lite::future::block_on;

        let options = options()
            .seed_host("127.0.0.1:7946")
            .seed_host("[::1]:7947");
        let resolved = block_on(options.resolve_seed_hosts(&Threads)).expect("literal addresses");
        assert_eq!(resolved, [addr("127.0.0.1:7946"), addr("[::1]:7947")]);
        let none = block_on(self::options().resolve_seed_hosts(&Threads)).expect("no hosts");
        assert!(none.is_empty());
        let bad = options.seed_host("no port here");
        let error = block_on(bad.resolve_seed_hosts(&Threads)).expect_err("no port");
        assert!(matches!(error, StartError::Resolve { host, .. } if host == "no port here"));
    }
}
