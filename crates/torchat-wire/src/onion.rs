//! Onion ids: who a TorChat user *is*.
//!
//! An id is an onion service address without the `.onion` suffix:
//! - **v3**: 56 base32 characters encoding `pubkey(32) | checksum(2) | version(1)`, where
//!   `checksum = SHA3-256(".onion checksum" | pubkey | version)[..2]` and `version = 3`;
//! - **legacy v2**: 16 base32 characters (an 80-bit hash; nothing to verify).
//!
//! Ids are case-insensitive on input and always stored and printed in lower case.

use std::fmt;
use std::str::FromStr;

use sha3::{Digest, Sha3_256};

/// Length of a v3 id in characters.
pub const V3_LEN: usize = 56;
/// Length of a legacy v2 id in characters.
pub const V2_LEN: usize = 16;
const V3_VERSION: u8 = 3;
const CHECKSUM_PREFIX: &[u8] = b".onion checksum";

/// Every way a string can fail to be an onion id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OnionIdError {
    /// Neither 16 (v2) nor 56 (v3) characters long.
    #[error("an onion id has 16 (legacy) or 56 (v3) characters, not {0}")]
    WrongLength(usize),
    /// A character outside the base32 alphabet `a-z2-7`.
    #[error("character {ch:?} at position {pos} is not in the onion alphabet a-z, 2-7")]
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its index in the input.
        pos: usize,
    },
    /// The v3 version byte is not 3.
    #[error("unsupported v3 onion version byte {0}")]
    BadVersion(u8),
    /// The two-byte v3 checksum does not match the key (a typo or a corrupted id).
    #[error("the v3 onion checksum does not match: the id has a typo")]
    BadChecksum,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Inner {
    V2([u8; V2_LEN]),
    V3 { text: [u8; V3_LEN], key: [u8; 32] },
}

/// A validated, lower-case onion id (v3 or legacy v2).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OnionId(Inner);

impl OnionId {
    /// Parses an id, case-insensitively, verifying the v3 checksum and version.
    pub fn parse(s: &str) -> Result<Self, OnionIdError> {
        Self::parse_bytes(s.as_bytes())
    }

    /// Like [`OnionId::parse`], on raw bytes (as they come off the wire).
    pub fn parse_bytes(s: &[u8]) -> Result<Self, OnionIdError> {
        let len = s.len();
        if len != V2_LEN && len != V3_LEN {
            // Count characters rather than bytes for the message when it is valid UTF-8.
            let n = std::str::from_utf8(s)
                .map(|t| t.chars().count())
                .unwrap_or(len);
            return Err(OnionIdError::WrongLength(n));
        }
        let mut lower = [0u8; V3_LEN];
        for (pos, &b) in s.iter().enumerate() {
            let c = b.to_ascii_lowercase();
            if !(c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c)) {
                let ch = std::str::from_utf8(&s[pos..])
                    .ok()
                    .and_then(|t| t.chars().next())
                    .unwrap_or(char::from(b));
                return Err(OnionIdError::InvalidChar { ch, pos });
            }
            lower[pos] = c;
        }
        if len == V2_LEN {
            let mut text = [0u8; V2_LEN];
            text.copy_from_slice(&lower[..V2_LEN]);
            return Ok(OnionId(Inner::V2(text)));
        }
        let raw = data_encoding::BASE32_NOPAD
            .decode(&lower.to_ascii_uppercase())
            .map_err(|_| OnionIdError::InvalidChar { ch: '?', pos: 0 })?;
        // 56 base32 chars = 280 bits = 35 bytes exactly.
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw[..32]);
        let version = raw[34];
        if version != V3_VERSION {
            return Err(OnionIdError::BadVersion(version));
        }
        if checksum(&key) != [raw[32], raw[33]] {
            return Err(OnionIdError::BadChecksum);
        }
        Ok(OnionId(Inner::V3 { text: lower, key }))
    }

    /// The v3 id of an ed25519 public key (the key is not checked to be a curve point).
    pub fn from_ed25519_public_key(key: &[u8; 32]) -> Self {
        let mut raw = [0u8; 35];
        raw[..32].copy_from_slice(key);
        raw[32..34].copy_from_slice(&checksum(key));
        raw[34] = V3_VERSION;
        let encoded = data_encoding::BASE32_NOPAD
            .encode(&raw)
            .to_ascii_lowercase();
        let mut text = [0u8; V3_LEN];
        text.copy_from_slice(encoded.as_bytes());
        OnionId(Inner::V3 { text, key: *key })
    }

    /// The ed25519 public key of a v3 id; `None` for a legacy v2 id.
    pub fn ed25519_public_key(&self) -> Option<&[u8; 32]> {
        match &self.0 {
            Inner::V3 { key, .. } => Some(key),
            Inner::V2(_) => None,
        }
    }

    /// True for a 56-character v3 id.
    pub fn is_v3(&self) -> bool {
        matches!(self.0, Inner::V3 { .. })
    }

    /// The id as lower-case text, without `.onion`.
    pub fn as_str(&self) -> &str {
        let bytes: &[u8] = match &self.0 {
            Inner::V2(t) => t,
            Inner::V3 { text, .. } => text,
        };
        // Only ASCII a-z2-7 is ever stored.
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    /// The id as bytes (ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }

    /// A short form for logs and debugging: the first 6 characters and an ellipsis.
    pub fn short(&self) -> &str {
        &self.as_str()[..6]
    }
}

fn checksum(key: &[u8; 32]) -> [u8; 2] {
    let mut h = Sha3_256::new();
    h.update(CHECKSUM_PREFIX);
    h.update(key);
    h.update([V3_VERSION]);
    let d = h.finalize();
    [d[0], d[1]]
}

impl FromStr for OnionId {
    type Err = OnionIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_suffix(".onion").unwrap_or(s);
        Self::parse(s)
    }
}

impl fmt::Display for OnionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for OnionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OnionId({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Published v3 onion addresses of well-known services.
    const REAL_V3: &[&str] = &[
        // The Tor Project's website.
        "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid",
        // The Tor Project's bridge database.
        "yq5jjvr7drkjrelzhut7kgclfuro65jjlivyzfmxiq2kyv5lickrl4qd",
        // DuckDuckGo.
        "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad",
    ];

    #[test]
    fn real_v3_ids_validate_and_roundtrip_through_key() {
        for s in REAL_V3 {
            let id = OnionId::parse(s).unwrap();
            assert!(id.is_v3());
            assert_eq!(id.as_str(), *s);
            let key = id.ed25519_public_key().unwrap();
            assert_eq!(OnionId::from_ed25519_public_key(key), id);
        }
    }

    #[test]
    fn flipped_character_fails_checksum() {
        for s in REAL_V3 {
            for pos in 0..V3_LEN {
                let mut b = s.as_bytes().to_vec();
                b[pos] = if b[pos] == b'a' { b'b' } else { b'a' };
                let r = OnionId::parse_bytes(&b);
                assert!(
                    matches!(
                        r,
                        Err(OnionIdError::BadChecksum | OnionIdError::BadVersion(_))
                    ),
                    "{pos}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn upper_case_and_suffix_are_normalized() {
        let id: OnionId = "2GZYXA5IHM7NSGGFXNU52RCK2VV4RVMDLKIU3ZZUI5DU4XYCLEN53WID.onion"
            .parse()
            .unwrap();
        assert_eq!(id.as_str(), REAL_V3[0]);
        let v2 = OnionId::parse("RubyAAAAAAAAAAAA").unwrap();
        assert_eq!(v2.as_str(), "rubyaaaaaaaaaaaa");
        assert!(!v2.is_v3());
        assert!(v2.ed25519_public_key().is_none());
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(OnionId::parse("abc"), Err(OnionIdError::WrongLength(3)));
        assert_eq!(
            OnionId::parse("rubyaaaaaaaaaaa1"),
            Err(OnionIdError::InvalidChar { ch: '1', pos: 15 })
        );
        assert_eq!(
            OnionId::parse("rubyaaaaaaaaaaä"),
            Err(OnionIdError::InvalidChar { ch: 'ä', pos: 14 })
        );
        // A valid key with the version byte changed to 4 (re-encoded by hand).
        let id = OnionId::parse(REAL_V3[0]).unwrap();
        let mut raw = [0u8; 35];
        raw[..32].copy_from_slice(id.ed25519_public_key().unwrap());
        raw[32..34].copy_from_slice(&checksum(id.ed25519_public_key().unwrap()));
        raw[34] = 4;
        let s = data_encoding::BASE32_NOPAD
            .encode(&raw)
            .to_ascii_lowercase();
        assert_eq!(OnionId::parse(&s), Err(OnionIdError::BadVersion(4)));
    }
}
