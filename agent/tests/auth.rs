//! The HTTP API's door: changes need the token, cross-site requests are
//! refused, off loopback nothing is served without a token, and every change
//! and refusal is logged with the caller's address.

mod support;

use support::{Agent, Scratch, TOKEN, beethoven, path_str, request, run_with, stderr};

/// A raw request to `agent` with extra header lines (each ending in `\r\n`).
fn send(agent: &Agent, head: &str, headers: &str, body: &str) -> (u16, String) {
    request(
        agent.http,
        &format!(
            "{head} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn json_error((status, body): (u16, String), expected: u16, message: &str) {
    assert_eq!(status, expected, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).expect("a JSON error body");
    let text = value["error"].as_str().expect("an error message");
    assert!(text.contains(message), "{text:?} lacks {message:?}");
}

#[test]
fn a_change_without_the_token_or_with_a_wrong_one_is_refused_and_changes_nothing() {
    let mut agent = Agent::start("door", &[]);
    let json = "Content-Type: application/json\r\n";
    json_error(
        send(&agent, "PUT /v1/tags", json, r#"{"role":"db"}"#),
        401,
        "needs the agent's token",
    );
    let wrong = format!("{json}Authorization: Bearer not-the-token-0123456\r\n");
    json_error(
        send(&agent, "PUT /v1/tags", &wrong, r#"{"role":"db"}"#),
        401,
        "wrong token",
    );
    assert_eq!(agent.get("/v1/tags"), (200, "{}".to_owned()));
    // Reads on loopback need no token.
    assert_eq!(agent.get("/v1/health").0, 200);
    let refusal = agent.wait_for_log("HTTP request refused");
    assert!(
        refusal["caller"]
            .as_str()
            .is_some_and(|caller| caller.starts_with("127.0.0.1:")),
        "{refusal}"
    );
}

#[test]
fn a_web_page_cannot_make_the_agent_leave() {
    // What any page in a browser on the host can send without a preflight.
    let mut agent = Agent::start("victim", &[]);
    let cross_site = format!(
        "Origin: http://evil.example\r\nContent-Type: text/plain\r\nAuthorization: Bearer {TOKEN}\r\n"
    );
    json_error(
        send(&agent, "POST /v1/leave", &cross_site, "x"),
        403,
        "cross-site request refused",
    );
    let form = format!(
        "Content-Type: application/x-www-form-urlencoded\r\nAuthorization: Bearer {TOKEN}\r\n"
    );
    json_error(
        send(&agent, "POST /v1/leave", &form, "a=b"),
        403,
        "must be JSON",
    );
    let rebinding = request(
        agent.http,
        "GET /v1/members HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
    );
    json_error(rebinding, 403, "is not this agent's");
    // Still running, still serving.
    assert_eq!(agent.get("/v1/health").0, 200);
    // The token, from no page at all, is what a change needs.
    let (status, body) = agent.post("/v1/leave");
    assert_eq!(status, 200, "{body}");
    agent.wait_for_log("change over HTTP");
    assert_eq!(agent.wait().code(), Some(0));
}

#[test]
fn without_a_token_changes_over_http_are_off_and_reads_work() {
    let agent = Agent::start_tokenless(&["--name", "tokenless"]);
    json_error(
        agent.put("/v1/tags", r#"{"role":"db"}"#),
        403,
        "changes over HTTP need a token",
    );
    json_error(
        agent.post("/v1/leave"),
        403,
        "changes over HTTP need a token",
    );
    assert_eq!(agent.members().len(), 1);
}

#[test]
fn off_loopback_the_agent_refuses_to_start_without_a_token_unless_allowed() {
    let output = run_with(
        beethoven()
            .env_remove("BEETHOVEN_HTTP_TOKEN")
            .args(["agent", "--name", "open", "--bind", "127.0.0.1:0"])
            .args(["--http", "0.0.0.0:0"]),
    );
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(stderr(&output).contains("is not on loopback and has no token"));
}

#[test]
fn token_files_that_are_missing_or_empty_stop_the_agent_naming_them() {
    let dir = Scratch::new("auth-token-files");
    let empty = dir.file("empty", "\n \n");
    for (file, message) in [
        (
            dir.file("unused", "x").with_file_name("missing"),
            "cannot read the HTTP token file",
        ),
        (empty, "is empty"),
    ] {
        let output = run_with(
            beethoven()
                .env_remove("BEETHOVEN_HTTP_TOKEN")
                .args(["agent", "--name", "t", "--bind", "127.0.0.1:0"])
                .args([
                    "--http",
                    "127.0.0.1:0",
                    "--http-token-file",
                    path_str(&file),
                ]),
        );
        assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
        assert!(stderr(&output).contains(message), "{}", stderr(&output));
        assert!(
            stderr(&output).contains(path_str(&file)),
            "{}",
            stderr(&output)
        );
    }
    let short = run_with(
        beethoven()
            .env("BEETHOVEN_HTTP_TOKEN", "short")
            .args(["agent", "--name", "t", "--bind", "127.0.0.1:0"])
            .args(["--http", "127.0.0.1:0"]),
    );
    assert_eq!(short.status.code(), Some(4), "{}", stderr(&short));
    assert!(
        stderr(&short).contains("BEETHOVEN_HTTP_TOKEN"),
        "{}",
        stderr(&short)
    );
}

#[test]
fn a_world_readable_token_file_works_with_a_warning_and_the_cli_reads_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new("auth-world-readable");
    let file = dir.file("token", "file-token-0123456789\n");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut agent = Agent::start_with(
        &["--name", "filed", "--http-token-file", path_str(&file)],
        &[],
    );
    agent.wait_for_log("the HTTP token file is readable by every user of this host: chmod 600 it");
    let http = agent.http.to_string();
    // The CLI with the wrong token (the env's) is told so, quoting the agent.
    let refused = run_with(beethoven().args(["tags", "set", "--http", &http, "role=db"]));
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("answered 401") && stderr(&refused).contains("wrong token"),
        "{}",
        stderr(&refused)
    );
    let set = run_with(
        beethoven()
            .args(["tags", "set", "--http", &http, "role=db"])
            .args(["--http-token-file", path_str(&file)]),
    );
    assert_eq!(set.status.code(), Some(0), "{}", stderr(&set));
}
