//! The key file and the ring the agent holds: one key of 64 hex digits per
//! line, the first seals, all open; blank lines and `#` comments are skipped.
//! Read at start, on SIGHUP and on `POST /v1/keys/reload`; written (atomically:
//! a temporary file, then a rename) when keys are installed, used or removed
//! over HTTP, so a restart keeps them.
//!
//! Keys are shown by fingerprint only: the first 8 bytes of the key's SHA-256,
//! in hex. It names a key without revealing it.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::str::FromStr;

use beethoven_tokio::{Key, KeyError, KeyRing};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::KeyFileError;

/// Hex digits of a fingerprint.
pub(crate) const FINGERPRINT_LEN: usize = 16;

/// A key's bytes, kept by the agent so that it can write the key file and
/// show fingerprints (the core's [`Key`] keeps its bytes to itself). Its
/// `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret([u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

impl Secret {
    /// A key from 64 hex digits (surrounding whitespace ignored).
    pub(crate) fn from_hex(text: &str) -> Result<Self, KeyError> {
        // The core's parser checks the text; the bytes are read back here.
        Key::from_hex(text)?;
        let text = text.trim();
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * index..2 * index + 2], 16)
                .map_err(|_| KeyError::NotHex)?;
        }
        Ok(Secret(bytes))
    }

    /// A fresh key from the operating system's random source.
    pub(crate) fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Secret(bytes))
    }

    /// The key as 64 lowercase hex digits.
    pub(crate) fn hex(&self) -> String {
        hex(&self.0)
    }

    /// The key's public name.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        let digest = Sha256::digest(self.0);
        Fingerprint(hex(&digest[..FINGERPRINT_LEN / 2]))
    }

    fn key(&self) -> Key {
        Key::new(self.0)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A key's public name: 16 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct Fingerprint(String);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.len() != FINGERPRINT_LEN || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "`{text}` is not a key fingerprint ({FINGERPRINT_LEN} hex digits)"
            ));
        }
        Ok(Fingerprint(text.to_ascii_lowercase()))
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Fingerprint> for String {
    fn from(fingerprint: Fingerprint) -> Self {
        fingerprint.0
    }
}

/// Why a change of the ring was refused; the ring is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RingError {
    /// The key is not in the ring.
    #[error("this member does not hold key {0}")]
    NotHeld(Fingerprint),
    /// The primary cannot be removed: it seals every packet.
    #[error("key {0} is this member's primary (it seals every packet): `use` another key first")]
    Primary(Fingerprint),
}

/// The keys a member holds, the primary first; never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ring(Vec<Secret>);

impl Ring {
    /// A ring with only `primary`.
    pub(crate) fn new(primary: Secret) -> Self {
        Ring(vec![primary])
    }

    /// The key that seals.
    pub(crate) fn primary(&self) -> &Secret {
        &self.0[0]
    }

    /// Every key's fingerprint, the primary first.
    pub(crate) fn fingerprints(&self) -> Vec<Fingerprint> {
        self.0.iter().map(Secret::fingerprint).collect()
    }

    /// The ring the node uses.
    pub(crate) fn key_ring(&self) -> KeyRing {
        self.0[1..]
            .iter()
            .fold(KeyRing::new(self.primary().key()), |ring, secret| {
                ring.accepting(secret.key())
            })
    }

    /// This ring also opening with `secret`; `None` if it does already.
    pub(crate) fn installing(&self, secret: Secret) -> Option<Ring> {
        if self.0.contains(&secret) {
            return None;
        }
        let mut keys = self.0.clone();
        keys.push(secret);
        Some(Ring(keys))
    }

    /// This ring sealing with the key `fingerprint`; `None` if it does already.
    pub(crate) fn using(&self, fingerprint: &Fingerprint) -> Result<Option<Ring>, RingError> {
        let index = self.position(fingerprint)?;
        if index == 0 {
            return Ok(None);
        }
        let mut keys = self.0.clone();
        let chosen = keys.remove(index);
        keys.insert(0, chosen);
        Ok(Some(Ring(keys)))
    }

    /// This ring without the key `fingerprint`; `None` if it holds no such key.
    pub(crate) fn removing(&self, fingerprint: &Fingerprint) -> Result<Option<Ring>, RingError> {
        let index = match self.position(fingerprint) {
            Ok(index) => index,
            Err(RingError::NotHeld(_)) => return Ok(None),
            Err(other) => return Err(other),
        };
        if index == 0 {
            return Err(RingError::Primary(fingerprint.clone()));
        }
        let mut keys = self.0.clone();
        keys.remove(index);
        Ok(Some(Ring(keys)))
    }

    fn position(&self, fingerprint: &Fingerprint) -> Result<usize, RingError> {
        self.0
            .iter()
            .position(|secret| &secret.fingerprint() == fingerprint)
            .ok_or_else(|| RingError::NotHeld(fingerprint.clone()))
    }

    /// The key file's text.
    fn file_text(&self) -> String {
        let mut text = String::from(
            "# Beethoven cluster keys: the first seals, all open. Written by the agent\n\
             # when keys are installed, used or removed; edit, then SIGHUP to reload.\n",
        );
        for secret in &self.0 {
            text.push_str(&secret.hex());
            text.push('\n');
        }
        text
    }
}

/// Reads the ring in `path`.
pub(crate) fn read(path: &Path) -> Result<Ring, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Ring, KeyFileError> {
    let mut ring: Option<Ring> = None;
    for (index, line) in text.lines().enumerate() {
        let line_text = line.trim();
        if line_text.is_empty() || line_text.starts_with('#') {
            continue;
        }
        let secret = Secret::from_hex(line_text).map_err(|source| KeyFileError::BadKey {
            path: path.to_owned(),
            line: index + 1,
            source,
        })?;
        ring = Some(match ring {
            None => Ring::new(secret),
            Some(ring) => ring.installing(secret.clone()).unwrap_or(ring),
        });
    }
    ring.ok_or_else(|| KeyFileError::Empty {
        path: path.to_owned(),
    })
}

/// Writes `ring` to `path`: a temporary file beside it (readable by its owner
/// only), synced, then renamed over it, so a crash leaves the old file or the
/// new one, never half of one.
pub(crate) fn write(path: &Path, ring: &Ring) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(ring.file_text().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const B: &str = "0202020202020202020202020202020202020202020202020202020202020202";

    fn parse_text(text: &str) -> Result<Ring, KeyFileError> {
        parse(Path::new("keys.txt"), text)
    }

    fn secret(hex: &str) -> Secret {
        Secret::from_hex(hex).expect("a valid key")
    }

    #[test]
    fn the_first_key_seals_and_comments_and_blank_lines_are_skipped() {
        let ring = parse_text(&format!("# rotation\n\n{A}\n  {B}  \n")).expect("two keys");
        assert_eq!(ring.primary(), &secret(A));
        assert_eq!(ring.fingerprints().len(), 2);
        assert_eq!(ring.key_ring().primary(), &Key::from_hex(A).expect("valid"));
        assert_eq!(ring.key_ring().keys().count(), 2);
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

    #[test]
    fn a_key_reads_back_as_its_hex_and_its_fingerprint_is_not_the_key() {
        let upper = "AB".repeat(32);
        let key = secret(&upper);
        assert_eq!(key.hex(), upper.to_lowercase());
        let fingerprint = key.fingerprint().to_string();
        assert_eq!(fingerprint.len(), FINGERPRINT_LEN);
        assert!(!key.hex().contains(&fingerprint));
        assert_ne!(secret(A).fingerprint(), secret(B).fingerprint());
        assert!(!format!("{key:?}").contains(&key.hex()));
    }

    #[test]
    fn generated_keys_differ_and_parse_back() {
        let one = Secret::generate().expect("the OS has randomness");
        let two = Secret::generate().expect("the OS has randomness");
        assert_ne!(one, two);
        assert_eq!(secret(&one.hex()), one);
    }

    #[test]
    fn fingerprints_parse_in_either_case_and_nothing_else() {
        let fingerprint = secret(A).fingerprint();
        let upper: Fingerprint = fingerprint
            .to_string()
            .to_uppercase()
            .parse()
            .expect("upper case is fine");
        assert_eq!(upper, fingerprint);
        assert!("abc".parse::<Fingerprint>().is_err());
        assert!("zzzzzzzzzzzzzzzz".parse::<Fingerprint>().is_err());
    }

    #[test]
    fn install_use_and_remove_reorder_the_ring_and_refuse_the_primary() {
        let (a, b) = (secret(A), secret(B));
        let ring = Ring::new(a.clone());
        assert_eq!(ring.installing(a.clone()), None);
        let both = ring.installing(b.clone()).expect("a new key");
        assert_eq!(both.fingerprints(), [a.fingerprint(), b.fingerprint()]);
        let swapped = both
            .using(&b.fingerprint())
            .expect("held")
            .expect("a change");
        assert_eq!(swapped.primary(), &b);
        assert_eq!(swapped.using(&b.fingerprint()), Ok(None));
        assert_eq!(
            swapped.removing(&b.fingerprint()),
            Err(RingError::Primary(b.fingerprint()))
        );
        let only_b = swapped
            .removing(&a.fingerprint())
            .expect("not the primary")
            .expect("a change");
        assert_eq!(only_b, Ring::new(b.clone()));
        assert_eq!(only_b.removing(&a.fingerprint()), Ok(None));
        assert_eq!(
            only_b.using(&a.fingerprint()),
            Err(RingError::NotHeld(a.fingerprint()))
        );
    }

    #[test]
    fn a_written_ring_reads_back_and_no_temporary_file_is_left() {
        let dir = std::env::temp_dir().join(format!("beethoven-keys-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        let path = dir.join("keys.txt");
        std::fs::write(&path, format!("{A}\n")).expect("the old file");
        let ring = Ring::new(secret(B))
            .installing(secret(A))
            .expect("a new key");
        write(&path, &ring).expect("written");
        assert_eq!(read(&path).expect("readable"), ring);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("listable")
            .map(|entry| entry.expect("an entry").file_name())
            .collect();
        assert_eq!(names, ["keys.txt"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "only the owner reads the keys");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
