//! Quotas and rate limits: what one peer (a buddy, a group member, a stranger) may cost us.
//!
//! Every packet an authenticated peer sends passes [`Node::screen`] first (one hook at the top
//! of the session dispatch). It enforces, per peer and with time passed in:
//!
//! - token buckets per class of packet (chat lines, control lines, file offers), tighter for
//!   strangers; over the limit a packet is dropped and counted ([`Stats::rate_limited`]);
//! - the contact-request inbox for strangers ([`crate::requests`]): their `add_me` and their
//!   messages are held, never stored as conversation, until the user answers;
//! - pending group invites per inviter and in total, with expiry, kept apart from the groups
//!   the user is in;
//! - participant lists longer than the group member cap are rejected;
//! - file offers from strangers are declined.
//!
//! It also paces the dialling of group members we do not know ([`Node::want_member_connection`])
//! and caps the bytes stored for a group whose inviter was a stranger.
//!
//! [`Stats::rate_limited`]: crate::Stats::rate_limited

use std::collections::BTreeMap;
use std::time::Duration;

use torchat_wire::{GroupId, OnionId, Packet};

use crate::node::Node;
use crate::time::Timestamp;
use crate::types::{BuddyKind, Event, GroupState};

/// A token bucket: up to `burst` at once, then one every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens available after a quiet period.
    pub burst: u32,
    /// One token comes back this often.
    pub every: Duration,
}

impl RateLimit {
    /// `burst` at once, then one every `every`.
    pub const fn new(burst: u32, every: Duration) -> Self {
        RateLimit { burst, every }
    }
}

/// Limits that keep what a peer can make us store, show or do bounded. Every default says why;
/// `docs/protocol.md` ("Strangers and limits") lists the reaction to each.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Chat lines (`message`, group messages and echoes, delayed messages) from a buddy or a
    /// member of a group we are in. A ceiling, not a throttle: 100 000 at once, then 100 000 a
    /// second, about what a node can store, so a buddy's or a bot's burst is never cut (the
    /// legacy protocol cannot say "slow down", and a dropped line would be lost for good); it
    /// only bounds the work one peer can make. Strangers have their own, tight limit.
    pub chat_rate: RateLimit,
    /// Chat lines from a stranger (held in the request inbox, which has its own caps): a few
    /// lines to introduce oneself, then one a second.
    pub stranger_chat_rate: RateLimit,
    /// Every other line (status, profile, `add_me`, group membership packets, …) from anyone:
    /// 1000 at once (a member's group outbox after a reconnect), then 20 a second (keepalives
    /// come every 100 s).
    pub control_rate: RateLimit,
    /// `filename` (file offers) from anyone: 16 at once, then one every 2 s. At most 8 offers
    /// per buddy wait for the user anyway; more only make refusal events.
    pub offer_rate: RateLimit,
    /// Strangers with a pending contact request. At the cap the oldest request is dropped
    /// (counted in [`crate::Stats::requests_evicted`]).
    pub max_requests: usize,
    /// Messages held per stranger; the oldest go first (counted in the request's `dropped`).
    pub max_request_messages: usize,
    /// Bytes of messages held per stranger; a single longer message is dropped (counted).
    pub max_request_bytes: usize,
    /// Bytes of messages held for all strangers together; the oldest message goes first.
    pub max_request_bytes_total: usize,
    /// Group invites waiting for the user, per inviter; more are ignored. Real clients invite
    /// to one group at a time.
    pub max_invites_per_inviter: usize,
    /// Group invites waiting for the user, in total. They never count toward
    /// [`crate::Config::max_groups`], so a flood of invites cannot stop `group_create`. At the
    /// cap a new invite replaces the oldest one from someone not on our buddy list.
    pub max_invites: usize,
    /// An invite the user did not answer within this long is dropped (the inviter can invite
    /// again).
    pub invite_lifetime: Duration,
    /// Bytes of group messages stored for one group whose inviter was not on our buddy list
    /// when we accepted; past it, messages of that group are shown no more (one
    /// [`Event::QuotaReached`]) until the node restarts.
    pub stranger_group_bytes: u64,
    /// Group members that are not our buddies (pinned temporary buddies); strangers who pinged
    /// us have their own cap ([`crate::Config::max_temporary_buddies`]).
    pub max_member_buddies: usize,
    /// Dialling group members who are not our buddies: `burst` at once, then one every
    /// `every` (a long member list does not make us open hundreds of circuits at once).
    pub member_dial_rate: RateLimit,
    /// A delayed message (extension `torchat_delayed`) dated further back than this is shown
    /// with its arrival time instead.
    pub max_delay: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            chat_rate: RateLimit::new(100_000, Duration::from_micros(10)),
            stranger_chat_rate: RateLimit::new(10, Duration::from_secs(1)),
            control_rate: RateLimit::new(1000, Duration::from_millis(50)),
            offer_rate: RateLimit::new(16, Duration::from_secs(2)),
            max_requests: 64,
            max_request_messages: 32,
            max_request_bytes: 64 * 1024,
            max_request_bytes_total: 1024 * 1024,
            max_invites_per_inviter: 4,
            max_invites: 64,
            invite_lifetime: Duration::from_secs(7 * 24 * 3600),
            stranger_group_bytes: 64 * 1024 * 1024,
            max_member_buddies: 1024,
            member_dial_rate: RateLimit::new(8, Duration::from_secs(1)),
            max_delay: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// A token bucket in its "theoretical arrival time" form (GCRA): no timer, one timestamp.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bucket {
    tat: Option<Timestamp>,
}

impl Bucket {
    /// Takes a token at `now` if one is there.
    pub fn take(&mut self, lim: RateLimit, now: Timestamp) -> bool {
        let tau = lim.every * lim.burst.saturating_sub(1);
        let tat = self.tat.map_or(now, |t| t.max(now));
        if tat.since(now) > tau || lim.burst == 0 {
            return false;
        }
        self.tat = Some(tat + lim.every);
        true
    }

    /// Reserves the next token: the time it is available (`now` if one is there already).
    pub fn reserve(&mut self, lim: RateLimit, now: Timestamp) -> Timestamp {
        let tau = lim.every * lim.burst.saturating_sub(1);
        let tat = self.tat.map_or(now, |t| t.max(now));
        let at = (tat - tau).max(now);
        self.tat = Some(tat + lim.every);
        at
    }
}

/// Which bucket a packet draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Chat,
    Control,
    Offer,
    /// File data and its answers: paced by the transfer window, not by us.
    Free,
}

fn class(p: &Packet) -> Class {
    match p {
        Packet::Message(_)
        | Packet::GroupMessage { .. }
        | Packet::GroupSignedMessage { .. }
        | Packet::GroupEchoedMessage { .. }
        | Packet::GroupSignedEcho { .. }
        | Packet::GroupSyncMessage { .. }
        | Packet::SyncMessage { .. } => Class::Chat,
        Packet::Unknown { command, .. } if command == crate::requests::DELAYED_CMD => Class::Chat,
        Packet::Filename { .. } => Class::Offer,
        Packet::Filedata { .. }
        | Packet::FiledataOk { .. }
        | Packet::FiledataError { .. }
        | Packet::FileStopSending { .. }
        | Packet::FileStopReceiving { .. } => Class::Free,
        _ => Class::Control,
    }
}

/// One peer's buckets.
#[derive(Debug, Clone, Default)]
struct PeerRate {
    chat: Bucket,
    control: Bucket,
    offer: Bucket,
    /// Over a limit right now (one event per episode).
    limited: bool,
}

/// A group invite waiting for the user.
#[derive(Debug, Clone)]
struct Invite {
    from: OnionId,
    at: Timestamp,
}

/// The guard's state (a field of [`Node`]).
#[derive(Debug, Default)]
pub(crate) struct Guard {
    rates: BTreeMap<OnionId, PeerRate>,
    invites: BTreeMap<GroupId, Invite>,
    dials: Bucket,
    /// Bytes stored for groups whose inviter was a stranger (`None`: over the quota, told).
    group_bytes: BTreeMap<GroupId, Option<u64>>,
    pub requests: crate::requests::Inbox,
}

impl Node {
    /// A stranger: connected and authenticated, not on our list, not a member of a group we
    /// are in (a temporary buddy that is not pinned).
    pub(crate) fn is_stranger(&self, id: &OnionId) -> bool {
        self.buddies
            .get(id)
            .is_some_and(|b| b.kind == BuddyKind::Temporary && !b.pinned)
    }

    /// The hook at the top of the session dispatch: `None` when the packet was consumed here
    /// (dropped over a limit, held for a contact request, refused), else the packet to handle
    /// as usual.
    pub(crate) fn screen(&mut self, id: &OnionId, p: Packet, now: Timestamp) -> Option<Packet> {
        let stranger = self.is_stranger(id);
        if !self.take_token(id, class(&p), stranger, now) {
            if stranger && matches!(class(&p), Class::Chat) {
                self.request_dropped_message(id, now);
            }
            return None;
        }
        match p {
            Packet::Message(text) if stranger => {
                self.hold_message(id, text, now, now);
                None
            }
            Packet::Unknown { command, payload } if command == crate::requests::DELAYED_CMD => {
                self.on_delayed(id, payload.unwrap_or_default(), stranger, now);
                None
            }
            Packet::GroupInvite { gid, modes } => self
                .admit_invite(id, &gid, now)
                .then_some(Packet::GroupInvite { gid, modes }),
            Packet::GroupParticipants { gid, ids } if ids.len() > self.cfg.max_group_members => {
                self.stats.rejected_lists += 1;
                self.event(Event::Misbehaviour {
                    id: Some(id.clone()),
                    what: "participant list longer than the group member cap",
                });
                let _ = gid;
                None
            }
            Packet::Filename { id: wire_id, .. } if stranger => {
                // Accept the contact request first: a stranger's files are declined unasked.
                self.stats.stranger_offers += 1;
                if let Some(out) = self.ready_out(id) {
                    self.send(out, &Packet::FileStopSending { id: wire_id });
                }
                None
            }
            p => Some(p),
        }
    }

    /// Takes a token from `id`'s bucket for `class`; false (counted, one event per episode)
    /// when it is empty.
    fn take_token(&mut self, id: &OnionId, class: Class, stranger: bool, now: Timestamp) -> bool {
        let g = &self.cfg.guard;
        let lim = match class {
            Class::Free => return true,
            Class::Chat if stranger => g.stranger_chat_rate,
            Class::Chat => g.chat_rate,
            Class::Control => g.control_rate,
            Class::Offer => g.offer_rate,
        };
        if !self.guard.rates.contains_key(id) {
            // Bounded by the buddy table: forget peers we no longer know.
            let cap = self.buddies.len() + 64;
            if self.guard.rates.len() >= cap {
                let buddies = &self.buddies;
                self.guard.rates.retain(|k, _| buddies.contains_key(k));
            }
        }
        let r = self.guard.rates.entry(id.clone()).or_default();
        let bucket = match class {
            Class::Chat => &mut r.chat,
            Class::Offer => &mut r.offer,
            _ => &mut r.control,
        };
        if bucket.take(lim, now) {
            r.limited = false;
            return true;
        }
        self.stats.rate_limited += 1;
        if !std::mem::replace(&mut r.limited, true) {
            self.event(Event::Misbehaviour {
                id: Some(id.clone()),
                what: "over the rate limit: packets dropped",
            });
        }
        false
    }

    // ----- invites -----

    /// Whether an invite from `from` to `gid` may wait for the user (see
    /// [`GuardConfig::max_invites_per_inviter`] and [`GuardConfig::max_invites`]).
    fn admit_invite(&mut self, from: &OnionId, gid: &GroupId, now: Timestamp) -> bool {
        if self.groups.contains_key(gid) {
            return true; // a known group: the group layer ignores the repeat
        }
        self.expire_invites(now);
        let per = self
            .guard
            .invites
            .values()
            .filter(|i| i.from == *from)
            .count();
        if per >= self.cfg.guard.max_invites_per_inviter {
            self.stats.refused_invites += 1;
            self.event(Event::Misbehaviour {
                id: Some(from.clone()),
                what: "too many pending invites from one inviter",
            });
            return false;
        }
        if self.guard.invites.len() >= self.cfg.guard.max_invites {
            let permanent =
                |b: Option<&crate::state::Buddy>| b.is_some_and(|b| b.kind == BuddyKind::Permanent);
            // The oldest invite from someone not on our list goes first; a stranger cannot
            // push out an invite from a buddy.
            let victim = self
                .guard
                .invites
                .iter()
                .filter(|(_, i)| !permanent(self.buddies.get(&i.from)))
                .min_by_key(|(_, i)| i.at)
                .or_else(|| {
                    permanent(self.buddies.get(from))
                        .then(|| self.guard.invites.iter().min_by_key(|(_, i)| i.at))
                        .flatten()
                })
                .map(|(g, _)| g.clone());
            match victim {
                Some(v) => self.void_invite(&v),
                None => {
                    self.stats.refused_invites += 1;
                    return false;
                }
            }
        }
        self.guard.invites.insert(
            gid.clone(),
            Invite {
                from: from.clone(),
                at: now,
            },
        );
        true
    }

    /// Forgets invites that were answered, and drops those past their lifetime.
    fn expire_invites(&mut self, now: Timestamp) {
        let groups = &self.groups;
        self.guard.invites.retain(|gid, i| {
            groups.get(gid).is_some_and(|g| {
                g.state == GroupState::Invited && g.inviter.as_ref() == Some(&i.from)
            })
        });
        let life = self.cfg.guard.invite_lifetime;
        let old: Vec<GroupId> = self
            .guard
            .invites
            .iter()
            .filter(|(_, i)| i.at + life <= now)
            .map(|(g, _)| g.clone())
            .collect();
        for gid in old {
            self.void_invite(&gid);
        }
    }

    /// Drops a pending invite (as if the inviter had withdrawn it).
    fn void_invite(&mut self, gid: &GroupId) {
        self.guard.invites.remove(gid);
        if self
            .groups
            .get(gid)
            .is_some_and(|g| g.state == GroupState::Invited)
        {
            self.groups.remove(gid);
            self.stats.dropped_invites += 1;
            self.event(Event::GroupState {
                gid: gid.clone(),
                state: GroupState::Left,
            });
        }
    }

    /// Groups that count toward [`crate::Config::max_groups`]: every one but pending invites.
    pub(crate) fn groups_in_use(&self) -> usize {
        self.groups
            .values()
            .filter(|g| g.state != GroupState::Invited)
            .count()
    }

    // ----- timers -----

    /// The guard's next deadline (invite expiry).
    pub(crate) fn guard_timeout(&self) -> Option<Timestamp> {
        let life = self.cfg.guard.invite_lifetime;
        self.guard.invites.values().map(|i| i.at + life).min()
    }

    /// Does what is due (invite expiry).
    pub(crate) fn handle_guard_timeout(&mut self, now: Timestamp) {
        self.expire_invites(now);
    }

    // ----- dialling group members -----

    /// Wants a connection to a group member: at once for buddies, paced for members we do not
    /// know ([`GuardConfig::member_dial_rate`]), so a long member list does not open hundreds
    /// of circuits at once.
    pub(crate) fn want_member_connection(&mut self, id: &OnionId, now: Timestamp) {
        let Some(b) = self.buddies.get(id) else {
            return;
        };
        if b.kind == BuddyKind::Permanent {
            return self.want_connection(id, now);
        }
        if b.out.is_some() || b.next_connect.is_some() {
            return;
        }
        let at = self
            .guard
            .dials
            .reserve(self.cfg.guard.member_dial_rate, now);
        if at <= now {
            self.want_connection(id, now);
        } else if let Some(b) = self.buddies.get_mut(id) {
            b.next_connect = Some(at);
        }
    }

    /// Whether there is room for one more pinned temporary buddy (a group member we do not
    /// know).
    pub(crate) fn room_for_member_buddy(&self) -> bool {
        self.buddies
            .values()
            .filter(|b| b.kind == BuddyKind::Temporary && b.pinned)
            .count()
            < self.cfg.guard.max_member_buddies
    }

    /// Strangers who pinged us (temporary buddies not pinned by a group), for their cap.
    pub(crate) fn stranger_count(&self) -> usize {
        self.buddies
            .values()
            .filter(|b| b.kind == BuddyKind::Temporary && !b.pinned)
            .count()
    }

    // ----- stored bytes of groups from strangers -----

    /// Charges a group message about to be stored; false when the group came from a stranger
    /// and is over [`GuardConfig::stranger_group_bytes`] (the message is not shown; the user
    /// is told once).
    pub(crate) fn charge_group(&mut self, gid: &GroupId, len: usize) -> bool {
        let Some(g) = self.groups.get(gid) else {
            return true;
        };
        let from_stranger = g.inviter.as_ref().is_some_and(|i| {
            self.buddies
                .get(i)
                .is_none_or(|b| b.kind != BuddyKind::Permanent)
        });
        if !from_stranger {
            return true;
        }
        if self.guard.group_bytes.len() > self.groups.len() + 16 {
            let groups = &self.groups;
            self.guard.group_bytes.retain(|k, _| groups.contains_key(k));
        }
        let cap = self.cfg.guard.stranger_group_bytes;
        let slot = self.guard.group_bytes.entry(gid.clone()).or_insert(Some(0));
        let Some(used) = slot else {
            self.stats.quota_dropped += 1;
            return false;
        };
        let total = used.saturating_add(len as u64);
        if total > cap {
            *slot = None;
            self.stats.quota_dropped += 1;
            self.event(Event::QuotaReached {
                gid: Some(gid.clone()),
                id: None,
                what: crate::types::Quota::StrangerGroupBytes,
            });
            return false;
        }
        *used = total;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(1_000_000 + ms)
    }

    #[test]
    fn bucket_gives_burst_then_one_per_period() {
        let lim = RateLimit::new(3, Duration::from_millis(100));
        let mut b = Bucket::default();
        assert!(b.take(lim, t(0)));
        assert!(b.take(lim, t(0)));
        assert!(b.take(lim, t(0)));
        assert!(!b.take(lim, t(0)));
        assert!(!b.take(lim, t(99)));
        assert!(b.take(lim, t(100)));
        assert!(!b.take(lim, t(150)));
        // A long quiet period refills to the burst, no more.
        for _ in 0..3 {
            assert!(b.take(lim, t(10_000)));
        }
        assert!(!b.take(lim, t(10_000)));
    }

    #[test]
    fn reserve_spreads_slots() {
        let lim = RateLimit::new(2, Duration::from_secs(1));
        let mut b = Bucket::default();
        let slots: Vec<u64> = (0..5).map(|_| b.reserve(lim, t(0)).as_millis()).collect();
        let base = t(0).as_millis();
        assert_eq!(
            slots,
            vec![base, base, base + 1000, base + 2000, base + 3000]
        );
    }

    #[test]
    fn zero_burst_never_gives() {
        let mut b = Bucket::default();
        assert!(!b.take(RateLimit::new(0, Duration::from_secs(1)), t(0)));
    }
}
