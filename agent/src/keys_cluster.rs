//! Cluster-wide keys, the agent's side: what each member publishes, the check
//! that no change cuts a member off, and this member's key endpoints.
//!
//! Every agent that runs with keys (`--key-file`) publishes one tag under the
//! reserved `beethoven.` prefix, kept up to date by the agent whatever is done
//! to its other tags (`/v1/tags` shows and sets the others only):
//! `beethoven.keys`, the fingerprints of the keys it holds, space-separated,
//! the primary first. Every member thus knows what the others hold, which is
//! how a reload that would cut this node off is refused without asking anyone,
//! and how a member that does not answer a keys query is judged.
//!
//! The prefix is reserved for names too: user events and queries named
//! `beethoven.…` are refused over HTTP and by the CLI, and the agent's own
//! queries (see [`keys_query`](crate::keys_query)) never reach event handlers
//! or the event stream.
//!
//! `beethoven keys install|use|remove|list` (see [`keys_client`](crate::keys_client))
//! asks the local agent, which asks every member over a query
//! ([`keys_query`](crate::keys_query)); each member changes its keys here. An
//! install, use or remove is written to the key file, atomically, before the
//! node gets it, so a restart keeps it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use beethoven_tokio::{Handle, KeyError, NodeStatus, Tags, TrackerRow};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::{error, info, warn};

use crate::error::KeyFileError;
use crate::keys::{self, Fingerprint, Ring, RingError, Secret};

/// The tag holding a member's key fingerprints, space-separated, the primary first.
pub(crate) const KEYS_TAG: &str = "beethoven.keys";
/// Tags under this prefix are the agent's own; others set there are dropped.
/// Event and query names under it are the agent's own too.
pub(crate) const RESERVED_PREFIX: &str = "beethoven.";

/// Whether `name` (a tag, user event or query) is under the reserved prefix.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// Refuses a user `kind` (`event` or `query`) named under the reserved prefix.
pub(crate) fn refuse_reserved(kind: &str, name: &str) -> Result<(), String> {
    if is_reserved(name) {
        return Err(format!(
            "{kind} name `{name}` is reserved: names starting with `{RESERVED_PREFIX}` are the agent's own (its keys queries); choose another name"
        ));
    }
    Ok(())
}

/// `tags` without the agent's own: the tags the operator sets, as
/// `/v1/tags` shows them (member rows show every tag).
pub(crate) fn without_reserved(tags: &Tags) -> Tags {
    let mut map = tags.to_map();
    map.retain(|key, _| !key.starts_with(RESERVED_PREFIX));
    Tags::from(map)
}

/// The keys one member holds, by fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberKeys {
    pub(crate) name: String,
    pub(crate) primary: Fingerprint,
    pub(crate) keys: Vec<Fingerprint>,
}

impl MemberKeys {
    /// What a member's `beethoven.keys` tag says, if it is well formed.
    pub(crate) fn from_tag(name: &str, value: &str) -> Option<Self> {
        let keys: Vec<Fingerprint> = value
            .split(' ')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        Some(MemberKeys {
            name: name.to_owned(),
            primary: keys.first()?.clone(),
            keys,
        })
    }

    /// What `row`'s tags say this member holds.
    pub(crate) fn from_row(row: &TrackerRow) -> Option<Self> {
        Self::from_tag(row.node.as_str(), row.tags.get(KEYS_TAG)?)
    }

    fn of_ring(name: &str, ring: &Ring) -> Self {
        let keys = ring.fingerprints();
        MemberKeys {
            name: name.to_owned(),
            primary: keys[0].clone(),
            keys,
        }
    }

    fn holds(&self, key: &Fingerprint) -> bool {
        self.keys.contains(key)
    }
}

/// A member that could not read another's packets: `reader` lacks the key
/// `sender` seals with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    pub(crate) reader: String,
    pub(crate) sender: String,
}

/// Every pair of members that could not read each other with these keys.
pub(crate) fn cuts(members: &[MemberKeys]) -> Vec<Cut> {
    let mut found = Vec::new();
    for reader in members {
        for sender in members {
            if reader.name != sender.name && !reader.holds(&sender.primary) {
                found.push(Cut {
                    reader: reader.name.clone(),
                    sender: sender.name.clone(),
                });
            }
        }
    }
    found
}

/// The cuts as a sentence: `b could not read a, c; c could not read a`.
pub(crate) fn describe(cuts: &[Cut]) -> String {
    let mut by_reader: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for cut in cuts {
        by_reader.entry(&cut.reader).or_default().push(&cut.sender);
    }
    by_reader
        .into_iter()
        .map(|(reader, senders)| format!("{reader} could not read {}", senders.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a key change was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeysError {
    #[error("this agent runs without keys: start it with --key-file to manage keys")]
    NoKeys,
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error("bad key: {0}")]
    BadKey(#[from] KeyError),
    #[error(transparent)]
    File(#[from] KeyFileError),
    #[error("cannot write key file {}: {source}; the keys are unchanged", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "refused: with the key file's keys, {}: the others do not hold this node's primary key, or it lacks theirs (force to reload anyway)",
        describe(.0)
    )]
    CutOff(Vec<Cut>),
    #[error("the node has stopped")]
    Stopped,
    /// A body that is not the JSON expected (with the status axum gives).
    #[error("{1}")]
    BadBody(StatusCode, String),
}

impl KeysError {
    /// The HTTP status that answers it.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            KeysError::NoKeys | KeysError::Ring(_) | KeysError::CutOff(_) => StatusCode::CONFLICT,
            KeysError::BadKey(_) | KeysError::File(_) => StatusCode::UNPROCESSABLE_ENTITY,
            KeysError::Write { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            KeysError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            KeysError::BadBody(status, _) => *status,
        }
    }
}

/// This member's keys as its API shows them: fingerprints only.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct KeysView {
    pub(crate) name: String,
    /// The key that seals; `None` when the agent runs without keys.
    pub(crate) primary: Option<Fingerprint>,
    /// Every key held, the primary first.
    pub(crate) fingerprints: Vec<Fingerprint>,
    /// How many keys are held.
    pub(crate) keys: usize,
    /// The key file, written on every change.
    pub(crate) file: Option<String>,
    /// Whether the request changed anything.
    pub(crate) changed: bool,
}

/// A change asked of this member.
pub(crate) enum Change {
    Install(Secret),
    Use(Fingerprint),
    Remove(Fingerprint),
}

/// The agent's keys and what it publishes about them.
#[derive(Debug)]
pub(crate) struct ClusterKeys {
    file: Option<PathBuf>,
    ring: Mutex<Option<Ring>>,
    /// Whether the last attempt to publish failed (warned once per streak,
    /// not every tick).
    publish_failed: AtomicBool,
}

impl ClusterKeys {
    /// The keys the node started with (read from `file`).
    pub(crate) fn new(file: Option<PathBuf>, ring: Option<Ring>) -> Self {
        Self {
            file,
            ring: Mutex::new(ring),
            publish_failed: AtomicBool::new(false),
        }
    }

    /// How many keys the node holds now (0: the cluster is not encrypted).
    pub(crate) async fn count(&self) -> usize {
        self.ring
            .lock()
            .await
            .as_ref()
            .map_or(0, |ring| ring.fingerprints().len())
    }

    /// `tags` with the reserved ones as this agent has them, and no others
    /// under the reserved prefix.
    pub(crate) async fn with_reserved(&self, tags: &Tags) -> Tags {
        let ring = self.ring.lock().await;
        self.reserved_over(tags, ring.as_ref())
    }

    /// An agent without keys publishes nothing and leaves its tags alone.
    fn reserved_over(&self, tags: &Tags, ring: Option<&Ring>) -> Tags {
        let Some(ring) = ring else {
            return tags.clone();
        };
        let mut map = without_reserved(tags).to_map();
        let fingerprints: Vec<String> = ring
            .fingerprints()
            .iter()
            .map(ToString::to_string)
            .collect();
        map.insert(KEYS_TAG.to_owned(), fingerprints.join(" "));
        Tags::from(map)
    }

    /// Sets the reserved tags on the node if they are missing or stale (at
    /// start, after a key change, and every tick in case a tag change dropped them).
    pub(crate) async fn publish(&self, node: &Handle) {
        let tags = node.tags();
        let wanted = self.with_reserved(&tags).await;
        if wanted == tags {
            return;
        }
        match node.set_tags(wanted).await {
            Ok(()) => {
                if self.publish_failed.swap(false, Ordering::Relaxed) {
                    info!("this node's key fingerprints are published again");
                }
            }
            Err(error) => {
                if !self.publish_failed.swap(true, Ordering::Relaxed) {
                    warn!(%error, "cannot publish this node's key fingerprints in its tags (a member that does not answer a keys query is judged by them; fewer or smaller tags make room)");
                }
            }
        }
    }

    pub(crate) async fn view(&self, node: &Handle, changed: bool) -> KeysView {
        let ring = self.ring.lock().await;
        Self::view_of(node, ring.as_ref(), self.file.as_ref(), changed)
    }

    fn view_of(
        node: &Handle,
        ring: Option<&Ring>,
        file: Option<&PathBuf>,
        changed: bool,
    ) -> KeysView {
        let fingerprints = ring.map(Ring::fingerprints).unwrap_or_default();
        KeysView {
            name: node.name().as_str().to_owned(),
            primary: fingerprints.first().cloned(),
            keys: fingerprints.len(),
            fingerprints,
            file: file.map(|path| path.display().to_string()),
            changed,
        }
    }

    /// Installs, uses or removes one key on this member: the key file first,
    /// then the node, then the published tag. The cluster-wide check is the
    /// asking agent's, which sees every member's answer (`keys_query`).
    pub(crate) async fn change(
        &self,
        node: &Handle,
        change: Change,
    ) -> Result<KeysView, KeysError> {
        let mut ring = self.ring.lock().await;
        let (Some(current), Some(path)) = (ring.clone(), self.file.as_ref()) else {
            return Err(KeysError::NoKeys);
        };
        let (what, key, next) = match change {
            Change::Install(secret) => {
                let key = secret.fingerprint();
                ("installed", key, current.installing(secret))
            }
            Change::Use(key) => {
                let next = current.using(&key)?;
                ("now sealing with", key, next)
            }
            Change::Remove(key) => {
                let next = current.removing(&key)?;
                ("removed", key, next)
            }
        };
        let Some(next) = next else {
            return Ok(Self::view_of(node, Some(&current), Some(path), false));
        };
        self.apply(node, &mut ring, next, path).await?;
        info!(%key, file = %path.display(), "key {what}");
        let view = Self::view_of(node, ring.as_ref(), Some(path), true);
        drop(ring);
        self.publish(node).await;
        Ok(view)
    }

    /// Writes `next` to `path`, then gives it to the node.
    async fn apply(
        &self,
        node: &Handle,
        ring: &mut Option<Ring>,
        next: Ring,
        path: &std::path::Path,
    ) -> Result<(), KeysError> {
        keys::write(path, &next).map_err(|source| KeysError::Write {
            path: path.to_owned(),
            source,
        })?;
        node.set_key_ring(Some(next.key_ring()))
            .await
            .map_err(|_| KeysError::Stopped)?;
        *ring = Some(next);
        Ok(())
    }

    /// Re-reads the key file (SIGHUP, `POST /v1/keys/reload`). Refused, unless
    /// `force`, when an online member that publishes its keys would no longer
    /// read this node or be read by it. A bad file changes nothing.
    pub(crate) async fn reload(&self, node: &Handle, force: bool) -> Result<KeysView, KeysError> {
        let path = self.file.as_ref().ok_or(KeysError::NoKeys)?;
        let next = keys::read(path)?;
        let name = node.name().as_str();
        if !force {
            let mut members = vec![MemberKeys::of_ring(name, &next)];
            members.extend(
                node.cluster_nodes()
                    .iter()
                    .filter(|row| row.status == NodeStatus::Online && row.node.as_str() != name)
                    .filter_map(MemberKeys::from_row),
            );
            let cut: Vec<Cut> = cuts(&members)
                .into_iter()
                .filter(|cut| cut.reader == name || cut.sender == name)
                .collect();
            if !cut.is_empty() {
                return Err(KeysError::CutOff(cut));
            }
        }
        let mut ring = self.ring.lock().await;
        node.set_key_ring(Some(next.key_ring()))
            .await
            .map_err(|_| KeysError::Stopped)?;
        *ring = Some(next);
        let view = Self::view_of(node, ring.as_ref(), Some(path), true);
        drop(ring);
        info!(file = %path.display(), keys = view.keys, forced = force, "keys reloaded");
        self.publish(node).await;
        Ok(view)
    }
}

/// SIGHUP: re-read the key file; a refused or bad file keeps the keys in use.
pub(crate) async fn reload_on_signal(node: Handle, keys: std::sync::Arc<ClusterKeys>) {
    if keys.file.is_none() {
        warn!("SIGHUP: no key file to reload (start with --key-file)");
        return;
    }
    if let Err(error) = keys.reload(&node, false).await {
        error!(%error, "keys not reloaded; the node keeps its keys");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(digit: char) -> Fingerprint {
        digit
            .to_string()
            .repeat(keys::FINGERPRINT_LEN)
            .parse()
            .expect("hex digits")
    }

    fn member(name: &str, keys: &[char]) -> MemberKeys {
        let keys: Vec<Fingerprint> = keys.iter().map(|&digit| fingerprint(digit)).collect();
        MemberKeys {
            name: name.to_owned(),
            primary: keys[0].clone(),
            keys,
        }
    }

    #[test]
    fn members_holding_each_others_primaries_have_no_cut() {
        let whole = [
            member("a", &['1', '2']),
            member("b", &['2', '1']),
            member("c", &['1', '2']),
        ];
        assert_eq!(cuts(&whole), []);
    }

    #[test]
    fn a_member_lacking_a_primary_is_named_with_who_it_could_not_read() {
        let members = [
            member("a", &['2', '1']),
            member("b", &['2', '1']),
            member("c", &['1']),
        ];
        let found = cuts(&members);
        assert_eq!(describe(&found), "c could not read a, b");
    }

    #[test]
    fn the_keys_tag_reads_back_primary_first_and_a_bad_one_is_ignored() {
        let tag = format!("{} {}", fingerprint('a'), fingerprint('b'));
        let read = MemberKeys::from_tag("n", &tag).expect("well formed");
        assert_eq!(read, member("n", &['a', 'b']));
        assert_eq!(MemberKeys::from_tag("n", ""), None);
        assert_eq!(MemberKeys::from_tag("n", "zz aa"), None);
    }

    #[test]
    fn only_names_under_the_prefix_are_reserved_and_the_refusal_names_it() {
        assert!(is_reserved("beethoven.keys.list") && is_reserved("beethoven."));
        assert!(!is_reserved("beethoven") && !is_reserved("deploy.beethoven."));
        assert_eq!(refuse_reserved("query", "uptime"), Ok(()));
        let refused = refuse_reserved("event", "beethoven.x").expect_err("reserved");
        assert!(
            refused.starts_with("event name `beethoven.x` is reserved"),
            "{refused}"
        );
    }

    #[test]
    fn reserved_tags_replace_any_given_under_the_prefix_and_keep_the_others() {
        let secret = Secret::from_hex(&"ab".repeat(32)).expect("valid");
        let keys = ClusterKeys::new(None, None);
        let given = Tags::from_pairs([
            ("role", "db"),
            ("beethoven.http", "http://evil:1"),
            ("beethoven.x", "y"),
        ])
        .expect("valid");
        let ring = Ring::new(secret.clone());
        let tags = keys.reserved_over(&given, Some(&ring));
        assert_eq!(tags.get("role"), Some("db"));
        assert_eq!(tags.get("beethoven.http"), None);
        assert_eq!(
            tags.get(KEYS_TAG),
            Some(secret.fingerprint().to_string().as_str())
        );
        assert_eq!(tags.get("beethoven.x"), None);
        assert_eq!(tags.len(), 2);
        assert_eq!(
            keys.reserved_over(&given, None),
            given,
            "no keys: untouched"
        );
    }
}
