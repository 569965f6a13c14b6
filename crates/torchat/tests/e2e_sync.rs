//! End to end, acknowledged delivery and catch-up (extension `torchat_sync`): daemons as
//! separate processes on loopback (direct transport), with v3 ids derived from each daemon's
//! own key, so group messages are signed.
//!
//! - a member killed with `kill -9` in the middle of a group burst gets every message after
//!   its restart, once, and the speaker never says `delivered 2` for a message the killed
//!   member does not hold;
//! - a 1:1 receiver killed in the middle of a burst loses nothing and gets nothing twice;
//! - a member away while 1,000 messages are said gets all of them from a third member after
//!   the speakers went offline, also when it was away longer than the outbox lifetime.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use torchat_testkit::{free_port, wait_until, Client, Daemon};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A direct-transport config without a fixed id: the daemon uses the v3 id of its own key.
fn config(name: &str, port: u16, peers: &[(String, u16)], protocol: &str) -> String {
    let mut s = format!(
        "[profile]\nname = \"{name}\"\n[protocol]\nsettle_window_secs = 2\n{protocol}\n\
         [transport]\nkind = \"direct\"\n[transport.direct]\nlisten = \"127.0.0.1:{port}\"\n\
         [transport.direct.peers]\n"
    );
    for (id, port) in peers {
        s.push_str(&format!("\"{id}\" = \"127.0.0.1:{port}\"\n"));
    }
    s
}

/// Daemons that know each other's v3 ids: each is started once to make its key, then
/// restarted with the others' ids and addresses.
struct Net {
    daemons: Vec<Daemon>,
    ids: Vec<String>,
}

impl Net {
    fn start(root: &Path, names: &[&str], protocol: &str) -> Net {
        let ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
        let mut ids = vec![];
        for (n, p) in names.iter().zip(&ports) {
            let mut d = Daemon::start(root, n, &config(n, *p, &[], protocol));
            ids.push(
                d.client().ok(json!({"cmd": "info"}))["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
            d.stop();
        }
        let mut daemons = vec![];
        for (i, n) in names.iter().enumerate() {
            let peers: Vec<(String, u16)> = (0..names.len())
                .filter(|j| *j != i)
                .map(|j| (ids[j].clone(), ports[j]))
                .collect();
            daemons.push(Daemon::start(
                root,
                n,
                &config(n, ports[i], &peers, protocol),
            ));
        }
        Net { daemons, ids }
    }

    fn client(&self, i: usize) -> Client {
        self.daemons[i].client()
    }
}

fn presence(c: &mut Client, id: &str) -> String {
    torchat_testkit::presence(c, id)
}

/// Every message of a conversation, oldest first (all pages).
fn all_history(c: &mut Client, with: &str) -> Vec<Value> {
    let mut out: Vec<Value> = vec![];
    let mut before: Option<u64> = None;
    loop {
        let mut req = json!({"cmd": "history", "with": with, "limit": 1000});
        if let Some(b) = before {
            req["before"] = json!(b);
        }
        let page = c.ok(req).as_array().unwrap().clone();
        let Some(first) = page.first() else { break };
        before = first["row"].as_u64();
        let n = page.len();
        out.splice(0..0, page);
        if n < 1000 {
            break;
        }
    }
    out
}

fn texts(h: &[Value]) -> Vec<String> {
    h.iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

fn count_each(texts: &[String], prefix: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in texts {
        let t = t.strip_prefix("[delayed] ").unwrap_or(t);
        if t.starts_with(prefix) {
            *m.entry(t.to_owned()).or_insert(0) += 1;
        }
    }
    m
}

/// Waits (cheaply: by events) until the daemon shows `n` distinct group messages whose text
/// starts with `prefix`; returns how long it took, or `None` after `limit`.
fn wait_group_messages(
    d: &Daemon,
    gid: &str,
    prefix: &str,
    n: usize,
    limit: Duration,
) -> Option<Duration> {
    let t0 = Instant::now();
    let mut sub = d.client();
    sub.ok(json!({"cmd": "subscribe"}));
    let mut seen: std::collections::BTreeSet<String> = all_history(&mut d.client(), gid)
        .iter()
        .filter(|m| m["text"].as_str().unwrap().starts_with(prefix))
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    while seen.len() < n {
        if t0.elapsed() > limit {
            return None;
        }
        let e = sub.event();
        if e["event"] == json!("group_message") && e["message"]["conversation"] == json!(gid) {
            let t = e["message"]["text"].as_str().unwrap_or_default();
            if t.starts_with(prefix) {
                seen.insert(t.to_owned());
            }
        }
    }
    Some(t0.elapsed())
}

/// Makes a group of every daemon, created by daemon 0, which must be everyone's buddy.
fn make_group(net: &Net) -> String {
    let mut c0 = net.client(0);
    for (i, id) in net.ids.iter().enumerate().skip(1) {
        c0.ok(json!({"cmd": "add", "id": id}));
        net.client(i).ok(json!({"cmd": "add", "id": net.ids[0]}));
    }
    for id in net.ids.iter().skip(1) {
        wait_until(secs(20), "buddies online", || {
            presence(&mut c0, id) == "available"
        });
    }
    let gid = c0.ok(json!({"cmd": "group_create"}))["gid"]
        .as_str()
        .unwrap()
        .to_owned();
    let n = net.ids.len();
    for i in 1..n {
        c0.ok(json!({"cmd": "group_invite", "gid": gid, "id": net.ids[i]}));
        let mut ci = net.client(i);
        wait_until(secs(10), "the invite", || {
            ci.call(json!({"cmd": "group_accept", "gid": gid}))["ok"] == json!(true)
        });
        wait_until(secs(20), "joined", || {
            ci.ok(json!({"cmd": "group_members", "gid": gid}))["state"] == json!("joined")
        });
    }
    wait_until(secs(30), "every member lists everyone", || {
        (0..n).all(|i| {
            let g = net
                .client(i)
                .ok(json!({"cmd": "group_members", "gid": gid}));
            g["state"] == json!("joined") && g["members"].as_array().unwrap().len() == n - 1
        })
    });
    wait_until(secs(30), "every member online with everyone", || {
        (0..n).all(|i| {
            let mut c = net.client(i);
            (0..n)
                .filter(|j| *j != i)
                .all(|j| presence(&mut c, &net.ids[j]) == "available")
        })
    });
    gid
}

/// Group messages as stored in a (stopped) daemon's database.
fn stored_group_texts(dir: &Path, gid: &str) -> Vec<String> {
    use torchat_store::{Conversation, SqliteStore, Store};
    let store = SqliteStore::open(dir.join("torchat.sqlite3")).unwrap();
    let gid = torchat_wire::GroupId::new(gid).unwrap();
    let rows = store
        .history(&Conversation::Group(gid), None, 1_000_000)
        .unwrap();
    rows.into_iter()
        .map(|m| String::from_utf8_lossy(&m.msg.text).into_owned())
        .collect()
}

#[test]
fn group_member_killed_mid_burst_gets_every_message_and_delivered_is_true() {
    const BURST: usize = 400;
    let root = tempfile::tempdir().unwrap();
    let mut net = Net::start(root.path(), &["alice", "bob", "carol"], "");
    let gid = make_group(&net);
    let mut ca = net.client(0);

    // Alice says BURST messages; bob is killed with kill -9 while they go out.
    let said = AtomicUsize::new(0);
    let mut acked = vec![];
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            for i in 0..BURST {
                let t = format!("burst {i}");
                let r = ca.call(json!({"cmd": "group_say", "gid": gid, "text": t}));
                assert_eq!(r["ok"], json!(true), "{r}");
                acked.push(t);
                said.fetch_add(1, Ordering::SeqCst);
            }
        });
        wait_until(secs(30), "the burst to start", || {
            said.load(Ordering::SeqCst) >= 60
        });
        net.daemons[1].kill();
        h.join().unwrap();
    });
    assert_eq!(acked.len(), BURST);

    // While bob is down: every message alice calls delivered to both others is stored at bob.
    std::thread::sleep(secs(2));
    let ha = all_history(&mut ca, &gid);
    let delivered_2: Vec<String> = ha
        .iter()
        .filter(|m| m["delivery"] == json!("delivered 2"))
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    let at_bob = stored_group_texts(&net.daemons[1].dir, &gid);
    let missing_at_bob: Vec<&String> = delivered_2.iter().filter(|t| !at_bob.contains(t)).collect();
    assert!(
        missing_at_bob.is_empty(),
        "alice says 'delivered 2' for {} message(s) bob does not hold, e.g. {:?}",
        missing_at_bob.len(),
        missing_at_bob.first()
    );

    // Bob comes back and gets every message exactly once.
    net.daemons[1].spawn();
    let mut cb = net.client(1);
    let t0 = Instant::now();
    let complete = |cl: &mut Client| count_each(&texts(&all_history(cl, &gid)), "burst ").len();
    let ok = {
        let deadline = Instant::now() + secs(90);
        loop {
            if complete(&mut cb) == BURST {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let got = count_each(&texts(&all_history(&mut cb, &gid)), "burst ");
    assert!(
        ok,
        "bob holds {} of {BURST} messages {:?} after the restart",
        got.len(),
        t0.elapsed()
    );
    let dup: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "duplicates at bob: {dup:?}");
    let mut cc = net.client(2);
    let at_carol = count_each(&texts(&all_history(&mut cc, &gid)), "burst ");
    assert_eq!(at_carol.len(), BURST, "carol has them all");
    assert!(at_carol.values().all(|n| *n == 1), "no duplicates at carol");

    // And now alice says 'delivered 2' for every one of them.
    wait_until(
        secs(30),
        "alice sees every message delivered to both",
        || {
            all_history(&mut ca, &gid)
                .iter()
                .filter(|m| m["text"].as_str().unwrap().starts_with("burst "))
                .all(|m| m["delivery"] == json!("delivered 2"))
        },
    );
    eprintln!(
        "bob complete {:?} after its restart (kill after {} of {BURST})",
        t0.elapsed(),
        at_bob.len()
    );
}

#[test]
fn one_to_one_receiver_killed_mid_burst_loses_nothing() {
    const BURST: usize = 300;
    let root = tempfile::tempdir().unwrap();
    let mut net = Net::start(root.path(), &["alice", "bob"], "");
    let (a, b) = (net.ids[0].clone(), net.ids[1].clone());
    let mut ca = net.client(0);
    net.client(1).ok(json!({"cmd": "add", "id": a}));
    ca.ok(json!({"cmd": "add", "id": b}));
    wait_until(secs(20), "online", || presence(&mut ca, &b) == "available");

    let said = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            for i in 0..BURST {
                let r = ca.call(json!({"cmd": "send", "to": b, "text": format!("one {i}")}));
                assert_eq!(r["ok"], json!(true), "{r}");
                said.fetch_add(1, Ordering::SeqCst);
            }
        });
        wait_until(secs(30), "the burst to start", || {
            said.load(Ordering::SeqCst) >= 50
        });
        net.daemons[1].kill();
        h.join().unwrap();
    });
    std::thread::sleep(secs(1));
    net.daemons[1].spawn();
    let mut cb = net.client(1);
    let deadline = Instant::now() + secs(60);
    let got = loop {
        let got = count_each(&texts(&all_history(&mut cb, &a)), "one ");
        if got.len() == BURST || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(got.len(), BURST, "bob got {} of {BURST}", got.len());
    let dup: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "duplicates at bob: {dup:?}");
    wait_until(secs(30), "alice sees every message delivered", || {
        all_history(&mut ca, &b)
            .iter()
            .all(|m| m["delivery"] == json!("delivered 1"))
    });
}

/// Carol is away while alice and bob say 500 messages each; dave gets them. Then alice and
/// bob go offline and carol comes back: she gets all 1,000 from dave. `away` is how long carol
/// stays away after the last message, against an outbox lifetime of 5 s.
fn catch_up_from_a_third_member(away: Duration) -> Duration {
    const EACH: usize = 500;
    let root = tempfile::tempdir().unwrap();
    let mut net = Net::start(
        root.path(),
        &["alice", "bob", "carol", "dave"],
        "relay_lifetime_secs = 5",
    );
    let gid = make_group(&net);
    net.daemons[2].stop();
    let (mut ca, mut cb) = (net.client(0), net.client(1));
    for i in 0..EACH {
        ca.ok(json!({"cmd": "group_say", "gid": gid, "text": format!("from alice {i}")}));
        cb.ok(json!({"cmd": "group_say", "gid": gid, "text": format!("from bob {i}")}));
    }
    let mut cd = net.client(3);
    wait_until(secs(60), "dave has all 1000", || {
        count_each(&texts(&all_history(&mut cd, &gid)), "from ").len() == 2 * EACH
    });
    std::thread::sleep(away);
    net.daemons[0].stop();
    net.daemons[1].stop();
    let t0 = Instant::now();
    net.daemons[2].spawn();
    let waited = wait_group_messages(&net.daemons[2], &gid, "from ", 2 * EACH, secs(120));
    let took = t0.elapsed();
    let mut cc = net.client(2);
    let got = count_each(&texts(&all_history(&mut cc, &gid)), "from ");
    assert!(waited.is_some(), "carol: no complete catch-up in 120 s");
    assert_eq!(
        got.len(),
        2 * EACH,
        "carol got {} of {} from dave in {took:?}",
        got.len(),
        2 * EACH
    );
    assert!(got.values().all(|n| *n == 1), "no duplicates at carol");
    took
}

#[test]
fn catch_up_of_1000_messages_from_a_third_member() {
    let took = catch_up_from_a_third_member(Duration::ZERO);
    eprintln!("catch-up of 1000 messages (away 0 s after the last): {took:?}");
}

#[test]
fn catch_up_after_longer_than_the_outbox_lifetime() {
    let took = catch_up_from_a_third_member(secs(8));
    eprintln!("catch-up of 1000 messages (away 8 s > 5 s outbox lifetime): {took:?}");
}
