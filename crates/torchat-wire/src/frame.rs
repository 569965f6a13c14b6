//! Line framing: an incremental decoder with a hard size cap.
//!
//! TorChat lines end with a single LF (CR is payload, not framing). Bytes may arrive split
//! anywhere; the decoder keeps at most `max_line` bytes of an unfinished line. A line longer than
//! the cap is reported once as [`FrameError::LineTooLong`] and the rest of it, up to its LF, is
//! skipped without being buffered, so memory stays bounded whatever a peer sends.

/// Default cap on one line, LF excluded. Legitimate lines reach about 25 KiB after escaping
/// (a 12288-byte avatar or an 8 KiB file block, each possibly doubled by escaping).
pub const DEFAULT_MAX_LINE: usize = 256 * 1024;

/// A framing error. The connection it happened on should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A line exceeded the configured cap.
    #[error("line longer than the {max} byte limit")]
    LineTooLong {
        /// The cap in force.
        max: usize,
    },
}

/// Incremental LF-line decoder.
#[derive(Debug, Clone)]
pub struct LineDecoder {
    buf: Vec<u8>,
    max_line: usize,
    /// Skipping the remainder of an oversize line.
    skipping: bool,
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE)
    }
}

impl LineDecoder {
    /// A decoder that accepts lines of at most `max_line` bytes (LF excluded).
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_line,
            skipping: false,
        }
    }

    /// The cap in force.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Bytes of an unfinished line currently held (never more than the cap).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Feeds a chunk and calls `on_line` for every line (without its LF) or framing error that
    /// the chunk completes, in order. Bytes of an unfinished line are kept for the next call.
    pub fn feed_with(
        &mut self,
        mut chunk: &[u8],
        mut on_line: impl FnMut(Result<Vec<u8>, FrameError>),
    ) {
        while let Some(item) = self.next_from(&mut chunk) {
            on_line(item);
        }
    }

    /// Like [`LineDecoder::feed_with`], collecting the results.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut out = Vec::new();
        self.feed_with(chunk, |l| out.push(l));
        out
    }

    fn next_from(&mut self, rest: &mut &[u8]) -> Option<Result<Vec<u8>, FrameError>> {
        loop {
            if rest.is_empty() {
                return None;
            }
            match memchr::memchr(b'\n', rest) {
                Some(nl) => {
                    let (seg, tail) = rest.split_at(nl);
                    *rest = &tail[1..];
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    if self.buf.len() + seg.len() > self.max_line {
                        self.buf.clear();
                        return Some(Err(FrameError::LineTooLong { max: self.max_line }));
                    }
                    let line = if self.buf.is_empty() {
                        seg.to_vec()
                    } else {
                        let mut l = std::mem::take(&mut self.buf);
                        l.extend_from_slice(seg);
                        l
                    };
                    return Some(Ok(line));
                }
                None => {
                    let seg = std::mem::take(rest);
                    if self.skipping {
                        return None;
                    }
                    if self.buf.len() + seg.len() > self.max_line {
                        self.buf = Vec::new();
                        self.skipping = true;
                        return Some(Err(FrameError::LineTooLong { max: self.max_line }));
                    }
                    self.buf.extend_from_slice(seg);
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(dec: &mut LineDecoder, chunk: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        dec.feed(chunk)
    }

    #[test]
    fn splits_anywhere() {
        let stream = b"ping a b\nstatus available\nmessage x\r\n";
        for cut in 0..=stream.len() {
            let mut d = LineDecoder::default();
            let mut got = collect(&mut d, &stream[..cut]);
            got.extend(collect(&mut d, &stream[cut..]));
            let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
            assert_eq!(
                got,
                vec![
                    b"ping a b".to_vec(),
                    b"status available".to_vec(),
                    b"message x\r".to_vec()
                ]
            );
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn oversize_is_reported_once_and_not_buffered() {
        let mut d = LineDecoder::new(8);
        assert!(collect(&mut d, b"12345").is_empty());
        assert_eq!(
            collect(&mut d, b"6789"),
            vec![Err(FrameError::LineTooLong { max: 8 })]
        );
        assert_eq!(d.pending(), 0);
        // The rest of the long line is skipped without buffering, then decoding resumes.
        assert!(collect(&mut d, &[b'x'; 1000]).is_empty());
        assert_eq!(d.pending(), 0);
        assert_eq!(collect(&mut d, b"zz\nok\n"), vec![Ok(b"ok".to_vec())]);
        // Exactly at the cap is fine; one more is not.
        assert_eq!(
            collect(&mut d, b"12345678\n"),
            vec![Ok(b"12345678".to_vec())]
        );
        assert_eq!(
            collect(&mut d, b"123456789\n"),
            vec![Err(FrameError::LineTooLong { max: 8 })]
        );
        assert_eq!(collect(&mut d, b"a\n"), vec![Ok(b"a".to_vec())]);
    }
}
