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
pub mod tls;
pub mod users;
mod versions;
mod xdp;

use std::path::Path;

use portcullis_contract::model::Config;
use portcullis_policy::scope::Fragments;

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
    match compile::compile(parsed, provided, &dir, seed, &mut Default::default(), &mut diagnostics) {
        Some(config) if diagnostics.is_empty() => Ok(config),
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
    match (compile::compile(parsed, provided, &dir, random_seed(), &mut Default::default(), &mut diagnostics), declared)
    {
        (Some(config), Ok(declared)) if diagnostics.is_empty() => Ok((config, declared)),
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
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut diagnostics = Diagnostics::default();
    let gateway = load::read_gateway(&dir, &mut diagnostics);
    let (parsed, rendered) = resources::parsed(state, gateway, &mut cache.files);
    diagnostics.items.extend(rendered.items);
    match compile::compile(parsed, provided, &dir, seed, &mut cache.programs, &mut diagnostics) {
        Some(config) if diagnostics.is_empty() => Ok(config),
        _ => Err(diagnostics),
    }
}

/// What [`compile_state`] keeps between compiles of one store: the parsed files and the compiled
/// policy sections, each by what they came from.
#[derive(Debug, Default)]
pub struct StoreCache {
    pub files: resources::RenderCache,
    pub programs: policies::ProgramCache,
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
