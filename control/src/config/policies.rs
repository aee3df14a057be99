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
    // Products with a policy document of their own, with their index.
    let product_documents: Vec<(u32, &Product, Document)> = products
        .iter()
        .zip(&parsed.products)
        .enumerate()
        .filter_map(|(index, (product, (_, policy)))| {
            let document = parse_document(policy.as_ref()?, ScopeKind::Product, &mut report)?;
            Some((index as u32, product, document))
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
        // (operation, its policy document) in order; an API without operation files gets the catch-all.
        let mut operations: Vec<(Operation, Vec<ResponseExample>, Option<Document>)> = Vec::new();
        if operation_items.is_empty() {
            operations.push((Operation::catch_all(Policies::all(0)), Vec::new(), None));
        }
        for item in operation_items {
            let Some((operation, responses)) = operation(item, &mut report) else { continue };
            let document =
                item.policy.as_ref().and_then(|source| parse_document(source, ScopeKind::Operation, &mut report));
            operations.push((operation, responses, document));
        }
        for (operation_index, (operation, responses, document)) in operations.iter_mut().enumerate() {
            let env = Environment { responses, ..env };
            let chain = |product| chain(&global, product, api_document.as_ref(), document.as_ref());
            operation.policies = compile_chain(&chain(None), env, &mut report, &mut table);
            for (product, _, product_document) in
                product_documents.iter().filter(|(_, product, _)| product.apis.contains(&api_index))
            {
                let policies = compile_chain(&chain(Some(product_document)), env, &mut report, &mut table);
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
