//! Daemons as separate processes, driven through the control API.
#![allow(dead_code, clippy::unwrap_used)]

pub mod tornet;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub fn free_port() -> u16 {
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
pub fn legacy_id(name: &str) -> String {
    format!("{name:a<16}")
}

pub struct Daemon {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Writes `config` (TOML) and starts `torchat daemon` with it.
    pub fn start(root: &Path, name: &str, config: &str) -> Daemon {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut d = Daemon {
            name: name.to_owned(),
            dir,
            config: cfg,
            child: None,
        };
        d.spawn();
        d
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_torchat"))
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
        let sock = self.dir.join("control.sock");
        wait_until(Duration::from_secs(20), "control socket", || {
            UnixStream::connect(&sock).is_ok()
        });
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.dir.join("control.sock"))
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Graceful stop through the API; waits for the process to exit.
    pub fn stop(&mut self) {
        let _ = self.client().call(json!({"cmd": "shutdown"}));
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Client {
    rd: BufReader<UnixStream>,
    wr: UnixStream,
    next: u64,
}

impl Client {
    pub fn connect(path: &Path) -> Client {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
            next: 1,
        }
    }

    /// Sends a request; returns the whole response object.
    pub fn call(&mut self, mut req: Value) -> Value {
        let id = self.next;
        self.next += 1;
        req["req"] = json!(id);
        let mut line = req.to_string();
        line.push('\n');
        // A node that is killed makes writes and reads fail: that is an answer too.
        let gone = json!({"ok": false, "error": {"code": "eof"}});
        if self.wr.write_all(line.as_bytes()).is_err() {
            return gone;
        }
        loop {
            let mut l = String::new();
            if self.rd.read_line(&mut l).unwrap_or(0) == 0 {
                return gone;
            }
            let v: Value = serde_json::from_str(&l).unwrap();
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

    /// The next event (after subscribe).
    pub fn event(&mut self) -> Value {
        loop {
            let mut l = String::new();
            self.rd.read_line(&mut l).unwrap();
            let v: Value = serde_json::from_str(&l).unwrap();
            if v.get("event").is_some() {
                return v;
            }
        }
    }
}

pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

pub fn presence(c: &mut Client, id: &str) -> String {
    let list = c.ok(json!({"cmd": "buddies"}));
    list.as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == json!(id))
        .map(|b| b["presence"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

pub fn history(c: &mut Client, with: &str) -> Vec<Value> {
    c.ok(json!({"cmd": "history", "with": with, "limit": 1000}))
        .as_array()
        .unwrap()
        .clone()
}

/// A direct-transport config with legacy ids for every peer.
pub fn direct_config(name: &str, port: u16, peers: &[(&str, u16)], blocked: &[&str]) -> String {
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
