//! A real IRC client library drives a real session: three torchat daemons as processes
//! (direct transport on loopback; the alice–carol link is blocked), one IRC gateway in front
//! of each, and Python's `irc` library (PyPI: `pip install irc`) as the three users —
//! password, 1:1 chat across daemons, a group created through `&torchat`, an IRC INVITE,
//! JOIN to accept, group lines with their trust tags, PART.
//!
//! Without python3 and the `irc` library this prints SKIP and passes, unless
//! `TORCHAT_REQUIRE_IRC=1` is set. The daemon binary comes from the test kit (`TORCHAT_BIN`, or
//! the workspace's `target/<profile>/torchat`, built when missing or stale).
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use torchat_irc::{IrcConfig, Server};
use torchat_testkit::{direct_config, free_port, legacy_id, torchat_bin, Daemon};

const PASSWORD: &str = "correct horse battery staple";

fn python_has_irc() -> bool {
    Command::new("python3")
        .args(["-c", "import irc.client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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
        Daemon::start_with(
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
        Daemon::start_with(
            &bin,
            root.path(),
            "bob",
            &direct_config("bob", pb, &[("alice", pa), ("carol", pc)], &[]),
        ),
        Daemon::start_with(
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
                d.client().call(json!({"cmd": "buddies"}))
            );
            eprintln!(
                "---- {} groups: {}",
                d.name,
                d.client().call(json!({"cmd": "groups"}))
            );
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
