use super::*;

fn document(scope: ScopeKind, text: &str) -> Document {
    Document::parse(Arc::new(SourceFile::new(format!("{scope:?}.xml"), text)), scope).unwrap()
}

fn names(statements: &[Stmt]) -> Vec<String> {
    statements
        .iter()
        .map(|s| {
            let tag = s.element.attr("name").map_or(String::new(), |a| format!(":{}", a.value));
            format!("{}{tag}@{}", s.element.name, s.scope.as_str())
        })
        .collect()
}

#[test]
fn base_places_the_parent_before_between_or_after() {
    let global = document(ScopeKind::Global, r#"<policies><inbound><set-header name="g"/></inbound></policies>"#);
    let api = document(
        ScopeKind::Api,
        r#"<policies><inbound><set-header name="a1"/><base/><set-header name="a2"/></inbound></policies>"#,
    );
    let operation =
        document(ScopeKind::Operation, r#"<policies><inbound><base/><set-header name="o"/></inbound></policies>"#);
    let merged = merge(&[&global, &api, &operation], Section::Inbound).unwrap();
    assert_eq!(
        names(&merged),
        ["set-header:a1@api", "set-header:g@global", "set-header:a2@api", "set-header:o@operation"]
    );
}

#[test]
fn without_base_the_parent_is_not_applied() {
    let global = document(ScopeKind::Global, r#"<policies><inbound><set-header name="g"/></inbound></policies>"#);
    let api = document(ScopeKind::Api, r#"<policies><inbound><set-header name="a"/></inbound></policies>"#);
    assert_eq!(names(&merge(&[&global, &api], Section::Inbound).unwrap()), ["set-header:a@api"]);
}

#[test]
fn an_absent_section_inherits() {
    let global = document(ScopeKind::Global, r#"<policies><outbound><set-header name="g"/></outbound></policies>"#);
    let api = document(ScopeKind::Api, r#"<policies><inbound><base/></inbound></policies>"#);
    assert_eq!(names(&merge(&[&global, &api], Section::Outbound).unwrap()), ["set-header:g@global"]);
}

#[test]
fn forward_request_is_implicit_at_global_backend_base() {
    let global = document(ScopeKind::Global, "<policies><backend><base/></backend></policies>");
    let api = document(ScopeKind::Api, "<policies><backend><base/></backend></policies>");
    assert_eq!(names(&merge(&[&global, &api], Section::Backend).unwrap()), ["forward-request@global"]);
    // No backend section anywhere: still forwarded.
    let bare = document(ScopeKind::Global, "<policies/>");
    assert_eq!(names(&merge(&[&bare], Section::Backend).unwrap()), ["forward-request@global"]);
    // A backend section without <base/> replaces the call.
    let mock = document(ScopeKind::Api, r#"<policies><backend><set-header name="x"/></backend></policies>"#);
    assert_eq!(names(&merge(&[&global, &mock], Section::Backend).unwrap()), ["set-header:x@api"]);
}

#[test]
fn malformed_documents_are_refused_with_positions() {
    let file = |text: &str| Arc::new(SourceFile::new("p.xml", text));
    let errors = Document::parse(file("<policy/>"), ScopeKind::Api).unwrap_err();
    assert!(errors[0].message.contains("<policies>"));
    let errors = Document::parse(file("<policies><inbound/><inbound/></policies>"), ScopeKind::Api).unwrap_err();
    assert!(errors[0].message.contains("twice"));
    let errors = Document::parse(file("<policies><inbond/></policies>"), ScopeKind::Api).unwrap_err();
    assert!(errors[0].message.contains("not a section"));
    assert_eq!(errors[0].location.unwrap().column, 12);
    let twice =
        Document::parse(file("<policies><inbound><base/><base/></inbound></policies>"), ScopeKind::Api).unwrap();
    assert!(merge(&[&twice], Section::Inbound).unwrap_err()[0].message.contains("twice"));
}

#[test]
fn fragments_hold_statements_only() {
    let file = |text: &str| Arc::new(SourceFile::new("f.xml", text));
    let fragment = Fragment::parse(file(r#"<fragment><set-header name="x"/></fragment>"#)).unwrap();
    assert_eq!(fragment.statements.len(), 1);
    assert!(Fragment::parse(file("<fragment><base/></fragment>")).unwrap_err()[0].message.contains("cannot contain"));
    assert!(
        Fragment::parse(file("<fragment><inbound/></fragment>")).unwrap_err()[0].message.contains("cannot contain")
    );
    assert!(Fragment::parse(file("<policies/>")).unwrap_err()[0].message.contains("<fragment>"));
}
