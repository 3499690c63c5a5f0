//! Every example binary runs briefly here, so none of them can rot.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);

/// A running example whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(bin: &str, args: &[&str]) -> Self {
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the example binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing every one of `parts`; returns it.
    fn expect_line(&mut self, parts: &[&str]) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(line) = self
                .seen
                .iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
            {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no line with {parts:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn wait_success(mut self) -> Vec<String> {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                assert!(status.success(), "exit status {status}");
                self.seen.extend(self.lines.try_iter());
                // The reader thread may still be flushing the last lines.
                thread::sleep(Duration::from_millis(50));
                self.seen.extend(self.lines.try_iter());
                return std::mem::take(&mut self.seen);
            }
            assert!(Instant::now() < deadline, "did not exit in time");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address a node printed it listens on.
fn listening_addr(line: &str) -> String {
    line.split_whitespace()
        .skip_while(|w| *w != "on")
        .nth(1)
        .expect("`listening on ADDR`")
        .to_owned()
}

#[test]
fn local_cluster_demo_runs_to_its_summary() {
    let demo = Running::start(env!("CARGO_BIN_EXE_local_cluster"), &["--quick"]);
    let out = demo.wait_success().join("\n");
    assert!(
        out.contains("crash of node-3 seen offline by 4 nodes"),
        "{out}"
    );
    assert!(
        out.contains("leave of node-4 seen offline by 3 nodes"),
        "{out}"
    );
    assert!(out.contains("restarted node-3 online everywhere"), "{out}");
    assert!(!out.contains("gave up waiting"), "{out}");
}

#[test]
fn smol_nodes_meet_and_leave() {
    let bin = env!("CARGO_BIN_EXE_smol_node");
    let mut a = Running::start(bin, &["--name", "a", "--cluster", "t2", "--for", "20"]);
    let addr = listening_addr(&a.expect_line(&["listening on"]));
    let b = Running::start(
        bin,
        &[
            "--name",
            "b",
            "--cluster",
            "t2",
            "--seed",
            &addr,
            "--for",
            "1",
        ],
    );
    a.expect_line(&["b is online"]);
    let out = b.wait_success().join("\n");
    assert!(out.contains("a is online"), "{out}");
    a.expect_line(&["b is offline"]);
}

#[test]
fn custom_loop_nodes_meet_without_an_async_runtime() {
    let bin = env!("CARGO_BIN_EXE_custom_loop");
    let mut a = Running::start(bin, &["a", "127.0.0.1:0", "--for", "20"]);
    let addr = listening_addr(&a.expect_line(&["listening on"]));
    let b = Running::start(bin, &["b", "127.0.0.1:0", &addr, "--for", "2"]);
    a.expect_line(&["b is online"]);
    let out = b.wait_success().join("\n");
    assert!(out.contains("a is online"), "{out}");
    a.expect_line(&["b is offline"]);
}

#[test]
fn subscriber_example_sees_both_forms() {
    let out = Running::start(env!("CARGO_BIN_EXE_subscriber"), &[])
        .wait_success()
        .join("\n");
    assert!(out.contains("callback: node-2 is offline"), "{out}");
    assert!(out.contains("stream:   node-2 is offline"), "{out}");
}
