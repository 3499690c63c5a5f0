//! The one JSON form of a tracker row, for every reader of the agent: the
//! HTTP API (`/v1/members`), the event lines (`tracker`), and `beethoven
//! members --json`. Times are RFC 3339, UTC, milliseconds, with `Z`.

use beethoven_tokio::{Tags, TrackerRow};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// One row: `{"node", "addr", "status", "health", "incarnation",
/// "last_change", "tags"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Row {
    pub(crate) node: String,
    pub(crate) addr: String,
    /// `online` or `offline`.
    pub(crate) status: String,
    /// `alive`, `suspect`, `dead` or `left`.
    pub(crate) health: String,
    pub(crate) incarnation: u64,
    /// RFC 3339, UTC, milliseconds.
    pub(crate) last_change: String,
    /// A JSON object of the member's tags.
    #[serde(default)]
    pub(crate) tags: Tags,
}

impl From<&TrackerRow> for Row {
    fn from(row: &TrackerRow) -> Self {
        Row {
            node: row.node.as_str().to_owned(),
            addr: row.addr.to_string(),
            status: row.status.as_str().to_owned(),
            health: row.health.as_str().to_owned(),
            incarnation: row.incarnation,
            last_change: timestamp(row.last_change),
            tags: row.tags.clone(),
        }
    }
}

/// The one timestamp format: RFC 3339, UTC, milliseconds, `Z`.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_is_utc_with_milliseconds_and_z() {
        let at = DateTime::from_timestamp_millis(1_796_611_592_123).expect("in range");
        assert_eq!(timestamp(at), "2026-12-07T02:46:32.123Z");
    }
}
