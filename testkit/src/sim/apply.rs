//! Applying faults to the simulated cluster.

use std::time::Duration;

use beethoven_core::NodeStatus;

use super::{Action, Proc, Sim, node_addr};
use crate::fault::{Fault, Outcome};
use crate::metrics::WatchKind;

/// How many running nodes a (re)started node joins through.
const JOIN_SEEDS: usize = 3;

impl Sim {
    /// Applies `fault` now. Returns whether it took effect, or why not.
    pub fn apply(&mut self, fault: Fault) -> Outcome {
        let outcome = self.apply_inner(&fault);
        tracing::debug!(at = ?self.now, ?fault, ?outcome, "fault");
        self.trace
            .fault(self.now, &fault, outcome == Outcome::Fired);
        outcome
    }

    fn apply_inner(&mut self, fault: &Fault) -> Outcome {
        if let Some(node) = fault.node()
            && node >= self.slots.len()
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
                self.network_excuse_until = Duration::MAX;
            }
            Fault::OneWay { ref from, ref to } => {
                self.network.block_one_way(from, to);
                self.network_excuse_until = Duration::MAX;
            }
            Fault::Link { from, to, ref rule } => {
                if from >= self.slots.len() || to >= self.slots.len() {
                    return Outcome::Skipped("no such node");
                }
                self.network.set_link(from, to, rule.clone());
                self.network_excuse_until = Duration::MAX;
            }
            Fault::Heal => {
                self.network.heal();
                self.last_heal = Some(self.now);
                // Verdicts reached during the partition (each side declared the
                // other dead) spread after the heal until both sides merge; the
                // liveness bound covers that merge.
                if self.network_excuse_until == Duration::MAX {
                    self.network_excuse_until = self.now + self.timing.liveness;
                }
            }
        }
        Outcome::Fired
    }

    /// Starts a new process in slot `node` and joins it through a few up nodes.
    fn start_process(&mut self, node: usize) {
        self.spawn(node);
        self.slots[node].disturbed_until = self.now + self.timing.grace;
        self.start_watch(WatchKind::Join, node, NodeStatus::Online);
        let seeds = self.pick_seeds(JOIN_SEEDS, node);
        self.join_through(node, seeds);
    }
}
