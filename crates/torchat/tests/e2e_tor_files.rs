//! File transfer over real Tor: two daemons on a private Tor network (real C tor relays and
//! onion services on loopback) move a 100 MiB pseudo-random file through their onion services,
//! timed from the receiver's `file_accept` to `complete`, sha256 checked. One daemon runs a C
//! tor that torchat launches and points at the network, the other uses the network's own
//! client tor as an existing tor (as in `e2e_tor.rs`).
//!
//! A benchmark, ignored by default:
//! `cargo test -p torchat --test e2e_tor_files -- --ignored --nocapture`.
//! Needs `tor` and `python3`; prints SKIP without them unless `TORCHAT_REQUIRE_TOR=1`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use torchat_testkit::tornet::{self, toml_list, Network};
use torchat_testkit::{make_file, presence, sha_of, wait_until, Client, Daemon};

const MIB: usize = 1024 * 1024;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn transfers(c: &mut Client) -> Vec<Value> {
    c.ok(json!({"cmd": "files"})).as_array().unwrap().clone()
}

fn transfer(c: &mut Client, id: u64) -> Value {
    transfers(c)
        .into_iter()
        .find(|t| t["id"] == json!(id))
        .unwrap_or(Value::Null)
}

#[test]
#[ignore = "a benchmark: 100 MiB over the private Tor network; run with --ignored"]
fn a_100_mib_file_moves_over_a_private_tor_network() {
    if !tornet::available("a_100_mib_file_moves_over_a_private_tor_network") {
        return;
    }
    let t0 = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let net = Network::start(&root.path().join("net"), 2);
    eprintln!("network up in {:.1} s", t0.elapsed().as_secs_f32());
    let head = |name: &str| {
        format!(
            "[profile]\nname = \"{name}\"\n[protocol]\nsettle_window_secs = 2\n[files]\ndownload_dir = {:?}\n",
            root.path().join(format!("{name}-dl")).display().to_string()
        )
    };
    let managed = format!(
        "{}[transport]\nkind = \"tor\"\n[transport.tor]\nextra_torrc = {}\n",
        head("managed"),
        toml_list(&net.client_torrc())
    );
    let (control, socks, cookie) = net.client(0);
    let existing = format!(
        "{}[transport]\nkind = \"tor-existing\"\n[transport.tor-existing]\ncontrol = \"127.0.0.1:{control}\"\nsocks = \"127.0.0.1:{socks}\"\ncookie_file = {cookie:?}\n",
        head("existing")
    );
    let a = Daemon::start(root.path(), "managed", &managed);
    let b = Daemon::start(root.path(), "existing", &existing);
    let (mut ca, mut cb) = (a.client(), b.client());
    let ready = |c: &mut Client| c.ok(json!({"cmd": "info"}))["tor"]["ready"] == json!(true);
    wait_until(secs(300), "both onion services published", || {
        ready(&mut ca) && ready(&mut cb)
    });
    eprintln!("both published at {:.1} s", t0.elapsed().as_secs_f32());
    let id = |c: &mut Client| {
        c.ok(json!({"cmd": "info"}))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (ida, idb) = (id(&mut ca), id(&mut cb));
    assert!(ida.len() == 56 && idb.len() == 56, "v3 onion ids");
    ca.ok(json!({"cmd": "add", "id": idb}));
    cb.ok(json!({"cmd": "add", "id": ida}));
    let t = Instant::now();
    wait_until(secs(300), "both online over Tor", || {
        presence(&mut ca, &idb) == "available" && presence(&mut cb, &ida) == "available"
    });
    eprintln!(
        "handshake over Tor done in {:.1} s",
        t.elapsed().as_secs_f32()
    );

    let src = root.path().join("big.bin");
    let sha = make_file(&src, 100 * MIB, 7);
    let sent = ca.ok(json!({"cmd": "send_file", "to": idb, "path": src.display().to_string()}));
    let sid = sent["id"].as_u64().unwrap();
    let mut rid = None;
    wait_until(secs(120), "the offer over Tor", || {
        rid = transfers(&mut cb)
            .into_iter()
            .find(|t| t["name"] == json!("big.bin") && t["state"] == json!("offered"))
            .and_then(|t| t["id"].as_u64());
        rid.is_some()
    });
    let rid = rid.unwrap();
    let t = Instant::now();
    let acc = cb.ok(json!({"cmd": "file_accept", "file": rid}));
    assert_eq!(acc["state"], json!("transferring"));
    let mut last_report = Instant::now();
    wait_until(secs(1800), "complete over Tor", || {
        let tr = transfer(&mut cb, rid);
        if last_report.elapsed() >= secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  {:.0} s: {:.1} MiB received, state {}",
                t.elapsed().as_secs_f64(),
                tr["done"].as_u64().unwrap_or(0) as f64 / MIB as f64,
                tr["state"]
            );
        }
        assert!(
            !["failed", "cancelled"].contains(&tr["state"].as_str().unwrap_or("")),
            "transfer over Tor ended: {tr}"
        );
        tr["state"] == json!("complete")
    });
    let took = t.elapsed().as_secs_f64();
    let tr = transfer(&mut cb, rid);
    let path = PathBuf::from(tr["path"].as_str().unwrap());
    assert_eq!(path, root.path().join("existing-dl").join("big.bin"));
    assert_eq!(sha_of(&path), sha);
    wait_until(secs(60), "sender complete", || {
        transfer(&mut ca, sid)["state"] == json!("complete")
    });
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "FIGURE tor file: 100 MiB in {took:.1} s = {:.2} MiB/s ({profile} build, private Tor network on loopback)",
        100.0 / took
    );
    eprintln!("total {:.1} s", t0.elapsed().as_secs_f32());
    drop((a, b));
    drop(net);
}
