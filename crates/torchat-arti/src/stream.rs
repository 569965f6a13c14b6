//! Arti's streams as plain Tokio byte streams.
//!
//! Arti's `DataStream` implements Tokio's `AsyncRead`/`AsyncWrite` (arti-client's `tokio`
//! feature), but it buffers written bytes until a relay cell is full or the stream is
//! *flushed*. Code written against TCP sockets often writes a line and waits for the answer
//! without flushing, which would stall. So the node gets one end of an in-memory pipe and a
//! small task copies between the pipe and the Tor stream, flushing whenever the node has
//! nothing more to write at the moment (Tokio's copy does exactly that). Closing either side
//! closes the other.

use torchat_tor::BoxStream;

/// Bytes buffered in each direction between the node and the Tor stream.
const PIPE_BUFFER: usize = 64 * 1024;

/// Wraps a Tor stream for the node.
pub(crate) fn wrap<S>(tor: S) -> BoxStream
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (node_end, mut our_end) = tokio::io::duplex(PIPE_BUFFER);
    tokio::spawn(async move {
        let mut tor = tor;
        match tokio::io::copy_bidirectional(&mut our_end, &mut tor).await {
            Ok((up, down)) => tracing::trace!(up, down, "onion stream closed"),
            Err(e) => tracing::debug!(error = %e, "onion stream ended"),
        }
    });
    Box::new(node_end)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

    /// A stream that, like Arti's, holds written bytes until flushed.
    struct HoldsUntilFlush {
        inner: tokio::io::DuplexStream,
        held: Vec<u8>,
    }

    impl AsyncRead for HoldsUntilFlush {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for HoldsUntilFlush {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.held.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            while !self.held.is_empty() {
                let this = &mut *self;
                let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, &this.held))?;
                this.held.drain(..n);
            }
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            std::task::ready!(self.as_mut().poll_flush(cx))?;
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    #[tokio::test]
    async fn writes_arrive_without_an_explicit_flush() {
        let (a, mut far) = tokio::io::duplex(1024);
        let mut s = wrap(HoldsUntilFlush {
            inner: a,
            held: Vec::new(),
        });
        s.write_all(b"ping 123\n").await.unwrap(); // no flush
        let mut buf = [0u8; 9];
        tokio::time::timeout(std::time::Duration::from_secs(5), far.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"ping 123\n");
        far.write_all(b"pong 123\n").await.unwrap();
        let mut back = [0u8; 9];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"pong 123\n");
        // Closing the node's end closes the Tor stream.
        drop(s);
        let mut rest = Vec::new();
        far.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }
}
