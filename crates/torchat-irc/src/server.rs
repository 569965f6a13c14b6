//! The async shell: a TCP listener on localhost, and per IRC connection one control-API
//! connection to the node, a bounded reader, a bounded writer and the [`Gateway`] between.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use torchat_client::{Client, ClientError};

use crate::gateway::{Action, ApiFailure, Gateway, GatewayConfig, Input, SERVER};
use crate::names::NickBook;
use crate::proto::MAX_INPUT;
use crate::{Error, IrcConfig};

/// Lines waiting to be written to one IRC client; more and it is disconnected (SendQ).
const SENDQ: usize = 4096;
/// Lines read ahead from one IRC client.
const READQ: usize = 64;
/// Time to register (NICK, USER, PASS) after connecting.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);
/// Silence after which the gateway sends PING.
const PING_AFTER: Duration = Duration::from_secs(120);
/// Time to answer that PING.
const PING_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the node's answer to one command.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause before closing a connection that gave a wrong password.
const AUTH_FAIL_DELAY: Duration = Duration::from_secs(1);

struct Shared {
    cfg: IrcConfig,
    book: Mutex<NickBook>,
}

/// A bound gateway, ready to [`run`](Server::run).
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
}

/// Serves IRC on `cfg.listen` until an error stops the listener.
///
/// Refuses to start without a password or on an address that is not loopback.
pub async fn serve(cfg: IrcConfig) -> Result<(), Error> {
    Server::bind(cfg).await?.run().await
}

impl Server {
    /// Checks the configuration, loads the nick file and binds the listener.
    pub async fn bind(cfg: IrcConfig) -> Result<Server, Error> {
        if !cfg.listen.ip().is_loopback() {
            return Err(Error::NotLoopback(cfg.listen));
        }
        if cfg.password.trim().is_empty() {
            return Err(Error::NoPassword);
        }
        let book = match &cfg.nick_file {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(s) => NickBook::from_json(&s).unwrap_or_else(|e| {
                    tracing::warn!("ignoring the unreadable nick file {}: {e}", p.display());
                    NickBook::new()
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => NickBook::new(),
                Err(e) => return Err(Error::Io(e)),
            },
            None => NickBook::new(),
        };
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: cfg.listen,
                source,
            })?;
        let slots = Arc::new(Semaphore::new(cfg.max_clients.max(1)));
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                cfg,
                book: Mutex::new(book),
            }),
            slots,
        })
    }

    /// The address it listens on (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.listener.local_addr()?)
    }

    /// Accepts IRC clients until the listener fails.
    pub async fn run(self) -> Result<(), Error> {
        tracing::info!(
            "IRC gateway on {} for the node at {}",
            self.local_addr()?,
            self.shared.cfg.socket.display()
        );
        loop {
            let (sock, peer) = match self.listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // E.g. out of file descriptors: do not spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if !peer.ip().is_loopback() {
                continue;
            }
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                let mut sock = sock;
                tokio::spawn(async move {
                    let _ = sock
                        .write_all(b"ERROR :Closing link: too many IRC connections\r\n")
                        .await;
                });
                continue;
            };
            let shared = self.shared.clone();
            tokio::spawn(async move {
                tracing::debug!("IRC client connected");
                session(sock, shared).await;
                tracing::debug!("IRC client gone");
                drop(permit);
            });
        }
    }
}

/// The password in `path`, or a new random one written there (mode 0600).
pub fn load_or_create_password(path: &Path) -> Result<String, Error> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Io(e)),
    }
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 20];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let password: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect();
    write_private(path, password.as_bytes())?;
    Ok(password)
}

/// Writes a file only we can read, through a temporary file and a rename.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

enum Line {
    Text(String),
    TooLong,
}

/// Reads lines of at most [`MAX_INPUT`] bytes; longer ones are skipped and reported.
async fn read_lines(rd: OwnedReadHalf, tx: mpsc::Sender<Line>) {
    let mut r = BufReader::with_capacity(4096, rd);
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    let mut overflow = false;
    loop {
        let avail = match r.fill_buf().await {
            Ok(b) if !b.is_empty() => b,
            _ => return,
        };
        let (n, end) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if !overflow {
            if buf.len() + n > MAX_INPUT {
                overflow = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&avail[..n]);
            }
        }
        r.consume(n);
        if end {
            let line = if overflow {
                Line::TooLong
            } else {
                let s = String::from_utf8_lossy(&buf);
                Line::Text(s.trim_end_matches(['\r', '\n']).to_owned())
            };
            buf.clear();
            overflow = false;
            if tx.send(line).await.is_err() {
                return;
            }
        }
    }
}

async fn write_lines(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<String>) {
    let mut buf = Vec::with_capacity(4096);
    while let Some(l) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(l.as_bytes());
        buf.extend_from_slice(b"\r\n");
        while buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(l) => {
                    buf.extend_from_slice(l.as_bytes());
                    buf.extend_from_slice(b"\r\n");
                }
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

async fn session(sock: TcpStream, shared: Arc<Shared>) {
    let _ = sock.set_nodelay(true);
    let (rd, wr) = sock.into_split();
    let (out_tx, out_rx) = mpsc::channel::<String>(SENDQ);
    let mut writer = tokio::spawn(write_lines(wr, out_rx));
    let (in_tx, in_rx) = mpsc::channel::<Line>(READQ);
    let reader = tokio::spawn(read_lines(rd, in_tx));
    match Client::connect(&shared.cfg.socket).await {
        Ok(client) => run_session(client, in_rx, &out_tx, &shared).await,
        Err(e) => {
            let _ = out_tx.try_send(format!(":{SERVER} NOTICE * :{e}"));
            let _ = out_tx.try_send("ERROR :Closing link: the torchat node is not running".into());
        }
    }
    drop(out_tx);
    if tokio::time::timeout(Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    reader.abort();
}

async fn run_session(
    mut client: Client,
    mut in_rx: mpsc::Receiver<Line>,
    out: &mpsc::Sender<String>,
    shared: &Shared,
) {
    let book = shared
        .book
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut gw = Gateway::new(
        GatewayConfig {
            password: shared.cfg.password.clone(),
        },
        book,
    );
    let started = Instant::now();
    let mut last_in = Instant::now();
    let mut pinged = false;
    loop {
        let deadline = if !gw.registered() {
            started + REGISTER_TIMEOUT
        } else if pinged {
            last_in + PING_AFTER + PING_TIMEOUT
        } else {
            last_in + PING_AFTER
        };
        let input = tokio::select! {
            l = in_rx.recv() => {
                last_in = Instant::now();
                pinged = false;
                match l {
                    Some(Line::Text(s)) => Input::Irc(s),
                    Some(Line::TooLong) => Input::LineTooLong,
                    None => return,
                }
            }
            e = client.next_event() => match e {
                Ok(ev) => Input::Event(ev),
                Err(e) => Input::NodeLost(e.to_string()),
            },
            _ = tokio::time::sleep_until(deadline) => {
                if !gw.registered() || pinged {
                    let why = if pinged { "Ping timeout" } else { "Registration timeout" };
                    let _ = out.try_send(format!("ERROR :Closing link: {why}"));
                    return;
                }
                pinged = true;
                let _ = out.try_send(format!("PING :{SERVER}"));
                continue;
            }
        };
        if !drive(&mut gw, &mut client, input, out).await {
            save_book(&mut gw, shared);
            return;
        }
        save_book(&mut gw, shared);
    }
}

/// Feeds one input and carries out the actions; `false` when the session is over.
async fn drive(
    gw: &mut Gateway,
    client: &mut Client,
    input: Input,
    out: &mpsc::Sender<String>,
) -> bool {
    let mut work: VecDeque<Action> = gw.handle(input).into();
    while let Some(a) = work.pop_front() {
        match a {
            Action::Send(line) => {
                if out.try_send(line).is_err() {
                    tracing::info!("IRC client too slow (SendQ exceeded); disconnecting it");
                    return false;
                }
            }
            Action::Call(tag, cmd) => {
                let input = match tokio::time::timeout(CALL_TIMEOUT, client.call(cmd)).await {
                    Ok(Ok(v)) => Input::Response(tag, Ok(v)),
                    Ok(Err(ClientError::Api { code, message })) => {
                        Input::Response(tag, Err(ApiFailure { code, message }))
                    }
                    Ok(Err(e)) => Input::NodeLost(e.to_string()),
                    Err(_) => Input::NodeLost("the node did not answer in time".into()),
                };
                work.extend(gw.handle(input));
            }
            Action::Close => {
                if gw.auth_failed() {
                    tokio::time::sleep(AUTH_FAIL_DELAY).await;
                }
                return false;
            }
        }
    }
    true
}

fn save_book(gw: &mut Gateway, shared: &Shared) {
    if !gw.book_mut().take_dirty() {
        return;
    }
    let book = gw.book().clone();
    let json = book.to_json();
    *shared.book.lock().unwrap_or_else(|e| e.into_inner()) = book;
    if let Some(p) = &shared.cfg.nick_file {
        if let Err(e) = write_private(p, json.as_bytes()) {
            tracing::warn!("cannot save the nick file {}: {e}", p.display());
        }
    }
}
