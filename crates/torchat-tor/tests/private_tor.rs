//! Real Tor: a private Tor network on loopback (`private-tor-net`, see
//! `shared/tools/private-tor-net.md`), one managed C tor that joins it with the extra torrc
//! lines and hosts our onion service from a fixed seed, and one "existing tor" transport on the
//! network's client 1 hosting a second identity. Each dials the other's onion and bytes flow
//! both ways. One network serves every case (it takes 30–60 s to start).
//!
//! Needs `tor` and `python3`. Without them the test prints a SKIP line and passes, unless
//! `TORCHAT_REQUIRE_TOR=1`, which turns that into a failure. The script's path is
//! `TORCHAT_PRIVATE_TOR_NET`, else `shared/tools/private-tor-net` beside the repository.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::exchange;
use tokio::sync::mpsc;
use torchat_testkit::tornet::{self, Network};
use torchat_tor::ctor::{CTor, CTorConfig, CTorMode, ControlAuth};
use torchat_tor::{Transport, TransportEvent};

/// Waits for `Ready`, printing the other events.
async fn wait_ready(name: &str, rx: &mut mpsc::Receiver<TransportEvent>) {
    let t = Instant::now();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(300), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{name}: not ready after 300 s"))
            .unwrap();
        eprintln!("[{:6.1}s] {name}: {ev:?}", t.elapsed().as_secs_f32());
        if matches!(ev, TransportEvent::Ready { .. }) {
            return;
        }
    }
}

async fn next_incoming(rx: &mut mpsc::Receiver<TransportEvent>) -> torchat_tor::BoxStream {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .unwrap()
            .unwrap();
        match ev {
            TransportEvent::Incoming(s) => return s,
            other => eprintln!("(while waiting for a connection) {other:?}"),
        }
    }
}

/// True if everything is there; else prints SKIP (or fails under `TORCHAT_REQUIRE_TOR=1`).
fn have(test: &str, need_network: bool) -> bool {
    if need_network {
        return tornet::available(test);
    }
    let missing: Vec<&str> = (!torchat_testkit::on_path("tor"))
        .then_some("tor (apt-get install -y tor)")
        .into_iter()
        .collect();
    torchat_testkit::can_run(test, "TORCHAT_REQUIRE_TOR", &missing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_and_existing_tor_talk_over_a_private_network() {
    if !have("managed_and_existing_tor_talk_over_a_private_network", true) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let net = Network::start(&tmp.path().join("net"), 2);
    let (control_port, socks_port, cookie) = net.client(0);
    let control = ([127, 0, 0, 1], control_port).into();
    let socks = ([127, 0, 0, 1], socks_port).into();
    let cookie = PathBuf::from(cookie);
    let extra = net.client_torrc();

    // (a) managed tor, joining the private network.
    let seed_a = [0xA1u8; 32];
    let mut cfg_a = CTorConfig::managed(tmp.path().join("a"));
    if let CTorMode::Managed(m) = &mut cfg_a.mode {
        m.extra_torrc = extra;
    }
    let (atx, mut arx) = mpsc::channel(64);
    let (a, _) = CTor::start(&seed_a, cfg_a, atx).await.unwrap();

    // (b) existing tor: the network's client 1.
    let seed_b = [0xB2u8; 32];
    let cfg_b = CTorConfig::existing(control, ControlAuth::CookieFile(cookie), socks);
    let (btx, mut brx) = mpsc::channel(64);
    let (b, _) = CTor::start(&seed_b, cfg_b, btx).await.unwrap();

    let t = Instant::now();
    tokio::join!(
        wait_ready("managed", &mut arx),
        wait_ready("existing", &mut brx)
    );
    eprintln!(
        "both onion services published in {:.1} s",
        t.elapsed().as_secs_f32()
    );
    assert_eq!(a.own_id(), &torchat_tor::keys::onion_id(&seed_a));
    assert_eq!(b.own_id(), &torchat_tor::keys::onion_id(&seed_b));

    // Managed → existing.
    let t = Instant::now();
    let mut out = a.connect(b.own_id()).await.unwrap();
    let mut inc = next_incoming(&mut brx).await;
    exchange(&mut out, &mut inc).await;
    eprintln!(
        "managed -> existing: connected and exchanged in {:.1} s",
        t.elapsed().as_secs_f32()
    );

    // Existing → managed.
    let t = Instant::now();
    let mut out2 = b.connect(a.own_id()).await.unwrap();
    let mut inc2 = next_incoming(&mut arx).await;
    exchange(&mut out2, &mut inc2).await;
    eprintln!(
        "existing -> managed: connected and exchanged in {:.1} s",
        t.elapsed().as_secs_f32()
    );

    drop((out, inc, out2, inc2));
    a.shutdown().await;
    b.shutdown().await;
    drop(net);
    eprintln!("total {:.1} s", started.elapsed().as_secs_f32());
}

/// A managed tor whose only bridge is a closed local port never bootstraps: the transport
/// reports a `Problem` with a hint instead of hanging silently, and shutdown stops tor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_tor_that_cannot_bootstrap_reports_a_problem() {
    if !have("managed_tor_that_cannot_bootstrap_reports_a_problem", false) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = CTorConfig::managed(tmp.path());
    cfg.bootstrap_warn_after = Duration::from_secs(3);
    if let CTorMode::Managed(m) = &mut cfg.mode {
        // Nothing listens on port 1; with UseBridges tor contacts nothing else.
        m.bridges = vec!["127.0.0.1:1".into()];
    }
    let (tx, mut rx) = mpsc::channel(64);
    let t = Instant::now();
    let (tor, _) = CTor::start(&[0xC3; 32], cfg, tx).await.unwrap();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap()
            .unwrap();
        eprintln!("[{:5.1}s] {ev:?}", t.elapsed().as_secs_f32());
        match ev {
            TransportEvent::Problem { message, hint } => {
                assert!(message.contains("has not connected"), "{message}");
                assert!(
                    hint.contains("bridges") && hint.contains("torchat demo"),
                    "{hint}"
                );
                break;
            }
            TransportEvent::Ready { .. } => panic!("cannot be ready"),
            _ => {}
        }
    }
    assert!(matches!(
        tor.connect(tor.own_id()).await,
        Err(torchat_tor::Error::NotReady)
    ));
    let port_file = std::fs::read_to_string(tmp.path().join("tor/control-port")).unwrap();
    let control: std::net::SocketAddr = port_file
        .trim()
        .strip_prefix("PORT=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(std::net::TcpStream::connect(control).is_ok(), "tor runs");
    tor.shutdown().await;
    let gone = Instant::now();
    while std::net::TcpStream::connect(control).is_ok() {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "tor still running after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
