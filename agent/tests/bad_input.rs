//! Every bad input the agent can be given ends in a clear message and a
//! documented exit status, never a panic.

mod support;

use std::net::{TcpListener, UdpSocket};

use support::{Agent, Scratch, TOKEN, beethoven, path_str, request, run, run_with, stderr};

const KEY: &str = "0101010101010101010101010101010101010101010101010101010101010101";

/// Checks the exit status and that stderr holds `message` and no panic.
fn fails(output: &std::process::Output, status: i32, message: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(status), "stderr: {text}");
    assert!(text.contains(message), "expected `{message}` in: {text}");
    assert!(!text.contains("panicked"), "no panic: {text}");
}

fn agent(args: &[&str]) -> std::process::Output {
    let mut all = vec!["agent", "--bind", "127.0.0.1:0"];
    all.extend_from_slice(args);
    run(&all)
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    fails(
        &run(&["agent", "--name", "a", "--bogus"]),
        2,
        "unexpected argument '--bogus'",
    );
    fails(
        &run(&["frobnicate"]),
        2,
        "unrecognized subcommand 'frobnicate'",
    );
}

#[test]
fn version_and_help_answer_on_stdout() {
    let version = run(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        support::stdout(&version).trim(),
        format!("beethoven {}", env!("CARGO_PKG_VERSION"))
    );
    let help = run(&["agent", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(support::stdout(&help).contains("Exit status:"));
}

#[test]
fn a_bind_address_in_use_is_named() {
    let taken = UdpSocket::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("bound").to_string();
    fails(
        &run(&["agent", "--name", "a", "--bind", &addr]),
        5,
        &format!("cannot bind UDP socket at {addr}: Address already in use"),
    );
}

#[test]
fn an_http_listener_that_cannot_bind_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("bound").to_string();
    fails(
        &agent(&["--name", "a", "--http", &addr]),
        5,
        &format!("cannot bind the HTTP listener at {addr}: Address already in use"),
    );
}

#[test]
fn a_malformed_seed_is_named() {
    // A name that does not resolve is no error: see tests/operator.rs.
    fails(
        &agent(&["--name", "a", "--seed", "not a seed"]),
        4,
        "bad seed `not a seed`: expected `ip:port`, `host:port` or `cidr:port`",
    );
}

#[test]
fn an_empty_missing_or_too_long_name_is_refused() {
    fails(&agent(&["--name", ""]), 4, "bad node name ``:");
    fails(
        &agent(&[]),
        4,
        "no node name: give --name, BEETHOVEN_NAME or `name` in the config file",
    );
    let long = "n".repeat(256);
    fails(&agent(&["--name", &long]), 4, "bad node name `nnnn");
}

#[test]
fn a_missing_empty_or_malformed_key_file_is_named_with_its_line() {
    let dir = Scratch::new("keys");
    let missing = dir.0.join("missing.keys");
    fails(
        &agent(&["--name", "a", "--key-file", path_str(&missing)]),
        4,
        &format!(
            "cannot read key file {}: No such file or directory",
            missing.display()
        ),
    );
    let empty = dir.file("empty.keys", "# no key yet\n\n");
    fails(
        &agent(&["--name", "a", "--key-file", path_str(&empty)]),
        4,
        &format!("key file {} has no key", empty.display()),
    );
    let bad_hex = dir.file("hex.keys", &format!("{KEY}\nzz{}\n", &KEY[2..]));
    fails(
        &agent(&["--name", "a", "--key-file", path_str(&bad_hex)]),
        4,
        &format!(
            "key file {}, line 2: a key is hex digits only",
            bad_hex.display()
        ),
    );
    let short = dir.file("short.keys", "# rotation\n0123456789abcd\n");
    fails(
        &agent(&["--name", "a", "--key-file", path_str(&short)]),
        4,
        &format!(
            "key file {}, line 2: a key is 64 hex digits, got 14 characters",
            short.display()
        ),
    );
}

#[test]
fn an_unknown_config_key_or_bad_duration_is_named() {
    let dir = Scratch::new("config");
    let unknown = dir.file("unknown.toml", "name = \"a\"\nprobe_intervall = \"1s\"\n");
    let output = agent(&["--config", path_str(&unknown)]);
    fails(&output, 4, &format!("config file {}", unknown.display()));
    fails(&output, 4, "unknown field `probe_intervall`");
    let bad = dir.file("bad.toml", "name = \"a\"\nprobe_interval = \"fast\"\n");
    let output = agent(&["--config", path_str(&bad)]);
    fails(&output, 4, "bad duration `fast`");
    fails(&output, 4, "probe_interval");
    fails(
        &agent(&["--name", "a", "--probe-interval", "fast"]),
        2,
        "invalid value 'fast' for '--probe-interval <DURATION>'",
    );
    fails(
        &run_with(
            beethoven()
                .args(["agent", "--name", "a"])
                .env("BEETHOVEN_LEAVE_TIMEOUT", "soon"),
        ),
        4,
        "bad environment variable BEETHOVEN_LEAVE_TIMEOUT=`soon`: bad duration `soon`",
    );
    fails(
        &run_with(
            beethoven()
                .args(["agent", "--name", "a"])
                .env("BEETHOVEN_PROBE_INTERVAL", "fast"),
        ),
        4,
        "BEETHOVEN_PROBE_INTERVAL",
    );
    fails(
        &run_with(
            beethoven()
                .args(["agent", "--name", "a"])
                .env("BEETHOVEN_LOG_FORMAT", "xml"),
        ),
        4,
        "bad environment variable BEETHOVEN_LOG_FORMAT=`xml`: expected one of text, json",
    );
    // The flag wins over the variable, and a bad flag is a usage error.
    fails(
        &run_with(
            beethoven()
                .args(["agent", "--name", "a", "--probe-interval=fast"])
                .env("BEETHOVEN_PROBE_INTERVAL", "1s"),
        ),
        2,
        "invalid value 'fast' for '--probe-interval <DURATION>'",
    );
    let missing = dir.0.join("missing.toml");
    fails(
        &agent(&["--config", path_str(&missing)]),
        4,
        &format!("cannot read config file {}", missing.display()),
    );
    fails(
        &agent(&["--name", "a", "--probe-interval", "0s"]),
        4,
        "bad protocol setting",
    );
    fails(
        &agent(&["--name", "a", "--log-level", "a=b=c"]),
        4,
        "bad log level `a=b=c`",
    );
    fails(
        &agent(&["--name", "a", "--log-level", "verbose"]),
        4,
        "unknown level `verbose`: expected one of trace, debug, info, warn, error, off",
    );
}

#[test]
fn a_malformed_tag_or_one_over_the_limits_is_named() {
    fails(
        &agent(&["--name", "a", "--tag", "role"]),
        4,
        "bad tag `role`: expected `key=value`",
    );
    fails(
        &agent(&["--name", "a", "--tag", "=db"]),
        4,
        "bad tag key ``: a key is not empty and has no `=`",
    );
    fails(
        &agent(&["--name", "a", "--tag", "a=1", "--tag", "a=2"]),
        4,
        "tag key `a` is given twice",
    );
    let huge = format!("blob={}", "x".repeat(1100));
    fails(
        &agent(&["--name", "a", "--tag", &huge]),
        4,
        "bad tags: tags take 1107 encoded bytes, over the limit of 1024",
    );
    let many: Vec<String> = (0..65).map(|i| format!("k{i}=")).collect();
    fails(
        &run_with(
            beethoven()
                .args(["agent", "--bind", "127.0.0.1:0", "--name", "a"])
                .env("BEETHOVEN_TAGS", many.join(",")),
        ),
        4,
        "bad tags: 65 tags, over the limit of 64",
    );
    let dir = Scratch::new("tags");
    let file = dir.file("tags.toml", "name = \"a\"\n[tags]\n\"a=b\" = \"c\"\n");
    fails(
        &agent(&["--config", path_str(&file)]),
        4,
        "bad tag key `a=b`",
    );
    fails(
        &run(&["tags", "set", "--http", "127.0.0.1:1", "role"]),
        4,
        "bad tag `role`: expected `key=value`",
    );
}

#[test]
fn malformed_http_requests_get_a_4xx_with_a_json_error() {
    let agent = Agent::start("http-errors", &[]);
    let json_error = |(status, body): (u16, String), expected: u16, message: &str| {
        assert_eq!(status, expected, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        let text = body["error"].as_str().expect("an error message");
        assert!(text.contains(message), "expected `{message}` in {text}");
    };
    json_error(
        agent.get("/v1/members?status=bogus"),
        400,
        "unknown status `bogus`",
    );
    json_error(
        agent.get("/v1/members?health=ill"),
        400,
        "unknown health `ill`",
    );
    json_error(
        agent.get("/v1/members?colour=red"),
        400,
        "unknown filter `colour`: expected status, health, name or tag",
    );
    json_error(
        agent.get("/v1/members?tag="),
        400,
        "empty tag filter: expected `tag=key` or `tag=key=value`",
    );
    json_error(
        agent.put("/v1/tags", "{\"role\":"),
        400,
        "expected a JSON object",
    );
    json_error(
        agent.put("/v1/tags", "[\"role=db\"]"),
        422,
        "expected a JSON object",
    );
    json_error(
        agent.put("/v1/tags", "{\"port\":7000}"),
        422,
        "expected a JSON object",
    );
    json_error(agent.put("/v1/tags", "{\"\":\"x\"}"), 422, "bad tag key ``");
    let huge = format!("{{\"blob\":\"{}\"}}", "x".repeat(1100));
    json_error(
        agent.put("/v1/tags", &huge),
        422,
        "bad tags: tags take 1107 encoded bytes",
    );
    let no_type = format!(
        "PUT /v1/tags HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let (status, body) = request(agent.http, &no_type);
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("\"error\""), "{body}");
    // Nothing was changed by the refused requests.
    assert_eq!(agent.get("/v1/tags"), (200, "{}".to_owned()));
    json_error(agent.get("/v1/nothing"), 404, "no such endpoint");
    json_error(agent.post("/v1/members"), 405, "method not allowed");
    json_error(agent.post("/v1/keys/reload"), 409, "runs without keys");
    let (status, _) = request(agent.http, "NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(status, 400, "hyper refuses a broken request line");
    // The agent still serves.
    assert_eq!(agent.get("/v1/health").0, 200);
}
