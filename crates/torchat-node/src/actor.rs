//! The actor: the only owner of the core, the store and the connection table, and the only
//! place that reads the clock. One `select!` loop over transport events, connection events,
//! control commands, the core's next deadline and shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use torchat_api as api;
use torchat_core::{ConnId, Event, Node, Output, Timestamp};
use torchat_store::Store;
use torchat_tor::{BoxStream, Transport, TransportEvent};
use torchat_wire::OnionId;

use crate::convert;
use crate::persist;

/// Bytes read per `read` call on a connection.
const READ_CHUNK: usize = 16 * 1024;
/// Writes (one per actor step) waiting on one connection; a peer that does not read is cut off.
pub const MAX_PENDING_WRITES: usize = 1024;
/// Bytes waiting to be written on one connection before the peer is cut off.
pub const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;
/// Events from connection tasks waiting for the actor.
const INBOX: usize = 1024;

/// What connection tasks tell the actor.
enum Input {
    Data(ConnId, Vec<u8>),
    Closed(ConnId),
    Connected(ConnId, BoxStream),
    ConnectFailed(ConnId, torchat_core::ConnectError),
}

/// What a transport error says about the peer, in the core's terms.
fn connect_error(e: &torchat_tor::Error) -> torchat_core::ConnectError {
    use torchat_core::ConnectError as C;
    match e.failure() {
        torchat_tor::Failure::Refused => C::Refused,
        torchat_tor::Failure::Unreachable => C::Unreachable,
        torchat_tor::Failure::TimedOut => C::TimedOut,
        torchat_tor::Failure::Other => C::Other,
    }
}

/// A control request with its reply channel.
pub(crate) type ControlMsg = (
    api::Command,
    oneshot::Sender<Result<serde_json::Value, (String, String)>>,
);

/// What the transport reported last, for `info`.
#[derive(Debug, Clone, Default)]
pub(crate) struct TorState {
    pub percent: u8,
    pub summary: String,
    pub ready: bool,
    pub problem: Option<(String, String)>,
}

struct ConnHandle {
    tx: mpsc::Sender<Vec<u8>>,
    /// Bytes handed to the writer and not yet written.
    pending: Arc<std::sync::atomic::AtomicUsize>,
    reader: JoinHandle<()>,
}

pub(crate) struct Actor {
    pub core: Node,
    pub store: Box<dyn Store>,
    pub transport: Arc<dyn Transport>,
    pub events: broadcast::Sender<api::Event>,
    pub tor: TorState,
    pub log_secrets: bool,
    conns: HashMap<ConnId, ConnHandle>,
    inbox_tx: mpsc::Sender<Input>,
    inbox: mpsc::Receiver<Input>,
    pending_connects: HashMap<ConnId, JoinHandle<()>>,
    stop: bool,
    pub files: crate::files::Files,
}

pub(crate) fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    Timestamp::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

impl Actor {
    pub fn new(
        core: Node,
        store: Box<dyn Store>,
        transport: Arc<dyn Transport>,
        events: broadcast::Sender<api::Event>,
        log_secrets: bool,
        files: crate::files::Files,
    ) -> Self {
        let (inbox_tx, inbox) = mpsc::channel(INBOX);
        Actor {
            core,
            store,
            transport,
            events,
            tor: TorState::default(),
            log_secrets,
            conns: HashMap::new(),
            inbox_tx,
            inbox,
            pending_connects: HashMap::new(),
            stop: false,
            files,
        }
    }

    /// An id for logs: shortened unless secrets may be logged.
    fn who(&self, id: &OnionId) -> String {
        if self.log_secrets {
            id.to_string()
        } else {
            format!("{}…", id.short())
        }
    }

    pub async fn run(
        mut self,
        mut transport_rx: mpsc::Receiver<TransportEvent>,
        mut control_rx: mpsc::Receiver<ControlMsg>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.core.start(now());
        self.drain();
        while !self.stop {
            let sleep = match self.core.poll_timeout() {
                Some(t) => Duration::from_millis(t.as_millis().saturating_sub(now().as_millis())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(ev) = transport_rx.recv() => self.on_transport(ev),
                Some(input) = self.inbox.recv() => self.on_input(input),
                Some((cmd, reply)) = control_rx.recv() => {
                    let r = crate::control::execute(&mut self, cmd);
                    // Persist (and carry out) what the command caused before answering, so
                    // "sent" or "queued" is only said once the message is on disk.
                    self.drain();
                    let _ = reply.send(r);
                }
                _ = tokio::time::sleep(sleep) => self.core.handle_timeout(now()),
            }
            self.drain();
        }
        self.shutdown().await;
    }

    pub fn request_stop(&mut self) {
        self.stop = true;
    }

    async fn shutdown(&mut self) {
        tracing::info!("shutting down");
        for (_, h) in self.pending_connects.drain() {
            h.abort();
        }
        for (_, h) in self.conns.drain() {
            h.reader.abort();
            drop(h.tx); // writers flush what they have, then close
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    fn on_transport(&mut self, ev: TransportEvent) {
        match ev {
            TransportEvent::Incoming(stream) => match self.core.accept(now()) {
                Some(conn) => self.spawn_conn(conn, stream),
                None => tracing::debug!("incoming connection refused: over the caps"),
            },
            TransportEvent::Progress { percent, summary } => {
                tracing::info!(percent, %summary, "tor bootstrap");
                self.tor.percent = percent;
                self.tor.summary = summary.clone();
                let _ = self
                    .events
                    .send(api::Event::TorProgress { percent, summary });
            }
            TransportEvent::Ready { id } => {
                tracing::info!(id = %self.who(&id), "onion service ready");
                // The network is usable (again): buddies we gave up on for now are tried soon.
                self.core.network_up(now());
                self.tor.ready = true;
                self.tor.percent = 100;
                self.tor.problem = None;
                let _ = self
                    .events
                    .send(api::Event::TorReady { id: id.to_string() });
            }
            TransportEvent::Problem { message, hint } => {
                tracing::warn!(%message, %hint, "transport problem");
                self.tor.problem = Some((message.clone(), hint.clone()));
                let _ = self.events.send(api::Event::TorProblem { message, hint });
            }
            _ => {}
        }
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Data(conn, data) => {
                if self.conns.contains_key(&conn) {
                    self.core.handle_data(conn, &data, now());
                }
            }
            Input::Closed(conn) => {
                let known = match self.conns.remove(&conn) {
                    Some(h) => {
                        h.reader.abort();
                        true
                    }
                    // A failed outgoing connect.
                    None => self.pending_connects.remove(&conn).is_some(),
                };
                if known {
                    self.core.handle_closed(conn, now());
                }
            }
            Input::Connected(conn, stream) => {
                if self.pending_connects.remove(&conn).is_some() {
                    self.spawn_conn(conn, stream);
                    self.core.handle_connected(conn, now());
                }
            }
            Input::ConnectFailed(conn, why) => {
                if self.pending_connects.remove(&conn).is_some() {
                    self.core.handle_connect_failed(conn, why, now());
                }
            }
        }
    }

    /// Carries out the core's outputs until there are none (file reads answered here make
    /// more).
    pub fn drain(&mut self) {
        while self.drain_once() {}
    }

    /// Carries out the core's outputs: persist first (one transaction), then the rest.
    fn drain_once(&mut self) -> bool {
        let mut outputs = Vec::new();
        while let Some(o) = self.core.poll_output() {
            outputs.push(o);
        }
        if outputs.is_empty() {
            return false;
        }
        let t = now();
        let me = self.core.own_id().clone();
        let mut ops = Vec::new();
        for o in &outputs {
            if let Output::Persist(r) = o {
                ops.extend(persist::ops(self.store.as_ref(), &me, r.clone(), t));
            }
        }
        if !ops.is_empty() {
            if let Err(e) = self.store.apply(&ops) {
                // Do not lose the whole batch for one bad operation: apply what can be.
                tracing::error!(error = %e, "store batch failed; applying one by one");
                for op in &ops {
                    if let Err(e) = self.store.apply(std::slice::from_ref(op)) {
                        tracing::error!(error = %e, "store write failed");
                        let _ = self.events.send(api::Event::Error {
                            message: format!("storage: {e}"),
                        });
                    }
                }
            }
        }
        // One write per connection per step, however many lines the core produced.
        let mut writes: Vec<(ConnId, Vec<u8>)> = Vec::new();
        let mut loads = Vec::new();
        for o in outputs {
            match o {
                Output::Persist(_) => {}
                Output::Load(req) => loads.push(req),
                Output::Connect { conn, to } => self.connect(conn, to),
                Output::Transmit { conn, data } => {
                    match writes.iter_mut().find(|(c, _)| *c == conn) {
                        Some((_, buf)) => buf.extend_from_slice(&data),
                        None => writes.push((conn, data)),
                    }
                }
                Output::Close { conn } => {
                    if let Some(h) = self.conns.remove(&conn) {
                        h.reader.abort();
                    }
                    if let Some(h) = self.pending_connects.remove(&conn) {
                        h.abort();
                    }
                }
                Output::Event(e) => self.publish(e),
                Output::File(io) => crate::files::Files::io(self, io),
            }
        }
        for (conn, data) in writes {
            self.transmit(conn, data);
        }
        // Stored group messages a member asked for (extension torchat_sync): read them and
        // hand them back; what the core does with them goes out in the next round.
        for req in loads {
            let copies = match self
                .store
                .sync_range(&req.gid, &req.speaker, req.from, req.to)
            {
                Ok(rows) => rows.iter().filter_map(persist::sync_copy).collect(),
                Err(e) => {
                    tracing::error!(error = %e, "store read failed");
                    vec![]
                }
            };
            self.core.handle_loaded(req.token, copies, now());
        }
        true
    }

    fn publish(&mut self, e: Event) {
        if crate::files::Files::event(self, &e) {
            return;
        }
        if let Event::PeerInfo { id, info } = &e {
            // Keep the last known profile of buddies on our list, for display after a restart.
            if let Ok(Some(mut row)) = self.store.buddy(id) {
                row.profile_name = info.profile_name.clone();
                row.profile_text = info.profile_text.clone();
                row.client = info.client.clone();
                row.version = info.version.clone();
                if let Err(e) = self.store.apply(&[torchat_store::Op::UpsertBuddy(row)]) {
                    tracing::error!(error = %e, "store write failed");
                }
            }
            if let Some(b) = self.core.buddy(id) {
                let _ = self.events.send(api::Event::BuddyInfo {
                    buddy: convert::buddy(&b),
                });
            }
            return;
        }
        if let Event::Misbehaviour { id, what } = &e {
            let who = id.as_ref().map(|i| self.who(i)).unwrap_or_default();
            tracing::debug!(peer = %who, %what, "peer misbehaved");
            return;
        }
        if let Some(ev) = convert::event(&e, self.core.own_id()) {
            let _ = self.events.send(ev);
        }
    }

    fn connect(&mut self, conn: ConnId, to: OnionId) {
        tracing::debug!(%conn, to = %self.who(&to), "connecting");
        let fut = self.transport.connect(&to);
        let tx = self.inbox_tx.clone();
        let h = tokio::spawn(async move {
            match fut.await {
                Ok(stream) => {
                    let _ = tx.send(Input::Connected(conn, stream)).await;
                }
                Err(e) => {
                    let why = connect_error(&e);
                    tracing::debug!(%conn, error = %e, ?why, "connect failed");
                    let _ = tx.send(Input::ConnectFailed(conn, why)).await;
                }
            }
        });
        self.pending_connects.insert(conn, h);
    }

    fn transmit(&mut self, conn: ConnId, data: Vec<u8>) {
        let Some(h) = self.conns.get(&conn) else {
            return;
        };
        let len = data.len();
        let before = h
            .pending
            .fetch_add(len, std::sync::atomic::Ordering::AcqRel);
        if before + len > MAX_PENDING_BYTES || h.tx.try_send(data).is_err() {
            // The peer does not read what we write: cut it off rather than buffer without end.
            tracing::debug!(%conn, "write queue full; closing");
            if let Some(h) = self.conns.remove(&conn) {
                h.reader.abort();
            }
            self.core.handle_closed(conn, now());
        }
    }

    fn spawn_conn(&mut self, conn: ConnId, stream: BoxStream) {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(MAX_PENDING_WRITES);
        let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let written = pending.clone();
        let inbox = self.inbox_tx.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if inbox
                            .send(Input::Data(conn, buf[..n].to_vec()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            let _ = inbox.send(Input::Closed(conn)).await;
        });
        let inbox = self.inbox_tx.clone();
        tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                if wr.write_all(&data).await.is_err() {
                    let _ = inbox.send(Input::Closed(conn)).await;
                    return;
                }
                written.fetch_sub(data.len(), std::sync::atomic::Ordering::AcqRel);
            }
            let _ = wr.shutdown().await;
        });
        self.conns.insert(
            conn,
            ConnHandle {
                tx,
                pending,
                reader,
            },
        );
    }

    /// Number of open connections (for `info`).
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }
}
