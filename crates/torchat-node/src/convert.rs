//! Core values to control-API values.

use torchat_api as api;
use torchat_core::{BuddyKind, BuddyView, Event, GroupState, MemberChange, Presence};
use torchat_store as st;
use torchat_wire::Status;

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn presence(p: &Presence) -> &'static str {
    match p {
        Presence::Offline => "offline",
        Presence::Connecting => "connecting",
        Presence::Handshake => "handshake",
        Presence::Online(Status::Away) => "away",
        Presence::Online(Status::Xa) => "xa",
        Presence::Online(_) => "available",
    }
}

pub(crate) fn kind(k: BuddyKind) -> &'static str {
    match k {
        BuddyKind::Permanent => "permanent",
        BuddyKind::Temporary => "temporary",
        BuddyKind::Blocked => "blocked",
    }
}

pub(crate) fn group_state(s: GroupState) -> &'static str {
    match s {
        GroupState::Invited => "invited",
        GroupState::Joining => "joining",
        GroupState::Joined => "joined",
        GroupState::Left => "left",
    }
}

pub(crate) fn buddy(b: &BuddyView) -> api::Buddy {
    let client = match (&b.info.client, &b.info.version) {
        (Some(c), Some(v)) => Some(format!("{} {}", text(c), text(v).trim())),
        (Some(c), None) => Some(text(c)),
        _ => None,
    };
    api::Buddy {
        id: b.id.to_string(),
        kind: kind(b.kind).to_owned(),
        alias: b.alias.clone(),
        presence: presence(&b.presence).to_owned(),
        name: b.info.profile_name.as_deref().map(text),
        text: b.info.profile_text.as_deref().map(text),
        client,
        queued: b.queued,
    }
}

pub(crate) fn stored_message(m: &st::StoredMessage) -> api::Message {
    let (conversation, _) = conversation(&m.msg.conversation);
    api::Message {
        row: m.row.0,
        id: m.msg.id.to_string(),
        conversation,
        sender: m.msg.sender.to_string(),
        direction: match m.msg.direction {
            st::Direction::In => "in",
            st::Direction::Out => "out",
        }
        .to_owned(),
        text: text(&m.msg.text),
        at: m.msg.timestamp,
        delivery: m.msg.delivery.map(|d| match d {
            st::Delivery::Queued => "queued".to_owned(),
            st::Delivery::Sent => "sent".to_owned(),
            st::Delivery::Delivered(k) => format!("delivered {k}"),
            st::Delivery::Failed => "failed".to_owned(),
        }),
        trust: m.msg.trust.map(|t| t.label()),
    }
}

fn conversation(c: &st::Conversation) -> (String, bool) {
    match c {
        st::Conversation::Buddy(id) => (id.to_string(), false),
        st::Conversation::Group(g) => (g.to_string(), true),
    }
}

/// The API event for a core event (`None` for events the API does not carry).
pub(crate) fn event(e: &Event, me: &torchat_wire::OnionId) -> Option<api::Event> {
    Some(match e {
        Event::Presence { id, presence: p } => api::Event::Presence {
            id: id.to_string(),
            presence: presence(p).to_owned(),
        },
        Event::BuddyList { id, kind: k } => api::Event::BuddyList {
            id: id.to_string(),
            kind: k.map(|k| kind(k).to_owned()),
        },
        Event::MessageReceived {
            id,
            from,
            text: t,
            at,
        } => api::Event::Message {
            message: api::Message {
                row: 0,
                id: id.to_string(),
                conversation: from.to_string(),
                sender: from.to_string(),
                direction: "in".into(),
                text: text(t),
                at: at.as_millis(),
                delivery: None,
                trust: None,
            },
        },
        Event::Delivery { id, to, state } => api::Event::Delivery {
            id: id.to_string(),
            to: to.to_string(),
            state: match state {
                torchat_core::Delivery::Queued => "queued",
                torchat_core::Delivery::Sent => "sent",
                torchat_core::Delivery::Delivered => "delivered",
            }
            .to_owned(),
        },
        Event::GroupInvite { gid, from, modes } => api::Event::GroupInvite {
            gid: gid.to_string(),
            from: from.to_string(),
            modes: modes.clone(),
        },
        Event::GroupState { gid, state } => api::Event::GroupState {
            gid: gid.to_string(),
            state: group_state(*state).to_owned(),
        },
        Event::GroupMember { gid, id, change } => {
            let (change, reason) = match change {
                MemberChange::Joined => ("joined", None),
                MemberChange::Left { reason } => ("left", reason.as_deref().map(text)),
                MemberChange::Declined => ("declined", None),
            };
            api::Event::GroupMember {
                gid: gid.to_string(),
                id: id.to_string(),
                change: change.into(),
                reason,
            }
        }
        Event::GroupMessage {
            gid,
            id,
            sender,
            text: t,
            at,
            trust: tr,
        } => api::Event::GroupMessage {
            message: api::Message {
                row: 0,
                id: id.to_string(),
                conversation: gid.to_string(),
                sender: sender.to_string(),
                direction: if sender == me { "out" } else { "in" }.into(),
                text: text(t),
                at: at.as_millis(),
                delivery: None,
                trust: Some(tr.label()),
            },
            trust: *tr,
        },
        Event::GroupTrust {
            gid,
            id,
            trust: tr,
            claimants,
        } => api::Event::GroupTrust {
            gid: gid.to_string(),
            id: id.to_string(),
            trust: *tr,
            claimants: claimants.iter().map(|c| c.to_string()).collect(),
        },
        Event::GroupDelivery {
            gid,
            id,
            delivered,
            of,
        } => api::Event::GroupDelivery {
            gid: gid.to_string(),
            id: id.to_string(),
            delivered: *delivered,
            of: *of,
        },
        Event::GroupDivergence { gid, member, peer } => api::Event::GroupDivergence {
            gid: gid.to_string(),
            member: member.to_string(),
            peer: peer.to_string(),
        },
        Event::OutboxDropped { gid, to, own } => api::Event::OutboxDropped {
            gid: gid.to_string(),
            to: to.to_string(),
            own: own.map(|o| o.to_string()),
        },
        Event::ContactRequest {
            id,
            added_me,
            messages,
            dropped,
        } => api::Event::Request {
            id: id.to_string(),
            added_me: *added_me,
            messages: *messages,
            dropped: *dropped,
        },
        Event::RequestMessage {
            from,
            id,
            text: t,
            at,
        } => api::Event::RequestMessage {
            from: from.to_string(),
            message: api::HeldMessage {
                id: id.to_string(),
                text: text(t),
                at: at.as_millis(),
            },
        },
        Event::RequestClosed { id, outcome } => api::Event::RequestClosed {
            id: id.to_string(),
            outcome: request_outcome(*outcome).to_owned(),
        },
        Event::QuotaReached { gid, id, what } => api::Event::Quota {
            what: match what {
                torchat_core::Quota::StrangerGroupBytes => "stranger_group_bytes",
                _ => "other",
            }
            .to_owned(),
            gid: gid.as_ref().map(|g| g.to_string()),
            id: id.as_ref().map(|i| i.to_string()),
        },
        _ => return None,
    })
}

pub(crate) fn request_outcome(o: torchat_core::RequestOutcome) -> &'static str {
    match o {
        torchat_core::RequestOutcome::Accepted => "accepted",
        torchat_core::RequestOutcome::Ignored => "ignored",
        torchat_core::RequestOutcome::Blocked => "blocked",
        torchat_core::RequestOutcome::Evicted => "evicted",
    }
}

/// A core contact request as the API shows it.
pub(crate) fn request(r: &torchat_core::RequestView) -> api::ContactRequest {
    api::ContactRequest {
        id: r.id.to_string(),
        added_me: r.added_me,
        first_at: r.first_at.as_millis(),
        last_at: r.last_at.as_millis(),
        dropped: r.dropped,
        messages: r
            .messages
            .iter()
            .map(|m| api::HeldMessage {
                id: m.id.to_string(),
                text: text(&m.text),
                at: m.at.as_millis(),
            })
            .collect(),
    }
}
