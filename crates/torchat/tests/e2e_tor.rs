//! End to end over real Tor: daemons on a private Tor network (real relays and onion services
//! on loopback) exchange 1:1 and group messages through their onion services. One daemon runs
//! a C tor that torchat launches and points at the network (extra torrc lines); one uses the
//! network's own client tor as an existing tor (control + SOCKS port).
//!
//! Needs `tor` and `python3`; prints SKIP without them unless `TORCHAT_REQUIRE_TOR=1`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::tornet::{self, toml_list, Network};
use common::{history, presence, wait_until, Daemon};
use serde_json::json;

#[test]
fn daemons_chat_over_a_private_tor_network() {
    if !tornet::available("daemons_chat_over_a_private_tor_network") {
        return;
    }
    let t0 = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let net = Network::start(&root.path().join("net"), 2);
    eprintln!("network up in {:.1} s", t0.elapsed().as_secs_f32());
    let managed = format!(
        "[profile]\nname = \"managed\"\n[protocol]\nsettle_window_secs = 2\n[transport]\nkind = \"tor\"\n[transport.tor]\nextra_torrc = {}\n",
        toml_list(&net.client_torrc())
    );
    let (control, socks, cookie) = net.client(0);
    let existing = format!(
        "[profile]\nname = \"existing\"\n[protocol]\nsettle_window_secs = 2\n[transport]\nkind = \"tor-existing\"\n[transport.tor-existing]\ncontrol = \"127.0.0.1:{control}\"\nsocks = \"127.0.0.1:{socks}\"\ncookie_file = {cookie:?}\n"
    );
    let da = Daemon::start(root.path(), "managed", &managed);
    let db = Daemon::start(root.path(), "existing", &existing);
    let (mut ca, mut cb) = (da.client(), db.client());
    let ready =
        |c: &mut common::Client| c.ok(json!({"cmd": "info"}))["tor"]["ready"] == json!(true);
    wait_until(
        Duration::from_secs(240),
        "both onion services published",
        || ready(&mut ca) && ready(&mut cb),
    );
    eprintln!("both published at {:.1} s", t0.elapsed().as_secs_f32());
    let a = ca.ok(json!({"cmd": "info"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = cb.ok(json!({"cmd": "info"}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!((a.len(), b.len()), (56, 56), "v3 onion ids");
    ca.ok(json!({"cmd": "add", "id": b}));
    cb.ok(json!({"cmd": "add", "id": a}));
    let t = Instant::now();
    wait_until(Duration::from_secs(240), "online over Tor", || {
        presence(&mut ca, &b) == "available" && presence(&mut cb, &a) == "available"
    });
    eprintln!("handshake over Tor in {:.1} s", t.elapsed().as_secs_f32());
    ca.ok(json!({"cmd": "send", "to": b, "text": "over tor"}));
    cb.ok(json!({"cmd": "send", "to": a, "text": "and back"}));
    wait_until(Duration::from_secs(60), "1:1 over Tor", || {
        history(&mut cb, &a).len() == 2 && history(&mut ca, &b).len() == 2
    });
    // A group over Tor.
    let gid = ca.ok(json!({"cmd": "group_create"}))["gid"]
        .as_str()
        .unwrap()
        .to_owned();
    ca.ok(json!({"cmd": "group_invite", "gid": gid, "id": b}));
    wait_until(Duration::from_secs(60), "invite over Tor", || {
        cb.call(json!({"cmd": "group_accept", "gid": gid}))["ok"] == json!(true)
    });
    wait_until(Duration::from_secs(60), "joined", || {
        cb.ok(json!({"cmd": "group_members", "gid": gid}))["state"] == json!("joined")
    });
    cb.ok(json!({"cmd": "group_say", "gid": gid, "text": "group over tor"}));
    wait_until(Duration::from_secs(60), "group message over Tor", || {
        history(&mut ca, &gid)
            .iter()
            .any(|m| m["text"] == json!("group over tor") && m["trust"] == json!("(Direct)"))
    });
    eprintln!("total {:.1} s", t0.elapsed().as_secs_f32());
    drop((da, db));
    drop(net);
}
