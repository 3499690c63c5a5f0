//! Where to find a cluster: explicit seed addresses, or a CIDR range scanned on the
//! cluster port (the original's Locator).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An IP network, e.g. `10.0.0.0/24`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// Why a string is not a CIDR range or a seed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SeedParseError {
    /// Not `address/prefix`.
    #[error("expected `address/prefix`, e.g. 10.0.0.0/24")]
    NotCidr,
    /// The address part does not parse.
    #[error("bad address in `{0}`")]
    BadAddress(String),
    /// The prefix is longer than the address.
    #[error("prefix /{0} is too long for the address")]
    BadPrefix(u8),
    /// Not a socket address (`ip:port`) nor `cidr:port`.
    #[error("expected `ip:port` or `cidr:port`, got `{0}`")]
    BadSeed(String),
}

impl Cidr {
    /// A range; host bits of `network` are cleared.
    pub fn new(network: IpAddr, prefix_len: u8) -> Result<Self, SeedParseError> {
        let bits = match network {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix_len > bits {
            return Err(SeedParseError::BadPrefix(prefix_len));
        }
        let network = match network {
            IpAddr::V4(ip) => {
                let mask = u32::MAX
                    .checked_shl(u32::from(32 - prefix_len))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(ip) & mask))
            }
            IpAddr::V6(ip) => {
                let mask = u128::MAX
                    .checked_shl(u32::from(128 - prefix_len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(ip) & mask))
            }
        };
        Ok(Self {
            network,
            prefix_len,
        })
    }

    /// How many host addresses a scan visits (IPv4 ranges wider than /31 skip the
    /// network and broadcast addresses).
    pub fn host_count(&self) -> u128 {
        match self.network {
            IpAddr::V4(_) => {
                let all = 1u128 << (32 - self.prefix_len);
                if self.prefix_len <= 30 { all - 2 } else { all }
            }
            IpAddr::V6(_) => 1u128
                .checked_shl(u32::from(128 - self.prefix_len))
                .unwrap_or(u128::MAX),
        }
    }

    /// The host addresses, in order.
    pub fn hosts(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (start, skip_edges) = match self.network {
            IpAddr::V4(ip) => (u128::from(u32::from(ip)), self.prefix_len <= 30),
            IpAddr::V6(ip) => (u128::from(ip), false),
        };
        let first = start + u128::from(skip_edges);
        let count = self.host_count();
        let v4 = self.network.is_ipv4();
        (0..count).map(move |i| {
            let n = first + i;
            if v4 {
                IpAddr::V4(Ipv4Addr::from(n as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(n))
            }
        })
    }
}

impl FromStr for Cidr {
    type Err = SeedParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s.split_once('/').ok_or(SeedParseError::NotCidr)?;
        let network: IpAddr = addr
            .parse()
            .map_err(|_| SeedParseError::BadAddress(s.to_owned()))?;
        let prefix_len: u8 = prefix.parse().map_err(|_| SeedParseError::NotCidr)?;
        Cidr::new(network, prefix_len)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// Where a join looks for the cluster.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Seed {
    /// A known member's address.
    Addr(SocketAddr),
    /// Every host of a range, on the cluster port.
    Range {
        /// The range to scan.
        cidr: Cidr,
        /// The cluster port.
        port: u16,
    },
    /// A host name with a port (`seeds.shop.internal:7946`). The core does no
    /// IO, so it cannot resolve names and skips these seeds
    /// ([`expand_seeds`]); a runtime resolves them to [`Seed::Addr`]s, at start
    /// and again before each slow re-probe ([`Node::refresh_seeds`](crate::Node::refresh_seeds)),
    /// since the addresses behind a name change (a Kubernetes headless service).
    Host {
        /// The name, as given.
        name: String,
        /// The cluster port.
        port: u16,
    },
}

impl Seed {
    /// `host:port`, the form a resolver takes, for a [`Seed::Host`].
    pub fn host_port(&self) -> Option<String> {
        match self {
            Seed::Host { name, port } => Some(format!("{name}:{port}")),
            _ => None,
        }
    }
}

impl From<SocketAddr> for Seed {
    fn from(addr: SocketAddr) -> Self {
        Seed::Addr(addr)
    }
}

impl FromStr for Seed {
    type Err = SeedParseError;

    /// `10.0.0.7:7946`, `[::1]:7946`, a range `10.0.0.0/24:7946`, or a host
    /// name `seeds.shop.internal:7946` (letters, digits, `-`, `_` and `.`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Seed::Addr(addr));
        }
        let (range, port) = s
            .rsplit_once(':')
            .ok_or_else(|| SeedParseError::BadSeed(s.to_owned()))?;
        let port: u16 = port
            .parse()
            .map_err(|_| SeedParseError::BadSeed(s.to_owned()))?;
        if is_host_name(range) {
            return Ok(Seed::Host {
                name: range.to_owned(),
                port,
            });
        }
        let range = range.trim_start_matches('[').trim_end_matches(']');
        Ok(Seed::Range {
            cidr: range.parse()?,
            port,
        })
    }
}

/// A DNS name: labels of letters, digits, `-` and `_`, joined by dots, at
/// least one letter somewhere (so `10.0.0.300` is a bad address, not a name).
fn is_host_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        })
        && text.chars().any(|c| c.is_ascii_alphabetic())
}

/// Why `join` refused to start. No state changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// No seed address other than this node's own.
    #[error("no seed to join through")]
    NoSeeds,
    /// The seeds expand to more addresses than `max_join_targets`.
    #[error("seeds expand to {hosts} addresses, more than max_join_targets ({limit})")]
    TooManyTargets {
        /// Addresses the seeds expand to.
        hosts: u128,
        /// The configured limit.
        limit: usize,
    },
    /// This node lost its name and takes no more commands.
    #[error(transparent)]
    NameTaken(#[from] crate::NameTaken),
}

/// Expands seeds to the addresses a join sends to, without `own` and without
/// duplicates: what [`Node::join`](crate::Node::join) checks before it starts, for
/// whoever queues a join and wants the same answer first.
pub fn expand_seeds(
    seeds: &[Seed],
    own: SocketAddr,
    limit: usize,
) -> Result<Vec<SocketAddr>, JoinError> {
    let hosts: u128 = seeds
        .iter()
        .map(|seed| match seed {
            Seed::Addr(_) => 1,
            Seed::Range { cidr, .. } => cidr.host_count(),
            Seed::Host { .. } => 0,
        })
        .fold(0u128, u128::saturating_add);
    if hosts > limit as u128 {
        return Err(JoinError::TooManyTargets { hosts, limit });
    }
    let mut targets = Vec::with_capacity(hosts as usize);
    for seed in seeds {
        match seed {
            Seed::Addr(addr) => targets.push(*addr),
            &Seed::Range { cidr, port } => {
                targets.extend(cidr.hosts().map(|ip| SocketAddr::new(ip, port)));
            }
            // Resolved by the runtime, which passes the addresses instead.
            Seed::Host { .. } => {}
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    targets.retain(|addr| *addr != own && seen.insert(*addr));
    if targets.is_empty() {
        return Err(JoinError::NoSeeds);
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_clears_host_bits() {
        let cidr: Cidr = "10.0.0.77/24".parse().expect("valid");
        assert_eq!(cidr.to_string(), "10.0.0.0/24");
        assert_eq!(cidr.host_count(), 254);
        let hosts: Vec<_> = cidr.hosts().collect();
        assert_eq!(hosts.first(), Some(&"10.0.0.1".parse().expect("valid")));
        assert_eq!(hosts.last(), Some(&"10.0.0.254".parse().expect("valid")));
        assert_eq!(
            "127.0.0.1/32".parse::<Cidr>().expect("valid").host_count(),
            1
        );
        assert_eq!(
            "10.0.0.0/31".parse::<Cidr>().expect("valid").host_count(),
            2
        );
        assert_eq!(
            "fd00::/120".parse::<Cidr>().expect("valid").host_count(),
            256
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(SeedParseError::BadPrefix(33))
        );
        assert_eq!("10.0.0.0".parse::<Cidr>(), Err(SeedParseError::NotCidr));
        assert!("0.0.0.0/0".parse::<Cidr>().is_ok());
    }

    #[test]
    fn seeds_parse_addresses_and_ranges() {
        assert_eq!(
            "127.0.0.1:7946".parse::<Seed>(),
            Ok(Seed::Addr("127.0.0.1:7946".parse().expect("valid")))
        );
        assert!(matches!(
            "10.0.0.0/24:7946".parse::<Seed>(),
            Ok(Seed::Range { port: 7946, .. })
        ));
        assert!(matches!(
            "[fd00::/120]:7946".parse::<Seed>(),
            Ok(Seed::Range { port: 7946, .. })
        ));
        assert!("nonsense".parse::<Seed>().is_err());
        assert_eq!(
            "seeds.shop.internal:7946".parse::<Seed>(),
            Ok(Seed::Host {
                name: "seeds.shop.internal".to_owned(),
                port: 7946
            })
        );
        assert_eq!(
            "db:7946".parse::<Seed>().map(|seed| seed.host_port()),
            Ok(Some("db:7946".to_owned()))
        );
        for bad in [
            "10.0.0.300:7946",
            "a b:7946",
            "host:99999",
            "10.0.0.0/33:7946",
            ":7946",
        ] {
            assert!(bad.parse::<Seed>().is_err(), "{bad}");
        }
    }

    #[test]
    fn expansion_drops_self_and_duplicates_and_respects_the_limit() {
        let own: SocketAddr = "127.0.0.2:7000".parse().expect("valid");
        let seeds = [
            "127.0.0.0/29:7000".parse::<Seed>().expect("valid"),
            Seed::Addr("127.0.0.3:7000".parse().expect("valid")),
        ];
        let targets = expand_seeds(&seeds, own, 100).expect("fits");
        assert_eq!(targets.len(), 5, "6 hosts, minus self; the duplicate once");
        assert!(!targets.contains(&own));
        assert_eq!(
            expand_seeds(&seeds, own, 3),
            Err(JoinError::TooManyTargets { hosts: 7, limit: 3 })
        );
        assert_eq!(
            expand_seeds(&[Seed::Addr(own)], own, 10),
            Err(JoinError::NoSeeds)
        );
        assert!(matches!(
            expand_seeds(&["::/0:1".parse().expect("valid")], own, 10),
            Err(JoinError::TooManyTargets { .. })
        ));
    }
}
