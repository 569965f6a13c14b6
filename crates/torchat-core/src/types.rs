//! Values that cross the core's boundary: outputs, events, records to persist, ids.

use std::fmt;

use torchat_wire::{GroupId, OnionId, SeqSet, Status};

use crate::time::Timestamp;

/// A connection handle. The core allocates every id: for outgoing connections in
/// [`Output::Connect`], for incoming ones in [`crate::Node::accept`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Why an outgoing connection could not be established, as far as the transport can tell.
/// It decides how soon the core tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectError {
    /// The peer's side answered and refused (nothing listens on its TorChat port: its
    /// program is down or restarting). Retried soon.
    Refused,
    /// The peer's onion service cannot be reached now (no descriptor, introduction or
    /// rendezvous failed, host unreachable): it is probably offline.
    Unreachable,
    /// The connection attempt took too long.
    TimedOut,
    /// Anything else (local errors, a transport that is not ready).
    Other,
}

/// A message id: 16 bytes, unique for every message we create. Local: it names a message in
/// our store and our API, never on the wire (signed group messages carry their own random
/// `msgid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId(pub [u8; 16]);

impl MsgId {
    /// An id that sorts by creation: 48 bits of `epoch_ms` (when the node started), 48 bits
    /// of `count` (ids made since), then 32 bits of `random`. Ids made one after the other are
    /// neighbours in the store's index, so storing a burst of messages touches a few index
    /// pages instead of one random page per message.
    pub fn ordered(epoch_ms: u64, count: u64, random: [u8; 16]) -> MsgId {
        let mut b = random;
        b[..6].copy_from_slice(&epoch_ms.to_be_bytes()[2..]);
        b[6..12].copy_from_slice(&count.to_be_bytes()[2..]);
        MsgId(b)
    }

    /// Lower-case hex, 32 characters.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        s.push_str(hex32(&self.0).as_str());
        s
    }

    /// Parses 32 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let hex = std::str::from_utf8(&b[2 * i..2 * i + 2]).ok()?;
            *o = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(MsgId(out))
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(hex32(&self.0).as_str())
    }
}

/// 16 bytes as 32 lower-case hex digits, on the stack (ids are formatted for every message).
struct Hex32([u8; 32]);

impl Hex32 {
    fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn hex32(b: &[u8; 16]) -> Hex32 {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, x) in b.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(x >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(x & 15)];
    }
    Hex32(out)
}

/// Which list a buddy is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuddyKind {
    /// On our buddy list: we keep connecting to it and send `add_me`.
    Permanent,
    /// Known for this session only (it pinged us, or shares a group with us); never `add_me`.
    Temporary,
    /// Refused at ping time; never connected to.
    Blocked,
}

/// A buddy's connection state as a person would name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Presence {
    /// No connection.
    Offline,
    /// Our outgoing connection is being set up.
    Connecting,
    /// Connected, handshake in progress (no `status` received yet).
    Handshake,
    /// Authenticated and its first `status` received.
    Online(Status),
}

/// Delivery state of a message we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Stored, waiting for the buddy to come online.
    Queued,
    /// Written to the buddy's connection (and, with `torchat_sync`, not acknowledged yet).
    Sent,
    /// Acknowledged by the buddy: stored there (extension `torchat_sync`).
    Delivered,
}

/// What the extension `torchat_sync` adds to a group message: the speaker's per-group
/// sequence number, its time, and its signature when it has a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncMeta {
    /// The speaker's sequence number in the group (from 1, never reused).
    pub seq: u64,
    /// When the speaker said it.
    pub time: Timestamp,
    /// The speaker's ed25519 signature, when its id is a v3 id of its key.
    pub sig: Option<[u8; 64]>,
}

/// A full copy of a group message with its sync data, as kept in storage and served to
/// members who lack it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyncCopy {
    /// The speaker.
    pub speaker: OnionId,
    /// Sequence number, time and signature.
    pub meta: SyncMeta,
    /// Text.
    pub text: Vec<u8>,
}

/// A request to the shell to read stored group messages (see [`Output::Load`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadRequest {
    /// Hand it back to [`crate::Node::handle_loaded`] with the copies.
    pub token: u64,
    /// The group.
    pub gid: GroupId,
    /// The speaker.
    pub speaker: OnionId,
    /// First sequence number.
    pub from: u64,
    /// Last sequence number (inclusive).
    pub to: u64,
}

/// What a buddy told us about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// From `client`.
    pub client: Option<Vec<u8>>,
    /// From `version`.
    pub version: Option<Vec<u8>>,
    /// From `profile_name`.
    pub profile_name: Option<Vec<u8>>,
    /// From `profile_text`.
    pub profile_text: Option<Vec<u8>>,
    /// From `supports`.
    pub supports: Vec<String>,
}

/// Something the application (UI, API, logs) should know.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A buddy's presence changed.
    Presence {
        /// The buddy.
        id: OnionId,
        /// Its new state.
        presence: Presence,
    },
    /// A buddy's client, version, profile or capabilities changed.
    PeerInfo {
        /// The buddy.
        id: OnionId,
        /// Everything known now.
        info: PeerInfo,
    },
    /// A 1:1 message arrived.
    MessageReceived {
        /// Local id given to it.
        id: MsgId,
        /// Sender.
        from: OnionId,
        /// Text as received (UTF-8 by convention).
        text: Vec<u8>,
        /// When it arrived.
        at: Timestamp,
    },
    /// A message we sent changed delivery state.
    Delivery {
        /// The message.
        id: MsgId,
        /// Recipient.
        to: OnionId,
        /// New state.
        state: Delivery,
    },
    /// A buddy list entry was created, changed kind, or was removed (`None`).
    BuddyList {
        /// The buddy.
        id: OnionId,
        /// Its kind now, or `None` when removed.
        kind: Option<BuddyKind>,
    },
    /// A buddy sent `add_me`: it has us on its list (and we put it on ours).
    AddedUs {
        /// The buddy.
        id: OnionId,
    },
    /// A buddy sent `remove_me`: it removed us; we removed it too and disconnected.
    RemovedUs {
        /// The buddy.
        id: OnionId,
    },
    /// A buddy offers a file: accept it with [`crate::Node::accept_file`] or decline it with
    /// [`crate::Node::cancel_file`].
    FileOffer {
        /// The transfer.
        file: crate::file::FileId,
        /// The buddy.
        from: OnionId,
        /// The offered file name (untrusted: any bytes, any length up to the cap).
        name: Vec<u8>,
        /// Announced size.
        size: u64,
    },
    /// An offer was refused without asking (too big, or from a client that cannot send files).
    FileRefused {
        /// The buddy.
        from: OnionId,
        /// The offered file name (untrusted).
        name: Vec<u8>,
        /// Announced size.
        size: u64,
        /// Why.
        reason: crate::file::FileRefusal,
    },
    /// A transfer changed state.
    FileState {
        /// The transfer.
        file: crate::file::FileId,
        /// Its state now.
        state: crate::file::FileState,
    },
    /// A transfer moved (at most every `progress_interval`, and at the end).
    FileProgress {
        /// The transfer.
        file: crate::file::FileId,
        /// Bytes confirmed (sending) or written (receiving).
        done: u64,
        /// Size.
        size: u64,
        /// Recent rate, bytes per second.
        rate: u64,
        /// Seconds left at that rate.
        eta_secs: Option<u64>,
    },
    /// Someone invited us to a group.
    GroupInvite {
        /// The group.
        gid: GroupId,
        /// Who invited us.
        from: OnionId,
        /// Modes of the invite.
        modes: Vec<String>,
    },
    /// Our state in a group changed.
    GroupState {
        /// The group.
        gid: GroupId,
        /// New state.
        state: GroupState,
    },
    /// A group's member list changed.
    GroupMember {
        /// The group.
        gid: GroupId,
        /// The member.
        id: OnionId,
        /// What happened.
        change: MemberChange,
    },
    /// A group message to show (exactly once per message).
    GroupMessage {
        /// The group.
        gid: GroupId,
        /// Local id of the message.
        id: MsgId,
        /// The speaker.
        sender: OnionId,
        /// Text.
        text: Vec<u8>,
        /// When it arrived (for relayed messages: the first claim).
        at: Timestamp,
        /// Trust state at display time.
        trust: Trust,
    },
    /// The trust state of a shown group message changed (more claims, a late direct copy).
    GroupTrust {
        /// The group.
        gid: GroupId,
        /// The message.
        id: MsgId,
        /// New trust state.
        trust: Trust,
        /// Who vouched for it so far.
        claimants: Vec<OnionId>,
    },
    /// How many members our own group message has reached.
    GroupDelivery {
        /// The group.
        gid: GroupId,
        /// Our message.
        id: MsgId,
        /// Members it was written to so far.
        delivered: u32,
        /// Members other than us when it was sent.
        of: u32,
    },
    /// A queued group packet for a member was given up (expired, or the outbox overflowed).
    OutboxDropped {
        /// The group.
        gid: GroupId,
        /// The member that will not get it.
        to: OnionId,
        /// Our own message that was affected, if it was one.
        own: Option<MsgId>,
    },
    /// Member lists disagree and we could not settle it: `peer` lists `member`, and `member`
    /// could not confirm it is in the group (or denied it).
    GroupDivergence {
        /// The group.
        gid: GroupId,
        /// The disputed member.
        member: OnionId,
        /// The member whose list includes it.
        peer: OnionId,
    },
    /// A stranger's contact request was made or changed (it sent `add_me`, a message, or
    /// messages were dropped over the caps). Answer with [`crate::Node::accept_request`],
    /// [`crate::Node::ignore_request`] or [`crate::Node::block`].
    ContactRequest {
        /// The stranger.
        id: OnionId,
        /// It sent `add_me`.
        added_me: bool,
        /// Messages held.
        messages: usize,
        /// Messages dropped so far.
        dropped: u64,
    },
    /// A stranger's message, held in its contact request (not in a conversation).
    RequestMessage {
        /// The stranger.
        from: OnionId,
        /// Local id (kept if the request is accepted).
        id: MsgId,
        /// Text as received (untrusted).
        text: Vec<u8>,
        /// When it arrived.
        at: Timestamp,
    },
    /// A contact request is over.
    RequestClosed {
        /// The stranger.
        id: OnionId,
        /// How.
        outcome: crate::requests::RequestOutcome,
    },
    /// A quota was reached: what is over it is dropped until the condition ends.
    QuotaReached {
        /// The group concerned, if any.
        gid: Option<GroupId>,
        /// The peer concerned, if any.
        id: Option<OnionId>,
        /// Which quota.
        what: Quota,
    },
    /// A peer broke a protocol rule; counted, reacted to as documented.
    Misbehaviour {
        /// The peer, if known.
        id: Option<OnionId>,
        /// What it did.
        what: &'static str,
    },
}

/// A record the shell must persist before acting on later outputs that depend on it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Record {
    /// A buddy list entry was created or changed.
    Buddy {
        /// The buddy.
        id: OnionId,
        /// Its kind.
        kind: BuddyKind,
        /// The alias we gave it.
        alias: Option<String>,
    },
    /// A buddy list entry was removed.
    BuddyRemoved {
        /// The buddy.
        id: OnionId,
    },
    /// A 1:1 message we received.
    MessageIn {
        /// Local id.
        id: MsgId,
        /// Sender.
        from: OnionId,
        /// Text.
        text: Vec<u8>,
        /// Arrival time.
        at: Timestamp,
    },
    /// A 1:1 message the user wrote (persisted before anything is sent).
    MessageOut {
        /// Its id.
        id: MsgId,
        /// Recipient.
        to: OnionId,
        /// Text.
        text: Vec<u8>,
        /// When the user wrote it.
        at: Timestamp,
        /// State at the time of the record.
        state: Delivery,
    },
    /// A message we sent changed state.
    MessageDelivery {
        /// The message.
        id: MsgId,
        /// New state.
        state: Delivery,
    },
    /// A group was created, joined, left, or changed state.
    Group {
        /// The group.
        gid: GroupId,
        /// Our state in it.
        state: GroupState,
        /// Invite modes.
        modes: Vec<String>,
        /// Who invited us.
        inviter: Option<OnionId>,
    },
    /// A member was added to (`member: true`) or removed from a group.
    GroupMember {
        /// The group.
        gid: GroupId,
        /// The member.
        id: OnionId,
        /// Whether it is a member now.
        member: bool,
    },
    /// A group message was shown (ours or someone's).
    GroupMessage {
        /// The group.
        gid: GroupId,
        /// Local id.
        id: MsgId,
        /// The speaker.
        sender: OnionId,
        /// Text.
        text: Vec<u8>,
        /// Time shown.
        at: Timestamp,
        /// Trust state.
        trust: Trust,
        /// Sequence number, time and signature (extension `torchat_sync`).
        sync: Option<SyncMeta>,
    },
    /// A group message stored before (a plain copy) turned out to be this sync message.
    GroupMessageSync {
        /// The message (local id).
        id: MsgId,
        /// Its sync data.
        sync: SyncMeta,
    },
    /// The trust state of a group message changed; `claimants` are the members vouching.
    GroupTrust {
        /// The message.
        id: MsgId,
        /// New trust.
        trust: Trust,
        /// Members vouching for it.
        claimants: Vec<OnionId>,
    },
    /// Delivery progress of our own group message.
    GroupDelivery {
        /// The message.
        id: MsgId,
        /// Members known to hold it (acknowledged).
        delivered: u32,
        /// Members other than us.
        of: u32,
        /// Written to at least one member's connection (or nobody else is in the group).
        sent: bool,
    },
    /// The next sequence number we will use in a group; persisted before a message with the
    /// previous one leaves, so numbers are never reused.
    SyncSeq {
        /// The group.
        gid: GroupId,
        /// Next sequence number.
        next: u64,
    },
    /// What `member` holds of `speaker`'s messages in a group (ours when `member` is us).
    SyncVector {
        /// The group.
        gid: GroupId,
        /// Who holds them.
        member: OnionId,
        /// Whose messages.
        speaker: OnionId,
        /// Sequence numbers held.
        held: SeqSet,
    },
    /// The extensions a peer announced (kept so that we know them before it reconnects).
    PeerExtensions {
        /// The peer.
        id: OnionId,
        /// What it announced in `supports`.
        extensions: Vec<String>,
    },
    /// A group packet queued for an unreachable member.
    OutboxAdd(OutboxEntry),
    /// A queued group packet was delivered, expired or dropped.
    OutboxRemove {
        /// The entry.
        id: MsgId,
    },
    /// A contact request was made or changed (its messages are separate records).
    Request {
        /// The stranger.
        id: OnionId,
        /// It sent `add_me`.
        added_me: bool,
        /// When the request was made.
        first_at: Timestamp,
        /// When the stranger last sent something.
        last_at: Timestamp,
        /// Messages dropped so far.
        dropped: u64,
    },
    /// A message held in a contact request.
    RequestMessage {
        /// Local id.
        id: MsgId,
        /// The stranger.
        from: OnionId,
        /// Text.
        text: Vec<u8>,
        /// Arrival time.
        at: Timestamp,
    },
    /// A held message was dropped (over the caps).
    RequestMessageDropped {
        /// The message.
        id: MsgId,
    },
    /// A contact request and its held messages are gone (accepted — the messages are
    /// [`Record::MessageIn`] records now —, ignored, blocked or evicted).
    RequestRemoved {
        /// The stranger.
        id: OnionId,
    },
}

/// A quota named in [`Event::QuotaReached`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Quota {
    /// Stored bytes of a group whose inviter was a stranger
    /// ([`crate::GuardConfig::stranger_group_bytes`]).
    StrangerGroupBytes,
}

/// One thing for the shell to do, drained with [`crate::Node::poll_output`].
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Open an outgoing connection to `to` (port 11009 of its onion service) and report
    /// [`crate::Node::handle_connected`] or [`crate::Node::handle_closed`].
    Connect {
        /// Handle the core gave this connection.
        conn: ConnId,
        /// Destination.
        to: OnionId,
    },
    /// Write these bytes on the connection, in order.
    Transmit {
        /// Connection.
        conn: ConnId,
        /// Encoded lines.
        data: Vec<u8>,
    },
    /// Close the connection (after writing what was already queued on it). The core has
    /// already forgotten it; do not report its closing.
    Close {
        /// Connection.
        conn: ConnId,
    },
    /// Tell the application.
    Event(Event),
    /// Read or write a file for a transfer ([`crate::FileIo`]), in order with the other
    /// outputs.
    File(crate::file::FileIo),
    /// Persist.
    Persist(Record),
    /// Read the stored group messages of `speaker` with sequence numbers `from..=to` and hand
    /// them to [`crate::Node::handle_loaded`] (every request must be answered, possibly
    /// with nothing).
    Load(LoadRequest),
}

/// Why a user command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The id is not on the buddy list.
    #[error("not a buddy")]
    NotABuddy,
    /// The id is blocked.
    #[error("that id is blocked")]
    Blocked,
    /// That is our own id.
    #[error("that is our own id")]
    OwnId,
    /// The message is empty.
    #[error("empty message")]
    Empty,
    /// Too many messages are already waiting for this buddy.
    #[error("too many queued messages for this buddy")]
    QueueFull,
    /// Too many buddies or groups.
    #[error("limit reached")]
    TooMany,
    /// No such group.
    #[error("no such group")]
    NoSuchGroup,
    /// The group is not in a state that allows this.
    #[error("not possible in the group's current state")]
    GroupState,
    /// The buddy must be online for this.
    #[error("buddy is not online")]
    NotOnline,
    /// Already a member.
    #[error("already a member")]
    AlreadyMember,
    /// No such file transfer.
    #[error("no such file transfer")]
    NoSuchFile,
    /// The transfer is not in a state that allows this.
    #[error("not possible in the transfer's current state")]
    FileState,
    /// The buddy's client cannot do this (ruby-torchat cannot receive files).
    #[error("the buddy's client does not support this")]
    NotSupported,
    /// No pending contact request from that id.
    #[error("no contact request from that id")]
    NoSuchRequest,
}

/// Where we stand in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// Someone invited us; the user has not answered yet.
    Invited,
    /// The user accepted; the member lists are being exchanged with the inviter.
    Joining,
    /// A member.
    Joined,
    /// We left (or declined). Kept for history.
    Left,
}

/// How much a group message can be believed, as data every interface can render.
///
/// This is the one definition of the trust states and of their labels: the store, the
/// control API (with the `serde` feature: `{"kind": "signed", "k": 2, "n": 3}`), the
/// interfaces and the simulator all use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(tag = "kind", rename_all = "snake_case")
)]
pub enum Trust {
    /// We received it from the speaker itself. `confirmations` counts members who relayed it
    /// to us or whose digests show they hold it as well.
    Direct {
        /// Members who vouch for it too.
        confirmations: u32,
    },
    /// Only relayed copies: `k` distinct members vouch for it (they claim they received it
    /// directly from the speaker, or their digests show they hold it), out of `n` members
    /// other than the speaker. Shown `(k of n)`.
    Relayed {
        /// Distinct vouching members.
        k: u32,
        /// Members other than the speaker.
        n: u32,
    },
    /// Only relayed copies although the speaker was connected to us all along and never sent
    /// it to us (or says it never said it): possibly forged.
    Unconfirmed {
        /// Distinct vouching members.
        k: u32,
        /// Members other than the speaker.
        n: u32,
    },
    /// Only relayed copies, but one carried a valid signature of the speaker (extensions
    /// `torchat_signed`, `torchat_sync`): the text is proven authentic. `k` of `n` members
    /// vouch for it.
    Signed {
        /// Distinct vouching members.
        k: u32,
        /// Members other than the speaker.
        n: u32,
    },
    /// A message we wrote.
    Own,
}

impl Trust {
    /// The tag a line-based interface shows: `(Direct)`, `(8 of 10)`, `(Signed, 8 of 10)`,
    /// `(UNCONFIRMED 1 of 10)`, `(me)`.
    pub fn label(&self) -> String {
        match self {
            Trust::Direct { .. } => "(Direct)".to_owned(),
            Trust::Relayed { k, n } => format!("({k} of {n})"),
            Trust::Unconfirmed { k, n } => format!("(UNCONFIRMED {k} of {n})"),
            Trust::Signed { k, n } => format!("(Signed, {k} of {n})"),
            Trust::Own => "(me)".to_owned(),
        }
    }

    /// Reads a label back (as stored in history or printed). `(Direct)` gives
    /// `confirmations: 0` (a label does not carry them). `None` for anything else.
    pub fn parse_label(tag: &str) -> Option<Trust> {
        let inner = tag.trim().strip_prefix('(')?.strip_suffix(')')?.trim();
        let k_of_n = |s: &str| -> Option<(u32, u32)> {
            let (k, n) = s.trim().split_once(" of ")?;
            Some((k.trim().parse().ok()?, n.trim().parse().ok()?))
        };
        if inner == "Direct" {
            Some(Trust::Direct { confirmations: 0 })
        } else if inner == "me" {
            Some(Trust::Own)
        } else if let Some(rest) = inner.strip_prefix("Signed,") {
            k_of_n(rest).map(|(k, n)| Trust::Signed { k, n })
        } else if let Some(rest) = inner.strip_prefix("UNCONFIRMED") {
            k_of_n(rest).map(|(k, n)| Trust::Unconfirmed { k, n })
        } else {
            k_of_n(inner).map(|(k, n)| Trust::Relayed { k, n })
        }
    }

    /// Possibly forged.
    pub fn is_unconfirmed(&self) -> bool {
        matches!(self, Trust::Unconfirmed { .. })
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// A change in a group's member list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Became a member.
    Joined,
    /// Left, with the reason it gave.
    Left {
        /// The reason text, if any.
        reason: Option<Vec<u8>>,
    },
    /// An id we invited declined.
    Declined,
}

/// A group packet waiting for a member who is not reachable now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Unique id of the entry.
    pub id: MsgId,
    /// The member it is for.
    pub to: OnionId,
    /// The group.
    pub gid: GroupId,
    /// The encoded line (LF included).
    pub line: Vec<u8>,
    /// Dropped after this time.
    pub expires: Timestamp,
    /// Our own message this entry delivers, if it is one.
    pub own: Option<MsgId>,
}

/// A read-only view of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// Its id.
    pub gid: GroupId,
    /// Our state in it.
    pub state: GroupState,
    /// Invite modes (e.g. `noredundancy`).
    pub modes: Vec<String>,
    /// Members other than us.
    pub members: Vec<OnionId>,
    /// Who invited us, if someone did.
    pub inviter: Option<OnionId>,
    /// While invited: the members the inviter listed.
    pub proposed: Vec<OnionId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_labels_read_back() {
        let all = [
            Trust::Direct { confirmations: 0 },
            Trust::Relayed { k: 8, n: 10 },
            Trust::Unconfirmed { k: 1, n: 10 },
            Trust::Signed { k: 2, n: 3 },
            Trust::Own,
        ];
        let labels: Vec<String> = all.iter().map(Trust::to_string).collect();
        assert_eq!(
            labels,
            [
                "(Direct)",
                "(8 of 10)",
                "(UNCONFIRMED 1 of 10)",
                "(Signed, 2 of 3)",
                "(me)"
            ]
        );
        for t in all {
            assert_eq!(Trust::parse_label(&t.label()), Some(t));
        }
        assert_eq!(
            Trust::parse_label("(Direct)"),
            Some(Trust::Direct { confirmations: 0 })
        );
        for bad in [
            "",
            "Direct",
            "(weird)",
            "(1 of)",
            "(Signed, x of 3)",
            "(2 of 3",
        ] {
            assert_eq!(Trust::parse_label(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn message_ids_print_as_lower_case_hex_and_parse_back() {
        let id = MsgId([
            0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 0x10, 0x32, 0x54, 0x76, 0x98, 0xba,
            0xdc, 0xfe,
        ]);
        let hex = "00017f80abcdefff1032547698badcfe";
        assert_eq!(id.to_hex(), hex);
        assert_eq!(id.to_string(), hex);
        assert_eq!(MsgId::from_hex(hex), Some(id));
        assert_eq!(MsgId::from_hex(&hex.to_uppercase()), Some(id));
        assert_eq!(MsgId::from_hex(&hex[1..]), None);
    }

    #[test]
    fn ordered_ids_sort_by_start_then_count_and_keep_random_bits() {
        let r = [0xee; 16];
        let a = MsgId::ordered(1_700_000_000_000, 1, r);
        let b = MsgId::ordered(1_700_000_000_000, 2, [0; 16]);
        let c = MsgId::ordered(1_700_000_000_001, 0, r);
        assert!(a < b && b < c);
        assert_eq!(a.to_hex(), "018bcfe56800000000000001eeeeeeee");
    }
}
