//! The app driven by synthetic events, and what `draw` makes of it (ratatui's `TestBackend`).
#![allow(clippy::unwrap_used)]

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ratatui::Terminal;
use serde_json::{json, Value};
use torchat_api::{self as api, Command, Event};

use crate::app::{Action, App, AppEvent, Mode, ResponseError, Target, PAGE};

const ME: &str = "aliceaaaaaaaaaaa";
const BOB: &str = "bobaaaaaaaaaaaaa";
const CAROL: &str = "carolaaaaaaaaaaa";
const MALLORY: &str = "malloryaaaaaaaaa";
const GID: &str = "44034392-cfdb-48d3-a9bf-30b99fb77918";
const T0: u64 = 1_795_610_000_000;

fn key(code: KeyCode) -> AppEvent {
    AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ctrl(c: char) -> AppEvent {
    AppEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// Types `s` and presses Enter; returns the actions of the Enter.
fn enter(app: &mut App, s: &str) -> Vec<Action> {
    for c in s.chars() {
        assert!(app.handle(key(KeyCode::Char(c))).is_empty());
    }
    app.handle(key(KeyCode::Enter))
}

fn calls(actions: &[Action]) -> Vec<(u64, Command)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Call { id, cmd } => Some((*id, cmd.clone())),
            _ => None,
        })
        .collect()
}

/// Answers every call with `answer(cmd)`; answers the follow-up calls too.
fn answer(app: &mut App, actions: Vec<Action>, answer: &dyn Fn(&Command) -> Value) {
    let mut todo = calls(&actions);
    while let Some((id, cmd)) = todo.pop() {
        let more = app.handle(AppEvent::Response {
            id,
            result: Ok(answer(&cmd)),
        });
        todo.extend(calls(&more));
    }
}

fn buddy(id: &str, presence: &str, alias: &str) -> Value {
    json!({"id": id, "kind": "permanent", "alias": alias, "presence": presence,
           "name": null, "text": null, "client": null, "queued": 0})
}

/// The node as the tests imagine it: alice with bob (online), carol (offline), mallory (online)
/// and a group with all three.
fn node(cmd: &Command) -> Value {
    match cmd {
        Command::Info => json!({"api_version": 1, "id": ME, "version": "0.1.0",
            "transport": "direct", "connections": 2,
            "tor": {"percent": 100, "summary": "Done", "ready": true, "problem": null}}),
        Command::Buddies => json!([
            buddy(BOB, "available", "bob"),
            buddy(CAROL, "offline", "carol"),
            buddy(MALLORY, "available", "mallory"),
        ]),
        Command::Groups => json!([{"gid": GID, "state": "joined", "modes": [],
            "members": [BOB, CAROL, MALLORY], "inviter": null}]),
        Command::History { .. } => json!([]),
        _ => json!({}),
    }
}

fn started() -> App {
    let mut app = App::new();
    let a = app.start();
    answer(&mut app, a, &node);
    app
}

fn msg(id: &str, conv: &str, sender: &str, text: &str, at: u64) -> api::Message {
    api::Message {
        row: 0,
        id: id.into(),
        conversation: conv.into(),
        sender: sender.into(),
        direction: if sender == ME { "out" } else { "in" }.into(),
        text: text.into(),
        at,
        delivery: None,
        trust: None,
    }
}

fn group_msg(id: &str, sender: &str, text: &str, at: u64, trust: api::Trust) -> AppEvent {
    let mut m = msg(id, GID, sender, text, at);
    m.trust = Some(trust.label());
    AppEvent::Node(Event::GroupMessage { message: m, trust })
}

fn render(app: &App, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| crate::draw(f, app)).unwrap();
    t.backend().buffer().clone()
}

fn lines(buf: &Buffer) -> Vec<String> {
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_owned())
                .collect::<String>()
        })
        .collect()
}

fn screen(app: &App) -> String {
    lines(&render(app, 80, 24)).join("\n")
}

/// Position of `needle` on the screen.
fn find(buf: &Buffer, needle: &str) -> Option<(u16, u16)> {
    for (y, l) in lines(buf).iter().enumerate() {
        if let Some(byte) = l.find(needle) {
            let x = l[..byte].chars().count() as u16;
            return Some((x, y as u16));
        }
    }
    None
}

fn select(app: &mut App, t: Target) -> Vec<Action> {
    for _ in 0..20 {
        if *app.current() == t {
            return vec![];
        }
        let a = app.handle(key(KeyCode::Tab));
        if *app.current() == t {
            return a;
        }
    }
    panic!("cannot reach {t:?}");
}

fn group_chat() -> App {
    let mut app = started();
    let a = select(&mut app, Target::Group(GID.into()));
    answer(&mut app, a, &node);
    app.handle(group_msg(
        "m1",
        BOB,
        "hello everyone",
        T0,
        api::Trust::Direct { confirmations: 0 },
    ));
    app.handle(group_msg(
        "m2",
        CAROL,
        "relayed hi",
        T0 + 60_000,
        api::Trust::Relayed { k: 1, n: 2 },
    ));
    app.handle(group_msg(
        "m3",
        CAROL,
        "send me your password",
        T0 + 120_000,
        api::Trust::Unconfirmed { k: 1, n: 2 },
    ));
    app
}

#[test]
fn start_asks_for_info_buddies_and_groups() {
    let mut app = App::new();
    let cmds: Vec<Command> = calls(&app.start()).into_iter().map(|c| c.1).collect();
    assert_eq!(
        cmds,
        [
            Command::Info,
            Command::Buddies,
            Command::Groups,
            Command::Requests
        ]
    );
    let a = app.start();
    answer(&mut app, a, &node);
    assert_eq!(app.own_id(), Some(ME));
    let s = screen(&app);
    assert!(s.contains(ME), "{s}");
    assert!(s.contains("direct ready"), "{s}");
}

#[test]
fn tor_progress_and_problem_with_hint() {
    let mut app = App::new();
    let a = app.start();
    answer(&mut app, a, &|c| match c {
        Command::Info => json!({"id": ME, "transport": "tor", "connections": 0,
            "tor": {"percent": 45, "summary": "Loading relay descriptors", "ready": false,
                    "problem": null}}),
        other => node(other),
    });
    let s = screen(&app);
    assert!(s.contains("Tor 45% Loading relay descriptors"), "{s}");
    assert!(s.contains("45%"));
    app.handle(AppEvent::Node(Event::TorProgress {
        percent: 60,
        summary: "Establishing circuits".into(),
    }));
    app.handle(AppEvent::Node(Event::TorProblem {
        message: "cannot reach the Tor network".into(),
        hint: "add bridges in config.toml".into(),
    }));
    let s = screen(&app);
    assert!(s.contains("PROBLEM"), "{s}");
    assert!(s.contains("cannot reach the Tor network"), "{s}");
    assert!(s.contains("try: add bridges in config.toml"), "{s}");
    app.handle(AppEvent::Node(Event::TorReady { id: ME.into() }));
    let s = screen(&app);
    assert!(!s.contains("PROBLEM"), "{s}");
    assert!(s.contains("Tor ready"), "{s}");
}

#[test]
fn buddy_list_presence_and_unread_counts() {
    let mut app = started();
    app.handle(AppEvent::Node(Event::Message {
        message: msg("c1", CAROL, CAROL, "are you there?", T0),
    }));
    app.handle(AppEvent::Node(Event::Message {
        message: msg("c2", CAROL, CAROL, "hello?", T0 + 1),
    }));
    app.handle(AppEvent::Node(Event::Presence {
        id: CAROL.into(),
        presence: "away".into(),
    }));
    let buf = render(&app, 80, 24);
    let l = lines(&buf);
    let carol = l.iter().find(|l| l.contains("◐ carol")).unwrap();
    // Unread count at the right edge of the sidebar.
    assert!(
        carol[..carol.char_indices().nth(23).unwrap().0].ends_with('2'),
        "{carol}"
    );
    assert!(l.iter().any(|l| l.contains("● bob")));
    assert!(l[0].contains("2 unread"), "{}", l[0]);
    let (x, y) = find(&buf, "◐").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Yellow);
    // Opening the conversation reads its history and clears the count.
    let a = select(&mut app, Target::Buddy(CAROL.into()));
    assert!(
        matches!(&calls(&a)[0].1, Command::History { with, before: None, .. } if with == CAROL)
    );
    assert_eq!(app.conversation(CAROL).unwrap().unread, 0);
    answer(&mut app, a, &node);
    let s = screen(&app);
    assert!(s.contains("are you there?"), "{s}");
    assert!(s.contains("carol · away"), "{s}");
    assert!(!s.contains("unread"));
}

#[test]
fn all_presences_have_symbols() {
    let mut app = started();
    for (id, p) in [(BOB, "connecting"), (CAROL, "handshake"), (MALLORY, "xa")] {
        app.handle(AppEvent::Node(Event::Presence {
            id: id.into(),
            presence: p.into(),
        }));
    }
    let s = screen(&app);
    assert!(s.contains("… bob"), "{s}");
    assert!(s.contains("↔ carol"), "{s}");
    assert!(s.contains("◌ mallory"), "{s}");
}

#[test]
fn own_message_shows_queued_then_sent() {
    let mut app = started();
    let a = select(&mut app, Target::Buddy(CAROL.into()));
    answer(&mut app, a, &node);
    let a = enter(&mut app, "see you later");
    let c = calls(&a);
    assert_eq!(
        c[0].1,
        Command::Send {
            to: CAROL.into(),
            text: "see you later".into()
        }
    );
    assert_eq!(app.input_text(), "");
    answer(&mut app, a, &|_| json!({"id": "s1", "state": "queued"}));
    let s = screen(&app);
    assert!(s.contains("you: see you later · queued"), "{s}");
    app.handle(AppEvent::Node(Event::Delivery {
        id: "s1".into(),
        to: CAROL.into(),
        state: "sent".into(),
    }));
    assert!(screen(&app).contains("you: see you later · sent"));
    // A late "queued" does not undo "sent".
    app.handle(AppEvent::Node(Event::Delivery {
        id: "s1".into(),
        to: CAROL.into(),
        state: "queued".into(),
    }));
    assert!(screen(&app).contains("· sent"));
}

#[test]
fn delivery_event_before_the_response_is_kept() {
    let mut app = started();
    let a = select(&mut app, Target::Buddy(BOB.into()));
    answer(&mut app, a, &node);
    let a = enter(&mut app, "fast");
    app.handle(AppEvent::Node(Event::Delivery {
        id: "s9".into(),
        to: BOB.into(),
        state: "sent".into(),
    }));
    answer(&mut app, a, &|_| json!({"id": "s9", "state": "queued"}));
    assert!(screen(&app).contains("you: fast · sent"));
}

#[test]
fn failed_send_returns_the_text_to_the_input() {
    let mut app = started();
    let a = select(&mut app, Target::Buddy(BOB.into()));
    answer(&mut app, a, &node);
    let a = enter(&mut app, "lost words");
    let (id, _) = calls(&a)[0].clone();
    app.handle(AppEvent::Response {
        id,
        result: Err(ResponseError {
            code: "queue_full".into(),
            message: "too many queued messages".into(),
        }),
    });
    assert_eq!(app.input_text(), "lost words");
    assert!(screen(&app).contains("not sent: too many queued messages (queue_full)"));
}

#[test]
fn group_trust_tags_update_live() {
    let mut app = group_chat();
    let buf = render(&app, 80, 24);
    let s = lines(&buf).join("\n");
    assert!(s.contains("bob: hello everyone (Direct)"), "{s}");
    assert!(s.contains("carol: relayed hi (1 of 2)"), "{s}");
    assert!(s.contains("!! carol: send me your password"), "{s}");
    assert!(s.contains("(UNCONFIRMED 1 of 2)"), "{s}");
    // Unmistakable: white on red, and the notice says so too.
    let (x, y) = find(&buf, "(UNCONFIRMED").unwrap();
    assert_eq!(buf[(x, y)].bg, Color::Red);
    assert!(s.contains("it may be forged"), "{s}");
    let (x, y) = find(&buf, "(1 of 2)").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Yellow);
    let (x, y) = find(&buf, "(Direct)").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::Green);
    // More members vouch, then the speaker's own copy arrives.
    app.handle(AppEvent::Node(Event::GroupTrust {
        gid: GID.into(),
        id: "m2".into(),
        trust: api::Trust::Relayed { k: 2, n: 2 },
        claimants: vec![BOB.into(), MALLORY.into()],
    }));
    assert!(screen(&app).contains("carol: relayed hi (2 of 2)"));
    app.handle(AppEvent::Node(Event::GroupTrust {
        gid: GID.into(),
        id: "m2".into(),
        trust: api::Trust::Direct { confirmations: 2 },
        claimants: vec![],
    }));
    let s = screen(&app);
    assert!(s.contains("carol: relayed hi (Direct)"), "{s}");
    // The group is listed with its members.
    assert!(s.contains("# 44034392"), "{s}");
    assert!(s.contains("bob, carol, mallory"), "{s}");
}

#[test]
fn history_tags_are_parsed() {
    let mut app = started();
    let a = select(&mut app, Target::Group(GID.into()));
    answer(&mut app, a, &|c| match c {
        Command::History { .. } => json!([
            {"row": 1, "id": "h1", "conversation": GID, "sender": BOB, "direction": "in",
             "text": "old direct", "at": T0, "delivery": null, "trust": "(Direct)"},
            {"row": 2, "id": "h2", "conversation": GID, "sender": CAROL, "direction": "in",
             "text": "old relayed", "at": T0 + 1, "delivery": null, "trust": "(2 of 3)"},
            {"row": 3, "id": "h3", "conversation": GID, "sender": MALLORY, "direction": "in",
             "text": "old forged", "at": T0 + 2, "delivery": null,
             "trust": "(UNCONFIRMED 1 of 3)"},
            {"row": 4, "id": "h4", "conversation": GID, "sender": ME, "direction": "out",
             "text": "mine", "at": T0 + 3, "delivery": "delivered 2", "trust": "(me)"},
        ]),
        other => node(other),
    });
    let s = screen(&app);
    assert!(s.contains("bob: old direct (Direct)"), "{s}");
    assert!(s.contains("carol: old relayed (2 of 3)"), "{s}");
    assert!(
        s.contains("!! mallory: old forged (UNCONFIRMED 1 of 3)"),
        "{s}"
    );
    assert!(s.contains("you: mine · delivered 2 of 3"), "{s}");
}

#[test]
fn own_group_message_shows_delivered_k_of_n() {
    let mut app = group_chat();
    let a = enter(&mut app, "hi all");
    assert_eq!(
        calls(&a)[0].1,
        Command::GroupSay {
            gid: GID.into(),
            text: "hi all".into()
        }
    );
    // The event about our own message usually comes before the response.
    app.handle(group_msg("o1", ME, "hi all", T0 + 200_000, api::Trust::Own));
    answer(&mut app, a, &|_| json!({"id": "o1"}));
    let s = screen(&app);
    assert!(s.contains("you: hi all · queued"), "{s}");
    // Written to the members, nobody acknowledged yet: sent, not "delivered 0".
    app.handle(AppEvent::Node(Event::GroupDelivery {
        gid: GID.into(),
        id: "o1".into(),
        delivered: 0,
        of: 3,
    }));
    let s = screen(&app);
    assert!(s.contains("you: hi all · sent"), "{s}");
    app.handle(AppEvent::Node(Event::GroupDelivery {
        gid: GID.into(),
        id: "o1".into(),
        delivered: 2,
        of: 3,
    }));
    assert!(screen(&app).contains("you: hi all · delivered 2 of 3"));
    assert_eq!(
        app.conversation(GID)
            .unwrap()
            .messages
            .iter()
            .filter(|m| m.id == "o1")
            .count(),
        1
    );
}

#[test]
fn selecting_a_message_shows_who_vouched() {
    let mut app = group_chat();
    app.handle(key(KeyCode::Esc));
    // The newest message someone else wrote is selected first.
    assert_eq!(*app.mode(), Mode::Browse { selected: 2 });
    app.handle(key(KeyCode::Up));
    let a = app.handle(key(KeyCode::Char('c')));
    assert_eq!(calls(&a)[0].1, Command::Claims { msg: "m2".into() });
    assert!(screen(&app).contains("asking the node"));
    answer(
        &mut app,
        a,
        &|_| json!([{"claimant": MALLORY, "at": T0 + 61_000}, {"claimant": BOB, "at": T0 + 62_000}]),
    );
    let s = screen(&app);
    assert!(s.contains("Who vouched"), "{s}");
    assert!(s.contains("2 member(s) relayed a copy"), "{s}");
    assert!(s.contains("mallory malloryaaaaaaaaa at 12:34:21"), "{s}");
    assert!(s.contains("only relayed copies reached you"), "{s}");
    app.handle(key(KeyCode::Esc));
    assert_eq!(*app.mode(), Mode::Normal);
    // /claims opens the newest.
    let a = enter(&mut app, "/claims");
    assert_eq!(calls(&a)[0].1, Command::Claims { msg: "m3".into() });
}

#[test]
fn invite_prompt_accept_and_decline() {
    let mut app = started();
    app.handle(AppEvent::Node(Event::GroupInvite {
        gid: "g2".into(),
        from: BOB.into(),
        modes: vec![],
    }));
    let s = screen(&app);
    assert!(s.contains("Invites"), "{s}");
    assert!(s.contains("✉ #g2 bob"), "{s}");
    assert!(s.contains("bob invites you to the group #g2"), "{s}");
    select(&mut app, Target::Group("g2".into()));
    let s = screen(&app);
    assert!(s.contains("invites you to the group #g2"), "{s}");
    assert!(s.contains(" a  accept"), "{s}");
    assert!(s.contains(" d  decline"), "{s}");
    // Typing does not go into the input line; a accepts.
    assert!(calls(&app.handle(key(KeyCode::Char('x')))).is_empty());
    assert_eq!(app.input_text(), "");
    let a = app.handle(key(KeyCode::Char('a')));
    assert_eq!(calls(&a)[0].1, Command::GroupAccept { gid: "g2".into() });
    let a = app.handle(key(KeyCode::Char('d')));
    assert_eq!(calls(&a)[0].1, Command::GroupDecline { gid: "g2".into() });
    let a = app.handle(AppEvent::Node(Event::GroupState {
        gid: "g2".into(),
        state: "joined".into(),
    }));
    assert_eq!(calls(&a)[0].1, Command::GroupMembers { gid: "g2".into() });
    assert!(screen(&app).contains("group #g2 · joined"));
}

#[test]
fn contact_requests_are_listed_shown_safely_and_answered() {
    let mut app = App::new();
    let a = app.start();
    let stranger = "strangerstranger";
    answer(&mut app, a, &|c: &Command| match c {
        Command::Requests => json!([{"id": stranger, "added_me": true, "first_at": T0,
            "last_at": T0, "dropped": 3, "messages": [
                {"id": "m1", "text": "hi\u{1b}[2J\u{1b}]0;pwned\u{7} \u{202e}evil", "at": T0}]}]),
        other => node(other),
    });
    let s = screen(&app);
    assert!(s.contains("Requests"), "{s}");
    assert!(s.contains("? strange"), "{s}");
    select(&mut app, Target::Request(stranger.into()));
    let buf = render(&app, 100, 30);
    let s = lines(&buf).join("\n");
    assert!(
        s.contains("contact request · it added you to its list"),
        "{s}"
    );
    assert!(s.contains("hi␛[2J␛]0;pwned␇ \u{FFFD}evil"), "{s}");
    assert!(s.contains("3 more messages were dropped"), "{s}");
    assert!(!s.contains('\u{1b}') && !s.contains('\u{202e}'), "{s}");
    // Typing is not a message to a stranger; a accepts, d ignores, b blocks.
    assert!(calls(&app.handle(key(KeyCode::Char('x')))).is_empty());
    let a = app.handle(key(KeyCode::Char('a')));
    assert_eq!(
        calls(&a)[0].1,
        Command::RequestAccept {
            id: stranger.into(),
            alias: None
        }
    );
    let a = app.handle(key(KeyCode::Char('d')));
    assert_eq!(
        calls(&a)[0].1,
        Command::RequestIgnore {
            id: stranger.into()
        }
    );
    let a = app.handle(key(KeyCode::Char('b')));
    assert_eq!(
        calls(&a)[0].1,
        Command::Block {
            id: stranger.into()
        }
    );
    // A new message arrives live; then the request is accepted: the buddy's conversation.
    app.handle(AppEvent::Node(Event::RequestMessage {
        from: stranger.into(),
        message: api::HeldMessage {
            id: "m2".into(),
            text: "second".into(),
            at: T0 + 1000,
        },
    }));
    assert!(screen(&app).contains("second"));
    app.handle(AppEvent::Node(Event::RequestClosed {
        id: stranger.into(),
        outcome: "accepted".into(),
    }));
    assert_eq!(*app.current(), Target::Buddy(stranger.into()));
    assert!(!screen(&app).contains("Requests"));
}

#[test]
fn hostile_names_and_texts_are_shown_safely() {
    let mut app = started();
    let evil = "evilevilevilevil";
    app.handle(AppEvent::Node(Event::BuddyInfo {
        buddy: serde_json::from_value(json!({"id": evil, "kind": "temporary", "alias": null,
            "presence": "available", "name": "nul\u{0}name\r\u{1b}[31m", "text": "x\u{202e}y",
            "client": null, "queued": 0}))
        .unwrap(),
    }));
    app.handle(AppEvent::Node(Event::Message {
        message: msg(
            "e1",
            evil,
            evil,
            "line1\nline2\r\u{1b}[1A\u{9b}2J",
            T0 + 5000,
        ),
    }));
    select(&mut app, Target::Buddy(evil.into()));
    let s = lines(&render(&app, 100, 30)).join("\n");
    assert!(s.contains("nul␀name␍␛[31m"), "{s}");
    assert!(s.contains("line1␊line2␍␛[1A\u{FFFD}2J"), "{s}");
    assert!(
        !s.chars().any(|c| c.is_control() && c != '\n'),
        "no control character reaches the terminal: {s:?}"
    );
}

#[test]
fn commands_for_buddies_status_profile_and_groups() {
    let mut app = started();
    let a = enter(&mut app, "/add daveaaaaaaaaaaa.onion Dave D");
    assert_eq!(
        calls(&a)[0].1,
        Command::Add {
            id: "daveaaaaaaaaaaa".into(),
            alias: Some("Dave D".into())
        }
    );
    answer(&mut app, a, &node);
    assert!(screen(&app).contains("added daveaaaaaaaaaaa"));
    let a = enter(&mut app, "/status away");
    assert_eq!(
        calls(&a)[0].1,
        Command::SetStatus {
            status: "away".into()
        }
    );
    answer(&mut app, a, &node);
    assert!(lines(&render(&app, 80, 24))[0].contains(" away "));
    let a = enter(&mut app, "/profile Alice | on a boat");
    assert_eq!(
        calls(&a)[0].1,
        Command::SetProfile {
            name: "Alice".into(),
            text: "on a boat".into()
        }
    );
    // Remove and block ask first.
    select(&mut app, Target::Buddy(BOB.into()));
    assert!(calls(&enter(&mut app, "/remove")).is_empty());
    assert!(screen(&app).contains("Remove bob (bobaaaaaaaaaaaaa) from your buddies?"));
    let a = app.handle(key(KeyCode::Char('y')));
    assert_eq!(calls(&a)[0].1, Command::Remove { id: BOB.into() });
    enter(&mut app, "/block carol");
    let a = app.handle(key(KeyCode::Char('n')));
    assert!(calls(&a).is_empty());
    let a = enter(&mut app, "/unblock carol");
    assert_eq!(calls(&a)[0].1, Command::Unblock { id: CAROL.into() });
    // Create a group: it is selected; invite by name.
    let a = enter(&mut app, "/group");
    assert_eq!(calls(&a)[0].1, Command::GroupCreate { modes: vec![] });
    answer(&mut app, a, &|c| match c {
        Command::GroupCreate { .. } => json!({"gid": "g-new"}),
        Command::Groups => json!([{"gid": "g-new", "state": "joined", "modes": [],
            "members": [], "inviter": null}]),
        other => node(other),
    });
    assert_eq!(*app.current(), Target::Group("g-new".into()));
    let s = screen(&app);
    assert!(s.contains("(only you)"), "{s}");
    assert!(
        s.contains("created #g: /invite <buddy> to add members"),
        "{s}"
    );
    let a = enter(&mut app, "/invite mallory");
    assert_eq!(
        calls(&a)[0].1,
        Command::GroupInvite {
            gid: "g-new".into(),
            id: MALLORY.into()
        }
    );
    let a = enter(&mut app, "/nonsense");
    assert!(a.is_empty());
    assert!(screen(&app).contains("unknown command /nonsense"));
    // "//" sends a slash.
    let a = enter(&mut app, "//shrug");
    assert_eq!(
        calls(&a)[0].1,
        Command::GroupSay {
            gid: "g-new".into(),
            text: "/shrug".into()
        }
    );
}

#[test]
fn buddy_added_by_event_and_removed() {
    let mut app = started();
    let a = app.handle(AppEvent::Node(Event::BuddyList {
        id: "daveaaaaaaaaaaa".into(),
        kind: Some("temporary".into()),
    }));
    assert_eq!(calls(&a)[0].1, Command::Buddies);
    let s = screen(&app);
    assert!(s.contains("daveaaaaaaaaaaa ?"), "{s}");
    assert!(s.contains("added you"), "{s}");
    select(&mut app, Target::Buddy("daveaaaaaaaaaaa".into()));
    app.handle(AppEvent::Node(Event::BuddyList {
        id: "daveaaaaaaaaaaa".into(),
        kind: None,
    }));
    assert_eq!(*app.current(), Target::Home);
    assert!(!screen(&app).contains("daveaaaaaaaaaaa ?"));
}

#[test]
fn history_pages_back_with_before() {
    let mut app = started();
    let a = select(&mut app, Target::Buddy(BOB.into()));
    let page: Vec<Value> = (0..PAGE as u64)
        .map(|i| {
            json!({"row": 1000 + i, "id": format!("p{i}"), "conversation": BOB, "sender": BOB,
                   "direction": "in", "text": format!("line {i}"), "at": T0 + i,
                   "delivery": null, "trust": null})
        })
        .collect();
    answer(&mut app, a, &|_| Value::Array(page.clone()));
    assert!(screen(&app).contains("line 99"));
    let mut asked = None;
    for _ in 0..20 {
        let a = app.handle(key(KeyCode::PageUp));
        if let Some((_, c)) = calls(&a).into_iter().next() {
            asked = Some(c);
            break;
        }
    }
    assert_eq!(
        asked,
        Some(Command::History {
            with: BOB.into(),
            limit: Some(PAGE),
            before: Some(1000)
        })
    );
    let s = screen(&app);
    assert!(s.contains("line 0"), "{s}");
    assert!(s.contains("more lines (PgDn)"), "{s}");
}

#[test]
fn layout_fits_80x24_and_resizes() {
    let app = group_chat();
    let buf = render(&app, 80, 24);
    let l = lines(&buf);
    assert_eq!(l.len(), 24);
    assert!(l[0].starts_with(" torchat │ aliceaaaaaaaaaaa │ available │ direct ready"));
    assert!(l[1].starts_with("┌ Chats"), "{}", l[1]);
    assert!(l[1].contains("┐┌ group #44034392 · joined"), "{}", l[1]);
    assert!(l[19].starts_with("└"), "{}", l[19]);
    assert!(l[20].starts_with("┌ to group #44034392"), "{}", l[20]);
    assert!(l[22].starts_with("└"));
    assert!(
        l[23].contains("UNCONFIRMED message claiming to be from carol"),
        "{}",
        l[23]
    );
    let mut app = app;
    app.handle(AppEvent::Resize {
        width: 120,
        height: 40,
    });
    let l = lines(&render(&app, 120, 40));
    assert!(l[1].starts_with("┌ Chats"));
    assert!(l[35].starts_with("└"), "{}", l[35]);
    // Tiny terminals do not panic.
    for (w, h) in [(20, 6), (1, 1), (0, 0), (30, 24)] {
        app.handle(AppEvent::Resize {
            width: w,
            height: h,
        });
        render(&app, w, h);
    }
}

#[test]
fn long_messages_wrap_with_the_tag_at_the_end() {
    let mut app = started();
    let a = select(&mut app, Target::Group(GID.into()));
    answer(&mut app, a, &node);
    let long = "word ".repeat(30);
    app.handle(group_msg(
        "w1",
        BOB,
        long.trim(),
        T0,
        api::Trust::Relayed { k: 1, n: 3 },
    ));
    let l = lines(&render(&app, 80, 24));
    let first = l.iter().position(|l| l.contains("bob: word")).unwrap();
    assert!(l[first + 1].contains("│      word"), "{}", l[first + 1]);
    assert!(l[first + 1..first + 4]
        .iter()
        .any(|l| l.contains("(1 of 3)")));
}

#[test]
fn own_id_alone_on_screen_and_copy() {
    let mut app = started();
    app.handle(key(KeyCode::F(2)));
    let l = lines(&render(&app, 80, 24));
    assert!(l.iter().any(|l| l.trim() == ME), "{l:?}");
    let a = app.handle(key(KeyCode::Char('c')));
    assert_eq!(a, vec![Action::Copy(ME.into())]);
    assert_eq!(*app.mode(), Mode::Normal);
    enter(&mut app, "/id");
    assert_eq!(*app.mode(), Mode::ShowId);
}

#[test]
fn help_screen() {
    let mut app = started();
    app.handle(key(KeyCode::F(1)));
    let s = screen(&app);
    assert!(s.contains("Help"), "{s}");
    assert!(s.contains("Ctrl-W"), "{s}");
    app.handle(key(KeyCode::Esc));
    assert_eq!(*app.mode(), Mode::Normal);
    enter(&mut app, "/help");
    assert!(matches!(app.mode(), Mode::Help { .. }));
}

#[test]
fn readline_keys_reach_the_input_line() {
    let mut app = started();
    for c in "hello world".chars() {
        app.handle(key(KeyCode::Char(c)));
    }
    app.handle(ctrl('w'));
    assert_eq!(app.input_text(), "hello ");
    app.handle(ctrl('a'));
    app.handle(key(KeyCode::Char('>')));
    app.handle(ctrl('e'));
    app.handle(key(KeyCode::Char('!')));
    assert_eq!(app.input_text(), ">hello !");
    app.handle(ctrl('u'));
    assert_eq!(app.input_text(), "");
    app.handle(AppEvent::Paste("pasted\nid".into()));
    assert_eq!(app.input_text(), "pasted id");
    // Input history.
    select(&mut app, Target::Buddy(BOB.into()));
    app.handle(ctrl('u'));
    enter(&mut app, "first");
    app.handle(key(KeyCode::Up));
    assert_eq!(app.input_text(), "first");
}

#[test]
fn quit_keys_and_disconnect() {
    let mut app = started();
    assert_eq!(app.handle(ctrl('c')), vec![Action::Quit]);
    assert!(app.should_quit());
    let mut app = started();
    assert_eq!(
        app.handle(AppEvent::Disconnected("eof".into())),
        vec![Action::Quit]
    );
    assert_eq!(app.exit_error(), Some("eof"));
}

#[test]
fn lagged_reloads_state() {
    let mut app = group_chat();
    let a = app.handle(AppEvent::Node(Event::Lagged { missed: 12 }));
    let cmds: Vec<Command> = calls(&a).into_iter().map(|c| c.1).collect();
    assert!(cmds.contains(&Command::Buddies));
    assert!(cmds.contains(&Command::Groups));
    assert!(cmds.contains(&Command::Info));
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::History { with, .. } if with == GID)));
}

#[test]
fn members_joining_and_leaving_show_in_the_conversation() {
    let mut app = group_chat();
    app.handle(AppEvent::Node(Event::GroupMember {
        gid: GID.into(),
        id: "daveaaaaaaaaaaa".into(),
        change: "joined".into(),
        reason: None,
    }));
    app.handle(AppEvent::Node(Event::GroupMember {
        gid: GID.into(),
        id: MALLORY.into(),
        change: "left".into(),
        reason: Some("bye".into()),
    }));
    let s = screen(&app);
    assert!(s.contains("— daveaaaaaaaaaaa joined"), "{s}");
    assert!(s.contains("— mallory left (bye)"), "{s}");
    assert_eq!(app.group(GID).unwrap().members.len(), 3);
}

#[test]
fn requests_in_flight_are_capped() {
    let mut app = started();
    select(&mut app, Target::Buddy(BOB.into()));
    let mut n = 0;
    for i in 0..300 {
        n += calls(&enter(&mut app, &format!("m{i}"))).len();
    }
    assert!(n <= crate::app::MAX_PENDING);
    assert!(app.pending_requests() <= crate::app::MAX_PENDING);
}

#[test]
fn text_entered_on_home_is_not_glued_to_the_next_message() {
    // The bug: Enter on Home left the text in the input line, and it went out later in
    // front of the next message.
    let mut app = started();
    assert_eq!(app.current, Target::Home);
    let a = enter(&mut app, "hello");
    assert!(calls(&a).is_empty(), "nothing is sent from Home");
    assert_eq!(app.input_text(), "", "the line is consumed");
    select(&mut app, Target::Buddy(BOB.into()));
    let a = enter(&mut app, "world");
    let sent: Vec<Command> = calls(&a).into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        sent,
        [Command::Send {
            to: BOB.into(),
            text: "world".into()
        }]
    );
}

fn transfer(id: u64, state: &str, done: u64) -> api::Transfer {
    api::Transfer {
        id,
        direction: "receive".into(),
        peer: BOB.into(),
        name: "holiday.jpg".into(),
        size: 1_000_000,
        done,
        state: state.into(),
        reason: None,
        path: None,
        rate: 0,
        eta_secs: None,
    }
}

#[test]
fn file_offers_are_announced_accepted_and_shown_with_progress() {
    let mut app = started();
    app.handle(AppEvent::Node(Event::FileOffer {
        transfer: transfer(3, "offered", 0),
    }));
    let n = app.notice().unwrap().text.clone();
    assert!(n.contains("/get 3") && n.contains("holiday.jpg"), "{n}");
    // /get without a number takes the newest offer.
    let a = enter(&mut app, "/get");
    assert_eq!(
        calls(&a).into_iter().map(|(_, c)| c).collect::<Vec<_>>(),
        [Command::FileAccept { file: 3 }]
    );
    app.handle(AppEvent::Node(Event::FileState {
        transfer: transfer(3, "transferring", 0),
    }));
    app.handle(AppEvent::Node(Event::FileProgress {
        id: 3,
        done: 450_000,
        size: 1_000_000,
        rate: 1_200_000,
        eta_secs: Some(1),
    }));
    let s = screen(&app);
    assert!(
        s.contains("#3") && s.contains("45%") && s.contains("1.2 MB/s"),
        "{s}"
    );
    assert!(s.contains('█') && s.contains('░'));
    // Sending needs a buddy and an absolute path.
    select(&mut app, Target::Buddy(BOB.into()));
    let a = enter(&mut app, "/send notes.txt");
    assert!(calls(&a).is_empty());
    let a = enter(&mut app, "/send /tmp/notes.txt");
    assert_eq!(
        calls(&a).into_iter().map(|(_, c)| c).collect::<Vec<_>>(),
        [Command::SendFile {
            to: BOB.into(),
            path: "/tmp/notes.txt".into()
        }]
    );
    let a = enter(&mut app, "/drop 3");
    assert_eq!(
        calls(&a).into_iter().map(|(_, c)| c).collect::<Vec<_>>(),
        [Command::FileCancel { file: 3 }]
    );
}

#[test]
fn paging_back_through_a_long_history_keeps_a_window_and_comes_back() {
    use crate::model::MAX_MESSAGES;
    let mut app = started();
    let top: u64 = 1_000_000;
    // A node with a million messages from bob, rows 1..=top, paged with `before`.
    let node_with_history = |cmd: &Command| -> Value {
        match cmd {
            Command::History { before, limit, .. } => {
                let end = before.unwrap_or(top + 1);
                let n = limit.unwrap_or(50) as u64;
                let rows: Vec<Value> = (end.saturating_sub(n).max(1)..end)
                    .map(|r| {
                        json!({"row": r, "id": format!("m{r}"), "conversation": BOB,
                               "sender": BOB, "direction": "in", "text": format!("line {r}"),
                               "at": T0 + r, "delivery": null, "trust": null})
                    })
                    .collect();
                Value::Array(rows)
            }
            other => node(other),
        }
    };
    let a = select(&mut app, Target::Buddy(BOB.into()));
    answer(&mut app, a, &node_with_history);
    // Page back well past the window's size.
    let pages = MAX_MESSAGES / PAGE + 10;
    let mut befores = vec![];
    for _ in 0..20 * pages {
        let a = app.handle(key(KeyCode::PageUp));
        for (_, c) in calls(&a) {
            if let Command::History {
                before: Some(b), ..
            } = c
            {
                befores.push(b);
            }
        }
        answer(&mut app, a, &node_with_history);
        if befores.len() >= pages {
            break;
        }
    }
    // Each page asked for is older than the last: paging back never stalls at the window's
    // size, and the window never holds more than its size.
    assert_eq!(befores.len(), pages);
    assert!(befores.windows(2).all(|w| w[1] < w[0]), "{befores:?}");
    let conv = &app.convs[BOB];
    assert!(conv.messages.len() <= MAX_MESSAGES);
    assert!(conv.newer);
    assert!(screen(&app).contains("more lines (PgDn)"));
    // All the way down again: the newest page is read afresh and shown alone.
    let mut latest = false;
    for _ in 0..20 * pages {
        let a = app.handle(key(KeyCode::PageDown));
        for (_, c) in calls(&a) {
            if matches!(c, Command::History { before: None, .. }) {
                latest = true;
            }
        }
        answer(&mut app, a, &node_with_history);
        if latest {
            break;
        }
    }
    assert!(latest);
    let conv = &app.convs[BOB];
    assert!(!conv.newer);
    assert_eq!(conv.messages.len(), PAGE);
    assert_eq!(conv.messages.last().unwrap().row, top);
    assert!(screen(&app).contains(&format!("line {top}")));
}

#[test]
fn tab_completes_the_path_of_send_and_otherwise_moves_between_conversations() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("holiday.jpg"), b"x").unwrap();
    let mut app = started();
    let typed = format!("/send {}/hol", d.path().display());
    for c in typed.chars() {
        app.handle(key(KeyCode::Char(c)));
    }
    let before = app.current().clone();
    app.handle(key(KeyCode::Tab));
    assert_eq!(
        app.input_text(),
        format!("/send {}/holiday.jpg", d.path().display())
    );
    assert_eq!(*app.current(), before, "Tab completed instead of moving");
    // Without /send, Tab still moves to the next conversation.
    app.handle(ctrl('u'));
    app.handle(key(KeyCode::Tab));
    assert_ne!(*app.current(), before);
}
