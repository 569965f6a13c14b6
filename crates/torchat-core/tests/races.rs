//! The handshake races and reconnects captured against the real clients
//! (`shared/spec/handshake-races.md`), replayed line by line against our core. The peer's
//! lines are fed as captured; where a line carries one of *our* cookies, the cookie our core
//! actually used on that connection is put in. Each race must end with the buddy available on
//! both sides within one round trip of the last captured line — no timer of ours involved:
//! we must have answered the peer's newest cookie with a pong the peer accepts.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::id;
use common::script::{ping, pong, Script};
use torchat_core::{ConnId, Presence};
use torchat_wire::{OnionId, Packet};

/// Our node with `peer` on its buddy list (we added it first), our first connection up.
fn we_add(peer: &OnionId) -> (Script, ConnId) {
    let mut s = Script::new("torchat");
    let now = s.now;
    s.node.add_buddy(peer.clone(), None, now).unwrap();
    s.drain();
    let c = s.connects()[0].0;
    (s, c)
}

/// The outgoing connection we would use now (the last one opened and not closed).
fn live_out(s: &Script) -> ConnId {
    let (c, _) = s
        .connects()
        .into_iter()
        .rev()
        .find(|(c, _)| !s.closed(*c))
        .expect("an open outgoing connection");
    c
}

/// Pongs we wrote on a connection.
fn pongs_on(s: &Script, conn: ConnId) -> Vec<Vec<u8>> {
    s.sent_on(conn)
        .into_iter()
        .filter_map(|p| match p {
            Packet::Pong { cookie } => Some(cookie),
            _ => None,
        })
        .collect()
}

/// The peer closes a connection (if we have not already).
fn peer_closes(s: &mut Script, conn: ConnId) {
    if !s.closed(conn) {
        let now = s.now;
        s.node.handle_closed(conn, now);
        s.drain();
    }
}

/// The peer accepted our pong: it sends its info and status on its connection.
fn peer_is_satisfied(s: &mut Script, on: ConnId, client: &str) {
    s.feed(on, format!("client {client}").as_bytes());
    s.feed(on, b"version 1");
    s.feed(on, b"status available");
}

fn at(s: &mut Script, secs: f64) {
    // Moves the clock without firing our timers: the races must resolve without them.
    s.now = torchat_core::Timestamp::from_millis(common::T0 + (secs * 1000.0) as u64);
}

/// §1: ruby-torchat opens a second outgoing connection with a newer cookie and rejects our
/// pong to the older one (it expects the newest) by dropping the link. We must answer the
/// newer cookie on a fresh connection: ping first, then exactly one pong — for `fc7f`.
#[test]
fn ruby_second_connection_with_a_newer_cookie_wedged() {
    let ruby = id("ruby");
    let (mut s, c10) = we_add(&ruby);
    // c11 ruby>tc  ping ruby 76fb…
    let c11 = s.accept();
    s.feed(c11, &ping(&ruby, "76fb"));
    // c10 tc>ruby  pong 76fb…
    assert_eq!(pongs_on(&s, c10), [b"76fb".to_vec()]);
    // c12 ruby>tc  ping ruby fc7f…   (second connection, newer cookie)
    let c12 = s.accept();
    s.feed(c12, &ping(&ruby, "fc7f"));
    // ruby: "sent pong with wrong cookie … expected fc7f…" — it drops c10 and its c11.
    peer_closes(&mut s, c10);
    peer_closes(&mut s, c11);
    // c13 tc>ruby  ping tc …   (our fresh connection)
    let c13 = live_out(&s);
    assert_ne!(c13, c10);
    // c12 ruby>tc  pong <our cookie>
    let ours = s.our_cookie(c13);
    s.feed(c12, &pong(&ours));
    // What ruby needs: on that fresh connection our ping, then one pong, for its newest cookie.
    let sent = s.sent_on(c13);
    assert!(matches!(sent[0], Packet::Ping { .. }), "{sent:?}");
    assert_eq!(pongs_on(&s, c13), [b"fc7f".to_vec()], "{sent:?}");
    peer_is_satisfied(&mut s, c12, "ruby-torchat");
    assert!(matches!(s.presence(&ruby), Presence::Online(_)));
    // ruby drops a link on a second pong: never more than one on any connection.
    for (c, _) in s.connects() {
        assert!(pongs_on(&s, c).len() <= 1, "two pongs on {c}");
    }
}

/// §1, the variant that recovered in 13 ms: ruby's second cookie arrives before ruby drops
/// anything; we answer it on a fresh connection at once.
#[test]
fn ruby_second_connection_answered_on_a_fresh_connection() {
    let ruby = id("ruby");
    let (mut s, c10) = we_add(&ruby);
    let c11 = s.accept();
    s.feed(c11, &ping(&ruby, "75bb"));
    assert_eq!(pongs_on(&s, c10), [b"75bb".to_vec()]);
    let c12 = s.accept();
    s.feed(c12, &ping(&ruby, "5c63"));
    // c13 tc>ruby  ping tc d1a1… + pong 5c63…
    let c13 = live_out(&s);
    assert_ne!(c13, c10);
    assert_eq!(pongs_on(&s, c13), [b"5c63".to_vec()]);
    // c12 ruby>tc  pong d1a1… → online
    let ours = s.our_cookie(c13);
    s.feed(c12, &pong(&ours));
    peer_is_satisfied(&mut s, c12, "ruby-torchat");
    assert!(matches!(s.presence(&ruby), Presence::Online(_)));
}

/// §2 try 16: we add jtorchat, it adds us 4 ms later and opens a second connection with a
/// newer cookie; it answers our pings on both of its connections; then it repeats the newer
/// ping every 15 s because no pong for it ever came.
#[test]
fn jtorchat_try_16_second_cookie_gets_its_pong() {
    let java = id("java");
    let (mut s, c40) = we_add(&java);
    at(&mut s, 0.017);
    let c41 = s.accept();
    s.feed(c41, &ping(&java, "472n")); // c41 java>tc ping java 472n…
    assert_eq!(pongs_on(&s, c40), [b"472n".to_vec()]); // c40 tc>java pong 472n…
    at(&mut s, 0.021);
    let c42 = s.accept();
    s.feed(c42, &ping(&java, "r2g7")); // c42 java>tc ping java r2g7…
    let c43 = live_out(&s); // c43 tc>java ping tc 7245…
    at(&mut s, 0.059);
    let c440 = s.our_cookie(c40);
    s.feed(c41, &pong(&c440)); // c41 java>tc pong c440…
    at(&mut s, 0.067);
    let c7245 = s.our_cookie(c43);
    s.feed(c42, &pong(&c7245)); // c42 java>tc pong 7245…
                                // We must have answered r2g7 — on a connection whose first line is our ping.
    let sent = s.sent_on(c43);
    assert!(matches!(sent[0], Packet::Ping { .. }), "{sent:?}");
    assert!(pongs_on(&s, c43).contains(&b"r2g7".to_vec()), "{sent:?}");
    peer_is_satisfied(&mut s, c42, "JTC [T2]");
    assert!(matches!(s.presence(&java), Presence::Online(_)));
}

/// §2 try 10: the same two-cookie pattern, but our pong for the newer cookie is lost on the
/// way; jtorchat repeats `ping … e11q…` on the same connection at +16.6 s: it gets a pong
/// again, at once.
#[test]
fn jtorchat_try_10_repeated_ping_is_answered_again() {
    let java = id("java");
    let (mut s, c40) = we_add(&java);
    let c41 = s.accept();
    s.feed(c41, &ping(&java, "k3p0"));
    assert_eq!(pongs_on(&s, c40), [b"k3p0".to_vec()]);
    let c42 = s.accept();
    s.feed(c42, &ping(&java, "e11q"));
    let c43 = live_out(&s);
    let ours = s.our_cookie(c43);
    s.feed(c42, &pong(&ours));
    let before = pongs_on(&s, c43).len();
    at(&mut s, 16.6);
    s.feed(c42, &ping(&java, "e11q")); // repeated, every 15 s
    let after = pongs_on(&s, c43);
    assert_eq!(after.len(), before + 1, "the repeated ping got no pong");
    assert_eq!(after.last().unwrap(), b"e11q");
    peer_is_satisfied(&mut s, c42, "JTC [T2]");
    assert!(matches!(s.presence(&java), Presence::Online(_)));
}

/// §2 try 4: one cookie only; jtorchat did not take our first pong and keeps repeating its
/// (already answered) ping every 15 s on the same connection. The repeat is answered again.
#[test]
fn jtorchat_try_4_already_answered_ping_is_answered_again() {
    let java = id("java");
    let (mut s, c40) = we_add(&java);
    let c41 = s.accept();
    s.feed(c41, &ping(&java, "j4aa"));
    assert_eq!(pongs_on(&s, c40), [b"j4aa".to_vec()]);
    for (i, t) in [15.0, 30.0].iter().enumerate() {
        at(&mut s, *t);
        s.feed(c41, &ping(&java, "j4aa"));
        assert_eq!(pongs_on(&s, c40).len(), i + 2, "repeat {i} unanswered");
    }
    let ours = s.our_cookie(c40);
    s.feed(c41, &pong(&ours));
    peer_is_satisfied(&mut s, c41, "JTC [T2]");
    assert!(matches!(s.presence(&java), Presence::Online(_)));
    assert!(!s.closed(c40) && !s.closed(c41));
}

/// Python TorChat repeats its ping right after ours crossed it (capture §3 of wire-samples):
/// answering the repeat again is harmless, and never floods: one pong per repeat at most once
/// a second.
#[test]
fn python_repeats_are_answered_at_most_once_a_second() {
    let py = id("python");
    let (mut s, c1) = we_add(&py);
    let inc = s.accept();
    s.feed(inc, &ping(&py, "1859"));
    for _ in 0..50 {
        s.feed(inc, &ping(&py, "1859"));
    }
    assert_eq!(pongs_on(&s, c1).len(), 1);
    s.now = s.now + Duration::from_secs(2);
    s.feed(inc, &ping(&py, "1859"));
    assert_eq!(pongs_on(&s, c1).len(), 2);
}
