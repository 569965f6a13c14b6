//! Our extension `torchat_sync` for group chat: per-speaker sequence numbers, eager push,
//! acknowledgements, version-vector digests, pulls in pages, and repair through members that
//! can reach those the speaker cannot.
//!
//! Between members that announced `torchat_sync`:
//! - the speaker pushes `groupchat_sync_message` (full copy: sequence number, time,
//!   signature) to every such member that is online, and nothing to the others: they pull;
//! - a member that stores a speaker's messages acknowledges them to the speaker with one
//!   cumulative `groupchat_sync_ack` per `sync_ack_delay` (a burst is acknowledged once);
//! - members exchange `groupchat_sync_digest` (what they hold, per speaker) when a session
//!   starts, with ring neighbours ("fingers": the members 1, 2, 4, 8… places after us in the
//!   sorted member list that are online) after they stored copies they had to pull and every
//!   `sync_interval`, and with whoever is behind them;
//! - a member that lacks messages another one holds asks for them with `groupchat_sync_want`
//!   (pages of `sync_page`, a few at a time) and stores them after checking the signature;
//! - a speaker that could not reach a member asks two members after it in ring order to
//!   relay its next messages to it (`groupchat_sync_tell`).
//!
//! Members that did not announce the extension get the seed's packets and echoes
//! (`group.rs`). Nothing here writes a full copy for an offline member: it pulls what it lacks
//! when it comes back, from whichever member has it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sha2::{Digest, Sha256};
use torchat_wire::sync::MAX_RANGES;
use torchat_wire::{DigestEntry, DigestKey, GroupId, OnionId, Packet, SeqSet};

use crate::node::Node;
use crate::redundancy::{sync_msgid, Copy, Outcome};
use crate::time::Timestamp;
use crate::types::{
    ConnId, Event, GroupState, LoadRequest, MsgId, Output, Record, SyncCopy, SyncMeta,
};

/// The extension's name in `supports`.
pub const SYNC_EXT: &str = "torchat_sync";

/// How long a member waits before re-checking member lists with a peer whose list hash differs.
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Members asked to relay for one member the speaker cannot reach.
const HELPERS: usize = 2;

/// One of our own messages whose delivery we track.
#[derive(Debug, Clone)]
pub(crate) struct OwnSync {
    pub id: MsgId,
    pub of: u32,
    pub delivered: u32,
}

/// A page we asked a peer for.
#[derive(Debug, Clone)]
struct Want {
    speaker: OnionId,
    from: u64,
    to: u64,
    peer: OnionId,
    sent: Timestamp,
}

/// A want being answered from storage.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    gid: GroupId,
    peer: OnionId,
    speaker: OnionId,
    from: u64,
    to: u64,
}

/// The sync state of one group.
#[derive(Debug, Default)]
pub(crate) struct GroupSync {
    /// Our next sequence number (0: none used yet).
    pub next_seq: u64,
    /// What we hold of each other speaker's messages (ours: `1..next_seq`).
    have: BTreeMap<OnionId, SeqSet>,
    /// What each member told us it holds: member → speaker → numbers.
    known: BTreeMap<OnionId, BTreeMap<OnionId, SeqSet>>,
    /// Recent full copies, to answer wants without storage.
    cache: BTreeMap<(OnionId, u64), SyncCopy>,
    cache_order: VecDeque<(OnionId, u64)>,
    /// What we told each peer we hold (to send only what changed).
    told: BTreeMap<OnionId, BTreeMap<OnionId, SeqSet>>,
    /// The member-list hash each peer sent last.
    peer_list: BTreeMap<OnionId, [u8; 4]>,
    wants: Vec<Want>,
    digest_due: BTreeMap<OnionId, Timestamp>,
    ack_due: BTreeMap<OnionId, Timestamp>,
    /// Our messages whose delivery is still tracked, by sequence number.
    pub own: BTreeMap<u64, OwnSync>,
    next_periodic: Option<Timestamp>,
    recheck: BTreeMap<OnionId, Timestamp>,
    /// When we last got a copy directly from each speaker.
    recent_from: BTreeMap<OnionId, Timestamp>,
    /// Speaker side: helper → members it should relay to.
    tells: BTreeMap<OnionId, BTreeSet<OnionId>>,
    tell_due: Option<Timestamp>,
    /// Speaker side: when we last asked (member, helper).
    asked_helper: BTreeMap<(OnionId, OnionId), Timestamp>,
    /// Helper side: (speaker, member) → relay the speaker's new messages to the member until.
    relay: BTreeMap<(OnionId, OnionId), Timestamp>,
    /// (speaker, peer) → numbers the peer advertised but could not send (no longer stored).
    unavailable: BTreeMap<(OnionId, OnionId), SeqSet>,
}

impl GroupSync {
    fn own_set(&self) -> SeqSet {
        SeqSet::upto(self.next_seq.saturating_sub(1))
    }

    fn held(&self, me: &OnionId, speaker: &OnionId) -> SeqSet {
        if speaker == me {
            self.own_set()
        } else {
            self.have.get(speaker).cloned().unwrap_or_default()
        }
    }

    fn known(&self, member: &OnionId, speaker: &OnionId) -> Option<&SeqSet> {
        self.known.get(member)?.get(speaker)
    }

    fn cache_put(&mut self, c: SyncCopy, max: usize) {
        let key = (c.speaker.clone(), c.meta.seq);
        if self.cache.insert(key.clone(), c).is_none() {
            self.cache_order.push_back(key);
        }
        while self.cache.len() > max.max(1) {
            let Some(k) = self.cache_order.pop_front() else {
                break;
            };
            self.cache.remove(&k);
        }
    }

    fn want_count(&self, peer: &OnionId) -> usize {
        self.wants.iter().filter(|w| w.peer == *peer).count()
    }

    /// Whether a want already covers (part of) `a..=b` of `speaker`.
    fn wanted(&self, speaker: &OnionId, a: u64, b: u64) -> bool {
        self.wants
            .iter()
            .any(|w| w.speaker == *speaker && w.from <= b && a <= w.to)
    }
}

/// Our local id of a sync message: the same at every restart, so storing it twice is a no-op.
pub(crate) fn local_id(gid: &GroupId, speaker: &OnionId, seq: u64) -> MsgId {
    let mut h = Sha256::new();
    h.update(b"torchat sync local id\0");
    h.update(gid.as_str().as_bytes());
    h.update([0]);
    h.update(speaker.as_bytes());
    h.update([0]);
    h.update(seq.to_be_bytes());
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    MsgId(id)
}

/// The hash of a member list (every member, us included): 4 bytes of SHA-256 over the sorted
/// ids, one per line.
pub(crate) fn list_hash(sorted: &[OnionId]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(b"torchat member list v1\0");
    for id in sorted {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

impl Node {
    /// Whether we speak `torchat_sync` with this peer.
    pub(crate) fn is_sync_peer(&self, id: &OnionId) -> bool {
        self.cfg.sync && self.supports(id, SYNC_EXT)
    }

    fn sync_online(&self, id: &OnionId) -> Option<ConnId> {
        if self.is_sync_peer(id) {
            self.online_out(id)
        } else {
            None
        }
    }

    /// Every member, us included, sorted.
    fn sorted_list(&self, gid: &GroupId) -> Vec<OnionId> {
        let Some(g) = self.groups.get(gid) else {
            return Vec::new();
        };
        let mut all: BTreeSet<OnionId> = g.members.clone();
        all.insert(self.cfg.own_id.clone());
        all.into_iter().collect()
    }

    pub(crate) fn list_hash(&self, gid: &GroupId) -> [u8; 4] {
        list_hash(&self.sorted_list(gid))
    }

    /// The shortest tag that names the group among ours: its first 8 characters, or all of it.
    fn group_tag(&self, gid: &GroupId) -> GroupId {
        let s = gid.as_str();
        let n = torchat_wire::sync::MIN_GROUP_TAG;
        if s.len() <= n {
            return gid.clone();
        }
        let prefix = &s[..n];
        let clash = self
            .groups
            .keys()
            .any(|g| g != gid && g.as_str().starts_with(prefix));
        if clash || !s.is_char_boundary(n) {
            return gid.clone();
        }
        GroupId::new(prefix).unwrap_or_else(|| gid.clone())
    }

    /// The active group a tag from `from` names (exactly one, with `from` a member).
    fn resolve_tag(&self, from: &OnionId, tag: &GroupId) -> Option<GroupId> {
        if self.groups.contains_key(tag) {
            return Some(tag.clone());
        }
        if tag.as_str().len() < torchat_wire::sync::MIN_GROUP_TAG {
            return None;
        }
        let mut hits = self.groups.iter().filter(|(g, grp)| {
            g.as_str().starts_with(tag.as_str())
                && grp.state == GroupState::Joined
                && grp.members.contains(from)
        });
        let first = hits.next()?.0.clone();
        hits.next().is_none().then_some(first)
    }

    /// Whether `speaker` is a member, or was one whose messages we or a member hold (what a
    /// member said before it left is still delivered).
    fn spoke_in(&self, gid: &GroupId, speaker: &OnionId) -> bool {
        if self.is_member_of(gid, speaker) {
            return true;
        }
        self.groups.get(gid).is_some_and(|g| {
            g.sync.have.contains_key(speaker)
                || g.sync.known.values().any(|v| v.contains_key(speaker))
        })
    }

    fn gsync(&mut self, gid: &GroupId) -> Option<&mut GroupSync> {
        self.groups.get_mut(gid).map(|g| &mut g.sync)
    }

    fn joined(&self, gid: &GroupId) -> bool {
        self.groups
            .get(gid)
            .is_some_and(|g| g.state == GroupState::Joined)
    }

    // ----- speaking -----

    /// Takes the next sequence number for a message we say (persisted first), with its time
    /// and signature. `None` when the extension is off.
    pub(crate) fn sync_new_message(
        &mut self,
        gid: &GroupId,
        text: &[u8],
        now: Timestamp,
    ) -> Option<SyncMeta> {
        if !self.cfg.sync {
            return None;
        }
        let gs = self.gsync(gid)?;
        let seq = gs.next_seq.max(1);
        gs.next_seq = seq + 1;
        self.persist(Record::SyncSeq {
            gid: gid.clone(),
            next: seq + 1,
        });
        let mut meta = SyncMeta {
            seq,
            time: now,
            sig: None,
        };
        if let Some(key) = self.cfg.signing_key {
            let msgid = sync_msgid(&meta);
            meta.sig = Some(crate::group::sign_message(
                &key,
                gid,
                &self.cfg.own_id,
                &msgid,
                text,
            ));
        }
        Some(meta)
    }

    /// Remembers our new message (to count acknowledgements and answer wants).
    pub(crate) fn sync_track_own(
        &mut self,
        gid: &GroupId,
        meta: SyncMeta,
        id: MsgId,
        of: u32,
        text: &[u8],
    ) {
        let (max_own, max_cache) = (self.cfg.sync_tracked_own, self.cfg.sync_cache);
        let me = self.cfg.own_id.clone();
        let Some(gs) = self.gsync(gid) else {
            return;
        };
        gs.own.insert(
            meta.seq,
            OwnSync {
                id,
                of,
                delivered: 0,
            },
        );
        while gs.own.len() > max_own.max(1) {
            gs.own.pop_first();
        }
        gs.cache_put(
            SyncCopy {
                speaker: me,
                meta,
                text: text.to_vec(),
            },
            max_cache,
        );
    }

    /// The full copy of our message for a sync member.
    pub(crate) fn sync_packet(&self, gid: &GroupId, c: &SyncCopy) -> Packet {
        Packet::GroupSyncMessage {
            gid: gid.clone(),
            list: self.list_hash(gid),
            speaker: c.speaker.clone(),
            seq: c.meta.seq,
            time: c.meta.time.as_millis(),
            sig: c.meta.sig,
            text: c.text.clone(),
        }
    }

    /// After our message went to every sync member online: asks helpers to relay it to the
    /// sync members we could not reach.
    pub(crate) fn sync_not_reached(&mut self, gid: &GroupId, missed: Vec<OnionId>, now: Timestamp) {
        let relaying = self
            .groups
            .get(gid)
            .is_some_and(|g| !g.modes.iter().any(|m| m == crate::NO_REDUNDANCY));
        if missed.is_empty() || !relaying {
            return;
        }
        let list = self.sorted_list(gid);
        let me = self.cfg.own_id.clone();
        let (half, delay) = (self.cfg.sync_interval / 2, self.cfg.sync_ack_delay);
        let mut asks: Vec<(OnionId, OnionId)> = Vec::new();
        for x in &missed {
            let Some(pos) = list.iter().position(|m| m == x) else {
                continue;
            };
            let helpers: Vec<OnionId> = (1..list.len())
                .map(|d| &list[(pos + d) % list.len()])
                .filter(|h| **h != me && self.sync_online(h).is_some())
                .take(HELPERS)
                .cloned()
                .collect();
            for h in helpers {
                asks.push((x.clone(), h));
            }
        }
        let Some(gs) = self.gsync(gid) else {
            return;
        };
        for (x, h) in asks {
            let last = gs.asked_helper.get(&(x.clone(), h.clone())).copied();
            if last.is_some_and(|t| t + half > now) {
                continue;
            }
            gs.asked_helper.insert((x.clone(), h.clone()), now);
            gs.tells.entry(h).or_default().insert(x);
            gs.tell_due.get_or_insert(now + delay);
        }
    }

    // ----- receiving -----

    /// A packet of the extension from an authenticated peer.
    pub(crate) fn on_sync_packet(&mut self, from: &OnionId, p: Packet, now: Timestamp) {
        if !self.cfg.sync {
            self.not_implemented(from, p.command().to_owned());
            return;
        }
        match p {
            Packet::GroupSyncMessage {
                gid,
                list,
                speaker,
                seq,
                time,
                sig,
                text,
            } => {
                let copy = SyncCopy {
                    speaker,
                    meta: SyncMeta {
                        seq,
                        time: Timestamp::from_millis(time),
                        sig,
                    },
                    text,
                };
                self.on_sync_copy(from, &gid, Some(list), copy, now);
            }
            Packet::GroupSyncAck { group, held } => match self.resolve_tag(from, &group) {
                Some(gid) => {
                    let me = self.cfg.own_id.clone();
                    self.learn(&gid, from, &me, &held, now);
                }
                None => self.stats.non_member_packets += 1,
            },
            Packet::GroupSyncDigest {
                group,
                list,
                entries,
            } => match self.resolve_tag(from, &group) {
                Some(gid) => self.on_digest(from, &gid, list, entries, now),
                None => self.stats.non_member_packets += 1,
            },
            Packet::GroupSyncWant {
                gid,
                speaker,
                from: a,
                to: b,
            } => self.on_want(from, &gid, speaker, a, b),
            Packet::GroupSyncEnd {
                gid,
                speaker,
                from: a,
                to: b,
            } => self.on_end(from, &gid, &speaker, a, b, now),
            Packet::GroupSyncTell { gid, members } => self.on_tell(from, &gid, members, now),
            _ => {}
        }
    }

    /// A full copy of `copy.speaker`'s message, from the speaker (pushed) or from any member.
    fn on_sync_copy(
        &mut self,
        from: &OnionId,
        gid: &GroupId,
        list: Option<[u8; 4]>,
        copy: SyncCopy,
        now: Timestamp,
    ) {
        let me = self.cfg.own_id.clone();
        if !self.joined(gid) || !self.is_member_of(gid, from) {
            self.stats.non_member_packets += 1;
            return;
        }
        let speaker = copy.speaker.clone();
        if speaker == me {
            return; // we know what we said
        }
        if !self.spoke_in(gid, &speaker) || copy.text.is_empty() || copy.meta.seq == 0 {
            self.stats.non_member_packets += 1;
            return;
        }
        let msgid = sync_msgid(&copy.meta);
        if let Some(sig) = &copy.meta.sig {
            if !crate::group::verify_signed(gid, &speaker, &msgid, sig, &copy.text) {
                return self.bad_signature(from);
            }
        }
        if let Some(l) = list {
            self.note_list(gid, from, l, now);
        }
        let direct = *from == speaker;
        let seq = copy.meta.seq;
        let (max_gaps, max_cache, max_tracked) = (
            self.cfg.sync_max_gaps,
            self.cfg.sync_cache,
            self.cfg.max_tracked_messages,
        );
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        let n_others = g.n_others();
        let relaying = g.redundancy();
        let c = Copy {
            sender: &speaker,
            text: &copy.text,
            msgid: Some(msgid),
            signed: copy.meta.sig.is_some(),
            sync: Some(copy.meta),
        };
        let set = g.sync.have.entry(speaker.clone()).or_default();
        if set.contains(seq) {
            self.stats.sync_duplicates += 1;
            if direct {
                // The speaker's own copy of a message we got relayed: it upgrades to (Direct).
                let outcome = g
                    .engine
                    .direct(c, local_id(gid, &speaker, seq), now, max_tracked);
                self.apply_outcome(gid, outcome, now);
            }
            return;
        }
        if seq > set.upto.saturating_add(1) && set.ranges.len() >= max_gaps {
            // Too fragmented: let it come again in order, by a pull.
            self.stats.sync_duplicates += 1;
            return;
        }
        set.insert(seq);
        let held = set.clone();
        let had_sync = g.engine.by_seq(&speaker, seq).is_some();
        let id = local_id(gid, &speaker, seq);
        let outcome = if direct {
            g.sync.recent_from.insert(speaker.clone(), now);
            g.engine.direct(c, id, now, max_tracked)
        } else {
            let holders: Vec<OnionId> = g
                .sync
                .known
                .iter()
                .filter(|(m, v)| **m != speaker && v.get(&speaker).is_some_and(|s| s.contains(seq)))
                .map(|(m, _)| m.clone())
                .chain(std::iter::once(from.clone()))
                .filter(|m| g.members.contains(m))
                .collect();
            // The speaker's own digest is authoritative about what it said.
            let denied = copy.meta.sig.is_none()
                && g.sync
                    .known(&speaker, &speaker)
                    .is_some_and(|s| !s.contains(seq));
            g.engine
                .synced(c, holders, denied, id, now, max_tracked, n_others)
        };
        g.sync.cache_put(copy.clone(), max_cache);
        self.persist(Record::SyncVector {
            gid: gid.clone(),
            member: me.clone(),
            speaker: speaker.clone(),
            held,
        });
        if !had_sync && !matches!(outcome, Outcome::Show(..)) {
            if let Some(slot) = self
                .groups
                .get(gid)
                .and_then(|g| g.engine.by_seq(&speaker, seq))
            {
                let id = slot.id;
                self.persist(Record::GroupMessageSync {
                    id,
                    sync: copy.meta,
                });
            }
        }
        self.apply_outcome(gid, outcome, now);
        if direct && relaying {
            self.echo_to_seed_members(gid, &copy, now);
        }
        // Acknowledge to the speaker; spread what had to be pulled; relay what we were asked to.
        let delay = self.cfg.sync_ack_delay;
        if self.sync_online(&speaker).is_some() {
            if let Some(gs) = self.gsync(gid) {
                gs.ack_due.entry(speaker.clone()).or_insert(now + delay);
            }
        }
        if !direct && relaying {
            self.schedule_fingers(gid, now + delay);
        }
        self.relay_copy(gid, from, &copy, now);
        self.sync_pull(gid, now);
    }

    /// Members that do not speak the extension get the seed's echo of a message we received
    /// from its speaker (signed when they understand signatures and it is signed).
    fn echo_to_seed_members(&mut self, gid: &GroupId, copy: &SyncCopy, now: Timestamp) {
        let Some(g) = self.groups.get(gid) else {
            return;
        };
        let targets: Vec<OnionId> = g
            .members
            .iter()
            .filter(|m| **m != copy.speaker && !self.is_sync_peer(m))
            .cloned()
            .collect();
        for m in targets {
            let p = match copy.meta.sig {
                Some(sig) if self.supports(&m, crate::group::SIGNED_EXT) => {
                    Packet::GroupSignedEcho {
                        gid: gid.clone(),
                        sender: copy.speaker.clone(),
                        msgid: sync_msgid(&copy.meta),
                        sig,
                        text: copy.text.clone(),
                    }
                }
                _ => Packet::GroupEchoedMessage {
                    gid: gid.clone(),
                    sender: copy.speaker.clone(),
                    text: copy.text.clone(),
                },
            };
            self.group_send(gid, &m, p, None, now);
        }
    }

    /// Helper side: forwards a new copy to the members its speaker asked us to relay to.
    fn relay_copy(&mut self, gid: &GroupId, from: &OnionId, copy: &SyncCopy, now: Timestamp) {
        let Some(g) = self.groups.get(gid) else {
            return;
        };
        let targets: Vec<OnionId> = g
            .sync
            .relay
            .iter()
            .filter(|((s, x), until)| *s == copy.speaker && **until > now && x != from)
            .filter(|((_, x), _)| {
                !g.sync
                    .known(x, &copy.speaker)
                    .is_some_and(|s| s.contains(copy.meta.seq))
            })
            .map(|((_, x), _)| x.clone())
            .collect();
        for x in targets {
            if let Some(out) = self.sync_online(&x) {
                let p = self.sync_packet(gid, copy);
                self.send(out, &p);
            }
        }
    }

    /// A peer's member-list hash: if it differs from ours, re-check the lists with it (not
    /// more often than once a minute) and make sure it gets our digest with full ids.
    fn note_list(&mut self, gid: &GroupId, from: &OnionId, list: [u8; 4], now: Timestamp) {
        let ours = self.list_hash(gid);
        let Some(gs) = self.gsync(gid) else {
            return;
        };
        let before = gs.peer_list.insert(from.clone(), list);
        if list == ours {
            return;
        }
        let due = gs
            .recheck
            .get(from)
            .is_none_or(|t| *t + RECHECK_EVERY <= now);
        if !due {
            return;
        }
        gs.recheck.insert(from.clone(), now);
        if before != Some(list) {
            // It could not read our index-keyed entries: tell it everything again with ids.
            gs.told.remove(from);
        }
        gs.digest_due.insert(from.clone(), now);
        self.send_participants(gid, from);
    }

    /// A digest: what `from` holds, per speaker.
    fn on_digest(
        &mut self,
        from: &OnionId,
        gid: &GroupId,
        list: [u8; 4],
        entries: Vec<DigestEntry>,
        now: Timestamp,
    ) {
        if !self.joined(gid) || !self.is_member_of(gid, from) {
            self.stats.non_member_packets += 1;
            return;
        }
        self.note_list(gid, from, list, now);
        let ours = self.list_hash(gid);
        let sorted = self.sorted_list(gid);
        let me = self.cfg.own_id.clone();
        let max = self.cfg.max_group_members + 1;
        let mut offer = false;
        for e in entries.into_iter().take(max) {
            let speaker = match e.key {
                DigestKey::Index(i) if list == ours => match sorted.get(i as usize) {
                    Some(s) => s.clone(),
                    None => continue,
                },
                DigestKey::Index(_) => continue, // lists differ: indices mean nothing here
                DigestKey::Id(id) => id,
            };
            if speaker != me && !self.spoke_in(gid, &speaker) {
                continue;
            }
            self.learn(gid, from, &speaker, &e.held, now);
            // It lacks some we hold: offer them (unless we already told it).
            if let Some(gs) = self.groups.get(gid).map(|g| &g.sync) {
                let mine = gs.held(&me, &speaker);
                let told = gs.told.get(from).and_then(|t| t.get(&speaker));
                let lacks = !mine.missing_from(&e.held, 1).is_empty();
                if lacks && told.is_none_or(|t| !t.covers_set(&mine)) {
                    offer = true;
                }
            }
        }
        if offer {
            let at = now + self.cfg.sync_ack_delay;
            self.schedule_digest(gid, from, at);
        }
        self.sync_pull(gid, now);
    }

    /// `member` holds these of `speaker`'s messages: remember it, count it as delivery (our
    /// messages) or as vouching (others').
    fn learn(
        &mut self,
        gid: &GroupId,
        member: &OnionId,
        speaker: &OnionId,
        held: &SeqSet,
        now: Timestamp,
    ) {
        let me = self.cfg.own_id.clone();
        if member == &me || !self.is_member_of(gid, member) {
            return;
        }
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        let n_others = g.n_others();
        let old = g.sync.known(member, speaker).cloned().unwrap_or_default();
        let new = held.missing_from(&old, 64);
        if new.is_empty() {
            return;
        }
        let max_gaps = self.cfg.sync_max_gaps;
        let entry = g
            .sync
            .known
            .entry(member.clone())
            .or_default()
            .entry(speaker.clone())
            .or_default();
        entry.union(held);
        // Bounded: believing a member holds less than it does is safe.
        *entry = entry.truncated(max_gaps);
        let stored = entry.truncated(MAX_RANGES);
        self.persist(Record::SyncVector {
            gid: gid.clone(),
            member: member.clone(),
            speaker: speaker.clone(),
            held: stored,
        });
        if *speaker == me {
            self.own_delivery(gid, &new, held.max());
        } else if let Some(g) = self.groups.get_mut(gid) {
            let mut changed = Vec::new();
            for &(a, b) in &new {
                changed.extend(g.engine.vouch(speaker, a, b, member, n_others));
            }
            for (id, trust) in changed {
                self.trust_changed(gid, id, trust);
            }
        }
        let _ = now;
    }

    /// Members acknowledged more of our messages: recount and report.
    fn own_delivery(&mut self, gid: &GroupId, new: &[(u64, u64)], max_seen: u64) {
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        // Numbers we never used are held somewhere: we lost our store. Never reuse them.
        if max_seen >= g.sync.next_seq.max(1) {
            g.sync.next_seq = max_seen + 1;
            let next = g.sync.next_seq;
            self.persist(Record::SyncSeq {
                gid: gid.clone(),
                next,
            });
        }
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        let me = self.cfg.own_id.clone();
        let mut report = Vec::new();
        for &(a, b) in new {
            let seqs: Vec<u64> = g.sync.own.range(a..=b).map(|(s, _)| *s).collect();
            for seq in seqs {
                let k = g
                    .members
                    .iter()
                    .filter(|m| g.sync.known(m, &me).is_some_and(|s| s.contains(seq)))
                    .count();
                let k = u32::try_from(k).unwrap_or(u32::MAX);
                if let Some(o) = g.sync.own.get_mut(&seq) {
                    if k > o.delivered {
                        o.delivered = k;
                        report.push((o.id, k, o.of));
                    }
                }
            }
        }
        for (id, delivered, of) in report {
            self.own_delivered(gid, id, delivered);
            self.persist(Record::GroupDelivery {
                id,
                delivered,
                of,
                sent: true,
            });
            self.event(Event::GroupDelivery {
                gid: gid.clone(),
                id,
                delivered,
                of,
            });
        }
    }

    /// `from` asks for copies of `speaker`'s messages `a..=b`.
    fn on_want(&mut self, from: &OnionId, gid: &GroupId, speaker: OnionId, a: u64, b: u64) {
        if !self.joined(gid) || !self.is_member_of(gid, from) || !self.is_sync_peer(from) {
            self.stats.non_member_packets += 1;
            return;
        }
        let me = self.cfg.own_id.clone();
        if speaker != me && !self.spoke_in(gid, &speaker) {
            return;
        }
        let b = b.min(a.saturating_add(self.cfg.sync_page.clamp(1, 1000) - 1));
        let Some(gs) = self.groups.get(gid).map(|g| &g.sync) else {
            return;
        };
        let held = gs.held(&me, &speaker);
        let all_cached = (a..=b)
            .filter(|s| held.contains(*s))
            .all(|s| gs.cache.contains_key(&(speaker.clone(), s)));
        if all_cached {
            let copies: Vec<SyncCopy> = (a..=b)
                .filter_map(|s| gs.cache.get(&(speaker.clone(), s)).cloned())
                .collect();
            return self.send_page(from, gid, &speaker, a, b, copies);
        }
        let busy = self.loads.values().filter(|l| l.peer == *from).count();
        if busy >= self.cfg.sync_loads_per_peer {
            self.stats.sync_ignored += 1;
            return; // it asks again after its timeout
        }
        self.next_load += 1;
        let token = self.next_load;
        self.loads.insert(
            token,
            Load {
                gid: gid.clone(),
                peer: from.clone(),
                speaker: speaker.clone(),
                from: a,
                to: b,
            },
        );
        self.out.push_back(Output::Load(LoadRequest {
            token,
            gid: gid.clone(),
            speaker,
            from: a,
            to: b,
        }));
    }

    /// The shell read the stored copies a [`Output::Load`] asked for.
    pub fn handle_loaded(&mut self, token: u64, copies: Vec<SyncCopy>, now: Timestamp) {
        let Some(l) = self.loads.remove(&token) else {
            return;
        };
        let _ = now;
        let me = self.cfg.own_id.clone();
        let Some(gs) = self.groups.get(&l.gid).map(|g| &g.sync) else {
            return;
        };
        let held = gs.held(&me, &l.speaker);
        let mut by_seq: BTreeMap<u64, SyncCopy> = BTreeMap::new();
        for c in copies {
            let s = c.meta.seq;
            if c.speaker == l.speaker && (l.from..=l.to).contains(&s) && held.contains(s) {
                by_seq.insert(s, c);
            }
        }
        for s in l.from..=l.to {
            if let Some(c) = gs.cache.get(&(l.speaker.clone(), s)) {
                by_seq.entry(s).or_insert_with(|| c.clone());
            }
        }
        let copies = by_seq.into_values().collect();
        self.send_page(&l.peer, &l.gid, &l.speaker, l.from, l.to, copies);
    }

    /// Sends copies (in order, up to the page's byte cap), then the end of the page.
    fn send_page(
        &mut self,
        to: &OnionId,
        gid: &GroupId,
        speaker: &OnionId,
        a: u64,
        b: u64,
        copies: Vec<SyncCopy>,
    ) {
        let Some(out) = self.sync_online(to) else {
            return;
        };
        let cap = self.cfg.sync_page_bytes;
        let mut bytes = 0usize;
        let mut last = b;
        for c in copies {
            if bytes > 0 && bytes + c.text.len() > cap {
                last = c.meta.seq - 1;
                break;
            }
            bytes += c.text.len() + 300;
            let p = self.sync_packet(gid, &c);
            self.send(out, &p);
        }
        self.send(
            out,
            &Packet::GroupSyncEnd {
                gid: gid.clone(),
                speaker: speaker.clone(),
                from: a,
                to: last.max(a),
            },
        );
    }

    /// The end of a page we asked for: what did not come is not stored there any more (older
    /// than its retention). Another member that has it is asked; when nobody online has it,
    /// it is skipped.
    fn on_end(
        &mut self,
        from: &OnionId,
        gid: &GroupId,
        speaker: &OnionId,
        a: u64,
        b: u64,
        now: Timestamp,
    ) {
        let me = self.cfg.own_id.clone();
        let peers: Vec<OnionId> = self
            .groups
            .get(gid)
            .map(|g| {
                g.members
                    .iter()
                    .filter(|m| *m != from && self.sync_online(m).is_some())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let Some(gs) = self.gsync(gid) else {
            return;
        };
        let Some(i) = gs
            .wants
            .iter()
            .position(|w| w.peer == *from && w.speaker == *speaker && w.from == a)
        else {
            return;
        };
        let w = gs.wants.remove(i);
        let b = b.min(w.to);
        let mine = gs.have.get(speaker).cloned().unwrap_or_default();
        // Skipping is for old messages: never above what the speaker is known to have said
        // (or, not knowing that, above what we hold of it), so that nobody can make us drop
        // the speaker's next messages by claiming to have them.
        let ceiling = gs
            .known(speaker, speaker)
            .map_or(0, SeqSet::max)
            .max(mine.max());
        let missing = SeqSet {
            upto: 0,
            ranges: vec![(a, b)],
        }
        .missing_from(&mine, 64);
        let mut skip = Vec::new();
        for (x, y) in missing {
            let u = gs
                .unavailable
                .entry((speaker.clone(), from.clone()))
                .or_default();
            u.insert_range(x, y);
            *u = u.truncated(MAX_RANGES);
            for seq in x..=y.min(x.saturating_add(10_000)).min(ceiling) {
                let elsewhere = peers.iter().any(|p| {
                    gs.known(p, speaker).is_some_and(|k| k.contains(seq))
                        && !gs
                            .unavailable
                            .get(&(speaker.clone(), p.clone()))
                            .is_some_and(|u| u.contains(seq))
                });
                if !elsewhere {
                    skip.push(seq);
                }
            }
        }
        if !skip.is_empty() {
            let set = gs.have.entry(speaker.clone()).or_default();
            for &seq in &skip {
                set.insert(seq);
            }
            let held = set.clone();
            self.stats.sync_skipped += skip.len() as u64;
            self.persist(Record::SyncVector {
                gid: gid.clone(),
                member: me,
                speaker: speaker.clone(),
                held,
            });
        }
        self.sync_pull(gid, now);
    }

    /// A speaker asks us to relay its next messages to members it cannot reach, and to offer
    /// them what we hold of its messages now.
    fn on_tell(&mut self, from: &OnionId, gid: &GroupId, members: Vec<OnionId>, now: Timestamp) {
        if !self.joined(gid) || !self.is_member_of(gid, from) {
            self.stats.non_member_packets += 1;
            return;
        }
        let me = self.cfg.own_id.clone();
        let until = now + self.cfg.sync_interval;
        let delay = self.cfg.sync_ack_delay;
        let mut offer = Vec::new();
        for x in members.into_iter().take(self.cfg.max_group_members) {
            if x == me || x == *from || !self.is_member_of(gid, &x) {
                continue;
            }
            if let Some(gs) = self.gsync(gid) {
                gs.relay.insert((from.clone(), x.clone()), until);
            }
            offer.push(x);
        }
        for x in offer {
            if self.sync_online(&x).is_some() {
                self.schedule_digest(gid, &x, now + delay);
            }
        }
    }

    // ----- pulling -----

    /// Asks peers for pages of what they hold and we lack, within the caps.
    pub(crate) fn sync_pull(&mut self, gid: &GroupId, now: Timestamp) {
        if !self.joined(gid) {
            return;
        }
        let me = self.cfg.own_id.clone();
        let page = self.cfg.sync_page.clamp(1, 1000);
        let (per_peer, total) = (self.cfg.sync_wants_per_peer, self.cfg.sync_wants_total);
        let Some(g) = self.groups.get(gid) else {
            return;
        };
        if g.sync.wants.len() >= total {
            return;
        }
        let peers: Vec<OnionId> = g
            .members
            .iter()
            .filter(|m| self.sync_online(m).is_some())
            .cloned()
            .collect();
        let mut speakers: BTreeSet<OnionId> = BTreeSet::new();
        for p in &peers {
            if let Some(v) = g.sync.known.get(p) {
                speakers.extend(v.keys().filter(|s| **s != me).cloned());
            }
        }
        let mut new_wants: Vec<Want> = Vec::new();
        let mut count = g.sync.wants.len();
        let mut per: BTreeMap<OnionId, usize> = peers
            .iter()
            .map(|p| (p.clone(), g.sync.want_count(p)))
            .collect();
        'speakers: for s in speakers {
            let mine = g.sync.have.get(&s).cloned().unwrap_or_default();
            let mut target = SeqSet::default();
            for p in &peers {
                if let Some(k) = g.sync.known(p, &s) {
                    target.union(k);
                }
            }
            for (a, b) in target.missing_from(&mine, 16) {
                let mut x = a;
                while x <= b {
                    if count >= total {
                        break 'speakers;
                    }
                    let end = b.min(x.saturating_add(page - 1));
                    if g.sync.wanted(&s, x, end)
                        || new_wants
                            .iter()
                            .any(|w| w.speaker == s && w.from <= end && x <= w.to)
                    {
                        x = end.saturating_add(1);
                        continue;
                    }
                    // The speaker itself first, then whoever is least busy.
                    let mut best: Option<(OnionId, u64)> = None;
                    let order = std::iter::once(&s)
                        .filter(|p| peers.contains(p))
                        .chain(peers.iter().filter(|p| **p != s));
                    for p in order {
                        if per.get(p).copied().unwrap_or(0) >= per_peer {
                            continue;
                        }
                        let Some(k) = g.sync.known(p, &s) else {
                            continue;
                        };
                        let gone = g.sync.unavailable.get(&(s.clone(), p.clone()));
                        if !k.contains(x) || gone.is_some_and(|u| u.contains(x)) {
                            continue;
                        }
                        // How far from `x` it holds without a gap.
                        let mut e = x;
                        while e < end
                            && k.contains(e + 1)
                            && !gone.is_some_and(|u| u.contains(e + 1))
                        {
                            e += 1;
                        }
                        let better = match &best {
                            None => true,
                            Some((bp, _)) => {
                                *bp != s
                                    && per.get(p).copied().unwrap_or(0)
                                        < per.get(bp).copied().unwrap_or(0)
                            }
                        };
                        if better {
                            best = Some((p.clone(), e));
                        }
                    }
                    let Some((p, e)) = best else {
                        break; // nobody free has it now: try again when a want completes
                    };
                    *per.entry(p.clone()).or_insert(0) += 1;
                    count += 1;
                    new_wants.push(Want {
                        speaker: s.clone(),
                        from: x,
                        to: e,
                        peer: p,
                        sent: now,
                    });
                    x = e.saturating_add(1);
                }
            }
        }
        for w in new_wants {
            if let Some(out) = self.sync_online(&w.peer) {
                self.send(
                    out,
                    &Packet::GroupSyncWant {
                        gid: gid.clone(),
                        speaker: w.speaker.clone(),
                        from: w.from,
                        to: w.to,
                    },
                );
                if let Some(gs) = self.gsync(gid) {
                    gs.wants.push(w);
                }
            }
        }
    }

    // ----- digests -----

    fn schedule_digest(&mut self, gid: &GroupId, to: &OnionId, at: Timestamp) {
        if let Some(gs) = self.gsync(gid) {
            let e = gs.digest_due.entry(to.clone()).or_insert(at);
            *e = (*e).min(at);
        }
    }

    /// Our ring neighbours in a group: the first online sync member at or after 1, 2, 4, 8…
    /// places after us in the sorted member list.
    pub(crate) fn fingers(&self, gid: &GroupId) -> Vec<OnionId> {
        let list = self.sorted_list(gid);
        let n = list.len();
        let Some(pos) = list.iter().position(|m| *m == self.cfg.own_id) else {
            return Vec::new();
        };
        let mut out: Vec<OnionId> = Vec::new();
        let mut d = 1;
        while d < n {
            for k in d..n {
                let m = &list[(pos + k) % n];
                if self.sync_online(m).is_some() {
                    if !out.contains(m) {
                        out.push(m.clone());
                    }
                    break;
                }
            }
            d *= 2;
        }
        out
    }

    fn schedule_fingers(&mut self, gid: &GroupId, at: Timestamp) {
        for f in self.fingers(gid) {
            self.schedule_digest(gid, &f, at);
        }
    }

    /// Sends `to` the entries it is not known to hold yet (all of them with `full`; an empty
    /// digest only with `full`, for its list hash).
    fn send_digest(&mut self, gid: &GroupId, to: &OnionId, full: bool) {
        let Some(out) = self.sync_online(to) else {
            return;
        };
        let me = self.cfg.own_id.clone();
        let ours = self.list_hash(gid);
        let sorted = self.sorted_list(gid);
        let tag = self.group_tag(gid);
        let Some(gs) = self.groups.get(gid).map(|g| &g.sync) else {
            return;
        };
        let by_index = gs.peer_list.get(to) == Some(&ours);
        let speakers: Vec<OnionId> = std::iter::once(me.clone())
            .chain(gs.have.keys().cloned())
            .collect();
        let mut entries = Vec::new();
        let mut told = Vec::new();
        for s in speakers {
            let cur = gs.held(&me, &s).truncated(MAX_RANGES);
            if cur.is_empty() {
                continue;
            }
            let already = gs.told.get(to).and_then(|t| t.get(&s));
            let knows = gs.known(to, &s).is_some_and(|k| k.covers_set(&cur));
            if !full && (already.is_some_and(|t| t.covers_set(&cur)) || knows) {
                continue;
            }
            let key = match sorted.iter().position(|m| *m == s) {
                Some(i) if by_index => DigestKey::Index(u32::try_from(i).unwrap_or(u32::MAX)),
                _ => DigestKey::Id(s.clone()),
            };
            entries.push(DigestEntry {
                key,
                held: cur.clone(),
            });
            told.push((s, cur));
        }
        if entries.is_empty() && !full {
            return;
        }
        self.send(
            out,
            &Packet::GroupSyncDigest {
                group: tag,
                list: ours,
                entries,
            },
        );
        if let Some(gs) = self.gsync(gid) {
            let t = gs.told.entry(to.clone()).or_default();
            for (s, cur) in told {
                t.insert(s, cur);
            }
        }
    }

    // ----- sessions -----

    /// A sync member came online: send it our full digest for every group we share.
    pub(crate) fn sync_on_online(&mut self, id: &OnionId, now: Timestamp) {
        if !self.is_sync_peer(id) {
            return;
        }
        let shared: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.state == GroupState::Joined && g.members.contains(id))
            .map(|(k, _)| k.clone())
            .collect();
        for gid in shared {
            if let Some(gs) = self.gsync(&gid) {
                gs.told.remove(id);
                gs.digest_due.remove(id);
            }
            self.send_digest(&gid, id, true);
            let _ = now;
        }
    }

    /// A session ended: forget what was in flight with the peer; if it had just spoken to us,
    /// tell our neighbours what we got from it (it may have reached nobody else).
    pub(crate) fn sync_on_session_end(&mut self, id: &OnionId, now: Timestamp) {
        let interval = self.cfg.sync_interval;
        let delay = self.cfg.sync_ack_delay;
        let gids: Vec<GroupId> = self.groups.keys().cloned().collect();
        for gid in gids {
            let Some(gs) = self.gsync(&gid) else {
                continue;
            };
            let before = gs.wants.len();
            gs.wants.retain(|w| w.peer != *id);
            let lost_wants = gs.wants.len() != before;
            gs.digest_due.remove(id);
            gs.ack_due.remove(id);
            gs.told.remove(id);
            let recent = gs.recent_from.get(id).is_some_and(|t| *t + interval > now);
            if recent {
                self.schedule_fingers(&gid, now + delay);
            }
            if lost_wants {
                self.sync_pull(&gid, now);
            }
        }
    }

    // ----- timers -----

    pub(crate) fn sync_deadline(&self) -> Option<Timestamp> {
        if !self.cfg.sync {
            return None;
        }
        let mut t: Option<Timestamp> = None;
        let mut at = |x: Timestamp| t = Some(t.map_or(x, |t| t.min(x)));
        for g in self.groups.values() {
            if g.state != GroupState::Joined {
                continue;
            }
            let s = &g.sync;
            s.digest_due.values().for_each(|x| at(*x));
            s.ack_due.values().for_each(|x| at(*x));
            if let Some(x) = s.tell_due {
                at(x);
            }
            if let Some(w) = s.wants.iter().map(|w| w.sent).min() {
                at(w + self.cfg.sync_want_timeout);
            }
            if let Some(x) = s.next_periodic {
                at(x);
            }
        }
        t
    }

    pub(crate) fn handle_sync_timeout(&mut self, now: Timestamp) {
        if !self.cfg.sync {
            return;
        }
        let gids: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.state == GroupState::Joined)
            .map(|(k, _)| k.clone())
            .collect();
        let me = self.cfg.own_id.clone();
        for gid in gids {
            // Acknowledgements.
            let acks: Vec<OnionId> = self
                .groups
                .get(&gid)
                .map(|g| {
                    g.sync
                        .ack_due
                        .iter()
                        .filter(|(_, t)| **t <= now)
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            let tag = self.group_tag(&gid);
            for s in acks {
                let held = self
                    .gsync(&gid)
                    .map(|gs| {
                        gs.ack_due.remove(&s);
                        gs.held(&me, &s).truncated(MAX_RANGES)
                    })
                    .unwrap_or_default();
                if let Some(out) = self.sync_online(&s) {
                    let p = Packet::GroupSyncAck {
                        group: tag.clone(),
                        held,
                    };
                    self.send(out, &p);
                }
            }
            // Periodic anti-entropy with the ring neighbours.
            let periodic = self
                .groups
                .get(&gid)
                .map(|g| g.sync.next_periodic)
                .unwrap_or(None);
            match periodic {
                None => {
                    let first = now + self.jittered_interval();
                    if let Some(gs) = self.gsync(&gid) {
                        gs.next_periodic = Some(first);
                    }
                }
                Some(t) if t <= now => {
                    let next = now + self.jittered_interval();
                    if let Some(gs) = self.gsync(&gid) {
                        gs.next_periodic = Some(next);
                        gs.relay.retain(|_, until| *until > now);
                    }
                    self.schedule_fingers(&gid, now);
                }
                Some(_) => {}
            }
            // Digests.
            let due: Vec<OnionId> = self
                .groups
                .get(&gid)
                .map(|g| {
                    g.sync
                        .digest_due
                        .iter()
                        .filter(|(_, t)| **t <= now)
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            for p in due {
                let first_contact = self
                    .gsync(&gid)
                    .map(|gs| {
                        gs.digest_due.remove(&p);
                        !gs.told.contains_key(&p)
                    })
                    .unwrap_or(false);
                self.send_digest(&gid, &p, first_contact);
            }
            // Requests to relay.
            let tells_due = self
                .groups
                .get(&gid)
                .and_then(|g| g.sync.tell_due)
                .is_some_and(|t| t <= now);
            if tells_due {
                let tells = self
                    .gsync(&gid)
                    .map(|gs| {
                        gs.tell_due = None;
                        std::mem::take(&mut gs.tells)
                    })
                    .unwrap_or_default();
                for (h, xs) in tells {
                    if let Some(out) = self.sync_online(&h) {
                        let p = Packet::GroupSyncTell {
                            gid: gid.clone(),
                            members: xs.into_iter().collect(),
                        };
                        self.send(out, &p);
                    }
                }
            }
            // Wants nobody answered.
            let timeout = self.cfg.sync_want_timeout;
            let expired = self
                .gsync(&gid)
                .map(|gs| {
                    let before = gs.wants.len();
                    gs.wants.retain(|w| w.sent + timeout > now);
                    before != gs.wants.len()
                })
                .unwrap_or(false);
            if expired {
                self.sync_pull(&gid, now);
            }
        }
    }

    /// `sync_interval` × 0.9–1.1, so that members do not all send at once.
    fn jittered_interval(&mut self) -> std::time::Duration {
        let base = self.cfg.sync_interval.as_millis() as u64;
        let per_mille = 900 + u64::from(self.rng.next_u32()) % 201;
        std::time::Duration::from_millis(base.saturating_mul(per_mille) / 1000)
    }

    // ----- queries and restoring -----

    /// Who is known to hold a group message we track (by its local id): the members whose
    /// acknowledgements or digests cover it. For tests and the simulator.
    pub fn sync_holders(&self, gid: &GroupId, id: MsgId) -> Option<Vec<OnionId>> {
        let g = self.groups.get(gid)?;
        let me = &self.cfg.own_id;
        let (speaker, seq) = match g.sync.own.iter().find(|(_, o)| o.id == id) {
            Some((seq, _)) => (me.clone(), *seq),
            None => {
                let slot = g.engine.get(id)?;
                (slot.sender.clone(), slot.sync?.seq)
            }
        };
        Some(
            g.sync
                .known
                .iter()
                .filter(|(m, v)| {
                    g.members.contains(*m) && v.get(&speaker).is_some_and(|s| s.contains(seq))
                })
                .map(|(m, _)| m.clone())
                .collect(),
        )
    }

    /// What we hold of `speaker`'s messages in a group (ours: every number we used).
    pub fn sync_held(&self, gid: &GroupId, speaker: &OnionId) -> Option<SeqSet> {
        let g = self.groups.get(gid)?;
        Some(g.sync.held(&self.cfg.own_id, speaker))
    }

    /// A peer's `supports`: kept, so that we know what it speaks before it reconnects.
    pub(crate) fn remember_extensions(&mut self, id: &OnionId, exts: &[String]) {
        self.persist(Record::PeerExtensions {
            id: id.clone(),
            extensions: exts.to_vec(),
        });
    }

    /// Restores the extensions a peer announced last time (after its buddy or group entry).
    pub fn restore_peer_extensions(&mut self, id: &OnionId, exts: Vec<String>) {
        if let Some(b) = self.buddies.get_mut(id) {
            b.supports = exts.into_iter().collect();
        }
    }

    /// Restores the next sequence number of a group (before `start`).
    pub fn restore_sync_seq(&mut self, gid: &GroupId, next: u64) {
        if let Some(gs) = self.gsync(gid) {
            gs.next_seq = gs.next_seq.max(next);
        }
    }

    /// Restores what `member` (us or another member) holds of `speaker`'s messages.
    pub fn restore_sync_vector(
        &mut self,
        gid: &GroupId,
        member: &OnionId,
        speaker: &OnionId,
        held: SeqSet,
    ) {
        let me = self.cfg.own_id.clone();
        let Some(gs) = self.gsync(gid) else {
            return;
        };
        if *member == me {
            if *speaker != me {
                gs.have.insert(speaker.clone(), held);
            }
        } else {
            gs.known
                .entry(member.clone())
                .or_default()
                .insert(speaker.clone(), held);
        }
    }

    /// Restores one of our messages whose delivery is still counted (`delivered` so far).
    pub fn restore_sync_own(&mut self, gid: &GroupId, seq: u64, id: MsgId, delivered: u32) {
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        let of = g.n_others();
        if delivered < of {
            g.sync.own.insert(seq, OwnSync { id, of, delivered });
        }
    }

    /// Adds the sync data of a restored group message (after `restore_group_message`).
    pub fn restore_group_sync_meta(&mut self, gid: &GroupId, id: MsgId, meta: SyncMeta) {
        if let Some(g) = self.groups.get_mut(gid) {
            g.engine.restore_sync(id, meta);
        }
    }
}

impl SeqSetExt for SeqSet {
    fn covers_set(&self, other: &SeqSet) -> bool {
        other.missing_from(self, 1).is_empty()
    }
}

/// Small additions to [`SeqSet`] used here.
pub(crate) trait SeqSetExt {
    /// Whether every number of `other` is in `self`.
    fn covers_set(&self, other: &SeqSet) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ids_are_stable_and_distinct() {
        let g = GroupId::new("g").unwrap();
        let s = OnionId::parse("nodeaaaaaaaaaaaa").unwrap();
        let t = OnionId::parse("nodebaaaaaaaaaaa").unwrap();
        assert_eq!(local_id(&g, &s, 1), local_id(&g, &s, 1));
        assert_ne!(local_id(&g, &s, 1), local_id(&g, &s, 2));
        assert_ne!(local_id(&g, &s, 1), local_id(&g, &t, 1));
    }

    #[test]
    fn list_hash_depends_on_every_member() {
        let a = OnionId::parse("nodeaaaaaaaaaaaa").unwrap();
        let b = OnionId::parse("nodebaaaaaaaaaaa").unwrap();
        let c = OnionId::parse("nodecaaaaaaaaaaa").unwrap();
        let h = list_hash(&[a.clone(), b.clone()]);
        assert_eq!(h, list_hash(&[a.clone(), b.clone()]));
        assert_ne!(h, list_hash(&[a.clone(), c]));
        assert_ne!(h, list_hash(&[a]));
    }
}
