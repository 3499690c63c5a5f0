//! The wire format: one UDP datagram per packet.
//!
//! ```text
//! packet  = magic "BTHV" (4) | version (1) | flags (1) | cluster id (8, little endian) | body
//! body    = sender name (varint length | UTF-8) | sender incarnation (varint)
//!         | message | item count (varint) | item*    (then the body ends)
//! message = kind (varint) | length (varint) | fields
//! item    = kind (varint) | length (varint) | fields   (piggybacked: row updates)
//! sealed (flags bit 0): body = ciphertext | nonce (24) | tag (16), header authenticated
//! ```
//!
//! The fixed header comes first so a packet of another protocol, version or cluster
//! is told apart before anything is decoded. Decoding never panics: every failure
//! is a [`DecodeError`]. The item count and the end of the body are checked, so
//! a datagram cut short anywhere never decodes, and one has exactly one
//! meaning. The kinds and fields are in `message.rs`, the row in `row.rs`;
//! golden bytes of each are in `core/tests/golden/`.
//!
//! # Growing
//!
//! The wire grows additively, so that two versions share a cluster during a
//! rolling upgrade. Every message, piggybacked item and row sits behind its
//! length: a node skips (and counts, as
//! [`DropReason::UnknownMessage`](crate::DropReason::UnknownMessage) or
//! [`DropReason::UnknownPiggyback`](crate::DropReason::UnknownPiggyback)) the
//! kinds it does not know, still applying the rows of the same packet, and
//! ignores fields appended after the ones it knows. A new message, item kind
//! or trailing field therefore needs no new [`VERSION`]; the version moves
//! only for a change an older node cannot skip (ARCHITECTURE.md, "The wire
//! version").
//!
//! # Adding a message or item kind
//!
//! 1. In `message.rs`, take the next unused number in `kind` (a message) or
//!    `item` (a piggybacked item; never reuse a number), add the variant to
//!    [`Message`] (or to `Item`), its arm in `Serialize` (`frame(s, kind::X,
//!    &fields)`) and in `decode` (`fields(bytes)`, which ignores what a later
//!    version appends), and in `Message::check` if it carries rows. A new item
//!    kind also needs the body's item list (today only [`Update`]s) to carry it,
//!    and the piggyback budget to count its [`encoded_len`].
//! 2. Dispatch it in `node/input.rs`. It must be safe to ignore: a node of the
//!    previous build counts it and neither answers nor relays it.
//! 3. Add its golden bytes in `golden.rs` and bless them
//!    (`BEETHOVEN_BLESS_GOLDEN=1`): new files only, no existing one changes.
//!    Feed it to the fuzz crate's checks (`fuzz/tests/wire_growth.rs`).
//! 4. Grow fields only at the end; never insert one before known fields.

use serde::ser::SerializeTuple;
use serde::{Deserialize, Serialize, Serializer};

use crate::keyring::{SEAL_OVERHEAD, Sealer};
use crate::name::{ClusterId, NodeName};
use crate::tags::{TagLimits, TagsError};
use crate::tracker::{DIGEST_BUCKETS, Digest};

#[cfg(test)]
mod golden;
mod message;
mod notice;
mod query;
mod row;
mod tombstone;
mod user;

use message::Item;
pub(crate) use message::{Message, Update};
pub use notice::Refusal;
pub(crate) use notice::{decode_notice, encode_notice};
pub(crate) use query::{WireQuery, WireResponse};
pub(crate) use row::WireRow;
pub(crate) use tombstone::Tombstone;
pub(crate) use user::{EventId, EventKey, WireEvent};

/// First bytes of every packet.
pub const MAGIC: [u8; 4] = *b"BTHV";
/// The protocol version this build speaks. Packets of any other version are
/// dropped and counted as [`DropReason::UnsupportedVersion`](crate::DropReason::UnsupportedVersion).
///
/// Version 2 added the name-conflict handshake (a `Claim` message); version 3
/// added tags to every row (see `tags.rs`); version 4 put every message,
/// piggybacked item and row behind its kind and length, so that the wire
/// grows from here on without moving the version (see the module docs).
pub const VERSION: u8 = 4;
/// Bytes before the body.
pub const HEADER_LEN: usize = 14;
/// Flag bit: the body is sealed with the cluster key ring.
const FLAG_SEALED: u8 = 1;

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
    /// Unknown flags, a frame whose length runs past the body, or known
    /// fields that do not decode.
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
    /// [`Message::Unknown`] when of a kind this build does not know.
    pub(crate) message: Message,
    pub(crate) gossip: Vec<Update>,
    /// Piggybacked announcements of user events.
    pub(crate) event_ids: Vec<EventId>,
    /// Piggybacked tombstones of pruned members.
    pub(crate) tombstones: Vec<Tombstone>,
    /// Piggybacked items of kinds this build does not know (skipped).
    pub(crate) unknown_items: u32,
}

/// One value from the front of `bytes`, and the rest.
fn take<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<(T, &'a [u8]), DecodeError> {
    postcard::take_from_bytes(bytes).map_err(|_| DecodeError::Malformed)
}

/// Decodes a datagram. Checks the header first, then opens a sealed body (into
/// `scratch`, reused across calls), then decodes the body frame by frame: a
/// frame of an unknown kind is skipped; a frame cut short, fewer items than
/// counted or bytes after the last one make the whole datagram malformed. With
/// a `sealer`, plaintext is refused. Last, every row's tags are checked against
/// `limits`.
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
    let (sender, rest): (NodeName, _) = take(body)?;
    let (incarnation, rest): (u64, _) = take(rest)?;
    let ((kind, fields), rest): ((u32, &[u8]), _) = take(rest)?;
    let message = Message::decode(kind, fields)?;
    let (count, mut rest): (u32, _) = take(rest)?;
    // Not preallocated from the count: the count is the peer's word.
    let mut gossip = Vec::new();
    let mut event_ids = Vec::new();
    let mut tombstones = Vec::new();
    let mut unknown_items = 0u32;
    for _ in 0..count {
        let ((kind, fields), next): ((u32, &[u8]), _) = take(rest)?;
        rest = next;
        match Item::decode(kind, fields)? {
            Item::Update(update) => gossip.push(update),
            Item::EventId(id) => event_ids.push(id),
            Item::Tombstone(tombstone) => tombstones.push(tombstone),
            Item::Unknown => unknown_items += 1,
        }
    }
    if !rest.is_empty() {
        return Err(DecodeError::Malformed);
    }
    let tags = |error: TagsError| match error {
        TagsError::Malformed => DecodeError::Malformed,
        other => DecodeError::Tags(other),
    };
    let gossip = gossip
        .into_iter()
        .map(|update| update.check(limits))
        .collect::<Result<Vec<_>, _>>()
        .map_err(tags)?;
    Ok(Packet {
        sender,
        incarnation,
        message: message.check(limits).map_err(tags)?,
        gossip,
        event_ids,
        tombstones,
        unknown_items,
    })
}

/// Bytes a row stream keeps free in each datagram: the row count's varint may
/// grow (by 1), the message's length varint too (by 2, up to the largest
/// datagram), and the sender's incarnation may grow (by up to 8) before the
/// chunk is encoded.
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

/// The body: the sender, the message, the update count and each update, one
/// after the other.
struct Body<'a> {
    sender: &'a NodeName,
    incarnation: u64,
    message: &'a Message,
    gossip: &'a [&'a Update],
    event_ids: &'a [EventId],
    tombstones: &'a [Tombstone],
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A tuple: its elements back to back, with no count before them.
        let items = self.gossip.len() + self.event_ids.len() + self.tombstones.len();
        let mut body = serializer.serialize_tuple(4 + items)?;
        body.serialize_element(self.sender)?;
        body.serialize_element(&self.incarnation)?;
        body.serialize_element(self.message)?;
        body.serialize_element(&items)?;
        for update in self.gossip {
            body.serialize_element(update)?;
        }
        for id in self.event_ids {
            body.serialize_element(id)?;
        }
        for tombstone in self.tombstones {
            body.serialize_element(tombstone)?;
        }
        body.end()
    }
}

/// Size of a packet carrying `message` and no updates (each update adds its
/// [`encoded_len`], and past 127 updates the count takes a byte more).
pub(crate) fn base_len(sender: Sender<'_>, message: &Message) -> usize {
    let seal = if sender.sealed { SEAL_OVERHEAD } else { 0 };
    HEADER_LEN
        + seal
        + encoded_len(&Body {
            sender: sender.name,
            incarnation: sender.incarnation,
            message,
            gossip: &[],
            event_ids: &[],
            tombstones: &[],
        })
}

/// Encodes a packet into `out` (cleared first), sealed when a `sealer` is given
/// (`sender.sealed` must say the same). The caller has checked the size with
/// [`base_len`] and [`encoded_len`] of each update. (The node itself calls
/// [`encode_with_ids`].)
#[cfg(test)]
pub(crate) fn encode(
    sender: Sender<'_>,
    message: &Message,
    gossip: &[&Update],
    out: &mut Vec<u8>,
    sealer: Option<&mut Sealer>,
) {
    encode_with_ids(sender, message, gossip, &[], out, sealer);
}

/// [`encode`], with user events' announcements piggybacked after the updates
/// (each adds its [`encoded_len`]).
#[cfg(test)]
pub(crate) fn encode_with_ids(
    sender: Sender<'_>,
    message: &Message,
    gossip: &[&Update],
    event_ids: &[EventId],
    out: &mut Vec<u8>,
    sealer: Option<&mut Sealer>,
) {
    encode_items(sender, message, gossip, event_ids, &[], out, sealer);
}

/// [`encode`], with user events' announcements and then tombstones
/// piggybacked after the updates (each adds its [`encoded_len`]).
pub(crate) fn encode_items(
    sender: Sender<'_>,
    message: &Message,
    gossip: &[&Update],
    event_ids: &[EventId],
    tombstones: &[Tombstone],
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
        event_ids,
        tombstones,
    };
    // Writing into a Vec cannot fail; the result is the same Vec.
    let taken = std::mem::take(out);
    *out = postcard::to_extend(&body, taken)
        .expect("encoding in-memory values into a Vec cannot fail");
    if let Some(sealer) = sealer {
        sealer.seal(out, HEADER_LEN);
    }
}

/// Frames written by hand, as a later version would write them (tests only).
#[cfg(test)]
pub(crate) mod raw {
    use super::*;

    /// `kind | length | fields`: a message or a piggybacked item.
    pub(crate) fn frame(kind: u32, fields: &[u8]) -> Vec<u8> {
        postcard::to_allocvec(&(kind, fields)).expect("encoding into a Vec cannot fail")
    }

    /// An update's item frame.
    pub(crate) fn update(update: &Update) -> Vec<u8> {
        postcard::to_allocvec(update).expect("encoding into a Vec cannot fail")
    }

    /// A plaintext packet of `cluster` from `sender` at incarnation 0: the
    /// `message` frame, then the `items` frames, counted.
    pub(crate) fn packet(
        cluster: ClusterId,
        sender: &NodeName,
        message: &[u8],
        items: &[Vec<u8>],
    ) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(VERSION);
        out.push(0);
        out.extend_from_slice(&cluster.0.to_le_bytes());
        let mut out = postcard::to_extend(&(sender, 0u64), out).expect("encodes");
        out.extend_from_slice(message);
        let mut out = postcard::to_extend(&items.len(), out).expect("encodes");
        for item in items {
            out.extend_from_slice(item);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

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
        let expected: usize =
            base_len(sender, message) + gossip.iter().map(|u| encoded_len(*u)).sum::<usize>();
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
        // Version 1 had no name-conflict handshake, version 2 no tags and
        // version 3 no frames: their packets are refused whole.
        for old in [1, 2, 3] {
            bad_version[4] = old;
            assert_eq!(
                plain(&bad_version, CLUSTER),
                Err(DecodeError::UnsupportedVersion)
            );
        }
        assert_eq!(plain(&good, ClusterId(43)), Err(DecodeError::WrongCluster));
    }

    #[test]
    fn bodies_cut_inside_a_frame_are_malformed() {
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
        // A byte after the last counted item.
        let mut padded = good.clone();
        padded.push(0);
        assert_eq!(plain(&padded, CLUSTER), Err(DecodeError::Malformed));
        // A length that runs past the body.
        let gossip = raw::frame(8, &[]);
        let overlong = raw::packet(CLUSTER, &name("x"), &gossip, &[vec![0, 9, 1, 2]]);
        assert_eq!(plain(&overlong, CLUSTER), Err(DecodeError::Malformed));
        // Fewer items than counted.
        let mut short = raw::packet(CLUSTER, &name("x"), &gossip, &[]);
        *short.last_mut().expect("the count") = 1;
        assert_eq!(plain(&short, CLUSTER), Err(DecodeError::Malformed));
    }

    #[test]
    fn out_of_range_timestamps_are_malformed() {
        let bytes = raw_gossip_packet(i64::MAX, &[]);
        assert_eq!(plain(&bytes, CLUSTER), Err(DecodeError::Malformed));
    }

    /// A gossip packet whose one update has `last_change_ms` and `tags`
    /// (encoded entries) as given, unchecked.
    fn raw_gossip_packet(last_change_ms: i64, tags: &[u8]) -> Vec<u8> {
        let row = postcard::to_allocvec(&(
            name("y"),
            row::WireAddr::from("1.2.3.4:5".parse::<SocketAddr>().expect("valid")),
            0u64,
            0u8,
            last_change_ms,
            tags,
        ))
        .expect("encodes");
        let update = postcard::to_allocvec(&(row.as_slice(), None::<NodeName>)).expect("encodes");
        raw::packet(
            CLUSTER,
            &name("x"),
            &raw::frame(8, &[]),
            &[raw::frame(0, &update)],
        )
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
    fn a_message_of_an_unknown_kind_is_skipped_and_its_updates_still_decode() {
        let update = Update {
            row: row("s", Health::Suspect),
            suspecter: Some(name("me")),
        };
        // Kind 200, with three bytes of fields a later version would understand.
        let message = raw::frame(200, &[1, 2, 3]);
        let bytes = raw::packet(CLUSTER, &name("x"), &message, &[raw::update(&update)]);
        let packet = plain(&bytes, CLUSTER).expect("decodes");
        assert_eq!(packet.message, Message::Unknown { kind: 200 });
        assert_eq!(packet.gossip, vec![update]);
    }

    #[test]
    fn piggybacked_items_of_unknown_kinds_are_skipped_and_counted() {
        let update = Update {
            row: row("s", Health::Alive),
            suspecter: None,
        };
        let items = [
            raw::frame(7, b"a later version's event id"),
            raw::update(&update),
            raw::frame(1 << 20, &[]),
        ];
        let ack = raw::frame(1, &[4]);
        let bytes = raw::packet(CLUSTER, &name("x"), &ack, &items);
        let packet = plain(&bytes, CLUSTER).expect("decodes");
        assert_eq!(packet.message, Message::Ack { seq: 4 });
        assert_eq!(packet.gossip, vec![update]);
        assert_eq!(packet.unknown_items, 2);
    }

    #[test]
    fn fields_a_later_version_appends_are_ignored() {
        // A ping (kind 0) whose fields grew by two bytes after the target.
        let ping = raw::frame(0, &[5, 1, b't', 0xaa, 0xbb]);
        // An update whose row grew by one byte, and the update by one more.
        let row_bytes = postcard::to_allocvec(&row("s", Health::Dead)).expect("encodes");
        let mut grown_row = row_bytes[1..].to_vec();
        grown_row.push(0xcc);
        let mut update = postcard::to_allocvec(&grown_row).expect("encodes");
        update.extend_from_slice(&[0, 0xdd]);
        let bytes = raw::packet(CLUSTER, &name("x"), &ping, &[raw::frame(0, &update)]);
        let packet = plain(&bytes, CLUSTER).expect("decodes");
        assert_eq!(
            packet.message,
            Message::Ping {
                seq: 5,
                target: name("t")
            }
        );
        assert_eq!(
            packet.gossip,
            vec![Update {
                row: row("s", Health::Dead),
                suspecter: None
            }]
        );
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

        #[test]
        fn arbitrary_frames_after_a_valid_message_never_panic(
            frames in proptest::collection::vec(
                (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..40)),
                0..20,
            ),
            cut in any::<usize>(),
        ) {
            let items: Vec<_> = frames
                .iter()
                .map(|(kind, fields)| raw::frame(*kind, fields))
                .collect();
            let bytes = raw::packet(CLUSTER, &name("x"), &raw::frame(3, &[1]), &items);
            let cut = HEADER_LEN + cut % (bytes.len() - HEADER_LEN + 1);
            let _ = plain(&bytes[..cut], CLUSTER);
        }
    }
}
