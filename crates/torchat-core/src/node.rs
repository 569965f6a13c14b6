//! The node: owns every connection and buddy, takes inputs, queues outputs.

use std::collections::{BTreeMap, VecDeque};

use rand_core::RngCore;
use torchat_wire::{OnionId, Packet, Status};

use crate::config::Config;
use crate::state::{Buddy, Conn, Dir, Queued};
use crate::time::Timestamp;
use crate::types::{
    BuddyKind, CommandError, ConnId, ConnectError, Delivery, Event, MsgId, Output, Presence, Record,
};

/// How a buddy's session or attempt ended, for the reconnect delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// A session that was authenticated dropped.
    Dropped,
    /// An attempt failed before authentication.
    Failed(ConnectError),
    /// We restarted a wedged handshake ourselves.
    Stalled,
}

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
    /// Unauthenticated incoming connections closed to make room for new ones.
    pub evicted_connections: u64,
    /// Handshakes restarted because they did not finish in time.
    pub handshake_restarts: u64,
    /// Pongs sent again for a ping the peer repeated.
    pub repeated_pongs: u64,
    /// Sync copies of group messages we already held (or could not place yet).
    pub sync_duplicates: u64,
    /// Wants of peers not served (too many at once).
    pub sync_ignored: u64,
    /// Messages skipped because no member had them any more (older than its retention).
    pub sync_skipped: u64,
    /// Packets dropped over a peer's rate limit.
    pub rate_limited: u64,
    /// Participant lists rejected for being longer than the group member cap.
    pub rejected_lists: u64,
    /// Group invites refused (too many from one inviter, or in total).
    pub refused_invites: u64,
    /// Pending group invites dropped (expired, or replaced at the cap).
    pub dropped_invites: u64,
    /// File offers from strangers, declined.
    pub stranger_offers: u64,
    /// Contact requests dropped to make room for newer ones.
    pub requests_evicted: u64,
    /// Messages of strangers dropped over the request inbox caps.
    pub request_messages_dropped: u64,
    /// Group messages not stored over a quota.
    pub quota_dropped: u64,
}

/// The TorChat protocol state machine. See the crate docs for the driving contract.
pub struct Node {
    pub(crate) cfg: Config,
    pub(crate) rng: Box<dyn RngCore + Send>,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    pub(crate) buddies: BTreeMap<OnionId, Buddy>,
    pub(crate) out: VecDeque<Output>,
    next_conn: u64,
    /// Counts pings, so that the newest cookie of a peer is known.
    pub(crate) ping_seq: u64,
    /// Secret from which the cookie of our pings to each peer is derived: the same cookie for
    /// a peer for as long as we run, even if we forget it in between (Python TorChat pongs
    /// the last cookie it saw as soon as it reconnects).
    cookie_secret: [u8; 32],
    pub(crate) stats: Stats,
    pub(crate) started: bool,
    pub(crate) groups: BTreeMap<torchat_wire::GroupId, crate::group::Group>,
    pub(crate) outbox: Vec<crate::types::OutboxEntry>,
    /// When `start` ran, and message ids made since (see [`MsgId::ordered`]).
    msg_epoch: u64,
    msg_count: u64,
    pub(crate) files: crate::file::Files,
    /// Extension `torchat_sync`: wants being answered from storage, and 1:1 delivery state.
    pub(crate) loads: BTreeMap<u64, crate::sync::Load>,
    pub(crate) next_load: u64,
    pub(crate) dsync: BTreeMap<OnionId, crate::direct_sync::DirectSync>,
    pub(crate) guard: crate::quota::Guard,
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
    pub fn new(cfg: Config, mut rng: Box<dyn RngCore + Send>) -> Self {
        let mut cookie_secret = [0u8; 32];
        rng.fill_bytes(&mut cookie_secret);
        Node {
            cookie_secret,
            cfg,
            rng,
            conns: BTreeMap::new(),
            buddies: BTreeMap::new(),
            out: VecDeque::new(),
            next_conn: 1,
            ping_seq: 0,
            stats: Stats::default(),
            started: false,
            groups: BTreeMap::new(),
            outbox: Vec::new(),
            msg_epoch: 0,
            msg_count: 0,
            files: Default::default(),
            loads: BTreeMap::new(),
            next_load: 0,
            dsync: BTreeMap::new(),
            guard: Default::default(),
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

    /// Restores a 1:1 message that was queued and not yet sent. Emits nothing. A recipient
    /// that is not on the list (a stranger we wrote to) comes back as a temporary buddy, so
    /// that the message is still delivered.
    pub fn restore_queued(&mut self, id: MsgId, to: OnionId, text: Vec<u8>) {
        self.restore_queued_inner(id, to, text, None);
    }

    /// As [`Node::restore_queued`], with the time the user wrote it (sent along to peers that
    /// support [`crate::DELAYED_EXT`]).
    pub fn restore_queued_at(&mut self, id: MsgId, to: OnionId, text: Vec<u8>, at: Timestamp) {
        self.restore_queued_inner(id, to, text, Some(at));
    }

    fn restore_queued_inner(
        &mut self,
        id: MsgId,
        to: OnionId,
        text: Vec<u8>,
        at: Option<Timestamp>,
    ) {
        if to == self.cfg.own_id {
            return;
        }
        let b = self
            .buddies
            .entry(to)
            .or_insert_with(|| Buddy::new(BuddyKind::Temporary));
        if b.kind != BuddyKind::Blocked {
            b.queue.push_back(Queued { id, text, at });
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
            // Until we know better, a buddy from before the restart counts as recently seen.
            if let Some(b) = self.buddies.get_mut(&id) {
                b.last_seen = Some(b.last_seen.unwrap_or(now));
            }
            self.ensure_outgoing(&id, now);
        }
    }

    // ----- network inputs -----

    /// The shell accepted an incoming connection. Returns its handle, or `None` when every
    /// connection slot is taken by authenticated sessions (the shell closes the socket).
    ///
    /// At the cap on unauthenticated connections the new one is admitted and the least
    /// promising old one is closed: one that has not pinged yet, then one whose ping named a
    /// stranger, then one naming a buddy — the oldest first within each — so that a flood of
    /// idle or slow connections cannot lock a buddy out.
    pub fn accept(&mut self, now: Timestamp) -> Option<ConnId> {
        let unauth = self
            .conns
            .values()
            .filter(|c| c.unauthenticated_incoming())
            .count();
        if unauth >= self.cfg.max_unauthenticated || self.conns.len() >= self.cfg.max_connections {
            let victim = self.eviction_victim(None)?;
            self.evict(victim, now);
        }
        let id = self.alloc_conn();
        self.conns
            .insert(id, Conn::new(Dir::In, self.cfg.max_line, now));
        Some(id)
    }

    /// The unauthenticated incoming connection to close to make room (optionally only among
    /// those naming `claiming`).
    pub(crate) fn eviction_victim(&self, claiming: Option<&OnionId>) -> Option<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.unauthenticated_incoming())
            .filter(|(_, c)| claiming.is_none_or(|id| c.claimed.as_ref() == Some(id)))
            .min_by_key(|(k, c)| {
                let rank = match &c.claimed {
                    None => 0,
                    Some(id) => match self.buddies.get(id).map(|b| b.kind) {
                        Some(BuddyKind::Permanent) => 2,
                        _ if self.buddies.get(id).is_some_and(|b| b.pinned) => 2,
                        _ => 1,
                    },
                };
                (rank, c.opened_at, **k)
            })
            .map(|(k, _)| *k)
    }

    pub(crate) fn evict(&mut self, conn: ConnId, now: Timestamp) {
        self.stats.evicted_connections += 1;
        let id = self.conn_peer(conn);
        self.event(Event::Misbehaviour {
            id,
            what: "unauthenticated connection evicted to make room",
        });
        self.close_conn(conn, now);
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
        c.established_at = now;
        c.last_rx = now;
        self.send_ping(conn, &to, now);
        if self.newest_cookie(&to).is_some() {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.both_up_at = Some(now);
            }
        }
        self.answer_pings(&to, None, now);
        self.update_presence(&to);
    }

    /// A connection closed, or an outgoing connect failed for a reason the shell cannot tell
    /// (see [`Node::handle_connect_failed`]). Unknown handles are ignored.
    pub fn handle_closed(&mut self, conn: ConnId, now: Timestamp) {
        if let Some(c) = self.conns.remove(&conn) {
            let failure = (!c.established).then_some(ConnectError::Other);
            self.after_conn_gone(conn, c, failure, now);
        }
    }

    /// An outgoing connection the core asked for could not be established, and why.
    pub fn handle_connect_failed(&mut self, conn: ConnId, why: ConnectError, now: Timestamp) {
        if let Some(c) = self.conns.remove(&conn) {
            let failure = (!c.established).then_some(why);
            self.after_conn_gone(conn, c, failure, now);
        }
    }

    /// The network is (back) up, e.g. the transport finished bootstrapping or the machine
    /// got its connection back: every wanted buddy that is offline is tried soon, spread over
    /// [`Config::network_up_spread`], whatever its backoff said.
    pub fn network_up(&mut self, now: Timestamp) {
        let spread = self.cfg.network_up_spread.as_millis() as u64;
        let ids: Vec<OnionId> = self
            .buddies
            .iter()
            .filter(|(_, b)| b.wanted() && b.out.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let delay = if spread == 0 {
                0
            } else {
                self.rng.next_u64() % spread
            };
            if let Some(b) = self.buddies.get_mut(&id) {
                b.failures = 0;
                b.next_connect = Some(now + std::time::Duration::from_millis(delay));
            }
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
                Err(_) => {
                    self.stats.bad_lines += 1;
                    // Garbage before authentication counts toward the junk limit too.
                    if self
                        .conns
                        .get(&conn)
                        .is_some_and(|c| c.unauthenticated_incoming())
                    {
                        self.junk_before_auth(conn, now);
                    }
                }
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
                        _ => self.before_auth(conn, other, now),
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
        if let Some(b) = self.buddies.get_mut(&id) {
            b.failures = 0;
            b.last_seen = Some(now);
        }
        if self.started {
            self.ensure_outgoing(&id, now);
        }
        self.request_added(&id);
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
        self.request_blocked(&id);
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
        if *to == self.cfg.own_id {
            return Err(CommandError::OwnId);
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
        // Online, nothing waiting before it, and room in the window (direct_sync.rs): written
        // now; else it waits in the queue.
        let in_order = b.queue.is_empty();
        let online_out = if b.online && in_order && self.direct_window_open(to) {
            self.ready_out(to)
        } else {
            None
        };
        let Some(b) = self.buddies.get(to) else {
            return Err(CommandError::NotABuddy);
        };
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
            Some(out) => self.send_direct(out, to, id, text, now, false),
            None => {
                if let Some(b) = self.buddies.get_mut(to) {
                    b.queue.push_back(Queued {
                        id,
                        text,
                        at: Some(now),
                    });
                }
                self.note_queued(to, id, now);
                self.want_connection(to, now);
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

    /// The cookie of our pings to `id`: SHA-256 of a per-run secret and the id, as 64
    /// lower-case hex characters (printable, no spaces, unguessable without the secret).
    pub(crate) fn cookie_for(&self, id: &OnionId) -> Vec<u8> {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"torchat ping cookie v1\0");
        h.update(self.cookie_secret);
        h.update(id.as_bytes());
        h.finalize()
            .iter()
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
        (c.established && c.pinged).then_some(out)
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
            self.after_conn_gone(conn, c, None, now);
        }
    }

    /// Bookkeeping after a connection is gone (closed by us or by the network). `failure`
    /// is set when it was an outgoing connection that never got established.
    fn after_conn_gone(
        &mut self,
        conn: ConnId,
        c: Conn,
        failure: Option<ConnectError>,
        now: Timestamp,
    ) {
        let peer = match &c.dir {
            Dir::Out { to } => Some(to.clone()),
            Dir::In => c.claimed.clone(),
        };
        let Some(id) = peer else { return };
        let Some(b) = self.buddies.get_mut(&id) else {
            return;
        };
        if b.spare == Some(conn) {
            b.spare = None;
            return;
        }
        if b.out != Some(conn) && b.inc != Some(conn) {
            // An unauthenticated incoming connection (its cookie goes with it), or a stale one.
            if b.out.is_none() && b.inc.is_none() {
                self.after_session_end(&id, None, now);
            }
            return;
        }
        if b.inc == Some(conn) && !b.online && b.out.is_some_and(|o| o > conn) {
            // The peer closed its side before the session was up, while our connection,
            // opened after its, is still in its handshake: a client that replaces its pair
            // when we connect (jtorchat) is answering on a new one. Closing ours too would
            // start the same exchange over, for ever; it stays, under its handshake timeout.
            b.inc = None;
            b.status_seen = false;
            self.update_presence(&id);
            return;
        }
        let was_up = b.inc.is_some();
        // Losing either connection of a pair ends the session: close the other one too.
        let others: Vec<ConnId> = [b.out, b.inc, b.spare]
            .into_iter()
            .flatten()
            .filter(|o| *o != conn)
            .collect();
        b.out = None;
        b.inc = None;
        b.spare = None;
        b.online = false;
        b.status_seen = false;
        for o in others {
            if self.conns.remove(&o).is_some() {
                self.out.push_back(Output::Close { conn: o });
            }
        }
        let how = match failure {
            _ if was_up => SessionEnd::Dropped,
            Some(why) => SessionEnd::Failed(why),
            // It was established (the peer's side answered) and closed before the
            // handshake finished: the peer is there; retry as soon as after a refusal.
            None => SessionEnd::Failed(ConnectError::Refused),
        };
        self.after_session_end(&id, Some(how), now);
    }

    /// A buddy has no session (any more): schedule the next attempt, or forget a temporary
    /// buddy nobody needs. `how` is `None` when there was no attempt of ours to judge.
    pub(crate) fn after_session_end(
        &mut self,
        id: &OnionId,
        how: Option<SessionEnd>,
        now: Timestamp,
    ) {
        self.files_session_ended(id, now);
        self.sync_on_session_end(id, now);
        let Some(b) = self.buddies.get(id) else {
            return;
        };
        // A stranger whose ping waits for our pong is worth a connection too.
        if b.wanted() || (b.kind != BuddyKind::Blocked && self.has_claims(id)) {
            if let Some(how) = how {
                let delay = self.reconnect_delay(id, how, now);
                if let Some(b) = self.buddies.get_mut(id) {
                    if let SessionEnd::Failed(_) = how {
                        b.failures = b.failures.saturating_add(1);
                    }
                    b.next_connect = Some(now + delay);
                }
            }
        } else if b.kind == BuddyKind::Temporary
            && b.out.is_none()
            && b.inc.is_none()
            && !self.has_claims(id)
        {
            self.buddies.remove(id);
            self.event(Event::Presence {
                id: id.clone(),
                presence: Presence::Offline,
            });
            return;
        }
        self.update_presence(id);
    }

    /// How long to wait before the next attempt (see `docs/core.md`, "Reconnection").
    fn reconnect_delay(
        &mut self,
        id: &OnionId,
        how: SessionEnd,
        now: Timestamp,
    ) -> std::time::Duration {
        use std::time::Duration;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let Some(b) = self.buddies.get(id) else {
            return self.cfg.backoff_max;
        };
        let recent = b.last_seen.is_some_and(|t| now.since(t) < self.cfg.recent);
        let failures = b.failures;
        let cfg = &self.cfg;
        let (lo, hi) = match how {
            SessionEnd::Dropped => (
                ms(cfg.reconnect_after_drop.0),
                ms(cfg.reconnect_after_drop.1),
            ),
            SessionEnd::Failed(why) => {
                let mut cap = if recent {
                    cfg.backoff_max_recent
                } else {
                    cfg.backoff_max
                };
                if why == ConnectError::Refused {
                    cap = cap.min(cfg.backoff_max_refused);
                }
                let base = ms(cfg.backoff_initial)
                    .saturating_mul(1u64 << failures.min(20))
                    .min(ms(cap));
                (base.saturating_mul(3) / 4, base.saturating_mul(5) / 4)
            }
            SessionEnd::Stalled => {
                let d = ms(cfg.reconnect_after_drop.0);
                (d / 2, d)
            }
        };
        let span = hi.saturating_sub(lo);
        let jitter = if span == 0 {
            0
        } else {
            self.rng.next_u64() % (span + 1)
        };
        Duration::from_millis(lo + jitter)
    }

    /// Whether some unauthenticated incoming connection names `id` (its ping is pending).
    pub(crate) fn has_claims(&self, id: &OnionId) -> bool {
        self.conns
            .values()
            .any(|c| c.unauthenticated_incoming() && c.claimed.as_ref() == Some(id))
    }

    /// Closes every connection of a buddy without forgetting it.
    pub(crate) fn disconnect_buddy(&mut self, id: &OnionId, now: Timestamp) {
        let Some(b) = self.buddies.get_mut(id) else {
            return;
        };
        let conns: Vec<ConnId> = [b.out, b.inc, b.spare].into_iter().flatten().collect();
        b.out = None;
        b.inc = None;
        b.spare = None;
        b.online = false;
        b.status_seen = false;
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
        self.files_session_ended(id, now);
        self.update_presence(id);
    }

    /// Disconnects and forgets a buddy.
    pub(crate) fn drop_buddy(&mut self, id: &OnionId, now: Timestamp) {
        self.files_buddy_removed(id, now);
        self.disconnect_buddy(id, now);
        self.buddies.remove(id);
    }

    /// Opens our outgoing connection to `id` now unless one exists (the buddy pinged us, the
    /// user asked, we start).
    pub(crate) fn ensure_outgoing(&mut self, id: &OnionId, now: Timestamp) {
        let Some(b) = self.buddies.get(id) else {
            return;
        };
        if b.out.is_some() || b.kind == BuddyKind::Blocked || *id == self.cfg.own_id {
            return;
        }
        if let Some(conn) = self.open_outgoing(id, now) {
            if let Some(b) = self.buddies.get_mut(id) {
                b.out = Some(conn);
                b.next_connect = None;
            }
            self.update_presence(id);
        }
    }

    /// Wants a connection to `id` without hurrying: dials now unless an attempt is running
    /// or a retry is already scheduled (so that repeated calls cannot defeat the backoff).
    pub(crate) fn want_connection(&mut self, id: &OnionId, now: Timestamp) {
        let Some(b) = self.buddies.get(id) else {
            return;
        };
        if b.out.is_some() || b.next_connect.is_some() {
            return;
        }
        self.ensure_outgoing(id, now);
    }

    /// Allocates a connection and asks the shell to dial `id`; `None` at the connection cap
    /// (a retry is scheduled instead).
    pub(crate) fn open_outgoing(&mut self, id: &OnionId, now: Timestamp) -> Option<ConnId> {
        if self.conns.len() >= self.cfg.max_connections {
            match self.eviction_victim(None) {
                Some(v) => self.evict(v, now),
                None => {
                    let delay = self.cfg.backoff_initial;
                    if let Some(b) = self.buddies.get_mut(id) {
                        b.next_connect = Some(now + delay);
                    }
                    return None;
                }
            }
        }
        let conn = self.alloc_conn();
        self.conns.insert(
            conn,
            Conn::new(Dir::Out { to: id.clone() }, self.cfg.max_line, now),
        );
        self.out.push_back(Output::Connect {
            conn,
            to: id.clone(),
        });
        Some(conn)
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
