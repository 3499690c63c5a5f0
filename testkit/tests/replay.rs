//! Replay: the same seed and scenario give an identical event trace.

use std::time::Duration;

use beethoven_testkit::fault::random_schedule;
use beethoven_testkit::{FaultKind, NetworkModel, Sim};

/// Runs a cluster through random faults and returns (trace hash, events, steps,
/// the recorded trace rendered with times as offsets from the sim's start).
fn run(seed: u64) -> (u64, u64, u64, Vec<String>) {
    let network = NetworkModel {
        duplicate: 0.02,
        reorder: 0.05,
        ..NetworkModel::lan().with_loss(0.05)
    };
    let mut sim = Sim::builder()
        .nodes(12)
        .seed(seed)
        .network(network)
        .keep_trace(true)
        .build()
        .expect("forms");
    let mut rng = fastrand::Rng::with_seed(seed);
    let schedule = random_schedule(&mut rng, 12, Duration::from_secs(20), 12, &FaultKind::ALL);
    sim.schedule_all(sim.now(), &schedule);
    sim.run_for(Duration::from_secs(25));
    let gate = sim.timing().liveness;
    sim.liveness_gate(gate).expect("settles");
    let rendered = sim
        .trace()
        .entries()
        .expect("kept")
        .iter()
        .map(|e| format!("{:?} {} {:?}", e.at, e.node, e.event))
        .collect();
    (sim.trace().hash(), sim.trace().len(), sim.steps(), rendered)
}

#[test]
fn the_same_seed_and_schedule_replay_an_identical_trace() {
    let a = run(42);
    let b = run(42);
    assert_eq!(a.0, b.0, "trace hashes differ");
    assert_eq!((a.1, a.2), (b.1, b.2));
    assert_eq!(a.3, b.3);
    assert!(a.1 > 300, "a real run: {} events", a.1);
}

#[test]
fn another_seed_gives_another_trace() {
    assert_ne!(run(42).0, run(43).0);
}

#[test]
fn a_restored_formation_replays_too() {
    let run = |seed: u64| {
        let mut sim = Sim::builder()
            .nodes(30)
            .seed(seed)
            .formation(beethoven_testkit::Formation::Restore)
            .build()
            .expect("forms");
        sim.run_for(Duration::from_secs(5));
        (sim.trace().hash(), sim.steps())
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).0, run(8).0);
}
