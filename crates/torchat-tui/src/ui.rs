//! Rendering: [`draw`] paints the whole screen from an [`App`], and nothing else. The layout
//! helpers here are also what the app uses to know how tall messages are when it scrolls.
//!
//! ```text
//!  torchat │ <our id> │ available │ Tor ready                           top bar
//! ┌ Chats ──────────┐┌ bob · available ─────────────────────────────┐
//! │ Home            ││ bobaaaaaaaaaaaa · TorChat 0.9.9              │   header
//! │ Groups          ││12:00 bob: hi                                 │   messages
//! │ #44034392     2 ││12:01 you: hello · sent                       │
//! │   bob, carol    ││                                              │
//! │ Buddies         ││                                              │
//! │ ● bob         1 ││                                              │
//! └─────────────────┘└──────────────────────────────────────────────┘
//! ┌ to bob ───────────────────────────────────────────────────────────┐   input
//! └───────────────────────────────────────────────────────────────────┘
//!  F1 help · Tab next chat · Esc select a message · Ctrl-C quit           hints / notices
//! ```

use ratatui::layout::{Alignment, Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};
use ratatui::Frame;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use torchat_api as api;

use crate::app::{App, ClaimsView, Level, Mode, SideItem, Target};
use crate::model::{
    short_gid, short_id, BuddyEntry, ChatMessage, Delivery, GroupEntry, GroupState, Presence, Trust,
};

/// Keys and commands, as the help screen lists them (and `docs/tui.md`).
pub const HELP: &[(&str, &str)] = &[
    ("", "Moving around"),
    ("Tab / Shift-Tab", "next / previous conversation (also Ctrl-N / Ctrl-P, Alt-↓ / Alt-↑)"),
    ("PgUp / PgDn", "scroll the conversation (older history loads at the top)"),
    ("Esc", "select messages: ↑/↓ (j/k) move, c or Enter shows who vouched, Esc back"),
    ("F1", "this help"),
    ("F2", "your id alone on the screen (c copies it with OSC 52)"),
    ("Ctrl-C / Ctrl-Q", "quit (your id is printed on exit)"),
    ("", "Input line"),
    ("Enter", "send (or run a /command; // sends a leading /)"),
    ("Ctrl-A / Ctrl-E", "start / end of line (also Home / End)"),
    ("Ctrl-K / Ctrl-U", "delete to the end / to the start of the line"),
    ("Ctrl-W", "delete the word before the cursor (Ctrl-Y puts it back)"),
    ("←/→, Alt-B/Alt-F", "move by character / by word"),
    ("↑ / ↓", "earlier / later lines you entered"),
    ("", "Invites"),
    ("a / d", "accept / decline the selected invite"),
    ("", "Commands"),
    ("/add <id> [alias]", "add a buddy"),
    ("/remove, /block, /unblock [id]", "manage this (or that) buddy"),
    ("/status available|away|xa", "your presence (also /away, /xa, /back)"),
    ("/profile <name> [| <text>]", "your profile name and text"),
    ("/group [noredundancy]", "create a group"),
    ("/invite <id or name>", "invite an online buddy to this group"),
    ("/accept, /decline", "answer this group's invite"),
    ("/leave [reason]", "leave this group"),
    ("/members", "list this group's members"),
    ("/send <path>", "offer a file to this buddy (absolute path or ~/…)"),
    ("/files", "file transfers with progress (on Home)"),
    ("/get [n], /drop [n]", "accept / decline (or stop) file n (default: the newest offer)"),
    ("/claims", "who vouched for the newest group message"),
    ("/id, /help, /quit", ""),
    ("", "Trust tags in groups"),
    ("(Direct)", "you got it from the speaker"),
    ("(k of N)", "only relayed: k of the N other members vouch for it"),
    ("(UNCONFIRMED k of N)", "relayed while the speaker was connected to you and did not send it to you: possibly forged"),
    ("", "Buddies"),
    ("● ◐ ◌", "available, away, extended away"),
    ("… ↔ ○", "connecting, handshake, offline"),
];

/// The screen's parts.
pub(crate) struct Areas {
    pub top: Rect,
    pub side: Rect,
    pub chat: Rect,
    pub input: Rect,
    pub hints: Rect,
}

pub(crate) fn areas(area: Rect) -> Areas {
    let [top, body, input, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(area);
    let side_w = if area.width >= 110 {
        30
    } else if area.width >= 60 {
        24
    } else {
        area.width / 3
    };
    let [side, chat] =
        Layout::horizontal([Constraint::Length(side_w), Constraint::Min(1)]).areas(body);
    Areas {
        top,
        side,
        chat,
        input,
        hints,
    }
}

fn screen(size: (u16, u16)) -> Rect {
    Rect::new(0, 0, size.0, size.1)
}

/// Columns for message text in the chat pane.
pub(crate) fn chat_text_width(size: (u16, u16)) -> usize {
    areas(screen(size)).chat.width.saturating_sub(2).max(1) as usize
}

/// Rows for messages in the chat pane (inside the border, below the header line).
pub(crate) fn chat_text_height(app: &App, size: (u16, u16)) -> usize {
    let inner = areas(screen(size)).chat.height.saturating_sub(2) as usize;
    let header = usize::from(app.current != Target::Home);
    inner.saturating_sub(header).max(1)
}

/// Paints everything.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if let Mode::ShowId = app.mode {
        draw_id(frame, app, area);
        return;
    }
    let a = areas(area);
    draw_top(frame, app, a.top);
    draw_sidebar(frame, app, a.side);
    draw_main(frame, app, a.chat);
    draw_input(frame, app, a.input);
    draw_hints(frame, app, a.hints);
    match &app.mode {
        Mode::Help { scroll } => draw_help(frame, area, *scroll),
        Mode::Claims(cv) => draw_claims(frame, app, area, cv),
        Mode::Confirm { question, .. } => draw_confirm(frame, area, question),
        _ => {}
    }
}

// ----- top bar -----

fn draw_top(frame: &mut Frame, app: &App, area: Rect) {
    let bar = Style::new().bg(Color::Blue).fg(Color::White);
    let mut spans = vec![Span::styled(" torchat ", bar.add_modifier(Modifier::BOLD))];
    let sep = || Span::styled("│", bar);
    if let Some(me) = &app.me {
        spans.push(sep());
        spans.push(Span::styled(format!(" {} ", short_id(me)), bar));
    }
    spans.push(sep());
    spans.push(Span::styled(format!(" {} ", app.status), bar));
    spans.push(sep());
    spans.push(tor_span(app));
    let unread: usize = app.convs.values().map(|c| c.unread).sum();
    if unread > 0 {
        spans.push(sep());
        spans.push(Span::styled(
            format!(" {unread} unread "),
            bar.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
}

fn tor_span(app: &App) -> Span<'static> {
    let t = &app.tor;
    if let Some((msg, _)) = &t.problem {
        Span::styled(
            format!(" Tor problem: {msg} "),
            Style::new()
                .bg(Color::Red)
                .fg(Color::White)
                .add_modifier(Modifier::BOLD),
        )
    } else if t.ready {
        let what = if app.transport.is_empty() || app.transport == "tor" {
            "Tor ready".to_owned()
        } else {
            format!("{} ready", app.transport)
        };
        Span::styled(
            format!(" {what} "),
            Style::new().bg(Color::Blue).fg(Color::LightGreen),
        )
    } else {
        Span::styled(
            format!(" Tor {}% {} ", t.percent, t.summary),
            Style::new().bg(Color::Blue).fg(Color::Yellow),
        )
    }
}

// ----- sidebar -----

fn presence_color(p: Presence) -> Color {
    match p {
        Presence::Available => Color::Green,
        Presence::Away => Color::Yellow,
        Presence::Xa => Color::LightRed,
        Presence::Handshake | Presence::Connecting => Color::Cyan,
        Presence::Offline => Color::DarkGray,
    }
}

/// `name` padded so that `right` ends at the last column of `width`.
fn padded(left: Vec<Span<'static>>, right: Option<Span<'static>>, width: usize) -> Line<'static> {
    let right_w = right.as_ref().map_or(0, |r| r.width());
    let budget = width.saturating_sub(right_w + usize::from(right.is_some()));
    let mut out = vec![];
    let mut used = 0;
    for s in left {
        let (t, w) = truncate(&s.content, budget - used);
        used += w;
        out.push(Span::styled(t, s.style));
        if used >= budget {
            break;
        }
    }
    if let Some(r) = right {
        out.push(Span::raw(" ".repeat(width.saturating_sub(used + right_w))));
        out.push(r);
    }
    Line::from(out)
}

/// Cuts `s` to `max` columns, ending with `…` when cut.
fn truncate(s: &str, max: usize) -> (String, usize) {
    if s.width() <= max {
        return (s.to_owned(), s.width());
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw + 1 > max {
            break;
        }
        out.push(c);
        w += cw;
    }
    if max > 0 {
        out.push('…');
        w += 1;
    }
    (out, w)
}

fn unread_span(n: usize) -> Option<Span<'static>> {
    (n > 0).then(|| {
        Span::styled(
            format!("{n}"),
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        )
    })
}

fn draw_sidebar(frame: &mut Frame, app: &App, area: Rect) {
    let block = Block::new().borders(Borders::ALL).title(" Chats ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = inner.width as usize;
    let mut items = vec![];
    let mut selected = None;
    for item in app.sidebar() {
        match item {
            SideItem::Header(h) => items.push(ListItem::new(Line::styled(
                h,
                Style::new().fg(Color::Gray).add_modifier(Modifier::BOLD),
            ))),
            SideItem::Item(t) => {
                if t == app.current {
                    selected = Some(items.len());
                }
                items.push(side_item(app, &t, width));
            }
        }
    }
    let list = List::new(items).highlight_style(
        Style::new()
            .bg(Color::DarkGray)
            .fg(Color::White)
            .add_modifier(Modifier::BOLD),
    );
    let mut state = ListState::default().with_selected(selected);
    frame.render_stateful_widget(list, inner, &mut state);
}

fn side_item(app: &App, t: &Target, width: usize) -> ListItem<'static> {
    let unread = |key: &str| app.convs.get(key).map_or(0, |c| c.unread);
    match t {
        Target::Home => ListItem::new(Line::from(" Home")),
        Target::Request(id) => ListItem::new(crate::requests::side_item(app, id)),
        Target::Buddy(id) => {
            let b = app
                .buddies
                .get(id)
                .cloned()
                .unwrap_or_else(|| BuddyEntry::bare(id));
            let sym = if b.is_blocked() {
                Span::styled("⊘ ", Style::new().fg(Color::DarkGray))
            } else {
                Span::styled(
                    format!("{} ", b.presence.symbol()),
                    Style::new().fg(presence_color(b.presence)),
                )
            };
            let mut name_style = Style::new();
            if !b.presence.is_online() {
                name_style = name_style.fg(Color::Gray);
            }
            let mut left = vec![sym, Span::styled(b.display_name(), name_style)];
            if b.kind == "temporary" {
                left.push(Span::styled(" ?", Style::new().fg(Color::Yellow)));
            }
            ListItem::new(padded(left, unread_span(unread(id)), width))
        }
        Target::Group(gid) => {
            let g = app
                .groups
                .get(gid)
                .cloned()
                .unwrap_or_else(|| GroupEntry::bare(gid, GroupState::Joined));
            if g.state == GroupState::Invited {
                let from = g.inviter.as_deref().map(|i| app.name_of(i));
                let left = vec![
                    Span::styled(
                        "✉ ",
                        Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
                    ),
                    Span::styled(g.short_name(), Style::new().fg(Color::Yellow)),
                    Span::raw(from.map(|f| format!(" {f}")).unwrap_or_default()),
                ];
                return ListItem::new(padded(left, None, width));
            }
            let style = match g.state {
                GroupState::Left => Style::new().fg(Color::DarkGray),
                _ => Style::new(),
            };
            let state = match g.state {
                GroupState::Joining => " joining",
                GroupState::Left => " left",
                _ => "",
            };
            let first = padded(
                vec![
                    Span::styled("# ", Style::new().fg(Color::Cyan)),
                    Span::styled(format!("{}{state}", &g.short_name()[1..]), style),
                ],
                unread_span(unread(gid)),
                width,
            );
            let members = if g.members.is_empty() {
                "(only you)".to_owned()
            } else {
                g.members
                    .iter()
                    .map(|m| app.name_of(m))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let second = padded(
                vec![Span::styled(
                    format!("  {members}"),
                    Style::new().fg(Color::Gray),
                )],
                None,
                width,
            );
            ListItem::new(Text::from(vec![first, second]))
        }
    }
}

// ----- main pane -----

fn draw_main(frame: &mut Frame, app: &App, area: Rect) {
    match app.current.clone() {
        Target::Home => draw_home(frame, app, area),
        Target::Request(id) => crate::requests::draw(frame, app, area, &id),
        Target::Buddy(id) => {
            let b = app
                .buddies
                .get(&id)
                .cloned()
                .unwrap_or_else(|| BuddyEntry::bare(&id));
            let mut title = vec![
                Span::raw(" "),
                Span::styled(b.display_name(), Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(" · "),
                Span::styled(
                    if b.is_blocked() {
                        "blocked"
                    } else {
                        b.presence.label()
                    },
                    Style::new().fg(presence_color(b.presence)),
                ),
            ];
            if b.queued > 0 {
                title.push(Span::styled(
                    format!(" · {} queued", b.queued),
                    Style::new().fg(Color::Yellow),
                ));
            }
            title.push(Span::raw(" "));
            let mut header = vec![Span::styled(b.id.clone(), Style::new().fg(Color::Gray))];
            if b.kind == "temporary" {
                header.push(Span::styled(
                    " · not on your list (/add)",
                    Style::new().fg(Color::Yellow),
                ));
            }
            if let Some(c) = &b.client {
                header.push(Span::styled(
                    format!(" · {c}"),
                    Style::new().fg(Color::Gray),
                ));
            }
            if let Some(t) = &b.text {
                header.push(Span::styled(
                    format!(" · “{t}”"),
                    Style::new().fg(Color::Gray).add_modifier(Modifier::ITALIC),
                ));
            }
            draw_conversation(frame, app, area, &id, Line::from(title), Line::from(header));
        }
        Target::Group(gid) => {
            let g = app
                .groups
                .get(&gid)
                .cloned()
                .unwrap_or_else(|| GroupEntry::bare(&gid, GroupState::Joined));
            if g.state == GroupState::Invited {
                return draw_invite(frame, app, area, &g);
            }
            let mut title = vec![
                Span::raw(" group "),
                Span::styled(g.short_name(), Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(format!(" · {}", g.state.label())),
            ];
            if g.modes.iter().any(|m| m == "noredundancy") {
                title.push(Span::styled(
                    " · no redundancy",
                    Style::new().fg(Color::Yellow),
                ));
            }
            title.push(Span::raw(" "));
            let mut header = vec![Span::styled("members: you", Style::new().fg(Color::Gray))];
            for m in &g.members {
                let p = app.buddies.get(m).map(|b| b.presence);
                header.push(Span::styled(", ", Style::new().fg(Color::Gray)));
                if let Some(p) = p {
                    header.push(Span::styled(
                        format!("{} ", p.symbol()),
                        Style::new().fg(presence_color(p)),
                    ));
                }
                header.push(Span::raw(app.name_of(m)));
            }
            draw_conversation(
                frame,
                app,
                area,
                &gid,
                Line::from(title),
                Line::from(header),
            );
        }
    }
}

fn draw_conversation(
    frame: &mut Frame,
    app: &App,
    area: Rect,
    key: &str,
    title: Line<'static>,
    header: Line<'static>,
) {
    let conv = app.convs.get(key);
    let scroll = conv.map_or(0, |c| c.scroll);
    let mut block = Block::new().borders(Borders::ALL).title(title);
    if scroll > 0 {
        block = block.title_bottom(
            Line::styled(
                format!(" ↓ {scroll} more lines (PgDn) "),
                Style::new().fg(Color::Yellow),
            )
            .right_aligned(),
        );
    } else if conv.is_some_and(|c| c.newer) {
        block = block.title_bottom(
            Line::styled(" ↓ newer messages (PgDn) ", Style::new().fg(Color::Yellow))
                .right_aligned(),
        );
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 {
        return;
    }
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    frame.render_widget(Paragraph::new(header), head);
    let width = body.width as usize;
    let height = body.height as usize;
    let selected = match app.mode {
        Mode::Browse { selected } => Some(selected),
        _ => None,
    };
    let Some(conv) = conv.filter(|c| !c.messages.is_empty()) else {
        let text = if conv.is_some_and(|c| c.loading) {
            "loading…"
        } else {
            "no messages yet"
        };
        frame.render_widget(
            Paragraph::new(Line::styled(text, Style::new().fg(Color::Gray))),
            body,
        );
        return;
    };
    let mut lines: Vec<Line<'static>> = vec![];
    if conv.more {
        lines.push(Line::styled(
            "  ↑ older messages: PgUp",
            Style::new().fg(Color::DarkGray),
        ));
    } else if conv.loading {
        lines.push(Line::styled("  loading…", Style::new().fg(Color::DarkGray)));
    }
    for (i, m) in conv.messages.iter().enumerate() {
        lines.extend(message_lines(app, m, width, selected == Some(i)));
    }
    let bottom = lines.len().saturating_sub(scroll.min(lines.len()));
    let top = bottom.saturating_sub(height);
    let visible: Vec<Line<'static>> = lines[top..bottom].to_vec();
    frame.render_widget(Paragraph::new(visible), body);
}

fn sender_color(id: &str) -> Color {
    const PALETTE: [Color; 6] = [
        Color::Cyan,
        Color::Magenta,
        Color::LightBlue,
        Color::LightMagenta,
        Color::LightCyan,
        Color::Blue,
    ];
    let h = id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    PALETTE[(h as usize) % PALETTE.len()]
}

/// `HH:MM` (with `MM-DD` before it when not from the day of `now`).
pub(crate) fn fmt_time(at_ms: u64, offset_secs: i64, now_ms: u64) -> String {
    if at_ms == 0 {
        return "     ".into();
    }
    let local = |ms: u64| (ms / 1000) as i64 + offset_secs;
    let secs = local(at_ms);
    let day = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let hm = format!("{:02}:{:02}", tod / 3600, (tod % 3600) / 60);
    if now_ms == 0 || local(now_ms).div_euclid(86_400) == day {
        hm
    } else {
        let (_, m, d) = civil_from_days(day);
        format!("{m:02}-{d:02} {hm}")
    }
}

/// `HH:MM:SS`.
fn fmt_clock(at_ms: u64, offset_secs: i64) -> String {
    let secs = ((at_ms / 1000) as i64 + offset_secs).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn trust_style(t: &Trust) -> Style {
    match t {
        Trust::Direct { .. } => Style::new().fg(Color::Green),
        Trust::Relayed { .. } => Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        Trust::Signed { .. } => Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        Trust::Unconfirmed { .. } => Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD),
        Trust::Own => Style::new().fg(Color::Gray),
    }
}

fn delivery_span(app: &App, d: &Delivery) -> Span<'static> {
    let gray = Style::new().fg(Color::Gray);
    match d {
        Delivery::Queued => Span::styled(" · queued", Style::new().fg(Color::Yellow)),
        Delivery::Sent => Span::styled(" · sent", gray),
        Delivery::Delivered { k, of } => {
            let of = of.or_else(|| {
                app.groups
                    .get(current_key(app).unwrap_or_default())
                    .map(|g| g.members.len() as u32)
            });
            match of {
                Some(0) => Span::styled(" · only you are in the group", gray),
                Some(n) if *k >= n => Span::styled(
                    format!(" · delivered {k} of {n}"),
                    Style::new().fg(Color::Green),
                ),
                Some(n) => Span::styled(format!(" · delivered {k} of {n}"), gray),
                None => Span::styled(format!(" · delivered {k}"), gray),
            }
        }
        Delivery::Failed => Span::styled(
            " · failed",
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        Delivery::Other(s) => Span::styled(format!(" · {s}"), gray),
    }
}

fn current_key(app: &App) -> Option<&str> {
    match &app.current {
        Target::Home | Target::Request(_) => None,
        Target::Buddy(id) => Some(id),
        Target::Group(g) => Some(g),
    }
}

/// A message as wrapped lines of `width` columns.
pub(crate) fn message_lines(
    app: &App,
    m: &ChatMessage,
    width: usize,
    selected: bool,
) -> Vec<Line<'static>> {
    let time = Span::styled(
        format!("{} ", fmt_time(m.at, app.utc_offset_secs, app.now)),
        Style::new().fg(Color::DarkGray),
    );
    let mut spans = vec![time];
    let mut atomic_from = usize::MAX;
    if m.notice {
        spans.push(Span::styled(
            format!("— {}", m.text),
            Style::new().fg(Color::Gray).add_modifier(Modifier::ITALIC),
        ));
    } else {
        let unconfirmed = m.trust.as_ref().is_some_and(Trust::is_unconfirmed);
        if unconfirmed {
            spans.push(Span::styled(
                "!! ",
                Style::new()
                    .fg(Color::LightRed)
                    .add_modifier(Modifier::BOLD),
            ));
        }
        let (name, name_style) = if m.outgoing {
            ("you".to_owned(), Style::new().add_modifier(Modifier::BOLD))
        } else if unconfirmed {
            (
                app.name_of(&m.sender),
                Style::new()
                    .fg(Color::LightRed)
                    .add_modifier(Modifier::BOLD),
            )
        } else {
            (
                app.name_of(&m.sender),
                Style::new()
                    .fg(sender_color(&m.sender))
                    .add_modifier(Modifier::BOLD),
            )
        };
        spans.push(Span::styled(name, name_style));
        spans.push(Span::raw(": "));
        let text_style = if unconfirmed {
            Style::new().fg(Color::LightRed)
        } else {
            Style::new()
        };
        spans.push(Span::styled(m.text.clone(), text_style));
        atomic_from = spans.len();
        if let Some(t) = m.trust.as_ref().filter(|t| **t != Trust::Own) {
            spans.push(Span::raw(" "));
            spans.push(Span::styled(t.label(), trust_style(t)));
        }
        if let Some(d) = m.delivery.as_ref().filter(|_| m.outgoing) {
            spans.push(delivery_span(app, d));
        }
    }
    let pieces = spans
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let atomic = i >= atomic_from && s.content.as_ref() != " ";
            (s, atomic)
        })
        .collect();
    let mut lines = wrap_pieces(pieces, width, 6);
    if selected {
        for l in &mut lines {
            for s in &mut l.spans {
                s.style = s.style.bg(Color::DarkGray);
                if s.style.fg == Some(Color::DarkGray) {
                    s.style = s.style.fg(Color::Gray);
                }
            }
            // Fill the row so the selection shows as a bar.
            let w = l.width();
            if w < width {
                l.spans.push(Span::styled(
                    " ".repeat(width - w),
                    Style::new().bg(Color::DarkGray),
                ));
            }
        }
    }
    lines
}

/// Wraps styled text to `width` columns, breaking at spaces when it can; continuation lines are
/// indented by `indent` columns. Line breaks in the text start new lines.
pub(crate) fn wrap(spans: Vec<Span<'static>>, width: usize, indent: usize) -> Vec<Line<'static>> {
    wrap_pieces(
        spans.into_iter().map(|s| (s, false)).collect(),
        width,
        indent,
    )
}

/// Like [`wrap`]; spans marked `true` are not broken at their spaces (tags like `(2 of 3)`).
pub(crate) fn wrap_pieces(
    spans: Vec<(Span<'static>, bool)>,
    width: usize,
    indent: usize,
) -> Vec<Line<'static>> {
    let width = width.max(indent + 8).max(1);
    // (character, style, may break here)
    let cells: Vec<(char, Style, bool)> = spans
        .iter()
        .flat_map(|(s, atomic)| {
            s.content.chars().map(move |c| {
                let c = match c {
                    '\t' => ' ',
                    '\n' => '\n',
                    c if c.is_control() => '\u{fffd}',
                    c => c,
                };
                (c, s.style, c == ' ' && !atomic)
            })
        })
        .collect();
    let mut rows: Vec<Vec<(char, Style, bool)>> = vec![vec![]];
    let mut col = 0;
    let mut i = 0;
    let new_row = |rows: &mut Vec<Vec<(char, Style, bool)>>| {
        let mut r = vec![];
        r.extend(std::iter::repeat_n((' ', Style::new(), false), indent));
        rows.push(r);
        indent
    };
    while i < cells.len() {
        let (c, st, brk_ok) = cells[i];
        if c == '\n' {
            col = new_row(&mut rows);
            i += 1;
            continue;
        }
        let w = c.width().unwrap_or(0);
        if col + w > width {
            // Break at the last space of this row, if there is one past the indent.
            let row = rows.last_mut().map(std::mem::take).unwrap_or_default();
            let start = if rows.len() == 1 { 0 } else { indent };
            let cols = |cells: &[(char, Style, bool)]| -> usize {
                cells.iter().map(|(ch, _, _)| ch.width().unwrap_or(0)).sum()
            };
            // Only where what moves down fits on the next row.
            let brk = row
                .iter()
                .rposition(|(_, _, ok)| *ok)
                .filter(|p| *p > start && indent + cols(&row[p + 1..]) < width);
            match brk {
                Some(p) => {
                    let (head, tail) = row.split_at(p + 1);
                    if let Some(last) = rows.last_mut() {
                        *last = head.to_vec();
                    }
                    col = new_row(&mut rows);
                    if let Some(last) = rows.last_mut() {
                        last.extend_from_slice(tail);
                    }
                    col += cols(tail);
                }
                None => {
                    if let Some(last) = rows.last_mut() {
                        *last = row;
                    }
                    col = new_row(&mut rows);
                }
            }
            continue;
        }
        if let Some(last) = rows.last_mut() {
            last.push((c, st, brk_ok));
        }
        col += w;
        i += 1;
    }
    rows.into_iter()
        .map(|row| {
            let mut spans: Vec<Span<'static>> = vec![];
            let mut cur = String::new();
            let mut cur_style = None;
            for (c, st, _) in row {
                if cur_style != Some(st) {
                    if let Some(s) = cur_style {
                        spans.push(Span::styled(std::mem::take(&mut cur), s));
                    }
                    cur_style = Some(st);
                }
                cur.push(c);
            }
            if let Some(s) = cur_style {
                spans.push(Span::styled(cur, s));
            }
            // Trailing spaces from a break are not shown.
            let n = spans.len();
            if let Some(last) = spans.last_mut() {
                let t = last.content.trim_end().to_owned();
                if t.is_empty() && n > 1 {
                    spans.pop();
                } else {
                    last.content = t.into();
                }
            }
            Line::from(spans)
        })
        .collect()
}

fn draw_invite(frame: &mut Frame, app: &App, area: Rect, g: &GroupEntry) {
    let block = Block::new()
        .borders(Borders::ALL)
        .title(" Invitation ")
        .border_style(Style::new().fg(Color::Yellow));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let from = g
        .inviter
        .as_deref()
        .map(|i| format!("{} ({})", app.name_of(i), short_id(i)))
        .unwrap_or_else(|| "someone".into());
    let modes = if g.modes.is_empty() {
        "redundancy (members relay each message and vouch for it)".to_owned()
    } else {
        g.modes.join(", ")
    };
    let key = |k: &'static str| {
        Span::styled(
            k,
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        )
    };
    let text = vec![
        Line::raw(""),
        Line::from(vec![
            Span::styled(from, Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(" invites you to the group "),
            Span::styled(g.short_name(), Style::new().add_modifier(Modifier::BOLD)),
        ]),
        Line::styled(g.gid.clone(), Style::new().fg(Color::Gray)),
        Line::styled(format!("modes: {modes}"), Style::new().fg(Color::Gray)),
        Line::raw(""),
        Line::from(vec![
            key(" a "),
            Span::raw(" accept      "),
            key(" d "),
            Span::raw(" decline"),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        inner,
    );
}

fn draw_home(frame: &mut Frame, app: &App, area: Rect) {
    let block = Block::new().borders(Borders::ALL).title(" Home ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let gray = Style::new().fg(Color::Gray);
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let mut lines = vec![Line::from(vec![
        Span::styled("Your id: ", gray),
        Span::styled(
            app.me
                .clone()
                .unwrap_or_else(|| "(asking the node…)".into()),
            bold.fg(Color::LightCyan),
        ),
    ])];
    lines.push(Line::styled(
        "  F2 shows it alone on the screen, to copy",
        gray,
    ));
    let transport = if app.transport.is_empty() {
        "?".to_owned()
    } else {
        app.transport.clone()
    };
    lines.push(Line::from(vec![
        Span::styled("Transport: ", gray),
        Span::raw(format!("{transport} · {} connections", app.connections)),
    ]));
    let t = &app.tor;
    let bar_w = (inner.width as usize).saturating_sub(20).clamp(10, 30);
    let filled = bar_w * usize::from(t.percent.min(100)) / 100;
    let color = if t.problem.is_some() {
        Color::Red
    } else if t.ready {
        Color::Green
    } else {
        Color::Yellow
    };
    lines.push(Line::from(vec![
        Span::styled("Tor: ", gray),
        Span::styled("█".repeat(filled), Style::new().fg(color)),
        Span::styled("░".repeat(bar_w - filled), Style::new().fg(Color::DarkGray)),
        Span::raw(format!(" {:>3}%", t.percent)),
    ]));
    let state = if t.ready {
        "ready: buddies can reach you".to_owned()
    } else if t.summary.is_empty() {
        "starting".to_owned()
    } else {
        t.summary.clone()
    };
    lines.push(Line::styled(format!("     {state}"), gray));
    if let Some((msg, hint)) = &t.problem {
        lines.push(Line::from(vec![
            Span::styled(
                " PROBLEM ",
                Style::new()
                    .bg(Color::Red)
                    .fg(Color::White)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::styled(format!(" {msg}"), Style::new().fg(Color::LightRed)),
        ]));
        lines.push(Line::from(vec![
            Span::styled("  try: ", bold),
            Span::raw(hint.clone()),
        ]));
    }
    let transfers = app.transfers();
    if !transfers.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled("Files (/get n, /drop n, /send <path>)", bold));
        let bar_w = (inner.width as usize).saturating_sub(50).clamp(8, 20);
        for t in transfers.iter().take(8) {
            lines.push(file_line(app, t, bar_w));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("Getting started", bold));
    for (k, v) in [
        ("/add <id>", "add a buddy (give them your id)"),
        ("Tab", "go to the next conversation"),
        ("/group", "create a group, then /invite <buddy>"),
        ("F1", "all keys and commands"),
    ] {
        lines.push(Line::from(vec![
            Span::styled(format!("  {k:<10}"), Style::new().fg(Color::Cyan)),
            Span::raw(v),
        ]));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

/// `#3 ↓ bob  [████░░░░]  45% 1.2 MB/s 10s  name.bin` (state instead of the rate when not
/// moving).
fn file_line<'a>(app: &App, t: &api::Transfer, bar_w: usize) -> Line<'a> {
    let pct = crate::files::percent(t) as usize;
    let filled = bar_w * pct / 100;
    let arrow = if t.direction == "send" { "↑" } else { "↓" };
    let color = match t.state.as_str() {
        "complete" => Color::Green,
        "failed" | "cancelled" => Color::Red,
        "offered" => Color::Yellow,
        _ => Color::Cyan,
    };
    let detail = match t.state.as_str() {
        "transferring" if t.rate > 0 => format!(
            "{}/s{}",
            crate::files::human_size(t.rate),
            t.eta_secs.map(|s| format!(" {s}s")).unwrap_or_default()
        ),
        s => s.to_owned(),
    };
    let mut name: String = t.name.chars().filter(|c| !c.is_control()).collect();
    if name.chars().count() > 32 {
        name = name.chars().take(31).collect::<String>() + "…";
    }
    Line::from(vec![
        Span::styled(
            format!("  #{:<3} {arrow} ", t.id),
            Style::new().fg(Color::Cyan),
        ),
        Span::raw(format!("{:<10.10} ", app.name_of(&t.peer))),
        Span::styled("█".repeat(filled), Style::new().fg(color)),
        Span::styled("░".repeat(bar_w - filled), Style::new().fg(Color::DarkGray)),
        Span::raw(format!(" {pct:>3}% {detail:<16} {name}")),
    ])
}

// ----- input and hints -----

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let invite = matches!(&app.current, Target::Group(g)
        if app.groups.get(g).is_some_and(|g| g.state == GroupState::Invited));
    let title = match (&app.mode, &app.current) {
        (Mode::Browse { .. }, _) => " selecting: ↑/↓ move · c who vouched · Esc back ".to_owned(),
        _ if invite => " invitation: a accept · d decline ".to_owned(),
        (_, Target::Home) => " type /add <id> to add a buddy · /help ".to_owned(),
        (_, Target::Request(_)) => " contact request: a accept · d ignore · b block ".to_owned(),
        (_, Target::Buddy(id)) => format!(" to {} ", app.name_of(id)),
        (_, Target::Group(g)) => format!(" to group {} ", short_gid(g)),
    };
    let style = if app.mode == Mode::Normal && !invite {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new().fg(Color::DarkGray)
    };
    let block = Block::new()
        .borders(Borders::ALL)
        .border_style(style)
        .title(Line::styled(title, style));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let (text, col) = app.input.view(inner.width as usize);
    frame.render_widget(Paragraph::new(text), inner);
    if app.mode == Mode::Normal && !invite && inner.width > 0 && inner.height > 0 {
        let x = inner.x + (col as u16).min(inner.width - 1);
        frame.set_cursor_position(Position::new(x, inner.y));
    }
}

fn draw_hints(frame: &mut Frame, app: &App, area: Rect) {
    let line = match &app.notice {
        Some(n) => {
            let style = match n.level {
                Level::Info => Style::new().fg(Color::Green),
                Level::Warn => Style::new().fg(Color::Yellow),
                Level::Error => Style::new()
                    .fg(Color::White)
                    .bg(Color::Red)
                    .add_modifier(Modifier::BOLD),
            };
            Line::styled(format!(" {} ", n.text), style)
        }
        None => Line::styled(
            match app.mode {
                Mode::Browse { .. } => " ↑/↓ select · c or Enter: who vouched · Esc back to typing",
                _ => " F1 help · Tab next chat · Esc select a message · F2 your id · Ctrl-C quit",
            },
            Style::new().fg(Color::Gray),
        ),
    };
    frame.render_widget(Paragraph::new(line), area);
}

// ----- popups -----

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_help(frame: &mut Frame, area: Rect, scroll: u16) {
    let r = centered(area, 78, 22);
    frame.render_widget(Clear, r);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(" Help — ↑/↓ scroll · Esc closes ")
        .border_style(Style::new().fg(Color::Cyan));
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let mut lines = vec![];
    for (k, v) in HELP {
        if k.is_empty() {
            if !lines.is_empty() {
                lines.push(Line::raw(""));
            }
            lines.push(Line::styled(
                *v,
                Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            ));
        } else {
            let style = match *k {
                "(Direct)" => trust_style(&Trust::Direct { confirmations: 0 }),
                "(k of N)" => trust_style(&Trust::Relayed { k: 0, n: 0 }),
                "(UNCONFIRMED k of N)" => trust_style(&Trust::Unconfirmed { k: 0, n: 0 }),
                _ => Style::new().fg(Color::Cyan),
            };
            lines.extend(wrap(
                vec![
                    Span::styled((*k).to_owned(), style),
                    Span::raw(format!("  {v}")),
                ],
                inner.width as usize,
                4,
            ));
        }
    }
    frame.render_widget(Paragraph::new(lines).scroll((scroll, 0)), inner);
}

fn draw_id(frame: &mut Frame, app: &App, area: Rect) {
    frame.render_widget(Clear, area);
    let id = app.me.clone().unwrap_or_default();
    let mid = area.height / 2;
    let gray = Style::new().fg(Color::Gray);
    let rows = [
        (
            mid.saturating_sub(2),
            Line::styled("Your torchat id (give it to your buddies):", gray),
        ),
        (
            mid,
            Line::styled(id, Style::new().add_modifier(Modifier::BOLD)),
        ),
        (
            area.height.saturating_sub(1),
            Line::styled(
                "c: copy to the clipboard (OSC 52) · any other key: back",
                gray,
            ),
        ),
    ];
    for (y, line) in rows {
        if y < area.height {
            frame.render_widget(
                Paragraph::new(line).alignment(Alignment::Center),
                Rect::new(area.x, area.y + y, area.width, 1),
            );
        }
    }
}

fn draw_claims(frame: &mut Frame, app: &App, area: Rect, cv: &ClaimsView) {
    let width = area.width.min(70);
    let inner_w = width.saturating_sub(2);
    let gray = Style::new().fg(Color::Gray);
    let mut lines = vec![Line::from(vec![
        Span::styled(
            format!("{}: ", app.name_of(&cv.sender)),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(truncate(&cv.text, (inner_w as usize).saturating_sub(20)).0),
    ])];
    if let Some(t) = &cv.trust {
        let explain = match t {
            Trust::Direct { .. } => "you got it from the speaker",
            Trust::Relayed { .. } => "only relayed copies reached you",
            Trust::Signed { .. } => "relayed, with the speaker's valid signature: authentic",
            Trust::Unconfirmed { .. } => {
                "the speaker was connected and did not send it: possibly forged"
            }
            _ => "",
        };
        lines.push(Line::from(vec![
            Span::styled(t.label(), trust_style(t)),
            Span::styled(format!(" {explain}"), gray),
        ]));
    }
    lines.push(Line::raw(""));
    match &cv.claims {
        None => lines.push(Line::styled("asking the node…", gray)),
        Some(Err(e)) => lines.push(Line::styled(e.clone(), Style::new().fg(Color::Red))),
        Some(Ok(list)) if list.is_empty() => {
            lines.push(Line::styled("no member relayed a copy (yet)", gray))
        }
        Some(Ok(list)) => {
            lines.push(Line::styled(
                format!("{} member(s) relayed a copy:", list.len()),
                gray,
            ));
            for (who, at) in list {
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("  {} ", app.name_of(who)),
                        Style::new()
                            .fg(sender_color(who))
                            .add_modifier(Modifier::BOLD),
                    ),
                    Span::styled(
                        format!(
                            "{} at {}",
                            short_id(who),
                            fmt_clock(*at, app.utc_offset_secs)
                        ),
                        gray,
                    ),
                ]));
            }
        }
    }
    let lines_for_height: Vec<usize> = lines.iter().map(Line::width).collect();
    let para = Paragraph::new(lines).wrap(Wrap { trim: false });
    let rows: usize = lines_for_height
        .iter()
        .map(|w| w.div_ceil(usize::from(inner_w.max(1))).max(1))
        .sum();
    let height = rows as u16 + 2;
    let r = centered(area, width, height);
    frame.render_widget(Clear, r);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(" Who vouched for this message — any key closes ")
        .border_style(Style::new().fg(Color::Cyan));
    let inner = block.inner(r);
    frame.render_widget(block, r);
    frame.render_widget(para, inner);
}

fn draw_confirm(frame: &mut Frame, area: Rect, question: &str) {
    let r = centered(area, 60, 6);
    frame.render_widget(Clear, r);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(" Confirm ")
        .border_style(Style::new().fg(Color::Yellow));
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let text = vec![
        Line::raw(question.to_owned()),
        Line::raw(""),
        Line::styled("y: yes · n or Esc: no", Style::new().fg(Color::Gray)),
    ];
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        inner,
    );
}
