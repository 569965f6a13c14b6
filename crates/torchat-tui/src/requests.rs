//! Contact requests from strangers in the TUI: a "Requests" section in the sidebar; selecting
//! one shows what the stranger sent (made safe to show) and `a` accepts, `d` ignores, `b`
//! blocks.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;
use torchat_api as api;
use torchat_api::display;
use torchat_api::Command;

use crate::app::{After, App, Level, Pending, Target};
use crate::model::short_id;

impl App {
    /// The stranger ids with a pending request, oldest first.
    pub(crate) fn request_targets(&self) -> Vec<Target> {
        let mut v: Vec<&api::ContactRequest> = self.requests.values().collect();
        v.sort_by_key(|r| (r.first_at, r.id.clone()));
        v.into_iter()
            .map(|r| Target::Request(r.id.clone()))
            .collect()
    }

    pub(crate) fn load_requests(&mut self) {
        self.call(Command::Requests, Pending::Requests);
    }

    pub(crate) fn set_requests(&mut self, v: serde_json::Value) {
        if let Ok(list) = serde_json::from_value::<Vec<api::ContactRequest>>(v) {
            self.requests = list.into_iter().map(|r| (r.id.clone(), r)).collect();
        }
        if let Target::Request(id) = &self.current {
            if !self.requests.contains_key(id) {
                self.current = Target::Home;
            }
        }
    }

    /// Keys while a request is selected.
    pub(crate) fn key_request(&mut self, k: KeyEvent, id: String) {
        let plain = !k
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        let short = short_id(&id);
        match k.code {
            KeyCode::Char('a') | KeyCode::Char('y') if plain => self.simple(
                Command::RequestAccept {
                    id: id.clone(),
                    alias: None,
                },
                format!("{short} is a buddy now"),
                After::Buddies,
            ),
            KeyCode::Char('d') | KeyCode::Char('n') | KeyCode::Char('i') if plain => self.simple(
                Command::RequestIgnore { id },
                format!("ignored the request from {short}"),
                After::Nothing,
            ),
            KeyCode::Char('b') if plain => self.simple(
                Command::Block { id },
                format!("blocked {short}"),
                After::Buddies,
            ),
            KeyCode::Esc | KeyCode::Enter => {}
            _ => self.say(
                Level::Info,
                "a: accept (add as buddy) · d: ignore (drop the messages) · b: block",
            ),
        }
    }

    /// `request`, `request_message`, `request_closed`.
    pub(crate) fn on_request_event(&mut self, e: api::Event) {
        match e {
            api::Event::Request {
                id,
                added_me,
                dropped,
                ..
            } => {
                let new = !self.requests.contains_key(&id);
                let r = self
                    .requests
                    .entry(id.clone())
                    .or_insert_with(|| api::ContactRequest {
                        id: id.clone(),
                        added_me,
                        first_at: self.now,
                        last_at: self.now,
                        dropped,
                        messages: vec![],
                    });
                r.added_me = added_me;
                r.dropped = dropped;
                if new {
                    self.say(
                        Level::Info,
                        format!(
                            "contact request from {}: select it in Requests (Tab)",
                            short_id(&id)
                        ),
                    );
                }
            }
            api::Event::RequestMessage { from, message } => {
                if let Some(r) = self.requests.get_mut(&from) {
                    r.last_at = message.at;
                    r.messages.push(message);
                    // The node keeps at most a few dozen per stranger; so do we.
                    let excess = r.messages.len().saturating_sub(64);
                    r.messages.drain(..excess);
                } else {
                    self.load_requests();
                }
            }
            api::Event::RequestClosed { id, outcome } => {
                self.requests.remove(&id);
                if self.current == Target::Request(id.clone()) {
                    if outcome == "accepted" {
                        self.select(Target::Buddy(id));
                    } else {
                        self.current = Target::Home;
                    }
                }
            }
            _ => {}
        }
    }
}

/// The sidebar row of a request.
pub(crate) fn side_item(app: &App, id: &str) -> Line<'static> {
    let n = app.requests.get(id).map_or(0, |r| r.messages.len());
    Line::from(vec![
        Span::styled("? ", Style::new().fg(Color::Yellow)),
        Span::raw(short_id(id)),
        Span::styled(
            if n > 0 {
                format!(" ({n})")
            } else {
                String::new()
            },
            Style::new().fg(Color::Yellow),
        ),
    ])
}

/// The main pane for a request: who, what it sent, what to do.
pub(crate) fn draw(frame: &mut Frame, app: &App, area: Rect, id: &str) {
    let Some(r) = app.requests.get(id) else {
        return;
    };
    let gray = Style::new().fg(Color::Gray);
    let mut lines = vec![
        Line::from(vec![
            Span::styled("contact request", Style::new().add_modifier(Modifier::BOLD)),
            Span::styled(
                if r.added_me {
                    " · it added you to its list"
                } else {
                    " · it wrote to you"
                },
                gray,
            ),
        ]),
        Line::from(Span::styled(r.id.clone(), gray)),
        Line::from(""),
    ];
    if r.messages.is_empty() {
        lines.push(Line::from(Span::styled("(no message)", gray)));
    }
    for m in &r.messages {
        let t = crate::ui::fmt_time(m.at, app.utc_offset_secs, app.now);
        lines.push(Line::from(vec![
            Span::styled(format!("{t} "), gray),
            Span::raw(display::line(&m.text).into_owned()),
        ]));
    }
    if r.dropped > 0 {
        lines.push(Line::from(Span::styled(
            format!("({} more messages were dropped)", r.dropped),
            Style::new().fg(Color::Yellow),
        )));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "a accept (add as buddy) · d ignore (drop these messages) · b block",
        Style::new().fg(Color::Cyan),
    )));
    let p = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(Block::default().borders(Borders::TOP));
    frame.render_widget(p, area);
}
