//! The two-connection handshake: `ping` on every outgoing connection, connect back on an
//! incoming `ping`, exactly one `pong` per outgoing connection, and authentication of an
//! incoming connection only by a `pong` carrying the cookie we sent to the id its `ping` named.

use torchat_wire::{OnionId, Packet};

use crate::node::Node;
use crate::state::{Buddy, Dir};
use crate::time::Timestamp;
use crate::types::{BuddyKind, ConnId, Event};

impl Node {
    /// Sends (or re-sends) our ping on an established outgoing connection, with the cookie
    /// for that buddy ([`Node::cookie_for`]: the same on every connection to it while we run,
    /// as Python TorChat does, so a pong for it authenticates whichever of our connections
    /// carried the ping).
    pub(crate) fn send_ping(&mut self, conn: ConnId, to: &OnionId, now: Timestamp) {
        let cookie = self.cookie_for(to);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.pinged = true;
        c.last_ping = now;
        let from = self.cfg.own_id.clone();
        self.send(conn, &Packet::Ping { from, cookie });
    }

    /// The cookie of the newest ping from `id` on a connection that is still open.
    pub(crate) fn newest_cookie(&self, id: &OnionId) -> Option<Vec<u8>> {
        self.conns
            .values()
            .filter(|c| matches!(c.dir, Dir::In) && c.claimed.as_ref() == Some(id))
            .filter_map(|c| c.cookie.as_ref())
            .max_by_key(|(_, seq)| *seq)
            .map(|(cookie, _)| cookie.clone())
    }

    /// Makes sure the buddy's newest ping is answered with a `pong` on our outgoing connection
    /// (INTEROP-NOTES pitfall 7). `repeat` is the cookie of a ping that just arrived.
    ///
    /// - Our connection has not ponged yet: pong the newest cookie on it.
    /// - It ponged that very cookie: pong again only if a ping with it just arrived (jtorchat
    ///   and Python TorChat repeat it until they accept a pong, or reconnect with the same
    ///   cookie; ruby-torchat never sends a cookie twice, and drops a link on a second pong).
    /// - It ponged an older cookie (the peer opened another connection with a new cookie): a
    ///   fresh connection carries ping + pong for the new one. While a session is up, that is
    ///   a spare connection beside it, so a forged ping cannot break the session.
    pub(crate) fn answer_pings(&mut self, id: &OnionId, repeat: Option<&[u8]>, now: Timestamp) {
        let Some(newest) = self.newest_cookie(id) else {
            return;
        };
        let Some(b) = self.buddies.get(id) else {
            return;
        };
        let session_up = b.inc.is_some();
        // Where the answer goes: a spare if there is one (it exists for a new cookie while the
        // session is up), else our session's outgoing connection.
        let Some(target) = b.spare.or(b.out) else {
            self.ensure_outgoing(id, now);
            return;
        };
        let is_spare = b.spare == Some(target);
        let Some(c) = self.conns.get(&target) else {
            return;
        };
        if !c.established || !c.pinged {
            return; // answered when it is established
        }
        match c.ponged.clone() {
            None => self.pong(target, id, newest, now),
            Some((done, _)) if done == newest => {
                if repeat == Some(&newest[..]) {
                    self.pong(target, id, newest, now);
                }
            }
            Some(_) if session_up && !is_spare => {
                // The session's connection answered an older cookie: a spare beside the
                // session answers the new one (a forged ping then costs a connection, not the
                // session).
                self.open_spare(id, now);
            }
            Some(_) => {
                // Answered an older cookie on this connection: answer the new one on a fresh
                // connection.
                self.close_conn_quietly(target);
                if let Some(b) = self.buddies.get_mut(id) {
                    if is_spare {
                        b.spare = None;
                    } else {
                        b.out = None;
                    }
                }
                if is_spare {
                    self.open_spare(id, now);
                } else {
                    self.ensure_outgoing(id, now);
                }
            }
        }
    }

    /// Sends `pong <cookie>` on `conn` (rate-limited for repeats), then the info packets if
    /// the session is authenticated.
    fn pong(&mut self, conn: ConnId, id: &OnionId, cookie: Vec<u8>, now: Timestamp) {
        let min = self.cfg.repong_interval;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some((prev, at)) = &c.ponged {
            if *prev == cookie && now < *at + min {
                return;
            }
            self.stats.repeated_pongs += 1;
        }
        c.ponged = Some((cookie.clone(), now));
        self.send(conn, &Packet::Pong { cookie });
        self.maybe_send_info(id, now);
    }

    /// Opens a spare outgoing connection beside a running session (one at a time).
    fn open_spare(&mut self, id: &OnionId, now: Timestamp) {
        if self.buddies.get(id).is_none_or(|b| b.spare.is_some()) {
            return;
        }
        if let Some(conn) = self.open_outgoing(id, now) {
            if let Some(b) = self.buddies.get_mut(id) {
                b.spare = Some(conn);
            }
        }
    }

    /// Closes a connection we hold without ending the session it belonged to.
    pub(crate) fn close_conn_quietly(&mut self, conn: ConnId) {
        if self.conns.remove(&conn).is_some() {
            self.out.push_back(crate::types::Output::Close { conn });
        }
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
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let repeat = match &c.claimed {
            Some(prev) if *prev != from => {
                let prev = prev.clone();
                return self.refuse_ping(conn, Some(prev), "ping with a second id", now);
            }
            Some(_) => c.cookie.as_ref().is_some_and(|(old, _)| *old == cookie),
            None => false,
        };
        if c.claimed.is_none() {
            // Room for it among the connections naming the same id?
            let same = self
                .conns
                .values()
                .filter(|o| o.unauthenticated_incoming() && o.claimed.as_ref() == Some(&from))
                .count();
            if same >= self.cfg.max_unauthenticated_per_id {
                if let Some(v) = self.eviction_victim(Some(&from)) {
                    self.evict(v, now);
                }
            }
        }
        if !self.buddies.contains_key(&from) {
            // Group members we do not know have their own cap (quota.rs).
            if self.stranger_count() >= self.cfg.max_temporary_buddies {
                return self.refuse_ping(conn, None, "too many temporary buddies", now);
            }
            self.buddies
                .insert(from.clone(), Buddy::new(BuddyKind::Temporary));
            self.event(Event::BuddyList {
                id: from.clone(),
                kind: Some(BuddyKind::Temporary),
            });
        }
        self.ping_seq += 1;
        let seq = self.ping_seq;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.claimed = Some(from.clone());
        if !repeat {
            c.cookie = Some((cookie.clone(), seq));
        }
        let Some(b) = self.buddies.get_mut(&from) else {
            return;
        };
        let session_up = b.inc.is_some();
        if !session_up {
            // A valid ping means the buddy is up: connect now, whatever the backoff said.
            b.failures = 0;
            b.next_connect = None;
        }
        let out = b.out;
        if let Some(out) = out {
            if let Some(o) = self.conns.get_mut(&out) {
                if o.established && o.both_up_at.is_none() {
                    o.both_up_at = Some(now);
                }
            }
        }
        // Every valid ping is answered with a pong for its cookie (at most once a second): a
        // repeated ping, or the same cookie on a new connection, means the peer did not take
        // the pong we sent before.
        self.answer_pings(&from, Some(&cookie[..]), now);
        self.update_presence(&from);
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
        // The cookie must be the one we ping this id with: derived from our secret and the id,
        // it only ever goes out on our outgoing connections to that onion id, so only whoever
        // receives connections for the id can know it (even if that connection of ours has
        // closed since: Python TorChat pongs once per connection, and pongs the last cookie it
        // saw when it reconnects) — and this connection's ping must have named that id.
        if !self.buddies.contains_key(&id) || cookie != self.cookie_for(&id) {
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
        b.stalls = 0;
        b.next_connect = None;
        b.last_seen = Some(now);
        if let Some(old) = old {
            // A proven new connection replaces the old one (Python TorChat does the same).
            self.close_conn_quietly(old);
            // If we opened a spare for its new cookie, that one is our connection now: the
            // buddy starts a new session (it restarted), so it is online again only after its
            // next status.
            if let Some(b) = self.buddies.get_mut(&id) {
                if let Some(spare) = b.spare.take() {
                    let old_out = b.out.replace(spare);
                    b.online = false;
                    b.status_seen = false;
                    if let Some(o) = old_out {
                        self.close_conn_quietly(o);
                    }
                    self.files_session_ended(&id, now);
                }
            }
        }
        if self.buddies.get(&id).is_some_and(|b| b.out.is_none()) {
            self.ensure_outgoing(&id, now);
        }
        self.answer_pings(&id, None, now);
        self.maybe_send_info(&id, now);
        self.update_presence(&id);
        // It said it was online before we could believe it: now we can.
        let early = self
            .conns
            .get_mut(&conn)
            .and_then(|c| c.early_status.take());
        if let Some(status) = early {
            self.handle_session_packet(&id, Packet::Status(status), now);
        }
    }

    /// After the handshake: `client`, `version`, `supports`, profile, `add_me` (permanent
    /// buddies only), then `status` — once per outgoing connection.
    pub(crate) fn maybe_send_info(&mut self, id: &OnionId, now: Timestamp) {
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
        if c.info_sent || c.ponged.is_none() {
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
        // If its status came first, it is online now.
        self.maybe_online(id, now);
    }

    /// Extensions we announce in `supports`.
    pub(crate) fn supported_extensions(&self) -> Vec<String> {
        let mut exts = vec![
            "groupchat".to_owned(),
            crate::group::SIGNED_EXT.to_owned(),
            crate::file::FILE_RESUME_EXT.to_owned(),
            crate::requests::DELAYED_EXT.to_owned(),
        ];
        if self.cfg.sync {
            exts.push(crate::sync::SYNC_EXT.to_owned());
        }
        exts
    }

    /// A line other than ping/pong on an incoming connection that is not authenticated:
    /// dropped, never acted on; too many and the connection is closed.
    /// A packet other than ping/pong on an incoming connection that is not authenticated: not
    /// acted on; a `status` is remembered (and applied if the connection authenticates), the
    /// rest dropped; too many and the connection is closed.
    pub(crate) fn before_auth(&mut self, conn: ConnId, p: Packet, now: Timestamp) {
        if let Packet::Status(s) = p {
            if let Some(c) = self.conns.get_mut(&conn) {
                if c.claimed.is_some() {
                    c.early_status = Some(s);
                }
            }
        }
        self.junk_before_auth(conn, now);
    }

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
            // Offers count toward the peer's limits too (quota.rs).
            if let Some(p) = self.screen(to, p, now) {
                self.handle_file_packet(to, p, now);
            }
        }
    }
}
