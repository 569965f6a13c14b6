//! A node's durable storage, in memory: built from the [`Record`]s the core emitted, and used
//! to rebuild a node after a crash (as the daemon's SQLite store would).

use std::collections::{BTreeMap, BTreeSet};

use torchat_core::{torchat_wire::GroupId, Timestamp};
use torchat_core::{
    BuddyKind, Delivery, GroupState, LoadRequest, MsgId, Node, OutboxEntry, Record, SyncCopy,
    SyncMeta, Trust,
};
use torchat_wire::OnionId;
use torchat_wire::SeqSet;

/// A stored group.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredGroup {
    /// Our state in it.
    pub state: GroupState,
    /// Invite modes.
    pub modes: Vec<String>,
    /// Who invited us.
    pub inviter: Option<OnionId>,
    /// Current members (other than us).
    pub members: BTreeSet<OnionId>,
}

/// A stored group message (shown before).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Group.
    pub gid: GroupId,
    /// Local id.
    pub id: MsgId,
    /// Speaker.
    pub sender: OnionId,
    /// Text.
    pub text: Vec<u8>,
    /// First seen.
    pub at: Timestamp,
    /// Latest trust.
    pub trust: Trust,
    /// Latest claimants.
    pub claimants: Vec<OnionId>,
    /// Sequence number, time, signature (extension `torchat_sync`).
    pub sync: Option<SyncMeta>,
    /// For our own: members known to hold it.
    pub delivered: u32,
}

/// What a node has on disk.
#[derive(Debug, Clone, Default)]
pub struct Store {
    /// Buddy list.
    pub buddies: BTreeMap<OnionId, (BuddyKind, Option<String>)>,
    /// 1:1 messages still queued, in order.
    pub queued: Vec<(MsgId, OnionId, Vec<u8>)>,
    /// Groups.
    pub groups: BTreeMap<GroupId, StoredGroup>,
    /// Outbox, in order.
    pub outbox: Vec<OutboxEntry>,
    /// Group messages, in order.
    pub messages: Vec<StoredMessage>,
    /// Records applied so far.
    pub records: u64,
    /// Next sequence number per group.
    pub sync_seq: BTreeMap<GroupId, u64>,
    /// (group, member, speaker) → held.
    pub vectors: BTreeMap<(GroupId, OnionId, OnionId), SeqSet>,
    /// What each peer announced.
    pub extensions: BTreeMap<OnionId, Vec<String>>,
}

impl Store {
    /// Applies one record.
    pub fn apply(&mut self, r: &Record) {
        self.records += 1;
        match r {
            Record::Buddy { id, kind, alias } => {
                self.buddies.insert(id.clone(), (*kind, alias.clone()));
            }
            Record::BuddyRemoved { id } => {
                self.buddies.remove(id);
            }
            Record::MessageOut {
                id,
                to,
                text,
                state: Delivery::Queued,
                ..
            } => self.queued.push((*id, to.clone(), text.clone())),
            Record::MessageDelivery {
                id,
                state: Delivery::Sent | Delivery::Delivered,
            } => self.queued.retain(|(q, _, _)| q != id),
            Record::Group {
                gid,
                state,
                modes,
                inviter,
            } => {
                let g = self
                    .groups
                    .entry(gid.clone())
                    .or_insert_with(|| StoredGroup {
                        state: *state,
                        modes: modes.clone(),
                        inviter: inviter.clone(),
                        members: BTreeSet::new(),
                    });
                g.state = *state;
                g.modes = modes.clone();
                g.inviter = inviter.clone();
            }
            Record::GroupMember { gid, id, member } => {
                if let Some(g) = self.groups.get_mut(gid) {
                    if *member {
                        g.members.insert(id.clone());
                    } else {
                        g.members.remove(id);
                    }
                }
            }
            Record::GroupMessage {
                gid,
                id,
                sender,
                text,
                at,
                trust,
                sync,
            } => {
                if let Some(m) = self.messages.iter_mut().find(|m| m.id == *id) {
                    m.trust = *trust;
                } else {
                    self.messages.push(StoredMessage {
                        gid: gid.clone(),
                        id: *id,
                        sender: sender.clone(),
                        text: text.clone(),
                        at: *at,
                        trust: *trust,
                        claimants: Vec::new(),
                        sync: *sync,
                        delivered: 0,
                    });
                }
            }
            Record::GroupMessageSync { id, sync } => {
                if let Some(m) = self.messages.iter_mut().find(|m| m.id == *id) {
                    m.sync.get_or_insert(*sync);
                }
            }
            Record::GroupDelivery { id, delivered, .. } => {
                if let Some(m) = self.messages.iter_mut().rev().find(|m| m.id == *id) {
                    m.delivered = m.delivered.max(*delivered);
                }
            }
            Record::SyncSeq { gid, next } => {
                let n = self.sync_seq.entry(gid.clone()).or_insert(0);
                *n = (*n).max(*next);
            }
            Record::SyncVector {
                gid,
                member,
                speaker,
                held,
            } => {
                self.vectors
                    .insert((gid.clone(), member.clone(), speaker.clone()), held.clone());
            }
            Record::PeerExtensions { id, extensions } => {
                self.extensions.insert(id.clone(), extensions.clone());
            }
            Record::GroupTrust {
                id,
                trust,
                claimants,
            } => {
                if let Some(m) = self.messages.iter_mut().rev().find(|m| m.id == *id) {
                    m.trust = *trust;
                    m.claimants = claimants.clone();
                }
            }
            Record::OutboxAdd(e) => self.outbox.push(e.clone()),
            Record::OutboxRemove { id } => self.outbox.retain(|e| e.id != *id),
            // MessageIn, GroupDelivery and future records change nothing to restore.
            _ => {}
        }
    }

    /// Restores a fresh node from this store (before `start`).
    pub fn restore(&self, node: &mut Node) {
        for (id, (kind, alias)) in &self.buddies {
            node.restore_buddy(id.clone(), *kind, alias.clone());
        }
        for (gid, g) in &self.groups {
            node.restore_group(
                gid.clone(),
                g.state,
                g.modes.clone(),
                g.inviter.clone(),
                g.members.iter().cloned().collect(),
            );
        }
        for (id, to, text) in &self.queued {
            node.restore_queued(*id, to.clone(), text.clone());
        }
        for (gid, next) in &self.sync_seq {
            node.restore_sync_seq(gid, *next);
        }
        for ((gid, member, speaker), held) in &self.vectors {
            node.restore_sync_vector(gid, member, speaker, held.clone());
        }
        for (id, exts) in &self.extensions {
            node.restore_peer_extensions(id, exts.clone());
        }
        for m in &self.messages {
            if m.trust == Trust::Own {
                if let Some(s) = m.sync {
                    node.restore_sync_own(&m.gid, s.seq, m.id, m.delivered);
                }
                continue;
            }
            node.restore_group_message(
                &m.gid,
                m.id,
                m.sender.clone(),
                m.text.clone(),
                m.at,
                m.trust,
                m.claimants.clone(),
            );
            if let Some(s) = m.sync {
                node.restore_group_sync_meta(&m.gid, m.id, s);
            }
        }
        for e in &self.outbox {
            node.restore_outbox(e.clone());
        }
    }
}

impl Store {
    /// The stored copies a [`torchat_core::Output::Load`] asks for.
    pub fn load(&self, req: &LoadRequest) -> Vec<SyncCopy> {
        let mut out: BTreeMap<u64, SyncCopy> = BTreeMap::new();
        for m in &self.messages {
            let Some(s) = m.sync else { continue };
            if m.gid == req.gid && m.sender == req.speaker && (req.from..=req.to).contains(&s.seq) {
                out.entry(s.seq).or_insert_with(|| SyncCopy {
                    speaker: m.sender.clone(),
                    meta: s,
                    text: m.text.clone(),
                });
            }
        }
        out.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_fold_into_the_current_state() {
        let id = |i| crate::sim::node_id(i);
        let gid = GroupId::uuid_v4([7; 16]);
        let mut s = Store::default();
        s.apply(&Record::Group {
            gid: gid.clone(),
            state: GroupState::Joined,
            modes: vec![],
            inviter: None,
        });
        for i in 1..4 {
            s.apply(&Record::GroupMember {
                gid: gid.clone(),
                id: id(i),
                member: true,
            });
        }
        s.apply(&Record::GroupMember {
            gid: gid.clone(),
            id: id(2),
            member: false,
        });
        let entry = |n: u8| OutboxEntry {
            id: MsgId([n; 16]),
            to: id(1),
            gid: gid.clone(),
            line: b"groupchat_message x y\n".to_vec(),
            expires: Timestamp::from_millis(1),
            own: None,
        };
        s.apply(&Record::OutboxAdd(entry(1)));
        s.apply(&Record::OutboxAdd(entry(2)));
        s.apply(&Record::OutboxRemove { id: MsgId([1; 16]) });
        s.apply(&Record::GroupMessage {
            gid: gid.clone(),
            id: MsgId([9; 16]),
            sender: id(3),
            text: b"hi".to_vec(),
            at: Timestamp::from_millis(5),
            trust: Trust::Relayed { k: 1, n: 3 },
            sync: None,
        });
        s.apply(&Record::GroupTrust {
            id: MsgId([9; 16]),
            trust: Trust::Direct { confirmations: 1 },
            claimants: vec![id(1)],
        });
        let g = &s.groups[&gid];
        assert_eq!(g.members, [id(1), id(3)].into_iter().collect());
        assert_eq!(s.outbox, vec![entry(2)]);
        assert_eq!(s.messages[0].trust, Trust::Direct { confirmations: 1 });
        assert_eq!(s.messages[0].claimants, vec![id(1)]);
        assert_eq!(s.records, 10);
    }
}
