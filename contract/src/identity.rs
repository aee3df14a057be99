//! Managed identity towards backends (`authentication-managed-identity`): where the data plane's
//! token thread obtains access tokens (`[managed-identity]` in gateway.toml, docs/configuration.md).
//! The tokens themselves never enter a snapshot: they live in the data plane's memory only.

use serde::{Deserialize, Serialize};

/// The Azure instance metadata service's token endpoint (VMs, scale sets, AKS pod identity).
pub const IMDS_ENDPOINT_DEFAULT: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// Microsoft Entra's public cloud, where workload identity exchanges its federated token.
pub const AUTHORITY_DEFAULT: &str = "https://login.microsoftonline.com";
/// What a client-credentials request asks for: `{resource}` is the policy's resource without a
/// trailing `/` (Entra's v2 endpoint wants `<resource>/.default`).
pub const SCOPE_TEMPLATE_DEFAULT: &str = "{resource}/.default";
/// A token is refreshed this long before it expires (Azure's SDKs use five minutes), or at half
/// its lifetime when that is shorter.
pub const REFRESH_AHEAD_S_DEFAULT: u32 = 300;

/// `[managed-identity]`: the token source and when tokens are refreshed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySettings {
    pub source: TokenSource,
    /// Seconds before expiry a token is refreshed (at most half its lifetime).
    pub refresh_ahead_s: u32,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            source: TokenSource::Imds { endpoint: IMDS_ENDPOINT_DEFAULT.to_owned() },
            refresh_ahead_s: REFRESH_AHEAD_S_DEFAULT,
        }
    }
}

/// Where tokens come from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenSource {
    /// The instance metadata service: `GET endpoint?api-version=2018-02-01&resource=R[&client_id=C]`
    /// with `Metadata: true`.
    Imds { endpoint: String },
    /// Azure workload identity (AKS): the federated token in `token_file` is exchanged at
    /// `authority/tenant/oauth2/v2.0/token` as a client assertion. Each `None` is read from the
    /// environment AKS sets (`AZURE_AUTHORITY_HOST`, `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_FEDERATED_TOKEN_FILE`) when a token is fetched.
    WorkloadIdentity {
        authority: Option<String>,
        tenant_id: Option<String>,
        client_id: Option<String>,
        token_file: Option<String>,
    },
    /// OAuth 2.0 client credentials (RFC 6749 §4.4) at any issuer: `POST token_url` with
    /// `client_id`, `client_secret` and `scope` (the template with `{resource}` filled in).
    ClientCredentials { token_url: String, client_id: String, client_secret: String, scope: String },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Imds { endpoint } => f.debug_struct("Imds").field("endpoint", endpoint).finish(),
            Self::WorkloadIdentity { authority, tenant_id, client_id, token_file } => f
                .debug_struct("WorkloadIdentity")
                .field("authority", authority)
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish(),
            Self::ClientCredentials { token_url, client_id, scope, .. } => f
                .debug_struct("ClientCredentials")
                .field("token_url", token_url)
                .field("client_id", client_id)
                .field("client_secret", &"***")
                .field("scope", scope)
                .finish(),
        }
    }
}

impl TokenSource {
    /// A short name for logs and status (`imds`, `workload-identity`, `client-credentials`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Imds { .. } => "imds",
            Self::WorkloadIdentity { .. } => "workload-identity",
            Self::ClientCredentials { .. } => "client-credentials",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_client_secret() {
        let source = TokenSource::ClientCredentials {
            token_url: "http://127.0.0.1:1/token".into(),
            client_id: "app".into(),
            client_secret: "s3cr3t-value".into(),
            scope: SCOPE_TEMPLATE_DEFAULT.into(),
        };
        let shown = format!("{source:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }
}
