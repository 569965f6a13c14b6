//! Churn with real daemons (direct transport on loopback): bob is killed (`kill -9`) and
//! restarted 20 times while messages flow both ways. Checks that every message either side
//! stored is delivered in the end, exactly once, and shown delivered, and measures "buddy back → queued messages
//! delivered" (printed as `FIGURE churn …`; recorded in docs/benchmarks.md).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use torchat_testkit::{direct_config, free_port, history, legacy_id, presence, wait_until, Daemon};

const ROUNDS: usize = 20;

/// Texts of the messages in a conversation that came from the other side (a legacy
/// `[delayed] ` prefix removed).
fn received(c: &mut torchat_testkit::Client, with: &str) -> Vec<String> {
    history(c, with)
        .iter()
        .filter(|m| m["direction"] == json!("in"))
        .map(|m| {
            let t = m["text"].as_str().unwrap();
            t.strip_prefix("[delayed] ").unwrap_or(t).to_owned()
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    sorted[(sorted.len() - 1) * p / 100].as_secs_f64()
}

#[test]
fn kill_and_restart_twenty_times_while_messages_flow() {
    let root = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let (a, b) = (legacy_id("alice"), legacy_id("bob"));
    let da = Daemon::start(
        root.path(),
        "alice",
        &direct_config("alice", pa, &[("bob", pb)], &[]),
    );
    let mut db = Daemon::start(
        root.path(),
        "bob",
        &direct_config("bob", pb, &[("alice", pa)], &[]),
    );
    let (mut ca, mut cb) = (da.client(), db.client());
    ca.ok(json!({"cmd": "add", "id": b}));
    cb.ok(json!({"cmd": "add", "id": a}));
    wait_until(Duration::from_secs(20), "online", || {
        presence(&mut ca, &b) == "available" && presence(&mut cb, &a) == "available"
    });

    let mut sent_by_alice: Vec<String> = vec![];
    let mut sent_by_bob: Vec<String> = vec![];
    // Messages the API said were queued (alice knew bob was gone): they must arrive.
    let mut queued_by_alice: Vec<String> = vec![];
    let mut back_to_delivered: Vec<Duration> = vec![];
    let mut back_to_online: Vec<Duration> = vec![];
    for round in 0..ROUNDS {
        // Both talk while both are up.
        for k in 0..5 {
            let t = format!("a{round}.{k} while up");
            ca.ok(json!({"cmd": "send", "to": b, "text": t}));
            sent_by_alice.push(t);
            let t = format!("b{round}.{k} while up");
            cb.ok(json!({"cmd": "send", "to": a, "text": t}));
            sent_by_bob.push(t);
        }
        // kill -9 in the middle of the flow.
        db.kill();
        // Alice keeps talking while bob is down: queued, or sent into a dying connection.
        for k in 0..5 {
            let t = format!("a{round}.{k} while down");
            let r = ca.ok(json!({"cmd": "send", "to": b, "text": t}));
            if r["state"] == json!("queued") {
                queued_by_alice.push(t.clone());
            }
            sent_by_alice.push(t);
        }
        // Down for 0.2 to 6 s (alice's attempts meanwhile are refused and back off).
        std::thread::sleep(Duration::from_millis(200 + 1450 * (round as u64 % 5)));
        // Bob is back (from the moment its process starts).
        let back = Instant::now();
        db.spawn();
        cb = db.client();
        let expect: Vec<&String> = queued_by_alice
            .iter()
            .filter(|t| t.starts_with(&format!("a{round}.")))
            .collect();
        wait_until(Duration::from_secs(60), "online again", || {
            presence(&mut ca, &b) == "available" && presence(&mut cb, &a) == "available"
        });
        back_to_online.push(back.elapsed());
        let t0 = Instant::now();
        while !{
            let got = received(&mut cb, &a);
            expect.iter().all(|t| got.contains(t))
        } {
            if t0.elapsed() > Duration::from_secs(30) {
                let got = received(&mut cb, &a);
                panic!(
                    "round {round}: missing {:?}",
                    expect
                        .iter()
                        .filter(|t| !got.contains(t))
                        .collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        back_to_delivered.push(back.elapsed());
    }
    // In the end each side has every message the other stored exactly once: between torchat
    // nodes 1:1 messages are acknowledged (torchat_sync), and whatever was written to a
    // connection that died with bob is sent again when he is back.
    let t0 = Instant::now();
    let (got_b, got_a) = loop {
        let got_b = received(&mut cb, &a);
        let got_a = received(&mut ca, &b);
        let lost = sent_by_alice.iter().filter(|t| !got_b.contains(t)).count()
            + sent_by_bob.iter().filter(|t| !got_a.contains(t)).count();
        if lost == 0 {
            break (got_b, got_a);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{lost} stored messages never arrived"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (got, who) in [(&got_b, "bob"), (&got_a, "alice")] {
        let mut count: BTreeMap<&String, usize> = BTreeMap::new();
        for t in got.iter() {
            *count.entry(t).or_default() += 1;
        }
        let dups: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
        assert!(dups.is_empty(), "{who} got duplicates: {dups:?}");
    }
    // And alice's history says so: none of hers stays "sent" (unacknowledged).
    let mut unacked = || {
        history(&mut ca, &b)
            .iter()
            .filter(|m| {
                m["direction"] == json!("out")
                    && !m["delivery"]
                        .as_str()
                        .is_some_and(|d| d.starts_with("delivered"))
            })
            .count()
    };
    let t0 = Instant::now();
    while unacked() > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{} of alice's messages not shown delivered",
            unacked()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "FIGURE churn: {} messages stored in all, {} of them queued; all delivered exactly once",
        sent_by_alice.len() + sent_by_bob.len(),
        queued_by_alice.len()
    );
    back_to_delivered.sort();
    back_to_online.sort();
    eprintln!(
        "FIGURE churn {ROUNDS} kill -9/restart rounds: buddy back → online median {:.2} s, p95 {:.2} s, max {:.2} s; → queued messages delivered median {:.2} s, p95 {:.2} s, max {:.2} s",
        percentile(&back_to_online, 50),
        percentile(&back_to_online, 95),
        percentile(&back_to_online, 100),
        percentile(&back_to_delivered, 50),
        percentile(&back_to_delivered, 95),
        percentile(&back_to_delivered, 100),
    );
    assert!(
        percentile(&back_to_delivered, 95) <= 5.0,
        "p95 buddy back → delivered: {back_to_delivered:?}"
    );
}
