//! The torchat terminal UI: a client of a running node's control API (`docs/api.md`), drawn with
//! ratatui. Keys, panes and tags are described in `docs/tui.md`.
//!
//! It is built like gurk and iamb, in three parts:
//!
//! - [`App`] ([`app`]): the state machine. No I/O, no clock, no terminal: it takes [`AppEvent`]s
//!   (keys, pastes, resizes, node events, responses, clock ticks) and returns [`Action`]s
//!   (commands for the node, text to copy, quit). Unit-tested by feeding it events.
//! - [`draw`] ([`ui`]): paints a frame from an `&App` and nothing else. Tested with ratatui's
//!   `TestBackend`.
//! - [`run`] / [`drive`] ([`runtime`]): the async loop that connects them to the node (two
//!   connections: events and commands) and the terminal, through bounded channels.
//!
//! ```no_run
//! # async fn f() -> Result<(), torchat_tui::Error> {
//! torchat_tui::run(std::path::Path::new("/home/me/.local/share/torchat/control.sock")).await
//! # }
//! ```
#![warn(missing_docs)]

pub mod app;
pub mod files;
pub mod input;
pub mod model;
mod requests;
pub mod runtime;
pub mod snapshot;
pub mod ui;

#[cfg(test)]
mod tests;

pub use app::{Action, App, AppEvent, ResponseError};
pub use runtime::{drive, run};
pub use ui::draw;

/// What can stop the UI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node could not be reached, or a request at start-up failed.
    #[error(transparent)]
    Client(#[from] torchat_client::ClientError),
    /// The terminal could not be set up, read or drawn.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    /// The connection to the node was lost while the UI ran.
    #[error("connection to the node lost: {0}")]
    Disconnected(String),
}

impl From<std::convert::Infallible> for Error {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}
