//! The SQLite schema as ordered migrations, and the code that applies them.
//!
//! `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`; the version lives in the file
//! header (`PRAGMA user_version`). Never edit a released migration: append a new one.

use rusqlite::{Connection, TransactionBehavior};

use crate::{Error, Result};

/// The ordered migrations. Version 0 is an empty file.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE buddies (
        id           TEXT PRIMARY KEY NOT NULL,
        kind         TEXT NOT NULL CHECK (kind IN ('permanent', 'temporary', 'blocked')),
        alias        TEXT,
        profile_name BLOB,
        profile_text BLOB,
        client       BLOB,
        version      BLOB
    ) WITHOUT ROWID;

    CREATE TABLE group_chats (
        gid        TEXT PRIMARY KEY NOT NULL,
        modes      TEXT NOT NULL,
        invited_by TEXT,
        state      TEXT NOT NULL CHECK (state IN ('joining', 'joined', 'left')),
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE group_members (
        gid      TEXT NOT NULL REFERENCES group_chats (gid) ON DELETE CASCADE,
        member   TEXT NOT NULL,
        added_at INTEGER NOT NULL,
        PRIMARY KEY (gid, member)
    ) WITHOUT ROWID;

    CREATE TABLE messages (
        seq        INTEGER PRIMARY KEY,
        msg_id     BLOB NOT NULL UNIQUE CHECK (length(msg_id) = 16),
        conv_kind  TEXT NOT NULL CHECK (conv_kind IN ('buddy', 'group')),
        conv       TEXT NOT NULL,
        direction  TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        sender     TEXT NOT NULL,
        text       BLOB NOT NULL,
        ts         INTEGER NOT NULL,
        delivery   TEXT CHECK (delivery IN ('queued', 'sent', 'delivered', 'failed')),
        delivery_k INTEGER NOT NULL DEFAULT 0,
        trust      TEXT CHECK (trust IN ('direct', 'relayed', 'signed', 'unconfirmed', 'own')),
        trust_k    INTEGER NOT NULL DEFAULT 0,
        trust_n    INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX messages_by_conversation ON messages (conv_kind, conv, seq);

    CREATE TABLE claims (
        msg_id      BLOB NOT NULL REFERENCES messages (msg_id),
        claimant    TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (msg_id, claimant)
    ) WITHOUT ROWID;

    CREATE TABLE outbox (
        msg_id     BLOB NOT NULL REFERENCES messages (msg_id),
        dest       TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        next_at    INTEGER NOT NULL,
        PRIMARY KEY (msg_id, dest)
    ) WITHOUT ROWID;
    CREATE INDEX outbox_by_next ON outbox (next_at);
    ",
    // 1 -> 2: the core's per-member packet queue (group outbox).
    "
    CREATE TABLE packet_queue (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        id         BLOB NOT NULL UNIQUE,
        dest       TEXT NOT NULL,
        gid        TEXT NOT NULL,
        line       BLOB NOT NULL,
        expires_at INTEGER NOT NULL,
        own        BLOB
    );
    ",
    // 2 -> 3: file transfers (the node's file module).
    "
    CREATE TABLE transfers (
        id         INTEGER PRIMARY KEY,
        direction  TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        peer       TEXT NOT NULL,
        wire_id    TEXT NOT NULL,
        name       BLOB NOT NULL,
        size       INTEGER NOT NULL,
        done       INTEGER NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('queued', 'offered', 'transferring', 'paused',
                                                  'complete', 'cancelled', 'failed')),
        reason     TEXT,
        resumable  INTEGER NOT NULL,
        accepted   INTEGER NOT NULL,
        path       BLOB,
        part       BLOB,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    ",
    // 3 -> 4: contact requests from strangers and the messages they hold.
    "
    CREATE TABLE requests (
        peer     TEXT PRIMARY KEY,
        added_me INTEGER NOT NULL,
        first_at INTEGER NOT NULL,
        last_at  INTEGER NOT NULL,
        dropped  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE request_messages (
        seq  INTEGER PRIMARY KEY AUTOINCREMENT,
        id   BLOB NOT NULL UNIQUE,
        peer TEXT NOT NULL,
        text BLOB NOT NULL,
        at   INTEGER NOT NULL
    );
    CREATE INDEX request_messages_by_peer ON request_messages (peer);
    ",
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Reads `PRAGMA user_version`.
pub(crate) fn user_version(conn: &Connection) -> Result<u32> {
    let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    u32::try_from(v).map_err(|_| Error::Corrupt(format!("negative schema version {v}")))
}

/// Fails with [`Error::NewerSchema`] if the file is newer than `migrations`; changes nothing.
pub(crate) fn check_not_newer(conn: &Connection, migrations: &[&str]) -> Result<u32> {
    let found = user_version(conn)?;
    let known = known(migrations);
    if found > known {
        return Err(Error::NewerSchema { found, known });
    }
    Ok(found)
}

fn known(migrations: &[&str]) -> u32 {
    u32::try_from(migrations.len()).unwrap_or(u32::MAX)
}

/// Applies the migrations the file lacks, all in one transaction, and returns the version.
pub(crate) fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<u32> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = check_not_newer(&tx, migrations)?;
    let start = usize::try_from(found).unwrap_or(usize::MAX);
    for (i, sql) in migrations.iter().enumerate().skip(start) {
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
    }
    tx.commit()?;
    Ok(known(migrations))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAKE: &[&str] = &[
        "CREATE TABLE a (x INTEGER);",
        "CREATE TABLE b (y INTEGER);",
        "INSERT INTO a VALUES (1);",
    ];

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn fresh_database_gets_every_migration() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(user_version(&conn).unwrap(), 0);
        assert_eq!(migrate(&mut conn, FAKE).unwrap(), 3);
        assert_eq!(user_version(&conn).unwrap(), 3);
        assert_eq!(count(&conn, "SELECT count(*) FROM a"), 1);
        // Running again applies nothing.
        migrate(&mut conn, FAKE).unwrap();
        assert_eq!(count(&conn, "SELECT count(*) FROM a"), 1);
    }

    #[test]
    fn only_missing_migrations_run() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &FAKE[..2]).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 2);
        assert_eq!(count(&conn, "SELECT count(*) FROM a"), 0);
        migrate(&mut conn, FAKE).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 3);
        assert_eq!(count(&conn, "SELECT count(*) FROM a"), 1);
    }

    #[test]
    fn a_failing_migration_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        let bad = [FAKE[0], FAKE[1], "THIS IS NOT SQL"];
        assert!(matches!(migrate(&mut conn, &bad), Err(Error::Sqlite(_))));
        assert_eq!(user_version(&conn).unwrap(), 0);
        let tables = count(
            &conn,
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
        );
        assert_eq!(tables, 0);
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, FAKE).unwrap();
        let err = migrate(&mut conn, &FAKE[..1]).unwrap_err();
        assert!(matches!(err, Error::NewerSchema { found: 3, known: 1 }));
        assert!(check_not_newer(&conn, &FAKE[..2]).is_err());
        assert_eq!(check_not_newer(&conn, FAKE).unwrap(), 3);
    }

    #[test]
    fn real_schema_applies() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, MIGRATIONS).unwrap(), SCHEMA_VERSION);
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
    }
}
