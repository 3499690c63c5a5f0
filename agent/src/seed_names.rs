//! Seed names (`host:port`) that do not resolve yet. On Kubernetes a headless
//! service's name lags the pods behind it, so a name that does not resolve at
//! start is a warning, not a failure: the agent starts with the seeds it has
//! and keeps looking the name up, with backoff like an unanswered seed (from
//! `join_retry`, doubling, up to `rejoin_interval`), joining through the
//! addresses once it resolves. Names that resolve at start go to the runtime,
//! which looks them up again for every re-probe of the seeds.

use std::net::SocketAddr;
use std::time::Duration;

use beethoven_tokio::{Handle, Seed};
use tracing::{info, warn};

/// The seeds split by whether their names resolve now.
#[derive(Debug, Default)]
pub(crate) struct SplitSeeds {
    /// Addresses, ranges, and names that resolve now.
    pub(crate) ready: Vec<Seed>,
    /// Names that do not resolve yet.
    pub(crate) pending: Vec<String>,
}

/// Every address `host_port` resolves to now, or why it does not.
pub(crate) async fn lookup(host_port: &str) -> Result<Vec<SocketAddr>, String> {
    match tokio::net::lookup_host(host_port).await {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err("the name has no address".to_owned())
            } else {
                Ok(addrs)
            }
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Looks every name up once; each that does not resolve is a warning.
pub(crate) async fn split(seeds: &[Seed]) -> SplitSeeds {
    let mut split = SplitSeeds::default();
    for seed in seeds {
        match seed.host_port() {
            Some(host) => match lookup(&host).await {
                Ok(_) => split.ready.push(seed.clone()),
                Err(error) => {
                    warn!(seed = %host, %error, "seed name does not resolve; the agent starts without it and keeps trying");
                    split.pending.push(host);
                }
            },
            None => split.ready.push(seed.clone()),
        }
    }
    split
}

/// The wait before each next lookup: `first`, doubling, at most `most`.
pub(crate) fn backoff(first: Duration, most: Duration) -> impl Iterator<Item = Duration> {
    let first = first.max(Duration::from_millis(10)).min(most);
    std::iter::successors(Some(first), move |wait| Some((*wait * 2).min(most)))
}

/// Looks `host` up with backoff until it resolves, then joins through its
/// addresses. Ends when it joined, or when the node stopped.
pub(crate) async fn keep_trying(node: Handle, host: String, first: Duration, most: Duration) {
    for (attempt, wait) in (1u32..).zip(backoff(first, most)) {
        tokio::time::sleep(wait).await;
        if !node.is_running() {
            return;
        }
        match lookup(&host).await {
            Ok(addrs) => {
                info!(seed = %host, addresses = addrs.len(), "seed name resolves now; joining through it");
                let seeds: Vec<Seed> = addrs.into_iter().map(Seed::Addr).collect();
                if let Err(error) = node.join(&seeds).await {
                    warn!(seed = %host, %error, "cannot join through the seed name");
                }
                return;
            }
            Err(error) => {
                warn!(seed = %host, attempt, %error, "seed name still does not resolve; trying again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_ceiling() {
        let waits: Vec<u64> = backoff(Duration::from_secs(1), Duration::from_secs(5))
            .take(5)
            .map(|wait| wait.as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_pending_and_addresses_are_ready() {
        let seeds: Vec<Seed> = [
            "127.0.0.1:7946",
            "no-such-host.invalid:7946",
            "localhost:7946",
        ]
        .iter()
        .map(|text| text.parse().expect("a valid seed"))
        .collect();
        let split = split(&seeds).await;
        assert_eq!(split.pending, ["no-such-host.invalid:7946"]);
        assert_eq!(split.ready.len(), 2);
    }
}
