//! Every captured line of real TorChat traffic decodes to the right typed packet and re-encodes
//! byte for byte.
#![allow(clippy::unwrap_used)]

use torchat_wire::transcript::{self, CapturedLine};
use torchat_wire::{GroupId, OnionId, Packet, PacketDecoder, Spacing, Status};

const SAMPLES: &str = include_str!("data/wire-samples.txt");
/// Number of captured lines in the file; guards against the parser silently skipping some.
const CAPTURED_LINES: usize = 179;

fn lines() -> Vec<CapturedLine> {
    transcript::parse(SAMPLES).expect("samples parse")
}

fn id(s: &str) -> OnionId {
    OnionId::parse(s).unwrap()
}

#[test]
fn vendored_copy_matches_shared_spec() {
    // The project's spec lives beside the repository; when it is there, our copy must match.
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/spec/wire-samples.txt"
    );
    if let Ok(s) = std::fs::read_to_string(shared) {
        assert_eq!(s, SAMPLES, "tests/data/wire-samples.txt is out of date");
    }
}

#[test]
fn every_line_decodes_and_reencodes_identically() {
    let lines = lines();
    assert_eq!(lines.len(), CAPTURED_LINES);
    for l in &lines {
        let p = Packet::decode(&l.bytes)
            .unwrap_or_else(|e| panic!("line {}: {e}: {:?}", l.file_line, l.bytes));
        assert!(
            !matches!(p, Packet::Unknown { .. }),
            "line {}: unknown {p:?}",
            l.file_line
        );
        let cmd = l.bytes.split(|&b| b == b' ').next().unwrap();
        assert_eq!(p.command().as_bytes(), cmd, "line {}", l.file_line);
        let mut enc = p.encode();
        assert_eq!(enc.pop(), Some(b'\n'));
        assert_eq!(enc, l.bytes, "line {} re-encodes differently", l.file_line);
    }
}

#[test]
fn every_single_byte_change_is_visible() {
    // Altering any byte of any line changes what it decodes to (or makes it invalid): the
    // codec does not silently normalise anything away.
    for l in lines() {
        let orig = Packet::decode(&l.bytes).unwrap();
        for i in 0..l.bytes.len() {
            let mut b = l.bytes.clone();
            b[i] = if b[i] == b'x' { b'y' } else { b'x' };
            if let Ok(p) = Packet::decode(&b) {
                assert_ne!(p, orig, "line {} byte {i}", l.file_line);
            }
        }
    }
}

#[test]
fn whole_conversations_decode_as_streams_split_anywhere() {
    let lines = lines();
    let mut stream = Vec::new();
    for l in &lines {
        stream.extend_from_slice(&l.bytes);
        stream.push(b'\n');
    }
    let whole: Vec<_> = PacketDecoder::default().feed(&stream);
    assert_eq!(whole.len(), lines.len());
    for step in [1usize, 2, 3, 7, 100, 4096] {
        let mut dec = PacketDecoder::default();
        let mut got = Vec::new();
        for c in stream.chunks(step) {
            dec.feed_with(c, |p| got.push(p));
        }
        assert_eq!(got, whole, "chunk size {step}");
    }
}

#[test]
fn typed_values_are_right() {
    let lines = lines();
    let find = |section: &str, prefix: &str| -> Packet {
        let l = lines
            .iter()
            .find(|l| l.section == section && l.bytes.starts_with(prefix.as_bytes()))
            .unwrap_or_else(|| panic!("{section} {prefix}"));
        Packet::decode(&l.bytes).unwrap()
    };
    assert_eq!(
        find("1", "ping"),
        Packet::Ping {
            from: id("rubyaaaaaaaaaaaa"),
            cookie: b"18886cf8-09cb-42ce-9435-0c40fc9cc13c".to_vec()
        }
    );
    assert_eq!(
        find("1", "supports"),
        Packet::Supports(vec![
            "groupchat".into(),
            "typing".into(),
            "broadcast".into(),
            "latency".into()
        ])
    );
    assert_eq!(find("1", "add_me"), Packet::AddMe(Spacing::Space));
    assert_eq!(find("4", "add_me"), Packet::AddMe(Spacing::Bare));
    assert_eq!(find("4", "version"), Packet::Version(b"0.7.12 ".to_vec()));
    assert_eq!(find("1", "status"), Packet::Status(Status::Available));
    assert_eq!(
        find("1", "message hello"),
        Packet::Message(
            "hello from rubyaaaaaaaaaaaa (1:1) ünïcödé"
                .as_bytes()
                .to_vec()
        )
    );
    assert_eq!(
        find("5a", "not_implemented"),
        Packet::NotImplemented(Some(vec![]))
    );
    assert_eq!(find("5b", "message [delayed]").command(), "message");
    let gid = GroupId::new("7ec2d770-198c-4899-81d4-a5b3480ccde5").unwrap();
    assert_eq!(
        find("2", "groupchat_invite"),
        Packet::GroupInvite {
            gid: gid.clone(),
            modes: vec![]
        }
    );
    assert_eq!(
        find(
            "2",
            "groupchat_participants 7ec2d770-198c-4899-81d4-a5b3480ccde5 rubya"
        ),
        Packet::GroupParticipants {
            gid: gid.clone(),
            ids: vec![id("rubyaaaaaaaaaaaa"), id("rubybbbbbbbbbbbb")]
        }
    );
    assert_eq!(
        find("2", "groupchat_join"),
        Packet::GroupJoin { gid: gid.clone() }
    );
    assert_eq!(
        find("2", "groupchat_invited"),
        Packet::GroupInvited {
            gid: gid.clone(),
            id: id("rubycccccccccccc")
        }
    );
    assert_eq!(
        find("2", "groupchat_leave"),
        Packet::GroupLeave {
            gid: gid.clone(),
            reason: Some(b"bye".to_vec())
        }
    );
    assert_eq!(
        find("2", "groupchat_message"),
        Packet::GroupMessage {
            gid,
            text: b"hello group from rubyaaaaaaaaaaaa".to_vec()
        }
    );
}
