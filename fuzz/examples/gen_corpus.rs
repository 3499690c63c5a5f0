//! Writes seed corpora for both fuzz targets from real traffic of the in-memory
//! cluster: every datagram delivered while three nodes join, run, send user
//! events, suspect a crashed member, restart it and leave.
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus
//! ```
//! Writes `fuzz/corpus/handle_packet/` and `fuzz/corpus/node_ops/` (ignored by git).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use beethoven_fuzz::{Action, Setup, Sim};

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let packets = root.join("handle_packet");
    let ops = root.join("node_ops");
    fs::create_dir_all(&packets)?;
    fs::create_dir_all(&ops)?;

    for setup in [Setup::Clustered, Setup::Sealed] {
        let sim = setup.build();
        let node = sim.members[0].node.as_ref().expect("running");
        assert_eq!(
            node.tracker().online_count(),
            3,
            "{setup:?}: the cluster formed"
        );
    }

    let mut seen = BTreeSet::new();
    for sealed in [false, true] {
        let mut sim = Sim::new(sealed);
        sim.capture = Some(Vec::new());
        for i in 1..3 {
            sim.apply(&Action::Join { node: i, seed: 0 });
        }
        let script = [
            Action::Run { ms: 3_000 },
            Action::SetTags {
                node: 0,
                tags: vec![("grpc".into(), "7000".into()), ("role".into(), "db".into())],
            },
            Action::Run { ms: 1_000 },
            // User events: pushes along the tree, acks, announcements; the
            // crash below makes pulls.
            Action::SendEvent {
                node: 0,
                name: "deploy".into(),
                payload: b"v1.2.3".to_vec(),
            },
            Action::SendEvent {
                node: 1,
                name: "config".into(),
                payload: vec![7; 300],
            },
            Action::Run { ms: 1_000 },
            Action::Crash { node: 2 },
            Action::Run { ms: 5_000 },
            Action::Restart {
                node: 2,
                move_to: true,
            },
            Action::SendEvent {
                node: 0,
                name: "after-restart".into(),
                payload: Vec::new(),
            },
            Action::Run { ms: 3_000 },
            Action::Advance {
                ms: 3_000,
                frozen: 0b010,
            },
            Action::Run { ms: 3_000 },
            Action::NewNode {
                node: 0,
                who: 4,
                at: 4,
            },
            Action::Run { ms: 6_000 },
            Action::Leave { node: 1 },
            Action::Run { ms: 3_000 },
        ];
        for action in &script {
            sim.apply(action);
        }
        for d in sim.capture.take().unwrap_or_default() {
            // Sealed datagrams only open on a sealed node; plain ones everywhere.
            let setups: &[Setup] = if sealed {
                &[Setup::Sealed]
            } else {
                &[Setup::Fresh, Setup::Joining, Setup::Clustered]
            };
            for setup in setups {
                let mut input = vec![setup.byte()];
                input.extend_from_slice(&d.bytes);
                if seen.insert(input.clone()) {
                    fs::write(packets.join(format!("seed-{:05}", seen.len())), &input)?;
                }
            }
        }
    }
    // node_ops: a few arbitrary byte strings decode to varied action sequences;
    // libFuzzer grows the rest from coverage.
    for i in 0u32..64 {
        let mut bytes = Vec::new();
        let mut x = 0x9e37_79b9u32.wrapping_mul(i + 1);
        for _ in 0..512 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            bytes.push(x as u8);
        }
        fs::write(ops.join(format!("seed-{i:03}")), &bytes)?;
    }
    println!(
        "wrote {} handle_packet seeds to {} and 64 node_ops seeds to {}",
        seen.len(),
        packets.display(),
        ops.display()
    );
    Ok(())
}
