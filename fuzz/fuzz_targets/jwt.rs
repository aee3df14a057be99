//! JWT validation (dataplane/src/jwt.rs) on arbitrary tokens, as `validate-jwt` runs it on what
//! a client sends: nothing panics; a token is refused unless it is signed with the rule's key (a
//! fuzzer cannot forge an HMAC) or the rule accepts unsigned tokens; a refusal carries APIM's
//! reason and a message; the verified-token cache answers a token again as the check did.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_contract::jwt::{JwtKey, JwtRule, KeyMaterial, RequiredClaim, TokenSource};
use portcullis_dataplane::jwt::keys::Rings;
use portcullis_dataplane::jwt::{Check, validate};

/// A moment well inside any `exp`/`nbf` a seed carries.
const NOW_S: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let signed = rule(true);
    let unsigned = rule(false);
    let (rings, _) = Rings::build([&signed, &unsigned].into_iter(), &[]);
    for (index, rule) in [&signed, &unsigned].into_iter().enumerate() {
        let ring = &rings.rings[index.min(rings.rings.len() - 1)];
        for use_cache in [false, true, true] {
            let check = Check { rule, ring, ring_index: index as u32, epoch: 1, now_s: NOW_S, use_cache };
            match validate(&check, &token) {
                Ok(jwt) => {
                    assert!(!rule.require_signed_tokens || token.split('.').count() == 3, "accepted: {token:?}");
                    assert!(jwt.claims.get("sub").is_some(), "a required claim is missing: {token:?}");
                }
                Err(failure) => assert!(!failure.response_message().is_empty()),
            }
        }
    }
});

/// A rule with an HMAC key, an audience, an issuer and a required claim; `signed`: the
/// signature is required (APIM's default), else unsigned tokens get to the claim checks.
fn rule(signed: bool) -> JwtRule {
    JwtRule {
        require_signed_tokens: signed,
        keys: vec![JwtKey {
            id: Some("k1".into()),
            material: KeyMaterial::Symmetric(b"fuzz-secret-key-32-bytes-long!!!".to_vec()),
        }],
        audiences: vec!["api://orders".into()],
        issuers: vec!["https://issuer.test".into()],
        required_claims: vec![RequiredClaim {
            name: "sub".into(),
            match_all: true,
            separator: Some(" ".into()),
            values: Vec::new(),
        }],
        ..JwtRule::new("validate-jwt", TokenSource::Value)
    }
}
