//! Configuration of the core. Every default says why it is what it is.

use std::time::Duration;

use torchat_wire::{OnionId, Status};

/// What the core needs to know about us and how patient to be.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our own onion id (v3, or legacy v2 with the manual and direct transports).
    pub own_id: OnionId,
    /// Our onion service's ed25519 secret seed, when our id is the v3 id of that key: group
    /// messages are then signed (extension `torchat_signed`). `None`: nothing is signed.
    pub signing_key: Option<[u8; 32]>,
    /// Sent in `client`.
    pub client_name: String,
    /// Sent in `version`.
    pub client_version: String,
    /// Sent in `profile_name`.
    pub profile_name: Vec<u8>,
    /// Sent in `profile_text`.
    pub profile_text: Vec<u8>,
    /// Our presence, sent in `status`.
    pub status: Status,
    /// `status` keepalive period. The protocol requires ≤ 120 s; 100 s leaves room for delay.
    pub keepalive_interval: Duration,
    /// A connected buddy we hear nothing from for this long is disconnected (protocol: 240 s).
    pub silence_timeout: Duration,
    /// Re-send `ping` this often until the buddy authenticates (Python TorChat: 30 s; Pascal
    /// TorChat only answers a ping that arrives after its own connection is up).
    pub reping_interval: Duration,
    /// A buddy not online this long after both connections were up (ours established, its
    /// ping received) is handshaken again from scratch on a fresh connection: a wedged
    /// handshake never lasts longer. Doubles on each restart without success, up to 4×.
    pub handshake_timeout: Duration,
    /// Our connection is up but the buddy never connected back (no ping from it): start over
    /// after this long.
    pub connect_back_timeout: Duration,
    /// Give up on an outgoing connection that is not established after this long (Tor onion
    /// connects usually take seconds, sometimes a minute).
    pub connect_timeout: Duration,
    /// An incoming connection must send a valid `ping` within this long, or it is closed.
    pub ping_timeout: Duration,
    /// Close an incoming connection whose ping named someone who did not prove it within this
    /// long (PY/TC2 wait 240 s; the peer's connect-back through Tor takes seconds to a minute).
    pub unauthenticated_timeout: Duration,
    /// After a session that was up drops, the first reconnect comes after a random delay in
    /// this range (spread, so both sides do not dial in the same instant).
    pub reconnect_after_drop: (Duration, Duration),
    /// Then attempts back off from this delay, doubling after each failure (randomised
    /// ×0.75–1.25)…
    pub backoff_initial: Duration,
    /// …up to this cap while the buddy was online (or added) within [`Config::recent`]…
    pub backoff_max_recent: Duration,
    /// …and up to this cap after that. Attempts never stop.
    pub backoff_max: Duration,
    /// What counts as "recently online" for the backoff cap.
    pub recent: Duration,
    /// A refused connection (the peer's Tor answers but nothing listens: its program is
    /// restarting) is retried at most this long after, whatever the failure count.
    pub backoff_max_refused: Duration,
    /// When the network comes back, reconnects to every offline buddy are spread over this
    /// long.
    pub network_up_spread: Duration,
    /// A repeated ping on a connection is answered again at most this often.
    pub repong_interval: Duration,
    /// Line-size cap for every connection.
    pub max_line: usize,
    /// Cap on open connections (both directions).
    pub max_connections: usize,
    /// Cap on incoming connections that have not authenticated yet. At the cap, a new one
    /// evicts the oldest of the least promising (no ping yet, then strangers, then buddies).
    pub max_unauthenticated: usize,
    /// Cap on unauthenticated incoming connections naming the same id.
    pub max_unauthenticated_per_id: usize,
    /// Cap on strangers who pinged us (temporary buddies not pinned by a group; group members
    /// we are not buddies with have their own cap, [`crate::GuardConfig::max_member_buddies`]).
    pub max_temporary_buddies: usize,
    /// Cap on messages queued for one offline buddy; more is refused, never dropped silently.
    pub max_queued_per_buddy: usize,
    /// Lines other than `ping`/`pong` tolerated on an unauthenticated incoming connection
    /// before it is closed (ruby-torchat closes after 24).
    pub max_unauthenticated_lines: u32,
    /// Redundancy: how long to collect relayed copies of a message before showing it
    /// `(k of N)` (PROTOCOL §4: 10 s after the first claim).
    pub settle_window: Duration,
    /// How long a group packet waits in a member's outbox for that member to come back.
    pub relay_lifetime: Duration,
    /// How long to wait for a member to answer `groupchat_is_participating`.
    pub verify_timeout: Duration,
    /// Cap on groups (any state).
    pub max_groups: usize,
    /// Cap on members of one group.
    pub max_group_members: usize,
    /// Cap on queued group packets per member (oldest dropped first, with an event).
    pub max_outbox_per_member: usize,
    /// Cap on the bytes of all queued group packets together (oldest dropped first, with an
    /// event).
    pub max_outbox_bytes: usize,
    /// Messages per group remembered for matching relayed copies and late direct copies.
    pub max_tracked_messages: usize,
    /// Announce and use our extension `torchat_sync` (sequence numbers, acknowledged delivery,
    /// catch-up from any member, digests instead of full echoes) with peers that announce it
    /// too. Off: we behave as a seed-only member (tests, comparisons).
    pub sync: bool,
    /// Sync: how long an acknowledgement or a digest may wait to be batched with later ones
    /// (one per peer per group per window, so a burst is acknowledged once).
    pub sync_ack_delay: Duration,
    /// Sync: anti-entropy period. A member sends its ring neighbours what changed since it
    /// last told them, this often, besides the event-driven digests (session start, pulled
    /// copies, a speaker's session ending, requests to relay). A safety net, so it is rare:
    /// in a busy group of 100 each round costs about 1 % of the message traffic at 10
    /// messages a minute (docs/sim/sync.md).
    pub sync_interval: Duration,
    /// Sync: messages per `groupchat_sync_want` (one page).
    pub sync_page: u64,
    /// Sync: bytes of copies sent in answer to one want, at most (the rest is asked again).
    pub sync_page_bytes: usize,
    /// Sync: wants outstanding to one peer (per group), and in all (per group).
    pub sync_wants_per_peer: usize,
    /// Sync: see `sync_wants_per_peer`.
    pub sync_wants_total: usize,
    /// Sync: a want not answered in this time is dropped and asked again, maybe elsewhere.
    pub sync_want_timeout: Duration,
    /// Sync: wants of one peer being served from storage at once; more are ignored.
    pub sync_loads_per_peer: usize,
    /// Sync: wants of one peer answered per minute and group (a catch-up of 1000 messages
    /// needs 10); more are ignored until the minute has passed.
    pub sync_wants_per_minute: usize,
    /// Sync: recent full copies kept in memory per group to answer wants without storage…
    pub sync_cache: usize,
    /// …and at most this many bytes of their texts.
    pub sync_cache_bytes: usize,
    /// Sync: own messages whose delivery is tracked per group (older ones keep the last
    /// count stored).
    pub sync_tracked_own: usize,
    /// Sync: gaps (ranges held above the contiguous part) kept per speaker; copies that would
    /// need more wait to be pulled in order.
    pub sync_max_gaps: usize,
    /// Group history kept (and served for catch-up) this long; the shell prunes older group
    /// messages from storage. `None`: kept for ever.
    pub group_history_retention: Option<Duration>,
    /// 1:1 with `torchat_sync` peers: messages written and not yet acknowledged, per buddy
    /// (the send window), retransmitted when it comes back. More wait in the queue until
    /// acknowledgements make room.
    pub max_unacked_per_buddy: usize,
    /// The same window in bytes of text.
    pub max_unacked_bytes_per_buddy: usize,
    /// 1:1 with `torchat_sync` peers: ids of received messages remembered per buddy, so a
    /// retransmission is not shown twice. At least the send window: a whole window sent
    /// again must be recognised (fewer would forget the oldest while reading the copies).
    pub max_received_ids_per_buddy: usize,
    /// File transfer limits and timings.
    pub files: crate::file::FileConfig,
    /// Quotas and rate limits per peer, the contact-request inbox, pending invites.
    pub guard: crate::quota::GuardConfig,
}

impl Config {
    /// Defaults for the given identity.
    pub fn new(own_id: OnionId) -> Self {
        Config {
            own_id,
            signing_key: None,
            client_name: "torchat".into(),
            client_version: env!("CARGO_PKG_VERSION").into(),
            profile_name: Vec::new(),
            profile_text: Vec::new(),
            status: Status::Available,
            keepalive_interval: Duration::from_secs(100),
            silence_timeout: Duration::from_secs(240),
            reping_interval: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(20),
            connect_back_timeout: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(120),
            ping_timeout: Duration::from_secs(30),
            unauthenticated_timeout: Duration::from_secs(120),
            reconnect_after_drop: (Duration::from_secs(1), Duration::from_secs(3)),
            backoff_initial: Duration::from_secs(2),
            backoff_max_recent: Duration::from_secs(60),
            backoff_max: Duration::from_secs(600),
            recent: Duration::from_secs(3600),
            backoff_max_refused: Duration::from_secs(15),
            network_up_spread: Duration::from_secs(5),
            repong_interval: Duration::from_secs(1),
            max_line: torchat_wire::DEFAULT_MAX_LINE,
            max_connections: 1024,
            max_unauthenticated: 64,
            max_unauthenticated_per_id: 4,
            max_temporary_buddies: 256,
            max_queued_per_buddy: 1000,
            max_unauthenticated_lines: 24,
            settle_window: Duration::from_secs(10),
            relay_lifetime: Duration::from_secs(24 * 3600),
            verify_timeout: Duration::from_secs(120),
            max_groups: 256,
            max_group_members: 256,
            max_outbox_per_member: 1000,
            max_outbox_bytes: 32 * 1024 * 1024,
            max_tracked_messages: 2000,
            sync: true,
            sync_ack_delay: Duration::from_millis(200),
            sync_interval: Duration::from_secs(600),
            sync_page: 100,
            sync_page_bytes: 256 * 1024,
            sync_wants_per_peer: 2,
            sync_wants_total: 8,
            sync_want_timeout: Duration::from_secs(60),
            sync_loads_per_peer: 2,
            sync_wants_per_minute: 120,
            sync_cache: 2000,
            sync_cache_bytes: 4 * 1024 * 1024,
            sync_tracked_own: 10_000,
            sync_max_gaps: 64,
            group_history_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            max_unacked_per_buddy: 65_536,
            max_unacked_bytes_per_buddy: 16 * 1024 * 1024,
            max_received_ids_per_buddy: 65_536,
            files: crate::file::FileConfig::default(),
            guard: crate::quota::GuardConfig::default(),
        }
    }
}
