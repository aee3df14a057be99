//! Policy XML as APIM reads it: an element tree whose every node knows its byte span.
//!
//! APIM lets policy expressions stand unescaped inside XML: `condition="@(h.GetValueOrDefault("x") && y < 2)"`
//! is accepted although `"`, `&` and `<` are not valid there. So before quick-xml sees the
//! text, [`escape_expressions`] escapes those characters inside every `@(...)` and `@{...}` that
//! starts an attribute value or a text node, and keeps a map back to the original offsets so
//! that every diagnostic points into the file as written.

use std::ops::Range;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// Elements nest no deeper than this in a policy document (real ones: under 10).
pub const DEPTH_MAX: usize = 64;

/// An element with its attributes and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    /// Span of the element's name in the start tag (original offsets).
    pub name_span: Range<usize>,
    pub attrs: Vec<Attr>,
    pub children: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub name: String,
    pub name_span: Range<usize>,
    /// The unescaped value.
    pub value: String,
    /// Span of the value between its quotes (original offsets).
    pub value_span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    /// Character data (text or CDATA), unescaped; whitespace-only text is dropped.
    Text {
        text: String,
        span: Range<usize>,
    },
}

/// A syntax error, at original offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    pub span: Range<usize>,
    pub message: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|attr| attr.name == name)
    }

    /// Child elements, in order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|node| match node {
            Node::Element(element) => Some(element),
            Node::Text { .. } => None,
        })
    }

    /// The element's text content (text and CDATA children joined) with its span.
    pub fn text(&self) -> Option<(String, Range<usize>)> {
        let mut text = String::new();
        let mut span: Option<Range<usize>> = None;
        for node in &self.children {
            if let Node::Text { text: part, span: part_span } = node {
                text.push_str(part);
                span = Some(match span {
                    None => part_span.clone(),
                    Some(span) => span.start..part_span.end,
                });
            }
        }
        span.map(|span| (text, span))
    }
}

/// Parses `source` into its root element.
pub fn parse(source: &str) -> Result<Element, XmlError> {
    // A byte-order mark is skipped by the reader; it is parsed without it here and every offset
    // moved past it, so that spans index `source` (they were 3 bytes early).
    let bom = if source.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
    let escaped = escape_expressions(&source[bom..]);
    let map = |offset: usize| escaped.original(offset) + bom;
    let text = escaped.text.as_str();
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|error| {
            let at = map(reader.error_position() as usize);
            XmlError { span: at..at + 1, message: format!("malformed XML: {error}") }
        })?;
        let after = reader.buffer_position() as usize;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() && stack.is_empty() => {
                return Err(XmlError {
                    span: map(before)..map(after),
                    message: "only one root element is allowed".into(),
                });
            }
            Event::Start(start) => {
                if stack.len() >= DEPTH_MAX {
                    return Err(XmlError {
                        span: map(before)..map(after),
                        message: format!("elements nest deeper than {DEPTH_MAX} levels"),
                    });
                }
                stack.push(element(&start, text, before, &map)?);
            }
            Event::Empty(start) => {
                let element = element(&start, text, before, &map)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(element)),
                    None => root = Some(element),
                }
            }
            Event::End(_) => {
                let Some(element) = stack.pop() else {
                    return Err(XmlError { span: map(before)..map(after), message: "unexpected end tag".into() });
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(Node::Element(element)),
                    None => root = Some(element),
                }
            }
            Event::Text(content) => {
                let unescaped = content.unescape().map_err(|error| XmlError {
                    span: map(before)..map(after),
                    message: format!("malformed text: {error}"),
                })?;
                push_text(&mut stack, &unescaped, map(before)..map(after), &root)?;
            }
            Event::CData(content) => {
                let data = String::from_utf8_lossy(&content.into_inner()).into_owned();
                // `<![CDATA[` is 9 bytes, `]]>` 3.
                let span = map(before + 9)..map(after.saturating_sub(3));
                push_text(&mut stack, &data, span, &root)?;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(XmlError { span: open.name_span.clone(), message: format!("<{}> is never closed", open.name) });
    }
    root.ok_or(XmlError { span: 0..0, message: "the document has no root element".into() })
}

fn push_text(stack: &mut [Element], text: &str, span: Range<usize>, root: &Option<Element>) -> Result<(), XmlError> {
    if text.trim().is_empty() {
        return Ok(());
    }
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(Node::Text { text: text.to_owned(), span });
            Ok(())
        }
        None => {
            let message = if root.is_some() { "text after the root element" } else { "text before the root element" };
            Err(XmlError { span, message: message.into() })
        }
    }
}

/// Builds an element from its start tag; `at` is the escaped offset of its `<`.
fn element(start: &BytesStart<'_>, text: &str, at: usize, map: &impl Fn(usize) -> usize) -> Result<Element, XmlError> {
    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
    let name_start = at + 1;
    let name_span = map(name_start)..map(name_start + name.len());
    let mut attrs = Vec::new();
    // Where to look for the next attribute in the raw tag.
    let mut cursor = name_start + name.len();
    for attr in start.attributes() {
        let attr = attr.map_err(|error| XmlError {
            span: name_span.clone(),
            message: format!("malformed attribute in <{name}>: {error}"),
        })?;
        let attr_name = String::from_utf8_lossy(attr.key.as_ref()).into_owned();
        let value = attr
            .unescape_value()
            .map_err(|error| XmlError {
                span: name_span.clone(),
                message: format!("malformed value of attribute {attr_name:?}: {error}"),
            })?
            .into_owned();
        let (name_at, value_range) = locate_attr(text, cursor, &attr_name).unwrap_or((cursor, cursor..cursor));
        cursor = value_range.end;
        if attrs.iter().any(|a: &Attr| a.name == attr_name) {
            return Err(XmlError {
                span: map(name_at)..map(name_at + attr_name.len()),
                message: format!("attribute {attr_name:?} is repeated"),
            });
        }
        attrs.push(Attr {
            name_span: map(name_at)..map(name_at + attr_name.len()),
            name: attr_name,
            value,
            value_span: map(value_range.start)..map(value_range.end),
        });
    }
    Ok(Element { name, name_span, attrs, children: Vec::new() })
}

/// Finds `name = "value"` at or after `from` in the raw text: (name offset, value range inside quotes).
fn locate_attr(text: &str, from: usize, name: &str) -> Option<(usize, Range<usize>)> {
    let bytes = text.as_bytes();
    let mut at = from;
    while let Some(found) = text.get(at..)?.find(name) {
        let name_at = at + found;
        let mut i = name_at + name.len();
        let preceded = name_at > 0 && bytes.get(name_at - 1).is_some_and(u8::is_ascii_whitespace);
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if preceded && bytes.get(i) == Some(&b'=') {
            i += 1;
            while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
                i += 1;
            }
            let quote = *bytes.get(i)?;
            let close = text.get(i + 1..)?.find(quote as char)? + i + 1;
            return Some((name_at, i + 1..close));
        }
        at = name_at + name.len();
    }
    None
}

/// The document with expressions escaped, and the map back to original offsets.
#[derive(Debug)]
pub(crate) struct Escaped {
    pub(crate) text: String,
    /// (escaped offset, original offset) at every point where the two start to differ, sorted.
    shifts: Vec<(usize, usize)>,
}

impl Escaped {
    /// The original offset of an escaped offset (a position inside an entity maps to the
    /// character it replaced).
    pub(crate) fn original(&self, offset: usize) -> usize {
        let index = self.shifts.partition_point(|&(escaped, _)| escaped <= offset);
        match index.checked_sub(1).and_then(|i| self.shifts.get(i)) {
            None => offset,
            Some(&(escaped, original)) => original + (offset - escaped),
        }
    }
}

/// Where the scanner is in the XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XmlState {
    Text,
    Tag,
    Value(u8),
}

/// Escapes `"`, `'`, `&`, `<` and `>` inside expressions that start an attribute value or a
/// text node, so quick-xml accepts what APIM accepts. Entities already present are kept.
pub(crate) fn escape_expressions(source: &str) -> Escaped {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len() + 16);
    let mut shifts = Vec::new();
    let mut state = XmlState::Text;
    let mut i = 0;
    // Offset where the current value or text started (to know an expression is at its start).
    let mut value_start = 0;
    while i < bytes.len() {
        let rest = &source[i..];
        match state {
            XmlState::Text if rest.starts_with("<!--") => {
                let end = rest.find("-->").map_or(bytes.len(), |at| i + at + 3);
                out.push_str(&source[i..end]);
                i = end;
                value_start = i;
                continue;
            }
            XmlState::Text if rest.starts_with("<![CDATA[") => {
                let end = rest.find("]]>").map_or(bytes.len(), |at| i + at + 3);
                out.push_str(&source[i..end]);
                i = end;
                value_start = i;
                continue;
            }
            XmlState::Text if bytes[i] == b'<' => state = XmlState::Tag,
            XmlState::Tag if bytes[i] == b'"' || bytes[i] == b'\'' => {
                state = XmlState::Value(bytes[i]);
                value_start = i + 1;
            }
            XmlState::Tag if bytes[i] == b'>' => {
                state = XmlState::Text;
                value_start = i + 1;
            }
            XmlState::Value(quote) if bytes[i] == quote => state = XmlState::Tag,
            XmlState::Text | XmlState::Value(_)
                if (rest.starts_with("@(") || rest.starts_with("@{")) && source[value_start..i].trim().is_empty() =>
            {
                let end = expression_end(source, i);
                escape_region(source, i..end, &mut out, &mut shifts);
                i = end;
                continue;
            }
            _ => {}
        }
        // Copy one character.
        let len = rest.chars().next().map_or(1, char::len_utf8);
        out.push_str(&source[i..i + len]);
        i += len;
    }
    Escaped { text: out, shifts }
}

/// Appends `source[region]` to `out` with XML-special characters escaped, recording shifts.
fn escape_region(source: &str, region: Range<usize>, out: &mut String, shifts: &mut Vec<(usize, usize)>) {
    for (offset, ch) in source[region.clone()].char_indices() {
        let at = region.start + offset;
        let entity = match ch {
            '"' => Some("&quot;"),
            '\'' => Some("&apos;"),
            '<' => Some("&lt;"),
            '>' => Some("&gt;"),
            '&' if !starts_entity(&source[at..]) => Some("&amp;"),
            _ => None,
        };
        match entity {
            Some(entity) => {
                shifts.push((out.len(), at));
                out.push_str(entity);
                // The next character maps 1:1 again from here.
                shifts.push((out.len(), at + 1));
            }
            None => out.push(ch),
        }
    }
}

fn starts_entity(text: &str) -> bool {
    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#"].iter().any(|entity| text.starts_with(entity))
}

/// The offset just past the expression starting at `start` (`@(` or `@{`): the matching
/// close bracket, skipping C# strings and characters. Unbalanced: the end of the text.
pub(crate) fn expression_end(source: &str, start: usize) -> usize {
    let bytes = source.as_bytes();
    let mut depth = 0usize;
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            b'"' => {
                let verbatim =
                    i > 0 && (bytes[i - 1] == b'@' || (bytes[i - 1] == b'$' && i > 1 && bytes[i - 2] == b'@'));
                i = string_end(bytes, i, verbatim);
                continue;
            }
            b'\'' => {
                // A char literal: 'x' or '\x'.
                let mut j = i + 1;
                if bytes.get(j) == Some(&b'\\') {
                    j += 1;
                }
                j += 1;
                if bytes.get(j) == Some(&b'\'') {
                    i = j + 1;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

/// The offset past the string literal whose opening quote is at `open`.
fn string_end(bytes: &[u8], open: usize, verbatim: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if !verbatim => i += 2,
            b'"' if verbatim && bytes.get(i + 1) == Some(&b'"') => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests;
