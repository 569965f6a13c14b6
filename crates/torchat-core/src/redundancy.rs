//! The redundancy engine of one group (PROTOCOL §4): matching direct copies and relayed claims
//! to messages, the settle window, and the trust state of each message.
//!
//! A message is identified by (speaker, text); a text a speaker repeats is several messages.
//! Each claimant's echoes are matched in order: a claim by R goes to the first message with that
//! speaker and text that R has not vouched for yet; a direct copy goes to the first one without
//! a direct copy. So R's second "ok" counts for the second "ok", and nobody counts twice.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use torchat_wire::OnionId;

use crate::time::Timestamp;
use crate::types::{MsgId, SyncMeta, Trust};

/// The message id a sync message carries in `torchat_signed` packets: its sequence number and
/// time, big-endian. Unique per speaker and group, and covered by the signature.
pub(crate) fn sync_msgid(meta: &SyncMeta) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&meta.seq.to_be_bytes());
    m[8..].copy_from_slice(&meta.time.as_millis().to_be_bytes());
    m
}

/// One message as the engine tracks it.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub id: MsgId,
    pub sender: OnionId,
    pub text: Vec<u8>,
    pub direct: bool,
    pub claimants: BTreeSet<OnionId>,
    /// When the message was first seen (direct copy or first claim).
    pub first_seen: Timestamp,
    /// End of the settle window (relayed-only messages).
    pub window_end: Option<Timestamp>,
    /// What was shown, once shown.
    pub shown: Option<Trust>,
    /// The message id, when a signed copy (extension `torchat_signed`) was seen.
    pub msgid: Option<[u8; 16]>,
    /// A copy with a valid signature of the speaker was seen: the text is authentic.
    pub signed: bool,
    /// Sequence number, time and signature, once a sync copy was seen.
    pub sync: Option<SyncMeta>,
}

impl Slot {
    fn trust(&self, n: u32, unconfirmed: bool) -> Trust {
        let k = u32::try_from(self.claimants.len()).unwrap_or(u32::MAX);
        if self.direct {
            Trust::Direct { confirmations: k }
        } else if self.signed {
            Trust::Signed { k, n }
        } else if unconfirmed {
            Trust::Unconfirmed { k, n }
        } else {
            Trust::Relayed { k, n }
        }
    }
}

/// What the caller should do after feeding the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing to show or update.
    Nothing,
    /// Show the message now (first time), with this trust.
    Show(MsgId, Trust),
    /// The shown message's trust changed.
    Update(MsgId, Trust),
}

/// A copy of a message as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Copy<'a> {
    pub sender: &'a OnionId,
    pub text: &'a [u8],
    /// The message id (signed or sync copies).
    pub msgid: Option<[u8; 16]>,
    /// Its signature was verified.
    pub signed: bool,
    /// Sync data, for sync copies.
    pub sync: Option<SyncMeta>,
}

/// What a copy needs of the message it goes to: no direct copy yet, or no claim by this
/// claimant yet.
#[derive(Debug, Clone, Copy)]
enum Fit<'a> {
    Direct,
    Claim(&'a OnionId),
}

impl Fit<'_> {
    fn fits(self, s: &Slot) -> bool {
        match self {
            Fit::Direct => !s.direct,
            Fit::Claim(c) => !s.claimants.contains(c),
        }
    }
}

/// The messages of one (speaker, text), in arrival order, with how many leading ones a search
/// can skip: a speaker who repeats a text thousands of times costs a lookup per copy, not a
/// scan of every earlier repetition.
#[derive(Debug, Default)]
struct Same {
    slots: VecDeque<u64>,
    /// The first `direct` slots all have a direct copy.
    direct: usize,
    /// For each claimant, the first so many slots all have its claim (absent: none known).
    claimed: BTreeMap<OnionId, usize>,
    /// Slots by message id.
    ids: BTreeMap<[u8; 16], BTreeSet<u64>>,
}

impl Same {
    fn skip(&self, fit: Fit<'_>) -> usize {
        match fit {
            Fit::Direct => self.direct,
            Fit::Claim(c) => self.claimed.get(c).copied().unwrap_or(0),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Engine {
    slots: BTreeMap<u64, Slot>,
    /// Slot numbers per (speaker, text), in arrival order.
    by_key: BTreeMap<(OnionId, Vec<u8>), Same>,
    /// Slot numbers of sync messages per (speaker, sequence number).
    by_seq: BTreeMap<(OnionId, u64), u64>,
    /// Slot numbers by local id (every shown message and trust change looks one up).
    by_id: BTreeMap<MsgId, BTreeSet<u64>>,
    next: u64,
}

impl Engine {
    /// The message a copy belongs to: by id for signed copies (or the first plain-matched one
    /// without an id, which then takes it), else the first one with that speaker and text
    /// that `fit` accepts.
    fn find(
        &self,
        sender: &OnionId,
        text: &[u8],
        msgid: Option<[u8; 16]>,
        fit: Fit<'_>,
    ) -> Option<u64> {
        let same = self.by_key.get(&(sender.clone(), text.to_vec()))?;
        if let Some(m) = msgid {
            if let Some(&n) = same.ids.get(&m).and_then(|set| set.first()) {
                return Some(n);
            }
        }
        let found = same.slots.iter().skip(same.skip(fit)).copied().find(|n| {
            self.slots
                .get(n)
                .is_some_and(|s| (msgid.is_none() || s.msgid.is_none()) && fit.fits(s))
        });
        debug_assert_eq!(found, self.find_by_scan(same, msgid, fit));
        found
    }

    /// `find` the slow way, to check the skips against.
    fn find_by_scan(&self, same: &Same, msgid: Option<[u8; 16]>, fit: Fit<'_>) -> Option<u64> {
        let slot = |n: &u64| self.slots.get(n);
        if let Some(m) = msgid {
            if let Some(n) = same
                .slots
                .iter()
                .find(|n| slot(n).is_some_and(|s| s.msgid == Some(m)))
            {
                return Some(*n);
            }
        }
        same.slots
            .iter()
            .find(|n| {
                slot(n).is_some_and(|s| (msgid.is_none() || s.msgid.is_none()) && fit.fits(s))
            })
            .copied()
    }

    /// Slot `n` gained a direct copy or claims (`who`, or any of its claimants): moves the
    /// skips of its (speaker, text) past every leading slot that now has them.
    fn advance(&mut self, n: u64, who: Option<&OnionId>) {
        let Some(s) = self.slots.get(&n) else {
            return;
        };
        let slots = &self.slots;
        let Some(same) = self.by_key.get_mut(&(s.sender.clone(), s.text.clone())) else {
            return;
        };
        let at = |same: &Same, i: usize| same.slots.get(i).and_then(|x| slots.get(x));
        while at(same, same.direct).is_some_and(|s| s.direct) {
            same.direct += 1;
        }
        let claimants: Vec<&OnionId> = match who {
            Some(c) => vec![c],
            None => s.claimants.iter().collect(),
        };
        for c in claimants {
            let mut p = same.claimed.get(c).copied().unwrap_or(0);
            let start = p;
            while at(same, p).is_some_and(|s| s.claimants.contains(c)) {
                p += 1;
            }
            if p > start {
                same.claimed.insert(c.clone(), p);
            }
        }
    }

    /// Gives slot `n` the message id `m` (replacing the one it had).
    fn set_msgid(&mut self, n: u64, m: [u8; 16]) {
        let Some(s) = self.slots.get_mut(&n) else {
            return;
        };
        let old = s.msgid.replace(m);
        if old == Some(m) {
            return;
        }
        let Some(same) = self.by_key.get_mut(&(s.sender.clone(), s.text.clone())) else {
            return;
        };
        if let Some(o) = old {
            if let Some(set) = same.ids.get_mut(&o) {
                set.remove(&n);
                if set.is_empty() {
                    same.ids.remove(&o);
                }
            }
        }
        same.ids.entry(m).or_default().insert(n);
    }

    fn new_slot(
        &mut self,
        id: MsgId,
        sender: &OnionId,
        text: &[u8],
        now: Timestamp,
        max: usize,
    ) -> u64 {
        while self.slots.len() >= max.max(1) {
            self.evict_oldest();
        }
        let n = self.next;
        self.next += 1;
        let slot = Slot {
            id,
            sender: sender.clone(),
            text: text.to_vec(),
            direct: false,
            claimants: BTreeSet::new(),
            first_seen: now,
            window_end: None,
            shown: None,
            msgid: None,
            signed: false,
            sync: None,
        };
        self.slots.insert(n, slot);
        self.by_id.entry(id).or_default().insert(n);
        self.by_key
            .entry((sender.clone(), text.to_vec()))
            .or_default()
            .slots
            .push_back(n);
        n
    }

    fn evict_oldest(&mut self) {
        let Some((&n, slot)) = self.slots.iter().next() else {
            return;
        };
        let key = (slot.sender.clone(), slot.text.clone());
        let (msgid, id) = (slot.msgid, slot.id);
        if let Some(m) = slot.sync {
            self.by_seq.remove(&(slot.sender.clone(), m.seq));
        }
        self.slots.remove(&n);
        if let Some(set) = self.by_id.get_mut(&id) {
            set.remove(&n);
            if set.is_empty() {
                self.by_id.remove(&id);
            }
        }
        let Some(same) = self.by_key.get_mut(&key) else {
            return;
        };
        if same.slots.front() == Some(&n) {
            // The oldest message is the first of its text: every skip moves down by one.
            same.slots.pop_front();
            same.direct = same.direct.saturating_sub(1);
            same.claimed
                .values_mut()
                .for_each(|p| *p = p.saturating_sub(1));
            same.claimed.retain(|_, p| *p > 0);
        } else {
            same.slots.retain(|x| *x != n);
            same.direct = 0;
            same.claimed.clear();
        }
        if let Some(m) = msgid {
            if let Some(set) = same.ids.get_mut(&m) {
                set.remove(&n);
                if set.is_empty() {
                    same.ids.remove(&m);
                }
            }
        }
        if same.slots.is_empty() {
            self.by_key.remove(&key);
        }
    }

    /// The slot a copy belongs to, or a new one (with `new_id`).
    fn slot_for(
        &mut self,
        c: Copy<'_>,
        fit: Fit<'_>,
        new_id: MsgId,
        now: Timestamp,
        max: usize,
    ) -> u64 {
        let by_seq = c
            .sync
            .and_then(|m| self.by_seq.get(&(c.sender.clone(), m.seq)).copied());
        let found = by_seq.or_else(|| self.find(c.sender, c.text, c.msgid, fit));
        let n = match found {
            Some(n) => n,
            None => self.new_slot(new_id, c.sender, c.text, now, max),
        };
        if let Some(m) = c.msgid {
            self.set_msgid(n, m);
        }
        if let Some(s) = self.slots.get_mut(&n) {
            s.signed |= c.signed;
            if let (Some(m), None) = (c.sync, s.sync) {
                s.sync = Some(m);
                self.by_seq.insert((c.sender.clone(), m.seq), n);
            }
        }
        n
    }

    /// A direct copy from the speaker. `new_id` is used if this starts a new message.
    pub fn direct(&mut self, c: Copy<'_>, new_id: MsgId, now: Timestamp, max: usize) -> Outcome {
        let n = self.slot_for(c, Fit::Direct, new_id, now, max);
        let Some(s) = self.slots.get_mut(&n) else {
            return Outcome::Nothing;
        };
        s.direct = true;
        self.advance(n, None);
        let Some(s) = self.slots.get_mut(&n) else {
            return Outcome::Nothing;
        };
        s.window_end = None;
        let trust = s.trust(0, false);
        let first = s.shown.is_none();
        s.shown = Some(trust);
        if first {
            Outcome::Show(s.id, trust)
        } else {
            Outcome::Update(s.id, trust)
        }
    }

    /// A claim by `claimant` that it received `text` directly from `sender`.
    #[allow(clippy::too_many_arguments)]
    pub fn claim(
        &mut self,
        c: Copy<'_>,
        claimant: &OnionId,
        new_id: MsgId,
        now: Timestamp,
        window: std::time::Duration,
        max: usize,
        n_others: u32,
    ) -> Outcome {
        let fresh = self.next;
        let n = self.slot_for(c, Fit::Claim(claimant), new_id, now, max);
        let Some(s) = self.slots.get_mut(&n) else {
            return Outcome::Nothing;
        };
        if n >= fresh && s.shown.is_none() && s.window_end.is_none() && !s.direct {
            s.window_end = Some(now + window);
        }
        s.claimants.insert(claimant.clone());
        self.advance(n, Some(claimant));
        let Some(s) = self.slots.get_mut(&n) else {
            return Outcome::Nothing;
        };
        match s.shown {
            // A valid signature proves the text: no need to wait for more vouchers.
            None if s.signed => {
                let trust = s.trust(n_others, false);
                s.shown = Some(trust);
                s.window_end = None;
                Outcome::Show(s.id, trust)
            }
            None => Outcome::Nothing, // still in the settle window
            Some(prev) => {
                let unconfirmed = matches!(prev, Trust::Unconfirmed { .. });
                let trust = s.trust(n_others, unconfirmed);
                s.shown = Some(trust);
                Outcome::Update(s.id, trust)
            }
        }
    }

    /// A copy from a member other than the speaker, with what digests tell about who holds it
    /// (extension `torchat_sync`): shown at once, `(Signed, k of n)` when the signature
    /// verified, else `(k of n)`, or `(UNCONFIRMED k of n)` when the speaker itself says it
    /// never said it.
    #[allow(clippy::too_many_arguments)]
    pub fn synced(
        &mut self,
        c: Copy<'_>,
        holders: impl IntoIterator<Item = OnionId>,
        unconfirmed: bool,
        new_id: MsgId,
        now: Timestamp,
        max: usize,
        n_others: u32,
    ) -> Outcome {
        let n = self.slot_for(c, Fit::Direct, new_id, now, max);
        let Some(s) = self.slots.get_mut(&n) else {
            return Outcome::Nothing;
        };
        s.claimants.extend(holders);
        if s.claimants.remove(c.sender) {
            // The speaker's own claim was taken back: its skip may no longer hold.
            let key = (c.sender.clone(), c.text.to_vec());
            if let Some(same) = self.by_key.get_mut(&key) {
                same.claimed.remove(c.sender);
            }
        }
        self.advance(n, None);
        let Some(s) = self.slots.get_mut(&n) else {
            return Outcome::Nothing;
        };
        s.window_end = None;
        let trust = s.trust(n_others, unconfirmed && !s.signed);
        match s.shown {
            None => {
                s.shown = Some(trust);
                Outcome::Show(s.id, trust)
            }
            Some(prev) if prev != trust => {
                s.shown = Some(trust);
                Outcome::Update(s.id, trust)
            }
            Some(_) => Outcome::Nothing,
        }
    }

    /// `voucher` holds `sender`'s messages `from..=to` (a digest said so): it counts for every
    /// tracked one of them. Returns the shown messages whose label changed.
    pub fn vouch(
        &mut self,
        sender: &OnionId,
        from: u64,
        to: u64,
        voucher: &OnionId,
        n_others: u32,
    ) -> Vec<(MsgId, Trust)> {
        if voucher == sender {
            return Vec::new();
        }
        let slots: Vec<u64> = self
            .by_seq
            .range((sender.clone(), from)..=(sender.clone(), to))
            .map(|(_, n)| *n)
            .collect();
        let mut out = Vec::new();
        for n in slots {
            let Some(s) = self.slots.get_mut(&n) else {
                continue;
            };
            if !s.claimants.insert(voucher.clone()) {
                continue;
            }
            self.advance(n, Some(voucher));
            let Some(s) = self.slots.get_mut(&n) else {
                continue;
            };
            let Some(prev) = s.shown else { continue };
            if s.direct {
                // `(Direct)` does not show its confirmations: count silently.
                s.shown = Some(s.trust(n_others, false));
                continue;
            }
            let trust = s.trust(n_others, matches!(prev, Trust::Unconfirmed { .. }));
            if trust != prev {
                s.shown = Some(trust);
                out.push((s.id, trust));
            }
        }
        out
    }

    /// The tracked message of `sender` with sequence number `seq`.
    pub fn by_seq(&self, sender: &OnionId, seq: u64) -> Option<&Slot> {
        let n = self.by_seq.get(&(sender.clone(), seq))?;
        self.slots.get(n)
    }

    /// The earliest end of a settle window still open.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.slots
            .values()
            .filter(|s| s.shown.is_none())
            .filter_map(|s| s.window_end)
            .min()
    }

    /// Shows every relayed-only message whose window has ended. `unconfirmed(sender, since)`
    /// says whether the speaker had an authenticated connection to us from `since` until now.
    pub fn expire(
        &mut self,
        now: Timestamp,
        n_others: u32,
        unconfirmed: impl Fn(&OnionId, Timestamp) -> bool,
    ) -> Vec<(MsgId, Trust)> {
        let mut out = vec![];
        for s in self.slots.values_mut() {
            if s.shown.is_some() || s.window_end.is_none_or(|e| e > now) {
                continue;
            }
            let trust = s.trust(n_others, unconfirmed(&s.sender, s.first_seen));
            s.shown = Some(trust);
            out.push((s.id, trust));
        }
        out
    }

    /// The tracked message with this local id.
    pub fn get(&self, id: MsgId) -> Option<&Slot> {
        let n = self.by_id.get(&id)?.first()?;
        self.slots.get(n)
    }

    /// Restores a message shown before a restart, so that late copies match it.
    pub fn restore(&mut self, slot: Slot, max: usize) {
        let n = self.new_slot(slot.id, &slot.sender, &slot.text, slot.first_seen, max);
        if let Some(m) = slot.sync {
            self.by_seq.insert((slot.sender.clone(), m.seq), n);
        }
        let msgid = slot.msgid;
        if let Some(s) = self.slots.get_mut(&n) {
            *s = slot;
            s.msgid = None;
        }
        if let Some(m) = msgid {
            self.set_msgid(n, m);
        }
        self.advance(n, None);
    }

    /// Adds the sync data of a restored message (by local id).
    pub fn restore_sync(&mut self, id: MsgId, meta: SyncMeta) {
        let Some(n) = self.by_id.get(&id).and_then(|set| set.first()).copied() else {
            return;
        };
        let Some(s) = self.slots.get_mut(&n) else {
            return;
        };
        s.sync = Some(meta);
        let key = (s.sender.clone(), meta.seq);
        self.by_seq.insert(key, n);
        self.set_msgid(n, sync_msgid(&meta));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(s: &str) -> OnionId {
        OnionId::parse(&format!("{s:a<16}")).unwrap()
    }

    fn mid(n: u8) -> MsgId {
        MsgId([n; 16])
    }

    const W: Duration = Duration::from_secs(10);

    fn cp<'a>(sender: &'a OnionId, text: &'a [u8], msgid: Option<[u8; 16]>) -> Copy<'a> {
        Copy {
            sender,
            text,
            msgid,
            signed: msgid.is_some(),
            sync: None,
        }
    }

    #[test]
    fn relayed_message_is_shown_after_the_window_with_k_of_n() {
        let mut e = Engine::default();
        let (s, t0) = (id("s"), Timestamp::from_millis(1000));
        for (i, r) in ["r", "q", "p"].iter().enumerate() {
            let o = e.claim(cp(&s, b"hi", None), &id(r), mid(i as u8), t0, W, 100, 10);
            assert_eq!(o, Outcome::Nothing);
        }
        assert_eq!(e.next_deadline(), Some(t0 + W));
        assert!(e
            .expire(t0 + W - Duration::from_millis(1), 10, |_, _| false)
            .is_empty());
        let shown = e.expire(t0 + W, 10, |_, _| false);
        assert_eq!(shown, vec![(mid(0), Trust::Relayed { k: 3, n: 10 })]);
        // A later claim raises k; a repeated claim by the same member opens a new message.
        assert_eq!(
            e.claim(cp(&s, b"hi", None), &id("o"), mid(9), t0, W, 100, 10),
            Outcome::Update(mid(0), Trust::Relayed { k: 4, n: 10 })
        );
        // A late direct copy upgrades it.
        assert_eq!(
            e.direct(cp(&s, b"hi", None), mid(8), t0, 100),
            Outcome::Update(mid(0), Trust::Direct { confirmations: 4 })
        );
    }

    #[test]
    fn repeated_texts_are_matched_in_order_per_claimant() {
        let mut e = Engine::default();
        let (s, r, q, t0) = (id("s"), id("r"), id("q"), Timestamp::from_millis(0));
        // S says "ok" twice; we get both directly.
        assert_eq!(
            e.direct(cp(&s, b"ok", None), mid(1), t0, 100),
            Outcome::Show(mid(1), Trust::Direct { confirmations: 0 })
        );
        assert_eq!(
            e.direct(cp(&s, b"ok", None), mid(2), t0, 100),
            Outcome::Show(mid(2), Trust::Direct { confirmations: 0 })
        );
        // R's first echo counts for the first, its second for the second.
        assert_eq!(
            e.claim(cp(&s, b"ok", None), &r, mid(9), t0, W, 100, 5),
            Outcome::Update(mid(1), Trust::Direct { confirmations: 1 })
        );
        assert_eq!(
            e.claim(cp(&s, b"ok", None), &r, mid(9), t0, W, 100, 5),
            Outcome::Update(mid(2), Trust::Direct { confirmations: 1 })
        );
        assert_eq!(
            e.claim(cp(&s, b"ok", None), &q, mid(9), t0, W, 100, 5),
            Outcome::Update(mid(1), Trust::Direct { confirmations: 2 })
        );
        // A third echo from R is a third message (not shown until its window ends).
        assert_eq!(
            e.claim(cp(&s, b"ok", None), &r, mid(3), t0, W, 100, 5),
            Outcome::Nothing
        );
        assert_eq!(
            e.expire(t0 + W, 5, |_, _| false),
            vec![(mid(3), Trust::Relayed { k: 1, n: 5 })]
        );
    }

    #[test]
    fn unconfirmed_when_the_speaker_was_connected() {
        let mut e = Engine::default();
        let t0 = Timestamp::from_millis(0);
        e.claim(
            cp(&id("s"), b"forged", None),
            &id("r"),
            mid(1),
            t0,
            W,
            100,
            10,
        );
        let shown = e.expire(t0 + W, 10, |sender, since| {
            *sender == id("s") && since == t0
        });
        assert_eq!(shown, vec![(mid(1), Trust::Unconfirmed { k: 1, n: 10 })]);
        // More claims keep it unconfirmed; a direct copy clears it.
        assert_eq!(
            e.claim(
                cp(&id("s"), b"forged", None),
                &id("q"),
                mid(2),
                t0,
                W,
                100,
                10
            ),
            Outcome::Update(mid(1), Trust::Unconfirmed { k: 2, n: 10 })
        );
        assert_eq!(
            e.direct(cp(&id("s"), b"forged", None), mid(3), t0, 100),
            Outcome::Update(mid(1), Trust::Direct { confirmations: 2 })
        );
    }

    #[test]
    fn signed_copies_match_by_id_and_show_at_once() {
        let mut e = Engine::default();
        let (s, r, q, t0) = (id("s"), id("r"), id("q"), Timestamp::from_millis(0));
        let m1 = Some([1u8; 16]);
        // A signed relayed copy is shown at once, as Signed.
        assert_eq!(
            e.claim(cp(&s, b"ok", m1), &r, mid(1), t0, W, 100, 5),
            Outcome::Show(mid(1), Trust::Signed { k: 1, n: 5 })
        );
        // Another copy of the same id counts for the same message; a second "ok" with another
        // id is another message.
        assert_eq!(
            e.claim(cp(&s, b"ok", m1), &q, mid(9), t0, W, 100, 5),
            Outcome::Update(mid(1), Trust::Signed { k: 2, n: 5 })
        );
        assert_eq!(
            e.claim(cp(&s, b"ok", Some([2u8; 16])), &r, mid(2), t0, W, 100, 5),
            Outcome::Show(mid(2), Trust::Signed { k: 1, n: 5 })
        );
        // The direct copy of the first one upgrades exactly that one.
        assert_eq!(
            e.direct(cp(&s, b"ok", m1), mid(9), t0, 100),
            Outcome::Update(mid(1), Trust::Direct { confirmations: 2 })
        );
        // A plain (legacy) echo still matches in order.
        assert_eq!(
            e.claim(cp(&s, b"ok", None), &id("p"), mid(9), t0, W, 100, 5),
            Outcome::Update(mid(1), Trust::Direct { confirmations: 3 })
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut e = Engine::default();
        let t0 = Timestamp::from_millis(0);
        for i in 0..1000u32 {
            e.direct(cp(&id("s"), &i.to_be_bytes(), None), mid(0), t0, 50);
        }
        assert_eq!(e.slots.len(), 50);
        assert_eq!(e.by_key.len(), 50);
        assert_eq!(e.by_id.len(), 1);
        assert_eq!(e.by_id.values().map(BTreeSet::len).sum::<usize>(), 50);
    }

    #[test]
    fn a_text_repeated_thousands_of_times_matches_in_order() {
        let mut e = Engine::default();
        let (s, r, t0) = (id("s"), id("r"), Timestamp::from_millis(0));
        for i in 0..3000u32 {
            let m = MsgId(u128::from(i).to_be_bytes());
            assert_eq!(
                e.direct(cp(&s, b"ok", None), m, t0, 2000),
                Outcome::Show(m, Trust::Direct { confirmations: 0 })
            );
        }
        // The oldest 1000 were forgotten; r's echoes count for the remaining ones in order.
        for i in 1000..1010u32 {
            let m = MsgId(u128::from(i).to_be_bytes());
            assert_eq!(
                e.claim(cp(&s, b"ok", None), &r, mid(0), t0, W, 2000, 5),
                Outcome::Update(m, Trust::Direct { confirmations: 1 })
            );
        }
        assert_eq!(
            e.by_key.values().map(|x| x.slots.len()).sum::<usize>(),
            2000
        );
    }

    /// Random direct copies, claims, digests and evictions over few speakers, texts and ids:
    /// every lookup is checked against a full scan (`find` does so in debug builds).
    #[test]
    fn skips_agree_with_a_full_scan() {
        let ids: Vec<OnionId> = ["s", "t", "p", "q", "r"].iter().map(|x| id(x)).collect();
        let texts: [&[u8]; 3] = [b"ok", b"hi", b"x"];
        let t0 = Timestamp::from_millis(0);
        for seed in 0..20u64 {
            let mut x = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut next = move |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            let mut e = Engine::default();
            for step in 0..3000u64 {
                let sender = &ids[next(2) as usize];
                let text = texts[next(3) as usize];
                let msgid = (next(3) == 0).then(|| [next(8) as u8; 16]);
                let c = cp(sender, text, msgid);
                let m = MsgId(u128::from(step).to_be_bytes());
                match next(4) {
                    0 => {
                        e.direct(c, m, t0, 40);
                    }
                    1 | 2 => {
                        let who = &ids[next(5) as usize];
                        e.claim(c, who, m, t0, W, 40, 4);
                    }
                    _ => {
                        let holders = vec![ids[next(5) as usize].clone(), sender.clone()];
                        e.synced(c, holders, false, m, t0, 40, 4);
                    }
                }
                assert!(e.slots.len() <= 40);
                for same in e.by_key.values() {
                    for c in [Fit::Direct, Fit::Claim(&ids[2]), Fit::Claim(&ids[3])] {
                        let k = same.skip(c);
                        assert!(k <= same.slots.len());
                        assert!(same.slots.iter().take(k).all(|n| !c.fits(&e.slots[n])));
                    }
                }
            }
        }
    }
}
