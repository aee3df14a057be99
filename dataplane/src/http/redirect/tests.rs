use super::*;

fn url(text: &str) -> Url {
    resolve(text.as_bytes(), &Url { scheme: Scheme::Http, host: "x".into(), port: 80, target: "/".into() })
        .unwrap_or_else(|| panic!("{text} is a URL"))
}

fn base() -> Url {
    url("http://backend.test:8080/api/v1/orders?page=2")
}

fn resolved(location: &str) -> Option<String> {
    resolve(location.as_bytes(), &base()).map(|url| url.to_string())
}

#[test]
fn absolute_locations() {
    assert_eq!(resolved("https://Other.Test/x?y=1#frag").as_deref(), Some("https://other.test/x?y=1"));
    assert_eq!(resolved("http://127.0.0.1:9000").as_deref(), Some("http://127.0.0.1:9000/"));
    assert_eq!(resolved("HTTP://h:80/a").as_deref(), Some("http://h/a"));
    assert_eq!(resolved("http://[::1]:81/a").as_deref(), Some("http://[::1]:81/a"));
    let v6 = resolve(b"http://[::1]:81/a", &base()).unwrap();
    assert_eq!((v6.bare_host(), v6.port), ("::1", 81));
    assert_eq!(resolved("//cdn.test/p").as_deref(), Some("http://cdn.test/p"));
}

#[test]
fn relative_locations_follow_rfc_3986() {
    assert_eq!(resolved("/moved").as_deref(), Some("http://backend.test:8080/moved"));
    assert_eq!(resolved("/moved?x=1").as_deref(), Some("http://backend.test:8080/moved?x=1"));
    assert_eq!(resolved("items").as_deref(), Some("http://backend.test:8080/api/v1/items"));
    assert_eq!(resolved("../v2/orders").as_deref(), Some("http://backend.test:8080/api/v2/orders"));
    assert_eq!(resolved("./").as_deref(), Some("http://backend.test:8080/api/v1/"));
    assert_eq!(resolved("../../../../up").as_deref(), Some("http://backend.test:8080/up"));
    assert_eq!(resolved("?page=3").as_deref(), Some("http://backend.test:8080/api/v1/orders?page=3"));
    assert_eq!(resolved("/a/./b/../c").as_deref(), Some("http://backend.test:8080/a/c"));
}

#[test]
fn locations_that_are_not_followed() {
    for bad in [
        "",
        "ftp://files.test/x",
        "mailto:someone@example.com",
        "http://user:pw@evil.test/",
        "http://",
        "http://host:99999/",
        "http://host:0/",
        "http://host:x/",
        "http://ho st/",
        "/with space",
        "http://[zz]/",
        "/caf\u{e9}",
    ] {
        assert_eq!(resolved(bad), None, "{bad:?}");
    }
    let long = format!("/{}", "a".repeat(LOCATION_BYTES_MAX));
    assert_eq!(resolved(&long), None);
}

#[test]
fn methods_and_bodies_per_status() {
    let current = base();
    let plan_of = |status, method: &str| plan(status, method.as_bytes(), b"/next", &current);
    for status in [301, 302, 300] {
        assert!(plan_of(status, "POST").unwrap().becomes_get, "{status} POST");
        assert!(!plan_of(status, "PUT").unwrap().becomes_get, "{status} PUT keeps its method");
        assert!(!plan_of(status, "GET").unwrap().becomes_get);
    }
    assert!(plan_of(303, "POST").unwrap().becomes_get);
    assert!(plan_of(303, "PUT").unwrap().becomes_get);
    assert!(!plan_of(303, "HEAD").unwrap().becomes_get, "303 keeps HEAD");
    for status in [307, 308] {
        let redirect = plan_of(status, "POST").unwrap();
        assert!(!redirect.becomes_get, "{status} keeps method and body");
        assert_eq!(redirect.url.target, "/next");
    }
    for status in [200, 304, 305, 306, 404, 500] {
        assert_eq!(plan_of(status, "GET"), None, "{status}");
    }
}

#[test]
fn https_never_steps_down_to_http() {
    let secure = url("https://secure.test/a");
    assert_eq!(plan(302, b"GET", b"http://secure.test/b", &secure), None);
    assert!(plan(302, b"GET", b"https://other.test/b", &secure).is_some());
    assert!(plan(302, b"GET", b"/b", &secure).is_some_and(|r| r.url.scheme == Scheme::Https));
    let plain = base();
    assert!(plan(302, b"GET", b"https://secure.test/b", &plain).is_some());
}

#[test]
fn origins_and_authorities() {
    let a = url("http://h.test/a");
    assert!(a.same_origin(&url("http://H.test:80/b")));
    assert!(!a.same_origin(&url("http://h.test:81/a")));
    assert!(!a.same_origin(&url("https://h.test/a")));
    assert_eq!(url("https://h.test:443/").authority(), "h.test");
    assert_eq!(url("https://h.test:8443/").authority(), "h.test:8443");
}

const SENT: &[u8] = b"POST /api/v1/orders?page=2 HTTP/1.1\r\n\
Content-Type: application/json\r\n\
Authorization: Basic dTpw\r\n\
X-Edit: kept\r\n\
Content-Length: 7\r\n\
Host: backend.test:8080\r\n\
X-Forwarded-For: 10.0.0.1\r\n\r\n";

#[test]
fn sent_url_reads_the_request_line_and_host() {
    assert_eq!(sent_url(SENT, Scheme::Http), Some(base()));
    assert_eq!(sent_url(b"GET /x HTTP/1.1\r\nX: y\r\n\r\n", Scheme::Http), None, "no Host");
    assert_eq!(sent_url(b"GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n", Scheme::Http), None);
}

#[test]
fn the_next_head_keeps_edits_and_drops_credentials() {
    let mut out = Vec::new();
    let keep = plan(307, b"POST", b"http://127.0.0.1:9000/other?q=1", &base()).unwrap();
    assert!(write_head(SENT, &keep, &mut out));
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "POST /other?q=1 HTTP/1.1\r\nContent-Type: application/json\r\nX-Edit: kept\r\nContent-Length: 7\r\n\
Host: 127.0.0.1:9000\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
    );
    let get = plan(303, b"POST", b"/done", &base()).unwrap();
    assert!(write_head(SENT, &get, &mut out));
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "GET /done HTTP/1.1\r\nX-Edit: kept\r\nHost: backend.test:8080\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
    );
    let chunked = b"PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: h\r\n\r\n";
    let current = sent_url(chunked, Scheme::Http).unwrap();
    let to_get = plan(303, b"PUT", b"/b", &current).unwrap();
    assert!(write_head(chunked, &to_get, &mut out));
    assert_eq!(out, b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(!write_head(b"GET / HTTP/1.1\r\nHost: h\r\n", &to_get, &mut out), "an unterminated head");
}
