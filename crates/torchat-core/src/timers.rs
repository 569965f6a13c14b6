//! Deadlines: connect and handshake timeouts, re-pings, keepalives, silence, reconnects.

use torchat_wire::Packet;

use crate::node::{Node, SessionEnd};
use crate::state::{Conn, Dir};
use crate::time::Timestamp;
use crate::types::{ConnId, Event};

/// What a connection needs at its next deadline.
enum Due {
    Nothing,
    Close(&'static str),
    /// The handshake with this buddy did not finish in time: start it over.
    Restart,
    Ping,
    Keepalive,
}

impl Node {
    /// The earliest time at which [`Node::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        for (id, c) in &self.conns {
            for t in self.conn_deadlines(*id, c).into_iter().flatten() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        for b in self.buddies.values() {
            if let Some(t) = b.next_connect {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        if let Some(t) = self.group_timeout() {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if let Some(t) = self.file_timeout() {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if let Some(t) = self.guard_timeout() {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next
    }

    /// Does everything that is due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            match self.due(id, now) {
                Due::Nothing => {}
                Due::Close(what) => {
                    let peer = self.conn_peer(id);
                    if what == "silent for too long" {
                        self.event(Event::Misbehaviour { id: peer, what });
                    }
                    self.close_conn(id, now);
                }
                Due::Restart => self.restart_handshake(id, now),
                Due::Ping => {
                    if let Some(Dir::Out { to }) = self.conns.get(&id).map(|c| c.dir.clone()) {
                        self.send_ping(id, &to, now);
                    }
                }
                Due::Keepalive => {
                    let interval = self.cfg.keepalive_interval;
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.next_keepalive = now + interval;
                    }
                    let status = self.cfg.status.clone();
                    self.send(id, &Packet::Status(status));
                }
            }
        }
        let reconnect: Vec<_> = self
            .buddies
            .iter()
            .filter(|(_, b)| b.next_connect.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in reconnect {
            let claims = self.has_claims(&id);
            if let Some(b) = self.buddies.get_mut(&id) {
                b.next_connect = None;
                if !b.wanted() && !claims {
                    continue;
                }
            }
            self.ensure_outgoing(&id, now);
        }
        self.handle_group_timeout(now);
        self.handle_file_timeout(now);
        self.handle_guard_timeout(now);
    }

    /// The handshake timeout that applies after `stalls` restarts without success.
    fn handshake_limit(&self, stalls: u32) -> std::time::Duration {
        self.cfg.handshake_timeout * (1u32 << stalls.min(2))
    }

    /// Deadlines of one connection: (close or restart, ping or keepalive).
    fn conn_deadlines(&self, id: ConnId, c: &Conn) -> [Option<Timestamp>; 2] {
        let cfg = &self.cfg;
        match &c.dir {
            Dir::Out { .. } if !c.established => [Some(c.opened_at + cfg.connect_timeout), None],
            Dir::Out { to } => {
                let Some(b) = self.buddies.get(to) else {
                    return [None, None];
                };
                let keepalive = c.info_sent.then_some(c.next_keepalive);
                if b.online && b.spare != Some(id) {
                    return [None, keepalive];
                }
                let stall = match c.both_up_at {
                    Some(t) => t + self.handshake_limit(b.stalls),
                    None => c.established_at + cfg.connect_back_timeout,
                };
                let ping = b.inc.is_none().then_some(c.last_ping + cfg.reping_interval);
                let second = match (ping, keepalive) {
                    (Some(p), Some(k)) => Some(p.min(k)),
                    (p, k) => p.or(k),
                };
                [Some(stall), second]
            }
            Dir::In if c.claimed.is_none() => [Some(c.opened_at + cfg.ping_timeout), None],
            Dir::In if !c.authenticated => [Some(c.opened_at + cfg.unauthenticated_timeout), None],
            Dir::In => [Some(c.last_rx + cfg.silence_timeout), None],
        }
    }

    fn due(&self, id: ConnId, now: Timestamp) -> Due {
        let Some(c) = self.conns.get(&id) else {
            return Due::Nothing;
        };
        let [first, second] = self.conn_deadlines(id, c);
        if first.is_some_and(|t| now >= t) {
            return match &c.dir {
                Dir::Out { .. } if !c.established => Due::Close("connect timed out"),
                Dir::Out { .. } => Due::Restart,
                Dir::In if c.claimed.is_none() => Due::Close("no ping in time"),
                Dir::In if !c.authenticated => Due::Close("unauthenticated for too long"),
                Dir::In => Due::Close("silent for too long"),
            };
        }
        if second.is_some_and(|t| now >= t) {
            let Dir::Out { to } = &c.dir else {
                return Due::Nothing;
            };
            let authenticated = self.buddies.get(to).is_some_and(|b| b.inc.is_some());
            if !authenticated && now >= c.last_ping + self.cfg.reping_interval {
                return Due::Ping;
            }
            if c.info_sent && now >= c.next_keepalive {
                return Due::Keepalive;
            }
        }
        Due::Nothing
    }

    /// Our outgoing connection `conn` did not lead to a session in time. A spare is just
    /// closed; otherwise the handshake starts over on fresh connections, at once.
    fn restart_handshake(&mut self, conn: ConnId, now: Timestamp) {
        let Some(Dir::Out { to }) = self.conns.get(&conn).map(|c| c.dir.clone()) else {
            return;
        };
        let Some(b) = self.buddies.get_mut(&to) else {
            return;
        };
        if b.spare == Some(conn) {
            b.spare = None;
            self.close_conn_quietly(conn);
            return;
        }
        self.stats.handshake_restarts += 1;
        b.stalls = b.stalls.saturating_add(1);
        let session: Vec<ConnId> = [b.out, b.inc, b.spare].into_iter().flatten().collect();
        b.out = None;
        b.inc = None;
        b.spare = None;
        b.online = false;
        b.status_seen = false;
        for c in session {
            self.close_conn_quietly(c);
        }
        self.event(Event::Misbehaviour {
            id: Some(to.clone()),
            what: "handshake did not finish in time; starting over",
        });
        self.files_session_ended(&to, now);
        if self.buddies.get(&to).is_some_and(|b| b.wanted()) || self.has_claims(&to) {
            self.ensure_outgoing(&to, now);
        } else {
            self.after_session_end(&to, Some(SessionEnd::Stalled), now);
        }
        self.update_presence(&to);
    }
}
