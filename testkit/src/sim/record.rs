//! Recording the run's [`Timeline`] for its pictures (opt-in).

use super::Sim;
use crate::timeline::Timeline;

impl Sim {
    /// Starts recording the [`Timeline`] now, from what every running node
    /// holds at this moment (no-op if it is recording already). Recording
    /// changes nothing in the run: the trace hash is the same with or without.
    pub fn record_timeline(&mut self) {
        if self.timeline.is_some() {
            return;
        }
        let mut timeline = Timeline::new(self.now, self.slots.len());
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.node().is_some() {
                timeline.up(self.now, i);
            }
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(node) = slot.node() else {
                continue;
            };
            for row in node.tracker().rows() {
                if let Some(&j) = self.by_name.get(&row.node) {
                    timeline.row(self.now, i, j, Some((row.status, row.health)));
                }
            }
        }
        self.timeline = Some(Box::new(timeline));
    }

    /// The recording, if [`record_timeline`](Self::record_timeline) (or the
    /// builder's) started one.
    pub fn timeline(&self) -> Option<&Timeline> {
        self.timeline.as_deref()
    }

    /// Labels this moment on the recording (the report draws it as a line);
    /// nothing when not recording.
    pub fn mark(&mut self, label: impl Into<String>) {
        if let Some(timeline) = &mut self.timeline {
            timeline.mark(self.now, label.into());
        }
    }
}
