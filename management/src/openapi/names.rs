//! APIM's naming rules for imported operations, and URL template names.

use std::collections::HashSet;

/// Longest normalised operation id before a duplicate suffix (APIM: 76, so that `-999` fits in
/// [`crate::resource::ID_CHARS_MAX`]).
pub const OPERATION_ID_CHARS_MAX: usize = 76;
/// Highest duplicate suffix (`get-pets-999`), as APIM.
pub(super) const DUPLICATE_SUFFIX_MAX: u32 = 999;

const _: () = assert!(OPERATION_ID_CHARS_MAX + 4 <= crate::resource::ID_CHARS_MAX, "-999 must fit in an id");

/// APIM's normalisation of an `operationId` into a resource name: lowercase ASCII letters and
/// digits, each run of anything else one `-`, no leading or trailing `-`, at most
/// [`OPERATION_ID_CHARS_MAX`] characters. Empty when nothing alphanumeric is left.
pub fn normalize_operation_id(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(OPERATION_ID_CHARS_MAX));
    let mut dash = false;
    for character in text.chars() {
        if character.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(character.to_ascii_lowercase());
        } else {
            dash = true;
        }
        if out.len() >= OPERATION_ID_CHARS_MAX {
            break;
        }
    }
    out.truncate(OPERATION_ID_CHARS_MAX);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The operation ids given so far in one import.
#[derive(Debug, Default)]
pub(super) struct OperationIds {
    taken: HashSet<String>,
}

impl OperationIds {
    /// A unique id for `base` (already normalised and not empty): itself, or `base-1` ...
    /// `base-999`; `None` when all are taken.
    pub(super) fn claim(&mut self, base: &str) -> Option<String> {
        let mut candidates =
            std::iter::once(base.to_owned()).chain((1..=DUPLICATE_SUFFIX_MAX).map(|n| format!("{base}-{n}")));
        candidates.find(|candidate| self.taken.insert(candidate.clone()))
    }
}

/// The operation id of an operation without `operationId`: method and path (`get-pets-petid`).
pub(super) fn generated_operation_id(method: &str, path: &str) -> String {
    normalize_operation_id(&format!("{method}-{path}"))
}

/// The names of the `{name}` parameters of a URL template, in order.
pub(super) fn template_names(template: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        names.push(&after[..close]);
        rest = &after[close + 1..];
    }
    names
}

/// Checks that every `{` of a URL template opens a `{name}` (not empty, no braces, `/`, `?`, `&`,
/// `=` or `#` inside), so that the template's parameter names are the same however it is split.
pub(super) fn check_template(template: &str) -> Result<(), &'static str> {
    let mut name_chars: Option<usize> = None;
    for character in template.chars() {
        name_chars = match (name_chars, character) {
            (None, '{') => Some(0),
            (None, '}') => return Err("a '}' closes no '{'"),
            (None, _) => None,
            (Some(0), '}') => return Err("an empty {} in the path"),
            (Some(_), '}') => None,
            (Some(_), '{' | '/' | '?' | '&' | '=' | '#') => return Err("a '{' without its '}'"),
            (Some(count), _) => Some(count + 1),
        };
    }
    if name_chars.is_some() { Err("a '{' without its '}'") } else { Ok(()) }
}

/// Whether `name` can stand in a template as `{name}` (see [`check_template`]).
pub(super) fn is_template_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['{', '}', '/', '?', '&', '=', '#'])
}

/// `text` cut to at most `max` characters (on a character boundary).
pub(super) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

/// A name for a schema hoisted out of an operation: `ListPets200ApplicationJsonResponse`,
/// letters and digits of each part, each part capitalised (APIM's style).
pub(super) fn hoisted_schema_name(parts: &[&str]) -> String {
    let mut name = String::new();
    for part in parts {
        for word in part.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
            let mut characters = word.chars();
            if let Some(first) = characters.next() {
                name.push(first.to_ascii_uppercase());
                name.extend(characters);
            }
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_follow_apim() {
        assert_eq!(normalize_operation_id("listPets"), "listpets");
        assert_eq!(normalize_operation_id("  Get__Pet by ID!! "), "get-pet-by-id");
        assert_eq!(normalize_operation_id("--a--b--"), "a-b");
        assert_eq!(normalize_operation_id("日本"), "");
        assert_eq!(normalize_operation_id(&"x".repeat(100)).len(), OPERATION_ID_CHARS_MAX);
        // A cut that ends on a dash loses the dash.
        let cut = normalize_operation_id(&format!("{}-{}", "a".repeat(75), "b".repeat(10)));
        assert_eq!(cut, "a".repeat(75));
        assert_eq!(generated_operation_id("GET", "/pets/{petId}"), "get-pets-petid");
    }

    #[test]
    fn duplicates_get_suffixes_up_to_999() {
        let mut ids = OperationIds::default();
        assert_eq!(ids.claim("get").as_deref(), Some("get"));
        assert_eq!(ids.claim("get").as_deref(), Some("get-1"));
        assert_eq!(ids.claim("get").as_deref(), Some("get-2"));
        for _ in 3..=DUPLICATE_SUFFIX_MAX {
            assert!(ids.claim("get").is_some());
        }
        assert_eq!(ids.claim("get"), None);
        let long = "a".repeat(OPERATION_ID_CHARS_MAX);
        assert_eq!(ids.claim(&long).map(|id| crate::resource::is_valid_id(&id)), Some(true));
    }

    #[test]
    fn template_names_and_schema_names() {
        assert_eq!(template_names("/a/{x}/b/{y}?q={q}"), ["x", "y", "q"]);
        assert_eq!(template_names("/a/{unclosed"), Vec::<&str>::new());
        assert_eq!(check_template("/a/{x}/b?q={q}&r={r}"), Ok(()));
        for bad in ["/a/{x", "/a/x}", "/a/{}", "/a/{x/y}", "/a/{x?q={q}", "/a/{{x}}"] {
            assert!(check_template(bad).is_err(), "{bad}");
        }
        assert_eq!(
            hoisted_schema_name(&["listpets", "200", "application/json", "response"]),
            "Listpets200ApplicationJsonResponse"
        );
        assert_eq!(truncate_chars("héllo", 2), "hé");
    }
}
