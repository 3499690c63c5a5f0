//! Rate limits on what strangers can make a node do: joins from one source
//! address (IP and port: many nodes may share a host) add at most a burst and
//! then a steady trickle of new rows, so a flood of made-up names cannot fill the
//! tracker in a moment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

/// Most source addresses tracked at once; when full, the longest-idle one is
/// forgotten (it had refilled anyway).
const MAX_SOURCES: usize = 1024;

/// A token bucket per source address.
#[derive(Debug)]
pub(crate) struct JoinLimiter {
    per_second: u32,
    burst: u32,
    buckets: BTreeMap<SocketAddr, Bucket>,
}

/// A token bucket: `burst` tokens, refilled at `per_second`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Whether a token is left at `now` (and takes it if so).
    pub(crate) fn take(&mut self, now: Instant, per_second: u32, burst: u32) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() * f64::from(per_second)).min(f64::from(burst));
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl JoinLimiter {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second,
            burst,
            buckets: BTreeMap::new(),
        }
    }

    /// Whether `source` may add one more row now (and takes a token if so).
    pub(crate) fn allow(&mut self, source: SocketAddr, now: Instant) -> bool {
        make_room(&mut self.buckets, &source, MAX_SOURCES, |bucket| {
            bucket.last
        });
        self.buckets
            .entry(source)
            .or_insert(Bucket::full(self.burst, now))
            .take(now, self.per_second, self.burst)
    }
}

/// Makes room for `key` in a table of at most `capacity` entries: when `key`
/// is new and the table full, the entry with the least `age` (the longest
/// idle, the oldest) is removed, and its key returned.
pub(crate) fn make_room<K: Ord + Clone, V, A: Ord>(
    map: &mut BTreeMap<K, V>,
    key: &K,
    capacity: usize,
    age: impl Fn(&V) -> A,
) -> Option<K> {
    if map.contains_key(key) || map.len() < capacity {
        return None;
    }
    let oldest = map
        .iter()
        .min_by_key(|(_, value)| age(value))
        .map(|(key, _)| key.clone())?;
    map.remove(&oldest);
    Some(oldest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_a_trickle_per_source() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let mut limiter = JoinLimiter::new(10, 5);
        let flooder: SocketAddr = "10.0.0.66:7946".parse().expect("valid");
        let allowed = (0..100).filter(|_| limiter.allow(flooder, now)).count();
        assert_eq!(allowed, 5, "the burst");
        let later = now + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| limiter.allow(flooder, later)).count();
        assert_eq!(allowed, 5, "refilled up to the burst, not beyond");
        let half = later + Duration::from_millis(300); // three tokens at 10/s
        assert_eq!((0..100).filter(|_| limiter.allow(flooder, half)).count(), 3);
        let other: SocketAddr = "10.0.0.66:7947".parse().expect("valid");
        assert!(
            limiter.allow(other, later),
            "other sources are not affected"
        );
    }

    #[test]
    fn the_table_of_sources_stays_bounded() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let mut limiter = JoinLimiter::new(1, 1);
        for i in 0..(MAX_SOURCES as u32 + 500) {
            let addr = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 7946));
            assert!(limiter.allow(addr, now + Duration::from_millis(u64::from(i))));
        }
        assert_eq!(limiter.buckets.len(), MAX_SOURCES);
    }
}
