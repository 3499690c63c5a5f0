//! Identities: the stable [`NodeName`] of a node and the [`ClusterId`] that keeps
//! two clusters on one network apart.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest name a node may have, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The stable identity of a node, e.g. `api@10.0.0.7`.
///
/// UTF-8, 1..=255 bytes. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(Arc<str>);

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
            _ => Ok(Self(Arc::from(name))),
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
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
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for NodeName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
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
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
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
