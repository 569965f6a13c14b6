//! The handshake against scripted peers: the quirks of real clients, forged and hostile input,
//! timeouts, and replays of the real captures in wire-samples.txt.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::script::{peer_pings, ping, pong, Script};
use common::{id, T0};
use torchat_core::{ConnId, Event, Node, Presence, Timestamp};
use torchat_wire::transcript;
use torchat_wire::{OnionId, Packet};

#[test]
fn connect_back_ping_then_exactly_one_pong() {
    let mut s = Script::new("us");
    let p = id("peer");
    let (inc, out) = peer_pings(&mut s, &p, "c00kie");
    let sent = s.sent_on(out);
    assert!(matches!(&sent[0], Packet::Ping { from, .. } if from == s.node.own_id()));
    assert_eq!(
        sent[1],
        Packet::Pong {
            cookie: b"c00kie".to_vec()
        }
    );
    assert_eq!(
        sent.len(),
        2,
        "nothing else before the peer authenticates: {sent:?}"
    );
    assert_eq!(s.presence(&p), Presence::Handshake);
    // Python TorChat repeats its ping (same cookie): no second pong.
    s.feed(inc, &ping(&p, "c00kie"));
    assert_eq!(s.sent_on(out).len(), 2);
    // The peer authenticates with our cookie: info follows, in order, then status.
    let cookie = s.our_cookie(out);
    s.feed(inc, &pong(&cookie));
    let cmds: Vec<String> = s
        .sent_on(out)
        .iter()
        .map(|p| p.command().to_owned())
        .collect();
    assert_eq!(
        cmds,
        [
            "ping",
            "pong",
            "client",
            "version",
            "supports",
            "profile_name",
            "profile_text",
            "status"
        ]
    );
    // Online only after its first status.
    assert_eq!(s.presence(&p), Presence::Handshake);
    s.feed(inc, b"status away");
    assert_eq!(s.presence(&p), Presence::Online(torchat_wire::Status::Away));
    assert!(
        !s.wrote_on(inc),
        "never write on the connection the peer opened"
    );
}

#[test]
fn jtorchat_double_pong_keeps_the_connection() {
    let mut s = Script::new("us");
    let p = id("java");
    let (inc, out) = peer_pings(&mut s, &p, "x");
    let cookie = s.our_cookie(out);
    s.feed(inc, &pong(&cookie));
    s.feed(inc, &pong(&cookie));
    s.feed(inc, b"status available");
    assert!(matches!(s.presence(&p), Presence::Online(_)));
    assert!(!s.closed(inc) && !s.closed(out));
    assert_eq!(s.node.stats().ignored_pongs, 1);
}

#[test]
fn only_a_pong_with_our_cookie_on_the_pinging_connection_authenticates() {
    let mut s = Script::new("us");
    let p = id("peer");
    let q = id("other");
    let (inc, out) = peer_pings(&mut s, &p, "a");
    let cookie_p = s.our_cookie(out);
    // Wrong cookie: ignored, not authenticated, not closed.
    s.feed(inc, &pong(b"guess"));
    s.feed(inc, b"status available");
    assert_eq!(s.presence(&p), Presence::Handshake);
    // The right cookie on a connection whose ping named someone else: no.
    let (inc_q, _) = peer_pings(&mut s, &q, "b");
    s.feed(inc_q, &pong(&cookie_p));
    s.feed(inc_q, b"status available");
    assert_eq!(s.presence(&q), Presence::Handshake);
    assert_eq!(s.presence(&p), Presence::Handshake);
    // A pong on a connection that never pinged: no.
    let bare = s.accept();
    s.feed(bare, &pong(&cookie_p));
    assert_eq!(s.presence(&p), Presence::Handshake);
    // Nothing but ping/pong is acted on before authentication.
    s.feed(inc, b"message you should not see this");
    s.feed(inc, b"add_me");
    assert!(!s
        .events()
        .iter()
        .any(|e| matches!(e, Event::MessageReceived { .. } | Event::AddedUs { .. })));
    // Finally the real pong.
    s.feed(inc, &pong(&cookie_p));
    s.feed(inc, b"status available");
    assert!(matches!(s.presence(&p), Presence::Online(_)));
}

#[test]
fn forged_ping_for_a_connected_buddy_does_not_disturb_it() {
    let mut s = Script::new("us");
    let b = id("buddy");
    let now = s.now;
    s.node.add_buddy(b.clone(), None, now).unwrap();
    s.node.start(now);
    s.drain();
    let out = s.connects()[0].0;
    let inc = s.accept();
    s.feed(inc, &ping(&b, "real"));
    let cookie = s.our_cookie(out);
    s.feed(inc, &pong(&cookie));
    s.feed(inc, b"status available");
    assert!(matches!(s.presence(&b), Presence::Online(_)));
    let sent_before = s.sent_on(out).len();
    // Mallory opens a connection claiming to be the buddy, with her own cookie, then guesses.
    let forged = s.accept();
    s.feed(forged, &ping(&b, "mallory"));
    s.feed(forged, &pong(b"0123456789abcdef"));
    s.feed(forged, b"message forged");
    assert!(matches!(s.presence(&b), Presence::Online(_)));
    assert!(!s.closed(inc) && !s.closed(out));
    // No pong for mallory's cookie went to the real buddy, nothing new was sent at all.
    assert_eq!(s.sent_on(out).len(), sent_before);
    assert!(!s
        .events()
        .iter()
        .any(|e| matches!(e, Event::MessageReceived { .. })));
    // The genuine buddy proving itself on a new connection replaces the old one.
    let again = s.accept();
    s.feed(again, &ping(&b, "real"));
    s.feed(again, &pong(&cookie));
    assert!(s.closed(inc));
    s.feed(again, b"message hello");
    assert!(s
        .events()
        .iter()
        .any(|e| matches!(e, Event::MessageReceived { text, .. } if text == b"hello")));
}

#[test]
fn pings_that_must_be_refused() {
    let mut s = Script::new("us");
    let me = s.node.own_id().clone();
    // Our own id.
    let c = s.accept();
    s.feed(c, &ping(&me, "x"));
    assert!(s.closed(c));
    // A second id on the same connection.
    let c2 = s.accept();
    s.feed(c2, &ping(&id("first"), "x"));
    s.feed(c2, &ping(&id("second"), "y"));
    assert!(s.closed(c2));
    // A malformed ping is just a bad line.
    let c3 = s.accept();
    s.feed(c3, b"ping notanid x");
    assert!(!s.closed(c3));
    assert_eq!(s.node.stats().refused_pings, 2);
    assert!(s.connects().iter().all(|(_, to)| *to != me));
}

#[test]
fn unknown_commands_get_not_implemented_after_auth_only() {
    let mut s = Script::new("us");
    let p = id("peer");
    let (inc, out) = peer_pings(&mut s, &p, "a");
    s.feed(inc, b"frobnicate before auth");
    assert!(!s
        .sent_on(out)
        .iter()
        .any(|p| matches!(p, Packet::NotImplemented(_))));
    let cookie = s.our_cookie(out);
    s.feed(inc, &pong(&cookie));
    s.feed(inc, b"frobnicate now");
    s.feed(inc, b"not_implemented");
    s.feed(inc, b"typing_start");
    let ni: Vec<_> = s
        .sent_on(out)
        .into_iter()
        .filter(|p| matches!(p, Packet::NotImplemented(_)))
        .collect();
    assert_eq!(ni, [Packet::NotImplemented(Some(b"frobnicate".to_vec()))]);
    assert!(!s.closed(inc));
}

#[test]
fn junk_before_auth_is_bounded() {
    let mut s = Script::new("us");
    let c = s.accept();
    s.feed(c, &ping(&id("peer"), "a"));
    for _ in 0..s.node.config().max_unauthenticated_lines {
        s.feed(c, b"status available");
    }
    assert!(!s.closed(c));
    s.feed(c, b"status available");
    assert!(s.closed(c));
}

#[test]
fn oversize_line_closes_the_connection() {
    let mut s = Script::new("us");
    let c = s.accept();
    let big = vec![b'a'; s.node.config().max_line + 1];
    let now = s.now;
    s.node.handle_data(c, &big, now);
    s.drain();
    assert!(s.closed(c));
    assert_eq!(s.node.stats().oversize_lines, 1);
}

#[test]
fn re_ping_until_authenticated_then_start_over() {
    let mut s = Script::new("us");
    let b = id("tcpascal");
    let now = s.now;
    s.node.add_buddy(b.clone(), None, now).unwrap();
    s.node.start(now);
    s.drain();
    let out = s.connects()[0].0;
    s.advance(Duration::from_secs(35));
    let pings = s
        .sent_on(out)
        .iter()
        .filter(|p| matches!(p, Packet::Ping { .. }))
        .count();
    assert_eq!(pings, 4, "initial ping + one every 10 s");
    let cookies: std::collections::BTreeSet<_> =
        s.sent_on(out).iter().map(|p| p.encode()).collect();
    assert_eq!(cookies.len(), 1, "same cookie on every re-ping");
    // The buddy never connects back: after the connect-back timeout we start over on a
    // fresh connection, at once — with the same cookie (one per buddy, as Python TorChat).
    s.advance(Duration::from_secs(60));
    assert!(s.closed(out), "handshake started over");
    assert_eq!(s.node.stats().handshake_restarts, 1);
    let (out2, _) = s.connects()[1].clone();
    assert!(!s.closed(out2));
    assert_eq!(s.our_cookie(out2), s.our_cookie(out));
}

#[test]
fn incoming_connections_must_ping_in_time_and_a_full_table_evicts_the_idlest() {
    let mut s = Script::new("us");
    let max = s.node.config().max_unauthenticated;
    let idle: Vec<_> = (0..max).map(|_| s.accept()).collect();
    // At the cap a new connection is still admitted: the oldest idle one makes room.
    let c = s.node.accept(s.now).expect("admitted at the cap");
    s.drain();
    assert!(s.closed(idle[0]) && !s.closed(idle[1]));
    assert_eq!(s.node.stats().evicted_connections, 1);
    // A connection that pinged (here: naming a stranger) outlives idle ones.
    s.feed(c, &ping(&id("stranger"), "x"));
    for _ in 0..max {
        s.node.accept(s.now).unwrap();
        s.drain();
    }
    assert!(
        !s.closed(c),
        "a connection that pinged is evicted after the idle ones"
    );
    // No ping within the ping timeout: closed.
    s.advance(Duration::from_secs(31));
    assert!(idle[1..].iter().all(|c| s.closed(*c)));
    assert!(!s.closed(c), "it pinged; it waits for its pong longer");
    s.advance(Duration::from_secs(90));
    assert!(s.closed(c), "no pong within the unauthenticated timeout");
}

#[test]
fn file_offers_are_offered_to_the_user_and_declined_on_the_right_connection() {
    let mut s = Script::new("us");
    let p = id("peer");
    let (inc, out) = peer_pings(&mut s, &p, "a");
    let cookie = s.our_cookie(out);
    s.feed(inc, &pong(&cookie));
    s.feed(inc, b"status available");
    let now = s.now;
    s.node.add_buddy(p.clone(), None, now).unwrap();
    s.drain();
    // The sender writes file packets on the connection WE opened.
    s.feed(out, b"filename 123 10 8192 notes.txt");
    let file = s
        .events()
        .iter()
        .find_map(|e| match e {
            Event::FileOffer { file, name, .. } if name == b"notes.txt" => Some(*file),
            _ => None,
        })
        .expect("the offer is shown");
    // Declining answers on our own connection, never on the peer's.
    let now = s.now;
    s.node.cancel_file(file, now).unwrap();
    s.drain();
    assert!(s
        .sent_on(out)
        .contains(&Packet::FileStopSending { id: "123".into() }));
    assert!(!s.wrote_on(inc));
}

// ----- replays of real captures -----

const SAMPLES: &str = include_str!("../../torchat-wire/tests/data/wire-samples.txt");

/// Replays what `peer` sent in a captured conversation against our node playing `us`, and
/// checks that we give that client what it needs.
fn replay(section: &str, us: &str, peer: &str, we_start: bool) {
    let lines = transcript::parse(SAMPLES).unwrap();
    let lines: Vec<_> = lines.into_iter().filter(|l| l.section == section).collect();
    let peer_id = OnionId::parse(peer).unwrap();
    let mut s = Script::with_node({
        let rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(9);
        Node::new(
            torchat_core::Config::new(OnionId::parse(us).unwrap()),
            Box::new(rng),
        )
    });
    if we_start {
        let now = s.now;
        s.node.add_buddy(peer_id.clone(), None, now).unwrap();
        s.node.start(now);
        s.drain();
    }
    let mut incoming: std::collections::BTreeMap<u32, ConnId> = Default::default();
    let mut peer_cookie = None;
    let mut session_conn = None;
    let mut first_msg = None;
    for l in lines.iter().filter(|l| l.from == peer && l.to == us) {
        // Only the opening: the first session, up to its first message after status.
        if let Some(c) = session_conn {
            if c != l.conn || !l.bytes.starts_with(b"message ") || first_msg.is_some() {
                continue;
            }
            first_msg = Some(l.bytes[8..].to_vec());
        }
        let inc = *incoming
            .entry(l.conn)
            .or_insert_with(|| s.node.accept(s.now).unwrap());
        let packet = Packet::decode(&l.bytes).unwrap();
        let line = match &packet {
            Packet::Ping { cookie, .. } => {
                peer_cookie = Some(cookie.clone());
                l.bytes.clone()
            }
            // The capture's pong carries the cookie of the client we replace: use ours.
            Packet::Pong { .. } => {
                let out = s.connects().last().unwrap().0;
                pong(&s.our_cookie(out))
            }
            _ => l.bytes.clone(),
        };
        s.now = Timestamp::from_millis(T0 + l.millis as u64);
        s.feed(inc, &line);
        if matches!(packet, Packet::Status(_)) && session_conn.is_none() {
            session_conn = Some(l.conn);
        }
    }
    let (out, to) = s.connects().last().cloned().unwrap();
    assert_eq!(to, peer_id);
    let sent = s.sent_on(out);
    // What the client needs: our ping first, exactly one pong with its cookie, info, status.
    assert!(
        matches!(&sent[0], Packet::Ping { .. }),
        "{section}: {sent:?}"
    );
    let pongs: Vec<_> = sent
        .iter()
        .filter(|p| matches!(p, Packet::Pong { .. }))
        .collect();
    assert_eq!(
        pongs,
        [&Packet::Pong {
            cookie: peer_cookie.unwrap()
        }],
        "{section}"
    );
    let cmds: Vec<&str> = sent.iter().map(|p| p.command()).collect();
    let expect_add_me = we_start;
    let mut want = vec![
        "client",
        "version",
        "supports",
        "profile_name",
        "profile_text",
    ];
    if expect_add_me {
        want.push("add_me");
    }
    want.push("status");
    let after_pong: Vec<&str> = cmds
        .iter()
        .skip_while(|c| **c != "pong")
        .skip(1)
        .copied()
        .filter(|c| *c != "not_implemented")
        .collect();
    assert_eq!(&after_pong[..want.len()], &want[..], "{section}: {cmds:?}");
    // Text packets always carry their space (jtorchat needs it), even when empty.
    for p in &sent {
        if let Packet::ProfileText(_) | Packet::ProfileName(_) = p {
            assert!(p
                .encode()
                .starts_with(format!("{} ", p.command()).as_bytes()));
        }
    }
    // Nobody gets not_implemented for a standard packet.
    assert!(
        !sent.iter().any(|p| matches!(p, Packet::NotImplemented(_))),
        "{section}: {sent:?}"
    );
    assert!(
        matches!(s.presence(&peer_id), Presence::Online(_)),
        "{section}"
    );
    for c in incoming.values() {
        assert!(!s.wrote_on(*c), "{section}: wrote on the peer's connection");
        assert!(!s.closed(*c), "{section}: closed the peer's connection");
    }
    // The peer's first message (if the opening has one) arrived intact: in the conversation
    // of a buddy, or held in the contact request of a stranger.
    if let Some(m) = first_msg {
        assert!(
            s.events().iter().any(|e| match e {
                Event::MessageReceived { text, .. } => we_start && *text == m,
                Event::RequestMessage { text, .. } => !we_start && *text == m,
                _ => false,
            }),
            "{section}: message not received"
        );
    }
}

#[test]
fn replay_ruby_opening_both_sides() {
    replay("1", "rubybbbbbbbbbbbb", "rubyaaaaaaaaaaaa", false);
    replay("1", "rubyaaaaaaaaaaaa", "rubybbbbbbbbbbbb", true);
    replay("2b", "rubycccccccccccc", "rubyaaaaaaaaaaaa", false);
}

#[test]
fn replay_python_opening_both_sides() {
    // Python TorChat pings twice on the same connection.
    replay("3", "pybbbbbbbbbbbbbb", "pyaaaaaaaaaaaaaa", false);
    replay("3", "pyaaaaaaaaaaaaaa", "pybbbbbbbbbbbbbb", true);
}

#[test]
fn replay_jtorchat_opening_both_sides() {
    // jtorchat: add_me without a space, version with a trailing space.
    replay("4", "javabbbbbbbbbbbb", "javaaaaaaaaaaaaa", false);
    replay("4", "javaaaaaaaaaaaaa", "javabbbbbbbbbbbb", true);
}

#[test]
fn replay_mixed_client_openings() {
    // jtorchat sends its pong twice; ruby-torchat dropped the link, we must not.
    replay("5b", "rubyaaaaaaaaaaaa", "javaaaaaaaaaaaaa", true);
    replay("5a", "rubyaaaaaaaaaaaa", "pyaaaaaaaaaaaaaa", true);
    replay("5a", "pyaaaaaaaaaaaaaa", "rubyaaaaaaaaaaaa", false);
    replay("5c", "pyaaaaaaaaaaaaaa", "javaaaaaaaaaaaaa", true);
    replay("5c", "javaaaaaaaaaaaaa", "pyaaaaaaaaaaaaaa", false);
}
