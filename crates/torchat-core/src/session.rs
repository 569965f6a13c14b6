//! What an authenticated buddy can tell us: info, status, buddy-list requests, messages.

use torchat_wire::{OnionId, Packet};

use crate::node::Node;
use crate::time::Timestamp;
use crate::types::{BuddyKind, Delivery, Event, Record};

/// Prefix of queued 1:1 messages delivered late, as the legacy clients write it.
pub const DELAYED_PREFIX: &[u8] = b"[delayed] ";

impl Node {
    /// A packet from `id` on its authenticated incoming connection.
    pub(crate) fn handle_session_packet(&mut self, id: &OnionId, p: Packet, now: Timestamp) {
        // Rate limits, contact requests, invite and list caps (quota.rs).
        let Some(p) = self.screen(id, p, now) else {
            return;
        };
        match p {
            Packet::Status(s) => self.on_status(id, s, now),
            Packet::Client(v) => self.update_info(id, |i| i.client = Some(v)),
            Packet::Version(v) => self.update_info(id, |i| i.version = Some(v)),
            Packet::ProfileName(v) => self.update_info(id, |i| i.profile_name = Some(v)),
            Packet::ProfileText(v) => self.update_info(id, |i| i.profile_text = Some(v)),
            Packet::Supports(exts) => {
                if let Some(b) = self.buddies.get_mut(id) {
                    b.supports = exts.iter().cloned().collect();
                }
                self.remember_extensions(id, &exts);
                self.update_info(id, |i| i.supports = exts);
            }
            Packet::AddMe(_) => self.on_add_me(id, now),
            Packet::RemoveMe(_) => self.on_remove_me(id, now),
            Packet::Message(text) => self.on_message(id, text, now),
            Packet::SyncMessage {
                id: wire,
                time,
                text,
            } => self.on_sync_message(id, wire, time, text, now),
            Packet::SyncAck(ids) => self.on_sync_ack(id, ids, now),
            Packet::Disconnect(_) => self.disconnect_and_retry(id, now),
            // Accepted and ignored: avatars, typing notifications, latency probes, broadcasts,
            // replies to our unknown commands, file control for transfers we never started.
            Packet::ProfileAvatar(_)
            | Packet::ProfileAvatarAlpha(_)
            | Packet::TypingStart(_)
            | Packet::TypingThinking(_)
            | Packet::TypingStop(_)
            | Packet::LatencyPong(_)
            | Packet::BroadcastMessage(_) => {}
            Packet::NotImplemented(what) => self.on_not_implemented(id, what.as_deref(), now),
            Packet::LatencyPing(token) => {
                if let Some(out) = self.ready_out(id) {
                    self.send(out, &Packet::LatencyPong(token));
                }
            }
            // Real clients send file packets on both connections (Python TorChat accepts both).
            p if crate::file::is_file_packet(&p) => self.handle_file_packet(id, p, now),
            // Handled before we get here.
            Packet::Ping { .. } | Packet::Pong { .. } => {}
            p @ (Packet::GroupInvite { .. }
            | Packet::GroupParticipants { .. }
            | Packet::GroupIsParticipating { .. }
            | Packet::GroupParticipating { .. }
            | Packet::GroupNotParticipating { .. }
            | Packet::GroupJoin { .. }
            | Packet::GroupInvited { .. }
            | Packet::GroupLeave { .. }
            | Packet::GroupMessage { .. }
            | Packet::GroupEchoedMessage { .. }
            | Packet::GroupSignedMessage { .. }
            | Packet::GroupSignedEcho { .. }
            | Packet::GroupSyncMessage { .. }
            | Packet::GroupSyncAck { .. }
            | Packet::GroupSyncDigest { .. }
            | Packet::GroupSyncWant { .. }
            | Packet::GroupSyncEnd { .. }
            | Packet::GroupSyncTell { .. }) => self.handle_group_packet(id, p, now),
            other => self.not_implemented(id, other.command().to_owned()),
        }
    }

    /// Answers an unknown command with `not_implemented <command>`.
    pub(crate) fn not_implemented(&mut self, id: &OnionId, command: String) {
        self.stats.not_implemented_sent += 1;
        if let Some(out) = self.ready_out(id) {
            self.send(out, &Packet::NotImplemented(Some(command.into_bytes())));
        }
    }

    fn update_info(&mut self, id: &OnionId, f: impl FnOnce(&mut crate::types::PeerInfo)) {
        let Some(b) = self.buddies.get_mut(id) else {
            return;
        };
        let before = b.info.clone();
        f(&mut b.info);
        if b.info != before {
            let info = b.info.clone();
            self.event(Event::PeerInfo {
                id: id.clone(),
                info,
            });
        }
    }

    fn on_status(&mut self, id: &OnionId, s: torchat_wire::Status, now: Timestamp) {
        let Some(b) = self.buddies.get_mut(id) else {
            return;
        };
        // Values other than available/away/xa still count as a keepalive.
        if !matches!(s, torchat_wire::Status::Other(_)) {
            b.status = s;
        }
        b.status_seen = true;
        self.maybe_online(id, now);
    }

    /// The buddy becomes online once its `status` arrived *and* our side of the handshake is
    /// done (our pong and info went out on a connection of ours): then queued messages and
    /// group traffic can go out. Called from both ends.
    pub(crate) fn maybe_online(&mut self, id: &OnionId, now: Timestamp) {
        let ready = self
            .ready_out(id)
            .and_then(|o| self.conns.get(&o))
            .is_some_and(|c| c.info_sent);
        let Some(b) = self.buddies.get_mut(id) else {
            return;
        };
        if !b.status_seen || b.inc.is_none() || !ready {
            self.update_presence(id);
            return;
        }
        let first = !b.online;
        b.online = true;
        b.last_seen = Some(now);
        b.stalls = 0;
        self.update_presence(id);
        if first {
            self.flush_queue(id, now);
            self.on_buddy_online(id, now);
            self.files_buddy_online(id, now);
        }
    }

    /// Sends the queued 1:1 messages, each exactly once, as `[delayed] <text>` (to a
    /// `torchat_sync` peer: what it did not acknowledge yet, then the queue as far as the
    /// window allows, with ids and original times).
    fn flush_queue(&mut self, id: &OnionId, now: Timestamp) {
        let Some(out) = self.ready_out(id) else {
            return;
        };
        self.retransmit_unacked(id, out);
        self.send_from_queue(id, out, now);
    }

    /// Sends queued 1:1 messages on `out`, oldest first: all of them to a legacy peer, as
    /// many as its window takes to a `torchat_sync` peer (the rest go as acknowledgements
    /// come in).
    pub(crate) fn send_from_queue(
        &mut self,
        id: &OnionId,
        out: crate::types::ConnId,
        now: Timestamp,
    ) {
        while self.direct_window_open(id) {
            let Some(q) = self.buddies.get_mut(id).and_then(|b| b.queue.pop_front()) else {
                return;
            };
            if self.is_sync_peer(id) {
                // `sync_message` with its id and original time, tracked until acknowledged.
                self.send_queued(out, id, q.id, q.text, q.at, now);
            } else {
                // `[delayed] <text>`, or the original time to a torchat peer (requests.rs).
                let p = self.delayed_packet(id, &q);
                self.send(out, &p);
            }
            self.persist(Record::MessageDelivery {
                id: q.id,
                state: Delivery::Sent,
            });
            self.event(Event::Delivery {
                id: q.id,
                to: id.clone(),
                state: Delivery::Sent,
            });
        }
    }

    fn on_add_me(&mut self, id: &OnionId, now: Timestamp) {
        let Some(b) = self.buddies.get(id) else {
            return;
        };
        match b.kind {
            // Python and Pascal TorChat put whoever adds them on their list; we hold it as a
            // contact request until the user accepts (requests.rs).
            BuddyKind::Temporary => self.request_add_me(id, now),
            BuddyKind::Permanent | BuddyKind::Blocked => {}
        }
    }

    fn on_remove_me(&mut self, id: &OnionId, now: Timestamp) {
        let Some(b) = self.buddies.get(id) else {
            return;
        };
        if b.kind == BuddyKind::Blocked {
            return;
        }
        // As Python TorChat does: remove and disconnect. We do not echo `remove_me` back.
        let pinned = b.pinned;
        self.event(Event::RemovedUs { id: id.clone() });
        if pinned {
            // Still a group member: keep it as a temporary buddy.
            if let Some(b) = self.buddies.get_mut(id) {
                b.kind = BuddyKind::Temporary;
            }
            self.persist(Record::BuddyRemoved { id: id.clone() });
            self.event(Event::BuddyList {
                id: id.clone(),
                kind: Some(BuddyKind::Temporary),
            });
            return;
        }
        self.drop_buddy(id, now);
        self.persist(Record::BuddyRemoved { id: id.clone() });
        self.event(Event::BuddyList {
            id: id.clone(),
            kind: None,
        });
    }

    /// A 1:1 message from a buddy, arrived (or, delayed, written) at `at`.
    pub(crate) fn on_message(&mut self, id: &OnionId, text: Vec<u8>, at: Timestamp) {
        let msg = self.new_msg_id();
        self.persist(Record::MessageIn {
            id: msg,
            from: id.clone(),
            text: text.clone(),
            at,
        });
        self.event(Event::MessageReceived {
            id: msg,
            from: id.clone(),
            text,
            at,
        });
    }

    /// jtorchat's `disconnect`: it is going away; close and let the backoff reconnect.
    fn disconnect_and_retry(&mut self, id: &OnionId, now: Timestamp) {
        self.disconnect_buddy(id, now);
        self.after_session_end(id, Some(crate::node::SessionEnd::Dropped), now);
    }
}
