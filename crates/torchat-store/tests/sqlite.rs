//! What only the SQLite store has: the file, migrations, persistence across reopen, modes.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rusqlite::Connection;
use torchat_store::{
    Claim, Delivery, Error, GroupState, SqliteStore, Store, Trust, BUSY_TIMEOUT, SCHEMA_VERSION,
};

fn raw_version(path: &std::path::Path) -> i64 {
    let c = Connection::open(path).unwrap();
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn fresh_file_is_migrated_with_the_right_pragmas() {
    let (s, _dir) = sqlite();
    let d = s.diagnostics().unwrap();
    assert_eq!(d.journal_mode, "wal");
    assert_eq!(d.synchronous, 2, "synchronous=FULL");
    assert!(d.foreign_keys);
    assert_eq!(d.busy_timeout_ms, BUSY_TIMEOUT.as_millis() as i64);
    assert_eq!(d.schema_version, SCHEMA_VERSION);
    s.integrity_check().unwrap();
    assert_eq!(raw_version(s.path()), i64::from(SCHEMA_VERSION));
}

#[test]
fn empty_existing_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let mut s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.diagnostics().unwrap().schema_version, SCHEMA_VERSION);
    s.put_setting("k", b"v").unwrap();
    drop(s);
    // Opening a current file again migrates nothing and keeps the data.
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.get_setting("k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torchat.db");
    let g = gid("group-1");
    let (a, b) = (oid('a'), oid3(7));
    let before = {
        let mut s = SqliteStore::open(&path).unwrap();
        s.put_setting(torchat_store::keys::SECRET_KEY, &[9; 64])
            .unwrap();
        s.put_setting(torchat_store::keys::OWN_ID, b.as_bytes())
            .unwrap();
        s.upsert_buddy(full_buddy(a.clone())).unwrap();
        let mut grp = group(&g, GroupState::Joined);
        grp.modes = vec!["noredundancy".into()];
        grp.invited_by = Some(a.clone());
        s.upsert_group(grp).unwrap();
        s.add_member(&g, &a, 3).unwrap();
        s.insert_message(msg_in(1, &a, "hello")).unwrap();
        s.insert_message(msg_group(2, &g, &a, "hi all")).unwrap();
        s.update_delivery(&mid(1), Delivery::Delivered(1)).unwrap();
        s.update_trust(&mid(2), Trust::Relayed { k: 1, n: 1 })
            .unwrap();
        s.add_claim(Claim {
            msg_id: mid(2),
            claimant: b.clone(),
            received_at: 4,
        })
        .unwrap();
        s.outbox_add(&mid(1), &a, 10, 20).unwrap();
        s.outbox_attempt(&mid(1), &a, 15).unwrap();
        dump(&s, &[])
    };
    assert_eq!(before.messages.len(), 2);
    let mut s = SqliteStore::open(&path).unwrap();
    assert_eq!(dump(&s, &[]), before);
    // Row numbers continue after the last one; replaying an old insert is still a no-op.
    assert!(!s.insert_message(msg_in(1, &a, "hello")).unwrap());
    assert!(s.insert_message(msg_in(3, &a, "again")).unwrap());
    let last = before.messages.last().unwrap().row.0;
    assert_eq!(s.message(&mid(3)).unwrap().unwrap().row.0, last + 1);
    s.integrity_check().unwrap();
}

#[test]
fn newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 999;")
            .unwrap();
    }
    let err = SqliteStore::open(&path).unwrap_err();
    match &err {
        Error::NewerSchema { found, known } => {
            assert_eq!((*found, *known), (999, SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("999") && text.contains("newer"), "{text}");
    let c = Connection::open(&path).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "the journal mode was not switched");
    assert_eq!(raw_version(&path), 999);
}

#[test]
fn newer_schema_after_a_real_open_is_refused() {
    let (s, dir) = sqlite();
    let path = s.path().to_owned();
    drop(s);
    let c = Connection::open(&path).unwrap();
    c.execute_batch(&format!("PRAGMA user_version = {};", SCHEMA_VERSION + 1))
        .unwrap();
    drop(c);
    assert!(matches!(
        SqliteStore::open(&path),
        Err(Error::NewerSchema { .. })
    ));
    drop(dir);
}

#[test]
fn bad_paths_and_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(SqliteStore::open(""), Err(Error::Invalid(_))));
    assert!(matches!(
        SqliteStore::open(":memory:"),
        Err(Error::Invalid(_))
    ));
    let missing = dir.path().join("no/such/dir/x.db");
    assert!(SqliteStore::open(missing).is_err());
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
    assert!(matches!(SqliteStore::open(&junk), Err(Error::Sqlite(_))));
}

#[cfg(unix)]
#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let sidecar = |p: &std::path::Path, suffix: &str| {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        std::path::PathBuf::from(s)
    };

    let (mut s, _dir) = sqlite();
    s.put_setting("k", b"v").unwrap();
    s.insert_message(msg_in(1, &oid('a'), "x")).unwrap();
    let path = s.path().to_owned();
    for p in [path.clone(), sidecar(&path, "-wal"), sidecar(&path, "-shm")] {
        assert!(p.exists(), "{p:?} exists while open");
        assert_eq!(mode(&p), 0o600, "{p:?}");
    }

    // A file that already exists with a looser mode is tightened.
    let dir = tempfile::tempdir().unwrap();
    let loose = dir.path().join("loose.db");
    std::fs::write(&loose, b"").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut s = SqliteStore::open(&loose).unwrap();
    s.put_setting("k", b"v").unwrap();
    assert_eq!(mode(&loose), 0o600);
    assert_eq!(mode(&sidecar(&loose, "-wal")), 0o600);
    assert_eq!(mode(&sidecar(&loose, "-shm")), 0o600);
}

#[test]
fn a_second_connection_sees_committed_writes() {
    // Durable on return: another connection (as after a restart) sees the write at once.
    let (mut s, _dir) = sqlite();
    s.insert_message(msg_in(1, &oid('a'), "x")).unwrap();
    let other = SqliteStore::open(s.path()).unwrap();
    assert!(other.message(&mid(1)).unwrap().is_some());
    let c = Connection::open(s.path()).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}
