//! The client subcommands: they ask a running agent over its HTTP API.

#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};

use beethoven_tokio::{Tags, TrackerRow, timestamp};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;

use crate::auth::{TOKEN_ENV, Token};
use crate::error::AgentError;
use crate::events::Payload;
use crate::tags;

/// The agent's address when none is given: the `--http` the README uses.
pub(crate) const DEFAULT_AGENT: &str = "127.0.0.1:7947";

/// The longest wait for an answer when `--timeout` is not given.
const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where the agent's HTTP API listens, and how to ask it.
#[derive(Args, Clone, Debug)]
pub(crate) struct Agent {
    /// The agent's `--http` address.
    #[arg(long, env = "BEETHOVEN_HTTP_ADDR", value_name = "IP:PORT", default_value = DEFAULT_AGENT)]
    pub(crate) http: String,
    /// File whose first line is the agent's HTTP token (changes need it, and
    /// off loopback every request does); or set `BEETHOVEN_HTTP_TOKEN`.
    #[arg(long, env = "BEETHOVEN_HTTP_TOKEN_FILE", value_name = "FILE")]
    pub(crate) http_token_file: Option<std::path::PathBuf>,
    /// Longest wait for the agent's answer, 10s when not given (`monitor`:
    /// for it to start answering; `query`: the query's own timeout; `keys`:
    /// each of its queries' timeout).
    #[arg(long, value_name = "DURATION")]
    pub(crate) timeout: Option<crate::config::HumanDuration>,
    /// PEM file of the CA (or self-signed certificate) that signed the
    /// agents' TLS certificates: speak HTTPS, trusting it only.
    #[arg(long, env = "BEETHOVEN_HTTP_CA", value_name = "FILE")]
    pub(crate) http_ca: Option<std::path::PathBuf>,
}

impl Agent {
    /// The `Authorization` header's value, if a token is configured.
    fn authorization(&self) -> Result<Option<String>, AgentError> {
        let token = match &self.http_token_file {
            Some(path) => Some(Token::read(path)?.token),
            None => Token::from_env_value(std::env::var(TOKEN_ENV).ok())?,
        };
        Ok(token.map(|token| token.bearer()))
    }

    /// The HTTP agent of one command: its timeouts, 4xx and 5xx as answers,
    /// and the CA it trusts when `--http-ca` is given.
    fn client(&self, whole_answer: bool) -> Result<ureq::Agent, AgentError> {
        let wait = Some(self.timeout.map_or(DEFAULT_WAIT, |timeout| timeout.0));
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(wait)
            .timeout_recv_response(wait)
            .timeout_global(if whole_answer { wait } else { None });
        if let Some(path) = &self.http_ca {
            config = config.tls_config(crate::tls::client_config(path)?);
        }
        Ok(config.build().new_agent())
    }

    /// The URL of `path` on the agent: `--http` may carry its scheme
    /// (`https://10.0.0.7:7947`); without one, HTTPS when a CA is given.
    pub(crate) fn url(&self, path: &str) -> String {
        if self.http.contains("://") {
            return format!("{}{path}", self.http.trim_end_matches('/'));
        }
        let scheme = if self.http_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{path}", self.http)
    }
}

/// A 4xx or 5xx answer, quoted: the agent was reached and said no.
fn refused(url: &str, status: ureq::http::StatusCode, body: String) -> AgentError {
    AgentError::Refused {
        url: url.to_owned(),
        status: status.as_u16(),
        message: error_message(body),
    }
}

/// `beethoven members`.
#[derive(Args, Clone, Debug)]
pub(crate) struct MembersArgs {
    #[command(flatten)]
    agent: Agent,
    /// Only members with this status: `online` or `offline`.
    #[arg(long)]
    status: Option<String>,
    /// Only members with this health: `alive`, `suspect`, `dead` or `left`.
    #[arg(long)]
    health: Option<String>,
    /// Only members with this tag: `key` (any value) or `key=value`;
    /// repeatable (a member must have them all).
    #[arg(long, value_name = "KEY[=VALUE]")]
    tag: Vec<String>,
    /// Only members whose name matches this glob (`*` any run of characters,
    /// `?` one), e.g. `api-*`.
    #[arg(long, value_name = "GLOB")]
    name: Option<String>,
    /// Print the JSON rows instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints the members the agent knows, as a table like `serf members`.
pub(crate) fn members(args: &MembersArgs) -> Result<(), AgentError> {
    let filters: Vec<String> = [
        ("status", args.status.as_ref()),
        ("health", args.health.as_ref()),
        ("name", args.name.as_ref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| (name, value)))
    .chain(args.tag.iter().map(|tag| ("tag", tag)))
    .map(|(name, value)| format!("{name}={}", query_escape(value)))
    .collect();
    let mut path = "/v1/members".to_owned();
    if !filters.is_empty() {
        path.push('?');
        path.push_str(&filters.join("&"));
    }
    let rows: Vec<TrackerRow> = request(&args.agent, "GET", &path, None)?;
    if args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| AgentError::Client {
            url: path.clone(),
            reason: e.to_string(),
        })?;
        println!("{text}");
        return Ok(());
    }
    print!("{}", table(&rows));
    Ok(())
}

/// `beethoven monitor`.
#[derive(Args, Clone, Debug)]
pub(crate) struct MonitorArgs {
    #[command(flatten)]
    agent: Agent,
    /// Only what happens from now on: skip the current table (`tracker`
    /// writes and the mode) the stream starts with.
    #[arg(long)]
    no_snapshot: bool,
}

/// Follows the agent's `GET /v1/events` and prints each JSON line as it comes,
/// until the agent's node stops (like `serf monitor`).
pub(crate) fn monitor(args: &MonitorArgs) -> Result<(), AgentError> {
    let path = if args.no_snapshot {
        "/v1/events?snapshot=false"
    } else {
        "/v1/events"
    };
    let mut stdout = std::io::stdout().lock();
    follow(&args.agent, path, None, "stopped", |text, _| {
        // A closed stdout (`monitor | head`) ends the command quietly.
        writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .is_ok()
    })
}

/// Reads an NDJSON answer of the agent (a `GET`, or a `POST` of `json`) line
/// by line, handing each to `each` (the text and its JSON) until it returns
/// false or the stream ends. The agent may close the connection right after
/// a line whose `event` is `last`: a cut after it is the end.
fn follow(
    agent: &Agent,
    path: &str,
    json: Option<&str>,
    last: &str,
    mut each: impl FnMut(&str, &serde_json::Value) -> bool,
) -> Result<(), AgentError> {
    let url = agent.url(path);
    let failed = |reason: String| AgentError::Client {
        url: url.clone(),
        reason,
    };
    let client = agent.client(false)?;
    let authorization = agent.authorization()?;
    let sent = match json {
        Some(json) => {
            let mut post = client.post(&url).header("content-type", "application/json");
            if let Some(value) = &authorization {
                post = post.header("authorization", value);
            }
            post.send(json)
        }
        None => {
            let mut get = client.get(&url);
            if let Some(value) = &authorization {
                get = get.header("authorization", value);
            }
            get.call()
        }
    };
    let mut response = sent.map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.body_mut().read_to_string().unwrap_or_default();
        return Err(refused(&url, status, body));
    }
    let lines = BufReader::new(response.into_body().into_reader()).lines();
    let mut ended = false;
    for text in lines {
        let text = match text {
            Ok(text) => text,
            Err(_) if ended => break,
            Err(error) => return Err(failed(error.to_string())),
        };
        let value = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
        ended = value["event"] == last;
        if !each(&text, &value) {
            break;
        }
    }
    Ok(())
}

/// The agent's error message in a 4xx or 5xx body (`{"error": ...}`), else the body.
fn error_message(body: String) -> String {
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or(body)
}

/// `beethoven tags`.
#[derive(Subcommand, Clone, Debug)]
pub(crate) enum TagsCommand {
    /// Set these tags on the agent, keeping its others (`PATCH /v1/tags`). The
    /// change spreads to the cluster like any other.
    Set(TagsSetArgs),
    /// Replace all the agent's tags with these (none given: no tags).
    Replace(TagsSetArgs),
    /// Remove tags from the agent by key.
    Delete(TagsDeleteArgs),
}

/// `beethoven tags delete KEY...`.
#[derive(Args, Clone, Debug)]
pub(crate) struct TagsDeleteArgs {
    #[command(flatten)]
    agent: Agent,
    /// The keys of the tags to remove.
    #[arg(value_name = "KEY", required = true)]
    keys: Vec<String>,
}

/// `beethoven tags set key=value...`.
#[derive(Args, Clone, Debug)]
pub(crate) struct TagsSetArgs {
    #[command(flatten)]
    agent: Agent,
    /// The node's new tags.
    #[arg(value_name = "KEY=VALUE")]
    tags: Vec<String>,
}

/// Runs a `beethoven tags` command.
pub(crate) fn tags(command: &TagsCommand) -> Result<(), AgentError> {
    let now: Tags = match command {
        TagsCommand::Set(args) | TagsCommand::Replace(args) => {
            let tags = tags::parse(&args.tags).map_err(AgentError::BadTag)?;
            let body = serde_json::to_string(&tags).map_err(|e| AgentError::Client {
                url: "/v1/tags".to_owned(),
                reason: e.to_string(),
            })?;
            let method = if matches!(command, TagsCommand::Set(_)) {
                "PATCH"
            } else {
                "PUT"
            };
            request(&args.agent, method, "/v1/tags", Some(&body))?
        }
        TagsCommand::Delete(args) => {
            let mut now = None;
            for key in &args.keys {
                let path = format!("/v1/tags/{}", query_escape(key));
                now = Some(request(&args.agent, "DELETE", &path, None)?);
            }
            now.unwrap_or_default()
        }
    };
    println!(
        "tags now: {}",
        if now.is_empty() {
            "none".to_owned()
        } else {
            now.to_string()
        }
    );
    Ok(())
}

/// `beethoven info`: the agent's own facts, as `serf info`.
pub(crate) fn info(agent: &Agent, json: bool) -> Result<(), AgentError> {
    let answer: serde_json::Value = request(agent, "GET", "/v1/info", None)?;
    if json {
        println!("{answer:#}");
        return Ok(());
    }
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    for key in [
        "name",
        "cluster",
        "addr",
        "bound",
        "incarnation",
        "mode",
        "version",
        "uptime_seconds",
        "encrypted",
        "keys",
    ] {
        println!("{key:<16}{}", text(&answer[key]));
    }
    let members = &answer["members"];
    let counts: Vec<String> = [
        "total", "online", "offline", "alive", "suspect", "dead", "left",
    ]
    .iter()
    .map(|key| format!("{key} {}", text(&members[key])))
    .collect();
    println!("{:<16}{}", "members", counts.join(", "));
    println!("{:<16}{}", "tags", text(&answer["tags"]));
    Ok(())
}

/// `beethoven join ADDR...`: the agent joins through these seeds now.
pub(crate) fn join(agent: &Agent, seeds: &[String]) -> Result<(), AgentError> {
    let body = serde_json::json!({ "seeds": seeds }).to_string();
    let _: serde_json::Value = request(agent, "POST", "/v1/join", Some(&body))?;
    println!("joining through {}", seeds.join(", "));
    Ok(())
}

/// `beethoven force-leave NAME [--prune]`.
pub(crate) fn force_leave(agent: &Agent, name: &str, prune: bool) -> Result<(), AgentError> {
    let body = serde_json::json!({ "name": name, "prune": prune }).to_string();
    let _: serde_json::Value = request(agent, "POST", "/v1/force-leave", Some(&body))?;
    if prune {
        println!("{name} marked left and pruned from every member's table");
    } else {
        println!("{name} marked left");
    }
    Ok(())
}

/// `beethoven event NAME [PAYLOAD | -]`.
#[derive(Args, Clone, Debug)]
pub(crate) struct EventArgs {
    #[command(flatten)]
    agent: Agent,
    /// The event's name (up to 128 bytes by default).
    name: String,
    /// The payload (up to 1 KB by default); `-` reads it from stdin, bytes
    /// as they are. None: an empty payload.
    payload: Option<String>,
}

/// `beethoven event`: the agent sends a user event to every other live member
/// (`POST /v1/event`). A refusal (bad name or payload, too fast) is the
/// agent's 4xx, quoted; nothing was sent.
pub(crate) fn event(args: &EventArgs) -> Result<(), AgentError> {
    let payload = payload_arg(args.payload.as_deref())?;
    let form = Payload::of(&payload);
    let body = serde_json::json!({
        "name": args.name,
        "payload": form.payload,
        "base64": form.base64,
    })
    .to_string();
    let _: serde_json::Value = request(&args.agent, "POST", "/v1/event", Some(&body))?;
    println!(
        "event `{}` sent ({} payload bytes)",
        args.name,
        payload.len()
    );
    Ok(())
}

/// A payload argument's bytes: `-` reads stdin, none is empty.
fn payload_arg(given: Option<&str>) -> Result<Vec<u8>, AgentError> {
    match given {
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes).map_err(|e| {
                AgentError::Client {
                    url: "stdin".to_owned(),
                    reason: format!("cannot read the payload: {e}"),
                }
            })?;
            Ok(bytes)
        }
        Some(text) => Ok(text.as_bytes().to_vec()),
        None => Ok(Vec::new()),
    }
}

/// `beethoven query NAME [PAYLOAD | -]`.
#[derive(Args, Clone, Debug)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    agent: Agent,
    /// The query's name (up to 128 bytes by default).
    name: String,
    /// The payload (up to 1 KB by default); `-` reads it from stdin.
    payload: Option<String>,
    /// Only members with this tag: `key` (any value) or `key=value`;
    /// repeatable (a member must have them all).
    #[arg(long, value_name = "KEY[=VALUE]")]
    tag: Vec<String>,
    /// Only these members, by name; repeatable.
    #[arg(long, value_name = "NAME")]
    node: Vec<String>,
    /// Ask each member to ack the query as soon as it has it.
    #[arg(long)]
    ack: bool,
    /// Print the agent's JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

/// `beethoven query`: the agent runs a query (`POST /v1/query`) and the acks
/// and answers are printed as they come, until the query ends (its timeout,
/// `--timeout` or the core's default, or every matching member answered).
pub(crate) fn query(args: &QueryArgs) -> Result<(), AgentError> {
    let payload = Payload::of(&payload_arg(args.payload.as_deref())?);
    // `--timeout` is the query's; the HTTP waits keep their default.
    let mut agent = args.agent.clone();
    let timeout = agent.timeout.take();
    let mut body = serde_json::json!({
        "name": args.name,
        "payload": payload.payload,
        "base64": payload.base64,
        "nodes": args.node,
        "tags": args.tag,
        "ack": args.ack,
    });
    if let Some(timeout) = timeout {
        body["timeout"] = humantime::format_duration(timeout.0).to_string().into();
    }
    let mut stdout = std::io::stdout().lock();
    follow(
        &agent,
        "/v1/query",
        Some(&body.to_string()),
        "done",
        |text, line| {
            let shown = if args.json {
                text.to_owned()
            } else {
                reply_text(line)
            };
            writeln!(stdout, "{shown}")
                .and_then(|()| stdout.flush())
                .is_ok()
        },
    )
}

/// One line of a query's answer, for people.
fn reply_text(line: &serde_json::Value) -> String {
    let text = |key: &str| line[key].as_str().unwrap_or("-").to_owned();
    match line["event"].as_str() {
        Some("ack") => format!("ack from {}", text("from")),
        Some("response") if line["base64"] == true => {
            format!(
                "response from {} (base64): {}",
                text("from"),
                text("payload")
            )
        }
        Some("response") => format!(
            "response from {}: {}",
            text("from"),
            text("payload").trim_end_matches('\n')
        ),
        Some("done") => format!(
            "done: {} responses, {} acks, of {} expected{}",
            line["responded"],
            line["acked"],
            line["expected"],
            if line["timed_out"] == true {
                " (timed out)"
            } else {
                ""
            }
        ),
        _ => line.to_string(),
    }
}

/// Percent-escapes a query value (all but unreserved characters).
fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The rows as aligned columns.
fn table(rows: &[TrackerRow]) -> String {
    let header = [
        "Name",
        "Address",
        "Status",
        "Health",
        "Incarnation",
        "Last change",
        "Tags",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.node.to_string(),
                r.addr.to_string(),
                r.status.to_string(),
                r.health.to_string(),
                r.incarnation.to_string(),
                timestamp(r.last_change),
                r.tags.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &cells {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// One request to the agent; a 4xx or 5xx answer becomes an error carrying the
/// agent's message.
pub(crate) fn request<T: DeserializeOwned>(
    agent: &Agent,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> Result<T, AgentError> {
    request_url(agent, method, &agent.url(path), json)
}

/// One request to `url` with the token and CA of `agent`.
fn request_url<T: DeserializeOwned>(
    agent: &Agent,
    method: &str,
    url: &str,
    json: Option<&str>,
) -> Result<T, AgentError> {
    let url = url.to_owned();
    let failed = |reason: String| AgentError::Client {
        url: url.clone(),
        reason,
    };
    let client = agent.client(true)?;
    let authorization = agent.authorization()?;
    let request = match method {
        "PUT" | "POST" | "PATCH" => {
            let mut send = match method {
                "PUT" => client.put(&url),
                "PATCH" => client.patch(&url),
                _ => client.post(&url),
            };
            if let Some(value) = &authorization {
                send = send.header("authorization", value);
            }
            match json {
                Some(json) => send.header("content-type", "application/json").send(json),
                None => send.send_empty(),
            }
        }
        _ => {
            let mut ask = if method == "DELETE" {
                client.delete(&url)
            } else {
                client.get(&url)
            };
            if let Some(value) = &authorization {
                ask = ask.header("authorization", value);
            }
            ask.call()
        }
    };
    let mut response = request.map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| failed(e.to_string()))?;
    if !status.is_success() {
        return Err(refused(&url, status, body));
    }
    serde_json::from_str(&body).map_err(|e| failed(format!("unexpected answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_its_columns() {
        let row = |name: &str, health: &str| -> TrackerRow {
            let json = format!(
                r#"{{"node":"{name}","addr":"127.0.0.1:7946","health":"{health}","incarnation":3,"last_change":"2026-01-01T00:00:00.000Z","tags":{{"role":"db"}}}}"#
            );
            serde_json::from_str(&json).expect("a row in its one form")
        };
        let text = table(&[row("a", "alive"), row("long-name", "dead")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("Name       Address"));
        assert!(lines[1].starts_with("a          127.0.0.1:7946  online "));
        assert!(lines[2].starts_with("long-name  127.0.0.1:7946  offline  dead"));
        assert!(
            lines[0].ends_with("Last change               Tags"),
            "{text}"
        );
        assert!(lines[1].ends_with(".000Z  role=db"), "{text}");
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("role=db"), "role%3Ddb");
        assert_eq!(query_escape("a b&c"), "a%20b%26c");
    }
}
