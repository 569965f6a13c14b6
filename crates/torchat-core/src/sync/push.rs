//! Speaking and receiving full copies: sequence numbers, the eager push, relaying on a
//! speaker's request, echoes to members without the extension.

use torchat_wire::{GroupId, OnionId, Packet};

use super::*;
use crate::node::Node;
use crate::redundancy::{sync_msgid, Copy, Outcome};
use crate::time::Timestamp;
use crate::types::{Record, SyncCopy, SyncMeta};

impl Node {
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
        let (max_own, max_cache, max_bytes) = (
            self.cfg.sync_tracked_own,
            self.cfg.sync_cache,
            self.cfg.sync_cache_bytes,
        );
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
            max_bytes,
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
            } => self.on_want(from, &gid, speaker, a, b, now),
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
    pub(super) fn on_sync_copy(
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
        // Said before we joined (with a minute for clocks that disagree): not ours to see. The
        // speaker's numbers follow its time, so everything before it is older still.
        let before_us = g
            .sync
            .floor
            .is_some_and(|f| copy.meta.time + FLOOR_SLACK < f);
        if !direct && before_us {
            set.insert_range(1, seq);
            let held = set.clone();
            g.sync.descending.remove(&speaker);
            self.stats.sync_skipped += 1;
            self.persist(Record::SyncVector {
                gid: gid.clone(),
                member: me,
                speaker,
                held,
            });
            self.sync_pull(gid, now);
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
        g.sync
            .cache_put(copy.clone(), max_cache, self.cfg.sync_cache_bytes);
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
    pub(super) fn echo_to_seed_members(&mut self, gid: &GroupId, copy: &SyncCopy, now: Timestamp) {
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
    pub(super) fn relay_copy(
        &mut self,
        gid: &GroupId,
        from: &OnionId,
        copy: &SyncCopy,
        now: Timestamp,
    ) {
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
    pub(super) fn note_list(
        &mut self,
        gid: &GroupId,
        from: &OnionId,
        list: [u8; 4],
        now: Timestamp,
    ) {
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

    /// A speaker asks us to relay its next messages to members it cannot reach, and to offer
    /// them what we hold of its messages now.
    pub(super) fn on_tell(
        &mut self,
        from: &OnionId,
        gid: &GroupId,
        members: Vec<OnionId>,
        now: Timestamp,
    ) {
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
}
