//! Launching and owning a managed tor process.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{sleep, Instant};

use super::service::parse_listener;
use super::ManagedTor;
use crate::control::{read_line, ControlAuth, ControlConn};
use crate::Error;

/// Lines of tor's output kept to explain a failure.
const TAIL: usize = 40;
/// Time allowed for tor to open its control port.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running tor we launched. Dropping it kills tor (it also exits by itself when our control
/// connection closes, thanks to `TAKEOWNERSHIP`, or when this process dies).
pub(super) struct TorProcess {
    child: Child,
    control: SocketAddr,
    cookie: PathBuf,
    tail: Arc<Mutex<VecDeque<String>>>,
}

/// Fails early on what no retry can fix: no tor program, a bad torrc line, a missing plugin.
pub(super) fn check(m: &ManagedTor) -> Result<(), Error> {
    tor_binary(m)?;
    for line in m
        .extra_torrc
        .iter()
        .chain(&m.bridges)
        .chain(&m.transport_plugins)
    {
        if line.contains(['\n', '\r', '\0']) {
            return Err(Error::Config("a torrc line contains a line break".into()));
        }
    }
    plugin_lines(m)?;
    Ok(())
}

fn tor_binary(m: &ManagedTor) -> Result<PathBuf, Error> {
    match &m.tor_binary {
        Some(p) => Ok(p.clone()),
        None => find_on_path("tor").ok_or_else(|| {
            Error::Config(
                "the `tor` program was not found on PATH: install tor (e.g. `apt-get install \
                 tor`), or choose another transport (see docs/transports.md)"
                    .into(),
            )
        }),
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// The pluggable transports the bridge lines name (`obfs4 1.2.3.4:443 ...` names obfs4; a
/// plain `1.2.3.4:443 FPR` bridge names none).
fn bridge_transports(bridges: &[String]) -> BTreeSet<String> {
    bridges
        .iter()
        .filter_map(|b| b.split_whitespace().next())
        .filter(|w| {
            w.parse::<SocketAddr>().is_err() && !w.starts_with(|c: char| c.is_ascii_digit())
        })
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The configured `ClientTransportPlugin` lines plus one per bridge transport that none names,
/// using a known program from `PATH`.
fn plugin_lines(m: &ManagedTor) -> Result<Vec<String>, Error> {
    let mut lines = m.transport_plugins.clone();
    for t in bridge_transports(&m.bridges) {
        let named = lines.iter().any(|l| {
            let names = l.split_whitespace().next().unwrap_or("");
            names.split(',').any(|n| n.eq_ignore_ascii_case(&t))
        });
        if named {
            continue;
        }
        let candidates: &[&str] = match t.as_str() {
            "obfs4" | "meek_lite" | "obfs3" | "scramblesuit" => &["lyrebird", "obfs4proxy"],
            "webtunnel" => &["lyrebird", "webtunnel-client"],
            "snowflake" => &["snowflake-client"],
            _ => &[],
        };
        match candidates.iter().find_map(|c| find_on_path(c)) {
            Some(p) => lines.push(format!("{t} exec {}", p.display())),
            None => {
                return Err(Error::Config(format!(
                    "bridges of type {t} need a pluggable transport program{}: install one or \
                     add a transport_plugins line",
                    if candidates.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} on PATH)", candidates.join(" or "))
                    }
                )))
            }
        }
    }
    Ok(lines)
}

/// Our torrc for a tor with its data in `dir`.
pub(super) fn torrc(m: &ManagedTor, dir: &Path) -> Result<String, Error> {
    let d = dir.display();
    let mut lines = vec![
        "# Written by torchat at every start; put your own lines in its configuration.".into(),
        format!("DataDirectory {d}"),
        "SocksPort 127.0.0.1:auto ExtendedErrors".into(),
        "ControlPort 127.0.0.1:auto".into(),
        format!("ControlPortWriteToFile {d}/control-port"),
        "CookieAuthentication 1".into(),
        format!("CookieAuthFile {d}/control_auth_cookie"),
        format!("__OwningControllerProcess {}", std::process::id()),
        "Log notice stdout".into(),
        "ClientOnly 1".into(),
    ];
    if !m.bridges.is_empty() {
        lines.push("UseBridges 1".into());
        lines.extend(m.bridges.iter().map(|b| format!("Bridge {b}")));
        lines.extend(
            plugin_lines(m)?
                .iter()
                .map(|p| format!("ClientTransportPlugin {p}")),
        );
    }
    if !m.extra_torrc.is_empty() {
        lines.push("# From the configuration:".into());
        lines.extend(m.extra_torrc.iter().cloned());
    }
    let mut s = lines.join("\n");
    s.push('\n');
    Ok(s)
}

/// Launches tor and waits until its control port is open.
pub(super) async fn launch(m: &ManagedTor) -> Result<TorProcess, Error> {
    let binary = tor_binary(m)?;
    let dir = m.data_dir.join("tor");
    tokio::fs::create_dir_all(&dir).await?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).await?;
    }
    let port_file = dir.join("control-port");
    let _ = tokio::fs::remove_file(&port_file).await;
    let torrc_path = dir.join("torrc");
    tokio::fs::write(&torrc_path, torrc(m, &dir)?).await?;
    let defaults = dir.join("torrc-defaults");
    tokio::fs::write(&defaults, "").await?;

    let mut child = Command::new(&binary)
        .arg("-f")
        .arg(&torrc_path)
        .arg("--defaults-torrc")
        .arg(&defaults)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Config(format!("cannot start {}: {e}", binary.display())))?;
    tracing::debug!(pid = child.id(), dir = %dir.display(), "tor launched");
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL)));
    if let Some(out) = child.stdout.take() {
        tokio::spawn(collect(out, tail.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(collect(err, tail.clone()));
    }
    let mut tor = TorProcess {
        child,
        control: SocketAddr::from(([127, 0, 0, 1], 0)),
        cookie: dir.join("control_auth_cookie"),
        tail,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = tor.child.try_wait()? {
            return Err(Error::Config(format!(
                "tor exited at start ({status}){}",
                tor.why()
            )));
        }
        if let Ok(text) = tokio::fs::read_to_string(&port_file).await {
            if let Some(addr) = text.lines().find_map(|l| l.strip_prefix("PORT=")) {
                if let Ok(addr) = addr.trim().parse() {
                    tor.control = addr;
                    return Ok(tor);
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Control(format!(
                "tor did not open its control port within {} s{}",
                START_TIMEOUT.as_secs(),
                tor.why()
            )));
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// Logs tor's output at debug and keeps the last lines.
async fn collect<R: AsyncRead + Unpin>(r: R, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut r = BufReader::new(r);
    loop {
        match read_line(&mut r).await {
            Ok(Some(line)) => {
                tracing::debug!(target: "torchat_tor::tor_log", "{line}");
                if let Ok(mut t) = tail.lock() {
                    if t.len() == TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
            Ok(None) | Err(Error::Io(_)) => return,
            Err(_) => {} // an over-long line: skip on
        }
    }
}

impl TorProcess {
    /// Connects and authenticates to tor's control port, takes ownership of tor (it exits when
    /// the connection closes) and returns the connection and tor's SOCKS address.
    pub(super) async fn control(&mut self) -> Result<(ControlConn, SocketAddr), Error> {
        let mut ctl = ControlConn::connect(self.control).await?;
        ctl.authenticate(&ControlAuth::CookieFile(self.cookie.clone()))
            .await?;
        ctl.command_ok("TAKEOWNERSHIP").await?;
        let listeners = ctl.getinfo("net/listeners/socks").await?;
        let socks = parse_listener(&listeners)
            .ok_or_else(|| Error::Control("tor reports no SOCKS listener".into()))?;
        Ok((ctl, socks))
    }

    /// If tor has exited, an error saying so with its last complaint; else `e`.
    pub(super) async fn explain(&mut self, e: Error) -> Error {
        for _ in 0..10 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Error::Control(format!("tor exited ({status}){}", self.why()));
            }
            sleep(Duration::from_millis(100)).await;
        }
        e
    }

    /// ": <tor's last warning or error line>", or nothing.
    fn why(&self) -> String {
        let Ok(t) = self.tail.lock() else {
            return String::new();
        };
        t.iter()
            .rev()
            .find(|l| l.contains("[err]") || l.contains("[warn]"))
            .or(t.back())
            .map(|l| format!(": {l}"))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torrc_has_our_lines_bridges_and_extras() {
        let m = ManagedTor {
            data_dir: "/data".into(),
            tor_binary: Some("/usr/bin/tor".into()),
            extra_torrc: vec!["TestingTorNetwork 1".into()],
            bridges: vec![
                "obfs4 192.0.2.1:443 AAAA cert=x iat-mode=0".into(),
                "192.0.2.2:9001 BBBB".into(),
            ],
            transport_plugins: vec!["obfs4 exec /opt/lyrebird".into()],
        };
        let t = torrc(&m, Path::new("/data/tor")).unwrap();
        for want in [
            "DataDirectory /data/tor\n",
            "SocksPort 127.0.0.1:auto ExtendedErrors\n",
            "ControlPortWriteToFile /data/tor/control-port\n",
            "CookieAuthentication 1\n",
            "UseBridges 1\n",
            "Bridge obfs4 192.0.2.1:443 AAAA cert=x iat-mode=0\n",
            "Bridge 192.0.2.2:9001 BBBB\n",
            "ClientTransportPlugin obfs4 exec /opt/lyrebird\n",
            "TestingTorNetwork 1\n",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        assert!(check(&m).is_ok());
    }

    #[test]
    fn missing_plugin_and_bad_lines_are_config_errors() {
        let mut m = ManagedTor {
            tor_binary: Some("/usr/bin/tor".into()),
            bridges: vec!["no_such_transport 192.0.2.1:443 AAAA".into()],
            ..ManagedTor::default()
        };
        assert!(matches!(check(&m), Err(Error::Config(_))));
        m.bridges.clear();
        m.extra_torrc = vec!["A 1\nB 2".into()];
        assert!(matches!(check(&m), Err(Error::Config(_))));
        assert_eq!(bridge_transports(&["[2001:db8::1]:443 X".into()]).len(), 0);
    }
}
