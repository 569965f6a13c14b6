//! File transfer against scripted peers: replays of real transfers between Python TorChat and
//! jtorchat (file-transfer-samples.txt) with our node in either role, every hostile case with
//! its defined reaction, and transfers between two torchat cores (accept, resume after a
//! disconnect and after a restart).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::script::Script;
use common::{id, Net, T0};
use md5::{Digest, Md5};
use torchat_core::{
    ConnId, Event, FileDirection, FileFailure, FileId, FileIo, FileRefusal, FileState, Node,
    Output, Timestamp, TransferRestore,
};
use torchat_wire::transcript::{self, CapturedLine, Direction};
use torchat_wire::{OnionId, Packet};

const SAMPLES: &str = include_str!("../../torchat-wire/tests/data/file-transfer-samples.txt");

fn md5_hex(d: &[u8]) -> String {
    Md5::digest(d).iter().map(|b| format!("{b:02x}")).collect()
}

/// A file's content: every byte value, newlines and backslashes included (they are escaped
/// on the wire), different per offset.
fn content(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect()
}

fn section(name: &str) -> Vec<CapturedLine> {
    transcript::parse(SAMPLES)
        .unwrap()
        .into_iter()
        .filter(|l| l.section == name)
        .collect()
}

/// A captured `filedata` line is abbreviated `filedata <id> <start> <md5> <N bytes, md5 M>`:
/// returns (id, start, N).
fn abbreviated(l: &[u8]) -> Option<(String, u64, usize)> {
    let s = std::str::from_utf8(l).ok()?;
    let rest = s.strip_prefix("filedata ")?;
    let mut w = rest.split(' ');
    let (id, start, _md5, n) = (w.next()?, w.next()?, w.next()?, w.next()?);
    let n = n.strip_prefix('<')?.parse().ok()?;
    Some((id.to_owned(), start.parse().ok()?, n))
}

/// The real line for a captured one: data lines get `file`'s bytes at their offset (and
/// their md5); `ids` maps the capture's transfer id to ours.
fn real(l: &CapturedLine, file: &[u8], ids: &(String, String)) -> Vec<u8> {
    let line = if let Some((id, start, n)) = abbreviated(&l.bytes) {
        let data = file[start as usize..start as usize + n].to_vec();
        let mut e = Packet::Filedata {
            id,
            start,
            md5: md5_hex(&data),
            data,
        }
        .encode();
        e.pop();
        e
    } else {
        l.bytes.clone()
    };
    let s = line;
    replace_id(&s, &ids.0, &ids.1)
}

fn replace_id(line: &[u8], from: &str, to: &str) -> Vec<u8> {
    // The id is always the first field after the command.
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return line.to_vec();
    };
    let rest = &line[sp + 1..];
    let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
    if &rest[..end] != from.as_bytes() {
        return line.to_vec();
    }
    let mut out = line[..=sp].to_vec();
    out.extend_from_slice(to.as_bytes());
    out.extend_from_slice(&rest[end..]);
    out
}

/// A line for comparison: data lines become `filedata <id> <start> <N bytes>` once their md5
/// is checked; everything else stays exact.
fn summary(line: &[u8]) -> String {
    if let Some((id, start, n)) = abbreviated(line) {
        return format!("filedata {id} {start} <{n} bytes>");
    }
    match Packet::decode(line) {
        Ok(Packet::Filedata {
            id,
            start,
            md5,
            data,
        }) => {
            assert_eq!(md5, md5_hex(&data), "md5 of our block at {start}");
            format!("filedata {id} {start} <{} bytes>", data.len())
        }
        _ => String::from_utf8_lossy(line).into_owned(),
    }
}

/// A session with a buddy on our list (files from strangers are declined: quota.rs).
fn session(s: &mut Script, p: &OnionId) -> (ConnId, ConnId) {
    let r = common::script::session(s, p);
    let now = s.now;
    s.node.add_buddy(p.clone(), None, now).unwrap();
    s.drain();
    r
}

/// Our node online with a legacy peer (no `supports`): (script, its connection, ours).
fn online_with(peer: &OnionId) -> (Script, ConnId, ConnId) {
    let mut s = Script::new("us");
    let (inc, out) = session(&mut s, peer);
    (s, inc, out)
}

/// Every file line we wrote since log index `from`, in order, with the connection.
fn file_lines(s: &Script, from: usize) -> Vec<(ConnId, Vec<u8>)> {
    let mut out = vec![];
    for o in &s.log[from..] {
        if let Output::Transmit { conn, data } = o {
            for l in data
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"file"))
            {
                out.push((*conn, l.to_vec()));
            }
        }
    }
    out
}

fn offers(s: &Script) -> Vec<FileId> {
    s.events()
        .iter()
        .filter_map(|e| match e {
            Event::FileOffer { file, .. } => Some(*file),
            _ => None,
        })
        .collect()
}

fn state(s: &Script, f: FileId) -> FileState {
    s.node.transfer(f).unwrap().state
}

/// Feeds a captured line from the peer: `fw` lines travel on the peer's own connection (our
/// incoming), `bw` lines on ours.
fn feed(s: &mut Script, inc: ConnId, out: ConnId, l: &CapturedLine, line: &[u8]) {
    let conn = match l.direction {
        Direction::Forward => inc,
        Direction::Backward => out,
    };
    s.now = Timestamp::from_millis(T0 + 1000 + l.millis as u64);
    s.feed(conn, line);
}

// ----- replays: a legacy client sends, we receive -----

/// Replays the sender's side of a capture against our node as the receiver. `accept_at`:
/// accept when the receiver's line with this index (among its file lines) is due; `None`:
/// accept at once when the offer arrives (auto-accept). Returns our script and the transfer.
fn replay_receive(
    name: &str,
    sender: &str,
    receiver: &str,
    accept_before_receiver_line: Option<usize>,
) -> (Script, FileId, Vec<u8>) {
    let lines = section(name);
    let peer = OnionId::parse(sender).unwrap();
    let (mut s, inc, out) = online_with(&peer);
    let mark = s.log.len();
    let size = lines
        .iter()
        .find_map(|l| match Packet::decode(&l.bytes) {
            Ok(Packet::Filename { size, .. }) => Some(size as usize),
            _ => None,
        })
        .unwrap();
    let file = content(size);
    let same = (String::new(), String::new());
    let mut expected = vec![];
    let mut receiver_lines = 0;
    let mut transfer = None;
    for l in &lines {
        if l.from == receiver {
            if !l.bytes.starts_with(b"file") {
                continue; // keepalives
            }
            if accept_before_receiver_line == Some(receiver_lines) {
                let now = s.now;
                s.node.accept_file(transfer.unwrap(), now).unwrap();
                s.drain();
            }
            receiver_lines += 1;
            expected.push(summary(&l.bytes));
            continue;
        }
        feed(&mut s, inc, out, l, &real(l, &file, &same));
        if transfer.is_none() {
            if let Some(f) = offers(&s).first().copied() {
                transfer = Some(f);
                if accept_before_receiver_line.is_none() {
                    let now = s.now;
                    s.node.accept_file(f, now).unwrap();
                    s.drain();
                }
            }
        }
    }
    let ours: Vec<String> = file_lines(&s, mark)
        .iter()
        .inspect(|(c, _)| assert_eq!(*c, out, "{name}: control lines go on our connection"))
        .map(|(_, l)| summary(l))
        .collect();
    assert_eq!(ours, expected, "{name}: what we answered");
    assert!(
        !s.wrote_on(inc),
        "{name}: nothing on the sender's connection"
    );
    (s, transfer.unwrap(), file)
}

#[test]
fn replay_python_sends_to_us() {
    // Section 1: py → py, auto-accepted: three blocks, three oks, byte for byte.
    let (s, f, file) = replay_receive("1", "pyaaaaaaaaaaaaaa", "pybbbbbbbbbbbbbb", None);
    assert_eq!(state(&s, f), FileState::Complete);
    assert_eq!(s.sinks[&f], file);
    assert_eq!(s.file_closes, [(f, true)]);
    let v = s.node.transfer(f).unwrap();
    assert_eq!((v.name.as_slice(), v.size), (&b"s20k-pp.bin"[..], 20480));
}

#[test]
fn replay_jtorchat_sends_to_us() {
    // Section 4: java → py, jtorchat's id format.
    let (s, f, file) = replay_receive("4", "javaaaaaaaaaaaaa", "pybbbbbbbbbbbbbb", None);
    assert_eq!(state(&s, f), FileState::Complete);
    assert_eq!(s.sinks[&f], file);
    assert_eq!(s.node.transfer(f).unwrap().wire_id, "gj0crwo8cj");
}

#[test]
fn replay_python_sends_and_we_accept_later() {
    // Section 3: jtorchat's user presses Start 3 s after the offer. Blocks before that are
    // dropped; accepting asks for a restart at 0 (`filedata_error <id> 0`) and Python sends
    // everything again. We answer exactly as jtorchat did.
    let (s, f, file) = replay_receive("3", "pyaaaaaaaaaaaaaa", "javaaaaaaaaaaaaa", Some(0));
    assert_eq!(state(&s, f), FileState::Complete);
    assert_eq!(s.sinks[&f], file);
}

#[test]
fn replay_python_sender_cancels() {
    // Section 6: py-A cancels after 17 blocks. We confirmed all 17 (they were written), the
    // stop ends the transfer; py's repeated stops for our late oks are ignored.
    let lines = section("6");
    let peer = OnionId::parse("pyaaaaaaaaaaaaaa").unwrap();
    let (mut s, inc, out) = online_with(&peer);
    let file = content(409_600);
    let same = (String::new(), String::new());
    let mark = s.log.len();
    for l in lines.iter().filter(|l| l.from == "pyaaaaaaaaaaaaaa") {
        feed(&mut s, inc, out, l, &real(l, &file, &same));
        if let Some(f) = offers(&s).first().copied() {
            if state(&s, f) == FileState::Offered {
                let now = s.now;
                s.node.accept_file(f, now).unwrap();
                s.drain();
            }
        }
    }
    let f = offers(&s)[0];
    assert_eq!(state(&s, f), FileState::Cancelled { by_peer: true });
    assert_eq!(s.file_closes, [(f, false)]);
    assert_eq!(s.sinks[&f], file[..17 * 8192]);
    let ours: Vec<String> = file_lines(&s, mark)
        .iter()
        .map(|(_, l)| summary(l))
        .collect();
    let oks: Vec<String> = (0..17)
        .map(|i| format!("filedata_ok 1974688303 {}", i * 8192))
        .collect();
    assert_eq!(ours, oks, "only the oks; nothing in answer to the stops");
}

#[test]
fn replay_jtorchat_sender_cancels() {
    // Section 10: jtorchat stops after 24576 bytes are confirmed; its blocks in flight after
    // the stop are answered with `file_stop_sending`, as Python TorChat does.
    let lines = section("10");
    let peer = OnionId::parse("javaaaaaaaaaaaaa").unwrap();
    let (mut s, inc, out) = online_with(&peer);
    let file = content(409_600);
    let same = (String::new(), String::new());
    let mark = s.log.len();
    for l in lines.iter().filter(|l| l.from == "javaaaaaaaaaaaaa") {
        feed(&mut s, inc, out, l, &real(l, &file, &same));
        if let Some(f) = offers(&s).first().copied() {
            if state(&s, f) == FileState::Offered {
                let now = s.now;
                s.node.accept_file(f, now).unwrap();
                s.drain();
            }
        }
    }
    let f = offers(&s)[0];
    assert_eq!(state(&s, f), FileState::Cancelled { by_peer: true });
    let ours: Vec<String> = file_lines(&s, mark)
        .iter()
        .map(|(_, l)| summary(l))
        .collect();
    // 35 blocks arrived before the stop and were confirmed, 4 after it got a stop each.
    let oks = ours.iter().filter(|l| l.starts_with("filedata_ok")).count();
    let stops = ours
        .iter()
        .filter(|l| *l == "file_stop_sending gpbue9wsfv")
        .count();
    assert_eq!((oks, stops, ours.len()), (35, 4, 39), "{ours:?}");
    assert_eq!(s.sinks[&f], file[..35 * 8192]);
}

#[test]
fn we_cancel_a_receive_from_python() {
    // Section 5 with us as py-B: we cancel after 3 blocks. Unlike Python (which says nothing
    // until the next block) we say `file_stop_sending` at once, as jtorchat does, and answer
    // every later block the same way. Python stops and says `file_stop_receiving` once.
    let lines = section("5");
    let peer = OnionId::parse("pyaaaaaaaaaaaaaa").unwrap();
    let (mut s, inc, out) = online_with(&peer);
    let file = content(409_600);
    let same = (String::new(), String::new());
    let data: Vec<&CapturedLine> = lines
        .iter()
        .filter(|l| l.from == "pyaaaaaaaaaaaaaa")
        .collect();
    let mark = s.log.len();
    feed(&mut s, inc, out, data[0], &real(data[0], &file, &same));
    let f = offers(&s)[0];
    let now = s.now;
    s.node.accept_file(f, now).unwrap();
    for l in &data[1..4] {
        feed(&mut s, inc, out, l, &real(l, &file, &same));
    }
    let now = s.now;
    s.node.cancel_file(f, now).unwrap();
    s.drain();
    for l in &data[4..] {
        feed(&mut s, inc, out, l, &real(l, &file, &same));
    }
    let ours: Vec<String> = file_lines(&s, mark)
        .iter()
        .map(|(_, l)| summary(l))
        .collect();
    let mut want: Vec<String> = (0..3)
        .map(|i| format!("filedata_ok 765704447 {}", i * 8192))
        .collect();
    // One for the cancel, one for each of the 14 blocks still coming.
    want.extend(std::iter::repeat_n(
        "file_stop_sending 765704447".to_owned(),
        15,
    ));
    assert_eq!(ours, want);
    assert_eq!(state(&s, f), FileState::Cancelled { by_peer: false });
    assert_eq!(s.file_closes, [(f, false)]);
}

// ----- replays: we send, a legacy client receives -----

/// Replays the receiver's side of a capture against our node as the sender, with our window
/// set to the captured sender's. Returns the script, the transfer and what we wrote.
fn replay_send(name: &str, sender: &str, receiver: &str, window: u64) -> (Script, FileId) {
    let lines = section(name);
    let peer = OnionId::parse(receiver).unwrap();
    let mut s = Script::with_node({
        let mut n = common::node("us", 42);
        let mut cfg = n.config().clone();
        cfg.files.window_legacy = window;
        n = Node::new(
            cfg,
            Box::new(<rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(7)),
        );
        n.start(Timestamp::from_millis(T0));
        n
    });
    let (inc, out) = session(&mut s, &peer);
    let (size, their_id, name_b) = lines
        .iter()
        .find_map(|l| match Packet::decode(&l.bytes) {
            Ok(Packet::Filename { id, size, name, .. }) => Some((size, id, name)),
            _ => None,
        })
        .unwrap();
    let file = content(size as usize);
    let mark = s.log.len();
    let now = s.now;
    let f = s.node.send_file(&peer, name_b, size, now).unwrap();
    s.sources.insert(f, file.clone());
    s.drain();
    let ours_id = s.node.transfer(f).unwrap().wire_id;
    let ids = (their_id.clone(), ours_id.clone());
    let mut expected = vec![];
    for l in &lines {
        if l.from == sender {
            expected.push(summary(&replace_id(&l.bytes, &their_id, &ours_id)));
        } else if l.bytes.starts_with(b"file") {
            feed(&mut s, inc, out, l, &real(l, &file, &ids));
        }
    }
    let ours: Vec<String> = file_lines(&s, mark)
        .iter()
        .inspect(|(c, l)| {
            let data = l.starts_with(b"filename ") || l.starts_with(b"filedata ");
            let want = if data { inc } else { out };
            assert_eq!(*c, want, "{name}: {}", summary(l));
        })
        .map(|(_, l)| summary(l))
        .collect();
    assert_eq!(ours, expected, "{name}: what we sent");
    (s, f)
}

#[test]
fn replay_we_send_to_python() {
    // Section 1 with us as py-A: filename and blocks on the receiver's connection.
    let (s, f) = replay_send("1", "pyaaaaaaaaaaaaaa", "pybbbbbbbbbbbbbb", 17);
    assert_eq!(state(&s, f), FileState::Complete);
    assert_eq!(s.file_closes, [(f, true)]);
}

#[test]
fn replay_we_send_to_jtorchat_that_restarts() {
    // Section 2: jtorchat (transferonstart=1) asks for a restart at 0 after the three blocks;
    // we send them again and ignore its duplicate oks. Six blocks, as Python sent.
    let (s, f) = replay_send("2", "pyaaaaaaaaaaaaaa", "javaaaaaaaaaaaaa", 17);
    assert_eq!(state(&s, f), FileState::Complete);
    assert!(
        !file_lines(&s, 0)
            .iter()
            .any(|(_, l)| l.starts_with(b"file_stop")),
        "no stop after a finished transfer"
    );
}

#[test]
fn replay_we_send_to_jtorchat_started_by_hand() {
    // Section 3: jtorchat ignores blocks until Start is pressed, then asks for 0 again.
    let (s, f) = replay_send("3", "pyaaaaaaaaaaaaaa", "javaaaaaaaaaaaaa", 17);
    assert_eq!(state(&s, f), FileState::Complete);
}

#[test]
fn replay_jtorchat_sends_like_jtorchat() {
    // Section 4 with us as java-J (33 blocks in flight, like jtorchat).
    let (s, f) = replay_send("4", "javaaaaaaaaaaaaa", "pybbbbbbbbbbbbbb", 33);
    assert_eq!(state(&s, f), FileState::Complete);
}

/// Our node sends a 400 KiB file to a receiver that cancels (sections 5, 7b, 9): we stop at
/// the first `file_stop_sending`, say `file_stop_receiving` exactly once, send no more blocks
/// and ignore the rest of its stops.
fn receiver_cancels(name: &str, sender: &str, receiver: &str, window: u64) {
    let lines = section(name);
    let peer = OnionId::parse(receiver).unwrap();
    let mut s = Script::with_node({
        let mut cfg = common::node("us", 1).config().clone();
        cfg.files.window_legacy = window;
        let mut n = Node::new(
            cfg,
            Box::new(<rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(3)),
        );
        n.start(Timestamp::from_millis(T0));
        n
    });
    let (inc, out) = session(&mut s, &peer);
    let (their_id, name_b) = lines
        .iter()
        .find_map(|l| match Packet::decode(&l.bytes) {
            Ok(Packet::Filename { id, name, .. }) => Some((id, name)),
            _ => None,
        })
        .unwrap();
    let file = content(409_600);
    let now = s.now;
    let f = s.node.send_file(&peer, name_b, 409_600, now).unwrap();
    s.sources.insert(f, file.clone());
    s.drain();
    let ours_id = s.node.transfer(f).unwrap().wire_id;
    let ids = (their_id, ours_id.clone());
    let mut stop_at = None;
    for l in lines.iter().filter(|l| l.from == receiver) {
        if l.bytes.starts_with(b"file_stop_sending") && stop_at.is_none() {
            stop_at = Some(s.log.len());
        }
        if l.bytes.starts_with(b"file") {
            feed(&mut s, inc, out, l, &real(l, &file, &ids));
        }
    }
    let after: Vec<String> = file_lines(&s, stop_at.unwrap())
        .iter()
        .map(|(_, l)| summary(l))
        .collect();
    assert_eq!(after, [format!("file_stop_receiving {ours_id}")], "{name}");
    assert_eq!(state(&s, f), FileState::Cancelled { by_peer: true });
    assert_eq!(s.file_closes, [(f, false)]);
    let _ = sender;
}

#[test]
fn replay_receivers_cancel_our_send() {
    receiver_cancels("5", "pyaaaaaaaaaaaaaa", "pybbbbbbbbbbbbbb", 17);
    receiver_cancels("7b", "pyaaaaaaaaaaaaaa", "javaaaaaaaaaaaaa", 17);
    receiver_cancels("9", "javaaaaaaaaaaaaa", "pybbbbbbbbbbbbbb", 33);
}

/// We cancel a send after 24576 bytes are confirmed (sections 6 and 8): one
/// `file_stop_receiving`, no more blocks, and each late ok answered with another
/// `file_stop_receiving` (as Python TorChat does for an id it no longer knows).
fn we_cancel_send(name: &str, receiver: &str) {
    let lines = section(name);
    let peer = OnionId::parse(receiver).unwrap();
    let (mut s, inc, out) = online_with(&peer);
    let (their_id, name_b) = lines
        .iter()
        .find_map(|l| match Packet::decode(&l.bytes) {
            Ok(Packet::Filename { id, name, .. }) => Some((id, name)),
            _ => None,
        })
        .unwrap();
    let file = content(409_600);
    let now = s.now;
    let f = s.node.send_file(&peer, name_b, 409_600, now).unwrap();
    s.sources.insert(f, file.clone());
    s.drain();
    let ours_id = s.node.transfer(f).unwrap().wire_id;
    let ids = (their_id, ours_id.clone());
    let mut mark = None;
    let mut late_oks = 0;
    for l in lines.iter().filter(|l| l.from == receiver) {
        if !l.bytes.starts_with(b"file") {
            continue;
        }
        feed(&mut s, inc, out, l, &real(l, &file, &ids));
        if mark.is_some() && l.bytes.starts_with(b"filedata_ok") {
            late_oks += 1;
        }
        if mark.is_none() && s.node.transfer(f).unwrap().done == 24576 {
            mark = Some(s.log.len());
            let now = s.now;
            s.node.cancel_file(f, now).unwrap();
            s.drain();
        }
    }
    let after: Vec<String> = file_lines(&s, mark.unwrap())
        .iter()
        .map(|(_, l)| summary(l))
        .collect();
    let want = vec![format!("file_stop_receiving {ours_id}"); 1 + late_oks];
    assert_eq!(after, want, "{name}");
    assert!(late_oks > 0, "{name}: the capture has late oks");
    assert_eq!(state(&s, f), FileState::Cancelled { by_peer: false });
}

#[test]
fn replay_we_cancel_our_send() {
    we_cancel_send("6", "pybbbbbbbbbbbbbb");
    we_cancel_send("8", "javaaaaaaaaaaaaa");
}

// ----- hostile input -----

fn offer_line(id: &str, size: &str, name: &[u8]) -> Vec<u8> {
    let mut l = format!("filename {id} {size} 8192 ").into_bytes();
    l.extend_from_slice(name);
    l
}

fn data_line(id: &str, start: u64, data: &[u8], md5: Option<&str>) -> Vec<u8> {
    let mut e = Packet::Filedata {
        id: id.into(),
        start,
        md5: md5.map_or_else(|| md5_hex(data), str::to_owned),
        data: data.to_vec(),
    }
    .encode();
    e.pop();
    e
}

#[test]
fn offer_floods_are_bounded_per_buddy_and_in_total() {
    let mut s = Script::with_node({
        let mut cfg = common::node("us", 1).config().clone();
        cfg.files.max_offers_per_buddy = 3;
        cfg.files.max_offers = 5;
        let mut n = Node::new(
            cfg,
            Box::new(<rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(3)),
        );
        n.start(Timestamp::from_millis(T0));
        n
    });
    let (p, q) = (id("flooder"), id("second"));
    let (_, out_p) = session(&mut s, &p);
    let (_, out_q) = session(&mut s, &q);
    for i in 0..10 {
        s.feed(out_p, &offer_line(&format!("p{i}"), "10", b"x"));
    }
    for i in 0..10 {
        s.feed(out_q, &offer_line(&format!("q{i}"), "10", b"x"));
    }
    assert_eq!(offers(&s).len(), 5, "3 from the first, 2 from the second");
    let stops_p = s
        .sent_on(out_p)
        .iter()
        .filter(|p| matches!(p, Packet::FileStopSending { .. }))
        .count();
    let stops_q = s
        .sent_on(out_q)
        .iter()
        .filter(|p| matches!(p, Packet::FileStopSending { .. }))
        .count();
    assert_eq!((stops_p, stops_q), (7, 8));
    assert_eq!(s.node.file_stats().refused_offers, 15);
    // Declining one frees a place.
    let now = s.now;
    s.node.cancel_file(offers(&s)[0], now).unwrap();
    s.feed(out_p, &offer_line("again", "10", b"x"));
    assert_eq!(offers(&s).len(), 6);
}

#[test]
fn names_are_passed_on_as_bytes_and_huge_names_refused() {
    let p = id("peer");
    let (mut s, _inc, out) = online_with(&p);
    // `../` and NUL reach the shell untouched (it sanitises); the core never uses the name.
    s.feed(out, &offer_line("1", "10", b"../../etc/passwd\0.txt"));
    let f = offers(&s)[0];
    assert_eq!(
        s.node.transfer(f).unwrap().name,
        b"../../etc/passwd\0.txt".to_vec()
    );
    // A 200 KB name: refused before anyone sees it.
    let long = vec![b'a'; 200 * 1024];
    s.feed(out, &offer_line("2", "10", &long));
    assert_eq!(offers(&s).len(), 1);
    assert!(s
        .sent_on(out)
        .contains(&Packet::FileStopSending { id: "2".into() }));
}

#[test]
fn sizes_zero_huge_overflowing_and_negative() {
    let p = id("peer");
    let (mut s, _inc, out) = online_with(&p);
    // 0 bytes: a normal offer; accepting completes at once with an empty file.
    s.feed(out, &offer_line("zero", "0", b"empty"));
    let f = offers(&s)[0];
    let now = s.now;
    s.node.accept_file(f, now).unwrap();
    s.drain();
    assert_eq!(state(&s, f), FileState::Complete);
    assert_eq!(s.file_closes, [(f, true)]);
    // 1 TB: over the limit, refused and reported.
    s.feed(out, &offer_line("tera", "1000000000000", b"big"));
    assert!(s.events().iter().any(|e| matches!(
        e,
        Event::FileRefused {
            reason: FileRefusal::TooBig,
            size: 1_000_000_000_000,
            ..
        }
    )));
    assert!(s
        .sent_on(out)
        .contains(&Packet::FileStopSending { id: "tera".into() }));
    // Over u64 and negative: malformed lines, dropped; their data is then for an unknown id.
    let bad = s.node.stats().bad_lines;
    s.feed(out, &offer_line("ovf", "18446744073709551616", b"x"));
    s.feed(out, &offer_line("neg", "-5", b"x"));
    assert_eq!(s.node.stats().bad_lines, bad + 2);
    assert_eq!(offers(&s).len(), 1);
    s.feed(out, &data_line("neg", 0, b"abc", None));
    assert!(s
        .sent_on(out)
        .contains(&Packet::FileStopSending { id: "neg".into() }));
}

fn accepted_offer(size: u64) -> (Script, ConnId, ConnId, FileId) {
    let p = id("peer");
    let (mut s, inc, out) = online_with(&p);
    s.feed(out, &offer_line("t", &size.to_string(), b"f.bin"));
    let f = offers(&s)[0];
    let now = s.now;
    s.node.accept_file(f, now).unwrap();
    s.drain();
    (s, inc, out, f)
}

#[test]
fn blocks_out_of_order_get_one_restart_request_per_burst() {
    let file = content(5 * 8192);
    let (mut s, _inc, out, f) = accepted_offer(file.len() as u64);
    let b = |i: usize| &file[i * 8192..(i + 1) * 8192];
    s.feed(out, &data_line("t", 0, b(0), None));
    // Block 1 is missing: 2, 3, 4 arrive.
    for i in 2..5 {
        s.feed(out, &data_line("t", (i * 8192) as u64, b(i), None));
    }
    let errors: Vec<Packet> = s
        .sent_on(out)
        .into_iter()
        .filter(|p| matches!(p, Packet::FiledataError { .. }))
        .collect();
    assert_eq!(
        errors,
        [Packet::FiledataError {
            id: "t".into(),
            start: 8192
        }]
    );
    // The sender goes back to 8192: everything lands, in order.
    for i in 1..5 {
        s.feed(out, &data_line("t", (i * 8192) as u64, b(i), None));
    }
    assert_eq!(state(&s, f), FileState::Complete);
    assert_eq!(s.sinks[&f], file);
}

#[test]
fn oversize_blocks_and_blocks_past_the_end_fail_the_transfer() {
    for (start, len) in [(0u64, 8193usize), (8192, 8192)] {
        let (mut s, _inc, out, f) = accepted_offer(10_000);
        s.feed(out, &data_line("t", 0, &content(8192), None));
        let start = if start == 0 { 8192 } else { start };
        s.feed(out, &data_line("t", start, &content(len), None));
        assert_eq!(state(&s, f), FileState::Failed(FileFailure::Protocol));
        assert!(s
            .sent_on(out)
            .contains(&Packet::FileStopSending { id: "t".into() }));
        assert_eq!(s.file_closes, [(f, false)]);
        assert_eq!(s.sinks[&f].len(), 8192, "nothing of the bad block written");
    }
}

#[test]
fn bad_md5_asks_for_the_block_again_and_many_fail_the_transfer() {
    let file = content(8192 * 2);
    let (mut s, _inc, out, f) = accepted_offer(file.len() as u64);
    let bad = "00000000000000000000000000000000";
    s.feed(out, &data_line("t", 0, &file[..8192], Some(bad)));
    // Python TorChat means to send this but has a bug; we do send it.
    assert!(s.sent_on(out).contains(&Packet::FiledataError {
        id: "t".into(),
        start: 0
    }));
    assert!(!s.sinks.contains_key(&f));
    s.feed(out, &data_line("t", 0, &file[..8192], None));
    s.feed(out, &data_line("t", 8192, &file[8192..], None));
    assert_eq!(s.sinks[&f], file);
    assert_eq!(state(&s, f), FileState::Complete);
    // A peer that only sends garbage: the transfer fails after the cap.
    let (mut s, _inc, out, f) = accepted_offer(8192);
    for _ in 0..=64 {
        s.feed(out, &data_line("t", 0, &file[..8192], Some(bad)));
    }
    assert_eq!(state(&s, f), FileState::Failed(FileFailure::Protocol));
}

#[test]
fn packets_for_unknown_ids_are_answered_as_python_does() {
    let p = id("peer");
    let (mut s, inc, out) = online_with(&p);
    s.feed(out, &data_line("nope", 0, b"abc", None));
    s.feed(inc, b"filedata_ok nope2 0");
    s.feed(inc, b"filedata_error nope3 0");
    s.feed(inc, b"file_stop_sending nope4");
    s.feed(inc, b"file_stop_receiving nope5");
    assert_eq!(
        s.sent_on(out)
            .into_iter()
            .filter(|p| p.command().starts_with("file"))
            .collect::<Vec<_>>(),
        [
            Packet::FileStopSending { id: "nope".into() },
            Packet::FileStopReceiving { id: "nope2".into() },
            Packet::FileStopReceiving { id: "nope3".into() },
        ]
    );
    assert!(!s.wrote_on(inc));
}

#[test]
fn a_receiver_that_never_acks_makes_the_send_fail_after_the_stall_timeout() {
    let p = id("peer");
    let (mut s, inc, out) = online_with(&p);
    let now = s.now;
    let f = s.node.send_file(&p, b"f".to_vec(), 100_000, now).unwrap();
    s.sources.insert(f, content(100_000));
    s.drain();
    // Its keepalives keep the session up, but no `filedata_ok` ever comes.
    for _ in 0..19 {
        s.advance(Duration::from_secs(30));
        s.feed(inc, b"status available");
    }
    assert_eq!(state(&s, f), FileState::Transferring);
    s.advance(Duration::from_secs(31));
    assert_eq!(state(&s, f), FileState::Failed(FileFailure::Stalled));
    let id = s.node.transfer(f).unwrap().wire_id;
    assert!(s.sent_on(out).contains(&Packet::FileStopReceiving { id }));
}

#[test]
fn a_receiver_that_keeps_asking_for_restarts_is_cut_off() {
    let p = id("peer");
    let (mut s, inc, _out) = online_with(&p);
    let now = s.now;
    let f = s.node.send_file(&p, b"f".to_vec(), 100_000, now).unwrap();
    s.sources.insert(f, content(100_000));
    s.drain();
    let id = s.node.transfer(f).unwrap().wire_id;
    for _ in 0..64 {
        s.feed(inc, format!("filedata_error {id} 0").as_bytes());
    }
    assert_eq!(state(&s, f), FileState::Transferring);
    s.feed(inc, format!("filedata_error {id} 0").as_bytes());
    assert_eq!(state(&s, f), FileState::Failed(FileFailure::Protocol));
    // Misplaced oks (not a block start, never sent) are ignored.
    let before = s.node.file_stats().ignored_packets;
    let f2 = s.node.send_file(&p, b"g".to_vec(), 100_000, now).unwrap();
    s.sources.insert(f2, content(100_000));
    s.drain();
    let id2 = s.node.transfer(f2).unwrap().wire_id;
    s.feed(inc, format!("filedata_ok {id2} 5").as_bytes());
    s.feed(inc, format!("filedata_ok {id2} 99999999").as_bytes());
    assert_eq!(s.node.file_stats().ignored_packets, before + 2);
    assert_eq!(s.node.transfer(f2).unwrap().done, 0);
}

#[test]
fn blocks_before_acceptance_are_dropped_and_acceptance_restarts_at_zero() {
    let p = id("peer");
    let (mut s, _inc, out) = online_with(&p);
    let file = content(8192);
    s.feed(out, &offer_line("t", "8192", b"f"));
    s.feed(out, &data_line("t", 0, &file, None));
    let f = offers(&s)[0];
    assert!(!s.sinks.contains_key(&f));
    assert!(!s
        .sent_on(out)
        .iter()
        .any(|p| matches!(p, Packet::FiledataOk { .. } | Packet::FiledataError { .. })));
    let now = s.now;
    s.node.accept_file(f, now).unwrap();
    s.drain();
    assert!(s.sent_on(out).contains(&Packet::FiledataError {
        id: "t".into(),
        start: 0
    }));
}

#[test]
fn ruby_torchat_gets_no_files_and_no_lines_on_its_connection() {
    let p = id("ruby");
    let mut s = Script::new("us");
    let (inc, out) = common::script::peer_pings(&mut s, &p, "c");
    let cookie = s.our_cookie(out);
    s.feed(inc, &common::script::pong(&cookie));
    s.feed(inc, b"client ruby-torchat");
    s.feed(inc, b"status available");
    let now = s.now;
    s.node.add_buddy(p.clone(), None, now).unwrap();
    s.drain();
    assert_eq!(
        s.node.send_file(&p, b"f".to_vec(), 10, now),
        Err(torchat_core::CommandError::NotSupported)
    );
    // ruby-torchat sends its offer on its own (outgoing) connection: declined on ours.
    s.feed(inc, b"filename 9f2 10 4096 x.txt");
    assert!(s
        .sent_on(out)
        .contains(&Packet::FileStopSending { id: "9f2".into() }));
    assert!(s.events().iter().any(|e| matches!(
        e,
        Event::FileRefused {
            reason: FileRefusal::Unsupported,
            ..
        }
    )));
    assert!(offers(&s).is_empty());
    assert!(!s.wrote_on(inc));
}

#[test]
fn an_offer_to_an_offline_buddy_waits_for_it() {
    let mut s = Script::new("us");
    let p = id("buddy");
    let now = s.now;
    s.node.add_buddy(p.clone(), None, now).unwrap();
    s.drain();
    let f = s.node.send_file(&p, b"f".to_vec(), 10, now).unwrap();
    s.sources.insert(f, content(10));
    s.drain();
    assert_eq!(state(&s, f), FileState::Queued);
    let out = s.connects()[0].0;
    let inc = s.accept();
    s.feed(inc, &common::script::ping(&p, "c"));
    let cookie = s.our_cookie(out);
    s.feed(inc, &common::script::pong(&cookie));
    s.feed(inc, b"status available");
    // Offered on its connection, with the block right after (a legacy receiver).
    let sent: Vec<String> = s.lines_on(inc).iter().map(|l| summary(l)).collect();
    let id = s.node.transfer(f).unwrap().wire_id;
    assert_eq!(
        sent,
        [
            format!("filename {id} 10 8192 f"),
            format!("filedata {id} 0 <10 bytes>")
        ]
    );
}

// ----- two torchat cores -----

fn pair() -> Net {
    let mut a = common::node("alice", 1);
    let mut b = common::node("bob", 2);
    let now = Timestamp::from_millis(T0);
    a.add_buddy(b.own_id().clone(), None, now).unwrap();
    b.add_buddy(a.own_id().clone(), None, now).unwrap();
    a.start(now);
    b.start(now);
    let mut net = Net::new(vec![a, b]);
    net.advance(Duration::from_secs(5));
    assert!(net.online(0, 1) && net.online(1, 0));
    net
}

fn net_offer(net: &Net, i: usize) -> Option<FileId> {
    net.events(i).iter().find_map(|e| match e {
        Event::FileOffer { file, .. } => Some(*file),
        _ => None,
    })
}

#[test]
fn torchat_to_torchat_waits_for_acceptance_then_moves_the_file() {
    let mut net = pair();
    let file = content(1_000_000);
    let (b, now) = (net.id(1), net.now);
    let f = net.peers[0]
        .node
        .send_file(&b, b"big.bin".to_vec(), file.len() as u64, now)
        .unwrap();
    net.peers[0].sources.insert(f, file.clone());
    net.run();
    assert_eq!(
        net.peers[0].node.transfer(f).unwrap().state,
        FileState::Offered
    );
    assert!(net.peers[0].node.transfer(f).unwrap().resumable);
    // No block goes out before the receiver's user says yes.
    assert!(!net.texts(0, 1).iter().any(|l| l.starts_with("filedata ")));
    let g = net_offer(&net, 1).unwrap();
    let now = net.now;
    net.peers[1].node.accept_file(g, now).unwrap();
    net.run();
    assert_eq!(
        net.peers[0].node.transfer(f).unwrap().state,
        FileState::Complete
    );
    assert_eq!(
        net.peers[1].node.transfer(g).unwrap().state,
        FileState::Complete
    );
    assert_eq!(net.peers[1].sinks[&g], file);
    // Progress was reported with a size.
    assert!(net.events(1).iter().any(|e| matches!(
        e,
        Event::FileProgress {
            done: 1_000_000,
            size: 1_000_000,
            ..
        }
    )));
}

#[test]
fn a_disconnect_pauses_and_the_transfer_resumes_where_it_stopped() {
    let mut net = pair();
    let file = content(3_000_000);
    let (b, now) = (net.id(1), net.now);
    let f = net.peers[0]
        .node
        .send_file(&b, b"big.bin".to_vec(), file.len() as u64, now)
        .unwrap();
    net.peers[0].sources.insert(f, file.clone());
    net.run();
    let g = net_offer(&net, 1).unwrap();
    // The link is cut while blocks are moving, after 100 blocks have been stored.
    let now = net.now;
    net.peers[1].node.accept_file(g, now).unwrap();
    net.run_until(|n| {
        n.peers[1]
            .sinks
            .get(&g)
            .is_some_and(|s| s.len() >= 100 * 8192)
    });
    net.cut(0, 1);
    let stored = net.peers[1].sinks[&g].len();
    assert!(stored < file.len());
    assert_eq!(net.peers[1].node.transfer(g).unwrap().done, stored as u64);
    assert_eq!(
        net.peers[0].node.transfer(f).unwrap().state,
        FileState::Paused
    );
    assert_eq!(
        net.peers[1].node.transfer(g).unwrap().state,
        FileState::Paused
    );
    // Reconnect (backoff): the receiver asks for the rest from its offset.
    net.advance(Duration::from_secs(60));
    let resume = format!(
        "filedata_error {} {stored}",
        net.peers[1].node.transfer(g).unwrap().wire_id
    );
    assert!(net.texts(1, 0).contains(&resume), "resumed at {stored}");
    assert!(net.online(0, 1));
    assert_eq!(
        net.peers[1].node.transfer(g).unwrap().state,
        FileState::Complete
    );
    assert_eq!(net.peers[1].sinks[&g], file);
    assert_eq!(
        net.peers[0].node.transfer(f).unwrap().state,
        FileState::Complete
    );
}

#[test]
fn a_partial_transfer_resumes_after_the_receiver_restarts() {
    let mut net = pair();
    let file = content(2_000_000);
    let (a, b, now) = (net.id(0), net.id(1), net.now);
    let f = net.peers[0]
        .node
        .send_file(&b, b"big.bin".to_vec(), file.len() as u64, now)
        .unwrap();
    net.peers[0].sources.insert(f, file.clone());
    net.run();
    let g = net_offer(&net, 1).unwrap();
    let now = net.now;
    net.peers[1].node.accept_file(g, now).unwrap();
    net.run();
    let view = net.peers[1].node.transfer(g).unwrap();
    assert_eq!(view.state, FileState::Complete, "a whole run completes");
    // Now the same, but the receiver dies after 3 blocks were stored: it restarts from its
    // store with what its disk holds.
    let f2 = net.peers[0]
        .node
        .send_file(&b, b"two.bin".to_vec(), file.len() as u64, now)
        .unwrap();
    net.peers[0].sources.insert(f2, file.clone());
    net.run();
    let g2 = net
        .events(1)
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::FileOffer { file, .. } => Some(*file),
            _ => None,
        })
        .unwrap();
    let v = net.peers[1].node.transfer(g2).unwrap();
    let mut bob = common::node("bob", 22);
    bob.add_buddy(a.clone(), None, net.now).unwrap();
    bob.restore_transfer(
        TransferRestore {
            id: g2,
            direction: FileDirection::Receive,
            peer: a,
            wire_id: v.wire_id,
            name: v.name,
            size: v.size,
            done: 3 * 8192,
            accepted: true,
            queued: false,
        },
        net.now,
    );
    net.restart(1, bob);
    net.peers[1].sinks.insert(g2, file[..3 * 8192].to_vec());
    let now = net.now;
    net.peers[1].node.start(now);
    net.advance(Duration::from_secs(60));
    assert_eq!(
        net.peers[1].node.transfer(g2).unwrap().state,
        FileState::Complete
    );
    assert_eq!(net.peers[1].sinks[&g2], file);
    assert_eq!(
        net.peers[0].node.transfer(f2).unwrap().state,
        FileState::Complete
    );
}

#[test]
fn a_legacy_peer_disconnect_fails_the_transfer_cleanly() {
    let p = id("legacy");
    let (mut s, inc, out) = online_with(&p);
    s.feed(out, &offer_line("t", "100000", b"f"));
    let f = offers(&s)[0];
    let now = s.now;
    s.node.accept_file(f, now).unwrap();
    s.feed(out, &data_line("t", 0, &content(8192), None));
    let now = s.now;
    s.node.handle_closed(inc, now);
    s.drain();
    assert_eq!(state(&s, f), FileState::Failed(FileFailure::Disconnected));
    assert_eq!(s.file_closes, [(f, false)]);
    let _ = FileIo::Close {
        file: f,
        complete: false,
    };
}
