//! The two implementations agree: the same pseudo-random batches (valid and invalid) applied
//! to a `MemoryStore` and a `SqliteStore` give the same results, errors and contents.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use torchat_store::{
    Buddy, BuddyKind, Claim, Conversation, Delivery, Direction, Error, Group, GroupState, Member,
    MemoryStore, Message, Op, OutboxEntry, SeqSet, Store, SyncInfo, Trust, MAX_TIME,
};
use torchat_wire::{GroupId, OnionId};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Clone>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize].clone()
    }
    fn time(&mut self) -> u64 {
        match self.below(20) {
            0 => MAX_TIME + 1, // invalid
            1 => MAX_TIME,
            _ => self.below(100),
        }
    }
}

struct Pools {
    ids: Vec<OnionId>,
    gids: Vec<GroupId>,
}

fn conversation(r: &mut Rng, p: &Pools) -> Conversation {
    if r.below(2) == 0 {
        Conversation::Buddy(r.pick(&p.ids))
    } else {
        Conversation::Group(r.pick(&p.gids))
    }
}

fn delivery(r: &mut Rng) -> Delivery {
    match r.below(4) {
        0 => Delivery::Queued,
        1 => Delivery::Sent,
        2 => Delivery::Delivered(r.below(5) as u32),
        _ => Delivery::Failed,
    }
}

fn trust(r: &mut Rng) -> Trust {
    match r.below(5) {
        0 => Trust::Direct {
            confirmations: r.below(4) as u32,
        },
        1 => Trust::Relayed {
            k: r.below(4) as u32,
            n: r.below(4) as u32,
        },
        2 => Trust::Signed { k: 2, n: 3 },
        3 => Trust::Unconfirmed { k: 1, n: 2 },
        _ => Trust::Own,
    }
}

fn op(r: &mut Rng, p: &Pools) -> Op {
    let id = mid(r.below(12));
    match r.below(22) {
        0 => Op::PutSetting {
            key: format!("k{}", r.below(3)),
            value: vec![r.below(256) as u8; r.below(4) as usize],
        },
        1 => Op::DeleteSetting {
            key: format!("k{}", r.below(3)),
        },
        2 => {
            let mut b = Buddy::new(
                r.pick(&p.ids),
                r.pick(&[
                    BuddyKind::Permanent,
                    BuddyKind::Temporary,
                    BuddyKind::Blocked,
                ]),
            );
            b.alias = (r.below(2) == 0).then(|| format!("alias {}", r.below(9)));
            b.profile_name = (r.below(2) == 0).then(|| vec![0xff; r.below(3) as usize]);
            Op::UpsertBuddy(b)
        }
        3 => Op::RemoveBuddy(r.pick(&p.ids)),
        4 => Op::UpsertGroup(Group {
            gid: r.pick(&p.gids),
            modes: (0..r.below(3))
                .map(|i| {
                    if r.below(15) == 0 {
                        "bad mode".into()
                    } else {
                        format!("m{i}")
                    }
                })
                .collect(),
            invited_by: (r.below(2) == 0).then(|| r.pick(&p.ids)),
            state: r.pick(&[GroupState::Joining, GroupState::Joined, GroupState::Left]),
            created_at: r.time(),
        }),
        5 => Op::SetGroupState {
            gid: r.pick(&p.gids),
            state: GroupState::Left,
        },
        6 => Op::RemoveGroup(r.pick(&p.gids)),
        7 => Op::AddMember(Member {
            gid: r.pick(&p.gids),
            id: r.pick(&p.ids),
            added_at: r.time(),
        }),
        8 => Op::RemoveMember {
            gid: r.pick(&p.gids),
            id: r.pick(&p.ids),
        },
        9 | 10 => Op::InsertMessage(Message {
            id,
            conversation: conversation(r, p),
            direction: r.pick(&[Direction::In, Direction::Out]),
            sender: r.pick(&p.ids),
            text: vec![b'x'; r.below(5) as usize],
            timestamp: r.time(),
            delivery: (r.below(2) == 0).then(|| delivery(r)),
            trust: (r.below(2) == 0).then(|| trust(r)),
            sync: (r.below(2) == 0).then(|| SyncInfo {
                seq: r.below(4),
                time: r.time(),
                sig: (r.below(2) == 0).then_some([1; 64]),
            }),
        }),
        11 => Op::UpdateDelivery {
            id,
            delivery: delivery(r),
        },
        12 => Op::UpdateTrust {
            id,
            trust: trust(r),
        },
        13 => Op::AddClaim(Claim {
            msg_id: id,
            claimant: r.pick(&p.ids),
            received_at: r.time(),
        }),
        14 => {
            let created = r.time();
            let mut e = OutboxEntry::new(id, r.pick(&p.ids), created, r.time());
            e.next_at = r.time();
            Op::OutboxAdd(e)
        }
        17 => Op::SetSyncInfo {
            id,
            sync: SyncInfo {
                seq: r.below(4),
                time: r.time(),
                sig: None,
            },
        },
        18 => Op::SetSyncSeq {
            gid: r.pick(&p.gids),
            next: r.time(),
        },
        19 => Op::SetSyncVector {
            gid: r.pick(&p.gids),
            member: r.pick(&p.ids),
            speaker: r.pick(&p.ids),
            held: SeqSet {
                upto: r.below(9),
                ranges: if r.below(2) == 0 {
                    vec![(20, 25)]
                } else {
                    vec![]
                },
            },
        },
        20 => Op::SetPeerExtensions {
            id: r.pick(&p.ids),
            extensions: (0..r.below(3)).map(|i| format!("ext{i}")).collect(),
        },
        21 => Op::PruneGroupHistory {
            before: r.below(60),
        },
        15 => Op::OutboxAttempt {
            id,
            dest: r.pick(&p.ids),
            next_at: r.time(),
        },
        _ => {
            if r.below(2) == 0 {
                Op::OutboxRemove {
                    id,
                    dest: r.pick(&p.ids),
                }
            } else {
                Op::OutboxExpire { now: r.below(120) }
            }
        }
    }
}

/// Results made comparable across implementations.
fn outcome(r: Result<Vec<u64>, Error>) -> String {
    match r {
        Ok(v) => format!("ok {v:?}"),
        Err(Error::UnknownMessage(id)) => format!("unknown message {id}"),
        Err(Error::UnknownGroup(g)) => format!("unknown group {g}"),
        Err(Error::Invalid(_)) => "invalid".into(),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn memory_and_sqlite_agree() {
    let p = Pools {
        ids: vec![oid('a'), oid('b'), oid3(1), oid3(2)],
        gids: vec![gid("g1"), gid("g2"), gid(oid('a').as_str())],
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut mem = MemoryStore::new();
    let (mut sql, _dir) = sqlite();
    let mut errors = 0;
    for step in 0..600 {
        let n = 1 + rng.below(3);
        let ops: Vec<Op> = (0..n).map(|_| op(&mut rng, &p)).collect();
        let a = outcome(mem.apply(&ops));
        let b = outcome(sql.apply(&ops));
        assert_eq!(a, b, "step {step}: {ops:?}");
        errors += usize::from(!a.starts_with("ok"));
        let now = rng.below(120);
        assert_eq!(mem.outbox_due(now).unwrap(), sql.outbox_due(now).unwrap());
        if step % 50 == 49 {
            assert_eq!(
                mem.outbox_expire(now).unwrap(),
                sql.outbox_expire(now).unwrap()
            );
        }
        assert_eq!(dump(&mem, &p.gids), dump(&sql, &p.gids), "step {step}");
        let c = conversation(&mut rng, &p);
        let before = Some(torchat_store::RowId(rng.below(40)));
        let limit = rng.below(5) as usize;
        assert_eq!(
            mem.history(&c, before, limit).unwrap(),
            sql.history(&c, before, limit).unwrap()
        );
    }
    let d = dump(&mem, &p.gids);
    assert!(!d.messages.is_empty() && !d.groups.is_empty());
    assert!(
        errors > 0 && errors < 600,
        "{errors} failed batches: the mix is off"
    );
}
