//! APIM's Liquid dialect for `set-body template="liquid"`: one parser definition both planes
//! build, so a template control accepts is a template the data plane can load.
//!
//! APIM runs DotLiquid with C# naming: its filters are Pascal-case (`Default`, `Append`,
//! `DividedBy`, `UrlEncode`). The parser here has the Liquid standard library (the `liquid`
//! crate's, Shopify's names) and every filter again under its Pascal-case name, so documents
//! written for APIM and for Shopify's Liquid both parse. Differences that remain (DotLiquid's
//! `Date` takes .NET format strings when APIM's documents use them; this `Date` takes strftime)
//! are listed in docs/policies.md.

use std::sync::OnceLock;

use liquid::ParserBuilder;
use liquid_core::parser::{FilterArguments, FilterReflection, ParameterReflection, ParseFilter};
use liquid_core::{Filter, Result};

/// A template's source past this is a configuration mistake (APIM bounds policy documents at
/// 256 KiB; one template is a part of one).
pub const LIQUID_TEMPLATE_BYTES_MAX: usize = 256 * 1024;

/// The parser of APIM's dialect, built once per process (it is immutable and `Sync`).
pub fn parser() -> &'static liquid::Parser {
    static PARSER: OnceLock<liquid::Parser> = OnceLock::new();
    PARSER.get_or_init(|| {
        let mut builder = ParserBuilder::with_stdlib();
        for filter in standard_filters() {
            let name = pascal_case(filter.reflection().name());
            builder = builder.filter(Alias { name, inner: filter });
        }
        builder
            .filter(Alias { name: "H".to_owned(), inner: Box::new(liquid_lib::stdlib::Escape) })
            .build()
            .unwrap_or_else(
                // The builder fails only on a duplicate or malformed registration, which the list
                // above (fixed at build time) does not contain; a failure is a bug caught by tests.
                |_| liquid::Parser::new(),
            )
    })
}

/// Parses `source` in APIM's dialect. The error's text names the line and column inside the
/// template (`--> 2:5`); [`error_position`] extracts them.
pub fn parse(source: &str) -> std::result::Result<liquid::Template, String> {
    if source.len() > LIQUID_TEMPLATE_BYTES_MAX {
        return Err(format!("the template has {} bytes, more than {LIQUID_TEMPLATE_BYTES_MAX}", source.len()));
    }
    parser().parse(source).map_err(|error| error.to_string())
}

/// The 1-based line and column a Liquid parse error names, if it names one.
pub fn error_position(message: &str) -> Option<(usize, usize)> {
    let at = message.find("--> ")?;
    let rest = &message[at + 4..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == ':')).unwrap_or(rest.len());
    let (line, column) = rest[..end].split_once(':')?;
    Some((line.parse().ok()?, column.parse().ok()?))
}

/// `divided_by` → `DividedBy`.
fn pascal_case(name: &str) -> String {
    name.split('_')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// The standard library's filters (the list `ParserBuilder::stdlib` registers).
fn standard_filters() -> Vec<Box<dyn ParseFilter>> {
    use liquid_lib::stdlib as s;
    vec![
        Box::new(s::Abs),
        Box::new(s::Append),
        Box::new(s::AtLeast),
        Box::new(s::AtMost),
        Box::new(s::Capitalize),
        Box::new(s::Ceil),
        Box::new(s::Compact),
        Box::new(s::Concat),
        Box::new(s::Date),
        Box::new(s::Default),
        Box::new(s::DividedBy),
        Box::new(s::Downcase),
        Box::new(s::Escape),
        Box::new(s::EscapeOnce),
        Box::new(s::First),
        Box::new(s::Floor),
        Box::new(s::Join),
        Box::new(s::Last),
        Box::new(s::Lstrip),
        Box::new(s::Map),
        Box::new(s::Minus),
        Box::new(s::Modulo),
        Box::new(s::NewlineToBr),
        Box::new(s::Plus),
        Box::new(s::Prepend),
        Box::new(s::Remove),
        Box::new(s::RemoveFirst),
        Box::new(s::Replace),
        Box::new(s::ReplaceFirst),
        Box::new(s::Reverse),
        Box::new(s::Round),
        Box::new(s::Rstrip),
        Box::new(s::Size),
        Box::new(s::Slice),
        Box::new(s::Sort),
        Box::new(s::SortNatural),
        Box::new(s::Split),
        Box::new(s::Strip),
        Box::new(s::StripHtml),
        Box::new(s::StripNewlines),
        Box::new(s::Times),
        Box::new(s::Truncate),
        Box::new(s::TruncateWords),
        Box::new(s::Uniq),
        Box::new(s::Upcase),
        Box::new(s::UrlDecode),
        Box::new(s::UrlEncode),
        Box::new(s::Where),
    ]
}

/// A filter under another name (DotLiquid's Pascal-case one).
#[derive(Clone)]
struct Alias {
    name: String,
    inner: Box<dyn ParseFilter>,
}

impl ParseFilter for Alias {
    fn parse(&self, arguments: FilterArguments<'_>) -> Result<Box<dyn Filter>> {
        self.inner.parse(arguments)
    }

    fn reflection(&self) -> &dyn FilterReflection {
        self
    }
}

impl FilterReflection for Alias {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        self.inner.reflection().description()
    }

    fn positional_parameters(&self) -> &'static [ParameterReflection] {
        self.inner.reflection().positional_parameters()
    }

    fn keyword_parameters(&self) -> &'static [ParameterReflection] {
        self.inner.reflection().keyword_parameters()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, globals: &liquid::Object) -> String {
        parse(source).map(|template| template.render(globals).unwrap_or_else(|e| e.to_string())).unwrap_or_else(|e| e)
    }

    #[test]
    fn pascal_case_and_shopify_filters_both_render() {
        let globals = liquid::object!({ "name": "ada", "n": 2, "missing": liquid::model::Value::Nil });
        assert_eq!(render("{{ name | Upcase }} {{ name | upcase }}", &globals), "ADA ADA");
        assert_eq!(render("{{ n | Plus: 3 }} {{ missing | Default: 'x' }}", &globals), "5 x");
        assert_eq!(render("{{ name | Append: '!' | H }}", &globals), "ada!");
        assert_eq!(render("{{ 'a b' | UrlEncode }}", &globals), "a%20b");
    }

    #[test]
    fn unknown_filters_and_syntax_errors_are_parse_errors() {
        let error = parse("line one\n  {{ x | Nope }}").err().unwrap_or_default();
        assert!(error.contains("requested filter=Nope"), "{error}");
        let error = parse("line one\n  {{ x | }}").err().unwrap_or_default();
        assert_eq!(error_position(&error).map(|(line, _)| line), Some(2), "{error}");
    }

    #[test]
    fn an_unclosed_tag_is_a_parse_error() {
        assert!(parse("{% if x %}never closed").is_err());
        assert!(parse(&"x".repeat(LIQUID_TEMPLATE_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn pascal_case_names() {
        assert_eq!(pascal_case("divided_by"), "DividedBy");
        assert_eq!(pascal_case("h"), "H");
    }
}
