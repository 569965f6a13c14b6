//! Direct TCP: no Tor. Onion ids are mapped to `host:port` by configuration. For LANs, tests
//! and the local demo; it gives no anonymity.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use torchat_wire::OnionId;

use crate::{BoxFuture, BoxStream, Error, Transport, TransportEvent};

/// The direct transport.
#[derive(Debug, Clone)]
pub struct Direct {
    routes: Arc<RwLock<BTreeMap<OnionId, SocketAddr>>>,
    /// Ids we pretend we cannot reach (a cut link, for demos and tests).
    cut: Arc<RwLock<BTreeSet<OnionId>>>,
    /// Pumps of live outgoing connections per destination, so a cut can end them.
    live: Arc<Mutex<Vec<(OnionId, AbortHandle)>>>,
    local: SocketAddr,
}

/// Buffer of the in-process pipe between the node and a direct TCP connection.
const PIPE: usize = 64 * 1024;

impl Direct {
    /// Listens on `listen`, announces `own` as ready, and forwards accepted connections to
    /// `events`. Returns the transport and the address actually bound (port 0 picks one).
    pub async fn start(
        own: OnionId,
        listen: SocketAddr,
        routes: BTreeMap<OnionId, SocketAddr>,
        events: mpsc::Sender<TransportEvent>,
    ) -> Result<(Self, SocketAddr), Error> {
        let listener = TcpListener::bind(listen).await?;
        let bound = listener.local_addr()?;
        let _ = events.send(TransportEvent::Ready { id: own }).await;
        tokio::spawn(accept_loop(listener, events));
        let d = Direct {
            routes: Arc::new(RwLock::new(routes)),
            cut: Arc::default(),
            live: Arc::default(),
            local: bound,
        };
        Ok((d, bound))
    }

    /// The address we listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Cuts (or restores) the link to `id`: connects to it fail, and our live connections to
    /// it are closed, which closes the peer's side of the session too.
    pub fn set_cut(&self, id: &OnionId, cut: bool) {
        if let Ok(mut c) = self.cut.write() {
            if cut {
                c.insert(id.clone());
            } else {
                c.remove(id);
            }
        }
        if cut {
            if let Ok(mut live) = self.live.lock() {
                live.retain(|(to, h)| {
                    if to == id {
                        h.abort();
                    }
                    to != id && !h.is_finished()
                });
            }
        }
    }

    /// Adds or changes a route.
    pub fn set_route(&self, id: OnionId, addr: SocketAddr) {
        if let Ok(mut r) = self.routes.write() {
            r.insert(id, addr);
        }
    }
}

pub(crate) async fn accept_loop(listener: TcpListener, events: mpsc::Sender<TransportEvent>) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let _ = sock.set_nodelay(true);
                if events
                    .send(TransportEvent::Incoming(Box::new(sock)))
                    .await
                    .is_err()
                {
                    return; // the node is gone
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

impl Transport for Direct {
    fn connect(&self, to: &OnionId) -> BoxFuture<'static, Result<BoxStream, Error>> {
        let cut = self.cut.read().map(|c| c.contains(to)).unwrap_or(false);
        let addr = if cut {
            None
        } else {
            self.routes.read().ok().and_then(|r| r.get(to).copied())
        };
        let live = self.live.clone();
        let to = to.clone();
        Box::pin(async move {
            let addr = addr.ok_or(Error::NoRoute)?;
            let mut tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            // The node gets one end of a pipe; a pump joins the other end to the socket, so
            // that `set_cut` can end the connection.
            let (ours, mut theirs) = tokio::io::duplex(PIPE);
            let pump = tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut theirs, &mut tcp).await;
            });
            if let Ok(mut l) = live.lock() {
                l.retain(|(_, h)| !h.is_finished());
                l.push((to, pump.abort_handle()));
            }
            Ok(Box::new(ours) as BoxStream)
        })
    }

    fn name(&self) -> &'static str {
        "direct"
    }
}
