//! `validate-jwt` and `validate-azure-ad-token` in the VM: find the token, run the engine
//! ([`crate::jwt`]), store the `Jwt` or fail the request with APIM's reason and message.

use std::rc::Rc;

use portcullis_contract::jwt::{JwtRule, TokenSource};

use super::{Flow, Machine, internal};
use crate::http::url::{self, Coding, Target};
use crate::jwt::{self, Check, failures};
use crate::policy::error::Fault;
use crate::policy::state::{Stored, StoredText, VARIABLES_MAX};
use crate::policy::value::{Message, Value};

impl<'r, 'a> Machine<'r, 'a> {
    pub(super) fn validate_jwt(&mut self, rule_index: u32, token_on_stack: bool) -> Result<Flow, Fault> {
        let program = self.program;
        let rule = program.program().jwt.get(rule_index as usize).ok_or_else(|| internal("jwt rule"))?;
        let token = if token_on_stack {
            match self.pop()? {
                Value::Null => None,
                other => Some(other.to_text()?.as_str().to_owned()),
            }
        } else {
            self.token(rule)
        };
        let programs = self.view.programs;
        let (ring_index, ring) =
            programs.jwt_ring(program.index(), rule_index).ok_or_else(|| internal("jwt key ring"))?;
        let check = Check {
            rule,
            ring,
            ring_index,
            epoch: programs.jwt_epoch(),
            now_s: self.view.now.timestamp(),
            use_cache: programs.token_cache(),
        };
        let result = match token.as_deref() {
            None => Err(failures::not_present()),
            Some(token) => jwt::validate(&check, token),
        };
        match result {
            Ok(jwt) => {
                if let Some(name) = &rule.output_variable {
                    self.store_jwt(name, Value::Jwt(jwt))?;
                }
                Ok(Flow::Next)
            }
            Err(failure) => {
                let response = match &rule.message {
                    Some(message) if !message.is_empty() => message.clone().into(),
                    _ => failure.response_message().into(),
                };
                let mut fault = Fault::policy(rule.status, failure.reason, failure.message);
                fault.response_message = Some(response);
                Err(fault)
            }
        }
    }

    /// The token from the header (without its scheme) or query parameter the rule names.
    fn token(&self, rule: &JwtRule) -> Option<String> {
        match &rule.source {
            TokenSource::Header { name, scheme } => {
                let value = self.header_value(Message::Request, name)?;
                let value = value.as_str().trim();
                match scheme {
                    Some(scheme) => strip_scheme(value, scheme).map(str::to_owned),
                    // Without `require-scheme`, a `Bearer` scheme is still not part of the token.
                    None => Some(strip_scheme(value, "Bearer").unwrap_or(value).to_owned()),
                }
            }
            TokenSource::Query(name) => {
                let view = self.view;
                let query = Target::parse(view.request.target(view.request_buf)).query().unwrap_or_default();
                url::query_pairs(query)
                    .find(|(key, _)| *key == name.as_bytes())
                    .map(|(_, value)| url::percent_decode_str(value, Coding::Form).into_owned())
            }
            TokenSource::Value => None,
        }
    }

    fn store_jwt(&mut self, name: &str, value: Value<'a>) -> Result<(), Fault> {
        let stored = Stored::keep(&value, |_| None)?;
        let programs = self.view.programs;
        let full = self.state.variables.len() >= VARIABLES_MAX;
        match self.state.variables.iter_mut().find(|(existing, _)| existing.resolve(programs) == name) {
            Some(slot) => slot.1 = stored,
            None if full => return Err(Fault::eval("Expression evaluation failed. Too many variables.")),
            None => self.state.variables.push((StoredText::Owned(Rc::from(name)), stored)),
        }
        Ok(())
    }
}

/// `value` without `scheme ` in front (scheme case-insensitive), or `None` if it has another.
fn strip_scheme<'v>(value: &'v str, scheme: &str) -> Option<&'v str> {
    let head = value.get(..scheme.len())?;
    let rest = value.get(scheme.len()..)?;
    if head.eq_ignore_ascii_case(scheme) && rest.starts_with(' ') { Some(rest.trim_start()) } else { None }
}
