//! W3C Trace Context (`traceparent`, <https://www.w3.org/TR/trace-context/>), sans IO: the strict
//! parser, the 55-byte formatter, and the worker-local id generator.

use std::cell::Cell;

/// Bytes of a version-00 `traceparent`: `00-` + 32 + `-` + 16 + `-` + 2.
pub const TRACEPARENT_BYTES: usize = 55;
/// The `sampled` bit of the trace flags.
pub const FLAG_SAMPLED: u8 = 0x01;
/// The version the spec forbids.
const VERSION_INVALID: u8 = 0xff;

/// What a client's `traceparent` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: [u8; 16],
    /// The caller's span (our SERVER span's parent).
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl Parent {
    /// The caller sampled the trace.
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
}

/// Parses a `traceparent` value strictly; `None` for anything invalid (treated as absent).
/// Version 00 must be exactly 55 bytes; a higher version is read by its first four fields (and
/// may carry more after a `-`).
pub fn parse(value: &[u8]) -> Option<Parent> {
    let value = trim_ows(value);
    if value.len() < TRACEPARENT_BYTES {
        return None;
    }
    let version = hex_byte(value.get(0..2)?)?;
    let exact = value.len() == TRACEPARENT_BYTES;
    match version {
        VERSION_INVALID => return None,
        0 if !exact => return None,
        _ if !exact && value.get(TRACEPARENT_BYTES) != Some(&b'-') => return None,
        _ => {}
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut span_id = [0u8; 8];
    decode_hex(&value[3..35], &mut trace_id)?;
    decode_hex(&value[36..52], &mut span_id)?;
    let flags = hex_byte(&value[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Parent { trace_id, span_id, flags })
}

/// Formats a version-00 `traceparent`.
pub fn format(trace_id: &[u8; 16], span_id: &[u8; 8], flags: u8) -> [u8; TRACEPARENT_BYTES] {
    let mut out = [0u8; TRACEPARENT_BYTES];
    out[0..3].copy_from_slice(b"00-");
    encode_hex(trace_id, &mut out[3..35]);
    out[35] = b'-';
    encode_hex(span_id, &mut out[36..52]);
    out[52] = b'-';
    encode_hex(&[flags], &mut out[53..55]);
    out
}

/// Lowercase hex of `bytes` into `out` (twice as long).
pub fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

fn decode_hex(text: &[u8], out: &mut [u8]) -> Option<()> {
    for (pair, byte) in text.chunks_exact(2).zip(out.iter_mut()) {
        *byte = hex_byte(pair)?;
    }
    Some(())
}

/// Two lowercase hex digits (the spec allows no uppercase).
fn hex_byte(pair: &[u8]) -> Option<u8> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    Some(digit(*pair.first()?)? << 4 | digit(*pair.get(1)?)?)
}

fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value.iter().position(|c| !matches!(c, b' ' | b'\t')).unwrap_or(value.len());
    let end = value.iter().rposition(|c| !matches!(c, b' ' | b'\t')).map_or(start, |i| i + 1);
    &value[start..end]
}

thread_local! {
    /// This thread's generator state; seeded from getrandom on first use (once per worker).
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A random `u64` from the thread's generator (splitmix64: no syscall per call).
pub fn random_u64() -> u64 {
    RNG.with(|state| {
        let mut seed = state.get();
        if seed == 0 {
            let mut bytes = [0u8; 8];
            // A failure leaves a fixed but still distinct-per-thread seed (the state's address).
            if getrandom::fill(&mut bytes).is_err() {
                bytes = (std::ptr::from_ref(state) as u64).to_le_bytes();
            }
            seed = u64::from_le_bytes(bytes) | 1;
        }
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(seed);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// A new, non-zero trace id.
pub fn new_trace_id() -> [u8; 16] {
    let high = random_u64();
    let low = random_u64() | 1;
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&high.to_be_bytes());
    id[8..].copy_from_slice(&low.to_be_bytes());
    id
}

/// A new, non-zero span id.
pub fn new_span_id() -> [u8; 8] {
    (random_u64() | 1).to_be_bytes()
}

/// A uniform sample in `[0, 1)`.
pub fn random_unit() -> f64 {
    // 53 random bits: the mantissa of an f64.
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let parent = parse(VALID).unwrap();
        assert_eq!(parent.trace_id[0], 0x4b);
        assert_eq!(parent.span_id, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert!(parent.sampled());
        assert_eq!(&format(&parent.trace_id, &parent.span_id, parent.flags)[..], VALID);
        assert_eq!(
            parse(b"  00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00\t").map(|p| p.sampled()),
            Some(false)
        );
    }

    #[test]
    fn refuses_invalid_values() {
        let invalid: [&[u8]; 10] = [
            b"",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            b"0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for value in invalid {
            assert_eq!(parse(value), None, "{}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn reads_future_versions_by_their_first_four_fields() {
        let future = b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        assert!(parse(future).is_some_and(|parent| parent.sampled()));
        assert!(parse(&future[..55]).is_some());
        assert_eq!(parse(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"), None);
    }

    #[test]
    fn ids_are_random_and_never_zero() {
        let (a, b) = (new_trace_id(), new_trace_id());
        assert_ne!(a, b);
        assert_ne!(a, [0; 16]);
        assert_ne!(new_span_id(), [0; 8]);
        let unit = random_unit();
        assert!((0.0..1.0).contains(&unit));
    }
}
