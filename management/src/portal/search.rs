//! Searching the catalogue: the visible APIs whose name or description contains the text (any
//! case), or that carry a tag (APIM's `/apis/{id}/tags/{tag}` links); the tags of the visible APIs.

use serde_json::{Value, json};

use super::catalogue::{display, visible_api, visible_products};
use super::visitor::Visitor;
use crate::resource::Kind;
use crate::service::State as Resources;

/// Longest search text, in characters.
pub(super) const SEARCH_CHARS_MAX: usize = 100;

/// `?search=&tag=` of the catalogue.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Search {
    #[serde(default)]
    pub(super) search: String,
    #[serde(default)]
    pub(super) tag: String,
}

impl Search {
    pub(super) fn is_empty(&self) -> bool {
        self.search.trim().is_empty() && self.tag.trim().is_empty()
    }
}

/// The tags of API `id`: `(tag id, display name)`.
pub(super) fn api_tags(state: &Resources, id: &str) -> Vec<(String, String)> {
    state
        .under(&format!("/apis/{id}/tags/"))
        .filter(|link| link.path.kind() == Kind::TagLink)
        .map(|link| {
            let tag = link.path.name().to_owned();
            let name = state
                .get(&format!("/tags/{tag}"))
                .and_then(|t| t.properties.get("displayName").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| tag.clone());
            (tag, name)
        })
        .collect()
}

/// The ids of the APIs the visitor sees, sorted.
pub(super) fn visible_api_ids(state: &Resources, visitor: &Visitor) -> Vec<String> {
    let mut ids: Vec<String> = visible_products(state, visitor)
        .iter()
        .flat_map(|shown| {
            state
                .under(&format!("/products/{}/apis/", shown.id))
                .filter(|link| link.path.kind() == Kind::ProductApi)
                .map(|link| link.path.name().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The catalogue's search: `{results, tags}`; `results` is null when nothing was asked.
pub(super) fn results(state: &Resources, visitor: &Visitor, search: &Search) -> Value {
    let text: String = search.search.trim().chars().take(SEARCH_CHARS_MAX).collect::<String>().to_lowercase();
    let tag = search.tag.trim();
    let mut all_tags: Vec<(String, String)> = Vec::new();
    let mut found = Vec::new();
    for id in visible_api_ids(state, visitor) {
        let Some(shown) = visible_api(state, visitor, &id) else { continue };
        let tags = api_tags(state, &id);
        all_tags.extend(tags.iter().cloned());
        let name = display(&shown.api.display_name, &id).to_owned();
        let description = shown.api.description.clone().unwrap_or_default();
        let text_ok = text.is_empty()
            || name.to_lowercase().contains(&text)
            || description.to_lowercase().contains(&text)
            || id.to_lowercase().contains(&text);
        let tag_ok = tag.is_empty() || tags.iter().any(|(t, _)| t == tag);
        if text_ok && tag_ok {
            let tags: Vec<Value> = tags.iter().map(|(id, name)| json!({"id": id, "name": name})).collect();
            found.push(json!({"id": id, "name": name, "description": shown.api.description, "version": shown.api.api_version, "tags": tags, "products": shown.products}));
        }
    }
    all_tags.sort();
    all_tags.dedup();
    let tags: Vec<Value> = all_tags.iter().map(|(id, name)| json!({"id": id, "name": name})).collect();
    let results = if search.is_empty() { Value::Null } else { Value::Array(found) };
    json!({"results": results, "tags": tags, "search": search.search.trim(), "tag": tag})
}

/// APIM's `$filter=contains(name,'x')` (or `contains(properties/displayName,'x')`): the text, if
/// the filter has that one form; anything else filters nothing.
pub(super) fn contains_filter(filter: &str) -> Option<String> {
    let inner = filter.trim().strip_prefix("contains(")?.strip_suffix(')')?;
    let (field, value) = inner.split_once(',')?;
    if !matches!(field.trim(), "name" | "properties/displayName") {
        return None;
    }
    let value = value.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    Some(value.replace("''", "'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_contains_form_of_filter_is_read() {
        assert_eq!(contains_filter("contains(name,'pet')").as_deref(), Some("pet"));
        assert_eq!(contains_filter("contains(properties/displayName, 'it''s')").as_deref(), Some("it's"));
        assert_eq!(contains_filter("startswith(name,'p')"), None);
        assert_eq!(contains_filter("contains(description,'p')"), None);
    }
}
