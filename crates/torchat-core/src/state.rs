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
    /// Outgoing: our ping went out with this cookie.
    pub ping_cookie: Option<Vec<u8>>,
    /// Outgoing: when we last pinged.
    pub last_ping: Timestamp,
    /// Outgoing: the pong we sent on it (at most one per connection).
    pub pong_sent: bool,
    /// Outgoing: client/version/.../status sent.
    pub info_sent: bool,
    /// Outgoing: next `status` keepalive.
    pub next_keepalive: Timestamp,
    /// Incoming: the id named by the first ping on it.
    pub claimed: Option<OnionId>,
    /// Incoming: authenticated by a valid pong.
    pub authenticated: bool,
    /// Incoming: when it was authenticated.
    pub authenticated_at: Timestamp,
    /// Incoming: lines we dropped before authentication.
    pub junk_lines: u32,
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
            ping_cookie: None,
            last_ping: now,
            pong_sent: false,
            info_sent: false,
            next_keepalive: now,
            claimed: None,
            authenticated: false,
            authenticated_at: now,
            junk_lines: 0,
            last_rx: now,
        }
    }
}

/// A 1:1 message waiting for its buddy.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub id: MsgId,
    pub text: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Buddy {
    pub kind: BuddyKind,
    pub alias: Option<String>,
    /// Our outgoing connection (connecting or up).
    pub out: Option<ConnId>,
    /// Its authenticated incoming connection.
    pub inc: Option<ConnId>,
    /// The cookie from its latest ping, to pong on our outgoing connection.
    pub peer_cookie: Option<Vec<u8>>,
    /// First `status` received since authentication.
    pub online: bool,
    pub status: Status,
    pub info: PeerInfo,
    pub supports: BTreeSet<String>,
    pub queue: VecDeque<Queued>,
    /// Failed connection attempts since the last success (drives the backoff).
    pub failures: u32,
    /// When to try connecting next, if we want a connection.
    pub next_connect: Option<Timestamp>,
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
            inc: None,
            peer_cookie: None,
            online: false,
            status: Status::Available,
            info: PeerInfo::default(),
            supports: BTreeSet::new(),
            queue: VecDeque::new(),
            failures: 0,
            next_connect: None,
            reported: Presence::Offline,
            pinned: false,
        }
    }

    /// Whether we keep (re)connecting to this buddy.
    pub fn wanted(&self) -> bool {
        match self.kind {
            BuddyKind::Permanent => true,
            BuddyKind::Temporary => self.pinned,
            BuddyKind::Blocked => false,
        }
    }
}
