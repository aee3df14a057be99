//! The router's tests: prefixes, then versions and revisions.

use super::*;

use portcullis_contract::model::{Api, BackendUrl, Scheme};

fn config(paths: &[&str]) -> Config {
    let apis = paths
        .iter()
        .map(|path| Api {
            id: (*path).to_owned(),
            name: (*path).to_owned(),
            path: (*path).to_owned(),
            backend_id: None,
            backend: BackendUrl {
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: 80,
                base_path: String::new(),
                authority: "127.0.0.1".into(),
            },
            subscription_required: false,
            subscription_key_header: String::new(),
            subscription_key_query: String::new(),
            preserve_host: false,
            version_set: None,
            version: String::new(),
            revision: "1".into(),
            revision_of: None,
            online: true,
            description: String::new(),
            revision_description: String::new(),
            operations: vec![portcullis_contract::model::Operation::catch_all(
                portcullis_contract::model::Policies::all(0),
            )],
        })
        .collect();
    Config { apis, ..Config::empty("test") }
}

fn route(router: &Router, target: &str) -> Option<(u32, String)> {
    router.route(target.as_bytes()).map(|r| (r.api, target[r.remainder..].to_owned()))
}

#[test]
fn segment_boundaries() {
    let router = Router::new(&config(&["echo"]));
    assert_eq!(route(&router, "/echo"), Some((0, String::new())));
    assert_eq!(route(&router, "/echo/"), Some((0, "/".into())));
    assert_eq!(route(&router, "/echo/x/y"), Some((0, "/x/y".into())));
    assert_eq!(route(&router, "/echo?q=1"), Some((0, "?q=1".into())));
    assert_eq!(route(&router, "/echoes"), None);
    assert_eq!(route(&router, "/ech"), None);
    assert_eq!(route(&router, "/"), None);
    assert_eq!(route(&router, "echo"), None);
    assert_eq!(route(&router, "*"), None);
    // The path ends at the first `?` or `#` (http::url::Target); absolute forms are not routed.
    assert_eq!(route(&router, "/echo#x/y?z"), Some((0, "#x/y?z".into())));
    assert_eq!(route(&router, "/echo/a#?q"), Some((0, "/a#?q".into())));
    assert_eq!(route(&router, "http://h/echo"), None);
}

#[test]
fn longest_prefix_wins() {
    let router = Router::new(&config(&["a", "a/b", "a/b/c/d"]));
    assert_eq!(route(&router, "/a/x"), Some((0, "/x".into())));
    assert_eq!(route(&router, "/a/b"), Some((1, String::new())));
    assert_eq!(route(&router, "/a/b/c"), Some((1, "/c".into())));
    assert_eq!(route(&router, "/a/b/c/d/e?z"), Some((2, "/e?z".into())));
    assert_eq!(route(&router, "/a/bc"), Some((0, "/bc".into())));
    assert_eq!(route(&router, "/a/b?x=/a/b/c/d"), Some((1, "?x=/a/b/c/d".into())));
}

#[test]
fn root_api_matches_everything_else() {
    let router = Router::new(&config(&["", "echo"]));
    assert_eq!(route(&router, "/echo/1"), Some((1, "/1".into())));
    assert_eq!(route(&router, "/other/1"), Some((0, "/other/1".into())));
    assert_eq!(route(&router, "/"), Some((0, "/".into())));
    assert_eq!(route(&router, "/?q"), Some((0, "/?q".into())));
}

#[test]
fn too_deep_paths_are_reported() {
    let deep = vec!["s"; ROUTE_DEPTH_MAX + 1].join("/");
    let router = Router::new(&config(&[&deep, "ok"]));
    assert_eq!(router.unroutable(), &[0]);
    assert_eq!(route(&router, &format!("/{deep}")), None);
    assert_eq!(route(&router, "/ok"), Some((1, String::new())));
}

/// One API of the versioning tests: `path`, in version set `set` at `version`, revision
/// `revision` (of API `revision_of` when not current).
fn api(path: &str, set: Option<u32>, version: &str, revision: &str, revision_of: Option<u32>) -> Api {
    let mut api = config(&[path]).apis.remove(0);
    api.version_set = set;
    api.version = version.to_owned();
    api.revision = revision.to_owned();
    api.revision_of = revision_of;
    api
}

fn with_set(scheme: VersioningScheme, apis: Vec<Api>) -> Router {
    let set = VersionSet { id: "set".into(), name: "Set".into(), scheme, description: String::new() };
    let config = Config { apis, version_sets: vec![set], ..Config::empty("test") };
    assert_eq!(config.validate(), Ok(()));
    Router::new(&config)
}

use portcullis_contract::model::{VersionSet, VersioningScheme};

fn some(api: u32, rest: &str) -> Option<(u32, String)> {
    Some((api, rest.to_owned()))
}

#[test]
fn revisions_answer_after_the_api_path() {
    let apis = vec![
        api("echo", None, "", "2", None),
        api("echo", None, "", "1", Some(0)),
        Api { online: false, ..api("echo", None, "", "3", Some(0)) },
        api("plain", None, "", "1", None),
        api("a/b", None, "", "1", None),
        api("a/b", None, "", "5", Some(4)),
    ];
    let config = Config { apis, ..Config::empty("test") };
    assert_eq!(config.validate(), Ok(()));
    let router = Router::new(&config);
    assert_eq!(route(&router, "/echo/x"), some(0, "/x"));
    assert_eq!(route(&router, "/echo;rev=1/x?q=1"), some(1, "/x?q=1"));
    assert_eq!(route(&router, "/echo;rev=1"), some(1, ""));
    assert_eq!(route(&router, "/echo;rev=1?q"), some(1, "?q"));
    assert_eq!(route(&router, "/echo;rev=2/x"), some(0, "/x"), "the current revision by its number");
    assert_eq!(route(&router, "/echo;rev=3/x"), None, "offline");
    assert_eq!(route(&router, "/echo;rev=9/x"), None, "unknown");
    assert_eq!(route(&router, "/echo;rev=/x"), None);
    assert_eq!(route(&router, "/echo;v=1/x"), None, "not a revision: no API echo;v=1");
    assert_eq!(route(&router, "/echo/x;rev=1"), some(0, "/x;rev=1"), "only after the API path");
    assert_eq!(route(&router, "/plain;rev=1/a"), some(3, "/a"));
    assert_eq!(route(&router, "/plain;rev=2/a"), None);
    assert_eq!(route(&router, "/a/b;rev=5/c"), some(5, "/c"));
    assert_eq!(route(&router, "/a;rev=5/b/c"), None, "after the last segment of the API path only");
    assert_eq!(route(&router, "/a/b/c"), some(4, "/c"));
}

#[test]
fn segment_versions_follow_the_api_path() {
    let apis = vec![
        api("sw", Some(0), "", "1", None),
        api("sw", Some(0), "v1", "1", None),
        api("sw", Some(0), "v2", "1", None),
        api("sw", Some(0), "v2", "2", Some(2)),
        api("deep/er", Some(1), "v1", "1", None),
    ];
    let sets = vec![
        VersionSet { id: "s".into(), name: "S".into(), scheme: VersioningScheme::Segment, description: String::new() },
        VersionSet { id: "d".into(), name: "D".into(), scheme: VersioningScheme::Segment, description: String::new() },
    ];
    let config = Config { apis, version_sets: sets, ..Config::empty("test") };
    assert_eq!(config.validate(), Ok(()));
    let router = Router::new(&config);
    assert_eq!(route(&router, "/sw/v1/people"), some(1, "/people"));
    assert_eq!(route(&router, "/sw/v1"), some(1, ""));
    assert_eq!(route(&router, "/sw/v1?x=1"), some(1, "?x=1"));
    assert_eq!(route(&router, "/sw/v2;rev=2/people"), some(3, "/people"), "APIM: ;rev after the version");
    assert_eq!(route(&router, "/sw/v2;rev=7/people"), None);
    assert_eq!(route(&router, "/sw/people"), some(0, "/people"), "no version: the Original version");
    assert_eq!(route(&router, "/sw"), some(0, ""));
    assert_eq!(route(&router, "/sw;rev=1/v1/x"), some(0, "/v1/x"), "a revision of the Original version");
    assert_eq!(route(&router, "/sw;rev=2/v1/x"), None);
    assert_eq!(route(&router, "/deep/er/v1/x"), some(4, "/x"), "the version segment counts in the depth");
    assert_eq!(route(&router, "/deep/er/v2/x"), None, "unknown version, no Original version");
    assert_eq!(route(&router, "/deep/er"), None);
}

#[test]
fn query_versions_read_the_parameter_and_keep_it() {
    let router = with_set(
        VersioningScheme::Query("api-version".into()),
        vec![
            api("q", Some(0), "", "1", None),
            api("q", Some(0), "v1", "1", None),
            api("q", Some(0), "v2", "1", None),
            api("q", Some(0), "v1", "2", Some(1)),
        ],
    );
    assert_eq!(route(&router, "/q/x?api-version=v1"), some(1, "/x?api-version=v1"));
    assert_eq!(route(&router, "/q?a=1&api%2Dversion=v%32"), some(2, "?a=1&api%2Dversion=v%32"), "decoded");
    assert_eq!(route(&router, "/q/x"), some(0, "/x"));
    assert_eq!(route(&router, "/q/x?api-version="), some(0, "/x?api-version="), "empty: no version");
    assert_eq!(route(&router, "/q/x?api-version=v9"), None);
    assert_eq!(route(&router, &format!("/q/x?api-version={}", "v".repeat(VERSION_CHARS_MAX + 1))), None);
    assert_eq!(route(&router, "/q;rev=2/x?api-version=v1"), some(3, "/x?api-version=v1"));
    assert_eq!(route(&router, "/q;rev=2/x"), None, "the Original version has no revision 2");
}

#[test]
fn header_versions_read_the_header() {
    let router = with_set(
        VersioningScheme::Header("Api-Version".into()),
        vec![api("h", Some(0), "v1", "1", None), api("h", Some(0), "v2", "1", None)],
    );
    let with = |target: &str, value: Option<&'static str>| {
        router
            .route_with(target.as_bytes(), |name| {
                assert_eq!(name, b"Api-Version");
                value.map(str::as_bytes)
            })
            .map(|r| (r.api, target[r.remainder..].to_owned()))
    };
    assert_eq!(with("/h/x", Some("v2")), some(1, "/x"));
    assert_eq!(with("/h/x", Some(" v1 ")), some(0, "/x"));
    assert_eq!(with("/h/x", Some("v3")), None);
    assert_eq!(with("/h/x", None), None, "no Original version");
    assert_eq!(with("/h/x?api-version=v1", None), None, "the query is not the scheme");
}

#[test]
fn versions_at_the_root() {
    let router = with_set(
        VersioningScheme::Segment,
        vec![api("", Some(0), "", "1", None), api("", Some(0), "v1", "1", None), api("", Some(0), "v1", "2", Some(1))],
    );
    assert_eq!(route(&router, "/v1/x"), some(1, "/x"));
    assert_eq!(route(&router, "/v1;rev=2/x"), some(2, "/x"));
    assert_eq!(route(&router, "/x/y"), some(0, "/x/y"));
    assert_eq!(route(&router, "/"), some(0, "/"));
    assert_eq!(route(&router, "/;rev=1/x"), some(0, "/x"));
}
