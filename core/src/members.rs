//! The other online nodes (and, separately, the dead ones), kept as tracker row
//! ids so that picking random ones and walking the probe order cost O(1) and four
//! bytes per member, instead of a scan of the tracker.

use fastrand::Rng;

use crate::tracker::RowId;

/// Marks an id that is not a member.
const ABSENT: u32 = u32::MAX;

/// A set of row ids with SWIM's randomized round-robin probe order.
#[derive(Debug, Default)]
pub(crate) struct Members {
    live: Vec<RowId>,
    /// Position of each id in `live`, or `ABSENT`; indexed by id.
    position: Vec<u32>,
    /// Probe order: a shuffled copy of `live`, walked from `cursor`.
    order: Vec<RowId>,
    cursor: usize,
}

impl Members {
    /// Adds a member; new members go to a random place in the rest of this round,
    /// so they are probed within one round without everybody probing them at once.
    pub(crate) fn insert(&mut self, id: RowId, rng: &mut Rng) {
        if self.contains(id) {
            return;
        }
        let at = id as usize;
        if self.position.len() <= at {
            self.position.resize(at + 1, ABSENT);
        }
        self.position[at] = self.live.len() as u32;
        self.live.push(id);
        // A random place in the rest of this round, in O(1): append, then swap.
        self.order.push(id);
        let last = self.order.len() - 1;
        let place = rng.usize(self.cursor.min(last)..=last);
        self.order.swap(place, last);
    }

    /// Removes a member (it stays in the probe order until its turn, where it is skipped).
    pub(crate) fn remove(&mut self, id: RowId) {
        if !self.contains(id) {
            return;
        }
        let at = self.position[id as usize] as usize;
        self.position[id as usize] = ABSENT;
        self.live.swap_remove(at);
        if let Some(&moved) = self.live.get(at) {
            self.position[moved as usize] = at as u32;
        }
    }

    pub(crate) fn contains(&self, id: RowId) -> bool {
        self.position.get(id as usize).is_some_and(|&p| p != ABSENT)
    }

    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// Every member, in no particular order.
    pub(crate) fn ids(&self) -> &[RowId] {
        &self.live
    }

    /// The next member to probe; reshuffles after each full round.
    pub(crate) fn next_probe_target(&mut self, rng: &mut Rng) -> Option<RowId> {
        if self.live.is_empty() {
            return None;
        }
        // At most two passes: the rest of this round, then a fresh one.
        for _ in 0..2 {
            while self.cursor < self.order.len() {
                let candidate = self.order[self.cursor];
                self.cursor += 1;
                if self.contains(candidate) {
                    return Some(candidate);
                }
            }
            self.order.clear();
            self.order.extend_from_slice(&self.live);
            rng.shuffle(&mut self.order);
            self.cursor = 0;
        }
        None
    }

    /// One random member.
    pub(crate) fn pick(&self, rng: &mut Rng) -> Option<RowId> {
        if self.live.is_empty() {
            return None;
        }
        Some(self.live[rng.usize(..self.live.len())])
    }

    /// Appends up to `count` distinct random members other than `exclude` to `out`
    /// (which the caller reuses, so the steady state allocates nothing).
    pub(crate) fn sample_into(
        &self,
        count: usize,
        exclude: Option<RowId>,
        rng: &mut Rng,
        out: &mut Vec<RowId>,
    ) {
        let excluded = exclude.is_some_and(|id| self.contains(id));
        let wanted = count.min(self.live.len() - usize::from(excluded));
        let start = out.len();
        let eligible =
            |id: RowId, out: &[RowId]| Some(id) != exclude && !out[start..].contains(&id);
        // Rejection sampling: a few draws suffice unless nearly every member is wanted.
        for _ in 0..wanted * 8 {
            if out.len() - start == wanted {
                return;
            }
            let candidate = self.live[rng.usize(..self.live.len())];
            if eligible(candidate, out) {
                out.push(candidate);
            }
        }
        // Unlucky draws: fill up from a random offset.
        let offset = rng.usize(..self.live.len().max(1));
        for i in 0..self.live.len() {
            if out.len() - start == wanted {
                return;
            }
            let candidate = self.live[(offset + i) % self.live.len()];
            if eligible(candidate, out) {
                out.push(candidate);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn name(i: u32) -> RowId {
        i
    }

    #[test]
    fn each_round_probes_every_member_once() {
        let mut rng = Rng::with_seed(1);
        let mut members = Members::default();
        for i in 0..10 {
            members.insert(name(i), &mut rng);
        }
        for _round in 0..3 {
            let seen: BTreeSet<_> = (0..10)
                .map(|_| members.next_probe_target(&mut rng).expect("members exist"))
                .collect();
            assert_eq!(seen.len(), 10);
        }
    }

    #[test]
    fn removed_members_are_skipped_and_never_sampled() {
        let mut rng = Rng::with_seed(2);
        let mut members = Members::default();
        for i in 0..5 {
            members.insert(name(i), &mut rng);
        }
        members.remove(name(3));
        members.remove(name(0));
        assert_eq!(members.len(), 3);
        for _ in 0..20 {
            let target = members.next_probe_target(&mut rng).expect("members exist");
            assert!(target != name(3) && target != name(0));
        }
        let mut sample = Vec::new();
        members.sample_into(10, Some(name(1)), &mut rng, &mut sample);
        assert_eq!(sample.len(), 2);
        assert!(!sample.contains(&name(1)));
        for _ in 0..20 {
            let picked = members.pick(&mut rng).expect("members exist");
            assert!(picked != name(3) && picked != name(0));
        }
    }

    #[test]
    fn large_samples_are_distinct() {
        let mut rng = Rng::with_seed(3);
        let mut members = Members::default();
        for i in 0..1000 {
            members.insert(name(i), &mut rng);
        }
        let mut sample = vec![name(5000)];
        members.sample_into(3, Some(name(7)), &mut rng, &mut sample);
        assert_eq!(sample[0], name(5000), "appends, keeping what was there");
        let distinct: BTreeSet<_> = sample[1..].iter().collect();
        assert_eq!(distinct.len(), 3);
        assert!(!sample.contains(&name(7)));
        // everyone but the excluded one, from a small set
        let mut small = Members::default();
        for i in 0..4 {
            small.insert(name(i), &mut rng);
        }
        let mut all = Vec::new();
        small.sample_into(10, Some(name(2)), &mut rng, &mut all);
        all.sort();
        assert_eq!(all, [name(0), name(1), name(3)]);
    }

    #[test]
    fn empty_members_give_nothing() {
        let mut rng = Rng::with_seed(4);
        let mut members = Members::default();
        assert_eq!(members.next_probe_target(&mut rng), None);
        let mut sample = Vec::new();
        members.sample_into(3, None, &mut rng, &mut sample);
        assert!(sample.is_empty());
        assert!(members.pick(&mut rng).is_none());
    }
}
