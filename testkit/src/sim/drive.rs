//! Driving nodes: dispatching heap entries, calling into the core (catching
//! panics), draining datagrams into the network and events into the checkers,
//! metrics and trace, and keeping each node's one timer entry current.

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use beethoven_core::{Event, Node, NodeStatus, Op, Seed};

use super::{Action, Entry, Proc, Sim};
use crate::fault::HostFate;
use crate::invariant::{Standing, ViolationKind, check_accuracy, check_mode, is_declaration};
use crate::metrics::{Watch, WatchKind};
use crate::network::Fate;

/// A timer firing this many times at one instant means the node's deadline stays
/// in the past.
const LIVELOCK_FIRES: u32 = 1000;

impl Sim {
    pub(super) fn dispatch(&mut self, entry: Entry) {
        match entry.action {
            Action::Deliver {
                from,
                from_node,
                from_life,
                to,
                bytes,
            } => self.deliver(entry.at, from, from_node, from_life, to, bytes),
            Action::Timer { node, token } => self.fire_timer(entry.at, node, token),
            Action::Unreachable { node, life, addr } => {
                let slot = &self.slots[node];
                if slot.life == life && slot.paused_until.is_none() && slot.node().is_some() {
                    self.metrics.unreachable_hints += 1;
                    self.drive(node, |n, now| n.handle_unreachable(now, addr));
                }
            }
            Action::Resume { node, life } => self.resume(node, life),
            Action::AppTimer { node, life, timer } => self.fire_app_timer(node, life, timer),
            Action::AppRefused {
                node,
                life,
                name,
                error,
            } => self.tell_app_refused(node, life, name, error),
            Action::Check(index) => self.check_periodic(index),
            Action::Fault(index) => {
                let fault = self.schedule[index].fault.clone();
                let applied = self.apply(fault);
                self.outcomes[index] = Some(applied.outcome);
            }
        }
    }

    /// Defers an input of a slow node until it is free; true if deferred.
    fn defer_if_busy(&mut self, node: usize, action: Action) -> Result<(), Action> {
        let slot = &mut self.slots[node];
        match slot.slow {
            Some((_, until)) if until <= self.now => {
                slot.slow = None;
                Err(action)
            }
            Some(_) if slot.busy_until > self.now => {
                let at = slot.busy_until;
                self.push(at, action);
                Ok(())
            }
            _ => Err(action),
        }
    }

    fn deliver(
        &mut self,
        at: Duration,
        from: SocketAddr,
        from_node: usize,
        from_life: u16,
        to: SocketAddr,
        bytes: Vec<u8>,
    ) {
        let Some(&i) = self.by_addr.get(&to) else {
            self.metrics.packets_dropped += 1;
            return;
        };
        match &self.slots[i].proc {
            Proc::Running(_) => {}
            Proc::Crashed(HostFate::StaysUp) => {
                self.metrics.packets_dropped += 1;
                // The bounce travels back: about one more one-way delay.
                let back = self.network.model().latency;
                self.push(
                    at + back,
                    Action::Unreachable {
                        node: from_node,
                        life: from_life,
                        addr: to,
                    },
                );
                return;
            }
            _ => {
                self.metrics.packets_dropped += 1;
                return;
            }
        }
        if self.slots[i].paused_until.is_some() {
            self.slots[i].inbox.push((from, bytes));
            return;
        }
        let action = Action::Deliver {
            from,
            from_node,
            from_life,
            to,
            bytes,
        };
        let Err(action) = self.defer_if_busy(i, action) else {
            return;
        };
        let Action::Deliver { bytes, .. } = action else {
            return;
        };
        self.metrics.packets_delivered += 1;
        self.drive(i, |n, now| n.handle_packet(now, from, &bytes));
    }

    fn fire_timer(&mut self, at: Duration, i: usize, token: u64) {
        let slot = &mut self.slots[i];
        if slot.token != token || slot.node().is_none() {
            return;
        }
        if slot.paused_until.is_some() {
            slot.timer_at = None;
            return;
        }
        let Err(_) = self.defer_if_busy(i, Action::Timer { node: i, token }) else {
            return;
        };
        let slot = &mut self.slots[i];
        slot.timer_at = None;
        if slot.fired_at == at {
            slot.fire_count += 1;
        } else {
            slot.fired_at = at;
            slot.fire_count = 0;
        }
        if slot.fire_count == LIVELOCK_FIRES {
            let node = slot.name.to_string();
            self.violation(ViolationKind::Livelock { node });
        }
        if self.slots[i].fire_count >= LIVELOCK_FIRES {
            // Keep the run going: push the node's clock on by a millisecond.
            let later = self.now + Duration::from_millis(1);
            self.slots[i].timer_at = Some(later);
            self.push(later, Action::Timer { node: i, token });
            return;
        }
        self.drive(i, |n, now| n.handle_timeout(now));
    }

    fn resume(&mut self, i: usize, life: u16) {
        let slot = &mut self.slots[i];
        if slot.life != life || slot.paused_until.is_none_or(|until| until > self.now) {
            return;
        }
        slot.paused_until = None;
        let inbox = std::mem::take(&mut slot.inbox);
        for (from, bytes) in inbox {
            self.metrics.packets_delivered += 1;
            self.drive(i, |n, now| n.handle_packet(now, from, &bytes));
        }
        self.drive(i, |n, now| n.handle_timeout(now));
    }

    /// Calls into running node `i` at the current time, then drains it. A panic
    /// is a violation; the node is taken down as a crash.
    pub(super) fn drive<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Node, Instant) -> R,
    ) -> Option<R> {
        let now = self.epoch + self.now;
        let slot = &mut self.slots[i];
        let Proc::Running(node) = &mut slot.proc else {
            return None;
        };
        if slot.woken_at.replace(self.now) != Some(self.now) {
            self.metrics.wakes += 1;
        }
        // The core's logs, the drain's included, name the node and the simulated
        // time they belong to (the span ends with this call).
        let _span = tracing::debug_span!("node", i, at = ?self.now).entered();
        let result = catch_unwind(AssertUnwindSafe(|| f(node, now)));
        if let Some((per_event, _)) = self.slots[i].slow {
            self.slots[i].busy_until = self.now + per_event;
        }
        match result {
            Ok(r) => {
                self.drain(i);
                Some(r)
            }
            Err(payload) => {
                self.on_panic(i, payload.as_ref());
                None
            }
        }
    }

    fn on_panic(&mut self, i: usize, payload: &(dyn std::any::Any + Send)) {
        let message = panic_message(payload);
        let node = self.slots[i].name.to_string();
        self.violation(ViolationKind::Panic { node, message });
        self.take_down(i, Proc::Crashed(HostFate::Vanishes));
    }

    /// Moves node `i`'s output into the network and its events into the
    /// checkers, metrics and trace; then re-arms its timer.
    fn drain(&mut self, i: usize) {
        let Proc::Running(node) = &mut self.slots[i].proc else {
            return;
        };
        // Reused across calls: a restored node emits two events per peer.
        let mut datagrams = std::mem::take(&mut self.datagram_buf);
        let mut events = std::mem::take(&mut self.event_buf);
        let drained = catch_unwind(AssertUnwindSafe(|| {
            while let Some(t) = node.poll_transmit() {
                datagrams.push((t.to, t.payload.to_vec()));
            }
            while let Some(e) = node.poll_event() {
                events.push(e);
            }
        }));
        if let Err(payload) = drained {
            self.on_panic(i, payload.as_ref());
            return;
        }
        for (to, bytes) in datagrams.drain(..) {
            self.send(i, to, bytes);
        }
        let mut finished_leave = false;
        // Only a node with an app keeps its events past the checkers.
        let hosting = self.slots[i].app.is_some();
        let mut for_app = Vec::new();
        for event in events.drain(..) {
            finished_leave |= matches!(event, Event::LeaveFinished { .. });
            self.observe(i, &event);
            if hosting {
                for_app.push(event);
            }
        }
        self.datagram_buf = datagrams;
        self.event_buf = events;
        if let Err(kind) = self.slots[i].checker.flush() {
            self.violation(kind);
        }
        if let Some(node) = self.slots[i].node()
            && let Err(kind) = check_mode(node)
        {
            self.violation(kind);
        }
        if hosting {
            self.deliver_to_app(i, for_app);
        }
        if finished_leave {
            self.take_down(i, Proc::Stopped);
            return;
        }
        self.rearm(i);
    }

    fn send(&mut self, i: usize, to: SocketAddr, bytes: Vec<u8>) {
        self.metrics.packets_sent += 1;
        self.metrics.bytes_sent += bytes.len() as u64;
        if let Some(timeline) = &mut self.timeline {
            timeline.sent(self.now, i, bytes.len());
        }
        let Some(&j) = self.by_addr.get(&to) else {
            self.metrics.packets_dropped += 1;
            return;
        };
        let (from, from_life) = (self.slots[i].addr, self.slots[i].life);
        let deliver = |bytes| Action::Deliver {
            from,
            from_node: i,
            from_life,
            to,
            bytes,
        };
        match self.network.route(self.now, i, j, &mut self.rng) {
            Fate::Dropped => self.metrics.packets_dropped += 1,
            Fate::Delivered(delay) => self.push(self.now + delay, deliver(bytes)),
            Fate::Duplicated(a, b) => {
                self.push(self.now + a, deliver(bytes.clone()));
                self.push(self.now + b, deliver(bytes));
            }
        }
    }

    /// One event of node `i`.
    fn observe(&mut self, i: usize, event: &Event) {
        self.trace.event(self.now, i, event);
        if let Err(kind) = self.slots[i].checker.observe(event) {
            self.violation(kind);
        }
        match event {
            Event::Tracker(change) => {
                let about = self.by_name.get(&change.new_row.node).copied();
                if is_declaration(change) {
                    self.metrics.offline_writes += 1;
                    if let Some(j) = about {
                        *self.metrics.offline_writes_about.entry(j).or_default() += 1;
                    }
                    // A verdict is judged once, where it is first written: later
                    // writes of the same death (gossip, anti-entropy, a node reading
                    // its backlog after a pause) copy it and are as accurate as it
                    // was, even if the target has refuted it meanwhile.
                    let verdict = (about.unwrap_or(usize::MAX), change.new_row.incarnation);
                    if self.verdicts.insert(verdict) {
                        let standing = about.map(|j| self.standing(i, j));
                        let healthy = standing == Some(Standing::Healthy);
                        let observer = self.slots[i].name.clone();
                        if let Err(kind) = check_accuracy(&observer, change, |_| healthy) {
                            self.metrics.false_offline.insert(verdict);
                            self.violation(kind);
                            if let (Some(timeline), Some(j)) = (&mut self.timeline, about) {
                                timeline.false_verdict(self.now, i, j);
                            }
                        }
                        match standing {
                            Some(Standing::Degraded) => {
                                self.metrics.degraded_declared.insert(verdict);
                            }
                            Some(Standing::Apart) => {
                                self.metrics.apart_declared.insert(verdict);
                            }
                            _ => {}
                        }
                    }
                }
                if change.op == Op::Write {
                    let old = change.old_row.as_ref().map(|row| row.health);
                    self.metrics
                        .suspicions
                        .saw(self.now, old, change.new_row.health);
                }
                if let (Some(timeline), Some(j)) = (&mut self.timeline, about) {
                    let row = (change.op == Op::Write)
                        .then_some((change.new_row.status, change.new_row.health));
                    timeline.row(self.now, i, j, row);
                }
                if let Some(j) = about {
                    let row = (change.op == Op::Write)
                        .then_some((change.new_row.status, change.new_row.incarnation));
                    self.watch_update(j, i, row);
                    if change.op == Op::Write {
                        let moved = change
                            .old_row
                            .as_ref()
                            .is_some_and(|old| old.addr != change.new_row.addr);
                        let now = self.now;
                        let conflicts = self.metrics.conflicts.iter_mut();
                        for conflict in conflicts.filter(|c| c.subject == j) {
                            conflict.saw(now, change.new_row.incarnation);
                            conflict.addr_flips += u64::from(moved);
                        }
                    }
                }
            }
            Event::Joined { .. } => self.slots[i].joined = true,
            // The loser of a name falls silent: the other's excuse ends a grace later.
            Event::NameLost { .. } => self.end_conflict_excuse(i),
            // The first report of a conflict, by either process or any observer.
            Event::NameConflict { node, .. } => {
                let about = self.by_name.get(node).copied();
                let now = self.now;
                let conflicts = self.metrics.conflicts.iter_mut();
                for conflict in
                    conflicts.filter(|c| Some(c.subject) == about || Some(c.twin) == about)
                {
                    conflict.detect(now);
                }
            }
            _ => {}
        }
    }

    /// Keeps node `i`'s single timer entry in step with its `poll_timeout`.
    fn rearm(&mut self, i: usize) {
        let epoch = self.epoch;
        let Some(node) = self.slots[i].node() else {
            return;
        };
        let at = node
            .poll_timeout()
            .map(|t| t.saturating_duration_since(epoch));
        let slot = &mut self.slots[i];
        match at {
            Some(at) if slot.timer_at != Some(at) => {
                slot.token += 1;
                slot.timer_at = Some(at);
                let token = slot.token;
                let mut at = at.max(self.now);
                // Drawn only when asked for: on-time runs keep their traces.
                if !self.timer_lateness.is_zero() {
                    at += self.timer_lateness.mul_f64(self.rng.f64());
                }
                self.push(at, Action::Timer { node: i, token });
            }
            Some(_) => {}
            None => {
                slot.token += 1;
                slot.timer_at = None;
            }
        }
    }

    /// Starts a fresh process in slot `i` (at its current address and life).
    pub(super) fn spawn(&mut self, i: usize) {
        let config = self.node_config(i, self.slots[i].life);
        let now = self.epoch + self.now;
        let slot = &self.slots[i];
        let node = Node::new(config, slot.name.clone(), slot.addr, now, self.wall_clock());
        let mut node = match node {
            Ok(node) => node,
            Err(e) => {
                // The config was validated when the simulator was built.
                tracing::error!(%e, "node config rejected");
                return;
            }
        };
        if !slot.tags.is_empty()
            && let Err(e) = node.set_tags(now, slot.tags.clone())
        {
            tracing::error!(%e, node = i, "starting tags refused");
        }
        let slot = &mut self.slots[i];
        slot.checker = crate::invariant::NotificationChecker::new(slot.name.clone());
        slot.proc = Proc::Running(Box::new(node));
        slot.paused_until = None;
        slot.inbox.clear();
        slot.slow = None;
        slot.leaving = false;
        slot.joined = false;
        slot.twin_of = None;
        self.running += 1;
        if let Some(timeline) = &mut self.timeline {
            timeline.up(self.now, i);
        }
        self.start_app(i);
        self.drain(i);
    }

    /// Node `i` joins through `seeds`.
    pub(super) fn join_through(&mut self, i: usize, seeds: Vec<SocketAddr>) {
        if seeds.is_empty() {
            return;
        }
        let seeds: Vec<Seed> = seeds.into_iter().map(Seed::Addr).collect();
        let result = self.drive(i, |n, now| n.join(now, &seeds));
        if let Some(Err(e)) = result {
            tracing::debug!(%e, node = i, "join refused");
        }
    }

    /// Up to `k` distinct up nodes' addresses, none of `except`.
    pub(super) fn pick_seeds(&mut self, k: usize, except: &[usize]) -> Vec<SocketAddr> {
        let mut candidates: Vec<usize> = self
            .up()
            .into_iter()
            .filter(|j| !except.contains(j))
            .collect();
        let mut seeds = Vec::new();
        while seeds.len() < k && !candidates.is_empty() {
            let at = self.rng.usize(..candidates.len());
            seeds.push(self.slots[candidates.swap_remove(at)].addr);
        }
        seeds
    }

    /// Ends node `i`'s process (crash, leave finished, panic).
    pub(super) fn take_down(&mut self, i: usize, to: Proc) {
        self.end_conflict_excuse(i);
        let slot = &mut self.slots[i];
        if slot.node().is_some() {
            self.running -= 1;
        }
        slot.proc = to;
        slot.app = None;
        slot.token += 1;
        slot.timer_at = None;
        slot.paused_until = None;
        slot.inbox.clear();
        slot.slow = None;
        slot.leaving = false;
        slot.disturbed_until = Duration::MAX;
        if let Some(timeline) = &mut self.timeline {
            timeline.down(self.now, i);
        }
        let subjects: Vec<usize> = self.watching.keys().copied().collect();
        for subject in subjects {
            self.watch_update(subject, i, None);
        }
    }

    /// Starts a watch of `subject` reaching `status` everywhere.
    pub(super) fn start_watch(&mut self, kind: WatchKind, subject: usize, status: NodeStatus) {
        self.start_watch_from(kind, subject, status, 0);
    }

    /// Starts a watch of `subject` reaching `status`, at `incarnation` or
    /// above, everywhere.
    pub(super) fn start_watch_from(
        &mut self,
        kind: WatchKind,
        subject: usize,
        status: NodeStatus,
        incarnation: u64,
    ) {
        let mut watch = Watch::new(kind, subject, status, self.now, self.slots.len())
            .from_incarnation(incarnation);
        let name = self.slots[subject].name.clone();
        for (j, slot) in self.slots.iter().enumerate() {
            let row = slot.node().and_then(|n| n.row(&name));
            watch.set_row(j, row.map(|r| (r.status, r.incarnation)));
        }
        let index = self.metrics.watches.len();
        self.metrics.watches.push(watch);
        self.watching.entry(subject).or_default().push(index);
        self.watch_update(subject, usize::MAX, None);
    }

    /// Ends the unfinished watches of `subject`.
    pub(super) fn cancel_watches(&mut self, subject: usize) {
        for index in self.watching.remove(&subject).unwrap_or_default() {
            self.metrics.watches[index].cancelled = true;
        }
    }

    /// Observer `observer` now holds `subject`'s row with this status and
    /// incarnation; re-checks the subject's watches.
    fn watch_update(&mut self, subject: usize, observer: usize, row: Option<(NodeStatus, u64)>) {
        let Some(indices) = self.watching.get_mut(&subject) else {
            return;
        };
        let observers = self.running - usize::from(self.slots[subject].node().is_some());
        let now = self.now;
        let watches = &mut self.metrics.watches;
        indices.retain(|&index| {
            let watch = &mut watches[index];
            watch.set_row(observer, row);
            watch.update(now, observers);
            !watch.is_done()
        });
        if indices.is_empty() {
            self.watching.remove(&subject);
        }
    }
}

/// The message a panic was raised with.
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".into())
}
