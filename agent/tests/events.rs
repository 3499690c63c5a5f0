//! The agent's event stream on real processes: `GET /v1/events` (NDJSON),
//! `beethoven monitor`, and `beethoven agent --events json` on stdout. A row
//! going offline shows in the stream; a reader that stops reading or goes away
//! never holds the node up; bad query parameters get a 400 with a JSON error.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Instant;

use serde_json::Value;
use support::{Agent, DEADLINE, beethoven, eventually};

/// A reader of `GET /v1/events`, line by line.
struct EventStream {
    lines: BufReader<TcpStream>,
}

impl EventStream {
    /// Connects with the default socket buffers.
    fn open(agent: &Agent, query: &str) -> EventStream {
        let stream = TcpStream::connect(agent.http).expect("the HTTP port answers");
        EventStream::request(stream, query)
    }

    fn request(mut stream: TcpStream, query: &str) -> EventStream {
        stream
            .set_read_timeout(Some(DEADLINE))
            .expect("a read timeout");
        let request = format!("GET /v1/events{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .expect("the request is sent");
        let mut lines = BufReader::new(stream);
        let mut status = String::new();
        lines.read_line(&mut status).expect("a status line");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut ndjson = false;
        loop {
            let mut header = String::new();
            lines.read_line(&mut header).expect("a header line");
            ndjson |= header.eq_ignore_ascii_case("content-type: application/x-ndjson\r\n");
            if header == "\r\n" {
                break;
            }
        }
        assert!(ndjson, "served as application/x-ndjson");
        EventStream { lines }
    }

    /// The next JSON line of the body (the chunk-size lines of the chunked
    /// encoding are skipped); `None` at the end of the stream.
    fn next(&mut self) -> Option<Value> {
        loop {
            let mut line = String::new();
            if self.lines.read_line(&mut line).expect("the stream is read") == 0 {
                return None;
            }
            if line.starts_with('{') {
                return Some(serde_json::from_str(&line).expect("each line is one JSON object"));
            }
        }
    }

    /// Reads until an event satisfies `wanted`; returns it.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        while started.elapsed() < DEADLINE {
            match self.next() {
                Some(event) if wanted(&event) => return event,
                Some(_) => {}
                None => break,
            }
        }
        panic!("the stream never showed {what}");
    }
}

fn tracker_row_is(event: &Value, node: &str, status: &str) -> bool {
    event["event"] == "tracker"
        && event["new_row"]["node"] == node
        && event["new_row"]["status"] == status
}

/// Three agents joined through the first.
fn three_agents() -> Vec<Agent> {
    let first = Agent::start("n0", &[]);
    let seed = first.udp.to_string();
    let mut agents = vec![first];
    for i in 1..3 {
        agents.push(Agent::start(&format!("n{i}"), &["--seed", &seed]));
    }
    eventually("every agent sees three online", || {
        agents.iter().all(|agent| agent.sees_online(3))
    });
    agents
}

#[test]
fn a_killed_node_going_offline_appears_in_the_stream_and_in_monitor() {
    let mut agents = three_agents();
    let mut stream = EventStream::open(&agents[0], "");
    // The stream starts with the state: every row (each followed by the other
    // node's `node_update`), then the mode.
    let mut rows = Vec::new();
    let mode = loop {
        let line = stream.next().expect("a line of the state");
        match line["event"].as_str() {
            Some("tracker") => rows.push(line),
            Some("node_update") => assert_eq!(line["status"], "online", "{line}"),
            Some("mode") => break line,
            _ => panic!("only the state comes first: {line}"),
        }
    };
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (row, name) in rows.iter().zip(["n0", "n1", "n2"]) {
        assert!(tracker_row_is(row, name, "online"), "{row}");
        assert_eq!(row["old_row"], Value::Null);
        for field in ["addr", "health", "incarnation", "last_change", "tags"] {
            assert!(!row["new_row"][field].is_null(), "{field} in {row}");
        }
    }
    assert_eq!(mode["mode"], "clustered");
    let mut monitor = beethoven()
        .args(["monitor", "--http", &agents[0].http.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the built binary runs");
    let mut printed = BufReader::new(monitor.stdout.take().expect("stdout is piped"));
    // The monitor is connected once its snapshot (rows, then the mode) came.
    let mut snapshot = String::new();
    while !snapshot.contains("\"event\":\"mode\"") {
        assert_ne!(
            printed
                .read_line(&mut snapshot)
                .expect("the monitor's output"),
            0
        );
    }

    agents[2].signal("KILL");
    // The row first, then the node update: the order the node made them in.
    let row = stream.wait_for("n2's row offline", |e| tracker_row_is(e, "n2", "offline"));
    let update = stream.next().expect("the node update");
    assert_eq!(
        (&update["event"], &update["node"], &update["status"]),
        (&"node_update".into(), &"n2".into(), &"offline".into())
    );
    assert_eq!(row["new_row"]["health"], "dead");
    assert_eq!(row["old_row"]["node"], "n2", "the row before comes with it");
    assert!(row["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')));

    // The monitor prints the same lines and ends when the agent's node stops.
    agents[0].signal("TERM");
    assert_eq!(agents[0].wait().code(), Some(0));
    let mut rest = String::new();
    printed
        .read_to_string(&mut rest)
        .expect("the monitor's output");
    assert!(monitor.wait().expect("the monitor ends").success());
    let events: Vec<Value> = rest
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect();
    assert!(
        events.iter().any(|e| tracker_row_is(e, "n2", "offline")),
        "{rest}"
    );
    assert!(
        events.iter().any(|e| tracker_row_is(e, "n0", "offline")),
        "its own leave"
    );
    assert_eq!(events.last().map(|e| &e["event"]), Some(&"stopped".into()));
}

#[test]
fn a_reader_sees_every_one_of_a_thousand_tag_changes_in_order_with_old_and_new_rows() {
    let mut agent = Agent::start("fast", &[]);
    let mut stream = EventStream::open(&agent, "?snapshot=false");
    // Read while the changes are made: the node never waits for its readers.
    let reader = std::thread::spawn(move || {
        let mut writes = Vec::new();
        while writes.len() < 1000 {
            let line = stream.next().expect("the stream goes on");
            assert_ne!(line["event"], "lagged", "nothing is lost");
            if tracker_row_is(&line, "fast", "online") {
                writes.push(line);
            }
        }
        writes
    });
    for i in 0..1000 {
        let (status, answer) = agent.put("/v1/tags", &format!("{{\"i\":\"{i}\"}}"));
        assert_eq!(status, 200, "{answer}");
    }
    let writes = reader.join().expect("the reader saw every change");
    for (i, write) in writes.iter().enumerate() {
        assert_eq!(write["op"], "write");
        assert_eq!(write["new_row"]["tags"]["i"], i.to_string(), "in order");
        let before = &write["old_row"];
        if i > 0 {
            assert_eq!(before, &writes[i - 1]["new_row"], "with the row before");
        }
    }
    agent.signal("TERM");
    assert_eq!(agent.wait().code(), Some(0));
}

#[test]
fn a_reader_that_stops_reading_loses_lines_but_never_holds_the_node_up() {
    let mut agent = Agent::start("busy", &[]);
    // A reader with a tiny receive window that reads nothing for now.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("a TCP socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    socket
        .connect(&agent.http.into())
        .expect("the HTTP port answers");
    let mut stalled = EventStream::request(socket.into(), "?snapshot=false");
    // And one that goes away at once.
    drop(EventStream::open(&agent, ""));

    // Each tag change is one `tracker` line: far more than a reader may fall behind.
    let changes = 5000;
    for i in 0..changes {
        let body = format!("{{\"i\":\"{i}\",\"pad\":\"{}\"}}", "x".repeat(900));
        let (status, answer) = agent.put("/v1/tags", &body);
        assert_eq!(status, 200, "{answer}");
    }
    let last = (changes - 1).to_string();
    // The node kept up: a new reader starts from the last change.
    let mut fresh = EventStream::open(&agent, "");
    let own = fresh.wait_for("the own row", |e| tracker_row_is(e, "busy", "online"));
    assert_eq!(own["new_row"]["tags"]["i"], last);

    // The stalled reader, read at last: a `lagged` line says how much it lost.
    let lagged = stalled.wait_for("a lag marker", |e| e["event"] == "lagged");
    let missed = lagged["missed"].as_u64().expect("a count");
    assert!(missed > 0);
    let (_, metrics) = agent.get("/metrics");
    let counted: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("beethoven_event_lines_dropped_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the metric is served");
    assert!(counted >= missed, "{counted} < {missed}");
    // The reader has room again: the next change reaches it.
    let (status, answer) = agent.put("/v1/tags", "{\"i\":\"after\"}");
    assert_eq!(status, 200, "{answer}");
    let later = stalled.wait_for("the change after the lag", |e| {
        tracker_row_is(e, "busy", "online") && e["new_row"]["tags"]["i"] == "after"
    });
    assert_eq!(later["op"], "write");

    agent.signal("TERM");
    assert_eq!(agent.wait().code(), Some(0), "it leaves and exits as usual");
    assert_eq!(
        stalled.wait_for("the end", |e| e["event"] == "stopped")["event"],
        "stopped"
    );
    assert!(stalled.next().is_none(), "the stream ends with the node");
}

#[test]
fn unknown_or_bad_query_parameters_get_a_400_with_a_json_error() {
    let agent = Agent::start("strict", &[]);
    for (query, mentions) in [("?bogus=1", "bogus"), ("?snapshot=maybe", "snapshot")] {
        let (status, body) = agent.get(&format!("/v1/events{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        let error: Value = serde_json::from_str(&body).expect("a JSON body");
        let message = error["error"].as_str().expect("an error message");
        assert!(message.contains(mentions), "{query}: {message}");
    }
    let (status, _) = agent.post("/v1/events");
    assert_eq!(status, 405);
}

#[test]
fn monitor_without_an_agent_says_where_it_looked_and_exits_with_status_1() {
    // A port nobody listens on: bound, then closed.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let output = support::run(&["monitor", "--http", &free.to_string()]);
    assert_eq!(output.status.code(), Some(1));
    let message = support::stderr(&output);
    assert!(
        message.contains("cannot reach the agent") && message.contains(&free.to_string()),
        "{message}"
    );
    assert!(support::stdout(&output).is_empty());
}

#[test]
fn events_json_prints_the_stream_on_stdout_and_the_loser_of_a_name_says_so() {
    let first = Agent::start("twin", &[]);
    let second = beethoven()
        .args(["agent", "--name", "twin", "--bind", "127.0.0.1:0"])
        .args(["--seed", &first.udp.to_string(), "--events", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the built binary runs");
    let output = second.wait_with_output().expect("the second process ends");
    assert_eq!(
        output.status.code(),
        Some(3),
        "the later process gives the name up"
    );
    let events: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("stdout holds only JSON lines"))
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"stopped"));
    let winner = first.udp.to_string();
    let conflicts: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "name_conflict")
        .collect();
    assert_eq!(
        conflicts.len(),
        1,
        "the conflict is reported once: {conflicts:?}"
    );
    let conflict = conflicts[0];
    assert_eq!(conflict["node"], "twin");
    assert!(
        conflict["addrs"]
            .as_array()
            .is_some_and(|addrs| addrs.contains(&winner.clone().into()))
    );
    let lost = events
        .iter()
        .find(|e| e["event"] == "name_lost")
        .expect("the loss is reported");
    assert_eq!(lost["winner"], winner);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("taken") && stderr.contains(&winner),
        "logs stay on stderr: {stderr}"
    );
}

/// `beethoven event` through `agent`, with `stdin` as its input: the output.
fn send_event(agent: &Agent, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = beethoven()
        .args(["event", "--http", &agent.http.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the built binary runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin)
        .expect("stdin is written");
    child.wait_with_output().expect("the client ends")
}

fn is_user_event(line: &Value, name: &str) -> bool {
    line["event"] == "user_event" && line["name"] == name
}

#[test]
fn a_user_event_sent_with_the_client_reaches_every_other_agents_stream_and_its_user_handler_once() {
    let scratch = support::Scratch::new("user-events");
    let log = scratch.0.join("deploys.log");
    let recorder = scratch.file(
        "record.sh",
        &format!(
            "#!/bin/sh\necho \"$BEETHOVEN_EVENT|$BEETHOVEN_USER_EVENT|$BEETHOVEN_USER_ORIGIN|$(cat)\" >> {}\n",
            support::path_str(&log)
        ),
    );
    std::fs::set_permissions(
        &recorder,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let handler = format!("user:deploy={}", support::path_str(&recorder));
    let first = Agent::start("n0", &[]);
    let seed = first.udp.to_string();
    let agents = [
        first,
        Agent::start("n1", &["--seed", &seed, "--event-handler", &handler]),
        Agent::start("n2", &["--seed", &seed]),
    ];
    eventually("every agent sees three online", || {
        agents.iter().all(|agent| agent.sees_online(3))
    });
    let mut streams: Vec<EventStream> = agents[1..]
        .iter()
        .map(|agent| EventStream::open(agent, "?snapshot=false"))
        .collect();

    let sent = send_event(&agents[0], &["deploy", "v2"], b"");
    assert!(sent.status.success(), "{}", support::stderr(&sent));
    assert!(support::stdout(&sent).contains("event `deploy` sent (2 payload bytes)"));
    let sent = send_event(&agents[0], &["blob", "-"], &[0, 0xff]);
    assert!(sent.status.success(), "{}", support::stderr(&sent));
    let sent = send_event(&agents[0], &["last"], b"");
    assert!(sent.status.success(), "{}", support::stderr(&sent));

    for stream in &mut streams {
        let mut user_lines = Vec::new();
        while user_lines
            .last()
            .is_none_or(|line| !is_user_event(line, "last"))
        {
            let line = stream.wait_for("a user event", |line| line["event"] == "user_event");
            user_lines.push(line);
        }
        let names: Vec<&str> = user_lines
            .iter()
            .map(|line| line["name"].as_str().expect("a name"))
            .collect();
        assert_eq!(names, ["deploy", "blob", "last"], "once each, in order");
        let deploy = &user_lines[0];
        assert_eq!(deploy["origin"], "n0", "{deploy}");
        assert_eq!(deploy["seq"], 1, "{deploy}");
        assert_eq!(deploy["payload"], "v2", "{deploy}");
        assert_eq!(deploy["base64"], false, "{deploy}");
        assert!(deploy["lamport"].as_u64().is_some(), "{deploy}");
        assert!(
            deploy["sent_at"]
                .as_str()
                .is_some_and(|at| at.ends_with('Z')),
            "{deploy}"
        );
        let blob = &user_lines[1];
        assert_eq!(blob["payload"], "AP8=", "{blob}");
        assert_eq!(blob["base64"], true, "{blob}");
    }
    eventually("the user:deploy handler ran", || {
        std::fs::read_to_string(&log).is_ok_and(|text| !text.is_empty())
    });
    // The handler's queue runs in order: `last` came after `deploy`, and the
    // filter takes `deploy` only.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let recorded = std::fs::read_to_string(&log).expect("the log");
    assert_eq!(recorded, "user|deploy|n0|v2\n");
    let (_, metrics) = agents[1].get("/metrics");
    assert!(
        metrics.contains("beethoven_user_events_total{what=\"delivered\"} 3"),
        "{metrics}"
    );
}

#[test]
fn an_empty_or_oversized_event_name_or_payload_is_refused_before_anything_is_sent() {
    let first = Agent::start("n0", &[]);
    let seed = first.udp.to_string();
    let agents = [first, Agent::start("n1", &["--seed", &seed])];
    eventually("both agents see two online", || {
        agents.iter().all(|agent| agent.sees_online(2))
    });
    let mut stream = EventStream::open(&agents[1], "?snapshot=false");
    let long_name = "n".repeat(129);
    let big_payload = vec![b'p'; 1025];
    for (args, stdin, says) in [
        (vec![""], &b""[..], "must not be empty"),
        (
            vec![long_name.as_str()],
            &b""[..],
            "name has 129 bytes, more than the limit of 128",
        ),
        (
            vec!["big", "-"],
            &big_payload[..],
            "payload has 1025 bytes, more than the limit of 1024",
        ),
    ] {
        let output = send_event(&agents[0], &args, stdin);
        let text = support::stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(
            text.contains("answered 422") && text.contains(says),
            "{text}"
        );
        assert!(!text.contains("panicked"), "{text}");
    }
    let (status, body) = agents[0].post_json(
        "/v1/event",
        r#"{"name":"x","payload":"not base64!","base64":true}"#,
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("base64"), "{body}");
    let (status, body) = agents[0].post_json("/v1/event", r#"{"payload":"no name"}"#);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("missing field `name`"), "{body}");
    let (status, body) = support::request(
        agents[0].http,
        "POST /v1/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"name\":\"x\"}",
    );
    assert_eq!(status, 401, "a change needs the token: {body}");

    let sent = send_event(&agents[0], &["good"], b"");
    assert!(sent.status.success(), "{}", support::stderr(&sent));
    let first_user_event = stream.wait_for("a user event", |line| line["event"] == "user_event");
    assert!(
        is_user_event(&first_user_event, "good"),
        "nothing refused was sent: {first_user_event}"
    );
    let (_, metrics) = agents[0].get("/metrics");
    assert!(
        metrics.contains("beethoven_user_events_total{what=\"sent\"} 1"),
        "{metrics}"
    );
}
