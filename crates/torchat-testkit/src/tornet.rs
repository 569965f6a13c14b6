//! A private Tor network on loopback for end-to-end tests (`shared/tools/private-tor-net`, real
//! C tor relays and onion services, no internet).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::{can_run, on_path};

/// The network script: `TORCHAT_PRIVATE_TOR_NET`, else `shared/tools/private-tor-net` beside
/// the repository.
pub fn script() -> PathBuf {
    match std::env::var_os("TORCHAT_PRIVATE_TOR_NET") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/private-tor-net"),
    }
}

/// True if tor, tor-gencert, python3 and the script are there; else prints SKIP and returns
/// false (or panics under `TORCHAT_REQUIRE_TOR=1`).
pub fn available(test: &str) -> bool {
    let script_there = script().is_file();
    let missing: Vec<&str> = [
        (!on_path("tor")).then_some("tor (apt-get install -y tor)"),
        (!on_path("tor-gencert")).then_some("tor-gencert (apt-get install -y tor)"),
        (!on_path("python3")).then_some("python3"),
        (!script_there).then_some("the private-tor-net script"),
    ]
    .into_iter()
    .flatten()
    .collect();
    can_run(test, "TORCHAT_REQUIRE_TOR", &missing)
}

/// Options for [`Network::start`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Client tor instances (default 2).
    pub clients: u32,
    /// Voting interval in seconds (default: the script's, 20). The onion-service time period
    /// is 24 voting intervals.
    pub voting_interval: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clients: 2,
            voting_interval: None,
        }
    }
}

/// A running network; stopped when dropped (with the tails of its logs printed if the test
/// is failing).
pub struct Network {
    /// Its directory.
    pub dir: PathBuf,
    /// `network.json`.
    pub json: Value,
    _tmp: Option<tempfile::TempDir>,
}

impl Network {
    /// Starts a network in `dir` with `clients` client tors.
    pub fn start(dir: &Path, clients: u32) -> Network {
        Self::start_opts(
            dir,
            &Options {
                clients,
                ..Options::default()
            },
        )
    }

    /// Starts a network in a fresh temporary directory.
    pub fn start_temp(opts: &Options) -> Network {
        let tmp = tempfile::Builder::new()
            .prefix("torchat-tornet")
            .tempdir()
            .unwrap();
        let mut n = Self::start_opts(tmp.path(), opts);
        n._tmp = Some(tmp);
        n
    }

    /// Starts a network in `dir`.
    pub fn start_opts(dir: &Path, opts: &Options) -> Network {
        let t0 = Instant::now();
        let mut args = vec![
            "start".to_owned(),
            dir.to_str().unwrap().to_owned(),
            "--clients".to_owned(),
            opts.clients.to_string(),
        ];
        if let Some(v) = opts.voting_interval {
            args.push("--voting-interval".to_owned());
            args.push(v.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args);
        eprintln!(
            "FIGURE private-tor-net start: {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        let json =
            serde_json::from_str(&std::fs::read_to_string(dir.join("network.json")).unwrap())
                .unwrap();
        Network {
            dir: dir.to_path_buf(),
            json,
            _tmp: None,
        }
    }

    /// torrc lines that make an extra tor join this network.
    pub fn client_torrc(&self) -> Vec<String> {
        run(&["client-torrc", self.dir.to_str().unwrap()])
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The `network.json` entry of client `i` (0-based).
    pub fn client_json(&self, i: usize) -> &Value {
        &self.json["clients"][i]
    }

    /// (control port, socks port, cookie file) of client `i` (0-based).
    pub fn client(&self, i: usize) -> (u16, u16, String) {
        let c = self.client_json(i);
        (
            c["control_port"].as_u64().unwrap() as u16,
            c["socks_port"].as_u64().unwrap() as u16,
            c["cookie_file"].as_str().unwrap().to_owned(),
        )
    }

    /// The voting interval in seconds (from `network.json`, 20 if absent).
    pub fn voting_interval(&self) -> u64 {
        self.json["voting_interval"].as_u64().unwrap_or(20)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in ["client1", "client2", "relay0"] {
                let log = self.dir.join("nodes").join(node).join("notice.log");
                if let Ok(text) = std::fs::read_to_string(&log) {
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    eprintln!("--- {} (tail) ---", log.display());
                    for line in tail.iter().rev() {
                        eprintln!("{line}");
                    }
                }
            }
        }
        let _ = Command::new("python3")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

/// Runs the script with `args`; panics (with its output) if it fails.
pub fn run(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "private-tor-net {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A TOML string array.
pub fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}
