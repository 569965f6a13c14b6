//! The control API server: JSON lines over a Unix socket in the data directory (mode 0600),
//! and the execution of each command inside the actor.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use torchat_api as api;
use torchat_api::Command;
use torchat_core::CommandError;
use torchat_store::{Conversation, Op, RowId};
use torchat_wire::{GroupId, OnionId, Status};

use crate::actor::{now, Actor, CmdResult, ControlChunk};
use crate::convert;

/// File name of the control socket inside the data directory.
pub const SOCKET: &str = "control.sock";
/// Cap on simultaneous control clients.
const MAX_CLIENTS: usize = 64;
/// Requests of one client read but not yet answered; the client's reader waits beyond this.
const MAX_IN_FLIGHT: usize = 1024;
/// Requests handed to the actor at once: every complete line already read, up to this many.
pub(crate) const MAX_CHUNK: usize = 256;
/// Read buffer of a client connection.
const READ_BUF: usize = 64 * 1024;
/// A client over the cap waits this long for a slot (one that just disconnected may not have
/// been noticed yet), then gets `too_many_clients` and is closed.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Clients over the cap waiting for a slot at once; more are refused without waiting.
const MAX_WAITING: usize = 64;

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

/// Whether a command reads the store, so that it must see every write before it.
pub(crate) fn reads_store(cmd: &Command) -> bool {
    matches!(cmd, Command::History { .. } | Command::Claims { .. })
}

/// Runs one command inside the actor. What it makes the core persist is written with the
/// batch; the answer is sent once that is durable.
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
            "store": {
                "commits": a.store.commits(),
                "batches": a.batches,
                "inputs": a.batched_inputs,
            },
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
            a.stage(Op::PutSetting {
                key: torchat_store::keys::STATUS.to_owned(),
                value: status.into_bytes(),
            });
            a.core.set_status(s);
            Ok(json!({}))
        }
        Command::SetProfile { name, text } => {
            a.stage(Op::PutSetting {
                key: torchat_store::keys::PROFILE_NAME.to_owned(),
                value: name.clone().into_bytes(),
            });
            a.stage(Op::PutSetting {
                key: torchat_store::keys::PROFILE_TEXT.to_owned(),
                value: text.clone().into_bytes(),
            });
            a.core.set_profile(name.into_bytes(), text.into_bytes());
            Ok(json!({}))
        }
        Command::Send { to, text } => {
            let to = onion(&to)?;
            let id = a
                .core
                .send_message(&to, text.into_bytes(), t)
                .map_err(core_err)?;
            // The record is written with this batch, before anything goes on the wire and
            // before this answer; answer with the state the core chose (its delivery event,
            // which is cheaper to find than a view of the buddy is to build).
            let queued = match a.delivery_of(id) {
                Some(d) => d == torchat_core::Delivery::Queued,
                None => a.core.buddy(&to).is_some_and(|b| b.queued > 0),
            };
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
    commands: mpsc::Sender<ControlChunk>,
    events: crate::events::Hub,
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

/// A request read from a client, in the order of the answers.
enum Pending {
    /// Executed by the actor; answered when it replies.
    Exec {
        req: u64,
        rx: oneshot::Receiver<CmdResult>,
        subscribe: bool,
    },
    /// Answered without the actor (a line that is not a request).
    Now(api::Response),
}

/// One client. Requests are pipelined: the reader hands every complete line it has to the
/// actor as one chunk without waiting for answers (at most [`MAX_IN_FLIGHT`] unanswered); the
/// answers are written in request order, several per write when they are ready together.
async fn client(
    sock: UnixStream,
    commands: mpsc::Sender<ControlChunk>,
    events: crate::events::Hub,
) {
    let (rd, wr) = sock.into_split();
    let mut lines = BufReader::with_capacity(READ_BUF, rd);
    let (out_tx, out_rx) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(write_lines(wr, out_rx));
    let (pending_tx, pending_rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT);
    let answers = tokio::spawn(answer(pending_rx, out_tx, events));
    let mut chunk: Vec<crate::actor::ControlMsg> = Vec::new();
    let mut chunk_bytes = 0;
    let mut buf = Vec::new();
    loop {
        // Hand over what was read when no complete line is left in the buffer (the next read
        // may wait), when the chunk is full, or before waiting for room for more answers.
        let buffered = lines.buffer().contains(&b'\n');
        if !chunk.is_empty()
            && (!buffered || chunk.len() >= MAX_CHUNK || pending_tx.capacity() == 0)
        {
            let c = (std::mem::take(&mut chunk), std::mem::take(&mut chunk_bytes));
            if commands.send(c).await.is_err() {
                break;
            }
        }
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
        let p = if buf.len() > api::MAX_LINE {
            // Too long: answer, skip the rest of the line without holding it, carry on.
            if !buf.ends_with(b"\n") && !skip_line(&mut lines).await {
                break;
            }
            Pending::Now(api::Response::err(
                0,
                "too_long",
                "request line longer than 64 KiB",
            ))
        } else {
            let text = String::from_utf8_lossy(&buf);
            if text.trim().is_empty() {
                continue;
            }
            match parse_request(text.trim()) {
                Ok(req) => {
                    let (tx, rx) = oneshot::channel();
                    let subscribe = matches!(req.cmd, Command::Subscribe);
                    chunk.push((req.cmd, tx));
                    chunk_bytes += n;
                    Pending::Exec {
                        req: req.req,
                        rx,
                        subscribe,
                    }
                }
                Err(r) => Pending::Now(r),
            }
        };
        if pending_tx.send(p).await.is_err() {
            break;
        }
    }
    if !chunk.is_empty() {
        let _ = commands.send((chunk, chunk_bytes)).await;
    }
    drop(pending_tx);
    let _ = answers.await;
    let _ = writer.await;
}

/// Waits for each answer in request order and queues it for writing; starts the event
/// forwarder after the answer to `subscribe`.
async fn answer(
    mut pending: mpsc::Receiver<Pending>,
    out: mpsc::Sender<String>,
    events: crate::events::Hub,
) {
    let mut forwarder: Option<tokio::task::JoinHandle<()>> = None;
    while let Some(p) = pending.recv().await {
        let (resp, subscribe) = match p {
            Pending::Now(r) => (r, false),
            Pending::Exec { req, rx, subscribe } => match rx.await {
                Ok(Ok(v)) => (api::Response::ok(req, v), subscribe),
                Ok(Err((code, msg))) => (api::Response::err(req, &code, msg), false),
                Err(_) => (
                    api::Response::err(req, "shutting_down", "the node is stopping"),
                    false,
                ),
            },
        };
        if out.send(line(&resp)).await.is_err() {
            break;
        }
        if subscribe && forwarder.is_none() {
            let mut rx = events.subscribe();
            let out = out.clone();
            forwarder = Some(tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    let s = serde_json::to_string(&ServerEvent { event: &ev }).unwrap_or_default();
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
}

/// An event line as [`api::ServerLine::Event`] writes it, without copying the shared event.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct ServerEvent<'a> {
    event: &'a api::Event,
}

/// Writes lines to the client, joining those that are ready together into one write.
async fn write_lines(mut wr: tokio::net::unix::OwnedWriteHalf, mut rx: mpsc::Receiver<String>) {
    let mut buf = Vec::new();
    while let Some(mut l) = rx.recv().await {
        l.push('\n');
        let Ok(next) = rx.try_recv() else {
            if wr.write_all(l.as_bytes()).await.is_err() {
                return;
            }
            continue;
        };
        buf.clear();
        buf.extend_from_slice(l.as_bytes());
        buf.extend_from_slice(next.as_bytes());
        buf.push(b'\n');
        while buf.len() < READ_BUF {
            let Ok(l) = rx.try_recv() else { break };
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        if wr.write_all(&buf).await.is_err() {
            return;
        }
        if buf.capacity() > 4 * READ_BUF {
            buf = Vec::new(); // do not keep a buffer grown by one large answer
        }
    }
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
