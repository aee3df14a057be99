//! `authentication-managed-identity` and the token metric policies in the VM: the token comes
//! from what the identity thread published ([`crate::identity`]); the token metric's dimensions
//! wait in the request state for the response's `usage`.

use portcullis_contract::program::Op;

use super::{Flow, Machine, internal};
use crate::policy::error::Fault;
use crate::policy::state::{PendingTokenMetric, StoredText, TOKEN_METRICS_MAX};
use crate::policy::value::{Text, Value};

/// `LastError.Reason` when no current token is held for the resource.
pub(crate) const TOKEN_UNAVAILABLE: &str = "ManagedIdentityTokenUnavailable";

impl<'r, 'a> Machine<'r, 'a> {
    /// Pushes the current token (or `Bearer <token>`), null when there is none and
    /// `ignore_error`, else fails with 500 (the body says only "Internal server error").
    pub(super) fn managed_identity_token(&mut self, op: Op) -> Result<Flow, Fault> {
        let Op::ManagedIdentityToken { resource, client_id, bearer, ignore_error } = op else {
            return Err(internal("managed identity op"));
        };
        let resource = self.program.const_str(resource).ok_or_else(|| internal("managed identity resource"))?;
        let client_id = match client_id {
            Some(index) => Some(self.program.const_str(index).ok_or_else(|| internal("managed identity client"))?),
            None => None,
        };
        let token = crate::identity::current(
            resource.as_str(),
            client_id.map(|client_id| client_id.as_str()),
            self.view.now.timestamp(),
        );
        let value = match token {
            Some(token) => {
                let text = if bearer { &token.bearer } else { &token.value };
                Value::Str(Text::from(String::from(&**text)))
            }
            None if ignore_error => Value::Null,
            None => {
                let identity = match client_id {
                    Some(client_id) => format!("the user-assigned identity {:?}", client_id.as_str()),
                    None => "the system-assigned identity".to_owned(),
                };
                let message = format!(
                    "Unable to obtain an access token for resource {:?} with {identity}: the token source has not \
                     issued one yet or failed (see the data plane's log).",
                    resource.as_str()
                );
                let mut fault = Fault::policy(500, TOKEN_UNAVAILABLE, message);
                fault.response_message = Some("Internal server error".into());
                return Err(fault);
            }
        };
        self.push(value)
    }

    /// Pops the dimension values and keeps them, with the metric names, until the proxy reads
    /// the response's `usage` (bounded: past [`TOKEN_METRICS_MAX`] the policy is dropped and
    /// counted with the dropped `emit-metric` values).
    pub(super) fn emit_token_metric(
        &mut self,
        namespace: u32,
        names_first: u32,
        dimensions: u8,
    ) -> Result<Flow, Fault> {
        let mut values = smallvec::SmallVec::<[StoredText; 4]>::new();
        for _ in 0..dimensions {
            let text = match self.pop()? {
                Value::Null => Text::from(String::new()),
                other => other.to_text()?,
            };
            values.push(StoredText::keep(&text));
        }
        values.reverse();
        if self.state.token_metrics.len() >= TOKEN_METRICS_MAX {
            self.state.metrics_dropped += 1;
            return Ok(Flow::Next);
        }
        let mut named = smallvec::SmallVec::new();
        for (offset, value) in values.into_iter().enumerate() {
            named.push((self.literal(names_first + 3 + offset as u32)?, value));
        }
        let metric = PendingTokenMetric {
            namespace: self.literal(namespace)?,
            names: [self.literal(names_first)?, self.literal(names_first + 1)?, self.literal(names_first + 2)?],
            dimensions: named,
        };
        self.state.token_metrics.push(metric);
        Ok(Flow::Next)
    }
}
