//! A node driven by hand: `beethoven-core` on a plain `std::net::UdpSocket`, with
//! `set_read_timeout` taken from `poll_timeout`. No async runtime.
//!
//! ```sh
//! cargo run -p beethoven-examples --bin custom_loop -- a@127.0.0.1 127.0.0.1:7101
//! cargo run -p beethoven-examples --bin custom_loop -- b@127.0.0.1 127.0.0.1:7102 127.0.0.1:7101
//! ```
//!
//! Arguments: `NAME BIND [SEED...] [--for SECONDS]`. Prints every node update and
//! mode change; stops after `--for` seconds (default: run until killed).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use beethoven_core::{Config, Event, Node, NodeName, Seed};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let run_for = match args.iter().position(|a| a == "--for") {
        Some(at) => {
            let seconds: u64 = args.get(at + 1).ok_or("--for needs seconds")?.parse()?;
            args.drain(at..=at + 1);
            Some(Duration::from_secs(seconds))
        }
        None => None,
    };
    let [name, bind, seeds @ ..] = args.as_slice() else {
        eprintln!("usage: custom_loop NAME BIND [SEED...] [--for SECONDS]");
        std::process::exit(2);
    };
    let seeds = seeds
        .iter()
        .map(|s| s.parse::<Seed>())
        .collect::<Result<Vec<_>, _>>()?;

    let socket = UdpSocket::bind(bind.parse::<SocketAddr>()?)?;
    let started = Instant::now();
    let config = Config::for_cluster("custom-loop").with_rng_seed(u64::from(std::process::id()));
    let mut node = Node::new(
        config,
        NodeName::new(name)?,
        socket.local_addr()?,
        started,
        std::time::SystemTime::now().into(),
    )?;
    if !seeds.is_empty() {
        node.join(started, &seeds)?;
    }
    println!("{name} listening on {}", socket.local_addr()?);

    let mut buf = vec![0u8; node.config().max_packet_size + 1];
    loop {
        // 1. After every input: send, then report, then read the next deadline.
        while let Some(t) = node.poll_transmit() {
            // A lost or refused datagram is normal for UDP; the protocol copes.
            let _ = socket.send_to(t.payload, t.to);
        }
        while let Some(event) = node.poll_event() {
            match event {
                Event::NodeUpdate {
                    node: other,
                    status,
                } => {
                    println!(
                        "{:>7.3}s  {other} is {status}",
                        started.elapsed().as_secs_f64()
                    );
                }
                Event::ModeChanged(mode) => {
                    println!("{:>7.3}s  now {mode}", started.elapsed().as_secs_f64());
                }
                Event::JoinFailed { attempts, .. } => {
                    println!("no seed answered after {attempts} attempts: standalone");
                }
                _ => {}
            }
        }
        if run_for.is_some_and(|limit| started.elapsed() >= limit) {
            break;
        }
        // 2. Wait for a datagram until the node's next deadline.
        let now = Instant::now();
        let wait = node
            .poll_timeout()
            .map_or(Duration::from_millis(500), |at| {
                at.saturating_duration_since(now)
            })
            .clamp(Duration::from_millis(1), Duration::from_millis(500));
        socket.set_read_timeout(Some(wait))?;
        // 3. Feed the input; `now` is read after the wait, so it never goes backwards.
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => node.handle_packet(Instant::now(), from, &buf[..len]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                node.handle_timeout(Instant::now());
            }
            // e.g. ECONNREFUSED after an ICMP error: not fatal for a UDP node.
            Err(_) => node.handle_timeout(Instant::now()),
        }
    }
    let now = Instant::now();
    let _ = node.leave(now);
    while let Some(t) = node.poll_transmit() {
        let _ = socket.send_to(t.payload, t.to);
    }
    println!("final tracker of {name}:");
    for row in node.tracker().rows() {
        println!(
            "  {:<24} {} {} inc {}",
            row.node.as_str(),
            row.status,
            row.health,
            row.incarnation
        );
    }
    Ok(())
}
