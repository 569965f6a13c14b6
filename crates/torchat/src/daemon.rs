//! `torchat daemon`: the node with the transport chosen by configuration.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::mpsc;
use torchat_node::{Identity, NodeConfig, NodeHandle};
use torchat_tor::control::ControlAuth;
use torchat_tor::ctor::{CTor, CTorConfig, CTorMode};
use torchat_tor::manual::Manual;
use torchat_tor::socks::SocksVersion;
use torchat_tor::{direct::Direct, Transport, TransportEvent};
use torchat_wire::OnionId;

use crate::config::{Config, TransportKind};

/// Events from a transport waiting for the node.
const TRANSPORT_EVENTS: usize = 256;

/// A started node and, for the direct transport, a handle to cut links (demo, tests).
pub struct Started {
    /// The node.
    pub node: NodeHandle,
    /// The direct transport, when in use.
    pub direct: Option<Direct>,
}

/// Opens the data directory (mode 0700), the key and the store, starts the transport and the
/// node.
pub async fn start(cfg: &Config, data_dir: &Path) -> Result<Started, String> {
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700));
    }
    if std::os::unix::net::UnixStream::connect(data_dir.join(torchat_node::SOCKET)).is_ok() {
        return Err(format!(
            "a torchat node is already running with {} (use `torchat ui`, or another --data-dir)",
            data_dir.display()
        ));
    }
    let identity = Identity::load_or_create(data_dir).map_err(|e| format!("identity key: {e}"))?;
    let store = torchat_store::SqliteStore::open(data_dir.join("torchat.sqlite3"))
        .map_err(|e| format!("store: {e}"))?;
    let (tx, rx) = mpsc::channel::<TransportEvent>(TRANSPORT_EVENTS);
    let (own_id, transport, direct): (OnionId, Arc<dyn Transport>, Option<Direct>) =
        match cfg.transport.kind {
            TransportKind::Direct => {
                let d = &cfg.transport.direct;
                let own = match &d.id {
                    Some(s) => s
                        .parse::<OnionId>()
                        .map_err(|e| format!("transport.direct.id: {e}"))?,
                    None => identity.id().clone(),
                };
                let mut routes = BTreeMap::new();
                for (id, addr) in &d.peers {
                    let id = id
                        .parse::<OnionId>()
                        .map_err(|e| format!("transport.direct.peers {id}: {e}"))?;
                    routes.insert(id, *addr);
                }
                let (direct, bound) = Direct::start(own.clone(), d.listen, routes, tx)
                    .await
                    .map_err(|e| format!("listen {}: {e}", d.listen))?;
                for b in &d.blocked {
                    let id = b
                        .parse::<OnionId>()
                        .map_err(|e| format!("transport.direct.blocked {b}: {e}"))?;
                    direct.set_cut(&id, true);
                }
                tracing::info!(listen = %bound, "direct transport (no Tor, no anonymity)");
                (own, Arc::new(direct.clone()), Some(direct))
            }
            TransportKind::Tor | TransportKind::TorExisting => {
                let mut c = if cfg.transport.kind == TransportKind::Tor {
                    let t = &cfg.transport.tor;
                    let mut c = CTorConfig::managed(data_dir);
                    if let CTorMode::Managed(m) = &mut c.mode {
                        m.tor_binary = t.tor_binary.clone();
                        m.extra_torrc = t.extra_torrc.clone();
                        m.bridges = t.bridges.clone();
                        m.transport_plugins = t.transport_plugins.clone();
                    }
                    if let Some(l) = t.listen {
                        c.listen = l;
                    }
                    if let Some(s) = t.bootstrap_problem_secs {
                        c.bootstrap_warn_after = std::time::Duration::from_secs(s);
                    }
                    c
                } else {
                    let t = cfg.transport.tor_existing.as_ref().ok_or(
                        "kind = \"tor-existing\" needs a [transport.tor-existing] section",
                    )?;
                    let auth = match (&t.cookie_file, &t.password) {
                        (Some(f), _) => ControlAuth::CookieFile(f.clone()),
                        (None, Some(p)) => ControlAuth::Password(p.clone().into()),
                        (None, None) => ControlAuth::Auto,
                    };
                    let mut c = CTorConfig::existing(t.control, auth, t.socks);
                    if let Some(l) = t.listen {
                        c.listen = l;
                    }
                    if let Some(s) = t.bootstrap_problem_secs {
                        c.bootstrap_warn_after = std::time::Duration::from_secs(s);
                    }
                    c
                };
                c.socks_timeout = torchat_tor::socks::DEFAULT_TIMEOUT;
                let (ctor, _) = CTor::start(identity.seed(), c, tx)
                    .await
                    .map_err(|e| format!("tor: {e}"))?;
                (identity.id().clone(), Arc::new(ctor), None)
            }
            TransportKind::Manual => {
                let m = cfg
                    .transport
                    .manual
                    .as_ref()
                    .ok_or("kind = \"manual\" needs a [transport.manual] section")?;
                let own =
                    m.id.parse::<OnionId>()
                        .map_err(|e| format!("transport.manual.id: {e}"))?;
                let version = match m.socks_version.as_deref() {
                    None | Some("socks5") => SocksVersion::Socks5,
                    Some("socks4a") => SocksVersion::Socks4a,
                    Some(v) => {
                        return Err(format!(
                            "transport.manual.socks_version {v:?}: use socks5 or socks4a"
                        ))
                    }
                };
                let (manual, _) = Manual::start(own.clone(), m.listen, m.socks, version, tx)
                    .await
                    .map_err(|e| format!("manual transport: {e}"))?;
                (own, Arc::new(manual), None)
            }
            TransportKind::Arti => {
                let arti_cfg = arti_config(cfg.transport.arti.as_ref())?;
                let arti = torchat_arti::Arti::start(arti_cfg, data_dir, *identity.seed(), tx)
                    .await
                    .map_err(|e| format!("embedded Tor: {e}"))?;
                (identity.id().clone(), Arc::new(arti), None)
            }
        };
    // Group messages are signed with the onion key when our id is that key's id (not with a
    // legacy id given to the manual or direct transport).
    let signing_key = (own_id == *identity.id()).then(|| *identity.seed());
    let mut core = torchat_core::Config::new(own_id);
    core.signing_key = signing_key;
    if let Some(n) = &cfg.profile.name {
        core.profile_name = n.clone().into_bytes();
    }
    if let Some(t) = &cfg.profile.text {
        core.profile_text = t.clone().into_bytes();
    }
    if let Some(s) = cfg.protocol.settle_window_secs {
        core.settle_window = std::time::Duration::from_secs(s);
    }
    if let Some(h) = cfg.protocol.relay_lifetime_hours {
        core.relay_lifetime = std::time::Duration::from_secs(h * 3600);
    }
    if let Some(s) = cfg.protocol.relay_lifetime_secs {
        core.relay_lifetime = std::time::Duration::from_secs(s);
    }
    if let Some(on) = cfg.protocol.sync {
        core.sync = on;
    }
    if let Some(d) = cfg.protocol.group_history_days {
        core.group_history_retention =
            (d > 0).then(|| std::time::Duration::from_secs(d.saturating_mul(24 * 3600)));
    }
    let nc = NodeConfig {
        data_dir: data_dir.to_path_buf(),
        core,
        log_secrets: cfg.log.secrets,
        files: cfg.files_config(data_dir)?,
    };
    let node = torchat_node::start(nc, Box::new(store), transport, rx)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Started { node, direct })
}

/// `[transport.arti]`: Arti's own settings, or `private_tor_net = "DIR"` to join a private test
/// network started with `private-tor-net start DIR` (its `network.json` and node fingerprints
/// are read from there).
fn arti_config(section: Option<&toml::Value>) -> Result<torchat_arti::ArtiConfig, String> {
    let Some(section) = section else {
        return Ok(torchat_arti::ArtiConfig::default());
    };
    let mut table = section
        .as_table()
        .cloned()
        .ok_or("[transport.arti] must be a table")?;
    if let Some(dir) = table.remove("private_tor_net") {
        let dir = dir
            .as_str()
            .ok_or("transport.arti.private_tor_net must be a path")?;
        let mut c = torchat_arti::ArtiConfig::from_private_tor_net(std::path::Path::new(dir))
            .map_err(|e| format!("transport.arti.private_tor_net: {e}"))?;
        if let Some(v) = table
            .remove("bootstrap_problem_secs")
            .and_then(|v| v.as_integer())
        {
            c.bootstrap_problem_secs = u64::try_from(v).unwrap_or(30);
        }
        if !table.is_empty() {
            return Err("with private_tor_net, [transport.arti] takes no other settings".into());
        }
        return Ok(c);
    }
    toml::Value::Table(table)
        .try_into()
        .map_err(|e| format!("[transport.arti]: {e}"))
}
