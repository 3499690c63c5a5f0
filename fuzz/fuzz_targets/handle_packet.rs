//! Arbitrary bytes into `Node::handle_packet` (the wire decoder is crate-private,
//! so it is reached through the public API). The first byte picks the node's
//! state (`Setup`), the rest is the datagram.
//!
//! Checks: no panic; a dropped datagram (a drop counter went up) changes nothing
//! (tracker, mode, incarnation, no datagram and no event queued); the node's
//! invariants hold afterwards.

#![no_main]

use beethoven_fuzz::{Datagram, Setup, addr, check_node};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let mut sim = Setup::from_byte(selector).build();
    // The datagram comes from node 1's address: a known peer once clustered.
    let from = addr(1);
    let member = &mut sim.members[0];
    let node = member.node.as_mut().expect("node 0 is running");
    let tracker = node.tracker().clone();
    let (mode, incarnation) = (node.mode(), node.incarnation());
    let dropped = node.stats().dropped_total();
    let received = node.stats().packets_received;

    node.handle_packet(sim.now, from, bytes);

    assert_eq!(
        node.stats().packets_received,
        received + 1,
        "every datagram is counted"
    );
    if node.stats().dropped_total() > dropped {
        assert_eq!(
            node.stats().dropped_total(),
            dropped + 1,
            "one datagram, one drop"
        );
        assert!(
            node.tracker() == &tracker,
            "a dropped datagram changed the tracker"
        );
        assert_eq!(node.mode(), mode, "a dropped datagram changed the mode");
        assert_eq!(
            node.incarnation(),
            incarnation,
            "a dropped datagram changed the incarnation"
        );
        assert!(
            node.poll_transmit().is_none(),
            "a dropped datagram caused a send"
        );
        assert!(
            node.poll_event().is_none(),
            "a dropped datagram caused an event"
        );
    }
    let mut sent = Vec::new();
    beethoven_fuzz::drain(node, &mut member.mirror, &mut |d: Datagram| sent.push(d));
    check_node(node, &member.mirror);
});
