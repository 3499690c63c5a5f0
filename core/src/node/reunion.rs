//! Reunion: a partition heals as soon as the network does, however long it lasted.
//!
//! While two sides cannot reach each other, each declares the other dead (and,
//! with `offline_retention`, later forgets it). Nothing in the rest of the
//! protocol talks to dead nodes, so without this part the sides would meet again
//! only through the occasional anti-entropy exchange or the slow seed re-probe.
//!
//! - **Contact with the dead.** Now and then this node sends a member it holds dead
//!   that member's own dead row (a one-row `Rows` datagram). If it is in fact alive
//!   it refutes at once, and its refutation comes straight back (see
//!   [`Node::handle_rows`]), so this side learns it is alive within a round trip,
//!   and spreads that as gossip.
//! - **Contact with the forgotten.** The addresses of reaped rows are kept for a
//!   while (at most [`REMEMBERED`], for `offline_retention` + [`REMEMBERED_FOR`]) and
//!   contacted the same way with a `Join`, whose reply carries the other side's table.
//! - **Cost.** The cluster as a whole contacts each dead member about once per
//!   probe interval: a node spaces its contacts `probe_interval · members / dead`
//!   apart, but never closer than two probe intervals. One crashed member in a
//!   100-node cluster costs each node one small datagram every 15 s; a node with
//!   nobody dead sends nothing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Node;
use super::timer::Timer;
use crate::wire::{Message, WireRow};

/// Most reaped addresses a node keeps contacting.
pub(super) const REMEMBERED: usize = 64;

/// How long past `offline_retention` a reaped address is still contacted.
pub(super) const REMEMBERED_FOR: Duration = Duration::from_secs(3600);

/// Contacts are never closer together than this many probe intervals.
const MIN_SPACING: f64 = 2.0;

/// Addresses of reaped rows, oldest first, with when they stop being contacted.
#[derive(Debug, Default)]
pub(super) struct Reunion {
    forgotten: VecDeque<(SocketAddr, Instant)>,
}

impl Node {
    /// Contacts one node believed dead or forgotten, when due.
    pub(super) fn run_reunion(&mut self, now: Instant) {
        if self.left || !self.timers.is_expired(Timer::Reunion, now) {
            return;
        }
        self.reunion.forgotten.retain(|&(_, until)| until > now);
        let dead = self.dead.len();
        let pool = dead + self.reunion.forgotten.len();
        if pool == 0 {
            // Keeps a schedule without waking the node (see `has_reunion_work`).
            let idle = self.config.probe_interval.mul_f64(MIN_SPACING);
            self.timers.set(Timer::Reunion, now + idle);
            return;
        }
        let spacing = (self.members.len() as f64 / pool as f64).max(MIN_SPACING);
        // Jitter keeps the contacts of a whole side from arriving together.
        let wait = self.config.probe_interval.mul_f64(spacing * (0.5 + self.rng.f64()));
        self.timers.set(Timer::Reunion, now + wait);
        let pick = self.rng.usize(..pool);
        if pick < dead {
            let row = self
                .dead
                .pick(&mut self.rng)
                .and_then(|id| self.tracker.by_id(id))
                .cloned();
            if let Some(row) = row {
                let to = row.addr;
                self.send(to, Message::Rows { rows: vec![WireRow(row)] });
            }
        } else {
            let (to, _) = self.reunion.forgotten[pick - dead];
            if self.tracker.rows().any(|row| row.addr == to) {
                // Somebody lives there again, and is tracked: no longer forgotten.
                self.reunion.forgotten.retain(|&(addr, _)| addr != to);
                return;
            }
            self.rejoin_through(now, &[to]);
        }
    }

    /// A node held dead is alive after all: a partition has likely healed, and
    /// the others held dead may be back too. The next contact comes within a
    /// probe interval instead of at the idle pace; each revival it finds brings
    /// the one after forward again, so a whole side is found in a few rounds.
    pub(super) fn revived(&mut self) {
        let now = self.last_input_at;
        let soon = now + self.config.probe_interval.mul_f64(self.rng.f64());
        let next = self.timers.get(Timer::Reunion).map_or(soon, |at| at.min(soon));
        self.timers.set(Timer::Reunion, next);
    }

    /// Remembers the address of a reaped row, so a partition that outlasted the
    /// retention still heals.
    pub(super) fn remember_reaped(&mut self, now: Instant, addr: SocketAddr) {
        let retention = self.config.offline_retention.unwrap_or_default();
        let forgotten = &mut self.reunion.forgotten;
        forgotten.retain(|&(known, _)| known != addr);
        if forgotten.len() >= REMEMBERED {
            forgotten.pop_front();
        }
        forgotten.push_back((addr, now + retention + REMEMBERED_FOR));
    }

    /// Whether the reunion timer may wake the node: anyone dead or forgotten. While
    /// nobody is, the timer keeps its schedule without waking it; a deadline left in
    /// the past by an idle stretch makes the first contact go out at once.
    pub(super) fn has_reunion_work(&self) -> bool {
        !self.left && (self.dead.len() > 0 || !self.reunion.forgotten.is_empty())
    }
}
