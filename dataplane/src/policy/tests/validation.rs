//! `validate-content`: size, content type and body checks, APIM's findings and errors.

use portcullis_contract::program::{ContentRule, ContentValidation, Op, Side, ValidateAs, ValidationAction};

use super::*;

fn rule(contents: Vec<ContentRule>) -> ContentValidation {
    ContentValidation {
        side: Side::Request,
        unspecified_content_type: ValidationAction::Prevent,
        max_size_bytes: Some(64),
        size_exceeded: ValidationAction::Prevent,
        errors_variable: Some("errors".into()),
        contents,
    }
}

fn json_rule(action: ValidationAction, schema: Option<&str>) -> ContentRule {
    ContentRule {
        content_type: "application/json".into(),
        validate_as: ValidateAs::Json,
        action,
        schema: schema.map(str::to_owned),
        allow_additional_properties: None,
    }
}

/// Runs the validation on a POST with `content_type` and `body`: the exit and the errors variable.
fn validate(validation: ContentValidation, content_type: &str, body: &str) -> (Exit, String) {
    let mut program = program(vec![Op::ValidateContent(0)], Vec::new());
    program.content_validations = vec![validation];
    let request = format!(
        "POST /echo/orders HTTP/1.1\r\nHost: gw\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut fixture = Fixture::new(&request, vec![program]);
    fixture.body = Some(body.as_bytes().to_vec());
    let mut state = RequestState::new();
    let exit = fixture.run(&mut state);
    let errors = match state.variable("errors", &fixture.programs) {
        Some(value) => {
            let mut out = String::new();
            value.write_display(&mut out);
            out.split_whitespace().collect::<Vec<_>>().join(" ")
        }
        None => "none".into(),
    };
    (exit, errors)
}

fn refused(exit: &Exit) -> Option<(u16, String, String)> {
    match exit {
        Exit::Error(error) => {
            Some((error.last_error.status, error.last_error.reason.to_string(), error.last_error.message.to_string()))
        }
        _ => None,
    }
}

#[test]
fn a_well_formed_body_of_a_listed_type_passes() {
    let (exit, errors) = validate(
        rule(vec![json_rule(ValidationAction::Prevent, None)]),
        "application/json; charset=utf-8",
        r#"{"a":1}"#,
    );
    assert_eq!(exit, Exit::Continue);
    assert_eq!(errors, "[]");
}

#[test]
fn malformed_json_is_prevented_with_a_400() {
    let (exit, errors) =
        validate(rule(vec![json_rule(ValidationAction::Prevent, None)]), "application/json", "{\"a\":");
    let (status, reason, message) = refused(&exit).expect("refused");
    assert_eq!((status, reason.as_str()), (400, "IncorrectMessage"));
    assert!(message.starts_with("Body of the request is not valid JSON"), "{message}");
    assert!(
        errors.contains("\"ValidationRule\": \"IncorrectMessage\"") && errors.contains("\"Action\": \"prevent\""),
        "{errors}"
    );
}

#[test]
fn detect_records_the_finding_and_lets_the_request_go_on() {
    let (exit, errors) =
        validate(rule(vec![json_rule(ValidationAction::Detect, None)]), "application/json", "not json");
    assert_eq!(exit, Exit::Continue);
    assert!(errors.contains("\"Action\": \"detect\"") && errors.contains("\"Type\": \"RequestBody\""), "{errors}");
}

#[test]
fn an_unlisted_content_type_and_a_large_body_are_apims_errors() {
    let (exit, errors) = validate(rule(vec![json_rule(ValidationAction::Prevent, None)]), "text/plain", "hello");
    let (status, reason, message) = refused(&exit).expect("refused");
    assert_eq!((status, reason.as_str()), (400, "UnspecifiedContentType"));
    assert_eq!(message, "Unspecified content type text/plain is not allowed.");
    assert!(errors.contains("\"Name\": \"text/plain\""), "{errors}");
    let big = format!("[{}]", "1,".repeat(40) + "1");
    let (exit, _) = validate(rule(vec![json_rule(ValidationAction::Prevent, None)]), "application/json", &big);
    let (status, reason, message) = refused(&exit).expect("refused");
    assert_eq!((status, reason.as_str()), (400, "SizeLimit"));
    assert_eq!(
        message,
        format!("Request's body is {} bytes long and it exceeds the configured limit of 64 bytes.", big.len())
    );
}

#[test]
fn a_schema_is_compiled_once_and_checks_the_body() {
    let schema = r#"{"type":"object","required":["id"],"properties":{"id":{"type":"integer"}}}"#;
    let contents = vec![json_rule(ValidationAction::Prevent, Some(schema))];
    assert_eq!(validate(rule(contents.clone()), "application/json", r#"{"id":7}"#).0, Exit::Continue);
    let (exit, _) = validate(rule(contents.clone()), "application/json", r#"{"id":"x"}"#);
    let (_, _, message) = refused(&exit).expect("refused");
    assert!(message.contains("does not conform") && message.contains("/id"), "{message}");
    // allow-additional-properties="false" overrides the schema.
    let mut strict = contents;
    strict[0].allow_additional_properties = Some(false);
    assert!(refused(&validate(rule(strict), "application/json", r#"{"id":7,"x":1}"#).0).is_some());
    // A schema that does not compile refuses the snapshot.
    let mut program = program(vec![Op::ValidateContent(0)], Vec::new());
    program.content_validations = vec![rule(vec![json_rule(ValidationAction::Prevent, Some(r#"{"type":12}"#))])];
    assert!(matches!(LoadedProgram::load(0, program), Err(crate::policy::load::LoadError::Schema { .. })));
}

#[test]
fn xml_bodies_must_be_well_formed() {
    let xml = ContentRule {
        content_type: "application/xml".into(),
        validate_as: ValidateAs::Xml,
        action: ValidationAction::Prevent,
        schema: None,
        allow_additional_properties: None,
    };
    assert_eq!(validate(rule(vec![xml.clone()]), "application/xml", "<a><b/></a>").0, Exit::Continue);
    assert!(refused(&validate(rule(vec![xml]), "application/xml", "<a><b></a>").0).is_some());
}
