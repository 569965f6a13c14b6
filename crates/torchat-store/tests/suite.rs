//! The shared suite: every case runs against both `MemoryStore` and `SqliteStore`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use torchat_store::{
    BuddyKind, Claim, Conversation, Delivery, Direction, Error, GroupState, Member, Message, Op,
    OutboxEntry, QueuedPacket, Request, RequestMessage, RowId, SeqSet, Store, SyncInfo, Transfer,
    Trust, MAX_TIME,
};

/// Generates one `#[test]` per case for one implementation.
macro_rules! suite {
    ($module:ident, $make:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            suite!(@cases $make;
                settings, buddies, groups_and_members, member_of_unknown_group_is_an_error,
                upsert_group_keeps_members, remove_group_cascades_members_keeps_messages,
                insert_message_is_idempotent, message_fields_roundtrip,
                delivery_and_trust_updates, history_pages_and_isolation, conversations_order,
                claims_unique_per_message_and_claimant, claim_on_unknown_message_is_an_error,
                outbox_lifecycle, outbox_needs_a_stored_message, batch_results,
                batch_is_all_or_nothing, invalid_values_are_rejected, packet_queue_keeps_order,
                sync_messages_are_unique_per_group_sender_and_seq, sync_state_is_kept,
                pruning_group_history, queued_messages_are_the_unsent_outgoing_ones,
                batch_sees_its_own_earlier_ops, commits_are_counted, transfers_roundtrip,
                requests_roundtrip);
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (mut store, _guard) = $make;
                super::cases::$case(&mut store);
            }
        )*
    };
}

suite!(memory, (torchat_store::MemoryStore::new(), ()));
suite!(sqlite, common::sqlite());

mod cases {
    use super::*;

    pub fn settings(s: &mut dyn Store) {
        assert_eq!(s.get_setting("status").unwrap(), None);
        s.put_setting("status", b"away").unwrap();
        s.put_setting("secret_key", &[0, 1, 2, 255]).unwrap();
        assert_eq!(s.get_setting("status").unwrap(), Some(b"away".to_vec()));
        s.put_setting("status", b"xa").unwrap();
        assert_eq!(s.get_setting("status").unwrap(), Some(b"xa".to_vec()));
        s.put_setting("empty", b"").unwrap();
        assert_eq!(s.get_setting("empty").unwrap(), Some(vec![]));
        let all = s.settings().unwrap();
        let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["empty", "secret_key", "status"]);
        assert!(s.delete_setting("empty").unwrap());
        assert!(!s.delete_setting("empty").unwrap());
        assert_eq!(s.get_setting("empty").unwrap(), None);
    }

    pub fn buddies(s: &mut dyn Store) {
        let (a, b) = (oid('b'), oid3(1));
        assert!(s.upsert_buddy(full_buddy(b.clone())).unwrap());
        assert!(s
            .upsert_buddy(torchat_store::Buddy::new(a.clone(), BuddyKind::Temporary))
            .unwrap());
        assert_eq!(s.buddy(&b).unwrap(), Some(full_buddy(b.clone())));
        let mut changed = full_buddy(b.clone());
        changed.kind = BuddyKind::Blocked;
        changed.alias = None;
        changed.profile_text = Some(vec![]);
        assert!(!s.upsert_buddy(changed.clone()).unwrap());
        assert_eq!(s.buddy(&b).unwrap(), Some(changed));
        let ids: Vec<String> = s
            .buddies()
            .unwrap()
            .iter()
            .map(|x| x.id.to_string())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert_eq!(ids.len(), 2);
        assert!(s.remove_buddy(&a).unwrap());
        assert!(!s.remove_buddy(&a).unwrap());
        assert_eq!(s.buddy(&a).unwrap(), None);
        assert_eq!(s.buddies().unwrap().len(), 1);
    }

    pub fn groups_and_members(s: &mut dyn Store) {
        let (g1, g2) = (gid("g-2"), gid("g-1"));
        let mut grp = group(&g1, GroupState::Joining);
        grp.modes = vec!["noredundancy".into(), "x".into()];
        grp.invited_by = Some(oid('c'));
        assert!(s.upsert_group(grp.clone()).unwrap());
        assert!(s.upsert_group(group(&g2, GroupState::Joined)).unwrap());
        assert_eq!(s.group(&g1).unwrap(), Some(grp.clone()));
        assert_eq!(s.group(&gid("nope")).unwrap(), None);
        let gids: Vec<String> = s
            .groups()
            .unwrap()
            .iter()
            .map(|g| g.gid.to_string())
            .collect();
        assert_eq!(gids, ["g-1", "g-2"]);
        assert!(s.set_group_state(&g1, GroupState::Joined).unwrap());
        assert_eq!(s.group(&g1).unwrap().unwrap().state, GroupState::Joined);
        assert!(!s.set_group_state(&gid("nope"), GroupState::Left).unwrap());

        assert!(s.add_member(&g1, &oid('e'), 20).unwrap());
        assert!(s.add_member(&g1, &oid('d'), 20).unwrap());
        assert!(s.add_member(&g1, &oid3(9), 10).unwrap());
        assert!(!s.add_member(&g1, &oid('e'), 99).unwrap()); // kept added_at
        assert!(s.add_member(&g2, &oid('e'), 1).unwrap());
        let m = s.members(&g1).unwrap();
        let expect = [(oid3(9), 10), (oid('d'), 20), (oid('e'), 20)];
        assert_eq!(m.len(), 3);
        for (got, (id, at)) in m.iter().zip(expect) {
            assert_eq!((&got.gid, &got.id, got.added_at), (&g1, &id, at));
        }
        assert!(s.remove_member(&g1, &oid('d')).unwrap());
        assert!(!s.remove_member(&g1, &oid('d')).unwrap());
        assert_eq!(s.members(&g1).unwrap().len(), 2);
        assert_eq!(s.members(&g2).unwrap().len(), 1);
        assert_eq!(s.members(&gid("nope")).unwrap(), vec![]);
    }

    pub fn member_of_unknown_group_is_an_error(s: &mut dyn Store) {
        let err = s.add_member(&gid("ghost"), &oid('a'), 1).unwrap_err();
        assert!(matches!(err, Error::UnknownGroup(g) if g.as_str() == "ghost"));
        assert_eq!(s.members(&gid("ghost")).unwrap(), vec![]);
    }

    pub fn upsert_group_keeps_members(s: &mut dyn Store) {
        let g = gid("g");
        s.upsert_group(group(&g, GroupState::Joining)).unwrap();
        s.add_member(&g, &oid('a'), 1).unwrap();
        let mut again = group(&g, GroupState::Joined);
        again.modes = vec!["m".into()];
        assert!(!s.upsert_group(again.clone()).unwrap());
        assert_eq!(s.group(&g).unwrap(), Some(again));
        assert_eq!(s.members(&g).unwrap().len(), 1);
    }

    pub fn remove_group_cascades_members_keeps_messages(s: &mut dyn Store) {
        let g = gid("g");
        s.upsert_group(group(&g, GroupState::Joined)).unwrap();
        s.add_member(&g, &oid('a'), 1).unwrap();
        s.insert_message(msg_group(1, &g, &oid('a'), "hi")).unwrap();
        assert!(s.remove_group(&g).unwrap());
        assert!(!s.remove_group(&g).unwrap());
        assert_eq!(s.group(&g).unwrap(), None);
        assert_eq!(s.members(&g).unwrap(), vec![]);
        assert!(s.message(&mid(1)).unwrap().is_some());
        // Re-creating it starts without members.
        s.upsert_group(group(&g, GroupState::Joining)).unwrap();
        assert_eq!(s.members(&g).unwrap(), vec![]);
    }

    pub fn insert_message_is_idempotent(s: &mut dyn Store) {
        let a = oid('a');
        assert!(s.insert_message(msg_in(1, &a, "one")).unwrap());
        let first = s.message(&mid(1)).unwrap().unwrap();
        // Same id, different content: ignored, the first copy stays.
        assert!(!s.insert_message(msg_in(1, &a, "other")).unwrap());
        assert!(!s.insert_message(msg_in(1, &a, "one")).unwrap());
        assert_eq!(s.message(&mid(1)).unwrap().unwrap(), first);
        assert!(s.insert_message(msg_in(2, &a, "two")).unwrap());
        let h = s.history(&Conversation::Buddy(a), None, 10).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].msg.text, b"one");
        // Rows are not consumed by ignored inserts.
        assert_eq!(h[1].row.0, h[0].row.0 + 1);
        assert_eq!(s.message(&mid(3)).unwrap(), None);
    }

    pub fn message_fields_roundtrip(s: &mut dyn Store) {
        let g = gid("{uuid-like}");
        let deliveries = [
            Some(Delivery::Queued),
            Some(Delivery::Sent),
            Some(Delivery::Delivered(3)),
            Some(Delivery::Failed),
            None,
        ];
        let trusts = [
            Some(Trust::Direct { confirmations: 0 }),
            Some(Trust::Relayed { k: 2, n: 5 }),
            Some(Trust::Signed { k: 2, n: 4 }),
            Some(Trust::Unconfirmed { k: 1, n: 4 }),
            Some(Trust::Own),
            None,
        ];
        let mut n = 0;
        let mut sent = Vec::new();
        for d in deliveries {
            for t in trusts {
                n += 1;
                let m = Message {
                    id: mid(n),
                    conversation: if n % 2 == 0 {
                        Conversation::Group(g.clone())
                    } else {
                        Conversation::Buddy(oid3(2))
                    },
                    direction: if d.is_some() {
                        Direction::Out
                    } else {
                        Direction::In
                    },
                    sender: oid3(3),
                    text: vec![0, 255, b'\n', b'\\', n as u8],
                    timestamp: if n == 1 { MAX_TIME } else { n },
                    delivery: d,
                    trust: t,
                    sync: (n % 2 == 0).then_some(SyncInfo {
                        seq: n,
                        time: MAX_TIME - n,
                        sig: (n % 4 == 0).then_some([n as u8; 64]),
                    }),
                };
                assert!(s.insert_message(m.clone()).unwrap());
                sent.push(m);
            }
        }
        for m in &sent {
            assert_eq!(&s.message(&m.id).unwrap().unwrap().msg, m);
        }
    }

    pub fn delivery_and_trust_updates(s: &mut dyn Store) {
        let a = oid('a');
        let mut m = msg_in(1, &a, "x");
        m.direction = Direction::Out;
        m.delivery = Some(Delivery::Queued);
        s.insert_message(m).unwrap();
        assert!(s.update_delivery(&mid(1), Delivery::Sent).unwrap());
        assert!(s.update_delivery(&mid(1), Delivery::Delivered(4)).unwrap());
        assert!(s
            .update_trust(&mid(1), Trust::Relayed { k: 1, n: 2 })
            .unwrap());
        let got = s.message(&mid(1)).unwrap().unwrap().msg;
        assert_eq!(got.delivery, Some(Delivery::Delivered(4)));
        assert_eq!(got.trust, Some(Trust::Relayed { k: 1, n: 2 }));
        assert!(!s.update_delivery(&mid(9), Delivery::Sent).unwrap());
        assert!(!s.update_trust(&mid(9), Trust::Own).unwrap());
        assert_eq!(s.message(&mid(9)).unwrap(), None);
    }

    pub fn history_pages_and_isolation(s: &mut dyn Store) {
        let a = oid('a');
        // A group whose id is the same text as the buddy id: a different conversation.
        let g = gid(a.as_str());
        for n in 1..=10 {
            s.insert_message(msg_in(n, &a, &format!("m{n}"))).unwrap();
            s.insert_message(msg_group(100 + n, &g, &a, "g")).unwrap();
        }
        let conv = Conversation::Buddy(a.clone());
        let texts = |v: &[torchat_store::StoredMessage]| -> Vec<String> {
            v.iter()
                .map(|m| String::from_utf8(m.msg.text.clone()).unwrap())
                .collect()
        };
        let p1 = s.history(&conv, None, 4).unwrap();
        assert_eq!(texts(&p1), ["m7", "m8", "m9", "m10"]);
        let p2 = s.history(&conv, Some(p1[0].row), 4).unwrap();
        assert_eq!(texts(&p2), ["m3", "m4", "m5", "m6"]);
        let p3 = s.history(&conv, Some(p2[0].row), 4).unwrap();
        assert_eq!(texts(&p3), ["m1", "m2"]);
        assert_eq!(s.history(&conv, Some(p3[0].row), 4).unwrap(), vec![]);
        assert_eq!(s.history(&conv, None, 0).unwrap(), vec![]);
        assert_eq!(s.history(&conv, Some(RowId(0)), 10).unwrap(), vec![]);
        assert_eq!(
            s.history(&conv, Some(RowId(u64::MAX)), 100).unwrap().len(),
            10
        );
        let gh = s.history(&Conversation::Group(g), None, 100).unwrap();
        assert_eq!(gh.len(), 10);
        assert!(gh.iter().all(|m| m.msg.text == b"g"));
        assert_eq!(
            s.history(&Conversation::Buddy(oid('z')), None, 5).unwrap(),
            vec![]
        );
    }

    pub fn conversations_order(s: &mut dyn Store) {
        assert_eq!(s.conversations().unwrap(), vec![]);
        let (a, b, g) = (oid('a'), oid('b'), gid("g"));
        s.insert_message(msg_in(1, &a, "1")).unwrap();
        s.insert_message(msg_in(2, &b, "2")).unwrap();
        s.insert_message(msg_group(3, &g, &a, "3")).unwrap();
        s.insert_message(msg_in(4, &a, "4")).unwrap();
        assert_eq!(
            s.conversations().unwrap(),
            vec![
                Conversation::Buddy(a),
                Conversation::Group(g),
                Conversation::Buddy(b)
            ]
        );
    }

    pub fn claims_unique_per_message_and_claimant(s: &mut dyn Store) {
        let g = gid("g");
        s.insert_message(msg_group(1, &g, &oid('a'), "x")).unwrap();
        s.insert_message(msg_group(2, &g, &oid('a'), "y")).unwrap();
        let claim = |m, c: char, at| Claim {
            msg_id: mid(m),
            claimant: oid(c),
            received_at: at,
        };
        assert!(s.add_claim(claim(1, 'c', 30)).unwrap());
        assert!(s.add_claim(claim(1, 'b', 30)).unwrap());
        assert!(s.add_claim(claim(1, 'd', 10)).unwrap());
        assert!(!s.add_claim(claim(1, 'c', 99)).unwrap()); // same claimant: ignored
        assert!(s.add_claim(claim(2, 'c', 5)).unwrap()); // other message: fine
        assert_eq!(
            s.claims(&mid(1)).unwrap(),
            vec![claim(1, 'd', 10), claim(1, 'b', 30), claim(1, 'c', 30)]
        );
        assert_eq!(s.claims(&mid(2)).unwrap(), vec![claim(2, 'c', 5)]);
        assert_eq!(s.claims(&mid(3)).unwrap(), vec![]);
    }

    pub fn claim_on_unknown_message_is_an_error(s: &mut dyn Store) {
        let c = Claim {
            msg_id: mid(7),
            claimant: oid('c'),
            received_at: 1,
        };
        assert!(matches!(s.add_claim(c), Err(Error::UnknownMessage(id)) if id == mid(7)));
        assert_eq!(s.claims(&mid(7)).unwrap(), vec![]);
    }

    pub fn outbox_lifecycle(s: &mut dyn Store) {
        let (a, b, c) = (oid('a'), oid('b'), oid('c'));
        s.insert_message(msg_in(1, &a, "x")).unwrap();
        s.insert_message(msg_in(2, &a, "y")).unwrap();
        assert!(s.outbox_add(&mid(1), &b, 100, 1_000).unwrap());
        assert!(s.outbox_add(&mid(1), &a, 100, 500).unwrap());
        assert!(s.outbox_add(&mid(2), &c, 50, 2_000).unwrap());
        assert!(!s.outbox_add(&mid(1), &b, 999, 9_999).unwrap()); // kept the first
        let order: Vec<_> = s
            .outbox()
            .unwrap()
            .into_iter()
            .map(|e| (e.msg_id, e.dest))
            .collect();
        assert_eq!(
            order,
            [
                (mid(2), c.clone()),
                (mid(1), a.clone()),
                (mid(1), b.clone())
            ]
        );
        assert_eq!(s.outbox_due(49).unwrap(), vec![]);
        assert_eq!(s.outbox_due(50).unwrap().len(), 1);
        assert_eq!(s.outbox_due(100).unwrap().len(), 3);

        assert!(s.outbox_attempt(&mid(1), &b, 300).unwrap());
        assert!(s.outbox_attempt(&mid(1), &b, 400).unwrap());
        assert!(!s.outbox_attempt(&mid(1), &c, 400).unwrap());
        let e = s.outbox().unwrap().into_iter().nth(2).unwrap();
        assert_eq!(
            e,
            OutboxEntry {
                msg_id: mid(1),
                dest: b.clone(),
                created_at: 100,
                expires_at: 1_000,
                attempts: 2,
                next_at: 400
            }
        );
        assert_eq!(s.outbox_due(399).unwrap().len(), 2);
        assert_eq!(s.outbox_due(400).unwrap().len(), 3);
        // expires_at is exclusive for "due".
        assert_eq!(s.outbox_due(500).unwrap().len(), 2);

        assert!(s.outbox_remove(&mid(2), &c).unwrap());
        assert!(!s.outbox_remove(&mid(2), &c).unwrap());
        assert_eq!(s.outbox_expire(499).unwrap(), vec![]);
        let gone = s.outbox_expire(1_000).unwrap();
        let gone: Vec<_> = gone.into_iter().map(|e| e.dest).collect();
        assert_eq!(gone, [a, b]);
        assert_eq!(s.outbox().unwrap(), vec![]);
        assert_eq!(s.outbox_expire(u64::MAX).unwrap(), vec![]);
        // The messages themselves stay.
        assert!(s.message(&mid(1)).unwrap().is_some());
    }

    pub fn outbox_needs_a_stored_message(s: &mut dyn Store) {
        let err = s.outbox_add(&mid(5), &oid('a'), 1, 2).unwrap_err();
        assert!(matches!(err, Error::UnknownMessage(id) if id == mid(5)));
        assert_eq!(s.outbox().unwrap(), vec![]);
    }

    pub fn batch_results(s: &mut dyn Store) {
        let (a, g) = (oid('a'), gid("g"));
        let mut m = msg_in(1, &a, "sent");
        m.direction = Direction::Out;
        m.delivery = Some(Delivery::Queued);
        let ops = [
            Op::PutSetting {
                key: "k".into(),
                value: b"v".to_vec(),
            },
            Op::PutSetting {
                key: "k".into(),
                value: b"w".to_vec(),
            },
            Op::InsertMessage(m.clone()),
            Op::InsertMessage(m),
            Op::OutboxAdd(OutboxEntry::new(mid(1), a.clone(), 1, 10)),
            Op::OutboxAdd(OutboxEntry::new(mid(1), oid('b'), 1, 5)),
            Op::UpsertGroup(group(&g, GroupState::Joined)),
            Op::AddMember(Member {
                gid: g.clone(),
                id: a.clone(),
                added_at: 1,
            }),
            Op::OutboxExpire { now: 7 },
            Op::DeleteSetting { key: "k".into() },
            Op::RemoveGroup(g),
            Op::UpdateDelivery {
                id: mid(1),
                delivery: Delivery::Sent,
            },
        ];
        assert_eq!(s.apply(&ops).unwrap(), [1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!(s.apply(&[]).unwrap(), Vec::<u64>::new());
        assert_eq!(s.outbox().unwrap().len(), 1);
        assert_eq!(s.get_setting("k").unwrap(), None);
    }

    pub fn batch_is_all_or_nothing(s: &mut dyn Store) {
        let a = oid('a');
        s.insert_message(msg_in(1, &a, "before")).unwrap();
        let before = dump(s, &[gid("g")]);
        let ops = [
            Op::PutSetting {
                key: "k".into(),
                value: vec![1],
            },
            Op::InsertMessage(msg_in(2, &a, "lost")),
            Op::UpsertGroup(group(&gid("g"), GroupState::Joined)),
            Op::AddMember(Member {
                gid: gid("g"),
                id: a.clone(),
                added_at: 1,
            }),
            Op::UpdateDelivery {
                id: mid(1),
                delivery: Delivery::Failed,
            },
            Op::OutboxAdd(OutboxEntry::new(mid(99), a.clone(), 1, 2)), // fails
        ];
        assert!(matches!(s.apply(&ops), Err(Error::UnknownMessage(_))));
        assert_eq!(dump(s, &[gid("g")]), before);
        // The row numbers were not consumed either.
        assert!(s.insert_message(msg_in(3, &a, "after")).unwrap());
        let row1 = s.message(&mid(1)).unwrap().unwrap().row;
        assert_eq!(s.message(&mid(3)).unwrap().unwrap().row.0, row1.0 + 1);
    }

    pub fn queued_messages_are_the_unsent_outgoing_ones(s: &mut dyn Store) {
        let (a, b) = (oid('a'), oid('b'));
        let out = |n: u64, to: &torchat_wire::OnionId, d: Delivery| {
            let mut m = msg_in(n, to, &format!("out {n}"));
            m.direction = Direction::Out;
            m.sender = oid('z');
            m.delivery = Some(d);
            m
        };
        s.insert_message(out(1, &a, Delivery::Queued)).unwrap();
        s.insert_message(out(2, &b, Delivery::Sent)).unwrap();
        s.insert_message(msg_in(3, &a, "in")).unwrap();
        s.insert_message(out(4, &b, Delivery::Queued)).unwrap();
        // Our own group message is queued too, but it is not a 1:1 message.
        let mut g = msg_group(5, &gid("g"), &oid('z'), "group");
        g.direction = Direction::Out;
        g.delivery = Some(Delivery::Queued);
        s.insert_message(g).unwrap();
        s.insert_message(out(6, &a, Delivery::Queued)).unwrap();
        let ids = |s: &dyn Store| -> Vec<_> {
            s.queued_messages()
                .unwrap()
                .into_iter()
                .map(|m| m.msg.id)
                .collect()
        };
        assert_eq!(ids(s), [mid(1), mid(4), mid(6)]);
        let first = &s.queued_messages().unwrap()[0];
        assert_eq!(first.msg.text, b"out 1");
        assert_eq!(first.msg.conversation, Conversation::Buddy(a.clone()));
        s.update_delivery(&mid(4), Delivery::Sent).unwrap();
        s.update_delivery(&mid(1), Delivery::Failed).unwrap();
        assert_eq!(ids(s), [mid(6)]);
    }

    pub fn batch_sees_its_own_earlier_ops(s: &mut dyn Store) {
        let a = oid('a');
        // A message, a claim and an outbox entry on it, a group and a member of it: one batch.
        let ops = [
            Op::InsertMessage(msg_in(1, &a, "x")),
            Op::AddClaim(Claim {
                msg_id: mid(1),
                claimant: a.clone(),
                received_at: 5,
            }),
            Op::OutboxAdd(OutboxEntry::new(mid(1), a.clone(), 1, 2)),
            Op::UpsertGroup(group(&gid("g"), GroupState::Joined)),
            Op::AddMember(Member {
                gid: gid("g"),
                id: a.clone(),
                added_at: 1,
            }),
        ];
        assert_eq!(s.apply(&ops).unwrap(), [1, 1, 1, 1, 1]);
        // A member of a group removed earlier in the same batch is refused, and nothing of
        // the batch stays.
        let before = dump(s, &[gid("g")]);
        let ops = [
            Op::InsertMessage(msg_in(2, &a, "y")),
            Op::RemoveGroup(gid("g")),
            Op::AddMember(Member {
                gid: gid("g"),
                id: oid('b'),
                added_at: 1,
            }),
        ];
        assert!(matches!(s.apply(&ops), Err(Error::UnknownGroup(_))));
        assert_eq!(dump(s, &[gid("g")]), before);
    }

    pub fn commits_are_counted(s: &mut dyn Store) {
        let a = oid('a');
        let c0 = s.commits();
        s.insert_message(msg_in(1, &a, "x")).unwrap();
        let ops = [
            Op::InsertMessage(msg_in(2, &a, "y")),
            Op::InsertMessage(msg_in(3, &a, "z")),
        ];
        s.apply(&ops).unwrap();
        assert_eq!(s.commits(), c0 + 2);
        // A failed batch commits nothing.
        let bad = [Op::OutboxAdd(OutboxEntry::new(mid(99), a.clone(), 1, 2))];
        assert!(s.apply(&bad).is_err());
        assert_eq!(s.commits(), c0 + 2);
    }

    pub fn invalid_values_are_rejected(s: &mut dyn Store) {
        let a = oid('a');
        let mut m = msg_in(1, &a, "x");
        m.timestamp = MAX_TIME + 1;
        assert!(matches!(s.insert_message(m), Err(Error::Invalid(_))));
        let mut g = group(&gid("g"), GroupState::Joined);
        g.modes = vec!["two words".into()];
        assert!(matches!(s.upsert_group(g.clone()), Err(Error::Invalid(_))));
        g.modes = vec![String::new()];
        assert!(matches!(s.upsert_group(g), Err(Error::Invalid(_))));
        s.insert_message(msg_in(2, &a, "ok")).unwrap();
        let late = s.outbox_add(&mid(2), &a, 1, u64::MAX);
        assert!(matches!(late, Err(Error::Invalid(_))));
        // A valid op before an invalid one in a batch is not applied either.
        let ops = [
            Op::PutSetting {
                key: "k".into(),
                value: vec![],
            },
            Op::OutboxAttempt {
                id: mid(2),
                dest: a.clone(),
                next_at: u64::MAX,
            },
        ];
        assert!(matches!(s.apply(&ops), Err(Error::Invalid(_))));
        assert_eq!(s.get_setting("k").unwrap(), None);
        assert_eq!(s.groups().unwrap(), vec![]);
        assert_eq!(s.outbox().unwrap(), vec![]);
        assert_eq!(s.conversations().unwrap(), vec![Conversation::Buddy(a)]);
    }

    pub fn packet_queue_keeps_order(s: &mut dyn Store) {
        let q = |n: u64, to: char| QueuedPacket {
            id: mid(n),
            dest: oid(to),
            gid: gid("g"),
            line: format!("groupchat_message g {n}\n").into_bytes(),
            expires_at: 1000 + n,
            own: (n % 2 == 0).then(|| mid(n + 100)),
        };
        assert_eq!(s.queued_packets().unwrap(), vec![]);
        let r = s
            .apply(&[
                Op::QueuePacket(q(3, 'b')),
                Op::QueuePacket(q(1, 'a')),
                Op::QueuePacket(q(2, 'b')),
            ])
            .unwrap();
        assert_eq!(r, vec![1, 1, 1]);
        // Replaying an insert is a no-op.
        assert_eq!(s.apply(&[Op::QueuePacket(q(1, 'a'))]).unwrap(), vec![0]);
        assert_eq!(
            s.queued_packets().unwrap(),
            vec![q(3, 'b'), q(1, 'a'), q(2, 'b')]
        );
        assert_eq!(
            s.apply(&[
                Op::DequeuePacket { id: mid(1) },
                Op::DequeuePacket { id: mid(1) }
            ])
            .unwrap(),
            vec![1, 0]
        );
        assert_eq!(s.queued_packets().unwrap(), vec![q(3, 'b'), q(2, 'b')]);
    }

    fn synced(
        n: u64,
        g: &torchat_wire::GroupId,
        from: &torchat_wire::OnionId,
        seq: u64,
    ) -> Message {
        let mut m = msg_group(n, g, from, &format!("m{n}"));
        m.sync = Some(SyncInfo {
            seq,
            time: 5_000 + seq,
            sig: None,
        });
        m
    }

    pub fn sync_messages_are_unique_per_group_sender_and_seq(s: &mut dyn Store) {
        let (g, h, a, b) = (gid("g"), gid("h"), oid('a'), oid('b'));
        assert!(s.insert_message(synced(1, &g, &a, 1)).unwrap());
        // Same speaker and number in the group under another id: not stored again.
        assert!(!s.insert_message(synced(2, &g, &a, 1)).unwrap());
        assert!(s.message(&mid(2)).unwrap().is_none());
        // Another speaker, another group, another number: fine.
        assert!(s.insert_message(synced(3, &g, &b, 1)).unwrap());
        assert!(s.insert_message(synced(4, &h, &a, 1)).unwrap());
        assert!(s.insert_message(synced(5, &g, &a, 3)).unwrap());
        assert!(s.insert_message(synced(6, &g, &a, 2)).unwrap());
        let seqs: Vec<u64> = s
            .sync_range(&g, &a, 1, 10)
            .unwrap()
            .iter()
            .map(|m| m.msg.sync.unwrap().seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(s.sync_range(&g, &a, 2, 2).unwrap()[0].msg.id, mid(6));
        assert!(s.sync_range(&g, &a, 4, 10).unwrap().is_empty());
        // Sync data attached later to a plain copy: once, and never a second (3).
        assert!(s.insert_message(msg_group(7, &g, &a, "plain")).unwrap());
        let info = |seq| SyncInfo {
            seq,
            time: 1,
            sig: Some([7; 64]),
        };
        let set = |id, seq| Op::SetSyncInfo {
            id: mid(id),
            sync: info(seq),
        };
        assert_eq!(s.apply(&[set(7, 3)]).unwrap(), [0]);
        assert_eq!(s.apply(&[set(7, 4)]).unwrap(), [1]);
        assert_eq!(s.apply(&[set(7, 5)]).unwrap(), [0]);
        assert_eq!(s.apply(&[set(99, 9)]).unwrap(), [0]);
        assert_eq!(s.message(&mid(7)).unwrap().unwrap().msg.sync, Some(info(4)));
        let bad = Op::SetSyncInfo {
            id: mid(7),
            sync: info(0),
        };
        assert!(matches!(s.apply(&[bad]), Err(Error::Invalid(_))));
    }

    pub fn sync_state_is_kept(s: &mut dyn Store) {
        let (g, h, a, b) = (gid("g"), gid("h"), oid('a'), oid('b'));
        let seq = |gid: &torchat_wire::GroupId, next| Op::SetSyncSeq {
            gid: gid.clone(),
            next,
        };
        assert_eq!(s.apply(&[seq(&g, 5)]).unwrap(), [1]);
        // Never lowered.
        assert_eq!(s.apply(&[seq(&g, 3)]).unwrap(), [0]);
        assert_eq!(s.apply(&[seq(&g, 6), seq(&h, 2)]).unwrap(), [1, 1]);
        assert_eq!(s.sync_seqs().unwrap(), [(g.clone(), 6), (h.clone(), 2)]);
        let held = SeqSet::parse(b"57,60-62").unwrap();
        let v = |m: &torchat_wire::OnionId, held: SeqSet| Op::SetSyncVector {
            gid: g.clone(),
            member: m.clone(),
            speaker: a.clone(),
            held,
        };
        assert_eq!(s.apply(&[v(&b, SeqSet::upto(3))]).unwrap(), [1]);
        assert_eq!(s.apply(&[v(&b, held.clone())]).unwrap(), [0]);
        assert_eq!(s.apply(&[v(&a, SeqSet::upto(9))]).unwrap(), [1]);
        assert_eq!(
            s.sync_vectors(&g).unwrap(),
            [
                (a.clone(), a.clone(), SeqSet::upto(9)),
                (b.clone(), a.clone(), held)
            ]
        );
        assert!(s.sync_vectors(&h).unwrap().is_empty());
        let ext = |id: &torchat_wire::OnionId, e: &[&str]| Op::SetPeerExtensions {
            id: id.clone(),
            extensions: e.iter().map(|x| x.to_string()).collect(),
        };
        assert_eq!(s.apply(&[ext(&b, &["groupchat"])]).unwrap(), [1]);
        assert_eq!(
            s.apply(&[ext(&b, &["groupchat", "torchat_sync"])]).unwrap(),
            [0]
        );
        assert_eq!(
            s.peer_extensions().unwrap(),
            [(b, vec!["groupchat".to_owned(), "torchat_sync".to_owned()])]
        );
        assert!(matches!(
            s.apply(&[ext(&a, &["two words"])]),
            Err(Error::Invalid(_))
        ));
    }

    pub fn pruning_group_history(s: &mut dyn Store) {
        let (g, a) = (gid("g"), oid('a'));
        for n in 1..=4 {
            s.insert_message(synced(n, &g, &a, n)).unwrap(); // timestamps 1001..1004
        }
        s.insert_message(msg_in(5, &a, "1:1 stays")).unwrap(); // 1005
        let mut old_1to1 = msg_in(6, &a, "old 1:1 stays");
        old_1to1.timestamp = 1;
        s.insert_message(old_1to1).unwrap();
        s.add_claim(Claim {
            msg_id: mid(1),
            claimant: oid('b'),
            received_at: 1,
        })
        .unwrap();
        s.outbox_add(&mid(2), &oid('b'), 1, 99).unwrap();
        assert_eq!(
            s.apply(&[Op::PruneGroupHistory { before: 1003 }]).unwrap(),
            [2]
        );
        assert!(s.message(&mid(1)).unwrap().is_none());
        assert!(s.claims(&mid(1)).unwrap().is_empty());
        assert!(s.outbox().unwrap().is_empty());
        assert!(s.message(&mid(6)).unwrap().is_some());
        let left: Vec<u64> = s
            .sync_range(&g, &a, 1, 9)
            .unwrap()
            .iter()
            .map(|m| m.msg.sync.unwrap().seq)
            .collect();
        assert_eq!(left, [3, 4]);
        // A pruned number can be stored again (another member sends it back): the node's
        // sync state, not the store, decides that it already had it.
        assert!(s.insert_message(synced(11, &g, &a, 1)).unwrap());
    }

    pub fn transfers_roundtrip(s: &mut dyn Store) {
        let t = Transfer {
            id: 7,
            direction: Direction::In,
            peer: torchat_wire::OnionId::parse("abcdefghijklmnop").unwrap(),
            wire_id: "4271718197".into(),
            name: b"../odd\0name".to_vec(),
            size: 20480,
            done: 8192,
            state: "transferring".into(),
            reason: None,
            resumable: true,
            accepted: true,
            path: Some(b"/tmp/odd name".to_vec()),
            part: Some(b"/tmp/odd name.part".to_vec()),
            created_at: 1,
            updated_at: 2,
        };
        assert_eq!(s.apply(&[Op::UpsertTransfer(t.clone())]).unwrap(), [1]);
        let mut t2 = t.clone();
        t2.state = "failed".into();
        t2.reason = Some("stalled".into());
        t2.id = 3;
        t2.direction = Direction::Out;
        t2.path = None;
        t2.part = None;
        assert_eq!(s.apply(&[Op::UpsertTransfer(t2.clone())]).unwrap(), [1]);
        assert_eq!(s.transfers().unwrap(), [t2.clone(), t.clone()]);
        let mut t3 = t.clone();
        t3.done = 20480;
        t3.state = "complete".into();
        assert_eq!(s.apply(&[Op::UpsertTransfer(t3.clone())]).unwrap(), [0]);
        assert_eq!(s.transfers().unwrap(), [t2.clone(), t3]);
        let mut bad = t.clone();
        bad.state = "bogus".into();
        assert!(s.apply(&[Op::UpsertTransfer(bad)]).is_err());
        assert_eq!(s.apply(&[Op::RemoveTransfer { id: 7 }]).unwrap(), [1]);
        assert_eq!(s.apply(&[Op::RemoveTransfer { id: 7 }]).unwrap(), [0]);
        assert_eq!(s.transfers().unwrap(), [t2]);
    }

    pub fn requests_roundtrip(s: &mut dyn Store) {
        let p = torchat_wire::OnionId::parse("strangerstranger").unwrap();
        let q = torchat_wire::OnionId::parse("otherotherothera").unwrap();
        let r = Request {
            peer: p.clone(),
            added_me: true,
            first_at: 10,
            last_at: 20,
            dropped: 3,
        };
        let m = |n: u8, who: &torchat_wire::OnionId| RequestMessage {
            id: torchat_store::MsgId([n; 16]),
            peer: who.clone(),
            text: vec![0, b'\r', 0x1b, n],
            at: u64::from(n),
        };
        assert_eq!(
            s.apply(&[
                Op::UpsertRequest(r.clone()),
                Op::AddRequestMessage(m(2, &p)),
                Op::AddRequestMessage(m(1, &p)),
                Op::AddRequestMessage(m(1, &p)),
                Op::AddRequestMessage(m(3, &q)),
            ])
            .unwrap(),
            [1, 1, 1, 0, 1]
        );
        let mut r2 = r.clone();
        r2.dropped = 4;
        assert_eq!(s.apply(&[Op::UpsertRequest(r2.clone())]).unwrap(), [0]);
        assert_eq!(s.requests().unwrap(), [r2]);
        assert_eq!(
            s.request_messages().unwrap(),
            [m(2, &p), m(1, &p), m(3, &q)]
        );
        assert_eq!(
            s.apply(&[Op::RemoveRequestMessage {
                id: torchat_store::MsgId([2; 16])
            }])
            .unwrap(),
            [1]
        );
        assert_eq!(s.apply(&[Op::RemoveRequest(p.clone())]).unwrap(), [1]);
        assert_eq!(s.apply(&[Op::RemoveRequest(p)]).unwrap(), [0]);
        assert!(s.requests().unwrap().is_empty());
        assert_eq!(s.request_messages().unwrap(), [m(3, &q)]);
    }
}
