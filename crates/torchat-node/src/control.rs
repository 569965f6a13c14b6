//! The control API server: JSON lines over a Unix socket in the data directory (mode 0600),
//! and the execution of each command inside the actor.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use torchat_api as api;
use torchat_api::Command;
use torchat_core::CommandError;
use torchat_store::{Conversation, RowId};
use torchat_wire::{GroupId, OnionId, Status};

use crate::actor::{now, Actor, ControlMsg};
use crate::convert;

/// File name of the control socket inside the data directory.
pub const SOCKET: &str = "control.sock";
/// Cap on simultaneous control clients.
const MAX_CLIENTS: usize = 64;
/// A client over the cap waits this long for a slot (one that just disconnected may not have
/// been noticed yet), then gets `too_many_clients` and is closed.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Clients over the cap waiting for a slot at once; more are refused without waiting.
const MAX_WAITING: usize = 64;

type CmdResult = Result<Value, (String, String)>;

fn err(code: &str, msg: impl Into<String>) -> (String, String) {
    (code.to_owned(), msg.into())
}

pub(crate) fn core_err(e: CommandError) -> (String, String) {
    let code = match e {
        CommandError::NotABuddy => "not_a_buddy",
        CommandError::Blocked => "blocked",
        CommandError::OwnId => "own_id",
        CommandError::Empty => "empty",
        CommandError::QueueFull => "queue_full",
        CommandError::TooMany => "too_many",
        CommandError::NoSuchGroup => "no_such_group",
        CommandError::GroupState => "group_state",
        CommandError::NotOnline => "not_online",
        CommandError::AlreadyMember => "already_member",
        CommandError::NoSuchFile => "no_such_file",
        CommandError::FileState => "file_state",
        CommandError::NotSupported => "not_supported",
        CommandError::NoSuchRequest => "no_such_request",
        _ => "refused",
    };
    err(code, e.to_string())
}

fn onion(s: &str) -> Result<OnionId, (String, String)> {
    s.trim()
        .parse::<OnionId>()
        .map_err(|e| err("bad_id", e.to_string()))
}

fn gid(s: &str) -> Result<GroupId, (String, String)> {
    GroupId::new(s.trim()).ok_or_else(|| err("bad_group_id", "not a group id"))
}

fn ok_json<T: serde::Serialize>(v: T) -> CmdResult {
    serde_json::to_value(v).map_err(|e| err("internal", e.to_string()))
}

/// Runs one command inside the actor.
pub(crate) fn execute(a: &mut Actor, cmd: Command) -> CmdResult {
    let t = now();
    match cmd {
        Command::Info => Ok(json!({
            "api_version": api::VERSION,
            "id": a.core.own_id().to_string(),
            "transport": a.transport.name(),
            "tor": {
                "percent": a.tor.percent,
                "summary": a.tor.summary,
                "ready": a.tor.ready,
                "problem": a.tor.problem.as_ref().map(|(m, h)| json!({"message": m, "hint": h})),
            },
            "connections": a.open_connections(),
            "version": env!("CARGO_PKG_VERSION"),
        })),
        Command::Buddies => {
            let list: Vec<api::Buddy> = a.core.buddies().iter().map(convert::buddy).collect();
            ok_json(list)
        }
        Command::Add { id, alias } => {
            let id = onion(&id)?;
            a.core.add_buddy(id.clone(), alias, t).map_err(core_err)?;
            Ok(json!({"id": id.to_string()}))
        }
        Command::Remove { id } => {
            a.core.remove_buddy(&onion(&id)?, t).map_err(core_err)?;
            Ok(json!({}))
        }
        Command::Block { id } => {
            a.core.block(onion(&id)?, t).map_err(core_err)?;
            Ok(json!({}))
        }
        Command::Unblock { id } => {
            a.core.unblock(onion(&id)?, t).map_err(core_err)?;
            Ok(json!({}))
        }
        Command::SetStatus { status } => {
            let s = match status.as_str() {
                "available" => Status::Available,
                "away" => Status::Away,
                "xa" => Status::Xa,
                _ => return Err(err("bad_request", "status is available, away or xa")),
            };
            a.store
                .put_setting(torchat_store::keys::STATUS, status.as_bytes())
                .map_err(store_err)?;
            a.core.set_status(s);
            Ok(json!({}))
        }
        Command::SetProfile { name, text } => {
            a.store
                .put_setting(torchat_store::keys::PROFILE_NAME, name.as_bytes())
                .map_err(store_err)?;
            a.store
                .put_setting(torchat_store::keys::PROFILE_TEXT, text.as_bytes())
                .map_err(store_err)?;
            a.core.set_profile(name.into_bytes(), text.into_bytes());
            Ok(json!({}))
        }
        Command::Send { to, text } => {
            let to = onion(&to)?;
            let id = a
                .core
                .send_message(&to, text.into_bytes(), t)
                .map_err(core_err)?;
            // The record is written by the drain that follows this command, before anything
            // goes on the wire; answer with the state the core chose.
            let queued = a.core.buddy(&to).is_some_and(|b| b.queued > 0);
            Ok(json!({"id": id.to_string(), "state": if queued { "queued" } else { "sent" }}))
        }
        Command::History {
            with,
            limit,
            before,
        } => {
            let conv = match with.trim().parse::<OnionId>() {
                Ok(id) => Conversation::Buddy(id),
                Err(_) => Conversation::Group(gid(&with)?),
            };
            let limit = limit.unwrap_or(50).min(1000);
            let page = a
                .store
                .history(&conv, before.map(RowId), limit)
                .map_err(store_err)?;
            let list: Vec<api::Message> = page.iter().map(convert::stored_message).collect();
            ok_json(list)
        }
        Command::Groups => {
            let list: Vec<api::Group> = a.core.groups().iter().map(group).collect();
            ok_json(list)
        }
        Command::GroupCreate { modes } => {
            let g = a.core.group_create(modes, t).map_err(core_err)?;
            Ok(json!({"gid": g.to_string()}))
        }
        Command::GroupInvite { gid: g, id } => {
            a.core
                .group_invite(&gid(&g)?, &onion(&id)?, t)
                .map_err(core_err)?;
            Ok(json!({}))
        }
        Command::GroupAccept { gid: g } => {
            a.core.group_accept(&gid(&g)?, t).map_err(core_err)?;
            Ok(json!({}))
        }
        Command::GroupDecline { gid: g } => {
            a.core.group_decline(&gid(&g)?, t).map_err(core_err)?;
            Ok(json!({}))
        }
        Command::GroupLeave { gid: g, reason } => {
            a.core
                .group_leave(&gid(&g)?, reason.map(String::into_bytes), t)
                .map_err(core_err)?;
            Ok(json!({}))
        }
        Command::GroupMembers { gid: g } => {
            let v = a
                .core
                .group(&gid(&g)?)
                .ok_or_else(|| err("no_such_group", "no such group"))?;
            ok_json(group(&v))
        }
        Command::GroupSay { gid: g, text } => {
            let id = a
                .core
                .group_say(&gid(&g)?, text.into_bytes(), t)
                .map_err(core_err)?;
            Ok(json!({"id": id.to_string()}))
        }
        Command::Claims { msg } => {
            let id = torchat_store::MsgId::from_hex(msg.trim())
                .ok_or_else(|| err("bad_request", "not a message id"))?;
            let claims = a.store.claims(&id).map_err(store_err)?;
            let list: Vec<Value> = claims
                .iter()
                .map(|c| json!({"claimant": c.claimant.to_string(), "at": c.received_at}))
                .collect();
            Ok(Value::Array(list))
        }
        Command::Shutdown => {
            a.request_stop();
            Ok(json!({}))
        }
        Command::Subscribe => Ok(json!({})),
        c @ (Command::Requests | Command::RequestAccept { .. } | Command::RequestIgnore { .. }) => {
            requests_command(a, c)
        }
        c @ (Command::SendFile { .. }
        | Command::Files
        | Command::FileAccept { .. }
        | Command::FileCancel { .. }
        | Command::FileAutoAccept { .. }) => crate::files::Files::command(a, c),
        _ => Err(err("bad_request", "unknown command")),
    }
}

/// `requests`, `request_accept`, `request_ignore`: strangers' contact requests.
fn requests_command(a: &mut Actor, cmd: Command) -> CmdResult {
    let t = now();
    match cmd {
        Command::Requests => {
            let list: Vec<api::ContactRequest> =
                a.core.requests().iter().map(convert::request).collect();
            ok_json(list)
        }
        Command::RequestAccept { id, alias } => {
            let id = onion(&id)?;
            a.core.accept_request(&id, alias, t).map_err(core_err)?;
            Ok(json!({"id": id.to_string()}))
        }
        Command::RequestIgnore { id } => {
            a.core.ignore_request(&onion(&id)?, t).map_err(core_err)?;
            Ok(json!({}))
        }
        _ => Err(err("bad_request", "unknown command")),
    }
}

fn store_err(e: torchat_store::Error) -> (String, String) {
    err("storage", e.to_string())
}

fn group(g: &torchat_core::GroupView) -> api::Group {
    api::Group {
        gid: g.gid.to_string(),
        state: convert::group_state(g.state).to_owned(),
        modes: g.modes.clone(),
        members: g.members.iter().map(|m| m.to_string()).collect(),
        inviter: g.inviter.as_ref().map(|i| i.to_string()),
    }
}

/// Binds the control socket (mode 0600) and serves clients until the actor is gone.
pub(crate) async fn serve(
    dir: &Path,
    commands: mpsc::Sender<ControlMsg>,
    events: broadcast::Sender<api::Event>,
) -> std::io::Result<(PathBuf, tokio::task::JoinHandle<()>)> {
    let path = dir.join(SOCKET);
    // A live socket means another node runs on this data directory: two would share one
    // store and one identity. A dead one (left by a crash) is removed.
    if UnixStream::connect(&path).await.is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("a torchat node is already running with {}", dir.display()),
        ));
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CLIENTS));
    let waiting = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_WAITING));
    let task = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let (commands, events) = (commands.clone(), events.clone());
            let (slots, waiting) = (slots.clone(), waiting.clone());
            tokio::spawn(async move {
                // At the cap a new client waits a bounded time for a slot, then is told so
                // and closed: never a silent hang.
                let permit = match slots.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => match waiting.try_acquire_owned() {
                        Ok(_w) => tokio::time::timeout(SLOT_WAIT, slots.acquire_owned())
                            .await
                            .ok()
                            .and_then(Result::ok),
                        Err(_) => None,
                    },
                };
                match permit {
                    Some(permit) => {
                        client(sock, commands, events).await;
                        drop(permit);
                    }
                    None => refuse(sock).await,
                }
            });
        }
    });
    Ok((path, task))
}

/// The answer to a client over [`MAX_CLIENTS`] (after [`SLOT_WAIT`]): one error line (`req`
/// 0, code `too_many_clients`), then the connection is closed. Bounded: a client that does not
/// read is dropped after a second.
async fn refuse(mut sock: UnixStream) {
    let r = api::Response::err(
        0,
        "too_many_clients",
        format!("{MAX_CLIENTS} control clients are connected already; try again later"),
    );
    let mut l = line(&r);
    l.push('\n');
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        let _ = sock.write_all(l.as_bytes()).await;
        let _ = sock.shutdown().await;
    })
    .await;
}

/// Parses a request line. On failure the error echoes the line's `req` when it is a JSON
/// object with a numeric `req` (so a pipelining client can match it), else 0.
fn parse_request(text: &str) -> Result<api::Request, api::Response> {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err(api::Response::err(0, "bad_request", e.to_string())),
    };
    let req = value.get("req").and_then(Value::as_u64).unwrap_or(0);
    serde_json::from_value(value).map_err(|e| api::Response::err(req, "bad_request", e.to_string()))
}

async fn client(
    sock: UnixStream,
    commands: mpsc::Sender<ControlMsg>,
    events: broadcast::Sender<api::Event>,
) {
    let (rd, mut wr) = sock.into_split();
    let mut lines = BufReader::new(rd);
    let (out_tx, mut out_rx) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(async move {
        while let Some(mut l) = out_rx.recv().await {
            l.push('\n');
            if wr.write_all(l.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut forwarder: Option<tokio::task::JoinHandle<()>> = None;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Bounded line read.
        let limited = tokio::io::AsyncReadExt::take(&mut lines, api::MAX_LINE as u64 + 1);
        let n =
            match tokio::io::AsyncBufReadExt::read_until(&mut { limited }, b'\n', &mut buf).await {
                Ok(n) => n,
                Err(_) => break,
            };
        if n == 0 {
            break;
        }
        if buf.len() > api::MAX_LINE {
            // Too long: answer, skip the rest of the line without holding it, carry on.
            if !buf.ends_with(b"\n") && !skip_line(&mut lines).await {
                break;
            }
            let r = api::Response::err(0, "too_long", "request line longer than 64 KiB");
            if out_tx.send(line(&r)).await.is_err() {
                break;
            }
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        // An empty (or blank) line is ignored without a reply (documented in docs/api.md).
        if text.trim().is_empty() {
            continue;
        }
        let req = match parse_request(text.trim()) {
            Ok(r) => r,
            Err(r) => {
                if out_tx.send(line(&r)).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let is_sub = matches!(req.cmd, Command::Subscribe);
        let (tx, rx) = oneshot::channel();
        if commands.send((req.cmd, tx)).await.is_err() {
            break;
        }
        let resp = match rx.await {
            Ok(Ok(v)) => api::Response::ok(req.req, v),
            Ok(Err((code, msg))) => api::Response::err(req.req, &code, msg),
            Err(_) => api::Response::err(req.req, "shutting_down", "the node is stopping"),
        };
        if out_tx.send(line(&resp)).await.is_err() {
            break;
        }
        if is_sub && forwarder.is_none() {
            let mut rx = events.subscribe();
            let out = out_tx.clone();
            forwarder = Some(tokio::spawn(async move {
                loop {
                    let ev = match rx.recv().await {
                        Ok(ev) => ev,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            api::Event::Lagged { missed: n }
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    let s = serde_json::to_string(&api::ServerLine::Event(ev)).unwrap_or_default();
                    if out.send(s).await.is_err() {
                        return;
                    }
                }
            }));
        }
    }
    if let Some(f) = forwarder {
        f.abort();
    }
    drop(out_tx);
    let _ = writer.await;
}

/// Reads and drops bytes up to and including the next LF. False at end of stream or error.
async fn skip_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> bool {
    use tokio::io::AsyncBufReadExt;
    loop {
        let (done, used) = match r.fill_buf().await {
            Ok([]) | Err(_) => return false,
            Ok(b) => match b.iter().position(|&c| c == b'\n') {
                Some(i) => (true, i + 1),
                None => (false, b.len()),
            },
        };
        r.consume(used);
        if done {
            return true;
        }
    }
}

fn line(r: &api::Response) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_request_echoes_its_req_when_it_can_be_read() {
        let e = parse_request(r#"{"req":42,"cmd":"no_such_command"}"#).unwrap_err();
        assert_eq!((e.req, e.ok), (42, false));
        assert_eq!(e.error.unwrap().code, "bad_request");
        let e = parse_request(r#"{"req":43,"cmd":"send","to":"x"}"#).unwrap_err();
        assert_eq!(e.req, 43, "a missing field");
        let e = parse_request(r#"{"req":"7","cmd":"info"}"#).unwrap_err();
        assert_eq!(e.req, 0, "a req that is not a number cannot be echoed");
        let e = parse_request("not json").unwrap_err();
        assert_eq!(e.req, 0);
        assert_eq!(parse_request(r#"{"req":9,"cmd":"info"}"#).unwrap().req, 9);
    }
}
