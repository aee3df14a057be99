//! Version sets and revisions in the routing table: what a path prefix that is shared by several
//! APIs (the versions of a set) or several revisions of one API leads to. Sans-IO.
//!
//! A request names a revision with `;rev=N` after the API path's last segment (after the version
//! segment for a segment-versioned set, as APIM writes `/sw/v2;rev=2/people`), and a version as
//! its set's scheme says: the segment after the API path, a query parameter or a header.

use ahash::AHashMap;
use portcullis_contract::model::{Config, VERSION_CHARS_MAX, VersioningScheme};

use crate::http::url::{self, Coding};

/// Current revision (index into `Config::apis`) → its other online revisions, by number.
pub(super) type OtherRevisions = AHashMap<u32, Vec<(Box<[u8]>, u32)>>;

/// The revisions of one API that requests can reach.
#[derive(Debug, Clone)]
pub(super) struct Revisions {
    /// The current revision (index into `Config::apis`): the one URLs without `;rev=` reach.
    current: u32,
    /// The online revisions by number, the current one included (`;rev=` with its number
    /// reaches it too). Few per API: a scan is cheaper than a hash.
    by_number: Box<[(Box<[u8]>, u32)]>,
}

impl Revisions {
    /// The revision `revision` asks for: the current one when it asks for none; `None` for a
    /// number that is unknown or offline.
    pub(super) fn pick(&self, revision: Option<&[u8]>) -> Option<u32> {
        match revision {
            None => Some(self.current),
            Some(number) => self.by_number.iter().find(|(known, _)| **known == *number).map(|&(_, api)| api),
        }
    }
}

/// How the APIs of a group are told apart.
#[derive(Debug, Clone)]
pub(super) enum Scheme {
    /// One API (with revisions): nothing to tell apart.
    Unversioned,
    /// The path segment after the API path.
    Segment,
    /// The query parameter of this name.
    Query(Box<[u8]>),
    /// The header of this name.
    Header(Box<[u8]>),
}

/// The APIs one path prefix leads to when it is more than one plain API: an API with revisions,
/// or the versions of a version set (each with its revisions).
#[derive(Debug, Clone)]
pub(super) struct Group {
    pub(super) scheme: Scheme,
    /// What a request that names no version reaches: the unversioned API, or the set's
    /// `Original` version (none: such requests get 404).
    pub(super) original: Option<Revisions>,
    /// Version identifier → that version.
    versions: AHashMap<Box<[u8]>, Revisions>,
}

/// Where a request asks for a version, as the router found it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Asked<'r> {
    /// No identifier.
    None,
    /// This identifier.
    Version(&'r [u8]),
    /// An identifier that no version can have (too long to be one).
    Unknown,
}

impl Group {
    /// The group of the current revisions `apis` (one path; validated: one version set, distinct
    /// versions) with the online revisions of each (`revisions`: current → its others).
    pub(super) fn new(config: &Config, apis: &[u32], revisions: &OtherRevisions) -> Self {
        let set = apis.first().and_then(|&api| config.apis.get(api as usize)?.version_set);
        let scheme = match set.and_then(|set| config.version_sets.get(set as usize)).map(|set| &set.scheme) {
            None => Scheme::Unversioned,
            Some(VersioningScheme::Segment) => Scheme::Segment,
            Some(VersioningScheme::Query(name)) => Scheme::Query(name.as_bytes().into()),
            Some(VersioningScheme::Header(name)) => Scheme::Header(name.as_bytes().into()),
        };
        let mut group = Group { scheme, original: None, versions: AHashMap::new() };
        for &index in apis {
            let Some(api) = config.apis.get(index as usize) else { continue };
            let mut by_number = vec![(api.revision.as_bytes().into(), index)];
            by_number.extend(revisions.get(&index).into_iter().flatten().cloned());
            let reachable = Revisions { current: index, by_number: by_number.into_boxed_slice() };
            if api.version.is_empty() {
                group.original = Some(reachable);
            } else {
                group.versions.insert(api.version.as_bytes().into(), reachable);
            }
        }
        group
    }

    /// The version named `version`.
    pub(super) fn version(&self, version: &[u8]) -> Option<&Revisions> {
        self.versions.get(version)
    }

    /// The version a query or header scheme asks for, from the request's `query` and `header`.
    pub(super) fn asked<'r, 'h: 'r>(
        &self,
        query: Option<&'r [u8]>,
        header: &impl Fn(&[u8]) -> Option<&'h [u8]>,
        scratch: &'r mut [u8; VERSION_CHARS_MAX],
    ) -> Asked<'r> {
        let value = match &self.scheme {
            Scheme::Unversioned | Scheme::Segment => return Asked::None,
            Scheme::Header(name) => header(name).map(|value| value.trim_ascii()),
            Scheme::Query(name) => {
                let found = query.and_then(|query| {
                    url::query_pairs(query).find(|(pair_name, _)| url::decodes_to(pair_name, Coding::Form, name))
                });
                let Some((_, raw)) = found else { return Asked::None };
                // Decoded as APIM reads query parameters; longer than any version: unknown.
                let Some(len) = url::percent_decode_into(raw, Coding::Form, &mut scratch[..]) else {
                    return Asked::Unknown;
                };
                let decoded: &'r [u8; VERSION_CHARS_MAX] = scratch;
                decoded.get(..len)
            }
        };
        match value {
            None | Some(b"") => Asked::None,
            Some(version) => Asked::Version(version),
        }
    }

    /// The revisions a request reaches when it asked for `asked` (query and header schemes;
    /// unversioned groups).
    pub(super) fn reached(&self, asked: Asked<'_>) -> Option<&Revisions> {
        match asked {
            Asked::None => self.original.as_ref(),
            Asked::Version(version) => self.version(version),
            Asked::Unknown => None,
        }
    }
}
