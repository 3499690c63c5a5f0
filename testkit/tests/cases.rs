//! Cases you can read, paste and replay: every scenario the strategies draw
//! round-trips through its Rust form, and `beethoven-sim --case` replays the
//! same run a test does (the same trace hash).

use std::time::Duration;

use beethoven_testkit::scenario::code::*;
use beethoven_testkit::strategy::arb_tag_changes;
use beethoven_testkit::{ScenarioSpace, arb_scenario, arb_scenario_in, regressions};
use proptest::prelude::*;

/// Scenarios with tag changes too (the default space draws none).
fn scenario_with_tag_changes() -> impl Strategy<Value = Scenario> {
    let config = Config::for_cluster("prop");
    (
        arb_scenario(),
        arb_tag_changes(8, Duration::from_secs(8), 3, &config),
    )
        .prop_map(|(scenario, changes)| {
            changes
                .into_iter()
                .fold(scenario, |s, change| s.fault_at(change.at, change.fault))
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: regressions::kept(),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_drawn_scenario_reads_back_from_its_rust_form(scenario in arb_scenario()) {
        let code = scenario.to_code();
        prop_assert!(!code.contains('\n'), "one line: {}", code);
        prop_assert_eq!(code.parse::<Scenario>(), Ok(scenario.clone()), "{}", code);
        prop_assert_eq!(format!("{scenario:?}"), code);
    }

    #[test]
    fn scenarios_of_larger_spaces_and_tag_changes_read_back(
        scenario in arb_scenario_in(ScenarioSpace::default().with_nodes(5..=120).with_max_faults(20)),
        tagged in scenario_with_tag_changes(),
    ) {
        for scenario in [scenario, tagged] {
            let code = scenario.to_code();
            prop_assert_eq!(code.parse::<Scenario>(), Ok(scenario), "{}", code);
        }
    }
}

/// `beethoven-sim` (built with the default `cli` feature).
#[cfg(feature = "cli")]
mod command_line {
    use super::*;

    /// A case the command line and a test both run.
    fn case() -> Scenario {
        Scenario::new(5)
            .seed(17)
            .network(NetworkModel {
                loss: 0.01,
                ..NetworkModel::lan()
            })
            .fault_at(
                ms(500),
                Fault::Crash {
                    node: 3,
                    host: HostFate::Vanishes,
                },
            )
            .fault_at(
                ms(2500),
                Fault::Partition {
                    groups: vec![vec![0]],
                },
            )
    }

    #[test]
    fn beethoven_sim_replays_a_case_as_a_test_runs_it() {
        let scenario = case();
        let in_test = scenario.replay().expect("forms");
        assert!(in_test.gate.is_ok(), "{:?}", in_test.gate);
        let hash = format!("trace hash: {:016x}", in_test.sim.trace().hash());
        let command = scenario.command();
        let code = command
            .strip_prefix("beethoven-sim --case '")
            .and_then(|rest| rest.strip_suffix('\''))
            .expect("the command quotes the case");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_beethoven-sim"))
            .args(["--case", code])
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(&hash), "the same run: {hash}\n{stdout}");
        assert!(
            stdout.contains("fault Fault::Crash { node: 3, host: HostFate::Vanishes }"),
            "the timeline: {stdout}"
        );
        assert!(
            stdout.contains("node-0 hears node-3 is offline"),
            "{stdout}"
        );
    }

    #[test]
    fn beethoven_sim_reads_a_case_from_a_file_and_refuses_what_is_not_one() {
        let path = std::env::temp_dir().join(format!("beethoven-case-{}.txt", std::process::id()));
        std::fs::write(&path, format!("{}\n", case().to_code())).expect("writes");
        let run = |args: &[&std::ffi::OsStr]| {
            std::process::Command::new(env!("CARGO_BIN_EXE_beethoven-sim"))
                .args(args)
                .output()
                .expect("runs")
        };
        let from_file = run(&["--case-file".as_ref(), path.as_os_str()]);
        let _ = std::fs::remove_file(&path);
        assert!(from_file.status.success());
        let from_arg = run(&["--case".as_ref(), case().to_code().as_ref()]);
        assert_eq!(from_file.stdout, from_arg.stdout);
        let bad = run(&["--case".as_ref(), "Scenario::new(4).warp(9)".as_ref()]);
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("warp"));
    }
}
