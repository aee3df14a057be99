//! Policy documents at their scopes and APIM's merge: global → product → API → operation,
//! each section's `<base/>` marking where the parent's same section runs.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_contract::program::{ScopeKind, Section};

use super::xml::{self, Element, Node};
use crate::diagnostic::{Diagnostic, SourceFile};

/// Fragments larger than this are refused, as APIM refuses them (512 KB).
pub const FRAGMENT_BYTES_MAX: usize = 512 * 1024;

/// One policy statement with where it came from.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub element: Element,
    pub file: Arc<SourceFile>,
    pub scope: ScopeKind,
}

/// A parsed `<policies>` document. A section that is absent inherits its parent's (as if it
/// held only `<base/>`).
#[derive(Debug, Clone)]
pub struct Document {
    pub file: Arc<SourceFile>,
    pub scope: ScopeKind,
    sections: [Option<Vec<Element>>; 4],
}

/// A parsed `<fragment>`.
#[derive(Debug, Clone)]
pub struct Fragment {
    pub file: Arc<SourceFile>,
    pub statements: Vec<Element>,
}

/// Fragments by id.
#[derive(Debug, Clone, Default)]
pub struct Fragments {
    by_id: HashMap<String, Fragment>,
}

impl Fragments {
    pub fn insert(&mut self, id: String, fragment: Fragment) {
        self.by_id.insert(id, fragment);
    }

    pub fn get(&self, id: &str) -> Option<&Fragment> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

fn section_index(section: Section) -> usize {
    match section {
        Section::Inbound => 0,
        Section::Backend => 1,
        Section::Outbound => 2,
        Section::OnError => 3,
    }
}

fn section_named(name: &str) -> Option<Section> {
    Section::ALL.into_iter().find(|section| section.as_str() == name)
}

impl Document {
    /// Parses a policy file: `<policies>` with at most one of each section.
    pub fn parse(file: Arc<SourceFile>, scope: ScopeKind) -> Result<Self, Vec<Diagnostic>> {
        let root = xml::parse(&file.text).map_err(|error| vec![file.error(error.span, error.message)])?;
        if root.name != "policies" {
            return Err(vec![file.error(
                root.name_span.clone(),
                format!("the root element of a policy document is <policies>, not <{}>", root.name),
            )]);
        }
        let mut diagnostics = Vec::new();
        let mut sections: [Option<Vec<Element>>; 4] = Default::default();
        for node in &root.children {
            match node {
                Node::Text { span, .. } => {
                    diagnostics.push(file.error(span.clone(), "text is not allowed directly in <policies>"))
                }
                Node::Element(element) => match section_named(&element.name) {
                    None => diagnostics.push(file.error(
                        element.name_span.clone(),
                        format!(
                            "<{}> is not a section: <policies> holds <inbound>, <backend>, <outbound> and <on-error>",
                            element.name
                        ),
                    )),
                    Some(section) => {
                        let slot = &mut sections[section_index(section)];
                        if slot.is_some() {
                            diagnostics.push(
                                file.error(element.name_span.clone(), format!("<{}> appears twice", element.name)),
                            );
                        }
                        let mut statements = Vec::new();
                        for child in &element.children {
                            match child {
                                Node::Element(statement) => statements.push(statement.clone()),
                                Node::Text { span, .. } => diagnostics.push(file.error(
                                    span.clone(),
                                    format!("text is not allowed directly in <{}>", element.name),
                                )),
                            }
                        }
                        *slot = Some(statements);
                    }
                },
            }
        }
        if diagnostics.is_empty() { Ok(Self { file, scope, sections }) } else { Err(diagnostics) }
    }

    /// Replaces a section's statements.
    pub fn set_section(&mut self, section: Section, statements: Vec<Element>) {
        self.sections[section_index(section)] = Some(statements);
    }

    /// The section's statements as written (`None`: absent).
    pub fn section(&self, section: Section) -> Option<&[Element]> {
        self.sections[section_index(section)].as_deref()
    }
}

impl Fragment {
    /// Parses a fragment file: `<fragment>` holding statements (no sections, no `<base/>`).
    pub fn parse(file: Arc<SourceFile>) -> Result<Self, Vec<Diagnostic>> {
        if file.text.len() > FRAGMENT_BYTES_MAX {
            return Err(vec![file.error_at_start(format!(
                "a fragment is at most {FRAGMENT_BYTES_MAX} bytes (APIM's limit); this one is {}",
                file.text.len()
            ))]);
        }
        let root = xml::parse(&file.text).map_err(|error| vec![file.error(error.span, error.message)])?;
        if root.name != "fragment" {
            return Err(vec![file.error(
                root.name_span.clone(),
                format!("the root element of a fragment is <fragment>, not <{}>", root.name),
            )]);
        }
        let mut diagnostics = Vec::new();
        let mut statements = Vec::new();
        for node in &root.children {
            match node {
                Node::Text { span, .. } => {
                    diagnostics.push(file.error(span.clone(), "text is not allowed directly in <fragment>"))
                }
                Node::Element(element) if section_named(&element.name).is_some() || element.name == "base" => {
                    diagnostics.push(file.error(
                        element.name_span.clone(),
                        format!("a fragment cannot contain <{}> (APIM: no sections and no <base/>)", element.name),
                    ))
                }
                Node::Element(element) => statements.push(element.clone()),
            }
        }
        if diagnostics.is_empty() { Ok(Self { file, statements }) } else { Err(diagnostics) }
    }
}

/// The section as the operation runs it: the chain of documents (broadest first) merged.
///
/// The root of the chain is APIM's built-in parent of the global scope, whose only statement is
/// `<forward-request/>` in `<backend>` (so a global `<backend><base/></backend>` forwards).
pub fn merge(chain: &[&Document], section: Section) -> Result<Vec<Stmt>, Vec<Diagnostic>> {
    let mut merged: Vec<Stmt> = Vec::new();
    let mut diagnostics = Vec::new();
    let mut built_in = section == Section::Backend;
    for document in chain {
        let Some(statements) = document.section(section) else {
            // Absent section: inherits everything.
            continue;
        };
        let parent = std::mem::take(&mut merged);
        let parent_is_builtin = std::mem::take(&mut built_in);
        let mut based = false;
        for element in statements {
            if element.name == "base" {
                if based {
                    diagnostics
                        .push(document.file.error(element.name_span.clone(), "<base/> appears twice in this section"));
                    continue;
                }
                if !element.attrs.is_empty() || !element.children.is_empty() {
                    diagnostics
                        .push(document.file.error(element.name_span.clone(), "<base/> takes no attributes or content"));
                }
                based = true;
                if parent_is_builtin {
                    merged.push(Stmt {
                        element: builtin_forward_request(element),
                        file: document.file.clone(),
                        scope: document.scope,
                    });
                }
                merged.extend(parent.iter().cloned());
            } else {
                merged.push(Stmt { element: element.clone(), file: document.file.clone(), scope: document.scope });
            }
        }
    }
    if built_in {
        // No document wrote this section at all: the built-in parent applies.
        if let Some(first) = chain.first() {
            let placeholder =
                Element { name: "forward-request".into(), name_span: 0..0, attrs: Vec::new(), children: Vec::new() };
            merged.push(Stmt { element: placeholder, file: first.file.clone(), scope: ScopeKind::Global });
        }
    }
    if diagnostics.is_empty() { Ok(merged) } else { Err(diagnostics) }
}

/// `<forward-request/>` standing where a global `<base/>` is (its spans point at the `<base/>`).
fn builtin_forward_request(base: &Element) -> Element {
    Element {
        name: "forward-request".into(),
        name_span: base.name_span.clone(),
        attrs: Vec::new(),
        children: Vec::new(),
    }
}

/// The default document of a scope without a policy file: every section inherits.
pub fn inherit_all(file: Arc<SourceFile>, scope: ScopeKind) -> Document {
    Document { file, scope, sections: Default::default() }
}

#[cfg(test)]
mod tests;
