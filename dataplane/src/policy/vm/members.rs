//! Member reads (`Prop`), indexers (`Index`) and enumeration (`foreach`) on runtime values and
//! on the context's objects, which read the view and the request state on demand.

use std::net::IpAddr;
use std::rc::Rc;

use chrono::{Datelike as _, Timelike as _};
use portcullis_contract::model::Scheme;
use portcullis_contract::program::{Prop, Side};

use super::Machine;
use crate::http::HeaderSpan;
use crate::http::forward::TRACEPARENT;
use crate::http::url::{self, Coding, Target};
use crate::policy::error::Fault;
use crate::policy::state::EditTarget;
use crate::policy::value::json::from_primitive;
use crate::policy::value::{Handle, Jwt, Message, Seg, TICKS_PER_MS, TICKS_PER_SECOND, Text, UrlKind, Value};

/// Collects header or query values, comma-joining several (allocating only then).
#[derive(Default)]
pub(crate) struct Joiner<'a> {
    first: Option<Text<'a>>,
    joined: Option<String>,
    separator: &'static str,
}

impl<'a> Joiner<'a> {
    pub(crate) fn new(separator: &'static str) -> Self {
        Self { first: None, joined: None, separator }
    }

    pub(crate) fn add(&mut self, text: Text<'a>) {
        match (&self.first, &mut self.joined) {
            (None, _) => self.first = Some(text),
            (Some(first), None) => {
                let mut joined = String::with_capacity(first.as_str().len() + 2 + text.as_str().len());
                joined.push_str(first.as_str());
                joined.push_str(self.separator);
                joined.push_str(text.as_str());
                self.joined = Some(joined);
            }
            (Some(_), Some(joined)) => {
                joined.push_str(self.separator);
                joined.push_str(text.as_str());
            }
        }
    }

    pub(crate) fn finish(self) -> Option<Text<'a>> {
        match self.joined {
            Some(joined) => Some(joined.into()),
            None => self.first,
        }
    }
}

/// Bytes from the wire as text: borrowed when UTF-8, else a lossy copy.
pub(crate) fn wire_text(bytes: &[u8]) -> Text<'_> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Text::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes).into_owned().into(),
    }
}

/// `IUserIdentity.Provider` of a user who signs in with email and password (APIM's name).
const IDENTITY_PROVIDER: &str = "Basic";

/// A date of the snapshot (milliseconds since the Unix epoch) as a `DateTime?`.
fn date<'a>(unix_ms: Option<i64>) -> Value<'a> {
    unix_ms.and_then(chrono::DateTime::from_timestamp_millis).map_or(Value::Null, Value::DateTime)
}

/// `IEnumerable<IGroup>` of the groups at `indices` of the snapshot's groups.
fn group_array<'a>(indices: &[u32]) -> Value<'a> {
    Value::array(indices.iter().map(|&index| Value::Handle(Handle::Group(index))).collect())
}

fn missing_key(key: &str) -> Fault {
    Fault::eval(format!("Expression evaluation failed. The given key '{key}' was not present in the dictionary."))
}

fn null_reference() -> Fault {
    Fault::eval("Expression evaluation failed. Object reference not set to an instance of an object.")
}

impl<'r, 'a> Machine<'r, 'a> {
    /// The headers of `message` as the policies left them so far.
    fn message_headers(&self, message: Message) -> (&'a [HeaderSpan], &'a [u8]) {
        match message {
            Message::Request => (self.view.request.headers(), self.view.request_buf),
            Message::Response => match self.view.response {
                Some(response) => (response.head.headers(), response.buf),
                None => (&[], &[]),
            },
        }
    }

    /// `Headers.GetValueOrDefault(name)`: every value comma-joined, edits applied; `None` when absent.
    pub(crate) fn header_value(&self, message: Message, name: &str) -> Option<Text<'a>> {
        let (headers, buf) = self.message_headers(message);
        let mut originals = headers.iter().filter(|h| h.name.of(buf).eq_ignore_ascii_case(name.as_bytes()));
        let side = if message == Message::Request { Side::Request } else { Side::Response };
        let target = EditTarget::Header(side);
        let mut joiner = Joiner::new(",");
        let programs = self.view.programs;
        if !self.state.edits_name(target, name.as_bytes(), programs) {
            // The gateway's traceparent replaces the client's on the forwarded request.
            let gateways = self
                .view
                .traceparent
                .filter(|_| message == Message::Request && name.as_bytes().eq_ignore_ascii_case(TRACEPARENT));
            if let Some(traceparent) = gateways {
                return Some(wire_text(traceparent));
            }
            for header in originals {
                joiner.add(wire_text(header.value.of(buf)));
            }
            return joiner.finish();
        }
        let present = originals.clone().next().is_some();
        let keep = self.state.fold_edits(target, name.as_bytes(), present, programs, |_| {});
        if keep {
            for header in originals.by_ref() {
                joiner.add(wire_text(header.value.of(buf)));
            }
        }
        self.state.fold_edits(target, name.as_bytes(), present, programs, |value| joiner.add(value.to_text(programs)));
        joiner.finish()
    }

    /// The query string (without `?`) of a URL, before edits.
    fn base_query(&self, kind: UrlKind) -> Text<'a> {
        let view = self.view;
        let request_query = || Target::parse(view.request.target(view.request_buf)).query().unwrap_or_default();
        match kind {
            UrlKind::Original => wire_text(request_query()),
            UrlKind::Current if self.state.rewrite => {
                let query = Target::parse(self.state.rewritten.as_bytes()).query().unwrap_or_default();
                Text::Shared(Rc::from(std::str::from_utf8(query).unwrap_or("")))
            }
            UrlKind::Current => wire_text(request_query()),
            UrlKind::Service => Text::Borrowed(""),
        }
    }

    /// `Url.Query.GetValueOrDefault(name)`: values comma-joined, query edits applied to the current URL;
    /// names and values read as forms ([`Coding::Form`]).
    pub(crate) fn query_value(&self, kind: UrlKind, name: &str) -> Option<Text<'a>> {
        let base = self.base_query(kind);
        let programs = self.view.programs;
        let edits = kind == UrlKind::Current && self.state.has_edits(EditTarget::Query);
        let matches = |key: &[u8]| url::decodes_to(key, Coding::Form, name.as_bytes());
        let mut present = false;
        let keep = if edits {
            present = url::query_pairs(base.as_str().as_bytes()).any(|(key, _)| matches(key));
            self.state.fold_edits(EditTarget::Query, name.as_bytes(), present, programs, |_| {})
        } else {
            true
        };
        let mut joiner = Joiner::new(",");
        if keep {
            match base.borrowed() {
                Some(query) => {
                    for (_, value) in url::query_pairs(query.as_bytes()).filter(|(key, _)| matches(key)) {
                        joiner.add(url::percent_decode_str(value, Coding::Form).into());
                    }
                }
                None => {
                    for (_, value) in url::query_pairs(base.as_str().as_bytes()).filter(|(key, _)| matches(key)) {
                        joiner.add(Text::from(url::percent_decode_str(value, Coding::Form).into_owned()));
                    }
                }
            }
        }
        if edits {
            self.state.fold_edits(EditTarget::Query, name.as_bytes(), present, programs, |value| {
                joiner.add(value.to_text(programs))
            });
        }
        joiner.finish()
    }

    /// `context.Variables[name]`.
    pub(crate) fn variable(&self, name: &str) -> Option<Value<'a>> {
        let programs = self.view.programs;
        self.state
            .variables
            .iter()
            .find(|(key, _)| key.resolve(programs) == name)
            .map(|(_, value)| value.to_value(programs))
    }

    /// `context.Request.MatchedParameters[name]`.
    pub(crate) fn matched(&self, name: &str) -> Option<&'a str> {
        self.view.matched.iter().find(|param| param.name.eq_ignore_ascii_case(name)).map(|param| param.value)
    }

    /// `receiver.prop`.
    pub(crate) fn member(&self, receiver: Value<'a>, prop: Prop) -> Result<Value<'a>, Fault> {
        let unknown = |receiver: &Value<'a>| {
            Fault::eval(format!(
                "Expression evaluation failed. '{}' does not contain a definition for '{prop:?}'.",
                receiver.type_name()
            ))
        };
        match receiver {
            Value::Null => Err(null_reference()),
            Value::Handle(handle) => self.handle_member(handle, prop).ok_or_else(|| unknown(&receiver)),
            Value::Str(ref text) => match prop {
                Prop::Length => Ok(Value::Int(utf16_len(text.as_str()))),
                _ => Err(unknown(&receiver)),
            },
            Value::Bytes(ref bytes) if matches!(prop, Prop::Length) => Ok(Value::Int(bytes.len() as i64)),
            Value::Array(ref items) if matches!(prop, Prop::Length | Prop::Count) => {
                Ok(Value::Int(items.borrow().len() as i64))
            }
            Value::Dict(ref entries) if matches!(prop, Prop::Count) => Ok(Value::Int(entries.borrow().len() as i64)),
            Value::Pair(ref pair) => match prop {
                Prop::Key => Ok(pair.0.clone()),
                Prop::Value => Ok(pair.1.clone()),
                _ => Err(unknown(&receiver)),
            },
            Value::Json(ref json) if matches!(prop, Prop::Count) => Ok(Value::Int(json.with(|token| match token {
                Some(serde_json::Value::Object(map)) => map.len() as i64,
                Some(serde_json::Value::Array(items)) => items.len() as i64,
                _ => 0,
            }))),
            Value::JProperty(ref property) => match prop {
                Prop::Name | Prop::PropertyName => Ok(Value::Str(Text::Shared(property.1.clone()))),
                Prop::Value | Prop::PropertyValue => Ok(property.0.index(Seg::Key(property.1.clone()))),
                _ => Err(unknown(&receiver)),
            },
            Value::Jwt(ref jwt) => jwt_member(jwt, prop).ok_or_else(|| unknown(&receiver)),
            Value::Response(ref response) => {
                super::outbound::response_member(response, prop).ok_or_else(|| unknown(&receiver))
            }
            Value::ResponseHeaders(ref response) if matches!(prop, Prop::Count) => {
                Ok(Value::Int(response.header_names().len() as i64))
            }
            Value::Basic(ref basic) => match prop {
                Prop::UserId => Ok(Value::Str(Text::Shared(basic.user_id.clone()))),
                Prop::Password => Ok(Value::Str(Text::Shared(basic.password.clone()))),
                _ => Err(unknown(&receiver)),
            },
            Value::Match(ref data) => group_member(data, 0, prop).ok_or_else(|| unknown(&receiver)),
            Value::Group(ref data, index) => group_member(data, index, prop).ok_or_else(|| unknown(&receiver)),
            Value::Groups(ref data) if matches!(prop, Prop::Count) => Ok(Value::Int(data.groups.len() as i64)),
            Value::DateTime(date) => Ok(Value::Int(match prop {
                Prop::Year => i64::from(date.year()),
                Prop::Month => i64::from(date.month()),
                Prop::Day => i64::from(date.day()),
                Prop::Hour => i64::from(date.hour()),
                Prop::Minute => i64::from(date.minute()),
                Prop::Second => i64::from(date.second()),
                Prop::Ticks => crate::policy::builtins::time::ticks_of(&date),
                _ => return Err(unknown(&receiver)),
            })),
            Value::TimeSpan(ticks) => Ok(match prop {
                Prop::Ticks => Value::Int(ticks),
                Prop::TotalSeconds => Value::Double(ticks as f64 / TICKS_PER_SECOND as f64),
                Prop::TotalMilliseconds => Value::Double(ticks as f64 / TICKS_PER_MS as f64),
                Prop::Days => Value::Int(ticks / (TICKS_PER_SECOND * 86_400)),
                Prop::Hours => Value::Int(ticks / (TICKS_PER_SECOND * 3600) % 24),
                Prop::Minutes => Value::Int(ticks / (TICKS_PER_SECOND * 60) % 60),
                Prop::Seconds => Value::Int(ticks / TICKS_PER_SECOND % 60),
                Prop::Milliseconds => Value::Int(ticks / TICKS_PER_MS % 1000),
                _ => return Err(unknown(&receiver)),
            }),
            other => Err(unknown(&other)),
        }
    }

    fn handle_member(&self, handle: Handle, prop: Prop) -> Option<Value<'a>> {
        let view = self.view;
        let text = |text: &'a str| Some(Value::str(text));
        Some(match (handle, prop) {
            (Handle::Context, Prop::Api) => Value::Handle(Handle::Api),
            (Handle::Context, Prop::Deployment) => Value::Handle(Handle::Deployment),
            (Handle::Context, Prop::Elapsed) => {
                let micros = (view.now - view.timestamp).num_microseconds().unwrap_or(i64::MAX / 10);
                Value::TimeSpan(micros.saturating_mul(10))
            }
            (Handle::Context, Prop::LastError) => {
                if self.state.last_error.is_some() {
                    Value::Handle(Handle::LastError)
                } else {
                    Value::Null
                }
            }
            (Handle::Context, Prop::Operation) => Value::Handle(Handle::Operation),
            (Handle::Context, Prop::Product) => match view.product {
                Some(_) => Value::Handle(Handle::Product),
                None => Value::Null,
            },
            (Handle::Context, Prop::User) => match view.caller.user {
                Some(_) => Value::Handle(Handle::User),
                None => Value::Null,
            },
            (Handle::User, prop) => return self.user_member(prop),
            (Handle::Group(index), Prop::Id) => {
                return view.caller.groups.get(index as usize).map(|g| Value::str(&g.id));
            }
            (Handle::Group(index), Prop::Name) => {
                return view.caller.groups.get(index as usize).map(|g| Value::str(&g.name));
            }
            (Handle::Identity, Prop::Provider) => Value::str(IDENTITY_PROVIDER),
            (Handle::Identity, Prop::Id) => return view.caller.user.map(|user| Value::str(&user.email)),
            (Handle::Context, Prop::Request) => Value::Handle(Handle::Request),
            (Handle::Context, Prop::RequestId) => Value::Guid(view.request_id),
            (Handle::Context, Prop::Response) => Value::Handle(Handle::Response),
            (Handle::Context, Prop::Subscription) => {
                if view.subscription.is_some() {
                    Value::Handle(Handle::Subscription)
                } else {
                    Value::Null
                }
            }
            (Handle::Context, Prop::Timestamp) => Value::DateTime(view.timestamp),
            (Handle::Context, Prop::Tracing) => Value::Bool(view.tracing),
            (Handle::Context, Prop::Variables) => Value::Handle(Handle::Variables),
            (Handle::Request, Prop::Body) => Value::Handle(Handle::Body(Message::Request)),
            (Handle::Request, Prop::Certificate) => match view.client_certificate {
                Some(_) => Value::Handle(Handle::Certificate),
                None => Value::Null,
            },
            (Handle::Certificate, prop) => certificate_member(view.client_certificate?, prop)?,
            (Handle::Request, Prop::Headers) => Value::Handle(Handle::Headers(Message::Request)),
            (Handle::Request, Prop::IpAddress) => Value::string(client_ip(view.peer)),
            (Handle::Request, Prop::MatchedParameters) => Value::Handle(Handle::MatchedParameters),
            (Handle::Request, Prop::Method) => match &self.state.method {
                Some(method) => Value::Str(method.to_text(view.programs)),
                None => Value::Str(wire_text(view.request.method(view.request_buf))),
            },
            (Handle::Request, Prop::OriginalUrl) => Value::Handle(Handle::Url(UrlKind::Original)),
            (Handle::Request, Prop::Url) => Value::Handle(Handle::Url(UrlKind::Current)),
            (Handle::Response, Prop::Body) => Value::Handle(Handle::Body(Message::Response)),
            (Handle::Response, Prop::Headers) => Value::Handle(Handle::Headers(Message::Response)),
            (Handle::Response, Prop::StatusCode) => match (self.state.status.as_ref(), view.response) {
                (Some((status, _)), _) => Value::Int(i64::from(*status)),
                (None, Some(response)) => Value::Int(i64::from(response.head.status())),
                (None, None) => Value::Int(0),
            },
            (Handle::Response, Prop::StatusReason) => match (self.state.status.as_ref(), view.response) {
                (Some((_, Some(reason))), _) => Value::Str(reason.to_text(view.programs)),
                (Some((status, None)), _) => Value::str(crate::policy::apply::reason_phrase(*status)),
                (None, Some(response)) => Value::Str(wire_text(response.head.reason(response.buf))),
                (None, None) => Value::str(""),
            },
            (Handle::Url(kind), _) => return self.url_member(kind, prop),
            (Handle::Api, Prop::Id) => return text(&view.api.id),
            (Handle::Api, Prop::Name) => return text(&view.api.name),
            (Handle::Api, Prop::Path) => return text(&view.api.path),
            (Handle::Api, Prop::Version) => return text(&view.api.version),
            (Handle::Api, Prop::Revision) => return text(&view.api.revision),
            (Handle::Api, Prop::IsCurrentRevision) => Value::Bool(view.api.is_current()),
            (Handle::Api, Prop::ServiceUrl) => Value::Handle(Handle::Url(UrlKind::Service)),
            (Handle::Api, Prop::SubscriptionKeyParameterNames) => Value::Handle(Handle::KeyNames),
            (Handle::KeyNames, Prop::HeaderName) => return text(&view.api.subscription_key_header),
            (Handle::KeyNames, Prop::QueryName) => return text(&view.api.subscription_key_query),
            (Handle::Operation, Prop::Id) => return text(&view.operation.id),
            (Handle::Operation, Prop::Name) => return text(&view.operation.name),
            (Handle::Operation, Prop::Method) => return text(&view.operation.method),
            (Handle::Operation, Prop::UrlTemplate) => return text(&view.operation.url_template),
            (Handle::Subscription, Prop::Id) => return view.subscription.map(|s| Value::str(&s.id)),
            (Handle::Subscription, Prop::Name) => return view.subscription.map(|s| Value::str(&s.name)),
            (Handle::Subscription, Prop::Key) => view.subscription_key.map_or(Value::Null, Value::str),
            (Handle::Subscription, Prop::PrimaryKey) => view.caller.primary_key.map_or(Value::Null, Value::str),
            (Handle::Subscription, Prop::SecondaryKey) => view.caller.secondary_key.map_or(Value::Null, Value::str),
            (Handle::Subscription, Prop::CreatedDate) => date(view.subscription?.created_unix_ms),
            (Handle::Subscription, Prop::StartDate) => date(view.subscription?.start_unix_ms),
            (Handle::Subscription, Prop::EndDate) => date(view.subscription?.end_unix_ms),
            (Handle::Product, prop) => return self.product_member(prop),
            (Handle::Deployment, Prop::GatewayId) => return text(&view.deployment.gateway_id),
            (Handle::Deployment, Prop::Region) => return text(&view.deployment.region),
            (Handle::Deployment, Prop::ServiceName) => return text(&view.deployment.service_name),
            (Handle::Deployment, Prop::Gateway) => Value::Handle(Handle::Gateway),
            (Handle::Gateway, Prop::Id) => return text(&view.deployment.gateway_id),
            (Handle::Gateway, Prop::InstanceId) => Value::str(gateway_instance_id()),
            // Portcullis is always a self-hosted gateway.
            (Handle::Gateway, Prop::IsManaged) => Value::Bool(false),
            (Handle::LastError, _) => {
                let error = self.state.last_error.as_ref()?;
                let shared = |text: &Rc<str>| Value::Str(Text::Shared(text.clone()));
                match prop {
                    Prop::Source => shared(&error.source),
                    Prop::Reason => shared(&error.reason),
                    Prop::Message => shared(&error.message),
                    Prop::Scope => Value::str(error.scope),
                    Prop::Section => Value::str(error.section),
                    Prop::ErrorPath | Prop::Path => shared(&error.path),
                    Prop::PolicyId => error.policy_id.as_ref().map_or(Value::Null, shared),
                    Prop::StatusCode => Value::Int(i64::from(error.status)),
                    _ => return None,
                }
            }
            (Handle::Headers(message), Prop::Count) => Value::Int(self.message_headers(message).0.len() as i64),
            _ => return None,
        })
    }

    /// `context.User.<prop>`.
    fn user_member(&self, prop: Prop) -> Option<Value<'a>> {
        let user = self.view.caller.user?;
        Some(match prop {
            Prop::Id => Value::str(&user.id),
            Prop::Email => Value::str(&user.email),
            Prop::FirstName => Value::str(&user.first_name),
            Prop::LastName => Value::str(&user.last_name),
            Prop::Note => user.note.as_deref().map_or(Value::Null, Value::str),
            Prop::RegistrationDate => date(user.registration_unix_ms),
            Prop::Groups => group_array(&user.groups),
            Prop::Identities => Value::array(vec![Value::Handle(Handle::Identity)]),
            _ => return None,
        })
    }

    /// `context.Product.<prop>`.
    fn product_member(&self, prop: Prop) -> Option<Value<'a>> {
        let product = self.view.product?;
        Some(match prop {
            Prop::Id => Value::str(&product.id),
            Prop::Name => Value::str(&product.name),
            Prop::Groups => group_array(&product.groups),
            Prop::ApprovalRequired => Value::Bool(product.approval_required),
            Prop::State => Value::str(if product.published { "Published" } else { "NotPublished" }),
            Prop::SubscriptionLimit => product.subscriptions_limit.map_or(Value::Null, |n| Value::Int(i64::from(n))),
            Prop::SubscriptionRequired => Value::Bool(product.subscription_required),
            _ => return None,
        })
    }

    fn url_member(&self, kind: UrlKind, prop: Prop) -> Option<Value<'a>> {
        if prop == Prop::AbsoluteUrl {
            return Some(Value::string(self.url_string(kind)));
        }
        let view = self.view;
        let (scheme, host, port): (&str, Text<'a>, u16) = match kind {
            UrlKind::Original => {
                let host = view.request.header(view.request_buf, b"host").unwrap_or(b"");
                let (name, port) = split_host(host);
                ("http", wire_text(name), port.unwrap_or(80))
            }
            UrlKind::Current => match &self.state.backend {
                Some(backend) => (scheme_str(backend.scheme), Text::from(backend.host.clone()), backend.port),
                None => {
                    (scheme_str(view.api.backend.scheme), Text::Borrowed(&view.api.backend.host), view.api.backend.port)
                }
            },
            UrlKind::Service => {
                (scheme_str(view.api.backend.scheme), Text::Borrowed(&view.api.backend.host), view.api.backend.port)
            }
        };
        Some(match prop {
            Prop::Scheme => Value::str(scheme),
            Prop::Host => Value::Str(host),
            Prop::Port => Value::Int(i64::from(port)),
            Prop::Path => Value::Str(self.url_path(kind)),
            Prop::Query => Value::Handle(Handle::Query(kind)),
            Prop::QueryString => {
                let query = self.query_string(kind);
                if query.is_empty() { Value::str("") } else { Value::string(format!("?{query}")) }
            }
            _ => return None,
        })
    }

    /// The path of a URL.
    fn url_path(&self, kind: UrlKind) -> Text<'a> {
        let view = self.view;
        let target = view.request.target(view.request_buf);
        match kind {
            UrlKind::Original => wire_text(Target::parse(target).path()),
            UrlKind::Service => Text::Borrowed(&view.api.backend.base_path),
            UrlKind::Current => {
                let base = self.state.backend.as_ref().map_or(view.api.backend.base_path.as_str(), |b| &b.base_path);
                if !self.state.rewrite {
                    let rest: &'a [u8] = Target::parse(target.get(view.remainder_start..).unwrap_or(b"")).path();
                    if base.is_empty() && rest.first() == Some(&b'/') {
                        return wire_text(rest);
                    }
                    return joined_path(base, rest);
                }
                joined_path(base, Target::parse(self.state.rewritten.as_bytes()).path())
            }
        }
    }

    /// The query string of a URL (without `?`), edits applied for the current URL.
    pub(crate) fn query_string(&self, kind: UrlKind) -> String {
        let base = self.base_query(kind);
        if kind != UrlKind::Current || !self.state.has_edits(EditTarget::Query) {
            return base.as_str().to_owned();
        }
        let mut out = Vec::new();
        crate::policy::apply::write_query(&mut out, base.as_str().as_bytes(), self.state, self.view.programs);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `receiver[key]`.
    pub(crate) fn index(&self, receiver: Value<'a>, key: Value<'a>) -> Result<Value<'a>, Fault> {
        let out_of_range = || Fault::eval("Expression evaluation failed. Index was outside the bounds of the array.");
        let int_key = |key: &Value<'a>| match *key {
            Value::Int(i) => usize::try_from(i).map_err(|_| out_of_range()),
            _ => Err(Fault::eval(format!("Expression evaluation failed. Cannot index with {}.", key.type_name()))),
        };
        match (&receiver, &key) {
            (Value::Null, _) => Err(null_reference()),
            (_, Value::Null) => {
                Err(Fault::eval("Expression evaluation failed. Value cannot be null. (Parameter 'key')"))
            }
            (Value::Handle(Handle::Headers(message)), Value::Str(name)) => {
                let value = self.header_value(*message, name.as_str()).ok_or_else(|| missing_key(name.as_str()))?;
                Ok(Value::array(vec![Value::Str(value)]))
            }
            (Value::ResponseHeaders(response), Value::Str(name)) => {
                let value = response.header(name.as_str()).ok_or_else(|| missing_key(name.as_str()))?;
                Ok(Value::array(vec![Value::string(value)]))
            }
            (Value::Handle(Handle::Query(kind)), Value::Str(name)) => {
                let value = self.query_value(*kind, name.as_str()).ok_or_else(|| missing_key(name.as_str()))?;
                Ok(Value::array(vec![Value::Str(value)]))
            }
            (Value::Handle(Handle::MatchedParameters), Value::Str(name)) => {
                self.matched(name.as_str()).map(Value::str).ok_or_else(|| missing_key(name.as_str()))
            }
            (Value::Handle(Handle::Variables), Value::Str(name)) => {
                self.variable(name.as_str()).ok_or_else(|| missing_key(name.as_str()))
            }
            (Value::Claims(jwt), Value::Str(name)) => {
                let values = claim_values(jwt, name.as_str()).ok_or_else(|| missing_key(name.as_str()))?;
                Ok(Value::array(values.into_iter().map(Value::string).collect()))
            }
            (Value::Array(items), _) => items.borrow().get(int_key(&key)?).cloned().ok_or_else(out_of_range),
            (Value::Bytes(bytes), _) => {
                bytes.get(int_key(&key)?).map(|b| Value::Int(i64::from(*b))).ok_or_else(out_of_range)
            }
            (Value::Str(text), _) => {
                let at = int_key(&key)?;
                text.as_str().chars().nth(at).map(|c| Value::string(c.to_string())).ok_or_else(out_of_range)
            }
            (Value::Dict(entries), Value::Str(name)) => entries
                .borrow()
                .iter()
                .find(|(k, _)| **k == *name.as_str())
                .map(|(_, v)| v.clone())
                .ok_or_else(|| missing_key(name.as_str())),
            (Value::Json(json), Value::Str(name)) => Ok(json.index(Seg::Key(Rc::from(name.as_str())))),
            (Value::Json(json), Value::Int(_)) => Ok(json.index(Seg::Index(int_key(&key)?))),
            (Value::Groups(data), Value::Int(_)) => {
                let at = int_key(&key)?;
                Ok(Value::Group(data.clone(), if at < data.groups.len() { at as u32 } else { u32::MAX }))
            }
            (Value::Groups(data), Value::Str(name)) => {
                let at = data.names.iter().position(|n| n.as_deref() == Some(name.as_str()));
                Ok(Value::Group(data.clone(), at.map_or(u32::MAX, |at| at as u32)))
            }
            _ => Err(Fault::eval(format!(
                "Expression evaluation failed. Cannot apply indexing to an expression of type '{}'.",
                receiver.type_name()
            ))),
        }
    }

    /// The elements `foreach` visits.
    pub(crate) fn elements(&self, source: Value<'a>) -> Result<Vec<Value<'a>>, Fault> {
        let pair = |k: Value<'a>, v: Value<'a>| Value::Pair(Rc::new((k, v)));
        Ok(match source {
            Value::Null => return Err(null_reference()),
            Value::Array(items) => items.borrow().clone(),
            Value::Str(text) => text.as_str().chars().map(|c| Value::string(c.to_string())).collect(),
            Value::Bytes(bytes) => bytes.iter().map(|b| Value::Int(i64::from(*b))).collect(),
            Value::Dict(entries) => {
                entries.borrow().iter().map(|(k, v)| pair(Value::Str(Text::Shared(k.clone())), v.clone())).collect()
            }
            Value::Json(json) => {
                let shape = json.with(|token| match token {
                    Some(serde_json::Value::Array(items)) => Ok(items.len()),
                    Some(serde_json::Value::Object(map)) => {
                        Err(map.keys().map(|k| Rc::from(k.as_str())).collect::<Vec<Rc<str>>>())
                    }
                    _ => Ok(0),
                });
                match shape {
                    Ok(len) => (0..len).map(|at| json.index(Seg::Index(at))).collect(),
                    Err(keys) => keys.into_iter().map(|key| Value::JProperty(Rc::new((json.clone(), key)))).collect(),
                }
            }
            Value::Groups(data) => (0..data.groups.len()).map(|at| Value::Group(data.clone(), at as u32)).collect(),
            Value::Claims(jwt) => jwt
                .claims
                .keys()
                .map(|key| {
                    let values = claim_values(&jwt, key).unwrap_or_default();
                    pair(Value::string(key.clone()), Value::array(values.into_iter().map(Value::string).collect()))
                })
                .collect(),
            Value::Handle(Handle::Headers(message)) => {
                let (headers, buf) = self.message_headers(message);
                headers
                    .iter()
                    .map(|h| {
                        pair(
                            Value::Str(wire_text(h.name.of(buf))),
                            Value::array(vec![Value::Str(wire_text(h.value.of(buf)))]),
                        )
                    })
                    .collect()
            }
            Value::ResponseHeaders(response) => response
                .header_names()
                .into_iter()
                .map(|name| {
                    let value = response.header(name).unwrap_or_default();
                    pair(Value::string(name.to_owned()), Value::array(vec![Value::string(value)]))
                })
                .collect(),
            Value::Handle(Handle::Variables) => {
                let programs = self.view.programs;
                self.state
                    .variables
                    .iter()
                    .map(|(k, v)| pair(Value::Str(k.to_text(programs)), v.to_value(programs)))
                    .collect()
            }
            Value::Handle(Handle::MatchedParameters) => {
                self.view.matched.iter().map(|p| pair(Value::str(p.name), Value::str(p.value))).collect()
            }
            other => {
                return Err(Fault::eval(format!(
                    "Expression evaluation failed. foreach cannot operate on variables of type '{}'.",
                    other.type_name()
                )));
            }
        })
    }
}

/// `base` + `rest` as the forwarded target joins them.
fn joined_path<'a>(base: &str, rest: &[u8]) -> Text<'a> {
    let mut path = Vec::with_capacity(base.len() + rest.len() + 1);
    url::write_backend_target(&mut path, base, rest);
    String::from_utf8_lossy(&path).into_owned().into()
}

/// C# `string.Length`: UTF-16 code units.
pub(crate) fn utf16_len(text: &str) -> i64 {
    if text.is_ascii() { text.len() as i64 } else { text.encode_utf16().count() as i64 }
}

fn scheme_str(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    }
}

/// `host[:port]` split (IPv6 literals keep their brackets off).
pub(crate) fn split_host(host: &[u8]) -> (&[u8], Option<u16>) {
    let (name, port) = match host.iter().rposition(|&b| b == b':') {
        Some(at) if !host.contains(&b']') || host.get(at.saturating_sub(1)) == Some(&b']') => {
            (&host[..at], Some(&host[at + 1..]))
        }
        _ => (host, None),
    };
    let name = name.strip_prefix(b"[").and_then(|n| n.strip_suffix(b"]")).unwrap_or(name);
    (name, port.and_then(|p| std::str::from_utf8(p).ok()?.parse().ok()))
}

/// The client's address as APIM prints it (IPv4-mapped addresses as IPv4).
pub(crate) fn client_ip(peer: IpAddr) -> String {
    match peer {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// A claim's values as strings (arrays give one each), or `None` when absent.
pub(crate) fn claim_values(jwt: &Jwt, name: &str) -> Option<Vec<String>> {
    let claim = jwt.claims.get(name)?;
    let one = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    Some(match claim {
        serde_json::Value::Array(items) => items.iter().map(one).collect(),
        other => vec![one(other)],
    })
}

fn jwt_member<'a>(jwt: &Rc<Jwt>, prop: Prop) -> Option<Value<'a>> {
    let claim = |name: &str| jwt.claims.get(name).map_or(Value::Null, from_primitive);
    let date = |name: &str| match jwt.claims.get(name).and_then(serde_json::Value::as_f64) {
        Some(seconds) => chrono::DateTime::from_timestamp(seconds as i64, 0).map_or(Value::Null, Value::DateTime),
        None => Value::Null,
    };
    Some(match prop {
        Prop::Id => claim("jti"),
        Prop::Algorithm => jwt.header.get("alg").map_or(Value::Null, from_primitive),
        Prop::Type => jwt.header.get("typ").map_or(Value::Null, from_primitive),
        Prop::Issuer => claim("iss"),
        Prop::Subject => claim("sub"),
        Prop::Audiences => {
            Value::array(claim_values(jwt, "aud").unwrap_or_default().into_iter().map(Value::string).collect())
        }
        Prop::Claims => Value::Claims(jwt.clone()),
        Prop::ExpirationTime => date("exp"),
        Prop::NotBefore => date("nbf"),
        Prop::IssuedAt => date("iat"),
        _ => return None,
    })
}

fn group_member<'a>(data: &crate::policy::value::MatchData, index: u32, prop: Prop) -> Option<Value<'a>> {
    let group = data.groups.get(index as usize).and_then(Option::as_ref);
    Some(match prop {
        Prop::Success => Value::Bool(group.is_some()),
        Prop::Value => Value::Str(group.map_or(Text::Borrowed(""), |g| Text::Shared(g.1.clone()))),
        Prop::Index => Value::Int(group.map_or(0, |g| g.0 as i64)),
        Prop::Length => Value::Int(group.map_or(0, |g| utf16_len(&g.1))),
        Prop::Groups_ if index == 0 => Value::Groups(Rc::new(data.clone())),
        Prop::Name => data
            .names
            .get(index as usize)
            .cloned()
            .flatten()
            .map_or_else(|| Value::string(index.to_string()), |n| Value::Str(Text::Shared(n))),
        _ => return None,
    })
}

/// `X509Certificate2` members of the client's certificate.
fn certificate_member<'a>(certificate: &'a crate::tls::ClientCertificate, prop: Prop) -> Option<Value<'a>> {
    Some(match prop {
        Prop::Thumbprint => Value::str(&certificate.thumbprint),
        Prop::Subject => Value::str(&certificate.subject),
        Prop::Issuer => Value::str(&certificate.issuer),
        Prop::SerialNumber => Value::str(&certificate.serial_number),
        Prop::NotBefore => Value::DateTime(certificate.not_before),
        Prop::NotAfter => Value::DateTime(certificate.not_after),
        _ => return None,
    })
}

/// `context.Deployment.Gateway.InstanceId`: one GUID per gateway process, drawn at its first
/// use (APIM gives each self-hosted gateway instance its own id).
fn gateway_instance_id() -> &'static str {
    static INSTANCE_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    INSTANCE_ID.get_or_init(|| {
        let mut bytes = [0u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // No entropy source: the process id and start time still tell instances apart.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos());
            bytes = (nanos ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
        }
        // A version 4 GUID, formatted as .NET's `Guid.ToString()`.
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
    })
}
