//! Tags: a node's own small ordered map of UTF-8 keys to UTF-8 values, carried in
//! its tracker row so services can find each other (`role=db`, `grpc=7000`).
//!
//! Only a node changes its own tags ([`Node::set_tags`](crate::Node::set_tags)),
//! and every change raises its incarnation, so the precedence rule spreads it
//! and the anti-entropy digest repairs it like any other row change.
//!
//! **Form.** Held as one compact byte string, exactly as it travels: for each
//! entry in strictly increasing key order, the postcard encoding of the pair
//! `(key, value)` (a varint length and the bytes of each). A row with no tags
//! holds no allocation; one with 64 bytes of tags holds one 64-ish byte block.
//! The *encoded size* that [`Config::max_tags_size`](crate::Config::max_tags_size)
//! limits is the length of that byte string.
//!
//! **Checks.** Tags built here ([`Tags::from_pairs`]) are sorted for the caller
//! and refuse duplicate keys; the configured size and count limits are applied
//! where tags enter a node: `set_tags` (a typed [`TagsError`] naming the limit,
//! nothing changed) and every row decoded from a peer (the packet is dropped and
//! counted by reason, see [`DropReason`](crate::DropReason)).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Why tags were refused. Where a command returns it, nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TagsError {
    /// The tags take more encoded bytes than the limit (`Config::max_tags_size`).
    #[error("tags take {size} encoded bytes, over the limit of {limit} (Config::max_tags_size)")]
    TooLarge {
        /// Encoded bytes of the refused tags.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// More entries than the limit (`Config::max_tags`).
    #[error("{count} tags, over the limit of {limit} (Config::max_tags)")]
    TooMany {
        /// Entries in the refused tags.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The same key twice.
    #[error("the tag key {key:?} appears twice")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// Keys that are not in strictly increasing order (only from a peer's bytes:
    /// tags built locally are sorted).
    #[error("tag keys are not in strictly increasing order")]
    Unsorted,
    /// A key or value that is not UTF-8 (only from a peer's bytes).
    #[error("a tag key or value is not UTF-8")]
    InvalidUtf8,
    /// Bytes that do not parse as tags at all (only from a peer's bytes).
    #[error("tag bytes do not parse")]
    Malformed,
    /// The node's own row with these tags would not fit one datagram
    /// (`Config::max_packet_size`), so it could never be sent.
    #[error(
        "a row with these tags takes {size} bytes in a datagram, over max_packet_size {max_packet_size}"
    )]
    RowTooLarge {
        /// Bytes the smallest packet carrying the row would take.
        size: usize,
        /// The configured datagram limit.
        max_packet_size: usize,
    },
}

/// The limits tags are checked against where they enter a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TagLimits {
    pub(crate) max_size: usize,
    pub(crate) max_count: usize,
}

impl TagLimits {
    /// No limit: structure only (sorted, unique, UTF-8), for saved tables.
    pub(crate) const NONE: TagLimits = TagLimits {
        max_size: usize::MAX,
        max_count: usize::MAX,
    };
}

/// A node's tags: an ordered map of UTF-8 keys to UTF-8 values (see the module
/// docs for the form and the limits).
///
/// ```
/// use beethoven_core::Tags;
/// let tags = Tags::from_pairs([("role", "db"), ("grpc", "7000")])?;
/// assert_eq!(tags.get("role"), Some("db"));
/// assert_eq!(tags.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["grpc", "role"]);
/// # Ok::<(), beethoven_core::TagsError>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tags {
    /// The encoded entries (see the module docs); empty for no tags.
    encoded: Box<[u8]>,
}

impl Tags {
    /// No tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tags from key/value pairs in any order; a key given twice is an error.
    /// The configured limits are checked where the tags are used
    /// ([`Node::set_tags`](crate::Node::set_tags)).
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self, TagsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut pairs: Vec<(K, V)> = pairs.into_iter().collect();
        pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        if let Some(twice) = pairs
            .windows(2)
            .find(|w| w[0].0.as_ref() == w[1].0.as_ref())
        {
            return Err(TagsError::DuplicateKey {
                key: twice[0].0.as_ref().to_owned(),
            });
        }
        let mut encoded = Vec::new();
        for (key, value) in &pairs {
            encoded = postcard::to_extend(&(key.as_ref(), value.as_ref()), encoded)
                .expect("encoding in-memory strings into a Vec cannot fail");
        }
        Ok(Self {
            encoded: encoded.into_boxed_slice(),
        })
    }

    /// Checks a peer's (or a saved file's) encoded tags against `limits`.
    pub(crate) fn from_encoded(encoded: Box<[u8]>, limits: TagLimits) -> Result<Self, TagsError> {
        if encoded.len() > limits.max_size {
            return Err(TagsError::TooLarge {
                size: encoded.len(),
                limit: limits.max_size,
            });
        }
        let mut rest: &[u8] = &encoded;
        let mut previous: Option<&[u8]> = None;
        let mut count = 0usize;
        while !rest.is_empty() {
            let ((key, value), tail): ((&[u8], &[u8]), &[u8]) =
                postcard::take_from_bytes(rest).map_err(|_| TagsError::Malformed)?;
            if std::str::from_utf8(key).is_err() || std::str::from_utf8(value).is_err() {
                return Err(TagsError::InvalidUtf8);
            }
            if previous.is_some_and(|previous| previous >= key) {
                return Err(TagsError::Unsorted);
            }
            count += 1;
            if count > limits.max_count {
                return Err(TagsError::TooMany {
                    count,
                    limit: limits.max_count,
                });
            }
            previous = Some(key);
            rest = tail;
        }
        Ok(Self { encoded })
    }

    /// Checks these (well-formed) tags against `limits`.
    pub(crate) fn check(&self, limits: TagLimits) -> Result<(), TagsError> {
        if self.encoded_len() > limits.max_size {
            return Err(TagsError::TooLarge {
                size: self.encoded_len(),
                limit: limits.max_size,
            });
        }
        if self.len() > limits.max_count {
            return Err(TagsError::TooMany {
                count: self.len(),
                limit: limits.max_count,
            });
        }
        Ok(())
    }

    /// The encoded entries, as they travel.
    pub(crate) fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// Encoded bytes: what [`Config::max_tags_size`](crate::Config::max_tags_size) limits.
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    /// The entries in key order.
    pub fn iter(&self) -> TagsIter<'_> {
        TagsIter {
            rest: &self.encoded,
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// The entries as an owned map (to change them and build new tags).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// The entries of [`Tags`], in key order.
#[derive(Clone, Debug)]
pub struct TagsIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TagsIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        // Tags are checked when built or decoded, so every entry parses; a
        // failure (a bug) ends the iteration rather than panicking.
        let (pair, rest) = postcard::take_from_bytes::<(&str, &str)>(self.rest).ok()?;
        self.rest = rest;
        Some(pair)
    }
}

impl<'a> IntoIterator for &'a Tags {
    type Item = (&'a str, &'a str);
    type IntoIter = TagsIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl From<BTreeMap<String, String>> for Tags {
    /// A map has unique keys, so this cannot fail.
    fn from(map: BTreeMap<String, String>) -> Self {
        Self::from_pairs(map).expect("a map's keys are unique")
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// `key=value` pairs separated by commas, in key order.
impl fmt::Display for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

/// A map (`{"role":"db"}`) in human-readable formats such as JSON; the encoded
/// byte string in binary ones (postcard: the wire layout).
impl Serialize for Tags {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_map(self.iter())
        } else {
            serializer.serialize_bytes(&self.encoded)
        }
    }
}

/// Checked for structure (sorted unique UTF-8 keys); the configured limits are
/// applied where rows enter a node.
impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let map = BTreeMap::<String, String>::deserialize(deserializer)?;
            Ok(Tags::from(map))
        } else {
            let raw = RawTags::deserialize(deserializer)?;
            Tags::from_encoded(raw.0, TagLimits::NONE).map_err(serde::de::Error::custom)
        }
    }
}

/// Encoded tags as received, not yet checked.
#[derive(Debug, Default)]
pub(crate) struct RawTags(pub(crate) Box<[u8]>);

impl<'de> Deserialize<'de> for RawTags {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = RawTags;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("encoded tags")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RawTags, E> {
                Ok(RawTags(v.into()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<RawTags, E> {
                Ok(RawTags(v.into_boxed_slice()))
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

/// Which members a tag query finds: those with a key, or a key set to a value;
/// online members only unless [`TagQuery::including_offline`].
///
/// Parses from `key` or `key=value`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagQuery {
    key: String,
    value: Option<String>,
    include_offline: bool,
}

impl TagQuery {
    /// Members that have `key`, whatever its value.
    pub fn key(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: None,
            include_offline: false,
        }
    }

    /// Members whose `key` is `value`.
    pub fn key_value(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            value: Some(value.into()),
            ..Self::key(key)
        }
    }

    /// The same query, offline members included.
    pub fn including_offline(mut self) -> Self {
        self.include_offline = true;
        self
    }

    /// Whether offline members are included.
    pub fn includes_offline(&self) -> bool {
        self.include_offline
    }

    /// The key, and the value if one is wanted (for the wire).
    pub(crate) fn parts(&self) -> (&str, Option<&str>) {
        (&self.key, self.value.as_deref())
    }

    /// Whether `tags` match (the status is the caller's part: see
    /// [`Tracker::find`](crate::Tracker::find)).
    pub fn matches(&self, tags: &Tags) -> bool {
        match (&self.value, tags.get(&self.key)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(wanted), Some(value)) => wanted == value,
        }
    }
}

impl std::str::FromStr for TagQuery {
    type Err = std::convert::Infallible;

    /// `key` or `key=value` (split at the first `=`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.split_once('=') {
            Some((key, value)) => TagQuery::key_value(key, value),
            None => TagQuery::key(s),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_pairs(pairs: &[(&[u8], &[u8])]) -> Box<[u8]> {
        let mut out = Vec::new();
        for pair in pairs {
            out = postcard::to_extend(pair, out).expect("encodes");
        }
        out.into_boxed_slice()
    }

    #[test]
    fn pairs_are_sorted_and_duplicates_refused() {
        let tags = Tags::from_pairs([("b", "2"), ("a", "1")]).expect("valid");
        assert_eq!(tags.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "2")]);
        assert_eq!(tags.len(), 2);
        assert_eq!(tags.to_string(), "a=1,b=2");
        assert_eq!(tags.encoded_len(), 8, "two (1-byte len, 1 byte) pairs");
        assert_eq!(
            Tags::from_pairs([("a", "1"), ("a", "2")]),
            Err(TagsError::DuplicateKey { key: "a".into() })
        );
        assert!(Tags::new().is_empty());
        assert_eq!(Tags::new().encoded_len(), 0);
    }

    #[test]
    fn encoded_tags_are_checked_for_each_rule() {
        let limits = TagLimits {
            max_size: 16,
            max_count: 2,
        };
        let ok = encode_pairs(&[(b"a", b"1"), (b"b", b"2")]);
        assert_eq!(
            Tags::from_encoded(ok, limits).map(|t| t.len()),
            Ok(2),
            "sorted, unique, small"
        );
        let unsorted = encode_pairs(&[(b"b", b"1"), (b"a", b"2")]);
        assert_eq!(
            Tags::from_encoded(unsorted, limits),
            Err(TagsError::Unsorted)
        );
        let duplicate = encode_pairs(&[(b"a", b"1"), (b"a", b"2")]);
        assert_eq!(
            Tags::from_encoded(duplicate, limits),
            Err(TagsError::Unsorted)
        );
        let not_utf8 = encode_pairs(&[(b"a", &[0xff, 0xfe])]);
        assert_eq!(
            Tags::from_encoded(not_utf8, limits),
            Err(TagsError::InvalidUtf8)
        );
        let many = encode_pairs(&[(b"a", b""), (b"b", b""), (b"c", b"")]);
        assert_eq!(
            Tags::from_encoded(many, limits),
            Err(TagsError::TooMany { count: 3, limit: 2 })
        );
        let large = encode_pairs(&[(b"a", &[b'x'; 20])]);
        assert_eq!(
            Tags::from_encoded(large, limits),
            Err(TagsError::TooLarge {
                size: 23,
                limit: 16
            })
        );
        let cut = encode_pairs(&[(b"abc", b"1")]);
        assert_eq!(
            Tags::from_encoded(cut[..2].into(), limits),
            Err(TagsError::Malformed)
        );
    }

    #[test]
    fn tags_save_as_a_json_map_and_travel_as_bytes() {
        let tags = Tags::from_pairs([("role", "db")]).expect("valid");
        let json = serde_json::to_string(&tags).expect("serializes");
        assert_eq!(json, r#"{"role":"db"}"#);
        assert_eq!(serde_json::from_str::<Tags>(&json).expect("loads"), tags);
        let bytes = postcard::to_allocvec(&tags).expect("encodes");
        assert_eq!(
            bytes.len(),
            1 + tags.encoded_len(),
            "a length, then the entries"
        );
        assert_eq!(postcard::from_bytes::<Tags>(&bytes).expect("decodes"), tags);
    }

    #[test]
    fn queries_match_a_key_or_a_value() {
        let tags = Tags::from_pairs([("role", "db"), ("grpc", "7000")]).expect("valid");
        assert!(TagQuery::key("role").matches(&tags));
        assert!(
            "role=db"
                .parse::<TagQuery>()
                .expect("parses")
                .matches(&tags)
        );
        assert!(!TagQuery::key_value("role", "web").matches(&tags));
        assert!(!TagQuery::key("zone").matches(&tags));
        assert!(!TagQuery::key("role").includes_offline());
        assert!(TagQuery::key("role").including_offline().includes_offline());
    }
}
