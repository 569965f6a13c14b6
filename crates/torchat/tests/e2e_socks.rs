//! The manual transport: two daemons that reach each other only through a SOCKS5 proxy (a
//! small one from the test kit, mapping `<id>.onion:11009` to local ports, as Tor would).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use torchat_testkit::socks::MappingProxy;
use torchat_testkit::{free_port, history, legacy_id, presence, wait_until, Daemon};

fn manual_config(name: &str, listen: u16, socks: u16) -> String {
    format!(
        "[profile]\nname = \"{name}\"\n[transport]\nkind = \"manual\"\n[transport.manual]\nid = \"{}\"\nlisten = \"127.0.0.1:{listen}\"\nsocks = \"127.0.0.1:{socks}\"\nsocks_version = \"socks5\"\n",
        legacy_id(name)
    )
}

#[test]
fn two_daemons_through_a_socks5_proxy() {
    let root = tempfile::tempdir().unwrap();
    let (la, lb) = (free_port(), free_port());
    let (a, b) = (legacy_id("alice"), legacy_id("bob"));
    let proxy = MappingProxy::start(BTreeMap::from([(a.clone(), la), (b.clone(), lb)]));
    let socks = proxy.port;
    let da = Daemon::start(root.path(), "alice", &manual_config("alice", la, socks));
    let db = Daemon::start(root.path(), "bob", &manual_config("bob", lb, socks));
    let (mut ca, mut cb) = (da.client(), db.client());
    assert_eq!(ca.ok(json!({"cmd": "info"}))["transport"], json!("socks"));
    ca.ok(json!({"cmd": "add", "id": b}));
    cb.ok(json!({"cmd": "add", "id": a}));
    wait_until(Duration::from_secs(20), "online through the proxy", || {
        presence(&mut ca, &b) == "available" && presence(&mut cb, &a) == "available"
    });
    ca.ok(json!({"cmd": "send", "to": b, "text": "via socks"}));
    wait_until(Duration::from_secs(10), "message through the proxy", || {
        history(&mut cb, &a).len() == 1
    });
    assert_eq!(history(&mut cb, &a)[0]["text"], json!("via socks"));
    // Both outgoing connections went through the proxy.
    assert!(proxy.connects() >= 2);
}
