//! The management API's report parameters (management/src/api/reports/query.rs) on arbitrary
//! text, as any token holder can send them: `$filter` and `interval` parse without panicking (no
//! slicing inside a character, no overflow in durations or timestamps), deterministically, and
//! what they accept is within their rules.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_management::api::{parse_report_filter, parse_report_interval};

/// 15 minutes: every accepted interval is a non-zero multiple of it.
const STEP_MS: i64 = 15 * 60 * 1000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_report_filter(Some(&text));
    assert_eq!(parsed, parse_report_filter(Some(&text)), "the same text parses the same");
    if let Ok(query) = parsed {
        assert!(query.from_ms <= query.to_ms, "an accepted range is not empty: {query:?}");
    }
    if let Ok(interval) = parse_report_interval(Some(&text)) {
        assert!(interval > 0 && interval % STEP_MS == 0, "{text:?} gave {interval} ms");
    }
});
