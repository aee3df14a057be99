//! The management API's `$filter` parser (management/src/api/filter.rs) on arbitrary text, as any
//! token holder can send it: nothing panics (no recursion without bound, no slicing inside a
//! character); a parse is deterministic; a parsed filter evaluates on resources of every shape.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_management::api::Filter;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = Filter::parse(&text);
    assert_eq!(parsed, Filter::parse(&text), "the same text parses the same");
    let Ok(filter) = parsed else { return };
    let items = [
        json!({"name": "echo", "properties": {"displayName": "Echo", "path": "echo", "state": "active"}}),
        json!({"name": "x", "properties": {"displayName": null, "path": 3, "scope": ["a"]}}),
        json!({"apiId": "/apis/echo", "notes": "ü"}),
        json!(null),
    ];
    for item in &items {
        let _ = filter.accepts(item);
    }
});
