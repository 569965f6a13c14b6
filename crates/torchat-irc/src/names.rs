//! Nicks for onion ids and channel names for groups, kept stable.
//!
//! A buddy's nick comes from its alias, else its profile name, else the start of its id,
//! sanitized to IRC nick characters and made unique (`bob`, `bob2`, …). Once given, a nick
//! stays: a profile name change does not rename anyone (so nobody can take over a nick the
//! user knows). Only two things rename: setting an alias (`add <id> <alias>`), and the first
//! profile name for a buddy that so far only had an id-based nick. Comparisons are
//! case-insensitive (ASCII), as `CASEMAPPING=ascii` announces.
//!
//! A group's channel is `#` and the first 8 hex digits of its id (longer if two groups
//! share them), or a name given when it was created here. The book can be saved as JSON so
//! the mapping survives restarts.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Longest nick the gateway gives out or accepts (`NICKLEN`).
pub const NICKLEN: usize = 30;
/// Longest channel name (`CHANNELLEN`).
pub const CHANNELLEN: usize = 50;

/// Where a nick came from (a later, better source may rename once; see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Source {
    Id,
    Name,
    Alias,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    nick: String,
    /// The sanitized text the nick was made from.
    base: String,
    source: Source,
}

/// What [`NickBook::ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NickUpdate {
    /// The id already had this nick.
    Same(String),
    /// The id got its first nick.
    New(String),
    /// The id was renamed.
    Renamed {
        /// Nick before.
        old: String,
        /// Nick now.
        new: String,
    },
}

impl NickUpdate {
    /// The nick now.
    pub fn nick(&self) -> &str {
        match self {
            NickUpdate::Same(n) | NickUpdate::New(n) => n,
            NickUpdate::Renamed { new, .. } => new,
        }
    }
}

/// The id ↔ nick and group ↔ channel mapping.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NickBook {
    #[serde(default)]
    nicks: BTreeMap<String, Entry>,
    #[serde(default)]
    channels: BTreeMap<String, String>,
    #[serde(skip)]
    by_nick: HashMap<String, String>,
    #[serde(skip)]
    by_chan: HashMap<String, String>,
    #[serde(skip)]
    dirty: bool,
}

fn key(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn special(c: char) -> bool {
    matches!(c, '[' | ']' | '\\' | '`' | '_' | '^' | '{' | '|' | '}')
}

/// Whether `s` is a nick a client may use (RFC 2812 characters, at most [`NICKLEN`]).
pub fn valid_nick(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    s.len() <= NICKLEN
        && (first.is_ascii_alphabetic() || special(first))
        && chars.all(|c| c.is_ascii_alphanumeric() || special(c) || c == '-')
}

/// A nick base from free text (an alias or profile name): nick characters only, spaces and
/// dots become `_`, a leading digit or `-` gets a `_` in front. `None` if nothing is left.
pub fn sanitize_nick(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.trim().chars() {
        let c = match c {
            c if c.is_ascii_alphanumeric() || special(c) || c == '-' => c,
            ' ' | '.' => '_',
            _ => continue,
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_matches('_').to_owned();
    if out.is_empty() {
        return None;
    }
    let mut out = match out.chars().next() {
        Some(c) if c.is_ascii_digit() || c == '-' => format!("_{out}"),
        _ => out,
    };
    out.truncate(NICKLEN - 4);
    Some(out)
}

/// `s` as an onion id (lower case, without `.onion`) if it looks like one: 16 (legacy) or
/// 56 (v3) base32 characters.
pub fn onion_id(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix(".onion").unwrap_or(&s);
    let ok = (s.len() == 16 || s.len() == 56)
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c));
    ok.then(|| s.to_owned())
}

fn id_base(id: &str) -> String {
    let short: String = id.chars().take(10).collect();
    sanitize_nick(&short).unwrap_or_else(|| "buddy".to_owned())
}

/// A channel name from free text: `#` and at most [`CHANNELLEN`] - 1 of `[A-Za-z0-9_.-]`.
pub fn sanitize_channel(s: &str) -> Option<String> {
    let body: String = s
        .trim()
        .trim_start_matches('#')
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(CHANNELLEN - 1)
        .collect();
    (!body.is_empty()).then(|| format!("#{body}"))
}

impl NickBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// A book from its JSON form ([`NickBook::to_json`]); entries that clash are dropped.
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        let raw: NickBook = serde_json::from_str(s)?;
        let mut book = NickBook::new();
        for (id, e) in raw.nicks {
            if valid_nick(&e.nick) && !book.by_nick.contains_key(&key(&e.nick)) {
                book.by_nick.insert(key(&e.nick), id.clone());
                book.nicks.insert(id, e);
            }
        }
        for (gid, chan) in raw.channels {
            if chan.starts_with('#')
                && chan.len() <= CHANNELLEN
                && !chan.contains([' ', ',', '\r', '\n', '\0', '\x07'])
                && !book.by_chan.contains_key(&key(&chan))
            {
                book.by_chan.insert(key(&chan), gid.clone());
                book.channels.insert(gid, chan);
            }
        }
        Ok(book)
    }

    /// The book as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Whether something changed since the last call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The nick of an id, if it has one.
    pub fn nick(&self, id: &str) -> Option<&str> {
        self.nicks.get(id).map(|e| e.nick.as_str())
    }

    /// The id behind a nick (case-insensitive).
    pub fn id(&self, nick: &str) -> Option<&str> {
        self.by_nick.get(&key(nick)).map(String::as_str)
    }

    /// Gives `id` a nick, or renames it when the rules allow (see the module docs).
    /// `reserved` nicks (ours, the control bot's) are never given out.
    pub fn ensure(
        &mut self,
        id: &str,
        alias: Option<&str>,
        name: Option<&str>,
        reserved: &[&str],
    ) -> NickUpdate {
        let (source, base) = alias
            .and_then(sanitize_nick)
            .map(|b| (Source::Alias, b))
            .or_else(|| name.and_then(sanitize_nick).map(|b| (Source::Name, b)))
            .unwrap_or_else(|| (Source::Id, id_base(id)));
        let old = match self.nicks.get(id) {
            None => None,
            Some(e) => {
                let rename = match (e.source, source) {
                    (Source::Alias, Source::Alias) => e.base != base,
                    (_, Source::Alias) | (Source::Id, Source::Name) => true,
                    _ => false,
                };
                if !rename {
                    return NickUpdate::Same(e.nick.clone());
                }
                Some(e.nick.clone())
            }
        };
        let nick = self.unique(&base, id, reserved);
        if let Some(o) = &old {
            self.by_nick.remove(&key(o));
        }
        self.by_nick.insert(key(&nick), id.to_owned());
        self.nicks.insert(
            id.to_owned(),
            Entry {
                nick: nick.clone(),
                base,
                source,
            },
        );
        self.dirty = true;
        match old {
            None => NickUpdate::New(nick),
            Some(o) if o == nick => NickUpdate::Same(nick),
            Some(o) => NickUpdate::Renamed { old: o, new: nick },
        }
    }

    fn unique(&self, base: &str, id: &str, reserved: &[&str]) -> String {
        let free = |n: &str| {
            !reserved.iter().any(|r| r.eq_ignore_ascii_case(n))
                && self.by_nick.get(&key(n)).is_none_or(|owner| owner == id)
        };
        if free(base) {
            return base.to_owned();
        }
        for i in 2u32.. {
            let suffix = i.to_string();
            let mut cand = base.to_owned();
            cand.truncate(NICKLEN - suffix.len());
            cand.push_str(&suffix);
            if free(&cand) {
                return cand;
            }
        }
        unreachable!("u32 suffixes run out")
    }

    /// The channel of a group, if it has one.
    pub fn channel(&self, gid: &str) -> Option<&str> {
        self.channels.get(gid).map(String::as_str)
    }

    /// The group behind a channel name (case-insensitive).
    pub fn gid(&self, chan: &str) -> Option<&str> {
        self.by_chan.get(&key(chan)).map(String::as_str)
    }

    /// The channel of a group, making one (`#` + short gid) if needed.
    pub fn ensure_channel(&mut self, gid: &str) -> String {
        if let Some(c) = self.channels.get(gid) {
            return c.clone();
        }
        let hex: String = gid
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let hex = if hex.is_empty() { "group".into() } else { hex };
        let mut chan = String::new();
        for len in [8, 12, 16, 24, CHANNELLEN - 1] {
            let cand: String = format!("#{}", hex.chars().take(len).collect::<String>());
            chan = cand;
            if !self.by_chan.contains_key(&key(&chan)) {
                break;
            }
        }
        let mut i = 2u32;
        while self.by_chan.contains_key(&key(&chan)) {
            chan = format!(
                "#{}-{i}",
                hex.chars().take(CHANNELLEN - 12).collect::<String>()
            );
            i += 1;
        }
        self.by_chan.insert(key(&chan), gid.to_owned());
        self.channels.insert(gid.to_owned(), chan.clone());
        self.dirty = true;
        chan
    }

    /// Names a group's channel `name` (sanitized). Fails if another group has that name or
    /// nothing is left of it.
    pub fn name_channel(&mut self, gid: &str, name: &str) -> Result<String, String> {
        let chan = sanitize_channel(name).ok_or_else(|| format!("{name:?} is not a name"))?;
        match self.by_chan.get(&key(&chan)) {
            Some(owner) if owner == gid => return Ok(chan),
            Some(_) => return Err(format!("{chan} is taken")),
            None => {}
        }
        if let Some(old) = self.channels.insert(gid.to_owned(), chan.clone()) {
            self.by_chan.remove(&key(&old));
        }
        self.by_chan.insert(key(&chan), gid.to_owned());
        self.dirty = true;
        Ok(chan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aliceaaaaaaaaaaa";
    const B: &str = "bobaaaaaaaaaaaaa";
    const C: &str = "carolaaaaaaaaaaa";

    #[test]
    fn sanitizing() {
        assert_eq!(sanitize_nick("Bob Smith").as_deref(), Some("Bob_Smith"));
        assert_eq!(sanitize_nick("  ünï cödé  ").as_deref(), Some("n_cd"));
        assert_eq!(sanitize_nick("2pac").as_deref(), Some("_2pac"));
        assert_eq!(sanitize_nick("-x").as_deref(), Some("_-x"));
        assert_eq!(sanitize_nick("a:b!c@d #e,f").as_deref(), Some("abcd_ef"));
        assert_eq!(sanitize_nick("日本"), None);
        assert_eq!(sanitize_nick(&"x".repeat(100)).unwrap().len(), NICKLEN - 4);
        for s in ["Bob Smith", "2pac", "-x", "a.b", "[x]"] {
            assert!(valid_nick(&sanitize_nick(s).unwrap()), "{s}");
        }
        assert!(valid_nick("alice"));
        assert!(!valid_nick("1alice") && !valid_nick("") && !valid_nick("a b"));
        assert_eq!(onion_id("ALICEAAAAAAAAAAA.onion").as_deref(), Some(A));
        assert_eq!(onion_id("alice"), None);
        assert_eq!(onion_id("aliceaaaaaaaaaa1"), None);
        assert_eq!(sanitize_channel("#my party!").as_deref(), Some("#myparty"));
        assert_eq!(sanitize_channel("##"), None);
    }

    #[test]
    fn nicks_are_unique_and_stable() {
        let mut b = NickBook::new();
        assert_eq!(
            b.ensure(A, None, Some("bob"), &[]),
            NickUpdate::New("bob".into())
        );
        assert_eq!(
            b.ensure(B, None, Some("BOB"), &[]),
            NickUpdate::New("BOB2".into())
        );
        // A profile name change does not rename.
        assert_eq!(
            b.ensure(A, None, Some("mallory"), &[]),
            NickUpdate::Same("bob".into())
        );
        // An id-only nick is upgraded once a name is known.
        assert_eq!(
            b.ensure(C, None, None, &["me"]),
            NickUpdate::New("carolaaaaa".into())
        );
        assert_eq!(
            b.ensure(C, None, Some("me"), &["me"]),
            NickUpdate::Renamed {
                old: "carolaaaaa".into(),
                new: "me2".into()
            }
        );
        // An alias always wins, and stays.
        assert_eq!(
            b.ensure(C, Some("carol"), Some("me"), &["me"]),
            NickUpdate::Renamed {
                old: "me2".into(),
                new: "carol".into()
            }
        );
        assert_eq!(
            b.ensure(C, None, Some("x"), &[]),
            NickUpdate::Same("carol".into())
        );
        assert_eq!(b.id("CAROL"), Some(C));
        assert_eq!(b.id("me2"), None);
        assert!(b.take_dirty());
        assert!(!b.take_dirty());
        // Reserved nicks are never given.
        let mut b2 = NickBook::new();
        assert_eq!(
            b2.ensure(A, None, Some("torchat"), &["torchat"]).nick(),
            "torchat2"
        );
        // Saved and loaded: same mapping.
        let back = NickBook::from_json(&b.to_json()).unwrap();
        assert_eq!(back.nick(A), Some("bob"));
        assert_eq!(back.id("bob2"), Some(B));
        assert_eq!(back.nick(C), Some("carol"));
        assert!(NickBook::from_json("not json").is_err());
    }

    #[test]
    fn channels() {
        let mut b = NickBook::new();
        let g1 = "44034392-cfdb-48d3-a9bf-30b99fb77918";
        let g2 = "44034392-aaaa-48d3-a9bf-30b99fb77918";
        assert_eq!(b.ensure_channel(g1), "#44034392");
        assert_eq!(b.ensure_channel(g2), "#44034392aaaa");
        assert_eq!(b.ensure_channel(g1), "#44034392");
        assert_eq!(b.gid("#44034392AAAA"), Some(g2));
        assert_eq!(b.name_channel(g2, "party").as_deref(), Ok("#party"));
        assert_eq!(b.gid("#44034392aaaa"), None);
        assert!(b.name_channel(g1, "#Party").is_err());
        assert!(b.name_channel(g1, "!!").is_err());
        let back = NickBook::from_json(&b.to_json()).unwrap();
        assert_eq!(back.channel(g2), Some("#party"));
        assert_eq!(back.gid("#44034392"), Some(g1));
    }
}
