//! The async server loop over real sockets, against a fake node (a Unix socket that speaks
//! the control API with canned answers): password, registration, bounded lines, a message
//! each way, a missing node, and the configuration checks.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use torchat_irc::{Error, IrcConfig, Server};

const BOB: &str = "bobaaaaaaaaaaaaa";

/// A fake node: answers commands; after `send`, bob answers with a message event.
async fn fake_node(path: PathBuf) {
    let listener = UnixListener::bind(&path).unwrap();
    loop {
        let (sock, _) = listener.accept().await.unwrap();
        tokio::spawn(async move {
            let (rd, mut wr) = sock.into_split();
            let mut lines = tokio::io::BufReader::new(rd).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let req: Value = serde_json::from_str(&l).unwrap();
                let result = match req["cmd"].as_str().unwrap() {
                    "info" => json!({"id": "meaaaaaaaaaaaaaa", "transport": "direct"}),
                    "buddies" => json!([{"id": BOB, "kind": "permanent", "alias": "bob",
                        "presence": "available", "name": "Bob", "text": "", "client": null,
                        "queued": 0}]),
                    "groups" => json!([]),
                    "send" => json!({"id": "m1", "state": "queued"}),
                    _ => json!({}),
                };
                let resp = json!({"v": 1, "req": req["req"], "ok": true, "result": result});
                wr.write_all(format!("{resp}\n").as_bytes()).await.unwrap();
                if req["cmd"] == "send" {
                    let ev = json!({"event": "message", "message": {"row": 0, "id": "m2",
                        "conversation": BOB, "sender": BOB, "direction": "in",
                        "text": format!("you said: {}", req["text"].as_str().unwrap()),
                        "at": 0, "delivery": null, "trust": null}});
                    wr.write_all(format!("{ev}\n").as_bytes()).await.unwrap();
                }
            }
        });
    }
}

struct Irc {
    rd: BufReader<TcpStream>,
    wr: TcpStream,
}

impl Irc {
    fn connect(port: u16) -> Irc {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Irc {
            rd: BufReader::new(s.try_clone().unwrap()),
            wr: s,
        }
    }

    fn send(&mut self, line: &str) {
        self.wr.write_all(line.as_bytes()).unwrap();
        self.wr.write_all(b"\r\n").unwrap();
    }

    /// Reads lines until one contains `needle`; returns everything read. `None` at EOF.
    fn until(&mut self, needle: &str) -> Option<Vec<String>> {
        let mut seen = Vec::new();
        loop {
            let mut l = String::new();
            if self.rd.read_line(&mut l).unwrap() == 0 {
                return None;
            }
            assert!(l.ends_with("\r\n"), "{l:?}");
            assert!(l.len() <= 512, "{} bytes", l.len());
            let l = l.trim_end().to_owned();
            let hit = l.contains(needle);
            seen.push(l);
            if hit {
                return Some(seen);
            }
        }
    }

    fn eof(&mut self) -> bool {
        let mut l = String::new();
        loop {
            l.clear();
            match self.rd.read_line(&mut l) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

fn start(rt: &tokio::runtime::Runtime, socket: &Path) -> u16 {
    let mut cfg = IrcConfig::new(socket, "pw");
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    let server = rt.block_on(Server::bind(cfg)).unwrap();
    let port = server.local_addr().unwrap().port();
    rt.spawn(server.run());
    port
}

#[test]
fn serves_irc_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.spawn(fake_node(socket.clone()));
    std::thread::sleep(Duration::from_millis(200));
    let port = start(&rt, &socket);

    // A wrong password: 464 and the connection closes.
    let mut c = Irc::connect(port);
    c.send("PASS nope");
    c.send("NICK me");
    c.send("USER me 0 * :me");
    let seen = c.until(" 464 ").unwrap();
    assert!(seen.iter().all(|l| !l.contains(" 001 ")));
    assert!(c.eof());

    // The right one, with tags and CAP on the way.
    let mut c = Irc::connect(port);
    c.send("CAP LS 302");
    c.send("PASS pw");
    c.send("@label=x NICK me");
    c.send("USER me 0 * :me");
    c.until("CAP * LS").unwrap();
    c.send("CAP END");
    c.until(" 001 me ").unwrap();
    let seen = c.until(" 366 me &torchat ").unwrap();
    assert!(
        seen.iter().any(|l| l.ends_with(":@torchat @me +bob")),
        "{seen:#?}"
    );

    // An over-long line is refused and the session goes on; so do binary junk and a huge
    // line without an end (the reader keeps its bound).
    c.send(&format!("PRIVMSG bob :{}", "x".repeat(20_000)));
    c.until(" 417 me ").unwrap();
    c.wr.write_all(b"\xff\xfe\x00junk\r\n").unwrap();
    c.until(" 421 me ").unwrap();
    c.send("PING :still-here");
    c.until("PONG irc.torchat :still-here").unwrap();

    // A message out (queued, said so) and bob's answer in.
    c.send("PRIVMSG bob :hello");
    let seen = c.until(":bob!tc@").unwrap();
    assert!(seen
        .iter()
        .any(|l| l.contains("NOTICE me :message to bob queued")));
    assert_eq!(
        seen.last().unwrap(),
        &format!(":bob!tc@{BOB}.onion PRIVMSG me :you said: hello")
    );
    c.send("QUIT :bye");
    c.until("ERROR :Closing link").unwrap();
    assert!(c.eof());
}

#[test]
fn says_so_when_the_node_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let port = start(&rt, &dir.path().join("nothing.sock"));
    let mut c = Irc::connect(port);
    let seen = c.until("ERROR :").unwrap();
    assert!(seen[0].starts_with(":irc.torchat NOTICE * :cannot reach the torchat node"));
    assert!(c.eof());
}

#[test]
fn refuses_bad_configurations() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cfg = IrcConfig::new("/nonexistent.sock", "pw");
    cfg.listen = "0.0.0.0:0".parse().unwrap();
    assert!(matches!(
        rt.block_on(Server::bind(cfg)),
        Err(Error::NotLoopback(_))
    ));
    let mut cfg = IrcConfig::new("/nonexistent.sock", "  ");
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    assert!(matches!(
        rt.block_on(Server::bind(cfg)),
        Err(Error::NoPassword)
    ));
    assert_eq!(torchat_irc::DEFAULT_LISTEN.to_string(), "127.0.0.1:6667");

    // The password file: created once (0600), then read back.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("irc-password");
    let a = torchat_irc::load_or_create_password(&p).unwrap();
    assert!(a.len() >= 16);
    assert_eq!(torchat_irc::load_or_create_password(&p).unwrap(), a);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&p).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
