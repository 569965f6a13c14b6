//! Storage for a torchat node, behind the [`Store`] trait.
//!
//! Two implementations with the same semantics (one shared test suite runs against both):
//! - [`SqliteStore`]: one SQLite file in WAL mode with `synchronous=FULL`, versioned
//!   migrations, foreign keys, a busy timeout, and mode `0600` on unix;
//! - [`MemoryStore`]: in memory, for tests and the simulator.
//!
//! What is kept: identity settings (key/value, see [`keys`]), [`Buddy`]s, [`Group`]s and their
//! [`Member`]s, every [`Message`] (1:1 and group) with its delivery and trust state and its
//! [`SyncInfo`], the [`Claim`]s behind group trust, the outbox of pending transmissions
//! ([`OutboxEntry`]), and the state of the extension `torchat_sync`: the next sequence number
//! per group, what each member holds per speaker ([`SeqSet`]), what each peer supports.
//!
//! Guarantees:
//! - **durable on return**: each write method, and each [`Store::apply`] batch, is one
//!   transaction that is committed (and on disk) when the call returns, so a message can be
//!   reported "sent" as soon as its insert returned;
//! - **all or nothing**: a failed write or batch changes nothing;
//! - **crash-safe replay**: messages are keyed by their 16-byte [`MsgId`]; inserting the same
//!   id again is a no-op that reports `false`, as are claims per (message, claimant), outbox
//!   entries per (message, destination) and members per (group, member). After a `kill -9` the
//!   node can redo its last steps without losing or duplicating anything.
//!
//! The store knows nothing of the protocol's logic (it shares only the core's `Trust` type) or
//! of async runtimes; the node maps core records to [`Op`]s (ideally one [`Store::apply`] per
//! core step).
//!
//! ```
//! use torchat_store::{Conversation, Direction, MemoryStore, Message, MsgId, Store};
//! use torchat_wire::OnionId;
//!
//! # fn main() -> Result<(), torchat_store::Error> {
//! let mut store = MemoryStore::new();
//! let bob = OnionId::parse("abcdefghijklmnop").expect("a valid v2 id");
//! let msg = Message {
//!     id: MsgId([7; 16]),
//!     conversation: Conversation::Buddy(bob.clone()),
//!     direction: Direction::In,
//!     sender: bob.clone(),
//!     text: b"hello".to_vec(),
//!     timestamp: 1_700_000_000_000,
//!     delivery: None,
//!     trust: None,
//!     sync: None,
//! };
//! assert!(store.insert_message(msg.clone())?); // new
//! assert!(!store.insert_message(msg)?); // replay: no duplicate
//! let page = store.history(&Conversation::Buddy(bob), None, 50)?;
//! assert_eq!(page.len(), 1);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod error;
mod memory;
mod op;
mod sqlite;
mod store;
mod types;

pub use error::{Error, Result};
pub use memory::MemoryStore;
pub use op::{Op, MAX_TIME};
pub use sqlite::{Diagnostics, SqliteStore, BUSY_TIMEOUT, SCHEMA_VERSION};
pub use store::Store;
pub use torchat_wire::SeqSet;
pub use types::{
    keys, Buddy, BuddyKind, Claim, Conversation, Delivery, Direction, Group, GroupState, Member,
    Message, MsgId, OutboxEntry, QueuedPacket, Request, RequestMessage, RowId, StoredMessage,
    SyncInfo, Transfer, Trust, TRANSFER_STATES,
};
