//! Group chat (PROTOCOL §3) and the redundancy extension (§4) on top of buddy sessions.
//!
//! Membership: ruby-torchat's invite / participants / join / invited / leave flow, members stay
//! members while disconnected (only `leave` removes one), lists are re-checked with every member
//! when it reconnects, unknown ids are verified with `is_participating` before they are added.
//! Messages: sent directly to every member; a member that got one directly shows it `(Direct)`
//! and relays it as `groupchat_echoed_message`; relayed-only copies are shown `(k of N)` after
//! the settle window. Packets for members that are not reachable wait in a per-member outbox.

use std::collections::{BTreeMap, BTreeSet};

use torchat_wire::{GroupId, OnionId, Packet};

use crate::node::Node;
use crate::redundancy::{sync_msgid, Copy, Engine, Outcome, Slot};
use crate::time::Timestamp;
use crate::types::{
    BuddyKind, CommandError, Event, GroupState, GroupView, MemberChange, MsgId, OutboxEntry,
    Record, SyncCopy, Trust,
};

/// The invite mode that turns relaying off.
pub const NO_REDUNDANCY: &str = "noredundancy";

/// Our extension: group messages with ids and signatures (announced in `supports`).
pub const SIGNED_EXT: &str = "torchat_signed";

/// What a group message signature covers: domain, group, message id, speaker, text.
fn signed_bytes(gid: &GroupId, sender: &OnionId, msgid: &[u8; 16], text: &[u8]) -> Vec<u8> {
    let mut m = b"torchat signed group message v1\0".to_vec();
    m.extend_from_slice(gid.as_str().as_bytes());
    m.push(0);
    m.extend_from_slice(msgid);
    m.extend_from_slice(sender.as_bytes());
    m.push(0);
    m.extend_from_slice(text);
    m
}

/// Signs a group message with our onion service key (the ed25519 seed).
pub(crate) fn sign_message(
    seed: &[u8; 32],
    gid: &GroupId,
    me: &OnionId,
    msgid: &[u8; 16],
    text: &[u8],
) -> [u8; 64] {
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_bytes(seed);
    key.sign(&signed_bytes(gid, me, msgid, text)).to_bytes()
}

/// Checks a speaker's signature against its v3 onion id (the id *is* the public key).
pub(crate) fn verify_signed(
    gid: &GroupId,
    sender: &OnionId,
    msgid: &[u8; 16],
    sig: &[u8; 64],
    text: &[u8],
) -> bool {
    let Some(pk) = sender.ed25519_public_key() else {
        return false; // a legacy id has no key: nothing could be signed
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(pk) else {
        return false;
    };
    let sig = ed25519_dalek::Signature::from_bytes(sig);
    key.verify_strict(&signed_bytes(gid, sender, msgid, text), &sig)
        .is_ok()
}

/// An open membership question to one id.
#[derive(Debug, Clone)]
pub(crate) struct Check {
    /// When `groupchat_is_participating` went out (None: not yet, the id is unreachable).
    asked: Option<Timestamp>,
    created: Timestamp,
    /// The member whose list named it (None: the inviter's list during our join).
    reporter: Option<OnionId>,
    /// Whether the id is already a member (a join-time confirmation) or waits to be added.
    already_member: bool,
}

/// An own message: who it was written to, how many hold it.
#[derive(Debug, Clone)]
struct OwnMessage {
    /// Members it was written to (sent, not necessarily delivered).
    written: BTreeSet<OnionId>,
    /// Members known to hold it (acknowledged, extension `torchat_sync`).
    delivered: u32,
    of: u32,
}

#[derive(Debug)]
pub(crate) struct Group {
    pub state: GroupState,
    pub modes: Vec<String>,
    /// Members other than us.
    pub members: BTreeSet<OnionId>,
    pub inviter: Option<OnionId>,
    /// While invited: what the inviter listed.
    pub proposed: BTreeSet<OnionId>,
    /// Inviter side: ids we invited, waiting for their join.
    pub invited: BTreeMap<OnionId, Timestamp>,
    checks: BTreeMap<OnionId, Check>,
    pub(crate) engine: Engine,
    own: BTreeMap<MsgId, OwnMessage>,
    /// Extension `torchat_sync`.
    pub(crate) sync: crate::sync::GroupSync,
}

impl Group {
    fn new(state: GroupState, modes: Vec<String>, inviter: Option<OnionId>) -> Self {
        Group {
            state,
            modes,
            members: BTreeSet::new(),
            inviter,
            proposed: BTreeSet::new(),
            invited: BTreeMap::new(),
            checks: BTreeMap::new(),
            engine: Engine::default(),
            own: BTreeMap::new(),
            sync: Default::default(),
        }
    }

    pub(crate) fn redundancy(&self) -> bool {
        !self.modes.iter().any(|m| m == NO_REDUNDANCY)
    }

    fn active(&self) -> bool {
        matches!(self.state, GroupState::Joining | GroupState::Joined)
    }

    pub(crate) fn n_others(&self) -> u32 {
        u32::try_from(self.members.len()).unwrap_or(u32::MAX)
    }
}

impl Node {
    // ----- user commands -----

    /// Creates a group with us as its only member. `modes` e.g. `["noredundancy"]`.
    pub fn group_create(
        &mut self,
        modes: Vec<String>,
        now: Timestamp,
    ) -> Result<GroupId, CommandError> {
        // Pending invites do not count: strangers cannot make this fail (quota.rs).
        if self.groups_in_use() >= self.cfg.max_groups {
            return Err(CommandError::TooMany);
        }
        let gid = self.new_gid();
        self.groups
            .insert(gid.clone(), Group::new(GroupState::Joined, modes, None));
        self.persist_group(&gid);
        self.event(Event::GroupState {
            gid: gid.clone(),
            state: GroupState::Joined,
        });
        let _ = now;
        Ok(gid)
    }

    /// Invites an online buddy: `groupchat_invite` then our member list.
    pub fn group_invite(
        &mut self,
        gid: &GroupId,
        id: &OnionId,
        now: Timestamp,
    ) -> Result<(), CommandError> {
        let g = self.groups.get(gid).ok_or(CommandError::NoSuchGroup)?;
        if g.state != GroupState::Joined {
            return Err(CommandError::GroupState);
        }
        if g.members.contains(id) {
            return Err(CommandError::AlreadyMember);
        }
        if *id == self.cfg.own_id {
            return Err(CommandError::OwnId);
        }
        if g.members.len() >= self.cfg.max_group_members {
            return Err(CommandError::TooMany);
        }
        let modes = g.modes.clone();
        let list: Vec<OnionId> = g.members.iter().filter(|m| *m != id).cloned().collect();
        let out = self.online_out(id).ok_or(CommandError::NotOnline)?;
        if let Some(g) = self.groups.get_mut(gid) {
            g.invited.insert(id.clone(), now);
        }
        self.send(
            out,
            &Packet::GroupInvite {
                gid: gid.clone(),
                modes,
            },
        );
        self.send(
            out,
            &Packet::GroupParticipants {
                gid: gid.clone(),
                ids: list,
            },
        );
        Ok(())
    }

    /// Accepts an invite: adopt the inviter's list, verify members we do not know, answer the
    /// inviter with our view until it has nothing to add, then join.
    pub fn group_accept(&mut self, gid: &GroupId, now: Timestamp) -> Result<(), CommandError> {
        let g = self.groups.get(gid).ok_or(CommandError::NoSuchGroup)?;
        if g.state != GroupState::Invited {
            return Err(CommandError::GroupState);
        }
        if self.groups_in_use() >= self.cfg.max_groups {
            return Err(CommandError::TooMany);
        }
        let Some(g) = self.groups.get_mut(gid) else {
            return Err(CommandError::NoSuchGroup);
        };
        g.state = GroupState::Joining;
        // Messages said before we joined are not fetched for us (torchat_sync).
        g.sync.floor = Some(now);
        let inviter = g.inviter.clone();
        let proposed: Vec<OnionId> = std::mem::take(&mut g.proposed).into_iter().collect();
        if let Some(inv) = &inviter {
            g.members.insert(inv.clone());
        }
        self.event(Event::GroupState {
            gid: gid.clone(),
            state: GroupState::Joining,
        });
        for id in proposed {
            self.add_member_unverified(gid, &id, now);
        }
        if let Some(inv) = &inviter {
            self.pin(inv, now);
            self.send_participants(gid, inv);
        }
        Ok(())
    }

    /// Declines an invite (`groupchat_leave` to the inviter).
    pub fn group_decline(&mut self, gid: &GroupId, now: Timestamp) -> Result<(), CommandError> {
        let g = self.groups.get(gid).ok_or(CommandError::NoSuchGroup)?;
        if g.state != GroupState::Invited {
            return Err(CommandError::GroupState);
        }
        if let Some(inv) = g.inviter.clone() {
            self.group_send(
                gid,
                &inv,
                Packet::GroupLeave {
                    gid: gid.clone(),
                    reason: None,
                },
                None,
                now,
            );
        }
        self.groups.remove(gid);
        self.event(Event::GroupState {
            gid: gid.clone(),
            state: GroupState::Left,
        });
        Ok(())
    }

    /// Leaves a group: `groupchat_leave` to every member (queued for unreachable ones).
    pub fn group_leave(
        &mut self,
        gid: &GroupId,
        reason: Option<Vec<u8>>,
        now: Timestamp,
    ) -> Result<(), CommandError> {
        let g = self.groups.get_mut(gid).ok_or(CommandError::NoSuchGroup)?;
        if !g.active() {
            return Err(CommandError::GroupState);
        }
        g.state = GroupState::Left;
        let members: Vec<OnionId> = g.members.iter().cloned().collect();
        for m in &members {
            let p = Packet::GroupLeave {
                gid: gid.clone(),
                reason: reason.clone(),
            };
            self.group_send(gid, m, p, None, now);
        }
        self.persist_group(gid);
        self.event(Event::GroupState {
            gid: gid.clone(),
            state: GroupState::Left,
        });
        for m in &members {
            self.unpin_if_unused(m, now);
        }
        Ok(())
    }

    /// Says `text` in a group. Members with `torchat_sync` that are online get the full copy
    /// with its sequence number (the others pull it when they come back); members without it
    /// get the seed's packet, queued in their outbox while they are unreachable.
    pub fn group_say(
        &mut self,
        gid: &GroupId,
        text: Vec<u8>,
        now: Timestamp,
    ) -> Result<MsgId, CommandError> {
        if text.is_empty() {
            return Err(CommandError::Empty);
        }
        let g = self.groups.get(gid).ok_or(CommandError::NoSuchGroup)?;
        if g.state != GroupState::Joined {
            return Err(CommandError::GroupState);
        }
        let members: Vec<OnionId> = g.members.iter().cloned().collect();
        let of = g.n_others();
        let me = self.cfg.own_id.clone();
        // Sequence number first (persisted before anything leaves), then the message.
        let sync = self.sync_new_message(gid, &text, now);
        let id = match &sync {
            Some(m) => crate::sync::local_id(gid, &me, m.seq),
            None => self.new_msg_id(),
        };
        self.persist(Record::GroupMessage {
            gid: gid.clone(),
            id,
            sender: me.clone(),
            text: text.clone(),
            at: now,
            trust: Trust::Own,
            sync,
        });
        self.event(Event::GroupMessage {
            gid: gid.clone(),
            id,
            sender: me.clone(),
            text: text.clone(),
            at: now,
            trust: Trust::Own,
        });
        if let Some(g) = self.groups.get_mut(gid) {
            g.own.insert(
                id,
                OwnMessage {
                    written: BTreeSet::new(),
                    delivered: 0,
                    of,
                },
            );
            while g.own.len() > self.cfg.max_tracked_messages {
                g.own.pop_first();
            }
        }
        let copy = sync.map(|meta| SyncCopy {
            speaker: me.clone(),
            meta,
            text: text.clone(),
        });
        if let Some(c) = &copy {
            self.sync_track_own(gid, c.meta, id, of, &text);
        }
        // With `torchat_signed`, a unique id and a signature with our onion key go along to
        // the members who understand them (with sync, the id is the sequence number and time).
        let signed = match &copy {
            Some(c) => c.meta.sig.map(|sig| (sync_msgid(&c.meta), sig)),
            None => self.cfg.signing_key.map(|key| {
                let mut msgid = [0u8; 16];
                self.rng.fill_bytes(&mut msgid);
                let sig = sign_message(&key, gid, &self.cfg.own_id, &msgid, &text);
                (msgid, sig)
            }),
        };
        let mut missed = Vec::new();
        for m in members {
            if let (Some(c), true) = (&copy, self.is_sync_peer(&m)) {
                match self.online_out(&m) {
                    Some(out) => {
                        let p = self.sync_packet(gid, c);
                        self.send(out, &p);
                        self.mark_written(gid, id, &m);
                    }
                    None => missed.push(m),
                }
                continue;
            }
            let p = match signed {
                Some((msgid, sig)) if self.supports(&m, SIGNED_EXT) => Packet::GroupSignedMessage {
                    gid: gid.clone(),
                    msgid,
                    sig,
                    text: text.clone(),
                },
                _ => Packet::GroupMessage {
                    gid: gid.clone(),
                    text: text.clone(),
                },
            };
            // A member we never talked to may speak torchat_sync: helpers relay to it too.
            if copy.is_some() && self.online_out(&m).is_none() && self.capabilities_unknown(&m) {
                missed.push(m.clone());
            }
            self.group_send(gid, &m, p, Some(id), now);
        }
        self.sync_not_reached(gid, missed, now);
        self.report_delivery(gid, id);
        Ok(id)
    }

    // ----- queries -----

    /// A view of one group.
    pub fn group(&self, gid: &GroupId) -> Option<GroupView> {
        self.groups.get(gid).map(|g| GroupView {
            gid: gid.clone(),
            state: g.state,
            modes: g.modes.clone(),
            members: g.members.iter().cloned().collect(),
            inviter: g.inviter.clone(),
            proposed: g.proposed.iter().cloned().collect(),
        })
    }

    /// Views of every group.
    pub fn groups(&self) -> Vec<GroupView> {
        self.groups.keys().filter_map(|g| self.group(g)).collect()
    }

    /// Who vouches for a group message we track, and whether we got it directly.
    pub fn group_claimants(&self, gid: &GroupId, id: MsgId) -> Option<(bool, Vec<OnionId>)> {
        let s = self.groups.get(gid)?.engine.get(id)?;
        Some((s.direct, s.claimants.iter().cloned().collect()))
    }

    /// Group packets waiting in outboxes.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    // ----- restoring persisted state -----

    /// Restores a group and its members from storage (before `start`). Emits nothing.
    pub fn restore_group(
        &mut self,
        gid: GroupId,
        state: GroupState,
        modes: Vec<String>,
        inviter: Option<OnionId>,
        members: Vec<OnionId>,
    ) {
        let mut g = Group::new(state, modes, inviter);
        let me = self.cfg.own_id.clone();
        g.members = members.into_iter().filter(|m| *m != me).collect();
        let active = g.active();
        let ids: Vec<OnionId> = g.members.iter().cloned().collect();
        self.groups.insert(gid, g);
        if active {
            for id in ids {
                let b = self
                    .buddies
                    .entry(id)
                    .or_insert_with(|| crate::state::Buddy::new(BuddyKind::Temporary));
                if b.kind != BuddyKind::Blocked {
                    b.pinned = true;
                }
            }
        }
    }

    /// Restores a group message shown before, so that late relayed or direct copies of it are
    /// matched instead of shown again.
    #[allow(clippy::too_many_arguments)]
    pub fn restore_group_message(
        &mut self,
        gid: &GroupId,
        id: MsgId,
        sender: OnionId,
        text: Vec<u8>,
        at: Timestamp,
        trust: Trust,
        claimants: Vec<OnionId>,
    ) {
        let max = self.cfg.max_tracked_messages;
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        if trust == Trust::Own {
            return;
        }
        let slot = Slot {
            id,
            sender,
            text,
            msgid: None,
            signed: matches!(trust, Trust::Signed { .. }),
            direct: matches!(trust, Trust::Direct { .. }),
            claimants: claimants.into_iter().collect(),
            first_seen: at,
            window_end: None,
            shown: Some(trust),
            sync: None,
        };
        g.engine.restore(slot, max);
    }

    /// Restores a queued group packet (before `start`). Entries already expired are dropped
    /// (with [`Event::OutboxDropped`]) at the next timeout.
    pub fn restore_outbox(&mut self, e: OutboxEntry) {
        self.outbox.push(e);
    }

    // ----- incoming packets -----

    pub(crate) fn handle_group_packet(&mut self, from: &OnionId, p: Packet, now: Timestamp) {
        // Traffic for a group we left: say so, so that a member who missed our leave removes
        // us (it treats an unasked `not_participating` from a member as a leave).
        if let Packet::GroupMessage { gid, .. }
        | Packet::GroupSignedMessage { gid, .. }
        | Packet::GroupSignedEcho { gid, .. }
        | Packet::GroupEchoedMessage { gid, .. }
        | Packet::GroupParticipants { gid, .. }
        | Packet::GroupInvited { gid, .. }
        | Packet::GroupSyncMessage { gid, .. }
        | Packet::GroupSyncWant { gid, .. } = &p
        {
            if self
                .groups
                .get(gid)
                .is_some_and(|g| g.state == GroupState::Left)
            {
                if let Some(out) = self.ready_out(from) {
                    self.send(out, &Packet::GroupNotParticipating { gid: gid.clone() });
                }
                return;
            }
        }
        match p {
            Packet::GroupInvite { gid, modes } => self.on_invite(from, gid, modes, now),
            Packet::GroupParticipants { gid, ids } => self.on_participants(from, &gid, ids, now),
            Packet::GroupIsParticipating { gid } => {
                let yes = self.groups.get(&gid).is_some_and(|g| g.active());
                let p = if yes {
                    Packet::GroupParticipating { gid }
                } else {
                    Packet::GroupNotParticipating { gid }
                };
                if let Some(out) = self.ready_out(from) {
                    self.send(out, &p);
                }
            }
            Packet::GroupParticipating { gid } => self.on_check_answer(from, &gid, true, now),
            Packet::GroupNotParticipating { gid } => self.on_check_answer(from, &gid, false, now),
            Packet::GroupJoin { gid } => self.on_join(from, &gid, now),
            Packet::GroupInvited { gid, id } => self.on_invited(from, &gid, id, now),
            Packet::GroupLeave { gid, reason } => self.on_leave(from, &gid, reason, now),
            Packet::GroupMessage { gid, text } => {
                self.on_group_message(from, &gid, text, None, now)
            }
            Packet::GroupSignedMessage {
                gid,
                msgid,
                sig,
                text,
            } => self.on_group_message(from, &gid, text, Some((msgid, sig)), now),
            Packet::GroupSignedEcho {
                gid,
                sender,
                msgid,
                sig,
                text,
            } => self.on_echo(from, &gid, sender, text, Some((msgid, sig)), now),
            Packet::GroupEchoedMessage { gid, sender, text } => {
                self.on_echo(from, &gid, sender, text, None, now)
            }
            p @ (Packet::GroupSyncMessage { .. }
            | Packet::GroupSyncAck { .. }
            | Packet::GroupSyncDigest { .. }
            | Packet::GroupSyncWant { .. }
            | Packet::GroupSyncEnd { .. }
            | Packet::GroupSyncTell { .. }) => self.on_sync_packet(from, p, now),
            _ => {}
        }
    }

    /// A packet about a group from someone who may not speak about it: ignored and counted.
    fn non_member(&mut self) {
        self.stats.non_member_packets += 1;
    }

    pub(crate) fn is_member_of(&self, gid: &GroupId, id: &OnionId) -> bool {
        self.is_member(gid, id)
    }

    fn is_member(&self, gid: &GroupId, id: &OnionId) -> bool {
        self.groups
            .get(gid)
            .is_some_and(|g| g.active() && g.members.contains(id))
    }

    fn on_invite(&mut self, from: &OnionId, gid: GroupId, modes: Vec<String>, now: Timestamp) {
        if self.groups.contains_key(&gid) {
            return; // known group: ruby-torchat ignores repeated invites too
        }
        // Pending invites are capped per inviter and in total before we get here (quota.rs).
        let g = Group::new(GroupState::Invited, modes.clone(), Some(from.clone()));
        self.groups.insert(gid.clone(), g);
        self.event(Event::GroupInvite {
            gid,
            from: from.clone(),
            modes,
        });
        let _ = now;
    }

    fn on_participants(
        &mut self,
        from: &OnionId,
        gid: &GroupId,
        ids: Vec<OnionId>,
        now: Timestamp,
    ) {
        let me = self.cfg.own_id.clone();
        let Some(g) = self.groups.get_mut(gid) else {
            return self.non_member();
        };
        let max = self.cfg.max_group_members;
        let ids: Vec<OnionId> = ids
            .into_iter()
            .filter(|i| *i != me && i != from)
            .take(max)
            .collect();
        match g.state {
            // The inviter tells us who is in the group.
            GroupState::Invited if g.inviter.as_ref() == Some(from) => {
                g.proposed.extend(ids.iter().cloned());
                let blocked = ids.iter().any(|i| {
                    self.buddies
                        .get(i)
                        .is_some_and(|b| b.kind == BuddyKind::Blocked)
                });
                if blocked {
                    // Someone we blocked is in it: decline.
                    let _ = self.group_decline(gid, now);
                }
            }
            GroupState::Joining if g.inviter.as_ref() == Some(from) => {
                if ids.is_empty() {
                    // The inviter has nothing to add: join.
                    g.state = GroupState::Joined;
                    self.group_send(gid, from, Packet::GroupJoin { gid: gid.clone() }, None, now);
                    self.persist_group(gid);
                    let members: Vec<OnionId> = self
                        .groups
                        .get(gid)
                        .map(|g| g.members.iter().cloned().collect())
                        .unwrap_or_default();
                    for m in members {
                        self.persist(Record::GroupMember {
                            gid: gid.clone(),
                            id: m,
                            member: true,
                        });
                    }
                    self.event(Event::GroupState {
                        gid: gid.clone(),
                        state: GroupState::Joined,
                    });
                } else {
                    for id in &ids {
                        self.add_member_unverified(gid, id, now);
                    }
                    self.send_participants(gid, from);
                }
            }
            // An invitee tells us its view: answer with what it lacks.
            GroupState::Joined if g.invited.contains_key(from) => {
                let theirs: BTreeSet<&OnionId> = ids.iter().collect();
                let lacking: Vec<OnionId> = g
                    .members
                    .iter()
                    .filter(|m| !theirs.contains(m) && *m != from)
                    .cloned()
                    .collect();
                self.group_send(
                    gid,
                    from,
                    Packet::GroupParticipants {
                        gid: gid.clone(),
                        ids: lacking,
                    },
                    None,
                    now,
                );
            }
            // A member's list after a reconnect (or ruby-torchat's difference reply): verify
            // the ids we do not have before adding them.
            GroupState::Joined | GroupState::Joining if g.members.contains(from) => {
                for id in ids {
                    let known = self
                        .groups
                        .get(gid)
                        .is_some_and(|g| g.members.contains(&id));
                    if !known {
                        self.start_check(gid, &id, Some(from.clone()), false, now);
                    }
                }
            }
            _ => self.non_member(),
        }
    }

    fn on_join(&mut self, from: &OnionId, gid: &GroupId, now: Timestamp) {
        let Some(g) = self.groups.get_mut(gid) else {
            return self.non_member();
        };
        // Only an id we invited may join (ruby-torchat does not check; we do).
        if g.state != GroupState::Joined || g.invited.remove(from).is_none() {
            return self.non_member();
        }
        let others: Vec<OnionId> = g.members.iter().cloned().collect();
        self.add_member(gid, from, now);
        for m in others {
            let p = Packet::GroupInvited {
                gid: gid.clone(),
                id: from.clone(),
            };
            self.group_send(gid, &m, p, None, now);
        }
        // Members who joined after we listed them for this invitee (concurrent invites) are
        // not in its list yet: send the current one; it verifies and adds what it lacks.
        self.send_participants(gid, from);
    }

    fn on_invited(&mut self, from: &OnionId, gid: &GroupId, id: OnionId, now: Timestamp) {
        if !self.is_member(gid, from) {
            return self.non_member();
        }
        if id == self.cfg.own_id || self.is_member(gid, &id) {
            return;
        }
        self.add_member(gid, &id, now);
    }

    fn on_leave(&mut self, from: &OnionId, gid: &GroupId, reason: Option<Vec<u8>>, now: Timestamp) {
        let Some(g) = self.groups.get_mut(gid) else {
            return self.non_member();
        };
        if g.invited.remove(from).is_some() {
            self.event(Event::GroupMember {
                gid: gid.clone(),
                id: from.clone(),
                change: MemberChange::Declined,
            });
            return;
        }
        if g.state == GroupState::Invited && g.inviter.as_ref() == Some(from) {
            // The inviter left before we answered: the invite is void.
            self.groups.remove(gid);
            self.event(Event::GroupState {
                gid: gid.clone(),
                state: GroupState::Left,
            });
            return;
        }
        if !g.members.remove(from) {
            return self.non_member();
        }
        self.persist(Record::GroupMember {
            gid: gid.clone(),
            id: from.clone(),
            member: false,
        });
        self.event(Event::GroupMember {
            gid: gid.clone(),
            id: from.clone(),
            change: MemberChange::Left { reason },
        });
        self.unpin_if_unused(from, now);
    }

    fn on_check_answer(&mut self, from: &OnionId, gid: &GroupId, yes: bool, now: Timestamp) {
        let Some(g) = self.groups.get_mut(gid) else {
            return self.non_member();
        };
        let Some(check) = g.checks.remove(from) else {
            if !yes && g.members.contains(from) {
                // A member says it is not in the group: it left and we missed it.
                self.remove_member(gid, from, now);
            }
            return;
        };
        match (yes, check.already_member) {
            (true, true) => {}
            (true, false) => self.add_member(gid, from, now),
            (false, member) => {
                if member {
                    self.remove_member(gid, from, now);
                }
                if let Some(peer) = check.reporter {
                    self.event(Event::GroupDivergence {
                        gid: gid.clone(),
                        member: from.clone(),
                        peer,
                    });
                }
            }
        }
    }

    /// `not_implemented groupchat_is_participating`: a legacy member (ruby-torchat's query is
    /// broken) cannot answer; accept it on the word of the member who listed it.
    pub(crate) fn on_not_implemented(
        &mut self,
        from: &OnionId,
        what: Option<&[u8]>,
        now: Timestamp,
    ) {
        if what != Some(&b"groupchat_is_participating"[..]) {
            return;
        }
        let gids: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.checks.contains_key(from))
            .map(|(k, _)| k.clone())
            .collect();
        for gid in gids {
            self.on_check_answer(from, &gid, true, now);
        }
    }

    /// A direct copy from its speaker; `signed` = (message id, signature) for
    /// `groupchat_signed_message`.
    fn on_group_message(
        &mut self,
        from: &OnionId,
        gid: &GroupId,
        text: Vec<u8>,
        signed: Option<([u8; 16], [u8; 64])>,
        now: Timestamp,
    ) {
        if !self.is_member(gid, from) || text.is_empty() {
            return self.non_member();
        }
        if let Some((msgid, sig)) = &signed {
            if !verify_signed(gid, from, msgid, sig, &text) {
                return self.bad_signature(from);
            }
        }
        let new_id = self.new_msg_id();
        let max = self.cfg.max_tracked_messages;
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        let c = Copy {
            sender: from,
            text: &text,
            msgid: signed.map(|s| s.0),
            signed: signed.is_some(),
            sync: None,
        };
        let outcome = g.engine.direct(c, new_id, now, max);
        let relay = g.redundancy();
        let targets: Vec<OnionId> = g.members.iter().filter(|m| *m != from).cloned().collect();
        self.apply_outcome(gid, outcome, now);
        if relay {
            for m in targets {
                // Members who understand signatures get the speaker's signature along.
                let p = match signed {
                    Some((msgid, sig)) if self.supports(&m, SIGNED_EXT) => {
                        Packet::GroupSignedEcho {
                            gid: gid.clone(),
                            sender: from.clone(),
                            msgid,
                            sig,
                            text: text.clone(),
                        }
                    }
                    _ => Packet::GroupEchoedMessage {
                        gid: gid.clone(),
                        sender: from.clone(),
                        text: text.clone(),
                    },
                };
                self.group_send(gid, &m, p, None, now);
            }
        }
    }

    /// A relayed copy; `signed` carries the speaker's id and signature when there is one.
    fn on_echo(
        &mut self,
        from: &OnionId,
        gid: &GroupId,
        sender: OnionId,
        text: Vec<u8>,
        signed: Option<([u8; 16], [u8; 64])>,
        now: Timestamp,
    ) {
        if sender == self.cfg.own_id {
            return; // we know what we said
        }
        if sender == *from
            || !self.is_member(gid, from)
            || !self.is_member(gid, &sender)
            || text.is_empty()
        {
            return self.non_member();
        }
        if let Some((msgid, sig)) = &signed {
            if !verify_signed(gid, &sender, msgid, sig, &text) {
                // The relaying member forwarded a forgery (or forged it).
                return self.bad_signature(from);
            }
        }
        let new_id = self.new_msg_id();
        let (window, max) = (self.cfg.settle_window, self.cfg.max_tracked_messages);
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        let n = g.n_others();
        let c = Copy {
            sender: &sender,
            text: &text,
            msgid: signed.map(|s| s.0),
            signed: signed.is_some(),
            sync: None,
        };
        let outcome = g.engine.claim(c, from, new_id, now, window, max, n);
        self.apply_outcome(gid, outcome, now);
    }

    /// A signature that does not verify: the copy is a forgery; dropped and reported.
    pub(crate) fn bad_signature(&mut self, from: &OnionId) {
        self.stats.bad_signatures += 1;
        self.event(Event::Misbehaviour {
            id: Some(from.clone()),
            what: "forged signature on a group message",
        });
    }

    /// A shown message's trust changed: persist (with who vouches) and tell.
    pub(crate) fn trust_changed(&mut self, gid: &GroupId, id: MsgId, trust: Trust) {
        let claimants: Vec<OnionId> = self
            .groups
            .get(gid)
            .and_then(|g| g.engine.get(id))
            .map(|s| s.claimants.iter().cloned().collect())
            .unwrap_or_default();
        self.persist(Record::GroupTrust {
            id,
            trust,
            claimants: claimants.clone(),
        });
        self.event(Event::GroupTrust {
            gid: gid.clone(),
            id,
            trust,
            claimants,
        });
    }

    /// Turns an engine outcome into events and records.
    pub(crate) fn apply_outcome(&mut self, gid: &GroupId, outcome: Outcome, now: Timestamp) {
        match outcome {
            Outcome::Nothing => {}
            Outcome::Show(id, trust) => self.show(gid, id, trust, now),
            Outcome::Update(id, trust) => self.trust_changed(gid, id, trust),
        }
    }

    fn show(&mut self, gid: &GroupId, id: MsgId, trust: Trust, _now: Timestamp) {
        let Some(s) = self.groups.get(gid).and_then(|g| g.engine.get(id)).cloned() else {
            return;
        };
        if !self.charge_group(gid, s.text.len()) {
            return; // a group from a stranger over its stored-bytes quota (quota.rs)
        }
        self.persist(Record::GroupMessage {
            gid: gid.clone(),
            id,
            sender: s.sender.clone(),
            text: s.text.clone(),
            at: s.sync.map_or(s.first_seen, |m| m.time.min(s.first_seen)),
            trust,
            sync: s.sync,
        });
        if !s.claimants.is_empty() {
            let claimants: Vec<OnionId> = s.claimants.iter().cloned().collect();
            self.persist(Record::GroupTrust {
                id,
                trust,
                claimants,
            });
        }
        self.event(Event::GroupMessage {
            gid: gid.clone(),
            id,
            sender: s.sender,
            text: s.text,
            at: s.sync.map_or(s.first_seen, |m| m.time.min(s.first_seen)),
            trust,
        });
    }

    // ----- membership helpers -----

    fn add_member(&mut self, gid: &GroupId, id: &OnionId, now: Timestamp) {
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        if *id == self.cfg.own_id
            || g.members.len() >= self.cfg.max_group_members
            || !g.members.insert(id.clone())
        {
            return;
        }
        g.checks.remove(id);
        let joined = g.state == GroupState::Joined;
        if joined {
            self.persist(Record::GroupMember {
                gid: gid.clone(),
                id: id.clone(),
                member: true,
            });
        }
        self.event(Event::GroupMember {
            gid: gid.clone(),
            id: id.clone(),
            change: MemberChange::Joined,
        });
        self.pin(id, now);
    }

    /// During our join: take the inviter's word, confirm with the member when reachable.
    fn add_member_unverified(&mut self, gid: &GroupId, id: &OnionId, now: Timestamp) {
        if self
            .buddies
            .get(id)
            .is_some_and(|b| b.kind == BuddyKind::Blocked)
        {
            return;
        }
        self.add_member(gid, id, now);
        self.start_check(gid, id, None, true, now);
    }

    fn remove_member(&mut self, gid: &GroupId, id: &OnionId, now: Timestamp) {
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        if !g.members.remove(id) {
            return;
        }
        self.persist(Record::GroupMember {
            gid: gid.clone(),
            id: id.clone(),
            member: false,
        });
        self.event(Event::GroupMember {
            gid: gid.clone(),
            id: id.clone(),
            change: MemberChange::Left { reason: None },
        });
        self.unpin_if_unused(id, now);
    }

    /// Asks `id` whether it is in the group (now if it is online, else when it comes online).
    fn start_check(
        &mut self,
        gid: &GroupId,
        id: &OnionId,
        reporter: Option<OnionId>,
        already_member: bool,
        now: Timestamp,
    ) {
        if *id == self.cfg.own_id
            || self
                .buddies
                .get(id)
                .is_some_and(|b| b.kind == BuddyKind::Blocked)
        {
            return;
        }
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        if g.checks.contains_key(id) || g.checks.len() >= self.cfg.max_group_members {
            return;
        }
        g.checks.insert(
            id.clone(),
            Check {
                asked: None,
                created: now,
                reporter,
                already_member,
            },
        );
        self.pin(id, now);
        self.ask_pending_checks(id, now);
    }

    fn ask_pending_checks(&mut self, id: &OnionId, now: Timestamp) {
        let Some(out) = self.online_out(id) else {
            return;
        };
        let mut ask = vec![];
        for (gid, g) in self.groups.iter_mut() {
            if let Some(c) = g.checks.get_mut(id) {
                if c.asked.is_none() {
                    c.asked = Some(now);
                    ask.push(gid.clone());
                }
            }
        }
        for gid in ask {
            self.send(out, &Packet::GroupIsParticipating { gid });
        }
    }

    pub(crate) fn send_participants(&mut self, gid: &GroupId, to: &OnionId) {
        let Some(g) = self.groups.get(gid) else {
            return;
        };
        let ids: Vec<OnionId> = g.members.iter().filter(|m| *m != to).cloned().collect();
        if let Some(out) = self.online_out(to) {
            self.send(
                out,
                &Packet::GroupParticipants {
                    gid: gid.clone(),
                    ids,
                },
            );
        }
    }

    /// Keeps a connection to a group member even if it is not on our buddy list.
    fn pin(&mut self, id: &OnionId, now: Timestamp) {
        if *id == self.cfg.own_id {
            return;
        }
        if !self.buddies.contains_key(id) {
            if !self.room_for_member_buddy() {
                return;
            }
            self.buddies
                .insert(id.clone(), crate::state::Buddy::new(BuddyKind::Temporary));
        }
        let Some(b) = self.buddies.get_mut(id) else {
            return;
        };
        if b.kind == BuddyKind::Blocked {
            return;
        }
        if !b.pinned {
            b.pinned = true;
            b.last_seen = Some(b.last_seen.unwrap_or(now));
        }
        if self.started {
            // Members we do not know are dialled at a bounded rate (quota.rs).
            self.want_member_connection(id, now);
        }
    }

    fn unpin_if_unused(&mut self, id: &OnionId, now: Timestamp) {
        let used = self
            .groups
            .values()
            .any(|g| g.active() && (g.members.contains(id) || g.checks.contains_key(id)));
        if used {
            return;
        }
        let Some(b) = self.buddies.get_mut(id) else {
            return;
        };
        // Keep a running session: a `groupchat_leave` we just queued on it must reach the
        // peer before the connections close. The buddy goes when its session ends.
        b.pinned = false;
        let _ = now;
    }

    // ----- sending with the outbox -----

    /// Whether we never heard what a member supports.
    fn capabilities_unknown(&self, id: &OnionId) -> bool {
        self.buddies.get(id).is_none_or(|b| b.supports.is_empty())
    }

    /// Our outgoing connection to a buddy that is online (first status seen).
    pub(crate) fn online_out(&self, id: &OnionId) -> Option<crate::types::ConnId> {
        let b = self.buddies.get(id)?;
        if !b.online {
            return None;
        }
        self.ready_out(id)
    }

    /// Sends a group packet to a member now, or queues it in the member's outbox.
    pub(crate) fn group_send(
        &mut self,
        gid: &GroupId,
        to: &OnionId,
        p: Packet,
        own: Option<MsgId>,
        now: Timestamp,
    ) {
        if let Some(out) = self.online_out(to) {
            self.send(out, &p);
            if let Some(id) = own {
                self.mark_written(gid, id, to);
            }
            return;
        }
        let queued = self.outbox.iter().filter(|e| e.to == *to).count();
        if queued >= self.cfg.max_outbox_per_member {
            if let Some(pos) = self.outbox.iter().position(|e| e.to == *to) {
                let old = self.outbox.remove(pos);
                self.persist(Record::OutboxRemove { id: old.id });
                self.event(Event::OutboxDropped {
                    gid: old.gid,
                    to: old.to,
                    own: old.own,
                });
            }
        }
        let entry = OutboxEntry {
            id: self.new_msg_id(),
            to: to.clone(),
            gid: gid.clone(),
            line: p.encode(),
            expires: now + self.cfg.relay_lifetime,
            own,
        };
        // A global cap too, so that members who never come back (or a hostile member with many
        // fake ones) cannot make the outbox grow without bound: the oldest entries go first.
        let mut bytes: usize = self.outbox.iter().map(|e| e.line.len()).sum();
        while bytes + entry.line.len() > self.cfg.max_outbox_bytes && !self.outbox.is_empty() {
            let old = self.outbox.remove(0);
            bytes -= old.line.len();
            self.persist(Record::OutboxRemove { id: old.id });
            self.event(Event::OutboxDropped {
                gid: old.gid,
                to: old.to,
                own: old.own,
            });
        }
        self.persist(Record::OutboxAdd(entry.clone()));
        self.outbox.push(entry);
        self.pin(to, now);
    }

    fn mark_written(&mut self, gid: &GroupId, id: MsgId, to: &OnionId) {
        if let Some(m) = self.groups.get_mut(gid).and_then(|g| g.own.get_mut(&id)) {
            m.written.insert(to.clone());
        }
    }

    /// Records how far our message got: `delivered` counts only members known to hold it
    /// (acknowledged); being written to a connection makes it `sent`, never `delivered`.
    fn report_delivery(&mut self, gid: &GroupId, id: MsgId) {
        let Some(m) = self.groups.get(gid).and_then(|g| g.own.get(&id)) else {
            return;
        };
        let (delivered, of) = (m.delivered, m.of);
        let sent = of == 0 || !m.written.is_empty();
        self.persist(Record::GroupDelivery {
            id,
            delivered,
            of,
            sent,
        });
        self.event(Event::GroupDelivery {
            gid: gid.clone(),
            id,
            delivered,
            of,
        });
    }

    /// Acknowledgements raised the count of members holding our message.
    pub(crate) fn own_delivered(&mut self, gid: &GroupId, id: MsgId, delivered: u32) {
        if let Some(m) = self.groups.get_mut(gid).and_then(|g| g.own.get_mut(&id)) {
            m.delivered = m.delivered.max(delivered);
        }
    }

    /// A buddy came online: deliver its outbox, re-check member lists, ask pending questions.
    pub(crate) fn on_buddy_online(&mut self, id: &OnionId, now: Timestamp) {
        let Some(out) = self.online_out(id) else {
            return;
        };
        let (mine, rest): (Vec<OutboxEntry>, Vec<OutboxEntry>) = std::mem::take(&mut self.outbox)
            .into_iter()
            .partition(|e| e.to == *id);
        self.outbox = rest;
        let mut touched = BTreeSet::new();
        let sync_peer = self.is_sync_peer(id);
        for e in mine {
            self.persist(Record::OutboxRemove { id: e.id });
            if sync_peer && is_message_line(&e.line) {
                // It speaks torchat_sync (now): it pulls what it lacks, with sequence numbers.
                continue;
            }
            if e.expires <= now {
                self.event(Event::OutboxDropped {
                    gid: e.gid,
                    to: e.to,
                    own: e.own,
                });
                continue;
            }
            self.out_raw(out, e.line);
            if let Some(own) = e.own {
                self.mark_written(&e.gid, own, id);
                touched.insert((e.gid.clone(), own));
            }
        }
        for (gid, own) in touched {
            self.report_delivery(&gid, own);
        }
        self.sync_on_online(id, now);
        let shared: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.state == GroupState::Joined && g.members.contains(id))
            .map(|(k, _)| k.clone())
            .collect();
        for gid in shared {
            self.send_participants(&gid, id);
        }
        self.ask_pending_checks(id, now);
    }

    fn out_raw(&mut self, conn: crate::types::ConnId, line: Vec<u8>) {
        match Packet::decode(line.strip_suffix(b"\n").unwrap_or(&line)) {
            Ok(p) => self.send(conn, &p),
            Err(_) => self.stats.bad_lines += 1,
        }
    }

    // ----- timers -----

    pub(crate) fn group_timeout(&self) -> Option<Timestamp> {
        let mut t: Option<Timestamp> = None;
        let mut at = |x: Timestamp| t = Some(t.map_or(x, |t| t.min(x)));
        for g in self.groups.values() {
            if let Some(d) = g.engine.next_deadline() {
                at(d);
            }
            for c in g.checks.values() {
                at(c.asked.unwrap_or(c.created) + self.cfg.verify_timeout);
            }
        }
        if let Some(e) = self.outbox.iter().map(|e| e.expires).min() {
            at(e);
        }
        if let Some(e) = self.sync_deadline() {
            at(e);
        }
        if let Some(e) = self.direct_sync_deadline() {
            at(e);
        }
        t
    }

    pub(crate) fn handle_group_timeout(&mut self, now: Timestamp) {
        self.handle_sync_timeout(now);
        self.handle_direct_sync_timeout(now);
        let gids: Vec<GroupId> = self.groups.keys().cloned().collect();
        for gid in gids {
            // Settle windows that ended.
            let shown = {
                let buddies = &self.buddies;
                let conns = &self.conns;
                let Some(g) = self.groups.get_mut(&gid) else {
                    continue;
                };
                let n = g.n_others();
                g.engine.expire(now, n, |sender, since| {
                    // Unconfirmed: the speaker had an authenticated session with us from
                    // before the first claim until now, and still did not send it to us.
                    buddies
                        .get(sender)
                        .and_then(|b| b.inc)
                        .and_then(|c| conns.get(&c))
                        .is_some_and(|c| c.authenticated && c.authenticated_at <= since)
                })
            };
            for (id, trust) in shown {
                self.show(&gid, id, trust, now);
            }
            // Membership questions nobody answered.
            let verify = self.cfg.verify_timeout;
            let Some(g) = self.groups.get_mut(&gid) else {
                continue;
            };
            let expired: Vec<(OnionId, Check)> = g
                .checks
                .iter()
                .filter(|(_, c)| c.asked.unwrap_or(c.created) + verify <= now)
                .map(|(k, c)| (k.clone(), c.clone()))
                .collect();
            for (id, c) in expired {
                if let Some(g) = self.groups.get_mut(&gid) {
                    g.checks.remove(&id);
                }
                if let (false, Some(peer)) = (c.already_member, c.reporter) {
                    self.event(Event::GroupDivergence {
                        gid: gid.clone(),
                        member: id.clone(),
                        peer,
                    });
                }
                self.unpin_if_unused(&id, now);
            }
        }
        // Outbox entries past their lifetime.
        let (expired, keep): (Vec<OutboxEntry>, Vec<OutboxEntry>) =
            std::mem::take(&mut self.outbox)
                .into_iter()
                .partition(|e| e.expires <= now);
        self.outbox = keep;
        for e in expired {
            self.persist(Record::OutboxRemove { id: e.id });
            self.event(Event::OutboxDropped {
                gid: e.gid,
                to: e.to,
                own: e.own,
            });
        }
    }

    // ----- misc -----

    fn persist_group(&mut self, gid: &GroupId) {
        let Some(g) = self.groups.get(gid) else {
            return;
        };
        let r = Record::Group {
            gid: gid.clone(),
            state: g.state,
            modes: g.modes.clone(),
            inviter: g.inviter.clone(),
        };
        self.persist(r);
    }

    /// A random UUID v4, as ruby-torchat makes group ids.
    fn new_gid(&mut self) -> GroupId {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        GroupId::uuid_v4(b)
    }
}

/// Whether a queued line is a group message or echo (what `torchat_sync` replaces).
fn is_message_line(line: &[u8]) -> bool {
    [
        &b"groupchat_message "[..],
        b"groupchat_echoed_message ",
        b"groupchat_signed_message ",
        b"groupchat_signed_echo ",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}
