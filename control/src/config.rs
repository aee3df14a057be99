//! The config directory: loading, checking and compiling it into a `contract::model::Config`.
//!
//! `load` reads every file (`load`), checks each against the others and compiles the result
//! (`compile`). All problems of one load are collected, each with its file, line and column
//! ([`Diagnostics`]). Policy documents are compiled by the `portcullis-policy` crate, which this
//! module calls (never the other way round). The layout is documented in `docs/configuration.md`.

pub mod backend_url;
pub mod backends;
mod cache;
mod certificates;
mod compile;
mod diagnostics;
mod files;
mod identity;
pub mod load;
mod observability;
pub mod policies;
pub mod provided;
pub mod resources;
mod subscriptions;
pub mod tls;
pub mod users;
mod versions;
mod xdp;

use std::path::Path;

use portcullis_contract::model::Config;
use portcullis_policy::scope::Fragments;

use compile::Subscriptions::Parsed;

pub use compile::ALL_APIS_SCOPE;
pub use diagnostics::Diagnostics;
pub use portcullis_policy::diagnostic::{Diagnostic, Location, SourceFile};
pub use portcullis_policy::named_values::{self, NamedValue, NamedValues};
pub use provided::{ECHO_BACKEND_URL, ECHO_BACKEND_URL_PLACEHOLDER, check_values};

/// Loads and compiles the config directory `dir`, with a fresh random key-index seed.
/// `provided` holds values the running gateway supplies (a config value of the same name wins).
pub fn load(dir: &Path, provided: &NamedValues) -> Result<Config, Diagnostics> {
    load_seeded(dir, provided, random_seed())
}

/// As [`load`], with a chosen key-index seed (for reproducible tests).
pub fn load_seeded(dir: &Path, provided: &NamedValues, seed: [u64; 2]) -> Result<Config, Diagnostics> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut diagnostics = Diagnostics::default();
    let parsed = load::read(&dir, &mut diagnostics);
    match compile::compile(parsed, provided, &dir, seed, &mut Default::default(), Parsed, &mut diagnostics) {
        Some((config, _)) if diagnostics.is_empty() => Ok(config),
        _ => Err(diagnostics),
    }
}

/// Loads and compiles the config directory `dir` as [`load`] does, and returns the resources it
/// declares (for `apply`).
pub fn load_declared(dir: &Path, provided: &NamedValues) -> Result<(Config, Vec<resources::Declared>), Diagnostics> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut diagnostics = Diagnostics::default();
    let parsed = load::read(&dir, &mut diagnostics);
    let declared = resources::declared(&parsed, &dir);
    let compiled =
        compile::compile(parsed, provided, &dir, random_seed(), &mut Default::default(), Parsed, &mut diagnostics);
    match (compiled, declared) {
        (Some((config, _)), Ok(declared)) if diagnostics.is_empty() => Ok((config, declared)),
        (_, Err(more)) => {
            diagnostics.items.extend(more.items);
            Err(diagnostics)
        }
        _ => Err(diagnostics),
    }
}

/// Compiles the management store's resources. Gateway-wide settings (`gateway.toml`) and the
/// certificates they name come from the config directory `dir`; diagnostics name resources.
pub fn compile_state(
    state: &portcullis_management::service::State,
    dir: &Path,
    provided: &NamedValues,
    seed: [u64; 2],
    cache: &mut StoreCache,
) -> Result<Config, Diagnostics> {
    compile_whole(state, dir, provided, seed, cache, false)
}

/// [`compile_state`]; with `keep_subscriptions`, the subscriptions of the last committed compile
/// are taken as they are (no subscription changed), their files neither rendered nor checked.
fn compile_whole(
    state: &portcullis_management::service::State,
    dir: &Path,
    provided: &NamedValues,
    seed: [u64; 2],
    cache: &mut StoreCache,
    keep_subscriptions: bool,
) -> Result<Config, Diagnostics> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut diagnostics = Diagnostics::default();
    let gateway = load::read_gateway(&dir, &mut diagnostics);
    let gateway_text = gateway.as_ref().map(|item| item.source.text.clone());
    let committed = if keep_subscriptions { cache.committed.take() } else { None };
    let (parsed, rendered) = resources::parsed(state, gateway, &mut cache.files, committed.is_some());
    diagnostics.items.extend(rendered.items);
    cache.pending = None;
    let subscriptions = match &committed {
        Some(patchable) => compile::Subscriptions::Kept(patchable),
        None => Parsed,
    };
    let compiled = compile::compile(parsed, provided, &dir, seed, &mut cache.programs, subscriptions, &mut diagnostics);
    let resolved = compiled.is_some() || !diagnostics.is_empty();
    if let Some(committed) = committed {
        cache.committed = Some(committed);
        if !resolved {
            // A kept subscription names something the change removed: its file says what.
            return compile_whole(state, &dir, provided, seed, cache, false);
        }
        cache.kept += u64::from(compiled.is_some());
    }
    match compiled {
        Some((mut config, (refs, Some(kept)))) if diagnostics.is_empty() => {
            let patchable = subscriptions::Patchable::new(gateway_text, &mut config, refs, kept);
            cache.pending = Some(Pending::Whole(Box::new(patchable)));
            Ok(config)
        }
        Some((mut config, (_, None))) if diagnostics.is_empty() => {
            let template = Box::new(subscriptions::template(&mut config));
            cache.pending = Some(Pending::Template { gateway_text, template });
            Ok(config)
        }
        _ => Err(diagnostics),
    }
}

/// As [`compile_state`], for a state that differs from the last committed compile of `cache`
/// (see [`StoreCache::commit`]) by the resources at `changed`. A change that touches only
/// subscriptions is compiled by recompiling those and reusing the rest of that compile; any
/// other change compiles the whole store.
pub fn compile_change(
    state: &portcullis_management::service::State,
    changed: &[portcullis_management::resource::ResourcePath],
    dir: &Path,
    provided: &NamedValues,
    seed: [u64; 2],
    cache: &mut StoreCache,
) -> Result<Config, Diagnostics> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    // A compile that was not committed left the state as the committed one was.
    cache.pending = None;
    let gateway_text = std::fs::read_to_string(dir.join(load::GATEWAY_FILE)).ok();
    let is_subscription = |path: &portcullis_management::resource::ResourcePath| {
        path.kind() == portcullis_management::resource::Kind::Subscription
    };
    let patchable = match &cache.committed {
        Some(patchable)
            if patchable.gateway_text == gateway_text && !changed.is_empty() && changed.iter().all(is_subscription) =>
        {
            patchable
        }
        Some(_) if !changed.iter().any(is_subscription) => {
            return compile_whole(state, &dir, provided, seed, cache, true);
        }
        _ => return compile_state(state, &dir, provided, seed, cache),
    };
    let mut diagnostics = Diagnostics::default();
    let mut changes = std::collections::BTreeMap::new();
    for path in changed {
        let Some(resource) = state.get(path.as_str()) else {
            changes.insert(subscriptions::file_key(path.name()), None);
            continue;
        };
        let Some(item) = resources::subscription(state, resource, &mut diagnostics) else { continue };
        changes.insert(subscriptions::file_key(&item.id), Some(item));
    }
    // Keys of the subscriptions being changed are free for any of them; keys of the others are taken.
    let changed_ids: std::collections::HashSet<&str> = changed.iter().map(|path| path.name()).collect();
    let mut claimed: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    let mut compiled = std::collections::BTreeMap::new();
    for (file, item) in &changes {
        let Some(item) = item else {
            compiled.insert(file.clone(), None);
            continue;
        };
        let mut claim = |key| match patchable.owners.get(key) {
            Some(owner) if !changed_ids.contains(owner.as_str()) => Some(owner.clone()),
            _ => claimed.insert(key, item.id.as_str()).map(str::to_owned),
        };
        if let Some(one) = subscriptions::compile_one(item, &patchable.refs, &mut claim, &mut diagnostics) {
            compiled.insert(file.clone(), Some(one));
        }
    }
    if !diagnostics.is_empty() {
        return Err(diagnostics);
    }
    match patchable.patched(&compiled, seed) {
        Ok(config) => {
            cache.pending = Some(Pending::Patch(compiled));
            cache.patches += 1;
            Ok(config)
        }
        Err(error) => {
            diagnostics.push(Diagnostic::at_path(&dir, format!("cannot index the subscription keys: {error}")));
            Err(diagnostics)
        }
    }
}

/// What [`compile_state`] keeps between compiles of one store: the parsed files and the compiled
/// policy sections, each by what they came from, and the last committed compile's subscriptions
/// (for [`compile_change`]).
#[derive(Debug, Default)]
pub struct StoreCache {
    pub files: resources::RenderCache,
    pub programs: policies::ProgramCache,
    committed: Option<Box<subscriptions::Patchable>>,
    pending: Option<Pending>,
    /// Compiles made by patching the last committed one.
    patches: u64,
    /// Compiles of the whole store that took the committed subscriptions as they were.
    kept: u64,
}

/// What the last compile would make the committed one.
#[derive(Debug)]
enum Pending {
    Whole(Box<subscriptions::Patchable>),
    /// The committed subscriptions stay; the rest of the config is this.
    Template {
        gateway_text: Option<String>,
        template: Box<Config>,
    },
    Patch(std::collections::BTreeMap<String, Option<subscriptions::Compiled>>),
}

impl StoreCache {
    /// How many compiles were made by patching the last committed one.
    pub fn patches(&self) -> u64 {
        self.patches
    }

    /// How many compiles of the whole store took the last committed subscriptions as they were.
    pub fn kept_subscriptions(&self) -> u64 {
        self.kept
    }

    /// The last compile's state is committed: [`compile_change`] patches from it from now on.
    pub fn commit(&mut self) {
        match self.pending.take() {
            Some(Pending::Whole(patchable)) => self.committed = Some(patchable),
            Some(Pending::Template { gateway_text, template }) => {
                if let Some(committed) = &mut self.committed {
                    committed.gateway_text = gateway_text;
                    committed.template = *template;
                }
            }
            Some(Pending::Patch(changes)) => {
                if let Some(committed) = &mut self.committed {
                    committed.apply(changes);
                }
            }
            None => {}
        }
    }
}

/// What policy documents outside a config may refer to in the config directory `dir`: its named
/// values (with the values the running gateway provides) and its fragments, read and checked as
/// a load reads them.
pub fn policy_references(dir: &Path) -> Result<(NamedValues, Fragments), Diagnostics> {
    let mut diagnostics = Diagnostics::default();
    let mut parsed =
        load::Parsed { named_values: load::read_named_values(dir, &mut diagnostics), ..Default::default() };
    let fragments_dir = dir.join(load::FRAGMENTS_DIR);
    if fragments_dir.is_dir() {
        load::read_fragments(&fragments_dir, &mut parsed, &mut diagnostics);
    }
    let values = compile::named_values(parsed.named_values.as_ref(), &check_values(true), &mut diagnostics);
    let mut report = portcullis_policy::compile::Report::default();
    let fragments = policies::fragments(&parsed, &mut report);
    diagnostics.items.extend(report.errors);
    if diagnostics.is_empty() { Ok((values, fragments)) } else { Err(diagnostics) }
}

/// Ids of the named backends of the config directory `dir` (file names only; for policy checks).
pub fn backend_ids(dir: &Path) -> std::collections::BTreeSet<String> {
    load::backend_ids(dir)
}

/// The named certificates of the config directory `dir` (for standalone policy checks; files
/// that do not read are left out, and `config check` reports them).
pub fn certificates(dir: &Path) -> portcullis_policy::compile::Certificates {
    let mut diagnostics = Diagnostics::default();
    let Some(table) = load::gateway_tls(dir) else { return Default::default() };
    let source = SourceFile::new(dir.join(load::GATEWAY_FILE).display().to_string(), "");
    let settings = tls::compile(&table, &source, dir, &mut diagnostics);
    certificates::read(&settings.named)
}

/// A fresh key-index seed, so nobody can aim hash collisions at a snapshot they have not seen.
pub fn random_seed() -> [u64; 2] {
    // getrandom only fails where the OS has no entropy source at all; the seed then falls back
    // to the clock, which still differs per snapshot (the index stays correct, only less hardened).
    let fallback =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    [getrandom::u64().unwrap_or_else(|_| fallback()), getrandom::u64().unwrap_or_else(|_| fallback() ^ 0x9e37)]
}

#[cfg(test)]
mod tests;
