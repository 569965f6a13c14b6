//! Property tests: decode(encode(p)) == p for generated packets, and every truncated prefix of a
//! valid stream is merely incomplete.
#![allow(clippy::unwrap_used)]

use proptest::collection::vec;
use proptest::prelude::*;
use torchat_wire::{
    DigestEntry, DigestKey, GroupId, OnionId, Packet, PacketDecoder, SeqSet, Spacing, Status,
};

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..64),
        vec(
            prop_oneof![Just(b'\\'), Just(b'\n'), Just(b' '), Just(b'n'), Just(b'/')],
            0..16
        ),
    ]
}

fn nonempty_bytes() -> impl Strategy<Value = Vec<u8>> {
    bytes().prop_filter("non-empty", |b| !b.is_empty())
}

fn token() -> impl Strategy<Value = String> {
    "[!-~]{1,20}"
}

fn gid() -> impl Strategy<Value = GroupId> {
    "[!-~]{1,40}".prop_map(|s| GroupId::new(&s).unwrap())
}

fn onion() -> impl Strategy<Value = OnionId> {
    prop_oneof![
        "[a-z2-7]{16}".prop_map(|s| OnionId::parse(&s).unwrap()),
        any::<[u8; 32]>().prop_map(|k| OnionId::from_ed25519_public_key(&k)),
    ]
}

fn spacing() -> impl Strategy<Value = Spacing> {
    prop_oneof![Just(Spacing::Space), Just(Spacing::Bare)]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Available),
        Just(Status::Away),
        Just(Status::Xa),
        bytes()
            .prop_filter("not a known value", |b| !matches!(
                &b[..],
                b"available" | b"away" | b"xa"
            ))
            .prop_map(Status::Other),
    ]
}

fn seqset() -> impl Strategy<Value = SeqSet> {
    (0u64..1_000_000, vec((1u64..50, 0u64..50), 0..16)).prop_map(|(upto, gaps)| {
        // Build ascending, disjoint, non-adjacent ranges above upto + 1.
        let mut ranges = Vec::new();
        let mut floor = upto + 1;
        for (gap, len) in gaps {
            let a = floor + gap;
            let b = a + len;
            ranges.push((a, b));
            floor = b + 1;
        }
        SeqSet { upto, ranges }
    })
}

fn entry() -> impl Strategy<Value = DigestEntry> {
    (
        prop_oneof![
            (0u32..300).prop_map(DigestKey::Index),
            onion().prop_map(DigestKey::Id)
        ],
        seqset(),
    )
        .prop_map(|(key, held)| DigestEntry { key, held })
}

fn seq() -> impl Strategy<Value = u64> {
    prop_oneof![1u64..1000, any::<u64>().prop_map(|x| x.max(1))]
}

fn sync_packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        (
            gid(),
            any::<[u8; 4]>(),
            onion(),
            seq(),
            any::<u64>(),
            proptest::option::of(vec(any::<u8>(), 64)),
            bytes()
        )
            .prop_map(|(gid, list, speaker, seq, time, sig, text)| {
                Packet::GroupSyncMessage {
                    gid,
                    list,
                    speaker,
                    seq,
                    time,
                    sig: sig.map(|s| s.try_into().unwrap()),
                    text,
                }
            }),
        (gid(), seqset()).prop_map(|(group, held)| Packet::GroupSyncAck { group, held }),
        (gid(), any::<[u8; 4]>(), vec(entry(), 0..8)).prop_map(|(group, list, entries)| {
            Packet::GroupSyncDigest {
                group,
                list,
                entries,
            }
        }),
        (gid(), onion(), seq(), 0u64..500).prop_map(|(gid, speaker, from, n)| {
            Packet::GroupSyncWant {
                gid,
                speaker,
                from,
                to: from.saturating_add(n),
            }
        }),
        (gid(), onion(), seq(), 0u64..500).prop_map(|(gid, speaker, from, n)| {
            Packet::GroupSyncEnd {
                gid,
                speaker,
                from,
                to: from.saturating_add(n),
            }
        }),
        (gid(), vec(onion(), 0..5))
            .prop_map(|(gid, members)| Packet::GroupSyncTell { gid, members }),
        (any::<[u8; 16]>(), any::<u64>(), bytes())
            .prop_map(|(id, time, text)| Packet::SyncMessage { id, time, text }),
        vec(any::<[u8; 16]>(), 1..5).prop_map(Packet::SyncAck),
    ]
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![legacy_packet(), sync_packet()]
}

fn legacy_packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        (onion(), nonempty_bytes()).prop_map(|(from, cookie)| Packet::Ping { from, cookie }),
        nonempty_bytes().prop_map(|cookie| Packet::Pong { cookie }),
        bytes().prop_map(Packet::Client),
        bytes().prop_map(Packet::Version),
        vec("[a-z_]{1,12}", 0..5).prop_map(Packet::Supports),
        status().prop_map(Packet::Status),
        bytes().prop_map(Packet::ProfileName),
        bytes().prop_map(Packet::ProfileText),
        vec(any::<u8>(), 0..4097).prop_map(Packet::ProfileAvatarAlpha),
        vec(any::<u8>(), 0..200).prop_map(Packet::ProfileAvatar),
        spacing().prop_map(Packet::AddMe),
        spacing().prop_map(Packet::RemoveMe),
        bytes().prop_map(Packet::Message),
        (token(), any::<u64>(), any::<u64>(), bytes()).prop_map(|(id, size, block_size, name)| {
            Packet::Filename {
                id,
                size,
                block_size,
                name,
            }
        }),
        (
            token(),
            any::<u64>(),
            "[0-9a-f]{32}",
            vec(any::<u8>(), 0..9000)
        )
            .prop_map(|(id, start, md5, data)| Packet::Filedata {
                id,
                start,
                md5,
                data
            }),
        (token(), any::<u64>()).prop_map(|(id, start)| Packet::FiledataOk { id, start }),
        (token(), any::<u64>()).prop_map(|(id, start)| Packet::FiledataError { id, start }),
        token().prop_map(|id| Packet::FileStopSending { id }),
        token().prop_map(|id| Packet::FileStopReceiving { id }),
        proptest::option::of(bytes()).prop_map(Packet::NotImplemented),
        spacing().prop_map(Packet::Disconnect),
        spacing().prop_map(Packet::TypingStart),
        spacing().prop_map(Packet::TypingThinking),
        spacing().prop_map(Packet::TypingStop),
        bytes().prop_map(Packet::LatencyPing),
        bytes().prop_map(Packet::LatencyPong),
        bytes().prop_map(Packet::BroadcastMessage),
        (gid(), vec("[!-~]{1,12}", 0..4))
            .prop_map(|(gid, modes)| Packet::GroupInvite { gid, modes }),
        (gid(), vec(onion(), 0..6)).prop_map(|(gid, ids)| Packet::GroupParticipants { gid, ids }),
        gid().prop_map(|gid| Packet::GroupIsParticipating { gid }),
        gid().prop_map(|gid| Packet::GroupParticipating { gid }),
        gid().prop_map(|gid| Packet::GroupNotParticipating { gid }),
        gid().prop_map(|gid| Packet::GroupJoin { gid }),
        (gid(), onion()).prop_map(|(gid, id)| Packet::GroupInvited { gid, id }),
        (gid(), proptest::option::of(bytes()))
            .prop_map(|(gid, reason)| Packet::GroupLeave { gid, reason }),
        (gid(), bytes()).prop_map(|(gid, text)| Packet::GroupMessage { gid, text }),
        (gid(), onion(), bytes()).prop_map(|(gid, sender, text)| Packet::GroupEchoedMessage {
            gid,
            sender,
            text
        }),
        (
            gid(),
            any::<[u8; 16]>(),
            proptest::collection::vec(any::<u8>(), 64),
            bytes()
        )
            .prop_map(|(gid, msgid, sig, text)| Packet::GroupSignedMessage {
                gid,
                msgid,
                sig: sig.try_into().unwrap(),
                text
            }),
        (
            gid(),
            onion(),
            any::<[u8; 16]>(),
            proptest::collection::vec(any::<u8>(), 64),
            bytes()
        )
            .prop_map(|(gid, sender, msgid, sig, text)| Packet::GroupSignedEcho {
                gid,
                sender,
                msgid,
                sig: sig.try_into().unwrap(),
                text
            }),
        ("x_[a-z_]{1,20}", proptest::option::of(bytes()))
            .prop_map(|(command, payload)| Packet::Unknown { command, payload }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_encode_roundtrip(p in packet()) {
        let enc = p.encode();
        prop_assert_eq!(enc.iter().filter(|&&b| b == b'\n').count(), 1, "one LF, at the end");
        prop_assert_eq!(enc.last(), Some(&b'\n'));
        prop_assert_eq!(Packet::decode(&enc[..enc.len() - 1]), Ok(p));
    }

    #[test]
    fn truncated_prefixes_are_incomplete(ps in vec(packet(), 1..6), cut_seed in any::<u64>()) {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for p in &ps {
            p.encode_into(&mut stream);
            ends.push(stream.len());
        }
        let cut = (cut_seed % stream.len() as u64) as usize;
        let mut dec = PacketDecoder::default();
        let got = dec.feed(&stream[..cut]);
        // Only the packets whose LF lies inside the prefix come out, all valid, no error.
        let complete = ends.iter().filter(|&&e| e <= cut).count();
        prop_assert_eq!(got.len(), complete);
        for (g, p) in got.iter().zip(&ps) {
            prop_assert_eq!(g.as_ref(), Ok(p));
        }
        let last_end = if complete == 0 { 0 } else { ends[complete - 1] };
        prop_assert_eq!(dec.pending(), cut - last_end);
        // Feeding the rest yields the remaining packets.
        let rest = dec.feed(&stream[cut..]);
        prop_assert_eq!(rest.len(), ps.len() - complete);
    }

    /// Arbitrary payloads after the extension's commands: never a panic, and whatever decodes
    /// re-encodes to a line that decodes to the same packet (what the fuzz target checks).
    #[test]
    fn sync_packets_parse_arbitrary_payloads_safely(
        cmd in prop_oneof![
            Just("groupchat_sync_message"), Just("groupchat_sync_ack"),
            Just("groupchat_sync_digest"), Just("groupchat_sync_want"),
            Just("groupchat_sync_end"), Just("groupchat_sync_tell"),
            Just("sync_message"), Just("sync_ack"),
        ],
        words in vec(prop_oneof![
            "[0-9]{1,22}", "[0-9a-f]{8}", "[0-9a-f]{32}", "[0-9a-f]{128}", "-",
            "[a-z2-7]{16}", "[0-9]{1,3}:[0-9,-]{1,12}", "[a-z2-7]{16}:[0-9]{1,5}",
            "[0-9,\\-]{1,10}", "[!-~]{1,10}",
        ], 0..8),
    ) {
        let line = format!("{cmd} {}", words.join(" "));
        if let Ok(p) = Packet::decode(line.as_bytes()) {
            let enc = p.encode();
            prop_assert_eq!(Packet::decode(&enc[..enc.len() - 1]), Ok(p));
        }
    }

    #[test]
    fn arbitrary_input_never_panics_and_stays_bounded(chunks in vec(vec(any::<u8>(), 0..300), 0..20)) {
        let mut dec = PacketDecoder::new(128);
        for c in &chunks {
            let _ = dec.feed(c);
            prop_assert!(dec.pending() <= 128);
        }
    }
}
