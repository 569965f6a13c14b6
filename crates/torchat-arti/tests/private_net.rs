//! The embedded Tor transport on a private Tor network (`private-tor-net`, C tor on loopback):
//! (a) an Arti-hosted service is reachable from a C tor client through its SOCKS port,
//! (b) Arti dials an onion service hosted by C tor (`ADD_ONION` over the control port),
//! (c) two Arti instances talk to each other. Bytes flow both ways each time.
//!
//! Needs `tor`, `tor-gencert` and `python3`. Without them the test prints a SKIP line and
//! passes, unless `TORCHAT_REQUIRE_TOR=1`, in which case it fails. The network comes from the
//! test kit (`torchat_testkit::tornet`).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use torchat_arti::{Arti, ArtiConfig};
use torchat_testkit::tornet::{self, Network, Options};
use torchat_tor::{BoxStream, Transport, TransportEvent, TORCHAT_PORT};
use torchat_wire::OnionId;

/// How long an onion connection may take, retries included (the service may have just been
/// published, or a time period may just have changed).
const CONNECT_BUDGET: Duration = Duration::from_secs(150);

/// Starts the private network (20 s voting interval) in a fresh temporary directory.
fn start_net() -> Network {
    Network::start_temp(&Options {
        clients: 2,
        voting_interval: Some(20),
    })
}

/// One embedded Tor node under test, with its event channel.
struct Node {
    arti: Arti,
    events: mpsc::Receiver<TransportEvent>,
    data: tempfile::TempDir,
    name: &'static str,
}

impl Node {
    /// Starts a node in a new data dir, or in `data` (a restart).
    async fn start(
        name: &'static str,
        cfg: &ArtiConfig,
        seed: [u8; 32],
        data: Option<tempfile::TempDir>,
    ) -> (Node, Duration, Duration) {
        let data = data.unwrap_or_else(|| {
            tempfile::Builder::new()
                .prefix("torchat-arti-data")
                .tempdir()
                .unwrap()
        });
        let (tx, events) = mpsc::channel(64);
        let t0 = Instant::now();
        let arti = Arti::start(cfg.clone(), data.path(), seed, tx)
            .await
            .unwrap();
        let mut node = Node {
            arti,
            events,
            data,
            name,
        };
        let mut bootstrapped = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
        loop {
            let ev = tokio::time::timeout_at(deadline, node.events.recv())
                .await
                .unwrap_or_else(|_| panic!("{name}: not ready within 240 s"))
                .unwrap();
            match ev {
                TransportEvent::Progress { percent, summary } => {
                    eprintln!("{name}: progress {percent}%: {summary}");
                    if percent == 100 && bootstrapped.is_none() {
                        bootstrapped = Some(t0.elapsed());
                    }
                }
                TransportEvent::Ready { id } => {
                    assert_eq!(&id, node.arti.id());
                    let ready = t0.elapsed();
                    let boot = bootstrapped.unwrap_or(ready);
                    eprintln!(
                        "FIGURE {name}: bootstrapped in {:.2} s, service reachable (self-probe) after {:.2} s",
                        boot.as_secs_f64(),
                        ready.as_secs_f64()
                    );
                    return (node, boot, ready);
                }
                TransportEvent::Problem { message, hint } => {
                    eprintln!("{name}: PROBLEM {message} / {hint}")
                }
                TransportEvent::Incoming(_) => eprintln!("{name}: unexpected incoming connection"),
                _ => {}
            }
        }
    }

    /// Stops Arti; returns the data dir (Arti finishes writing its state in the background).
    fn stop(self) -> tempfile::TempDir {
        drop(self.arti);
        drop(self.events);
        self.data
    }

    /// The next incoming connection (other events are logged).
    async fn incoming(&mut self) -> BoxStream {
        let deadline = tokio::time::Instant::now() + CONNECT_BUDGET;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("{}: no incoming connection", self.name))
                .unwrap();
            match ev {
                TransportEvent::Incoming(s) => return s,
                other => eprintln!("{}: {other:?}", self.name),
            }
        }
    }
}

fn seed(byte: u8) -> [u8; 32] {
    [byte; 32]
}

fn onion_of(seed: [u8; 32]) -> OnionId {
    OnionId::from_ed25519_public_key(
        &ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes(),
    )
}

/// A minimal SOCKS5 CONNECT with a domain name (ATYP 3), no authentication.
async fn socks5_connect(proxy: &str, host: &str, port: u16) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
    s.write_all(&[5, 1, 0]).await.map_err(|e| e.to_string())?;
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).await.map_err(|e| e.to_string())?;
    if reply != [5, 0] {
        return Err(format!("SOCKS greeting refused: {reply:?}"));
    }
    let mut req = vec![5, 1, 0, 3, u8::try_from(host.len()).unwrap()];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await.map_err(|e| e.to_string())?;
    if head[1] != 0 {
        return Err(format!("SOCKS error 0x{:02x}", head[1]));
    }
    let addr_len = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await.map_err(|e| e.to_string())?;
            usize::from(l[0])
        }
        t => return Err(format!("SOCKS reply with address type {t}")),
    };
    let mut rest = vec![0u8; addr_len + 2];
    s.read_exact(&mut rest).await.map_err(|e| e.to_string())?;
    Ok(s)
}

/// SOCKS connect with retries while the descriptor is not (yet) found.
async fn socks5_connect_retrying(proxy: &str, host: &str, port: u16) -> (TcpStream, u32) {
    let t0 = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match socks5_connect(proxy, host, port).await {
            Ok(s) => return (s, attempts),
            Err(e) if t0.elapsed() < CONNECT_BUDGET => {
                eprintln!("C tor SOCKS attempt {attempts}: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("C tor could not reach the Arti service: {e}"),
        }
    }
}

/// Sends `line` on `a`, reads it on `b`; then the other way. No explicit flushes: the
/// transport must deliver anyway.
async fn exchange<A, B>(a: &mut A, b: &mut B, what: &str)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let there = format!("ping {what}\n");
    let back = format!("pong {what}\n");
    let t0 = Instant::now();
    a.write_all(there.as_bytes()).await.unwrap();
    let got = read_line(b).await;
    assert_eq!(got, there);
    b.write_all(back.as_bytes()).await.unwrap();
    let got = read_line(a).await;
    assert_eq!(got, back);
    // A bigger message, to cross several relay cells and the pipe buffers.
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    a.write_all(&big).await.unwrap();
    a.write_all(b"\n").await.unwrap();
    let got = read_line(b).await;
    assert_eq!(got.len(), big.len() + 1);
    eprintln!(
        "FIGURE {what}: round trip + 200 kB in {:.0} ms",
        t0.elapsed().as_secs_f64() * 1000.0
    );
}

async fn read_line<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            s.read_exact(&mut byte).await.unwrap();
            line.push(byte[0]);
            if byte[0] == b'\n' {
                break;
            }
        }
    })
    .await
    .expect("line not received within 60 s");
    String::from_utf8(line).unwrap()
}

/// A control-port session with cookie authentication.
struct Control {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Control {
    async fn open(client: &serde_json::Value) -> Control {
        let port = client["control_port"].as_u64().unwrap();
        let s = TcpStream::connect(("127.0.0.1", u16::try_from(port).unwrap()))
            .await
            .unwrap();
        let (r, w) = s.into_split();
        let mut c = Control {
            reader: BufReader::new(r),
            writer: w,
        };
        let cookie = std::fs::read(client["cookie_file"].as_str().unwrap()).unwrap();
        let hex: String = cookie.iter().map(|b| format!("{b:02X}")).collect();
        let reply = c.command(&format!("AUTHENTICATE {hex}")).await;
        assert!(reply.last().unwrap().starts_with("250"), "{reply:?}");
        c
    }

    /// Sends one command; returns the reply lines up to the final one.
    async fn command(&mut self, cmd: &str) -> Vec<String> {
        self.writer
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .unwrap();
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "control port closed");
            let line = line.trim_end().to_string();
            let done = line.len() >= 4 && line.as_bytes()[3] == b' ';
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

fn rss_kib() -> Option<u64> {
    torchat_testkit::rss_kib(std::process::id())
}

#[test]
fn arti_on_private_tor_net() {
    if !tornet::available("arti_on_private_tor_net") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data_dirs = rt.block_on(run());
    // Arti writes its state when its last tasks end, with the runtime: keep the directories
    // until then.
    drop(rt);
    drop(data_dirs);
}

async fn run() -> Vec<tempfile::TempDir> {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let rss_before = rss_kib();
    let net = start_net();
    let cfg = ArtiConfig::from_private_tor_net(&net.dir).unwrap();

    // (a) Arti hosts; C tor client 1 connects through its SOCKS port.
    let seed_a = seed(0x42);
    let (mut a, _, _) = Node::start("arti-a", &cfg, seed_a, None).await;
    assert_eq!(a.arti.id(), &onion_of(seed_a));
    let rss_one = rss_kib();
    let socks = net.client_json(0)["socks_addr"]
        .as_str()
        .unwrap()
        .to_string();
    let host_a = format!("{}.onion", a.arti.id().as_str());
    let t0 = Instant::now();
    let (mut from_ctor, attempts) = socks5_connect_retrying(&socks, &host_a, TORCHAT_PORT).await;
    let mut at_a = a.incoming().await;
    eprintln!(
        "FIGURE (a) C tor -> Arti service: connected in {:.2} s ({attempts} attempt(s))",
        t0.elapsed().as_secs_f64()
    );
    exchange(&mut from_ctor, &mut at_a, "(a) C tor -> Arti").await;
    exchange(&mut at_a, &mut from_ctor, "(a) Arti -> C tor").await;
    drop((from_ctor, at_a));

    // (b) C tor client 2 hosts (ADD_ONION); Arti connects.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let mut control = Control::open(net.client_json(1)).await;
    let reply = control
        .command(&format!(
            "ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port={TORCHAT_PORT},{local}"
        ))
        .await;
    let service_id = reply
        .iter()
        .find_map(|l| l.strip_prefix("250-ServiceID="))
        .unwrap_or_else(|| panic!("ADD_ONION failed: {reply:?}"))
        .to_string();
    let ctor_id = OnionId::parse(&service_id).unwrap();
    let t0 = Instant::now();
    let mut to_ctor = tokio::time::timeout(CONNECT_BUDGET, a.arti.connect(&ctor_id))
        .await
        .expect("Arti -> C tor connect timed out")
        .unwrap();
    let (mut at_ctor, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
        .await
        .unwrap()
        .unwrap();
    eprintln!(
        "FIGURE (b) Arti -> C tor service: connected in {:.2} s (fresh descriptor)",
        t0.elapsed().as_secs_f64()
    );
    exchange(&mut to_ctor, &mut at_ctor, "(b) Arti -> C tor").await;
    exchange(&mut at_ctor, &mut to_ctor, "(b) C tor -> Arti").await;
    drop((to_ctor, at_ctor));
    // A second, warm connection.
    let t0 = Instant::now();
    let mut to_ctor = a.arti.connect(&ctor_id).await.unwrap();
    let (mut at_ctor, _) = listener.accept().await.unwrap();
    eprintln!(
        "FIGURE (b) Arti -> C tor service, warm: connected in {:.0} ms",
        t0.elapsed().as_secs_f64() * 1000.0
    );
    exchange(&mut to_ctor, &mut at_ctor, "(b) warm").await;
    drop((to_ctor, at_ctor));

    // (c) Two Arti instances.
    let seed_b = seed(0x17);
    let (mut b, _, _) = Node::start("arti-b", &cfg, seed_b, None).await;
    let rss_two = rss_kib();
    let t0 = Instant::now();
    let mut a_to_b = tokio::time::timeout(CONNECT_BUDGET, a.arti.connect(b.arti.id()))
        .await
        .expect("Arti A -> Arti B timed out")
        .unwrap();
    let mut at_b = b.incoming().await;
    eprintln!(
        "FIGURE (c) Arti A -> Arti B: connected in {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    exchange(&mut a_to_b, &mut at_b, "(c) A -> B").await;
    let t0 = Instant::now();
    let mut b_to_a = tokio::time::timeout(CONNECT_BUDGET, b.arti.connect(a.arti.id()))
        .await
        .expect("Arti B -> Arti A timed out")
        .unwrap();
    let mut at_a = a.incoming().await;
    eprintln!(
        "FIGURE (c) Arti B -> Arti A: connected in {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    exchange(&mut b_to_a, &mut at_a, "(c) B -> A").await;
    // Closing one end is seen by the other.
    drop(b_to_a);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), at_a.read_to_end(&mut rest))
        .await
        .expect("close not propagated")
        .unwrap();

    drop((a_to_b, at_b, at_a));
    if let (Some(r0), Some(r1), Some(r2)) = (rss_before, rss_one, rss_two) {
        eprintln!(
            "FIGURE RSS of the test process: {} MiB before, {} MiB with one Arti, {} MiB with two",
            r0 / 1024,
            r1 / 1024,
            r2 / 1024
        );
    }

    // (d) A restarts from its data dir: same identity, key found in Arti's keystore.
    let data_a = a.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut a, _, _) = Node::start("arti-a restarted", &cfg, seed_a, Some(data_a)).await;
    assert_eq!(a.arti.id(), &onion_of(seed_a));
    let t0 = Instant::now();
    let mut b_to_a = tokio::time::timeout(CONNECT_BUDGET, b.arti.connect(a.arti.id()))
        .await
        .expect("Arti B -> restarted Arti A timed out")
        .unwrap();
    let mut at_a = a.incoming().await;
    eprintln!(
        "FIGURE (d) Arti B -> restarted Arti A: connected in {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    exchange(&mut b_to_a, &mut at_a, "(d) B -> restarted A").await;
    drop((b_to_a, at_a));

    let dirs = vec![a.stop(), b.stop()];
    drop(control);
    drop(net);
    dirs
}

/// Answers every incoming connection by echoing lines; logs the other events.
fn serve_echo(name: &'static str, mut events: mpsc::Receiver<TransportEvent>) {
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                TransportEvent::Incoming(s) => {
                    tokio::spawn(echo(s));
                }
                other => eprintln!("{name}: {other:?}"),
            }
        }
    });
}

async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: S) {
    let (r, mut w) = tokio::io::split(s);
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Sends a line and expects it back.
async fn echoes<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S, what: &str) {
    s.write_all(format!("{what}\n").as_bytes()).await.unwrap();
    assert_eq!(read_line(s).await, format!("{what}\n"));
}

#[derive(Default)]
struct Tally {
    ok: u32,
    failed: u32,
    slow: u32,
    max: Duration,
}

impl Tally {
    fn add(&mut self, took: Duration, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        if took > Duration::from_secs(5) {
            self.slow += 1;
        }
        self.max = self.max.max(took);
    }
}

/// Connections every 10 s for `TORCHAT_ARTI_SOAK_SECS` (default 600 s, more than one
/// onion-service time period of 8 min at a 20 s voting interval): C tor → Arti (descriptor
/// cache dropped each time), Arti → Arti, Arti → C tor. Shows whether retries cover the
/// period-boundary gap of Arti-hosted services. Run it with `-- --ignored`.
#[test]
#[ignore = "takes 10 minutes; run with --ignored"]
fn across_time_period_boundary() {
    if !tornet::available("across_time_period_boundary") {
        return;
    }
    let secs: u64 = std::env::var("TORCHAT_ARTI_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dirs = rt.block_on(async {
        let net = start_net();
        let cfg = ArtiConfig::from_private_tor_net(&net.dir).unwrap();
        let (a, _, _) = Node::start("arti-a", &cfg, seed(0x42), None).await;
        let (b, _, _) = Node::start("arti-b", &cfg, seed(0x17), None).await;
        let (arti_a, arti_b) = (a.arti.clone(), b.arti.clone());
        let Node {
            events: ev_a,
            data: data_a,
            ..
        } = a;
        let Node {
            events: ev_b,
            data: data_b,
            ..
        } = b;
        serve_echo("arti-a", ev_a);
        serve_echo("arti-b", ev_b);

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(echo(s));
            }
        });
        let mut control2 = Control::open(net.client_json(1)).await;
        let reply = control2
            .command(&format!(
                "ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port={TORCHAT_PORT},{local}"
            ))
            .await;
        let ctor_id = OnionId::parse(
            reply
                .iter()
                .find_map(|l| l.strip_prefix("250-ServiceID="))
                .unwrap(),
        )
        .unwrap();
        let mut control1 = Control::open(net.client_json(0)).await;
        let socks = net.client_json(0)["socks_addr"]
            .as_str()
            .unwrap()
            .to_string();
        let host_a = format!("{}.onion", arti_a.id().as_str());

        let (mut ctor_to_a, mut b_to_a, mut a_to_ctor) =
            (Tally::default(), Tally::default(), Tally::default());
        let t_end = Instant::now() + Duration::from_secs(secs);
        let mut round = 0u32;
        while Instant::now() < t_end {
            round += 1;
            let started = Instant::now();
            // C tor, with its descriptor cache dropped.
            let _ = control1.command("SIGNAL NEWNYM").await;
            let t0 = Instant::now();
            let ok = match tokio::time::timeout(
                CONNECT_BUDGET,
                socks5_connect_retrying(&socks, &host_a, TORCHAT_PORT),
            )
            .await
            {
                Ok((mut s, _)) => {
                    echoes(&mut s, "c tor to a").await;
                    true
                }
                Err(_) => false,
            };
            ctor_to_a.add(t0.elapsed(), ok);
            if t0.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "round {round}: C tor -> Arti A took {:.1} s",
                    t0.elapsed().as_secs_f64()
                );
            }
            // Arti B -> Arti A.
            let t0 = Instant::now();
            let ok = match arti_b.connect(arti_a.id()).await {
                Ok(mut s) => {
                    echoes(&mut s, "b to a").await;
                    true
                }
                Err(e) => {
                    eprintln!("round {round}: Arti B -> Arti A failed: {e}");
                    false
                }
            };
            b_to_a.add(t0.elapsed(), ok);
            if t0.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "round {round}: Arti B -> Arti A took {:.1} s",
                    t0.elapsed().as_secs_f64()
                );
            }
            // Arti A -> C tor.
            let t0 = Instant::now();
            let ok = match arti_a.connect(&ctor_id).await {
                Ok(mut s) => {
                    echoes(&mut s, "a to c tor").await;
                    true
                }
                Err(e) => {
                    eprintln!("round {round}: Arti A -> C tor failed: {e}");
                    false
                }
            };
            a_to_ctor.add(t0.elapsed(), ok);
            tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
        }
        for (what, t) in [
            ("C tor -> Arti A (fresh descriptor)", &ctor_to_a),
            ("Arti B -> Arti A", &b_to_a),
            ("Arti A -> C tor", &a_to_ctor),
        ] {
            eprintln!(
                "FIGURE soak {what}: {} ok, {} failed, {} slower than 5 s, slowest {:.1} s",
                t.ok,
                t.failed,
                t.slow,
                t.max.as_secs_f64()
            );
        }
        assert_eq!(ctor_to_a.failed + b_to_a.failed + a_to_ctor.failed, 0);
        drop((arti_a, arti_b, control1, control2));
        drop(net);
        vec![data_a, data_b]
    });
    drop(rt);
    drop(dirs);
}

/// One probe of the boundary benchmark.
struct Probe {
    /// Seconds from the nearest time-period boundary (negative: before it).
    offset: f64,
    ok: bool,
    what: String,
}

/// Unix time in seconds (f64).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The onion-service time-period boundaries of a test network with voting interval `v`
/// seconds, as C tor computes them: periods of 24 v, offset by 12 v (the shared-random phase),
/// counted in whole minutes since the epoch.
fn boundaries_after(t: f64, v: u64, n: usize) -> Vec<f64> {
    let period_min = 24 * v / 60;
    let offset_min = 12 * v / 60;
    let mut m = (t / 60.0) as u64 + 1;
    let mut out = vec![];
    while out.len() < n {
        if (m - offset_min).is_multiple_of(period_min) {
            out.push((m * 60) as f64);
        }
        m += 1;
    }
    out
}

/// Hosts a service with our Arti transport on a private network (15 s voting, 6-min time
/// periods) and probes it every 10 s from a C tor client whose descriptor cache is dropped
/// before each probe (`SIGNAL NEWNYM`), one attempt each, until `boundaries` boundaries have
/// passed (plus 90 s). Returns every probe.
async fn probe_across_boundaries(boundaries: usize, republish: bool) -> Vec<Probe> {
    let net = Network::start_temp(&Options {
        clients: 1,
        voting_interval: Some(15),
    });
    let v = net.voting_interval();
    let mut cfg = ArtiConfig::from_private_tor_net(&net.dir).unwrap();
    cfg.republish = republish;
    cfg.reachability_check_secs = 0;
    let (node, _, _) = Node::start("arti", &cfg, seed(0x42), None).await;
    let arti = node.arti.clone();
    let Node { events, data, .. } = node;
    serve_echo("arti", events);
    let mut control = Control::open(net.client_json(0)).await;
    let socks = net.client_json(0)["socks_addr"]
        .as_str()
        .unwrap()
        .to_string();
    let host = format!("{}.onion", arti.id().as_str());
    let marks = boundaries_after(unix_now(), v, boundaries);
    let end = marks[boundaries - 1] + 90.0;
    eprintln!(
        "probing every 10 s across {boundaries} boundaries (republish {republish}), {:.0} s",
        end - unix_now()
    );
    let mut probes = vec![];
    while unix_now() < end {
        let started = Instant::now();
        let _ = control.command("SIGNAL NEWNYM").await;
        let at = unix_now();
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            socks5_connect(&socks, &host, TORCHAT_PORT),
        )
        .await;
        let (ok, what) = match r {
            Ok(Ok(mut s)) => {
                let ok = tokio::time::timeout(Duration::from_secs(10), async {
                    s.write_all(b"probe\n").await.is_ok() && {
                        let mut b = [0u8; 6];
                        s.read_exact(&mut b).await.is_ok() && &b == b"probe\n"
                    }
                })
                .await
                .unwrap_or(false);
                (ok, "answered".to_string())
            }
            Ok(Err(e)) => (false, e),
            Err(_) => (false, "no answer in 30 s".to_string()),
        };
        let nearest = marks
            .iter()
            .copied()
            .min_by(|a, b| (a - at).abs().total_cmp(&(b - at).abs()))
            .unwrap();
        eprintln!(
            "probe at {:+7.1} s from a boundary: {} ({what})",
            at - nearest,
            if ok { "ok" } else { "FAILED" }
        );
        probes.push(Probe {
            offset: at - nearest,
            ok,
            what,
        });
        tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    }
    drop(arti);
    drop(control);
    drop(net);
    drop(data);
    probes
}

fn report(name: &str, probes: &[Probe]) -> usize {
    let failed: Vec<&Probe> = probes.iter().filter(|p| !p.ok).collect();
    let worst = failed
        .iter()
        .map(|p| p.offset)
        .fold(None::<(f64, f64)>, |acc, o| match acc {
            None => Some((o, o)),
            Some((lo, hi)) => Some((lo.min(o), hi.max(o))),
        });
    eprintln!(
        "FIGURE {name}: {} of {} probes answered; failures {}",
        probes.len() - failed.len(),
        probes.len(),
        match worst {
            None => "none".to_string(),
            Some((lo, hi)) => format!(
                "between {lo:+.0} s and {hi:+.0} s of a boundary ({})",
                failed
                    .iter()
                    .map(|p| p.what.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        }
    );
    failed.len()
}

/// The benchmark of the issue "links that come back" (fact 5): ≥ 4 time-period boundaries,
/// probes from a fresh C tor client every 10 s; goal 100 % answered.
/// `TORCHAT_BOUNDARIES` (default 4), `TORCHAT_ARTI_REPUBLISH=0` to measure without the
/// workaround. Run with `cargo test --release -p torchat-arti --test private_net
/// time_period_boundaries -- --ignored --nocapture`.
#[test]
#[ignore = "takes 25+ minutes; a benchmark"]
fn time_period_boundaries() {
    if !tornet::available("time_period_boundaries") {
        return;
    }
    let n: usize = std::env::var("TORCHAT_BOUNDARIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let republish = std::env::var("TORCHAT_ARTI_REPUBLISH").as_deref() != Ok("0");
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let probes = rt.block_on(probe_across_boundaries(n, republish));
    let name = format!("boundaries n={n} republish={republish}");
    let failed = report(&name, &probes);
    drop(rt);
    if republish {
        assert_eq!(failed, 0, "probes failed around time-period boundaries");
    }
}
