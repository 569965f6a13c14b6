//! [`MemoryStore`]: the in-memory [`Store`], for tests and the simulator.

use std::collections::{BTreeMap, HashMap, HashSet};

use torchat_wire::{GroupId, OnionId};

use crate::op::validate_all;
use crate::{
    Buddy, Claim, Conversation, Delivery, Direction, Error, Group, Member, MsgId, Op, OutboxEntry,
    QueuedPacket, Result, RowId, SeqSet, Store, StoredMessage, Transfer,
};

/// A [`Store`] kept in memory: same semantics as [`SqliteStore`](crate::SqliteStore) (ordering,
/// idempotence, errors, all-or-nothing batches), nothing survives the value.
///
/// `Clone` takes a snapshot (e.g. to model a crash in the simulator: keep a clone, drop the
/// original).
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: State,
    commits: u64,
}

#[derive(Debug, Clone, Default)]
struct State {
    settings: BTreeMap<String, Vec<u8>>,
    buddies: BTreeMap<String, Buddy>,
    groups: BTreeMap<String, Group>,
    /// (gid, member id) → member.
    members: BTreeMap<(String, String), Member>,
    messages: BTreeMap<u64, StoredMessage>,
    by_id: HashMap<MsgId, u64>,
    /// (message id, claimant id) → claim.
    claims: BTreeMap<(MsgId, String), Claim>,
    /// (message id, destination id) → entry.
    outbox: BTreeMap<(MsgId, String), OutboxEntry>,
    /// Queued packets in insertion order.
    packets: Vec<QueuedPacket>,
    /// (conversation, sender, sequence number) → row, for sync messages.
    by_seq: BTreeMap<(String, String, u64), u64>,
    /// gid → next sequence number.
    sync_seq: BTreeMap<String, u64>,
    /// (gid, member, speaker) → held.
    vectors: BTreeMap<(String, String, String), SeqSet>,
    /// peer → extensions.
    exts: BTreeMap<String, Vec<String>>,
    /// File transfers by id.
    transfers: BTreeMap<u64, Transfer>,
    /// Contact requests by stranger id.
    requests: BTreeMap<String, crate::Request>,
    /// Held request messages in insertion order.
    request_messages: Vec<crate::RequestMessage>,
    /// The largest row ever assigned.
    last_row: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn b(x: bool) -> u64 {
    u64::from(x)
}

/// The conversation as the SQLite store's `conv` column holds it.
fn conv_key(c: &Conversation) -> String {
    match c {
        Conversation::Buddy(id) => id.as_str().to_owned(),
        Conversation::Group(g) => g.as_str().to_owned(),
    }
}

impl State {
    /// Applies one validated op. Checks come before any change, so an error leaves the state
    /// as it was.
    fn exec(&mut self, op: &Op) -> Result<u64> {
        Ok(match op {
            Op::PutSetting { key, value } => {
                b(self.settings.insert(key.clone(), value.clone()).is_none())
            }
            Op::DeleteSetting { key } => b(self.settings.remove(key).is_some()),
            Op::UpsertBuddy(buddy) => b(self
                .buddies
                .insert(buddy.id.as_str().to_owned(), buddy.clone())
                .is_none()),
            Op::RemoveBuddy(id) => b(self.buddies.remove(id.as_str()).is_some()),
            Op::UpsertGroup(g) => b(self
                .groups
                .insert(g.gid.as_str().to_owned(), g.clone())
                .is_none()),
            Op::SetGroupState { gid, state } => match self.groups.get_mut(gid.as_str()) {
                Some(g) => {
                    g.state = *state;
                    1
                }
                None => 0,
            },
            Op::RemoveGroup(gid) => {
                let existed = self.groups.remove(gid.as_str()).is_some();
                self.members.retain(|(g, _), _| g != gid.as_str());
                b(existed)
            }
            Op::AddMember(m) => {
                if !self.groups.contains_key(m.gid.as_str()) {
                    return Err(Error::UnknownGroup(m.gid.clone()));
                }
                let key = (m.gid.as_str().to_owned(), m.id.as_str().to_owned());
                match self.members.entry(key) {
                    std::collections::btree_map::Entry::Occupied(_) => 0,
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(m.clone());
                        1
                    }
                }
            }
            Op::RemoveMember { gid, id } => b(self
                .members
                .remove(&(gid.as_str().to_owned(), id.as_str().to_owned()))
                .is_some()),
            Op::InsertMessage(msg) => {
                let seq_key = msg.sync.map(|s| {
                    (
                        conv_key(&msg.conversation),
                        msg.sender.as_str().to_owned(),
                        s.seq,
                    )
                });
                if self.by_id.contains_key(&msg.id)
                    || seq_key
                        .as_ref()
                        .is_some_and(|k| self.by_seq.contains_key(k))
                {
                    0
                } else {
                    self.last_row += 1;
                    let row = self.last_row;
                    self.by_id.insert(msg.id, row);
                    if let Some(k) = seq_key {
                        self.by_seq.insert(k, row);
                    }
                    self.messages.insert(
                        row,
                        StoredMessage {
                            row: RowId(row),
                            msg: msg.clone(),
                        },
                    );
                    1
                }
            }
            Op::UpdateDelivery { id, delivery } => match self.message_mut(id) {
                Some(m) => {
                    m.msg.delivery = Some(*delivery);
                    1
                }
                None => 0,
            },
            Op::UpdateTrust { id, trust } => match self.message_mut(id) {
                Some(m) => {
                    m.msg.trust = Some(*trust);
                    1
                }
                None => 0,
            },
            Op::AddClaim(c) => {
                self.require_message(&c.msg_id)?;
                let key = (c.msg_id, c.claimant.as_str().to_owned());
                match self.claims.entry(key) {
                    std::collections::btree_map::Entry::Occupied(_) => 0,
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(c.clone());
                        1
                    }
                }
            }
            Op::OutboxAdd(e) => {
                self.require_message(&e.msg_id)?;
                let key = (e.msg_id, e.dest.as_str().to_owned());
                match self.outbox.entry(key) {
                    std::collections::btree_map::Entry::Occupied(_) => 0,
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(e.clone());
                        1
                    }
                }
            }
            Op::OutboxAttempt { id, dest, next_at } => {
                match self.outbox.get_mut(&(*id, dest.as_str().to_owned())) {
                    Some(e) => {
                        e.attempts = e.attempts.saturating_add(1);
                        e.next_at = *next_at;
                        1
                    }
                    None => 0,
                }
            }
            Op::OutboxRemove { id, dest } => b(self
                .outbox
                .remove(&(*id, dest.as_str().to_owned()))
                .is_some()),
            Op::OutboxExpire { now } => {
                let before = self.outbox.len();
                self.outbox.retain(|_, e| e.expires_at > *now);
                (before - self.outbox.len()) as u64
            }
            Op::QueuePacket(q) => {
                if self.packets.iter().any(|p| p.id == q.id) {
                    0
                } else {
                    self.packets.push(q.clone());
                    1
                }
            }
            Op::DequeuePacket { id } => {
                let before = self.packets.len();
                self.packets.retain(|p| p.id != *id);
                (before - self.packets.len()) as u64
            }
            Op::SetSyncInfo { id, sync } => {
                let Some(&row) = self.by_id.get(id) else {
                    return Ok(0);
                };
                let Some(m) = self.messages.get(&row) else {
                    return Ok(0);
                };
                let key = (
                    conv_key(&m.msg.conversation),
                    m.msg.sender.as_str().to_owned(),
                    sync.seq,
                );
                if m.msg.sync.is_some() || self.by_seq.contains_key(&key) {
                    return Ok(0);
                }
                self.by_seq.insert(key, row);
                if let Some(m) = self.messages.get_mut(&row) {
                    m.msg.sync = Some(*sync);
                }
                1
            }
            Op::SetSyncSeq { gid, next } => {
                let cur = self.sync_seq.entry(gid.as_str().to_owned()).or_insert(0);
                if *next > *cur {
                    *cur = *next;
                    1
                } else {
                    0
                }
            }
            Op::SetSyncVector {
                gid,
                member,
                speaker,
                held,
            } => {
                let key = (
                    gid.as_str().to_owned(),
                    member.as_str().to_owned(),
                    speaker.as_str().to_owned(),
                );
                b(self.vectors.insert(key, held.clone()).is_none())
            }
            Op::SetPeerExtensions { id, extensions } => b(self
                .exts
                .insert(id.as_str().to_owned(), extensions.clone())
                .is_none()),
            Op::PruneGroupHistory { before } => {
                // The newest row stays (row numbers are never reused).
                let newest = self.messages.keys().next_back().copied();
                let old: Vec<u64> = self
                    .messages
                    .iter()
                    .filter(|(r, m)| {
                        matches!(m.msg.conversation, Conversation::Group(_))
                            && m.msg.timestamp < *before
                            && Some(**r) != newest
                    })
                    .map(|(r, _)| *r)
                    .collect();
                for row in &old {
                    if let Some(m) = self.messages.remove(row) {
                        self.by_id.remove(&m.msg.id);
                        self.claims.retain(|(id, _), _| *id != m.msg.id);
                        self.outbox.retain(|(id, _), _| *id != m.msg.id);
                    }
                }
                let rows: std::collections::BTreeSet<u64> = old.iter().copied().collect();
                self.by_seq.retain(|_, r| !rows.contains(r));
                old.len() as u64
            }
            Op::UpsertTransfer(t) => b(self.transfers.insert(t.id, t.clone()).is_none()),
            Op::RemoveTransfer { id } => b(self.transfers.remove(id).is_some()),
            Op::UpsertRequest(r) => b(self
                .requests
                .insert(r.peer.as_str().to_owned(), r.clone())
                .is_none()),
            Op::RemoveRequest(peer) => {
                self.request_messages.retain(|m| m.peer != *peer);
                b(self.requests.remove(peer.as_str()).is_some())
            }
            Op::AddRequestMessage(m) => {
                let new = !self.request_messages.iter().any(|x| x.id == m.id);
                if new {
                    self.request_messages.push(m.clone());
                }
                b(new)
            }
            Op::RemoveRequestMessage { id } => {
                let before = self.request_messages.len();
                self.request_messages.retain(|m| m.id != *id);
                b(self.request_messages.len() != before)
            }
        })
    }

    fn message_mut(&mut self, id: &MsgId) -> Option<&mut StoredMessage> {
        let row = self.by_id.get(id)?;
        self.messages.get_mut(row)
    }

    /// Checks that `ops`, applied in order, will not fail (the only failures after validation
    /// are references to a group or message that does not exist at that point), so that a
    /// batch can be applied in place, all or nothing, without copying the state.
    fn check(&self, ops: &[Op]) -> Result<()> {
        // Groups created (true) or removed (false) earlier in the batch; messages inserted.
        let mut groups: HashMap<&str, bool> = HashMap::new();
        let mut messages: HashSet<MsgId> = HashSet::new();
        let message = |messages: &HashSet<MsgId>, id: &MsgId| {
            if messages.contains(id) || self.by_id.contains_key(id) {
                Ok(())
            } else {
                Err(Error::UnknownMessage(*id))
            }
        };
        for op in ops {
            match op {
                Op::UpsertGroup(g) => {
                    groups.insert(g.gid.as_str(), true);
                }
                Op::RemoveGroup(gid) => {
                    groups.insert(gid.as_str(), false);
                }
                Op::AddMember(m) => {
                    let exists = groups
                        .get(m.gid.as_str())
                        .copied()
                        .unwrap_or_else(|| self.groups.contains_key(m.gid.as_str()));
                    if !exists {
                        return Err(Error::UnknownGroup(m.gid.clone()));
                    }
                }
                Op::InsertMessage(m) => {
                    messages.insert(m.id);
                }
                Op::AddClaim(c) => message(&messages, &c.msg_id)?,
                Op::OutboxAdd(e) => message(&messages, &e.msg_id)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn require_message(&self, id: &MsgId) -> Result<()> {
        if self.by_id.contains_key(id) {
            Ok(())
        } else {
            Err(Error::UnknownMessage(*id))
        }
    }
}

impl Store for MemoryStore {
    fn apply(&mut self, ops: &[Op]) -> Result<Vec<u64>> {
        validate_all(ops)?;
        self.state.check(ops)?;
        // Nothing below can fail now; an error here would be a bug in `check`.
        let out = ops
            .iter()
            .map(|op| self.state.exec(op))
            .collect::<Result<Vec<u64>>>()?;
        self.commits += 1;
        Ok(out)
    }

    fn commits(&self) -> u64 {
        self.commits
    }

    fn get_setting(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.state.settings.get(key).cloned())
    }

    fn settings(&self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .state
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn buddy(&self, id: &OnionId) -> Result<Option<Buddy>> {
        Ok(self.state.buddies.get(id.as_str()).cloned())
    }

    fn buddies(&self) -> Result<Vec<Buddy>> {
        Ok(self.state.buddies.values().cloned().collect())
    }

    fn group(&self, gid: &GroupId) -> Result<Option<Group>> {
        Ok(self.state.groups.get(gid.as_str()).cloned())
    }

    fn groups(&self) -> Result<Vec<Group>> {
        Ok(self.state.groups.values().cloned().collect())
    }

    fn members(&self, gid: &GroupId) -> Result<Vec<Member>> {
        let mut out: Vec<Member> = self
            .state
            .members
            .values()
            .filter(|m| m.gid == *gid)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.added_at, a.id.as_str()).cmp(&(b.added_at, b.id.as_str())));
        Ok(out)
    }

    fn message(&self, id: &MsgId) -> Result<Option<StoredMessage>> {
        Ok(self
            .state
            .by_id
            .get(id)
            .and_then(|row| self.state.messages.get(row))
            .cloned())
    }

    fn history(
        &self,
        conversation: &Conversation,
        before: Option<RowId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let end = before.map_or(u64::MAX, |r| r.0);
        let mut out: Vec<StoredMessage> = self
            .state
            .messages
            .range(..end)
            .rev()
            .map(|(_, m)| m)
            .filter(|m| m.msg.conversation == *conversation)
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        Ok(out)
    }

    fn conversations(&self) -> Result<Vec<Conversation>> {
        let mut seen = std::collections::HashSet::new();
        Ok(self
            .state
            .messages
            .values()
            .rev()
            .filter(|m| seen.insert(&m.msg.conversation))
            .map(|m| m.msg.conversation.clone())
            .collect())
    }

    fn queued_messages(&self) -> Result<Vec<StoredMessage>> {
        Ok(self
            .state
            .messages
            .values()
            .filter(|m| {
                m.msg.delivery == Some(Delivery::Queued)
                    && m.msg.direction == Direction::Out
                    && matches!(m.msg.conversation, Conversation::Buddy(_))
            })
            .cloned()
            .collect())
    }

    fn claims(&self, id: &MsgId) -> Result<Vec<Claim>> {
        let mut out: Vec<Claim> = self
            .state
            .claims
            .values()
            .filter(|c| c.msg_id == *id)
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            (a.received_at, a.claimant.as_str()).cmp(&(b.received_at, b.claimant.as_str()))
        });
        Ok(out)
    }

    fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        let mut out: Vec<OutboxEntry> = self.state.outbox.values().cloned().collect();
        out.sort_by(|a, b| {
            (a.created_at, a.msg_id, a.dest.as_str()).cmp(&(
                b.created_at,
                b.msg_id,
                b.dest.as_str(),
            ))
        });
        Ok(out)
    }

    fn queued_packets(&self) -> Result<Vec<QueuedPacket>> {
        Ok(self.state.packets.clone())
    }

    fn sync_range(
        &self,
        gid: &GroupId,
        speaker: &OnionId,
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredMessage>> {
        let (g, s) = (gid.as_str().to_owned(), speaker.as_str().to_owned());
        if from > to {
            return Ok(vec![]);
        }
        Ok(self
            .state
            .by_seq
            .range((g.clone(), s.clone(), from)..=(g, s, to))
            .filter_map(|(_, row)| self.state.messages.get(row))
            .filter(|m| matches!(m.msg.conversation, Conversation::Group(_)))
            .cloned()
            .collect())
    }

    fn sync_seqs(&self) -> Result<Vec<(GroupId, u64)>> {
        Ok(self
            .state
            .sync_seq
            .iter()
            .filter_map(|(g, n)| GroupId::new(g).map(|g| (g, *n)))
            .collect())
    }

    fn sync_vectors(&self, gid: &GroupId) -> Result<Vec<(OnionId, OnionId, SeqSet)>> {
        Ok(self
            .state
            .vectors
            .iter()
            .filter(|((g, _, _), _)| g == gid.as_str())
            .filter_map(|((_, m, s), h)| {
                Some((OnionId::parse(m).ok()?, OnionId::parse(s).ok()?, h.clone()))
            })
            .collect())
    }

    fn peer_extensions(&self) -> Result<Vec<(OnionId, Vec<String>)>> {
        Ok(self
            .state
            .exts
            .iter()
            .filter_map(|(k, v)| Some((OnionId::parse(k).ok()?, v.clone())))
            .collect())
    }

    fn transfers(&self) -> Result<Vec<Transfer>> {
        Ok(self.state.transfers.values().cloned().collect())
    }

    fn requests(&self) -> Result<Vec<crate::Request>> {
        Ok(self.state.requests.values().cloned().collect())
    }

    fn request_messages(&self) -> Result<Vec<crate::RequestMessage>> {
        Ok(self.state.request_messages.clone())
    }
}
