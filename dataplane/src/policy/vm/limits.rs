//! The VM's side of `rate-limit`, `rate-limit-by-key`, `quota` and `quota-by-key`: [`Op::Limit`]
//! checks (and counts) a request, [`Op::LimitCommit`] counts it after the response, and
//! [`after_response`] runs what a request left for then.
//!
//! [`Op::Limit`]: portcullis_contract::program::Op::Limit
//! [`Op::LimitCommit`]: portcullis_contract::program::Op::LimitCommit

use std::borrow::Cow;
use std::rc::Rc;

use portcullis_contract::program::{ExistsAction, Limit, LimitKind, RATE_LIMIT_PERIOD_SECONDS_MAX, Side};
use smallvec::SmallVec;

use super::{Exit, Flow, Machine, internal};
use crate::counters::{Charge, Decision};
use crate::policy::error::Fault;
use crate::policy::limits::{self, Check, Counted, RateLimits};
use crate::policy::load::LoadedProgram;
use crate::policy::state::{EditTarget, PENDING_LIMITS_MAX, PendingLimit, RequestState, Stored, StoredText};
use crate::policy::value::{Text, Value};
use crate::policy::view::View;

/// A key's bytes before the per-subscription policies' subscription id: no counter-key
/// expression can share their counters (a NUL cannot come from a header or a literal).
const SUBSCRIPTION_KEY_PREFIX: &str = "\0subscription\0";

/// What one [`Op::Limit`] was given on the stack.
///
/// [`Op::Limit`]: portcullis_contract::program::Op::Limit
struct Operands<'a> {
    calls: Option<u32>,
    period_seconds: u32,
    key: Option<Text<'a>>,
    counted: bool,
    hits: u32,
}

impl<'r, 'a> Machine<'r, 'a> {
    /// [`Op::Limit`]: checks `limits[index]` for this request, counts it (or leaves it for after
    /// the response), sets its headers and variables; over the limit, the policy's error.
    ///
    /// [`Op::Limit`]: portcullis_contract::program::Op::Limit
    pub(super) fn limit(&mut self, index: u32, resume: u32) -> Result<Flow, Fault> {
        let program = self.program;
        let limit = program.program().limits.get(index as usize).ok_or_else(|| internal("limit"))?;
        let operands = self.limit_operands(limit)?;
        let key: Cow<'_, str> = match (&operands.key, self.view.subscription) {
            (Some(key), _) => Cow::Borrowed(key.as_str()),
            // APIM's per-subscription limits depend on the subscription: without one (an open
            // product, an API that needs no key) there is nothing to count by.
            (None, None) => return Ok(Flow::Jump(resume)),
            (None, Some(subscription)) => Cow::Owned(format!("{SUBSCRIPTION_KEY_PREFIX}{}", subscription.id)),
        };
        let now_ns = now_ns(self.view);
        let (calls, bandwidth) = checks(self.view, limit, &operands, &key);
        let deferred = limit.count_after_response;
        let mut remaining = u64::MAX;
        for check in &calls {
            let (hits, charge) = match (deferred, operands.counted) {
                (true, _) => (operands.hits.max(1), Charge::Never),
                (false, false) => (0, Charge::Never),
                (false, true) if check.quota && self.state.quota_counted.contains(&check.key) => (0, Charge::Never),
                (false, true) => (operands.hits, Charge::IfAdmitted),
            };
            let decision = self.view.limits.hit(check, hits, charge, now_ns);
            if !decision.admitted {
                self.note_offender(limit, &key, &decision);
                return Err(self.refusal(limit, check, &decision));
            }
            if check.quota && charge == Charge::IfAdmitted {
                self.state.quota_counted.push(check.key);
            }
            remaining = remaining.min(decision.remaining);
        }
        let mut bandwidth_left = u64::MAX;
        for check in &bandwidth {
            let decision = self.view.limits.hit(check, 1, Charge::Never, now_ns);
            if !decision.admitted {
                return Err(self.refusal(limit, check, &decision));
            }
            bandwidth_left = bandwidth_left.min(decision.remaining + 1);
        }
        if deferred || (operands.counted && !bandwidth.is_empty()) {
            self.defer(limit, &operands, calls, bandwidth, deferred)?;
        }
        self.limit_outputs(limit, &operands, remaining, bandwidth_left)?;
        Ok(Flow::Jump(resume))
    }

    /// The operands [`Op::Limit`] pops, checked: counts are ≥ 0, a computed renewal period is a
    /// rate limit's (1 to 300 s).
    ///
    /// [`Op::Limit`]: portcullis_contract::program::Op::Limit
    fn limit_operands(&mut self, limit: &Limit) -> Result<Operands<'a>, Fault> {
        let count = self.pop()?;
        let condition = self.pop()?;
        let key = self.pop()?;
        let period = self.pop()?;
        let calls = self.pop()?;
        let name = policy_name(limit);
        let count_of = |value: Value<'_>, what: &str| match value {
            Value::Int(n) if n >= 0 => Ok(Some(u32::try_from(n).unwrap_or(u32::MAX))),
            Value::Null => Ok(None),
            other => Err(Fault::eval(format!(
                "Expression evaluation failed. {name} {what}: '{}' is not a count ≥ 0.",
                other.type_name()
            ))),
        };
        let hits = count_of(count, "increment-count")?.unwrap_or(1);
        let calls = count_of(calls, "calls")?.or(limit.calls);
        let period_seconds = match period {
            Value::Null => limit.period_seconds,
            Value::Int(n) if (1..=i64::from(RATE_LIMIT_PERIOD_SECONDS_MAX)).contains(&n) => n as u32,
            other => {
                return Err(Fault::eval(format!(
                    "Expression evaluation failed. {name} renewal-period must be 1 to {RATE_LIMIT_PERIOD_SECONDS_MAX} seconds, not {}.",
                    display(&other)
                )));
            }
        };
        let counted = match condition {
            Value::Null => true,
            Value::Bool(counted) => counted,
            other => {
                return Err(Fault::eval(format!(
                    "Expression evaluation failed. {name} increment-condition: '{}' is not a bool.",
                    other.type_name()
                )));
            }
        };
        let key = match key {
            Value::Null if !limit.by_key => None,
            Value::Str(text) => Some(text),
            Value::Null => {
                return Err(Fault::eval(format!("Expression evaluation failed. {name} counter-key is null.")));
            }
            other => Some(Text::from(display(&other))),
        };
        Ok(Operands { calls, period_seconds, key, counted, hits })
    }

    /// A `rate-limit-by-key` whose key is the client's address (`@(context.Request.IpAddress)`)
    /// asks the proxy to block the address for its retry-after time (docs/xdp.md).
    fn note_offender(&mut self, limit: &Limit, key: &str, decision: &Decision) {
        if limit.kind == LimitKind::RateLimit && limit.by_key && key == super::members::client_ip(self.view.peer) {
            let seconds = u32::try_from(limits::retry_after_seconds(decision)).unwrap_or(u32::MAX);
            self.state.offender_seconds = Some(seconds);
        }
    }

    /// The error of a refusal by `check`: 429 for a rate limit, 403 for a quota, with
    /// `Retry-After` (and the remaining calls, 0) and the retry variable.
    fn refusal(&mut self, limit: &Limit, check: &Check, decision: &Decision) -> Fault {
        let seconds = limits::retry_after_seconds(decision);
        let mut fault = match limit.kind {
            LimitKind::RateLimit => {
                let mut fault = Fault::policy(429, "RateLimitExceeded", "Rate limit is exceeded");
                fault.response_message = Some(limits::rate_limit_message(seconds).into());
                fault
            }
            LimitKind::Quota => Fault::policy(403, "QuotaExceeded", limits::quota_message(check.counted, seconds)),
        };
        let literal = |state: &Machine<'r, 'a>, index: Option<u32>| -> Option<Rc<str>> {
            index.and_then(|index| state.program.const_str(index)).map(|text| Rc::from(text.as_str()))
        };
        let number: Rc<str> = Rc::from(seconds.to_string());
        if let Some(name) = literal(self, limit.retry_after_header) {
            fault.headers.push((name, number));
        }
        let remaining_header = match check.counted {
            Counted::Calls => limit.remaining_calls_header,
            Counted::Bandwidth => limit.remaining_bandwidth_header,
        };
        if let Some(name) = literal(self, remaining_header) {
            fault.headers.push((name, Rc::from("0")));
        }
        if let (Some(name), Counted::Calls) = (literal(self, limit.total_calls_header), check.counted) {
            fault.headers.push((name, Rc::from(check.limit.to_string())));
        }
        // Variables are set before on-error runs, which may read them; a failure to set them
        // (too many variables) leaves the limit's own error as the answer.
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
        let _ = self.limit_variable(limit.retry_after_variable, Value::Int(seconds));
        let remaining_variable = match check.counted {
            Counted::Calls => limit.remaining_calls_variable,
            Counted::Bandwidth => limit.remaining_bandwidth_variable,
        };
        let _ = self.limit_variable(remaining_variable, Value::Int(0));
        fault
    }

    /// The remaining calls (and bandwidth) header and variable, and the total calls header,
    /// after a request the limit let through.
    fn limit_outputs(
        &mut self,
        limit: &Limit,
        operands: &Operands<'_>,
        remaining: u64,
        bandwidth: u64,
    ) -> Result<(), Fault> {
        let as_int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        if remaining != u64::MAX {
            self.limit_header(limit.remaining_calls_header, remaining)?;
            self.limit_variable(limit.remaining_calls_variable, Value::Int(as_int(remaining)))?;
        }
        if let Some(calls) = operands.calls {
            self.limit_header(limit.total_calls_header, u64::from(calls))?;
        }
        if bandwidth != u64::MAX {
            self.limit_header(limit.remaining_bandwidth_header, bandwidth)?;
            self.limit_variable(limit.remaining_bandwidth_variable, Value::Int(as_int(bandwidth)))?;
        }
        Ok(())
    }

    /// Sets response header `name` (a constant) to `value`.
    fn limit_header(&mut self, name: Option<u32>, value: u64) -> Result<(), Fault> {
        let Some(name) = name else { return Ok(()) };
        let name = StoredText::Literal(self.literal(name)?);
        let value = StoredText::Owned(Rc::from(value.to_string()));
        self.state.push_edit(EditTarget::Header(Side::Response), ExistsAction::Override, name, std::iter::once(value))
    }

    /// Sets variable `name` (a constant) to `value`.
    fn limit_variable(&mut self, name: Option<u32>, value: Value<'static>) -> Result<(), Fault> {
        let Some(name) = name else { return Ok(()) };
        let name = StoredText::Literal(self.literal(name)?);
        self.put_variable(name, Stored::Value(value))
    }

    /// Notes a limit whose counters move after the response.
    fn defer(
        &mut self,
        limit: &Limit,
        operands: &Operands<'_>,
        calls: SmallVec<[Check; 2]>,
        bandwidth: SmallVec<[Check; 1]>,
        deferred: bool,
    ) -> Result<(), Fault> {
        if self.state.limits_pending.len() >= PENDING_LIMITS_MAX {
            let name = policy_name(limit);
            return Err(Fault::eval(format!("Expression evaluation failed. Too many {name} policies in one request.")));
        }
        self.state.limits_pending.push(PendingLimit {
            section: self.section,
            program: self.program.index(),
            condition_pc: deferred.then_some(self.pc + 1),
            site: self.site,
            calls: if deferred && operands.counted { calls } else { SmallVec::new() },
            hits: operands.hits,
            bandwidth,
            condition_held: false,
        });
        Ok(())
    }

    /// [`Op::LimitCommit`]: the deferred condition of the pending limit being committed is on the
    /// stack; counts its calls if it holds, and ends the run.
    ///
    /// [`Op::LimitCommit`]: portcullis_contract::program::Op::LimitCommit
    pub(super) fn limit_commit(&mut self) -> Result<Flow, Fault> {
        let counted = match self.pop()? {
            Value::Bool(counted) => counted,
            Value::Null => false,
            other => {
                return Err(Fault::eval(format!(
                    "Expression evaluation failed. increment-condition: '{}' is not a bool.",
                    other.type_name()
                )));
            }
        };
        let committing = self.state.committing;
        if let (true, Some(pending)) = (counted, committing.and_then(|at| self.state.limits_pending.get_mut(at))) {
            pending.condition_held = true;
            let pending = pending.clone();
            count_calls(self.view, self.state, &pending);
        }
        Ok(Flow::Exit(Exit::Continue))
    }
}

/// Moves the counters the request's limits left for after its response: runs each deferred
/// increment condition (with the response in `view`) and counts the calls where it holds, then
/// counts `bytes` (request and response) in every bandwidth quota; `None`: the bodies are still
/// to be relayed, so the bandwidth quotas wait in the state for [`count_bandwidth`]. A condition
/// that fails counts nothing and is not an error of the request.
pub fn after_response(view: &View<'_>, state: &mut RequestState, bytes: Option<u64>) {
    if state.limits_pending.is_empty() {
        return;
    }
    let last_error = state.last_error.take();
    let now_ns = now_ns(view);
    for at in 0..state.limits_pending.len() {
        let Some(pending) = state.limits_pending.get(at).cloned() else { break };
        if let (Some(pc), Some(program)) = (pending.condition_pc, view.programs.get(pending.program)) {
            state.committing = Some(at);
            run_condition(pending.section, program, view, state, pc, pending.site);
            state.committing = None;
            if !state.limits_pending.get(at).is_some_and(|pending| pending.condition_held) {
                continue;
            }
        }
        match bytes {
            Some(bytes) => count_bandwidth_in(view.limits, &pending.bandwidth, bytes, now_ns),
            None => state.bandwidth_due.extend(pending.bandwidth.iter().cloned()),
        }
    }
    state.limits_pending.clear();
    state.last_error = last_error;
}

/// Counts `bytes` (the request's and the response's, as relayed) in the bandwidth quotas
/// [`after_response`] left waiting for the bodies; `now` is the wall clock.
pub fn count_bandwidth(limits: &RateLimits, state: &mut RequestState, bytes: u64, now: chrono::DateTime<chrono::Utc>) {
    if state.bandwidth_due.is_empty() {
        return;
    }
    let now_ns = now.timestamp_nanos_opt().and_then(|ns| u64::try_from(ns).ok()).unwrap_or(0);
    let due = std::mem::take(&mut state.bandwidth_due);
    count_bandwidth_in(limits, &due, bytes, now_ns);
}

fn count_bandwidth_in(limits: &RateLimits, checks: &[Check], bytes: u64, now_ns: u64) {
    let kilobytes = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
    for check in checks {
        limits.hit(check, kilobytes, Charge::Always, now_ns);
    }
}

fn run_condition(
    section: portcullis_contract::program::Section,
    program: &LoadedProgram,
    view: &View<'_>,
    state: &mut RequestState,
    pc: u32,
    site: Option<u32>,
) {
    let mut machine = Machine::new(section, program, view, state);
    machine.site = site;
    let _ = machine.execute(pc as usize);
}

/// Counts a pending limit's calls (a quota key once per request).
fn count_calls(view: &View<'_>, state: &mut RequestState, pending: &PendingLimit) {
    let now_ns = now_ns(view);
    for check in &pending.calls {
        if check.quota {
            if state.quota_counted.contains(&check.key) {
                continue;
            }
            state.quota_counted.push(check.key);
        }
        view.limits.hit(check, pending.hits, Charge::Always, now_ns);
    }
}

/// The windows a request is checked against: the policy's own, then those of its `<api>` and
/// `<operation>` children that match the request's API and operation (by id, else name).
fn checks(
    view: &View<'_>,
    limit: &Limit,
    operands: &Operands<'_>,
    key: &str,
) -> (SmallVec<[Check; 2]>, SmallVec<[Check; 1]>) {
    let quota = limit.kind == LimitKind::Quota;
    let origin = |period| if quota { limits::quota_origin_ns(limit.first_period_start, period) } else { 0 };
    let mut calls = SmallVec::new();
    let mut bandwidth = SmallVec::new();
    let mut add = |bytes: &str, calls_max: Option<u32>, bandwidth_kb: Option<u32>, period_seconds: u32| {
        let check = |counted, limit| Check {
            key: view.limits.key(quota, counted, bytes.as_bytes()),
            quota,
            counted,
            limit,
            period_seconds,
            origin_ns: origin(period_seconds),
        };
        if let Some(max) = calls_max {
            calls.push(check(Counted::Calls, max));
        }
        if let Some(kb) = bandwidth_kb {
            bandwidth.push(check(Counted::Bandwidth, kb));
        }
    };
    add(key, operands.calls, limit.bandwidth_kb, operands.period_seconds);
    for scope in &limit.scopes {
        let api = scope.api == view.api.id || scope.api == view.api.name;
        let operation =
            scope.operation.as_ref().is_none_or(|op| *op == view.operation.id || *op == view.operation.name);
        if !(api && operation) {
            continue;
        }
        let scoped = match &scope.operation {
            Some(operation) => format!("{key}\0api\0{}\0operation\0{operation}", scope.api),
            None => format!("{key}\0api\0{}", scope.api),
        };
        add(&scoped, scope.calls, scope.bandwidth_kb, scope.period_seconds);
    }
    (calls, bandwidth)
}

/// The view's clock in ns since the Unix epoch: quotas' windows are on the wall clock (they
/// start at `first-period-start` and outlive restarts), and so are rate limits' for one clock.
fn now_ns(view: &View<'_>) -> u64 {
    view.now.timestamp_nanos_opt().and_then(|ns| u64::try_from(ns).ok()).unwrap_or(0)
}

fn policy_name(limit: &Limit) -> &'static str {
    match (limit.kind, limit.by_key) {
        (LimitKind::RateLimit, false) => "rate-limit",
        (LimitKind::RateLimit, true) => "rate-limit-by-key",
        (LimitKind::Quota, false) => "quota",
        (LimitKind::Quota, true) => "quota-by-key",
    }
}

fn display(value: &Value<'_>) -> String {
    let mut out = String::new();
    value.write_display(&mut out);
    out
}
