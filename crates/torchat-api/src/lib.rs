//! The torchat control API: how interfaces (CLI, TUI, IRC gateway, scripts) talk to a running
//! node. One JSON object per line over a Unix socket (`control.sock` in the data directory,
//! mode 0600).
//!
//! - A client sends [`Request`]s: `{"req": 1, "cmd": "send", "to": "<onion id>", "text": "hi"}`.
//! - The node answers each with a [`Response`] carrying the same `req`:
//!   `{"v": 1, "req": 1, "ok": true, "result": {...}}` or
//!   `{"v": 1, "req": 1, "ok": false, "error": {"code": "not_a_buddy", "message": "..."}}`.
//!   A line that is not a valid request is answered with `req: 0` and code `bad_request`.
//! - After `{"cmd": "subscribe"}` the node also sends [`Event`] lines: `{"event": "...", ...}`.
//!
//! Texts are UTF-8 strings in JSON (bytes that are not UTF-8 are replaced). Ids are onion ids
//! without `.onion`. Times are milliseconds since the Unix epoch. Message ids are 32 hex
//! characters. Responses carry the API version `v` (currently [`VERSION`]); `info` reports it.
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

pub mod display;

/// The API version spoken by this crate.
pub const VERSION: u32 = 1;

/// Largest request line the node accepts.
pub const MAX_LINE: usize = 64 * 1024;

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, echoed in the response.
    #[serde(default)]
    pub req: u64,
    /// What to do.
    #[serde(flatten)]
    pub cmd: Command,
}

/// The commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Command {
    /// Our id, the API version, the transport and its state.
    Info,
    /// Every buddy with its state.
    Buddies,
    /// Put an id on the buddy list.
    Add {
        /// Onion id (with or without `.onion`).
        id: String,
        /// Our name for it.
        #[serde(default)]
        alias: Option<String>,
    },
    /// Remove a buddy (it is told with `remove_me`).
    Remove {
        /// Onion id.
        id: String,
    },
    /// Block an id.
    Block {
        /// Onion id.
        id: String,
    },
    /// Unblock an id.
    Unblock {
        /// Onion id.
        id: String,
    },
    /// Set our presence: `available`, `away` or `xa`.
    SetStatus {
        /// The presence.
        status: String,
    },
    /// Set our profile.
    SetProfile {
        /// Name.
        name: String,
        /// Text.
        #[serde(default)]
        text: String,
    },
    /// Send a 1:1 message (queued if the buddy is offline).
    Send {
        /// Onion id.
        to: String,
        /// Text.
        text: String,
    },
    /// Messages of a conversation (a buddy's id or a group id), oldest first.
    History {
        /// Onion id or group id.
        with: String,
        /// At most this many (default 50, max 1000).
        #[serde(default)]
        limit: Option<usize>,
        /// Only messages older than this row (for paging).
        #[serde(default)]
        before: Option<u64>,
    },
    /// Every group.
    Groups,
    /// Create a group.
    GroupCreate {
        /// Modes, e.g. `["noredundancy"]`.
        #[serde(default)]
        modes: Vec<String>,
    },
    /// Invite an online buddy.
    GroupInvite {
        /// Group id.
        gid: String,
        /// Onion id.
        id: String,
    },
    /// Accept an invite.
    GroupAccept {
        /// Group id.
        gid: String,
    },
    /// Decline an invite.
    GroupDecline {
        /// Group id.
        gid: String,
    },
    /// Leave a group.
    GroupLeave {
        /// Group id.
        gid: String,
        /// Reason shown to the others.
        #[serde(default)]
        reason: Option<String>,
    },
    /// A group's members.
    GroupMembers {
        /// Group id.
        gid: String,
    },
    /// Say something in a group.
    GroupSay {
        /// Group id.
        gid: String,
        /// Text.
        text: String,
    },
    /// Who vouched for a group message.
    Claims {
        /// Message id (hex).
        msg: String,
    },
    /// Offer a file to a buddy (queued until it is online). The node reads the file.
    SendFile {
        /// Onion id.
        to: String,
        /// Absolute path of the file, on the node's machine.
        path: String,
    },
    /// Every file transfer the node remembers (going, and recently finished).
    Files,
    /// Accept an offered file (checks the size limit and free space first).
    FileAccept {
        /// Transfer number.
        file: u64,
    },
    /// Decline an offer, or stop a transfer in either direction.
    FileCancel {
        /// Transfer number.
        file: u64,
    },
    /// Accept (or stop accepting) every file from a buddy without asking.
    FileAutoAccept {
        /// Onion id.
        id: String,
        /// On or off.
        on: bool,
    },
    /// Pending contact requests from strangers, with the messages they hold.
    Requests,
    /// Accept a contact request: the stranger becomes a buddy and its held messages move into
    /// the conversation.
    RequestAccept {
        /// Onion id.
        id: String,
        /// Our name for it.
        #[serde(default)]
        alias: Option<String>,
    },
    /// Ignore a contact request: its held messages are dropped (the stranger is not told).
    RequestIgnore {
        /// Onion id.
        id: String,
    },
    /// Start receiving events on this connection.
    Subscribe,
    /// Stop the node (flushes the store).
    Shutdown,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// API version.
    pub v: u32,
    /// The request's `req`.
    pub req: u64,
    /// Whether it worked.
    pub ok: bool,
    /// The result, when it worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// What went wrong, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

impl Response {
    /// A success.
    pub fn ok(req: u64, result: serde_json::Value) -> Self {
        Response {
            v: VERSION,
            req,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(req: u64, code: &str, message: impl Into<String>) -> Self {
        let error = ApiError {
            code: code.to_owned(),
            message: message.into(),
        };
        Response {
            v: VERSION,
            req,
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

/// An error reply: a stable machine-readable `code` and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// E.g. `bad_request`, `bad_id`, `not_a_buddy`, `not_online`, `no_such_group`.
    pub code: String,
    /// Explanation.
    pub message: String,
}

/// A buddy as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buddy {
    /// Onion id.
    pub id: String,
    /// `permanent`, `temporary` or `blocked`.
    pub kind: String,
    /// Our alias.
    pub alias: Option<String>,
    /// `offline`, `connecting`, `handshake`, `available`, `away`, `xa`.
    pub presence: String,
    /// Its profile name.
    pub name: Option<String>,
    /// Its profile text.
    pub text: Option<String>,
    /// Its client software and version.
    pub client: Option<String>,
    /// Messages waiting for it.
    pub queued: usize,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Row number (for paging history).
    pub row: u64,
    /// Message id.
    pub id: String,
    /// Buddy id or group id.
    pub conversation: String,
    /// Who wrote it.
    pub sender: String,
    /// `in` or `out`.
    pub direction: String,
    /// Text.
    pub text: String,
    /// Time.
    pub at: u64,
    /// For our messages: `queued`, `sent`, or `delivered k` (groups).
    pub delivery: Option<String>,
    /// For group messages: the trust tag, e.g. `(Direct)`, `(8 of 10)`.
    pub trust: Option<String>,
}

/// A stranger's contact request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRequest {
    /// The stranger's onion id.
    pub id: String,
    /// It sent `add_me` (it has us on its list).
    pub added_me: bool,
    /// When the request was made.
    pub first_at: u64,
    /// When the stranger last sent something.
    pub last_at: u64,
    /// Messages dropped over the inbox caps or the rate limit.
    pub dropped: u64,
    /// Held messages, oldest first.
    pub messages: Vec<HeldMessage>,
}

/// A message held in a contact request (raw text, as received).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldMessage {
    /// Message id (kept when the request is accepted).
    pub id: String,
    /// Text.
    pub text: String,
    /// Arrival time.
    pub at: u64,
}

/// A group as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Group id.
    pub gid: String,
    /// `invited`, `joining`, `joined`, `left`.
    pub state: String,
    /// Modes.
    pub modes: Vec<String>,
    /// Members other than us.
    pub members: Vec<String>,
    /// Who invited us.
    pub inviter: Option<String>,
}

/// Something that happened, sent to subscribed clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// Tor (or the transport) made bootstrap progress.
    TorProgress {
        /// Percent.
        percent: u8,
        /// What is happening.
        summary: String,
    },
    /// Our onion service is up.
    TorReady {
        /// Our id.
        id: String,
    },
    /// The transport has a problem; `hint` says what to try.
    TorProblem {
        /// What is wrong.
        message: String,
        /// What to try.
        hint: String,
    },
    /// A buddy's presence changed.
    Presence {
        /// Onion id.
        id: String,
        /// New presence.
        presence: String,
    },
    /// A buddy's profile or client changed.
    BuddyInfo {
        /// The buddy now.
        buddy: Buddy,
    },
    /// A buddy list entry changed (`kind: null` = removed).
    BuddyList {
        /// Onion id.
        id: String,
        /// Kind now.
        kind: Option<String>,
    },
    /// A 1:1 message arrived.
    Message {
        /// The message.
        message: Message,
    },
    /// Delivery state of a 1:1 message we sent.
    Delivery {
        /// Message id.
        id: String,
        /// Recipient.
        to: String,
        /// `queued` or `sent`.
        state: String,
    },
    /// An invite.
    GroupInvite {
        /// Group id.
        gid: String,
        /// Who invited us.
        from: String,
        /// Modes.
        modes: Vec<String>,
    },
    /// Our state in a group changed.
    GroupState {
        /// Group id.
        gid: String,
        /// New state.
        state: String,
    },
    /// A group's member list changed.
    GroupMember {
        /// Group id.
        gid: String,
        /// Member.
        id: String,
        /// `joined`, `left`, `declined`.
        change: String,
        /// Reason given when leaving.
        reason: Option<String>,
    },
    /// A group message to show, with its trust.
    GroupMessage {
        /// The message (its `trust` field holds the tag).
        message: Message,
        /// Trust as data.
        trust: Trust,
    },
    /// A shown group message's trust changed.
    GroupTrust {
        /// Group id.
        gid: String,
        /// Message id.
        id: String,
        /// New trust.
        trust: Trust,
        /// Who vouched.
        claimants: Vec<String>,
    },
    /// Delivery of our own group message.
    GroupDelivery {
        /// Group id.
        gid: String,
        /// Message id.
        id: String,
        /// Members that have it.
        delivered: u32,
        /// Members other than us.
        of: u32,
    },
    /// A member list disagreement we could not settle.
    GroupDivergence {
        /// Group id.
        gid: String,
        /// Disputed member.
        member: String,
        /// Member whose list names it.
        peer: String,
    },
    /// A queued group packet was given up.
    OutboxDropped {
        /// Group id.
        gid: String,
        /// Member that will not get it.
        to: String,
        /// Our message affected.
        own: Option<String>,
    },
    /// A buddy offers a file: answer with `file_accept` or `file_cancel`.
    FileOffer {
        /// The transfer (state `offered`).
        transfer: Transfer,
    },
    /// A transfer changed state (`path` says where a received file was saved).
    FileState {
        /// The transfer now.
        transfer: Transfer,
    },
    /// A transfer moved (at most twice a second per transfer, and at the end).
    FileProgress {
        /// Transfer number.
        id: u64,
        /// Bytes done.
        done: u64,
        /// Size.
        size: u64,
        /// Bytes per second, recently.
        rate: u64,
        /// Seconds left at that rate.
        eta_secs: Option<u64>,
    },
    /// An offer was refused without asking: `too_big` or `unsupported` (ruby-torchat).
    FileRefused {
        /// Buddy.
        from: String,
        /// File name as offered.
        name: String,
        /// Announced size.
        size: u64,
        /// Why.
        reason: String,
    },
    /// A stranger's contact request was made or changed: answer with `request_accept`,
    /// `request_ignore` or `block`.
    Request {
        /// The stranger.
        id: String,
        /// It sent `add_me`.
        added_me: bool,
        /// Messages held.
        messages: usize,
        /// Messages dropped so far.
        dropped: u64,
    },
    /// A stranger's message, held in its contact request.
    RequestMessage {
        /// The stranger.
        from: String,
        /// The message.
        message: HeldMessage,
    },
    /// A contact request is over: `accepted`, `ignored`, `blocked` or `evicted` (dropped for
    /// a newer one at the cap).
    RequestClosed {
        /// The stranger.
        id: String,
        /// How.
        outcome: String,
    },
    /// A quota was reached (`stranger_group_bytes`): what goes over it is dropped.
    Quota {
        /// Which quota.
        what: String,
        /// The group concerned.
        gid: Option<String>,
        /// The peer concerned.
        id: Option<String>,
    },
    /// Something went wrong inside the node.
    Error {
        /// What.
        message: String,
    },
    /// This subscriber was too slow and missed events.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// A file transfer as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// Transfer number (for `file_accept`, `file_cancel`).
    pub id: u64,
    /// `send` or `receive`.
    pub direction: String,
    /// The buddy.
    pub peer: String,
    /// The file name as offered (a received file is saved under a sanitised name, see `path`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Bytes confirmed (sending) or written (receiving).
    pub done: u64,
    /// `queued`, `offered`, `transferring`, `paused`, `complete`, `cancelled`, `failed`.
    pub state: String,
    /// For `cancelled`: `by_us` or `by_peer`; for `failed`: `disconnected`, `stalled`,
    /// `expired`, `protocol`, `io`, `unsupported`, `interrupted`.
    pub reason: Option<String>,
    /// The local file: what is sent, or where a received file is (or will be) saved.
    pub path: Option<String>,
    /// Bytes per second, recently.
    pub rate: u64,
    /// Seconds left at that rate.
    pub eta_secs: Option<u64>,
}

/// Trust of a group message as data: the core's one definition, serialised as
/// `{"kind": "relayed", "k": 8, "n": 10}` (and its label with [`Trust::label`]).
pub use torchat_core::Trust;

/// A line sent by the node: a response or an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServerLine {
    /// A response.
    Response(Response),
    /// An event.
    Event(Event),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_serialises_as_documented() {
        let cases = [
            (
                Trust::Direct { confirmations: 2 },
                r#"{"kind":"direct","confirmations":2}"#,
            ),
            (
                Trust::Relayed { k: 2, n: 3 },
                r#"{"kind":"relayed","k":2,"n":3}"#,
            ),
            (
                Trust::Signed { k: 1, n: 3 },
                r#"{"kind":"signed","k":1,"n":3}"#,
            ),
            (
                Trust::Unconfirmed { k: 1, n: 3 },
                r#"{"kind":"unconfirmed","k":1,"n":3}"#,
            ),
            (Trust::Own, r#"{"kind":"own"}"#),
        ];
        for (t, json) in cases {
            assert_eq!(serde_json::to_string(&t).unwrap(), json);
            assert_eq!(serde_json::from_str::<Trust>(json).unwrap(), t);
        }
    }

    #[test]
    fn requests_parse_from_documented_json() {
        let r: Request =
            serde_json::from_str(r#"{"req":7,"cmd":"send","to":"abc","text":"hi"}"#).unwrap();
        assert_eq!(
            r,
            Request {
                req: 7,
                cmd: Command::Send {
                    to: "abc".into(),
                    text: "hi".into()
                }
            }
        );
        let r: Request = serde_json::from_str(r#"{"req":8,"cmd":"add","id":"abc"}"#).unwrap();
        assert_eq!(
            r.cmd,
            Command::Add {
                id: "abc".into(),
                alias: None
            }
        );
        let back = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&back).unwrap(), r);
        let r: Request = serde_json::from_str(r#"{"cmd":"info"}"#).unwrap();
        assert_eq!(r.cmd, Command::Info);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"nope"}"#).is_err());
    }

    #[test]
    fn events_and_responses_are_distinguishable() {
        let e = ServerLine::Event(Event::TorProgress {
            percent: 5,
            summary: "x".into(),
        });
        let s = serde_json::to_string(&e).unwrap();
        assert!(s.contains(r#""event":"tor_progress""#));
        assert_eq!(serde_json::from_str::<ServerLine>(&s).unwrap(), e);
        let r = ServerLine::Response(Response::err(3, "bad_id", "no"));
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<ServerLine>(&s).unwrap(), r);
    }
}
