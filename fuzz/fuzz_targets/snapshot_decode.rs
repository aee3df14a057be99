//! Snapshot decoding and loading on arbitrary bytes: what the data plane does with a memfd from
//! control or its last-good file (header, length, checksum, postcard payload, `Config::validate`),
//! then the parts of building the in-memory snapshot that do no I/O (policy programs verified
//! and loaded, router, operation templates, TLS server configuration). An error, never a panic.
//!
//! The first byte picks the form of the rest: even, a whole snapshot file; odd, a payload alone,
//! which is given a correct header (length and checksum) so that mutations reach the decoder
//! instead of dying at the checksum.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_contract::model::Config;
use portcullis_contract::snapshot::{self, FORMAT_VERSION, HEADER_LEN, MAGIC};
use portcullis_dataplane::http::url::Target;
use portcullis_dataplane::policy::Programs;
use portcullis_dataplane::router::Router;
use portcullis_dataplane::router::operation::Operations;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let bytes = if selector & 1 == 0 { rest.to_vec() } else { with_header(rest) };
    let Ok((header, config)) = snapshot::decode(&bytes) else { return };
    assert!(header.generation > 0);
    assert_eq!(header.payload_len as usize, bytes.len() - HEADER_LEN);
    check_round_trip(&config);
    load(&config);
});

/// `payload` behind a header that is right for it (generation 1), as control writes it.
fn with_header(payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    bytes.extend_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32(payload).to_le_bytes());
    bytes.resize(HEADER_LEN, 0);
    bytes.extend_from_slice(payload);
    bytes
}

/// CRC-32 (IEEE), bit by bit: the harness must not trust the code under test to make its input.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A decoded config encodes again to a snapshot that decodes to the same payload.
fn check_round_trip(config: &Config) {
    let encoded =
        snapshot::encode(7, config).unwrap_or_else(|error| panic!("a decoded config does not encode: {error}"));
    let (header, again) =
        snapshot::decode(&encoded).unwrap_or_else(|error| panic!("a re-encoded config does not decode: {error}"));
    assert_eq!(header.generation, 7);
    // Payloads, not configs: a NaN constant is unequal to itself.
    assert_eq!(postcard::to_stdvec(config).ok(), postcard::to_stdvec(&again).ok());
}

/// What `Snapshot::build` does without resolving hosts or reading the system's CA store.
fn load(config: &Config) {
    // A validated config holds only verified programs; a regex may still be refused.
    let _ = Programs::load(&config.programs);
    let router = Router::new(config);
    for api in &config.apis {
        let operations = Operations::new(api);
        // Each operation's own template as a request target (its `{param}`s taken literally).
        for operation in &api.operations {
            let target = format!("/{}{}", api.path, operation.url_template);
            let Some(route) = router.route(target.as_bytes()) else { continue };
            assert!((route.api as usize) < config.apis.len());
            // As the proxy reads it (dataplane/src/proxy/lifecycle.rs).
            let path_end = Target::parse(target.as_bytes()).path().len();
            let path = target.as_bytes().get(route.remainder..path_end).unwrap_or(&[]);
            let _ = operations.find(operation.method.as_bytes(), path, route.remainder);
        }
    }
    let _ = portcullis_dataplane::tls::server_config(&config.tls);
}
