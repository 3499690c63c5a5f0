//! Network input: decoding, validation, and what each message does.

use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::{Node, Source};
use crate::name::NodeName;
use crate::probe::{MAX_RELAYS, Relay};
use crate::stats::DropReason;
use crate::tracker::{DIGEST_BUCKETS, Digest, Health, TrackerRow};
use crate::wire::{self, Message, Packet, WireRow};

impl Node {
    /// Handles one received datagram. Never fails: bad packets are dropped, counted
    /// in [`stats`](Node::stats) by reason, logged at debug level, and change no state.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.observe_input(now);
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
        );
        let packet = match decoded {
            Ok(packet) => packet,
            Err(error) => return self.drop_packet(from, error.into()),
        };
        if let Err(reason) = self.validate(now, &packet) {
            return self.drop_packet(from, reason);
        }
        if let Message::Join { row } = &packet.message
            && self.tracker.get(&row.0.node).is_none()
            && !self.join_limiter.allow(from, now)
        {
            return self.drop_packet(from, DropReason::RateLimited);
        }
        let Packet {
            message, gossip, ..
        } = packet;
        let mut outdated = false;
        for update in gossip {
            outdated |= self.apply_row(now, update.row.0, update.suspecter, Source::Gossip);
        }
        self.dispatch(now, from, message);
        if outdated {
            // The sender suspects a live node from an outdated row: answer with the
            // current one now, before its suspicion runs out.
            self.send(from, Message::Gossip);
        }
    }

    fn drop_packet(&mut self, from: SocketAddr, reason: DropReason) {
        self.stats.count_drop(reason);
        debug!(%from, ?reason, "dropped packet");
    }

    /// Everything that can make a decoded packet unacceptable, checked before any
    /// of it is applied.
    fn validate(&self, now: Instant, packet: &Packet) -> Result<(), DropReason> {
        if packet.sender == self.name {
            return Err(DropReason::FromSelf);
        }
        match &packet.message {
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

    fn accepts_join_replies(&self, now: Instant) -> bool {
        self.join.is_some() || self.join_replies_until.is_some_and(|until| now <= until)
    }

    fn dispatch(&mut self, now: Instant, from: SocketAddr, message: Message) {
        match message {
            Message::Ping { seq, .. } => self.send(from, Message::Ack { seq }),
            Message::Ack { seq } => self.handle_ack(seq),
            Message::PingReq {
                seq,
                target,
                target_addr,
            } => self.handle_ping_req(now, from, seq, target, target_addr),
            Message::Nack { seq } => {
                if let Some(probe) = self.probes.iter_mut().find(|probe| probe.seq == seq) {
                    probe.nacks += 1;
                }
            }
            Message::Bounced { seq } => self.handle_bounced(now, seq),
            Message::Join { row } => self.handle_join(now, from, row.0),
            Message::JoinReply { rows } => self.handle_join_reply(now, from, rows),
            Message::Sync { digest, reply } => self.handle_sync(from, digest.into(), reply),
            Message::Rows { rows } => self.apply_bulk(now, rows),
            Message::Gossip => {}
        }
    }

    fn handle_ack(&mut self, seq: u32) {
        if let Some(probe) = self.probes.iter_mut().find(|probe| probe.seq == seq) {
            probe.acked = true;
            return;
        }
        if let Some(at) = self.relays.iter().position(|relay| relay.seq == seq) {
            let relay = self.relays.swap_remove(at);
            self.send(
                relay.requester,
                Message::Ack {
                    seq: relay.requester_seq,
                },
            );
            return;
        }
        if let Some(last) = self
            .suspicions
            .values_mut()
            .filter_map(|suspicion| suspicion.last_chance.as_mut())
            .find(|last| last.seq == seq)
        {
            last.acked = true;
            return;
        }
        self.stats.late_acks += 1;
    }

    fn handle_ping_req(
        &mut self,
        now: Instant,
        from: SocketAddr,
        requester_seq: u32,
        target: NodeName,
        target_addr: SocketAddr,
    ) {
        if target == self.name {
            // Asked to probe ourselves: we are evidently here.
            self.send(from, Message::Ack { seq: requester_seq });
            return;
        }
        if self.relays.len() >= MAX_RELAYS {
            debug!(%from, "too many indirect probes in flight: request ignored");
            return;
        }
        let seq = self.next_seq();
        // Nack before the requester's period ends, so it can tell its own trouble
        // from the target's (Lifeguard).
        let window = self
            .config
            .probe_interval
            .saturating_sub(self.config.probe_timeout);
        self.relays.push(Relay {
            seq,
            requester: from,
            requester_seq,
            target_addr,
            nack_at: now + window.mul_f64(0.8),
        });
        self.send(target_addr, Message::Ping { seq, target });
    }

    fn handle_join(&mut self, now: Instant, from: SocketAddr, row: TrackerRow) {
        let _ = self.apply_row(now, row, None, Source::Gossip);
        self.send_rows(from, super::ALL_BUCKETS, super::RowsKind::JoinReply);
    }

    fn handle_join_reply(&mut self, now: Instant, from: SocketAddr, rows: Vec<WireRow>) {
        let knew_others = self.tracker.len() > 1;
        self.apply_bulk(now, rows);
        if let Some(join) = self.join.take() {
            self.events
                .push_back(crate::event::Event::Joined { seed: from });
            self.schedule_rejoin(now, join.targets);
            // Rows that joined at the same time as this node were not in the reply,
            // and bulk rows are not gossiped on: compare digests with a random member
            // soon rather than at the first periodic exchange.
            self.sync_soon(now);
        }
        // Later chunks of this reply are still welcome for a while.
        self.join_replies_until = Some(now + self.config.join_retry);
        if knew_others {
            // Two clusters meeting: make sure the seed's side learns ours too.
            self.send_sync(from, false);
        }
    }

    fn handle_sync(&mut self, from: SocketAddr, theirs: Digest, reply: bool) {
        let ours = self.tracker.digest();
        if ours == theirs {
            return;
        }
        self.stats.anti_entropy_repairs += 1;
        let differing = (0..DIGEST_BUCKETS)
            .filter(|&bucket| ours[bucket] != theirs[bucket])
            .fold(0u32, |mask, bucket| mask | 1 << bucket);
        self.send_rows(from, differing, super::RowsKind::Rows);
        if !reply {
            self.send_sync(from, true);
        }
    }

    fn apply_bulk(&mut self, now: Instant, rows: Vec<WireRow>) {
        for row in rows {
            let _ = self.apply_row(now, row.0, None, Source::Bulk);
        }
    }
}
