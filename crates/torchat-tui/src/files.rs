//! File transfers in the UI: offers announced as notices, `/get`, `/drop`, `/send`, `/files`,
//! and a progress bar per transfer on the Home screen.

use serde_json::Value;
use torchat_api::{self as api, Command, Event};

use crate::app::{App, Level, Target};
use crate::model::short_id;

/// `1.5 MB`-style sizes.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Percent done (100 for an empty file).
pub fn percent(t: &api::Transfer) -> u64 {
    (t.done.saturating_mul(100))
        .checked_div(t.size)
        .unwrap_or(100)
        .min(100)
}

impl App {
    /// Transfers the UI knows, newest first.
    pub fn transfers(&self) -> Vec<&api::Transfer> {
        self.files.values().rev().collect()
    }

    pub(crate) fn apply_files(&mut self, v: Value) {
        if let Ok(list) = serde_json::from_value::<Vec<api::Transfer>>(v) {
            self.files = list.into_iter().map(|t| (t.id, t)).collect();
        }
        self.files_loading = false;
    }

    fn refresh_files(&mut self) {
        if !self.files_loading {
            self.files_loading = true;
            self.call(Command::Files, crate::app::Pending::Files);
        }
    }

    pub(crate) fn on_file_event(&mut self, e: Event) {
        match e {
            Event::FileOffer { transfer: t } => {
                let text = format!(
                    "{} offers the file {:?} ({}): /get {} to accept, /drop {} to decline",
                    self.name_of(&t.peer),
                    t.name,
                    human_size(t.size),
                    t.id,
                    t.id
                );
                self.files.insert(t.id, t);
                self.say(Level::Info, text);
            }
            Event::FileState { transfer: t } => {
                let text = match t.state.as_str() {
                    "complete" if t.direction == "receive" => Some(format!(
                        "file {} from {} saved: {}",
                        t.id,
                        self.name_of(&t.peer),
                        t.path.clone().unwrap_or_else(|| t.name.clone())
                    )),
                    "complete" => Some(format!("file {} sent to {}", t.id, self.name_of(&t.peer))),
                    "failed" | "cancelled" => Some(format!(
                        "file {} {:?} {}{}",
                        t.id,
                        t.name,
                        t.state,
                        t.reason
                            .as_deref()
                            .map(|r| format!(" ({})", r.replace('_', " ")))
                            .unwrap_or_default()
                    )),
                    "paused" => Some(format!(
                        "file {} paused: it resumes when {} is back",
                        t.id,
                        self.name_of(&t.peer)
                    )),
                    _ => None,
                };
                let level = if t.state == "failed" {
                    Level::Warn
                } else {
                    Level::Info
                };
                self.files.insert(t.id, t);
                if let Some(text) = text {
                    self.say(level, text);
                }
            }
            Event::FileProgress {
                id,
                done,
                rate,
                eta_secs,
                ..
            } => match self.files.get_mut(&id) {
                Some(t) => {
                    t.done = done;
                    t.rate = rate;
                    t.eta_secs = eta_secs;
                }
                // Started before this UI: ask for the list once.
                None => self.refresh_files(),
            },
            Event::FileRefused {
                from,
                name,
                size,
                reason,
            } => {
                let text = format!(
                    "{} offered the file {name:?} ({}); refused: {}",
                    self.name_of(&from),
                    human_size(size),
                    reason.replace('_', " ")
                );
                self.say(Level::Warn, text);
            }
            _ => {}
        }
    }

    /// The newest offer waiting for an answer.
    fn newest_offer(&self) -> Option<u64> {
        self.files
            .values()
            .rev()
            .find(|t| t.direction == "receive" && t.state == "offered")
            .map(|t| t.id)
    }

    /// `/files`, `/get [n]`, `/drop [n]`, `/send <path>`. False if `name` is not one of them.
    pub(crate) fn file_command(&mut self, name: &str, rest: &str) -> bool {
        let number = |rest: &str| rest.trim().trim_start_matches('#').parse::<u64>().ok();
        match name {
            "files" | "transfers" => {
                self.select(Target::Home);
                self.files_loading = false;
                self.refresh_files();
            }
            "get" | "save" => {
                let Some(n) = number(rest).or_else(|| self.newest_offer()) else {
                    self.say(Level::Warn, "usage: /get [n] (no offer is waiting)");
                    return true;
                };
                self.simple_files(
                    Command::FileAccept { file: n },
                    format!("accepting file {n}"),
                );
            }
            "drop" | "reject" => {
                let Some(n) = number(rest).or_else(|| self.newest_offer()) else {
                    self.say(Level::Warn, "usage: /drop <n> (see /files)");
                    return true;
                };
                self.simple_files(Command::FileCancel { file: n }, format!("stopped file {n}"));
            }
            "send" | "sendfile" => {
                let Target::Buddy(to) = self.current().clone() else {
                    self.say(Level::Warn, "select a buddy first, then /send <path>");
                    return true;
                };
                let path = match rest.trim() {
                    "" => {
                        self.say(Level::Warn, "usage: /send <absolute path or ~/path>");
                        return true;
                    }
                    p => expand(p, self.home.as_deref()),
                };
                if !path.starts_with('/') {
                    self.say(Level::Warn, "the path must be absolute (or start with ~/)");
                    return true;
                }
                let done = format!("offering {path} to {}", short_id(&to));
                self.simple_files(Command::SendFile { to, path }, done);
            }
            _ => return false,
        }
        true
    }

    fn simple_files(&mut self, cmd: Command, done: String) {
        self.call(
            cmd,
            crate::app::Pending::Simple {
                done,
                then: crate::app::After::Files,
            },
        );
    }

    pub(crate) fn after_files(&mut self) {
        self.files_loading = false;
        self.refresh_files();
    }
}

/// `~/x` → `<home>/x`.
fn expand(p: &str, home: Option<&str>) -> String {
    match (p.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => format!("{}/{rest}", h.trim_end_matches('/')),
        _ => p.to_owned(),
    }
}
