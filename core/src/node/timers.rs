//! Time-driven work: the probe cycle, indirect probes run for others, suspicion
//! timeouts, the gossip tick, anti-entropy, join retries, leave and reaping.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Node, Rejoin};
use crate::event::Event;
use crate::name::NodeName;
use crate::suspicion::LastChance;
use crate::wire::{Message, WireRow};

/// Most often the reaper scans the tracker.
const REAP_PERIOD: Duration = Duration::from_secs(1);

impl Node {
    /// Does whatever is due at `now`. Calling it early or twice is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe_input(now);
        self.run_probes(now);
        self.run_relays(now);
        self.run_suspicions(now);
        self.run_gossip(now);
        self.run_anti_entropy(now);
        self.run_join(now);
        self.run_rejoin(now);
        self.run_leave(now);
        self.run_reap(now);
    }

    /// When [`handle_timeout`](Node::handle_timeout) should be called next; `None`
    /// when nothing is scheduled. Read it after draining the other `poll_*` calls.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        let mut consider = |at: Instant| {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        };
        let has_members = self.members.len() > 0;
        for probe in &self.probes {
            if !probe.acked && !probe.indirect_sent {
                consider(probe.indirect_at);
            }
            consider(probe.ends_at);
        }
        if !self.left && has_members && !self.probes.iter().any(|p| p.regular) {
            consider(self.next_probe_at);
        }
        self.relays.iter().for_each(|relay| consider(relay.nack_at));
        self.suspicions.values().for_each(|s| consider(s.due_at()));
        if has_members && !self.gossip.is_empty() {
            consider(self.next_gossip_at);
        }
        if !self.left && (has_members || self.dead.len() > 0) {
            consider(self.next_sync_at);
        }
        if let Some(join) = &self.join {
            consider(join.next_at);
        }
        if let Some(rejoin) = &self.rejoin {
            consider(rejoin.next_at);
        }
        self.leaving_until.into_iter().for_each(&mut consider);
        self.next_reap_at.into_iter().for_each(&mut consider);
        earliest
    }

    /// Notes that the node is being driven at `now`. If it was not driven for a while
    /// *and* missed a deadline meanwhile, this node itself stalled (GC, CPU
    /// starvation, a paused process): replies may be waiting unread, so pending
    /// verdicts get more time instead of blaming others (Lifeguard's local health).
    pub(super) fn observe_input(&mut self, now: Instant) {
        let threshold = self.config.probe_timeout;
        let idle = now.saturating_duration_since(self.last_input_at);
        if idle > threshold
            && let Some(deadline) = self.poll_timeout()
            && deadline + threshold < now
        {
            self.on_stall(now, now - deadline);
        }
        self.last_input_at = self.last_input_at.max(now);
    }

    fn on_stall(&mut self, now: Instant, late_by: Duration) {
        debug!(
            ?late_by,
            "this node stalled: giving pending verdicts more time"
        );
        self.stats.stalls += 1;
        self.local_health.worsen(self.config.max_local_health);
        // Probes in flight prove nothing: their answers may be unread.
        self.probes.clear();
        self.next_probe_at = self.next_probe_at.max(now);
        let grace = now + self.config.probe_interval;
        for suspicion in self.suspicions.values_mut() {
            suspicion.extend_to(grace);
        }
    }

    fn run_relays(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.relays.len() {
            if self.relays[i].nack_at <= now {
                let relay = self.relays.swap_remove(i);
                self.send(
                    relay.requester,
                    Message::Nack {
                        seq: relay.requester_seq,
                    },
                );
            } else {
                i += 1;
            }
        }
    }

    /// Expired suspicions get a last-chance check (two pings, and `k` members asked
    /// to ping); those still unanswered after it are declared dead.
    fn run_suspicions(&mut self, now: Instant) {
        let due: Vec<NodeName> = self
            .suspicions
            .iter()
            .filter(|(_, suspicion)| suspicion.due_at() <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some(suspicion) = self.suspicions.get(&name) else {
                continue;
            };
            match suspicion.last_chance {
                None => {
                    let seq = self.next_seq();
                    let until = now + self.local_health.scale(self.config.probe_timeout);
                    if let Some(suspicion) = self.suspicions.get_mut(&name) {
                        suspicion.last_chance = Some(LastChance {
                            seq,
                            until,
                            acked: false,
                        });
                    }
                    // Twice directly, and through `k` others: lost datagrams must
                    // not decide a death.
                    self.ping(now, &name, seq);
                    self.ping(now, &name, seq);
                    if let Some(addr) = self.tracker.get(&name).map(|row| row.addr) {
                        let _ = self.ask_helpers(seq, &name, addr);
                    }
                }
                Some(last) if last.acked => {
                    if let Some(suspicion) = self.suspicions.get_mut(&name) {
                        suspicion.restart(now);
                    }
                }
                Some(_) => {
                    let incarnation = suspicion.incarnation;
                    self.declare_dead(now, &name, incarnation);
                }
            }
        }
    }

    fn run_gossip(&mut self, now: Instant) {
        if now < self.next_gossip_at {
            return;
        }
        self.next_gossip_at = now + self.config.gossip_interval;
        if self.gossip.is_empty() {
            return;
        }
        self.gossip_to_random_members();
    }

    fn run_anti_entropy(&mut self, now: Instant) {
        if self.left || now < self.next_sync_at {
            return;
        }
        let interval = self.config.anti_entropy_interval;
        // Jitter keeps nodes from exchanging in lockstep.
        self.next_sync_at = now + interval.mul_f64(0.75 + self.rng.f64() * 0.5);
        // One exchange in four goes to a node believed dead: if it is in fact
        // alive behind a healed partition, it learns of its death and refutes it.
        let pool = if self.dead.len() > 0 && (self.members.len() == 0 || self.rng.u8(..4) == 0) {
            &self.dead
        } else {
            &self.members
        };
        let target = pool
            .pick(&mut self.rng)
            .and_then(|id| self.tracker.by_id(id));
        if let Some(row) = target {
            let to = row.addr;
            self.send_sync(to, false);
        }
    }

    /// Brings the next anti-entropy exchange forward to within a probe period or
    /// two, for a node that knows it has missed news.
    pub(super) fn sync_soon(&mut self, now: Instant) {
        let soon = now + self.config.probe_interval.mul_f64(1.0 + self.rng.f64());
        self.next_sync_at = self.next_sync_at.min(soon);
    }

    /// Sends the next join attempt when due; gives up after `join_attempts`.
    pub(super) fn run_join(&mut self, now: Instant) {
        let Some(join) = &mut self.join else {
            return;
        };
        if now < join.next_at {
            return;
        }
        if join.made >= self.config.join_attempts {
            let attempts = join.made;
            let targets = std::mem::take(&mut join.targets);
            self.join = None;
            debug!(attempts, "no seed answered: running standalone");
            self.events.push_back(Event::JoinFailed { attempts });
            self.schedule_rejoin(now, targets);
            return;
        }
        join.record_attempt(now);
        let targets = join.targets.clone();
        self.send_joins(&targets);
    }

    pub(super) fn schedule_rejoin(&mut self, now: Instant, targets: Vec<SocketAddr>) {
        self.rejoin = Some(Rejoin {
            targets,
            next_at: now + self.config.rejoin_interval,
        });
    }

    /// Re-probes the seeds that no online member uses, so split clusters merge.
    fn run_rejoin(&mut self, now: Instant) {
        let Some(rejoin) = &mut self.rejoin else {
            return;
        };
        if now < rejoin.next_at {
            return;
        }
        rejoin.next_at = now + self.config.rejoin_interval;
        let mut online = std::mem::take(&mut self.addr_scratch);
        online.clear();
        online.extend(self.member_rows().map(|row| row.addr));
        online.sort_unstable();
        let targets: Vec<SocketAddr> = self
            .rejoin
            .iter()
            .flat_map(|rejoin| rejoin.targets.iter().copied())
            .filter(|addr| online.binary_search(addr).is_err())
            .collect();
        online.clear();
        online.shrink_to(super::KEEP_QUEUED);
        self.addr_scratch = online;
        if !targets.is_empty() {
            self.join_replies_until = Some(now + self.config.join_retry * 2);
            self.send_joins(&targets);
        }
    }

    fn send_joins(&mut self, targets: &[SocketAddr]) {
        let Some(own) = self.tracker.get(&self.name).cloned() else {
            return;
        };
        for &to in targets {
            let row = WireRow(own.clone());
            self.send(to, Message::Join { row });
        }
    }

    fn run_leave(&mut self, now: Instant) {
        let Some(until) = self.leaving_until else {
            return;
        };
        let spread = !self.gossip.contains(&self.name) || self.members.len() == 0;
        if spread || now >= until {
            self.leaving_until = None;
            self.events.push_back(Event::LeaveFinished { spread });
        }
    }

    fn run_reap(&mut self, now: Instant) {
        let (Some(at), Some(retention)) = (self.next_reap_at, self.config.offline_retention) else {
            return;
        };
        if now >= at {
            self.reap(now);
            self.next_reap_at = Some(now + retention.min(REAP_PERIOD));
        }
    }
}
