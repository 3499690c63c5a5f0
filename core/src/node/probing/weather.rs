//! Weather: whether the network as a whole is failing this node right now (a
//! brownout, or this node's own link down), read from how its last few
//! round-robin probes ended.
//!
//! # Telling three situations apart
//!
//! A probe that fails ends in one of two ways. Either some helper asked to
//! ping the target sent back its nack (Lifeguard): the helper heard this node
//! and answered, only the target is silent. Or nothing at all came back, not
//! the target's ack, not a single nack: the probe was *silent*.
//!
//! - **One member failing while the others answer:** its probes fail, the
//!   helpers' nacks come back; every other probe is answered. Calm.
//! - **Many members failing at once, the network fine for the rest** (a rack
//!   lost): more probes fail, but still with nacks, because helpers are
//!   chosen among members not suspected (`ask_helpers`), so the dead are not
//!   asked for long. A probe is silent only if every helper asked is dead too.
//!   Calm: detection runs at full speed.
//! - **Everything lossy at once** (a switch failing over, a congested uplink,
//!   this node's own link): the acks and the nacks are lost alike, so probes
//!   end silent one after another. A storm: [`STORM_SILENT`] silent probes
//!   among the last [`WINDOW`], the newest silent, which takes two or three
//!   probe intervals (under half a second at the defaults). The steady loss
//!   estimate (`LossMeter`, ~5 s of probes) would take far longer.
//!
//! During a storm this node holds its verdicts (`Node::run_suspicions`): a
//! suspicion that runs out is not decided, its last-chance check waits until
//! the storm is over and for [`Weather::hold`]'s grace after it, so refutations
//! and last-chance answers can get through again. A silent probe during a
//! storm raises no suspicion (a failure with nacks still does): it says
//! nothing about its target. A member that really died meanwhile is declared
//! a few seconds after the storm. A storm ends with [`CALM_ANSWERS`] answered
//! probes in a row.
//!
//! # What it costs
//!
//! - A crash during a storm is declared after the storm (plus the grace and a
//!   last-chance check), not during it.
//! - A node cut off alone storms until it can reach others again: it accuses
//!   no one meanwhile (which is right: it is the one in trouble, as Lifeguard's
//!   local health reasons), while the others declare it.
//! - On the small side of a partition some probes are silent (all their
//!   helpers are across the cut), so that side's verdicts about the far side
//!   may be held for a while; the big side, whose helpers answer, is unaffected.
//! - A rack failure slows nothing only while most helpers answer: with a third
//!   of the cluster gone at once, a probe whose three helpers are all among the
//!   dead (before they are suspected) is silent; two such in four probes would
//!   look like a storm. Preferring unsuspected helpers makes that rare.
//!
//! Signals considered and not used: the node's own receive rate (it needs no
//! probe outcome, but at tens of datagrams a second a window short enough to
//! react within a second is too noisy to tell a brownout from a lost rack),
//! and local health (it rises with silent probes too, but also with stalls,
//! and it stretches probing, not verdicts).

use std::time::{Duration, Instant};

/// How many of the latest probe outcomes are looked at.
pub(super) const WINDOW: usize = 4;
/// Silent probes among the last [`WINDOW`] (the newest one of them) that
/// start a storm.
pub(super) const STORM_SILENT: usize = 2;
/// Answered probes in a row that end a storm.
pub(super) const CALM_ANSWERS: usize = 2;

/// How one round-robin probe ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::node) enum Outcome {
    /// The target answered.
    Answered,
    /// The target did not answer, but a helper's nack (or bounce) came back.
    Failed,
    /// Nothing came back at all.
    Silent,
}

/// What the last probes say about the network as a whole (see the module docs).
#[derive(Clone, Debug, Default)]
pub(in crate::node) struct Weather {
    /// The last outcomes, newest last, at most [`WINDOW`].
    recent: Vec<Outcome>,
    /// Since when the network has been failing this node; `None`: calm.
    storm_since: Option<Instant>,
    /// When the last storm ended.
    calm_since: Option<Instant>,
}

impl Weather {
    /// Records how a round-robin probe ended, at `now`.
    pub(in crate::node) fn record(&mut self, now: Instant, outcome: Outcome) {
        if self.recent.len() == WINDOW {
            self.recent.remove(0);
        }
        self.recent.push(outcome);
        let silent = self
            .recent
            .iter()
            .filter(|&&o| o == Outcome::Silent)
            .count();
        match self.storm_since {
            None if outcome == Outcome::Silent && silent >= STORM_SILENT => {
                self.storm_since = Some(now);
            }
            Some(_)
                if self.recent.len() >= CALM_ANSWERS
                    && self.recent[self.recent.len() - CALM_ANSWERS..]
                        .iter()
                        .all(|&o| o == Outcome::Answered) =>
            {
                self.storm_since = None;
                self.calm_since = Some(now);
            }
            _ => {}
        }
    }

    /// Whether the network is failing this node now.
    pub(in crate::node) fn is_stormy(&self) -> bool {
        self.storm_since.is_some()
    }

    /// Until when verdicts wait, if they must: during a storm, `recheck`
    /// from now (whether it is over is known only at later probes); after
    /// one, until `grace` after its end.
    pub(in crate::node) fn hold(
        &self,
        now: Instant,
        recheck: Duration,
        grace: Duration,
    ) -> Option<Instant> {
        if self.is_stormy() {
            return Some(now + recheck);
        }
        self.calm_since
            .map(|calm| calm + grace)
            .filter(|&until| until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn two_silent_probes_in_four_start_a_storm_and_two_answers_in_a_row_end_it() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let mut weather = Weather::default();
        weather.record(now, Outcome::Silent);
        assert!(!weather.is_stormy(), "one silent probe is a lost datagram");
        weather.record(now, Outcome::Answered);
        weather.record(now, Outcome::Failed);
        assert!(!weather.is_stormy(), "a failure with nacks is the target's");
        weather.record(now, Outcome::Silent);
        assert!(weather.is_stormy());
        assert_eq!(weather.hold(now, 150 * MS, 1000 * MS), Some(now + 150 * MS));
        weather.record(now, Outcome::Answered);
        weather.record(now, Outcome::Failed);
        weather.record(now, Outcome::Answered);
        assert!(weather.is_stormy(), "answers must come in a row");
        let end = now + 500 * MS;
        weather.record(end, Outcome::Answered);
        assert!(!weather.is_stormy());
        assert_eq!(
            weather.hold(end, 150 * MS, 1000 * MS),
            Some(end + 1000 * MS)
        );
        assert_eq!(weather.hold(end + 1000 * MS, 150 * MS, 1000 * MS), None);
    }

    #[test]
    fn a_rack_of_failures_answered_by_helpers_is_no_storm() {
        #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
        let now = Instant::now();
        let mut weather = Weather::default();
        for _ in 0..20 {
            for outcome in [Outcome::Failed, Outcome::Silent, Outcome::Answered] {
                weather.record(now, outcome);
            }
            for outcome in [Outcome::Answered, Outcome::Failed, Outcome::Answered] {
                weather.record(now, outcome);
            }
        }
        assert!(
            !weather.is_stormy(),
            "one silent probe in six, never two in four"
        );
        assert_eq!(weather.hold(now, MS, MS), None);
    }
}
