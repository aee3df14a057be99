//! The verified-token cache (APIM has none): a worker that verified a token's signature
//! remembers it, so the same token again costs a hash lookup and a compare instead of an RSA or
//! ECDSA verification, and its claims are not decoded again.
//!
//! One cache per worker thread (thread-local: the data plane runs one worker per thread), so no
//! core ever waits on another. An entry is the token itself (compared in full on a hit: a hash
//! collision can never pass an unverified token), its decoded header and claims, the key rings it
//! verified under, the snapshot epoch and its `exp`. It is good until `exp` or until the keys
//! change (a new snapshot: new epoch). Only the signature is remembered: lifetime, audience,
//! issuer and claims are checked on every request.

use std::cell::RefCell;
use std::rc::Rc;

use crate::policy::value::Jwt;

/// Tokens each worker remembers. With [`CACHED_TOKEN_BYTES_MAX`] this bounds a worker's cache
/// to about 4 MiB of tokens (plus their decoded claims).
pub const TOKEN_CACHE_ENTRIES_MAX: usize = 2048;
/// Longer tokens are verified every time (real access tokens are 0.5–2 KiB).
pub const CACHED_TOKEN_BYTES_MAX: usize = 2048;

/// What the cache knows about one token.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The decoded header and claims.
    pub jwt: Rc<Jwt>,
    /// Bit `i`: the signature verified under key ring `i` (see [`super::keys::CACHED_RINGS_MAX`]).
    pub rings: u64,
    /// The snapshot the rings belong to.
    pub epoch: u64,
    /// `exp` in seconds since the epoch; `None`: the token has none.
    pub exp: Option<i64>,
}

thread_local! {
    static CACHE: RefCell<quick_cache::unsync::Cache<Box<str>, Verified>> =
        RefCell::new(quick_cache::unsync::Cache::new(TOKEN_CACHE_ENTRIES_MAX));
}

/// The entry for `token` if it is still good at `now_s` under `epoch`.
pub fn lookup(token: &str, epoch: u64, now_s: i64) -> Option<Verified> {
    if token.len() > CACHED_TOKEN_BYTES_MAX {
        return None;
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let entry = cache.get(token)?;
        if entry.epoch == epoch && entry.exp.is_none_or(|exp| now_s < exp) {
            return Some(entry.clone());
        }
        cache.remove(token);
        None
    })
}

/// Remembers that `token` verified under ring `ring` (other rings it verified under are kept
/// when the epoch is the same).
pub fn remember(token: &str, ring: u32, epoch: u64, jwt: &Rc<Jwt>, exp: Option<i64>) {
    if token.len() > CACHED_TOKEN_BYTES_MAX || ring as usize >= super::keys::CACHED_RINGS_MAX {
        return;
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let rings = cache.get(token).filter(|entry| entry.epoch == epoch).map_or(0, |entry| entry.rings);
        let entry = Verified { jwt: Rc::clone(jwt), rings: rings | (1 << ring), epoch, exp };
        cache.insert(token.into(), entry);
    });
}

/// Entries in this thread's cache (tests).
pub fn len() -> usize {
    CACHE.with(|cache| cache.borrow().len())
}
