//! The client subcommands: they ask a running agent over its HTTP API.

#![allow(clippy::print_stdout)]

use clap::Args;
use serde::de::DeserializeOwned;

use crate::error::AgentError;
use crate::http::MemberRow;

/// Where the agent's HTTP API listens.
#[derive(Args, Clone, Debug)]
pub(crate) struct Agent {
    /// The agent's `--http` address.
    #[arg(long, env = "BEETHOVEN_HTTP", value_name = "IP:PORT")]
    pub(crate) http: String,
}

/// `beethoven members`.
#[derive(Args, Clone, Debug)]
pub(crate) struct MembersArgs {
    #[command(flatten)]
    agent: Agent,
    /// Only members with this status: `online` or `offline`.
    #[arg(long)]
    status: Option<String>,
    /// Print the JSON rows instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints the members the agent knows, as a table like `serf members`.
pub(crate) fn members(args: &MembersArgs) -> Result<(), AgentError> {
    let mut path = "/v1/members".to_owned();
    if let Some(status) = &args.status {
        path.push_str("?status=");
        path.push_str(status);
    }
    let rows: Vec<MemberRow> = request(&args.agent, "GET", &path)?;
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

/// `beethoven reload-keys`: the agent re-reads its key file.
pub(crate) fn reload_keys(agent: &Agent) -> Result<(), AgentError> {
    let answer: serde_json::Value = request(agent, "POST", "/v1/keys/reload")?;
    println!(
        "reloaded {} key(s) from {}",
        answer["keys"],
        answer["file"].as_str().unwrap_or("the key file")
    );
    Ok(())
}

/// The rows as aligned columns.
fn table(rows: &[MemberRow]) -> String {
    let header = [
        "Name",
        "Address",
        "Status",
        "Health",
        "Incarnation",
        "Last change",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.addr.clone(),
                r.status.clone(),
                r.health.clone(),
                r.incarnation.to_string(),
                r.last_change.clone(),
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
fn request<T: DeserializeOwned>(agent: &Agent, method: &str, path: &str) -> Result<T, AgentError> {
    let url = format!("http://{}{path}", agent.http);
    let failed = |reason: String| AgentError::Client {
        url: url.clone(),
        reason,
    };
    let request = match method {
        "POST" => ureq::post(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .send_empty(),
        _ => ureq::get(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .call(),
    };
    let mut response = request.map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| failed(e.to_string()))?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        return Err(failed(format!("{status}: {message}")));
    }
    serde_json::from_str(&body).map_err(|e| failed(format!("unexpected answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_its_columns() {
        let row = |name: &str, status: &str| MemberRow {
            name: name.into(),
            addr: "127.0.0.1:7946".into(),
            status: status.into(),
            health: "alive".into(),
            incarnation: 3,
            last_change: "2026-01-01T00:00:00+00:00".into(),
        };
        let text = table(&[row("a", "online"), row("long-name", "offline")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("Name       Address"));
        assert!(lines[1].starts_with("a          127.0.0.1:7946  online "));
        assert!(lines[2].starts_with("long-name  127.0.0.1:7946  offline"));
    }
}
