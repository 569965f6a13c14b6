//! torchat: a TorChat-compatible messenger over Tor with reliable group chat.
//!
//! `torchat daemon` runs the node; the other subcommands talk to it through the control API.

mod config;
mod daemon;
mod demo;
mod files;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use torchat_api::Command;

use torchat_client::Client;

#[derive(Parser, Debug)]
#[command(
    name = "torchat",
    version,
    about = "TorChat-compatible messenger over Tor with reliable group chat"
)]
struct Cli {
    /// Data directory (identity, store, control socket). Default: $XDG_DATA_HOME/torchat.
    #[arg(long, global = true, env = "TORCHAT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file. Default: $XDG_CONFIG_HOME/torchat/config.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Without a command: the terminal UI, attached to the running daemon, or with a node
    /// started in this process if none is running.
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the node (headless).
    Daemon {
        /// Transport: arti (embedded Tor, default), tor, tor-existing, manual, direct.
        #[arg(long)]
        transport: Option<String>,
        /// Listen address for the direct transport.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Log level (error, warn, info, debug, trace).
        #[arg(long)]
        log_level: Option<String>,
        /// Log full onion ids (debugging only).
        #[arg(long)]
        log_secrets: bool,
    },
    /// Show our onion id.
    Id,
    /// Show the node's state (transport, Tor bootstrap, connections).
    Info,
    /// List buddies.
    Buddies,
    /// Add a buddy.
    Add {
        /// Onion id.
        id: String,
        /// Our name for it.
        #[arg(long)]
        alias: Option<String>,
    },
    /// Remove a buddy.
    Remove {
        /// Onion id.
        id: String,
    },
    /// Block an id.
    Block {
        /// Onion id.
        id: String,
    },
    /// Unblock an id.
    Unblock {
        /// Onion id.
        id: String,
    },
    /// List contact requests from strangers (with the messages they sent).
    Requests,
    /// Accept a contact request: the stranger becomes a buddy, its messages move into the
    /// conversation.
    Accept {
        /// Onion id.
        id: String,
        /// Our name for it.
        #[arg(long)]
        alias: Option<String>,
    },
    /// Ignore a contact request: its messages are dropped (the stranger is not told).
    Ignore {
        /// Onion id.
        id: String,
    },
    /// Send a message (queued until the buddy is online).
    Send {
        /// Onion id.
        to: String,
        /// Text.
        text: String,
    },
    /// Show a conversation (buddy id or group id).
    History {
        /// Buddy id or group id.
        with: String,
        /// How many messages.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Set our status: available, away, xa.
    Status {
        /// available, away or xa.
        status: String,
    },
    /// Set our profile.
    Profile {
        /// Name.
        #[arg(long)]
        name: String,
        /// Text.
        #[arg(long, default_value = "")]
        text: String,
    },
    /// Group chats.
    Group {
        #[command(subcommand)]
        cmd: GroupCmd,
    },
    /// Offer a file to a buddy (queued until it is online); on a terminal, show its progress.
    SendFile {
        /// Onion id.
        id: String,
        /// The file.
        path: PathBuf,
        /// Return once offered instead of following the transfer.
        #[arg(long)]
        no_wait: bool,
    },
    /// File transfers; on a terminal, live progress bars until they end.
    Files {
        #[command(subcommand)]
        cmd: Option<files::FilesCmd>,
        /// List once, do not follow the progress.
        #[arg(long)]
        once: bool,
    },
    /// Who vouched for a group message.
    Claims {
        /// Message id.
        msg: String,
    },
    /// Print events as they happen.
    Events,
    /// Stop the node.
    Stop,
    /// Run a small group on loopback with one cut link and show the redundancy at work.
    Demo,
    /// The terminal UI, attached to the running daemon.
    Ui,
    /// Serve IRC on localhost: any IRC client becomes a torchat client (see docs/irc.md).
    Irc {
        /// Where to listen (loopback addresses only).
        #[arg(long, default_value_t = torchat_irc::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
    },
}

#[derive(Subcommand, Debug)]
enum GroupCmd {
    /// List groups.
    List,
    /// Create a group.
    Create {
        /// Turn the redundancy extension off for this group.
        #[arg(long)]
        no_redundancy: bool,
    },
    /// Invite an online buddy.
    Invite {
        /// Group id.
        gid: String,
        /// Onion id.
        id: String,
    },
    /// Accept an invite.
    Accept {
        /// Group id.
        gid: String,
    },
    /// Decline an invite.
    Decline {
        /// Group id.
        gid: String,
    },
    /// Say something.
    Say {
        /// Group id.
        gid: String,
        /// Text.
        text: String,
    },
    /// Show members.
    Members {
        /// Group id.
        gid: String,
    },
    /// Leave.
    Leave {
        /// Group id.
        gid: String,
        /// Reason.
        #[arg(long)]
        reason: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("torchat: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("torchat: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let mut cfg = config::load(cli.config.as_deref())?;
    let data_dir = cli
        .data_dir
        .clone()
        .or(cfg.data_dir.clone())
        .unwrap_or_else(config::default_data_dir);
    let Some(cmd) = &cli.cmd else {
        return run_ui(&cfg, &data_dir).await;
    };
    let request = match cmd {
        Cmd::Daemon {
            transport,
            listen,
            log_level,
            log_secrets,
        } => {
            if let Some(t) = transport.clone() {
                let v = toml::Value::String(t.clone());
                cfg.transport.kind = v
                    .try_into()
                    .map_err(|_| format!("unknown transport {t:?}"))?;
            }
            if let Some(l) = listen {
                cfg.transport.direct.listen = *l;
            }
            if let Some(l) = log_level {
                cfg.log.level = l.clone();
            }
            cfg.log.secrets |= *log_secrets;
            init_logging(&cfg.log.level);
            return run_daemon(&cfg, &data_dir).await;
        }
        Cmd::Demo => {
            init_logging("warn");
            return demo::run().await;
        }
        Cmd::Ui => {
            let socket = data_dir.join(torchat_node::SOCKET);
            return torchat_tui::run(&socket).await.map_err(|e| e.to_string());
        }
        Cmd::Irc { listen } => {
            init_logging(&cfg.log.level);
            let password = match std::env::var("TORCHAT_IRC_PASSWORD") {
                Ok(p) if !p.trim().is_empty() => p,
                _ => {
                    let file = data_dir.join("irc-password");
                    let p =
                        torchat_irc::load_or_create_password(&file).map_err(|e| e.to_string())?;
                    eprintln!(
                        "torchat irc: the password for IRC clients is in {}",
                        file.display()
                    );
                    p
                }
            };
            let mut irc =
                torchat_irc::IrcConfig::new(data_dir.join(torchat_node::SOCKET), password);
            irc.listen = *listen;
            irc.nick_file = Some(data_dir.join("irc-nicks.json"));
            eprintln!("torchat irc: IRC on {listen}; connect with the password, then type help in &torchat");
            return torchat_irc::serve(irc).await.map_err(|e| e.to_string());
        }
        Cmd::SendFile { id, path, no_wait } => {
            let socket = data_dir.join(torchat_node::SOCKET);
            return files::send_file(&socket, id, path, !no_wait, cli.json).await;
        }
        Cmd::Files { cmd, once } => {
            let socket = data_dir.join(torchat_node::SOCKET);
            return files::files(&socket, cmd.as_ref(), *once, cli.json).await;
        }
        Cmd::Id | Cmd::Info => Command::Info,
        Cmd::Buddies => Command::Buddies,
        Cmd::Add { id, alias } => Command::Add {
            id: id.clone(),
            alias: alias.clone(),
        },
        Cmd::Remove { id } => Command::Remove { id: id.clone() },
        Cmd::Block { id } => Command::Block { id: id.clone() },
        Cmd::Unblock { id } => Command::Unblock { id: id.clone() },
        Cmd::Requests => Command::Requests,
        Cmd::Accept { id, alias } => Command::RequestAccept {
            id: id.clone(),
            alias: alias.clone(),
        },
        Cmd::Ignore { id } => Command::RequestIgnore { id: id.clone() },
        Cmd::Send { to, text } => Command::Send {
            to: to.clone(),
            text: text.clone(),
        },
        Cmd::History { with, limit } => Command::History {
            with: with.clone(),
            limit: Some(*limit),
            before: None,
        },
        Cmd::Status { status } => Command::SetStatus {
            status: status.clone(),
        },
        Cmd::Profile { name, text } => Command::SetProfile {
            name: name.clone(),
            text: text.clone(),
        },
        Cmd::Claims { msg } => Command::Claims { msg: msg.clone() },
        Cmd::Events => Command::Subscribe,
        Cmd::Stop => Command::Shutdown,
        Cmd::Group { cmd } => cmd.command(),
    };
    let socket = data_dir.join(torchat_node::SOCKET);
    let mut client = Client::connect(&socket).await.map_err(|e| e.to_string())?;
    let subscribe = matches!(request, Command::Subscribe);
    let value = client.call(request).await.map_err(|e| e.to_string())?;
    if subscribe {
        eprintln!("torchat: following events (Ctrl-C to stop)");
        loop {
            let ev = client.next_event().await.map_err(|e| e.to_string())?;
            output::event(&ev, cli.json);
        }
    }
    output::result(cmd, &value, cli.json);
    Ok(())
}

impl GroupCmd {
    fn command(&self) -> Command {
        match self {
            GroupCmd::List => Command::Groups,
            GroupCmd::Create { no_redundancy } => Command::GroupCreate {
                modes: if *no_redundancy {
                    vec![torchat_core::NO_REDUNDANCY.to_owned()]
                } else {
                    vec![]
                },
            },
            GroupCmd::Invite { gid, id } => Command::GroupInvite {
                gid: gid.clone(),
                id: id.clone(),
            },
            GroupCmd::Accept { gid } => Command::GroupAccept { gid: gid.clone() },
            GroupCmd::Decline { gid } => Command::GroupDecline { gid: gid.clone() },
            GroupCmd::Say { gid, text } => Command::GroupSay {
                gid: gid.clone(),
                text: text.clone(),
            },
            GroupCmd::Members { gid } => Command::GroupMembers { gid: gid.clone() },
            GroupCmd::Leave { gid, reason } => Command::GroupLeave {
                gid: gid.clone(),
                reason: reason.clone(),
            },
        }
    }
}

/// Arti's crates report every failed attempt at warning level; what matters reaches the user
/// through the transport's own progress and problem events, so they are quieter by default.
const ARTI_QUIET: &str = "tor_chanmgr=error,tor_circmgr=error,tor_dirmgr=error,tor_guardmgr=error,\
tor_netdir=error,tor_proto=error,tor_hsservice=error,tor_hsclient=error,tor_ptmgr=error,arti_client=error";

/// The log filter: `TORCHAT_LOG` if set, else the configured level (with Arti quieter).
fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("TORCHAT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(format!("{level},{ARTI_QUIET}")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
}

fn init_logging(level: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(log_filter(level))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run_daemon(cfg: &config::Config, data_dir: &std::path::Path) -> Result<(), String> {
    let started = daemon::start(cfg, data_dir).await?;
    let node = started.node;
    // The full id stays out of the log unless asked for; `torchat id` shows it.
    let shown = if cfg.log.secrets {
        node.id.to_string()
    } else {
        format!("{}…", node.id.short())
    };
    eprintln!(
        "torchat: running as {shown} (`torchat id` shows the full id; control socket {})",
        node.control_path.display()
    );
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        tokio::spawn(progress_bar(node.control_path.clone()));
    }
    let stop = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    };
    let control_path = node.control_path.clone();
    let wait = node.wait();
    tokio::pin!(wait);
    tokio::select! {
        _ = &mut wait => {}
        _ = stop => {
            // Ask the node to stop through its own API so it flushes and closes cleanly.
            if let Ok(mut c) = Client::connect(&control_path).await {
                let _ = c.call(Command::Shutdown).await;
            }
            wait.await;
        }
    }
    Ok(())
}

/// `torchat` without a command: the terminal UI. Attaches to a running daemon; otherwise
/// starts the node in this process (logging to `torchat.log` in the data directory, so the
/// screen stays clean) and stops it when the UI exits.
async fn run_ui(cfg: &config::Config, data_dir: &std::path::Path) -> Result<(), String> {
    let socket = data_dir.join(torchat_node::SOCKET);
    if Client::connect(&socket).await.is_ok() {
        return torchat_tui::run(&socket).await.map_err(|e| e.to_string());
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("torchat.log"))
        .map_err(|e| format!("log file: {e}"))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(log_filter(&cfg.log.level))
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(log))
        .try_init();
    let started = daemon::start(cfg, data_dir).await?;
    let result = torchat_tui::run(&started.node.control_path)
        .await
        .map_err(|e| e.to_string());
    started.node.shutdown().await;
    result
}

/// Draws Tor's bootstrap progress on the terminal until the onion service is ready, and says
/// plainly what is wrong (and what to try) when it cannot connect.
async fn progress_bar(socket: PathBuf) {
    use torchat_api::Event;
    let Ok(mut c) = Client::connect(&socket).await else {
        return;
    };
    if c.call(Command::Subscribe).await.is_err() {
        return;
    }
    if let Ok(v) = c.call(Command::Info).await {
        if v["tor"]["ready"] == serde_json::Value::Bool(true) {
            eprintln!("torchat: network ready");
            return;
        }
    }
    loop {
        match c.next_event().await {
            Ok(Event::TorProgress { percent, summary }) => {
                let done = usize::from(percent.min(100)) * 30 / 100;
                eprint!(
                    "\rTor [{}{}] {percent:3}% {:<40.40}",
                    "#".repeat(done),
                    ".".repeat(30 - done),
                    summary
                );
            }
            Ok(Event::TorReady { .. }) => {
                eprintln!(
                    "\rTor [{}] 100% ready: buddies can reach you        ",
                    "#".repeat(30)
                );
                return;
            }
            Ok(Event::TorProblem { message, hint }) => {
                eprintln!("\ntorchat: {message}\n  try: {hint}")
            }
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
