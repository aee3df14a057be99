//! The router: request → API (and its version and revision), by longest prefix on whole path
//! segments. Sans-IO.
//!
//! Built once per snapshot. A lookup hashes at most [`ROUTE_DEPTH_MAX`] candidate prefixes of
//! the path, longest first; nothing is allocated. A prefix leads to one API (the common case,
//! decided at once) or to a group: an API with revisions, or the versions of a version set
//! ([`versions`]). `;rev=N` right after a candidate's last segment asks for revision N
//! (`/customers;rev=3/leads`); the prefix is matched without it, and the backend never sees it
//! (the remainder starts after it).

pub mod operation;
mod versions;

use ahash::AHashMap;
use portcullis_contract::model::{Config, REVISION_MARKER, VERSION_CHARS_MAX};

use crate::http::url::Target;
use versions::{Group, OtherRevisions, Scheme};

/// Deepest API path (in segments) the router matches; deeper API paths are unroutable and
/// reported by [`Router::unroutable`]. Bounds the probes per request; real API paths have 1–4.
/// A segment-versioned set counts its version segment.
pub const ROUTE_DEPTH_MAX: usize = 32;

/// An API matched to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Index into `Config::apis`: the version and revision the request asked for.
    pub api: u32,
    /// Offset in the request target where the rest of the path (after the API prefix, the
    /// version segment and `;rev=N`) starts.
    pub remainder: usize,
}

/// What a path prefix leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// One API without versions or other online revisions.
    Api(u32),
    /// Index into `Router::groups`.
    Group(u32),
}

/// Prefix → API table for one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Router {
    by_prefix: AHashMap<Box<[u8]>, Entry>,
    /// What the root (empty path) leads to, if anything is mounted there.
    root: Option<Entry>,
    groups: Vec<Group>,
    /// Per API (index into `Config::apis`): its revision number, which `;rev=` may name.
    numbers: Vec<Box<[u8]>>,
    /// Segments of the deepest routable API path (with its version segment): no probe goes deeper.
    depth: usize,
    unroutable: Vec<u32>,
}

/// The first segments of a request path, as the router scans them once.
struct Scan<'p> {
    /// The path without its leading `/`.
    path: &'p [u8],
    /// Ends of the first segments, as offsets into `path`.
    ends: [usize; ROUTE_DEPTH_MAX],
    count: usize,
}

impl<'p> Scan<'p> {
    /// Scans at most `depth` segments of `path`.
    fn new(path: &'p [u8], depth: usize) -> Self {
        let mut scan = Scan { path, ends: [0; ROUTE_DEPTH_MAX], count: 0 };
        if depth == 0 {
            return scan;
        }
        for (at, &b) in path.iter().enumerate() {
            if b == b'/' {
                scan.ends[scan.count] = at;
                scan.count += 1;
                if scan.count == depth {
                    return scan;
                }
            }
        }
        scan.ends[scan.count] = path.len();
        scan.count += 1;
        scan
    }

    /// The scanned segments.
    fn scanned(&self) -> &'p [u8] {
        match self.count {
            0 => &[],
            count => &self.path[..self.ends[count - 1]],
        }
    }

    /// Where segment `index` starts.
    fn start(&self, index: usize) -> usize {
        if index == 0 { 0 } else { self.ends[index - 1] + 1 }
    }

    /// Segment `index` split at `;rev=`: where its name ends, and the revision it asks for
    /// (`None` when it asks for none: its name is all of it).
    fn segment(&self, index: usize) -> (usize, Option<&'p [u8]>) {
        let (start, end) = (self.start(index), self.ends[index]);
        let segment = &self.path[start..end];
        let marker = REVISION_MARKER.as_bytes();
        match segment.iter().position(|&b| b == b';') {
            Some(at) if segment[at..].starts_with(marker) => (start + at, Some(&segment[at + marker.len()..])),
            _ => (end, None),
        }
    }
}

impl Router {
    /// Builds the table from a validated config (paths are well-formed; APIs share a path only
    /// as the versions of one set; every other revision names its current one).
    pub fn new(config: &Config) -> Self {
        let mut router = Router {
            numbers: config.apis.iter().map(|api| api.revision.as_bytes().into()).collect(),
            ..Router::default()
        };
        // Current revision → its other online revisions; path → its current revisions.
        let mut revisions = OtherRevisions::new();
        let mut by_path: Vec<(&str, Vec<u32>)> = Vec::new();
        let mut path_index: AHashMap<&str, usize> = AHashMap::new();
        for (index, api) in config.apis.iter().enumerate() {
            let index = index as u32;
            match api.revision_of {
                Some(current) if api.online => {
                    revisions.entry(current).or_default().push((api.revision.as_bytes().into(), index));
                }
                Some(_) => {}
                None => {
                    let slot = *path_index.entry(api.path.as_str()).or_insert_with(|| {
                        by_path.push((api.path.as_str(), Vec::new()));
                        by_path.len() - 1
                    });
                    by_path[slot].1.push(index);
                }
            }
        }
        for (path, apis) in by_path {
            router.add(config, path, &apis, &revisions);
        }
        router
    }

    /// Adds the current revisions `apis` that share `path`.
    fn add(&mut self, config: &Config, path: &str, apis: &[u32], revisions: &OtherRevisions) {
        let plain = match apis {
            [api] => {
                let versioned = config.apis.get(*api as usize).is_some_and(|api| api.version_set.is_some());
                (!versioned && !revisions.contains_key(api)).then_some(*api)
            }
            _ => None,
        };
        let entry = match plain {
            Some(api) => Entry::Api(api),
            None => {
                self.groups.push(Group::new(config, apis, revisions));
                Entry::Group(self.groups.len() as u32 - 1)
            }
        };
        let segments = if path.is_empty() { 0 } else { path.split('/').count() };
        let version_segment =
            matches!(entry, Entry::Group(group) if matches!(self.groups[group as usize].scheme, Scheme::Segment));
        let depth = segments + usize::from(version_segment);
        if depth > ROUTE_DEPTH_MAX {
            self.unroutable.extend_from_slice(apis);
            return;
        }
        self.depth = self.depth.max(depth);
        if path.is_empty() {
            self.root = Some(entry);
        } else {
            self.by_prefix.insert(path.as_bytes().into(), entry);
        }
    }

    /// The API for `target` (a request target: path with optional query), longest prefix first,
    /// for a request without headers (see [`Router::route_with`]).
    pub fn route(&self, target: &[u8]) -> Option<Route> {
        self.route_with(target, |_| None)
    }

    /// The API for `target`, longest prefix first; `header` finds a request header by name (the
    /// header a version set's scheme may read).
    pub fn route_with<'r>(&self, target: &'r [u8], header: impl Fn(&[u8]) -> Option<&'r [u8]>) -> Option<Route> {
        let parsed = Target::parse(target);
        // Only origin-form targets are routed; `*` and absolute forms match nothing.
        let path = match parsed.scheme() {
            None => parsed.path().strip_prefix(b"/")?,
            Some(_) => return None,
        };
        let scan = Scan::new(path, self.depth);
        // Whether the scanned segments hold a `;` (looked at once, after the first miss).
        let mut semicolon = None;
        for index in (0..scan.count).rev() {
            let end = scan.ends[index];
            // +1 for the leading slash stripped above.
            let matched = Matched { next: index + 1, remainder: end + 1, revision: None };
            // The whole segment first (the common case): a plain API is decided here.
            match self.by_prefix.get(&path[..end]) {
                Some(&Entry::Api(api)) => return Some(Route { api, remainder: matched.remainder }),
                Some(&entry) => return self.resolve(entry, &scan, matched, &parsed, &header),
                None => {}
            }
            if *semicolon.get_or_insert_with(|| scan.scanned().contains(&b';')) {
                if let Some((entry, revision)) = self.with_revision(&scan, index) {
                    let matched = Matched { revision: Some(revision), ..matched };
                    return self.resolve(entry, &scan, matched, &parsed, &header);
                }
            }
        }
        let matched = Matched { next: 0, remainder: 0, revision: None };
        match self.root? {
            Entry::Api(api) => Some(Route { api, remainder: 0 }),
            entry => self.resolve(entry, &scan, matched, &parsed, &header),
        }
    }

    /// What segment `index` leads to when it ends in `;rev=N`: the entry of the prefix without it
    /// (`/;rev=N/...`: the API at the root), and N.
    fn with_revision<'p>(&self, scan: &Scan<'p>, index: usize) -> Option<(Entry, &'p [u8])> {
        let (name_end, revision) = scan.segment(index);
        let revision = revision?;
        let entry = if name_end == 0 { self.root } else { self.by_prefix.get(&scan.path[..name_end]).copied() };
        Some((entry?, revision))
    }

    /// The API `entry` leads to for this request. Out of line: most requests reach a plain API,
    /// decided in [`Router::route_with`] itself.
    #[inline(never)]
    fn resolve<'r>(
        &self,
        entry: Entry,
        scan: &Scan<'r>,
        matched: Matched<'r>,
        target: &Target<'r>,
        header: &impl Fn(&[u8]) -> Option<&'r [u8]>,
    ) -> Option<Route> {
        let group = match entry {
            Entry::Api(api) => {
                let known = matched
                    .revision
                    .is_none_or(|number| self.numbers.get(api as usize).is_some_and(|n| **n == *number));
                return known.then_some(Route { api, remainder: matched.remainder });
            }
            Entry::Group(group) => self.groups.get(group as usize)?,
        };
        if let Scheme::Segment = group.scheme {
            return segment_version(group, scan, matched);
        }
        let mut scratch = [0u8; VERSION_CHARS_MAX];
        let asked = group.asked(target.query(), header, &mut scratch);
        let api = group.reached(asked)?.pick(matched.revision)?;
        Some(Route { api, remainder: matched.remainder })
    }

    /// APIs whose path is deeper than [`ROUTE_DEPTH_MAX`] segments.
    pub fn unroutable(&self) -> &[u32] {
        &self.unroutable
    }
}

/// A prefix found in the table: the segments it took, where the rest starts, and the revision
/// its last segment asked for.
#[derive(Debug, Clone, Copy)]
struct Matched<'r> {
    /// Index of the first segment after the prefix.
    next: usize,
    /// Offset in the request target where the rest starts.
    remainder: usize,
    revision: Option<&'r [u8]>,
}

/// A segment-versioned set: the segment after the API path names the version (and may carry
/// `;rev=N`); a segment that names no version, or none at all, leaves the request to the
/// `Original` version, as a longer prefix would. `;rev=N` on the API path itself asks for a
/// revision of the `Original` version.
fn segment_version(group: &Group, scan: &Scan<'_>, matched: Matched<'_>) -> Option<Route> {
    if matched.revision.is_none() && matched.next < scan.count {
        let (name_end, revision) = scan.segment(matched.next);
        if let Some(version) = scan.path.get(scan.start(matched.next)..name_end).and_then(|name| group.version(name)) {
            let api = version.pick(revision)?;
            return Some(Route { api, remainder: scan.ends[matched.next] + 1 });
        }
    }
    let api = group.original.as_ref()?.pick(matched.revision)?;
    Some(Route { api, remainder: matched.remainder })
}

#[cfg(test)]
mod tests;
