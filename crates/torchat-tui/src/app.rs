//! The application state machine. It does no I/O: [`App::handle`] takes an [`AppEvent`] (a key,
//! a paste, a resize, an event or a response from the node) and returns the [`Action`]s to carry
//! out (commands to send to the node, text to copy, quit). [`crate::draw`] renders it.
//!
//! Every command the app sends carries a request number it chose; the response is fed back with
//! the same number as [`AppEvent::Response`]. Commands in flight are capped at [`MAX_PENDING`].

use std::collections::{BTreeMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use serde_json::Value;
use torchat_api::{self as api, Command, Event};

use crate::input::LineEditor;
use crate::model::{
    short_gid, short_id, BuddyEntry, ChatMessage, Conversation, Delivery, GroupEntry, GroupState,
    Presence, Trust,
};

/// Messages asked for per history page.
pub const PAGE: usize = 100;
/// Most commands waiting for an answer at once.
pub const MAX_PENDING: usize = 256;
/// Delivery events for messages not yet known, kept until the message shows up.
const MAX_EARLY: usize = 64;

/// Something for the app to react to.
#[derive(Debug, Clone, PartialEq)]
pub enum AppEvent {
    /// A key was pressed.
    Key(KeyEvent),
    /// Text was pasted.
    Paste(String),
    /// The terminal has a new size.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// The node sent an event.
    Node(Event),
    /// The node answered request `id`.
    Response {
        /// The number from [`Action::Call`].
        id: u64,
        /// The result, or what went wrong.
        result: Result<Value, ResponseError>,
    },
    /// The connection to the node is gone.
    Disconnected(String),
    /// The wall clock (milliseconds since the Unix epoch), sent now and then.
    Tick(u64),
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseError {
    /// The API's error code (`not_online`, `bad_id`…), or `io` when the connection failed.
    pub code: String,
    /// Explanation.
    pub message: String,
}

/// Something for the caller to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send `cmd` to the node and feed the answer back as [`AppEvent::Response`] with `id`.
    Call {
        /// Request number.
        id: u64,
        /// The command.
        cmd: Command,
    },
    /// Put this text on the terminal's clipboard (OSC 52).
    Copy(String),
    /// Leave the UI.
    Quit,
}

/// What the main pane shows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// Our id, Tor bootstrap, how to start.
    Home,
    /// A buddy's conversation.
    Buddy(String),
    /// A group's conversation (or its invite).
    Group(String),
    /// A stranger's contact request (requests.rs).
    Request(String),
}

/// A sidebar row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SideItem {
    /// A section title.
    Header(&'static str),
    /// Something to select.
    Item(Target),
}

/// Who vouched for a message, as shown in its popup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsView {
    /// Message id.
    pub msg: String,
    /// Who wrote it.
    pub sender: String,
    /// Its text.
    pub text: String,
    /// Its trust.
    pub trust: Option<Trust>,
    /// `None` while loading; claimants with the time each copy arrived.
    pub claims: Option<Result<Vec<(String, u64)>, String>>,
}

/// The input mode.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Typing in the input line.
    Normal,
    /// Selecting a message in the conversation.
    Browse {
        /// Index into the conversation's messages.
        selected: usize,
    },
    /// The help screen.
    Help {
        /// Lines scrolled.
        scroll: u16,
    },
    /// Our id alone on the screen.
    ShowId,
    /// Who vouched for a message.
    Claims(ClaimsView),
    /// A yes/no question before a command.
    Confirm {
        /// The question.
        question: String,
        /// What to send on yes.
        cmd: Command,
        /// Said when it worked.
        done: String,
    },
}

/// How loud a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something worked.
    Info,
    /// Worth a look.
    Warn,
    /// Something failed.
    Error,
}

/// The message in the bottom line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Text.
    pub text: String,
    /// Color.
    pub level: Level,
}

/// Tor bootstrap as last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TorState {
    /// Percent.
    pub percent: u8,
    /// What is happening.
    pub summary: String,
    /// The onion service is up.
    pub ready: bool,
    /// A problem and its hint (until Tor is ready).
    pub problem: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Info,
    Buddies,
    Groups,
    History { with: String, older: bool },
    Send { to: String, text: String },
    Say { gid: String, text: String },
    Claims { msg: String },
    Create,
    Members { gid: String },
    Simple { done: String, then: After },
    Files,
    Requests,
}

#[derive(Debug, Clone)]
pub(crate) enum After {
    Nothing,
    Buddies,
    Groups,
    Status(String),
    Files,
}

/// The whole UI state.
#[derive(Debug, Clone)]
pub struct App {
    pub(crate) me: Option<String>,
    pub(crate) transport: String,
    pub(crate) version: String,
    pub(crate) connections: u64,
    pub(crate) tor: TorState,
    pub(crate) status: String,
    pub(crate) buddies: BTreeMap<String, BuddyEntry>,
    pub(crate) groups: BTreeMap<String, GroupEntry>,
    pub(crate) convs: BTreeMap<String, Conversation>,
    pub(crate) current: Target,
    pub(crate) mode: Mode,
    pub(crate) input: LineEditor,
    pub(crate) notice: Option<Notice>,
    pub(crate) size: (u16, u16),
    pub(crate) utc_offset_secs: i64,
    pub(crate) now: u64,
    /// File transfers by number.
    pub(crate) files: BTreeMap<u64, torchat_api::Transfer>,
    /// Contact requests from strangers, by id.
    pub(crate) requests: BTreeMap<String, torchat_api::ContactRequest>,
    /// A `files` request is under way.
    pub(crate) files_loading: bool,
    /// `$HOME`, for `/send ~/…`.
    pub(crate) home: Option<String>,
    pending: BTreeMap<u64, Pending>,
    next_req: u64,
    early: VecDeque<(String, Delivery)>,
    quit: bool,
    exit_error: Option<String>,
    out: Vec<Action>,
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    /// A fresh app (times shown in UTC until [`App::with_utc_offset`]).
    pub fn new() -> App {
        App {
            me: None,
            transport: String::new(),
            version: String::new(),
            connections: 0,
            tor: TorState::default(),
            status: "available".into(),
            buddies: BTreeMap::new(),
            groups: BTreeMap::new(),
            convs: BTreeMap::new(),
            current: Target::Home,
            requests: BTreeMap::new(),
            mode: Mode::Normal,
            input: LineEditor::default(),
            notice: None,
            size: (80, 24),
            utc_offset_secs: 0,
            now: 0,
            files: BTreeMap::new(),
            files_loading: false,
            home: std::env::var("HOME").ok(),
            pending: BTreeMap::new(),
            next_req: 1,
            early: VecDeque::new(),
            quit: false,
            exit_error: None,
            out: vec![],
        }
    }

    /// Shows times with this offset from UTC (seconds east).
    pub fn with_utc_offset(mut self, secs: i64) -> App {
        self.utc_offset_secs = secs;
        self
    }

    /// The first requests: our id and Tor state, buddies, groups.
    pub fn start(&mut self) -> Vec<Action> {
        self.call(Command::Info, Pending::Info);
        self.call(Command::Buddies, Pending::Buddies);
        self.call(Command::Groups, Pending::Groups);
        self.load_requests();
        std::mem::take(&mut self.out)
    }

    /// Reacts to one event.
    pub fn handle(&mut self, ev: AppEvent) -> Vec<Action> {
        match ev {
            AppEvent::Key(k) => self.on_key(k),
            AppEvent::Paste(s) => {
                if self.mode == Mode::Normal
                    && !self.is_invite()
                    && !matches!(self.current, Target::Request(_))
                {
                    self.input.insert_str(&s);
                }
            }
            AppEvent::Resize { width, height } => {
                self.size = (width, height);
                self.fix_scroll();
            }
            AppEvent::Node(e) => self.on_node(e),
            AppEvent::Response { id, result } => self.on_response(id, result),
            AppEvent::Tick(now) => self.now = now,
            AppEvent::Disconnected(why) => {
                self.exit_error = Some(why);
                self.quit = true;
                self.out.push(Action::Quit);
            }
        }
        std::mem::take(&mut self.out)
    }

    /// The user asked to leave (or the node went away).
    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// Why the app stopped, when it was not the user's choice.
    pub fn exit_error(&self) -> Option<&str> {
        self.exit_error.as_deref()
    }

    /// Our onion id, once known.
    pub fn own_id(&self) -> Option<&str> {
        self.me.as_deref()
    }

    /// What is selected.
    pub fn current(&self) -> &Target {
        &self.current
    }

    /// The input mode.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The bottom-line message.
    pub fn notice(&self) -> Option<&Notice> {
        self.notice.as_ref()
    }

    /// The text being typed.
    pub fn input_text(&self) -> String {
        self.input.text()
    }

    /// A conversation, if anything is known of it.
    pub fn conversation(&self, with: &str) -> Option<&Conversation> {
        self.convs.get(with)
    }

    /// A buddy.
    pub fn buddy(&self, id: &str) -> Option<&BuddyEntry> {
        self.buddies.get(id)
    }

    /// A group.
    pub fn group(&self, gid: &str) -> Option<&GroupEntry> {
        self.groups.get(gid)
    }

    /// Commands sent and not yet answered.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    // ----- helpers -----

    pub(crate) fn call(&mut self, cmd: Command, p: Pending) {
        if self.pending.len() >= MAX_PENDING {
            self.say(
                Level::Error,
                "too many requests waiting for the node; try again",
            );
            return;
        }
        let id = self.next_req;
        self.next_req += 1;
        self.pending.insert(id, p);
        self.out.push(Action::Call { id, cmd });
    }

    pub(crate) fn say(&mut self, level: Level, text: impl Into<String>) {
        let text: String = text.into();
        self.notice = Some(Notice {
            // Notices quote names, reasons and file names peers chose: shown safely.
            text: torchat_api::display::line(&text).into_owned(),
            level,
        });
    }

    fn is_invite(&self) -> bool {
        matches!(&self.current, Target::Group(g)
            if self.groups.get(g).is_some_and(|g| g.state == GroupState::Invited))
    }

    /// A display name for an id: "you", the buddy's alias or profile name, or the short id.
    pub fn name_of(&self, id: &str) -> String {
        if self.me.as_deref() == Some(id) {
            return "you".into();
        }
        self.buddies
            .get(id)
            .map(BuddyEntry::display_name)
            .unwrap_or_else(|| short_id(id))
    }

    /// The sidebar: Home, requests, invites, groups, buddies, blocked.
    pub fn sidebar(&self) -> Vec<SideItem> {
        let mut v = vec![SideItem::Item(Target::Home)];
        let section = |title: &'static str, items: Vec<Target>, v: &mut Vec<SideItem>| {
            if !items.is_empty() {
                v.push(SideItem::Header(title));
                v.extend(items.into_iter().map(SideItem::Item));
            }
        };
        section("Requests", self.request_targets(), &mut v);
        let groups = |pred: &dyn Fn(GroupState) -> bool| -> Vec<Target> {
            self.groups
                .values()
                .filter(|g| pred(g.state))
                .map(|g| Target::Group(g.gid.clone()))
                .collect()
        };
        section("Invites", groups(&|s| s == GroupState::Invited), &mut v);
        section("Groups", groups(&|s| s != GroupState::Invited), &mut v);
        let mut buddies: Vec<&BuddyEntry> =
            self.buddies.values().filter(|b| !b.is_blocked()).collect();
        buddies.sort_by_key(|b| (b.presence, b.display_name().to_lowercase(), b.id.clone()));
        let buddies = buddies
            .into_iter()
            .map(|b| Target::Buddy(b.id.clone()))
            .collect();
        section("Buddies", buddies, &mut v);
        let blocked = self
            .buddies
            .values()
            .filter(|b| b.is_blocked())
            .map(|b| Target::Buddy(b.id.clone()))
            .collect();
        section("Blocked", blocked, &mut v);
        v
    }

    fn targets(&self) -> Vec<Target> {
        self.sidebar()
            .into_iter()
            .filter_map(|i| match i {
                SideItem::Item(t) => Some(t),
                SideItem::Header(_) => None,
            })
            .collect()
    }

    fn move_target(&mut self, delta: isize) {
        let t = self.targets();
        let i = t.iter().position(|x| *x == self.current).unwrap_or(0) as isize;
        let n = t.len() as isize;
        let j = (i + delta).rem_euclid(n.max(1)) as usize;
        if let Some(next) = t.get(j).cloned() {
            self.select(next);
        }
    }

    /// Shows a conversation (loading its history the first time).
    pub fn select(&mut self, t: Target) {
        self.mode = Mode::Normal;
        self.notice = None;
        self.current = t.clone();
        let key = match &t {
            Target::Home | Target::Request(_) => return,
            Target::Buddy(id) => id.clone(),
            Target::Group(g) => g.clone(),
        };
        let conv = self.convs.entry(key.clone()).or_default();
        conv.unread = 0;
        if !conv.loaded && !conv.loading {
            conv.loaded = true;
            conv.loading = true;
            self.call(
                Command::History {
                    with: key.clone(),
                    limit: Some(PAGE),
                    before: None,
                },
                Pending::History {
                    with: key,
                    older: false,
                },
            );
        }
    }

    fn current_key(&self) -> Option<&str> {
        match &self.current {
            Target::Home | Target::Request(_) => None,
            Target::Buddy(id) => Some(id),
            Target::Group(g) => Some(g),
        }
    }

    fn load_older(&mut self) {
        let Some(key) = self.current_key().map(str::to_owned) else {
            return;
        };
        let Some(conv) = self.convs.get_mut(&key) else {
            return;
        };
        if !conv.more || conv.loading {
            return;
        }
        let Some(before) = conv.oldest_row() else {
            return;
        };
        conv.loading = true;
        self.call(
            Command::History {
                with: key.clone(),
                limit: Some(PAGE),
                before: Some(before),
            },
            Pending::History {
                with: key,
                older: true,
            },
        );
    }

    /// Moves a conversation's window back to its newest page (after it was paged back past
    /// [`crate::model::MAX_MESSAGES`]): the window is emptied and the newest page read.
    fn jump_to_latest(&mut self, key: &str) {
        let Some(conv) = self.convs.get_mut(key) else {
            return;
        };
        if !conv.newer || conv.loading {
            return;
        }
        conv.messages.clear();
        conv.newer = false;
        conv.scroll = 0;
        conv.loaded = true;
        conv.loading = true;
        if let Mode::Browse { .. } = self.mode {
            self.mode = Mode::Normal;
        }
        self.call(
            Command::History {
                with: key.to_owned(),
                limit: Some(PAGE),
                before: None,
            },
            Pending::History {
                with: key.to_owned(),
                older: false,
            },
        );
    }

    fn refresh_tail(&mut self, key: &str) {
        let Some(conv) = self.convs.get_mut(key) else {
            return;
        };
        // A window paged back in time is not topped up (that would leave a gap); the newest
        // page is read when it returns to the end.
        if !conv.loaded || conv.loading || conv.newer {
            return;
        }
        conv.loading = true;
        self.call(
            Command::History {
                with: key.to_owned(),
                limit: Some(PAGE),
                before: None,
            },
            Pending::History {
                with: key.to_owned(),
                older: false,
            },
        );
    }

    fn pending_for(&self, pred: impl Fn(&Pending) -> bool) -> bool {
        self.pending.values().any(pred)
    }

    fn refresh_buddies(&mut self) {
        if !self.pending_for(|p| matches!(p, Pending::Buddies)) {
            self.call(Command::Buddies, Pending::Buddies);
        }
    }

    fn refresh_groups(&mut self) {
        if !self.pending_for(|p| matches!(p, Pending::Groups)) {
            self.call(Command::Groups, Pending::Groups);
        }
    }

    /// Lines the current conversation's messages take at the chat pane's width.
    fn message_height(&self, m: &ChatMessage) -> usize {
        let width = crate::ui::chat_text_width(self.size);
        crate::ui::message_lines(self, m, width, false).len()
    }

    /// Keeps the browse selection on screen and the scroll within the content.
    fn fix_scroll(&mut self) {
        let Some(key) = self.current_key().map(str::to_owned) else {
            return;
        };
        let Some(conv) = self.convs.get(&key) else {
            return;
        };
        let height = crate::ui::chat_text_height(self, self.size);
        let heights: Vec<usize> = conv
            .messages
            .iter()
            .map(|m| self.message_height(m))
            .collect();
        let total: usize = heights.iter().sum();
        let max_scroll = total.saturating_sub(height);
        let mut scroll = conv.scroll.min(max_scroll);
        if let Mode::Browse { selected } = self.mode {
            // Lines from the bottom to the selected message's first and last line.
            let below: usize = heights.iter().skip(selected + 1).sum();
            let own = heights.get(selected).copied().unwrap_or(1);
            if below < scroll {
                scroll = below;
            } else if below + own > scroll + height {
                scroll = (below + own).saturating_sub(height);
            }
        }
        if let Some(conv) = self.convs.get_mut(&key) {
            conv.scroll = scroll;
        }
    }

    // ----- keys -----

    fn on_key(&mut self, k: KeyEvent) {
        if k.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(k.code, KeyCode::Char('c') | KeyCode::Char('q')) {
            self.quit = true;
            self.out.push(Action::Quit);
            return;
        }
        match self.mode.clone() {
            Mode::Normal => self.key_normal(k),
            Mode::Browse { selected } => self.key_browse(k, selected),
            Mode::Help { scroll } => match k.code {
                KeyCode::Up | KeyCode::Char('k') => {
                    self.mode = Mode::Help {
                        scroll: scroll.saturating_sub(1),
                    }
                }
                KeyCode::Down | KeyCode::Char('j') => {
                    self.mode = Mode::Help {
                        scroll: scroll.saturating_add(1).min(200),
                    }
                }
                KeyCode::PageUp => {
                    self.mode = Mode::Help {
                        scroll: scroll.saturating_sub(10),
                    }
                }
                KeyCode::PageDown | KeyCode::Char(' ') => {
                    self.mode = Mode::Help {
                        scroll: scroll.saturating_add(10).min(200),
                    }
                }
                _ => self.mode = Mode::Normal,
            },
            Mode::ShowId => {
                if k.code == KeyCode::Char('c') {
                    if let Some(id) = self.me.clone() {
                        self.out.push(Action::Copy(id));
                        self.say(
                            Level::Info,
                            "id copied to the clipboard (if your terminal allows OSC 52)",
                        );
                    }
                }
                self.mode = Mode::Normal;
            }
            Mode::Claims(_) => self.mode = Mode::Normal,
            Mode::Confirm { cmd, done, .. } => {
                self.mode = Mode::Normal;
                match k.code {
                    KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => {
                        let then = match &cmd {
                            Command::GroupLeave { .. } => After::Groups,
                            _ => After::Buddies,
                        };
                        self.call(cmd, Pending::Simple { done, then });
                    }
                    _ => self.say(Level::Info, "cancelled"),
                }
            }
        }
    }

    /// Tab while the input line is `/send <path>`: completes the path (to the longest common
    /// prefix of the names that match; several are listed). False if the line is not `/send`.
    fn complete_send_path(&mut self) -> bool {
        let text = self.input.text();
        let Some(arg) = text.strip_prefix("/send ") else {
            return false;
        };
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let c = crate::files::complete_path(arg, home.as_deref());
        if let Some(done) = c.completed {
            self.input.set_text(&format!("/send {done}"));
        }
        match c.candidates.len() {
            0 => self.say(Level::Info, "no file matches"),
            1 => {}
            n => {
                let shown: Vec<&str> = c.candidates.iter().take(12).map(String::as_str).collect();
                let more = if n > 12 {
                    format!(" … ({n} in all)")
                } else {
                    String::new()
                };
                self.say(Level::Info, format!("{}{more}", shown.join("  ")));
            }
        }
        true
    }

    fn key_common(&mut self, k: KeyEvent) -> bool {
        let alt = k.modifiers.contains(KeyModifiers::ALT);
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Tab => self.move_target(1),
            KeyCode::BackTab => self.move_target(-1),
            KeyCode::Down if alt => self.move_target(1),
            KeyCode::Up if alt => self.move_target(-1),
            KeyCode::Char('n') if ctrl => self.move_target(1),
            KeyCode::Char('p') if ctrl => self.move_target(-1),
            KeyCode::F(1) => self.mode = Mode::Help { scroll: 0 },
            KeyCode::F(2) => self.show_id(),
            _ => return false,
        }
        true
    }

    fn show_id(&mut self) {
        if self.me.is_some() {
            self.mode = Mode::ShowId;
        } else {
            self.say(Level::Warn, "our id is not known yet");
        }
    }

    fn key_normal(&mut self, k: KeyEvent) {
        if k.code == KeyCode::Tab && self.complete_send_path() {
            return;
        }
        if self.key_common(k) {
            return;
        }
        let plain = !k
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        if let Target::Request(id) = self.current.clone() {
            return self.key_request(k, id);
        }
        if let (true, Target::Group(gid)) = (self.is_invite(), self.current.clone()) {
            match k.code {
                KeyCode::Char('a') | KeyCode::Char('y') if plain => self.accept(&gid),
                KeyCode::Char('d') | KeyCode::Char('n') if plain => self.decline(&gid),
                KeyCode::Esc | KeyCode::Enter => {}
                _ => self.say(Level::Info, "a: accept the invite · d: decline it"),
            }
            return;
        }
        match k.code {
            KeyCode::Enter => self.submit(),
            KeyCode::Esc => self.browse(),
            KeyCode::PageUp => self.scroll_by(self.page() as isize),
            KeyCode::PageDown => self.scroll_by(-(self.page() as isize)),
            // Editing keys; anything else is ignored.
            _ => {
                self.input.handle(k);
            }
        }
    }

    /// Lines a page scrolls: the pane's height less one line of overlap.
    fn page(&self) -> usize {
        crate::ui::chat_text_height(self, self.size)
            .saturating_sub(1)
            .max(1)
    }

    fn scroll_by(&mut self, lines: isize) {
        let Some(key) = self.current_key().map(str::to_owned) else {
            return;
        };
        let height = crate::ui::chat_text_height(self, self.size);
        let total: usize = match self.convs.get(&key) {
            Some(c) => c.messages.iter().map(|m| self.message_height(m)).sum(),
            None => return,
        };
        let max = total.saturating_sub(height);
        let Some(conv) = self.convs.get_mut(&key) else {
            return;
        };
        let want = conv.scroll as isize + lines;
        conv.scroll = want.clamp(0, max as isize) as usize;
        if lines > 0 && want >= max as isize {
            self.load_older();
        }
        if lines < 0 && want <= 0 {
            self.jump_to_latest(&key);
        }
    }

    fn browse(&mut self) {
        let Some(key) = self.current_key() else {
            self.say(Level::Info, "select a conversation first (Tab)");
            return;
        };
        let n = self.convs.get(key).map_or(0, |c| c.messages.len());
        if n == 0 {
            self.say(Level::Info, "no messages to select");
            return;
        }
        // Start at the newest message someone else wrote in a group, or the newest.
        let conv = &self.convs[key];
        let selected = conv
            .messages
            .iter()
            .rposition(ChatMessage::is_incoming_group)
            .unwrap_or(n - 1);
        self.mode = Mode::Browse { selected };
        self.fix_scroll();
    }

    fn key_browse(&mut self, k: KeyEvent, selected: usize) {
        if self.key_common(k) {
            return;
        }
        let n = self
            .current_key()
            .and_then(|key| self.convs.get(key))
            .map_or(0, |c| c.messages.len());
        if n == 0 {
            self.mode = Mode::Normal;
            return;
        }
        let selected = selected.min(n - 1);
        let moved = |d: isize| (selected as isize + d).clamp(0, n as isize - 1) as usize;
        let next = match k.code {
            KeyCode::Up | KeyCode::Char('k') => {
                if selected == 0 {
                    self.load_older();
                }
                moved(-1)
            }
            KeyCode::Down
            | KeyCode::Char('j')
            | KeyCode::PageDown
            | KeyCode::End
            | KeyCode::Char('G')
                if selected == n - 1 =>
            {
                // At the end of a window paged back in time: back to the newest messages.
                if let Some(key) = self.current_key().map(str::to_owned) {
                    self.jump_to_latest(&key);
                }
                return;
            }
            KeyCode::Down | KeyCode::Char('j') => moved(1),
            KeyCode::PageUp => moved(-10),
            KeyCode::PageDown => moved(10),
            KeyCode::Home | KeyCode::Char('g') => 0,
            KeyCode::End | KeyCode::Char('G') => n - 1,
            KeyCode::Enter | KeyCode::Char('c') | KeyCode::Char('v') => {
                self.open_claims(selected);
                return;
            }
            KeyCode::Char('?') => {
                self.mode = Mode::Help { scroll: 0 };
                return;
            }
            _ => {
                // Esc, i, q and anything else: back to typing.
                self.mode = Mode::Normal;
                return;
            }
        };
        self.mode = Mode::Browse { selected: next };
        self.fix_scroll();
    }

    fn open_claims(&mut self, index: usize) {
        let Some(m) = self
            .current_key()
            .and_then(|k| self.convs.get(k))
            .and_then(|c| c.messages.get(index))
            .cloned()
        else {
            return;
        };
        if !m.is_incoming_group() || m.id.is_empty() {
            self.say(
                Level::Info,
                "claims exist for group messages someone else wrote",
            );
            return;
        }
        self.mode = Mode::Claims(ClaimsView {
            msg: m.id.clone(),
            sender: m.sender.clone(),
            text: m.text.clone(),
            trust: m.trust,
            claims: None,
        });
        self.call(
            Command::Claims { msg: m.id.clone() },
            Pending::Claims { msg: m.id },
        );
    }

    fn submit(&mut self) {
        let line = self.input.text();
        if line.trim().is_empty() {
            return;
        }
        self.notice = None;
        if let Some(cmd) = line.strip_prefix('/') {
            if !cmd.starts_with('/') {
                self.input.take();
                self.command(cmd);
                return;
            }
        }
        let text = match line.strip_prefix("//") {
            Some(rest) => format!("/{rest}"),
            None => line.clone(),
        };
        match self.current.clone() {
            Target::Home | Target::Request(_) => {
                // Consumed, not kept for later: it would be sent glued to the next message.
                self.input.take();
                self.say(
                    Level::Info,
                    "not sent: select a buddy or a group to write to (Tab), or type /help",
                );
            }
            Target::Buddy(to) => {
                self.input.take();
                self.call(
                    Command::Send {
                        to: to.clone(),
                        text: text.clone(),
                    },
                    Pending::Send { to, text },
                );
                self.jump_to_bottom();
            }
            Target::Group(gid) => {
                let state = self.groups.get(&gid).map(|g| g.state);
                if state != Some(GroupState::Joined) {
                    self.say(
                        Level::Warn,
                        "you can write to a group once you have joined it",
                    );
                    return;
                }
                self.input.take();
                self.call(
                    Command::GroupSay {
                        gid: gid.clone(),
                        text: text.clone(),
                    },
                    Pending::Say { gid, text },
                );
                self.jump_to_bottom();
            }
        }
    }

    fn jump_to_bottom(&mut self) {
        if let Some(key) = self.current_key().map(str::to_owned) {
            if let Some(c) = self.convs.get_mut(&key) {
                c.scroll = 0;
            }
        }
    }

    /// A buddy's id from an argument: an id, or a buddy's name.
    fn resolve_id(&self, arg: &str) -> String {
        let arg = arg.trim().trim_end_matches(".onion");
        if self.buddies.contains_key(arg) {
            return arg.to_owned();
        }
        let lower = arg.to_lowercase();
        let by_name: Vec<&BuddyEntry> = self
            .buddies
            .values()
            .filter(|b| b.display_name().to_lowercase() == lower)
            .collect();
        match by_name.as_slice() {
            [one] => one.id.clone(),
            _ => arg.to_owned(),
        }
    }

    fn current_buddy(&self, arg: &str) -> Option<String> {
        if !arg.is_empty() {
            return Some(self.resolve_id(arg));
        }
        match &self.current {
            Target::Buddy(id) => Some(id.clone()),
            _ => None,
        }
    }

    fn current_group(&self) -> Option<String> {
        match &self.current {
            Target::Group(g) => Some(g.clone()),
            _ => None,
        }
    }

    pub(crate) fn simple(&mut self, cmd: Command, done: String, then: After) {
        self.call(cmd, Pending::Simple { done, then });
    }

    fn accept(&mut self, gid: &str) {
        let done = format!("joining {}", short_gid(gid));
        self.simple(
            Command::GroupAccept {
                gid: gid.to_owned(),
            },
            done,
            After::Groups,
        );
    }

    fn decline(&mut self, gid: &str) {
        let done = format!("declined the invite to {}", short_gid(gid));
        self.simple(
            Command::GroupDecline {
                gid: gid.to_owned(),
            },
            done,
            After::Groups,
        );
    }

    fn command(&mut self, line: &str) {
        let line = line.trim();
        let (name, rest) = match line.split_once(char::is_whitespace) {
            Some((n, r)) => (n, r.trim()),
            None => (line, ""),
        };
        let usage = |s: &str| format!("usage: {s}");
        match name.to_lowercase().as_str() {
            "help" | "h" | "?" | "keys" => self.mode = Mode::Help { scroll: 0 },
            "quit" | "q" | "exit" => {
                self.quit = true;
                self.out.push(Action::Quit);
            }
            "id" | "me" | "whoami" => self.show_id(),
            "add" => {
                let mut words = rest.split_whitespace();
                let Some(id) = words.next() else {
                    return self.say(Level::Warn, usage("/add <onion id> [alias]"));
                };
                let alias: Vec<&str> = words.collect();
                let alias = (!alias.is_empty()).then(|| alias.join(" "));
                let id = id.trim_end_matches(".onion").to_owned();
                let done = format!("added {}", short_id(&id));
                self.simple(Command::Add { id, alias }, done, After::Buddies);
            }
            "remove" | "delete" | "del" => match self.current_buddy(rest) {
                Some(id) => {
                    self.mode = Mode::Confirm {
                        question: format!(
                            "Remove {} ({}) from your buddies?",
                            self.name_of(&id),
                            short_id(&id)
                        ),
                        done: format!("removed {}", short_id(&id)),
                        cmd: Command::Remove { id },
                    }
                }
                None => self.say(Level::Warn, usage("/remove [id] (default: this buddy)")),
            },
            "block" => match self.current_buddy(rest) {
                Some(id) => {
                    self.mode = Mode::Confirm {
                        question: format!(
                            "Block {} ({})? They will not reach you.",
                            self.name_of(&id),
                            short_id(&id)
                        ),
                        done: format!("blocked {}", short_id(&id)),
                        cmd: Command::Block { id },
                    }
                }
                None => self.say(Level::Warn, usage("/block [id] (default: this buddy)")),
            },
            "unblock" => match self.current_buddy(rest) {
                Some(id) => {
                    let done = format!("unblocked {}", short_id(&id));
                    self.simple(Command::Unblock { id }, done, After::Buddies)
                }
                None => self.say(Level::Warn, usage("/unblock [id] (default: this buddy)")),
            },
            "status" | "available" | "away" | "xa" | "back" => {
                let s = match (name, rest) {
                    ("status", r) => r.to_lowercase(),
                    ("back", _) => "available".into(),
                    (n, _) => n.to_lowercase(),
                };
                let s = match s.as_str() {
                    "online" | "avail" => "available".to_owned(),
                    _ => s,
                };
                if !["available", "away", "xa"].contains(&s.as_str()) {
                    return self.say(Level::Warn, usage("/status available|away|xa"));
                }
                self.simple(
                    Command::SetStatus { status: s.clone() },
                    format!("status: {s}"),
                    After::Status(s),
                );
            }
            "profile" | "name" => {
                let (n, t) = match rest.split_once('|') {
                    Some((n, t)) => (n.trim(), t.trim()),
                    None => (rest, ""),
                };
                if n.is_empty() {
                    return self.say(Level::Warn, usage("/profile <name> [| <text>]"));
                }
                self.simple(
                    Command::SetProfile {
                        name: n.to_owned(),
                        text: t.to_owned(),
                    },
                    format!("profile: {n}"),
                    After::Nothing,
                );
            }
            "group" | "create" | "newgroup" => {
                let modes = match rest {
                    "" | "create" | "new" => vec![],
                    "noredundancy" | "--no-redundancy" | "no-redundancy" => {
                        vec!["noredundancy".to_owned()]
                    }
                    _ => return self.say(Level::Warn, usage("/group [noredundancy]")),
                };
                self.call(Command::GroupCreate { modes }, Pending::Create);
            }
            "invite" => {
                let Some(gid) = self.current_group() else {
                    return self.say(Level::Warn, "select the group first, then /invite <id>");
                };
                if rest.is_empty() {
                    return self.say(Level::Warn, usage("/invite <buddy id or name>"));
                }
                let id = self.resolve_id(rest);
                let done = format!("invited {} to {}", self.name_of(&id), short_gid(&gid));
                self.simple(Command::GroupInvite { gid, id }, done, After::Nothing);
            }
            "accept" | "join" | "decline" => {
                let gid = if rest.is_empty() {
                    self.current_group()
                } else {
                    Some(rest.to_owned())
                };
                match gid {
                    Some(g) if name == "decline" => self.decline(&g),
                    Some(g) => self.accept(&g),
                    None => self.say(Level::Warn, usage("/accept or /decline on an invite")),
                }
            }
            "leave" | "part" => {
                let Some(gid) = self.current_group() else {
                    return self.say(Level::Warn, "select the group to leave first");
                };
                let reason = (!rest.is_empty()).then(|| rest.to_owned());
                self.mode = Mode::Confirm {
                    question: format!("Leave the group {}?", short_gid(&gid)),
                    done: format!("left {}", short_gid(&gid)),
                    cmd: Command::GroupLeave { gid, reason },
                };
            }
            "claims" | "who" | "vouch" => {
                let idx = self
                    .current_key()
                    .and_then(|k| self.convs.get(k))
                    .and_then(|c| c.messages.iter().rposition(ChatMessage::is_incoming_group));
                match idx {
                    Some(i) => self.open_claims(i),
                    None => self.say(
                        Level::Info,
                        "no group message to show; Esc selects a message, then c",
                    ),
                }
            }
            "members" => {
                let Some(gid) = self.current_group() else {
                    return self.say(Level::Warn, "select a group first");
                };
                self.call(
                    Command::GroupMembers { gid: gid.clone() },
                    Pending::Members { gid },
                );
            }
            "" => {}
            f if self.file_command(f, rest) => {}
            other => self.say(
                Level::Warn,
                format!("unknown command /{other} (F1 lists the commands; // sends a /)"),
            ),
        }
    }

    // ----- responses -----

    fn on_response(&mut self, id: u64, result: Result<Value, ResponseError>) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let v = match result {
            Ok(v) => v,
            Err(e) => return self.on_failure(p, e),
        };
        match p {
            Pending::Info => self.apply_info(&v),
            Pending::Requests => self.set_requests(v),
            Pending::Buddies => {
                if let Ok(list) = serde_json::from_value::<Vec<api::Buddy>>(v) {
                    self.buddies = list
                        .iter()
                        .map(|b| (b.id.clone(), BuddyEntry::from_api(b)))
                        .collect();
                }
            }
            Pending::Groups => {
                if let Ok(list) = serde_json::from_value::<Vec<api::Group>>(v) {
                    self.groups = list
                        .iter()
                        .map(|g| (g.gid.clone(), GroupEntry::from_api(g)))
                        .collect();
                }
            }
            Pending::Members { gid } => {
                if let Ok(g) = serde_json::from_value::<api::Group>(v) {
                    let names: Vec<String> = g.members.iter().map(|m| self.name_of(m)).collect();
                    self.groups.insert(gid.clone(), GroupEntry::from_api(&g));
                    self.say(
                        Level::Info,
                        format!("{} members: you, {}", short_gid(&gid), names.join(", ")),
                    );
                }
            }
            Pending::History { with, older } => {
                let page = serde_json::from_value::<Vec<api::Message>>(v).unwrap_or_default();
                self.apply_history(&with, &page, older);
            }
            Pending::Send { to, text } => {
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                let state = Delivery::parse(v["state"].as_str().unwrap_or("sent"));
                let m = ChatMessage {
                    row: 0,
                    id,
                    sender: self.me.clone().unwrap_or_default(),
                    outgoing: true,
                    text,
                    at: self.now_guess(&to),
                    delivery: Some(state),
                    trust: None,
                    claimants: vec![],
                    notice: false,
                };
                self.add_message(&to, m);
            }
            Pending::Say { gid, text } => {
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                let m = ChatMessage {
                    row: 0,
                    id,
                    sender: self.me.clone().unwrap_or_default(),
                    outgoing: true,
                    text,
                    at: self.now_guess(&gid),
                    delivery: Some(Delivery::Queued),
                    trust: Some(Trust::Own),
                    claimants: vec![],
                    notice: false,
                };
                self.add_message(&gid, m);
            }
            Pending::Claims { msg } => {
                let list: Vec<(String, u64)> = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|c| {
                                (
                                    c["claimant"].as_str().unwrap_or_default().to_owned(),
                                    c["at"].as_u64().unwrap_or(0),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if let Mode::Claims(cv) = &mut self.mode {
                    if cv.msg == msg {
                        cv.claims = Some(Ok(list));
                    }
                }
            }
            Pending::Create => {
                let gid = v["gid"].as_str().unwrap_or_default().to_owned();
                if gid.is_empty() {
                    return;
                }
                self.groups
                    .entry(gid.clone())
                    .or_insert_with(|| GroupEntry::bare(&gid, GroupState::Joined));
                self.select(Target::Group(gid.clone()));
                self.say(
                    Level::Info,
                    format!(
                        "created {}: /invite <buddy> to add members",
                        short_gid(&gid)
                    ),
                );
                self.refresh_groups();
            }
            Pending::Files => self.apply_files(v),
            Pending::Simple { done, then } => {
                self.say(Level::Info, done);
                match then {
                    After::Nothing => {}
                    After::Buddies => self.refresh_buddies(),
                    After::Groups => self.refresh_groups(),
                    After::Status(s) => self.status = s,
                    After::Files => self.after_files(),
                }
            }
        }
    }

    fn on_failure(&mut self, p: Pending, e: ResponseError) {
        let what = match &p {
            Pending::Info => "info",
            Pending::Requests => "contact requests",
            Pending::Buddies => "buddy list",
            Pending::Groups => "group list",
            Pending::History { with, .. } => {
                if let Some(c) = self.convs.get_mut(with) {
                    c.loading = false;
                }
                "history"
            }
            Pending::Send { .. } => "not sent",
            Pending::Say { .. } => "not sent",
            Pending::Claims { msg } => {
                if let Mode::Claims(cv) = &mut self.mode {
                    if cv.msg == *msg {
                        cv.claims = Some(Err(e.message.clone()));
                    }
                }
                "claims"
            }
            Pending::Create => "group not created",
            Pending::Members { .. } => "members",
            Pending::Simple { .. } => "failed",
            Pending::Files => {
                self.files_loading = false;
                "file list"
            }
        };
        self.say(Level::Error, format!("{what}: {} ({})", e.message, e.code));
        // A message that was not sent goes back into the input line, unless something else is
        // being typed.
        if let Pending::Send { text, .. } | Pending::Say { text, .. } = p {
            if self.input.is_empty() {
                self.input.set_text(&text);
            }
        }
    }

    fn apply_info(&mut self, v: &Value) {
        if let Some(id) = v["id"].as_str() {
            self.me = Some(id.to_owned());
        }
        self.transport = v["transport"].as_str().unwrap_or_default().to_owned();
        self.version = v["version"].as_str().unwrap_or_default().to_owned();
        self.connections = v["connections"].as_u64().unwrap_or(0);
        let t = &v["tor"];
        self.tor.percent = t["percent"].as_u64().unwrap_or(0).min(100) as u8;
        self.tor.summary = t["summary"].as_str().unwrap_or_default().to_owned();
        self.tor.ready = t["ready"].as_bool().unwrap_or(false);
        self.tor.problem = match (
            t["problem"]["message"].as_str(),
            t["problem"]["hint"].as_str(),
        ) {
            (Some(m), h) => Some((m.to_owned(), h.unwrap_or_default().to_owned())),
            _ => None,
        };
    }

    fn apply_history(&mut self, with: &str, page: &[api::Message], older: bool) {
        let of = self.groups.get(with).map(|g| g.members.len() as u32);
        let page: Vec<(ChatMessage, usize)> = page
            .iter()
            .map(|m| {
                let mut cm = ChatMessage::from_api(m);
                if let (Some(Delivery::Delivered { of: o, .. }), Some(n)) = (&mut cm.delivery, of) {
                    *o = Some(n);
                }
                let h = if older { self.message_height(&cm) } else { 0 };
                (cm, h)
            })
            .collect();
        let before = if older { self.content_height(with) } else { 0 };
        let conv = self.convs.entry(with.to_owned()).or_default();
        conv.loading = false;
        conv.loaded = true;
        if older || conv.messages.iter().all(|m| m.notice) {
            conv.more = page.len() >= PAGE;
        }
        let mut added = 0;
        for (cm, h) in page {
            if conv.merge(cm) {
                added += h;
            }
        }
        if older {
            // An older page can push the newest messages out of the window: the lines they
            // took below the view go, so the view stays where it was.
            let removed = (before + added).saturating_sub(self.content_height(with));
            if let Some(conv) = self.convs.get_mut(with) {
                conv.scroll = conv.scroll.saturating_sub(removed);
            }
        }
        self.apply_early(with);
        self.fix_scroll();
    }

    /// Lines a conversation's loaded messages take.
    fn content_height(&self, key: &str) -> usize {
        self.convs.get(key).map_or(0, |c| {
            c.messages.iter().map(|m| self.message_height(m)).sum()
        })
    }

    /// A time for a message we just sent or a notice: the clock, or the newest message's time.
    fn now_guess(&self, key: &str) -> u64 {
        self.convs
            .get(key)
            .map_or(0, Conversation::last_at)
            .max(self.now)
    }

    /// Adds a message; counts it unread when not shown; keeps a scrolled-up view still.
    fn add_message(&mut self, key: &str, m: ChatMessage) {
        let shown = self.current_key() == Some(key);
        let incoming = !m.outgoing && !m.notice;
        let height = self.message_height(&m);
        let conv = self.convs.entry(key.to_owned()).or_default();
        if conv.merge(m) {
            if !shown && incoming {
                conv.unread += 1;
            }
            if shown && conv.scroll > 0 {
                conv.scroll += height;
            }
            if let Mode::Browse { selected } = &mut self.mode {
                if shown {
                    // A message inserted before the selection shifts it.
                    *selected = (*selected).min(conv.messages.len().saturating_sub(1));
                }
            }
        }
        self.apply_early(key);
    }

    fn apply_early(&mut self, key: &str) {
        let Some(conv) = self.convs.get_mut(key) else {
            return;
        };
        self.early.retain(|(id, d)| match conv.find(id) {
            Some(i) => {
                if let Some(cur) = &mut conv.messages[i].delivery {
                    cur.advance(d.clone());
                } else {
                    conv.messages[i].delivery = Some(d.clone());
                }
                false
            }
            None => true,
        });
    }

    fn notice_in(&mut self, key: &str, text: String) {
        let at = self.now_guess(key);
        self.add_message(key, ChatMessage::notice(text, at));
    }

    // ----- node events -----

    fn on_node(&mut self, e: Event) {
        match e {
            Event::TorProgress { percent, summary } => {
                self.tor.percent = percent.min(100);
                self.tor.summary = summary;
            }
            Event::TorReady { id } => {
                self.tor.ready = true;
                self.tor.percent = 100;
                self.tor.problem = None;
                if self.me.is_none() {
                    self.me = Some(id);
                }
                self.say(Level::Info, "Tor is ready: buddies can reach you");
            }
            Event::TorProblem { message, hint } => {
                self.say(Level::Error, format!("Tor: {message} — {hint}"));
                self.tor.problem = Some((message, hint));
            }
            Event::Presence { id, presence } => {
                let known = self.buddies.contains_key(&id);
                self.buddies
                    .entry(id.clone())
                    .or_insert_with(|| BuddyEntry::bare(&id))
                    .presence = Presence::parse(&presence);
                if !known {
                    self.refresh_buddies();
                }
            }
            Event::BuddyInfo { buddy } => {
                self.buddies
                    .insert(buddy.id.clone(), BuddyEntry::from_api(&buddy));
            }
            Event::BuddyList { id, kind } => match kind {
                None => {
                    if self.buddies.remove(&id).is_some() {
                        self.say(
                            Level::Info,
                            format!("{} is no longer a buddy", short_id(&id)),
                        );
                    }
                    if self.current == Target::Buddy(id) {
                        self.current = Target::Home;
                        self.mode = Mode::Normal;
                    }
                }
                Some(k) => {
                    let known = self.buddies.contains_key(&id);
                    self.buddies
                        .entry(id.clone())
                        .or_insert_with(|| BuddyEntry::bare(&id))
                        .kind = k.clone();
                    if !known {
                        if k == "temporary" {
                            self.say(
                                Level::Info,
                                format!(
                                    "{} added you; /add to keep them as a buddy",
                                    short_id(&id)
                                ),
                            );
                        }
                        self.refresh_buddies();
                    }
                }
            },
            Event::Message { message } => {
                let key = message.conversation.clone();
                self.add_message(&key, ChatMessage::from_api(&message));
            }
            Event::Delivery { id, to, state } => {
                let d = Delivery::parse(&state);
                let found = self.convs.get_mut(&to).and_then(|c| {
                    let i = c.find(&id)?;
                    c.messages[i]
                        .delivery
                        .get_or_insert(Delivery::Queued)
                        .advance(d.clone());
                    Some(())
                });
                if found.is_none() {
                    self.early.push_back((id, d));
                    while self.early.len() > MAX_EARLY {
                        self.early.pop_front();
                    }
                    // Sent by another client: re-read the conversation's end.
                    let ours =
                        self.pending_for(|p| matches!(p, Pending::Send { to: t, .. } if *t == to));
                    if !ours {
                        self.refresh_tail(&to);
                    }
                }
            }
            Event::GroupInvite { gid, from, modes } => {
                let g = self
                    .groups
                    .entry(gid.clone())
                    .or_insert_with(|| GroupEntry::bare(&gid, GroupState::Invited));
                g.state = GroupState::Invited;
                g.inviter = Some(from.clone());
                g.modes = modes;
                self.say(
                    Level::Warn,
                    format!(
                        "{} invites you to the group {}: select it (Tab), then a accept · d decline",
                        self.name_of(&from),
                        short_gid(&gid)
                    ),
                );
            }
            Event::GroupState { gid, state } => {
                let st = GroupState::parse(&state);
                let known = self.groups.contains_key(&gid);
                let g = self
                    .groups
                    .entry(gid.clone())
                    .or_insert_with(|| GroupEntry::bare(&gid, st));
                g.state = st;
                if st == GroupState::Joined || !known {
                    self.call(
                        Command::GroupMembers { gid: gid.clone() },
                        Pending::Members { gid: gid.clone() },
                    );
                }
                if st == GroupState::Left && self.current == Target::Group(gid.clone()) {
                    self.mode = Mode::Normal;
                }
                if st == GroupState::Joined {
                    self.say(Level::Info, format!("joined the group {}", short_gid(&gid)));
                }
            }
            Event::GroupMember {
                gid,
                id,
                change,
                reason,
            } => {
                let name = self.name_of(&id);
                let g = self
                    .groups
                    .entry(gid.clone())
                    .or_insert_with(|| GroupEntry::bare(&gid, GroupState::Joined));
                let text = match change.as_str() {
                    "joined" => {
                        if !g.members.contains(&id) {
                            g.members.push(id.clone());
                        }
                        format!("{name} joined")
                    }
                    "declined" => {
                        g.members.retain(|m| *m != id);
                        format!("{name} declined the invite")
                    }
                    _ => {
                        g.members.retain(|m| *m != id);
                        match reason {
                            Some(r) if !r.is_empty() => format!("{name} left ({r})"),
                            _ => format!("{name} left"),
                        }
                    }
                };
                self.notice_in(&gid, text);
            }
            Event::GroupMessage { message, trust } => {
                let key = message.conversation.clone();
                let mut m = ChatMessage::from_api(&message);
                m.trust = Some(trust);
                if m.outgoing {
                    let of = self.groups.get(&key).map(|g| g.members.len() as u32);
                    m.delivery = Some(match of {
                        Some(0) => Delivery::Delivered { k: 0, of: Some(0) },
                        _ => Delivery::Queued,
                    });
                }
                if m.trust.as_ref().is_some_and(Trust::is_unconfirmed) {
                    let name = self.name_of(&m.sender);
                    self.say(
                        Level::Error,
                        format!(
                            "UNCONFIRMED message claiming to be from {name} in {}: it may be forged",
                            short_gid(&key)
                        ),
                    );
                }
                self.add_message(&key, m);
            }
            Event::GroupTrust {
                gid,
                id,
                trust,
                claimants,
            } => {
                if let Some(c) = self.convs.get_mut(&gid) {
                    if let Some(i) = c.find(&id) {
                        let m = &mut c.messages[i];
                        m.trust = Some(trust);
                        m.claimants = claimants;
                    }
                }
            }
            Event::GroupDelivery {
                gid,
                id,
                delivered,
                of,
            } => {
                // Only acknowledgements make a message delivered; before the first one it is sent.
                let d = if delivered == 0 && of > 0 {
                    Delivery::Sent
                } else {
                    Delivery::Delivered {
                        k: delivered,
                        of: Some(of),
                    }
                };
                let found = self.convs.get_mut(&gid).and_then(|c| {
                    let i = c.find(&id)?;
                    c.messages[i]
                        .delivery
                        .get_or_insert(Delivery::Queued)
                        .advance(d.clone());
                    Some(())
                });
                if found.is_none() {
                    self.early.push_back((id, d));
                    while self.early.len() > MAX_EARLY {
                        self.early.pop_front();
                    }
                }
            }
            Event::GroupDivergence { gid, member, peer } => {
                let text = format!(
                    "{} lists {} as a member of {} and we could not settle it",
                    self.name_of(&peer),
                    self.name_of(&member),
                    short_gid(&gid)
                );
                self.say(Level::Warn, text);
            }
            Event::OutboxDropped { gid, to, own } => {
                let text = format!(
                    "gave up sending {} to {} in {}",
                    if own.is_some() {
                        "your message"
                    } else {
                        "a relayed message"
                    },
                    self.name_of(&to),
                    short_gid(&gid)
                );
                self.say(Level::Warn, text);
            }
            e @ (Event::FileOffer { .. }
            | Event::FileState { .. }
            | Event::FileProgress { .. }
            | Event::FileRefused { .. }) => self.on_file_event(e),
            e @ (Event::Request { .. }
            | Event::RequestMessage { .. }
            | Event::RequestClosed { .. }) => self.on_request_event(e),
            Event::Error { message } => self.say(Level::Error, format!("node: {message}")),
            Event::Lagged { missed } => {
                self.say(Level::Warn, format!("missed {missed} events; reloading"));
                self.load_requests();
                self.refresh_buddies();
                self.refresh_groups();
                self.call(Command::Info, Pending::Info);
                let keys: Vec<String> = self.convs.keys().cloned().collect();
                for k in keys {
                    if Some(k.as_str()) == self.current_key() {
                        self.refresh_tail(&k);
                    } else if let Some(c) = self.convs.get_mut(&k) {
                        if !c.loading {
                            c.loaded = false;
                        }
                    }
                }
            }
            _ => {}
        }
    }
}
