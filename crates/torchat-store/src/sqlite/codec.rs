//! Column encodings: our types to SQLite values and back. Reading back checks everything and
//! reports a bad value as [`Error::Corrupt`].

use rusqlite::Row;
use torchat_wire::{GroupId, OnionId};

use crate::{
    Buddy, BuddyKind, Claim, Conversation, Delivery, Direction, Error, Group, GroupState, Member,
    Message, MsgId, OutboxEntry, QueuedPacket, Result, RowId, SeqSet, StoredMessage, SyncInfo,
    Trust,
};

fn corrupt(what: &str, value: impl std::fmt::Debug) -> Error {
    Error::Corrupt(format!("{what}: {value:?}"))
}

pub(super) fn onion(s: String) -> Result<OnionId> {
    OnionId::parse(&s).map_err(|_| corrupt("onion id", s))
}

pub(super) fn gid(s: String) -> Result<GroupId> {
    GroupId::new(&s).ok_or_else(|| corrupt("group id", s))
}

pub(super) fn msg_id(v: Vec<u8>) -> Result<MsgId> {
    <[u8; 16]>::try_from(v.as_slice())
        .map(MsgId)
        .map_err(|_| corrupt("message id", v))
}

fn time(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupt("time", v))
}

fn count(v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| corrupt("count", v))
}

pub(super) fn buddy_kind(k: BuddyKind) -> &'static str {
    match k {
        BuddyKind::Permanent => "permanent",
        BuddyKind::Temporary => "temporary",
        BuddyKind::Blocked => "blocked",
    }
}

pub(super) fn group_state(s: GroupState) -> &'static str {
    match s {
        GroupState::Joining => "joining",
        GroupState::Joined => "joined",
        GroupState::Left => "left",
    }
}

pub(super) fn direction(d: Direction) -> &'static str {
    match d {
        Direction::In => "in",
        Direction::Out => "out",
    }
}

/// `(conv_kind, conv)`.
pub(super) fn conversation(c: &Conversation) -> (&'static str, &str) {
    match c {
        Conversation::Buddy(id) => ("buddy", id.as_str()),
        Conversation::Group(g) => ("group", g.as_str()),
    }
}

/// `(delivery, delivery_k)`.
pub(super) fn delivery(d: Delivery) -> (&'static str, i64) {
    match d {
        Delivery::Queued => ("queued", 0),
        Delivery::Sent => ("sent", 0),
        Delivery::Delivered(k) => ("delivered", i64::from(k)),
        Delivery::Failed => ("failed", 0),
    }
}

/// `(trust, trust_k, trust_n)`.
pub(super) fn trust(t: Trust) -> (&'static str, i64, i64) {
    match t {
        Trust::Direct { confirmations } => ("direct", i64::from(confirmations), 0),
        Trust::Relayed { k, n } => ("relayed", i64::from(k), i64::from(n)),
        Trust::Signed { k, n } => ("signed", i64::from(k), i64::from(n)),
        Trust::Unconfirmed { k, n } => ("unconfirmed", i64::from(k), i64::from(n)),
        Trust::Own => ("own", 0, 0),
    }
}

/// Group modes as stored: space-separated (validated to contain no whitespace).
pub(super) fn modes(m: &[String]) -> String {
    m.join(" ")
}

/// Columns: id, kind, alias, profile_name, profile_text, client, version.
pub(super) const BUDDY_COLS: &str = "id, kind, alias, profile_name, profile_text, client, version";

pub(super) fn read_buddy(r: &Row<'_>) -> Result<Buddy> {
    let kind: String = r.get(1)?;
    Ok(Buddy {
        id: onion(r.get(0)?)?,
        kind: match kind.as_str() {
            "permanent" => BuddyKind::Permanent,
            "temporary" => BuddyKind::Temporary,
            "blocked" => BuddyKind::Blocked,
            _ => return Err(corrupt("buddy kind", kind)),
        },
        alias: r.get(2)?,
        profile_name: r.get(3)?,
        profile_text: r.get(4)?,
        client: r.get(5)?,
        version: r.get(6)?,
    })
}

/// Columns: gid, modes, invited_by, state, created_at.
pub(super) const GROUP_COLS: &str = "gid, modes, invited_by, state, created_at";

pub(super) fn read_group(r: &Row<'_>) -> Result<Group> {
    let modes: String = r.get(1)?;
    let state: String = r.get(3)?;
    Ok(Group {
        gid: gid(r.get(0)?)?,
        modes: modes
            .split(' ')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect(),
        invited_by: r.get::<_, Option<String>>(2)?.map(onion).transpose()?,
        state: match state.as_str() {
            "joining" => GroupState::Joining,
            "joined" => GroupState::Joined,
            "left" => GroupState::Left,
            _ => return Err(corrupt("group state", state)),
        },
        created_at: time(r.get(4)?)?,
    })
}

/// Columns: gid, member, added_at.
pub(super) fn read_member(r: &Row<'_>) -> Result<Member> {
    Ok(Member {
        gid: gid(r.get(0)?)?,
        id: onion(r.get(1)?)?,
        added_at: time(r.get(2)?)?,
    })
}

/// Columns of a message, in the order [`read_message`] expects.
pub(super) const MESSAGE_COLS: &str = "seq, msg_id, conv_kind, conv, direction, sender, text, ts, \
                                       delivery, delivery_k, trust, trust_k, trust_n, \
                                       gseq, gtime, sig";

/// A sequence set as stored (its wire text).
pub(super) fn seqset(s: &SeqSet) -> String {
    s.to_string()
}

pub(super) fn read_seqset(s: String) -> Result<SeqSet> {
    SeqSet::parse(s.as_bytes()).ok_or_else(|| corrupt("sequence set", s))
}

pub(super) fn read_message(r: &Row<'_>) -> Result<StoredMessage> {
    let kind: String = r.get(2)?;
    let conv: String = r.get(3)?;
    let dir: String = r.get(4)?;
    let delivery: Option<String> = r.get(8)?;
    let trust: Option<String> = r.get(10)?;
    let msg = Message {
        id: msg_id(r.get(1)?)?,
        conversation: match kind.as_str() {
            "buddy" => Conversation::Buddy(onion(conv)?),
            "group" => Conversation::Group(gid(conv)?),
            _ => return Err(corrupt("conversation kind", kind)),
        },
        direction: match dir.as_str() {
            "in" => Direction::In,
            "out" => Direction::Out,
            _ => return Err(corrupt("direction", dir)),
        },
        sender: onion(r.get(5)?)?,
        text: r.get(6)?,
        timestamp: time(r.get(7)?)?,
        delivery: match delivery.as_deref() {
            None => None,
            Some("queued") => Some(Delivery::Queued),
            Some("sent") => Some(Delivery::Sent),
            Some("delivered") => Some(Delivery::Delivered(count(r.get(9)?)?)),
            Some("failed") => Some(Delivery::Failed),
            Some(_) => return Err(corrupt("delivery", delivery)),
        },
        trust: match trust.as_deref() {
            None => None,
            Some("direct") => Some(Trust::Direct {
                confirmations: count(r.get(11)?)?,
            }),
            Some("relayed") => Some(Trust::Relayed {
                k: count(r.get(11)?)?,
                n: count(r.get(12)?)?,
            }),
            Some("signed") => Some(Trust::Signed {
                k: count(r.get(11)?)?,
                n: count(r.get(12)?)?,
            }),
            Some("unconfirmed") => Some(Trust::Unconfirmed {
                k: count(r.get(11)?)?,
                n: count(r.get(12)?)?,
            }),
            Some("own") => Some(Trust::Own),
            Some(_) => return Err(corrupt("trust", trust)),
        },
        sync: None,
    };
    let gseq: Option<i64> = r.get(13)?;
    let msg = Message {
        sync: match gseq {
            None => None,
            Some(g) => Some(SyncInfo {
                seq: time(g)?,
                time: time(r.get::<_, Option<i64>>(14)?.unwrap_or(0))?,
                sig: match r.get::<_, Option<Vec<u8>>>(15)? {
                    None => None,
                    Some(v) => Some(
                        <[u8; 64]>::try_from(v.as_slice())
                            .map_err(|_| corrupt("signature", v.len()))?,
                    ),
                },
            }),
        },
        ..msg
    };
    let seq: i64 = r.get(0)?;
    Ok(StoredMessage {
        row: RowId(time(seq)?),
        msg,
    })
}

/// Columns: msg_id, claimant, received_at.
pub(super) fn read_claim(r: &Row<'_>) -> Result<Claim> {
    Ok(Claim {
        msg_id: msg_id(r.get(0)?)?,
        claimant: onion(r.get(1)?)?,
        received_at: time(r.get(2)?)?,
    })
}

/// Columns of an outbox entry, in the order [`read_outbox`] expects.
pub(super) const OUTBOX_COLS: &str = "msg_id, dest, created_at, expires_at, attempts, next_at";

pub(super) fn read_outbox(r: &Row<'_>) -> Result<OutboxEntry> {
    Ok(OutboxEntry {
        msg_id: msg_id(r.get(0)?)?,
        dest: onion(r.get(1)?)?,
        created_at: time(r.get(2)?)?,
        expires_at: time(r.get(3)?)?,
        attempts: count(r.get(4)?)?,
        next_at: time(r.get(5)?)?,
    })
}

pub(super) fn read_queued(r: &Row<'_>) -> Result<QueuedPacket> {
    let own: Option<Vec<u8>> = r.get(5)?;
    Ok(QueuedPacket {
        id: msg_id(r.get(0)?)?,
        dest: onion(r.get(1)?)?,
        gid: gid(r.get(2)?)?,
        line: r.get(3)?,
        expires_at: time(r.get(4)?)?,
        own: own.map(msg_id).transpose()?,
    })
}

/// Columns of `transfers`, in `read_transfer` order.
pub(super) const TRANSFER_COLS: &str = "id, direction, peer, wire_id, name, size, done, state, \
     reason, resumable, accepted, path, part, created_at, updated_at";

pub(super) fn read_transfer(r: &Row<'_>) -> Result<crate::Transfer> {
    let dir: String = r.get(1)?;
    Ok(crate::Transfer {
        id: time(r.get(0)?)?,
        direction: match dir.as_str() {
            "in" => Direction::In,
            "out" => Direction::Out,
            _ => return Err(corrupt("transfer direction", dir)),
        },
        peer: onion(r.get(2)?)?,
        wire_id: r.get(3)?,
        name: r.get(4)?,
        size: time(r.get(5)?)?,
        done: time(r.get(6)?)?,
        state: r.get(7)?,
        reason: r.get(8)?,
        resumable: r.get(9)?,
        accepted: r.get(10)?,
        path: r.get(11)?,
        part: r.get(12)?,
        created_at: time(r.get(13)?)?,
        updated_at: time(r.get(14)?)?,
    })
}

pub(super) fn read_request(r: &Row<'_>) -> Result<crate::Request> {
    Ok(crate::Request {
        peer: onion(r.get(0)?)?,
        added_me: r.get(1)?,
        first_at: time(r.get(2)?)?,
        last_at: time(r.get(3)?)?,
        dropped: time(r.get(4)?)?,
    })
}

pub(super) fn read_request_message(r: &Row<'_>) -> Result<crate::RequestMessage> {
    Ok(crate::RequestMessage {
        id: msg_id(r.get(0)?)?,
        peer: onion(r.get(1)?)?,
        text: r.get(2)?,
        at: time(r.get(3)?)?,
    })
}
