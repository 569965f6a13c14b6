//! TorChat payload escaping.
//!
//! Encode: every `\` becomes `\/`, then every LF becomes `\n`. Decode is the exact inverse:
//! `\n` becomes LF and `\/` becomes `\`, scanning left to right, which gives the same result as
//! the reference clients' "first `\n`, then `\/`" replacement order. A backslash followed by
//! anything else (a lone `\`, as jtorchat writes in chat text) is kept as it is. Nothing else is
//! escaped: CR, NUL and high bytes pass through raw.

/// Appends the escaped form of `raw` to `out`. Runs without a byte to escape are copied
/// whole (most text has none; a file block has one in 128 bytes).
pub fn escape_into(raw: &[u8], out: &mut Vec<u8>) {
    out.reserve(raw.len());
    let mut from = 0;
    for i in memchr::memchr2_iter(b'\\', b'\n', raw) {
        out.extend_from_slice(&raw[from..i]);
        out.extend_from_slice(if raw[i] == b'\n' { b"\\n" } else { b"\\/" });
        from = i + 1;
    }
    out.extend_from_slice(&raw[from..]);
}

/// Returns the escaped form of `raw`.
pub fn escape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    escape_into(raw, &mut out);
    out
}

/// Returns the unescaped form of `wire`. Never fails: unknown escapes are kept literally.
pub fn unescape(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut from = 0;
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'\\', &wire[i..]) {
        let at = i + k;
        let with = match wire.get(at + 1) {
            Some(b'n') => b'\n',
            Some(b'/') => b'\\',
            // Not an escape: kept literally, and the next byte may start one.
            _ => {
                i = at + 1;
                continue;
            }
        };
        out.extend_from_slice(&wire[from..at]);
        out.push(with);
        from = at + 2;
        i = from;
    }
    out.extend_from_slice(&wire[from..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference clients' definition: two whole-string replacements in this order.
    fn reference_unescape(wire: &[u8]) -> Vec<u8> {
        let step1 = replace(wire, b"\\n", b"\n");
        replace(&step1, b"\\/", b"\\")
    }

    fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < hay.len() {
            if hay[i..].starts_with(from) {
                out.extend_from_slice(to);
                i += from.len();
            } else {
                out.push(hay[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn known_vectors() {
        assert_eq!(escape(b"a\\b\nc"), b"a\\/b\\nc");
        assert_eq!(unescape(b"a\\/b\\nc"), b"a\\b\nc");
        // Literal backslash-n text survives (the classic order bug).
        assert_eq!(escape(b"\\n"), b"\\/n");
        assert_eq!(unescape(b"\\/n"), b"\\n");
        // Lone and trailing backslashes are tolerated.
        assert_eq!(unescape(b"C:\\x\\"), b"C:\\x\\");
        // CR, NUL and high bytes are untouched.
        assert_eq!(escape(b"\r\0\xff"), b"\r\0\xff");
    }

    proptest! {
        #[test]
        fn roundtrip_all_byte_strings(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            let enc = escape(&raw);
            prop_assert!(!enc.contains(&b'\n'));
            prop_assert_eq!(unescape(&enc), raw);
        }

        #[test]
        fn decoder_matches_reference_order(wire in proptest::collection::vec(
            prop_oneof![Just(b'\\'), Just(b'n'), Just(b'/'), Just(b'x'), any::<u8>()], 0..64)) {
            prop_assert_eq!(unescape(&wire), reference_unescape(&wire));
        }
    }
}
