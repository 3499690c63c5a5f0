//! Real `beethoven agent` processes on loopback: a cluster forms, the client
//! and the HTTP API see it, keys rotate live, and agents leave on SIGTERM and
//! over HTTP.

mod support;

use std::time::Duration;

use support::{
    Agent, Scratch, beethoven, eventually, names, path_str, run, run_with, stdout, tags_of,
};

const KEY_A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const KEY_B: &str = "0202020202020202020202020202020202020202020202020202020202020202";

/// Three agents joined through the first, each seeing all online.
fn cluster(extra: impl Fn(usize) -> Vec<String>) -> Vec<Agent> {
    let args = |i: usize| extra(i);
    let first_args = args(0);
    let first = Agent::start(
        "n0",
        &first_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let seed = first.udp.to_string();
    let mut agents = vec![first];
    for i in 1..3 {
        let mut own = args(i);
        own.extend(["--seed".to_owned(), seed.clone()]);
        let own: Vec<&str> = own.iter().map(String::as_str).collect();
        agents.push(Agent::start(&format!("n{i}"), &own));
    }
    eventually("every agent sees three online", || {
        agents.iter().all(|agent| agent.sees_online(3))
    });
    agents
}

#[test]
fn agents_form_a_cluster_that_the_client_and_the_api_show_and_leave_it_cleanly() {
    let mut agents = cluster(|_| Vec::new());
    let http = agents[0].http.to_string();

    let table = run(&["members", "--http", &http]);
    assert_eq!(table.status.code(), Some(0));
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("Name"), "{text}");
    for (line, name) in lines[1..].iter().zip(["n0", "n1", "n2"]) {
        assert!(
            line.starts_with(name) && line.contains(" online "),
            "{text}"
        );
    }
    let json = run(&["members", "--http", &http, "--json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&json)).expect("JSON rows");
    assert_eq!(rows.len(), 3);
    let offline = run_with(
        beethoven()
            .args(["members", "--status", "offline"])
            .env("BEETHOVEN_HTTP_ADDR", &http),
    );
    assert_eq!(stdout(&offline).lines().count(), 1, "the header only");

    let (status, metrics) = agents[0].get("/metrics");
    assert_eq!(status, 200);
    for line in [
        "beethoven_members{status=\"online\"} 3",
        "beethoven_clustered 1",
        "beethoven_dropped_packets_total{reason=\"authentication\"} 0",
    ] {
        assert!(metrics.contains(line), "`{line}` in:\n{metrics}");
    }
    assert!(metrics.contains("beethoven_datagrams_received_total "));
    let (status, page) = agents[0].get("/");
    assert_eq!(status, 200);
    assert!(page.contains("<title>Beethoven cluster</title>"));
    let (status, health) = agents[0].get("/v1/health");
    assert_eq!(status, 200);
    assert!(health.contains("\"mode\":\"clustered\""), "{health}");

    // SIGTERM: the agent leaves, so the others see it left, not dead.
    agents[2].signal("TERM");
    assert_eq!(agents[2].wait().code(), Some(0));
    // Over HTTP: the same.
    let (status, body) = agents[1].post("/v1/leave");
    assert_eq!(status, 200, "{body}");
    assert_eq!(agents[1].wait().code(), Some(0));
    eventually("n0 sees both left", || {
        let rows = agents[0].members();
        ["n1", "n2"].iter().all(|name| {
            rows.iter().any(|row| {
                row["node"] == *name && row["health"] == "left" && row["status"] == "offline"
            })
        })
    });
    let (_, health) = agents[0].get("/v1/health");
    assert!(health.contains("\"mode\":\"standalone\""), "{health}");
}

#[test]
fn keys_rotate_across_three_running_agents_with_no_node_going_offline() {
    let dir = Scratch::new("rotate");
    let files: Vec<_> = (0..3)
        .map(|i| dir.file(&format!("n{i}.keys"), &format!("{KEY_A}\n")))
        .collect();
    let paths: Vec<String> = files.iter().map(|p| path_str(p).to_owned()).collect();
    let mut agents = cluster(|i| vec!["--key-file".to_owned(), paths[i].clone()]);

    // Accept the new key, seal with it, drop the old: each step on every node
    // before the next. The first agent reloads on SIGHUP, the others over HTTP.
    let steps = [
        format!("{KEY_A}\n{KEY_B}\n"),
        format!("{KEY_B}\n{KEY_A}\n"),
        format!("{KEY_B}\n"),
    ];
    for (step, keys) in steps.iter().enumerate() {
        for file in &files {
            std::fs::write(file, keys).expect("the key file is rewritten");
        }
        let reloaded_before = reloads(&agents[0]);
        agents[0].signal("HUP");
        eventually("n0 reloaded on SIGHUP", || {
            reloads(&agents[0]) > reloaded_before
        });
        for agent in &agents[1..] {
            let (status, body) = agent.post("/v1/keys/reload");
            assert_eq!(status, 200, "{body}");
            let expected = if step == 2 { 1 } else { 2 };
            assert!(body.contains(&format!("\"keys\":{expected}")), "{body}");
        }
        // A few probe rounds under the new keys.
        std::thread::sleep(Duration::from_millis(800));
        assert!(
            agents.iter().all(|a| a.sees_online(3)),
            "still all online after step {step}"
        );
    }
    for agent in &agents {
        let offline_news = agent
            .log()
            .into_iter()
            .filter(|line| line["message"] == "node update" && line["status"] == "offline")
            .count();
        assert_eq!(
            offline_news, 0,
            "{} never saw anyone go offline",
            agent.name
        );
        let (_, metrics) = agent.get("/metrics");
        assert!(metrics.contains("beethoven_dropped_packets_total{reason=\"authentication\"} 0"));
    }

    // A node still on the old key is refused, and both sides say so.
    let stale_keys = dir.file("stale.keys", &format!("{KEY_A}\n"));
    let mut stale = Agent::start(
        "stale",
        &[
            "--key-file",
            path_str(&stale_keys),
            "--seed",
            &agents[0].udp.to_string(),
        ],
    );
    let warning = agents[0].wait_for_log("dropped packets sealed with a key this node does not hold (check the key files of every node)");
    assert_eq!(
        warning["from"],
        stale.udp.to_string(),
        "the seed names the sender"
    );
    let seed = agents[0].udp.to_string();
    let warning = stale.wait_for_log(&format!(
        "join failed: seed {seed} could not open our packets: a different key or cluster name (it holds none of our keys); running standalone and re-probing the seeds slowly"
    ));
    assert_eq!(warning["seed"], seed, "the joiner names the seed");
    assert_eq!(warning["reason"], "key_mismatch");
    assert_eq!(agents[0].status_of("stale"), None, "never let in");
    // A bad key file on reload changes nothing.
    std::fs::write(&files[1], "not a key\n").expect("rewritten");
    let (status, body) = agents[1].post("/v1/keys/reload");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("line 1: a key is"), "{body}");
    assert!(agents[1].sees_online(3));
}

/// How many times `agent` logged that its keys were reloaded.
fn reloads(agent: &Agent) -> usize {
    agent
        .log()
        .iter()
        .filter(|line| line["message"] == "keys reloaded")
        .count()
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_config_file() {
    let dir = Scratch::new("precedence");
    let file = dir.file(
        "agent.toml",
        "name = \"from-file\"\ncluster = \"shop\"\nprobe_interval = \"200ms\"\n",
    );
    let name_of = |agent: &Agent| {
        let (_, health) = agent.get("/v1/health");
        let health: serde_json::Value = serde_json::from_str(&health).expect("JSON");
        health["name"].as_str().expect("a name").to_owned()
    };
    let from_file = Agent::start_with(&["--config", path_str(&file)], &[]);
    assert_eq!(name_of(&from_file), "from-file");
    let from_env = Agent::start_with(
        &["--config", path_str(&file)],
        &[("BEETHOVEN_NAME", "from-env")],
    );
    assert_eq!(name_of(&from_env), "from-env");
    let from_flag = Agent::start_with(
        &["--config", path_str(&file), "--name", "from-flag"],
        &[("BEETHOVEN_NAME", "from-env")],
    );
    assert_eq!(name_of(&from_flag), "from-flag");
}

#[test]
fn a_second_live_process_under_a_taken_name_stops_with_status_3() {
    let first = Agent::start("twin", &[]);
    let mut second = Agent::start("twin", &["--seed", &first.udp.to_string()]);
    assert_eq!(
        second.wait().code(),
        Some(3),
        "the later process gives the name up"
    );
    let lost = second
        .log()
        .into_iter()
        .find(|line| line["level"] == "ERROR")
        .expect("an error line says why");
    let message = lost["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "this node's name is taken by another live process, which started first and keeps it"
        ),
        "{lost}"
    );
    assert_eq!(lost["winner"], first.udp.to_string());
    assert_eq!(first.get("/v1/health").0, 200, "the first keeps running");
}

#[test]
fn a_loopback_advertise_and_a_seed_of_the_other_family_are_warned_about() {
    let mut wildcard = Agent::start_with(&["--name", "wild", "--bind", "0.0.0.0:0"], &[]);
    wildcard.wait_for_log(
        "bound to every interface but advertising loopback: nodes on other hosts cannot reach this one; set --advertise to this host's address",
    );
    let mut mixed = Agent::start("v4", &["--seed", "[::1]:7946"]);
    mixed.wait_for_log(
        "seed of another address family than this node's: it cannot be reached from this socket",
    );
}

#[test]
fn rust_log_sets_the_filter_unless_a_log_level_is_given() {
    let levels = |extra: &[&str]| {
        let mut args = vec!["--name", "verbose"];
        args.extend_from_slice(extra);
        let mut agent = Agent::start_raw(&args, &[("RUST_LOG", "debug")]);
        agent.signal("TERM");
        assert_eq!(agent.wait().code(), Some(0));
        agent
            .log()
            .iter()
            .map(|line| line["level"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(
        levels(&[]).iter().any(|level| level == "DEBUG"),
        "RUST_LOG=debug lets debug lines through (`node stopped`)"
    );
    assert!(
        !levels(&["--log-level", "info"])
            .iter()
            .any(|level| level == "DEBUG"),
        "--log-level wins over RUST_LOG"
    );
}

#[test]
fn tags_given_at_start_and_changed_live_reach_the_other_agents_and_filter_members() {
    let agents = cluster(|i| match i {
        0 => vec!["--tag".into(), "role=seed".into()],
        1 => vec![
            "--tag".into(),
            "role=db".into(),
            "--tag".into(),
            "zone=eu-1".into(),
        ],
        _ => Vec::new(),
    });
    eventually("n2 sees the tags n0 and n1 started with", || {
        tags_of(&agents[2], "n0") == serde_json::json!({ "role": "seed" })
            && tags_of(&agents[2], "n1") == serde_json::json!({ "role": "db", "zone": "eu-1" })
    });
    assert_eq!(tags_of(&agents[2], "n2"), serde_json::json!({}));
    assert_eq!(names(&agents[2], "tag=role"), ["n0", "n1"]);
    assert_eq!(names(&agents[2], "tag=role=db"), ["n1"]);
    assert_eq!(names(&agents[2], "tag=role%3Ddb&status=online"), ["n1"]);
    assert!(names(&agents[2], "tag=role=db&status=offline").is_empty());
    assert!(names(&agents[2], "tag=rack").is_empty());

    // The client command replaces n1's tags; n0 and n2 see the change.
    let http1 = agents[1].http.to_string();
    let set = run(&[
        "tags",
        "replace",
        "--http",
        &http1,
        "role=cache",
        "tier=hot",
    ]);
    assert_eq!(set.status.code(), Some(0), "{}", support::stderr(&set));
    assert_eq!(stdout(&set).trim(), "tags now: role=cache,tier=hot");
    let changed = serde_json::json!({ "role": "cache", "tier": "hot" });
    eventually("n0 and n2 see n1's new tags", || {
        tags_of(&agents[0], "n1") == changed && tags_of(&agents[2], "n1") == changed
    });
    assert_eq!(names(&agents[0], "tag=role=db"), Vec::<String>::new());
    // PUT on n2: from no tags to some, then back to none.
    let (status, body) = agents[2].put("/v1/tags", r#"{"role":"db"}"#);
    assert_eq!(status, 200, "{body}");
    // The command is queued: the node's own row shows it a moment later.
    eventually("n2 serves its new tags", || {
        agents[2].get("/v1/tags") == (200, r#"{"role":"db"}"#.to_owned())
    });
    eventually("n0 finds n2 by its new tag", || {
        names(&agents[0], "tag=role=db") == ["n2"]
    });
    let table = run(&[
        "members",
        "--http",
        &agents[0].http.to_string(),
        "--tag",
        "role=db",
    ]);
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].ends_with("Tags"), "{text}");
    assert!(
        lines[1].starts_with("n2 ") && lines[1].ends_with("role=db"),
        "{text}"
    );
    let (status, _) = agents[2].put("/v1/tags", "{}");
    assert_eq!(status, 200);
    eventually("n1 sees n2's tags removed", || {
        tags_of(&agents[1], "n2") == serde_json::json!({})
    });
    assert!(
        agents.iter().all(|agent| agent.sees_online(3)),
        "no node went offline"
    );
}
