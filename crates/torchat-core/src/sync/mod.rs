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

mod pull;
mod push;
mod timers;
mod vectors;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sha2::{Digest, Sha256};
use torchat_wire::{GroupId, OnionId, SeqSet};

use crate::node::Node;
use crate::time::Timestamp;
use crate::types::{ConnId, GroupState, MsgId, Record, SyncCopy, SyncMeta};

/// The extension's name in `supports`.
pub const SYNC_EXT: &str = "torchat_sync";

/// How long a member waits before re-checking member lists with a peer whose list hash differs.
const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Members asked to relay for one member the speaker cannot reach.
const HELPERS: usize = 2;
/// How far a speaker's clock may be behind ours before a message it says it said before we
/// joined is taken as from before we joined.
const FLOOR_SLACK: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// Bytes of text in `cache`.
    cache_bytes: usize,
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
    /// When we joined (messages said before are not ours to see: new members do not get the
    /// history from before they were in the group).
    pub floor: Option<Timestamp>,
    /// Speakers whose messages we pull newest first, until one from before we joined shows
    /// where our part of their history begins.
    descending: BTreeSet<OnionId>,
    /// When we answered each peer's recent wants (rate limit).
    served: BTreeMap<OnionId, VecDeque<Timestamp>>,
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

    /// Keeps a copy in memory: at most `max` copies and `max_bytes` of text, oldest out first.
    fn cache_put(&mut self, c: SyncCopy, max: usize, max_bytes: usize) {
        let key = (c.speaker.clone(), c.meta.seq);
        let len = c.text.len();
        match self.cache.insert(key.clone(), c) {
            None => self.cache_order.push_back(key),
            Some(old) => self.cache_bytes = self.cache_bytes.saturating_sub(old.text.len()),
        }
        self.cache_bytes += len;
        while self.cache.len() > max.max(1)
            || (self.cache_bytes > max_bytes && self.cache.len() > 1)
        {
            let Some(k) = self.cache_order.pop_front() else {
                break;
            };
            if let Some(old) = self.cache.remove(&k) {
                self.cache_bytes = self.cache_bytes.saturating_sub(old.text.len());
            }
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

    /// Restores when we joined a group (messages said before are not fetched for us).
    pub fn restore_sync_floor(&mut self, gid: &GroupId, joined: Timestamp) {
        if let Some(gs) = self.gsync(gid) {
            gs.floor = Some(joined);
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
    fn the_copy_cache_is_bounded_in_count_and_bytes() {
        let s = OnionId::parse("nodeaaaaaaaaaaaa").unwrap();
        let copy = |seq: u64, len: usize| SyncCopy {
            speaker: s.clone(),
            meta: SyncMeta {
                seq,
                time: Timestamp::from_millis(seq),
                sig: None,
            },
            text: vec![b'x'; len],
        };
        let mut g = GroupSync::default();
        for seq in 1..=100 {
            g.cache_put(copy(seq, 10), 50, 1_000_000);
        }
        assert_eq!(g.cache.len(), 50);
        assert!(g.cache.contains_key(&(s.clone(), 100)));
        assert!(!g.cache.contains_key(&(s.clone(), 50)));
        for seq in 101..=110 {
            g.cache_put(copy(seq, 300_000), 50, 1_000_000);
        }
        assert!(g.cache_bytes <= 1_000_000, "{}", g.cache_bytes);
        assert_eq!(g.cache.len(), 3);
        let sum: usize = g.cache.values().map(|c| c.text.len()).sum();
        assert_eq!(g.cache_bytes, sum);
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
