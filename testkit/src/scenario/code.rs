//! A [`Scenario`] as Rust: the builder calls that make it, showing only what
//! differs from the defaults, on one line. The same text compiles as is in a
//! test (with `use beethoven_testkit::scenario::code::*;`), parses back to the
//! same scenario ([`Scenario::from_str`](std::str::FromStr)), and replays on
//! the command line (`beethoven-sim --case '<code>'`). A scenario's `Debug` is
//! this form, so the minimal case proptest prints can be pasted back.
//!
//! ```
//! use beethoven_testkit::scenario::code::*;
//!
//! let case = Scenario::new(4)
//!     .seed(7)
//!     .network(NetworkModel { loss: 0.01, ..NetworkModel::lan() })
//!     .config_with(|c| { c.probe_interval = ms(200); })
//!     .fault_at(ms(1500), Fault::Crash { node: 2, host: HostFate::Vanishes });
//! let code = case.to_code();
//! assert_eq!(
//!     code,
//!     "Scenario::new(4).seed(7).network(NetworkModel { loss: 0.01, ..NetworkModel::lan() })\
//!      .config_with(|c| { c.probe_interval = ms(200); })\
//!      .fault_at(ms(1500), Fault::Crash { node: 2, host: HostFate::Vanishes })"
//! );
//! assert_eq!(code.parse::<Scenario>(), Ok(case.clone()));
//! assert_eq!(case.command(), format!("beethoven-sim --case '{code}'"));
//! ```
//!
//! Faults are written as their variants' struct literals, durations with
//! [`secs`], [`ms`], [`us`] or [`ns`] (the coarsest unit that is exact), the
//! config as the fields that differ from `Config::for_cluster("prop")` (what
//! [`arb_config`](crate::strategy::arb_config) shrinks to). A key ring cannot
//! be written: a config with one says so in a comment and parses without it.

mod parse;
pub(crate) mod values;

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::time::Duration;

pub use beethoven_core::{ClusterId, Config, Tags};

pub use crate::fault::{Fault, HostFate};
use crate::invariant::Violation;
pub use crate::network::{LinkRule, NetworkModel};
use crate::sim::{BuildError, Sim};
pub use crate::strategy::Scenario;
use crate::strategy::{ClusterSpec, ScenarioSpace};
use parse::Expr;
pub use values::CodeError;
use values::{
    CLUSTER, Code, command, ends, error, one, read_config, set_config_field, write_config,
};

/// `n` seconds.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` milliseconds.
pub const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `n` microseconds.
pub const fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// `n` nanoseconds.
pub const fn ns(n: u64) -> Duration {
    Duration::from_nanos(n)
}

impl Scenario {
    /// A scenario of `nodes` nodes with every default: seed 0, a LAN
    /// ([`NetworkModel::lan`]), `Config::for_cluster("prop")`, the default
    /// chaos phase (8 s, as [`ScenarioSpace`]'s), no faults.
    pub fn new(nodes: usize) -> Self {
        Self {
            cluster: ClusterSpec {
                nodes,
                seed: 0,
                network: NetworkModel::lan(),
            },
            config: Config::for_cluster(CLUSTER),
            schedule: Vec::new(),
            chaos: ScenarioSpace::default().chaos,
        }
    }

    /// The same scenario with the simulator's seed `seed`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.cluster.seed = seed;
        self
    }

    /// The same scenario on `network`.
    pub fn network(mut self, network: NetworkModel) -> Self {
        self.cluster.network = network;
        self
    }

    /// The same scenario with the nodes' config `config`.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The same scenario with its config changed by `change` (how the code
    /// form writes a config: `.config_with(|c| { c.probe_interval = ms(200); })`).
    pub fn config_with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// The same scenario with a chaos phase of `chaos`.
    pub fn chaos(mut self, chaos: Duration) -> Self {
        self.chaos = chaos;
        self
    }

    /// The same scenario with `fault` at `at` into the chaos phase, after the
    /// faults given so far.
    pub fn fault_at(mut self, at: Duration, fault: Fault) -> Self {
        self.schedule.push(crate::fault::Scheduled { at, fault });
        self
    }

    /// The scenario as the Rust that builds it, on one line (see the module docs).
    pub fn to_code(&self) -> String {
        let mut out = String::new();
        let Self {
            cluster:
                ClusterSpec {
                    nodes,
                    seed,
                    network,
                },
            config,
            schedule,
            chaos,
        } = self;
        let _ = write!(out, "Scenario::new({nodes}).seed({seed})");
        if *network != NetworkModel::lan() {
            out.push_str(".network(");
            network.write(&mut out);
            out.push(')');
        }
        write_config(config, &mut out);
        if *chaos != ScenarioSpace::default().chaos {
            out.push_str(".chaos(");
            chaos.write(&mut out);
            out.push(')');
        }
        for scheduled in schedule {
            out.push_str(".fault_at(");
            scheduled.at.write(&mut out);
            out.push_str(", ");
            scheduled.fault.write(&mut out);
            out.push(')');
        }
        out
    }

    /// The `beethoven-sim` command line that replays the scenario ([`Scenario::replay`]).
    pub fn command(&self) -> String {
        command(&self.to_code())
    }

    /// What `beethoven-sim --case` runs: builds and forms the cluster, runs the
    /// chaos phase ([`Scenario::run_chaos`]), then the liveness gate with the
    /// cluster's liveness bound. The same scenario in a test, built without an
    /// app that acts, runs the same events up to there (the same trace hash).
    pub fn replay(&self) -> Result<Replay, BuildError> {
        let mut sim = self.build()?;
        self.run_chaos(&mut sim);
        let gate = sim.liveness_gate(sim.timing().liveness);
        Ok(Replay { sim, gate })
    }
}

/// A replayed scenario: the simulator after the liveness gate, and the gate's result.
#[derive(Debug)]
pub struct Replay {
    /// The simulator, to read its trace, story and violations.
    pub sim: Sim,
    /// How long settling took, or what was still wrong at the bound.
    pub gate: Result<Duration, Violation>,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_code())
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_code())
    }
}

impl FromStr for Scenario {
    type Err = CodeError;

    /// Reads the code form back ([`Scenario::to_code`]'s, or any chain of the
    /// same builder calls).
    fn from_str(text: &str) -> Result<Self, CodeError> {
        read_scenario(&parse::parse(text)?)
    }
}

fn read_scenario(expr: &Expr) -> Result<Scenario, CodeError> {
    let mut calls = Vec::new();
    let mut base = expr;
    while let Expr::Method(receiver, name, args) = base {
        calls.push((name.as_str(), args.as_slice()));
        base = receiver;
    }
    let scenario = match base {
        Expr::Call(path, args) if ends(path, &["Scenario", "new"]) => {
            Scenario::new(usize::read(one(args)?)?)
        }
        _ => return error("expected `Scenario::new(nodes)` first"),
    };
    calls
        .iter()
        .rev()
        .try_fold(scenario, |scenario, (name, args)| {
            Ok(match (*name, *args) {
                ("seed", [seed]) => scenario.seed(u64::read(seed)?),
                ("network", [network]) => scenario.network(NetworkModel::read(network)?),
                ("config", [config]) => scenario.config(read_config(config)?),
                ("config_with", [Expr::Closure(assignments)]) => {
                    let mut config = scenario.config.clone();
                    for (field, value) in assignments {
                        set_config_field(&mut config, field, value)?;
                    }
                    scenario.config(config)
                }
                ("chaos", [chaos]) => scenario.chaos(Duration::read(chaos)?),
                ("fault_at", [at, fault]) => {
                    scenario.fault_at(Duration::read(at)?, Fault::read(fault)?)
                }
                (name, args) => {
                    return error(format!("no builder `.{name}` of {} arguments", args.len()));
                }
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scenario_is_written_with_its_size_and_seed_only() {
        assert_eq!(Scenario::new(4).to_code(), "Scenario::new(4).seed(0)");
    }

    #[test]
    fn every_fault_variant_round_trips() {
        let rule = LinkRule {
            blocked: true,
            loss: Some(0.24),
            extra_latency: ns(1500),
        };
        let tags = Tags::from_pairs([("role", "db \"primary\""), ("é", "\n")]).expect("valid");
        let faults = [
            Fault::Crash {
                node: 1,
                host: HostFate::StaysUp,
            },
            Fault::Restart {
                node: 1,
                new_addr: true,
            },
            Fault::Pause {
                node: 0,
                duration: ms(1115),
            },
            Fault::Slow {
                node: 2,
                per_event: us(250),
                duration: secs(2),
            },
            Fault::Leave { node: 3 },
            Fault::Start { node: 4 },
            Fault::Partition {
                groups: vec![vec![0, 1], vec![]],
            },
            Fault::OneWay {
                from: vec![0],
                to: vec![1, 2],
            },
            Fault::Link {
                from: 1,
                to: 2,
                rule,
            },
            Fault::Delay {
                node: 1,
                min: secs(1),
                max: secs(5),
            },
            Fault::Loss { loss: 0.5 },
            Fault::Join {
                node: 2,
                through: vec![0],
            },
            Fault::StartTwin { node: 5, of: 0 },
            Fault::SetTags { node: 1, tags },
            Fault::SetTags {
                node: 1,
                tags: Tags::new(),
            },
            Fault::Brownout {
                loss: 0.9,
                duration: secs(3),
                links: Vec::new(),
            },
            Fault::Brownout {
                loss: 1.0,
                duration: ms(400),
                links: vec![(0, 1), (2, 0)],
            },
            Fault::Heal,
        ];
        let scenario = faults
            .into_iter()
            .enumerate()
            .fold(Scenario::new(6), |s, (k, fault)| {
                s.fault_at(ms(10 * k as u64), fault)
            });
        let code = scenario.to_code();
        assert_eq!(code.parse::<Scenario>(), Ok(scenario), "{code}");
    }

    #[test]
    fn configs_networks_and_chaos_round_trip_through_their_differences() {
        let scenario = Scenario::new(5)
            .seed(u64::MAX)
            .network(NetworkModel::lan().with_latency(us(437)).with_loss(0.049))
            .config_with(|c| {
                c.cluster_id = ClusterId(9);
                c.offline_retention = Some(secs(60));
                c.gossip_fanout = 2;
            })
            .chaos(ms(20_500));
        let code = scenario.to_code();
        assert!(code.contains("jitter: ns(218500)"), "{code}");
        assert!(code.contains(".chaos(ms(20500))"), "{code}");
        assert_eq!(code.parse::<Scenario>(), Ok(scenario), "{code}");
    }

    #[test]
    fn a_config_given_whole_reads_back() {
        let parsed: Scenario = "Scenario::new(3).config(Config::wan()).seed(2)"
            .parse()
            .expect("reads");
        assert_eq!(parsed, Scenario::new(3).seed(2).config(Config::wan()));
    }

    #[test]
    fn the_command_quotes_the_code_for_a_shell() {
        let scenario = Scenario::new(4).fault_at(
            secs(1),
            Fault::SetTags {
                node: 0,
                tags: Tags::from_pairs([("k", "it's")]).expect("valid"),
            },
        );
        assert!(
            scenario.command().contains(r#"("k", "it'\''s")"#),
            "{}",
            scenario.command()
        );
    }

    #[test]
    fn unknown_builders_and_fields_are_errors_that_name_them() {
        let err = "Scenario::new(4).speed(2)"
            .parse::<Scenario>()
            .expect_err("no such builder");
        assert!(err.to_string().contains("speed"), "{err}");
        let err = "Scenario::new(4).config_with(|c| { c.warp = 9; })"
            .parse::<Scenario>()
            .expect_err("no such field");
        assert!(err.to_string().contains("warp"), "{err}");
        assert!(
            "Scenario::new(4).fault_at(ms(1), Fault::Crash { node: 1 })"
                .parse::<Scenario>()
                .is_err()
        );
    }
}
