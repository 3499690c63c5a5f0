//! One origin process's events as one receiver sees them: which were
//! delivered, which wait for an earlier one, and where delivery starts for a
//! process that started after the origin did.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::limiter::Bucket;
use crate::wire::WireEvent;

/// What became of an event offered to its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Offer {
    /// New: held until the ones before it are delivered (maybe at once).
    Held,
    /// Delivered, held or skipped already.
    Duplicate,
    /// Sent before this process started: never delivered here.
    BeforeStart,
}

/// One origin process's events at this receiver.
#[derive(Debug)]
pub(super) struct Stream {
    /// The next sequence number to deliver; `None` until this process knows
    /// where its share of the origin's events begins.
    next: Option<u64>,
    /// Events waiting for earlier ones, by sequence number, with when they came.
    held: BTreeMap<u64, (WireEvent, Instant)>,
    /// When anything of this stream was last heard.
    pub(super) heard_at: Instant,
    /// The origin's rate at this receiver.
    pub(super) bucket: Bucket,
    /// Who last sent or announced one of its events: asked first for a gap.
    pub(super) source: SocketAddr,
}

impl Stream {
    pub(super) fn new(now: Instant, burst: u32, source: SocketAddr) -> Self {
        Self {
            next: None,
            held: BTreeMap::new(),
            heard_at: now,
            bucket: Bucket::full(burst, now),
            source,
        }
    }

    /// Whether `seq` was delivered, skipped or is held.
    pub(super) fn has(&self, seq: u64) -> bool {
        self.next.is_some_and(|next| seq < next) || self.held.contains_key(&seq)
    }

    /// Takes an event in; `uptime_ms` is how long this process has run.
    ///
    /// Whether the event, or the one before it, was sent before this process
    /// started is told by ages, not by comparing clocks: `age_ms` is how long
    /// ago it was sent (each holder adds the time it kept it), and the gap to
    /// the one before is the difference of two readings of the origin's own
    /// clock. An age leaves out the time its copies spent on the wire, so an
    /// event sent that little before this process started (milliseconds)
    /// may still count as sent after.
    pub(super) fn offer(&mut self, event: WireEvent, uptime_ms: u64, now: Instant) -> Offer {
        let seq = event.key.seq;
        if self.has(seq) {
            return Offer::Duplicate;
        }
        if event.age_ms > uptime_ms {
            // Everything up to it predates this process too.
            self.skip_to(seq + 1);
            return Offer::BeforeStart;
        }
        // The first event, or one whose predecessor was sent before this
        // process started, begins this process's share.
        let gap = u64::try_from(event.sent_at.saturating_sub(event.prev_sent_at)).unwrap_or(0);
        let first = seq == 1 || event.prev_sent_at == i64::MIN;
        if self.next.is_none() && (first || event.age_ms.saturating_add(gap) > uptime_ms) {
            self.next = Some(seq);
        }
        self.held.insert(seq, (event, now));
        Offer::Held
    }

    /// Moves the next sequence number up to `seq`, dropping what is held
    /// below it; how many were never delivered.
    pub(super) fn skip_to(&mut self, seq: u64) -> u64 {
        let from = self.next.unwrap_or(seq);
        if from >= seq {
            return 0;
        }
        self.next = Some(seq);
        let kept = self.held.split_off(&seq);
        let dropped = std::mem::replace(&mut self.held, kept).len() as u64;
        (seq - from) - dropped
    }

    /// The next event ready to deliver, in order.
    pub(super) fn pop_ready(&mut self) -> Option<WireEvent> {
        let next = self.next?;
        let (event, _) = self.held.remove(&next)?;
        self.next = Some(next + 1);
        Some(event)
    }

    /// The sequence numbers missing before the first held event, at most
    /// `limit` of them, lowest first: the ones to pull.
    pub(super) fn missing(&self, limit: u64) -> std::ops::Range<u64> {
        let Some((&first_held, _)) = self.held.first_key_value() else {
            return 0..0;
        };
        let from = match self.next {
            Some(next) => next,
            // Where delivery begins is unknown: walk back `limit` at a time
            // (one sent before this process started ends the walk).
            None => first_held.saturating_sub(limit).max(1),
        };
        from..first_held.min(from + limit)
    }

    /// After a gap has been held for `patience`: gives it up, so that the
    /// events after it are delivered; how many events were skipped.
    pub(super) fn give_up_stale_gap(&mut self, now: Instant, patience: Duration) -> u64 {
        let Some((&first_held, &(_, since))) = self.held.first_key_value() else {
            return 0;
        };
        if now.saturating_duration_since(since) < patience {
            return 0;
        }
        match self.next {
            None => {
                self.next = Some(first_held);
                0
            }
            Some(_) => self.skip_to(first_held),
        }
    }

    /// Since when the first held event waits for a gap before it.
    pub(super) fn waiting_since(&self) -> Option<Instant> {
        self.held.first_key_value().map(|(_, &(_, since))| since)
    }

    /// Whether events wait here for earlier ones.
    pub(super) fn is_waiting(&self) -> bool {
        !self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::NodeName;
    use crate::wire::EventKey;

    /// The origin's clock now: an event sent at `sent_at` is `NOW - sent_at` old.
    const NOW: i64 = 50;

    /// How long a receiver started at `started` (the origin's clock) has run.
    fn up(started: i64) -> u64 {
        (NOW - started) as u64
    }

    fn event(seq: u64, sent_at: i64) -> WireEvent {
        WireEvent {
            key: EventKey {
                origin: NodeName::new("origin").expect("valid"),
                started: 0,
                seq,
            },
            sent_at,
            prev_sent_at: if seq == 1 { i64::MIN } else { sent_at - 10 },
            lamport: seq,
            name: "e".into(),
            payload: Vec::new(),
            span: None,
            age_ms: (NOW - sent_at) as u64,
        }
    }

    #[allow(clippy::disallowed_methods)] // tests need some instant as an origin
    fn now() -> Instant {
        Instant::now()
    }

    fn stream(now: Instant) -> Stream {
        Stream::new(now, 10, "10.0.0.1:1".parse().expect("valid"))
    }

    fn drain(stream: &mut Stream) -> Vec<u64> {
        std::iter::from_fn(|| stream.pop_ready())
            .map(|e| e.key.seq)
            .collect()
    }

    #[test]
    fn events_out_of_order_are_delivered_in_order_once() {
        let now = now();
        let mut s = stream(now);
        assert_eq!(s.offer(event(2, 20), up(0), now), Offer::Held);
        assert!(drain(&mut s).is_empty(), "waits for the first");
        assert_eq!(s.missing(8), 1..2);
        assert_eq!(s.offer(event(1, 10), up(0), now), Offer::Held);
        assert_eq!(drain(&mut s), vec![1, 2]);
        assert_eq!(s.offer(event(2, 20), up(0), now), Offer::Duplicate);
        assert_eq!(s.offer(event(1, 10), up(0), now), Offer::Duplicate);
    }

    #[test]
    fn a_process_started_after_an_event_never_delivers_it_nor_those_before() {
        let now = now();
        let mut s = stream(now);
        // Started at 25: event 3 (sent 30, previous at 20) begins its share.
        assert_eq!(s.offer(event(3, 30), up(25), now), Offer::Held);
        assert_eq!(drain(&mut s), vec![3]);
        assert_eq!(s.offer(event(2, 20), up(25), now), Offer::Duplicate);
        let mut late = stream(now);
        // Started at 15: event 3's previous (20) came after; walk back.
        assert_eq!(late.offer(event(3, 30), up(15), now), Offer::Held);
        assert_eq!(late.missing(8), 1..3, "a batch back, the start unknown");
        assert_eq!(late.missing(1), 2..3);
        assert_eq!(late.offer(event(2, 20), up(15), now), Offer::Held);
        assert_eq!(drain(&mut late), vec![2, 3]);
        let mut later = stream(now);
        assert_eq!(later.offer(event(2, 20), up(35), now), Offer::BeforeStart);
        assert_eq!(later.offer(event(4, 40), up(35), now), Offer::Held);
        // 4's previous was sent at 30, before the start at 35: no gap.
        assert!(later.missing(8).is_empty());
        assert_eq!(drain(&mut later), vec![4]);
        assert_eq!(later.offer(event(3, 30), up(35), now), Offer::Duplicate);
    }

    #[test]
    fn a_gap_held_past_patience_is_skipped_and_counted() {
        let now = now();
        let mut s = stream(now);
        s.offer(event(1, 10), up(0), now);
        assert_eq!(drain(&mut s), vec![1]);
        s.offer(event(4, 40), up(0), now);
        assert_eq!(s.missing(8), 2..4);
        assert_eq!(s.give_up_stale_gap(now, Duration::from_secs(1)), 0);
        let later = now + Duration::from_secs(1);
        assert_eq!(s.give_up_stale_gap(later, Duration::from_secs(1)), 2);
        assert_eq!(drain(&mut s), vec![4]);
        assert_eq!(s.offer(event(2, 20), up(0), later), Offer::Duplicate);
    }
}
