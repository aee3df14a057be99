//! Policy statements: the ops that change the request state or end the section.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use portcullis_contract::model::Scheme;
use portcullis_contract::program::{Cors, ExistsAction, Op, Side, is_header_value};

use super::{Exit, Flow, Machine, internal};
use crate::http::url::{self, Coding, Target};
use crate::policy::cache_call::{CacheCall, CachedValue, DownstreamCaching, ResponseLookup, StoreMark};
use crate::policy::error::Fault;
use crate::policy::state::{
    BackendOverride, BodyEdit, BuiltResponse, CONCURRENCY_NESTING_MAX, CorsMark, EditTarget, EmittedMetric,
    METRICS_MAX, StoredBody, StoredText, TRACES_MAX, TraceEntry,
};
use crate::policy::transform::{self, XmlToJsonKind};
use crate::policy::value::{Message, Text, UrlKind, Value};
use crate::policy::vm::members::wire_text;

/// The longest a cache entry may live: a year (APIM's durations are seconds in an int; a
/// negative or absurd one is an expression gone wrong).
pub(crate) const CACHE_DURATION_S_MAX: i64 = 366 * 24 * 3600;

/// A bool an attribute evaluated to, or the error naming the attribute.
fn flag_of(value: Value<'_>, what: &str) -> Result<bool, Fault> {
    match value {
        Value::Bool(flag) => Ok(flag),
        other => {
            Err(Fault::eval(format!("Expression evaluation failed. {what}: '{}' is not a bool.", other.type_name())))
        }
    }
}

/// Longest `set-backend-service` URL: a URL past this is a configuration mistake.
pub(crate) const BACKEND_URL_BYTES_MAX: usize = 2048;

impl<'r, 'a> Machine<'r, 'a> {
    pub(super) fn statement(&mut self, op: Op) -> Result<Flow, Fault> {
        match op {
            Op::SetHeader { side, action, name, values } => {
                self.set_values(EditTarget::Header(side), action, name, values)
            }
            Op::SetHeaderConst { side, action, name, value } => {
                // The verifier checked that the constant is a valid header value.
                let name = StoredText::Literal(self.literal(name)?);
                let value = StoredText::Literal(self.literal(value)?);
                self.state.push_edit(EditTarget::Header(side), action, name, std::iter::once(value))?;
                Ok(Flow::Next)
            }
            Op::SetQueryParameter { action, name, values } => self.set_values(EditTarget::Query, action, name, values),
            Op::SetNamedComputed { side, query, action, values } => {
                let target = if query { EditTarget::Query } else { EditTarget::Header(side) };
                self.set_computed_name(target, action, values)
            }
            Op::SetVariable { name } => self.set_variable(name),
            Op::SetMethod => {
                let method = self.pop_text("set-method")?;
                if method.as_str().is_empty() || !method.as_str().bytes().all(crate::http::is_tchar) {
                    return Err(Fault::eval(format!(
                        "Expression evaluation failed. Invalid method '{}'.",
                        method.as_str()
                    )));
                }
                self.state.method = Some(StoredText::keep(&method));
                Ok(Flow::Next)
            }
            Op::RewriteUri { copy_unmatched } => {
                let template = self.pop_text("rewrite-uri")?;
                self.rewrite_uri(template.as_str(), copy_unmatched)?;
                Ok(Flow::Next)
            }
            Op::RewriteUriConst { template, copy_unmatched } => {
                let template = self.program.const_str(template).ok_or_else(|| internal("rewrite-uri template"))?;
                self.rewrite_uri(template.as_str(), copy_unmatched)?;
                Ok(Flow::Next)
            }
            Op::SetBackendUrl => {
                let url = self.pop_text("set-backend-service")?;
                self.state.backend = Some(parse_backend_url(url.as_str())?);
                self.state.backend_id = None;
                Ok(Flow::Next)
            }
            Op::SetBackendId => {
                let id = self.pop_text("set-backend-service")?;
                self.state.backend_id = Some(id.as_str().to_owned());
                self.state.backend = None;
                Ok(Flow::Next)
            }
            Op::SetBody { side } => {
                let body = self.pop()?;
                let body = self.stored_body(body)?;
                self.set_body(side, body)?;
                Ok(Flow::Next)
            }
            Op::SetStatus { side } => self.set_status(side),
            Op::FindAndReplace { side } => self.find_and_replace(side),
            Op::XmlToJson { side } => self.xml_to_json(side),
            Op::JsonToXml { side, parse_date } => self.json_to_xml(side, parse_date),
            Op::Jsonp { side } => self.jsonp(side),
            Op::SetBodyLiquid { .. } => self.set_body_liquid(op),
            Op::ValidateContent(index) => self.validate_content(index),
            Op::RedirectContentUrls { side } => self.redirect_content_urls(side),
            Op::CheckHeader { name, values_first, values, ignore_case } => {
                let message = self.pop()?;
                let status = match self.pop()? {
                    Value::Int(status) if (100..=599).contains(&status) => status as u16,
                    _ => 401,
                };
                let message = match message {
                    Value::Str(text) => Some(text),
                    _ => None,
                };
                let allowed = Allowed { first: values_first, count: values, ignore_case };
                self.check_header(name, allowed, status, message)
            }
            Op::CheckHeaderConst { name, values_first, values, ignore_case, status, message } => {
                let message = match message {
                    Some(index) => Some(Text::Const(
                        self.program.const_str(index).ok_or_else(|| internal("check-header message"))?,
                    )),
                    None => None,
                };
                let allowed = Allowed { first: values_first, count: values, ignore_case };
                self.check_header(name, allowed, status, message)
            }
            Op::IpFilter(index) => self.ip_filter(index),
            Op::ValidateClientCertificate(index) => self.validate_client_certificate(index),
            Op::AuthenticationCertificate { by_thumbprint } => self.authentication_certificate(by_thumbprint),
            Op::Cors(index) => self.cors(index),
            Op::ValidateJwt { rule, token_on_stack } => self.validate_jwt(rule, token_on_stack),
            Op::AuthenticationBasic => {
                let password = self.pop_text("authentication-basic")?;
                let user = self.pop_text("authentication-basic")?;
                let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    user.as_str(),
                    password.as_str()
                ));
                self.state.authorization = Some(StoredText::Owned(format!("Basic {credentials}").into()));
                Ok(Flow::Next)
            }
            Op::Trace { source, severity } => {
                let message = self.pop()?;
                let message = match message {
                    Value::Str(text) => StoredText::keep(&text),
                    other => StoredText::keep(&Text::from({
                        let mut out = String::new();
                        other.write_display(&mut out);
                        out
                    })),
                };
                let source = self.literal(source)?;
                if self.state.traces.len() < TRACES_MAX {
                    self.state.traces.push(TraceEntry { source, severity, message });
                } else {
                    self.state.traces_dropped += 1;
                }
                Ok(Flow::Next)
            }
            Op::EmitMetric { name, namespace, names_first, dimensions } => {
                self.emit_metric(name, namespace, names_first, dimensions)
            }
            Op::EmitTokenMetric { namespace, names_first, dimensions } => {
                self.emit_token_metric(namespace, names_first, dimensions)
            }
            Op::ManagedIdentityToken { .. } => self.managed_identity_token(op),
            Op::BeginResponse => {
                self.begin_response(200);
                Ok(Flow::Next)
            }
            Op::BeginResponseFrom { name } => self.begin_response_from(name),
            Op::BeginOutgoing { copy } => self.begin_outgoing(copy),
            Op::OutgoingUrl => self.outgoing_url(),
            Op::OutgoingMethod => self.outgoing_method(),
            Op::SendRequest { variable, ignore_error, one_way, deferred } => {
                self.send_request(variable, ignore_error, one_way, deferred)
            }
            Op::Wait { any } => Ok(Flow::Suspend(None, Exit::WaitCalls { any })),
            Op::Respond => {
                if self.state.returned.is_none() {
                    self.begin_response(200);
                }
                Ok(Flow::Exit(Exit::Respond))
            }
            Op::MockResponse { status, content_type, example } => {
                self.begin_response(status);
                let content_type = StoredText::Literal(self.literal(content_type)?);
                let name = StoredText::Static("Content-Type");
                self.state.push_edit(
                    EditTarget::Header(Side::Returned),
                    ExistsAction::Override,
                    name,
                    [content_type].into_iter(),
                )?;
                if let Some(example) = example {
                    let body = StoredBody::Text(StoredText::Literal(self.literal(example)?));
                    if let Some(returned) = self.state.returned.as_mut() {
                        returned.body = Some(body);
                    }
                }
                Ok(Flow::Exit(Exit::Respond))
            }
            Op::LimitConcurrencyEnter { max } => {
                let key = self.pop_text("limit-concurrency")?;
                if self.state.guards.len() >= CONCURRENCY_NESTING_MAX {
                    return Err(Fault::eval("Expression evaluation failed. limit-concurrency blocks nest too deeply."));
                }
                match self.view.concurrency.try_enter(key.as_str(), max) {
                    Some(guard) => {
                        self.state.guards.push(guard);
                        Ok(Flow::Next)
                    }
                    None => Err(Fault::policy(429, "ConcurrencyLimitExceeded", "Too many concurrent requests.")),
                }
            }
            Op::Limit { limit, resume } => self.limit(limit, resume),
            Op::LimitCommit { .. } => self.limit_commit(),
            Op::TokenLimit { limit } => self.token_limit(limit),
            Op::ContentSafetyCall { rule, shield, skip } => self.content_safety_call(rule, shield, skip),
            Op::ContentSafetyVerdict { rule, shield, variable } => self.content_safety_verdict(rule, shield, variable),
            Op::LimitConcurrencyExit => {
                self.state.guards.pop();
                Ok(Flow::Next)
            }
            Op::ForwardRequest { timeout_ms, follow_redirects, buffer_response, fail_on_error_status } => {
                Ok(Flow::Suspend(
                    None,
                    Exit::Forward { timeout_ms, follow_redirects, buffer_response, fail_on_error_status },
                ))
            }
            Op::ForwardRequestComputed { buffer_response } => {
                let flag = |value: Value<'a>, name: &str| match value {
                    Value::Bool(flag) => Ok(flag),
                    other => Err(Fault::eval(format!(
                        "Expression evaluation failed. forward-request {name}: '{}' is not a bool.",
                        other.type_name()
                    ))),
                };
                let fail_on_error_status = flag(self.pop()?, "fail-on-error-status-code")?;
                let follow_redirects = flag(self.pop()?, "follow-redirects")?;
                let timeout_ms = match self.pop()? {
                    Value::Int(ms) if (0..=portcullis_contract::program::FORWARD_TIMEOUT_MS_MAX).contains(&ms) => {
                        ms as u32
                    }
                    other => {
                        let mut shown = String::new();
                        other.write_display(&mut shown);
                        return Err(Fault::eval(format!(
                            "Expression evaluation failed. forward-request timeout: {shown} is not a timeout."
                        )));
                    }
                };
                Ok(Flow::Suspend(
                    None,
                    Exit::Forward { timeout_ms, follow_redirects, buffer_response, fail_on_error_status },
                ))
            }
            Op::CacheLookup { caching, headers_first, headers, queries_first, queries } => {
                let allow_private = self.pop_flag("cache-lookup allow-private-response-caching")?;
                let must_revalidate = self.pop_flag("cache-lookup must-revalidate")?;
                let downstream = self.pop_text("cache-lookup downstream-caching-type")?;
                let downstream = DownstreamCaching::parse(downstream.as_str()).ok_or_else(|| {
                    Fault::eval(format!(
                        "Expression evaluation failed. downstream-caching-type '{}' is not none, private or public.",
                        downstream.as_str()
                    ))
                })?;
                let vary_by_developer_groups = self.pop_flag("cache-lookup vary-by-developer-groups")?;
                let vary_by_developer = self.pop_flag("cache-lookup vary-by-developer")?;
                let lookup = ResponseLookup {
                    caching,
                    vary_by_developer,
                    vary_by_developer_groups,
                    downstream,
                    must_revalidate,
                    allow_private,
                    program: self.program.index(),
                    headers_first,
                    headers,
                    queries_first,
                    queries,
                };
                Ok(Flow::Suspend(None, Exit::Cache(Box::new(CacheCall::LookupResponse(lookup)))))
            }
            Op::CacheStore => {
                let any_status = match self.pop()? {
                    Value::Null => false,
                    other => flag_of(other, "cache-store cache-response")?,
                };
                let duration_s = self.pop_duration("cache-store")?;
                self.state.cache_store = Some(StoreMark { duration_s, any_status });
                Ok(Flow::Next)
            }
            Op::CacheLookupValue { caching, variable, has_default } => {
                let default = if has_default {
                    match self.pop()? {
                        Value::Null => None,
                        value => Some(CachedValue::of(&value)),
                    }
                } else {
                    None
                };
                let key = self.pop_text("cache-lookup-value key")?.as_str().to_owned();
                let variable = self.literal(variable)?;
                let call = CacheCall::LookupValue { caching, key, variable, default };
                Ok(Flow::Suspend(None, Exit::Cache(Box::new(call))))
            }
            Op::CacheStoreValue { caching } => {
                let duration_s = self.pop_duration("cache-store-value")?;
                let value = match self.pop()? {
                    Value::Null => {
                        return Err(Fault::eval(
                            "Expression evaluation failed. cache-store-value: value cannot be null.",
                        ));
                    }
                    value => CachedValue::of(&value),
                };
                let key = self.pop_text("cache-store-value key")?.as_str().to_owned();
                let call = CacheCall::StoreValue { caching, key, value, duration_s };
                Ok(Flow::Suspend(None, Exit::Cache(Box::new(call))))
            }
            Op::CacheRemoveValue { caching } => {
                let key = self.pop_text("cache-remove-value key")?.as_str().to_owned();
                Ok(Flow::Suspend(None, Exit::Cache(Box::new(CacheCall::RemoveValue { caching, key }))))
            }
            Op::RetryInit(local) => {
                *self.locals.slots_mut().get_mut(usize::from(local)).ok_or_else(|| internal("local"))? = Value::Int(0);
                Ok(Flow::Next)
            }
            Op::RetryNext { local, count, interval_ms, max_interval_ms, delta_ms, first_fast_retry, target } => {
                let slot = self.locals.slots_mut().get_mut(usize::from(local)).ok_or_else(|| internal("local"))?;
                let attempt = match slot {
                    Value::Int(done) => *done + 1,
                    _ => return Err(internal("retry counter")),
                };
                *slot = Value::Int(attempt);
                if attempt > i64::from(count) {
                    return Ok(Flow::Next);
                }
                let rule = RetryInterval { interval_ms, max_interval_ms, delta_ms, first_fast_retry };
                match rule.before(attempt as u32) {
                    Duration::ZERO => Ok(Flow::Jump(target)),
                    wait => Ok(Flow::Suspend(Some(target), Exit::Wait(wait))),
                }
            }
            _ => Err(internal("not a statement")),
        }
    }

    /// Pops a value as a string (`ToString()` of non-strings; null fails).
    pub(super) fn pop_text(&mut self, policy: &str) -> Result<Text<'a>, Fault> {
        match self.pop()? {
            Value::Null => Err(Fault::eval(format!("Expression evaluation failed. {policy}: value cannot be null."))),
            other => other.to_text(),
        }
    }

    /// `emit-metric`: pops the dimension values and the value and keeps them for the worker's
    /// telemetry (bounded per request: past [`METRICS_MAX`] values are dropped and counted).
    fn emit_metric(&mut self, name: u32, namespace: u32, names_first: u32, dimensions: u8) -> Result<Flow, Fault> {
        let mut values = smallvec::SmallVec::<[StoredText; 4]>::new();
        for _ in 0..dimensions {
            let text = match self.pop()? {
                Value::Null => Text::from(String::new()),
                other => other.to_text()?,
            };
            values.push(StoredText::keep(&text));
        }
        values.reverse();
        let value = match self.pop()? {
            Value::Int(n) => n as f64,
            Value::Double(x) => x,
            Value::Str(text) => text.as_str().trim().parse::<f64>().map_err(|_| {
                Fault::eval(format!(
                    "Expression evaluation failed. emit-metric: value {:?} is not a number.",
                    text.as_str()
                ))
            })?,
            _ => return Err(Fault::eval("Expression evaluation failed. emit-metric: value is not a number.")),
        };
        if self.state.metrics.len() >= METRICS_MAX {
            self.state.metrics_dropped += 1;
            return Ok(Flow::Next);
        }
        let mut dimensions_named = smallvec::SmallVec::new();
        for (offset, value) in values.into_iter().enumerate() {
            dimensions_named.push((self.literal(names_first + offset as u32)?, value));
        }
        let metric = EmittedMetric {
            namespace: self.literal(namespace)?,
            name: self.literal(name)?,
            dimensions: dimensions_named,
            value,
        };
        self.state.metrics.push(metric);
        Ok(Flow::Next)
    }

    /// Pops a bool an attribute evaluated to.
    fn pop_flag(&mut self, what: &str) -> Result<bool, Fault> {
        let value = self.pop()?;
        flag_of(value, what)
    }

    /// Pops a duration in seconds (0 to [`CACHE_DURATION_S_MAX`]).
    fn pop_duration(&mut self, policy: &str) -> Result<u64, Fault> {
        match self.pop()? {
            Value::Int(seconds) if (0..=CACHE_DURATION_S_MAX).contains(&seconds) => Ok(seconds as u64),
            other => {
                let mut shown = String::new();
                other.write_display(&mut shown);
                Err(Fault::eval(format!(
                    "Expression evaluation failed. {policy} duration: '{shown}' is not a duration."
                )))
            }
        }
    }

    pub(super) fn literal(&self, index: u32) -> Result<crate::policy::load::LitRef, Fault> {
        self.program.const_str(index).map(|text| text.origin()).ok_or_else(|| internal("string constant"))
    }

    fn set_values(&mut self, target: EditTarget, action: ExistsAction, name: u32, count: u16) -> Result<Flow, Fault> {
        let name = StoredText::Literal(self.literal(name)?);
        self.push_values(target, action, name, count)
    }

    /// Pops `count` values (nulls skipped, as APIM does) into an edit of `name`.
    fn push_values(
        &mut self,
        target: EditTarget,
        action: ExistsAction,
        name: StoredText,
        count: u16,
    ) -> Result<Flow, Fault> {
        let count = usize::from(count);
        let slots = self.stack.top_n(count)?;
        for slot in slots.iter_mut() {
            if !matches!(slot, Value::Str(_) | Value::Null) {
                *slot = Value::Str(slot.to_text()?);
            }
            if let (EditTarget::Header(_), Value::Str(text)) = (target, &*slot) {
                if !is_header_value(text.as_str()) {
                    return Err(Fault::eval("Expression evaluation failed. A header value contains CR, LF or NUL."));
                }
            }
        }
        // Null values are skipped, as APIM does; the stack and the state are disjoint borrows.
        let values = slots.iter().filter_map(|value| match value {
            Value::Str(text) => Some(StoredText::keep(text)),
            _ => None,
        });
        let pushed = self.state.push_edit(target, action, name, values);
        self.stack.drop_n(count);
        pushed.map(|()| Flow::Next)
    }

    /// `set-header`/`set-query-parameter` with a computed name: the name lies under the values.
    fn set_computed_name(&mut self, target: EditTarget, action: ExistsAction, count: u16) -> Result<Flow, Fault> {
        let name = match self.stack.top_n(usize::from(count) + 1)?.first() {
            Some(Value::Null) | None => None,
            Some(value) => Some(value.to_text()?),
        };
        let policy = if target == EditTarget::Query { "set-query-parameter" } else { "set-header" };
        let valid = match (&name, target) {
            (Some(name), EditTarget::Query) => !name.as_str().is_empty(),
            (Some(name), _) => !name.as_str().is_empty() && name.as_str().bytes().all(crate::http::is_tchar),
            (None, _) => false,
        };
        let name = match name {
            Some(name) if valid => StoredText::keep(&name),
            other => {
                let shown = other.as_ref().map_or("null", |name| name.as_str());
                return Err(Fault::eval(format!(
                    "Expression evaluation failed. {policy}: '{shown}' is not a valid name."
                )));
            }
        };
        let flow = self.push_values(target, action, name, count)?;
        // The name, under the values.
        self.stack.drop_n(1);
        Ok(flow)
    }

    fn set_variable(&mut self, name: u32) -> Result<Flow, Fault> {
        let name = StoredText::Literal(self.literal(name)?);
        let value = self.pop()?;
        let program = self.program;
        let stored = crate::policy::state::Stored::keep(&value, |regex| super::regex_origin(program, regex))?;
        self.put_variable(name, stored)?;
        Ok(Flow::Next)
    }

    /// Sets `context.Variables[name]`.
    pub(super) fn put_variable(&mut self, name: StoredText, stored: crate::policy::state::Stored) -> Result<(), Fault> {
        let programs = self.view.programs;
        let key = name.resolve(programs);
        let full = self.state.variables.len() >= crate::policy::state::VARIABLES_MAX;
        match self.state.variables.iter_mut().find(|(existing, _)| existing.resolve(programs) == key) {
            Some(slot) => slot.1 = stored,
            None if full => return Err(Fault::eval("Expression evaluation failed. Too many variables.")),
            None => self.state.variables.push((name, stored)),
        }
        Ok(())
    }

    pub(super) fn begin_response(&mut self, status: u16) {
        self.state.edits.retain(|edit| edit.target != EditTarget::Header(Side::Returned));
        self.state.returned = Some(BuiltResponse { status, reason: None, body: None });
    }

    fn stored_body(&self, body: Value<'a>) -> Result<StoredBody, Fault> {
        Ok(match body {
            Value::Null => StoredBody::Bytes(std::rc::Rc::from(&[][..])),
            Value::Str(text) => StoredBody::Text(StoredText::keep(&text)),
            Value::Bytes(bytes) => StoredBody::Bytes(bytes),
            other => {
                let mut out = String::new();
                other.write_display(&mut out);
                StoredBody::Text(StoredText::Owned(out.into()))
            }
        })
    }

    pub(super) fn set_body(&mut self, side: Side, body: StoredBody) -> Result<(), Fault> {
        match side {
            Side::Request => self.state.request_body = BodyEdit::Replaced(body),
            Side::Response => self.state.response_body = BodyEdit::Replaced(body),
            Side::Returned => match self.state.returned.as_mut() {
                Some(returned) => returned.body = Some(body),
                None => return Err(internal("set-body outside return-response")),
            },
            Side::Outgoing => {
                let bytes: std::rc::Rc<[u8]> = std::rc::Rc::from(body.bytes(self.view.programs));
                match self.state.outgoing.as_mut() {
                    Some(outgoing) => outgoing.body = Some(bytes),
                    None => return Err(internal("set-body outside send-request")),
                }
            }
        }
        Ok(())
    }

    fn set_status(&mut self, side: Side) -> Result<Flow, Fault> {
        let reason = self.pop()?;
        let code = self.pop()?;
        let code = match code {
            Value::Int(code) if (100..=599).contains(&code) => code as u16,
            other => {
                let mut text = String::new();
                other.write_display(&mut text);
                match text.trim().parse::<u16>() {
                    Ok(code) if (100..=599).contains(&code) => code,
                    _ => {
                        return Err(Fault::eval(format!(
                            "Expression evaluation failed. set-status: invalid code '{text}'."
                        )));
                    }
                }
            }
        };
        let reason = match reason {
            Value::Null => None,
            other => {
                let text = other.to_text()?;
                if !is_header_value(text.as_str()) {
                    return Err(Fault::eval(
                        "Expression evaluation failed. set-status: the reason contains CR, LF or NUL.",
                    ));
                }
                Some(StoredText::keep(&text))
            }
        };
        match side {
            Side::Response => self.state.status = Some((code, reason)),
            Side::Returned => match self.state.returned.as_mut() {
                Some(returned) => {
                    returned.status = code;
                    returned.reason = reason;
                }
                None => return Err(internal("set-status outside return-response")),
            },
            Side::Request | Side::Outgoing => return Err(internal("set-status on a request")),
        }
        Ok(Flow::Next)
    }

    /// The body of `side` as the policies left it, if it is available.
    pub(super) fn current_body(&self, side: Side) -> Result<Cow<'_, [u8]>, Fault> {
        let programs = self.view.programs;
        let (edit, original) = match side {
            Side::Request => (&self.state.request_body, self.view.request_body),
            Side::Response => (&self.state.response_body, self.view.response.and_then(|response| response.body)),
            Side::Returned => {
                return Ok(Cow::Borrowed(
                    self.state.returned.as_ref().and_then(|r| r.body.as_ref()).map_or(&[][..], |b| b.bytes(programs)),
                ));
            }
            Side::Outgoing => {
                return Ok(Cow::Borrowed(self.state.outgoing.as_ref().and_then(|o| o.body.as_deref()).unwrap_or(&[])));
            }
        };
        match edit {
            BodyEdit::Replaced(body) => Ok(Cow::Borrowed(body.bytes(programs))),
            BodyEdit::Consumed => Ok(Cow::Borrowed(&[])),
            BodyEdit::Unchanged => original
                .map(Cow::Borrowed)
                .ok_or_else(|| Fault::eval("Expression evaluation failed. The message body was not buffered.")),
        }
    }

    fn find_and_replace(&mut self, side: Side) -> Result<Flow, Fault> {
        let to = self.pop()?;
        let from = self.pop_text("find-and-replace")?;
        if from.as_str().is_empty() {
            return Err(Fault::builtin("find-and-replace", "String cannot be of zero length. (Parameter 'oldValue')"));
        }
        let mut to_text = String::new();
        to.write_display(&mut to_text);
        let body = String::from_utf8_lossy(&self.current_body(side)?).replace(from.as_str(), &to_text);
        self.set_body(side, StoredBody::Text(StoredText::Owned(body.into())))?;
        Ok(Flow::Next)
    }

    /// `redirect-content-urls`: the backend's base URL in the response body becomes the API's
    /// URL as the client called it (in the request body, the reverse). A body that is not UTF-8
    /// text is left alone.
    fn redirect_content_urls(&mut self, side: Side) -> Result<Flow, Fault> {
        let view = self.view;
        let (scheme, host, port, base_path) = match &self.state.backend {
            Some(backend) => (backend.scheme, backend.host.as_str(), backend.port, backend.base_path.as_str()),
            None => (
                view.api.backend.scheme,
                view.api.backend.host.as_str(),
                view.api.backend.port,
                view.api.backend.base_path.as_str(),
            ),
        };
        let scheme = match scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let default_port = matches!((scheme, port), ("http", 80) | ("https", 443));
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
        let backend = if default_port {
            format!("{scheme}://{host}{base_path}")
        } else {
            format!("{scheme}://{host}:{port}{base_path}")
        };
        let gateway_scheme = match self.member(
            Value::Handle(crate::policy::value::Handle::Url(UrlKind::Original)),
            portcullis_contract::program::Prop::Scheme,
        )? {
            Value::Str(text) => text.as_str().to_owned(),
            _ => "http".to_owned(),
        };
        let authority = wire_text(view.request.header(view.request_buf, b"host").unwrap_or(b"")).as_str().to_owned();
        let api_path = view.api.path.trim_matches('/');
        let gateway = if api_path.is_empty() {
            format!("{gateway_scheme}://{authority}")
        } else {
            format!("{gateway_scheme}://{authority}/{api_path}")
        };
        let (from, to) = if side == Side::Response { (backend, gateway) } else { (gateway, backend) };
        let body = self.current_body(side)?;
        let Ok(text) = std::str::from_utf8(&body) else { return Ok(Flow::Next) };
        if from.is_empty() || !text.contains(from.as_str()) {
            return Ok(Flow::Next);
        }
        let replaced = text.replace(from.as_str(), &to);
        self.set_body(side, StoredBody::Text(StoredText::Owned(replaced.into())))?;
        Ok(Flow::Next)
    }

    /// `xml-to-json`: pops kind, apply, consider-accept-header, always-array-child-elements.
    fn xml_to_json(&mut self, side: Side) -> Result<Flow, Fault> {
        let always_array = self.pop_switch("xml-to-json", "always-array-child-elements")?;
        let consider_accept = self.pop_switch("xml-to-json", "consider-accept-header")?;
        let apply = self.pop_text("xml-to-json")?;
        let kind = match self.pop_text("xml-to-json")?.as_str() {
            "direct" => XmlToJsonKind::Direct,
            "javascript-friendly" => XmlToJsonKind::JavascriptFriendly,
            other => {
                return Err(Fault::eval(format!(
                    "Expression evaluation failed. xml-to-json: kind '{other}' is not direct or javascript-friendly."
                )));
            }
        };
        let only_xml = match apply.as_str() {
            "always" => false,
            "content-type-xml" => true,
            other => {
                return Err(Fault::eval(format!(
                    "Expression evaluation failed. xml-to-json: apply '{other}' is not always or content-type-xml."
                )));
            }
        };
        if (only_xml && !self.content_type_has(side, "xml")) || (consider_accept && !self.accepts("json")) {
            return Ok(Flow::Next);
        }
        let json = transform::xml_to_json(&self.current_body(side)?, kind, always_array)
            .map_err(|error| Fault::policy(500, "XmlToJsonConversionFailed", error.0))?;
        self.replace_converted(side, json, "application/json")
    }

    /// `json-to-xml`: pops apply, consider-accept-header, namespace-separator, namespace-prefix,
    /// attribute-block-name.
    fn json_to_xml(&mut self, side: Side, parse_date: bool) -> Result<Flow, Fault> {
        let optional = |value: Value<'a>| -> Result<Option<Text<'a>>, Fault> {
            match value {
                Value::Null => Ok(None),
                other => other.to_text().map(Some),
            }
        };
        let attribute_block = optional(self.pop()?)?;
        let prefix = optional(self.pop()?)?;
        let separator = optional(self.pop()?)?;
        let consider_accept = self.pop_switch("json-to-xml", "consider-accept-header")?;
        let apply = self.pop_text("json-to-xml")?;
        let only_json = match apply.as_str() {
            "always" => false,
            "content-type-json" => true,
            other => {
                return Err(Fault::eval(format!(
                    "Expression evaluation failed. json-to-xml: apply '{other}' is not always or content-type-json."
                )));
            }
        };
        if (only_json && !self.content_type_has(side, "json")) || (consider_accept && !self.accepts("xml")) {
            return Ok(Flow::Next);
        }
        let separator = match separator.as_ref().map(|text| text.as_str()) {
            None => Some('_'),
            Some(text) => {
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (None, _) => None,
                    (Some(c), None) => Some(c),
                    _ => {
                        return Err(Fault::eval(format!(
                            "Expression evaluation failed. json-to-xml: namespace-separator '{text}' is not one character."
                        )));
                    }
                }
            }
        };
        let settings = transform::JsonToXml {
            parse_date,
            namespace_separator: separator,
            namespace_prefix: prefix.as_ref().map(|text| text.as_str()),
            attribute_block_name: attribute_block.as_ref().map(|text| text.as_str()),
        };
        let xml = transform::json_to_xml(&self.current_body(side)?, &settings)
            .map_err(|error| Fault::policy(500, "JsonToXmlConversionFailed", error.0))?;
        self.replace_converted(side, xml, "application/xml")
    }

    /// `jsonp`: the body becomes `callback(body)` when the request names a callback.
    fn jsonp(&mut self, side: Side) -> Result<Flow, Fault> {
        let parameter = self.pop_text("jsonp")?;
        let Some(callback) = self.query_value(UrlKind::Original, parameter.as_str()) else {
            return Ok(Flow::Next);
        };
        if !transform::is_callback_name(callback.as_str()) {
            return Err(Fault::policy(
                400,
                "CallbackParameterInvalid",
                format!("Value of the {} query parameter is not a valid JavaScript function name.", parameter.as_str()),
            ));
        }
        let body = self.current_body(side)?;
        let mut wrapped = String::with_capacity(body.len() + callback.as_str().len() + 2);
        wrapped.push_str(callback.as_str());
        wrapped.push('(');
        wrapped.push_str(&String::from_utf8_lossy(&body));
        wrapped.push(')');
        self.replace_converted(side, wrapped, "application/javascript")
    }

    /// A bool attribute: a bool, or the text `true`/`false` (either case).
    fn pop_switch(&mut self, policy: &str, attribute: &str) -> Result<bool, Fault> {
        match self.pop()? {
            Value::Bool(flag) => Ok(flag),
            other => {
                let text = other.to_text()?;
                match text.as_str().to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(Fault::eval(format!(
                        "Expression evaluation failed. {policy}: {attribute} '{}' is not true or false.",
                        text.as_str()
                    ))),
                }
            }
        }
    }

    /// The side's `Content-Type` (as policies left it) names `kind` (`xml`: `text/xml`,
    /// `application/soap+xml` ...; `json`: `application/json`, `application/problem+json` ...).
    pub(super) fn content_type_has(&self, side: Side, kind: &str) -> bool {
        let message = if side == Side::Request { Message::Request } else { Message::Response };
        self.header_value(message, "Content-Type").is_some_and(|value| {
            let essence = value.as_str().split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            essence.split('/').nth(1).is_some_and(|subtype| subtype == kind || subtype.ends_with(&format!("+{kind}")))
        })
    }

    /// The request's `Accept` takes `application/<kind>`: absent, `*/*`, `application/*`, or a
    /// range naming it (`application/json`, `text/xml`, `...+json`) with a non-zero quality.
    fn accepts(&self, kind: &str) -> bool {
        let Some(accept) = self.header_value(Message::Request, "Accept") else { return true };
        accept.as_str().split(',').any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let refused = parts.any(|parameter| {
                parameter.trim().strip_prefix("q=").is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            let subtype = media.split('/').nth(1).unwrap_or_default();
            !refused
                && (media == "*/*"
                    || media == "application/*"
                    || subtype == kind
                    || subtype.ends_with(&format!("+{kind}")))
        })
    }

    /// Sets a converted body and its `Content-Type`.
    fn replace_converted(&mut self, side: Side, body: String, content_type: &'static str) -> Result<Flow, Fault> {
        self.set_body(side, StoredBody::Text(StoredText::Owned(body.into())))?;
        let target = EditTarget::Header(side);
        let value = StoredText::Static(content_type);
        self.state.push_edit(
            target,
            ExistsAction::Override,
            StoredText::Static("Content-Type"),
            std::iter::once(value),
        )?;
        Ok(Flow::Next)
    }

    fn check_header(
        &mut self,
        name: u32,
        allowed: Allowed,
        status: u16,
        message: Option<Text<'a>>,
    ) -> Result<Flow, Fault> {
        let Allowed { first, count, ignore_case } = allowed;
        let name = self.program.const_str(name).ok_or_else(|| internal("header name"))?.as_str();
        // Built only on failure: the passing path allocates nothing.
        let response_message = || match &message {
            Some(text) if !text.as_str().is_empty() => Some(Cow::Owned(text.as_str().to_owned())),
            _ => None,
        };
        let Some(value) = self.header_value(Message::Request, name) else {
            let mut fault = Fault::policy(
                status,
                "HeaderNotFound",
                format!("Header {name} was not found in the request. Access denied."),
            );
            fault.response_message = response_message();
            return Err(fault);
        };
        if count == 0 {
            return Ok(Flow::Next);
        }
        let allowed = |candidate: &str| {
            (first..first + u32::from(count)).filter_map(|index| self.program.const_str(index)).any(|allowed| {
                if ignore_case {
                    allowed.as_str().eq_ignore_ascii_case(candidate)
                } else {
                    allowed.as_str() == candidate
                }
            })
        };
        let value = value.as_str();
        if allowed(value.trim()) || value.split(',').all(|token| allowed(token.trim())) {
            return Ok(Flow::Next);
        }
        let mut fault = Fault::policy(
            status,
            "HeaderValueNotAllowed",
            format!("Header {name} value of {value} is not allowed. Access denied."),
        );
        fault.response_message = response_message();
        Err(fault)
    }

    fn ip_filter(&mut self, index: u32) -> Result<Flow, Fault> {
        let filter = self.program.program().ip_filters.get(index as usize).ok_or_else(|| internal("ip-filter"))?;
        let address = ip_number(self.view.peer);
        let listed = filter.ranges.iter().any(|range| range.first <= address && address <= range.last);
        if listed == filter.allow {
            return Ok(Flow::Next);
        }
        let ip = super::members::client_ip(self.view.peer);
        Err(Fault::policy(403, "CallerIpNotAllowed", format!("Caller IP address {ip} is not allowed. Access denied.")))
    }

    fn cors(&mut self, index: u32) -> Result<Flow, Fault> {
        let program = self.program;
        let rule = program.program().cors.get(index as usize).ok_or_else(|| internal("cors"))?;
        let view = self.view;
        let header = |name: &[u8]| view.request.header(view.request_buf, name).map(wire_text);
        let Some(origin) = header(b"origin") else { return Ok(Flow::Next) };
        let origin_allowed = cors_origin_allowed(rule, origin.as_str());
        let request_method = header(b"access-control-request-method");
        let preflight = view.request.method(view.request_buf) == b"OPTIONS" && request_method.is_some();
        if !preflight {
            if origin_allowed {
                self.state.cors = Some(CorsMark {
                    allow_origin: allow_origin(rule, origin.as_str()).into(),
                    allow_credentials: rule.allow_credentials,
                    program: program.index(),
                    rule: index,
                });
            }
            return Ok(Flow::Next);
        }
        let method = request_method.as_ref().map_or("", Text::as_str);
        let method_allowed =
            rule.allowed_methods.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(method));
        let requested_headers = header(b"access-control-request-headers");
        let headers_allowed =
            requested_headers.as_ref().is_none_or(|requested| {
                requested.as_str().split(',').map(str::trim).filter(|h| !h.is_empty()).all(|h| {
                    rule.allowed_headers.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(h))
                })
            });
        if !(origin_allowed && method_allowed && headers_allowed) {
            if rule.terminate_unmatched_request {
                self.begin_response(200);
                return Ok(Flow::Exit(Exit::Respond));
            }
            return Ok(Flow::Next);
        }
        self.begin_response(200);
        let target = EditTarget::Header(Side::Returned);
        let add = |state: &mut crate::policy::state::RequestState, name: &'static str, value: String| {
            state.push_edit(
                target,
                ExistsAction::Override,
                StoredText::Static(name),
                [StoredText::Owned(value.into())].into_iter(),
            )
        };
        add(self.state, "Access-Control-Allow-Origin", allow_origin(rule, origin.as_str()))?;
        if rule.allow_credentials {
            add(self.state, "Access-Control-Allow-Credentials", "true".to_owned())?;
        }
        add(self.state, "Access-Control-Allow-Methods", method.to_owned())?;
        if let Some(requested) = requested_headers {
            add(self.state, "Access-Control-Allow-Headers", requested.as_str().to_owned())?;
        }
        if let Some(max_age) = rule.preflight_max_age_s {
            add(self.state, "Access-Control-Max-Age", max_age.to_string())?;
        }
        Ok(Flow::Exit(Exit::Respond))
    }

    fn rewrite_uri(&mut self, template: &str, copy_unmatched: bool) -> Result<(), Fault> {
        let view = self.view;
        let original_query = Target::parse(view.request.target(view.request_buf)).query().unwrap_or_default();
        let mut out = std::mem::take(&mut self.state.rewritten);
        out.clear();
        if !template.starts_with('/') {
            out.push('/');
        }
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                self.state.rewritten = out;
                return Err(Fault::eval(
                    "Expression evaluation failed. rewrite-uri: unterminated '{' in the template.",
                ));
            };
            let name = &after[..close];
            let value = match self.matched(name) {
                Some(value) => Cow::Borrowed(value),
                // A query parameter's value as `Url.Query` reads it.
                None => url::query_pairs(original_query)
                    .find(|(key, _)| *key == name.as_bytes())
                    .map(|(_, value)| url::percent_decode_str(value, Coding::Form))
                    .unwrap_or(Cow::Borrowed("")),
            };
            let _ = write!(out, "{}", url::percent_encode(value.as_bytes(), Coding::Rfc3986));
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        if copy_unmatched {
            let template_query = Target::parse(template.as_bytes()).query().unwrap_or_default();
            let mut has_query = out.contains('?');
            for (key, value) in url::query_pairs(original_query) {
                let placeholder =
                    |w: &[u8]| w.first() == Some(&b'{') && w.last() == Some(&b'}') && &w[1..w.len() - 1] == key;
                let used = url::query_pairs(template_query).any(|(name, _)| name == key)
                    || template.as_bytes().windows(key.len() + 2).any(placeholder);
                if used {
                    continue;
                }
                out.push(if has_query { '&' } else { '?' });
                has_query = true;
                out.push_str(std::str::from_utf8(key).unwrap_or(""));
                if !value.is_empty() {
                    out.push('=');
                    out.push_str(std::str::from_utf8(value).unwrap_or(""));
                }
            }
        }
        if !out.bytes().all(|b| b.is_ascii_graphic()) {
            self.state.rewritten = out;
            return Err(Fault::eval(
                "Expression evaluation failed. rewrite-uri: the template has characters a URL cannot carry.",
            ));
        }
        self.state.rewritten = out;
        self.state.rewrite = true;
        Ok(())
    }
}

/// The values `check-header` allows: the constants `first..first + count`.
#[derive(Debug, Clone, Copy)]
struct Allowed {
    first: u32,
    count: u16,
    ignore_case: bool,
}

/// `retry`'s wait before attempt `n` (1-based), per APIM's documented rules: fixed `interval`;
/// with `delta`, linear (`interval + (n-1)·delta`), or with `max-interval` as well, exponential
/// (`interval + (2^(n-1) - 1)·delta`, without APIM's ±20 % jitter so runs are reproducible),
/// capped at `max-interval`; `first-fast-retry` makes the first retry immediate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryInterval {
    pub(crate) interval_ms: u32,
    pub(crate) max_interval_ms: u32,
    pub(crate) delta_ms: u32,
    pub(crate) first_fast_retry: bool,
}

impl RetryInterval {
    pub(crate) fn before(self, attempt: u32) -> Duration {
        if attempt == 0 || (self.first_fast_retry && attempt == 1) {
            return Duration::ZERO;
        }
        let interval = u64::from(self.interval_ms);
        let delta = u64::from(self.delta_ms);
        let steps = u64::from(attempt - 1);
        let ms = if delta == 0 {
            interval
        } else if self.max_interval_ms == 0 {
            interval.saturating_add(steps.saturating_mul(delta))
        } else {
            let factor = 1u64.checked_shl(steps.min(62) as u32).unwrap_or(u64::MAX).saturating_sub(1);
            interval.saturating_add(factor.saturating_mul(delta))
        };
        let capped = if self.max_interval_ms > 0 { ms.min(u64::from(self.max_interval_ms)) } else { ms };
        Duration::from_millis(capped)
    }
}

/// An address as the ip-filter ranges store it (IPv4 as IPv4-mapped IPv6).
pub(crate) fn ip_number(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn cors_origin_allowed(rule: &Cors, origin: &str) -> bool {
    rule.allowed_origins.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
}

/// `Access-Control-Allow-Origin`: `*` for a wildcard rule without credentials, else the origin.
fn allow_origin(rule: &Cors, origin: &str) -> String {
    if !rule.allow_credentials && rule.allowed_origins.iter().any(|allowed| allowed == "*") {
        "*".to_owned()
    } else {
        origin.to_owned()
    }
}

/// Parses `http(s)://host[:port][/path]` for `set-backend-service`.
pub(crate) fn parse_backend_url(url: &str) -> Result<BackendOverride, Fault> {
    let invalid =
        || Fault::eval(format!("Expression evaluation failed. set-backend-service: invalid base-url '{url}'."));
    if url.len() > BACKEND_URL_BYTES_MAX || !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    let (scheme, rest) = if let Some(rest) = strip_prefix_ignore_case(url, "https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = strip_prefix_ignore_case(url, "http://") {
        (Scheme::Http, rest)
    } else {
        return Err(invalid());
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    if path.contains(['?', '#']) || authority.is_empty() || authority.contains('@') {
        return Err(invalid());
    }
    let (host, port) = super::members::split_host(authority.as_bytes());
    let host = std::str::from_utf8(host).map_err(|_| invalid())?;
    let explicit_port = authority.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
    if host.is_empty() || (explicit_port && port.is_none()) {
        return Err(invalid());
    }
    let default_port = if scheme == Scheme::Https { 443 } else { 80 };
    let port = port.unwrap_or(default_port);
    let host_part = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
    let authority = if port == default_port { host_part } else { format!("{host_part}:{port}") };
    Ok(BackendOverride {
        scheme,
        host: host.to_owned(),
        port,
        base_path: path.trim_end_matches('/').to_owned(),
        authority,
    })
}

fn strip_prefix_ignore_case<'s>(text: &'s str, prefix: &str) -> Option<&'s str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) { text.get(prefix.len()..) } else { None }
}
