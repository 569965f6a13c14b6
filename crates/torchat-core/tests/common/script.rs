//! A scripted peer harness: our node driven line by line, every output logged.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use std::collections::BTreeMap;

use torchat_core::{ConnId, Event, FileId, FileIo, Node, Output, Presence, Timestamp};
use torchat_wire::{OnionId, Packet};

use super::{node, T0};

/// Our node plus a log of everything it did, driven line by line.
pub struct Script {
    pub node: Node,
    pub now: Timestamp,
    pub log: Vec<Output>,
    /// Files we send, by transfer: reads are answered from here at once.
    pub sources: BTreeMap<FileId, Vec<u8>>,
    /// Files we receive, by transfer: writes land here (and must come in order).
    pub sinks: BTreeMap<FileId, Vec<u8>>,
    /// `FileIo::Close` seen: (transfer, complete).
    pub file_closes: Vec<(FileId, bool)>,
}

impl Script {
    pub fn new(name: &str) -> Self {
        let mut node = node(name, 42);
        node.start(Timestamp::from_millis(T0));
        Self::with_node(node)
    }

    pub fn with_node(node: Node) -> Self {
        Script {
            node,
            now: Timestamp::from_millis(T0),
            log: vec![],
            sources: BTreeMap::new(),
            sinks: BTreeMap::new(),
            file_closes: vec![],
        }
    }

    pub fn drain(&mut self) {
        while let Some(o) = self.node.poll_output() {
            // Outgoing connections succeed at once.
            if let Output::Connect { conn, .. } = &o {
                let (c, now) = (*conn, self.now);
                self.log.push(o);
                self.node.handle_connected(c, now);
                continue;
            }
            if let Output::File(io) = &o {
                self.file_io(io.clone());
            }
            self.log.push(o);
        }
    }

    fn file_io(&mut self, io: FileIo) {
        let now = self.now;
        match io {
            FileIo::Read { file, offset, len } => {
                if let Some(src) = self.sources.get(&file) {
                    let o = offset as usize;
                    let data = src[o..(o + len).min(src.len())].to_vec();
                    self.node.file_read(file, offset, data, now);
                }
            }
            FileIo::Write { file, offset, data } => {
                let sink = self.sinks.entry(file).or_default();
                assert_eq!(sink.len() as u64, offset, "blocks are written in order");
                sink.extend_from_slice(&data);
            }
            FileIo::Close { file, complete } => self.file_closes.push((file, complete)),
        }
    }

    /// Lines written on a connection, raw (without their LF), in order.
    pub fn lines_on(&self, conn: ConnId) -> Vec<Vec<u8>> {
        let mut out = vec![];
        for o in &self.log {
            if let Output::Transmit { conn: c, data } = o {
                if *c == conn {
                    out.extend(
                        data.split(|&b| b == b'\n')
                            .filter(|l| !l.is_empty())
                            .map(<[u8]>::to_vec),
                    );
                }
            }
        }
        out
    }

    pub fn accept(&mut self) -> ConnId {
        let c = self.node.accept(self.now).unwrap();
        self.drain();
        c
    }

    pub fn feed(&mut self, conn: ConnId, line: &[u8]) {
        let mut data = line.to_vec();
        data.push(b'\n');
        let now = self.now;
        self.node.handle_data(conn, &data, now);
        self.drain();
    }

    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.node.poll_timeout().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            let now = self.now;
            self.node.handle_timeout(now);
            self.drain();
        }
        self.now = end;
    }

    /// Outgoing connections opened, in order, with their destination.
    pub fn connects(&self) -> Vec<(ConnId, OnionId)> {
        self.log
            .iter()
            .filter_map(|o| match o {
                Output::Connect { conn, to } => Some((*conn, to.clone())),
                _ => None,
            })
            .collect()
    }

    /// Packets written on a connection.
    pub fn sent_on(&self, conn: ConnId) -> Vec<Packet> {
        let mut out = vec![];
        for o in &self.log {
            if let Output::Transmit { conn: c, data } = o {
                if *c == conn {
                    for l in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        out.push(Packet::decode(l).unwrap());
                    }
                }
            }
        }
        out
    }

    pub fn wrote_on(&self, conn: ConnId) -> bool {
        self.log
            .iter()
            .any(|o| matches!(o, Output::Transmit { conn: c, .. } if *c == conn))
    }

    pub fn closed(&self, conn: ConnId) -> bool {
        self.log
            .iter()
            .any(|o| matches!(o, Output::Close { conn: c } if *c == conn))
    }

    pub fn our_cookie(&self, out: ConnId) -> Vec<u8> {
        match &self.sent_on(out)[0] {
            Packet::Ping { cookie, .. } => cookie.clone(),
            p => panic!("first line was {p:?}"),
        }
    }

    pub fn presence(&self, who: &OnionId) -> Presence {
        self.node
            .buddy(who)
            .map(|b| b.presence)
            .unwrap_or(Presence::Offline)
    }

    pub fn events(&self) -> Vec<&Event> {
        self.log
            .iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }
}

pub fn ping(from: &OnionId, cookie: &str) -> Vec<u8> {
    format!("ping {from} {cookie}").into_bytes()
}

pub fn pong(cookie: &[u8]) -> Vec<u8> {
    let mut l = b"pong ".to_vec();
    l.extend_from_slice(cookie);
    l
}

/// A peer `p` opens a connection to us and pings; we connect back and answer.
pub fn peer_pings(s: &mut Script, p: &OnionId, cookie: &str) -> (ConnId, ConnId) {
    let inc = s.accept();
    s.feed(inc, &ping(p, cookie));
    let (out, to) = s.connects().last().cloned().unwrap();
    assert_eq!(&to, p);
    (inc, out)
}

/// A full session with a scripted peer: it pings, we connect back, it pongs and sends status.
pub fn session(s: &mut Script, p: &OnionId) -> (ConnId, ConnId) {
    let (inc, out) = peer_pings(s, p, "cookie");
    let cookie = s.our_cookie(out);
    s.feed(inc, &pong(&cookie));
    s.feed(inc, b"status available");
    assert!(matches!(s.presence(p), Presence::Online(_)));
    (inc, out)
}
