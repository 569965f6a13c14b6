//! File transfer end to end: two daemons on loopback (direct transport) move a 100 MB file
//! (sha256 checked), then survive a `kill -9` of the receiver and of the sender in the middle
//! of a transfer, resuming where they stopped.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use torchat_testkit::{
    direct_config, free_port, legacy_id, make_file, presence, sha_of, wait_until, Client, Daemon,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn config(name: &str, port: u16, peer: (&str, u16), downloads: &Path) -> String {
    // `[files]` after the peers table starts a new table.
    format!(
        "{}[files]\ndownload_dir = \"{}\"\n",
        direct_config(name, port, &[peer], &[]),
        downloads.display()
    )
}

fn transfers(c: &mut Client) -> Vec<Value> {
    c.ok(json!({"cmd": "files"})).as_array().unwrap().clone()
}

fn transfer(c: &mut Client, id: u64) -> Value {
    transfers(c)
        .into_iter()
        .find(|t| t["id"] == json!(id))
        .unwrap_or(Value::Null)
}

/// Waits for the offer of `name` at the receiver; returns its number.
fn offer_of(c: &mut Client, name: &str) -> u64 {
    let mut id = None;
    wait_until(secs(20), "the offer", || {
        id = transfers(c)
            .into_iter()
            .find(|t| t["name"] == json!(name) && t["state"] == json!("offered"))
            .and_then(|t| t["id"].as_u64());
        id.is_some()
    });
    id.unwrap()
}

struct Pair {
    _root: tempfile::TempDir,
    root: PathBuf,
    a: Daemon,
    b: Daemon,
    ida: String,
    idb: String,
}

fn pair() -> Pair {
    let root = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let path = root.path().to_owned();
    let a = Daemon::start(
        &path,
        "alice",
        &config("alice", pa, ("bob", pb), &path.join("alice-dl")),
    );
    let b = Daemon::start(
        &path,
        "bob",
        &config("bob", pb, ("alice", pa), &path.join("bob-dl")),
    );
    let (ida, idb) = (legacy_id("alice"), legacy_id("bob"));
    let (mut ca, mut cb) = (a.client(), b.client());
    ca.ok(json!({"cmd": "add", "id": idb}));
    cb.ok(json!({"cmd": "add", "id": ida}));
    wait_until(secs(20), "online", || {
        presence(&mut ca, &idb) == "available" && presence(&mut cb, &ida) == "available"
    });
    Pair {
        _root: root,
        root: path,
        a,
        b,
        ida,
        idb,
    }
}

#[test]
fn a_100_mb_file_moves_between_daemons_intact() {
    let p = pair();
    let (mut ca, mut cb) = (p.a.client(), p.b.client());
    let src = p.root.join("big.bin");
    let sha = make_file(&src, 100 * 1024 * 1024, 7);
    let sent = ca.ok(json!({"cmd": "send_file", "to": p.idb, "path": src.display().to_string()}));
    let sid = sent["id"].as_u64().unwrap();
    let rid = offer_of(&mut cb, "big.bin");
    let t0 = Instant::now();
    let acc = cb.ok(json!({"cmd": "file_accept", "file": rid}));
    assert_eq!(acc["state"], json!("transferring"));
    wait_until(secs(120), "complete", || {
        transfer(&mut cb, rid)["state"] == json!("complete")
    });
    let took = t0.elapsed();
    let t = transfer(&mut cb, rid);
    let path = PathBuf::from(t["path"].as_str().unwrap());
    assert_eq!(path, p.root.join("bob-dl").join("big.bin"));
    assert_eq!(sha_of(&path), sha);
    wait_until(secs(10), "sender complete", || {
        transfer(&mut ca, sid)["state"] == json!("complete")
    });
    eprintln!(
        "100 MiB in {:.2} s: {:.1} MiB/s (debug build, loopback)",
        took.as_secs_f64(),
        100.0 / took.as_secs_f64()
    );
    // No partial file left behind.
    let left: Vec<_> = std::fs::read_dir(p.root.join("bob-dl"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("big.bin")]);
    // The same name again: saved beside it, nothing overwritten.
    ca.ok(json!({"cmd": "send_file", "to": p.idb, "path": src.display().to_string()}));
    let rid2 = offer_of(&mut cb, "big.bin");
    cb.ok(json!({"cmd": "file_cancel", "file": rid2}));
    wait_until(secs(10), "declined at the sender", || {
        transfers(&mut ca)
            .iter()
            .any(|t| t["state"] == json!("cancelled") && t["reason"] == json!("by_peer"))
    });
}

/// Starts a transfer of a `mb` MiB file from alice to bob and waits until bob has `at` MiB.
fn start_transfer(p: &mut Pair, name: &str, mb: usize, at: u64) -> (u64, u64, Vec<u8>) {
    let (mut ca, mut cb) = (p.a.client(), p.b.client());
    let src = p.root.join(name);
    let sha = make_file(&src, mb * 1024 * 1024, mb as u64);
    let sent = ca.ok(json!({"cmd": "send_file", "to": p.idb, "path": src.display().to_string()}));
    let rid = offer_of(&mut cb, name);
    cb.ok(json!({"cmd": "file_accept", "file": rid}));
    wait_until(secs(60), "part of the file", || {
        transfer(&mut cb, rid)["done"].as_u64().unwrap_or(0) >= at << 20
    });
    (sent["id"].as_u64().unwrap(), rid, sha)
}

#[test]
fn kill_9_of_either_side_mid_transfer_resumes_after_restart() {
    let mut p = pair();
    // The receiver dies.
    let (sid, rid, sha) = start_transfer(&mut p, "one.bin", 60, 5);
    p.b.kill();
    let part = p.root.join("bob-dl").join("one.bin.part");
    assert!(part.exists(), "the partial file is kept for resuming");
    p.b.spawn();
    let mut cb = p.b.client();
    let t = transfer(&mut cb, rid);
    assert!(
        ["paused", "transferring", "complete"].contains(&t["state"].as_str().unwrap()),
        "{t}"
    );
    wait_until(secs(120), "complete after the receiver's restart", || {
        transfer(&mut cb, rid)["state"] == json!("complete")
    });
    assert_eq!(sha_of(&p.root.join("bob-dl").join("one.bin")), sha);
    assert!(!part.exists());
    let mut ca = p.a.client();
    wait_until(secs(10), "sender complete", || {
        transfer(&mut ca, sid)["state"] == json!("complete")
    });
    // The sender dies.
    let (_, rid, sha) = start_transfer(&mut p, "two.bin", 60, 5);
    p.a.kill();
    p.a.spawn();
    let mut cb = p.b.client();
    wait_until(secs(120), "complete after the sender's restart", || {
        transfer(&mut cb, rid)["state"] == json!("complete")
    });
    assert_eq!(sha_of(&p.root.join("bob-dl").join("two.bin")), sha);
    let _ = &p.ida;
}
