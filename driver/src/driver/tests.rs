//! Drivers on a lossless in-memory network with virtual time.
//!
//! This pump is not the core's cluster pump: it steps whole [`Driver`]s, with the
//! commands their [`Handle`]s queue and the snapshots they publish, which a pump
//! of bare `Node`s cannot reach. It stays with the driver for that reason.

use std::time::Duration;

use beethoven_core::{Config, DropReason, Health, Mode, NodeName, NodeStatus};

use beethoven_core::{Op, Tags, TrackerEvent};
use futures_lite::future::block_on;

use super::*;
use crate::runtime::Threads;
use crate::{CommandError, Reply};

struct Peer {
    driver: Driver,
    handle: Handle,
    wake_at: Option<Instant>,
}

fn peer(name: &str, port: u16, seeds: &[u16], now: Instant) -> Peer {
    let mut options = Options::new(NodeName::new(name).expect("valid name"))
        .config(Config::for_cluster("driver-test"))
        .queue_capacity(64);
    for seed in seeds {
        options = options.seed(SocketAddr::from(([127, 0, 0, 1], *seed)));
    }
    let bound = SocketAddr::from(([127, 0, 0, 1], port));
    let runtime = Arc::new(Threads);
    let (driver, handle) =
        Driver::new(options, bound, &[], now, DateTime::UNIX_EPOCH, runtime).expect("valid");
    Peer {
        driver,
        handle,
        wake_at: Some(now),
    }
}

/// Runs the peers on a lossless in-memory network with virtual time until `until`.
/// Returns the peers that stopped.
fn pump(peers: &mut [Peer], start: Instant, until: Duration) -> Vec<usize> {
    let mut stopped = Vec::new();
    let mut now = start;
    let mut wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
    while now < start + until {
        for (i, peer) in peers.iter_mut().enumerate() {
            if stopped.contains(&i) {
                continue;
            }
            let me = peer.handle.advertised_addr();
            let commands = std::iter::from_fn(|| peer.driver.commands.try_recv().ok());
            let mut inputs: Vec<Input<'_>> = commands.map(Input::Command).collect();
            let mine: Vec<_> = wire
                .iter()
                .filter(|(_, to, _)| *to == me)
                .cloned()
                .collect();
            wire.retain(|(_, to, _)| *to != me);
            let datagrams: Vec<Input<'_>> = mine
                .iter()
                .map(|(from, _, bytes)| Input::Datagram { from: *from, bytes })
                .collect();
            inputs.extend(datagrams);
            if peer.wake_at.is_some_and(|at| at <= now) {
                inputs.push(Input::Timeout);
            }
            for input in inputs {
                let mut send = |to: SocketAddr, payload: &[u8]| {
                    wire.push((me, to, payload.to_vec()));
                    Ok(())
                };
                match peer.driver.step(now, input, &mut send) {
                    Flow::Continue { wake_at } => peer.wake_at = wake_at,
                    Flow::Stop => {
                        stopped.push(i);
                        break;
                    }
                }
            }
        }
        now += Duration::from_millis(10);
    }
    stopped
}

#[allow(clippy::disallowed_methods)] // tests need some instant as an origin
fn origin() -> Instant {
    Instant::now()
}

#[test]
fn two_drivers_join_publish_and_route_to_subscribers() {
    let start = origin();
    let mut peers = vec![peer("a", 7001, &[], start), peer("b", 7002, &[7001], start)];
    let stream = peers[0].handle.subscribe();
    assert_eq!(peers[0].handle.mode(), Mode::Standalone);
    assert!(pump(&mut peers, start, Duration::from_secs(3)).is_empty());
    for peer in &peers {
        assert_eq!(peer.handle.mode(), Mode::Clustered);
        assert_eq!(peer.handle.active_nodes().len(), 2);
    }
    let updates: Vec<Update> = std::iter::from_fn(|| stream.try_recv()).collect();
    assert_eq!(
        updates,
        vec![Update::Node {
            node: NodeName::new("b").expect("valid name"),
            status: NodeStatus::Online
        }],
        "one update, about the other node only"
    );
    assert!(peers[1].handle.stats().packets_received > 0);
}

#[test]
fn stop_after_leave_waits_for_the_leave_to_spread() {
    let start = origin();
    let mut peers = vec![peer("a", 7001, &[], start), peer("b", 7002, &[7001], start)];
    assert!(pump(&mut peers, start, Duration::from_secs(2)).is_empty());
    drop(peers[1].handle.leave()); // queued; the reply would come with the next step
    peers[1].handle.stop().expect("running");
    let later = start + Duration::from_secs(2);
    let stopped = pump(&mut peers, later, Duration::from_secs(4));
    assert_eq!(stopped, vec![1]);
    let row = peers[0]
        .handle
        .cluster_nodes()
        .into_iter()
        .find(|row| row.node.as_str() == "b")
        .expect("b is tracked");
    assert_eq!(row.health, Health::Left);
    assert_eq!(peers[0].handle.mode(), Mode::Standalone);
}

#[test]
fn closing_the_channel_stops_at_once_and_marks_the_handle_stopped() {
    let start = origin();
    let mut a = peer("a", 7001, &[], start);
    let handle = a.handle.clone();
    let flow = a
        .driver
        .step(start, Input::Closed, &mut |_: SocketAddr, _: &[u8]| Ok(()));
    assert_eq!(flow, Flow::Stop);
    assert!(handle.is_running());
    drop(a);
    assert!(!handle.is_running());
}

#[test]
fn send_and_receive_errors_do_not_stop_the_node() {
    let start = origin();
    let mut a = peer("a", 7001, &[7002], start);
    let mut refuse =
        |_: SocketAddr, _: &[u8]| Err(io::Error::from(io::ErrorKind::ConnectionRefused));
    let flow = a.driver.step(start, Input::Timeout, &mut refuse);
    assert!(matches!(flow, Flow::Continue { wake_at: Some(_) }));
    let error = io::Error::from(io::ErrorKind::ConnectionRefused);
    let flow = a.driver.step(start, Input::RecvError(error), &mut refuse);
    assert!(matches!(flow, Flow::Continue { .. }));
    let errors = a.handle.io_errors();
    assert!(errors.send >= 1, "the join request failed to send");
    assert_eq!(errors.recv, 1);
}

/// Reports one bounce and refuses the first send, like a socket with
/// `IP_RECVERR` after an ICMP "port unreachable".
struct Bouncy {
    refuse_next: bool,
    bounced: Option<SocketAddr>,
    sent: usize,
}

impl Transport for Bouncy {
    fn send_to(&mut self, _: SocketAddr, _: &[u8]) -> io::Result<()> {
        if std::mem::take(&mut self.refuse_next) {
            return Err(io::ErrorKind::ConnectionRefused.into());
        }
        self.sent += 1;
        Ok(())
    }

    fn take_bounced(&mut self, out: &mut Vec<SocketAddr>) {
        out.extend(self.bounced.take());
    }
}

#[test]
fn a_refused_send_is_retried_and_the_bounce_reaches_the_node() {
    let start = origin();
    let mut a = peer("a", 7001, &[7002], start);
    let gone: SocketAddr = "127.0.0.1:7999".parse().expect("valid");
    let mut transport = Bouncy {
        refuse_next: true,
        bounced: Some(gone),
        sent: 0,
    };
    let flow = a.driver.step(start, Input::Timeout, &mut transport);
    assert!(matches!(flow, Flow::Continue { .. }));
    assert_eq!(transport.sent, 1, "the join request went out on the retry");
    assert_eq!(a.handle.io_errors().send, 0);
    // 7999 is no member's: the node counts the hint and ignores it.
    assert_eq!(
        a.driver.node().stats().dropped(DropReason::UnknownAddress),
        1
    );
}

#[test]
fn a_process_that_loses_its_name_refuses_commands_and_subscribers_hear_of_the_conflict() {
    let start = origin();
    let mut peers = vec![peer("a", 7001, &[], start), peer("b", 7002, &[7001], start)];
    assert!(pump(&mut peers, start, Duration::from_secs(2)).is_empty());
    let stream = peers[1].handle.subscribe();
    // A second "b": both start at the same wall-clock instant here, so the tie
    // goes to the lower address, 7002.
    let later = start + Duration::from_secs(2);
    peers.push(peer("b", 7009, &[7001], later));
    assert!(pump(&mut peers, later, Duration::from_secs(3)).is_empty());
    let first = SocketAddr::from(([127, 0, 0, 1], 7002));
    let second = SocketAddr::from(([127, 0, 0, 1], 7009));
    let loser = peers[2].handle.clone();
    assert_eq!(loser.name_taken_by(), Some(first));
    assert_eq!(peers[1].handle.name_taken_by(), None);
    let refused = Err(CommandError::NameTaken { by: first });
    let replies = [
        loser.join(&[Seed::Addr(SocketAddr::from(([127, 0, 0, 1], 7001)))]),
        loser.leave(),
        loser.restore(Vec::new()),
    ];
    let later = later + Duration::from_secs(3);
    assert!(pump(&mut peers, later, Duration::from_millis(10)).is_empty());
    for reply in replies {
        assert_eq!(
            block_on(reply),
            refused,
            "a loser never announces Left for the name, nor joins"
        );
    }
    let b = NodeName::new("b").expect("valid name");
    let updates: Vec<Update> = std::iter::from_fn(|| stream.try_recv()).collect();
    assert_eq!(
        updates,
        vec![Update::NameConflict {
            node: b.clone(),
            addrs: [first, second]
        }],
        "the winner reports the conflict once (the observer never saw the loser's row)"
    );
    let row = peers[0]
        .handle
        .cluster_nodes()
        .into_iter()
        .find(|row| row.node == b)
        .expect("b is tracked");
    assert_eq!((row.addr, row.health), (first, Health::Alive));
    // A reader that comes after the loss (an agent's event printer may
    // subscribe a millisecond after a join's reply took the name) is told
    // the conflict and the loss after the state, as the updates that said so.
    let late = loser.events_with_current();
    assert!(pump(&mut peers, later, Duration::from_millis(10)).is_empty());
    let replayed: Vec<Update> = std::iter::from_fn(|| late.try_recv()).collect();
    assert_eq!(
        replayed[replayed.len() - 2..],
        [
            Update::NameConflict {
                node: b.clone(),
                addrs: [first, second]
            },
            Update::NameLost { winner: first }
        ],
        "{replayed:?}"
    );
    assert!(matches!(replayed[replayed.len() - 3], Update::Mode(_)));
    assert_eq!(loser.stop(), Ok(()), "stop still works");
    let stopped = pump(
        &mut peers,
        later + Duration::from_millis(10),
        Duration::from_millis(50),
    );
    assert_eq!(stopped, vec![2]);
}

#[test]
fn host_seeds_are_resolved_again_for_the_seed_re_probe() {
    let start = Instant::now();
    let mut config = Config::for_cluster("driver-test");
    config.join_retry = Duration::from_millis(100);
    config.rejoin_interval = Duration::from_secs(1);
    let options = Options::new(NodeName::new("me").expect("valid name"))
        .config(config)
        .seed_host("localhost:7001");
    // At start the name pointed elsewhere (7009); now it resolves to port 7001.
    let earlier = [SocketAddr::from(([127, 0, 0, 1], 7009))];
    let bound = SocketAddr::from(([127, 0, 0, 1], 7000));
    let (mut driver, _handle) = Driver::new(
        options,
        bound,
        &earlier,
        start,
        DateTime::UNIX_EPOCH,
        Arc::new(Threads),
    )
    .expect("valid");
    let mut sent_to = Vec::new();
    let step =
        |driver: &mut Driver, now: Instant, input: Input<'_>, sent_to: &mut Vec<SocketAddr>| {
            let mut send = |to: SocketAddr, _: &[u8]| {
                sent_to.push(to);
                Ok(())
            };
            driver.step(now, input, &mut send)
        };
    let tick = Duration::from_millis(50);
    let mut now = start;
    // Nobody answers: the join ends, and the resolution comes due.
    while now < start + Duration::from_millis(1050) {
        now += tick;
        let _ = step(&mut driver, now, Input::Timeout, &mut sent_to);
    }
    assert!(sent_to.iter().all(|to| to.port() == 7009), "{sent_to:?}");
    let waited = Instant::now();
    let resolved = loop {
        if let Some(input) = driver.try_next_command() {
            break input;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the name was resolved again"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = step(&mut driver, now, resolved, &mut sent_to);
    while now < start + Duration::from_secs(3) {
        now += tick;
        let _ = step(&mut driver, now, Input::Timeout, &mut sent_to);
    }
    assert!(
        sent_to.contains(&SocketAddr::from(([127, 0, 0, 1], 7001))),
        "the re-probe went to the address the name has now: {sent_to:?}"
    );
}

#[test]
fn only_changes_readers_see_raise_the_version_and_wake_watchers() {
    let start = origin();
    let mut peers = vec![peer("a", 7001, &[], start), peer("b", 7002, &[7001], start)];
    let mut changes = peers[0].handle.watch();
    assert!(pump(&mut peers, start, Duration::from_secs(3)).is_empty());
    // b joined: the table and the mode changed, so the watch returns at once.
    assert!(futures_lite::future::block_on(changes.changed()));
    let quiet = peers[0].driver.snapshot.lock().version;
    let received = peers[0].handle.stats().packets_received;
    // Formed and quiet: probes and acks flow, the table stays as it is.
    assert!(
        pump(
            &mut peers,
            start + Duration::from_secs(3),
            Duration::from_secs(3)
        )
        .is_empty()
    );
    assert!(
        peers[0].handle.stats().packets_received > received,
        "counters published"
    );
    assert_eq!(
        peers[0].driver.snapshot.lock().version,
        quiet,
        "no change a reader sees: no new version"
    );
    let waiting = futures_lite::future::poll_once(changes.changed());
    assert!(
        futures_lite::future::block_on(waiting).is_none(),
        "nothing to report"
    );
    // The task's end is a change too, and ends every later wait at once.
    peers.pop();
    drop(peers);
    assert!(!futures_lite::future::block_on(changes.changed()));
    assert!(!futures_lite::future::block_on(changes.changed()));
}

#[test]
fn receive_steps_every_queued_datagram_until_the_socket_would_block() {
    let start = origin();
    let mut peers = vec![peer("a", 7001, &[], start), peer("b", 7002, &[7001], start)];
    assert!(pump(&mut peers, start, Duration::from_secs(2)).is_empty());
    let from = SocketAddr::from(([127, 0, 0, 1], 7002));
    let mut queued = vec![b"junk".to_vec(); MAX_DATAGRAMS_PER_WAKE + 3];
    queued.reverse();
    let mut buf = vec![0u8; RECV_BUFFER_SIZE];
    let mut recv = |buf: &mut [u8]| match queued.pop() {
        Some(bytes) => {
            buf[..bytes.len()].copy_from_slice(&bytes);
            Ok((bytes.len(), from))
        }
        None => Err(io::Error::from(io::ErrorKind::WouldBlock)),
    };
    let mut send = |_: SocketAddr, _: &[u8]| Ok(());
    let before = peers[0].handle.stats().packets_received;
    let flow = peers[0].driver.receive(&mut buf, &mut recv, &mut send);
    assert!(matches!(flow, Flow::Continue { wake_at: Some(_) }));
    let after = peers[0].handle.stats().packets_received;
    assert_eq!(
        after - before,
        MAX_DATAGRAMS_PER_WAKE as u64,
        "one wakeup reads a bounded batch"
    );
    peers[0].driver.receive(&mut buf, &mut recv, &mut send);
    let last = peers[0].handle.stats().packets_received;
    assert_eq!(last - after, 3, "the rest, then it stops at would-block");
}

#[test]
fn a_reader_with_current_state_hears_each_row_once_then_every_change_in_order() {
    let start = origin();
    let mut peers = vec![peer("a", 7001, &[], start)];
    // Subscribed before the first step: the node's own first write is pending.
    let stream = peers[0].handle.events_with_current();
    let replies: Vec<Reply> = (0..3)
        .map(|i| {
            let tags = Tags::from_pairs([("n", i.to_string())]).expect("valid tags");
            peers[0].handle.set_tags(tags)
        })
        .collect();
    assert!(pump(&mut peers, start, Duration::from_millis(10)).is_empty());
    for reply in replies {
        assert_eq!(block_on(reply), Ok(()));
    }
    let updates: Vec<Update> = std::iter::from_fn(|| stream.try_recv()).collect();
    let Some((Update::Tracker(first), rest)) = updates.split_first() else {
        panic!("the stream starts with the own row: {updates:?}");
    };
    assert_eq!((first.op, first.old_row.as_ref()), (Op::Write, None));
    assert_eq!(rest[0], Update::Mode(Mode::Standalone));
    let writes: Vec<&TrackerEvent> = rest[1..]
        .iter()
        .map(|update| match update {
            Update::Tracker(change) => change,
            other => panic!("only tag writes follow: {other:?}"),
        })
        .collect();
    assert_eq!(writes.len(), 3, "each write once");
    let mut before = first.new_row.clone();
    for (i, write) in writes.into_iter().enumerate() {
        assert_eq!(write.old_row.as_ref(), Some(&before), "the row before");
        assert_eq!(write.new_row.tags.get("n"), Some(i.to_string().as_str()));
        before = write.new_row.clone();
    }
}

#[test]
fn join_results_and_the_end_of_a_leave_reach_the_event_stream() {
    let start = origin();
    let mut peers = vec![peer("a", 7001, &[], start), peer("b", 7002, &[7001], start)];
    let b_events = peers[1].handle.events();
    assert!(pump(&mut peers, start, Duration::from_secs(2)).is_empty());
    drop(peers[1].handle.leave());
    let later = start + Duration::from_secs(2);
    assert!(pump(&mut peers, later, Duration::from_secs(4)).is_empty());
    let kinds: Vec<&str> = std::iter::from_fn(|| b_events.try_recv())
        .map(|update| update.kind())
        .filter(|kind| *kind != "tracker")
        .collect();
    assert_eq!(
        kinds,
        ["node_update", "mode", "joined", "mode", "leave_finished"],
        "in the node's order"
    );
}

#[test]
fn a_user_event_sent_through_one_handle_reaches_the_others_event_stream_once() {
    let start = origin();
    let mut peers = vec![peer("a", 7001, &[], start), peer("b", 7002, &[7001], start)];
    let b_events = peers[1].handle.events();
    assert!(pump(&mut peers, start, Duration::from_secs(2)).is_empty());
    let sent = peers[0].handle.send_event("deploy", b"v2".to_vec());
    let refused = peers[0].handle.send_event("", Vec::new());
    let later = start + Duration::from_secs(2);
    assert!(pump(&mut peers, later, Duration::from_secs(1)).is_empty());
    assert_eq!(block_on(sent), Ok(()));
    assert_eq!(
        block_on(refused),
        Err(CommandError::SendEvent(
            beethoven_core::SendEventError::EmptyName
        ))
    );
    let users: Vec<_> = std::iter::from_fn(|| b_events.try_recv())
        .filter_map(|update| match update {
            Update::User(event) => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].name, "deploy");
    assert_eq!(users[0].payload, b"v2");
    assert_eq!(users[0].id.origin, NodeName::new("a").expect("valid"));
}

#[test]
fn a_query_through_one_handle_is_answered_through_the_others_and_its_stream_ends() {
    use crate::QueryReply;
    use beethoven_core::{Query, QueryError};
    let start = origin();
    let mut peers = vec![peer("a", 7001, &[], start), peer("b", 7002, &[7001], start)];
    let b_events = peers[1].handle.events();
    assert!(pump(&mut peers, start, Duration::from_secs(2)).is_empty());
    let later = start + Duration::from_secs(2);
    let refused = peers[0]
        .handle
        .query(Query::new("load", Vec::new()).timeout(Duration::ZERO));
    let pending = peers[0].handle.query(
        Query::new("load", b"1m".to_vec())
            .timeout(Duration::from_secs(1))
            .request_ack(),
    );
    assert!(pump(&mut peers, later, Duration::from_millis(100)).is_empty());
    assert!(matches!(
        block_on(refused),
        Err(CommandError::Query(QueryError::BadTimeout { .. }))
    ));
    let responses = block_on(pending).expect("a valid query");
    let request = std::iter::from_fn(|| b_events.try_recv())
        .find_map(|update| match update {
            Update::Query(request) => Some(request),
            _ => None,
        })
        .expect("b received the query");
    assert_eq!(request.payload, b"1m");
    let answered = peers[1].handle.respond(request.token, b"0.5".to_vec());
    let again = later + Duration::from_millis(100);
    assert!(pump(&mut peers, again, Duration::from_secs(2)).is_empty());
    assert_eq!(block_on(answered), Ok(()));
    let replies: Vec<QueryReply> = block_on(collect(responses));
    let b = NodeName::new("b").expect("valid");
    assert!(replies.contains(&QueryReply::Ack { from: b.clone() }));
    assert!(replies.contains(&QueryReply::Response {
        from: b,
        payload: b"0.5".to_vec()
    }));
    match replies.last() {
        Some(QueryReply::Done(done)) => {
            assert_eq!((done.expected, done.responded), (2, 1));
            assert!(done.timed_out, "a itself never answered");
        }
        other => panic!("the stream ends with Done, got {other:?}"),
    }
}

/// Every item of a stream that has ended (or ends without waiting).
async fn collect<S: futures_core::Stream + Unpin>(mut stream: S) -> Vec<S::Item> {
    let mut items = Vec::new();
    while let Some(item) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx)).await
    {
        items.push(item);
    }
    items
}
