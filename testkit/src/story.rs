//! The story of a run: a timeline of the faults, each node's status changes
//! (what it was told about the others), mode changes, joins and leaves, and
//! the notes apps add ([`Context::note`](crate::Context::note)), as simulated
//! time goes by.
//!
//! The simulator logs these from the end of formation on (the last 100,000),
//! whether or not it keeps the whole trace. A failed run
//! ([`RunFailure`](crate::RunFailure)) tells the story of its first violation:
//! everything up to it, trimmed to the nodes the violation names (the last 40
//! lines, with every fault). [`Sim::story`](crate::Sim::story) tells the
//! whole of it, or what touches chosen nodes. A [`Story`] is plain data (and serializes), for other renderings
//! than its `Display`.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use beethoven_core::{Event, Mode, NodeName, NodeStatus};
use serde::Serialize;

use crate::fault::Fault;

/// Most moments the log keeps (older ones are dropped and counted).
const MAX_LOGGED: usize = 100_000;

/// Most lines other than faults a story shows (the latest).
const MAX_LINES: usize = 40;

/// A timeline: what happened, when, to and between the nodes it is about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Story {
    /// The nodes it is trimmed to (empty: all).
    pub nodes: Vec<String>,
    /// Simulated time it ends at.
    pub until: Duration,
    /// What happened, in time order.
    pub moments: Vec<Moment>,
    /// Earlier lines not shown (beyond the most a story shows, or no longer logged).
    pub left_out: u64,
}

/// One line of a [`Story`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Moment {
    /// Simulated time since the start of the run.
    pub at: Duration,
    /// What happened.
    pub what: Happening,
}

/// What happened at a [`Moment`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Happening {
    /// A fault was applied (written as the code form writes it), and whether it fired.
    Fault {
        /// The fault, as Rust.
        fault: String,
        /// Whether it took effect.
        fired: bool,
    },
    /// `node` was told that `about` is online or offline (its `NodeUpdate`).
    Heard {
        /// Who was told.
        node: String,
        /// About whom.
        about: String,
        /// The news.
        status: NodeStatus,
    },
    /// `node`'s mode changed.
    Mode {
        /// The node.
        node: String,
        /// Its new mode.
        #[serde(serialize_with = "crate::invariant::debug_string")]
        mode: Mode,
    },
    /// Another event of `node`: it joined, a join failed, its leave finished,
    /// a name conflict.
    Event {
        /// The node.
        node: String,
        /// What it reported.
        text: String,
    },
    /// `node`'s app noted this.
    Note {
        /// The node.
        node: String,
        /// The note.
        text: String,
    },
}

impl Happening {
    /// Whether this line is about `name` (faults are about everyone).
    fn touches(&self, name: &str) -> bool {
        match self {
            Happening::Fault { .. } => true,
            Happening::Heard { node, about, .. } => node == name || about == name,
            Happening::Mode { node, .. }
            | Happening::Event { node, .. }
            | Happening::Note { node, .. } => node == name,
        }
    }
}

impl fmt::Display for Happening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Happening::Fault { fault, fired: true } => write!(f, "fault {fault}"),
            Happening::Fault {
                fault,
                fired: false,
            } => {
                write!(f, "fault {fault} (skipped: could not fire)")
            }
            Happening::Heard {
                node,
                about,
                status,
            } => {
                let status = match status {
                    NodeStatus::Online => "online",
                    NodeStatus::Offline => "offline",
                };
                write!(f, "{node} hears {about} is {status}")
            }
            Happening::Mode { node, mode } => write!(f, "{node} is {mode:?}"),
            Happening::Event { node, text } => write!(f, "{node} {text}"),
            Happening::Note { node, text } => write!(f, "{node} app: {text}"),
        }
    }
}

impl fmt::Display for Story {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whom = if self.nodes.is_empty() {
            "every node".to_string()
        } else {
            self.nodes.join(", ")
        };
        write!(
            f,
            "timeline of {whom}, up to {:.3}s",
            self.until.as_secs_f64()
        )?;
        if self.left_out > 0 {
            write!(f, " ({} earlier lines left out)", self.left_out)?;
        }
        f.write_str(":")?;
        if self.moments.is_empty() {
            f.write_str("\n  (nothing happened to them since formation)")?;
        }
        for moment in &self.moments {
            write!(f, "\n  {:>9.3}s  {}", moment.at.as_secs_f64(), moment.what)?;
        }
        Ok(())
    }
}

/// A logged moment, with node indices (named when a story is told).
#[derive(Clone, Debug)]
enum Logged {
    Fault(Fault, bool),
    Heard(usize, NodeName, NodeStatus),
    Mode(usize, Mode),
    Event(usize, String),
    Note(usize, String),
}

/// What stories are told from: the latest moments of the run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Log {
    on: bool,
    moments: VecDeque<(Duration, Logged)>,
    dropped: u64,
}

impl Log {
    /// Starts (or restarts) logging from now, forgetting what came before.
    pub(crate) fn start(&mut self) {
        *self = Self {
            on: true,
            ..Self::default()
        };
    }

    fn push(&mut self, at: Duration, logged: Logged) {
        if !self.on {
            return;
        }
        if self.moments.len() == MAX_LOGGED {
            self.moments.pop_front();
            self.dropped += 1;
        }
        self.moments.push_back((at, logged));
    }

    /// A node's event, if it is one a story tells.
    pub(crate) fn event(&mut self, at: Duration, node: usize, event: &Event) {
        if !self.on {
            return;
        }
        let logged = match event {
            Event::NodeUpdate {
                node: about,
                status,
            } => Logged::Heard(node, about.clone(), *status),
            Event::ModeChanged(mode) => Logged::Mode(node, *mode),
            Event::Joined { seed } => Logged::Event(node, format!("joined through {seed}")),
            Event::JoinFailed { attempts, .. } => {
                Logged::Event(node, format!("failed to join after {attempts} attempts"))
            }
            Event::LeaveFinished { spread } => Logged::Event(
                node,
                format!("finished leaving (announcement spread: {spread})"),
            ),
            Event::NameConflict { node: name, addrs } => Logged::Event(
                node,
                format!(
                    "sees two processes named {name}: {} and {}",
                    addrs[0], addrs[1]
                ),
            ),
            _ => return,
        };
        self.push(at, logged);
    }

    /// A fault the simulator applied.
    pub(crate) fn fault(&mut self, at: Duration, fault: &Fault, fired: bool) {
        if self.on {
            self.push(at, Logged::Fault(fault.clone(), fired));
        }
    }

    /// A note of node `node`'s app.
    pub(crate) fn note(&mut self, at: Duration, node: usize, text: String) {
        self.push(at, Logged::Note(node, text));
    }

    /// The story up to `until` of the nodes named `nodes` (all when empty),
    /// with `name` naming node indices; `short`: every fault but only the
    /// latest lines of the rest.
    pub(crate) fn tell(
        &self,
        nodes: &[String],
        until: Duration,
        short: bool,
        name: impl Fn(usize) -> String,
    ) -> Story {
        let mut moments: Vec<Moment> = self
            .moments
            .iter()
            .take_while(|(at, _)| *at <= until)
            .map(|(at, logged)| Moment {
                at: *at,
                what: match logged {
                    Logged::Fault(fault, fired) => Happening::Fault {
                        fault: crate::scenario::code::values::fault_code(fault),
                        fired: *fired,
                    },
                    Logged::Heard(node, about, status) => Happening::Heard {
                        node: name(*node),
                        about: about.to_string(),
                        status: *status,
                    },
                    Logged::Mode(node, mode) => Happening::Mode {
                        node: name(*node),
                        mode: *mode,
                    },
                    Logged::Event(node, text) => Happening::Event {
                        node: name(*node),
                        text: text.clone(),
                    },
                    Logged::Note(node, text) => Happening::Note {
                        node: name(*node),
                        text: text.clone(),
                    },
                },
            })
            .filter(|m| nodes.is_empty() || nodes.iter().any(|n| m.what.touches(n)))
            .collect();
        // Every fault stays; of the rest, the latest lines.
        let others = moments
            .iter()
            .filter(|m| !matches!(m.what, Happening::Fault { .. }))
            .count();
        let mut skip = if short {
            others.saturating_sub(MAX_LINES)
        } else {
            0
        };
        let left_out = skip as u64 + self.dropped;
        moments.retain(|m| {
            if skip > 0 && !matches!(m.what, Happening::Fault { .. }) {
                skip -= 1;
                return false;
            }
            true
        });
        Story {
            nodes: nodes.to_vec(),
            until,
            moments,
            left_out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::HostFate;

    fn name(i: usize) -> String {
        format!("node-{i}")
    }

    fn heard(about: usize, status: NodeStatus) -> Event {
        Event::NodeUpdate {
            node: NodeName::new(&name(about)).expect("valid"),
            status,
        }
    }

    #[test]
    fn a_story_keeps_the_faults_and_what_touches_its_nodes_up_to_its_end() {
        let mut log = Log::default();
        log.event(Duration::ZERO, 1, &heard(0, NodeStatus::Online));
        log.start();
        let crash = Fault::Crash {
            node: 0,
            host: HostFate::Vanishes,
        };
        log.fault(Duration::from_secs(1), &crash, true);
        log.event(Duration::from_secs(2), 1, &heard(0, NodeStatus::Offline));
        log.event(Duration::from_secs(2), 2, &heard(3, NodeStatus::Offline));
        log.note(Duration::from_secs(3), 1, "leads".into());
        log.event(Duration::from_secs(9), 1, &heard(0, NodeStatus::Online));
        let story = log.tell(&[name(0)], Duration::from_secs(5), true, name);
        let lines: Vec<String> = story.moments.iter().map(|m| m.what.to_string()).collect();
        assert_eq!(
            lines,
            [
                "fault Fault::Crash { node: 0, host: HostFate::Vanishes }",
                "node-1 hears node-0 is offline",
            ],
            "before `start` and after the end are left out, as is what is not about node-0"
        );
        let text = story.to_string();
        assert!(
            text.starts_with("timeline of node-0, up to 5.000s:"),
            "{text}"
        );
        assert!(
            text.contains("\n      2.000s  node-1 hears node-0 is offline"),
            "{text}"
        );
        let whole = log.tell(&[], Duration::from_secs(5), true, name);
        assert_eq!(whole.moments.len(), 4);
        assert_eq!(whole.moments[3].what.to_string(), "node-1 app: leads");
    }

    #[test]
    fn a_long_story_shows_its_latest_lines_and_every_fault() {
        let mut log = Log::default();
        log.start();
        log.fault(Duration::ZERO, &Fault::Heal, false);
        for k in 0..(MAX_LINES as u64 + 5) {
            log.event(
                Duration::from_millis(k + 1),
                1,
                &heard(0, NodeStatus::Online),
            );
        }
        let whole = log.tell(&[], Duration::from_secs(1), false, name);
        assert_eq!(whole.moments.len(), MAX_LINES + 6);
        assert_eq!(whole.left_out, 0);
        let story = log.tell(&[], Duration::from_secs(1), true, name);
        assert_eq!(story.moments.len(), MAX_LINES + 1);
        assert_eq!(story.left_out, 5);
        assert!(matches!(
            story.moments[0].what,
            Happening::Fault { fired: false, .. }
        ));
        assert_eq!(story.moments[1].at, Duration::from_millis(6));
    }
}
