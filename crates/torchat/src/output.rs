//! Human-readable (default) and JSON output of the CLI.

use serde_json::Value;
use torchat_api::display::{line, text};
use torchat_api::{Buddy, ContactRequest, Event, Group, Message};

use crate::Cmd;

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string(v).unwrap_or_default());
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Prints a command's result.
pub(crate) fn result(cmd: &Cmd, v: &Value, json: bool) {
    if json {
        print_json(v);
        return;
    }
    match cmd {
        Cmd::Id => println!("{}", s(v, "id")),
        Cmd::Info => {
            println!("id:          {}", s(v, "id"));
            println!("transport:   {}", s(v, "transport"));
            let tor = &v["tor"];
            let state = if tor["ready"].as_bool() == Some(true) {
                "ready".to_owned()
            } else {
                format!("{}% {}", tor["percent"], s(tor, "summary"))
            };
            println!("network:     {state}");
            if let Some(p) = tor.get("problem").filter(|p| !p.is_null()) {
                println!(
                    "problem:     {}\n             try: {}",
                    s(p, "message"),
                    s(p, "hint")
                );
            }
            println!("connections: {}", v["connections"]);
        }
        Cmd::Buddies => {
            let list: Vec<Buddy> = serde_json::from_value(v.clone()).unwrap_or_default();
            if list.is_empty() {
                println!("no buddies yet — add one with `torchat add <id>`");
            }
            for b in list {
                let name = b.alias.or(b.name).unwrap_or_default();
                let queued = if b.queued > 0 {
                    format!("  ({} queued)", b.queued)
                } else {
                    String::new()
                };
                println!(
                    "{:<10} {:<10} {} {}{}",
                    b.presence,
                    b.kind,
                    b.id,
                    line(&name),
                    queued
                );
            }
        }
        Cmd::Send { .. } => println!("{} ({})", s(v, "state"), s(v, "id")),
        Cmd::Requests => {
            let list: Vec<ContactRequest> = serde_json::from_value(v.clone()).unwrap_or_default();
            if list.is_empty() {
                println!("no contact requests");
            }
            for r in list {
                let what = if r.added_me {
                    "wants to be your buddy"
                } else {
                    "wrote to you"
                };
                let dropped = if r.dropped > 0 {
                    format!(" ({} more messages dropped)", r.dropped)
                } else {
                    String::new()
                };
                println!("{} {what}{dropped}", r.id);
                for m in &r.messages {
                    println!("  {}", text(&m.text).replace('\n', "\n  "));
                }
                println!(
                    "  -> `torchat accept {0}`, `torchat ignore {0}` or `torchat block {0}`",
                    r.id
                );
            }
        }
        Cmd::History { .. } => {
            let list: Vec<Message> = serde_json::from_value(v.clone()).unwrap_or_default();
            for m in list {
                message(&m);
            }
        }
        Cmd::Group { cmd } => match cmd {
            crate::GroupCmd::Create { .. } => println!("{}", s(v, "gid")),
            crate::GroupCmd::List => {
                let list: Vec<Group> = serde_json::from_value(v.clone()).unwrap_or_default();
                for g in list {
                    println!("{} {:<8} {} members", g.gid, g.state, g.members.len() + 1);
                }
            }
            crate::GroupCmd::Members { .. } => {
                let g: Option<Group> = serde_json::from_value(v.clone()).ok();
                if let Some(g) = g {
                    println!(
                        "{} ({}){}",
                        g.gid,
                        g.state,
                        if g.modes.is_empty() {
                            String::new()
                        } else {
                            format!(" modes: {}", g.modes.join(" "))
                        }
                    );
                    for m in g.members {
                        println!("  {m}");
                    }
                }
            }
            crate::GroupCmd::Say { .. } => println!("sent ({})", s(v, "id")),
            _ => println!("ok"),
        },
        Cmd::Claims { .. } => {
            for c in v.as_array().into_iter().flatten() {
                println!("{}", s(c, "claimant"));
            }
        }
        _ => println!("ok"),
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn message(m: &Message) {
    let who = if m.direction == "out" {
        "me".to_owned()
    } else {
        short(&m.sender).to_owned()
    };
    let tag = m
        .trust
        .as_deref()
        .map(|t| format!(" {t}"))
        .unwrap_or_default();
    let state = m
        .delivery
        .as_deref()
        .map(|d| format!(" [{d}]"))
        .unwrap_or_default();
    println!("{who}{tag}: {}{state}", text(&m.text));
}

/// Prints one event.
pub(crate) fn event(e: &Event, json: bool) {
    if json {
        print_json(&torchat_api::ServerLine::Event(e.clone()));
        return;
    }
    match e {
        Event::TorProgress { percent, summary } => println!("tor: {percent}% {summary}"),
        Event::TorReady { id } => println!("tor: ready, we are {id}"),
        Event::TorProblem { message, hint } => println!("tor: PROBLEM: {message} — try: {hint}"),
        Event::Presence { id, presence } => println!("{}: {presence}", short(id)),
        Event::Message { message: m } => message(m),
        Event::Delivery { id, state, .. } => println!("message {}: {state}", short(id)),
        Event::GroupInvite { gid, from, .. } => println!(
            "{} invites you to {gid} — `torchat group accept {gid}`",
            short(from)
        ),
        Event::GroupState { gid, state } => println!("group {}: {state}", short(gid)),
        Event::GroupMember {
            gid, id, change, ..
        } => println!("group {}: {} {change}", short(gid), short(id)),
        Event::GroupMessage { message: m, .. } => {
            print!("[{}] ", short(&m.conversation));
            message(m);
        }
        Event::GroupTrust {
            id,
            trust,
            claimants,
            ..
        } => {
            println!(
                "message {} now {} (vouched by {})",
                short(id),
                trust.label(),
                claimants
                    .iter()
                    .map(|c| short(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        Event::GroupDelivery {
            id, delivered, of, ..
        } => println!(
            "message {}: {delivered} of {of} members have it (acknowledged)",
            short(id)
        ),
        Event::GroupDivergence { gid, member, peer } => println!(
            "group {}: {} lists {} but it could not be confirmed",
            short(gid),
            short(peer),
            short(member)
        ),
        Event::OutboxDropped { to, .. } => println!("gave up delivering to {}", short(to)),
        Event::FileOffer { transfer: t } => println!(
            "{} offers file {}: {} ({} bytes) — `torchat files accept {}`",
            short(&t.peer),
            t.id,
            line(&t.name),
            t.size,
            t.id
        ),
        Event::FileState { transfer: t } => println!(
            "file {}: {}{}{}",
            t.id,
            t.state,
            t.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default(),
            t.path
                .as_deref()
                .filter(|_| t.state == "complete" && t.direction == "receive")
                .map(|p| format!(" -> {p}"))
                .unwrap_or_default()
        ),
        Event::FileProgress { id, done, size, .. } => println!("file {id}: {done} of {size}"),
        Event::FileRefused {
            from, name, reason, ..
        } => println!("{} offered {}: refused ({reason})", short(from), line(name)),
        Event::Request {
            id,
            added_me,
            messages,
            dropped,
        } => println!(
            "contact request from {id}: {}{messages} messages held{} — `torchat requests`",
            if *added_me { "added you, " } else { "" },
            if *dropped > 0 {
                format!(", {dropped} dropped")
            } else {
                String::new()
            }
        ),
        Event::RequestMessage { from, message: m } => {
            println!("(request) {}: {}", short(from), text(&m.text))
        }
        Event::RequestClosed { id, outcome } => println!("request from {}: {outcome}", short(id)),
        Event::Quota { what, gid, .. } => println!(
            "quota reached ({what}){}",
            gid.as_deref()
                .map(|g| format!(" in group {}", short(g)))
                .unwrap_or_default()
        ),
        Event::Error { message } => println!("error: {}", line(message)),
        other => println!("{other:?}"),
    }
}
