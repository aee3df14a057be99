//! What `x.Name` reads on each static type: the member tables of the `context` object graph,
//! JWTs, dates, regex matches, JSON properties and collections, with "did you mean" suggestions.

use portcullis_contract::program::{Builtin, Prop};

use super::{ContextObject, Ret, StaticType, Value};

/// How a member read compiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Prop(Prop),
    /// A builtin taking the receiver only (`dict.Keys`).
    Call(Builtin),
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
    p("Certificate", Prop::Certificate, Ret::Context(C::Certificate)),
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
/// `X509Certificate2`, as far as the gateway reads it from the client's certificate.
const CERTIFICATE: &[MemberRow] = &[
    p("Issuer", Prop::Issuer, Ret::Str),
    p("NotAfter", Prop::NotAfter, Ret::DateTime),
    p("NotBefore", Prop::NotBefore, Ret::DateTime),
    p("SerialNumber", Prop::SerialNumber, Ret::Str),
    p("Subject", Prop::Subject, Ret::Str),
    p("Thumbprint", Prop::Thumbprint, Ret::Str),
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
    p("Identities", Prop::Identities, Ret::Array(Value::Identity)),
    p("Note", Prop::Note, Ret::Str),
    p("RegistrationDate", Prop::RegistrationDate, Ret::DateTime),
];
const PRODUCT: &[MemberRow] = &[
    p("Id", Prop::Id, Ret::Str),
    p("Name", Prop::Name, Ret::Str),
    p("Groups", Prop::Groups, Ret::Array(Value::Group)),
    p("ApprovalRequired", Prop::ApprovalRequired, Ret::Bool),
    // `ProductState` as its name (`Published`, `NotPublished`): what `ToString()` gives in APIM.
    p("State", Prop::State, Ret::Str),
    // `int?`: null when the product has no limit.
    p("SubscriptionLimit", Prop::SubscriptionLimit, Ret::Int),
    p("SubscriptionRequired", Prop::SubscriptionRequired, Ret::Bool),
];
const GROUP: &[MemberRow] = &[p("Id", Prop::Id, Ret::Str), p("Name", Prop::Name, Ret::Str)];
const USER_IDENTITY: &[MemberRow] = &[p("Id", Prop::Id, Ret::Str), p("Provider", Prop::Provider, Ret::Str)];
const DEPLOYMENT: &[MemberRow] = &[
    p("Gateway", Prop::Gateway, Ret::Context(C::Gateway)),
    p("GatewayId", Prop::GatewayId, Ret::Str),
    p("Region", Prop::Region, Ret::Str),
    p("ServiceName", Prop::ServiceName, Ret::Str),
];
const GATEWAY: &[MemberRow] = &[
    p("Id", Prop::Id, Ret::Str),
    p("InstanceId", Prop::InstanceId, Ret::Str),
    p("IsManaged", Prop::IsManaged, Ret::Bool),
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
/// Newtonsoft's `JToken` members (JObject and JArray add `Count`).
const J_TOKEN: &[MemberRow] = &[
    ("Type", Access::Call(Builtin::JTokenType), Ret::TokenType),
    ("HasValues", Access::Call(Builtin::JTokenHasValues), Ret::Bool),
];
const J_CONTAINER: &[MemberRow] = &[
    p("Count", Prop::Count, Ret::Int),
    ("Type", Access::Call(Builtin::JTokenType), Ret::TokenType),
    ("HasValues", Access::Call(Builtin::JTokenHasValues), Ret::Bool),
];
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
    USER_IDENTITY,
    DEPLOYMENT,
    GATEWAY,
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
    J_TOKEN,
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
            C::UserIdentity => USER_IDENTITY,
            C::KeyParameterNames => KEY_PARAMETER_NAMES,
            C::Certificate => CERTIFICATE,
            C::Gateway => GATEWAY,
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
        T::List(_) => COUNTED,
        T::JArray | T::JObject => J_CONTAINER,
        T::JToken => J_TOKEN,
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

/// Levenshtein distance, with an adjacent transposition counted as one edit.
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
