//! Operations and policies of a config directory: each operation's four sections merged across
//! scopes (global → API → operation) and compiled into shared, deduplicated programs.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_contract::model::{Api, CATCH_ALL_METHOD, Operation, Policies, Product, ProductPolicies};
use portcullis_contract::program::{Program, ScopeKind, Section};
use portcullis_policy::compile::{self, Environment, Options, Report, ResponseExample};
use portcullis_policy::named_values::NamedValues;
use portcullis_policy::scope::{self, Document, Fragment, Fragments};

use super::load::{OperationItem, Parsed};
use super::{Diagnostics, SourceFile};

/// The programs operations use, and the sections they run through products with policies.
pub(crate) struct Compiled {
    pub(crate) programs: Vec<Program>,
    pub(crate) product_policies: Vec<ProductPolicies>,
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
    /// Adds the four sections of an operation.
    fn add_all(&mut self, sections: [Program; 4]) -> Policies {
        let [inbound, backend, outbound, on_error] = sections.map(|program| self.add(program));
        Policies { inbound, backend, outbound, on_error }
    }

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

/// The ids policies may name: named backends and named certificates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known<'a> {
    pub(crate) backends: &'a std::collections::BTreeSet<String>,
    pub(crate) certificates: &'a portcullis_policy::compile::Certificates,
}

/// Fills `apis[i].operations` and returns the programs; every problem goes to `diagnostics`.
/// `products` are the compiled products, in the order of `parsed.products` (whose policy
/// documents they use).
#[allow(clippy::too_many_arguments)] // reason: each is one independent input of the compile, read once
pub(crate) fn compile(
    parsed: &Parsed,
    apis: &mut [(Api, String)],
    products: &[Product],
    values: &NamedValues,
    known: Known<'_>,
    options: Options,
    cache: &mut ProgramCache,
    diagnostics: &mut Diagnostics,
) -> Compiled {
    let mut report = Report::default();
    let fragments = fragments(parsed, &mut report);
    cache.start(EnvKey::of(parsed, values, known, options));
    let global = match &parsed.global_policy {
        Some(source) => parse_document(source, ScopeKind::Global, &mut report),
        None => None,
    }
    .unwrap_or_else(|| {
        scope::inherit_all(Arc::new(SourceFile::new("<built-in global policy>", "")), ScopeKind::Global)
    });
    // Products with a policy document of their own, with their index.
    let product_documents: Vec<(u32, &Product, &SourceFile, Document)> = products
        .iter()
        .zip(&parsed.products)
        .enumerate()
        .filter_map(|(index, (product, (_, policy)))| {
            let source = policy.as_ref()?;
            let document = parse_document(source, ScopeKind::Product, &mut report)?;
            Some((index as u32, product, source, document))
        })
        .collect();
    let env = Environment {
        named_values: values,
        fragments: &fragments,
        backends: known.backends,
        certificates: known.certificates,
        responses: &[],
        options,
    };
    let mut table = ProgramTable::default();
    let mut product_policies = Vec::new();
    for (api_index, (api, id)) in apis.iter_mut().enumerate() {
        let api_index = api_index as u32;
        let parts = parsed.api_parts.get(id.as_str());
        let api_document = parts
            .and_then(|parts| parts.policy.as_ref())
            .and_then(|source| parse_document(source, ScopeKind::Api, &mut report));
        let operation_items: &[OperationItem] = parts.map_or(&[], |parts| parts.operations.as_slice());
        let api_source = parts.and_then(|parts| parts.policy.as_ref());
        // (operation, its responses, its policy source) in order; an API without operation files gets the catch-all.
        let mut operations: Vec<(Operation, Vec<ResponseExample>, Option<&SourceFile>)> = Vec::new();
        if operation_items.is_empty() {
            operations.push((Operation::catch_all(Policies::all(0)), Vec::new(), None));
        }
        for item in operation_items {
            let Some((operation, responses)) = operation(item, &mut report) else { continue };
            operations.push((operation, responses, item.policy.as_ref()));
        }
        for (operation_index, (operation, responses, source)) in operations.iter_mut().enumerate() {
            let env = Environment { responses, ..env };
            let mut document = None;
            let mut sections = |product: Option<(&SourceFile, &Document)>, report: &mut Report| {
                let key = ChainKey::of(product.map(|(source, _)| source), api_source, *source, responses);
                cache.sections(key, report, |report| {
                    let document = document.get_or_insert_with(|| {
                        source.and_then(|source| parse_document(source, ScopeKind::Operation, report))
                    });
                    let chain = chain(&global, product.map(|(_, d)| d), api_document.as_ref(), document.as_ref());
                    compile_chain(&chain, env, report)
                })
            };
            operation.policies = table.add_all(sections(None, &mut report));
            for (product, _, product_source, product_document) in
                product_documents.iter().filter(|(_, product, _, _)| product.apis.contains(&api_index))
            {
                let policies = table.add_all(sections(Some((product_source, product_document)), &mut report));
                product_policies.push(ProductPolicies {
                    product: *product,
                    api: api_index,
                    operation: operation_index as u32,
                    policies,
                });
            }
        }
        api.operations = operations.into_iter().map(|(operation, _, _)| operation).collect();
    }
    cache.finish();
    diagnostics.items.extend(report.errors);
    Compiled { programs: table.programs, product_policies, warnings: Diagnostics { items: report.warnings } }
}

/// The documents an operation's sections merge, broadest scope first.
fn chain<'d>(
    global: &'d Document,
    product: Option<&'d Document>,
    api: Option<&'d Document>,
    operation: Option<&'d Document>,
) -> Vec<&'d Document> {
    [Some(global), product, api, operation].into_iter().flatten().collect()
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
fn compile_chain(chain: &[&Document], env: Environment<'_>, report: &mut Report) -> [Program; 4] {
    Section::ALL.map(|section| {
        let program = match scope::merge(chain, section) {
            Ok(statements) => compile::compile_section(&statements, section, env, report),
            Err(errors) => {
                report.errors.extend(errors);
                None
            }
        };
        program.unwrap_or_else(Program::empty)
    })
}

/// Compiled sections of earlier compiles, by the documents they came from: a change recompiles
/// only the operations whose documents it touched. Everything is dropped when something every
/// operation depends on changes (named values, fragments, backends, certificates, options, the
/// global policy); sections that compiled with errors or warnings are never kept.
#[derive(Debug, Default)]
pub struct ProgramCache {
    env: Option<EnvKey>,
    sections: HashMap<ChainKey, [Program; 4]>,
    used: std::collections::HashSet<ChainKey>,
}

impl ProgramCache {
    /// Sections held.
    pub fn len(&self) -> usize {
        self.sections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    fn start(&mut self, env: EnvKey) {
        if self.env.as_ref() != Some(&env) {
            self.sections.clear();
            self.env = Some(env);
        }
        self.used.clear();
    }

    /// The sections for `key`, from the cache or compiled by `compile`.
    fn sections(
        &mut self,
        key: ChainKey,
        report: &mut Report,
        compile: impl FnOnce(&mut Report) -> [Program; 4],
    ) -> [Program; 4] {
        if let Some(sections) = self.sections.get(&key) {
            self.used.insert(key);
            return sections.clone();
        }
        let (errors, warnings) = (report.errors.len(), report.warnings.len());
        let sections = compile(report);
        if report.errors.len() == errors && report.warnings.len() == warnings {
            self.sections.insert(key.clone(), sections.clone());
            self.used.insert(key);
        }
        sections
    }

    /// Forgets the sections no operation used this time (deleted or changed operations).
    fn finish(&mut self) {
        let used = std::mem::take(&mut self.used);
        self.sections.retain(|key, _| used.contains(key));
    }
}

/// What every operation's compile depends on.
#[derive(Debug, PartialEq)]
struct EnvKey {
    values: NamedValues,
    fragments: Vec<(String, String)>,
    backends: std::collections::BTreeSet<String>,
    certificates: portcullis_policy::compile::Certificates,
    skip_unsupported: bool,
    allow_unknown_references: bool,
    global: Option<(std::path::PathBuf, String)>,
}

impl EnvKey {
    fn of(parsed: &Parsed, values: &NamedValues, known: Known<'_>, options: Options) -> Self {
        Self {
            values: values.clone(),
            fragments: parsed.fragments.iter().map(|(id, source)| (id.clone(), source.text.clone())).collect(),
            backends: known.backends.clone(),
            certificates: known.certificates.clone(),
            skip_unsupported: options.skip_unsupported,
            allow_unknown_references: options.allow_unknown_references,
            global: parsed.global_policy.as_ref().map(|source| (source.path.clone(), source.text.clone())),
        }
    }
}

/// The documents (name and text) of one operation's chain below the global scope, and its
/// documented responses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChainKey {
    documents: [Option<(std::path::PathBuf, String)>; 3],
    responses: Vec<(u16, String, Option<String>)>,
}

impl ChainKey {
    fn of(
        product: Option<&SourceFile>,
        api: Option<&SourceFile>,
        operation: Option<&SourceFile>,
        responses: &[ResponseExample],
    ) -> Self {
        let named = |source: Option<&SourceFile>| source.map(|s| (s.path.clone(), s.text.clone()));
        Self {
            documents: [named(product), named(api), named(operation)],
            responses: responses.iter().map(|r| (r.status, r.content_type.clone(), r.example.clone())).collect(),
        }
    }
}

/// Checks one operation file; returns the operation and its documented responses.
fn operation(item: &OperationItem, report: &mut Report) -> Option<(Operation, Vec<ResponseExample>)> {
    let file = &item.item.file;
    let source = &item.item.source;
    let method = file.method.get_ref().trim().to_ascii_uppercase();
    let mut ok = true;
    if method != CATCH_ALL_METHOD && !portcullis_policy::compile::is_method(&method) {
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
    let mut responses = Vec::with_capacity(file.response.len());
    for response in &file.response {
        let status = *response.status.get_ref();
        let Some(status) = u16::try_from(status).ok().filter(|status| (100..=599).contains(status)) else {
            report.errors.push(source.error(response.status.span(), "a status code is between 100 and 599"));
            ok = false;
            continue;
        };
        let content_type = match &response.content_type {
            Some(content_type) => {
                let media_type = portcullis_policy::compile::media_type(content_type.get_ref());
                if !is_media_type(&media_type) {
                    let message = format!("{:?} is not a media type (type/subtype)", content_type.get_ref());
                    report.errors.push(source.error(content_type.span(), message));
                    ok = false;
                    continue;
                }
                media_type
            }
            None => "application/json".to_owned(),
        };
        if responses.iter().any(|seen: &ResponseExample| seen.status == status && seen.content_type == content_type) {
            let message = format!("a second response {status} {content_type}: one per status and media type");
            report.errors.push(source.error(response.status.span(), message));
            ok = false;
            continue;
        }
        let example = response.example.as_ref().map(|example| example.get_ref().clone());
        responses.push(ResponseExample { status, content_type, example });
    }
    let operation = Operation {
        id: item.item.id.clone(),
        name: file.name.as_ref().map_or_else(|| item.item.id.clone(), |name| name.get_ref().clone()),
        method,
        url_template: template,
        policies: Policies::all(0),
    };
    ok.then_some((operation, responses))
}

/// `type/subtype` made of RFC 9110 tokens.
fn is_media_type(text: &str) -> bool {
    let is_token = portcullis_policy::compile::is_method;
    text.split_once('/').is_some_and(|(kind, subtype)| is_token(kind) && is_token(subtype))
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
