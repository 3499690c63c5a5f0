//! Hosting users' apps beside the nodes (see [`crate::app`]): building them
//! when a process starts, handing them their node's events, running the
//! commands and timers they queue, and checking the user invariants over them.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use beethoven_core::{Event, SendEventError};

use super::{Action, Proc, Sim};
use crate::app::{App, Context, Failure, Hosted, Request, UserInvariant, When};
use crate::fault::Fault;
use crate::invariant::{RunFailure, Violation, ViolationKind};
use crate::story::Story;

impl Sim {
    // ----- getters -----

    /// Node `i`'s app state, while its process runs (and the app is of type
    /// `A`): `None` while the node is down (standby, crashed, stopped) or its
    /// app panicked.
    pub fn app<A: App>(&self, i: usize) -> Option<&A> {
        self.slots.get(i)?.app.as_ref()?.downcast()
    }

    /// Every running node's app state of type `A`, with the node's index, in
    /// index order (nodes without a running app are left out).
    ///
    /// ```
    /// use beethoven_testkit::{App, Context, Event, Sim};
    ///
    /// struct Heard(usize);
    /// impl App for Heard {
    ///     fn event(&mut self, _: &mut Context<'_>, _: &Event) {
    ///         self.0 += 1;
    ///     }
    /// }
    ///
    /// let sim = Sim::builder().nodes(3).app(|_, _| Heard(0)).build()?;
    /// let heard: Vec<(usize, usize)> = sim.apps::<Heard>().map(|(i, app)| (i, app.0)).collect();
    /// assert_eq!(heard.iter().map(|&(i, _)| i).collect::<Vec<_>>(), [0, 1, 2]);
    /// assert!(heard.iter().all(|&(_, n)| n > 0), "each heard its node form the cluster");
    /// # Ok::<(), beethoven_testkit::BuildError>(())
    /// ```
    pub fn apps<A: App>(&self) -> impl Iterator<Item = (usize, &A)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| Some((i, slot.app.as_ref()?.downcast()?)))
    }

    /// Whether every user invariant holds now (checked, nothing recorded): a
    /// condition for [`run_until`](Sim::run_until).
    pub fn invariants_hold(&self) -> bool {
        self.invariants.iter().all(|inv| (inv.check)(self).is_ok())
    }

    /// `Ok` if no invariant, the testkit's or the user's, was violated so far
    /// and every user invariant checked only when asked ([`When::Asked`]) was
    /// checked at least once ([`Sim::check_invariants`]): forgetting that call
    /// fails the run ([`ViolationKind::Unchecked`]) instead of passing it
    /// unchecked. Otherwise every violation kept, with the seed that replays
    /// the run, the story of the first violation, and (for a simulator built
    /// from a [`Scenario`](crate::Scenario)) the scenario as Rust and the
    /// `beethoven-sim` command that replays it. In a proptest body,
    /// `sim.ensure_clean()?` fails the case with that report.
    pub fn ensure_clean(&self) -> Result<(), RunFailure> {
        let unchecked = self
            .invariants
            .iter()
            .filter(|inv| inv.when == When::Asked && !inv.checked)
            .map(|inv| Violation {
                at: self.now,
                kind: ViolationKind::Unchecked {
                    invariant: inv.name.clone(),
                },
            });
        let mut violations = self.violations.clone();
        violations.extend(unchecked);
        if violations.is_empty() {
            return Ok(());
        }
        let added = (violations.len() - self.violations.len()) as u64;
        let story = violations.first().map(|first| {
            let nodes: Vec<String> = first.kind.nodes().into_iter().map(String::from).collect();
            Box::new(self.tell(&nodes, first.at, true))
        });
        Err(RunFailure {
            seed: self.seed,
            count: self.violation_count + added,
            violations,
            story,
            case: self.case.clone(),
        })
    }

    /// The whole story of the run from the end of formation up to now (see
    /// [`crate::story`]; the last 100,000 lines): the faults, and what
    /// happened to and between the nodes named `nodes` (every node when empty).
    ///
    /// ```
    /// use std::time::Duration;
    /// use beethoven_testkit::{Fault, HostFate, Sim};
    ///
    /// let mut sim = Sim::builder().nodes(4).build()?;
    /// sim.apply(Fault::Crash { node: 3, host: HostFate::Vanishes });
    /// sim.run_for(Duration::from_secs(5));
    /// let story = sim.story(&["node-0"]).to_string();
    /// assert!(story.contains("fault Fault::Crash { node: 3, host: HostFate::Vanishes }"), "{story}");
    /// assert!(story.contains("node-0 hears node-3 is offline"), "{story}");
    /// # Ok::<(), beethoven_testkit::BuildError>(())
    /// ```
    pub fn story(&self, nodes: &[&str]) -> Story {
        let nodes: Vec<String> = nodes.iter().map(|n| (*n).to_string()).collect();
        self.tell(&nodes, self.now, false)
    }

    fn tell(&self, nodes: &[String], until: Duration, short: bool) -> Story {
        self.trace
            .story()
            .tell(nodes, until, short, |i| self.slots[i].name.to_string())
    }

    // ----- commands -----

    /// Adds a user invariant over the apps (or anything else the simulator
    /// shows), checked `when` said. A failure is recorded like the testkit's own
    /// violations ([`ViolationKind::App`], with the simulated time and the
    /// node), once per invariant: later failures of the same one are not.
    pub fn invariant(
        &mut self,
        name: &str,
        when: When,
        check: impl Fn(&Sim) -> Result<(), Failure> + Send + Sync + 'static,
    ) {
        let index = self.invariants.len();
        self.invariants.push(UserInvariant::new(name, when, check));
        match when {
            When::EveryEvent => self.every_event_checks = true,
            When::Every(period) => {
                let at = self.now + period.max(Duration::from_micros(1));
                self.push(at, Action::Check(index));
            }
            When::Asked => {}
        }
    }

    /// Checks every user invariant now, whenever it is otherwise checked;
    /// records the first failure of each (as a violation) and returns the
    /// first failing one. An invariant checked only when asked must be checked
    /// here at least once before [`Sim::ensure_clean`] passes.
    pub fn check_invariants(&mut self) -> Result<(), Violation> {
        let mut first = None;
        for k in 0..self.invariants.len() {
            self.invariants[k].checked = true;
            if let Err(failure) = (self.invariants[k].check)(self) {
                let violation = self.invariant_failed(k, failure);
                first.get_or_insert(violation);
            }
        }
        first.map_or(Ok(()), Err)
    }

    // ----- internals shared with the run loop -----

    /// Builds node `i`'s app (its process just started) and calls its `start`.
    pub(super) fn start_app(&mut self, i: usize) {
        let Some(factory) = &self.app_factory else {
            return;
        };
        let app = factory.build(i, &self.slots[i].name);
        self.slots[i].app = Some(Hosted(app));
        self.host(i, |app, ctx| app.start(ctx));
    }

    /// Hands node `i`'s drained events to its app, one by one.
    pub(super) fn deliver_to_app(&mut self, i: usize, events: Vec<Event>) {
        for event in &events {
            self.host(i, |app, ctx| app.event(ctx, event));
        }
    }

    /// An app timer of node `i`'s life `life` is due: frozen while the node is
    /// paused (it fires after the pause, behind the node's backlog), gone with
    /// the process.
    pub(super) fn fire_app_timer(&mut self, i: usize, life: u16, timer: u64) {
        let later = || Action::AppTimer {
            node: i,
            life,
            timer,
        };
        if self.app_callable(i, life, later) {
            self.host(i, |app, ctx| app.timer(ctx, timer));
        }
    }

    /// Tells node `i`'s app (of life `life`) that an event it sent was
    /// refused; as a timer is, frozen while the node is paused.
    pub(super) fn tell_app_refused(
        &mut self,
        i: usize,
        life: u16,
        name: String,
        error: SendEventError,
    ) {
        let later = || Action::AppRefused {
            node: i,
            life,
            name: name.clone(),
            error: error.clone(),
        };
        if self.app_callable(i, life, later) {
            self.host(i, |app, ctx| app.send_refused(ctx, &name, &error));
        }
    }

    /// Whether node `i`'s app of life `life` runs and can be called now; while
    /// the node is paused, `later` is queued for the end of the pause.
    fn app_callable(&mut self, i: usize, life: u16, later: impl FnOnce() -> Action) -> bool {
        let slot = &self.slots[i];
        if slot.life != life || slot.app.is_none() {
            return false;
        }
        if let Some(until) = slot.paused_until {
            // The resume at `until` was queued before this, so it runs first.
            self.push(until, later());
            return false;
        }
        true
    }

    /// The invariants checked after every event.
    pub(super) fn check_every_event(&mut self) {
        for k in 0..self.invariants.len() {
            let inv = &self.invariants[k];
            if inv.failed || inv.when != When::EveryEvent {
                continue;
            }
            if let Err(failure) = (inv.check)(self) {
                self.invariant_failed(k, failure);
            }
        }
    }

    /// A periodic invariant is due: check it and queue the next check.
    pub(super) fn check_periodic(&mut self, k: usize) {
        let When::Every(period) = self.invariants[k].when else {
            return;
        };
        if !self.invariants[k].failed
            && let Err(failure) = (self.invariants[k].check)(self)
        {
            self.invariant_failed(k, failure);
        }
        let at = self.now + period.max(Duration::from_micros(1));
        self.push(at, Action::Check(k));
    }

    /// Records invariant `k`'s failure (its first only) and returns it.
    fn invariant_failed(&mut self, k: usize, failure: Failure) -> Violation {
        let kind = ViolationKind::App {
            invariant: self.invariants[k].name.clone(),
            node: failure
                .node
                .and_then(|i| self.slots.get(i))
                .map(|slot| slot.name.to_string()),
            message: failure.message,
        };
        if !self.invariants[k].failed {
            self.invariants[k].failed = true;
            self.violation(kind.clone());
        }
        Violation { at: self.now, kind }
    }

    /// Calls node `i`'s app with a context, then runs what it queued. A panic
    /// is a violation and drops the app (the node runs on without it).
    fn host(&mut self, i: usize, f: impl FnOnce(&mut dyn App, &mut Context<'_>)) {
        let now = self.now;
        let mut requests = Vec::new();
        let slot = &mut self.slots[i];
        let (Proc::Running(node), Some(app)) = (&slot.proc, slot.app.as_mut()) else {
            return;
        };
        let mut ctx = Context::new(i, now, node, &mut requests);
        let result = catch_unwind(AssertUnwindSafe(|| f(app.0.as_mut(), &mut ctx)));
        if let Err(payload) = result {
            slot.app = None;
            let node = slot.name.to_string();
            let message = format!("app: {}", super::drive::panic_message(payload.as_ref()));
            self.violation(ViolationKind::Panic { node, message });
            return;
        }
        let life = self.slots[i].life;
        for request in requests {
            // A command may end the process (a leave that finishes at once):
            // what the app queued after it goes with it.
            if self.slots[i].life != life || self.slots[i].app.is_none() {
                return;
            }
            match request {
                Request::Timer(after, timer) => {
                    // Time moves between two firings, so a timer re-armed from
                    // its own callback cannot hold the run at one instant.
                    self.push(
                        self.now + after.max(Duration::from_micros(1)),
                        Action::AppTimer {
                            node: i,
                            life,
                            timer,
                        },
                    );
                }
                Request::Leave => {
                    self.apply(Fault::Leave { node: i });
                }
                Request::Join(seeds) => self.join_through(i, seeds),
                Request::NewNode(name, addr) => {
                    if let Some(Err(e)) = self.drive(i, |n, now| n.new_node(now, name, addr)) {
                        tracing::debug!(%e, node = i, "new_node refused");
                    }
                }
                // Checked against the limits when the app asked.
                Request::SetTags(tags) => {
                    self.apply(Fault::SetTags { node: i, tags });
                }
                Request::Restore(rows) => {
                    self.drive(i, |n, now| n.restore(now, rows));
                }
                Request::SetKeyRing(ring) => {
                    self.drive(i, |n, _| n.set_key_ring(ring));
                }
                Request::Note(text) => self.trace.story_mut().note(self.now, i, text),
                Request::SendEvent(name, payload) => {
                    if let Some(Err(error)) =
                        self.drive(i, |n, now| n.send_event(now, &name, &payload))
                    {
                        tracing::debug!(%error, node = i, "send_event refused");
                        // Told a microsecond later, as a timer is: an app
                        // that sends again at once cannot hold the run here.
                        self.push(
                            self.now + Duration::from_micros(1),
                            Action::AppRefused {
                                node: i,
                                life,
                                name,
                                error,
                            },
                        );
                    }
                }
                Request::Query(query) => {
                    if let Some(Err(e)) = self.drive(i, |n, now| n.query(now, query)) {
                        tracing::debug!(%e, node = i, "query refused");
                    }
                }
                Request::Respond(token, payload) => {
                    if let Some(Err(e)) = self.drive(i, |n, now| n.respond(now, token, &payload)) {
                        tracing::debug!(%e, node = i, "respond refused");
                    }
                }
            }
        }
    }
}
