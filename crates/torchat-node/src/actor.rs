//! The actor: the only owner of the core, the store and the connection table, and the only
//! place that reads the clock.
//!
//! It works in **batches** (group commit). It waits for one input — a transport event, a
//! connection event, control requests or the core's deadline — and then takes every other input
//! that is ready, up to [`MAX_BATCH_INPUTS`] inputs or [`MAX_BATCH_BYTES`] bytes, feeding each
//! to the core and collecting what the core asks for. Then, in this order:
//!
//! 1. the records of the whole batch are written in **one** store transaction (one `fsync`);
//! 2. the other outputs are carried out in the order the core gave them: connections opened
//!    and closed, events published, bytes written — one write per connection per batch;
//! 3. the control requests of the batch are answered.
//!
//! So nothing reaches the wire, a subscriber or a client before the records it depends on are
//! durable, exactly as with one input per step; a batch only shares the commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use torchat_api as api;
use torchat_core::{ConnId, Event, Node, Output, Timestamp};
use torchat_store::{Op, Store};
use torchat_tor::{BoxStream, Transport, TransportEvent};
use torchat_wire::OnionId;

use crate::convert;
use crate::persist;

/// Bytes read per `read` call on a connection.
const READ_CHUNK: usize = 16 * 1024;
/// Writes (one per batch) waiting on one connection; a peer that does not read is cut off.
pub const MAX_PENDING_WRITES: usize = 1024;
/// Bytes waiting to be written on one connection before the peer is cut off.
pub const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;
/// Events from connection tasks waiting for the actor: with [`READ_CHUNK`], at most 4 MiB of
/// network data (one batch's worth) waits in memory.
const INBOX: usize = 256;
/// Inputs taken into one batch (a control request counts as one input). A chunk of control
/// requests already taken is finished, so a batch holds at most this plus one chunk (256
/// requests).
pub const MAX_BATCH_INPUTS: usize = 1024;
/// Bytes of network data and control requests taken into one batch.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Outputs (events, transmissions…), or store operations, after which a batch takes no more
/// inputs, so that the events of one batch fit a subscriber's queue
/// ([`crate::events::QUEUE`]) with room to spare.
const MAX_BATCH_OUTPUTS: usize = 2048;
/// After this long without input, caches are given back (see [`Store::release_memory`]).
const IDLE_RELEASE: Duration = Duration::from_secs(5);

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

/// The answer to one control request.
pub(crate) type CmdResult = Result<serde_json::Value, (String, String)>;

/// A control request with its reply channel.
pub(crate) type ControlMsg = (api::Command, oneshot::Sender<CmdResult>);

/// Control requests read together from one client, in order, with their total size in bytes.
pub(crate) type ControlChunk = (Vec<ControlMsg>, usize);

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

/// What one batch has gathered and not yet carried out.
#[derive(Default)]
struct Batch {
    /// Store operations, in the order of the records.
    ops: Vec<Op>,
    /// Claims staged in `ops` (each group trust record repeats every claimant so far).
    claims: std::collections::HashSet<(torchat_store::MsgId, OnionId)>,
    /// Where the trust update of a message sits in `ops` (a later one replaces it).
    trust_at: HashMap<torchat_store::MsgId, usize>,
    /// The core's other outputs, in order.
    outputs: Vec<Output>,
    /// Control requests answered once the batch is durable.
    replies: Vec<(oneshot::Sender<CmdResult>, CmdResult)>,
    inputs: usize,
    bytes: usize,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.outputs.is_empty() && self.replies.is_empty()
    }

    fn full(&self) -> bool {
        self.inputs >= MAX_BATCH_INPUTS
            || self.bytes >= MAX_BATCH_BYTES
            || self.outputs.len() >= MAX_BATCH_OUTPUTS
            || self.ops.len() >= MAX_BATCH_OUTPUTS
    }

    /// Adds a store operation. A group message's trust record names every claimant so far and
    /// may come once per echo: within a batch a claim is staged once and only the last trust
    /// of a message is written (in the place of the first).
    fn stage(&mut self, op: Op) {
        match &op {
            Op::AddClaim(c) if !self.claims.insert((c.msg_id, c.claimant.clone())) => return,
            Op::UpdateTrust { id, trust } => {
                if let Some(&i) = self.trust_at.get(id) {
                    if let Some(Op::UpdateTrust { trust: t, .. }) = self.ops.get_mut(i) {
                        *t = *trust;
                        return;
                    }
                }
                self.trust_at.insert(*id, self.ops.len());
            }
            _ => {}
        }
        self.ops.push(op);
    }
}

pub(crate) struct Actor {
    pub core: Node,
    pub store: Box<dyn Store>,
    pub transport: Arc<dyn Transport>,
    pub events: crate::events::Hub,
    pub tor: TorState,
    pub log_secrets: bool,
    me: OnionId,
    conns: HashMap<ConnId, ConnHandle>,
    inbox_tx: mpsc::Sender<Input>,
    inbox: mpsc::Receiver<Input>,
    pending_connects: HashMap<ConnId, JoinHandle<()>>,
    batch: Batch,
    /// The runtime connection tasks run on (the actor has a thread of its own).
    io: tokio::runtime::Handle,
    /// Batches carried out and their inputs, for `info`.
    pub batches: u64,
    pub batched_inputs: u64,
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
        events: crate::events::Hub,
        log_secrets: bool,
        files: crate::files::Files,
        io: tokio::runtime::Handle,
    ) -> Self {
        let (inbox_tx, inbox) = mpsc::channel(INBOX);
        let me = core.own_id().clone();
        Actor {
            core,
            store,
            transport,
            events,
            tor: TorState::default(),
            log_secrets,
            me,
            conns: HashMap::new(),
            inbox_tx,
            inbox,
            pending_connects: HashMap::new(),
            batch: Batch::default(),
            io,
            batches: 0,
            batched_inputs: 0,
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
        mut control_rx: mpsc::Receiver<ControlChunk>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.core.start(now());
        self.collect();
        self.finish();
        // When the last input came, until caches are given back after a quiet spell.
        let mut active: Option<std::time::Instant> = None;
        while !self.stop {
            let mut sleep = match self.core.poll_timeout() {
                Some(t) => Duration::from_millis(t.as_millis().saturating_sub(now().as_millis())),
                None => Duration::from_secs(3600),
            };
            if let Some(t) = active {
                sleep = sleep.min(IDLE_RELEASE.saturating_sub(t.elapsed()));
            }
            // Wait for one input…
            let input = tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(ev) = transport_rx.recv() => {
                    self.on_transport(ev);
                    true
                }
                Some(input) = self.inbox.recv() => {
                    self.on_input(input);
                    true
                }
                Some(chunk) = control_rx.recv() => {
                    self.on_control(chunk);
                    true
                }
                _ = tokio::time::sleep(sleep) => false,
            };
            if input {
                active = Some(std::time::Instant::now());
                // …then take what else is ready, up to the bounds.
                self.gather(&mut transport_rx, &mut control_rx);
            } else if active.is_some_and(|t| t.elapsed() >= IDLE_RELEASE) {
                // Quiet for a while: give back what caches hold.
                self.store.release_memory();
                active = None;
            }
            if self.core.poll_timeout().is_some_and(|t| t <= now()) {
                self.core.handle_timeout(now());
                self.collect();
            }
            self.finish();
        }
        self.shutdown().await;
    }

    /// Takes inputs that are ready without waiting, from every source in turn, until none is
    /// or the batch is full.
    fn gather(
        &mut self,
        transport_rx: &mut mpsc::Receiver<TransportEvent>,
        control_rx: &mut mpsc::Receiver<ControlChunk>,
    ) {
        while !self.batch.full() && !self.stop {
            let mut got = false;
            if let Ok(input) = self.inbox.try_recv() {
                self.on_input(input);
                got = true;
            }
            if let Ok(chunk) = control_rx.try_recv() {
                self.on_control(chunk);
                got = true;
            }
            if let Ok(ev) = transport_rx.try_recv() {
                self.on_transport(ev);
                got = true;
            }
            if !got {
                break;
            }
        }
    }

    pub fn request_stop(&mut self) {
        self.stop = true;
    }

    async fn shutdown(&mut self) {
        tracing::info!("shutting down");
        // Whatever was taken in is written and answered before we go.
        self.finish();
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
        self.batch.inputs += 1;
        match ev {
            TransportEvent::Incoming(stream) => match self.core.accept(now()) {
                Some(conn) => self.spawn_conn(conn, stream),
                None => tracing::debug!("incoming connection refused: over the caps"),
            },
            TransportEvent::Progress { percent, summary } => {
                tracing::info!(percent, %summary, "tor bootstrap");
                self.tor.percent = percent;
                self.tor.summary = summary.clone();
                self.events
                    .send(api::Event::TorProgress { percent, summary });
            }
            TransportEvent::Ready { id } => {
                tracing::info!(id = %self.who(&id), "onion service ready");
                // The network is usable (again): buddies we gave up on for now are tried soon.
                self.core.network_up(now());
                self.tor.ready = true;
                self.tor.percent = 100;
                self.tor.problem = None;
                self.events
                    .send(api::Event::TorReady { id: id.to_string() });
            }
            TransportEvent::Problem { message, hint } => {
                tracing::warn!(%message, %hint, "transport problem");
                self.tor.problem = Some((message.clone(), hint.clone()));
                self.events.send(api::Event::TorProblem { message, hint });
            }
            _ => {}
        }
        self.collect();
    }

    fn on_input(&mut self, input: Input) {
        self.batch.inputs += 1;
        match input {
            Input::Data(conn, data) => {
                self.batch.bytes += data.len();
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
        self.collect();
    }

    /// Executes a chunk of control requests; each is answered when its batch is durable.
    fn on_control(&mut self, (msgs, bytes): ControlChunk) {
        self.batch.bytes += bytes;
        for (cmd, reply) in msgs {
            self.batch.inputs += 1;
            if crate::control::reads_store(&cmd) {
                // Reads see every write before them: finish what the batch holds first.
                self.finish();
            }
            let r = crate::control::execute(self, cmd);
            self.collect();
            self.batch.replies.push((reply, r));
        }
    }

    /// The delivery state the core just gave a 1:1 message we sent (its `Delivery` event).
    pub(crate) fn delivery_of(
        &mut self,
        id: torchat_core::MsgId,
    ) -> Option<torchat_core::Delivery> {
        self.collect();
        self.batch.outputs.iter().rev().find_map(|o| match o {
            Output::Event(Event::Delivery { id: i, state, .. }) if *i == id => Some(*state),
            _ => None,
        })
    }

    /// Stages a store operation with the batch's records (written before anything is answered).
    pub(crate) fn stage(&mut self, op: Op) {
        self.batch.stage(op);
    }

    /// Takes the core's outputs into the batch: records become store operations now, the rest
    /// waits until they are durable.
    fn collect(&mut self) {
        let mut t = None;
        while let Some(o) = self.core.poll_output() {
            match o {
                Output::Persist(r) => {
                    let t = *t.get_or_insert_with(now);
                    let ops = persist::ops(self.store.as_ref(), &self.batch.ops, &self.me, r, t);
                    for op in ops {
                        self.batch.stage(op);
                    }
                }
                other => self.batch.outputs.push(other),
            }
        }
    }

    /// Commits the batch, then carries out its outputs and answers its requests. Carrying out
    /// can cause more (a peer cut off for not reading); that is a batch of its own.
    pub(crate) fn finish(&mut self) {
        while !self.batch.is_empty() {
            let b = std::mem::take(&mut self.batch);
            self.batches += 1;
            self.batched_inputs += b.inputs as u64;
            self.commit(&b.ops);
            self.carry_out(b.outputs);
            for (reply, r) in b.replies {
                let _ = reply.send(r);
            }
            self.collect();
        }
    }

    /// Writes the batch's operations in one transaction.
    fn commit(&mut self, ops: &[Op]) {
        if ops.is_empty() {
            return;
        }
        if let Err(e) = self.store.apply(ops) {
            // Do not lose the whole batch for one bad operation: apply what can be.
            tracing::error!(error = %e, "store batch failed; applying one by one");
            for op in ops {
                if let Err(e) = self.store.apply(std::slice::from_ref(op)) {
                    tracing::error!(error = %e, "store write failed");
                    self.events.send(api::Event::Error {
                        message: format!("storage: {e}"),
                    });
                }
            }
        }
    }

    /// Carries out the core's outputs (records are already durable), in order; bytes for one
    /// connection are joined into one write.
    fn carry_out(&mut self, outputs: Vec<Output>) {
        let mut writes: Vec<(ConnId, Vec<u8>)> = Vec::new();
        let mut loads = Vec::new();
        for o in outputs {
            match o {
                Output::Persist(_) => {} // written by `commit`
                Output::Load(req) => loads.push(req),
                Output::Connect { conn, to } => self.connect(conn, to),
                Output::Transmit { conn, data } => {
                    match writes.iter_mut().find(|(c, _)| *c == conn) {
                        Some((_, buf)) => buf.extend_from_slice(&data),
                        None => writes.push((conn, data)),
                    }
                }
                Output::Close { conn } => {
                    // What the core wrote before closing goes out first.
                    if let Some(i) = writes.iter().position(|(c, _)| *c == conn) {
                        let (c, data) = writes.swap_remove(i);
                        self.transmit(c, data);
                    }
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
        // Stored group messages a member asked for (extension torchat_sync): read them (the
        // batch is committed) and hand them back; what the core makes of them is collected
        // into the next batch.
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
    }

    fn publish(&mut self, e: Event) {
        if crate::files::Files::event(self, &e) {
            return;
        }
        if let Event::PeerInfo { id, info } = &e {
            // Keep the last known profile of buddies on our list, for display after a restart
            // (written with the next batch).
            if let Some(mut row) = persist::buddy_row(self.store.as_ref(), &self.batch.ops, id) {
                row.profile_name = info.profile_name.clone();
                row.profile_text = info.profile_text.clone();
                row.client = info.client.clone();
                row.version = info.version.clone();
                self.stage(Op::UpsertBuddy(row));
            }
            if let Some(b) = self.core.buddy(id) {
                self.events.send(api::Event::BuddyInfo {
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
        if !self.events.has_subscribers() {
            return; // nobody listens: do not build the event
        }
        if let Some(ev) = convert::event(&e, &self.me) {
            self.events.send(ev);
        }
    }

    fn connect(&mut self, conn: ConnId, to: OnionId) {
        tracing::debug!(%conn, to = %self.who(&to), "connecting");
        let fut = self.transport.connect(&to);
        let tx = self.inbox_tx.clone();
        let h = self.io.spawn(async move {
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
        let reader = self.io.spawn(async move {
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
        self.io.spawn(async move {
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

#[cfg(test)]
mod tests {
    use super::*;
    use torchat_store as st;

    fn claim(m: u8, who: &str) -> Op {
        Op::AddClaim(st::Claim {
            msg_id: st::MsgId([m; 16]),
            claimant: who.parse().unwrap(),
            received_at: 1,
        })
    }

    fn trust(m: u8, k: u32) -> Op {
        Op::UpdateTrust {
            id: st::MsgId([m; 16]),
            trust: st::Trust::Relayed { k, n: 9 },
        }
    }

    #[test]
    fn a_batch_stages_each_claim_once_and_the_last_trust_of_a_message() {
        let (a, b) = ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb");
        let mut batch = Batch::default();
        // Two echoes of message 1, each record naming every claimant so far.
        for op in [
            trust(1, 1),
            claim(1, a),
            trust(1, 2),
            claim(1, a),
            claim(1, b),
        ] {
            batch.stage(op);
        }
        batch.stage(claim(2, a));
        batch.stage(trust(2, 1));
        assert_eq!(
            batch.ops,
            [
                trust(1, 2),
                claim(1, a),
                claim(1, b),
                claim(2, a),
                trust(2, 1)
            ]
        );
    }
}
