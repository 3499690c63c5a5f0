//! `beethoven keys` and `beethoven reload-keys`: cluster-wide keys, from the
//! client's side.
//!
//! The agent named by `--http` gives the online members; each member's
//! `beethoven.http` tag says where its API answers (see
//! [`keys_cluster`]). Every member is asked in turn, with
//! this command's token and CA (one for the cluster), and each answer is
//! reported on its own line: a member that fails does not stop the others.
//! A member whose API does not answer is judged by its `beethoven.keys` tag.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;

use beethoven_tokio::TrackerRow;
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::client::{Agent, request_url};
use crate::error::AgentError;
use crate::keys::{Fingerprint, Secret};
use crate::keys_cluster::{self, HTTP_TAG, KeysView, MemberKeys};

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
            let body = serde_json::json!({ "key": secret.hex() }).to_string();
            let survey = Survey::take(&args.agent)?;
            apply(&args.agent, &survey, "install", &body)
        }
        KeysCommand::Use(args) => change(args, "use"),
        KeysCommand::Remove(args) => change(args, "remove"),
    }
}

/// `beethoven reload-keys [--force]`.
pub(crate) fn reload(args: &ReloadArgs) -> Result<(), AgentError> {
    let path = if args.force {
        "/v1/keys/reload?force=true"
    } else {
        "/v1/keys/reload"
    };
    let view: KeysView = request_url(&args.agent, "POST", &args.agent.url(path), None)?;
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

/// One online member, and what is known of its keys.
#[derive(Debug)]
struct Member {
    name: String,
    /// Its API, from its tag; or why it cannot be asked.
    url: Result<String, String>,
    /// Its own answer, or why there is none.
    answer: Result<KeysView, String>,
    /// What its `beethoven.keys` tag says.
    tag: Option<MemberKeys>,
}

impl Member {
    /// What it holds: its answer, else its tag.
    fn keys(&self) -> Option<MemberKeys> {
        match &self.answer {
            Ok(view) => Some(MemberKeys {
                name: self.name.clone(),
                primary: view.primary.clone()?,
                keys: view.fingerprints.clone(),
            }),
            Err(_) => self.tag.clone(),
        }
    }
}

/// Every online member, each asked for its keys.
struct Survey {
    members: Vec<Member>,
}

impl Survey {
    fn take(agent: &Agent) -> Result<Self, AgentError> {
        let rows: Vec<TrackerRow> =
            request_url(agent, "GET", &agent.url("/v1/members?status=online"), None)?;
        let members = rows
            .iter()
            .map(|row| {
                let url = member_url(row);
                let answer = match &url {
                    Ok(url) => {
                        request_url::<KeysView>(agent, "GET", &format!("{url}/v1/keys"), None)
                            .map_err(|error| error.to_string())
                    }
                    Err(why) => Err(why.clone()),
                };
                Member {
                    name: row.node.as_str().to_owned(),
                    url,
                    answer,
                    tag: MemberKeys::from_row(row),
                }
            })
            .collect();
        Ok(Survey { members })
    }

    /// The members whose keys are not known at all.
    fn unknown(&self) -> Vec<&str> {
        self.members
            .iter()
            .filter(|member| member.keys().is_none())
            .map(|member| member.name.as_str())
            .collect()
    }
}

/// Where `row`'s API answers. The token goes only to the host the member's
/// packets come from, never to an address a tag alone names.
fn member_url(row: &TrackerRow) -> Result<String, String> {
    let url = row
        .tags
        .get(HTTP_TAG)
        .ok_or_else(|| format!("publishes no HTTP API (no `{HTTP_TAG}` tag)"))?;
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.rsplit_once(':'))
        .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|host| host.parse::<IpAddr>().ok());
    match host {
        Some(ip) if ip == row.addr.ip() => Ok(url.to_owned()),
        _ => Err(format!(
            "its `{HTTP_TAG}` tag ({url}) is not on its own host {}: not sending it the token",
            row.addr.ip()
        )),
    }
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

/// One member's line in `keys list --json`.
#[derive(Debug, Serialize)]
struct MemberLine {
    name: String,
    primary: Option<Fingerprint>,
    fingerprints: Vec<Fingerprint>,
    /// `api` (its own answer), `tags` (gossip, its API did not answer) or `unknown`.
    source: &'static str,
    error: Option<String>,
}

fn list(args: &ListArgs) -> Result<(), AgentError> {
    let survey = Survey::take(&args.agent)?;
    let known: Vec<MemberKeys> = survey.members.iter().filter_map(Member::keys).collect();
    let mut by_key: BTreeMap<Fingerprint, KeyLine> = BTreeMap::new();
    for member in &known {
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
    let members: Vec<MemberLine> = survey
        .members
        .iter()
        .map(|member| {
            let keys = member.keys();
            MemberLine {
                name: member.name.clone(),
                primary: keys.as_ref().map(|keys| keys.primary.clone()),
                fingerprints: keys.map(|keys| keys.keys).unwrap_or_default(),
                source: match (&member.answer, &member.tag) {
                    (Ok(_), _) => "api",
                    (Err(_), Some(_)) => "tags",
                    (Err(_), None) => "unknown",
                },
                error: member.answer.as_ref().err().cloned(),
            }
        })
        .collect();
    if args.json {
        let lines: Vec<&KeyLine> = by_key.values().collect();
        let json = serde_json::json!({ "keys": lines, "members": members });
        println!("{json:#}");
        return Ok(());
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
    for member in &members {
        if let Some(error) = &member.error {
            let judged = if member.source == "tags" {
                "keys as its tags say"
            } else {
                "keys unknown"
            };
            println!("{}: {judged}; its API: {error}", member.name);
        }
    }
    Ok(())
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

/// `keys use` or `keys remove`: checked against every member's keys, then
/// asked of each.
fn change(args: &ChangeArgs, verb: &str) -> Result<(), AgentError> {
    let key = fingerprint(&args.key)?;
    let survey = Survey::take(&args.agent)?;
    if !args.force {
        refusal(&survey, &key, verb).map_or(Ok(()), |why| Err(AgentError::Keys(why)))?;
    }
    let body = serde_json::json!({ "fingerprint": key }).to_string();
    apply(&args.agent, &survey, verb, &body)
}

/// Why `verb` (`use` or `remove`) of `key` would cut a member off, if it would.
fn refusal(survey: &Survey, key: &Fingerprint, verb: &str) -> Option<String> {
    let unknown = survey.unknown();
    if !unknown.is_empty() {
        return Some(format!(
            "{verb} of key {key} refused: the keys of {} are unknown (their APIs did not answer and their tags say nothing); --force to go ahead",
            unknown.join(", ")
        ));
    }
    let known: Vec<MemberKeys> = survey.members.iter().filter_map(Member::keys).collect();
    if verb == "use" {
        let lacking: Vec<&str> = known
            .iter()
            .filter(|member| !member.keys.contains(key))
            .map(|member| member.name.as_str())
            .collect();
        if lacking.is_empty() {
            return None;
        }
        // What the cluster would be: the holders seal with the key.
        let planned: Vec<MemberKeys> = known
            .iter()
            .map(|member| {
                let mut member = member.clone();
                if member.keys.contains(key) {
                    member.primary = key.clone();
                }
                member
            })
            .collect();
        let cut = keys_cluster::cuts(&planned);
        return Some(format!(
            "use of key {key} refused: {} do not hold it ({}); install it first, or --force",
            lacking.join(", "),
            keys_cluster::describe(&cut)
        ));
    }
    let sealing: Vec<&str> = known
        .iter()
        .filter(|member| &member.primary == key)
        .map(|member| member.name.as_str())
        .collect();
    (!sealing.is_empty()).then(|| {
        format!(
            "remove of key {key} refused: it is the primary of {} (the others could not read them); `keys use` another key first",
            sealing.join(", ")
        )
    })
}

/// Asks each member to `verb` (`install`, `use`, `remove`) with `body`;
/// prints one line per member. An error when any did not.
fn apply(agent: &Agent, survey: &Survey, verb: &str, body: &str) -> Result<(), AgentError> {
    let mut failed = Vec::new();
    for member in &survey.members {
        let answer = member.url.clone().and_then(|url| {
            request_url::<KeysView>(agent, "POST", &format!("{url}/v1/keys/{verb}"), Some(body))
                .map_err(|error| error.to_string())
        });
        match answer {
            Ok(view) => {
                let done = if view.changed { "done" } else { "unchanged" };
                let primary = view
                    .primary
                    .map_or_else(|| "none".to_owned(), |key| key.to_string());
                println!(
                    "{}: {done} (primary {primary}, {} keys)",
                    member.name, view.keys
                );
            }
            Err(error) => {
                println!("{}: failed: {error}", member.name);
                failed.push(member.name.clone());
            }
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(AgentError::Keys(format!(
        "{verb} failed on {} of {} members: {}",
        failed.len(),
        survey.members.len(),
        failed.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, addr: &str, url: Option<&str>) -> TrackerRow {
        let tags = url.map_or_else(String::new, |url| format!(r#""{HTTP_TAG}":"{url}""#));
        let json = format!(
            r#"{{"node":"{name}","addr":"{addr}","health":"alive","incarnation":1,"last_change":"2026-01-01T00:00:00.000Z","tags":{{{tags}}}}}"#
        );
        serde_json::from_str(&json).expect("a row in its one form")
    }

    #[test]
    fn the_token_goes_only_to_an_api_on_the_members_own_host() {
        let good = row("a", "10.0.0.7:7946", Some("https://10.0.0.7:7947"));
        assert_eq!(member_url(&good), Ok("https://10.0.0.7:7947".to_owned()));
        let v6 = row("b", "[::1]:7946", Some("http://[::1]:7947"));
        assert_eq!(member_url(&v6), Ok("http://[::1]:7947".to_owned()));
        let elsewhere = row("c", "10.0.0.7:7946", Some("http://203.0.113.9:80"));
        assert!(member_url(&elsewhere).is_err_and(|why| why.contains("not on its own host")));
        let none = row("d", "10.0.0.7:7946", None);
        assert!(member_url(&none).is_err_and(|why| why.contains("publishes no HTTP API")));
    }

    fn key(digit: char) -> Fingerprint {
        digit.to_string().repeat(16).parse().expect("hex digits")
    }

    /// A member that answered with `keys` (primary first), or, with none, one
    /// whose API did not answer and whose tags say nothing.
    fn member(name: &str, keys: &[char]) -> Member {
        let fingerprints: Vec<Fingerprint> = keys.iter().map(|&digit| key(digit)).collect();
        let answer = if fingerprints.is_empty() {
            Err("no answer".to_owned())
        } else {
            Ok(KeysView {
                name: name.to_owned(),
                primary: fingerprints.first().cloned(),
                keys: fingerprints.len(),
                fingerprints,
                file: None,
                changed: false,
            })
        };
        Member {
            name: name.to_owned(),
            url: Ok(String::new()),
            answer,
            tag: None,
        }
    }

    #[test]
    fn use_needs_every_member_to_hold_the_key_and_remove_no_member_to_seal_with_it() {
        let survey = Survey {
            members: vec![member("a", &['1', '2']), member("b", &['1'])],
        };
        let refused = refusal(&survey, &key('2'), "use").expect("b lacks it");
        assert!(
            refused.contains("b do not hold it (b could not read a)"),
            "{refused}"
        );
        assert_eq!(refusal(&survey, &key('1'), "use"), None);
        assert_eq!(refusal(&survey, &key('2'), "remove"), None);
        let refused = refusal(&survey, &key('1'), "remove").expect("a primary");
        assert!(refused.contains("it is the primary of a, b"), "{refused}");
    }

    #[test]
    fn a_member_whose_keys_are_unknown_stops_a_use_or_remove() {
        let survey = Survey {
            members: vec![member("a", &['1', '2']), member("silent", &[])],
        };
        for verb in ["use", "remove"] {
            let refused = refusal(&survey, &key('2'), verb).expect("unknown keys");
            assert!(
                refused.contains("the keys of silent are unknown"),
                "{refused}"
            );
        }
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
