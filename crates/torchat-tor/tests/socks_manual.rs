//! The manual transport and the SOCKS client against a test SOCKS proxy: SOCKS5 (domain name)
//! and SOCKS4a dial `<id>.onion:11009`, bytes flow both ways, reply codes map to errors.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{exchange, FakeSocks};
use tokio::sync::mpsc;
use torchat_tor::manual::Manual;
use torchat_tor::socks::{SocksError, SocksVersion};
use torchat_tor::{Error, Transport, TransportEvent, TORCHAT_PORT};
use torchat_wire::OnionId;

const V3: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";
const LEGACY: &str = "abcdefghijklmnop";

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn next(rx: &mut mpsc::Receiver<TransportEvent>) -> TransportEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

/// Two manual transports, A and B, behind one proxy; A dials B and B dials A.
async fn both_ways(version: SocksVersion, a_id: &str, b_id: &str) {
    let proxy = FakeSocks::start().await;
    let (a_id, b_id) = (OnionId::parse(a_id).unwrap(), OnionId::parse(b_id).unwrap());
    let (atx, mut arx) = mpsc::channel(8);
    let (btx, mut brx) = mpsc::channel(8);
    let (a, a_addr) = Manual::start(a_id.clone(), any_port(), proxy.addr, version, atx)
        .await
        .unwrap();
    let (b, b_addr) = Manual::start(b_id.clone(), any_port(), proxy.addr, version, btx)
        .await
        .unwrap();
    proxy.route(&format!("{a_id}.onion"), TORCHAT_PORT, a_addr);
    proxy.route(&format!("{b_id}.onion"), TORCHAT_PORT, b_addr);
    assert!(matches!(next(&mut arx).await, TransportEvent::Ready { id } if id == a_id));
    assert!(matches!(next(&mut brx).await, TransportEvent::Ready { id } if id == b_id));
    assert_eq!(a.name(), "socks");

    let mut out = a.connect(&b_id).await.unwrap();
    let TransportEvent::Incoming(mut inc) = next(&mut brx).await else {
        panic!("expected Incoming")
    };
    exchange(&mut out, &mut inc).await;

    let mut out = b.connect(&a_id).await.unwrap();
    let TransportEvent::Incoming(mut inc) = next(&mut arx).await else {
        panic!("expected Incoming")
    };
    exchange(&mut out, &mut inc).await;
    assert_eq!(proxy.attempts(), 2);
}

#[tokio::test]
async fn socks5_manual_dials_both_ways() {
    both_ways(SocksVersion::Socks5, V3, LEGACY).await;
}

#[tokio::test]
async fn socks4a_manual_dials_both_ways() {
    both_ways(SocksVersion::Socks4a, LEGACY, V3).await;
}

async fn manual_via(proxy: &FakeSocks, version: SocksVersion) -> Manual {
    let (tx, rx) = mpsc::channel(8);
    std::mem::forget(rx); // keep the channel open; events are not looked at here
    let own = OnionId::parse(LEGACY).unwrap();
    Manual::start(own, any_port(), proxy.addr, version, tx)
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn socks5_reply_codes_map_to_errors() {
    let proxy = FakeSocks::start().await;
    let m = manual_via(&proxy, SocksVersion::Socks5).await;
    let to = OnionId::parse(V3).unwrap();
    for (code, want) in [
        (0x01, SocksError::GeneralFailure),
        (0x05, SocksError::ConnectionRefused),
        (0xF1, SocksError::OnionDescriptorInvalid),
        (0xF3, SocksError::OnionRendezvousFailed),
        (0xF4, SocksError::OnionMissingClientAuth),
        (0xF6, SocksError::OnionBadAddress),
        (0x99, SocksError::UnknownReply(0x99)),
    ] {
        let before = proxy.attempts();
        proxy.fail_with(&[code]);
        match m.connect(&to).await {
            Err(Error::Socks(e)) => assert_eq!(e, want, "code {code:#x}"),
            other => panic!("code {code:#x}: {:?}", other.map(|_| ())),
        }
        assert_eq!(
            proxy.attempts(),
            before + 1,
            "code {code:#x} must not be retried"
        );
    }
    // No route: the proxy says host unreachable.
    assert!(matches!(
        m.connect(&to).await,
        Err(Error::Socks(SocksError::HostUnreachable))
    ));
}

#[tokio::test]
async fn transient_onion_errors_are_retried_twice() {
    let proxy = FakeSocks::start().await;
    let target = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    proxy.route(
        &format!("{V3}.onion"),
        TORCHAT_PORT,
        target.local_addr().unwrap(),
    );
    let m = manual_via(&proxy, SocksVersion::Socks5).await;
    let to = OnionId::parse(V3).unwrap();

    // Two transient failures, then success.
    proxy.fail_with(&[0xF0, 0xF2]);
    let t = std::time::Instant::now();
    let _s = m.connect(&to).await.unwrap();
    assert_eq!(proxy.attempts(), 3);
    assert!(t.elapsed() >= Duration::from_millis(1800));

    // Three: the third is reported.
    proxy.fail_with(&[0xF7, 0xF0, 0xF0]);
    let r = m.connect(&to).await;
    assert!(matches!(
        r,
        Err(Error::Socks(SocksError::OnionDescriptorNotFound))
    ));
    assert_eq!(proxy.attempts(), 6);
}

#[tokio::test]
async fn socks4a_rejection_maps_to_error() {
    let proxy = FakeSocks::start().await;
    let m = manual_via(&proxy, SocksVersion::Socks4a).await;
    proxy.fail_with(&[0x01]);
    let r = m.connect(&OnionId::parse(V3).unwrap()).await;
    assert!(matches!(r, Err(Error::Socks(SocksError::Socks4Rejected))));
}

#[tokio::test]
async fn handshake_times_out() {
    let proxy = FakeSocks::start().await;
    proxy.set_silent(true);
    let m = manual_via(&proxy, SocksVersion::Socks5)
        .await
        .with_timeout(Duration::from_millis(300));
    let r = m.connect(&OnionId::parse(V3).unwrap()).await;
    assert!(matches!(r, Err(Error::Socks(SocksError::Timeout))));
}

#[tokio::test]
async fn not_a_socks_proxy() {
    // A server that answers HTTP-ish garbage.
    let l = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut s, _) = l.accept().await.unwrap();
        let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let r = torchat_tor::socks::connect(
        addr,
        "x.onion",
        1,
        SocksVersion::Socks5,
        Duration::from_secs(5),
    )
    .await;
    assert!(matches!(r, Err(Error::Socks(SocksError::BadVersion(b'H')))));
}
