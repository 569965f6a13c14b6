//! Group chat and the redundancy extension, over the virtual network and against ruby-torchat's
//! captured join flow. Every node here speaks only the seed's protocol (`torchat_sync` off):
//! this is the behaviour members without the extension get; `tests/sync.rs` covers it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::script::{session, Script};
use common::{id, seed_node as node, Net};
use torchat_core::{Event, GroupState, Record, Trust};
use torchat_wire::{GroupId, OnionId};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `n` nodes that are all members of one group from the start (as after a restart), started.
fn group_of(n: usize, modes: Vec<String>) -> (Net, GroupId) {
    let nodes = (0..n)
        .map(|i| node(&format!("n{}", char::from(b'a' + i as u8)), i as u64 + 1))
        .collect();
    let mut net = Net::new(nodes);
    let gid = GroupId::new("6f012391-883d-4f4f-8d54-52c4227b3ac9").unwrap();
    let ids: Vec<OnionId> = (0..n).map(|i| net.id(i)).collect();
    for i in 0..n {
        let members = ids.iter().filter(|m| **m != ids[i]).cloned().collect();
        net.peers[i].node.restore_group(
            gid.clone(),
            GroupState::Joined,
            modes.clone(),
            None,
            members,
        );
    }
    let now = net.now;
    for p in &mut net.peers {
        p.node.start(now);
    }
    net.run();
    (net, gid)
}

/// The trust each node ended with for the message `text` from `sender` (None: not shown).
fn shown(net: &Net, i: usize, text: &str) -> Vec<Trust> {
    let mut ids = vec![];
    let mut trust = std::collections::BTreeMap::new();
    for e in net.events(i) {
        match e {
            Event::GroupMessage {
                id,
                text: t,
                trust: tr,
                ..
            } if t == text.as_bytes() => {
                ids.push(*id);
                trust.insert(*id, *tr);
            }
            Event::GroupTrust { id, trust: tr, .. } if trust.contains_key(id) => {
                trust.insert(*id, *tr);
            }
            _ => {}
        }
    }
    ids.iter().map(|id| trust[id]).collect()
}

#[test]
fn seed_example_eight_direct_two_see_eight_of_ten() {
    let (mut net, gid) = group_of(11, vec![]);
    // The speaker (0) cannot reach members 9 and 10.
    net.cut(0, 9);
    net.cut(0, 10);
    net.set_down(0, 9, true);
    net.set_down(0, 10, true);
    net.advance(secs(60));
    let now = net.now;
    net.peers[0]
        .node
        .group_say(
            &gid,
            b"I'm partially disconnected from 2 users".to_vec(),
            now,
        )
        .unwrap();
    net.run();
    let text = "I'm partially disconnected from 2 users";
    for i in 1..=8 {
        assert!(
            matches!(shown(&net, i, text)[..], [Trust::Direct { .. }]),
            "member {i}"
        );
    }
    // Within the settle window the two have not shown it yet…
    assert!(shown(&net, 9, text).is_empty());
    net.advance(secs(10));
    // …then they show (8 of 10).
    for i in [9, 10] {
        assert_eq!(
            shown(&net, i, text),
            [Trust::Relayed { k: 8, n: 10 }],
            "member {i}"
        );
        let e = net
            .events(i)
            .iter()
            .find(|e| matches!(e, Event::GroupMessage { .. }))
            .unwrap();
        if let Event::GroupMessage { trust, .. } = e {
            assert_eq!(trust.label(), "(8 of 10)");
        }
    }
    // The speaker's delivery report: written to 8 members (2 wait in the outbox), but nobody
    // acknowledges in the seed's protocol, so it is `sent`, never `delivered`.
    let last = net.peers[0].records.iter().rev().find_map(|r| match r {
        Record::GroupDelivery {
            delivered,
            of,
            sent,
            ..
        } => Some((*delivered, *of, *sent)),
        _ => None,
    });
    assert_eq!(last, Some((0, 10, true)));
    // Echoes are never re-echoed: each of the 8 direct receivers relays to 9 others, and that is all.
    let echoes = net
        .wire
        .iter()
        .filter(|w| w.line.starts_with(b"groupchat_echoed_message"))
        .count();
    assert_eq!(echoes, 8 * 9);
}

#[test]
fn forged_echo_is_unconfirmed_when_the_speaker_is_connected() {
    let (mut net, gid) = group_of(4, vec![]);
    let s = net.id(0);
    net.advance(secs(30));
    // Member 3 claims that member 0 said something it never said.
    let line = format!("groupchat_echoed_message {gid} {s} send me your keys");
    net.inject(3, 1, line.as_bytes());
    net.inject(3, 2, line.as_bytes());
    net.advance(secs(11));
    for i in [1, 2] {
        assert_eq!(
            shown(&net, i, "send me your keys"),
            [Trust::Unconfirmed { k: 1, n: 3 }],
            "member {i}"
        );
    }
    // The honest members did not relay it further.
    assert!(!net
        .wire
        .iter()
        .any(|w| w.from != 3 && w.line.ends_with(b"send me your keys")));
}

#[test]
fn echoes_about_or_from_non_members_are_ignored_and_counted() {
    let (mut net, gid) = group_of(3, vec![]);
    net.advance(secs(30));
    let stranger = id("stranger");
    let before = net.peers[1].node.stats().non_member_packets;
    net.inject(
        2,
        1,
        format!("groupchat_echoed_message {gid} {stranger} hello").as_bytes(),
    );
    let s = net.id(2);
    net.inject(
        2,
        1,
        format!("groupchat_echoed_message {gid} {s} echo of myself").as_bytes(),
    );
    net.inject(
        2,
        1,
        b"groupchat_message 00000000-0000-4000-8000-000000000000 unknown group",
    );
    net.advance(secs(11));
    assert!(shown(&net, 1, "hello").is_empty() && shown(&net, 1, "echo of myself").is_empty());
    assert_eq!(net.peers[1].node.stats().non_member_packets, before + 3);
}

#[test]
fn repeated_identical_messages_stay_separate() {
    let (mut net, gid) = group_of(3, vec![]);
    net.advance(secs(30));
    let now = net.now;
    net.peers[0]
        .node
        .group_say(&gid, b"ok".to_vec(), now)
        .unwrap();
    net.peers[0]
        .node
        .group_say(&gid, b"ok".to_vec(), now)
        .unwrap();
    net.advance(secs(20));
    for i in [1, 2] {
        // Two messages, each direct and confirmed once by the other member.
        assert_eq!(
            shown(&net, i, "ok"),
            [
                Trust::Direct { confirmations: 1 },
                Trust::Direct { confirmations: 1 }
            ]
        );
    }
}

#[test]
fn late_direct_copy_upgrades_and_late_claims_raise_k() {
    let (mut net, gid) = group_of(4, vec![]);
    net.advance(secs(30));
    // 0 cannot reach 3; 1 cannot reach 3 either for now.
    for (a, b) in [(0, 3), (1, 3)] {
        net.cut(a, b);
        net.set_down(a, b, true);
    }
    let now = net.now;
    net.peers[0]
        .node
        .group_say(&gid, b"news".to_vec(), now)
        .unwrap();
    net.advance(secs(11));
    assert_eq!(shown(&net, 3, "news"), [Trust::Relayed { k: 1, n: 3 }]);
    // 1 comes back: its queued echo raises k after the window.
    net.set_down(1, 3, false);
    net.advance(secs(700));
    assert_eq!(shown(&net, 3, "news"), [Trust::Relayed { k: 2, n: 3 }]);
    // The speaker comes back: its queued direct copy upgrades the message, shown only once.
    net.set_down(0, 3, false);
    net.advance(secs(700));
    assert_eq!(shown(&net, 3, "news"), [Trust::Direct { confirmations: 2 }]);
    let shows = net
        .events(3)
        .iter()
        .filter(|e| matches!(e, Event::GroupMessage { .. }))
        .count();
    assert_eq!(shows, 1);
}

#[test]
fn no_redundancy_mode_sends_no_echoes() {
    let (mut net, gid) = group_of(4, vec![torchat_core::NO_REDUNDANCY.into()]);
    net.advance(secs(30));
    net.cut(0, 3);
    net.set_down(0, 3, true);
    let now = net.now;
    net.peers[0]
        .node
        .group_say(&gid, b"plain".to_vec(), now)
        .unwrap();
    net.advance(secs(30));
    assert!(!net
        .wire
        .iter()
        .any(|w| w.line.starts_with(b"groupchat_echoed_message")));
    assert!(shown(&net, 3, "plain").is_empty());
    assert_eq!(
        shown(&net, 1, "plain"),
        [Trust::Direct { confirmations: 0 }]
    );
}

/// alice (0) is buddies with bob (1) and carol (2), who do not know each other; alice has
/// created a group. Returns the network, the group and (a, b, c).
fn alice_with_a_new_group() -> (Net, GroupId, (OnionId, OnionId, OnionId)) {
    let mut net = Net::new(vec![node("alice", 1), node("bob", 2), node("carol", 3)]);
    let (a, b, c) = (net.id(0), net.id(1), net.id(2));
    let now = net.now;
    for (i, j) in [(0, &b), (0, &c), (1, &a), (2, &a)] {
        net.peers[i].node.add_buddy(j.clone(), None, now).unwrap();
    }
    for p in &mut net.peers {
        p.node.start(now);
    }
    net.run();
    let gid = net.peers[0].node.group_create(vec![], now).unwrap();
    (net, gid, (a, b, c))
}

/// Builds a group with the real invite flow: 0 creates, invites 1, then 2 (who only knows 0).
fn invited_group() -> (Net, GroupId) {
    let (mut net, gid, (a, b, c)) = alice_with_a_new_group();
    let now = net.now;
    net.peers[0].node.group_invite(&gid, &b, now).unwrap();
    net.run();
    assert!(net
        .events(1)
        .iter()
        .any(|e| matches!(e, Event::GroupInvite { from, .. } if *from == a)));
    net.peers[1].node.group_accept(&gid, now).unwrap();
    net.run();
    assert_eq!(
        net.peers[1].node.group(&gid).unwrap().state,
        GroupState::Joined
    );
    net.peers[0].node.group_invite(&gid, &c, now).unwrap();
    net.run();
    assert_eq!(
        net.peers[2].node.group(&gid).unwrap().proposed,
        vec![b.clone()]
    );
    net.peers[2].node.group_accept(&gid, now).unwrap();
    net.advance(secs(5));
    (net, gid)
}

#[test]
fn invite_flow_builds_the_same_member_list_everywhere() {
    let (net, gid) = invited_group();
    let ids: Vec<_> = (0..3).map(|i| net.id(i)).collect();
    for i in 0..3 {
        let g = net.peers[i].node.group(&gid).unwrap();
        assert_eq!(g.state, GroupState::Joined, "node {i}");
        let mut all = g.members.clone();
        all.push(ids[i].clone());
        all.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(all, want, "node {i}");
    }
    // Carol verified bob, whom she did not know, before trusting him.
    assert!(net
        .lines(2, 1)
        .iter()
        .any(|w| w.line.starts_with(b"groupchat_is_participating")));
    // Bob and carol are temporary buddies of each other: no add_me, no plain message.
    assert!(!net
        .texts(1, 2)
        .iter()
        .any(|l| l.starts_with("add_me") || l.starts_with("message ")));
    // Membership is persisted.
    assert!(net.peers[2].records.iter().any(|r| matches!(
        r,
        Record::Group {
            state: GroupState::Joined,
            ..
        }
    )));
}

#[test]
fn concurrent_invites_still_converge() {
    let (mut net, gid, (_, b, c)) = alice_with_a_new_group();
    let now = net.now;
    // Both invites go out before either join comes back: carol's list does not name bob.
    net.peers[0].node.group_invite(&gid, &b, now).unwrap();
    net.peers[0].node.group_invite(&gid, &c, now).unwrap();
    net.run();
    net.peers[1].node.group_accept(&gid, now).unwrap();
    net.peers[2].node.group_accept(&gid, now).unwrap();
    net.advance(secs(10));
    for i in 0..3 {
        let g = net.peers[i].node.group(&gid).unwrap();
        assert_eq!(
            (g.state, g.members.len()),
            (GroupState::Joined, 2),
            "node {i}"
        );
    }
}

#[test]
fn messages_in_an_invited_group_and_a_member_joining_meanwhile() {
    let (mut net, gid) = invited_group();
    let now = net.now;
    net.peers[2]
        .node
        .group_say(&gid, b"hi from carol".to_vec(), now)
        .unwrap();
    net.advance(secs(15));
    assert_eq!(
        shown(&net, 0, "hi from carol"),
        [Trust::Direct { confirmations: 1 }]
    );
    assert_eq!(
        shown(&net, 1, "hi from carol"),
        [Trust::Direct { confirmations: 1 }]
    );
    // A fourth node joins while a message is in flight (1 cannot reach 0 right now).
    let mut dave = node("dave", 4);
    let a = net.id(0);
    dave.add_buddy(a, None, now).unwrap();
    dave.start(now);
    let d = dave.own_id().clone();
    net.peers.push(common::Peer::new(dave));
    net.grow();
    let now = net.now;
    net.peers[0].node.add_buddy(d.clone(), None, now).unwrap();
    net.advance(secs(5));
    net.peers[1]
        .node
        .group_say(&gid, b"during the join".to_vec(), now)
        .unwrap();
    net.peers[0].node.group_invite(&gid, &d, now).unwrap();
    net.run();
    net.peers[3].node.group_accept(&gid, net.now).unwrap();
    net.advance(secs(30));
    for i in 0..4 {
        assert_eq!(
            net.peers[i].node.group(&gid).unwrap().members.len(),
            3,
            "node {i}"
        );
    }
    // Nobody shows anything twice.
    for i in 0..4 {
        let mut seen = std::collections::BTreeSet::new();
        for e in net.events(i) {
            if let Event::GroupMessage { id, .. } = e {
                assert!(seen.insert(*id), "node {i} showed a message twice");
            }
        }
    }
}

#[test]
fn leave_during_a_partition_reaches_everyone_after_it_heals() {
    let (mut net, gid) = group_of(3, vec![]);
    net.advance(secs(30));
    net.cut(2, 1);
    net.set_down(2, 1, true);
    let now = net.now;
    net.peers[2]
        .node
        .group_leave(&gid, Some(b"bye".to_vec()), now)
        .unwrap();
    net.run();
    assert_eq!(net.peers[0].node.group(&gid).unwrap().members.len(), 1);
    assert_eq!(
        net.peers[1].node.group(&gid).unwrap().members.len(),
        2,
        "1 has not heard yet"
    );
    net.set_down(2, 1, false);
    net.advance(secs(900));
    assert_eq!(
        net.peers[1].node.group(&gid).unwrap().members,
        vec![net.id(0)]
    );
    assert_eq!(
        net.peers[2].node.group(&gid).unwrap().state,
        GroupState::Left
    );
}

#[test]
fn restart_with_a_queued_outbox_still_delivers() {
    let (mut net, gid) = group_of(3, vec![]);
    net.advance(secs(30));
    for j in [1, 2] {
        net.cut(0, j);
        net.set_down(0, j, true);
    }
    let now = net.now;
    net.peers[0]
        .node
        .group_say(&gid, b"written while alone".to_vec(), now)
        .unwrap();
    net.run();
    assert_eq!(net.peers[0].node.outbox_len(), 2);
    // Restart node 0 from what it persisted.
    let records = net.peers[0].records.clone();
    let mut fresh = node("na", 1001);
    let members: Vec<OnionId> = vec![net.id(1), net.id(2)];
    fresh.restore_group(gid.clone(), GroupState::Joined, vec![], None, members);
    let mut outbox = vec![];
    for r in &records {
        match r {
            Record::OutboxAdd(e) => outbox.push(e.clone()),
            Record::OutboxRemove { id } => outbox.retain(|e| e.id != *id),
            _ => {}
        }
    }
    for e in outbox {
        fresh.restore_outbox(e);
    }
    fresh.start(net.now);
    net.restart(0, fresh);
    for j in [1, 2] {
        net.set_down(0, j, false);
    }
    net.advance(secs(900));
    for i in [1, 2] {
        assert_eq!(
            shown(&net, i, "written while alone"),
            [Trust::Direct { confirmations: 1 }],
            "member {i}"
        );
    }
    assert_eq!(net.peers[0].node.outbox_len(), 0);
}

#[test]
fn membership_is_rechecked_on_reconnect() {
    // 2 misses the `invited` for a new member 3 during a partition; after healing, 0's list
    // (sent on reconnect) names 3, 2 verifies 3 with is_participating and adds it.
    let (mut net, gid) = group_of(3, vec![]);
    net.advance(secs(30));
    let mut extra = node("nd", 77);
    let (a, d) = (net.id(0), extra.own_id().clone());
    extra.add_buddy(a, None, net.now).unwrap();
    extra.start(net.now);
    net.peers.push(common::Peer::new(extra));
    net.grow();
    net.peers[0]
        .node
        .add_buddy(d.clone(), None, net.now)
        .unwrap();
    net.advance(secs(5));
    // 2 is partitioned from everyone while 3 joins.
    for j in [0, 1, 3] {
        net.cut(2, j);
        net.set_down(2, j, true);
    }
    net.peers[0].node.group_invite(&gid, &d, net.now).unwrap();
    net.run();
    net.peers[3].node.group_accept(&gid, net.now).unwrap();
    net.advance(secs(5));
    assert!(net.peers[1].node.group(&gid).unwrap().members.contains(&d));
    assert!(!net.peers[2].node.group(&gid).unwrap().members.contains(&d));
    // Stay apart longer than the relay lifetime: the queued `invited` expires, so only the
    // re-check on reconnect can fix 2's list.
    net.advance(secs(25 * 3600));
    assert_eq!(net.peers[0].node.outbox_len(), 0);
    for j in [0, 1, 3] {
        net.set_down(2, j, false);
    }
    net.advance(secs(900));
    assert!(net.peers[2].node.group(&gid).unwrap().members.contains(&d));
    let lists: Vec<usize> = (0..4)
        .map(|i| net.peers[i].node.group(&gid).unwrap().members.len())
        .collect();
    assert_eq!(lists, [3, 3, 3, 3]);
}

// ----- ruby-torchat's captured join flow (wire-samples.txt section 2) -----

const GID: &str = "7ec2d770-198c-4899-81d4-a5b3480ccde5";

fn sent_lines(s: &Script, conn: torchat_core::ConnId) -> Vec<String> {
    s.sent_on(conn)
        .iter()
        .map(|p| String::from_utf8_lossy(&p.encode()).trim_end().to_owned())
        .collect()
}

#[test]
fn ruby_invites_us() {
    // We play rubycccccccccccc; ruby A invites us, listing ruby B.
    let mut s = Script::new("rubycccccccccccc");
    let a = OnionId::parse("rubyaaaaaaaaaaaa").unwrap();
    let (inc_a, out_a) = session(&mut s, &a);
    s.feed(inc_a, format!("groupchat_invite {GID}").as_bytes());
    s.feed(
        inc_a,
        format!("groupchat_participants {GID} rubybbbbbbbbbbbb").as_bytes(),
    );
    let gid = GroupId::new(GID).unwrap();
    assert!(s
        .events()
        .iter()
        .any(|e| matches!(e, Event::GroupInvite { .. })));
    let now = s.now;
    s.node.group_accept(&gid, now).unwrap();
    s.drain();
    // Our view goes back to the inviter, as ruby-torchat expects…
    assert!(
        sent_lines(&s, out_a).contains(&format!("groupchat_participants {GID} rubybbbbbbbbbbbb"))
    );
    // …it answers with the (empty) difference and we join.
    s.feed(inc_a, format!("groupchat_participants {GID}").as_bytes());
    assert!(sent_lines(&s, out_a).contains(&format!("groupchat_join {GID}")));
    assert_eq!(s.node.group(&gid).unwrap().state, GroupState::Joined);
    // We connect to B (a stranger to us) as a temporary buddy and verify it.
    let b = OnionId::parse("rubybbbbbbbbbbbb").unwrap();
    assert!(s.connects().iter().any(|(_, to)| *to == b));
    let (inc_b, out_b) = session(&mut s, &b);
    assert!(sent_lines(&s, out_b).contains(&format!("groupchat_is_participating {GID}")));
    assert!(!sent_lines(&s, out_b)
        .iter()
        .any(|l| l.starts_with("add_me")));
    // ruby-torchat cannot answer the query (it is broken there): we keep B on A's word.
    s.feed(inc_b, b"not_implemented groupchat_is_participating");
    assert!(s.node.group(&gid).unwrap().members.contains(&b));
    // Ruby's messages arrive; our reply goes to both, and we relay A's message to B.
    s.feed(
        inc_a,
        format!("groupchat_message {GID} hello group from rubyaaaaaaaaaaaa").as_bytes(),
    );
    assert!(sent_lines(&s, out_b).contains(&format!(
        "groupchat_echoed_message {GID} rubyaaaaaaaaaaaa hello group from rubyaaaaaaaaaaaa"
    )));
    // B answers the echo with not_implemented, as ruby-torchat does: nothing breaks.
    s.feed(inc_b, b"not_implemented groupchat_echoed_message");
    let now = s.now;
    s.node
        .group_say(&gid, b"hi all, rubycccccccccccc here".to_vec(), now)
        .unwrap();
    s.drain();
    for out in [out_a, out_b] {
        assert!(sent_lines(&s, out).contains(&format!(
            "groupchat_message {GID} hi all, rubycccccccccccc here"
        )));
    }
    // B leaves.
    s.feed(inc_b, format!("groupchat_leave {GID} bye").as_bytes());
    assert_eq!(s.node.group(&gid).unwrap().members, vec![a]);
    assert!(!s.wrote_on(inc_a) && !s.wrote_on(inc_b));
}

#[test]
fn we_invite_ruby() {
    // We play rubyaaaaaaaaaaaa with B already in the group and invite ruby C.
    let mut s = Script::new("rubyaaaaaaaaaaaa");
    let b = OnionId::parse("rubybbbbbbbbbbbb").unwrap();
    let c = OnionId::parse("rubycccccccccccc").unwrap();
    let gid = GroupId::new(GID).unwrap();
    s.node.restore_group(
        gid.clone(),
        GroupState::Joined,
        vec![],
        None,
        vec![b.clone()],
    );
    let (_inc_b, out_b) = session(&mut s, &b);
    let (inc_c, out_c) = session(&mut s, &c);
    let now = s.now;
    s.node.group_invite(&gid, &c, now).unwrap();
    s.drain();
    let lines = sent_lines(&s, out_c);
    let i = lines
        .iter()
        .position(|l| *l == format!("groupchat_invite {GID}"))
        .unwrap();
    assert_eq!(
        lines[i + 1],
        format!("groupchat_participants {GID} rubybbbbbbbbbbbb")
    );
    // C answers with its view (including us, as ruby-torchat does); we send the difference.
    s.feed(
        inc_c,
        format!("groupchat_participants {GID} rubyaaaaaaaaaaaa rubybbbbbbbbbbbb").as_bytes(),
    );
    assert_eq!(
        sent_lines(&s, out_c).last().unwrap(),
        &format!("groupchat_participants {GID}")
    );
    s.feed(inc_c, format!("groupchat_join {GID}").as_bytes());
    assert!(s.node.group(&gid).unwrap().members.contains(&c));
    assert!(sent_lines(&s, out_b).contains(&format!("groupchat_invited {GID} rubycccccccccccc")));
    // A join from someone we did not invite is ignored.
    let d = OnionId::parse("rubydddddddddddd").unwrap();
    let (inc_d, _) = session(&mut s, &d);
    s.feed(inc_d, format!("groupchat_join {GID}").as_bytes());
    assert!(!s.node.group(&gid).unwrap().members.contains(&d));
    // Decline: an invitee that answers with leave is reported, not added.
    let e = OnionId::parse("rubyeeeeeeeeeeee").unwrap();
    let (inc_e, _) = session(&mut s, &e);
    let now = s.now;
    s.node.group_invite(&gid, &e, now).unwrap();
    s.drain();
    s.feed(inc_e, format!("groupchat_leave {GID}").as_bytes());
    assert!(s.events().iter().any(|ev| matches!(ev,
        Event::GroupMember { id, change: torchat_core::MemberChange::Declined, .. } if *id == e)));
    assert!(!s.node.group(&gid).unwrap().members.contains(&e));
}

#[test]
fn the_outbox_is_bounded_in_bytes_and_says_what_it_drops() {
    let mut a = node("na", 1);
    let now = torchat_core::Timestamp::from_millis(common::T0);
    let gid = GroupId::new("6f012391-883d-4f4f-8d54-52c4227b3ac9").unwrap();
    // Two members that are never reachable.
    a.restore_group(
        gid.clone(),
        GroupState::Joined,
        vec![],
        None,
        vec![id("nb"), id("nc")],
    );
    a.start(now);
    let cap = a.config().max_outbox_bytes;
    let text = vec![b'x'; 100 * 1024];
    let mut dropped = 0;
    let mut queued_bytes = 0usize;
    for _ in 0..400 {
        a.group_say(&gid, text.clone(), now).unwrap();
        while let Some(o) = a.poll_output() {
            match o {
                torchat_core::Output::Event(Event::OutboxDropped { own: Some(_), .. }) => {
                    dropped += 1
                }
                torchat_core::Output::Persist(Record::OutboxAdd(e)) => queued_bytes += e.line.len(),
                _ => {}
            }
        }
    }
    // 400 messages × 2 members × ~100 KiB is ~80 MiB: far over the 32 MiB cap.
    assert!(
        a.outbox_len() * 100 * 1024 <= cap,
        "{} entries",
        a.outbox_len()
    );
    assert!(dropped > 0 && queued_bytes > cap);
    assert_eq!(a.outbox_len() + dropped, 800);
}

// ----- our extension: signed group messages with ids -----

/// A node whose v3 id is the public key of `seed`, signing its group messages.
fn signed_node(seed: u8) -> torchat_core::Node {
    use rand_core::SeedableRng;
    let sk = [seed; 32];
    let pk = ed25519_dalek::SigningKey::from_bytes(&sk)
        .verifying_key()
        .to_bytes();
    let mut cfg = torchat_core::Config::new(OnionId::from_ed25519_public_key(&pk));
    cfg.sync = false;
    cfg.signing_key = Some(sk);
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(seed));
    torchat_core::Node::new(cfg, Box::new(rng))
}

fn signed_group(n: usize) -> (Net, GroupId) {
    let mut net = Net::new((0..n).map(|i| signed_node(i as u8 + 1)).collect());
    let gid = GroupId::new("5a5a5a5a-0000-4000-8000-000000000001").unwrap();
    let ids: Vec<OnionId> = (0..n).map(|i| net.id(i)).collect();
    for i in 0..n {
        let members = ids.iter().filter(|m| **m != ids[i]).cloned().collect();
        net.peers[i]
            .node
            .restore_group(gid.clone(), GroupState::Joined, vec![], None, members);
    }
    let now = net.now;
    for p in &mut net.peers {
        p.node.start(now);
    }
    net.advance(secs(30));
    (net, gid)
}

#[test]
fn signed_relayed_copies_are_shown_at_once_as_signed() {
    let (mut net, gid) = signed_group(4);
    net.cut(0, 3);
    net.set_down(0, 3, true);
    let now = net.now;
    net.peers[0]
        .node
        .group_say(&gid, b"signed news".to_vec(), now)
        .unwrap();
    net.run();
    // On the wire: the signed forms, not the plain ones.
    assert!(net
        .lines(0, 1)
        .iter()
        .any(|w| w.line.starts_with(b"groupchat_signed_message ")));
    assert!(!net
        .wire
        .iter()
        .any(|w| w.line.starts_with(b"groupchat_message ")));
    assert!(net
        .lines(1, 3)
        .iter()
        .any(|w| w.line.starts_with(b"groupchat_signed_echo ")));
    // No settle window for a proven text: member 3 shows it right away.
    assert_eq!(
        shown(&net, 3, "signed news"),
        [Trust::Signed { k: 2, n: 3 }]
    );
    assert_eq!(Trust::Signed { k: 2, n: 3 }.label(), "(Signed, 2 of 3)");
    for i in [1, 2] {
        assert_eq!(
            shown(&net, i, "signed news"),
            [Trust::Direct { confirmations: 1 }]
        );
    }
    // Two messages with the same text are told apart by their ids.
    let now = net.now;
    net.peers[0]
        .node
        .group_say(&gid, b"signed news".to_vec(), now)
        .unwrap();
    net.run();
    assert_eq!(shown(&net, 3, "signed news").len(), 2);
}

#[test]
fn a_bad_signature_is_a_forgery_dropped_and_reported() {
    let (mut net, gid) = signed_group(4);
    let s = net.id(0);
    // Member 3 relays something "signed" by member 0 with a made-up signature.
    let line = format!(
        "groupchat_signed_echo {gid} {s} {} {} transfer the money",
        "ab".repeat(16),
        "cd".repeat(64)
    );
    net.inject(3, 1, line.as_bytes());
    net.advance(secs(15));
    assert!(shown(&net, 1, "transfer the money").is_empty());
    assert_eq!(net.peers[1].node.stats().bad_signatures, 1);
    assert!(net.events(1).iter().any(
        |e| matches!(e, Event::Misbehaviour { what, .. } if what.contains("forged signature"))
    ));
    // A genuine signature on another text does not make a changed text pass either: take a
    // real signed line of member 0 and alter its text.
    let now = net.now;
    net.peers[0]
        .node
        .group_say(&gid, b"pay 10".to_vec(), now)
        .unwrap();
    net.run();
    let real = net
        .lines(0, 2)
        .iter()
        .map(|w| w.line.clone())
        .find(|l| l.starts_with(b"groupchat_signed_message "))
        .unwrap();
    let real = String::from_utf8(real).unwrap();
    let parts: Vec<&str> = real.splitn(5, ' ').collect();
    let forged = format!(
        "groupchat_signed_echo {} {s} {} {} pay 1000",
        parts[1], parts[2], parts[3]
    );
    net.inject(3, 2, forged.as_bytes());
    net.run();
    assert!(shown(&net, 2, "pay 1000").is_empty());
    assert_eq!(net.peers[2].node.stats().bad_signatures, 1);
}

#[test]
fn members_without_the_extension_get_plain_packets() {
    // Our signing node in a group with a peer that announces only `groupchat` (as
    // ruby-torchat does) and one that announces `torchat_signed` too.
    let mut s = Script::with_node(signed_node(9));
    s.node.start(s.now);
    let (legacy, modern) = (id("rubylegacy"), id("modernpeer"));
    let gid = GroupId::new(GID).unwrap();
    s.node.restore_group(
        gid.clone(),
        GroupState::Joined,
        vec![],
        None,
        vec![legacy.clone(), modern.clone()],
    );
    let (inc_l, out_l) = session(&mut s, &legacy);
    s.feed(inc_l, b"supports groupchat");
    let (inc_m, out_m) = session(&mut s, &modern);
    s.feed(inc_m, b"supports groupchat torchat_signed");
    let now = s.now;
    s.node.group_say(&gid, b"hello both".to_vec(), now).unwrap();
    s.drain();
    assert!(sent_lines(&s, out_l).contains(&format!("groupchat_message {GID} hello both")));
    assert!(sent_lines(&s, out_m)
        .iter()
        .any(|l| l.starts_with("groupchat_signed_message ") && l.ends_with(" hello both")));
    // Our own `supports` names the extension.
    assert!(sent_lines(&s, out_l)
        .iter()
        .any(|l| l.starts_with("supports ") && l.contains("torchat_signed")));
}
