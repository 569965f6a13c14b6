//! Deadlines: connect and handshake timeouts, re-pings, keepalives, silence, reconnects.

use torchat_wire::Packet;

use crate::node::Node;
use crate::state::Dir;
use crate::time::Timestamp;
use crate::types::{ConnId, Event};

/// What a connection needs at its next deadline.
enum Due {
    Nothing,
    Close(&'static str),
    Ping,
    Keepalive,
}

impl Node {
    /// The earliest time at which [`Node::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        let mut at = |t: Timestamp| next = Some(next.map_or(t, |n| n.min(t)));
        for c in self.conns.values() {
            let cfg = &self.cfg;
            match &c.dir {
                Dir::Out { to } if !c.established => at(c.opened_at + cfg.connect_timeout),
                Dir::Out { to } => {
                    if self.buddies.get(to).is_some_and(|b| b.inc.is_none()) {
                        at(c.last_ping + cfg.reping_interval);
                        at(c.opened_at + cfg.handshake_timeout);
                    }
                    if c.info_sent {
                        at(c.next_keepalive);
                    }
                }
                Dir::In if !c.authenticated => at(c.opened_at + cfg.unauthenticated_timeout),
                Dir::In => at(c.last_rx + cfg.silence_timeout),
            }
        }
        for b in self.buddies.values() {
            if let Some(t) = b.next_connect {
                at(t);
            }
        }
        if let Some(t) = self.group_timeout() {
            at(t);
        }
        if let Some(t) = self.file_timeout() {
            at(t);
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
            if let Some(b) = self.buddies.get_mut(&id) {
                b.next_connect = None;
                if !b.wanted() {
                    continue;
                }
            }
            self.ensure_outgoing(&id, now);
        }
        self.handle_group_timeout(now);
        self.handle_file_timeout(now);
    }

    fn due(&self, id: ConnId, now: Timestamp) -> Due {
        let Some(c) = self.conns.get(&id) else {
            return Due::Nothing;
        };
        let cfg = &self.cfg;
        match &c.dir {
            Dir::Out { .. } if !c.established => {
                if now >= c.opened_at + cfg.connect_timeout {
                    return Due::Close("connect timed out");
                }
            }
            Dir::Out { to } => {
                if self.buddies.get(to).is_some_and(|b| b.inc.is_none()) {
                    if now >= c.opened_at + cfg.handshake_timeout {
                        return Due::Close("handshake timed out");
                    }
                    if now >= c.last_ping + cfg.reping_interval {
                        return Due::Ping;
                    }
                }
                if c.info_sent && now >= c.next_keepalive {
                    return Due::Keepalive;
                }
            }
            Dir::In if !c.authenticated => {
                if now >= c.opened_at + cfg.unauthenticated_timeout {
                    return Due::Close("unauthenticated for too long");
                }
            }
            Dir::In => {
                if now >= c.last_rx + cfg.silence_timeout {
                    return Due::Close("silent for too long");
                }
            }
        }
        Due::Nothing
    }
}
