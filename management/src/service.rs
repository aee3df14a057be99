//! The management service: the store's resources held in memory, and the one path every change
//! takes (ownership check, would-be compile, one transaction, publish).
//!
//! The management API, `portcullis apply`, imports and (later) the portal all write through
//! [`Service::write`]. A change that would not compile is refused with the compiler's problems
//! and changes nothing; a committed change is published as a new snapshot by the [`Compiler`]
//! control plugs in.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::resource::{Kind, ResourcePath, split_revision};
use crate::store::{Actor, Change, Origin, Resource, Store, StoreError, Write};

/// Compiles would-be states; control implements it with the config compiler and the publisher.
pub trait Compiler: Send {
    /// Compiles `state` (policies included), or says why it cannot.
    fn compile(&mut self, state: &State) -> Result<Compiled, Vec<Problem>>;
    /// Compiles `state`, which differs from the state of the last compile made the running one
    /// ([`Compiler::publish`]) by the resources at `changed`; a compiler may use that to compile
    /// only what changed.
    fn compile_change(&mut self, state: &State, changed: &[ResourcePath]) -> Result<Compiled, Vec<Problem>> {
        let _ = changed;
        self.compile(state)
    }
    /// Makes a compiled state the running one (publishes its snapshot).
    fn publish(&mut self, compiled: Compiled);
}

/// A compiler that accepts every state and publishes nothing: for reading a store (`portcullis
/// export`), for benches, and for tests of what sits above the compiler.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl Compiler for AcceptAll {
    fn compile(&mut self, _state: &State) -> Result<Compiled, Vec<Problem>> {
        Ok(Box::new(()))
    }

    fn publish(&mut self, _compiled: Compiled) {}
}

/// What a [`Compiler`] made of a state, handed back to it to publish.
pub type Compiled = Box<dyn std::any::Any + Send>;

/// One reason a change is refused: the resource, the message and, for a policy document, where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The resource path (`/apis/echo/policies/policy`), or the config file for a directory.
    pub target: String,
    pub message: String,
    /// 1-based line and column in the policy document, when the problem is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The resource is declared in the config directory: only an edit of that file changes it.
    #[error("{path} is declared in the config directory by {file}: edit that file and run `portcullis apply`")]
    Owned { path: String, file: String },
    /// `If-Match` named another version.
    #[error("{path} has changed since it was read (ETag {current}); read it again and retry")]
    Precondition { path: String, current: String },
    /// The would-be configuration does not compile.
    #[error("the change would not compile: {}", .0.first().map_or("", |p| p.message.as_str()))]
    Invalid(Vec<Problem>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who may change config-owned resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    /// The management API, the portal, imports: config-owned resources are refused (409).
    Store,
    /// `apply` of the config directory: may change and delete config-owned resources.
    ConfigDirectory,
}

/// Every resource, by path (the store's content, in memory).
#[derive(Debug, Default, Clone)]
pub struct State {
    resources: BTreeMap<String, Resource>,
}

impl State {
    pub fn get(&self, path: &str) -> Option<&Resource> {
        self.resources.get(path)
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Every resource, in path order.
    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values()
    }

    /// The resources whose path starts with `prefix` (`/subscriptions/`, `/apis/echo/operations/`).
    pub fn under<'a>(&'a self, prefix: &str) -> impl Iterator<Item = &'a Resource> + 'a {
        let owned = prefix.to_owned();
        self.resources
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(move |(path, _)| path.starts_with(owned.as_str()))
            .map(|(_, resource)| resource)
    }

    /// The resources of `kind` (in path order).
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Resource> {
        self.resources.values().filter(move |resource| resource.path.kind() == kind)
    }

    /// The paths a delete of `path` removes: the resource, everything below it, the links that
    /// point at it and, for an API, its other revisions and theirs.
    pub fn deleted_with(&self, path: &ResourcePath) -> Vec<ResourcePath> {
        let mut roots = vec![path.as_str().to_owned()];
        if path.kind() == Kind::Api && split_revision(path.name()).1.is_none() {
            let revisions = format!("/apis/{};rev=", path.name());
            roots.extend(self.under(&revisions).filter(|r| r.path.kind() == Kind::Api).map(|r| r.path.to_string()));
        }
        let mut deleted = Vec::new();
        for root in &roots {
            let below = format!("{root}/");
            deleted.extend(self.get(root).map(|r| r.path.clone()));
            deleted.extend(self.under(&below).map(|r| r.path.clone()));
            deleted.extend(self.iter().filter(|r| r.path.target() == Some(root.as_str())).map(|r| r.path.clone()));
        }
        deleted.sort();
        deleted.dedup();
        deleted
    }

    /// The config file that owns `path` or the resource it belongs to, if any.
    pub fn owner_file(&self, path: &ResourcePath) -> Option<&str> {
        let mut current = Some(path.clone());
        while let Some(path) = current {
            if let Some(file) = self.get(path.as_str()).and_then(|r| r.origin.file()) {
                return Some(file);
            }
            current = path.parent().and_then(|parent| ResourcePath::parse(parent).ok());
        }
        None
    }

    fn insert(&mut self, resource: Resource) -> Option<Resource> {
        self.resources.insert(resource.path.to_string(), resource)
    }

    fn remove(&mut self, path: &str) -> Option<Resource> {
        self.resources.remove(path)
    }
}

/// The management service.
pub struct Service {
    store: Box<dyn Store>,
    state: State,
    compiler: Box<dyn Compiler>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("resources", &self.state.len()).finish_non_exhaustive()
    }
}

impl Service {
    /// Loads every resource of `store` and compiles them. A store that does not compile (a
    /// named value the running gateway no longer provides, say) still opens: its problems are
    /// returned and nothing is published until a change compiles.
    pub fn open(store: Box<dyn Store>, mut compiler: Box<dyn Compiler>) -> Result<(Self, Vec<Problem>), StoreError> {
        let mut state = State::default();
        for resource in store.resources()? {
            state.insert(resource);
        }
        let problems = match compiler.compile(&state) {
            Ok(compiled) => {
                compiler.publish(compiled);
                Vec::new()
            }
            Err(problems) => problems,
        };
        Ok((Self { store, state, compiler }, problems))
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn store_mut(&mut self) -> &mut dyn Store {
        self.store.as_mut()
    }

    /// Applies `writes` as one change: checks ownership (for [`Authority::Store`]) and
    /// `expected` versions, compiles the would-be state, commits, publishes. Deletes take
    /// what belongs to the deleted resource with them.
    pub fn write(
        &mut self,
        writes: Vec<Write>,
        expected: &[(String, String)],
        authority: Authority,
        actor: &Actor,
    ) -> Result<Change, WriteError> {
        self.check_preconditions(expected)?;
        if authority == Authority::Store {
            // What was asked for first, so a refusal names it rather than something it takes along.
            self.check_ownership(&writes)?;
        }
        let writes = self.expand(writes);
        if authority == Authority::Store {
            self.check_ownership(&writes)?;
        }
        let at = now();
        let undo = self.apply(&writes, &at);
        let changed: Vec<ResourcePath> = writes.iter().map(|write| write.path().clone()).collect();
        let compiled = match self.compiler.compile_change(&self.state, &changed) {
            Ok(compiled) => compiled,
            Err(problems) => {
                self.undo(undo);
                return Err(WriteError::Invalid(problems));
            }
        };
        let change = match self.store.commit(&writes, actor, &at) {
            Ok(change) => change,
            Err(error) => {
                self.undo(undo);
                return Err(error.into());
            }
        };
        self.set_version(&writes, change.id);
        self.compiler.publish(compiled);
        Ok(change)
    }

    /// Compiles and publishes the current state again, for what changed outside the store (the
    /// gateway-wide settings a reload reads from the config directory).
    pub fn republish(&mut self) -> Result<(), WriteError> {
        let compiled = self.compiler.compile(&self.state).map_err(WriteError::Invalid)?;
        self.compiler.publish(compiled);
        Ok(())
    }

    fn check_preconditions(&self, expected: &[(String, String)]) -> Result<(), WriteError> {
        for (path, etag) in expected {
            let current = self.state.get(path).map(Resource::etag);
            if etag != "*" && current.as_deref() != Some(etag.as_str()) {
                return Err(WriteError::Precondition {
                    path: path.clone(),
                    current: current.unwrap_or_else(|| "none: the resource does not exist".to_owned()),
                });
            }
        }
        Ok(())
    }

    /// Deletes become the deletes of everything they take with them.
    fn expand(&self, writes: Vec<Write>) -> Vec<Write> {
        let mut expanded = Vec::with_capacity(writes.len());
        for write in writes {
            match write {
                Write::Delete { path } => {
                    let mut deleted = self.state.deleted_with(&path);
                    // Children first, so the store never sees a dangling row on the way.
                    deleted.sort_by_key(|p| std::cmp::Reverse(p.as_str().len()));
                    expanded.extend(deleted.into_iter().map(|path| Write::Delete { path }));
                }
                put => expanded.push(put),
            }
        }
        expanded
    }

    fn check_ownership(&self, writes: &[Write]) -> Result<(), WriteError> {
        for write in writes {
            if let Some(file) = self.state.owner_file(write.path()) {
                return Err(WriteError::Owned { path: write.path().to_string(), file: file.to_owned() });
            }
        }
        Ok(())
    }

    /// Applies `writes` to the in-memory state; the returned list undoes them.
    fn apply(&mut self, writes: &[Write], at: &str) -> Vec<(String, Option<Resource>)> {
        let mut undo = Vec::with_capacity(writes.len());
        for write in writes {
            let previous = match write {
                Write::Put { path, properties, origin } => {
                    let created_at =
                        self.state.get(path.as_str()).map_or_else(|| at.to_owned(), |r| r.created_at.clone());
                    self.state.insert(Resource {
                        path: path.clone(),
                        properties: properties.clone(),
                        origin: origin.clone(),
                        version: 0,
                        created_at,
                        updated_at: at.to_owned(),
                    })
                }
                Write::Delete { path } => self.state.remove(path.as_str()),
            };
            undo.push((write.path().to_string(), previous));
        }
        undo
    }

    fn undo(&mut self, undo: Vec<(String, Option<Resource>)>) {
        for (path, previous) in undo.into_iter().rev() {
            match previous {
                Some(resource) => {
                    self.state.insert(resource);
                }
                None => {
                    self.state.remove(&path);
                }
            }
        }
    }

    fn set_version(&mut self, writes: &[Write], version: u64) {
        for write in writes {
            if let Some(resource) = self.state.resources.get_mut(write.path().as_str()) {
                resource.version = version;
            }
        }
    }
}

/// Now, as RFC 3339 UTC with seconds (APIM's dates).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Properties of a put, as JSON.
pub fn put(path: ResourcePath, properties: Value) -> Write {
    Write::Put { path, properties, origin: Origin::Store }
}

#[cfg(test)]
mod tests;
