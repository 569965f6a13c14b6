//! The embedded Tor transport: [Arti](https://arti.torproject.org) runs inside the torchat
//! process, so there is nothing to install. It is torchat's default transport.
//!
//! [`Arti::start`] creates an Arti client (not yet bootstrapped), forwards Arti's bootstrap
//! progress as [`TransportEvent::Progress`], bootstraps (retrying forever, and reporting a
//! [`TransportEvent::Problem`] with advice if it has not finished after 30 s), then hosts our
//! v3 onion service from our own persistent ed25519 identity on the TorChat port 11009. Every
//! accepted stream goes to the node as [`TransportEvent::Incoming`].
//!
//! [`TransportEvent::Ready`] is sent once our service is *proven* reachable: we connect to it
//! ourselves, through the Tor network (descriptor fetched from the HSDirs, introduction,
//! rendezvous), on a probe port that the service answers by closing the stream. Arti's own
//! service status flaps while the service works, so it is not used. The same probe runs again
//! every `reachability_check_secs`; a service that stays unreachable for a minute is reported
//! as a problem, and `Ready` is sent again when it recovers.
//!
//! [`Transport::connect`] dials `<id>.onion:11009`, retrying for up to `connect_retry_secs`
//! (2 min) while the peer's descriptor cannot be found or its introduction fails: right after
//! an onion-service time-period change, an Arti-hosted peer can be unreachable for tens of
//! seconds (see `docs/arti.md`).
#![warn(missing_docs)]

mod config;
mod stream;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arti_client::config::onion_service::OnionServiceConfigBuilder;
use arti_client::{ErrorKind, HasKind, IsolationToken, StreamPrefs, TorClient};
use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tor_cell::relaycell::msg::{Connected, End, EndReason};
use tor_hscrypto::pk::{HsId, HsIdKey, HsIdKeypair};
use tor_hsservice::{
    HsNickname, OnionServiceConfig, RendRequest, RunningOnionService, StreamRequest,
};
use tor_proto::stream::IncomingStreamRequest;
use tor_rtcompat::PreferredRuntime;
use torchat_tor::{BoxFuture, BoxStream, Error, Transport, TransportEvent, TORCHAT_PORT};
use torchat_wire::OnionId;

pub use config::{ArtiConfig, TestAuthority, TestFallback, TestNetwork};

/// The virtual port of our service that answers our own reachability probes (by closing the
/// stream, as it answers every port but 11009).
const PROBE_PORT: u16 = 11010;
/// How long one reachability probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long our service may stay unreachable before we report it.
const UNREACHABLE_PROBLEM_AFTER: Duration = Duration::from_secs(90);
/// Streams one rendezvous circuit may open at once (TorChat uses one); more closes the circuit.
const MAX_STREAMS_PER_CIRCUIT: u32 = 4;
/// Introductions per second our introduction points let through (C tor's default for its
/// intro DoS defence), and the burst.
const INTRO_RATE: u32 = 25;
const INTRO_BURST: u32 = 200;

type Client = TorClient<PreferredRuntime>;
/// The rendezvous requests of our service.
type RendRequests = std::pin::Pin<Box<dyn futures::Stream<Item = RendRequest> + Send>>;

/// The embedded Tor transport. Cheap to clone; the client and our onion service stop when the
/// last clone is dropped.
#[derive(Clone)]
pub struct Arti {
    inner: Arc<Inner>,
}

struct Inner {
    client: Arc<Client>,
    own: OnionId,
    connect_retry: Duration,
    bootstrapped: watch::Receiver<bool>,
    supervisor: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Aborting the supervisor drops its JoinSet (aborting the accept loop, progress
        // forwarding and probes) and our RunningOnionService (shutting the service down).
        self.supervisor.abort();
    }
}

impl std::fmt::Debug for Arti {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arti")
            .field("id", &self.inner.own.short())
            .field("bootstrapped", &*self.inner.bootstrapped.borrow())
            .finish()
    }
}

/// What Arti's keystore holds for our service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyState {
    /// No key yet: we insert ours.
    Absent,
    /// Our key.
    Ours,
    /// Somebody else's key: we refuse to go on.
    Foreign,
}

/// Looks into Arti's keystore (without starting a client).
fn key_state(
    tor_cfg: &arti_client::config::TorClientConfig,
    svc_cfg: &OnionServiceConfig,
    hsid: &HsId,
) -> Result<KeyState, Error> {
    let existing = Client::create_onion_service(tor_cfg, svc_cfg.clone())
        .map_err(|e| arti_error("cannot open Arti's keystore", &e))?
        .onion_address();
    Ok(match existing {
        None => KeyState::Absent,
        Some(found) if found == *hsid => KeyState::Ours,
        Some(_) => KeyState::Foreign,
    })
}

/// Our service key as Arti wants it.
fn hs_keypair(signing: &ed25519_dalek::SigningKey) -> HsIdKeypair {
    HsIdKeypair::from(tor_llcrypto::pk::ed25519::ExpandedKeypair::from(
        &tor_llcrypto::pk::ed25519::Keypair::from_bytes(&signing.to_bytes()),
    ))
}

impl Arti {
    /// Starts the embedded Tor client and, in the background, bootstraps it, launches our
    /// onion service (identity from the 32-byte ed25519 secret `seed`) and hands incoming
    /// connections to `events`. Returns as soon as the client exists; watch `events` for
    /// progress, problems and [`TransportEvent::Ready`].
    ///
    /// `data_dir` is torchat's data directory: Arti's state and cache go under it unless
    /// `cfg` says otherwise. Must be called inside a Tokio runtime.
    ///
    /// Fails if the configuration is invalid, the directories cannot be used, another
    /// process uses the same state directory, or Arti's keystore holds a different key for
    /// our service than `seed` (one identity, one onion address).
    pub async fn start(
        cfg: ArtiConfig,
        data_dir: &Path,
        seed: [u8; 32],
        events: mpsc::Sender<TransportEvent>,
    ) -> Result<Arti, Error> {
        install_crypto_provider();

        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let own = OnionId::from_ed25519_public_key(&signing.verifying_key().to_bytes());
        let hsid = HsIdKey::from(&hs_keypair(&signing)).id();
        check_same_identity(&own, &hsid)?;

        let tor_cfg = cfg.to_tor_client_config(data_dir)?;
        let svc_cfg = service_config(&own)?;

        // Does Arti's keystore already hold a key for our service, and is it ours?
        if key_state(&tor_cfg, &svc_cfg, &hsid)? == KeyState::Foreign {
            let msg = foreign_key_message(&cfg.state_dir_in(data_dir), &svc_cfg, &own);
            tracing::error!("{msg}");
            return Err(Error::Config(msg));
        }

        let runtime = PreferredRuntime::current()
            .map_err(|e| Error::Config(format!("no async runtime for Arti: {e}")))?;
        let client = TorClient::with_runtime(runtime)
            .config(tor_cfg.clone())
            .create_unbootstrapped_async()
            .await
            .map_err(|e| arti_error("cannot start Arti", &e))?;

        let (ready_tx, bootstrapped) = watch::channel(false);
        let sup = Supervisor {
            client: Arc::clone(&client),
            own: own.clone(),
            signing,
            hsid,
            tor_cfg,
            state_dir: cfg.state_dir_in(data_dir),
            svc_cfgs: [svc_cfg, service_config_slot(&own, 1)?],
            events,
            bootstrapped: ready_tx,
            bootstrap_problem_after: cfg.bootstrap_problem_after(),
            reachability_check: cfg.reachability_check(),
            republish: cfg.republish,
        };
        let supervisor = tokio::spawn(sup.run()).abort_handle();
        tracing::info!(id = own.short(), "Arti started");
        Ok(Arti {
            inner: Arc::new(Inner {
                client,
                own,
                connect_retry: cfg.connect_retry(),
                bootstrapped,
                supervisor,
            }),
        })
    }

    /// Our onion id.
    pub fn id(&self) -> &OnionId {
        &self.inner.own
    }

    /// True once Arti has bootstrapped (outgoing connections can be tried).
    pub fn is_bootstrapped(&self) -> bool {
        *self.inner.bootstrapped.borrow()
    }
}

impl Transport for Arti {
    fn connect(&self, to: &OnionId) -> BoxFuture<'static, Result<BoxStream, Error>> {
        let inner = Arc::clone(&self.inner);
        let to = to.clone();
        Box::pin(async move { inner.dial(&to).await })
    }

    fn name(&self) -> &'static str {
        "arti"
    }
}

impl Inner {
    async fn dial(&self, to: &OnionId) -> Result<BoxStream, Error> {
        if !to.is_v3() {
            // Legacy v2 onion services no longer exist on the Tor network.
            return Err(Error::NoRoute);
        }
        let started = Instant::now();
        let deadline = started + self.connect_retry;
        let mut ready = self.bootstrapped.clone();
        match tokio::time::timeout_at(deadline, ready.wait_for(|b| *b)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(Error::Proxy("the Tor client has stopped".into())),
            Err(_) => {
                return Err(Error::Proxy(
                    "Tor is not connected to the network yet".into(),
                ))
            }
        }
        let host = format!("{}.onion", to.as_str());
        let mut delay = Duration::from_secs(1);
        let mut attempt = 1u32;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = tokio::time::timeout(
                left.max(Duration::from_secs(1)),
                self.client.connect((host.as_str(), TORCHAT_PORT)),
            )
            .await;
            let err = match result {
                Ok(Ok(ds)) => {
                    tracing::debug!(
                        peer = to.short(),
                        attempt,
                        ms = started.elapsed().as_millis() as u64,
                        "onion connection open"
                    );
                    return Ok(stream::wrap(ds));
                }
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(Error::TimedOut(format!(
                        "no connection to {}… within {} s",
                        to.short(),
                        self.connect_retry.as_secs()
                    )))
                }
            };
            let kind = err.kind();
            let retry = retryable(kind) && Instant::now() + delay < deadline;
            tracing::debug!(
                peer = to.short(),
                attempt,
                ?kind,
                retry,
                "onion connect failed"
            );
            if !retry {
                let msg = format!(
                    "cannot reach {}… over Tor ({kind}) after {attempt} attempt(s)",
                    to.short()
                );
                return Err(match kind {
                    ErrorKind::RemoteConnectionRefused => Error::Refused(msg),
                    ErrorKind::TorNetworkTimeout | ErrorKind::RemoteNetworkTimeout => {
                        Error::TimedOut(msg)
                    }
                    k if retryable(k) => Error::Unreachable(msg),
                    _ => Error::Proxy(msg),
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(8));
            attempt += 1;
        }
    }
}

/// Failures worth another try: the descriptor is not (yet, or no longer) on the HSDirs, the
/// introduction or rendezvous failed, or the network is slow.
fn retryable(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::OnionServiceNotFound
            | ErrorKind::OnionServiceNotRunning
            | ErrorKind::OnionServiceConnectionFailed
            | ErrorKind::TorNetworkTimeout
            | ErrorKind::TorAccessFailed
            | ErrorKind::CircuitCollapse
            | ErrorKind::TorDirectoryError
            | ErrorKind::BootstrapRequired
            | ErrorKind::RemoteNetworkTimeout
            | ErrorKind::LocalNetworkError
    )
}

/// The background work of one [`Arti`]: bootstrap, launch the service, accept, probe.
struct Supervisor {
    client: Arc<Client>,
    own: OnionId,
    /// Our identity key (zeroed on drop).
    signing: ed25519_dalek::SigningKey,
    hsid: HsId,
    tor_cfg: arti_client::config::TorClientConfig,
    state_dir: std::path::PathBuf,
    /// Our service's configuration in its two keystore slots: instances alternate between
    /// them, so that a new one can be up before the old one goes (see [`Supervisor::run`]).
    svc_cfgs: [OnionServiceConfig; 2],
    events: mpsc::Sender<TransportEvent>,
    bootstrapped: watch::Sender<bool>,
    bootstrap_problem_after: Duration,
    reachability_check: Option<Duration>,
    republish: bool,
}

/// One launched instance of our onion service, with the task accepting its streams.
struct Instance {
    /// Held to keep the instance running (dropping it stops it).
    _service: Arc<RunningOnionService>,
    accept: tokio::task::JoinHandle<()>,
    /// Probe streams that reached this instance.
    hits: watch::Receiver<u64>,
    /// Which keystore slot (service nickname) it runs under.
    slot: usize,
    launched: std::time::SystemTime,
    /// The onion-service time periods our consensus knew when it was launched: a fresh
    /// instance uploads its descriptor for each of them.
    covered: Vec<tor_hscrypto::time::TimePeriod>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Supervisor {
    /// Bootstraps, launches our service, then keeps it reachable:
    ///
    /// - probes it periodically (`Ready` when it answers, a problem when it stays silent);
    /// - republishes it for every next onion-service time period, as soon as the consensus
    ///   knows that period (the second half of the current one). tor-hsservice 0.47 uploads
    ///   the descriptor for the *next* period only when it launches (its upload loop stops at
    ///   the first period that is up to date), so without this an Arti-hosted service is
    ///   unreachable for tens of seconds after each boundary. A fresh instance uploads every
    ///   period it knows; it is launched under the other keystore slot (same key, same
    ///   address) while the old one still runs, and the old one goes once a probe reached the
    ///   new one;
    /// - right after each boundary, once our consensus is in the new period, probes again
    ///   and republishes at once if the probe fails.
    async fn run(self) {
        let mut tasks = JoinSet::new();
        tasks.spawn(forward_progress(
            self.client.bootstrap_events(),
            self.events.clone(),
        ));
        self.bootstrap().await;
        let _ = self.bootstrapped.send(true);
        send_progress(&self.events, 100, "connected to the Tor network".into());

        let Some(mut current) = self.launch(0).await else {
            // Reported already; without our service there is nothing more to do. Outgoing
            // connections still work.
            return;
        };
        let mut health = Health::new();
        let mut next_probe = Instant::now();
        let mut checked_period: Option<std::time::SystemTime> = None;
        loop {
            let plan = self.period_plan(&current, checked_period);
            let handover_at = plan.handover.unwrap_or_else(far_future);
            let recheck_at = plan.recheck.unwrap_or_else(far_future);
            // Look at the time period again at its end, and at least every 30 s (a new
            // consensus may move us into the next one).
            let replan_at = plan
                .period_end
                .map(instant_at)
                .unwrap_or_else(far_future)
                .min(Instant::now() + REPLAN_EVERY);
            tokio::select! {
                () = tokio::time::sleep_until(replan_at) => {}
                () = tokio::time::sleep_until(next_probe) => {
                    let ok = self.probe(&mut current.hits).await;
                    next_probe = self.after_probe(&mut health, ok).await;
                }
                () = tokio::time::sleep_until(handover_at) => {
                    tracing::info!(id = self.own.short(), "republishing our onion service for the next time period");
                    current = self.handover(current).await;
                }
                () = tokio::time::sleep_until(recheck_at) => {
                    // Our consensus is in a new time period: are we reachable in it?
                    checked_period = plan.period_start;
                    let mut ok = self.probe(&mut current.hits).await;
                    if ok.is_err() {
                        ok = self.probe(&mut current.hits).await;
                    }
                    if let Err(why) = &ok {
                        tracing::warn!(id = self.own.short(), %why, "our onion service is not reachable in the new time period; republishing");
                        current = self.handover(current).await;
                        ok = self.probe(&mut current.hits).await;
                    }
                    next_probe = self.after_probe(&mut health, ok).await;
                }
            }
        }
    }

    /// The onion-service time periods our current consensus knows (the current one, and the
    /// previous or the next one once its shared random value is known).
    fn known_periods(&self) -> Vec<tor_hscrypto::time::TimePeriod> {
        self.client
            .dirmgr()
            .ok()
            .and_then(|d| d.timely_netdir().ok())
            .map(|nd| {
                nd.hs_all_time_periods()
                    .iter()
                    .map(tor_netdir::HsDirParams::time_period)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When to republish, and when to check reachability in a new time period, from the time
    /// periods of our current consensus.
    fn period_plan(
        &self,
        current: &Instance,
        checked: Option<std::time::SystemTime>,
    ) -> PeriodPlan {
        let Some(nd) = self
            .client
            .dirmgr()
            .ok()
            .and_then(|d| d.timely_netdir().ok())
            .filter(|_| self.republish)
        else {
            return PeriodPlan::default();
        };
        let period = nd.hs_time_period();
        let Ok(range) = period.range() else {
            return PeriodPlan::default();
        };
        // As soon as the consensus knows the next period (its shared random value is out:
        // the second half of the current one), an instance that was launched before must be
        // replaced by one that uploads for it too.
        let next_known = period.next().is_some_and(|next| {
            nd.hs_all_time_periods()
                .iter()
                .any(|p| p.time_period() == next)
                && !current.covered.contains(&next)
        });
        let handover = next_known.then_some(std::time::SystemTime::now());
        // Check reachability once per period, as soon as our consensus is in it.
        let recheck = (checked != Some(range.start) && current.launched < range.start)
            .then_some(std::time::SystemTime::now());
        PeriodPlan {
            handover: handover.map(instant_at),
            recheck: recheck.map(instant_at),
            period_start: Some(range.start),
            period_end: Some(range.end),
        }
    }

    /// Launches a new instance under the other slot, waits until a probe reaches it (so the
    /// HSDirs serve its descriptor), then stops the old one. If the new one never answers, it
    /// is kept anyway: the old one's descriptor is the stale one.
    async fn handover(&self, old: Instance) -> Instance {
        let Some(mut new) = self.launch(1 - old.slot).await else {
            return old;
        };
        let deadline = Instant::now() + HANDOVER_WAIT;
        let mut wait = Duration::from_secs(1);
        loop {
            match self.probe(&mut new.hits).await {
                Ok(()) => {
                    tracing::info!(
                        id = self.own.short(),
                        slot = new.slot,
                        "new onion service instance reachable; stopping the old one"
                    );
                    break;
                }
                Err(why) if Instant::now() >= deadline => {
                    tracing::warn!(id = self.own.short(), %why, "new onion service instance not reachable in time; stopping the old one anyway");
                    break;
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(8));
                }
            }
        }
        drop(old);
        new
    }

    /// Bookkeeping after a probe; returns when to probe next.
    async fn after_probe(&self, health: &mut Health, result: Result<(), String>) -> Instant {
        match result {
            Ok(()) => {
                tracing::info!(
                    id = self.own.short(),
                    since_launch_ms = health.started.elapsed().as_millis() as u64,
                    "our onion service is reachable"
                );
                if !health.announced || health.problem_sent {
                    let _ = self
                        .events
                        .send(TransportEvent::Ready {
                            id: self.own.clone(),
                        })
                        .await;
                }
                health.announced = true;
                health.problem_sent = false;
                health.unreachable_since = None;
                health.retry = Duration::from_secs(2);
                match self.reachability_check {
                    Some(every) => Instant::now() + every,
                    None => far_future(),
                }
            }
            Err(why) => {
                let since = *health.unreachable_since.get_or_insert_with(Instant::now);
                tracing::debug!(id = self.own.short(), %why, "our onion service is not reachable yet");
                if !health.problem_sent && since.elapsed() >= UNREACHABLE_PROBLEM_AFTER {
                    health.problem_sent = true;
                    let message = if health.announced {
                        "Our onion service has stopped being reachable: peers cannot connect to \
                         us right now."
                    } else {
                        "Our onion service is not reachable yet: peers cannot connect to us."
                    };
                    self.problem(
                        format!("{message} ({why})"),
                        "torchat keeps trying and republishing; this usually recovers within a \
                         few minutes. Outgoing connections still work. If it persists, check \
                         the network connection or restart torchat."
                            .into(),
                    )
                    .await;
                }
                let next = Instant::now() + health.retry;
                health.retry = (health.retry * 2).min(Duration::from_secs(30));
                next
            }
        }
    }

    /// Bootstraps, forever if need be; reports a problem once it takes too long.
    async fn bootstrap(&self) {
        let started = Instant::now();
        let problem_timer = tokio::time::sleep(self.bootstrap_problem_after);
        tokio::pin!(problem_timer);
        let mut problem_sent = false;
        let mut backoff = Duration::from_secs(1);
        loop {
            let attempt = self.client.bootstrap();
            tokio::pin!(attempt);
            let result = loop {
                tokio::select! {
                    r = &mut attempt => break r,
                    () = &mut problem_timer, if !problem_sent => {
                        problem_sent = true;
                        let status = self.client.bootstrap_status();
                        self.problem(
                            format!(
                                "Tor could not connect to the network in {} s (Arti: {status}).",
                                self.bootstrap_problem_after.as_secs()
                            ),
                            BOOTSTRAP_HINT.into(),
                        )
                        .await;
                    }
                }
            };
            match result {
                Ok(()) => {
                    tracing::info!(
                        ms = started.elapsed().as_millis() as u64,
                        "Arti bootstrapped"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Arti bootstrap attempt failed; retrying");
                    if problem_sent || started.elapsed() >= self.bootstrap_problem_after {
                        problem_sent = true;
                        self.problem(
                            format!("Tor could not connect to the network: {e}."),
                            BOOTSTRAP_HINT.into(),
                        )
                        .await;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// Launches our onion service from our key under keystore slot `slot` and checks its
    /// address; retries transient failures. `None` after reporting a failure that retrying
    /// cannot fix.
    async fn launch(&self, slot: usize) -> Option<Instance> {
        let svc_cfg = &self.svc_cfgs[slot];
        let mut backoff = Duration::from_secs(1);
        loop {
            // Checked on every attempt: `launch_onion_service` would create a random key if
            // none were there.
            let result = match key_state(&self.tor_cfg, svc_cfg, &self.hsid) {
                Ok(KeyState::Absent) => self
                    .client
                    .launch_onion_service_with_hsid(svc_cfg.clone(), hs_keypair(&self.signing))
                    .map(|o| o.map(|(svc, reqs)| (svc, Box::pin(reqs) as RendRequests)))
                    .map_err(|e| e.to_string()),
                Ok(KeyState::Ours) => self
                    .client
                    .launch_onion_service(svc_cfg.clone())
                    .map(|o| o.map(|(svc, reqs)| (svc, Box::pin(reqs) as RendRequests)))
                    .map_err(|e| e.to_string()),
                Ok(KeyState::Foreign) => {
                    let msg = foreign_key_message(&self.state_dir, svc_cfg, &self.own);
                    tracing::error!("{msg}");
                    self.problem(msg, "torchat will not publish another address.".into())
                        .await;
                    return None;
                }
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(Some((service, requests))) => {
                    let got = service.onion_address();
                    let ours = got.as_ref().is_some_and(|h| same_id(&self.own, h));
                    if !ours {
                        let msg = format!(
                            "Arti launched our onion service under another address than \
                             torchat's identity {}…; refusing to use it.",
                            self.own.short()
                        );
                        tracing::error!("{msg}");
                        self.problem(msg, "Report this as a bug.".into()).await;
                        return None;
                    }
                    tracing::info!(id = self.own.short(), slot, "onion service launched");
                    let (hits_tx, hits) = watch::channel(0u64);
                    let accept = tokio::spawn(accept_loop(requests, self.events.clone(), hits_tx));
                    return Some(Instance {
                        _service: service,
                        accept,
                        hits,
                        slot,
                        launched: std::time::SystemTime::now(),
                        covered: self.known_periods(),
                    });
                }
                Ok(None) => {
                    tracing::error!("Arti says our onion service is disabled");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot launch our onion service; retrying");
                    self.problem(
                        format!("Tor could not start our onion service: {e}."),
                        "torchat keeps trying. If this persists, check that the data \
                         directory is writable and not used by another torchat."
                            .into(),
                    )
                    .await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
    }

    /// One end-to-end check: connect to our own service (fresh circuits, so a fresh
    /// descriptor fetch) on the probe port and see the request arrive at the instance whose
    /// `hits` these are.
    async fn probe(&self, hits: &mut watch::Receiver<u64>) -> Result<(), String> {
        hits.borrow_and_update();
        let mut prefs = StreamPrefs::new();
        prefs.set_isolation(IsolationToken::new());
        let host = format!("{}.onion", self.own.as_str());
        let result = tokio::time::timeout(
            PROBE_TIMEOUT,
            self.client
                .connect_with_prefs((host.as_str(), PROBE_PORT), &prefs),
        )
        .await;
        // The service closes probe streams, so the connect normally fails after the request
        // has reached us; give the accept loop a moment in case of reordering.
        let arrived = hits.has_changed().unwrap_or(false)
            || tokio::time::timeout(Duration::from_secs(2), hits.changed())
                .await
                .is_ok_and(|r| r.is_ok());
        if arrived {
            return Ok(());
        }
        Err(match result {
            Ok(Ok(_)) => "probe stream opened but never reached us".into(),
            Ok(Err(e)) => e.kind().to_string(),
            Err(_) => format!("no answer in {} s", PROBE_TIMEOUT.as_secs()),
        })
    }

    async fn problem(&self, message: String, hint: String) {
        tracing::warn!(%message, "transport problem");
        let _ = self
            .events
            .send(TransportEvent::Problem { message, hint })
            .await;
    }
}

/// How often the supervisor looks at the time period of the current consensus.
const REPLAN_EVERY: Duration = Duration::from_secs(15);

/// How long a new instance may take to be reachable before the old one goes anyway.
const HANDOVER_WAIT: Duration = Duration::from_secs(120);

/// Reachability bookkeeping of [`Supervisor::run`].
struct Health {
    started: Instant,
    announced: bool,
    problem_sent: bool,
    unreachable_since: Option<Instant>,
    retry: Duration,
}

impl Health {
    fn new() -> Self {
        Health {
            started: Instant::now(),
            announced: false,
            problem_sent: false,
            unreachable_since: Some(Instant::now()),
            retry: Duration::from_secs(2),
        }
    }
}

/// What the current time period asks of [`Supervisor::run`].
#[derive(Debug, Default)]
struct PeriodPlan {
    /// Republish (a new instance) at this time.
    handover: Option<Instant>,
    /// Probe at this time: our consensus entered a period we have not checked yet.
    recheck: Option<Instant>,
    /// Start of the current period.
    period_start: Option<std::time::SystemTime>,
    /// End of the current period.
    period_end: Option<std::time::SystemTime>,
}

/// The tokio instant of a wall-clock time (now if it is past).
fn instant_at(t: std::time::SystemTime) -> Instant {
    let wait = t
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Instant::now() + wait
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 86_400)
}

const BOOTSTRAP_HINT: &str = "torchat keeps trying. Check the internet connection. If Tor is \
    blocked where you are, add bridges (bridge lines, and `pt_binary` for obfs4) under \
    [transport.arti] in the config file, or use the C tor transport with a Tor you already \
    run. `torchat demo` works without Tor.";

/// Forwards Arti's bootstrap status as progress events, without flooding.
async fn forward_progress(
    mut statuses: arti_client::status::BootstrapEvents,
    events: mpsc::Sender<TransportEvent>,
) {
    let mut last: Option<(u8, bool)> = None;
    let mut last_sent = Instant::now();
    while let Some(status) = statuses.next().await {
        let percent = (status.as_frac().clamp(0.0, 1.0) * 100.0).round() as u8;
        let blocked = status.blocked().is_some();
        let changed = last != Some((percent, blocked));
        if changed || last_sent.elapsed() >= Duration::from_secs(5) {
            if changed {
                tracing::debug!(percent, %status, "Arti bootstrap");
            }
            last = Some((percent, blocked));
            last_sent = Instant::now();
            send_progress(&events, percent, status.to_string());
        }
        if events.is_closed() {
            return;
        }
    }
}

/// Progress is advisory: drop it rather than wait when the node is busy.
fn send_progress(events: &mpsc::Sender<TransportEvent>, percent: u8, summary: String) {
    let _ = events.try_send(TransportEvent::Progress { percent, summary });
}

/// Accepts BEGINs to the TorChat port and hands them to the node; closes every other request
/// (counting those to the probe port).
async fn accept_loop(
    rend_requests: RendRequests,
    events: mpsc::Sender<TransportEvent>,
    probe_hits: watch::Sender<u64>,
) {
    let requests = tor_hsservice::handle_rend_requests(rend_requests);
    tokio::pin!(requests);
    while let Some(req) = requests.next().await {
        let port = match req.request() {
            IncomingStreamRequest::Begin(begin) => Some(begin.port()),
            _ => None,
        };
        if port != Some(TORCHAT_PORT) {
            if port == Some(PROBE_PORT) {
                probe_hits.send_modify(|n| *n += 1);
            }
            reject(req).await;
            continue;
        }
        match req.accept(Connected::new_empty()).await {
            Ok(ds) => {
                tracing::debug!("incoming onion connection");
                if events
                    .send(TransportEvent::Incoming(stream::wrap(ds)))
                    .await
                    .is_err()
                {
                    return; // the node is gone
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not accept an onion stream"),
        }
    }
    tracing::warn!("our onion service stopped delivering connections");
}

async fn reject(req: StreamRequest) {
    let _ = req.reject(End::new_with_reason(EndReason::DONE)).await;
}

fn service_config(own: &OnionId) -> Result<OnionServiceConfig, Error> {
    service_config_slot(own, 0)
}

/// Our service's configuration in keystore slot 0 or 1 (the same key under two nicknames).
fn service_config_slot(own: &OnionId, slot: usize) -> Result<OnionServiceConfig, Error> {
    // One keystore slot per identity: a changed identity never meets an old key.
    let name = match slot {
        0 => format!("torchat-{}", own.short()),
        _ => format!("torchat-{}-b", own.short()),
    };
    let nickname =
        HsNickname::new(name).map_err(|e| Error::Config(format!("onion service nickname: {e}")))?;
    OnionServiceConfigBuilder::default()
        .nickname(nickname)
        .max_concurrent_streams_per_circuit(MAX_STREAMS_PER_CIRCUIT)
        // Ask our introduction points to rate-limit introductions (the DoS defence C tor calls
        // HiddenServiceEnableIntroDoSDefense, with its default figures): a flood of
        // introductions is cut at the introduction point, before it costs us rendezvous
        // circuits. Proof-of-work for services is experimental in Arti 0.47 (docs/transports.md).
        .rate_limit_at_intro(Some(tor_hsservice::config::TokenBucketConfig::new(
            INTRO_RATE,
            INTRO_BURST,
        )))
        .build()
        .map_err(|e| Error::Config(format!("onion service configuration: {e}")))
}

fn foreign_key_message(state_dir: &Path, svc_cfg: &OnionServiceConfig, own: &OnionId) -> String {
    format!(
        "Arti's keystore under {} holds a different key for the onion service `{}` than \
         torchat's identity {}…; refusing to publish another address. Move that keystore away \
         if the identity was changed on purpose.",
        state_dir.display(),
        svc_cfg.nickname(),
        own.short()
    )
}

/// Checks that Arti's view of our key gives the onion id torchat derives from it.
fn check_same_identity(own: &OnionId, hsid: &HsId) -> Result<(), Error> {
    if same_id(own, hsid) {
        return Ok(());
    }
    let msg = format!(
        "Arti derives a different onion address from torchat's identity key {}…; refusing to \
         continue",
        own.short()
    );
    tracing::error!("{msg}");
    Err(Error::Config(msg))
}

fn same_id(own: &OnionId, hsid: &HsId) -> bool {
    use safelog::DisplayRedacted as _;
    let text = hsid.display_unredacted().to_string();
    let text = text.strip_suffix(".onion").unwrap_or(&text);
    OnionId::parse(text).is_ok_and(|parsed| &parsed == own)
        && own.ed25519_public_key() == Some(hsid.as_ref())
}

fn arti_error(what: &str, e: &arti_client::Error) -> Error {
    let kind = e.kind();
    let msg = format!("{what}: {e}");
    match kind {
        ErrorKind::LocalResourceAlreadyInUse => Error::Config(format!(
            "{msg} (is another torchat running with the same data directory?)"
        )),
        ErrorKind::FsPermissions => Error::Config(format!(
            "{msg} (Arti refuses directories that other users can write to)"
        )),
        _ => Error::Config(msg),
    }
}

/// Arti's rustls needs a process-wide crypto provider; install ring's unless the program
/// already chose one.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn arti_and_torchat_agree_on_the_onion_id() {
        for seed in [[0u8; 32], [7u8; 32], *b"torchat-arti-identity-check-seed"] {
            let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
            let own = OnionId::from_ed25519_public_key(&signing.verifying_key().to_bytes());
            let keypair = HsIdKeypair::from(tor_llcrypto::pk::ed25519::ExpandedKeypair::from(
                &tor_llcrypto::pk::ed25519::Keypair::from_bytes(&seed),
            ));
            let hsid = HsIdKey::from(&keypair).id();
            check_same_identity(&own, &hsid).unwrap();
            let other = OnionId::from_ed25519_public_key(
                &ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
                    .verifying_key()
                    .to_bytes(),
            );
            assert!(check_same_identity(&other, &hsid).is_err());
        }
    }

    #[test]
    fn service_nickname_is_valid() {
        let own = OnionId::from_ed25519_public_key(
            &ed25519_dalek::SigningKey::from_bytes(&[1u8; 32])
                .verifying_key()
                .to_bytes(),
        );
        let cfg = service_config(&own).unwrap();
        assert_eq!(
            cfg.nickname().to_string(),
            format!("torchat-{}", own.short())
        );
    }

    /// A test network that does not exist (its one relay is the discard port of localhost).
    fn nowhere() -> ArtiConfig {
        ArtiConfig {
            test_network: Some(TestNetwork {
                authorities: vec![TestAuthority {
                    v3ident: "0123456789ABCDEF0123456789ABCDEF01234567".into(),
                    dir_addr: "127.0.0.1:9".parse().unwrap(),
                }],
                fallbacks: vec![TestFallback {
                    rsa_id: "0123456789ABCDEF0123456789ABCDEF01234567".into(),
                    ed25519_id: "m5VXG3PAFcHGwLRoOu1j2/dU5/xXiRv1R4JDKNb5Nlg".into(),
                    addr: "127.0.0.1:9".parse().unwrap(),
                }],
                ..TestNetwork::default()
            }),
            ..ArtiConfig::default()
        }
    }

    #[tokio::test]
    async fn start_rejects_a_foreign_key_in_the_keystore() {
        let data = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel(16);
        // Nothing is contacted before bootstrap.
        let cfg = nowhere();
        let seed = [3u8; 32];
        let own = OnionId::from_ed25519_public_key(
            &ed25519_dalek::SigningKey::from_bytes(&seed)
                .verifying_key()
                .to_bytes(),
        );

        // Another key under our service's nickname: refused.
        plant_key(&cfg, data.path(), &own, [4u8; 32]).await;
        let err = Arti::start(cfg.clone(), data.path(), seed, tx.clone())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("different key"), "{err}");

        // Our own key (as a previous run leaves it): accepted.
        let data2 = tempfile::tempdir().unwrap();
        plant_key(&cfg, data2.path(), &own, seed).await;
        let arti = Arti::start(cfg.clone(), data2.path(), seed, tx.clone())
            .await
            .unwrap();
        assert_eq!(arti.id(), &own);
        assert_eq!(arti.name(), "arti");
        assert!(!arti.is_bootstrapped());
        drop(arti);
    }

    #[tokio::test]
    async fn a_stuck_bootstrap_is_reported_and_connects_give_up() {
        let data = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let cfg = ArtiConfig {
            bootstrap_problem_secs: 1,
            connect_retry_secs: 1,
            ..nowhere()
        };
        let arti = Arti::start(cfg, data.path(), [5u8; 32], tx).await.unwrap();
        let t0 = Instant::now();
        let problem = loop {
            match tokio::time::timeout(Duration::from_secs(20), rx.recv())
                .await
                .unwrap()
                .unwrap()
            {
                TransportEvent::Problem { message, hint } => break (message, hint),
                TransportEvent::Progress { percent, .. } => assert!(percent < 100),
                other => panic!("unexpected {other:?}"),
            }
        };
        eprintln!("{problem:?}");
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert!(
            problem
                .0
                .starts_with("Tor could not connect to the network"),
            "{problem:?}"
        );
        assert!(problem.1.contains("bridges") && problem.1.contains("torchat demo"));
        let peer = OnionId::from_ed25519_public_key(&[0x55; 32]);
        let err = arti.connect(&peer).await.err().unwrap();
        assert!(err.to_string().contains("not connected"), "{err}");
        assert!(!arti.is_bootstrapped());
    }

    /// Puts the key of `key_seed` into Arti's keystore under `own`'s service nickname, without
    /// touching the network.
    async fn plant_key(cfg: &ArtiConfig, data_dir: &Path, own: &OnionId, key_seed: [u8; 32]) {
        install_crypto_provider();
        let tor_cfg = cfg.to_tor_client_config(data_dir).unwrap();
        let client = TorClient::with_runtime(PreferredRuntime::current().unwrap())
            .config(tor_cfg)
            .bootstrap_behavior(arti_client::BootstrapBehavior::Manual)
            .create_unbootstrapped_async()
            .await
            .unwrap();
        let key = HsIdKeypair::from(tor_llcrypto::pk::ed25519::ExpandedKeypair::from(
            &tor_llcrypto::pk::ed25519::Keypair::from_bytes(&key_seed),
        ));
        // The key is stored first; the launch then fails for want of a bootstrap.
        let _ = client.launch_onion_service_with_hsid(service_config(own).unwrap(), key);
        drop(client);
    }
}
