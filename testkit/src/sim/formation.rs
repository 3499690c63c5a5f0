//! Bringing the cluster together before a run: join waves, a restored table,
//! or two separate clusters ([`Formation`](super::Formation)).

use std::time::Duration;

use beethoven_core::TrackerRow;

use super::{BuildError, Sim};

impl Sim {
    /// Forms the cluster of nodes `0..n` in doubling waves.
    pub(super) fn form(
        &mut self,
        n: usize,
        max_wave: usize,
        limit: Duration,
    ) -> Result<(), BuildError> {
        if n == 0 {
            return Ok(());
        }
        self.form_range(0..n, max_wave, limit);
        self.await_formed(n, limit)
    }

    /// Forms a cluster of the nodes in `nodes` in doubling waves, each joiner
    /// through a random earlier node of the range; returns once every joiner has
    /// joined (or `limit` passed), without waiting for agreement.
    pub(super) fn form_range(
        &mut self,
        nodes: std::ops::Range<usize>,
        max_wave: usize,
        limit: Duration,
    ) {
        let (first, n) = (nodes.start, nodes.end);
        if first >= n {
            return;
        }
        self.spawn(first);
        self.slots[first].joined = true;
        let mut next = first + 1;
        while next < n {
            let wave = (next - first).min(max_wave).min(n - next);
            for i in next..next + wave {
                self.spawn(i);
                let seed = self.rng.usize(first..next);
                let seed = self.slots[seed].addr;
                self.join_through(i, vec![seed]);
            }
            let range = next..next + wave;
            next += wave;
            // A wave that does not join in time is caught by the settle check after.
            let _ = self.run_until(limit, Duration::from_millis(10), |sim| {
                range.clone().all(|i| sim.slots[i].joined)
            });
        }
    }

    /// Forms the cluster of nodes `0..n` as one that formed long ago: see
    /// [`Formation::Restore`].
    pub(super) fn restore_formed(&mut self, n: usize, limit: Duration) -> Result<(), BuildError> {
        for i in 0..n {
            self.spawn(i);
        }
        let rows: Vec<TrackerRow> = (0..n)
            .filter_map(|i| self.slots[i].node()?.row(&self.slots[i].name).cloned())
            .collect();
        let interval = self.config.probe_interval;
        let mut order: Vec<(Duration, usize)> = (0..n)
            .map(|i| (interval.mul_f64(self.rng.f64()), i))
            .collect();
        order.sort_unstable();
        for (at, i) in order {
            self.run_for(at.saturating_sub(self.now));
            self.drive(i, |node, now| node.restore(now, rows.iter().cloned()));
            self.slots[i].joined = true;
        }
        self.await_formed(n, limit)
    }

    /// Runs until each group of nodes agrees on itself: identical trackers
    /// within the group, every member online, nothing else online.
    pub(super) fn await_settled<const G: usize>(
        &mut self,
        groups: [std::ops::Range<usize>; G],
        limit: Duration,
    ) -> Result<(), BuildError> {
        let done = |sim: &Sim| groups.iter().all(|g| sim.settled_among(g.clone()));
        if self
            .run_until(limit, Duration::from_millis(20), done)
            .is_err()
        {
            return Err(BuildError::Formation {
                limit,
                violation: self.whole_cluster_violation(limit),
            });
        }
        Ok(())
    }

    /// Runs until the formed cluster has settled.
    pub(super) fn await_formed(&mut self, n: usize, limit: Duration) -> Result<(), BuildError> {
        let every = if n > 1000 {
            Duration::from_millis(500)
        } else {
            Duration::from_millis(20)
        };
        if self.run_until(limit, every, Sim::settled).is_err() {
            return Err(BuildError::Formation {
                limit,
                violation: self.whole_cluster_violation(limit),
            });
        }
        Ok(())
    }
}
