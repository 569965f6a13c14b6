//! The terminal UI attached to a running node, until `torchat ui` calls it:
//!
//! ```sh
//! cargo run -p torchat-tui --example tui -- ~/.local/share/torchat/control.sock
//! cargo run -p torchat-tui --example tui -- ~/.local/share/torchat      # a data directory
//! ```
//!
//! Without an argument it uses `$TORCHAT_DATA_DIR`, else `$XDG_DATA_HOME/torchat`, else
//! `~/.local/share/torchat`.

use std::path::PathBuf;
use std::process::ExitCode;

fn socket() -> PathBuf {
    let path = match std::env::args_os().nth(1) {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("TORCHAT_DATA_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("torchat")))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/torchat"))
            })
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    if path.is_dir() {
        path.join("control.sock")
    } else {
        path
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match torchat_tui::run(&socket()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("torchat: {e}");
            ExitCode::FAILURE
        }
    }
}
