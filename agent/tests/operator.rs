//! The operator's verbs on real agents: `info`, `join`, `force-leave`, tag
//! merge and delete, member filters; state kept in `--data-dir` across a
//! restart; seed names that do not resolve; `--http-allow-no-token`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use support::{
    Agent, Scratch, beethoven, eventually, names, path_str, run, stderr, stdout, tags_of,
};

#[test]
fn info_merge_and_delete_of_tags_and_member_filters_work_from_the_client() {
    let a = Agent::start("api-1", &["--tag", "role=api", "--tag", "zone=eu"]);
    let seed = a.udp.to_string();
    let b = Agent::start("db-1", &["--seed", &seed, "--tag", "role=db"]);
    eventually("both see two online", || {
        a.sees_online(2) && b.sees_online(2)
    });
    let http = a.http.to_string();

    let info = run(&["info", "--http", &http, "--json"]);
    assert_eq!(info.status.code(), Some(0), "{}", stderr(&info));
    let info: serde_json::Value = serde_json::from_str(&stdout(&info)).expect("JSON");
    assert_eq!(info["name"], "api-1");
    assert_eq!(info["cluster"], "beethoven");
    assert_eq!(info["addr"], seed);
    assert_eq!(info["members"]["online"], 2);
    assert_eq!(info["members"]["alive"], 2);
    assert_eq!(info["encrypted"], false);
    assert!(info["incarnation"].is_u64(), "{info}");
    assert!(info["uptime_seconds"].is_u64(), "{info}");
    let lines = stdout(&run(&["info", "--http", &http]));
    assert!(
        lines.contains("members         total 2, online 2"),
        "{lines}"
    );

    // `tags set` merges; `tags delete` removes one key.
    let set = run(&["tags", "set", "--http", &http, "tier=hot", "role=web"]);
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
    assert_eq!(stdout(&set).trim(), "tags now: role=web,tier=hot,zone=eu");
    let deleted = run(&["tags", "delete", "--http", &http, "zone"]);
    assert_eq!(deleted.status.code(), Some(0), "{}", stderr(&deleted));
    assert_eq!(stdout(&deleted).trim(), "tags now: role=web,tier=hot");
    let absent = run(&["tags", "delete", "--http", &http, "zone"]);
    assert_eq!(absent.status.code(), Some(1));
    assert!(
        stderr(&absent).contains("answered 404: no tag `zone` on this node"),
        "{}",
        stderr(&absent)
    );
    let expected = serde_json::json!({ "role": "web", "tier": "hot" });
    eventually("b sees a's merged tags", || {
        tags_of(&b, "api-1") == expected
    });

    // Several tags, a name glob and a status.
    assert_eq!(names(&b, "tag=role=web&tag=tier"), ["api-1"]);
    assert!(names(&b, "tag=role=web&tag=zone").is_empty());
    assert_eq!(names(&b, "name=db-*"), ["db-1"]);
    assert_eq!(names(&b, "name=*-1&status=online"), ["api-1", "db-1"]);
    let (status, body) = b.get("/v1/members?name=x&name=y");
    assert_eq!(status, 400, "{body}");
    let table = run(&[
        "members",
        "--http",
        &b.http.to_string(),
        "--tag",
        "role",
        "--name",
        "api-?",
    ]);
    let text = stdout(&table);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|line| line.starts_with("api-1 "))
    );
}

#[test]
fn force_leave_refuses_unknown_and_online_members_marks_a_dead_one_left_and_prunes_it_everywhere() {
    let a = Agent::start(
        "a",
        &["--probe-interval", "200ms", "--suspicion-min", "500ms"],
    );
    let seed = a.udp.to_string();
    let b = Agent::start("b", &["--seed", &seed]);
    let c = Agent::start(
        "c",
        &[
            "--seed",
            &seed,
            "--probe-interval",
            "200ms",
            "--suspicion-min",
            "500ms",
        ],
    );
    eventually("a and c see three", || a.sees_online(3) && c.sees_online(3));
    let http = a.http.to_string();

    let unknown = run(&["force-leave", "--http", &http, "ghost"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("answered 404: no member named `ghost`"),
        "{}",
        stderr(&unknown)
    );
    let online = run(&["force-leave", "--http", &http, "b"]);
    assert_eq!(online.status.code(), Some(1));
    assert!(
        stderr(&online).contains("answered 422: `b` is online"),
        "{}",
        stderr(&online)
    );
    let (status, body) = a.send("POST", "/v1/force-leave", r#"{"nom":"b"}"#);
    assert_eq!(status, 422, "{body}");

    b.signal("KILL");
    eventually("a declares b dead", || {
        a.members()
            .iter()
            .any(|row| row["node"] == "b" && row["health"] == "dead")
    });
    let forced = run(&["force-leave", "--http", &http, "b"]);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    assert_eq!(stdout(&forced).trim(), "b marked left");
    eventually("a holds b left", || {
        a.members()
            .iter()
            .any(|row| row["node"] == "b" && row["health"] == "left")
    });
    let pruned = run(&["force-leave", "--http", &http, "b", "--prune"]);
    assert_eq!(pruned.status.code(), Some(0), "{}", stderr(&pruned));
    assert_eq!(
        stdout(&pruned).trim(),
        "b marked left and pruned from every member's table"
    );
    eventually("b is gone from a's and c's tables", || {
        a.members().len() == 2 && c.members().len() == 2
    });
    // Several anti-entropy exchanges later, b has not come back anywhere.
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert_eq!(a.status_of("b"), None);
    assert_eq!(c.status_of("b"), None);
}

#[test]
fn a_join_to_another_cluster_fails_on_both_sides_naming_the_other_address_and_the_reason() {
    let mut seed = Agent::start("seed", &["--cluster", "blue"]);
    let at = seed.udp.to_string();
    let mut joiner = Agent::start("joiner", &["--cluster", "green", "--seed", &at]);
    let warning = joiner.wait_for_log(&format!(
        "join failed: seed {at} could not open our packets: a different key or cluster name (its cluster name differs); running standalone and re-probing the seeds slowly"
    ));
    assert_eq!(warning["seed"], at);
    assert_eq!(warning["reason"], "other_cluster");
    let warning =
        seed.wait_for_log("dropped packets from another cluster (check --cluster on every node)");
    assert_eq!(
        warning["from"],
        joiner.udp.to_string(),
        "the seed names the joiner"
    );
    assert_eq!(seed.status_of("joiner"), None, "never let in");
}

#[test]
fn a_runtime_join_brings_two_standalone_agents_together() {
    let a = Agent::start("a", &[]);
    let b = Agent::start("b", &[]);
    let refused = run(&["join", "--http", &b.http.to_string(), "not-an-address"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("bad seed `not-an-address`"));
    let joined = run(&["join", "--http", &b.http.to_string(), &a.udp.to_string()]);
    assert_eq!(joined.status.code(), Some(0), "{}", stderr(&joined));
    eventually("both see two online", || {
        a.sees_online(2) && b.sees_online(2)
    });
}

#[test]
fn a_restarted_agent_keeps_its_live_tags_and_rejoins_through_saved_members() {
    let dir = Scratch::new("data-dir-restart");
    let data = dir.0.join("b");
    let a = Agent::start("a", &[]);
    let seed = a.udp.to_string();
    let c = Agent::start("c", &["--seed", &seed]);
    let mut b = Agent::start("b", &["--seed", &seed, "--data-dir", path_str(&data)]);
    eventually("everyone sees three", || {
        a.sees_online(3) && b.sees_online(3) && c.sees_online(3)
    });
    let (status, body) = b.send("PATCH", "/v1/tags", r#"{"role":"db"}"#);
    assert_eq!(status, 200, "{body}");
    let state = data.join("state.json");
    eventually("b saved its tags and the three members", || {
        std::fs::read_to_string(&state).is_ok_and(|text| {
            serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|saved| {
                saved["tags"]["role"] == "db"
                    && saved["members"]
                        .as_array()
                        .is_some_and(|rows| rows.len() == 3)
            })
        })
    });
    b.signal("KILL");
    b.wait();
    // Restarted with no seed at all: the saved members are its way back.
    let b = Agent::start("b", &["--data-dir", path_str(&data)]);
    assert_eq!(tags_of(&b, "b"), serde_json::json!({ "role": "db" }));
    // It binds a new port: a and c hold the new address only if b reached them.
    let new_addr = b.udp.to_string();
    let at_new_addr = |agent: &Agent| {
        agent
            .members()
            .iter()
            .any(|row| row["node"] == "b" && row["addr"] == new_addr && row["status"] == "online")
    };
    eventually("b is back in, seen at its new address by a and c", || {
        b.sees_online(3) && at_new_addr(&a) && at_new_addr(&c)
    });
    assert!(b.logged("member table restored from the data folder"));
    assert!(
        !b.log().iter().any(|line| line["message"]
            .as_str()
            .unwrap_or("")
            .contains("name is taken")),
        "a restart is no name conflict"
    );
}

#[test]
fn a_corrupt_truncated_or_foreign_state_file_is_named_and_the_agent_starts_without_it() {
    let dir = Scratch::new("data-dir-bad");
    let state = dir.0.join("state.json");
    let good = r#"{"format":1,"cluster":"beethoven","node":"a","tags":{"role":"db"},"members":[]}"#;
    let foreign = good.replace("\"beethoven\"", "\"other\"");
    let cases = [
        ("not json", "is corrupt or truncated"),
        (&good[..good.len() / 2], "is corrupt or truncated"),
        (foreign.as_str(), "belongs to cluster `other`"),
    ];
    for (text, expected) in cases {
        std::fs::write(&state, text).expect("a state file");
        let agent = Agent::start("a", &["--data-dir", path_str(&dir.0)]);
        let warning = agent
            .log()
            .into_iter()
            .find(|line| line["message"] == "the saved state is not used; starting without it")
            .unwrap_or_else(|| panic!("a warning for {text:?}"));
        let error = warning["error"].as_str().expect("the reason");
        assert!(error.contains(path_str(&state)), "{error}");
        assert!(error.contains(expected), "{error}");
        assert_eq!(tags_of(&agent, "a"), serde_json::json!({}));
    }
}

#[test]
fn an_unresolvable_seed_beside_a_good_one_still_joins_through_the_good_one() {
    let a = Agent::start("a", &[]);
    let seed = a.udp.to_string();
    let b = Agent::start(
        "b",
        &["--seed", "no-such-seed.invalid:7946", "--seed", &seed],
    );
    eventually("b joins through the good seed", || {
        a.sees_online(2) && b.sees_online(2)
    });
    assert!(b.log().iter().any(|line| {
        line["message"]
            == "seed name does not resolve; the agent starts without it and keeps trying"
            && line["seed"] == "no-such-seed.invalid:7946"
    }));
}

#[test]
fn an_agent_with_only_an_unresolvable_seed_keeps_running_and_retrying() {
    let mut b = Agent::start("b", &["--seed", "no-such-seed.invalid:7946"]);
    eventually("b tries the name again", || {
        b.log()
            .iter()
            .any(|line| line["message"] == "seed name still does not resolve; trying again")
    });
    assert_eq!(b.members().len(), 1, "b runs standalone meanwhile");
    b.signal("TERM");
    assert!(b.wait().success(), "b exits only when told to, cleanly");
}

#[test]
fn with_allow_no_token_the_agent_starts_off_loopback() {
    let mut child = beethoven()
        .env_remove("BEETHOVEN_HTTP_TOKEN")
        .args(["agent", "--name", "open", "--bind", "127.0.0.1:0"])
        .args(["--http", "0.0.0.0:0", "--http-allow-no-token"])
        .args(["--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the built binary runs");
    let lines = BufReader::new(child.stderr.take().expect("piped"));
    let mut warned = false;
    let mut started = false;
    for line in lines.lines().map_while(Result::ok) {
        let line: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        let message = line["message"].as_str().unwrap_or_default();
        warned |= message.starts_with("the HTTP API is off loopback without a token");
        if message == "agent started" {
            started = line["http"]
                .as_str()
                .is_some_and(|http| http.starts_with("0.0.0.0:"));
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(started, "the agent started on 0.0.0.0");
    assert!(warned, "with a warning");
}

#[test]
fn a_node_paused_until_declared_dead_warns_once_when_it_comes_back() {
    let a = Agent::start(
        "a",
        &["--probe-interval", "200ms", "--suspicion-min", "500ms"],
    );
    let b = Agent::start("b", &["--seed", &a.udp.to_string()]);
    eventually("a sees b", || a.sees_online(2));
    b.signal("STOP");
    eventually("a declares b dead", || {
        a.members()
            .iter()
            .any(|row| row["node"] == "b" && row["health"] == "dead")
    });
    b.signal("CONT");
    eventually("b is back online for a", || a.sees_online(2));
    let warning = "this node was declared dead by the cluster while it was paused or starved (longer than the suspicion timeout); refuting and coming back";
    eventually("b warns", || b.logged(warning));
    // A few more gossip rounds: the old news keeps arriving, the warning does not.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let count = b
        .log()
        .iter()
        .filter(|line| line["message"] == warning)
        .count();
    assert_eq!(count, 1, "once");
}

#[test]
fn a_data_dir_that_cannot_be_made_stops_the_agent_naming_it() {
    let dir = Scratch::new("data-dir-file");
    let file = dir.file("not-a-folder", "");
    let output = run(&[
        "agent",
        "--name",
        "a",
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        path_str(&file),
    ]);
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("cannot use the data folder {}", file.display())),
        "{}",
        stderr(&output)
    );
}
