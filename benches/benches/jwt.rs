//! JWT verify cold and cached (`portcullis_dataplane::jwt`): one `validate-jwt` check of an RS256
//! and an ES256 token, with the signature verified every time (cold: what APIM does) and with the
//! worker's verified-token cache (cached: a hash lookup, a compare, and the claim checks that run
//! on every request anyway).

#![allow(clippy::expect_used, reason = "benchmark fixtures are built from constants; a failure is a bug in the bench")]

use std::hint::black_box;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_contract::jwt::{EcCurve, JwtKey, JwtRule, KeyMaterial, TokenSource};
use portcullis_dataplane::jwt::keys::Rings;
use portcullis_dataplane::jwt::{Check, validate};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).expect("fixture")
}

fn b64(text: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.as_str().expect("member")).expect("base64url")
}

/// The signing key and the policy key of fixture `name` (`rsa-a` or `ec256`).
fn keys(name: &str) -> (EncodingKey, KeyMaterial) {
    let pem = fixture(&format!("{name}.pem"));
    let der = PrivateKeyDer::from_pem_slice(&pem).expect("PEM");
    let public: serde_json::Value = serde_json::from_slice(&fixture("public.json")).expect("JSON");
    let jwk = &public[name];
    if name == "rsa-a" {
        (EncodingKey::from_rsa_der(der.secret_der()), KeyMaterial::Rsa { n: b64(&jwk["n"]), e: b64(&jwk["e"]) })
    } else {
        let point = [vec![4], b64(&jwk["x"]), b64(&jwk["y"])].concat();
        (EncodingKey::from_ec_der(der.secret_der()), KeyMaterial::Ec { curve: EcCurve::P256, point })
    }
}

fn rule(material: KeyMaterial) -> JwtRule {
    JwtRule {
        keys: vec![JwtKey { id: Some("k1".into()), material }],
        audiences: vec!["api://orders".into()],
        issuers: vec!["https://issuer.test".into()],
        ..JwtRule::new(
            "validate-jwt",
            TokenSource::Header { name: "Authorization".into(), scheme: Some("Bearer".into()) },
        )
    }
}

fn bench_jwt(c: &mut Criterion) {
    const NOW: i64 = 1_800_000_000;
    let claims = serde_json::json!({
        "sub": "alice", "iss": "https://issuer.test", "aud": "api://orders", "exp": NOW + 3600,
        "roles": ["reader", "writer"], "scp": "orders.read orders.write"
    });
    for (name, algorithm) in [("rsa-a", Algorithm::RS256), ("ec256", Algorithm::ES256)] {
        let (private, public) = keys(name);
        let mut header = Header::new(algorithm);
        header.kid = Some("k1".into());
        let token = jsonwebtoken::encode(&header, &claims, &private).expect("sign");
        let rule = rule(public);
        let (rings, _) = Rings::build(std::iter::once(&rule), &[]);
        let ring = &rings.rings[0];
        for (mode, use_cache) in [("cold", false), ("cached", true)] {
            let check = Check { rule: &rule, ring, ring_index: 0, epoch: 1, now_s: NOW, use_cache };
            assert!(validate(&check, &token).is_ok(), "{name} verifies");
            c.bench_function(&format!("jwt_verify/{algorithm:?}/{mode}"), |b| {
                b.iter(|| validate(black_box(&check), black_box(&token)).is_ok())
            });
        }
    }
}

criterion_group!(benches, bench_jwt);
criterion_main!(benches);
