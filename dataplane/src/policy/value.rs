//! Runtime values of policy expressions, with C# semantics for operators, equality and `ToString`.
//!
//! Strings never allocate when borrowed: a [`Text`] is a borrow of a constant (which request
//! state can keep by reference), a borrow of the request buffer or snapshot, or a shared owned
//! `Rc<str>`. Containers are shared and mutable as in .NET (`Rc<RefCell<..>>`): mutating a
//! `JObject` through one reference is seen through every other.

mod format;
pub(crate) mod json;

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;

use chrono::{DateTime, Utc};
use portcullis_contract::program::ValueType;

use crate::policy::error::Fault;
use crate::policy::load::ConstStr;

pub use format::{format_double, write_datetime_default};
pub use json::{JsonRef, Seg};

/// .NET ticks (100 ns) per millisecond.
pub const TICKS_PER_MS: i64 = 10_000;
/// .NET ticks per second.
pub const TICKS_PER_SECOND: i64 = 10_000_000;

/// A `Dictionary<string, T>`'s entries, shared and mutable.
pub type DictEntries<'a> = Rc<RefCell<Vec<(Rc<str>, Value<'a>)>>>;

/// A string value.
#[derive(Debug, Clone)]
pub enum Text<'a> {
    /// A string constant of the running program (request state can keep it by reference).
    Const(&'a ConstStr),
    /// A borrow of the request buffer or the snapshot.
    Borrowed(&'a str),
    /// An owned string, shared.
    Shared(Rc<str>),
}

impl<'a> Text<'a> {
    pub fn as_str(&self) -> &str {
        match self {
            Text::Const(text) => text.as_str(),
            Text::Borrowed(text) => text,
            Text::Shared(text) => text,
        }
    }

    /// The text for as long as `'a` when it is borrowed; `None` when it is owned.
    pub fn borrowed(&self) -> Option<&'a str> {
        match *self {
            Text::Const(text) => Some(text.as_str()),
            Text::Borrowed(text) => Some(text),
            Text::Shared(_) => None,
        }
    }
}

impl From<String> for Text<'_> {
    fn from(text: String) -> Self {
        Text::Shared(text.into())
    }
}

impl<'a> From<std::borrow::Cow<'a, str>> for Text<'a> {
    fn from(text: std::borrow::Cow<'a, str>) -> Self {
        match text {
            std::borrow::Cow::Borrowed(text) => Text::Borrowed(text),
            std::borrow::Cow::Owned(text) => text.into(),
        }
    }
}

/// Which message a handle reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Request,
    Response,
}

/// Which URL an `IUrl` handle reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlKind {
    /// `context.Request.OriginalUrl`: as the client sent it.
    Original,
    /// `context.Request.Url`: the backend URL after `rewrite-uri`, query edits and `set-backend-service`.
    Current,
    /// `context.Api.ServiceUrl`: the API's configured backend.
    Service,
}

/// The context's objects: read through the view and the request state when a member is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handle {
    Context,
    Request,
    Response,
    Url(UrlKind),
    Query(UrlKind),
    Headers(Message),
    Body(Message),
    MatchedParameters,
    Variables,
    Api,
    Operation,
    Subscription,
    /// `context.Product`: present only for requests through a product.
    Product,
    /// `context.User`: present only when the subscription has an owner.
    User,
    /// One of `context.User.Groups` or `context.Product.Groups`: an index into the snapshot's groups.
    Group(u32),
    /// The one identity of `context.User.Identities` (the user signs in with email and password).
    Identity,
    Deployment,
    /// `context.Deployment.Gateway`.
    Gateway,
    LastError,
    /// `context.Api.SubscriptionKeyParameterNames`.
    KeyNames,
    /// `context.Request.Certificate`: present only when the client presented a verified one.
    Certificate,
}

/// A parsed JWT (claims only: signatures are `validate-jwt`'s job).
#[derive(Debug, Clone, PartialEq)]
pub struct Jwt {
    pub header: serde_json::Map<String, serde_json::Value>,
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// `BasicAuthCredentials` from `AsBasic()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub user_id: Rc<str>,
    pub password: Rc<str>,
}

/// A regular-expression match and its groups (texts copied out of the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchData {
    /// Per group (0 is the whole match): char index and text, or `None` when it did not take part.
    pub groups: Vec<Option<(usize, Rc<str>)>>,
    /// Group names, by group number.
    pub names: Vec<Option<Rc<str>>>,
}

impl MatchData {
    /// The failed match (`Match.Empty`).
    pub fn failed() -> Self {
        Self { groups: vec![None], names: vec![None] }
    }

    pub fn success(&self) -> bool {
        self.groups.first().is_some_and(Option::is_some)
    }
}

/// A `foreach` in progress: the elements (snapshotted at `IterInit`) and the position.
#[derive(Debug)]
pub struct IterState<'a> {
    pub items: Vec<Value<'a>>,
    pub next: Cell<usize>,
}

/// A runtime value.
#[derive(Debug, Clone, Default)]
pub enum Value<'a> {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Text<'a>),
    /// `byte[]`.
    Bytes(Rc<[u8]>),
    /// Arrays and `List<T>`.
    Array(Rc<RefCell<Vec<Value<'a>>>>),
    /// `Dictionary<string, T>`, in insertion order.
    Dict(DictEntries<'a>),
    /// `KeyValuePair` (from iterating a dictionary or headers).
    Pair(Rc<(Value<'a>, Value<'a>)>),
    /// A JSON container (`JObject`, `JArray`) or token, by reference into a shared document.
    Json(JsonRef),
    /// A `JProperty`: the object holding it and its name.
    JProperty(Rc<(JsonRef, Rc<str>)>),
    Jwt(Rc<Jwt>),
    /// `jwt.Claims`.
    Claims(Rc<Jwt>),
    Basic(Rc<BasicAuth>),
    DateTime(DateTime<Utc>),
    /// `TimeSpan`, in .NET ticks (100 ns).
    TimeSpan(i64),
    Guid(u128),
    /// A compiled regular-expression constant.
    Regex(&'a regex::Regex),
    Match(Rc<MatchData>),
    /// `match.Groups`.
    Groups(Rc<MatchData>),
    /// `match.Groups[i]`.
    Group(Rc<MatchData>, u32),
    Handle(Handle),
    Iter(Rc<IterState<'a>>),
    /// An `IResponse` from `send-request`.
    Response(Rc<crate::policy::SentResponse>),
    /// Its `Headers`.
    ResponseHeaders(Rc<crate::policy::SentResponse>),
    /// Its `Body`.
    ResponseBody(Rc<crate::policy::SentResponse>),
}

impl<'a> Value<'a> {
    /// A borrowed string.
    pub fn str(text: &'a str) -> Self {
        Value::Str(Text::Borrowed(text))
    }

    /// An owned string.
    pub fn string(text: String) -> Self {
        Value::Str(Text::Shared(text.into()))
    }

    /// A new array (or list) of `items`.
    pub fn array(items: Vec<Value<'a>>) -> Self {
        Value::Array(Rc::new(RefCell::new(items)))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The C# type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "Boolean",
            Value::Int(_) => "Int32",
            Value::Double(_) => "Double",
            Value::Str(_) => "String",
            Value::Bytes(_) => "Byte[]",
            Value::Array(_) => "Array",
            Value::Dict(_) => "Dictionary",
            Value::Pair(_) => "KeyValuePair",
            Value::Json(json) => json.type_name(),
            Value::JProperty(_) => "JProperty",
            Value::Jwt(_) => "Jwt",
            Value::Claims(_) => "Claims",
            Value::Basic(_) => "BasicAuthCredentials",
            Value::DateTime(_) => "DateTime",
            Value::TimeSpan(_) => "TimeSpan",
            Value::Guid(_) => "Guid",
            Value::Regex(_) => "Regex",
            Value::Match(_) => "Match",
            Value::Groups(_) => "GroupCollection",
            Value::Group(..) => "Group",
            Value::Handle(_) => "context",
            Value::Iter(_) => "Enumerator",
            Value::Response(_) => "IResponse",
            Value::ResponseHeaders(_) => "IReadOnlyDictionary",
            Value::ResponseBody(_) => "IMessageBody",
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text.as_str()),
            _ => None,
        }
    }

    /// Whether the value is of type `ty` (`is`, casts). `null` is of no type.
    pub fn is_type(&self, ty: ValueType) -> bool {
        match ty {
            ValueType::Object => !self.is_null(),
            ValueType::String => matches!(self, Value::Str(_)),
            ValueType::Int => matches!(self, Value::Int(_)),
            ValueType::Double => matches!(self, Value::Double(_)),
            ValueType::Bool => matches!(self, Value::Bool(_)),
            ValueType::JObject => matches!(self, Value::Json(json) if json.is_object()),
            ValueType::JArray => matches!(self, Value::Json(json) if json.is_array()),
            ValueType::JToken => matches!(self, Value::Json(_) | Value::JProperty(_)),
            ValueType::Jwt => matches!(self, Value::Jwt(_)),
            ValueType::Response => matches!(self, Value::Response(_)),
            ValueType::DateTime => matches!(self, Value::DateTime(_)),
            ValueType::TimeSpan => matches!(self, Value::TimeSpan(_)),
            ValueType::Guid => matches!(self, Value::Guid(_)),
            ValueType::Bytes => matches!(self, Value::Bytes(_)),
            ValueType::Array => matches!(self, Value::Array(_)),
        }
    }

    /// `(T)x`: numeric conversions C# allows (`(int)3.7` is 3, `(double)3` is 3.0), JSON
    /// primitives to their CLR type; anything else must already have the type.
    pub fn cast(self, ty: ValueType) -> Result<Self, Fault> {
        if self.is_null() || self.is_type(ty) {
            return Ok(self);
        }
        match (ty, &self) {
            (ValueType::Int, Value::Double(value)) if value.is_finite() && value.abs() < 9.2e18 => {
                Ok(Value::Int(value.trunc() as i64))
            }
            (ValueType::Double, Value::Int(value)) => Ok(Value::Double(*value as f64)),
            (ValueType::JToken | ValueType::Object, _) => Ok(self),
            _ => Err(Fault::eval(format!(
                "Expression evaluation failed. Unable to cast object of type '{}' to type '{}'.",
                self.type_name(),
                value_type_name(ty)
            ))),
        }
    }

    /// C# `ToString()` (null receiver fails: `NullReferenceException`).
    pub fn to_text(&self) -> Result<Text<'a>, Fault> {
        match self {
            Value::Null => {
                Err(Fault::eval("Expression evaluation failed. Object reference not set to an instance of an object."))
            }
            Value::Str(text) => Ok(text.clone()),
            other => {
                let mut out = String::new();
                other.write_display(&mut out);
                Ok(out.into())
            }
        }
    }

    /// Appends the value as `ToString()` writes it (null as "", as string concatenation does).
    pub fn write_display(&self, out: &mut String) {
        match self {
            Value::Null => {}
            Value::Bool(true) => out.push_str("True"),
            Value::Bool(false) => out.push_str("False"),
            Value::Int(value) => {
                let _ = write!(out, "{value}");
            }
            Value::Double(value) => format_double(*value, out),
            Value::Str(text) => out.push_str(text.as_str()),
            Value::Bytes(_) => out.push_str("System.Byte[]"),
            Value::Array(_) => out.push_str("System.String[]"),
            Value::Dict(_) => out.push_str("System.Collections.Generic.Dictionary`2[System.String,System.Object]"),
            Value::Pair(pair) => {
                out.push('[');
                pair.0.write_display(out);
                out.push_str(", ");
                pair.1.write_display(out);
                out.push(']');
            }
            Value::Json(json) => json.write_display(out),
            Value::JProperty(property) => property.0.write_property(&property.1, out),
            Value::Jwt(_) => out.push_str("Jwt"),
            Value::Claims(_) => out.push_str("Claims"),
            Value::Basic(_) => out.push_str("BasicAuthCredentials"),
            Value::DateTime(value) => write_datetime_default(value, out),
            Value::TimeSpan(ticks) => format::write_timespan(*ticks, out),
            Value::Guid(value) => format::write_guid(*value, out),
            Value::Regex(regex) => out.push_str(regex.as_str()),
            Value::Match(data) => out.push_str(data.groups.first().and_then(Option::as_ref).map_or("", |g| &g.1)),
            Value::Group(data, index) => {
                out.push_str(data.groups.get(*index as usize).and_then(Option::as_ref).map_or("", |group| &group.1))
            }
            Value::Groups(_) => out.push_str("System.Text.RegularExpressions.GroupCollection"),
            Value::Handle(_) => out.push_str("context"),
            Value::Iter(_) => out.push_str("Enumerator"),
            Value::Response(_) => out.push_str("Microsoft.WindowsAzure.ApiManagement.Proxy.Gateway.Policies.Response"),
            Value::ResponseHeaders(_) => {
                out.push_str("System.Collections.Generic.Dictionary`2[System.String,System.String[]]")
            }
            Value::ResponseBody(_) => out.push_str("MessageBody"),
        }
    }

    /// C# `==` (and `Equals`): value equality on strings, numbers (int and double compare
    /// numerically), bools, dates, GUIDs; reference equality on containers.
    pub fn equals(&self, other: &Value<'a>) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Null, _) | (_, Value::Null) => false,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Int(a), Value::Double(b)) | (Value::Double(b), Value::Int(a)) => (*a as f64) == *b,
            (Value::Double(a), Value::Double(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a.as_str() == b.as_str(),
            (Value::DateTime(a), Value::DateTime(b)) => a == b,
            (Value::TimeSpan(a), Value::TimeSpan(b)) => a == b,
            (Value::Guid(a), Value::Guid(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => Rc::ptr_eq(a, b),
            (Value::Array(a), Value::Array(b)) => Rc::ptr_eq(a, b),
            (Value::Dict(a), Value::Dict(b)) => Rc::ptr_eq(a, b),
            (Value::Json(a), Value::Json(b)) => a.same(b),
            (Value::Jwt(a), Value::Jwt(b)) => Rc::ptr_eq(a, b),
            (Value::Response(a), Value::Response(b)) => Rc::ptr_eq(a, b),
            (Value::Handle(a), Value::Handle(b)) => a == b,
            _ => false,
        }
    }

    /// `<`, `<=`, `>`, `>=` on numbers, dates and time spans.
    pub fn compare(&self, other: &Value<'_>) -> Result<std::cmp::Ordering, Fault> {
        use std::cmp::Ordering;
        let ordering = match (self, other) {
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::DateTime(a), Value::DateTime(b)) => Some(a.cmp(b)),
            (Value::TimeSpan(a), Value::TimeSpan(b)) => Some(a.cmp(b)),
            _ => match (self.as_f64(), other.as_f64()) {
                // NaN compares false every way; `Less` with the caller's negation would lie, so refuse it.
                (Some(a), Some(b)) => a.partial_cmp(&b),
                _ => None,
            },
        };
        ordering
            .ok_or_else(|| {
                Fault::eval(format!(
                    "Expression evaluation failed. Cannot compare {} with {}.",
                    self.type_name(),
                    other.type_name()
                ))
            })
            .map(|ordering: Ordering| ordering)
    }

    /// The number as a double (ints widen).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(value) => Some(value as f64),
            Value::Double(value) => Some(value),
            _ => None,
        }
    }

    /// The truth value for a jump (`null` and non-bools fail, as C# would not compile them).
    pub fn truth(&self) -> Result<bool, Fault> {
        match *self {
            Value::Bool(value) => Ok(value),
            _ => Err(Fault::eval(format!(
                "Expression evaluation failed. Expected a Boolean, found {}.",
                self.type_name()
            ))),
        }
    }
}

/// The C# name of a [`ValueType`], for error messages.
pub fn value_type_name(ty: ValueType) -> &'static str {
    match ty {
        ValueType::String => "System.String",
        ValueType::Int => "System.Int32",
        ValueType::Double => "System.Double",
        ValueType::Bool => "System.Boolean",
        ValueType::JObject => "Newtonsoft.Json.Linq.JObject",
        ValueType::JArray => "Newtonsoft.Json.Linq.JArray",
        ValueType::JToken => "Newtonsoft.Json.Linq.JToken",
        ValueType::Jwt => "Jwt",
        ValueType::Response => "IResponse",
        ValueType::DateTime => "System.DateTime",
        ValueType::TimeSpan => "System.TimeSpan",
        ValueType::Guid => "System.Guid",
        ValueType::Bytes => "System.Byte[]",
        ValueType::Array => "System.Array",
        ValueType::Object => "System.Object",
    }
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl Arith {
    fn symbol(self) -> &'static str {
        match self {
            Arith::Add => "+",
            Arith::Sub => "-",
            Arith::Mul => "*",
            Arith::Div => "/",
            Arith::Rem => "%",
        }
    }
}

/// `a op b` with C# semantics: `+` concatenates when either side is a string (null → "");
/// ints are checked (overflow and division by zero fail); doubles follow IEEE as .NET does;
/// dates and time spans add and subtract.
pub fn arith<'a>(op: Arith, a: Value<'a>, b: Value<'a>) -> Result<Value<'a>, Fault> {
    if op == Arith::Add && (matches!(a, Value::Str(_)) || matches!(b, Value::Str(_))) {
        return Ok(concat(&[a, b]));
    }
    let overflow = || Fault::eval("Expression evaluation failed. Arithmetic operation resulted in an overflow.");
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            let result = match op {
                Arith::Add => x.checked_add(y),
                Arith::Sub => x.checked_sub(y),
                Arith::Mul => x.checked_mul(y),
                Arith::Div | Arith::Rem if y == 0 => {
                    return Err(Fault::eval("Expression evaluation failed. Attempted to divide by zero."));
                }
                Arith::Div => x.checked_div(y),
                Arith::Rem => x.checked_rem(y),
            };
            result.map(Value::Int).ok_or_else(overflow)
        }
        (Value::DateTime(x), Value::TimeSpan(t)) if matches!(op, Arith::Add | Arith::Sub) => {
            let delta = chrono::Duration::microseconds(t / 10);
            let result = if op == Arith::Add { x.checked_add_signed(delta) } else { x.checked_sub_signed(delta) };
            result.map(Value::DateTime).ok_or_else(overflow)
        }
        (Value::DateTime(x), Value::DateTime(y)) if op == Arith::Sub => {
            let micros = (x - y).num_microseconds().ok_or_else(overflow)?;
            micros.checked_mul(10).map(Value::TimeSpan).ok_or_else(overflow)
        }
        (Value::TimeSpan(x), Value::TimeSpan(y)) if matches!(op, Arith::Add | Arith::Sub) => {
            let result = if op == Arith::Add { x.checked_add(y) } else { x.checked_sub(y) };
            result.map(Value::TimeSpan).ok_or_else(overflow)
        }
        (a, b) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => Ok(Value::Double(match op {
                Arith::Add => x + y,
                Arith::Sub => x - y,
                Arith::Mul => x * y,
                Arith::Div => x / y,
                Arith::Rem => x % y,
            })),
            _ => Err(Fault::eval(format!(
                "Expression evaluation failed. Operator '{}' cannot be applied to operands of type '{}' and '{}'.",
                op.symbol(),
                a.type_name(),
                b.type_name()
            ))),
        },
    }
}

/// Unary minus.
pub fn negate(value: Value<'_>) -> Result<Value<'_>, Fault> {
    match value {
        Value::Int(x) => x
            .checked_neg()
            .map(Value::Int)
            .ok_or_else(|| Fault::eval("Expression evaluation failed. Arithmetic operation resulted in an overflow.")),
        Value::Double(x) => Ok(Value::Double(-x)),
        Value::TimeSpan(x) => Ok(Value::TimeSpan(x.saturating_neg())),
        other => Err(Fault::eval(format!(
            "Expression evaluation failed. Operator '-' cannot be applied to operand of type '{}'.",
            other.type_name()
        ))),
    }
}

/// String concatenation of `parts` (null as ""). One part that is a string is returned as is.
pub fn concat<'a>(parts: &[Value<'a>]) -> Value<'a> {
    match parts {
        [Value::Str(text)] => Value::Str(text.clone()),
        [Value::Str(text), Value::Null] | [Value::Null, Value::Str(text)] => Value::Str(text.clone()),
        _ => {
            let mut out = String::new();
            for part in parts {
                part.write_display(&mut out);
            }
            Value::string(out)
        }
    }
}
