//! The router: request path → API, by longest prefix on whole path segments. Sans-IO.
//!
//! Built once per snapshot. A lookup hashes at most [`ROUTE_DEPTH_MAX`] candidate prefixes of
//! the path, longest first; nothing is allocated.

pub mod operation;

use ahash::AHashMap;
use portcullis_contract::model::Config;

use crate::http::url::Target;

/// Deepest API path (in segments) the router matches; deeper API paths are unroutable and
/// reported by [`Router::unroutable`]. Bounds the probes per request; real API paths have 1–4.
pub const ROUTE_DEPTH_MAX: usize = 32;

/// An API matched to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Index into `Config::apis`.
    pub api: u32,
    /// Offset in the request target where the rest of the path (after the API prefix) starts.
    pub remainder: usize,
}

/// Prefix → API table for one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Router {
    by_prefix: AHashMap<Box<[u8]>, u32>,
    /// The API mounted at the root (empty path), if any.
    root: Option<u32>,
    /// Segments of the deepest routable API path: no probe goes deeper.
    depth: usize,
    unroutable: Vec<u32>,
}

impl Router {
    /// Builds the table from a validated config (paths are unique and well-formed).
    pub fn new(config: &Config) -> Self {
        let mut router = Router::default();
        for (index, api) in config.apis.iter().enumerate() {
            let index = index as u32;
            if api.path.is_empty() {
                router.root = Some(index);
                continue;
            }
            let depth = api.path.split('/').count();
            if depth > ROUTE_DEPTH_MAX {
                router.unroutable.push(index);
                continue;
            }
            router.depth = router.depth.max(depth);
            router.by_prefix.insert(api.path.as_bytes().into(), index);
        }
        router
    }

    /// The API for `target` (a request target: path with optional query), longest prefix first.
    pub fn route(&self, target: &[u8]) -> Option<Route> {
        let target = Target::parse(target);
        // Only origin-form targets are routed; `*` and absolute forms match nothing.
        let path = match target.scheme() {
            None => target.path().strip_prefix(b"/")?,
            Some(_) => return None,
        };
        // Ends of the first `depth` segments, as offsets into `path`.
        let mut ends = [0usize; ROUTE_DEPTH_MAX];
        let mut count = 0;
        if self.depth > 0 {
            for (at, &b) in path.iter().enumerate() {
                if b == b'/' {
                    ends[count] = at;
                    count += 1;
                    if count == self.depth {
                        break;
                    }
                }
            }
            if count < self.depth {
                ends[count] = path.len();
                count += 1;
            }
        }
        for &end in ends[..count].iter().rev() {
            if let Some(&api) = self.by_prefix.get(&path[..end]) {
                // +1 for the leading slash stripped above.
                return Some(Route { api, remainder: end + 1 });
            }
        }
        self.root.map(|api| Route { api, remainder: 0 })
    }

    /// APIs whose path is deeper than [`ROUTE_DEPTH_MAX`] segments.
    pub fn unroutable(&self) -> &[u32] {
        &self.unroutable
    }
}

#[cfg(test)]
mod tests {
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
                version: String::new(),
                revision: "1".into(),
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
}
