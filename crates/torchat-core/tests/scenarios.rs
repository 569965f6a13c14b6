//! Scenario tests: two or three cores back to back over a virtual network and clock.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{id, node, seed_node, Net};
use torchat_core::{BuddyKind, Delivery, Event, Presence, Timestamp};
use torchat_wire::{Packet, Status};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// a and b, each with the other as a permanent buddy, started.
fn pair() -> Net {
    let mut net = Net::new(vec![node("alice", 1), node("bob", 2)]);
    let (a, b) = (net.id(0), net.id(1));
    let now = net.now;
    net.peers[0].node.add_buddy(b, None, now).unwrap();
    net.peers[1].node.add_buddy(a, None, now).unwrap();
    net.peers[0].node.start(now);
    net.peers[1].node.start(now);
    net.run();
    net
}

/// No node ever writes on a connection the peer opened (ruby-torchat crashes on that).
fn assert_only_outgoing_writes(net: &Net) {
    for w in &net.wire {
        assert!(
            w.outgoing,
            "node {} wrote on an incoming connection: {:?}",
            w.from,
            w.packet()
        );
    }
}

/// Every outgoing connection: first line ping, at most one pong, and nothing but ping/pong
/// before the pong.
fn assert_handshake_discipline(net: &Net) {
    let mut per_conn: std::collections::BTreeMap<_, Vec<Packet>> = Default::default();
    for w in &net.wire {
        per_conn
            .entry((w.from, w.gen, w.conn))
            .or_default()
            .push(w.packet());
    }
    for ((from, _, conn), ps) in per_conn {
        assert!(
            matches!(ps[0], Packet::Ping { .. }),
            "{from}/{conn}: first line {:?}",
            ps[0]
        );
        let pongs = ps
            .iter()
            .filter(|p| matches!(p, Packet::Pong { .. }))
            .count();
        assert!(pongs <= 1, "{from}/{conn}: {pongs} pongs");
        let pong_at = ps.iter().position(|p| matches!(p, Packet::Pong { .. }));
        let first_other = ps
            .iter()
            .position(|p| !matches!(p, Packet::Ping { .. } | Packet::Pong { .. }));
        if let Some(o) = first_other {
            assert!(
                pong_at.is_some_and(|p| p < o),
                "{from}/{conn}: info before pong: {ps:?}"
            );
        }
    }
}

#[test]
fn handshake_brings_both_online_with_the_right_sequence() {
    let net = pair();
    assert!(net.online(0, 1) && net.online(1, 0));
    let a_to_b = net.texts(0, 1);
    let cmds: Vec<&str> = a_to_b
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    // ping, pong, then the info sequence in the order the reference client expects.
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
            "add_me",
            "status"
        ]
    );
    assert!(a_to_b.contains(
        &"supports groupchat torchat_signed torchat_file_resume torchat_delayed torchat_sync"
            .to_owned()
    ));
    assert_handshake_discipline(&net);
    assert_only_outgoing_writes(&net);
    // Each side learned the other's profile.
    let info = net.peers[0].node.buddy(&net.id(1)).unwrap().info;
    assert_eq!(info.profile_name.as_deref(), Some(&b"bob"[..]));
    assert_eq!(info.client.as_deref(), Some(&b"torchat"[..]));
    assert!(net.peers[0].node.supports(&net.id(1), "groupchat"));
    // Two connections per buddy, no more.
    assert_eq!(net.peers[0].node.connection_count(), 2);
    assert_eq!(net.peers[1].node.connection_count(), 2);
}

#[test]
fn messages_flow_both_ways_and_are_persisted_first() {
    let mut net = pair();
    let now = net.now;
    let (a, b) = (net.id(0), net.id(1));
    let mid = net.peers[0]
        .node
        .send_message(&b, "hi bob\nsecond line".into(), now)
        .unwrap();
    net.peers[1]
        .node
        .send_message(&a, "hi alice".into(), now)
        .unwrap();
    net.run();
    assert_eq!(net.texts_received(1), ["hi bob\nsecond line"]);
    assert_eq!(net.texts_received(0), ["hi alice"]);
    // The record came before the message was handed to the network.
    let recs = &net.peers[0].records;
    assert!(recs.iter().any(|r| matches!(r, torchat_core::Record::MessageOut { id, state: Delivery::Sent, .. } if *id == mid)));
    assert!(net
        .events(0)
        .iter()
        .any(|e| matches!(e, Event::Delivery { id, state: Delivery::Sent, .. } if *id == mid)));
    // Between torchat nodes (torchat_sync): the message carries its id and time, and the
    // receiver acknowledges it once it is stored.
    let line = format!(
        "sync_message {mid} {} hi bob\\nsecond line",
        now.as_millis()
    );
    assert!(net.texts(0, 1).contains(&line), "{:?}", net.texts(0, 1));
    net.advance(secs(1));
    assert!(net
        .texts(1, 0)
        .iter()
        .any(|l| l.starts_with("sync_ack ") && l.contains(&mid.to_string())));
    assert!(net.events(0).iter().any(
        |e| matches!(e, Event::Delivery { id, state: Delivery::Delivered, .. } if *id == mid)
    ));
}

#[test]
fn offline_messages_are_queued_then_delivered_once_with_their_time() {
    let mut net = Net::new(vec![node("alice", 1), node("bob", 2)]);
    let (a, b) = (net.id(0), net.id(1));
    net.set_down(0, 1, true);
    let now = net.now;
    net.peers[0].node.add_buddy(b.clone(), None, now).unwrap();
    net.peers[0].node.start(now);
    net.run();
    let written = now;
    let m1 = net.peers[0]
        .node
        .send_message(&b, "first".into(), now)
        .unwrap();
    let _m2 = net.peers[0]
        .node
        .send_message(&b, "second".into(), now)
        .unwrap();
    net.run();
    assert!(net
        .events(0)
        .iter()
        .any(|e| matches!(e, Event::Delivery { id, state: Delivery::Queued, .. } if *id == m1)));
    assert_eq!(net.peers[0].node.buddy(&b).unwrap().queued, 2);
    // Bob comes up some minutes later and adds alice.
    net.advance(secs(200));
    net.set_down(0, 1, false);
    let now = net.now;
    net.peers[1].node.add_buddy(a, None, now).unwrap();
    net.peers[1].node.start(now);
    net.advance(secs(5));
    // Between torchat nodes: no prefix, the original time instead.
    assert_eq!(net.texts_received(1), ["first", "second"]);
    let times: Vec<u64> = net
        .events(1)
        .iter()
        .filter_map(|e| match e {
            Event::MessageReceived { at, .. } => Some(at.as_millis()),
            _ => None,
        })
        .collect();
    assert_eq!(
        times,
        [written.as_millis(); 2],
        "written 200 s before they arrived"
    );
    assert_eq!(net.peers[0].node.buddy(&b).unwrap().queued, 0);
    // Exactly once, even across later reconnects.
    net.cut(0, 1);
    net.advance(secs(900));
    assert!(net.online(0, 1));
    assert_eq!(net.texts_received(1).len(), 2);
    assert!(net
        .events(0)
        .iter()
        .any(|e| matches!(e, Event::Delivery { id, state: Delivery::Delivered, .. } if *id == m1)));
}

#[test]
fn offline_messages_to_a_legacy_peer_are_sent_once_as_delayed() {
    let mut net = Net::new(vec![node("alice", 1), seed_node("bob", 2)]);
    let (a, b) = (net.id(0), net.id(1));
    net.set_down(0, 1, true);
    let now = net.now;
    net.peers[0].node.add_buddy(b.clone(), None, now).unwrap();
    net.peers[0].node.start(now);
    net.run();
    let m1 = net.peers[0]
        .node
        .send_message(&b, "first".into(), now)
        .unwrap();
    let _m2 = net.peers[0]
        .node
        .send_message(&b, "second".into(), now)
        .unwrap();
    net.run();
    assert!(net
        .events(0)
        .iter()
        .any(|e| matches!(e, Event::Delivery { id, state: Delivery::Queued, .. } if *id == m1)));
    assert_eq!(net.peers[0].node.buddy(&b).unwrap().queued, 2);
    let now_written = now;
    // Bob comes up some minutes later and adds alice.
    net.advance(secs(200));
    net.set_down(0, 1, false);
    let now = net.now;
    net.peers[1].node.add_buddy(a, None, now).unwrap();
    net.peers[1].node.start(now);
    net.advance(secs(5));
    // Between torchat nodes the text arrives as written, with the time it was written
    // (extension torchat_delayed; a legacy peer gets "[delayed] first", see handshake.rs).
    assert_eq!(net.texts_received(1), ["first", "second"]);
    let times: Vec<Timestamp> = net
        .events(1)
        .iter()
        .filter_map(|e| match e {
            Event::MessageReceived { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    assert_eq!(times, [now_written, now_written]);
    assert_eq!(net.peers[0].node.buddy(&b).unwrap().queued, 0);
    // Exactly once, even across later reconnects.
    net.cut(0, 1);
    net.advance(secs(900));
    assert!(net.online(0, 1));
    assert_eq!(net.texts_received(1).len(), 2);
    assert!(net
        .events(0)
        .iter()
        .any(|e| matches!(e, Event::Delivery { id, state: Delivery::Sent, .. } if *id == m1)));
}

#[test]
fn keepalive_keeps_an_idle_pair_connected_for_an_hour() {
    let mut net = pair();
    net.advance(secs(3600));
    assert!(net.online(0, 1) && net.online(1, 0));
    // Status keepalives at most 120 s apart, after the handshake.
    let times: Vec<u64> = net
        .lines(0, 1)
        .iter()
        .filter(|w| matches!(w.packet(), Packet::Status(_)))
        .map(|w| w.at.as_millis())
        .collect();
    assert!(times.len() >= 30, "{} keepalives", times.len());
    for w in times.windows(2) {
        assert!(w[1] - w[0] <= 120_000, "gap {} ms", w[1] - w[0]);
    }
    // No reconnects happened.
    assert_eq!(net.conns_opened(0, 1).len(), 1);
}

#[test]
fn silence_disconnects_then_backoff_reconnects() {
    let mut net = pair();
    // Traffic vanishes without a close (a dead circuit).
    net.blackhole.insert((0, 1));
    net.advance(secs(239));
    assert!(net.online(0, 1));
    net.advance(secs(2));
    assert!(
        !net.online(0, 1),
        "silent buddy must be dropped after 240 s"
    );
    assert!(net.events(0).iter().any(|e| matches!(
        e,
        Event::Misbehaviour {
            what: "silent for too long",
            ..
        }
    )));
    net.blackhole.clear();
    net.advance(secs(60));
    assert!(net.online(0, 1) && net.online(1, 0));
}

#[test]
fn reconnect_backoff_grows_randomised_and_is_reset_by_a_ping() {
    let mut net = Net::new(vec![node("alice", 7), node("bob", 8)]);
    let b = net.id(1);
    net.set_down(0, 1, true);
    let now = net.now;
    net.peers[0].node.add_buddy(b, None, now).unwrap();
    net.peers[0].node.start(now);
    net.advance(secs(3600));
    let first_hour = net.conns_opened(0, 1).len();
    // Added within the hour: 2 s doubling to a 60 s cap, ±25 %: about one a minute.
    assert!((50..=80).contains(&first_hour), "{first_hour} attempts");
    net.advance(secs(3600));
    let second_hour = net.conns_opened(0, 1).len() - first_hour;
    // Not seen for an hour: the cap is 600 s — but attempts never stop.
    assert!((5..=12).contains(&second_hour), "{second_hour} attempts");
    // Bob appears and pings alice: she connects back at once despite a long backoff.
    net.set_down(0, 1, false);
    let (a, now) = (net.id(0), net.now);
    net.peers[1].node.add_buddy(a, None, now).unwrap();
    net.peers[1].node.start(now);
    net.advance(secs(1));
    assert!(net.online(0, 1) && net.online(1, 0));
}

#[test]
fn a_strangers_add_me_is_a_request_until_accepted() {
    let mut net = Net::new(vec![node("alice", 1), node("carol", 3)]);
    let (a, c) = (net.id(0), net.id(1));
    let now = net.now;
    // Carol knows alice; alice does not know carol.
    net.peers[1].node.add_buddy(a.clone(), None, now).unwrap();
    net.peers[0].node.start(now);
    net.peers[1].node.start(now);
    net.run();
    let now = net.now;
    net.peers[1]
        .node
        .send_message(&a, "hi, it is carol".into(), now)
        .unwrap();
    net.run();
    // Alice connected back; carol's add_me and message are a contact request, not a buddy
    // and not a conversation (Python TorChat would have made carol permanent at once).
    assert!(net.online(0, 1));
    assert_eq!(
        net.peers[0].node.buddy(&c).unwrap().kind,
        BuddyKind::Temporary
    );
    assert!(net.texts_received(0).is_empty());
    let r = net.peers[0].node.request(&c).expect("a request");
    assert!(r.added_me);
    assert_eq!(r.messages.len(), 1);
    assert!(!net.events(0).iter().any(|e| matches!(
        e,
        Event::AddedUs { .. }
            | Event::BuddyList {
                kind: Some(BuddyKind::Permanent),
                ..
            }
    )));
    // Alice accepts: carol is permanent, the held message moves into the conversation with
    // its arrival time, and carol is told with add_me.
    let held_at = r.messages[0].at;
    let now = net.now + secs(30);
    net.advance(secs(30));
    net.peers[0].node.accept_request(&c, None, now).unwrap();
    net.run();
    assert_eq!(
        net.peers[0].node.buddy(&c).unwrap().kind,
        BuddyKind::Permanent
    );
    assert!(net.peers[0].node.request(&c).is_none());
    assert_eq!(net.texts_received(0), ["hi, it is carol"]);
    assert!(net
        .events(0)
        .iter()
        .any(|e| matches!(e, Event::MessageReceived { at, .. } if *at == held_at && *at < now)));
    assert!(net.texts(0, 1).iter().any(|l| l.starts_with("add_me")));
    assert_handshake_discipline(&net);
    // Carol removes alice: alice removes carol and disconnects.
    let now = net.now;
    net.peers[1].node.remove_buddy(&a, now).unwrap();
    net.run();
    assert!(net.peers[0].node.buddy(&c).is_none());
    assert!(net
        .events(0)
        .iter()
        .any(|e| matches!(e, Event::RemovedUs { id } if *id == c)));
    assert_eq!(net.peers[0].node.connection_count(), 0);
}

#[test]
fn temporary_buddy_gets_no_add_me() {
    let mut net = Net::new(vec![node("alice", 1), node("dave", 4)]);
    let a = net.id(0);
    let now = net.now;
    net.peers[1].node.add_buddy(a, None, now).unwrap();
    // Alice never adds dave; we look at what alice sends before any add_me from dave arrives.
    net.peers[1].node.start(now);
    net.run();
    let first_session: Vec<String> = net.texts(0, 1);
    let add_me_pos = first_session.iter().position(|l| l.starts_with("add_me"));
    let status_pos = first_session
        .iter()
        .position(|l| l.starts_with("status"))
        .unwrap();
    // Alice's handshake info ends with status and has no add_me before it (dave was temporary).
    assert!(
        add_me_pos.is_none_or(|p| p > status_pos),
        "{first_session:?}"
    );
}

#[test]
fn blocked_id_is_refused_at_ping_time() {
    let mut net = Net::new(vec![node("alice", 1), node("mallory", 5)]);
    let (a, m) = (net.id(0), net.id(1));
    let now = net.now;
    net.peers[0].node.block(m.clone(), now).unwrap();
    net.peers[1].node.add_buddy(a, None, now).unwrap();
    net.peers[0].node.start(now);
    net.peers[1].node.start(now);
    net.advance(secs(600));
    assert!(!net.online(1, 0));
    assert!(
        net.lines(0, 1).is_empty(),
        "alice never connects to a blocked id"
    );
    assert!(net.peers[0].node.stats().refused_pings > 0);
    assert_eq!(
        net.peers[0].node.buddy(&m).unwrap().kind,
        BuddyKind::Blocked
    );
}

#[test]
fn user_commands_validate() {
    let mut net = pair();
    let now = net.now;
    let (a, b) = (net.id(0), net.id(1));
    use torchat_core::CommandError::*;
    assert_eq!(
        net.peers[0].node.add_buddy(a.clone(), None, now),
        Err(OwnId)
    );
    assert_eq!(net.peers[0].node.send_message(&b, vec![], now), Err(Empty));
    assert_eq!(
        net.peers[0]
            .node
            .send_message(&id("nobody"), b"x".to_vec(), now),
        Err(NotABuddy)
    );
    net.peers[0].node.block(b.clone(), now).unwrap();
    net.run();
    assert_eq!(
        net.peers[0].node.send_message(&b, b"x".to_vec(), now),
        Err(Blocked)
    );
    assert!(!net.online(1, 0));
    net.peers[0].node.unblock(b.clone(), now).unwrap();
    net.advance(secs(30));
    assert!(net.online(0, 1));
}

#[test]
fn queue_is_bounded_and_refuses_rather_than_drops() {
    let mut a = node("alice", 1);
    let now = torchat_core::Timestamp::from_millis(common::T0);
    let b = id("bob");
    a.add_buddy(b.clone(), None, now).unwrap();
    let max = a.config().max_queued_per_buddy;
    for i in 0..max {
        a.send_message(&b, format!("m{i}").into_bytes(), now)
            .unwrap();
    }
    assert_eq!(
        a.send_message(&b, b"one too many".to_vec(), now),
        Err(torchat_core::CommandError::QueueFull)
    );
    assert_eq!(a.buddy(&b).unwrap().queued, max);
}

#[test]
fn status_and_profile_changes_reach_buddies() {
    let mut net = pair();
    net.peers[0].node.set_status(Status::Away);
    net.peers[0]
        .node
        .set_profile(b"Alice".to_vec(), b"on a boat".to_vec());
    net.run();
    let b = net.peers[1].node.buddy(&net.id(0)).unwrap();
    assert_eq!(b.presence, Presence::Online(Status::Away));
    assert_eq!(b.info.profile_name.as_deref(), Some(&b"Alice"[..]));
    assert_eq!(b.info.profile_text.as_deref(), Some(&b"on a boat"[..]));
}

#[test]
fn three_nodes_full_mesh_and_restart_of_one() {
    let mut net = Net::new(vec![node("alice", 1), node("bob", 2), node("carol", 3)]);
    let ids: Vec<_> = (0..3).map(|i| net.id(i)).collect();
    let now = net.now;
    for i in 0..3 {
        for (j, other) in ids.iter().enumerate() {
            if i != j {
                net.peers[i]
                    .node
                    .add_buddy(other.clone(), None, now)
                    .unwrap();
            }
        }
        net.peers[i].node.start(now);
    }
    net.run();
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                assert!(net.online(i, j), "{i} -> {j}");
            }
        }
    }
    // Carol "restarts": her links drop, a fresh node with the same id comes back.
    let mut fresh = node("carol", 33);
    let now = net.now;
    fresh.add_buddy(ids[0].clone(), None, now).unwrap();
    fresh.add_buddy(ids[1].clone(), None, now).unwrap();
    fresh.start(now);
    net.restart(2, fresh);
    net.advance(secs(120));
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                assert!(net.online(i, j), "after restart {i} -> {j}");
            }
        }
    }
    assert_handshake_discipline(&net);
    assert_only_outgoing_writes(&net);
}
