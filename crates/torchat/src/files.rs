//! `torchat send-file` and `torchat files`: offers, answers, and live progress bars on a
//! terminal.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;

use clap::Subcommand;
use torchat_api::{Command, Event, Transfer};
use torchat_client::Client;

/// `torchat files …`
#[derive(Subcommand, Debug)]
pub enum FilesCmd {
    /// Accept an offered file (saved in the download directory).
    Accept {
        /// Transfer number (see `torchat files`).
        file: u64,
    },
    /// Decline an offer, or stop a transfer.
    Cancel {
        /// Transfer number.
        file: u64,
    },
    /// Accept every file from a buddy without asking (`on`), or stop doing so (`off`).
    AutoAccept {
        /// Onion id.
        id: String,
        /// on or off.
        on: String,
    },
}

/// `1.5 MB`-style sizes.
fn human(n: u64) -> String {
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

fn active(t: &Transfer) -> bool {
    matches!(
        t.state.as_str(),
        "queued" | "offered" | "transferring" | "paused"
    )
}

/// One line: `#3 ↓ bobaaaaa [#####.....]  45%  1.2 MB/s  ETA 10s  name`.
fn line(t: &Transfer) -> String {
    let pct = (t.done.saturating_mul(100))
        .checked_div(t.size)
        .unwrap_or(100)
        .min(100);
    let w = 24;
    let filled = (w * pct / 100) as usize;
    let arrow = if t.direction == "send" { "↑" } else { "↓" };
    let detail = match t.state.as_str() {
        "transferring" => format!(
            "{:>9}/s  ETA {}",
            human(t.rate),
            t.eta_secs.map_or("?".to_owned(), |s| format!("{s}s"))
        ),
        s => match &t.reason {
            Some(r) => format!("{s} ({r})"),
            None => s.to_owned(),
        },
    };
    format!(
        "#{:<4} {arrow} {:<8} [{}{}] {pct:>3}%  {:<24} {}",
        t.id,
        t.peer.get(..8).unwrap_or(&t.peer),
        "#".repeat(filled),
        ".".repeat(w as usize - filled),
        detail,
        t.name
    )
}

async fn list(c: &mut Client) -> Result<Vec<Transfer>, String> {
    let v = c.call(Command::Files).await.map_err(|e| e.to_string())?;
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// Redraws the active transfers (and the ones that just ended) until none is active.
async fn follow(c: &mut Client, only: Option<u64>) -> Result<(), String> {
    c.call(Command::Subscribe)
        .await
        .map_err(|e| e.to_string())?;
    let mut shown: BTreeMap<u64, Transfer> = list(c)
        .await?
        .into_iter()
        .filter(|t| only.is_none_or(|o| o == t.id) && active(t))
        .map(|t| (t.id, t))
        .collect();
    let mut drawn = 0;
    let mut err = std::io::stderr();
    loop {
        if drawn > 0 {
            let _ = write!(err, "\x1b[{drawn}A");
        }
        for t in shown.values() {
            let _ = writeln!(err, "\x1b[2K{}", line(t));
        }
        drawn = shown.len();
        if !shown.values().any(active) {
            return Ok(());
        }
        match c.next_event().await.map_err(|e| e.to_string())? {
            Event::FileProgress {
                id,
                done,
                rate,
                eta_secs,
                ..
            } => {
                if let Some(t) = shown.get_mut(&id) {
                    t.done = done;
                    t.rate = rate;
                    t.eta_secs = eta_secs;
                }
            }
            Event::FileState { transfer } | Event::FileOffer { transfer }
                if only.is_none_or(|o| o == transfer.id) =>
            {
                shown.insert(transfer.id, transfer);
            }
            _ => {}
        }
    }
}

/// `torchat send-file <id> <path>`: offers the file; on a terminal, follows it to the end.
pub async fn send_file(
    socket: &Path,
    to: &str,
    path: &Path,
    wait: bool,
    json: bool,
) -> Result<(), String> {
    let abs = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut c = Client::connect(socket).await.map_err(|e| e.to_string())?;
    let v = c
        .call(Command::SendFile {
            to: to.to_owned(),
            path: abs.display().to_string(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let t: Transfer = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    if json {
        println!("{v}");
    } else {
        println!(
            "file {}: {} ({}) to {} — {}",
            t.id,
            t.name,
            human(t.size),
            t.peer,
            if t.state == "queued" {
                "offered when the buddy is online"
            } else {
                "offered"
            }
        );
    }
    if wait && !json && std::io::stderr().is_terminal() {
        follow(&mut c, Some(t.id)).await?;
    }
    Ok(())
}

/// `torchat files [accept|cancel|auto-accept]`.
pub async fn files(
    socket: &Path,
    cmd: Option<&FilesCmd>,
    once: bool,
    json: bool,
) -> Result<(), String> {
    let mut c = Client::connect(socket).await.map_err(|e| e.to_string())?;
    let call = match cmd {
        Some(FilesCmd::Accept { file }) => Some(Command::FileAccept { file: *file }),
        Some(FilesCmd::Cancel { file }) => Some(Command::FileCancel { file: *file }),
        Some(FilesCmd::AutoAccept { id, on }) => Some(Command::FileAutoAccept {
            id: id.clone(),
            on: match on.as_str() {
                "on" | "yes" | "true" => true,
                "off" | "no" | "false" => false,
                _ => return Err("auto-accept takes on or off".into()),
            },
        }),
        None => None,
    };
    if let Some(call) = call {
        let v = c.call(call).await.map_err(|e| e.to_string())?;
        match (json, serde_json::from_value::<Transfer>(v.clone())) {
            (true, _) | (false, Err(_)) => println!("{v}"),
            (false, Ok(t)) => println!("{}", line(&t)),
        }
        return Ok(());
    }
    let all = list(&mut c).await?;
    if json {
        println!("{}", serde_json::to_string(&all).unwrap_or_default());
        return Ok(());
    }
    if all.is_empty() {
        println!("no file transfers");
    }
    let terminal = std::io::stderr().is_terminal();
    for t in all.iter().filter(|t| !(terminal && !once && active(t))) {
        println!("{}", line(t));
        if let (Some(p), "receive") = (&t.path, t.direction.as_str()) {
            println!("      {p}");
        }
    }
    if terminal && !once && all.iter().any(active) {
        follow(&mut c, None).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_bar_and_the_numbers() {
        let t = Transfer {
            id: 3,
            direction: "receive".into(),
            peer: "bobaaaaaaaaaaaaa".into(),
            name: "x.bin".into(),
            size: 200,
            done: 50,
            state: "transferring".into(),
            reason: None,
            path: None,
            rate: 1_500_000,
            eta_secs: Some(7),
        };
        let l = line(&t);
        assert!(l.contains("[######..................]"), "{l}");
        assert!(
            l.contains(" 25%") && l.contains("1.5 MB/s") && l.contains("ETA 7s"),
            "{l}"
        );
    }
}
