//! The W3C `traceparent` parser (dataplane/src/trace/context.rs) on arbitrary bytes: nothing
//! panics; whatever it accepts has non-zero ids, and formatting it as version 00 and parsing that
//! again gives the same trace id, span id and flags; an accepted version-00 value is the
//! formatted one, up to surrounding whitespace.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_dataplane::trace::context::{TRACEPARENT_BYTES, format, parse};

fuzz_target!(|data: &[u8]| {
    let Some(parent) = parse(data) else { return };
    assert_ne!(parent.trace_id, [0; 16], "an all-zero trace id was accepted");
    assert_ne!(parent.span_id, [0; 8], "an all-zero span id was accepted");
    let formatted = format(&parent.trace_id, &parent.span_id, parent.flags);
    assert_eq!(parse(&formatted), Some(parent), "format then parse changed the context");
    let trimmed = data.trim_ascii();
    if trimmed.starts_with(b"00-") {
        assert_eq!(trimmed.len(), TRACEPARENT_BYTES, "version 00 with extra bytes was accepted");
        assert_eq!(trimmed, &formatted[..], "version 00 accepted in another spelling");
    }
});
