//! Five nodes in one process, exchanging datagrams through an in-memory queue
//! (no sockets, no async), to show the sans-IO loop: one node crashes and the
//! others take it offline. Run: `cargo run -p beethoven-core --example in_memory`.

#![allow(clippy::print_stdout)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use beethoven_core::{Config, Event, Node, NodeName, Seed, SubscriberId};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The example's clocks: virtual time starts here, anchored to the wall clock.
    #[allow(clippy::disallowed_methods)]
    let (start, wall) = (Instant::now(), std::time::SystemTime::now().into());
    let mut now = start;
    let addr = |i: usize| SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16));
    let mut nodes: Vec<Option<Node>> = Vec::new();
    for i in 0..5 {
        let name = NodeName::new(&format!("node-{i}"))?;
        let config = Config::for_cluster("example").with_rng_seed(i as u64);
        let mut node = Node::new(config, name, addr(i), now, wall)?;
        node.alert_me(SubscriberId(1));
        if i > 0 {
            node.join(now, &[Seed::Addr(addr(0))])?;
        }
        nodes.push(Some(node));
    }
    let mut wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)> = VecDeque::new();
    let step = Duration::from_millis(10);
    while now - start < Duration::from_secs(12) {
        if now - start >= Duration::from_secs(4) && nodes[3].is_some() {
            println!("{:>6.2}s  node-3 crashes", (now - start).as_secs_f64());
            nodes[3] = None;
        }
        // deliver what was sent during the last step, then run due timers
        for (from, to, bytes) in std::mem::take(&mut wire) {
            if let Some(node) = nodes
                .get_mut(usize::from(to.port() - 7000))
                .and_then(Option::as_mut)
            {
                node.handle_packet(now, from, &bytes);
            }
        }
        for (i, slot) in nodes.iter_mut().enumerate() {
            let Some(node) = slot else { continue };
            if node.poll_timeout().is_some_and(|at| at <= now) {
                node.handle_timeout(now);
            }
            while let Some(t) = node.poll_transmit() {
                wire.push_back((addr(i), t.to, t.payload.to_vec()));
            }
            while let Some(event) = node.poll_event() {
                match event {
                    Event::NodeUpdate {
                        node: other,
                        status,
                        ..
                    } => {
                        println!(
                            "{:>6.2}s  node-{i} hears: {other} is {status:?}",
                            (now - start).as_secs_f64()
                        );
                    }
                    Event::ModeChanged(mode) => {
                        println!(
                            "{:>6.2}s  node-{i} is now {mode:?}",
                            (now - start).as_secs_f64()
                        );
                    }
                    _ => {}
                }
            }
        }
        now += step;
    }
    println!("\nnode-0's tracker:");
    if let Some(node) = &nodes[0] {
        for row in node.tracker().rows() {
            println!(
                "  {:<8} {:<8} {:<8} inc {:<3} since {}",
                row.node.as_str(),
                format!("{:?}", row.status),
                format!("{:?}", row.health),
                row.incarnation,
                row.last_change.format("%H:%M:%S%.3f")
            );
        }
    }
    Ok(())
}
