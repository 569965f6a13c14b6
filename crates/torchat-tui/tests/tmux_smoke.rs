//! Smoke test of the real thing: two `torchat daemon`s (direct transport on loopback, legacy
//! ids) and the terminal UI (`examples/tui.rs`) attached to one of them in tmux at 80×24,
//! typed at with `send-keys` and read with `capture-pane`.
//!
//! It runs `target/<profile>/torchat` and `target/<profile>/examples/tui` (both built by
//! `cargo test --workspace`); when either is missing or older than the sources, the test builds
//! it first (`cargo build -p torchat --bin torchat`, `cargo build -p torchat-tui --example
//! tui`).
//! Without tmux it prints `SKIP` and passes, unless `TORCHAT_REQUIRE_TMUX=1`.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ALICE: &str = "aliceaaaaaaaaaaa";
const BOB: &str = "bobaaaaaaaaaaaaa";

fn have_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `target/<profile>` of this test binary (`target/<profile>/deps/tmux_smoke-…`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_owned()
}

/// Newest modification time of the workspace's manifests and sources.
fn newest_source(root: &Path) -> std::time::SystemTime {
    fn walk(p: &Path, newest: &mut std::time::SystemTime) {
        let Ok(meta) = std::fs::metadata(p) else {
            return;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), newest);
            }
        } else if let Ok(t) = meta.modified() {
            *newest = (*newest).max(t);
        }
    }
    let mut newest = std::time::UNIX_EPOCH;
    walk(&root.join("Cargo.toml"), &mut newest);
    walk(&root.join("Cargo.lock"), &mut newest);
    for e in std::fs::read_dir(root.join("crates"))
        .into_iter()
        .flatten()
        .flatten()
    {
        walk(&e.path().join("Cargo.toml"), &mut newest);
        walk(&e.path().join("src"), &mut newest);
        walk(&e.path().join("examples"), &mut newest);
    }
    newest
}

/// The daemon and the TUI example, built into the target directory this test runs from if they
/// are missing or older than the sources (`cargo test --workspace` has built both already).
/// Two cargo runs, so that neither changes the features (and so the builds) of the other's
/// dependencies.
fn build() -> (PathBuf, PathBuf) {
    let profile = profile_dir();
    let target = profile.parent().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let newest = newest_source(&root);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let bins = [
        (
            profile.join("torchat"),
            ["-p", "torchat", "--bin", "torchat"],
        ),
        (
            profile.join("examples").join("tui"),
            ["-p", "torchat-tui", "--example", "tui"],
        ),
    ];
    for (bin, what) in &bins {
        let fresh = std::fs::metadata(bin)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= newest);
        if fresh {
            continue;
        }
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&root)
            .arg("build")
            .args(what)
            .arg("--target-dir")
            .arg(target);
        if profile.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "cargo build {what:?} failed");
    }
    let [(torchat, _), (tui, _)] = bins;
    (torchat, tui)
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

/// As `direct_config` in crates/torchat/tests/common: legacy ids, loopback addresses.
fn direct_config(name: &str, id: &str, port: u16, peer: (&str, u16)) -> String {
    format!(
        "[profile]\nname = \"{name}\"\n[protocol]\nsettle_window_secs = 2\n[transport]\n\
         kind = \"direct\"\n[transport.direct]\nlisten = \"127.0.0.1:{port}\"\nid = \"{id}\"\n\
         blocked = []\n[transport.direct.peers]\n\"{}\" = \"127.0.0.1:{}\"\n",
        peer.0, peer.1
    )
}

struct Daemon {
    dir: PathBuf,
    child: Child,
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
        let d = Daemon { dir, child };
        let sock = d.socket();
        wait_until(Duration::from_secs(30), "control socket", || {
            UnixStream::connect(&sock).is_ok()
        });
        d
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking control-API client.
struct Api {
    rd: BufReader<UnixStream>,
    wr: UnixStream,
    next: u64,
}

impl Api {
    fn connect(path: &Path) -> Api {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Api {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
            next: 1,
        }
    }

    fn call(&mut self, mut req: Value) -> Value {
        let id = self.next;
        self.next += 1;
        req["req"] = json!(id);
        self.wr.write_all(format!("{req}\n").as_bytes()).unwrap();
        loop {
            let mut l = String::new();
            assert!(self.rd.read_line(&mut l).unwrap() > 0, "node hung up");
            let v: Value = serde_json::from_str(&l).unwrap();
            if v["req"] == json!(id) {
                return v;
            }
        }
    }

    fn ok(&mut self, req: Value) -> Value {
        let r = self.call(req.clone());
        assert_eq!(r["ok"], json!(true), "{req} -> {r}");
        r["result"].clone()
    }
}

/// A tmux server of our own (its own socket), with one 80×24 session.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn start(dir: &Path, command: &str) -> Tmux {
        let t = Tmux {
            socket: dir.join("tmux.sock"),
        };
        t.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "smoke",
            "-x",
            "80",
            "-y",
            "24",
            command,
        ]);
        t
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "smoke"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "smoke"];
        args.extend_from_slice(keys);
        self.run(&args);
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Types text literally, then Enter.
    fn line(&self, text: &str) {
        self.run(&["send-keys", "-t", "smoke", "-l", text]);
        self.keys(&["Enter"]);
    }

    fn wait_for(&self, what: &str, daemons: &[&Daemon], f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let s = self.screen();
            if f(&s) {
                return s;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = daemons.iter().map(|d| d.log()).collect();
                panic!(
                    "timed out waiting for {what}; screen:\n{s}\nlogs:\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
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

#[test]
fn tui_in_tmux_adds_a_buddy_chats_and_makes_a_group() {
    if !have_tmux() {
        assert!(
            std::env::var("TORCHAT_REQUIRE_TMUX").as_deref() != Ok("1"),
            "tmux is required (TORCHAT_REQUIRE_TMUX=1) but missing"
        );
        println!("SKIP: tmux not installed (apt-get install tmux)");
        return;
    }
    let (torchat, tui) = build();
    let root = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let alice = Daemon::start(
        &torchat,
        root.path(),
        "alice",
        &direct_config("alice", ALICE, pa, (BOB, pb)),
    );
    let bob = Daemon::start(
        &torchat,
        root.path(),
        "bob",
        &direct_config("bob", BOB, pb, (ALICE, pa)),
    );
    let ds = [&alice, &bob];
    let mut api_b = Api::connect(&bob.socket());
    api_b.ok(json!({"cmd": "add", "id": ALICE, "alias": "alice"}));

    // Keep the pane open after the UI exits, to read what it printed.
    let cmd = format!(
        "{} {}; echo UI-EXITED $?; sleep 600",
        tui.display(),
        alice.socket().display()
    );
    let tmux = Tmux::start(root.path(), &cmd);
    let s = tmux.wait_for("the UI with our id", &ds, |s| s.contains(ALICE));
    assert!(s.contains("direct ready"), "{s}");
    assert_eq!(s.lines().count(), 24, "{s}");

    // Add bob; he comes online.
    tmux.line(&format!("/add {BOB} bob"));
    tmux.wait_for("bob online", &ds, |s| s.contains("● bob"));

    // 1:1 both ways.
    tmux.keys(&["Tab"]);
    tmux.wait_for("bob's conversation", &ds, |s| s.contains("bob · available"));
    tmux.line("hello bob from the tui");
    tmux.wait_for("our message, sent", &ds, |s| {
        s.contains("you: hello bob from the tui · sent")
    });
    wait_until(Duration::from_secs(20), "bob has the message", || {
        let h = api_b.ok(json!({"cmd": "history", "with": ALICE}));
        h.as_array()
            .unwrap()
            .iter()
            .any(|m| m["text"] == json!("hello bob from the tui"))
    });
    api_b.ok(json!({"cmd": "send", "to": ALICE, "text": "hi alice, bob here"}));
    tmux.wait_for("bob's answer", &ds, |s| {
        s.contains("bob: hi alice, bob here")
    });

    // A group: create, invite bob; he accepts and speaks.
    tmux.line("/group");
    tmux.wait_for("the new group", &ds, |s| s.contains("(only you)"));
    tmux.line("/invite bob");
    let mut gid = String::new();
    wait_until(Duration::from_secs(20), "bob's invite", || {
        let groups = api_b.ok(json!({"cmd": "groups"}));
        match groups.as_array().unwrap().first() {
            Some(g) if g["state"] == json!("invited") => {
                gid = g["gid"].as_str().unwrap().to_owned();
                true
            }
            _ => false,
        }
    });
    api_b.ok(json!({"cmd": "group_accept", "gid": gid}));
    tmux.wait_for("bob joined", &ds, |s| s.contains("bob joined"));
    wait_until(Duration::from_secs(20), "bob has joined", || {
        api_b.ok(json!({"cmd": "group_members", "gid": gid}))["state"] == json!("joined")
    });
    api_b.ok(json!({"cmd": "group_say", "gid": gid, "text": "hello group"}));
    let s = tmux.wait_for("bob's group message, tagged", &ds, |s| {
        s.contains("bob: hello group (Direct)")
    });
    assert!(s.contains("members: you, ● bob"), "{s}");
    tmux.line("hi bob, in the group");
    tmux.wait_for("our group message delivered", &ds, |s| {
        s.contains("you: hi bob, in the group · delivered 1 of 1")
    });

    // Who vouched for bob's message: select it, c.
    tmux.keys(&["Escape"]);
    tmux.keys(&["c"]);
    tmux.wait_for("the claims popup", &ds, |s| s.contains("Who vouched"));
    tmux.keys(&["Escape"]);

    // Our id alone on the screen.
    tmux.keys(&["F2"]);
    tmux.wait_for("the id screen", &ds, |s| {
        s.lines().any(|l| l.trim() == ALICE)
    });
    tmux.keys(&["Escape"]);

    // Quit: the id is printed for copying.
    tmux.keys(&["C-c"]);
    let s = tmux.wait_for("the UI to exit", &ds, |s| s.contains("UI-EXITED"));
    assert!(s.contains(&format!("your torchat id: {ALICE}")), "{s}");
    assert!(s.contains("UI-EXITED 0"), "{s}");
}
