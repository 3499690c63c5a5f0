//! The app hook's contract: an app hears its own node's events at the
//! simulated moment they happen, issues the node's commands, sets timers that
//! fire at simulated time, and follows the node's fate (frozen while paused,
//! dropped on a crash, rebuilt on restart); user invariants fail like the
//! testkit's own; runs with apps replay from their seed.

use std::time::Duration;

use beethoven_testkit::{
    App, Context, Event, Failure, Fault, HostFate, NodeStatus, Sim, SimBuilder, Tags,
    ViolationKind, When,
};

/// Records what it hears, when; optionally leaves, or panics, on its first timer.
#[derive(Debug, Default)]
struct Recorder {
    started_at: Duration,
    updates: Vec<(Duration, Event)>,
    timers: Vec<(Duration, u64)>,
    /// Re-arm a timer of this period from the start.
    tick: Option<Duration>,
    leave_on_timer: bool,
    panic_on_timer: bool,
}

impl App for Recorder {
    fn start(&mut self, ctx: &mut Context<'_>) {
        self.started_at = ctx.now();
        if let Some(tick) = self.tick {
            ctx.set_timer(tick, 0);
        }
    }

    fn event(&mut self, ctx: &mut Context<'_>, event: &Event) {
        if matches!(event, Event::NodeUpdate { .. }) {
            self.updates.push((ctx.now(), event.clone()));
        }
    }

    fn timer(&mut self, ctx: &mut Context<'_>, timer: u64) {
        self.timers.push((ctx.now(), timer));
        assert!(!self.panic_on_timer, "the app's own bug");
        if self.leave_on_timer {
            ctx.leave();
        } else if let Some(tick) = self.tick {
            ctx.set_timer(tick, timer + 1);
        }
    }
}

fn cluster(nodes: usize) -> SimBuilder {
    Sim::builder().nodes(nodes).seed(11)
}

fn ticking(tick: Duration) -> impl Fn(usize, &beethoven_testkit::NodeName) -> Recorder {
    move |_, _| Recorder {
        tick: Some(tick),
        ..Recorder::default()
    }
}

#[test]
fn an_app_hears_exactly_its_nodes_updates_at_the_moment_they_are_emitted() {
    let mut sim = cluster(5)
        .keep_trace(true)
        .app(|_, _| Recorder::default())
        .build()
        .expect("forms");
    sim.apply(Fault::Crash {
        node: 3,
        host: HostFate::Vanishes,
    });
    sim.run_for(Duration::from_secs(10));
    let trace = sim.trace().entries().expect("kept");
    for i in [0, 1, 2, 4] {
        let emitted: Vec<(Duration, Event)> = trace
            .iter()
            .filter(|e| e.node == i && matches!(e.event, Event::NodeUpdate { .. }))
            .map(|e| (e.at, e.event.clone()))
            .collect();
        let heard = &sim.app::<Recorder>(i).expect("running").updates;
        assert_eq!(heard, &emitted, "node {i}");
        assert!(heard.iter().any(|(_, e)| matches!(
            e,
            Event::NodeUpdate { node, status: NodeStatus::Offline } if node == sim.name(3)
        )));
    }
    sim.ensure_clean().expect("no violation");
}

#[test]
fn an_apps_state_is_dropped_on_a_crash_and_rebuilt_on_restart() {
    let mut sim = cluster(4)
        .app(|_, _| Recorder::default())
        .build()
        .expect("forms");
    sim.run_for(Duration::from_secs(1));
    assert!(!sim.app::<Recorder>(1).expect("running").updates.is_empty());
    sim.apply(Fault::Crash {
        node: 1,
        host: HostFate::Vanishes,
    });
    assert!(sim.app::<Recorder>(1).is_none(), "dropped with the process");
    assert_eq!(sim.apps::<Recorder>().count(), 3);
    sim.run_for(Duration::from_secs(5));
    let restarted_at = sim.now();
    sim.apply(Fault::Restart {
        node: 1,
        new_addr: false,
    });
    let fresh = sim.app::<Recorder>(1).expect("rebuilt by the factory");
    assert_eq!(fresh.started_at, restarted_at);
    assert!(fresh.updates.iter().all(|(at, _)| *at >= restarted_at));
    sim.run_for(Duration::from_secs(5));
    let heard = &sim.app::<Recorder>(1).expect("running").updates;
    assert_eq!(
        heard.len(),
        3,
        "the new process hears the others come online"
    );
}

#[test]
fn app_timers_fire_at_simulated_time_and_are_frozen_while_paused() {
    let tick = Duration::from_millis(100);
    let mut sim = cluster(4).app(ticking(tick)).build().expect("forms");
    let paused_at = sim.now();
    let pause = Duration::from_secs(2);
    sim.apply(Fault::Pause {
        node: 2,
        duration: pause,
    });
    sim.run_for(Duration::from_secs(3));
    let running = &sim.app::<Recorder>(0).expect("running").timers;
    assert!(
        running.windows(2).all(|w| w[1].0 - w[0].0 == tick),
        "every {tick:?}"
    );
    let paused = &sim.app::<Recorder>(2).expect("running").timers;
    let resume = paused_at + pause;
    assert!(
        paused
            .iter()
            .all(|(at, _)| *at <= paused_at || *at >= resume),
        "nothing fires during the pause: {paused:?}"
    );
    let first_after = paused.iter().find(|(at, _)| *at > paused_at);
    assert_eq!(
        first_after.map(|(at, _)| *at),
        Some(resume),
        "the due timer fires on resume"
    );
}

#[test]
fn an_app_can_make_its_node_leave_and_goes_with_it() {
    let mut sim = cluster(4)
        .app(|i, _| Recorder {
            tick: (i == 2).then_some(Duration::from_secs(1)),
            leave_on_timer: true,
            ..Recorder::default()
        })
        .build()
        .expect("forms");
    sim.run_for(Duration::from_secs(6));
    assert!(sim.node(2).is_none(), "left and stopped");
    assert!(sim.app::<Recorder>(2).is_none());
    for i in [0, 1, 3] {
        assert_eq!(sim.status(i, 2), Some(NodeStatus::Offline));
    }
    sim.ensure_clean().expect("no violation");
}

#[test]
fn a_user_invariant_fails_with_its_name_the_time_and_the_node() {
    let mut sim = cluster(3)
        .app(|_, _| Recorder::default())
        .build()
        .expect("forms");
    let start = sim.now();
    let deadline = start + Duration::from_millis(4500);
    sim.invariant(
        "before the deadline",
        When::Every(Duration::from_secs(1)),
        move |sim| {
            if sim.now() > deadline {
                return Err(Failure::at(1, "too late"));
            }
            Ok(())
        },
    );
    sim.run_for(Duration::from_secs(10));
    let failure = sim.ensure_clean().expect_err("it failed");
    assert_eq!(failure.seed, 11);
    assert_eq!(failure.count, 1, "recorded once");
    let violation = &failure.violations[0];
    assert_eq!(violation.at, start + Duration::from_secs(5));
    assert_eq!(
        violation.kind,
        ViolationKind::App {
            invariant: "before the deadline".into(),
            node: Some("node-1".into()),
            message: "too late".into(),
        }
    );
    let report = failure.to_string();
    assert!(
        report.contains("seed 11") && report.contains("node-1"),
        "{report}"
    );
}

#[test]
fn an_every_event_invariant_catches_the_first_event_that_breaks_it() {
    let mut sim = cluster(4)
        .app(|_, _| Recorder::default())
        .build()
        .expect("forms");
    sim.invariant("nobody hears of an offline node", When::EveryEvent, |sim| {
        for (i, app) in sim.apps::<Recorder>() {
            let offline = app.updates.iter().find(|(_, e)| {
                matches!(
                    e,
                    Event::NodeUpdate {
                        status: NodeStatus::Offline,
                        ..
                    }
                )
            });
            if let Some((at, _)) = offline {
                return Err(Failure::at(i, format!("heard at {at:?}")));
            }
        }
        Ok(())
    });
    sim.apply(Fault::Crash {
        node: 0,
        host: HostFate::Vanishes,
    });
    sim.run_for(Duration::from_secs(10));
    let failure = sim.ensure_clean().expect_err("a survivor heard it");
    let violation = &failure.violations[0];
    let ViolationKind::App { message, .. } = &violation.kind else {
        panic!("an app violation: {violation}");
    };
    assert_eq!(
        message,
        &format!("heard at {:?}", violation.at),
        "caught at the very event"
    );
}

#[test]
fn a_panicking_app_is_a_violation_and_its_node_runs_on() {
    let mut sim = cluster(3)
        .app(|i, _| Recorder {
            tick: (i == 1).then_some(Duration::from_secs(1)),
            panic_on_timer: true,
            ..Recorder::default()
        })
        .build()
        .expect("forms");
    sim.run_for(Duration::from_secs(3));
    assert!(sim.app::<Recorder>(1).is_none(), "the app is gone");
    assert!(sim.is_up(1), "its node is not");
    let failure = sim.ensure_clean().expect_err("the panic is reported");
    assert!(matches!(
        &failure.violations[0].kind,
        ViolationKind::Panic { node, message } if node == "node-1" && message.contains("the app's own bug")
    ));
}

#[test]
fn runs_with_apps_that_act_replay_from_their_seed() {
    let run = || {
        let mut sim = cluster(6)
            .app(|i, _| Recorder {
                tick: Some(Duration::from_millis(700 + 100 * i as u64)),
                leave_on_timer: i == 4,
                ..Recorder::default()
            })
            .build()
            .expect("forms");
        sim.apply(Fault::Crash {
            node: 1,
            host: HostFate::StaysUp,
        });
        sim.run_for(Duration::from_secs(8));
        let heard: Vec<usize> = sim
            .apps::<Recorder>()
            .map(|(_, a)| a.updates.len())
            .collect();
        (sim.trace().hash(), sim.steps(), heard)
    };
    assert_eq!(run(), run());
}

#[test]
fn suspicions_are_counted_raised_then_confirmed() {
    let mut sim = cluster(5).build().expect("forms");
    let crash_at = sim.now();
    sim.apply(Fault::Crash {
        node: 4,
        host: HostFate::Vanishes,
    });
    sim.run_for(Duration::from_secs(10));
    let suspicions = sim.metrics().suspicions;
    assert!(suspicions.raised >= 1, "{suspicions:?}");
    assert!(suspicions.confirmed >= 1, "{suspicions:?}");
    let first = suspicions.time_to_first(crash_at).expect("one was raised");
    assert!(first <= sim.timing().detection, "{first:?}");
}

#[test]
fn apply_returns_the_watch_it_started_and_a_cut_trace_starts_there() {
    let mut sim = cluster(4).keep_trace(true).build().expect("forms");
    let formation = sim.cut_trace();
    assert!(!formation.is_empty(), "formation was kept");
    let cut_at = sim.now();
    let crash = sim.apply(Fault::Crash {
        node: 2,
        host: HostFate::Vanishes,
    });
    assert!(crash.fired());
    let id = crash.watch.expect("a crash starts a watch");
    let pause = sim.apply(Fault::Pause {
        node: 1,
        duration: Duration::from_millis(10),
    });
    assert_eq!(pause.watch, None, "a pause watches nothing");
    sim.run_for(Duration::from_secs(10));
    let watch = sim.metrics().watch(id).expect("kept");
    assert_eq!((watch.subject, watch.status), (2, NodeStatus::Offline));
    assert!(watch.all_at.is_some());
    let kept = sim.trace().entries().expect("kept");
    assert!(kept.iter().all(|e| e.at >= cut_at));
    assert!(!kept.is_empty());
}

/// Brings its standalone node into node 0's cluster when it starts: by `join`
/// or by `new_node`.
#[derive(Debug)]
struct Introducer {
    by_join: bool,
}

impl App for Introducer {
    fn start(&mut self, ctx: &mut Context<'_>) {
        if ctx.index() == 0 {
            return;
        }
        let seed = beethoven_testkit::sim::node_addr(0, 0);
        if self.by_join {
            ctx.join([seed]);
        } else {
            ctx.new_node(beethoven_testkit::sim::node_name(0, 5), seed);
        }
    }

    fn event(&mut self, _: &mut Context<'_>, _: &Event) {}
}

#[test]
fn apps_can_bring_their_nodes_together_by_join_or_new_node() {
    let mut sim = cluster(5)
        .form(false)
        .app(|i, _| Introducer {
            by_join: i % 2 == 1,
        })
        .build()
        .expect("builds");
    let took = sim.run_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        Sim::settled,
    );
    assert!(
        took.is_ok(),
        "{}",
        sim.whole_cluster_violation(Duration::from_secs(30))
    );
    sim.ensure_clean().expect("no violation");
}

/// On its first timer, tries tags over the limit (refused at the call), sets
/// valid ones, and notes it in the story.
#[derive(Debug, Default)]
struct Tagger {
    refused: Option<bool>,
}

impl App for Tagger {
    fn start(&mut self, ctx: &mut Context<'_>) {
        if ctx.index() == 1 {
            ctx.set_timer(Duration::from_secs(1), 0);
        }
    }

    fn event(&mut self, _: &mut Context<'_>, _: &Event) {}

    fn timer(&mut self, ctx: &mut Context<'_>, _: u64) {
        let huge = Tags::from_pairs([("blob", "x".repeat(2000))]).expect("well-formed");
        self.refused = Some(ctx.set_tags(huge).is_err());
        let role = Tags::from_pairs([("role", "db")]).expect("well-formed");
        ctx.set_tags(role).expect("within the limits");
        ctx.note("tagged itself a db");
    }
}

#[test]
fn an_app_sets_its_nodes_tags_as_a_handle_would_and_its_note_joins_the_story() {
    let mut sim = cluster(4)
        .app(|_, _| Tagger::default())
        .build()
        .expect("forms");
    sim.run_for(Duration::from_secs(5));
    let app = sim.app::<Tagger>(1).expect("running");
    assert_eq!(
        app.refused,
        Some(true),
        "over the limit: refused at the call"
    );
    let role = Tags::from_pairs([("role", "db")]).expect("well-formed");
    for j in sim.up() {
        let row = sim.node(j).and_then(|n| n.row(sim.name(1)));
        assert_eq!(row.map(|r| &r.tags), Some(&role), "on node {j}");
    }
    let story = sim.story(&["node-1"]).to_string();
    assert!(story.contains("node-1 app: tagged itself a db"), "{story}");
    sim.ensure_clean().expect("no violation");
}
