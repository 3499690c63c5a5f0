//! The member filter of `GET /v1/members` and `beethoven members`: a status, a
//! health, any number of tags (a member must have them all) and a name
//! pattern. The pattern is a glob: `*` stands for any run of characters, `?`
//! for one, everything else for itself (`api-*`, `db-?`), over the whole name.

use beethoven_tokio::{TagQuery, TrackerRow};

const STATUSES: [&str; 2] = ["online", "offline"];
const HEALTHS: [&str; 4] = ["alive", "suspect", "dead", "left"];

/// Which members to list; empty lets every member through.
#[derive(Debug, Default)]
pub(crate) struct MemberFilter {
    status: Option<String>,
    health: Option<String>,
    tags: Vec<TagQuery>,
    name: Option<Vec<char>>,
}

impl MemberFilter {
    /// The filter of a query's `key=value` pairs: `status`, `health`, `name`
    /// once each, `tag` (`key` or `key=value`) any number of times.
    pub(crate) fn from_pairs(pairs: Vec<(String, String)>) -> Result<MemberFilter, String> {
        let mut filter = MemberFilter::default();
        for (key, value) in pairs {
            let once = |given: bool| {
                if given {
                    Err(format!("`{key}` is given twice"))
                } else {
                    Ok(())
                }
            };
            match key.as_str() {
                "status" => {
                    once(filter.status.is_some())?;
                    filter.status = Some(one_of(&value, &STATUSES, "status")?);
                }
                "health" => {
                    once(filter.health.is_some())?;
                    filter.health = Some(one_of(&value, &HEALTHS, "health")?);
                }
                "name" => {
                    once(filter.name.is_some())?;
                    if value.is_empty() {
                        return Err("empty name pattern: expected e.g. `name=api-*`".to_owned());
                    }
                    filter.name = Some(value.chars().collect());
                }
                "tag" => {
                    if value.is_empty() {
                        return Err(
                            "empty tag filter: expected `tag=key` or `tag=key=value`".to_owned()
                        );
                    }
                    match value.parse() {
                        Ok(query) => filter.tags.push(query),
                        Err(never) => match never {},
                    }
                }
                other => {
                    return Err(format!(
                        "unknown filter `{other}`: expected status, health, name or tag"
                    ));
                }
            }
        }
        Ok(filter)
    }

    /// Whether `row` passes every part of the filter.
    pub(crate) fn matches(&self, row: &TrackerRow) -> bool {
        self.status
            .as_ref()
            .is_none_or(|status| status == row.status.as_str())
            && self
                .health
                .as_ref()
                .is_none_or(|health| health == row.health.as_str())
            && self.tags.iter().all(|query| query.matches(&row.tags))
            && self.name.as_ref().is_none_or(|pattern| {
                let name: Vec<char> = row.node.as_str().chars().collect();
                glob(pattern, &name)
            })
    }
}

fn one_of(value: &str, allowed: &[&str], what: &str) -> Result<String, String> {
    if allowed.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "unknown {what} `{value}`: expected one of {}",
            allowed.join(", ")
        ))
    }
}

/// Whether `text` matches the glob `pattern` (`*` any run, `?` one character).
/// Linear in practice: on a mismatch it backtracks to the last `*` only.
fn glob(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        let pattern: Vec<char> = pattern.chars().collect();
        let text: Vec<char> = text.chars().collect();
        glob(&pattern, &text)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn row(node: &str, health: &str, tags: &str) -> TrackerRow {
        let json = format!(
            r#"{{"node":"{node}","addr":"127.0.0.1:7946","health":"{health}","incarnation":1,"last_change":"2026-01-01T00:00:00.000Z","tags":{tags}}}"#
        );
        serde_json::from_str(&json).expect("a row in its one form")
    }

    #[test]
    fn a_glob_matches_the_whole_name() {
        assert!(matches("api-*", "api-7"));
        assert!(matches("*-db", "eu-db"));
        assert!(matches("a?c", "abc"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("api-*", "web-api-7"));
        assert!(!matches("a?c", "ac"));
        assert!(!matches("abc", "abcd"));
    }

    #[test]
    fn every_tag_status_and_the_name_must_match() {
        let filter = MemberFilter::from_pairs(pairs(&[
            ("tag", "role=db"),
            ("tag", "zone"),
            ("status", "online"),
            ("name", "db-*"),
        ]))
        .expect("a valid filter");
        assert!(filter.matches(&row("db-1", "alive", r#"{"role":"db","zone":"eu"}"#)));
        assert!(!filter.matches(&row("db-2", "alive", r#"{"role":"db"}"#)));
        assert!(!filter.matches(&row("db-3", "dead", r#"{"role":"db","zone":"eu"}"#)));
        assert!(!filter.matches(&row("api-1", "alive", r#"{"role":"db","zone":"eu"}"#)));
    }

    #[test]
    fn a_bad_filter_names_what_is_wrong() {
        for (bad, expected) in [
            (
                pairs(&[("status", "up")]),
                "unknown status `up`: expected one of online, offline",
            ),
            (pairs(&[("health", "ok")]), "unknown health `ok`"),
            (pairs(&[("tag", "")]), "empty tag filter"),
            (pairs(&[("name", "")]), "empty name pattern"),
            (pairs(&[("colour", "red")]), "unknown filter `colour`"),
            (
                pairs(&[("name", "a"), ("name", "b")]),
                "`name` is given twice",
            ),
        ] {
            let message = MemberFilter::from_pairs(bad).expect_err(expected);
            assert!(message.contains(expected), "{message}");
        }
    }
}
