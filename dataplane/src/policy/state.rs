//! What persists of one request across its sections and suspensions: owned, never borrowing
//! the connection buffer (the proxy takes it while relaying bodies and across awaits).
//!
//! Strings that come from the program's constants are kept as [`LitRef`]s, resolved against
//! the request's snapshot when they are read or applied: a literal `set-header` stores 8 bytes
//! and allocates nothing. The vectors keep their capacity across [`RequestState::reset`], so a
//! connection that reuses its state allocates nothing per request once warm.

use std::rc::Rc;

use portcullis_contract::model::Scheme;
use portcullis_contract::program::{ExistsAction, Section, Severity, Side};

use crate::policy::concurrency::ConcurrencyGuard;
use crate::policy::error::{Fault, LastError};
use crate::policy::load::{LitRef, LoadedConst, Programs};
use crate::policy::value::{IterState, Text, Value};

/// Header and query edits one request may make: bounds memory per request.
pub const EDITS_MAX: usize = 512;
/// Values across all edits of one request.
pub const EDIT_VALUES_MAX: usize = 4096;
/// `context.Variables` entries per request.
pub const VARIABLES_MAX: usize = 1024;
/// Trace entries per request (more are dropped, counted in [`RequestState::traces_dropped`]).
pub const TRACES_MAX: usize = 256;
/// `emit-metric` values one request may emit (more are dropped, counted in
/// [`RequestState::metrics_dropped`]).
pub const METRICS_MAX: usize = 64;
/// `limit-concurrency` blocks one request may be inside at once (nesting depth).
pub const CONCURRENCY_NESTING_MAX: usize = 16;

/// A string kept in request state.
#[derive(Debug, Clone)]
pub enum StoredText {
    /// A constant of one of the snapshot's programs.
    Literal(LitRef),
    /// A string of the gateway's own (CORS header names).
    Static(&'static str),
    Owned(Rc<str>),
}

impl StoredText {
    /// Keeps `text`: constants by reference, anything else as a shared copy (or share).
    pub fn keep(text: &Text<'_>) -> Self {
        match text {
            Text::Const(constant) => StoredText::Literal(constant.origin()),
            Text::Borrowed(borrowed) => StoredText::Owned(Rc::from(*borrowed)),
            Text::Shared(shared) => StoredText::Owned(shared.clone()),
        }
    }

    /// The text, resolved against the request's programs.
    pub fn resolve<'p>(&'p self, programs: &'p Programs) -> &'p str {
        match self {
            StoredText::Literal(origin) => programs.literal(*origin),
            StoredText::Static(text) => text,
            StoredText::Owned(text) => text,
        }
    }

    /// The text as a VM value for a run over `programs`.
    pub fn to_text<'a>(&self, programs: &'a Programs) -> Text<'a> {
        match self {
            StoredText::Literal(origin) => match programs.get(origin.program).and_then(|p| p.const_str(origin.index)) {
                Some(constant) => Text::Const(constant),
                None => Text::Borrowed(""),
            },
            StoredText::Static(text) => Text::Borrowed(text),
            StoredText::Owned(text) => Text::Shared(text.clone()),
        }
    }
}

/// A value kept in request state (`context.Variables`, a suspended program's locals).
#[derive(Debug, Clone)]
pub enum Stored {
    Text(StoredText),
    /// A regular-expression constant.
    Regex(LitRef),
    /// Any other value, owned.
    Value(Value<'static>),
}

impl Stored {
    /// Keeps `value` beyond the run: literals by reference, borrowed strings copied.
    pub fn keep(value: &Value<'_>, regex_origin: impl Fn(&regex::Regex) -> Option<LitRef>) -> Result<Self, Fault> {
        Ok(match value {
            Value::Str(text) => Stored::Text(StoredText::keep(text)),
            Value::Regex(regex) => Stored::Regex(
                regex_origin(regex)
                    .ok_or_else(|| Fault::eval("Expression evaluation failed. Cannot store a Regex."))?,
            ),
            other => Stored::Value(unborrowed(other)?),
        })
    }

    /// The value for a run over `programs`.
    pub fn to_value<'a>(&self, programs: &'a Programs) -> Value<'a> {
        match self {
            Stored::Text(text) => Value::Str(text.to_text(programs)),
            Stored::Regex(origin) => {
                match programs.get(origin.program).and_then(|p| p.consts().get(origin.index as usize)) {
                    Some(LoadedConst::Regex(regex)) => Value::Regex(regex),
                    _ => Value::Null,
                }
            }
            // `keep` refused every value `unborrowed` cannot copy, so this never fails.
            Stored::Value(value) => unborrowed(value).unwrap_or(Value::Null),
        }
    }
}

/// A deep copy of `value` that borrows nothing, for any lifetime: how values are kept in request
/// state and handed back to a run. Containers are invariant in their lifetime, so they are
/// copied (a list kept in a variable and changed later is changed in the copy only; JSON stays
/// shared). A regex inside a collection cannot be kept (a top-level one is [`Stored::Regex`]).
fn unborrowed<'b>(value: &Value<'_>) -> Result<Value<'b>, Fault> {
    Ok(match value {
        Value::Null => Value::Null,
        Value::Bool(v) => Value::Bool(*v),
        Value::Int(v) => Value::Int(*v),
        Value::Double(v) => Value::Double(*v),
        Value::Str(text) => Value::Str(match text {
            Text::Shared(shared) => Text::Shared(shared.clone()),
            other => Text::Shared(Rc::from(other.as_str())),
        }),
        Value::Bytes(v) => Value::Bytes(v.clone()),
        Value::Array(items) => Value::array(items.borrow().iter().map(unborrowed).collect::<Result<_, _>>()?),
        Value::Dict(entries) => Value::Dict(Rc::new(std::cell::RefCell::new(
            entries.borrow().iter().map(|(k, v)| Ok((k.clone(), unborrowed(v)?))).collect::<Result<_, Fault>>()?,
        ))),
        Value::Pair(pair) => Value::Pair(Rc::new((unborrowed(&pair.0)?, unborrowed(&pair.1)?))),
        Value::Json(v) => Value::Json(v.clone()),
        Value::JProperty(v) => Value::JProperty(v.clone()),
        Value::Jwt(v) => Value::Jwt(v.clone()),
        Value::Claims(v) => Value::Claims(v.clone()),
        Value::Basic(v) => Value::Basic(v.clone()),
        Value::DateTime(v) => Value::DateTime(*v),
        Value::TimeSpan(v) => Value::TimeSpan(*v),
        Value::Guid(v) => Value::Guid(*v),
        Value::Match(v) => Value::Match(v.clone()),
        Value::Groups(v) => Value::Groups(v.clone()),
        Value::Group(v, i) => Value::Group(v.clone(), *i),
        Value::Handle(v) => Value::Handle(*v),
        Value::Response(v) => Value::Response(v.clone()),
        Value::ResponseHeaders(v) => Value::ResponseHeaders(v.clone()),
        Value::ResponseBody(v) => Value::ResponseBody(v.clone()),
        Value::Iter(iter) => Value::Iter(Rc::new(IterState {
            items: iter.items.iter().map(unborrowed).collect::<Result<_, _>>()?,
            next: iter.next.clone(),
        })),
        Value::Regex(_) => {
            return Err(Fault::eval("Expression evaluation failed. Cannot store a Regex inside a collection."));
        }
    })
}

/// What an edit changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditTarget {
    Header(Side),
    Query,
}

/// One `set-header` / `set-query-parameter`, in the order the policies ran.
#[derive(Debug, Clone)]
pub struct Edit {
    pub target: EditTarget,
    pub action: ExistsAction,
    pub name: StoredText,
    /// Range into [`RequestState`]'s value list.
    values: (u32, u32),
}

impl Edit {
    /// Whether this edit changes `name` on `target`: header names compare ASCII-case-insensitively,
    /// query parameter names exactly.
    fn changes(&self, target: EditTarget, name: &[u8], programs: &Programs) -> bool {
        self.target == target && {
            let edited = self.name.resolve(programs).as_bytes();
            if target == EditTarget::Query { edited == name } else { edited.eq_ignore_ascii_case(name) }
        }
    }
}

/// A body as a policy left it.
#[derive(Debug, Clone, Default)]
pub enum BodyEdit {
    /// As received.
    #[default]
    Unchanged,
    /// Read without `preserveContent: true`: later readers (and the backend) see an empty body,
    /// as in APIM.
    Consumed,
    /// Replaced by `set-body` / `find-and-replace`.
    Replaced(StoredBody),
}

/// A replacement body.
#[derive(Debug, Clone)]
pub enum StoredBody {
    Text(StoredText),
    Bytes(Rc<[u8]>),
}

impl StoredBody {
    pub fn bytes<'p>(&'p self, programs: &'p Programs) -> &'p [u8] {
        match self {
            StoredBody::Text(text) => text.resolve(programs).as_bytes(),
            StoredBody::Bytes(bytes) => bytes,
        }
    }
}

/// Where `set-backend-service base-url` sends the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendOverride {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Without trailing slash (`""` or `/v2`).
    pub base_path: String,
    /// `Host` header value.
    pub authority: String,
}

/// The response `return-response` / `mock-response` / a CORS preflight builds. Its headers are
/// the edits with target `Header(Side::Returned)`.
#[derive(Debug, Clone)]
pub struct BuiltResponse {
    pub status: u16,
    pub reason: Option<StoredText>,
    pub body: Option<StoredBody>,
}

/// CORS headers to add to the relayed response (a simple request from an allowed origin).
#[derive(Debug, Clone)]
pub struct CorsMark {
    /// `Access-Control-Allow-Origin`: the request's origin, or `*`.
    pub allow_origin: Rc<str>,
    pub allow_credentials: bool,
    /// `cors` table entry (program, index) for `Access-Control-Expose-Headers`.
    pub program: u32,
    pub rule: u32,
}

/// One `trace` entry, for the access log.
#[derive(Debug, Clone)]
pub struct TraceEntry {
    pub source: LitRef,
    pub severity: Severity,
    pub message: StoredText,
}

/// One value an `emit-metric` emitted: its namespace, name and dimension names are constants of
/// the program; the dimension values were computed.
#[derive(Debug, Clone)]
pub struct EmittedMetric {
    pub namespace: LitRef,
    pub name: LitRef,
    pub dimensions: smallvec::SmallVec<[(LitRef, StoredText); 4]>,
    pub value: f64,
}

/// A token metric policy that ran: its namespace, metric names (prompt, completion, total) and
/// dimension names are constants of the program; the dimension values were computed inbound.
#[derive(Debug, Clone)]
pub struct PendingTokenMetric {
    pub namespace: LitRef,
    pub names: [LitRef; 3],
    pub dimensions: smallvec::SmallVec<[(LitRef, StoredText); 4]>,
}

/// Token metric policies one request may run (more are dropped, counted in
/// [`RequestState::metrics_dropped`]).
pub const TOKEN_METRICS_MAX: usize = 8;

/// The token counts of an OpenAI-compatible response's `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
}

/// A program stopped at `forward-request` or a retry wait.
#[derive(Debug)]
pub(crate) struct Suspension {
    pub(crate) section: Section,
    pub(crate) program: u32,
    pub(crate) pc: u32,
    pub(crate) site: Option<u32>,
    pub(crate) locals: Vec<Stored>,
}

/// A limit checked inbound whose counter moves after the response (an increment condition that
/// reads the response, a quota's bandwidth).
#[derive(Debug, Clone)]
pub(crate) struct PendingLimit {
    pub(crate) section: Section,
    pub(crate) program: u32,
    /// Where the deferred increment condition starts (`None`: count unconditionally).
    pub(crate) condition_pc: Option<u32>,
    pub(crate) site: Option<u32>,
    /// The call windows to count `hits` in.
    pub(crate) calls: smallvec::SmallVec<[crate::policy::limits::Check; 2]>,
    pub(crate) hits: u32,
    /// The bandwidth windows to count the request's and response's kilobytes in.
    pub(crate) bandwidth: smallvec::SmallVec<[crate::policy::limits::Check; 1]>,
    /// The deferred condition ran and held (bandwidth is counted only then, or without one).
    pub(crate) condition_held: bool,
}

/// A token limit a request passed: the windows its response's tokens are charged to, the tokens
/// charged already (the prompt's estimate) and where its names live.
#[derive(Debug, Clone)]
pub(crate) struct TokenCharge {
    pub(crate) program: u32,
    pub(crate) limit: u32,
    pub(crate) windows: smallvec::SmallVec<[crate::policy::limits::Check; 2]>,
    pub(crate) charged: u32,
}

/// Token limits one request may pass (a document has one or two).
pub const TOKEN_CHARGES_MAX: usize = 8;

/// Limits that one request may leave to count after its response.
pub const PENDING_LIMITS_MAX: usize = 64;

/// One request's policy state.
#[derive(Debug, Default)]
pub struct RequestState {
    pub(crate) variables: Vec<(StoredText, Stored)>,
    pub(crate) edits: Vec<Edit>,
    pub(crate) edit_values: Vec<StoredText>,
    pub(crate) method: Option<StoredText>,
    /// `rewrite-uri` ran: `rewritten` holds the new path and query (relative to the backend base).
    pub(crate) rewrite: bool,
    pub(crate) rewritten: String,
    pub(crate) backend: Option<BackendOverride>,
    /// `set-backend-service backend-id`: the named backend's id (looked up when forwarding).
    pub(crate) backend_id: Option<String>,
    pub(crate) authorization: Option<StoredText>,
    /// `authentication-certificate`: the named certificate (its index in the snapshot's named
    /// certificates) the backend connection presents.
    pub(crate) backend_certificate: Option<u32>,
    pub(crate) request_body: BodyEdit,
    pub(crate) status: Option<(u16, Option<StoredText>)>,
    pub(crate) response_body: BodyEdit,
    pub(crate) returned: Option<BuiltResponse>,
    pub(crate) cors: Option<CorsMark>,
    pub(crate) last_error: Option<LastError>,
    pub(crate) guards: Vec<ConcurrencyGuard>,
    pub(crate) traces: Vec<TraceEntry>,
    pub(crate) traces_dropped: u32,
    pub(crate) metrics: Vec<EmittedMetric>,
    pub(crate) metrics_dropped: u32,
    /// Token metric policies waiting for the response's `usage`.
    pub(crate) token_metrics: Vec<PendingTokenMetric>,
    /// The response's `usage`, once relayed (read only when a token metric waits for it).
    pub(crate) token_usage: Option<TokenUsage>,
    pub(crate) suspended: Option<Suspension>,
    /// `cache-store` ran: store the response, if the rules let it in.
    pub(crate) cache_store: Option<crate::policy::StoreMark>,
    /// Token limits waiting for the response's `usage`.
    pub(crate) token_charges: Vec<TokenCharge>,
    /// Limits to count after the response, in the order they were checked.
    pub(crate) limits_pending: Vec<PendingLimit>,
    /// Bandwidth quotas whose limits counted, waiting for the bodies to be relayed.
    pub(crate) bandwidth_due: smallvec::SmallVec<[crate::policy::limits::Check; 1]>,
    /// Quota counters this request moved: APIM moves a key once per request, however many
    /// quota policies count it.
    pub(crate) quota_counted: Vec<crate::counters::CounterKey>,
    /// The pending limit whose deferred condition is running.
    pub(crate) committing: Option<usize>,
    /// A `rate-limit-by-key` counted by the client's address refused it: block the address for
    /// this many seconds (at the NIC when the XDP pre-filter is attached).
    pub(crate) offender_seconds: Option<u32>,
    /// The request a `send-request` is building (between `BeginOutgoing` and `SendRequest`).
    pub(crate) outgoing: Option<Box<crate::policy::OutgoingRequest>>,
    /// A call the section waited for failed: the fault and the `send-request` statement; the
    /// section fails with it when it resumes.
    pub(crate) failed_call: Option<(Fault, Option<u32>)>,
}

impl RequestState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the request (leaving every concurrency limit it is inside), keeping capacity.
    pub fn reset(&mut self) {
        self.variables.clear();
        self.edits.clear();
        self.edit_values.clear();
        self.method = None;
        self.rewrite = false;
        self.rewritten.clear();
        self.backend = None;
        self.backend_id = None;
        self.backend_certificate = None;
        self.authorization = None;
        self.request_body = BodyEdit::Unchanged;
        self.status = None;
        self.response_body = BodyEdit::Unchanged;
        self.returned = None;
        self.cors = None;
        self.last_error = None;
        self.guards.clear();
        self.traces.clear();
        self.traces_dropped = 0;
        self.metrics.clear();
        self.metrics_dropped = 0;
        self.token_metrics.clear();
        self.token_usage = None;
        self.suspended = None;
        self.cache_store = None;
        self.limits_pending.clear();
        self.token_charges.clear();
        self.bandwidth_due.clear();
        self.quota_counted.clear();
        self.committing = None;
        self.offender_seconds = None;
        self.outgoing = None;
        self.failed_call = None;
    }

    /// Records the outcome of a call a section asked for, before it resumes: the response (or
    /// null, when it failed and `ignore-error` holds) goes to its variable; any other failure
    /// fails the section where the `send-request` stands.
    pub fn finish_call(
        &mut self,
        call: &crate::policy::SendCall,
        outcome: Result<crate::policy::SentResponse, crate::policy::CallFailure>,
        programs: &Programs,
    ) {
        let response = match outcome {
            Ok(response) => Some(response),
            Err(_) if call.ignore_error => None,
            Err(failure) => {
                if self.failed_call.is_none() {
                    self.failed_call = Some((failure.fault(call.timeout_ms), call.site));
                }
                return;
            }
        };
        let Some(name) = call.variable else { return };
        let stored = crate::policy::vm::stored_response(response);
        let key = programs.literal(name);
        let full = self.variables.len() >= VARIABLES_MAX;
        match self.variables.iter_mut().find(|(existing, _)| existing.resolve(programs) == key) {
            Some(slot) => slot.1 = stored,
            None if full => {}
            None => self.variables.push((StoredText::Literal(name), stored)),
        }
    }

    /// What `cache-store` asked for, if it ran.
    pub fn cache_store(&self) -> Option<crate::policy::StoreMark> {
        self.cache_store
    }

    /// Removes `names` (lower case) from the forwarded request, those it has: a `cache-lookup`
    /// that missed asks the backend for a whole response, not one for the client's own cache.
    pub fn remove_request_headers(
        &mut self,
        names: &[&'static str],
        head: &crate::http::request::RequestHead,
        buf: &[u8],
    ) {
        for &name in names {
            if head.header(buf, name.as_bytes()).is_some() {
                let target = EditTarget::Header(Side::Request);
                // Past the edit bound the header stays: the backend may answer a 304 that is not stored.
                let _ = self.push_edit(target, ExistsAction::Delete, StoredText::Static(name), std::iter::empty());
            }
        }
    }

    /// Sets `context.Variables[name]` to a value a `cache-lookup-value` found (or its default),
    /// before the suspended section resumes. Past [`VARIABLES_MAX`] the value is dropped, as a
    /// miss would be.
    pub fn set_cached_variable(&mut self, name: LitRef, value: Value<'static>, programs: &Programs) {
        let key = programs.literal(name);
        let stored = Stored::Value(value);
        let full = self.variables.len() >= VARIABLES_MAX;
        match self.variables.iter_mut().find(|(existing, _)| existing.resolve(programs) == key) {
            Some(slot) => slot.1 = stored,
            None if full => {}
            None => self.variables.push((StoredText::Literal(name), stored)),
        }
    }

    /// Status of the response a policy built (`return-response`, `mock-response`, preflight).
    pub fn built_status(&self) -> Option<u16> {
        self.returned.as_ref().map(|response| response.status)
    }

    /// The status `set-status` gave the response, if any.
    pub fn status_code(&self) -> Option<u16> {
        self.status.as_ref().map(|(code, _)| *code)
    }

    /// Turns what the policies did to the (absent) backend response into the response to send,
    /// when the backend section ended without calling the backend: status (200 unless
    /// `set-status` ran), header edits and body.
    pub fn respond_without_backend(&mut self) {
        if self.returned.is_some() {
            return;
        }
        let (status, reason) = self.status.take().unwrap_or((200, None));
        let body = match std::mem::take(&mut self.response_body) {
            BodyEdit::Replaced(body) => Some(body),
            BodyEdit::Unchanged | BodyEdit::Consumed => None,
        };
        for edit in &mut self.edits {
            if edit.target == EditTarget::Header(Side::Response) {
                edit.target = EditTarget::Header(Side::Returned);
            }
        }
        self.returned = Some(BuiltResponse { status, reason, body });
    }

    /// Whether any policy changed the request to forward (else the plain head writer serves).
    pub fn edits_request(&self) -> bool {
        self.method.is_some()
            || self.rewrite
            || self.backend.is_some()
            || self.authorization.is_some()
            || !matches!(self.request_body, BodyEdit::Unchanged)
            || self.has_edits(EditTarget::Header(Side::Request))
            || self.has_edits(EditTarget::Query)
    }

    /// Whether any policy changed the response to relay.
    pub fn edits_response(&self) -> bool {
        self.status.is_some()
            || self.cors.is_some()
            || !matches!(self.response_body, BodyEdit::Unchanged)
            || self.has_edits(EditTarget::Header(Side::Response))
    }

    /// `context.LastError`, once an error happened.
    pub fn last_error(&self) -> Option<&LastError> {
        self.last_error.as_ref()
    }

    /// Records an error of the proxy's own (backend failure, timeout) before `on-error` runs.
    pub fn set_last_error(&mut self, error: LastError) {
        self.last_error = Some(error);
    }

    /// Trace entries, in order, for the access log.
    pub fn traces(&self) -> &[TraceEntry] {
        &self.traces
    }

    pub fn traces_dropped(&self) -> u32 {
        self.traces_dropped
    }

    /// `emit-metric` values, in order, for the worker's telemetry.
    pub fn metrics(&self) -> &[EmittedMetric] {
        &self.metrics
    }

    /// The relayed response's `usage` (the proxy's, after the body went out).
    pub fn set_token_usage(&mut self, usage: Option<TokenUsage>) {
        self.token_usage = usage;
    }

    pub fn token_usage(&self) -> Option<TokenUsage> {
        self.token_usage
    }

    /// Token metric policies that ran, waiting for the response's `usage`.
    /// Sets variable `name` outside a VM run (a token limit's consumed tokens, after the
    /// response); past the variables' limit it is dropped, as a run would fail the request.
    pub(crate) fn set_variable(&mut self, name: StoredText, stored: Stored, programs: &Programs) {
        let key = name.resolve(programs);
        let full = self.variables.len() >= VARIABLES_MAX;
        match self.variables.iter_mut().find(|(existing, _)| existing.resolve(programs) == key) {
            Some(slot) => slot.1 = stored,
            None if full => {}
            None => self.variables.push((name, stored)),
        }
    }

    /// A token limit that waits for the response's `usage` names a tokens-consumed header or
    /// variable.
    pub fn wants_consumed_tokens(&self, programs: &Programs) -> bool {
        self.token_charges.iter().any(|charge| {
            let limit = programs.get(charge.program).and_then(|p| p.program().token_limits.get(charge.limit as usize));
            limit
                .is_some_and(|limit| limit.tokens_consumed_header.is_some() || limit.tokens_consumed_variable.is_some())
        })
    }

    /// A token limit waits for the response's `usage`.
    pub fn charges_tokens(&self) -> bool {
        !self.token_charges.is_empty()
    }

    pub fn token_metrics(&self) -> &[PendingTokenMetric] {
        &self.token_metrics
    }

    pub fn metrics_dropped(&self) -> u32 {
        self.metrics_dropped
    }

    /// `set-backend-service base-url` chose another backend.
    pub fn backend_override(&self) -> Option<&BackendOverride> {
        self.backend.as_ref()
    }

    /// `set-backend-service backend-id` chose a named backend (the last of the two kinds wins).
    pub fn backend_id(&self) -> Option<&str> {
        self.backend_id.as_deref()
    }

    /// The body the backend should get instead of the client's (`None`: relay the client's).
    /// `Some(empty)` when the body was replaced by nothing or consumed by a reader.
    pub fn request_body_replacement<'p>(&'p self, programs: &'p Programs) -> Option<&'p [u8]> {
        body_replacement(&self.request_body, programs)
    }

    /// The body the client should get instead of the backend's (`None`: relay the backend's).
    pub fn response_body_replacement<'p>(&'p self, programs: &'p Programs) -> Option<&'p [u8]> {
        body_replacement(&self.response_body, programs)
    }

    /// A program of `section` is suspended (at `forward-request` or a retry wait).
    pub fn is_suspended(&self, section: Section) -> bool {
        self.suspended.as_ref().is_some_and(|suspension| suspension.section == section)
    }

    /// How long to block the client: a rate limit by its address refused it (once per request).
    pub fn take_offender(&mut self) -> Option<u32> {
        self.offender_seconds.take()
    }

    /// A limit left counters to move after the response ([`crate::policy::after_response`]).
    pub fn counts_after_response(&self) -> bool {
        !self.limits_pending.is_empty() || !self.bandwidth_due.is_empty()
    }

    /// Requests inside `limit-concurrency` blocks right now.
    pub fn concurrency_guards(&self) -> usize {
        self.guards.len()
    }

    /// `context.Variables[name]`, for tests and the access log.
    pub fn variable<'a>(&self, name: &str, programs: &'a Programs) -> Option<Value<'a>> {
        self.variables.iter().find(|(key, _)| key.resolve(programs) == name).map(|(_, value)| value.to_value(programs))
    }

    pub(crate) fn push_edit(
        &mut self,
        target: EditTarget,
        action: ExistsAction,
        name: StoredText,
        values: impl Iterator<Item = StoredText>,
    ) -> Result<(), Fault> {
        if self.edits.len() >= EDITS_MAX {
            return Err(Fault::eval("Expression evaluation failed. Too many header or query edits in one request."));
        }
        let start = self.edit_values.len();
        self.edit_values.extend(values);
        if self.edit_values.len() > EDIT_VALUES_MAX {
            self.edit_values.truncate(start);
            return Err(Fault::eval("Expression evaluation failed. Too many header or query values in one request."));
        }
        self.edits.push(Edit { target, action, name, values: (start as u32, self.edit_values.len() as u32) });
        Ok(())
    }

    /// The values of one edit.
    pub(crate) fn edit_values(&self, edit: &Edit) -> &[StoredText] {
        self.edit_values.get(edit.values.0 as usize..edit.values.1 as usize).unwrap_or(&[])
    }

    /// Applies the edits for `name` on `target` to its original values. Returns whether the
    /// originals stay, and calls `emit` with each added value, in order. Names compare
    /// ASCII-case-insensitively for headers, exactly for query parameters.
    pub(crate) fn fold_edits<'s>(
        &'s self,
        target: EditTarget,
        name: &[u8],
        original_present: bool,
        programs: &'s Programs,
        mut emit: impl FnMut(&'s StoredText),
    ) -> bool {
        let matches = |edit: &Edit| edit.changes(target, name, programs);
        let last_reset = self
            .edits
            .iter()
            .rposition(|edit| matches(edit) && matches!(edit.action, ExistsAction::Override | ExistsAction::Delete));
        let keep_originals = last_reset.is_none();
        let mut present = keep_originals && original_present;
        for edit in self.edits.iter().skip(last_reset.unwrap_or(0)).filter(|edit| matches(edit)) {
            let values = self.edit_values(edit);
            match edit.action {
                ExistsAction::Delete => present = false,
                ExistsAction::Override | ExistsAction::Append => {
                    values.iter().for_each(&mut emit);
                    present |= !values.is_empty();
                }
                ExistsAction::Skip if !present => {
                    values.iter().for_each(&mut emit);
                    present = !values.is_empty();
                }
                ExistsAction::Skip => {}
            }
        }
        keep_originals
    }

    /// Whether any edit targets `target` (so a reader must fold).
    pub(crate) fn has_edits(&self, target: EditTarget) -> bool {
        self.edits.iter().any(|edit| edit.target == target)
    }

    /// Whether any edit changes `name` on `target` (a reader of other names need not fold).
    pub(crate) fn edits_name(&self, target: EditTarget, name: &[u8], programs: &Programs) -> bool {
        self.edits.iter().any(|edit| edit.changes(target, name, programs))
    }
}

fn body_replacement<'p>(body: &'p BodyEdit, programs: &'p Programs) -> Option<&'p [u8]> {
    match body {
        BodyEdit::Unchanged => None,
        BodyEdit::Consumed => Some(&[]),
        BodyEdit::Replaced(body) => Some(body.bytes(programs)),
    }
}
