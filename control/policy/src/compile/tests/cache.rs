//! The caching policies' compiler: attributes, defaults and errors with their positions.

use portcullis_contract::program::{CachingType, Const, Op};

use super::{compile, first_error, inbound_const};

fn ops_of(text: &str, section: usize) -> Vec<Op> {
    let compiled = compile(text);
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    compiled.programs[section].as_ref().expect("the section compiled").ops.clone()
}

#[test]
fn cache_lookup_compiles_its_settings_and_vary_by_lists() {
    let text = r#"<policies><inbound><cache-lookup vary-by-developer="false" vary-by-developer-groups="false" downstream-caching-type="public" must-revalidate="false" caching-type="internal">
  <vary-by-header>Accept</vary-by-header>
  <vary-by-query-parameter>version;lang</vary-by-query-parameter>
</cache-lookup></inbound></policies>"#;
    let compiled = compile(text);
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let inbound = compiled.programs[0].as_ref().expect("inbound");
    let lookup = inbound.ops.iter().find_map(|op| match *op {
        Op::CacheLookup { caching, headers_first, headers, queries_first, queries } => {
            Some((caching, headers_first, headers, queries_first, queries))
        }
        _ => None,
    });
    let (caching, headers_first, headers, queries_first, queries) = lookup.expect("a CacheLookup op");
    assert_eq!((caching, headers, queries), (CachingType::Internal, 1, 2));
    let text_at = |index: u32| match &inbound.consts[index as usize] {
        Const::Str(text) => text.clone(),
        other => panic!("not a string: {other:?}"),
    };
    assert_eq!(text_at(headers_first), "accept", "header names compare in lower case");
    assert_eq!((text_at(queries_first), text_at(queries_first + 1)), ("version".into(), "lang".into()));
    // The evaluated attributes come first on the stack, in the op's pop order.
    let public = inbound_const(inbound, "public");
    let tail: Vec<Op> = inbound.ops.iter().rev().skip(1).take(5).rev().copied().collect();
    assert_eq!(tail, [Op::Bool(false), Op::Bool(false), Op::Const(public), Op::Bool(false), Op::Bool(false)]);
}

#[test]
fn cache_lookup_defaults_are_apims() {
    let ops = ops_of(
        r#"<policies><inbound><cache-lookup vary-by-developer="true" vary-by-developer-groups="false" /></inbound></policies>"#,
        0,
    );
    assert!(ops.iter().any(|op| matches!(op, Op::CacheLookup { caching: CachingType::PreferExternal, .. })));
    // must-revalidate defaults to true, allow-private-response-caching to false.
    let tail: Vec<Op> = ops.iter().rev().skip(1).take(2).rev().copied().collect();
    assert_eq!(tail, [Op::Bool(true), Op::Bool(false)]);
}

#[test]
fn cache_lookup_errors_point_at_what_is_wrong() {
    let error = first_error("<policies><inbound>\n  <cache-lookup vary-by-developer=\"false\" /></inbound></policies>");
    assert!(error.contains("needs vary-by-developer-groups"), "{error}");
    assert!(error.contains("api/policy.xml:2:4"), "{error}");
    let error = first_error(
        "<policies><inbound><cache-lookup vary-by-developer=\"false\" vary-by-developer-groups=\"false\" caching-type=\"disk\" /></inbound></policies>",
    );
    assert!(error.contains("caching-type \"disk\": expected internal, external or prefer-external"), "{error}");
    assert!(error.contains("api/policy.xml:1:"), "{error}");
    let error = first_error(
        "<policies><inbound><cache-lookup vary-by-developer=\"false\" vary-by-developer-groups=\"false\" caching-type=\"@(&quot;internal&quot;)\" /></inbound></policies>",
    );
    assert!(error.contains("does not accept policy expressions"), "{error}");
    let error = first_error(
        "<policies><inbound><cache-lookup vary-by-developer=\"false\" vary-by-developer-groups=\"false\" downstream-caching-type=\"shared\" /></inbound></policies>",
    );
    assert!(error.contains("downstream-caching-type \"shared\""), "{error}");
    let error = first_error(
        "<policies><inbound><cache-lookup vary-by-developer=\"false\" vary-by-developer-groups=\"false\"><vary-by-cookie>a</vary-by-cookie></cache-lookup></inbound></policies>",
    );
    assert!(error.contains("not <vary-by-cookie>"), "{error}");
    let error = first_error(
        "<policies><outbound><cache-lookup vary-by-developer=\"false\" vary-by-developer-groups=\"false\" /></outbound></policies>",
    );
    assert!(error.contains("not allowed in the outbound section"), "{error}");
}

#[test]
fn cache_store_takes_a_duration_and_an_optional_cache_response() {
    let ops = ops_of(r#"<policies><outbound><cache-store duration="3600" /></outbound></policies>"#, 2);
    assert!(ops.ends_with(&[Op::Null, Op::CacheStore]), "{ops:?}");
    let ops = ops_of(
        r#"<policies><outbound><cache-store duration="@(60 * 2)" cache-response="true" /></outbound></policies>"#,
        2,
    );
    assert!(ops.ends_with(&[Op::Bool(true), Op::CacheStore]), "{ops:?}");
    let error = first_error("<policies><outbound>\n<cache-store /></outbound></policies>");
    assert!(error.contains("<cache-store> needs duration=\"...\""), "{error}");
    assert!(error.contains("api/policy.xml:2:2"), "{error}");
    let error = first_error("<policies><inbound><cache-store duration=\"1\" /></inbound></policies>");
    assert!(error.contains("not allowed in the inbound section"), "{error}");
    let error = first_error("<policies><outbound><cache-store duration=\"soon\" /></outbound></policies>");
    assert!(error.contains("soon"), "{error}");
}

#[test]
fn cache_lookup_and_cache_store_stand_once_per_section() {
    let error = first_error(
        "<policies><outbound><cache-store duration=\"1\" />\n<cache-store duration=\"2\" /></outbound></policies>",
    );
    assert!(error.contains("<cache-store> can be used only once in a section"), "{error}");
    assert!(error.contains("api/policy.xml:2:2"), "{error}");
    let lookup = "<cache-lookup vary-by-developer=\"false\" vary-by-developer-groups=\"false\" />";
    let error = first_error(&format!(
        "<policies><inbound>{lookup}<choose><when condition=\"@(true)\">{lookup}</when></choose></inbound></policies>"
    ));
    assert!(error.contains("<cache-lookup> can be used only once in a section"), "{error}");
}

#[test]
fn value_policies_compile_in_every_section() {
    let text = r#"<policies>
  <inbound><cache-lookup-value key="@(&quot;p-&quot; + context.Request.IpAddress)" variable-name="profile" default-value="none" caching-type="external" /></inbound>
  <backend><cache-remove-value key="k" /><forward-request /></backend>
  <outbound><cache-store-value key="k" value="@(context.Response.StatusCode)" duration="60" caching-type="internal" /></outbound>
  <on-error><cache-lookup-value key="k" variable-name="v" /></on-error>
</policies>"#;
    let compiled = compile(text);
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let program = |index: usize| compiled.programs[index].as_ref().expect("section");
    let profile = inbound_const(program(0), "profile");
    assert!(program(0).ops.contains(&Op::CacheLookupValue {
        caching: CachingType::External,
        variable: profile,
        has_default: true
    }));
    assert!(program(1).ops.contains(&Op::CacheRemoveValue { caching: CachingType::PreferExternal }));
    assert!(program(2).ops.contains(&Op::CacheStoreValue { caching: CachingType::Internal }));
    assert!(program(3).ops.iter().any(|op| matches!(op, Op::CacheLookupValue { has_default: false, .. })));
}

#[test]
fn value_policies_need_their_attributes() {
    let error = first_error("<policies><inbound>\n <cache-lookup-value key=\"k\" /></inbound></policies>");
    assert!(error.contains("<cache-lookup-value> needs variable-name"), "{error}");
    assert!(error.contains("api/policy.xml:2:3"), "{error}");
    let error = first_error("<policies><inbound><cache-store-value key=\"k\" value=\"v\" /></inbound></policies>");
    assert!(error.contains("<cache-store-value> needs duration"), "{error}");
    let error = first_error("<policies><inbound><cache-remove-value /></inbound></policies>");
    assert!(error.contains("<cache-remove-value> needs key"), "{error}");
    let error = first_error(
        "<policies><inbound><cache-store-value key=\"k\" value=\"v\" duration=\"1\" ttl=\"2\" /></inbound></policies>",
    );
    assert!(error.contains("no attribute \"ttl\""), "{error}");
}
