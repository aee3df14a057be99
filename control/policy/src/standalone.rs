//! One policy document or fragment compiled on its own, as the only scope: what `policy check`,
//! `policy explain` and the fuzz target run.

use std::collections::BTreeSet;
use std::sync::Arc;

use portcullis_contract::program::{Program, ScopeKind, Section};

use crate::compile::{self, Environment, Options, Report};
use crate::diagnostic::SourceFile;
use crate::named_values::NamedValues;
use crate::scope::{self, Document, Fragment, Fragments};

/// What a standalone document may refer to: named values, fragments and backend ids (usually
/// those of a config directory, which the caller reads), and how strict the compile is.
#[derive(Debug, Default)]
pub struct Context {
    pub named_values: NamedValues,
    pub fragments: Fragments,
    /// Ids of the named backends (`set-backend-service backend-id` must name one).
    pub backends: BTreeSet<String>,
    pub options: Options,
    /// Public keys of the certificates `<key certificate-id>` may name.
    pub certificates: compile::Certificates,
}

/// The result of compiling one source: the program of each section that compiled, and every
/// problem found (no program of a document with an error is meant to run).
#[derive(Debug, Default)]
pub struct Compiled {
    /// One entry per section of [`Section::ALL`], in order, once the document parsed; empty when
    /// it did not.
    pub programs: Vec<(Section, Option<Program>)>,
    pub report: Report,
}

/// Compiles the policy document or fragment `source` (a `<fragment>` is compiled as the body of
/// an inbound section). Never panics on any text; problems are in the report.
pub fn compile_source(source: SourceFile, context: &Context) -> Compiled {
    let source = Arc::new(source);
    let mut compiled = Compiled::default();
    // By the root element, not the first characters: a fragment may start with a byte-order
    // mark, an XML declaration or a comment.
    let document = if crate::xml::root_name(&source.text).as_deref() == Some("fragment") {
        Fragment::parse(source).map(|fragment| fragment_document(&fragment))
    } else {
        Document::parse(source, ScopeKind::Api)
    };
    match document {
        Ok(document) => compiled.programs = compile_document(&document, context, &mut compiled.report),
        Err(errors) => compiled.report.errors.extend(errors),
    }
    compiled
}

/// Compiles the four sections of one standalone document; diagnostics go to `report`.
pub fn compile_document(
    document: &Document,
    context: &Context,
    report: &mut Report,
) -> Vec<(Section, Option<Program>)> {
    let env = Environment {
        named_values: &context.named_values,
        fragments: &context.fragments,
        backends: &context.backends,
        responses: &[],
        options: context.options,
        certificates: &context.certificates,
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

/// A fragment wrapped in a section, so its statements compile: the first section where all of
/// them may stand (inbound when none fits, so the misplaced one is reported).
fn fragment_document(fragment: &Fragment) -> Document {
    let mut document = scope::inherit_all(fragment.file.clone(), ScopeKind::Api);
    document.set_section(crate::compile::fragment_section(&fragment.statements), fragment.statements.clone());
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Compiled {
        compile_source(SourceFile::new("p.xml", text), &Context::default())
    }

    #[test]
    fn a_document_compiles_to_one_verified_program_per_section() {
        let compiled =
            compile("<policies><inbound><set-header name=\"X-A\"><value>1</value></set-header></inbound></policies>");
        assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
        let sections: Vec<Section> = compiled.programs.iter().map(|(section, _)| *section).collect();
        assert_eq!(sections, Section::ALL);
        assert!(compiled.programs.iter().all(|(_, program)| program.is_some()));
    }

    #[test]
    fn a_fragment_compiles_as_an_inbound_body() {
        let compiled = compile("<fragment><set-header name=\"X-A\"><value>1</value></set-header></fragment>");
        assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
        let inbound = compiled.programs.first().and_then(|(_, program)| program.as_ref());
        assert!(inbound.is_some_and(|program| !program.ops.is_empty()));
    }

    #[test]
    fn a_fragment_compiles_in_the_first_section_its_policies_fit() {
        // forward-request is a backend policy: a fragment that retries it is checked there.
        let text = "<fragment><retry condition=\"@(context.Response.StatusCode == 429)\" count=\"2\" interval=\"1\"><forward-request timeout=\"5\" /></retry></fragment>";
        let compiled = compile(text);
        assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
        // Outbound-only and inbound-only policies together fit no section: reported.
        let text = "<fragment><rewrite-uri template=\"/a\" /><forward-request /></fragment>";
        let errors = compile(text).report.errors;
        assert!(
            errors.iter().any(|e| e.message.contains("<forward-request> is not allowed in the inbound section")),
            "{errors:?}"
        );
    }

    #[test]
    fn a_fragment_is_known_by_its_root_element_after_a_bom_declaration_or_comment() {
        for prefix in
            ["\u{feff}", "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n", "<!-- shared -->\n", "\u{feff}<!-- a -->"]
        {
            let text = format!("{prefix}<fragment><set-header name=\"X-A\"><value>1</value></set-header></fragment>");
            let compiled = compile(&text);
            assert!(compiled.report.errors.is_empty(), "{prefix:?}: {:?}", compiled.report.errors);
            let inbound = compiled.programs.first().and_then(|(_, program)| program.as_ref());
            assert!(inbound.is_some_and(|program| !program.ops.is_empty()), "{prefix:?}");
        }
    }

    #[test]
    fn positions_in_a_file_with_a_byte_order_mark_count_from_its_first_character() {
        let text = "\u{feff}<policies>\n  <inbound>\n    <foo />\n  </inbound>\n</policies>";
        let compiled = compile(text);
        let error = &compiled.report.errors[0];
        assert_eq!(error.location.map(|l| (l.line, l.column)), Some((3, 6)), "{error}");
    }

    #[test]
    fn text_that_does_not_parse_is_diagnostics_and_no_program() {
        for text in ["", "<policies>", "\u{0}<<", "<fragment><a></fragment>"] {
            let compiled = compile(text);
            assert!(!compiled.report.errors.is_empty(), "{text:?}");
            assert!(compiled.programs.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn a_section_with_an_error_has_no_program() {
        let compiled = compile("<policies><inbound><no-such-policy/></inbound></policies>");
        assert!(!compiled.report.errors.is_empty());
        assert_eq!(
            compiled.programs.first().map(|(section, program)| (*section, program.is_none())),
            Some((Section::Inbound, true))
        );
    }
}
