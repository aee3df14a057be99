//! The VM's side of `llm-content-safety`: [`Op::ContentSafetyCall`] builds the call to the
//! Content Safety resource behind the named backend (the `SendRequest` that follows makes it),
//! [`Op::ContentSafetyVerdict`] judges its answer.
//!
//! [`Op::ContentSafetyCall`]: portcullis_contract::program::Op::ContentSafetyCall
//! [`Op::ContentSafetyVerdict`]: portcullis_contract::program::Op::ContentSafetyVerdict

use std::rc::Rc;

use portcullis_contract::program::Side;

use super::{Flow, Machine, internal};
use crate::llm::content_safety::{self, Blocked, Verdict};
use crate::policy::OutgoingRequest;
use crate::policy::error::Fault;
use crate::policy::state::EditTarget;
use crate::policy::value::Value;

/// The body of the 403 a blocked prompt gets.
const BLOCKED_MESSAGE: &str = "Request failed content safety check.";
/// The body of the 500 when the service gave no verdict.
const UNAVAILABLE_MESSAGE: &str = "Content safety check could not be completed.";

impl<'r, 'a> Machine<'r, 'a> {
    /// [`Op::ContentSafetyCall`]: the request being built is a `POST` of the prompt to the rule's
    /// backend; without a prompt, jumps to `skip`.
    ///
    /// [`Op::ContentSafetyCall`]: portcullis_contract::program::Op::ContentSafetyCall
    pub(super) fn content_safety_call(&mut self, rule: u32, shield: bool, skip: u32) -> Result<Flow, Fault> {
        let program = self.program;
        let rule = program.program().content_safety.get(rule as usize).ok_or_else(|| internal("content safety"))?;
        let Some(text) = self.view.request_body.and_then(content_safety::prompt_text) else {
            return Ok(Flow::Jump(skip));
        };
        let (path, body) = match shield {
            true => (content_safety::SHIELD_PATH, content_safety::shield_body(&text)),
            false => (
                content_safety::ANALYZE_PATH,
                content_safety::analyze_body(&text, &rule.categories, &rule.blocklists, rule.eight_levels),
            ),
        };
        self.state.edits.retain(|edit| edit.target != EditTarget::Header(Side::Outgoing));
        self.state.outgoing = Some(Box::new(OutgoingRequest {
            method: "POST".to_owned(),
            url: path.to_owned(),
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body: Some(Rc::from(body)),
            certificate: None,
            backend: Some(rule.backend_id.clone()),
        }));
        Ok(Flow::Next)
    }

    /// [`Op::ContentSafetyVerdict`]: a flagged prompt fails with 403; no verdict (the call failed,
    /// a status other than 200, an answer that is not one) with 500.
    ///
    /// [`Op::ContentSafetyVerdict`]: portcullis_contract::program::Op::ContentSafetyVerdict
    pub(super) fn content_safety_verdict(&mut self, rule: u32, shield: bool, variable: u32) -> Result<Flow, Fault> {
        let program = self.program;
        let rule = program.program().content_safety.get(rule as usize).ok_or_else(|| internal("content safety"))?;
        let name = program.const_str(variable).ok_or_else(|| internal("variable name"))?.as_str();
        let unavailable = |detail: &str| {
            let mut fault = Fault::policy(500, "ContentSafetyUnavailable", format!("Content safety {detail}."));
            fault.response_message = Some(UNAVAILABLE_MESSAGE.into());
            fault
        };
        let response = match self.variable(name) {
            Some(Value::Response(response)) => response,
            _ => return Err(unavailable("call failed")),
        };
        if response.status != 200 {
            return Err(unavailable(&format!("answered {}", response.status)));
        }
        let verdict = match shield {
            true => content_safety::shield_verdict(&response.body),
            false => content_safety::analyze_verdict(&response.body, &rule.categories),
        };
        let detail = match verdict {
            Verdict::Pass => return Ok(Flow::Next),
            Verdict::Block(Blocked::Category { name, severity }) => format!("category {name} at severity {severity}"),
            Verdict::Block(Blocked::Blocklist(list)) => format!("blocklist {list} matched"),
            Verdict::Block(Blocked::Attack) => "prompt attack detected".to_owned(),
            Verdict::Unreadable => return Err(unavailable("answer is not a verdict")),
        };
        let mut fault =
            Fault::policy(403, "ContentSafetyBlocked", format!("Prompt blocked by content safety: {detail}."));
        fault.response_message = Some(BLOCKED_MESSAGE.into());
        Err(fault)
    }
}
