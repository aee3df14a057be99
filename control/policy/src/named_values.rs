//! Named values: `{{name}}` placeholders in policy and config strings, filled from the values
//! a config defines (`named-values.toml`) and those the running gateway provides.

use std::collections::BTreeMap;
use std::ops::Range;

/// APIM limits named-value names to 256 characters; so do we.
pub const NAME_CHARS_MAX: usize = 256;

/// One named value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedValue {
    /// The text substituted for `{{name}}`.
    pub value: String,
    /// Secret values never appear in output (diagnostics, status, logs).
    pub secret: bool,
}

/// All named values of one load, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedValues {
    values: BTreeMap<String, NamedValue>,
}

/// A template with every placeholder filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substituted {
    /// The resulting text.
    pub text: String,
    /// True when a secret value went into `text`: then `text` must not be printed.
    pub secret: bool,
}

/// Why a template could not be filled in. Ranges are byte offsets into the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`{{{{` is not closed by `}}}}`")]
    Unterminated { range: Range<usize> },
    #[error("unknown named value {name:?} (define it in named-values.toml)")]
    Unknown { name: String, range: Range<usize> },
    #[error("{name:?} is not a valid named-value name (letters, digits, '.', '-', '_')")]
    InvalidName { name: String, range: Range<usize> },
}

impl NamedValues {
    /// Sets `name`, replacing an earlier value of the same name.
    pub fn insert(&mut self, name: impl Into<String>, value: NamedValue) {
        self.values.insert(name.into(), value);
    }

    /// Every secret value, so output can redact them.
    pub fn secret_values(&self) -> Vec<String> {
        self.values.values().filter(|value| value.secret).map(|value| value.value.clone()).collect()
    }

    /// The value called `name`.
    pub fn get(&self, name: &str) -> Option<&NamedValue> {
        self.values.get(name)
    }
}

impl TemplateError {
    /// Where in the template the problem is.
    pub fn range(&self) -> Range<usize> {
        match self {
            TemplateError::Unterminated { range }
            | TemplateError::Unknown { range, .. }
            | TemplateError::InvalidName { range, .. } => range.clone(),
        }
    }
}

/// True for names APIM accepts: 1..=256 of letters, digits, `.`, `-`, `_`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= NAME_CHARS_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Replaces every `{{name}}` in `template` (spaces inside the braces are allowed).
pub fn substitute(template: &str, values: &NamedValues) -> Result<Substituted, TemplateError> {
    substitute_with(template, values, |_, _| None).map(|(substituted, _)| substituted)
}

/// One placeholder that [`substitute_with`] replaced: where its text is in the output and
/// where the placeholder was in the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub output: Range<usize>,
    pub template: Range<usize>,
}

/// As [`substitute`], but an unknown name is given to `unknown` (with its range in the
/// template), which may supply the text to put in its place; `None` fails as `substitute` does.
/// Also returns every replacement made, in order, so offsets in the output can be traced back.
pub fn substitute_with(
    template: &str,
    values: &NamedValues,
    mut unknown: impl FnMut(&str, Range<usize>) -> Option<String>,
) -> Result<(Substituted, Vec<Replacement>), TemplateError> {
    let mut text = String::with_capacity(template.len());
    let mut replacements = Vec::new();
    let mut secret = false;
    let mut rest = 0;
    while let Some(found) = template[rest..].find("{{") {
        let open = rest + found;
        text.push_str(&template[rest..open]);
        let Some(close) = template[open + 2..].find("}}").map(|at| open + 2 + at) else {
            return Err(TemplateError::Unterminated { range: open..template.len() });
        };
        let range = open..close + 2;
        let name = template[open + 2..close].trim();
        if !is_valid_name(name) {
            return Err(TemplateError::InvalidName { name: name.to_owned(), range });
        }
        let start = text.len();
        match values.get(name) {
            Some(value) => {
                text.push_str(&value.value);
                secret |= value.secret;
            }
            None => match unknown(name, range.clone()) {
                Some(placeholder) => text.push_str(&placeholder),
                None => return Err(TemplateError::Unknown { name: name.to_owned(), range }),
            },
        }
        replacements.push(Replacement { output: start..text.len(), template: range });
        rest = close + 2;
    }
    text.push_str(&template[rest..]);
    Ok((Substituted { text, secret }, replacements))
}

/// The template offset an output offset of [`substitute_with`] came from (a replaced
/// placeholder's text maps to the placeholder's start).
pub fn template_offset(replacements: &[Replacement], offset: usize) -> usize {
    let mut shift: isize = 0;
    for replacement in replacements {
        if offset < replacement.output.start {
            break;
        }
        if offset < replacement.output.end {
            return replacement.template.start;
        }
        shift = replacement.template.end as isize - replacement.output.end as isize;
    }
    offset.saturating_add_signed(shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> NamedValues {
        let mut values = NamedValues::default();
        values.insert("host", NamedValue { value: "10.0.0.1".into(), secret: false });
        values.insert("token", NamedValue { value: "s3cr3t".into(), secret: true });
        values
    }

    #[test]
    fn fills_placeholders_and_tracks_secrets() {
        let plain = substitute("http://{{host}}:81/{{ host }}", &values()).unwrap();
        assert_eq!(plain, Substituted { text: "http://10.0.0.1:81/10.0.0.1".into(), secret: false });
        let secret = substitute("http://{{host}}/{{token}}", &values()).unwrap();
        assert!(secret.secret);
        assert_eq!(substitute("no placeholders", &values()).unwrap().text, "no placeholders");
    }

    #[test]
    fn every_failure_names_its_range() {
        assert_eq!(
            substitute("http://{{nope}}/x", &values()).unwrap_err(),
            TemplateError::Unknown { name: "nope".into(), range: 7..15 }
        );
        assert_eq!(substitute("a{{host", &values()).unwrap_err(), TemplateError::Unterminated { range: 1..7 });
        assert!(matches!(substitute("{{a b}}", &values()), Err(TemplateError::InvalidName { .. })));
        assert!(matches!(substitute("{{}}", &values()), Err(TemplateError::InvalidName { .. })));
    }

    #[test]
    fn unknown_names_may_be_replaced_and_offsets_traced_back() {
        let (out, replacements) =
            substitute_with("a{{host}}b{{nope}}c", &values(), |name, _| Some(format!("<{name}>"))).unwrap();
        assert_eq!(out.text, "a10.0.0.1b<nope>c");
        assert_eq!(template_offset(&replacements, 0), 0);
        assert_eq!(template_offset(&replacements, 3), 1);
        assert_eq!(template_offset(&replacements, 9), 9);
        assert_eq!(template_offset(&replacements, 11), 10);
        assert_eq!(template_offset(&replacements, 16), 18);
    }

    #[test]
    fn names() {
        assert!(is_valid_name("echo-backend-url"));
        assert!(is_valid_name("a.b_c"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name(&"a".repeat(NAME_CHARS_MAX + 1)));
    }
}
