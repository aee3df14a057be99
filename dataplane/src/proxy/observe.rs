//! The done phase's telemetry: the request counted into the worker's own aggregates, its
//! `emit-metric` values, and its record offered to the telemetry thread (docs/observability.md).

use std::rc::Rc;

use portcullis_contract::stats::WorkerSlot;
use portcullis_contract::telemetry::{AccessLogDestination, CacheResult, LastErrorRecord, TraceEntry};

use crate::io::Stream;
use crate::policy::Programs;
use crate::proxy::{Connection, RequestCtx};
use crate::telemetry::worker::{Sample, offer};
use crate::telemetry::{HandedCustom, NONE, RawRecord, SeriesIx};
use crate::worker::ctx::WorkerCtx;

/// What replaces a subscription key's value in a logged URL.
pub(crate) const REDACTED: &str = "***";
/// APIM's default query parameter for the key, redacted even when no API matched.
const KEY_QUERY_DEFAULT: &str = "subscription-key";

impl<S: Stream> Connection<S> {
    /// Counts the request (always), adds its emitted metrics, and offers its record.
    pub(super) fn observe(&self, worker: &WorkerCtx<S>, ctx: &RequestCtx) {
        let ix = series_ix(ctx);
        let error = self.policy.last_error().map(|error| (Rc::clone(&error.source), Rc::clone(&error.reason)));
        let request_bytes = ctx.request_bytes();
        let response_bytes = ctx.response_head_bytes + ctx.response_body_bytes.unwrap_or(0);
        let total_us = ctx.started.elapsed().as_micros() as u64;
        let mut telemetry = worker.telemetry.borrow_mut();
        telemetry.count(Sample { ix, error, request_bytes, response_bytes, total_us, backend_us: ctx.backend_us });
        let Some(snapshot) = ctx.snapshot.as_deref() else { return };
        for metric in self.policy.metrics() {
            let named = HandedCustom {
                namespace: snapshot.programs.literal(metric.namespace).to_owned(),
                name: snapshot.programs.literal(metric.name).to_owned(),
                dimensions: metric
                    .dimensions
                    .iter()
                    .map(|(name, value)| {
                        (snapshot.programs.literal(*name).to_owned(), value.resolve(&snapshot.programs).to_owned())
                    })
                    .collect(),
            };
            telemetry.emit(named, metric.value);
        }
        if let Some(usage) = self.policy.token_usage() {
            for metric in self.policy.token_metrics() {
                let counts = [usage.prompt, usage.completion, usage.total];
                for (name, count) in metric.names.iter().zip(counts) {
                    let named = HandedCustom {
                        namespace: snapshot.programs.literal(metric.namespace).to_owned(),
                        name: snapshot.programs.literal(*name).to_owned(),
                        dimensions: metric
                            .dimensions
                            .iter()
                            .map(|(name, value)| {
                                (
                                    snapshot.programs.literal(*name).to_owned(),
                                    value.resolve(&snapshot.programs).to_owned(),
                                )
                            })
                            .collect(),
                    };
                    telemetry.emit(named, count as f64);
                }
            }
        }
        let access_log = snapshot.config.observability.access_log.destination != AccessLogDestination::Off;
        if !telemetry.wants_record(access_log) {
            return;
        }
        drop(telemetry);
        let record = RawRecord {
            started: ctx.started_at,
            request_id: ctx
                .matched
                .as_ref()
                .map_or_else(crate::proxy::policies::next_request_id, |matched| matched.request_id),
            ix,
            method: String::from_utf8_lossy(ctx.head.method(&self.buf)).into_owned(),
            url: redacted_url(ctx.head.target(&self.buf), key_query(ctx)),
            client_ip: self.peer.ip(),
            tls: self.client.is_tls(),
            request_bytes,
            response_bytes,
            total_us,
            backend_us: ctx.backend_us,
            last_error: self.policy.last_error().map(|error| {
                Box::new(LastErrorRecord {
                    source: error.source.to_string(),
                    reason: error.reason.to_string(),
                    message: error.message.to_string(),
                    section: error.section.to_owned(),
                    scope: error.scope.to_owned(),
                    elapsed: total_us / 1000,
                })
            }),
            traces: traces(&self.policy, &snapshot.programs),
            trace_id: ctx.trace_id(),
        };
        let limit = snapshot.config.observability.access_log.queue_records as usize;
        if !offer(&worker.queues, worker.index(), record, limit) && access_log {
            WorkerSlot::add(&worker.slot().log_records_dropped, 1);
        }
    }
}

/// The request's entities as indexes into its snapshot.
fn series_ix(ctx: &RequestCtx) -> SeriesIx {
    let matched = ctx.matched.as_ref();
    let cache = if ctx.cache_hit {
        CacheResult::Hit
    } else if ctx.cache_counts.misses.get() > 0 {
        CacheResult::Miss
    } else {
        CacheResult::None
    };
    SeriesIx {
        generation: ctx.snapshot.as_deref().map_or(0, |snapshot| snapshot.generation),
        api: matched.map_or(NONE, |matched| matched.api),
        operation: matched.map_or(NONE, |matched| matched.found.operation),
        product: matched.and_then(|matched| matched.product).unwrap_or(NONE),
        subscription: matched.and_then(|matched| matched.subscription).unwrap_or(NONE),
        status: ctx.status,
        backend_status: ctx.backend_status,
        cache,
    }
}

/// The query parameter that carries the key of the request's API.
fn key_query(ctx: &RequestCtx) -> &str {
    let api = ctx.matched.as_ref().and_then(|matched| {
        ctx.snapshot.as_deref().and_then(|snapshot| snapshot.config.apis.get(matched.api as usize))
    });
    api.map_or(KEY_QUERY_DEFAULT, |api| &api.subscription_key_query)
}

/// The `trace` policies' entries, as text.
fn traces(state: &crate::policy::RequestState, programs: &Programs) -> Vec<TraceEntry> {
    state
        .traces()
        .iter()
        .map(|entry| TraceEntry {
            source: programs.literal(entry.source).to_owned(),
            severity: format!("{:?}", entry.severity).to_ascii_lowercase(),
            message: entry.message.resolve(programs).to_owned(),
            metadata: Vec::new(),
        })
        .collect()
}

/// `target` with the value of every `key_query` parameter (and of APIM's default name) replaced
/// by [`REDACTED`]: a key never reaches a log.
pub(crate) fn redacted_url(target: &[u8], key_query: &str) -> String {
    let target = String::from_utf8_lossy(target);
    let Some((path, query)) = target.split_once('?') else { return target.into_owned() };
    let mut out = String::with_capacity(target.len());
    out.push_str(path);
    out.push('?');
    for (index, pair) in query.split('&').enumerate() {
        if index > 0 {
            out.push('&');
        }
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        let decoded = crate::http::url::percent_decode_str(name.as_bytes(), crate::http::url::Coding::Form);
        if !key_query.is_empty() && decoded.eq_ignore_ascii_case(key_query)
            || decoded.eq_ignore_ascii_case(KEY_QUERY_DEFAULT)
        {
            out.push_str(name);
            out.push('=');
            out.push_str(REDACTED);
        } else {
            out.push_str(pair);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_the_query_are_redacted_whatever_their_spelling() {
        let cases = [
            ("/echo/a?subscription-key=secret&x=1", "key", "/echo/a?subscription-key=***&x=1"),
            ("/echo/a?x=1&key=secret", "key", "/echo/a?x=1&key=***"),
            ("/echo/a?KEY=secret&key", "key", "/echo/a?KEY=***&key=***"),
            ("/echo/a?%6Bey=secret", "key", "/echo/a?%6Bey=***"),
            ("/echo/a", "key", "/echo/a"),
            ("/echo/a?x=secret", "key", "/echo/a?x=secret"),
        ];
        for (target, name, expected) in cases {
            assert_eq!(redacted_url(target.as_bytes(), name), expected, "{target}");
        }
    }
}
