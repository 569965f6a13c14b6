//! The IRC side: registration and the commands an IRC client sends.

use super::*;

impl Gateway {
    // ----- registration -----

    pub(super) fn on_line(&mut self, line: &str) {
        let msg = match proto::parse(line) {
            Ok(m) => m,
            Err(ParseError::Empty) => return,
            Err(ParseError::TooLong) => {
                return self.num("417", &[], "Input line was too long");
            }
        };
        let cmd = msg.command.as_str();
        match cmd {
            "PASS" => {
                if self.registered {
                    self.num("462", &[], "You may not reregister");
                } else if !msg.params.is_empty() {
                    // Clients send `PASS a b` for a password with spaces as often as `PASS :a b`.
                    self.pass = Some(msg.params.join(" "));
                } else {
                    self.num("461", &["PASS"], "Not enough parameters");
                }
            }
            "NICK" => self.on_nick(&msg),
            "USER" => {
                if self.registered {
                    self.num("462", &[], "You may not reregister");
                } else if msg.params.len() < 4 {
                    self.num("461", &["USER"], "Not enough parameters");
                } else {
                    let u: String = msg.params[0]
                        .chars()
                        .filter(char::is_ascii_alphanumeric)
                        .take(10)
                        .collect();
                    self.user = if u.is_empty() { "user".into() } else { u };
                    self.realname = proto::truncate(&msg.params[3], 100).to_owned();
                    self.got_user = true;
                    self.try_register();
                }
            }
            "CAP" => self.on_cap(&msg),
            "PING" => {
                let token = msg.param(0).unwrap_or("").to_owned();
                self.send(build(SERVER, "PONG", &[SERVER], Some(&token)));
            }
            "PONG" => {}
            "QUIT" => self.close("quit"),
            _ if !self.registered => self.num("451", &[], "You have not registered"),
            "PRIVMSG" | "NOTICE" => self.on_privmsg(&msg, cmd == "NOTICE"),
            "JOIN" => self.on_join(&msg),
            "PART" => self.on_part(&msg),
            "INVITE" => match (msg.param(0), msg.param(1)) {
                (Some(n), Some(c)) => {
                    let (n, c) = (n.to_owned(), c.to_owned());
                    self.invite(&n, &c, None);
                }
                _ => self.num("461", &["INVITE"], "Not enough parameters"),
            },
            "NAMES" => {
                let chans = msg.param(0).unwrap_or(CONTROL).to_owned();
                for c in chans.split(',').take(MAX_TARGETS) {
                    self.names_of(c);
                }
            }
            "WHO" => self.on_who(msg.param(0).unwrap_or("*")),
            "WHOIS" => {
                let t = msg.params.last().cloned().unwrap_or_default();
                match t.split(',').next().filter(|s| !s.is_empty()) {
                    Some(n) => self.on_whois(n),
                    None => self.num("431", &[], "No nickname given"),
                }
            }
            "MODE" => self.on_mode(&msg),
            "TOPIC" => self.on_topic(&msg),
            "AWAY" => {
                let away = msg.param(0).is_some_and(|s| !s.is_empty());
                let status = if away { "away" } else { "available" };
                self.call(
                    Kind::Away { away },
                    Command::SetStatus {
                        status: status.into(),
                    },
                );
            }
            "LIST" => self.on_list(),
            "ISON" => {
                let mut on = Vec::new();
                for n in msg.params.iter().flat_map(|p| p.split(' ')) {
                    if n.eq_ignore_ascii_case(BOT) || n.eq_ignore_ascii_case(self.me_nick()) {
                        on.push(n.to_owned());
                    } else if let Some(id) = self.book.id(n) {
                        if self.is_online(id) {
                            on.push(n.to_owned());
                        }
                    }
                }
                self.num("303", &[], &on.join(" "));
            }
            "USERHOST" => {
                let mut rs = Vec::new();
                for n in msg.params.iter().take(5) {
                    if let Some(id) = self.book.id(n).map(str::to_owned) {
                        let away = matches!(
                            self.presence.get(&id).map(String::as_str),
                            Some("away" | "xa")
                        );
                        let nick = self.nick_of(&id);
                        rs.push(format!(
                            "{nick}={}tc@{id}.onion",
                            if away { '-' } else { '+' }
                        ));
                    } else if n.eq_ignore_ascii_case(self.me_nick()) {
                        rs.push(format!("{}=+{}@localhost", self.me_nick(), self.user));
                    }
                }
                self.num("302", &[], &rs.join(" "));
            }
            "MOTD" => self.motd(),
            "VERSION" => {
                let v = format!("torchat-irc-{}", env!("CARGO_PKG_VERSION"));
                self.num("351", &[&v, SERVER], "torchat IRC gateway");
            }
            "KICK" | "KILL" | "OPER" | "SQUIT" | "CONNECT" => {
                self.num("481", &[], "Permission Denied: not on a torchat gateway")
            }
            "USERS" | "SUMMON" => self.num("446", &[], "USERS has been disabled"),
            _ => self.num("421", &[cmd], "Unknown command"),
        }
    }

    pub(super) fn on_nick(&mut self, msg: &proto::Message) {
        let Some(n) = msg.param(0).filter(|s| !s.is_empty()).map(str::to_owned) else {
            return self.num("431", &[], "No nickname given");
        };
        if !names::valid_nick(&n) {
            return self.num("432", &[&n], "Erroneous nickname");
        }
        let current = self
            .nick
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(&n));
        if !current && (n.eq_ignore_ascii_case(BOT) || self.book.id(&n).is_some()) {
            return self.num("433", &[&n], "Nickname is already in use (by a buddy)");
        }
        if self.registered {
            if self.nick.as_deref() == Some(n.as_str()) {
                return;
            }
            let prefix = self.my_prefix();
            self.send(build(&prefix, "NICK", &[], Some(&n)));
            self.nick = Some(n);
        } else {
            self.nick = Some(n);
            self.try_register();
        }
    }

    pub(super) fn on_cap(&mut self, msg: &proto::Message) {
        let sub = msg.param(0).unwrap_or("").to_ascii_uppercase();
        let me = self.me_nick().to_owned();
        match sub.as_str() {
            "LS" => {
                if !self.registered {
                    self.cap = true;
                }
                self.send(build(SERVER, "CAP", &[&me, "LS"], Some("")));
            }
            "LIST" => self.send(build(SERVER, "CAP", &[&me, "LIST"], Some(""))),
            "REQ" => {
                let req = msg.param(1).unwrap_or("").to_owned();
                self.send(build(SERVER, "CAP", &[&me, "NAK"], Some(&req)));
            }
            "END" => {
                self.cap = false;
                self.try_register();
            }
            _ => self.num("410", &[&sub], "Invalid CAP command"),
        }
    }

    pub(super) fn try_register(&mut self) {
        if self.registered || self.cap || self.nick.is_none() || !self.got_user {
            return;
        }
        let ok = self
            .pass
            .as_deref()
            .is_some_and(|p| same_secret(p, &self.password));
        if !ok {
            self.auth_failed = true;
            let why = if self.pass.is_some() {
                "Password incorrect"
            } else {
                "Password required: set this server's password in your IRC client (PASS)"
            };
            self.num("464", &[], why);
            return self.close("bad password");
        }
        self.registered = true;
        let me = self.me_nick().to_owned();
        let v = format!("torchat-irc-{}", env!("CARGO_PKG_VERSION"));
        self.num(
            "001",
            &[],
            &format!("Welcome to torchat through IRC, {me}. Type help in {CONTROL}."),
        );
        self.num("002", &[], &format!("Your host is {SERVER}, running {v}"));
        self.num(
            "003",
            &[],
            "This server was created when the gateway started",
        );
        self.send(build(
            SERVER,
            "004",
            &[&me, SERVER, &v, "i", "bntov", "bov"],
            None,
        ));
        self.send(build(
            SERVER,
            "005",
            &[
                &me,
                "AWAYLEN=200",
                "CASEMAPPING=ascii",
                "CHANLIMIT=#&:1000",
                "CHANMODES=b,,,nt",
                &format!("CHANNELLEN={}", names::CHANNELLEN),
                "CHANTYPES=#&",
                "NETWORK=torchat",
                &format!("NICKLEN={}", names::NICKLEN),
                "PREFIX=(ov)@+",
                &format!("MAXTARGETS={MAX_TARGETS}"),
            ],
            Some("are supported by this server"),
        ));
        self.motd();
        self.call(Kind::Subscribe, Command::Subscribe);
        self.call(Kind::Info, Command::Info);
        self.call(Kind::Buddies { resync: false }, Command::Buddies);
        self.call(Kind::Groups { resync: false }, Command::Groups);
    }

    pub(super) fn motd(&mut self) {
        self.num("375", &[], &format!("- {SERVER} Message of the day -"));
        for l in [
            "- This is torchat, a TorChat messenger, through IRC.",
            "- Buddies are nicks: /msg <nick> or /msg <onion id> to talk.",
            "- Groups are #channels; each line shows its trust: (Direct), (k of N),",
            "-   (UNCONFIRMED k of N). /join accepts an invite, /part leaves, /invite invites.",
            "- &torchat is the control channel: type help there.",
        ] {
            self.num("372", &[], l);
        }
        self.num("376", &[], "End of /MOTD command.");
    }

    // ----- client commands -----

    pub(super) fn on_privmsg(&mut self, msg: &proto::Message, notice: bool) {
        let cmd = if notice { "NOTICE" } else { "PRIVMSG" };
        let Some(targets) = msg.param(0).filter(|s| !s.is_empty()).map(str::to_owned) else {
            if !notice {
                self.num("411", &[], &format!("No recipient given ({cmd})"));
            }
            return;
        };
        let Some(text) = msg.param(1).filter(|s| !s.is_empty()).map(str::to_owned) else {
            if !notice {
                self.num("412", &[], "No text to send");
            }
            return;
        };
        // CTCP: ACTION becomes TorChat's "/me"; anything else (VERSION, DCC, replies) is
        // not passed on, so the IRC client never tells a buddy anything by itself.
        let text = match text.strip_prefix('\x01') {
            Some(inner) => {
                let inner = inner.trim_end_matches('\x01');
                match inner.strip_prefix("ACTION ") {
                    Some(a) if !notice && !a.trim().is_empty() => format!("/me {a}"),
                    _ => return,
                }
            }
            None if text.contains('\x01') => text.replace('\x01', ""),
            None => text,
        };
        for t in targets.split(',').take(MAX_TARGETS) {
            if t.eq_ignore_ascii_case(CONTROL) || t.eq_ignore_ascii_case(BOT) {
                if !notice {
                    let to = if t.starts_with('&') {
                        ReplyTo::Channel
                    } else {
                        ReplyTo::Query
                    };
                    self.control(&text, to);
                }
            } else if t.starts_with('#') {
                self.say(t, &text);
            } else if let Some(id) = self.resolve(t) {
                if self.me.as_deref() == Some(id.as_str()) {
                    continue;
                }
                self.call(
                    Kind::Send {
                        target: t.to_owned(),
                        id: id.clone(),
                        text: text.clone(),
                    },
                    Command::Send {
                        to: id,
                        text: text.clone(),
                    },
                );
            } else if !notice {
                self.num(
                    "401",
                    &[t],
                    "No such nick (not a buddy; /msg <onion id> works too)",
                );
            }
        }
    }

    pub(super) fn say(&mut self, chan: &str, text: &str) {
        let Some(gid) = self.book.gid(chan).map(str::to_owned) else {
            return self.num("403", &[chan], "No such channel");
        };
        match self.groups.get(&gid).map(|g| g.state.as_str()) {
            Some("joined") => {}
            Some("joining") => {
                return self.num(
                    "404",
                    &[chan],
                    "Cannot send to channel: still joining the group, try again in a moment",
                );
            }
            _ => return self.num("442", &[chan], "You're not on that channel"),
        }
        self.says.push_back((gid.clone(), text.to_owned()));
        while self.says.len() > SAYS {
            self.says.pop_front();
        }
        self.call(
            Kind::Say {
                gid: gid.clone(),
                text: text.to_owned(),
            },
            Command::GroupSay {
                gid,
                text: text.to_owned(),
            },
        );
    }

    pub(super) fn on_join(&mut self, msg: &proto::Message) {
        let Some(chans) = msg.param(0).map(str::to_owned) else {
            return self.num("461", &["JOIN"], "Not enough parameters");
        };
        if chans == "0" {
            return self.notice_me("JOIN 0 would leave every group; /part them one by one");
        }
        for c in chans.split(',').take(MAX_TARGETS) {
            self.join(c);
        }
    }

    pub(super) fn join(&mut self, chan: &str) {
        if chan.eq_ignore_ascii_case(CONTROL) {
            if !self.control_shown {
                self.show_control();
            }
            return;
        }
        let Some(gid) = self.book.gid(chan).map(str::to_owned) else {
            return self.num(
                "403",
                &[chan],
                &format!("No such channel: create a group with 'create {chan}' in {CONTROL}"),
            );
        };
        let state = self.groups.get(&gid).map(|g| g.state.clone());
        match state.as_deref() {
            Some("invited") => self.call(
                Kind::Accept { gid: gid.clone() },
                Command::GroupAccept { gid },
            ),
            Some("joined" | "joining") => self.request_show(&gid),
            _ => self.num("403", &[chan], "No such channel: you are not in that group"),
        }
    }

    pub(super) fn on_part(&mut self, msg: &proto::Message) {
        let Some(chans) = msg.param(0).map(str::to_owned) else {
            return self.num("461", &["PART"], "Not enough parameters");
        };
        // Lenient: some clients forget the colon before a reason with spaces.
        let reason =
            Some(msg.params.get(1..).unwrap_or_default().join(" ")).filter(|s| !s.is_empty());
        for c in chans.split(',').take(MAX_TARGETS) {
            self.part(c, reason.clone());
        }
    }

    pub(super) fn part(&mut self, chan: &str, reason: Option<String>) {
        if chan.eq_ignore_ascii_case(CONTROL) {
            if self.control_shown {
                let prefix = self.my_prefix();
                self.send(build(&prefix, "PART", &[CONTROL], Some("bye")));
                self.control_shown = false;
            } else {
                self.num("442", &[chan], "You're not on that channel");
            }
            return;
        }
        let gid = self.book.gid(chan).map(str::to_owned);
        let active = gid
            .as_ref()
            .and_then(|g| self.groups.get(g))
            .is_some_and(|g| matches!(g.state.as_str(), "joined" | "joining"));
        match gid {
            Some(gid) if active => self.call(
                Kind::Leave {
                    gid: gid.clone(),
                    reason: reason.clone(),
                },
                Command::GroupLeave { gid, reason },
            ),
            _ => self.num("442", &[chan], "You're not on that channel"),
        }
    }

    pub(super) fn invite(&mut self, nick: &str, chan: &str, reply: Option<ReplyTo>) {
        let Some(id) = self.resolve(nick) else {
            return match reply {
                Some(r) => self.reply(r, &format!("no buddy called {nick}")),
                None => self.num("401", &[nick], "No such nick"),
            };
        };
        let Some(gid) = self.book.gid(chan).map(str::to_owned) else {
            return match reply {
                Some(r) => self.reply(r, &format!("no group channel {chan}")),
                None => self.num("403", &[chan], "No such channel"),
            };
        };
        self.call(
            Kind::Invite {
                nick: nick.to_owned(),
                chan: chan.to_owned(),
                reply,
            },
            Command::GroupInvite { gid, id },
        );
    }

    pub(super) fn names_of(&mut self, chan: &str) {
        if chan.eq_ignore_ascii_case(CONTROL) {
            let n = self.control_names();
            return self.names_reply(CONTROL, &n);
        }
        match self.book.gid(chan).map(str::to_owned) {
            Some(gid) if self.groups.contains_key(&gid) => {
                let n = self.group_names(&gid);
                let c = self.book.ensure_channel(&gid);
                self.names_reply(&c, &n);
            }
            _ => self.num("366", &[chan], "End of /NAMES list."),
        }
    }

    pub(super) fn who_line(&mut self, chan: &str, id: Option<&str>, nick: &str, flags: &str) {
        let me = self.me_nick().to_owned();
        let (user, host, real) = match id {
            Some(id) => {
                let real = self
                    .buddies
                    .get(id)
                    .and_then(|b| b.name.clone())
                    .unwrap_or_default();
                ("tc".to_owned(), format!("{id}.onion"), real)
            }
            None if nick == BOT => ("torchat".into(), SERVER.into(), "torchat gateway".into()),
            None => (self.user.clone(), "localhost".into(), self.realname.clone()),
        };
        self.send(build(
            SERVER,
            "352",
            &[&me, chan, &user, &host, SERVER, nick, flags],
            Some(&format!("0 {real}")),
        ));
    }

    pub(super) fn here_flag(&self, id: &str) -> String {
        let p = self.presence.get(id).map(String::as_str);
        let mut f = match p {
            Some("available") => "H".to_owned(),
            _ => "G".to_owned(),
        };
        if online(self.presence.get(id)) {
            f.push('+');
        }
        f
    }

    pub(super) fn on_who(&mut self, mask: &str) {
        let me = self.me_nick().to_owned();
        if mask.eq_ignore_ascii_case(CONTROL) {
            self.who_line(CONTROL, None, BOT, "H@");
            self.who_line(CONTROL, None, &me, "H@");
            let ids: Vec<String> = self
                .buddies
                .keys()
                .filter(|i| self.visible(i))
                .cloned()
                .collect();
            for id in ids {
                let n = self.nick_of(&id);
                let f = self.here_flag(&id);
                self.who_line(CONTROL, Some(&id), &n, &f);
            }
        } else if let Some(gid) = self.book.gid(mask).map(str::to_owned) {
            let chan = self.book.ensure_channel(&gid);
            self.who_line(&chan, None, &me, "H+");
            let members: Vec<String> = self
                .groups
                .get(&gid)
                .map(|g| g.members.iter().cloned().collect())
                .unwrap_or_default();
            for id in members {
                let n = self.nick_of(&id);
                let f = self.here_flag(&id);
                self.who_line(&chan, Some(&id), &n, &f);
            }
        } else if mask.eq_ignore_ascii_case(&me) {
            self.who_line("*", None, &me, "H");
        } else if mask.eq_ignore_ascii_case(BOT) {
            self.who_line("*", None, BOT, "H");
        } else if let Some(id) = self.book.id(mask).map(str::to_owned) {
            let n = self.nick_of(&id);
            let f = self.here_flag(&id);
            self.who_line("*", Some(&id), &n, &f);
        }
        self.num("315", &[mask], "End of /WHO list.");
    }

    pub(super) fn on_whois(&mut self, nick: &str) {
        let me = self.me_nick().to_owned();
        if nick.eq_ignore_ascii_case(BOT) {
            self.num(
                "311",
                &[BOT, "torchat", SERVER, "*"],
                "the torchat gateway's control bot",
            );
            self.num("312", &[BOT, SERVER], "torchat IRC gateway");
        } else if nick.eq_ignore_ascii_case(&me) {
            let user = self.user.clone();
            let real = self.realname.clone();
            self.num("311", &[&me, &user, "localhost", "*"], &real);
            self.num("312", &[&me, SERVER], "torchat IRC gateway");
            if let Some(id) = self.me.clone() {
                self.num("320", &[&me], &format!("is you: torchat id {id}"));
            }
        } else if let Some(id) = self.book.id(nick).map(str::to_owned) {
            let n = self.nick_of(&id);
            let host = format!("{id}.onion");
            let b = self.buddies.get(&id).cloned();
            let presence = self
                .presence
                .get(&id)
                .cloned()
                .unwrap_or_else(|| "offline".into());
            let real = b.as_ref().and_then(|b| b.name.clone()).unwrap_or_default();
            self.num("311", &[&n, "tc", &host, "*"], &real);
            let mut chans = Vec::new();
            if self.control_shown && self.visible(&id) {
                chans.push(format!("{}{CONTROL}", self.flag(&id)));
            }
            for (gid, g) in &self.groups {
                if g.shown && g.members.contains(&id) {
                    if let Some(c) = self.book.channel(gid) {
                        chans.push(format!("{}{c}", self.flag(&id)));
                    }
                }
            }
            if !chans.is_empty() {
                self.num("319", &[&n], &chans.join(" "));
            }
            let kind = b
                .as_ref()
                .map(|b| format!("torchat buddy ({})", b.kind))
                .unwrap_or_else(|| "torchat group member, not a buddy".into());
            self.num("312", &[&n, SERVER], &kind);
            match presence.as_str() {
                "away" => self.num("301", &[&n], "away"),
                "xa" => self.num("301", &[&n], "extended away (xa)"),
                _ => {}
            }
            self.num("320", &[&n], &format!("is {id}, {presence}"));
            if let Some(b) = b {
                if let Some(c) = b.client.filter(|c| !c.is_empty()) {
                    self.num("320", &[&n], &format!("uses {c}"));
                }
                if let Some(t) = b.text.filter(|t| !t.is_empty()) {
                    self.num("320", &[&n], &format!("profile: {t}"));
                }
                if b.queued > 0 {
                    self.num(
                        "320",
                        &[&n],
                        &format!("has {} of your messages waiting for delivery", b.queued),
                    );
                }
            }
        } else {
            self.num("401", &[nick], "No such nick");
        }
        self.num("318", &[nick], "End of /WHOIS list.");
    }

    pub(super) fn on_mode(&mut self, msg: &proto::Message) {
        let Some(target) = msg.param(0).map(str::to_owned) else {
            return self.num("461", &["MODE"], "Not enough parameters");
        };
        if target.starts_with('#') || target.starts_with('&') {
            let known = target.eq_ignore_ascii_case(CONTROL) || self.book.gid(&target).is_some();
            if !known {
                return self.num("403", &[&target], "No such channel");
            }
            match msg.param(1) {
                None => self.send(build(
                    SERVER,
                    "324",
                    &[self.me_nick(), &target, "+nt"],
                    None,
                )),
                Some(m) if m.trim_start_matches('+') == "b" && msg.params.len() == 2 => {
                    self.num("368", &[&target], "End of channel ban list")
                }
                Some(_) => self.num(
                    "482",
                    &[&target],
                    "Modes are torchat's: voice (+) means online",
                ),
            }
        } else if target.eq_ignore_ascii_case(self.me_nick()) {
            self.num("221", &[], "+");
        } else {
            self.num("502", &[], "Cannot change mode for other users");
        }
    }

    pub(super) fn on_topic(&mut self, msg: &proto::Message) {
        let Some(chan) = msg.param(0).map(str::to_owned) else {
            return self.num("461", &["TOPIC"], "Not enough parameters");
        };
        if msg.params.len() > 1 {
            return self.num("482", &[&chan], "torchat groups have no topic to set");
        }
        if chan.eq_ignore_ascii_case(CONTROL) {
            self.num("332", &[CONTROL], "torchat control channel: type help");
        } else if let Some(gid) = self.book.gid(&chan).map(str::to_owned) {
            let t = self.group_topic(&gid);
            self.num("332", &[&chan], &t);
        } else {
            self.num("403", &[&chan], "No such channel");
        }
    }

    pub(super) fn on_list(&mut self) {
        self.num("321", &["Channel"], "Users Name");
        let n = self.buddies.keys().filter(|i| self.visible(i)).count() + 2;
        self.num("322", &[CONTROL, &n.to_string()], "torchat control channel");
        let gids: Vec<(String, usize, String)> = self
            .groups
            .iter()
            .filter(|(_, g)| g.state != "left")
            .map(|(gid, g)| (gid.clone(), g.members.len() + 1, g.state.clone()))
            .collect();
        for (gid, n, state) in gids {
            let c = self.book.ensure_channel(&gid);
            self.num(
                "322",
                &[&c, &n.to_string()],
                &format!("[{state}] group {gid}"),
            );
        }
        self.num("323", &[], "End of /LIST");
    }
}
