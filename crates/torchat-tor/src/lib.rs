//! Transports: how torchat reaches other onion ids and how they reach us.
//!
//! Every transport implements [`Transport`]: dial an onion id's TorChat port (11009), and hand
//! every accepted incoming connection to the node as a [`TransportEvent::Incoming`] on the
//! channel it was started with. Progress (Tor bootstrap) and problems are events too, so the
//! user can see what is happening. The protocol core never knows which transport is in use.
//!
//! Implementations:
//! - [`direct`]: an id → host:port map, for LANs, tests and the local demo (no Tor);
//! - [`manual`]: a SOCKS proxy, a listen address and an id given by the user (how legacy
//!   clients were run);
//! - [`ctor`]: the `tor` program, managed (launched by us) or existing (its control and SOCKS
//!   ports), hosting our v3 onion service from our persistent key.
//!
//! Building blocks: [`socks`] (SOCKS5/SOCKS4a client with Tor's extended errors), [`control`]
//! (Tor control-port client), [`keys`] (the identity seed in the form Tor takes it).
//! See `docs/transports.md` for configuration.
#![warn(missing_docs)]

pub mod control;
pub mod ctor;
pub mod direct;
pub mod keys;
pub mod manual;
pub mod socks;

use std::future::Future;
use std::io;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use torchat_wire::OnionId;

/// The TorChat port inside every onion service.
pub const TORCHAT_PORT: u16 = 11009;

/// A bidirectional byte stream (a TCP connection, a SOCKS tunnel, an onion stream).
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// A boxed future, for object-safe async methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a transport tells the node.
#[non_exhaustive]
pub enum TransportEvent {
    /// Bootstrap progress (Tor: 0–100 %).
    Progress {
        /// Percent done.
        percent: u8,
        /// What is happening, for people.
        summary: String,
    },
    /// Our service is reachable under this id; outgoing connections work.
    Ready {
        /// Our onion id as the transport publishes it.
        id: OnionId,
    },
    /// Something is wrong; `hint` says what a person can try. The transport keeps retrying.
    Problem {
        /// What is wrong.
        message: String,
        /// What to try.
        hint: String,
    },
    /// A peer connected to us.
    Incoming(BoxStream),
}

impl std::fmt::Debug for TransportEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportEvent::Progress { percent, summary } => {
                write!(f, "Progress({percent}%, {summary})")
            }
            TransportEvent::Ready { id } => write!(f, "Ready({})", id.short()),
            TransportEvent::Problem { message, .. } => write!(f, "Problem({message})"),
            TransportEvent::Incoming(_) => f.write_str("Incoming"),
        }
    }
}

/// Errors of a transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The transport is misconfigured.
    #[error("configuration: {0}")]
    Config(String),
    /// The destination is not known to this transport (direct transport without a mapping).
    #[error("no route to that id")]
    NoRoute,
    /// The proxy or Tor refused or failed the connection.
    #[error("connection refused by the proxy: {0}")]
    Proxy(String),
    /// The SOCKS proxy (or Tor's SOCKS port) answered with an error.
    #[error(transparent)]
    Socks(#[from] socks::SocksError),
    /// Tor's control port refused a command or spoke nonsense.
    #[error("tor control port: {0}")]
    Control(String),
    /// The transport is still starting (Tor is bootstrapping); try again later.
    #[error("the transport is not ready yet")]
    NotReady,
    /// The destination could not be reached (embedded Tor: descriptor not found, introduction
    /// or rendezvous failed).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The destination answered and refused the connection (nothing listens on its port).
    #[error("refused: {0}")]
    Refused(String),
    /// The connection attempt took too long.
    #[error("timed out: {0}")]
    TimedOut(String),
}

/// What a failed connection attempt says about the peer, for the reconnect policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The peer's side answered and refused: its program is down or restarting.
    Refused,
    /// The peer cannot be reached now: probably offline.
    Unreachable,
    /// The attempt took too long.
    TimedOut,
    /// Local trouble or unknown.
    Other,
}

impl Error {
    /// What this error says about the peer (see [`Failure`]).
    pub fn failure(&self) -> Failure {
        use socks::SocksError as S;
        match self {
            Error::Io(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => Failure::Refused,
                io::ErrorKind::TimedOut => Failure::TimedOut,
                io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                    Failure::Unreachable
                }
                _ => Failure::Other,
            },
            Error::NoRoute | Error::Unreachable(_) => Failure::Unreachable,
            Error::Refused(_) => Failure::Refused,
            Error::TimedOut(_) => Failure::TimedOut,
            Error::Socks(s) => match s {
                S::ConnectionRefused => Failure::Refused,
                S::TtlExpired | S::OnionIntroTimedOut | S::Timeout => Failure::TimedOut,
                S::HostUnreachable
                | S::NetworkUnreachable
                | S::OnionDescriptorNotFound
                | S::OnionIntroFailed
                | S::OnionRendezvousFailed => Failure::Unreachable,
                _ => Failure::Other,
            },
            Error::Config(_) | Error::Proxy(_) | Error::Control(_) | Error::NotReady => {
                Failure::Other
            }
        }
    }
}

/// A way to reach onion ids. Started by its constructor with a channel for its events.
pub trait Transport: Send + Sync + 'static {
    /// Opens a connection to `to`'s TorChat port.
    fn connect(&self, to: &OnionId) -> BoxFuture<'static, Result<BoxStream, Error>>;

    /// A short name for logs and status displays ("direct", "socks", "tor", "arti").
    fn name(&self) -> &'static str;
}
