//! The node: owns every connection and buddy, takes inputs, queues outputs.

use std::collections::{BTreeMap, VecDeque};

use rand_core::RngCore;
use torchat_wire::{OnionId, Packet, Status};

use crate::config::Config;
use crate::state::{Buddy, Conn, Dir, Queued};
use crate::time::Timestamp;
use crate::types::{
    BuddyKind, CommandError, ConnId, Delivery, Event, MsgId, Output, Presence, Record,
};

/// Counters of what the core saw; for diagnostics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines that could not be decoded (malformed, bad command).
    pub bad_lines: u64,
    /// Lines dropped because they came before authentication.
    pub unauthenticated_lines: u64,
    /// Connections closed for a line over the cap.
    pub oversize_lines: u64,
    /// Pings refused (blocked id, our own id, id change on a connection, limits).
    pub refused_pings: u64,
    /// Pongs that did not authenticate anything.
    pub ignored_pongs: u64,
    /// Unknown commands answered with `not_implemented`.
    pub not_implemented_sent: u64,
    /// Packets about groups from non-members (group layer).
    pub non_member_packets: u64,
    /// Signed group messages whose signature did not verify (dropped).
    pub bad_signatures: u64,
}

/// The TorChat protocol state machine. See the crate docs for the driving contract.
pub struct Node {
    pub(crate) cfg: Config,
    pub(crate) rng: Box<dyn RngCore + Send>,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    pub(crate) buddies: BTreeMap<OnionId, Buddy>,
    pub(crate) out: VecDeque<Output>,
    next_conn: u64,
    pub(crate) stats: Stats,
    pub(crate) started: bool,
    pub(crate) groups: BTreeMap<torchat_wire::GroupId, crate::group::Group>,
    pub(crate) outbox: Vec<crate::types::OutboxEntry>,
    /// When `start` ran, and message ids made since (see [`MsgId::ordered`]).
    msg_epoch: u64,
    msg_count: u64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("own_id", &self.cfg.own_id)
            .field("conns", &self.conns.len())
            .field("buddies", &self.buddies.len())
            .finish_non_exhaustive()
    }
}

/// A read-only view of one buddy, for interfaces.
#[derive(Debug, Clone, PartialEq)]
pub struct BuddyView {
    /// Its id.
    pub id: OnionId,
    /// Which list.
    pub kind: BuddyKind,
    /// Our alias for it.
    pub alias: Option<String>,
    /// Connection state.
    pub presence: Presence,
    /// What it told us.
    pub info: crate::types::PeerInfo,
    /// Messages waiting for it.
    pub queued: usize,
    /// Our outgoing connection to it, if any.
    pub outgoing: Option<ConnId>,
    /// Its incoming connection, once authenticated by a valid pong.
    pub incoming: Option<ConnId>,
}

impl Node {
    /// A node for `cfg`, drawing cookies and ids from `rng` (seed it in tests).
    pub fn new(cfg: Config, rng: Box<dyn RngCore + Send>) -> Self {
        Node {
            cfg,
            rng,
            conns: BTreeMap::new(),
            buddies: BTreeMap::new(),
            out: VecDeque::new(),
            next_conn: 1,
            stats: Stats::default(),
            started: false,
            groups: BTreeMap::new(),
            outbox: Vec::new(),
            msg_epoch: 0,
            msg_count: 0,
        }
    }

    /// Our id.
    pub fn own_id(&self) -> &OnionId {
        &self.cfg.own_id
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    // ----- restoring persisted state (before `start`) -----

    /// Restores a buddy list entry from storage. Emits nothing.
    pub fn restore_buddy(&mut self, id: OnionId, kind: BuddyKind, alias: Option<String>) {
        if id == self.cfg.own_id {
            return;
        }
        let b = self.buddies.entry(id).or_insert_with(|| Buddy::new(kind));
        b.kind = kind;
        b.alias = alias;
    }

    /// Restores what a buddy last told us about itself (profile, client), so it can be shown
    /// before it comes online. Emits nothing.
    pub fn restore_buddy_info(&mut self, id: &OnionId, info: crate::types::PeerInfo) {
        if let Some(b) = self.buddies.get_mut(id) {
            b.info = info;
        }
    }

    /// Restores a 1:1 message that was queued and not yet sent. Emits nothing.
    pub fn restore_queued(&mut self, id: MsgId, to: OnionId, text: Vec<u8>) {
        if let Some(b) = self.buddies.get_mut(&to) {
            b.queue.push_back(Queued { id, text });
        }
    }

    /// Starts connecting to every buddy we want to be connected to.
    pub fn start(&mut self, now: Timestamp) {
        self.started = true;
        self.msg_epoch = now.as_millis();
        let wanted: Vec<OnionId> = self
            .buddies
            .iter()
            .filter(|(_, b)| b.wanted())
            .map(|(id, _)| id.clone())
            .collect();
        for id in wanted {
            self.ensure_outgoing(&id, now);
        }
    }

    // ----- network inputs -----

    /// The shell accepted an incoming connection. Returns its handle, or `None` when the
    /// connection caps are reached (the shell closes the socket).
    pub fn accept(&mut self, now: Timestamp) -> Option<ConnId> {
        let unauth = self
            .conns
            .values()
            .filter(|c| matches!(c.dir, Dir::In) && !c.authenticated)
            .count();
        if self.conns.len() >= self.cfg.max_connections || unauth >= self.cfg.max_unauthenticated {
            return None;
        }
        let id = self.alloc_conn();
        self.conns
            .insert(id, Conn::new(Dir::In, self.cfg.max_line, now));
        Some(id)
    }

    /// An outgoing connection we asked for is established.
    pub fn handle_connected(&mut self, conn: ConnId, now: Timestamp) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Dir::Out { to } = c.dir.clone() else {
            return;
        };
        if c.established {
            return;
        }
        c.established = true;
        c.last_rx = now;
        self.send_ping(conn, &to, now);
        self.maybe_pong(&to);
        self.update_presence(&to);
    }

    /// A connection closed or could not be established. Unknown handles are ignored.
    pub fn handle_closed(&mut self, conn: ConnId, now: Timestamp) {
        if let Some(c) = self.conns.remove(&conn) {
            self.after_conn_gone(conn, c, now);
        }
    }

    /// Bytes arrived on a connection.
    pub fn handle_data(&mut self, conn: ConnId, data: &[u8], now: Timestamp) {
        let mut packets = Vec::new();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.last_rx = now;
        c.decoder.feed_with(data, |p| packets.push(p));
        for p in packets {
            if !self.conns.contains_key(&conn) {
                return; // closed by an earlier packet of this chunk
            }
            match p {
                Ok(packet) => self.handle_packet(conn, packet, now),
                Err(e) if e.is_fatal() => {
                    self.stats.oversize_lines += 1;
                    let id = self.conn_peer(conn);
                    self.event(Event::Misbehaviour {
                        id,
                        what: "line over the size cap",
                    });
                    self.close_conn(conn, now);
                }
                Err(_) => self.stats.bad_lines += 1,
            }
        }
    }

    /// One decoded packet on a connection.
    fn handle_packet(&mut self, conn: ConnId, p: Packet, now: Timestamp) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        match &c.dir {
            Dir::Out { to } => {
                let to = to.clone();
                self.handle_on_outgoing(conn, &to, p, now);
            }
            Dir::In => match p {
                Packet::Ping { from, cookie } => self.handle_ping(conn, from, cookie, now),
                Packet::Pong { cookie } => self.handle_pong(conn, cookie, now),
                other => {
                    let c = &self.conns[&conn];
                    match (&c.claimed, c.authenticated) {
                        (Some(id), true) => {
                            let id = id.clone();
                            self.handle_session_packet(&id, other, now);
                        }
                        _ => self.junk_before_auth(conn, now),
                    }
                }
            },
        }
    }

    // ----- user commands -----

    /// Puts `id` on the buddy list (or turns a temporary buddy permanent) and connects to it.
    pub fn add_buddy(
        &mut self,
        id: OnionId,
        alias: Option<String>,
        now: Timestamp,
    ) -> Result<(), CommandError> {
        if id == self.cfg.own_id {
            return Err(CommandError::OwnId);
        }
        let b = self
            .buddies
            .entry(id.clone())
            .or_insert_with(|| Buddy::new(BuddyKind::Permanent));
        let was = b.kind;
        b.kind = BuddyKind::Permanent;
        if alias.is_some() {
            b.alias = alias;
        }
        let alias = b.alias.clone();
        self.persist(Record::Buddy {
            id: id.clone(),
            kind: BuddyKind::Permanent,
            alias,
        });
        self.event(Event::BuddyList {
            id: id.clone(),
            kind: Some(BuddyKind::Permanent),
        });
        if was == BuddyKind::Temporary {
            // Already talking to it: tell it we added it, as we would have at handshake time.
            if let Some(out) = self.ready_out(&id) {
                self.send(out, &Packet::AddMe(Default::default()));
            }
        }
        if self.started {
            if let Some(b) = self.buddies.get_mut(&id) {
                b.failures = 0;
            }
            self.ensure_outgoing(&id, now);
        }
        Ok(())
    }

    /// Removes `id` from the buddy list: tells it (`remove_me`) if connected, disconnects.
    pub fn remove_buddy(&mut self, id: &OnionId, now: Timestamp) -> Result<(), CommandError> {
        let Some(b) = self.buddies.get(id) else {
            return Err(CommandError::NotABuddy);
        };
        if b.kind == BuddyKind::Permanent {
            if let Some(out) = self.ready_out(id) {
                self.send(out, &Packet::RemoveMe(Default::default()));
            }
        }
        self.drop_buddy(id, now);
        self.persist(Record::BuddyRemoved { id: id.clone() });
        self.event(Event::BuddyList {
            id: id.clone(),
            kind: None,
        });
        Ok(())
    }

    /// Blocks `id`: refused at ping time from now on, disconnected now.
    pub fn block(&mut self, id: OnionId, now: Timestamp) -> Result<(), CommandError> {
        if id == self.cfg.own_id {
            return Err(CommandError::OwnId);
        }
        self.disconnect_buddy(&id, now);
        let b = self
            .buddies
            .entry(id.clone())
            .or_insert_with(|| Buddy::new(BuddyKind::Blocked));
        b.kind = BuddyKind::Blocked;
        b.next_connect = None;
        let alias = b.alias.clone();
        self.persist(Record::Buddy {
            id: id.clone(),
            kind: BuddyKind::Blocked,
            alias,
        });
        self.event(Event::BuddyList {
            id,
            kind: Some(BuddyKind::Blocked),
        });
        Ok(())
    }

    /// Unblocks `id`; it goes back on the buddy list as a permanent buddy.
    pub fn unblock(&mut self, id: OnionId, now: Timestamp) -> Result<(), CommandError> {
        match self.buddies.get(&id) {
            Some(b) if b.kind == BuddyKind::Blocked => self.add_buddy(id, None, now),
            _ => Err(CommandError::NotABuddy),
        }
    }

    /// Sends a 1:1 message, or queues it until the buddy is online. The message is persisted
    /// (a [`Record::MessageOut`] output) before any transmission of it.
    pub fn send_message(
        &mut self,
        to: &OnionId,
        text: Vec<u8>,
        now: Timestamp,
    ) -> Result<MsgId, CommandError> {
        if text.is_empty() {
            return Err(CommandError::Empty);
        }
        let max_q = self.cfg.max_queued_per_buddy;
        let Some(b) = self.buddies.get(to) else {
            return Err(CommandError::NotABuddy);
        };
        match b.kind {
            BuddyKind::Blocked => return Err(CommandError::Blocked),
            BuddyKind::Temporary if b.pinned && !b.online => return Err(CommandError::NotABuddy),
            _ => {}
        }
        let online_out = if b.online { self.ready_out(to) } else { None };
        if online_out.is_none() && b.queue.len() >= max_q {
            return Err(CommandError::QueueFull);
        }
        let id = self.new_msg_id();
        let state = if online_out.is_some() {
            Delivery::Sent
        } else {
            Delivery::Queued
        };
        let rec = Record::MessageOut {
            id,
            to: to.clone(),
            text: text.clone(),
            at: now,
            state,
        };
        self.persist(rec);
        match online_out {
            Some(out) => self.send(out, &Packet::Message(text)),
            None => {
                if let Some(b) = self.buddies.get_mut(to) {
                    b.queue.push_back(Queued { id, text });
                }
                self.ensure_outgoing(to, now);
            }
        }
        self.event(Event::Delivery {
            id,
            to: to.clone(),
            state,
        });
        Ok(id)
    }

    /// Changes our presence and tells every connected buddy.
    pub fn set_status(&mut self, status: Status) {
        self.cfg.status = status.clone();
        for out in self.ready_outs() {
            self.send(out, &Packet::Status(status.clone()));
        }
    }

    /// Changes our profile and tells every connected buddy.
    pub fn set_profile(&mut self, name: Vec<u8>, text: Vec<u8>) {
        self.cfg.profile_name = name.clone();
        self.cfg.profile_text = text.clone();
        for out in self.ready_outs() {
            self.send(out, &Packet::ProfileName(name.clone()));
            self.send(out, &Packet::ProfileText(text.clone()));
        }
    }

    // ----- queries -----

    /// A view of one buddy.
    pub fn buddy(&self, id: &OnionId) -> Option<BuddyView> {
        self.buddies.get(id).map(|b| BuddyView {
            id: id.clone(),
            kind: b.kind,
            alias: b.alias.clone(),
            presence: self.presence_of(id),
            info: b.info.clone(),
            queued: b.queue.len(),
            outgoing: b.out,
            incoming: b.inc,
        })
    }

    /// Views of every buddy (any kind).
    pub fn buddies(&self) -> Vec<BuddyView> {
        self.buddies
            .keys()
            .filter_map(|id| self.buddy(id))
            .collect()
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Capabilities a buddy announced in `supports`.
    pub fn supports(&self, id: &OnionId, ext: &str) -> bool {
        self.buddies
            .get(id)
            .is_some_and(|b| b.supports.contains(ext))
    }

    // ----- outputs -----

    /// The next thing for the shell to do. Drain until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    // ----- helpers shared by the other modules -----

    pub(crate) fn alloc_conn(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    pub(crate) fn new_msg_id(&mut self) -> MsgId {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        self.msg_count += 1;
        MsgId::ordered(self.msg_epoch, self.msg_count, b)
    }

    /// A fresh cookie: 32 random bytes as 64 lower-case hex characters (printable, no spaces).
    pub(crate) fn new_cookie(&mut self) -> Vec<u8> {
        let mut b = [0u8; 32];
        self.rng.fill_bytes(&mut b);
        b.iter()
            .flat_map(|x| format!("{x:02x}").into_bytes())
            .collect()
    }

    pub(crate) fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    pub(crate) fn persist(&mut self, r: Record) {
        self.out.push_back(Output::Persist(r));
    }

    /// Encodes and queues a packet on a connection.
    pub(crate) fn send(&mut self, conn: ConnId, p: &Packet) {
        let data = p.encode();
        // Coalesce with a transmit already queued for the same connection.
        if let Some(Output::Transmit { conn: c, data: d }) = self.out.back_mut() {
            if *c == conn {
                d.extend_from_slice(&data);
                return;
            }
        }
        self.out.push_back(Output::Transmit { conn, data });
    }

    /// Our established outgoing connection to `id` with our ping sent, if any.
    pub(crate) fn ready_out(&self, id: &OnionId) -> Option<ConnId> {
        let out = self.buddies.get(id)?.out?;
        let c = self.conns.get(&out)?;
        (c.established && c.ping_cookie.is_some()).then_some(out)
    }

    /// Outgoing connections of every buddy that completed the handshake.
    fn ready_outs(&self) -> Vec<ConnId> {
        self.buddies
            .iter()
            .filter(|(_, b)| b.inc.is_some())
            .filter_map(|(id, _)| self.ready_out(id))
            .filter(|c| self.conns.get(c).is_some_and(|c| c.info_sent))
            .collect()
    }

    /// Who is (claimed to be) on a connection.
    pub(crate) fn conn_peer(&self, conn: ConnId) -> Option<OnionId> {
        match &self.conns.get(&conn)?.dir {
            Dir::Out { to } => Some(to.clone()),
            Dir::In => self.conns.get(&conn)?.claimed.clone(),
        }
    }

    /// Closes a connection we hold and updates the buddy it belonged to.
    pub(crate) fn close_conn(&mut self, conn: ConnId, now: Timestamp) {
        if let Some(c) = self.conns.remove(&conn) {
            self.out.push_back(Output::Close { conn });
            self.after_conn_gone(conn, c, now);
        }
    }

    /// Bookkeeping after a connection is gone (closed by us or by the network).
    fn after_conn_gone(&mut self, conn: ConnId, c: Conn, now: Timestamp) {
        let peer = match &c.dir {
            Dir::Out { to } => Some(to.clone()),
            Dir::In if c.authenticated => c.claimed.clone(),
            Dir::In => None,
        };
        let Some(id) = peer else { return };
        let Some(b) = self.buddies.get_mut(&id) else {
            return;
        };
        let was_ours = b.out == Some(conn) || b.inc == Some(conn);
        if !was_ours {
            return;
        }
        let failed_before_auth = b.inc.is_none();
        if b.out == Some(conn) {
            b.out = None;
        }
        if b.inc == Some(conn) {
            b.inc = None;
        }
        // Losing either connection of a pair ends the session: close the other one too.
        let other = b.out.or(b.inc);
        b.out = None;
        b.inc = None;
        b.online = false;
        b.peer_cookie = None;
        if failed_before_auth {
            b.failures = b.failures.saturating_add(1);
        }
        if let Some(o) = other {
            if self.conns.remove(&o).is_some() {
                self.out.push_back(Output::Close { conn: o });
            }
        }
        self.after_session_end(&id, now);
    }

    /// A buddy lost its session: schedule a reconnect or forget a temporary buddy.
    pub(crate) fn after_session_end(&mut self, id: &OnionId, now: Timestamp) {
        let Some(b) = self.buddies.get(id) else {
            return;
        };
        if b.wanted() {
            let delay = self.backoff_delay(b.failures);
            if let Some(b) = self.buddies.get_mut(id) {
                b.next_connect = Some(now + delay);
            }
        } else if b.kind == BuddyKind::Temporary && b.out.is_none() && b.inc.is_none() {
            self.buddies.remove(id);
            self.event(Event::Presence {
                id: id.clone(),
                presence: Presence::Offline,
            });
            return;
        }
        self.update_presence(id);
    }

    /// Randomised exponential backoff: initial × 2^failures, capped, then × 0.5–1.5.
    fn backoff_delay(&mut self, failures: u32) -> std::time::Duration {
        let base = self.cfg.backoff_initial.as_millis() as u64;
        let cap = self.cfg.backoff_max.as_millis() as u64;
        let exp = base.saturating_mul(1u64 << failures.min(20)).min(cap);
        let jitter = 500 + self.rng.next_u32() as u64 % 1001; // per mille, 500..=1500
        std::time::Duration::from_millis(exp.saturating_mul(jitter) / 1000)
    }

    /// Closes every connection of a buddy without forgetting it.
    pub(crate) fn disconnect_buddy(&mut self, id: &OnionId, now: Timestamp) {
        let Some(b) = self.buddies.get_mut(id) else {
            return;
        };
        let conns: Vec<ConnId> = b.out.iter().chain(b.inc.iter()).copied().collect();
        b.out = None;
        b.inc = None;
        b.online = false;
        b.peer_cookie = None;
        for c in conns {
            if self.conns.remove(&c).is_some() {
                self.out.push_back(Output::Close { conn: c });
            }
        }
        // Unauthenticated incoming connections claiming it go too.
        let claimed: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.claimed.as_ref() == Some(id))
            .map(|(k, _)| *k)
            .collect();
        for c in claimed {
            self.conns.remove(&c);
            self.out.push_back(Output::Close { conn: c });
        }
        let _ = now;
        self.update_presence(id);
    }

    /// Disconnects and forgets a buddy.
    pub(crate) fn drop_buddy(&mut self, id: &OnionId, now: Timestamp) {
        self.disconnect_buddy(id, now);
        self.buddies.remove(id);
    }

    /// Opens our outgoing connection to `id` unless one exists.
    pub(crate) fn ensure_outgoing(&mut self, id: &OnionId, now: Timestamp) {
        let Some(b) = self.buddies.get(id) else {
            return;
        };
        if b.out.is_some() || b.kind == BuddyKind::Blocked || *id == self.cfg.own_id {
            return;
        }
        if self.conns.len() >= self.cfg.max_connections {
            // Try again later rather than exceed the cap.
            let delay = self.cfg.backoff_initial;
            if let Some(b) = self.buddies.get_mut(id) {
                b.next_connect = Some(now + delay);
            }
            return;
        }
        let conn = self.alloc_conn();
        self.conns.insert(
            conn,
            Conn::new(Dir::Out { to: id.clone() }, self.cfg.max_line, now),
        );
        if let Some(b) = self.buddies.get_mut(id) {
            b.out = Some(conn);
            b.next_connect = None;
        }
        self.out.push_back(Output::Connect {
            conn,
            to: id.clone(),
        });
        self.update_presence(id);
    }

    /// The presence a person would see for `id`.
    pub(crate) fn presence_of(&self, id: &OnionId) -> Presence {
        let Some(b) = self.buddies.get(id) else {
            return Presence::Offline;
        };
        if b.online {
            return Presence::Online(b.status.clone());
        }
        let out_up = b
            .out
            .and_then(|c| self.conns.get(&c))
            .map(|c| c.established);
        match (out_up, b.inc) {
            (None, None) => Presence::Offline,
            (Some(false), None) => Presence::Connecting,
            _ => Presence::Handshake,
        }
    }

    /// Emits a presence event if it changed.
    pub(crate) fn update_presence(&mut self, id: &OnionId) {
        let p = self.presence_of(id);
        if let Some(b) = self.buddies.get_mut(id) {
            if b.reported != p {
                b.reported = p.clone();
                self.out.push_back(Output::Event(Event::Presence {
                    id: id.clone(),
                    presence: p,
                }));
            }
        }
    }
}
