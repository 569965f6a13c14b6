//! A real IRC client library drives a real session: three torchat daemons as processes
//! (direct transport on loopback; the alice–carol link is blocked), one IRC gateway in front
//! of each, and Python's `irc` library (PyPI: `pip install irc`) as the three users —
//! password, 1:1 chat across daemons, a group created through `&torchat`, an IRC INVITE,
//! JOIN to accept, group lines with their trust tags, PART.
//!
//! Without python3 and the `irc` library this prints SKIP and passes, unless
//! `TORCHAT_REQUIRE_IRC=1` is set. The daemon binary is `TORCHAT_BIN`, or the workspace's
//! `target/<profile>/torchat`, built with `cargo build -p torchat` when it is missing.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use torchat_irc::{IrcConfig, Server};

const PASSWORD: &str = "correct horse battery staple";

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

/// A legacy id from a short name: "alice" → "aliceaaaaaaaaaaa".
fn legacy_id(name: &str) -> String {
    format!("{name:a<16}")
}

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// A direct-transport config with legacy ids for every peer.
fn direct_config(name: &str, port: u16, peers: &[(&str, u16)], blocked: &[&str]) -> String {
    let mut s = format!(
        "[profile]\nname = \"{name}\"\n[protocol]\nsettle_window_secs = 2\n[transport]\nkind = \"direct\"\n[transport.direct]\nlisten = \"127.0.0.1:{port}\"\nid = \"{}\"\nblocked = [{}]\n[transport.direct.peers]\n",
        legacy_id(name),
        blocked.iter().map(|b| format!("\"{}\"", legacy_id(b))).collect::<Vec<_>>().join(", ")
    );
    for (p, port) in peers {
        s.push_str(&format!("\"{}\" = \"127.0.0.1:{port}\"\n", legacy_id(p)));
    }
    s
}

struct Daemon {
    name: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn start(bin: &Path, root: &Path, name: &str, config: &str) -> Daemon {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(bin)
            .arg("--data-dir")
            .arg(&dir)
            .arg("--config")
            .arg(&cfg)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let sock = dir.join("control.sock");
        wait_until(Duration::from_secs(20), "control socket", || {
            UnixStream::connect(&sock).is_ok()
        });
        Daemon {
            name: name.to_owned(),
            dir,
            child: Some(child),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// The daemon's own view, for diagnostics.
    fn call(&self, req: &str) -> String {
        let Ok(mut s) = UnixStream::connect(self.socket()) else {
            return "(no socket)".into();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(format!("{req}\n").as_bytes());
        let mut line = String::new();
        let _ = BufReader::new(s).read_line(&mut line);
        line
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn python_has_irc() -> bool {
    Command::new("python3")
        .args(["-c", "import irc.client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The torchat daemon binary: `TORCHAT_BIN`, else this workspace's `target/<profile>/torchat`
/// (already there after `cargo test --workspace`), built with `cargo build -p torchat` if it
/// is missing.
fn torchat_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TORCHAT_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<this test> → target/<profile>/torchat
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_owned();
    let bin = profile_dir.join("torchat");
    if bin.exists() {
        return bin;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&workspace)
        .args(["build", "-p", "torchat", "--bin", "torchat"])
        .env(
            "CARGO_TARGET_DIR",
            profile_dir.parent().unwrap_or(&profile_dir),
        );
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().unwrap();
    assert!(status.success(), "cargo build -p torchat failed");
    assert!(bin.exists(), "no torchat binary at {}", bin.display());
    bin
}

#[test]
fn irc_clients_chat_through_gateways() {
    if !python_has_irc() {
        let need = std::env::var("TORCHAT_REQUIRE_IRC").is_ok_and(|v| v == "1");
        assert!(
            !need,
            "TORCHAT_REQUIRE_IRC=1 but python3 cannot import irc: pip install 'irc==20.5.0'"
        );
        println!("SKIP: python3 with the `irc` library is not installed (pip install irc)");
        return;
    }
    let bin = torchat_bin();
    let root = tempfile::tempdir().unwrap();
    let (pa, pb, pc, pd) = (free_port(), free_port(), free_port(), free_port());
    let daemons = [
        Daemon::start(
            &bin,
            root.path(),
            "alice",
            &direct_config(
                "alice",
                pa,
                &[("bob", pb), ("carol", pc), ("dave", pd)],
                &["carol"],
            ),
        ),
        Daemon::start(
            &bin,
            root.path(),
            "bob",
            &direct_config("bob", pb, &[("alice", pa), ("carol", pc)], &[]),
        ),
        Daemon::start(
            &bin,
            root.path(),
            "carol",
            &direct_config("carol", pc, &[("alice", pa), ("bob", pb)], &["alice"]),
        ),
    ];

    // One gateway per daemon, in this process.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ports = Vec::new();
    for d in &daemons {
        let mut cfg = IrcConfig::new(d.socket(), PASSWORD);
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.nick_file = Some(d.dir.join("irc-nicks.json"));
        let server = rt.block_on(Server::bind(cfg)).unwrap();
        ports.push(server.local_addr().unwrap().port());
        rt.spawn(server.run());
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/irc_session.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args(["--alice", &ports[0].to_string()])
        .args(["--bob", &ports[1].to_string()])
        .args(["--carol", &ports[2].to_string()])
        .args(["--alice-id", &legacy_id("alice")])
        .args(["--bob-id", &legacy_id("bob")])
        .args(["--carol-id", &legacy_id("carol")])
        .args(["--dave-id", &legacy_id("dave")])
        .args(["--password", PASSWORD])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    println!("{stdout}");
    let ok = status.is_some_and(|s| s.success());
    if !ok {
        eprintln!("python stderr:\n{stderr}");
        for d in &daemons {
            eprintln!(
                "---- {} buddies: {}",
                d.name,
                d.call(r#"{"cmd":"buddies"}"#)
            );
            eprintln!("---- {} groups: {}", d.name, d.call(r#"{"cmd":"groups"}"#));
            eprintln!("---- {} log (tail):", d.name);
            let log = d.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
        }
    }
    assert!(ok, "the IRC session failed (status {status:?})");
    assert!(stdout.contains("IRC session OK"));
    // The gateway kept the nick mapping for next time.
    let nicks = std::fs::read_to_string(daemons[0].dir.join("irc-nicks.json")).unwrap();
    assert!(nicks.contains(&legacy_id("bob")) && nicks.contains("#party"));
    rt.shutdown_timeout(Duration::from_secs(2));
}
