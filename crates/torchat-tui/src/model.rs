//! What the UI knows about the node: buddies, groups and conversations, as plain data built
//! from control-API values.

use torchat_api as api;
use torchat_api::display;

/// A buddy's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Presence {
    /// Connected and available.
    Available,
    /// Connected, away.
    Away,
    /// Connected, extended away.
    Xa,
    /// Handshake in progress.
    Handshake,
    /// Trying to connect.
    Connecting,
    /// Not connected.
    Offline,
}

impl Presence {
    /// From the API's word (anything unknown counts as offline).
    pub fn parse(s: &str) -> Presence {
        match s {
            "available" => Presence::Available,
            "away" => Presence::Away,
            "xa" => Presence::Xa,
            "handshake" => Presence::Handshake,
            "connecting" => Presence::Connecting,
            _ => Presence::Offline,
        }
    }

    /// The API's word.
    pub fn label(self) -> &'static str {
        match self {
            Presence::Available => "available",
            Presence::Away => "away",
            Presence::Xa => "xa",
            Presence::Handshake => "handshake",
            Presence::Connecting => "connecting",
            Presence::Offline => "offline",
        }
    }

    /// One-column symbol for lists.
    pub fn symbol(self) -> &'static str {
        match self {
            Presence::Available => "●",
            Presence::Away => "◐",
            Presence::Xa => "◌",
            Presence::Handshake => "↔",
            Presence::Connecting => "…",
            Presence::Offline => "○",
        }
    }

    /// Connected (messages go out now).
    pub fn is_online(self) -> bool {
        matches!(self, Presence::Available | Presence::Away | Presence::Xa)
    }
}

/// A buddy list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuddyEntry {
    /// Onion id.
    pub id: String,
    /// `permanent`, `temporary` or `blocked`.
    pub kind: String,
    /// Our name for it.
    pub alias: Option<String>,
    /// Presence.
    pub presence: Presence,
    /// Its profile name.
    pub name: Option<String>,
    /// Its profile text.
    pub text: Option<String>,
    /// Its client software.
    pub client: Option<String>,
    /// Messages waiting for it.
    pub queued: usize,
}

impl BuddyEntry {
    /// An entry known only by id.
    pub fn bare(id: &str) -> BuddyEntry {
        BuddyEntry {
            id: id.to_owned(),
            kind: "permanent".into(),
            alias: None,
            presence: Presence::Offline,
            name: None,
            text: None,
            client: None,
            queued: 0,
        }
    }

    /// From the API. Names and texts are what peers sent: made safe to show here (control
    /// and bidi characters replaced, see `torchat_api::display`).
    pub fn from_api(b: &api::Buddy) -> BuddyEntry {
        let safe = |s: &Option<String>| s.as_deref().map(|s| display::line(s).into_owned());
        BuddyEntry {
            id: b.id.clone(),
            kind: b.kind.clone(),
            alias: safe(&b.alias).filter(|a| !a.trim().is_empty()),
            presence: Presence::parse(&b.presence),
            name: safe(&b.name).filter(|n| !n.trim().is_empty()),
            text: safe(&b.text).filter(|t| !t.trim().is_empty()),
            client: safe(&b.client),
            queued: b.queued,
        }
    }

    /// Blocked ids are listed apart.
    pub fn is_blocked(&self) -> bool {
        self.kind == "blocked"
    }

    /// Alias, else profile name, else the (shortened) id.
    pub fn display_name(&self) -> String {
        self.alias
            .clone()
            .or_else(|| self.name.clone())
            .unwrap_or_else(|| short_id(&self.id))
    }
}

/// A group's state as we see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    /// We were invited and have not answered.
    Invited,
    /// We accepted; joining.
    Joining,
    /// Member.
    Joined,
    /// We left.
    Left,
}

impl GroupState {
    /// From the API's word.
    pub fn parse(s: &str) -> GroupState {
        match s {
            "invited" => GroupState::Invited,
            "joining" => GroupState::Joining,
            "joined" => GroupState::Joined,
            _ => GroupState::Left,
        }
    }

    /// The API's word.
    pub fn label(self) -> &'static str {
        match self {
            GroupState::Invited => "invited",
            GroupState::Joining => "joining",
            GroupState::Joined => "joined",
            GroupState::Left => "left",
        }
    }
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group id (UUID).
    pub gid: String,
    /// Our state.
    pub state: GroupState,
    /// Modes, e.g. `noredundancy`.
    pub modes: Vec<String>,
    /// Members other than us.
    pub members: Vec<String>,
    /// Who invited us.
    pub inviter: Option<String>,
}

impl GroupEntry {
    /// A group known only by id.
    pub fn bare(gid: &str, state: GroupState) -> GroupEntry {
        GroupEntry {
            gid: gid.to_owned(),
            state,
            modes: vec![],
            members: vec![],
            inviter: None,
        }
    }

    /// From the API.
    pub fn from_api(g: &api::Group) -> GroupEntry {
        GroupEntry {
            gid: g.gid.clone(),
            state: GroupState::parse(&g.state),
            modes: g.modes.clone(),
            members: g.members.clone(),
            inviter: g.inviter.clone(),
        }
    }

    /// `#` and the first block of the UUID.
    pub fn short_name(&self) -> String {
        short_gid(&self.gid)
    }
}

/// `#` and the first block of a group id.
pub fn short_gid(gid: &str) -> String {
    let head: String = gid.chars().take_while(|c| *c != '-').take(8).collect();
    format!("#{head}")
}

/// Legacy ids (16 characters) whole; v3 ids shortened to their first 10 characters.
pub fn short_id(id: &str) -> String {
    if id.chars().count() <= 16 {
        id.to_owned()
    } else {
        let head: String = id.chars().take(10).collect();
        format!("{head}…")
    }
}

/// How much a group message is to be believed: the core's one definition, through the API.
pub use api::Trust;

/// Delivery of a message we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Stored, waiting for the buddy (or, in a group, for any member).
    Queued,
    /// Handed to the buddy's connection.
    Sent,
    /// Group: `k` members have it (of `of` when known).
    Delivered {
        /// Members that have it.
        k: u32,
        /// Members other than us, when known.
        of: Option<u32>,
    },
    /// Given up.
    Failed,
    /// A state this version does not know.
    Other(String),
}

impl Delivery {
    /// From the API's word: `queued`, `sent`, `delivered k`, `failed`.
    pub fn parse(s: &str) -> Delivery {
        match s {
            "queued" => Delivery::Queued,
            "sent" => Delivery::Sent,
            "failed" => Delivery::Failed,
            _ => match s.strip_prefix("delivered").map(|k| k.trim().parse::<u32>()) {
                Some(Ok(k)) => Delivery::Delivered { k, of: None },
                _ => Delivery::Other(s.to_owned()),
            },
        }
    }

    fn rank(&self) -> (u8, u32) {
        match self {
            Delivery::Other(_) => (0, 0),
            Delivery::Queued => (1, 0),
            Delivery::Sent => (2, 0),
            Delivery::Delivered { k, .. } => (3, *k),
            Delivery::Failed => (4, 0),
        }
    }

    /// Never goes backwards: a late `queued` does not undo `sent`.
    pub fn advance(&mut self, newer: Delivery) {
        if newer.rank() >= self.rank() {
            let of = match (&newer, &*self) {
                (Delivery::Delivered { of: None, .. }, Delivery::Delivered { of, .. }) => *of,
                (Delivery::Delivered { of, .. }, _) => *of,
                _ => None,
            };
            *self = match newer {
                Delivery::Delivered { k, .. } => Delivery::Delivered { k, of },
                d => d,
            };
        }
    }
}

/// One line of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Store row (0 when it came from an event and history has not been re-read).
    pub row: u64,
    /// Message id (empty for local notices).
    pub id: String,
    /// Who wrote it.
    pub sender: String,
    /// Ours.
    pub outgoing: bool,
    /// Text.
    pub text: String,
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// For ours: delivery.
    pub delivery: Option<Delivery>,
    /// For group messages: trust.
    pub trust: Option<Trust>,
    /// Who vouched, when an event told us.
    pub claimants: Vec<String>,
    /// A local notice (someone joined, left…), not a message.
    pub notice: bool,
}

impl ChatMessage {
    /// From a stored or event message.
    pub fn from_api(m: &api::Message) -> ChatMessage {
        ChatMessage {
            row: m.row,
            id: m.id.clone(),
            sender: m.sender.clone(),
            outgoing: m.direction == "out",
            // Shown on one line, safe for the terminal (the store keeps the raw text).
            text: display::line(&m.text).into_owned(),
            at: m.at,
            delivery: m.delivery.as_deref().map(Delivery::parse),
            trust: m.trust.as_deref().and_then(Trust::parse_label),
            claimants: vec![],
            notice: false,
        }
    }

    /// A local notice shown in the conversation.
    pub fn notice(text: String, at: u64) -> ChatMessage {
        ChatMessage {
            row: 0,
            id: String::new(),
            sender: String::new(),
            outgoing: false,
            text: display::line(&text).into_owned(),
            at,
            delivery: None,
            trust: None,
            claimants: vec![],
            notice: true,
        }
    }

    /// A group message someone else wrote (the kind with claims to show).
    pub fn is_incoming_group(&self) -> bool {
        !self.notice && !self.outgoing && self.trust.is_some()
    }
}

/// A conversation's loaded messages and view state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    /// Oldest first.
    pub messages: Vec<ChatMessage>,
    /// History was requested at least once.
    pub loaded: bool,
    /// A history request is in flight.
    pub loading: bool,
    /// Older messages may exist in the store.
    pub more: bool,
    /// Newer messages exist in the store than the window holds (it was moved back in time
    /// past [`MAX_MESSAGES`]); going down past its end reloads the newest page.
    pub newer: bool,
    /// Messages that arrived while it was not shown.
    pub unread: usize,
    /// Lines scrolled up from the bottom (0 follows new messages).
    pub scroll: usize,
}

/// Most messages kept per conversation: a window over the history, read a page at a time.
/// Paging back past it drops the newest end (re-read when going back down), new messages drop
/// the oldest end; a conversation is never loaded whole.
pub const MAX_MESSAGES: usize = 2000;

impl Conversation {
    /// Index of a message by id.
    pub fn find(&self, id: &str) -> Option<usize> {
        if id.is_empty() {
            return None;
        }
        self.messages.iter().rposition(|m| m.id == id)
    }

    /// Adds a message or updates the copy we have; keeps time order. Returns whether it was new.
    pub fn merge(&mut self, m: ChatMessage) -> bool {
        if let Some(i) = self.find(&m.id) {
            let old = &mut self.messages[i];
            if m.row != 0 {
                old.row = m.row;
            }
            if let Some(d) = m.delivery {
                match &mut old.delivery {
                    Some(cur) => cur.advance(d),
                    None => old.delivery = Some(d),
                }
            }
            // History re-reads are newer than what events told us, unless the tag is the same
            // (a `(Direct)` tag does not carry the confirmations an event told us).
            if let Some(t) = m.trust {
                let keep_confirmations = matches!(
                    (&old.trust, &t),
                    (Some(Trust::Direct { .. }), Trust::Direct { .. })
                );
                if !keep_confirmations {
                    old.trust = Some(t);
                }
            }
            return false;
        }
        // Insert after every message at or before its time (stable for equal times).
        let pos = self.messages.partition_point(|x| x.at <= m.at);
        if self.newer && pos == self.messages.len() {
            // Newer than the window while the messages between are not loaded: it is shown
            // when the window returns to the newest end.
            return false;
        }
        self.messages.insert(pos, m);
        if self.messages.len() > MAX_MESSAGES {
            if pos < self.messages.len() / 2 {
                // Paging back: the newest end goes.
                self.messages.truncate(MAX_MESSAGES);
                self.newer = true;
            } else {
                let extra = self.messages.len() - MAX_MESSAGES;
                self.messages.drain(..extra);
                self.more = true;
            }
        }
        true
    }

    /// The oldest store row we have (for paging back).
    pub fn oldest_row(&self) -> Option<u64> {
        self.messages
            .iter()
            .map(|m| m.row)
            .filter(|r| *r != 0)
            .min()
    }

    /// Time of the newest message (for placing local notices).
    pub fn last_at(&self) -> u64 {
        self.messages.last().map_or(0, |m| m.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_trust_tags_are_read() {
        let msg = |tag: &str| api::Message {
            row: 1,
            id: "m".into(),
            conversation: "g".into(),
            sender: "s".into(),
            direction: "in".into(),
            text: "t".into(),
            at: 0,
            delivery: None,
            trust: Some(tag.into()),
        };
        let t = |tag: &str| ChatMessage::from_api(&msg(tag)).trust;
        assert_eq!(t("(2 of 3)"), Some(Trust::Relayed { k: 2, n: 3 }));
        assert_eq!(t("(Signed, 1 of 3)"), Some(Trust::Signed { k: 1, n: 3 }));
        assert!(t("(UNCONFIRMED 1 of 3)").is_some_and(|t| t.is_unconfirmed()));
        assert_eq!(t("(weird)"), None);
    }

    #[test]
    fn delivery_never_goes_backwards() {
        let mut d = Delivery::Sent;
        d.advance(Delivery::Queued);
        assert_eq!(d, Delivery::Sent);
        let mut d = Delivery::Queued;
        d.advance(Delivery::Delivered { k: 1, of: Some(3) });
        d.advance(Delivery::parse("delivered 2"));
        assert_eq!(d, Delivery::Delivered { k: 2, of: Some(3) });
        d.advance(Delivery::Delivered { k: 1, of: Some(3) });
        assert_eq!(d, Delivery::Delivered { k: 2, of: Some(3) });
    }

    #[test]
    fn merge_dedupes_and_orders() {
        let mut c = Conversation::default();
        let m = |id: &str, at: u64| ChatMessage {
            row: 0,
            id: id.into(),
            sender: "x".into(),
            outgoing: false,
            text: id.into(),
            at,
            delivery: None,
            trust: None,
            claimants: vec![],
            notice: false,
        };
        assert!(c.merge(m("b", 20)));
        assert!(c.merge(m("a", 10)));
        assert!(c.merge(m("c", 30)));
        let mut again = m("b", 20);
        again.row = 7;
        assert!(!c.merge(again));
        let ids: Vec<_> = c.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(c.oldest_row(), Some(7));
    }

    #[test]
    fn the_window_keeps_its_size_and_drops_the_far_end() {
        let m = |n: u64| ChatMessage {
            row: n,
            id: format!("m{n}"),
            sender: "x".into(),
            outgoing: false,
            text: String::new(),
            at: n,
            delivery: None,
            trust: None,
            claimants: vec![],
            notice: false,
        };
        let mut c = Conversation::default();
        let top = 10 * MAX_MESSAGES as u64;
        for n in top - MAX_MESSAGES as u64..top {
            c.merge(m(n));
        }
        assert_eq!(c.messages.len(), MAX_MESSAGES);
        // Paging back: older pages push out the newest messages, not themselves.
        for n in (top - MAX_MESSAGES as u64 - 100..top - MAX_MESSAGES as u64).rev() {
            assert!(c.merge(m(n)));
        }
        assert_eq!(c.messages.len(), MAX_MESSAGES);
        assert_eq!(c.oldest_row(), Some(top - MAX_MESSAGES as u64 - 100));
        assert!(c.newer);
        // While newer messages are missing, a new one is not appended after the gap.
        assert!(!c.merge(m(top + 1)));
        assert_eq!(c.messages.len(), MAX_MESSAGES);
        // At the newest end, new messages push out the oldest.
        let mut c = Conversation::default();
        for n in 0..MAX_MESSAGES as u64 + 10 {
            c.merge(m(n));
        }
        assert_eq!(c.messages.len(), MAX_MESSAGES);
        assert_eq!(c.oldest_row(), Some(10));
        assert!(c.more && !c.newer);
    }

    #[test]
    fn names_are_shortened() {
        assert_eq!(short_id("aliceaaaaaaaaaaa"), "aliceaaaaaaaaaaa");
        let v3 = "a".repeat(56);
        assert_eq!(short_id(&v3), "aaaaaaaaaa…");
        assert_eq!(
            short_gid("44034392-cfdb-48d3-a9bf-30b99fb77918"),
            "#44034392"
        );
    }
}
