//! The [`Store`] trait.

use torchat_wire::{GroupId, OnionId};

use crate::{
    Buddy, Claim, Conversation, Delivery, Group, GroupState, Member, Message, MsgId, Op,
    OutboxEntry, QueuedPacket, Result, RowId, SeqSet, StoredMessage, Transfer, Trust,
};

/// Durable storage for one torchat node.
///
/// Writes go through [`Store::apply`]: a batch of [`Op`]s applied in one transaction, all or
/// nothing, and durable (on disk, `fsync`ed) when the call returns. The single-op methods below
/// are shorthands for a batch of one. Reads see every write that returned.
///
/// Every method is the same on every implementation: results, ordering and errors
/// (the shared test suite runs against each).
pub trait Store: Send {
    /// Applies `ops` in order in one transaction. On success returns one number per op (see
    /// each [`Op`] variant); on error nothing was changed.
    fn apply(&mut self, ops: &[Op]) -> Result<Vec<u64>>;

    /// The value of a setting.
    fn get_setting(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Every setting, ordered by key.
    fn settings(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// One buddy.
    fn buddy(&self, id: &OnionId) -> Result<Option<Buddy>>;
    /// Every buddy, ordered by id.
    fn buddies(&self) -> Result<Vec<Buddy>>;
    /// One group.
    fn group(&self, gid: &GroupId) -> Result<Option<Group>>;
    /// Every group, ordered by id.
    fn groups(&self) -> Result<Vec<Group>>;
    /// The members of a group, ordered by `added_at`, then id (empty for an unknown group).
    fn members(&self, gid: &GroupId) -> Result<Vec<Member>>;
    /// One message by id.
    fn message(&self, id: &MsgId) -> Result<Option<StoredMessage>>;
    /// Up to `limit` of the newest messages of a conversation with a row below `before` (all
    /// rows when `None`), returned oldest first. For the next page pass the first row returned.
    fn history(
        &self,
        conversation: &Conversation,
        before: Option<RowId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>>;
    /// Every conversation that has messages, the one with the newest message first. Reads
    /// every message: for tools, not for anything that runs often.
    fn conversations(&self) -> Result<Vec<Conversation>>;
    /// Every outgoing 1:1 message still waiting to be sent (delivery [`Delivery::Queued`]),
    /// oldest first: what a node puts back into its send queues at start. Its cost grows with
    /// the number of queued messages, not with the length of the history.
    fn queued_messages(&self) -> Result<Vec<StoredMessage>>;
    /// The claims on a message, ordered by `received_at`, then claimant.
    fn claims(&self, id: &MsgId) -> Result<Vec<Claim>>;
    /// Every queued packet, oldest first.
    fn queued_packets(&self) -> Result<Vec<QueuedPacket>>;
    /// Every file transfer, ordered by id.
    fn transfers(&self) -> Result<Vec<Transfer>>;
    /// Every pending contact request, ordered by stranger id.
    fn requests(&self) -> Result<Vec<crate::Request>>;
    /// Every held request message, in the order they were held.
    fn request_messages(&self) -> Result<Vec<crate::RequestMessage>>;
    /// The whole outbox, ordered by `created_at`, message id, destination.
    fn outbox(&self) -> Result<Vec<OutboxEntry>>;
    /// The group messages of `speaker` with sequence numbers `from..=to`, by sequence number.
    fn sync_range(
        &self,
        gid: &GroupId,
        speaker: &OnionId,
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredMessage>>;
    /// Every group's next sequence number, ordered by group id.
    fn sync_seqs(&self) -> Result<Vec<(GroupId, u64)>>;
    /// What each member holds of each speaker's messages in a group: (member, speaker, set),
    /// ordered by member, then speaker.
    fn sync_vectors(&self, gid: &GroupId) -> Result<Vec<(OnionId, OnionId, SeqSet)>>;
    /// The extensions each peer announced last, ordered by id.
    fn peer_extensions(&self) -> Result<Vec<(OnionId, Vec<String>)>>;
    /// Write transactions committed since the store was opened (for the SQLite store each is
    /// one `fsync` of its write-ahead log); for benchmarks and diagnostics.
    fn commits(&self) -> u64 {
        0
    }
    /// Gives back memory held for speed (caches) that is not needed now; for an idle node.
    fn release_memory(&self) {}
    /// The entries due at `now` (`next_at <= now < expires_at`), in [`Store::outbox`] order.
    fn outbox_due(&self, now: u64) -> Result<Vec<OutboxEntry>> {
        Ok(self
            .outbox()?
            .into_iter()
            .filter(|e| e.is_due(now))
            .collect())
    }

    /// Sets a setting.
    fn put_setting(&mut self, key: &str, value: &[u8]) -> Result<()> {
        one(self.apply(&[Op::PutSetting {
            key: key.to_owned(),
            value: value.to_vec(),
        }]))
        .map(|_| ())
    }
    /// Deletes a setting; true if it existed.
    fn delete_setting(&mut self, key: &str) -> Result<bool> {
        flag(self.apply(&[Op::DeleteSetting {
            key: key.to_owned(),
        }]))
    }
    /// Inserts or replaces a buddy; true if new.
    fn upsert_buddy(&mut self, buddy: Buddy) -> Result<bool> {
        flag(self.apply(&[Op::UpsertBuddy(buddy)]))
    }
    /// Removes a buddy (their messages stay); true if it existed.
    fn remove_buddy(&mut self, id: &OnionId) -> Result<bool> {
        flag(self.apply(&[Op::RemoveBuddy(id.clone())]))
    }
    /// Inserts or replaces a group (members stay); true if new.
    fn upsert_group(&mut self, group: Group) -> Result<bool> {
        flag(self.apply(&[Op::UpsertGroup(group)]))
    }
    /// Sets a group's state; true if the group exists.
    fn set_group_state(&mut self, gid: &GroupId, state: GroupState) -> Result<bool> {
        flag(self.apply(&[Op::SetGroupState {
            gid: gid.clone(),
            state,
        }]))
    }
    /// Removes a group and its members (messages stay); true if it existed.
    fn remove_group(&mut self, gid: &GroupId) -> Result<bool> {
        flag(self.apply(&[Op::RemoveGroup(gid.clone())]))
    }
    /// Adds a member to a stored group; true if new.
    fn add_member(&mut self, gid: &GroupId, id: &OnionId, added_at: u64) -> Result<bool> {
        flag(self.apply(&[Op::AddMember(Member {
            gid: gid.clone(),
            id: id.clone(),
            added_at,
        })]))
    }
    /// Removes a member; true if it was one.
    fn remove_member(&mut self, gid: &GroupId, id: &OnionId) -> Result<bool> {
        flag(self.apply(&[Op::RemoveMember {
            gid: gid.clone(),
            id: id.clone(),
        }]))
    }
    /// Inserts a message; true if new, false if its id was already stored (then nothing
    /// changes). Safe to repeat after a crash.
    fn insert_message(&mut self, msg: Message) -> Result<bool> {
        flag(self.apply(&[Op::InsertMessage(msg)]))
    }
    /// Sets a message's delivery state; true if the message exists.
    fn update_delivery(&mut self, id: &MsgId, delivery: Delivery) -> Result<bool> {
        flag(self.apply(&[Op::UpdateDelivery { id: *id, delivery }]))
    }
    /// Sets a message's trust state; true if the message exists.
    fn update_trust(&mut self, id: &MsgId, trust: Trust) -> Result<bool> {
        flag(self.apply(&[Op::UpdateTrust { id: *id, trust }]))
    }
    /// Records a claim on a stored message; true if new for this (message, claimant).
    fn add_claim(&mut self, claim: Claim) -> Result<bool> {
        flag(self.apply(&[Op::AddClaim(claim)]))
    }
    /// Queues a stored message for `dest` (no attempts yet, due at once); true if new.
    fn outbox_add(
        &mut self,
        id: &MsgId,
        dest: &OnionId,
        created_at: u64,
        expires_at: u64,
    ) -> Result<bool> {
        flag(self.apply(&[Op::OutboxAdd(OutboxEntry::new(
            *id,
            dest.clone(),
            created_at,
            expires_at,
        ))]))
    }
    /// Counts an attempt and defers the entry to `next_at`; true if queued.
    fn outbox_attempt(&mut self, id: &MsgId, dest: &OnionId, next_at: u64) -> Result<bool> {
        flag(self.apply(&[Op::OutboxAttempt {
            id: *id,
            dest: dest.clone(),
            next_at,
        }]))
    }
    /// Removes an entry (delivered or abandoned); true if it was queued.
    fn outbox_remove(&mut self, id: &MsgId, dest: &OnionId) -> Result<bool> {
        flag(self.apply(&[Op::OutboxRemove {
            id: *id,
            dest: dest.clone(),
        }]))
    }
    /// Removes every entry with `expires_at <= now` and returns them (in [`Store::outbox`]
    /// order), so the caller can mark their messages failed.
    fn outbox_expire(&mut self, now: u64) -> Result<Vec<OutboxEntry>> {
        let expired: Vec<OutboxEntry> = self
            .outbox()?
            .into_iter()
            .filter(|e| e.expires_at <= now)
            .collect();
        self.apply(&[Op::OutboxExpire { now }])?;
        Ok(expired)
    }
}

fn one(r: Result<Vec<u64>>) -> Result<u64> {
    r.map(|v| v.first().copied().unwrap_or(0))
}

fn flag(r: Result<Vec<u64>>) -> Result<bool> {
    one(r).map(|n| n > 0)
}
