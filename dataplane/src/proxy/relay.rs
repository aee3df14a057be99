//! Streams one message body from a source to a sink, with backpressure: each write completes
//! before the next read, so a slow reader never makes the gateway buffer more than one read.

use std::time::Duration;

use crate::http::BodyFraming;
use crate::http::chunked::{self, ChunkedError, ChunkedScanner};
use crate::io::{ReadError, Stream, read_within};

/// Bytes read per body read: large enough for few syscalls, small enough per connection.
pub(crate) const BODY_READ_BYTES: usize = 16 * 1024;

/// What watches the body bytes a relay sends, without ever making the sink wait: the response
/// cache's bounded tee, the token metrics' usage scanner.
pub(crate) trait BodyTap {
    fn push(&mut self, bytes: &[u8]);
}

impl BodyTap for crate::cache::entry::Tee {
    fn push(&mut self, bytes: &[u8]) {
        crate::cache::entry::Tee::push(self, bytes);
    }
}

impl BodyTap for crate::llm::UsageScanner {
    fn push(&mut self, bytes: &[u8]) {
        crate::llm::UsageScanner::push(self, bytes);
    }
}

impl<A: BodyTap, B: BodyTap> BodyTap for (Option<&mut A>, Option<&mut B>) {
    fn push(&mut self, bytes: &[u8]) {
        if let Some(a) = self.0.as_deref_mut() {
            a.push(bytes);
        }
        if let Some(b) = self.1.as_deref_mut() {
            b.push(bytes);
        }
    }
}

/// Why a relay stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    #[error("source read: {0}")]
    Read(ReadError),
    #[error("source closed before the body ended")]
    Truncated,
    #[error("sink write: {0}")]
    Write(std::io::Error),
    #[error("chunked framing: {0}")]
    Chunked(ChunkedError),
    #[error("the body is larger than the limit")]
    TooLarge,
}

/// Relays the body that starts at `buf[start..]` (bytes already read) and continues on `source`.
/// Returns the buffer, the offset in it where the body ended (what follows belongs to the next
/// message) and the body bytes relayed (as on the wire: a chunked body with its framing; what a
/// bandwidth quota counts). The message head before `start` stays where it is (later phases read it
/// through the parsed head's offsets); relayed body bytes are dropped from the buffer as it
/// goes, so a large body streams through a bounded buffer. A chunked body is cut off (before the
/// chunk that crosses it is relayed) once its decoded size passes `body_bytes_max`; a
/// Content-Length body was checked against the limit before. `tee`: what watches the bytes that
/// went to the sink (the response cache's bounded copy, the usage scanner); the sink never waits
/// for it.
#[allow(clippy::too_many_arguments, reason = "the relay's settings, each a plain value")]
pub(crate) async fn relay<R: Stream, W: Stream>(
    source: &mut R,
    sink: &mut W,
    mut buf: Vec<u8>,
    mut start: usize,
    framing: BodyFraming,
    read_limit: Duration,
    body_bytes_max: u64,
    mut tee: Option<&mut dyn BodyTap>,
) -> (Result<(usize, u64), RelayError>, Vec<u8>) {
    let mut relayed = 0u64;
    let mut remaining = match framing {
        BodyFraming::Length(length) => length,
        _ => 0,
    };
    let mut scanner = ChunkedScanner::new();
    let head_end = start;
    loop {
        let available = buf.get(start..).unwrap_or(&[]);
        let (take, done) = match framing {
            BodyFraming::None => (0, true),
            BodyFraming::Length(_) => {
                let take = remaining.min(available.len() as u64);
                remaining -= take;
                (take as usize, remaining == 0)
            }
            BodyFraming::Chunked => match scanner.scan(available) {
                Ok(_) if scanner.data_bytes() > body_bytes_max => return (Err(RelayError::TooLarge), buf),
                Ok(scan) => (scan.consumed, scan.done),
                Err(error) => return (Err(RelayError::Chunked(error)), buf),
            },
            BodyFraming::UntilClose => (available.len(), false),
        };
        if take > 0 {
            let (result, returned) = sink.write_range(buf, start..start + take).await;
            buf = returned;
            if let Err(error) = result {
                return (Err(RelayError::Write(error)), buf);
            }
            if let (Some(tee), Some(sent)) = (tee.as_deref_mut(), buf.get(start..start + take)) {
                tee.push(sent);
            }
            start += take;
            relayed += take as u64;
        }
        if done {
            return (Ok((start, relayed)), buf);
        }
        // The body before `start` is relayed; what is left of it is a split chunk line.
        buf.drain(head_end..start);
        start = head_end;
        if buf.len() - head_end >= chunked::LINE_BYTES_MAX {
            return (Err(RelayError::Chunked(ChunkedError::LineTooLong)), buf);
        }
        if buf.capacity() - buf.len() < BODY_READ_BYTES {
            buf.reserve(BODY_READ_BYTES);
        }
        let (result, returned) = read_within(source, buf, read_limit).await;
        buf = returned;
        match result {
            Ok(0) if framing == BodyFraming::UntilClose => return (Ok((0, relayed)), buf),
            Ok(0) => return (Err(RelayError::Truncated), buf),
            Ok(_) => {}
            Err(error) => return (Err(RelayError::Read(error)), buf),
        }
    }
}

/// Where the body that starts at `buf[start..]` ends, if all of it is already buffered.
pub(crate) fn buffered_end(buf: &[u8], start: usize, framing: BodyFraming) -> Option<usize> {
    let available = buf.get(start..)?;
    match framing {
        BodyFraming::None => Some(start),
        BodyFraming::Length(length) => {
            usize::try_from(length).ok().filter(|&length| length <= available.len()).map(|length| start + length)
        }
        BodyFraming::Chunked => {
            let scan = ChunkedScanner::new().scan(available).ok()?;
            scan.done.then_some(start + scan.consumed)
        }
        BodyFraming::UntilClose => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_end_by_framing() {
        let buf = b"HEADbody5\r\nhello\r\n0\r\n\r\nNEXT";
        assert_eq!(buffered_end(buf, 4, BodyFraming::None), Some(4));
        assert_eq!(buffered_end(buf, 4, BodyFraming::Length(4)), Some(8));
        assert_eq!(buffered_end(buf, 4, BodyFraming::Length(1000)), None);
        assert_eq!(buffered_end(buf, 8, BodyFraming::Chunked), Some(buf.len() - 4));
        assert_eq!(buffered_end(&buf[..12], 8, BodyFraming::Chunked), None);
        assert_eq!(buffered_end(buf, 4, BodyFraming::Chunked), None);
        assert_eq!(buffered_end(buf, 4, BodyFraming::UntilClose), None);
    }
}
