//! Identities: the stable [`NodeName`] of a node and the [`ClusterId`] that keeps
//! two clusters on one network apart.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest name a node may have, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The stable identity of a node, e.g. `api@10.0.0.7`.
///
/// UTF-8, 1..=255 bytes. Names of up to 30 bytes (almost all) are stored inline:
/// decoding one from a packet allocates nothing, and cloning is a copy. Longer
/// names live on the heap (a clone copies them: the core shares nothing).
#[derive(Clone)]
pub struct NodeName(Repr);

/// Longest name stored inline (keeps `NodeName` at 32 bytes).
const INLINE_LEN: usize = 30;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE_LEN] },
    Heap(Box<str>),
}

/// Why a string is not a valid [`NodeName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeNameError {
    /// The name is empty.
    #[error("node name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("node name is {0} bytes long, the limit is 255")]
    TooLong(usize),
}

impl NodeName {
    /// Checks and wraps a name.
    pub fn new(name: &str) -> Result<Self, NodeNameError> {
        match name.len() {
            0 => Err(NodeNameError::Empty),
            len if len > MAX_NAME_LEN => Err(NodeNameError::TooLong(len)),
            len if len <= INLINE_LEN => {
                let mut bytes = [0u8; INLINE_LEN];
                bytes[..len].copy_from_slice(name.as_bytes());
                Ok(Self(Repr::Inline {
                    len: len as u8,
                    bytes,
                }))
            }
            _ => Ok(Self(Repr::Heap(Box::from(name)))),
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)])
                .expect("inline bytes were copied from a str at a char boundary (the whole str)"),
            Repr::Heap(name) => name,
        }
    }

    /// The name's bytes (cheaper than `as_str` for comparisons and hashing).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(name) => name.as_bytes(),
        }
    }
}

impl PartialEq for NodeName {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for NodeName {}

impl PartialOrd for NodeName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for NodeName {
    /// Byte order, which for UTF-8 is the same as `str` order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl std::hash::Hash for NodeName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl std::str::FromStr for NodeName {
    type Err = NodeNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for NodeName {
    type Error = NodeNameError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl AsRef<str> for NodeName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for NodeName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Peer bytes are untrusted: the length rule is checked while decoding.
        let name = <&str>::deserialize(deserializer)?;
        NodeName::new(name).map_err(serde::de::Error::custom)
    }
}

/// Which cluster a packet belongs to. Packets with another id are dropped.
///
/// Made from a cluster name with [`ClusterId::from_name`], so operators configure
/// a readable name while the wire carries 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct ClusterId(pub u64);

impl ClusterId {
    /// The id of a named cluster (FNV-1a of the name, stable across builds and platforms).
    pub fn from_name(name: &str) -> Self {
        Self(fnv1a(name.as_bytes()))
    }
}

/// 64-bit FNV-1a: a tiny hash that is the same on every platform and build
/// (std's `DefaultHasher` makes no such promise).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = Fnv::new();
    hash.write(bytes);
    hash.finish()
}

/// FNV-1a over several pieces, without gathering them first. Also a `Hasher`
/// for maps keyed by names: fast on short keys, and the same on every run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        Fnv::write(self, bytes);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`Fnv`] hashers for `HashMap`s.
pub(crate) type FnvBuild = std::hash::BuildHasherDefault<Fnv>;

impl Fnv {
    pub(crate) fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

/// Why a node refused a command: it lost its name to the live process at `by`
/// ([`Event::NameLost`](crate::Event::NameLost)) and takes no more commands
/// (nor any other input). No state changed. Every command's error holds it as
/// its `NameTaken` variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("this node's name is taken by the process at {by}")]
pub struct NameTaken {
    /// Where the process that kept the name listens.
    pub by: std::net::SocketAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_one_to_255_bytes() {
        assert_eq!(NodeName::new(""), Err(NodeNameError::Empty));
        assert!(NodeName::new("a").is_ok());
        assert!(NodeName::new(&"x".repeat(255)).is_ok());
        assert_eq!(
            NodeName::new(&"x".repeat(256)),
            Err(NodeNameError::TooLong(256))
        );
    }

    #[test]
    fn inline_and_shared_names_behave_alike() {
        let short = NodeName::new("api@10.0.0.7").expect("valid");
        let long = NodeName::new(&"a".repeat(31)).expect("valid");
        let edge = NodeName::new(&"é".repeat(15)).expect("valid: 30 bytes of two-byte chars");
        assert!(matches!(short.0, Repr::Inline { .. }));
        assert!(matches!(edge.0, Repr::Inline { .. }));
        assert!(matches!(long.0, Repr::Heap(_)));
        assert_eq!(short.as_str(), "api@10.0.0.7");
        assert_eq!(edge.as_str(), "é".repeat(15));
        assert_eq!(long.as_str(), "a".repeat(31));
        assert_eq!(short.cmp(&long), short.as_str().cmp(long.as_str()));
        assert_eq!(edge.cmp(&short), edge.as_str().cmp(short.as_str()));
        assert_eq!(std::mem::size_of::<NodeName>(), 32);
        for name in [short, long, edge] {
            let bytes = postcard::to_stdvec(&name).expect("encodes");
            assert_eq!(
                postcard::from_bytes::<NodeName>(&bytes).expect("decodes"),
                name
            );
        }
    }

    #[test]
    fn decoding_an_overlong_name_fails_instead_of_accepting_it() {
        let bytes = postcard::to_stdvec(&"y".repeat(300)).expect("a String always encodes");
        assert!(postcard::from_bytes::<NodeName>(&bytes).is_err());
        let empty = postcard::to_stdvec("").expect("a str always encodes");
        assert!(postcard::from_bytes::<NodeName>(&empty).is_err());
    }

    #[test]
    fn cluster_ids_differ_by_name_and_are_stable() {
        assert_eq!(ClusterId::from_name("prod"), ClusterId::from_name("prod"));
        assert_ne!(
            ClusterId::from_name("prod"),
            ClusterId::from_name("staging")
        );
        // FNV-1a of the empty input is its offset basis: guards against accidental change.
        assert_eq!(ClusterId::from_name("").0, 0xcbf2_9ce4_8422_2325);
    }
}
