//! Writes as values: one [`Op`] per logical change, applied in batches by [`Store::apply`].
//!
//! Both implementations validate every op with the same function before touching anything, so
//! a batch fails the same way on either.
//!
//! [`Store::apply`]: crate::Store::apply

use torchat_wire::{GroupId, OnionId};

use crate::{
    Buddy, Claim, Delivery, Error, Group, GroupState, Member, Message, MsgId, OutboxEntry,
    QueuedPacket, Request, RequestMessage, Result, SeqSet, SyncInfo, Transfer, Trust,
};

/// One write. The number each op yields in [`Store::apply`]'s result is documented per variant.
///
/// [`Store::apply`]: crate::Store::apply
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets a setting. Yields 1 if the key was new, 0 if it was overwritten.
    PutSetting {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// Deletes a setting. Yields 1 if it existed.
    DeleteSetting {
        /// The key.
        key: String,
    },
    /// Inserts or replaces a buddy. Yields 1 if new, 0 if replaced.
    UpsertBuddy(Buddy),
    /// Removes a buddy (their messages stay). Yields 1 if it existed.
    RemoveBuddy(OnionId),
    /// Inserts or replaces a group (its members stay). Yields 1 if new, 0 if replaced.
    UpsertGroup(Group),
    /// Sets a group's state. Yields 1 if the group exists.
    SetGroupState {
        /// The group.
        gid: GroupId,
        /// The new state.
        state: GroupState,
    },
    /// Removes a group and its members (its messages stay). Yields 1 if it existed.
    RemoveGroup(GroupId),
    /// Adds a member; the group must exist ([`Error::UnknownGroup`]). Yields 1 if new, 0 if
    /// already a member (the stored `added_at` is kept).
    AddMember(Member),
    /// Removes a member. Yields 1 if it was one.
    RemoveMember {
        /// The group.
        gid: GroupId,
        /// The member.
        id: OnionId,
    },
    /// Inserts a message unless one with the same id is stored. Yields 1 if new, 0 if the id
    /// was already there (the stored message is left untouched).
    InsertMessage(Message),
    /// Sets a message's delivery state. Yields 1 if the message exists.
    UpdateDelivery {
        /// The message.
        id: MsgId,
        /// The new state.
        delivery: Delivery,
    },
    /// Sets a message's trust state. Yields 1 if the message exists.
    UpdateTrust {
        /// The message.
        id: MsgId,
        /// The new state.
        trust: Trust,
    },
    /// Records a claim; the message must exist ([`Error::UnknownMessage`]). Yields 1 if new,
    /// 0 if this claimant already claimed this message.
    AddClaim(Claim),
    /// Queues a transmission; the message must exist ([`Error::UnknownMessage`]). Yields 1 if
    /// new, 0 if `(msg_id, dest)` is already queued (the stored entry is kept).
    OutboxAdd(OutboxEntry),
    /// Counts one attempt of `(id, dest)` and defers it to `next_at`. Yields 1 if queued.
    OutboxAttempt {
        /// The message.
        id: MsgId,
        /// The destination.
        dest: OnionId,
        /// Not due again before this time (ms).
        next_at: u64,
    },
    /// Removes `(id, dest)` from the outbox (done or abandoned). Yields 1 if it was queued.
    OutboxRemove {
        /// The message.
        id: MsgId,
        /// The destination.
        dest: OnionId,
    },
    /// Removes every entry with `expires_at <= now`. Yields how many were removed.
    OutboxExpire {
        /// The current time (ms).
        now: u64,
    },
    /// Queues a packet (returns 1 if new, 0 if that id was already queued).
    QueuePacket(QueuedPacket),
    /// Removes a queued packet (returns 1 if it was there).
    DequeuePacket {
        /// Entry id.
        id: MsgId,
    },
    /// Adds sync data to a stored message that has none. Yields 1 if set; 0 if the message
    /// is unknown, already has sync data, or another message of its group and sender has
    /// that sequence number.
    SetSyncInfo {
        /// The message.
        id: MsgId,
        /// Its sync data.
        sync: SyncInfo,
    },
    /// Raises a group's next sequence number (never lowers it). Yields 1 if it changed.
    SetSyncSeq {
        /// The group.
        gid: GroupId,
        /// Next sequence number.
        next: u64,
    },
    /// Sets what `member` holds of `speaker`'s messages in a group. Yields 1 if new.
    SetSyncVector {
        /// The group.
        gid: GroupId,
        /// Who holds them (our own id for what we hold).
        member: OnionId,
        /// Whose messages.
        speaker: OnionId,
        /// The sequence numbers held.
        held: SeqSet,
    },
    /// Sets the extensions a peer announced. Yields 1 if new.
    SetPeerExtensions {
        /// The peer.
        id: OnionId,
        /// Extension names (tokens without whitespace).
        extensions: Vec<String>,
    },
    /// Deletes group messages older than `before` (ms), with their claims and outbox
    /// entries, except the newest row of the store (row numbers are never reused). Yields
    /// how many messages were deleted.
    PruneGroupHistory {
        /// Messages with a timestamp below this go.
        before: u64,
    },
    /// Inserts or replaces a file transfer. Yields 1 if new, 0 if replaced.
    UpsertTransfer(Transfer),
    /// Removes a file transfer. Yields 1 if it existed.
    RemoveTransfer {
        /// Its id.
        id: u64,
    },
    /// Inserts or replaces a contact request (its held messages stay). Yields 1 if new.
    UpsertRequest(Request),
    /// Removes a contact request and every message it holds. Yields 1 if it existed.
    RemoveRequest(OnionId),
    /// Holds a message for a contact request, unless one with the same id is held. Yields 1
    /// if new.
    AddRequestMessage(RequestMessage),
    /// Drops a held message. Yields 1 if it was held.
    RemoveRequestMessage {
        /// The message.
        id: MsgId,
    },
}

/// The largest timestamp the store keeps (SQLite integers are signed 64-bit).
pub const MAX_TIME: u64 = i64::MAX as u64;

fn time(what: &str, t: u64) -> Result<()> {
    if t > MAX_TIME {
        return Err(Error::Invalid(format!(
            "{what} {t} is over the largest storable time {MAX_TIME}"
        )));
    }
    Ok(())
}

/// Converts a validated time to SQLite's integer type.
pub(crate) fn to_sql_time(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

impl Op {
    /// Checks that the op's values can be stored faithfully. Called by both implementations
    /// before applying anything.
    pub fn validate(&self) -> Result<()> {
        match self {
            Op::UpsertGroup(g) => {
                time("group created_at", g.created_at)?;
                for m in &g.modes {
                    if m.is_empty() || m.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        return Err(Error::Invalid(format!(
                            "group mode {m:?} is empty or contains whitespace"
                        )));
                    }
                }
                Ok(())
            }
            Op::AddMember(m) => time("member added_at", m.added_at),
            Op::InsertMessage(m) => {
                time("message timestamp", m.timestamp)?;
                m.sync.as_ref().map_or(Ok(()), sync_info)
            }
            Op::SetSyncInfo { sync, .. } => sync_info(sync),
            Op::SetSyncSeq { next, .. } => time("next sequence number", *next),
            Op::SetPeerExtensions { extensions, .. } => {
                for e in extensions {
                    if e.is_empty() || e.chars().any(|c| c.is_whitespace() || c.is_control()) {
                        return Err(Error::Invalid(format!(
                            "extension {e:?} is empty or contains whitespace"
                        )));
                    }
                }
                Ok(())
            }
            Op::SetSyncVector { .. } | Op::PruneGroupHistory { .. } => Ok(()),
            Op::AddClaim(c) => time("claim received_at", c.received_at),
            Op::OutboxAdd(e) => {
                time("outbox created_at", e.created_at)?;
                time("outbox expires_at", e.expires_at)?;
                time("outbox next_at", e.next_at)
            }
            Op::OutboxAttempt { next_at, .. } => time("outbox next_at", *next_at),
            Op::QueuePacket(q) => time("queued packet expires_at", q.expires_at),
            Op::DequeuePacket { .. } | Op::RemoveTransfer { .. } => Ok(()),
            Op::UpsertRequest(r) => {
                time("request first_at", r.first_at)?;
                time("request last_at", r.last_at)?;
                time("request dropped", r.dropped)
            }
            Op::AddRequestMessage(m) => time("request message at", m.at),
            Op::RemoveRequest(_) | Op::RemoveRequestMessage { .. } => Ok(()),
            Op::UpsertTransfer(t) => {
                time("transfer created_at", t.created_at)?;
                time("transfer updated_at", t.updated_at)?;
                if !crate::TRANSFER_STATES.contains(&t.state.as_str()) {
                    return Err(Error::Invalid(format!("transfer state {:?}", t.state)));
                }
                for (what, v) in [("id", t.id), ("size", t.size), ("done", t.done)] {
                    if v > i64::MAX as u64 {
                        return Err(Error::Invalid(format!("transfer {what} {v} too large")));
                    }
                }
                Ok(())
            }
            // `now` is only compared with stored (valid) times, so any value works.
            Op::OutboxExpire { .. }
            | Op::PutSetting { .. }
            | Op::DeleteSetting { .. }
            | Op::UpsertBuddy(_)
            | Op::RemoveBuddy(_)
            | Op::SetGroupState { .. }
            | Op::RemoveGroup(_)
            | Op::RemoveMember { .. }
            | Op::UpdateDelivery { .. }
            | Op::UpdateTrust { .. }
            | Op::OutboxRemove { .. } => Ok(()),
        }
    }
}

fn sync_info(s: &SyncInfo) -> Result<()> {
    if s.seq == 0 {
        return Err(Error::Invalid("sequence number 0".into()));
    }
    time("sequence number", s.seq)?;
    time("sync time", s.time)
}

/// Validates a whole batch.
pub(crate) fn validate_all(ops: &[Op]) -> Result<()> {
    ops.iter().try_for_each(Op::validate)
}
