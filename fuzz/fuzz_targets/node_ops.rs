//! A three-node in-memory cluster driven by a fuzzer-chosen sequence of actions:
//! datagrams delivered, lost, duplicated, corrupted, truncated, redirected or
//! replayed; arbitrary bytes from a few addresses; time passing with a healthy
//! network or none, with stalled nodes; spurious wake-ups; unreachable hints;
//! commands (`new_node`, `join`, `leave`, `alert_me`, key rings, `set_tags`,
//! `send_event`, `query`, `respond`); crashes and restarts.
//!
//! Checks after every step, on every node (`beethoven_fuzz::check_node`): no
//! panic; own row present, alive at the node's incarnation and address unless it
//! left (then `Left`); mode `Clustered` exactly when another node is online;
//! tracker events replay to the tracker and mode events to the mode;
//! notifications never about self and matching the rows; datagrams within
//! `max_packet_size`; refused commands change nothing; user events once each,
//! in order; query acks, responses and ends only for the node's own queries,
//! once per member (the `Mirror`).

#![no_main]

use arbitrary::Arbitrary;
use beethoven_fuzz::{Action, Sim};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    formed: bool,
    sealed: bool,
    actions: Vec<Action>,
}

fuzz_target!(|input: Input| {
    let mut sim = if input.formed {
        Sim::formed(input.sealed)
    } else {
        Sim::new(input.sealed)
    };
    for action in input.actions.iter().take(256) {
        sim.apply(action);
    }
});
