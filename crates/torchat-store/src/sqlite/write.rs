//! Applying one [`Op`] inside an open transaction.
//!
//! Inserts use `ON CONFLICT ... DO NOTHING` / `DO UPDATE` (never `INSERT OR REPLACE`, which
//! would delete and re-insert the row and so cascade to a group's members, and never
//! `INSERT OR IGNORE`, which would also swallow `CHECK` failures).

use rusqlite::{params, OptionalExtension, Transaction};

use super::codec;
use crate::op::to_sql_time;
use crate::{Error, MsgId, Op, Result};

fn exists(tx: &Transaction<'_>, sql: &str, p: impl rusqlite::Params) -> Result<bool> {
    Ok(tx
        .prepare_cached(sql)?
        .query_row(p, |_| Ok(()))
        .optional()?
        .is_some())
}

fn run(tx: &Transaction<'_>, sql: &str, p: impl rusqlite::Params) -> Result<u64> {
    let n = tx.prepare_cached(sql)?.execute(p)?;
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}

fn require_message(tx: &Transaction<'_>, id: &MsgId) -> Result<()> {
    if exists(tx, "SELECT 1 FROM messages WHERE msg_id = ?1", [&id.0[..]])? {
        Ok(())
    } else {
        Err(Error::UnknownMessage(*id))
    }
}

/// Applies a validated op; the caller commits or rolls back.
pub(super) fn exec(tx: &Transaction<'_>, op: &Op) -> Result<u64> {
    match op {
        Op::PutSetting { key, value } => {
            let new = !exists(tx, "SELECT 1 FROM settings WHERE key = ?1", [key])?;
            run(
                tx,
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(u64::from(new))
        }
        Op::DeleteSetting { key } => run(tx, "DELETE FROM settings WHERE key = ?1", [key]),
        Op::UpsertBuddy(b) => {
            let new = !exists(tx, "SELECT 1 FROM buddies WHERE id = ?1", [b.id.as_str()])?;
            run(
                tx,
                "INSERT INTO buddies (id, kind, alias, profile_name, profile_text, client, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, alias = excluded.alias,
                   profile_name = excluded.profile_name, profile_text = excluded.profile_text,
                   client = excluded.client, version = excluded.version",
                params![
                    b.id.as_str(),
                    codec::buddy_kind(b.kind),
                    b.alias,
                    b.profile_name,
                    b.profile_text,
                    b.client,
                    b.version
                ],
            )?;
            Ok(u64::from(new))
        }
        Op::RemoveBuddy(id) => run(tx, "DELETE FROM buddies WHERE id = ?1", [id.as_str()]),
        Op::UpsertGroup(g) => {
            let new = !exists(
                tx,
                "SELECT 1 FROM group_chats WHERE gid = ?1",
                [g.gid.as_str()],
            )?;
            run(
                tx,
                "INSERT INTO group_chats (gid, modes, invited_by, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (gid) DO UPDATE SET modes = excluded.modes,
                   invited_by = excluded.invited_by, state = excluded.state,
                   created_at = excluded.created_at",
                params![
                    g.gid.as_str(),
                    codec::modes(&g.modes),
                    g.invited_by.as_ref().map(|i| i.as_str()),
                    codec::group_state(g.state),
                    to_sql_time(g.created_at)
                ],
            )?;
            Ok(u64::from(new))
        }
        Op::SetGroupState { gid, state } => run(
            tx,
            "UPDATE group_chats SET state = ?2 WHERE gid = ?1",
            params![gid.as_str(), codec::group_state(*state)],
        ),
        // Members go by `ON DELETE CASCADE`.
        Op::RemoveGroup(gid) => run(tx, "DELETE FROM group_chats WHERE gid = ?1", [gid.as_str()]),
        Op::AddMember(m) => {
            let group = exists(
                tx,
                "SELECT 1 FROM group_chats WHERE gid = ?1",
                [m.gid.as_str()],
            )?;
            if !group {
                return Err(Error::UnknownGroup(m.gid.clone()));
            }
            run(
                tx,
                "INSERT INTO group_members (gid, member, added_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (gid, member) DO NOTHING",
                params![m.gid.as_str(), m.id.as_str(), to_sql_time(m.added_at)],
            )
        }
        Op::RemoveMember { gid, id } => run(
            tx,
            "DELETE FROM group_members WHERE gid = ?1 AND member = ?2",
            params![gid.as_str(), id.as_str()],
        ),
        Op::InsertMessage(m) => {
            let (kind, conv) = codec::conversation(&m.conversation);
            let (delivery, delivery_k) = match m.delivery.map(codec::delivery) {
                Some((d, k)) => (Some(d), k),
                None => (None, 0),
            };
            let (trust, trust_k, trust_n) = match m.trust.map(codec::trust) {
                Some((t, k, n)) => (Some(t), k, n),
                None => (None, 0, 0),
            };
            // A message id or a (group, sender, sequence number) already stored: nothing.
            run(
                tx,
                "INSERT INTO messages (msg_id, conv_kind, conv, direction, sender, text, ts,
                   delivery, delivery_k, trust, trust_k, trust_n, gseq, gtime, sig)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 ON CONFLICT DO NOTHING",
                params![
                    &m.id.0[..],
                    kind,
                    conv,
                    codec::direction(m.direction),
                    m.sender.as_str(),
                    m.text,
                    to_sql_time(m.timestamp),
                    delivery,
                    delivery_k,
                    trust,
                    trust_k,
                    trust_n,
                    m.sync.map(|s| to_sql_time(s.seq)),
                    m.sync.map(|s| to_sql_time(s.time)),
                    m.sync.and_then(|s| s.sig).map(|s| s.to_vec()),
                ],
            )
        }
        Op::UpdateDelivery { id, delivery } => {
            let (d, k) = codec::delivery(*delivery);
            run(
                tx,
                "UPDATE messages SET delivery = ?2, delivery_k = ?3 WHERE msg_id = ?1",
                params![&id.0[..], d, k],
            )
        }
        Op::UpdateTrust { id, trust } => {
            let (t, k, n) = codec::trust(*trust);
            run(
                tx,
                "UPDATE messages SET trust = ?2, trust_k = ?3, trust_n = ?4 WHERE msg_id = ?1",
                params![&id.0[..], t, k, n],
            )
        }
        Op::AddClaim(c) => {
            require_message(tx, &c.msg_id)?;
            run(
                tx,
                "INSERT INTO claims (msg_id, claimant, received_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (msg_id, claimant) DO NOTHING",
                params![
                    &c.msg_id.0[..],
                    c.claimant.as_str(),
                    to_sql_time(c.received_at)
                ],
            )
        }
        Op::OutboxAdd(e) => {
            require_message(tx, &e.msg_id)?;
            run(
                tx,
                "INSERT INTO outbox (msg_id, dest, created_at, expires_at, attempts, next_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (msg_id, dest) DO NOTHING",
                params![
                    &e.msg_id.0[..],
                    e.dest.as_str(),
                    to_sql_time(e.created_at),
                    to_sql_time(e.expires_at),
                    i64::from(e.attempts),
                    to_sql_time(e.next_at)
                ],
            )
        }
        Op::OutboxAttempt { id, dest, next_at } => run(
            tx,
            "UPDATE outbox SET attempts = min(attempts + 1, 4294967295), next_at = ?3
             WHERE msg_id = ?1 AND dest = ?2",
            params![&id.0[..], dest.as_str(), to_sql_time(*next_at)],
        ),
        Op::OutboxRemove { id, dest } => run(
            tx,
            "DELETE FROM outbox WHERE msg_id = ?1 AND dest = ?2",
            params![&id.0[..], dest.as_str()],
        ),
        Op::OutboxExpire { now } => run(
            tx,
            "DELETE FROM outbox WHERE expires_at <= ?1",
            [to_sql_time(*now)],
        ),
        Op::QueuePacket(q) => run(
            tx,
            "INSERT INTO packet_queue (id, dest, gid, line, expires_at, own)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
            params![
                &q.id.0[..],
                q.dest.as_str(),
                q.gid.as_str(),
                &q.line[..],
                to_sql_time(q.expires_at),
                q.own.as_ref().map(|o| o.0.to_vec()),
            ],
        ),
        Op::DequeuePacket { id } => run(tx, "DELETE FROM packet_queue WHERE id = ?1", [&id.0[..]]),
        Op::SetSyncInfo { id, sync } => run(
            tx,
            "UPDATE messages SET gseq = ?2, gtime = ?3, sig = ?4
             WHERE msg_id = ?1 AND gseq IS NULL AND NOT EXISTS (
                 SELECT 1 FROM messages AS o
                 WHERE o.conv = messages.conv AND o.sender = messages.sender AND o.gseq = ?2)",
            params![
                &id.0[..],
                to_sql_time(sync.seq),
                to_sql_time(sync.time),
                sync.sig.map(|s| s.to_vec())
            ],
        ),
        Op::SetSyncSeq { gid, next } => run(
            tx,
            "INSERT INTO sync_seq (gid, next) VALUES (?1, ?2)
             ON CONFLICT (gid) DO UPDATE SET next = excluded.next WHERE excluded.next > next",
            params![gid.as_str(), to_sql_time(*next)],
        ),
        Op::SetSyncVector {
            gid,
            member,
            speaker,
            held,
        } => {
            let new = !exists(
                tx,
                "SELECT 1 FROM sync_vectors WHERE gid = ?1 AND member = ?2 AND speaker = ?3",
                params![gid.as_str(), member.as_str(), speaker.as_str()],
            )?;
            run(
                tx,
                "INSERT INTO sync_vectors (gid, member, speaker, held) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (gid, member, speaker) DO UPDATE SET held = excluded.held",
                params![
                    gid.as_str(),
                    member.as_str(),
                    speaker.as_str(),
                    codec::seqset(held)
                ],
            )?;
            Ok(u64::from(new))
        }
        Op::UpsertTransfer(t) => {
            let new = !exists(
                tx,
                "SELECT 1 FROM transfers WHERE id = ?1",
                [to_sql_time(t.id)],
            )?;
            run(
                tx,
                "INSERT OR REPLACE INTO transfers (id, direction, peer, wire_id, name, size, done,
                     state, reason, resumable, accepted, path, part, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                params![
                    to_sql_time(t.id),
                    super::codec::direction(t.direction),
                    t.peer.as_str(),
                    t.wire_id,
                    &t.name[..],
                    to_sql_time(t.size),
                    to_sql_time(t.done),
                    t.state,
                    t.reason,
                    t.resumable,
                    t.accepted,
                    t.path,
                    t.part,
                    to_sql_time(t.created_at),
                    to_sql_time(t.updated_at),
                ],
            )?;
            Ok(u64::from(new))
        }
        Op::SetPeerExtensions { id, extensions } => {
            let new = !exists(
                tx,
                "SELECT 1 FROM peer_extensions WHERE id = ?1",
                [id.as_str()],
            )?;
            run(
                tx,
                "INSERT INTO peer_extensions (id, exts) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET exts = excluded.exts",
                params![id.as_str(), extensions.join(" ")],
            )?;
            Ok(u64::from(new))
        }
        Op::PruneGroupHistory { before } => {
            let before = to_sql_time(*before);
            // The newest row stays, so that row numbers are never reused (SQLite gives a new
            // row the largest one + 1).
            // `INDEXED BY`: without statistics SQLite would walk every group message through
            // the conversation index instead of the old ones through the time index.
            let old = "SELECT msg_id FROM messages INDEXED BY messages_group_by_time
                       WHERE conv_kind = 'group' AND ts < ?1
                       AND seq < (SELECT max(seq) FROM messages)";
            run(
                tx,
                &format!("DELETE FROM claims WHERE msg_id IN ({old})"),
                [before],
            )?;
            run(
                tx,
                &format!("DELETE FROM outbox WHERE msg_id IN ({old})"),
                [before],
            )?;
            run(
                tx,
                "DELETE FROM messages INDEXED BY messages_group_by_time
                 WHERE conv_kind = 'group' AND ts < ?1
                 AND seq < (SELECT max(seq) FROM messages)",
                [before],
            )
        }
        Op::RemoveTransfer { id } => run(
            tx,
            "DELETE FROM transfers WHERE id = ?1",
            [to_sql_time(*id)],
        ),
        Op::UpsertRequest(r) => {
            let new = !exists(
                tx,
                "SELECT 1 FROM requests WHERE peer = ?1",
                [r.peer.as_str()],
            )?;
            run(
                tx,
                "INSERT OR REPLACE INTO requests (peer, added_me, first_at, last_at, dropped)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    r.peer.as_str(),
                    r.added_me,
                    to_sql_time(r.first_at),
                    to_sql_time(r.last_at),
                    to_sql_time(r.dropped),
                ],
            )?;
            Ok(u64::from(new))
        }
        Op::RemoveRequest(peer) => {
            run(
                tx,
                "DELETE FROM request_messages WHERE peer = ?1",
                [peer.as_str()],
            )?;
            run(tx, "DELETE FROM requests WHERE peer = ?1", [peer.as_str()])
        }
        Op::AddRequestMessage(m) => run(
            tx,
            "INSERT OR IGNORE INTO request_messages (id, peer, text, at) VALUES (?1, ?2, ?3, ?4)",
            params![&m.id.0[..], m.peer.as_str(), &m.text[..], to_sql_time(m.at)],
        ),
        Op::RemoveRequestMessage { id } => run(
            tx,
            "DELETE FROM request_messages WHERE id = ?1",
            [&id.0[..]],
        ),
    }
}
