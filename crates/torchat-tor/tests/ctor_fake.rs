//! The C tor transport in "existing tor" mode against a scripted fake control port and the
//! test SOCKS proxy: bootstrap progress and the slow-bootstrap problem, authentication,
//! `ADD_ONION` with our expanded key, waiting for descriptor uploads, `Ready`, dialing, and a
//! loud failure when tor's service id does not match our key. Real tor: `private_tor.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{exchange, FakeSocks};
use ed25519_dalek::hazmat::ExpandedSecretKey;
use ed25519_dalek::VerifyingKey;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use torchat_tor::ctor::{CTor, CTorConfig, ControlAuth};
use torchat_tor::{keys, Transport, TransportEvent, TORCHAT_PORT};
use torchat_wire::OnionId;
use zeroize::Zeroizing;

#[derive(Clone, Copy, PartialEq)]
enum Script {
    /// Bootstrap slowly, then publish correctly.
    Good,
    /// Return a service id that is not our key's.
    WrongId,
}

struct FakeTor {
    addr: SocketAddr,
    /// Where ADD_ONION asked tor to forward port 11009.
    target: Arc<Mutex<Option<SocketAddr>>>,
}

const COOKIE: [u8; 32] = [0x5A; 32];

async fn fake_tor(script: Script, cookie_file: String, password: Option<&'static str>) -> FakeTor {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = Arc::new(Mutex::new(None));
    let t = target.clone();
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                if w.write_all(s.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        let mut lines = BufReader::new(r).lines();
        let mut authed = false;
        let progress = Arc::new(Mutex::new(10u8));
        while let Ok(Some(line)) = lines.next_line().await {
            let (cmd, rest) = line.split_once(' ').unwrap_or((&line, ""));
            if !authed && !matches!(cmd, "PROTOCOLINFO" | "AUTHENTICATE") {
                tx.send("514 Authentication required.\r\n".into()).unwrap();
                continue;
            }
            let reply = match cmd {
                "PROTOCOLINFO" => format!(
                    "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE,HASHEDPASSWORD \
                     COOKIEFILE=\"{cookie_file}\"\r\n250-VERSION Tor=\"0.4.9.0\"\r\n250 OK\r\n"
                ),
                "AUTHENTICATE" => {
                    let want = match password {
                        Some(p) => format!("\"{p}\""),
                        None => data_encoding::HEXUPPER.encode(&COOKIE),
                    };
                    authed = rest == want;
                    if authed {
                        "250 OK\r\n".into()
                    } else {
                        "515 Authentication failed\r\n".into()
                    }
                }
                "SETEVENTS" => {
                    assert!(rest.contains("STATUS_CLIENT") && rest.contains("HS_DESC"));
                    // Bootstrap slowly: 10% now, 50% after 600 ms, 100% after 900 ms.
                    let (tx, progress) = (tx.clone(), progress.clone());
                    tokio::spawn(async move {
                        for (ms, p, s) in
                            [(600, 50, "Loading relay descriptors"), (300, 100, "Done")]
                        {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                            *progress.lock().unwrap() = p;
                            let _ = tx.send(format!(
                                "650 STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS={p} TAG=x SUMMARY=\"{s}\"\r\n"
                            ));
                        }
                    });
                    "250 OK\r\n".into()
                }
                "GETINFO" if rest == "status/bootstrap-phase" => {
                    let p = *progress.lock().unwrap();
                    format!(
                        "250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS={p} TAG=x \
                         SUMMARY=\"Connecting\" WARNING=\"Connection refused\"\r\n250 OK\r\n"
                    )
                }
                "ADD_ONION" => {
                    let mut words = rest.split(' ');
                    let key = words.next().unwrap().strip_prefix("ED25519-V3:").unwrap();
                    let raw = Zeroizing::new(data_encoding::BASE64.decode(key.as_bytes()).unwrap());
                    let esk = ExpandedSecretKey::from_bytes(&raw[..].try_into().unwrap());
                    let public = VerifyingKey::from(&esk).to_bytes();
                    let mut id = OnionId::from_ed25519_public_key(&public);
                    if script == Script::WrongId {
                        id = keys::onion_id(&[9; 32]);
                    }
                    let args: Vec<&str> = words.collect();
                    let port = args.iter().find_map(|w| w.strip_prefix("Port=")).unwrap();
                    let (virt, to) = port.split_once(',').unwrap();
                    assert_eq!(virt, TORCHAT_PORT.to_string());
                    *t.lock().unwrap() = Some(to.parse().unwrap());
                    // DoS defences, and the service is not detached.
                    assert!(args.contains(&"MaxStreams=4"), "{args:?}");
                    assert!(args.contains(&"PoWDefensesEnabled=1"), "{args:?}");
                    assert!(args.contains(&"Flags=MaxStreamsCloseCircuit"), "{args:?}");
                    assert!(!args.iter().any(|a| a.contains("Detach")), "{args:?}");
                    let tx = tx.clone();
                    let a = id.to_string();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        for ev in [
                            format!("HS_DESC UPLOAD {a} UNKNOWN $AAAA~relay1 d1 HSDIR_INDEX=1"),
                            format!("HS_DESC UPLOAD {a} UNKNOWN $BBBB~relay2 d1 HSDIR_INDEX=2"),
                            format!("HS_DESC UPLOADED {a} UNKNOWN $AAAA~relay1"),
                            format!("HS_DESC FAILED {a} UNKNOWN $BBBB~relay2 REASON=x"),
                        ] {
                            let _ = tx.send(format!("650 {ev}\r\n"));
                        }
                    });
                    format!("250-ServiceID={id}\r\n250 OK\r\n")
                }
                _ => "510 Unrecognized command\r\n".into(),
            };
            tx.send(reply).unwrap();
        }
    });
    FakeTor { addr, target }
}

async fn next(rx: &mut mpsc::Receiver<TransportEvent>) -> TransportEvent {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn existing_tor_bootstraps_publishes_and_dials() {
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join("control_auth_cookie");
    std::fs::write(&cookie, COOKIE).unwrap();
    let tor = fake_tor(Script::Good, cookie.display().to_string(), None).await;
    let socks = FakeSocks::start().await;
    let seed = [7u8; 32];
    let mut cfg = CTorConfig::existing(tor.addr, ControlAuth::Auto, socks.addr);
    cfg.bootstrap_warn_after = Duration::from_millis(300);
    let (tx, mut rx) = mpsc::channel(32);
    let (ctor, _bound) = CTor::start(&seed, cfg, tx).await.unwrap();
    assert_eq!(ctor.own_id(), &keys::onion_id(&seed));
    assert!(matches!(
        ctor.connect(ctor.own_id()).await,
        Err(torchat_tor::Error::NotReady)
    ));

    let mut seen = Vec::new();
    loop {
        let ev = next(&mut rx).await;
        seen.push(format!("{ev:?}"));
        if let TransportEvent::Problem { message, hint } = &ev {
            assert!(message.contains("at 10%"), "{message}");
            assert!(message.contains("Connection refused"), "{message}");
            assert!(hint.contains("torchat demo"), "{hint}");
        }
        if let TransportEvent::Ready { id } = ev {
            assert_eq!(&id, ctor.own_id());
            break;
        }
    }
    let want = [
        "Progress(10%, Connecting)",
        "Problem(",
        "Progress(50%, Loading relay descriptors)",
        "Progress(100%, Done)",
        "Progress(100%, publishing our onion service)",
        "Ready(",
    ];
    assert_eq!(seen.len(), want.len(), "{seen:?}");
    for (s, w) in seen.iter().zip(want) {
        assert!(s.starts_with(w), "{seen:?}");
    }

    // Dial ourselves through the SOCKS proxy, which maps our onion to ADD_ONION's target.
    let target = tor.target.lock().unwrap().unwrap();
    socks.route(&format!("{}.onion", ctor.own_id()), TORCHAT_PORT, target);
    let mut out = ctor.connect(ctor.own_id()).await.unwrap();
    let TransportEvent::Incoming(mut inc) = next(&mut rx).await else {
        panic!("expected Incoming")
    };
    exchange(&mut out, &mut inc).await;
    ctor.shutdown().await;
    assert!(matches!(
        ctor.connect(ctor.own_id()).await,
        Err(torchat_tor::Error::NotReady)
    ));
}

#[tokio::test]
async fn a_service_id_that_is_not_ours_fails_loudly() {
    let tor = fake_tor(Script::WrongId, "/nonexistent".into(), Some("s3cret")).await;
    let socks = FakeSocks::start().await;
    let auth = ControlAuth::Password(Zeroizing::new("s3cret".into()));
    assert_eq!(format!("{auth:?}"), "Password(<redacted>)");
    let cfg = CTorConfig::existing(tor.addr, auth, socks.addr);
    let (tx, mut rx) = mpsc::channel(32);
    let (ctor, _) = CTor::start(&[7u8; 32], cfg, tx).await.unwrap();
    loop {
        match next(&mut rx).await {
            TransportEvent::Problem { message, .. } => {
                assert!(message.contains("not passed to tor correctly"), "{message}");
                break;
            }
            TransportEvent::Ready { .. } => panic!("must not become ready"),
            _ => {}
        }
    }
    // Fatal: no retry (a retry would report again after 2 s).
    assert!(tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .is_err());
    assert!(ctor.socks_addr().is_none());
}
