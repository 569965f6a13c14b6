//! The torchat node: the async shell around the sans-IO protocol core.
//!
//! One actor task owns the [`torchat_core::Node`], the [`torchat_store::Store`] and the
//! connection table; it is the only place that reads the clock. Each connection has a reader
//! task and a writer task with a bounded queue ([`MAX_PENDING_WRITES`] writes,
//! [`MAX_PENDING_BYTES`] bytes; a peer that does not read is cut off); the line cap of the
//! codec bounds what one connection can make us hold. The actor works in batches (group
//! commit): it takes every input that is ready, up to [`MAX_BATCH_INPUTS`] inputs or
//! [`MAX_BATCH_BYTES`] bytes, writes the core records of all of them in one transaction, and
//! only then carries out the other outputs and answers the control requests of the batch, so a
//! message is on disk before it is on the wire or acknowledged. Interfaces talk to the node
//! only through the control API ([`torchat_api`]) on a Unix socket in the data directory;
//! requests on one connection are pipelined.
#![warn(missing_docs)]

mod actor;
mod control;
mod convert;
mod events;
mod files;
pub mod identity;
mod persist;

use std::path::PathBuf;
use std::sync::Arc;

use rand_core::SeedableRng;
use tokio::sync::{mpsc, watch};
use torchat_store::Store;
use torchat_tor::{Transport, TransportEvent};
use torchat_wire::{OnionId, Status};

pub use actor::{MAX_BATCH_BYTES, MAX_BATCH_INPUTS, MAX_PENDING_BYTES, MAX_PENDING_WRITES};
pub use control::SOCKET;
pub use files::{sanitize, FilesConfig};
pub use identity::Identity;

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the store, the key and the control socket live.
    pub data_dir: PathBuf,
    /// The core's configuration (own id, timeouts, limits, profile defaults).
    pub core: torchat_core::Config,
    /// Log full onion ids (debugging only; off by default).
    pub log_secrets: bool,
    /// File transfer: download directory, size limit, partial files, auto-accept.
    pub files: FilesConfig,
}

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] torchat_store::Error),
    /// The control socket could not be created.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
}

/// A running node.
#[derive(Debug)]
pub struct NodeHandle {
    /// Path of the control socket.
    pub control_path: PathBuf,
    /// Our onion id.
    pub id: OnionId,
    shutdown: watch::Sender<bool>,
    actor: tokio::task::JoinHandle<()>,
    server: tokio::task::JoinHandle<()>,
}

impl NodeHandle {
    /// Stops the node and waits for it.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }

    /// Waits until the node stops (a `shutdown` command, or [`NodeHandle::shutdown`]).
    pub async fn wait(self) {
        let _ = self.actor.await;
        self.server.abort();
        let _ = std::fs::remove_file(&self.control_path);
    }
}

/// Drops group messages older than the retention period (at start).
fn prune_group_history(store: &mut dyn Store, retention: Option<std::time::Duration>) {
    let Some(keep) = retention else { return };
    let now = actor::now().as_millis();
    let before = now.saturating_sub(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX));
    match store.apply(&[torchat_store::Op::PruneGroupHistory { before }]) {
        Ok(n) => tracing::info!(pruned = n.first().copied().unwrap_or(0), "group history"),
        Err(e) => tracing::error!(error = %e, "pruning group history failed"),
    }
}

/// Restores state from `store`, starts the actor and the control server.
pub async fn start(
    mut cfg: NodeConfig,
    store: Box<dyn Store>,
    transport: Arc<dyn Transport>,
    transport_rx: mpsc::Receiver<TransportEvent>,
) -> Result<NodeHandle, NodeError> {
    use torchat_store::keys;
    if let Some(v) = store.get_setting(keys::PROFILE_NAME)? {
        cfg.core.profile_name = v;
    }
    if let Some(v) = store.get_setting(keys::PROFILE_TEXT)? {
        cfg.core.profile_text = v;
    }
    if let Some(v) = store.get_setting(keys::STATUS)? {
        cfg.core.status = match &v[..] {
            b"away" => Status::Away,
            b"xa" => Status::Xa,
            _ => Status::Available,
        };
    }
    let id = cfg.core.own_id.clone();
    let mut store = store;
    prune_group_history(store.as_mut(), cfg.core.group_history_retention);
    let rng = rand_chacha::ChaCha20Rng::from_rng(rand_core::OsRng)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    cfg.core.files.max_size = cfg.files.max_size;
    let mut core = torchat_core::Node::new(cfg.core, Box::new(rng));
    persist::restore(store.as_ref(), &mut core)?;
    let mut store = store;
    let files = files::Files::restore(cfg.files.clone(), store.as_mut(), &mut core)?;
    let events = events::Hub::default();
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let (control_path, server) = control::serve(&cfg.data_dir, cmd_tx, events.clone()).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    // The actor blocks in SQLite commits (an fsync each), so it gets a thread of its own with a
    // small runtime for its timers and channels; connection tasks run on the caller's runtime.
    // (Its allocations also stay in one malloc arena instead of wandering between workers.)
    let io = tokio::runtime::Handle::current();
    let a = actor::Actor::new(core, store, transport, events, cfg.log_secrets, files, io);
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("torchat-actor".into())
        .spawn(move || {
            local.block_on(a.run(transport_rx, cmd_rx, shutdown_rx));
            let _ = done_tx.send(());
        })?;
    let actor = tokio::spawn(async move {
        let _ = done_rx.await;
    });
    tracing::info!(control = %control_path.display(), "node started");
    Ok(NodeHandle {
        control_path,
        id,
        shutdown,
        actor,
        server,
    })
}
