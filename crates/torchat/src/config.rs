//! The configuration file (TOML) and where things live by default (XDG directories).
//!
//! ```toml
//! [profile]
//! name = "alice"
//! text = "on a boat"
//!
//! [transport]
//! kind = "direct"            # "arti" (default, embedded Tor), "tor", "tor-existing", "manual", "direct"
//!
//! [transport.direct]
//! listen = "127.0.0.1:11009"
//! id = "aliceaaaaaaaaaaa"    # optional legacy id; default: the id of our key
//! blocked = []               # ids we pretend we cannot reach
//! [transport.direct.peers]
//! "bobbbbbbbbbbbbbb" = "127.0.0.1:11010"
//!
//! [protocol]
//! group_history_days = 30    # group history kept and served for catch-up (0: for ever)
//!
//! [log]
//! level = "info"
//! secrets = false            # never log full ids unless this is true
//!
//! [files]
//! download_dir = "/home/alice/Downloads"   # default: $XDG_DOWNLOAD_DIR, ~/Downloads, or <data dir>/downloads
//! max_size_mb = 16384        # bigger offers are refused
//! keep_partial = false       # keep name.part of a failed or cancelled receive
//! auto_accept = []           # ids whose files are accepted without asking (off by default)
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data directory (default: `$XDG_DATA_HOME/torchat`).
    pub data_dir: Option<PathBuf>,
    /// Our profile.
    #[serde(default)]
    pub profile: Profile,
    /// How to reach the network.
    #[serde(default)]
    pub transport: TransportConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Protocol tuning.
    #[serde(default)]
    pub protocol: ProtocolConfig,
    /// File transfer.
    #[serde(default)]
    pub files: FilesSection,
}

/// `[files]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSection {
    /// Where received files go.
    pub download_dir: Option<PathBuf>,
    /// Offers bigger than this many MiB are refused (default 16384).
    pub max_size_mb: Option<u64>,
    /// Keep the partial file of a failed or cancelled receive.
    #[serde(default)]
    pub keep_partial: bool,
    /// Ids whose offers are accepted without asking.
    #[serde(default)]
    pub auto_accept: Vec<String>,
}

impl Config {
    /// The node's file settings, with defaults filled in.
    pub fn files_config(&self, data_dir: &Path) -> Result<torchat_node::FilesConfig, String> {
        let f = &self.files;
        let dir = f
            .download_dir
            .clone()
            .unwrap_or_else(|| default_download_dir(data_dir));
        let mut c = torchat_node::FilesConfig::new(dir);
        if let Some(mb) = f.max_size_mb {
            c.max_size = mb.saturating_mul(1 << 20);
        }
        c.keep_partial = f.keep_partial;
        for id in &f.auto_accept {
            c.auto_accept.push(
                id.parse()
                    .map_err(|e| format!("files.auto_accept {id}: {e}"))?,
            );
        }
        Ok(c)
    }
}

/// `$XDG_DOWNLOAD_DIR`, else `~/Downloads` if it exists, else `<data dir>/downloads`.
pub fn default_download_dir(data_dir: &Path) -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DOWNLOAD_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = home().join("Downloads");
    if std::env::var_os("HOME").is_some() && home.is_dir() {
        return home;
    }
    data_dir.join("downloads")
}

/// `[profile]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Display name sent to buddies.
    pub name: Option<String>,
    /// Profile text.
    pub text: Option<String>,
}

/// `[transport]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportConfig {
    /// Which transport.
    #[serde(default)]
    pub kind: TransportKind,
    /// `[transport.direct]`
    #[serde(default)]
    pub direct: DirectConfig,
    /// `[transport.tor]`
    #[serde(default)]
    pub tor: TorSection,
    /// `[transport.tor-existing]`
    #[serde(default, rename = "tor-existing")]
    pub tor_existing: Option<TorExistingSection>,
    /// `[transport.manual]`
    #[serde(default)]
    pub manual: Option<ManualSection>,
    /// `[transport.arti]` (see docs/arti.md)
    #[serde(default)]
    pub arti: Option<toml::Value>,
}

/// `[transport.tor]`: C tor launched by torchat.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorSection {
    /// The tor program (default: `tor` on PATH).
    pub tor_binary: Option<PathBuf>,
    /// Where the onion service forwards port 11009 (default 127.0.0.1, any free port).
    pub listen: Option<SocketAddr>,
    /// Report a problem when not bootstrapped after this many seconds (default 30).
    pub bootstrap_problem_secs: Option<u64>,
    /// Extra torrc lines (e.g. from `private-tor-net client-torrc`).
    #[serde(default)]
    pub extra_torrc: Vec<String>,
    /// Bridge lines (without the word `Bridge`).
    #[serde(default)]
    pub bridges: Vec<String>,
    /// `ClientTransportPlugin` lines (without the keyword).
    #[serde(default)]
    pub transport_plugins: Vec<String>,
}

/// `[transport.tor-existing]`: a running tor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorExistingSection {
    /// Control port address.
    pub control: SocketAddr,
    /// SOCKS port address.
    pub socks: SocketAddr,
    /// Cookie file for cookie authentication.
    pub cookie_file: Option<PathBuf>,
    /// Password for password authentication.
    pub password: Option<String>,
    /// Where the onion service forwards port 11009.
    pub listen: Option<SocketAddr>,
    /// Report a problem when not bootstrapped after this many seconds (default 30).
    pub bootstrap_problem_secs: Option<u64>,
}

/// `[transport.manual]`: a SOCKS proxy, your own onion service and its id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManualSection {
    /// Your onion id (56 or 16 characters).
    pub id: String,
    /// Where your onion service forwards port 11009.
    pub listen: SocketAddr,
    /// The SOCKS proxy.
    pub socks: SocketAddr,
    /// `socks5` (default) or `socks4a`.
    #[serde(default)]
    pub socks_version: Option<String>,
}

/// The transports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    /// Embedded Tor (Arti).
    #[default]
    Arti,
    /// C tor launched and managed by torchat.
    Tor,
    /// A running C tor (control + SOCKS).
    TorExisting,
    /// A SOCKS proxy, a listen address and an id given by the user.
    Manual,
    /// Plain TCP with an id → address map (no anonymity: LANs, tests, demo).
    Direct,
}

/// `[transport.direct]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectConfig {
    /// Where we listen.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A legacy 16-character id to use instead of our key's v3 id.
    pub id: Option<String>,
    /// Id → address.
    #[serde(default)]
    pub peers: BTreeMap<String, SocketAddr>,
    /// Ids we do not connect to (a cut link).
    #[serde(default)]
    pub blocked: Vec<String>,
}

impl Default for DirectConfig {
    fn default() -> Self {
        DirectConfig {
            listen: default_listen(),
            id: None,
            peers: BTreeMap::new(),
            blocked: vec![],
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 11009))
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace` (or an env-filter directive).
    #[serde(default = "default_level")]
    pub level: String,
    /// Log full onion ids (debugging only).
    #[serde(default)]
    pub secrets: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_level(),
            secrets: false,
        }
    }
}

fn default_level() -> String {
    "info".into()
}

/// `[protocol]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolConfig {
    /// Redundancy settle window in seconds (default 10).
    pub settle_window_secs: Option<u64>,
    /// How long group packets wait for an unreachable member, in hours (default 24).
    pub relay_lifetime_hours: Option<u64>,
    /// The same in seconds (tests); takes precedence over `relay_lifetime_hours`.
    pub relay_lifetime_secs: Option<u64>,
    /// Group history kept, and served to members catching up, in days (default 30; 0: for
    /// ever). Older group messages are deleted when the daemon starts.
    pub group_history_days: Option<u64>,
    /// Announce and speak our extension `torchat_sync` (default true). Off, the node talks to
    /// other torchat nodes as a seed-only member would (for comparisons and interop tests).
    pub sync: Option<bool>,
}

/// The default data directory: `$XDG_DATA_HOME/torchat` or `~/.local/share/torchat`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("torchat");
    }
    home().join(".local/share/torchat")
}

/// The default config file: `$XDG_CONFIG_HOME/torchat/config.toml` or `~/.config/...`.
pub fn default_config_file() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("torchat/config.toml");
    }
    home().join(".config/torchat/config.toml")
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Reads a config file; a missing default file is an empty config.
pub fn load(path: Option<&Path>) -> Result<Config, String> {
    let (path, explicit) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (default_config_file(), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(s) => toml::from_str(&s).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| {
                l.trim_start_matches("//!")
                    .strip_prefix(' ')
                    .unwrap_or("")
                    .to_owned()
                    + "\n"
            })
            .collect();
        let c: Config = toml::from_str(&example).unwrap();
        assert_eq!(c.transport.kind, TransportKind::Direct);
        assert_eq!(c.transport.direct.peers.len(), 1);
        assert_eq!(c.profile.name.as_deref(), Some("alice"));
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
    }
}
