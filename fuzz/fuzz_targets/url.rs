//! URL targets and percent-coding (dataplane/src/http/url.rs) on arbitrary bytes, under both
//! codings: nothing panics; the target's parts put back together are the target; every decoding
//! entry point agrees with the others; decode(encode(x)) == x.

#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use portcullis_dataplane::http::url::{
    Coding, Target, decoded, decodes_to, needs_decoding, percent_decode, percent_decode_into, percent_decode_str,
    percent_encode, query_pairs,
};

fuzz_target!(|data: &[u8]| {
    check_target(data);
    for coding in [Coding::Rfc3986, Coding::Form] {
        check_decoding(data, coding);
        check_round_trip(data, coding);
    }
});

/// The parts of a target are its bytes, split (nothing lost, nothing added).
fn check_target(data: &[u8]) {
    let target = Target::parse(data);
    let mut origin = target.path().to_vec();
    if let Some(query) = target.query() {
        origin.push(b'?');
        origin.extend_from_slice(query);
    }
    if let Some(fragment) = target.fragment() {
        origin.push(b'#');
        origin.extend_from_slice(fragment);
    }
    assert_eq!(origin, target.origin_form(), "path, query and fragment do not make the origin form");
    assert!(!target.path().iter().any(|&b| b == b'?' || b == b'#'));
    match (target.scheme(), target.authority()) {
        (Some(scheme), Some(authority)) => {
            let whole = [scheme, b"://", authority, target.origin_form()].concat();
            assert_eq!(whole, data, "scheme, authority and origin form do not make the target");
        }
        (None, None) => assert_eq!(target.origin_form(), data),
        _ => panic!("a scheme without an authority or the reverse"),
    }
    if let Some(query) = target.query() {
        for (name, value) in query_pairs(query) {
            assert!(!name.contains(&b'&') && !value.contains(&b'&') && !name.contains(&b'='));
            assert!(!name.is_empty() || !value.is_empty() || query.contains(&b'='));
        }
    }
}

/// Every way to decode gives the same bytes.
fn check_decoding(data: &[u8], coding: Coding) {
    let iterated: Vec<u8> = decoded(data, coding).collect();
    let (low, high) = decoded(data, coding).size_hint();
    assert!(low <= iterated.len() && high.is_none_or(|high| iterated.len() <= high), "size_hint is wrong");
    assert!(iterated.len() <= data.len(), "decoding lengthened the input");
    let decoded = percent_decode(data, coding);
    assert_eq!(&*decoded, &iterated[..]);
    assert_eq!(matches!(decoded, Cow::Owned(_)), needs_decoding(data, coding));
    if !needs_decoding(data, coding) {
        assert_eq!(&*decoded, data);
    }
    assert!(decodes_to(data, coding, &iterated));
    let mut out = vec![0; data.len()];
    assert_eq!(percent_decode_into(data, coding, &mut out), Some(iterated.len()));
    assert_eq!(&out[..iterated.len()], &iterated[..]);
    if let Some(short) = iterated.len().checked_sub(1) {
        assert_eq!(percent_decode_into(data, coding, &mut out[..short]), None, "a short buffer must be refused");
        assert!(!decodes_to(data, coding, &iterated[..short]));
    }
    let text = percent_decode_str(data, coding);
    match std::str::from_utf8(&iterated) {
        Ok(valid) => assert_eq!(&*text, valid),
        Err(_) => assert_eq!(*text, *String::from_utf8_lossy(&iterated)),
    }
}

/// Encoding writes only what the coding keeps, `%XX` (upper-case hex) and, in forms, `+`; and
/// decodes back to the input.
fn check_round_trip(data: &[u8], coding: Coding) {
    let encoded = percent_encode(data, coding).to_string();
    let mut bytes = encoded.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let (high, low) = (bytes.next(), bytes.next());
                let hex = |digit: Option<u8>| digit.is_some_and(|d| d.is_ascii_digit() || (b'A'..=b'F').contains(&d));
                assert!(hex(high) && hex(low), "bad escape in {encoded:?}");
            }
            b'+' => assert_eq!(coding, Coding::Form),
            b => assert!(b.is_ascii_alphanumeric() || b"-._~!*()".contains(&b), "{b:#x} written as itself"),
        }
    }
    assert_eq!(percent_decode(encoded.as_bytes(), coding), data, "decode(encode(x)) != x");
    assert!(decodes_to(encoded.as_bytes(), coding, data));
}
