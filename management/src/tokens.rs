//! Access tokens of the management API: created by `portcullis ctl token create`, stored as the
//! SHA-256 of their secret, sent as `Authorization: Bearer <secret>` (or APIM's
//! `SharedAccessSignature <secret>`).
//!
//! The secret is shown once, at creation; the store never holds it. A lookup by hash needs no
//! constant-time comparison: the attacker does not choose what is compared, only the hash input.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError, Token};

/// Random bytes in a secret (256 bits).
const SECRET_BYTES: usize = 32;
/// What a secret starts with, so a leaked one is recognisable (and greppable by scanners).
pub const SECRET_PREFIX: &str = "pcm_";
/// Longest token name (it is the actor of the audit log).
pub const NAME_CHARS_MAX: usize = 64;

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0:?} is not a valid token name: 1 to {NAME_CHARS_MAX} letters, digits, '-', '_', '.' or '@'")]
    BadName(String),
    #[error("{0:?} is not a duration: use a number followed by s, m, h or d (30d, 12h)")]
    BadDuration(String),
    #[error("no randomness for the token: {0}")]
    Random(getrandom::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a token named `name` that expires after `expires` (never when `None`) and returns its
/// secret: the only time it is seen. A name already taken is [`StoreError::TokenExists`].
pub fn create(
    store: &mut dyn Store,
    name: &str,
    expires: Option<Duration>,
    read_only: bool,
) -> Result<String, TokenError> {
    if !is_valid_name(name) {
        return Err(TokenError::BadName(name.to_owned()));
    }
    let now = chrono::Utc::now();
    let expires_at = match expires {
        Some(duration) => {
            let duration = chrono::Duration::from_std(duration)
                .map_err(|_| TokenError::BadDuration(format!("{}s", duration.as_secs())))?;
            let at = now.checked_add_signed(duration).ok_or_else(|| TokenError::BadDuration(format!("{duration}")))?;
            Some(rfc3339(at))
        }
        None => None,
    };
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes).map_err(TokenError::Random)?;
    let secret = format!("{SECRET_PREFIX}{}", hex(&bytes));
    let token = Token { name: name.to_owned(), read_only, created_at: rfc3339(now), expires_at };
    store.create_token(&token, &hash(&secret))?;
    Ok(secret)
}

/// The unexpired token an `Authorization` header value carries (`Bearer <secret>` or
/// `SharedAccessSignature <secret>`), if any. A store error counts as no token (the caller
/// answers 401, never 500, and logs nothing secret).
pub fn verify(store: &dyn Store, authorization: &str) -> Option<Token> {
    let secret = secret_of(authorization)?;
    let token = match store.token_by_hash(&hash(secret)) {
        Ok(token) => token?,
        Err(error) => {
            tracing::warn!(%error, "the management store could not look a token up");
            return None;
        }
    };
    match &token.expires_at {
        Some(at) if is_past(at) => None,
        _ => Some(token),
    }
}

/// Parses `30d`, `12h`, `90m`, `3600s` (what `--expires` takes).
pub fn parse_duration(text: &str) -> Result<Duration, TokenError> {
    let bad = || TokenError::BadDuration(text.to_owned());
    let unit_at = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    number.checked_mul(seconds).filter(|s| *s > 0).map(Duration::from_secs).ok_or_else(bad)
}

/// The SHA-256 of a secret, in lowercase hex (what the store keeps).
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn secret_of(authorization: &str) -> Option<&str> {
    let (scheme, rest) = authorization.trim().split_once(' ')?;
    let secret = rest.trim();
    let known = scheme.eq_ignore_ascii_case("Bearer") || scheme.eq_ignore_ascii_case("SharedAccessSignature");
    (known && !secret.is_empty()).then_some(secret)
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_CHARS_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

fn is_past(at: &str) -> bool {
    // An unreadable expiry is treated as expired: a token must never outlive what it says.
    chrono::DateTime::parse_from_rfc3339(at).map_or(true, |at| at <= chrono::Utc::now())
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// Bytes of a generated subscription key (32 hex digits, as the quickstart's).
pub const SUBSCRIPTION_KEY_BYTES: usize = 16;

/// A fresh subscription key: 32 random hex digits.
pub fn subscription_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; SUBSCRIPTION_KEY_BYTES];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    #[test]
    fn a_created_token_verifies_under_both_schemes_and_only_its_hash_is_stored() {
        let mut store = SqliteStore::in_memory().unwrap();
        let secret = create(&mut store, "ci", None, true).unwrap();
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == SECRET_PREFIX.len() + 2 * SECRET_BYTES);
        let token = verify(&store, &format!("Bearer {secret}")).unwrap();
        assert!(token.read_only && token.name == "ci");
        assert!(verify(&store, &format!("SharedAccessSignature {secret}")).is_some());
        assert!(verify(&store, &format!("Basic {secret}")).is_none());
        assert!(verify(&store, "Bearer pcm_wrong").is_none());
        assert!(verify(&store, &hash(&secret)).is_none());
        assert!(matches!(create(&mut store, "ci", None, false), Err(TokenError::Store(StoreError::TokenExists(_)))));
    }

    #[test]
    fn expired_tokens_do_not_verify() {
        let mut store = SqliteStore::in_memory().unwrap();
        let token = Token {
            name: "old".into(),
            read_only: false,
            created_at: "2020-01-01T00:00:00Z".into(),
            expires_at: Some("2020-01-02T00:00:00Z".into()),
        };
        store.create_token(&token, &hash("pcm_old")).unwrap();
        assert!(verify(&store, "Bearer pcm_old").is_none());
        let secret = create(&mut store, "new", Some(Duration::from_secs(3_600)), false).unwrap();
        assert!(verify(&store, &format!("Bearer {secret}")).is_some());
    }

    #[test]
    fn durations_and_names_are_checked() {
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5_400));
        for bad in ["", "d", "30", "30w", "-1d", "0s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let mut store = SqliteStore::in_memory().unwrap();
        assert!(matches!(create(&mut store, "a b", None, false), Err(TokenError::BadName(_))));
    }
}
