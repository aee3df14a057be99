use std::sync::Arc;

use portcullis_contract::program::{Op, Program, ScopeKind, Section};

use super::super::*;
use crate::named_values::NamedValues;
use crate::scope::{self, Document, Fragments};

fn compile_inbound(inbound: &str) -> (Option<Program>, Report) {
    let text = format!("<policies><inbound>{inbound}</inbound></policies>");
    let document = Document::parse(Arc::new(SourceFile::new("api/policy.xml", &text)), ScopeKind::Api).unwrap();
    let backends: std::collections::BTreeSet<String> = ["content-safety".to_owned()].into();
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
    let merged = scope::merge(&[&document], Section::Inbound).unwrap();
    (compile_section(&merged, Section::Inbound, env, &mut report), report)
}

fn error_of(inbound: &str) -> String {
    compile_inbound(inbound).1.errors.first().map(ToString::to_string).unwrap_or_else(|| "no error".into())
}

#[test]
fn the_rule_and_its_calls() {
    let (program, report) = compile_inbound(
        r#"<llm-content-safety backend-id="content-safety" shield-prompt="true"><categories output-type="EightSeverityLevels"><category name="Hate" threshold="4" /><category name="selfharm" threshold="7" /></categories><blocklists><id>list1</id></blocklists></llm-content-safety>"#,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors.iter().map(ToString::to_string).collect::<Vec<_>>());
    let program = program.expect("inbound program");
    let rule = &program.content_safety[0];
    assert_eq!(rule.backend_id, "content-safety");
    assert!(rule.shield_prompt && rule.eight_levels);
    assert_eq!(rule.categories, [("Hate".to_owned(), 4), ("SelfHarm".to_owned(), 7)]);
    assert_eq!(rule.blocklists, ["list1"]);
    let calls: Vec<bool> = program
        .ops
        .iter()
        .filter_map(|op| if let Op::ContentSafetyCall { shield, .. } = op { Some(*shield) } else { None })
        .collect();
    assert_eq!(calls, [false, true]);
    assert_eq!(program.ops.iter().filter(|op| matches!(op, Op::ContentSafetyVerdict { .. })).count(), 2);
    // Without shield-prompt: one call.
    let (program, _) = compile_inbound(r#"<llm-content-safety backend-id="content-safety" />"#);
    assert_eq!(program.expect("program").ops.iter().filter(|op| matches!(op, Op::SendRequest { .. })).count(), 1);
}

#[test]
fn refusals_name_the_construct_and_its_position() {
    let cases = [
        (r#"<llm-content-safety shield-prompt="true" />"#, "backend-id", "llm-"),
        (r#"<llm-content-safety backend-id="nope" />"#, "unknown backend \"nope\"", "nope"),
        (
            r#"<llm-content-safety backend-id="content-safety"><categories><category name="Rudeness" threshold="2" /></categories></llm-content-safety>"#,
            "expected one of Hate, SelfHarm, Sexual, Violence",
            "Rudeness",
        ),
        (
            r#"<llm-content-safety backend-id="content-safety"><categories><category name="Hate" threshold="7" /></categories></llm-content-safety>"#,
            "threshold is a severity from 0 to 6",
            "7\"",
        ),
        (
            r#"<llm-content-safety backend-id="content-safety"><categories output-type="Two" /></llm-content-safety>"#,
            "expected FourSeverityLevels or EightSeverityLevels",
            "Two",
        ),
        (
            r#"<llm-content-safety backend-id="content-safety"><filters /></llm-content-safety>"#,
            "not <filters>",
            "filters",
        ),
    ];
    for (statement, message, needle) in cases {
        let error = error_of(statement);
        let column = 20 + statement.find(needle).expect("needle in the statement");
        assert!(error.contains(message), "{statement}: {error}");
        assert!(error.contains(&format!("api/policy.xml:1:{column}\n")), "{statement}: {error}");
    }
}
