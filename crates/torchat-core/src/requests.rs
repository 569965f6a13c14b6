//! Contact requests: what strangers say is held here until the user answers.
//!
//! A stranger (authenticated, not on our list, not a member of a group we are in) that sends
//! `add_me` or messages does not become a buddy and does not get a conversation: it gets a
//! *request*, holding its messages with their arrival times, bounded per stranger (count and
//! bytes), in total (bytes) and in number of requests; the oldest go first and are counted.
//! The user answers with [`Node::accept_request`] (a permanent buddy; the held messages move
//! into the conversation with their original times), [`Node::ignore_request`] (the held
//! messages are dropped) or [`Node::block`]. Python and Pascal TorChat make whoever sends
//! `add_me` a permanent buddy at once; `docs/protocol.md` says how this differs.
//!
//! Also here: delayed 1:1 messages between torchat nodes (extension `torchat_delayed`), which
//! carry their original time instead of the legacy `[delayed] ` text prefix.

use std::collections::{BTreeMap, VecDeque};

use torchat_wire::{OnionId, Packet};

use crate::node::Node;
use crate::state::Queued;
use crate::time::Timestamp;
use crate::types::{BuddyKind, CommandError, Event, MsgId, Record};

/// Extension: queued 1:1 messages delivered late carry their original time
/// (`torchat_delayed <unix ms> <text>`) instead of the `[delayed] ` prefix.
pub const DELAYED_EXT: &str = "torchat_delayed";
/// The command of that extension.
pub(crate) const DELAYED_CMD: &str = "torchat_delayed";

/// A message held in a contact request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMessage {
    /// Local id (kept when the message moves into the conversation).
    pub id: MsgId,
    /// Text as received.
    pub text: Vec<u8>,
    /// When it arrived (or, for a delayed message, when it was written).
    pub at: Timestamp,
}

/// A contact request as interfaces see it (and as it is persisted and restored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    /// The stranger.
    pub id: OnionId,
    /// It sent `add_me` (it has us on its list).
    pub added_me: bool,
    /// When the request was made.
    pub first_at: Timestamp,
    /// When the stranger last sent something.
    pub last_at: Timestamp,
    /// Held messages, oldest first.
    pub messages: Vec<HeldMessage>,
    /// Messages dropped over the caps or the rate limit.
    pub dropped: u64,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    /// The user accepted: a permanent buddy now.
    Accepted,
    /// The user ignored it: held messages dropped.
    Ignored,
    /// The user blocked the id.
    Blocked,
    /// Dropped to make room for a newer request (at [`crate::GuardConfig::max_requests`]).
    Evicted,
}

#[derive(Debug, Clone)]
struct Req {
    added_me: bool,
    first_at: Timestamp,
    last_at: Timestamp,
    msgs: VecDeque<HeldMessage>,
    bytes: usize,
    dropped: u64,
}

/// The inbox (part of the guard's state).
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    reqs: BTreeMap<OnionId, Req>,
    bytes: usize,
}

impl Req {
    fn view(&self, id: &OnionId) -> RequestView {
        RequestView {
            id: id.clone(),
            added_me: self.added_me,
            first_at: self.first_at,
            last_at: self.last_at,
            messages: self.msgs.iter().cloned().collect(),
            dropped: self.dropped,
        }
    }
}

impl Node {
    // ----- user commands and views -----

    /// Every pending contact request, oldest first.
    pub fn requests(&self) -> Vec<RequestView> {
        let mut v: Vec<RequestView> = self
            .guard
            .requests
            .reqs
            .iter()
            .map(|(id, r)| r.view(id))
            .collect();
        v.sort_by_key(|r| r.first_at);
        v
    }

    /// One pending request.
    pub fn request(&self, id: &OnionId) -> Option<RequestView> {
        self.guard.requests.reqs.get(id).map(|r| r.view(id))
    }

    /// Accepts a contact request: the stranger becomes a permanent buddy (it is told with
    /// `add_me` if connected) and its held messages move into the conversation.
    pub fn accept_request(
        &mut self,
        id: &OnionId,
        alias: Option<String>,
        now: Timestamp,
    ) -> Result<(), CommandError> {
        if !self.guard.requests.reqs.contains_key(id) {
            return Err(CommandError::NoSuchRequest);
        }
        // `add_buddy` ends the request (see `request_added`).
        self.add_buddy(id.clone(), alias, now)
    }

    /// Ignores a contact request: its held messages are dropped. The stranger is not told; if
    /// it writes again, that is a new request.
    pub fn ignore_request(&mut self, id: &OnionId, _now: Timestamp) -> Result<(), CommandError> {
        if !self.guard.requests.reqs.contains_key(id) {
            return Err(CommandError::NoSuchRequest);
        }
        self.close_request(id, crate::requests::RequestOutcome::Ignored);
        Ok(())
    }

    /// Restores a pending request from storage (before `start`). Emits nothing. Entries over
    /// the caps are trimmed as if they had arrived now.
    pub fn restore_request(&mut self, r: RequestView) {
        if r.id == self.cfg.own_id {
            return;
        }
        let mut req = Req {
            added_me: r.added_me,
            first_at: r.first_at,
            last_at: r.last_at,
            msgs: VecDeque::new(),
            bytes: 0,
            dropped: r.dropped,
        };
        for m in r.messages {
            req.bytes += m.text.len();
            req.msgs.push_back(m);
        }
        let inbox = &mut self.guard.requests;
        inbox.reqs.insert(r.id, req);
        inbox.bytes = inbox.reqs.values().map(|r| r.bytes).sum();
    }

    // ----- hooks -----

    /// The user put `id` on the buddy list (accepted the request, or added it directly): the
    /// held messages move into the conversation with their original times.
    pub(crate) fn request_added(&mut self, id: &OnionId) {
        let Some(r) = self.guard.requests.reqs.remove(id) else {
            return;
        };
        self.guard.requests.bytes -= r.bytes;
        for m in r.msgs {
            self.persist(Record::MessageIn {
                id: m.id,
                from: id.clone(),
                text: m.text.clone(),
                at: m.at,
            });
            self.event(Event::MessageReceived {
                id: m.id,
                from: id.clone(),
                text: m.text,
                at: m.at,
            });
        }
        self.persist(Record::RequestRemoved { id: id.clone() });
        self.event(Event::RequestClosed {
            id: id.clone(),
            outcome: RequestOutcome::Accepted,
        });
    }

    /// The user blocked `id`: its request goes.
    pub(crate) fn request_blocked(&mut self, id: &OnionId) {
        if self.guard.requests.reqs.contains_key(id) {
            self.close_request(id, RequestOutcome::Blocked);
        }
    }

    fn close_request(&mut self, id: &OnionId, outcome: RequestOutcome) {
        if let Some(r) = self.guard.requests.reqs.remove(id) {
            self.guard.requests.bytes -= r.bytes;
            self.persist(Record::RequestRemoved { id: id.clone() });
            self.event(Event::RequestClosed {
                id: id.clone(),
                outcome,
            });
        }
    }

    /// The request of `id`, made if needed (the oldest request goes at the cap).
    fn request_entry(&mut self, id: &OnionId, now: Timestamp) {
        if self.guard.requests.reqs.contains_key(id) {
            return;
        }
        if self.guard.requests.reqs.len() >= self.cfg.guard.max_requests {
            let oldest = self
                .guard
                .requests
                .reqs
                .iter()
                .min_by_key(|(_, r)| r.last_at)
                .map(|(k, _)| k.clone());
            if let Some(o) = oldest {
                self.stats.requests_evicted += 1;
                self.close_request(&o, RequestOutcome::Evicted);
            }
        }
        self.guard.requests.reqs.insert(
            id.clone(),
            Req {
                added_me: false,
                first_at: now,
                last_at: now,
                msgs: VecDeque::new(),
                bytes: 0,
                dropped: 0,
            },
        );
    }

    /// Persists the request's header and tells the user it changed.
    fn request_changed(&mut self, id: &OnionId) {
        let Some(r) = self.guard.requests.reqs.get(id) else {
            return;
        };
        let (added_me, first_at, last_at, dropped, messages) =
            (r.added_me, r.first_at, r.last_at, r.dropped, r.msgs.len());
        self.persist(Record::Request {
            id: id.clone(),
            added_me,
            first_at,
            last_at,
            dropped,
        });
        self.event(Event::ContactRequest {
            id: id.clone(),
            added_me,
            messages,
            dropped,
        });
    }

    /// A stranger sent `add_me`.
    pub(crate) fn request_add_me(&mut self, id: &OnionId, now: Timestamp) {
        self.request_entry(id, now);
        if let Some(r) = self.guard.requests.reqs.get_mut(id) {
            if r.added_me {
                return; // repeated: nothing new to tell
            }
            r.added_me = true;
            r.last_at = now;
        }
        self.request_changed(id);
    }

    /// A stranger's message went over its rate limit: counted in its request.
    pub(crate) fn request_dropped_message(&mut self, id: &OnionId, now: Timestamp) {
        self.request_entry(id, now);
        if let Some(r) = self.guard.requests.reqs.get_mut(id) {
            r.dropped += 1;
            r.last_at = now;
        }
        // Not persisted nor told per message: the next held message carries the count.
    }

    /// Holds a stranger's message (`at`: when it arrived or was written).
    pub(crate) fn hold_message(
        &mut self,
        id: &OnionId,
        text: Vec<u8>,
        at: Timestamp,
        now: Timestamp,
    ) {
        if text.is_empty() {
            return;
        }
        self.request_entry(id, now);
        let g = &self.cfg.guard;
        let (max_n, max_b, max_total) = (
            g.max_request_messages,
            g.max_request_bytes,
            g.max_request_bytes_total.min(usize::MAX / 2),
        );
        let len = text.len();
        if len > max_b || len > max_total || max_n == 0 {
            if let Some(r) = self.guard.requests.reqs.get_mut(id) {
                r.dropped += 1;
                r.last_at = now;
            }
            self.stats.request_messages_dropped += 1;
            return self.request_changed(id);
        }
        // Room in this request…
        loop {
            let Some(r) = self.guard.requests.reqs.get(id) else {
                return;
            };
            if r.msgs.len() < max_n && r.bytes + len <= max_b {
                break;
            }
            self.drop_held(id);
        }
        // …and in the inbox: the oldest held message of anyone goes.
        while self.guard.requests.bytes + len > max_total {
            let oldest = self
                .guard
                .requests
                .reqs
                .iter()
                .filter_map(|(k, r)| r.msgs.front().map(|m| (m.at, k.clone())))
                .min()
                .map(|(_, k)| k);
            match oldest {
                Some(k) => {
                    self.drop_held(&k);
                    if k != *id {
                        self.request_changed(&k);
                    }
                }
                None => break,
            }
        }
        let msg = HeldMessage {
            id: self.new_msg_id(),
            text,
            at,
        };
        self.persist(Record::RequestMessage {
            id: msg.id,
            from: id.clone(),
            text: msg.text.clone(),
            at,
        });
        self.event(Event::RequestMessage {
            from: id.clone(),
            id: msg.id,
            text: msg.text.clone(),
            at,
        });
        if let Some(r) = self.guard.requests.reqs.get_mut(id) {
            r.bytes += len;
            r.last_at = now;
            r.msgs.push_back(msg);
            self.guard.requests.bytes += len;
        }
        self.request_changed(id);
    }

    /// Drops the oldest held message of `id` (counted).
    fn drop_held(&mut self, id: &OnionId) {
        let Some(r) = self.guard.requests.reqs.get_mut(id) else {
            return;
        };
        let Some(m) = r.msgs.pop_front() else {
            return;
        };
        r.bytes -= m.text.len();
        r.dropped += 1;
        self.guard.requests.bytes -= m.text.len();
        self.stats.request_messages_dropped += 1;
        self.persist(Record::RequestMessageDropped { id: m.id });
    }

    // ----- delayed messages between torchat nodes -----

    /// The packet that delivers a queued message late: with its original time to a peer that
    /// announced [`DELAYED_EXT`], else the legacy `[delayed] <text>`.
    pub(crate) fn delayed_packet(&self, to: &OnionId, q: &Queued) -> Packet {
        match q.at {
            Some(at) if self.supports(to, DELAYED_EXT) => {
                let mut payload = at.as_millis().to_string().into_bytes();
                payload.push(b' ');
                payload.extend_from_slice(&q.text);
                Packet::Unknown {
                    command: DELAYED_CMD.to_owned(),
                    payload: Some(payload),
                }
            }
            _ => {
                let mut text = crate::session::DELAYED_PREFIX.to_vec();
                text.extend_from_slice(&q.text);
                Packet::Message(text)
            }
        }
    }

    /// `torchat_delayed <unix ms> <text>`: a message written at that time. A time in the
    /// future or older than [`crate::GuardConfig::max_delay`] is replaced by now.
    pub(crate) fn on_delayed(
        &mut self,
        id: &OnionId,
        payload: Vec<u8>,
        stranger: bool,
        now: Timestamp,
    ) {
        let (ms, text) = match payload.iter().position(|&c| c == b' ') {
            Some(i) => (&payload[..i], payload[i + 1..].to_vec()),
            None => (&payload[..], Vec::new()),
        };
        let Some(ms) = std::str::from_utf8(ms)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            self.stats.bad_lines += 1;
            return;
        };
        if text.is_empty() {
            return;
        }
        let at = Timestamp::from_millis(ms);
        let at = if at > now || now.since(at) > self.cfg.guard.max_delay {
            now
        } else {
            at
        };
        if stranger {
            self.hold_message(id, text, at, now);
        } else if self
            .buddies
            .get(id)
            .is_some_and(|b| b.kind != BuddyKind::Blocked)
        {
            self.on_message(id, text, at);
        }
    }
}
