//! Policy statements to ops: one [`Program`] per merged section.
//!
//! Each statement starts with [`Op::Site`] (so errors and traces know where they are), pushes
//! the values its attributes and children give (literals from the constant pool, expressions
//! compiled inline), then the policy's own op consumes them. `choose`, `retry` and
//! `limit-concurrency` become jumps around their children.

mod access;
mod cache;
mod certificates;
mod content_safety;
mod identity;
mod jwt;
mod limits;
mod metrics;
mod outbound;
mod policies;
mod token_limit;
mod transform;
mod validation;

use std::ops::Range;
use std::sync::Arc;

use portcullis_contract::program::{Op, Program, ScopeKind, Section, Side, Site};

use super::code::CodeBuilder;
use super::expr::{self, Expect};
use super::scope::{Fragments, Stmt};
use super::xml::{Attr, Element};
use crate::diagnostic::{Diagnostic, SourceFile};
use crate::named_values::{self, NamedValues};

/// How strict a compile is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// A policy the engine does not implement is a warning (and skipped) instead of an error.
    pub skip_unsupported: bool,
    /// An unknown `{{named value}}` or fragment is a warning instead of an error (for
    /// `policy check` on files outside their config directory).
    pub allow_unknown_references: bool,
}

/// One documented response of the operation being compiled (`[[response]]` in its file): what
/// `mock-response` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseExample {
    pub status: u16,
    /// Media type, lower case (`application/json`).
    pub content_type: String,
    pub example: Option<String>,
}

/// What statements may refer to.
#[derive(Debug, Clone, Copy)]
pub struct Environment<'a> {
    pub named_values: &'a NamedValues,
    pub fragments: &'a Fragments,
    /// Ids of the named backends (`set-backend-service backend-id` must name one).
    pub backends: &'a std::collections::BTreeSet<String>,
    /// The operation's documented responses (none outside an operation, e.g. `policy check`).
    pub responses: &'a [ResponseExample],
    pub options: Options,
    /// The named certificates (`[[tls.named-certificate]]`) by id, with their public keys
    /// (`validate-jwt`'s `<key certificate-id>`; `authentication-certificate` and
    /// `issuer-certificate-id` must name one).
    pub certificates: &'a Certificates,
}

/// Public keys of certificates by certificate id.
pub type Certificates = std::collections::BTreeMap<String, portcullis_contract::jwt::KeyMaterial>;

/// Problems found while compiling, errors and warnings apart.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// Where a statement is while compiling: its file, scope, section and path.
#[derive(Debug, Clone)]
struct Place {
    file: Arc<SourceFile>,
    scope: ScopeKind,
    section: Section,
    /// `choose[1]/when[2]` of the enclosing statements.
    path: String,
    /// Set inside `return-response`: shaping policies build the returned response.
    in_return_response: bool,
    /// Set inside `send-request` / `send-one-way-request`: shaping policies build its request.
    in_send_request: bool,
    /// Set inside `wait`: its `send-request`s start at once and `wait` collects them.
    in_wait: bool,
    /// Fragments being expanded (to refuse cycles and nesting).
    fragment_depth: usize,
}

/// One section being compiled.
struct SectionCompiler<'a> {
    code: CodeBuilder,
    env: Environment<'a>,
    report: &'a mut Report,
}

/// Compiles one merged section. Diagnostics go to `report`; `None` when any error was found.
pub fn compile_section(
    statements: &[Stmt],
    section: Section,
    env: Environment<'_>,
    report: &mut Report,
) -> Option<Program> {
    let errors_before = report.errors.len();
    let mut compiler = SectionCompiler { code: CodeBuilder::new(), env, report };
    compiler.statements_of_stmts(statements, section);
    let failed = compiler.report.errors.len() > errors_before;
    match compiler.code.finish() {
        Ok(program) if !failed => Some(program),
        Ok(_) => None,
        Err(error) => {
            let file = statements.first().map(|s| s.file.clone());
            let message = format!(
                "internal compiler error (please report): the {} program does not verify: {error}",
                section.as_str()
            );
            match file {
                Some(file) => report.errors.push(file.error_at_start(message)),
                None => report.errors.push(Diagnostic::at_path(std::path::Path::new("<policy>"), message)),
            }
            None
        }
    }
}

/// Sibling numbering for `LastError.Path`: the n-th element of each name, 1-based.
fn numbered<'e>(elements: impl Iterator<Item = &'e Element>) -> Vec<(&'e Element, usize)> {
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    elements
        .map(|element| {
            let count = counts.entry(element.name.as_str()).or_insert(0);
            *count += 1;
            (element, *count)
        })
        .collect()
}

impl SectionCompiler<'_> {
    fn statements_of_stmts(&mut self, statements: &[Stmt], section: Section) {
        let numbered = numbered(statements.iter().map(|s| &s.element));
        for (stmt, (element, index)) in statements.iter().zip(numbered) {
            let place = Place {
                file: stmt.file.clone(),
                scope: stmt.scope,
                section,
                path: String::new(),
                in_return_response: false,
                in_send_request: false,
                in_wait: false,
                fragment_depth: 0,
            };
            self.statement(element, index, &place);
        }
    }

    /// Compiles child statements of a block element (choose branches, retry, ...).
    fn block<'e>(&mut self, elements: impl Iterator<Item = &'e Element>, place: &Place) {
        for (element, index) in numbered(elements) {
            self.statement(element, index, place);
        }
    }

    fn error(&mut self, place: &Place, span: Range<usize>, message: impl Into<String>) {
        self.report.errors.push(place.file.error(span, message));
    }

    fn warning(&mut self, place: &Place, span: Range<usize>, message: impl Into<String>) {
        self.report.warnings.push(place.file.error(span, message));
    }

    /// Registers the site of `element` and emits [`Op::Site`]; returns the child place.
    fn site(&mut self, element: &Element, index: usize, place: &Place) -> Place {
        let step = format!("{}[{index}]", element.name);
        let path = if place.path.is_empty() { step } else { format!("{}/{step}", place.path) };
        let location = match place.file.error(element.name_span.clone(), "").location {
            Some(location) => format!("{}:{}:{}", place.file.path.display(), location.line, location.column),
            None => place.file.path.display().to_string(),
        };
        let site = self.code.site(Site {
            policy: element.name.clone(),
            scope: place.scope,
            section: place.section,
            path: path.clone(),
            policy_id: element.attr("id").map(|attr| attr.value.clone()),
            location,
        });
        self.code.emit(Op::Site(site));
        Place { path, ..place.clone() }
    }

    fn statement(&mut self, element: &Element, index: usize, place: &Place) {
        let name = element.name.as_str();
        if name == "base" {
            self.error(place, element.name_span.clone(), "<base/> is only allowed directly inside a section");
            return;
        }
        if name == "include-fragment" {
            self.include_fragment(element, place);
            return;
        }
        match policies::kind(name) {
            policies::Kind::Supported(sections) => {
                let allowed_here = sections.contains(&place.section)
                    || (place.in_return_response && policies::in_return_response(name));
                if !allowed_here {
                    let allowed: Vec<&str> = sections.iter().map(|s| s.as_str()).collect();
                    self.error(
                        place,
                        element.name_span.clone(),
                        format!(
                            "<{name}> is not allowed in the {} section (allowed in: {})",
                            place.section.as_str(),
                            allowed.join(", ")
                        ),
                    );
                    return;
                }
                let child = self.site(element, index, place);
                self.check_attributes(element, &child);
                policies::compile(self, element, &child);
            }
            policies::Kind::Unsupported => {
                let message = match policies::refusal(name) {
                    Some(reason) => format!("unsupported policy <{name}>: {reason} (see docs/policies.md)"),
                    None => format!(
                        "unsupported policy <{name}>: Portcullis does not implement it yet (see docs/policies.md)"
                    ),
                };
                if self.env.options.skip_unsupported {
                    self.warning(
                        place,
                        element.name_span.clone(),
                        format!("{message}; skipped because of --skip-unsupported"),
                    );
                } else {
                    self.error(
                        place,
                        element.name_span.clone(),
                        format!("{message}; pass --skip-unsupported to skip it with a warning"),
                    );
                }
            }
            policies::Kind::Unknown => {
                self.error(
                    place,
                    element.name_span.clone(),
                    format!("unknown policy <{name}>: not an API Management policy"),
                );
            }
        }
    }

    /// Unknown attributes are errors, so a typo never silently means "default".
    fn check_attributes(&mut self, element: &Element, place: &Place) {
        let known = policies::attributes(&element.name);
        for attr in &element.attrs {
            if attr.name != "id" && !known.contains(&attr.name.as_str()) {
                let message = if known.is_empty() {
                    format!("<{}> takes no attribute {:?}", element.name, attr.name)
                } else {
                    format!("<{}> has no attribute {:?} (known: {})", element.name, attr.name, known.join(", "))
                };
                self.error(place, attr.name_span.clone(), message);
            }
        }
    }

    fn include_fragment(&mut self, element: &Element, place: &Place) {
        let Some(id) = element.attr("fragment-id") else {
            self.error(place, element.name_span.clone(), "<include-fragment> needs fragment-id=\"...\"");
            return;
        };
        if place.fragment_depth > 0 {
            self.error(
                place,
                element.name_span.clone(),
                "a fragment cannot include another fragment (APIM forbids nesting)",
            );
            return;
        }
        let Some(fragment) = self.env.fragments.get(&id.value) else {
            let message = format!("unknown fragment {:?} (add fragments/{}.xml)", id.value, id.value);
            if self.env.options.allow_unknown_references {
                self.warning(place, id.value_span.clone(), format!("{message}; compiled without it"));
            } else {
                self.error(place, id.value_span.clone(), message);
            }
            return;
        };
        let inner = Place { file: fragment.file.clone(), fragment_depth: place.fragment_depth + 1, ..place.clone() };
        let statements = fragment.statements.clone();
        self.block(statements.iter(), &inner);
    }

    /// Side that shaping policies change here.
    fn side(&self, place: &Place) -> Side {
        if place.in_send_request {
            Side::Outgoing
        } else if place.in_return_response {
            Side::Returned
        } else {
            match place.section {
                Section::Inbound | Section::Backend => Side::Request,
                Section::Outbound | Section::OnError => Side::Response,
            }
        }
    }

    /// `{{named values}}` substituted; `None` (with a diagnostic) when one is unknown.
    fn substitute(&mut self, text: &str, span: &Range<usize>, place: &Place) -> Option<String> {
        self.substitute_mapped(text, span, place).map(|(text, _)| text)
    }

    /// As [`Self::substitute`], with the replacements made (to trace offsets back). With
    /// unknown references allowed, an unknown name inside C# code (not inside a string literal)
    /// becomes a placeholder of type `object`, so the code around it still compiles and its own
    /// errors are reported; elsewhere it is left as written.
    fn substitute_mapped(
        &mut self,
        text: &str,
        span: &Range<usize>,
        place: &Place,
    ) -> Option<(String, Vec<named_values::Replacement>)> {
        let allow = self.env.options.allow_unknown_references;
        let expression = expr::is_expression(text);
        let mut unknown = Vec::new();
        let result = named_values::substitute_with(text, self.env.named_values, |name, range| {
            if !allow {
                return None;
            }
            let in_code = expression && !expr::in_string_literal(text, range.start);
            unknown.push((name.to_owned(), range.clone(), in_code));
            Some(if in_code { format!("((object)\"{{{{{name}}}}}\")") } else { text[range].to_owned() })
        });
        for (name, range, in_code) in unknown {
            let at = inner_span(place, span, text, range);
            let what = if in_code { "replaced by a placeholder of type object" } else { "left as written" };
            self.warning(place, at, format!("unknown named value {name:?} (define it in named-values.toml); {what}"));
        }
        match result {
            Ok((substituted, replacements)) => Some((substituted.text, replacements)),
            Err(error) => {
                let at = inner_span(place, span, text, error.range());
                self.error(place, at, error.to_string());
                None
            }
        }
    }

    /// Pushes the value of an attribute or text: an expression's value or the literal string.
    /// Returns false (with a diagnostic) when it could not be compiled; a placeholder null is
    /// pushed then, so the stack stays balanced.
    fn value(&mut self, text: &str, span: &Range<usize>, expect: Expect, place: &Place) -> bool {
        let original = text;
        let Some((text, replacements)) = self.substitute_mapped(text, span, place) else {
            self.code.emit(Op::Null);
            return false;
        };
        if expr::is_expression(&text) {
            let start = self.code.position();
            match expr::compile(&mut self.code, &text, expect) {
                Ok(_) => true,
                Err(error) => {
                    let from = named_values::template_offset(&replacements, error.offset);
                    let to =
                        named_values::template_offset(&replacements, error.offset + error.len.max(1)).max(from + 1);
                    let at = inner_span(place, span, original, from..to);
                    self.error(place, at, error.message);
                    // The program is discarded (an error was reported), but the rest of the
                    // section is still compiled for its diagnostics: drop what the expression
                    // emitted before it failed (values it left on the stack would make the
                    // section fail to verify, reported as a compiler bug), and push the
                    // placeholder the statement that follows consumes.
                    self.code.truncate(start);
                    self.code.emit(Op::Null);
                    false
                }
            }
        } else {
            match expect {
                Expect::Int => match text.trim().parse::<i64>() {
                    Ok(value) => self.code.push_int(value),
                    Err(_) => {
                        self.error(place, span.clone(), format!("{text:?} is not an integer"));
                        self.code.emit(Op::Null);
                        return false;
                    }
                },
                Expect::Bool => match parse_bool(&text) {
                    Some(value) => {
                        self.code.emit(Op::Bool(value));
                    }
                    None => {
                        self.error(place, span.clone(), format!("{text:?} is not true or false"));
                        self.code.emit(Op::Null);
                        return false;
                    }
                },
                _ => self.code.push_str(&text),
            }
            true
        }
    }

    /// Pushes an attribute's value, or `default` when it is absent.
    fn attr_value(&mut self, element: &Element, name: &str, expect: Expect, place: &Place) -> Option<bool> {
        let attr = element.attr(name)?;
        Some(self.value(&attr.value, &attr.value_span, expect, place))
    }

    /// A literal attribute (no expressions), named values substituted.
    fn literal(&mut self, attr: &Attr, place: &Place) -> Option<String> {
        let text = self.substitute(&attr.value, &attr.value_span, place)?;
        if expr::is_expression(&text) {
            self.error(place, attr.value_span.clone(), format!("{:?} does not accept policy expressions", attr.name));
            return None;
        }
        Some(text)
    }

    /// A required literal attribute.
    fn required_literal(&mut self, element: &Element, name: &str, place: &Place) -> Option<String> {
        match element.attr(name) {
            Some(attr) => self.literal(attr, place),
            None => {
                self.error(place, element.name_span.clone(), format!("<{}> needs {name}=\"...\"", element.name));
                None
            }
        }
    }

    /// An optional literal attribute parsed as T.
    fn literal_parsed<T: std::str::FromStr>(
        &mut self,
        element: &Element,
        name: &str,
        what: &str,
        place: &Place,
    ) -> Option<Option<T>> {
        let Some(attr) = element.attr(name) else { return Some(None) };
        let text = self.literal(attr, place)?;
        match text.trim().parse::<T>() {
            Ok(value) => Some(Some(value)),
            // `timeout="{{bff-timeout}}"` with the value unknown (`--allow-unknown`, warned
            // about): checked as the default now, and for real where the value is defined.
            Err(_) if self.unresolved(&text) => Some(None),
            Err(_) => {
                self.error(place, attr.value_span.clone(), format!("{name}: {text:?} is not {what}"));
                None
            }
        }
    }

    /// Whether `text` (named values substituted) still holds a `{{name}}` left as written
    /// because the value is unknown and unknown references are allowed: then what the value
    /// must be (a number, a URL) can only be checked where it is defined.
    pub(crate) fn unresolved(&self, text: &str) -> bool {
        self.env.options.allow_unknown_references
            && text.split("{{").skip(1).any(|rest| {
                rest.split_once("}}").is_some_and(|(name, _)| {
                    let name = name.trim();
                    named_values::is_valid_name(name) && self.env.named_values.get(name).is_none()
                })
            })
    }

    /// An optional literal boolean attribute (`true`/`false`, any case).
    fn literal_bool(&mut self, element: &Element, name: &str, default: bool, place: &Place) -> bool {
        let Some(attr) = element.attr(name) else { return default };
        let Some(text) = self.literal(attr, place) else { return default };
        match parse_bool(&text) {
            Some(value) => value,
            None => {
                self.error(place, attr.value_span.clone(), format!("{name}: {text:?} is not true or false"));
                default
            }
        }
    }
}

/// The first section in which every policy of `statements` (nested ones included) may stand:
/// where a fragment checked on its own is compiled. A fragment has no section until a document
/// includes it, and it is checked again, in that section, where it is included.
pub fn fragment_section(statements: &[Element]) -> Section {
    fn fits(element: &Element, section: Section) -> bool {
        let here = match policies::kind(&element.name) {
            policies::Kind::Supported(sections) => sections.contains(&section),
            _ => true,
        };
        here && element.elements().all(|child| fits(child, section))
    }
    Section::ALL.into_iter().find(|section| statements.iter().all(|e| fits(e, *section))).unwrap_or(Section::Inbound)
}

/// An HTTP method name (an RFC 9110 token).
pub fn is_method(text: &str) -> bool {
    policies::is_token(text)
}

/// The media type of a `Content-Type` value, lower case, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// The span in the file of `range` inside a value whose (unescaped) text is `text` and whose
/// span is `span`: exact when the file holds the value as is or with entities (`&quot;`,
/// `&lt;`, `&#10;`) standing for some of its characters, else the whole value.
fn inner_span(place: &Place, span: &Range<usize>, text: &str, range: Range<usize>) -> Range<usize> {
    let Some(raw) = place.file.text.get(span.clone()) else { return span.clone() };
    if range.end > text.len() {
        return span.clone();
    }
    if raw == text {
        return span.start + range.start..span.start + range.end;
    }
    match raw_offsets(raw, text) {
        Some(offsets) => {
            span.start + offsets[range.start]..span.start + offsets[range.end].max(offsets[range.start] + 1)
        }
        None => span.clone(),
    }
}

/// For each byte offset of `text` (and its end), the offset in `raw` it was decoded from, where
/// `raw` is `text` as written in XML (entities and character references); `None` when `raw`
/// does not decode to `text`.
fn raw_offsets(raw: &str, text: &str) -> Option<Vec<usize>> {
    let mut offsets = vec![0; text.len() + 1];
    let (mut i, mut j) = (0, 0);
    while j < text.len() {
        let ch = text[j..].chars().next()?;
        let consumed = match decode_entity(&raw[i..]) {
            Some((decoded, len)) if decoded == ch => len,
            _ if raw[i..].starts_with(ch) => ch.len_utf8(),
            _ => return None,
        };
        offsets[j..j + ch.len_utf8()].fill(i);
        i += consumed;
        j += ch.len_utf8();
    }
    offsets[text.len()] = i;
    Some(offsets)
}

/// The character an XML entity or character reference at the start of `raw` stands for, and
/// its length.
fn decode_entity(raw: &str) -> Option<(char, usize)> {
    let end = raw.strip_prefix('&')?.find(';')? + 2;
    let ch = match &raw[1..end - 1] {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        reference => {
            let number = reference.strip_prefix('#')?;
            let code = match number.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code)?
        }
    };
    Some((ch, end))
}

#[cfg(test)]
mod tests;
