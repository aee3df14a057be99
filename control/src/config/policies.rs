//! Operations and policies of a config directory: each operation's four sections merged across
//! scopes (global → API → operation) and compiled into shared, deduplicated programs.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_contract::model::{Api, CATCH_ALL_METHOD, Operation, Policies};
use portcullis_contract::program::{Program, ScopeKind, Section};

use super::diagnostic::{Diagnostics, SourceFile};
use super::load::{OperationItem, Parsed};
use super::named_values::NamedValues;
use crate::policy::compile::{self, Environment, Options, Report};
use crate::policy::scope::{self, Document, Fragment, Fragments};

/// Operations of one API (in an API without operation files: the catch-all) and the programs
/// they use, appended to `programs`.
pub(crate) struct Compiled {
    pub(crate) programs: Vec<Program>,
    /// Warnings (skipped unsupported policies); errors go to the diagnostics.
    pub(crate) warnings: Diagnostics,
}

/// Deduplicates programs: identical merged sections (the common case: most operations only
/// inherit) share one program in the snapshot.
#[derive(Default)]
struct ProgramTable {
    programs: Vec<Program>,
    index: HashMap<Vec<u8>, u32>,
}

impl ProgramTable {
    fn add(&mut self, program: Program) -> u32 {
        let key = postcard::to_stdvec(&program).unwrap_or_default();
        if let Some(&index) = self.index.get(&key) {
            return index;
        }
        let index = self.programs.len() as u32;
        self.programs.push(program);
        self.index.insert(key, index);
        index
    }
}

/// Fills `apis[i].operations` and returns the programs; every problem goes to `diagnostics`.
pub(crate) fn compile(
    parsed: &Parsed,
    apis: &mut [(Api, String)],
    values: &NamedValues,
    options: Options,
    diagnostics: &mut Diagnostics,
) -> Compiled {
    let mut report = Report::default();
    let fragments = fragments(parsed, &mut report);
    let global = match &parsed.global_policy {
        Some(source) => parse_document(source, ScopeKind::Global, &mut report),
        None => None,
    }
    .unwrap_or_else(|| {
        scope::inherit_all(Arc::new(SourceFile::new("<built-in global policy>", "")), ScopeKind::Global)
    });
    let env = Environment { named_values: values, fragments: &fragments, options };
    let mut table = ProgramTable::default();
    for (api, id) in apis.iter_mut() {
        let parts = parsed.api_parts.get(id.as_str());
        let api_document = parts
            .and_then(|parts| parts.policy.as_ref())
            .and_then(|source| parse_document(source, ScopeKind::Api, &mut report));
        let operation_items: &[OperationItem] = parts.map_or(&[], |parts| parts.operations.as_slice());
        let mut operations = Vec::new();
        if operation_items.is_empty() {
            let chain: Vec<&Document> = [Some(&global), api_document.as_ref()].into_iter().flatten().collect();
            let policies = compile_chain(&chain, env, &mut report, &mut table);
            operations.push(Operation::catch_all(policies));
        }
        for item in operation_items {
            let Some(mut operation) = operation(item, &mut report) else { continue };
            let operation_document =
                item.policy.as_ref().and_then(|source| parse_document(source, ScopeKind::Operation, &mut report));
            let chain: Vec<&Document> =
                [Some(&global), api_document.as_ref(), operation_document.as_ref()].into_iter().flatten().collect();
            operation.policies = compile_chain(&chain, env, &mut report, &mut table);
            operations.push(operation);
        }
        api.operations = operations;
    }
    diagnostics.items.extend(report.errors);
    Compiled { programs: table.programs, warnings: Diagnostics { items: report.warnings } }
}

pub(crate) fn fragments(parsed: &Parsed, report: &mut Report) -> Fragments {
    let mut fragments = Fragments::default();
    for (id, source) in &parsed.fragments {
        match Fragment::parse(Arc::new(source.clone())) {
            Ok(fragment) => fragments.insert(id.clone(), fragment),
            Err(errors) => report.errors.extend(errors),
        }
    }
    fragments
}

fn parse_document(source: &SourceFile, scope: ScopeKind, report: &mut Report) -> Option<Document> {
    match Document::parse(Arc::new(source.clone()), scope) {
        Ok(document) => Some(document),
        Err(errors) => {
            report.errors.extend(errors);
            None
        }
    }
}

/// Merges and compiles the four sections of one operation.
fn compile_chain(chain: &[&Document], env: Environment<'_>, report: &mut Report, table: &mut ProgramTable) -> Policies {
    let mut indices = [0u32; 4];
    for (slot, section) in indices.iter_mut().zip(Section::ALL) {
        let program = match scope::merge(chain, section) {
            Ok(statements) => compile::compile_section(&statements, section, env, report),
            Err(errors) => {
                report.errors.extend(errors);
                None
            }
        };
        *slot = table.add(program.unwrap_or_else(Program::empty));
    }
    Policies { inbound: indices[0], backend: indices[1], outbound: indices[2], on_error: indices[3] }
}

/// Checks one operation file.
fn operation(item: &OperationItem, report: &mut Report) -> Option<Operation> {
    let file = &item.item.file;
    let source = &item.item.source;
    let method = file.method.get_ref().trim().to_ascii_uppercase();
    let mut ok = true;
    if method != CATCH_ALL_METHOD && !crate::policy::compile::is_method(&method) {
        report
            .errors
            .push(source.error(file.method.span(), format!("{method:?} is not an HTTP method (or * for any)")));
        ok = false;
    }
    let template = file.url_template.get_ref().trim().to_owned();
    if let Err(message) = check_template(&template) {
        report.errors.push(source.error(file.url_template.span(), message));
        ok = false;
    }
    ok.then(|| Operation {
        id: item.item.id.clone(),
        name: file.name.as_ref().map_or_else(|| item.item.id.clone(), |name| name.get_ref().clone()),
        method,
        url_template: template,
        policies: Policies::all(0),
    })
}

/// A URL template: `/` then segments that are literal, `{name}`, or a final `*`.
pub(crate) fn check_template(template: &str) -> Result<(), String> {
    let Some(path) = template.strip_prefix('/') else {
        return Err(format!("url-template {template:?} must start with '/'"));
    };
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() {
        return Ok(());
    }
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len() - 1;
    let mut names = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        if *segment == "*" {
            if index != last {
                return Err("'*' may only be the last segment of a url-template".into());
            }
        } else if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let name = name.strip_prefix('*').unwrap_or(name);
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
                return Err(format!("{segment:?} is not a template parameter (use {{name}})"));
            }
            if names.contains(&name) {
                return Err(format!("template parameter {{{name}}} appears twice"));
            }
            names.push(name);
        } else if segment.contains(['{', '}']) || segment.is_empty() && index != last {
            return Err(format!("segment {segment:?}: a segment is a literal, {{name}} or a final *"));
        }
    }
    Ok(())
}
