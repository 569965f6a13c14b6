//! Runs the IRC gateway alone, in front of a running node:
//!
//! ```sh
//! cargo run -p torchat-irc --example gateway -- ~/.local/share/torchat/control.sock PASSWORD [127.0.0.1:6667]
//! ```
//!
//! (`torchat irc` does the same with the data directory's socket and password file.)

use std::net::SocketAddr;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(socket), Some(password)) = (args.first(), args.get(1)) else {
        eprintln!("usage: gateway <control socket> <password> [listen address]");
        return ExitCode::FAILURE;
    };
    let mut cfg = torchat_irc::IrcConfig::new(socket, password.as_str());
    if let Some(listen) = args.get(2) {
        match listen.parse::<SocketAddr>() {
            Ok(a) => cfg.listen = a,
            Err(e) => {
                eprintln!("bad listen address {listen:?}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "IRC gateway on {} (password from the command line)",
        cfg.listen
    );
    match torchat_irc::serve(cfg).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
