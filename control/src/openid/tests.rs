use std::time::{Duration, Instant};

use portcullis_contract::jwt::{JwtKey, JwtRule, KeyMaterial, OpenIdKeySet, TokenSource};
use portcullis_contract::model::Config;
use portcullis_contract::program::Program;
use serde_json::json;

use super::fetch::parse_jwks;
use super::*;

const URL: &str = "https://idp.test/.well-known/openid-configuration";

fn config() -> Config {
    let rule =
        JwtRule { openid_urls: vec![URL.into(), URL.into()], ..JwtRule::new("validate-jwt", TokenSource::Value) };
    let mut config = Config::empty("test");
    config.programs.push(Program { jwt: vec![rule], ..Program::empty() });
    config
}

fn set(kid: &str) -> OpenIdKeySet {
    OpenIdKeySet {
        url: URL.into(),
        issuer: Some("https://idp.test".into()),
        keys: vec![JwtKey { id: Some(kid.into()), material: KeyMaterial::Rsa { n: vec![1], e: vec![1] } }],
    }
}

#[test]
fn a_url_is_fetched_at_load_then_hourly_and_after_failures_or_misses_at_most_every_five_minutes() {
    let config = config();
    let store = Store::default();
    let start = Instant::now();
    assert_eq!(store.due(&config, start), [URL]);
    assert!(store.succeeded(set("k1"), start));
    assert!(store.due(&config, start + Duration::from_secs(3599)).is_empty());
    assert_eq!(store.due(&config, start + Duration::from_secs(3600)), [URL]);
    // An unknown kid: at most once per 5 minutes after the last attempt.
    store.report_misses(&[URL.to_owned()]);
    assert!(store.due(&config, start + Duration::from_secs(299)).is_empty());
    assert_eq!(store.due(&config, start + Duration::from_secs(300)), [URL]);
    // A failure keeps the last good keys (fail static) and is retried after 5 minutes.
    let later = start + Duration::from_secs(300);
    store.failed(URL, "status 503".into(), later);
    assert_eq!(store.sets_for(&config), [set("k1")]);
    let status = store.status(&config);
    assert_eq!((status[0].keys, status[0].last_error.as_deref()), (1, Some("status 503")));
    assert!(store.due(&config, later + Duration::from_secs(299)).is_empty());
    assert_eq!(store.due(&config, later + Duration::from_secs(300)), [URL]);
    // The same keys again are no change; new keys are.
    assert!(!store.succeeded(set("k1"), later));
    assert!(store.succeeded(set("k2"), later));
    assert_eq!(store.status(&config)[0].last_error, None);
}

#[test]
fn jwks_keep_the_signing_keys_they_can_use() {
    let jwks = json!({ "keys": [
        { "kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB", "use": "sig" },
        { "kty": "RSA", "kid": "enc", "n": "AQAB", "e": "AQAB", "use": "enc" },
        { "kty": "EC", "kid": "e", "crv": "P-256", "x": "AQ", "y": "Ag" },
        { "kty": "EC", "kid": "k", "crv": "secp256k1", "x": "AQ", "y": "Ag" },
        { "kty": "OKP", "kid": "d", "crv": "Ed25519", "x": "Aw" },
        { "kty": "oct", "kid": "s", "k": "AQ" }
    ]});
    let keys = parse_jwks(&jwks).unwrap();
    let ids: Vec<_> = keys.iter().map(|key| key.id.as_deref().unwrap()).collect();
    assert_eq!(ids, ["r", "e", "d"]);
    assert_eq!(keys[0].material, KeyMaterial::Rsa { n: vec![1, 0, 1], e: vec![1, 0, 1] });
    assert_eq!(
        keys[1].material,
        KeyMaterial::Ec { curve: portcullis_contract::jwt::EcCurve::P256, point: vec![4, 1, 2] }
    );
    assert!(parse_jwks(&json!({ "keys": [{ "kty": "oct", "k": "AQ" }] })).is_err());
    assert!(parse_jwks(&json!({ "nokeys": [] })).is_err());
}
