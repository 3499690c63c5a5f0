//! Packets captured from a running cluster, for the benchmarks to replay: the
//! wire codec is internal to the core, so every packet a bench feeds is one a
//! node really sent.

use std::time::Duration;

use beethoven_core::{Config, DropReason};

use crate::lone::discard;
use crate::{Pump, addr, config, name};

/// The network seed of the benchmarks' clusters.
const SEED: u64 = 0;

impl Pump {
    /// Runs until `pick` accepts a delivered datagram (from, to, bytes) and
    /// returns it. `pick` sees the pump right after the receiver handled the
    /// datagram, and may use the nodes to check it. Panics after `limit` of
    /// virtual time: a benchmark would measure nothing.
    pub fn capture(
        &mut self,
        limit: Duration,
        mut pick: impl FnMut(&mut Pump, usize, usize, &[u8]) -> bool,
    ) -> (usize, usize, Vec<u8>) {
        let until = self.now + limit;
        self.tap = Some(Vec::new());
        while self.step(until) {
            let tapped = self.tap.replace(Vec::new()).unwrap_or_default();
            for (from, to, bytes) in tapped {
                if pick(self, from, to, &bytes) {
                    self.tap = None;
                    return (from, to, bytes);
                }
            }
        }
        self.tap = None;
        panic!("no matching datagram within {limit:?}");
    }
}

/// Whether `bytes` from node `from` is a Ping for node `to`: a live node that is
/// not its target decodes it in full, then drops it as `WrongTarget`.
pub fn is_ping_for(pump: &mut Pump, from: usize, to: usize, bytes: &[u8]) -> bool {
    let bystander = pump
        .live()
        .find(|&k| k != from && k != to)
        .expect("the check needs a third live node");
    let (now, from_addr) = (pump.now, pump.addrs[from]);
    let probe = pump.node_mut(bystander);
    let before = probe.stats().dropped(DropReason::WrongTarget);
    probe.handle_packet(now, from_addr, bytes);
    discard(probe);
    probe.stats().dropped(DropReason::WrongTarget) == before + 1
}

/// A three-node cluster for the benchmarks, nodes with `config(i)`, on a network
/// without delay: a datagram arrives the moment it is sent, in sending order.
pub fn bench_cluster(config: impl FnMut(usize) -> Config) -> Pump {
    let mut pump = Pump::cluster_with(3, SEED, config);
    pump.net.latency = Duration::ZERO;
    pump.net.jitter = Duration::ZERO;
    pump
}

/// A quiet [`bench_cluster`] (nodes with [`config`]`(i)`) and a Ping from node 0
/// to node 1 captured in it.
pub fn quiet_ping() -> (Pump, Vec<u8>) {
    quiet_ping_with(|i| config(i as u64))
}

/// The same with `config(i)` for node `i`.
pub fn quiet_ping_with(config: impl FnMut(usize) -> Config) -> (Pump, Vec<u8>) {
    let mut pump = bench_cluster(config);
    pump.run_for(Duration::from_secs(20));
    assert!(pump.quiet(), "the cluster converged");
    let (_, _, ping) = pump.capture(Duration::from_secs(5), |pump, from, to, bytes| {
        from == 0 && to == 1 && is_ping_for(pump, from, to, bytes)
    });
    (pump, ping)
}

/// A quiet [`bench_cluster`] in which node 0 has just learned `k` new nodes,
/// and a Ping from node 0 to node 1 that carries updates (at least `k` rows
/// worth of bytes more than a plain ping).
///
/// `new_node` sends a digest packet to each new node, and each of those carries
/// the pending updates too; the retransmit multiplier is raised (to 64) so that
/// those packets do not use up every update's budget before a ping goes out.
pub fn ping_with_updates(k: usize) -> (Pump, Vec<u8>) {
    let (mut pump, plain) = quiet_ping_with(|i| {
        let mut c = config(i as u64);
        c.retransmit_mult = 64;
        // The k new nodes do not exist: as indirect-probe helpers they never nack,
        // and Lifeguard's local health would slow node 0's probing for a while.
        c.max_local_health = 0;
        c
    });
    for extra in 0..k {
        let (now, i) = (pump.now, 1000 + extra);
        pump.node_mut(0)
            .new_node(now, name(i), addr(i))
            .expect("a three-row tracker has room");
    }
    pump.drain(0);
    // A row is well over 20 bytes on the wire (name, address, incarnation, health, time).
    let min_len = plain.len() + 20 * k;
    // Node 1 is now one of k + 2 members probed in turn: allow a few rounds.
    let (_, _, ping) = pump.capture(Duration::from_secs(20), |pump, from, to, bytes| {
        from == 0 && to == 1 && bytes.len() >= min_len && is_ping_for(pump, from, to, bytes)
    });
    (pump, ping)
}
