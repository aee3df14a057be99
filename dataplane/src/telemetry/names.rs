//! Indexes to names: a worker counts by index into the snapshot it served from; the telemetry
//! thread names the entities from that same snapshot (kept by generation in [`Generations`]).

use std::collections::VecDeque;
use std::sync::Arc;

use portcullis_contract::model::Config;
use portcullis_contract::telemetry::{RequestRecord, SeriesKey};

use super::{HandedSeries, NONE, RawRecord, SeriesIx};
use crate::snapshot::Snapshot;

/// Snapshots the telemetry thread keeps to name what workers counted: the current one and a few
/// before it (a request keeps the generation it started with).
pub(crate) const GENERATIONS_KEPT: usize = 4;

/// The recent snapshots, by generation.
#[derive(Debug, Default)]
pub(crate) struct Generations {
    kept: VecDeque<Arc<Snapshot>>,
}

impl Generations {
    /// Remembers a newly published snapshot (forgetting the oldest past [`GENERATIONS_KEPT`]).
    pub(crate) fn add(&mut self, snapshot: Arc<Snapshot>) {
        if self.kept.iter().any(|kept| kept.generation == snapshot.generation) {
            return;
        }
        self.kept.push_back(snapshot);
        while self.kept.len() > GENERATIONS_KEPT {
            self.kept.pop_front();
        }
    }

    /// The config of `generation`, if still kept.
    pub(crate) fn config(&self, generation: u64) -> Option<&Config> {
        self.kept.iter().rev().find(|kept| kept.generation == generation).map(|kept| &kept.config)
    }

    /// The newest snapshot's config.
    pub(crate) fn latest(&self) -> Option<&Config> {
        self.kept.back().map(|kept| &kept.config)
    }
}

/// The names of a series' entities (empty strings where it has none, or its generation is gone).
pub(crate) fn series_key(config: Option<&Config>, series: &HandedSeries) -> SeriesKey {
    let names = Names::of(config, &series.ix);
    let (error_source, error_reason) = series.error.clone().unwrap_or_default();
    SeriesKey {
        api_id: names.api.to_owned(),
        api_revision: names.revision,
        operation_id: names.operation.to_owned(),
        product_id: names.product.to_owned(),
        subscription_id: names.subscription.to_owned(),
        user_id: names.user.to_owned(),
        status: series.ix.status,
        backend_status: series.ix.backend_status,
        cache: series.ix.cache,
        error_source,
        error_reason,
    }
}

/// A worker's record, named and formatted as the access log writes it.
pub(crate) fn request_record(config: Option<&Config>, raw: RawRecord) -> RequestRecord {
    let names = Names::of(config, &raw.ix);
    let backend_id = config
        .and_then(|config| config.apis.get(raw.ix.api as usize))
        .and_then(|api| api.backend_id)
        .and_then(|backend| config.and_then(|config| config.backends.get(backend as usize)))
        .map(|backend| backend.id.clone())
        .unwrap_or_default();
    let status = raw.ix.status;
    RequestRecord {
        time_generated: chrono::DateTime::<chrono::Utc>::from(raw.started)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        correlation_id: guid(raw.request_id),
        method: raw.method,
        url: raw.url,
        client_protocol: "HTTP/1.1".to_owned(),
        client_tls_version: if raw.tls { "TLSv1.3".to_owned() } else { String::new() },
        caller_ip_address: raw.client_ip.to_string(),
        api_id: names.api.to_owned(),
        api_revision: names.revision,
        operation_id: names.operation.to_owned(),
        product_id: names.product.to_owned(),
        user_id: names.user.to_owned(),
        apim_subscription_id: names.subscription.to_owned(),
        backend_id,
        response_code: status,
        backend_response_code: raw.ix.backend_status,
        backend_method: String::new(),
        backend_url: String::new(),
        request_size: raw.request_bytes,
        response_size: raw.response_bytes,
        cache: raw.ix.cache,
        total_time: raw.total_us as f64 / 1000.0,
        backend_time: raw.backend_us.map_or(0.0, |us| us as f64 / 1000.0),
        is_request_success: (100..400).contains(&status),
        last_error: raw.last_error.map(|error| *error),
        trace_id: if raw.trace_id == 0 { String::new() } else { format!("{:032x}", raw.trace_id) },
        traces: raw.traces,
    }
}

/// `context.RequestId` as APIM prints it: a GUID.
pub(crate) fn guid(id: u128) -> String {
    let hex = format!("{id:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The names behind one set of indexes.
struct Names<'a> {
    api: &'a str,
    revision: u32,
    operation: &'a str,
    product: &'a str,
    subscription: &'a str,
    user: &'a str,
}

impl<'a> Names<'a> {
    fn of(config: Option<&'a Config>, ix: &SeriesIx) -> Self {
        let mut names = Names { api: "", revision: 0, operation: "", product: "", subscription: "", user: "" };
        let Some(config) = config else { return names };
        if let Some(api) = index(ix.api).and_then(|at| config.apis.get(at)) {
            names.api = &api.id;
            names.revision = api.revision.parse().unwrap_or(1);
            names.operation = index(ix.operation).and_then(|at| api.operations.get(at)).map_or("", |op| &op.id);
        }
        names.product = index(ix.product).and_then(|at| config.products.get(at)).map_or("", |product| &product.id);
        if let Some(subscription) = index(ix.subscription).and_then(|at| config.subscriptions.get(at)) {
            names.subscription = &subscription.id;
            names.user =
                subscription.owner.and_then(|owner| config.users.get(owner as usize)).map_or("", |user| &user.id);
        }
        names
    }
}

fn index(ix: u32) -> Option<usize> {
    (ix != NONE).then_some(ix as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_print_as_guids() {
        assert_eq!(guid(0x0123456789abcdef0123456789abcdef), "01234567-89ab-cdef-0123-456789abcdef");
    }

    #[test]
    fn a_series_of_a_gone_generation_keeps_its_numbers() {
        let series = HandedSeries {
            ix: SeriesIx {
                generation: 9,
                api: 0,
                operation: 0,
                product: NONE,
                subscription: NONE,
                status: 404,
                backend_status: 0,
                cache: portcullis_contract::telemetry::CacheResult::None,
            },
            error: None,
        };
        let key = series_key(None, &series);
        assert_eq!((key.api_id.as_str(), key.status), ("", 404));
    }
}
