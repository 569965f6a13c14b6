//! Test helpers: a small SOCKS5/SOCKS4a proxy that maps host names to local addresses.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A SOCKS proxy for tests: `<host>:<port>` → a local address; scripted failures.
#[derive(Clone)]
pub struct FakeSocks {
    pub addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, SocketAddr>>>,
    failures: Arc<Mutex<VecDeque<u8>>>,
    attempts: Arc<AtomicUsize>,
    silent: Arc<Mutex<bool>>,
}

impl FakeSocks {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let me = FakeSocks {
            addr: listener.local_addr().unwrap(),
            routes: Arc::default(),
            failures: Arc::default(),
            attempts: Arc::default(),
            silent: Arc::default(),
        };
        let m = me.clone();
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                let m = m.clone();
                tokio::spawn(async move {
                    let _ = m.serve(sock).await;
                });
            }
        });
        me
    }

    /// Routes `host:port` to `to`.
    pub fn route(&self, host: &str, port: u16, to: SocketAddr) {
        self.routes
            .lock()
            .unwrap()
            .insert(format!("{host}:{port}"), to);
    }

    /// The next requests fail with these reply codes (SOCKS5 codes; SOCKS4 gets 0x5B).
    pub fn fail_with(&self, codes: &[u8]) {
        self.failures.lock().unwrap().extend(codes);
    }

    /// Never answer (for timeouts).
    pub fn set_silent(&self, s: bool) {
        *self.silent.lock().unwrap() = s;
    }

    /// Requests seen so far.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    async fn serve(&self, mut s: TcpStream) -> std::io::Result<()> {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        let v5 = match b[0] {
            5 => true,
            4 => false,
            _ => return Ok(()),
        };
        let (host, port) = if v5 {
            let n = s.read_u8().await?;
            let mut methods = vec![0u8; n.into()];
            s.read_exact(&mut methods).await?;
            assert!(methods.contains(&0));
            s.write_all(&[5, 0]).await?;
            let mut head = [0u8; 4];
            s.read_exact(&mut head).await?;
            assert_eq!(&head[..3], &[5, 1, 0]);
            assert_eq!(head[3], 3, "onion names must be sent as domain names");
            let len = s.read_u8().await?;
            let mut name = vec![0u8; len.into()];
            s.read_exact(&mut name).await?;
            (String::from_utf8(name).unwrap(), s.read_u16().await?)
        } else {
            let _cmd = s.read_u8().await?;
            let port = s.read_u16().await?;
            let mut ip = [0u8; 4];
            s.read_exact(&mut ip).await?;
            assert_eq!(ip, [0, 0, 0, 1], "SOCKS4a uses 0.0.0.1");
            let user = read_cstr(&mut s).await?;
            assert!(user.is_empty());
            (read_cstr(&mut s).await?, port)
        };
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if *self.silent.lock().unwrap() {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
        let failure = self.failures.lock().unwrap().pop_front();
        let target = self
            .routes
            .lock()
            .unwrap()
            .get(&format!("{host}:{port}"))
            .copied();
        let code = match (failure, target) {
            (Some(c), _) => c,
            (None, None) => 0x04, // host unreachable
            (None, Some(_)) => 0,
        };
        if code != 0 {
            if v5 {
                s.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            } else {
                s.write_all(&[0, 0x5B, 0, 0, 0, 0, 0, 0]).await?;
            }
            return Ok(());
        }
        let mut up = TcpStream::connect(target.unwrap()).await?;
        if v5 {
            // Reply with a domain-name bound address, to exercise that parsing path.
            s.write_all(&[5, 0, 0, 3, 4, b'a', b'b', b'c', b'd', 0, 80])
                .await?;
        } else {
            s.write_all(&[0, 0x5A, 0, 0, 0, 0, 0, 0]).await?;
        }
        tokio::io::copy_bidirectional(&mut s, &mut up).await?;
        Ok(())
    }
}

async fn read_cstr<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<String> {
    let mut out = Vec::new();
    loop {
        let b = r.read_u8().await?;
        if b == 0 {
            return Ok(String::from_utf8(out).unwrap());
        }
        out.push(b);
        assert!(out.len() < 300);
    }
}

/// Writes `msg` on `a`, reads it on `b`, and the other way round.
pub async fn exchange<A, B>(a: &mut A, b: &mut B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = [0u8; 64];
    a.write_all(b"ping from the dialer\n").await.unwrap();
    let n = read_exactly(b, &mut buf, 21).await;
    assert_eq!(&buf[..n], b"ping from the dialer\n");
    b.write_all(b"pong from the listener\n").await.unwrap();
    let n = read_exactly(a, &mut buf, 23).await;
    assert_eq!(&buf[..n], b"pong from the listener\n");
}

async fn read_exactly<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    n: usize,
) -> usize {
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        r.read_exact(&mut buf[..n]),
    )
    .await
    .expect("timed out reading")
    .unwrap()
}
