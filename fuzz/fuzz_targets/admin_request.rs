//! The admin socket's request parser (control/src/admin/protocol.rs) on arbitrary lines, and the
//! address prefixes `block` and `unblock` carry (parsed by the data plane's XDP service with
//! `contract::xdp::IpPrefix::parse`): a request or an error, never a panic; a parsed request
//! written back as a line parses to itself; a parsed prefix printed parses to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_contract::xdp::{self, IpPrefix};
use portcullis_control::admin::protocol::{self, REQUEST_LINE_BYTES_MAX, Request};

fuzz_target!(|data: &[u8]| {
    let parsed = protocol::parse_request(data);
    if data.len() > REQUEST_LINE_BYTES_MAX {
        assert!(parsed.is_err(), "a line over the limit must be refused");
    }
    if let Ok(request) = parsed {
        let line = request.to_line();
        assert!(line.ends_with(b"\n") && !line[..line.len() - 1].contains(&b'\n'), "a request is one line");
        assert_eq!(protocol::parse_request(&line).ok(), Some(request.clone()), "to_line does not parse back");
        if let Request::Block { prefix, .. } | Request::Unblock { prefix } = &request {
            check_prefix(prefix);
        }
    }
    // Prefix text straight from the bytes too: most lines never get that far.
    if let Ok(text) = std::str::from_utf8(data) {
        check_prefix(text);
        if let Ok(prefixes) = xdp::parse_entry(text) {
            for prefix in prefixes {
                assert_eq!(IpPrefix::parse(&prefix.to_string()), Ok(prefix));
            }
        }
    }
});

fn check_prefix(text: &str) {
    if let Ok(prefix) = IpPrefix::parse(text) {
        assert_eq!(IpPrefix::parse(&prefix.to_string()), Ok(prefix), "{text:?} prints as {prefix}");
        assert!(prefix.contains(prefix.addr));
    }
}
