//! Network input: a datagram is decoded, validated, its piggybacked updates are
//! applied, and its message goes to the part of the protocol it belongs to.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::Node;
use super::conflict::Claim;
use super::membership::Source;
use crate::stats::DropReason;
use crate::tracker::Health;
use crate::wire::{self, DecodeError, Message, Packet};

/// Nodes unknown here that one packet's gossip introduces, from which on they
/// are a wave rather than a joiner (who arrives alone).
const WAVE: usize = 2;

impl Node {
    /// See [`Node::handle_packet`]. Returns whether the packet was accepted
    /// (`false`: dropped and counted, nothing changed).
    pub(super) fn receive(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> bool {
        self.stats.packets_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        if bytes.len() > self.config.max_packet_size {
            return self.drop_packet(from, DropReason::Oversized);
        }
        let decoded = wire::decode(
            bytes,
            self.config.cluster_id,
            self.sealer.as_ref(),
            &mut self.open_buf,
            self.config.tag_limits(),
        );
        let packet = match decoded {
            Ok(packet) => packet,
            // Holding keys, this node reads a notice (never sealed) here.
            Err(DecodeError::NotSealed) if self.receive_notice(now, from, bytes) => return true,
            Err(error) => {
                self.refuse(now, from, bytes, &error);
                return self.drop_packet(from, error.into());
            }
        };
        if let Err(reason) = self.validate(now, &packet) {
            return self.drop_packet(from, reason);
        }
        if let Message::Join { row } = &packet.message
            && !self.admits_join(now, from, &row.0)
        {
            return self.drop_packet(from, DropReason::RateLimited);
        }
        let owed = self.tombstones_owed(now, from, &packet);
        let Packet {
            message,
            gossip,
            event_ids,
            tombstones,
            unknown_items,
            ..
        } = packet;
        if unknown_items > 0 {
            // A later version's items (rolling upgrade): skipped, the rest applies.
            debug!(%from, unknown_items, "skipped piggybacked items of unknown kinds");
            for _ in 0..unknown_items {
                self.stats.count_drop(DropReason::UnknownPiggyback);
            }
        }
        if !tombstones.is_empty() {
            // Before the rows: they may cover some.
            self.apply_tombstones(now, tombstones);
        }
        let mut answer = Vec::new();
        let known_before = self.tracker.len();
        for update in gossip {
            if let Some(outdated) =
                self.apply_row(now, update.row.0, update.suspecter, Source::Gossip)
                && let Some(current) = self.answer_for(now, from, &outdated)
            {
                answer.push(current);
            }
        }
        if self.tracker.len() >= known_before + WAVE {
            // A wave (clusters meeting, a side healed past the retention, a
            // storm) is often larger than one datagram: each packet carries
            // part of it, every queue is ordered alike, so the same rows are
            // left out everywhere and a few nodes may miss a few rows until the
            // periodic exchange (5 s). `apply_row` catches long-known rows, but
            // clusters younger than the exchange interval do not look so (with
            // the v4 framing a merge of two clusters of 50 no longer fit one
            // datagram and took up to 4.8 s). Compare digests soon instead.
            self.sync_soon(now);
        }
        if !event_ids.is_empty() {
            self.handle_event_ids(now, from, event_ids);
        }
        self.dispatch(now, from, message);
        if !answer.is_empty() {
            // The sender suspects a live node from an outdated row: answer with the
            // current rows themselves, now, before its suspicion runs out (at most
            // once per row and window: see `answers`). Gossip could carry them
            // too, but among many fresher rows (after a partition heals) it may
            // leave them out, and the suspicion would then stand until an
            // exchange.
            self.send_rows_now(from, answer);
        }
        if !owed.is_empty() {
            // The sender holds rows of pruned members: it missed the prune.
            self.send_tombstones(from, owed);
        }
        true
    }

    /// Counts and logs a dropped packet; `false`, for `receive` to return.
    fn drop_packet(&mut self, from: SocketAddr, reason: DropReason) -> bool {
        self.stats.count_dropped_packet(reason, from);
        debug!(%from, ?reason, "dropped packet");
        false
    }

    /// Everything that can make a decoded packet unacceptable, checked before any
    /// of it is applied.
    fn validate(&self, now: Instant, packet: &Packet) -> Result<(), DropReason> {
        if packet.sender == self.name {
            return match &packet.message {
                // Another process under this name (`conflict.rs`): its half of
                // the handshake, or its join sent to this address.
                Message::Claim { addr, .. } if *addr != self.addr => Ok(()),
                Message::Join { row }
                    if row.0.node == self.name
                        && row.0.addr != self.addr
                        && row.0.health == Health::Alive =>
                {
                    Ok(())
                }
                _ => Err(DropReason::FromSelf),
            };
        }
        match &packet.message {
            Message::Claim { .. } => Err(DropReason::WrongTarget),
            Message::Ping { target, .. } if *target != self.name => Err(DropReason::WrongTarget),
            Message::JoinReply { .. } if !self.accepts_join_replies(now) => {
                Err(DropReason::Unsolicited)
            }
            // Only a node itself may announce itself alive.
            Message::Join { row }
                if row.0.node != packet.sender || row.0.health != Health::Alive =>
            {
                Err(DropReason::Malformed)
            }
            _ => Ok(()),
        }
    }

    fn dispatch(&mut self, now: Instant, from: SocketAddr, message: Message) {
        match message {
            Message::Ping { seq, .. } => self.handle_ping(now, from, seq),
            Message::Ack { seq } => self.handle_ack(now, seq),
            Message::PingReq {
                seq,
                target,
                target_addr,
            } => self.handle_ping_req(now, from, seq, target, target_addr),
            Message::Nack { seq } => self.handle_nack(seq),
            Message::Bounced { seq } => self.handle_bounced(now, seq),
            Message::Join { row } if row.0.node == self.name => self.suspect_rival(now, row.0.addr),
            Message::Join { row } => self.handle_join(now, from, row.0),
            Message::JoinReply { rows } => self.handle_join_reply(now, from, rows),
            Message::Sync { digest, reply } => self.handle_sync(from, digest.into(), reply),
            Message::Rows { rows } => self.handle_rows(now, from, rows),
            Message::Gossip => {}
            Message::Event(event) => self.handle_user_event(now, from, *event),
            Message::EventPull(key) => self.handle_event_pull(from, key),
            Message::EventAck(key) => self.handle_event_ack(from, &key),
            Message::Query(query) => self.handle_query(now, from, *query),
            Message::QueryAck(key, acker) => self.handle_query_ack(&key, acker),
            Message::QueryResponse(response) => self.handle_query_response(*response),
            Message::QueryRelay(response) => self.handle_query_relay(*response),
            Message::QueryPushAck(key) => self.handle_query_push_ack(from, &key),
            Message::Tombstones(tombstones) => self.apply_tombstones(now, tombstones),
            Message::Refused(reason) => self.handle_refusal(now, from, reason),
            Message::Unknown { kind } => {
                // A later version's message (rolling upgrade): its updates
                // applied, the message itself is skipped.
                self.stats.count_drop(DropReason::UnknownMessage);
                debug!(%from, kind, "skipped a message of an unknown kind");
            }
            Message::Claim {
                addr,
                started,
                nonce,
                echo,
                confirmed,
            } => {
                let claim = Claim {
                    addr,
                    started,
                    nonce,
                    echo,
                    confirmed,
                };
                self.handle_claim(now, from, claim);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::node::testing::*;
    use crate::wire::raw;

    #[test]
    fn a_packet_introducing_several_nodes_brings_the_next_exchange_forward() {
        use crate::node::timer::Timer;
        let now = epoch();
        let mut node = node_knowing_peer(now);
        let periodic = node.timers.get(Timer::AntiEntropy).expect("scheduled");
        let soon = now + node.config.probe_interval * 2;
        assert!(periodic > soon, "the first exchange is seconds away");
        let joiner = packet("peer", 0, Message::Gossip, &[&alive("joiner", 3, 0)]);
        node.handle_packet(now, addr(2), &joiner);
        assert_eq!(
            node.timers.get(Timer::AntiEntropy),
            Some(periodic),
            "a joiner alone is no wave"
        );
        let wave = [alive("a", 4, 0), alive("b", 5, 0)];
        let refs: Vec<&Update> = wave.iter().collect();
        node.handle_packet(now, addr(2), &packet("peer", 0, Message::Gossip, &refs));
        assert!(
            node.timers
                .get(Timer::AntiEntropy)
                .is_some_and(|at| at <= soon),
            "two nodes new here in one packet: compare digests soon"
        );
    }

    #[test]
    fn a_ping_for_another_name_is_dropped_whole() {
        let now = epoch();
        let mut node = node(now);
        let update = alive("peer", 2, 0);
        let ping = ping_from_peer(1, "someone-else", &[&update]);
        node.handle_packet(now, addr(2), &ping);
        assert_eq!(node.stats().dropped(DropReason::WrongTarget), 1);
        assert!(sent(&mut node).is_empty());
        assert_eq!(
            node.tracker().len(),
            1,
            "the piggybacked update was not applied"
        );
    }

    #[test]
    fn packets_claiming_to_be_from_self_are_dropped() {
        let now = epoch();
        let mut node = node(now);
        let bytes = packet("me", 9, Message::Gossip, &[&alive("x", 3, 0)]);
        node.handle_packet(now, addr(9), &bytes);
        assert_eq!(node.stats().dropped(DropReason::FromSelf), 1);
        assert_eq!(node.tracker().len(), 1);
    }

    #[test]
    fn the_same_outdated_news_from_one_peer_is_answered_once_per_window() {
        let now = epoch();
        let mut node = node_knowing_peer_refuted(now);
        let outdated = suspect("peer", 2, 1, "slow");
        let answers_to = |node: &mut Node, to| {
            sent(node)
                .iter()
                .filter(|(at, p)| *at == to && matches!(p.message, Message::Rows { .. }))
                .count()
        };
        let from_slow = packet("slow", 0, Message::Gossip, &[&outdated]);
        node.handle_packet(now, addr(4), &from_slow);
        assert_eq!(answers_to(&mut node, addr(4)), 1, "answered at once");
        // A slow member repeats the news before the answer reaches it.
        let soon = now + node.config().suspicion_min / 2;
        node.handle_packet(soon, addr(4), &from_slow);
        assert_eq!(answers_to(&mut node, addr(4)), 0, "not answered twice");
        let from_other = packet("late", 0, Message::Gossip, &[&outdated]);
        node.handle_packet(soon, addr(5), &from_other);
        assert_eq!(
            answers_to(&mut node, addr(5)),
            1,
            "another peer is answered"
        );
        // Still outdated after the window: the answer may have been lost.
        let later = now + node.config().suspicion_min;
        node.handle_packet(later, addr(4), &from_slow);
        assert_eq!(answers_to(&mut node, addr(4)), 1, "answered again");
    }

    #[test]
    fn a_later_versions_message_is_counted_and_its_updates_still_apply() {
        let now = epoch();
        let mut node = node(now);
        let update = alive("peer", 2, 0);
        let bytes = packet("peer", 0, Message::Unknown { kind: 300 }, &[&update]);
        node.handle_packet(now, addr(2), &bytes);
        assert_eq!(node.stats().dropped(DropReason::UnknownMessage), 1);
        assert_eq!(node.stats().dropped_total(), 1);
        assert_eq!(
            node.row(&name("peer")).map(|r| r.health),
            Some(Health::Alive)
        );
        assert!(sent(&mut node).is_empty(), "nothing answers the unknown");
    }

    #[test]
    fn a_later_versions_piggybacked_items_are_counted_and_the_rows_beside_them_apply() {
        let now = epoch();
        let mut node = node(now);
        let items = [
            raw::frame(9, &[1, 2, 3]),
            raw::update(&alive("peer", 2, 0)),
            raw::frame(300, &[]),
        ];
        let gossip = raw::frame(8, &[]);
        let bytes = raw::packet(node.config().cluster_id, &name("peer"), &gossip, &items);
        node.handle_packet(now, addr(2), &bytes);
        assert_eq!(node.stats().dropped(DropReason::UnknownPiggyback), 2);
        assert_eq!(node.stats().dropped_total(), 2);
        assert_eq!(
            node.row(&name("peer")).map(|r| r.health),
            Some(Health::Alive)
        );
    }

    #[test]
    fn a_frame_cut_short_drops_the_whole_packet() {
        let now = epoch();
        let mut node = node(now);
        let items = [raw::update(&alive("peer", 2, 0)), vec![9, 10, 1, 2]];
        // The second item's length says ten bytes, of which two came.
        let gossip = raw::frame(8, &[]);
        let bytes = raw::packet(node.config().cluster_id, &name("peer"), &gossip, &items);
        node.handle_packet(now, addr(2), &bytes);
        assert_eq!(node.stats().dropped(DropReason::Malformed), 1);
        assert_eq!(node.tracker().len(), 1, "the row before it was not applied");
    }

    /// Found by fuzzing: a forged "you are suspect at incarnation u64::MAX" made the
    /// refutation overflow (a panic, or in release a wrap to 0 that kept the node
    /// dead everywhere). Out-of-range incarnations are now malformed.
    #[test]
    fn an_incarnation_beyond_the_maximum_is_malformed_and_the_maximum_is_outbid() {
        let now = epoch();
        let mut node = node(now);
        let mut forged = alive("me", 1, u64::MAX);
        forged.row.0.health = Health::Suspect;
        forged.row.0.status = NodeStatus::Online;
        node.handle_packet(
            now,
            addr(2),
            &packet("peer", 0, Message::Gossip, &[&forged]),
        );
        assert_eq!(node.stats().dropped(DropReason::Malformed), 1);
        assert_eq!(node.incarnation(), 0);
        let mut highest = alive("me", 1, crate::tracker::MAX_INCARNATION);
        highest.row.0 = highest.row.0.with_health(Health::Suspect, wall());
        node.handle_packet(
            now,
            addr(2),
            &packet("peer", 0, Message::Gossip, &[&highest]),
        );
        assert_eq!(node.incarnation(), crate::tracker::MAX_INCARNATION + 1);
        assert_eq!(node.row(&name("me")).map(|r| r.health), Some(Health::Alive));
    }
}
