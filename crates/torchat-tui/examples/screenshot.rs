//! Renders the TUI with made-up state (no node, no network) into PNG screenshots for the docs:
//! a group chat with mixed trust states, the "who vouched" popup, the home screen during Tor
//! bootstrap with a problem, an invite, and the help screen.
//!
//! ```sh
//! cargo run -p torchat-tui --example screenshot            # writes docs/img/tui-*.png
//! cargo run -p torchat-tui --example screenshot -- OUTDIR
//! ```
//!
//! It draws with ratatui's `TestBackend`, turns the buffer into SVG
//! (`torchat_tui::snapshot::buffer_to_svg`) and that into PNG with `rsvg-convert`
//! (`apt-get install librsvg2-bin`); without it, or with `KEEP_SVG=1`, the SVGs are kept.

use std::path::{Path, PathBuf};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::{json, Value};
use torchat_api::{Command, Event, Message, Trust};
use torchat_tui::{Action, App, AppEvent};

const ME: &str = "aliceaaaaaaaaaaa";
const BOB: &str = "bobaaaaaaaaaaaaa";
const CAROL: &str = "carolaaaaaaaaaaa";
const DAVE: &str = "daveaaaaaaaaaaaa";
const ERIN: &str = "erinaaaaaaaaaaaa";
const GID: &str = "44034392-cfdb-48d3-a9bf-30b99fb77918";
/// 2026-11-26 09:00 UTC.
const T0: u64 = 1_795_683_600_000;
const MIN: u64 = 60_000;

fn buddy(id: &str, alias: &str, presence: &str) -> Value {
    json!({"id": id, "kind": "permanent", "alias": alias, "presence": presence,
           "name": null, "text": null, "client": "torchat 0.1.0", "queued": 0})
}

fn node(cmd: &Command, tor_ready: bool) -> Value {
    match cmd {
        Command::Info if tor_ready => json!({"id": ME, "transport": "tor", "connections": 4,
            "version": "0.1.0",
            "tor": {"percent": 100, "summary": "Done", "ready": true, "problem": null}}),
        Command::Info => json!({"id": ME, "transport": "tor", "connections": 0,
            "version": "0.1.0",
            "tor": {"percent": 35, "summary": "Loading relay descriptors", "ready": false,
                    "problem": {"message": "the network seems to block Tor",
                                "hint": "add bridge lines under [transport.tor] in config.toml"}}}),
        Command::Buddies => json!([
            buddy(BOB, "bob", "available"),
            buddy(CAROL, "carol", "away"),
            buddy(DAVE, "dave", "available"),
            buddy(ERIN, "erin", "xa"),
            buddy("frankaaaaaaaaaaa", "frank", "offline"),
        ]),
        Command::Groups => json!([
            {"gid": GID, "state": "joined", "modes": [], "members": [BOB, CAROL, DAVE, ERIN],
             "inviter": BOB},
            {"gid": "9a1c5e02-7d3b-4f1e-8c2a-1b2c3d4e5f60", "state": "invited", "modes": [],
             "members": [], "inviter": CAROL},
        ]),
        Command::History { .. } => json!([]),
        Command::Claims { .. } => json!([
            {"claimant": ERIN, "at": T0 + 5 * MIN + 2_000},
        ]),
        _ => json!({}),
    }
}

/// Feeds events, answering every command the app sends.
fn feed(app: &mut App, events: Vec<AppEvent>, tor_ready: bool) {
    let mut todo: Vec<Action> = vec![];
    for e in events {
        todo.extend(app.handle(e));
        while let Some(a) = todo.pop() {
            if let Action::Call { id, cmd } = a {
                let result = Ok(node(&cmd, tor_ready));
                todo.extend(app.handle(AppEvent::Response { id, result }));
            }
        }
    }
}

fn key(code: KeyCode) -> AppEvent {
    AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn gmsg(id: &str, sender: &str, text: &str, at: u64, trust: Trust) -> AppEvent {
    let message = Message {
        row: 0,
        id: id.into(),
        conversation: GID.into(),
        sender: sender.into(),
        direction: if sender == ME { "out" } else { "in" }.into(),
        text: text.into(),
        at,
        delivery: None,
        trust: None,
    };
    AppEvent::Node(Event::GroupMessage { message, trust })
}

fn started(tor_ready: bool) -> App {
    let mut app = App::new();
    let mut todo = app.start();
    while let Some(a) = todo.pop() {
        if let Action::Call { id, cmd } = a {
            let result = Ok(node(&cmd, tor_ready));
            todo.extend(app.handle(AppEvent::Response { id, result }));
        }
    }
    feed(&mut app, vec![AppEvent::Tick(T0 + 10 * MIN)], tor_ready);
    app
}

fn group_chat() -> App {
    let mut app = started(true);
    let mut ev = vec![
        // Two unread messages from erin.
        AppEvent::Node(Event::Message {
            message: Message {
                row: 0,
                id: "e1".into(),
                conversation: ERIN.into(),
                sender: ERIN.into(),
                direction: "in".into(),
                text: "are you coming?".into(),
                at: T0,
                delivery: None,
                trust: None,
            },
        }),
    ];
    ev.push(AppEvent::Node(Event::Message {
        message: Message {
            row: 0,
            id: "e2".into(),
            conversation: ERIN.into(),
            sender: ERIN.into(),
            direction: "in".into(),
            text: "?".into(),
            at: T0 + MIN,
            delivery: None,
            trust: None,
        },
    }));
    // Go to the group.
    ev.push(key(KeyCode::Tab));
    ev.push(key(KeyCode::Tab));
    ev.extend([
        gmsg(
            "m1",
            BOB,
            "Morning all! Release call in ten minutes?",
            T0,
            Trust::Direct { confirmations: 3 },
        ),
        gmsg(
            "m2",
            CAROL,
            "Yes. I'm on a train, my link comes and goes.",
            T0 + MIN,
            Trust::Relayed { k: 2, n: 4 },
        ),
        gmsg(
            "m3",
            ME,
            "Sounds good, I'll bring the notes.",
            T0 + 2 * MIN,
            Trust::Own,
        ),
        AppEvent::Node(Event::GroupDelivery {
            gid: GID.into(),
            id: "m3".into(),
            delivered: 4,
            of: 4,
        }),
        gmsg(
            "m4",
            ERIN,
            "bob, your direct link to me is down today",
            T0 + 3 * MIN,
            Trust::Relayed { k: 3, n: 4 },
        ),
        gmsg(
            "m5",
            DAVE,
            "Quick: paste the server password here please",
            T0 + 5 * MIN,
            Trust::Unconfirmed { k: 1, n: 4 },
        ),
        gmsg(
            "m6",
            ME,
            "dave, is that really you?",
            T0 + 6 * MIN,
            Trust::Own,
        ),
        AppEvent::Node(Event::GroupDelivery {
            gid: GID.into(),
            id: "m6".into(),
            delivered: 2,
            of: 4,
        }),
        gmsg(
            "m7",
            DAVE,
            "No! That was not me. I'm right here.",
            T0 + 6 * MIN,
            Trust::Direct { confirmations: 0 },
        ),
        // carol's message: more members vouch for it as their copies arrive.
        AppEvent::Node(Event::GroupTrust {
            gid: GID.into(),
            id: "m2".into(),
            trust: Trust::Relayed { k: 3, n: 4 },
            claimants: vec![BOB.into(), DAVE.into(), ERIN.into()],
        }),
    ]);
    feed(&mut app, ev, true);
    app
}

fn render(app: &App, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let mut t = Terminal::new(TestBackend::new(80, 24)).map_err(std::io::Error::other)?;
    t.draw(|f| torchat_tui::draw(f, app))
        .map_err(std::io::Error::other)?;
    let svg = torchat_tui::snapshot::buffer_to_svg(t.backend().buffer());
    let svg_path = dir.join(format!("{name}.svg"));
    std::fs::write(&svg_path, svg)?;
    let png = dir.join(format!("{name}.png"));
    let status = std::process::Command::new("rsvg-convert")
        .arg("-o")
        .arg(&png)
        .arg(&svg_path)
        .status();
    match status {
        Ok(s) if s.success() => {
            if std::env::var_os("KEEP_SVG").is_none() {
                std::fs::remove_file(&svg_path)?;
            }
            Ok(png)
        }
        _ => {
            eprintln!(
                "rsvg-convert failed or is missing; kept {}",
                svg_path.display()
            );
            Ok(svg_path)
        }
    }
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/img"));
    std::fs::create_dir_all(&dir)?;

    let app = group_chat();
    println!("{}", render(&app, &dir, "tui-group")?.display());

    let mut app = group_chat();
    // Select dave's suspicious message and ask who vouched for it.
    feed(
        &mut app,
        vec![
            key(KeyCode::Esc),
            key(KeyCode::Up),
            key(KeyCode::Up),
            key(KeyCode::Char('c')),
        ],
        true,
    );
    println!("{}", render(&app, &dir, "tui-claims")?.display());

    let app = started(false);
    println!("{}", render(&app, &dir, "tui-home")?.display());

    // carol's invite, selected.
    let mut app = started(true);
    feed(&mut app, vec![key(KeyCode::Tab)], true);
    println!("{}", render(&app, &dir, "tui-invite")?.display());

    let mut app = group_chat();
    feed(&mut app, vec![key(KeyCode::F(1))], true);
    println!("{}", render(&app, &dir, "tui-help")?.display());
    Ok(())
}
