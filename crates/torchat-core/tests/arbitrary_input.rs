//! Arbitrary sequences of network and user inputs never panic, never grow state without bound,
//! and never authenticate a connection without a valid pong.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use rand_core::SeedableRng;
use torchat_core::{Config, ConnId, Node, Output, Timestamp};
use torchat_wire::{OnionId, Packet};

static AUTHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

const IDS: [&str; 5] = [
    "peeraaaaaaaaaaaa",
    "peerbbbbbbbbbbbb",
    "peercccccccccccc",
    "peerdddddddddddd",
    "meeeeeeeeeeeeeee",
];

fn gid() -> torchat_wire::GroupId {
    torchat_wire::GroupId::new("6f012391-883d-4f4f-8d54-52c4227b3ac9").unwrap()
}

#[derive(Debug, Clone)]
enum Line {
    Ping(usize, u8),
    PongReal(usize),
    PongFake(Vec<u8>),
    Text(&'static str),
    Raw(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Op {
    Accept,
    Connected(usize),
    Closed(usize),
    Feed(usize, Line),
    FeedSplit(usize, Line, usize),
    Advance(u64),
    Add(usize),
    Remove(usize),
    Block(usize),
    Send(usize),
    GroupAccept,
    GroupSay,
    GroupInvite(usize),
    SendFile(usize),
    /// Accept every offer (true) or cancel every transfer (false).
    Files(bool),
    /// Accept, ping as IDS[i], let our connect-back succeed, pong with the real cookie.
    Handshake(usize),
}

fn line() -> impl Strategy<Value = Line> {
    prop_oneof![
        (0..IDS.len(), any::<u8>()).prop_map(|(i, c)| Line::Ping(i, c % 3)),
        (0..IDS.len()).prop_map(Line::PongReal),
        proptest::collection::vec(any::<u8>(), 1..70).prop_map(Line::PongFake),
        prop_oneof![
            Just("status available"),
            Just("status xa"),
            Just("message hello"),
            Just("add_me"),
            Just("remove_me "),
            Just("client x"),
            Just("supports groupchat"),
            Just("frobnicate"),
            Just("not_implemented"),
            Just("filename 1 2 3 x"),
            Just("filename 2 100000 8192 ../y\0z"),
            Just("filename 3 0 8192 empty"),
            // md5("x")
            Just("filedata 2 0 9dd4e461268c8034f5c8564e155c67a6 x"),
            Just("filedata 2 8192 9dd4e461268c8034f5c8564e155c67a6 x"),
            Just("filedata 9 0 00000000000000000000000000000000 x"),
            Just("filedata_ok 1 0"),
            Just("filedata_ok 1 8192"),
            Just("filedata_error 1 0"),
            Just("file_stop_sending 1"),
            Just("file_stop_receiving 2"),
            Just("disconnect"),
            Just("groupchat_invite 6f012391-883d-4f4f-8d54-52c4227b3ac9"),
            Just("groupchat_participants 6f012391-883d-4f4f-8d54-52c4227b3ac9 peerbbbbbbbbbbbb peercccccccccccc"),
            Just("groupchat_participants 6f012391-883d-4f4f-8d54-52c4227b3ac9"),
            Just("groupchat_message 6f012391-883d-4f4f-8d54-52c4227b3ac9 hi"),
            Just("groupchat_echoed_message 6f012391-883d-4f4f-8d54-52c4227b3ac9 peerbbbbbbbbbbbb hi"),
            Just("groupchat_join 6f012391-883d-4f4f-8d54-52c4227b3ac9"),
            Just("groupchat_invited 6f012391-883d-4f4f-8d54-52c4227b3ac9 peerdddddddddddd"),
            Just("groupchat_leave 6f012391-883d-4f4f-8d54-52c4227b3ac9 bye"),
            Just("groupchat_is_participating 6f012391-883d-4f4f-8d54-52c4227b3ac9"),
            Just("groupchat_participating 6f012391-883d-4f4f-8d54-52c4227b3ac9"),
            Just("not_implemented groupchat_is_participating"),
        ]
        .prop_map(Line::Text),
        // Extension torchat_sync.
        prop_oneof![
            Just("supports groupchat torchat_signed torchat_sync"),
            Just("groupchat_sync_message 6f012391-883d-4f4f-8d54-52c4227b3ac9 00000000 peerbbbbbbbbbbbb 1 1700000000000 - hi"),
            Just("groupchat_sync_message 6f012391-883d-4f4f-8d54-52c4227b3ac9 00000000 peercccccccccccc 99999 1 - far ahead"),
            Just("groupchat_sync_ack 6f012391 7,9-12"),
            Just("groupchat_sync_ack 6f012391-883d-4f4f-8d54-52c4227b3ac9 18446744073709551615"),
            Just("groupchat_sync_digest 6f012391 00000000 0:5 1:3,7 peercccccccccccc:2"),
            Just("groupchat_sync_digest 6f012391 00000000 peerbbbbbbbbbbbb:18446744073709551614"),
            Just("groupchat_sync_want 6f012391-883d-4f4f-8d54-52c4227b3ac9 peerbbbbbbbbbbbb 1 1000000"),
            Just("groupchat_sync_end 6f012391-883d-4f4f-8d54-52c4227b3ac9 peerbbbbbbbbbbbb 1 100"),
            Just("groupchat_sync_tell 6f012391-883d-4f4f-8d54-52c4227b3ac9 peercccccccccccc peerdddddddddddd"),
            Just("sync_message 000102030405060708090a0b0c0d0e0f 1700000000000 hi"),
            Just("sync_ack 000102030405060708090a0b0c0d0e0f"),
        ]
        .prop_map(Line::Text),
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(Line::Raw),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Accept),
        3 => (0..16usize).prop_map(Op::Connected),
        1 => (0..16usize).prop_map(Op::Closed),
        10 => (0..16usize, line()).prop_map(|(c, l)| Op::Feed(c, l)),
        2 => (0..16usize, line(), 0..40usize).prop_map(|(c, l, s)| Op::FeedSplit(c, l, s)),
        2 => (0..400u64).prop_map(Op::Advance),
        1 => (0..IDS.len()).prop_map(Op::Add),
        1 => (0..IDS.len()).prop_map(Op::Remove),
        1 => (0..IDS.len()).prop_map(Op::Block),
        1 => (0..IDS.len()).prop_map(Op::Send),
        2 => (0..IDS.len()).prop_map(Op::Handshake),
        1 => Just(Op::GroupAccept),
        1 => Just(Op::GroupSay),
        1 => (0..IDS.len()).prop_map(Op::GroupInvite),
        1 => (0..IDS.len()).prop_map(Op::SendFile),
        1 => any::<bool>().prop_map(Op::Files),
    ]
}

struct World {
    node: Node,
    now: Timestamp,
    conns: Vec<ConnId>,
    pending: Vec<ConnId>,
    /// Cookies the node sent in pings, per destination id.
    cookies: BTreeMap<OnionId, BTreeSet<Vec<u8>>>,
    /// Outgoing connection -> destination.
    out_to: BTreeMap<ConnId, OnionId>,
    /// First id pinged on each connection we fed.
    pinged: BTreeMap<ConnId, OnionId>,
    /// Cookies fed in pongs per connection.
    ponged: BTreeMap<ConnId, BTreeSet<Vec<u8>>>,
    outputs: usize,
}

impl World {
    fn drain(&mut self) {
        while let Some(o) = self.node.poll_output() {
            self.outputs += 1;
            match o {
                Output::Connect { conn, to } => {
                    self.pending.push(conn);
                    self.out_to.insert(conn, to);
                }
                Output::Transmit { conn, data } => {
                    for l in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        if let Ok(Packet::Ping { cookie, .. }) = Packet::decode(l) {
                            let to = self
                                .out_to
                                .get(&conn)
                                .expect("pings only on outgoing")
                                .clone();
                            self.cookies.entry(to).or_default().insert(cookie);
                        }
                    }
                }
                Output::Close { conn } => self.conns.retain(|c| *c != conn),
                Output::Load(r) => {
                    let now = self.now;
                    self.node.handle_loaded(r.token, vec![], now);
                }
                Output::File(torchat_core::FileIo::Read { file, offset, len }) => {
                    let now = self.now;
                    self.node.file_read(file, offset, vec![b'x'; len], now);
                }
                _ => {}
            }
        }
    }

    fn encode(&self, l: &Line) -> Vec<u8> {
        match l {
            Line::Ping(i, c) => format!("ping {} cookie{c}", IDS[*i]).into_bytes(),
            Line::PongReal(i) => {
                let id = OnionId::parse(IDS[*i]).unwrap();
                let c = self
                    .cookies
                    .get(&id)
                    .and_then(|s| s.iter().next().cloned())
                    .unwrap_or_default();
                [b"pong ".to_vec(), c].concat()
            }
            Line::PongFake(b) => [b"pong ".to_vec(), b.clone()].concat(),
            Line::Text(t) => t.as_bytes().to_vec(),
            Line::Raw(b) => b.clone(),
        }
    }

    fn note_fed(&mut self, conn: ConnId, line: &[u8]) {
        match Packet::decode(line) {
            Ok(Packet::Ping { from, .. }) => {
                self.pinged.entry(conn).or_insert(from);
            }
            Ok(Packet::Pong { cookie }) => {
                self.ponged.entry(conn).or_default().insert(cookie);
            }
            _ => {}
        }
    }

    fn apply(&mut self, op: Op) {
        let now = self.now;
        let pick = |v: &Vec<ConnId>, i: usize| (!v.is_empty()).then(|| v[i % v.len()]);
        match op {
            Op::Accept => {
                if let Some(c) = self.node.accept(now) {
                    self.conns.push(c);
                }
            }
            Op::Connected(i) => {
                if let Some(c) = pick(&self.pending, i) {
                    self.pending.retain(|x| *x != c);
                    self.conns.push(c);
                    self.node.handle_connected(c, now);
                }
            }
            Op::Closed(i) => {
                let all: Vec<ConnId> = self.conns.iter().chain(&self.pending).copied().collect();
                if let Some(c) = pick(&all, i) {
                    self.conns.retain(|x| *x != c);
                    self.pending.retain(|x| *x != c);
                    self.node.handle_closed(c, now);
                }
            }
            Op::Feed(i, l) | Op::FeedSplit(i, l, _) if self.conns.is_empty() => {
                let _ = (i, l);
            }
            Op::Feed(i, l) => {
                let c = pick(&self.conns, i).unwrap();
                let mut data = self.encode(&l);
                self.note_fed(c, &data);
                data.push(b'\n');
                self.node.handle_data(c, &data, now);
            }
            Op::FeedSplit(i, l, at) => {
                let c = pick(&self.conns, i).unwrap();
                let mut data = self.encode(&l);
                self.note_fed(c, &data);
                data.push(b'\n');
                let at = at.min(data.len());
                self.node.handle_data(c, &data[..at], now);
                self.drain();
                self.node.handle_data(c, &data[at..], now);
            }
            Op::Advance(s) => {
                let end = self.now + Duration::from_secs(s);
                while let Some(t) = self.node.poll_timeout().filter(|t| *t <= end) {
                    self.now = self.now.max(t);
                    let n = self.now;
                    self.node.handle_timeout(n);
                    self.drain();
                }
                self.now = end;
            }
            Op::GroupAccept => {
                let _ = self.node.group_accept(&gid(), now);
            }
            Op::GroupSay => {
                let _ = self.node.group_say(&gid(), b"x".to_vec(), now);
            }
            Op::GroupInvite(i) => {
                let _ = self
                    .node
                    .group_invite(&gid(), &OnionId::parse(IDS[i]).unwrap(), now);
            }
            Op::Handshake(i) => {
                let Some(c) = self.node.accept(now) else {
                    return;
                };
                self.conns.push(c);
                self.apply(Op::Feed(self.conns.len() - 1, Line::Ping(i, 0)));
                let pending = self.pending.clone();
                for p in pending {
                    self.apply(Op::Connected(
                        self.pending.iter().position(|x| *x == p).unwrap_or(0),
                    ));
                }
                let idx = self.conns.iter().position(|x| *x == c);
                if let Some(idx) = idx {
                    self.apply(Op::Feed(idx, Line::PongReal(i)));
                    self.apply(Op::Feed(idx, Line::Text("status available")));
                }
            }
            Op::Add(i) => {
                let _ = self
                    .node
                    .add_buddy(OnionId::parse(IDS[i]).unwrap(), None, now);
            }
            Op::Remove(i) => {
                let _ = self
                    .node
                    .remove_buddy(&OnionId::parse(IDS[i]).unwrap(), now);
            }
            Op::Block(i) => {
                let _ = self.node.block(OnionId::parse(IDS[i]).unwrap(), now);
            }
            Op::SendFile(i) => {
                let to = OnionId::parse(IDS[i]).unwrap();
                let _ = self.node.send_file(&to, b"f".to_vec(), 50_000, now);
            }
            Op::Files(accept) => {
                for t in self.node.transfers() {
                    let _ = if accept {
                        self.node.accept_file(t.id, now)
                    } else {
                        self.node.cancel_file(t.id, now)
                    };
                }
            }
            Op::Send(i) => {
                let _ =
                    self.node
                        .send_message(&OnionId::parse(IDS[i]).unwrap(), b"x".to_vec(), now);
            }
        }
        self.drain();
    }

    fn check(&self) {
        let cfg = self.node.config();
        assert!(self.node.connection_count() <= cfg.max_connections);
        let ts = self.node.transfers();
        assert!(ts.iter().filter(|t| !t.state.is_final()).count() <= cfg.files.max_transfers);
        assert!(ts.len() <= cfg.files.max_transfers + cfg.files.max_finished);
        for t in &ts {
            assert!(t.done <= t.size, "{t:?}");
        }
        assert!(self.node.buddies().len() <= IDS.len());
        assert!(self.node.groups().len() <= cfg.max_groups);
        assert!(self.node.outbox_len() <= IDS.len() * cfg.max_outbox_per_member);
        for b in self.node.buddies() {
            if let Some(inc) = b.incoming {
                // Authenticated: that connection pinged with this id and carried a pong with
                // a cookie we sent to this id.
                AUTHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                assert_eq!(
                    self.pinged.get(&inc),
                    Some(&b.id),
                    "authenticated without its ping"
                );
                let sent = self.cookies.get(&b.id).cloned().unwrap_or_default();
                let fed = self.ponged.get(&inc).cloned().unwrap_or_default();
                assert!(
                    sent.intersection(&fed).next().is_some(),
                    "authenticated without a valid pong"
                );
            }
        }
    }
}

/// The checker is not vacuous: a plain handshake does reach an authenticated state.
#[test]
fn checker_sees_authenticated_sessions() {
    let before = AUTHED.load(std::sync::atomic::Ordering::Relaxed);
    let mut w = world(Config::new(OnionId::parse(IDS[4]).unwrap()), 1);
    w.apply(Op::Handshake(0));
    w.check();
    let b = w.node.buddy(&OnionId::parse(IDS[0]).unwrap()).unwrap();
    assert!(b.incoming.is_some() && matches!(b.presence, torchat_core::Presence::Online(_)));
    assert!(AUTHED.load(std::sync::atomic::Ordering::Relaxed) > before);
}

fn world(cfg: Config, seed: u64) -> World {
    let node = Node::new(cfg, Box::new(rand_chacha::ChaCha20Rng::seed_from_u64(seed)));
    let mut w = World {
        node,
        now: Timestamp::from_millis(common::T0),
        conns: vec![],
        pending: vec![],
        cookies: BTreeMap::new(),
        out_to: BTreeMap::new(),
        pinged: BTreeMap::new(),
        ponged: BTreeMap::new(),
        outputs: 0,
    };
    w.node.start(w.now);
    w.drain();
    w
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_inputs_are_safe(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..120)) {
        let me = OnionId::parse(IDS[4]).unwrap();
        let mut cfg = Config::new(me);
        cfg.max_line = 512;
        cfg.max_unauthenticated = 6;
        cfg.max_temporary_buddies = 3;
        cfg.max_connections = 12;
        let mut w = world(cfg, seed);
        for op in ops {
            w.apply(op);
            w.check();
        }
        // Outputs per input stay proportional to the input (no runaway loops).
        prop_assert!(w.outputs < 100_000);
    }
}
