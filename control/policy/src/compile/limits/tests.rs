use std::sync::Arc;

use portcullis_contract::program::{Const, Limit, LimitKind, Op, Program, ScopeKind, Section};

use super::super::*;
use crate::named_values::NamedValues;
use crate::scope::{self, Document, Fragments};

/// Compiles `inbound` (the inbound section's statements) and `outbound`; the programs of the
/// four sections and the report.
fn compile_sections(inbound: &str, outbound: &str) -> (Vec<Option<Program>>, Report) {
    let text = format!("<policies><inbound>{inbound}</inbound><outbound>{outbound}</outbound></policies>");
    let document = Document::parse(Arc::new(SourceFile::new("api/policy.xml", &text)), ScopeKind::Api).unwrap();
    let backends = std::collections::BTreeSet::new();
    let (values, fragments) = (NamedValues::default(), Fragments::default());
    let env = Environment {
        named_values: &values,
        fragments: &fragments,
        backends: &backends,
        certificates: &Default::default(),
        responses: &[],
        options: Options::default(),
    };
    let mut report = Report::default();
    let programs = Section::ALL
        .into_iter()
        .map(|section| compile_section(&scope::merge(&[&document], section).unwrap(), section, env, &mut report))
        .collect();
    (programs, report)
}

fn inbound(statement: &str) -> Program {
    let (programs, report) = compile_sections(statement, "");
    assert!(report.errors.is_empty(), "{:?}", report.errors.iter().map(ToString::to_string).collect::<Vec<_>>());
    programs.into_iter().next().flatten().expect("inbound program")
}

fn only_limit(statement: &str) -> (Program, Limit) {
    let program = inbound(statement);
    assert_eq!(program.limits.len(), 1);
    let limit = program.limits[0].clone();
    (program, limit)
}

fn error_of(statement: &str) -> String {
    let (_, report) = compile_sections(statement, "");
    report.errors.first().map(ToString::to_string).unwrap_or_else(|| "no error".into())
}

fn name(program: &Program, index: Option<u32>) -> Option<&str> {
    match program.consts.get(index? as usize) {
        Some(Const::Str(text)) => Some(text),
        _ => None,
    }
}

#[test]
fn rate_limit_by_key_takes_every_attribute() {
    let (program, limit) = only_limit(
        r#"<rate-limit-by-key calls="10" renewal-period="60" counter-key="@(context.Request.IpAddress)" increment-condition="@(context.Request.Method == &quot;GET&quot;)" increment-count="2" retry-after-header-name="X-Retry" retry-after-variable-name="retry" remaining-calls-header-name="X-Remaining" remaining-calls-variable-name="remaining" total-calls-header-name="X-Total" />"#,
    );
    assert_eq!(
        (limit.kind, limit.by_key, limit.calls, limit.period_seconds),
        (LimitKind::RateLimit, true, Some(10), 60)
    );
    assert!(!limit.count_after_response);
    assert_eq!(name(&program, limit.retry_after_header), Some("X-Retry"));
    assert_eq!(name(&program, limit.retry_after_variable), Some("retry"));
    assert_eq!(name(&program, limit.remaining_calls_header), Some("X-Remaining"));
    assert_eq!(name(&program, limit.remaining_calls_variable), Some("remaining"));
    assert_eq!(name(&program, limit.total_calls_header), Some("X-Total"));
    let at = program.ops.iter().position(|op| matches!(op, Op::Limit { .. })).expect("limit op");
    // No deferred condition: the op resumes at the next op.
    assert_eq!(program.ops[at], Op::Limit { limit: 0, resume: at as u32 + 1 });
    assert!(!program.ops.iter().any(|op| matches!(op, Op::LimitCommit { .. })));
}

#[test]
fn the_defaults_are_apims() {
    let (program, limit) = only_limit(r#"<rate-limit calls="5" renewal-period="300" />"#);
    assert_eq!(name(&program, limit.retry_after_header), Some("Retry-After"));
    assert_eq!((limit.by_key, limit.remaining_calls_header, limit.total_calls_header), (false, None, None));
    let (_, quota) = only_limit(r#"<quota-by-key calls="5" renewal-period="0" counter-key="k" />"#);
    // 0001-01-01T00:00:00Z.
    assert_eq!(quota.first_period_start, -62_135_596_800);
    assert_eq!(quota.period_seconds, 0);
}

#[test]
fn computed_calls_and_period_are_operands() {
    let (program, limit) = only_limit(
        r#"<rate-limit-by-key calls="@(5 + 5)" renewal-period="@(30)" counter-key="@(context.Subscription.Id)" increment-count="@(1)" />"#,
    );
    assert_eq!(limit.calls, None);
    assert!(program.ops.iter().any(|op| matches!(op, Op::Limit { .. })));
}

#[test]
fn a_condition_that_reads_the_response_is_deferred_after_the_limit() {
    let (program, limit) = only_limit(
        r#"<rate-limit-by-key calls="3" renewal-period="10" counter-key="k" increment-condition="@(context.Response.StatusCode == 200)" />"#,
    );
    assert!(limit.count_after_response);
    let at = program.ops.iter().position(|op| matches!(op, Op::Limit { .. })).expect("limit op");
    let Op::Limit { resume, .. } = program.ops[at] else { unreachable!() };
    assert_eq!(program.ops[resume as usize - 1], Op::LimitCommit { limit: 0 });
    assert!(resume as usize > at + 2, "the condition's code sits between the two");
    let (program, limit) = only_limit(
        r#"<rate-limit-by-key calls="3" renewal-period="10" counter-key="k" increment-after-response="true" />"#,
    );
    assert!(limit.count_after_response);
    assert!(program.ops.contains(&Op::LimitCommit { limit: 0 }));
}

#[test]
fn quotas_take_calls_bandwidth_and_a_first_period_start() {
    let (program, limit) = only_limit(
        r#"<quota-by-key calls="100" bandwidth="2048" renewal-period="3600" counter-key="@(context.Request.IpAddress)" increment-condition="@(true)" increment-count="3" first-period-start="2024-02-29T12:30:00Z" remaining-calls-header-name="X-Calls" remaining-calls-variable-name="calls" remaining-bandwidth-header-name="X-Kb" remaining-bandwidth-variable-name="kb" />"#,
    );
    assert_eq!(
        (limit.kind, limit.calls, limit.bandwidth_kb, limit.period_seconds),
        (LimitKind::Quota, Some(100), Some(2048), 3600)
    );
    assert_eq!(limit.first_period_start, 1_709_209_800);
    assert_eq!(name(&program, limit.remaining_bandwidth_header), Some("X-Kb"));
    assert_eq!(name(&program, limit.remaining_bandwidth_variable), Some("kb"));
    let (_, bandwidth_only) = only_limit(r#"<quota bandwidth="10" renewal-period="60" />"#);
    assert_eq!((bandwidth_only.calls, bandwidth_only.bandwidth_kb), (None, Some(10)));
}

#[test]
fn api_and_operation_children_add_their_own_limits() {
    let (_, limit) = only_limit(
        r#"<rate-limit calls="20" renewal-period="90"><api name="echo" calls="10" renewal-period="60"><operation id="get" calls="5" renewal-period="30" /></api><api id="other" calls="1" renewal-period="1" /></rate-limit>"#,
    );
    let scopes: Vec<_> =
        limit.scopes.iter().map(|s| (s.api.as_str(), s.operation.as_deref(), s.calls, s.period_seconds)).collect();
    assert_eq!(scopes, [("echo", None, Some(10), 60), ("echo", Some("get"), Some(5), 30), ("other", None, Some(1), 1)]);
    let (_, quota) = only_limit(
        r#"<quota calls="20" renewal-period="90"><api name="a" id="b" bandwidth="5" renewal-period="0" /></quota>"#,
    );
    assert_eq!((quota.scopes[0].api.as_str(), quota.scopes[0].bandwidth_kb), ("b", Some(5)));
}

#[test]
fn every_mistake_is_an_error_at_its_position() {
    // (statement, message, where the error points: the first occurrence of this text).
    let cases = [
        (r#"<rate-limit renewal-period="60" />"#, "<rate-limit> needs calls", "rate-limit"),
        (r#"<rate-limit calls="5" />"#, "needs renewal-period", "rate-limit"),
        (r#"<rate-limit calls="5" renewal-period="301" />"#, "1 to 300 seconds", "301"),
        (r#"<rate-limit-by-key calls="5" renewal-period="0" counter-key="k" />"#, "1 to 300 seconds", "0\""),
        (r#"<rate-limit calls="@(5)" renewal-period="60" />"#, "does not accept policy expressions", "@(5)"),
        (r#"<rate-limit-by-key calls="5" renewal-period="60" />"#, "needs counter-key", "rate-limit-by-key"),
        (r#"<quota renewal-period="60" />"#, "needs calls=\"...\", bandwidth", "quota"),
        (r#"<quota calls="@(5)" renewal-period="60" />"#, "does not accept policy expressions", "@(5)"),
        (r#"<quota bandwidth="@(5)" renewal-period="60" />"#, "does not accept policy expressions", "@(5)"),
        (r#"<quota calls="5" renewal-period="@(60)" />"#, "does not accept policy expressions", "@(60)"),
        (r#"<quota-by-key calls="5" renewal-period="60" counter-key="k" />"#, "at least 300 seconds", "60"),
        (
            r#"<quota-by-key calls="5" renewal-period="0" counter-key="k" first-period-start="2024-13-01T00:00:00Z" />"#,
            "yyyy-MM-ddTHH:mm:ssZ",
            "2024",
        ),
        (
            r#"<rate-limit-by-key calls="5" renewal-period="60" counter-key="k" increment-count="-1" />"#,
            "not a count",
            "-1",
        ),
        (
            r#"<rate-limit calls="5" renewal-period="60" retry-after-header-name="bad name" />"#,
            "not a valid HTTP header name",
            "bad name",
        ),
        (
            r#"<rate-limit calls="5" renewal-period="60" counter-key="k" />"#,
            "no attribute \"counter-key\"",
            "counter-key",
        ),
        (
            r#"<quota calls="5" renewal-period="60" total-calls-header-name="X" />"#,
            "no attribute \"total-calls-header-name\"",
            "total-calls",
        ),
        (
            r#"<rate-limit calls="5" renewal-period="60"><operation name="x" calls="1" renewal-period="1" /></rate-limit>"#,
            "holds <api> elements",
            "operation",
        ),
        (
            r#"<rate-limit calls="5" renewal-period="60"><api calls="1" renewal-period="1" /></rate-limit>"#,
            "needs name=\"...\" or id",
            "api",
        ),
        (
            r#"<rate-limit calls="5" renewal-period="60"><api name="a" calls="1" renewal-period="900" /></rate-limit>"#,
            "1 to 300 seconds",
            "900",
        ),
        (
            r#"<rate-limit-by-key calls="5" renewal-period="60" counter-key="k"><api name="a" /></rate-limit-by-key>"#,
            "cannot contain <api>",
            "api ",
        ),
    ];
    for (statement, message, needle) in cases {
        let error = error_of(statement);
        // The statement starts at column 20 of line 1 (after `<policies><inbound>`).
        let column = 20 + statement.find(needle).expect("needle in the statement");
        assert!(error.contains(message), "{statement}: {error}");
        assert!(error.contains(&format!("api/policy.xml:1:{column}\n")), "{statement}: {error}");
    }
}

#[test]
fn limits_stand_only_in_inbound() {
    for policy in [
        r#"<rate-limit calls="5" renewal-period="60" />"#,
        r#"<rate-limit-by-key calls="5" renewal-period="60" counter-key="k" />"#,
        r#"<quota calls="5" renewal-period="60" />"#,
        r#"<quota-by-key calls="5" renewal-period="300" counter-key="k" />"#,
    ] {
        let (_, report) = compile_sections("", policy);
        let error = report.errors.first().map(ToString::to_string).unwrap_or_default();
        assert!(error.contains("is not allowed in the outbound section (allowed in: inbound)"), "{error}");
        assert!(error.contains("api/policy.xml:1:41"), "{error}");
    }
}

#[test]
fn dates_parse_as_utc_seconds() {
    assert_eq!(super::parse_utc("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(super::parse_utc("0001-01-01T00:00:00Z"), Some(-62_135_596_800));
    assert_eq!(super::parse_utc("2000-02-29T23:59:59Z"), Some(951_868_799));
    for bad in [
        "2001-02-29T00:00:00Z",
        "2024-01-01 00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:00:00",
        "+024-01-01T00:00:00Z",
    ] {
        assert_eq!(super::parse_utc(bad), None, "{bad}");
    }
}
