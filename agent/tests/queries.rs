//! Queries on real agents: `beethoven query` reaches the members its filter
//! picks, their `query` handlers' stdout answers (cut at the response size
//! limit), the query shows on their event streams, and a bad name, timeout or
//! filter is refused before anything is sent.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use serde_json::Value;
use support::{
    Agent, DEADLINE, Scratch, beethoven, eventually, path_str, run_with, stderr, stdout,
};

/// An executable `sh` script in `scratch`.
fn script(scratch: &Scratch, name: &str, body: &str) -> PathBuf {
    let path = scratch.file(name, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// `beethoven query --http AGENT ARGS...` to its end.
fn query(agent: &Agent, args: &[&str]) -> std::process::Output {
    run_with(
        beethoven()
            .args(["query", "--http", &agent.http.to_string()])
            .args(args),
    )
}

/// The JSON lines of a `query --json` that succeeded.
fn json_lines(output: &std::process::Output) -> Vec<Value> {
    assert!(output.status.success(), "{}", stderr(output));
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

/// The `from` of every line of `event`, sorted.
fn froms(lines: &[Value], event: &str) -> Vec<String> {
    let mut names: Vec<String> = lines
        .iter()
        .filter(|line| line["event"] == event)
        .map(|line| line["from"].as_str().expect("a name").to_owned())
        .collect();
    names.sort();
    names
}

/// Three agents joined through the first: n1 answers `uptime` queries, n2
/// (tagged `role=db`) answers every query and floods on `flood`.
fn three_agents(scratch: &Scratch) -> [Agent; 3] {
    let uptime = script(scratch, "uptime.sh", "echo \"n1 says $(cat)\"");
    let any = script(
        scratch,
        "any.sh",
        "if [ \"$BEETHOVEN_QUERY_NAME\" = flood ]; then head -c 100000 /dev/zero | tr '\\0' x; \
         else echo \"$BEETHOVEN_EVENT $BEETHOVEN_QUERY_NAME from $BEETHOVEN_QUERY_ORIGIN: $(cat)\"; fi",
    );
    let first = Agent::start("n0", &[]);
    let seed = first.udp.to_string();
    let uptime = format!("query:uptime={}", path_str(&uptime));
    let any = format!("query={}", path_str(&any));
    let agents = [
        first,
        Agent::start("n1", &["--seed", &seed, "--event-handler", &uptime]),
        Agent::start(
            "n2",
            &["--seed", &seed, "--tag", "role=db", "--event-handler", &any],
        ),
    ];
    eventually("every agent sees three online", || {
        agents.iter().all(|agent| agent.sees_online(3))
    });
    agents
}

#[test]
fn a_query_reaches_the_members_its_filter_picks_and_their_handlers_stdout_answers() {
    let scratch = Scratch::new("queries");
    let agents = three_agents(&scratch);
    let mut stream = TcpStream::connect(agents[1].http).expect("the HTTP port answers");
    stream.set_read_timeout(Some(DEADLINE)).expect("a timeout");
    stream
        .write_all(b"GET /v1/events?snapshot=false HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("the request is sent");
    let mut events = BufReader::new(stream);

    // Everyone: n1 and n2 answer, n0 (the origin, no handler) does not, so
    // the query runs to its timeout.
    let lines = json_lines(&query(
        &agents[0],
        &["uptime", "hi", "--timeout", "2s", "--ack", "--json"],
    ));
    let answers: Vec<(String, String)> = lines
        .iter()
        .filter(|line| line["event"] == "response")
        .map(|line| {
            (
                line["from"].as_str().expect("a name").to_owned(),
                line["payload"].as_str().expect("text").to_owned(),
            )
        })
        .collect();
    assert_eq!(answers.len(), 2, "{lines:?}");
    assert!(answers.contains(&("n1".to_owned(), "n1 says hi\n".to_owned())));
    assert!(answers.contains(&("n2".to_owned(), "query uptime from n0: hi\n".to_owned())));
    assert_eq!(froms(&lines, "ack"), ["n0", "n1", "n2"], "{lines:?}");
    let done = lines.last().expect("lines");
    assert_eq!(done["event"], "done", "{lines:?}");
    assert_eq!(done["expected"], 3, "{done}");
    assert_eq!(done["responded"], 2, "{done}");
    assert_eq!(done["timed_out"], true, "{done}");

    // n1's stream shows the query.
    let mut line = String::new();
    let shown = loop {
        line.clear();
        assert_ne!(events.read_line(&mut line).expect("the stream"), 0);
        if line.contains("\"event\":\"query\"") {
            break serde_json::from_str::<Value>(&line).expect("JSON");
        }
    };
    assert_eq!(shown["name"], "uptime", "{shown}");
    assert_eq!(shown["origin"], "n0", "{shown}");
    assert_eq!(shown["payload"], "hi", "{shown}");
    assert!(
        shown["deadline"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );

    // By tag: n2 alone; it answered, so the query ends before its timeout.
    let output = query(
        &agents[0],
        &["uptime", "--tag", "role=db", "--timeout", "20s"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("response from n2: query uptime from n0: \n"),
        "{text}"
    );
    assert!(
        text.contains("done: 1 responses, 0 acks, of 1 expected\n"),
        "{text}"
    );
    assert!(!text.contains("n1"), "{text}");

    // By name, with a handler that floods: its answer is cut at 1024 bytes.
    let lines = json_lines(&query(
        &agents[1],
        &["flood", "--node", "n2", "--json", "--timeout", "20s"],
    ));
    assert_eq!(froms(&lines, "response"), ["n2"], "{lines:?}");
    let response = lines
        .iter()
        .find(|l| l["event"] == "response")
        .expect("one");
    assert_eq!(response["payload"].as_str().expect("text").len(), 1024);
    let (_, metrics) = agents[2].get("/metrics");
    assert!(
        metrics.contains("beethoven_queries_total{what=\"responses_sent\"} 3"),
        "{metrics}"
    );
}

#[test]
fn an_empty_name_a_zero_timeout_or_a_bad_tag_filter_is_refused_before_anything_is_sent() {
    let scratch = Scratch::new("queries-bad");
    let agents = three_agents(&scratch);
    for (args, says) in [
        (vec![""], "must not be empty"),
        (vec!["q", "--timeout", "0s"], "timeout"),
        (vec!["q", "--tag", "=db"], "bad query filter"),
        (vec!["q", "--node", ""], "bad node name"),
    ] {
        let output = query(&agents[0], &args);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {text}");
        assert!(
            text.contains("answered 422") && text.contains(says),
            "{args:?}: {text}"
        );
        assert!(!text.contains("panicked"), "{text}");
    }
    let (_, metrics) = agents[0].get("/metrics");
    assert!(
        metrics.contains("beethoven_queries_total{what=\"sent\"} 0"),
        "{metrics}"
    );
}
