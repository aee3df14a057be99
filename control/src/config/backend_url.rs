//! Splitting a backend URL (`http://host[:port][/base]`) into the parts the data plane uses.

use std::net::Ipv6Addr;

use portcullis_contract::model::{BackendUrl, Scheme};

/// Default port of plain HTTP.
pub const HTTP_PORT_DEFAULT: u16 = 80;
/// Default port of HTTPS.
pub const HTTPS_PORT_DEFAULT: u16 = 443;
/// DNS limits a host name to 253 characters.
pub const HOST_CHARS_MAX: usize = 253;

/// Why a backend URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendUrlError {
    #[error("a backend URL starts with http:// (found {found:?})")]
    Scheme { found: String },
    #[error("the backend URL has no host")]
    MissingHost,
    #[error("the backend URL's host {host:?} is not a host name or IP address")]
    Host { host: String },
    #[error("the backend URL's port {port:?} is not a number from 1 to 65535")]
    Port { port: String },
    #[error("credentials in a backend URL are not supported (use a policy to add an Authorization header)")]
    UserInfo,
    #[error("a backend URL cannot carry a query or fragment; put it on the request instead")]
    QueryOrFragment,
    #[error("the backend URL's path {path:?} must be visible ASCII without spaces")]
    Path { path: String },
}

/// Parses `url`. The scheme may be `https` (the caller decides whether that is supported yet).
pub fn parse(url: &str) -> Result<BackendUrl, BackendUrlError> {
    let (scheme, rest) = split_scheme(url)?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if path.contains(['?', '#']) {
        return Err(BackendUrlError::QueryOrFragment);
    }
    if authority.contains('@') {
        return Err(BackendUrlError::UserInfo);
    }
    let (host, port_text) = split_host_port(authority)?;
    let default_port = match scheme {
        Scheme::Http => HTTP_PORT_DEFAULT,
        Scheme::Https => HTTPS_PORT_DEFAULT,
    };
    let port = match port_text {
        None => default_port,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => return Err(BackendUrlError::Port { port: text.to_owned() }),
        },
    };
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(BackendUrlError::Path { path: path.to_owned() });
    }
    let base_path = path.trim_end_matches('/').to_owned();
    let bracketed = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
    let authority = if port == default_port { bracketed } else { format!("{bracketed}:{port}") };
    Ok(BackendUrl { scheme, host: host.to_owned(), port, base_path, authority })
}

fn split_scheme(url: &str) -> Result<(Scheme, &str), BackendUrlError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(BackendUrlError::Scheme { found: url.chars().take(16).collect() });
    };
    if scheme.eq_ignore_ascii_case("http") {
        Ok((Scheme::Http, rest))
    } else if scheme.eq_ignore_ascii_case("https") {
        Ok((Scheme::Https, rest))
    } else {
        Err(BackendUrlError::Scheme { found: format!("{scheme}://") })
    }
}

/// Splits `host[:port]` or `[v6]:port`; the host comes back without brackets.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), BackendUrlError> {
    if authority.is_empty() {
        return Err(BackendUrlError::MissingHost);
    }
    if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(BackendUrlError::Host { host: authority.to_owned() });
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(BackendUrlError::Host { host: host.to_owned() });
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(BackendUrlError::Host { host: authority.to_owned() }),
            },
        };
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let valid = !host.is_empty()
        && host.len() <= HOST_CHARS_MAX
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !valid {
        return Err(if host.is_empty() {
            BackendUrlError::MissingHost
        } else {
            BackendUrlError::Host { host: host.to_owned() }
        });
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(scheme: Scheme, host: &str, port: u16, base_path: &str, authority: &str) -> BackendUrl {
        BackendUrl { scheme, host: host.into(), port, base_path: base_path.into(), authority: authority.into() }
    }

    #[test]
    fn splits_urls() {
        assert_eq!(
            parse("http://127.0.0.1:9000/api/").unwrap(),
            url(Scheme::Http, "127.0.0.1", 9000, "/api", "127.0.0.1:9000")
        );
        assert_eq!(parse("http://backend").unwrap(), url(Scheme::Http, "backend", 80, "", "backend"));
        assert_eq!(parse("HTTP://backend:80/").unwrap(), url(Scheme::Http, "backend", 80, "", "backend"));
        assert_eq!(parse("http://[::1]:8080/v1").unwrap(), url(Scheme::Http, "::1", 8080, "/v1", "[::1]:8080"));
        assert_eq!(parse("http://[::1]").unwrap(), url(Scheme::Http, "::1", 80, "", "[::1]"));
        assert_eq!(
            parse("https://secure.example").unwrap(),
            url(Scheme::Https, "secure.example", 443, "", "secure.example")
        );
    }

    #[test]
    fn refuses_bad_urls() {
        assert!(matches!(parse("ftp://x"), Err(BackendUrlError::Scheme { .. })));
        assert!(matches!(parse("backend:80"), Err(BackendUrlError::Scheme { .. })));
        assert_eq!(parse("http://"), Err(BackendUrlError::MissingHost));
        assert_eq!(parse("http://:80/x"), Err(BackendUrlError::MissingHost));
        assert!(matches!(parse("http://a:0"), Err(BackendUrlError::Port { .. })));
        assert!(matches!(parse("http://a:70000"), Err(BackendUrlError::Port { .. })));
        assert!(matches!(parse("http://a:+80"), Err(BackendUrlError::Port { .. })));
        assert!(matches!(parse("http://a b"), Err(BackendUrlError::Host { .. })));
        assert!(matches!(parse("http://[zz]:1"), Err(BackendUrlError::Host { .. })));
        assert!(matches!(parse("http://[::1]x"), Err(BackendUrlError::Host { .. })));
        assert!(matches!(parse("http://[::1"), Err(BackendUrlError::Host { .. })));
        assert_eq!(parse("http://u:p@a"), Err(BackendUrlError::UserInfo));
        assert_eq!(parse("http://a/x?y=1"), Err(BackendUrlError::QueryOrFragment));
        assert_eq!(parse("http://a/x#f"), Err(BackendUrlError::QueryOrFragment));
        assert!(matches!(parse("http://a/x y"), Err(BackendUrlError::Path { .. })));
    }
}
