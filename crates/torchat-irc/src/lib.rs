//! An IRC gateway for torchat: any IRC client (irssi, weechat, HexChat) becomes a torchat
//! client, as bitlbee once was for TorChat.
//!
//! `torchat irc` serves IRC on localhost (default `127.0.0.1:6667`) and refuses clients
//! without the password (`PASS`). Each IRC connection gets its own connection to the node's
//! control API (see `docs/api.md`). The mapping (see `docs/irc.md`):
//!
//! - Buddies are nicks: private messages are 1:1 chats; `/msg <onion id>` works for any id.
//!   Voice (`+`) means online; `/whois` shows the state, away buddies answer with `RPL_AWAY`.
//! - Groups are channels (`#` + the start of the group id, or a name given at creation):
//!   `JOIN` accepts an invite, `PART` leaves, `INVITE nick #chan` invites; an invite arrives
//!   as an IRC `INVITE`. Every group line starts with its trust tag — `(Direct)`,
//!   `(2 of 3)`, `(UNCONFIRMED 1 of 3)` — and trust changes are announced as notices.
//! - `&torchat` is the control channel: `help`, `add`, `remove`, `block`, `unblock`,
//!   `status`, `profile`, `buddies`, `groups`, `create`, and a few more.
//!
//! The work is split in two: [`gateway::Gateway`] is a pure state machine (IRC lines and
//! API events in, IRC lines and API commands out) and [`Server`] is the async loop around
//! it.
#![warn(missing_docs)]

pub mod gateway;
pub mod names;
pub mod proto;
mod server;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

pub use server::{load_or_create_password, serve, Server};

/// Where the gateway listens unless told otherwise.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6667);

/// How the gateway is set up.
#[derive(Debug, Clone)]
pub struct IrcConfig {
    /// The node's control socket (`control.sock` in the data directory).
    pub socket: PathBuf,
    /// Where to listen for IRC clients; must be a loopback address.
    pub listen: SocketAddr,
    /// The password IRC clients must send with `PASS`; must not be empty.
    pub password: String,
    /// Where to keep the nick and channel mapping between runs (e.g.
    /// `<data dir>/irc-nicks.json`); `None` keeps it in memory only.
    pub nick_file: Option<PathBuf>,
    /// IRC connections served at once.
    pub max_clients: usize,
}

impl IrcConfig {
    /// Settings for the node at `socket`, with [`DEFAULT_LISTEN`], no nick file and at most
    /// 8 IRC connections.
    pub fn new(socket: impl Into<PathBuf>, password: impl Into<String>) -> Self {
        IrcConfig {
            socket: socket.into(),
            listen: DEFAULT_LISTEN,
            password: password.into(),
            nick_file: None,
            max_clients: 8,
        }
    }
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway serves localhost only.
    #[error("the IRC gateway listens on localhost only; {0} is not a loopback address")]
    NotLoopback(SocketAddr),
    /// No password was configured.
    #[error("the IRC gateway needs a password for its clients")]
    NoPassword,
    /// The listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Some other I/O failure (the password or nick file, the listener).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
