//! User events under the fuzz harness: real event datagrams (a push, its
//! ack, a pull) cut short or with a byte flipped pass the `handle_packet`
//! target's checks, and a run that loses, duplicates and replays them
//! delivers each event once, in its origin's order (the harness's `Mirror`
//! checks every delivery).
//!
//! ```sh
//! cargo test --manifest-path fuzz/Cargo.toml --test user_events
//! ```

use beethoven_fuzz::{Action, Datagram, Setup, Sim, check_kinds_mangled, message_kind};

/// Message kinds of user events (`core/src/wire/user.rs`).
const EVENT: u64 = 11;
const EVENT_PULL: u64 = 12;
const EVENT_ACK: u64 = 13;

/// A formed plaintext cluster where node 0 sends two events, the first
/// push of each lost (so the member it was for pulls it): every datagram.
fn event_traffic() -> Vec<Datagram> {
    let mut sim = Setup::Clustered.build();
    sim.capture = Some(Vec::new());
    for (k, payload) in [b"v1".to_vec(), vec![9; 600]].into_iter().enumerate() {
        sim.apply(&Action::SendEvent {
            node: 0,
            name: format!("deploy-{k}"),
            payload,
        });
        let push = sim
            .in_flight
            .iter()
            .position(|d| message_kind(&d.bytes) == Some(EVENT))
            .expect("the send pushed the event");
        sim.apply(&Action::Lose { pick: push as u8 });
        sim.apply(&Action::Run { ms: 2_000 });
    }
    sim.capture.take().unwrap_or_default()
}

#[test]
fn event_datagrams_cut_short_or_with_a_byte_flipped_pass_the_target_checks() {
    let traffic = event_traffic();
    check_kinds_mangled(&traffic, &[EVENT, EVENT_PULL, EVENT_ACK]);
}

#[test]
fn a_run_that_loses_duplicates_and_replays_event_datagrams_delivers_each_once_in_order() {
    let mut sim = Setup::Clustered.build();
    for round in 0..6u8 {
        for node in 0..3u8 {
            sim.apply(&Action::SendEvent {
                node,
                name: format!("e{round}"),
                payload: vec![round; usize::from(node) * 100],
            });
        }
        sim.apply(&Action::Duplicate { pick: round });
        sim.apply(&Action::Lose { pick: round * 3 });
        sim.apply(&Action::Replay {
            pick: round * 7,
            to: None,
        });
        sim.apply(&Action::Deliver { pick: 1 });
        sim.apply(&Action::Run { ms: 300 });
    }
    sim.apply(&Action::Run { ms: 5_000 });
    for member in &sim.members {
        let node = member.node.as_ref().expect("no one crashed");
        let stats = &node.stats().user_events;
        assert_eq!(stats.sent, 6);
        assert_eq!(
            stats.delivered, 12,
            "the other two nodes' six events each, once"
        );
    }
}

#[test]
fn refused_sends_change_nothing() {
    let mut sim: Sim = Setup::Clustered.build();
    for (name, payload) in [
        (String::new(), Vec::new()),
        ("n".repeat(129), Vec::new()),
        ("big".to_string(), vec![0; 1025]),
    ] {
        sim.apply(&Action::SendEvent {
            node: 0,
            name,
            payload,
        });
    }
    let node = sim.members[0].node.as_ref().expect("running");
    assert_eq!(node.stats().user_events.sent, 0);
}
