//! Crash safety: a child process writes messages in a loop and is `SIGKILL`ed mid-way, several
//! times; every message it reported committed must be there exactly once afterwards.
//!
//! The child is this test binary re-executed with `CHILD_ENV` set, running only `crash_child`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use torchat_store::{
    Conversation, Delivery, Direction, MsgId, Op, OutboxEntry, SqliteStore, Store,
};

const CHILD_ENV: &str = "TORCHAT_STORE_CRASH_CHILD_DB";
/// The child stops by itself after this many messages if nobody kills it.
const CHILD_LIMIT: u64 = 20_000;

/// The "send" a node does: the message and its outbox entry, one transaction.
fn send_ops(n: u64) -> Vec<Op> {
    let bob = oid('b');
    let mut m = msg_in(n, &bob, &format!("message {n}"));
    m.direction = Direction::Out;
    m.sender = oid('m');
    m.delivery = Some(Delivery::Queued);
    vec![
        Op::InsertMessage(m),
        Op::OutboxAdd(OutboxEntry::new(mid(n), bob, n, n + 1_000_000)),
    ]
}

/// Runs only in the child: writes from message 0 on (so every round replays the previous
/// ones) and prints `committed <id> <new>` after each write returned.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return; // not the child: nothing to do
    };
    let mut store = SqliteStore::open(path).unwrap();
    for n in 0..CHILD_LIMIT {
        let out = store.apply(&send_ops(n)).unwrap();
        println!("committed {} {}", mid(n), out[0]);
    }
}

/// When to kill the child.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Right after it reported this many new messages.
    AfterNew(usize),
    /// This long after it reported its first write, wherever it is.
    AfterMs(u64),
}

/// Runs one child until `kill`, SIGKILLs it, and returns every `(id, new)` it reported.
fn run_child(path: &std::path::Path, kill: Kill) -> Vec<(MsgId, bool)> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // The reader runs to EOF: lines still in the pipe after the kill were printed after a
    // committed write, so they count too. A line cut by the kill does not parse.
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(r) = parse(&line) {
                if tx.send(r).is_err() {
                    break;
                }
            }
        }
    });
    let mut reports = Vec::new();
    let mut new = 0;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = rx.recv_timeout(Duration::from_millis(1)) {
            new += usize::from(r.1);
            first.get_or_insert_with(Instant::now);
            reports.push(r);
        }
        let done = match kill {
            Kill::AfterNew(n) => new >= n,
            Kill::AfterMs(ms) => first.is_some_and(|t| t.elapsed() >= Duration::from_millis(ms)),
        };
        if done || Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL on unix
    child.wait().unwrap();
    reader.join().unwrap();
    reports.extend(rx.try_iter());
    reports
}

fn parse(line: &str) -> Option<(MsgId, bool)> {
    let mut it = line.strip_prefix("committed ")?.split(' ');
    let id = MsgId::from_hex(it.next()?)?;
    let new = it.next()? == "1";
    Some((id, new))
}

#[test]
fn kill_9_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut committed: HashSet<MsgId> = HashSet::new();
    let mut reported_new: HashSet<MsgId> = HashSet::new();
    let kills = [
        Kill::AfterNew(25),
        Kill::AfterMs(3),
        Kill::AfterNew(7),
        Kill::AfterMs(20),
        Kill::AfterNew(60),
        Kill::AfterMs(1),
    ];
    for (round, kill) in kills.into_iter().enumerate() {
        let reports = run_child(&path, kill);
        let fresh = reports.iter().filter(|x| x.1).count();
        eprintln!(
            "round {round} ({kill:?}): {} reports, {fresh} new",
            reports.len()
        );
        assert!(
            !reports.is_empty(),
            "round {round}: the child reported nothing"
        );
        for (id, new) in reports {
            if new {
                // Reported new twice would mean the first commit was lost.
                assert!(reported_new.insert(id), "round {round}: {id} new again");
            }
            if committed.contains(&id) {
                assert!(
                    !new,
                    "round {round}: committed {id} was lost and re-inserted"
                );
            }
            committed.insert(id);
        }
    }

    let store = SqliteStore::open(&path).unwrap();
    store.integrity_check().unwrap();
    let all = store
        .history(&Conversation::Buddy(oid('b')), None, usize::MAX)
        .unwrap();
    let mut count: HashMap<MsgId, usize> = HashMap::new();
    for m in &all {
        *count.entry(m.msg.id).or_default() += 1;
    }
    for id in &committed {
        assert_eq!(count.get(id), Some(&1), "{id} is not there exactly once");
        let m = store.message(id).unwrap().unwrap();
        assert_eq!(m.msg.delivery, Some(Delivery::Queued));
    }
    assert!(count.values().all(|&c| c == 1), "duplicated rows");
    // Rows are dense: no gaps or repeats from the crashes.
    for (i, m) in all.iter().enumerate() {
        assert_eq!(m.row.0, i as u64 + 1);
    }
    // Each message was written with its outbox entry in one transaction: never one alone.
    let outbox: HashSet<MsgId> = store.outbox().unwrap().iter().map(|e| e.msg_id).collect();
    let stored: HashSet<MsgId> = all.iter().map(|m| m.msg.id).collect();
    assert_eq!(outbox, stored);
    assert!(stored.len() >= committed.len());
    // At most the one write in flight at each kill is there without a report.
    assert!(stored.len() <= committed.len() + kills.len());
}
