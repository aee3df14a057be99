//! `gateway.toml`'s observability tables: `[access-log]`, `[metrics]`, `[tracing]` and
//! `[analytics]`. They compile into `contract::telemetry::ObservabilitySettings`
//! (docs/observability.md).

use portcullis_contract::telemetry::{
    AccessLogDestination, AccessLogSettings, AnalyticsSettings, MetricsSettings, ObservabilitySettings, TracingSettings,
};
use serde::Deserialize;
use toml::Spanned;

use super::{Diagnostics, SourceFile};

/// The four tables as written; each absent key keeps the default from `contract::telemetry`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct AccessLogTable {
    /// `off` (default), `stdout` or `file`.
    pub(crate) destination: Option<Spanned<String>>,
    /// With `destination = "file"`: where (relative: from the data directory).
    pub(crate) path: Option<Spanned<String>>,
    pub(crate) queue_records: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct MetricsTable {
    pub(crate) per_subscription: Option<bool>,
    pub(crate) series_max: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct TracingTable {
    pub(crate) endpoint: Option<Spanned<String>>,
    pub(crate) sampling_ratio: Option<Spanned<f64>>,
    pub(crate) service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct AnalyticsTable {
    pub(crate) retention_days: Option<Spanned<u32>>,
    pub(crate) hourly_after_days: Option<Spanned<u32>>,
}

/// The tables of one `gateway.toml`.
pub(crate) struct Tables<'a> {
    pub(crate) access_log: &'a AccessLogTable,
    pub(crate) metrics: &'a MetricsTable,
    pub(crate) tracing: Option<&'a TracingTable>,
    pub(crate) analytics: &'a AnalyticsTable,
}

/// A per-worker queue may hold at most this many records (a worker's queue is preallocated).
const QUEUE_RECORDS_CEILING: u32 = 1 << 20;
/// Series per family: past this a scrape is megabytes.
const SERIES_MAX_CEILING: u32 = 1_000_000;
/// Rollups are kept at most ten years.
const RETENTION_DAYS_CEILING: u32 = 3650;
/// The `service.name` spans carry when `[tracing]` names none.
pub(crate) const SERVICE_NAME_DEFAULT: &str = "portcullis";

/// Compiles the tables, reporting each bad value at its span.
pub(crate) fn compile(tables: Tables<'_>, source: &SourceFile, diagnostics: &mut Diagnostics) -> ObservabilitySettings {
    ObservabilitySettings {
        access_log: access_log(tables.access_log, source, diagnostics),
        metrics: metrics(tables.metrics, source, diagnostics),
        tracing: tables.tracing.and_then(|table| tracing(table, source, diagnostics)),
        analytics: analytics(tables.analytics, source, diagnostics),
    }
}

fn access_log(table: &AccessLogTable, source: &SourceFile, diagnostics: &mut Diagnostics) -> AccessLogSettings {
    let mut settings = AccessLogSettings::default();
    let destination = table.destination.as_ref().map(|value| (value.get_ref().as_str(), value.span()));
    settings.destination = match (destination, &table.path) {
        (None | Some(("off", _)), None) => AccessLogDestination::Off,
        (Some(("stdout", _)), None) => AccessLogDestination::Stdout,
        (Some(("file", _)), Some(path)) if !path.get_ref().trim().is_empty() => {
            AccessLogDestination::File(path.get_ref().trim().to_owned())
        }
        (Some(("file", span)), _) => {
            diagnostics.push(source.error(span, "destination = \"file\" needs a path"));
            AccessLogDestination::Off
        }
        (Some(("off" | "stdout", _)) | None, Some(path)) => {
            diagnostics.push(source.error(path.span(), "path is only read with destination = \"file\""));
            AccessLogDestination::Off
        }
        (Some((_, span)), _) => {
            diagnostics.push(source.error(span, "destination must be \"off\", \"stdout\" or \"file\""));
            AccessLogDestination::Off
        }
    };
    if let Some(records) = &table.queue_records {
        match *records.get_ref() {
            n @ 1..=QUEUE_RECORDS_CEILING => settings.queue_records = n,
            _ => diagnostics.push(
                source.error(records.span(), format!("queue-records must be between 1 and {QUEUE_RECORDS_CEILING}")),
            ),
        }
    }
    settings
}

fn metrics(table: &MetricsTable, source: &SourceFile, diagnostics: &mut Diagnostics) -> MetricsSettings {
    let mut settings =
        MetricsSettings { per_subscription: table.per_subscription.unwrap_or(false), ..Default::default() };
    if let Some(series) = &table.series_max {
        match *series.get_ref() {
            n @ 1..=SERIES_MAX_CEILING => settings.series_max = n,
            _ => diagnostics
                .push(source.error(series.span(), format!("series-max must be between 1 and {SERIES_MAX_CEILING}"))),
        }
    }
    settings
}

fn tracing(table: &TracingTable, source: &SourceFile, diagnostics: &mut Diagnostics) -> Option<TracingSettings> {
    let Some(endpoint) = &table.endpoint else {
        // `[tracing]` without an endpoint: propagate trace context, export nothing.
        return None;
    };
    let url = endpoint.get_ref().trim();
    if url.starts_with("https://") {
        // The data plane's exporter is a plain HTTP/1.1 client (docs/observability.md "Traces").
        diagnostics.push(source.error(
            endpoint.span(),
            "https:// trace endpoints are not supported yet: export to an OpenTelemetry collector on http:// \
             (e.g. one on loopback that forwards over TLS)",
        ));
        return None;
    }
    if !url.starts_with("http://") || url.parse::<hyper::Uri>().is_err() {
        diagnostics.push(source.error(endpoint.span(), "endpoint must be an http:// OTLP/HTTP URL"));
        return None;
    }
    let ratio = table.sampling_ratio.as_ref().map_or(1.0, |ratio| *ratio.get_ref());
    if !(0.0..=1.0).contains(&ratio) {
        let span = table.sampling_ratio.as_ref().map(|ratio| ratio.span()).unwrap_or(endpoint.span());
        diagnostics.push(source.error(span, "sampling-ratio must be between 0.0 and 1.0"));
        return None;
    }
    Some(TracingSettings {
        endpoint: url.to_owned(),
        sampling_ratio: ratio,
        service_name: table.service_name.clone().unwrap_or_else(|| SERVICE_NAME_DEFAULT.to_owned()),
    })
}

fn analytics(table: &AnalyticsTable, source: &SourceFile, diagnostics: &mut Diagnostics) -> AnalyticsSettings {
    let mut settings = AnalyticsSettings::default();
    if let Some(days) = &table.retention_days {
        match *days.get_ref() {
            n @ 1..=RETENTION_DAYS_CEILING => settings.retention_days = n,
            _ => diagnostics.push(
                source.error(days.span(), format!("retention-days must be between 1 and {RETENTION_DAYS_CEILING}")),
            ),
        }
    }
    if let Some(days) = &table.hourly_after_days {
        match *days.get_ref() {
            n if n >= 1 && n <= settings.retention_days => settings.hourly_after_days = n,
            _ => diagnostics
                .push(source.error(days.span(), "hourly-after-days must be at least 1 and at most retention-days")),
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct File {
        #[serde(default)]
        access_log: AccessLogTable,
        #[serde(default)]
        metrics: MetricsTable,
        tracing: Option<TracingTable>,
        #[serde(default)]
        analytics: AnalyticsTable,
    }

    fn compiled(text: &str) -> (ObservabilitySettings, Vec<String>) {
        let file: File = toml::from_str(text).expect("valid TOML");
        let source = SourceFile::new("gateway.toml", text);
        let mut diagnostics = Diagnostics::default();
        let tables = Tables {
            access_log: &file.access_log,
            metrics: &file.metrics,
            tracing: file.tracing.as_ref(),
            analytics: &file.analytics,
        };
        let settings = compile(tables, &source, &mut diagnostics);
        (settings, diagnostics.items.iter().map(|diagnostic| diagnostic.to_string()).collect())
    }

    #[test]
    fn nothing_written_is_the_defaults() {
        let (settings, diagnostics) = compiled("");
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(settings, ObservabilitySettings::default());
    }

    #[test]
    fn every_table_compiles() {
        let (settings, diagnostics) = compiled(
            "[access-log]\ndestination = \"file\"\npath = \"logs/access.log\"\nqueue-records = 100\n\
             [metrics]\nper-subscription = true\nseries-max = 50\n\
             [tracing]\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\nsampling-ratio = 0.01\n\
             [analytics]\nretention-days = 30\nhourly-after-days = 2\n",
        );
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(settings.access_log.destination, AccessLogDestination::File("logs/access.log".into()));
        assert_eq!(settings.access_log.queue_records, 100);
        assert!(settings.metrics.per_subscription);
        assert_eq!(settings.metrics.series_max, 50);
        let tracing = settings.tracing.expect("tracing");
        assert_eq!((tracing.sampling_ratio, tracing.service_name.as_str()), (0.01, SERVICE_NAME_DEFAULT));
        assert_eq!((settings.analytics.retention_days, settings.analytics.hourly_after_days), (30, 2));
    }

    #[test]
    fn bad_values_are_named_at_their_place() {
        for (text, expected) in [
            ("[access-log]\ndestination = \"syslog\"\n", "destination must be"),
            ("[access-log]\ndestination = \"file\"\n", "needs a path"),
            ("[access-log]\npath = \"x.log\"\n", "only read with"),
            ("[access-log]\nqueue-records = 0\n", "queue-records must be"),
            ("[metrics]\nseries-max = 0\n", "series-max must be"),
            ("[tracing]\nendpoint = \"grpc://collector\"\n", "OTLP/HTTP URL"),
            ("[tracing]\nendpoint = \"https://collector/v1/traces\"\n", "https:// trace endpoints are not supported"),
            ("[tracing]\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\nsampling-ratio = 1.5\n", "sampling-ratio"),
            ("[analytics]\nretention-days = 0\n", "retention-days must be"),
            ("[analytics]\nretention-days = 5\nhourly-after-days = 6\n", "hourly-after-days"),
        ] {
            let (_, diagnostics) = compiled(text);
            assert!(diagnostics.iter().any(|diagnostic| diagnostic.contains(expected)), "{text}: {diagnostics:?}");
            assert!(diagnostics.iter().all(|diagnostic| diagnostic.contains("gateway.toml:")), "{diagnostics:?}");
        }
    }
}
