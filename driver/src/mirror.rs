//! A reader's copy of the published table and mode, and the changes between two
//! looks at them: what an application that reports every row change (a CLI, an
//! event stream) needs on top of [`Handle::watch`], which says only *that*
//! something changed.

use std::collections::BTreeMap;

use beethoven_core::{Mode, NodeName, TrackerRow};

use crate::Handle;

/// One difference between two looks at a node's published state.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum TableChange {
    /// A row is new (`old_row` is `None`) or differs from the one seen last.
    Write {
        /// The row now.
        new_row: TrackerRow,
        /// The row last seen, if any.
        old_row: Option<TrackerRow>,
    },
    /// A row seen before is gone (reaped after `offline_retention`).
    Delete {
        /// The row last seen.
        old_row: TrackerRow,
    },
    /// The mode differs from the one seen last (or is seen for the first time).
    Mode(Mode),
}

/// The table and mode a reader saw last; [`TableMirror::update`] compares them
/// with what the node publishes now. Pair it with [`Handle::watch`]: update the
/// mirror each time `changed` returns. Rows that changed several times between
/// two looks are reported once, as they are now.
#[derive(Clone, Debug, Default)]
pub struct TableMirror {
    rows: BTreeMap<NodeName, TrackerRow>,
    mode: Option<Mode>,
}

impl TableMirror {
    /// A mirror that has seen nothing: its first update reports every row and the mode.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the node's published table and mode, and returns what changed since
    /// the last update: written rows first (by name), then deleted rows, then the mode.
    pub fn update(&mut self, node: &Handle) -> Vec<TableChange> {
        self.apply(node.cluster_nodes(), node.mode())
    }

    /// The rows as last seen, ordered by name.
    pub fn rows(&self) -> impl Iterator<Item = &TrackerRow> {
        self.rows.values()
    }

    /// The mode as last seen (`None` before the first update).
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }

    fn apply(&mut self, rows: Vec<TrackerRow>, mode: Mode) -> Vec<TableChange> {
        let mut changes = Vec::new();
        let mut previous = std::mem::take(&mut self.rows);
        for row in rows {
            let old_row = previous.remove(&row.node);
            if old_row.as_ref() != Some(&row) {
                changes.push(TableChange::Write {
                    new_row: row.clone(),
                    old_row,
                });
            }
            self.rows.insert(row.node.clone(), row);
        }
        changes.extend(
            previous
                .into_values()
                .map(|old_row| TableChange::Delete { old_row }),
        );
        if self.mode != Some(mode) {
            self.mode = Some(mode);
            changes.push(TableChange::Mode(mode));
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beethoven_core::chrono::DateTime;
    use beethoven_core::{Config, Health, Node, NodeName};

    /// Rows are made by the core only: a fresh node's own row, renamed and changed.
    fn row(name: &str, health: Health, incarnation: u64) -> TrackerRow {
        let now = std::time::Instant::now();
        let wall = DateTime::from_timestamp_millis(1_764_000_000_000).expect("in range");
        let me = NodeName::new("me").expect("valid name");
        let node = Node::new(
            Config::default(),
            me.clone(),
            ([127, 0, 0, 1], 7946).into(),
            now,
            wall,
        )
        .expect("the default config is valid");
        let mut row = node
            .tracker()
            .get(&me)
            .expect("a node tracks itself")
            .clone();
        row.node = NodeName::new(name).expect("valid name");
        row.health = health;
        row.status = health.status();
        row.incarnation = incarnation;
        row
    }

    #[test]
    fn the_first_update_reports_every_row_and_the_mode() {
        let mut mirror = TableMirror::new();
        let rows = vec![row("a", Health::Alive, 0), row("b", Health::Alive, 0)];
        let changes = mirror.apply(rows.clone(), Mode::Clustered);
        assert_eq!(
            changes,
            [
                TableChange::Write {
                    new_row: rows[0].clone(),
                    old_row: None
                },
                TableChange::Write {
                    new_row: rows[1].clone(),
                    old_row: None
                },
                TableChange::Mode(Mode::Clustered),
            ]
        );
        assert_eq!(mirror.rows().count(), 2);
        assert_eq!(mirror.mode(), Some(Mode::Clustered));
    }

    #[test]
    fn only_changed_rows_are_reported_with_the_row_before() {
        let mut mirror = TableMirror::new();
        let a = row("a", Health::Alive, 0);
        let b = row("b", Health::Alive, 0);
        let _ = mirror.apply(vec![a.clone(), b.clone()], Mode::Clustered);
        let b_dead = row("b", Health::Dead, 0);
        let changes = mirror.apply(vec![a.clone(), b_dead.clone()], Mode::Standalone);
        assert!(
            mirror
                .apply(vec![a, b_dead.clone()], Mode::Standalone)
                .is_empty()
        );
        assert_eq!(
            changes,
            [
                TableChange::Write {
                    new_row: b_dead,
                    old_row: Some(b)
                },
                TableChange::Mode(Mode::Standalone),
            ]
        );
    }

    #[test]
    fn a_row_gone_from_the_table_is_a_delete() {
        let mut mirror = TableMirror::new();
        let a = row("a", Health::Alive, 0);
        let gone = row("b", Health::Dead, 3);
        let _ = mirror.apply(vec![a.clone(), gone.clone()], Mode::Standalone);
        let changes = mirror.apply(vec![a], Mode::Standalone);
        assert_eq!(changes, [TableChange::Delete { old_row: gone }]);
        assert_eq!(mirror.rows().count(), 1);
    }
}
