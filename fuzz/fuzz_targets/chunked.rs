//! The chunked-body scanner and decoder on arbitrary bytes, fed in arbitrary splits.
//!
//! The first byte is the number of cuts (0–7), the next that many bytes the piece lengths; the
//! rest is the body. Checked: feeding the pieces as the proxy does (unconsumed bytes kept, the
//! next read appended) ends exactly as one scan of the whole input; a body the scanner accepts
//! decodes, to as many bytes as the scanner counted; the decoder never panics on anything.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_dataplane::http::chunked::{self, ChunkedError, ChunkedScanner};

/// How a body ended after all its bytes were fed.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Ended after this many bytes; the scanner counted this many data bytes.
    Done {
        len: usize,
        data_bytes: u64,
    },
    /// Not ended: this many bytes consumed (the rest is a partial line kept for the next read).
    Open {
        consumed: usize,
        data_bytes: u64,
    },
    Failed(ChunkedError),
}

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else { return };
    let cuts = usize::from(cuts % 8).min(rest.len());
    let (lengths, body) = rest.split_at(cuts);
    let whole = feed(body, &[]);
    let split = feed(body, lengths);
    assert_eq!(whole, split, "one scan and the split scan disagree");
    if let Outcome::Done { len, data_bytes } = whole {
        let decoded = chunked::decode(&body[..len], data_bytes as usize);
        let decoded = decoded.unwrap_or_else(|error| panic!("a body the scanner accepted does not decode: {error}"));
        assert_eq!(decoded.len() as u64, data_bytes, "decoded size differs from the scanner's count");
        // Trailing bytes (the next message) do not change what the body decodes to.
        assert_eq!(chunked::decode(body, data_bytes as usize).ok(), Some(decoded));
    } else {
        // Anything else decodes or fails, but never panics.
        let _ = chunked::decode(body, 0);
    }
});

/// Feeds `body` in pieces of `lengths` (then the rest) as the proxy does.
fn feed(body: &[u8], lengths: &[u8]) -> Outcome {
    let mut scanner = ChunkedScanner::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut consumed = 0;
    let mut rest = body;
    let pieces = lengths.iter().map(|&length| usize::from(length)).chain(std::iter::once(usize::MAX));
    for length in pieces {
        let (piece, after) = rest.split_at(length.min(rest.len()));
        rest = after;
        pending.extend_from_slice(piece);
        let scan = match scanner.scan(&pending) {
            Ok(scan) => scan,
            Err(error) => return Outcome::Failed(error),
        };
        assert!(scan.consumed <= pending.len());
        assert_eq!(scan.done, scanner.is_done());
        consumed += scan.consumed;
        pending.drain(..scan.consumed);
        if scan.done {
            return Outcome::Done { len: consumed, data_bytes: scanner.data_bytes() };
        }
    }
    Outcome::Open { consumed, data_bytes: scanner.data_bytes() }
}
