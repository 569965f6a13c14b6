//! Drives a core from a byte string: arbitrary sequences of accepts, connects, data on any
//! connection, closes, timers and user commands, checking after every step that nothing
//! panicked and every table stays within its cap. One code path for the cargo-fuzz target
//! (`fuzz/fuzz_targets/node.rs`) and the long property run (`tests/fuzz_node.rs`).
//!
//! Only depends on `torchat_core`, `torchat_wire`, `rand_chacha` and `rand_core`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use rand_core::SeedableRng;
use torchat_core::{Config, ConnId, Event, FileId, Node, Output, Timestamp};
use torchat_wire::{GroupId, OnionId, Packet};

/// Peers the input can speak as (the last one is us).
const IDS: [&str; 8] = [
    "peeraaaaaaaaaaaa",
    "peerbbbbbbbbbbbb",
    "peercccccccccccc",
    "peerdddddddddddd",
    "peereeeeeeeeeeee",
    "peerffffffffffff",
    "peergggggggggggg",
    "meeeeeeeeeeeeeee",
];

const GIDS: [&str; 3] = [
    "6f012391-883d-4f4f-8d54-52c4227b3ac9",
    "44034392-cfdb-48d3-a9bf-30b99fb77918",
    "00000000-0000-4000-8000-000000000001",
];

/// Lines the input picks from (`{id}`, `{gid}`, `{n}` are filled from the input).
const LINES: [&str; 36] = [
    "status available",
    "status away",
    "status xa",
    "client x",
    "version 1",
    "supports groupchat torchat_signed torchat_file_resume torchat_delayed",
    "profile_name \\0\\r\u{1b}[2Jname",
    "profile_text t",
    "add_me",
    "remove_me",
    "message hello {n}",
    "message ",
    "torchat_delayed {n} late",
    "torchat_delayed x y",
    "groupchat_invite {gid}",
    "groupchat_invite {gid} noredundancy",
    "groupchat_participants {gid} {id}",
    "groupchat_participants {gid} {id} {id2}",
    "groupchat_participants {gid}",
    "groupchat_join {gid}",
    "groupchat_invited {gid} {id}",
    "groupchat_leave {gid}",
    "groupchat_is_participating {gid}",
    "groupchat_participating {gid}",
    "groupchat_not_participating {gid}",
    "groupchat_message {gid} hi {n}",
    "groupchat_echoed_message {gid} {id} hi {n}",
    "filename f{n} {n} 8192 ../../x{n}",
    "filename f{n} 99999999999999 8192 big",
    "filedata f{n} 0 d41d8cd98f00b204e9800998ecf8427e ",
    "filedata_ok f{n} 0",
    "filedata_error f{n} 0",
    "file_stop_sending f{n}",
    "file_stop_receiving f{n}",
    "not_implemented groupchat_is_participating",
    "disconnect",
];

/// The caps the checks hold the core to.
pub struct Caps {
    pub connections: usize,
    pub strangers: usize,
    pub members: usize,
    pub requests: usize,
    pub request_bytes: usize,
    pub groups: usize,
    pub transfers: usize,
}

/// The state of one run.
pub struct Driver {
    pub node: Node,
    pub now: Timestamp,
    /// Open connections: (handle, outgoing to).
    conns: Vec<(ConnId, Option<OnionId>)>,
    /// Outgoing connects not yet reported.
    connecting: Vec<(ConnId, OnionId)>,
    /// The cookie of our latest ping to each peer (seen in our output).
    cookies: BTreeMap<OnionId, Vec<u8>>,
    /// Incoming connections and the id their first ping named (as the input made it).
    claims: BTreeMap<ConnId, OnionId>,
    files: Vec<FileId>,
    gids: Vec<GroupId>,
    caps: Caps,
    pub steps: u64,
    /// Some buddy came online at some point.
    pub online_seen: bool,
}

struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn pick<T: Clone>(&mut self, v: &[T]) -> Option<T> {
        if v.is_empty() {
            return None;
        }
        let b = usize::from(self.byte()?);
        Some(v[b % v.len()].clone())
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let end = (self.pos + n).min(self.data.len());
        let s = &self.data[self.pos..end];
        self.pos = end;
        s
    }
}

fn id(i: usize) -> OnionId {
    OnionId::parse(IDS[i % IDS.len()]).unwrap()
}

impl Driver {
    /// A node with small caps (so that the input can reach them), or the defaults.
    pub fn new(small: bool, seed: u64) -> Driver {
        let mut cfg = Config::new(id(IDS.len() - 1));
        if small {
            cfg.max_connections = 24;
            cfg.max_unauthenticated = 8;
            cfg.max_unauthenticated_per_id = 2;
            cfg.max_temporary_buddies = 3;
            cfg.max_groups = 4;
            cfg.max_group_members = 4;
            cfg.max_outbox_per_member = 8;
            cfg.max_outbox_bytes = 4096;
            cfg.max_queued_per_buddy = 8;
            cfg.guard.max_requests = 2;
            cfg.guard.max_request_messages = 3;
            cfg.guard.max_request_bytes = 64;
            cfg.guard.max_request_bytes_total = 100;
            cfg.guard.max_invites_per_inviter = 1;
            cfg.guard.max_invites = 3;
            cfg.guard.max_member_buddies = 3;
            cfg.guard.stranger_group_bytes = 64;
            cfg.guard.chat_rate.burst = 5;
            cfg.guard.stranger_chat_rate.burst = 2;
            cfg.guard.control_rate.burst = 20;
            cfg.guard.offer_rate.burst = 2;
            cfg.files.max_offers = 3;
            cfg.files.max_offers_per_buddy = 2;
            cfg.files.max_transfers = 4;
            cfg.files.max_finished = 4;
            // Small blocks and windows: the same paths, without encoding a megabyte a step.
            cfg.files.block_size = 512;
            cfg.files.window = 8;
            cfg.files.window_legacy = 4;
        }
        let caps = Caps {
            connections: cfg.max_connections,
            strangers: cfg.max_temporary_buddies,
            members: cfg.guard.max_member_buddies,
            requests: cfg.guard.max_requests,
            request_bytes: cfg.guard.max_request_bytes_total,
            groups: cfg.max_groups + cfg.guard.max_invites,
            transfers: cfg.files.max_transfers + cfg.files.max_finished,
        };
        let rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let mut node = Node::new(cfg, Box::new(rng));
        let now = Timestamp::from_millis(1_700_000_000_000);
        node.start(now);
        let mut d = Driver {
            node,
            now,
            conns: vec![],
            connecting: vec![],
            cookies: BTreeMap::new(),
            claims: BTreeMap::new(),
            files: vec![],
            gids: GIDS.iter().map(|g| GroupId::new(g).unwrap()).collect(),
            caps,
            steps: 0,
            online_seen: false,
        };
        d.drain();
        d
    }

    /// Runs a whole input: the first byte picks the configuration, the rest are steps.
    pub fn run(data: &[u8]) -> Driver {
        let small = data.first().is_none_or(|b| b & 1 == 0);
        let mut d = Driver::new(small, u64::from(data.get(1).copied().unwrap_or(0)));
        let mut inp = Input {
            data: data.get(2..).unwrap_or(&[]),
            pos: 0,
        };
        while d.step(&mut inp).is_some() {
            d.steps += 1;
            d.check();
        }
        d
    }

    fn drain(&mut self) {
        while let Some(o) = self.node.poll_output() {
            match o {
                Output::Connect { conn, to } => self.connecting.push((conn, to)),
                Output::Close { conn } => {
                    self.conns.retain(|(c, _)| *c != conn);
                    self.connecting.retain(|(c, _)| *c != conn);
                    self.claims.remove(&conn);
                }
                Output::Transmit { conn, data } => {
                    // Remember the cookie of our pings, so the input can pong correctly.
                    let to = self
                        .conns
                        .iter()
                        .find(|(c, _)| *c == conn)
                        .and_then(|c| c.1.clone());
                    if let Some(to) = to {
                        for l in data.split(|&b| b == b'\n') {
                            if let Ok(Packet::Ping { cookie, .. }) = Packet::decode(l) {
                                self.cookies.insert(to.clone(), cookie);
                            }
                        }
                    }
                }
                Output::Event(Event::Presence {
                    presence: torchat_core::Presence::Online(_),
                    ..
                }) => self.online_seen = true,
                Output::Event(Event::FileOffer { file, .. }) if self.files.len() < 16 => {
                    self.files.push(file);
                }
                Output::File(torchat_core::FileIo::Read { file, offset, len }) => {
                    let data = vec![b'x'; len.min(65536)];
                    self.node.file_read(file, offset, data, self.now);
                }
                _ => {}
            }
        }
    }

    fn line(&self, inp: &mut Input<'_>) -> Option<Vec<u8>> {
        let t = inp.pick(&LINES)?;
        let n = inp.byte()?;
        let l = t
            .replace("{gid}", GIDS[usize::from(n) % GIDS.len()])
            .replace("{id2}", IDS[usize::from(n / 3) % IDS.len()])
            .replace("{id}", IDS[usize::from(n / 7) % IDS.len()])
            .replace(
                "{n}",
                &(1_699_999_000_000u64 + u64::from(n) * 1000).to_string(),
            );
        Some(l.into_bytes())
    }

    fn step(&mut self, inp: &mut Input<'_>) -> Option<()> {
        let op = inp.byte()?;
        let now = self.now;
        match op % 16 {
            0 => {
                if let Some(c) = self.node.accept(now) {
                    self.conns.push((c, None));
                }
            }
            1 => {
                let i = usize::from(inp.byte()?);
                if !self.connecting.is_empty() {
                    let (c, to) = self.connecting.remove(i % self.connecting.len());
                    self.conns.push((c, Some(to)));
                    self.node.handle_connected(c, now);
                }
            }
            2 => {
                let i = usize::from(inp.byte()?);
                let all: Vec<ConnId> = self
                    .conns
                    .iter()
                    .map(|c| c.0)
                    .chain(self.connecting.iter().map(|c| c.0))
                    .collect();
                if let Some(c) = all.get(i % all.len().max(1)).copied() {
                    self.conns.retain(|(x, _)| *x != c);
                    self.connecting.retain(|(x, _)| *x != c);
                    self.claims.remove(&c);
                    if i & 1 == 0 {
                        self.node.handle_closed(c, now);
                    } else {
                        let why = [
                            torchat_core::ConnectError::Refused,
                            torchat_core::ConnectError::Unreachable,
                            torchat_core::ConnectError::TimedOut,
                        ][i % 3];
                        self.node.handle_connect_failed(c, why, now);
                    }
                }
            }
            // A ping as one of the peers on an incoming connection.
            3 => {
                let c = self.incoming(inp)?;
                let who = usize::from(inp.byte()?);
                let p = id(who);
                let cookie = format!("c{}", who % 3);
                self.claims.entry(c).or_insert(p.clone());
                self.node
                    .handle_data(c, format!("ping {p} {cookie}\n").as_bytes(), now);
            }
            // The right pong for the id the connection claimed.
            4 => {
                let c = self.incoming(inp)?;
                if let Some(cookie) = self.claims.get(&c).and_then(|p| self.cookies.get(p)) {
                    let mut l = b"pong ".to_vec();
                    l.extend_from_slice(cookie);
                    l.push(b'\n');
                    self.node.handle_data(c, &l, now);
                }
            }
            // A templated line on any connection, maybe split.
            5..=7 => {
                let c = self.any(inp)?;
                let mut l = self.line(inp)?;
                l.push(b'\n');
                let split = usize::from(inp.byte()?) % (l.len() + 1);
                self.node.handle_data(c, &l[..split], now);
                self.drain();
                self.node.handle_data(c, &l[split..], now);
            }
            // Raw bytes on any connection.
            8 => {
                let c = self.any(inp)?;
                let n = usize::from(inp.byte()?);
                let b = inp.bytes(n).to_vec();
                self.node.handle_data(c, &b, now);
            }
            // A burst: the same line many times (floods).
            9 => {
                let c = self.any(inp)?;
                let mut l = self.line(inp)?;
                l.push(b'\n');
                let times = 1 + usize::from(inp.byte()?) * 4;
                let data: Vec<u8> = l.iter().copied().cycle().take(l.len() * times).collect();
                self.node.handle_data(c, &data, now);
            }
            // Time passes.
            10 | 11 => {
                let b = u64::from(inp.byte()?);
                let d = match b % 4 {
                    0 => Duration::from_millis(b * 10),
                    1 => Duration::from_secs(b),
                    2 => Duration::from_secs(b * 60),
                    _ => self
                        .node
                        .poll_timeout()
                        .map_or(Duration::ZERO, |t| t.since(now)),
                };
                self.now = now + d;
                self.node.handle_timeout(self.now);
            }
            // User commands.
            _ => self.command(inp)?,
        }
        self.drain();
        Some(())
    }

    fn incoming(&self, inp: &mut Input<'_>) -> Option<ConnId> {
        let v: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|c| c.1.is_none())
            .map(|c| c.0)
            .collect();
        let i = usize::from(inp.byte()?);
        v.get(i % v.len().max(1))
            .copied()
            .or(Some(ConnId(u64::MAX)))
    }

    fn any(&self, inp: &mut Input<'_>) -> Option<ConnId> {
        let i = usize::from(inp.byte()?);
        let c = self.conns.get(i % self.conns.len().max(1)).map(|c| c.0);
        Some(c.unwrap_or(ConnId(u64::MAX)))
    }

    fn command(&mut self, inp: &mut Input<'_>) -> Option<()> {
        let which = inp.byte()?;
        let arg = usize::from(inp.byte()?);
        let now = self.now;
        let p = id(arg);
        let g = self.gids[arg % self.gids.len()].clone();
        let n = &mut self.node;
        let _ = match which % 20 {
            0 => n.add_buddy(p, None, now).map(|_| ()),
            1 => n.remove_buddy(&p, now),
            2 => n.block(p, now),
            3 => n.unblock(p, now),
            4 => n
                .send_message(&p, format!("m{arg}").into_bytes(), now)
                .map(|_| ()),
            5 => n.accept_request(&p, None, now),
            6 => n.ignore_request(&p, now),
            7 => match n.group_create(vec![], now) {
                Ok(g) => {
                    if self.gids.len() < 8 {
                        self.gids.push(g);
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            },
            8 => n.group_invite(&g, &p, now),
            9 => n.group_accept(&g, now),
            10 => n.group_decline(&g, now),
            11 => n.group_leave(&g, None, now),
            12 => n.group_say(&g, b"hi".to_vec(), now).map(|_| ()),
            13 => n
                .send_file(&p, b"f.txt".to_vec(), 1 + arg as u64 * 50, now)
                .map(|_| ()),
            14 => match self.files.get(arg % self.files.len().max(1)) {
                Some(f) => n.accept_file(*f, now),
                None => Ok(()),
            },
            15 => match self.files.get(arg % self.files.len().max(1)) {
                Some(f) => n.cancel_file(*f, now),
                None => Ok(()),
            },
            16 => {
                n.set_status(torchat_wire::Status::Away);
                Ok(())
            }
            17 => {
                n.network_up(now);
                Ok(())
            }
            18 => {
                n.set_profile(b"x\0".to_vec(), vec![]);
                Ok(())
            }
            _ => n.send_message(&p, vec![b'y'; arg * 100], now).map(|_| ()),
        };
        Some(())
    }

    /// The tables stay within their caps.
    pub fn check(&self) {
        let n = &self.node;
        assert!(n.connection_count() <= self.caps.connections, "connections");
        let temps = n
            .buddies()
            .iter()
            .filter(|b| b.kind == torchat_core::BuddyKind::Temporary)
            .count();
        assert!(
            temps <= self.caps.strangers + self.caps.members,
            "temporary buddies"
        );
        let reqs = n.requests();
        assert!(reqs.len() <= self.caps.requests, "requests");
        let held: usize = reqs
            .iter()
            .flat_map(|r| r.messages.iter())
            .map(|m| m.text.len())
            .sum();
        assert!(held <= self.caps.request_bytes, "request bytes");
        assert!(n.groups().len() <= self.caps.groups, "groups");
        assert!(n.transfers().len() <= self.caps.transfers, "transfers");
    }
}
