//! Per-connection and per-buddy state (plain data; the logic lives in `node`, `handshake`,
//! `session` and `timers`).

use std::collections::{BTreeSet, VecDeque};

use torchat_wire::{OnionId, PacketDecoder, Status};

use crate::time::Timestamp;
use crate::types::{BuddyKind, ConnId, MsgId, PeerInfo, Presence};

/// Which side opened a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dir {
    /// We opened it to this buddy; we write on it.
    Out { to: OnionId },
    /// The peer opened it; we never write on it.
    In,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub dir: Dir,
    pub decoder: PacketDecoder,
    pub opened_at: Timestamp,
    /// Outgoing: TCP (through Tor) established.
    pub established: bool,
    /// Outgoing: when it was established.
    pub established_at: Timestamp,
    /// Outgoing: when both connections were up (this one established and a ping from the
    /// buddy received); the handshake must finish within a few round trips of it.
    pub both_up_at: Option<Timestamp>,
    /// Outgoing: our ping (with the buddy's cookie) went out on it.
    pub pinged: bool,
    /// Outgoing: when we last pinged.
    pub last_ping: Timestamp,
    /// Outgoing: the peer cookie we answered with a `pong` on it, and when. One cookie per
    /// connection: a newer cookie needs a fresh connection (ruby-torchat drops a link on a
    /// second pong), but a peer that repeats its ping gets the same pong again.
    pub ponged: Option<(Vec<u8>, Timestamp)>,
    /// Outgoing: client/version/.../status sent.
    pub info_sent: bool,
    /// Outgoing: next `status` keepalive.
    pub next_keepalive: Timestamp,
    /// Incoming: the id named by the first ping on it.
    pub claimed: Option<OnionId>,
    /// Incoming: the cookie of the latest ping on it, and the node-wide ping sequence number
    /// it arrived with (the newest cookie of a peer is the one with the highest number).
    pub cookie: Option<(Vec<u8>, u64)>,
    /// Incoming: authenticated by a valid pong.
    pub authenticated: bool,
    /// Incoming: when it was authenticated.
    pub authenticated_at: Timestamp,
    /// Incoming: lines we dropped before authentication.
    pub junk_lines: u32,
    /// Incoming: the latest `status` that arrived before the connection was authenticated
    /// (a peer that took our pong already says it is online; acted on only once the pong
    /// authenticates the connection it came on).
    pub early_status: Option<torchat_wire::Status>,
    /// Last time anything arrived.
    pub last_rx: Timestamp,
}

impl Conn {
    pub fn new(dir: Dir, max_line: usize, now: Timestamp) -> Self {
        let established = matches!(dir, Dir::In);
        Conn {
            dir,
            decoder: PacketDecoder::new(max_line),
            opened_at: now,
            established,
            established_at: now,
            both_up_at: None,
            pinged: false,
            last_ping: now,
            ponged: None,
            info_sent: false,
            next_keepalive: now,
            claimed: None,
            cookie: None,
            authenticated: false,
            authenticated_at: now,
            junk_lines: 0,
            early_status: None,
            last_rx: now,
        }
    }

    /// An incoming connection that has not proven who is on it.
    pub fn unauthenticated_incoming(&self) -> bool {
        matches!(self.dir, Dir::In) && !self.authenticated
    }
}

/// A 1:1 message waiting for its buddy.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub id: MsgId,
    pub text: Vec<u8>,
    /// When the user wrote it, if known.
    pub at: Option<Timestamp>,
}

#[derive(Debug)]
pub(crate) struct Buddy {
    pub kind: BuddyKind,
    pub alias: Option<String>,
    /// Our outgoing connection of the session (connecting or up).
    pub out: Option<ConnId>,
    /// A second outgoing connection, opened while the session is up because the buddy pinged
    /// with a new cookie (it restarted, or someone forged a ping). It replaces `out` if the
    /// buddy proves itself on a new incoming connection; else it is closed.
    pub spare: Option<ConnId>,
    /// Its authenticated incoming connection.
    pub inc: Option<ConnId>,
    /// Online: authenticated, its first `status` received and our own handshake packets sent
    /// (so messages can go out).
    pub online: bool,
    /// Its `status` arrived this session (it may come before our side is ready).
    pub status_seen: bool,
    pub status: Status,
    pub info: PeerInfo,
    pub supports: BTreeSet<String>,
    pub queue: VecDeque<Queued>,
    /// Connection attempts that failed since the last authenticated session.
    pub failures: u32,
    /// When to try connecting next, if we want a connection.
    pub next_connect: Option<Timestamp>,
    /// When the buddy was last online with us, or when we started wanting it (added, pinned):
    /// a buddy seen recently is retried more eagerly.
    pub last_seen: Option<Timestamp>,
    /// Handshakes restarted because they stalled, since the last time it was online.
    pub stalls: u32,
    /// Last presence reported to the application.
    pub reported: Presence,
    /// Kept alive by something other than the buddy list (group membership).
    pub pinned: bool,
}

impl Buddy {
    pub fn new(kind: BuddyKind) -> Self {
        Buddy {
            kind,
            alias: None,
            out: None,
            spare: None,
            inc: None,
            online: false,
            status_seen: false,
            status: Status::Available,
            info: PeerInfo::default(),
            supports: BTreeSet::new(),
            queue: VecDeque::new(),
            failures: 0,
            next_connect: None,
            last_seen: None,
            stalls: 0,
            reported: Presence::Offline,
            pinned: false,
        }
    }

    /// Whether we keep (re)connecting to this buddy: it is on our list, a group needs it, or
    /// messages wait for it (the user wrote to a stranger who went away).
    pub fn wanted(&self) -> bool {
        match self.kind {
            BuddyKind::Permanent => true,
            BuddyKind::Temporary => self.pinned || !self.queue.is_empty(),
            BuddyKind::Blocked => false,
        }
    }
}
