//! Reader for the capture format of `wire-samples.txt` (real clients talking on loopback), so
//! tests can replay real conversations. One captured line looks like:
//!
//! ```text
//!   +    2.3  c2   fw rubyaaaaaaaaaaaa>rubybbbbbbbbbbbb  pong 810b6590-3148-462e-811c-391a83e71852
//! ```
//!
//! Bytes outside printable ASCII are written `\xNN` and a backslash `\\`.

/// Who wrote a captured line on its TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the peer that opened the connection (its outgoing connection).
    Forward,
    /// Sent back by the accepting peer.
    Backward,
}

/// One captured line.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedLine {
    /// Index of the section (`1.`, `2b.`, ...) as written in its heading.
    pub section: String,
    /// Milliseconds since the first line of the section.
    pub millis: f64,
    /// Connection number within the capture.
    pub conn: u32,
    /// Which side wrote it.
    pub direction: Direction,
    /// The sender's id as written.
    pub from: String,
    /// The receiver's id as written.
    pub to: String,
    /// The exact bytes of the line on the wire, without its LF.
    pub bytes: Vec<u8>,
    /// 1-based line number in the file.
    pub file_line: usize,
}

/// Parses every captured line of a transcript file. Lines that are not captures (headings,
/// prose) are skipped; a line that starts like a capture but does not parse is an error.
pub fn parse(text: &str) -> Result<Vec<CapturedLine>, String> {
    let mut out = Vec::new();
    let mut section = String::new();
    for (i, line) in text.lines().enumerate() {
        let file_line = i + 1;
        if let Some(first) = line.split_whitespace().next() {
            let is_heading = !line.starts_with(' ')
                && first.ends_with('.')
                && first.as_bytes().first().is_some_and(u8::is_ascii_digit);
            if is_heading {
                section = first.trim_end_matches('.').to_owned();
                continue;
            }
        }
        let Some(rest) = line.strip_prefix("  +") else {
            continue;
        };
        let (ms, rest) = word(rest);
        let Ok(millis) = ms.parse::<f64>() else {
            continue;
        };
        let err = |what: &str| format!("line {file_line}: {what}");
        let (conn, rest) = word(rest);
        if conn == "[proxy]" {
            // A connection event of the capturing proxy (file-transfer-samples.txt), not a line.
            continue;
        }
        let conn = conn
            .strip_prefix('c')
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| err("conn"))?;
        let (dir, rest) = word(rest);
        let direction = match dir {
            "fw" => Direction::Forward,
            "bw" => Direction::Backward,
            _ => return Err(err("direction")),
        };
        let rest = rest.trim_start();
        let (pair, payload) = rest.split_once("  ").ok_or_else(|| err("peers"))?;
        let (from, to) = pair.split_once('>').ok_or_else(|| err("peers"))?;
        out.push(CapturedLine {
            section: section.clone(),
            millis,
            conn,
            direction,
            from: from.to_owned(),
            to: to.to_owned(),
            bytes: unprintable(payload).ok_or_else(|| err("escape"))?,
            file_line,
        });
    }
    Ok(out)
}

/// Splits off the next whitespace-delimited word, skipping leading blanks.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    s.split_once(' ').unwrap_or((s, ""))
}

/// Undoes the capture's display escaping (`\\` and `\xNN`).
fn unprintable(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            match b.get(i + 1)? {
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                }
                b'x' => {
                    let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                    out.push(u8::from_str_radix(hex, 16).ok()?);
                    i += 4;
                }
                _ => return None,
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}
