//! The async shell: connects the [`App`] to the node and the terminal.
//!
//! Two connections to the control socket: one subscribed to events, one for commands (so a slow
//! command never holds up events). A task reads each and feeds one bounded channel of
//! [`AppEvent`]s; terminal input, that channel and a clock tick go into one `select!` loop, which
//! calls [`App::handle`], carries out the returned [`Action`]s and redraws.
//!
//! Nothing here queues without bound: the event channel holds [`EVENT_QUEUE`] items (when it is
//! full the reader waits, the node's per-subscriber buffer fills, and the node sends `lagged`,
//! upon which the app re-reads its state); commands go through a channel of
//! [`crate::app::MAX_PENDING`] that is never waited on (a full one fails the request at once).

use std::io;
use std::path::Path;
use std::time::Duration;

use crossterm::event::Event as TermEvent;
use futures::{Stream, StreamExt};
use ratatui::backend::Backend;
use ratatui::Terminal;
use tokio::sync::mpsc;
use torchat_api::Command;
use torchat_client::{Client, ClientError};

use crate::app::{Action, App, AppEvent, ResponseError, MAX_PENDING};
use crate::Error;

/// Events and responses waiting for the UI loop.
pub const EVENT_QUEUE: usize = 256;
/// How often the clock is read (for dates in the conversation).
const TICK: Duration = Duration::from_secs(20);
/// Most events handled before the screen is redrawn.
const BATCH: usize = 64;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The terminal event the app cares about.
fn translate(e: TermEvent) -> Option<AppEvent> {
    match e {
        TermEvent::Key(k) => Some(AppEvent::Key(k)),
        TermEvent::Paste(s) => Some(AppEvent::Paste(s)),
        TermEvent::Resize(width, height) => Some(AppEvent::Resize { width, height }),
        _ => None,
    }
}

fn response_error(e: ClientError) -> ResponseError {
    match e {
        ClientError::Api { code, message } => ResponseError { code, message },
        other => ResponseError {
            code: "io".into(),
            message: other.to_string(),
        },
    }
}

/// Runs the UI loop until the app quits, the terminal input ends, or drawing fails.
///
/// `events` must be subscribed; `commands` must not be. `keys` is the terminal's input;
/// `copy` puts text on the clipboard.
pub async fn drive<B, K>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut events: Client,
    mut commands: Client,
    mut keys: K,
    mut copy: impl FnMut(&str),
) -> Result<(), Error>
where
    B: Backend,
    B::Error: Into<Error>,
    K: Stream<Item = io::Result<TermEvent>> + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<AppEvent>(EVENT_QUEUE);
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<(u64, Command)>(MAX_PENDING);
    let ev_tx = tx.clone();
    let reader = tokio::spawn(async move {
        loop {
            let ev = match events.next_event().await {
                Ok(e) => AppEvent::Node(e),
                Err(e) => {
                    let _ = ev_tx.send(AppEvent::Disconnected(e.to_string())).await;
                    return;
                }
            };
            if ev_tx.send(ev).await.is_err() {
                return;
            }
        }
    });
    let caller = tokio::spawn(async move {
        while let Some((id, cmd)) = cmd_rx.recv().await {
            let result = commands.call(cmd).await.map_err(response_error);
            if tx.send(AppEvent::Response { id, result }).await.is_err() {
                return;
            }
        }
    });

    let size = terminal.size().map_err(Into::into)?;
    let mut queue: Vec<AppEvent> = vec![
        AppEvent::Tick(now_ms()),
        AppEvent::Resize {
            width: size.width,
            height: size.height,
        },
    ];
    let mut actions = app.start();
    let mut ticker = tokio::time::interval(TICK);
    let result = 'run: loop {
        // Carry out what the app asked for; failed sends come back as events.
        loop {
            for a in actions.drain(..) {
                match a {
                    Action::Call { id, cmd } => {
                        if cmd_tx.try_send((id, cmd)).is_err() {
                            queue.push(AppEvent::Response {
                                id,
                                result: Err(ResponseError {
                                    code: "busy".into(),
                                    message: "too many requests waiting for the node".into(),
                                }),
                            });
                        }
                    }
                    Action::Copy(s) => copy(&s),
                    Action::Quit => break 'run Ok(()),
                }
            }
            if queue.is_empty() {
                break;
            }
            for ev in std::mem::take(&mut queue) {
                actions.extend(app.handle(ev));
            }
        }
        if let Err(e) = terminal.draw(|f| crate::draw(f, app)) {
            break Err(e.into());
        }
        let first = tokio::select! {
            k = keys.next() => match k {
                Some(Ok(e)) => translate(e),
                Some(Err(e)) => break Err(Error::Terminal(e)),
                None => break Ok(()),
            },
            Some(e) = rx.recv() => Some(e),
            _ = ticker.tick() => Some(AppEvent::Tick(now_ms())),
        };
        queue.extend(first);
        // Take what else is already there before redrawing.
        while queue.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => queue.push(e),
                Err(_) => break,
            }
        }
    };
    reader.abort();
    caller.abort();
    result
}

/// Puts the terminal back as it was, also when the UI panics.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let prev = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                prev(info);
            }));
        });
        crossterm::terminal::enable_raw_mode()?;
        let guard = TerminalGuard;
        crossterm::execute!(
            io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::event::EnableBracketedPaste
        )?;
        Ok(guard)
    }
}

fn restore() {
    let _ = crossterm::execute!(
        io::stdout(),
        crossterm::event::DisableBracketedPaste,
        crossterm::terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = crossterm::terminal::disable_raw_mode();
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Attaches the terminal UI to the node whose control socket is `socket`, until the user quits.
/// On exit our id is printed (for copying).
pub async fn run(socket: &Path) -> Result<(), Error> {
    // Connect before touching the terminal, so a missing node is reported plainly.
    let events = Client::connect(socket).await?.subscribed().await?;
    let commands = Client::connect(socket).await?;
    let offset = i64::from(chrono::Local::now().offset().local_minus_utc());
    let mut app = App::new().with_utc_offset(offset);
    let result = {
        let _guard = TerminalGuard::enter()?;
        let mut terminal = Terminal::new(ratatui::backend::CrosstermBackend::new(io::stdout()))?;
        terminal.clear()?;
        let keys = crossterm::event::EventStream::new();
        let copy = |s: &str| {
            let _ = crossterm::execute!(
                io::stdout(),
                crossterm::clipboard::CopyToClipboard::to_clipboard_from(s)
            );
        };
        drive(&mut terminal, &mut app, events, commands, keys, copy).await
    };
    if let Some(id) = app.own_id() {
        println!("your torchat id: {id}");
    }
    result?;
    match app.exit_error() {
        Some(e) => Err(Error::Disconnected(e.to_owned())),
        None => Ok(()),
    }
}
