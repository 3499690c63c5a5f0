//! A tracker row as it travels: the wire's own encoding, written field by field
//! so that no other serde form (the JSON vocabulary, the save format) moves a
//! wire byte.
//!
//! ```text
//! row  = length (varint) | node (varint length | UTF-8) | addr | incarnation (varint)
//!      | health (1 byte: 0 alive, 1 suspect, 2 dead, 3 left)
//!      | last change (zigzag varint, Unix milliseconds)
//!      | tags (varint length | encoded entries: see `tags.rs`)
//!      | fields a later version appends (skipped)
//! addr = 0 | IPv4 octets (4) | port (varint)  or  1 | IPv6 octets (16) | port (varint)
//! ```

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use chrono::DateTime;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::name::NodeName;
use crate::tags::{RawTags, TagLimits, TagsError};
use crate::tracker::{Health, MAX_INCARNATION, TrackerRow};

/// A tracker row as it travels (see the module docs for its layout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WireRow(pub(crate) TrackerRow);

/// A row as decoded from a peer's bytes: numbers checked, tags not yet (they
/// are checked against the receiver's limits, so that each broken rule is a
/// drop reason of its own rather than one "malformed").
#[derive(Debug)]
pub(crate) struct UncheckedRow {
    row: TrackerRow,
    tags: RawTags,
}

impl UncheckedRow {
    /// The row, if its tags keep `limits`.
    pub(crate) fn check(self, limits: TagLimits) -> Result<WireRow, TagsError> {
        let tags = crate::tags::Tags::from_encoded(self.tags.0, limits)?;
        Ok(WireRow(self.row.with_tags(tags)))
    }
}

/// The health's byte on the wire (the order of precedence, fixed here rather
/// than by the enum's declaration).
fn health_code(health: Health) -> u8 {
    match health {
        Health::Alive => 0,
        Health::Suspect => 1,
        Health::Dead => 2,
        Health::Left => 3,
    }
}

fn health_from_code(code: u8) -> Option<Health> {
    Some(match code {
        0 => Health::Alive,
        1 => Health::Suspect,
        2 => Health::Dead,
        3 => Health::Left,
        _ => return None,
    })
}

/// A socket address as it travels (flow info and scope id are not carried).
#[derive(Serialize, Deserialize)]
pub(crate) enum WireAddr {
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

impl From<SocketAddr> for WireAddr {
    fn from(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(addr) => WireAddr::V4(addr.ip().octets(), addr.port()),
            SocketAddr::V6(addr) => WireAddr::V6(addr.ip().octets(), addr.port()),
        }
    }
}

impl From<WireAddr> for SocketAddr {
    fn from(addr: WireAddr) -> Self {
        match addr {
            WireAddr::V4(ip, port) => SocketAddr::from((Ipv4Addr::from(ip), port)),
            WireAddr::V6(ip, port) => SocketAddr::from((Ipv6Addr::from(ip), port)),
        }
    }
}

/// A value behind its length: `length (varint) | encoding`, so that a reader
/// can skip it, or the fields a later version appends to it.
pub(crate) struct Framed<T>(pub(crate) T);

impl<T: Serialize> Serialize for Framed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (super::encoded_len(&self.0), &self.0).serialize(serializer)
    }
}

/// A byte string: a varint length, then the bytes.
struct ByteStr<'a>(&'a [u8]);

impl Serialize for ByteStr<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl Serialize for WireRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let row = &self.0;
        Framed((
            row.node.as_str(),
            WireAddr::from(row.addr),
            row.incarnation,
            health_code(row.health),
            row.last_change.timestamp_millis(),
            ByteStr(row.tags.encoded()),
        ))
        .serialize(serializer)
    }
}

/// Numbers are checked: an incarnation above [`MAX_INCARNATION`], an unknown
/// health or a time chrono cannot represent is an error.
impl<'de> Deserialize<'de> for UncheckedRow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let frame = <&[u8]>::deserialize(deserializer)?;
        let ((node, addr, incarnation, health, last_change_ms, tags), _later_fields): (
            (NodeName, WireAddr, u64, u8, i64, RawTags),
            _,
        ) = postcard::take_from_bytes(frame).map_err(D::Error::custom)?;
        if incarnation > MAX_INCARNATION {
            return Err(D::Error::custom("incarnation out of range"));
        }
        let health = health_from_code(health).ok_or_else(|| D::Error::custom("unknown health"))?;
        let last_change = DateTime::from_timestamp_millis(last_change_ms)
            .ok_or_else(|| D::Error::custom("last change out of range"))?;
        let row = TrackerRow::new(node, addr.into(), health, incarnation, last_change);
        Ok(UncheckedRow { row, tags })
    }
}
