//! Making untrusted text safe to *show*. The API itself carries names and texts as received
//! (bytes that are not UTF-8 replaced, nothing else changed); every interface that puts them
//! on a terminal or an IRC line passes them through here first, so that a peer cannot move the
//! cursor, clear the screen, retitle the terminal, hide text with NUL or CR, or reorder a line
//! with bidirectional overrides.
//!
//! - C0 controls (NUL, CR, ESC, …) and DEL become their visible Unicode "control pictures"
//!   (`␀`, `␍`, `␛`, `␡`), so what was sent stays recognisable;
//! - C1 controls (U+0080–U+009F, e.g. the 8-bit CSI) and the bidirectional embedding, override
//!   and isolate characters (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C) become
//!   U+FFFD;
//! - [`line`] also turns LF and TAB into visible characters (one line of output); [`text`]
//!   keeps LF (multi-line messages) and turns TAB into a space.

use std::borrow::Cow;

fn bidi(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

fn needs_care(c: char, keep_lf: bool) -> bool {
    (c.is_control() && !(keep_lf && (c == '\n' || c == '\t'))) || bidi(c)
}

fn picture(c: char) -> char {
    match c {
        '\u{0}'..='\u{1F}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{FFFD}'),
        '\u{7F}' => '\u{2421}',
        _ => '\u{FFFD}',
    }
}

fn clean(s: &str, keep_lf: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| needs_care(c, keep_lf)) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| match c {
                '\t' if keep_lf => ' ',
                '\n' if keep_lf => '\n',
                c if needs_care(c, keep_lf) => picture(c),
                c => c,
            })
            .collect(),
    )
}

/// `s` safe to show on one line: no control or bidi character left (see the module docs).
pub fn line(s: &str) -> Cow<'_, str> {
    clean(s, false)
}

/// `s` safe to show as a (possibly multi-line) text: LF kept, TAB a space, every other control
/// or bidi character replaced.
pub fn text(s: &str) -> Cow<'_, str> {
    clean(s, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_and_texts_are_shown_harmlessly() {
        assert_eq!(line("alice"), "alice");
        assert!(matches!(line("plain"), Cow::Borrowed(_)));
        assert_eq!(line("ev\0il"), "ev\u{2400}il");
        assert_eq!(line("a\rb"), "a\u{240D}b");
        assert_eq!(
            line("\u{1b}[2J\u{1b}]0;owned\u{7}"),
            "\u{241B}[2J\u{241B}]0;owned\u{2407}"
        );
        assert_eq!(line("x\u{9b}31m"), "x\u{FFFD}31m");
        assert_eq!(line("abc\u{202E}fdp.exe"), "abc\u{FFFD}fdp.exe");
        assert_eq!(line("\u{2067}x\u{2069}"), "\u{FFFD}x\u{FFFD}");
        assert_eq!(line("del\u{7f}"), "del\u{2421}");
        assert_eq!(line("two\nlines"), "two\u{240A}lines");
        assert_eq!(
            text("two\nlines\tand\r\u{1b}c"),
            "two\nlines and\u{240D}\u{241B}c"
        );
        assert_eq!(text("naïve 日本 🙂"), "naïve 日本 🙂");
        for s in ["\0\r\n\u{1b}\u{9b}\u{202e}\u{2066}\u{7f}", "ok"] {
            assert!(!line(s).chars().any(|c| c.is_control() || bidi(c)));
            assert!(!text(s)
                .chars()
                .any(|c| (c.is_control() && c != '\n') || bidi(c)));
        }
    }
}
