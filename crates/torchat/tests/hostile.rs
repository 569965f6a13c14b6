//! The hostile-input suite: attacks against a running daemon over raw sockets (TorChat on the
//! direct transport, on loopback) and over its control socket, each with the reaction it must
//! get, the daemon's memory sampled after each, and a real buddy still chatting at the end.
//! Issue 12 lists the findings these cases keep fixed.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use torchat_testkit::{
    direct_config, free_port, history, legacy_id, presence, rss_kib, wait_until, Client, Daemon,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An attacker identity: an id alice's direct transport can dial back, and the listener it
/// dials.
struct Attacker {
    id: String,
    listener: TcpListener,
}

impl Attacker {
    fn new(name: &str) -> (Attacker, u16) {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        (
            Attacker {
                id: legacy_id(name),
                listener,
            },
            port,
        )
    }

    /// The next connection alice opens to us (within 10 s).
    fn accept(&self) -> TcpStream {
        let deadline = Instant::now() + secs(10);
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    return s;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("alice did not connect back to {}: {e}", self.id),
            }
        }
    }
}

/// An authenticated session of an attacker with alice: we write on `inc`; alice's lines to us
/// (on her connection) are collected by a thread.
struct Session {
    inc: TcpStream,
    lines: Arc<Mutex<Vec<String>>>,
    open: Arc<AtomicBool>,
}

impl Session {
    fn send(&mut self, data: &[u8]) -> bool {
        self.inc.write_all(data).is_ok()
    }

    fn line(&mut self, l: &str) -> bool {
        self.send(format!("{l}\n").as_bytes())
    }

    fn saw(&self, prefix: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with(prefix))
            .count()
    }
}

/// Reads alice's lines from `s` until it closes (keeps the first 20,000).
fn collect(s: TcpStream) -> (Arc<Mutex<Vec<String>>>, Arc<AtomicBool>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let open = Arc::new(AtomicBool::new(true));
    let (l, o) = (lines.clone(), open.clone());
    std::thread::spawn(move || {
        let mut r = BufReader::new(s);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let mut v = l.lock().unwrap();
                    if v.len() < 20_000 {
                        v.push(String::from_utf8_lossy(&buf).trim_end().to_owned());
                    }
                }
            }
        }
        o.store(false, Ordering::SeqCst);
    });
    (lines, open)
}

/// The whole TorChat handshake as `a`, ending authenticated and online with alice.
fn handshake(alice: u16, a: &Attacker) -> Session {
    let mut inc = TcpStream::connect(("127.0.0.1", alice)).unwrap();
    inc.write_all(format!("ping {} evilcookie{}\n", a.id, a.id).as_bytes())
        .unwrap();
    let out = a.accept();
    let (lines, open) = collect(out);
    let mut cookie = None;
    wait_until(secs(10), "alice's ping", || {
        cookie = lines.lock().unwrap().iter().find_map(|l| {
            l.strip_prefix("ping ")
                .map(|r| r.split(' ').nth(1).unwrap_or("").to_owned())
        });
        cookie.is_some()
    });
    let cookie = cookie.unwrap();
    inc.write_all(
        format!(
            "pong {cookie}\nclient evil\nversion 6.6.6\nsupports groupchat\nstatus available\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let s = Session { inc, lines, open };
    wait_until(secs(10), "alice's info after our pong", || {
        s.saw("status") > 0
    });
    s
}

/// Whether alice closes `s` within `limit` (she never writes on a connection we opened).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 64];
    let deadline = Instant::now() + limit;
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn requests(c: &mut Client) -> Vec<Value> {
    c.ok(json!({"cmd": "requests"})).as_array().unwrap().clone()
}

fn request_of(c: &mut Client, id: &str) -> Option<Value> {
    requests(c).into_iter().find(|r| r["id"] == json!(id))
}

fn temporaries(c: &mut Client) -> usize {
    c.ok(json!({"cmd": "buddies"}))
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["kind"] == json!("temporary"))
        .count()
}

fn invited(c: &mut Client) -> usize {
    c.ok(json!({"cmd": "groups"}))
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["state"] == json!("invited"))
        .count()
}

/// A valid legacy id from a number.
fn nid(prefix: char, n: usize) -> String {
    let mut s = String::from(prefix);
    let mut x = n;
    for _ in 0..15 {
        s.push((b'a' + (x % 26) as u8) as char);
        x /= 26;
    }
    s
}

fn gid(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Events seen by a subscriber, by name.
type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

fn subscriber(d: &Daemon) -> (Counts, Arc<AtomicBool>) {
    let mut c = d.client();
    c.ok(json!({"cmd": "subscribe"}));
    let counts: Counts = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (k, s) = (counts.clone(), stop.clone());
    std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            let Some(l) = c.read_line() else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                if let Some(e) = v["event"].as_str() {
                    *k.lock().unwrap().entry(e.to_owned()).or_default() += 1;
                }
            }
        }
    });
    (counts, stop)
}

#[test]
fn hostile_peers_and_clients_take_nothing_away() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let names = [
        "mallory", "eve", "trudy", "oscar", "peggy", "victor", "sybil", "wendy", "judy",
    ];
    let mut attackers = BTreeMap::new();
    let mut peers: Vec<(&str, u16)> = vec![("bob", pb)];
    for n in names {
        let (a, port) = Attacker::new(n);
        attackers.insert(n, a);
        peers.push((n, port));
    }
    let mut da = Daemon::start(
        root.path(),
        "alice",
        &direct_config("alice", pa, &peers, &[]),
    );
    let db = Daemon::start(
        root.path(),
        "bob",
        &direct_config("bob", pb, &[("alice", pa)], &[]),
    );
    let (a, b) = (legacy_id("alice"), legacy_id("bob"));
    let (mut ca, mut cb) = (da.client(), db.client());
    ca.ok(json!({"cmd": "add", "id": b, "alias": "bob"}));
    cb.ok(json!({"cmd": "add", "id": a}));
    wait_until(secs(20), "alice and bob online", || {
        presence(&mut ca, &b) == "available" && presence(&mut cb, &a) == "available"
    });
    let (events, stop_events) = subscriber(&da);
    let pid = da.pid().unwrap();
    let base_rss = rss_kib(pid).unwrap();
    let mut rss: Vec<(String, u64)> = vec![];
    let mut cases = 0;
    let mut case = |name: &str, rss: &mut Vec<(String, u64)>| {
        cases += 1;
        let r = rss_kib(pid).expect("alice is alive");
        eprintln!("case {cases:2} {name}: rss {} KiB", r);
        rss.push((name.to_owned(), r));
    };
    let at = |n: &str| &attackers[n];

    // ----- framing and pre-authentication -----

    // 1. A line over the 256 KiB cap before any ping: closed.
    let mut s = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    let _ = s.write_all(&vec![b'x'; 300 * 1024]);
    assert!(closed_within(&mut s, secs(5)), "oversize pre-auth line");
    case("oversize line before auth", &mut rss);

    // 2. An unterminated line that keeps growing: closed at the cap, never buffered beyond.
    let mut s = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    let mut sent = 0;
    while sent < 1024 * 1024 && s.write_all(&[b'a'; 4096]).is_ok() {
        sent += 4096;
    }
    assert!(closed_within(&mut s, secs(5)), "unterminated line");
    case("unterminated line", &mut rss);

    // 3. NUL, CR and invalid UTF-8 junk before auth: closed after 24 lines.
    let mut s = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    for i in 0..30 {
        let _ = s.write_all(format!("\0\r\u{1b}junk{i} \u{ff}").as_bytes());
        let _ = s.write_all(b"\xff\xfe\xc0\x80 status available\r\n");
    }
    assert!(closed_within(&mut s, secs(5)), "junk before auth");
    case("NUL/CR/bad UTF-8 before auth", &mut rss);

    // 4. Protocol lines before auth are not acted on: a message before any ping is dropped.
    let mut s = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    s.write_all(b"message let me in\nadd_me\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(requests(&mut ca).is_empty());
    drop(s);
    case("messages before auth", &mut rss);

    // 5. Impersonation: a ping naming bob from a stranger's socket. Alice pongs bob himself;
    //    whatever comes on the forged connection is never bob's.
    let mut s = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    s.write_all(format!("ping {b} forged\n").as_bytes())
        .unwrap();
    s.write_all(b"pong notthecookie\nmessage I am bob, send money\nstatus available\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!history(&mut ca, &b)
        .iter()
        .any(|m| m["text"].as_str().unwrap_or("").contains("send money")));
    assert_eq!(presence(&mut ca, &b), "available", "bob's session survives");
    drop(s);
    case("impersonation ping", &mut rss);

    // 6. A forged pong (wrong cookie) after a valid ping: not authenticated, messages dropped.
    let v = at("victor");
    let mut s = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    s.write_all(format!("ping {} c1\n", v.id).as_bytes())
        .unwrap();
    let _back = v.accept();
    s.write_all(b"pong 0000000000000000000000000000000000000000000000000000000000000000\n")
        .unwrap();
    s.write_all(b"message unauthenticated\nadd_me\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(request_of(&mut ca, &v.id).is_none());
    drop(s);
    case("forged pong", &mut rss);

    // 7. A ping naming alice herself: closed.
    let mut s = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    s.write_all(format!("ping {a} self\n").as_bytes()).unwrap();
    assert!(closed_within(&mut s, secs(5)), "ping with our own id");
    case("ping with our own id", &mut rss);

    // 8. A second id on the same connection: closed.
    let mut s = TcpStream::connect(("127.0.0.1", pa)).unwrap();
    s.write_all(format!("ping {} x\nping {} y\n", nid('q', 1), nid('q', 2)).as_bytes())
        .unwrap();
    assert!(closed_within(&mut s, secs(5)), "second id");
    case("second id on a connection", &mut rss);

    // 9. Idle connection flood: 300 connections that never speak; the unauthenticated cap (64)
    //    evicts the oldest.
    let mut idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", pa)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let closed = idle
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(5)))
        .filter(|c| *c)
        .count();
    assert!(
        closed >= 200,
        "only {closed} of 300 idle connections evicted"
    );
    drop(idle);
    case("idle connection flood", &mut rss);

    // 10. Slowloris: 100 connections each dribbling a ping one byte at a time.
    let mut slow: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", pa)).ok())
        .collect();
    for round in 0..5 {
        for s in slow.iter_mut() {
            let _ = s.write_all(&[b"ping "[round]]);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let closed = slow
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_millis(5)))
        .filter(|c| *c)
        .count();
    assert!(
        closed >= 36,
        "only {closed} of 100 slow connections evicted"
    );
    drop(slow);
    case("slowloris", &mut rss);

    // 11. A ping flood with random ids: strangers stay within their cap (256).
    let mut conns = vec![];
    for k in 0..600 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", pa)) {
            let _ = s.write_all(format!("ping {} r{k}\n", nid('r', k)).as_bytes());
            conns.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert!(temporaries(&mut ca) <= 256);
    drop(conns);
    case("ping flood with random ids", &mut rss);

    // 12. A stranger's message flood: held in a bounded request, never in a conversation.
    let db_before = dir_bytes(&da.dir);
    let m = at("mallory");
    let mut ms = handshake(pa, m);
    let mut flood = Vec::new();
    for i in 0..20_000 {
        flood.extend_from_slice(format!("message spam number {i}\n").as_bytes());
    }
    assert!(ms.send(&flood));
    wait_until(secs(10), "mallory's request", || {
        request_of(&mut ca, &m.id).is_some_and(|r| r["dropped"].as_u64().unwrap_or(0) >= 19_000)
    });
    let r = request_of(&mut ca, &m.id).unwrap();
    assert!(r["messages"].as_array().unwrap().len() <= 32);
    assert!(history(&mut ca, &m.id).is_empty());
    case("stranger message flood (20,000)", &mut rss);

    // 13. 200 messages of 250 KB from a stranger: at most 64 KiB held.
    let big = format!("message {}\n", "A".repeat(250_000));
    for _ in 0..200 {
        if !ms.send(big.as_bytes()) {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let grown = dir_bytes(&da.dir).saturating_sub(db_before);
    assert!(grown < 4 * 1024 * 1024, "the store grew by {grown} bytes");
    let r = request_of(&mut ca, &m.id).unwrap();
    let held: usize = r["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().len())
        .sum();
    assert!(held <= 64 * 1024, "{held}");
    case("stranger big messages (200 x 250 KB)", &mut rss);

    // 14. add_me from a stranger: a request, not a buddy.
    ms.line("add_me");
    wait_until(secs(5), "add_me in the request", || {
        request_of(&mut ca, &m.id).is_some_and(|r| r["added_me"] == json!(true))
    });
    let kinds = ca.ok(json!({"cmd": "buddies"}));
    assert!(!kinds
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == json!(m.id) && x["kind"] == json!("permanent")));
    case("add_me from a stranger", &mut rss);

    // 15. remove_me and disconnect from a stranger change nothing of ours.
    ms.line("remove_me");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(presence(&mut ca, &b), "available");
    case("remove_me from a stranger", &mut rss);

    // 16. Hostile profile: NUL, CR, ESC, bidi in the name: kept raw in the API.
    let mut ps = handshake(pa, at("peggy"));
    ps.send("profile_name \0evil\r\u{1b}[2J\u{202e}gpj.exe\n".as_bytes());
    wait_until(secs(5), "peggy's profile", || {
        ca.ok(json!({"cmd": "buddies"}))
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"].as_str().is_some_and(|n| n.contains('\u{1b}')))
    });
    let raw = ca.ok(json!({"cmd": "buddies"}));
    let name = raw
        .as_array()
        .unwrap()
        .iter()
        .find_map(|x| {
            x["name"]
                .as_str()
                .filter(|n| n.contains("evil"))
                .map(str::to_owned)
        })
        .unwrap();
    assert_eq!(
        name, "\0evil\r\u{1b}[2J\u{202e}gpj.exe",
        "the API keeps the raw bytes"
    );
    case("hostile profile name", &mut rss);

    // 17. Unknown commands: answered with not_implemented, rate-limited, connection kept.
    for i in 0..50 {
        ps.line(&format!("frobnicate_{} x", "z".repeat(i % 5)));
    }
    wait_until(secs(5), "not_implemented", || ps.saw("not_implemented") > 0);
    assert!(ps.open.load(Ordering::SeqCst));
    case("unknown commands", &mut rss);

    // 18. A status flood: over the rate limit the rest is dropped; the session stays.
    let mut st = String::new();
    for _ in 0..5000 {
        st.push_str("status away\nprofile_text spam\n");
    }
    ps.send(st.as_bytes());
    std::thread::sleep(Duration::from_millis(500));
    assert!(ps.open.load(Ordering::SeqCst));
    case("status and profile flood", &mut rss);

    // 19. torchat_delayed from a stranger with a time in the future: held, dated now.
    ps.line("torchat_delayed 99999999999999 from the future");
    wait_until(secs(5), "peggy's delayed message", || {
        request_of(&mut ca, &at("peggy").id).is_some()
    });
    let r = request_of(&mut ca, &at("peggy").id).unwrap();
    let when = r["messages"][0]["at"].as_u64().unwrap();
    assert!(when < 99999999999999 && when > 1_600_000_000_000);
    case("delayed message from the future", &mut rss);

    // 20. An invite flood: 1000 invites from one stranger, at most 4 pending.
    let mut es = handshake(pa, at("eve"));
    let mut inv = String::new();
    for i in 0..1000 {
        inv.push_str(&format!("groupchat_invite {}\n", gid(i)));
    }
    es.send(inv.as_bytes());
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        invited(&mut ca) <= 4,
        "{} invites pending",
        invited(&mut ca)
    );
    let mine = ca.ok(json!({"cmd": "group_create"}))["gid"]
        .as_str()
        .unwrap()
        .to_owned();
    case("invite flood", &mut rss);

    // 21. Invites from many strangers: at most 64 pending in total (sybils).
    for n in ["sybil", "wendy", "judy"] {
        let mut s = handshake(pa, at(n));
        for i in 0..10 {
            s.line(&format!("groupchat_invite {}", gid(100_000 + i)));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(invited(&mut ca) <= 16);
    case("invites from several strangers", &mut rss);

    // 22. A huge participant list (14,700 ids, 250 KB): rejected; accepting the invite then
    //     makes no member of it.
    let mut ts = handshake(pa, at("trudy"));
    let g = gid(777);
    ts.line(&format!("groupchat_invite {g}"));
    let ids: Vec<String> = (0..14_700).map(|i| nid('z', i)).collect();
    ts.line(&format!("groupchat_participants {g} {}", ids.join(" ")));
    std::thread::sleep(Duration::from_millis(500));
    ca.ok(json!({"cmd": "group_accept", "gid": g}));
    std::thread::sleep(Duration::from_millis(500));
    let members = ca.ok(json!({"cmd": "group_members", "gid": g}))["members"]
        .as_array()
        .unwrap()
        .len();
    assert!(members <= 1, "{members} members from a rejected list");
    assert!(temporaries(&mut ca) <= 256 + 16);
    case("huge participant list", &mut rss);

    // 23. Forged echoes and messages for our own group from a non-member: never shown.
    ts.line(&format!("groupchat_echoed_message {mine} {b} forged words"));
    ts.line(&format!("groupchat_message {mine} I am not a member"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(history(&mut ca, &mine).is_empty());
    case("forged echoes", &mut rss);

    // 24. Group packets for groups we never heard of: ignored, nothing created.
    let before = ca.ok(json!({"cmd": "groups"})).as_array().unwrap().len();
    ts.line(&format!("groupchat_message {} hello", gid(31337)));
    ts.line(&format!("groupchat_join {}", gid(31338)));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        ca.ok(json!({"cmd": "groups"})).as_array().unwrap().len(),
        before
    );
    case("packets for unknown groups", &mut rss);

    // 25. A file-offer flood from a stranger: declined unasked, no offer events, no lag.
    let mut os = handshake(pa, at("oscar"));
    let mut offers = String::new();
    for i in 0..2000 {
        offers.push_str(&format!(
            "filename f{i} 1099511627776 8192 ../../etc/passwd{}\n",
            "x".repeat(i % 100)
        ));
    }
    os.send(offers.as_bytes());
    wait_until(secs(5), "declines", || os.saw("file_stop_sending") >= 1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(ca
        .ok(json!({"cmd": "files"}))
        .as_array()
        .unwrap()
        .is_empty());
    {
        let ev = events.lock().unwrap();
        assert_eq!(ev.get("file_offer"), None);
        assert_eq!(ev.get("lagged"), None, "{ev:?}");
    }
    case("file-offer flood", &mut rss);

    // 26. A ping flood with random cookies on one authenticated id (spare connections).
    for k in 0..50 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", pa)) {
            let _ = s.write_all(format!("ping {} flood{k}\n", at("oscar").id).as_bytes());
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        os.open.load(Ordering::SeqCst),
        "forged pings for a live id cost a spare connection, not the session"
    );
    assert_eq!(presence(&mut ca, &b), "available");
    case("ping flood on a live id", &mut rss);

    // ----- the control API -----

    // 27. The 65th control client is told and closed, never left hanging.
    // alice has two clients already (ca and the subscriber): 62 more fill the 64 slots.
    let mut clients: Vec<Client> = (0..62)
        .map(|_| {
            let mut c = da.client();
            c.ok(json!({"cmd": "info"}));
            c
        })
        .collect();
    let extra = UnixStream::connect(da.socket()).unwrap();
    extra.set_read_timeout(Some(secs(5))).unwrap();
    let mut r = BufReader::new(extra);
    let mut l = String::new();
    r.read_line(&mut l).unwrap();
    let v: Value = serde_json::from_str(&l).unwrap();
    assert_eq!(v["error"]["code"], json!("too_many_clients"), "{l}");
    l.clear();
    assert_eq!(r.read_line(&mut l).unwrap(), 0, "closed after the error");
    clients.clear();
    std::thread::sleep(Duration::from_millis(200));
    case("65th control client", &mut rss);

    // 28–33. Request-level abuse on one connection.
    let s = UnixStream::connect(da.socket()).unwrap();
    s.set_read_timeout(Some(secs(10))).unwrap();
    let mut rd = BufReader::new(s.try_clone().unwrap());
    let mut wr = s;
    let mut reply = || {
        let mut l = String::new();
        rd.read_line(&mut l).unwrap();
        serde_json::from_str::<Value>(&l).unwrap()
    };
    wr.write_all(b"{\"req\":41,\"cmd\":\"frobnicate\"}\n")
        .unwrap();
    let v = reply();
    assert_eq!(
        (v["req"].clone(), v["error"]["code"].clone()),
        (json!(41), json!("bad_request"))
    );
    case("bad command echoes req", &mut rss);
    wr.write_all(b"\n\n   \n\r\n{\"req\":42,\"cmd\":\"info\"}\n")
        .unwrap();
    let v = reply();
    assert_eq!(
        (v["req"].clone(), v["ok"].clone()),
        (json!(42), json!(true)),
        "empty lines get no reply"
    );
    case("empty lines", &mut rss);
    wr.write_all(
        format!("{{\"req\":43,\"cmd\":\"send\",\"to\":\"{a}\",\"text\":\"me\"}}\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(reply()["error"]["code"], json!("own_id"));
    case("send to our own id", &mut rss);
    let mut huge = vec![b'{'; 200 * 1024];
    huge.push(b'\n');
    wr.write_all(&huge).unwrap();
    assert_eq!(reply()["error"]["code"], json!("too_long"));
    case("oversize control line", &mut rss);
    wr.write_all(b"\xff\xfe{\"req\":44}\x00\n").unwrap();
    assert_eq!(reply()["error"]["code"], json!("bad_request"));
    case("binary control line", &mut rss);
    wr.write_all(b"{\"req\":45,\"cmd\":\"request_accept\",\"id\":\"nobodynobodynobo\"}\n")
        .unwrap();
    assert_eq!(reply()["error"]["code"], json!("no_such_request"));
    case("accept a request that does not exist", &mut rss);

    // 34. 100 clients vanishing mid-line.
    for _ in 0..100 {
        let mut s = UnixStream::connect(da.socket()).unwrap();
        let _ = s.write_all(b"{\"cmd\":\"hist");
    }
    assert_eq!(ca.ok(json!({"cmd": "info"}))["api_version"], json!(1));
    case("control clients vanishing mid-line", &mut rss);

    // ----- answering the requests, and a real buddy still chatting -----

    // 35. Accepting mallory's request moves its held messages into the conversation.
    let held = request_of(&mut ca, &m.id).unwrap()["messages"]
        .as_array()
        .unwrap()
        .len();
    ca.ok(json!({"cmd": "request_accept", "id": m.id}));
    assert_eq!(history(&mut ca, &m.id).len(), held);
    assert!(request_of(&mut ca, &m.id).is_none());
    ca.ok(json!({"cmd": "request_ignore", "id": at("peggy").id}));
    assert!(request_of(&mut ca, &at("peggy").id).is_none());
    case("accept and ignore requests", &mut rss);

    ca.ok(json!({"cmd": "send", "to": b, "text": "still here?"}));
    cb.ok(json!({"cmd": "send", "to": a, "text": "still here!"}));
    wait_until(secs(15), "alice and bob still chatting", || {
        history(&mut cb, &a)
            .iter()
            .any(|m| m["text"] == json!("still here?"))
            && history(&mut ca, &b)
                .iter()
                .any(|m| m["text"] == json!("still here!"))
    });
    case("buddy still chatting", &mut rss);
    stop_events.store(true, Ordering::SeqCst);
    // A request waiting when alice restarts is still there afterwards.
    es.line("message remember me");
    wait_until(secs(5), "eve's request", || {
        request_of(&mut ca, &at("eve").id).is_some()
    });

    assert!(cases >= 30, "{cases} cases");
    let peak = rss.iter().map(|(_, r)| *r).max().unwrap();
    eprintln!(
        "{cases} cases in {:.1} s; alice's RSS {base_rss} KiB before, peak {peak} KiB",
        started.elapsed().as_secs_f64()
    );
    assert!(
        peak < base_rss + 64 * 1024,
        "alice's memory grew from {base_rss} to {peak} KiB: {rss:?}"
    );
    drop(ms);
    drop(es);
    drop(ts);
    drop(os);
    drop(ps);
    da.stop();
    da.spawn();
    let mut ca = da.client();
    let r = request_of(&mut ca, &at("eve").id).expect("the request survives a restart");
    assert_eq!(r["messages"][0]["text"], json!("remember me"));
    assert!(
        request_of(&mut ca, &m.id).is_none(),
        "accepted stays accepted"
    );
}
