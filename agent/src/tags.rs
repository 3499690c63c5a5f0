//! The node's tags as the agent takes them: `key=value` from flags, the
//! environment and the config file (a `[tags]` table or a list), and a JSON
//! object over HTTP. One rule for keys everywhere: not empty and without `=`,
//! so every tag can be found again with `?tag=key=value`.

use std::collections::BTreeMap;

use beethoven_tokio::Tags;
use serde::{Deserialize, Deserializer};

/// Why a tag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadTag {
    #[error("bad tag `{text}`: expected `key=value`")]
    NoEquals { text: String },
    #[error("bad tag key `{key}`: a key is not empty and has no `=`")]
    BadKey { key: String },
    #[error("tag key `{key}` is given twice")]
    Twice { key: String },
}

/// Checks a key: not empty, no `=`.
fn check_key(key: &str) -> Result<(), BadTag> {
    if key.is_empty() || key.contains('=') {
        return Err(BadTag::BadKey {
            key: key.to_owned(),
        });
    }
    Ok(())
}

/// Tags from `key=value` texts (split at the first `=`).
pub(crate) fn parse(texts: &[String]) -> Result<Tags, BadTag> {
    let mut pairs = BTreeMap::new();
    for text in texts {
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| BadTag::NoEquals { text: text.clone() })?;
        check_key(key)?;
        if pairs.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(BadTag::Twice {
                key: key.to_owned(),
            });
        }
    }
    Ok(Tags::from(pairs))
}

/// Tags from a map (a JSON object), keys checked.
pub(crate) fn from_map(map: BTreeMap<String, String>) -> Result<Tags, BadTag> {
    map.keys().try_for_each(|key| check_key(key))?;
    Ok(Tags::from(map))
}

/// The config file's `tags`: a table (`[tags]` with `role = "db"`) or a list
/// (`tags = ["role=db"]`), read as `key=value` texts like the flags.
pub(crate) fn deserialize_texts<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        List(Vec<String>),
        Table(BTreeMap<String, String>),
    }
    match Form::deserialize(deserializer).map_err(|_| {
        serde::de::Error::custom(
            "tags are a table of strings (`[tags]` then `role = \"db\"`) or a list (`tags = [\"role=db\"]`)",
        )
    })? {
        Form::List(texts) => Ok(texts),
        Form::Table(map) => map
            .into_iter()
            .map(|(key, value)| {
                check_key(&key).map_err(serde::de::Error::custom)?;
                Ok(format!("{key}={value}"))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(list: &[&str]) -> Vec<String> {
        list.iter().map(|&s| s.to_owned()).collect()
    }

    #[test]
    fn key_value_texts_split_at_the_first_equals() {
        let tags = parse(&texts(&["role=db", "url=a=b", "empty="])).expect("valid");
        assert_eq!(
            tags.iter().collect::<Vec<_>>(),
            [("empty", ""), ("role", "db"), ("url", "a=b")]
        );
    }

    #[test]
    fn malformed_texts_are_refused_by_rule() {
        assert_eq!(
            parse(&texts(&["role"])),
            Err(BadTag::NoEquals {
                text: "role".into()
            })
        );
        assert_eq!(
            parse(&texts(&["=db"])),
            Err(BadTag::BadKey { key: String::new() })
        );
        assert_eq!(
            parse(&texts(&["a=1", "a=2"])),
            Err(BadTag::Twice { key: "a".into() })
        );
        let map = BTreeMap::from([("a=b".to_owned(), "c".to_owned())]);
        assert_eq!(from_map(map), Err(BadTag::BadKey { key: "a=b".into() }));
    }
}
