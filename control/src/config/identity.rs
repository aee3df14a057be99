//! `[managed-identity]` in `gateway.toml`: where `authentication-managed-identity` gets its
//! tokens (the instance metadata service, Azure workload identity, or an OAuth 2.0
//! client-credentials issuer). It compiles into `contract::identity::IdentitySettings`.

use portcullis_contract::identity::{IMDS_ENDPOINT_DEFAULT, IdentitySettings, SCOPE_TEMPLATE_DEFAULT, TokenSource};
use serde::Deserialize;
use toml::Spanned;

use super::{Diagnostics, SourceFile};

/// `[managed-identity]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct IdentityTable {
    /// `imds` (default), `workload-identity` or `client-credentials`.
    pub(crate) source: Option<Spanned<String>>,
    /// `imds`: the metadata service's token endpoint.
    pub(crate) endpoint: Option<Spanned<String>>,
    /// `workload-identity`: Entra's base URL (default `AZURE_AUTHORITY_HOST`, then the public cloud).
    pub(crate) authority: Option<Spanned<String>>,
    pub(crate) tenant_id: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) token_file: Option<String>,
    /// `client-credentials`: the issuer's token endpoint, the client's secret and the scope
    /// template (`{resource}` is replaced).
    pub(crate) token_url: Option<Spanned<String>>,
    pub(crate) client_secret: Option<Spanned<String>>,
    pub(crate) scope: Option<String>,
    pub(crate) refresh_ahead_s: Option<Spanned<u32>>,
}

/// A token is refreshed at most a day ahead (tokens live an hour to a day).
const REFRESH_AHEAD_S_CEILING: u32 = 86_400;

/// Compiles `[managed-identity]`, reporting what is missing or malformed at its span.
pub(crate) fn compile(table: &IdentityTable, source: &SourceFile, diagnostics: &mut Diagnostics) -> IdentitySettings {
    let mut settings = IdentitySettings::default();
    if let Some(ahead) = &table.refresh_ahead_s {
        match *ahead.get_ref() {
            s @ 1..=REFRESH_AHEAD_S_CEILING => settings.refresh_ahead_s = s,
            _ => diagnostics.push(
                source.error(ahead.span(), format!("refresh-ahead-s must be between 1 and {REFRESH_AHEAD_S_CEILING}")),
            ),
        }
    }
    let kind = table.source.as_ref().map_or("imds", |kind| kind.get_ref().as_str());
    let source_span = table.source.as_ref().map_or(0..0, Spanned::span);
    settings.source = match kind {
        "imds" => match url(table.endpoint.as_ref(), "endpoint", source, diagnostics) {
            Ok(endpoint) => {
                TokenSource::Imds { endpoint: endpoint.unwrap_or_else(|| IMDS_ENDPOINT_DEFAULT.to_owned()) }
            }
            Err(()) => return settings,
        },
        "workload-identity" => match url(table.authority.as_ref(), "authority", source, diagnostics) {
            Ok(authority) => TokenSource::WorkloadIdentity {
                authority,
                tenant_id: table.tenant_id.clone(),
                client_id: table.client_id.clone(),
                token_file: table.token_file.clone(),
            },
            Err(()) => return settings,
        },
        "client-credentials" => {
            let Ok(token_url) = url(table.token_url.as_ref(), "token-url", source, diagnostics) else {
                return settings;
            };
            let (Some(token_url), Some(client_id), Some(secret)) =
                (token_url, table.client_id.clone(), table.client_secret.as_ref())
            else {
                diagnostics.push(source.error(
                    source_span,
                    "source = \"client-credentials\" needs token-url, client-id and client-secret",
                ));
                return settings;
            };
            TokenSource::ClientCredentials {
                token_url,
                client_id,
                client_secret: secret.get_ref().clone(),
                scope: table.scope.clone().unwrap_or_else(|| SCOPE_TEMPLATE_DEFAULT.to_owned()),
            }
        }
        other => {
            diagnostics.push(source.error(
                source_span,
                format!("source {other:?}: expected \"imds\", \"workload-identity\" or \"client-credentials\""),
            ));
            return settings;
        }
    };
    settings
}

/// An optional URL setting: `Ok(None)` when absent, an error reported at its span when it is
/// not http(s).
fn url(
    value: Option<&Spanned<String>>,
    name: &str,
    source: &SourceFile,
    diagnostics: &mut Diagnostics,
) -> Result<Option<String>, ()> {
    let Some(value) = value else { return Ok(None) };
    let text = value.get_ref().trim();
    if text.starts_with("http://") || text.starts_with("https://") {
        Ok(Some(text.trim_end_matches('/').to_owned()))
    } else {
        diagnostics.push(source.error(value.span(), format!("{name} must be an http:// or https:// URL")));
        Err(())
    }
}

#[cfg(test)]
mod tests {
    use portcullis_contract::identity::REFRESH_AHEAD_S_DEFAULT;

    use super::*;

    fn compiled(text: &str) -> (IdentitySettings, Diagnostics) {
        #[derive(Deserialize)]
        #[serde(rename_all = "kebab-case")]
        struct File {
            managed_identity: IdentityTable,
        }
        let file: File = toml::from_str(text).expect("valid TOML");
        let source = SourceFile::new("gateway.toml", text);
        let mut diagnostics = Diagnostics::default();
        (compile(&file.managed_identity, &source, &mut diagnostics), diagnostics)
    }

    #[test]
    fn sources_and_defaults() {
        let (settings, diagnostics) = compiled("[managed-identity]\n");
        assert!(diagnostics.is_empty());
        assert_eq!(settings, IdentitySettings::default());
        assert_eq!(settings.refresh_ahead_s, REFRESH_AHEAD_S_DEFAULT);
        let (settings, diagnostics) = compiled(
            "[managed-identity]\nsource = \"client-credentials\"\ntoken-url = \"http://127.0.0.1:9/token/\"\nclient-id = \"app\"\nclient-secret = \"s\"\nrefresh-ahead-s = 60\n",
        );
        assert!(diagnostics.is_empty());
        assert_eq!(
            settings.source,
            TokenSource::ClientCredentials {
                token_url: "http://127.0.0.1:9/token".into(),
                client_id: "app".into(),
                client_secret: "s".into(),
                scope: SCOPE_TEMPLATE_DEFAULT.into()
            }
        );
        assert_eq!(settings.refresh_ahead_s, 60);
        let (settings, diagnostics) =
            compiled("[managed-identity]\nsource = \"workload-identity\"\ntenant-id = \"t\"\n");
        assert!(diagnostics.is_empty());
        assert!(matches!(settings.source, TokenSource::WorkloadIdentity { tenant_id: Some(_), authority: None, .. }));
    }

    #[test]
    fn mistakes_are_reported() {
        let (_, diagnostics) = compiled("[managed-identity]\nsource = \"msi\"\n");
        assert!(!diagnostics.is_empty());
        let (_, diagnostics) = compiled("[managed-identity]\nsource = \"client-credentials\"\nclient-id = \"a\"\n");
        assert!(!diagnostics.is_empty());
        let (_, diagnostics) = compiled("[managed-identity]\nendpoint = \"169.254.169.254\"\n");
        assert!(!diagnostics.is_empty());
        let (_, diagnostics) = compiled("[managed-identity]\nrefresh-ahead-s = 0\n");
        assert!(!diagnostics.is_empty());
    }
}
