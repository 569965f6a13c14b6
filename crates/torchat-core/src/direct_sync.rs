//! 1:1 messages between peers that announced `torchat_sync`: each message carries its id and
//! original time (`sync_message <id> <time> <text>`), the receiver stores it, then acknowledges
//! it (`sync_ack <id>...`, batched), the sender retransmits whatever is not acknowledged when
//! the buddy comes back, and the receiver drops copies it already has. A delayed message
//! keeps its original time instead of a `[delayed] ` prefix. Legacy peers get `message` as
//! before.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sha2::{Digest, Sha256};
use torchat_wire::{OnionId, Packet};

use crate::node::Node;
use crate::session::DELAYED_PREFIX;
use crate::time::Timestamp;
use crate::types::{ConnId, Delivery, Event, MsgId, Record};

/// Most ids in one `sync_ack` line.
const ACKS_PER_LINE: usize = 256;

/// A message written to a sync peer and not acknowledged yet.
#[derive(Debug, Clone)]
struct Unacked {
    id: MsgId,
    text: Vec<u8>,
    at: Timestamp,
}

/// Per-buddy state of acknowledged 1:1 delivery.
#[derive(Debug, Default)]
pub(crate) struct DirectSync {
    unacked: VecDeque<Unacked>,
    received: VecDeque<MsgId>,
    received_set: BTreeSet<MsgId>,
    acks: Vec<[u8; 16]>,
    ack_due: Option<Timestamp>,
    /// When queued messages were written (they keep that time when they go out).
    queued_at: BTreeMap<MsgId, Timestamp>,
}

/// Our local id of a message a buddy sent with id `wire`: derived, so that a retransmission
/// maps to the same stored message, and a buddy cannot choose ids of other messages.
fn local_id(from: &OnionId, wire: &[u8; 16]) -> MsgId {
    let mut h = Sha256::new();
    h.update(b"torchat sync 1:1 id\0");
    h.update(from.as_bytes());
    h.update([0]);
    h.update(wire);
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    MsgId(id)
}

impl Node {
    fn dsync(&mut self, id: &OnionId) -> &mut DirectSync {
        self.dsync.entry(id.clone()).or_default()
    }

    /// Writes a 1:1 message on `out`: with a sync peer as `sync_message` (tracked until it is
    /// acknowledged), else as `message` (`[delayed] ` first when it waited in the queue).
    pub(crate) fn send_direct(
        &mut self,
        out: ConnId,
        to: &OnionId,
        id: MsgId,
        text: Vec<u8>,
        at: Timestamp,
        delayed: bool,
    ) {
        if self.is_sync_peer(to) {
            self.send(
                out,
                &Packet::SyncMessage {
                    id: id.0,
                    time: at.as_millis(),
                    text: text.clone(),
                },
            );
            let max = self.cfg.max_unacked_per_buddy.max(1);
            let d = self.dsync(to);
            if !d.unacked.iter().any(|u| u.id == id) {
                d.unacked.push_back(Unacked { id, text, at });
            }
            while d.unacked.len() > max {
                d.unacked.pop_front(); // stays `sent`
            }
            return;
        }
        let text = if delayed {
            let mut t = DELAYED_PREFIX.to_vec();
            t.extend_from_slice(&text);
            t
        } else {
            text
        };
        self.send(out, &Packet::Message(text));
    }

    /// Remembers when a queued message was written.
    pub(crate) fn note_queued(&mut self, to: &OnionId, id: MsgId, at: Timestamp) {
        let max = self.cfg.max_queued_per_buddy.max(1);
        let d = self.dsync(to);
        d.queued_at.insert(id, at);
        while d.queued_at.len() > max {
            d.queued_at.pop_first();
        }
    }

    /// A queued message goes out now (after the buddy came online).
    pub(crate) fn send_queued(
        &mut self,
        out: ConnId,
        to: &OnionId,
        id: MsgId,
        text: Vec<u8>,
        written: Option<Timestamp>,
        now: Timestamp,
    ) {
        let noted = self.dsync.get_mut(to).and_then(|d| d.queued_at.remove(&id));
        let at = written.or(noted).unwrap_or(now);
        self.send_direct(out, to, id, text, at, true);
    }

    /// The buddy came online: a sync peer gets everything not acknowledged again (it drops
    /// what it has); for a legacy peer `sent` is final and nothing is resent.
    pub(crate) fn retransmit_unacked(&mut self, id: &OnionId, out: ConnId) {
        let pending: Vec<Unacked> = match self.dsync.get_mut(id) {
            Some(d) => d.unacked.drain(..).collect(),
            None => return,
        };
        if !self.is_sync_peer(id) {
            return;
        }
        for u in pending {
            self.send_direct(out, id, u.id, u.text, u.at, true);
        }
    }

    /// `sync_message` from a buddy: store and show it once, acknowledge it (again).
    pub(crate) fn on_sync_message(
        &mut self,
        from: &OnionId,
        wire: [u8; 16],
        time: u64,
        text: Vec<u8>,
        now: Timestamp,
    ) {
        if !self.cfg.sync {
            self.not_implemented(from, "sync_message".to_owned());
            return;
        }
        let id = local_id(from, &wire);
        let delay = self.cfg.sync_ack_delay;
        let seen = self
            .dsync
            .get(from)
            .is_some_and(|d| d.received_set.contains(&id));
        if !seen && self.is_stranger(from) {
            // A stranger's message waits in its contact request, like a plain `message`
            // (acknowledged all the same: it is stored, and the user decides).
            let at = Timestamp::from_millis(time);
            let at = if at > now || now.since(at) > self.cfg.guard.max_delay {
                now
            } else {
                at
            };
            self.hold_message(from, text, at, now);
            self.note_received(from, id);
        } else if !seen {
            // Its original time, unless that lies in our future.
            let at = Timestamp::from_millis(time.min(now.as_millis()));
            self.persist(Record::MessageIn {
                id,
                from: from.clone(),
                text: text.clone(),
                at,
            });
            self.event(Event::MessageReceived {
                id,
                from: from.clone(),
                text,
                at,
            });
            self.note_received(from, id);
        }
        // Acknowledged after it is stored (the shell persists before it writes).
        let d = self.dsync(from);
        if !d.acks.contains(&wire) {
            d.acks.push(wire);
        }
        d.ack_due.get_or_insert(now + delay);
    }

    /// Remembers that the message with local id `id` from `from` is stored (a retransmission
    /// of it is not shown again).
    fn note_received(&mut self, from: &OnionId, id: MsgId) {
        let max = self.cfg.max_received_ids_per_buddy.max(1);
        let d = self.dsync(from);
        d.received.push_back(id);
        d.received_set.insert(id);
        while d.received.len() > max {
            if let Some(old) = d.received.pop_front() {
                d.received_set.remove(&old);
            }
        }
    }

    /// `sync_ack` from a buddy: those messages are stored there.
    pub(crate) fn on_sync_ack(&mut self, from: &OnionId, ids: Vec<[u8; 16]>) {
        let Some(d) = self.dsync.get_mut(from) else {
            return;
        };
        let mut done = Vec::new();
        for w in ids {
            if let Some(i) = d.unacked.iter().position(|u| u.id.0 == w) {
                d.unacked.remove(i);
                done.push(MsgId(w));
            }
        }
        for id in done {
            self.persist(Record::MessageDelivery {
                id,
                state: Delivery::Delivered,
            });
            self.event(Event::Delivery {
                id,
                to: from.clone(),
                state: Delivery::Delivered,
            });
        }
    }

    pub(crate) fn direct_sync_deadline(&self) -> Option<Timestamp> {
        self.dsync.values().filter_map(|d| d.ack_due).min()
    }

    pub(crate) fn handle_direct_sync_timeout(&mut self, now: Timestamp) {
        let due: Vec<OnionId> = self
            .dsync
            .iter()
            .filter(|(_, d)| d.ack_due.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for id in due {
            let acks = {
                let d = self.dsync(&id);
                d.ack_due = None;
                std::mem::take(&mut d.acks)
            };
            // Not online: the sender retransmits when it is back, and we acknowledge then.
            let Some(out) = self.ready_out(&id) else {
                continue;
            };
            for chunk in acks.chunks(ACKS_PER_LINE) {
                self.send(out, &Packet::SyncAck(chunk.to_vec()));
            }
        }
        // Buddies with nothing pending are forgotten.
        self.dsync.retain(|_, d| {
            !(d.unacked.is_empty()
                && d.received.is_empty()
                && d.acks.is_empty()
                && d.queued_at.is_empty())
        });
    }

    /// Restores when a queued 1:1 message was written (after `restore_queued`), so that it
    /// keeps that time when it goes out to a `torchat_sync` peer.
    pub fn restore_queued_time(&mut self, to: &OnionId, id: MsgId, at: Timestamp) {
        self.note_queued(to, id, at);
    }

    /// Restores a 1:1 message that was sent and not acknowledged (before `start`); it is sent
    /// again when the buddy comes back, if the buddy speaks `torchat_sync`.
    pub fn restore_unacked(&mut self, id: MsgId, to: OnionId, text: Vec<u8>, at: Timestamp) {
        let max = self.cfg.max_unacked_per_buddy.max(1);
        let d = self.dsync(&to);
        d.unacked.push_back(Unacked { id, text, at });
        while d.unacked.len() > max {
            d.unacked.pop_front();
        }
    }

    /// Restores the local id of a 1:1 message received before (before `start`), so that a
    /// retransmission of it is not shown again.
    pub fn restore_received(&mut self, from: &OnionId, id: MsgId) {
        let max = self.cfg.max_received_ids_per_buddy.max(1);
        let d = self.dsync(from);
        if d.received_set.insert(id) {
            d.received.push_back(id);
        }
        while d.received.len() > max {
            if let Some(old) = d.received.pop_front() {
                d.received_set.remove(&old);
            }
        }
    }
}
