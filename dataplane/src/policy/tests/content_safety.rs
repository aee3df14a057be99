//! The content safety ops: the call they build, the skip without a prompt, the verdicts.

use std::rc::Rc;

use portcullis_contract::program::ContentSafety;

use super::*;
use crate::policy::{CallFailure, SentResponse};

fn screening() -> Program {
    let rule = ContentSafety {
        backend_id: "safety".into(),
        shield_prompt: false,
        eight_levels: false,
        categories: vec![("Hate".into(), 2)],
        blocklists: Vec::new(),
    };
    let ops = vec![
        Op::ContentSafetyCall { rule: 0, shield: false, skip: 4 },
        Op::Int(1000),
        Op::SendRequest { variable: Some(0), ignore_error: true, one_way: false, deferred: false },
        Op::ContentSafetyVerdict { rule: 0, shield: false, variable: 0 },
    ];
    Program { content_safety: vec![rule], ..program(ops, vec![s("\0llm-content-safety")]) }
}

fn answered(fixture: &Fixture, state: &mut RequestState, status: u16, body: &str) -> Exit {
    let Exit::Send(call) = fixture.run(state) else { panic!("must suspend for the call") };
    assert_eq!(call.request.backend.as_deref(), Some("safety"));
    assert_eq!(
        (call.request.method.as_str(), call.request.url.as_str()),
        ("POST", crate::llm::content_safety::ANALYZE_PATH)
    );
    let sent: serde_json::Value =
        serde_json::from_slice(call.request.body.as_deref().unwrap_or_default()).unwrap_or_default();
    assert_eq!(sent["text"], "Hi there");
    let response = SentResponse { status, reason: String::new(), headers: Vec::new(), body: Rc::from(body.as_bytes()) };
    state.finish_call(&call, Ok(response), &fixture.programs);
    let matched = [];
    let view = fixture.view(&matched);
    resume(Section::Inbound, fixture.programs.get(0).expect("program"), &view, state)
}

#[test]
fn a_request_without_a_prompt_is_not_screened() {
    let fixture = Fixture::new(GET, vec![screening()]);
    assert_eq!(fixture.run(&mut RequestState::new()), Exit::Continue);
}

#[test]
fn the_verdict_passes_blocks_or_fails() {
    let mut fixture = Fixture::new(GET, vec![screening()]);
    fixture.body = Some(br#"{"messages":[{"role":"user","content":"Hi there"}]}"#.to_vec());
    let calm = r#"{"blocklistsMatch":[],"categoriesAnalysis":[{"category":"Hate","severity":0}]}"#;
    assert_eq!(answered(&fixture, &mut RequestState::new(), 200, calm), Exit::Continue);
    let hateful = r#"{"categoriesAnalysis":[{"category":"Hate","severity":2}]}"#;
    let Exit::Error(error) = answered(&fixture, &mut RequestState::new(), 200, hateful) else { panic!("blocked") };
    assert_eq!((error.status(), &*error.last_error.reason), (403, "ContentSafetyBlocked"));
    assert_eq!(error.body_message(), "Request failed content safety check.");
    assert!(error.last_error.message.contains("Hate"), "{}", error.last_error.message);
    let Exit::Error(error) = answered(&fixture, &mut RequestState::new(), 401, "{}") else { panic!("no verdict") };
    assert_eq!((error.status(), &*error.last_error.reason), (500, "ContentSafetyUnavailable"));
    // A failed call (ignore-error leaves the variable null) has no verdict either.
    let mut state = RequestState::new();
    let Exit::Send(call) = fixture.run(&mut state) else { panic!("must suspend") };
    state.finish_call(&call, Err(CallFailure::Timeout), &fixture.programs);
    let matched = [];
    let view = fixture.view(&matched);
    let Exit::Error(error) = resume(Section::Inbound, fixture.programs.get(0).expect("program"), &view, &mut state)
    else {
        panic!("no verdict")
    };
    assert_eq!(error.status(), 500);
}
