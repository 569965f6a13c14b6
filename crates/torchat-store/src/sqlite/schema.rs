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
    // 4 -> 5: `messages` rebuilt with the same columns and rows; only its CHECKs change, to
    // equivalent ones without `IN` lists of more than two values (SQLite evaluates those by
    // building a temporary table on every insert and update, the largest cost of an insert).
    // Plus an index for the queued outgoing messages, read at start without the history.
    // (Foreign keys are off while migrating; `migrate` checks them before committing.)
    "
    CREATE TABLE messages_v5 (
        seq        INTEGER PRIMARY KEY,
        msg_id     BLOB NOT NULL UNIQUE CHECK (length(msg_id) = 16),
        conv_kind  TEXT NOT NULL CHECK (conv_kind IN ('buddy', 'group')),
        conv       TEXT NOT NULL,
        direction  TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        sender     TEXT NOT NULL,
        text       BLOB NOT NULL,
        ts         INTEGER NOT NULL,
        delivery   TEXT CHECK (delivery = 'queued' OR delivery = 'sent'
                               OR delivery = 'delivered' OR delivery = 'failed'),
        delivery_k INTEGER NOT NULL DEFAULT 0,
        trust      TEXT CHECK (trust = 'direct' OR trust = 'relayed' OR trust = 'signed'
                               OR trust = 'unconfirmed' OR trust = 'own'),
        trust_k    INTEGER NOT NULL DEFAULT 0,
        trust_n    INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO messages_v5 (seq, msg_id, conv_kind, conv, direction, sender, text, ts,
                             delivery, delivery_k, trust, trust_k, trust_n)
        SELECT seq, msg_id, conv_kind, conv, direction, sender, text, ts,
               delivery, delivery_k, trust, trust_k, trust_n FROM messages;
    DROP TABLE messages;
    ALTER TABLE messages_v5 RENAME TO messages;
    CREATE INDEX messages_by_conversation ON messages (conv_kind, conv, seq);
    CREATE INDEX messages_queued ON messages (seq) WHERE delivery = 'queued';
    ",
    // 5 -> 6: extension torchat_sync — each group message's sequence number, time and
    // signature (unique per group and speaker), the next number per group (never lowered),
    // what each member holds of each speaker, and what each peer supports.
    "
    ALTER TABLE messages ADD COLUMN gseq INTEGER CHECK (gseq IS NULL OR gseq > 0);
    ALTER TABLE messages ADD COLUMN gtime INTEGER;
    ALTER TABLE messages ADD COLUMN sig BLOB CHECK (sig IS NULL OR length(sig) = 64);
    CREATE UNIQUE INDEX messages_by_speaker_seq ON messages (conv, sender, gseq)
        WHERE gseq IS NOT NULL;
    CREATE INDEX messages_by_time ON messages (conv_kind, ts);

    CREATE TABLE sync_seq (
        gid  TEXT PRIMARY KEY NOT NULL,
        next INTEGER NOT NULL CHECK (next > 0)
    ) WITHOUT ROWID;

    CREATE TABLE sync_vectors (
        gid     TEXT NOT NULL,
        member  TEXT NOT NULL,
        speaker TEXT NOT NULL,
        held    TEXT NOT NULL,
        PRIMARY KEY (gid, member, speaker)
    ) WITHOUT ROWID;

    CREATE TABLE peer_extensions (
        id   TEXT PRIMARY KEY NOT NULL,
        exts TEXT NOT NULL
    ) WITHOUT ROWID;
    ",
    // 6 -> 7: the time index serves only the pruning of old group messages; 1:1 messages
    // (most inserts) no longer pay for it.
    "
    DROP INDEX messages_by_time;
    CREATE INDEX messages_group_by_time ON messages (ts) WHERE conv_kind = 'group';
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
///
/// Foreign keys are off while migrating (as SQLite's procedure for rebuilding a table asks:
/// a table others refer to can then be dropped and replaced) and checked before the commit; a
/// violation rolls everything back. They are on again afterwards if they were before.
pub(crate) fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<u32> {
    let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA foreign_keys = OFF;")?;
    let r = migrate_in_tx(conn, migrations);
    if fk != 0 {
        conn.execute_batch("PRAGMA foreign_keys = ON;")?;
    }
    r
}

fn migrate_in_tx(conn: &mut Connection, migrations: &[&str]) -> Result<u32> {
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
    let violations: i64 =
        tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })?;
    if violations > 0 {
        return Err(Error::Corrupt(format!(
            "{violations} foreign key violations after migrating"
        )));
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

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap();
        rows.join("; ")
    }

    /// The VDBE opcodes of a statement (its `?N` parameters as NULL).
    fn opcodes(conn: &Connection, sql: &str) -> Vec<String> {
        let mut sql = sql.to_owned();
        for i in (1..=12).rev() {
            sql = sql.replace(&format!("?{i}"), "NULL");
        }
        let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(1))
            .unwrap()
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap();
        rows
    }

    #[test]
    fn version_3_data_survives_the_messages_rebuild() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        migrate(&mut conn, &MIGRATIONS[..3]).unwrap();
        conn.execute_batch(
            "INSERT INTO messages (seq, msg_id, conv_kind, conv, direction, sender, text, ts,
                                   delivery, delivery_k, trust, trust_k, trust_n)
             VALUES (7, x'000102030405060708090a0b0c0d0e0f', 'buddy', 'b', 'out', 'me', x'6869',
                     5, 'queued', 0, NULL, 0, 0),
                    (9, x'100102030405060708090a0b0c0d0e0f', 'group', 'g', 'in', 's', x'6869',
                     6, NULL, 0, 'relayed', 2, 3);
             INSERT INTO claims VALUES (x'100102030405060708090a0b0c0d0e0f', 'c', 8);
             INSERT INTO outbox VALUES (x'000102030405060708090a0b0c0d0e0f', 'b', 1, 2, 0, 1);",
        )
        .unwrap();
        let dump = |c: &Connection| -> Vec<String> {
            let mut st = c
                .prepare("SELECT quote(seq) || quote(msg_id) || conv_kind || conv || direction || sender || quote(text) || ts || ifnull(delivery, '-') || delivery_k || ifnull(trust, '-') || trust_k || trust_n FROM messages ORDER BY seq")
                .unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<std::result::Result<Vec<String>, _>>()
                .unwrap()
        };
        let before = dump(&conn);
        assert_eq!(migrate(&mut conn, MIGRATIONS).unwrap(), SCHEMA_VERSION);
        assert_eq!(dump(&conn), before);
        assert_eq!(count(&conn, "SELECT count(*) FROM claims"), 1);
        assert_eq!(count(&conn, "SELECT count(*) FROM outbox"), 1);
        // Foreign keys are on again and still point at `messages`.
        assert_eq!(count(&conn, "PRAGMA foreign_keys"), 1);
        assert!(conn
            .execute_batch("INSERT INTO claims VALUES (x'ff', 'c', 8);")
            .is_err());
        // The rewritten CHECKs still refuse what the old ones refused.
        for bad in [
            "INSERT INTO messages (msg_id, conv_kind, conv, direction, sender, text, ts, delivery)
             VALUES (x'200102030405060708090a0b0c0d0e0f', 'buddy', 'b', 'out', 'me', x'', 1, 'lost')",
            "INSERT INTO messages (msg_id, conv_kind, conv, direction, sender, text, ts, trust)
             VALUES (x'200102030405060708090a0b0c0d0e0f', 'group', 'g', 'in', 's', x'', 1, 'maybe')",
            "UPDATE messages SET delivery = 'gone' WHERE seq = 7",
        ] {
            assert!(conn.execute_batch(bad).is_err(), "{bad}");
        }
        // New rows continue after the old ones.
        conn.execute_batch(
            "INSERT INTO messages (msg_id, conv_kind, conv, direction, sender, text, ts)
             VALUES (x'300102030405060708090a0b0c0d0e0f', 'buddy', 'b', 'in', 'b', x'', 1)",
        )
        .unwrap();
        assert_eq!(count(&conn, "SELECT max(seq) FROM messages"), 10);
    }

    #[test]
    fn hot_statements_use_indexes_and_no_temporary_tables() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();
        let insert = "INSERT INTO messages (msg_id, conv_kind, conv, direction, sender, text, ts,
                        delivery, delivery_k, trust, trust_k, trust_n)
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                      ON CONFLICT (msg_id) DO NOTHING";
        let update = "UPDATE messages SET trust = ?2, trust_k = ?3, trust_n = ?4 WHERE msg_id = ?1";
        for sql in [insert, update] {
            let ops = opcodes(&conn, sql);
            assert!(!ops.iter().any(|o| o == "OpenEphemeral"), "{sql}: {ops:?}");
        }
        let history = plan(
            &conn,
            "SELECT seq FROM messages WHERE conv_kind = 'buddy' AND conv = 'b' AND seq < 5
             ORDER BY seq DESC LIMIT 50",
        );
        assert!(history.contains("messages_by_conversation"), "{history}");
        let queued = plan(
            &conn,
            "SELECT seq FROM messages INDEXED BY messages_queued
             WHERE delivery = 'queued' AND direction = 'out' AND conv_kind = 'buddy' ORDER BY seq",
        );
        assert!(queued.contains("messages_queued"), "{queued}");
        assert!(!queued.contains("TEMP B-TREE"), "{queued}");
    }

    #[test]
    fn version_3_files_get_the_sync_columns_and_keep_their_messages() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &MIGRATIONS[..3]).unwrap();
        conn.execute_batch(
            "INSERT INTO messages (msg_id, conv_kind, conv, direction, sender, text, ts)
             VALUES (x'00000000000000000000000000000001', 'group', 'g', 'in', 's', x'68', 5);",
        )
        .unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(
            count(&conn, "SELECT count(*) FROM messages WHERE gseq IS NULL"),
            1
        );
        for t in ["sync_seq", "sync_vectors", "peer_extensions"] {
            assert_eq!(count(&conn, &format!("SELECT count(*) FROM {t}")), 0);
        }
    }

    #[test]
    fn real_schema_applies() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn, MIGRATIONS).unwrap(), SCHEMA_VERSION);
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
    }
}
