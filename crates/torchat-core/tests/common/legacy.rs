//! Models of the legacy clients' handshakes (INTEROP-NOTES §3, handshake-races.md), as small
//! state machines that talk to our core through the harness in `handshake_model.rs`.
//!
//! Each model keeps what matters for the handshake: its cookie policy, when it pongs, which
//! pong it accepts, how it reacts to a wrong or second pong, when it re-pings, and how it
//! reconnects. The quirks come from the notes:
//! - ruby-torchat: a new cookie per outgoing connection, expects a pong for the newest one; a
//!   wrong pong or a second pong after verification drops the link; pings once per connection;
//!   in a race it opens a second outgoing connection; never write on a connection it opened.
//! - jtorchat: one cookie per buddy (a second connection in a race gets a new one); answers
//!   every ping with a pong; re-pings every 15 s until it gets our pong; a wrong pong drops
//!   the link; may send its pong twice.
//! - Python TorChat: one cookie for the whole session; pongs at most once per outgoing
//!   connection, as soon as it has one; re-pings on another ping and every 30 s until our pong
//!   arrived; ignores wrong pongs.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use torchat_wire::{OnionId, Packet};

/// Which client a model plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Ruby,
    Jtc,
    Python,
}

/// What a model asks the harness to do. Connections are numbered by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum POut {
    Connect(u32),
    Send(u32, Vec<u8>),
    Close(u32),
}

#[derive(Debug, Default)]
struct Inc {
    /// Its ping named us (the id the model expects).
    claimed: bool,
    /// The model accepted our pong on it.
    verified: bool,
}

#[derive(Debug)]
struct Out {
    up: bool,
    cookie: String,
    /// Cookie of ours it answered with a pong on this connection.
    ponged: Option<Vec<u8>>,
    info_sent: bool,
}

fn strip_delayed(text: Vec<u8>) -> Vec<u8> {
    text.strip_prefix(b"[delayed] ")
        .map(<[u8]>::to_vec)
        .unwrap_or(text)
}

/// One legacy client, talking to us.
#[derive(Debug)]
pub struct Legacy {
    pub flavor: Flavor,
    pub me: OnionId,
    pub us: OnionId,
    next_pc: u32,
    out: Option<u32>,
    outs: BTreeMap<u32, Out>,
    incs: BTreeMap<u32, Inc>,
    /// Our newest cookie (from our latest ping to it), to pong.
    our_cookie: Option<Vec<u8>>,
    cookie_gen: u32,
    /// Python and jtorchat: one cookie per buddy (session).
    buddy_cookie: String,
    /// It accepted a pong from us: we are verified on its side.
    pub verified: bool,
    /// It wants to be connected to us (it has us on its list).
    pub wants: bool,
    next_reconnect: Option<u64>,
    next_reping: Option<u64>,
    failures: u32,
    pub double_pong: bool,
    out_box: Vec<POut>,
    /// Lines we wrote on a connection it opened (a protocol violation for ruby-torchat).
    pub written_on_its_connections: u32,
    /// Pongs it had to reject (wrong cookie or second one).
    pub rejected_pongs: u32,
    /// Chat messages it received from us (texts, `[delayed] ` prefix removed).
    pub received: Vec<Vec<u8>>,
    /// ruby-torchat: packets held on unverified connections (processed once verified).
    held: BTreeMap<u32, Vec<Vec<u8>>>,
}

const RUBY_RECONNECT: u64 = 10_000;
const JTC_RECONNECT: u64 = 15_000;
const PY_RECONNECT: u64 = 10_000;

impl Legacy {
    pub fn new(flavor: Flavor, me: OnionId, us: OnionId, wants: bool) -> Self {
        let mut l = Legacy {
            flavor,
            me,
            us,
            next_pc: 1,
            out: None,
            outs: BTreeMap::new(),
            incs: BTreeMap::new(),
            our_cookie: None,
            cookie_gen: 0,
            buddy_cookie: String::new(),
            verified: false,
            wants,
            next_reconnect: None,
            next_reping: None,
            failures: 0,
            double_pong: false,
            out_box: vec![],
            written_on_its_connections: 0,
            rejected_pongs: 0,
            received: vec![],
            held: BTreeMap::new(),
        };
        l.buddy_cookie = l.fresh_cookie();
        l
    }

    fn fresh_cookie(&mut self) -> String {
        self.cookie_gen += 1;
        format!("{:?}-cookie-{}", self.flavor, self.cookie_gen).to_lowercase()
    }

    /// Starts: dials us if it has us on its list.
    pub fn start(&mut self, now: u64) {
        if self.wants {
            self.connect(now);
        }
    }

    pub fn outputs(&mut self) -> Vec<POut> {
        std::mem::take(&mut self.out_box)
    }

    pub fn next_timer(&self) -> Option<u64> {
        [self.next_reconnect, self.next_reping]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether it has a working session with us from its side: it verified us on an
    /// incoming connection that is still open, and its outgoing connection is up.
    pub fn available(&self) -> bool {
        self.verified
            && self.incs.values().any(|i| i.verified)
            && self
                .out
                .is_some_and(|o| self.outs.get(&o).is_some_and(|o| o.up))
    }

    fn send(&mut self, pc: u32, p: Packet) {
        let mut line = p.encode();
        line.pop(); // the harness adds the LF
        self.out_box.push(POut::Send(pc, line));
    }

    fn connect(&mut self, _now: u64) {
        if self.out.is_some() {
            return;
        }
        let pc = self.next_pc;
        self.next_pc += 1;
        let cookie = match self.flavor {
            Flavor::Ruby => self.fresh_cookie(),
            Flavor::Jtc | Flavor::Python => self.buddy_cookie.clone(),
        };
        self.outs.insert(
            pc,
            Out {
                up: false,
                cookie,
                ponged: None,
                info_sent: false,
            },
        );
        self.out = Some(pc);
        self.out_box.push(POut::Connect(pc));
    }

    /// Someone (we) connected to it; its connection number.
    pub fn incoming(&mut self) -> u32 {
        let pc = self.next_pc;
        self.next_pc += 1;
        self.incs.insert(pc, Inc::default());
        pc
    }

    pub fn connected(&mut self, pc: u32, now: u64) {
        let Some(o) = self.outs.get_mut(&pc) else {
            return;
        };
        o.up = true;
        let cookie = o.cookie.clone();
        self.failures = 0;
        self.send(
            pc,
            Packet::Ping {
                from: self.me.clone(),
                cookie: cookie.into_bytes(),
            },
        );
        if matches!(self.flavor, Flavor::Jtc | Flavor::Python) && !self.verified {
            let every = if self.flavor == Flavor::Jtc {
                15_000
            } else {
                30_000
            };
            self.next_reping = Some(now + every);
        }
        self.maybe_pong(pc);
        self.maybe_info(pc);
    }

    pub fn connect_failed(&mut self, pc: u32, now: u64) {
        self.outs.remove(&pc);
        if self.out == Some(pc) {
            self.out = None;
            self.failures += 1;
            self.schedule_reconnect(now);
        }
    }

    fn schedule_reconnect(&mut self, now: u64) {
        if !self.wants && self.incs.values().all(|i| !i.claimed) {
            return;
        }
        let base = match self.flavor {
            Flavor::Ruby => RUBY_RECONNECT,
            Flavor::Jtc => JTC_RECONNECT,
            Flavor::Python => PY_RECONNECT,
        };
        self.next_reconnect = Some(now + base);
    }

    fn maybe_pong(&mut self, pc: u32) {
        self.maybe_pong_again(pc, false);
    }

    /// `repeat_on_verified`: the ping it answers is a repeat on a connection it verified.
    fn maybe_pong_again(&mut self, pc: u32, repeat_on_verified: bool) {
        let Some(cookie) = self.our_cookie.clone() else {
            return;
        };
        let Some(o) = self.outs.get_mut(&pc) else {
            return;
        };
        if !o.up {
            return;
        }
        let again = match self.flavor {
            // Python: once per connection.
            Flavor::Python => o.ponged.is_none(),
            // ruby: once per connection, but every ping on a connection it verified is
            // answered (incoming.rb:82-83).
            Flavor::Ruby => o.ponged.is_none() || repeat_on_verified,
            // jtorchat answers every ping.
            Flavor::Jtc => o.ponged.as_ref() != Some(&cookie) || repeat_on_verified,
        };
        if !again {
            return;
        }
        o.ponged = Some(cookie.clone());
        if self.flavor == Flavor::Jtc && self.double_pong {
            self.send(
                pc,
                Packet::Pong {
                    cookie: cookie.clone(),
                },
            );
        }
        self.send(pc, Packet::Pong { cookie });
        if self.flavor == Flavor::Python {
            self.maybe_info(pc);
        }
    }

    /// Info and status: Python right after its pong; ruby and jtorchat once they verified us.
    fn maybe_info(&mut self, pc: u32) {
        let Some(o) = self.outs.get(&pc) else {
            return;
        };
        let ready = match self.flavor {
            Flavor::Python => o.ponged.is_some(),
            Flavor::Ruby | Flavor::Jtc => self.verified,
        };
        if !o.up || o.info_sent || !ready || self.out != Some(pc) {
            return;
        }
        if let Some(o) = self.outs.get_mut(&pc) {
            o.info_sent = true;
        }
        self.send(
            pc,
            Packet::Client(format!("{:?}", self.flavor).into_bytes()),
        );
        self.send(pc, Packet::Version(b"1".to_vec()));
        self.send(pc, Packet::Status(torchat_wire::Status::Available));
    }

    /// A line arrived on one of its connections.
    pub fn line(&mut self, pc: u32, line: &[u8], now: u64) {
        if self.outs.contains_key(&pc) {
            // Written on a connection it opened.
            self.written_on_its_connections += 1;
            return;
        }
        if !self.incs.contains_key(&pc) {
            return;
        }
        let Ok(p) = Packet::decode(line) else {
            return;
        };
        match p {
            Packet::Ping { from, cookie } => {
                if from != self.us {
                    self.out_box.push(POut::Close(pc));
                    self.incs.remove(&pc);
                    return;
                }
                let repeat = self.incs.get(&pc).is_some_and(|i| i.claimed);
                let verified_elsewhere = self.incs.iter().any(|(k, i)| *k != pc && i.verified);
                if self.flavor == Flavor::Jtc && !repeat && verified_elsewhere {
                    // jtorchat drops the existing connections and reconnects.
                    let others: Vec<u32> = self.incs.keys().copied().filter(|k| *k != pc).collect();
                    for o in others {
                        self.incs.remove(&o);
                        self.out_box.push(POut::Close(o));
                    }
                    for (o, _) in std::mem::take(&mut self.outs) {
                        self.out_box.push(POut::Close(o));
                    }
                    self.out = None;
                    self.verified = false;
                }
                if let Some(i) = self.incs.get_mut(&pc) {
                    i.claimed = true;
                }
                self.our_cookie = Some(cookie);
                match self.out {
                    None => self.connect(now),
                    Some(o) => {
                        let on_verified = repeat && self.incs.get(&pc).is_some_and(|i| i.verified);
                        self.maybe_pong_again(o, on_verified);
                        // Python re-pings when it gets another ping and is not verified.
                        if self.flavor == Flavor::Python && !self.verified && !repeat {
                            self.reping();
                        }
                    }
                }
            }
            Packet::Pong { cookie } => self.on_pong(pc, cookie, now),
            Packet::Message(text) => {
                let verified = self.incs.get(&pc).is_some_and(|i| i.verified);
                if verified {
                    self.received.push(strip_delayed(text));
                    return;
                }
                match self.flavor {
                    // Python closes an unauthenticated connection that carries a message.
                    Flavor::Python => {
                        self.incs.remove(&pc);
                        self.out_box.push(POut::Close(pc));
                    }
                    // ruby holds up to 24 packets until the connection is verified.
                    Flavor::Ruby => {
                        let held = self.held.entry(pc).or_default();
                        if held.len() < 24 {
                            held.push(text);
                        } else {
                            self.incs.remove(&pc);
                            self.held.remove(&pc);
                            self.out_box.push(POut::Close(pc));
                        }
                    }
                    // jtorchat attaches the socket to the claimed buddy at once.
                    Flavor::Jtc => self.received.push(strip_delayed(text)),
                }
            }
            _ => {}
        }
    }

    fn on_pong(&mut self, pc: u32, cookie: Vec<u8>, now: u64) {
        let Some(inc) = self.incs.get(&pc) else {
            return;
        };
        if !inc.claimed {
            return;
        }
        // Python and jtorchat check against their one cookie for us; ruby against the cookie
        // of its current outgoing connection (it expects the newest).
        let expected = match self.flavor {
            Flavor::Python | Flavor::Jtc => Some(self.buddy_cookie.clone().into_bytes()),
            Flavor::Ruby => self
                .out
                .and_then(|o| self.outs.get(&o))
                .map(|o| o.cookie.clone().into_bytes()),
        };
        let right = expected.as_deref() == Some(&cookie[..]);
        if inc.verified {
            if self.flavor == Flavor::Ruby {
                // A second pong after verification drops the buddy.
                self.rejected_pongs += 1;
                self.disconnect(now);
            }
            return;
        }
        if !right {
            match self.flavor {
                Flavor::Python => {}
                Flavor::Ruby => {
                    // "sent pong with wrong cookie": this link and the older attempts go.
                    self.rejected_pongs += 1;
                    self.out_box.push(POut::Close(pc));
                    self.incs.remove(&pc);
                    let stale: Vec<u32> = self
                        .outs
                        .keys()
                        .copied()
                        .filter(|o| Some(*o) != self.out)
                        .collect();
                    for o in stale {
                        self.outs.remove(&o);
                        self.out_box.push(POut::Close(o));
                    }
                }
                Flavor::Jtc => {
                    self.rejected_pongs += 1;
                    self.disconnect(now);
                }
            }
            return;
        }
        if let Some(i) = self.incs.get_mut(&pc) {
            i.verified = true;
        }
        for text in self.held.remove(&pc).unwrap_or_default() {
            self.received.push(strip_delayed(text));
        }
        // Python replaces an older verified incoming connection by the new one.
        let older: Vec<u32> = self
            .incs
            .iter()
            .filter(|(k, i)| **k != pc && i.verified)
            .map(|(k, _)| *k)
            .collect();
        for o in older {
            self.incs.remove(&o);
            self.out_box.push(POut::Close(o));
        }
        self.verified = true;
        self.next_reping = None;
        if let Some(o) = self.out {
            self.maybe_pong(o);
            self.maybe_info(o);
        }
    }

    fn reping(&mut self) {
        let Some(o) = self.out else {
            return;
        };
        let Some(out) = self.outs.get(&o).filter(|o| o.up) else {
            return;
        };
        let cookie = out.cookie.clone();
        self.send(
            o,
            Packet::Ping {
                from: self.me.clone(),
                cookie: cookie.into_bytes(),
            },
        );
    }

    /// The buddy goes offline on its side: every connection closed, reconnect later.
    fn disconnect(&mut self, now: u64) {
        for (pc, _) in std::mem::take(&mut self.outs) {
            self.out_box.push(POut::Close(pc));
        }
        for (pc, _) in std::mem::take(&mut self.incs) {
            self.out_box.push(POut::Close(pc));
        }
        self.out = None;
        self.verified = false;
        self.next_reping = None;
        self.our_cookie = None;
        if self.flavor == Flavor::Jtc {
            // A new buddy object, a new cookie.
            self.buddy_cookie = self.fresh_cookie();
        }
        self.schedule_reconnect(now);
    }

    pub fn closed(&mut self, pc: u32, now: u64) {
        let was_out = self.out == Some(pc);
        let was_verified_inc = self.incs.get(&pc).is_some_and(|i| i.verified);
        self.outs.remove(&pc);
        self.incs.remove(&pc);
        if was_out || was_verified_inc {
            self.disconnect(now);
        }
    }

    pub fn tick(&mut self, now: u64) {
        if self.next_reconnect.is_some_and(|t| t <= now) {
            self.next_reconnect = None;
            self.connect(now);
        }
        if self.next_reping.is_some_and(|t| t <= now) {
            self.next_reping = None;
            if !self.verified {
                self.reping();
                let every = if self.flavor == Flavor::Jtc {
                    15_000
                } else {
                    30_000
                };
                self.next_reping = Some(now + every);
            }
        }
    }

    /// ruby-torchat and jtorchat in a race: a second outgoing connection with a new cookie
    /// (the first one stays open).
    pub fn second_connection(&mut self, now: u64) {
        if self.flavor == Flavor::Python || self.verified {
            return;
        }
        if self.flavor == Flavor::Jtc {
            self.buddy_cookie = self.fresh_cookie();
        }
        self.out = None;
        self.connect(now);
    }

    /// jtorchat and Python repeat their ping on the same connection.
    pub fn repeat_ping(&mut self) {
        if self.flavor != Flavor::Ruby && !self.verified {
            self.reping();
        }
    }

    /// Its current outgoing connection, if any.
    pub fn current_out(&self) -> Option<u32> {
        self.out
    }

    /// Its connections (for the harness to pick one to break).
    pub fn connections(&self) -> Vec<u32> {
        self.outs.keys().chain(self.incs.keys()).copied().collect()
    }
}

/// Our own core as the peer (torchat ↔ torchat), behind the same interface as [`Legacy`].
pub struct CorePeer {
    pub node: torchat_core::Node,
    pub us: OnionId,
    outgoing: std::collections::BTreeSet<u32>,
    pub written_on_its_connections: u32,
    pub received: Vec<Vec<u8>>,
}

impl CorePeer {
    pub fn new(node: torchat_core::Node, us: OnionId, wants: bool, now: u64) -> Self {
        let mut node = node;
        if wants {
            node.add_buddy(us.clone(), None, ts(now)).unwrap();
        }
        CorePeer {
            node,
            us,
            outgoing: Default::default(),
            written_on_its_connections: 0,
            received: vec![],
        }
    }
}

fn ts(ms: u64) -> torchat_core::Timestamp {
    torchat_core::Timestamp::from_millis(ms)
}

fn conn(pc: u32) -> torchat_core::ConnId {
    torchat_core::ConnId(u64::from(pc))
}

/// A peer of the model test: a legacy client model or our own core.
#[allow(clippy::large_enum_variant)]
pub enum Peer {
    Legacy(Legacy),
    Core(CorePeer),
}

impl Peer {
    pub fn me(&self) -> OnionId {
        match self {
            Peer::Legacy(l) => l.me.clone(),
            Peer::Core(c) => c.node.own_id().clone(),
        }
    }

    pub fn flavor(&self) -> Option<Flavor> {
        match self {
            Peer::Legacy(l) => Some(l.flavor),
            Peer::Core(_) => None,
        }
    }

    pub fn start(&mut self, now: u64) {
        match self {
            Peer::Legacy(l) => l.start(now),
            Peer::Core(c) => c.node.start(ts(now)),
        }
    }

    pub fn outputs(&mut self) -> Vec<POut> {
        match self {
            Peer::Legacy(l) => l.outputs(),
            Peer::Core(c) => {
                let mut v = vec![];
                while let Some(o) = c.node.poll_output() {
                    match o {
                        torchat_core::Output::Connect { conn, .. } => {
                            let pc = conn.0 as u32;
                            c.outgoing.insert(pc);
                            v.push(POut::Connect(pc));
                        }
                        torchat_core::Output::Transmit { conn, data } => {
                            for l in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                                v.push(POut::Send(conn.0 as u32, l.to_vec()));
                            }
                        }
                        torchat_core::Output::Close { conn } => v.push(POut::Close(conn.0 as u32)),
                        // A peer that did not add us holds our messages as a contact
                        // request: they arrived all the same.
                        torchat_core::Output::Event(
                            torchat_core::Event::MessageReceived { text, .. }
                            | torchat_core::Event::RequestMessage { text, .. },
                        ) => c.received.push(strip_delayed(text)),
                        _ => {}
                    }
                }
                v
            }
        }
    }

    pub fn next_timer(&self) -> Option<u64> {
        match self {
            Peer::Legacy(l) => l.next_timer(),
            Peer::Core(c) => c.node.poll_timeout().map(|t| t.as_millis()),
        }
    }

    pub fn available(&self) -> bool {
        match self {
            Peer::Legacy(l) => l.available(),
            Peer::Core(c) => c
                .node
                .buddy(&c.us)
                .is_some_and(|b| matches!(b.presence, torchat_core::Presence::Online(_))),
        }
    }

    /// Someone (we) connected to it: its connection number, or `None` if it refuses.
    pub fn incoming(&mut self, now: u64) -> Option<u32> {
        match self {
            Peer::Legacy(l) => Some(l.incoming()),
            Peer::Core(c) => c.node.accept(ts(now)).map(|k| k.0 as u32),
        }
    }

    pub fn connected(&mut self, pc: u32, now: u64) {
        match self {
            Peer::Legacy(l) => l.connected(pc, now),
            Peer::Core(c) => c.node.handle_connected(conn(pc), ts(now)),
        }
    }

    pub fn connect_failed(&mut self, pc: u32, now: u64) {
        match self {
            Peer::Legacy(l) => l.connect_failed(pc, now),
            Peer::Core(c) => {
                c.node
                    .handle_connect_failed(conn(pc), torchat_core::ConnectError::Refused, ts(now))
            }
        }
    }

    pub fn line(&mut self, pc: u32, line: &[u8], now: u64) {
        match self {
            Peer::Legacy(l) => l.line(pc, line, now),
            Peer::Core(c) => {
                if c.outgoing.contains(&pc) {
                    c.written_on_its_connections += 1;
                }
                let mut d = line.to_vec();
                d.push(b'\n');
                c.node.handle_data(conn(pc), &d, ts(now));
            }
        }
    }

    pub fn closed(&mut self, pc: u32, now: u64) {
        match self {
            Peer::Legacy(l) => l.closed(pc, now),
            Peer::Core(c) => c.node.handle_closed(conn(pc), ts(now)),
        }
    }

    pub fn tick(&mut self, now: u64) {
        match self {
            Peer::Legacy(l) => l.tick(now),
            Peer::Core(c) => c.node.handle_timeout(ts(now)),
        }
    }

    pub fn second_connection(&mut self, now: u64) {
        if let Peer::Legacy(l) = self {
            l.second_connection(now);
        }
    }

    pub fn repeat_ping(&mut self) {
        if let Peer::Legacy(l) = self {
            l.repeat_ping();
        }
    }

    pub fn set_double_pong(&mut self) {
        if let Peer::Legacy(l) = self {
            l.double_pong = true;
        }
    }

    pub fn current_out(&self) -> Option<u32> {
        match self {
            Peer::Legacy(l) => l.current_out(),
            Peer::Core(c) => c
                .node
                .buddy(&c.us)
                .and_then(|b| b.outgoing)
                .map(|k| k.0 as u32),
        }
    }

    pub fn received(&self) -> &[Vec<u8>] {
        match self {
            Peer::Legacy(l) => &l.received,
            Peer::Core(c) => &c.received,
        }
    }

    pub fn written_on_its_connections(&self) -> u32 {
        match self {
            Peer::Legacy(l) => l.written_on_its_connections,
            Peer::Core(c) => c.written_on_its_connections,
        }
    }

    /// For failure messages.
    pub fn describe(&self) -> String {
        match self {
            Peer::Legacy(l) => format!(
                "available {}, verified {}, rejected pongs {}",
                l.available(),
                l.verified,
                l.rejected_pongs
            ),
            Peer::Core(c) => format!("{:?}", c.node.buddy(&c.us).map(|b| b.presence)),
        }
    }
}
