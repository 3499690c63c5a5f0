//! What this machine charges a process for the things a quiet node must do, with
//! no protocol at all: wake from a timed sleep, send one datagram on loopback,
//! be woken by one. Built and run by `scripts/wake_floor.py`; std only, so it is
//! compiled with plain `rustc` and measures the machine, not our code.
//!
//! Usage: `wake_floor sleep MS` | `wake_floor send MS PORT` | `wake_floor sink PORT`
//! | `wake_floor deaf PORT`.

use std::net::UdpSocket;
use std::time::Duration;

fn arg<T: std::str::FromStr>(i: usize) -> T {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: wake_floor sleep MS | send MS PORT | sink PORT | deaf PORT");
            std::process::exit(2)
        })
}

fn main() {
    let mode: String = arg(1);
    let mut buf = [0u8; 512];
    match mode.as_str() {
        // A timer wakeup and nothing else.
        "sleep" => {
            let period = Duration::from_millis(arg(2));
            loop {
                std::thread::sleep(period);
            }
        }
        // A timer wakeup, then one 100-byte datagram (a ping's size) to PORT.
        "send" => {
            let period = Duration::from_millis(arg(2));
            let port: u16 = arg(3);
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind on loopback");
            loop {
                std::thread::sleep(period);
                let _ = socket.send_to(&buf[..100], ("127.0.0.1", port));
            }
        }
        // Woken by each datagram, reads it, sleeps again.
        "sink" => {
            let socket = UdpSocket::bind(("127.0.0.1", arg::<u16>(2))).expect("bind the port");
            loop {
                let _ = socket.recv_from(&mut buf);
            }
        }
        // Holds the port and never reads: a send that wakes no one.
        "deaf" => {
            let _socket = UdpSocket::bind(("127.0.0.1", arg::<u16>(2))).expect("bind the port");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        _ => {
            eprintln!("unknown mode {mode}");
            std::process::exit(2);
        }
    }
}
