//! The engine against tokens signed with every algorithm, and every failure of APIM's table.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_contract::jwt::{
    AzureRules, EcCurve, JwtKey, JwtRule, KeyMaterial, OpenIdKeySet, RequiredClaim, TokenSource,
};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::json;

use super::keys::{KeyRing, Rings};
use super::*;

const NOW: i64 = 1_800_000_000;

fn fixture(name: &str) -> String {
    let path = format!("{}/../tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).unwrap()
}

/// The private key `name` for signing, and its public key as the contract carries it.
fn key_pair(name: &str) -> (EncodingKey, KeyMaterial) {
    let der = PrivateKeyDer::from_pem_slice(fixture(&format!("{name}.pem")).as_bytes()).unwrap();
    let public: serde_json::Value = serde_json::from_str(&fixture("public.json")).unwrap();
    let jwk = &public[name];
    let text = |member: &str| jwk[member].as_str().unwrap();
    match name {
        "rsa-a" | "rsa-b" => {
            (EncodingKey::from_rsa_der(der.secret_der()), KeyMaterial::Rsa { n: b64(text("n")), e: b64(text("e")) })
        }
        "ec256" | "ec384" => {
            let point = [vec![4], b64(text("x")), b64(text("y"))].concat();
            let curve = if name == "ec256" { EcCurve::P256 } else { EcCurve::P384 };
            (EncodingKey::from_ec_der(der.secret_der()), KeyMaterial::Ec { curve, point })
        }
        _ => (EncodingKey::from_ed_der(der.secret_der()), KeyMaterial::Ed25519(b64(text("x")))),
    }
}

fn rule(keys: Vec<JwtKey>) -> JwtRule {
    JwtRule {
        keys,
        ..JwtRule::new(
            "validate-jwt",
            TokenSource::Header { name: "Authorization".into(), scheme: Some("Bearer".into()) },
        )
    }
}

fn ring_of(rule: &JwtRule, fetched: &[OpenIdKeySet]) -> KeyRing {
    let (mut rings, _) = Rings::build(std::iter::once(rule), fetched);
    rings.rings.remove(0)
}

fn claims() -> serde_json::Value {
    json!({ "sub": "alice", "iss": "https://issuer.test", "aud": "api://orders", "exp": NOW + 600, "roles": ["reader", "writer"] })
}

fn sign(algorithm: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// Checks `token` against `rule` without the cache (epoch 0, ring 0).
fn check(rule: &JwtRule, token: &str) -> Result<Rc<Jwt>, Failure> {
    let ring = ring_of(rule, &[]);
    validate(&Check { rule, ring: &ring, ring_index: 0, epoch: 0, now_s: NOW, use_cache: false }, token)
}

fn symmetric(secret: &[u8]) -> JwtKey {
    JwtKey { id: None, material: KeyMaterial::Symmetric(secret.to_vec()) }
}

#[test]
fn every_algorithm_verifies() {
    let hmac = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
    for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = sign(algorithm, &hmac, None, &claims());
        let jwt = check(&rule(vec![symmetric(b"0123456789abcdef0123456789abcdef")]), &token).unwrap();
        assert_eq!(jwt.claims["sub"], "alice", "{algorithm:?}");
    }
    let cases = [
        ("rsa-a", Algorithm::RS256),
        ("rsa-a", Algorithm::RS384),
        ("rsa-a", Algorithm::RS512),
        ("rsa-a", Algorithm::PS256),
        ("rsa-a", Algorithm::PS384),
        ("rsa-a", Algorithm::PS512),
        ("ec256", Algorithm::ES256),
        ("ec384", Algorithm::ES384),
        ("ed25519", Algorithm::EdDSA),
    ];
    for (name, algorithm) in cases {
        let (private, public) = key_pair(name);
        let token = sign(algorithm, &private, None, &claims());
        let rule = rule(vec![JwtKey { id: None, material: public }]);
        assert!(check(&rule, &token).is_ok(), "{name} {algorithm:?}");
    }
}

#[test]
fn keys_are_tried_in_turn_and_matched_by_kid() {
    let (a, a_public) = key_pair("rsa-a");
    let (_, b_public) = key_pair("rsa-b");
    let rotated =
        rule(vec![JwtKey { id: None, material: b_public.clone() }, JwtKey { id: None, material: a_public.clone() }]);
    assert!(check(&rotated, &sign(Algorithm::RS256, &a, None, &claims())).is_ok());
    let by_id = rule(vec![
        JwtKey { id: Some("b".into()), material: b_public },
        JwtKey { id: Some("a".into()), material: a_public },
    ]);
    assert!(check(&by_id, &sign(Algorithm::RS256, &a, Some("a"), &claims())).is_ok());
    let failure = check(&by_id, &sign(Algorithm::RS256, &a, Some("c"), &claims())).unwrap_err();
    assert_eq!(failure, failures::key_not_found());
    assert_eq!(failure.message, "IDX10501: Signature validation failed. Unable to match key. Access denied.");
    assert_eq!(failure.response_message(), "Invalid JWT.");
}

#[test]
fn a_bad_signature_and_a_bad_shape_fail_as_apim_says() {
    let (a, _) = key_pair("rsa-a");
    let (_, b_public) = key_pair("rsa-b");
    let rule = rule(vec![JwtKey { id: None, material: b_public }]);
    let failure = check(&rule, &sign(Algorithm::RS256, &a, None, &claims())).unwrap_err();
    assert_eq!(
        (failure.reason, failure.message.as_ref()),
        ("TokenSignatureInvalid", "IDX10503: Signature validation failed. Access denied.")
    );
    let failure = check(&rule, "not-a-token").unwrap_err();
    assert_eq!(
        (failure.reason, failure.message.as_ref()),
        ("JwtInvalid", "IDX12741: JWT must have three segments (JWS) or five segments (JWE).")
    );
    assert_eq!(check(&rule, "a.b.c").unwrap_err(), failures::undecodable());
    assert_eq!(check(&rule, "a.b.c.d.e").unwrap_err(), failures::encrypted());
    let failure = check(&rule, "  ").unwrap_err();
    assert_eq!((failure.reason, failure.message.as_ref()), ("TokenNotPresent", "JWT not present."));
    assert_eq!(failure.response_message(), "JWT not present.");
    // A key of another family never verifies (an HMAC secret made of an RSA public key).
    let hs = sign(Algorithm::HS256, &EncodingKey::from_secret(b"x"), None, &claims());
    assert_eq!(check(&rule, &hs).unwrap_err(), failures::key_not_found());
}

#[test]
fn unsigned_tokens_pass_only_when_allowed() {
    let unsigned = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let mut rule = rule(vec![symmetric(b"k")]);
    assert_eq!(check(&rule, &unsigned).unwrap_err(), failures::unsigned());
    rule.require_signed_tokens = false;
    assert!(check(&rule, &unsigned).is_ok());
}

#[test]
fn lifetime_is_checked_with_the_clock_skew() {
    let key = EncodingKey::from_secret(b"k");
    let mut rule = rule(vec![symmetric(b"k")]);
    let expired = sign(Algorithm::HS256, &key, None, &json!({ "exp": NOW - 10 }));
    let failure = check(&rule, &expired).unwrap_err();
    assert_eq!(
        (failure.reason, failure.message.as_ref()),
        ("TokenExpired", "IDX10223: Lifetime validation failed. The token is expired. Access denied.")
    );
    let early = sign(Algorithm::HS256, &key, None, &json!({ "exp": NOW + 100, "nbf": NOW + 10 }));
    assert_eq!(check(&rule, &early).unwrap_err(), failures::not_yet_valid());
    let endless = sign(Algorithm::HS256, &key, None, &json!({ "sub": "x" }));
    assert_eq!(check(&rule, &endless).unwrap_err(), failures::no_expiration());
    rule.clock_skew_s = 30;
    assert!(check(&rule, &expired).is_ok());
    assert!(check(&rule, &early).is_ok());
    rule.require_expiration_time = false;
    assert!(check(&rule, &endless).is_ok());
}

#[test]
fn audiences_and_issuers_any_one_matches() {
    let key = EncodingKey::from_secret(b"k");
    let token = sign(Algorithm::HS256, &key, None, &json!({ "exp": NOW + 9, "aud": ["a", "b"], "iss": "https://i" }));
    let mut rule = rule(vec![symmetric(b"k")]);
    rule.audiences = vec!["x".into(), "b".into()];
    rule.issuers = vec!["https://i".into()];
    assert!(check(&rule, &token).is_ok());
    rule.audiences = vec!["x".into()];
    let failure = check(&rule, &token).unwrap_err();
    assert_eq!(
        (failure.reason, failure.message.as_ref()),
        ("TokenAudienceNotAllowed", "IDX10214: Audience validation failed. Access denied.")
    );
    rule.audiences.clear();
    rule.issuers = vec!["https://other".into()];
    let failure = check(&rule, &token).unwrap_err();
    assert_eq!(
        (failure.reason, failure.message.as_ref()),
        ("TokenIssuerNotAllowed", "IDX10205: Issuer validation failed. Access denied.")
    );
}

#[test]
fn required_claims_name_every_missing_claim_and_the_refused_value() {
    let key = EncodingKey::from_secret(b"k");
    let token = sign(
        Algorithm::HS256,
        &key,
        None,
        &json!({ "exp": NOW + 9, "roles": ["reader", "writer"], "scp": "read write" }),
    );
    let claim = |name: &str, match_all: bool, separator: Option<&str>, values: &[&str]| RequiredClaim {
        name: name.into(),
        match_all,
        separator: separator.map(str::to_owned),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    };
    let mut rule = rule(vec![symmetric(b"k")]);
    rule.required_claims =
        vec![claim("tid", true, None, &[]), claim("roles", true, None, &[]), claim("oid", true, None, &[])];
    let failure = check(&rule, &token).unwrap_err();
    assert_eq!(failure.reason, "TokenClaimNotFound");
    assert_eq!(failure.message, "JWT token is missing the following claims: tid, oid. Access denied.");
    rule.required_claims = vec![claim("roles", true, None, &["reader", "admin"])];
    let failure = check(&rule, &token).unwrap_err();
    assert_eq!(failure.reason, "TokenClaimValueNotAllowed");
    assert_eq!(failure.message, "Claim roles value of reader,writer is not allowed. Access denied.");
    rule.required_claims = vec![claim("roles", false, None, &["reader", "admin"])];
    assert!(check(&rule, &token).is_ok());
    rule.required_claims = vec![claim("scp", true, Some(" "), &["write", "read"])];
    assert!(check(&rule, &token).is_ok());
}

#[test]
fn the_cache_skips_the_signature_but_never_the_claims() {
    let (a, a_public) = key_pair("rsa-a");
    let (_, b_public) = key_pair("rsa-b");
    let good = rule(vec![JwtKey { id: None, material: a_public }]);
    let good_ring = ring_of(&good, &[]);
    let wrong_ring = ring_of(&rule(vec![JwtKey { id: None, material: b_public }]), &[]);
    let token = sign(Algorithm::RS256, &a, None, &json!({ "exp": NOW + 60, "sub": "cached" }));
    let at = |ring: &KeyRing, epoch: u64, now_s: i64| {
        validate(&Check { rule: &good, ring, ring_index: 0, epoch, now_s, use_cache: true }, &token)
    };
    assert!(at(&good_ring, 7, NOW).is_ok());
    // Ring 0 of epoch 7 is remembered as verified: even a ring that could not verify it passes,
    // which proves no signature was checked.
    assert!(at(&wrong_ring, 7, NOW).is_ok());
    // A new epoch (keys changed) verifies again.
    assert_eq!(at(&wrong_ring, 8, NOW).unwrap_err(), failures::signature_invalid());
    // Expiry is checked on every request, cached or not.
    assert!(at(&good_ring, 9, NOW).is_ok());
    assert_eq!(at(&good_ring, 9, NOW + 61).unwrap_err(), failures::expired());
    assert!(cache::len() >= 1);
}

#[test]
fn an_unknown_kid_of_an_openid_ring_is_reported() {
    let (a, a_public) = key_pair("rsa-a");
    let mut rule = rule(Vec::new());
    rule.openid_urls = vec!["https://idp.test/.well-known/openid-configuration".into()];
    let fetched = [OpenIdKeySet {
        url: rule.openid_urls[0].clone(),
        issuer: Some("https://idp.test".into()),
        keys: vec![JwtKey { id: Some("k1".into()), material: a_public }],
    }];
    let ring = ring_of(&rule, &fetched);
    let run = |kid: &str| {
        let token = sign(Algorithm::RS256, &a, Some(kid), &claims());
        validate(&Check { rule: &rule, ring: &ring, ring_index: 0, epoch: 0, now_s: NOW, use_cache: false }, &token)
    };
    assert!(run("k1").is_ok());
    KEY_MISSES.store(0, Ordering::Relaxed);
    assert_eq!(run("k2").unwrap_err(), failures::key_not_found());
    assert_eq!(KEY_MISSES.swap(0, Ordering::Relaxed) & 1, 1);
}

#[test]
fn azure_rules_check_tenant_issuers_audiences_and_client_applications() {
    let key = EncodingKey::from_secret(b"k");
    let mut rule = rule(vec![symmetric(b"k")]);
    rule.azure = Some(AzureRules {
        tenant_id: "t1".into(),
        backend_application_ids: vec!["backend".into()],
        client_application_ids: vec!["client".into()],
    });
    let token = |iss: &str, aud: &str, azp: &str| {
        sign(Algorithm::HS256, &key, None, &json!({ "exp": NOW + 9, "iss": iss, "aud": aud, "azp": azp }))
    };
    assert!(check(&rule, &token("https://sts.windows.net/t1/", "api://backend", "client")).is_ok());
    assert_eq!(
        check(&rule, &token("https://sts.windows.net/t2/", "backend", "client")).unwrap_err(),
        failures::issuer()
    );
    assert_eq!(
        check(&rule, &token("https://sts.windows.net/t1/", "other", "client")).unwrap_err(),
        failures::audience()
    );
    let failure = check(&rule, &token("https://sts.windows.net/t1/", "backend", "intruder")).unwrap_err();
    assert_eq!(failure.message, "Claim azp value of intruder is not allowed. Access denied.");
}
