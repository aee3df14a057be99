//! Version sets and revisions of a config directory: `version-sets/<id>.toml`, the versioning
//! keys of `api.toml`, and the rules that tie the versions of a set and the revisions of an API
//! together (one path per set, one API per version, revisions that keep what APIM keeps).

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use portcullis_contract::model::{
    Api, DEFAULT_VERSION_HEADER, DEFAULT_VERSION_QUERY, REVISION_DIGITS_MAX, VERSION_CHARS_MAX, VersionSet,
    VersioningScheme, is_valid_revision, is_valid_version,
};
use toml::Spanned;

use super::files::{ApiFile, SchemeName, VersionSetFile};
use super::load::{Item, Parsed};
use super::{Diagnostics, SourceFile};

/// The revision number of an API whose `api.toml` names none (APIM's default).
pub(crate) const REVISION_DEFAULT: &str = "1";

/// APIM's words when a non-current revision differs from the current one in a property only
/// the current revision may change.
pub(crate) const NON_CURRENT_CHANGE: &str = "Can't change property for non-current revision";

/// The compiled version sets, and the ids of those that had errors (not reported again where
/// an API names them).
#[derive(Debug, Default)]
pub(crate) struct VersionSets {
    pub(crate) sets: Vec<VersionSet>,
    broken: BTreeSet<String>,
}

impl VersionSets {
    /// The index of the set `id`.
    pub(crate) fn index(&self, id: &str) -> Option<u32> {
        self.sets.iter().position(|set| set.id == id).map(|index| index as u32)
    }

    /// The id of set `index`, if any.
    pub(crate) fn id(&self, index: Option<u32>) -> Option<&str> {
        self.sets.get(index? as usize).map(|set| set.id.as_str())
    }
}

/// Compiles `version-sets/*.toml`, in directory order.
pub(crate) fn compile_sets(parsed: &Parsed, diagnostics: &mut Diagnostics) -> VersionSets {
    let mut sets = VersionSets { sets: Vec::new(), broken: parsed.broken_version_set_ids.clone() };
    for item in &parsed.version_sets {
        match version_set(item, diagnostics) {
            Some(set) => sets.sets.push(set),
            None => {
                sets.broken.insert(item.id.clone());
            }
        }
    }
    sets
}

fn version_set(item: &Item<VersionSetFile>, diagnostics: &mut Diagnostics) -> Option<VersionSet> {
    let (file, source) = (&item.file, &item.source);
    let before = diagnostics.len();
    if file.name.get_ref().trim().is_empty() {
        diagnostics.push(source.error(file.name.span(), "a version set needs a name"));
    }
    let scheme = *file.scheme.get_ref();
    for (value, owner, key) in
        [(&file.query_name, SchemeName::Query, "query-name"), (&file.header_name, SchemeName::Header, "header-name")]
    {
        if let Some(value) = value.as_ref().filter(|_| scheme != owner) {
            let owner = if owner == SchemeName::Query { "query" } else { "header" };
            diagnostics.push(source.error(value.span(), format!("{key} is only for scheme = \"{owner}\"")));
        }
    }
    let name = |value: &Option<Spanned<String>>, default: &str, valid: fn(&str) -> bool, what: &str| match value {
        Some(value) if !valid(value.get_ref()) => Err((value.span(), what.to_owned())),
        Some(value) => Ok(value.get_ref().clone()),
        None => Ok(default.to_owned()),
    };
    let scheme = match scheme {
        SchemeName::Segment => Ok(VersioningScheme::Segment),
        SchemeName::Query => {
            let what = "not a valid query parameter name (letters, digits, -._~)";
            name(&file.query_name, DEFAULT_VERSION_QUERY, super::compile::is_query_name, what)
                .map(VersioningScheme::Query)
        }
        SchemeName::Header => {
            name(&file.header_name, DEFAULT_VERSION_HEADER, super::compile::is_token, "not a valid HTTP header name")
                .map(VersioningScheme::Header)
        }
    };
    let scheme = match scheme {
        Ok(scheme) => scheme,
        Err((span, message)) => {
            diagnostics.push(source.error(span, message));
            return None;
        }
    };
    (diagnostics.len() == before).then(|| VersionSet {
        id: item.id.clone(),
        name: file.name.get_ref().clone(),
        scheme,
        description: text(&file.description),
    })
}

/// The versioning of one revision: its set, version and revision number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Versioning {
    pub(crate) version_set: Option<u32>,
    pub(crate) version: String,
    pub(crate) revision: String,
}

/// The versioning keys of a current revision's `api.toml`; `None` after reporting a problem.
pub(crate) fn current(
    file: &ApiFile,
    source: &SourceFile,
    sets: &VersionSets,
    diagnostics: &mut Diagnostics,
) -> Option<Versioning> {
    let before = diagnostics.len();
    let version_set = match &file.version_set {
        None => None,
        Some(id) => match sets.index(id.get_ref()) {
            Some(index) => Some(index),
            None => {
                // A set with errors of its own is reported there, not here.
                if !sets.broken.contains(id.get_ref()) {
                    let message =
                        format!("unknown version set {:?} (add version-sets/{}.toml)", id.get_ref(), id.get_ref());
                    diagnostics.push(source.error(id.span(), message));
                }
                return None;
            }
        },
    };
    let version = text(&file.version);
    if let Some(spanned) = &file.version {
        if version_set.is_none() && !version.is_empty() {
            let message =
                "version needs version-set = \"<id of version-sets/<id>.toml>\": the set this API is a version of";
            diagnostics.push(source.error(spanned.span(), message));
        } else if !version.is_empty() && !is_valid_version(&version) {
            let message = format!(
                "{version:?} is not a version: use 1 to {VERSION_CHARS_MAX} letters, digits, '-', '.', '_' or '~' \
                 (or leave it out for the Original version)"
            );
            diagnostics.push(source.error(spanned.span(), message));
        }
    }
    let revision = match &file.revision {
        Some(revision) if !is_valid_revision(revision.get_ref()) => {
            diagnostics.push(source.error(revision.span(), revision_message(revision.get_ref())));
            String::new()
        }
        Some(revision) => revision.get_ref().clone(),
        None => REVISION_DEFAULT.to_owned(),
    };
    if let Some(online) = &file.online {
        let message =
            "online is only for a non-current revision (apis/<api-id>;rev=<n>/): the current revision is always online";
        diagnostics.push(source.error(online.span(), message));
    }
    (diagnostics.len() == before).then_some(Versioning { version_set, version, revision })
}

fn revision_message(revision: &str) -> String {
    format!("{revision:?} is not a revision number: use 1 to {REVISION_DIGITS_MAX} digits without a leading zero")
}

/// Checks what a non-current revision's `api.toml` (revision `number` of `current`, compiled from
/// `current_dir`) says against the current revision: the properties only the current revision
/// may change are absent or equal (APIM's error otherwise), `revision` is absent or `number`,
/// and `number` is not the current one's. Reports every problem; `false` after any.
pub(crate) fn check_revision(
    file: &ApiFile,
    source: &SourceFile,
    number: &str,
    current: &Api,
    sets: &VersionSets,
    diagnostics: &mut Diagnostics,
) -> bool {
    let before = diagnostics.len();
    let mut same = |value: Option<(Range<usize>, bool)>, key: &str, current_value: &str| {
        if let Some((span, false)) = value {
            let message = format!(
                "{NON_CURRENT_CHANGE}: {key} is {current_value} in the current revision (apis/{}/api.toml); \
                 leave it out to inherit it",
                current.id
            );
            diagnostics.push(source.error(span, message));
        }
    };
    let string = |value: &Option<Spanned<String>>, current: &str| {
        value.as_ref().map(|value| (value.span(), value.get_ref() == current))
    };
    same(string(&file.name, &current.name), "name", &format!("{:?}", current.name));
    let path = file.path.as_ref().map(|path| (path.span(), path.get_ref().trim_matches('/') == current.path));
    same(path, "path", &format!("{:?}", current.path));
    same(string(&file.description, &current.description), "description", &format!("{:?}", current.description));
    let required = file.subscription_required.as_ref();
    let required = required.map(|value| (value.span(), *value.get_ref() == current.subscription_required));
    same(required, "subscription-required", &current.subscription_required.to_string());
    let set = sets.id(current.version_set);
    let version_set = file.version_set.as_ref().map(|id| (id.span(), set == Some(id.get_ref().as_str())));
    same(version_set, "version-set", &set.map_or_else(|| "absent".to_owned(), |set| format!("{set:?}")));
    same(string(&file.version, &current.version), "version", &format!("{:?}", current.version));
    if let Some(revision) = file.revision.as_ref().filter(|revision| revision.get_ref() != number) {
        let message = format!(
            "this revision's number is {number:?}, from its directory name (;rev={number}): leave revision out"
        );
        diagnostics.push(source.error(revision.span(), message));
    }
    if number == current.revision {
        let message = format!(
            "revision {number} is the current revision of API {:?} (revision = {number:?} in apis/{}/api.toml): \
             a non-current revision needs a number of its own",
            current.id, current.id
        );
        diagnostics.push(source.error_at_start(message));
    }
    diagnostics.len() == before
}

/// The current revisions' claims on paths and versions: two APIs share a path only as different
/// versions of one version set, and the versions of a set share one path.
#[derive(Debug, Default)]
pub(crate) struct PathClaims {
    /// Path → the first API (id) on it and its version set.
    by_path: HashMap<String, (String, Option<u32>)>,
    /// Version set → the path of its first API, and that API.
    set_paths: HashMap<u32, (String, String)>,
    /// (version set, version) → the API that is that version.
    versions: HashMap<(u32, String), String>,
}

/// Where one current revision claims its route: spans of its `path` and of its versioning keys.
#[derive(Debug)]
pub(crate) struct Claim<'a> {
    pub(crate) api: &'a str,
    pub(crate) path: &'a str,
    pub(crate) path_span: Range<usize>,
    pub(crate) versioning: &'a Versioning,
    /// `version`'s span, else `version-set`'s.
    pub(crate) version_span: Range<usize>,
}

impl PathClaims {
    /// Records `claim`, reporting a clash with an earlier one at its position.
    pub(crate) fn claim(
        &mut self,
        claim: &Claim<'_>,
        sets: &VersionSets,
        source: &SourceFile,
        diagnostics: &mut Diagnostics,
    ) {
        let set = claim.versioning.version_set;
        if let Some((other, other_set)) = self.by_path.get(claim.path) {
            if set.is_none() || *other_set != set {
                let message = format!(
                    "API path {:?} is already used by API {other:?}; APIs share a path only as versions of one version set",
                    claim.path
                );
                diagnostics.push(source.error(claim.path_span.clone(), message));
                return;
            }
        } else {
            self.by_path.insert(claim.path.to_owned(), (claim.api.to_owned(), set));
        }
        let Some(set) = set else { return };
        let set_id = sets.id(Some(set)).unwrap_or_default();
        match self.set_paths.get(&set) {
            Some((path, other)) if path != claim.path => {
                let message =
                    format!("the versions of version set {set_id:?} share one path: API {other:?} has path {path:?}");
                diagnostics.push(source.error(claim.path_span.clone(), message));
                return;
            }
            Some(_) => {}
            None => {
                self.set_paths.insert(set, (claim.path.to_owned(), claim.api.to_owned()));
            }
        }
        let version = claim.versioning.version.clone();
        if let Some(other) = self.versions.get(&(set, version.clone())) {
            let message = if version.is_empty() {
                format!("API {other:?} is already the Original version (no version) of version set {set_id:?}")
            } else {
                format!("version {version:?} of version set {set_id:?} is already API {other:?}")
            };
            diagnostics.push(source.error(claim.version_span.clone(), message));
        } else {
            self.versions.insert((set, version), claim.api.to_owned());
        }
    }
}

/// An optional text key's value, empty when absent.
pub(crate) fn text(value: &Option<Spanned<String>>) -> String {
    value.as_ref().map(|value| value.get_ref().clone()).unwrap_or_default()
}
