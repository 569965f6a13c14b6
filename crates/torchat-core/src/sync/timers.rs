//! Deadlines: batched acknowledgements and digests, requests to relay, anti-entropy, wants
//! nobody answered.

use torchat_wire::sync::MAX_RANGES;
use torchat_wire::{GroupId, OnionId, Packet};

use crate::node::Node;
use crate::time::Timestamp;
use crate::types::GroupState;

impl Node {
    // ----- timers -----

    pub(crate) fn sync_deadline(&self) -> Option<Timestamp> {
        if !self.cfg.sync {
            return None;
        }
        let mut t: Option<Timestamp> = None;
        let mut at = |x: Timestamp| t = Some(t.map_or(x, |t| t.min(x)));
        for g in self.groups.values() {
            if g.state != GroupState::Joined {
                continue;
            }
            let s = &g.sync;
            s.digest_due.values().for_each(|x| at(*x));
            s.ack_due.values().for_each(|x| at(*x));
            if let Some(x) = s.tell_due {
                at(x);
            }
            if let Some(w) = s.wants.iter().map(|w| w.sent).min() {
                at(w + self.cfg.sync_want_timeout);
            }
            if let Some(x) = s.next_periodic {
                at(x);
            }
        }
        t
    }

    pub(crate) fn handle_sync_timeout(&mut self, now: Timestamp) {
        if !self.cfg.sync {
            return;
        }
        let gids: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.state == GroupState::Joined)
            .map(|(k, _)| k.clone())
            .collect();
        let me = self.cfg.own_id.clone();
        for gid in gids {
            // Acknowledgements.
            let acks: Vec<OnionId> = self
                .groups
                .get(&gid)
                .map(|g| {
                    g.sync
                        .ack_due
                        .iter()
                        .filter(|(_, t)| **t <= now)
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            // The tag scans every group: only worked out when there is something to send.
            let tag = if acks.is_empty() {
                gid.clone()
            } else {
                self.group_tag(&gid)
            };
            for s in acks {
                let held = self
                    .gsync(&gid)
                    .map(|gs| {
                        gs.ack_due.remove(&s);
                        gs.held(&me, &s).truncated(MAX_RANGES)
                    })
                    .unwrap_or_default();
                if let Some(out) = self.sync_online(&s) {
                    let p = Packet::GroupSyncAck {
                        group: tag.clone(),
                        held,
                    };
                    self.send(out, &p);
                }
            }
            // Periodic anti-entropy with the ring neighbours.
            let periodic = self
                .groups
                .get(&gid)
                .map(|g| g.sync.next_periodic)
                .unwrap_or(None);
            match periodic {
                None => {
                    let first = now + self.jittered_interval();
                    if let Some(gs) = self.gsync(&gid) {
                        gs.next_periodic = Some(first);
                    }
                }
                Some(t) if t <= now => {
                    let next = now + self.jittered_interval();
                    if let Some(gs) = self.gsync(&gid) {
                        gs.next_periodic = Some(next);
                        gs.relay.retain(|_, until| *until > now);
                    }
                    self.schedule_fingers(&gid, now);
                }
                Some(_) => {}
            }
            // Digests.
            let due: Vec<OnionId> = self
                .groups
                .get(&gid)
                .map(|g| {
                    g.sync
                        .digest_due
                        .iter()
                        .filter(|(_, t)| **t <= now)
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            for p in due {
                let first_contact = self
                    .gsync(&gid)
                    .map(|gs| {
                        gs.digest_due.remove(&p);
                        !gs.told.contains_key(&p)
                    })
                    .unwrap_or(false);
                self.send_digest(&gid, &p, first_contact);
            }
            // Requests to relay.
            let tells_due = self
                .groups
                .get(&gid)
                .and_then(|g| g.sync.tell_due)
                .is_some_and(|t| t <= now);
            if tells_due {
                let tells = self
                    .gsync(&gid)
                    .map(|gs| {
                        gs.tell_due = None;
                        std::mem::take(&mut gs.tells)
                    })
                    .unwrap_or_default();
                for (h, xs) in tells {
                    if let Some(out) = self.sync_online(&h) {
                        let p = Packet::GroupSyncTell {
                            gid: gid.clone(),
                            members: xs.into_iter().collect(),
                        };
                        self.send(out, &p);
                    }
                }
            }
            // Wants nobody answered.
            let timeout = self.cfg.sync_want_timeout;
            let expired = self
                .gsync(&gid)
                .map(|gs| {
                    let before = gs.wants.len();
                    gs.wants.retain(|w| w.sent + timeout > now);
                    before != gs.wants.len()
                })
                .unwrap_or(false);
            if expired {
                self.sync_pull(&gid, now);
            }
        }
    }

    /// `sync_interval` × 0.9–1.1, so that members do not all send at once.
    pub(super) fn jittered_interval(&mut self) -> std::time::Duration {
        let base = self.cfg.sync_interval.as_millis() as u64;
        let per_mille = 900 + u64::from(self.rng.next_u32()) % 201;
        std::time::Duration::from_millis(base.saturating_mul(per_mille) / 1000)
    }
}
