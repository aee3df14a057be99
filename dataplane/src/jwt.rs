//! The JWT engine behind `validate-jwt` and `validate-azure-ad-token`: sans-IO, given a rule,
//! its key ring, the token and the time, it returns the decoded token or the failure in APIM's
//! terms (`LastError.Reason` and message).
//!
//! The order is IdentityModel's, which APIM runs: shape, signature (key by `kid`, then each
//! candidate in turn), lifetime, audience, issuer; then APIM's own required-claims check.
//! Signatures are verified by `jsonwebtoken` (aws-lc-rs); a verified signature is remembered
//! per worker ([`cache`]). Keys are never fetched here: `<openid-config>` keys come in the
//! snapshot, and a `kid` no key answers to is reported through [`KEY_MISSES`] for control.

pub mod cache;
pub mod keys;

use std::borrow::Cow;
use std::rc::Rc;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use jsonwebtoken::Algorithm;
use portcullis_contract::jwt::{JwtRule, RequiredClaim};

use crate::policy::value::Jwt;
use crate::policy::vm::members::claim_values;
use keys::KeyRing;

/// Tokens longer than this are refused unread (`JwtInvalid`): bounds the work an attacker can ask
/// of a worker per request (Entra tokens are under 4 KiB).
pub const TOKEN_BYTES_MAX: usize = 16 * 1024;

/// Bit `i` set: a token named a `kid` that no key of the `i`-th OpenID URL (of the current
/// snapshot's [`keys::Rings::openid_urls`]) answers to. Workers set bits (a load first, so a
/// flood of bad tokens does not bounce the cache line between cores); the snapshot-channel
/// thread takes them once a second and tells control, which re-fetches at most once per 5 min.
pub static KEY_MISSES: AtomicU64 = AtomicU64::new(0);

/// Why a token was refused, in `context.LastError` terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `LastError.Reason`.
    pub reason: &'static str,
    /// `LastError.Message`.
    pub message: Cow<'static, str>,
}

impl Failure {
    fn new(reason: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self { reason, message: message.into() }
    }

    /// The body's message when the policy sets none: APIM answers `JWT not present.` for a
    /// missing token and `Invalid JWT.` for every other failure.
    pub fn response_message(&self) -> &'static str {
        if self.reason == NOT_PRESENT { "JWT not present." } else { "Invalid JWT." }
    }
}

const NOT_PRESENT: &str = "TokenNotPresent";

/// The failures of APIM's table (apim-reference §1.4.4) with IdentityModel's messages where APIM
/// passes the library's on. Tokens, keys and claim values of the token never appear in them
/// except where APIM's own message names the claim value (`TokenClaimValueNotAllowed`).
pub mod failures {
    use super::Failure;

    pub fn not_present() -> Failure {
        Failure::new(super::NOT_PRESENT, "JWT not present.")
    }
    pub fn malformed() -> Failure {
        Failure::new("JwtInvalid", "IDX12741: JWT must have three segments (JWS) or five segments (JWE).")
    }
    pub fn undecodable() -> Failure {
        Failure::new("JwtInvalid", "IDX12729: Unable to decode the header or payload as Base64Url encoded JSON.")
    }
    pub fn encrypted() -> Failure {
        Failure::new("JwtInvalid", "IDX10609: Decryption failed. No decryption keys were configured.")
    }
    pub fn unsigned() -> Failure {
        Failure::new(
            "TokenSignatureInvalid",
            "IDX10504: Unable to validate signature, token does not have a signature. Access denied.",
        )
    }
    pub fn signature_invalid() -> Failure {
        Failure::new("TokenSignatureInvalid", "IDX10503: Signature validation failed. Access denied.")
    }
    pub fn key_not_found() -> Failure {
        Failure::new(
            "TokenSignatureKeyNotFound",
            "IDX10501: Signature validation failed. Unable to match key. Access denied.",
        )
    }
    pub fn no_expiration() -> Failure {
        Failure::new("JwtInvalid", "IDX10225: Lifetime validation failed. The token is missing an Expiration Time.")
    }
    pub fn expired() -> Failure {
        Failure::new("TokenExpired", "IDX10223: Lifetime validation failed. The token is expired. Access denied.")
    }
    pub fn not_yet_valid() -> Failure {
        Failure::new("JwtInvalid", "IDX10222: Lifetime validation failed. The token is not yet valid.")
    }
    pub fn audience() -> Failure {
        Failure::new("TokenAudienceNotAllowed", "IDX10214: Audience validation failed. Access denied.")
    }
    pub fn issuer() -> Failure {
        Failure::new("TokenIssuerNotAllowed", "IDX10205: Issuer validation failed. Access denied.")
    }
    pub fn claims_missing(names: &[&str]) -> Failure {
        Failure::new(
            "TokenClaimNotFound",
            format!("JWT token is missing the following claims: {}. Access denied.", names.join(", ")),
        )
    }
    pub fn claim_value(name: &str, value: &str) -> Failure {
        Failure::new(
            "TokenClaimValueNotAllowed",
            format!("Claim {name} value of {value} is not allowed. Access denied."),
        )
    }
}

/// What one check needs besides the token.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    pub rule: &'a JwtRule,
    pub ring: &'a KeyRing,
    /// The ring's index in its snapshot (for the cache).
    pub ring_index: u32,
    /// The snapshot generation the ring belongs to (for the cache).
    pub epoch: u64,
    /// Seconds since the Unix epoch.
    pub now_s: i64,
    /// `[jwt] token-cache`.
    pub use_cache: bool,
}

/// Validates `token` (without its scheme) and returns it decoded.
pub fn validate(check: &Check<'_>, token: &str) -> Result<Rc<Jwt>, Failure> {
    let token = token.trim();
    if token.is_empty() {
        return Err(failures::not_present());
    }
    if token.len() > TOKEN_BYTES_MAX {
        return Err(failures::malformed());
    }
    let cached = if check.use_cache { cache::lookup(token, check.epoch, check.now_s) } else { None };
    let jwt = match cached {
        Some(entry) if entry.rings & ring_bit(check.ring_index) != 0 => entry.jwt,
        _ => {
            let jwt = verify_signature(check, token)?;
            if check.use_cache && jwt.signed {
                cache::remember(token, check.ring_index, check.epoch, &jwt.jwt, seconds(&jwt.jwt, "exp"));
            }
            jwt.jwt
        }
    };
    check_claims(check, &jwt)?;
    Ok(jwt)
}

fn ring_bit(index: u32) -> u64 {
    if (index as usize) < keys::CACHED_RINGS_MAX { 1u64 << index } else { 0 }
}

/// A decoded token and whether its signature was verified (an unsigned token passes only with
/// `require-signed-tokens="false"` and is never cached).
struct Decoded {
    jwt: Rc<Jwt>,
    signed: bool,
}

/// Splits and decodes the token and verifies its signature against the ring.
fn verify_signature(check: &Check<'_>, token: &str) -> Result<Decoded, Failure> {
    let segments = token.split('.').count();
    if segments == 5 {
        return Err(failures::encrypted());
    }
    if segments != 3 {
        return Err(failures::malformed());
    }
    let (message, signature) = token.rsplit_once('.').ok_or_else(failures::malformed)?;
    let (header, claims) = message.split_once('.').ok_or_else(failures::malformed)?;
    let jwt = Rc::new(Jwt { header: decode_part(header)?, claims: decode_part(claims)? });
    let alg = jwt.header.get("alg").and_then(serde_json::Value::as_str).unwrap_or("");
    if signature.is_empty() || alg == "none" {
        if check.rule.require_signed_tokens || !signature.is_empty() {
            return Err(failures::unsigned());
        }
        return Ok(Decoded { jwt, signed: false });
    }
    let algorithm = Algorithm::from_str(alg).map_err(|_| failures::signature_invalid())?;
    let kid = jwt.header.get("kid").and_then(serde_json::Value::as_str);
    let (candidates, by_id) = candidates(check.ring, kid, algorithm);
    if kid.is_some() && !by_id && check.ring.openid_bits != 0 {
        // A `kid` no key answers to: the provider may have rotated its keys.
        report_key_miss(check.ring.openid_bits);
    }
    if candidates.is_empty() {
        return Err(failures::key_not_found());
    }
    for key in candidates {
        if let Ok(true) = jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, algorithm) {
            return Ok(Decoded { jwt, signed: true });
        }
    }
    Err(failures::signature_invalid())
}

/// The keys to try: those whose `id` is the token's `kid`; with no such key (or no `kid`),
/// those without an id; all for the token's algorithm. The flag: a key answered to the `kid`.
fn candidates<'r>(ring: &'r KeyRing, kid: Option<&str>, algorithm: Algorithm) -> (Vec<&'r keys::VerifyKey>, bool) {
    let fits = |key: &&keys::VerifyKey| key.algorithms.contains(&algorithm);
    if let Some(kid) = kid {
        let by_id: Vec<_> = ring.keys.iter().filter(|key| key.id.as_deref() == Some(kid)).filter(fits).collect();
        if !by_id.is_empty() {
            return (by_id, true);
        }
    }
    (ring.keys.iter().filter(|key| kid.is_none() || key.id.is_none()).filter(fits).collect(), false)
}

fn report_key_miss(bits: u64) {
    if KEY_MISSES.load(Ordering::Relaxed) & bits != bits {
        KEY_MISSES.fetch_or(bits, Ordering::Relaxed);
    }
}

fn decode_part(part: &str) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| failures::undecodable())?;
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err(failures::undecodable()),
    }
}

/// A numeric date claim (`exp`, `nbf`) in whole seconds.
fn seconds(jwt: &Jwt, name: &str) -> Option<i64> {
    jwt.claims.get(name).and_then(serde_json::Value::as_f64).map(|value| value as i64)
}

/// Lifetime, audience, issuer and required claims: run on every request, cached or not.
fn check_claims(check: &Check<'_>, jwt: &Jwt) -> Result<(), Failure> {
    let rule = check.rule;
    let skew = i64::from(rule.clock_skew_s);
    match seconds(jwt, "exp") {
        None if rule.require_expiration_time => return Err(failures::no_expiration()),
        Some(exp) if check.now_s > exp.saturating_add(skew) => return Err(failures::expired()),
        _ => {}
    }
    if seconds(jwt, "nbf").is_some_and(|nbf| check.now_s < nbf.saturating_sub(skew)) {
        return Err(failures::not_yet_valid());
    }
    check_audience(check, jwt)?;
    check_issuer(check, jwt)?;
    if let Some(azure) = &rule.azure {
        check_client_application(&azure.client_application_ids, jwt)?;
    }
    check_required_claims(&rule.required_claims, jwt)
}

fn check_audience(check: &Check<'_>, jwt: &Jwt) -> Result<(), Failure> {
    let rule = check.rule;
    let backend_ids = rule.azure.as_ref().map_or(&[][..], |azure| azure.backend_application_ids.as_slice());
    if rule.audiences.is_empty() && backend_ids.is_empty() {
        return Ok(());
    }
    let audiences = claim_values(jwt, "aud").unwrap_or_default();
    let allowed = |aud: &str| {
        rule.audiences.iter().any(|allowed| allowed == aud)
            || backend_ids.iter().any(|id| id == aud || aud.strip_prefix("api://") == Some(id.as_str()))
    };
    if audiences.iter().any(|aud| allowed(aud)) { Ok(()) } else { Err(failures::audience()) }
}

/// `<issuers>`; for `validate-azure-ad-token`, the tenant's issuers: the OpenID configuration's
/// (v2.0) and `https://sts.windows.net/{tenant}/` (v1.0 tokens).
fn check_issuer(check: &Check<'_>, jwt: &Jwt) -> Result<(), Failure> {
    let rule = check.rule;
    if rule.issuers.is_empty() && rule.azure.is_none() {
        return Ok(());
    }
    let Some(issuer) = jwt.claims.get("iss").and_then(serde_json::Value::as_str) else {
        return Err(failures::issuer());
    };
    let listed = rule.issuers.iter().any(|allowed| allowed == issuer);
    let azure = rule.azure.as_ref().is_some_and(|azure| {
        check.ring.openid_issuers.iter().any(|known| known == issuer)
            || issuer == format!("https://sts.windows.net/{}/", azure.tenant_id)
    });
    if listed || azure { Ok(()) } else { Err(failures::issuer()) }
}

/// `<client-application-ids>`: the `azp` (v2.0) or `appid` (v1.0) claim must be one of them.
fn check_client_application(ids: &[String], jwt: &Jwt) -> Result<(), Failure> {
    if ids.is_empty() {
        return Ok(());
    }
    let (name, value) = match ["azp", "appid"].iter().find_map(|name| Some((*name, jwt.claims.get(*name)?.as_str()?))) {
        Some(found) => found,
        None => return Err(failures::claims_missing(&["azp"])),
    };
    if ids.iter().any(|id| id == value) { Ok(()) } else { Err(failures::claim_value(name, value)) }
}

/// `<required-claims>`: every claim present (all missing ones named at once), then each
/// claim's values (`match="all"`: every listed value; `any`: one of them).
fn check_required_claims(claims: &[RequiredClaim], jwt: &Jwt) -> Result<(), Failure> {
    let missing: Vec<&str> =
        claims.iter().filter(|claim| !jwt.claims.contains_key(&claim.name)).map(|claim| claim.name.as_str()).collect();
    if !missing.is_empty() {
        return Err(failures::claims_missing(&missing));
    }
    for claim in claims.iter().filter(|claim| !claim.values.is_empty()) {
        let mut values = claim_values(jwt, &claim.name).unwrap_or_default();
        if let Some(separator) = &claim.separator {
            values = values.iter().flat_map(|value| value.split(separator.as_str()).map(str::to_owned)).collect();
        }
        let has = |wanted: &String| values.iter().any(|value| value == wanted);
        let passes = if claim.match_all { claim.values.iter().all(has) } else { claim.values.iter().any(has) };
        if !passes {
            return Err(failures::claim_value(&claim.name, &values.join(",")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
