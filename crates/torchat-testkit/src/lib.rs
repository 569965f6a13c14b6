//! Shared helpers for torchat's end-to-end tests and benchmarks (dev-only, never published).
//!
//! - [`daemon`]: the `torchat` binary as a process ([`daemon::Daemon`]), a blocking control-API
//!   client ([`daemon::Client`]), direct-transport configurations.
//! - [`tornet`]: a private Tor network on loopback (`shared/tools/private-tor-net`).
//! - [`socks`]: a small SOCKS5 proxy that maps `<id>.onion:11009` to local ports.
//! - here: free ports, legacy ids, waiting for a condition, skipping when a tool is missing.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]
#![warn(missing_docs)]

pub mod daemon;
pub mod socks;
pub mod tornet;

use std::time::{Duration, Instant};

pub use daemon::{direct_config, history, presence, torchat_bin, Client, Daemon};

/// A free TCP port on 127.0.0.1, outside the kernel's ephemeral range (32768–60999), so that
/// no outgoing connection of a daemon can take it between this check and the daemon binding it.
pub fn free_port() -> u16 {
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

/// A legacy (16-character) id from a short name: "alice" → "aliceaaaaaaaaaaa".
pub fn legacy_id(name: &str) -> String {
    format!("{name:a<16}")
}

/// Polls `f` every 100 ms until it is true; panics after `limit`.
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

/// Whether a test that needs `missing.is_empty()` can run. If something is missing it prints a
/// `SKIP` line on stderr and returns false — or panics when the environment variable `require`
/// is `1` (CI sets `TORCHAT_REQUIRE_TOR=1` and the like).
pub fn can_run(test: &str, require: &str, missing: &[&str]) -> bool {
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var(require).as_deref() != Ok("1"),
        "{require}=1 but {test} is missing: {}",
        missing.join(", ")
    );
    // Written to stderr directly so that the test harness does not swallow it.
    let line = format!(
        "SKIP {test}: missing {} (set {require}=1 to fail instead)\n",
        missing.join(", ")
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    false
}

/// Whether `name` is an executable file in a directory of `PATH`.
pub fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// Resident set size of a process in KiB (from /proc), if it can be read.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Writes a file of `size` pseudo-random bytes (xorshift from `seed`) to `path`; returns its
/// sha256.
pub fn make_file(path: &std::path::Path, size: usize, seed: u64) -> Vec<u8> {
    use sha2::Digest;
    let mut x = seed | 1;
    let mut data = Vec::with_capacity(size);
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    std::fs::write(path, &data).unwrap();
    sha2::Sha256::digest(&data).to_vec()
}

/// The sha256 of a file's contents.
pub fn sha_of(path: &std::path::Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}
