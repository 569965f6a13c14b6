//! End to end on loopback with the direct transport: three daemons as separate processes,
//! driven through the control API.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use torchat_testkit::{direct_config, free_port, history, legacy_id, presence, wait_until, Daemon};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn three_daemons_chat_group_restart_and_kill() {
    let root = tempfile::tempdir().unwrap();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let (a, b, c) = (legacy_id("alice"), legacy_id("bob"), legacy_id("carol"));
    // The link alice–carol is blocked on both sides.
    let mut da = Daemon::start(
        root.path(),
        "alice",
        &direct_config("alice", pa, &[("bob", pb), ("carol", pc)], &["carol"]),
    );
    let mut db = Daemon::start(
        root.path(),
        "bob",
        &direct_config("bob", pb, &[("alice", pa), ("carol", pc)], &[]),
    );
    let dc = Daemon::start(
        root.path(),
        "carol",
        &direct_config("carol", pc, &[("alice", pa), ("bob", pb)], &["alice"]),
    );
    let (mut ca, mut cb, mut cc) = (da.client(), db.client(), dc.client());
    assert_eq!(ca.ok(json!({"cmd": "info"}))["id"], json!(a));

    // Handshake: bob is everyone's buddy.
    ca.ok(json!({"cmd": "add", "id": b, "alias": "bob"}));
    cc.ok(json!({"cmd": "add", "id": b}));
    cb.ok(json!({"cmd": "add", "id": a}));
    cb.ok(json!({"cmd": "add", "id": c}));
    wait_until(secs(20), "alice and bob online", || {
        presence(&mut ca, &b) == "available" && presence(&mut cb, &a) == "available"
    });
    wait_until(secs(20), "carol and bob online", || {
        presence(&mut cc, &b) == "available"
    });

    // 1:1 both ways.
    let r = ca.ok(json!({"cmd": "send", "to": b, "text": "hello bob ünïcödé\nline 2"}));
    assert_eq!(r["state"], json!("sent"));
    cb.ok(json!({"cmd": "send", "to": a, "text": "hi alice"}));
    wait_until(secs(10), "1:1 messages", || {
        history(&mut cb, &a).len() == 2 && history(&mut ca, &b).len() == 2
    });
    // Both were sent at once: find each by direction, not by position.
    let hb = history(&mut cb, &a);
    let got = hb.iter().find(|m| m["direction"] == json!("in")).unwrap();
    assert_eq!(got["text"], json!("hello bob ünïcödé\nline 2"));
    let mine = hb.iter().find(|m| m["direction"] == json!("out")).unwrap();
    assert_eq!(mine["text"], json!("hi alice"));
    // Acknowledged between torchat nodes (torchat_sync): sent, then delivered.
    assert!(
        mine["delivery"] == json!("sent") || mine["delivery"] == json!("delivered 1"),
        "{mine}"
    );

    // A group made by bob with alice and carol, who cannot reach each other.
    let gid = cb.ok(json!({"cmd": "group_create"}))["gid"]
        .as_str()
        .unwrap()
        .to_owned();
    cb.ok(json!({"cmd": "group_invite", "gid": gid, "id": a}));
    wait_until(secs(10), "alice's invite", || {
        ca.call(json!({"cmd": "group_accept", "gid": gid}))["ok"] == json!(true)
    });
    wait_until(secs(10), "alice joined", || {
        ca.ok(json!({"cmd": "group_members", "gid": gid}))["state"] == json!("joined")
    });
    cb.ok(json!({"cmd": "group_invite", "gid": gid, "id": c}));
    wait_until(secs(10), "carol's invite", || {
        cc.call(json!({"cmd": "group_accept", "gid": gid}))["ok"] == json!(true)
    });
    wait_until(secs(20), "everyone has 2 members", || {
        [&mut ca, &mut cb, &mut cc].iter_mut().all(|cl| {
            let g = cl.ok(json!({"cmd": "group_members", "gid": gid}));
            g["state"] == json!("joined") && g["members"].as_array().unwrap().len() == 2
        })
    });
    ca.ok(json!({"cmd": "group_say", "gid": gid, "text": "from alice"}));
    let trust_at = |cl: &mut torchat_testkit::Client, text: &str| {
        history(cl, &gid)
            .iter()
            .find(|m| m["text"] == json!(text))
            .map(|m| m["trust"].as_str().unwrap().to_owned())
    };
    wait_until(secs(15), "carol sees alice's message relayed", || {
        trust_at(&mut cc, "from alice").is_some()
    });
    assert_eq!(trust_at(&mut cc, "from alice").as_deref(), Some("(1 of 2)"));
    assert_eq!(trust_at(&mut cb, "from alice").as_deref(), Some("(Direct)"));
    // Who vouched: bob.
    let mid = history(&mut cc, &gid)
        .iter()
        .find(|m| m["text"] == json!("from alice"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let claims = cc.ok(json!({"cmd": "claims", "msg": mid}));
    assert_eq!(claims[0]["claimant"], json!(b));

    // Persistence across a restart of bob.
    db.stop();
    db.spawn();
    cb = db.client();
    assert_eq!(history(&mut cb, &a).len(), 2);
    // What alice told bob about herself survived too (shown before she reconnects).
    let alice_row = cb
        .ok(json!({"cmd": "buddies"}))
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == json!(a))
        .cloned()
        .unwrap();
    assert_eq!(alice_row["name"], json!("alice"));
    assert_eq!(
        cb.ok(json!({"cmd": "group_members", "gid": gid}))["members"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    wait_until(secs(40), "bob back online with both", || {
        presence(&mut cb, &a) == "available" && presence(&mut cb, &c) == "available"
    });

    // kill -9 during a burst of sends to an offline buddy, then restart: every acknowledged
    // message is there exactly once and is delivered exactly once.
    db.stop();
    wait_until(secs(20), "bob seen offline", || {
        presence(&mut ca, &b) == "offline"
    });
    let mut acked = vec![];
    let count = std::sync::atomic::AtomicUsize::new(0);
    let burst = std::thread::scope(|s| {
        let h = s.spawn(|| {
            for i in 0..1000 {
                let r = ca.call(json!({"cmd": "send", "to": b, "text": format!("burst {i}")}));
                if r["ok"] != json!(true) {
                    break;
                }
                acked.push(i);
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        // Kill alice in the middle of the burst.
        wait_until(secs(30), "the burst to start", || {
            count.load(std::sync::atomic::Ordering::SeqCst) >= 150
        });
        da.kill();
        h.join()
    });
    burst.unwrap();
    assert!(
        (150..1000).contains(&acked.len()),
        "killed mid-burst: {} acknowledged",
        acked.len()
    );
    da.spawn();
    ca = da.client();
    let stored: Vec<String> = history(&mut ca, &b)
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    for i in &acked {
        let t = format!("burst {i}");
        assert_eq!(
            stored.iter().filter(|s| **s == t).count(),
            1,
            "{t} stored once"
        );
    }
    db.spawn();
    cb = db.client();
    let n = acked.len();
    // Between torchat nodes a late message carries its time, not a "[delayed] " prefix.
    wait_until(secs(60), "the burst delivered", || {
        let k = history(&mut cb, &a)
            .iter()
            .filter(|m| m["text"].as_str().unwrap().starts_with("burst"))
            .count();
        k >= n
    });
    std::thread::sleep(Duration::from_secs(2));
    let got: Vec<String> = history(&mut cb, &a)
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    for i in &acked {
        let t = format!("burst {i}");
        assert_eq!(
            got.iter().filter(|s| **s == t).count(),
            1,
            "{t} delivered once"
        );
    }
    // Nothing beyond what was stored arrived (unacknowledged sends may or may not be stored).
    let delivered = got.iter().filter(|s| s.starts_with("burst")).count();
    let stored_burst = stored.iter().filter(|s| s.starts_with("burst")).count();
    assert_eq!(delivered, stored_burst);
    // Logs never contain message text.
    for d in [&da, &db, &dc] {
        let log = d.log();
        assert!(
            !log.contains("from alice") && !log.contains("burst 1"),
            "{} logged message text",
            d.name
        );
        for id in [&a, &b, &c] {
            assert!(
                !log.contains(id.as_str()),
                "{} logged a full onion id",
                d.name
            );
        }
    }
}
