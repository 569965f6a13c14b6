//! The async loop against a fake node on a Unix socket, with keys from a channel and a
//! `TestBackend` for a terminal: start-up requests, events, a sent message, quitting.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use futures::SinkExt;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::broadcast;
use torchat_api::{Command, Event, Message, Request, Response, ServerLine};
use torchat_client::Client;
use torchat_tui::App;

const ME: &str = "aliceaaaaaaaaaaa";
const BOB: &str = "bobaaaaaaaaaaaaa";

fn answer(cmd: &Command) -> Value {
    match cmd {
        Command::Info => json!({"id": ME, "transport": "direct", "connections": 1,
            "version": "0.1.0",
            "tor": {"percent": 100, "summary": "Done", "ready": true, "problem": null}}),
        Command::Buddies => json!([{"id": BOB, "kind": "permanent", "alias": "bob",
            "presence": "available", "name": null, "text": null, "client": null, "queued": 0}]),
        Command::Groups | Command::History { .. } => json!([]),
        Command::Send { .. } => json!({"id": "s1", "state": "sent"}),
        _ => json!({}),
    }
}

/// A node that answers from [`answer`], records commands, and broadcasts `events` to
/// subscribers.
fn fake_node(
    listener: UnixListener,
    seen: Arc<Mutex<Vec<Command>>>,
    events: broadcast::Sender<Event>,
) {
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (seen, events) = (seen.clone(), events.clone());
            tokio::spawn(async move {
                let (rd, wr) = sock.into_split();
                let wr = Arc::new(tokio::sync::Mutex::new(wr));
                let mut lines = BufReader::new(rd).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    let req: Request = serde_json::from_str(&l).unwrap();
                    seen.lock().unwrap().push(req.cmd.clone());
                    let resp = ServerLine::Response(Response::ok(req.req, answer(&req.cmd)));
                    let mut s = serde_json::to_string(&resp).unwrap();
                    s.push('\n');
                    wr.lock().await.write_all(s.as_bytes()).await.unwrap();
                    if req.cmd == Command::Subscribe {
                        let (mut rx, wr) = (events.subscribe(), wr.clone());
                        tokio::spawn(async move {
                            while let Ok(e) = rx.recv().await {
                                let mut s = serde_json::to_string(&ServerLine::Event(e)).unwrap();
                                s.push('\n');
                                if wr.lock().await.write_all(s.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                        });
                    }
                }
            });
        }
    });
}

fn key(code: KeyCode, m: KeyModifiers) -> std::io::Result<TermEvent> {
    Ok(TermEvent::Key(KeyEvent::new(code, m)))
}

async fn wait_for(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn drives_the_app_against_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let seen = Arc::new(Mutex::new(vec![]));
    let (ev_tx, _) = broadcast::channel(16);
    fake_node(
        UnixListener::bind(&path).unwrap(),
        seen.clone(),
        ev_tx.clone(),
    );

    let events = Client::connect(&path)
        .await
        .unwrap()
        .subscribed()
        .await
        .unwrap();
    let commands = Client::connect(&path).await.unwrap();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut app = App::new();
    let (mut keys, key_rx) = futures::channel::mpsc::channel(16);
    let copied = Arc::new(Mutex::new(vec![]));
    let c2 = copied.clone();
    let copy = move |s: &str| c2.lock().unwrap().push(s.to_owned());

    let script = async {
        let has = |c: &Command| seen.lock().unwrap().contains(c);
        wait_for("start-up requests", || {
            has(&Command::Info) && has(&Command::Buddies) && has(&Command::Groups)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let message = Message {
            row: 0,
            id: "b1".into(),
            conversation: BOB.into(),
            sender: BOB.into(),
            direction: "in".into(),
            text: "hi from bob".into(),
            at: 1_795_610_000_000,
            delivery: None,
            trust: None,
        };
        ev_tx.send(Event::Message { message }).unwrap();
        keys.send(key(KeyCode::Tab, KeyModifiers::NONE))
            .await
            .unwrap();
        for c in "hello".chars() {
            keys.send(key(KeyCode::Char(c), KeyModifiers::NONE))
                .await
                .unwrap();
        }
        keys.send(key(KeyCode::Enter, KeyModifiers::NONE))
            .await
            .unwrap();
        let sent = Command::Send {
            to: BOB.into(),
            text: "hello".into(),
        };
        wait_for("the message sent", || has(&sent)).await;
        keys.send(key(KeyCode::F(2), KeyModifiers::NONE))
            .await
            .unwrap();
        keys.send(key(KeyCode::Char('c'), KeyModifiers::NONE))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        keys.send(key(KeyCode::Char('c'), KeyModifiers::CONTROL))
            .await
            .unwrap();
    };
    let (result, ()) = tokio::join!(
        torchat_tui::drive(&mut terminal, &mut app, events, commands, key_rx, copy),
        script
    );
    result.unwrap();
    assert!(app.should_quit());
    assert_eq!(*copied.lock().unwrap(), [ME.to_owned()]);
    let buf = terminal.backend().buffer();
    let screen: String = (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_owned())
                .collect::<String>()
                + "\n"
        })
        .collect();
    assert!(screen.contains("bob: hi from bob"), "{screen}");
    assert!(screen.contains("you: hello · sent"), "{screen}");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|c| matches!(c, Command::History { with, .. } if with == BOB)),
        "history was read"
    );
}

#[tokio::test]
async fn a_lost_node_ends_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let (ev_tx, _) = broadcast::channel(16);
    fake_node(
        UnixListener::bind(&path).unwrap(),
        Arc::new(Mutex::new(vec![])),
        ev_tx,
    );
    let commands = Client::connect(&path).await.unwrap();
    // The event connection goes to a node that answers `subscribe` and hangs up.
    let dead = dir.path().join("dead.sock");
    let listener = UnixListener::bind(&dead).unwrap();
    let hang_up = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let (rd, mut wr) = s.into_split();
        let l = BufReader::new(rd)
            .lines()
            .next_line()
            .await
            .unwrap()
            .unwrap();
        let req: Request = serde_json::from_str(&l).unwrap();
        let r = serde_json::to_string(&Response::ok(req.req, json!({}))).unwrap() + "\n";
        wr.write_all(r.as_bytes()).await.unwrap();
    });
    let events = Client::connect(&dead)
        .await
        .unwrap()
        .subscribed()
        .await
        .unwrap();
    hang_up.await.unwrap();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut app = App::new();
    let (_keys, key_rx) = futures::channel::mpsc::channel::<std::io::Result<TermEvent>>(1);
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        torchat_tui::drive(&mut terminal, &mut app, events, commands, key_rx, |_| {}),
    )
    .await
    .unwrap();
    assert!(r.is_ok());
    assert!(app.should_quit());
    assert!(
        app.exit_error().unwrap().contains("connection"),
        "{:?}",
        app.exit_error()
    );
}
