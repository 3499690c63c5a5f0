//! Applying faults to the simulated cluster.

use std::time::Duration;

use beethoven_core::NodeStatus;

use super::{Action, Proc, Sim, node_addr};
use crate::fault::{Fault, Outcome};
use crate::metrics::{WatchId, WatchKind};

/// What [`Sim::apply`] did: whether the fault fired, and the watch it started.
/// Compares equal to an [`Outcome`], so `assert_eq!(sim.apply(f), Outcome::Fired)` reads as before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Whether it took effect, or why not.
    pub outcome: Outcome,
    /// The spread watch it started: a crash watches the node go offline
    /// everywhere, a leave likewise, a start or restart watches it come online.
    pub watch: Option<WatchId>,
}

impl Applied {
    /// Whether the fault took effect.
    pub fn fired(&self) -> bool {
        self.outcome == Outcome::Fired
    }
}

impl PartialEq<Outcome> for Applied {
    fn eq(&self, other: &Outcome) -> bool {
        self.outcome == *other
    }
}

/// How many running nodes a (re)started node joins through.
const JOIN_SEEDS: usize = 3;

impl Sim {
    /// Applies `fault` now. Returns whether it took effect, or why not, and
    /// the watch it started, if any (a crash, a leave, a start or restart
    /// watches its news spread: [`Metrics::watch`](crate::Metrics::watch)).
    pub fn apply(&mut self, fault: Fault) -> Applied {
        let watches = self.metrics.watches.len();
        let outcome = self.apply_inner(&fault);
        tracing::debug!(at = ?self.now, ?fault, ?outcome, "fault");
        self.trace
            .fault(self.now, &fault, outcome == Outcome::Fired);
        if let Some(timeline) = &mut self.timeline
            && outcome == Outcome::Fired
        {
            timeline.fault(self.now, &fault);
        }
        let started = self.metrics.watches.len();
        let watch = (started > watches).then(|| WatchId(started - 1));
        Applied { outcome, watch }
    }

    fn apply_inner(&mut self, fault: &Fault) -> Outcome {
        let others: &[usize] = match fault {
            Fault::Join { through, .. } => through,
            Fault::StartTwin { of, .. } => std::slice::from_ref(of),
            _ => &[],
        };
        if fault
            .node()
            .into_iter()
            .chain(others.iter().copied())
            .any(|n| n >= self.slots.len())
        {
            return Outcome::Skipped("no such node");
        }
        let grace = self.timing.grace;
        match *fault {
            Fault::Crash { node, host } => {
                if self.slots[node].node().is_none() {
                    return Outcome::Skipped("not running");
                }
                self.cancel_watches(node);
                self.take_down(node, Proc::Crashed(host));
                self.start_watch(WatchKind::Crash, node, NodeStatus::Offline);
            }
            Fault::Restart { node, new_addr } => {
                if !matches!(self.slots[node].proc, Proc::Crashed(_)) {
                    return Outcome::Skipped("not crashed");
                }
                self.cancel_watches(node);
                let slot = &mut self.slots[node];
                slot.life = slot.life.wrapping_add(1);
                if new_addr {
                    let old = slot.addr;
                    slot.addr = node_addr(node, slot.life);
                    let new = slot.addr;
                    self.by_addr.remove(&old);
                    self.by_addr.insert(new, node);
                }
                self.start_process(node);
            }
            Fault::Start { node } => {
                if !matches!(self.slots[node].proc, Proc::Standby) {
                    return Outcome::Skipped("not on standby");
                }
                self.start_process(node);
            }
            Fault::Pause { node, duration } => {
                let slot = &mut self.slots[node];
                if slot.node().is_none() || slot.paused_until.is_some() {
                    return Outcome::Skipped("not running, or already paused");
                }
                let until = self.now + duration;
                slot.paused_until = Some(until);
                slot.disturbed_until = slot.disturbed_until.max(until + grace);
                let life = slot.life;
                self.push(until, Action::Resume { node, life });
            }
            Fault::Slow {
                node,
                per_event,
                duration,
            } => {
                let slot = &mut self.slots[node];
                if slot.node().is_none() {
                    return Outcome::Skipped("not running");
                }
                let until = self.now + duration;
                slot.slow = Some((per_event, until));
                slot.disturbed_until = slot.disturbed_until.max(until + grace);
            }
            Fault::Leave { node } => {
                if !self.is_up(node) {
                    return Outcome::Skipped("not up");
                }
                self.slots[node].leaving = true;
                self.slots[node].disturbed_until = Duration::MAX;
                self.start_watch(WatchKind::Leave, node, NodeStatus::Offline);
                match self.drive(node, |n, now| n.leave(now)) {
                    Some(Ok(())) => {}
                    _ => return Outcome::Skipped("leave refused"),
                }
            }
            Fault::Partition { ref groups } => {
                self.network.partition(groups);
                self.note_topology();
            }
            Fault::OneWay { ref from, ref to } => {
                self.network.block_one_way(from, to);
                self.note_topology();
            }
            Fault::Link { from, to, ref rule } => {
                if from >= self.slots.len() || to >= self.slots.len() {
                    return Outcome::Skipped("no such node");
                }
                self.network.set_link(from, to, rule.clone());
                self.note_topology();
            }
            Fault::Delay { node, min, max } => {
                if self.slots[node].node().is_none() {
                    return Outcome::Skipped("not running");
                }
                self.network.set_inbound_delay(node, min, max);
            }
            Fault::Loss { loss } => {
                let mut model = self.network.model().clone();
                self.loss_before_fault.get_or_insert(model.loss);
                model.loss = loss.clamp(0.0, 1.0);
                self.network.set_model(model);
                self.note_topology();
            }
            // Weather, not a cut: the topology the accuracy checker knows stays.
            Fault::Brownout {
                loss,
                duration,
                ref links,
            } => self.network.brown_out(self.now, loss, duration, links),
            Fault::Join { node, ref through } => {
                let seeds: Vec<_> = through.iter().map(|&j| self.slots[j].addr).collect();
                if self.slots[node].node().is_none() || seeds.is_empty() {
                    return Outcome::Skipped("not running, or no seeds");
                }
                self.join_through(node, seeds);
            }
            Fault::StartTwin { node, of } => {
                if !matches!(self.slots[node].proc, Proc::Standby)
                    || self.slots[of].node().is_none()
                {
                    return Outcome::Skipped("not on standby, or no process to share a name with");
                }
                self.start_twin(node, of);
            }
            Fault::SetTags { node, ref tags } => {
                match self.drive(node, |n, now| {
                    n.set_tags(now, tags.clone()).map(|()| n.incarnation())
                }) {
                    Some(Ok(incarnation)) => {
                        self.slots[node].tags = tags.clone();
                        self.start_watch_from(
                            WatchKind::Tags,
                            node,
                            NodeStatus::Online,
                            incarnation,
                        );
                    }
                    Some(Err(_)) => return Outcome::Skipped("tags refused"),
                    None => return Outcome::Skipped("not running"),
                }
            }
            Fault::Heal => {
                // A member that was seconds late may still be suspected for a
                // grace (its own fault, like a pause).
                let delayed: Vec<usize> = self.network.delayed().collect();
                for node in delayed {
                    let slot = &mut self.slots[node];
                    slot.disturbed_until = slot.disturbed_until.max(self.now + grace);
                }
                self.network.heal();
                if let Some(loss) = self.loss_before_fault.take() {
                    let mut model = self.network.model().clone();
                    model.loss = loss;
                    self.network.set_model(model);
                }
                self.last_heal = Some(self.now);
                // Pairs that were apart stay excused for a grace
                // (`Reachability`): a suspicion raised while they were cut off
                // may still run out.
                self.note_topology();
            }
        }
        Outcome::Fired
    }

    /// Records the network's components from now on, for the accuracy checker.
    fn note_topology(&mut self) {
        let labels = self.network.components(self.slots.len());
        self.reachability.record(self.now, labels);
    }

    /// Starts standby slot `node` as a second process under `of`'s name, at
    /// its own address, joined through a few up nodes. Both processes are
    /// degraded for accuracy while the two run, and the holder for one grace
    /// after the second falls silent ([`Sim::end_conflict_excuse`]).
    fn start_twin(&mut self, node: usize, of: usize) {
        let name = self.slots[of].name.clone();
        self.slots[node].name = name;
        self.spawn(node);
        self.slots[node].twin_of = Some(of);
        self.slots[node].disturbed_until = Duration::MAX;
        self.slots[of].disturbed_until = Duration::MAX;
        let incarnation = self.slots[of].node().map_or(0, |n| n.incarnation());
        let conflict = crate::metrics::Conflict::new(of, node, self.now, incarnation);
        self.metrics.conflicts.push(conflict);
        let seeds = self.pick_seeds(JOIN_SEEDS, &[node, of]);
        self.join_through(node, seeds);
    }

    /// Slot `silent`'s process has fallen silent (it lost its name, or
    /// stopped): if it was one of two processes under one name, the other's
    /// excuse ends one grace from now (news of the conflict may still be on its
    /// way). Any later false death of the one left counts.
    pub(super) fn end_conflict_excuse(&mut self, silent: usize) {
        let until = self.now + self.timing.grace;
        let holder = self.slots[silent].twin_of;
        let twins = (0..self.slots.len()).filter(|&j| self.slots[j].twin_of == Some(silent));
        let others: Vec<usize> = holder.into_iter().chain(twins).collect();
        for other in others {
            let slot = &mut self.slots[other];
            if slot.node().is_some() && slot.disturbed_until == Duration::MAX && !slot.leaving {
                slot.disturbed_until = until;
            }
        }
    }

    /// Starts a new process in slot `node` and joins it through a few up nodes.
    fn start_process(&mut self, node: usize) {
        self.spawn(node);
        self.slots[node].disturbed_until = self.now + self.timing.grace;
        self.start_watch(WatchKind::Join, node, NodeStatus::Online);
        let seeds = self.pick_seeds(JOIN_SEEDS, &[node]);
        self.join_through(node, seeds);
    }
}
