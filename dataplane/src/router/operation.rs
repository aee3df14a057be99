//! Operation matching: (method, path below the API) → the API's operation and its URL-template
//! parameters. Sans-IO; templates are parsed once per snapshot, a match allocates nothing.
//!
//! Precedence follows APIM: among the templates that match, the one with the most literal
//! segments wins, then the one with fewer wildcards, then the first written; an operation for
//! the exact method beats one for any method (`*`).

use portcullis_contract::model::{Api, CATCH_ALL_METHOD};

/// Template parameters one request may bind (`{a}` ... ); templates with more are refused by
/// the parser. Real templates bind one to four.
pub const MATCHED_PARAMS_MAX: usize = 16;
/// Segments of a template; deeper templates are refused (and never match).
pub const TEMPLATE_SEGMENTS_MAX: usize = 32;

/// One segment of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<[u8]>),
    /// `{name}`: one segment.
    Param(Box<str>),
    /// `{*name}` or `*`: the rest of the path (possibly empty).
    Rest(Option<Box<str>>),
}

/// An operation's template, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    method: Box<str>,
    any_method: bool,
    segments: Vec<Segment>,
    literals: usize,
}

/// An API's operations, ready for matching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Operations {
    templates: Vec<Option<Template>>,
}

/// A parameter's name (index into its template) and where its value is in the request target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Binding {
    pub start: u32,
    pub end: u32,
}

/// The operation a request matched and the values of its template parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationMatch {
    /// Index into `Api::operations`.
    pub operation: u32,
    bindings: [Binding; MATCHED_PARAMS_MAX],
    count: u8,
}

impl Template {
    /// Parses `/users/{id}/orders/*` (a query part is ignored); `None` when it cannot match.
    pub fn parse(method: &str, template: &str) -> Option<Self> {
        let path = template.split('?').next().unwrap_or(template);
        let path = path.strip_prefix('/')?;
        let mut segments = Vec::new();
        let mut params = 0;
        if !path.is_empty() {
            for segment in path.split('/') {
                let parsed = if segment == "*" {
                    Segment::Rest(None)
                } else if let Some(name) = segment.strip_prefix("{*").and_then(|s| s.strip_suffix('}')) {
                    params += 1;
                    Segment::Rest(Some(name.into()))
                } else if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    params += 1;
                    Segment::Param(name.into())
                } else {
                    Segment::Literal(segment.as_bytes().into())
                };
                segments.push(parsed);
            }
        }
        let rest_not_last = segments.iter().rev().skip(1).any(|s| matches!(s, Segment::Rest(_)));
        if rest_not_last || params > MATCHED_PARAMS_MAX || segments.len() > TEMPLATE_SEGMENTS_MAX {
            return None;
        }
        let literals = segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
        Some(Self { method: method.into(), any_method: method == CATCH_ALL_METHOD, segments, literals })
    }

    /// Parameter names in binding order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Param(name) | Segment::Rest(Some(name)) => Some(&**name),
            _ => None,
        })
    }

    /// Matches `path` (starting at `offset` in the request target, no query); fills bindings.
    fn matches(&self, path: &[u8], offset: usize, bindings: &mut [Binding; MATCHED_PARAMS_MAX]) -> Option<u8> {
        let mut rest = path.strip_prefix(b"/").unwrap_or(path);
        let mut at = offset + (path.len() - rest.len());
        let mut count = 0usize;
        for (index, segment) in self.segments.iter().enumerate() {
            if let Segment::Rest(name) = segment {
                if name.is_some() {
                    *bindings.get_mut(count)? = Binding { start: at as u32, end: (at + rest.len()) as u32 };
                    count += 1;
                }
                return Some(count as u8);
            }
            let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
            let (value, after) = rest.split_at(end);
            match segment {
                Segment::Literal(literal) if literal.eq_ignore_ascii_case(value) => {}
                Segment::Param(_) if !value.is_empty() => {
                    *bindings.get_mut(count)? = Binding { start: at as u32, end: (at + value.len()) as u32 };
                    count += 1;
                }
                _ => return None,
            }
            let last = index + 1 == self.segments.len();
            match after.strip_prefix(b"/") {
                // A trailing slash after the last segment still matches (`/users/` ~ `/users`).
                Some(next) if last && next.is_empty() => return Some(count as u8),
                Some(next) if !last => {
                    at += value.len() + 1;
                    rest = next;
                }
                None if last => return Some(count as u8),
                _ => return None,
            }
        }
        // An empty template (`/`) matches only the API root.
        rest.is_empty().then_some(count as u8)
    }
}

impl Operations {
    pub fn new(api: &Api) -> Self {
        let templates = api
            .operations
            .iter()
            .map(|operation| {
                let template = Template::parse(&operation.method, &operation.url_template);
                if template.is_none() {
                    tracing::warn!(api = %api.id, operation = %operation.id, template = %operation.url_template,
                        "operation template cannot be matched; requests will not reach it");
                }
                template
            })
            .collect();
        Self { templates }
    }

    pub fn template(&self, operation: u32) -> Option<&Template> {
        self.templates.get(operation as usize)?.as_ref()
    }

    /// The best operation for `method` and `path` (which starts at `offset` in the target).
    pub fn find(&self, method: &[u8], path: &[u8], offset: usize) -> Option<OperationMatch> {
        let mut best: Option<(OperationMatch, (bool, usize, bool))> = None;
        let mut bindings = [Binding::default(); MATCHED_PARAMS_MAX];
        for (index, template) in self.templates.iter().enumerate() {
            let Some(template) = template else { continue };
            if !template.any_method && template.method.as_bytes() != method {
                continue;
            }
            let Some(count) = template.matches(path, offset, &mut bindings) else { continue };
            let has_rest = matches!(template.segments.last(), Some(Segment::Rest(_)));
            let rank = (!template.any_method, template.literals, !has_rest);
            if best.as_ref().is_none_or(|(_, best_rank)| rank > *best_rank) {
                best = Some((OperationMatch { operation: index as u32, bindings, count }, rank));
            }
        }
        best.map(|(found, _)| found)
    }
}

impl OperationMatch {
    /// Where each bound parameter's value is in the request target, in template order.
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings[..usize::from(self.count)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_contract::model::{Operation, Policies};

    fn api(operations: &[(&str, &str)]) -> Api {
        Api {
            id: "a".into(),
            name: "a".into(),
            path: "a".into(),
            backend_id: None,
            backend: portcullis_contract::model::BackendUrl {
                scheme: portcullis_contract::model::Scheme::Http,
                host: "h".into(),
                port: 80,
                base_path: String::new(),
                authority: "h".into(),
            },
            subscription_required: false,
            subscription_key_header: String::new(),
            subscription_key_query: String::new(),
            preserve_host: false,
            version_set: None,
            version: String::new(),
            revision: "1".into(),
            revision_of: None,
            online: true,
            description: String::new(),
            revision_description: String::new(),
            operations: operations
                .iter()
                .enumerate()
                .map(|(i, (method, template))| Operation {
                    id: format!("op{i}"),
                    name: String::new(),
                    method: (*method).into(),
                    url_template: (*template).into(),
                    policies: Policies::all(0),
                })
                .collect(),
        }
    }

    fn find(ops: &Operations, method: &str, target: &str) -> Option<(u32, Vec<String>)> {
        let path = target.split('?').next().unwrap();
        let found = ops.find(method.as_bytes(), path.as_bytes(), 0)?;
        let values = found.bindings().iter().map(|b| target[b.start as usize..b.end as usize].to_owned()).collect();
        Some((found.operation, values))
    }

    #[test]
    fn literal_segments_beat_parameters_and_methods_must_match() {
        let ops =
            Operations::new(&api(&[("GET", "/users/{id}"), ("GET", "/users/me"), ("POST", "/users"), ("*", "/*")]));
        assert_eq!(find(&ops, "GET", "/users/42"), Some((0, vec!["42".into()])));
        assert_eq!(find(&ops, "GET", "/users/me"), Some((1, vec![])));
        assert_eq!(find(&ops, "POST", "/users"), Some((2, vec![])));
        assert_eq!(find(&ops, "POST", "/users/"), Some((2, vec![])));
        assert_eq!(find(&ops, "DELETE", "/users/42"), Some((3, vec![])));
        assert_eq!(find(&ops, "GET", "/other/x/y"), Some((3, vec![])));
    }

    #[test]
    fn no_match_without_a_catch_all() {
        let ops = Operations::new(&api(&[("GET", "/users/{id}")]));
        assert_eq!(find(&ops, "GET", "/users"), None);
        assert_eq!(find(&ops, "GET", "/users/1/2"), None);
        assert_eq!(find(&ops, "PUT", "/users/1"), None);
        assert_eq!(find(&ops, "GET", "/users//"), None);
    }

    #[test]
    fn several_parameters_and_rest_parameters() {
        let ops = Operations::new(&api(&[("GET", "/a/{x}/b/{y}"), ("GET", "/files/{*path}"), ("GET", "/")]));
        assert_eq!(find(&ops, "GET", "/a/1/b/2?q=1"), Some((0, vec!["1".into(), "2".into()])));
        assert_eq!(find(&ops, "GET", "/files/x/y.txt"), Some((1, vec!["x/y.txt".into()])));
        assert_eq!(find(&ops, "GET", ""), Some((2, vec![])));
        assert_eq!(find(&ops, "GET", "/"), Some((2, vec![])));
        assert_eq!(find(&ops, "GET", "/a/1/c/2"), None);
    }

    #[test]
    fn offsets_point_into_the_whole_target() {
        let ops = Operations::new(&api(&[("GET", "/u/{id}")]));
        let target = b"/api/u/7";
        let found = ops.find(b"GET", &target[4..], 4).unwrap();
        let b = found.bindings()[0];
        assert_eq!(&target[b.start as usize..b.end as usize], b"7");
        assert_eq!(ops.template(0).unwrap().param_names().collect::<Vec<_>>(), ["id"]);
    }

    #[test]
    fn bad_templates_never_match() {
        assert!(Template::parse("GET", "users").is_none());
        assert!(Template::parse("GET", "/*/x").is_none());
    }
}
