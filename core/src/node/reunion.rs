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
use crate::wire::WireRow;

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
    /// A member just found alive after being held dead: the next anti-entropy
    /// exchange goes to it, since it holds the other side's table.
    pub(super) exchange_with: Option<SocketAddr>,
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
        let wait = self
            .config
            .probe_interval
            .mul_f64(spacing * (0.5 + self.rng.f64()));
        self.timers.set(Timer::Reunion, now + wait);
        let pick = self.rng.usize(..pool);
        if pick < dead {
            let row = self
                .dead
                .pick(&mut self.rng)
                .and_then(|id| self.tracker.by_id(id))
                .cloned();
            if let Some(row) = row {
                self.send_rows_now(row.addr, vec![WireRow(row)]);
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
    /// the one after forward again, so a whole side is found in a few rounds. The
    /// next anti-entropy exchange, brought forward too, goes to the revived node:
    /// it holds the rest of its side, refutations included, in a few datagrams
    /// instead of row by row through gossip.
    pub(super) fn revived(&mut self, addr: SocketAddr) {
        let now = self.last_input_at;
        if self.reunion.exchange_with.is_none() {
            self.reunion.exchange_with = Some(addr);
            self.sync_soon(now);
        }
        let soon = now + self.config.probe_interval.mul_f64(self.rng.f64());
        let next = self
            .timers
            .get(Timer::Reunion)
            .map_or(soon, |at| at.min(soon));
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

#[cfg(test)]
mod tests {
    use crate::node::testing::*;

    /// A node that knows "peer" alive and "gone" dead.
    fn node_holding_one_dead(now: Instant) -> Node {
        let mut node = node_knowing_peer(now);
        let gone = dead("gone", 3, 4);
        node.handle_packet(now, addr(2), &packet("peer", 0, Message::Gossip, &[&gone]));
        assert_eq!(
            node.row(&name("gone")).map(|row| row.status),
            Some(NodeStatus::Offline)
        );
        while node.poll_event().is_some() {}
        let _ = sent(&mut node);
        node
    }

    /// Drives the node's timers until `until`; every datagram it sent meanwhile.
    fn run_until(node: &mut Node, until: Instant) -> Vec<(SocketAddr, Packet)> {
        let mut out = Vec::new();
        while let Some(at) = node.poll_timeout().filter(|at| *at <= until) {
            node.handle_timeout(at);
            out.extend(sent(node));
        }
        out
    }

    #[test]
    fn a_member_held_dead_is_sent_its_own_dead_row_now_and_then() {
        let now = epoch();
        let mut node = node_holding_one_dead(now);
        let until = now + 10 * node.config().probe_interval;
        let out = run_until(&mut node, until);
        let contacts: Vec<&Packet> = out
            .iter()
            .filter(|(to, _)| *to == addr(3))
            .map(|(_, packet)| packet)
            .collect();
        assert!(!contacts.is_empty(), "the dead member was contacted");
        assert!(contacts.iter().all(|packet| matches!(
            &packet.message,
            Message::Rows { rows } if rows.len() == 1
                && rows[0].0.node == name("gone")
                && rows[0].0.health == Health::Dead
        )));
        assert!(
            contacts.len() <= 5,
            "at most one contact per two probe intervals: {}",
            contacts.len()
        );
    }

    #[test]
    fn nobody_dead_means_no_contacts_and_no_wakeups_for_them() {
        let now = epoch();
        let node = node(now);
        assert!(!node.has_reunion_work());
        assert_eq!(node.poll_timeout(), None, "a lone node sleeps");
    }

    #[test]
    fn a_node_told_it_is_dead_refutes_and_answers_the_teller_at_once() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        let _ = sent(&mut node);
        let own_death = dead("me", 1, 0);
        let rows = vec![own_death.row.clone()];
        node.handle_packet(
            now,
            addr(9),
            &packet("stranger", 0, Message::Rows { rows }, &[]),
        );
        assert_eq!(node.incarnation(), 1);
        let out = sent(&mut node);
        let answer = out
            .iter()
            .find(|(to, _)| *to == addr(9))
            .expect("the teller is answered");
        assert!(
            answer
                .1
                .gossip
                .iter()
                .any(|update| update.row.0.node == name("me")
                    && update.row.0.incarnation == 1
                    && update.row.0.health == Health::Alive),
            "the answer carries the refutation"
        );
    }

    #[test]
    fn a_death_learned_in_bulk_at_the_incarnation_held_online_is_checked_not_copied() {
        let now = epoch();
        let mut node = node_knowing_peer(now);
        while node.poll_event().is_some() {}
        let rows = vec![dead("peer", 2, 0).row];
        node.handle_packet(
            now,
            addr(5),
            &packet("other", 0, Message::Rows { rows }, &[]),
        );
        let row = node.row(&name("peer")).expect("tracked");
        assert_eq!(row.health, Health::Suspect, "suspected here, not dead");
        assert_eq!(row.status, NodeStatus::Online);
        // The suspect is asked at once, with its suspected row: it refutes, or
        // answers with the newer row whose gossip missed this node.
        let asked = sent(&mut node).into_iter().any(|(to, packet)| {
            to == addr(2)
                && matches!(&packet.message, Message::Rows { rows }
                    if rows.len() == 1 && rows[0].0.health == Health::Suspect)
        });
        assert!(asked, "the suspect is sent its suspected row");
        assert!(
            std::iter::from_fn(|| node.poll_event())
                .all(|event| !matches!(event, Event::NodeUpdate { .. })),
            "nobody is told it went offline"
        );
        // A death at a newer incarnation is another life's: copied as it is.
        let rows = vec![dead("peer", 2, 1).row];
        node.handle_packet(
            now,
            addr(5),
            &packet("other", 0, Message::Rows { rows }, &[]),
        );
        assert_eq!(
            node.row(&name("peer")).map(|row| row.status),
            Some(NodeStatus::Offline)
        );
    }

    #[test]
    fn rows_that_introduce_a_node_to_a_clustered_node_are_spread_a_first_view_is_not() {
        let now = epoch();
        // Clustered: a new node in an exchange's rows is news for this side.
        let mut clustered = node_knowing_peer(now);
        let _ = sent(&mut clustered);
        let before = clustered.pending_updates();
        let rows = vec![alive("stranger", 7, 0).row];
        clustered.handle_packet(
            now,
            addr(7),
            &packet("stranger", 0, Message::Rows { rows }, &[]),
        );
        assert_eq!(clustered.pending_updates(), before + 1);
        // A fresh joiner: its join reply is its first view, spread to nobody.
        let mut joiner = node(now);
        joiner.join(now, &[Seed::Addr(addr(2))]).expect("a seed");
        let _ = sent(&mut joiner);
        let before = joiner.pending_updates();
        let rows = vec![alive("peer", 2, 0).row, alive("stranger", 7, 0).row];
        joiner.handle_packet(
            now,
            addr(2),
            &packet("peer", 0, Message::JoinReply { rows }, &[]),
        );
        assert_eq!(joiner.tracker().len(), 3);
        assert_eq!(joiner.pending_updates(), before);
    }

    #[test]
    fn a_reaped_address_is_contacted_with_a_join() {
        let now = epoch();
        let config = Config {
            offline_retention: Some(Duration::from_secs(1)),
            ..Config::for_cluster("unit")
        };
        let mut node = Node::new(config, name("me"), addr(1), now, wall()).expect("valid");
        let gossip = packet("peer", 0, Message::Gossip, &[&alive("peer", 2, 0)]);
        node.handle_packet(now, addr(2), &gossip);
        let gone = dead("gone", 3, 4);
        node.handle_packet(now, addr(2), &packet("peer", 0, Message::Gossip, &[&gone]));
        let later = now + Duration::from_secs(3);
        let out = run_until(&mut node, later);
        assert!(node.row(&name("gone")).is_none(), "reaped");
        let joins = out
            .iter()
            .filter(|(to, p)| *to == addr(3) && matches!(p.message, Message::Join { .. }))
            .count();
        assert!(joins >= 1, "the forgotten address was asked to join us");
    }
}
