//! The TorChat wire codec.
//!
//! Pure and synchronous: no I/O, no clock, no randomness. It turns bytes from a connection into
//! typed [`Packet`]s and packets back into bytes, exactly as the existing TorChat clients
//! (Python TorChat, jtorchat, ruby-torchat) write and read them.
//!
//! - [`frame`]: incremental LF framing with a hard line-size cap;
//! - [`escape`]: the payload escaping (`\` → `\/`, LF → `\n`);
//! - [`packet`]: one typed [`Packet`] per command, plus [`Packet::Unknown`];
//! - [`onion`]: v3 and legacy v2 onion ids;
//! - [`sync`]: field types of our extension `torchat_sync` (sequence sets, digest entries).
//!
//! ```
//! use torchat_wire::{Packet, PacketDecoder};
//!
//! let mut dec = PacketDecoder::default();
//! let mut got = Vec::new();
//! dec.feed_with(b"status avail", |p| got.push(p));
//! assert!(got.is_empty()); // incomplete line: nothing yet
//! dec.feed_with(b"able\nmessage hi\\nthere\n", |p| got.push(p));
//! assert_eq!(got.len(), 2);
//! assert_eq!(got[1], Ok(Packet::Message(b"hi\nthere".to_vec())));
//! assert_eq!(Packet::Message(b"hi\nthere".to_vec()).encode(), b"message hi\\nthere\n");
//! ```
#![warn(missing_docs)]

pub mod escape;
pub mod frame;
pub mod onion;
pub mod packet;
pub mod sync;
pub mod transcript;

pub use frame::{FrameError, LineDecoder, DEFAULT_MAX_LINE};
pub use onion::{OnionId, OnionIdError};
pub use packet::{GroupId, MalformedReason, Packet, PacketError, Spacing, Status};
pub use sync::{DigestEntry, DigestKey, SeqSet};

/// Any error from decoding a byte stream into packets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The stream is broken (a line over the cap); close the connection.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// One line could not be decoded; the stream itself is fine.
    #[error(transparent)]
    Packet(#[from] PacketError),
}

impl DecodeError {
    /// True when the connection should be closed (the framing is broken).
    pub fn is_fatal(&self) -> bool {
        matches!(self, DecodeError::Frame(_))
    }
}

/// Framing and packet decoding together: bytes in, packets out.
#[derive(Debug, Clone, Default)]
pub struct PacketDecoder {
    lines: LineDecoder,
}

impl PacketDecoder {
    /// A decoder with the given line cap.
    pub fn new(max_line: usize) -> Self {
        Self {
            lines: LineDecoder::new(max_line),
        }
    }

    /// Bytes of an unfinished line currently held.
    pub fn pending(&self) -> usize {
        self.lines.pending()
    }

    /// Feeds a chunk; calls `on_packet` for every line it completes.
    pub fn feed_with(
        &mut self,
        chunk: &[u8],
        mut on_packet: impl FnMut(Result<Packet, DecodeError>),
    ) {
        self.lines.feed_with(chunk, |line| {
            on_packet(match line {
                Ok(l) => Packet::decode(&l).map_err(DecodeError::from),
                Err(e) => Err(e.into()),
            })
        });
    }

    /// Like [`PacketDecoder::feed_with`], collecting the results.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Result<Packet, DecodeError>> {
        let mut out = Vec::new();
        self.feed_with(chunk, |p| out.push(p));
        out
    }
}
