//! Manual: the user runs Tor (or another SOCKS proxy) and an onion service themselves, and
//! tells us three things: their own id, the local address their onion service forwards port
//! 11009 to, and the SOCKS proxy to dial through. This is how legacy clients were run, so
//! legacy 16-character ids are allowed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use torchat_wire::OnionId;

use crate::direct::accept_loop;
use crate::socks::{self, SocksVersion};
use crate::{BoxFuture, BoxStream, Error, Transport, TransportEvent};

/// The manual transport.
#[derive(Debug, Clone)]
pub struct Manual {
    socks: SocketAddr,
    version: SocksVersion,
    timeout: Duration,
}

impl Manual {
    /// Listens on `listen` (where the user's onion service forwards to), announces `own` as
    /// ready and forwards accepted connections to `events`; dials `<id>.onion:11009` through
    /// the SOCKS proxy at `socks` speaking `version`. Returns the transport and the address
    /// actually bound (port 0 picks one).
    pub async fn start(
        own: OnionId,
        listen: SocketAddr,
        socks: SocketAddr,
        version: SocksVersion,
        events: mpsc::Sender<TransportEvent>,
    ) -> Result<(Self, SocketAddr), Error> {
        let listener = TcpListener::bind(listen).await?;
        let bound = listener.local_addr()?;
        tracing::debug!(id = own.short(), %bound, %socks, ?version, "manual transport started");
        let _ = events.send(TransportEvent::Ready { id: own }).await;
        tokio::spawn(accept_loop(listener, events));
        let timeout = socks::DEFAULT_TIMEOUT;
        Ok((
            Manual {
                socks,
                version,
                timeout,
            },
            bound,
        ))
    }

    /// Changes the time allowed for one SOCKS handshake (default [`socks::DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Transport for Manual {
    fn connect(&self, to: &OnionId) -> BoxFuture<'static, Result<BoxStream, Error>> {
        let (proxy, version, timeout, to) = (self.socks, self.version, self.timeout, to.clone());
        Box::pin(async move {
            let s = socks::connect_onion(proxy, &to, version, timeout).await?;
            Ok(Box::new(s) as BoxStream)
        })
    }

    fn name(&self) -> &'static str {
        "socks"
    }
}
