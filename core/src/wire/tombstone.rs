//! Tombstones on the wire: a member pruned from every table (`force_leave`
//! with `prune`), piggybacked as an item and sent as a message to a peer that
//! still holds the pruned row.
//!
//! ```text
//! kind  message      fields
//! 21    Tombstones   count (varint) | tombstone*   (answers a pruned row)
//!
//! kind  item         fields
//!  4    Tombstone    tombstone
//!
//! tombstone = name (varint length | UTF-8) | incarnation (varint)
//!             | pruned at (zigzag varint, Unix ms of the pruning node's clock)
//! ```
//!
//! A node of a build without tombstones skips both by their length and counts
//! them (`UnknownMessage`, `UnknownPiggyback`); it keeps the row until its own
//! retention reaps it.

use serde::ser::{Serialize, SerializeSeq, Serializer};

use crate::name::NodeName;

/// Message kind of a direct answer with tombstones (kinds 20..=23 belong to
/// this part of the wire: 20 is the refusal notice, `notice.rs`).
pub(super) const TOMBSTONES: u32 = 21;

/// Piggybacked item kind of one tombstone (items 4..=5 belong to it).
pub(super) const TOMBSTONE_ITEM: u32 = 4;

/// `node` was pruned at every incarnation up to `incarnation`: its rows at
/// those incarnations are removed and refused until the tombstone expires,
/// `retention` after `pruned_at` (the pruning node's wall clock, Unix ms, so
/// that every node lets it go at the same time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tombstone {
    pub(crate) node: NodeName,
    pub(crate) incarnation: u64,
    pub(crate) pruned_at: i64,
}

/// The tombstones of a `Tombstones` message: counted, each as its fields
/// (the item form frames each one instead: `message.rs`).
pub(super) struct TombstoneList<'a>(pub(super) &'a [Tombstone]);

impl Serialize for TombstoneList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for tombstone in self.0 {
            seq.serialize_element(&(&tombstone.node, tombstone.incarnation, tombstone.pruned_at))?;
        }
        seq.end()
    }
}
