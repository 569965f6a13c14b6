//! Version vectors: acknowledgements and digests, what each member holds, delivery counts,
//! ring neighbours, sessions starting and ending.

use torchat_wire::sync::MAX_RANGES;
use torchat_wire::{DigestEntry, DigestKey, GroupId, OnionId, Packet, SeqSet};

use super::*;
use crate::node::Node;
use crate::time::Timestamp;
use crate::types::{Event, GroupState, Record};

impl Node {
    /// A digest: what `from` holds, per speaker.
    pub(super) fn on_digest(
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
    pub(super) fn learn(
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
    pub(super) fn own_delivery(&mut self, gid: &GroupId, new: &[(u64, u64)], max_seen: u64) {
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

    // ----- digests -----

    pub(super) fn schedule_digest(&mut self, gid: &GroupId, to: &OnionId, at: Timestamp) {
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

    pub(super) fn schedule_fingers(&mut self, gid: &GroupId, at: Timestamp) {
        for f in self.fingers(gid) {
            self.schedule_digest(gid, &f, at);
        }
    }

    /// Sends `to` the entries it is not known to hold yet (all of them with `full`; an empty
    /// digest only with `full`, for its list hash).
    pub(super) fn send_digest(&mut self, gid: &GroupId, to: &OnionId, full: bool) {
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
}
