//! [`SqliteStore`]: the [`Store`] on disk.
//!
//! One file (plus SQLite's `-wal` and `-shm` beside it), opened with:
//! - `journal_mode=WAL` and `synchronous=FULL`: a commit is `fsync`ed before it returns, so a
//!   write that returned survives a crash or power loss;
//! - `foreign_keys=ON` and a busy timeout of [`BUSY_TIMEOUT`];
//! - the schema brought to [`SCHEMA_VERSION`] by ordered migrations in one transaction; a file
//!   from a newer program is refused with [`Error::NewerSchema`] and left untouched;
//! - on unix, mode `0600` for the file and its `-wal`/`-shm` (SQLite creates those with the
//!   main file's mode; we also fix them up after opening).

mod codec;
mod schema;
mod write;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use torchat_wire::{GroupId, OnionId};

pub use schema::SCHEMA_VERSION;

use crate::op::{to_sql_time, validate_all};
use crate::{
    Buddy, Claim, Conversation, Error, Group, Member, MsgId, Op, OutboxEntry, QueuedPacket, Result,
    RowId, SeqSet, Store, StoredMessage,
};

/// How long a write waits for another connection's lock before failing with "busy".
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The [`Store`] in an SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    commits: u64,
}

/// Prepared statements kept per connection: every statement the store runs, so that none is
/// compiled again on the hot path.
const STATEMENT_CACHE: usize = 64;
/// SQLite's page cache, in KiB (`PRAGMA cache_size` takes negative numbers as KiB). The
/// operating system caches the file too; this only saves the copies on pages read again.
const PAGE_CACHE_KIB: i64 = 1024;

/// What the connection is running with (for `torchat doctor`-style reports and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// `PRAGMA journal_mode` (`wal`).
    pub journal_mode: String,
    /// `PRAGMA synchronous` (2 = `FULL`).
    pub synchronous: i64,
    /// `PRAGMA foreign_keys`.
    pub foreign_keys: bool,
    /// `PRAGMA busy_timeout` in milliseconds.
    pub busy_timeout_ms: i64,
    /// `PRAGMA user_version`: the schema version of the file.
    pub schema_version: u32,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it to
    /// [`SCHEMA_VERSION`]. The directory must exist.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
            return Err(Error::Invalid(format!(
                "{path:?} is not a database file path"
            )));
        }
        #[cfg(unix)]
        create_private(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
        // Refuse a newer file before anything (even the journal mode) is written to it.
        schema::check_not_newer(&conn, schema::MIGRATIONS)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Invalid(format!(
                "could not switch {path:?} to WAL (journal mode is {mode})"
            )));
        }
        conn.execute_batch("PRAGMA synchronous = FULL;")?;
        conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::migrate(&mut conn, schema::MIGRATIONS)?;
        #[cfg(unix)]
        private_sidecars(path)?;
        Ok(SqliteStore {
            conn,
            path: path.to_owned(),
            commits: 0,
        })
    }

    /// The path the store was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection's settings as SQLite reports them.
    pub fn diagnostics(&self) -> Result<Diagnostics> {
        let get = |pragma: &str| -> Result<i64> {
            Ok(self
                .conn
                .query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))?)
        };
        Ok(Diagnostics {
            journal_mode: self
                .conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
            synchronous: get("synchronous")?,
            foreign_keys: get("foreign_keys")? != 0,
            busy_timeout_ms: get("busy_timeout")?,
            schema_version: schema::user_version(&self.conn)?,
        })
    }

    /// Runs SQLite's `PRAGMA integrity_check`; `Ok(())` when it reports `ok`.
    pub fn integrity_check(&self) -> Result<()> {
        let report: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        if report == "ok" {
            Ok(())
        } else {
            Err(Error::Corrupt(report))
        }
    }

    fn collect<T>(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
        f: impl Fn(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(p)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(f(row)?);
        }
        Ok(out)
    }

    fn first<T>(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
        f: impl Fn(&Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        Ok(self.collect(sql, p, f)?.into_iter().next())
    }
}

/// Creates the file with mode 0600 if it does not exist, and sets 0600 if it does.
#[cfg(unix)]
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// Sets 0600 on the `-wal` and `-shm` files if they exist.
#[cfg(unix)]
fn private_sidecars(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Store for SqliteStore {
    fn apply(&mut self, ops: &[Op]) -> Result<Vec<u64>> {
        validate_all(ops)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = ops
            .iter()
            .map(|op| write::exec(&tx, op))
            .collect::<Result<Vec<u64>>>()?;
        // Dropping `tx` on the error path above rolls back.
        tx.commit()?;
        self.commits += 1;
        Ok(out)
    }

    fn commits(&self) -> u64 {
        self.commits
    }

    fn release_memory(&self) {
        // Frees what SQLite can of its page cache; nothing is lost but speed.
        let _ = self.conn.execute_batch("PRAGMA shrink_memory;");
    }

    fn get_setting(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn settings(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.collect("SELECT key, value FROM settings ORDER BY key", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }

    fn buddy(&self, id: &OnionId) -> Result<Option<Buddy>> {
        let sql = format!("SELECT {} FROM buddies WHERE id = ?1", codec::BUDDY_COLS);
        self.first(&sql, [id.as_str()], codec::read_buddy)
    }

    fn buddies(&self) -> Result<Vec<Buddy>> {
        let sql = format!("SELECT {} FROM buddies ORDER BY id", codec::BUDDY_COLS);
        self.collect(&sql, [], codec::read_buddy)
    }

    fn group(&self, gid: &GroupId) -> Result<Option<Group>> {
        let sql = format!(
            "SELECT {} FROM group_chats WHERE gid = ?1",
            codec::GROUP_COLS
        );
        self.first(&sql, [gid.as_str()], codec::read_group)
    }

    fn groups(&self) -> Result<Vec<Group>> {
        let sql = format!("SELECT {} FROM group_chats ORDER BY gid", codec::GROUP_COLS);
        self.collect(&sql, [], codec::read_group)
    }

    fn members(&self, gid: &GroupId) -> Result<Vec<Member>> {
        self.collect(
            "SELECT gid, member, added_at FROM group_members WHERE gid = ?1
             ORDER BY added_at, member",
            [gid.as_str()],
            codec::read_member,
        )
    }

    fn message(&self, id: &MsgId) -> Result<Option<StoredMessage>> {
        let sql = format!(
            "SELECT {} FROM messages WHERE msg_id = ?1",
            codec::MESSAGE_COLS
        );
        self.first(&sql, [&id.0[..]], codec::read_message)
    }

    fn history(
        &self,
        conversation: &Conversation,
        before: Option<RowId>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let (kind, conv) = codec::conversation(conversation);
        // Rows are at most i64::MAX, so a larger bound means "all".
        let before = before.map_or(i64::MAX, |r| i64::try_from(r.0).unwrap_or(i64::MAX));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {} FROM messages WHERE conv_kind = ?1 AND conv = ?2 AND seq < ?3
             ORDER BY seq DESC LIMIT ?4",
            codec::MESSAGE_COLS
        );
        let mut out = self.collect(
            &sql,
            params![kind, conv, before, limit],
            codec::read_message,
        )?;
        out.reverse();
        Ok(out)
    }

    fn conversations(&self) -> Result<Vec<Conversation>> {
        self.collect(
            "SELECT conv_kind, conv, max(seq) AS last FROM messages
             GROUP BY conv_kind, conv ORDER BY last DESC",
            [],
            |r| {
                let kind: String = r.get(0)?;
                let conv: String = r.get(1)?;
                match kind.as_str() {
                    "buddy" => Ok(Conversation::Buddy(codec::onion(conv)?)),
                    _ => GroupId::new(&conv)
                        .map(Conversation::Group)
                        .ok_or_else(|| Error::Corrupt(format!("group id {conv:?}"))),
                }
            },
        )
    }

    fn queued_messages(&self) -> Result<Vec<StoredMessage>> {
        // The partial index holds only queued messages, in row order (named: the planner
        // could otherwise pick the conversation index and read every 1:1 message).
        let sql = format!(
            "SELECT {} FROM messages INDEXED BY messages_queued
             WHERE delivery = 'queued' AND direction = 'out' AND conv_kind = 'buddy'
             ORDER BY seq",
            codec::MESSAGE_COLS
        );
        self.collect(&sql, [], codec::read_message)
    }

    fn claims(&self, id: &MsgId) -> Result<Vec<Claim>> {
        self.collect(
            "SELECT msg_id, claimant, received_at FROM claims WHERE msg_id = ?1
             ORDER BY received_at, claimant",
            [&id.0[..]],
            codec::read_claim,
        )
    }

    fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        let sql = format!(
            "SELECT {} FROM outbox ORDER BY created_at, msg_id, dest",
            codec::OUTBOX_COLS
        );
        self.collect(&sql, [], codec::read_outbox)
    }

    fn outbox_due(&self, now: u64) -> Result<Vec<OutboxEntry>> {
        let sql = format!(
            "SELECT {} FROM outbox WHERE next_at <= ?1 AND expires_at > ?1
             ORDER BY created_at, msg_id, dest",
            codec::OUTBOX_COLS
        );
        self.collect(&sql, [to_sql_time(now)], codec::read_outbox)
    }

    fn sync_range(
        &self,
        gid: &GroupId,
        speaker: &OnionId,
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredMessage>> {
        let sql = format!(
            "SELECT {} FROM messages WHERE conv = ?1 AND sender = ?2 AND gseq BETWEEN ?3 AND ?4
               AND conv_kind = 'group'
             ORDER BY gseq",
            codec::MESSAGE_COLS
        );
        self.collect(
            &sql,
            params![
                gid.as_str(),
                speaker.as_str(),
                to_sql_time(from),
                to_sql_time(to)
            ],
            codec::read_message,
        )
    }

    fn sync_seqs(&self) -> Result<Vec<(GroupId, u64)>> {
        self.collect("SELECT gid, next FROM sync_seq ORDER BY gid", [], |r| {
            let next: i64 = r.get(1)?;
            Ok((
                codec::gid(r.get(0)?)?,
                u64::try_from(next).map_err(|_| Error::Corrupt(format!("next {next}")))?,
            ))
        })
    }

    fn sync_vectors(&self, gid: &GroupId) -> Result<Vec<(OnionId, OnionId, SeqSet)>> {
        self.collect(
            "SELECT member, speaker, held FROM sync_vectors WHERE gid = ?1
             ORDER BY member, speaker",
            [gid.as_str()],
            |r| {
                Ok((
                    codec::onion(r.get(0)?)?,
                    codec::onion(r.get(1)?)?,
                    codec::read_seqset(r.get(2)?)?,
                ))
            },
        )
    }

    fn peer_extensions(&self) -> Result<Vec<(OnionId, Vec<String>)>> {
        self.collect(
            "SELECT id, exts FROM peer_extensions ORDER BY id",
            [],
            |r| {
                let exts: String = r.get(1)?;
                Ok((
                    codec::onion(r.get(0)?)?,
                    exts.split(' ')
                        .filter(|e| !e.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ))
            },
        )
    }

    fn transfers(&self) -> Result<Vec<crate::Transfer>> {
        let sql = format!("SELECT {} FROM transfers ORDER BY id", codec::TRANSFER_COLS);
        self.collect(&sql, [], codec::read_transfer)
    }

    fn requests(&self) -> Result<Vec<crate::Request>> {
        self.collect(
            "SELECT peer, added_me, first_at, last_at, dropped FROM requests ORDER BY peer",
            [],
            codec::read_request,
        )
    }

    fn request_messages(&self) -> Result<Vec<crate::RequestMessage>> {
        self.collect(
            "SELECT id, peer, text, at FROM request_messages ORDER BY seq",
            [],
            codec::read_request_message,
        )
    }

    fn queued_packets(&self) -> Result<Vec<QueuedPacket>> {
        self.collect(
            "SELECT id, dest, gid, line, expires_at, own FROM packet_queue ORDER BY seq",
            [],
            codec::read_queued,
        )
    }
}
