//! End to end over real Tor: daemons on a private Tor network (real relays and onion services
//! on loopback) exchange 1:1 and group messages through their onion services. One daemon runs
//! a C tor that torchat launches and points at the network (extra torrc lines), one uses the
//! network's own client tor as an existing tor (control + SOCKS port), and one runs embedded
//! Arti configured for the network (`[transport.arti] private_tor_net = DIR`).
//!
//! Needs `tor` and `python3`; prints SKIP without them unless `TORCHAT_REQUIRE_TOR=1`.
#![allow(clippy::unwrap_used, clippy::needless_range_loop)]

use std::time::{Duration, Instant};

use serde_json::json;
use torchat_testkit::tornet::{self, toml_list, Network};
use torchat_testkit::{history, presence, wait_until, Client, Daemon};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn daemons_chat_over_a_private_tor_network() {
    if !tornet::available("daemons_chat_over_a_private_tor_network") {
        return;
    }
    let t0 = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let net = Network::start(&root.path().join("net"), 2);
    eprintln!("network up in {:.1} s", t0.elapsed().as_secs_f32());
    let head =
        |name: &str| format!("[profile]\nname = \"{name}\"\n[protocol]\nsettle_window_secs = 2\n");
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
    let arti = format!(
        "{}[transport]\nkind = \"arti\"\n[transport.arti]\nprivate_tor_net = {:?}\n",
        head("arti"),
        net.dir.display().to_string()
    );
    let daemons = [
        Daemon::start(root.path(), "managed", &managed),
        Daemon::start(root.path(), "existing", &existing),
        Daemon::start(root.path(), "arti", &arti),
    ];
    let mut c: Vec<Client> = daemons.iter().map(Daemon::client).collect();
    let ready = |c: &mut Client| c.ok(json!({"cmd": "info"}))["tor"]["ready"] == json!(true);
    wait_until(secs(300), "all onion services published", || {
        c.iter_mut().all(ready)
    });
    eprintln!("all published at {:.1} s", t0.elapsed().as_secs_f32());
    let ids: Vec<String> = c
        .iter_mut()
        .map(|c| {
            c.ok(json!({"cmd": "info"}))["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(ids.iter().all(|i| i.len() == 56), "v3 onion ids");
    assert_eq!(c[2].ok(json!({"cmd": "info"}))["transport"], json!("arti"));
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                c[i].ok(json!({"cmd": "add", "id": ids[j]}));
            }
        }
    }
    let t = Instant::now();
    wait_until(secs(300), "everyone online over Tor", || {
        (0..3).all(|i| {
            (0..3)
                .filter(|j| *j != i)
                .all(|j| presence(&mut c[i], &ids[j]) == "available")
        })
    });
    eprintln!(
        "all handshakes over Tor done in {:.1} s",
        t.elapsed().as_secs_f32()
    );
    // 1:1 in every direction, including Arti <-> C tor.
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                c[i].ok(
                    json!({"cmd": "send", "to": ids[j], "text": format!("{i} to {j} over tor")}),
                );
            }
        }
    }
    wait_until(secs(120), "1:1 over Tor", || {
        (0..3).all(|i| {
            (0..3)
                .filter(|j| *j != i)
                .all(|j| history(&mut c[i], &ids[j]).len() == 2)
        })
    });
    // A group over Tor: the managed node creates it, invites the other two; Arti speaks.
    let gid = c[0].ok(json!({"cmd": "group_create"}))["gid"]
        .as_str()
        .unwrap()
        .to_owned();
    for j in [1, 2] {
        c[0].ok(json!({"cmd": "group_invite", "gid": gid, "id": ids[j]}));
        wait_until(secs(60), "invite over Tor", || {
            c[j].call(json!({"cmd": "group_accept", "gid": gid}))["ok"] == json!(true)
        });
        wait_until(secs(60), "joined", || {
            c[j].ok(json!({"cmd": "group_members", "gid": gid}))["state"] == json!("joined")
        });
    }
    wait_until(secs(120), "member lists agree", || {
        c.iter_mut().all(|c| {
            c.ok(json!({"cmd": "group_members", "gid": gid}))["members"]
                .as_array()
                .unwrap()
                .len()
                == 2
        })
    });
    c[2].ok(json!({"cmd": "group_say", "gid": gid, "text": "group over tor from arti"}));
    wait_until(secs(60), "group message over Tor", || {
        [0, 1].iter().all(|&i| {
            history(&mut c[i], &gid).iter().any(|m| {
                m["text"] == json!("group over tor from arti") && m["trust"] == json!("(Direct)")
            })
        })
    });
    eprintln!("total {:.1} s", t0.elapsed().as_secs_f32());
    drop(daemons);
    drop(net);
}
