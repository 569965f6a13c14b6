//! The two-connection handshake: `ping` on every outgoing connection, connect back on an
//! incoming `ping`, exactly one `pong` per outgoing connection, and authentication of an
//! incoming connection only by a `pong` carrying the cookie we sent to the id its `ping` named.

use torchat_wire::{OnionId, Packet};

use crate::node::Node;
use crate::state::Buddy;
use crate::time::Timestamp;
use crate::types::{BuddyKind, ConnId, Event};

impl Node {
    /// Sends (or re-sends) our ping on an established outgoing connection. The cookie is made
    /// once per connection and stays the same for re-pings.
    pub(crate) fn send_ping(&mut self, conn: ConnId, _to: &OnionId, now: Timestamp) {
        let cookie = match self.conns.get(&conn).and_then(|c| c.ping_cookie.clone()) {
            Some(c) => c,
            None => self.new_cookie(),
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.ping_cookie = Some(cookie.clone());
        c.last_ping = now;
        let from = self.cfg.own_id.clone();
        self.send(conn, &Packet::Ping { from, cookie });
    }

    /// Sends `pong` for the buddy's latest ping on our outgoing connection, once per connection.
    pub(crate) fn maybe_pong(&mut self, id: &OnionId) {
        let Some(b) = self.buddies.get(id) else {
            return;
        };
        let (Some(out), Some(cookie)) = (b.out, b.peer_cookie.clone()) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&out) else {
            return;
        };
        if !c.established || c.ping_cookie.is_none() || c.pong_sent {
            return;
        }
        c.pong_sent = true;
        self.send(out, &Packet::Pong { cookie });
        self.maybe_send_info(id);
    }

    /// A `ping` on an incoming connection.
    pub(crate) fn handle_ping(
        &mut self,
        conn: ConnId,
        from: OnionId,
        cookie: Vec<u8>,
        now: Timestamp,
    ) {
        if from == self.cfg.own_id {
            return self.refuse_ping(conn, Some(from), "ping naming our own id", now);
        }
        if self
            .buddies
            .get(&from)
            .is_some_and(|b| b.kind == BuddyKind::Blocked)
        {
            return self.refuse_ping(conn, None, "ping from a blocked id", now);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match &c.claimed {
            Some(prev) if *prev != from => {
                let prev = prev.clone();
                return self.refuse_ping(conn, Some(prev), "ping with a second id", now);
            }
            Some(_) => {
                // A repeated ping on the same connection (Python TorChat does this). Our pong
                // for this connection pair has gone out or will; nothing else to do.
                return;
            }
            None => c.claimed = Some(from.clone()),
        }
        if !self.buddies.contains_key(&from) {
            let temps = self
                .buddies
                .values()
                .filter(|b| b.kind == BuddyKind::Temporary)
                .count();
            if temps >= self.cfg.max_temporary_buddies {
                return self.refuse_ping(conn, None, "too many temporary buddies", now);
            }
            self.buddies
                .insert(from.clone(), Buddy::new(BuddyKind::Temporary));
            self.event(Event::BuddyList {
                id: from.clone(),
                kind: Some(BuddyKind::Temporary),
            });
        }
        let Some(b) = self.buddies.get_mut(&from) else {
            return;
        };
        if b.inc.is_some() {
            // Already connected: keep the good connection. This one stays unauthenticated
            // unless a valid pong arrives on it (then it replaces the old one).
            return;
        }
        // A valid ping means the buddy is up: reconnect now, whatever the backoff said.
        b.failures = 0;
        b.next_connect = None;
        let changed = b.peer_cookie.as_ref() != Some(&cookie);
        b.peer_cookie = Some(cookie);
        let out = b.out;
        if let Some(out) = out {
            let stale = self.conns.get(&out).is_some_and(|c| c.pong_sent);
            if stale && changed {
                // We already answered an earlier ping on this connection; a new cookie means a
                // new session on its side, which only a fresh connection can answer.
                self.close_conn(out, now);
            }
        }
        self.ensure_outgoing(&from, now);
        self.maybe_pong(&from);
    }

    fn refuse_ping(
        &mut self,
        conn: ConnId,
        id: Option<OnionId>,
        what: &'static str,
        now: Timestamp,
    ) {
        self.stats.refused_pings += 1;
        self.event(Event::Misbehaviour { id, what });
        self.close_conn(conn, now);
    }

    /// A `pong` on an incoming connection.
    pub(crate) fn handle_pong(&mut self, conn: ConnId, cookie: Vec<u8>, now: Timestamp) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let Some(id) = c.claimed.clone() else {
            self.stats.ignored_pongs += 1;
            return;
        };
        if c.authenticated {
            // jtorchat sends its pong twice.
            self.stats.ignored_pongs += 1;
            return;
        }
        // The cookie must be the one we sent, on our outgoing connection, to the id this
        // connection's ping named: only whoever receives connections for that onion id has it.
        let expected = self
            .buddies
            .get(&id)
            .and_then(|b| b.out)
            .and_then(|o| self.conns.get(&o))
            .and_then(|o| o.ping_cookie.clone());
        if expected.as_deref() != Some(&cookie[..]) {
            self.stats.ignored_pongs += 1;
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.authenticated = true;
        c.authenticated_at = now;
        c.last_rx = now;
        let Some(b) = self.buddies.get_mut(&id) else {
            return;
        };
        let old = b.inc.replace(conn);
        b.failures = 0;
        if let Some(old) = old {
            // A proven new connection replaces the old one (Python TorChat does the same).
            if self.conns.remove(&old).is_some() {
                self.out
                    .push_back(crate::types::Output::Close { conn: old });
            }
        }
        self.maybe_pong(&id);
        self.maybe_send_info(&id);
        self.update_presence(&id);
    }

    /// After the handshake: `client`, `version`, `supports`, profile, `add_me` (permanent
    /// buddies only), then `status` — once per outgoing connection.
    pub(crate) fn maybe_send_info(&mut self, id: &OnionId) {
        let Some(b) = self.buddies.get(id) else {
            return;
        };
        if b.inc.is_none() {
            return;
        }
        let permanent = b.kind == BuddyKind::Permanent;
        let Some(out) = self.ready_out(id) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&out) else {
            return;
        };
        if c.info_sent || !c.pong_sent {
            return;
        }
        c.info_sent = true;
        let interval = self.cfg.keepalive_interval;
        c.next_keepalive = c.last_ping + interval;
        let cfg = &self.cfg;
        let mut packets = vec![
            Packet::Client(cfg.client_name.clone().into_bytes()),
            Packet::Version(cfg.client_version.clone().into_bytes()),
            Packet::Supports(self.supported_extensions()),
            Packet::ProfileName(cfg.profile_name.clone()),
            Packet::ProfileText(cfg.profile_text.clone()),
        ];
        if permanent {
            packets.push(Packet::AddMe(Default::default()));
        }
        packets.push(Packet::Status(cfg.status.clone()));
        for p in &packets {
            self.send(out, p);
        }
    }

    /// Extensions we announce in `supports`.
    pub(crate) fn supported_extensions(&self) -> Vec<String> {
        vec![
            "groupchat".to_owned(),
            crate::group::SIGNED_EXT.to_owned(),
            crate::file::FILE_RESUME_EXT.to_owned(),
        ]
    }

    /// A line other than ping/pong on an incoming connection that is not authenticated:
    /// dropped, never acted on; too many and the connection is closed.
    pub(crate) fn junk_before_auth(&mut self, conn: ConnId, now: Timestamp) {
        self.stats.unauthenticated_lines += 1;
        let max = self.cfg.max_unauthenticated_lines;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.junk_lines += 1;
        if c.junk_lines > max {
            let id = c.claimed.clone();
            self.event(Event::Misbehaviour {
                id,
                what: "too many lines before authentication",
            });
            self.close_conn(conn, now);
        }
    }

    /// A packet on one of our outgoing connections. Peers only send file-transfer packets
    /// back this way (handled in `file`); everything else is ignored (as Python TorChat does).
    pub(crate) fn handle_on_outgoing(
        &mut self,
        conn: ConnId,
        to: &OnionId,
        p: Packet,
        now: Timestamp,
    ) {
        let authenticated = self.buddies.get(to).is_some_and(|b| b.inc.is_some());
        let _ = conn;
        if authenticated && crate::file::is_file_packet(&p) {
            self.handle_file_packet(to, p, now);
        }
    }
}
