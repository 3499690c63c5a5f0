//! Answers to outdated bad news, and their limit.
//!
//! A peer that gossips a suspicion, death or leave of a member at an older
//! incarnation than the one held here missed the newer row (it was paused, or
//! declared dead itself while the news spread) and may be about to take a live
//! member offline: it is answered at once with the current row (`apply_row`
//! queues it, `receive` sends the answer).
//!
//! The limit: one answer per (peer, member, incarnation answered with) within
//! `window`. A member whose datagrams all arrive seconds late holds a view
//! seconds old and gossips outdated news about every member that changed
//! meanwhile, and each answer reaches it late too, after newer changes: without
//! the limit every answer seeded further answers in both directions, and eight
//! such members of a hundred kept the cluster at 50 times its quiet traffic
//! (docs/benchmarks-log.md, "Slow members"). A peer that goes on sending the same
//! outdated row after the window is answered again, so a lost answer is
//! repeated while the row still matters to it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Node;
use super::membership::Outdated;
use crate::limiter::make_room;
use crate::name::NodeName;
use crate::wire::WireRow;

/// Most (peer, member) pairs remembered; when full, the one answered longest
/// ago is forgotten (its window has most likely run out anyway).
const MAX_REMEMBERED: usize = 1024;

/// The answers sent recently, by peer and member.
#[derive(Debug, Default)]
pub(super) struct Answers {
    sent: BTreeMap<(SocketAddr, NodeName), Answered>,
}

#[derive(Clone, Copy, Debug)]
struct Answered {
    incarnation: u64,
    at: Instant,
}

impl Answers {
    /// Whether `to` may be told now that `member` is at `incarnation`: not told so
    /// within the last `window`. Records the answer if so.
    pub(super) fn allow(
        &mut self,
        now: Instant,
        window: Duration,
        to: SocketAddr,
        member: &NodeName,
        incarnation: u64,
    ) -> bool {
        let key = (to, member.clone());
        if let Some(last) = self.sent.get(&key)
            && last.incarnation == incarnation
            && now.saturating_duration_since(last.at) < window
        {
            return false;
        }
        make_room(&mut self.sent, &key, MAX_REMEMBERED, |answered| answered.at);
        self.sent.insert(
            key,
            Answered {
                incarnation,
                at: now,
            },
        );
        true
    }
}

impl Node {
    /// The current row to answer `to` with, if it may be told now (once per
    /// peer, member and incarnation within `suspicion_min`) that `outdated.node`
    /// is at `outdated.incarnation`.
    pub(super) fn answer_for(
        &mut self,
        now: Instant,
        to: SocketAddr,
        outdated: &Outdated,
    ) -> Option<WireRow> {
        let window = self.config.suspicion_min;
        if !self
            .answers
            .allow(now, window, to, &outdated.node, outdated.incarnation)
        {
            return None;
        }
        self.tracker.get(&outdated.node).cloned().map(WireRow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn one_answer_per_peer_member_and_incarnation_within_the_window() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let window = Duration::from_secs(1);
        let member = NodeName::new("m").expect("valid");
        let mut answers = Answers::default();
        assert!(answers.allow(now, window, peer(1), &member, 4));
        assert!(
            !answers.allow(now + window / 2, window, peer(1), &member, 4),
            "the same answer again within the window"
        );
        assert!(
            answers.allow(now, window, peer(2), &member, 4),
            "another peer"
        );
        let other = NodeName::new("o").expect("valid");
        assert!(
            answers.allow(now, window, peer(1), &other, 4),
            "another member"
        );
        assert!(
            answers.allow(now + window / 2, window, peer(1), &member, 5),
            "a newer incarnation is news"
        );
        assert!(
            answers.allow(now + window * 2, window, peer(1), &member, 5),
            "after the window: the answer may have been lost"
        );
    }

    #[test]
    fn what_it_remembers_stays_bounded() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let member = NodeName::new("m").expect("valid");
        let mut answers = Answers::default();
        for i in 0..(MAX_REMEMBERED as u16 + 300) {
            let at = now + Duration::from_millis(u64::from(i));
            assert!(answers.allow(at, Duration::from_secs(60), peer(i), &member, 1));
        }
        assert_eq!(answers.sent.len(), MAX_REMEMBERED);
    }
}
