//! A private Tor network on loopback for end-to-end tests (`shared/tools/private-tor-net`).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn script() -> PathBuf {
    match std::env::var_os("TORCHAT_PRIVATE_TOR_NET") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/private-tor-net"),
    }
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// True if tor, python3 and the script are there; else prints SKIP and returns false (or
/// panics under `TORCHAT_REQUIRE_TOR=1`).
pub fn available(test: &str) -> bool {
    let missing: Vec<&str> = [
        (!on_path("tor")).then_some("tor (apt-get install -y tor)"),
        (!on_path("python3")).then_some("python3"),
        (!script().is_file()).then_some("the private-tor-net script"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("TORCHAT_REQUIRE_TOR").as_deref() != Ok("1"),
        "TORCHAT_REQUIRE_TOR=1 but missing: {}",
        missing.join(", ")
    );
    let line = format!(
        "SKIP {test}: missing {} (TORCHAT_REQUIRE_TOR=1 makes this fail)\n",
        missing.join(", ")
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    false
}

/// A running network; stopped when dropped.
pub struct Network {
    pub dir: PathBuf,
    pub json: serde_json::Value,
}

impl Network {
    pub fn start(dir: &Path, clients: u32) -> Network {
        run(&[
            "start",
            dir.to_str().unwrap(),
            "--clients",
            &clients.to_string(),
        ]);
        let json =
            serde_json::from_str(&std::fs::read_to_string(dir.join("network.json")).unwrap())
                .unwrap();
        Network {
            dir: dir.to_path_buf(),
            json,
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

    /// (control port, socks port, cookie file) of client `i` (0-based).
    pub fn client(&self, i: usize) -> (u16, u16, String) {
        let c = &self.json["clients"][i];
        (
            c["control_port"].as_u64().unwrap() as u16,
            c["socks_port"].as_u64().unwrap() as u16,
            c["cookie_file"].as_str().unwrap().to_owned(),
        )
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new("python3")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

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

/// TOML string array.
pub fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{:?}", s)).collect();
    format!("[{}]", quoted.join(", "))
}
