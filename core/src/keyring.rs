//! Packet sealing: with a key ring configured, every packet body is encrypted and
//! authenticated with XChaCha20-Poly1305. One primary key seals; every key of the
//! ring opens, so keys rotate without downtime (add the new key everywhere, make
//! it primary everywhere, then remove the old one).
//!
//! The 24-byte nonce is a per-node-instance prefix (from the name, the random seed
//! and the creation wall-clock time, so a restarted node never reuses one) plus a
//! packet counter. The fixed header is authenticated as associated data.

use std::fmt;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, Tag, XChaCha20Poly1305, XNonce};

/// Bytes a sealed body adds: the nonce and the tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// A 256-bit cluster key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 32]);

impl Key {
    /// A key from its 32 bytes. Generate them with a CSPRNG, e.g.
    /// `head -c 32 /dev/urandom`.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key from 64 hexadecimal digits (surrounding whitespace is ignored).
    pub fn from_hex(hex: &str) -> Result<Self, KeyError> {
        let hex = hex.trim();
        // Hex digits only: `from_str_radix` alone would take a `+` sign too.
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(KeyError::NotHex);
        }
        if hex.len() != 64 {
            return Err(KeyError::Length(hex.len()));
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| KeyError::NotHex)?;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Debug for Key {
    /// Never prints the key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Why a string is not a key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 64 hex digits long.
    #[error("a key is 64 hex digits, got {0} characters")]
    Length(usize),
    /// A character is not a hex digit.
    #[error("a key is hex digits only")]
    NotHex,
}

/// The keys a node seals with (the primary) and opens with (all of them).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyRing {
    primary: Key,
    others: Vec<Key>,
}

impl KeyRing {
    /// A ring with one key.
    pub fn new(primary: Key) -> Self {
        Self {
            primary,
            others: Vec::new(),
        }
    }

    /// The same ring also accepting `key` (builder style); duplicates are ignored.
    pub fn accepting(mut self, key: Key) -> Self {
        if key != self.primary && !self.others.contains(&key) {
            self.others.push(key);
        }
        self
    }

    /// The key that seals outgoing packets.
    pub fn primary(&self) -> &Key {
        &self.primary
    }

    /// Every key that opens incoming packets, the primary first.
    pub fn keys(&self) -> impl Iterator<Item = &Key> + '_ {
        std::iter::once(&self.primary).chain(&self.others)
    }
}

/// Seals and opens packet bodies for one node.
pub(crate) struct Sealer {
    primary: XChaCha20Poly1305,
    all: Vec<XChaCha20Poly1305>,
    nonce_prefix: [u8; 16],
    counter: u64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.all.len())
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub(crate) fn new(ring: &KeyRing, nonce_prefix: [u8; 16]) -> Self {
        let cipher = |key: &Key| XChaCha20Poly1305::new(&key.0.into());
        Self {
            primary: cipher(&ring.primary),
            all: ring.keys().map(cipher).collect(),
            nonce_prefix,
            counter: 0,
        }
    }

    /// Encrypts `buf[body_start..]` in place and appends nonce and tag:
    /// `header | ciphertext | nonce | tag`. `buf[..body_start]` is authenticated.
    pub(crate) fn seal(&mut self, buf: &mut Vec<u8>, body_start: usize) {
        self.counter += 1;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..16].copy_from_slice(&self.nonce_prefix);
        nonce[16..].copy_from_slice(&self.counter.to_le_bytes());
        let nonce = XNonce::from(nonce);
        let (header, body) = buf.split_at_mut(body_start);
        let tag = self
            .primary
            .encrypt_in_place_detached(&nonce, header, body)
            .expect("XChaCha20-Poly1305 seals any body below 256 GiB");
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(&tag);
    }

    /// Opens `sealed` (`ciphertext | nonce | tag`, with `header` as associated
    /// data) into `out`. Tries every key of the ring; `false` when none opens it.
    pub(crate) fn open(&self, header: &[u8], sealed: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(split) = sealed.len().checked_sub(SEAL_OVERHEAD) else {
            return false;
        };
        let (ciphertext, trailer) = sealed.split_at(split);
        let nonce = XNonce::from_slice(&trailer[..NONCE_LEN]);
        let tag = Tag::from_slice(&trailer[NONCE_LEN..]);
        for cipher in &self.all {
            out.clear();
            out.extend_from_slice(ciphertext);
            if cipher
                .decrypt_in_place_detached(nonce, header, out, tag)
                .is_ok()
            {
                return true;
            }
        }
        out.clear();
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::new([byte; 32])
    }

    #[test]
    fn sealed_bodies_open_with_any_key_of_the_ring_and_nothing_else() {
        let mut sender = Sealer::new(&KeyRing::new(key(1)), [7; 16]);
        let mut buf = b"HEADERbody bytes".to_vec();
        sender.seal(&mut buf, 6);
        assert_ne!(&buf[6..16], b"body bytes", "encrypted");
        assert_eq!(buf.len(), 16 + SEAL_OVERHEAD);
        let (header, sealed) = buf.split_at(6);
        let mut out = Vec::new();
        let rotating = Sealer::new(&KeyRing::new(key(2)).accepting(key(1)), [0; 16]);
        assert!(rotating.open(header, sealed, &mut out));
        assert_eq!(out, b"body bytes");
        let stranger = Sealer::new(&KeyRing::new(key(3)), [0; 16]);
        assert!(!stranger.open(header, sealed, &mut out));
        assert!(out.is_empty());
        // the header is authenticated too
        assert!(!rotating.open(b"HEADER!", sealed, &mut out));
        let mut tampered = sealed.to_vec();
        tampered[0] ^= 1;
        assert!(!rotating.open(header, &tampered, &mut out));
        assert!(!rotating.open(header, &sealed[..10], &mut out), "too short");
    }

    #[test]
    fn every_packet_gets_a_fresh_nonce() {
        let mut sealer = Sealer::new(&KeyRing::new(key(1)), [9; 16]);
        let mut a = b"Hsame".to_vec();
        let mut b = b"Hsame".to_vec();
        sealer.seal(&mut a, 1);
        sealer.seal(&mut b, 1);
        assert_ne!(a, b);
    }

    #[test]
    fn keys_parse_from_hex_and_never_print() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let key = Key::from_hex(&format!(" {hex}\n")).expect("valid");
        assert_eq!(key.0[1], 0x11);
        assert_eq!(format!("{key:?}"), "Key(..)");
        assert_eq!(Key::from_hex("abc"), Err(KeyError::Length(3)));
        assert_eq!(Key::from_hex(&"zz".repeat(32)), Err(KeyError::NotHex));
        // `u8::from_str_radix` takes a sign: "+1" is not a hex pair.
        assert_eq!(Key::from_hex(&"+1".repeat(32)), Err(KeyError::NotHex));
        assert_eq!(
            Key::from_hex(&"é".repeat(32)),
            Err(KeyError::NotHex),
            "no panic on multibyte"
        );
        let ring = KeyRing::new(key.clone())
            .accepting(key.clone())
            .accepting(Key::new([0; 32]));
        assert_eq!(ring.keys().count(), 2, "duplicates ignored");
    }
}
