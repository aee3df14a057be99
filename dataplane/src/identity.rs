//! Access tokens for `authentication-managed-identity` (docs/policies.md "Managed identity").
//!
//! The `identity` thread ([`refresh`]) fetches a token for every (resource, client-id) the current
//! snapshot's programs name, before any request asks, and refreshes each ahead of its expiry; it
//! publishes the set through one `ArcSwap` ([`TOKENS`]). A worker only loads that pointer: it
//! never waits on the thread, never does the token source's I/O, and never takes a lock. The
//! tokens stay in this process's memory (never in a snapshot, a log, a metric or a trace).

pub mod fetch;
pub mod refresh;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;

/// One access token and when it stops being valid.
pub struct Token {
    /// The token itself.
    pub value: Box<str>,
    /// `Bearer <token>`, ready for the `Authorization` header.
    pub bearer: Box<str>,
    /// Unix seconds after which the token is not used.
    pub expires_at_s: i64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({} bytes redacted, expires at {})", self.value.len(), self.expires_at_s)
    }
}

impl Token {
    pub fn new(value: String, expires_at_s: i64) -> Self {
        let bearer = format!("Bearer {value}").into_boxed_str();
        Self { value: value.into_boxed_str(), bearer, expires_at_s }
    }
}

/// One resource's tokens, by client id (`None`: the system-assigned identity).
type ByClient = Vec<(Option<Box<str>>, Arc<Token>)>;

/// The tokens held: by resource, then by client id.
#[derive(Debug, Default)]
pub struct TokenTable {
    by_resource: HashMap<Box<str>, ByClient>,
}

impl TokenTable {
    pub fn insert(&mut self, resource: &str, client_id: Option<&str>, token: Arc<Token>) {
        let entries = self.by_resource.entry(resource.into()).or_default();
        entries.retain(|(existing, _)| existing.as_deref() != client_id);
        entries.push((client_id.map(Into::into), token));
    }

    /// The token for `resource` and `client_id`, if it is still valid at `now_s`.
    pub fn current(&self, resource: &str, client_id: Option<&str>, now_s: i64) -> Option<&Arc<Token>> {
        self.by_resource
            .get(resource)?
            .iter()
            .find(|(existing, _)| existing.as_deref() == client_id)
            .map(|(_, token)| token)
            .filter(|token| now_s < token.expires_at_s)
    }

    pub fn len(&self) -> usize {
        self.by_resource.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tokens workers read: written only by the identity thread (and tests), read by every
/// worker with one lock-free `load` (the cross-core path named in ARCHITECTURE.md).
pub static TOKENS: LazyLock<ArcSwap<TokenTable>> = LazyLock::new(|| ArcSwap::from_pointee(TokenTable::default()));

/// The current token for `resource` and `client_id` at `now_s` (a worker's call).
pub fn current(resource: &str, client_id: Option<&str>, now_s: i64) -> Option<Arc<Token>> {
    TOKENS.load().current(resource, client_id, now_s).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_by_resource_and_client_until_they_expire() {
        let mut table = TokenTable::default();
        table.insert("https://r", None, Arc::new(Token::new("system".into(), 100)));
        table.insert("https://r", Some("c1"), Arc::new(Token::new("user".into(), 100)));
        assert_eq!(&*table.current("https://r", None, 10).expect("system").value, "system");
        assert_eq!(&*table.current("https://r", Some("c1"), 10).expect("user").bearer, "Bearer user");
        assert!(table.current("https://r", Some("c2"), 10).is_none());
        assert!(table.current("https://other", None, 10).is_none());
        assert!(table.current("https://r", None, 100).is_none(), "expired");
        table.insert("https://r", None, Arc::new(Token::new("renewed".into(), 200)));
        assert_eq!(table.len(), 2);
        assert_eq!(&*table.current("https://r", None, 150).expect("renewed").value, "renewed");
    }

    #[test]
    fn debug_hides_the_token() {
        let shown = format!("{:?}", Token::new("eyJ-secret".into(), 1));
        assert!(!shown.contains("eyJ-secret"), "{shown}");
    }
}
