//! IRC lines: parsing what clients send, building what the gateway sends back.
//!
//! Everything here is bounded: an incoming line may carry up to [`MAX_TAGS`] bytes of IRCv3
//! tags plus [`MAX_LINE`] bytes of message, and every outgoing line is at most
//! [`MAX_LINE`] bytes including its CR LF. Nothing that comes from a client or from a buddy
//! can put a CR, LF or NUL into an outgoing line.

/// Longest IRC message, CR LF included (RFC 1459).
pub const MAX_LINE: usize = 512;
/// Longest IRCv3 tag section a client may send.
pub const MAX_TAGS: usize = 8191;
/// Longest raw line the server reads (tags, message and CR LF).
pub const MAX_INPUT: usize = MAX_TAGS + 1 + MAX_LINE;
/// Longest outgoing line without CR LF.
pub const MAX_BODY: usize = MAX_LINE - 2;
/// At most this many parameters are parsed (RFC 2812).
const MAX_PARAMS: usize = 15;

/// A parsed client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The prefix (clients rarely send one; it is ignored).
    pub prefix: Option<String>,
    /// The command, upper-cased (`PRIVMSG`, `JOIN`, …).
    pub command: String,
    /// Parameters; the trailing one without its `:`.
    pub params: Vec<String>,
}

impl Message {
    /// Parameter `i`, if present.
    pub fn param(&self, i: usize) -> Option<&str> {
        self.params.get(i).map(String::as_str)
    }
}

/// Why a line could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but spaces (or tags).
    Empty,
    /// Over [`MAX_LINE`] bytes (not counting tags), or over [`MAX_TAGS`] bytes of tags.
    TooLong,
}

/// Parses one line (a trailing CR LF is allowed). Tags are checked for length and dropped.
pub fn parse(line: &str) -> Result<Message, ParseError> {
    let mut rest = line.trim_end_matches(['\r', '\n']);
    if let Some(tagged) = rest.strip_prefix('@') {
        let (tags, after) = tagged.split_once(' ').unwrap_or((tagged, ""));
        if tags.len() > MAX_TAGS {
            return Err(ParseError::TooLong);
        }
        rest = after;
    }
    rest = rest.trim_start_matches(' ');
    if rest.len() > MAX_BODY {
        return Err(ParseError::TooLong);
    }
    let mut prefix = None;
    if let Some(p) = rest.strip_prefix(':') {
        let (p, after) = p.split_once(' ').unwrap_or((p, ""));
        prefix = Some(p.to_owned());
        rest = after.trim_start_matches(' ');
    }
    let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if command.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing.to_owned());
            break;
        }
        if params.len() == MAX_PARAMS - 1 {
            params.push(rest.to_owned());
            break;
        }
        let (p, after) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(p.to_owned());
        rest = after;
    }
    Ok(Message {
        prefix,
        command: command.to_ascii_uppercase(),
        params,
    })
}

/// `s` safe inside one IRC line: CR, LF and NUL become spaces, every other control character
/// (ESC, IRC formatting codes, C1) and bidirectional override is replaced by a visible
/// character (`torchat_api::display::line`), so a peer can neither break the line nor
/// restyle or reorder what the IRC client shows.
pub fn clean(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| match c {
            '\r' | '\n' | '\0' => ' ',
            c => c,
        })
        .collect();
    torchat_api::display::line(&s).into_owned()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A middle parameter: no spaces, not empty, not starting with `:`.
fn middle(p: &str) -> String {
    let mut s: String = clean(p)
        .chars()
        .map(|c| if c == ' ' { '_' } else { c })
        .collect();
    if s.is_empty() || s.starts_with(':') {
        s.insert(0, '*');
    }
    s
}

/// Builds `:prefix COMMAND middle… :trailing` (no CR LF), cleaned and cut to [`MAX_BODY`].
pub fn build(prefix: &str, command: &str, middles: &[&str], trailing: Option<&str>) -> String {
    let mut line = String::with_capacity(64);
    line.push(':');
    line.push_str(&middle(prefix));
    line.push(' ');
    line.push_str(command);
    for m in middles {
        line.push(' ');
        line.push_str(&middle(m));
    }
    if let Some(t) = trailing {
        line.push_str(" :");
        line.push_str(&clean(t));
    }
    truncate(&line, MAX_BODY).to_owned()
}

/// Splits `text` into pieces of at most `max` bytes on character boundaries, preferring to
/// cut after a space. `max` is raised to at least 16.
pub fn split_text(text: &str, max: usize) -> Vec<&str> {
    let max = max.max(16);
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let cut = truncate(rest, max);
        let at = match cut.rfind(' ') {
            Some(i) if i >= max / 2 => i + 1,
            _ => cut.len(),
        };
        // A character wider than `max` cannot happen (max >= 16 > 4).
        let (a, b) = rest.split_at(at.max(1));
        out.push(a);
        rest = b;
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest);
    }
    out
}

/// Lines of `:prefix COMMAND target :<lead><text>` for every line of `text`, each cut to fit
/// in [`MAX_BODY`] (long lines continue on the next IRC line, with `lead` repeated).
pub fn text_lines(
    prefix: &str,
    command: &str,
    target: &str,
    lead: &str,
    text: &str,
) -> Vec<String> {
    let head = build(prefix, command, &[target], Some(""));
    let room = MAX_BODY.saturating_sub(head.len() + lead.len());
    let mut out = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        for piece in split_text(line, room) {
            let l = format!("{head}{lead}{}", clean(piece));
            out.push(truncate(&l, MAX_BODY).to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_lines() {
        let m = parse("PRIVMSG #chan :hello there\r\n").unwrap();
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, vec!["#chan", "hello there"]);
        let m = parse("@time=x;y :nick!u@h privmsg   bob  :  spaced ").unwrap();
        assert_eq!(m.prefix.as_deref(), Some("nick!u@h"));
        assert_eq!(m.command, "PRIVMSG");
        assert_eq!(m.params, vec!["bob", "  spaced "]);
        let m = parse("USER u 0 * :Real Name").unwrap();
        assert_eq!(m.params, vec!["u", "0", "*", "Real Name"]);
        let m = parse("CAP LS 302").unwrap();
        assert_eq!(m.params, vec!["LS", "302"]);
        let m = parse("PING :").unwrap();
        assert_eq!(m.params, vec![""]);
        assert_eq!(parse("   "), Err(ParseError::Empty));
        assert_eq!(parse("@only-tags"), Err(ParseError::Empty));
        assert_eq!(parse(":prefixonly"), Err(ParseError::Empty));
    }

    #[test]
    fn bounds_are_enforced() {
        let long = format!("PRIVMSG x :{}", "a".repeat(600));
        assert_eq!(parse(&long), Err(ParseError::TooLong));
        let tags = format!("@{} PING :x", "t".repeat(MAX_TAGS));
        assert!(parse(&tags).is_ok());
        let tags = format!("@{} PING :x", "t".repeat(MAX_TAGS + 1));
        assert_eq!(parse(&tags), Err(ParseError::TooLong));
        let many = format!("X {}", "p ".repeat(40));
        assert_eq!(parse(&many).unwrap().params.len(), 15);
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "",
            ":",
            "@",
            "@ ",
            ": ",
            "::",
            "A :",
            "A ::",
            "é",
            ":é é :é",
            "\u{0}",
            "@\u{ff}",
        ] {
            let _ = parse(s);
        }
    }

    #[test]
    fn built_lines_are_safe_and_bounded() {
        let l = build("srv", "NOTICE", &["a b", ":x", ""], Some("evil\r\nQUIT"));
        assert_eq!(l, ":srv NOTICE a_b *:x * :evil  QUIT");
        let l = build("srv", "NOTICE", &["me"], Some(&"é".repeat(400)));
        assert!(l.len() <= MAX_BODY);
        assert!(l.is_char_boundary(l.len()));
    }

    #[test]
    fn text_is_split_per_line_and_length() {
        let text = format!("first\n\nsecond {}\r\nthird", "word ".repeat(150));
        let lines = text_lines("bob!tc@x.onion", "PRIVMSG", "#c", "(Direct) ", &text);
        assert!(lines.len() >= 4, "{lines:?}");
        for l in &lines {
            assert!(l.len() <= MAX_BODY, "{}", l.len());
            assert!(l.starts_with(":bob!tc@x.onion PRIVMSG #c :(Direct) "));
            assert!(!l.contains('\r') && !l.contains('\n'));
        }
        assert!(lines[0].ends_with("(Direct) first"));
        assert!(lines.last().unwrap().ends_with("(Direct) third"));
        let joined: String = lines[1..lines.len() - 1]
            .iter()
            .map(|l| l.split_once("(Direct) ").unwrap().1)
            .collect();
        assert_eq!(joined, format!("second {}", "word ".repeat(150)));
        assert_eq!(split_text("ééééé", 3).concat(), "ééééé");
        assert_eq!(split_text("", 10), vec![""]);
    }
}
