//! Name conflicts: two live processes claiming one name at different addresses.
//!
//! Without this, each process refutes the rows the other writes and the name's
//! incarnation climbs for as long as both run (an incarnation war: ~4 per second,
//! the name's row flipping address thousands of times a minute).
//!
//! **The two processes.** A process that refutes a row about itself at another
//! address sends a [`Message::Claim`] there: "I am a live process under your
//! name". That alone proves nothing (the row may be a dead predecessor's, which
//! is how a legit restart at a new address looks), so the refutation goes ahead
//! as before. Only a live process under the same name answers a claim, with a
//! claim of its own that echoes the nonce it received; the handshake ends when
//! each side holds an echo of its own nonce from the other address (a forged
//! claim from a spoofed source never sees the nonce it would have to echo).
//! Then both know the other is alive, and both know the other's start, so both
//! apply the rule of [`Event::NameConflict`] to the same two (start, address)
//! pairs: the process that started first keeps the name, ties going to the lower
//! address. The loser reports [`Event::NameLost`] and falls silent.
//!
//! A lost claim is sent again at the next refutation (at most one per
//! `probe_interval` per rival); a side that is not confirmed yet says so in its
//! claims, and is answered.
//!
//! **Observers.** A node whose row of another node moves from one address to
//! another and back, at rising incarnations, within [`MOVE_MEMORY`], has seen a
//! conflict: after the first move only a live process at the first address can
//! raise the incarnation again. It reports [`Event::NameConflict`] once.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::warn;

use super::Node;
use crate::event::Event;
use crate::name::NodeName;
use crate::tracker::{NodeStatus, RowChange};
use crate::wire::Message;

/// Most rivals tracked at once: a handful of processes under one name is already
/// a misconfiguration; more are forged or a loop.
const MAX_RIVALS: usize = 8;
/// How long an observer remembers the last address move of a name's row.
pub(super) const MOVE_MEMORY: Duration = Duration::from_secs(10);
/// Most address moves an observer remembers (of different names).
const MAX_MOVES: usize = 64;
/// A conflict seen again within this time of its last sighting is the same one:
/// not reported again.
const REPORT_MEMORY: Duration = Duration::from_secs(60);
/// Most conflicts remembered as reported.
const MAX_REPORTED: usize = 32;

/// What a node knows about conflicts over its own name and others'.
#[derive(Debug)]
pub(super) struct Conflicts {
    /// Draws the nonces. A generator of its own (seeded like the node's), so
    /// that the claim a restart sends to its predecessor's address does not
    /// shift the node's probe order and gossip targets.
    rng: fastrand::Rng,
    /// Processes seen claiming this node's name, by their address.
    rivals: Vec<Rival>,
    /// Where the process that kept this node's name listens, once it lost it.
    lost_to: Option<SocketAddr>,
    /// Observer: the last address move of names' rows, oldest first.
    moves: VecDeque<Move>,
    /// Conflicts reported, with their last sighting, oldest first.
    reported: VecDeque<Reported>,
}

impl Conflicts {
    /// The state of a node whose own generator was seeded with `seed`.
    pub(super) fn new(seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed ^ 0xc1a1_4ec1_a14e_c1a1),
            rivals: Vec::new(),
            lost_to: None,
            moves: VecDeque::new(),
            reported: VecDeque::new(),
        }
    }

    /// Where the process that kept this node's name listens, once it lost it.
    pub(super) fn lost_to(&self) -> Option<SocketAddr> {
        self.lost_to
    }
}

/// Another process under this node's name, at `addr`.
#[derive(Debug)]
struct Rival {
    /// Where it listens (as it claims, or as the row it wrote said).
    addr: SocketAddr,
    /// This node's nonce for it.
    nonce: u64,
    /// Its nonce for this node and its start, from its last claim.
    theirs: Option<(u64, i64)>,
    /// It echoed this node's nonce: it is alive.
    confirmed: bool,
    /// When this node last sent it a claim of its own accord.
    last_sent: Option<Instant>,
}

#[derive(Debug)]
struct Move {
    node: NodeName,
    from: SocketAddr,
    to: SocketAddr,
    at: Instant,
}

#[derive(Debug)]
struct Reported {
    node: NodeName,
    addrs: [SocketAddr; 2],
    last_seen: Instant,
}

/// The fields of a received [`Message::Claim`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Claim {
    pub(super) addr: SocketAddr,
    pub(super) started: i64,
    pub(super) nonce: u64,
    pub(super) echo: Option<u64>,
    pub(super) confirmed: bool,
}

/// The rule: the earlier start keeps the name, ties going to the lower address.
/// Whether the process `(started, addr)` keeps it against `(other_started, other)`.
fn keeps_name(started: i64, addr: SocketAddr, other_started: i64, other: SocketAddr) -> bool {
    (started, addr) < (other_started, other)
}

fn ordered(a: SocketAddr, b: SocketAddr) -> [SocketAddr; 2] {
    if a <= b { [a, b] } else { [b, a] }
}

impl Node {
    /// This node's start as it travels in claims: the wall-clock anchor it was
    /// created with, in Unix milliseconds.
    pub(super) fn started_ms(&self) -> i64 {
        self.wall_epoch.timestamp_millis()
    }

    /// This node is about to refute a row about itself that says it lives at
    /// `addr`: if a live process is there, it is a rival, so ask.
    pub(super) fn suspect_rival(&mut self, now: Instant, addr: SocketAddr) {
        if self.conflicts.lost_to.is_some() || addr == self.addr {
            return;
        }
        let Some(i) = self.rival_index(addr) else {
            return;
        };
        let rival = &self.conflicts.rivals[i];
        let due = rival
            .last_sent
            .is_none_or(|at| now.saturating_duration_since(at) >= self.config.probe_interval);
        if !rival.confirmed && due {
            self.conflicts.rivals[i].last_sent = Some(now);
            self.send_claim(addr, i);
        }
    }

    /// A [`Message::Claim`] from `from`, sent under this node's name (checked by
    /// `validate`).
    pub(super) fn handle_claim(&mut self, now: Instant, from: SocketAddr, claim: Claim) {
        if claim.addr == self.addr {
            return;
        }
        let Some(i) = self.rival_index(claim.addr) else {
            return;
        };
        let rival = &mut self.conflicts.rivals[i];
        rival.theirs = Some((claim.nonce, claim.started));
        let newly = !rival.confirmed && claim.echo == Some(rival.nonce);
        rival.confirmed |= newly;
        if !claim.confirmed {
            // It still needs an echo of its nonce.
            self.send_claim(from, i);
        }
        if newly {
            self.resolve(now, i);
        }
    }

    /// The rival at `addr`, tracked from now on if it was not; `None` when the
    /// table is full of others.
    fn rival_index(&mut self, addr: SocketAddr) -> Option<usize> {
        let rivals = &mut self.conflicts.rivals;
        if let Some(i) = rivals.iter().position(|r| r.addr == addr) {
            return Some(i);
        }
        if rivals.len() >= MAX_RIVALS {
            // Make room only by forgetting one that never answered.
            let stale = rivals.iter().position(|r| !r.confirmed)?;
            rivals.remove(stale);
        }
        let nonce = self.conflicts.rng.u64(..);
        rivals.push(Rival {
            addr,
            nonce,
            theirs: None,
            confirmed: false,
            last_sent: None,
        });
        Some(rivals.len() - 1)
    }

    fn send_claim(&mut self, to: SocketAddr, i: usize) {
        let rival = &self.conflicts.rivals[i];
        let message = Message::Claim {
            addr: self.addr,
            started: self.started_ms(),
            nonce: rival.nonce,
            echo: rival.theirs.map(|(nonce, _)| nonce),
            confirmed: rival.confirmed,
        };
        self.send(to, message);
    }

    /// The rival `i` proved that it is alive: report the conflict and apply the
    /// rule.
    fn resolve(&mut self, now: Instant, i: usize) {
        let rival = &self.conflicts.rivals[i];
        let Some((_, their_start)) = rival.theirs else {
            return;
        };
        let other = rival.addr;
        let keep = keeps_name(self.started_ms(), self.addr, their_start, other);
        let name = self.name.clone();
        self.report_conflict(now, name, ordered(self.addr, other));
        if keep {
            warn!(
                name = %self.name,
                rival = %other,
                "name conflict: this process started first and keeps the name"
            );
        } else {
            self.lose(other);
        }
    }

    /// This node lost its name to the process at `winner`: it falls silent.
    fn lose(&mut self, winner: SocketAddr) {
        warn!(
            name = %self.name,
            %winner,
            "name conflict: the process at {winner} started first and keeps the name; \
             this process stops speaking for it"
        );
        self.conflicts.lost_to = Some(winner);
        // The own row must not spread any further; what this input already
        // queued (the last claim, which the winner needs) still goes out.
        self.gossip.remove(&self.name);
        self.events.push_back(Event::NameLost { winner });
    }

    /// Observer: a tracker change about another node; a move of its row back to
    /// the address it just moved from is a conflict.
    pub(super) fn note_move(&mut self, now: Instant, change: &RowChange) {
        let Some(old) = &change.old else {
            return;
        };
        let new = &change.new;
        if old.addr == new.addr
            || new.node == self.name
            || old.status != NodeStatus::Online
            || new.status != NodeStatus::Online
            || new.incarnation <= old.incarnation
        {
            return;
        }
        let moves = &mut self.conflicts.moves;
        while moves
            .front()
            .is_some_and(|m| now.saturating_duration_since(m.at) > MOVE_MEMORY)
        {
            moves.pop_front();
        }
        let back = match moves.iter().position(|m| m.node == new.node) {
            Some(i) => {
                let last = moves.remove(i);
                last.is_some_and(|m| m.from == new.addr && m.to == old.addr)
            }
            None => false,
        };
        if moves.len() >= MAX_MOVES {
            moves.pop_front();
        }
        moves.push_back(Move {
            node: new.node.clone(),
            from: old.addr,
            to: new.addr,
            at: now,
        });
        if back {
            self.report_conflict(now, new.node.clone(), ordered(old.addr, new.addr));
        }
    }

    /// Reports a conflict once: not again while it keeps being seen.
    fn report_conflict(&mut self, now: Instant, node: NodeName, addrs: [SocketAddr; 2]) {
        let reported = &mut self.conflicts.reported;
        if let Some(seen) = reported
            .iter_mut()
            .find(|r| r.node == node && r.addrs == addrs)
        {
            let fresh = now.saturating_duration_since(seen.last_seen) <= REPORT_MEMORY;
            seen.last_seen = now;
            if fresh {
                return;
            }
        } else {
            if reported.len() >= MAX_REPORTED {
                reported.pop_front();
            }
            reported.push_back(Reported {
                node: node.clone(),
                addrs,
                last_seen: now,
            });
        }
        warn!(
            %node,
            first = %addrs[0],
            second = %addrs[1],
            "name conflict: two live processes claim one name"
        );
        self.events.push_back(Event::NameConflict { node, addrs });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earlier_start_keeps_the_name_and_a_tie_goes_to_the_lower_address() {
        let a: SocketAddr = "10.0.0.1:7946".parse().expect("valid");
        let b: SocketAddr = "10.0.0.2:7946".parse().expect("valid");
        assert!(
            keeps_name(5, b, 6, a),
            "earlier start wins over a lower address"
        );
        assert!(!keeps_name(6, a, 5, b));
        assert!(keeps_name(5, a, 5, b), "a tie goes to the lower address");
        assert!(!keeps_name(5, b, 5, a));
        // Both sides compute the same answer.
        for (s, t) in [(1, 2), (2, 1), (3, 3)] {
            assert_ne!(keeps_name(s, a, t, b), keeps_name(t, b, s, a));
        }
    }
}
