//! `beethoven keys` and `beethoven reload-keys`: cluster-wide keys, from the
//! client's side.
//!
//! One request to the agent named by `--http` (with this command's token and
//! CA): that agent asks every member over a keys query and answers with each
//! member's part (see [`keys_query`](crate::keys_query)). Each member's
//! answer is printed on its own line: a member that fails does not stop the
//! others. Then a summary: how many online members answered ok, failed, or
//! did not answer before the timeout. The command fails (exit 1) unless every
//! online member answered ok.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::client::{Agent, request};
use crate::error::AgentError;
use crate::keys::{Fingerprint, Secret};
use crate::keys_cluster::{KEYS_TAG, KeysView, MemberKeys};
use crate::keys_query::{MemberReport, Outcome, Report, Source};

/// The longest wait for the agent's answer when `--timeout` is not given: a
/// `use` or `remove` runs two queries, each with the core's default timeout
/// (1.6 s up to 9 members, 4.8 s up to 999).
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// `beethoven keys`.
#[derive(Subcommand, Clone, Debug)]
pub(crate) enum KeysCommand {
    /// Print a fresh key: 64 hex digits from the operating system's random source.
    Generate,
    /// Which members hold which keys (by fingerprint; keys are never shown).
    List(ListArgs),
    /// Install a key on every member: it opens packets, the primary still seals.
    Install(InstallArgs),
    /// Seal with a key on every member. Refused, unless --force, when an
    /// online member does not hold it.
    Use(ChangeArgs),
    /// Remove a key from every member. Refused, unless --force, while a
    /// member seals with it.
    Remove(ChangeArgs),
}

/// `beethoven keys list`.
#[derive(Args, Clone, Debug)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    agent: Agent,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `beethoven keys install`.
#[derive(Args, Clone, Debug)]
pub(crate) struct InstallArgs {
    #[command(flatten)]
    agent: Agent,
    /// The key (64 hex digits), or `-` to read it from stdin (an argument is
    /// visible in the process list).
    #[arg(value_name = "KEY")]
    key: String,
    /// Print the agent's JSON report instead of lines.
    #[arg(long)]
    json: bool,
}

/// `beethoven keys use` and `beethoven keys remove`.
#[derive(Args, Clone, Debug)]
pub(crate) struct ChangeArgs {
    #[command(flatten)]
    agent: Agent,
    /// The key's fingerprint (as `keys list` shows it), or the key itself, or
    /// `-` to read either from stdin.
    #[arg(value_name = "FINGERPRINT|KEY")]
    key: String,
    /// Go ahead even if a member would be cut off from the cluster.
    #[arg(long)]
    force: bool,
    /// Print the agent's JSON report instead of lines.
    #[arg(long)]
    json: bool,
}

/// `beethoven reload-keys`.
#[derive(Args, Clone, Debug)]
pub(crate) struct ReloadArgs {
    #[command(flatten)]
    agent: Agent,
    /// Reload even if an online member would no longer read this node, or be read by it.
    #[arg(long)]
    force: bool,
}

/// Runs a `beethoven keys` command.
pub(crate) fn run(command: &KeysCommand) -> Result<(), AgentError> {
    match command {
        KeysCommand::Generate => {
            let secret = Secret::generate().map_err(|error| {
                AgentError::Keys(format!("the OS gave no random bytes: {error}"))
            })?;
            println!("{}", secret.hex());
            Ok(())
        }
        KeysCommand::List(args) => list(args),
        KeysCommand::Install(args) => {
            let secret = Secret::from_hex(&argument(&args.key)?)
                .map_err(|error| AgentError::Keys(format!("bad key: {error}")))?;
            let mut body = serde_json::json!({ "key": secret.hex() });
            let report = ask_change(&args.agent, "install", &mut body)?;
            show_change(&report, args.json)
        }
        KeysCommand::Use(args) => change(args, "use"),
        KeysCommand::Remove(args) => change(args, "remove"),
    }
}

/// `keys use` or `keys remove`: the agent checks it against every member's
/// keys (unless forced), then asks each.
fn change(args: &ChangeArgs, verb: &str) -> Result<(), AgentError> {
    let key = fingerprint(&args.key)?;
    let mut body = serde_json::json!({ "fingerprint": key, "force": args.force });
    let report = ask_change(&args.agent, verb, &mut body)?;
    show_change(&report, args.json)
}

/// The agent to ask, and each query's timeout: `--timeout` is the queries'
/// (as for `beethoven query`); the HTTP wait covers two of them.
fn split_timeout(agent: &Agent) -> (Agent, Option<Duration>) {
    let mut agent = agent.clone();
    let timeout = agent.timeout.take().map(|timeout| timeout.0);
    let wait = timeout.map_or(DEFAULT_WAIT, |timeout| {
        timeout * 2 + Duration::from_secs(10)
    });
    agent.timeout = Some(crate::config::HumanDuration(wait));
    (agent, timeout)
}

fn ask_change(
    agent: &Agent,
    verb: &str,
    body: &mut serde_json::Value,
) -> Result<Report, AgentError> {
    let (agent, timeout) = split_timeout(agent);
    if let Some(timeout) = timeout {
        body["timeout"] = humantime::format_duration(timeout).to_string().into();
    }
    let path = format!("/v1/keys/cluster/{verb}");
    request(&agent, "POST", &path, Some(&body.to_string()))
}

/// A change's report: one line per member and the summary, or the JSON.
fn show_change(report: &Report, json: bool) -> Result<(), AgentError> {
    if json {
        println!("{:#}", serde_json::json!(report));
    } else {
        for member in &report.members {
            println!("{}", member_line(member, false));
        }
        println!("{}", summary(report));
    }
    verdict(report)
}

/// One member's part, for people.
fn member_line(member: &MemberReport, listing: bool) -> String {
    let keys = |member: &MemberReport| match &member.primary {
        Some(primary) => {
            let count = member.fingerprints.len();
            let plural = if count == 1 { "" } else { "s" };
            format!("primary {primary}, {count} key{plural}")
        }
        None => "no keys".to_owned(),
    };
    let name = &member.name;
    match (member.outcome, member.source) {
        (Outcome::Ok, _) if listing => format!("{name}: ok ({})", keys(member)),
        (Outcome::Ok, _) => {
            let done = if member.changed { "done" } else { "unchanged" };
            format!("{name}: {done} ({})", keys(member))
        }
        (Outcome::Failed, _) => format!(
            "{name}: failed: {} ({})",
            member.error.as_deref().unwrap_or("no reason given"),
            keys(member)
        ),
        (Outcome::NoAnswer, Source::Tags) => format!(
            "{name}: no answer (its `{KEYS_TAG}` tag says {})",
            keys(member)
        ),
        (Outcome::NoAnswer, _) => format!("{name}: no answer (keys unknown)"),
    }
}

/// `3 online: 2 ok, 0 failed, 1 no answer`.
fn summary(report: &Report) -> String {
    format!(
        "{} online: {} ok, {} failed, {} no answer",
        report.online, report.ok, report.failed, report.no_answer
    )
}

/// An error unless every online member answered ok.
fn verdict(report: &Report) -> Result<(), AgentError> {
    if report.ok == report.online {
        return Ok(());
    }
    let named = |outcome: Outcome| {
        report
            .members
            .iter()
            .filter(|member| member.outcome == outcome)
            .map(|member| member.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if report.failed > 0 {
        parts.push(format!("failed on {}", named(Outcome::Failed)));
    }
    if report.no_answer > 0 {
        parts.push(format!(
            "no answer from {} (stopped, unreachable, or an agent too old to answer keys queries: change its key file and run `beethoven reload-keys` there)",
            named(Outcome::NoAnswer)
        ));
    }
    Err(AgentError::Keys(format!(
        "{} not ok on {} of {} online members: {}",
        report.verb,
        report.online - report.ok,
        report.online,
        parts.join("; ")
    )))
}

/// `beethoven reload-keys [--force]`.
pub(crate) fn reload(args: &ReloadArgs) -> Result<(), AgentError> {
    let path = if args.force {
        "/v1/keys/reload?force=true"
    } else {
        "/v1/keys/reload"
    };
    let view: KeysView = request(&args.agent, "POST", path, None)?;
    println!(
        "reloaded {} key(s) from {}; primary {}",
        view.keys,
        view.file.as_deref().unwrap_or("the key file"),
        view.primary
            .map_or_else(|| "none".to_owned(), |key| key.to_string())
    );
    Ok(())
}

/// The command's KEY argument, or stdin's first line for `-`.
fn argument(given: &str) -> Result<String, AgentError> {
    if given != "-" {
        return Ok(given.trim().to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|error| AgentError::Keys(format!("cannot read the key from stdin: {error}")))?;
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// A fingerprint, or the fingerprint of a key.
fn fingerprint(given: &str) -> Result<Fingerprint, AgentError> {
    let text = argument(given)?;
    if text.len() == 64 {
        return Secret::from_hex(&text)
            .map(|secret| secret.fingerprint())
            .map_err(|error| AgentError::Keys(format!("bad key: {error}")));
    }
    text.parse().map_err(AgentError::Keys)
}

/// One key's line in `keys list`.
#[derive(Debug, Serialize)]
struct KeyLine {
    fingerprint: Fingerprint,
    /// Members holding it, of those whose keys are known.
    members: usize,
    primary_of: Vec<String>,
    lacking: Vec<String>,
}

/// Every key held, with who holds it, seals with it, and lacks it.
fn key_lines(known: &[MemberKeys]) -> BTreeMap<Fingerprint, KeyLine> {
    let mut by_key: BTreeMap<Fingerprint, KeyLine> = BTreeMap::new();
    for member in known {
        for key in &member.keys {
            let line = by_key.entry(key.clone()).or_insert_with(|| KeyLine {
                fingerprint: key.clone(),
                members: 0,
                primary_of: Vec::new(),
                lacking: Vec::new(),
            });
            line.members += 1;
            if &member.primary == key {
                line.primary_of.push(member.name.clone());
            }
        }
    }
    for line in by_key.values_mut() {
        line.lacking = known
            .iter()
            .filter(|member| !member.keys.contains(&line.fingerprint))
            .map(|member| member.name.clone())
            .collect();
    }
    by_key
}

/// `keys list`: the keys, by fingerprint, as every member answered (or, for
/// one that did not, as its tag says); then each member's line and the summary.
fn list(args: &ListArgs) -> Result<(), AgentError> {
    let (agent, timeout) = split_timeout(&args.agent);
    let mut path = "/v1/keys/cluster".to_owned();
    if let Some(timeout) = timeout {
        path.push_str(&format!("?timeout={}ms", timeout.as_millis()));
    }
    let report: Report = request(&agent, "GET", &path, None)?;
    let known: Vec<MemberKeys> = report
        .members
        .iter()
        .filter_map(MemberReport::keys)
        .collect();
    let by_key = key_lines(&known);
    if args.json {
        let lines: Vec<&KeyLine> = by_key.values().collect();
        let json = serde_json::json!({
            "keys": lines,
            "members": report.members,
            "online": report.online,
            "ok": report.ok,
            "failed": report.failed,
            "no_answer": report.no_answer,
        });
        println!("{json:#}");
        return verdict(&report);
    }
    let total = known.len();
    let mut rows = vec![[
        "Key".to_owned(),
        "Members".to_owned(),
        "Primary of".to_owned(),
        "Lacking".to_owned(),
    ]];
    for line in by_key.values() {
        rows.push([
            line.fingerprint.to_string(),
            format!("{}/{total}", line.members),
            line.primary_of.join(", "),
            line.lacking.join(", "),
        ]);
    }
    print!("{}", columns(&rows));
    println!();
    for member in &report.members {
        println!("{}", member_line(member, true));
    }
    println!("{}", summary(&report));
    verdict(&report)
}

/// Aligned columns.
fn columns(rows: &[[String; 4]]) -> String {
    let mut widths = [0usize; 4];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(digit: char) -> Fingerprint {
        digit.to_string().repeat(16).parse().expect("hex digits")
    }

    fn member(name: &str, outcome: Outcome, source: Source, keys: &[char]) -> MemberReport {
        let fingerprints: Vec<Fingerprint> = keys.iter().map(|&digit| key(digit)).collect();
        MemberReport {
            name: name.to_owned(),
            outcome,
            changed: outcome == Outcome::Ok,
            primary: fingerprints.first().cloned(),
            fingerprints,
            source,
            error: (outcome == Outcome::Failed).then(|| "refused".to_owned()),
        }
    }

    fn report(members: Vec<MemberReport>) -> Report {
        let count = |outcome| members.iter().filter(|m| m.outcome == outcome).count();
        Report {
            verb: "install".to_owned(),
            key: Some(key('2')),
            online: members.len(),
            ok: count(Outcome::Ok),
            failed: count(Outcome::Failed),
            no_answer: count(Outcome::NoAnswer),
            members,
        }
    }

    #[test]
    fn every_member_has_its_line_and_only_all_ok_succeeds() {
        let all_ok = report(vec![
            member("a", Outcome::Ok, Source::Answer, &['2', '1']),
            member("b", Outcome::Ok, Source::Answer, &['2', '1']),
        ]);
        assert!(verdict(&all_ok).is_ok());
        let mixed = report(vec![
            member("a", Outcome::Ok, Source::Answer, &['2', '1']),
            member("b", Outcome::Failed, Source::Answer, &['1']),
            member("c", Outcome::NoAnswer, Source::Tags, &['1']),
            member("d", Outcome::NoAnswer, Source::Unknown, &[]),
        ]);
        let lines: Vec<String> = mixed
            .members
            .iter()
            .map(|member| member_line(member, false))
            .collect();
        assert_eq!(lines[0], format!("a: done (primary {}, 2 keys)", key('2')));
        assert!(lines[1].starts_with("b: failed: refused"), "{}", lines[1]);
        assert!(
            lines[2].starts_with("c: no answer (its `beethoven.keys` tag says primary"),
            "{}",
            lines[2]
        );
        assert_eq!(lines[3], "d: no answer (keys unknown)");
        assert_eq!(summary(&mixed), "4 online: 1 ok, 1 failed, 2 no answer");
        let error = verdict(&mixed).expect_err("not all ok").to_string();
        assert!(
            error.contains("not ok on 3 of 4 online members")
                && error.contains("failed on b")
                && error.contains("no answer from c, d"),
            "{error}"
        );
    }

    #[test]
    fn keys_are_listed_with_their_holders_and_those_lacking_them() {
        let known = [
            member("a", Outcome::Ok, Source::Answer, &['1', '2']),
            member("b", Outcome::NoAnswer, Source::Tags, &['1']),
        ]
        .iter()
        .filter_map(MemberReport::keys)
        .collect::<Vec<_>>();
        let lines = key_lines(&known);
        let two = &lines[&key('2')];
        assert_eq!(
            (two.members, two.lacking.clone()),
            (1, vec!["b".to_owned()])
        );
        assert_eq!(lines[&key('1')].primary_of, ["a", "b"]);
    }

    #[test]
    fn a_key_or_its_fingerprint_names_it() {
        let secret = Secret::from_hex(&"cd".repeat(32)).expect("valid");
        assert_eq!(
            fingerprint(&secret.hex()).expect("a key"),
            secret.fingerprint()
        );
        let printed = secret.fingerprint().to_string();
        assert_eq!(
            fingerprint(&printed).expect("a fingerprint"),
            secret.fingerprint()
        );
        assert!(fingerprint("xyz").is_err());
    }
}
