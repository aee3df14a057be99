//! API versions and revisions through the real gateway: a version set by path segment, by query
//! parameter and by header, the Original version, unknown versions (404), `;rev=N` to a
//! non-current revision with its own backend and policy, an offline revision (404), and the
//! expressions that read them (`context.Api.Version`, `.Revision`, `.IsCurrentRevision`).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;

use portcullis_tests::http;
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};

/// Outbound headers that tell which version and revision answered.
const WHICH: &str = r#"<policies>
  <inbound><base /></inbound>
  <backend><base /></backend>
  <outbound>
    <base />
    <set-header name="X-Api-Version" exists-action="override"><value>@(context.Api.Version)</value></set-header>
    <set-header name="X-Api-Revision" exists-action="override">
      <value>@(context.Api.Revision + (context.Api.IsCurrentRevision ? " current" : " not current"))</value>
    </set-header>
  </outbound>
  <on-error><base /></on-error>
</policies>"#;

/// An open API on `path` in `set` at `version` (none: the Original version), whose backend
/// path starts with `/<base>`.
fn version(path: &str, set: &str, version: Option<&str>, base: &str) -> String {
    let version = version.map_or_else(String::new, |version| format!("version = \"{version}\"\n"));
    format!(
        "name = \"{base}\"\npath = \"{path}\"\nversion-set = \"{set}\"\n{version}\
         backend-url = \"{{{{echo-backend-url}}}}/{base}\"\nsubscription-required = false\n"
    )
}

fn config() -> TempDir {
    let dir = TempDir::new("config");
    let root = dir.path();
    copy_tree(&bins::repo_root().join("examples/quickstart"), root).unwrap();
    write(root, "version-sets/books.toml", "name = \"Books\"\nscheme = \"segment\"\n");
    write(root, "version-sets/quotes.toml", "name = \"Quotes\"\nscheme = \"query\"\n");
    write(root, "version-sets/hats.toml", "name = \"Hats\"\nscheme = \"header\"\n");
    write(root, "version-sets/maps.toml", "name = \"Maps\"\nscheme = \"segment\"\n");
    for (id, path, set, number, base) in [
        ("books", "books", "books", None, "original"),
        ("books-v1", "books", "books", Some("v1"), "books-v1"),
        ("books-v2", "books", "books", Some("v2"), "books-v2"),
        ("quotes-v1", "quotes", "quotes", Some("v1"), "quotes-v1"),
        ("quotes-v2", "quotes", "quotes", Some("2024-05-01"), "quotes-v2"),
        ("hats-v1", "hats", "hats", Some("v1"), "hats-v1"),
        ("hats-v2", "hats", "hats", Some("v2"), "hats-v2"),
        ("maps-v1", "maps", "maps", Some("v1"), "maps-v1"),
    ] {
        write(root, &format!("apis/{id}/api.toml"), &version(path, set, number, base));
        write(root, &format!("apis/{id}/policy.xml"), WHICH);
    }
    // The quickstart's echo API (revision 1, current) gets revision 2, with its own backend
    // path and policy, and revision 3, offline.
    write(root, "apis/echo/policy.xml", WHICH);
    write(
        root,
        "apis/echo;rev=2/api.toml",
        "revision-description = \"the new backend\"\nbackend-url = \"{{echo-backend-url}}/rev2\"\n",
    );
    write(root, "apis/echo;rev=2/policy.xml", WHICH);
    write(root, "apis/echo;rev=3/api.toml", "online = false\nbackend-url = \"{{echo-backend-url}}/rev3\"\n");
    dir
}

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const NOT_FOUND: &str = r#"{ "statusCode": 404, "message": "Resource not found" }"#;

portcullis_tests::on_both_io_backends!(versions_and_revisions_route_as_apim);

fn versions_and_revisions_route_as_apim(io: &str) {
    let config = config();
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    let auth = ("Ocp-Apim-Subscription-Key", key.as_str());
    let get = |target: &str, headers: &[(&str, &str)]| http::get(gateway.addr, target, headers).unwrap();
    // (status, backend path, backend query, X-Api-Version, X-Api-Revision)
    let answer = |target: &str, headers: &[(&str, &str)]| {
        let response = get(target, headers);
        assert_eq!(response.status, 200, "{target}: {}", response.text());
        let echoed = response.json();
        (
            echoed["path"].as_str().unwrap().to_owned(),
            echoed["query"].as_str().unwrap().to_owned(),
            response.header("x-api-version").unwrap_or("-").to_owned(),
            response.header("x-api-revision").unwrap_or("-").to_owned(),
        )
    };
    let not_found = |target: &str, headers: &[(&str, &str)]| {
        let response = get(target, headers);
        assert_eq!((response.status, response.text()), (404, NOT_FOUND.to_owned()), "{target}");
    };
    let row = |path: &str, query: &str, version: &str, revision: &str| {
        (path.to_owned(), query.to_owned(), version.to_owned(), revision.to_owned())
    };

    // Segment: the version segment is stripped; no version segment is the Original version.
    assert_eq!(answer("/books/v1/shelf?x=1", &[]), row("/books-v1/shelf", "x=1", "v1", "1 current"));
    assert_eq!(answer("/books/v2", &[]), row("/books-v2", "", "v2", "1 current"));
    assert_eq!(answer("/books/shelf", &[]), row("/original/shelf", "", "", "1 current"));
    assert_eq!(answer("/books", &[]), row("/original", "", "", "1 current"));
    // A segment that names no version belongs to the Original version's operations, as
    // APIM matches `/books` before `/books/{version}`; without an Original version it is a 404.
    assert_eq!(answer("/books/v3/shelf", &[]).0, "/original/v3/shelf");
    assert_eq!(answer("/maps/v1/x", &[]).0, "/maps-v1/x");
    not_found("/maps/v2/x", &[]);
    not_found("/maps", &[]);

    // Query: the parameter picks the version and is forwarded, as APIM forwards it.
    let query = answer("/quotes/today?api-version=2024-05-01&n=3", &[]);
    assert_eq!(query, row("/quotes-v2/today", "api-version=2024-05-01&n=3", "2024-05-01", "1 current"));
    assert_eq!(answer("/quotes/today?api-version=v1", &[]).0, "/quotes-v1/today");
    not_found("/quotes/today", &[]);
    not_found("/quotes/today?api-version=v3", &[]);

    // Header.
    assert_eq!(answer("/hats/red", &[("Api-Version", "v2")]), row("/hats-v2/red", "", "v2", "1 current"));
    assert_eq!(answer("/hats/red", &[("api-version", "v1")]).0, "/hats-v1/red");
    not_found("/hats/red", &[]);
    not_found("/hats/red", &[("Api-Version", "v9")]);

    // Revisions: ;rev=N reaches revision N, with its own backend and policy, and is not
    // forwarded; the key of a subscription to the API opens every revision.
    assert_eq!(answer("/echo/hello", &[auth]), row("/api/hello", "", "", "1 current"));
    assert_eq!(answer("/echo;rev=2/hello?a=b", &[auth]), row("/rev2/hello", "a=b", "", "2 not current"));
    assert_eq!(answer("/echo;rev=1/hello", &[auth]), row("/api/hello", "", "", "1 current"));
    assert_eq!(get("/echo;rev=2/hello", &[]).status, 401, "the revision requires a key as its API does");
    not_found("/echo;rev=3/hello", &[auth]);
    not_found("/echo;rev=4/hello", &[auth]);
    assert_eq!(answer("/books/v1;rev=1/shelf", &[]).0, "/books-v1/shelf", "segment versions: ;rev after the version");
    not_found("/books/v1;rev=2/shelf", &[]);
}
