//! The backend response head parser on arbitrary bytes: a head, "read more" or an error, never
//! a panic; what it returns must be true of the bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_dataplane::http::response::{self, ResponseHead};
use portcullis_dataplane::http::{BodyFraming, HEAD_BYTES_MAX, HEADERS_MAX};

fuzz_target!(|data: &[u8]| {
    match response::parse(data) {
        Ok(Some(head)) => check_head(data, &head),
        Ok(None) => assert!(data.len() < HEAD_BYTES_MAX, "a partial head at the size limit must be refused"),
        Err(_) => {}
    }
});

fn check_head(buf: &[u8], head: &ResponseHead) {
    let len = head.head_len();
    assert!(len <= buf.len() && len <= HEAD_BYTES_MAX, "head length {len} outside the buffer or limit");
    assert!(head.headers().len() <= HEADERS_MAX);
    for header in head.headers() {
        for span in [header.name, header.value] {
            assert!(span.start() <= span.end() && span.end() <= len, "header span {span:?} outside the head ({len})");
        }
    }
    assert!(head.status() <= 999);
    assert!(head.reason(buf).len() < len);
    for request_was_head in [false, true] {
        let framing = head.framing(request_was_head);
        if request_was_head || head.is_interim() || matches!(head.status(), 101 | 204 | 304) {
            assert_eq!(framing, BodyFraming::None);
        }
        if let BodyFraming::Length(length) = framing {
            assert!(length > 0);
        }
    }
    // The head alone parses the same; a head cut short is "read more".
    let Ok(Some(again)) = response::parse(&buf[..len]) else { panic!("the head alone does not parse to a head") };
    assert_eq!(again.head_len(), len);
    assert_eq!(again.status(), head.status());
    assert_eq!(again.headers(), head.headers());
    assert_eq!(again.framing(false), head.framing(false));
    assert_eq!(again.keep_alive(), head.keep_alive());
    for cut in [0, 1, len / 2, len.saturating_sub(2), len - 1] {
        if cut < len {
            let prefix = response::parse(&buf[..cut]);
            assert!(matches!(prefix, Ok(None)), "the first {cut} bytes of a {len}-byte head give {prefix:?}");
        }
    }
}
