//! Helpers shared by the integration tests: ids, builders, a full dump of a store.
#![allow(dead_code, clippy::unwrap_used)]

use torchat_store::{
    Buddy, BuddyKind, Claim, Conversation, Direction, Group, GroupState, Member, Message, MsgId,
    OutboxEntry, SqliteStore, Store, StoredMessage,
};
use torchat_wire::{GroupId, OnionId};

/// A v2 id made of one repeated letter (`a`..`z`, `2`..`7`).
pub fn oid(c: char) -> OnionId {
    OnionId::parse(&c.to_string().repeat(16)).unwrap()
}

/// A v3 id.
pub fn oid3(seed: u8) -> OnionId {
    OnionId::from_ed25519_public_key(&[seed; 32])
}

/// A group id.
pub fn gid(s: &str) -> GroupId {
    GroupId::new(s).unwrap()
}

/// A message id from a number.
pub fn mid(n: u64) -> MsgId {
    let mut b = [0u8; 16];
    b[8..].copy_from_slice(&n.to_be_bytes());
    b[0] = 0xa5;
    MsgId(b)
}

/// An incoming 1:1 message from `from`.
pub fn msg_in(n: u64, from: &OnionId, text: &str) -> Message {
    Message {
        id: mid(n),
        conversation: Conversation::Buddy(from.clone()),
        direction: Direction::In,
        sender: from.clone(),
        text: text.as_bytes().to_vec(),
        timestamp: 1_000 + n,
        delivery: None,
        trust: None,
        sync: None,
    }
}

/// A group message in `g` from `from`.
pub fn msg_group(n: u64, g: &GroupId, from: &OnionId, text: &str) -> Message {
    Message {
        id: mid(n),
        conversation: Conversation::Group(g.clone()),
        direction: Direction::In,
        sender: from.clone(),
        text: text.as_bytes().to_vec(),
        timestamp: 1_000 + n,
        delivery: None,
        trust: Some(torchat_store::Trust::Direct { confirmations: 0 }),
        sync: None,
    }
}

/// A group with default fields.
pub fn group(g: &GroupId, state: GroupState) -> Group {
    Group {
        gid: g.clone(),
        modes: vec![],
        invited_by: None,
        state,
        created_at: 5,
    }
}

/// A buddy with every field set.
pub fn full_buddy(id: OnionId) -> Buddy {
    Buddy {
        id,
        kind: BuddyKind::Permanent,
        alias: Some("Bob ☺".into()),
        profile_name: Some(b"bob".to_vec()),
        profile_text: Some(vec![0xff, 0, b'\n']),
        client: Some(b"TorChat".to_vec()),
        version: Some(b"0.9.9.553".to_vec()),
    }
}

/// A fresh SQLite store in a temporary directory (kept alive by the returned guard).
pub fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("torchat.db")).unwrap();
    (store, dir)
}

/// Everything a store holds, in a comparable form.
#[derive(Debug, PartialEq, Eq)]
pub struct Dump {
    pub settings: Vec<(String, Vec<u8>)>,
    pub buddies: Vec<Buddy>,
    pub groups: Vec<Group>,
    pub members: Vec<Vec<Member>>,
    pub conversations: Vec<Conversation>,
    pub messages: Vec<StoredMessage>,
    pub claims: Vec<Vec<Claim>>,
    pub outbox: Vec<OutboxEntry>,
    pub sync_seqs: Vec<(GroupId, u64)>,
    pub vectors: Vec<Vec<(OnionId, OnionId, torchat_store::SeqSet)>>,
    pub extensions: Vec<(OnionId, Vec<String>)>,
}

/// Reads everything through the trait. `extra_gids` lists groups to ask members of even if
/// not stored (members must then be empty).
pub fn dump(s: &dyn Store, extra_gids: &[GroupId]) -> Dump {
    let groups = s.groups().unwrap();
    let mut gids: Vec<GroupId> = groups.iter().map(|g| g.gid.clone()).collect();
    gids.extend(extra_gids.iter().cloned());
    let conversations = s.conversations().unwrap();
    let mut messages = Vec::new();
    for c in &conversations {
        messages.extend(s.history(c, None, usize::MAX).unwrap());
    }
    messages.sort_by_key(|m| m.row);
    let claims = messages
        .iter()
        .map(|m| s.claims(&m.msg.id).unwrap())
        .collect();
    Dump {
        settings: s.settings().unwrap(),
        buddies: s.buddies().unwrap(),
        members: gids.iter().map(|g| s.members(g).unwrap()).collect(),
        groups,
        conversations,
        messages,
        claims,
        outbox: s.outbox().unwrap(),
        sync_seqs: s.sync_seqs().unwrap(),
        vectors: gids.iter().map(|g| s.sync_vectors(g).unwrap()).collect(),
        extensions: s.peer_extensions().unwrap(),
    }
}
