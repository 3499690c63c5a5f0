//! `--data-dir`: what the agent keeps across restarts, in one JSON file,
//! `state.json`: the node's live tags and the last member table it knew.
//!
//! At start the saved tags replace the configured ones (a `tags set` outlives
//! the restart), the saved rows are loaded with `restore`, and the members that
//! were online join the seeds: a restarted agent rejoins through them when its
//! seeds are gone (serf's snapshot and rejoin).
//!
//! The node's own row is not restored. Nothing more is needed for a restart not
//! to look like a name conflict: the conflict rule acts only on a *live* rival
//! that answers a claim (`core/src/node/conflict.rs`), which a dead predecessor
//! never does, and the restarted process refutes its old row with a higher
//! incarnation as soon as it hears of it.
//!
//! Writes are atomic: a temporary file in the same folder, flushed to disk, then
//! renamed over the old one. A file that cannot be read, does not parse, or was
//! written by another cluster or node is reported with its path, and the agent
//! starts without it (and overwrites it at its first save).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use beethoven_tokio::{NodeName, NodeStatus, Tags, TrackerRow};
use serde::{Deserialize, Serialize};
use tracing::warn;

/// The file's name inside the data folder.
const STATE_FILE: &str = "state.json";
/// The form of the file this version writes.
const FORMAT: u32 = 1;
/// Most saved members a restart joins through: enough to find the cluster,
/// few enough to stay far below any `max_join_targets`.
pub(crate) const MAX_REJOIN_SEEDS: usize = 16;

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedState {
    /// [`FORMAT`]; a file of another form is not read.
    pub(crate) format: u32,
    /// The cluster the node was in: a file of another cluster is foreign.
    pub(crate) cluster: String,
    /// The node that wrote it: another node's file is foreign too.
    pub(crate) node: String,
    /// The node's tags when it was saved.
    pub(crate) tags: BTreeMap<String, String>,
    /// The member table, this node's row included.
    pub(crate) members: Vec<TrackerRow>,
}

impl SavedState {
    /// The saved tags.
    pub(crate) fn tags(&self) -> Tags {
        Tags::from(self.tags.clone())
    }

    /// The rows to restore: every member but this node itself.
    pub(crate) fn peers(&self, own: &NodeName) -> Vec<TrackerRow> {
        self.members
            .iter()
            .filter(|row| &row.node != own)
            .cloned()
            .collect()
    }

    /// Where the members that were online listen, at most [`MAX_REJOIN_SEEDS`].
    pub(crate) fn rejoin_addrs(&self, own: &NodeName) -> Vec<std::net::SocketAddr> {
        self.peers(own)
            .iter()
            .filter(|row| row.status == NodeStatus::Online)
            .map(|row| row.addr)
            .take(MAX_REJOIN_SEEDS)
            .collect()
    }
}

/// Why a saved file was not used (the agent starts without it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotUsed {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is corrupt or truncated: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{} has format {found}; this agent reads format {FORMAT}", path.display())]
    Format { path: PathBuf, found: u32 },
    #[error("{} belongs to cluster `{found}`, not this agent's `{expected}`", path.display())]
    OtherCluster {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("{} belongs to node `{found}`, not this agent's `{expected}`", path.display())]
    OtherNode {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// The data folder of one agent: its cluster and node name check what is loaded.
#[derive(Debug, Clone)]
pub(crate) struct DataDir {
    folder: PathBuf,
    cluster: String,
    node: NodeName,
}

impl DataDir {
    /// The folder (created if missing) of the node `node` in `cluster`.
    pub(crate) fn open(folder: &Path, cluster: &str, node: NodeName) -> io::Result<DataDir> {
        fs::create_dir_all(folder)?;
        Ok(DataDir {
            folder: folder.to_owned(),
            cluster: cluster.to_owned(),
            node,
        })
    }

    /// The state file's path.
    pub(crate) fn path(&self) -> PathBuf {
        self.folder.join(STATE_FILE)
    }

    /// The saved state: `Ok(None)` when there is none yet, `Err` when the file
    /// is there but cannot be used.
    pub(crate) fn load(&self) -> Result<Option<SavedState>, NotUsed> {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(NotUsed::Read { path, source }),
        };
        let state: SavedState =
            serde_json::from_slice(&text).map_err(|error| NotUsed::Corrupt {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        if state.format != FORMAT {
            return Err(NotUsed::Format {
                path,
                found: state.format,
            });
        }
        if state.cluster != self.cluster {
            return Err(NotUsed::OtherCluster {
                path,
                found: state.cluster,
                expected: self.cluster.clone(),
            });
        }
        if state.node != self.node.as_str() {
            return Err(NotUsed::OtherNode {
                path,
                found: state.node,
                expected: self.node.to_string(),
            });
        }
        Ok(Some(state))
    }

    /// The state to save for these tags and members.
    pub(crate) fn state(&self, tags: &Tags, members: Vec<TrackerRow>) -> SavedState {
        SavedState {
            format: FORMAT,
            cluster: self.cluster.clone(),
            node: self.node.to_string(),
            tags: tags
                .iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
            members,
        }
    }

    /// Writes `state` atomically: to a temporary file in the same folder,
    /// flushed to disk, then renamed over the state file (and the folder
    /// flushed, so the rename itself survives a power cut).
    pub(crate) fn save(&self, state: &SavedState) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        let path = self.path();
        let temporary = self.folder.join(format!(".{STATE_FILE}.tmp"));
        let mut file = File::create(&temporary)?;
        file.write_all(&text)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, &path)?;
        // Not every platform can open a folder to sync it; the rename stands.
        if let Ok(folder) = File::open(&self.folder) {
            let _ = folder.sync_all();
        }
        Ok(())
    }
}

/// Saves when what would be written changed since the last save, and logs a
/// failed write once per kind of failure (the disk full stays full).
#[derive(Debug)]
pub(crate) struct Saver {
    dir: DataDir,
    last: Option<SavedState>,
    failing: bool,
}

impl Saver {
    /// A saver that has written nothing yet.
    pub(crate) fn new(dir: DataDir) -> Saver {
        Saver {
            dir,
            last: None,
            failing: false,
        }
    }

    /// Saves these tags and members unless they are what was saved last.
    pub(crate) fn save_if_changed(&mut self, tags: &Tags, members: Vec<TrackerRow>) {
        let state = self.dir.state(tags, members);
        if self.last.as_ref() == Some(&state) {
            return;
        }
        match self.dir.save(&state) {
            Ok(()) => {
                self.failing = false;
                self.last = Some(state);
            }
            Err(error) => {
                if !self.failing {
                    let file = self.dir.path();
                    warn!(file = %file.display(), %error, "cannot save the agent's state; it will not survive a restart");
                }
                self.failing = true;
            }
        }
    }

    /// Whether the tags differ from the last saved ones (saved at once, not
    /// at the next periodic save).
    pub(crate) fn tags_changed(&self, tags: &Tags) -> bool {
        self.last.as_ref().is_none_or(|state| state.tags() != *tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Folder(PathBuf);

    impl Folder {
        fn new(test: &str) -> Folder {
            let path = std::env::temp_dir()
                .join(format!("beethoven-data-dir-{test}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            Folder(path)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn name(text: &str) -> NodeName {
        NodeName::new(text).expect("a valid name")
    }

    fn row(node: &str, port: u16, health: &str) -> TrackerRow {
        let json = format!(
            r#"{{"node":"{node}","addr":"127.0.0.1:{port}","health":"{health}","incarnation":2,"last_change":"2026-01-01T00:00:00.000Z","tags":{{}}}}"#
        );
        serde_json::from_str(&json).expect("a row in its one form")
    }

    #[test]
    fn a_saved_state_loads_back_and_leaves_no_temporary_file() {
        let folder = Folder::new("round-trip");
        let dir = DataDir::open(&folder.0, "shop", name("a")).expect("a folder");
        assert!(dir.load().expect("no file yet").is_none());
        let tags = Tags::from_pairs([("role", "db")]).expect("valid tags");
        let state = dir.state(&tags, vec![row("a", 1, "alive"), row("b", 2, "alive")]);
        dir.save(&state).expect("saved");
        let loaded = dir.load().expect("readable").expect("saved before");
        assert_eq!(loaded, state);
        assert_eq!(loaded.tags(), tags);
        assert_eq!(loaded.peers(&name("a")).len(), 1);
        let names: Vec<_> = fs::read_dir(&folder.0)
            .expect("the folder")
            .map(|entry| entry.expect("an entry").file_name())
            .collect();
        assert_eq!(names, [STATE_FILE]);
    }

    #[test]
    fn only_online_peers_are_rejoin_seeds() {
        let folder = Folder::new("rejoin");
        let dir = DataDir::open(&folder.0, "shop", name("a")).expect("a folder");
        let state = dir.state(
            &Tags::default(),
            vec![
                row("a", 1, "alive"),
                row("b", 2, "suspect"),
                row("c", 3, "dead"),
                row("d", 4, "left"),
            ],
        );
        let addrs = state.rejoin_addrs(&name("a"));
        assert_eq!(addrs, ["127.0.0.1:2".parse().expect("an address")]);
    }

    #[test]
    fn a_corrupt_truncated_or_foreign_file_is_refused_with_its_path() {
        let folder = Folder::new("refused");
        let dir = DataDir::open(&folder.0, "shop", name("a")).expect("a folder");
        let state = dir.state(&Tags::default(), vec![row("a", 1, "alive")]);
        let whole = serde_json::to_string(&state).expect("serialisable");
        let path = dir.path().display().to_string();
        let cases = [
            ("not json at all".to_owned(), "corrupt or truncated"),
            (whole[..whole.len() / 2].to_owned(), "corrupt or truncated"),
            (whole.replace("\"shop\"", "\"lab\""), "cluster `lab`"),
            (
                whole.replace("\"node\":\"a\"", "\"node\":\"z\""),
                "node `z`",
            ),
            (whole.replace("\"format\":1", "\"format\":9"), "format 9"),
        ];
        for (text, expected) in cases {
            fs::write(dir.path(), &text).expect("written");
            let message = dir.load().expect_err(expected).to_string();
            assert!(message.contains(&path), "{message}");
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn the_saver_writes_only_changes() {
        let folder = Folder::new("saver");
        let dir = DataDir::open(&folder.0, "shop", name("a")).expect("a folder");
        let mut saver = Saver::new(dir.clone());
        let tags = Tags::from_pairs([("role", "db")]).expect("valid tags");
        assert!(saver.tags_changed(&tags));
        saver.save_if_changed(&tags, vec![row("a", 1, "alive")]);
        assert!(!saver.tags_changed(&tags));
        fs::remove_file(dir.path()).expect("saved once");
        saver.save_if_changed(&tags, vec![row("a", 1, "alive")]);
        assert!(!dir.path().exists(), "the same state is not written again");
        saver.save_if_changed(&tags, vec![row("a", 1, "alive"), row("b", 2, "alive")]);
        assert_eq!(
            dir.load().expect("readable").expect("saved").members.len(),
            2
        );
    }
}
