//! `portcullis policy check` and `portcullis policy explain`: the compiler on files, outside a
//! running gateway.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_contract::program::{Const, Op, Program, ScopeKind, Section};

use super::compile::{self, Environment, Options, Report};
use super::scope::{self, Document, Fragment, Fragments};
use crate::config::named_values::NamedValues;
use crate::config::{Diagnostic, SourceFile};

/// `portcullis policy ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compile policy documents and fragments (files, or directories of *.xml); exit 1 on any error.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Skip policies Portcullis does not implement, with a warning, instead of failing.
        #[arg(long)]
        skip_unsupported: bool,
        /// Report unknown {{named values}} and fragments as warnings instead of errors.
        #[arg(long)]
        allow_unknown: bool,
    },
    /// Print the compiled programs of a policy document.
    Explain { file: PathBuf },
}

/// Runs `command` with the named values and fragments of the config directory `dir`; prints
/// the result; `Err` when the documents do not compile.
pub fn run(dir: Option<&Path>, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Check { paths, skip_unsupported, allow_unknown } => {
            let options = Options { skip_unsupported, allow_unknown_references: allow_unknown };
            let context = context_from(dir, options).map_err(anyhow::Error::msg)?;
            let outcome = check(&paths, &context);
            println!("{}", outcome.render());
            if outcome.failed() { Err(anyhow::anyhow!("the policy check failed")) } else { Ok(()) }
        }
        Command::Explain { file } => {
            let options = Options { skip_unsupported: false, allow_unknown_references: true };
            let context = context_from(dir, options).map_err(anyhow::Error::msg)?;
            match explain(&file, &context) {
                Ok(text) => {
                    println!("{text}");
                    Ok(())
                }
                Err(diagnostics) => {
                    eprintln!("{diagnostics}");
                    Err(anyhow::anyhow!("the policy document does not compile"))
                }
            }
        }
    }
}

/// What `policy check` found.
#[derive(Debug, Default)]
pub struct CheckOutcome {
    pub documents: usize,
    pub report: Report,
}

impl CheckOutcome {
    /// The text to print: every diagnostic, then a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for warning in &self.report.warnings {
            let _ = writeln!(out, "{}\n", warning_text(warning));
        }
        for error in &self.report.errors {
            let _ = writeln!(out, "{error}\n");
        }
        let _ = write!(
            out,
            "checked {} policy document{}: {} error{}, {} warning{}",
            self.documents,
            plural(self.documents),
            self.report.errors.len(),
            plural(self.report.errors.len()),
            self.report.warnings.len(),
            plural(self.report.warnings.len()),
        );
        out
    }

    pub fn failed(&self) -> bool {
        !self.report.errors.is_empty()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A diagnostic rendered as a warning.
fn warning_text(diagnostic: &Diagnostic) -> String {
    let text = diagnostic.to_string();
    match text.strip_prefix("error:") {
        Some(rest) => format!("warning:{rest}"),
        None => text,
    }
}

/// The inputs `check` and `explain` share: named values and fragments of a config directory.
#[derive(Debug, Default)]
pub struct Context {
    pub named_values: NamedValues,
    pub fragments: Fragments,
    /// Ids of the config directory's named backends.
    pub backends: std::collections::BTreeSet<String>,
    pub options: Options,
}

/// Compiles every `.xml` file among `paths` (directories are walked) standalone: each document
/// as the only scope, each fragment on its own.
pub fn check(paths: &[PathBuf], context: &Context) -> CheckOutcome {
    let mut outcome = CheckOutcome::default();
    let mut files = Vec::new();
    for path in paths {
        collect(path, &mut files, &mut outcome.report);
    }
    for file in files {
        outcome.documents += 1;
        match read(&file) {
            Ok(source) => check_source(source, context, &mut outcome.report),
            Err(diagnostic) => outcome.report.errors.push(diagnostic),
        }
    }
    outcome
}

fn collect(path: &Path, files: &mut Vec<PathBuf>, report: &mut Report) {
    if path.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            report.errors.push(Diagnostic::at_path(path, "cannot read the directory"));
            return;
        };
        let mut entries: Vec<PathBuf> = entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect();
        entries.sort();
        for entry in entries {
            let hidden = entry.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with('.'));
            if !hidden && (entry.is_dir() || entry.extension().is_some_and(|ext| ext == "xml")) {
                collect(&entry, files, report);
            }
        }
    } else if path.exists() {
        files.push(path.to_path_buf());
    } else {
        report.errors.push(Diagnostic::at_path(path, "no such file or directory"));
    }
}

fn read(path: &Path) -> Result<SourceFile, Diagnostic> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(SourceFile::new(path, text)),
        Err(error) => Err(Diagnostic::at_path(path, format!("cannot read the file: {error}"))),
    }
}

fn check_source(source: SourceFile, context: &Context, report: &mut Report) {
    let source = Arc::new(source);
    if source.text.trim_start().starts_with("<fragment") {
        match Fragment::parse(source.clone()) {
            Ok(fragment) => {
                // A fragment is checked as the body of every section it could stand in.
                let document = fragment_document(&fragment);
                let _ = compile_document(&document, context, report);
            }
            Err(errors) => report.errors.extend(errors),
        }
        return;
    }
    match Document::parse(source, ScopeKind::Api) {
        Ok(document) => {
            let _ = compile_document(&document, context, report);
        }
        Err(errors) => report.errors.extend(errors),
    }
}

/// A fragment wrapped in an inbound section, so its statements compile.
fn fragment_document(fragment: &Fragment) -> Document {
    let mut document = scope::inherit_all(fragment.file.clone(), ScopeKind::Api);
    document.set_section(Section::Inbound, fragment.statements.clone());
    document
}

/// Compiles the four sections of one standalone document.
fn compile_document(document: &Document, context: &Context, report: &mut Report) -> Vec<(Section, Option<Program>)> {
    let env = Environment {
        named_values: &context.named_values,
        fragments: &context.fragments,
        backends: &context.backends,
        responses: &[],
        options: context.options,
    };
    Section::ALL
        .into_iter()
        .map(|section| {
            let program = match scope::merge(&[document], section) {
                Ok(statements) => compile::compile_section(&statements, section, env, report),
                Err(errors) => {
                    report.errors.extend(errors);
                    None
                }
            };
            (section, program)
        })
        .collect()
}

/// `policy explain FILE`: the compiled programs, readably; `Err` holds the diagnostics.
pub fn explain(path: &Path, context: &Context) -> Result<String, String> {
    let source = read(path).map_err(|diagnostic| diagnostic.to_string())?;
    let mut report = Report::default();
    let document = Document::parse(Arc::new(source), ScopeKind::Api)
        .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n\n"))?;
    let programs = compile_document(&document, context, &mut report);
    if !report.errors.is_empty() {
        let outcome = CheckOutcome { documents: 1, report };
        return Err(outcome.render());
    }
    let secrets = context.named_values.secret_values();
    let mut out = String::new();
    for warning in &report.warnings {
        let _ = writeln!(out, "{}\n", warning_text(warning));
    }
    for (section, program) in programs {
        let Some(program) = program else { continue };
        let _ = writeln!(out, "{}", render_program(section, &program, &secrets));
    }
    Ok(out.trim_end().to_owned())
}

/// One program as text: ops with their constants resolved, sites named; secret values redacted.
pub fn render_program(section: Section, program: &Program, secrets: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({} ops, {} constants, {} locals, stack {}):",
        section.as_str(),
        program.ops.len(),
        program.consts.len(),
        program.locals,
        program.max_stack
    );
    if program.ops.is_empty() {
        let _ = writeln!(out, "  (nothing)");
    }
    let constant = |index: u32| -> String {
        let text = match program.consts.get(index as usize) {
            Some(Const::Str(s)) => format!("{s:?}"),
            Some(Const::Int(i)) => i.to_string(),
            Some(Const::Double(d)) => d.to_string(),
            Some(Const::Regex { pattern, ignore_case }) => {
                format!("regex {pattern:?}{}", if *ignore_case { " (ignore case)" } else { "" })
            }
            None => format!("#{index}?"),
        };
        redact(&text, secrets)
    };
    for (at, op) in program.ops.iter().enumerate() {
        let detail = match *op {
            Op::Const(i) => format!("const {}", constant(i)),
            Op::Site(i) => match program.sites.get(i as usize) {
                Some(site) => format!(
                    "── {} ({}, {}{})",
                    site.path,
                    site.scope.as_str(),
                    site.location,
                    site.policy_id.as_ref().map_or(String::new(), |id| format!(", id {id:?}"))
                ),
                None => format!("site #{i}?"),
            },
            Op::SetHeader { side, action, name, values } => {
                format!("set-header {side:?} {action:?} {} ({values} values)", constant(name))
            }
            Op::SetHeaderConst { side, action, name, value } => {
                format!("set-header {side:?} {action:?} {} = {}", constant(name), constant(value))
            }
            Op::RewriteUriConst { template, copy_unmatched } => {
                format!("rewrite-uri {}{}", constant(template), if copy_unmatched { " copy-unmatched" } else { "" })
            }
            Op::RequestHeader { name, default } => match default {
                Some(default) => format!("request-header {} or {}", constant(name), constant(default)),
                None => format!("request-header {}", constant(name)),
            },
            Op::ForwardRequestComputed { buffer_response } => {
                format!(
                    "forward-request (timeout-ms, follow-redirects, fail-on-error-status-code from the stack) buffer-response={buffer_response}"
                )
            }
            Op::SetQueryParameter { action, name, values } => {
                format!("set-query-parameter {action:?} {} ({values} values)", constant(name))
            }
            Op::SetVariable { name } => format!("set-variable {}", constant(name)),
            Op::CheckHeader { name, values_first, values, ignore_case } => {
                let allowed: Vec<String> = (values_first..values_first + u32::from(values)).map(constant).collect();
                format!(
                    "check-header {} allowed [{}]{}",
                    constant(name),
                    allowed.join(", "),
                    if ignore_case { " ignore-case" } else { "" }
                )
            }
            Op::CheckHeaderConst { name, values_first, values, ignore_case, status, message } => {
                let allowed: Vec<String> = (values_first..values_first + u32::from(values)).map(constant).collect();
                format!(
                    "check-header {} allowed [{}]{} else {status}{}",
                    constant(name),
                    allowed.join(", "),
                    if ignore_case { " ignore-case" } else { "" },
                    message.map_or(String::new(), |message| format!(" {}", constant(message)))
                )
            }
            Op::IpFilter(i) => match program.ip_filters.get(i as usize) {
                Some(filter) => format!(
                    "ip-filter {} ({} ranges)",
                    if filter.allow { "allow" } else { "forbid" },
                    filter.ranges.len()
                ),
                None => format!("ip-filter #{i}?"),
            },
            Op::Cors(i) => match program.cors.get(i as usize) {
                Some(cors) => format!("cors origins [{}]", cors.allowed_origins.join(", ")),
                None => format!("cors #{i}?"),
            },
            Op::Trace { source, severity } => format!("trace {} {severity:?}", constant(source)),
            Op::MockResponse { status, content_type, .. } => {
                format!("mock-response {status} {}", constant(content_type))
            }
            Op::BeginResponseFrom { name } => format!("begin-response from {}", constant(name)),
            other => format!("{other:?}"),
        };
        let _ = writeln!(out, "  {at:4}  {detail}");
    }
    out
}

fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        text = text.replace(secret.as_str(), "***");
    }
    text
}

/// Named values and fragments of the config directory `dir`, for standalone checks.
pub fn context_from(dir: Option<&Path>, options: Options) -> Result<Context, String> {
    let mut context = Context { options, ..Context::default() };
    if let Some(dir) = dir {
        let (named_values, fragments) =
            crate::config::policy_references(dir).map_err(|diagnostics| diagnostics.to_string())?;
        context.named_values = named_values;
        context.fragments = fragments;
        context.backends = crate::config::backend_ids(dir);
    }
    Ok(context)
}
