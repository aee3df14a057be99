use std::sync::Arc;

use portcullis_contract::program::{Const, Op, Program, ScopeKind, Section, TokenQuotaPeriod};

use super::super::*;
use crate::named_values::NamedValues;
use crate::scope::{self, Document, Fragments};

/// Compiles `inbound` (the inbound section's statements) and `outbound`: the programs of the
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

fn error_of(inbound: &str, outbound: &str) -> String {
    let (_, report) = compile_sections(inbound, outbound);
    report.errors.first().map(ToString::to_string).unwrap_or_else(|| "no error".into())
}

fn name(program: &Program, index: Option<u32>) -> Option<&str> {
    match program.consts.get(index? as usize) {
        Some(Const::Str(text)) => Some(text),
        _ => None,
    }
}

#[test]
fn both_names_take_every_attribute() {
    for policy in ["llm-token-limit", "azure-openai-token-limit"] {
        let program = inbound(&format!(
            r#"<{policy} counter-key="@(context.Subscription.Id)" tokens-per-minute="5000" token-quota="100000" token-quota-period="Monthly" estimate-prompt-tokens="true" retry-after-header-name="x-retry" retry-after-variable-name="retry" remaining-tokens-header-name="x-remaining" remaining-tokens-variable-name="remaining" remaining-quota-tokens-header-name="x-quota" remaining-quota-tokens-variable-name="quota" tokens-consumed-header-name="x-consumed" tokens-consumed-variable-name="consumed" />"#
        ));
        assert_eq!(program.token_limits.len(), 1);
        let limit = &program.token_limits[0];
        assert_eq!(limit.tokens_per_minute, Some(5000));
        assert_eq!(limit.quota, Some((100_000, TokenQuotaPeriod::Monthly)));
        assert!(limit.estimate_prompt_tokens);
        assert_eq!(name(&program, limit.retry_after_header), Some("x-retry"));
        assert_eq!(name(&program, limit.retry_after_variable), Some("retry"));
        assert_eq!(name(&program, limit.remaining_tokens_header), Some("x-remaining"));
        assert_eq!(name(&program, limit.remaining_tokens_variable), Some("remaining"));
        assert_eq!(name(&program, limit.remaining_quota_tokens_header), Some("x-quota"));
        assert_eq!(name(&program, limit.remaining_quota_tokens_variable), Some("quota"));
        assert_eq!(name(&program, limit.tokens_consumed_header), Some("x-consumed"));
        assert_eq!(name(&program, limit.tokens_consumed_variable), Some("consumed"));
        assert!(program.ops.iter().any(|op| matches!(op, Op::TokenLimit { limit: 0 })), "{:?}", program.ops);
    }
}

#[test]
fn defaults_are_apims() {
    let program =
        inbound(r#"<llm-token-limit counter-key="k" tokens-per-minute="10" estimate-prompt-tokens="false" />"#);
    let limit = &program.token_limits[0];
    assert_eq!(name(&program, limit.retry_after_header), Some("Retry-After"));
    assert_eq!(limit.quota, None);
    assert!(!limit.estimate_prompt_tokens);
    assert_eq!(limit.tokens_consumed_header, None);
    // A quota alone, periods without regard to case.
    let program = inbound(
        r#"<llm-token-limit counter-key="k" token-quota="10" token-quota-period="weekly" estimate-prompt-tokens="false" />"#,
    );
    assert_eq!(program.token_limits[0].quota, Some((10, TokenQuotaPeriod::Weekly)));
    assert_eq!(program.token_limits[0].tokens_per_minute, None);
}

#[test]
fn refusals_name_the_attribute_and_its_position() {
    let cases = [
        (r#"<llm-token-limit tokens-per-minute="10" estimate-prompt-tokens="false" />"#, "needs counter-key", "llm-"),
        (
            r#"<llm-token-limit counter-key="k" tokens-per-minute="ten" estimate-prompt-tokens="false" />"#,
            "tokens-per-minute",
            "ten",
        ),
        (
            r#"<llm-token-limit counter-key="k" token-quota="5" token-quota-period="Fortnightly" estimate-prompt-tokens="false" />"#,
            "is not one of Hourly, Daily, Weekly, Monthly, Yearly",
            "Fortnightly",
        ),
        (
            r#"<llm-token-limit counter-key="k" token-quota="5" estimate-prompt-tokens="false" />"#,
            "needs token-quota-period",
            "llm-",
        ),
        (r#"<llm-token-limit counter-key="k" estimate-prompt-tokens="false" />"#, "needs tokens-per-minute", "llm-"),
        (r#"<llm-token-limit counter-key="k" tokens-per-minute="10" />"#, "needs estimate-prompt-tokens", "llm-"),
        (
            r#"<llm-token-limit counter-key="k" tokens-per-minute="10" estimate-prompt-tokens="false" remaining-tokens-header-name="a b" />"#,
            "remaining-tokens-header-name",
            "a b",
        ),
        (
            r#"<llm-token-limit counter-key="k" tokens-per-minute="@(10)" estimate-prompt-tokens="false" />"#,
            "does not accept policy expressions",
            "@(10)",
        ),
        (
            r#"<azure-openai-token-limit counter-key="k" tokens-per-minute="10" estimate-prompt-tokens="false" tokens="1" />"#,
            "tokens",
            "tokens=\"1",
        ),
    ];
    for (statement, message, needle) in cases {
        let error = error_of(statement, "");
        // The statement starts at column 20 of line 1 (after `<policies><inbound>`).
        let column = 20 + statement.find(needle).expect("needle in the statement");
        assert!(error.contains(message), "{statement}: {error}");
        assert!(error.contains(&format!("api/policy.xml:1:{column}\n")), "{statement}: {error}");
    }
}

#[test]
fn only_inbound() {
    let error =
        error_of("", r#"<llm-token-limit counter-key="k" tokens-per-minute="10" estimate-prompt-tokens="false" />"#);
    assert!(error.contains("llm-token-limit") && error.contains("inbound"), "{error}");
}
