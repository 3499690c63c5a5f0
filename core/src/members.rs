//! The other online nodes, kept so that picking random ones and walking the probe
//! order cost O(1) instead of a scan of the tracker (which matters at 10,000 nodes).

use std::collections::BTreeMap;

use fastrand::Rng;

use crate::name::NodeName;

/// Online nodes other than self, with SWIM's randomized round-robin probe order.
#[derive(Debug, Default)]
pub(crate) struct Members {
    live: Vec<NodeName>,
    index: BTreeMap<NodeName, usize>,
    /// Probe order: a shuffled copy of `live`, walked from `cursor`.
    order: Vec<NodeName>,
    cursor: usize,
}

impl Members {
    /// Adds a member; new members go to a random place in the rest of this round,
    /// so they are probed within one round without everybody probing them at once.
    pub(crate) fn insert(&mut self, name: NodeName, rng: &mut Rng) {
        if self.index.contains_key(&name) {
            return;
        }
        self.index.insert(name.clone(), self.live.len());
        self.live.push(name.clone());
        let at = rng.usize(self.cursor..=self.order.len());
        self.order.insert(at, name);
    }

    /// Removes a member (it stays in the probe order until its turn, where it is skipped).
    pub(crate) fn remove(&mut self, name: &NodeName) {
        let Some(at) = self.index.remove(name) else {
            return;
        };
        self.live.swap_remove(at);
        if let Some(moved) = self.live.get(at) {
            self.index.insert(moved.clone(), at);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// The next member to probe; reshuffles after each full round.
    pub(crate) fn next_probe_target(&mut self, rng: &mut Rng) -> Option<NodeName> {
        if self.live.is_empty() {
            return None;
        }
        // At most two passes: the rest of this round, then a fresh one.
        for _ in 0..2 {
            while self.cursor < self.order.len() {
                let candidate = &self.order[self.cursor];
                self.cursor += 1;
                if self.index.contains_key(candidate) {
                    return Some(candidate.clone());
                }
            }
            self.order.clear();
            self.order.extend(self.live.iter().cloned());
            rng.shuffle(&mut self.order);
            self.cursor = 0;
        }
        None
    }

    /// One random member.
    pub(crate) fn pick(&self, rng: &mut Rng) -> Option<&NodeName> {
        if self.live.is_empty() {
            return None;
        }
        Some(&self.live[rng.usize(..self.live.len())])
    }

    /// Appends up to `count` distinct random members other than `exclude` to `out`
    /// (which the caller reuses, so the steady state allocates nothing).
    pub(crate) fn sample_into(
        &self,
        count: usize,
        exclude: Option<&NodeName>,
        rng: &mut Rng,
        out: &mut Vec<NodeName>,
    ) {
        let excluded = exclude.is_some_and(|name| self.index.contains_key(name));
        let wanted = count.min(self.live.len() - usize::from(excluded));
        let start = out.len();
        let eligible = |name: &NodeName, out: &[NodeName]| {
            Some(name) != exclude && !out[start..].contains(name)
        };
        // Rejection sampling: a few draws suffice unless nearly every member is wanted.
        for _ in 0..wanted * 8 {
            if out.len() - start == wanted {
                return;
            }
            let candidate = &self.live[rng.usize(..self.live.len())];
            if eligible(candidate, out) {
                out.push(candidate.clone());
            }
        }
        // Unlucky draws: fill up from a random offset.
        let offset = rng.usize(..self.live.len().max(1));
        for i in 0..self.live.len() {
            if out.len() - start == wanted {
                return;
            }
            let candidate = &self.live[(offset + i) % self.live.len()];
            if eligible(candidate, out) {
                out.push(candidate.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn name(i: usize) -> NodeName {
        NodeName::new(&format!("n{i}")).expect("valid")
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
        members.remove(&name(3));
        members.remove(&name(0));
        assert_eq!(members.len(), 3);
        for _ in 0..20 {
            let target = members.next_probe_target(&mut rng).expect("members exist");
            assert!(target != name(3) && target != name(0));
        }
        let mut sample = Vec::new();
        members.sample_into(10, Some(&name(1)), &mut rng, &mut sample);
        assert_eq!(sample.len(), 2);
        assert!(!sample.contains(&name(1)));
        for _ in 0..20 {
            let picked = members.pick(&mut rng).expect("members exist");
            assert!(*picked != name(3) && *picked != name(0));
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
        members.sample_into(3, Some(&name(7)), &mut rng, &mut sample);
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
        small.sample_into(10, Some(&name(2)), &mut rng, &mut all);
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
