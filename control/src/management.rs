//! Control's side of the management plane: the store's compiler (the config compiler, then the
//! publisher) and `apply`, which makes the store hold what a config directory declares.

use std::path::{Path, PathBuf};

use portcullis_contract::model::Config;
use portcullis_management::resource::ResourcePath;
use portcullis_management::service::{Authority, Compiled, Compiler, Problem, Service, State, WriteError};
use portcullis_management::store::{Actor, Origin, Write};
use tokio::sync::{mpsc, oneshot};

pub mod cli;
pub mod client;
pub mod listener;
pub mod verbs;

use crate::config::resources::Declared;
use crate::config::{self, Diagnostics, NamedValues};

/// The store's file in the data directory.
pub const STORE_FILE: &str = "management.db";

/// What the compiler hands on: a compiled config to publish, or a barrier that answers once
/// everything before it is published (with the last generation).
#[derive(Debug)]
pub enum Forward {
    Config(Box<Config>),
    Barrier(oneshot::Sender<()>),
}

/// Compiles the store with the config compiler; gateway-wide settings come from `config_dir`.
#[derive(Debug)]
pub struct StoreCompiler {
    config_dir: PathBuf,
    provided: NamedValues,
    /// Where compiled configs go, in order (`None`: checks only, as in an offline `apply`).
    forward: Option<mpsc::UnboundedSender<Forward>>,
    /// Parsed files of earlier compiles: a change re-renders only what it touches.
    cache: config::StoreCache,
}

impl StoreCompiler {
    pub fn new(config_dir: PathBuf, provided: NamedValues, forward: Option<mpsc::UnboundedSender<Forward>>) -> Self {
        Self { config_dir, provided, forward, cache: Default::default() }
    }
}

impl Compiler for StoreCompiler {
    fn compile(&mut self, state: &State) -> Result<Compiled, Vec<Problem>> {
        match config::compile_state(state, &self.config_dir, &self.provided, config::random_seed(), &mut self.cache) {
            Ok(config) => Ok(Box::new(config)),
            Err(diagnostics) => Err(problems(&diagnostics)),
        }
    }

    fn compile_change(&mut self, state: &State, changed: &[ResourcePath]) -> Result<Compiled, Vec<Problem>> {
        let seed = config::random_seed();
        match config::compile_change(state, changed, &self.config_dir, &self.provided, seed, &mut self.cache) {
            Ok(config) => Ok(Box::new(config)),
            Err(diagnostics) => Err(problems(&diagnostics)),
        }
    }

    fn publish(&mut self, compiled: Compiled) {
        // What later changes are compiled against.
        self.cache.commit();
        let (Some(forward), Ok(config)) = (&self.forward, compiled.downcast::<Config>()) else { return };
        // The receiver lives as long as `up`; after it, nothing is left to publish to.
        let _ = forward.send(Forward::Config(config));
    }
}

/// The compiler's diagnostics as the management API reports them.
pub fn problems(diagnostics: &Diagnostics) -> Vec<Problem> {
    diagnostics
        .items
        .iter()
        .map(|diagnostic| Problem {
            target: diagnostic.file.display().to_string(),
            message: diagnostic.message.clone(),
            line: diagnostic.location.map(|location| location.line as u32),
            column: diagnostic.location.map(|location| location.column as u32),
        })
        .collect()
}

/// Opens the store in `data_dir` with `compiler`, logging problems of what it holds.
pub fn open(data_dir: &Path, compiler: StoreCompiler) -> anyhow::Result<Service> {
    let path = data_dir.join(STORE_FILE);
    let store = portcullis_management::store::open(&path)?;
    let (mut service, problems) = Service::open(Box::new(store), Box::new(compiler))?;
    portcullis_management::seed_builtins(&mut service)?;
    for problem in &problems {
        tracing::warn!("the management store does not compile yet: {}: {}", problem.target, problem.message);
    }
    Ok(service)
}

/// What an `apply` changes, resource by resource.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Plan {
    pub create: Vec<Planned>,
    pub update: Vec<Planned>,
    pub delete: Vec<Planned>,
}

/// One resource in a plan, with the file that declares (or declared) it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Planned {
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }

    /// One line per change and a summary, as `apply` prints them.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (sign, list) in [("+ create", &self.create), ("~ update", &self.update), ("- delete", &self.delete)] {
            for planned in list {
                let file = planned.file.as_deref().map(|file| format!(" ({file})")).unwrap_or_default();
                lines.push(format!("{sign} {}{file}", planned.resource));
            }
        }
        lines.push(format!(
            "{} to create, {} to update, {} to delete",
            self.create.len(),
            self.update.len(),
            self.delete.len()
        ));
        lines
    }
}

/// The writes that make `state` hold `declared`: creates, updates (properties or owner
/// changed) and deletes of config-owned resources no file declares any more. Store-owned
/// resources are never deleted.
pub fn plan(state: &State, declared: &[Declared]) -> (Plan, Vec<Write>) {
    let mut plan = Plan::default();
    let mut writes = Vec::new();
    let declared_paths: std::collections::HashSet<&str> = declared.iter().map(|d| d.path.as_str()).collect();
    for item in declared {
        let planned = Planned { resource: item.path.to_string(), file: Some(item.file.clone()) };
        match state.get(item.path.as_str()) {
            None => plan.create.push(planned),
            Some(current) if current.properties == item.properties && current.origin.file() == Some(&item.file) => {
                continue;
            }
            Some(_) => plan.update.push(planned),
        }
        let origin = Origin::Config { file: item.file.clone() };
        writes.push(Write::Put { path: item.path.clone(), properties: item.properties.clone(), origin });
    }
    for resource in state.iter() {
        let Some(file) = resource.origin.file() else { continue };
        if declared_paths.contains(resource.path.as_str()) || deleted_with_parent(&plan, resource.path.as_str()) {
            continue;
        }
        plan.delete.push(Planned { resource: resource.path.to_string(), file: Some(file.to_owned()) });
        writes.push(Write::Delete { path: resource.path.clone() });
    }
    (plan, writes)
}

/// Whether a resource is already in the plan's deletes through a parent (listed once).
fn deleted_with_parent(plan: &Plan, path: &str) -> bool {
    plan.delete.iter().any(|deleted| path.starts_with(&format!("{}/", deleted.resource)))
}

/// Why an apply did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Makes the store hold what `dir` declares (unless `dry_run`); returns the plan.
pub fn apply(service: &mut Service, dir: &Path, provided: &NamedValues, dry_run: bool) -> Result<Plan, ApplyError> {
    let (_, declared) = config::load_declared(dir, provided).map_err(ApplyError::Invalid)?;
    let (plan, writes) = plan(service.state(), &declared);
    if dry_run {
        return Ok(plan);
    }
    if writes.is_empty() {
        // No resource changed, but gateway-wide settings (gateway.toml, certificates) may have.
        service.republish()?;
        return Ok(plan);
    }
    let actor = Actor { name: "apply".to_owned(), action: format!("apply {}", dir.display()) };
    service.write(writes, &[], Authority::ConfigDirectory, &actor)?;
    Ok(plan)
}

#[cfg(test)]
mod tests;
