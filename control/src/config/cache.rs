//! The `[cache]` section of `gateway.toml`: the internal cache's size, the largest response it
//! keeps, and the external cache (Redis). It compiles into `contract::model::CacheSettings`.

use portcullis_contract::model::CacheSettings;
use serde::Deserialize;
use toml::Spanned;

use super::{Diagnostics, SourceFile};

/// `[cache]` as written; each absent key keeps the default from `contract::model`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct CacheTable {
    pub(crate) internal_size_mb: Option<Spanned<u64>>,
    pub(crate) entry_size_kb: Option<Spanned<u64>>,
    pub(crate) redis_url: Option<Spanned<String>>,
}

/// The internal cache may not be larger than this (64 GiB): a typo in megabytes should not
/// make the data plane reserve the host.
const INTERNAL_SIZE_MB_CEILING: u64 = 64 * 1024;

/// Compiles `[cache]`, reporting each value out of range at its span.
pub(crate) fn compile(table: &CacheTable, source: &SourceFile, diagnostics: &mut Diagnostics) -> CacheSettings {
    let mut settings = CacheSettings::default();
    if let Some(size) = &table.internal_size_mb {
        match *size.get_ref() {
            mb @ 1..=INTERNAL_SIZE_MB_CEILING => settings.internal_bytes_max = mb * 1024 * 1024,
            _ => diagnostics.push(
                source.error(size.span(), format!("internal-size-mb must be between 1 and {INTERNAL_SIZE_MB_CEILING}")),
            ),
        }
    }
    if let Some(size) = &table.entry_size_kb {
        let kb = *size.get_ref();
        if kb == 0 || kb.saturating_mul(1024) > settings.internal_bytes_max {
            diagnostics
                .push(source.error(size.span(), "entry-size-kb must be at least 1 and at most the internal size"));
        } else {
            settings.entry_bytes_max = kb * 1024;
        }
    }
    if let Some(url) = &table.redis_url {
        let text = url.get_ref().trim();
        if text.starts_with("rediss://") {
            // The redis crate is built without TLS: the URL would fail on the first request.
            diagnostics.push(source.error(url.span(), "TLS to Redis (rediss://) is not supported yet; use redis://"));
        } else if text.starts_with("redis://") && text.len() > "redis://".len() {
            settings.redis_url = Some(text.to_owned());
        } else {
            diagnostics.push(source.error(url.span(), "redis-url must be a redis://host:port[/db] URL"));
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(text: &str) -> (CacheSettings, Diagnostics) {
        #[derive(Deserialize)]
        struct File {
            cache: CacheTable,
        }
        let file: File = toml::from_str(text).expect("valid TOML");
        let source = SourceFile::new("gateway.toml", text);
        let mut diagnostics = Diagnostics::default();
        (compile(&file.cache, &source, &mut diagnostics), diagnostics)
    }

    #[test]
    fn defaults_and_values() {
        let (settings, diagnostics) = compiled("[cache]\n");
        assert!(diagnostics.is_empty());
        assert_eq!(settings, CacheSettings::default());
        let (settings, diagnostics) =
            compiled("[cache]\ninternal-size-mb = 8\nentry-size-kb = 64\nredis-url = \"redis://127.0.0.1:6379\"\n");
        assert!(diagnostics.is_empty());
        assert_eq!(settings.internal_bytes_max, 8 * 1024 * 1024);
        assert_eq!(settings.entry_bytes_max, 64 * 1024);
        assert_eq!(settings.redis_url.as_deref(), Some("redis://127.0.0.1:6379"));
    }

    #[test]
    fn out_of_range_values_are_errors_at_their_position() {
        let (_, diagnostics) = compiled("[cache]\ninternal-size-mb = 0\n");
        let rendered = diagnostics.to_string();
        assert!(rendered.contains("gateway.toml:2:20"), "{rendered}");
        assert!(rendered.contains("internal-size-mb must be between 1 and 65536"), "{rendered}");
        let (_, diagnostics) = compiled("[cache]\nredis-url = \"http://x\"\n");
        assert!(diagnostics.to_string().contains("redis-url must be"), "{diagnostics}");
        let (_, diagnostics) = compiled("[cache]\nredis-url = \"rediss://cache:6380\"\n");
        assert!(diagnostics.to_string().contains("TLS to Redis (rediss://) is not supported yet"), "{diagnostics}");
    }
}
