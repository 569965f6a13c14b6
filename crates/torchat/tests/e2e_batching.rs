//! The node works in batches (group commit) and reads pipelined control requests: what that
//! must not change — answers in request order, reads that see every earlier write, nothing
//! acknowledged lost by `kill -9`, nothing on the wire that is not on disk, and bytes the core
//! wrote before closing a connection still sent.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{json, Value};
use torchat_testkit::{direct_config, free_port, history, legacy_id, presence, wait_until, Daemon};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Two daemons that are each other's buddies and online.
fn pair(root: &std::path::Path) -> (Daemon, Daemon, String, String) {
    let (pa, pb) = (free_port(), free_port());
    let (a, b) = (legacy_id("alice"), legacy_id("bob"));
    let da = Daemon::start(
        root,
        "alice",
        &direct_config("alice", pa, &[("bob", pb)], &[]),
    );
    let db = Daemon::start(
        root,
        "bob",
        &direct_config("bob", pb, &[("alice", pa)], &[]),
    );
    let (mut ca, mut cb) = (da.client(), db.client());
    ca.ok(json!({"cmd": "add", "id": b}));
    cb.ok(json!({"cmd": "add", "id": a}));
    wait_until(secs(20), "alice and bob online", || {
        presence(&mut ca, &b) == "available" && presence(&mut cb, &a) == "available"
    });
    (da, db, a, b)
}

/// Every line of one control connection until `n` answers came (events skipped).
fn answers(rd: &mut BufReader<UnixStream>, n: usize) -> Vec<Value> {
    let mut out = vec![];
    while out.len() < n {
        let mut l = String::new();
        assert!(rd.read_line(&mut l).unwrap() > 0, "connection closed");
        let v: Value = serde_json::from_str(&l).unwrap();
        if v.get("event").is_none() {
            out.push(v);
        }
    }
    out
}

#[test]
fn pipelined_requests_are_answered_in_order_and_reads_see_earlier_writes() {
    let root = tempfile::tempdir().unwrap();
    let (da, db, a, b) = pair(root.path());
    // One write: 300 sends, a history read after every 100, and a line that is not a request.
    let mut batch = String::new();
    let mut expect = vec![];
    let mut req = 0;
    for i in 0..300 {
        req += 1;
        batch.push_str(&format!(
            "{{\"req\":{req},\"cmd\":\"send\",\"to\":\"{b}\",\"text\":\"p{i}\"}}\n"
        ));
        expect.push(req);
        if i % 100 == 99 {
            req += 1;
            batch.push_str(&format!(
                "{{\"req\":{req},\"cmd\":\"history\",\"with\":\"{b}\",\"limit\":1000}}\n"
            ));
            expect.push(req);
        }
        if i == 150 {
            batch.push_str("this is not json\n");
            expect.push(0);
        }
    }
    let s = UnixStream::connect(da.socket()).unwrap();
    s.set_read_timeout(Some(secs(30))).unwrap();
    let mut rd = BufReader::new(s.try_clone().unwrap());
    (&s).write_all(batch.as_bytes()).unwrap();
    let got = answers(&mut rd, expect.len());
    let order: Vec<u64> = got.iter().map(|v| v["req"].as_u64().unwrap()).collect();
    assert_eq!(order, expect);
    let mut sends = 0;
    for v in &got {
        if v["req"] == json!(0) {
            assert_eq!(v["error"]["code"], json!("bad_request"));
            continue;
        }
        assert_eq!(v["ok"], json!(true), "{v}");
        match v["result"].as_array() {
            // A history read holds every message sent before it, in order.
            Some(h) => {
                let texts: Vec<&str> = h.iter().map(|m| m["text"].as_str().unwrap()).collect();
                let want: Vec<String> = (0..sends).map(|i| format!("p{i}")).collect();
                assert_eq!(texts, want);
            }
            None => {
                assert_eq!(v["result"]["state"], json!("sent"), "{v}");
                sends += 1;
            }
        }
    }
    // Bob gets all of them, in order.
    let mut cb = db.client();
    wait_until(secs(20), "bob has all", || {
        history(&mut cb, &a).len() == 300
    });
    let texts: Vec<String> = history(&mut cb, &a)
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..300).map(|i| format!("p{i}")).collect();
    assert_eq!(texts, want);
}

#[test]
fn kill_9_during_a_pipelined_burst_loses_nothing_acknowledged() {
    let root = tempfile::tempdir().unwrap();
    let (mut da, db, a, b) = pair(root.path());
    let n = 20_000;
    let s = UnixStream::connect(da.socket()).unwrap();
    s.set_read_timeout(Some(secs(30))).unwrap();
    let mut rd = BufReader::new(s.try_clone().unwrap());
    let to = b.clone();
    let writer = std::thread::spawn(move || {
        let mut w = s;
        let mut buf = String::new();
        for i in 0..n {
            buf.push_str(&format!(
                "{{\"req\":{},\"cmd\":\"send\",\"to\":\"{to}\",\"text\":\"k{i}\"}}\n",
                i + 1
            ));
            if buf.len() > 16 * 1024 {
                if w.write_all(buf.as_bytes()).is_err() {
                    return;
                }
                buf.clear();
            }
        }
        let _ = w.write_all(buf.as_bytes());
    });
    // Read acknowledgements until a few thousand are in, then kill alice mid-burst.
    let mut acked = BTreeMap::new();
    while acked.len() < 3000 {
        let mut l = String::new();
        assert!(rd.read_line(&mut l).unwrap() > 0);
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["ok"], json!(true), "{v}");
        acked.insert(v["req"].as_u64().unwrap(), v["result"]["id"].clone());
    }
    da.kill();
    // Answers already written before the kill count as acknowledged too.
    let mut l = String::new();
    while rd.read_line(&mut l).unwrap_or(0) > 0 {
        if let Ok(v) = serde_json::from_str::<Value>(&l) {
            if v["ok"] == json!(true) {
                acked.insert(v["req"].as_u64().unwrap(), v["result"]["id"].clone());
            }
        }
        l.clear();
    }
    let _ = writer.join();
    assert!(
        acked.len() < n,
        "killed mid-burst: {} acknowledged",
        acked.len()
    );
    da.spawn();
    let mut ca = da.client();
    let mut stored = BTreeMap::new();
    let mut before: Option<u64> = None;
    loop {
        let mut q = json!({"cmd": "history", "with": b, "limit": 1000});
        if let Some(r) = before {
            q["before"] = json!(r);
        }
        let page = ca.ok(q);
        let page = page.as_array().unwrap();
        for m in page {
            let text = m["text"].as_str().unwrap().to_owned();
            assert!(
                stored.insert(text.clone(), m["id"].clone()).is_none(),
                "{text} stored twice"
            );
        }
        if page.len() < 1000 {
            break;
        }
        before = page[0]["row"].as_u64();
    }
    // Every acknowledged message is on disk, under the id the answer gave.
    for (req, id) in &acked {
        let text = format!("k{}", req - 1);
        assert_eq!(
            stored.get(&text),
            Some(id),
            "{text} acknowledged but not stored"
        );
    }
    // Nothing reached bob that alice had not stored first.
    let mut cb = db.client();
    let mut before: Option<u64> = None;
    loop {
        let mut q = json!({"cmd": "history", "with": a, "limit": 1000});
        if let Some(r) = before {
            q["before"] = json!(r);
        }
        let page = cb.ok(q);
        let page = page.as_array().unwrap();
        for m in page {
            let text = m["text"].as_str().unwrap();
            assert!(
                stored.contains_key(text),
                "{text} reached bob but is not in alice's store"
            );
        }
        if page.len() < 1000 {
            break;
        }
        before = page[0]["row"].as_u64();
    }
}

#[test]
fn remove_me_is_written_before_the_connection_closes() {
    // "bob" is this test, listening where alice's direct transport dials him: the connection
    // alice opens is the only one, so what she writes on it before closing it is all there.
    let root = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let d = Daemon::start(
        root.path(),
        "alice",
        &direct_config("alice", free_port(), &[("bob", port)], &[]),
    );
    let b = legacy_id("bob");
    let mut c = d.client();
    c.ok(json!({"cmd": "add", "id": b}));
    let (sock, _) = listener.accept().unwrap();
    sock.set_read_timeout(Some(secs(20))).unwrap();
    let mut rd = BufReader::new(sock);
    let mut first = String::new();
    rd.read_line(&mut first).unwrap();
    assert!(first.starts_with("ping "), "{first}");
    // `remove` writes `remove_me` and closes the connection in the same step.
    c.ok(json!({"cmd": "remove", "id": b}));
    let mut rest = vec![];
    loop {
        let mut l = String::new();
        if rd.read_line(&mut l).unwrap_or(0) == 0 {
            break; // closed
        }
        rest.push(l.trim_end().to_owned());
    }
    assert_eq!(
        rest.last().map(String::as_str),
        Some("remove_me"),
        "{rest:?}"
    );
}

#[test]
fn a_message_to_an_offline_buddy_is_answered_queued() {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        root.path(),
        "alice",
        &direct_config("alice", free_port(), &[], &[]),
    );
    let mut c = d.client();
    let nobody = legacy_id("nobody");
    c.ok(json!({"cmd": "add", "id": nobody}));
    for i in 0..3 {
        let r = c.ok(json!({"cmd": "send", "to": nobody, "text": format!("q{i}")}));
        assert_eq!(r["state"], json!("queued"), "{r}");
    }
    let h = history(&mut c, &nobody);
    assert_eq!(h.len(), 3);
    assert!(h.iter().all(|m| m["delivery"] == json!("queued")));
}
