//! The input line: readline-style editing and a history of what was entered.

use std::collections::VecDeque;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use unicode_width::UnicodeWidthChar;

/// Lines remembered for Up/Down.
pub const MAX_HISTORY: usize = 100;
/// Longest input accepted (characters); the node refuses lines over 64 KiB anyway.
pub const MAX_INPUT: usize = 16 * 1024;

/// A single-line editor with the usual readline keys.
#[derive(Debug, Clone, Default)]
pub struct LineEditor {
    chars: Vec<char>,
    cursor: usize,
    history: VecDeque<String>,
    /// Position while browsing the history (`None`: editing the draft).
    hist_pos: Option<usize>,
    draft: Vec<char>,
    kill: Vec<char>,
}

impl LineEditor {
    /// The text.
    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// Nothing typed.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Cursor position in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Replaces the text (cursor at the end).
    pub fn set_text(&mut self, s: &str) {
        self.chars = clean(s).into_iter().take(MAX_INPUT).collect();
        self.cursor = self.chars.len();
        self.hist_pos = None;
    }

    /// Inserts text at the cursor (a paste: line breaks become spaces).
    pub fn insert_str(&mut self, s: &str) {
        let room = MAX_INPUT.saturating_sub(self.chars.len());
        let add: Vec<char> = clean(s).into_iter().take(room).collect();
        let n = add.len();
        self.chars.splice(self.cursor..self.cursor, add);
        self.cursor += n;
    }

    /// Takes the text for submission, remembering it in the history.
    pub fn take(&mut self) -> String {
        let s = self.text();
        if !s.trim().is_empty() && self.history.back() != Some(&s) {
            self.history.push_back(s.clone());
            if self.history.len() > MAX_HISTORY {
                self.history.pop_front();
            }
        }
        self.chars.clear();
        self.cursor = 0;
        self.hist_pos = None;
        self.draft.clear();
        s
    }

    /// Handles an editing key; `false` if the key is not an editing key.
    pub fn handle(&mut self, key: KeyEvent) -> bool {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char(c) if ctrl => match c {
                'a' => self.cursor = 0,
                'e' => self.cursor = self.chars.len(),
                'b' => self.left(),
                'f' => self.right(),
                'k' => {
                    self.kill = self.chars.split_off(self.cursor);
                }
                'u' => {
                    self.kill = self.chars.drain(..self.cursor).collect();
                    self.cursor = 0;
                }
                'w' => self.kill_word_back(),
                'y' => {
                    let k: String = self.kill.iter().collect();
                    self.insert_str(&k);
                }
                'd' => self.delete(),
                'h' => self.backspace(),
                _ => return false,
            },
            KeyCode::Char(c) if alt => match c {
                'b' => self.cursor = self.word_left(),
                'f' => self.cursor = self.word_right(),
                'd' => {
                    let end = self.word_right();
                    self.kill = self.chars.drain(self.cursor..end).collect();
                }
                _ => return false,
            },
            KeyCode::Char(c) => {
                if self.chars.len() < MAX_INPUT {
                    self.chars.insert(self.cursor, c);
                    self.cursor += 1;
                }
            }
            KeyCode::Backspace if alt => self.kill_word_back(),
            KeyCode::Backspace => self.backspace(),
            KeyCode::Delete => self.delete(),
            KeyCode::Left if ctrl || alt => self.cursor = self.word_left(),
            KeyCode::Right if ctrl || alt => self.cursor = self.word_right(),
            KeyCode::Left => self.left(),
            KeyCode::Right => self.right(),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.chars.len(),
            KeyCode::Up => self.history_prev(),
            KeyCode::Down => self.history_next(),
            _ => return false,
        }
        true
    }

    fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.chars.len());
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.chars.remove(self.cursor);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.chars.len() {
            self.chars.remove(self.cursor);
        }
    }

    fn word_left(&self) -> usize {
        let mut i = self.cursor;
        while i > 0 && self.chars[i - 1].is_whitespace() {
            i -= 1;
        }
        while i > 0 && !self.chars[i - 1].is_whitespace() {
            i -= 1;
        }
        i
    }

    fn word_right(&self) -> usize {
        let mut i = self.cursor;
        let n = self.chars.len();
        while i < n && self.chars[i].is_whitespace() {
            i += 1;
        }
        while i < n && !self.chars[i].is_whitespace() {
            i += 1;
        }
        i
    }

    fn kill_word_back(&mut self) {
        let start = self.word_left();
        self.kill = self.chars.drain(start..self.cursor).collect();
        self.cursor = start;
    }

    fn history_prev(&mut self) {
        let pos = match self.hist_pos {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.chars.clone();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(p) => p - 1,
        };
        self.hist_pos = Some(pos);
        self.chars = self.history[pos].chars().collect();
        self.cursor = self.chars.len();
    }

    fn history_next(&mut self) {
        let Some(p) = self.hist_pos else {
            return;
        };
        if p + 1 < self.history.len() {
            self.hist_pos = Some(p + 1);
            self.chars = self.history[p + 1].chars().collect();
        } else {
            self.hist_pos = None;
            self.chars = std::mem::take(&mut self.draft);
        }
        self.cursor = self.chars.len();
    }

    /// What fits in `width` columns around the cursor: the visible text and the cursor column.
    pub fn view(&self, width: usize) -> (String, usize) {
        let width = width.max(2);
        let w = |c: &char| c.width().unwrap_or(0);
        // Scroll so the cursor stays visible, keeping as much text before it as fits.
        let mut start = self.cursor;
        let mut used = 1; // the cursor cell
        while start > 0 && used + w(&self.chars[start - 1]) <= width {
            used += w(&self.chars[start - 1]);
            start -= 1;
        }
        let col: usize = self.chars[start..self.cursor].iter().map(w).sum();
        let mut out = String::new();
        let mut cols = 0;
        for c in &self.chars[start..] {
            if cols + w(c) > width {
                break;
            }
            cols += w(c);
            out.push(*c);
        }
        (out, col)
    }
}

/// Line breaks and tabs become spaces; other control characters are dropped.
fn clean(s: &str) -> Vec<char> {
    s.replace("\r\n", " ")
        .chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn typed(s: &str) -> LineEditor {
        let mut e = LineEditor::default();
        for c in s.chars() {
            e.handle(key(KeyCode::Char(c)));
        }
        e
    }

    #[test]
    fn readline_keys() {
        let mut e = typed("hello big world");
        e.handle(ctrl('w'));
        assert_eq!(e.text(), "hello big ");
        e.handle(ctrl('a'));
        e.handle(key(KeyCode::Char('>')));
        assert_eq!(e.text(), ">hello big ");
        e.handle(ctrl('e'));
        e.handle(key(KeyCode::Left));
        e.handle(key(KeyCode::Left));
        e.handle(ctrl('k'));
        assert_eq!(e.text(), ">hello bi");
        e.handle(ctrl('y'));
        assert_eq!(e.text(), ">hello big ");
        e.handle(key(KeyCode::Home));
        e.handle(key(KeyCode::Right));
        e.handle(key(KeyCode::Right));
        e.handle(ctrl('u'));
        assert_eq!(e.text(), "ello big ");
        assert_eq!(e.cursor(), 0);
        e.handle(key(KeyCode::End));
        e.handle(key(KeyCode::Backspace));
        assert_eq!(e.text(), "ello big");
        e.handle(key(KeyCode::Home));
        e.handle(key(KeyCode::Delete));
        assert_eq!(e.text(), "llo big");
        assert!(!e.handle(key(KeyCode::F(5))));
    }

    #[test]
    fn history_up_down_keeps_the_draft() {
        let mut e = typed("one");
        e.take();
        for c in "two".chars() {
            e.handle(key(KeyCode::Char(c)));
        }
        e.take();
        for c in "dra".chars() {
            e.handle(key(KeyCode::Char(c)));
        }
        e.handle(key(KeyCode::Up));
        assert_eq!(e.text(), "two");
        e.handle(key(KeyCode::Up));
        assert_eq!(e.text(), "one");
        e.handle(key(KeyCode::Up));
        assert_eq!(e.text(), "one");
        e.handle(key(KeyCode::Down));
        assert_eq!(e.text(), "two");
        e.handle(key(KeyCode::Down));
        assert_eq!(e.text(), "dra");
    }

    #[test]
    fn paste_and_view() {
        let mut e = LineEditor::default();
        e.insert_str("a\nb\tc\u{7}");
        assert_eq!(e.text(), "a b c");
        let mut e = typed("0123456789abcdef");
        let (v, col) = e.view(8);
        assert_eq!(v, "9abcdef");
        assert_eq!(col, 7);
        e.handle(key(KeyCode::Home));
        let (v, col) = e.view(8);
        assert_eq!((v.as_str(), col), ("01234567", 0));
    }
}
