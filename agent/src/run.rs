//! `beethoven agent`: start the node (and the HTTP API, and the event stream
//! when asked), log what happens, reload keys on SIGHUP, and on SIGTERM or
//! SIGINT leave and exit once the leave has spread.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use beethoven_tokio::{Handle, Options, Seed, StartError, Update};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::api::Api;
use crate::auth::{Guard, TOKEN_ENV, Token};
use crate::config::Settings;
use crate::data_dir::{DataDir, SavedState, Saver};
use crate::error::{AgentError, exit};
use crate::events::EventLines;
use crate::handlers::{self, HandlerCounts};
use crate::http;
use crate::keys;
use crate::keys_cluster::{self, ClusterKeys};
use crate::keys_query;
use crate::seed_names::{self, SplitSeeds};
use crate::warnings::Warnings;

/// How often the agent checks the node's counters for warnings.
const TICK: Duration = Duration::from_secs(1);

/// The member table is saved (when it changed) every this many ticks; tags at
/// the first tick after they change.
const SAVE_EVERY_TICKS: u64 = 5;

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

/// The saved state, if the data folder has a usable one; a file that cannot be
/// used is reported with its path, and the agent starts without it.
fn load_saved(dir: &DataDir) -> Option<SavedState> {
    match dir.load() {
        Ok(state) => state,
        Err(not_used) => {
            warn!(error = %not_used, "the saved state is not used; starting without it");
            None
        }
    }
}

/// Starts the node with the seeds whose names resolve (and the saved members to
/// rejoin through); returns it with the names that do not resolve yet. A name
/// that stopped resolving between the look-up and the start joins those.
async fn start_node(
    options: Options,
    seeds: &[Seed],
    rejoin: Vec<Seed>,
) -> Result<(Handle, Vec<String>), AgentError> {
    let SplitSeeds {
        mut ready,
        mut pending,
    } = seed_names::split(seeds).await;
    ready.extend(rejoin);
    loop {
        let mut attempt = options.clone();
        for seed in &ready {
            attempt = attempt.seed(seed.clone());
        }
        match beethoven_tokio::start(attempt).await {
            Ok(node) => return Ok((node, pending)),
            Err(StartError::Resolve { host, source }) => {
                warn!(seed = %host, error = %source, "seed name does not resolve; the agent starts without it and keeps trying");
                ready.retain(|seed| seed.host_port().as_deref() != Some(host.as_str()));
                pending.push(host);
            }
            Err(error) => return Err(error.into()),
        }
    }
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
    let mut tags = settings.parsed_tags()?;
    let handler_specs = settings.handlers()?;
    let bind = settings.bind_addr();
    let data_dir = match &settings.data_dir {
        Some(folder) => Some(
            DataDir::open(folder, settings.cluster_name(), name.clone()).map_err(|source| {
                AgentError::DataDir {
                    path: folder.clone(),
                    source,
                }
            })?,
        ),
        None => None,
    };
    let saved = data_dir.as_ref().and_then(load_saved);
    if let Some(state) = &saved {
        let saved_tags = state.tags();
        if saved_tags != tags {
            info!(saved = %saved_tags, configured = %tags, "tags from the data folder (changed live before the restart)");
        }
        tags = saved_tags;
    }
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

    let (join_retry, rejoin_interval) = (config.join_retry, config.rejoin_interval);
    let mut options = Options::new(name.clone())
        .config(config)
        .bind(bind)
        .tags(tags);
    if let Some(advertise) = settings.advertise {
        options = options.advertise(advertise);
    }
    let rejoin: Vec<Seed> = saved
        .as_ref()
        .map(|state| {
            state
                .rejoin_addrs(&name)
                .into_iter()
                .map(Seed::Addr)
                .collect()
        })
        .unwrap_or_default();
    let (node, pending) = start_node(options, &seeds, rejoin).await?;
    if let Some(state) = &saved {
        let rows = state.peers(&name);
        let count = rows.len();
        match node.restore(rows).await {
            Ok(()) => info!(
                members = count,
                "member table restored from the data folder"
            ),
            Err(error) => warn!(%error, "the saved member table was not restored"),
        }
    }
    for host in pending {
        tokio::spawn(seed_names::keep_trying(
            node.clone(),
            host,
            join_retry,
            rejoin_interval,
        ));
    }
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
    let cluster_keys = Arc::new(ClusterKeys::new(settings.key_file.clone(), ring));
    cluster_keys.publish(&node).await;
    keys_query::answer_queries(&node, Arc::clone(&cluster_keys));
    let http_addr = match listener.map(|(listener, guard)| (listener, guard, Arc::clone(&lines))) {
        Some((listener, guard, events)) => {
            let addr = listener.local_addr().ok();
            let api = Api {
                node: node.clone(),
                keys: Arc::clone(&cluster_keys),
                stop,
                events,
                cluster: settings.cluster_name().to_owned(),
                started: Instant::now(),
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

    let mut saver = data_dir.map(Saver::new);
    let mut ticks: u64 = 0;
    let mut tick = tokio::time::interval(TICK);
    let ending = loop {
        tokio::select! {
            update = events.recv() => match update {
                Some(Update::Node { node: other, status }) => {
                    info!(node = %other, %status, "node update");
                }
                Some(Update::JoinFailed { attempts, refused }) => {
                    warnings.join_failed(attempts, &refused);
                }
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
                ticks += 1;
                if let Some(saver) = &mut saver {
                    let tags = node.tags();
                    if saver.tags_changed(&tags) || ticks.is_multiple_of(SAVE_EVERY_TICKS) {
                        saver.save_if_changed(&tags, node.cluster_nodes());
                    }
                }
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
    if let Some(saver) = &mut saver {
        saver.save_if_changed(&node.tags(), node.cluster_nodes());
    }
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
