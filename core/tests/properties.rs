//! Properties of a node fed untrusted bytes.

use std::time::Duration;

use proptest::prelude::*;

use beethoven_core::{DropReason, HEADER_LEN, MAGIC, VERSION};
use beethoven_pump::{Pump, config};

/// A converged three-node cluster, to feed garbage into.
fn settled() -> Pump {
    let mut pump = Pump::cluster(3, 77);
    pump.run_until(Duration::from_secs(5), |p| {
        p.all_live_online() && p.converged()
    })
    .expect("converges");
    pump
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes, bare or behind a valid header, never panic and never change
    /// the tracker, the mode, or anything but the drop counters.
    #[test]
    fn arbitrary_bytes_never_panic_and_never_change_the_tracker(
        body in proptest::collection::vec(any::<u8>(), 0..1500),
        with_header in any::<bool>(),
    ) {
        let mut pump = settled();
        let mut bytes = Vec::new();
        if with_header {
            bytes.extend_from_slice(&MAGIC);
            bytes.push(VERSION);
            bytes.push(0); // flags: plaintext
            bytes.extend_from_slice(&pump.node(0).config().cluster_id.0.to_le_bytes());
        }
        bytes.extend_from_slice(&body);
        let before = pump.node(0).tracker().clone();
        let mode = pump.node(0).mode();
        let dropped = pump.node(0).stats().dropped_total();
        let now = pump.now;
        let from = "10.9.9.9:1".parse().expect("valid");
        pump.node_mut(0).handle_packet(now, from, &bytes);
        let node = pump.node_mut(0);
        prop_assert!(node.poll_event().is_none(), "no event from garbage");
        prop_assert_eq!(node.tracker(), &before);
        prop_assert_eq!(node.mode(), mode);
        // Random bytes almost never form a valid packet; when they do not, the drop is counted.
        if bytes.len() < HEADER_LEN || !with_header {
            prop_assert_eq!(node.stats().dropped_total(), dropped + 1);
            prop_assert!(node.poll_transmit().is_none(), "nothing answers garbage");
        }
    }
}

#[test]
fn oversized_and_foreign_packets_are_counted_by_reason() {
    let mut pump = settled();
    let now = pump.now;
    let from = "10.9.9.9:1".parse().expect("valid");
    let node = pump.node_mut(0);
    node.handle_packet(now, from, &vec![0u8; 1401]);
    node.handle_packet(now, from, b"BTH");
    node.handle_packet(now, from, b"GET / HTTP/1.1\r\n");
    let mut foreign = MAGIC.to_vec();
    foreign.push(VERSION);
    foreign.push(0);
    foreign.extend_from_slice(&12345u64.to_le_bytes());
    foreign.push(0);
    node.handle_packet(now, from, &foreign);
    let mut future = MAGIC.to_vec();
    future.push(VERSION + 1);
    future.extend_from_slice(&[0; 10]);
    node.handle_packet(now, from, &future);
    let stats = node.stats();
    assert_eq!(stats.dropped(DropReason::Oversized), 1);
    assert_eq!(stats.dropped(DropReason::Truncated), 1);
    assert_eq!(stats.dropped(DropReason::BadMagic), 1);
    assert_eq!(stats.dropped(DropReason::WrongCluster), 1);
    assert_eq!(stats.dropped(DropReason::UnsupportedVersion), 1);
}

#[test]
fn a_packet_from_another_cluster_never_changes_state() {
    // A second cluster with another id on the same network: same addresses, other key.
    let mut pump = settled();
    let mut other = Pump::new(5);
    let mut config = config(9);
    config.cluster_id = beethoven_core::ClusterId::from_name("other");
    other.add_node(config);
    let now = pump.now;
    let seed = pump.addrs[1]; // any address but its own
    other.nodes[0]
        .as_mut()
        .expect("running")
        .join(now, &[beethoven_core::Seed::Addr(seed)])
        .expect("join starts");
    let before = pump.node(0).tracker().clone();
    let node = other.nodes[0].as_mut().expect("running");
    let mut sent = Vec::new();
    while let Some(t) = node.poll_transmit() {
        sent.push(t.payload.to_vec());
    }
    assert!(!sent.is_empty());
    for bytes in sent {
        pump.node_mut(0)
            .handle_packet(now, "10.9.9.9:7946".parse().expect("valid"), &bytes);
    }
    assert_eq!(pump.node(0).tracker(), &before);
    assert_eq!(pump.node(0).stats().dropped(DropReason::WrongCluster), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// "Port unreachable" hints are evidence, never proof: random hints about live,
    /// reachable nodes never take any of them offline.
    #[test]
    fn unreachable_hints_alone_never_take_a_live_node_offline(
        hints in proptest::collection::vec((0..5usize, 0..5usize, 0..3000u64), 1..60),
    ) {
        let mut pump = Pump::cluster(5, 31);
        pump.run_until(Duration::from_secs(5), |p| p.all_live_online() && p.converged())
            .expect("converges");
        let start = pump.now;
        let mut hints = hints;
        hints.sort_by_key(|h| h.2);
        for (receiver, about, at_ms) in hints {
            let at = start + Duration::from_millis(at_ms);
            if at > pump.now {
                pump.run_for(at - pump.now);
            }
            let (now, addr) = (pump.now, pump.addrs[about]);
            pump.node_mut(receiver).handle_unreachable(now, addr);
            pump.drain(receiver);
        }
        pump.run_for(Duration::from_secs(10));
        for i in 0..5 {
            prop_assert_eq!(pump.offline_writes(&pump.names[i]), 0, "node {} went offline", i);
        }
        prop_assert!(pump.all_live_online() && pump.converged());
    }
}

#[test]
fn a_join_flood_of_made_up_names_from_one_address_is_rate_limited_and_evicts_no_one() {
    use beethoven_core::{Health, NodeName, TrackerRow};
    let mut pump = settled();
    let members: Vec<TrackerRow> = pump.node(0).tracker().rows().cloned().collect();
    // Captured real Join packets of many made-up nodes, all sent from one address.
    let flooder: std::net::SocketAddr = "10.66.66.66:7946".parse().expect("valid");
    let mut joins = Vec::new();
    for i in 0..2_000 {
        let name = NodeName::new(&format!("fake-{i}")).expect("valid");
        let mut fake =
            beethoven_core::Node::new(config(10_000 + i), name, flooder, pump.now, pump.wall_now())
                .expect("valid config");
        let now = pump.now;
        fake.join(now, &[beethoven_core::Seed::Addr(pump.addrs[0])])
            .expect("join starts");
        while let Some(t) = fake.poll_transmit() {
            joins.push(t.payload.to_vec());
        }
    }
    let now = pump.now;
    for bytes in &joins {
        pump.node_mut(0).handle_packet(now, flooder, bytes);
    }
    let node = pump.node(0);
    let burst = node.config().join_burst as usize;
    assert_eq!(
        node.tracker().len(),
        members.len() + burst,
        "only the burst got in"
    );
    assert_eq!(
        node.stats().dropped(DropReason::RateLimited),
        (joins.len() - burst) as u64
    );
    for member in &members {
        let row = node.row(&member.node).expect("real members stay");
        assert_eq!(row.health, Health::Alive);
    }
    // A second later the flooder gets a trickle, not another flood.
    pump.run_for(Duration::from_secs(1));
    let now = pump.now;
    for bytes in &joins {
        pump.node_mut(0).handle_packet(now, flooder, bytes);
    }
    let rate = pump.node(0).config().join_rate as usize;
    assert!(pump.node(0).tracker().len() <= members.len() + burst + rate + 1);
}
