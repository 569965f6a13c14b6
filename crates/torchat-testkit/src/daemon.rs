//! The `torchat` daemon as a separate process, driven through its control API.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{legacy_id, wait_until};

/// `target/<profile>` of the running test or example binary (`target/<profile>/deps/x-…` or
/// `target/<profile>/examples/x`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_owned()
}

/// The workspace root (this crate is `crates/torchat-testkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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

/// A binary of this workspace in the target directory the caller runs from, built with cargo
/// if it is missing or older than the sources (`cargo test --workspace` has built the daemon
/// already). `what` are cargo's selection arguments, e.g. `["-p", "torchat", "--bin",
/// "torchat"]`; `rel` is the binary's path under `target/<profile>`.
pub fn workspace_binary(rel: &str, what: &[&str]) -> PathBuf {
    let profile = profile_dir();
    let bin = profile.join(rel);
    let fresh = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= newest_source(&workspace_root()));
    if fresh {
        return bin;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .arg("build")
        .args(what)
        .arg("--target-dir")
        .arg(profile.parent().unwrap_or(&profile));
    if profile.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "cargo build {what:?} failed");
    assert!(bin.exists(), "no binary at {}", bin.display());
    bin
}

/// The `torchat` binary: `TORCHAT_BIN` if set, else this workspace's `target/<profile>/torchat`,
/// (re)built if missing or stale.
pub fn torchat_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TORCHAT_BIN") {
        return PathBuf::from(p);
    }
    workspace_binary("torchat", &["-p", "torchat", "--bin", "torchat"])
}

/// A `torchat daemon` process with its own data directory; killed when dropped.
pub struct Daemon {
    /// Short name (the directory under the test's root).
    pub name: String,
    /// Data directory.
    pub dir: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Writes `config` (TOML) to `root/name/config.toml` and starts `torchat daemon` with it;
    /// returns once the control socket answers.
    pub fn start(root: &Path, name: &str, config: &str) -> Daemon {
        Self::start_with(&torchat_bin(), root, name, config)
    }

    /// As [`Daemon::start`] with a given binary.
    pub fn start_with(bin: &Path, root: &Path, name: &str, config: &str) -> Daemon {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut d = Daemon {
            name: name.to_owned(),
            dir,
            config: cfg,
            bin: bin.to_owned(),
            child: None,
        };
        d.spawn();
        d
    }

    /// (Re)starts the process on the same data directory and config.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--config")
            .arg(&self.config)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let sock = self.socket();
        wait_until(Duration::from_secs(30), "control socket", || {
            UnixStream::connect(&sock).is_ok()
        });
    }

    /// Path of the control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// A new control-API client.
    pub fn client(&self) -> Client {
        Client::connect(&self.socket())
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Graceful stop through the API; waits (up to 10 s) for the process to exit.
    pub fn stop(&mut self) {
        if UnixStream::connect(self.socket()).is_ok() {
            let _ = self.client().call(json!({"cmd": "shutdown"}));
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What it logged so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking control-API client (JSON lines over the Unix socket).
pub struct Client {
    rd: BufReader<UnixStream>,
    wr: UnixStream,
    next: u64,
}

impl Client {
    /// Connects to a control socket.
    pub fn connect(path: &Path) -> Client {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
            next: 1,
        }
    }

    /// Sends a request (a `req` number is added); returns the whole response object. A node
    /// that went away answers `{"ok": false, "error": {"code": "eof"}}`.
    pub fn call(&mut self, mut req: Value) -> Value {
        let id = self.next;
        self.next += 1;
        req["req"] = json!(id);
        let mut line = req.to_string();
        line.push('\n');
        let gone = json!({"ok": false, "error": {"code": "eof"}});
        if self.wr.write_all(line.as_bytes()).is_err() {
            return gone;
        }
        loop {
            let mut l = String::new();
            if self.rd.read_line(&mut l).unwrap_or(0) == 0 {
                return gone;
            }
            let Ok(v) = serde_json::from_str::<Value>(&l) else {
                return gone;
            };
            if v.get("event").is_some() {
                continue;
            }
            if v["req"] == json!(id) || v["req"] == json!(0) {
                return v;
            }
        }
    }

    /// Sends a request that must succeed; returns its result.
    pub fn ok(&mut self, req: Value) -> Value {
        let r = self.call(req.clone());
        assert_eq!(r["ok"], json!(true), "{req} -> {r}");
        r["result"].clone()
    }

    /// Writes a raw line (for robustness tests).
    pub fn send_raw(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.wr.write_all(line)
    }

    /// Reads one raw line; `None` at end of stream or timeout.
    pub fn read_line(&mut self) -> Option<String> {
        let mut l = String::new();
        match self.rd.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(l),
        }
    }

    /// The next event (after `subscribe`).
    pub fn event(&mut self) -> Value {
        loop {
            let l = self.read_line().expect("control connection closed");
            let v: Value = serde_json::from_str(&l).unwrap();
            if v.get("event").is_some() {
                return v;
            }
        }
    }
}

/// A buddy's presence as the daemon shows it ("" if it is not on the list).
pub fn presence(c: &mut Client, id: &str) -> String {
    let list = c.ok(json!({"cmd": "buddies"}));
    list.as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == json!(id))
        .map(|b| b["presence"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Up to the last 1000 messages of a conversation (buddy id or group id).
pub fn history(c: &mut Client, with: &str) -> Vec<Value> {
    c.ok(json!({"cmd": "history", "with": with, "limit": 1000}))
        .as_array()
        .unwrap()
        .clone()
}

/// A direct-transport config with legacy ids for us and every peer (`name` → its legacy id),
/// loopback addresses, a 2 s settle window.
pub fn direct_config(name: &str, port: u16, peers: &[(&str, u16)], blocked: &[&str]) -> String {
    let mut s = format!(
        "[profile]\nname = \"{name}\"\n[protocol]\nsettle_window_secs = 2\n[transport]\nkind = \"direct\"\n[transport.direct]\nlisten = \"127.0.0.1:{port}\"\nid = \"{}\"\nblocked = [{}]\n[transport.direct.peers]\n",
        legacy_id(name),
        blocked
            .iter()
            .map(|b| format!("\"{}\"", legacy_id(b)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (p, port) in peers {
        s.push_str(&format!("\"{}\" = \"127.0.0.1:{port}\"\n", legacy_id(p)));
    }
    s
}
