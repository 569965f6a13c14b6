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

/// What Tab makes of a partly typed path.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Completion {
    /// The argument completed as far as it is unambiguous (`None`: nothing to add).
    pub completed: Option<String>,
    /// Names in the directory that match what was typed (directories end with `/`), sorted.
    pub candidates: Vec<String>,
}

/// Completes `arg` (a path as typed: relative, absolute, or starting with `~/`) against the
/// file system. Hidden names are offered only when what was typed starts with a dot.
pub(crate) fn complete_path(arg: &str, home: Option<&std::path::Path>) -> Completion {
    let (dir_typed, prefix) = match arg.rfind('/') {
        Some(i) => (&arg[..=i], &arg[i + 1..]),
        None => ("", arg),
    };
    let dir: std::path::PathBuf = match (dir_typed.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => h.join(rest),
        _ if dir_typed.is_empty() => ".".into(),
        _ => dir_typed.into(),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Completion::default();
    };
    let mut candidates: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            let is_dir = e.file_type().ok()?.is_dir()
                || (e.file_type().ok()?.is_symlink() && e.path().is_dir());
            Some(if is_dir { format!("{name}/") } else { name })
        })
        .take(10_000)
        .collect();
    candidates.sort();
    let common = match candidates.split_first() {
        None => return Completion::default(),
        Some((first, rest)) => rest.iter().fold(first.as_str(), |acc, c| {
            let n = acc
                .char_indices()
                .zip(c.chars())
                .take_while(|((_, a), b)| a == b)
                .last()
                .map_or(0, |((i, a), _)| i + a.len_utf8());
            &acc[..n]
        }),
    };
    let completed = (common.len() > prefix.len()).then(|| format!("{dir_typed}{common}"));
    Completion {
        completed,
        candidates,
    }
}

#[cfg(test)]
mod completion_tests {
    use super::*;

    #[test]
    fn completes_unique_names_lists_several_and_expands_home() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("report-2026.pdf"), b"x").unwrap();
        std::fs::write(d.path().join("report-2025.pdf"), b"x").unwrap();
        std::fs::write(d.path().join("photo.jpg"), b"x").unwrap();
        std::fs::write(d.path().join(".hidden"), b"x").unwrap();
        std::fs::create_dir(d.path().join("pics")).unwrap();
        let base = format!("{}/", d.path().display());

        let c = complete_path(&format!("{base}ph"), None);
        assert_eq!(c.completed, Some(format!("{base}photo.jpg")));
        let c = complete_path(&format!("{base}pi"), None);
        assert_eq!(c.completed, Some(format!("{base}pics/")));
        let c = complete_path(&format!("{base}re"), None);
        assert_eq!(c.completed, Some(format!("{base}report-202")));
        assert_eq!(c.candidates, ["report-2025.pdf", "report-2026.pdf"]);
        let c = complete_path(&format!("{base}report-202"), None);
        assert_eq!(c.completed, None, "nothing more to add");
        assert_eq!(c.candidates.len(), 2);
        assert_eq!(
            complete_path(&format!("{base}zz"), None),
            Completion::default()
        );
        let c = complete_path(&base, None);
        assert!(!c.candidates.contains(&".hidden".to_owned()));
        let c = complete_path(&format!("{base}.h"), None);
        assert_eq!(c.completed, Some(format!("{base}.hidden")));
        let c = complete_path("~/ph", Some(d.path()));
        assert_eq!(c.completed, Some("~/photo.jpg".to_owned()));
        assert_eq!(complete_path("/no/such/dir/x", None), Completion::default());
    }
}
