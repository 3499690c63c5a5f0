//! Crashes the fuzzers found, replayed (stable toolchain, no libFuzzer):
//!
//! ```sh
//! cargo test --manifest-path fuzz/Cargo.toml
//! ```
//!
//! Each file under `regressions/<target>/` is an input of that target.

use std::fs;
use std::path::Path;

use beethoven_core::{DropReason, Health, MAX_INCARNATION, NodeStatus};
use beethoven_fuzz::{Action, Datagram, Sim, addr, check_datagram, name};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).expect("readable");
            (path.display().to_string(), bytes)
        })
        .collect()
}

#[test]
fn every_handle_packet_regression_passes_the_target_checks() {
    let inputs = inputs("handle_packet");
    assert!(!inputs.is_empty(), "the reproducers are in the repository");
    for (path, bytes) in inputs {
        eprintln!("replaying {path}");
        check_datagram(&bytes);
    }
}

const OVERFLOW: &str = "regressions/handle_packet/incarnation-overflow-refuting-suspect-max";

/// The first crash (`handle_packet`, 2026-11-25): a datagram saying "n0 is
/// Suspect at incarnation u64::MAX" made n0's refutation compute `u64::MAX + 1`:
/// a panic with overflow checks, and without them a wrap to 0, after which the
/// forged row could never be outbid and every other node declared n0 dead for
/// good. Sent as gossip to n1 as well, it must now change nothing anywhere.
#[test]
fn a_forged_suspicion_at_u64_max_neither_panics_nor_evicts_the_node() {
    let input = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(OVERFLOW)).expect("readable");
    let datagram = &input[1..];
    // Rewritten when the wire version rises (2: the name-conflict handshake; 3:
    // tags, an empty tag string after each row's time; 4: every message, item
    // and row behind its kind and length), so the forged row is still decoded
    // instead of dropped whole.
    assert_eq!(
        datagram[4],
        beethoven_core::VERSION,
        "the reproducer speaks the current wire version"
    );
    let mut sim = Sim::formed(false);
    sim.deliver(Datagram {
        from: addr(1),
        to: addr(0),
        bytes: datagram.to_vec(),
    });
    let stats = sim.members[0].node.as_ref().expect("running").stats();
    assert_eq!(
        stats.dropped(DropReason::Malformed),
        1,
        "decoded up to the forged row, which is out of range"
    );
    // The same row as plain gossip: the reproducer's header, sender "n2" and its
    // incarnation, message `Gossip` (kind 8, no fields), one item: the
    // reproducer's first (the update about n0).
    let mut gossip = datagram[..18].to_vec();
    gossip.extend_from_slice(&[8, 0, 1]);
    gossip.extend_from_slice(&datagram[25..51]);
    sim.deliver(Datagram {
        from: addr(2),
        to: addr(1),
        bytes: gossip,
    });
    for _ in 0..3 {
        sim.apply(&Action::Run { ms: 10_000 });
    }
    for member in &sim.members {
        let node = member.node.as_ref().expect("running");
        let row = node.row(&name(0)).expect("n0 is tracked");
        assert_eq!(
            row.status,
            NodeStatus::Online,
            "{} sees n0 online",
            node.name()
        );
        assert_eq!(row.health, Health::Alive);
        assert!(row.incarnation <= MAX_INCARNATION);
    }
}
