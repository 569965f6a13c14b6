//! The plain records the store keeps.
//!
//! Timestamps are milliseconds since the Unix epoch as `u64`; the store accepts values up to
//! `i64::MAX` (SQLite's integer range) and rejects larger ones with [`Error::Invalid`].
//!
//! [`Error::Invalid`]: crate::Error::Invalid

use std::fmt;
use std::str::FromStr;

use torchat_wire::{GroupId, OnionId};

/// Well-known keys of the identity settings (see [`Store::put_setting`]).
///
/// [`Store::put_setting`]: crate::Store::put_setting
pub mod keys {
    /// The node's secret key bytes (the onion service key).
    pub const SECRET_KEY: &str = "secret_key";
    /// The node's own onion id (text).
    pub const OWN_ID: &str = "own_id";
    /// The profile name shown to buddies.
    pub const PROFILE_NAME: &str = "profile_name";
    /// The profile text shown to buddies.
    pub const PROFILE_TEXT: &str = "profile_text";
    /// The last status the user chose (`available`, `away`, `xa`).
    pub const STATUS: &str = "status";
}

/// The 16-byte id of a message, unique across the whole store. Printed as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MsgId(pub [u8; 16]);

impl MsgId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses 32 hex digits (either case); `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            out[i] = u8::try_from(hi * 16 + lo).ok()?;
        }
        Some(MsgId(out))
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // On the stack, without a formatting call per byte: ids are printed for every message
        // a history page returns.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, x) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(x >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(x & 15)];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MsgId({self})")
    }
}

impl FromStr for MsgId {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MsgId::from_hex(s).ok_or_else(|| crate::Error::Invalid(format!("bad message id {s:?}")))
    }
}

/// The local, store-assigned number of a message: increases with every new message, never
/// reused. Used for paging through [`Store::history`].
///
/// [`Store::history`]: crate::Store::history
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowId(pub u64);

/// What a buddy is to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuddyKind {
    /// On the buddy list.
    Permanent,
    /// Talked to us but not added (yet).
    Temporary,
    /// Blocked: connections are refused.
    Blocked,
}

/// A buddy and what we last heard about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buddy {
    /// Their onion id (the key).
    pub id: OnionId,
    /// Permanent, temporary or blocked.
    pub kind: BuddyKind,
    /// The name the user gave them.
    pub alias: Option<String>,
    /// The last `profile_name` they sent.
    pub profile_name: Option<Vec<u8>>,
    /// The last `profile_text` they sent.
    pub profile_text: Option<Vec<u8>>,
    /// The last `client` they sent.
    pub client: Option<Vec<u8>>,
    /// The last `version` they sent.
    pub version: Option<Vec<u8>>,
}

impl Buddy {
    /// A buddy of the given kind with nothing else known.
    pub fn new(id: OnionId, kind: BuddyKind) -> Self {
        Buddy {
            id,
            kind,
            alias: None,
            profile_name: None,
            profile_text: None,
            client: None,
            version: None,
        }
    }
}

/// Where we are in a group chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// Invited or joining, not yet a confirmed member.
    Joining,
    /// A member.
    Joined,
    /// We left (kept for the history).
    Left,
}

/// A group chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The group id (the key).
    pub gid: GroupId,
    /// The invite modes (e.g. `noredundancy`): non-empty tokens without whitespace.
    pub modes: Vec<String>,
    /// Who invited us; `None` for a group we created.
    pub invited_by: Option<OnionId>,
    /// Joining, joined or left.
    pub state: GroupState,
    /// When we created or were invited to it (ms).
    pub created_at: u64,
}

/// One member of a group (other than ourselves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The group.
    pub gid: GroupId,
    /// The member's onion id.
    pub id: OnionId,
    /// When we learnt of them (ms).
    pub added_at: u64,
}

/// A conversation: a 1:1 chat with a buddy or a group chat.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conversation {
    /// A 1:1 chat.
    Buddy(OnionId),
    /// A group chat.
    Group(GroupId),
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received.
    In,
    /// Sent by us.
    Out,
}

/// Delivery state of an outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Committed locally, not yet written to any connection.
    Queued,
    /// Written to at least one connection.
    Sent,
    /// Confirmed by this many recipients (1 for a 1:1 chat).
    Delivered(u32),
    /// Given up on (the outbox entries expired).
    Failed,
}

/// How far we trust that a group message really came from its sender: the core's one
/// definition (`(Direct)`, `(k of n)`, `(Signed, k of n)`, `(UNCONFIRMED k of n)`, `(me)`).
pub use torchat_core::Trust;

/// The sync data of a group message (extension `torchat_sync`): the speaker's sequence
/// number in the group, its time, and its signature when it has a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncInfo {
    /// Sequence number (from 1). Unique per group and speaker in the store.
    pub seq: u64,
    /// The speaker's time (ms).
    pub time: u64,
    /// The speaker's ed25519 signature.
    pub sig: Option<[u8; 64]>,
}

/// A message, 1:1 or group, as inserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The unique message id; inserting the same id again is a no-op.
    pub id: MsgId,
    /// The buddy or group it belongs to.
    pub conversation: Conversation,
    /// In or out.
    pub direction: Direction,
    /// Who wrote it (our own id for outgoing messages).
    pub sender: OnionId,
    /// The text as it came off (or goes onto) the wire.
    pub text: Vec<u8>,
    /// When it was written or received (ms).
    pub timestamp: u64,
    /// Delivery state, for outgoing messages.
    pub delivery: Option<Delivery>,
    /// Trust state, for group messages.
    pub trust: Option<Trust>,
    /// Sync data, for group messages of the extension `torchat_sync`.
    pub sync: Option<SyncInfo>,
}

/// A message with its local row number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The store-assigned row number.
    pub row: RowId,
    /// The message.
    pub msg: Message,
}

/// A member's claim to have received a group message (the evidence behind [`Trust`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The message claimed.
    pub msg_id: MsgId,
    /// Who claims it.
    pub claimant: OnionId,
    /// When the claim arrived (ms).
    pub received_at: u64,
}

/// A pending transmission of a message to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The message to send.
    pub msg_id: MsgId,
    /// To whom.
    pub dest: OnionId,
    /// When it was queued (ms).
    pub created_at: u64,
    /// When to give up (ms): due only while `now < expires_at`.
    pub expires_at: u64,
    /// How many times sending was attempted.
    pub attempts: u32,
    /// Not due before this time (ms).
    pub next_at: u64,
}

impl OutboxEntry {
    /// A fresh entry: no attempts yet, due at once.
    pub fn new(msg_id: MsgId, dest: OnionId, created_at: u64, expires_at: u64) -> Self {
        OutboxEntry {
            msg_id,
            dest,
            created_at,
            expires_at,
            attempts: 0,
            next_at: created_at,
        }
    }

    /// Whether the entry is due at `now`.
    pub fn is_due(&self, now: u64) -> bool {
        self.next_at <= now && now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_id_hex_roundtrip() {
        let id = MsgId([
            0, 1, 2, 0xab, 0xcd, 0xef, 0x10, 0xff, 9, 8, 7, 6, 5, 4, 3, 2,
        ]);
        let s = id.to_string();
        assert_eq!(s, "000102abcdef10ff0908070605040302");
        assert_eq!(MsgId::from_hex(&s), Some(id));
        assert_eq!(MsgId::from_hex(&s.to_uppercase()), Some(id));
        assert_eq!(s.parse::<MsgId>().ok(), Some(id));
        assert_eq!(MsgId::from_hex("00"), None);
        assert_eq!(MsgId::from_hex(&"g".repeat(32)), None);
        assert_eq!(MsgId::from_hex(&"é".repeat(16)), None);
        assert_eq!(format!("{id:?}"), format!("MsgId({s})"));
    }

    #[test]
    fn outbox_due_window() {
        let id = OnionId::parse("abcdefghijklmnop").unwrap();
        let mut e = OutboxEntry::new(MsgId::default(), id, 10, 20);
        assert!(!e.is_due(9));
        assert!(e.is_due(10));
        assert!(e.is_due(19));
        assert!(!e.is_due(20));
        e.next_at = 15;
        assert!(!e.is_due(14));
    }
}

/// A protocol line queued for a peer that is not reachable now (the core's per-member group
/// outbox: messages, relayed copies, leaves). Kept in insertion order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPacket {
    /// Unique id of the entry.
    pub id: MsgId,
    /// Who it is for.
    pub dest: OnionId,
    /// The group it belongs to.
    pub gid: GroupId,
    /// The encoded line.
    pub line: Vec<u8>,
    /// Dropped after this time (ms).
    pub expires_at: u64,
    /// Our own message it delivers, if it is one.
    pub own: Option<MsgId>,
}

/// The states a stored file transfer can be in (`Transfer::state`).
pub const TRANSFER_STATES: &[&str] = &[
    "queued",
    "offered",
    "transferring",
    "paused",
    "complete",
    "cancelled",
    "failed",
];

/// A file transfer, as the node keeps it across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Local id (the core's transfer number).
    pub id: u64,
    /// `Out`: we send it; `In`: we receive it.
    pub direction: Direction,
    /// The buddy.
    pub peer: OnionId,
    /// The transfer id on the wire.
    pub wire_id: String,
    /// The name as offered (untrusted bytes when received).
    pub name: Vec<u8>,
    /// Size in bytes.
    pub size: u64,
    /// Bytes confirmed or stored when last written.
    pub done: u64,
    /// One of [`TRANSFER_STATES`].
    pub state: String,
    /// Why it failed or who cancelled it, when it did.
    pub reason: Option<String>,
    /// The peer resumes after a disconnect.
    pub resumable: bool,
    /// The receiver accepted.
    pub accepted: bool,
    /// The local file: what we send, or where a received file is (or will be) saved.
    pub path: Option<Vec<u8>>,
    /// While receiving: the partial file.
    pub part: Option<Vec<u8>>,
    /// When it was created (ms).
    pub created_at: u64,
    /// When it was last written (ms).
    pub updated_at: u64,
}

/// A stranger's contact request, kept until the user accepts, ignores or blocks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The stranger.
    pub peer: OnionId,
    /// It sent `add_me`.
    pub added_me: bool,
    /// When the request was made (ms).
    pub first_at: u64,
    /// When the stranger last sent something (ms).
    pub last_at: u64,
    /// Messages dropped over the caps so far.
    pub dropped: u64,
}

/// A message held in a contact request (not part of any conversation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMessage {
    /// Its id.
    pub id: MsgId,
    /// The stranger.
    pub peer: OnionId,
    /// Text as received.
    pub text: Vec<u8>,
    /// Arrival time (ms).
    pub at: u64,
}
