//! The VM's side of `llm-token-limit` / `azure-openai-token-limit`: [`Op::TokenLimit`] checks a
//! key's token windows before the request is forwarded (with the prompt's estimated tokens when
//! the policy estimates them, charged at once), and [`charge_tokens`] charges the response's
//! `usage` once the proxy has read it.
//!
//! [`Op::TokenLimit`]: portcullis_contract::program::Op::TokenLimit

use std::rc::Rc;

use portcullis_contract::program::{ExistsAction, Side, TokenLimit};
use smallvec::SmallVec;

use super::{Flow, Machine, internal};
use crate::counters::{Charge, Decision};
use crate::policy::error::Fault;
use crate::policy::limits::{self, Check, Counted, RateLimits};
use crate::policy::load::{LitRef, Programs};
use crate::policy::state::{EditTarget, RequestState, Stored, StoredText, TOKEN_CHARGES_MAX, TokenCharge, TokenUsage};
use crate::policy::value::Value;

/// The sliding window of `tokens-per-minute`.
const TOKEN_RATE_PERIOD_SECONDS: u32 = 60;

impl<'r, 'a> Machine<'r, 'a> {
    /// [`Op::TokenLimit`]: pops the counter-key; refuses the request when a window of the key is
    /// spent (or cannot hold the prompt's estimate), else charges the estimate, sets the
    /// remaining tokens' headers and variables and leaves the windows for the response's usage.
    ///
    /// [`Op::TokenLimit`]: portcullis_contract::program::Op::TokenLimit
    pub(super) fn token_limit(&mut self, index: u32) -> Result<Flow, Fault> {
        let program = self.program;
        let limit = program.program().token_limits.get(index as usize).ok_or_else(|| internal("token limit"))?;
        let key = match self.pop()? {
            Value::Str(text) => text.as_str().to_owned(),
            Value::Null => {
                return Err(Fault::eval("Expression evaluation failed. token limit counter-key is null."));
            }
            other => {
                let mut text = String::new();
                other.write_display(&mut text);
                text
            }
        };
        let now_ns = self.view.now.timestamp_nanos_opt().and_then(|ns| u64::try_from(ns).ok()).unwrap_or(0);
        let windows = windows(self.view.limits, limit, key.as_bytes(), self.view.now);
        let estimate = match limit.estimate_prompt_tokens {
            true => self.view.request_body.and_then(crate::llm::tokens::estimate_prompt_tokens).unwrap_or(0),
            false => 0,
        };
        let estimate = u32::try_from(estimate).unwrap_or(u32::MAX);
        // A window is spent when not even one token (or not the estimate) fits.
        let needed = estimate.max(1);
        for check in &windows {
            let decision = self.view.limits.hit(check, needed, Charge::Never, now_ns);
            if !decision.admitted {
                return Err(self.token_refusal(limit, check, &decision));
            }
        }
        if self.state.token_charges.len() >= TOKEN_CHARGES_MAX {
            return Err(Fault::eval("Expression evaluation failed. Too many token limit policies in one request."));
        }
        for check in &windows {
            let decision = self.view.limits.hit(check, estimate, Charge::Always, now_ns);
            let (header, variable) = match check.quota {
                false => (limit.remaining_tokens_header, limit.remaining_tokens_variable),
                true => (limit.remaining_quota_tokens_header, limit.remaining_quota_tokens_variable),
            };
            self.token_header(header, decision.remaining)?;
            self.token_variable(variable, decision.remaining)?;
        }
        self.state.token_charges.push(TokenCharge {
            program: program.index(),
            limit: index,
            windows,
            charged: estimate,
        });
        Ok(Flow::Next)
    }

    /// 429 when the tokens per minute are spent, 403 when the quota is, with `Retry-After` (or
    /// the policy's header name), the remaining tokens at 0 and the retry variable.
    fn token_refusal(&mut self, limit: &TokenLimit, check: &Check, decision: &Decision) -> Fault {
        let seconds = limits::retry_after_seconds(decision);
        let mut fault = match check.quota {
            false => {
                let mut fault = Fault::policy(429, "TokenLimitExceeded", "Token limit is exceeded");
                fault.response_message = Some(limits::token_limit_message(seconds).into());
                fault
            }
            true => Fault::policy(403, "TokenQuotaExceeded", limits::token_quota_message(seconds)),
        };
        let literal = |machine: &Machine<'r, 'a>, index: Option<u32>| -> Option<Rc<str>> {
            index.and_then(|index| machine.program.const_str(index)).map(|text| Rc::from(text.as_str()))
        };
        if let Some(name) = literal(self, limit.retry_after_header) {
            fault.headers.push((name, Rc::from(seconds.to_string())));
        }
        let (header, variable) = match check.quota {
            false => (limit.remaining_tokens_header, limit.remaining_tokens_variable),
            true => (limit.remaining_quota_tokens_header, limit.remaining_quota_tokens_variable),
        };
        if let Some(name) = literal(self, header) {
            fault.headers.push((name, Rc::from("0")));
        }
        // Set before on-error runs, which may read them; too many variables leaves the refusal.
        let _ = self.token_variable(limit.retry_after_variable, seconds);
        let _ = self.token_variable(variable, 0);
        fault
    }

    fn token_header(&mut self, name: Option<u32>, value: u64) -> Result<(), Fault> {
        let Some(name) = name else { return Ok(()) };
        let name = StoredText::Literal(self.literal(name)?);
        let value = StoredText::Owned(Rc::from(value.to_string()));
        self.state.push_edit(EditTarget::Header(Side::Response), ExistsAction::Override, name, std::iter::once(value))
    }

    fn token_variable(&mut self, name: Option<u32>, value: u64) -> Result<(), Fault> {
        let Some(name) = name else { return Ok(()) };
        let name = StoredText::Literal(self.literal(name)?);
        self.put_variable(name, Stored::Value(Value::Int(i64::try_from(value).unwrap_or(i64::MAX))))
    }
}

/// The windows of `limit` for `key` at `now`: tokens per minute, then the quota.
fn windows(
    limits: &RateLimits,
    limit: &TokenLimit,
    key: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> SmallVec<[Check; 2]> {
    let mut windows = SmallVec::new();
    if let Some(tokens) = limit.tokens_per_minute {
        windows.push(Check {
            key: limits.token_key(false, key),
            quota: false,
            counted: Counted::Calls,
            limit: tokens,
            period_seconds: TOKEN_RATE_PERIOD_SECONDS,
            origin_ns: 0,
        });
    }
    if let Some((tokens, period)) = limit.quota {
        let (period_seconds, origin_ns) = limits::token_quota_window(period, now);
        windows.push(Check {
            key: limits.token_key(true, key),
            quota: true,
            counted: Counted::Calls,
            limit: tokens,
            period_seconds,
            origin_ns,
        });
    }
    windows
}

/// Charges the response's `usage` (its total tokens, less the estimate charged before) to the
/// windows of every token limit the request passed, and sets their tokens-consumed variables and,
/// when `head_pending` (the response head is still to be written), headers. Without a `usage`
/// (a failed call, a stream that did not include it) only the estimate stays charged. Once per
/// request: the charges are taken from the state.
pub fn charge_tokens(
    limits: &RateLimits,
    programs: &Programs,
    state: &mut RequestState,
    usage: Option<TokenUsage>,
    now: chrono::DateTime<chrono::Utc>,
    head_pending: bool,
) {
    if state.token_charges.is_empty() {
        return;
    }
    let now_ns = now.timestamp_nanos_opt().and_then(|ns| u64::try_from(ns).ok()).unwrap_or(0);
    let charges = std::mem::take(&mut state.token_charges);
    for charge in &charges {
        let consumed = match usage {
            Some(usage) => usage.total.max(usage.prompt + usage.completion),
            None => u64::from(charge.charged),
        };
        let extra = u32::try_from(consumed.saturating_sub(u64::from(charge.charged))).unwrap_or(u32::MAX);
        if extra > 0 {
            for check in &charge.windows {
                limits.hit(check, extra, Charge::Always, now_ns);
            }
        }
        let Some(limit) =
            programs.get(charge.program).and_then(|program| program.program().token_limits.get(charge.limit as usize))
        else {
            continue;
        };
        let name = |index: u32| LitRef { program: charge.program, index };
        if let Some(variable) = limit.tokens_consumed_variable {
            let value = Stored::Value(Value::Int(i64::try_from(consumed).unwrap_or(i64::MAX)));
            state.set_variable(StoredText::Literal(name(variable)), value, programs);
        }
        if let (true, Some(header)) = (head_pending, limit.tokens_consumed_header) {
            let value = StoredText::Owned(Rc::from(consumed.to_string()));
            let target = EditTarget::Header(Side::Response);
            let _ = state.push_edit(
                target,
                ExistsAction::Override,
                StoredText::Literal(name(header)),
                std::iter::once(value),
            );
        }
    }
}
