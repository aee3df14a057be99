//! `set-body template="liquid"`: APIM's objects (`context`, `body`) as Liquid values, and the
//! render of a template the snapshot loader parsed.
//!
//! The objects are built per render from the same members the expression language reads
//! (`Machine::member`), so `{{context.Request.Url.Path}}` and `@(context.Request.Url.Path)` agree.
//! Dictionaries (headers, query, variables, matched parameters) are Liquid objects: `["name"]`
//! and `.name` look a value up; `for` over one yields `[key, value]` pairs (Liquid's rule; DotLiquid's
//! `pair.Key`/`pair.Value` are written `pair[0]`/`pair[1]`, docs/policies.md).

mod lenient;

use liquid::ValueView as _;
use liquid::model::{Object, Value as LiquidValue};
use portcullis_contract::program::{Op, Prop, Side};

use super::{Flow, Machine, internal};
use crate::http::url::{self, Coding};
use crate::policy::error::Fault;
use crate::policy::load::{LiquidTemplate, LoadedConst};
use crate::policy::state::{StoredBody, StoredText};
use crate::policy::transform::{self, XmlToJsonKind};
use crate::policy::value::{Handle, Message, Value};

/// A rendered body past this fails the policy: a template looping over a large body must not
/// grow without bound (the proxy's buffered-body limit is of the same order).
pub(crate) const LIQUID_OUTPUT_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Members of each `context` object exposed to templates, as APIM's set-body documentation lists
/// them (and the expression language's names for the rest).
const CONTEXT: &[(&str, Prop)] = &[
    ("Request", Prop::Request),
    ("Response", Prop::Response),
    ("Api", Prop::Api),
    ("Operation", Prop::Operation),
    ("Product", Prop::Product),
    ("Subscription", Prop::Subscription),
    ("User", Prop::User),
    ("Variables", Prop::Variables),
    ("Deployment", Prop::Deployment),
    ("LastError", Prop::LastError),
    ("RequestId", Prop::RequestId),
    ("Timestamp", Prop::Timestamp),
    ("Tracing", Prop::Tracing),
];
const REQUEST: &[(&str, Prop)] = &[
    ("Url", Prop::Url),
    ("OriginalUrl", Prop::OriginalUrl),
    ("Method", Prop::Method),
    ("IpAddress", Prop::IpAddress),
    ("MatchedParameters", Prop::MatchedParameters),
    ("Headers", Prop::Headers),
];
const RESPONSE: &[(&str, Prop)] =
    &[("StatusCode", Prop::StatusCode), ("StatusReason", Prop::StatusReason), ("Headers", Prop::Headers)];
const URL: &[(&str, Prop)] = &[
    ("Scheme", Prop::Scheme),
    ("Host", Prop::Host),
    ("Port", Prop::Port),
    ("Path", Prop::Path),
    ("Query", Prop::Query),
    ("QueryString", Prop::QueryString),
];
const API: &[(&str, Prop)] = &[
    ("Id", Prop::Id),
    ("Name", Prop::Name),
    ("Path", Prop::Path),
    ("Version", Prop::Version),
    ("Revision", Prop::Revision),
    ("IsCurrentRevision", Prop::IsCurrentRevision),
    ("ServiceUrl", Prop::ServiceUrl),
];
const OPERATION: &[(&str, Prop)] =
    &[("Id", Prop::Id), ("Name", Prop::Name), ("Method", Prop::Method), ("UrlTemplate", Prop::UrlTemplate)];
const SUBSCRIPTION: &[(&str, Prop)] = &[
    ("Id", Prop::Id),
    ("Name", Prop::Name),
    ("Key", Prop::Key),
    ("PrimaryKey", Prop::PrimaryKey),
    ("SecondaryKey", Prop::SecondaryKey),
    ("CreatedDate", Prop::CreatedDate),
    ("StartDate", Prop::StartDate),
    ("EndDate", Prop::EndDate),
];
const USER: &[(&str, Prop)] = &[
    ("Id", Prop::Id),
    ("Email", Prop::Email),
    ("FirstName", Prop::FirstName),
    ("LastName", Prop::LastName),
    ("Note", Prop::Note),
    ("RegistrationDate", Prop::RegistrationDate),
];
const PRODUCT: &[(&str, Prop)] = &[
    ("Id", Prop::Id),
    ("Name", Prop::Name),
    ("ApprovalRequired", Prop::ApprovalRequired),
    ("State", Prop::State),
    ("SubscriptionLimit", Prop::SubscriptionLimit),
    ("SubscriptionRequired", Prop::SubscriptionRequired),
];
const DEPLOYMENT: &[(&str, Prop)] =
    &[("GatewayId", Prop::GatewayId), ("Region", Prop::Region), ("ServiceName", Prop::ServiceName)];
const LAST_ERROR: &[(&str, Prop)] = &[
    ("Source", Prop::Source),
    ("Reason", Prop::Reason),
    ("Message", Prop::Message),
    ("Scope", Prop::Scope),
    ("Section", Prop::Section),
    ("Path", Prop::ErrorPath),
    ("PolicyId", Prop::PolicyId),
];

/// The message bodies APIM's `body` object reads (JSON, or XML converted as `xml-to-json` does).
pub(crate) fn body_value(bytes: &[u8], xml: bool) -> LiquidValue {
    let json = if xml {
        transform::xml_to_json(bytes, XmlToJsonKind::Direct, false).ok().and_then(|j| serde_json::from_str(&j).ok())
    } else {
        serde_json::from_slice::<serde_json::Value>(bytes).ok()
    };
    match json {
        Some(json) => from_json(&json),
        // Neither JSON nor XML: the text itself, as DotLiquid would print it.
        None => LiquidValue::scalar(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// A JSON value as a Liquid one (numbers stay integers where they are).
pub(crate) fn from_json(json: &serde_json::Value) -> LiquidValue {
    match json {
        serde_json::Value::Null => LiquidValue::Nil,
        serde_json::Value::Bool(b) => LiquidValue::scalar(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => LiquidValue::scalar(i),
            None => LiquidValue::scalar(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => LiquidValue::scalar(s.clone()),
        serde_json::Value::Array(items) => LiquidValue::Array(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => {
            LiquidValue::Object(map.iter().map(|(k, v)| (k.clone().into(), from_json(v))).collect())
        }
    }
}

/// Renders `template` with `body` (untrusted bytes, read as `xml` or JSON) as its only object:
/// the part of a render that depends on what clients and backends send (the fuzz target's entry).
pub fn render_body(template: &LiquidTemplate, body: &[u8], xml: bool) -> Result<String, liquid::Error> {
    let mut globals = Object::new();
    globals.insert("body".into(), body_value(body, xml));
    template.render(&lenient::Lenient::new(LiquidValue::Object(globals)))
}

impl<'r, 'a> Machine<'r, 'a> {
    /// `Op::SetBodyLiquid`.
    pub(super) fn set_body_liquid(&mut self, op: Op) -> Result<Flow, Fault> {
        let Op::SetBodyLiquid { side, template, body } = op else { return Err(internal("set-body liquid")) };
        let Some(LoadedConst::Liquid(template)) = self.program.consts().get(template as usize) else {
            return Err(internal("set-body liquid template"));
        };
        let mut globals = Object::new();
        globals.insert("context".into(), self.liquid_context()?);
        if let Some(message) = body {
            let xml = self.content_type_has(message, "xml");
            // A message without a buffered body (a response in on-error before the backend
            // answered) has no `body`: the template sees nil, as for an empty body.
            let value = match self.current_body(message) {
                Ok(bytes) if !bytes.is_empty() => body_value(&bytes, xml),
                _ => LiquidValue::Nil,
            };
            globals.insert("body".into(), value);
        }
        let globals = lenient::Lenient::new(LiquidValue::Object(globals));
        let rendered = template
            .render(&globals)
            .map_err(|error| Fault::eval(format!("Expression evaluation failed. Liquid: {}", one_line(&error))))?;
        if rendered.len() > LIQUID_OUTPUT_BYTES_MAX {
            return Err(Fault::eval(format!(
                "Expression evaluation failed. Liquid: the rendered body is larger than {LIQUID_OUTPUT_BYTES_MAX} bytes."
            )));
        }
        self.set_body(side, StoredBody::Text(StoredText::Owned(rendered.into())))?;
        Ok(Flow::Next)
    }

    /// The `context` object.
    fn liquid_context(&self) -> Result<LiquidValue, Fault> {
        self.liquid_handle(Handle::Context, CONTEXT)
    }

    fn liquid_handle(&self, handle: Handle, members: &'static [(&'static str, Prop)]) -> Result<LiquidValue, Fault> {
        let mut object = Object::new();
        for (name, prop) in members {
            // A member this request lacks (no subscription, no response yet) is nil.
            let value = self.member(Value::Handle(handle), *prop).unwrap_or(Value::Null);
            object.insert((*name).into(), self.liquid_value(value, 0)?);
        }
        if let Handle::Url(_) = handle {
            let text = self.url_text(&object);
            object.insert("ToString".into(), LiquidValue::scalar(text.clone()));
            object.insert("ToUri".into(), LiquidValue::scalar(text));
        }
        if let Handle::Request = handle {
            let has_body = self.current_body(Side::Request).is_ok_and(|body| !body.is_empty())
                || self.header_value(Message::Request, "Content-Length").is_some_and(|n| n.as_str().trim() != "0")
                || self.header_value(Message::Request, "Transfer-Encoding").is_some();
            object.insert("HasBody".into(), LiquidValue::scalar(has_body));
        }
        Ok(LiquidValue::Object(object))
    }

    /// `scheme://host[:port]path?query` of a URL object built by [`Self::liquid_handle`].
    fn url_text(&self, url: &Object) -> String {
        let text = |name: &str| url.get(name).map(|v| v.to_kstr().into_owned()).unwrap_or_default();
        let scheme = text("Scheme");
        let port = text("Port");
        let default_port = matches!((scheme.as_str(), port.as_str()), ("http", "80") | ("https", "443"));
        let port = if default_port || port.is_empty() { String::new() } else { format!(":{port}") };
        format!("{scheme}://{}{port}{}{}", text("Host"), text("Path"), text("QueryString"))
    }

    /// A VM value as a Liquid one; `depth` bounds the walk (handles nest a few levels deep).
    fn liquid_value(&self, value: Value<'a>, depth: u8) -> Result<LiquidValue, Fault> {
        const DEPTH_MAX: u8 = 8;
        if depth > DEPTH_MAX {
            return Ok(LiquidValue::Nil);
        }
        Ok(match value {
            Value::Null => LiquidValue::Nil,
            Value::Bool(b) => LiquidValue::scalar(b),
            Value::Int(i) => LiquidValue::scalar(i),
            Value::Double(d) => LiquidValue::scalar(d),
            Value::Str(text) => LiquidValue::scalar(text.as_str().to_owned()),
            Value::Json(json) => json.with(|token| token.map_or(LiquidValue::Nil, from_json)),
            Value::Array(items) => {
                let items = items.borrow().clone();
                LiquidValue::Array(
                    items.into_iter().map(|item| self.liquid_value(item, depth + 1)).collect::<Result<_, _>>()?,
                )
            }
            Value::Handle(handle) => match handle {
                Handle::Request => self.liquid_handle(handle, REQUEST)?,
                Handle::Response => self.liquid_handle(handle, RESPONSE)?,
                Handle::Url(_) => self.liquid_handle(handle, URL)?,
                Handle::Api => self.liquid_handle(handle, API)?,
                Handle::Operation => self.liquid_handle(handle, OPERATION)?,
                Handle::Subscription => self.liquid_handle(handle, SUBSCRIPTION)?,
                Handle::User => self.liquid_handle(handle, USER)?,
                Handle::Product => self.liquid_handle(handle, PRODUCT)?,
                Handle::Deployment => self.liquid_handle(handle, DEPLOYMENT)?,
                Handle::LastError => self.liquid_handle(handle, LAST_ERROR)?,
                Handle::Headers(_) | Handle::Query(_) | Handle::MatchedParameters | Handle::Variables => {
                    self.liquid_dictionary(value_of(handle), depth)?
                }
                _ => LiquidValue::Nil,
            },
            Value::Dict(_) | Value::Claims(_) | Value::ResponseHeaders(_) => self.liquid_dictionary(value, depth)?,
            other => {
                let mut text = String::new();
                other.write_display(&mut text);
                LiquidValue::scalar(text)
            }
        })
    }

    /// A dictionary as a Liquid object: name → value (several values comma-joined, as
    /// `GetValueOrDefault` joins them).
    fn liquid_dictionary(&self, source: Value<'a>, depth: u8) -> Result<LiquidValue, Fault> {
        let pairs = match source {
            Value::Handle(Handle::Query(kind)) => {
                let query = self.query_string(kind);
                let mut object = Object::new();
                for (name, value) in url::query_pairs(query.as_bytes()) {
                    let name = url::percent_decode_str(name, Coding::Form).into_owned();
                    let value = url::percent_decode_str(value, Coding::Form).into_owned();
                    let value = match object.get(name.as_str()) {
                        Some(seen) => format!("{},{value}", seen.to_kstr()),
                        None => value,
                    };
                    object.insert(name.into(), LiquidValue::scalar(value));
                }
                return Ok(LiquidValue::Object(object));
            }
            other => self.elements(other)?,
        };
        let mut object = Object::new();
        for pair in pairs {
            let Value::Pair(pair) = pair else { continue };
            let (key, value) = (*pair).clone();
            let mut name = String::new();
            key.write_display(&mut name);
            let value = match value {
                Value::Array(items) if items.borrow().iter().all(|v| matches!(v, Value::Str(_))) => {
                    let joined =
                        items.borrow().iter().filter_map(|v| v.as_str().map(str::to_owned)).collect::<Vec<_>>();
                    Value::string(joined.join(","))
                }
                other => other,
            };
            let value = self.liquid_value(value, depth + 1)?;
            let value = match (object.get(name.as_str()), value) {
                (Some(seen), LiquidValue::Scalar(next)) => {
                    LiquidValue::scalar(format!("{},{}", seen.to_kstr(), next.to_kstr()))
                }
                (_, value) => value,
            };
            object.insert(name.into(), value);
        }
        Ok(LiquidValue::Object(object))
    }
}

fn value_of<'a>(handle: Handle) -> Value<'a> {
    Value::Handle(handle)
}

/// A multi-line liquid error on one line.
fn one_line(error: &liquid::Error) -> String {
    error.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}
