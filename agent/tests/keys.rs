//! Cluster-wide keys on real agents: `beethoven keys` installs, uses and
//! removes a key on every member, over the agents' keys queries, with the
//! cluster whole throughout; a member that does not answer is reported and
//! fails the command; a change that would cut a member off is refused; the
//! reserved query names are refused to users and never reach their
//! handlers; and an agent refuses to reload a key file that would cut it off.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::{
    Agent, DEADLINE, Scratch, beethoven, eventually, path_str, run, run_with, stderr, stdout,
};

const KEY_A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const KEY_B: &str = "0202020202020202020202020202020202020202020202020202020202020202";
const KEY_C: &str = "0303030303030303030303030303030303030303030303030303030303030303";

/// Three agents, each with its own key file holding `KEY_A`, joined through
/// the first, each seeing the others' published keys.
fn keyed_cluster(dir: &Scratch) -> (Vec<Agent>, Vec<std::path::PathBuf>) {
    keyed_cluster_with(dir, &[])
}

/// [`keyed_cluster`], each agent started with `extra` too.
fn keyed_cluster_with(dir: &Scratch, extra: &[&str]) -> (Vec<Agent>, Vec<std::path::PathBuf>) {
    let files: Vec<_> = (0..3)
        .map(|i| dir.file(&format!("n{i}.keys"), &format!("{KEY_A}\n")))
        .collect();
    let mut args = vec!["--key-file", path_str(&files[0])];
    args.extend_from_slice(extra);
    let first = Agent::start("n0", &args);
    let seed = first.udp.to_string();
    let mut agents = vec![first];
    for (i, file) in files.iter().enumerate().skip(1) {
        let mut args = vec!["--key-file", path_str(file), "--seed", &seed];
        args.extend_from_slice(extra);
        agents.push(Agent::start(&format!("n{i}"), &args));
    }
    eventually(
        "every agent sees three online, each publishing its keys",
        || {
            agents.iter().all(|agent| {
                let rows = agent.members();
                rows.len() == 3
                    && rows.iter().all(|row| {
                        row["status"] == "online" && row["tags"]["beethoven.keys"].is_string()
                    })
            })
        },
    );
    (agents, files)
}

/// `GET /v1/keys` of one agent.
fn own_keys(agent: &Agent) -> serde_json::Value {
    let (status, body) = agent.get("/v1/keys");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("a JSON object")
}

/// How many times `agent` logged that a node went offline.
fn offline_news(agent: &Agent) -> usize {
    agent
        .log()
        .into_iter()
        .filter(|line| line["message"] == "node update" && line["status"] == "offline")
        .count()
}

/// Runs `beethoven keys ARGS --http AGENT`.
fn keys(agent: &Agent, args: &[&str]) -> std::process::Output {
    let http = agent.http.to_string();
    let mut all = vec!["keys"];
    all.extend_from_slice(args);
    all.extend(["--http", &http]);
    run(&all)
}

#[test]
fn a_key_installed_used_and_removed_everywhere_keeps_the_cluster_whole() {
    let dir = Scratch::new("keys-rotate");
    let (agents, files) = keyed_cluster(&dir);
    let fingerprint_a = own_keys(&agents[0])["primary"].clone();

    let steps: [&[&str]; 3] = [&["install", KEY_B], &["use", KEY_B], &["remove", KEY_A]];
    for step in steps {
        let output = keys(&agents[1], step);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{step:?}: {}",
            stderr(&output)
        );
        let text = stdout(&output);
        for name in ["n0", "n1", "n2"] {
            assert!(text.contains(&format!("{name}: done")), "{step:?}: {text}");
        }
        assert!(
            text.ends_with("3 online: 3 ok, 0 failed, 0 no answer\n"),
            "{step:?}: {text}"
        );
        // A few probe rounds under the new keys.
        std::thread::sleep(Duration::from_millis(600));
        assert!(
            agents.iter().all(|agent| agent.sees_online(3)),
            "all online after {step:?}"
        );
    }
    let fingerprint_b = own_keys(&agents[0])["primary"].clone();
    assert_ne!(fingerprint_a, fingerprint_b);
    // n1 asked, once per step, with a query; every member answered each.
    let asked = agents[1]
        .log()
        .into_iter()
        .filter(|line| line["message"] == "cluster-wide key change asked of every member")
        .count();
    assert_eq!(asked, 3);
    for (agent, file) in agents.iter().zip(&files) {
        let answered: Vec<String> = agent
            .log()
            .into_iter()
            .filter(|line| line["message"] == "keys query answered" && line["origin"] == "n1")
            .map(|line| line["verb"].as_str().unwrap_or("?").to_owned())
            .collect();
        assert_eq!(answered, ["install", "use", "remove"], "{}", agent.name);
        // The key travelled in a query's payload; no log line shows it.
        let logged = agent
            .log()
            .iter()
            .map(ToString::to_string)
            .collect::<String>();
        assert!(!logged.contains(KEY_B), "{} logged the key", agent.name);
        assert_eq!(
            offline_news(agent),
            0,
            "{} saw no one go offline",
            agent.name
        );
        let (_, metrics) = agent.get("/metrics");
        assert!(
            metrics.contains("beethoven_dropped_packets_total{reason=\"authentication\"} 0"),
            "{metrics}"
        );
        let view = own_keys(agent);
        assert_eq!(view["fingerprints"], serde_json::json!([fingerprint_b]));
        // Written to the key file, so a restart keeps it.
        let text = std::fs::read_to_string(file).expect("the key file");
        let held: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        assert_eq!(held, [KEY_B], "{}", agent.name);
    }

    // Listed by fingerprint, never by key.
    let listed = keys(&agents[2], &["list"]);
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let text = stdout(&listed);
    assert!(!text.contains(KEY_B), "{text}");
    let line = text
        .lines()
        .find(|line| line.starts_with(fingerprint_b.as_str().expect("a string")))
        .unwrap_or_else(|| panic!("a line for the key: {text}"));
    assert!(
        line.contains("3/3") && line.contains("n0, n1, n2"),
        "{text}"
    );
    let table = text.lines().take_while(|line| !line.is_empty()).count();
    assert_eq!(table, 2, "the header and one key: {text}");
    assert!(
        text.contains(&format!(
            "n0: ok (primary {}, 1 key)",
            fingerprint_b.as_str().expect("a string")
        )),
        "{text}"
    );
}

#[test]
fn a_use_of_a_key_one_member_lacks_is_refused_naming_it() {
    let dir = Scratch::new("keys-lacking");
    let (agents, _files) = keyed_cluster(&dir);
    let body = format!(r#"{{"key":"{KEY_B}"}}"#);
    for agent in &agents[..2] {
        let (status, answer) = agent.post_json("/v1/keys/install", &body);
        assert_eq!(status, 200, "{answer}");
    }
    let listed = keys(&agents[0], &["list", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&listed)).expect("JSON");
    let lacking: Vec<_> = json["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["lacking"].clone())
        .collect();
    assert!(lacking.contains(&serde_json::json!(["n2"])), "{json}");

    let refused = keys(&agents[0], &["use", KEY_B]);
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(message.contains("n2 do not hold it"), "{message}");
    assert!(message.contains("n2 could not read n0, n1"), "{message}");
    for agent in &agents {
        assert_eq!(
            own_keys(agent)["primary"],
            own_keys(&agents[2])["primary"],
            "nothing changed on {}",
            agent.name
        );
    }
}

#[test]
fn a_remove_of_a_primary_key_is_refused_by_the_client_and_by_each_member() {
    let dir = Scratch::new("keys-primary");
    let (agents, _files) = keyed_cluster(&dir);
    let refused = keys(&agents[0], &["remove", KEY_A]);
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(
        message.contains("it is the primary of n0, n1, n2"),
        "{message}"
    );
    let fingerprint = own_keys(&agents[0])["primary"].clone();
    let body = format!(r#"{{"fingerprint":{fingerprint}}}"#);
    let (status, answer) = agents[0].post_json("/v1/keys/remove", &body);
    assert_eq!(status, 409, "{answer}");
    assert!(answer.contains("is this member's primary"), "{answer}");
    // Forced, each member still refuses, and each refusal is reported.
    let forced = keys(&agents[0], &["remove", KEY_A, "--force"]);
    assert_eq!(forced.status.code(), Some(1));
    let text = stdout(&forced);
    assert_eq!(text.matches(": failed: ").count(), 3, "{text}");
    assert!(
        text.contains("3 online: 0 ok, 3 failed, 0 no answer"),
        "{text}"
    );
    let message = stderr(&forced);
    assert!(
        message.contains("remove not ok on 3 of 3 online members: failed on n0, n1, n2"),
        "{message}"
    );
    assert!(agents.iter().all(|agent| agent.sees_online(3)));
}

#[test]
fn a_reloaded_key_file_that_would_cut_the_node_off_is_refused_unless_forced() {
    let dir = Scratch::new("keys-foreign");
    let (mut agents, files) = keyed_cluster(&dir);
    std::fs::write(&files[0], format!("{KEY_C}\n")).expect("rewritten");
    let (status, body) = agents[0].post("/v1/keys/reload");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("n0 could not read n1, n2"), "{body}");
    assert!(body.contains("n1 could not read n0"), "{body}");
    agents[0].signal("HUP");
    let refusal = agents[0].wait_for_log("keys not reloaded; the node keeps its keys");
    assert!(
        refusal["error"]
            .as_str()
            .is_some_and(|text| text.contains("n2 could not read n0")),
        "{refusal}"
    );
    assert_eq!(
        own_keys(&agents[0])["primary"],
        own_keys(&agents[1])["primary"]
    );
    std::thread::sleep(Duration::from_millis(600));
    assert!(agents.iter().all(|agent| agent.sees_online(3)));

    // A file the others can read with is fine: the new key is only accepted.
    std::fs::write(&files[0], format!("{KEY_A}\n{KEY_C}\n")).expect("rewritten");
    let (status, body) = agents[0].post("/v1/keys/reload");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"keys\":2"), "{body}");

    // Forced, the foreign file is taken.
    std::fs::write(&files[0], format!("{KEY_C}\n")).expect("rewritten");
    let http = agents[0].http.to_string();
    let forced = run(&["reload-keys", "--force", "--http", &http]);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    assert_eq!(own_keys(&agents[0])["keys"], 1);
}

#[test]
fn generated_keys_are_fresh_and_an_agent_without_keys_installs_none() {
    let first = run(&["keys", "generate"]);
    let second = run(&["keys", "generate"]);
    let (one, two) = (stdout(&first), stdout(&second));
    for key in [&one, &two] {
        let key = key.trim();
        assert_eq!(key.len(), 64, "{key}");
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
    }
    assert_ne!(one, two);

    let keyless = Agent::start("keyless", &[]);
    let (status, body) = keyless.post_json("/v1/keys/install", &format!(r#"{{"key":"{KEY_A}"}}"#));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("runs without keys"), "{body}");
    assert_eq!(own_keys(&keyless)["keys"], 0);
    // Its packets are not sealed: it sends no key in a query.
    let installed = keys(&keyless, &["install", KEY_A]);
    assert_eq!(installed.status.code(), Some(1));
    let message = stderr(&installed);
    assert!(
        message.contains("answered 409")
            && message.contains("runs without keys")
            && message.contains("would carry the key unsealed"),
        "{message}"
    );
    // Asked over a query, it says it has none.
    let listed = keys(&keyless, &["list"]);
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    assert!(
        stdout(&listed).contains("keyless: ok (no keys)"),
        "{}",
        stdout(&listed)
    );
    // No published tags on an agent without keys.
    let tags = &keyless.members()[0]["tags"];
    assert_eq!(tags, &serde_json::json!({}));
}

#[test]
fn bad_key_requests_get_a_4xx_naming_what_is_wrong_and_change_nothing() {
    let dir = Scratch::new("keys-bad");
    let file = dir.file("a.keys", &format!("{KEY_A}\n"));
    let agent = Agent::start("bad-keys", &["--key-file", path_str(&file)]);
    let cases: [(&str, &str, u16, &str); 6] = [
        (
            "/v1/keys/install",
            r#"{"key":"zz"}"#,
            422,
            "bad key: a key is hex digits only",
        ),
        (
            "/v1/keys/install",
            r#"{"kee":"00"}"#,
            422,
            "unknown field `kee`, expected `key`",
        ),
        ("/v1/keys/install", "{", 400, "expected e.g."),
        (
            "/v1/keys/use",
            r#"{"fingerprint":"0000000000000000"}"#,
            409,
            "does not hold key 0000000000000000",
        ),
        (
            "/v1/keys/use",
            r#"{"fingerprint":"xyz"}"#,
            422,
            "`xyz` is not a key fingerprint",
        ),
        (
            "/v1/keys/remove",
            r#"{"fingerprint":"0000000000000000"}"#,
            200,
            "\"changed\":false",
        ),
    ];
    for (path, body, status, message) in cases {
        let (got, answer) = agent.post_json(path, body);
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert!(answer.contains(message), "{path} {body}: {answer}");
    }
    let (status, answer) = agent.post("/v1/keys/reload?force=maybe");
    assert_eq!(status, 400, "{answer}");
    assert_eq!(own_keys(&agent)["keys"], 1);
    let text = std::fs::read_to_string(&file).expect("the key file");
    assert_eq!(text, format!("{KEY_A}\n"), "never rewritten");
}

#[test]
fn a_member_that_does_not_answer_is_reported_and_judged_by_its_tag() {
    let dir = Scratch::new("keys-silent");
    // A stopped member stays suspect, so online, for the whole test.
    let (agents, _files) = keyed_cluster_with(&dir, &["--suspicion-min", "60s"]);
    agents[2].signal("STOP");

    let installed = keys(&agents[0], &["install", KEY_B, "--timeout", "1s"]);
    assert_eq!(installed.status.code(), Some(1), "{}", stdout(&installed));
    let text = stdout(&installed);
    assert!(
        text.contains("n0: done") && text.contains("n1: done"),
        "{text}"
    );
    assert!(
        text.contains("n2: no answer (its `beethoven.keys` tag says primary"),
        "{text}"
    );
    assert!(
        text.contains("3 online: 2 ok, 0 failed, 1 no answer"),
        "{text}"
    );
    let message = stderr(&installed);
    assert!(
        message.contains("install not ok on 1 of 3 online members: no answer from n2"),
        "{message}"
    );

    // n2 did not get the key: using it is refused, judged by n2's tag.
    let refused = keys(&agents[0], &["use", KEY_B, "--timeout", "1s"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(
        message.contains("answered 409")
            && message.contains("n2 do not hold it (n2 could not read n0, n1)")
            && message.contains("judged by their `beethoven.keys` tag: n2"),
        "{message}"
    );
    assert_eq!(
        own_keys(&agents[0])["primary"],
        own_keys(&agents[1])["primary"]
    );

    // Back, n2 answers (it may have taken the first install late, from the
    // packets waiting for it): the install completes and the use goes through.
    agents[2].signal("CONT");
    let installed = keys(&agents[0], &["install", KEY_B]);
    assert_eq!(installed.status.code(), Some(0), "{}", stderr(&installed));
    let text = stdout(&installed);
    assert!(
        text.contains("n0: unchanged") && text.contains("3 online: 3 ok, 0 failed, 0 no answer"),
        "{text}"
    );
    let used = keys(&agents[0], &["use", KEY_B, "--json"]);
    assert_eq!(used.status.code(), Some(0), "{}", stderr(&used));
    let report: serde_json::Value = serde_json::from_str(&stdout(&used)).expect("JSON");
    assert_eq!(
        (&report["online"], &report["ok"], &report["no_answer"]),
        (
            &serde_json::json!(3),
            &serde_json::json!(3),
            &serde_json::json!(0)
        ),
        "{report}"
    );
    assert!(
        report["members"]
            .as_array()
            .expect("members")
            .iter()
            .all(|member| member["outcome"] == "ok" && member["primary"] == report["key"]),
        "{report}"
    );
}

#[test]
fn reserved_names_are_refused_to_users_and_keys_queries_never_reach_their_handlers() {
    let dir = Scratch::new("keys-reserved");
    let file = dir.file("r.keys", &format!("{KEY_A}\n"));
    let seen = dir.0.join("seen.txt");
    let handler = dir.file(
        "record.sh",
        &format!(
            "#!/bin/sh\necho \"$BEETHOVEN_QUERY_NAME\" >> {}\necho answered\n",
            path_str(&seen)
        ),
    );
    std::fs::set_permissions(&handler, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let spec = format!("query={}", path_str(&handler));
    let agent = Agent::start(
        "reserved",
        &["--key-file", path_str(&file), "--event-handler", &spec],
    );
    let mut stream = TcpStream::connect(agent.http).expect("the HTTP port answers");
    stream.set_read_timeout(Some(DEADLINE)).expect("a timeout");
    stream
        .write_all(b"GET /v1/events?snapshot=false HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("the request is sent");
    let mut events = BufReader::new(stream);

    // A keys query, then a user query: the handler and the stream see only
    // the user's.
    let installed = keys(&agent, &["install", KEY_B]);
    assert_eq!(installed.status.code(), Some(0), "{}", stderr(&installed));
    assert!(stdout(&installed).contains("reserved: done"));
    let http = agent.http.to_string();
    let asked = run(&["query", "hello", "--timeout", "1s", "--http", &http]);
    assert!(
        stdout(&asked).contains("response from reserved: answered"),
        "{}",
        stdout(&asked)
    );
    assert_eq!(
        std::fs::read_to_string(&seen).expect("the handler ran"),
        "hello\n"
    );
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(events.read_line(&mut line).expect("the stream"), 0);
        assert!(!line.contains("\"name\":\"beethoven."), "{line}");
        assert!(!line.contains(KEY_B), "{line}");
        if line.contains("\"event\":\"query\"") {
            assert!(line.contains("\"name\":\"hello\""), "{line}");
            break;
        }
    }

    // Users cannot name a query or an event under the prefix.
    for args in [
        vec!["query", "beethoven.keys.install", KEY_C],
        vec!["query", "beethoven.mine"],
        vec!["event", "beethoven.keys.list"],
    ] {
        let output = run_with(beethoven().args(&args).args(["--http", &http]));
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {message}");
        assert!(
            message.contains("answered 422")
                && message.contains("is reserved: names starting with `beethoven.`"),
            "{args:?}: {message}"
        );
    }
    assert_eq!(own_keys(&agent)["keys"], 2, "KEY_C was never installed");
    assert_eq!(
        std::fs::read_to_string(&seen).expect("the handler ran"),
        "hello\n"
    );
}
