//! Static types of policy expressions and the member tables that resolve `x.Name` and
//! `x.Method(..)` on them.
//!
//! The lattice is small on purpose: it knows the `context` object graph exactly (so typos in
//! `context.Request.Hedaers` are compile errors), the JSON, JWT, date and collection types
//! APIM policies use, and [`StaticType::Object`] for everything only known at run time (the
//! values of `context.Variables`). On `Object` the compiler is permissive and the VM checks.

use std::fmt;

use portcullis_contract::program::{Builtin, Prop, ValueType};

use super::syntax::TypeName;

/// The compile-time type of an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum StaticType {
    /// `object`, or a value whose type is only known at run time.
    Object,
    /// The `null` literal.
    Null,
    String,
    /// A `char`; the VM represents it as a one-character string.
    Char,
    /// `int` and `long`.
    Int,
    Double,
    Bool,
    JObject,
    JArray,
    JToken,
    JProperty,
    Jwt,
    /// `BasicAuthCredentials` (from `AsBasic()`).
    BasicCredentials,
    DateTime,
    TimeSpan,
    Guid,
    /// `byte[]`.
    Bytes,
    /// `T[]` (and `IEnumerable<T>`).
    Array(Box<StaticType>),
    /// `List<T>`.
    List(Box<StaticType>),
    /// A dictionary with string keys and values of this type: request headers and query
    /// (`string[]`), matched parameters (`string`), variables (`object`), JWT claims.
    Dictionary(Box<StaticType>),
    /// `KeyValuePair<string, T>`: an element of a dictionary (and of a `JObject`).
    Pair(Box<StaticType>),
    Regex,
    Match,
    /// A regex `Group`.
    RegexGroup,
    /// `match.Groups`.
    GroupCollection,
    /// One of the objects of the `context` graph.
    Context(ContextObject),
    /// A .NET enum passed as an int.
    Enum(EnumType),
    /// `SHA256.Create()` and friends: no run-time value (the VM hashes in one builtin).
    Hasher(HashKind),
    /// `new HMACSHA256(key)`: the run-time value is the key.
    Hmac(HashKind),
}

/// The interfaces of the `context` object graph (apim-reference §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextObject {
    Context,
    Request,
    /// `context.Response`, and `IResponse` values from `send-request`.
    Response,
    Url,
    Api,
    Operation,
    Subscription,
    User,
    Product,
    Deployment,
    LastError,
    MessageBody,
    /// `IGroup` of `context.User.Groups`.
    Group,
    /// `context.Api.SubscriptionKeyParameterNames`.
    KeyParameterNames,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnumType {
    StringComparison,
    RegexOptions,
    StringSplitOptions,
    Formatting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl HashKind {
    pub(crate) fn hash_builtin(self) -> Builtin {
        match self {
            Self::Md5 => Builtin::Md5Hash,
            Self::Sha1 => Builtin::Sha1Hash,
            Self::Sha256 => Builtin::Sha256Hash,
            Self::Sha512 => Builtin::Sha512Hash,
        }
    }

    /// The HMAC builtin, or `None` where the instruction set has none (HMACMD5).
    pub(crate) fn hmac_builtin(self) -> Option<Builtin> {
        match self {
            Self::Md5 => None,
            Self::Sha1 => Some(Builtin::HmacSha1),
            Self::Sha256 => Some(Builtin::HmacSha256),
            Self::Sha512 => Some(Builtin::HmacSha512),
        }
    }
}

impl fmt::Display for StaticType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Object => f.write_str("object"),
            Self::Null => f.write_str("null"),
            Self::String => f.write_str("string"),
            Self::Char => f.write_str("char"),
            Self::Int => f.write_str("int"),
            Self::Double => f.write_str("double"),
            Self::Bool => f.write_str("bool"),
            Self::JObject => f.write_str("JObject"),
            Self::JArray => f.write_str("JArray"),
            Self::JToken => f.write_str("JToken"),
            Self::JProperty => f.write_str("JProperty"),
            Self::Jwt => f.write_str("Jwt"),
            Self::BasicCredentials => f.write_str("BasicAuthCredentials"),
            Self::DateTime => f.write_str("DateTime"),
            Self::TimeSpan => f.write_str("TimeSpan"),
            Self::Guid => f.write_str("Guid"),
            Self::Bytes => f.write_str("byte[]"),
            Self::Array(t) => write!(f, "{t}[]"),
            Self::List(t) => write!(f, "List<{t}>"),
            Self::Dictionary(t) => write!(f, "IReadOnlyDictionary<string, {t}>"),
            Self::Pair(t) => write!(f, "KeyValuePair<string, {t}>"),
            Self::Regex => f.write_str("Regex"),
            Self::Match => f.write_str("Match"),
            Self::RegexGroup => f.write_str("Group"),
            Self::GroupCollection => f.write_str("GroupCollection"),
            Self::Context(c) => f.write_str(match c {
                ContextObject::Context => "IProxyRequestContext",
                ContextObject::Request => "IRequest",
                ContextObject::Response => "IResponse",
                ContextObject::Url => "IUrl",
                ContextObject::Api => "IApi",
                ContextObject::Operation => "IOperation",
                ContextObject::Subscription => "ISubscription",
                ContextObject::User => "IUser",
                ContextObject::Product => "IProduct",
                ContextObject::Deployment => "IDeployment",
                ContextObject::LastError => "ILastError",
                ContextObject::MessageBody => "IMessageBody",
                ContextObject::Group => "IGroup",
                ContextObject::KeyParameterNames => "ISubscriptionKeyParameterNames",
            }),
            Self::Enum(e) => write!(f, "{e:?}"),
            Self::Hasher(h) => write!(f, "{}", hash_name(*h)),
            Self::Hmac(h) => write!(f, "HMAC{}", hash_name(*h)),
        }
    }
}

fn hash_name(h: HashKind) -> &'static str {
    match h {
        HashKind::Md5 => "MD5",
        HashKind::Sha1 => "SHA1",
        HashKind::Sha256 => "SHA256",
        HashKind::Sha512 => "SHA512",
    }
}

/// Coarse families for compatibility checks: two known types of different families can never
/// convert into each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Dynamic,
    Text,
    Char,
    Number,
    Bool,
    Json,
    Time,
    Span,
    Guid,
    Bytes,
    Sequence,
    Dictionary,
    Other,
}

impl StaticType {
    pub(crate) fn array_of(element: StaticType) -> Self {
        Self::Array(Box::new(element))
    }

    /// Request and response headers, query parameters and JWT claims.
    pub(crate) fn multi_value_dictionary() -> Self {
        Self::Dictionary(Box::new(Self::array_of(Self::String)))
    }

    /// Known only at run time (so the compiler does not check it).
    pub fn is_dynamic(&self) -> bool {
        matches!(self, Self::Object | Self::Null)
    }

    fn family(&self) -> Family {
        match self {
            Self::Object | Self::Null => Family::Dynamic,
            Self::String => Family::Text,
            Self::Char => Family::Char,
            Self::Int | Self::Double | Self::Enum(_) => Family::Number,
            Self::Bool => Family::Bool,
            Self::JObject | Self::JArray | Self::JToken | Self::JProperty => Family::Json,
            Self::DateTime => Family::Time,
            Self::TimeSpan => Family::Span,
            Self::Guid => Family::Guid,
            Self::Bytes => Family::Bytes,
            Self::Array(_) | Self::List(_) => Family::Sequence,
            Self::Dictionary(_) => Family::Dictionary,
            _ => Family::Other,
        }
    }

    /// Whether a value of `self` may be used where `target` is expected without a cast
    /// (lenient: dynamic values, `null`, int → double and the JSON family all pass).
    pub(crate) fn assignable_to(&self, target: &StaticType) -> bool {
        if self == target || self.is_dynamic() || target.is_dynamic() {
            return true;
        }
        match (self.family(), target.family()) {
            (Family::Number, Family::Number) => !(matches!(self, Self::Double) && matches!(target, Self::Int)),
            (Family::Json, Family::Json)
            | (Family::Sequence, Family::Sequence)
            | (Family::Dictionary, Family::Dictionary) => true,
            (Family::Other, Family::Other) => std::mem::discriminant(self) == std::mem::discriminant(target),
            _ => false,
        }
    }

    /// Whether an explicit cast `(target)self` can succeed for some value.
    pub(crate) fn castable_to(&self, target: &StaticType) -> bool {
        if self.assignable_to(target) || target.assignable_to(self) {
            return true;
        }
        // Newtonsoft's explicit conversions from JToken, and numeric/char conversions.
        matches!(
            (self.family(), target.family()),
            (Family::Json, Family::Text | Family::Number | Family::Bool | Family::Time | Family::Guid)
                | (Family::Number, Family::Char)
                | (Family::Char, Family::Number)
        )
    }

    /// The static type of the elements when iterating a value of this type.
    pub(crate) fn element(&self) -> Option<StaticType> {
        Some(match self {
            Self::Object | Self::Null | Self::JToken => {
                if matches!(self, Self::JToken) {
                    Self::JToken
                } else {
                    Self::Object
                }
            }
            Self::Array(t) | Self::List(t) => (**t).clone(),
            Self::Bytes => Self::Int,
            Self::String => Self::Char,
            Self::JArray => Self::JToken,
            Self::JObject => Self::Pair(Box::new(Self::JToken)),
            Self::Dictionary(t) => Self::Pair(t.clone()),
            Self::GroupCollection => Self::RegexGroup,
            _ => return None,
        })
    }

    /// The type of `self[key]` and the key's type, or `None` when it has no indexer.
    pub(crate) fn indexer(&self) -> Option<(StaticType, StaticType)> {
        Some(match self {
            Self::Object | Self::Null => (Self::Object, Self::Object),
            Self::String => (Self::Char, Self::Int),
            Self::Array(t) | Self::List(t) => ((**t).clone(), Self::Int),
            Self::Bytes => (Self::Int, Self::Int),
            Self::Dictionary(t) => ((**t).clone(), Self::String),
            Self::JObject => (Self::JToken, Self::String),
            Self::JArray => (Self::JToken, Self::Int),
            Self::JToken => (Self::JToken, Self::Object),
            Self::GroupCollection => (Self::RegexGroup, Self::Object),
            _ => return None,
        })
    }
}

/// The least upper bound of two branch types (`c ? a : b`, `a ?? b`, several `return`s).
pub(crate) fn unify(a: &StaticType, b: &StaticType) -> StaticType {
    use StaticType as T;
    match (a, b) {
        _ if a == b => a.clone(),
        (T::Null, other) | (other, T::Null) => other.clone(),
        (T::Int, T::Double) | (T::Double, T::Int) => T::Double,
        (T::Enum(_), T::Int) | (T::Int, T::Enum(_)) => T::Int,
        (T::JObject | T::JArray | T::JToken | T::JProperty, T::JObject | T::JArray | T::JToken | T::JProperty) => {
            T::JToken
        }
        _ => T::Object,
    }
}

/// How a member read compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Prop(Prop),
    /// A builtin taking the receiver only (`dict.Keys`).
    Call(Builtin),
}

/// The result type of a table entry, in terms of the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ret {
    Str,
    Int,
    Bool,
    Double,
    Object,
    /// The receiver's own type.
    Same,
    /// The receiver's element type.
    Element,
    /// An array of the receiver's elements.
    ElementArray,
    ElementList,
    /// The value type of a dictionary (or of a pair).
    DictValue,
    Bytes,
    StrArray,
    CharArray,
    JToken,
    JProperty,
    JPropertyArray,
    DateTime,
    TimeSpan,
    Guid,
    Jwt,
    Basic,
    /// `void` methods: the VM pushes `null`.
    Void,
    Groups,
    Context(ContextObject),
    Dictionary(Value),
    Array(Value),
}

/// Element types usable in `const` tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    Str,
    StrArray,
    Object,
    Group,
}

impl Value {
    fn resolve(self) -> StaticType {
        match self {
            Self::Str => StaticType::String,
            Self::StrArray => StaticType::array_of(StaticType::String),
            Self::Object => StaticType::Object,
            Self::Group => StaticType::Context(ContextObject::Group),
        }
    }
}

impl Ret {
    pub(crate) fn resolve(self, receiver: &StaticType) -> StaticType {
        use StaticType as T;
        let element = || receiver.element().unwrap_or(T::Object);
        match self {
            Self::Str => T::String,
            Self::Int => T::Int,
            Self::Bool => T::Bool,
            Self::Double => T::Double,
            Self::Object | Self::Void => T::Object,
            Self::Same => receiver.clone(),
            Self::Element => element(),
            Self::ElementArray => T::array_of(element()),
            Self::ElementList => T::List(Box::new(element())),
            Self::DictValue => match receiver {
                T::Dictionary(t) | T::Pair(t) => (**t).clone(),
                _ => T::Object,
            },
            Self::Bytes => T::Bytes,
            Self::StrArray => T::array_of(T::String),
            Self::CharArray => T::array_of(T::Char),
            Self::JToken => T::JToken,
            Self::JProperty => T::JProperty,
            Self::JPropertyArray => T::array_of(T::JProperty),
            Self::DateTime => T::DateTime,
            Self::TimeSpan => T::TimeSpan,
            Self::Guid => T::Guid,
            Self::Jwt => T::Jwt,
            Self::Basic => T::BasicCredentials,
            Self::Groups => T::GroupCollection,
            Self::Context(c) => T::Context(c),
            Self::Dictionary(v) => T::Dictionary(Box::new(v.resolve())),
            Self::Array(v) => T::array_of(v.resolve()),
        }
    }
}

/// One readable member: name, how it compiles, its type.
type MemberRow = (&'static str, Access, Ret);

const fn p(name: &'static str, prop: Prop, ret: Ret) -> MemberRow {
    (name, Access::Prop(prop), ret)
}

use ContextObject as C;

const CONTEXT: &[MemberRow] = &[
    p("Api", Prop::Api, Ret::Context(C::Api)),
    p("Deployment", Prop::Deployment, Ret::Context(C::Deployment)),
    p("Elapsed", Prop::Elapsed, Ret::TimeSpan),
    p("LastError", Prop::LastError, Ret::Context(C::LastError)),
    p("Operation", Prop::Operation, Ret::Context(C::Operation)),
    p("Product", Prop::Product, Ret::Context(C::Product)),
    p("Request", Prop::Request, Ret::Context(C::Request)),
    p("RequestId", Prop::RequestId, Ret::Guid),
    p("Response", Prop::Response, Ret::Context(C::Response)),
    p("Subscription", Prop::Subscription, Ret::Context(C::Subscription)),
    p("Timestamp", Prop::Timestamp, Ret::DateTime),
    p("Tracing", Prop::Tracing, Ret::Bool),
    p("User", Prop::User, Ret::Context(C::User)),
    p("Variables", Prop::Variables, Ret::Dictionary(Value::Object)),
];
const REQUEST: &[MemberRow] = &[
    p("Body", Prop::Body, Ret::Context(C::MessageBody)),
    p("Certificate", Prop::Certificate, Ret::Object),
    p("Headers", Prop::Headers, Ret::Dictionary(Value::StrArray)),
    p("IpAddress", Prop::IpAddress, Ret::Str),
    p("MatchedParameters", Prop::MatchedParameters, Ret::Dictionary(Value::Str)),
    p("Method", Prop::Method, Ret::Str),
    p("OriginalUrl", Prop::OriginalUrl, Ret::Context(C::Url)),
    p("Url", Prop::Url, Ret::Context(C::Url)),
];
const RESPONSE: &[MemberRow] = &[
    p("Body", Prop::Body, Ret::Context(C::MessageBody)),
    p("Headers", Prop::Headers, Ret::Dictionary(Value::StrArray)),
    p("StatusCode", Prop::StatusCode, Ret::Int),
    p("StatusReason", Prop::StatusReason, Ret::Str),
];
const URL: &[MemberRow] = &[
    p("Host", Prop::Host, Ret::Str),
    p("Path", Prop::Path, Ret::Str),
    p("Port", Prop::Port, Ret::Int),
    p("Query", Prop::Query, Ret::Dictionary(Value::StrArray)),
    p("QueryString", Prop::QueryString, Ret::Str),
    p("Scheme", Prop::Scheme, Ret::Str),
];
const API: &[MemberRow] = &[
    p("Id", Prop::Id, Ret::Str),
    p("Name", Prop::Name, Ret::Str),
    p("Path", Prop::Path, Ret::Str),
    p("IsCurrentRevision", Prop::IsCurrentRevision, Ret::Bool),
    p("Revision", Prop::Revision, Ret::Str),
    p("Version", Prop::Version, Ret::Str),
    p("ServiceUrl", Prop::ServiceUrl, Ret::Context(C::Url)),
    p("SubscriptionKeyParameterNames", Prop::SubscriptionKeyParameterNames, Ret::Context(C::KeyParameterNames)),
];
const KEY_PARAMETER_NAMES: &[MemberRow] =
    &[p("Header", Prop::HeaderName, Ret::Str), p("Query", Prop::QueryName, Ret::Str)];
const OPERATION: &[MemberRow] = &[
    p("Id", Prop::Id, Ret::Str),
    p("Method", Prop::Method, Ret::Str),
    p("Name", Prop::Name, Ret::Str),
    p("UrlTemplate", Prop::UrlTemplate, Ret::Str),
];
const SUBSCRIPTION: &[MemberRow] = &[
    p("CreatedDate", Prop::CreatedDate, Ret::DateTime),
    p("EndDate", Prop::EndDate, Ret::DateTime),
    p("Id", Prop::Id, Ret::Str),
    p("Key", Prop::Key, Ret::Str),
    p("Name", Prop::Name, Ret::Str),
    p("PrimaryKey", Prop::PrimaryKey, Ret::Str),
    p("SecondaryKey", Prop::SecondaryKey, Ret::Str),
    p("StartDate", Prop::StartDate, Ret::DateTime),
];
const USER: &[MemberRow] = &[
    p("Email", Prop::Email, Ret::Str),
    p("FirstName", Prop::FirstName, Ret::Str),
    p("LastName", Prop::LastName, Ret::Str),
    p("Groups", Prop::Groups, Ret::Array(Value::Group)),
    p("Id", Prop::Id, Ret::Str),
];
const PRODUCT: &[MemberRow] = &[
    p("Id", Prop::Id, Ret::Str),
    p("Name", Prop::Name, Ret::Str),
    p("Groups", Prop::Groups, Ret::Array(Value::Group)),
];
const GROUP: &[MemberRow] = &[p("Id", Prop::Id, Ret::Str), p("Name", Prop::Name, Ret::Str)];
const DEPLOYMENT: &[MemberRow] = &[
    p("GatewayId", Prop::GatewayId, Ret::Str),
    p("Region", Prop::Region, Ret::Str),
    p("ServiceName", Prop::ServiceName, Ret::Str),
];
const LAST_ERROR: &[MemberRow] = &[
    p("Source", Prop::Source, Ret::Str),
    p("Reason", Prop::Reason, Ret::Str),
    p("Message", Prop::Message, Ret::Str),
    p("Scope", Prop::Scope, Ret::Str),
    p("Section", Prop::Section, Ret::Str),
    p("Path", Prop::ErrorPath, Ret::Str),
    p("PolicyId", Prop::PolicyId, Ret::Str),
];
const JWT: &[MemberRow] = &[
    p("Id", Prop::Id, Ret::Str),
    p("Algorithm", Prop::Algorithm, Ret::Str),
    p("Issuer", Prop::Issuer, Ret::Str),
    p("Subject", Prop::Subject, Ret::Str),
    p("Type", Prop::Type, Ret::Str),
    p("Audiences", Prop::Audiences, Ret::StrArray),
    p("Claims", Prop::Claims, Ret::Dictionary(Value::StrArray)),
    p("ExpirationTime", Prop::ExpirationTime, Ret::DateTime),
    p("NotBefore", Prop::NotBefore, Ret::DateTime),
    p("IssuedAt", Prop::IssuedAt, Ret::DateTime),
];
const BASIC: &[MemberRow] = &[p("UserId", Prop::UserId, Ret::Str), p("Password", Prop::Password, Ret::Str)];
const MATCH: &[MemberRow] = &[
    p("Success", Prop::Success, Ret::Bool),
    p("Value", Prop::Value, Ret::Str),
    p("Groups", Prop::Groups_, Ret::Groups),
    p("Index", Prop::Index, Ret::Int),
    p("Length", Prop::Length, Ret::Int),
];
const REGEX_GROUP: &[MemberRow] = &[
    p("Success", Prop::Success, Ret::Bool),
    p("Value", Prop::Value, Ret::Str),
    p("Index", Prop::Index, Ret::Int),
    p("Length", Prop::Length, Ret::Int),
];
const DATE_TIME: &[MemberRow] = &[
    p("Year", Prop::Year, Ret::Int),
    p("Month", Prop::Month, Ret::Int),
    p("Day", Prop::Day, Ret::Int),
    p("Hour", Prop::Hour, Ret::Int),
    p("Minute", Prop::Minute, Ret::Int),
    p("Second", Prop::Second, Ret::Int),
    p("Ticks", Prop::Ticks, Ret::Int),
];
const TIME_SPAN: &[MemberRow] = &[
    p("TotalSeconds", Prop::TotalSeconds, Ret::Double),
    p("TotalMilliseconds", Prop::TotalMilliseconds, Ret::Double),
    p("Days", Prop::Days, Ret::Int),
    p("Hours", Prop::Hours, Ret::Int),
    p("Minutes", Prop::Minutes, Ret::Int),
    p("Seconds", Prop::Seconds, Ret::Int),
    p("Milliseconds", Prop::Milliseconds, Ret::Int),
    p("Ticks", Prop::Ticks, Ret::Int),
];
const J_PROPERTY: &[MemberRow] =
    &[p("Name", Prop::PropertyName, Ret::Str), p("Value", Prop::PropertyValue, Ret::JToken)];
const PAIR: &[MemberRow] = &[p("Key", Prop::Key, Ret::Str), p("Value", Prop::Value, Ret::DictValue)];
const STRING: &[MemberRow] = &[p("Length", Prop::Length, Ret::Int)];
const ARRAY: &[MemberRow] = &[p("Length", Prop::Length, Ret::Int), p("Count", Prop::Count, Ret::Int)];
const COUNTED: &[MemberRow] = &[p("Count", Prop::Count, Ret::Int)];
const DICTIONARY: &[MemberRow] = &[
    p("Count", Prop::Count, Ret::Int),
    ("Keys", Access::Call(Builtin::DictKeys), Ret::StrArray),
    ("Values", Access::Call(Builtin::DictValues), Ret::ElementArray),
];

/// Every member table, for `object` receivers and suggestions.
const ALL_MEMBERS: &[&[MemberRow]] = &[
    CONTEXT,
    REQUEST,
    RESPONSE,
    URL,
    API,
    KEY_PARAMETER_NAMES,
    OPERATION,
    SUBSCRIPTION,
    USER,
    PRODUCT,
    GROUP,
    DEPLOYMENT,
    LAST_ERROR,
    JWT,
    BASIC,
    MATCH,
    REGEX_GROUP,
    DATE_TIME,
    TIME_SPAN,
    J_PROPERTY,
    PAIR,
    STRING,
    ARRAY,
    DICTIONARY,
];

fn member_table(ty: &StaticType) -> &'static [MemberRow] {
    use StaticType as T;
    match ty {
        T::Context(c) => match c {
            C::Context => CONTEXT,
            C::Request => REQUEST,
            C::Response => RESPONSE,
            C::Url => URL,
            C::Api => API,
            C::Operation => OPERATION,
            C::Subscription => SUBSCRIPTION,
            C::User => USER,
            C::Product => PRODUCT,
            C::Deployment => DEPLOYMENT,
            C::LastError => LAST_ERROR,
            C::MessageBody => &[],
            C::Group => GROUP,
            C::KeyParameterNames => KEY_PARAMETER_NAMES,
        },
        T::Jwt => JWT,
        T::BasicCredentials => BASIC,
        T::Match => MATCH,
        T::RegexGroup => REGEX_GROUP,
        T::DateTime => DATE_TIME,
        T::TimeSpan => TIME_SPAN,
        T::JProperty => J_PROPERTY,
        T::Pair(_) => PAIR,
        T::String => STRING,
        T::Array(_) | T::Bytes => ARRAY,
        T::List(_) | T::JArray | T::JObject => COUNTED,
        T::Dictionary(_) => DICTIONARY,
        _ => &[],
    }
}

/// Members APIM has that the instruction set does not (yet): named in the error.
const KNOWN_UNSUPPORTED: &[(&str, &str)] = &[
    ("IApi", "Protocols"),
    ("IDeployment", "ServiceId"),
    ("IDeployment", "Certificates"),
    ("IProduct", "Apis"),
    ("IProduct", "ApprovalRequired"),
    ("IProduct", "State"),
    ("IProduct", "SubscriptionLimit"),
    ("IProduct", "SubscriptionRequired"),
    ("IUser", "Identities"),
    ("IUser", "Note"),
    ("IUser", "RegistrationDate"),
    ("IRequest", "PrivateEndpointConnection"),
    ("ILastError", "HttpErrorCode"),
];

/// Resolves `receiver.name` (a property read).
pub(crate) fn member(receiver: &StaticType, name: &str) -> Result<(Access, StaticType), String> {
    if receiver.is_dynamic() {
        // Not known statically: any member name some table knows, resolved at run time.
        let found = ALL_MEMBERS.iter().flat_map(|t| t.iter()).find(|(n, _, _)| *n == name);
        return match found {
            Some((_, access, _)) => Ok((*access, StaticType::Object)),
            None => Err(format!("no known type has a member `{name}`")),
        };
    }
    let table = member_table(receiver);
    if let Some((_, access, ret)) = table.iter().find(|(n, _, _)| *n == name) {
        return Ok((*access, ret.resolve(receiver)));
    }
    let type_name = receiver.to_string();
    if KNOWN_UNSUPPORTED.iter().any(|(t, m)| *t == type_name && *m == name) {
        return Err(format!("{type_name}.{name} is not supported yet"));
    }
    let mut message = format!("{type_name} has no member `{name}`");
    if let Some(suggestion) = suggest(name, table.iter().map(|(n, _, _)| *n)) {
        message.push_str(&format!(" (did you mean `{suggestion}`?)"));
    }
    Err(message)
}

/// The closest candidate within a small edit distance (or equal ignoring case).
pub(crate) fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.len() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Damerau-free Levenshtein distance with transpositions counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        if let Some(first) = row.first_mut() {
            *first = i;
        }
    }
    for j in 0..=b.len() {
        if let Some(cell) = rows.first_mut().and_then(|r| r.get_mut(j)) {
            *cell = j;
        }
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1).min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// Which receivers a method table entry applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recv {
    /// Every value (`ToString`, `Equals`).
    Any,
    Str,
    /// Arrays, lists, JSON arrays, dictionaries (LINQ).
    Seq,
    List,
    Dict,
    JObject,
    /// Any JSON value.
    Json,
    DateTime,
}

impl Recv {
    pub(crate) fn accepts(self, ty: &StaticType) -> bool {
        use StaticType as T;
        match self {
            Self::Any => true,
            Self::Str => matches!(ty, T::String | T::Char),
            Self::Seq => matches!(ty, T::Array(_) | T::List(_) | T::JArray | T::Dictionary(_) | T::Bytes | T::JToken),
            Self::List => matches!(ty, T::List(_)),
            Self::Dict => matches!(ty, T::Dictionary(_)),
            Self::JObject => matches!(ty, T::JObject | T::JToken),
            Self::Json => matches!(ty, T::JObject | T::JArray | T::JToken | T::JProperty),
            Self::DateTime => matches!(ty, T::DateTime),
        }
    }
}

/// A parameter's expected type, for compile-time checks of arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param {
    Any,
    Str,
    Int,
    Double,
    Comparison,
}

impl Param {
    pub(crate) fn static_type(self) -> StaticType {
        match self {
            Self::Any => StaticType::Object,
            Self::Str => StaticType::String,
            Self::Int => StaticType::Int,
            Self::Double => StaticType::Double,
            Self::Comparison => StaticType::Enum(EnumType::StringComparison),
        }
    }
}

/// An instance method that compiles to one builtin call with the receiver first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Method {
    pub(crate) on: Recv,
    pub(crate) name: &'static str,
    /// Parameter types (the receiver excluded).
    pub(crate) params: &'static [Param],
    pub(crate) builtin: Builtin,
    pub(crate) ret: Ret,
}

const fn m(on: Recv, name: &'static str, params: &'static [Param], builtin: Builtin, ret: Ret) -> Method {
    Method { on, name, params, builtin, ret }
}

use Param as P;

/// Instance methods that are one builtin call. Methods with special lowering (lambdas, `out`
/// arguments, `params` arrays, generic arguments) are in `lower/calls.rs`.
pub(crate) const METHODS: &[Method] = &[
    m(Recv::Str, "Equals", &[P::Str, P::Comparison], Builtin::EqualsComparison, Ret::Bool),
    m(Recv::Str, "Contains", &[P::Str], Builtin::StrContains, Ret::Bool),
    m(Recv::Str, "Contains", &[P::Str, P::Comparison], Builtin::StrContainsComparison, Ret::Bool),
    m(Recv::Str, "StartsWith", &[P::Str], Builtin::StrStartsWith, Ret::Bool),
    m(Recv::Str, "StartsWith", &[P::Str, P::Comparison], Builtin::StrStartsWithComparison, Ret::Bool),
    m(Recv::Str, "EndsWith", &[P::Str], Builtin::StrEndsWith, Ret::Bool),
    m(Recv::Str, "EndsWith", &[P::Str, P::Comparison], Builtin::StrEndsWithComparison, Ret::Bool),
    m(Recv::Str, "IndexOf", &[P::Str], Builtin::StrIndexOf, Ret::Int),
    m(Recv::Str, "IndexOf", &[P::Str, P::Int], Builtin::StrIndexOf, Ret::Int),
    m(Recv::Str, "LastIndexOf", &[P::Str], Builtin::StrLastIndexOf, Ret::Int),
    m(Recv::Str, "Replace", &[P::Str, P::Str], Builtin::StrReplace, Ret::Str),
    m(Recv::Str, "Substring", &[P::Int], Builtin::StrSubstring, Ret::Str),
    m(Recv::Str, "Substring", &[P::Int, P::Int], Builtin::StrSubstringLength, Ret::Str),
    m(Recv::Str, "ToLower", &[], Builtin::StrToLower, Ret::Str),
    m(Recv::Str, "ToLowerInvariant", &[], Builtin::StrToLower, Ret::Str),
    m(Recv::Str, "ToUpper", &[], Builtin::StrToUpper, Ret::Str),
    m(Recv::Str, "ToUpperInvariant", &[], Builtin::StrToUpper, Ret::Str),
    m(Recv::Str, "Trim", &[], Builtin::StrTrim, Ret::Str),
    m(Recv::Str, "TrimStart", &[], Builtin::StrTrimStart, Ret::Str),
    m(Recv::Str, "TrimEnd", &[], Builtin::StrTrimEnd, Ret::Str),
    m(Recv::Str, "PadLeft", &[P::Int], Builtin::StrPadLeft, Ret::Str),
    m(Recv::Str, "PadLeft", &[P::Int, P::Str], Builtin::StrPadLeft, Ret::Str),
    m(Recv::Str, "PadRight", &[P::Int], Builtin::StrPadRight, Ret::Str),
    m(Recv::Str, "PadRight", &[P::Int, P::Str], Builtin::StrPadRight, Ret::Str),
    m(Recv::Str, "Insert", &[P::Int, P::Str], Builtin::StrInsert, Ret::Str),
    m(Recv::Str, "Remove", &[P::Int], Builtin::StrRemove, Ret::Str),
    m(Recv::Str, "Remove", &[P::Int, P::Int], Builtin::StrRemove, Ret::Str),
    m(Recv::Str, "ToCharArray", &[], Builtin::StrToCharArray, Ret::CharArray),
    m(Recv::Str, "AsJwt", &[], Builtin::AsJwt, Ret::Jwt),
    m(Recv::Str, "AsBasic", &[], Builtin::AsBasic, Ret::Basic),
    m(Recv::Str, "CompareTo", &[P::Str], Builtin::StrCompare, Ret::Int),
    m(Recv::Dict, "ContainsKey", &[P::Str], Builtin::ContainsKey, Ret::Bool),
    m(Recv::JObject, "ContainsKey", &[P::Str], Builtin::JContainsKey, Ret::Bool),
    m(Recv::JObject, "Property", &[P::Str], Builtin::JObjectProperty, Ret::JProperty),
    m(Recv::JObject, "Properties", &[], Builtin::JObjectProperties, Ret::JPropertyArray),
    m(Recv::JObject, "Remove", &[P::Str], Builtin::JObjectRemove, Ret::Bool),
    m(Recv::JObject, "Add", &[P::Str, P::Any], Builtin::JAdd, Ret::Void),
    m(Recv::Json, "Add", &[P::Any], Builtin::JAdd, Ret::Void),
    m(Recv::Json, "Remove", &[], Builtin::JTokenRemove, Ret::Void),
    m(Recv::Json, "SelectToken", &[P::Str], Builtin::JSelectToken, Ret::JToken),
    m(Recv::List, "Add", &[P::Any], Builtin::ListAdd, Ret::Void),
    m(Recv::Seq, "Contains", &[P::Any], Builtin::SeqContains, Ret::Bool),
    m(Recv::Seq, "Count", &[], Builtin::SeqCount, Ret::Int),
    m(Recv::Seq, "First", &[], Builtin::SeqFirst, Ret::Element),
    m(Recv::Seq, "FirstOrDefault", &[], Builtin::SeqFirstOrDefault, Ret::Element),
    m(Recv::Seq, "Last", &[], Builtin::SeqLast, Ret::Element),
    m(Recv::Seq, "LastOrDefault", &[], Builtin::SeqLastOrDefault, Ret::Element),
    m(Recv::Seq, "ToArray", &[], Builtin::SeqToArray, Ret::ElementArray),
    m(Recv::Seq, "ToList", &[], Builtin::SeqToList, Ret::ElementList),
    m(Recv::Seq, "Distinct", &[], Builtin::SeqDistinct, Ret::ElementArray),
    m(Recv::Seq, "Reverse", &[], Builtin::SeqReverse, Ret::ElementArray),
    m(Recv::Seq, "Skip", &[P::Int], Builtin::SeqSkip, Ret::ElementArray),
    m(Recv::Seq, "Take", &[P::Int], Builtin::SeqTake, Ret::ElementArray),
    m(Recv::Seq, "Order", &[], Builtin::SeqOrder, Ret::ElementArray),
    m(Recv::Seq, "Any", &[], Builtin::SeqAny, Ret::Bool),
    m(Recv::Seq, "Sum", &[], Builtin::SeqSum, Ret::Element),
    m(Recv::DateTime, "AddSeconds", &[P::Double], Builtin::DateTimeAddSeconds, Ret::DateTime),
    m(Recv::DateTime, "AddMinutes", &[P::Double], Builtin::DateTimeAddMinutes, Ret::DateTime),
    m(Recv::DateTime, "AddHours", &[P::Double], Builtin::DateTimeAddHours, Ret::DateTime),
    m(Recv::DateTime, "AddDays", &[P::Double], Builtin::DateTimeAddDays, Ret::DateTime),
    m(Recv::DateTime, "AddMilliseconds", &[P::Double], Builtin::DateTimeAddMilliseconds, Ret::DateTime),
    m(Recv::DateTime, "Subtract", &[P::Any], Builtin::DateTimeSubtract, Ret::TimeSpan),
    m(Recv::Any, "Equals", &[P::Any], Builtin::Equals, Ret::Bool),
    m(Recv::Any, "ToString", &[], Builtin::ToString, Ret::Str),
    m(Recv::Any, "ToString", &[P::Str], Builtin::ToStringFormat, Ret::Str),
];

/// The table entries for `name` with `argc` arguments on `receiver`. On a dynamic receiver,
/// the entries of every receiver kind (the caller requires them to agree).
pub(crate) fn methods(receiver: &StaticType, name: &str, argc: usize) -> Vec<&'static Method> {
    let dynamic = receiver.is_dynamic();
    METHODS.iter().filter(|m| m.name == name && m.params.len() == argc && (dynamic || m.on.accepts(receiver))).collect()
}

/// Method names valid on `receiver`, for suggestions.
pub(crate) fn method_names(receiver: &StaticType) -> impl Iterator<Item = &'static str> + '_ {
    METHODS.iter().filter(move |m| receiver.is_dynamic() || m.on.accepts(receiver)).map(|m| m.name)
}

/// A type name without `System.`-style namespaces, with .NET aliases folded into C# keywords.
pub(crate) fn normalize_type_name(name: &str) -> &str {
    let short = name.rsplit('.').next().unwrap_or(name);
    match short {
        "String" => "string",
        "Int32" | "Int64" | "Int16" => "int",
        "Boolean" => "bool",
        "Double" | "Single" | "Decimal" => "double",
        "Object" => "object",
        "Char" => "char",
        other => other,
    }
}

/// The static type a written type stands for, or a message saying why it is not supported.
pub(crate) fn resolve_type(ty: &TypeName) -> Result<StaticType, String> {
    use StaticType as T;
    let name = normalize_type_name(&ty.name);
    let arg = |i: usize| -> Result<StaticType, String> {
        match ty.args.get(i) {
            Some(a) => resolve_type(a),
            None => Err(format!("`{name}` needs a type argument")),
        }
    };
    let base = match (name, ty.args.len()) {
        ("string", 0) => T::String,
        ("int" | "long" | "short" | "uint" | "ulong" | "ushort" | "sbyte", 0) => T::Int,
        ("byte", 0) if ty.array_rank > 0 => {
            return Ok(nest_arrays(T::Bytes, ty.array_rank - 1));
        }
        ("byte", 0) => T::Int,
        ("double" | "float" | "decimal", 0) => T::Double,
        ("bool", 0) => T::Bool,
        ("char", 0) => T::Char,
        ("object" | "dynamic", 0) => T::Object,
        ("JObject", 0) => T::JObject,
        ("JArray", 0) => T::JArray,
        ("JToken" | "JValue", 0) => T::JToken,
        ("JProperty", 0) => T::JProperty,
        ("Jwt", 0) => T::Jwt,
        ("BasicAuthCredentials", 0) => T::BasicCredentials,
        ("IResponse" | "IMessage", 0) => T::Context(C::Response),
        ("IRequest", 0) => T::Context(C::Request),
        ("IUrl", 0) => T::Context(C::Url),
        ("IMessageBody", 0) => T::Context(C::MessageBody),
        ("DateTime" | "DateTimeOffset", 0) => T::DateTime,
        ("TimeSpan", 0) => T::TimeSpan,
        ("Guid", 0) => T::Guid,
        ("Regex", 0) => T::Regex,
        ("Match", 0) => T::Match,
        ("Group", 0) => T::RegexGroup,
        ("GroupCollection", 0) => T::GroupCollection,
        ("MatchCollection", 0) => T::array_of(T::Match),
        ("List" | "IList" | "ICollection" | "IReadOnlyList" | "IReadOnlyCollection", 1) => T::List(Box::new(arg(0)?)),
        ("IEnumerable", 1) => T::array_of(arg(0)?),
        ("Dictionary" | "IDictionary" | "IReadOnlyDictionary", 2) => {
            if arg(0)? != T::String {
                return Err("only dictionaries with `string` keys are supported".to_owned());
            }
            T::Dictionary(Box::new(arg(1)?))
        }
        ("KeyValuePair", 2) => T::Pair(Box::new(arg(1)?)),
        ("Nullable", 1) => arg(0)?,
        ("StringComparison", 0) => T::Enum(EnumType::StringComparison),
        ("RegexOptions", 0) => T::Enum(EnumType::RegexOptions),
        ("StringSplitOptions", 0) => T::Enum(EnumType::StringSplitOptions),
        ("Formatting", 0) => T::Enum(EnumType::Formatting),
        ("SHA256" | "SHA256Managed", 0) => T::Hasher(HashKind::Sha256),
        ("SHA1" | "SHA1Managed", 0) => T::Hasher(HashKind::Sha1),
        ("SHA512" | "SHA512Managed", 0) => T::Hasher(HashKind::Sha512),
        ("MD5", 0) => T::Hasher(HashKind::Md5),
        ("HMACSHA256", 0) => T::Hmac(HashKind::Sha256),
        ("HMACSHA1", 0) => T::Hmac(HashKind::Sha1),
        ("HMACSHA512", 0) => T::Hmac(HashKind::Sha512),
        ("XElement" | "XDocument" | "XNode" | "XAttribute" | "XNamespace" | "XName", _) => {
            return Err(format!("XML (`{name}`) is not supported in policy expressions yet"));
        }
        ("var", _) => return Err("`var` is only allowed for local variables".to_owned()),
        _ => return Err(format!("the type `{}` is not supported in policy expressions", ty.name)),
    };
    Ok(nest_arrays(base, ty.array_rank))
}

fn nest_arrays(mut ty: StaticType, rank: usize) -> StaticType {
    for _ in 0..rank {
        ty = StaticType::array_of(ty);
    }
    ty
}

/// The VM's type tag for a static type (casts, `is`, `as`, generic arguments).
pub(crate) fn value_type(ty: &StaticType) -> Option<ValueType> {
    use StaticType as T;
    Some(match ty {
        T::String | T::Char => ValueType::String,
        T::Int | T::Enum(_) => ValueType::Int,
        T::Double => ValueType::Double,
        T::Bool => ValueType::Bool,
        T::JObject => ValueType::JObject,
        T::JArray => ValueType::JArray,
        T::JToken | T::JProperty => ValueType::JToken,
        T::Jwt => ValueType::Jwt,
        T::Context(C::Response) => ValueType::Response,
        T::DateTime => ValueType::DateTime,
        T::TimeSpan => ValueType::TimeSpan,
        T::Guid => ValueType::Guid,
        T::Bytes => ValueType::Bytes,
        T::Array(_) | T::List(_) => ValueType::Array,
        T::Object => ValueType::Object,
        _ => return None,
    })
}

/// The Int constant that stands for a [`ValueType`] in builtins taking a "type-const".
pub(crate) fn value_type_index(vt: ValueType) -> i64 {
    vt as i64
}
