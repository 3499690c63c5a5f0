//! Log lines on stderr through `tracing-subscriber`, and warnings that repeat at
//! most once per period.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::error::AgentError;

/// The levels a log filter may name.
pub(crate) const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a `--log-level` filter: a level, or comma-separated `target=level`
/// directives (e.g. `info,beethoven_core=debug`). `tracing`'s own parser would
/// take an unknown word such as `verbose` as a target name and log nothing.
pub(crate) fn check_level(filter: &str) -> Result<EnvFilter, AgentError> {
    let bad = |reason: String| AgentError::BadLogLevel {
        level: filter.to_owned(),
        reason,
    };
    for directive in filter.split(',').map(str::trim) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(bad(format!(
                "unknown level `{level}`: expected one of {}, or `target=level` directives separated by commas",
                LEVELS.join(", ")
            )));
        }
    }
    EnvFilter::try_new(filter).map_err(|error| bad(error.to_string()))
}

/// Installs the subscriber: `level` (from `--log-level`, its variable or the
/// file) wins, then `RUST_LOG`, then `info`.
pub(crate) fn init(level: Option<&str>, format: LogFormat) -> Result<(), AgentError> {
    let filter = match level {
        Some(level) => check_level(level)?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // Colours only for a terminal: a log file or journal gets plain text.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    // A subscriber installed already (tests) keeps its place.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

/// Lets a warning of each kind through at most once per `period`.
#[derive(Debug)]
pub(crate) struct RateLimit<K> {
    period: Duration,
    last: HashMap<K, Instant>,
}

impl<K: std::hash::Hash + Eq> RateLimit<K> {
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            period,
            last: HashMap::new(),
        }
    }

    /// Whether a warning of kind `key` may be written at `now` (and if so, it is
    /// counted as written).
    pub(crate) fn allow(&mut self, key: K, now: Instant) -> bool {
        match self.last.get(&key) {
            Some(&at) if now.saturating_duration_since(at) < self.period => false,
            _ => {
                self.last.insert(key, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_log_level_is_refused_with_the_valid_ones() {
        for bad in ["verbose", "info,beethoven_core=loud", "", "beethoven_core"] {
            let message = check_level(bad).expect_err(bad).to_string();
            assert!(
                message.contains("trace, debug, info, warn, error, off"),
                "{message}"
            );
        }
        for good in [
            "info",
            "WARN",
            "info,beethoven_core=debug",
            "beethoven_agent=trace",
        ] {
            assert!(check_level(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_warning_repeats_only_after_its_period_and_kinds_are_apart() {
        let mut limit = RateLimit::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert!(limit.allow("auth", t0));
        assert!(!limit.allow("auth", t0 + Duration::from_secs(29)));
        assert!(limit.allow("cluster", t0 + Duration::from_secs(1)));
        assert!(limit.allow("auth", t0 + Duration::from_secs(30)));
    }
}
