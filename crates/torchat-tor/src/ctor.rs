//! C tor: the `tor` program, either **managed** (we launch it with its own data dir) or
//! **existing** (a running tor's control port and SOCKS port).
//!
//! In both modes the onion service is created with `ADD_ONION ED25519-V3:<expanded key>` from
//! our persistent identity seed, mapping port 11009 to our local listener. The service is
//! *not* detached: the control connection stays open for the transport's lifetime and the
//! service disappears when it closes (shutdown, drop, crash), so nothing lingers in an existing
//! tor. The service id tor returns must equal the id of our key, or the transport stops with a
//! [`TransportEvent::Problem`]. `Ready` is announced once the descriptors are uploaded to the
//! HSDirs (every `HS_DESC UPLOAD` answered by `UPLOADED`/`FAILED`, then a short quiet spell).
//!
//! A supervisor task does all of this and, when tor goes away or cannot be reached, reports a
//! `Problem` and starts over with a growing delay (2 s up to 60 s). If Tor has not bootstrapped
//! after [`CTorConfig::bootstrap_warn_after`] (30 s) it reports a `Problem` with a hint and keeps
//! waiting.

mod launch;
mod service;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use torchat_wire::OnionId;
use zeroize::Zeroizing;

pub use crate::control::ControlAuth;
use crate::direct::accept_loop;
use crate::socks::{self, SocksVersion};
use crate::{keys, BoxFuture, BoxStream, Error, Transport, TransportEvent};

/// How the C tor transport gets its tor.
#[derive(Debug, Clone)]
pub enum CTorMode {
    /// Launch `tor` ourselves.
    Managed(ManagedTor),
    /// Use a tor that is already running.
    Existing(ExistingTor),
}

/// Settings for a tor we launch.
#[derive(Debug, Clone, Default)]
pub struct ManagedTor {
    /// The torchat data dir; tor's own data dir is `<data_dir>/tor`.
    pub data_dir: PathBuf,
    /// The tor program; `None` looks for `tor` on `PATH`.
    pub tor_binary: Option<PathBuf>,
    /// Extra torrc lines, appended after ours (e.g. the output of
    /// `private-tor-net client-torrc DIR` to join a private test network).
    pub extra_torrc: Vec<String>,
    /// Bridge lines, without the leading `Bridge` (e.g. `obfs4 192.0.2.1:443 FPR cert=... iat-mode=0`).
    /// Any bridge turns on `UseBridges 1`.
    pub bridges: Vec<String>,
    /// `ClientTransportPlugin` lines, without the keyword (e.g. `obfs4 exec /usr/bin/lyrebird`).
    /// When a bridge needs a transport that no line names, a known program on `PATH` is used
    /// (`lyrebird` or `obfs4proxy` for obfs4/meek_lite/webtunnel, `snowflake-client` for snowflake).
    pub transport_plugins: Vec<String>,
}

/// Settings for a tor that is already running.
#[derive(Debug, Clone)]
pub struct ExistingTor {
    /// Its control port.
    pub control: SocketAddr,
    /// How to authenticate there.
    pub auth: ControlAuth,
    /// Its SOCKS port.
    pub socks: SocketAddr,
}

/// Configuration of the C tor transport.
#[derive(Debug, Clone)]
pub struct CTorConfig {
    /// Managed or existing tor.
    pub mode: CTorMode,
    /// Where we accept the connections the onion service forwards (default `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// When to report a `Problem` if Tor has not bootstrapped (default 30 s).
    pub bootstrap_warn_after: Duration,
    /// Time allowed for one SOCKS handshake through tor (default 90 s).
    pub socks_timeout: Duration,
}

impl CTorConfig {
    /// A managed tor under `data_dir/tor`, with defaults for everything else.
    pub fn managed(data_dir: impl Into<PathBuf>) -> Self {
        Self::with_mode(CTorMode::Managed(ManagedTor {
            data_dir: data_dir.into(),
            ..ManagedTor::default()
        }))
    }

    /// An existing tor at `control` (authenticated with `auth`) and `socks`.
    pub fn existing(control: SocketAddr, auth: ControlAuth, socks: SocketAddr) -> Self {
        Self::with_mode(CTorMode::Existing(ExistingTor {
            control,
            auth,
            socks,
        }))
    }

    fn with_mode(mode: CTorMode) -> Self {
        CTorConfig {
            mode,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            bootstrap_warn_after: Duration::from_secs(30),
            socks_timeout: socks::DEFAULT_TIMEOUT,
        }
    }
}

/// State shared by the transport handle and its supervisor.
#[derive(Debug, Default)]
struct Shared {
    /// Tor's SOCKS port while the service is up.
    socks: RwLock<Option<SocketAddr>>,
}

impl Shared {
    fn set_socks(&self, addr: Option<SocketAddr>) {
        if let Ok(mut s) = self.socks.write() {
            *s = addr;
        }
    }
    fn socks(&self) -> Option<SocketAddr> {
        self.socks.read().ok().and_then(|s| *s)
    }
}

/// The C tor transport. Dropping it (or [`CTor::shutdown`]) closes the onion service and, in
/// managed mode, stops tor.
#[derive(Debug)]
pub struct CTor {
    own: OnionId,
    shared: Arc<Shared>,
    socks_timeout: Duration,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// What the supervisor needs for one attempt.
struct Ctx {
    mode: CTorMode,
    seed: Zeroizing<[u8; 32]>,
    own: OnionId,
    /// Where the onion service forwards to.
    target: SocketAddr,
    shared: Arc<Shared>,
    events: mpsc::Sender<TransportEvent>,
    warn_after: Duration,
}

impl Ctx {
    /// Sends an event; false when the node is gone.
    async fn emit(&self, ev: TransportEvent) -> bool {
        self.events.send(ev).await.is_ok()
    }

    fn hint(&self) -> String {
        match &self.mode {
            CTorMode::Managed(_) => "If your network blocks Tor, add bridges to \
                [transport.tor] (see docs/transports.md). Check any extra torrc lines there. To \
                try torchat without Tor, run `torchat demo`."
                .into(),
            CTorMode::Existing(e) => format!(
                "Check that the tor with control port {} and SOCKS port {} is running and \
                 connected (see its log; bridges go in its torrc). To try torchat without Tor, \
                 run `torchat demo`.",
                e.control, e.socks
            ),
        }
    }
}

/// Why one attempt ended.
enum Fail {
    /// Report and try again later.
    Retry(Error),
    /// Report and stop: retrying cannot help.
    Fatal(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Retry(e)
    }
}

impl CTor {
    /// Starts the transport: binds the local listener (returned), then launches or connects to
    /// tor in the background, reporting `Progress`, `Problem` and finally `Ready` (again after
    /// every recovery) on `events`. `seed` is our identity's 32-byte ed25519 secret seed.
    ///
    /// Fails at once only for what retrying cannot fix: the listener cannot be bound, no `tor`
    /// program is found (managed), a bridge transport has no plugin, a torrc line is malformed.
    pub async fn start(
        seed: &[u8; 32],
        config: CTorConfig,
        events: mpsc::Sender<TransportEvent>,
    ) -> Result<(Self, SocketAddr), Error> {
        if let CTorMode::Managed(m) = &config.mode {
            launch::check(m)?;
        }
        let listener = TcpListener::bind(config.listen).await?;
        let bound = listener.local_addr()?;
        let target = if bound.ip().is_unspecified() {
            SocketAddr::from((Ipv4Addr::LOCALHOST, bound.port()))
        } else {
            bound
        };
        let own = keys::onion_id(seed);
        let shared = Arc::new(Shared::default());
        let (stop, stop_rx) = watch::channel(false);
        let ctx = Ctx {
            mode: config.mode,
            seed: Zeroizing::new(*seed),
            own: own.clone(),
            target,
            shared: shared.clone(),
            events: events.clone(),
            warn_after: config.bootstrap_warn_after,
        };
        tracing::debug!(id = own.short(), %bound, "C tor transport starting");
        let accept = tokio::spawn(accept_loop(listener, events));
        let supervisor = tokio::spawn(supervise(ctx, stop_rx));
        let tor = CTor {
            own,
            shared,
            socks_timeout: config.socks_timeout,
            stop,
            tasks: Mutex::new(vec![supervisor, accept]),
        };
        Ok((tor, bound))
    }

    /// Our onion id (the id of the seed).
    pub fn own_id(&self) -> &OnionId {
        &self.own
    }

    /// Tor's SOCKS address while the service is up (`None` while starting or recovering).
    pub fn socks_addr(&self) -> Option<SocketAddr> {
        self.shared.socks()
    }

    /// Closes the onion service and the listener and stops a managed tor (killed; it would also
    /// exit by itself as its owning control connection closes). Returns once the supervisor
    /// task has ended; later `connect` calls fail with [`Error::NotReady`].
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        let mut tasks = tasks.into_iter();
        if let Some(supervisor) = tasks.next() {
            let _ = supervisor.await;
        }
        for t in tasks {
            t.abort();
        }
        self.shared.set_socks(None);
    }
}

impl Drop for CTor {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Ok(tasks) = self.tasks.lock() {
            // The supervisor ends at the stop signal (killing tor); the listener goes now.
            for t in tasks.iter().skip(1) {
                t.abort();
            }
        }
    }
}

impl Transport for CTor {
    fn connect(&self, to: &OnionId) -> BoxFuture<'static, Result<BoxStream, Error>> {
        let (proxy, timeout, to) = (self.shared.socks(), self.socks_timeout, to.clone());
        Box::pin(async move {
            let proxy = proxy.ok_or(Error::NotReady)?;
            let s = socks::connect_onion(proxy, &to, SocksVersion::Socks5, timeout).await?;
            Ok(Box::new(s) as BoxStream)
        })
    }

    fn name(&self) -> &'static str {
        "tor"
    }
}

const FIRST_RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(60);

async fn supervise(ctx: Ctx, mut stop: watch::Receiver<bool>) {
    let mut delay = FIRST_RETRY;
    loop {
        let fail = tokio::select! {
            f = run_once(&ctx) => f,
            _ = stop.wait_for(|s| *s) => return,
        };
        ctx.shared.set_socks(None);
        let (error, fatal) = match fail {
            Fail::Retry(e) => (e, false),
            Fail::Fatal(e) => (e, true),
        };
        tracing::debug!(error = %error, fatal, "C tor transport: attempt ended");
        let hint = if fatal {
            "This is a bug or a broken tor; torchat will not retry. Please report it.".into()
        } else {
            ctx.hint()
        };
        let problem = TransportEvent::Problem {
            message: error.to_string(),
            hint,
        };
        let sent = tokio::select! {
            sent = ctx.emit(problem) => sent,
            _ = stop.wait_for(|s| *s) => return,
        };
        if !sent || fatal {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(MAX_RETRY);
    }
}

/// One attempt: get a control connection, then run the service until something breaks.
async fn run_once(ctx: &Ctx) -> Fail {
    match &ctx.mode {
        CTorMode::Managed(m) => {
            let mut tor = match launch::launch(m).await {
                Ok(t) => t,
                Err(e) => return Fail::Retry(e),
            };
            let fail = match tor.control().await {
                Ok((mut ctl, socks)) => service::run(ctx, &mut ctl, socks).await,
                Err(e) => Fail::Retry(e),
            };
            // If tor died, say so with its last complaint rather than "connection closed".
            match fail {
                Fail::Retry(e) => Fail::Retry(tor.explain(e).await),
                f => f,
            }
        }
        CTorMode::Existing(e) => {
            let mut ctl = match crate::control::ControlConn::connect(e.control).await {
                Ok(c) => c,
                Err(err) => {
                    return Fail::Retry(Error::Config(format!(
                        "cannot reach the tor control port {}: {err}",
                        e.control
                    )))
                }
            };
            if let Err(err) = ctl.authenticate(&e.auth).await {
                return Fail::Retry(err);
            }
            service::run(ctx, &mut ctl, e.socks).await
        }
    }
}
