//! Log lines on stderr, one per event, each starting with `dataplane` so they stand apart from
//! control's when both write to one terminal or journal.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Environment variable holding the log filter (tracing-subscriber `EnvFilter` syntax).
pub const LOG_ENV: &str = "PORTCULLIS_LOG";

/// Installs the global subscriber: filter from [`LOG_ENV`], default `info`.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_ENV)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).event_format(Prefixed).init();
}

/// `dataplane LEVEL message key=value…`
struct Prefixed;

impl<S, N> FormatEvent<S, N> for Prefixed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        // Fields go through a plain writer: no colour codes in logs, whatever the terminal.
        let mut fields = String::new();
        ctx.field_format().format_fields(Writer::new(&mut fields), event)?;
        writeln!(writer, "dataplane {:>5} {fields}", event.metadata().level())
    }
}
