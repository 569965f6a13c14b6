//! The manual transport: two daemons that reach each other only through a SOCKS5 proxy (a
//! small one in this test, mapping `<id>.onion:11009` to local ports, as Tor would).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, history, legacy_id, presence, wait_until, Daemon};
use serde_json::json;

/// A SOCKS5 proxy (no auth, CONNECT, domain names only) that maps `<id>.onion` to ports.
fn proxy(map: BTreeMap<String, u16>, connects: Arc<AtomicUsize>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let map = map.clone();
            let connects = connects.clone();
            std::thread::spawn(move || {
                let mut b = [0u8; 262];
                // greeting: VER NMETHODS METHODS
                s.read_exact(&mut b[..2]).unwrap();
                let n = b[1] as usize;
                s.read_exact(&mut b[..n]).unwrap();
                s.write_all(&[5, 0]).unwrap();
                // request: VER CMD RSV ATYP=3 LEN NAME PORT
                s.read_exact(&mut b[..5]).unwrap();
                assert_eq!(&b[..4], &[5, 1, 0, 3], "CONNECT with a domain name");
                let len = b[4] as usize;
                s.read_exact(&mut b[..len + 2]).unwrap();
                let host = String::from_utf8_lossy(&b[..len]).into_owned();
                let dport = u16::from_be_bytes([b[len], b[len + 1]]);
                assert_eq!(dport, 11009);
                let target = host
                    .strip_suffix(".onion")
                    .and_then(|id| map.get(id))
                    .copied();
                let Some(target) = target else {
                    let _ = s.write_all(&[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]); // host unreachable
                    return;
                };
                let up = TcpStream::connect(("127.0.0.1", target)).unwrap();
                s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).unwrap();
                connects.fetch_add(1, Ordering::SeqCst);
                let (mut a, mut b2) = (s.try_clone().unwrap(), up.try_clone().unwrap());
                let (mut s2, mut up2) = (s, up);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut up2);
                    let _ = up2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut b2, &mut s2);
                let _ = s2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

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
    let connects = Arc::new(AtomicUsize::new(0));
    let map = BTreeMap::from([(a.clone(), la), (b.clone(), lb)]);
    let socks = proxy(map, connects.clone());
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
    assert!(connects.load(Ordering::SeqCst) >= 2);
}
