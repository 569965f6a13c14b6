//! The control channel `&torchat`: its commands, their answers and the help text.

use super::*;

/// The control channel's commands: name, arguments, what it does.
pub const HELP: &[(&str, &str, &str)] = &[
    ("help", "[command]", "this text, or more about one command"),
    ("buddies", "", "your buddies: nick, state, id"),
    (
        "add",
        "<id> [alias]",
        "add a buddy by onion id (it is told with add_me); the alias becomes its nick",
    ),
    ("remove", "<nick|id>", "remove a buddy"),
    (
        "block",
        "<nick|id>",
        "block an id: no connections, no messages",
    ),
    ("unblock", "<nick|id>", "unblock an id"),
    (
        "status",
        "available|away|xa",
        "set your presence (/away works too)",
    ),
    (
        "profile",
        "<name> [text]",
        "set your profile name and text (\"quote\" a name with spaces)",
    ),
    (
        "groups",
        "",
        "your groups: channel, state, members, group id",
    ),
    (
        "create",
        "[#name] [noredundancy]",
        "create a group and join its channel; /invite <nick> <#chan> then",
    ),
    (
        "accept",
        "<#chan> | <id>",
        "accept an invite (/join <#chan> does the same), or a contact request",
    ),
    (
        "requests",
        "",
        "contact requests from strangers, with what they wrote",
    ),
    (
        "ignore",
        "<id>",
        "ignore a contact request: its messages are dropped",
    ),
    ("decline", "<#chan>", "decline an invite"),
    (
        "invite",
        "<nick> <#chan>",
        "invite an online buddy (/invite works too)",
    ),
    (
        "leave",
        "<#chan> [reason]",
        "leave a group (/part does the same)",
    ),
    (
        "history",
        "<nick|#chan> [n]",
        "the last n messages (default 20, at most 200), with trust",
    ),
    (
        "id",
        "",
        "your onion id, to give to friends, and the transport's state",
    ),
    ("files", "", "file transfers: number, state, progress, name"),
    (
        "getfile",
        "<n>",
        "accept offered file number n (saved in the download directory)",
    ),
    ("dropfile", "<n>", "decline an offer, or stop transfer n"),
    (
        "sendfile",
        "<nick> <path>",
        "offer a file (an absolute path on the node's machine)",
    ),
];

impl Gateway {
    // ----- the control channel -----

    pub(super) fn control(&mut self, text: &str, to: ReplyTo) {
        let w = words(text);
        let Some(cmd) = w.first() else {
            return;
        };
        let cmd = cmd.trim_start_matches(['!', '.', '/']).to_ascii_lowercase();
        let arg = |i: usize| w.get(i).cloned();
        let rest = |i: usize| (w.len() > i).then(|| w[i..].join(" "));
        let ctl = |op: Op| Kind::Ctl { reply: to, op };
        match cmd.as_str() {
            "help" => self.help(to, arg(1).as_deref()),
            "buddies" | "list" => self.call(ctl(Op::Buddies), Command::Buddies),
            "groups" => self.call(ctl(Op::Groups), Command::Groups),
            "id" | "info" => self.call(ctl(Op::Info), Command::Info),
            "add" => {
                let Some(id) = arg(1).and_then(|s| names::onion_id(&s)) else {
                    return self.reply(
                        to,
                        "usage: add <onion id> [alias] (an id has 16 or 56 characters)",
                    );
                };
                let alias = rest(2);
                if let Some(a) = &alias {
                    if self.pending_alias.len() < 64 {
                        self.pending_alias.insert(id.clone(), a.clone());
                    }
                }
                self.call(
                    ctl(Op::Add {
                        id: id.clone(),
                        alias: alias.clone(),
                    }),
                    Command::Add { id, alias },
                );
            }
            "remove" | "block" | "unblock" => {
                let Some(who) = arg(1) else {
                    return self.reply(to, &format!("usage: {cmd} <nick or id>"));
                };
                let Some(id) = self.resolve(&who) else {
                    return self.reply(to, &format!("no buddy called {who}"));
                };
                let (op, c) = match cmd.as_str() {
                    "remove" => (Op::Remove { who }, Command::Remove { id }),
                    "block" => (Op::Block { who }, Command::Block { id }),
                    _ => (Op::Unblock { who }, Command::Unblock { id }),
                };
                self.call(ctl(op), c);
            }
            "status" => match arg(1).map(|s| s.to_ascii_lowercase()).as_deref() {
                Some(s @ ("available" | "away" | "xa")) => self.call(
                    ctl(Op::Status { status: s.into() }),
                    Command::SetStatus { status: s.into() },
                ),
                _ => self.reply(to, "usage: status available|away|xa"),
            },
            "profile" => {
                let Some(name) = arg(1) else {
                    return self.reply(
                        to,
                        "usage: profile <name> [text] (\"quote\" a name with spaces)",
                    );
                };
                let text = rest(2).unwrap_or_default();
                self.call(ctl(Op::Profile), Command::SetProfile { name, text });
            }
            "create" => {
                let mut name = None;
                let mut modes = Vec::new();
                for a in w.iter().skip(1) {
                    if a.eq_ignore_ascii_case("noredundancy") || a == "--no-redundancy" {
                        modes.push("noredundancy".to_owned());
                    } else if name.is_none() {
                        name = Some(a.clone());
                    } else {
                        return self.reply(to, "usage: create [#name] [noredundancy]");
                    }
                }
                if let Some(n) = &name {
                    if let Some(c) = names::sanitize_channel(n) {
                        if self.book.gid(&c).is_some() {
                            return self.reply(to, &format!("{c} is taken; pick another name"));
                        }
                    } else {
                        return self.reply(to, &format!("{n:?} cannot be a channel name"));
                    }
                }
                self.creates += 1;
                self.call(ctl(Op::Create { name }), Command::GroupCreate { modes });
            }
            "accept" | "join" => match arg(1) {
                Some(c) if c.starts_with(['#', '&']) || cmd == "join" => self.join(&c),
                Some(id) => self.request_command("accept", Some(id), to),
                None => self.reply(to, "usage: accept <#chan> or accept <onion id>"),
            },
            "requests" | "ignore" => self.request_command(&cmd, arg(1), to),
            "decline" => {
                let Some(c) = arg(1) else {
                    return self.reply(to, "usage: decline <#chan>");
                };
                let Some(gid) = self.book.gid(&c).map(str::to_owned) else {
                    return self.reply(to, &format!("no group channel {c}"));
                };
                self.call(ctl(Op::Decline { chan: c }), Command::GroupDecline { gid });
            }
            "invite" => match (arg(1), arg(2)) {
                (Some(n), Some(c)) => self.invite(&n, &c, Some(to)),
                _ => self.reply(to, "usage: invite <nick> <#chan>"),
            },
            "leave" | "part" => match arg(1) {
                Some(c) => self.part(&c, rest(2)),
                None => self.reply(to, "usage: leave <#chan> [reason]"),
            },
            "history" => {
                let Some(t) = arg(1) else {
                    return self.reply(to, "usage: history <nick|#chan> [n]");
                };
                let limit = arg(2)
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(20)
                    .clamp(1, MAX_HISTORY);
                let with = if t.starts_with('#') {
                    self.book.gid(&t).map(str::to_owned)
                } else {
                    self.resolve(&t)
                };
                let Some(with) = with else {
                    return self.reply(to, &format!("no buddy or group called {t}"));
                };
                self.call(
                    ctl(Op::History { title: t }),
                    Command::History {
                        with,
                        limit: Some(limit),
                        before: None,
                    },
                );
            }
            "files" => self.call(ctl(Op::Files), Command::Files),
            "getfile" | "dropfile" => {
                let Some(n) = arg(1).and_then(|n| n.trim_start_matches('#').parse::<u64>().ok())
                else {
                    return self.reply(to, &format!("usage: {cmd} <file number> (see files)"));
                };
                let (what, c) = if cmd == "getfile" {
                    ("accepted", Command::FileAccept { file: n })
                } else {
                    ("stopped", Command::FileCancel { file: n })
                };
                self.call(
                    ctl(Op::File {
                        what: format!("file {n} {what}"),
                    }),
                    c,
                );
            }
            "sendfile" => {
                let (Some(who), Some(path)) = (arg(1), rest(2)) else {
                    return self.reply(to, "usage: sendfile <nick> <absolute path>");
                };
                let Some(id) = self.resolve(&who) else {
                    return self.reply(to, &format!("no buddy called {who}"));
                };
                self.call(
                    ctl(Op::File {
                        what: format!("offered {path} to {who}"),
                    }),
                    Command::SendFile { to: id, path },
                );
            }
            _ => self.reply(to, &format!("unknown command {cmd:?}; type help")),
        }
    }

    pub(super) fn help(&mut self, to: ReplyTo, about: Option<&str>) {
        if let Some(a) = about {
            let a = a.to_ascii_lowercase();
            match HELP.iter().find(|(c, _, _)| *c == a) {
                Some((c, args, what)) => self.reply(to, &format!("{c} {args}: {what}")),
                None => self.reply(to, &format!("no command {a:?}; type help")),
            }
            return;
        }
        self.reply(
            to,
            "torchat commands (type them here, or /msg torchat <command>):",
        );
        for (c, args, what) in HELP {
            let usage = format!("{c} {args}");
            self.reply(to, &format!("  {usage:<32} {what}"));
        }
        self.reply(
            to,
            "Buddies are nicks (/msg <nick>, or /msg <onion id>); voice (+) means online, \
             /whois shows the state. Groups are #channels: /join accepts an invite, /part \
             leaves, /invite <nick> <#chan> invites. Group lines start with their trust: \
             (Direct) from the speaker, (k of N) relayed by k of N members, (UNCONFIRMED k of \
             N) possibly forged; changes are announced as notices.",
        );
    }

    pub(super) fn on_control_response(
        &mut self,
        to: ReplyTo,
        op: Op,
        r: Result<Value, ApiFailure>,
    ) {
        match &op {
            Op::Create { .. } => self.creates = self.creates.saturating_sub(1),
            Op::Add { id, .. } => {
                self.pending_alias.remove(id);
            }
            _ => {}
        }
        let v = match r {
            Ok(v) => v,
            Err(e) => {
                self.reply(to, &format!("error: {} ({})", e.message, e.code));
                return self.show_deferred();
            }
        };
        match op {
            Op::Add { id, alias } => {
                let (vis, on) = (self.visible(&id), self.is_online(&id));
                let b = self.buddies.entry(id.clone()).or_default();
                if b.kind.is_empty() || b.kind == "temporary" {
                    b.kind = "permanent".into();
                }
                if alias.is_some() {
                    b.alias = alias;
                }
                let nick = self.nick_of(&id);
                self.after_change(&id, vis, on, "");
                self.reply(to, &format!("added {id} as {nick}"));
            }
            Op::Remove { who } => self.reply(to, &format!("removed {who}")),
            Op::Block { who } => self.reply(to, &format!("blocked {who}")),
            Op::Unblock { who } => self.reply(to, &format!("unblocked {who}")),
            Op::Status { status } => self.reply(to, &format!("status set to {status}")),
            Op::Profile => self.reply(to, "profile set"),
            Op::File { what } => self.reply(to, &what),
            Op::RequestDone { what } => self.reply(to, &what),
            Op::Requests => self.show_requests(to, v),
            Op::Files => {
                let list: Vec<torchat_api::Transfer> =
                    serde_json::from_value(v).unwrap_or_default();
                if list.is_empty() {
                    self.reply(to, "no file transfers");
                }
                for t in &list {
                    let line = self.file_line(t);
                    self.reply(to, &line);
                }
            }
            Op::Info => {
                let tor = &v["tor"];
                self.reply(
                    to,
                    &format!(
                        "you are {} | transport {} | Tor {}% {} | {} connections | torchat {}",
                        str_field(&v, "id"),
                        str_field(&v, "transport"),
                        tor["percent"].as_u64().unwrap_or(0),
                        str_field(tor, "summary"),
                        v["connections"].as_u64().unwrap_or(0),
                        str_field(&v, "version"),
                    ),
                );
            }
            Op::Buddies => {
                let list: Vec<Buddy> = serde_json::from_value(v).unwrap_or_default();
                if list.is_empty() {
                    self.reply(to, "no buddies yet: add <onion id> [alias]");
                }
                for b in &list {
                    let n = self.nick_of(&b.id);
                    let mut line = format!("{n:<16} {:<10} {} ({})", b.presence, b.id, b.kind);
                    if let Some(name) = b.name.as_deref().filter(|s| !s.is_empty()) {
                        line.push_str(&format!(" name: {name}"));
                    }
                    if b.queued > 0 {
                        line.push_str(&format!(" [{} queued]", b.queued));
                    }
                    self.reply(to, &line);
                }
                self.apply_buddies(list);
            }
            Op::Groups => {
                let list: Vec<Group> = serde_json::from_value(v).unwrap_or_default();
                if list.is_empty() {
                    self.reply(to, "no groups yet: create [#name]");
                }
                for g in &list {
                    let c = self.book.ensure_channel(&g.gid);
                    let members: Vec<String> = g.members.iter().map(|m| self.nick_of(m)).collect();
                    let mut line = format!(
                        "{c:<16} {:<8} {} | members: {}",
                        g.state,
                        g.gid,
                        if members.is_empty() {
                            "only you".to_owned()
                        } else {
                            members.join(", ")
                        }
                    );
                    if let (Some(i), "invited") = (&g.inviter, g.state.as_str()) {
                        line.push_str(&format!(" | invited by {}", self.nick_of(i)));
                    }
                    self.reply(to, &line);
                }
            }
            Op::Create { name } => {
                let gid = str_field(&v, "gid");
                if gid.is_empty() {
                    self.reply(to, "the node created a group but did not say which");
                    return self.show_deferred();
                }
                let chan = match name.as_deref().map(|n| self.book.name_channel(&gid, n)) {
                    Some(Ok(c)) => c,
                    Some(Err(why)) => {
                        let c = self.book.ensure_channel(&gid);
                        self.reply(to, &format!("{why}; the group is {c}"));
                        c
                    }
                    None => self.book.ensure_channel(&gid),
                };
                let g = self.groups.entry(gid.clone()).or_default();
                if g.state.is_empty() {
                    g.state = "joined".into();
                }
                self.show_group(&gid);
                self.reply(
                    to,
                    &format!("created the group {chan} ({gid}); invite buddies with /invite <nick> {chan}"),
                );
                self.show_deferred();
            }
            Op::Decline { chan } => self.reply(to, &format!("declined the invite to {chan}")),
            Op::History { title } => {
                let list: Vec<ApiMessage> = serde_json::from_value(v).unwrap_or_default();
                if list.is_empty() {
                    self.reply(to, &format!("no messages with {title}"));
                }
                for m in &list {
                    let who = self.nick_of(&m.sender);
                    let mut line = format!("[{}] <{who}> ", civil(m.at));
                    if let Some(t) = m.trust.as_deref().filter(|t| *t != "(me)") {
                        line.push_str(t);
                        line.push(' ');
                    }
                    line.push_str(&m.text.replace('\x01', ""));
                    if let Some(d) = m.delivery.as_deref().filter(|d| *d != "sent") {
                        line.push_str(&format!(" [{d}]"));
                    }
                    self.reply(to, &line);
                }
            }
        }
    }

    pub(super) fn show_deferred(&mut self) {
        if self.creates > 0 {
            return;
        }
        let deferred: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.deferred && !g.shown)
            .map(|(gid, _)| gid.clone())
            .collect();
        for gid in deferred {
            if let Some(g) = self.groups.get_mut(&gid) {
                g.deferred = false;
            }
            self.request_show(&gid);
        }
    }
}
