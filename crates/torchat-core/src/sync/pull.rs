//! Pulling what we lack in pages, and answering other members' wants (from memory or from
//! storage).

use std::collections::{BTreeMap, BTreeSet};

use torchat_wire::sync::MAX_RANGES;
use torchat_wire::{GroupId, OnionId, Packet, SeqSet};

use super::*;
use crate::node::Node;
use crate::time::Timestamp;
use crate::types::{LoadRequest, Output, Record, SyncCopy};

impl Node {
    /// `from` asks for copies of `speaker`'s messages `a..=b`.
    pub(super) fn on_want(
        &mut self,
        from: &OnionId,
        gid: &GroupId,
        speaker: OnionId,
        a: u64,
        b: u64,
        now: Timestamp,
    ) {
        if !self.joined(gid) || !self.is_member_of(gid, from) || !self.is_sync_peer(from) {
            self.stats.non_member_packets += 1;
            return;
        }
        let me = self.cfg.own_id.clone();
        if speaker != me && !self.spoke_in(gid, &speaker) {
            return;
        }
        // Rate: at most `sync_wants_per_minute` answered per peer and group; more are ignored
        // (a well-behaved peer asks again after its timeout).
        let limit = self.cfg.sync_wants_per_minute;
        let Some(gs) = self.gsync(gid) else {
            return;
        };
        let served = gs.served.entry(from.clone()).or_default();
        while served
            .front()
            .is_some_and(|t| *t + std::time::Duration::from_secs(60) <= now)
        {
            served.pop_front();
        }
        if served.len() >= limit {
            self.stats.sync_ignored += 1;
            return;
        }
        served.push_back(now);
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
    pub(super) fn send_page(
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
    pub(super) fn on_end(
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
        let mut desc_add: Vec<OnionId> = Vec::new();
        'speakers: for s in speakers {
            let mine = g.sync.have.get(&s).cloned().unwrap_or_default();
            let mut target = SeqSet::default();
            for p in &peers {
                if let Some(k) = g.sync.known(p, &s) {
                    target.union(k);
                }
            }
            // After we joined, a speaker we hold nothing of is pulled newest first, one page at
            // a time, until a message from before we joined marks where our part begins.
            if g.sync.floor.is_some() && (mine.is_empty() || g.sync.descending.contains(&s)) {
                if count >= total
                    || g.sync.wants.iter().any(|w| w.speaker == s)
                    || new_wants.iter().any(|w| w.speaker == s)
                {
                    continue;
                }
                let Some(&(a, b)) = target.missing_from(&mine, 16).last() else {
                    continue;
                };
                let x = b.saturating_sub(page - 1).max(a);
                let holder = std::iter::once(&s)
                    .filter(|p| peers.contains(p))
                    .chain(peers.iter().filter(|p| **p != s))
                    .filter(|p| per.get(*p).copied().unwrap_or(0) < per_peer)
                    .find(|p| {
                        g.sync.known(p, &s).is_some_and(|k| k.covers(x, b))
                            && !g
                                .sync
                                .unavailable
                                .get(&(s.clone(), (*p).clone()))
                                .is_some_and(|u| u.contains(b))
                    });
                if let Some(p) = holder {
                    *per.entry(p.clone()).or_insert(0) += 1;
                    count += 1;
                    new_wants.push(Want {
                        speaker: s.clone(),
                        from: x,
                        to: b,
                        peer: p.clone(),
                        sent: now,
                    });
                    desc_add.push(s.clone());
                }
                continue;
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
        if let Some(gs) = self.gsync(gid) {
            gs.descending.extend(desc_add);
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
}
