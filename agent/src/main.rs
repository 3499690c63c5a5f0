//! `beethoven`: the Beethoven agent, one cluster member as an operator-ready
//! process, and the client commands that query a running agent.
//!
//! ```sh
//! beethoven agent --name a --bind 127.0.0.1:7946 --http 127.0.0.1:8946
//! beethoven agent --name b --bind 127.0.0.1:7947 --seed 127.0.0.1:7946
//! beethoven members --http 127.0.0.1:8946
//! beethoven monitor --http 127.0.0.1:8946
//! beethoven tags set --http 127.0.0.1:8946 role=db zone=eu-1
//! beethoven event --http 127.0.0.1:8946 deploy v2
//! beethoven query --http 127.0.0.1:8946 --tag role=db uptime
//! beethoven keys list --http 127.0.0.1:8946   # agents started with --key-file
//! ```
//!
//! Settings come from flags, `BEETHOVEN_*` environment variables and a TOML
//! file (`--config`), in that order of precedence ([`config`]). Logs go to
//! stderr ([`logging`]). Exit statuses are listed in [`error::exit`] and in
//! `--help`.

#![forbid(unsafe_code)]

mod api;
mod auth;
mod client;
mod config;
mod data_dir;
mod error;
mod events;
mod handlers;
mod http;
mod keys;
mod keys_client;
mod keys_cluster;
mod keys_http;
mod keys_query;
mod logging;
mod member_filter;
mod metrics;
mod query;
mod run;
mod seed_names;
mod tags;
mod tls;
mod verbs;
mod warnings;

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser, Subcommand};

use crate::config::Settings;
use crate::error::{AgentError, exit};

const EXIT_STATUSES: &str = "\
Exit status:
  0  the agent left and stopped; a client command succeeded
  1  a client command could not get its answer from the agent
  2  bad command line (unknown flag, bad value)
  3  another live process kept this node's name (the agent stopped without leaving)
  4  bad configuration: config file, environment, name, tags, key file, log level
  5  could not start: an address would not bind, the data folder cannot be made";

#[derive(Parser, Debug)]
#[command(name = "beethoven", version, about = "The Beethoven cluster membership agent", after_help = EXIT_STATUSES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a cluster member until SIGTERM or SIGINT, then leave gracefully.
    /// SIGHUP re-reads the key file.
    #[command(after_help = EXIT_STATUSES)]
    Agent(Box<Settings>),
    /// List the members a running agent knows (needs the agent's --http).
    Members(client::MembersArgs),
    /// Follow a running agent's events (`GET /v1/events`, needs the agent's
    /// --http): one JSON object per line, until its node stops.
    Monitor(client::MonitorArgs),
    /// Ask a running agent to re-read its key file (refused when its keys
    /// would cut it off from an online member, unless --force).
    ReloadKeys(keys_client::ReloadArgs),
    /// Cluster-wide keys: generate one, list who holds which, install, use
    /// or remove one on every member (the agent asks each over a query).
    #[command(subcommand)]
    Keys(keys_client::KeysCommand),
    /// Change a running agent's tags (needs the agent's --http).
    #[command(subcommand)]
    Tags(client::TagsCommand),
    /// Show a running agent's own facts: name, cluster, address, incarnation,
    /// mode, member counts, version, uptime, keys.
    Info {
        #[command(flatten)]
        agent: client::Agent,
        /// Print the JSON answer instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Make a running agent join (again) through these seeds: `ip:port`,
    /// `host:port` or `cidr:port`.
    Join {
        #[command(flatten)]
        agent: client::Agent,
        #[arg(value_name = "SEED", required = true)]
        seeds: Vec<String>,
    },
    /// Send a user event to every other live member, through a running
    /// agent: each member's agent delivers it once (its event stream, its
    /// `user` handlers). PAYLOAD `-` reads the payload from stdin.
    Event(client::EventArgs),
    /// Run a query through a running agent: the members its filter picks
    /// (all by default) answer with their `query` handlers' output; acks and
    /// answers are printed as they come, until `--timeout` (or the default,
    /// which grows with the cluster) or every matching member answered.
    Query(client::QueryArgs),
    /// Mark an offline member left, so it is reported as gone on purpose
    /// rather than failed (an online or unknown member is refused).
    ForceLeave {
        #[command(flatten)]
        agent: client::Agent,
        /// The member's name.
        name: String,
        /// Also remove it from every member's table (it stays out until it
        /// comes back with a restart).
        #[arg(long)]
        prune: bool,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(usage) => {
            if let Some(error) = environment_error(&usage) {
                return fail(&error);
            }
            // `--help` and `--version` are answers on stdout; the rest are errors.
            let _ = usage.print();
            return exit_code(if usage.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let result = match cli.command {
        Command::Agent(flags) => agent(*flags),
        Command::Members(args) => client::members(&args).map(|()| exit::OK),
        Command::Monitor(args) => client::monitor(&args).map(|()| exit::OK),
        Command::ReloadKeys(args) => keys_client::reload(&args).map(|()| exit::OK),
        Command::Keys(command) => keys_client::run(&command).map(|()| exit::OK),
        Command::Tags(command) => client::tags(&command).map(|()| exit::OK),
        Command::Info { agent, json } => client::info(&agent, json).map(|()| exit::OK),
        Command::Join { agent, seeds } => client::join(&agent, &seeds).map(|()| exit::OK),
        Command::Event(args) => client::event(&args).map(|()| exit::OK),
        Command::Query(args) => client::query(&args).map(|()| exit::OK),
        Command::ForceLeave { agent, name, prune } => {
            client::force_leave(&agent, &name, prune).map(|()| exit::OK)
        }
    };
    match result {
        Ok(code) => exit_code(code),
        Err(error) => fail(&error),
    }
}

/// Writes the error for the operator and returns its exit status.
fn fail(error: &AgentError) -> ExitCode {
    #[allow(clippy::print_stderr)] // the one place errors reach the operator
    {
        eprintln!("beethoven: {error}");
    }
    exit_code(error.exit_code())
}

/// A bad value that came from a `BEETHOVEN_*` variable rather than the command
/// line: clap reports it as the flag's, so it is named here as the variable's
/// (a configuration error, not a usage error).
fn environment_error(usage: &clap::Error) -> Option<AgentError> {
    if !matches!(
        usage.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(shown)) = usage.get(ContextKind::InvalidArg) else {
        return None;
    };
    // `--probe-interval <DURATION>`: the flag is the first word.
    let flag = shown.split_whitespace().next()?.strip_prefix("--")?;
    let command_line: Vec<String> = std::env::args().skip(1).collect();
    let given_as_flag = command_line
        .iter()
        .any(|arg| arg == &format!("--{flag}") || arg.starts_with(&format!("--{flag}=")));
    if given_as_flag {
        return None;
    }
    let cli = Cli::command();
    let variable = std::iter::once(&cli)
        .chain(cli.get_subcommands())
        .flat_map(clap::Command::get_arguments)
        .find(|arg| arg.get_long() == Some(flag))?
        .get_env()?
        .to_string_lossy()
        .into_owned();
    let value = std::env::var(&variable).ok()?;
    let reason = match (
        std::error::Error::source(usage),
        usage.get(ContextKind::ValidValue),
    ) {
        (Some(source), _) => source.to_string(),
        (None, Some(ContextValue::Strings(valid))) => {
            format!("expected one of {}", valid.join(", "))
        }
        (None, _) => format!("not a valid value for --{flag}"),
    };
    Some(AgentError::BadEnvironment {
        variable,
        value,
        reason,
    })
}

/// Merges the sources, sets up logging, and runs the agent on tokio.
fn agent(flags: Settings) -> Result<i32, AgentError> {
    let file = match &flags.config {
        Some(path) => Settings::from_file(path)?,
        None => Settings::default(),
    };
    let settings = flags.over(file);
    logging::init(
        settings.log_level.as_deref(),
        settings.log_format.unwrap_or_default(),
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| AgentError::Runtime { source })?;
    runtime.block_on(run::run(settings))
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
