//! Node benchmark: handshake time, 1:1 messages per second between two daemons over loopback,
//! idle memory, memory per connected buddy. Figures go to docs/benchmarks.md.
//!
//! ```sh
//! cargo build --release -p torchat && cargo run --release -p torchat --example node_bench
//! ```
//! The daemons under test are real `torchat daemon` processes (direct transport, SQLite store
//! with `synchronous=FULL` in a temporary directory); the extra buddies for the memory figure
//! are nodes inside this process.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Api {
    rd: BufReader<UnixStream>,
    wr: UnixStream,
    n: u64,
}

impl Api {
    fn connect(dir: &Path) -> Api {
        let s = UnixStream::connect(dir.join("control.sock")).unwrap();
        Api {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
            n: 0,
        }
    }
    fn call(&mut self, mut v: Value) -> Value {
        self.n += 1;
        v["req"] = json!(self.n);
        self.wr.write_all(format!("{v}\n").as_bytes()).unwrap();
        loop {
            let mut l = String::new();
            self.rd.read_line(&mut l).unwrap();
            let r: Value = serde_json::from_str(&l).unwrap();
            if r["req"] == json!(self.n) {
                assert_eq!(r["ok"], json!(true), "{r}");
                return r["result"].clone();
            }
        }
    }
}

fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("torchat")
}

fn free_port() -> u16 {
    // Outside the kernel's ephemeral range (32768–60999), so that no outgoing connection of a
    // daemon can take the port between this check and the daemon binding it.
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20000 + ((std::process::id().wrapping_mul(7919) + n * 13) % 12000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn id(name: &str) -> String {
    format!("{name:a<16}")
}

fn daemon(root: &Path, name: &str, port: u16, peers: &[(String, u16)]) -> (Child, PathBuf) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = format!(
        "[transport]\nkind = \"direct\"\n[transport.direct]\nlisten = \"127.0.0.1:{port}\"\nid = \"{}\"\n[transport.direct.peers]\n",
        id(name)
    );
    for (p, port) in peers {
        cfg.push_str(&format!("\"{p}\" = \"127.0.0.1:{port}\"\n"));
    }
    std::fs::write(dir.join("c.toml"), cfg).unwrap();
    let child = Command::new(binary())
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--config",
            dir.join("c.toml").to_str().unwrap(),
            "daemon",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while UnixStream::connect(dir.join("control.sock")).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, dir)
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn online(api: &mut Api, who: &str) -> bool {
    api.call(json!({"cmd": "buddies"}))
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["id"] == json!(who) && b["presence"] == json!("available"))
}

fn main() {
    let root = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let (a, b) = (id("alice"), id("bob"));
    // Extra buddies for the memory figure: nodes in this process, listening before alice
    // starts so that her direct transport knows where to dial them back.
    let k = 100usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut handles = vec![];
    rt.block_on(async {
        for i in 0..k {
            let pid = id(&format!(
                "peer{}{}",
                (b'a' + (i / 26) as u8) as char,
                (b'a' + (i % 26) as u8) as char
            ));
            let own: torchat_wire::OnionId = pid.parse().unwrap();
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let routes = BTreeMap::from([(a.parse().unwrap(), ([127, 0, 0, 1], pa).into())]);
            let (direct, addr) = torchat_tor::direct::Direct::start(
                own.clone(),
                ([127, 0, 0, 1], 0).into(),
                routes,
                tx,
            )
            .await
            .unwrap();
            let dir = root.path().join(&pid);
            std::fs::create_dir_all(&dir).unwrap();
            let cfg = torchat_node::NodeConfig {
                files: torchat_node::FilesConfig::new(dir.join("downloads")),
                data_dir: dir,
                core: torchat_core::Config::new(own.clone()),
                log_secrets: false,
            };
            let h = torchat_node::start(
                cfg,
                Box::new(torchat_store::MemoryStore::new()),
                Arc::new(direct),
                rx,
            )
            .await
            .unwrap();
            handles.push((h, pid, addr));
        }
    });
    let mut alice_peers = vec![(b.clone(), pb)];
    alice_peers.extend(
        handles
            .iter()
            .map(|(_, pid, addr): &(_, String, std::net::SocketAddr)| (pid.clone(), addr.port())),
    );
    let (mut ca, da) = daemon(root.path(), "alice", pa, &alice_peers);
    let (mut cb, db) = daemon(root.path(), "bob", pb, &[(a.clone(), pa)]);
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "idle daemon RSS: alice {} KiB, bob {} KiB",
        rss_kib(ca.id()),
        rss_kib(cb.id())
    );
    let (mut aa, mut ab) = (Api::connect(&da), Api::connect(&db));

    // Handshake: both add each other; time until both see the other available.
    let mut hs = vec![];
    for round in 0..5 {
        let t = Instant::now();
        if round == 0 {
            aa.call(json!({"cmd": "add", "id": b}));
            ab.call(json!({"cmd": "add", "id": a}));
        } else {
            // Reconnect: block and unblock tears the session down and builds it again.
            aa.call(json!({"cmd": "block", "id": b}));
            while online(&mut ab, &a) {
                std::thread::sleep(Duration::from_millis(5));
            }
            ab.call(json!({"cmd": "remove", "id": a}));
            aa.call(json!({"cmd": "unblock", "id": b}));
            ab.call(json!({"cmd": "add", "id": a}));
        }
        while !(online(&mut aa, &b) && online(&mut ab, &a)) {
            std::thread::sleep(Duration::from_millis(2));
        }
        hs.push(t.elapsed());
    }
    hs.sort();
    println!(
        "handshake (add → both available), 5 runs: median {:?}, max {:?}",
        hs[2], hs[4]
    );

    // Messages per second: N sends through the API (each persisted before its answer),
    // until all are in bob's store.
    let n = 2000;
    let t = Instant::now();
    for i in 0..n {
        aa.call(
            json!({"cmd": "send", "to": b, "text": format!("message number {i} with some text")}),
        );
    }
    let sent = t.elapsed();
    loop {
        let h = ab.call(json!({"cmd": "history", "with": a, "limit": 1000}));
        let last = h
            .as_array()
            .unwrap()
            .last()
            .map(|m| m["text"].as_str().unwrap().to_owned());
        if last.as_deref() == Some(&format!("message number {} with some text", n - 1)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let all = t.elapsed();
    println!(
        "{n} messages alice → bob: API accepted in {:.2} s ({:.0}/s), all stored at bob after {:.2} s ({:.0} msg/s end to end)",
        sent.as_secs_f64(),
        n as f64 / sent.as_secs_f64(),
        all.as_secs_f64(),
        n as f64 / all.as_secs_f64()
    );

    // Memory per connected buddy: the K in-process nodes connect to alice.
    let before = rss_kib(ca.id());
    // They add alice; she dials each back on its ping and makes it permanent on its add_me.
    for (h, pid, _) in &handles {
        let mut c = Api::connect(h.control_path.parent().unwrap());
        c.call(json!({"cmd": "add", "id": a}));
        let _ = pid;
    }
    let t = Instant::now();
    loop {
        let list = aa.call(json!({"cmd": "buddies"}));
        let on = list
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["presence"] == json!("available"))
            .count();
        if on > k {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "only {on} online");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(ca.id());
    println!(
        "alice with {} connected buddies: RSS {} KiB → {} KiB, {:.1} KiB per connected buddy",
        k + 1,
        before,
        after,
        (after.saturating_sub(before)) as f64 / k as f64
    );
    rt.block_on(async {
        for (h, _, _) in handles {
            h.shutdown().await;
        }
    });
    let _ = ca.kill();
    let _ = cb.kill();
}
