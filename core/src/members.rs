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

    /// Up to `count` distinct random members, none of them in `exclude`.
    pub(crate) fn sample(
        &self,
        count: usize,
        exclude: &[&NodeName],
        rng: &mut Rng,
    ) -> Vec<NodeName> {
        let mut picked: Vec<NodeName> = Vec::with_capacity(count);
        let eligible = self.live.len().saturating_sub(exclude.len());
        let wanted = count.min(eligible);
        if wanted == 0 {
            return picked;
        }
        if self.live.len() <= 4 * count + exclude.len() {
            // Small: shuffle indices and take the first eligible ones.
            let mut indices: Vec<usize> = (0..self.live.len()).collect();
            rng.shuffle(&mut indices);
            picked.extend(
                indices
                    .into_iter()
                    .map(|i| &self.live[i])
                    .filter(|name| !exclude.contains(name))
                    .take(count)
                    .cloned(),
            );
            return picked;
        }
        // Large: rejection sampling finishes in a few draws.
        while picked.len() < wanted {
            let candidate = &self.live[rng.usize(..self.live.len())];
            if !exclude.contains(&candidate) && !picked.contains(candidate) {
                picked.push(candidate.clone());
            }
        }
        picked
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
        let sample = members.sample(10, &[&name(1)], &mut rng);
        assert_eq!(sample.len(), 2);
        assert!(!sample.contains(&name(1)));
    }

    #[test]
    fn large_samples_are_distinct() {
        let mut rng = Rng::with_seed(3);
        let mut members = Members::default();
        for i in 0..1000 {
            members.insert(name(i), &mut rng);
        }
        let sample = members.sample(3, &[&name(7)], &mut rng);
        let distinct: BTreeSet<_> = sample.iter().collect();
        assert_eq!(distinct.len(), 3);
        assert!(!sample.contains(&name(7)));
    }

    #[test]
    fn empty_members_give_nothing() {
        let mut rng = Rng::with_seed(4);
        let mut members = Members::default();
        assert_eq!(members.next_probe_target(&mut rng), None);
        assert!(members.sample(3, &[], &mut rng).is_empty());
    }
}
