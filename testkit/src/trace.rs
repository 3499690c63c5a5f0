//! The event trace of a run: a running hash of every event (for replay checks,
//! cheap enough for 10,000 nodes), optionally the events themselves, and the
//! log the [`story`](crate::story) of a failure is told from.
//!
//! Times enter the hash as offsets from the simulation's start, never as
//! `Instant`s, which differ between processes.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use beethoven_core::Event;

use crate::fault::Fault;
use crate::story::Log;

/// 64-bit FNV-1a: deterministic across processes and builds, unlike `DefaultHasher`.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceEntry {
    /// Simulated time since the start.
    pub at: Duration,
    /// The node index that emitted it.
    pub node: usize,
    /// The event.
    pub event: Event,
}

/// The trace of a run.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    hash: Fnv,
    events: u64,
    log: Option<Vec<TraceEntry>>,
    story: Log,
}

impl Trace {
    /// A trace that keeps the events themselves when `keep` is set (memory grows
    /// with the run), and otherwise only their hash.
    pub fn new(keep: bool) -> Self {
        Self {
            log: keep.then(Vec::new),
            ..Self::default()
        }
    }

    /// Adds a node's event.
    pub fn event(&mut self, at: Duration, node: usize, event: &Event) {
        self.events += 1;
        let h = &mut self.hash;
        at.hash(h);
        node.hash(h);
        match event {
            Event::Tracker(t) => {
                0u8.hash(h);
                (t.op as u8).hash(h);
                t.new_row.hash(h);
                t.old_row.hash(h);
            }
            Event::NodeUpdate { node, status } => {
                1u8.hash(h);
                node.hash(h);
                status.hash(h);
            }
            Event::ModeChanged(mode) => {
                2u8.hash(h);
                mode.hash(h);
            }
            // Hashed field by field, not through their `Debug` text: at N=100
            // with every node sending 5 events a second, formatting each
            // delivery's payload took a sixth of a simulation's time.
            Event::User(user) => {
                4u8.hash(h);
                user.hash(h);
            }
            Event::Query(request) => {
                5u8.hash(h);
                request.hash(h);
            }
            Event::QueryResponse { id, from, payload } => {
                6u8.hash(h);
                id.hash(h);
                from.hash(h);
                payload.hash(h);
            }
            other => {
                3u8.hash(h);
                format!("{other:?}").hash(h);
            }
        }
        self.story.event(at, node, event);
        if let Some(log) = &mut self.log {
            log.push(TraceEntry {
                at,
                node,
                event: event.clone(),
            });
        }
    }

    /// Adds a fault the simulator applied (and whether it fired).
    pub fn fault(&mut self, at: Duration, fault: &Fault, fired: bool) {
        at.hash(&mut self.hash);
        format!("{fault:?}{fired}").hash(&mut self.hash);
        self.story.fault(at, fault, fired);
    }

    /// The log stories are told from (see [`crate::story`]).
    pub(crate) fn story(&self) -> &Log {
        &self.story
    }

    /// The log stories are told from, to start it or add notes to it.
    pub(crate) fn story_mut(&mut self) -> &mut Log {
        &mut self.story
    }

    /// The hash of everything so far.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// How many node events so far.
    pub fn len(&self) -> u64 {
        self.events
    }

    /// Whether no node event was traced yet.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Cuts the trace here: returns the events kept so far and keeps every
    /// later one (from now on, even if events were not kept before). The hash
    /// is not cut: it still covers the whole run, for replay checks.
    pub fn cut(&mut self) -> Vec<TraceEntry> {
        self.log.replace(Vec::new()).unwrap_or_default()
    }

    /// The recorded events, in the order they happened: `Some` (possibly
    /// empty) when the simulator keeps them
    /// ([`SimBuilder::keep_trace`](crate::SimBuilder::keep_trace), or after a
    /// [`cut`](Trace::cut)), `None` when it keeps only the hash.
    ///
    /// ```
    /// use std::time::Duration;
    /// use beethoven_testkit::{Event, Fault, HostFate, NodeStatus, Sim};
    ///
    /// let mut sim = Sim::builder().nodes(4).keep_trace(true).build()?;
    /// sim.apply(Fault::Crash { node: 3, host: HostFate::Vanishes });
    /// sim.run_for(Duration::from_secs(5));
    /// let entries = sim.trace().entries().expect("kept: built with keep_trace");
    /// // Each entry: when (since the start), which node index, what it emitted.
    /// let told = entries.iter().filter(|e| {
    ///     e.node == 0 && matches!(&e.event, Event::NodeUpdate { node, status: NodeStatus::Offline } if node == sim.name(3))
    /// });
    /// assert_eq!(told.count(), 1);
    /// # Ok::<(), beethoven_testkit::BuildError>(())
    /// ```
    pub fn entries(&self) -> Option<&[TraceEntry]> {
        self.log.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beethoven_core::Mode;

    #[test]
    fn fnv_matches_the_reference_value() {
        let mut h = Fnv::default();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_hash_depends_on_time_node_and_event() {
        let run = |at: u64, node: usize, mode: Mode| {
            let mut t = Trace::new(true);
            t.event(Duration::from_millis(at), node, &Event::ModeChanged(mode));
            (t.hash(), t.len(), t.entries().map(<[_]>::len))
        };
        assert_eq!(run(1, 0, Mode::Clustered), run(1, 0, Mode::Clustered));
        assert_ne!(run(1, 0, Mode::Clustered).0, run(2, 0, Mode::Clustered).0);
        assert_ne!(run(1, 0, Mode::Clustered).0, run(1, 1, Mode::Clustered).0);
        assert_ne!(run(1, 0, Mode::Clustered).0, run(1, 0, Mode::Standalone).0);
        assert_eq!(run(1, 0, Mode::Clustered).2, Some(1));
    }

    #[test]
    fn a_cut_keeps_later_events_only_and_leaves_the_hash_whole() {
        let event = Event::ModeChanged(Mode::Clustered);
        let mut cut = Trace::new(false);
        let mut whole = Trace::new(true);
        for trace in [&mut cut, &mut whole] {
            trace.event(Duration::from_millis(1), 0, &event);
        }
        assert!(cut.cut().is_empty(), "nothing was kept before the cut");
        for trace in [&mut cut, &mut whole] {
            trace.event(Duration::from_millis(2), 1, &event);
        }
        let kept = cut.entries().expect("kept since the cut");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].at, Duration::from_millis(2));
        assert_eq!(cut.hash(), whole.hash());
        assert_eq!(whole.cut().len(), 2);
        assert_eq!(whole.entries().map(<[_]>::len), Some(0));
    }
}
