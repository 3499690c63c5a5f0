//! Cluster-wide keys on real agents: `beethoven keys` installs, uses and
//! removes a key on every member with the cluster whole throughout, refuses a
//! change that would cut a member off, and an agent refuses to reload a key
//! file that would cut it off.

mod support;

use std::time::Duration;

use support::{Agent, Scratch, eventually, path_str, run, stderr, stdout};

const KEY_A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const KEY_B: &str = "0202020202020202020202020202020202020202020202020202020202020202";
const KEY_C: &str = "0303030303030303030303030303030303030303030303030303030303030303";

/// Three agents, each with its own key file holding `KEY_A`, joined through
/// the first, each seeing the others' published keys.
fn keyed_cluster(dir: &Scratch) -> (Vec<Agent>, Vec<std::path::PathBuf>) {
    let files: Vec<_> = (0..3)
        .map(|i| dir.file(&format!("n{i}.keys"), &format!("{KEY_A}\n")))
        .collect();
    let first = Agent::start("n0", &["--key-file", path_str(&files[0])]);
    let seed = first.udp.to_string();
    let mut agents = vec![first];
    for (i, file) in files.iter().enumerate().skip(1) {
        agents.push(Agent::start(
            &format!("n{i}"),
            &["--key-file", path_str(file), "--seed", &seed],
        ));
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
        // A few probe rounds under the new keys.
        std::thread::sleep(Duration::from_millis(600));
        assert!(
            agents.iter().all(|agent| agent.sees_online(3)),
            "all online after {step:?}"
        );
    }
    let fingerprint_b = own_keys(&agents[0])["primary"].clone();
    assert_ne!(fingerprint_a, fingerprint_b);
    for (agent, file) in agents.iter().zip(&files) {
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
    assert_eq!(text.lines().count(), 2, "the header and one key: {text}");
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
    assert!(stderr(&forced).contains("remove failed on 3 of 3 members"));
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
