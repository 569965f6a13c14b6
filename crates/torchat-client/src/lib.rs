//! A client for the torchat control API (see `docs/api.md`): what the CLI, the terminal UI and
//! the IRC gateway use to talk to a running node.
#![warn(missing_docs)]

use std::path::Path;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use torchat_api::{Command, Event, Request, ServerLine};

/// A connection to a running node.
pub struct Client {
    lines: Lines<BufReader<OwnedReadHalf>>,
    wr: OwnedWriteHalf,
    next_id: u64,
    /// Events that arrived while waiting for a response.
    pending: std::collections::VecDeque<Event>,
}

/// What can go wrong talking to the node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node is running for that data directory, or the socket is not ours.
    #[error("cannot reach the torchat node at {path}: {source} (is `torchat daemon` running?)")]
    Connect {
        /// Socket path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The connection broke.
    #[error("connection to the node lost: {0}")]
    Io(#[from] std::io::Error),
    /// The node answered with an error.
    #[error("{message} ({code})")]
    Api {
        /// Machine-readable code.
        code: String,
        /// Explanation.
        message: String,
    },
    /// The node sent something we do not understand.
    #[error("bad reply from the node: {0}")]
    Protocol(String),
}

impl Client {
    /// Connects to the control socket.
    pub async fn connect(socket: &Path) -> Result<Self, ClientError> {
        let s = UnixStream::connect(socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: socket.display().to_string(),
                source,
            })?;
        let (rd, wr) = s.into_split();
        Ok(Client {
            lines: BufReader::new(rd).lines(),
            wr,
            next_id: 1,
            pending: Default::default(),
        })
    }

    /// Sends a command and waits for its response.
    pub async fn call(&mut self, cmd: Command) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_string(&Request { req: id, cmd })
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push('\n');
        self.wr.write_all(line.as_bytes()).await?;
        loop {
            match self.read().await? {
                // `req: 0` answers a line the node could not parse (ours, so it is this one).
                ServerLine::Response(r) if r.req == id || (r.req == 0 && !r.ok) => {
                    return match (r.ok, r.error) {
                        (true, _) => Ok(r.result.unwrap_or(Value::Null)),
                        (false, Some(e)) => Err(ClientError::Api {
                            code: e.code,
                            message: e.message,
                        }),
                        (false, None) => Err(ClientError::Protocol("error without details".into())),
                    };
                }
                ServerLine::Response(_) => {}
                ServerLine::Event(e) => self.pending.push_back(e),
            }
        }
    }

    /// Subscribes to events (see [`Client::next_event`]) and returns the client.
    pub async fn subscribed(mut self) -> Result<Self, ClientError> {
        self.call(Command::Subscribe).await?;
        Ok(self)
    }

    /// The next event (after `subscribe`).
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        if let Some(e) = self.pending.pop_front() {
            return Ok(e);
        }
        loop {
            if let ServerLine::Event(e) = self.read().await? {
                return Ok(e);
            }
        }
    }

    async fn read(&mut self) -> Result<ServerLine, ClientError> {
        let line = self
            .lines
            .next_line()
            .await?
            .ok_or_else(|| ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()))?;
        serde_json::from_str(&line).map_err(|e| ClientError::Protocol(format!("{e}: {line}")))
    }
}
