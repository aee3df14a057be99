//! Key rings: the verification keys one rule trusts, built once per snapshot on the channel
//! thread, shared by every rule that trusts the same keys (so a token verified under one
//! operation's `validate-jwt` is known verified under another's with the same keys).

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey};
use portcullis_contract::jwt::{EcCurve, JwtKey, JwtRule, KeyMaterial, OpenIdKeySet};

/// Rings with an index below this can mark a cached token as verified for them; tokens checked
/// against rings past it are verified every time (far beyond any real configuration).
pub const CACHED_RINGS_MAX: usize = 64;

/// One key, ready for `jsonwebtoken`.
pub struct VerifyKey {
    /// `kid` it answers to, if any.
    pub id: Option<String>,
    pub key: DecodingKey,
    /// The algorithms this key can verify.
    pub algorithms: &'static [Algorithm],
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The decoding key may be an HMAC secret: never printed.
        f.debug_struct("VerifyKey").field("id", &self.id).field("algorithms", &self.algorithms).finish()
    }
}

/// The keys of one rule: its own, then those of its OpenID configurations, in order.
#[derive(Debug, Default)]
pub struct KeyRing {
    pub keys: Vec<VerifyKey>,
    /// The OpenID configurations' issuers (`validate-azure-ad-token` trusts them).
    pub openid_issuers: Vec<String>,
    /// Bit `i` set: the rule trusts the `i`-th OpenID URL of [`Rings::openid_urls`] (bit 63: one
    /// past the 63rd). A token whose `kid` matches no key sets these bits in the key-miss report.
    pub openid_bits: u64,
}

/// Every distinct key ring of a snapshot, and which ring each rule uses.
#[derive(Debug, Default)]
pub struct Rings {
    pub rings: Vec<KeyRing>,
    /// Every `<openid-config url>` of the snapshot's rules, in first-seen order (the key-miss
    /// report's bits index it).
    pub openid_urls: Vec<String>,
}

impl Rings {
    /// A ring for each distinct (keys, OpenID URLs) among `rules`; returns the rings and, per
    /// rule, its ring's index.
    pub fn build<'r>(rules: impl Iterator<Item = &'r JwtRule>, fetched: &[OpenIdKeySet]) -> (Self, Vec<u32>) {
        let mut rings = Self::default();
        let mut seen: HashMap<(&[JwtKey], &[String]), u32> = HashMap::new();
        let mut indices = Vec::new();
        for rule in rules {
            let key = (rule.keys.as_slice(), rule.openid_urls.as_slice());
            let index = match seen.get(&key) {
                Some(&index) => index,
                None => {
                    let index = rings.rings.len() as u32;
                    let ring = rings.ring(rule, fetched);
                    rings.rings.push(ring);
                    seen.insert(key, index);
                    index
                }
            };
            indices.push(index);
        }
        (rings, indices)
    }

    fn ring(&mut self, rule: &JwtRule, fetched: &[OpenIdKeySet]) -> KeyRing {
        let mut ring = KeyRing { keys: rule.keys.iter().filter_map(verify_key).collect(), ..KeyRing::default() };
        for url in &rule.openid_urls {
            let position = match self.openid_urls.iter().position(|known| known == url) {
                Some(position) => position,
                None => {
                    self.openid_urls.push(url.clone());
                    self.openid_urls.len() - 1
                }
            };
            ring.openid_bits |= 1u64 << position.min(63);
            if let Some(set) = fetched.iter().find(|set| &set.url == url) {
                ring.keys.extend(set.keys.iter().filter_map(verify_key));
                ring.openid_issuers.extend(set.issuer.iter().cloned());
            }
        }
        ring
    }
}

/// A contract key as a `jsonwebtoken` key; `None` for material it cannot use (control checked
/// it, so this is a snapshot from a control that knows more algorithms than we do).
pub fn verify_key(key: &JwtKey) -> Option<VerifyKey> {
    use Algorithm::{ES256, ES384, EdDSA, HS256, HS384, HS512, PS256, PS384, PS512, RS256, RS384, RS512};
    const RSA: &[Algorithm] = &[RS256, RS384, RS512, PS256, PS384, PS512];
    let (key_bytes, algorithms): (DecodingKey, &'static [Algorithm]) = match &key.material {
        KeyMaterial::Symmetric(secret) => (DecodingKey::from_secret(secret), &[HS256, HS384, HS512]),
        KeyMaterial::Rsa { n, e } => (DecodingKey::from_rsa_raw_components(n, e), RSA),
        KeyMaterial::RsaDer(der) => (DecodingKey::from_rsa_der(der), RSA),
        KeyMaterial::Ec { curve: EcCurve::P256, point } => (DecodingKey::from_ec_der(point), &[ES256]),
        KeyMaterial::Ec { curve: EcCurve::P384, point } => (DecodingKey::from_ec_der(point), &[ES384]),
        KeyMaterial::Ed25519(public) => (DecodingKey::from_ed_der(public), &[EdDSA]),
    };
    Some(VerifyKey { id: key.id.clone(), key: key_bytes, algorithms })
}
