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
    /// Written and not acknowledged, oldest first: the send window.
    unacked: VecDeque<Unacked>,
    unacked_ids: BTreeSet<MsgId>,
    unacked_bytes: usize,
    received: VecDeque<MsgId>,
    received_set: BTreeSet<MsgId>,
    /// Acknowledgements not written yet (each id once).
    acks: Vec<[u8; 16]>,
    ack_set: BTreeSet<[u8; 16]>,
    ack_due: Option<Timestamp>,
    /// When queued messages were written (they keep that time when they go out).
    queued_at: BTreeMap<MsgId, Timestamp>,
}

impl DirectSync {
    /// Tracks a written message (once). Beyond `max` the oldest is forgotten (stays `sent`);
    /// the window check before writing keeps that from happening.
    fn track(&mut self, u: Unacked, max: usize) {
        if !self.unacked_ids.insert(u.id) {
            return;
        }
        self.unacked_bytes += u.text.len();
        self.unacked.push_back(u);
        while self.unacked.len() > max {
            if let Some(old) = self.unacked.pop_front() {
                self.unacked_ids.remove(&old.id);
                self.unacked_bytes -= old.text.len();
            }
        }
    }

    fn take_unacked(&mut self) -> Vec<Unacked> {
        self.unacked_ids.clear();
        self.unacked_bytes = 0;
        self.unacked.drain(..).collect()
    }

    /// An acknowledgement: whether `id` was waiting for it.
    fn acked(&mut self, id: MsgId) -> bool {
        if !self.unacked_ids.remove(&id) {
            return false;
        }
        // Acknowledgements come in the order of sending: the id is at the front.
        if let Some(i) = self.unacked.iter().position(|u| u.id == id) {
            if let Some(u) = self.unacked.remove(i) {
                self.unacked_bytes -= u.text.len();
            }
        }
        true
    }

    fn take_acks(&mut self) -> Vec<[u8; 16]> {
        self.ack_set.clear();
        std::mem::take(&mut self.acks)
    }
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
            self.dsync(to).track(Unacked { id, text, at }, max);
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

    /// Whether a 1:1 message to `to` may be written now: always to a legacy peer; to a sync
    /// peer while its unacknowledged messages are within the window (count and bytes). A
    /// message that does not fit waits in the queue (`queued`) until acknowledgements make
    /// room, so that every message written stays tracked until it is acknowledged.
    pub(crate) fn direct_window_open(&self, to: &OnionId) -> bool {
        if !self.is_sync_peer(to) {
            return true;
        }
        self.dsync.get(to).is_none_or(|d| {
            d.unacked.len() < self.cfg.max_unacked_per_buddy.max(1)
                && d.unacked_bytes < self.cfg.max_unacked_bytes_per_buddy
        })
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
            Some(d) => d.take_unacked(),
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
        // Acknowledged after it is stored (the shell persists before it writes): batched,
        // but a full line goes at once (a burst is not held back by the batch timer).
        let d = self.dsync(from);
        if d.ack_set.insert(wire) {
            d.acks.push(wire);
        }
        d.ack_due.get_or_insert(now + delay);
        if d.acks.len() >= ACKS_PER_LINE {
            self.send_acks(from);
        }
    }

    /// Writes the pending acknowledgements to `id` (if it is online; if not, the sender
    /// retransmits when it is back, and we acknowledge then).
    fn send_acks(&mut self, id: &OnionId) {
        let acks = {
            let d = self.dsync(id);
            d.ack_due = None;
            d.take_acks()
        };
        let Some(out) = self.ready_out(id) else {
            return;
        };
        for chunk in acks.chunks(ACKS_PER_LINE) {
            self.send(out, &Packet::SyncAck(chunk.to_vec()));
        }
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
    pub(crate) fn on_sync_ack(&mut self, from: &OnionId, ids: Vec<[u8; 16]>, now: Timestamp) {
        let Some(d) = self.dsync.get_mut(from) else {
            return;
        };
        let done: Vec<MsgId> = ids
            .into_iter()
            .map(MsgId)
            .filter(|id| d.acked(*id))
            .collect();
        let room = !done.is_empty();
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
        // The window moved: messages waiting for room go out.
        if room {
            if let Some(out) = self.ready_out(from) {
                self.send_from_queue(from, out, now);
            }
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
            self.send_acks(&id);
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
        self.dsync(&to).track(Unacked { id, text, at }, max);
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
