//! `validate-content`: the size, content type and body of the request (inbound) or the response
//! (outbound, on-error) checked as APIM's validation policies do. Findings go to the errors
//! variable as APIM's validation errors (`Name`, `Type`, `ValidationRule`, `Details`, `Action`);
//! a `prevent` finding fails the section with `LastError.Source` `validate-content`, 400 for a
//! request and 502 for a response.

use portcullis_contract::program::{ContentRule, ContentValidation, Side, ValidateAs, ValidationAction};
use serde_json::{Value as Json, json};

use super::{Flow, Machine, internal};
use crate::policy::error::Fault;
use crate::policy::state::{Stored, StoredText};
use crate::policy::transform::{self, XmlToJsonKind};
use crate::policy::value::{JsonRef, Message, Value};

/// Schema findings reported for one body: the first ones say what is wrong; a body with
/// thousands of errors must not make thousands of entries.
pub(crate) const SCHEMA_ERRORS_MAX: usize = 16;

/// One finding.
struct Finding {
    name: String,
    validation_rule: &'static str,
    details: String,
    action: ValidationAction,
}

impl<'r, 'a> Machine<'r, 'a> {
    /// `Op::ValidateContent(index)`.
    pub(super) fn validate_content(&mut self, index: u32) -> Result<Flow, Fault> {
        let rule = self.program.program().content_validations.get(index as usize).ok_or_else(|| internal("rule"))?;
        let side = rule.side;
        let message = if side == Side::Request { Message::Request } else { Message::Response };
        let kind = if side == Side::Request { "RequestBody" } else { "ResponseBody" };
        let body = self.current_body(side).map(|body| body.into_owned()).ok();
        let mut findings = Vec::new();
        self.check_size(rule, body.as_deref(), message, kind, &mut findings);
        let content_type = self.header_value(message, "Content-Type").map(|v| media_type(v.as_str()));
        let has_body = body.as_ref().is_some_and(|b| !b.is_empty()) || content_type.is_some();
        if has_body {
            let essence = content_type.clone().unwrap_or_default();
            match rule.contents.iter().enumerate().find(|(_, c)| c.content_type == essence) {
                None if rule.unspecified_content_type != ValidationAction::Ignore => findings.push(Finding {
                    name: essence.clone(),
                    validation_rule: "UnspecifiedContentType",
                    details: format!("Unspecified content type {essence} is not allowed."),
                    action: rule.unspecified_content_type,
                }),
                None => {}
                Some((at, content)) if content.action != ValidationAction::Ignore => {
                    let body = body.as_deref().unwrap_or_default();
                    let validator = self.program.content_schema(index, at);
                    check_body(content, validator, body, kind, &mut findings);
                }
                Some(_) => {}
            }
        }
        self.report_findings(rule, kind, findings)
    }

    /// `max-size`: the body's length (or its `Content-Length` when it was not buffered).
    fn check_size(
        &self,
        rule: &ContentValidation,
        body: Option<&[u8]>,
        message: Message,
        kind: &str,
        findings: &mut Vec<Finding>,
    ) {
        let Some(max) = rule.max_size_bytes else { return };
        if rule.size_exceeded == ValidationAction::Ignore {
            return;
        }
        let size = match body {
            Some(body) => Some(body.len() as u64),
            None => self.header_value(message, "Content-Length").and_then(|v| v.as_str().trim().parse::<u64>().ok()),
        };
        if let Some(size) = size.filter(|size| *size > max) {
            let whose = if kind == "RequestBody" { "Request" } else { "Response" };
            findings.push(Finding {
                name: String::new(),
                validation_rule: "SizeLimit",
                details: format!(
                    "{whose}'s body is {size} bytes long and it exceeds the configured limit of {max} bytes."
                ),
                action: rule.size_exceeded,
            });
        }
    }

    /// Stores the findings in the errors variable; fails on the first `prevent` one.
    fn report_findings(&mut self, rule: &ContentValidation, kind: &str, findings: Vec<Finding>) -> Result<Flow, Fault> {
        if let Some(variable) = &rule.errors_variable {
            let errors: Vec<Json> = findings
                .iter()
                .map(|f| {
                    json!({
                        "Name": f.name,
                        "Type": kind,
                        "ValidationRule": f.validation_rule,
                        "Details": f.details,
                        "Action": action_name(f.action),
                    })
                })
                .collect();
            let value = Value::Json(JsonRef::new(Json::Array(errors)));
            self.put_variable(StoredText::Owned(variable.as_str().into()), Stored::Value(value))?;
        }
        match findings.into_iter().find(|f| f.action == ValidationAction::Prevent) {
            Some(finding) => {
                let status = if kind == "RequestBody" { 400 } else { 502 };
                Err(Fault::policy(status, finding.validation_rule, finding.details))
            }
            None => Ok(Flow::Next),
        }
    }
}

/// The body against its `<content>` rule: well-formed for `validate-as`, and the schema when
/// the snapshot has one.
fn check_body(
    content: &ContentRule,
    validator: Option<&jsonschema::Validator>,
    body: &[u8],
    kind: &str,
    findings: &mut Vec<Finding>,
) {
    let whose = if kind == "RequestBody" { "request" } else { "response" };
    let mut fail = |details: String| {
        findings.push(Finding {
            name: content.content_type.clone(),
            validation_rule: "IncorrectMessage",
            details,
            action: content.action,
        })
    };
    if body.is_empty() {
        fail(format!("Body of the {whose} is missing."));
        return;
    }
    match content.validate_as {
        ValidateAs::Json => match serde_json::from_slice::<Json>(body) {
            Err(error) => fail(format!(
                "Body of the {whose} is not valid JSON: {error}. Line: {}, Position: {}",
                error.line(),
                error.column()
            )),
            Ok(instance) => {
                if let Some(validator) = validator {
                    for error in validator.iter_errors(&instance).take(SCHEMA_ERRORS_MAX) {
                        let path = error.instance_path().to_string();
                        let at = if path.is_empty() { "/".to_owned() } else { path };
                        fail(format!(
                            "Body of the {whose} does not conform to the definition associated with the content type {}. {error} (at {at})",
                            content.content_type
                        ));
                    }
                }
            }
        },
        ValidateAs::Xml | ValidateAs::Soap => {
            if let Err(error) = transform::xml_to_json(body, XmlToJsonKind::Direct, false) {
                fail(format!("Body of the {whose} is not valid XML: {}", error.0));
            }
        }
    }
}

fn action_name(action: ValidationAction) -> &'static str {
    match action {
        ValidationAction::Ignore => "ignore",
        ValidationAction::Detect => "detect",
        ValidationAction::Prevent => "prevent",
    }
}

/// The media type of a `Content-Type` value, lower case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}
