//! Arbitrary bytes into `Node::handle_packet` (the wire decoder is crate-private,
//! so it is reached through the public API). The first byte picks the node's
//! state (`Setup`), the rest is the datagram.
//!
//! Checks (`beethoven_fuzz::check_datagram`): no panic; a dropped datagram (a
//! drop counter went up) changes nothing (tracker, mode, incarnation, no datagram
//! and no event queued); the node's invariants hold afterwards.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| beethoven_fuzz::check_datagram(data));
