//! Everything that can stop the agent, each with the context an operator needs
//! (the file and line, the address, the seed), and the exit status it maps to.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use beethoven_tokio::{KeyError, StartError, TagsError};

use crate::tags::BadTag;

/// Exit statuses of `beethoven`, documented in the README and `--help`.
pub(crate) mod exit {
    /// The agent left and stopped, or a client command succeeded.
    pub(crate) const OK: i32 = 0;
    /// A client command (`members`, `reload-keys`) could not get its answer.
    pub(crate) const CLIENT: i32 = 1;
    /// The command line is wrong (clap's own status for usage errors).
    pub(crate) const USAGE: i32 = 2;
    /// Another live process kept this node's name; this one stopped.
    pub(crate) const NAME_TAKEN: i32 = 3;
    /// The configuration is wrong: config file, environment, name, tags, key
    /// file.
    pub(crate) const CONFIG: i32 = 4;
    /// The agent could not start: an address would not bind, the data folder
    /// cannot be made. (A seed name that does not resolve is only a warning.)
    pub(crate) const START: i32 = 5;
}

/// Why a key file cannot be used. Shared by start-up, SIGHUP and the HTTP reload.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyFileError {
    #[error("cannot read key file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "key file {} has no key: put one key of 64 hex digits per line (the first seals, all open)",
        path.display()
    )]
    Empty { path: PathBuf },
    #[error("key file {}, line {line}: {source}", path.display())]
    BadKey {
        path: PathBuf,
        line: usize,
        source: KeyError,
    },
}

/// Why the agent or a client command stopped with an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentError {
    #[error("cannot read config file {}: {source}", path.display())]
    ConfigRead { path: PathBuf, source: io::Error },
    #[error("config file {}: {message}", path.display())]
    ConfigParse { path: PathBuf, message: String },
    #[error("no node name: give --name, BEETHOVEN_NAME or `name` in the config file")]
    MissingName,
    #[error("bad environment variable {variable}=`{value}`: {reason}")]
    BadEnvironment {
        variable: String,
        value: String,
        reason: String,
    },
    #[error("bad node name `{name}`: {reason}")]
    BadName { name: String, reason: String },
    #[error("bad cluster name `{cluster}`: {reason}")]
    BadCluster { cluster: String, reason: String },
    #[error("bad log level `{level}`: {reason}")]
    BadLogLevel { level: String, reason: String },
    #[error(
        "bad seed `{seed}`: expected `ip:port`, `host:port` or `cidr:port` (e.g. 10.0.0.0/24:7946)"
    )]
    BadSeed { seed: String },
    #[error(transparent)]
    BadTag(BadTag),
    #[error("bad tags: {0}")]
    TagLimit(TagsError),
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("bad protocol setting: {0}")]
    Protocol(String),
    #[error(transparent)]
    Start(StartError),
    #[error("cannot use the data folder {}: {source}", path.display())]
    DataDir { path: PathBuf, source: io::Error },
    #[error("cannot bind the HTTP listener at {addr}: {source}")]
    HttpBind { addr: SocketAddr, source: io::Error },
    #[error("cannot set up the process (runtime or signal handlers): {source}")]
    Runtime { source: io::Error },
    #[error("cannot reach the agent at {url}: {reason}")]
    Client { url: String, reason: String },
    #[error("the agent at {url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error(transparent)]
    Token(#[from] crate::auth::TokenError),
    #[error(
        "the HTTP API at {addr} is not on loopback and has no token: give --http-token-file FILE (or BEETHOVEN_HTTP_TOKEN), or --http-allow-no-token to serve the member table to anyone who reaches the port"
    )]
    HttpNoToken { addr: SocketAddr },
    #[error("bad event handler `{spec}`: {reason}")]
    BadHandlerSpec { spec: String, reason: String },
    #[error("event handler {}: {reason}", program.display())]
    BadHandler { program: PathBuf, reason: String },
    /// TLS settings that cannot be used (a file, a key that does not match).
    #[error("{0}")]
    Tls(String),
    /// A cluster-wide key command refused, or not applied on every member.
    #[error("{0}")]
    Keys(String),
}

impl AgentError {
    /// The exit status this error ends the process with.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            AgentError::ConfigRead { .. }
            | AgentError::ConfigParse { .. }
            | AgentError::MissingName
            | AgentError::BadEnvironment { .. }
            | AgentError::BadName { .. }
            | AgentError::BadCluster { .. }
            | AgentError::BadLogLevel { .. }
            | AgentError::BadSeed { .. }
            | AgentError::BadTag(_)
            | AgentError::TagLimit(_)
            | AgentError::KeyFile(_)
            | AgentError::Protocol(_)
            | AgentError::Token(_)
            | AgentError::HttpNoToken { .. }
            | AgentError::BadHandlerSpec { .. }
            | AgentError::BadHandler { .. }
            | AgentError::Tls(_) => exit::CONFIG,
            AgentError::Start(StartError::Config(_)) => exit::CONFIG,
            AgentError::Start(_)
            | AgentError::HttpBind { .. }
            | AgentError::DataDir { .. }
            | AgentError::Runtime { .. } => exit::START,
            AgentError::Client { .. } | AgentError::Refused { .. } | AgentError::Keys(_) => {
                exit::CLIENT
            }
        }
    }
}

impl From<StartError> for AgentError {
    fn from(error: StartError) -> Self {
        match error {
            StartError::Tags(limit) => AgentError::TagLimit(limit),
            other => AgentError::Start(other),
        }
    }
}
