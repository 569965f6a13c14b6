//! Typed TorChat packets: decoding one framed line, encoding one line.
//!
//! A line is `command SP payload` (or just `command`); the payload is escaped as a whole
//! ([`crate::escape`]). Text fields are raw bytes (UTF-8 by convention, but never trusted to be),
//! so decoding and re-encoding a line reproduces it byte for byte.

use std::fmt;

use crate::escape::{escape_into, unescape};
use crate::onion::{OnionId, OnionIdError};
use crate::sync::{DigestEntry, SeqSet, MAX_DIGEST_ENTRIES, MAX_LIST};

/// Longest command name we accept (the longest known one is 27 bytes).
pub const MAX_COMMAND_LEN: usize = 64;
/// Longest group id we accept (ruby-torchat uses 36-character UUIDs).
pub const MAX_GROUP_ID_LEN: usize = 128;

/// Whether a packet without payload was written `cmd SP LF` or `cmd LF`.
///
/// Real clients differ (Python TorChat and ruby-torchat write `add_me `, jtorchat `add_me`);
/// both are accepted everywhere. We send [`Spacing::Space`], like the reference client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Spacing {
    /// `add_me \n`
    #[default]
    Space,
    /// `add_me\n`
    Bare,
}

/// A presence value carried by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Status {
    /// `available`
    Available,
    /// `away`
    Away,
    /// `xa` (extended away)
    Xa,
    /// Anything else. Still a keepalive; the value itself is ignored.
    Other(Vec<u8>),
}

impl Status {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Status::Available => b"available",
            Status::Away => b"away",
            Status::Xa => b"xa",
            Status::Other(b) => b,
        }
    }

    fn from_bytes(b: &[u8]) -> Self {
        match b {
            b"available" => Status::Available,
            b"away" => Status::Away,
            b"xa" => Status::Xa,
            other => Status::Other(other.to_vec()),
        }
    }
}

/// A group chat id: a UUID v4 made by the creator, in practice any token without spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(String);

impl GroupId {
    /// Accepts 1 to [`MAX_GROUP_ID_LEN`] printable ASCII characters without spaces.
    pub fn new(s: &str) -> Option<Self> {
        let ok =
            !s.is_empty() && s.len() <= MAX_GROUP_ID_LEN && s.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| GroupId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A UUID (as text, `8-4-4-4-12` hex digits) made from 16 random bytes, with the version 4
    /// and variant bits set — how ruby-torchat makes group ids.
    pub fn uuid_v4(mut b: [u8; 16]) -> Self {
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        GroupId(format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        ))
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One TorChat protocol packet.
///
/// Covers the standard set, ruby-torchat's extensions (`supports`, `groupchat_*`, `typing_*`,
/// `latency_*`, `broadcast_message`), jtorchat's `disconnect`, the redundancy extension's
/// `groupchat_echoed_message`, and [`Packet::Unknown`] for everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Packet {
    /// `ping <id> <cookie>`: first line on every outgoing connection.
    Ping {
        /// Who the sender claims to be.
        from: OnionId,
        /// The rest of the line (Python TorChat's reading; jtorchat uses the first token).
        cookie: Vec<u8>,
    },
    /// `pong <cookie>`: proves the sender receives connections for the pinged id.
    Pong {
        /// The cookie from our ping.
        cookie: Vec<u8>,
    },
    /// `client <name>`
    Client(Vec<u8>),
    /// `version <version>`
    Version(Vec<u8>),
    /// `supports <ext> ...`: extensions the sender understands.
    Supports(Vec<String>),
    /// `status available|away|xa`: presence and keepalive.
    Status(Status),
    /// `profile_name <text>`
    ProfileName(Vec<u8>),
    /// `profile_text <text>`
    ProfileText(Vec<u8>),
    /// `profile_avatar_alpha <4096 bytes or empty>`
    ProfileAvatarAlpha(Vec<u8>),
    /// `profile_avatar <12288 bytes or empty>`
    ProfileAvatar(Vec<u8>),
    /// `add_me`
    AddMe(Spacing),
    /// `remove_me`
    RemoveMe(Spacing),
    /// `message <text>`
    Message(Vec<u8>),
    /// `filename <id> <size> <block size> <name>` (sent on the peer's connection).
    Filename {
        /// Transfer id.
        id: String,
        /// Total size in bytes.
        size: u64,
        /// Block size in bytes.
        block_size: u64,
        /// File name (untrusted).
        name: Vec<u8>,
    },
    /// `filedata <id> <start> <md5hex> <bytes>` (sent on the peer's connection).
    Filedata {
        /// Transfer id.
        id: String,
        /// Offset of this block.
        start: u64,
        /// Lower-case hex MD5 of `data`, as sent.
        md5: String,
        /// The raw block.
        data: Vec<u8>,
    },
    /// `filedata_ok <id> <start>`
    FiledataOk {
        /// Transfer id.
        id: String,
        /// Offset confirmed.
        start: u64,
    },
    /// `filedata_error <id> <start>`
    FiledataError {
        /// Transfer id.
        id: String,
        /// Offset to restart from.
        start: u64,
    },
    /// `file_stop_sending <id>`
    FileStopSending {
        /// Transfer id.
        id: String,
    },
    /// `file_stop_receiving <id>`
    FileStopReceiving {
        /// Transfer id.
        id: String,
    },
    /// `not_implemented [text]`; `None` when written without a space.
    NotImplemented(Option<Vec<u8>>),
    /// jtorchat's `disconnect`.
    Disconnect(Spacing),
    /// ruby-torchat's `typing_start`.
    TypingStart(Spacing),
    /// ruby-torchat's `typing_thinking`.
    TypingThinking(Spacing),
    /// ruby-torchat's `typing_stop`.
    TypingStop(Spacing),
    /// ruby-torchat's `latency_ping <id>`.
    LatencyPing(Vec<u8>),
    /// ruby-torchat's `latency_pong <id>`.
    LatencyPong(Vec<u8>),
    /// ruby-torchat's `broadcast_message <text>`.
    BroadcastMessage(Vec<u8>),
    /// `groupchat_invite <gid> [mode ...]`
    GroupInvite {
        /// Group id.
        gid: GroupId,
        /// Modes such as `noredundancy`.
        modes: Vec<String>,
    },
    /// `groupchat_participants <gid> [id ...]`
    GroupParticipants {
        /// Group id.
        gid: GroupId,
        /// The sender's member list (without the sender).
        ids: Vec<OnionId>,
    },
    /// `groupchat_is_participating <gid>` (ruby-torchat's `groupchat_is_participanting` is
    /// accepted on input).
    GroupIsParticipating {
        /// Group id.
        gid: GroupId,
    },
    /// `groupchat_participating <gid>`
    GroupParticipating {
        /// Group id.
        gid: GroupId,
    },
    /// `groupchat_not_participating <gid>`
    GroupNotParticipating {
        /// Group id.
        gid: GroupId,
    },
    /// `groupchat_join <gid>`
    GroupJoin {
        /// Group id.
        gid: GroupId,
    },
    /// `groupchat_invited <gid> <id>`
    GroupInvited {
        /// Group id.
        gid: GroupId,
        /// The member who joined.
        id: OnionId,
    },
    /// `groupchat_leave <gid> [reason]`
    GroupLeave {
        /// Group id.
        gid: GroupId,
        /// Optional reason text.
        reason: Option<Vec<u8>>,
    },
    /// `groupchat_message <gid> <text>`
    GroupMessage {
        /// Group id.
        gid: GroupId,
        /// Message text.
        text: Vec<u8>,
    },
    /// `groupchat_echoed_message <gid> <sender> <text>` (redundancy extension)
    GroupEchoedMessage {
        /// Group id.
        gid: GroupId,
        /// Who the relaying member says spoke.
        sender: OnionId,
        /// Message text.
        text: Vec<u8>,
    },
    /// `groupchat_signed_message <gid> <msgid> <signature> <text>` (our extension
    /// `torchat_signed`): a group message with a unique id, signed with the speaker's onion key.
    GroupSignedMessage {
        /// Group id.
        gid: GroupId,
        /// Message id (16 bytes, 32 hex characters on the wire).
        msgid: [u8; 16],
        /// ed25519 signature (64 bytes, 128 hex characters on the wire).
        sig: [u8; 64],
        /// Message text.
        text: Vec<u8>,
    },
    /// `groupchat_signed_echo <gid> <sender> <msgid> <signature> <text>`: a relayed copy that
    /// carries the speaker's signature.
    GroupSignedEcho {
        /// Group id.
        gid: GroupId,
        /// The speaker.
        sender: OnionId,
        /// Message id.
        msgid: [u8; 16],
        /// The speaker's signature.
        sig: [u8; 64],
        /// Message text.
        text: Vec<u8>,
    },
    /// `groupchat_sync_message <gid> <list hash> <speaker> <seq> <time> <signature|-> <text>`
    /// (our extension `torchat_sync`): a full copy of a group message, pushed by its speaker
    /// or sent by any member in answer to `groupchat_sync_want`.
    GroupSyncMessage {
        /// Group id.
        gid: GroupId,
        /// Hash of the sender's member list (8 hex digits on the wire).
        list: [u8; 4],
        /// The speaker.
        speaker: OnionId,
        /// The speaker's per-group sequence number (from 1).
        seq: u64,
        /// When the speaker said it (ms since the Unix epoch).
        time: u64,
        /// The speaker's ed25519 signature (128 hex digits), or `-` when it has no key.
        sig: Option<[u8; 64]>,
        /// Message text.
        text: Vec<u8>,
    },
    /// `groupchat_sync_ack <group> <set>`: the sender holds these of the receiver's messages.
    GroupSyncAck {
        /// The group id or its first 8 (or more) characters.
        group: GroupId,
        /// Sequence numbers held.
        held: SeqSet,
    },
    /// `groupchat_sync_digest <group> <list hash> [<key>:<set> ...]`: what the sender holds,
    /// per speaker (a version vector, possibly only the entries that changed).
    GroupSyncDigest {
        /// The group id or its first 8 (or more) characters.
        group: GroupId,
        /// Hash of the sender's member list.
        list: [u8; 4],
        /// Entries (at most [`MAX_DIGEST_ENTRIES`]).
        entries: Vec<DigestEntry>,
    },
    /// `groupchat_sync_want <gid> <speaker> <from> <to>`: send me your copies of these.
    GroupSyncWant {
        /// Group id.
        gid: GroupId,
        /// The speaker.
        speaker: OnionId,
        /// First sequence number.
        from: u64,
        /// Last sequence number (inclusive).
        to: u64,
    },
    /// `groupchat_sync_end <gid> <speaker> <from> <to>`: the answer to a want is complete;
    /// numbers in the range not sent are not available here any more.
    GroupSyncEnd {
        /// Group id.
        gid: GroupId,
        /// The speaker.
        speaker: OnionId,
        /// First sequence number.
        from: u64,
        /// Last sequence number (inclusive).
        to: u64,
    },
    /// `groupchat_sync_tell <gid> <member> ...`: from a speaker to a member that has its
    /// latest messages: these members could not be reached, offer them what you have.
    GroupSyncTell {
        /// Group id.
        gid: GroupId,
        /// Members (at most [`MAX_LIST`]).
        members: Vec<OnionId>,
    },
    /// `sync_message <id> <time> <text>` (extension `torchat_sync`): a 1:1 message with its
    /// id and original time, acknowledged with `sync_ack`.
    SyncMessage {
        /// Message id (32 hex digits on the wire).
        id: [u8; 16],
        /// When it was written (ms since the Unix epoch).
        time: u64,
        /// Text.
        text: Vec<u8>,
    },
    /// `sync_ack <id> ...`: these messages are stored here.
    SyncAck(Vec<[u8; 16]>),
    /// A well-formed line with a command we do not know; answered with `not_implemented`.
    Unknown {
        /// The command (`[a-z_]+`).
        command: String,
        /// The unescaped payload; `None` when there was no space.
        payload: Option<Vec<u8>>,
    },
}

/// Why a line could not be turned into a [`Packet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// An empty line (Pascal TorChat skips these).
    #[error("empty line")]
    Empty,
    /// The command is not `[a-z_]+` of at most [`MAX_COMMAND_LEN`] bytes.
    #[error("invalid command name")]
    BadCommand,
    /// A known command whose payload does not fit its syntax.
    #[error("malformed {command} packet: {reason}")]
    Malformed {
        /// The command.
        command: &'static str,
        /// What is wrong.
        reason: MalformedReason,
    },
}

/// What is wrong with a malformed packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedReason {
    /// A required field is missing.
    #[error("missing field")]
    MissingField,
    /// A number field is not a decimal integer.
    #[error("bad number")]
    BadNumber,
    /// A token field contains bytes it may not.
    #[error("bad token")]
    BadToken,
    /// A group id is not a valid group id.
    #[error("bad group id")]
    BadGroupId,
    /// An onion id is invalid.
    #[error("bad onion id: {0}")]
    BadId(OnionIdError),
    /// A list has more entries than the extension allows.
    #[error("too many entries")]
    TooMany,
}

const KNOWN: &[&str] = &[
    "ping",
    "pong",
    "client",
    "version",
    "supports",
    "status",
    "profile_name",
    "profile_text",
    "profile_avatar_alpha",
    "profile_avatar",
    "add_me",
    "remove_me",
    "message",
    "filename",
    "filedata",
    "filedata_ok",
    "filedata_error",
    "file_stop_sending",
    "file_stop_receiving",
    "not_implemented",
    "disconnect",
    "typing_start",
    "typing_thinking",
    "typing_stop",
    "latency_ping",
    "latency_pong",
    "broadcast_message",
    "groupchat_invite",
    "groupchat_participants",
    "groupchat_is_participating",
    "groupchat_is_participanting",
    "groupchat_participating",
    "groupchat_not_participating",
    "groupchat_join",
    "groupchat_invited",
    "groupchat_leave",
    "groupchat_message",
    "groupchat_echoed_message",
    "groupchat_signed_message",
    "groupchat_signed_echo",
    "groupchat_sync_message",
    "groupchat_sync_ack",
    "groupchat_sync_digest",
    "groupchat_sync_want",
    "groupchat_sync_end",
    "groupchat_sync_tell",
    "sync_message",
    "sync_ack",
];

/// Splits at the first space: `(head, Some(rest))`, or `(all, None)` without a space.
fn split1(b: &[u8]) -> (&[u8], Option<&[u8]>) {
    match b.iter().position(|&c| c == b' ') {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    }
}

struct Fields<'a> {
    command: &'static str,
    rest: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    fn err(&self, reason: MalformedReason) -> PacketError {
        PacketError::Malformed {
            command: self.command,
            reason,
        }
    }

    /// Next space-delimited token (must be non-empty).
    fn token(&mut self) -> Result<&'a [u8], PacketError> {
        let rest = self
            .rest
            .ok_or_else(|| self.err(MalformedReason::MissingField))?;
        let (tok, tail) = split1(rest);
        if tok.is_empty() {
            return Err(self.err(MalformedReason::MissingField));
        }
        self.rest = tail;
        Ok(tok)
    }

    /// Everything left (the last, free-text field), if there was a separator before it.
    fn tail(&mut self) -> Option<&'a [u8]> {
        self.rest.take()
    }

    fn str_token(&mut self) -> Result<String, PacketError> {
        let t = self.token()?;
        match std::str::from_utf8(t) {
            Ok(s) if s.bytes().all(|b| b.is_ascii_graphic()) => Ok(s.to_owned()),
            _ => Err(self.err(MalformedReason::BadToken)),
        }
    }

    fn number(&mut self) -> Result<u64, PacketError> {
        let t = self.token()?;
        if t.len() > 20 || !t.iter().all(u8::is_ascii_digit) {
            return Err(self.err(MalformedReason::BadNumber));
        }
        std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.err(MalformedReason::BadNumber))
    }

    fn gid(&mut self) -> Result<GroupId, PacketError> {
        let t = self.token()?;
        std::str::from_utf8(t)
            .ok()
            .and_then(GroupId::new)
            .ok_or_else(|| self.err(MalformedReason::BadGroupId))
    }

    fn id(&mut self) -> Result<OnionId, PacketError> {
        let t = self.token()?;
        OnionId::parse_bytes(t).map_err(|e| self.err(MalformedReason::BadId(e)))
    }

    /// A fixed-size binary field written as lower-case hex.
    fn hex<const N: usize>(&mut self) -> Result<[u8; N], PacketError> {
        let t = self.token()?;
        let mut out = [0u8; N];
        if t.len() != 2 * N {
            return Err(self.err(MalformedReason::BadToken));
        }
        for (i, o) in out.iter_mut().enumerate() {
            let pair = std::str::from_utf8(&t[2 * i..2 * i + 2]).ok();
            *o = pair
                .filter(|p| {
                    p.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                })
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| self.err(MalformedReason::BadToken))?;
        }
        Ok(out)
    }

    /// A sequence number or time: decimal, no leading zeros.
    fn seq(&mut self) -> Result<u64, PacketError> {
        let t = self.token()?;
        crate::sync::number(t).ok_or_else(|| self.err(MalformedReason::BadNumber))
    }

    /// A non-empty list of at most `max` tokens (after the fixed fields).
    fn list<T>(
        &mut self,
        max: usize,
        mut f: impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<Vec<T>, PacketError> {
        let mut out = Vec::new();
        for w in self.words() {
            if out.len() >= max {
                return Err(self.err(MalformedReason::TooMany));
            }
            out.push(f(w).ok_or_else(|| self.err(MalformedReason::BadToken))?);
        }
        Ok(out)
    }

    /// All remaining space-separated tokens (empty runs skipped).
    fn words(&mut self) -> impl Iterator<Item = &'a [u8]> {
        self.rest
            .take()
            .unwrap_or_default()
            .split(|&c| c == b' ')
            .filter(|w| !w.is_empty())
    }
}

fn command_name(cmd: &[u8]) -> Option<&'static str> {
    KNOWN.iter().copied().find(|k| k.as_bytes() == cmd)
}

fn spacing(payload: &Option<Vec<u8>>) -> Spacing {
    if payload.is_some() {
        Spacing::Space
    } else {
        Spacing::Bare
    }
}

impl Packet {
    /// Decodes one framed line (without its LF).
    pub fn decode(line: &[u8]) -> Result<Packet, PacketError> {
        if line.is_empty() {
            return Err(PacketError::Empty);
        }
        let (cmd, raw_payload) = split1(line);
        if cmd.is_empty()
            || cmd.len() > MAX_COMMAND_LEN
            || !cmd.iter().all(|&c| c.is_ascii_lowercase() || c == b'_')
        {
            return Err(PacketError::BadCommand);
        }
        let payload = raw_payload.map(unescape);
        let Some(command) = command_name(cmd) else {
            // Checked above: ASCII only.
            let command = String::from_utf8_lossy(cmd).into_owned();
            return Ok(Packet::Unknown { command, payload });
        };
        let mut f = Fields {
            command,
            rest: payload.as_deref(),
        };
        let text = |f: &mut Fields<'_>| f.tail().unwrap_or_default().to_vec();
        let p = match command {
            "ping" => {
                let from = f.id()?;
                let cookie = f.tail().filter(|c| !c.is_empty());
                let cookie = cookie.ok_or_else(|| f.err(MalformedReason::MissingField))?;
                Packet::Ping {
                    from,
                    cookie: cookie.to_vec(),
                }
            }
            "pong" => {
                let cookie = f.tail().filter(|c| !c.is_empty());
                let cookie = cookie.ok_or_else(|| f.err(MalformedReason::MissingField))?;
                Packet::Pong {
                    cookie: cookie.to_vec(),
                }
            }
            "client" => Packet::Client(text(&mut f)),
            "version" => Packet::Version(text(&mut f)),
            "supports" => Packet::Supports(
                f.words()
                    .map(|w| String::from_utf8_lossy(w).into_owned())
                    .collect(),
            ),
            "status" => Packet::Status(Status::from_bytes(&text(&mut f))),
            "profile_name" => Packet::ProfileName(text(&mut f)),
            "profile_text" => Packet::ProfileText(text(&mut f)),
            "profile_avatar_alpha" => Packet::ProfileAvatarAlpha(text(&mut f)),
            "profile_avatar" => Packet::ProfileAvatar(text(&mut f)),
            "add_me" => Packet::AddMe(spacing(&payload)),
            "remove_me" => Packet::RemoveMe(spacing(&payload)),
            "message" => Packet::Message(text(&mut f)),
            "filename" => Packet::Filename {
                id: f.str_token()?,
                size: f.number()?,
                block_size: f.number()?,
                name: text(&mut f),
            },
            "filedata" => Packet::Filedata {
                id: f.str_token()?,
                start: f.number()?,
                md5: f.str_token()?,
                data: text(&mut f),
            },
            "filedata_ok" => Packet::FiledataOk {
                id: f.str_token()?,
                start: f.number()?,
            },
            "filedata_error" => Packet::FiledataError {
                id: f.str_token()?,
                start: f.number()?,
            },
            "file_stop_sending" => Packet::FileStopSending { id: f.str_token()? },
            "file_stop_receiving" => Packet::FileStopReceiving { id: f.str_token()? },
            "not_implemented" => Packet::NotImplemented(payload.clone()),
            "disconnect" => Packet::Disconnect(spacing(&payload)),
            "typing_start" => Packet::TypingStart(spacing(&payload)),
            "typing_thinking" => Packet::TypingThinking(spacing(&payload)),
            "typing_stop" => Packet::TypingStop(spacing(&payload)),
            "latency_ping" => Packet::LatencyPing(text(&mut f)),
            "latency_pong" => Packet::LatencyPong(text(&mut f)),
            "broadcast_message" => Packet::BroadcastMessage(text(&mut f)),
            "groupchat_invite" => {
                let gid = f.gid()?;
                let modes = f
                    .words()
                    .map(|w| String::from_utf8_lossy(w).into_owned())
                    .collect();
                Packet::GroupInvite { gid, modes }
            }
            "groupchat_participants" => {
                let gid = f.gid()?;
                let ids = f
                    .words()
                    .map(OnionId::parse_bytes)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| f.err(MalformedReason::BadId(e)))?;
                Packet::GroupParticipants { gid, ids }
            }
            "groupchat_is_participating" | "groupchat_is_participanting" => {
                Packet::GroupIsParticipating { gid: f.gid()? }
            }
            "groupchat_participating" => Packet::GroupParticipating { gid: f.gid()? },
            "groupchat_not_participating" => Packet::GroupNotParticipating { gid: f.gid()? },
            "groupchat_join" => Packet::GroupJoin { gid: f.gid()? },
            "groupchat_invited" => Packet::GroupInvited {
                gid: f.gid()?,
                id: f.id()?,
            },
            "groupchat_leave" => {
                let gid = f.gid()?;
                Packet::GroupLeave {
                    gid,
                    reason: f.tail().map(<[u8]>::to_vec),
                }
            }
            "groupchat_message" => Packet::GroupMessage {
                gid: f.gid()?,
                text: text(&mut f),
            },
            "groupchat_echoed_message" => Packet::GroupEchoedMessage {
                gid: f.gid()?,
                sender: f.id()?,
                text: text(&mut f),
            },
            "groupchat_signed_message" => Packet::GroupSignedMessage {
                gid: f.gid()?,
                msgid: f.hex()?,
                sig: f.hex()?,
                text: text(&mut f),
            },
            "groupchat_signed_echo" => Packet::GroupSignedEcho {
                gid: f.gid()?,
                sender: f.id()?,
                msgid: f.hex()?,
                sig: f.hex()?,
                text: text(&mut f),
            },
            "groupchat_sync_message" => {
                let gid = f.gid()?;
                let list = f.hex()?;
                let speaker = f.id()?;
                let seq = f.seq()?;
                let time = f.seq()?;
                let sig = if f.rest.is_some_and(|r| r.starts_with(b"- ") || r == b"-") {
                    f.token()?;
                    None
                } else {
                    Some(f.hex()?)
                };
                Packet::GroupSyncMessage {
                    gid,
                    list,
                    speaker,
                    seq,
                    time,
                    sig,
                    text: text(&mut f),
                }
            }
            "groupchat_sync_ack" => {
                let group = f.gid()?;
                let t = f.token()?;
                let held = SeqSet::parse(t).ok_or_else(|| f.err(MalformedReason::BadToken))?;
                if f.rest.is_some() {
                    return Err(f.err(MalformedReason::BadToken));
                }
                Packet::GroupSyncAck { group, held }
            }
            "groupchat_sync_digest" => {
                let group = f.gid()?;
                let list = f.hex()?;
                let entries = f.list(MAX_DIGEST_ENTRIES, DigestEntry::parse)?;
                Packet::GroupSyncDigest {
                    group,
                    list,
                    entries,
                }
            }
            "groupchat_sync_want" | "groupchat_sync_end" => {
                let gid = f.gid()?;
                let speaker = f.id()?;
                let from = f.seq()?;
                let to = f.seq()?;
                if from == 0 || to < from || f.rest.is_some() {
                    return Err(f.err(MalformedReason::BadNumber));
                }
                if command == "groupchat_sync_want" {
                    Packet::GroupSyncWant {
                        gid,
                        speaker,
                        from,
                        to,
                    }
                } else {
                    Packet::GroupSyncEnd {
                        gid,
                        speaker,
                        from,
                        to,
                    }
                }
            }
            "groupchat_sync_tell" => {
                let gid = f.gid()?;
                let members = f.list(MAX_LIST, |w| OnionId::parse_bytes(w).ok())?;
                Packet::GroupSyncTell { gid, members }
            }
            "sync_message" => Packet::SyncMessage {
                id: f.hex()?,
                time: f.seq()?,
                text: text(&mut f),
            },
            "sync_ack" => {
                let ids = f.list(MAX_LIST, hex16)?;
                if ids.is_empty() {
                    return Err(f.err(MalformedReason::MissingField));
                }
                Packet::SyncAck(ids)
            }
            _ => Packet::Unknown {
                command: command.to_owned(),
                payload,
            },
        };
        Ok(p)
    }

    /// The command name this packet is sent with.
    pub fn command(&self) -> &str {
        match self {
            Packet::Ping { .. } => "ping",
            Packet::Pong { .. } => "pong",
            Packet::Client(_) => "client",
            Packet::Version(_) => "version",
            Packet::Supports(_) => "supports",
            Packet::Status(_) => "status",
            Packet::ProfileName(_) => "profile_name",
            Packet::ProfileText(_) => "profile_text",
            Packet::ProfileAvatarAlpha(_) => "profile_avatar_alpha",
            Packet::ProfileAvatar(_) => "profile_avatar",
            Packet::AddMe(_) => "add_me",
            Packet::RemoveMe(_) => "remove_me",
            Packet::Message(_) => "message",
            Packet::Filename { .. } => "filename",
            Packet::Filedata { .. } => "filedata",
            Packet::FiledataOk { .. } => "filedata_ok",
            Packet::FiledataError { .. } => "filedata_error",
            Packet::FileStopSending { .. } => "file_stop_sending",
            Packet::FileStopReceiving { .. } => "file_stop_receiving",
            Packet::NotImplemented(_) => "not_implemented",
            Packet::Disconnect(_) => "disconnect",
            Packet::TypingStart(_) => "typing_start",
            Packet::TypingThinking(_) => "typing_thinking",
            Packet::TypingStop(_) => "typing_stop",
            Packet::LatencyPing(_) => "latency_ping",
            Packet::LatencyPong(_) => "latency_pong",
            Packet::BroadcastMessage(_) => "broadcast_message",
            Packet::GroupInvite { .. } => "groupchat_invite",
            Packet::GroupParticipants { .. } => "groupchat_participants",
            Packet::GroupIsParticipating { .. } => "groupchat_is_participating",
            Packet::GroupParticipating { .. } => "groupchat_participating",
            Packet::GroupNotParticipating { .. } => "groupchat_not_participating",
            Packet::GroupJoin { .. } => "groupchat_join",
            Packet::GroupInvited { .. } => "groupchat_invited",
            Packet::GroupLeave { .. } => "groupchat_leave",
            Packet::GroupMessage { .. } => "groupchat_message",
            Packet::GroupEchoedMessage { .. } => "groupchat_echoed_message",
            Packet::GroupSignedMessage { .. } => "groupchat_signed_message",
            Packet::GroupSignedEcho { .. } => "groupchat_signed_echo",
            Packet::GroupSyncMessage { .. } => "groupchat_sync_message",
            Packet::GroupSyncAck { .. } => "groupchat_sync_ack",
            Packet::GroupSyncDigest { .. } => "groupchat_sync_digest",
            Packet::GroupSyncWant { .. } => "groupchat_sync_want",
            Packet::GroupSyncEnd { .. } => "groupchat_sync_end",
            Packet::GroupSyncTell { .. } => "groupchat_sync_tell",
            Packet::SyncMessage { .. } => "sync_message",
            Packet::SyncAck(_) => "sync_ack",
            Packet::Unknown { command, .. } => command,
        }
    }

    /// Appends the encoded line, LF included, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.command().as_bytes());
        let mut w = Writer {
            out,
            started: false,
        };
        match self {
            Packet::Ping { from, cookie } => {
                w.field(from.as_bytes());
                w.field(cookie);
            }
            Packet::Pong { cookie } => w.field(cookie),
            Packet::Client(t)
            | Packet::Version(t)
            | Packet::ProfileName(t)
            | Packet::ProfileText(t)
            | Packet::ProfileAvatarAlpha(t)
            | Packet::ProfileAvatar(t)
            | Packet::Message(t)
            | Packet::LatencyPing(t)
            | Packet::LatencyPong(t)
            | Packet::BroadcastMessage(t) => w.field(t),
            Packet::Supports(exts) => {
                w.words(exts.iter().map(String::as_bytes));
                w.open(); // `supports ` even when empty
            }
            Packet::Status(s) => w.field(s.as_bytes()),
            Packet::AddMe(s)
            | Packet::RemoveMe(s)
            | Packet::Disconnect(s)
            | Packet::TypingStart(s)
            | Packet::TypingThinking(s)
            | Packet::TypingStop(s) => {
                if *s == Spacing::Space {
                    w.open();
                }
            }
            Packet::Filename {
                id,
                size,
                block_size,
                name,
            } => {
                w.field(id.as_bytes());
                w.field(size.to_string().as_bytes());
                w.field(block_size.to_string().as_bytes());
                w.field(name);
            }
            Packet::Filedata {
                id,
                start,
                md5,
                data,
            } => {
                w.field(id.as_bytes());
                w.field(start.to_string().as_bytes());
                w.field(md5.as_bytes());
                w.field(data);
            }
            Packet::FiledataOk { id, start } | Packet::FiledataError { id, start } => {
                w.field(id.as_bytes());
                w.field(start.to_string().as_bytes());
            }
            Packet::FileStopSending { id } | Packet::FileStopReceiving { id } => {
                w.field(id.as_bytes())
            }
            Packet::NotImplemented(t) => {
                if let Some(t) = t {
                    w.field(t);
                }
            }
            Packet::GroupInvite { gid, modes } => {
                w.field(gid.as_str().as_bytes());
                w.words(modes.iter().map(String::as_bytes));
            }
            Packet::GroupParticipants { gid, ids } => {
                w.field(gid.as_str().as_bytes());
                w.words(ids.iter().map(OnionId::as_bytes));
            }
            Packet::GroupIsParticipating { gid }
            | Packet::GroupParticipating { gid }
            | Packet::GroupNotParticipating { gid }
            | Packet::GroupJoin { gid } => w.field(gid.as_str().as_bytes()),
            Packet::GroupInvited { gid, id } => {
                w.field(gid.as_str().as_bytes());
                w.field(id.as_bytes());
            }
            Packet::GroupLeave { gid, reason } => {
                w.field(gid.as_str().as_bytes());
                if let Some(r) = reason {
                    w.field(r);
                }
            }
            Packet::GroupMessage { gid, text } => {
                w.field(gid.as_str().as_bytes());
                w.field(text);
            }
            Packet::GroupEchoedMessage { gid, sender, text } => {
                w.field(gid.as_str().as_bytes());
                w.field(sender.as_bytes());
                w.field(text);
            }
            Packet::GroupSignedMessage {
                gid,
                msgid,
                sig,
                text,
            } => {
                w.field(gid.as_str().as_bytes());
                w.field(&hex(msgid));
                w.field(&hex(sig));
                w.field(text);
            }
            Packet::GroupSignedEcho {
                gid,
                sender,
                msgid,
                sig,
                text,
            } => {
                w.field(gid.as_str().as_bytes());
                w.field(sender.as_bytes());
                w.field(&hex(msgid));
                w.field(&hex(sig));
                w.field(text);
            }
            Packet::GroupSyncMessage {
                gid,
                list,
                speaker,
                seq,
                time,
                sig,
                text,
            } => {
                w.field(gid.as_str().as_bytes());
                w.field(&hex(list));
                w.field(speaker.as_bytes());
                w.field(seq.to_string().as_bytes());
                w.field(time.to_string().as_bytes());
                match sig {
                    Some(sig) => w.field(&hex(sig)),
                    None => w.field(b"-"),
                }
                w.field(text);
            }
            Packet::GroupSyncAck { group, held } => {
                w.field(group.as_str().as_bytes());
                let mut b = Vec::new();
                held.write(&mut b);
                w.field(&b);
            }
            Packet::GroupSyncDigest {
                group,
                list,
                entries,
            } => {
                w.field(group.as_str().as_bytes());
                w.field(&hex(list));
                for e in entries {
                    w.field(&e.to_bytes());
                }
            }
            Packet::GroupSyncWant {
                gid,
                speaker,
                from,
                to,
            }
            | Packet::GroupSyncEnd {
                gid,
                speaker,
                from,
                to,
            } => {
                w.field(gid.as_str().as_bytes());
                w.field(speaker.as_bytes());
                w.field(from.to_string().as_bytes());
                w.field(to.to_string().as_bytes());
            }
            Packet::GroupSyncTell { gid, members } => {
                w.field(gid.as_str().as_bytes());
                w.words(members.iter().map(OnionId::as_bytes));
            }
            Packet::SyncMessage { id, time, text } => {
                w.field(&hex(id));
                w.field(time.to_string().as_bytes());
                w.field(text);
            }
            Packet::SyncAck(ids) => {
                for id in ids {
                    w.field(&hex(id));
                }
            }
            Packet::Unknown { payload, .. } => {
                if let Some(p) = payload {
                    w.field(p);
                }
            }
        }
        w.out.push(b'\n');
    }

    /// The encoded line, LF included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

/// Writes payload fields: the first is preceded by the command separator, later ones by a
/// field separator. Both are a single space on the wire.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    started: bool,
}

impl Writer<'_> {
    fn open(&mut self) {
        if !self.started {
            self.out.push(b' ');
            self.started = true;
        }
    }

    fn field(&mut self, raw: &[u8]) {
        if self.started {
            self.out.push(b' ');
        } else {
            self.open();
        }
        escape_into(raw, self.out);
    }

    fn words<'b>(&mut self, words: impl Iterator<Item = &'b [u8]>) {
        for w in words {
            self.field(w);
        }
    }
}

/// 32 lower-case hex digits.
fn hex16(t: &[u8]) -> Option<[u8; 16]> {
    let mut f = Fields {
        command: "sync_ack",
        rest: Some(t),
    };
    f.hex().ok()
}

/// Lower-case hex of a byte string.
fn hex(b: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    b.iter()
        .flat_map(|x| [DIGITS[usize::from(x >> 4)], DIGITS[usize::from(x & 15)]])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_basic() {
        let p = Packet::decode(b"ping rubyaaaaaaaaaaaa 18886cf8-09cb").unwrap();
        assert_eq!(
            p,
            Packet::Ping {
                from: OnionId::parse("rubyaaaaaaaaaaaa").unwrap(),
                cookie: b"18886cf8-09cb".to_vec()
            }
        );
        assert_eq!(Packet::decode(b"add_me"), Ok(Packet::AddMe(Spacing::Bare)));
        assert_eq!(
            Packet::decode(b"add_me "),
            Ok(Packet::AddMe(Spacing::Space))
        );
        assert_eq!(
            Packet::decode(b"not_implemented "),
            Ok(Packet::NotImplemented(Some(vec![])))
        );
        assert_eq!(
            Packet::decode(b"not_implemented"),
            Ok(Packet::NotImplemented(None))
        );
        assert_eq!(
            Packet::decode(b"message a\\nb\\/c"),
            Ok(Packet::Message(b"a\nb\\c".to_vec()))
        );
        assert_eq!(
            Packet::decode(b"groupchat_is_participanting abc"),
            Ok(Packet::GroupIsParticipating {
                gid: GroupId::new("abc").unwrap()
            })
        );
        assert_eq!(
            Packet::decode(b"frobnicate x y"),
            Ok(Packet::Unknown {
                command: "frobnicate".into(),
                payload: Some(b"x y".to_vec())
            })
        );
    }

    #[test]
    fn decode_errors() {
        assert_eq!(Packet::decode(b""), Err(PacketError::Empty));
        assert_eq!(Packet::decode(b"PING x"), Err(PacketError::BadCommand));
        assert_eq!(Packet::decode(b" x"), Err(PacketError::BadCommand));
        assert!(matches!(
            Packet::decode(b"ping notanid cookie"),
            Err(PacketError::Malformed {
                command: "ping",
                reason: MalformedReason::BadId(_)
            })
        ));
        assert!(matches!(
            Packet::decode(b"ping rubyaaaaaaaaaaaa"),
            Err(PacketError::Malformed {
                command: "ping",
                reason: MalformedReason::MissingField
            })
        ));
        assert!(matches!(
            Packet::decode(b"filedata_ok 1 x"),
            Err(PacketError::Malformed {
                reason: MalformedReason::BadNumber,
                ..
            })
        ));
        assert!(matches!(
            Packet::decode(b"groupchat_participants g bad"),
            Err(PacketError::Malformed {
                reason: MalformedReason::BadId(_),
                ..
            })
        ));
    }

    #[test]
    fn filedata_carries_raw_binary() {
        let data: Vec<u8> = (0..=255u8).cycle().take(8192).collect();
        let p = Packet::Filedata {
            id: "42".into(),
            start: 8192,
            md5: "abc".into(),
            data,
        };
        let enc = p.encode();
        assert_eq!(enc.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(Packet::decode(&enc[..enc.len() - 1]), Ok(p));
    }

    #[test]
    fn sync_packets_on_the_wire() {
        let gid = GroupId::new("6f012391-883d-4f4f-8d54-52c4227b3ac9").unwrap();
        let s = OnionId::parse("nodeaaaaaaaaaaaa").unwrap();
        let m = Packet::GroupSyncMessage {
            gid: gid.clone(),
            list: [0x3f, 0xa9, 0xc2, 0xd1],
            speaker: s.clone(),
            seq: 57,
            time: 1_700_000_000_000,
            sig: None,
            text: b"hello all".to_vec(),
        };
        let line = b"groupchat_sync_message 6f012391-883d-4f4f-8d54-52c4227b3ac9 3fa9c2d1 \
                     nodeaaaaaaaaaaaa 57 1700000000000 - hello all\n";
        assert_eq!(m.encode(), line);
        assert_eq!(Packet::decode(&line[..line.len() - 1]), Ok(m));
        let ack = Packet::decode(b"groupchat_sync_ack 6f012391 57,60-62").unwrap();
        assert_eq!(
            ack,
            Packet::GroupSyncAck {
                group: GroupId::new("6f012391").unwrap(),
                held: SeqSet {
                    upto: 57,
                    ranges: vec![(60, 62)]
                }
            }
        );
        let d = Packet::decode(b"groupchat_sync_digest 6f012391 3fa9c2d1 0:57 2:1204 5:9,11-12")
            .unwrap();
        let Packet::GroupSyncDigest { entries, .. } = &d else {
            panic!("{d:?}")
        };
        assert_eq!(entries.len(), 3);
        assert_eq!(
            d.encode(),
            b"groupchat_sync_digest 6f012391 3fa9c2d1 0:57 2:1204 5:9,11-12\n"
        );
        let want = format!("groupchat_sync_want {gid} nodeaaaaaaaaaaaa 58 157");
        assert!(matches!(
            Packet::decode(want.as_bytes()),
            Ok(Packet::GroupSyncWant {
                from: 58,
                to: 157,
                ..
            })
        ));
        let a = Packet::decode(
            b"sync_ack 000102030405060708090a0b0c0d0e0f ffffffffffffffffffffffffffffffff",
        )
        .unwrap();
        assert_eq!(a, Packet::SyncAck(vec![core_id(), [0xff; 16]]));
        let msg = b"sync_message 000102030405060708090a0b0c0d0e0f 1700000000000 hi there";
        assert_eq!(
            Packet::decode(msg),
            Ok(Packet::SyncMessage {
                id: core_id(),
                time: 1_700_000_000_000,
                text: b"hi there".to_vec()
            })
        );
    }

    fn core_id() -> [u8; 16] {
        std::array::from_fn(|i| i as u8)
    }

    #[test]
    fn sync_packets_reject_what_does_not_fit() {
        let gid = "6f012391-883d-4f4f-8d54-52c4227b3ac9";
        let bad = [
            // a want for nothing, or backwards
            format!("groupchat_sync_want {gid} nodeaaaaaaaaaaaa 0 5"),
            format!("groupchat_sync_want {gid} nodeaaaaaaaaaaaa 9 5"),
            format!("groupchat_sync_want {gid} nodeaaaaaaaaaaaa 1 5 6"),
            // seq 0, leading zeros, overflow
            format!("groupchat_sync_message {gid} 3fa9c2d1 nodeaaaaaaaaaaaa 007 1 - x"),
            format!(
                "groupchat_sync_message {gid} 3fa9c2d1 nodeaaaaaaaaaaaa 1 99999999999999999999 - x"
            ),
            // a short signature, a bad hash
            format!("groupchat_sync_message {gid} 3fa9c2d1 nodeaaaaaaaaaaaa 1 1 abcd x"),
            format!("groupchat_sync_message {gid} 3FA9C2D1 nodeaaaaaaaaaaaa 1 1 - x"),
            // sets that are not canonical
            "groupchat_sync_ack 6f012391 5,6".to_owned(),
            "groupchat_sync_ack 6f012391 5 6".to_owned(),
            "groupchat_sync_digest 6f012391 3fa9c2d1 0:5,4".to_owned(),
            "sync_ack ".to_owned(),
            "sync_ack 0011".to_owned(),
        ];
        for l in &bad {
            assert!(
                matches!(
                    Packet::decode(l.as_bytes()),
                    Err(PacketError::Malformed { .. })
                ),
                "{l}"
            );
        }
        // Bounded lists.
        let many: Vec<String> = (0..=crate::sync::MAX_LIST)
            .map(|_| "00".repeat(16))
            .collect();
        assert!(Packet::decode(format!("sync_ack {}", many.join(" ")).as_bytes()).is_err());
        let entries: Vec<String> = (0..=crate::sync::MAX_DIGEST_ENTRIES)
            .map(|i| format!("{i}:1"))
            .collect();
        let d = format!(
            "groupchat_sync_digest 6f012391 3fa9c2d1 {}",
            entries.join(" ")
        );
        assert!(Packet::decode(d.as_bytes()).is_err());
    }

    #[test]
    fn empty_fields_keep_their_space() {
        assert_eq!(Packet::ProfileText(vec![]).encode(), b"profile_text \n");
        assert_eq!(Packet::Message(vec![]).encode(), b"message \n");
        assert_eq!(Packet::AddMe(Spacing::default()).encode(), b"add_me \n");
        assert_eq!(Packet::Supports(vec![]).encode(), b"supports \n");
    }
}
