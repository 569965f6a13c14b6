//! The extension `torchat_sync` over the virtual network: eager push, acknowledgements,
//! catch-up in pages from any member, repair when the speaker cannot reach a member or dies
//! right after reaching one, mixed groups with seed-only and §3-only members, signatures,
//! restarts, and acknowledged 1:1 delivery.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{node, seed_node, Net};
use torchat_core::{Delivery, Event, GroupState, MsgId, Node, Record, Trust};
use torchat_wire::{GroupId, OnionId, Packet};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn gid() -> GroupId {
    GroupId::new("6f012391-883d-4f4f-8d54-52c4227b3ac9").unwrap()
}

fn name(i: usize) -> String {
    format!("n{}", char::from(b'a' + i as u8))
}

/// Every node a member of one group from the start (as after a restart), started.
fn group_with(nodes: Vec<Node>) -> Net {
    let mut net = Net::new(nodes);
    let n = net.peers.len();
    let ids: Vec<OnionId> = (0..n).map(|i| net.id(i)).collect();
    for i in 0..n {
        let members = ids.iter().filter(|m| **m != ids[i]).cloned().collect();
        net.peers[i]
            .node
            .restore_group(gid(), GroupState::Joined, vec![], None, members);
    }
    let now = net.now;
    for p in &mut net.peers {
        p.node.start(now);
    }
    net.run();
    net
}

fn sync_group(n: usize) -> Net {
    group_with((0..n).map(|i| node(&name(i), i as u64 + 1)).collect())
}

fn say(net: &mut Net, i: usize, text: &str) -> MsgId {
    let now = net.now;
    let id = net.peers[i]
        .node
        .group_say(&gid(), text.as_bytes().to_vec(), now)
        .unwrap();
    net.run();
    id
}

/// The trust node `i` ended with for each message with this text (in order shown).
fn shown(net: &Net, i: usize, text: &str) -> Vec<Trust> {
    let mut ids = vec![];
    let mut trust = BTreeMap::new();
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

/// Messages node `i` showed, text → times shown.
fn shown_texts(net: &Net, i: usize) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in net.events(i) {
        if let Event::GroupMessage { text, trust, .. } = e {
            if *trust != Trust::Own {
                *m.entry(String::from_utf8_lossy(text).into_owned())
                    .or_insert(0) += 1;
            }
        }
    }
    m
}

/// The last delivery count node `i` reported for its message `id`.
fn delivered(net: &Net, i: usize, id: MsgId) -> Option<(u32, u32)> {
    net.events(i).iter().rev().find_map(|e| match e {
        Event::GroupDelivery {
            id: m,
            delivered,
            of,
            ..
        } if *m == id => Some((*delivered, *of)),
        _ => None,
    })
}

fn count_lines(net: &Net, prefix: &str) -> usize {
    net.wire
        .iter()
        .filter(|w| w.line.starts_with(prefix.as_bytes()))
        .count()
}

/// Takes node `i` off the network (no connection to anyone).
fn isolate(net: &mut Net, i: usize) {
    for j in 0..net.peers.len() {
        if j != i {
            net.set_down(i, j, true);
            net.cut(i, j);
        }
    }
}

fn reconnect(net: &mut Net, i: usize, skip: &[usize]) {
    for j in 0..net.peers.len() {
        if j != i && !skip.contains(&j) {
            net.set_down(i, j, false);
        }
    }
}

#[test]
fn a_message_is_pushed_once_acknowledged_and_never_echoed() {
    let mut net = sync_group(3);
    net.advance(secs(30));
    let id = say(&mut net, 0, "hello");
    // Written, not yet acknowledged: nothing is "delivered" yet.
    assert_eq!(delivered(&net, 0, id), Some((0, 2)));
    net.advance(secs(1));
    for i in [1, 2] {
        assert_eq!(
            shown(&net, i, "hello"),
            [Trust::Direct { confirmations: 0 }]
        );
    }
    assert_eq!(delivered(&net, 0, id), Some((2, 2)));
    let mut holders = net.peers[0].node.sync_holders(&gid(), id).unwrap();
    holders.sort();
    assert_eq!(holders, [net.id(1), net.id(2)]);
    // Two full copies, two acknowledgements, no echo.
    assert_eq!(count_lines(&net, "groupchat_sync_message "), 2);
    assert_eq!(count_lines(&net, "groupchat_sync_ack "), 2);
    assert_eq!(count_lines(&net, "groupchat_echoed_message "), 0);
    assert_eq!(count_lines(&net, "groupchat_message "), 0);
    // The speaker's record carries the sequence number, persisted before the copy left.
    let recs = &net.peers[0].records;
    let seq_at = recs
        .iter()
        .position(|r| matches!(r, Record::SyncSeq { next: 2, .. }))
        .unwrap();
    assert!(matches!(
        recs.iter().find(|r| matches!(r, Record::GroupMessage { .. })),
        Some(Record::GroupMessage { sync: Some(m), .. }) if m.seq == 1
    ));
    assert!(seq_at < recs.len());
}

#[test]
fn a_burst_is_acknowledged_once_per_member() {
    let mut net = sync_group(3);
    net.advance(secs(30));
    let ids: Vec<MsgId> = (0..50)
        .map(|i| say(&mut net, 0, &format!("m{i}")))
        .collect();
    net.advance(secs(1));
    assert_eq!(
        count_lines(&net, "groupchat_sync_ack "),
        2,
        "one per member"
    );
    for id in ids {
        assert_eq!(delivered(&net, 0, id), Some((2, 2)));
    }
}

#[test]
fn lost_writes_are_never_delivered_and_come_back_after_a_reconnect() {
    let mut net = sync_group(3);
    net.advance(secs(30));
    // Everything node 0 writes to node 2 vanishes (a connection dying under the writes).
    net.blackhole.insert((0, 2));
    let ids: Vec<MsgId> = (0..5)
        .map(|i| say(&mut net, 0, &format!("lost {i}")))
        .collect();
    net.advance(secs(2));
    for id in &ids {
        assert_eq!(
            delivered(&net, 0, *id),
            Some((1, 2)),
            "only node 1 holds it"
        );
        assert_eq!(
            net.peers[0].node.sync_holders(&gid(), *id).unwrap(),
            [net.id(1)]
        );
    }
    assert!(shown_texts(&net, 2).is_empty());
    // The connection dies; they reconnect; node 2 gets everything, once.
    net.blackhole.remove(&(0, 2));
    net.cut(0, 2);
    net.advance(secs(120));
    let got = shown_texts(&net, 2);
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(got.values().all(|n| *n == 1));
    for id in ids {
        assert_eq!(delivered(&net, 0, id), Some((2, 2)));
    }
}

#[test]
fn a_member_away_catches_up_in_pages_from_any_member() {
    let mut net = sync_group(3);
    net.advance(secs(30));
    isolate(&mut net, 2);
    for i in 0..250 {
        say(&mut net, 0, &format!("while away {i}"));
    }
    net.advance(secs(2));
    // The speaker goes away too; node 2 comes back and can reach node 1 only.
    isolate(&mut net, 0);
    reconnect(&mut net, 2, &[0]);
    net.advance(secs(20 * 60));
    let got = shown_texts(&net, 2);
    assert_eq!(got.len(), 250);
    assert!(got.values().all(|n| *n == 1));
    // Pulled in pages of at most 100, from node 1.
    let wants: Vec<Packet> = net
        .lines(2, 1)
        .iter()
        .map(|w| w.packet())
        .filter(|p| matches!(p, Packet::GroupSyncWant { .. }))
        .collect();
    assert!(wants.len() >= 3, "{wants:?}");
    for w in &wants {
        if let Packet::GroupSyncWant { from, to, .. } = w {
            assert!(to - from < 100);
        }
    }
    // Shown relayed: node 1 holds them (unsigned: legacy ids).
    assert_eq!(
        shown(&net, 2, "while away 0"),
        [Trust::Relayed { k: 1, n: 2 }]
    );
}

#[test]
fn catch_up_reads_older_copies_from_storage() {
    let mut nodes: Vec<Node> = (0..3).map(|i| node(&name(i), i as u64 + 1)).collect();
    // Node 1 keeps only 5 copies in memory: the rest must come from its store.
    let mut cfg = nodes[1].config().clone();
    cfg.sync_cache = 5;
    nodes[1] = Node::new(
        cfg,
        Box::new(<rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(2)),
    );
    let mut net = group_with(nodes);
    net.advance(secs(30));
    isolate(&mut net, 2);
    for i in 0..120 {
        say(&mut net, 0, &format!("old {i}"));
    }
    net.advance(secs(2));
    isolate(&mut net, 0);
    reconnect(&mut net, 2, &[0]);
    net.advance(secs(20 * 60));
    assert_eq!(shown_texts(&net, 2).len(), 120);
}

#[test]
fn the_speaker_dying_right_after_reaching_one_member_is_repaired() {
    let mut net = sync_group(4);
    net.advance(secs(30));
    // Node 0's writes reach node 1 only; then node 0 is gone.
    net.blackhole.insert((0, 2));
    net.blackhole.insert((0, 3));
    say(&mut net, 0, "last words");
    isolate(&mut net, 0);
    net.advance(secs(10));
    for i in [1, 2, 3] {
        assert_eq!(shown_texts(&net, i).get("last words"), Some(&1), "node {i}");
    }
    // Those that got it from node 1 show it relayed, vouched by who holds it.
    assert!(matches!(
        shown(&net, 2, "last words")[..],
        [Trust::Relayed { .. }]
    ));
}

#[test]
fn a_member_the_speaker_cannot_reach_gets_messages_through_helpers() {
    let nodes: Vec<Node> = (0..5).map(|i| node(&name(i), i as u64 + 1)).collect();
    let mut net = group_with(nodes);
    net.set_down(0, 4, true);
    net.cut(0, 4);
    net.advance(secs(60));
    for k in 0..3 {
        say(&mut net, 0, &format!("over there {k}"));
        net.advance(secs(2));
    }
    for k in 0..3 {
        assert_eq!(
            shown_texts(&net, 4).get(&format!("over there {k}")),
            Some(&1)
        );
    }
    // Relayed by members after it in ring order, not echoed by everyone.
    assert!(count_lines(&net, "groupchat_sync_tell ") >= 1);
    assert_eq!(count_lines(&net, "groupchat_echoed_message "), 0);
    // Copies: 3 members pushed + a few relays, far below the seed's (n-1)^2 = 16 per message.
    let copies = count_lines(&net, "groupchat_sync_message ");
    assert!(copies <= 3 * 6, "{copies} copies for 3 messages");
}

#[test]
fn mixed_group_seed_members_get_the_seeds_packets_and_their_echoes_count() {
    // 0 and 1 speak torchat_sync, 2 only the seed (redundancy, no sync), 3 only §3 (like
    // ruby-torchat: no echoes; it answers echoes with not_implemented).
    let nodes = vec![
        node(&name(0), 1),
        node(&name(1), 2),
        seed_node(&name(2), 3),
        seed_node(&name(3), 4),
    ];
    let mut net = Net::new(nodes);
    net.legacy.insert(3);
    let n = net.peers.len();
    let ids: Vec<OnionId> = (0..n).map(|i| net.id(i)).collect();
    for i in 0..n {
        let members = ids.iter().filter(|m| **m != ids[i]).cloned().collect();
        net.peers[i]
            .node
            .restore_group(gid(), GroupState::Joined, vec![], None, members);
    }
    let now = net.now;
    for p in &mut net.peers {
        p.node.start(now);
    }
    net.advance(secs(60));
    let id = say(&mut net, 0, "from sync");
    net.advance(secs(15));
    // The seed members got the seed's packet from the speaker, and echoes from node 1.
    let to2: Vec<String> = net.texts(0, 2);
    assert!(to2.iter().any(|l| l.starts_with("groupchat_message ")));
    assert!(!to2.iter().any(|l| l.starts_with("groupchat_sync_")));
    assert!(net
        .texts(1, 2)
        .iter()
        .any(|l| l.starts_with("groupchat_echoed_message ")));
    assert!(net
        .texts(1, 3)
        .iter()
        .any(|l| l.starts_with("groupchat_echoed_message ")));
    // The §3-only member said not_implemented, and that disturbed nothing.
    assert!(net
        .texts(3, 1)
        .contains(&"not_implemented groupchat_echoed_message".to_owned()));
    for i in 1..4 {
        assert_eq!(shown_texts(&net, i).get("from sync"), Some(&1), "node {i}");
    }
    // Node 2's echo (it got it directly) counts at node 1 as a confirmation.
    assert_eq!(
        shown(&net, 1, "from sync"),
        [Trust::Direct { confirmations: 1 }]
    );
    // Delivered counts only acknowledgements: node 1. Seed members never acknowledge.
    assert_eq!(delivered(&net, 0, id), Some((1, 3)));
    // A seed member speaks: everyone shows it, the sync members echo it as the seed says.
    say(&mut net, 2, "from seed");
    net.advance(secs(15));
    for i in [0, 1, 3] {
        assert_eq!(shown_texts(&net, i).get("from seed"), Some(&1), "node {i}");
    }
    assert!(net
        .texts(0, 1)
        .iter()
        .any(|l| l.starts_with("groupchat_echoed_message ")));
    // The §3 member speaks: the same.
    say(&mut net, 3, "from ruby");
    net.advance(secs(15));
    for i in [0, 1, 2] {
        assert_eq!(shown_texts(&net, i).get("from ruby"), Some(&1), "node {i}");
    }
}

fn signed_node(seed: u8) -> Node {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let pk = sk.verifying_key().to_bytes();
    let mut cfg = torchat_core::Config::new(OnionId::from_ed25519_public_key(&pk));
    cfg.signing_key = Some([seed; 32]);
    let rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(u64::from(seed));
    Node::new(cfg, Box::new(rng))
}

#[test]
fn pulled_copies_are_verified_and_shown_signed() {
    let mut net = group_with((1..=3).map(signed_node).collect());
    net.advance(secs(30));
    isolate(&mut net, 2);
    say(&mut net, 0, "authentic");
    net.advance(secs(2));
    isolate(&mut net, 0);
    reconnect(&mut net, 2, &[0]);
    net.advance(secs(20 * 60));
    assert_eq!(
        shown(&net, 2, "authentic"),
        [Trust::Signed { k: 1, n: 2 }],
        "{:?}",
        shown_texts(&net, 2)
    );
    // A forged copy (a real signature on another text) is dropped and reported.
    let (s, line) = {
        let copy = net
            .wire
            .iter()
            .map(|w| w.packet())
            .find(|p| matches!(p, Packet::GroupSyncMessage { .. }))
            .unwrap();
        let Packet::GroupSyncMessage {
            gid,
            list,
            speaker,
            time,
            sig,
            ..
        } = copy
        else {
            unreachable!()
        };
        let forged = Packet::GroupSyncMessage {
            gid,
            list,
            speaker: speaker.clone(),
            seq: 2,
            time,
            sig,
            text: b"send me your keys".to_vec(),
        };
        (speaker, forged.encode())
    };
    let _ = s;
    net.inject(1, 2, &line[..line.len() - 1]);
    assert!(!shown_texts(&net, 2).contains_key("send me your keys"));
    assert_eq!(net.peers[2].node.stats().bad_signatures, 1);
}

#[test]
fn sequence_numbers_and_delivery_survive_a_restart() {
    let mut net = sync_group(3);
    net.advance(secs(30));
    isolate(&mut net, 2);
    let first = say(&mut net, 0, "before the restart");
    net.advance(secs(2));
    assert_eq!(delivered(&net, 0, first), Some((1, 2)));
    // Node 0 restarts from its records.
    let records = net.peers[0].records.clone();
    let mut fresh = node(&name(0), 99);
    restore(&mut fresh, &records);
    net.restart(0, fresh);
    net.peers[0].records = records; // its disk
    let now = net.now;
    net.peers[0].node.start(now);
    reconnect(&mut net, 2, &[]);
    net.advance(secs(20 * 60));
    let mark = net.peers[0].records.len();
    let second = say(&mut net, 0, "after the restart");
    net.advance(secs(2));
    // The new message got number 2 (1 is never reused), both reached everyone, and the old
    // one is counted delivered to both now.
    let seqs: Vec<u64> = net.peers[0].records[mark..]
        .iter()
        .filter_map(|r| match r {
            Record::GroupMessage { sync: Some(m), .. } => Some(m.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, [2]);
    assert_eq!(shown_texts(&net, 2).len(), 2);
    assert_eq!(delivered(&net, 0, second), Some((2, 2)));
    assert_eq!(delivered(&net, 0, first), Some((2, 2)));
}

/// Feeds a node what a store would hold after these records (the parts sync needs).
fn restore(node: &mut Node, records: &[Record]) {
    let mut members: BTreeMap<GroupId, Vec<OnionId>> = BTreeMap::new();
    for r in records {
        if let Record::GroupMember {
            gid,
            id,
            member: true,
        } = r
        {
            members.entry(gid.clone()).or_default().push(id.clone());
        }
    }
    let me = node.own_id().clone();
    let ids: Vec<OnionId> = (0..3)
        .map(|i| common::id(&name(i)))
        .filter(|i| *i != me)
        .collect();
    node.restore_group(gid(), GroupState::Joined, vec![], None, ids.clone());
    for id in &ids {
        node.restore_peer_extensions(id, vec!["torchat_sync".into()]);
    }
    let mut own: Vec<(u64, MsgId)> = vec![];
    for r in records {
        match r {
            Record::SyncSeq { gid, next } => node.restore_sync_seq(gid, *next),
            Record::SyncVector {
                gid,
                member,
                speaker,
                held,
            } => node.restore_sync_vector(gid, member, speaker, held.clone()),
            Record::GroupMessage {
                id,
                sync: Some(m),
                trust: Trust::Own,
                ..
            } => own.push((m.seq, *id)),
            _ => {}
        }
    }
    for (seq, id) in own {
        node.restore_sync_own(&gid(), seq, id, 0);
    }
}

#[test]
fn member_list_divergence_is_noticed_from_group_traffic() {
    let mut net = sync_group(3);
    net.advance(secs(30));
    // Node 2 believes in a member nobody else knows.
    let ghost = common::id("ghost");
    let members = vec![net.id(0), net.id(1), ghost];
    net.peers[2]
        .node
        .restore_group(gid(), GroupState::Joined, vec![], None, members);
    let before = net
        .texts(0, 2)
        .iter()
        .filter(|l| l.starts_with("groupchat_participants "))
        .count();
    say(&mut net, 2, "hello");
    net.advance(secs(2));
    let after = net
        .texts(0, 2)
        .iter()
        .filter(|l| l.starts_with("groupchat_participants "))
        .count();
    assert!(after > before, "node 0 re-checks the lists with node 2");
}

#[test]
fn one_to_one_retransmits_until_acknowledged_and_the_receiver_drops_copies() {
    let (mut net, b) =
        sync_pair(torchat_core::Config::new(common::id("alice")).max_unacked_per_buddy);
    // Lost on the way: written, never delivered.
    net.blackhole.insert((0, 1));
    let now = net.now;
    let lost = net.peers[0]
        .node
        .send_message(&b, b"lost".to_vec(), now)
        .unwrap();
    net.run();
    net.blackhole.remove(&(0, 1));
    // Delivered, but the acknowledgement dies with the connection.
    let now = net.now;
    let unacked = net.peers[0]
        .node
        .send_message(&b, b"unacked".to_vec(), now)
        .unwrap();
    net.run();
    net.cut(0, 1);
    assert_eq!(net.texts_received(1), ["unacked"]);
    net.advance(secs(120));
    // Both arrive, each once; both are delivered.
    let mut got = net.texts_received(1);
    got.sort();
    assert_eq!(got, ["lost", "unacked"]);
    for id in [lost, unacked] {
        assert!(net.events(0).iter().any(
            |e| matches!(e, Event::Delivery { id: m, state: Delivery::Delivered, .. } if *m == id)
        ));
    }
}

/// Alice (with a send window of `window` messages) and Bob, buddies of each other, both
/// speaking torchat_sync, online.
fn sync_pair(window: usize) -> (Net, OnionId) {
    let mut cfg = torchat_core::Config::new(common::id("alice"));
    cfg.max_unacked_per_buddy = window;
    let rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(1);
    let alice = Node::new(cfg, Box::new(rng));
    let mut net = Net::new(vec![alice, node("bob", 2)]);
    let (a, b) = (net.id(0), net.id(1));
    let now = net.now;
    net.peers[0].node.add_buddy(b.clone(), None, now).unwrap();
    net.peers[1].node.add_buddy(a, None, now).unwrap();
    net.peers[0].node.start(now);
    net.peers[1].node.start(now);
    net.run();
    (net, b)
}

fn delivered_count(net: &Net, i: usize) -> usize {
    net.events(i)
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Delivery {
                    state: Delivery::Delivered,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn one_to_one_acknowledgements_go_out_as_soon_as_a_line_is_full() {
    let (mut net, b) = sync_pair(65_536);
    let now = net.now;
    for i in 0..1000 {
        let text = format!("m{i}").into_bytes();
        net.peers[0].node.send_message(&b, text, now).unwrap();
    }
    // No time passes: full lines of acknowledgements (256 ids) do not wait for the batch timer.
    net.run();
    assert_eq!(net.texts_received(1).len(), 1000);
    assert_eq!(delivered_count(&net, 0), 768);
    net.advance(secs(1));
    assert_eq!(delivered_count(&net, 0), 1000);
}

#[test]
fn one_to_one_a_burst_larger_than_a_few_thousand_is_all_shown_delivered() {
    // A bot or a pasted log: 1500 messages written before the first acknowledgement comes
    // back, on a link that loses them. Each one must arrive and end up `delivered`; none may
    // be left `sent` for ever (the window takes 1000 here, the rest wait in the queue).
    let (mut net, b) = sync_pair(1000);
    let now = net.now;
    net.blackhole.insert((0, 1));
    let ids: Vec<MsgId> = (0..1500)
        .map(|i| {
            let text = format!("m{i}").into_bytes();
            net.peers[0].node.send_message(&b, text, now).unwrap()
        })
        .collect();
    net.run();
    let queued = |net: &Net| {
        net.events(0)
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Delivery {
                        state: Delivery::Queued,
                        ..
                    }
                )
            })
            .count()
    };
    assert_eq!(
        queued(&net),
        500,
        "what does not fit in the window waits, shown queued"
    );
    net.blackhole.remove(&(0, 1));
    net.cut(0, 1);
    net.advance(secs(120));
    assert_eq!(net.texts_received(1).len(), 1500);
    assert_eq!(delivered_count(&net, 0), ids.len());
}

#[test]
fn one_to_one_a_whole_window_retransmitted_is_shown_once() {
    // Bob stored 6000 messages but the acknowledgements were lost: Alice sends the whole
    // window again when he is back. None of them may show up twice.
    let mut s = common::script::Script::new("bob");
    let alice = common::id("alice");
    let now = s.now;
    s.node.add_buddy(alice.clone(), None, now).unwrap();
    s.drain();
    let (inc, _) = common::script::session(&mut s, &alice);
    let mut burst = Vec::new();
    for i in 0..6000u32 {
        let p = Packet::SyncMessage {
            id: u128::from(i).to_be_bytes(),
            time: 1_700_000_000_000,
            text: format!("m{i}").into_bytes(),
        };
        burst.extend_from_slice(&p.encode());
    }
    for _ in 0..2 {
        let now = s.now;
        s.node.handle_data(inc, &burst, now);
        s.drain();
    }
    let shown = s
        .events()
        .iter()
        .filter(|e| matches!(e, Event::MessageReceived { .. }))
        .count();
    assert_eq!(shown, 6000);
}

/// A member invited later does not get what was said before it joined, but does get what was
/// said after, while it was away — pulled newest first until the join shows.
#[test]
fn a_new_member_catches_up_from_its_join_not_before() {
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
    let g = net.peers[0].node.group_create(vec![], now).unwrap();
    net.peers[0].node.group_invite(&g, &b, now).unwrap();
    net.run();
    net.peers[1].node.group_accept(&g, now).unwrap();
    net.advance(secs(5));
    let say_in = |net: &mut Net, i: usize, t: &str| {
        let now = net.now;
        net.peers[i]
            .node
            .group_say(&g, t.as_bytes().to_vec(), now)
            .unwrap();
        net.run();
    };
    for k in 0..150 {
        say_in(&mut net, 0, &format!("before carol {k}"));
    }
    net.advance(secs(120));
    let now = net.now;
    net.peers[0].node.group_invite(&g, &c, now).unwrap();
    net.run();
    net.peers[2].node.group_accept(&g, now).unwrap();
    net.advance(secs(120));
    assert_eq!(
        net.peers[2].node.group(&g).unwrap().state,
        GroupState::Joined
    );
    // Carol is away while alice and bob talk; then she is back.
    isolate(&mut net, 2);
    net.advance(secs(120));
    for k in 0..5 {
        say_in(&mut net, 0, &format!("while carol is away {k}"));
        say_in(&mut net, 1, &format!("bob while carol is away {k}"));
    }
    net.advance(secs(5));
    reconnect(&mut net, 2, &[]);
    net.advance(secs(20 * 60));
    let got = shown_texts(&net, 2);
    assert_eq!(got.len(), 10, "{got:?}");
    assert!(got.keys().all(|t| t.contains("while carol is away")));
    // Fetching stopped at the join: at most one page of older messages travelled.
    let to_carol: Vec<String> = [0, 1]
        .iter()
        .flat_map(|&i| net.texts(i, 2))
        .filter(|l| l.starts_with("groupchat_sync_message ") && l.contains("before carol"))
        .collect();
    assert!(to_carol.len() <= 100, "{} old copies", to_carol.len());
    assert!(!to_carol.iter().any(|l| l.ends_with("before carol 0")));
}

/// A member that asks for the same page again and again is answered at most
/// `sync_wants_per_minute` times a minute.
#[test]
fn wants_are_rate_limited_per_peer() {
    let mut net = sync_group(2);
    net.advance(secs(30));
    say(&mut net, 0, "one");
    net.advance(secs(1));
    let s = net.id(0);
    let line = format!("groupchat_sync_want {} {s} 1 1", gid());
    let ends = |net: &Net| {
        net.texts(0, 1)
            .iter()
            .filter(|l| l.starts_with("groupchat_sync_end "))
            .count()
    };
    let before = ends(&net);
    for _ in 0..300 {
        net.inject(1, 0, line.as_bytes());
    }
    assert_eq!(ends(&net) - before, 120);
    net.advance(secs(61));
    net.inject(1, 0, line.as_bytes());
    assert_eq!(ends(&net) - before, 121, "answered again after a minute");
}
