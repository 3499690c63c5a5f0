//! Lateness: members whose acks come back seconds late, and this node's own late
//! path.
//!
//! An ack that arrives after its probe ended proves the target alive, only slow
//! (or this node's own network slow). Plain SWIM suspects such a member at every
//! probe: it refutes seconds later, is suspected again at the next probe, and each
//! round costs a suspicion, its confirmations, a refutation, last-chance rounds
//! and often a death and a second refutation, all of it gossiped. Eight such
//! members of a hundred kept the cluster at ten times its quiet traffic
//! (docs/benchmarks-log.md, "Slow members").
//!
//! So a probe waits longer, and without helpers (they would be answered as late),
//! when there is evidence that its answer comes late:
//!
//! - the target answered one of this node's probes late and has not answered one
//!   in time since: wait twice the longest round trip it took;
//! - or this node's last [`OWN_STREAK`] answered probes were all answered late,
//!   whoever the target: the trouble is this node's own path (Lifeguard's
//!   reasoning), so every probe waits twice the longest of those round trips.
//!
//! A late answer to a ping that was not one of this node's probes counts for
//! its target too (not for this node's own path): a ping sent for another
//! member's indirect probe, or a last-chance check's ping that ended in a
//! verdict. With probe slots (`probing/slots.rs`) each node probes a member
//! once per N - 1 intervals, and one node per interval, so learning from its
//! own probes alone, every node needs a failed probe of its own to learn that a
//! member is slow: at N=100, about N slots of that member being online, while
//! each failed probe is a suspicion and often a death and a refutation. The
//! helpers of each failed probe and the nodes that judged the suspect learn at
//! once, and the cluster stops accusing it sooner (8 slow members of 100, 300
//! s: 2.42x the quiet traffic before, 1.72x after).
//!
//! And every node learns at once from a death refuted soon after: a member
//! declared dead that refutes within [`MAX_PATIENCE`] of its accusation (as
//! heard here) was alive and heard of it late, so it is kept as late, the time
//! from accusation to refutation as its round trip. Every node sees that
//! refutation, so one false death teaches the cluster, where each node's own
//! failed probes teach one node per probe interval: at N=300 with 16 slow
//! members the cluster kept declaring them dead for five minutes (3.06x the
//! quiet traffic; 1.86x once learned from refuted deaths; 8 of N=100, 1.72x to
//! 1.43x). A suspicion refuted before its verdict tells nothing of a member
//! not known late (that is how loss looks), nor does a member back after
//! longer (a partition healed). A restarted process that refutes its death
//! within the window is waited for once: its next probe, answered in time,
//! clears it. But a member already known late that refutes a suspicion was
//! waited for too briefly (its delay varies, and the first round trip seen
//! may have been a short one): the time from that accusation to the
//! refutation is kept if longer, again on every node at once. Without it each
//! node lengthened its wait only after a failed probe of its own, which at
//! N=1000 comes once per member per 150 s: 16 slow of N=1000 still cost
//! 2.2x the quiet traffic in the tenth minute (3.09x over the ten).
//!
//! A member learned late from a refuted accusation (a death, or a suspicion
//! of a member already known late) is waited for [`MAX_PATIENCE`], not twice
//! the time from accusation to refutation: that time is one draw of a delay
//! that varies from answer to answer (1-5 s in the simulator's slow members),
//! and twice a short draw is shorter than the long ones. At N=1000 with 16
//! slow members, 22 % of the probes that waited twice the round trip seen
//! still failed, each one a suspicion gossiped to the cluster. A member that
//! refuted an accusation was alive; the accusation's window (the accusation to
//! the refutation, at most [`MAX_PATIENCE`]) bounds how late it answers, so the
//! longest wait is the one that is almost surely long enough. The cost: a slow
//! member known this way that crashes is suspected up to [`MAX_PATIENCE`]
//! after its probe (instead of twice its round trip), and its suspicion lasts
//! at least that long (`suspicion.rs`). Members not known late keep the usual
//! probe.
//!
//! An answer in time, one that clears its member and this node's own streak,
//! is one within the plain probe interval, not within the interval stretched
//! by local health. A node whose own inbound path is slow (every answer 1-5 s
//! late) worsens its local health at each late answer, up to a probe interval
//! of 1.35 s (150 ms x 9); judged against that stretched interval, its answers
//! of 1.0-1.35 s came "in time" (about one in twelve), and each one wiped its
//! streak and the round trips learned. The next probes waited twice the
//! longest round trip of a new, short streak (3.4-5.5 s, against answers up
//! to 5 s late, and up to 10 s from another slow member), failed, and accused
//! healthy members, each accusation gossiped to the cluster and refuted. At
//! N=300 with 16 slow members these accusations were all that was left after
//! the first minute, and a minute with a dozen of them rose 1.1-1.2x above
//! quiet traffic (the "flat" rule of `slow_members` in
//! `testkit/tests/hostile.rs` failed on 4 of 20 seeds; now none after the
//! first minute, flat on 20 of 20). An answer that needed the stretch does not
//! show the path fast: it counts as late here, while the probe itself,
//! answered within its window, succeeds as before (`probing.rs`). An answer
//! that came after the probe asked helpers is still judged against the
//! stretched interval: it may be a helper's relay, sent when the stretched
//! schedule asked for it, and tells nothing of the direct path (counted late,
//! a merely lossy member would be probed without helpers). Once its own path
//! is known late a slow node's probes are patient and ask no helpers, so it
//! no longer forgets. The cost: a member whose direct answers land between the
//! plain and the stretched interval (150 ms and 1.35 s with the default
//! config) is waited for without helpers, twice its round trip, until it
//! answers within 150 ms; only paths slower than the probe interval answer
//! so. A slow node probed at about its longest interval before this as
//! now (0.78 and 0.76 probes a second, at 16 of N=300): without the
//! accusations, 16 slow members of N=300 cost 0.99x the quiet figure (taken
//! before they turn slow), 1.07-1.13x before; 16 of N=100, 0.90-0.92x.
//!
//! Never more than [`MAX_PATIENCE`]. A probe still unanswered after its patience
//! fails as any other: a slow member that crashes is suspected that much later,
//! and only by the nodes that know it answers late. Healthy clusters see no late
//! acks, so nothing changes there.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::name::NodeName;

/// Late answers in a row, with no answer in time between them, that make this
/// node blame its own path.
pub(super) const OWN_STREAK: u32 = 3;

/// The longest a probe waits for its answer.
pub(super) const MAX_PATIENCE: Duration = Duration::from_secs(10);

/// Most failed probes kept for matching a late ack (the oldest is forgotten).
const FAILED_KEPT: usize = 32;

/// Most late members remembered (the one heard from longest ago is forgotten).
const MAX_LATE_MEMBERS: usize = 64;

/// What this node knows about answers that come late.
#[derive(Debug, Default)]
pub(super) struct Lateness {
    /// Probes that ended without an answer, oldest first: a late ack matches one.
    failed: VecDeque<Failed>,
    /// Members that answered late and not in time since.
    members: BTreeMap<NodeName, Late>,
    /// Answers in a row that came late.
    streak: u32,
    /// The longest round trip of that streak.
    own_rtt: Duration,
    /// Members suspected here, and since when (see `acquitted`).
    accused: BTreeMap<NodeName, Instant>,
}

#[derive(Clone, Debug)]
struct Failed {
    seq: u32,
    target: NodeName,
    sent_at: Instant,
    /// One of this node's own probes: a late answer to it also counts towards
    /// blaming this node's own path. Other pings (`ping_unanswered`) tell
    /// about their target only.
    probe: bool,
}

#[derive(Clone, Copy, Debug)]
struct Late {
    /// The longest round trip seen.
    rtt: Duration,
    /// When it last answered late.
    at: Instant,
    /// Learned from a refuted accusation: waited for [`MAX_PATIENCE`] (see
    /// the module docs).
    refuted: bool,
}

impl Lateness {
    /// How long a probe of `target` waits for its answer, if it is known to come
    /// late; `None`: the usual probe.
    pub(super) fn patience(&self, target: &NodeName) -> Option<Duration> {
        let rtt = match self.members.get(target) {
            Some(late) if late.refuted => return Some(MAX_PATIENCE),
            Some(late) => late.rtt.max(self.own_rtt_if_late()),
            None if self.own_path_late() => self.own_rtt,
            None => return None,
        };
        Some((rtt * 2).min(MAX_PATIENCE))
    }

    /// Whether this node's own path is the slow one (see the module docs).
    pub(super) fn own_path_late(&self) -> bool {
        self.streak >= OWN_STREAK
    }

    fn own_rtt_if_late(&self) -> Duration {
        if self.own_path_late() {
            self.own_rtt
        } else {
            Duration::ZERO
        }
    }

    /// A probe of `target` under `seq`, sent at `sent_at`, ended unanswered.
    pub(super) fn probe_failed(&mut self, seq: u32, target: NodeName, sent_at: Instant) {
        self.keep_failed(Failed {
            seq,
            target,
            sent_at,
            probe: true,
        });
    }

    /// A ping of `target` under `seq`, sent at `sent_at` but not one of this
    /// node's probes, went unanswered in its time: one sent for another
    /// member's indirect probe, or a last-chance check's. A late answer to it
    /// shows `target` slow as well as a probe's would (see the module docs).
    pub(super) fn ping_unanswered(&mut self, seq: u32, target: NodeName, sent_at: Instant) {
        self.keep_failed(Failed {
            seq,
            target,
            sent_at,
            probe: false,
        });
    }

    fn keep_failed(&mut self, failed: Failed) {
        if self.failed.len() >= FAILED_KEPT {
            self.failed.pop_front();
        }
        self.failed.push_back(failed);
    }

    /// An ack under `seq` matched nothing in flight. Returns whether it answered
    /// one of the failed probes kept (then recorded as late).
    pub(super) fn late_ack(&mut self, now: Instant, seq: u32) -> bool {
        let Some(at) = self.failed.iter().position(|failed| failed.seq == seq) else {
            return false;
        };
        let Some(failed) = self.failed.remove(at) else {
            return false;
        };
        let rtt = now.saturating_duration_since(failed.sent_at);
        if failed.probe {
            self.answered_late(now, failed.target, rtt);
        } else {
            self.member_late(now, failed.target, rtt, false);
        }
        true
    }

    /// `target` answered a probe, `rtt` after it was sent, but too late for a
    /// plain probe.
    fn answered_late(&mut self, now: Instant, target: NodeName, rtt: Duration) {
        self.streak = self.streak.saturating_add(1);
        self.own_rtt = self.own_rtt.max(rtt);
        self.member_late(now, target, rtt, false);
    }

    /// `target` answered a ping of this node `rtt` after it was sent, late;
    /// `refuted`: learned from a refuted accusation instead (see the module
    /// docs), kept until it answers in time.
    fn member_late(&mut self, now: Instant, target: NodeName, rtt: Duration, refuted: bool) {
        if !self.members.contains_key(&target) && self.members.len() >= MAX_LATE_MEMBERS {
            let oldest = self
                .members
                .iter()
                .min_by_key(|(_, late)| late.at)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                self.members.remove(&oldest);
            }
        }
        let late = self.members.entry(target).or_insert(Late {
            rtt,
            at: now,
            refuted,
        });
        late.rtt = late.rtt.max(rtt);
        late.at = now;
        late.refuted |= refuted;
    }

    /// `target` was suspected here (by anyone) at `now`.
    pub(super) fn accused(&mut self, now: Instant, target: &NodeName) {
        // Accusations older than the longest wait tell nothing any more.
        self.accused
            .retain(|_, at| now.saturating_duration_since(*at) <= MAX_PATIENCE);
        if self.accused.len() >= MAX_LATE_MEMBERS && !self.accused.contains_key(target) {
            return;
        }
        self.accused.entry(target.clone()).or_insert(now);
    }

    /// `target` is alive again at `now`; `was_dead`: it came back from a death
    /// held here, by refuting it. A member declared dead that refutes within
    /// [`MAX_PATIENCE`] of its accusation was alive all along and heard of it
    /// late: it is kept as late and waited for [`MAX_PATIENCE`] (see the
    /// module docs). So is a member already known late that refutes a
    /// suspicion: the wait for it was too short.
    pub(super) fn acquitted(&mut self, now: Instant, target: &NodeName, was_dead: bool) {
        let Some(at) = self.accused.remove(target) else {
            return;
        };
        let rtt = now.saturating_duration_since(at);
        let known_late = self.members.contains_key(target);
        if (was_dead || known_late) && rtt <= MAX_PATIENCE {
            self.member_late(now, target.clone(), rtt, true);
        }
    }

    /// `target` answered one of this node's probes, `rtt` after it was sent:
    /// in time if within `interval`, the plain probe interval (not the one
    /// stretched by local health: see the module docs, "An answer in time"),
    /// late otherwise.
    pub(super) fn answered(
        &mut self,
        now: Instant,
        target: NodeName,
        rtt: Duration,
        interval: Duration,
    ) {
        if rtt <= interval {
            self.answered_in_time(&target);
        } else {
            self.answered_late(now, target, rtt);
        }
    }

    /// `target` answered a probe in time: neither it nor this node is late now.
    fn answered_in_time(&mut self, target: &NodeName) {
        self.members.remove(target);
        self.streak = 0;
        self.own_rtt = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> NodeName {
        NodeName::new(s).expect("valid")
    }

    #[test]
    fn a_member_that_answered_late_is_given_twice_its_round_trip_until_it_answers_in_time() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let mut lateness = Lateness::default();
        assert_eq!(lateness.patience(&name("slow")), None);
        lateness.probe_failed(7, name("slow"), now);
        assert!(!lateness.late_ack(now, 8), "no such probe");
        assert!(lateness.late_ack(now + Duration::from_secs(2), 7));
        assert!(!lateness.late_ack(now, 7), "matched once");
        assert_eq!(
            lateness.patience(&name("slow")),
            Some(Duration::from_secs(4))
        );
        assert_eq!(lateness.patience(&name("other")), None, "only that member");
        lateness.answered_late(now, name("slow"), Duration::from_secs(8));
        assert_eq!(lateness.patience(&name("slow")), Some(MAX_PATIENCE));
        lateness.answered_in_time(&name("slow"));
        assert_eq!(lateness.patience(&name("slow")), None);
    }

    #[test]
    fn a_late_member_that_refutes_an_accusation_is_waited_for_the_longest() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let mut lateness = Lateness::default();
        let second = Duration::from_secs(1);
        lateness.answered_late(now, name("slow"), second);
        assert_eq!(lateness.patience(&name("slow")), Some(second * 2));
        // Its patient probe failed; suspected, it refutes 4 s later.
        lateness.accused(now, &name("slow"));
        lateness.acquitted(now + second * 4, &name("slow"), false);
        assert_eq!(lateness.patience(&name("slow")), Some(MAX_PATIENCE));
        lateness.answered_late(now, name("slow"), second);
        assert_eq!(lateness.patience(&name("slow")), Some(MAX_PATIENCE), "kept");
        lateness.answered_in_time(&name("slow"));
        assert_eq!(lateness.patience(&name("slow")), None);
        // Not known late, a member that refutes a suspicion is not waited for.
        lateness.accused(now, &name("lossy"));
        lateness.acquitted(now + second, &name("lossy"), false);
        assert_eq!(lateness.patience(&name("lossy")), None);
    }

    #[test]
    fn late_answers_from_several_members_in_a_row_make_every_probe_patient() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let mut lateness = Lateness::default();
        let second = Duration::from_secs(1);
        for (i, target) in ["a", "b"].into_iter().enumerate() {
            lateness.answered_late(now, name(target), second * (i as u32 + 1));
        }
        assert!(!lateness.own_path_late());
        lateness.answered_late(now, name("c"), second);
        assert!(lateness.own_path_late());
        assert_eq!(lateness.patience(&name("d")), Some(second * 4));
        lateness.answered_in_time(&name("d"));
        assert!(!lateness.own_path_late(), "one answer in time clears it");
        assert_eq!(lateness.patience(&name("d")), None);
        assert_eq!(lateness.patience(&name("b")), Some(second * 4));
    }

    #[test]
    fn what_it_remembers_stays_bounded() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let mut lateness = Lateness::default();
        for i in 0..200u32 {
            let target = name(&format!("n{i}"));
            lateness.probe_failed(i, target.clone(), now);
            lateness.answered_late(
                now + Duration::from_millis(u64::from(i)),
                target,
                Duration::from_secs(1),
            );
        }
        assert_eq!(lateness.failed.len(), FAILED_KEPT);
        assert_eq!(lateness.members.len(), MAX_LATE_MEMBERS);
    }

    #[test]
    fn late_answers_to_pings_other_than_probes_mark_their_member_but_not_this_nodes_path() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let mut lateness = Lateness::default();
        let second = Duration::from_secs(1);
        for (seq, target) in ["a", "b", "c"].into_iter().enumerate() {
            lateness.ping_unanswered(seq as u32, name(target), now);
        }
        for seq in 0..3 {
            assert!(lateness.late_ack(now + second, seq));
        }
        assert!(!lateness.own_path_late(), "others' pings say nothing of it");
        assert_eq!(lateness.patience(&name("a")), Some(second * 2));
        assert_eq!(lateness.patience(&name("c")), Some(second * 2));
        assert_eq!(lateness.patience(&name("d")), None);
    }
}

#[cfg(test)]
mod node_tests {
    use crate::node::testing::*;

    /// "peer" answers every ping two seconds late and refutes the suspicion it
    /// reads on the answer; "h1" and "h2" answer at once.
    #[test]
    fn a_member_that_answers_late_is_suspected_once_then_waited_for_without_helpers() {
        let start = epoch();
        let mut now = start;
        let mut node = node_knowing_peer(now);
        for (who, port) in [("h1", 3), ("h2", 4)] {
            let hello = packet(who, 0, Message::Gossip, &[&alive(who, port, 0)]);
            node.handle_packet(now, addr(port), &hello);
        }
        let _ = sent(&mut node);
        while node.poll_event().is_some() {}
        let delay = Duration::from_secs(2);
        let mut due: Vec<(Instant, u32)> = Vec::new();
        let (mut suspicions, mut helpers_after_late, mut pings_to_h1) = (0, 0, 0);
        let mut late_seen = false;
        let mut patient_seqs = Vec::new();
        while now < start + Duration::from_secs(30) {
            node.handle_timeout(now);
            for (to, sent) in sent(&mut node) {
                match sent.message {
                    Message::Ping { seq, .. } if to == addr(2) => {
                        if late_seen {
                            patient_seqs.push(seq);
                        }
                        due.push((now + delay, seq));
                    }
                    Message::Ping { seq, target } => {
                        pings_to_h1 += usize::from(target == name("h1"));
                        let ack = packet(target.as_str(), 0, Message::Ack { seq }, &[]);
                        node.handle_packet(now, to, &ack);
                    }
                    Message::PingReq { seq, .. } if patient_seqs.contains(&seq) => {
                        helpers_after_late += 1;
                    }
                    _ => {}
                }
            }
            let (ready, waiting): (Vec<_>, Vec<_>) = due.iter().partition(|(at, _)| *at <= now);
            due = waiting;
            for (_, seq) in ready {
                late_seen = true;
                let row = node.row(&name("peer")).expect("tracked").clone();
                let refuted = alive("peer", 2, row.incarnation + 1);
                let gossip: Vec<&Update> = match row.health {
                    Health::Suspect => vec![&refuted],
                    _ => vec![],
                };
                let ack = packet("peer", row.incarnation, Message::Ack { seq }, &gossip);
                node.handle_packet(now, addr(2), &ack);
            }
            while let Some(event) = node.poll_event() {
                if let Event::Tracker(write) = event
                    && write.new_row.node == name("peer")
                {
                    assert_ne!(write.new_row.health, Health::Dead, "never declared dead");
                    suspicions += usize::from(write.new_row.health == Health::Suspect);
                }
            }
            now += Duration::from_millis(10);
        }
        assert_eq!(suspicions, 1, "only before its first late answer");
        assert_eq!(helpers_after_late, 0, "helpers would hear from it as late");
        assert!(
            patient_seqs.len() > 5,
            "probed since: {}",
            patient_seqs.len()
        );
        assert!(pings_to_h1 > 20, "the probe cycle goes on: {pings_to_h1}");
        assert!(node.stats().late_acks > 0);
    }

    /// This node's local health is stretched to the full (a probe interval of
    /// 1.35 s), and "peer", known late, answers its pings 1.1 s and 4.5 s late
    /// in turn: the 1.1 s answers come within the stretched interval but not
    /// within the plain one, so they do not make it forget that "peer" is late.
    /// Without that, each one cleared it, and the next probe, impatient, failed
    /// on a 4.5 s answer: a suspicion of a member alive all along.
    #[test]
    fn an_answer_within_only_the_stretched_interval_does_not_clear_a_late_member() {
        let start = epoch();
        let mut now = start;
        let mut node = node_knowing_peer(now);
        let _ = sent(&mut node);
        while node.poll_event().is_some() {}
        let max = node.config.max_local_health;
        for _ in 0..max {
            node.probing.local_health.worsen(max);
        }
        node.lateness
            .answered_late(now, name("peer"), Duration::from_secs(4));
        let delays = [Duration::from_millis(1100), Duration::from_millis(4500)];
        let mut due: Vec<(Instant, u32)> = Vec::new();
        let (mut pings, mut answered, mut suspicions) = (0usize, 0usize, 0usize);
        while now < start + Duration::from_secs(60) {
            if node.poll_timeout().is_some_and(|at| at <= now) {
                node.handle_timeout(now);
            }
            for (to, sent) in sent(&mut node) {
                if let Message::Ping { seq, .. } = sent.message
                    && to == addr(2)
                {
                    due.push((now + delays[pings % 2], seq));
                    pings += 1;
                }
            }
            let (ready, waiting): (Vec<_>, Vec<_>) = due.iter().partition(|(at, _)| *at <= now);
            due = waiting;
            for (_, seq) in ready {
                answered += 1;
                let ack = packet("peer", 0, Message::Ack { seq }, &[]);
                node.handle_packet(now, addr(2), &ack);
            }
            while let Some(event) = node.poll_event() {
                if let Event::Tracker(write) = event
                    && write.new_row.node == name("peer")
                {
                    suspicions += usize::from(write.new_row.health == Health::Suspect);
                }
            }
            now += Duration::from_millis(10);
        }
        assert!(
            answered > 6,
            "both kinds of answer, several times: {answered}"
        );
        assert_eq!(suspicions, 0, "alive and answering all along");
        assert!(
            node.lateness.patience(&name("peer")).is_some(),
            "still late"
        );
    }

    /// A node pings "peer" for "h1" (an indirect probe); the window runs out,
    /// "h1" gets its nack, and the answer comes two seconds late: this node
    /// waits for "peer" from then on, without having probed it itself.
    #[test]
    fn a_late_answer_to_a_ping_for_another_member_makes_this_node_patient_with_its_target() {
        let start = epoch();
        let mut node = node_knowing_peer(start);
        let hello = packet("h1", 0, Message::Gossip, &[&alive("h1", 3, 0)]);
        node.handle_packet(start, addr(3), &hello);
        let _ = sent(&mut node);
        let request = Message::PingReq {
            seq: 77,
            target: name("peer"),
            target_addr: addr(2),
        };
        node.handle_packet(start, addr(3), &packet("h1", 0, request, &[]));
        let seq = sent(&mut node)
            .into_iter()
            .find_map(|(to, sent)| match sent.message {
                Message::Ping { seq, .. } if to == addr(2) => Some(seq),
                _ => None,
            })
            .expect("the helper pings the target");
        let mut now = start;
        let mut nacked = false;
        while now < start + Duration::from_secs(2) {
            now += Duration::from_millis(10);
            if node.poll_timeout().is_some_and(|at| at <= now) {
                node.handle_timeout(now);
            }
            nacked |= sent(&mut node).into_iter().any(|(to, sent)| {
                to == addr(3) && matches!(sent.message, Message::Nack { seq: 77 })
            });
        }
        assert!(nacked, "the requester was told in time");
        assert_eq!(node.lateness.patience(&name("peer")), None);
        let late = packet("peer", 0, Message::Ack { seq }, &[]);
        node.handle_packet(now, addr(2), &late);
        assert!(node.stats().late_acks > 0);
        let patience = node.lateness.patience(&name("peer"));
        assert!(
            patience.is_some_and(|p| p >= Duration::from_secs(4)),
            "twice the round trip: {patience:?}"
        );
        assert!(!node.lateness.own_path_late());
    }

    /// "other" suspects "peer" and "h1", then reports both dead; "peer"
    /// refutes its death 3 s after the accusation, "h1" 20 s after: only
    /// "peer" is waited for (the longest wait: its delay varies, and those
    /// 3 s were one draw), without a probe of this node's.
    #[test]
    fn a_death_refuted_soon_after_its_accusation_marks_the_member_late() {
        let start = epoch();
        let mut node = node_knowing_peer(start);
        let gossip = |node: &mut Node, at: Instant, update: &Update| {
            let packet = packet("other", 0, Message::Gossip, &[update]);
            node.handle_packet(at, addr(5), &packet);
        };
        gossip(&mut node, start, &alive("h1", 3, 0));
        gossip(&mut node, start, &alive("other", 5, 0));
        gossip(&mut node, start, &suspect("peer", 2, 0, "other"));
        gossip(&mut node, start, &suspect("h1", 3, 0, "other"));
        let later = start + Duration::from_secs(1);
        gossip(&mut node, later, &dead("peer", 2, 0));
        gossip(&mut node, later, &dead("h1", 3, 0));
        let refuted = start + Duration::from_secs(3);
        gossip(&mut node, refuted, &alive("peer", 2, 1));
        gossip(
            &mut node,
            start + Duration::from_secs(20),
            &alive("h1", 3, 1),
        );
        assert_eq!(
            node.lateness.patience(&name("peer")),
            Some(super::MAX_PATIENCE)
        );
        assert_eq!(node.lateness.patience(&name("h1")), None, "too long after");
        assert!(!node.lateness.own_path_late());
        // A suspicion refuted before any death tells nothing: the usual case
        // under loss.
        gossip(&mut node, refuted, &suspect("other", 5, 0, "h1"));
        gossip(&mut node, refuted, &alive("other", 5, 1));
        assert_eq!(node.lateness.patience(&name("other")), None);
    }
}
