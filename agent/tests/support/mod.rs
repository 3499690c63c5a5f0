//! Runs the built `beethoven` binary as a child process and talks to it over
//! HTTP, for the agent's tests.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any condition may take to become true.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The HTTP token every test agent and client command gets (through
/// `BEETHOVEN_HTTP_TOKEN`), so changes over HTTP are on.
pub const TOKEN: &str = "test-token-0123456789";

/// The `beethoven` binary, with no `BEETHOVEN_*` or `RUST_LOG` from the caller,
/// and [`TOKEN`] as its HTTP token.
pub fn beethoven() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_beethoven"));
    for (key, _) in std::env::vars() {
        if key.starts_with("BEETHOVEN_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.env("BEETHOVEN_HTTP_TOKEN", TOKEN);
    command
}

/// Runs `beethoven` with `args` to its end (a bounded wait: the cases that are
/// meant to fail do so at start).
pub fn run(args: &[&str]) -> Output {
    run_with(beethoven().args(args))
}

pub fn run_with(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the built binary runs");
    let started = Instant::now();
    loop {
        if child
            .try_wait()
            .expect("the child can be waited for")
            .is_some()
        {
            return child.wait_with_output().expect("its output is readable");
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("beethoven did not exit within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A scratch folder for this test, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("beethoven-agent-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        Scratch(dir)
    }

    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("a scratch file");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running agent, killed when dropped.
pub struct Agent {
    pub name: String,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    /// Reads stderr into `log`; ends when the process does.
    reader: Option<std::thread::JoinHandle<()>>,
    pub http: SocketAddr,
    pub udp: SocketAddr,
}

impl Agent {
    /// Starts `beethoven agent --name NAME --bind 127.0.0.1:0 --http 127.0.0.1:0
    /// --log-format json EXTRA...` and waits for its start line.
    pub fn start(name: &str, extra: &[&str]) -> Agent {
        let mut args = vec!["--name", name];
        args.extend_from_slice(extra);
        Agent::start_with(&args, &[])
    }

    /// Starts `beethoven agent --bind 127.0.0.1:0 --http 127.0.0.1:0 --log-format
    /// json --log-level info ARGS...` with `env` set (the `--bind` only when ARGS
    /// has none), and waits for its start line.
    pub fn start_with(extra: &[&str], env: &[(&str, &str)]) -> Agent {
        let mut args = vec!["--log-level", "info"];
        args.extend_from_slice(extra);
        Agent::start_raw(&args, env)
    }

    /// As [`Agent::start_with`], with no HTTP token at all (changes over HTTP off).
    pub fn start_tokenless(extra: &[&str]) -> Agent {
        let mut args = vec!["--log-level", "info"];
        args.extend_from_slice(extra);
        Agent::spawn(&args, &[], false)
    }

    /// As [`Agent::start_with`], without `--log-level info`.
    pub fn start_raw(extra: &[&str], env: &[(&str, &str)]) -> Agent {
        Agent::spawn(extra, env, true)
    }

    fn spawn(extra: &[&str], env: &[(&str, &str)], token: bool) -> Agent {
        let name = extra
            .iter()
            .position(|arg| *arg == "--name")
            .map_or("agent", |i| extra[i + 1]);
        let bind: &[&str] = if extra.contains(&"--bind") {
            &[]
        } else {
            &["--bind", "127.0.0.1:0"]
        };
        let mut command = beethoven();
        if !token {
            command.env_remove("BEETHOVEN_HTTP_TOKEN");
        }
        let mut child = command
            .envs(env.iter().copied())
            .args(["agent", "--http", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(["--join-retry", "300ms"])
            .args(bind)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the built binary runs");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stderr.take().expect("stderr is piped"));
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                sink.lock().expect("the log is never poisoned").push(line);
            }
        });
        let mut agent = Agent {
            name: name.to_owned(),
            child,
            log,
            reader: Some(reader),
            http: "0.0.0.0:0".parse().expect("valid"),
            udp: "0.0.0.0:0".parse().expect("valid"),
        };
        let started = agent.wait_for_log("agent started");
        let field = |key: &str| -> SocketAddr {
            started[key]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("`{key}` in the start line: {started}"))
        };
        agent.http = field("http");
        agent.udp = field("advertised");
        agent
    }

    /// The log lines so far, parsed.
    pub fn log(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .expect("the log is never poisoned")
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits for a log line whose message is `message`; returns it.
    pub fn wait_for_log(&mut self, message: &str) -> serde_json::Value {
        let mut found = None;
        eventually(&format!("{} logs `{message}`", self.name), || {
            found = self
                .log()
                .into_iter()
                .find(|line| line["message"] == message);
            if found.is_none()
                && let Ok(Some(status)) = self.child.try_wait()
            {
                panic!(
                    "{} exited ({status}) before logging `{message}`: {:?}",
                    self.name, self.log
                );
            }
            found.is_some()
        });
        found.expect("found")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `HUP`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} worked");
    }

    /// Waits for the process to end, and for its last log lines.
    pub fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(started.elapsed() < DEADLINE, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `GET path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        request(
            self.http,
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        )
    }

    /// `POST path` with no body: (status, body).
    pub fn post(&self, path: &str) -> (u16, String) {
        request(
            self.http,
            &format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
    }

    /// `PUT path` with a JSON `body`: (status, body).
    pub fn put(&self, path: &str, body: &str) -> (u16, String) {
        request(
            self.http,
            &format!(
                "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    /// `method path` with a JSON `body` and the token: (status, body).
    pub fn send(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        request(
            self.http,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    }

    /// Whether a log line's message is `message`.
    pub fn logged(&self, message: &str) -> bool {
        self.log().iter().any(|line| line["message"] == message)
    }

    /// `POST path` with a JSON `body`: (status, body).
    pub fn post_json(&self, path: &str, body: &str) -> (u16, String) {
        self.send("POST", path, body)
    }

    /// The members this agent serves, as JSON rows.
    pub fn members(&self) -> Vec<serde_json::Value> {
        let (status, body) = self.get("/v1/members");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("a JSON array")
    }

    /// The status of `node` in this agent's table.
    pub fn status_of(&self, node: &str) -> Option<String> {
        self.members()
            .into_iter()
            .find(|row| row["node"] == node)
            .and_then(|row| row["status"].as_str().map(str::to_owned))
    }

    /// Whether this agent sees exactly `count` members, all online.
    pub fn sees_online(&self, count: usize) -> bool {
        let rows = self.members();
        rows.len() == count && rows.iter().all(|row| row["status"] == "online")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `raw` to `addr` and reads the answer: (status, body). The body ends at
/// its `Content-Length`, or when the server closes the connection.
pub fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("the HTTP port answers");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("a read timeout");
    stream
        .write_all(raw.as_bytes())
        .expect("the request is sent");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).expect("the answer is read");
        answer.extend_from_slice(&chunk[..read]);
        if read == 0 || complete(&answer) {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP status line: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Whether `answer` holds its headers and as many body bytes as they announce.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .is_some_and(|length| body.len() >= length)
}

/// Polls `condition` until it holds; panics after [`DEADLINE`].
/// The tags of `node` in `agent`'s members, as a JSON object.
pub fn tags_of(agent: &Agent, node: &str) -> serde_json::Value {
    agent
        .members()
        .into_iter()
        .find(|row| row["node"] == node)
        .map_or(serde_json::Value::Null, |row| row["tags"].clone())
}

/// The names `agent` lists for `GET /v1/members?query`.
pub fn names(agent: &Agent, query: &str) -> Vec<String> {
    let (status, body) = agent.get(&format!("/v1/members?{query}"));
    assert_eq!(status, 200, "{body}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).expect("JSON rows");
    rows.iter()
        .map(|row| row["node"].as_str().expect("a name").to_owned())
        .collect()
}

pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}
