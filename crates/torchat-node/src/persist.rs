//! Between the core and the store: core records become store operations, and at start the
//! store's contents are fed back into a fresh core.

use torchat_core::{
    BuddyKind, Delivery, GroupState, Node, OutboxEntry, Record, SyncCopy, SyncMeta, Timestamp,
    Trust,
};
use torchat_store as st;
use torchat_store::{Conversation, Direction, Op, Store};
use torchat_wire::OnionId;

pub(crate) fn msg_id(id: torchat_core::MsgId) -> st::MsgId {
    st::MsgId(id.0)
}

fn core_msg_id(id: st::MsgId) -> torchat_core::MsgId {
    torchat_core::MsgId(id.0)
}

fn sync_info(m: SyncMeta) -> st::SyncInfo {
    st::SyncInfo {
        seq: m.seq,
        time: m.time.as_millis(),
        sig: m.sig,
    }
}

fn sync_meta(s: st::SyncInfo) -> SyncMeta {
    SyncMeta {
        seq: s.seq,
        time: Timestamp::from_millis(s.time),
        sig: s.sig,
    }
}

/// A stored group message as the core's full copy (for answering a want).
pub(crate) fn sync_copy(m: &st::StoredMessage) -> Option<SyncCopy> {
    Some(SyncCopy {
        speaker: m.msg.sender.clone(),
        meta: sync_meta(m.msg.sync?),
        text: m.msg.text.clone(),
    })
}

fn kind(k: BuddyKind) -> st::BuddyKind {
    match k {
        BuddyKind::Permanent => st::BuddyKind::Permanent,
        BuddyKind::Temporary => st::BuddyKind::Temporary,
        BuddyKind::Blocked => st::BuddyKind::Blocked,
    }
}

fn core_kind(k: st::BuddyKind) -> BuddyKind {
    match k {
        st::BuddyKind::Permanent => BuddyKind::Permanent,
        st::BuddyKind::Temporary => BuddyKind::Temporary,
        st::BuddyKind::Blocked => BuddyKind::Blocked,
    }
}

/// A buddy's row as it will be once `pending` (operations not yet committed) is: the last
/// pending upsert of it, else the stored row.
pub(crate) fn buddy_row(store: &dyn Store, pending: &[Op], id: &OnionId) -> Option<st::Buddy> {
    for op in pending.iter().rev() {
        match op {
            Op::UpsertBuddy(b) if b.id == *id => return Some(b.clone()),
            Op::RemoveBuddy(r) if r == id => return None,
            _ => {}
        }
    }
    store.buddy(id).ok().flatten()
}

/// When a group was first stored, counting `pending` (operations not yet committed).
fn group_created(store: &dyn Store, pending: &[Op], gid: &torchat_wire::GroupId) -> Option<u64> {
    for op in pending.iter().rev() {
        match op {
            Op::UpsertGroup(g) if g.gid == *gid => return Some(g.created_at),
            Op::RemoveGroup(g) if g == gid => return None,
            _ => {}
        }
    }
    store.group(gid).ok().flatten().map(|g| g.created_at)
}

/// The store operations for one core record. Needs the store, and the operations of the batch
/// not yet committed (`pending`), to keep what a record does not carry (a buddy's last known
/// profile, when a group was created).
pub(crate) fn ops(
    store: &dyn Store,
    pending: &[Op],
    me: &OnionId,
    r: Record,
    now: Timestamp,
) -> Vec<Op> {
    let now = now.as_millis();
    match r {
        Record::Buddy { id, kind: k, alias } => {
            let mut b =
                buddy_row(store, pending, &id).unwrap_or_else(|| st::Buddy::new(id, kind(k)));
            b.kind = kind(k);
            b.alias = alias;
            vec![Op::UpsertBuddy(b)]
        }
        Record::BuddyRemoved { id } => vec![Op::RemoveBuddy(id)],
        Record::MessageIn { id, from, text, at } => vec![Op::InsertMessage(st::Message {
            id: msg_id(id),
            conversation: Conversation::Buddy(from.clone()),
            direction: Direction::In,
            sender: from,
            text,
            timestamp: at.as_millis(),
            delivery: None,
            trust: None,
            sync: None,
        })],
        Record::MessageOut {
            id,
            to,
            text,
            at,
            state,
        } => vec![Op::InsertMessage(st::Message {
            id: msg_id(id),
            conversation: Conversation::Buddy(to),
            direction: Direction::Out,
            sender: me.clone(),
            text,
            timestamp: at.as_millis(),
            delivery: Some(delivery(state)),
            trust: None,
            sync: None,
        })],
        Record::MessageDelivery { id, state } => {
            vec![Op::UpdateDelivery {
                id: msg_id(id),
                delivery: delivery(state),
            }]
        }
        Record::Group {
            gid,
            state,
            modes,
            inviter,
        } => {
            let state = match state {
                GroupState::Invited => return vec![],
                GroupState::Joining => st::GroupState::Joining,
                GroupState::Joined => st::GroupState::Joined,
                GroupState::Left => st::GroupState::Left,
            };
            let created_at = group_created(store, pending, &gid).unwrap_or(now);
            vec![Op::UpsertGroup(st::Group {
                gid,
                modes,
                invited_by: inviter,
                state,
                created_at,
            })]
        }
        Record::GroupMember {
            gid,
            id,
            member: true,
        } => {
            vec![Op::AddMember(st::Member {
                gid,
                id,
                added_at: now,
            })]
        }
        Record::GroupMember {
            gid,
            id,
            member: false,
        } => vec![Op::RemoveMember { gid, id }],
        Record::GroupMessage {
            gid,
            id,
            sender,
            text,
            at,
            trust: t,
            sync,
        } => {
            let own = t == Trust::Own;
            vec![Op::InsertMessage(st::Message {
                id: msg_id(id),
                conversation: Conversation::Group(gid),
                direction: if own { Direction::Out } else { Direction::In },
                sender,
                text,
                timestamp: at.as_millis(),
                delivery: own.then_some(st::Delivery::Queued),
                trust: Some(t),
                sync: sync.map(sync_info),
            })]
        }
        Record::GroupMessageSync { id, sync } => vec![Op::SetSyncInfo {
            id: msg_id(id),
            sync: sync_info(sync),
        }],
        Record::SyncSeq { gid, next } => vec![Op::SetSyncSeq { gid, next }],
        Record::SyncVector {
            gid,
            member,
            speaker,
            held,
        } => vec![Op::SetSyncVector {
            gid,
            member,
            speaker,
            held,
        }],
        Record::PeerExtensions { id, extensions } => {
            let extensions = extensions
                .into_iter()
                .filter(|e| {
                    !e.is_empty() && !e.chars().any(|c| c.is_whitespace() || c.is_control())
                })
                .take(64)
                .collect();
            vec![Op::SetPeerExtensions { id, extensions }]
        }
        Record::GroupTrust {
            id,
            trust: t,
            claimants,
        } => {
            let mut v = vec![Op::UpdateTrust {
                id: msg_id(id),
                trust: t,
            }];
            for c in claimants {
                v.push(Op::AddClaim(st::Claim {
                    msg_id: msg_id(id),
                    claimant: c,
                    received_at: now,
                }));
            }
            v
        }
        Record::GroupDelivery {
            id,
            delivered,
            sent,
            ..
        } => {
            // Delivered only with acknowledgements; written somewhere (or nobody else in the
            // group) is `sent`.
            let d = if delivered > 0 {
                st::Delivery::Delivered(delivered)
            } else if sent {
                st::Delivery::Sent
            } else {
                st::Delivery::Queued
            };
            vec![Op::UpdateDelivery {
                id: msg_id(id),
                delivery: d,
            }]
        }
        Record::OutboxAdd(e) => vec![Op::QueuePacket(st::QueuedPacket {
            id: msg_id(e.id),
            dest: e.to,
            gid: e.gid,
            line: e.line,
            expires_at: e.expires.as_millis(),
            own: e.own.map(msg_id),
        })],
        Record::OutboxRemove { id } => vec![Op::DequeuePacket { id: msg_id(id) }],
        Record::Request {
            id,
            added_me,
            first_at,
            last_at,
            dropped,
        } => vec![Op::UpsertRequest(st::Request {
            peer: id,
            added_me,
            first_at: first_at.as_millis(),
            last_at: last_at.as_millis(),
            dropped,
        })],
        Record::RequestMessage { id, from, text, at } => {
            vec![Op::AddRequestMessage(st::RequestMessage {
                id: msg_id(id),
                peer: from,
                text,
                at: at.as_millis(),
            })]
        }
        Record::RequestMessageDropped { id } => {
            vec![Op::RemoveRequestMessage { id: msg_id(id) }]
        }
        Record::RequestRemoved { id } => vec![Op::RemoveRequest(id)],
        _ => vec![],
    }
}

fn delivery(d: Delivery) -> st::Delivery {
    match d {
        Delivery::Queued => st::Delivery::Queued,
        Delivery::Sent => st::Delivery::Sent,
        Delivery::Delivered => st::Delivery::Delivered(1),
    }
}

/// Feeds everything the store holds into a fresh core (before `start`).
/// Rows of one conversation read at most at start for the torchat_sync 1:1 state.
const RESTORE_SCAN: usize = 20_000;

pub(crate) fn restore(store: &dyn Store, node: &mut Node) -> st::Result<()> {
    for b in store.buddies()? {
        node.restore_buddy(b.id.clone(), core_kind(b.kind), b.alias.clone());
        let info = torchat_core::PeerInfo {
            client: b.client.clone(),
            version: b.version.clone(),
            profile_name: b.profile_name.clone(),
            profile_text: b.profile_text.clone(),
            supports: vec![],
        };
        node.restore_buddy_info(&b.id, info);
    }
    // 1:1 messages never sent (an index finds them; the history is not read), with the time
    // they were written (sent along to peers that take delayed messages).
    for m in store.queued_messages()? {
        if let Conversation::Buddy(id) = m.msg.conversation {
            let at = Timestamp::from_millis(m.msg.timestamp);
            node.restore_queued_at(core_msg_id(m.msg.id), id, m.msg.text, at);
        }
    }
    // torchat_sync 1:1 state, from the newest end of each conversation (at most
    // RESTORE_SCAN rows each, so a long history does not slow the start): messages sent to a
    // sync peer and not acknowledged, and the ids of recent incoming messages.
    let keep = node.config().max_received_ids_per_buddy;
    let max_unacked = node.config().max_unacked_per_buddy;
    let sync_peers: std::collections::BTreeSet<OnionId> = store
        .peer_extensions()?
        .into_iter()
        .filter(|(_, exts)| exts.iter().any(|e| e == torchat_core::SYNC_EXT))
        .map(|(id, _)| id)
        .collect();
    for conv in store.conversations()? {
        let Conversation::Buddy(id) = &conv else {
            continue;
        };
        let sync = sync_peers.contains(id);
        let (mut before, mut scanned) = (None, 0usize);
        let mut unacked = vec![];
        let mut received = vec![];
        while scanned < RESTORE_SCAN
            && (received.len() < keep || (sync && unacked.len() < max_unacked))
        {
            let page = store.history(&conv, before, 500)?;
            let Some(first) = page.first() else { break };
            before = Some(first.row);
            scanned += page.len();
            for m in page.iter().rev() {
                match (m.msg.direction, m.msg.delivery) {
                    (Direction::Out, Some(st::Delivery::Sent))
                        if sync && unacked.len() < max_unacked =>
                    {
                        unacked.push(m.msg.clone())
                    }
                    (Direction::In, _) if received.len() < keep => received.push(m.msg.id),
                    _ => {}
                }
            }
            if page.len() < 500 {
                break;
            }
        }
        for m in unacked.into_iter().rev() {
            let at = Timestamp::from_millis(m.timestamp);
            node.restore_unacked(core_msg_id(m.id), id.clone(), m.text, at);
        }
        for r in received.into_iter().rev() {
            node.restore_received(id, core_msg_id(r));
        }
    }
    for g in store.groups()? {
        let members = store.members(&g.gid)?.into_iter().map(|m| m.id).collect();
        let state = match g.state {
            st::GroupState::Joining => GroupState::Joining,
            st::GroupState::Joined => GroupState::Joined,
            st::GroupState::Left => GroupState::Left,
        };
        node.restore_group(
            g.gid.clone(),
            state,
            g.modes.clone(),
            g.invited_by.clone(),
            members,
        );
        // Invited and joined then (or created then): nothing older is fetched for us.
        if g.invited_by.is_some() {
            node.restore_sync_floor(&g.gid, Timestamp::from_millis(g.created_at));
        }
        for (member, speaker, held) in store.sync_vectors(&g.gid)? {
            node.restore_sync_vector(&g.gid, &member, &speaker, held);
        }
        let conv = Conversation::Group(g.gid.clone());
        let limit = node.config().max_tracked_messages;
        for m in store.history(&conv, None, limit)? {
            let Some(t) = m.msg.trust else { continue };
            if let (Trust::Own, Some(s)) = (t, m.msg.sync) {
                let delivered = match m.msg.delivery {
                    Some(st::Delivery::Delivered(k)) => k,
                    _ => 0,
                };
                node.restore_sync_own(&g.gid, s.seq, core_msg_id(m.msg.id), delivered);
                continue;
            }
            let claims: Vec<OnionId> = store
                .claims(&m.msg.id)?
                .into_iter()
                .map(|c| c.claimant)
                .collect();
            node.restore_group_message(
                &g.gid,
                core_msg_id(m.msg.id),
                m.msg.sender,
                m.msg.text,
                Timestamp::from_millis(m.msg.timestamp),
                t,
                claims,
            );
            if let Some(s) = m.msg.sync {
                node.restore_group_sync_meta(&g.gid, core_msg_id(m.msg.id), sync_meta(s));
            }
        }
    }
    for (gid, next) in store.sync_seqs()? {
        node.restore_sync_seq(&gid, next);
    }
    for (id, exts) in store.peer_extensions()? {
        node.restore_peer_extensions(&id, exts);
    }
    restore_requests(store, node)?;
    for q in store.queued_packets()? {
        node.restore_outbox(OutboxEntry {
            id: core_msg_id(q.id),
            to: q.dest,
            gid: q.gid,
            line: q.line,
            expires: Timestamp::from_millis(q.expires_at),
            own: q.own.map(core_msg_id),
        });
    }
    Ok(())
}

/// Contact requests and the messages they hold.
fn restore_requests(store: &dyn Store, node: &mut Node) -> st::Result<()> {
    let mut held: std::collections::BTreeMap<OnionId, Vec<torchat_core::HeldMessage>> =
        Default::default();
    for m in store.request_messages()? {
        held.entry(m.peer)
            .or_default()
            .push(torchat_core::HeldMessage {
                id: core_msg_id(m.id),
                text: m.text,
                at: Timestamp::from_millis(m.at),
            });
    }
    for r in store.requests()? {
        let messages = held.remove(&r.peer).unwrap_or_default();
        node.restore_request(torchat_core::RequestView {
            id: r.peer,
            added_me: r.added_me,
            first_at: Timestamp::from_millis(r.first_at),
            last_at: Timestamp::from_millis(r.last_at),
            messages,
            dropped: r.dropped,
        });
    }
    Ok(())
}
