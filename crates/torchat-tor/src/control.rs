//! A small async client for Tor's control port (control-spec.txt): the line protocol with
//! `250` replies and `650` asynchronous events, bounded line and reply sizes.
//!
//! Written by hand rather than taken from a crate: `tor-interface` (the Tor project's) runs its
//! own blocking threads and reports an onion service as published on the first `UPLOADED`
//! event, and `torut` is unmaintained; what we need is about 300 lines.
//!
//! One task reads the connection and sorts what arrives into command replies and events, so
//! events are never lost while a command is in flight. Commands are serialized by `&mut self`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::Error;

/// Longest line we accept from Tor (its own replies to our commands are far shorter).
const MAX_LINE: usize = 16 * 1024;
/// Largest reply (all lines of one reply together).
const MAX_REPLY: usize = 256 * 1024;
/// Events buffered for the owner; more are dropped (and logged at debug).
const EVENT_QUEUE: usize = 1024;
/// Time allowed for one command's reply.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One reply or event: its status code and its lines (without the `NNN-` prefixes; a data
/// block `NNN+` is appended to its line after a `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code: 250 for success, 650 for an event, 5xx for errors.
    pub code: u16,
    /// The text lines.
    pub lines: Vec<String>,
}

impl Reply {
    /// The first line's text (for events: `KEYWORD ...`).
    pub fn first(&self) -> &str {
        self.lines.first().map(String::as_str).unwrap_or("")
    }
}

/// How to authenticate to the control port.
#[derive(Clone, Default)]
pub enum ControlAuth {
    /// Ask Tor (`PROTOCOLINFO`): cookie authentication with the file it names, else none.
    #[default]
    Auto,
    /// Cookie authentication with this cookie file.
    CookieFile(PathBuf),
    /// Password authentication (`HashedControlPassword`).
    Password(Zeroizing<String>),
    /// No authentication.
    None,
}

impl std::fmt::Debug for ControlAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlAuth::Auto => f.write_str("Auto"),
            ControlAuth::CookieFile(p) => f.debug_tuple("CookieFile").field(p).finish(),
            ControlAuth::Password(_) => f.write_str("Password(<redacted>)"),
            ControlAuth::None => f.write_str("None"),
        }
    }
}

/// An authenticated (or about to be) control connection.
#[derive(Debug)]
pub struct ControlConn {
    writer: OwnedWriteHalf,
    replies: mpsc::Receiver<Result<Reply, Error>>,
    events: mpsc::Receiver<Reply>,
    reader: JoinHandle<()>,
}

impl Drop for ControlConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl ControlConn {
    /// Connects to a control port (not yet authenticated).
    pub async fn connect(addr: SocketAddr) -> Result<Self, Error> {
        let stream = TcpStream::connect(addr).await?;
        let (r, writer) = stream.into_split();
        let (reply_tx, replies) = mpsc::channel(8);
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let reader = tokio::spawn(read_loop(BufReader::new(r), reply_tx, event_tx));
        Ok(ControlConn {
            writer,
            replies,
            events,
            reader,
        })
    }

    /// Sends one command line and returns its reply, whatever the code.
    /// The command is never logged (it may hold a key or a password): only its first word.
    pub async fn command(&mut self, line: &str) -> Result<Reply, Error> {
        if line.contains(['\r', '\n']) {
            return Err(Error::Control("a command must be one line".into()));
        }
        let word = line.split(' ').next().unwrap_or("");
        tracing::debug!(command = word, "tor control: sending");
        let mut buf = Zeroizing::new(Vec::with_capacity(line.len() + 2));
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\r\n");
        self.writer.write_all(&buf).await?;
        match tokio::time::timeout(COMMAND_TIMEOUT, self.replies.recv()).await {
            Ok(Some(r)) => r,
            Ok(None) => Err(Error::Control("tor closed the control connection".into())),
            Err(_) => Err(Error::Control(format!("no reply to {word} within 30 s"))),
        }
    }

    /// Like [`ControlConn::command`], but a reply other than 250 is an error.
    pub async fn command_ok(&mut self, line: &str) -> Result<Reply, Error> {
        let reply = self.command(line).await?;
        if reply.code != 250 {
            let word = line.split(' ').next().unwrap_or("");
            return Err(Error::Control(format!(
                "{word} failed: {} {}",
                reply.code,
                reply.first()
            )));
        }
        Ok(reply)
    }

    /// Authenticates with `auth`.
    pub async fn authenticate(&mut self, auth: &ControlAuth) -> Result<(), Error> {
        let line: Zeroizing<String> = match auth {
            ControlAuth::None => Zeroizing::new("AUTHENTICATE".into()),
            ControlAuth::Password(p) => {
                Zeroizing::new(format!("AUTHENTICATE {}", quote(p.as_str())))
            }
            ControlAuth::CookieFile(path) => cookie_line(path).await?,
            ControlAuth::Auto => {
                let info = self.command_ok("PROTOCOLINFO 1").await?;
                let (methods, cookie) = parse_protocolinfo(&info);
                if methods.iter().any(|m| m == "COOKIE") {
                    let path = cookie.ok_or_else(|| {
                        Error::Control("tor offers cookie auth but names no cookie file".into())
                    })?;
                    cookie_line(&path).await?
                } else if methods.iter().any(|m| m == "NULL") {
                    Zeroizing::new("AUTHENTICATE".into())
                } else {
                    return Err(Error::Config(format!(
                        "the tor control port wants {} authentication: configure a cookie file \
                         or a password",
                        methods.join("/")
                    )));
                }
            }
        };
        let reply = self.command(&line).await?;
        if reply.code != 250 {
            return Err(Error::Config(format!(
                "tor control port authentication failed: {} {}",
                reply.code,
                reply.first()
            )));
        }
        Ok(())
    }

    /// `GETINFO key`: the value (a data block's lines joined with `\n`).
    pub async fn getinfo(&mut self, key: &str) -> Result<String, Error> {
        let reply = self.command_ok(&format!("GETINFO {key}")).await?;
        let prefix = format!("{key}=");
        reply
            .lines
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.strip_prefix('\n').unwrap_or(v).to_string())
            .ok_or_else(|| Error::Control(format!("GETINFO {key}: no value in the reply")))
    }

    /// The next asynchronous event (`650`), or `None` once the connection is closed.
    pub async fn next_event(&mut self) -> Option<Reply> {
        self.events.recv().await
    }
}

async fn cookie_line(path: &Path) -> Result<Zeroizing<String>, Error> {
    let meta = tokio::fs::metadata(path).await.map_err(|e| {
        Error::Config(format!(
            "cannot read the tor cookie file {}: {e}",
            path.display()
        ))
    })?;
    if meta.len() != 32 {
        return Err(Error::Config(format!(
            "{} is not a tor control cookie (32 bytes)",
            path.display()
        )));
    }
    let cookie = Zeroizing::new(tokio::fs::read(path).await?);
    let mut line = Zeroizing::new(String::from("AUTHENTICATE "));
    line.push_str(&data_encoding::HEXUPPER.encode(&cookie));
    Ok(line)
}

/// The auth methods and cookie file of a `PROTOCOLINFO` reply.
fn parse_protocolinfo(reply: &Reply) -> (Vec<String>, Option<PathBuf>) {
    let mut methods = Vec::new();
    let mut cookie = None;
    for line in &reply.lines {
        if let Some(rest) = line.strip_prefix("AUTH ") {
            for (k, v) in keywords(rest) {
                match k.as_deref() {
                    Some("METHODS") => methods = v.split(',').map(str::to_string).collect(),
                    Some("COOKIEFILE") => cookie = Some(PathBuf::from(v)),
                    _ => {}
                }
            }
        }
    }
    (methods, cookie)
}

/// A control-spec QuotedString.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits `a B=c D="e f"` into `(None, "a")`, `(Some("B"), "c")`, `(Some("D"), "e f")`,
/// unquoting quoted values.
pub fn keywords(s: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let mut key = None;
        let mut word = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c == ' ' && !quoted {
                break;
            }
            chars.next();
            match c {
                '=' if key.is_none() && !quoted => key = Some(std::mem::take(&mut word)),
                '"' if !quoted && word.is_empty() => quoted = true,
                '"' if quoted => quoted = false,
                '\\' if quoted => {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                c => word.push(c),
            }
        }
        out.push((key, word));
    }
}

/// The value of `key=` among `keywords(s)`.
pub fn keyword(s: &str, key: &str) -> Option<String> {
    keywords(s)
        .into_iter()
        .find_map(|(k, v)| (k.as_deref() == Some(key)).then_some(v))
}

async fn read_loop(
    mut r: BufReader<OwnedReadHalf>,
    replies: mpsc::Sender<Result<Reply, Error>>,
    events: mpsc::Sender<Reply>,
) {
    loop {
        match read_reply(&mut r).await {
            Ok(Some(reply)) if reply.code / 100 == 6 => {
                if events.try_send(reply).is_err() {
                    tracing::debug!("tor control: event queue full or closed, event dropped");
                }
            }
            Ok(Some(reply)) => {
                if replies.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                let _ = replies.send(Err(e)).await;
                return;
            }
        }
    }
}

/// Reads one line of at most 16 KiB, without its CR LF; `None` at a clean end of stream.
pub(crate) async fn read_line<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
) -> Result<Option<String>, Error> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(Error::Control(if n > MAX_LINE {
            "line from tor too long".into()
        } else {
            "tor closed the control connection mid-line".into()
        }));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Reads one complete reply; `None` at a clean end of stream before it starts.
pub(crate) async fn read_reply<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
) -> Result<Option<Reply>, Error> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    loop {
        let Some(line) = read_line(r).await? else {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err(Error::Control(
                    "tor closed the control connection mid-reply".into(),
                ))
            };
        };
        let bytes = line.as_bytes();
        if bytes.len() < 4 || !bytes[..3].iter().all(u8::is_ascii_digit) {
            return Err(Error::Control("malformed line from tor".into()));
        }
        let code: u16 = line[..3].parse().unwrap_or(0);
        let sep = bytes[3];
        if !matches!(sep, b' ' | b'-' | b'+') {
            // Checked before slicing: a non-ASCII byte here is not a char boundary.
            return Err(Error::Control("malformed line from tor".into()));
        }
        let mut text = line[4..].to_string();
        if sep == b'+' {
            // A data block follows, ended by a line holding a single ".".
            loop {
                let Some(data) = read_line(r).await? else {
                    return Err(Error::Control("tor closed the connection mid-data".into()));
                };
                if data == "." {
                    break;
                }
                total += data.len() + 1;
                if total > MAX_REPLY {
                    return Err(Error::Control("reply from tor too long".into()));
                }
                text.push('\n');
                text.push_str(data.strip_prefix('.').unwrap_or(&data));
            }
        }
        total += text.len();
        if total > MAX_REPLY {
            return Err(Error::Control("reply from tor too long".into()));
        }
        lines.push(text);
        match sep {
            b' ' => return Ok(Some(Reply { code, lines })),
            b'-' | b'+' => {}
            _ => return Err(Error::Control("malformed line from tor".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(input: &str) -> Result<Option<Reply>, Error> {
        let mut r = BufReader::new(input.as_bytes());
        read_reply(&mut r).await
    }

    #[tokio::test]
    async fn replies_parse() {
        let r = parse("250-ServiceID=abc\r\n250 OK\r\n")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, vec!["ServiceID=abc", "OK"]);
        let r = parse("250+info/names=\r\nfoo\r\n..bar\r\n.\r\n250 OK\r\n")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.lines, vec!["info/names=\nfoo\n.bar", "OK"]);
        let r = parse("650 HS_DESC UPLOADED x UNKNOWN $AB\r\n")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.code, 650);
        assert!(parse("").await.unwrap().is_none());
        assert!(parse("250-partial\r\n").await.is_err());
        assert!(parse("25x OK\r\n").await.is_err());
        assert!(parse("250?OK\r\n").await.is_err());
        assert!(parse("250\u{e9}OK\r\n").await.is_err());
        assert!(parse("250\u{FFFD}x\r\n").await.is_err());
        let long = format!("250 {}\r\n", "a".repeat(MAX_LINE + 10));
        assert!(parse(&long).await.is_err());
    }

    #[test]
    fn keywords_split_and_unquote() {
        let s = r#"NOTICE BOOTSTRAP PROGRESS=45 TAG=requesting_descriptors SUMMARY="Asking for \"relay\" descriptors""#;
        assert_eq!(keyword(s, "PROGRESS").as_deref(), Some("45"));
        assert_eq!(
            keyword(s, "SUMMARY").as_deref(),
            Some("Asking for \"relay\" descriptors")
        );
        assert_eq!(keywords(s)[1], (None, "BOOTSTRAP".to_string()));
        assert_eq!(keyword(s, "NOPE"), None);
    }

    #[test]
    fn protocolinfo_parses() {
        let r = Reply {
            code: 250,
            lines: vec![
                "PROTOCOLINFO 1".into(),
                r#"AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/tmp/a b/control_auth_cookie""#
                    .into(),
                r#"VERSION Tor="0.4.9.1""#.into(),
                "OK".into(),
            ],
        };
        let (m, c) = parse_protocolinfo(&r);
        assert_eq!(m, vec!["COOKIE", "SAFECOOKIE"]);
        assert_eq!(c, Some(PathBuf::from("/tmp/a b/control_auth_cookie")));
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
