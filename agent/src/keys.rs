//! The key file: one key of 64 hex digits per line, the first seals, all open;
//! blank lines and `#` comments are skipped. Read at start, on SIGHUP and on
//! `POST /v1/keys/reload`.

use std::path::Path;

use beethoven_tokio::{Handle, Key, KeyRing};
use tracing::info;

use crate::error::KeyFileError;

/// Reads the key ring in `path`.
pub(crate) fn read(path: &Path) -> Result<KeyRing, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<KeyRing, KeyFileError> {
    let mut ring: Option<KeyRing> = None;
    for (index, line) in text.lines().enumerate() {
        let line_text = line.trim();
        if line_text.is_empty() || line_text.starts_with('#') {
            continue;
        }
        let key = Key::from_hex(line_text).map_err(|source| KeyFileError::BadKey {
            path: path.to_owned(),
            line: index + 1,
            source,
        })?;
        ring = Some(match ring {
            None => KeyRing::new(key),
            Some(ring) => ring.accepting(key),
        });
    }
    ring.ok_or_else(|| KeyFileError::Empty {
        path: path.to_owned(),
    })
}

/// Re-reads `path` and hands the ring to the node; returns how many keys it
/// holds. A bad file changes nothing: the node keeps its keys.
pub(crate) fn reload(node: &Handle, path: &Path) -> Result<usize, KeyFileError> {
    let ring = read(path)?;
    let count = ring.keys().count();
    // A stopped node has no keys to replace: nothing to report.
    drop(node.set_key_ring(Some(ring)));
    info!(file = %path.display(), keys = count, "keys reloaded");
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const B: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    fn parse_text(text: &str) -> Result<KeyRing, KeyFileError> {
        parse(Path::new("keys.txt"), text)
    }

    #[test]
    fn the_first_key_seals_and_comments_and_blank_lines_are_skipped() {
        let ring = parse_text(&format!("# rotation\n\n{A}\n  {B}  \n")).expect("two keys");
        assert_eq!(ring.primary(), &Key::from_hex(A).expect("valid"));
        assert_eq!(ring.keys().count(), 2);
    }

    #[test]
    fn a_bad_key_names_its_line() {
        let error = parse_text(&format!("{A}\n\nzz{}\n", &B[2..])).expect_err("bad hex");
        assert_eq!(
            error.to_string(),
            "key file keys.txt, line 3: a key is hex digits only"
        );
        let error = parse_text("abcd\n").expect_err("short");
        assert!(
            error
                .to_string()
                .starts_with("key file keys.txt, line 1: a key is 64 hex digits")
        );
    }

    #[test]
    fn a_file_without_keys_is_an_error() {
        let error = parse_text("# nothing yet\n\n").expect_err("empty");
        assert!(
            error
                .to_string()
                .starts_with("key file keys.txt has no key")
        );
    }
}
