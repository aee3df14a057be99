//! `portcullis policy check` and `portcullis policy explain`: the compiler (`portcullis-policy`)
//! on files, outside a running gateway. This side reads the files and the config directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_contract::program::ScopeKind;
use portcullis_policy::compile::{Options, Report};
use portcullis_policy::explain::render_program;
use portcullis_policy::scope::Document;
use portcullis_policy::{Context, Diagnostic, SourceFile, compile_document};

use crate::stdout::print_line;

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
        /// Report unknown {{named values}}, fragments, backends (set-backend-service backend-id) and
        /// certificates as warnings instead of errors; an unknown named value inside C# code
        /// becomes a placeholder of type object, so the rest of the expression is still checked.
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
            print_line(outcome.render())?;
            if outcome.failed() { Err(anyhow::anyhow!("the policy check failed")) } else { Ok(()) }
        }
        Command::Explain { file } => {
            let options = Options { skip_unsupported: false, allow_unknown_references: true };
            let context = context_from(dir, options).map_err(anyhow::Error::msg)?;
            match explain(&file, &context) {
                Ok(text) => Ok(print_line(text)?),
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
            Ok(source) => {
                let compiled = portcullis_policy::compile_source(source, context);
                outcome.report.errors.extend(compiled.report.errors);
                outcome.report.warnings.extend(compiled.report.warnings);
            }
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

/// Named values and fragments of the config directory `dir`, for standalone checks.
pub fn context_from(dir: Option<&Path>, options: Options) -> Result<Context, String> {
    let mut context = Context { options, ..Context::default() };
    if let Some(dir) = dir {
        let (named_values, fragments) =
            crate::config::policy_references(dir).map_err(|diagnostics| diagnostics.to_string())?;
        context.named_values = named_values;
        context.fragments = fragments;
        context.backends = crate::config::backend_ids(dir);
        context.certificates = crate::config::certificates(dir);
    }
    Ok(context)
}
