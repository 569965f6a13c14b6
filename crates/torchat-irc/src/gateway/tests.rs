//! Unit tests of the gateway state machine: IRC lines and API events in, lines and commands
//! out, with no I/O.

use std::collections::VecDeque;

use serde_json::{json, Value};
use torchat_api::{Buddy, Command, Event, Message as ApiMessage, Trust};

use super::*;

const ME: &str = "meeeeeeeeeeeeeee";
const BOB: &str = "bobbbbbbbbbbbbbb";
const CAROL: &str = "carolllllllllll2";
const DAVE: &str = "daveeeeeeeeeeeee";
const GID: &str = "44034392-cfdb-48d3-a9bf-30b99fb77918";

struct T {
    gw: Gateway,
    calls: VecDeque<(Tag, Command)>,
    closed: bool,
}

fn buddy(id: &str, name: &str, presence: &str) -> Value {
    json!({"id": id, "kind": "permanent", "alias": null, "presence": presence,
           "name": name, "text": "on a boat", "client": "TorChat 0.9.9", "queued": 0})
}

fn msg(conv: &str, sender: &str, text: &str, id: &str) -> ApiMessage {
    ApiMessage {
        row: 0,
        id: id.into(),
        conversation: conv.into(),
        sender: sender.into(),
        direction: "in".into(),
        text: text.into(),
        at: 0,
        delivery: None,
        trust: None,
    }
}

impl T {
    fn new() -> T {
        T {
            gw: Gateway::new(
                GatewayConfig {
                    password: "sesame".into(),
                },
                NickBook::new(),
            ),
            calls: VecDeque::new(),
            closed: false,
        }
    }

    fn run(&mut self, input: Input) -> Vec<String> {
        let mut out = Vec::new();
        for a in self.gw.handle(input) {
            match a {
                Action::Send(l) => {
                    assert!(l.len() <= proto::MAX_BODY, "too long: {l}");
                    assert!(!l.contains(['\r', '\n', '\0']), "unsafe: {l:?}");
                    out.push(l);
                }
                Action::Call(t, c) => self.calls.push_back((t, c)),
                Action::Close => self.closed = true,
            }
        }
        out
    }

    fn line(&mut self, l: &str) -> Vec<String> {
        self.run(Input::Irc(l.into()))
    }

    fn event(&mut self, e: Event) -> Vec<String> {
        self.run(Input::Event(e))
    }

    /// Answers the oldest call; returns it and the lines that followed.
    fn answer(&mut self, r: Result<Value, (&str, &str)>) -> (Command, Vec<String>) {
        let (tag, cmd) = self.calls.pop_front().expect("a call to answer");
        let r = r.map_err(|(c, m)| ApiFailure {
            code: c.into(),
            message: m.into(),
        });
        (cmd, self.run(Input::Response(tag, r)))
    }

    fn ok(&mut self, v: Value) -> Vec<String> {
        self.answer(Ok(v)).1
    }

    /// Registers as "me" with bob (online) and carol (offline) as buddies and `groups`.
    fn registered(groups: Value) -> (T, Vec<String>) {
        let mut t = T::new();
        let mut all = t.line("PASS sesame");
        all.extend(t.line("NICK me"));
        all.extend(t.line("USER me 0 * :Me Myself"));
        assert!(t.gw.registered());
        let cmds: Vec<Command> = t.calls.iter().map(|(_, c)| c.clone()).collect();
        assert_eq!(
            cmds,
            vec![
                Command::Subscribe,
                Command::Info,
                Command::Buddies,
                Command::Groups
            ]
        );
        all.extend(t.ok(json!({})));
        all.extend(t.ok(json!({"id": ME, "transport": "direct"})));
        all.extend(t.ok(json!([
            buddy(BOB, "bob", "available"),
            buddy(CAROL, "Carol C.", "offline")
        ])));
        all.extend(t.ok(groups));
        (t, all)
    }
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

fn find<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in {lines:#?}"))
}

#[test]
fn refuses_without_or_with_a_wrong_password() {
    let mut t = T::new();
    assert!(t.line("NICK me").is_empty());
    let out = t.line("USER me 0 * :x");
    assert!(
        out[0].starts_with(":irc.torchat 464 me :Password required"),
        "{out:?}"
    );
    assert!(out[1].starts_with("ERROR :"));
    assert!(t.closed && t.gw.auth_failed() && !t.gw.registered());
    assert!(t.calls.is_empty());
    // Nothing more happens after the close.
    assert!(t.line("PRIVMSG x :y").is_empty());

    let mut t = T::new();
    t.line("PASS wrong");
    t.line("NICK me");
    let out = t.line("USER me 0 * :x");
    assert!(has(&out, " 464 me :Password incorrect"));
    assert!(t.closed && t.calls.is_empty());

    // Commands before registration.
    let mut t = T::new();
    assert!(has(
        &t.line("PRIVMSG bob :hi"),
        " 451 * :You have not registered"
    ));
    assert!(has(
        &t.line("PING :abc"),
        ":irc.torchat PONG irc.torchat :abc"
    ));

    // A password with spaces, with or without the colon.
    for pass in ["PASS open sesame", "PASS :open sesame"] {
        let mut t = T {
            gw: Gateway::new(
                GatewayConfig {
                    password: "open sesame".into(),
                },
                NickBook::new(),
            ),
            calls: VecDeque::new(),
            closed: false,
        };
        t.line(pass);
        t.line("NICK me");
        assert!(has(&t.line("USER me 0 * :x"), " 001 me :Welcome"), "{pass}");
    }
}

#[test]
fn cap_negotiation_holds_registration_until_end() {
    let mut t = T::new();
    assert_eq!(t.line("CAP LS 302"), vec![":irc.torchat CAP * LS :"]);
    t.line("PASS sesame");
    t.line("NICK me");
    assert!(t.line("USER me 0 * :x").is_empty());
    assert_eq!(
        t.line("CAP REQ :multi-prefix sasl"),
        vec![":irc.torchat CAP me NAK :multi-prefix sasl"]
    );
    let out = t.line("CAP END");
    assert!(t.gw.registered());
    for n in ["001", "002", "003", "004", "005", "375", "372", "376"] {
        assert!(has(&out, &format!(":irc.torchat {n} me ")), "{n}: {out:#?}");
    }
    assert!(has(&out, "CHANTYPES=#&"));
    assert!(has(&out, "PREFIX=(ov)@+"));
}

#[test]
fn registration_joins_the_control_channel_with_buddies() {
    let (t, out) = T::registered(json!([]));
    let join = out
        .iter()
        .position(|l| l == ":me!me@localhost JOIN &torchat");
    assert!(join.is_some(), "{out:#?}");
    let names = find(&out, " 353 me = &torchat :");
    assert!(names.ends_with(":@torchat @me +bob Carol_C"), "{names}");
    assert!(has(&out, " 366 me &torchat :End of /NAMES list."));
    assert!(has(&out, &format!("Welcome! You are {ME}.")));
    assert_eq!(t.gw.book().id("carol_c"), Some(CAROL));
}

#[test]
fn private_messages_both_ways() {
    let (mut t, _) = T::registered(json!([]));
    // In: plain, multi-line and /me.
    let out = t.event(Event::Message {
        message: msg(BOB, BOB, "hello\r\nsecond line", "m1"),
    });
    assert_eq!(
        out,
        vec![
            format!(":bob!tc@{BOB}.onion PRIVMSG me :hello"),
            format!(":bob!tc@{BOB}.onion PRIVMSG me :second line"),
        ]
    );
    let out = t.event(Event::Message {
        message: msg(BOB, BOB, "/me waves \x01VERSION\x01", "m2"),
    });
    assert_eq!(
        out,
        vec![format!(
            ":bob!tc@{BOB}.onion PRIVMSG me :\x01ACTION waves VERSION\x01"
        )]
    );
    // Out: to a nick, to an onion id, as an action.
    assert!(t.line("PRIVMSG bob :hi there").is_empty());
    let (cmd, out) = t.answer(Ok(json!({"id": "a1", "state": "sent"})));
    assert_eq!(
        cmd,
        Command::Send {
            to: BOB.into(),
            text: "hi there".into()
        }
    );
    assert!(out.is_empty());
    t.line("PRIVMSG bob :\x01ACTION smiles\x01");
    let (cmd, _) = t.answer(Ok(json!({"id": "a2", "state": "sent"})));
    assert_eq!(
        cmd,
        Command::Send {
            to: BOB.into(),
            text: "/me smiles".into()
        }
    );
    // Other CTCP (an IRC client's automatic VERSION reply) goes nowhere.
    assert!(t.line("NOTICE bob :\x01VERSION irssi\x01").is_empty());
    assert!(t.line("PRIVMSG bob :\x01VERSION\x01").is_empty());
    assert!(t.calls.is_empty());
    // An onion id as the target; the node says it is not a buddy.
    t.line(&format!("PRIVMSG {}.onion :hey", DAVE.to_uppercase()));
    let (cmd, out) = t.answer(Err(("not_a_buddy", "not a buddy")));
    assert_eq!(
        cmd,
        Command::Send {
            to: DAVE.into(),
            text: "hey".into()
        }
    );
    assert!(has(&out, " 401 me "), "{out:?}");
    // Unknown nicks.
    assert!(has(
        &t.line("PRIVMSG nobody :x"),
        " 401 me nobody :No such nick"
    ));
    assert!(has(&t.line("PRIVMSG bob"), " 412 me :No text to send"));
}

#[test]
fn queued_messages_are_announced_and_their_delivery_too() {
    let (mut t, _) = T::registered(json!([]));
    t.line("PRIVMSG Carol_C :see you later");
    let out = t.ok(json!({"id": "q1", "state": "queued"}));
    assert_eq!(
        out,
        vec![
            ":irc.torchat NOTICE me :message to Carol_C queued: \"see you later\" will be sent when Carol_C is online"
        ]
    );
    // A delivery of something else is not announced.
    assert!(t
        .event(Event::Delivery {
            id: "zz".into(),
            to: CAROL.into(),
            state: "sent".into()
        })
        .is_empty());
    let out = t.event(Event::Delivery {
        id: "q1".into(),
        to: CAROL.into(),
        state: "sent".into(),
    });
    assert_eq!(
        out,
        vec![":irc.torchat NOTICE me :queued message to Carol_C was sent: \"see you later\""]
    );
}

#[test]
fn presence_is_voice_and_whois_shows_state() {
    let (mut t, _) = T::registered(json!([{"gid": GID, "state": "joined", "modes": [],
        "members": [BOB, CAROL], "inviter": null}]));
    let out = t.event(Event::Presence {
        id: CAROL.into(),
        presence: "away".into(),
    });
    assert_eq!(
        out,
        vec![
            ":irc.torchat MODE &torchat +v Carol_C",
            ":irc.torchat MODE #44034392 +v Carol_C"
        ]
    );
    // away → xa: still online, no mode change.
    assert!(t
        .event(Event::Presence {
            id: CAROL.into(),
            presence: "xa".into()
        })
        .is_empty());
    let out = t.line("WHOIS carol_c");
    assert!(has(
        &out,
        &format!(" 311 me Carol_C tc {CAROL}.onion * :Carol C.")
    ));
    assert!(has(&out, " 301 me Carol_C :extended away (xa)"));
    assert!(has(&out, &format!(" 320 me Carol_C :is {CAROL}, xa")));
    assert!(has(&out, " 320 me Carol_C :profile: on a boat"));
    assert!(has(&out, " 319 me Carol_C :+&torchat +#44034392"));
    assert!(has(&out, " 318 me carol_c :End of /WHOIS list."));
    // Messages to an away buddy get RPL_AWAY.
    t.line("PRIVMSG Carol_C :x");
    assert!(has(
        &t.ok(json!({"id": "x", "state": "sent"})),
        " 301 me Carol_C :extended away (xa)"
    ));
    let out = t.event(Event::Presence {
        id: BOB.into(),
        presence: "offline".into(),
    });
    assert_eq!(
        out,
        vec![
            ":irc.torchat MODE &torchat -v bob",
            ":irc.torchat MODE #44034392 -v bob"
        ]
    );
    let out = t.line("WHO #44034392");
    assert!(has(
        &out,
        " 352 me #44034392 me localhost irc.torchat me H+ :0 Me Myself"
    ));
    assert!(has(
        &out,
        &format!(" 352 me #44034392 tc {BOB}.onion irc.torchat bob G :0 bob")
    ));
    assert!(has(&out, " 315 me #44034392 :End of /WHO list."));
    assert!(has(&t.line("WHOIS nobody"), " 401 me nobody :No such nick"));
    assert_eq!(
        t.line("ISON bob Carol_C x"),
        vec![":irc.torchat 303 me :Carol_C"]
    );
}

#[test]
fn buddy_list_changes_and_renames() {
    let (mut t, _) = T::registered(json!([]));
    // A new buddy appears (added elsewhere), first with an id-based nick.
    let out = t.event(Event::BuddyList {
        id: DAVE.into(),
        kind: Some("permanent".into()),
    });
    assert_eq!(
        out,
        vec![format!(":daveeeeeee!tc@{DAVE}.onion JOIN &torchat")]
    );
    // Its profile name arrives: renamed once.
    let mut b: Buddy = serde_json::from_value(buddy(DAVE, "bob", "available")).unwrap();
    let out = t.event(Event::BuddyInfo { buddy: b.clone() });
    assert_eq!(
        out,
        vec![
            format!(":daveeeeeee!tc@{DAVE}.onion NICK :bob2"),
            ":irc.torchat MODE &torchat +v bob2".to_owned()
        ]
    );
    // A later profile name change does not rename.
    b.name = Some("alice".into());
    assert!(t.event(Event::BuddyInfo { buddy: b }).is_empty());
    // add with an alias renames.
    t.line(&format!("PRIVMSG &torchat :add {DAVE} Dave The Rave"));
    let (cmd, out) = t.answer(Ok(json!({"id": DAVE})));
    assert_eq!(
        cmd,
        Command::Add {
            id: DAVE.into(),
            alias: Some("Dave The Rave".into())
        }
    );
    assert_eq!(out[0], format!(":bob2!tc@{DAVE}.onion NICK :Dave_The_Rave"));
    assert!(has(&out, &format!("added {DAVE} as Dave_The_Rave")));
    // Our own nick cannot take a buddy's.
    assert!(has(&t.line("NICK BOB"), " 433 me BOB :"));
    assert!(has(&t.line("NICK torchat"), " 433 me torchat :"));
    assert!(has(&t.line("NICK 9x"), " 432 me 9x :"));
    assert_eq!(t.line("NICK mee"), vec![":me!me@localhost NICK :mee"]);
    // Blocked: leaves &torchat; removed likewise.
    let out = t.event(Event::BuddyList {
        id: DAVE.into(),
        kind: Some("blocked".into()),
    });
    assert_eq!(
        out,
        vec![format!(
            ":Dave_The_Rave!tc@{DAVE}.onion PART &torchat :blocked"
        )]
    );
    let out = t.event(Event::BuddyList {
        id: BOB.into(),
        kind: None,
    });
    assert_eq!(
        out,
        vec![format!(
            ":bob!tc@{BOB}.onion PART &torchat :removed from the buddy list"
        )]
    );
    // The nick stays reserved for that id.
    assert_eq!(t.gw.book().id("bob"), Some(BOB));

    // The node's event for an add may come before its answer: the alias is used at once.
    let eve = "eveeeeeeeeeeeeee";
    t.line(&format!("PRIVMSG &torchat :add {eve} eve"));
    let out = t.event(Event::BuddyList {
        id: eve.into(),
        kind: Some("permanent".into()),
    });
    assert_eq!(out, vec![format!(":eve!tc@{eve}.onion JOIN &torchat")]);
    let out = t.ok(json!({"id": eve}));
    assert_eq!(
        out,
        vec![format!(
            ":torchat!torchat@irc.torchat PRIVMSG &torchat :added {eve} as eve"
        )]
    );
}

#[test]
fn group_invite_join_messages_trust_and_part() {
    let (mut t, _) = T::registered(json!([]));
    let out = t.event(Event::GroupInvite {
        gid: GID.into(),
        from: BOB.into(),
        modes: vec![],
    });
    assert_eq!(out[0], format!(":bob!tc@{BOB}.onion INVITE me :#44034392"));
    assert!(has(&out, "bob invites you to the group #44034392"));
    // JOIN accepts; the channel is shown with the members.
    assert!(t.line("JOIN #44034392").is_empty());
    let (cmd, out) = t.answer(Ok(json!({})));
    assert_eq!(cmd, Command::GroupAccept { gid: GID.into() });
    assert!(out.is_empty());
    t.event(Event::GroupState {
        gid: GID.into(),
        state: "joining".into(),
    });
    let (cmd, out) = t.answer(Ok(json!({"gid": GID, "state": "joining", "modes": [],
        "members": [BOB, CAROL], "inviter": BOB})));
    assert_eq!(cmd, Command::GroupMembers { gid: GID.into() });
    assert!(t.calls.is_empty(), "one show only");
    assert_eq!(out[0], ":me!me@localhost JOIN #44034392");
    assert!(has(&out, " 332 me #44034392 :torchat group 44034392-"));
    assert!(find(&out, " 353 me = #44034392 :").ends_with(":+me +bob Carol_C"));
    // Saying something while joining is refused politely.
    assert!(has(
        &t.line("PRIVMSG #44034392 :early"),
        " 404 me #44034392 :"
    ));
    let out = t.event(Event::GroupState {
        gid: GID.into(),
        state: "joined".into(),
    });
    assert_eq!(
        out,
        vec![":irc.torchat NOTICE #44034392 :you are now a member of the group (2 other members)"]
    );
    // Messages carry their trust tag.
    let m = |text: &str, id: &str, trust| Event::GroupMessage {
        message: msg(GID, CAROL, text, id),
        trust,
    };
    let out = t.event(m("relayed hi", "g1", Trust::Relayed { k: 1, n: 2 }));
    assert_eq!(
        out,
        vec![format!(
            ":Carol_C!tc@{CAROL}.onion PRIVMSG #44034392 :(1 of 2) relayed hi"
        )]
    );
    let out = t.event(m(
        "forged?\nline two",
        "g2",
        Trust::Unconfirmed { k: 1, n: 3 },
    ));
    assert_eq!(
        out,
        vec![
            format!(":Carol_C!tc@{CAROL}.onion PRIVMSG #44034392 :(UNCONFIRMED 1 of 3) forged?"),
            format!(":Carol_C!tc@{CAROL}.onion PRIVMSG #44034392 :(UNCONFIRMED 1 of 3) line two"),
        ]
    );
    let out = t.event(Event::GroupMessage {
        message: msg(GID, BOB, "direct", "g3"),
        trust: Trust::Direct { confirmations: 0 },
    });
    assert_eq!(
        out,
        vec![format!(
            ":bob!tc@{BOB}.onion PRIVMSG #44034392 :(Direct) direct"
        )]
    );
    // Trust changes are announced, once per visible change.
    let tr = |id: &str, trust| Event::GroupTrust {
        gid: GID.into(),
        id: id.into(),
        trust,
        claimants: vec![],
    };
    assert_eq!(
        t.event(tr("g1", Trust::Direct { confirmations: 1 })),
        vec![":irc.torchat NOTICE #44034392 :message \"relayed hi\" from Carol_C is now (Direct)"]
    );
    assert!(t
        .event(tr("g1", Trust::Direct { confirmations: 2 }))
        .is_empty());
    assert_eq!(
        t.event(tr("g2", Trust::Relayed { k: 2, n: 3 })),
        vec![":irc.torchat NOTICE #44034392 :message \"forged?…\" from Carol_C is now (2 of 3)"]
    );
    assert!(has(
        &t.event(tr("ffffffffffff", Trust::Direct { confirmations: 0 })),
        "message ffffffff… (from before this session) is now (Direct)"
    ));
    // Our own line: sent, and its echo from the node is not shown twice.
    assert!(t.line("PRIVMSG #44034392 :hello all").is_empty());
    let own = Event::GroupMessage {
        message: ApiMessage {
            direction: "out".into(),
            ..msg(GID, ME, "hello all", "g4")
        },
        trust: Trust::Own,
    };
    assert!(t.event(own.clone()).is_empty());
    let (cmd, out) = t.answer(Ok(json!({"id": "g4"})));
    assert_eq!(
        cmd,
        Command::GroupSay {
            gid: GID.into(),
            text: "hello all".into()
        }
    );
    assert!(out.is_empty());
    // Said elsewhere (the CLI): shown as ours.
    assert_eq!(
        t.event(own),
        vec![":me!me@localhost PRIVMSG #44034392 :hello all"]
    );
    // Members come and go.
    assert_eq!(
        t.event(Event::GroupMember {
            gid: GID.into(),
            id: DAVE.into(),
            change: "joined".into(),
            reason: None
        }),
        vec![format!(":daveeeeeee!tc@{DAVE}.onion JOIN #44034392")]
    );
    assert_eq!(
        t.event(Event::GroupMember {
            gid: GID.into(),
            id: DAVE.into(),
            change: "left".into(),
            reason: Some("bye".into())
        }),
        vec![format!(":daveeeeeee!tc@{DAVE}.onion PART #44034392 :bye")]
    );
    // PART leaves the group.
    assert!(t.line("PART #44034392 :see you").is_empty());
    let (cmd, out) = t.answer(Ok(json!({})));
    assert_eq!(
        cmd,
        Command::GroupLeave {
            gid: GID.into(),
            reason: Some("see you".into())
        }
    );
    assert_eq!(out, vec![":me!me@localhost PART #44034392 :see you"]);
    assert!(t
        .event(Event::GroupState {
            gid: GID.into(),
            state: "left".into()
        })
        .is_empty());
    assert!(has(&t.line("PRIVMSG #44034392 :x"), " 442 me #44034392 :"));
    assert!(has(
        &t.line("JOIN #nosuch"),
        " 403 me #nosuch :No such channel"
    ));
}

#[test]
fn control_channel_create_and_invite() {
    let (mut t, _) = T::registered(json!([]));
    let out = t.line("PRIVMSG &torchat :help");
    for (c, _, _) in HELP {
        assert!(has(&out, &format!("  {c} ")), "{c}");
    }
    assert!(out
        .iter()
        .all(|l| l.starts_with(":torchat!torchat@irc.torchat PRIVMSG &torchat :")));
    assert_eq!(
        t.line("PRIVMSG &torchat :help status"),
        vec![":torchat!torchat@irc.torchat PRIVMSG &torchat :status available|away|xa: set your presence (/away works too)"]
    );
    // Also in a query with the bot.
    assert!(t.line("PRIVMSG torchat :help add")[0]
        .starts_with(":torchat!torchat@irc.torchat PRIVMSG me :add <id> [alias]"));
    assert!(has(
        &t.line("PRIVMSG &torchat :frobnicate"),
        "unknown command \"frobnicate\""
    ));
    assert!(has(&t.line("PRIVMSG &torchat :add nonsense"), "usage: add"));

    // create #party: the node's "joined" event may come before the answer.
    assert!(t.line("PRIVMSG &torchat :create #party").is_empty());
    assert!(t
        .event(Event::GroupState {
            gid: GID.into(),
            state: "joined".into()
        })
        .is_empty());
    let (cmd, out) = t.answer(Ok(json!({"gid": GID})));
    assert_eq!(cmd, Command::GroupCreate { modes: vec![] });
    assert_eq!(out[0], ":me!me@localhost JOIN #party");
    assert!(find(&out, " 353 me = #party :").ends_with(":+me"));
    assert!(has(&out, &format!("created the group #party ({GID})")));
    assert!(t.calls.is_empty());
    // The name is taken now.
    assert!(has(
        &t.line("PRIVMSG &torchat :create party"),
        "#party is taken"
    ));

    // INVITE: ok, not online, already a member.
    assert!(t.line("INVITE bob #party").is_empty());
    let (cmd, out) = t.answer(Ok(json!({})));
    assert_eq!(
        cmd,
        Command::GroupInvite {
            gid: GID.into(),
            id: BOB.into()
        }
    );
    assert_eq!(out, vec![":irc.torchat 341 me bob #party :Inviting"]);
    t.line("INVITE Carol_C #party");
    let (_, out) = t.answer(Err(("not_online", "not online")));
    assert!(has(&out, "Carol_C must be online"));
    t.line("INVITE bob #party");
    let (_, out) = t.answer(Err(("already_member", "already a member")));
    assert!(has(&out, " 443 me bob #party :is already on channel"));
    t.line("PRIVMSG &torchat :invite bob #party");
    let (_, out) = t.answer(Err(("already_member", "already a member")));
    assert_eq!(
        out,
        vec![":torchat!torchat@irc.torchat PRIVMSG &torchat :cannot invite bob to #party: already a member (already_member)"]
    );
    assert!(has(&t.line("INVITE nobody #party"), " 401 me nobody "));

    // The other commands map to the API.
    let cases: Vec<(&str, Command)> = vec![
        ("remove bob", Command::Remove { id: BOB.into() }),
        ("block Carol_C", Command::Block { id: CAROL.into() }),
        (
            "unblock daveeeeeeeeeeeee",
            Command::Unblock { id: DAVE.into() },
        ),
        (
            "status xa",
            Command::SetStatus {
                status: "xa".into(),
            },
        ),
        (
            "profile \"Me Myself\" on a boat",
            Command::SetProfile {
                name: "Me Myself".into(),
                text: "on a boat".into(),
            },
        ),
        ("buddies", Command::Buddies),
        ("groups", Command::Groups),
        ("id", Command::Info),
        (
            "create noredundancy",
            Command::GroupCreate {
                modes: vec!["noredundancy".into()],
            },
        ),
        ("decline #party", Command::GroupDecline { gid: GID.into() }),
        (
            "history #party 5",
            Command::History {
                with: GID.into(),
                limit: Some(5),
                before: None,
            },
        ),
    ];
    for (line, want) in cases {
        t.line(&format!("PRIVMSG &torchat :{line}"));
        let (tag, cmd) = t.calls.pop_front().expect(line);
        assert_eq!(cmd, want, "{line}");
        // Errors are replied in the channel.
        let out = t.run(Input::Response(
            tag,
            Err(ApiFailure {
                code: "nope".into(),
                message: "refused".into(),
            }),
        ));
        assert!(has(&out, "error: refused (nope)"), "{line}: {out:?}");
    }
}

#[test]
fn control_listings() {
    let (mut t, _) = T::registered(json!([]));
    t.line("PRIVMSG &torchat :buddies");
    let out = t.ok(json!([buddy(BOB, "bob", "available")]));
    assert!(has(
        &out,
        &format!(":bob              available  {BOB} (permanent) name: bob")
    ));
    t.line("PRIVMSG &torchat :groups");
    let out = t.ok(
        json!([{"gid": GID, "state": "invited", "modes": [], "members": [BOB],
        "inviter": BOB}]),
    );
    assert!(has(
        &out,
        &format!(":#44034392        invited  {GID} | members: bob | invited by bob")
    ));
    t.line("PRIVMSG &torchat :history bob");
    let out = t.ok(
        json!([{"row": 1, "id": "x", "conversation": BOB, "sender": BOB,
        "direction": "in", "text": "hi", "at": 1_795_610_000_000u64, "delivery": null,
        "trust": null}, {"row": 2, "id": "y", "conversation": BOB, "sender": ME,
        "direction": "out", "text": "later", "at": 1_795_610_060_000u64, "delivery": "queued",
        "trust": null}]),
    );
    assert!(has(&out, ":[2026-11-25 12:33] <bob> hi"), "{out:?}");
    assert!(has(&out, ":[2026-11-25 12:34] <me> later [queued]"));
    t.line("PRIVMSG &torchat :id");
    let out = t.ok(json!({"id": ME, "transport": "direct", "connections": 2,
        "version": "0.1.0", "tor": {"percent": 100, "summary": "Done"}}));
    assert!(has(
        &out,
        &format!("you are {ME} | transport direct | Tor 100% Done")
    ));
}

#[test]
fn away_mode_topic_list_names() {
    let (mut t, _) = T::registered(
        json!([{"gid": GID, "state": "joined", "modes": ["noredundancy"],
        "members": [BOB], "inviter": null}]),
    );
    t.line("AWAY :lunch");
    let (cmd, out) = t.answer(Ok(json!({})));
    assert_eq!(
        cmd,
        Command::SetStatus {
            status: "away".into()
        }
    );
    assert!(has(&out, " 306 me :"));
    t.line("AWAY");
    assert!(has(&t.ok(json!({})), " 305 me :"));
    assert_eq!(
        t.line("MODE #44034392"),
        vec![":irc.torchat 324 me #44034392 +nt"]
    );
    assert!(has(&t.line("MODE #44034392 b"), " 368 me #44034392 :"));
    assert!(has(&t.line("MODE #44034392 +o bob"), " 482 me #44034392 :"));
    assert!(has(&t.line("MODE me +i"), " 221 me :+"));
    assert!(has(&t.line("TOPIC #44034392"), "(modes: noredundancy)"));
    let out = t.line("LIST");
    assert!(has(&out, " 322 me &torchat 4 :"));
    assert!(has(&out, " 322 me #44034392 2 :[joined] group"));
    assert!(has(
        &t.line("NAMES #44034392"),
        " 353 me = #44034392 :+me +bob"
    ));
    assert!(has(&t.line("BOGUS"), " 421 me BOGUS :Unknown command"));
    assert!(has(&t.line("JOIN 0"), "one by one"));
    // PART and JOIN of the control channel.
    assert_eq!(
        t.line("PART &torchat"),
        vec![":me!me@localhost PART &torchat :bye"]
    );
    assert!(has(&t.line("JOIN &torchat"), " 353 me = &torchat :"));
}

#[test]
fn lagged_resyncs_and_node_loss_closes() {
    let (mut t, _) = T::registered(json!([]));
    let out = t.event(Event::Lagged { missed: 7 });
    assert!(has(&out, "missed 7 events"));
    // Bob is gone in the fresh list; dave is new.
    let out = t.ok(json!([
        buddy(CAROL, "Carol C.", "offline"),
        buddy(DAVE, "dave", "available")
    ]));
    assert!(has(&out, &format!(":dave!tc@{DAVE}.onion JOIN &torchat")));
    assert!(has(&out, ":irc.torchat MODE &torchat +v dave"));
    assert!(has(&out, &format!(":bob!tc@{BOB}.onion PART &torchat")));
    t.ok(json!([]));
    let out = t.run(Input::NodeLost("eof".into()));
    assert!(has(&out, "lost the connection to the torchat node: eof"));
    assert!(t.closed);
}

#[test]
fn protocol_odds_and_ends() {
    let (mut t, _) = T::registered(json!([]));
    assert!(has(&t.run(Input::LineTooLong), " 417 me :"));
    let long = format!("PRIVMSG bob :{}", "x".repeat(600));
    assert!(has(&t.line(&long), " 417 me :"));
    assert!(t.calls.is_empty());
    assert_eq!(t.line("PING :x"), vec![":irc.torchat PONG irc.torchat :x"]);
    assert!(has(&t.line("PASS again"), " 462 me :"));
    // A very long incoming message is split, each piece within bounds and tagged.
    let text = "word ".repeat(400);
    let out = t.event(Event::GroupMessage {
        message: msg(GID, BOB, &text, "long"),
        trust: Trust::Relayed { k: 2, n: 3 },
    });
    assert!(out.len() >= 4);
    assert!(out
        .iter()
        .all(|l| l.contains(" PRIVMSG #44034392 :(2 of 3) ")));
    let out = t.line("QUIT :bye");
    assert!(out[0].starts_with("ERROR :Closing link"));
    assert!(t.closed);
}

#[test]
fn never_panics_on_garbage() {
    let (mut t, _) = T::registered(json!([{"gid": GID, "state": "joined", "modes": [],
        "members": [BOB], "inviter": null}]));
    let words = [
        "PRIVMSG",
        "NOTICE",
        "JOIN",
        "PART",
        "INVITE",
        "MODE",
        "WHO",
        "WHOIS",
        "NICK",
        "USER",
        "PASS",
        "CAP",
        "TOPIC",
        "LIST",
        "NAMES",
        "ISON",
        "USERHOST",
        "AWAY",
        "PING",
        "KICK",
        "&torchat",
        "#44034392",
        "#",
        "&",
        "bob",
        "torchat",
        ":",
        "::",
        ":help",
        ":create",
        ":add",
        ":\x01ACTION",
        "\x01",
        "é",
        "",
        " ",
        ",",
        "#,#",
        "0",
        ":\"",
        "*",
        "@x=y",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..5000 {
        let n = (next() % 6) as usize;
        let line: Vec<&str> = (0..n)
            .map(|_| words[(next() % words.len() as u64) as usize])
            .collect();
        t.line(&line.join(" "));
        // Answer whatever was asked, alternately with success and failure.
        while let Some((tag, _)) = t.calls.pop_front() {
            let r = if next() % 2 == 0 {
                Ok(json!({}))
            } else {
                Err(ApiFailure {
                    code: "x".into(),
                    message: "y".into(),
                })
            };
            t.run(Input::Response(tag, r));
        }
        if t.closed {
            break;
        }
    }
    // Odd events too.
    for e in [
        Event::GroupTrust {
            gid: "nope".into(),
            id: "".into(),
            trust: Trust::Own,
            claimants: vec![],
        },
        Event::GroupMember {
            gid: "nope".into(),
            id: "".into(),
            change: "weird".into(),
            reason: None,
        },
        Event::Message {
            message: msg("", "", "", ""),
        },
        Event::GroupMessage {
            message: msg("", "", "\n\n\r\r", ""),
            trust: Trust::Unconfirmed { k: 0, n: 0 },
        },
    ] {
        t.event(e);
    }
}

#[test]
fn file_offers_are_announced_with_how_to_accept() {
    let (mut t, _) = T::registered(json!([buddy(BOB, "bob", "available")]));
    let tr = torchat_api::Transfer {
        id: 3,
        direction: "receive".into(),
        peer: BOB.into(),
        name: "holiday.jpg".into(),
        size: 2_400_000,
        done: 0,
        state: "offered".into(),
        reason: None,
        path: None,
        rate: 0,
        eta_secs: None,
    };
    let out = t.event(Event::FileOffer {
        transfer: tr.clone(),
    });
    assert!(
        has(
            &out,
            "bob offers the file \"holiday.jpg\" (2.4 MB): type getfile 3 in &torchat to accept, dropfile 3 to decline"
        ),
        "{out:?}"
    );
    t.line("PRIVMSG &torchat :getfile 3");
    let (cmd, out) = t.answer(Ok(json!({})));
    assert_eq!(cmd, Command::FileAccept { file: 3 });
    assert!(has(&out, "file 3 accepted"));
    let mut done = tr;
    done.state = "complete".into();
    done.done = done.size;
    done.path = Some("/home/me/Downloads/holiday.jpg".into());
    let out = t.event(Event::FileState { transfer: done });
    assert!(
        has(
            &out,
            "file 3 from bob: complete 100% of 2.4 MB \"holiday.jpg\" -> /home/me/Downloads/holiday.jpg"
        ),
        "{out:?}"
    );
    t.line("PRIVMSG &torchat :sendfile bob /tmp/x.bin");
    let (cmd, _) = t.answer(Ok(json!({})));
    assert_eq!(
        cmd,
        Command::SendFile {
            to: BOB.into(),
            path: "/tmp/x.bin".into()
        }
    );
}

#[test]
fn contact_requests_are_announced_listed_and_answered() {
    let (mut t, _) = T::registered(json!([]));
    t.line("JOIN &torchat");
    let stranger = "strangerstranger";
    let out = t.event(Event::Request {
        id: stranger.into(),
        added_me: true,
        messages: 0,
        dropped: 0,
    });
    assert!(
        out.iter()
            .any(|l| l.contains(&format!("contact request: {stranger} added you"))),
        "{out:?}"
    );
    let out = t.event(Event::RequestMessage {
        from: stranger.into(),
        message: torchat_api::HeldMessage {
            id: "m1".into(),
            text: "hi\r\nthere \u{1b}[2J\u{3}4red\u{202e}x".into(),
            at: 0,
        },
    });
    let l = out.join("\n");
    assert!(l.contains("hi  there ␛[2J␃4red\u{FFFD}x"), "{l}");
    assert!(!l.contains(['\u{1b}', '\u{3}', '\u{202e}']), "{l:?}");
    // requests lists them; accept <id> and ignore <id> answer them.
    t.line("PRIVMSG &torchat :requests");
    let (cmd, out) = t.answer(Ok(json!([{"id": stranger, "added_me": true, "first_at": 0,
        "last_at": 0, "dropped": 2, "messages": [{"id": "m1", "text": "hello", "at": 0}]}])));
    assert_eq!(cmd, Command::Requests);
    let l = out.join("\n");
    assert!(l.contains("2 messages dropped"), "{l}");
    assert!(l.contains("hello"), "{l}");
    t.line(&format!("PRIVMSG &torchat :accept {stranger}"));
    let (cmd, out) = t.answer(Ok(json!({"id": stranger})));
    assert_eq!(
        cmd,
        Command::RequestAccept {
            id: stranger.into(),
            alias: None
        }
    );
    assert!(out.join("\n").contains("a buddy now"));
    t.line(&format!("PRIVMSG &torchat :ignore {stranger}"));
    let (cmd, _) = t.answer(Err(("no_such_request", "no contact request from that id")));
    assert_eq!(
        cmd,
        Command::RequestIgnore {
            id: stranger.into()
        }
    );
    // accept #chan is still an invite.
    t.line("PRIVMSG &torchat :accept #nochan");
    assert!(t.calls.is_empty());
}

#[test]
fn hostile_texts_cannot_restyle_or_reorder_irc_lines() {
    let (mut t, _) = T::registered(json!([]));
    let out = t.event(Event::Message {
        message: msg(
            BOB,
            BOB,
            "a\u{1b}]0;title\u{7}b\u{2}bold\u{f}\u{202e}c\u{9b}",
            "m9",
        ),
    });
    assert_eq!(out.len(), 1);
    assert!(
        !out[0]
            .chars()
            .any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
        "{:?}",
        out[0]
    );
    assert!(
        out[0].ends_with(":a␛]0;title␇b␂bold␏\u{FFFD}c\u{FFFD}"),
        "{}",
        out[0]
    );
}
