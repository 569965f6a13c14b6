//! Links that come back: reconnection timing after drops, restarts, refusals and outages,
//! and no lockout by floods of idle connections. Two or three cores over the virtual network
//! of `common`, virtual time.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{node, Net};
use torchat_core::{Event, Presence};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Alice and bob, buddies of each other, online.
fn online_pair() -> Net {
    let mut net = Net::new(vec![node("alice", 1), node("bob", 2)]);
    let (a, b, now) = (net.id(0), net.id(1), net.now);
    net.peers[0].node.add_buddy(b, None, now).unwrap();
    net.peers[1].node.add_buddy(a, None, now).unwrap();
    net.peers[0].node.start(now);
    net.peers[1].node.start(now);
    net.run();
    assert!(net.online(0, 1) && net.online(1, 0));
    net
}

/// Issue "links that come back", fact 3: one refused connect-back used to leave both
/// connections up and both sides in "handshake" until the 150 s handshake timeout: the
/// cookie of alice's ping was forgotten with the failed connection, so bob's later connection
/// carried a ping but never the pong alice waited for, and her re-pings went unanswered.
#[test]
fn a_refused_connect_back_costs_seconds_not_a_timeout() {
    let mut net = Net::new(vec![node("alice", 1), node("bob", 2)]);
    let (a, b, now) = (net.id(0), net.id(1), net.now);
    net.peers[1].node.add_buddy(a, None, now).unwrap();
    net.peers[0].node.add_buddy(b, None, now).unwrap();
    // Alice dials first; bob's connect-back to her is refused once.
    net.refuse_once.insert((1, 0));
    net.peers[0].node.start(now);
    net.run();
    net.peers[1].node.start(now);
    let took = net
        .time_until_online(0, 1, secs(200))
        .expect("online at all");
    assert!(took <= secs(5), "took {took:?}");
}

/// A session that drops (both ends see the close) is re-established 1–3 s later.
#[test]
fn a_dropped_session_is_back_within_three_seconds() {
    let mut net = online_pair();
    for round in 0..20 {
        net.cut(0, 1);
        assert!(!net.online(0, 1));
        let took = net.time_until_online(0, 1, secs(60)).expect("back");
        assert!(took <= secs(3), "round {round}: took {took:?}");
        net.advance(secs(5));
    }
}

/// A peer that restarts and does not dial first (jtorchat never did): we dial it, soon,
/// also when its first seconds refused us. Before, the three refused attempts of the first
/// 12 ms pushed the backoff to a minute or more, and the backoff was not reset by the
/// session that had been up.
#[test]
fn a_restarted_peer_that_never_dials_first_is_redialled_within_seconds() {
    let mut net = online_pair();
    for round in 0..10 {
        // Bob's program restarts: 8 s during which connects to him are refused, then a fresh
        // core that does not know alice (so it never dials her).
        net.refuse.insert((0, 1));
        net.restart(1, node("bob", 100 + round));
        net.advance(secs(8));
        net.refuse.remove(&(0, 1));
        let took = net.time_until_online(0, 1, secs(300)).expect("back");
        // Refused attempts back off 2, 4, 8 s (±25 %); the refusal cap is 10 s.
        assert!(took <= secs(11), "round {round}: took {took:?}");
        let b = net.id(1);
        assert!(net.peers[0].node.buddy(&b).unwrap().queued == 0);
    }
}

/// Failures before a session do not count after it: a buddy that was unreachable for a long
/// time, then online, then drops, is retried after 1–3 s, not after its old backoff.
#[test]
fn the_backoff_is_reset_by_a_session() {
    let mut net = Net::new(vec![node("alice", 1), node("bob", 2)]);
    let (b, now) = (net.id(1), net.now);
    // Only alice dials: bob does not have her on his list.
    net.peers[0].node.add_buddy(b, None, now).unwrap();
    net.peers[0].node.start(now);
    net.set_down(0, 1, true);
    net.advance(secs(7200));
    net.set_down(0, 1, false);
    net.time_until_online(0, 1, secs(800))
        .expect("alice's next attempt gets through");
    net.cut(0, 1);
    let took = net.time_until_online(0, 1, secs(60)).expect("back");
    assert!(took <= secs(3), "took {took:?}");
}

/// The network coming back (the transport says so) brings every offline buddy back at once,
/// whatever their backoff, spread over a few seconds.
#[test]
fn network_up_retries_every_offline_buddy_soon() {
    let mut net = Net::new(vec![node("alice", 1), node("bob", 2), node("carol", 3)]);
    let now = net.now;
    for j in [1, 2] {
        let id = net.id(j);
        net.peers[0].node.add_buddy(id, None, now).unwrap();
        net.peers[0].node.start(now);
        net.set_down(0, j, true);
    }
    net.advance(secs(7200)); // the backoff is at its 600 s cap
    net.set_down(0, 1, false);
    net.set_down(0, 2, false);
    let now = net.now;
    net.peers[0].node.network_up(now);
    net.advance(secs(6));
    assert!(net.online(0, 1) && net.online(0, 2));
}

/// Issue "links that come back", fact 4: 64 idle connections (reopened as soon as they are
/// closed) used to keep every new peer out. Now a buddy gets through within seconds.
#[test]
fn a_flood_of_idle_connections_does_not_lock_a_buddy_out() {
    let mut net = Net::new(vec![node("alice", 1), node("bob", 2)]);
    let (a, b, now) = (net.id(0), net.id(1), net.now);
    // Bob is not up yet: alice's first attempt is refused.
    net.refuse.insert((0, 1));
    net.peers[0].node.add_buddy(b.clone(), None, now).unwrap();
    net.peers[0].node.start(now);
    net.run();
    // Mallory fills alice's table with idle connections…
    let max = net.peers[0].node.config().max_unauthenticated;
    for _ in 0..max {
        net.peers[0].node.accept(net.now).expect("room");
    }
    // …and keeps opening ten more a second while bob comes up and dials alice (who needs an
    // incoming connection from bob to let him in).
    net.refuse.remove(&(0, 1));
    net.peers[1].node.add_buddy(a, None, net.now).unwrap();
    net.peers[1].node.start(net.now);
    let mut took = None;
    for tick in 0..100u32 {
        let _ = net.peers[0].node.accept(net.now);
        net.advance(Duration::from_millis(100));
        if net.online(0, 1) && net.online(1, 0) {
            took = Some(Duration::from_millis(100) * (tick + 1));
            break;
        }
    }
    let took = took.expect("bob did not get online within 10 s of the flood");
    assert!(took <= secs(2), "took {took:?}");
    assert!(net.peers[0].node.connection_count() <= max + 4);
    // The flood's connections never pinged: closed within the ping timeout.
    net.advance(secs(31));
    assert!(net.peers[0].node.connection_count() <= 4);
    assert!(matches!(
        net.peers[0].node.buddy(&b).unwrap().presence,
        Presence::Online(_)
    ));
    assert!(net.peers[0].node.stats().evicted_connections > 0);
}

/// Messages queued for a buddy while it is down (its program was killed) reach it once it is
/// back, whether it dials first or we do.
#[test]
fn messages_queued_while_a_buddy_was_down_reach_it_when_it_is_back() {
    for bob_dials_first in [true, false] {
        let mut net = online_pair();
        let (a, b) = (net.id(0), net.id(1));
        net.refuse.insert((0, 1));
        net.restart(1, node("bob", 99));
        let now = net.now;
        for k in 0..5 {
            let id = net.peers[0]
                .node
                .send_message(&b, format!("while down {k}").into_bytes(), now)
                .unwrap();
            let _ = id;
        }
        net.run();
        assert_eq!(net.peers[0].node.buddy(&b).unwrap().queued, 5);
        net.advance(secs(3));
        net.refuse.remove(&(0, 1));
        if bob_dials_first {
            let now = net.now;
            net.peers[1].node.add_buddy(a.clone(), None, now).unwrap();
            net.peers[1].node.start(now);
        }
        net.time_until_online(0, 1, secs(60)).expect("back");
        net.advance(secs(1));
        // When bob has not added alice back, her messages arrive as a contact request.
        let mut got = net.texts_received(1);
        got.extend(net.peers[1].events.iter().filter_map(|e| match e {
            Event::RequestMessage { text, .. } => Some(String::from_utf8_lossy(text).into_owned()),
            _ => None,
        }));
        for k in 0..5 {
            // Between torchat nodes a late message carries its time as metadata
            // (`torchat_delayed`), not a "[delayed] " prefix.
            let t = format!("while down {k}");
            assert!(
                got.contains(&t),
                "bob dials first: {bob_dials_first}; bob got {got:?}"
            );
        }
    }
}
