//! The runtime suite: written once, run against every runtime on real loopback
//! sockets. `beethoven-tokio` includes it from `tests/cluster.rs`, `beethoven-smol`
//! from its own `tests/cluster.rs` (by `#[path]`). The including file provides a
//! module `rt` with `start`, `Handle`, `block_on`, `sleep` and `timeout` for its runtime.
//!
//! Tests wait for conditions (polling, generous deadlines), never for fixed times,
//! except where the claim is that something does *not* happen for a while.

#![allow(unreachable_pub)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use beethoven_core::{DropReason, HEADER_LEN};
use beethoven_driver::prelude::{
    CommandError, Config, Health, Key, KeyRing, Mode, NodeName, NodeStatus, NodeUpdate, Options,
    Seed, TagQuery, Tags, TagsError, TrackerRow, Update, Updates,
};

use crate::rt::{self, Handle};

/// How long any condition may take to become true.
const DEADLINE: Duration = Duration::from_secs(20);

fn name(s: &str) -> NodeName {
    NodeName::new(s).expect("valid node name")
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Default protocol timings (what users get), but faster join retries so that the
/// suite does not wait on backoff.
fn config(cluster: &str) -> Config {
    let mut config = Config::for_cluster(cluster);
    config.join_retry = Duration::from_millis(300);
    config.leave_timeout = Duration::from_secs(1);
    config
}

fn options(cluster: &str, node: &str) -> Options {
    Options::new(name(node))
        .config(config(cluster))
        .bind(loopback(0))
}

async fn start(options: Options) -> Handle {
    rt::start(options).await.expect("the node starts")
}

/// Starts `node`, joining through `seed` when given.
async fn node(cluster: &str, node: &str, seed: Option<&Handle>) -> Handle {
    let mut options = options(cluster, node);
    if let Some(seed) = seed {
        options = options.seed(seed.advertised_addr());
    }
    start(options).await
}

/// Polls `condition` until it holds; panics after [`DEADLINE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting until {what}"
        );
        rt::sleep(Duration::from_millis(20)).await;
    }
}

fn row(handle: &Handle, node: &str) -> Option<TrackerRow> {
    handle
        .cluster_nodes()
        .into_iter()
        .find(|row| row.node.as_str() == node)
}

fn status(handle: &Handle, node: &str) -> Option<NodeStatus> {
    row(handle, node).map(|row| row.status)
}

fn all_online(nodes: &[&Handle], count: usize) -> bool {
    nodes
        .iter()
        .all(|handle| handle.active_nodes().len() == count && handle.cluster_nodes().len() == count)
}

/// `n` nodes named `n0..`, all joined through `n0`, each seeing all online.
async fn cluster(cluster: &str, n: usize) -> Vec<Handle> {
    let first = node(cluster, "n0", None).await;
    let mut nodes = vec![first.clone()];
    for i in 1..n {
        nodes.push(node(cluster, &format!("n{i}"), Some(&first)).await);
    }
    let all: Vec<&Handle> = nodes.iter().collect();
    eventually("every node sees every node online", || all_online(&all, n)).await;
    nodes
}

/// A callback subscriber that records what it is told.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(NodeName, NodeStatus)>>>);

impl Recorder {
    fn attach(&self, handle: &Handle) {
        let log = Arc::clone(&self.0);
        handle
            .alert_me(move |node: &NodeName, status: NodeStatus| {
                log.lock()
                    .expect("the recorder is never poisoned")
                    .push((node.clone(), status));
            })
            .expect("the node runs");
    }

    fn log(&self) -> Vec<(NodeName, NodeStatus)> {
        self.0
            .lock()
            .expect("the recorder is never poisoned")
            .clone()
    }

    fn count(&self, node: &str, status: NodeStatus) -> usize {
        self.log()
            .iter()
            .filter(|(n, s)| n.as_str() == node && *s == status)
            .count()
    }

    fn about(&self, node: &str) -> Vec<NodeStatus> {
        let log = self.log();
        let about = log.iter().filter(|(n, _)| n.as_str() == node);
        about.map(|(_, s)| *s).collect()
    }
}

/// Starts a node seeded with `raw`'s address and returns the first datagram it
/// sends there (a join request); the node is shut down again.
async fn capture(raw: &UdpSocket, options: Options) -> Vec<u8> {
    raw.set_nonblocking(true)
        .expect("a non-blocking raw socket");
    let seed = raw.local_addr().expect("bound");
    let sender = start(options.seed(seed)).await;
    let mut buf = [0u8; 2048];
    let started = Instant::now();
    let datagram = loop {
        match raw.recv_from(&mut buf) {
            Ok((len, _)) => break buf[..len].to_vec(),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(started.elapsed() < DEADLINE, "no join request came");
                rt::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => panic!("raw receive failed: {error}"),
        }
    };
    sender.shutdown().await;
    datagram
}

fn port_is_free(addr: SocketAddr) -> bool {
    UdpSocket::bind(addr).is_ok()
}

// ----- membership -----

#[test]
fn nodes_join_and_every_node_sees_every_other_online() {
    rt::block_on(async {
        let nodes = cluster("join-5", 5).await;
        for handle in &nodes {
            assert_eq!(handle.mode(), Mode::Clustered);
            for other in &nodes {
                let row = row(handle, other.name().as_str()).expect("tracked");
                assert_eq!(
                    row.addr,
                    other.advertised_addr(),
                    "rows carry the real port"
                );
                assert_eq!(row.status, NodeStatus::Online);
            }
        }
        assert!(nodes[0].stats().packets_received > 0);
    });
}

#[test]
fn subscribers_hear_each_transition_once_and_never_about_themselves() {
    rt::block_on(async {
        let (a, b, c) = ("one-a", "one-b", "one-c");
        let first = node("once", a, None).await;
        let recorders = [
            Recorder::default(),
            Recorder::default(),
            Recorder::default(),
        ];
        recorders[0].attach(&first);
        let mut stream = first.subscribe();
        // Each subscribes before it joins: a node met before a subscription exists
        // is only in the table (a start with seeds joins at once, and under load
        // the join could finish before the subscription was made).
        let seed = [Seed::Addr(first.advertised_addr())];
        let second = node("once", b, None).await;
        recorders[1].attach(&second);
        second.join(&seed).await.expect("second runs");
        let third = node("once", c, None).await;
        recorders[2].attach(&third);
        third.join(&seed).await.expect("third runs");
        let all = [&first, &second, &third];
        eventually("all three see each other", || all_online(&all, 3)).await;

        third.shutdown().await; // a crash: no leave
        eventually("the survivors see the crashed node offline", || {
            recorders[..2]
                .iter()
                .all(|r| r.count(c, NodeStatus::Offline) == 1)
        })
        .await;

        assert_eq!(
            recorders[0].about(c),
            vec![NodeStatus::Online, NodeStatus::Offline]
        );
        assert_eq!(recorders[0].about(b), vec![NodeStatus::Online]);
        assert_eq!(recorders[1].about(a), vec![NodeStatus::Online]);
        assert_eq!(
            recorders[1].about(c),
            vec![NodeStatus::Online, NodeStatus::Offline]
        );
        for (recorder, me) in recorders.iter().zip([a, b, c]) {
            assert!(recorder.about(me).is_empty(), "{me} was told about itself");
        }
        // The stream saw the same, in the same order.
        let mut streamed = Vec::new();
        while streamed.len() < 3 {
            let next = rt::timeout(DEADLINE, stream.recv()).await;
            match next.expect("an update in time").expect("the node runs") {
                Update::Node { node, status } => streamed.push((node, status)),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(streamed, recorders[0].log());
    });
}

/// Counts what it is told.
#[derive(Clone, Default)]
struct Counter(Arc<AtomicUsize>);

impl NodeUpdate for Counter {
    fn node_update(&self, _: &NodeName, _: NodeStatus) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counter {
    fn told(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[test]
fn every_alert_me_is_a_subscription_of_its_own_even_with_the_same_callback() {
    rt::block_on(async {
        let a = node("twice", "a", None).await;
        let counter = Counter::default();
        let first = a.alert_me(counter.clone()).expect("a runs");
        let second = a.alert_me(counter.clone()).expect("a runs");
        assert_ne!(first, second, "two subscriptions, never one dropped");
        let b = node("twice", "b", Some(&a)).await;
        eventually("a and b see each other", || all_online(&[&a, &b], 2)).await;
        eventually("both subscriptions heard of b", || counter.told() >= 2).await;
        rt::sleep(Duration::from_millis(200)).await;
        assert_eq!(counter.told(), 2, "b came online once, told to each once");
        a.unsubscribe(first).await.expect("a runs");
        b.shutdown().await;
        eventually("the remaining subscription heard b go offline", || {
            counter.told() == 3
        })
        .await;
        rt::sleep(Duration::from_millis(200)).await;
        assert_eq!(counter.told(), 3, "the ended one heard nothing more");
    });
}

#[test]
fn a_reader_sees_every_one_of_a_thousand_fast_changes_in_order_with_old_and_new_rows() {
    rt::block_on(async {
        // Room for every update: the claim is that none is merged or lost on
        // the way, not how a slow reader lags (see the lag test).
        let a = start(options("thousand", "a").queue_capacity(8192)).await;
        let mut events = a.events_with_current();
        // As fast as the handle takes them: no reply is awaited before the next.
        let mut replies = Vec::new();
        for i in 0..500 {
            let n = i.to_string();
            replies.push(a.set_tags(tags(&[("n", n.as_str())])));
            let port = 20_000 + i;
            replies.push(a.new_node(
                name(&format!("m{i}")),
                SocketAddr::from(([127, 0, 0, 2], port)),
            ));
        }
        for reply in replies {
            reply.await.expect("each change is applied");
        }
        // Writes of the own row and first writes of the added nodes, in order.
        let mut own: Option<TrackerRow> = None;
        let mut changes = 0;
        while changes < 1000 {
            let update = rt::timeout(DEADLINE, events.recv())
                .await
                .expect("the next update in time")
                .expect("the node runs");
            let Update::Tracker(change) = update else {
                assert!(!matches!(update, Update::Lagged { .. }), "nothing is lost");
                continue;
            };
            if change.new_row.node == *a.name() {
                if let Some(before) = &own {
                    let i = changes / 2;
                    assert_eq!(changes % 2, 0, "set_tags {i} comes before new_node {i}");
                    assert_eq!(change.old_row.as_ref(), Some(before), "the row before");
                    assert_eq!(change.new_row.tags, tags(&[("n", &i.to_string())]));
                    changes += 1;
                } else {
                    assert_eq!(change.old_row, None, "the replay comes first");
                }
                own = Some(change.new_row);
            } else if change.old_row.is_none() {
                let i = changes / 2;
                assert_eq!(changes % 2, 1, "new_node {i} comes after set_tags {i}");
                assert_eq!(change.new_row.node, name(&format!("m{i}")));
                assert_eq!(change.new_row.health, Health::Alive);
                changes += 1;
            }
        }
        a.shutdown().await;
    });
}

#[test]
fn mode_follows_the_cluster_through_join_leave_and_rejoin() {
    rt::block_on(async {
        let a = node("mode", "a", None).await;
        assert_eq!(a.mode(), Mode::Standalone);
        let b = node("mode", "b", Some(&a)).await;
        eventually("both are clustered", || {
            a.mode() == Mode::Clustered && b.mode() == Mode::Clustered
        })
        .await;
        b.leave().await.expect("b runs");
        assert_eq!(
            b.leave().await,
            Err(CommandError::Leave(beethoven_core::LeaveError::AlreadyLeft))
        );
        eventually("a is standalone again", || a.mode() == Mode::Standalone).await;
        b.join(&[Seed::Addr(a.advertised_addr())])
            .await
            .expect("b runs");
        eventually("both are clustered again", || {
            a.mode() == Mode::Clustered && status(&a, "b") == Some(NodeStatus::Online)
        })
        .await;
    });
}

#[test]
fn new_node_introduces_two_standalone_nodes() {
    rt::block_on(async {
        let a = node("new-node", "a", None).await;
        let b = node("new-node", "b", None).await;
        assert_eq!(
            a.new_node(name("a"), b.advertised_addr()).await,
            Err(CommandError::NewNode(beethoven_core::NewNodeError::IsSelf))
        );
        a.new_node(name("b"), b.advertised_addr())
            .await
            .expect("a runs");
        eventually("each sees the other", || all_online(&[&a, &b], 2)).await;
    });
}

// ----- failures, leave, restart -----

#[test]
fn crashed_node_goes_offline_on_every_survivor() {
    rt::block_on(async {
        let mut nodes = cluster("crash", 4).await;
        let victim = nodes.pop().expect("four nodes");
        let addr = victim.local_addr();
        victim.shutdown().await;
        assert!(port_is_free(addr), "shutdown closed the socket");
        eventually("every survivor sees n3 dead", || {
            nodes.iter().all(|h| {
                row(h, "n3")
                    .is_some_and(|r| r.status == NodeStatus::Offline && r.health == Health::Dead)
            })
        })
        .await;
        for handle in &nodes {
            assert_eq!(handle.active_nodes().len(), 3);
            assert_eq!(handle.mode(), Mode::Clustered);
        }
    });
}

#[test]
fn a_subscription_with_the_current_state_hears_what_came_before_it_then_every_change() {
    rt::block_on(async {
        let first = node("current", "n0", None).await;
        let db = start(
            options("current", "db1")
                .tags(tags(&[("role", "db")]))
                .seed(first.advertised_addr()),
        )
        .await;
        let plain = node("current", "n2", Some(&first)).await;
        let all = [&first, &db, &plain];
        eventually("the cluster forms", || all_online(&all, 3)).await;
        eventually("n0 holds db1's tags", || {
            row(&first, "db1").is_some_and(|r| !r.tags.is_empty())
        })
        .await;
        // Everything above happened before these subscriptions.
        let mut nodes = first.subscribe_with_current();
        let mut tag_changes = first.subscribe_tags_with_current();
        let online = |node: &str| Update::Node {
            node: name(node),
            status: NodeStatus::Online,
        };
        assert_eq!(next(&mut nodes).await, online("db1"));
        assert_eq!(next(&mut nodes).await, online("n2"));
        assert_eq!(
            next(&mut tag_changes).await,
            Update::Tags {
                node: name("db1"),
                tags: tags(&[("role", "db")]),
            }
        );
        // Then the changes, in the same streams.
        plain.shutdown().await;
        assert_eq!(
            next(&mut nodes).await,
            Update::Node {
                node: name("n2"),
                status: NodeStatus::Offline,
            }
        );
        db.set_tags(tags(&[("role", "replica")]))
            .await
            .expect("valid tags");
        assert_eq!(
            next(&mut tag_changes).await,
            Update::Tags {
                node: name("db1"),
                tags: tags(&[("role", "replica")]),
            }
        );
    });
}

#[test]
fn leaving_node_is_offline_everywhere_at_once() {
    rt::block_on(async {
        let mut nodes = cluster("leave", 3).await;
        let leaver = nodes.pop().expect("three nodes");
        let addr = leaver.local_addr();
        let asked = Instant::now();
        leaver.leave().await.expect("the node runs");
        eventually("the others see n2 left", || {
            nodes
                .iter()
                .all(|h| row(h, "n2").is_some_and(|r| r.health == Health::Left))
        })
        .await;
        let took = asked.elapsed();
        // A crash takes the suspicion timeout (seconds); a leave is one gossip hop.
        assert!(took < Duration::from_secs(2), "leave took {took:?}");
        leaver.shutdown().await;
        assert!(port_is_free(addr));
    });
}

#[test]
fn shutdown_after_leave_does_not_wait_out_leave_timeout() {
    rt::block_on(async {
        let slow_deadline = |node: &str| {
            let mut options = options("leave-soon", node);
            let mut config = config("leave-soon");
            config.leave_timeout = Duration::from_secs(600);
            options = options.config(config);
            options
        };
        let alone = start(slow_deadline("alone")).await;
        alone.leave().await.expect("the node runs");
        rt::timeout(DEADLINE, alone.shutdown())
            .await
            .expect("a standalone leave has nobody to tell: the shutdown ends at once");
        let first = start(slow_deadline("n0")).await;
        let second = start(slow_deadline("n1").seed(first.advertised_addr())).await;
        eventually("the two see each other", || {
            all_online(&[&first, &second], 2)
        })
        .await;
        second.leave().await.expect("the node runs");
        rt::timeout(DEADLINE, second.shutdown())
            .await
            .expect("the shutdown ends once the leave has spread");
        // n1 is gone, so only news it sent before its shutdown ended can make n0
        // hold it `Left` (a crash would be `Dead`). n0 acks the leave's ping
        // before it publishes its table: wait for the publication, not the ack.
        eventually("the news reached the other node", || {
            row(&first, "n1").is_some_and(|r| r.health == Health::Left)
        })
        .await;
    });
}

#[test]
fn keys_rotate_on_a_running_cluster_without_anyone_going_offline() {
    let old = Key::new([1; 32]);
    let new = Key::new([2; 32]);
    rt::block_on(async {
        let keyed = |node: &str, ring: KeyRing| {
            let mut config = config("rotate");
            config.keys = Some(ring);
            options("rotate", node).config(config)
        };
        let first = start(keyed("n0", KeyRing::new(old.clone()))).await;
        let mut nodes = vec![first.clone()];
        for i in 1..3 {
            let options = keyed(&format!("n{i}"), KeyRing::new(old.clone()));
            nodes.push(start(options.seed(first.advertised_addr())).await);
        }
        let all: Vec<&Handle> = nodes.iter().collect();
        eventually("every node sees every node online", || all_online(&all, 3)).await;
        // The three steps, each on every node before the next.
        let steps = [
            KeyRing::new(old.clone()).accepting(new.clone()),
            KeyRing::new(new.clone()).accepting(old.clone()),
            KeyRing::new(new.clone()),
        ];
        for ring in steps {
            for node in &nodes {
                node.set_key_ring(Some(ring.clone()))
                    .await
                    .expect("the node runs");
            }
            // A few probe rounds under each ring.
            rt::sleep(Duration::from_millis(600)).await;
            assert!(all_online(&all, 3), "nobody went offline");
        }
        for node in &nodes {
            assert_eq!(node.stats().dropped(DropReason::Authentication), 0);
        }
        // Only the new key opens the cluster now.
        let late =
            start(keyed("late", KeyRing::new(new.clone())).seed(first.advertised_addr())).await;
        let mut with_late = all.clone();
        with_late.push(&late);
        eventually("a node holding only the new key joins", || {
            all_online(&with_late, 4)
        })
        .await;
        let stale =
            start(keyed("stale", KeyRing::new(old.clone())).seed(first.advertised_addr())).await;
        eventually("the old key is refused", || {
            first.stats().dropped(DropReason::Authentication) > 0
        })
        .await;
        assert_eq!(status(&first, "stale"), None, "never let in");
        stale.shutdown().await;
    });
}

#[test]
fn restarted_node_comes_back_online_under_its_name_on_a_new_port() {
    rt::block_on(async {
        let nodes = cluster("restart", 3).await;
        let recorder = Recorder::default();
        recorder.attach(&nodes[0]);
        let old_addr = nodes[2].advertised_addr();
        nodes[2].clone().shutdown().await;
        eventually("n2 is offline on n0 and n1", || {
            nodes[..2]
                .iter()
                .all(|h| status(h, "n2") == Some(NodeStatus::Offline))
        })
        .await;
        let again = node("restart", "n2", Some(&nodes[0])).await;
        assert_ne!(again.advertised_addr(), old_addr);
        eventually("n2 is online again at its new address everywhere", || {
            nodes[..2].iter().all(|h| {
                row(h, "n2").is_some_and(|r| {
                    r.status == NodeStatus::Online && r.addr == again.advertised_addr()
                })
            }) && again.active_nodes().len() == 3
        })
        .await;
        // The table is published before the updates are handed to subscribers, and
        // a callback runs on a thread of its own: under load it hears the return a
        // little after the table shows it.
        eventually("n0's callback heard n2 come back", || {
            recorder.count("n2", NodeStatus::Online) >= 1
        })
        .await;
        assert_eq!(
            recorder.about("n2"),
            vec![NodeStatus::Offline, NodeStatus::Online]
        );
    });
}

#[test]
fn a_restarted_node_restores_its_saved_table_and_needs_no_seed() {
    rt::block_on(async {
        let nodes = cluster("warm", 3).await;
        let saved = serde_json::to_string(&nodes[2].cluster_nodes()).expect("rows serialize");
        let incarnation = row(&nodes[2], "n2").map(|r| r.incarnation);
        nodes[2].clone().shutdown().await;
        // No seed: everything it knows comes from the saved table.
        let again = node("warm", "n2", None).await;
        let rows: Vec<TrackerRow> = serde_json::from_str(&saved).expect("rows load");
        again.restore(rows).await.expect("n2 runs");
        eventually("n2 sees n0 and n1 online at once", || {
            again.active_nodes().len() == 3
        })
        .await;
        eventually("n0 and n1 see n2 online at its new address", || {
            nodes[..2].iter().all(|h| {
                row(h, "n2").is_some_and(|r| {
                    r.status == NodeStatus::Online && r.addr == again.advertised_addr()
                })
            })
        })
        .await;
        assert!(
            row(&again, "n2").map(|r| r.incarnation) > incarnation,
            "the saved life's row is outbid"
        );
        assert_eq!(again.mode(), Mode::Clustered);
    });
}

// ----- hostile input -----

#[test]
fn garbage_truncated_and_wrong_cluster_datagrams_are_dropped_and_counted() {
    rt::block_on(async {
        let nodes = cluster("garbage", 2).await;
        let target = &nodes[0];
        let rows_before = target.cluster_nodes();
        let received_before = target.stats().packets_received;
        // Genuine datagrams, captured from join requests of a node of this cluster and
        // of one of another cluster, so the suite does not restate the wire format.
        let raw = UdpSocket::bind(loopback(0)).expect("a raw socket");
        let genuine = capture(&raw, options("garbage", "probe")).await;
        let foreign = capture(&raw, options("another-cluster", "stranger")).await;
        let to = target.advertised_addr();
        let cut = &genuine[..HEADER_LEN + 3];
        let datagrams: [(&[u8], DropReason); 5] = [
            (&genuine[..2], DropReason::Truncated),
            (&[0xde; 64], DropReason::BadMagic),
            (&foreign, DropReason::WrongCluster),
            (cut, DropReason::Malformed),
            (&[0u8; 3000], DropReason::Oversized),
        ];
        for (bytes, _) in &datagrams {
            raw.send_to(bytes, to).expect("loopback send");
        }
        eventually("every bad datagram is counted by its reason", || {
            let stats = target.stats();
            datagrams
                .iter()
                .all(|(_, reason)| stats.dropped(*reason) >= 1)
        })
        .await;
        let stats = target.stats();
        assert!(stats.packets_received >= received_before + datagrams.len() as u64);
        assert_eq!(target.cluster_nodes(), rows_before, "no state change");
        assert_eq!(target.mode(), Mode::Clustered);
        assert_eq!(status(&nodes[1], "n0"), Some(NodeStatus::Online));
    });
}

// ----- subscribers never block the node -----

#[test]
fn slow_and_panicking_callbacks_do_not_stall_probing() {
    rt::block_on(async {
        let first = node("slow", "n0", None).await;
        let sleeping = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&sleeping);
        first
            .alert_me(move |_: &NodeName, _: NodeStatus| {
                flag.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(5));
            })
            .expect("n0 runs");
        let panics = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&panics);
        first
            .alert_me(move |node: &NodeName, _: NodeStatus| {
                count.fetch_add(1, Ordering::SeqCst);
                panic!("deliberate panic in a callback about {node}");
            })
            .expect("n0 runs");
        let prompt = Recorder::default();
        prompt.attach(&first);
        let nodes = [
            first.clone(),
            node("slow", "n1", Some(&first)).await,
            node("slow", "n2", Some(&first)).await,
        ];
        let recorders: Vec<Recorder> = nodes
            .iter()
            .map(|h| {
                let r = Recorder::default();
                r.attach(h);
                r
            })
            .collect();
        let all: Vec<&Handle> = nodes.iter().collect();
        eventually("the cluster forms", || all_online(&all, 3)).await;
        eventually("the prompt subscriber heard both joins", || {
            prompt.log().len() == 2
        })
        .await;
        eventually("the slow callback is asleep", || {
            sleeping.load(Ordering::SeqCst)
        })
        .await;
        // The slow callback holds its thread for 10 s in all; for longer than the
        // failure detector needs, nobody may be declared offline.
        let watch = Instant::now();
        while watch.elapsed() < Duration::from_secs(6) {
            assert!(all_online(&all, 3), "a node went offline");
            rt::sleep(Duration::from_millis(50)).await;
        }
        // On n0 the `Recorder` callback type was subscribed by `prompt` already:
        // that one subscription is what hears n0's updates.
        for recorder in recorders.iter().chain([&prompt]) {
            assert!(
                recorder.log().iter().all(|(_, s)| *s == NodeStatus::Online),
                "an offline notification: {:?}",
                recorder.log()
            );
        }
        eventually("the panicking callback saw every update", || {
            panics.load(Ordering::SeqCst) == 2
        })
        .await;
    });
}

#[test]
fn unread_stream_reports_lag_instead_of_growing() {
    rt::block_on(async {
        let capacity = 2;
        let first = start(options("lag", "n0").queue_capacity(capacity)).await;
        let mut unread = first.subscribe();
        let mut nodes = vec![first.clone()];
        for i in 1..6 {
            nodes.push(node("lag", &format!("n{i}"), Some(&first)).await);
        }
        let all: Vec<&Handle> = nodes.iter().collect();
        eventually("the cluster forms", || all_online(&all, 6)).await;
        eventually("n0 counted the updates it could not queue", || {
            first.lagged_updates() >= 3
        })
        .await;
        let mut items = Vec::new();
        while !matches!(items.last(), Some(Update::Lagged { .. })) {
            let next = rt::timeout(DEADLINE, unread.recv()).await;
            items.push(next.expect("an update in time").expect("n0 runs"));
        }
        assert_eq!(
            items.len(),
            capacity + 1,
            "the queue held {capacity}: {items:?}"
        );
        let Some(Update::Lagged { missed }) = items.last() else {
            unreachable!("the loop ends on a lag marker")
        };
        assert!(*missed >= 3, "five joins, two queued: {items:?}");
        assert!(all_online(&all, 6), "the unread stream stalled nothing");
    });
}

// ----- tags -----

fn tags(pairs: &[(&str, &str)]) -> Tags {
    Tags::from_pairs(pairs.iter().copied()).expect("valid tags")
}

/// The next update of a stream, within [`DEADLINE`].
async fn next(updates: &mut Updates) -> Update {
    rt::timeout(DEADLINE, updates.recv())
        .await
        .expect("an update in time")
        .expect("the node runs")
}

fn names(rows: &[TrackerRow]) -> Vec<&str> {
    rows.iter().map(|row| row.node.as_str()).collect()
}

#[test]
fn services_find_each_other_by_tag_and_hear_tag_changes() {
    rt::block_on(async {
        let first = node("tags", "n0", None).await;
        let mut changes = first.subscribe_tags();
        let recorder = Recorder::default();
        recorder.attach(&first);
        let db = start(
            options("tags", "db1")
                .tags(tags(&[("grpc", "7000"), ("role", "db")]))
                .seed(first.advertised_addr()),
        )
        .await;
        let web = node("tags", "web1", Some(&first)).await;
        let all = [&first, &db, &web];
        eventually("the cluster forms", || all_online(&all, 3)).await;
        let role_db = TagQuery::key_value("role", "db");
        eventually("every node finds the db by its tag", || {
            all.iter()
                .all(|h| names(&h.members_with_tag(&role_db)) == ["db1"])
        })
        .await;
        let found = first.members_with_tag(&role_db);
        assert_eq!(found[0].addr, db.advertised_addr());
        assert_eq!(found[0].tags.get("grpc"), Some("7000"));
        let heard = rt::timeout(DEADLINE, changes.recv()).await;
        assert_eq!(
            heard.expect("in time").expect("n0 runs"),
            Update::Tags {
                node: name("db1"),
                tags: tags(&[("grpc", "7000"), ("role", "db")]),
            }
        );
        eventually("n0's callback heard web1 come online", || {
            recorder.count("web1", NodeStatus::Online) == 1
        })
        .await;
        // A change at runtime spreads; the tag stream hears it.
        web.set_tags(tags(&[("role", "db")]))
            .await
            .expect("within the limits");
        eventually("every node sees the new tags", || {
            all.iter()
                .all(|h| names(&h.members_with_tag(&role_db)) == ["db1", "web1"])
        })
        .await;
        let heard = rt::timeout(DEADLINE, changes.recv()).await;
        assert!(
            matches!(heard, Some(Some(Update::Tags { ref node, .. })) if node.as_str() == "web1"),
            "{heard:?}"
        );
        assert_eq!(web.tags(), tags(&[("role", "db")]));
        assert_eq!(
            recorder.about("web1"),
            [NodeStatus::Online],
            "a tag change is no node update"
        );
        // Over the limit: refused by the handle, nothing changes.
        let huge = Tags::from_pairs([("k", "x".repeat(2000))]).expect("valid tags");
        assert!(matches!(
            web.set_tags(huge).await,
            Err(CommandError::Tags(TagsError::TooLarge { limit: 1024, .. }))
        ));
        // Offline members are found only when asked for.
        db.shutdown().await;
        eventually("the db is offline on n0", || {
            status(&first, "db1") == Some(NodeStatus::Offline)
        })
        .await;
        assert_eq!(names(&first.members_with_tag(&role_db)), ["web1"]);
        assert_eq!(
            names(&first.members_with_tag(&role_db.clone().including_offline())),
            ["db1", "web1"]
        );
    });
}

// ----- addresses and discovery -----

#[test]
fn port_zero_is_reported_and_a_wildcard_bind_advertises_loopback() {
    rt::block_on(async {
        let wildcard = options("wildcard", "a").bind("0.0.0.0:0".parse().expect("valid"));
        let a = start(wildcard).await;
        let bound = a.local_addr();
        assert!(bound.ip().is_unspecified());
        assert_ne!(bound.port(), 0, "the real port is reported");
        assert_eq!(a.advertised_addr(), loopback(bound.port()));
        let b = node("wildcard", "b", Some(&a)).await;
        eventually("b joins through the advertised address", || {
            all_online(&[&a, &b], 2)
        })
        .await;
    });
}

#[test]
fn seeds_by_host_name_and_by_cidr_range_find_the_cluster() {
    rt::block_on(async {
        let a = node("discovery", "a", None).await;
        let port = a.advertised_addr().port();
        // `localhost` may also resolve to ::1, which this IPv4 socket cannot reach:
        // that send fails, and the node goes on.
        let by_name = options("discovery", "b").seed_host(format!("localhost:{port}"));
        let b = start(by_name).await;
        let range: Seed = format!("127.0.0.0/29:{port}").parse().expect("valid range");
        let c = start(options("discovery", "c").seed(range)).await;
        eventually("all three are clustered", || all_online(&[&a, &b, &c], 3)).await;
    });
}

#[test]
fn a_node_that_found_nobody_merges_when_its_seed_appears() {
    rt::block_on(async {
        let reserved = UdpSocket::bind(loopback(0)).expect("a free port");
        let seed_addr = reserved.local_addr().expect("bound");
        drop(reserved);
        let mut patient = config("merge");
        patient.join_attempts = 1;
        patient.join_retry = Duration::from_millis(100);
        patient.rejoin_interval = Duration::from_millis(500);
        let lonely = start(options("merge", "lonely").config(patient).seed(seed_addr)).await;
        // Nobody answers: after its single attempt the node runs standalone.
        rt::sleep(Duration::from_millis(300)).await;
        assert_eq!(lonely.mode(), Mode::Standalone);
        let seed = start(options("merge", "seed").bind(seed_addr)).await;
        eventually("the slow re-probe merges them", || {
            all_online(&[&lonely, &seed], 2)
        })
        .await;
    });
}

// ----- stopping -----

#[test]
fn shutdown_closes_the_socket_and_later_commands_report_closed() {
    rt::block_on(async {
        let a = node("shutdown", "a", None).await;
        let other = a.clone();
        let addr = a.local_addr();
        assert!(!port_is_free(addr));
        a.shutdown().await;
        assert!(
            port_is_free(addr),
            "shutdown returns after the socket closed"
        );
        assert!(!other.is_running());
        assert_eq!(other.leave().await, Err(CommandError::Closed));
        assert_eq!(
            other.join(&[Seed::Addr(loopback(9))]).await,
            Err(CommandError::Closed)
        );
        let mut updates = other.subscribe();
        let ended = rt::timeout(DEADLINE, updates.recv()).await;
        assert_eq!(ended, Some(None), "a stream of a stopped node ends at once");
        other.shutdown().await; // twice is harmless
    });
}

#[test]
fn dropping_the_last_handle_stops_the_node_and_frees_its_port() {
    rt::block_on(async {
        let a = node("drop", "a", None).await;
        let addr = a.local_addr();
        let clone = a.clone();
        drop(a);
        rt::sleep(Duration::from_millis(100)).await;
        assert!(clone.is_running(), "a clone keeps the node alive");
        assert!(!port_is_free(addr));
        drop(clone);
        eventually("the socket is closed", || port_is_free(addr)).await;
    });
}

// ----- queries -----

#[test]
fn a_query_to_a_tag_is_answered_by_its_members_only_and_its_stream_ends() {
    use beethoven_driver::prelude::{Query, QueryReply};
    rt::block_on(async {
        let first = node("queries", "n0", None).await;
        let db = start(
            options("queries", "db1")
                .tags(tags(&[("role", "db")]))
                .seed(first.advertised_addr()),
        )
        .await;
        let web = node("queries", "web1", Some(&first)).await;
        let all = [&first, &db, &web];
        eventually("the cluster forms", || all_online(&all, 3)).await;
        let role_db = TagQuery::key_value("role", "db");
        eventually("n0 knows the db's tags", || {
            names(&first.members_with_tag(&role_db)) == ["db1"]
        })
        .await;
        let mut db_events = db.events();
        let mut web_events = web.events();
        let refused = first.query(Query::new("", Vec::new())).await;
        assert!(
            matches!(refused, Err(CommandError::Query(_))),
            "{refused:?}"
        );
        let query = Query::new("load", b"1m".to_vec())
            .tag(role_db)
            .timeout(Duration::from_secs(5));
        let responses = first.query(query).await.expect("a valid query");
        let request = loop {
            if let Update::Query(request) = next(&mut db_events).await {
                break request;
            }
        };
        assert_eq!(request.payload, b"1m");
        db.respond(request.token, b"0.42".to_vec())
            .await
            .expect("a fresh token");
        let replies = rt::timeout(DEADLINE, responses.collect())
            .await
            .expect("the query ends in time");
        assert_eq!(
            replies[0],
            QueryReply::Response {
                from: name("db1"),
                payload: b"0.42".to_vec()
            }
        );
        match replies.last() {
            Some(QueryReply::Done(done)) => {
                assert_eq!((done.expected, done.responded), (1, 1));
                assert!(!done.timed_out, "ended once the one db answered");
            }
            other => panic!("the stream ends with its end, got {other:?}"),
        }
        let web_heard = rt::timeout(Duration::from_millis(300), async {
            loop {
                if let Update::Query(_) = next(&mut web_events).await {
                    break;
                }
            }
        })
        .await;
        assert!(web_heard.is_none(), "web1 is outside the filter");
    });
}
