//! A sans-IO scanner for chunked bodies: finds where a chunked body ends without changing it.
//!
//! The proxy passes chunked bodies through byte for byte; it only needs to know where the body
//! ends so the connection can carry the next message. The scanner consumes whole chunk-size
//! and trailer lines only: when a line is split across reads it reports the bytes before it as
//! consumed and the caller keeps the partial line buffered (bounded by [`LINE_BYTES_MAX`]).

use crate::http::is_tchar;

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
    #[error("invalid chunk extension")]
    InvalidExtension,
    #[error("a chunk-size or trailer line does not end in CRLF")]
    BareLineEnd,
    #[error("invalid trailer field")]
    InvalidTrailer,
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
    /// Chunk data bytes seen so far (the body's decoded size).
    data_bytes: u64,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedScanner {
    /// A scanner at the start of a body.
    pub fn new() -> Self {
        Self { state: State::Size, data_bytes: 0 }
    }

    /// Chunk data bytes seen so far: the size of the decoded body, for body-size limits.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
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
                State::Size => match rest.iter().position(|&b| b == b'\n') {
                    Some(newline) if newline >= LINE_BYTES_MAX => return Err(ChunkedError::LineTooLong),
                    Some(newline) => {
                        let size = size_line(&rest[..newline])?;
                        at += newline + 1;
                        self.state = if size == 0 { State::Trailer } else { State::Data(size) };
                    }
                    None => return self.partial_line(at, rest),
                },
                State::Data(left) => {
                    let take = left.min(rest.len() as u64);
                    at += take as usize;
                    self.data_bytes = self.data_bytes.saturating_add(take);
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
                        let line = strip_cr(&rest[..newline])?;
                        at += newline + 1;
                        if line.is_empty() {
                            self.state = State::Done;
                        } else if !is_field_line(line) {
                            return Err(ChunkedError::InvalidTrailer);
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

/// The data of a whole chunked body (what [`ChunkedScanner`] found complete and valid), without
/// its framing, extensions and trailers: what policies read as the request body. `size_hint` is
/// the scanner's [`ChunkedScanner::data_bytes`], to allocate once.
pub fn decode(body: &[u8], size_hint: usize) -> Result<Vec<u8>, ChunkedError> {
    let mut data = Vec::with_capacity(size_hint);
    let mut rest = body;
    loop {
        let newline = rest.iter().position(|&b| b == b'\n').ok_or(ChunkedError::BareLineEnd)?;
        if newline >= LINE_BYTES_MAX {
            return Err(ChunkedError::LineTooLong);
        }
        let size = size_line(&rest[..newline])?;
        rest = &rest[newline + 1..];
        if size == 0 {
            // Trailers are not part of the body.
            return Ok(data);
        }
        let size = usize::try_from(size).map_err(|_| ChunkedError::InvalidSize)?;
        let chunk = rest.get(..size).ok_or(ChunkedError::MissingCrlf)?;
        if rest.get(size..size + 2) != Some(b"\r\n") {
            return Err(ChunkedError::MissingCrlf);
        }
        data.extend_from_slice(chunk);
        rest = &rest[size + 2..];
    }
}

/// A line without its final CR; a line that does not end in CRLF is refused (no bare LF: a
/// backend that reads lines differently must never see a different body than we do).
fn strip_cr(line: &[u8]) -> Result<&[u8], ChunkedError> {
    match line.split_last() {
        Some((b'\r', content)) if !content.contains(&b'\r') => Ok(content),
        _ => Err(ChunkedError::BareLineEnd),
    }
}

/// Parses `chunk-size *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ) CR` (RFC 9112 §7.1):
/// 1 to 16 hex digits, nothing before them, extensions well-formed.
fn size_line(line: &[u8]) -> Result<u64, ChunkedError> {
    let line = strip_cr(line)?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(ChunkedError::InvalidSize);
    }
    let size = line[..digits].iter().fold(0u64, |acc, &b| (acc << 4) | u64::from(hex_value(b)));
    let mut rest = &line[digits..];
    loop {
        rest = skip_whitespace(rest);
        let Some((b';', after)) = rest.split_first() else {
            return if rest.is_empty() { Ok(size) } else { Err(ChunkedError::InvalidSize) };
        };
        let after = skip_whitespace(after);
        let name = after.iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 {
            return Err(ChunkedError::InvalidExtension);
        }
        rest = skip_whitespace(&after[name..]);
        if let Some((b'=', value)) = rest.split_first() {
            let value = skip_whitespace(value);
            let len = extension_value_len(value).ok_or(ChunkedError::InvalidExtension)?;
            rest = &value[len..];
        }
    }
}

/// Length of a token or quoted-string at the start of `value`.
fn extension_value_len(value: &[u8]) -> Option<usize> {
    if value.first() != Some(&b'"') {
        let token = value.iter().take_while(|&&b| is_tchar(b)).count();
        return (token > 0).then_some(token);
    }
    let mut at = 1;
    while let Some(&b) = value.get(at) {
        match b {
            b'"' => return Some(at + 1),
            b'\\' if value.get(at + 1).is_some_and(|&next| next == b'\t' || next >= 0x20 && next != 0x7f) => at += 2,
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => at += 1,
            _ => return None,
        }
    }
    None
}

/// A trailer `name: value` line: a token name, a colon, then no control bytes but HTAB.
fn is_field_line(line: &[u8]) -> bool {
    let name = line.iter().take_while(|&&b| is_tchar(b)).count();
    name > 0
        && line.get(name) == Some(&b':')
        && line[name + 1..].iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

fn skip_whitespace(bytes: &[u8]) -> &[u8] {
    let spaces = bytes.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &bytes[spaces..]
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b.wrapping_sub(b'A').wrapping_add(10) & 0x0f,
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

    #[test]
    fn strict_lines_refuse_what_backends_could_read_differently() {
        // Sizes: no sign, no prefix, no leading whitespace, at most 16 digits.
        for bad in [&b" 5\r\n"[..], b"+5\r\n", b"0x5\r\n", b"5 x\r\n", b"\r\n", b"00000000000000005\r\n"] {
            assert_eq!(feed(&[bad]), Err(ChunkedError::InvalidSize), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(feed(&[b"0000000000000005\r\nhello\r\n0\r\n\r\n"]).unwrap(), Some(30));
        assert_eq!(feed(&[b"A\r\n0123456789\r\n0\r\n\r\n"]).unwrap(), Some(20));
        // Bare LF or bare CR in size and trailer lines.
        assert_eq!(feed(&[b"5\nhello\r\n"]), Err(ChunkedError::BareLineEnd));
        assert_eq!(feed(&[b"5;a=b\rc\r\n"]), Err(ChunkedError::BareLineEnd));
        assert_eq!(feed(&[b"0\r\n\n"]), Err(ChunkedError::BareLineEnd));
        assert_eq!(feed(&[b"0\r\nT: v\n\r\n"]), Err(ChunkedError::BareLineEnd));
        // Extensions: names are tokens, values tokens or quoted strings.
        assert_eq!(feed(&[b"1 ; a = \"q \\\" s\" ; b\r\nx\r\n0\r\n\r\n"]).unwrap().map(|_| ()), Some(()));
        for bad in [&b"1;\r\n"[..], b"1;=x\r\n", b"1;a=\r\n", b"1;a=\"open\r\n", b"1;a=b c\r\n", b"1;a\x00\r\n"] {
            assert!(feed(&[bad]).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // Trailers are field lines.
        assert_eq!(feed(&[b"0\r\nno colon\r\n\r\n"]), Err(ChunkedError::InvalidTrailer));
        assert_eq!(feed(&[b"0\r\n: v\r\n\r\n"]), Err(ChunkedError::InvalidTrailer));
        assert_eq!(feed(&[b"0\r\nX: a\x01\r\n\r\n"]), Err(ChunkedError::InvalidTrailer));
    }

    #[test]
    fn decodes_the_data_of_a_whole_body() {
        assert_eq!(decode(BODY, 31).unwrap(), b"helloabcdefghijklmnopqrstuvwxyz");
        assert_eq!(decode(b"0\r\n\r\n", 0).unwrap(), b"");
        assert_eq!(decode(b"3\r\nabc\r\n", 3), Err(ChunkedError::BareLineEnd), "no last chunk");
        assert_eq!(decode(b"3\r\nab", 3), Err(ChunkedError::MissingCrlf));
        assert_eq!(decode(b"3\r\nabcX\r\n0\r\n\r\n", 3), Err(ChunkedError::MissingCrlf));
        assert_eq!(decode(b"x\r\n", 0), Err(ChunkedError::InvalidSize));
    }

    #[test]
    fn counts_decoded_bytes() {
        let mut scanner = ChunkedScanner::new();
        scanner.scan(BODY).unwrap();
        assert_eq!(scanner.data_bytes(), 5 + 26);
    }
}
