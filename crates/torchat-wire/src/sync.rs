//! Field types of our extension `torchat_sync`: sets of sequence numbers, version-vector
//! entries, and their text forms.
//!
//! A [`SeqSet`] says which of a speaker's per-group sequence numbers a member holds: every
//! number up to `upto`, plus a few ranges above it (`57,60-62,70` = 1…57, 60, 61, 62, 70).
//! Parsing is strict (ascending, disjoint, non-adjacent ranges, at most [`MAX_RANGES`] of
//! them, numbers of at most 20 digits) so that every accepted text has exactly one form and
//! re-encodes byte for byte.

use std::fmt;

use crate::onion::OnionId;

/// Most extra ranges a [`SeqSet`] may carry on the wire.
pub const MAX_RANGES: usize = 16;
/// Most entries in one `groupchat_sync_digest`.
pub const MAX_DIGEST_ENTRIES: usize = 1024;
/// Most ids in one `sync_ack` or members in one `groupchat_sync_tell`.
pub const MAX_LIST: usize = 256;
/// Bytes of the member-list hash carried by digests and copies (8 hex digits).
pub const LIST_HASH_LEN: usize = 4;
/// Shortest group tag (a prefix of the group id) accepted in acks and digests.
pub const MIN_GROUP_TAG: usize = 8;

/// Sequence numbers held: all of `1..=upto`, plus `ranges` above `upto + 1`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SeqSet {
    /// Every number from 1 to this one (0: none).
    pub upto: u64,
    /// Inclusive ranges above `upto + 1`: ascending, disjoint and not adjacent.
    pub ranges: Vec<(u64, u64)>,
}

impl SeqSet {
    /// All of `1..=upto`.
    pub fn upto(upto: u64) -> Self {
        SeqSet {
            upto,
            ranges: Vec::new(),
        }
    }

    /// Whether `seq` is in the set (0 never is).
    pub fn contains(&self, seq: u64) -> bool {
        seq != 0 && (seq <= self.upto || self.ranges.iter().any(|&(a, b)| a <= seq && seq <= b))
    }

    /// The highest number held (0: none).
    pub fn max(&self) -> u64 {
        self.ranges.last().map_or(self.upto, |r| r.1)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.upto == 0 && self.ranges.is_empty()
    }

    /// Adds one number. Returns false if it was there already.
    pub fn insert(&mut self, seq: u64) -> bool {
        self.insert_range(seq, seq)
    }

    /// Adds `a..=b`. Returns false if all of it was there already.
    pub fn insert_range(&mut self, a: u64, b: u64) -> bool {
        let a = a.max(1);
        if a > b || (b <= self.upto) || self.covers(a, b) {
            return false;
        }
        if a <= self.upto.saturating_add(1) {
            self.upto = self.upto.max(b);
        } else {
            self.ranges.push((a, b));
            self.ranges.sort_unstable();
        }
        self.normalise();
        true
    }

    /// Whether every number of `a..=b` is held.
    pub fn covers(&self, a: u64, b: u64) -> bool {
        if a > b {
            return true;
        }
        if b <= self.upto {
            return true;
        }
        let a = a.max(self.upto.saturating_add(1));
        self.ranges.iter().any(|&(x, y)| x <= a && b <= y)
    }

    /// Adds everything `other` holds. Returns false if nothing was new.
    pub fn union(&mut self, other: &SeqSet) -> bool {
        let mut changed = self.insert_range(1, other.upto);
        for &(a, b) in &other.ranges {
            changed |= self.insert_range(a, b);
        }
        changed
    }

    /// Numbers in `self` that `other` lacks, as inclusive ranges, lowest first, at most
    /// `limit` ranges.
    pub fn missing_from(&self, other: &SeqSet, limit: usize) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mine = std::iter::once((1, self.upto))
            .filter(|r| r.1 >= 1)
            .chain(self.ranges.iter().copied());
        for (a, b) in mine {
            let mut s = a;
            while s <= b && out.len() < limit {
                if other.contains(s) {
                    // Skip to the end of the held stretch containing `s`.
                    let end = if s <= other.upto {
                        other.upto
                    } else {
                        other
                            .ranges
                            .iter()
                            .find(|r| r.0 <= s && s <= r.1)
                            .map_or(s, |r| r.1)
                    };
                    s = end.saturating_add(1);
                    continue;
                }
                // The next held number after `s` in `other`, if any, ends the gap.
                let next = other
                    .ranges
                    .iter()
                    .map(|r| r.0)
                    .find(|&x| x > s)
                    .unwrap_or(u64::MAX);
                let e = b.min(next.saturating_sub(1));
                out.push((s, e));
                if e == u64::MAX {
                    break;
                }
                s = e + 1;
            }
        }
        out
    }

    /// Merges ranges that touch `upto` or each other.
    fn normalise(&mut self) {
        self.ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.ranges.len());
        for &(a, b) in &self.ranges {
            if a <= self.upto.saturating_add(1) {
                self.upto = self.upto.max(b);
                continue;
            }
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        // Merging into `upto` may have made earlier kept ranges redundant.
        merged.retain(|&(_, b)| b > self.upto);
        if let Some(first) = merged.first_mut() {
            if first.0 <= self.upto.saturating_add(1) {
                self.upto = first.1;
                merged.remove(0);
            }
        }
        self.ranges = merged;
    }

    /// The same set truncated to at most `n` extra ranges (the highest are dropped): what
    /// may be claimed on the wire without claiming anything not held.
    pub fn truncated(&self, n: usize) -> SeqSet {
        SeqSet {
            upto: self.upto,
            ranges: self.ranges.iter().take(n).copied().collect(),
        }
    }

    /// Parses `upto[,a-b|,a]...`.
    pub fn parse(s: &[u8]) -> Option<SeqSet> {
        let mut parts = s.split(|&c| c == b',');
        let upto = number(parts.next()?)?;
        let mut ranges = Vec::new();
        let mut floor = upto.checked_add(1)?;
        for p in parts {
            if ranges.len() >= MAX_RANGES {
                return None;
            }
            let (a, b) = match p.iter().position(|&c| c == b'-') {
                Some(i) => (number(&p[..i])?, number(&p[i + 1..])?),
                None => {
                    let a = number(p)?;
                    (a, a)
                }
            };
            // Strictly above the previous stretch with a gap: one canonical form.
            if a <= floor || a > b {
                return None;
            }
            ranges.push((a, b));
            floor = b.checked_add(1)?;
        }
        Some(SeqSet { upto, ranges })
    }

    /// Appends the text form.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.upto.to_string().as_bytes());
        for &(a, b) in &self.ranges {
            out.push(b',');
            out.extend_from_slice(a.to_string().as_bytes());
            if b != a {
                out.push(b'-');
                out.extend_from_slice(b.to_string().as_bytes());
            }
        }
    }
}

impl fmt::Display for SeqSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = Vec::new();
        self.write(&mut v);
        f.write_str(&String::from_utf8_lossy(&v))
    }
}

/// A decimal number without sign or leading zeros (except `0` itself), at most 20 digits.
pub(crate) fn number(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 20 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if t.len() > 1 && t[0] == b'0' {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// Whose messages a digest entry is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestKey {
    /// Position in the sender's sorted member list (itself included); valid only when the
    /// receiver's list has the same hash.
    Index(u32),
    /// The speaker's id.
    Id(OnionId),
}

/// One entry of a version vector: a speaker and the sequence numbers held.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DigestEntry {
    /// The speaker.
    pub key: DigestKey,
    /// What the sender of the digest holds of that speaker's messages.
    pub held: SeqSet,
}

impl DigestEntry {
    /// Parses `key:set`.
    pub(crate) fn parse(w: &[u8]) -> Option<DigestEntry> {
        let i = w.iter().position(|&c| c == b':')?;
        let (k, rest) = (&w[..i], &w[i + 1..]);
        // An index has at most 10 digits; an onion id 16 or 56 characters (maybe all digits).
        let key = if k.len() <= 10 {
            DigestKey::Index(u32::try_from(number(k)?).ok()?)
        } else {
            DigestKey::Id(OnionId::parse_bytes(k).ok()?)
        };
        Some(DigestEntry {
            key,
            held: SeqSet::parse(rest)?,
        })
    }

    /// The text form, `key:set`.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = match &self.key {
            DigestKey::Index(i) => i.to_string().into_bytes(),
            DigestKey::Id(id) => id.as_bytes().to_vec(),
        };
        out.push(b':');
        self.held.write(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> SeqSet {
        SeqSet::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn parse_and_print() {
        for s in ["0", "57", "57,60-62,70", "0,5-9", "1,3"] {
            assert_eq!(set(s).to_string(), s);
        }
        for bad in [
            "",
            "-1",
            "01",
            "5,5",
            "5,6",
            "5,8-7",
            "5,8,9",
            "5,9,8",
            "5,,7",
            "5,7-",
            "x",
            "99999999999999999999999",
        ] {
            assert_eq!(SeqSet::parse(bad.as_bytes()), None, "{bad:?}");
        }
        let many: String = std::iter::once("0".to_owned())
            .chain((0..=MAX_RANGES).map(|i| format!("{}", 10 + 2 * i)))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(SeqSet::parse(many.as_bytes()), None, "too many ranges");
    }

    #[test]
    fn insert_merges_into_canonical_form() {
        let mut s = SeqSet::default();
        assert!(s.insert(3));
        assert!(s.insert(5));
        assert_eq!(s.to_string(), "0,3,5");
        assert!(s.insert(4));
        assert_eq!(s.to_string(), "0,3-5");
        assert!(!s.insert(4));
        assert!(s.insert(1));
        assert!(s.insert(2));
        assert_eq!(s.to_string(), "5");
        assert!(s.insert_range(7, 9));
        assert!(s.insert(6));
        assert_eq!(s.to_string(), "9");
        assert!(!s.insert(0));
        assert!(s.contains(9) && !s.contains(10) && !s.contains(0));
        let mut t = set("2,5-6,9");
        assert!(t.union(&set("4,8")));
        assert_eq!(t.to_string(), "6,8-9");
        assert!(!t.union(&set("3")));
    }

    #[test]
    fn missing_ranges() {
        let theirs = set("10,14-15,20");
        assert_eq!(
            theirs.missing_from(&set("3,6-7"), 10),
            vec![(4, 5), (8, 10), (14, 15), (20, 20)]
        );
        assert_eq!(theirs.missing_from(&set("20"), 10), vec![]);
        assert_eq!(theirs.missing_from(&set("0"), 2), vec![(1, 10), (14, 15)]);
        assert!(theirs.covers(14, 15) && !theirs.covers(14, 16) && theirs.covers(1, 10));
    }

    #[test]
    fn digest_entries() {
        let e = DigestEntry::parse(b"3:57,60-62").unwrap();
        assert_eq!(e.key, DigestKey::Index(3));
        assert_eq!(e.to_bytes(), b"3:57,60-62");
        let e = DigestEntry::parse(b"nodeaaaaaaaaaaaa:4").unwrap();
        assert!(matches!(e.key, DigestKey::Id(_)));
        assert_eq!(e.to_bytes(), b"nodeaaaaaaaaaaaa:4");
        let e = DigestEntry::parse(b"2222222222222222:4").unwrap();
        assert!(
            matches!(e.key, DigestKey::Id(_)),
            "an all-digit id is an id"
        );
        for bad in ["3", ":4", "x:4", "03:4", "3:", "99999999999:1"] {
            assert_eq!(DigestEntry::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
