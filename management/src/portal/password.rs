//! Passwords: argon2id hashes in PHC form (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), the
//! argon2 crate's defaults (OWASP's recommended parameters).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest password the portal accepts, in characters (NIST SP 800-63B asks for at least 8).
pub const PASSWORD_CHARS_MIN: usize = 10;
/// Longest, in bytes: argon2 hashes any length, but an unbounded one is free CPU for an attacker.
pub const PASSWORD_BYTES_MAX: usize = 256;

/// Random bytes of a salt (the PHC format's recommended 16).
const SALT_BYTES: usize = 16;

/// A password that cannot be hashed (none of these comes from the password's content).
#[derive(Debug, thiserror::Error)]
#[error("the password cannot be hashed: {0}")]
pub struct HashError(String);

/// Whether `stored` is already a hash this module wrote (so a write keeps it as is).
pub fn is_hash(stored: &str) -> bool {
    stored.starts_with("$argon2")
}

/// The argon2id hash of `password`, with a fresh random salt.
pub fn hash(password: &str) -> Result<String, HashError> {
    let mut bytes = [0u8; SALT_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| HashError(e.to_string()))?;
    let salt = SaltString::encode_b64(&bytes).map_err(|e| HashError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches `stored` (a PHC string). Anything unreadable is a mismatch.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash nobody's password matches, verified for unknown accounts so that a sign-in takes as
/// long whether or not the email exists.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("portcullis decoy: no account has this password").unwrap_or_default())
}

/// Why a new password is refused, in words for the person choosing it.
pub fn weakness(password: &str) -> Option<String> {
    if password.chars().count() < PASSWORD_CHARS_MIN {
        return Some(format!("Use at least {PASSWORD_CHARS_MIN} characters."));
    }
    if password.len() > PASSWORD_BYTES_MAX {
        return Some(format!("Use at most {PASSWORD_BYTES_MAX} bytes."));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let (a, b) = (hash("correct horse battery").unwrap(), hash("correct horse battery").unwrap());
        assert!(a.starts_with("$argon2id$") && is_hash(&a), "{a}");
        assert_ne!(a, b, "every hash has its own salt");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterx", &a));
        assert!(!verify("anything", "not a hash"));
        assert!(!verify("portcullis", decoy()));
    }

    #[test]
    fn weak_passwords_are_named() {
        assert!(weakness("short").is_some());
        assert!(weakness(&"x".repeat(PASSWORD_BYTES_MAX + 1)).is_some());
        assert!(weakness("long enough password").is_none());
    }
}
