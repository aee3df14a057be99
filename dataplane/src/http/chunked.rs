//! A sans-IO scanner for chunked bodies: finds where a chunked body ends without changing it.
//!
//! The proxy passes chunked bodies through byte for byte; it only needs to know where the body
//! ends so the connection can carry the next message. The scanner consumes whole chunk-size
//! and trailer lines only: when a line is split across reads it reports the bytes before it as
//! consumed and the caller keeps the partial line buffered (bounded by [`LINE_BYTES_MAX`]).

/// Longest chunk-size or trailer line: sizes are ≤ 16 hex digits, so the rest is extensions or a
/// trailer field; 4 KiB is generous for both and bounds what a caller must buffer.
pub const LINE_BYTES_MAX: usize = 4 * 1024;

/// Why a chunked body is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("invalid chunk size line")]
    InvalidSize,
    #[error("chunk data is not followed by CRLF")]
    MissingCrlf,
    #[error("chunk-size or trailer line longer than {LINE_BYTES_MAX} bytes")]
    LineTooLong,
}

/// Where the scanner is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside chunk data, this many bytes left.
    Data(u64),
    /// After chunk data: expecting CR (false) or LF (true).
    DataEnd { seen_cr: bool },
    /// After the last chunk: trailer lines until an empty line.
    Trailer,
    /// The body has ended.
    Done,
}

/// Progress of one [`ChunkedScanner::scan`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of the input that belong to the body and were scanned.
    pub consumed: usize,
    /// The body ended at `consumed`.
    pub done: bool,
}

/// Tracks one chunked body across reads.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedScanner {
    /// A scanner at the start of a body.
    pub fn new() -> Self {
        Self { state: State::Size }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scans `input` (the bytes after whatever was consumed before). Unconsumed bytes, if the
    /// body has not ended, are the start of a split line: pass them again with more appended.
    pub fn scan(&mut self, input: &[u8]) -> Result<Scan, ChunkedError> {
        let mut at = 0;
        loop {
            let rest = input.get(at..).unwrap_or(&[]);
            match self.state {
                State::Done => return Ok(Scan { consumed: at, done: true }),
                _ if rest.is_empty() => return Ok(Scan { consumed: at, done: false }),
                State::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((line_len, size))) => {
                        if line_len > LINE_BYTES_MAX {
                            return Err(ChunkedError::LineTooLong);
                        }
                        at += line_len;
                        self.state = if size == 0 { State::Trailer } else { State::Data(size) };
                    }
                    Ok(httparse::Status::Partial) => return self.partial_line(at, rest),
                    Err(httparse::InvalidChunkSize) => return Err(ChunkedError::InvalidSize),
                },
                State::Data(left) => {
                    let take = left.min(rest.len() as u64);
                    at += take as usize;
                    self.state =
                        if take == left { State::DataEnd { seen_cr: false } } else { State::Data(left - take) };
                }
                State::DataEnd { seen_cr } => {
                    let expected = if seen_cr { b'\n' } else { b'\r' };
                    if rest.first() != Some(&expected) {
                        return Err(ChunkedError::MissingCrlf);
                    }
                    at += 1;
                    self.state = if seen_cr { State::Size } else { State::DataEnd { seen_cr: true } };
                }
                State::Trailer => match rest.iter().position(|&b| b == b'\n') {
                    Some(newline) => {
                        if newline >= LINE_BYTES_MAX {
                            return Err(ChunkedError::LineTooLong);
                        }
                        let line = &rest[..newline];
                        at += newline + 1;
                        if line.is_empty() || line == b"\r" {
                            self.state = State::Done;
                        }
                    }
                    None => return self.partial_line(at, rest),
                },
            }
        }
    }

    fn partial_line(&self, at: usize, rest: &[u8]) -> Result<Scan, ChunkedError> {
        if rest.len() >= LINE_BYTES_MAX {
            return Err(ChunkedError::LineTooLong);
        }
        Ok(Scan { consumed: at, done: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` as a proxy would: unconsumed bytes stay and the next piece is appended.
    /// Returns the body length, or the error.
    fn feed(pieces: &[&[u8]]) -> Result<Option<usize>, ChunkedError> {
        let mut scanner = ChunkedScanner::new();
        let mut pending = Vec::new();
        let mut total = 0;
        for piece in pieces {
            pending.extend_from_slice(piece);
            let scan = scanner.scan(&pending)?;
            total += scan.consumed;
            pending.drain(..scan.consumed);
            if scan.done {
                return Ok(Some(total));
            }
        }
        Ok(None)
    }

    const BODY: &[u8] =
        b"5;ext=1;x=\"q\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\nMore: y\r\n\r\n";

    #[test]
    fn whole_body_with_extensions_and_trailers() {
        let mut with_next = BODY.to_vec();
        with_next.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut scanner = ChunkedScanner::new();
        let scan = scanner.scan(&with_next).unwrap();
        assert_eq!(scan, Scan { consumed: BODY.len(), done: true });
        assert!(scanner.is_done());
    }

    #[test]
    fn split_at_every_byte_boundary() {
        for cut in 0..=BODY.len() {
            assert_eq!(feed(&[&BODY[..cut], &BODY[cut..]]).unwrap(), Some(BODY.len()), "cut at {cut}");
        }
        for first in 0..BODY.len() {
            for second in first..BODY.len() {
                let pieces = [&BODY[..first], &BODY[first..second], &BODY[second..]];
                assert_eq!(feed(&pieces).unwrap(), Some(BODY.len()));
            }
        }
        let bytes: Vec<&[u8]> = BODY.chunks(1).collect();
        assert_eq!(feed(&bytes).unwrap(), Some(BODY.len()));
    }

    #[test]
    fn incomplete_body_is_not_done() {
        assert_eq!(feed(&[b"5\r\nhel"]).unwrap(), None);
        assert_eq!(feed(&[b"0\r\n"]).unwrap(), None);
    }

    #[test]
    fn bad_sizes_and_framing() {
        assert_eq!(feed(&[b"zz\r\n"]), Err(ChunkedError::InvalidSize));
        assert_eq!(feed(&[b"-1\r\n"]), Err(ChunkedError::InvalidSize));
        assert_eq!(feed(&[b"fffffffffffffffff\r\n"]), Err(ChunkedError::InvalidSize));
        assert_eq!(feed(&[b"3\r\nabcX"]), Err(ChunkedError::MissingCrlf));
        assert_eq!(feed(&[b"3\r\nabc\rX"]), Err(ChunkedError::MissingCrlf));
        let long_ext = [&b"5;"[..], &vec![b'a'; LINE_BYTES_MAX][..]].concat();
        assert_eq!(feed(&[&long_ext]), Err(ChunkedError::LineTooLong));
        let long_trailer = [&b"0\r\n"[..], &vec![b'a'; LINE_BYTES_MAX][..]].concat();
        assert_eq!(feed(&[&long_trailer]), Err(ChunkedError::LineTooLong));
    }
}
