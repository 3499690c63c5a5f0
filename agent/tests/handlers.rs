//! Event handlers on real agents: a script runs on another member's join,
//! tag change and failure with the event in its environment and the member on
//! stdin; a hanging handler is killed at its timeout without holding up the
//! other handlers; a missing or unexecutable handler (of member events, user
//! events or queries) stops the agent at start, naming it.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use support::{Agent, Scratch, beethoven, eventually, path_str, run_with, stderr};

/// An executable `sh` script in `scratch`.
fn script(scratch: &Scratch, name: &str, body: &str) -> PathBuf {
    let path = scratch.file(name, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// The lines a recording handler appended to `file` so far.
fn recorded(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_handler_runs_on_a_members_join_tag_change_and_failure_with_the_event_and_the_member() {
    let scratch = Scratch::new("handlers-run");
    let log = scratch.0.join("events.log");
    let recorder = script(
        &scratch,
        "record.sh",
        &format!(
            "read member\necho \"$BEETHOVEN_EVENT|$BEETHOVEN_SELF_NAME|$BEETHOVEN_TAG_ROLE|$member\" >> {}",
            path_str(&log)
        ),
    );
    let spec = format!(
        "member-join,member-update,member-failed={}",
        path_str(&recorder)
    );
    let watcher = Agent::start("watcher", &["--tag", "role=web", "--event-handler", &spec]);
    let seed = watcher.udp.to_string();
    let other = Agent::start("other", &["--seed", &seed, "--tag", "zone=a"]);
    eventually("the join is handled", || {
        recorded(&log)
            .iter()
            .any(|line| line.starts_with("member-join|watcher|web|other\t"))
    });
    let joined = recorded(&log);
    let line = joined
        .iter()
        .find(|line| line.starts_with("member-join|"))
        .expect("seen above");
    let member: Vec<&str> = line
        .split('|')
        .nth(3)
        .expect("four fields")
        .split('\t')
        .collect();
    assert_eq!(
        member,
        [
            "other",
            other.udp.to_string().as_str(),
            "online",
            "alive",
            "zone=a"
        ]
    );

    let (status, body) = other.put("/v1/tags", r#"{"zone":"b"}"#);
    assert_eq!(status, 200, "{body}");
    eventually("the tag change is handled", || {
        recorded(&log)
            .iter()
            .any(|line| line.starts_with("member-update|") && line.ends_with("zone=b"))
    });

    other.signal("KILL");
    eventually("the failure is handled", || {
        recorded(&log)
            .iter()
            .any(|line| line.starts_with("member-failed|watcher|web|other\t"))
    });
    let (_, metrics) = watcher.get("/metrics");
    assert!(
        metrics.contains("beethoven_handler_runs_total{outcome=\"ok\"} 3"),
        "{metrics}"
    );
}

#[test]
fn a_hanging_handler_is_killed_at_its_timeout_and_holds_up_no_other_handler() {
    let scratch = Scratch::new("handlers-hang");
    let log = scratch.0.join("joins.log");
    let hang = script(&scratch, "hang.sh", "sleep 300 & wait");
    let recorder = script(&scratch, "record.sh", &format!("cat >> {}", path_str(&log)));
    let hang_spec = format!("member-join={}", path_str(&hang));
    let record_spec = format!("member-join={}", path_str(&recorder));
    let watcher = Agent::start(
        "watcher",
        &[
            "--event-handler",
            &hang_spec,
            "--event-handler",
            &record_spec,
            "--event-handler-timeout",
            "500ms",
        ],
    );
    let seed = watcher.udp.to_string();
    let _first = Agent::start("first", &["--seed", &seed]);
    let _second = Agent::start("second", &["--seed", &seed]);
    eventually("both joins reach the recording handler", || {
        let lines = recorded(&log);
        ["first\t", "second\t"]
            .iter()
            .all(|name| lines.iter().any(|line| line.starts_with(name)))
    });
    eventually("the hanging handler's runs time out, counted", || {
        let (_, metrics) = watcher.get("/metrics");
        metrics.contains("beethoven_handler_runs_total{outcome=\"timed_out\"} 2")
    });
    let (status, _) = watcher.get("/v1/health");
    assert_eq!(status, 200, "the agent still serves");
}

#[test]
fn a_missing_or_unexecutable_handler_stops_the_agent_at_start_naming_it() {
    let scratch = Scratch::new("handlers-bad");
    let plain = scratch.file("plain.sh", "#!/bin/sh\n");
    let missing = scratch.0.join("missing.sh");
    for (filters, program, says) in [
        ("member-join", &plain, "not executable"),
        ("member-join", &missing, "No such file"),
        ("user:deploy,query", &missing, "No such file"),
    ] {
        let spec = format!("{filters}={}", path_str(program));
        let output = run_with(beethoven().args([
            "agent",
            "--name",
            "n0",
            "--bind",
            "127.0.0.1:0",
            "--event-handler",
            &spec,
        ]));
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(4), "{text}");
        assert!(
            text.contains(path_str(program)) && text.contains(says),
            "{text}"
        );
    }
    let output = run_with(beethoven().args([
        "agent",
        "--name",
        "n0",
        "--event-handler",
        "member-joined=/bin/true",
    ]));
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{text}");
    assert!(
        text.contains("unknown event kind `member-joined`"),
        "{text}"
    );
}
