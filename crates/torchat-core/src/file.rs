//! File transfer: the legacy TorChat protocol (`filename`, `filedata`, `filedata_ok`,
//! `filedata_error`, `file_stop_sending`, `file_stop_receiving`) and our extension
//! [`FILE_RESUME_EXT`] (an offer waits for the receiver's go, and a transfer survives a
//! disconnect or a restart).
//!
//! The core never touches a file. It asks the shell for blocks to send
//! ([`FileIo::Read`], answered with [`Node::file_read`]), hands out verified blocks to write in
//! order ([`FileIo::Write`]) and says when a transfer is over ([`FileIo::Close`]).
//!
//! Connections: `filename` and `filedata` go on the connection the peer opened to us (Pascal
//! TorChat and jtorchat accept them only there); `filedata_ok`, `filedata_error` and
//! `file_stop_*` go on our own outgoing connection. We accept every file packet on either
//! connection, as Python TorChat does. Nothing is ever written on a connection opened by
//! ruby-torchat (its reactor crashes on any line there): files are neither sent to nor
//! accepted from it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use md5::{Digest, Md5};
use torchat_wire::{OnionId, Packet};

use crate::node::Node;
use crate::time::Timestamp;
use crate::types::{CommandError, ConnId, Event, Output};

/// The extension announced in `supports` by peers that resume transfers (see
/// `docs/protocol.md`).
pub const FILE_RESUME_EXT: &str = "torchat_file_resume";

/// The client name of ruby-torchat, whose file transfer is broken.
const RUBY_CLIENT: &[u8] = b"ruby-torchat";

/// A transfer, as the core numbers it (local, never on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u64);

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which way a file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileDirection {
    /// We send it.
    Send,
    /// We receive it.
    Receive,
}

/// Why a transfer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileFailure {
    /// The connection was lost and the peer cannot resume.
    Disconnected,
    /// No progress for the stall timeout.
    Stalled,
    /// An offer was not answered in time.
    Expired,
    /// The peer broke the protocol (oversize block, too many bad blocks or restarts).
    Protocol,
    /// The shell could not read or write the file.
    Io,
    /// The buddy's client cannot receive files (ruby-torchat).
    Unsupported,
}

impl FileFailure {
    /// A stable code for interfaces.
    pub fn as_str(self) -> &'static str {
        match self {
            FileFailure::Disconnected => "disconnected",
            FileFailure::Stalled => "stalled",
            FileFailure::Expired => "expired",
            FileFailure::Protocol => "protocol",
            FileFailure::Io => "io",
            FileFailure::Unsupported => "unsupported",
        }
    }
}

/// Why an offer was refused without asking the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileRefusal {
    /// Bigger than [`FileConfig::max_size`].
    TooBig,
    /// From a client whose file transfer is broken (ruby-torchat).
    Unsupported,
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileState {
    /// Ours, waiting for the buddy to come online to be offered.
    Queued,
    /// Incoming: waiting for our user. Outgoing: waiting for the peer to accept (peers with
    /// [`FILE_RESUME_EXT`]; legacy receivers take blocks at once).
    Offered,
    /// Blocks are moving.
    Transferring,
    /// The connection is gone; it resumes when the buddy is back (peers with
    /// [`FILE_RESUME_EXT`] only).
    Paused,
    /// Every byte confirmed (sending) or written (receiving).
    Complete,
    /// Stopped by a person: ours (`by_peer: false`) or the buddy's.
    Cancelled {
        /// The buddy stopped it.
        by_peer: bool,
    },
    /// Given up.
    Failed(FileFailure),
}

impl FileState {
    /// Over (complete, cancelled or failed).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            FileState::Complete | FileState::Cancelled { .. } | FileState::Failed(_)
        )
    }
}

/// File I/O the shell carries out for the core, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum FileIo {
    /// Read `len` bytes at `offset` of the file being sent and answer with
    /// [`Node::file_read`] (or [`Node::file_failed`]). Answer reads in the order asked.
    Read {
        /// The transfer.
        file: FileId,
        /// Where.
        offset: u64,
        /// How much (the whole block; short only at the end of the file).
        len: usize,
    },
    /// Write a verified block at `offset` of the file being received. Blocks come in order,
    /// each right after the previous one. Carry it out before later `Transmit` outputs: the
    /// `filedata_ok` that follows promises the block is stored.
    Write {
        /// The transfer.
        file: FileId,
        /// Where.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The transfer is over (or failed): release the file. For a receive, `complete` means
    /// every byte was written (finalise it); otherwise keep or remove the partial file.
    Close {
        /// The transfer.
        file: FileId,
        /// Whether every byte made it.
        complete: bool,
    },
}

/// Limits and timings of file transfer. Every default says why.
#[derive(Debug, Clone)]
pub struct FileConfig {
    /// Offers bigger than this are refused at once (the shell also checks free disk space).
    pub max_size: u64,
    /// Offers waiting for the user, per buddy; more are refused (offer floods).
    pub max_offers_per_buddy: usize,
    /// Offers waiting for the user, in total.
    pub max_offers: usize,
    /// Transfers not yet over (both directions), in total.
    pub max_transfers: usize,
    /// Finished transfers remembered (to tell late packets for them apart from unknown ids).
    pub max_finished: usize,
    /// File names longer than this (bytes) are refused: no file system takes them and a
    /// legitimate client never sends them.
    pub max_name: usize,
    /// Largest block we accept (legacy clients use 8192; the line cap allows about 128 KiB).
    pub max_block: u64,
    /// Block size we send (every legacy client uses 8192).
    pub block_size: u64,
    /// Blocks in flight to a legacy receiver (jtorchat uses 32, Python TorChat 16–17).
    pub window_legacy: u64,
    /// Blocks in flight to a torchat receiver (1 MiB: fills a loopback link and a Tor circuit).
    pub window: u64,
    /// A transfer with no progress for this long fails (Python TorChat restarts after 10 min,
    /// Pascal TorChat after 120 s). A receiver nudges with `filedata_error` at half of it.
    pub stall_timeout: Duration,
    /// An offer not answered (by our user, or by a torchat receiver's user) for this long is
    /// withdrawn.
    pub offer_timeout: Duration,
    /// At most one `filedata_error` for the same offset within this time ("once per burst").
    pub error_interval: Duration,
    /// Progress events at most this often per transfer.
    pub progress_interval: Duration,
    /// Bad blocks (md5 mismatch) tolerated per transfer before it fails.
    pub max_bad_blocks: u32,
    /// `filedata_error` restarts tolerated per transfer before it fails (each one makes us
    /// send up to a window again).
    pub max_restarts: u32,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            max_size: 16 << 30,
            max_offers_per_buddy: 8,
            max_offers: 64,
            max_transfers: 256,
            max_finished: 256,
            max_name: 1024,
            max_block: 64 * 1024,
            block_size: 8192,
            window_legacy: 32,
            window: 128,
            stall_timeout: Duration::from_secs(600),
            offer_timeout: Duration::from_secs(3600),
            error_interval: Duration::from_secs(5),
            progress_interval: Duration::from_millis(500),
            max_bad_blocks: 64,
            max_restarts: 64,
        }
    }
}

/// A transfer as interfaces see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferView {
    /// Local id.
    pub id: FileId,
    /// Which way.
    pub direction: FileDirection,
    /// The buddy.
    pub peer: OnionId,
    /// The transfer id on the wire (chosen by the sender).
    pub wire_id: String,
    /// The file name as offered (untrusted bytes when receiving).
    pub name: Vec<u8>,
    /// Size in bytes.
    pub size: u64,
    /// Bytes confirmed (sending) or written (receiving).
    pub done: u64,
    /// State.
    pub state: FileState,
    /// The peer resumes after a disconnect ([`FILE_RESUME_EXT`]).
    pub resumable: bool,
    /// The receiver has accepted (ours, or the peer's first `filedata_ok`/`filedata_error`).
    pub accepted: bool,
    /// Recent rate in bytes per second.
    pub rate: u64,
}

/// A transfer to bring back after a restart ([`Node::restore_transfer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRestore {
    /// Its local id.
    pub id: FileId,
    /// Which way.
    pub direction: FileDirection,
    /// The buddy.
    pub peer: OnionId,
    /// The wire id.
    pub wire_id: String,
    /// Name as offered.
    pub name: Vec<u8>,
    /// Size.
    pub size: u64,
    /// Receiving: bytes already stored (the shell rounds down to what it trusts). Ignored
    /// when sending (the receiver says where to resume).
    pub done: u64,
    /// Accepted before the restart.
    pub accepted: bool,
    /// Never offered yet (a send waiting for the buddy): restored as [`FileState::Queued`].
    pub queued: bool,
}

/// Counters of file-transfer events, for diagnostics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Offers refused without asking (caps, size, bad name or block size, ruby-torchat).
    pub refused_offers: u64,
    /// Blocks whose md5 did not match.
    pub bad_blocks: u64,
    /// `file_stop_*` sent for ids we do not know.
    pub unknown_id_answers: u64,
    /// Packets about transfers that made no sense (misplaced offsets, duplicates).
    pub ignored_packets: u64,
}

#[derive(Debug)]
struct Transfer {
    peer: OnionId,
    wire_id: String,
    dir: FileDirection,
    name: Vec<u8>,
    size: u64,
    block: u64,
    state: FileState,
    resumable: bool,
    accepted: bool,
    /// Receiving: bytes written, in order. Sending: bytes confirmed.
    done: u64,
    /// Sending: next offset to ask the shell for.
    next_send: u64,
    /// Sending: end of the highest block ever sent.
    sent_hi: u64,
    /// Sending: reads asked for and not answered.
    reading: BTreeSet<u64>,
    /// Receiving: a block was dropped before the transfer was accepted (or while paused).
    dropped: bool,
    /// Receiving: the last `filedata_error` sent (offset, when).
    error_at: Option<(u64, Timestamp)>,
    bad_blocks: u32,
    restarts: u32,
    /// When the state last moved forward (stall and offer timeouts).
    since: Timestamp,
    reported_at: Timestamp,
    reported_done: u64,
    rate: u64,
}

impl Transfer {
    fn key(&self) -> (OnionId, FileDirection, String) {
        (self.peer.clone(), self.dir, self.wire_id.clone())
    }

    fn window(&self, cfg: &FileConfig) -> u64 {
        let blocks = if self.resumable {
            cfg.window
        } else {
            cfg.window_legacy
        };
        blocks.max(1).saturating_mul(self.block)
    }

    fn block_len(&self, start: u64) -> u64 {
        self.block.min(self.size.saturating_sub(start))
    }

    fn view(&self, id: FileId) -> TransferView {
        TransferView {
            id,
            direction: self.dir,
            peer: self.peer.clone(),
            wire_id: self.wire_id.clone(),
            name: self.name.clone(),
            size: self.size,
            done: self.done,
            state: self.state,
            resumable: self.resumable,
            accepted: self.accepted,
            rate: self.rate,
        }
    }
}

/// Every transfer the core knows (held by [`Node`]).
#[derive(Debug, Default)]
pub(crate) struct Files {
    transfers: BTreeMap<FileId, Transfer>,
    index: BTreeMap<(OnionId, FileDirection, String), FileId>,
    finished: VecDeque<FileId>,
    next_id: u64,
    stats: FileStats,
}

/// Whether a packet belongs to file transfer.
pub(crate) fn is_file_packet(p: &Packet) -> bool {
    matches!(
        p,
        Packet::Filename { .. }
            | Packet::Filedata { .. }
            | Packet::FiledataOk { .. }
            | Packet::FiledataError { .. }
            | Packet::FileStopSending { .. }
            | Packet::FileStopReceiving { .. }
    )
}

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Node {
    // ----- user commands -----

    /// Offers a file of `size` bytes called `name` to `to`: at once if it is online, else
    /// when it comes online. The shell keeps the file open and answers [`FileIo::Read`].
    pub fn send_file(
        &mut self,
        to: &OnionId,
        name: Vec<u8>,
        size: u64,
        now: Timestamp,
    ) -> Result<FileId, CommandError> {
        if *to == self.cfg.own_id {
            return Err(CommandError::OwnId);
        }
        let Some(b) = self.buddies.get(to) else {
            return Err(CommandError::NotABuddy);
        };
        match b.kind {
            crate::types::BuddyKind::Blocked => return Err(CommandError::Blocked),
            crate::types::BuddyKind::Temporary if !b.online => return Err(CommandError::NotOnline),
            _ => {}
        }
        if b.online && self.is_ruby(to) {
            return Err(CommandError::NotSupported);
        }
        if name.is_empty() || name.len() > self.cfg.files.max_name {
            return Err(CommandError::Empty);
        }
        if self.active_transfers() >= self.cfg.files.max_transfers {
            return Err(CommandError::TooMany);
        }
        let wire_id = self.new_wire_id(to);
        let file = self.insert_transfer(Transfer {
            peer: to.clone(),
            wire_id,
            dir: FileDirection::Send,
            name,
            size,
            block: self.cfg.files.block_size.max(1),
            state: FileState::Queued,
            resumable: false,
            accepted: false,
            done: 0,
            next_send: 0,
            sent_hi: 0,
            reading: BTreeSet::new(),
            dropped: false,
            error_at: None,
            bad_blocks: 0,
            restarts: 0,
            since: now,
            reported_at: now,
            reported_done: 0,
            rate: 0,
        });
        self.set_state(file, FileState::Queued);
        if self.buddies.get(to).is_some_and(|b| b.online) {
            self.offer(file, now);
        } else {
            self.ensure_outgoing(to, now);
        }
        Ok(file)
    }

    /// Accepts an incoming offer (or, while paused, accepts it for when the buddy is back).
    /// The shell has prepared where the blocks go.
    pub fn accept_file(&mut self, file: FileId, now: Timestamp) -> Result<(), CommandError> {
        let Some(t) = self.files.transfers.get_mut(&file) else {
            return Err(CommandError::NoSuchFile);
        };
        if t.dir != FileDirection::Receive
            || t.accepted
            || !matches!(t.state, FileState::Offered | FileState::Paused)
        {
            return Err(CommandError::FileState);
        }
        t.accepted = true;
        if t.state == FileState::Offered {
            self.start_receiving(file, now);
        }
        Ok(())
    }

    /// Declines an offer or stops a transfer in either direction; the buddy is told.
    pub fn cancel_file(&mut self, file: FileId, now: Timestamp) -> Result<(), CommandError> {
        match self.files.transfers.get(&file) {
            None => Err(CommandError::NoSuchFile),
            Some(t) if t.state.is_final() => Err(CommandError::FileState),
            Some(_) => {
                self.stop(file, FileState::Cancelled { by_peer: false }, now);
                Ok(())
            }
        }
    }

    /// The shell's answer to [`FileIo::Read`]. Stale answers (after a restart of the
    /// transfer) are ignored.
    pub fn file_read(&mut self, file: FileId, offset: u64, data: Vec<u8>, now: Timestamp) {
        let Some(t) = self.files.transfers.get_mut(&file) else {
            return;
        };
        if t.state != FileState::Transferring || !t.reading.remove(&offset) {
            return;
        }
        if data.len() as u64 != t.block_len(offset) {
            // The file changed under us.
            self.stop(file, FileState::Failed(FileFailure::Io), now);
            return;
        }
        t.sent_hi = t.sent_hi.max(offset + data.len() as u64);
        let (peer, id) = (t.peer.clone(), t.wire_id.clone());
        let Some(conn) = self.file_data_conn(&peer) else {
            return;
        };
        let md5 = md5_hex(&data);
        self.send(
            conn,
            &Packet::Filedata {
                id,
                start: offset,
                md5,
                data,
            },
        );
    }

    /// The shell could not read or write a transfer's file: it fails, and the buddy is told.
    pub fn file_failed(&mut self, file: FileId, now: Timestamp) {
        if self
            .files
            .transfers
            .get(&file)
            .is_some_and(|t| !t.state.is_final())
        {
            self.stop(file, FileState::Failed(FileFailure::Io), now);
        }
    }

    /// Brings back a transfer after a restart (before `start`). Emits nothing; it resumes
    /// when the buddy comes online, if the buddy supports [`FILE_RESUME_EXT`] (a restored
    /// transfer is always one that did).
    pub fn restore_transfer(&mut self, r: TransferRestore, now: Timestamp) {
        if self.files.transfers.contains_key(&r.id) {
            return;
        }
        let resumable = !r.queued;
        let t = Transfer {
            peer: r.peer,
            wire_id: r.wire_id,
            dir: r.direction,
            name: r.name,
            size: r.size,
            block: self.cfg.files.block_size.max(1),
            state: if r.queued {
                FileState::Queued
            } else {
                FileState::Paused
            },
            resumable,
            accepted: r.accepted,
            done: if r.direction == FileDirection::Receive {
                r.done.min(r.size)
            } else {
                0
            },
            next_send: 0,
            sent_hi: 0,
            reading: BTreeSet::new(),
            dropped: false,
            error_at: None,
            bad_blocks: 0,
            restarts: 0,
            since: now,
            reported_at: now,
            reported_done: 0,
            rate: 0,
        };
        self.files.next_id = self.files.next_id.max(r.id.0 + 1);
        self.files.index.insert(t.key(), r.id);
        self.files.transfers.insert(r.id, t);
    }

    /// New transfers get ids above `id` (ids of finished transfers the shell still lists).
    pub fn reserve_file_ids(&mut self, id: u64) {
        self.files.next_id = self.files.next_id.max(id);
    }

    // ----- queries -----

    /// One transfer.
    pub fn transfer(&self, file: FileId) -> Option<TransferView> {
        self.files.transfers.get(&file).map(|t| t.view(file))
    }

    /// Every transfer the core remembers (not over, and the most recent finished ones).
    pub fn transfers(&self) -> Vec<TransferView> {
        self.files
            .transfers
            .iter()
            .map(|(id, t)| t.view(*id))
            .collect()
    }

    /// File-transfer counters.
    pub fn file_stats(&self) -> &FileStats {
        &self.files.stats
    }

    // ----- hooks from the session -----

    /// A file packet from authenticated buddy `from`, on either of its connections.
    pub(crate) fn handle_file_packet(&mut self, from: &OnionId, p: Packet, now: Timestamp) {
        match p {
            Packet::Filename {
                id,
                size,
                block_size,
                name,
            } => self.on_filename(from, id, size, block_size, name, now),
            Packet::Filedata {
                id,
                start,
                md5,
                data,
            } => self.on_filedata(from, id, start, &md5, data, now),
            Packet::FiledataOk { id, start } => self.on_filedata_ok(from, id, start, now),
            Packet::FiledataError { id, start } => self.on_filedata_error(from, id, start, now),
            Packet::FileStopSending { id } => {
                if let Some(file) = self.active(from, FileDirection::Send, &id) {
                    self.stop(file, FileState::Cancelled { by_peer: true }, now);
                }
            }
            Packet::FileStopReceiving { id } => {
                // Sender → receiver: cancelled. Python TorChat also echoes it as a receiver.
                let file = self
                    .active(from, FileDirection::Receive, &id)
                    .or_else(|| self.active(from, FileDirection::Send, &id));
                if let Some(file) = file {
                    self.stop(file, FileState::Cancelled { by_peer: true }, now);
                }
            }
            _ => {}
        }
    }

    /// The buddy's session ended: transfers with it pause (resumable) or fail.
    pub(crate) fn files_session_ended(&mut self, peer: &OnionId, now: Timestamp) {
        let ids: Vec<FileId> = self.transfers_with(peer);
        for file in ids {
            let Some(t) = self.files.transfers.get_mut(&file) else {
                continue;
            };
            match t.state {
                FileState::Offered | FileState::Transferring if t.resumable => {
                    t.reading.clear();
                    t.next_send = t.done;
                    self.set_state(file, FileState::Paused);
                }
                FileState::Offered | FileState::Transferring => {
                    self.stop(file, FileState::Failed(FileFailure::Disconnected), now);
                }
                _ => {}
            }
        }
    }

    /// The buddy was removed from the list: its transfers are cancelled.
    pub(crate) fn files_buddy_removed(&mut self, peer: &OnionId, now: Timestamp) {
        for file in self.transfers_with(peer) {
            self.stop(file, FileState::Cancelled { by_peer: false }, now);
        }
    }

    /// The buddy is online (first `status`): queued offers go out, paused transfers resume.
    pub(crate) fn files_buddy_online(&mut self, peer: &OnionId, now: Timestamp) {
        let can_resume = self.supports(peer, FILE_RESUME_EXT);
        for file in self.transfers_with(peer) {
            let Some(t) = self.files.transfers.get_mut(&file) else {
                continue;
            };
            t.since = now;
            match (t.state, t.dir) {
                (FileState::Queued, _) => self.offer(file, now),
                (FileState::Paused, _) if !can_resume => {
                    self.stop(file, FileState::Failed(FileFailure::Disconnected), now);
                }
                (FileState::Paused, FileDirection::Receive) if t.accepted => {
                    self.start_receiving(file, now);
                }
                (FileState::Paused, FileDirection::Receive) => {
                    self.set_state(file, FileState::Offered);
                }
                (FileState::Paused, FileDirection::Send) if !t.accepted => {
                    self.set_state(file, FileState::Offered);
                }
                // A sender waits (paused) for the receiver's `filedata_error <offset>`.
                _ => {}
            }
        }
    }

    /// The earliest file-transfer deadline.
    pub(crate) fn file_timeout(&self) -> Option<Timestamp> {
        let cfg = &self.cfg.files;
        self.files
            .transfers
            .values()
            .filter_map(|t| match (t.state, t.dir) {
                (FileState::Offered, _) => Some(t.since + cfg.offer_timeout),
                (FileState::Transferring, FileDirection::Send) => Some(t.since + cfg.stall_timeout),
                (FileState::Transferring, FileDirection::Receive) => {
                    let nudge = t.since + cfg.stall_timeout / 2;
                    let nudged = t.error_at.is_some_and(|(_, at)| at >= nudge);
                    Some(if nudged {
                        t.since + cfg.stall_timeout
                    } else {
                        nudge
                    })
                }
                (FileState::Paused, FileDirection::Send)
                    if self.buddies.get(&t.peer).is_some_and(|b| b.online) =>
                {
                    Some(t.since + cfg.stall_timeout)
                }
                _ => None,
            })
            .min()
    }

    /// Offers not answered, stalled transfers, receivers' nudges.
    pub(crate) fn handle_file_timeout(&mut self, now: Timestamp) {
        let cfg = self.cfg.files.clone();
        let ids: Vec<FileId> = self.files.transfers.keys().copied().collect();
        for file in ids {
            let Some(t) = self.files.transfers.get(&file) else {
                continue;
            };
            let online = self.buddies.get(&t.peer).is_some_and(|b| b.online);
            match (t.state, t.dir) {
                (FileState::Offered, _) if now >= t.since + cfg.offer_timeout => {
                    self.stop(file, FileState::Failed(FileFailure::Expired), now);
                }
                (FileState::Transferring, FileDirection::Send)
                | (FileState::Paused, FileDirection::Send)
                    if (t.state == FileState::Transferring || online)
                        && now >= t.since + cfg.stall_timeout =>
                {
                    self.stop(file, FileState::Failed(FileFailure::Stalled), now);
                }
                (FileState::Transferring, FileDirection::Receive) => {
                    if now >= t.since + cfg.stall_timeout {
                        self.stop(file, FileState::Failed(FileFailure::Stalled), now);
                    } else if now >= t.since + cfg.stall_timeout / 2 {
                        let next = t.done;
                        let nudged = t
                            .error_at
                            .is_some_and(|(_, at)| at >= t.since + cfg.stall_timeout / 2);
                        if !nudged {
                            self.send_error(file, next, now, true);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    // ----- packets -----

    fn on_filename(
        &mut self,
        from: &OnionId,
        id: String,
        size: u64,
        block: u64,
        name: Vec<u8>,
        now: Timestamp,
    ) {
        if self.active(from, FileDirection::Receive, &id).is_some() {
            self.files.stats.ignored_packets += 1;
            return;
        }
        let cfg = &self.cfg.files;
        let refusal = if self.is_ruby(from) {
            Some((
                Some(FileRefusal::Unsupported),
                "file offer from ruby-torchat",
            ))
        } else if name.len() > cfg.max_name {
            Some((None, "file name over the length cap"))
        } else if block == 0 || block > cfg.max_block {
            Some((None, "bad file block size"))
        } else if size > cfg.max_size {
            Some((Some(FileRefusal::TooBig), "file over the size limit"))
        } else if self.pending_offers(Some(from)) >= cfg.max_offers_per_buddy
            || self.pending_offers(None) >= cfg.max_offers
            || self.active_transfers() >= cfg.max_transfers
        {
            Some((None, "too many file offers"))
        } else {
            None
        };
        if let Some((reason, what)) = refusal {
            self.files.stats.refused_offers += 1;
            self.send_out(from, Packet::FileStopSending { id });
            match reason {
                Some(reason) => self.event(Event::FileRefused {
                    from: from.clone(),
                    name,
                    size,
                    reason,
                }),
                None => self.event(Event::Misbehaviour {
                    id: Some(from.clone()),
                    what,
                }),
            }
            return;
        }
        let resumable = self.supports(from, FILE_RESUME_EXT);
        let file = self.insert_transfer(Transfer {
            peer: from.clone(),
            wire_id: id,
            dir: FileDirection::Receive,
            name: name.clone(),
            size,
            block,
            state: FileState::Offered,
            resumable,
            accepted: false,
            done: 0,
            next_send: 0,
            sent_hi: 0,
            reading: BTreeSet::new(),
            dropped: false,
            error_at: None,
            bad_blocks: 0,
            restarts: 0,
            since: now,
            reported_at: now,
            reported_done: 0,
            rate: 0,
        });
        self.event(Event::FileOffer {
            file,
            from: from.clone(),
            name,
            size,
        });
    }

    fn on_filedata(
        &mut self,
        from: &OnionId,
        id: String,
        start: u64,
        md5: &str,
        data: Vec<u8>,
        now: Timestamp,
    ) {
        let found = self.find(from, FileDirection::Receive, &id);
        let Some(file) = found else {
            // As Python TorChat does: data for an id we do not know is answered with a stop.
            self.files.stats.unknown_id_answers += 1;
            self.send_out(from, Packet::FileStopSending { id });
            return;
        };
        let Some(t) = self.files.transfers.get_mut(&file) else {
            return;
        };
        match t.state {
            FileState::Transferring => {}
            FileState::Offered | FileState::Paused | FileState::Queued => {
                // Not accepted yet (jtorchat does the same before Start): dropped; the
                // receiver asks for a restart from its offset once it goes.
                t.dropped = true;
                return;
            }
            FileState::Complete => return,
            FileState::Cancelled { .. } | FileState::Failed(_) => {
                self.files.stats.unknown_id_answers += 1;
                self.send_out(from, Packet::FileStopSending { id });
                return;
            }
        }
        let len = data.len() as u64;
        if len == 0 || len > t.block || start.saturating_add(len) > t.size {
            self.event(Event::Misbehaviour {
                id: Some(from.clone()),
                what: "file block over the block size or past the end",
            });
            self.stop(file, FileState::Failed(FileFailure::Protocol), now);
            return;
        }
        let next = t.done;
        if start > next {
            // A gap: ask for a restart at our offset (once per burst).
            self.send_error(file, next, now, false);
            return;
        }
        let good = md5.eq_ignore_ascii_case(&md5_hex(&data));
        if start < next {
            // A block we already have (the sender went back): confirm it again, as jtorchat
            // does, so that the sender's window moves; never write it twice.
            if good && start + len <= next {
                self.send_out(from, Packet::FiledataOk { id, start });
            } else {
                self.files.stats.ignored_packets += 1;
            }
            return;
        }
        if !good {
            self.files.stats.bad_blocks += 1;
            t.bad_blocks += 1;
            if t.bad_blocks > self.cfg.files.max_bad_blocks {
                self.event(Event::Misbehaviour {
                    id: Some(from.clone()),
                    what: "too many file blocks with a bad md5",
                });
                self.stop(file, FileState::Failed(FileFailure::Protocol), now);
            } else {
                self.send_error(file, next, now, false);
            }
            return;
        }
        t.done = next + len;
        t.error_at = None;
        t.since = now;
        let complete = t.done == t.size;
        self.out.push_back(Output::File(FileIo::Write {
            file,
            offset: start,
            data,
        }));
        self.send_out(from, Packet::FiledataOk { id, start });
        self.progress(file, now, complete);
        if complete {
            self.finish(file, FileState::Complete);
        }
    }

    fn on_filedata_ok(&mut self, from: &OnionId, id: String, start: u64, now: Timestamp) {
        let Some(file) = self.sender_or_answer(from, id) else {
            return;
        };
        let Some(t) = self.files.transfers.get_mut(&file) else {
            return;
        };
        if start % t.block != 0 || start >= t.sent_hi {
            self.files.stats.ignored_packets += 1;
            return;
        }
        t.accepted = true;
        let end = start + t.block_len(start);
        if end <= t.done {
            return; // a duplicate confirmation (jtorchat after a restart)
        }
        t.done = end;
        t.since = now;
        if t.next_send < t.done {
            t.next_send = t.done;
        }
        let done = t.done;
        t.reading.retain(|&o| o >= done);
        let complete = t.done == t.size;
        self.progress(file, now, complete);
        if complete {
            self.finish(file, FileState::Complete);
        } else {
            self.pump(file);
        }
    }

    fn on_filedata_error(&mut self, from: &OnionId, id: String, start: u64, now: Timestamp) {
        let Some(file) = self.sender_or_answer(from, id) else {
            return;
        };
        let max_restarts = self.cfg.files.max_restarts;
        let Some(t) = self.files.transfers.get_mut(&file) else {
            return;
        };
        if start % t.block != 0 || start > t.size {
            self.files.stats.ignored_packets += 1;
            return;
        }
        t.restarts += 1;
        if t.restarts > max_restarts {
            self.event(Event::Misbehaviour {
                id: Some(from.clone()),
                what: "too many file restarts",
            });
            self.stop(file, FileState::Failed(FileFailure::Protocol), now);
            return;
        }
        // The receiver has everything before `start` and wants the rest (also how a torchat
        // receiver accepts, and resumes after a disconnect).
        t.accepted = true;
        t.done = start;
        t.next_send = start;
        t.reading.clear();
        t.since = now;
        if start == t.size {
            self.progress(file, now, true);
            self.finish(file, FileState::Complete);
            return;
        }
        if t.state != FileState::Transferring {
            self.set_state(file, FileState::Transferring);
        }
        self.pump(file);
    }

    // ----- helpers -----

    /// The transfer a sender-side packet (`filedata_ok`/`filedata_error`) is about, if it is
    /// going; else answers as Python TorChat does (`file_stop_receiving`) unless it completed.
    fn sender_or_answer(&mut self, from: &OnionId, id: String) -> Option<FileId> {
        let file = self.find(from, FileDirection::Send, &id);
        let state = file
            .and_then(|f| self.files.transfers.get(&f))
            .map(|t| t.state);
        match state {
            Some(FileState::Transferring | FileState::Offered | FileState::Paused) => file,
            Some(FileState::Complete) => None,
            _ => {
                self.files.stats.unknown_id_answers += 1;
                self.send_out(from, Packet::FileStopReceiving { id });
                None
            }
        }
    }

    /// Sends the offer of a queued transfer (the buddy is online).
    fn offer(&mut self, file: FileId, now: Timestamp) {
        let Some(t) = self.files.transfers.get(&file) else {
            return;
        };
        let peer = t.peer.clone();
        if self.is_ruby(&peer) {
            self.stop(file, FileState::Failed(FileFailure::Unsupported), now);
            return;
        }
        let Some(conn) = self.file_data_conn(&peer) else {
            return;
        };
        let resumable = self.supports(&peer, FILE_RESUME_EXT);
        let Some(t) = self.files.transfers.get_mut(&file) else {
            return;
        };
        t.resumable = resumable;
        t.since = now;
        let p = Packet::Filename {
            id: t.wire_id.clone(),
            size: t.size,
            block_size: t.block,
            name: t.name.clone(),
        };
        let size = t.size;
        self.send(conn, &p);
        if resumable {
            // A torchat receiver says when to start (`filedata_error <id> 0` once accepted).
            self.set_state(file, FileState::Offered);
        } else if size == 0 {
            self.finish(file, FileState::Complete);
        } else {
            // Legacy receivers take blocks at once (jtorchat drops them until its user
            // presses Start, then asks for a restart).
            self.set_state(file, FileState::Transferring);
            self.pump(file);
        }
    }

    /// The receiver goes: from `done`, asking the sender to (re)start there when needed.
    fn start_receiving(&mut self, file: FileId, now: Timestamp) {
        let Some(t) = self.files.transfers.get_mut(&file) else {
            return;
        };
        t.since = now;
        t.error_at = None;
        let ask = t.resumable || t.dropped || t.done > 0;
        t.dropped = false;
        let (done, size) = (t.done, t.size);
        self.set_state(file, FileState::Transferring);
        if ask {
            self.send_error(file, done, now, true);
        }
        if done == size {
            self.progress(file, now, true);
            self.finish(file, FileState::Complete);
        }
    }

    /// Asks for more blocks while the window allows.
    fn pump(&mut self, file: FileId) {
        let cfg = &self.cfg.files;
        let Some(t) = self.files.transfers.get_mut(&file) else {
            return;
        };
        if t.state != FileState::Transferring {
            return;
        }
        let window = t.window(cfg);
        while t.next_send < t.size && t.next_send - t.done < window {
            let offset = t.next_send;
            let len = t.block_len(offset);
            t.reading.insert(offset);
            t.next_send += len;
            self.out.push_back(Output::File(FileIo::Read {
                file,
                offset,
                len: len as usize,
            }));
        }
    }

    /// `filedata_error <id> <offset>` on our connection, at most once per `error_interval`
    /// for the same offset unless `force`.
    fn send_error(&mut self, file: FileId, offset: u64, now: Timestamp, force: bool) {
        let interval = self.cfg.files.error_interval;
        let Some(t) = self.files.transfers.get_mut(&file) else {
            return;
        };
        if !force
            && t.error_at
                .is_some_and(|(o, at)| o == offset && now < at + interval)
        {
            return;
        }
        t.error_at = Some((offset, now));
        let (peer, id) = (t.peer.clone(), t.wire_id.clone());
        self.send_out(&peer, Packet::FiledataError { id, start: offset });
    }

    /// Ends a transfer that is not over: tells the buddy (if connected) and the shell.
    fn stop(&mut self, file: FileId, state: FileState, _now: Timestamp) {
        let Some(t) = self.files.transfers.get(&file) else {
            return;
        };
        if t.state.is_final() {
            return;
        }
        let (peer, id, dir, was) = (t.peer.clone(), t.wire_id.clone(), t.dir, t.state);
        let told_by_peer = matches!(state, FileState::Cancelled { by_peer: true });
        if was != FileState::Queued && !(told_by_peer && dir == FileDirection::Receive) {
            // A receiver asks the sender to stop; a sender says it stopped (also in answer to
            // the receiver's stop, as Python TorChat and jtorchat do).
            let p = match dir {
                FileDirection::Receive => Packet::FileStopSending { id },
                FileDirection::Send => Packet::FileStopReceiving { id },
            };
            self.send_out(&peer, p);
        }
        self.finish(file, state);
    }

    /// Moves a transfer to a final state and releases its file.
    fn finish(&mut self, file: FileId, state: FileState) {
        let Some(t) = self.files.transfers.get_mut(&file) else {
            return;
        };
        t.reading.clear();
        self.out.push_back(Output::File(FileIo::Close {
            file,
            complete: state == FileState::Complete,
        }));
        self.set_state(file, state);
        self.files.finished.push_back(file);
        while self.files.finished.len() > self.cfg.files.max_finished {
            if let Some(old) = self.files.finished.pop_front() {
                if let Some(t) = self.files.transfers.remove(&old) {
                    if self.files.index.get(&t.key()) == Some(&old) {
                        self.files.index.remove(&t.key());
                    }
                }
            }
        }
    }

    fn set_state(&mut self, file: FileId, state: FileState) {
        if let Some(t) = self.files.transfers.get_mut(&file) {
            t.state = state;
            self.event(Event::FileState { file, state });
        }
    }

    /// A progress event, at most every `progress_interval` (always when `force`).
    fn progress(&mut self, file: FileId, now: Timestamp, force: bool) {
        let interval = self.cfg.files.progress_interval;
        let Some(t) = self.files.transfers.get_mut(&file) else {
            return;
        };
        let elapsed = now.since(t.reported_at);
        if !force && elapsed < interval {
            return;
        }
        let ms = elapsed.as_millis() as u64;
        let bytes = t.done.saturating_sub(t.reported_done);
        if let Some(inst) = bytes.saturating_mul(1000).checked_div(ms) {
            // Smoothed so that a burst does not make the estimate jump.
            t.rate = if t.rate == 0 {
                inst
            } else {
                (t.rate * 3 + inst) / 4
            };
        }
        t.reported_at = now;
        t.reported_done = t.done;
        let eta_secs = (t.rate > 0).then(|| (t.size - t.done).div_ceil(t.rate));
        let (done, size, rate) = (t.done, t.size, t.rate);
        self.event(Event::FileProgress {
            file,
            done,
            size,
            rate,
            eta_secs,
        });
    }

    fn insert_transfer(&mut self, t: Transfer) -> FileId {
        self.files.next_id += 1;
        let file = FileId(self.files.next_id);
        self.files.index.insert(t.key(), file);
        self.files.transfers.insert(file, t);
        file
    }

    fn find(&self, peer: &OnionId, dir: FileDirection, id: &str) -> Option<FileId> {
        self.files
            .index
            .get(&(peer.clone(), dir, id.to_owned()))
            .copied()
    }

    fn active(&self, peer: &OnionId, dir: FileDirection, id: &str) -> Option<FileId> {
        self.find(peer, dir, id).filter(|f| {
            self.files
                .transfers
                .get(f)
                .is_some_and(|t| !t.state.is_final())
        })
    }

    fn transfers_with(&self, peer: &OnionId) -> Vec<FileId> {
        self.files
            .transfers
            .iter()
            .filter(|(_, t)| t.peer == *peer && !t.state.is_final())
            .map(|(id, _)| *id)
            .collect()
    }

    fn pending_offers(&self, peer: Option<&OnionId>) -> usize {
        self.files
            .transfers
            .values()
            .filter(|t| t.dir == FileDirection::Receive && t.state == FileState::Offered)
            .filter(|t| peer.is_none_or(|p| t.peer == *p))
            .count()
    }

    fn active_transfers(&self) -> usize {
        self.files
            .transfers
            .values()
            .filter(|t| !t.state.is_final())
            .count()
    }

    /// A fresh wire id: a decimal 32-bit number, as Python TorChat makes them.
    fn new_wire_id(&mut self, peer: &OnionId) -> String {
        loop {
            let id = self.rng.next_u32().to_string();
            if self.find(peer, FileDirection::Send, &id).is_none() {
                return id;
            }
        }
    }

    fn is_ruby(&self, peer: &OnionId) -> bool {
        self.buddies
            .get(peer)
            .is_some_and(|b| b.info.client.as_deref() == Some(RUBY_CLIENT))
    }

    /// The connection the peer opened to us, for `filename`/`filedata`; never ruby-torchat's.
    fn file_data_conn(&self, peer: &OnionId) -> Option<ConnId> {
        if self.is_ruby(peer) {
            return None;
        }
        let inc = self.buddies.get(peer)?.inc?;
        self.conns
            .get(&inc)
            .is_some_and(|c| c.authenticated)
            .then_some(inc)
    }

    /// A control packet on our outgoing connection to `peer`.
    fn send_out(&mut self, peer: &OnionId, p: Packet) {
        if let Some(out) = self.ready_out(peer) {
            self.send(out, &p);
        }
    }
}
