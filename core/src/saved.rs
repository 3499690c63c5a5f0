//! The one serde form of a tracker row, for saved tables and for every JSON
//! reader (an agent's API and event lines, a CLI): `{"node", "addr", "status",
//! "health", "incarnation", "last_change", "tags"}`, labels in snake case,
//! `last_change` in RFC 3339, UTC, milliseconds, with `Z`. The wire has its own
//! encoding (`wire/row.rs`), so this form can change without splitting a cluster.

use std::fmt;
use std::net::SocketAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::name::NodeName;
use crate::tags::Tags;
use crate::tracker::{Health, MAX_INCARNATION, NodeStatus, TrackerRow};

/// `at` in the one timestamp format: RFC 3339, UTC, milliseconds, with `Z`
/// (`2026-12-07T02:46:32.123Z`).
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A row as saved: its own record type, not the wire's.
#[derive(Serialize, Deserialize)]
#[serde(rename = "TrackerRow")]
struct RowRecord<N, T> {
    node: N,
    addr: SocketAddr,
    /// Follows from `health`: written for readers; when loaded, it must agree.
    #[serde(default)]
    status: Option<NodeStatus>,
    health: Health,
    incarnation: u64,
    /// Tables saved by earlier versions name it `last_change_ms` (a number).
    #[serde(alias = "last_change_ms")]
    last_change: SavedTime,
    // Saved tables from before tags load with none.
    #[serde(default)]
    tags: T,
}

/// A row serializes to its one form (see the module docs), so a node's table
/// can be saved (e.g. as JSON) and handed to
/// [`Node::restore`](crate::Node::restore) after a restart.
impl Serialize for TrackerRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RowRecord {
            node: &self.node,
            addr: self.addr,
            status: Some(self.status),
            health: self.health,
            incarnation: self.incarnation,
            last_change: SavedTime(self.last_change),
            tags: &self.tags,
        }
        .serialize(serializer)
    }
}

/// Saved files are checked like peer bytes: an incarnation above
/// [`MAX_INCARNATION`], a time chrono cannot represent, a `status` that does
/// not follow `health`, or tags that are not sorted unique UTF-8 are an error.
/// The configured tag limits are applied where rows enter a node.
impl<'de> Deserialize<'de> for TrackerRow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let record = RowRecord::<NodeName, Tags>::deserialize(deserializer)?;
        if record.incarnation > MAX_INCARNATION {
            return Err(serde::de::Error::custom("incarnation out of range"));
        }
        if record
            .status
            .is_some_and(|status| status != record.health.status())
        {
            return Err(serde::de::Error::custom("status does not follow health"));
        }
        let row = TrackerRow::new(
            record.node,
            record.addr,
            record.health,
            record.incarnation,
            record.last_change.0,
        );
        Ok(row.with_tags(record.tags))
    }
}

/// `last_change` as saved: the timestamp text in human-readable formats, Unix
/// milliseconds in binary ones; Unix milliseconds also load from text formats
/// (tables saved by earlier versions).
struct SavedTime(DateTime<Utc>);

impl Serialize for SavedTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&timestamp(self.0))
        } else {
            serializer.serialize_i64(self.0.timestamp_millis())
        }
    }
}

impl<'de> Deserialize<'de> for SavedTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(TimeVisitor)
        } else {
            deserializer.deserialize_i64(TimeVisitor)
        }
    }
}

struct TimeVisitor;

impl TimeVisitor {
    fn millis<E: serde::de::Error>(millis: i64) -> Result<SavedTime, E> {
        DateTime::from_timestamp_millis(millis)
            .map(SavedTime)
            .ok_or_else(|| E::custom("last_change out of range"))
    }
}

impl serde::de::Visitor<'_> for TimeVisitor {
    type Value = SavedTime;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 time or Unix milliseconds")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SavedTime, E> {
        DateTime::parse_from_rfc3339(text)
            .map(|at| SavedTime(at.with_timezone(&Utc)))
            .map_err(|_| E::custom("last_change is not an RFC 3339 time"))
    }

    fn visit_i64<E: serde::de::Error>(self, millis: i64) -> Result<SavedTime, E> {
        Self::millis(millis)
    }

    fn visit_u64<E: serde::de::Error>(self, millis: u64) -> Result<SavedTime, E> {
        i64::try_from(millis)
            .map_or_else(|_| Err(E::custom("last_change out of range")), Self::millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> TrackerRow {
        let at = DateTime::from_timestamp_millis(1_796_611_592_123).expect("in range");
        TrackerRow::new(
            NodeName::new("n").expect("valid"),
            "10.0.0.1:7946".parse().expect("valid"),
            Health::Suspect,
            3,
            at,
        )
        .with_tags(Tags::from_pairs([("role", "db")]).expect("valid"))
    }

    #[test]
    fn a_row_saves_in_its_one_form_and_loads_back_checked() {
        let row = saved();
        let json = serde_json::to_string(&row).expect("serializes");
        assert_eq!(
            json,
            r#"{"node":"n","addr":"10.0.0.1:7946","status":"online","health":"suspect","incarnation":3,"last_change":"2026-12-07T02:46:32.123Z","tags":{"role":"db"}}"#
        );
        let loaded: TrackerRow = serde_json::from_str(&json).expect("loads");
        assert_eq!(loaded, row);
        // A table saved before tags existed loads with none.
        let untagged = json.replace(r#","tags":{"role":"db"}"#, "");
        let loaded: TrackerRow = serde_json::from_str(&untagged).expect("loads");
        assert!(loaded.tags.is_empty());
        let forged = json.replace(":3,", &format!(":{},", u64::MAX));
        assert!(serde_json::from_str::<TrackerRow>(&forged).is_err());
        let contradicts = json.replace(r#""online""#, r#""offline""#);
        assert!(serde_json::from_str::<TrackerRow>(&contradicts).is_err());
        let bad_time = json.replace("2026-12-07T02:46:32.123Z", "yesterday");
        assert!(serde_json::from_str::<TrackerRow>(&bad_time).is_err());
    }

    #[test]
    fn a_table_saved_by_an_earlier_version_still_loads() {
        let old = r#"{"node":"n","addr":"10.0.0.1:7946","incarnation":3,"health":"Suspect","last_change_ms":1796611592123,"tags":{"role":"db"}}"#;
        let loaded: TrackerRow = serde_json::from_str(old).expect("loads");
        assert_eq!(loaded, saved());
        let far = old.replace("1796611592123", &i64::MAX.to_string());
        assert!(serde_json::from_str::<TrackerRow>(&far).is_err());
    }

    #[test]
    fn a_binary_save_round_trips() {
        let bytes = postcard::to_allocvec(&saved()).expect("encodes");
        let loaded: TrackerRow = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(loaded, saved());
    }
}
