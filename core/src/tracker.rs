//! The replicated table of the cluster's nodes and the precedence rule that makes
//! every replica converge to identical rows.
//!
//! Merging is a join in a total order: a row replaces another only when it ranks
//! higher, so applying the same set of rows in any order, any number of times,
//! gives the same table.

use std::cmp::{Ordering, Reverse};
use std::fmt;
use std::net::SocketAddr;

use hashbrown::HashTable;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::name::{Fnv, NodeName, fnv1a};
use crate::tags::{TagQuery, Tags};

/// Online or offline: what subscribers hear about (the original's `nodeStatus`).
/// Serializes as its [`as_str`](NodeStatus::as_str) name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// The node is a working member (`Alive` or `Suspect`).
    Online,
    /// The node failed (`Dead`) or left (`Left`).
    Offline,
}

/// What the failure detector believes about a node. Declared in precedence order:
/// at the same incarnation a later variant overrides an earlier one. Serializes
/// as its [`as_str`](Health::as_str) name (tables saved with the capitalized
/// names of earlier versions still load).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Answering probes.
    #[serde(alias = "Alive")]
    Alive,
    /// Missed a probe; still online until the suspicion times out or is refuted.
    #[serde(alias = "Suspect")]
    Suspect,
    /// Declared failed.
    #[serde(alias = "Dead")]
    Dead,
    /// Left the cluster on purpose.
    #[serde(alias = "Left")]
    Left,
}

labels!(NodeStatus {
    Online => "online",
    Offline => "offline",
});

labels!(Health {
    Alive => "alive",
    Suspect => "suspect",
    Dead => "dead",
    Left => "left",
});

impl Health {
    /// The status subscribers see for this health.
    pub fn status(self) -> NodeStatus {
        match self {
            Health::Alive | Health::Suspect => NodeStatus::Online,
            Health::Dead | Health::Left => NodeStatus::Offline,
        }
    }
}

/// One row of the tracker: what this node believes about one node of the cluster.
///
/// Rows are made by the library only, so `status` always matches `health`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub struct TrackerRow {
    /// The node's stable name.
    pub node: NodeName,
    /// Where the node listens.
    pub addr: SocketAddr,
    /// `Online` for `Alive`/`Suspect`, `Offline` for `Dead`/`Left`.
    pub status: NodeStatus,
    /// The failure detector's view.
    pub health: Health,
    /// Owned by the node; raised only by the node itself, to refute or come back.
    pub incarnation: u64,
    /// Wall-clock time of the change, set by whoever made it and carried with the
    /// row (millisecond precision, so replicas hold identical values).
    pub last_change: DateTime<Utc>,
    /// The node's own tags, as of `incarnation` (only the node changes them,
    /// raising its incarnation: see [`Node::set_tags`](crate::Node::set_tags)).
    pub tags: Tags,
}

impl TrackerRow {
    /// A row without tags; `last_change` is truncated to whole milliseconds, the
    /// precision the wire carries.
    pub(crate) fn new(
        node: NodeName,
        addr: SocketAddr,
        health: Health,
        incarnation: u64,
        last_change: DateTime<Utc>,
    ) -> Self {
        let millis = last_change.timestamp_millis();
        let last_change = DateTime::from_timestamp_millis(millis)
            .expect("a timestamp taken from a valid DateTime is in range");
        Self {
            node,
            addr,
            status: health.status(),
            health,
            incarnation,
            last_change,
            tags: Tags::new(),
        }
    }

    /// The same row with these tags.
    pub(crate) fn with_tags(mut self, tags: Tags) -> Self {
        self.tags = tags;
        self
    }

    /// The same node with another health, changed at `at` (tags kept: they
    /// belong to the incarnation).
    pub(crate) fn with_health(&self, health: Health, at: DateTime<Utc>) -> Self {
        Self::new(self.node.clone(), self.addr, health, self.incarnation, at)
            .with_tags(self.tags.clone())
    }

    /// Total order used for merging; see [`TrackerRow::supersedes`].
    fn precedence(&self) -> (u64, Health, Reverse<DateTime<Utc>>, SocketAddr, &[u8]) {
        (
            self.incarnation,
            self.health,
            Reverse(self.last_change),
            self.addr,
            self.tags.encoded(),
        )
    }

    /// Whether this row replaces `other` (a row about the same node).
    ///
    /// - a higher incarnation wins (`Alive(i)` beats anything at `j < i`: refutation, restart);
    /// - at equal incarnation `Left > Dead > Suspect > Alive`;
    /// - exact ties of (incarnation, health) keep the earlier change, then the lower
    ///   address, then the tags (a node changes its tags only with a higher
    ///   incarnation; this last rule only keeps replicas that were handed two
    ///   versions of one incarnation, e.g. from saved tables, agreeing).
    pub fn supersedes(&self, other: &TrackerRow) -> bool {
        self.precedence().cmp(&other.precedence()) == Ordering::Greater
    }

    /// The anti-entropy digest bucket a node's row falls in.
    pub(crate) fn bucket(name: &NodeName) -> usize {
        (fnv1a(name.as_bytes()) % DIGEST_BUCKETS as u64) as usize
    }

    /// A hash of every field, stable across processes.
    fn content_hash(&self) -> u64 {
        let mut hash = Fnv::new();
        hash.write(self.node.as_bytes());
        hash.write(&[0xff]);
        match self.addr {
            SocketAddr::V4(addr) => hash.write(&addr.ip().octets()),
            SocketAddr::V6(addr) => hash.write(&addr.ip().octets()),
        }
        hash.write(&self.addr.port().to_le_bytes());
        hash.write(&self.incarnation.to_le_bytes());
        hash.write(&[self.health as u8]);
        hash.write(&self.last_change.timestamp_millis().to_le_bytes());
        hash.write(&(self.tags.encoded_len() as u64).to_le_bytes());
        hash.write(self.tags.encoded());
        hash.finish()
    }
}

/// The highest incarnation a row may carry (rows from peers or saved files above
/// it do not load). Far beyond any real count (a node refuting a thousand times a
/// second would need 146 million years), and low enough that outbidding it
/// (`+ 1`) cannot overflow: a forged row at `u64::MAX` would otherwise wrap a
/// refutation to 0 and keep its victim dead for good.
pub const MAX_INCARNATION: u64 = u64::MAX >> 1;

/// How many hash buckets the anti-entropy digest splits the tracker into.
pub const DIGEST_BUCKETS: usize = 16;

/// A summary of a tracker: one order-independent hash per bucket of node names.
/// Two trackers with equal digests hold (with overwhelming probability) equal rows.
pub type Digest = [u64; DIGEST_BUCKETS];

/// A change the tracker accepted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct RowChange {
    pub(crate) id: RowId,
    pub(crate) old: Option<TrackerRow>,
    pub(crate) new: TrackerRow,
}

/// The replicated table: one row per known node, self included.
///
/// Rows live in a slab with stable ids (so member lists can refer to them with
/// four bytes), found by name through a hash index: about 110 bytes per row.
/// The slab grows in fixed chunks, never by moving rows, so a growing tracker
/// leaves no trail of freed blocks behind.
#[derive(Clone, Default)]
pub struct Tracker {
    slots: Slab,
    free: Vec<u32>,
    index: HashTable<u32>,
    len: usize,
    digest: Digest,
    online: usize,
}

/// The stable id of a row in its tracker, valid until the row is removed.
pub(crate) type RowId = u32;

/// Rows per slab chunk.
const CHUNK: usize = 256;

/// Fixed-size chunks of slots, addressed by id.
#[derive(Clone, Default)]
struct Slab {
    chunks: Vec<Box<[Option<TrackerRow>]>>,
    /// Ids handed out so far (the next fresh id).
    used: u32,
}

impl Slab {
    fn get(&self, id: RowId) -> Option<&TrackerRow> {
        let id = id as usize;
        self.chunks.get(id / CHUNK)?[id % CHUNK].as_ref()
    }

    fn get_mut(&mut self, id: RowId) -> Option<&mut Option<TrackerRow>> {
        let id = id as usize;
        self.chunks
            .get_mut(id / CHUNK)
            .map(|chunk| &mut chunk[id % CHUNK])
    }

    /// A fresh id, its chunk allocated.
    fn fresh(&mut self) -> RowId {
        let id = self.used;
        if (id as usize).is_multiple_of(CHUNK) {
            self.chunks.push(vec![None; CHUNK].into_boxed_slice());
        }
        self.used += 1;
        id
    }

    /// Occupied slots from id `start` on, in id order.
    fn from(&self, start: RowId) -> impl Iterator<Item = (RowId, &TrackerRow)> + '_ {
        (start..self.used).filter_map(|id| self.get(id).map(|row| (id, row)))
    }

    fn rows(&self) -> impl Iterator<Item = &TrackerRow> + '_ {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .filter_map(Option::as_ref)
    }
}

fn name_hash(name: &NodeName) -> u64 {
    fnv1a(name.as_bytes())
}

impl Tracker {
    /// An empty tracker.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Merges a row: it is stored when the node is unknown or the row supersedes
    /// the stored one. Returns the change, or `None` when the row lost.
    pub(crate) fn merge(&mut self, row: TrackerRow) -> Option<RowChange> {
        let id = self.id_of(&row.node);
        self.merge_known(id, row)
    }

    /// [`Tracker::merge`] for a caller that already looked the row's id up.
    pub(crate) fn merge_known(&mut self, id: Option<RowId>, row: TrackerRow) -> Option<RowChange> {
        let (id, old) = match id {
            Some(id) => {
                let slot = self
                    .slots
                    .get_mut(id)
                    .and_then(Option::as_mut)
                    .expect("the index only holds ids of occupied slots");
                if !row.supersedes(slot) {
                    return None;
                }
                (id, Some(std::mem::replace(slot, row.clone())))
            }
            None => (self.insert(row.clone()), None),
        };
        self.account(old.as_ref(), Some(&row));
        Some(RowChange { id, old, new: row })
    }

    fn insert(&mut self, row: TrackerRow) -> RowId {
        let hash = name_hash(&row.node);
        let id = self.free.pop().unwrap_or_else(|| self.slots.fresh());
        if let Some(slot) = self.slots.get_mut(id) {
            *slot = Some(row);
        }
        let slots = &self.slots;
        self.index.insert_unique(hash, id, |&id| {
            slots.get(id).map_or(0, |row| name_hash(&row.node))
        });
        self.len += 1;
        id
    }

    /// Removes a node's row (retention reaping); its id may be reused.
    pub(crate) fn remove(&mut self, name: &NodeName) -> Option<TrackerRow> {
        let slots = &self.slots;
        let entry = self
            .index
            .find_entry(name_hash(name), |&id| {
                slots.get(id).is_some_and(|row| row.node == *name)
            })
            .ok()?;
        let (id, _) = entry.remove();
        let old = self.slots.get_mut(id)?.take()?;
        self.free.push(id);
        self.len -= 1;
        self.account(Some(&old), None);
        Some(old)
    }

    fn account(&mut self, old: Option<&TrackerRow>, new: Option<&TrackerRow>) {
        for (row, online_delta) in [(old, -1isize), (new, 1)] {
            if let Some(row) = row {
                self.digest[TrackerRow::bucket(&row.node)] ^= row.content_hash();
                if row.status == NodeStatus::Online {
                    self.online = self.online.saturating_add_signed(online_delta);
                }
            }
        }
    }

    /// The id of a node's row.
    pub(crate) fn id_of(&self, name: &NodeName) -> Option<RowId> {
        self.index
            .find(name_hash(name), |&id| {
                self.slots.get(id).is_some_and(|row| row.node == *name)
            })
            .copied()
    }

    /// The row with this id.
    pub(crate) fn by_id(&self, id: RowId) -> Option<&TrackerRow> {
        self.slots.get(id)
    }

    /// One node's row.
    pub fn get(&self, name: &NodeName) -> Option<&TrackerRow> {
        self.id_of(name).and_then(|id| self.by_id(id))
    }

    /// Every row, in no particular order (see [`Tracker::sorted_rows`]).
    pub fn rows(&self) -> impl Iterator<Item = &TrackerRow> + '_ {
        self.slots.rows()
    }

    /// Every row, ordered by name.
    pub fn sorted_rows(&self) -> Vec<&TrackerRow> {
        let mut rows: Vec<&TrackerRow> = self.rows().collect();
        rows.sort_unstable_by(|a, b| a.node.cmp(&b.node));
        rows
    }

    /// Rows with their ids, from id `start` on, in id order (a cursor that stays
    /// valid while the tracker changes).
    pub(crate) fn rows_from(
        &self,
        start: RowId,
    ) -> impl Iterator<Item = (RowId, &TrackerRow)> + '_ {
        self.slots.from(start)
    }

    /// Rows whose tags match `query`, online ones only unless the query
    /// [includes offline](TagQuery::including_offline) members; in no
    /// particular order. Self included.
    pub fn find<'a>(&'a self, query: &'a TagQuery) -> impl Iterator<Item = &'a TrackerRow> + 'a {
        self.rows().filter(move |row| {
            (query.includes_offline() || row.status == NodeStatus::Online)
                && query.matches(&row.tags)
        })
    }

    /// Rows whose status is `Online`, in no particular order.
    pub fn online(&self) -> impl Iterator<Item = &TrackerRow> + '_ {
        self.rows().filter(|row| row.status == NodeStatus::Online)
    }

    /// How many rows are `Online` (self included).
    pub fn online_count(&self) -> usize {
        self.online
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the tracker has no rows (never true for a node's tracker, which holds itself).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The anti-entropy digest, kept up to date on every change.
    pub fn digest(&self) -> Digest {
        self.digest
    }
}

impl PartialEq for Tracker {
    /// Same rows, whatever the order they were learned in.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self.digest == other.digest
            && self.rows().all(|row| other.get(&row.node) == Some(row))
    }
}

impl Eq for Tracker {}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.sorted_rows()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000 + ms).expect("in range")
    }

    fn row(health: Health, incarnation: u64) -> TrackerRow {
        TrackerRow::new(
            NodeName::new("n").expect("valid"),
            "10.0.0.1:7946".parse().expect("valid"),
            health,
            incarnation,
            at(0),
        )
    }

    const HEALTHS: [Health; 4] = [Health::Alive, Health::Suspect, Health::Dead, Health::Left];

    /// The table of DESIGN.md section 4, checked for every pair of (health, incarnation).
    #[test]
    fn precedence_table_holds_for_every_pair() {
        for a in HEALTHS {
            for b in HEALTHS {
                for i in 0..3u64 {
                    for j in 0..3u64 {
                        let (x, y) = (row(a, i), row(b, j));
                        let expected = match (a, b) {
                            _ if i > j => true,
                            _ if i < j => false,
                            // equal incarnations: the stronger health wins
                            _ => a > b,
                        };
                        assert_eq!(x.supersedes(&y), expected, "{a:?}({i}) over {b:?}({j})");
                    }
                }
            }
        }
        // the rules as DESIGN.md words them
        assert!(row(Health::Alive, 2).supersedes(&row(Health::Suspect, 1)));
        assert!(!row(Health::Alive, 1).supersedes(&row(Health::Suspect, 1)));
        assert!(row(Health::Suspect, 1).supersedes(&row(Health::Alive, 1)));
        assert!(row(Health::Dead, 1).supersedes(&row(Health::Suspect, 1)));
        assert!(row(Health::Left, 1).supersedes(&row(Health::Alive, 1)));
        assert!(row(Health::Alive, 2).supersedes(&row(Health::Dead, 1)));
    }

    #[test]
    fn ties_keep_the_earlier_change_then_the_lower_address() {
        let early = row(Health::Suspect, 1);
        let mut late = early.clone();
        late.last_change = at(5);
        assert!(early.supersedes(&late));
        assert!(!late.supersedes(&early));
        let mut other_addr = early.clone();
        other_addr.addr = "10.0.0.2:7946".parse().expect("valid");
        assert!(other_addr.supersedes(&early));
        assert!(!early.supersedes(&early), "a row never supersedes itself");
    }

    #[test]
    fn status_follows_health() {
        assert_eq!(row(Health::Alive, 0).status, NodeStatus::Online);
        assert_eq!(row(Health::Suspect, 0).status, NodeStatus::Online);
        assert_eq!(row(Health::Dead, 0).status, NodeStatus::Offline);
        assert_eq!(row(Health::Left, 0).status, NodeStatus::Offline);
    }

    #[test]
    fn merge_reports_changes_and_keeps_counters() {
        let mut tracker = Tracker::new();
        let change = tracker.merge(row(Health::Alive, 0)).expect("new row");
        assert_eq!(change.old, None);
        assert_eq!(tracker.online_count(), 1);
        assert!(tracker.merge(row(Health::Alive, 0)).is_none(), "idempotent");
        let change = tracker.merge(row(Health::Dead, 0)).expect("dead wins");
        assert_eq!(change.old.map(|r| r.health), Some(Health::Alive));
        assert_eq!(tracker.online_count(), 0);
        let empty_digest = Tracker::new().digest();
        assert_ne!(tracker.digest(), empty_digest);
        tracker.remove(&NodeName::new("n").expect("valid"));
        assert_eq!(tracker.digest(), empty_digest, "digest is an XOR of rows");
        assert!(tracker.is_empty());
    }

    #[test]
    fn last_change_is_kept_to_the_millisecond() {
        let precise = at(0) + chrono::Duration::microseconds(1234);
        let r = TrackerRow::new(
            NodeName::new("n").expect("valid"),
            "10.0.0.1:1".parse().expect("valid"),
            Health::Alive,
            0,
            precise,
        );
        assert_eq!(r.last_change, at(1));
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        Tags::from_pairs(pairs.iter().copied()).expect("valid")
    }

    #[test]
    fn rows_that_differ_only_in_tags_have_different_digests_and_one_winner() {
        let plain = row(Health::Alive, 1);
        let tagged = plain.clone().with_tags(tags(&[("role", "db")]));
        let mut a = Tracker::new();
        a.merge(plain.clone());
        let mut b = Tracker::new();
        b.merge(tagged.clone());
        assert_ne!(a.digest(), b.digest(), "the digest covers tags");
        assert!(
            tagged.supersedes(&plain) != plain.supersedes(&tagged),
            "exactly one of two versions wins, so replicas converge"
        );
        // A tag change comes with a higher incarnation, and wins by it.
        let mut changed = plain.clone().with_tags(tags(&[("role", "web")]));
        changed.incarnation = 2;
        assert!(changed.supersedes(&tagged));
        let change = b.merge(changed.clone()).expect("newer");
        assert_eq!(
            change.old,
            Some(tagged),
            "a tag change is a write with the old row"
        );
    }

    #[test]
    fn find_lists_matching_rows_online_only_by_default() {
        let mut tracker = Tracker::new();
        for (name, health, role) in [
            ("a", Health::Alive, "db"),
            ("b", Health::Dead, "db"),
            ("c", Health::Suspect, "web"),
        ] {
            tracker.merge(
                TrackerRow::new(
                    NodeName::new(name).expect("valid"),
                    "10.0.0.1:7946".parse().expect("valid"),
                    health,
                    0,
                    at(0),
                )
                .with_tags(tags(&[("role", role)])),
            );
        }
        let names = |query: &TagQuery| {
            let mut found: Vec<String> = tracker.find(query).map(|r| r.node.to_string()).collect();
            found.sort();
            found
        };
        assert_eq!(names(&TagQuery::key_value("role", "db")), ["a"]);
        assert_eq!(
            names(&TagQuery::key_value("role", "db").including_offline()),
            ["a", "b"]
        );
        assert_eq!(names(&TagQuery::key("role")), ["a", "c"]);
        assert!(names(&TagQuery::key("zone")).is_empty());
    }

    mod merge_properties {
        use super::*;
        use proptest::prelude::*;

        fn arb_row() -> impl Strategy<Value = TrackerRow> {
            (0..4usize, 0..3u8, 0..3u64, 0..4usize, 0..3i64).prop_map(
                |(name, port, incarnation, health, ms)| {
                    TrackerRow::new(
                        NodeName::new(&format!("n{name}")).expect("valid"),
                        SocketAddr::from(([10, 0, 0, 1], 7000 + u16::from(port))),
                        HEALTHS[health],
                        incarnation,
                        at(ms),
                    )
                },
            )
        }

        fn merged(rows: &[TrackerRow]) -> Tracker {
            let mut tracker = Tracker::new();
            for row in rows {
                tracker.merge(row.clone());
            }
            tracker
        }

        proptest! {
            /// Merging is commutative and idempotent: any order, any repetition,
            /// the same table (and the same digest).
            #[test]
            fn any_order_and_repetition_gives_the_same_tracker(
                rows in proptest::collection::vec(arb_row(), 0..24),
                seed in any::<u64>(),
            ) {
                let reference = merged(&rows);
                let mut shuffled = rows.clone();
                shuffled.extend(rows.iter().take(rows.len() / 2).cloned());
                fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
                let other = merged(&shuffled);
                prop_assert_eq!(&reference, &other);
                prop_assert_eq!(reference.digest(), other.digest());
                prop_assert_eq!(reference.online_count(), other.online_count());
                // the winner for each node is the maximum in precedence order
                for row in reference.rows() {
                    prop_assert!(rows.iter().filter(|r| r.node == row.node).all(|r| !r.supersedes(row)));
                }
            }
        }
    }
}
