//! Configuration of the embedded Tor transport: `[transport.arti]` in torchat's config file.
//!
//! The defaults reach the public Tor network. Bridges (optionally through a pluggable
//! transport binary such as obfs4proxy or lyrebird) help where Tor is blocked. The
//! [`TestNetwork`] section points Arti at a private Tor network (its own directory
//! authorities and relays), which is how the tests run and how people can try torchat without
//! the internet; [`ArtiConfig::from_private_tor_net`] fills it from a running
//! `private-tor-net`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arti_client::config::dir::FallbackDirBuilder;
use arti_client::config::pt::TransportConfigBuilder;
use arti_client::config::{
    BridgeConfigBuilder, CfgPath, TorClientConfig, TorClientConfigBuilder, TransportId,
};
use serde::Deserialize;
use tor_llcrypto::pk::ed25519::Ed25519Identity;
use tor_llcrypto::pk::rsa::RsaIdentity;
use torchat_tor::Error;

/// Configuration of the embedded Tor transport. Every field has a default; an empty
/// `[transport.arti]` section means "the public Tor network, state under the data dir".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArtiConfig {
    /// Arti's persistent state: guards, and our onion service's keys and state (the service's
    /// identity key is written to Arti's keystore here — keep this directory private).
    /// A relative path is taken under the torchat data dir. Default `arti/state`.
    pub state_dir: Option<PathBuf>,
    /// Arti's directory cache (consensus, microdescriptors); can be deleted at any time.
    /// A relative path is taken under the torchat data dir. Default `arti/cache`.
    pub cache_dir: Option<PathBuf>,
    /// Bridge lines, as Tor Browser and torrc write them, with or without the leading
    /// `Bridge`: `obfs4 192.0.2.3:443 <FINGERPRINT> cert=… iat-mode=0`, or `192.0.2.3:443
    /// <FINGERPRINT>` for a plain bridge. When any are given, Arti uses only these bridges to
    /// enter the Tor network.
    pub bridges: Vec<String>,
    /// The pluggable-transport client binary (obfs4proxy, lyrebird, …) that handles the
    /// transports named in `bridges` (`obfs4`, `snowflake`, …). Needed only for bridge lines
    /// that name a transport.
    pub pt_binary: Option<PathBuf>,
    /// Extra command-line arguments for `pt_binary`.
    pub pt_arguments: Vec<String>,
    /// Seconds after which a bootstrap that has not reached 100 % is reported as a problem
    /// (Arti keeps trying). Default 30.
    pub bootstrap_problem_secs: u64,
    /// How long one outgoing connection keeps retrying while the peer's onion service
    /// descriptor cannot be found or its introduction fails, in seconds. Default 120.
    pub connect_retry_secs: u64,
    /// How often, once ready, we check that our own onion service is still reachable by
    /// connecting to it, in seconds; `0` turns the periodic check off. Default 600.
    pub reachability_check_secs: u64,
    /// Republish our onion service ahead of each onion-service time-period boundary (and
    /// right after one if a probe shows it is unreachable), working around tor-hsservice
    /// 0.47, which does not upload the next period's descriptor in advance. Default `true`;
    /// off only to measure the defect.
    pub republish: bool,
    /// A private Tor network instead of the public one. Absent by default.
    pub test_network: Option<TestNetwork>,
}

impl Default for ArtiConfig {
    fn default() -> Self {
        ArtiConfig {
            state_dir: None,
            cache_dir: None,
            bridges: Vec::new(),
            pt_binary: None,
            pt_arguments: Vec::new(),
            bootstrap_problem_secs: 30,
            connect_retry_secs: 120,
            reachability_check_secs: 600,
            republish: true,
            test_network: None,
        }
    }
}

/// A private Tor network: its directory authorities and the relays to bootstrap from, and the
/// relaxations a network on one host needs. Supported for tests and demonstrations; it gives
/// no anonymity.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestNetwork {
    /// The directory authorities whose signatures make a consensus valid.
    pub authorities: Vec<TestAuthority>,
    /// Relays Arti contacts first to download the directory (Arti never bootstraps from the
    /// authorities' dir ports, only from these). List every authority and relay.
    pub fallbacks: Vec<TestFallback>,
    /// Allow connections to local addresses (127.0.0.0/8, private ranges) through exits.
    /// Default `true`.
    pub allow_local_addrs: bool,
    /// Relays whose IPv4 addresses share this many leading bits count as one family and are
    /// never used together in a circuit. Default 33, which turns the rule off (every relay of
    /// a one-host network is on 127.0.0.1). The public network uses 16.
    pub ipv4_subnet_family_prefix: u8,
    /// The IPv6 counterpart of `ipv4_subnet_family_prefix`. Default 129 (off).
    pub ipv6_subnet_family_prefix: u8,
    /// The onion-service time period in minutes (the `hsdir_interval` consensus parameter).
    /// C tor in `TestingTorNetwork` mode uses 24 voting intervals whatever the consensus says;
    /// this must match it or onion lookups fail after a period change. Arti accepts 5 or
    /// more, so the network's voting interval must be at least 15 s (24 × 15 s = 6 min).
    pub hsdir_interval: Option<u32>,
    /// Disable circuit-build-timeout learning (`cbtdisabled=1`). On loopback circuits build in
    /// milliseconds, the learned timeout becomes tiny and builds "time out" under load.
    /// Default `true`.
    pub cbtdisabled: bool,
    /// Further consensus parameters to override, by name.
    pub net_params: BTreeMap<String, i32>,
}

impl Default for TestNetwork {
    fn default() -> Self {
        TestNetwork {
            authorities: Vec::new(),
            fallbacks: Vec::new(),
            allow_local_addrs: true,
            ipv4_subnet_family_prefix: 33,
            ipv6_subnet_family_prefix: 129,
            hsdir_interval: None,
            cbtdisabled: true,
            net_params: BTreeMap::new(),
        }
    }
}

/// A directory authority of a [`TestNetwork`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestAuthority {
    /// The authority's v3 identity: 40 hex digits (the `fingerprint` line of its
    /// `authority_certificate`, the `v3ident=` of a `DirAuthority` line).
    pub v3ident: String,
    /// The authority's directory port, e.g. `127.0.0.1:5001`.
    pub dir_addr: SocketAddr,
}

/// A relay to bootstrap from, in a [`TestNetwork`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFallback {
    /// The relay's RSA identity fingerprint, 40 hex digits (spaces allowed).
    pub rsa_id: String,
    /// The relay's ed25519 identity, base64 (the `fingerprint-ed25519` file of its data dir).
    pub ed25519_id: String,
    /// The relay's OR port address, e.g. `127.0.0.1:5000`.
    pub addr: SocketAddr,
}

impl ArtiConfig {
    /// A configuration for the private Tor network whose `private-tor-net start DIR` wrote
    /// `DIR/network.json`: its authorities (`v3ident`, `dir_port`), every authority and
    /// relay as a fallback (RSA identity from `<data_dir>/fingerprint`, ed25519 identity from
    /// `<data_dir>/fingerprint-ed25519`, `127.0.0.1:<or_port>`), and `hsdir_interval` from
    /// its `voting_interval`. Directories and the other fields keep their defaults.
    pub fn from_private_tor_net(dir: &Path) -> Result<ArtiConfig, Error> {
        let path = dir.join("network.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let net: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let cfg_err = |what: &str| Error::Config(format!("{}: {what}", path.display()));
        let host = |node: &serde_json::Value| -> String {
            node.get("address")
                .and_then(|v| v.as_str())
                .unwrap_or("127.0.0.1")
                .to_string()
        };
        let port = |node: &serde_json::Value, key: &str| -> Result<u16, Error> {
            node.get(key)
                .and_then(|v| v.as_u64())
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| cfg_err(&format!("a node has no valid {key}")))
        };
        let addr = |node: &serde_json::Value, key: &str| -> Result<SocketAddr, Error> {
            let a = format!("{}:{}", host(node), port(node, key)?);
            a.parse().map_err(|_| cfg_err(&format!("bad address {a}")))
        };
        let list = |key: &str| -> Vec<serde_json::Value> {
            net.get(key)
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default()
        };
        let authorities_json = list("authorities");
        if authorities_json.is_empty() {
            return Err(cfg_err("no authorities"));
        }

        let mut authorities = Vec::new();
        for a in &authorities_json {
            let v3ident = a
                .get("v3ident")
                .and_then(|v| v.as_str())
                .ok_or_else(|| cfg_err("an authority has no v3ident"))?;
            authorities.push(TestAuthority {
                v3ident: v3ident.to_string(),
                dir_addr: addr(a, "dir_port")?,
            });
        }

        let mut fallbacks = Vec::new();
        for node in authorities_json.iter().chain(list("relays").iter()) {
            let data_dir = node
                .get("data_dir")
                .and_then(|v| v.as_str())
                .map(PathBuf::from)
                .ok_or_else(|| cfg_err("a node has no data_dir"))?;
            let rsa_id = match read_id_file(&data_dir.join("fingerprint")) {
                Ok(id) => id,
                // Authorities also record it in network.json.
                Err(e) => node
                    .get("fingerprint")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .ok_or(e)?,
            };
            let ed25519_id = read_id_file(&data_dir.join("fingerprint-ed25519"))?;
            fallbacks.push(TestFallback {
                rsa_id,
                ed25519_id,
                addr: addr(node, "or_port")?,
            });
        }

        let voting_interval = net
            .get("voting_interval")
            .and_then(|v| v.as_u64())
            .unwrap_or(20);
        let hsdir_interval = hsdir_interval_for(voting_interval)?;

        Ok(ArtiConfig {
            // A private network on loopback: check our own reachability more often.
            reachability_check_secs: 120,
            test_network: Some(TestNetwork {
                authorities,
                fallbacks,
                hsdir_interval: Some(hsdir_interval),
                ..TestNetwork::default()
            }),
            ..ArtiConfig::default()
        })
    }

    /// Arti's state directory for this configuration and torchat data dir.
    pub fn state_dir_in(&self, data_dir: &Path) -> PathBuf {
        resolve(data_dir, self.state_dir.as_deref(), "arti/state")
    }

    /// Arti's cache directory for this configuration and torchat data dir.
    pub fn cache_dir_in(&self, data_dir: &Path) -> PathBuf {
        resolve(data_dir, self.cache_dir.as_deref(), "arti/cache")
    }

    pub(crate) fn bootstrap_problem_after(&self) -> Duration {
        Duration::from_secs(self.bootstrap_problem_secs.max(1))
    }

    pub(crate) fn connect_retry(&self) -> Duration {
        Duration::from_secs(self.connect_retry_secs)
    }

    pub(crate) fn reachability_check(&self) -> Option<Duration> {
        (self.reachability_check_secs > 0)
            .then(|| Duration::from_secs(self.reachability_check_secs))
    }

    /// Arti's own configuration for this one.
    pub(crate) fn to_tor_client_config(&self, data_dir: &Path) -> Result<TorClientConfig, Error> {
        let mut b = TorClientConfigBuilder::from_directories(
            self.state_dir_in(data_dir),
            self.cache_dir_in(data_dir),
        );

        let mut transports_needed = std::collections::BTreeSet::new();
        for line in &self.bridges {
            let line = line.trim();
            let line = line.strip_prefix("Bridge ").unwrap_or(line).trim();
            if line.is_empty() {
                continue;
            }
            let bridge: BridgeConfigBuilder = line
                .parse()
                .map_err(|e| Error::Config(format!("bridge line `{line}`: {e}")))?;
            if let Some(t) = bridge.get_transport() {
                let id: TransportId = t
                    .parse()
                    .map_err(|e| Error::Config(format!("bridge line `{line}`: {e}")))?;
                if !id.is_builtin() {
                    transports_needed.insert(t.to_string());
                }
            }
            b.bridges().bridges().push(bridge);
        }
        if !transports_needed.is_empty() {
            let Some(binary) = &self.pt_binary else {
                return Err(Error::Config(format!(
                    "the bridge lines use the pluggable transport(s) {}; set `pt_binary` to the \
                     client binary that provides them (obfs4proxy, lyrebird, …)",
                    transports_needed.into_iter().collect::<Vec<_>>().join(", ")
                )));
            };
            let mut protocols = Vec::new();
            for t in &transports_needed {
                protocols.push(
                    t.parse()
                        .map_err(|e| Error::Config(format!("transport name `{t}`: {e}")))?,
                );
            }
            let mut pt = TransportConfigBuilder::default();
            pt.protocols(protocols)
                .path(CfgPath::new_literal(binary.clone()))
                .arguments(self.pt_arguments.clone())
                .run_on_startup(false);
            b.bridges().transports().push(pt);
        }

        if let Some(net) = &self.test_network {
            apply_test_network(&mut b, net)?;
        }

        b.build()
            .map_err(|e| Error::Config(format!("Arti configuration: {e}")))
    }
}

fn apply_test_network(b: &mut TorClientConfigBuilder, net: &TestNetwork) -> Result<(), Error> {
    if net.authorities.is_empty() {
        return Err(Error::Config("test_network: no authorities".into()));
    }
    if net.fallbacks.is_empty() {
        return Err(Error::Config("test_network: no fallbacks".into()));
    }
    let mut idents = Vec::new();
    let mut dir_addrs = Vec::new();
    for a in &net.authorities {
        idents.push(rsa_identity(&a.v3ident)?);
        dir_addrs.push(vec![a.dir_addr]);
    }
    {
        let auth = b.tor_network().authorities();
        auth.set_v3idents(idents);
        auth.set_uploads(dir_addrs.clone());
        auth.set_downloads(dir_addrs.clone());
        auth.set_votes(dir_addrs);
    }
    let mut fallbacks = Vec::new();
    for f in &net.fallbacks {
        let ed = Ed25519Identity::from_base64(f.ed25519_id.trim()).ok_or_else(|| {
            Error::Config(format!(
                "test_network: bad ed25519 id `{}` (want base64 of 32 bytes)",
                f.ed25519_id
            ))
        })?;
        let mut fb = FallbackDirBuilder::default();
        fb.rsa_identity(rsa_identity(&f.rsa_id)?).ed_identity(ed);
        fb.orports().push(f.addr);
        fallbacks.push(fb);
    }
    b.tor_network().set_fallback_caches(fallbacks);
    b.address_filter().allow_local_addrs(net.allow_local_addrs);
    b.path_rules()
        .ipv4_subnet_family_prefix(net.ipv4_subnet_family_prefix)
        .ipv6_subnet_family_prefix(net.ipv6_subnet_family_prefix);
    let params = b.override_net_params();
    if let Some(minutes) = net.hsdir_interval {
        let minutes = i32::try_from(minutes)
            .map_err(|_| Error::Config("test_network: hsdir_interval too large".into()))?;
        params.insert("hsdir_interval".into(), minutes);
    }
    if net.cbtdisabled {
        params.insert("cbtdisabled".into(), 1);
    }
    for (k, v) in &net.net_params {
        params.insert(k.clone(), *v);
    }
    Ok(())
}

/// The onion-service time period of a C tor `TestingTorNetwork` with this voting interval
/// (24 voting intervals), in whole minutes as Arti wants it.
pub(crate) fn hsdir_interval_for(voting_interval_secs: u64) -> Result<u32, Error> {
    let secs = voting_interval_secs.saturating_mul(24);
    if secs < 300 || !secs.is_multiple_of(60) {
        return Err(Error::Config(format!(
            "a voting interval of {voting_interval_secs} s gives an onion-service time period of \
             {secs} s; Arti needs whole minutes and at least 5 (use a voting interval of 15, 20, \
             25, 30 … s)"
        )));
    }
    u32::try_from(secs / 60).map_err(|_| Error::Config("voting interval too large".into()))
}

fn rsa_identity(hex: &str) -> Result<RsaIdentity, Error> {
    let clean: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
    RsaIdentity::from_hex(&clean)
        .ok_or_else(|| Error::Config(format!("bad RSA identity `{hex}` (want 40 hex digits)")))
}

/// Reads a tor `fingerprint` / `fingerprint-ed25519` file: `<nickname> <id>`.
fn read_id_file(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or_default().trim();
    match line.split_once(char::is_whitespace) {
        Some((_nick, id)) if !id.trim().is_empty() => {
            Ok(id.chars().filter(|c| !c.is_whitespace()).collect())
        }
        _ => Err(Error::Config(format!(
            "{}: expected `<nickname> <id>`",
            path.display()
        ))),
    }
}

fn resolve(data_dir: &Path, configured: Option<&Path>, default: &str) -> PathBuf {
    match configured {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => data_dir.join(p),
        None => data_dir.join(default),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ED: &str = "m5VXG3PAFcHGwLRoOu1j2/dU5/xXiRv1R4JDKNb5Nlg";

    fn fake_net(dir: &Path, voting_interval: u64) {
        let mut nodes = Vec::new();
        for (i, (nick, role)) in [
            ("auth0", "authority"),
            ("auth1", "authority"),
            ("relay0", "relay"),
        ]
        .iter()
        .enumerate()
        {
            let dd = dir.join("nodes").join(nick);
            std::fs::create_dir_all(&dd).unwrap();
            let fp = format!("{:040X}", i + 1);
            // Authorities' files may be missing: network.json has their fingerprint.
            if *role == "relay" {
                std::fs::write(dd.join("fingerprint"), format!("{nick} {fp}\n")).unwrap();
            }
            std::fs::write(dd.join("fingerprint-ed25519"), format!("{nick} {ED}\n")).unwrap();
            nodes.push(serde_json::json!({
                "nick": nick, "role": role, "data_dir": dd, "or_port": 5000 + 2 * i,
                "dir_port": 5001 + 2 * i, "fingerprint": fp,
                "v3ident": format!("{:040X}", 100 + i),
            }));
        }
        let net = serde_json::json!({
            "voting_interval": voting_interval,
            "authorities": [nodes[0], nodes[1]],
            "relays": [nodes[2]],
            "clients": [{"nick": "client1", "socks_port": 6000}],
        });
        std::fs::write(dir.join("network.json"), net.to_string()).unwrap();
    }

    #[test]
    fn from_private_tor_net_reads_network_json_and_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        fake_net(dir.path(), 20);
        let cfg = ArtiConfig::from_private_tor_net(dir.path()).unwrap();
        let net = cfg.test_network.clone().unwrap();
        assert_eq!(net.authorities.len(), 2);
        assert_eq!(net.authorities[0].v3ident, format!("{:040X}", 100));
        assert_eq!(
            net.authorities[1].dir_addr,
            "127.0.0.1:5003".parse().unwrap()
        );
        assert_eq!(net.fallbacks.len(), 3);
        assert_eq!(net.fallbacks[0].rsa_id, format!("{:040X}", 1));
        assert_eq!(net.fallbacks[2].rsa_id, format!("{:040X}", 3));
        assert_eq!(net.fallbacks[2].ed25519_id, ED);
        assert_eq!(net.fallbacks[2].addr, "127.0.0.1:5004".parse().unwrap());
        assert_eq!(net.hsdir_interval, Some(8));
        assert!(net.cbtdisabled && net.allow_local_addrs);
        assert_eq!(net.ipv4_subnet_family_prefix, 33);
        // And Arti accepts the result.
        let data = tempfile::tempdir().unwrap();
        let tor = cfg.to_tor_client_config(data.path()).unwrap();
        let dir_cfg = tor.dir_mgr_config().unwrap();
        assert_eq!(dir_cfg.network.authorities().v3idents().len(), 2);
        assert_eq!(dir_cfg.network.fallback_caches().len(), 3);
    }

    #[test]
    fn from_private_tor_net_rejects_short_voting_interval() {
        let dir = tempfile::tempdir().unwrap();
        fake_net(dir.path(), 10);
        let err = ArtiConfig::from_private_tor_net(dir.path()).unwrap_err();
        assert!(err.to_string().contains("voting interval"), "{err}");
        assert!(ArtiConfig::from_private_tor_net(&dir.path().join("nope")).is_err());
    }

    #[test]
    fn toml_example_parses() {
        // The example of docs/arti.md, as it appears under `[transport.arti]`.
        let file: toml::Table = toml::from_str(
            r#"
[transport.arti]
state_dir = "/var/lib/torchat/arti-state"
bridges = [
  "obfs4 192.0.2.3:443 0123456789ABCDEF0123456789ABCDEF01234567 cert=YWJj iat-mode=0",
]
pt_binary = "/usr/bin/lyrebird"

[transport.arti.test_network]
hsdir_interval = 8
authorities = [
  { v3ident = "0123456789ABCDEF0123456789ABCDEF01234567", dir_addr = "127.0.0.1:5001" },
]
fallbacks = [
  { rsa_id = "0123456789ABCDEF0123456789ABCDEF01234567", ed25519_id = "m5VXG3PAFcHGwLRoOu1j2/dU5/xXiRv1R4JDKNb5Nlg", addr = "127.0.0.1:5000" },
]
"#,
        )
        .unwrap();
        let cfg: ArtiConfig = file["transport"]["arti"].clone().try_into().unwrap();
        assert_eq!(cfg.bootstrap_problem_secs, 30);
        assert_eq!(cfg.connect_retry_secs, 120);
        let data = tempfile::tempdir().unwrap();
        assert_eq!(
            cfg.state_dir_in(data.path()),
            PathBuf::from("/var/lib/torchat/arti-state")
        );
        assert_eq!(
            cfg.cache_dir_in(data.path()),
            data.path().join("arti/cache")
        );
        cfg.to_tor_client_config(data.path()).unwrap();
    }

    #[test]
    fn bridge_with_transport_needs_a_binary() {
        let cfg = ArtiConfig {
            bridges: vec![
                "obfs4 192.0.2.3:443 0123456789ABCDEF0123456789ABCDEF01234567 cert=YWJj iat-mode=0"
                    .into(),
            ],
            ..ArtiConfig::default()
        };
        let data = tempfile::tempdir().unwrap();
        let err = cfg.to_tor_client_config(data.path()).unwrap_err();
        assert!(err.to_string().contains("pt_binary"), "{err}");
        // A plain bridge needs none.
        let cfg = ArtiConfig {
            bridges: vec!["192.0.2.3:443 0123456789ABCDEF0123456789ABCDEF01234567".into()],
            ..ArtiConfig::default()
        };
        cfg.to_tor_client_config(data.path()).unwrap();
        ArtiConfig::default()
            .to_tor_client_config(data.path())
            .unwrap();
    }
}
