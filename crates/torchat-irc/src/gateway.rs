//! The gateway as a pure state machine: IRC lines and control-API events and responses go
//! in, IRC lines and control-API commands come out. No I/O, no clock: the server loop in
//! [`crate::Server`] feeds it and carries out its [`Action`]s in order.
//!
//! The contract:
//! - Feed every line the IRC client sends as [`Input::Irc`] (or [`Input::LineTooLong`]).
//! - Carry out the returned actions in order. For [`Action::Call`], send the command to the
//!   node and feed its answer back as [`Input::Response`] with the same [`Tag`] before
//!   anything else (calls are answered one at a time, in order).
//! - Feed every event of the (subscribed) control connection as [`Input::Event`].
//! - If the node connection breaks, feed [`Input::NodeLost`].
//! - After [`Action::Close`], flush what was sent and close the IRC connection.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde_json::Value;
use torchat_api::{Buddy, Command, Event, Group, Message as ApiMessage, Trust};

use crate::names::{self, NickBook, NickUpdate};
use crate::proto::{self, build, text_lines, ParseError, MAX_BODY};

mod control;
mod irc;
mod requests;
#[cfg(test)]
mod tests;

pub use control::HELP;

/// The gateway's server name.
pub const SERVER: &str = "irc.torchat";
/// The control bot's nick.
pub const BOT: &str = "torchat";
/// The control channel.
pub const CONTROL: &str = "&torchat";
const BOT_PREFIX: &str = "torchat!torchat@irc.torchat";
/// Group messages remembered for trust-change notices.
const RECENT: usize = 1024;
/// Own group messages awaiting their echo from the node.
const SAYS: usize = 256;
/// Queued 1:1 messages whose delivery is announced.
const QUEUED: usize = 1024;
/// Targets of one PRIVMSG.
const MAX_TARGETS: usize = 4;
/// History lines one `history` command shows at most.
const MAX_HISTORY: usize = 200;

/// An error answer from the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// Machine-readable code (`not_a_buddy`, `not_online`, …).
    pub code: String,
    /// Explanation.
    pub message: String,
}

/// Something for the state machine.
#[derive(Debug, Clone)]
pub enum Input {
    /// A line from the IRC client (without CR LF; lossily decoded).
    Irc(String),
    /// The IRC client sent a line over [`crate::proto::MAX_INPUT`] bytes (it was dropped).
    LineTooLong,
    /// An event from the node.
    Event(Event),
    /// The node's answer to an [`Action::Call`].
    Response(Tag, Result<Value, ApiFailure>),
    /// The connection to the node broke.
    NodeLost(String),
}

/// Something for the server loop to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send this line (without CR LF; at most [`proto::MAX_BODY`] bytes) to the IRC client.
    Send(String),
    /// Send this command to the node; feed the answer back with the tag.
    Call(Tag, Command),
    /// Close the IRC connection (after flushing what was sent).
    Close,
}

/// Identifies what a [`Action::Call`] was for. Opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag(Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyTo {
    /// In `&torchat`.
    Channel,
    /// In a query with the bot.
    Query,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Subscribe,
    Info,
    Buddies {
        resync: bool,
    },
    Groups {
        resync: bool,
    },
    Send {
        target: String,
        id: String,
        text: String,
    },
    Say {
        gid: String,
        text: String,
    },
    Accept {
        gid: String,
    },
    Leave {
        gid: String,
        reason: Option<String>,
    },
    Invite {
        nick: String,
        chan: String,
        reply: Option<ReplyTo>,
    },
    Show {
        gid: String,
    },
    Away {
        away: bool,
    },
    Ctl {
        reply: ReplyTo,
        op: Op,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Add { id: String, alias: Option<String> },
    Remove { who: String },
    Block { who: String },
    Unblock { who: String },
    Status { status: String },
    Profile,
    Buddies,
    Groups,
    Create { name: Option<String> },
    Decline { chan: String },
    Info,
    History { title: String },
    Files,
    File { what: String },
    Requests,
    RequestDone { what: String },
}

#[derive(Debug, Clone, Default)]
struct Bud {
    kind: String,
    alias: Option<String>,
    name: Option<String>,
    text: Option<String>,
    client: Option<String>,
    queued: usize,
}

#[derive(Debug, Clone, Default)]
struct Grp {
    state: String,
    members: BTreeSet<String>,
    inviter: Option<String>,
    modes: Vec<String>,
    /// The IRC client is in its channel.
    shown: bool,
    /// A `group_members` call to show it is under way.
    show_pending: bool,
    /// The invite was shown.
    invite_shown: bool,
    /// Appeared while one of our `create`s was under way: shown when that is answered.
    deferred: bool,
}

#[derive(Debug, Clone)]
struct Recent {
    sender: String,
    excerpt: String,
    label: String,
}

/// Settings of one session.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The password IRC clients must give with `PASS`.
    pub password: String,
}

/// One IRC client session.
#[derive(Debug)]
pub struct Gateway {
    password: String,
    pass: Option<String>,
    nick: Option<String>,
    user: String,
    realname: String,
    got_user: bool,
    cap: bool,
    registered: bool,
    auth_failed: bool,
    closed: bool,
    me: Option<String>,
    book: NickBook,
    buddies: BTreeMap<String, Bud>,
    presence: HashMap<String, String>,
    groups: BTreeMap<String, Grp>,
    control_shown: bool,
    creates: usize,
    /// Aliases of `add` commands under way (the node's events may come before the answer).
    pending_alias: HashMap<String, String>,
    recent: HashMap<String, Recent>,
    recent_order: VecDeque<String>,
    says: VecDeque<(String, String)>,
    queued: VecDeque<(String, String)>,
    tor_percent: Option<u8>,
    out: Vec<Action>,
}

fn online(p: Option<&String>) -> bool {
    matches!(p.map(String::as_str), Some("available" | "away" | "xa"))
}

fn excerpt(text: &str) -> String {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut s: String = first.chars().take(40).collect();
    if s.len() < first.len() || text.lines().filter(|l| !l.trim().is_empty()).count() > 1 {
        s.push('…');
    }
    proto::clean(&s)
}

fn str_field(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_owned()
}

/// Words of a control command; `"double quotes"` group words.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// `YYYY-MM-DD HH:MM` (UTC) for milliseconds since the epoch.
fn civil(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86400) as i64;
    let (h, m) = ((secs % 86400) / 3600, (secs % 3600) / 60);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}")
}

/// Compares without stopping at the first difference.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

impl Gateway {
    /// A session with `book` as the nick and channel mapping to start from.
    pub fn new(cfg: GatewayConfig, book: NickBook) -> Self {
        Gateway {
            password: cfg.password,
            pass: None,
            nick: None,
            user: "user".into(),
            realname: String::new(),
            got_user: false,
            cap: false,
            registered: false,
            auth_failed: false,
            closed: false,
            me: None,
            book,
            buddies: BTreeMap::new(),
            presence: HashMap::new(),
            groups: BTreeMap::new(),
            control_shown: false,
            creates: 0,
            pending_alias: HashMap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            says: VecDeque::new(),
            queued: VecDeque::new(),
            tor_percent: None,
            out: Vec::new(),
        }
    }

    /// Feeds one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        if !self.closed {
            match input {
                Input::Irc(line) => self.on_line(&line),
                Input::LineTooLong => self.num("417", &[], "Input line was too long"),
                Input::Event(e) => {
                    if self.registered {
                        self.on_event(e);
                    }
                }
                Input::Response(tag, r) => self.on_response(tag.0, r),
                Input::NodeLost(why) => {
                    let me = self.me_nick().to_owned();
                    self.send(build(
                        SERVER,
                        "NOTICE",
                        &[&me],
                        Some(&format!("lost the connection to the torchat node: {why}")),
                    ));
                    self.close("torchat node gone");
                }
            }
        }
        std::mem::take(&mut self.out)
    }

    /// Whether the client has registered (and given the right password).
    pub fn registered(&self) -> bool {
        self.registered
    }

    /// Whether the client was refused for a missing or wrong password.
    pub fn auth_failed(&self) -> bool {
        self.auth_failed
    }

    /// The nick and channel mapping.
    pub fn book(&self) -> &NickBook {
        &self.book
    }

    /// The mapping, mutably (to see whether it changed: [`NickBook::take_dirty`]).
    pub fn book_mut(&mut self) -> &mut NickBook {
        &mut self.book
    }

    // ----- output helpers -----

    fn send(&mut self, line: String) {
        self.out.push(Action::Send(line));
    }

    fn call(&mut self, kind: Kind, cmd: Command) {
        self.out.push(Action::Call(Tag(kind), cmd));
    }

    fn close(&mut self, why: &str) {
        self.send(format!("ERROR :Closing link: {}", proto::clean(why)));
        self.out.push(Action::Close);
        self.closed = true;
    }

    fn me_nick(&self) -> &str {
        self.nick.as_deref().unwrap_or("*")
    }

    fn my_prefix(&self) -> String {
        format!("{}!{}@localhost", self.me_nick(), self.user)
    }

    /// `:irc.torchat <code> <nick> <middles…> :<trailing>`.
    fn num(&mut self, code: &str, middles: &[&str], trailing: &str) {
        let me = self.me_nick().to_owned();
        let mut m: Vec<&str> = vec![&me];
        m.extend_from_slice(middles);
        self.send(build(SERVER, code, &m, Some(trailing)));
    }

    fn notice_me(&mut self, text: &str) {
        let me = self.me_nick().to_owned();
        for l in text_lines(SERVER, "NOTICE", &me, "", text) {
            self.send(l);
        }
    }

    fn notice_chan(&mut self, chan: &str, text: &str) {
        for l in text_lines(SERVER, "NOTICE", chan, "", text) {
            self.send(l);
        }
    }

    /// A notice from the bot: in `&torchat` when the client is there, else privately.
    fn control_notice(&mut self, text: &str) {
        let target = if self.control_shown {
            CONTROL.to_owned()
        } else {
            self.me_nick().to_owned()
        };
        for l in text_lines(BOT_PREFIX, "NOTICE", &target, "", text) {
            self.send(l);
        }
    }

    fn reply(&mut self, to: ReplyTo, text: &str) {
        let target = if to == ReplyTo::Channel && self.control_shown {
            CONTROL.to_owned()
        } else {
            self.me_nick().to_owned()
        };
        for l in text_lines(BOT_PREFIX, "PRIVMSG", &target, "", text) {
            self.send(l);
        }
    }

    // ----- nicks and names -----

    fn reserved(&self) -> Vec<String> {
        let mut r = vec![BOT.to_owned()];
        if let Some(n) = &self.nick {
            r.push(n.clone());
        }
        r
    }

    /// The nick of `id` (ours for our id), announcing a rename if there is one.
    fn nick_of(&mut self, id: &str) -> String {
        if self.me.as_deref() == Some(id) {
            return self.me_nick().to_owned();
        }
        let (alias, name) = self
            .buddies
            .get(id)
            .map(|b| (b.alias.clone(), b.name.clone()))
            .unwrap_or_default();
        let alias = alias.or_else(|| self.pending_alias.get(id).cloned());
        let reserved = self.reserved();
        let reserved: Vec<&str> = reserved.iter().map(String::as_str).collect();
        match self
            .book
            .ensure(id, alias.as_deref(), name.as_deref(), &reserved)
        {
            NickUpdate::Renamed { old, new } => {
                if self.registered {
                    let prefix = format!("{old}!tc@{id}.onion");
                    self.send(build(&prefix, "NICK", &[], Some(&new)));
                }
                new
            }
            u => u.nick().to_owned(),
        }
    }

    fn prefix_of(&mut self, id: &str) -> String {
        if self.me.as_deref() == Some(id) {
            return self.my_prefix();
        }
        let nick = self.nick_of(id);
        format!("{nick}!tc@{id}.onion")
    }

    /// The id a nick or onion id stands for.
    fn resolve(&self, who: &str) -> Option<String> {
        self.book
            .id(who)
            .map(str::to_owned)
            .or_else(|| names::onion_id(who))
    }

    fn is_online(&self, id: &str) -> bool {
        online(self.presence.get(id))
    }

    fn visible(&self, id: &str) -> bool {
        self.buddies.get(id).is_some_and(|b| b.kind != "blocked")
    }

    fn flag(&self, id: &str) -> &'static str {
        if self.is_online(id) {
            "+"
        } else {
            ""
        }
    }

    fn names_reply(&mut self, chan: &str, entries: &[String]) {
        let me = self.me_nick().to_owned();
        let head = build(SERVER, "353", &[&me, "=", chan], Some(""));
        let mut cur = String::new();
        for e in entries {
            if !cur.is_empty() && head.len() + cur.len() + 1 + e.len() > MAX_BODY {
                self.send(format!("{head}{cur}"));
                cur.clear();
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(e);
        }
        if !cur.is_empty() {
            self.send(format!("{head}{cur}"));
        }
        self.num("366", &[chan], "End of /NAMES list.");
    }

    fn control_names(&mut self) -> Vec<String> {
        let mut v = vec![format!("@{BOT}"), format!("@{}", self.me_nick())];
        let ids: Vec<String> = self
            .buddies
            .keys()
            .filter(|id| self.visible(id))
            .cloned()
            .collect();
        for id in ids {
            let n = self.nick_of(&id);
            v.push(format!("{}{n}", self.flag(&id)));
        }
        v
    }

    fn group_names(&mut self, gid: &str) -> Vec<String> {
        let mut v = vec![format!("+{}", self.me_nick())];
        let members: Vec<String> = self
            .groups
            .get(gid)
            .map(|g| g.members.iter().cloned().collect())
            .unwrap_or_default();
        for id in members {
            if self.me.as_deref() == Some(id.as_str()) {
                continue;
            }
            let n = self.nick_of(&id);
            v.push(format!("{}{n}", self.flag(&id)));
        }
        v
    }

    fn group_topic(&self, gid: &str) -> String {
        let mut t = format!("torchat group {gid}");
        if let Some(g) = self.groups.get(gid) {
            if !g.modes.is_empty() {
                t.push_str(&format!(" (modes: {})", g.modes.join(", ")));
            }
        }
        t.push_str(" | every line shows its trust: (Direct), (k of N), (UNCONFIRMED k of N)");
        t
    }

    // ----- showing channels -----

    fn show_control(&mut self) {
        self.control_shown = true;
        let prefix = self.my_prefix();
        self.send(build(&prefix, "JOIN", &[CONTROL], None));
        self.num("332", &[CONTROL], "torchat control channel: type help");
        let names = self.control_names();
        self.names_reply(CONTROL, &names);
    }

    fn request_show(&mut self, gid: &str) {
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        if g.shown || g.show_pending {
            return;
        }
        g.show_pending = true;
        self.call(
            Kind::Show {
                gid: gid.to_owned(),
            },
            Command::GroupMembers {
                gid: gid.to_owned(),
            },
        );
    }

    fn show_group(&mut self, gid: &str) {
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        if g.shown {
            return;
        }
        g.shown = true;
        g.show_pending = false;
        g.deferred = false;
        let chan = self.book.ensure_channel(gid);
        let prefix = self.my_prefix();
        self.send(build(&prefix, "JOIN", &[&chan], None));
        let topic = self.group_topic(gid);
        self.num("332", &[&chan], &topic);
        let names = self.group_names(gid);
        self.names_reply(&chan, &names);
    }

    fn unshow_group(&mut self, gid: &str, reason: &str) {
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        if !g.shown {
            return;
        }
        g.shown = false;
        let chan = self.book.ensure_channel(gid);
        let prefix = self.my_prefix();
        self.send(build(&prefix, "PART", &[&chan], Some(reason)));
    }

    fn announce_invite(&mut self, gid: &str) {
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        if g.invite_shown || g.state != "invited" {
            return;
        }
        g.invite_shown = true;
        let from = g.inviter.clone();
        let chan = self.book.ensure_channel(gid);
        let me = self.me_nick().to_owned();
        let (prefix, who) = match &from {
            Some(f) => (self.prefix_of(f), self.nick_of(f)),
            None => (BOT_PREFIX.to_owned(), "someone".to_owned()),
        };
        self.send(build(&prefix, "INVITE", &[&me], Some(&chan)));
        self.control_notice(&format!(
            "{who} invites you to the group {chan} ({gid}): /join {chan} to accept, or 'decline {chan}' here"
        ));
    }

    // ----- node state -----

    /// After a buddy's kind or presence changed: JOIN/PART/MODE lines where the client sees it.
    fn after_change(&mut self, id: &str, was_visible: bool, was_online: bool, why: &str) {
        let vis = self.visible(id);
        let on = self.is_online(id);
        if vis == was_visible && on == was_online {
            return;
        }
        let prefix = self.prefix_of(id);
        let nick = self.nick_of(id);
        let sign = if on { "+v" } else { "-v" };
        if self.control_shown {
            if vis && !was_visible {
                self.send(build(&prefix, "JOIN", &[CONTROL], None));
                if on {
                    self.send(build(SERVER, "MODE", &[CONTROL, "+v", &nick], None));
                }
            } else if !vis && was_visible {
                self.send(build(&prefix, "PART", &[CONTROL], Some(why)));
            } else if vis && on != was_online {
                self.send(build(SERVER, "MODE", &[CONTROL, sign, &nick], None));
            }
        }
        if on != was_online {
            let chans: Vec<String> = self
                .groups
                .iter()
                .filter(|(_, g)| g.shown && g.members.contains(id))
                .map(|(gid, _)| gid.clone())
                .collect();
            for gid in chans {
                let c = self.book.ensure_channel(&gid);
                self.send(build(SERVER, "MODE", &[&c, sign, &nick], None));
            }
        }
    }

    fn apply_buddy(&mut self, b: Buddy) {
        let (was_visible, was_online) = (self.visible(&b.id), self.is_online(&b.id));
        self.presence.insert(b.id.clone(), b.presence.clone());
        self.buddies.insert(
            b.id.clone(),
            Bud {
                kind: b.kind,
                alias: b.alias,
                name: b.name,
                text: b.text,
                client: b.client,
                queued: b.queued,
            },
        );
        self.nick_of(&b.id);
        self.after_change(&b.id, was_visible, was_online, "blocked");
    }

    fn remove_buddy(&mut self, id: &str) {
        let (was_visible, was_online) = (self.visible(id), self.is_online(id));
        self.buddies.remove(id);
        self.after_change(id, was_visible, was_online, "removed from the buddy list");
    }

    fn apply_buddies(&mut self, list: Vec<Buddy>) {
        let ids: BTreeSet<String> = list.iter().map(|b| b.id.clone()).collect();
        let gone: Vec<String> = self
            .buddies
            .keys()
            .filter(|i| !ids.contains(*i))
            .cloned()
            .collect();
        for b in list {
            self.apply_buddy(b);
        }
        for id in gone {
            self.remove_buddy(&id);
        }
    }

    fn apply_group(&mut self, g: Group) {
        let gid = g.gid.clone();
        let is_new = !self.groups.contains_key(&gid);
        let entry = self.groups.entry(gid.clone()).or_default();
        let shown = entry.shown;
        let old: BTreeSet<String> = std::mem::take(&mut entry.members);
        entry.members = g
            .members
            .iter()
            .filter(|m| Some(m.as_str()) != self.me.as_deref())
            .cloned()
            .collect();
        entry.state = g.state.clone();
        entry.inviter = g.inviter.clone();
        entry.modes = g.modes.clone();
        let new = entry.members.clone();
        self.book.ensure_channel(&gid);
        if shown {
            let chan = self.book.ensure_channel(&gid);
            for id in new.difference(&old) {
                let p = self.prefix_of(id);
                self.send(build(&p, "JOIN", &[&chan], None));
                if self.is_online(id) {
                    let n = self.nick_of(id);
                    self.send(build(SERVER, "MODE", &[&chan, "+v", &n], None));
                }
            }
            for id in old.difference(&new) {
                let p = self.prefix_of(id);
                self.send(build(&p, "PART", &[&chan], Some("left")));
            }
        }
        match g.state.as_str() {
            "joined" | "joining" => {
                if let Some(e) = self.groups.get_mut(&gid) {
                    e.show_pending = false;
                }
                if !shown {
                    if is_new && self.creates > 0 {
                        if let Some(e) = self.groups.get_mut(&gid) {
                            e.deferred = true;
                        }
                    } else {
                        self.show_group(&gid);
                    }
                }
            }
            "invited" => self.announce_invite(&gid),
            _ => self.unshow_group(&gid, "left the group"),
        }
    }

    fn apply_groups(&mut self, list: Vec<Group>) {
        let gids: BTreeSet<String> = list.iter().map(|g| g.gid.clone()).collect();
        let gone: Vec<String> = self
            .groups
            .keys()
            .filter(|g| !gids.contains(*g))
            .cloned()
            .collect();
        for g in list {
            self.apply_group(g);
        }
        for gid in gone {
            self.unshow_group(&gid, "the group is gone");
            self.groups.remove(&gid);
        }
    }

    fn remember(&mut self, id: &str, r: Recent) {
        if self.recent.insert(id.to_owned(), r).is_none() {
            self.recent_order.push_back(id.to_owned());
        }
        while self.recent_order.len() > RECENT {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Presence { id, presence } => {
                let (v, o) = (self.visible(&id), self.is_online(&id));
                self.presence.insert(id.clone(), presence);
                self.after_change(&id, v, o, "");
            }
            Event::BuddyInfo { buddy } => self.apply_buddy(buddy),
            Event::BuddyList { id, kind } => match kind {
                None => self.remove_buddy(&id),
                Some(k) => {
                    let (v, o) = (self.visible(&id), self.is_online(&id));
                    self.buddies.entry(id.clone()).or_default().kind = k;
                    self.nick_of(&id);
                    self.after_change(&id, v, o, "blocked");
                }
            },
            Event::Message { message } => self.on_message(message),
            Event::Delivery { id, to, state } if state == "sent" => {
                if let Some(i) = self.queued.iter().position(|(m, _)| *m == id) {
                    let (_, ex) = self.queued.remove(i).unwrap_or_default();
                    let n = self.nick_of(&to);
                    self.notice_me(&format!("queued message to {n} was sent: \"{ex}\""));
                }
            }
            Event::GroupInvite { gid, from, modes } => {
                let g = self.groups.entry(gid.clone()).or_default();
                g.state = "invited".into();
                g.inviter = Some(from);
                g.modes = modes;
                g.invite_shown = false;
                self.announce_invite(&gid);
            }
            Event::GroupState { gid, state } => self.on_group_state(gid, state),
            Event::GroupMember {
                gid,
                id,
                change,
                reason,
            } => self.on_group_member(&gid, &id, &change, reason),
            Event::GroupMessage { message, trust } => self.on_group_message(message, trust),
            Event::GroupTrust { gid, id, trust, .. } => {
                let label = trust.label();
                let chan = self.book.ensure_channel(&gid);
                let text = match self.recent.get_mut(&id) {
                    Some(r) if r.label == label => return,
                    Some(r) => {
                        r.label = label.clone();
                        let (sender, ex) = (r.sender.clone(), r.excerpt.clone());
                        let n = self.nick_of(&sender);
                        format!("message \"{ex}\" from {n} is now {label}")
                    }
                    None => {
                        let short: String = id.chars().take(8).collect();
                        format!("message {short}… (from before this session) is now {label}")
                    }
                };
                self.notice_chan(&chan, &text);
            }
            Event::GroupDelivery { .. } => {}
            Event::GroupDivergence { gid, member, peer } => {
                let chan = self.book.ensure_channel(&gid);
                let (m, p) = (self.nick_of(&member), self.nick_of(&peer));
                self.notice_chan(
                    &chan,
                    &format!("member lists disagree: {p} lists {m}, and it could not be settled"),
                );
            }
            Event::OutboxDropped {
                gid,
                to,
                own: Some(own),
            } => {
                let chan = self.book.ensure_channel(&gid);
                let n = self.nick_of(&to);
                let ex = self
                    .recent
                    .get(&own)
                    .map(|r| format!("\"{}\"", r.excerpt))
                    .unwrap_or_else(|| own.chars().take(8).collect());
                self.notice_chan(
                    &chan,
                    &format!("your message {ex} was given up for {n}: it will not reach them"),
                );
            }
            Event::FileOffer { transfer: t } => {
                let n = self.nick_of(&t.peer);
                self.notice_me(&format!(
                    "{n} offers the file \"{}\" ({}): type getfile {} in &torchat to accept, dropfile {} to decline",
                    t.name,
                    human_size(t.size),
                    t.id,
                    t.id
                ));
            }
            Event::FileState { transfer: t } if t.state != "transferring" => {
                let line = self.file_line(&t);
                self.notice_me(&line);
            }
            Event::FileRefused {
                from,
                name,
                size,
                reason,
            } => {
                let n = self.nick_of(&from);
                self.notice_me(&format!(
                    "{n} offered the file \"{name}\" ({}); refused: {reason}",
                    human_size(size)
                ));
            }
            e @ (Event::Request { .. }
            | Event::RequestMessage { .. }
            | Event::RequestClosed { .. }) => self.on_request_event(e),
            Event::TorProgress { percent, summary } if self.tor_percent != Some(percent) => {
                self.tor_percent = Some(percent);
                self.control_notice(&format!("Tor: {percent}% {summary}"));
            }
            Event::TorReady { id } => {
                self.me = Some(id.clone());
                self.control_notice(&format!("Tor is ready; you are reachable as {id}"));
            }
            Event::TorProblem { message, hint } => {
                self.control_notice(&format!("Tor problem: {message} — {hint}"));
            }
            Event::Error { message } => self.control_notice(&format!("node error: {message}")),
            Event::Lagged { missed } => {
                self.control_notice(&format!(
                    "missed {missed} events (too slow); reloading buddies and groups"
                ));
                self.call(Kind::Buddies { resync: true }, Command::Buddies);
                self.call(Kind::Groups { resync: true }, Command::Groups);
            }
            _ => {}
        }
    }

    fn on_message(&mut self, m: ApiMessage) {
        if m.direction != "in" {
            return;
        }
        let prefix = self.prefix_of(&m.sender);
        let me = self.me_nick().to_owned();
        let text = m.text.replace('\x01', "");
        if let Some(action) = text.strip_prefix("/me ") {
            let (first, rest) = action.split_once('\n').unwrap_or((action, ""));
            let line = build(&prefix, "PRIVMSG", &[&me], Some(""));
            let room = MAX_BODY.saturating_sub(line.len() + 9);
            let first = proto::truncate(first.trim_end_matches('\r'), room);
            self.send(format!("{line}\x01ACTION {}\x01", proto::clean(first)));
            for l in text_lines(&prefix, "PRIVMSG", &me, "", rest) {
                self.send(l);
            }
        } else {
            for l in text_lines(&prefix, "PRIVMSG", &me, "", &text) {
                self.send(l);
            }
        }
    }

    fn on_group_message(&mut self, m: ApiMessage, trust: Trust) {
        let gid = m.conversation.clone();
        let chan = self.book.ensure_channel(&gid);
        let own = trust == Trust::Own || self.me.as_deref() == Some(m.sender.as_str());
        if own {
            if let Some(i) = self
                .says
                .iter()
                .position(|(g, t)| *g == gid && *t == m.text)
            {
                self.says.remove(i);
            } else {
                // Said through another interface: show it as ours.
                let p = self.my_prefix();
                for l in text_lines(&p, "PRIVMSG", &chan, "", &m.text) {
                    self.send(l);
                }
            }
            self.remember(
                &m.id,
                Recent {
                    sender: m.sender,
                    excerpt: excerpt(&m.text),
                    label: "(me)".into(),
                },
            );
            return;
        }
        let label = trust.label();
        let prefix = self.prefix_of(&m.sender);
        let text = m.text.replace('\x01', "");
        let lead = format!("{label} ");
        for l in text_lines(&prefix, "PRIVMSG", &chan, &lead, &text) {
            self.send(l);
        }
        self.remember(
            &m.id,
            Recent {
                sender: m.sender,
                excerpt: excerpt(&m.text),
                label,
            },
        );
    }

    fn on_group_state(&mut self, gid: String, state: String) {
        let is_new = !self.groups.contains_key(&gid);
        let g = self.groups.entry(gid.clone()).or_default();
        let old = std::mem::replace(&mut g.state, state.clone());
        let shown = g.shown;
        match state.as_str() {
            "joined" | "joining" => {
                if shown {
                    if state == "joined" && old == "joining" {
                        let chan = self.book.ensure_channel(&gid);
                        let n = self.groups.get(&gid).map_or(0, |g| g.members.len());
                        let others = match n {
                            0 => "no other members yet".to_owned(),
                            1 => "1 other member".to_owned(),
                            n => format!("{n} other members"),
                        };
                        self.notice_chan(
                            &chan,
                            &format!("you are now a member of the group ({others})"),
                        );
                    }
                } else if is_new && self.creates > 0 {
                    g.deferred = true;
                } else {
                    self.request_show(&gid);
                }
            }
            "left" => {
                let chan = self.book.ensure_channel(&gid);
                if shown {
                    self.unshow_group(&gid, "left the group");
                } else if old == "invited" {
                    self.control_notice(&format!(
                        "the invite to {chan} is gone (declined, or the inviter left)"
                    ));
                }
            }
            _ => {}
        }
    }

    fn on_group_member(&mut self, gid: &str, id: &str, change: &str, reason: Option<String>) {
        if self.me.as_deref() == Some(id) {
            return;
        }
        let Some(g) = self.groups.get_mut(gid) else {
            return;
        };
        let shown = g.shown;
        let changed = match change {
            "joined" => g.members.insert(id.to_owned()),
            "left" => g.members.remove(id),
            _ => true,
        };
        let chan = self.book.ensure_channel(gid);
        let prefix = self.prefix_of(id);
        let nick = self.nick_of(id);
        match change {
            "joined" if changed && shown => {
                self.send(build(&prefix, "JOIN", &[&chan], None));
                if self.is_online(id) {
                    self.send(build(SERVER, "MODE", &[&chan, "+v", &nick], None));
                }
            }
            "left" if changed && shown => {
                let r = reason.unwrap_or_else(|| "left".into());
                self.send(build(&prefix, "PART", &[&chan], Some(&r)));
            }
            "declined" => {
                let t = format!("{nick} declined the invite to {chan}");
                if shown {
                    self.notice_chan(&chan, &t);
                } else {
                    self.control_notice(&t);
                }
            }
            _ => {}
        }
    }

    // ----- answers from the node -----

    fn fail(&mut self, what: &str, e: &ApiFailure) {
        self.notice_me(&format!("{what}: {} ({})", e.message, e.code));
    }

    fn on_response(&mut self, kind: Kind, r: Result<Value, ApiFailure>) {
        match (kind, r) {
            (Kind::Subscribe, Ok(_)) => {}
            (Kind::Subscribe, Err(e)) => {
                self.fail("cannot follow the node's events", &e);
                self.close("no events from the node");
            }
            (Kind::Info, Ok(v)) => {
                let id = str_field(&v, "id");
                if !id.is_empty() {
                    self.me = Some(id);
                }
            }
            (Kind::Buddies { resync }, Ok(v)) => {
                match serde_json::from_value::<Vec<Buddy>>(v) {
                    Ok(list) => self.apply_buddies(list),
                    Err(e) => self.notice_me(&format!("bad buddy list from the node: {e}")),
                }
                if !resync && !self.control_shown {
                    self.show_control();
                    let id = self.me.clone().unwrap_or_else(|| "(unknown)".into());
                    self.control_notice(&format!(
                        "Welcome! You are {id}. Type help for the commands."
                    ));
                }
            }
            (Kind::Groups { .. }, Ok(v)) => match serde_json::from_value::<Vec<Group>>(v) {
                Ok(list) => self.apply_groups(list),
                Err(e) => self.notice_me(&format!("bad group list from the node: {e}")),
            },
            (Kind::Info | Kind::Buddies { .. } | Kind::Groups { .. }, Err(e)) => {
                self.fail("the node refused to say", &e);
                if !self.control_shown {
                    self.show_control();
                }
            }
            (Kind::Send { target, id, text }, Ok(v)) => {
                match self.presence.get(&id).map(String::as_str) {
                    Some("away") => self.num("301", &[&target], "away"),
                    Some("xa") => self.num("301", &[&target], "extended away (xa)"),
                    _ => {}
                }
                if str_field(&v, "state") == "queued" {
                    let ex = excerpt(&text);
                    self.queued.push_back((str_field(&v, "id"), ex.clone()));
                    while self.queued.len() > QUEUED {
                        self.queued.pop_front();
                    }
                    self.notice_me(&format!(
                        "message to {target} queued: \"{ex}\" will be sent when {target} is online"
                    ));
                }
            }
            (Kind::Send { target, .. }, Err(e)) => {
                if e.code == "not_a_buddy" {
                    self.num(
                        "401",
                        &[&target],
                        &format!("not a buddy: add it first with 'add <id>' in {CONTROL}"),
                    );
                } else {
                    self.fail(&format!("cannot send to {target}"), &e);
                }
            }
            (Kind::Say { .. }, Ok(_)) => {}
            (Kind::Say { gid, text }, Err(e)) => {
                if let Some(i) = self.says.iter().position(|(g, t)| *g == gid && *t == text) {
                    self.says.remove(i);
                }
                let chan = self.book.ensure_channel(&gid);
                self.num(
                    "404",
                    &[&chan],
                    &format!("Cannot send to channel: {} ({})", e.message, e.code),
                );
            }
            (Kind::Accept { gid }, Ok(_)) => {
                if let Some(g) = self.groups.get_mut(&gid) {
                    if g.state == "invited" {
                        g.state = "joining".into();
                    }
                }
                self.request_show(&gid);
            }
            (Kind::Accept { gid }, Err(e)) => {
                let chan = self.book.ensure_channel(&gid);
                self.fail(&format!("cannot join {chan}"), &e);
            }
            (Kind::Leave { gid, reason }, Ok(_)) => {
                if let Some(g) = self.groups.get_mut(&gid) {
                    g.state = "left".into();
                }
                self.unshow_group(&gid, reason.as_deref().unwrap_or("left the group"));
            }
            (Kind::Leave { gid, .. }, Err(e)) => {
                let chan = self.book.ensure_channel(&gid);
                self.fail(&format!("cannot leave {chan}"), &e);
            }
            (Kind::Invite { nick, chan, reply }, r) => match (r, reply) {
                (Ok(_), None) => self.num("341", &[&nick, &chan], "Inviting"),
                (Ok(_), Some(to)) => self.reply(to, &format!("invited {nick} to {chan}")),
                (Err(e), None) if e.code == "already_member" => {
                    self.num("443", &[&nick, &chan], "is already on channel")
                }
                (Err(e), reply) => {
                    let why = if e.code == "not_online" {
                        format!("cannot invite {nick} to {chan}: {nick} must be online")
                    } else {
                        format!("cannot invite {nick} to {chan}")
                    };
                    match reply {
                        Some(to) => self.reply(to, &format!("{why}: {} ({})", e.message, e.code)),
                        None => self.fail(&why, &e),
                    }
                }
            },
            (Kind::Show { gid }, Ok(v)) => match serde_json::from_value::<Group>(v) {
                Ok(g) => self.apply_group(g),
                Err(_) => {
                    if let Some(g) = self.groups.get_mut(&gid) {
                        g.show_pending = false;
                    }
                    self.show_group(&gid);
                }
            },
            (Kind::Show { gid }, Err(e)) => {
                if let Some(g) = self.groups.get_mut(&gid) {
                    g.show_pending = false;
                }
                let chan = self.book.ensure_channel(&gid);
                self.fail(&format!("cannot show {chan}"), &e);
            }
            (Kind::Away { away }, Ok(_)) => {
                if away {
                    self.num("306", &[], "You have been marked as being away");
                } else {
                    self.num("305", &[], "You are no longer marked as being away");
                }
            }
            (Kind::Away { .. }, Err(e)) => self.fail("cannot set the status", &e),
            (Kind::Ctl { reply, op }, r) => self.on_control_response(reply, op, r),
        }
    }
}

/// `1.5 MB`-style sizes for people.
fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Gateway {
    /// One transfer as a line: number, direction and buddy, state, progress, name, path.
    fn file_line(&mut self, t: &torchat_api::Transfer) -> String {
        let n = self.nick_of(&t.peer);
        let dir = if t.direction == "send" { "to" } else { "from" };
        let pct = (t.done.saturating_mul(100))
            .checked_div(t.size)
            .unwrap_or(100);
        let mut line = format!(
            "file {} {dir} {n}: {} {pct}% of {} \"{}\"",
            t.id,
            t.state,
            human_size(t.size),
            t.name
        );
        if let Some(r) = &t.reason {
            line.push_str(&format!(" ({r})"));
        }
        if let (Some(p), "receive") = (&t.path, t.direction.as_str()) {
            line.push_str(&format!(" -> {p}"));
        }
        line
    }
}
