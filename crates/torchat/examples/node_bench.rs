//! Node benchmark: real `torchat daemon` processes on loopback, driven through the control API.
//! Figures go to docs/benchmarks.md (with the machine and this command line).
//!
//! ```sh
//! cargo build --release -p torchat --bin torchat --example node_bench
//! target/release/examples/node_bench                      # every section
//! target/release/examples/node_bench direct socks -n 10000,100000
//! target/release/examples/node_bench group --group 5,10,20 --group-msgs 500
//! target/release/examples/node_bench history --history 1000000
//! target/release/examples/node_bench idle buddies
//! ```
//!
//! Options:
//! - `--bin PATH`: the daemon binary (default: `torchat` beside this example), to measure an
//!   older build with the same harness;
//! - `-n N,N…`: 1:1 messages per run; `--window W`: requests in flight on the sender's control
//!   connection (default 1000);
//! - `--env K=V`: set in every daemon's environment (e.g. `MALLOC_ARENA_MAX=2`);
//! - `--group N,N…`, `--group-msgs M`, `--history MESSAGES`, `--pages P`, `--rounds R`,
//!   `--hold SECONDS` (keep the `rounds` daemons running at the end, to inspect them).
//!   `--no-sync` (group daemons without the torchat_sync extension: the seed's echoes).
//!
//! Sections:
//! - `idle`: RSS of a daemon with the direct transport and no buddies;
//! - `buddies`: handshake time and RSS per connected buddy (100 in-process nodes);
//! - `direct`, `socks`: two daemons (direct transport, or the manual transport through a SOCKS5
//!   proxy in this process); N sends pipelined into alice's control connection; msg/s until
//!   bob has stored all, latency per message (request → acknowledged at alice; request → event
//!   at bob, i.e. stored there), fsyncs per message (counted with `perf stat` on the
//!   `fsync`/`fdatasync` tracepoints when perf can, else "n/a"), CPU per message, RSS loaded and
//!   after 5 s idle;
//! - `group`: n daemons with v3 identities (signed group messages), one speaker pipelining M
//!   `group_say`; group messages/s until every member holds all, CPU per group message per
//!   receiver and for the whole group, fsyncs per message per receiver;
//! - `rounds`: `--rounds R` rounds of the last `-n` count on one pair of daemons, RSS after
//!   each once quiet (a leak grows every round; allocator retention does not);
//! - `history`: a store of M messages in one conversation, written directly with
//!   `SqliteStore`; daemon start time on it; pages of 50 through the API from the newest back
//!   (`--pages`, default all), p50/p99/max per page.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

// ----- options -----

struct Opts {
    bin: PathBuf,
    sections: Vec<String>,
    counts: Vec<usize>,
    window: usize,
    env: Vec<(String, String)>,
    groups: Vec<usize>,
    group_msgs: usize,
    history: usize,
    pages: Option<usize>,
    rounds: usize,
    hold: u64,
    /// Group daemons without the torchat_sync extension (the seed's echoes).
    no_sync: bool,
}

fn opts() -> Opts {
    let exe = std::env::current_exe().unwrap();
    let mut o = Opts {
        bin: exe.parent().unwrap().parent().unwrap().join("torchat"),
        sections: vec![],
        counts: vec![10_000, 100_000],
        window: 1000,
        env: vec![],
        groups: vec![5, 10, 20],
        group_msgs: 500,
        history: 1_000_000,
        pages: None,
        rounds: 5,
        hold: 0,
        no_sync: false,
    };
    let list = |s: String| -> Vec<usize> { s.split(',').map(|x| x.parse().unwrap()).collect() };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bin" => o.bin = args.next().unwrap().into(),
            "-n" => o.counts = list(args.next().unwrap()),
            "--window" => o.window = args.next().unwrap().parse().unwrap(),
            "--env" => {
                let kv = args.next().unwrap();
                let (k, v) = kv.split_once('=').unwrap();
                o.env.push((k.to_owned(), v.to_owned()));
            }
            "--group" => o.groups = list(args.next().unwrap()),
            "--group-msgs" => o.group_msgs = args.next().unwrap().parse().unwrap(),
            "--history" => o.history = args.next().unwrap().parse().unwrap(),
            "--pages" => o.pages = Some(args.next().unwrap().parse().unwrap()),
            "--rounds" => o.rounds = args.next().unwrap().parse().unwrap(),
            "--hold" => o.hold = args.next().unwrap().parse().unwrap(),
            "--no-sync" => o.no_sync = true,
            s if !s.starts_with('-') => o.sections.push(s.to_owned()),
            s => panic!("unknown option {s}"),
        }
    }
    if o.sections.is_empty() {
        o.sections = [
            "idle", "buddies", "direct", "socks", "rounds", "group", "history",
        ]
        .map(str::to_owned)
        .to_vec();
    }
    o
}

// ----- daemons and the control API -----

struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    fn start(o: &Opts, dir: &Path, config: &str) -> Daemon {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("c.toml"), config).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let mut cmd = Command::new(&o.bin);
        cmd.arg("--data-dir")
            .arg(dir)
            .arg("--config")
            .arg(dir.join("c.toml"))
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &o.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let t = Instant::now();
        while UnixStream::connect(dir.join("control.sock")).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Daemon {
            child,
            dir: dir.to_owned(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn api(&self) -> Api {
        Api::connect(&self.dir)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Graceful first (a profiler around the daemon writes its data at exit), then kill.
        if let Ok(mut s) = UnixStream::connect(self.dir.join("control.sock")) {
            let _ = s.write_all(b"{\"req\":1,\"cmd\":\"shutdown\"}\n");
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

    fn try_call(&mut self, mut v: Value) -> Value {
        self.n += 1;
        v["req"] = json!(self.n);
        self.wr.write_all(format!("{v}\n").as_bytes()).unwrap();
        loop {
            let mut l = String::new();
            self.rd.read_line(&mut l).unwrap();
            let r: Value = serde_json::from_str(&l).unwrap();
            if r["req"] == json!(self.n) {
                return r;
            }
        }
    }

    fn call(&mut self, v: Value) -> Value {
        let r = self.try_call(v.clone());
        assert_eq!(r["ok"], json!(true), "{v} -> {r}");
        r["result"].clone()
    }

    fn presence(&mut self, who: &str) -> String {
        self.call(json!({"cmd": "buddies"}))
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == json!(who))
            .map(|b| b["presence"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    /// Store commits so far, when the daemon reports them.
    fn commits(&mut self) -> Option<u64> {
        self.call(json!({"cmd": "info"}))["store"]["commits"].as_u64()
    }
}

fn wait(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn free_port() -> u16 {
    // Outside the kernel's ephemeral range (32768–60999).
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20000 + ((u64::from(std::process::id()) * 7919 + n * 13) % 12000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn legacy_id(name: &str) -> String {
    format!("{name:a<16}")
}

fn direct_config(id: Option<&str>, port: u16, peers: &[(String, u16)]) -> String {
    let mut c = format!(
        "[log]\nlevel = \"warn\"\n[transport]\nkind = \"direct\"\n[transport.direct]\nlisten = \"127.0.0.1:{port}\"\n"
    );
    if let Some(id) = id {
        c.push_str(&format!("id = \"{id}\"\n"));
    }
    c.push_str("[transport.direct.peers]\n");
    for (p, port) in peers {
        c.push_str(&format!("\"{p}\" = \"127.0.0.1:{port}\"\n"));
    }
    c
}

fn manual_config(id: &str, listen: u16, socks: u16) -> String {
    format!(
        "[log]\nlevel = \"warn\"\n[transport]\nkind = \"manual\"\n[transport.manual]\nid = \"{id}\"\nlisten = \"127.0.0.1:{listen}\"\nsocks = \"127.0.0.1:{socks}\"\nsocks_version = \"socks5\"\n"
    )
}

// ----- measuring processes -----

fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn rss(pid: u32) -> String {
    format!(
        "{:.1} MiB (anon {:.1}, file {:.1})",
        status_kib(pid, "VmRSS:") as f64 / 1024.0,
        status_kib(pid, "RssAnon:") as f64 / 1024.0,
        status_kib(pid, "RssFile:") as f64 / 1024.0
    )
}

/// CPU time of a process: user + system, from `/proc/PID/stat` (clock ticks, 100 Hz),
/// including threads that already ended.
fn cpu(pid: u32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12).
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// `perf stat` counting the fsync/fdatasync calls of each process, when perf can.
struct FsyncCounter {
    runs: Vec<(u32, Child, PathBuf)>,
}

impl FsyncCounter {
    fn start(pids: &[u32], dir: &Path) -> FsyncCounter {
        let mut runs = vec![];
        for p in pids {
            let out = dir.join(format!("perf-{p}.txt"));
            let child = Command::new("perf")
                .args(["stat", "-x", ",", "-e"])
                .arg("syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync")
                .arg("-o")
                .arg(&out)
                .args(["-p", &p.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(c) = child {
                runs.push((*p, c, out));
            }
        }
        std::thread::sleep(Duration::from_millis(300)); // let it attach
        FsyncCounter { runs }
    }

    /// Stops counting; fsyncs + fdatasyncs per pid (None when perf could not count).
    fn stop(self) -> Option<BTreeMap<u32, u64>> {
        let mut per = BTreeMap::new();
        for (pid, mut child, out) in self.runs {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
            let text = std::fs::read_to_string(&out).ok()?;
            let mut n = None;
            for l in text.lines() {
                let cols: Vec<&str> = l.split(',').collect();
                if cols.len() >= 3 && cols[2].starts_with("syscalls:") {
                    *n.get_or_insert(0u64) += cols[0].parse::<u64>().ok()?;
                }
            }
            per.insert(pid, n?);
        }
        (!per.is_empty()).then_some(per)
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

// ----- sections -----

fn idle(o: &Opts) {
    let root = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        o,
        &root.path().join("idle"),
        &direct_config(Some(&legacy_id("idle")), free_port(), &[]),
    );
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "idle daemon (direct transport, no buddies): RSS {}",
        rss(d.pid())
    );
}

fn buddies(o: &Opts) {
    let root = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let (a, b) = (legacy_id("alice"), legacy_id("bob"));
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
            let pid = legacy_id(&format!(
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
            handles.push((h, addr));
        }
    });
    let mut alice_peers = vec![(b.clone(), pb)];
    for (i, (_, addr)) in handles.iter().enumerate() {
        let pid = legacy_id(&format!(
            "peer{}{}",
            (b'a' + (i / 26) as u8) as char,
            (b'a' + (i % 26) as u8) as char
        ));
        alice_peers.push((pid, addr.port()));
    }
    let da = Daemon::start(
        o,
        &root.path().join("alice"),
        &direct_config(Some(&a), pa, &alice_peers),
    );
    let db = Daemon::start(
        o,
        &root.path().join("bob"),
        &direct_config(Some(&b), pb, &[(a.clone(), pa)]),
    );
    let (mut aa, mut ab) = (da.api(), db.api());
    let mut hs = vec![];
    for round in 0..5 {
        let t = Instant::now();
        if round == 0 {
            aa.call(json!({"cmd": "add", "id": b}));
            ab.call(json!({"cmd": "add", "id": a}));
        } else {
            // Reconnect: block and unblock tears the session down and builds it again.
            aa.call(json!({"cmd": "block", "id": b}));
            while ab.presence(&a) == "available" {
                std::thread::sleep(Duration::from_millis(2));
            }
            ab.call(json!({"cmd": "remove", "id": a}));
            aa.call(json!({"cmd": "unblock", "id": b}));
            ab.call(json!({"cmd": "add", "id": a}));
        }
        while !(aa.presence(&b) == "available" && ab.presence(&a) == "available") {
            std::thread::sleep(Duration::from_millis(1));
        }
        hs.push(t.elapsed());
    }
    hs.sort();
    println!(
        "handshake (add → both available), 5 runs: median {}, max {}",
        ms(hs[2]),
        ms(hs[4])
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = status_kib(da.pid(), "VmRSS:");
    for (h, _) in &handles {
        let mut c = Api::connect(h.control_path.parent().unwrap());
        c.call(json!({"cmd": "add", "id": a}));
    }
    wait(Duration::from_secs(120), "100 buddies online", || {
        aa.call(json!({"cmd": "buddies"}))
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["presence"] == json!("available"))
            .count()
            > k
    });
    std::thread::sleep(Duration::from_secs(1));
    let after = status_kib(da.pid(), "VmRSS:");
    println!(
        "alice with {} connected buddies: RSS {before} KiB → {after} KiB, {:.1} KiB per connected buddy",
        k + 1,
        after.saturating_sub(before) as f64 / k as f64
    );
    rt.block_on(async {
        for (h, _) in handles {
            h.shutdown().await;
        }
    });
}

/// A SOCKS5 proxy (no auth, CONNECT, domain names only) mapping `<id>.onion` to local ports.
fn socks_proxy(map: BTreeMap<String, u16>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let map = map.clone();
            std::thread::spawn(move || {
                let mut b = [0u8; 262];
                if s.read_exact(&mut b[..2]).is_err() {
                    return;
                }
                let n = b[1] as usize;
                let _ = s.read_exact(&mut b[..n]);
                let _ = s.write_all(&[5, 0]);
                if s.read_exact(&mut b[..5]).is_err() || b[..4] != [5, 1, 0, 3] {
                    return;
                }
                let len = b[4] as usize;
                let _ = s.read_exact(&mut b[..len + 2]);
                let host = String::from_utf8_lossy(&b[..len]).into_owned();
                let target = host
                    .strip_suffix(".onion")
                    .and_then(|id| map.get(id))
                    .copied();
                let Some(up) = target.and_then(|t| TcpStream::connect(("127.0.0.1", t)).ok())
                else {
                    let _ = s.write_all(&[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]);
                    return;
                };
                let _ = s.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let _ = s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]);
                let (mut a, mut b2) = (s.try_clone().unwrap(), up.try_clone().unwrap());
                let (mut s2, mut up2) = (s, up);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut up2);
                    let _ = up2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut b2, &mut s2);
                let _ = s2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// Writes `lines` into a control connection with at most `window` unanswered, reading the
/// answers on another thread. Returns (send time, answer time) per line and the failures.
fn pipeline(
    dir: &Path,
    lines: Vec<String>,
    window: usize,
    t0: Instant,
) -> (Vec<(Duration, Duration)>, usize) {
    let s = UnixStream::connect(dir.join("control.sock")).unwrap();
    let mut rd = BufReader::with_capacity(1 << 16, s.try_clone().unwrap());
    let mut wr = s;
    let n = lines.len();
    let answered = Arc::new(AtomicU64::new(0));
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let writer = {
        let answered = answered.clone();
        let sent_at = sent_at.clone();
        std::thread::spawn(move || {
            let mut buf = Vec::with_capacity(1 << 16);
            let mut i = 0;
            while i < n {
                let done = answered.load(Ordering::Acquire) as usize;
                let room = (done + window).saturating_sub(i);
                if room == 0 {
                    std::thread::park_timeout(Duration::from_millis(1));
                    continue;
                }
                buf.clear();
                let end = (i + room).min(n);
                let t = t0.elapsed().as_nanos() as u64;
                while i < end && buf.len() < (1 << 16) {
                    buf.extend_from_slice(lines[i].as_bytes());
                    sent_at[i].store(t, Ordering::Relaxed);
                    i += 1;
                }
                wr.write_all(&buf).unwrap();
            }
            wr
        })
    };
    let mut out = Vec::with_capacity(n);
    let mut failed = 0;
    let mut l = Vec::new();
    #[derive(serde::Deserialize)]
    struct Resp {
        req: u64,
        ok: bool,
    }
    while out.len() < n {
        l.clear();
        rd.read_until(b'\n', &mut l).unwrap();
        let Ok(r) = serde_json::from_slice::<Resp>(&l) else {
            continue; // an event
        };
        let at = t0.elapsed();
        if !r.ok {
            failed += 1;
        }
        let i = (r.req - 1) as usize;
        out.push((Duration::from_nanos(sent_at[i].load(Ordering::Relaxed)), at));
        answered.fetch_add(1, Ordering::Release);
        writer.thread().unpark();
    }
    drop(writer.join());
    (out, failed)
}

/// Reads a subscription and records when each `m<i> ` text arrived as an event, until all
/// did or `done` is set and nothing more comes.
fn subscriber(
    dir: &Path,
    n: usize,
    t0: Instant,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(Vec<Duration>, u64)> {
    let s = UnixStream::connect(dir.join("control.sock")).unwrap();
    let mut wr = s.try_clone().unwrap();
    wr.write_all(b"{\"req\":1,\"cmd\":\"subscribe\"}\n")
        .unwrap();
    std::thread::spawn(move || {
        let mut rd = BufReader::with_capacity(1 << 16, s);
        rd.get_ref()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = vec![Duration::ZERO; n];
        let (mut count, mut lagged) = (0usize, 0u64);
        let mut l = Vec::new();
        while count < n {
            match rd.read_until(b'\n', &mut l) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) if done.load(Ordering::Acquire) => break,
                Err(_) => continue, // a partial line stays in `l`
            }
            let at = t0.elapsed();
            let line = std::mem::take(&mut l);
            let line = &line[..];
            if find(line, b"\"event\":\"lagged\"").is_some() {
                let v: Value = serde_json::from_slice(line).unwrap_or_default();
                lagged += v["missed"].as_u64().unwrap_or(0);
                continue;
            }
            if find(line, b"\"event\":\"message\"").is_none() {
                continue;
            }
            let Some(p) = find(line, b"\"text\":\"m") else {
                continue;
            };
            let digits: Vec<u8> = line[p + 9..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .copied()
                .collect();
            let Ok(i) = std::str::from_utf8(&digits).unwrap().parse::<usize>() else {
                continue;
            };
            if i < n && got[i] == Duration::ZERO {
                got[i] = at;
                count += 1;
            }
        }
        (got, lagged)
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Counts the stored messages of a conversation by paging through it.
/// Messages in the conversation with `with` for which `keep` holds, paging through the API.
fn count_history_where(api: &mut Api, with: &str, keep: impl Fn(&Value) -> bool) -> usize {
    let mut before: Option<u64> = None;
    let mut total = 0;
    loop {
        let mut q = json!({"cmd": "history", "with": with, "limit": 1000});
        if let Some(b) = before {
            q["before"] = json!(b);
        }
        let page = api.call(q);
        let page = page.as_array().unwrap();
        total += page.iter().filter(|m| keep(m)).count();
        if page.len() < 1000 {
            return total;
        }
        before = page[0]["row"].as_u64();
    }
}

fn count_history(api: &mut Api, with: &str) -> usize {
    count_history_where(api, with, |_| true)
}

/// Outgoing messages in the conversation with `with` shown `delivered` (acknowledged).
fn count_delivered(api: &mut Api, with: &str) -> usize {
    count_history_where(api, with, |m| {
        m["delivery"]
            .as_str()
            .is_some_and(|d| d.starts_with("delivered"))
    })
}

fn one_to_one(o: &Opts, socks: bool) {
    for &n in &o.counts {
        let root = tempfile::tempdir().unwrap();
        let (pa, pb) = (free_port(), free_port());
        let (a, b) = (legacy_id("alice"), legacy_id("bob"));
        let (ca, cb) = if socks {
            let proxy = socks_proxy(BTreeMap::from([(a.clone(), pa), (b.clone(), pb)]));
            (manual_config(&a, pa, proxy), manual_config(&b, pb, proxy))
        } else {
            (
                direct_config(Some(&a), pa, &[(b.clone(), pb)]),
                direct_config(Some(&b), pb, &[(a.clone(), pa)]),
            )
        };
        let da = Daemon::start(o, &root.path().join("alice"), &ca);
        let db = Daemon::start(o, &root.path().join("bob"), &cb);
        let (mut aa, mut ab) = (da.api(), db.api());
        aa.call(json!({"cmd": "add", "id": b}));
        ab.call(json!({"cmd": "add", "id": a}));
        wait(Duration::from_secs(30), "alice and bob online", || {
            aa.presence(&b) == "available" && ab.presence(&a) == "available"
        });
        std::thread::sleep(Duration::from_millis(300));
        let lines: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "{{\"req\":{},\"cmd\":\"send\",\"to\":\"{b}\",\"text\":\"m{i} a message of some forty bytes\"}}\n",
                    i + 1
                )
            })
            .collect();
        let pids = [da.pid(), db.pid()];
        let (c0a, c0b) = (aa.commits(), ab.commits());
        let fs = FsyncCounter::start(&pids, root.path());
        let (cpu_a, cpu_b) = (cpu(da.pid()), cpu(db.pid()));
        let cpu_me = cpu(std::process::id());
        let t0 = Instant::now();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sub = subscriber(&db.dir, n, t0, done.clone());
        std::thread::sleep(Duration::from_millis(100));
        let t0s = t0.elapsed();
        let (acks, failed) = pipeline(&da.dir, lines, o.window, t0);
        // All acknowledged: watch for the last message at bob (messages of one connection are
        // stored in order, so the last one there means all are).
        let last_text = format!("m{} a message of some forty bytes", n - 1);
        let stored_all = loop {
            let h = ab.call(json!({"cmd": "history", "with": a, "limit": 1}));
            if h[0]["text"] == json!(last_text) {
                break t0.elapsed();
            }
            assert!(t0.elapsed() < Duration::from_secs(600), "bob never got all");
            std::thread::sleep(Duration::from_millis(1));
        };
        done.store(true, Ordering::Release);
        let (arrived, lagged) = sub.join().unwrap();
        let fsyncs = fs.stop();
        let (cpu_a, cpu_b) = (cpu(da.pid()) - cpu_a, cpu(db.pid()) - cpu_b);
        let cpu_me = cpu(std::process::id()) - cpu_me;
        let (c1a, c1b) = (aa.commits(), ab.commits());
        let rss_loaded = (rss(da.pid()), rss(db.pid()));
        let got = arrived.iter().filter(|d| **d != Duration::ZERO).count();
        let last_ack = acks.iter().map(|x| x.1).max().unwrap_or_default();
        let last_arrival = if got == n {
            arrived.iter().max().copied().unwrap_or_default()
        } else {
            stored_all
        };
        let stored = count_history(&mut ab, &a);
        let mut ack_lat: Vec<Duration> = acks.iter().map(|(s, r)| r.saturating_sub(*s)).collect();
        ack_lat.sort();
        let mut del_lat: Vec<Duration> = arrived
            .iter()
            .zip(acks.iter())
            .filter(|(d, _)| **d != Duration::ZERO)
            .map(|(d, (s, _))| d.saturating_sub(*s))
            .collect();
        del_lat.sort();
        let e2e = last_arrival.max(last_ack) - t0s;
        let what = if socks {
            "through a SOCKS5 proxy"
        } else {
            "direct"
        };
        println!("1:1 {what}, {n} messages pipelined (window {}):", o.window);
        println!(
            "  acknowledged by alice's API: {:.0} msg/s ({failed} refused); stored at bob: {stored} ({got} seen as events by a subscriber, which missed {lagged})",
            n as f64 / (last_ack - t0s).as_secs_f64()
        );
        println!(
            "  end to end (first request → last stored at bob): {:.2} s = {:.0} msg/s",
            e2e.as_secs_f64(),
            n as f64 / e2e.as_secs_f64()
        );
        println!(
            "  latency request → ack: p50 {} p99 {}; request → event at bob (after its commit; messages seen): p50 {} p99 {}",
            ms(pct(&ack_lat, 0.5)),
            ms(pct(&ack_lat, 0.99)),
            ms(pct(&del_lat, 0.5)),
            ms(pct(&del_lat, 0.99))
        );
        match &fsyncs {
            Some(f) => println!(
                "  fsyncs per message: alice {:.4}, bob {:.4} ({} and {} in all)",
                f[&pids[0]] as f64 / n as f64,
                f[&pids[1]] as f64 / n as f64,
                f[&pids[0]],
                f[&pids[1]]
            ),
            None => println!("  fsyncs per message: n/a (perf stat could not count)"),
        }
        if let (Some(x0), Some(x1), Some(y0), Some(y1)) = (c0a, c1a, c0b, c1b) {
            println!(
                "  store commits per message: alice {:.4}, bob {:.4}",
                (x1 - x0) as f64 / n as f64,
                (y1 - y0) as f64 / n as f64
            );
        }
        println!(
            "  CPU per message: alice {:.1} µs, bob {:.1} µs; this benchmark (load, subscriber{}) {:.1} µs",
            cpu_a.as_secs_f64() * 1e6 / n as f64,
            cpu_b.as_secs_f64() * 1e6 / n as f64,
            if socks { ", proxy" } else { "" },
            cpu_me.as_secs_f64() * 1e6 / n as f64
        );
        println!("  RSS loaded: alice {}, bob {}", rss_loaded.0, rss_loaded.1);
        // Every message should come to show `delivered` at alice (bob acknowledges, 1:1
        // extension torchat_sync); a message left `sent` for good would be a lost ack.
        let t1 = Instant::now();
        let mut shown = count_delivered(&mut aa, &b);
        while shown < n && t1.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(200));
            shown = count_delivered(&mut aa, &b);
        }
        println!(
            "  shown delivered at alice: {shown} of {n} ({:.1} s after the measurement ended)",
            t1.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(5));
        println!(
            "  RSS 5 s later: alice {}, bob {}",
            rss(da.pid()),
            rss(db.pid())
        );
    }
}

/// Rounds of pipelined 1:1 messages on one pair of daemons, RSS after each once quiet: a leak
/// grows with every round, memory the allocator keeps for reuse does not.
fn rounds(o: &Opts) {
    let root = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let (a, b) = (legacy_id("alice"), legacy_id("bob"));
    let da = Daemon::start(
        o,
        &root.path().join("alice"),
        &direct_config(Some(&a), pa, &[(b.clone(), pb)]),
    );
    let db = Daemon::start(
        o,
        &root.path().join("bob"),
        &direct_config(Some(&b), pb, &[(a.clone(), pa)]),
    );
    let (mut aa, mut ab) = (da.api(), db.api());
    aa.call(json!({"cmd": "add", "id": b}));
    ab.call(json!({"cmd": "add", "id": a}));
    wait(Duration::from_secs(30), "alice and bob online", || {
        aa.presence(&b) == "available" && ab.presence(&a) == "available"
    });
    std::thread::sleep(Duration::from_secs(1));
    let n = o.counts.last().copied().unwrap_or(100_000);
    println!(
        "rounds of {n} messages on one pair; RSS once quiet (3 s): before: alice {}, bob {}",
        rss(da.pid()),
        rss(db.pid())
    );
    for r in 0..o.rounds {
        let lines: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    "{{\"req\":{},\"cmd\":\"send\",\"to\":\"{b}\",\"text\":\"r{r} m{i} a message of some forty bytes\"}}\n",
                    i + 1
                )
            })
            .collect();
        let t0 = Instant::now();
        let (_, failed) = pipeline(&da.dir, lines, o.window, t0);
        assert_eq!(failed, 0);
        let last = format!("r{r} m{} a message of some forty bytes", n - 1);
        wait(Duration::from_secs(600), "bob has the round", || {
            ab.call(json!({"cmd": "history", "with": a, "limit": 1}))[0]["text"] == json!(last)
        });
        let took = t0.elapsed();
        std::thread::sleep(Duration::from_secs(3));
        println!(
            "  round {} ({:.0} msg/s): alice {}, bob {}",
            r + 1,
            n as f64 / took.as_secs_f64(),
            rss(da.pid()),
            rss(db.pid())
        );
    }
    if o.rounds > 0 {
        // The node gives its caches back after 5 s without input.
        std::thread::sleep(Duration::from_secs(5));
        println!(
            "  8 s after the last round: alice {}, bob {}",
            rss(da.pid()),
            rss(db.pid())
        );
    }
    if o.hold > 0 {
        // Time to inspect the daemons (e.g. their heap with a debugger).
        println!("  holding: alice pid {}, bob pid {}", da.pid(), db.pid());
        std::thread::sleep(Duration::from_secs(o.hold));
    }
}

fn group(o: &Opts) {
    for &n in &o.groups {
        let root = tempfile::tempdir().unwrap();
        let mut ids = vec![];
        let mut ports = vec![];
        for i in 0..n {
            let dir = root.path().join(format!("m{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut seed = [0u8; 32];
            seed[0] = i as u8 + 1;
            seed[1] = 0xbe;
            std::fs::write(dir.join("identity.key"), seed).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(
                    dir.join("identity.key"),
                    std::fs::Permissions::from_mode(0o600),
                )
                .unwrap();
            }
            ids.push(torchat_node::Identity::from_seed(seed).id().to_string());
            ports.push(free_port());
        }
        let daemons: Vec<Daemon> = (0..n)
            .map(|i| {
                let peers: Vec<(String, u16)> = (0..n)
                    .filter(|j| *j != i)
                    .map(|j| (ids[j].clone(), ports[j]))
                    .collect();
                let mut config = direct_config(None, ports[i], &peers);
                if o.no_sync {
                    config.push_str("[protocol]\nsync = false\n");
                }
                Daemon::start(o, &root.path().join(format!("m{i}")), &config)
            })
            .collect();
        let mut apis: Vec<Api> = daemons.iter().map(Daemon::api).collect();
        assert_eq!(apis[0].call(json!({"cmd": "info"}))["id"], json!(ids[0]));
        for i in 1..n {
            apis[0].call(json!({"cmd": "add", "id": ids[i]}));
            apis[i].call(json!({"cmd": "add", "id": ids[0]}));
        }
        for i in 1..n {
            let (first, rest) = apis.split_at_mut(1);
            wait(Duration::from_secs(60), "speaker's buddies online", || {
                first[0].presence(&ids[i]) == "available"
                    && rest[i - 1].presence(&ids[0]) == "available"
            });
        }
        let gid = apis[0].call(json!({"cmd": "group_create"}))["gid"]
            .as_str()
            .unwrap()
            .to_owned();
        for i in 1..n {
            apis[0].call(json!({"cmd": "group_invite", "gid": gid, "id": ids[i]}));
            let api = &mut apis[i];
            wait(Duration::from_secs(30), "invite", || {
                api.try_call(json!({"cmd": "group_accept", "gid": gid}))["ok"] == json!(true)
            });
        }
        wait(Duration::from_secs(120), "everyone joined", || {
            apis.iter_mut().all(|api| {
                let g = api.call(json!({"cmd": "group_members", "gid": gid}));
                g["state"] == json!("joined") && g["members"].as_array().unwrap().len() == n - 1
            })
        });
        // Everyone connected to everyone (members are temporary buddies).
        wait(Duration::from_secs(120), "the group's mesh", || {
            apis.iter_mut().all(|api| {
                api.call(json!({"cmd": "buddies"}))
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|b| b["presence"] == json!("available"))
                    .count()
                    == n - 1
            })
        });
        std::thread::sleep(Duration::from_secs(1));
        let m = o.group_msgs;
        let lines: Vec<String> = (0..m)
            .map(|i| {
                format!(
                    "{{\"req\":{},\"cmd\":\"group_say\",\"gid\":\"{gid}\",\"text\":\"g{i} a group message of some forty bytes\"}}\n",
                    i + 1
                )
            })
            .collect();
        let last = format!("g{} a group message of some forty bytes", m - 1);
        let pids: Vec<u32> = daemons.iter().map(Daemon::pid).collect();
        let fs = FsyncCounter::start(&pids, root.path());
        let cpu0: Vec<Duration> = pids.iter().map(|p| cpu(*p)).collect();
        let t0 = Instant::now();
        let speaker = daemons[0].dir.clone();
        let send = std::thread::spawn(move || pipeline(&speaker, lines, m, t0));
        let mut held: Vec<Option<Duration>> = vec![None; n];
        held[0] = Some(Duration::ZERO);
        while held.iter().any(Option::is_none) {
            for i in 1..n {
                if held[i].is_some() {
                    continue;
                }
                let h = apis[i].call(json!({"cmd": "history", "with": gid, "limit": 1}));
                if h[0]["text"] == json!(last) {
                    let count = apis[i]
                        .call(json!({"cmd": "history", "with": gid, "limit": 1000}))
                        .as_array()
                        .unwrap()
                        .len();
                    if count >= m {
                        held[i] = Some(t0.elapsed());
                    }
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(600), "group run stuck");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (_, failed) = send.join().unwrap();
        let all = held.iter().map(|h| h.unwrap()).max().unwrap();
        // Echoes keep arriving after the last member holds the last message: wait until the
        // group is quiet before reading the CPU counters.
        let mut prev: Duration = pids.iter().map(|p| cpu(*p)).sum();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now: Duration = pids.iter().map(|p| cpu(*p)).sum();
            if now - prev <= Duration::from_millis(20) {
                break;
            }
            prev = now;
        }
        let fsyncs = fs.stop();
        let used: Vec<Duration> = pids
            .iter()
            .zip(&cpu0)
            .map(|(p, c0)| cpu(*p) - *c0)
            .collect();
        let receivers: Vec<f64> = used[1..]
            .iter()
            .map(|d| d.as_secs_f64() * 1e3 / m as f64)
            .collect();
        let mean = receivers.iter().sum::<f64>() / receivers.len() as f64;
        let max = receivers.iter().copied().fold(0.0, f64::max);
        let whole: f64 = used.iter().map(|d| d.as_secs_f64() * 1e3).sum::<f64>() / m as f64;
        println!(
            "group of {n}, {m} messages pipelined by one speaker ({failed} refused), torchat_sync {}:",
            if o.no_sync { "off" } else { "on" }
        );
        println!(
            "  every member held all after {:.2} s = {:.0} group messages/s",
            all.as_secs_f64(),
            m as f64 / all.as_secs_f64()
        );
        println!(
            "  CPU per group message: per receiver {mean:.3} ms (max {max:.3}), speaker {:.3} ms, whole group {whole:.2} ms",
            used[0].as_secs_f64() * 1e3 / m as f64
        );
        if let Some(f) = fsyncs {
            let r: u64 = pids[1..].iter().map(|p| f[p]).sum();
            println!(
                "  fsyncs per group message: per receiver {:.3}, speaker {:.3}",
                r as f64 / (n - 1) as f64 / m as f64,
                f[&pids[0]] as f64 / m as f64
            );
        }
        println!(
            "  RSS: speaker {}, a receiver {}",
            rss(pids[0]),
            rss(pids[1])
        );
        if o.hold > 0 {
            println!(
                "  holding: speaker pid {}, a receiver pid {}",
                pids[0], pids[1]
            );
            std::thread::sleep(Duration::from_secs(o.hold));
        }
    }
}

fn history(o: &Opts) {
    use torchat_store::{Conversation, Direction, Message, MsgId, Op, Store};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("h");
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (legacy_id("alice"), legacy_id("bob"));
    let total = o.history;
    let t = Instant::now();
    {
        let mut st = torchat_store::SqliteStore::open(dir.join("torchat.sqlite3")).unwrap();
        let bob: torchat_wire::OnionId = b.parse().unwrap();
        let me: torchat_wire::OnionId = a.parse().unwrap();
        st.upsert_buddy(torchat_store::Buddy::new(
            bob.clone(),
            torchat_store::BuddyKind::Permanent,
        ))
        .unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut i = 0usize;
        while i < total {
            let mut ops = Vec::with_capacity(20_000);
            for _ in 0..20_000.min(total - i) {
                let mut id = [0u8; 16];
                for c in id.chunks_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    c.copy_from_slice(&x.to_le_bytes());
                }
                let out = i.is_multiple_of(2);
                ops.push(Op::InsertMessage(Message {
                    id: MsgId(id),
                    conversation: Conversation::Buddy(bob.clone()),
                    direction: if out { Direction::Out } else { Direction::In },
                    sender: if out { me.clone() } else { bob.clone() },
                    text: format!("h{i} a message of some forty bytes, stored").into_bytes(),
                    timestamp: 1_700_000_000_000 + i as u64,
                    delivery: out.then_some(torchat_store::Delivery::Sent),
                    trust: None,
                    sync: None,
                }));
                i += 1;
            }
            st.apply(&ops).unwrap();
        }
    }
    println!(
        "history: {total} messages written to the store in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let d = Daemon::start(o, &dir, &direct_config(Some(&a), free_port(), &[]));
    let mut api = d.api();
    api.call(json!({"cmd": "info"}));
    println!(
        "  daemon start on it (until the API answers): {:.2} s; RSS {}",
        t.elapsed().as_secs_f64(),
        rss(d.pid())
    );
    let pages = o.pages.unwrap_or(total.div_ceil(50));
    let mut lat = Vec::with_capacity(pages);
    let mut before: Option<u64> = None;
    let mut seen = 0usize;
    let t = Instant::now();
    for _ in 0..pages {
        let mut q = json!({"cmd": "history", "with": b, "limit": 50});
        if let Some(r) = before {
            q["before"] = json!(r);
        }
        let s = Instant::now();
        let page = api.call(q);
        lat.push(s.elapsed());
        let page = page.as_array().unwrap();
        seen += page.len();
        if page.len() < 50 {
            break;
        }
        before = page[0]["row"].as_u64();
    }
    let all = t.elapsed();
    lat.sort();
    println!(
        "  {} pages of 50 through the API ({seen} messages, newest first) in {:.1} s: p50 {} p99 {} max {}; RSS after {}",
        lat.len(),
        all.as_secs_f64(),
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().unwrap()),
        rss(d.pid())
    );
}

fn main() {
    let o = opts();
    println!(
        "daemon binary: {} ({} logical CPUs)",
        o.bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for s in o.sections.clone() {
        match s.as_str() {
            "idle" => idle(&o),
            "buddies" => buddies(&o),
            "direct" => one_to_one(&o, false),
            "socks" => one_to_one(&o, true),
            "group" => group(&o),
            "history" => history(&o),
            "rounds" => rounds(&o),
            other => panic!("unknown section {other}"),
        }
    }
}
