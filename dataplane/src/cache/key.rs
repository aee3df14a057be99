//! Which requests `cache-lookup` looks up, which responses `cache-store` keeps, and the key a
//! response is kept under. Sans-IO: bytes in, a decision or a key out (docs/cache.md has the
//! rules with their sources).

use std::fmt::Write as _;

use crate::http::url::{self, Coding};

/// Keys longer than this are not cached (a request with kilobytes of varied-by headers): the
/// key is hashed by moka and sent to Redis, and a bound keeps both cheap.
pub const KEY_BYTES_MAX: usize = 8 * 1024;

/// What a response's key is made of, read from the request.
#[derive(Debug, Clone, Copy)]
pub struct KeyInput<'a> {
    pub api: &'a str,
    pub operation: &'a str,
    /// The request's path as the client sent it (without query).
    pub path: &'a [u8],
    /// The raw query (without `?`), or empty.
    pub query: &'a [u8],
    /// The developer the subscription belongs to (the subscription's id: one developer per
    /// subscription here), when `vary-by-developer` is true.
    pub developer: Option<&'a str>,
    /// The developer's groups, when `vary-by-developer-groups` is true (none exist yet: empty).
    pub groups: Option<&'a str>,
}

/// The key of a response: the API, the operation, the path, the value of every
/// `vary-by-query-parameter` and `vary-by-header` (in the order listed; absent and empty
/// differ), then the developer and the groups when the lookup varies by them. Every part is
/// length-prefixed, so no value can forge another's boundary. `header_values(name)` gives a
/// request header's values (joined with `,`). `None`: the key would pass [`KEY_BYTES_MAX`].
pub fn response_key<'h>(
    input: &KeyInput<'_>,
    vary_queries: &[&str],
    vary_headers: &[&str],
    header_values: impl Fn(&str) -> Option<std::borrow::Cow<'h, [u8]>>,
) -> Option<String> {
    let mut key = String::with_capacity(64 + input.path.len());
    key.push_str("r:");
    part(&mut key, input.api.as_bytes());
    part(&mut key, input.operation.as_bytes());
    part(&mut key, input.path);
    for &name in vary_queries {
        key.push('q');
        part(&mut key, name.as_bytes());
        let mut values = url::query_pairs(input.query)
            .filter(|(raw, _)| url::decodes_to(raw, Coding::Form, name.as_bytes()))
            .map(|(_, value)| url::percent_decode(value, Coding::Form))
            .peekable();
        if values.peek().is_none() {
            key.push('-');
        }
        for value in values {
            part(&mut key, &value);
        }
    }
    for &name in vary_headers {
        key.push('h');
        part(&mut key, name.as_bytes());
        match header_values(name) {
            Some(value) => part(&mut key, &value),
            None => key.push('-'),
        }
    }
    if let Some(developer) = input.developer {
        key.push('d');
        part(&mut key, developer.as_bytes());
    }
    if let Some(groups) = input.groups {
        key.push('g');
        part(&mut key, groups.as_bytes());
    }
    (key.len() <= KEY_BYTES_MAX).then_some(key)
}

/// Appends `bytes` length-prefixed (`<len>:`), non-UTF-8 bytes escaped.
fn part(key: &mut String, bytes: &[u8]) {
    let _ = write!(key, "{}:", bytes.len());
    for chunk in bytes.utf8_chunks() {
        key.push_str(chunk.valid());
        for byte in chunk.invalid() {
            let _ = write!(key, "\\x{byte:02x}");
        }
    }
}

/// The key `cache-store-value` and `cache-lookup-value` use for `key`: apart from responses'.
pub fn value_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    out.push_str("v:");
    out.push_str(key);
    out
}

/// Whether `cache-lookup` looks this request up (and `cache-store` may keep its response):
/// APIM "only performs cache lookup for HTTP GET requests", and a request with `Authorization`
/// only when `allow-private-response-caching` is true.
pub fn lookup_allowed(method: &[u8], has_authorization: bool, allow_private: bool) -> bool {
    method == b"GET" && (!has_authorization || allow_private)
}

/// Whether `cache-store` keeps a response: status 200 (any status when `cache-response` is
/// true), not marked `Cache-Control: no-store` or `private` by the backend (a shared cache
/// must not keep those, RFC 9111 §5.2.2.5 and §5.2.2.7), and not `Vary: *` (RFC 9111 §4.1: it
/// never matches a later request).
pub fn storable(status: u16, any_status: bool, cache_control: &[&[u8]], vary: &[&[u8]]) -> bool {
    if status != 200 && !any_status {
        return false;
    }
    let directives = cache_control.iter().flat_map(|value| value.split(|&b| b == b','));
    for directive in directives {
        let name = directive.split(|&b| b == b'=').next().unwrap_or_default().trim_ascii();
        if name.eq_ignore_ascii_case(b"no-store") || name.eq_ignore_ascii_case(b"private") {
            return false;
        }
    }
    !vary.iter().flat_map(|value| value.split(|&b| b == b',')).any(|field| field.trim_ascii() == b"*")
}

/// Request headers `cache-lookup` removes from a request it missed, so that the backend sends a
/// whole response to store rather than a `304` for the client's own cache (APIM: "Cache headers
/// ... were removed from the request to prompt the backend service to send back a complete
/// response").
pub const CONDITIONAL_HEADERS: [&str; 6] =
    ["cache-control", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "if-range"];

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn input<'a>(path: &'a [u8], query: &'a [u8]) -> KeyInput<'a> {
        KeyInput { api: "echo", operation: "get", path, query, developer: None, groups: None }
    }

    fn no_headers(_: &str) -> Option<Cow<'static, [u8]>> {
        None
    }

    #[test]
    fn the_key_varies_by_listed_query_parameters_only() {
        let listed = ["version"];
        let a = response_key(&input(b"/echo/x", b"version=1&other=a"), &listed, &[], no_headers);
        let b = response_key(&input(b"/echo/x", b"other=b&version=1"), &listed, &[], no_headers);
        let c = response_key(&input(b"/echo/x", b"version=2"), &listed, &[], no_headers);
        let d = response_key(&input(b"/echo/x", b"version=%31"), &listed, &[], no_headers);
        assert_eq!(a, b, "unlisted parameters and order do not vary the key");
        assert_ne!(a, c);
        assert_eq!(a, d, "values compare decoded");
        let absent = response_key(&input(b"/echo/x", b""), &listed, &[], no_headers);
        let empty = response_key(&input(b"/echo/x", b"version="), &listed, &[], no_headers);
        assert_ne!(absent, empty);
        assert_ne!(a, response_key(&input(b"/echo/y", b"version=1"), &listed, &[], no_headers));
    }

    #[test]
    fn the_key_varies_by_listed_headers_developer_and_api() {
        let accept = |json: bool| {
            move |name: &str| (name == "accept").then(|| Cow::Borrowed(if json { &b"json"[..] } else { &b"xml"[..] }))
        };
        let json = response_key(&input(b"/p", b""), &[], &["accept"], accept(true));
        let xml = response_key(&input(b"/p", b""), &[], &["accept"], accept(false));
        assert_ne!(json, xml);
        let mut alice = input(b"/p", b"");
        alice.developer = Some("alice");
        let mut bob = input(b"/p", b"");
        bob.developer = Some("bob");
        assert_ne!(response_key(&alice, &[], &[], no_headers), response_key(&bob, &[], &[], no_headers));
        let mut other_api = input(b"/p", b"");
        other_api.api = "other";
        assert_ne!(
            response_key(&other_api, &[], &[], no_headers),
            response_key(&input(b"/p", b""), &[], &[], no_headers)
        );
    }

    #[test]
    fn parts_cannot_forge_each_others_boundaries() {
        let header = |value: &'static [u8]| move |_: &str| Some(Cow::Borrowed(value));
        let one = response_key(&input(b"/p", b"a=1"), &["a"], &["x"], header(b"2"));
        let two = response_key(&input(b"/p", b"a=12"), &["a"], &["x"], header(b""));
        assert_ne!(one, two);
        let long = vec![b'a'; KEY_BYTES_MAX];
        assert_eq!(response_key(&input(&long, b""), &[], &[], no_headers), None);
        assert_eq!(value_key("k"), "v:k");
    }

    #[test]
    fn only_get_is_looked_up_and_authorization_needs_the_opt_in() {
        assert!(lookup_allowed(b"GET", false, false));
        assert!(!lookup_allowed(b"POST", false, false));
        assert!(!lookup_allowed(b"HEAD", false, false));
        assert!(!lookup_allowed(b"GET", true, false));
        assert!(lookup_allowed(b"GET", true, true));
    }

    #[test]
    fn storable_statuses_and_backend_directives() {
        assert!(storable(200, false, &[], &[]));
        assert!(!storable(404, false, &[], &[]));
        assert!(storable(404, true, &[], &[]));
        assert!(!storable(200, false, &[b"no-store"], &[]));
        assert!(!storable(200, false, &[b"max-age=60, Private"], &[]));
        assert!(!storable(200, false, &[b"private=\"set-cookie\""], &[]));
        assert!(storable(200, false, &[b"public, max-age=60"], &[b"Accept"]));
        assert!(!storable(200, false, &[], &[b"Accept, *"]));
    }
}
