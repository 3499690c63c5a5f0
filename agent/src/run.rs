//! `beethoven agent`: start the node (and the HTTP API, and the event stream
//! when asked), log what happens, reload keys on SIGHUP, and on SIGTERM or
//! SIGINT leave and exit once the leave has spread.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use beethoven_tokio::{Handle, Options, Update};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::auth::{Guard, TOKEN_ENV, Token};
use crate::config::Settings;
use crate::error::{AgentError, exit};
use crate::events::EventLines;
use crate::handlers::{self, HandlerCounts};
use crate::http::{self, Api};
use crate::keys;
use crate::keys_cluster::{self, ClusterKeys};
use crate::warnings::Warnings;

/// How often the agent checks the node's counters for warnings.
const TICK: Duration = Duration::from_secs(1);

/// How long the exit waits for the event readers (`--events`, `/v1/events`) to
/// take their last lines: one that stopped reading must not keep the process alive.
const EVENTS_FLUSH: Duration = Duration::from_secs(2);

/// Why the agent's loop ended.
enum Ending {
    Signal(&'static str),
    LeaveOverHttp,
    NodeStopped,
    NameLost,
}

/// The HTTP API's door for a listener at `addr`: the token from
/// `--http-token-file` or `BEETHOVEN_HTTP_TOKEN`, and the refusal to serve
/// off loopback without one unless the operator allowed it.
fn http_guard(settings: &Settings, addr: std::net::SocketAddr) -> Result<Guard, AgentError> {
    let token = match &settings.http_token_file {
        Some(path) => {
            let loaded = Token::read(path)?;
            if loaded.world_readable {
                warn!(file = %path.display(), "the HTTP token file is readable by every user of this host: chmod 600 it");
            }
            Some(loaded.token)
        }
        None => Token::from_env_value(std::env::var(TOKEN_ENV).ok())?,
    };
    let guard = Guard::new(token, addr);
    if !guard.is_loopback() && !guard.has_token() {
        if !settings.http_allow_no_token {
            return Err(AgentError::HttpNoToken { addr });
        }
        warn!(%addr, "the HTTP API is off loopback without a token: anyone who reaches it reads the member table (changes stay off)");
    }
    if !guard.has_token() {
        info!(
            "the HTTP API has no token: changes over HTTP are off (give --http-token-file to allow them)"
        );
    }
    Ok(guard)
}

/// Runs the agent until it is told to stop; returns the exit status.
pub(crate) async fn run(settings: Settings) -> Result<i32, AgentError> {
    let name = settings.node_name()?;
    let mut config = settings.protocol(seed_from_clock())?;
    let ring = match &settings.key_file {
        Some(path) => Some(keys::read(path)?),
        None => None,
    };
    config.keys = ring.as_ref().map(keys::Ring::key_ring);
    let tls = match (&settings.http_tls_cert, &settings.http_tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key).await?),
        (None, None) => None,
        _ => {
            return Err(AgentError::Tls(
                "TLS for the HTTP API needs both --http-tls-cert and --http-tls-key".to_owned(),
            ));
        }
    };
    let seeds = settings.parsed_seeds()?;
    let tags = settings.parsed_tags()?;
    let handler_specs = settings.handlers()?;
    let bind = settings.bind_addr();
    // The HTTP port first: a port in use stops the agent before it joins anyone.
    let listener = match settings.http {
        Some(addr) => {
            let guard = http_guard(&settings, addr)?;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::HttpBind { addr, source })?;
            Some((listener, guard))
        }
        None => None,
    };
    let runtime_error = |source| AgentError::Runtime { source };
    let mut sigterm = signal(SignalKind::terminate()).map_err(runtime_error)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(runtime_error)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(runtime_error)?;

    let mut options = Options::new(name).config(config).bind(bind).tags(tags);
    if let Some(advertise) = settings.advertise {
        options = options.advertise(advertise);
    }
    for seed in &seeds {
        options = options.seed(seed.clone());
    }
    let node = beethoven_tokio::start(options).await?;
    Warnings::at_start(
        bind,
        node.advertised_addr(),
        settings.advertise.is_some(),
        &seeds,
    );
    // Subscribed before anything can happen that the loop must see.
    let mut events = node.events();
    let handler_counts = Arc::new(HandlerCounts::default());
    handlers::start(
        &node,
        handler_specs,
        settings.handler_timeout(),
        Arc::clone(&handler_counts),
    );
    let mut warnings = Warnings::new(&settings.seeds);
    let (stop, mut stop_asked) = mpsc::channel(1);
    let lines = EventLines::new(node.clone());
    if settings.events.is_some() {
        tokio::spawn(print_events(Arc::clone(&lines)));
    }
    let api_url = listener
        .as_ref()
        .and_then(|(listener, _)| listener.local_addr().ok())
        .map(|addr| keys_cluster::api_url(addr, node.advertised_addr(), tls.is_some()));
    let cluster_keys = Arc::new(ClusterKeys::new(settings.key_file.clone(), ring, api_url));
    cluster_keys.publish(&node).await;
    let http_addr = match listener.map(|(listener, guard)| (listener, guard, Arc::clone(&lines))) {
        Some((listener, guard, events)) => {
            let addr = listener.local_addr().ok();
            let api = Api {
                node: node.clone(),
                keys: Arc::clone(&cluster_keys),
                stop,
                events,
                handlers: handler_counts,
            };
            tokio::spawn(async move {
                let app = http::router(api, guard)
                    .into_make_service_with_connect_info::<std::net::SocketAddr>();
                let served = match tls {
                    Some(tls) => crate::tls::serve(listener, tls, app).await,
                    None => axum::serve(listener, app).await,
                };
                if let Err(error) = served {
                    error!(%error, "the HTTP API stopped");
                }
            });
            addr
        }
        None => None,
    };
    let http_addr = http_addr.map_or_else(|| "off".to_owned(), |addr| addr.to_string());
    info!(
        name = %node.name(),
        bound = %node.local_addr(),
        advertised = %node.advertised_addr(),
        http = %http_addr,
        "agent started"
    );

    let mut tick = tokio::time::interval(TICK);
    let ending = loop {
        tokio::select! {
            update = events.recv() => match update {
                Some(Update::Node { node: other, status }) => {
                    info!(node = %other, %status, "node update");
                }
                Some(Update::JoinFailed { attempts }) => warnings.join_failed(attempts),
                // The core logs the conflict.
                Some(Update::NameLost { .. }) => break Ending::NameLost,
                Some(Update::Lagged { missed }) => {
                    warn!(missed, "the agent's own event stream fell behind");
                }
                Some(_) => {}
                None => break Ending::NodeStopped,
            },
            _ = tick.tick() => {
                warnings.check(Instant::now(), &node);
                // Puts back the reserved tags if a tag change dropped them.
                cluster_keys.publish(&node).await;
                // Also when the stream lost the `NameLost` update to lag.
                if node.name_taken_by().is_some() {
                    break Ending::NameLost;
                }
            }
            _ = sigterm.recv() => break Ending::Signal("SIGTERM"),
            _ = sigint.recv() => break Ending::Signal("SIGINT"),
            _ = sighup.recv() => {
                tokio::spawn(keys_cluster::reload_on_signal(node.clone(), Arc::clone(&cluster_keys)));
            }
            // `None` (the HTTP server ended) disables this branch: no leave.
            Some(()) = stop_asked.recv() => break Ending::LeaveOverHttp,
        }
    };
    drop(events);
    let code = finish(node, ending).await;
    // The node has stopped, so every reader's stream is ending: they (stdout,
    // HTTP streams) get their last lines, unless they stopped reading.
    lines.drained(EVENTS_FLUSH).await;
    Ok(code)
}

/// `--events json`: `started`, then the event lines (the node's state first)
/// on stdout, flushed one by one, until the stream ends. A stdout nobody reads
/// stalls this task only, never the node.
fn print_events(lines: Arc<EventLines>) -> impl Future<Output = ()> {
    // Subscribed now, before the agent goes on: its state is the first lines.
    let mut reader = lines.reader(true);
    let mut next = Some(lines.started());
    async move {
        let mut stdout = tokio::io::stdout();
        while let Some(text) = next {
            let written = stdout.write_all(text.as_bytes()).await;
            if written.is_err() || stdout.flush().await.is_err() {
                break;
            }
            next = reader.next().await;
        }
    }
}

/// Leaves (unless the name was lost), waits for the leave to spread, stops.
async fn finish(node: Handle, ending: Ending) -> i32 {
    match ending {
        Ending::NameLost => {
            let winner = node
                .name_taken_by()
                .map_or_else(String::new, |addr| addr.to_string());
            error!(
                name = %node.name(),
                %winner,
                "this node's name is taken by another live process, which started first and keeps it: stopping without leaving (restart under another name)"
            );
            node.shutdown().await;
            return exit::NAME_TAKEN;
        }
        Ending::Signal(signal) => info!(signal, "leaving the cluster"),
        Ending::LeaveOverHttp => info!("leaving the cluster (asked over HTTP)"),
        Ending::NodeStopped => warn!("the node stopped"),
    }
    if !node.has_left() {
        // Refused only when the node stopped already: nothing to announce then.
        let _ = node.leave().await;
    }
    node.shutdown().await;
    info!("stopped");
    exit::OK
}

/// Each process gets its own random stream (probe order, gossip targets).
fn seed_from_clock() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}
