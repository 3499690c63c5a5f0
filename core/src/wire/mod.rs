//! The wire format: one UDP datagram per packet.
//!
//! ```text
//! magic "BTHV" (4) | version (1) | flags (1) | cluster id (8, little endian) | body
//! body  = postcard(sender name, sender incarnation, one message, piggybacked updates)
//! sealed (flags bit 0): body = ciphertext | nonce (24) | tag (16), header authenticated
//! ```
//!
//! The fixed header comes first so a packet of another protocol, version or cluster
//! is told apart before anything is decoded. Decoding never panics: every failure
//! is a [`DecodeError`].

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::keyring::{SEAL_OVERHEAD, Sealer};
use crate::name::{ClusterId, NodeName};
use crate::tags::{TagLimits, TagsError};
use crate::tracker::{DIGEST_BUCKETS, Digest};

#[cfg(test)]
mod golden;
mod row;

pub(crate) use row::{UncheckedRow, WireRow};

/// First bytes of every packet.
pub const MAGIC: [u8; 4] = *b"BTHV";
/// The protocol version this build speaks. Packets of any other version are
/// dropped and counted as [`DropReason::UnsupportedVersion`](crate::DropReason::UnsupportedVersion).
///
/// Version 2 added the name-conflict handshake (a `Claim` message); version 3
/// added tags to every row (see `tags.rs`).
pub const VERSION: u8 = 3;
/// Bytes before the body.
pub const HEADER_LEN: usize = 14;
/// Flag bit: the body is sealed with the cluster key ring.
const FLAG_SEALED: u8 = 1;

/// One piggybacked update: a row, and for a suspicion who raised it (so that
/// independent confirmations can be counted, Lifeguard). `R` is the row as sent
/// ([`WireRow`]) or as received before its tags are checked ([`UncheckedRow`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Update<R = WireRow> {
    pub(crate) row: R,
    pub(crate) suspecter: Option<NodeName>,
}

impl Update<UncheckedRow> {
    fn check(self, limits: TagLimits) -> Result<Update, TagsError> {
        Ok(Update {
            row: self.row.check(limits)?,
            suspecter: self.suspecter,
        })
    }
}

/// The anti-entropy digest, as fixed 8-byte words (hashes do not shrink as varints).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireDigest(pub(crate) [[u8; 8]; DIGEST_BUCKETS]);

impl From<Digest> for WireDigest {
    fn from(digest: Digest) -> Self {
        Self(digest.map(u64::to_le_bytes))
    }
}

impl From<WireDigest> for Digest {
    fn from(wire: WireDigest) -> Self {
        wire.0.map(u64::from_le_bytes)
    }
}

/// What a packet is for. Piggybacked updates ride along with every kind. `R` is
/// the row type, as for [`Update`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Message<R = WireRow> {
    /// Are you there? `target` guards against a new process at an old address.
    Ping { seq: u32, target: NodeName },
    /// Yes (answers `Ping`, or relays a target's answer to an indirect prober).
    Ack { seq: u32 },
    /// Please ping `target` for me and relay its ack.
    PingReq {
        seq: u32,
        target: NodeName,
        target_addr: SocketAddr,
    },
    /// I tried `PingReq` `seq` and the target did not answer me either (Lifeguard).
    Nack { seq: u32 },
    /// Let me in; here is my own row (alive, at my incarnation and address).
    Join { row: R },
    /// A chunk of the tracker, answering `Join`; every chunk applies on its own.
    JoinReply { rows: Vec<R> },
    /// My digest; send me the rows of the buckets where yours differs.
    /// `reply` is set on the answer, so the exchange stops after one round trip.
    Sync { digest: WireDigest, reply: bool },
    /// A chunk of rows, answering `Sync`.
    Rows { rows: Vec<R> },
    /// Nothing but the piggybacked updates.
    Gossip,
    /// I tried `PingReq` `seq` and the target's port was unreachable for me too.
    Bounced { seq: u32 },
    /// I am a live process under your name (the envelope's sender is the name
    /// both claim): the name-conflict handshake (`node/conflict.rs`). `addr` is
    /// where I listen, `started` my start (the wall-clock anchor of my
    /// creation, Unix milliseconds), `nonce` mine for you, `echo` yours that I
    /// received last, and `confirmed` whether I already hold an echo of mine
    /// from you (then you need not answer).
    Claim {
        addr: SocketAddr,
        started: i64,
        nonce: u64,
        echo: Option<u64>,
        confirmed: bool,
    },
}

fn check_rows(rows: Vec<UncheckedRow>, limits: TagLimits) -> Result<Vec<WireRow>, TagsError> {
    rows.into_iter().map(|row| row.check(limits)).collect()
}

impl Message<UncheckedRow> {
    /// The message with every row's tags checked against `limits`.
    fn check(self, limits: TagLimits) -> Result<Message, TagsError> {
        Ok(match self {
            Message::Join { row } => Message::Join {
                row: row.check(limits)?,
            },
            Message::JoinReply { rows } => Message::JoinReply {
                rows: check_rows(rows, limits)?,
            },
            Message::Rows { rows } => Message::Rows {
                rows: check_rows(rows, limits)?,
            },
            Message::Ping { seq, target } => Message::Ping { seq, target },
            Message::Ack { seq } => Message::Ack { seq },
            Message::PingReq {
                seq,
                target,
                target_addr,
            } => Message::PingReq {
                seq,
                target,
                target_addr,
            },
            Message::Nack { seq } => Message::Nack { seq },
            Message::Sync { digest, reply } => Message::Sync { digest, reply },
            Message::Gossip => Message::Gossip,
            Message::Bounced { seq } => Message::Bounced { seq },
            Message::Claim {
                addr,
                started,
                nonce,
                echo,
                confirmed,
            } => Message::Claim {
                addr,
                started,
                nonce,
                echo,
                confirmed,
            },
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Body<N, M, G> {
    sender: N,
    incarnation: u64,
    message: M,
    gossip: G,
}

/// Why a datagram does not decode. The node counts each as the
/// [`DropReason`](crate::DropReason) of the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Shorter than the fixed header.
    Truncated,
    /// Does not start with [`MAGIC`].
    BadMagic,
    /// Another protocol version.
    UnsupportedVersion,
    /// Another cluster's packet.
    WrongCluster,
    /// Unknown flags, or a body that does not decode whole.
    Malformed,
    /// Plaintext, where a sealed body is required.
    NotSealed,
    /// Sealed, where no key is held.
    UnexpectedSeal,
    /// Sealed with an unknown key, or altered on the way.
    Authentication,
    /// A row's tags break a rule or a limit (the whole packet is dropped).
    Tags(TagsError),
}

/// A decoded packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Packet {
    pub(crate) sender: NodeName,
    pub(crate) incarnation: u64,
    pub(crate) message: Message,
    pub(crate) gossip: Vec<Update>,
}

/// Decodes a datagram. Checks the header first, then opens a sealed body (into
/// `scratch`, reused across calls), then decodes the whole body; trailing bytes are
/// an error so that one datagram has exactly one meaning. With a `sealer`,
/// plaintext is refused. Last, every row's tags are checked against `limits`.
pub(crate) fn decode(
    bytes: &[u8],
    cluster: ClusterId,
    sealer: Option<&Sealer>,
    scratch: &mut Vec<u8>,
    limits: TagLimits,
) -> Result<Packet, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(if bytes.len() >= 4 && bytes[..4] != MAGIC {
            DecodeError::BadMagic
        } else {
            DecodeError::Truncated
        });
    }
    let (header, body) = bytes.split_at(HEADER_LEN);
    if header[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if header[4] != VERSION {
        return Err(DecodeError::UnsupportedVersion);
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&header[6..14]);
    if u64::from_le_bytes(id) != cluster.0 {
        return Err(DecodeError::WrongCluster);
    }
    let sealed = header[5] & FLAG_SEALED != 0;
    if header[5] & !FLAG_SEALED != 0 {
        return Err(DecodeError::Malformed);
    }
    let body = match (sealed, sealer) {
        (false, None) => body,
        (false, Some(_)) => return Err(DecodeError::NotSealed),
        (true, None) => return Err(DecodeError::UnexpectedSeal),
        (true, Some(sealer)) => {
            if !sealer.open(header, body, scratch) {
                return Err(DecodeError::Authentication);
            }
            scratch.as_slice()
        }
    };
    type Unchecked = Body<NodeName, Message<UncheckedRow>, Vec<Update<UncheckedRow>>>;
    let (body, rest): (Unchecked, &[u8]) =
        postcard::take_from_bytes(body).map_err(|_| DecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed);
    }
    let tags = |error: TagsError| match error {
        TagsError::Malformed => DecodeError::Malformed,
        other => DecodeError::Tags(other),
    };
    let gossip = body
        .gossip
        .into_iter()
        .map(|update| update.check(limits))
        .collect::<Result<Vec<_>, _>>()
        .map_err(tags)?;
    Ok(Packet {
        sender: body.sender,
        incarnation: body.incarnation,
        message: body.message.check(limits).map_err(tags)?,
        gossip,
    })
}

/// Bytes a row stream keeps free in each datagram: the row count's varint may
/// grow, and the sender's incarnation may grow before the chunk is encoded.
pub(crate) const ROW_SLACK: usize = 12;

/// Size of a value once encoded.
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .expect("sizing an in-memory value cannot fail: the Size flavor has no limit")
}

/// The sender's part of every packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sender<'a> {
    pub(crate) cluster: ClusterId,
    pub(crate) name: &'a NodeName,
    pub(crate) incarnation: u64,
    /// Whether bodies are sealed (they grow by [`SEAL_OVERHEAD`]).
    pub(crate) sealed: bool,
}

/// Size of a packet carrying `message` and no updates.
pub(crate) fn base_len(sender: Sender<'_>, message: &Message) -> usize {
    let seal = if sender.sealed { SEAL_OVERHEAD } else { 0 };
    HEADER_LEN
        + seal
        + encoded_len(&Body {
            sender: sender.name,
            incarnation: sender.incarnation,
            message,
            gossip: &[] as &[&Update],
        })
}

/// Encodes a packet into `out` (cleared first), sealed when a `sealer` is given
/// (`sender.sealed` must say the same). The caller has checked the size with
/// [`base_len`] and [`encoded_len`] of each update.
pub(crate) fn encode(
    sender: Sender<'_>,
    message: &Message,
    gossip: &[&Update],
    out: &mut Vec<u8>,
    sealer: Option<&mut Sealer>,
) {
    debug_assert_eq!(sender.sealed, sealer.is_some());
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(if sealer.is_some() { FLAG_SEALED } else { 0 });
    out.extend_from_slice(&sender.cluster.0.to_le_bytes());
    let body = Body {
        sender: sender.name,
        incarnation: sender.incarnation,
        message,
        gossip,
    };
    // Writing into a Vec cannot fail; the result is the same Vec.
    let taken = std::mem::take(out);
    *out = postcard::to_extend(&body, taken)
        .expect("encoding in-memory values into a Vec cannot fail");
    if let Some(sealer) = sealer {
        sealer.seal(out, HEADER_LEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::{Health, TrackerRow};
    use chrono::DateTime;
    use proptest::prelude::*;

    fn name(s: &str) -> NodeName {
        NodeName::new(s).expect("valid")
    }

    fn row(n: &str, health: Health) -> WireRow {
        WireRow(
            TrackerRow::new(
                name(n),
                "10.1.2.3:7946".parse().expect("valid"),
                health,
                7,
                DateTime::from_timestamp_millis(1_700_000_000_123).expect("in range"),
            )
            .with_tags(crate::tags::Tags::from_pairs([("role", "db")]).expect("valid")),
        )
    }

    const CLUSTER: ClusterId = ClusterId(42);
    const LIMITS: TagLimits = TagLimits {
        max_size: 64,
        max_count: 4,
    };

    /// Bytes a varint length prefix of `n` takes.
    fn varint_len(n: usize) -> usize {
        let mut len = 1;
        let mut n = n >> 7;
        while n > 0 {
            len += 1;
            n >>= 7;
        }
        len
    }

    fn encode_one(message: &Message, gossip: &[&Update]) -> Vec<u8> {
        let me = name("me");
        let sender = Sender {
            cluster: CLUSTER,
            name: &me,
            incarnation: 3,
            sealed: false,
        };
        let mut out = Vec::new();
        encode(sender, message, gossip, &mut out, None);
        let expected: usize = base_len(sender, message)
            + gossip.iter().map(|u| encoded_len(*u)).sum::<usize>()
            + varint_len(gossip.len())
            - 1;
        assert_eq!(out.len(), expected, "size accounting matches the encoding");
        out
    }

    fn plain(bytes: &[u8], cluster: ClusterId) -> Result<Packet, DecodeError> {
        decode(bytes, cluster, None, &mut Vec::new(), LIMITS)
    }

    fn all_messages() -> Vec<Message> {
        vec![
            Message::Ping {
                seq: 1,
                target: name("t"),
            },
            Message::Ack { seq: u32::MAX },
            Message::PingReq {
                seq: 9,
                target: name("t"),
                target_addr: "[::1]:9".parse().expect("valid"),
            },
            Message::Nack { seq: 9 },
            Message::Join {
                row: row("me", Health::Alive),
            },
            Message::JoinReply {
                rows: vec![row("a", Health::Alive), row("b", Health::Dead)],
            },
            Message::Sync {
                digest: WireDigest::from([u64::MAX; DIGEST_BUCKETS]),
                reply: true,
            },
            Message::Rows {
                rows: vec![row("c", Health::Left)],
            },
            Message::Gossip,
            Message::Bounced { seq: 3 },
            Message::Claim {
                addr: "10.0.0.2:7946".parse().expect("valid"),
                started: -5,
                nonce: u64::MAX,
                echo: Some(1),
                confirmed: true,
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        let update = Update {
            row: row("s", Health::Suspect),
            suspecter: Some(name("me")),
        };
        for message in all_messages() {
            let bytes = encode_one(&message, &[&update]);
            let packet = plain(&bytes, CLUSTER).expect("round trip");
            assert_eq!(packet.message, message);
            assert_eq!(packet.sender, name("me"));
            assert_eq!(packet.incarnation, 3);
            assert_eq!(packet.gossip, vec![update.clone()]);
        }
    }

    #[test]
    fn header_problems_have_their_own_reasons() {
        let good = encode_one(&Message::Gossip, &[]);
        assert_eq!(plain(&good[..3], CLUSTER), Err(DecodeError::Truncated));
        assert_eq!(plain(&[], CLUSTER), Err(DecodeError::Truncated));
        assert_eq!(plain(b"GET / HTTP", CLUSTER), Err(DecodeError::BadMagic));
        let mut bad_version = good.clone();
        bad_version[4] = 99;
        assert_eq!(
            plain(&bad_version, CLUSTER),
            Err(DecodeError::UnsupportedVersion)
        );
        // Version 1 had no name-conflict handshake and version 2 no tags:
        // their packets are refused whole.
        for old in [1, 2] {
            bad_version[4] = old;
            assert_eq!(
                plain(&bad_version, CLUSTER),
                Err(DecodeError::UnsupportedVersion)
            );
        }
        assert_eq!(plain(&good, ClusterId(43)), Err(DecodeError::WrongCluster));
    }

    #[test]
    fn truncated_or_padded_bodies_are_malformed() {
        let good = encode_one(
            &Message::JoinReply {
                rows: vec![row("a", Health::Alive)],
            },
            &[],
        );
        for cut in HEADER_LEN..good.len() {
            assert_eq!(
                plain(&good[..cut], CLUSTER),
                Err(DecodeError::Malformed),
                "cut at {cut}"
            );
        }
        let mut padded = good.clone();
        padded.push(0);
        assert_eq!(plain(&padded, CLUSTER), Err(DecodeError::Malformed));
    }

    #[test]
    fn out_of_range_timestamps_are_malformed() {
        let bytes = raw_gossip_packet(i64::MAX, &[]);
        assert_eq!(plain(&bytes, CLUSTER), Err(DecodeError::Malformed));
    }

    /// A gossip packet whose one update has `last_change_ms` and `tags`
    /// (encoded entries) as given, unchecked.
    fn raw_gossip_packet(last_change_ms: i64, tags: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&MAGIC);
        bytes.push(VERSION);
        bytes.push(0);
        bytes.extend_from_slice(&CLUSTER.0.to_le_bytes());
        let body = Body {
            sender: name("x"),
            incarnation: 0,
            message: Message::<WireRow>::Gossip,
            gossip: vec![(
                (
                    name("y"),
                    "1.2.3.4:5".parse::<SocketAddr>().expect("valid"),
                    0u64,
                    Health::Alive,
                    last_change_ms,
                    tags,
                ),
                None::<NodeName>,
            )],
        };
        postcard::to_extend(&body, bytes).expect("encodes")
    }

    fn packet_with_raw_tags(tags: &[u8]) -> Vec<u8> {
        raw_gossip_packet(0, tags)
    }

    fn entries(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for pair in pairs {
            out = postcard::to_extend(pair, out).expect("encodes");
        }
        out
    }

    #[test]
    fn rows_with_broken_tags_fail_with_the_rule_they_break() {
        let good = entries(&[(b"a", b"1"), (b"b", b"2")]);
        let packet = plain(&packet_with_raw_tags(&good), CLUSTER).expect("valid tags");
        assert_eq!(packet.gossip[0].row.0.tags.get("b"), Some("2"));
        let cases: [(Vec<u8>, TagsError); 5] = [
            (entries(&[(b"b", b"1"), (b"a", b"2")]), TagsError::Unsorted),
            (entries(&[(b"a", b"1"), (b"a", b"2")]), TagsError::Unsorted),
            (entries(&[(b"a", &[0xc3, 0x28])]), TagsError::InvalidUtf8),
            (
                entries(&[
                    (b"a", b""),
                    (b"b", b""),
                    (b"c", b""),
                    (b"d", b""),
                    (b"e", b""),
                ]),
                TagsError::TooMany { count: 5, limit: 4 },
            ),
            (
                entries(&[(b"a", &[b'x'; 70])]),
                TagsError::TooLarge {
                    size: 73,
                    limit: 64,
                },
            ),
        ];
        for (tags, error) in cases {
            assert_eq!(
                plain(&packet_with_raw_tags(&tags), CLUSTER),
                Err(DecodeError::Tags(error.clone())),
                "{error:?}"
            );
        }
        // Entries that do not parse are malformed, as any broken body.
        assert_eq!(
            plain(&packet_with_raw_tags(&[5, b'a']), CLUSTER),
            Err(DecodeError::Malformed)
        );
    }

    #[test]
    fn sealed_packets_open_only_with_the_ring_and_never_as_plaintext() {
        use crate::keyring::{Key, KeyRing};
        let ring = KeyRing::new(Key::new([4; 32]));
        let me = name("me");
        let sender = Sender {
            cluster: CLUSTER,
            name: &me,
            incarnation: 3,
            sealed: true,
        };
        let message = Message::Ping {
            seq: 5,
            target: name("you"),
        };
        let mut sealer = Sealer::new(&ring, [1; 16]);
        let mut out = Vec::new();
        encode(sender, &message, &[], &mut out, Some(&mut sealer));
        assert_eq!(out.len(), base_len(sender, &message));
        let mut scratch = Vec::new();
        let opener = Sealer::new(&ring, [2; 16]);
        let packet = decode(&out, CLUSTER, Some(&opener), &mut scratch, LIMITS).expect("opens");
        assert_eq!(packet.message, message);
        assert_eq!(plain(&out, CLUSTER), Err(DecodeError::UnexpectedSeal));
        let stranger = Sealer::new(&KeyRing::new(Key::new([5; 32])), [2; 16]);
        assert_eq!(
            decode(&out, CLUSTER, Some(&stranger), &mut scratch, LIMITS),
            Err(DecodeError::Authentication)
        );
        let plaintext = encode_one(&message, &[]);
        assert_eq!(
            decode(&plaintext, CLUSTER, Some(&opener), &mut scratch, LIMITS),
            Err(DecodeError::NotSealed)
        );
        let mut unknown_flag = plaintext.clone();
        unknown_flag[5] = 0x80;
        assert_eq!(plain(&unknown_flag, CLUSTER), Err(DecodeError::Malformed));
    }

    #[test]
    fn varint_len_matches_postcard() {
        for n in [0usize, 1, 127, 128, 16_383, 16_384, 1 << 30] {
            assert_eq!(varint_len(n), encoded_len(&(n as u64)), "{n}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = plain(&bytes, CLUSTER);
        }

        #[test]
        fn arbitrary_bodies_behind_a_valid_header_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..1400)
        ) {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&MAGIC);
            bytes.push(VERSION);
            bytes.push(0);
            bytes.extend_from_slice(&CLUSTER.0.to_le_bytes());
            bytes.extend_from_slice(&body);
            let _ = plain(&bytes, CLUSTER);
        }
    }
}
