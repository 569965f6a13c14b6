//! The TorChat protocol core, as a sans-IO state machine.
//!
//! No sockets, no async runtime, no clock, no OS randomness: the caller (the "shell") passes
//! time in, feeds inputs and drains outputs. The same code runs in the daemon, in tests with a
//! virtual clock and in the simulator.
//!
//! # Driving contract
//!
//! One [`Node`] per identity. After **every** input call, drain [`Node::poll_output`] until it
//! returns `None`, then sleep until [`Node::poll_timeout`] (or the next input) and call
//! [`Node::handle_timeout`] when it is due.
//!
//! Inputs (each takes `now`):
//! - [`Node::start`] once, after restoring persisted state with [`Node::restore_buddy`] and
//!   [`Node::restore_queued`];
//! - [`Node::accept`] for an incoming connection (returns its [`ConnId`], or `None`: close it);
//! - [`Node::handle_connected`] / [`Node::handle_closed`] for outgoing connections the core
//!   asked for with [`Output::Connect`] (a failed connect is a close);
//! - [`Node::handle_data`] with bytes read from a connection, split anywhere;
//! - user commands: [`Node::add_buddy`], [`Node::remove_buddy`], [`Node::block`],
//!   [`Node::send_message`], [`Node::set_status`], [`Node::set_profile`], …;
//! - [`Node::handle_timeout`].
//!
//! Outputs ([`Output`]): `Connect` (open a connection to an onion id and report back),
//! `Transmit` (write bytes, in order), `Close` (close; the core has already forgotten it),
//! `Event` (tell the user), `Persist` (store a record; do it before performing later outputs,
//! so that nothing the user sent is transmitted before it is on disk), `File` (read a block
//! to send and answer [`Node::file_read`], write a received block, release a file; see
//! [`FileIo`]), `Load` (read stored group messages a member asked for and hand them to
//! [`Node::handle_loaded`]).
//!
//! ```
//! use rand_core::SeedableRng;
//! use torchat_core::{Config, Node, Output, Timestamp};
//! use torchat_wire::OnionId;
//!
//! let me = OnionId::parse("torchataaaaaaaaa").unwrap();
//! let rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
//! let mut node = Node::new(Config::new(me), Box::new(rng));
//! let now = Timestamp::from_millis(1_700_000_000_000);
//! node.add_buddy(OnionId::parse("buddybbbbbbbbbbb").unwrap(), None, now).unwrap();
//! node.start(now);
//! while let Some(out) = node.poll_output() {
//!     match out {
//!         Output::Connect { conn, to } => { /* dial to.onion:11009, then handle_connected */ }
//!         Output::Transmit { conn, data } => { /* write */ }
//!         Output::Close { conn } => { /* close */ }
//!         Output::Event(e) => { /* show */ }
//!         Output::Persist(r) => { /* store */ }
//!         Output::File(io) => { /* read or write a transferred file */ }
//!         Output::Load(req) => node.handle_loaded(req.token, vec![], now), // from storage
//!     }
//! }
//! assert!(node.poll_timeout().is_some()); // the connect timeout
//! ```
#![warn(missing_docs)]

mod config;
mod direct_sync;
mod file;
mod group;
mod handshake;
mod node;
mod quota;
mod redundancy;
mod requests;
mod session;
mod state;
mod sync;
mod time;
mod timers;
mod types;

pub use config::Config;
pub use file::{
    FileConfig, FileDirection, FileFailure, FileId, FileIo, FileRefusal, FileState, FileStats,
    TransferRestore, TransferView, FILE_RESUME_EXT,
};
pub use group::NO_REDUNDANCY;
pub use node::{BuddyView, Node, Stats};
pub use quota::{GuardConfig, RateLimit};
pub use requests::{HeldMessage, RequestOutcome, RequestView, DELAYED_EXT};
pub use session::DELAYED_PREFIX;
pub use sync::SYNC_EXT;
pub use time::Timestamp;
pub use torchat_wire;
pub use types::{
    BuddyKind, CommandError, ConnId, ConnectError, Delivery, Event, GroupState, GroupView,
    LoadRequest, MemberChange, MsgId, OutboxEntry, Output, PeerInfo, Presence, Quota, Record,
    SyncCopy, SyncMeta, Trust,
};
