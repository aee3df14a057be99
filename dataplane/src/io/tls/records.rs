//! Where the records of a TLS ciphertext stream end, so that a connection knows whether rustls
//! holds part of a record: rustls 0.23's buffered API keeps a partial record in its own buffer
//! and does not say so, and a connection parks only between records.
//!
//! Only the record header's length is read (RFC 8446 §5.1, RFC 5246 §6.2: content type, legacy
//! version, then a 16-bit length); rustls checks everything else and fails a stream that is not
//! records. A parked connection keeps its rustls state whole, so a wrong answer here could only
//! change when a connection parks, never lose a byte.

/// A record header: content type (1), legacy version (2), length (2).
pub(crate) const RECORD_HEADER_BYTES: usize = 5;

/// How far a ciphertext stream is into its current record.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordBoundary {
    /// The next record's header bytes seen so far: `header[..header_len]`.
    header: [u8; RECORD_HEADER_BYTES],
    header_len: usize,
    /// Bytes of the current record's payload still to come.
    payload_remaining: usize,
}

impl RecordBoundary {
    /// Moves past `bytes`, the next bytes of the stream.
    pub(crate) fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_remaining > 0 {
                let skipped = self.payload_remaining.min(bytes.len());
                self.payload_remaining -= skipped;
                bytes = bytes.get(skipped..).unwrap_or_default();
                continue;
            }
            let taken = (RECORD_HEADER_BYTES - self.header_len).min(bytes.len());
            let (header, rest) = bytes.split_at(taken);
            // header_len + taken <= RECORD_HEADER_BYTES: `taken` is bounded by what the header lacks.
            self.header[self.header_len..self.header_len + taken].copy_from_slice(header);
            self.header_len += taken;
            bytes = rest;
            if self.header_len == RECORD_HEADER_BYTES {
                let [_, _, _, high, low] = self.header;
                self.payload_remaining = usize::from(u16::from_be_bytes([high, low]));
                self.header_len = 0;
            }
        }
    }

    /// Whether the bytes so far end exactly where a record ends (or none came yet).
    pub(crate) fn at_boundary(&self) -> bool {
        self.header_len == 0 && self.payload_remaining == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of `payload` bytes (content type 23, TLS 1.2 legacy version).
    fn record(payload: usize) -> Vec<u8> {
        let mut bytes = vec![23, 3, 3];
        bytes.extend_from_slice(&u16::try_from(payload).unwrap_or(u16::MAX).to_be_bytes());
        bytes.resize(RECORD_HEADER_BYTES + payload, 0xaa);
        bytes
    }

    #[test]
    fn whole_records_end_at_a_boundary() {
        let mut boundary = RecordBoundary::default();
        assert!(boundary.at_boundary());
        let stream = [record(100), record(0), record(16_401)].concat();
        boundary.advance(&stream);
        assert!(boundary.at_boundary());
    }

    #[test]
    fn every_split_of_two_records_is_inside_one_until_the_end() {
        let stream = [record(3), record(7)].concat();
        let first_end = RECORD_HEADER_BYTES + 3;
        for split in 0..=stream.len() {
            let mut boundary = RecordBoundary::default();
            boundary.advance(&stream[..split]);
            let expected = split == 0 || split == first_end || split == stream.len();
            assert_eq!(boundary.at_boundary(), expected, "after {split} bytes");
            boundary.advance(&stream[split..]);
            assert!(boundary.at_boundary(), "all of it, split at {split}");
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_answers() {
        let stream = [record(1), record(300), record(2)].concat();
        let mut boundary = RecordBoundary::default();
        let mut boundaries = Vec::new();
        for (at, byte) in stream.iter().enumerate() {
            boundary.advance(std::slice::from_ref(byte));
            if boundary.at_boundary() {
                boundaries.push(at + 1);
            }
        }
        assert_eq!(boundaries, [6, 6 + 305, 6 + 305 + 7]);
    }
}
