//! A tiny virtual network for scenario tests: several cores wired back to back, instant
//! delivery, a virtual clock, links that can be cut (silently or with a close).
#![allow(dead_code, clippy::unwrap_used)]

pub mod drive;
pub mod legacy;
pub mod script;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use rand_core::SeedableRng;
use torchat_core::{
    Config, ConnId, Event, FileId, FileIo, Node, Output, Record, SyncCopy, Timestamp,
};
use torchat_wire::{OnionId, Packet};

pub const T0: u64 = 1_700_000_000_000;

/// The stored sync copies a load asks for, from a node's records (as a store would have them).
pub fn stored_copies(records: &[Record], req: &torchat_core::LoadRequest) -> Vec<SyncCopy> {
    let mut meta = BTreeMap::new();
    for r in records {
        match r {
            Record::GroupMessage {
                id, sync: Some(m), ..
            }
            | Record::GroupMessageSync { id, sync: m } => {
                meta.insert(*id, *m);
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for r in records {
        if let Record::GroupMessage {
            gid,
            id,
            sender,
            text,
            ..
        } = r
        {
            let Some(m) = meta.get(id) else { continue };
            if *gid == req.gid && *sender == req.speaker && (req.from..=req.to).contains(&m.seq) {
                out.insert(
                    m.seq,
                    SyncCopy {
                        speaker: sender.clone(),
                        meta: *m,
                        text: text.clone(),
                    },
                );
            }
        }
    }
    out.into_values().collect()
}

pub fn id(s: &str) -> OnionId {
    // Pad short names to legacy 16-char ids: "alice" -> "aliceaaaaaaaaaaa".
    let mut s = s.to_owned();
    while s.len() < 16 {
        s.push('a');
    }
    OnionId::parse(&s).unwrap()
}

pub fn node(name: &str, seed: u64) -> Node {
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut cfg = Config::new(id(name));
    cfg.profile_name = name.as_bytes().to_vec();
    Node::new(cfg, Box::new(rng))
}

/// A node that speaks only the seed's group chat (no `torchat_sync`), as ruby-torchat or
/// another implementation of the documents would.
pub fn seed_node(name: &str, seed: u64) -> Node {
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut cfg = Config::new(id(name));
    cfg.profile_name = name.as_bytes().to_vec();
    cfg.sync = false;
    Node::new(cfg, Box::new(rng))
}

/// One line written by a node on a connection.
#[derive(Debug, Clone)]
pub struct Wire {
    pub at: Timestamp,
    pub from: usize,
    /// Incarnation of `from` (bumped by `restart`); connection ids restart with the node.
    pub gen: u32,
    pub conn: ConnId,
    /// Whether `conn` is an outgoing connection of `from`.
    pub outgoing: bool,
    pub line: Vec<u8>,
}

impl Wire {
    pub fn packet(&self) -> Packet {
        Packet::decode(&self.line).unwrap()
    }
}

pub struct Peer {
    pub node: Node,
    pub events: Vec<Event>,
    pub records: Vec<Record>,
    /// Our conns that are outgoing.
    pub outgoing: BTreeSet<ConnId>,
    /// Files this node sends (reads are answered from here at once).
    pub sources: BTreeMap<FileId, Vec<u8>>,
    /// Files this node receives (writes land here, in order).
    pub sinks: BTreeMap<FileId, Vec<u8>>,
    /// `FileIo::Close` seen: (transfer, complete).
    pub file_closes: Vec<(FileId, bool)>,
}

impl Peer {
    pub fn new(node: Node) -> Self {
        Peer {
            node,
            events: vec![],
            records: vec![],
            outgoing: BTreeSet::new(),
            sources: BTreeMap::new(),
            sinks: BTreeMap::new(),
            file_closes: vec![],
        }
    }
}

enum Msg {
    Data {
        to: usize,
        conn: ConnId,
        data: Vec<u8>,
    },
    Closed {
        to: usize,
        conn: ConnId,
    },
    Connected {
        to: usize,
        conn: ConnId,
    },
    Failed {
        to: usize,
        conn: ConnId,
        why: torchat_core::ConnectError,
    },
}

pub struct Net {
    pub now: Timestamp,
    pub peers: Vec<Peer>,
    /// (node, conn) -> (node, conn) of the other end.
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    queue: VecDeque<Msg>,
    /// Pairs of nodes that cannot connect (connects fail).
    pub down: BTreeSet<(usize, usize)>,
    /// Pairs whose traffic silently vanishes (no close), e.g. a dead Tor circuit.
    pub blackhole: BTreeSet<(usize, usize)>,
    /// (from, to): connects from `from` to `to` are refused while present (`to` is not
    /// listening, e.g. its program is restarting).
    pub refuse: BTreeSet<(usize, usize)>,
    /// (from, to): the next connect from `from` to `to` is refused, once.
    pub refuse_once: BTreeSet<(usize, usize)>,
    pub wire: Vec<Wire>,
    /// (node, conn) -> the node at the other end, kept after the connection is gone.
    conn_target: BTreeMap<(usize, u32, ConnId), usize>,
    gens: Vec<u32>,
    /// Nodes that play a member implementing only PROTOCOL §3 (like ruby-torchat): they
    /// announce `supports groupchat`, never echo, answer echoes and our extensions' packets
    /// with `not_implemented <command>`.
    pub legacy: BTreeSet<usize>,
}

/// Commands a §3-only member does not know.
const NOT_IN_SECTION_3: &[&str] = &[
    "groupchat_echoed_message",
    "groupchat_signed_message",
    "groupchat_signed_echo",
    "groupchat_sync_message",
    "groupchat_sync_ack",
    "groupchat_sync_digest",
    "groupchat_sync_want",
    "groupchat_sync_end",
    "groupchat_sync_tell",
    "sync_message",
    "sync_ack",
];

impl Net {
    pub fn new(nodes: Vec<Node>) -> Self {
        let peers: Vec<Peer> = nodes.into_iter().map(Peer::new).collect();
        let n = peers.len();
        Net {
            gens: vec![0; n],
            now: Timestamp::from_millis(T0),
            peers,
            links: BTreeMap::new(),
            queue: VecDeque::new(),
            down: BTreeSet::new(),
            blackhole: BTreeSet::new(),
            refuse: BTreeSet::new(),
            refuse_once: BTreeSet::new(),
            wire: vec![],
            conn_target: BTreeMap::new(),
            legacy: BTreeSet::new(),
        }
    }

    pub fn id(&self, i: usize) -> OnionId {
        self.peers[i].node.own_id().clone()
    }

    fn index_of(&self, id: &OnionId) -> Option<usize> {
        self.peers.iter().position(|p| p.node.own_id() == id)
    }

    fn pair(a: usize, b: usize) -> (usize, usize) {
        (a.min(b), a.max(b))
    }

    pub fn set_down(&mut self, a: usize, b: usize, down: bool) {
        if down {
            self.down.insert(Self::pair(a, b));
        } else {
            self.down.remove(&Self::pair(a, b));
        }
    }

    /// Cuts every open connection between a and b (both ends see a close).
    pub fn cut(&mut self, a: usize, b: usize) {
        let victims: Vec<_> = self
            .links
            .iter()
            .filter(|((n, _), (m, _))| (*n == a && *m == b) || (*n == b && *m == a))
            .map(|(k, v)| (*k, *v))
            .collect();
        for (k, v) in victims {
            self.links.remove(&k);
            self.links.remove(&v);
            self.queue.push_back(Msg::Closed { to: k.0, conn: k.1 });
            self.queue.push_back(Msg::Closed { to: v.0, conn: v.1 });
        }
        self.run();
    }

    /// Replaces node `i` by a fresh incarnation (a restart): its connections drop first.
    pub fn restart(&mut self, i: usize, node: Node) {
        for j in 0..self.peers.len() {
            if j != i {
                self.cut(i, j);
            }
        }
        self.gens[i] += 1;
        self.peers[i] = Peer::new(node);
    }

    /// Call after pushing a new peer onto `peers`.
    pub fn grow(&mut self) {
        self.gens.resize(self.peers.len(), 0);
    }

    /// Writes a raw line from node `from` to node `to` on `from`'s outgoing connection to it
    /// (a dishonest node saying something its core never said).
    pub fn inject(&mut self, from: usize, to: usize, line: &[u8]) {
        let conn = self
            .links
            .keys()
            .filter(|(i, c)| *i == from && self.peers[from].outgoing.contains(c))
            .find(|(i, c)| self.links.get(&(*i, *c)).is_some_and(|(j, _)| *j == to))
            .map(|(_, c)| *c)
            .expect("an open outgoing connection");
        let mut data = line.to_vec();
        data.push(b'\n');
        let &(j, jc) = self.links.get(&(from, conn)).unwrap();
        self.queue.push_back(Msg::Data {
            to: j,
            conn: jc,
            data,
        });
        self.run();
    }

    /// Drains every node's outputs and delivers messages until nothing moves.
    pub fn run(&mut self) {
        for _ in 0..100_000 {
            let mut progressed = false;
            for i in 0..self.peers.len() {
                while let Some(o) = self.peers[i].node.poll_output() {
                    progressed = true;
                    self.output(i, o);
                }
            }
            if let Some(m) = self.queue.pop_front() {
                progressed = true;
                self.deliver(m);
            }
            if !progressed {
                return;
            }
        }
        panic!("livelock: the network never went quiet");
    }

    /// Like `run`, but stops as soon as `stop` holds (checked after every delivery).
    pub fn run_until(&mut self, mut stop: impl FnMut(&Net) -> bool) {
        for _ in 0..1_000_000 {
            for i in 0..self.peers.len() {
                while let Some(o) = self.peers[i].node.poll_output() {
                    self.output(i, o);
                }
            }
            if stop(self) {
                return;
            }
            match self.queue.pop_front() {
                Some(m) => self.deliver(m),
                None => return,
            }
        }
        panic!("livelock: the network never went quiet");
    }

    fn output(&mut self, i: usize, o: Output) {
        match o {
            Output::Connect { conn, to } => {
                self.peers[i].outgoing.insert(conn);
                let target = self.index_of(&to);
                if let Some(j) = target {
                    self.conn_target.insert((i, self.gens[i], conn), j);
                }
                let refused = target.is_some_and(|j| {
                    self.refuse.contains(&(i, j)) || self.refuse_once.remove(&(i, j))
                });
                match target {
                    Some(_) if refused => self.queue.push_back(Msg::Failed {
                        to: i,
                        conn,
                        why: torchat_core::ConnectError::Refused,
                    }),
                    Some(j) if !self.down.contains(&Self::pair(i, j)) => {
                        let now = self.now;
                        match self.peers[j].node.accept(now) {
                            Some(jc) => {
                                self.conn_target.insert((j, self.gens[j], jc), i);
                                self.links.insert((i, conn), (j, jc));
                                self.links.insert((j, jc), (i, conn));
                                self.queue.push_back(Msg::Connected { to: i, conn });
                            }
                            None => self.queue.push_back(Msg::Closed { to: i, conn }),
                        }
                    }
                    _ => self.queue.push_back(Msg::Failed {
                        to: i,
                        conn,
                        why: torchat_core::ConnectError::Unreachable,
                    }),
                }
            }
            Output::Transmit { conn, data } => {
                let data = if self.legacy.contains(&i) {
                    legacy_out(&data)
                } else {
                    data
                };
                if data.is_empty() {
                    return;
                }
                let outgoing = self.peers[i].outgoing.contains(&conn);
                for line in data.split_inclusive(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\n").unwrap_or(line).to_vec();
                    let gen = self.gens[i];
                    self.wire.push(Wire {
                        at: self.now,
                        from: i,
                        gen,
                        conn,
                        outgoing,
                        line,
                    });
                }
                if let Some(&(j, jc)) = self.links.get(&(i, conn)) {
                    if !self.blackhole.contains(&Self::pair(i, j)) {
                        self.queue.push_back(Msg::Data {
                            to: j,
                            conn: jc,
                            data,
                        });
                    }
                }
            }
            Output::Close { conn } => {
                if let Some((j, jc)) = self.links.remove(&(i, conn)) {
                    self.links.remove(&(j, jc));
                    self.queue.push_back(Msg::Closed { to: j, conn: jc });
                }
            }
            Output::Event(e) => self.peers[i].events.push(e),
            Output::Persist(r) => self.peers[i].records.push(r),
            Output::Load(req) => {
                let copies = stored_copies(&self.peers[i].records, &req);
                let now = self.now;
                self.peers[i].node.handle_loaded(req.token, copies, now);
            }
            Output::File(io) => self.file_io(i, io),
        }
    }

    fn file_io(&mut self, i: usize, io: FileIo) {
        let now = self.now;
        let p = &mut self.peers[i];
        match io {
            FileIo::Read { file, offset, len } => {
                if let Some(src) = p.sources.get(&file) {
                    let o = offset as usize;
                    let data = src[o..(o + len).min(src.len())].to_vec();
                    p.node.file_read(file, offset, data, now);
                }
            }
            FileIo::Write { file, offset, data } => {
                let sink = p.sinks.entry(file).or_default();
                assert_eq!(sink.len() as u64, offset, "blocks are written in order");
                sink.extend_from_slice(&data);
            }
            FileIo::Close { file, complete } => p.file_closes.push((file, complete)),
        }
    }

    fn deliver(&mut self, m: Msg) {
        let now = self.now;
        match m {
            Msg::Data { to, conn, data } if self.legacy.contains(&to) => {
                let mut keep = Vec::new();
                for line in data.split_inclusive(|&b| b == b'\n') {
                    let cmd = line
                        .split(|&b| b == b' ' || b == b'\n')
                        .next()
                        .unwrap_or(&[]);
                    match NOT_IN_SECTION_3.iter().find(|c| c.as_bytes() == cmd) {
                        Some(c) => self.answer_not_implemented(to, conn, c),
                        None => keep.extend_from_slice(line),
                    }
                }
                if !keep.is_empty() {
                    self.peers[to].node.handle_data(conn, &keep, now);
                }
            }
            Msg::Data { to, conn, data } => self.peers[to].node.handle_data(conn, &data, now),
            Msg::Closed { to, conn } => self.peers[to].node.handle_closed(conn, now),
            Msg::Connected { to, conn } => self.peers[to].node.handle_connected(conn, now),
            Msg::Failed { to, conn, why } => {
                self.peers[to].node.handle_connect_failed(conn, why, now)
            }
        }
    }

    /// A §3-only node answers an unknown command on its own outgoing connection to the sender.
    fn answer_not_implemented(&mut self, legacy: usize, conn: ConnId, cmd: &str) {
        let Some(&(sender, _)) = self.links.get(&(legacy, conn)) else {
            return;
        };
        let out = self
            .links
            .iter()
            .find(|((n, c), (m, _))| {
                *n == legacy && *m == sender && self.peers[legacy].outgoing.contains(c)
            })
            .map(|(_, v)| *v);
        if let Some((j, jc)) = out {
            let line = format!("not_implemented {cmd}\n").into_bytes();
            let gen = self.gens[legacy];
            let c = self
                .links
                .get(&(j, jc))
                .map(|(_, c)| *c)
                .unwrap_or(ConnId(0));
            self.wire.push(Wire {
                at: self.now,
                from: legacy,
                gen,
                conn: c,
                outgoing: true,
                line: line[..line.len() - 1].to_vec(),
            });
            self.queue.push_back(Msg::Data {
                to: j,
                conn: jc,
                data: line,
            });
        }
    }

    /// Advances virtual time by `d`, firing every timer on the way, in order.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.run();
            let next = self
                .peers
                .iter()
                .filter_map(|p| p.node.poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for p in &mut self.peers {
                        if p.node.poll_timeout().is_some_and(|t| t <= now) {
                            p.node.handle_timeout(now);
                        }
                    }
                }
                _ => break,
            }
        }
        self.now = end;
        self.run();
    }

    /// Lines node `from` wrote towards node `to` (on any connection, even closed ones).
    pub fn lines(&self, from: usize, to: usize) -> Vec<&Wire> {
        self.wire
            .iter()
            .filter(|w| {
                w.from == from && self.conn_target.get(&(w.from, w.gen, w.conn)) == Some(&to)
            })
            .collect()
    }

    /// Lines as text, for readable assertions.
    pub fn texts(&self, from: usize, to: usize) -> Vec<String> {
        self.lines(from, to)
            .iter()
            .map(|w| String::from_utf8_lossy(&w.line).into_owned())
            .collect()
    }

    /// Connections a node opened to another, in order.
    pub fn conns_opened(&self, from: usize, to: usize) -> Vec<ConnId> {
        self.conn_target
            .iter()
            .filter(|((i, g, c), j)| {
                *i == from
                    && **j == to
                    && *g == self.gens[from]
                    && self.peers[from].outgoing.contains(c)
            })
            .map(|((_, _, c), _)| *c)
            .collect()
    }

    pub fn events(&self, i: usize) -> &[Event] {
        &self.peers[i].events
    }

    /// Advances time in small steps until `i` and `j` see each other online; returns how long
    /// it took, or `None` after `limit`.
    pub fn time_until_online(&mut self, i: usize, j: usize, limit: Duration) -> Option<Duration> {
        let start = self.now;
        loop {
            if self.online(i, j) && self.online(j, i) {
                return Some(self.now.since(start));
            }
            if self.now.since(start) >= limit {
                return None;
            }
            self.advance(Duration::from_millis(100));
        }
    }

    pub fn online(&self, i: usize, j: usize) -> bool {
        let id = self.id(j);
        matches!(
            self.peers[i].node.buddy(&id).map(|b| b.presence),
            Some(torchat_core::Presence::Online(_))
        )
    }

    pub fn texts_received(&self, i: usize) -> Vec<String> {
        self.peers[i]
            .events
            .iter()
            .filter_map(|e| match e {
                Event::MessageReceived { text, .. } => {
                    Some(String::from_utf8_lossy(text).into_owned())
                }
                _ => None,
            })
            .collect()
    }
}

/// What a §3-only member writes: no echoes, and only `groupchat` in `supports`.
fn legacy_out(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"groupchat_echoed_message ") {
            continue;
        }
        if line.starts_with(b"supports ") {
            out.extend_from_slice(b"supports groupchat\n");
            continue;
        }
        out.extend_from_slice(line);
    }
    out
}
