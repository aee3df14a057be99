//! The response cache in the lifecycle: `cache-lookup` (the inbound section suspends, the
//! request is looked up; a hit answers it without the backend), `cache-store` (after the
//! outbound section, the response as the client gets it is kept), and the value policies,
//! which suspend any section while the cache answers. The rules and the key are
//! [`crate::cache::key`]'s; docs/cache.md tells the whole story.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use portcullis_contract::program::CachingType;
use portcullis_contract::stats::WorkerSlot;

use crate::cache::entry::{Downstream, Tee};
use crate::cache::key::{self, KeyInput};
use crate::cache::{Backing, CachedResponse, Caches, Entry};
use crate::http::Version;
use crate::http::forward::ClientConnection;
use crate::io::Stream;
use crate::policy::{CacheCall, CachedValue, DownstreamCaching, ResponseLookup, StoreMark};
use crate::proxy::{Connection, ProxyError, RequestCtx, relay};
use crate::snapshot::Snapshot;
use crate::worker::ctx::WorkerCtx;

/// A `cache-lookup` that missed: where `cache-store` keeps the response.
#[derive(Debug, Clone)]
pub(crate) struct PendingStore {
    pub(crate) key: String,
    pub(crate) caching: CachingType,
    /// `downstream-caching-type` and `must-revalidate`, for the stored response's first client.
    pub(crate) downstream: DownstreamCaching,
    pub(crate) must_revalidate: bool,
}

/// One request's cache events, added to the worker's stats slot when it is done.
#[derive(Debug, Default)]
pub(crate) struct CacheCounts {
    pub(crate) hits: Cell<u64>,
    pub(crate) misses: Cell<u64>,
    pub(crate) stores: Cell<u64>,
    pub(crate) external_errors: Cell<u64>,
}

impl CacheCounts {
    fn bump(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }

    /// Adds the request's counts to the worker's slot.
    pub(crate) fn record(&self, slot: &WorkerSlot) {
        for (count, counter) in [
            (&self.hits, &slot.cache_hits),
            (&self.misses, &slot.cache_misses),
            (&self.stores, &slot.cache_stores),
            (&self.external_errors, &slot.cache_external_errors),
        ] {
            if count.get() > 0 {
                WorkerSlot::add(counter, count.get());
            }
        }
    }
}

/// How a `cache-lookup` ended.
pub(crate) enum Lookup {
    /// The cached response went to the client (or failed to): the request is done.
    Answered(Result<(), ProxyError>),
    /// Go on with the inbound section (a miss, or a request APIM does not look up).
    Continue,
}

impl<S: Stream> Connection<S> {
    /// `cache-lookup`: looks the request up when APIM would (GET, and `Authorization` only with
    /// `allow-private-response-caching`); a hit is written to the client at once.
    pub(crate) async fn cache_lookup(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        lookup: &ResponseLookup,
    ) -> Lookup {
        let Some(snapshot) = ctx.snapshot.clone() else { return Lookup::Continue };
        let method = ctx.head.method(&self.buf);
        let authorized = ctx.head.header(&self.buf, b"authorization").is_some();
        if !key::lookup_allowed(method, authorized, lookup.allow_private) {
            return Lookup::Continue;
        }
        let Some(key) = self.response_key(&snapshot, ctx, lookup) else { return Lookup::Continue };
        let found = match snapshot.caches.backing(lookup.caching) {
            Backing::Internal(cache) => match cache.get(&key) {
                Some(Entry::Response(response)) => Some(response),
                _ => None,
            },
            Backing::External(external) => match external.get(&key).await {
                Ok(bytes) => bytes.and_then(|bytes| CachedResponse::decode(&bytes)).map(Arc::new),
                Err(_) => {
                    CacheCounts::bump(&ctx.cache_counts.external_errors);
                    None
                }
            },
            Backing::Nowhere => None,
        };
        let Some(response) = found else {
            CacheCounts::bump(&ctx.cache_counts.misses);
            self.policy.remove_request_headers(&key::CONDITIONAL_HEADERS, &ctx.head, &self.buf);
            ctx.cache_store = Some(Box::new(PendingStore {
                key,
                caching: lookup.caching,
                downstream: lookup.downstream,
                must_revalidate: lookup.must_revalidate,
            }));
            return Lookup::Continue;
        };
        CacheCounts::bump(&ctx.cache_counts.hits);
        ctx.cache_hit = true;
        let downstream = Downstream {
            caching: lookup.downstream,
            must_revalidate: lookup.must_revalidate,
            max_age_s: response.ttl_left_s(),
        };
        Lookup::Answered(self.send_cached(worker, ctx, &response, &downstream).await)
    }

    /// The key of this request under `lookup`'s vary-by settings.
    fn response_key(&self, snapshot: &Snapshot, ctx: &RequestCtx, lookup: &ResponseLookup) -> Option<String> {
        let matched = ctx.matched?;
        let api = snapshot.config.apis.get(matched.api as usize)?;
        let operation = api.operations.get(matched.found.operation as usize)?;
        let program = snapshot.programs.get(lookup.program)?;
        let names = |first: u32, count: u16| -> Vec<&str> {
            (first..first + u32::from(count))
                .filter_map(|index| program.const_str(index))
                .map(|name| name.as_str())
                .collect()
        };
        let (queries, headers) =
            (names(lookup.queries_first, lookup.queries), names(lookup.headers_first, lookup.headers));
        let target = crate::http::url::Target::parse(ctx.head.target(&self.buf));
        let developer = matched
            .subscription
            .and_then(|index| snapshot.config.subscriptions.get(index as usize))
            .map(|subscription| subscription.id.as_str());
        let input = KeyInput {
            api: &api.id,
            operation: &operation.id,
            path: target.path(),
            query: target.query().unwrap_or_default(),
            developer: lookup.vary_by_developer.then_some(developer.unwrap_or("")),
            groups: lookup.vary_by_developer_groups.then_some(""),
        };
        let buf = &self.buf;
        let head = &ctx.head;
        key::response_key(&input, &queries, &headers, |name| {
            let mut values = head.headers().iter().filter(|h| h.name.of(buf).eq_ignore_ascii_case(name.as_bytes()));
            let first = values.next()?.value.of(buf);
            let mut joined: Cow<'_, [u8]> = Cow::Borrowed(first);
            for more in values {
                let owned = joined.to_mut();
                owned.push(b',');
                owned.extend_from_slice(more.value.of(buf));
            }
            Some(joined)
        })
    }

    /// Writes a cached response to the client, as the relay would write the backend's.
    async fn send_cached(
        &mut self,
        worker: &WorkerCtx<S>,
        ctx: &mut RequestCtx,
        response: &CachedResponse,
        downstream: &Downstream,
    ) -> Result<(), ProxyError> {
        // The request's body (a GET rarely has one) is skipped if it is all here.
        ctx.request_end = relay::buffered_end(&self.buf, ctx.head.head_len(), ctx.head.framing());
        let close = !ctx.client_keep_alive || ctx.request_end.is_none() || worker.drain.is_draining();
        ctx.client_keep_alive = !close;
        let connection = match (close, ctx.head.version()) {
            (true, _) => ClientConnection::Close,
            (false, Version::Http10) => ClientConnection::KeepAliveHttp10,
            (false, Version::Http11) => ClientConnection::KeepAlive,
        };
        response.write_to(&mut self.out, connection, downstream, ctx.is_head);
        ctx.response_started = true;
        ctx.status = response.status();
        ctx.response_head_bytes = self.out.len() as u64;
        self.write_out().await.map_err(ProxyError::ClientWrite)
    }

    /// Runs a value policy's call (`cache-lookup-value`, `cache-store-value`,
    /// `cache-remove-value`); a lookup's result (or default) becomes the variable.
    pub(crate) async fn cache_value(&mut self, ctx: &RequestCtx, call: CacheCall) {
        let Some(snapshot) = ctx.snapshot.clone() else { return };
        let caches = &snapshot.caches;
        match call {
            CacheCall::LookupValue { caching, key, variable, default } => {
                let found = lookup_value(caches, caching, &key::value_key(&key), &ctx.cache_counts).await;
                if let Some(value) = found.or(default) {
                    self.policy.set_cached_variable(variable, value.to_value(), &snapshot.programs);
                }
            }
            CacheCall::StoreValue { caching, key, value, duration_s } => {
                let key = key::value_key(&key);
                let ttl = Duration::from_secs(duration_s);
                // Values are bounded like responses: one larger than an entry is not kept.
                if value.weight() as u64 > caches.entry_bytes_max {
                    return;
                }
                let stored = match caches.backing(caching) {
                    Backing::Internal(cache) => {
                        cache.insert(&key, Entry::Value(value), ttl);
                        true
                    }
                    Backing::External(external) => external.set_detached(&key, value.encode(), ttl),
                    Backing::Nowhere => false,
                };
                CacheCounts::bump(if stored { &ctx.cache_counts.stores } else { &ctx.cache_counts.external_errors });
            }
            CacheCall::RemoveValue { caching, key } => {
                let key = key::value_key(&key);
                match caches.backing(caching) {
                    Backing::Internal(cache) => cache.remove(&key),
                    Backing::External(external) => {
                        if !external.delete_detached(&key) {
                            CacheCounts::bump(&ctx.cache_counts.external_errors);
                        }
                    }
                    Backing::Nowhere => {}
                }
            }
            // The inbound phase handles response lookups (a hit ends the request).
            CacheCall::LookupResponse(_) => {}
        }
    }

    /// After the outbound section: a tee for the response body when `cache-store` ran on a
    /// request `cache-lookup` missed and the response is one the rules let in.
    pub(crate) fn store_tee(&self, ctx: &RequestCtx, status: u16, head: &[u8]) -> Option<Tee> {
        let mark: StoreMark = self.policy.cache_store()?;
        ctx.cache_store.as_ref()?;
        let snapshot = ctx.snapshot.as_deref()?;
        let cache_control = header_values(head, b"cache-control");
        let vary = header_values(head, b"vary");
        if mark.duration_s == 0 || !key::storable(status, mark.any_status, &cache_control, &vary) {
            return None;
        }
        let limit = usize::try_from(snapshot.caches.entry_bytes_max).unwrap_or(usize::MAX).saturating_sub(head.len());
        Some(Tee::new(limit))
    }

    /// The `Cache-Control` the response being stored carries to its first client (the one whose
    /// request missed), as a hit would: `None` when downstream caching is `none`.
    pub(crate) fn miss_cache_control(&self, ctx: &RequestCtx) -> Option<String> {
        let pending = ctx.cache_store.as_ref()?;
        let mark = self.policy.cache_store()?;
        let downstream = Downstream {
            caching: pending.downstream,
            must_revalidate: pending.must_revalidate,
            max_age_s: mark.duration_s,
        };
        downstream.cache_control()
    }

    /// Keeps the response whose head is `head` and whose body the tee collected, if whole.
    pub(crate) fn store_response(&self, ctx: &RequestCtx, head: &[u8], tee: Tee) {
        let (Some(pending), Some(mark), Some(snapshot)) =
            (ctx.cache_store.as_ref(), self.policy.cache_store(), ctx.snapshot.as_deref())
        else {
            return;
        };
        let Some(body) = tee.finish() else { return };
        let ttl = Duration::from_secs(mark.duration_s);
        let Some(response) = CachedResponse::of_relayed(head, body, ttl) else { return };
        let stored = match snapshot.caches.backing(pending.caching) {
            Backing::Internal(cache) => {
                cache.insert(&pending.key, Entry::Response(Arc::new(response)), ttl);
                true
            }
            Backing::External(external) => external.set_detached(&pending.key, response.encode(), ttl),
            Backing::Nowhere => return,
        };
        CacheCounts::bump(if stored { &ctx.cache_counts.stores } else { &ctx.cache_counts.external_errors });
    }
}

/// The value under `key` in the cache `caching` names; a failed external lookup is counted.
async fn lookup_value(caches: &Caches, caching: CachingType, key: &str, counts: &CacheCounts) -> Option<CachedValue> {
    match caches.backing(caching) {
        Backing::Internal(cache) => match cache.get(key) {
            Some(Entry::Value(value)) => Some(value),
            _ => None,
        },
        Backing::External(external) => match external.get(key).await {
            Ok(bytes) => bytes.and_then(|bytes| CachedValue::decode(&bytes)),
            Err(_) => {
                CacheCounts::bump(&counts.external_errors);
                None
            }
        },
        Backing::Nowhere => None,
    }
}

/// Replaces the `Cache-Control` fields of the head at the start of `out` (through its blank line,
/// `head_end`) with one holding `value`, keeping what follows the head; returns the new head end.
pub(crate) fn replace_cache_control(out: &mut Vec<u8>, head_end: usize, value: &str) -> usize {
    let Some(head) = out.get(..head_end.saturating_sub(2)) else { return head_end };
    let mut rewritten = Vec::with_capacity(out.len() + value.len() + 16);
    for line in head.split_inclusive(|&b| b == b'\n') {
        if !(line.len() >= 14 && line[..14].eq_ignore_ascii_case(b"cache-control:")) {
            rewritten.extend_from_slice(line);
        }
    }
    rewritten.extend_from_slice(b"Cache-Control: ");
    rewritten.extend_from_slice(value.as_bytes());
    rewritten.extend_from_slice(b"\r\n\r\n");
    let new_end = rewritten.len();
    rewritten.extend_from_slice(out.get(head_end..).unwrap_or(&[]));
    *out = rewritten;
    new_end
}

/// The values of header `name` (lower case) in a head we wrote.
fn header_values<'h>(head: &'h [u8], name: &[u8]) -> Vec<&'h [u8]> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (field, value) = line.split_at(colon);
            field.eq_ignore_ascii_case(name).then(|| value[1..].trim_ascii())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_is_replaced_in_the_head_and_the_body_kept() {
        let mut out =
            b"HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nContent-Length: 2\r\ncache-control: x\r\n\r\nhi".to_vec();
        let head_end = out.len() - 2;
        let end = replace_cache_control(&mut out, head_end, "public, max-age=60");
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: public, max-age=60\r\n\r\nhi".to_vec()
        );
        assert_eq!(&out[end..], b"hi");
        assert_eq!(header_values(&out[..end], b"cache-control"), [&b"public, max-age=60"[..]]);
    }
}
