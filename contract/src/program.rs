//! The policy instruction set: what control's compiler emits and the data plane's VM runs.
//!
//! A [`Program`] is one (scope-merged) policy section of one operation: `inbound`, `backend`,
//! `outbound` or `on-error`. It is a flat list of [`Op`]s for a stack machine with a constant
//! pool, a fixed number of local slots and side tables (policy sites, IP ranges, CORS rules).
//! Policy statements and policy expressions compile into the same stream: an expression leaves
//! its value on the stack and the policy op that follows consumes it.
//!
//! Conventions every op keeps (the verifier checks them, see [`verify`]):
//! - the stack depth at every op is the same on every path that reaches it (so it is a static
//!   fact), never negative, never above [`Program::max_stack`];
//! - a jump target is an op index in `0..=ops.len()`; `ops.len()` means "end of program";
//! - every constant, local, site and table index is in bounds;
//! - at the end of the program, and at every [`Op::Site`], the stack is empty;
//! - falling off the end means [`Exit::Continue`]-style completion (the section finished).
//!
//! The VM counts every op it executes (but the [`Op::Site`] markers, which cannot loop on their
//! own: every loop has a counted jump) and fails the request with
//! `ExpressionValueEvaluationFailure` past [`Program::step_limit`] (which is ≤ [`STEPS_MAX`]):
//! backward jumps (loops, `retry`) are legal, so termination is a runtime bound.

use serde::{Deserialize, Serialize};

/// Ops in one program: a section of 64k ops is far beyond any real policy document.
pub const PROGRAM_OPS_MAX: usize = 65_536;
/// Constants in one program.
pub const PROGRAM_CONSTS_MAX: usize = 65_536;
/// Stack slots: expressions nest far less deeply than this; the VM preallocates it per worker.
pub const STACK_DEPTH_MAX: u16 = 256;
/// Local variable slots (block locals, loop iterators, retry counters).
pub const LOCALS_MAX: u16 = 256;
/// Ops one program run may execute: bounds loops over large collections and `retry` loops.
pub const STEPS_MAX: u32 = 1_000_000;
/// Values one `set-header` / `set-query-parameter` / `check-header` may list.
pub const VALUES_PER_POLICY_MAX: u16 = 64;
/// Dimensions one `emit-metric` may have (APIM's limit, from Azure Monitor's dimension keys).
pub const EMIT_METRIC_DIMENSIONS_MAX: usize = 10;
/// `retry count` upper bound, as APIM documents (1–50).
pub const RETRY_COUNT_MAX: u32 = 50;

/// One compiled section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Program {
    pub ops: Vec<Op>,
    pub consts: Vec<Const>,
    /// Local slots the program uses (`LoadLocal`/`StoreLocal`/iterators index below this).
    pub locals: u16,
    /// Deepest stack the program reaches, as computed by the compiler; the verifier recomputes
    /// it and refuses a program that claims less.
    pub max_stack: u16,
    /// Ops one run may execute (≤ [`STEPS_MAX`]).
    pub step_limit: u32,
    /// The policy statements of this program, for `context.LastError`, traces and diagnostics.
    pub sites: Vec<Site>,
    /// `ip-filter` rules, referenced by [`Op::IpFilter`].
    pub ip_filters: Vec<IpFilter>,
    /// `cors` rules, referenced by [`Op::Cors`].
    pub cors: Vec<Cors>,
    /// `validate-client-certificate` rules, referenced by [`Op::ValidateClientCertificate`].
    #[serde(default)]
    pub client_certificate_checks: Vec<ClientCertificateCheck>,
    /// `rate-limit`, `rate-limit-by-key`, `quota`, `quota-by-key`, referenced by [`Op::Limit`].
    pub limits: Vec<Limit>,
    /// `validate-jwt` and `validate-azure-ad-token` rules, referenced by [`Op::ValidateJwt`].
    pub jwt: Vec<crate::jwt::JwtRule>,
    /// `llm-token-limit` / `azure-openai-token-limit`, referenced by [`Op::TokenLimit`].
    #[serde(default)]
    pub token_limits: Vec<TokenLimit>,
    /// `llm-content-safety`, referenced by [`Op::ContentSafetyCall`] and [`Op::ContentSafetyVerdict`].
    #[serde(default)]
    pub content_safety: Vec<ContentSafety>,
    /// `validate-content` rules, referenced by [`Op::ValidateContent`].
    #[serde(default)]
    pub content_validations: Vec<ContentValidation>,
}

/// APIM's `forward-request` default timeout: 300 s.
pub const FORWARD_TIMEOUT_MS_DEFAULT: u32 = 300_000;
/// A computed `forward-request` timeout above this fails the request (an expression gone wrong;
/// the gateway's own `backend-response-timeout-ms` bounds every timeout anyway).
pub const FORWARD_TIMEOUT_MS_MAX: i64 = 24 * 3600 * 1000;

impl Program {
    /// A program with no statements: the section does nothing.
    pub fn empty() -> Self {
        Self { step_limit: STEPS_MAX, ..Self::default() }
    }

    /// The backend section of an operation without policies: `<forward-request/>` with APIM's
    /// defaults (what a global `<backend><base/></backend>` compiles to).
    pub fn forward_only() -> Self {
        let forward = Op::ForwardRequest {
            timeout_ms: FORWARD_TIMEOUT_MS_DEFAULT,
            follow_redirects: false,
            buffer_response: true,
            fail_on_error_status: false,
        };
        Self { ops: vec![forward], ..Self::empty() }
    }
}

/// A constant-pool entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Const {
    Str(String),
    Int(i64),
    Double(f64),
    /// A regular expression literal, compiled once when the data plane loads the snapshot.
    /// The pattern is in the `regex` crate's syntax (control translated and checked it).
    Regex {
        pattern: String,
        ignore_case: bool,
    },
    /// A `set-body template="liquid"` template in APIM's dialect ([`crate::liquid`]), parsed
    /// once when the data plane loads the snapshot (control parsed it too).
    Liquid(String),
}

/// A policy statement in the source, in the terms of `context.LastError`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// The policy element's name (`check-header`): `LastError.Source` for policy errors.
    pub policy: String,
    /// `LastError.Scope`: `global`, `product`, `api` or `operation`.
    pub scope: ScopeKind,
    /// `LastError.Section`: the section the statement was written in.
    pub section: Section,
    /// `LastError.Path`: position inside the section, e.g. `choose[1]/when[2]/set-header[1]`.
    pub path: String,
    /// `LastError.PolicyId`: the element's optional `id` attribute.
    pub policy_id: Option<String>,
    /// `file:line:col` of the element, for traces and logs.
    pub location: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScopeKind {
    Global,
    Product,
    Api,
    Operation,
}

impl ScopeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Product => "product",
            Self::Api => "api",
            Self::Operation => "operation",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Section {
    Inbound,
    Backend,
    Outbound,
    OnError,
}

impl Section {
    pub const ALL: [Section; 4] = [Section::Inbound, Section::Backend, Section::Outbound, Section::OnError];

    /// The XML element name, which is also `LastError.Section`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Backend => "backend",
            Self::Outbound => "outbound",
            Self::OnError => "on-error",
        }
    }
}

/// Which message a shaping policy changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    /// The request forwarded to the backend.
    Request,
    /// The response relayed to the client.
    Response,
    /// The response being built by the enclosing `return-response`.
    Returned,
    /// The request being built by the enclosing `send-request` / `send-one-way-request`.
    Outgoing,
}

/// `exists-action` of `set-header` and `set-query-parameter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExistsAction {
    /// Replace every existing value (the default).
    Override,
    /// Leave an existing header alone; set it only if absent.
    Skip,
    /// Add the values after the existing ones.
    Append,
    /// Remove the header.
    Delete,
}

/// `trace severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Severity {
    Verbose,
    Information,
    Error,
}

/// `caching-type` of the cache policies: which cache a policy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CachingType {
    /// The gateway's built-in cache (one per host, in memory).
    Internal,
    /// The external cache (`[cache] redis-url`); without one configured, every lookup misses.
    External,
    /// The external cache when one is configured, else the internal one (APIM's default).
    PreferExternal,
}

/// What a validation policy does with what it finds (APIM's actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValidationAction {
    /// Not checked.
    Ignore,
    /// Recorded in the errors variable; the message goes on.
    Detect,
    /// Recorded, and the message is refused (400 for a request, 502 for a response).
    Prevent,
}

/// `validate-as` of a `<content>` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValidateAs {
    Json,
    Xml,
    Soap,
}

/// `<content>` rules one `validate-content` may list.
pub const CONTENT_RULES_MAX: usize = 32;
/// A JSON Schema in a snapshot past this is refused (APIM: 4 MB per API schema).
pub const CONTENT_SCHEMA_BYTES_MAX: usize = 4 * 1024 * 1024;

/// One `validate-content`: the message of `side` (the request inbound, the response outbound
/// and on-error) checked for size, content type and body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentValidation {
    pub side: Side,
    pub unspecified_content_type: ValidationAction,
    /// `max-size` in bytes (APIM's limit is 4 MB with a schema; none here without one).
    pub max_size_bytes: Option<u64>,
    pub size_exceeded: ValidationAction,
    /// `errors-variable-name`: the errors found go there as a JSON array.
    pub errors_variable: Option<String>,
    pub contents: Vec<ContentRule>,
}

/// One `<content>` element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRule {
    /// The media type it applies to, lower case, without parameters (`application/json`).
    pub content_type: String,
    pub validate_as: ValidateAs,
    pub action: ValidationAction,
    /// A JSON Schema the body must match (`validate-as="json"`); without one the body must be
    /// well-formed JSON. Compiled once when the data plane loads the snapshot.
    pub schema: Option<String>,
    /// `allow-additional-properties`: overrides the schema's `additionalProperties`.
    pub allow_additional_properties: Option<bool>,
}

/// The most `vary-by-header` or `vary-by-query-parameter` elements one `cache-lookup` may list.
pub const CACHE_VARY_BY_MAX: u16 = 32;

/// One `ip-filter`: its action and its address ranges (inclusive), both families.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpFilter {
    /// `action="allow"`: only listed callers pass. `forbid`: listed callers are refused.
    pub allow: bool,
    /// Inclusive ranges; IPv4 addresses are stored as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
    pub ranges: Vec<IpRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpRange {
    pub first: u128,
    pub last: u128,
}

/// One `validate-client-certificate`: the rules every certificate must pass, then the identities
/// of which it must match one (all of that identity's claims); no identities: any identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCertificateCheck {
    pub validate_revocation: bool,
    pub validate_trust: bool,
    pub validate_not_before: bool,
    pub validate_not_after: bool,
    /// A failed check lets the request go on (and sets nothing) instead of failing it.
    pub ignore_error: bool,
    pub identities: Vec<CertificateIdentity>,
}

/// One `<identity>`: each claim given must match (thumbprints and serial numbers ignore case).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateIdentity {
    pub thumbprint: Option<String>,
    pub serial_number: Option<String>,
    pub common_name: Option<String>,
    pub subject: Option<String>,
    pub dns_name: Option<String>,
    pub issuer_subject: Option<String>,
    pub issuer_thumbprint: Option<String>,
    /// Resolved at load to the thumbprint of the named certificate it names.
    pub issuer_certificate_id: Option<String>,
}

/// A `validate-client-certificate` or its table holds at most this many identities (APIM: 10).
pub const CERTIFICATE_IDENTITIES_MAX: usize = 10;

/// `rate-limit` / `rate-limit-by-key` (a sliding window) or `quota` / `quota-by-key` (a fixed one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LimitKind {
    RateLimit,
    Quota,
}

/// APIM's longest `rate-limit` renewal period (seconds).
pub const RATE_LIMIT_PERIOD_SECONDS_MAX: u32 = 300;
/// APIM's shortest `quota-by-key` renewal period (seconds); 0 (a lifetime quota) is allowed too.
pub const QUOTA_PERIOD_SECONDS_MIN: u32 = 300;
/// `<api>` and `<operation>` children one `rate-limit` / `quota` may have.
pub const LIMIT_SCOPES_MAX: usize = 64;

/// One `rate-limit`, `rate-limit-by-key`, `quota` or `quota-by-key` policy. Names (headers,
/// variables) are string constants of the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub kind: LimitKind,
    /// `*-by-key`: the counter key is the computed `counter-key`; otherwise the subscription's id
    /// (and a request without a subscription is not limited).
    pub by_key: bool,
    /// `calls` when it is a literal (a computed one is on the stack); `None` with neither: no
    /// call limit (a bandwidth-only quota).
    pub calls: Option<u32>,
    /// `bandwidth` in kilobytes (quotas only).
    pub bandwidth_kb: Option<u32>,
    /// `renewal-period` when it is a literal (seconds; a quota's 0: never renews).
    pub period_seconds: u32,
    /// `first-period-start` in seconds since the Unix epoch (windows are aligned on it).
    pub first_period_start: i64,
    /// The `increment-condition` reads `context.Response` (or `increment-after-response`): the
    /// limit is checked inbound, the counter moves after the response. The condition's code
    /// follows the [`Op::Limit`] and ends with [`Op::LimitCommit`].
    pub count_after_response: bool,
    pub retry_after_header: Option<u32>,
    pub retry_after_variable: Option<u32>,
    pub remaining_calls_header: Option<u32>,
    pub remaining_calls_variable: Option<u32>,
    pub total_calls_header: Option<u32>,
    pub remaining_bandwidth_header: Option<u32>,
    pub remaining_bandwidth_variable: Option<u32>,
    /// `<api>` / `<operation>` children (per-subscription policies only).
    pub scopes: Vec<LimitScope>,
}

/// `llm-token-limit` / `azure-openai-token-limit`: a token rate per minute, a token quota per
/// calendar period, or both, per counter key. The names are string constants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLimit {
    /// `tokens-per-minute` (a sliding window of 60 s).
    pub tokens_per_minute: Option<u32>,
    /// `token-quota` over `token-quota-period`.
    pub quota: Option<(u32, TokenQuotaPeriod)>,
    /// `estimate-prompt-tokens`: count the prompt's tokens from the request body and refuse
    /// before forwarding when they do not fit.
    pub estimate_prompt_tokens: bool,
    pub retry_after_header: Option<u32>,
    pub retry_after_variable: Option<u32>,
    pub remaining_tokens_header: Option<u32>,
    pub remaining_tokens_variable: Option<u32>,
    pub remaining_quota_tokens_header: Option<u32>,
    pub remaining_quota_tokens_variable: Option<u32>,
    pub tokens_consumed_header: Option<u32>,
    pub tokens_consumed_variable: Option<u32>,
}

impl TokenLimit {
    /// Every name constant the limit refers to.
    pub fn names(&self) -> [Option<u32>; 8] {
        [
            self.retry_after_header,
            self.retry_after_variable,
            self.remaining_tokens_header,
            self.remaining_tokens_variable,
            self.remaining_quota_tokens_header,
            self.remaining_quota_tokens_variable,
            self.tokens_consumed_header,
            self.tokens_consumed_variable,
        ]
    }
}

/// `llm-content-safety`: the Azure AI Content Safety resource behind a named backend, and what
/// blocks a prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentSafety {
    /// The named backend the calls go to (`{backend}/contentsafety/text:analyze`).
    pub backend_id: String,
    /// `shield-prompt`: also ask `text:shieldPrompt` whether the prompt is an attack.
    pub shield_prompt: bool,
    /// `output-type="EightSeverityLevels"` (else four: 0, 2, 4, 6).
    pub eight_levels: bool,
    /// `<category name threshold>`: a severity at or above the threshold blocks.
    pub categories: Vec<(String, u8)>,
    /// `<blocklists><id>`: a match in any blocks.
    pub blocklists: Vec<String>,
}

/// `token-quota-period`: a quota's window is the UTC hour, day, week (from Monday), month or
/// year the request falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenQuotaPeriod {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

/// An `<api>` or `<operation>` child of `rate-limit` / `quota`: its own limit, counted apart,
/// for requests to that API (or operation of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitScope {
    /// The API's id, else its name, as written.
    pub api: String,
    /// The operation's id, else its name (`None`: the whole API).
    pub operation: Option<String>,
    pub calls: Option<u32>,
    pub bandwidth_kb: Option<u32>,
    pub period_seconds: u32,
}

/// One `cors` policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cors {
    pub allow_credentials: bool,
    pub terminate_unmatched_request: bool,
    /// Exact origins (`scheme://host[:port]`), or `*` alone.
    pub allowed_origins: Vec<String>,
    /// Upper-case methods, or `*` alone.
    pub allowed_methods: Vec<String>,
    /// `Access-Control-Max-Age` for preflight responses.
    pub preflight_max_age_s: Option<u32>,
    /// Lower-case header names, or `*` alone.
    pub allowed_headers: Vec<String>,
    pub expose_headers: Vec<String>,
}

/// The type named by a C# cast, `as` or generic argument (`As<JObject>()`, `GetValueOrDefault<int>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueType {
    String,
    /// `int` and `long` (the VM computes in 64 bits).
    Int,
    Double,
    Bool,
    JObject,
    JArray,
    /// `JToken`: any JSON value.
    JToken,
    Jwt,
    /// `IResponse` (from `send-request`, later).
    Response,
    DateTime,
    TimeSpan,
    Guid,
    /// `byte[]`.
    Bytes,
    /// `string[]` and other arrays.
    Array,
    /// `object`: any value (casts to it never fail).
    Object,
}

/// A read of a member of the value on top of the stack (the receiver is popped).
///
/// The receiver is one of the context's objects (`context`, `context.Request`, an `IUrl`, ...) or
/// a runtime value (a `Jwt`, a `DateTime`, a string). A member read on `null` fails with
/// `ExpressionValueEvaluationFailure` (a `NullReferenceException` in APIM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prop {
    // context
    Api,
    Deployment,
    Elapsed,
    LastError,
    Operation,
    Product,
    Request,
    RequestId,
    Response,
    /// `null` when the request carried no subscription.
    Subscription,
    Timestamp,
    Tracing,
    /// `null` when the request has no subscription or its subscription has no owner.
    User,
    Variables,
    // context.Request / context.Response
    Body,
    Certificate,
    Headers,
    IpAddress,
    MatchedParameters,
    Method,
    OriginalUrl,
    Url,
    StatusCode,
    StatusReason,
    // IUrl
    Host,
    Path,
    Port,
    Query,
    QueryString,
    Scheme,
    // context.Api / Operation / Product / Subscription / User / Deployment (shared names)
    Id,
    Name,
    IsCurrentRevision,
    Revision,
    Version,
    ServiceUrl,
    SubscriptionKeyParameterNames,
    /// `SubscriptionKeyParameterNames.Header`
    HeaderName,
    /// `SubscriptionKeyParameterNames.Query`
    QueryName,
    UrlTemplate,
    Key,
    PrimaryKey,
    SecondaryKey,
    CreatedDate,
    StartDate,
    EndDate,
    Email,
    FirstName,
    LastName,
    Groups,
    GatewayId,
    Region,
    ServiceName,
    // context.LastError
    Source,
    Reason,
    Message,
    Scope,
    Section,
    ErrorPath,
    PolicyId,
    // Jwt
    Algorithm,
    Issuer,
    Subject,
    Type,
    Audiences,
    Claims,
    ExpirationTime,
    NotBefore,
    IssuedAt,
    // BasicAuthCredentials
    UserId,
    Password,
    // Regex Match / Group
    Success,
    Value,
    Groups_,
    Index,
    // collections and strings
    Length,
    Count,
    // DateTime / TimeSpan
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Ticks,
    TotalSeconds,
    TotalMilliseconds,
    Days,
    Hours,
    Minutes,
    Seconds,
    Milliseconds,
    // JProperty
    PropertyName,
    PropertyValue,
    // X509Certificate2 (`context.Request.Certificate`; also Subject, Issuer, NotBefore)
    Thumbprint,
    NotAfter,
    SerialNumber,
    // context.User (also Id, Email, FirstName, LastName, Groups) and its identities
    Note,
    RegistrationDate,
    Identities,
    Provider,
    // context.Product (also Id, Name, Groups)
    ApprovalRequired,
    State,
    SubscriptionLimit,
    SubscriptionRequired,
    /// An `IUrl` as one absolute URL (`ToString()`, `ToUri()`): scheme, host, the port unless
    /// it is the scheme's default, path and query.
    AbsoluteUrl,
    /// `context.Deployment.Gateway` (an `IGateway`: `Id`, `InstanceId`, `IsManaged`).
    Gateway,
    InstanceId,
    IsManaged,
}

/// A library function or method. Instance methods take the receiver as their first argument;
/// `argc` in [`Op::Call`] counts it. Every builtin pushes exactly one value (`null` for `void`).
/// A builtin given a value of the wrong runtime type fails with
/// `ExpressionValueEvaluationFailure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Builtin {
    // --- object
    /// `x.ToString()`: strings as is, numbers invariant, bools `True`/`False`, JSON indented as
    /// Newtonsoft does, `null` receiver fails.
    ToString,
    /// `x.ToString(format)` for numbers and dates (`"yyyy-MM-ddTHH:mm:ssZ"`, `"o"`, `"D4"` ...).
    ToStringFormat,
    /// `a.Equals(b)`: value equality.
    Equals,
    /// `a.Equals(b, StringComparison)`; the comparison is an int (see [`StringComparison`]).
    EqualsComparison,
    /// `x.GetType().Name`-free type test used by `is`: `(value, type-const)` → bool. The type is
    /// an Int constant holding a [`ValueType`] index.
    IsType,

    // --- string
    StrContains,
    StrStartsWith,
    StrEndsWith,
    /// `(s, prefix, StringComparison)`.
    StrStartsWithComparison,
    StrEndsWithComparison,
    StrContainsComparison,
    StrIndexOf,
    StrLastIndexOf,
    StrReplace,
    /// `s.Split(char or string ...)`: `(s, separators-array)` → string[]. The compiler packs the
    /// separators into an array.
    StrSplit,
    /// `(s, separators-array, StringSplitOptions)`.
    StrSplitOptions,
    StrSubstring,
    /// `(s, start, length)`.
    StrSubstringLength,
    StrToLower,
    StrToUpper,
    StrTrim,
    /// `(s, chars-array)`.
    StrTrimChars,
    StrTrimStart,
    StrTrimEnd,
    StrPadLeft,
    StrPadRight,
    StrInsert,
    StrRemove,
    /// `string.IsNullOrEmpty(s)`.
    StrIsNullOrEmpty,
    StrIsNullOrWhiteSpace,
    /// `string.Join(sep, values)`.
    StrJoin,
    /// `string.Format(fmt, args-array)`.
    StrFormat,
    /// `string.Concat(args-array)`.
    StrConcat,
    /// `string.Compare(a, b)` / `(a, b, StringComparison)`.
    StrCompare,
    StrCompareComparison,
    /// `s[i]` is [`Op::Index`]; `s.ToCharArray()`.
    StrToCharArray,

    // --- numbers and parsing
    /// `int.Parse` / `Int32.Parse` / `long.Parse`.
    IntParse,
    /// `int.TryParse(s, out x)` is rewritten by the compiler to `IntTryParse(s)` → int or null.
    IntTryParse,
    DoubleParse,
    BoolParse,
    /// `Convert.ToInt32(x)`.
    ConvertToInt32,
    ConvertToDouble,
    ConvertToBoolean,
    ConvertToString,
    ConvertToBase64String,
    ConvertFromBase64String,
    MathMin,
    MathMax,
    MathAbs,
    MathRound,
    MathFloor,
    MathCeiling,

    // --- text encoding, URLs, hashing
    /// `Encoding.UTF8.GetBytes(s)` / `Encoding.ASCII.GetBytes(s)`.
    Utf8GetBytes,
    Utf8GetString,
    WebUtilityUrlEncode,
    WebUtilityUrlDecode,
    WebUtilityHtmlEncode,
    WebUtilityHtmlDecode,
    UriEscapeDataString,
    UriUnescapeDataString,
    /// `SHA256.Create().ComputeHash(bytes)` and friends: `(bytes)` → bytes.
    Sha256Hash,
    Sha1Hash,
    Md5Hash,
    Sha512Hash,
    /// `new HMACSHA256(key).ComputeHash(bytes)`: `(key, bytes)` → bytes.
    HmacSha256,
    HmacSha1,
    HmacSha512,
    /// `BitConverter.ToString(bytes)`: `AB-CD-..`.
    BitConverterToString,

    // --- regular expressions (the pattern argument is a string or a `Const::Regex`)
    /// `(input, pattern)` / `(input, pattern, RegexOptions)`; options as an int.
    RegexIsMatch,
    RegexMatch,
    RegexMatches,
    /// `(input, pattern, replacement)` with `$1`/`${name}` references.
    RegexReplace,
    RegexSplit,
    RegexEscape,
    /// `match.Groups[name or index]` is [`Op::Index`] on `Prop::Groups_`.
    // --- time and identity
    DateTimeUtcNow,
    DateTimeNow,
    DateTimeParse,
    DateTimeAddSeconds,
    DateTimeAddMinutes,
    DateTimeAddHours,
    DateTimeAddDays,
    DateTimeAddMilliseconds,
    /// `(a, b)` → TimeSpan: `a - b` on dates is [`Op::Sub`]; this is `a.Subtract(b)`.
    DateTimeSubtract,
    TimeSpanFromSeconds,
    TimeSpanFromMilliseconds,
    TimeSpanFromMinutes,
    TimeSpanFromHours,
    TimeSpanFromDays,
    GuidNewGuid,
    GuidParse,

    // --- dictionaries (headers, query, matched parameters, variables, JWT claims)
    /// `d.GetValueOrDefault(name)`: headers and query comma-join several values; missing → null.
    GetValueOrDefault,
    /// `d.GetValueOrDefault(name, default)`.
    GetValueOrDefaultWith,
    /// `context.Variables.GetValueOrDefault<T>(name, default)`: `(dict, name, default, type-const)`;
    /// a present value of another type fails, as APIM's does.
    GetValueOrDefaultTyped,
    ContainsKey,
    /// `d.Keys` → string[].
    DictKeys,
    DictValues,
    /// `d.TryGetValue(name, out v)` is rewritten by the compiler into `ContainsKey` + `Index`.

    // --- sequences (arrays, lists, header value arrays, JArray, dictionaries as pairs)
    /// `seq.Contains(value)` without a lambda.
    SeqContains,
    SeqCount,
    SeqFirst,
    SeqFirstOrDefault,
    SeqLast,
    SeqLastOrDefault,
    SeqToArray,
    SeqToList,
    SeqDistinct,
    SeqReverse,
    SeqSkip,
    SeqTake,
    SeqOrder,
    SeqAny,
    SeqSum,
    /// `list.Add(value)` on a `List<T>` made with `new List<T>()`; returns null.
    ListAdd,

    // --- JSON (Newtonsoft.Json)
    JObjectParse,
    JArrayParse,
    JTokenParse,
    /// `JObject.FromObject(x)` / `JToken.FromObject(x)`.
    JTokenFromObject,
    /// `JsonConvert.SerializeObject(x)` (compact).
    JsonSerialize,
    /// `JsonConvert.DeserializeObject(s)` → JToken.
    JsonDeserialize,
    /// `token.Value<T>(key)`: `(token, key, type-const)`.
    JValueOf,
    /// `token.ToObject<T>()`: `(token, type-const)`.
    JToObject,
    /// `obj.Property(name)` → JProperty or null.
    JObjectProperty,
    /// `prop.Remove()` / `token.Remove()`: removes from its parent; returns null.
    JTokenRemove,
    /// `obj.Remove(name)` → bool.
    JObjectRemove,
    /// `obj.Add(name, value)` / `arr.Add(value)` / `obj[name] = value` (the compiler lowers the
    /// indexer assignment into `JSet`): `(container, key-or-value[, value])`.
    JAdd,
    JSet,
    /// `obj.ContainsKey(name)`.
    JContainsKey,
    /// `obj.Properties()` → array of JProperty.
    JObjectProperties,
    /// `token.SelectToken(path)`.
    JSelectToken,
    /// `token.ToString(Formatting.None)`.
    JToStringCompact,
    /// `new JObject()` / `new JArray()` / `new JProperty(name, value)` / `new JValue(x)`.
    JObjectNew,
    JArrayNew,
    JPropertyNew,
    JValueNew,
    /// `new List<T>()` / `new Dictionary<string, T>()`.
    ListNew,
    DictionaryNew,

    // --- message bodies
    /// `body.As<T>(preserveContent)`: `(body, preserve-bool, type-const)`. T ∈ string, JObject,
    /// JArray, JToken, byte[]; the body must have been buffered (the compiler marks the
    /// section as reading it).
    BodyAs,
    /// `body.AsFormUrlEncodedContent(preserveContent)` → dictionary.
    BodyAsForm,

    // --- credentials
    /// `s.AsJwt()`: the token (with or without `Bearer `) → Jwt, or null when it does not parse.
    AsJwt,
    /// `s.TryParseJwt(out jwt)` is rewritten into `AsJwt` + null test by the compiler.
    /// `s.AsBasic()` → BasicAuthCredentials or null.
    AsBasic,
    /// `context.Request.Certificate.Verify()`: current, chains to a client CA, not revoked by a
    /// configured list.
    CertificateVerify,
    /// `context.Request.Certificate.VerifyNoRevocation()`: current and chains to a client CA.
    CertificateVerifyNoRevocation,

    // --- context
    /// `context.Trace(message)`; returns null.
    ContextTrace,
    /// `context.Variables["x"] = v` inside a block is not C# APIM allows; kept for set-variable
    /// lowering symmetry: `(name, value)`; returns null.
    VariablesSet,

    // --- more of APIM's allowed .NET members (real-world documents)
    /// `new DateTime(y, M, d, h, m, s, ms)` (the compiler fills the omitted ones with 0):
    /// `(y, M, d, h, m, s, ms)` → DateTime (UTC; an out-of-range part fails as .NET's does).
    DateTimeNew,
    /// `guid.ToByteArray()`: the 16 bytes in .NET's order (first three fields little-endian).
    GuidToByteArray,
    /// `s.Split(separators, count[, options])`: `(s, separators-array, count, options)`.
    StrSplitCount,
    /// `seq.Single()`: the only element; fails on none or several.
    SeqSingle,
    /// `seq.SingleOrDefault()`: the only element, null on none; fails on several.
    SeqSingleOrDefault,
    SeqMin,
    SeqMax,
    SeqAverage,
    /// `token.Type`: Newtonsoft's `JTokenType` as its number (see [`JTOKEN_TYPES`]).
    JTokenType,
    /// `token.HasValues`: a container with at least one child.
    JTokenHasValues,
    /// `new Uri(s)`: checks `s` is an absolute URI; → the URI as a string.
    UriNew,
    /// `(uri, part)`: a member of a `Uri` (part numbers in [`URI_PARTS`]).
    UriPart,
    /// `random.Next(min, max)` (the compiler supplies 0 and `int.MaxValue` when omitted).
    RandomNext,
    RandomNextDouble,
    /// `new T[n]`: `(n, default)` → an array of n copies of `default`.
    ArrayNew,
    /// `array[i] = v` / `list[i] = v` / `dict[k] = v`: `(container, key, value)`; returns null.
    ElementSet,
    /// `new StringBuilder()` and the builder's `ToString()` are a list and `string.Concat`;
    /// `sb.Append(x)` adds `x` as text: `(list, value)` → the list (for chaining).
    BuilderAppend,
    /// `seq.OrderBy(x => key)`: `(items, keys)` → the items sorted (stably) by their keys, the
    /// compiler having computed the keys with a `Select` loop.
    SeqOrderByKeys,
    /// APIM's `input.Encrypt(alg, key, iv)`: `(bytes, algorithm-name, key, iv)` → bytes. AES
    /// (`"Aes"`, `"Rijndael"`, `Aes.Create()`) in CBC mode with PKCS#7 padding, as .NET's default.
    BytesEncrypt,
    /// `input.Decrypt(alg, key, iv)`, the inverse.
    BytesDecrypt,
    /// `guid.GetHashCode()`: .NET's, the XOR of the four 32-bit words of `ToByteArray()`.
    GuidHashCode,
    /// `list.Clear()`; returns null.
    ListClear,
    /// `list.Remove(value)`: removes the first equal element → whether one was removed.
    ListRemove,
    /// `list.RemoveAt(index)`; returns null (an index out of range fails as .NET's does).
    ListRemoveAt,
    /// `list.Insert(index, value)`; returns null (index ≤ Count).
    ListInsert,
    /// `list.AddRange(items)`; returns null.
    ListAddRange,
    /// `seq.IndexOf(value)` / `Array.IndexOf(array, value)` → the first equal element's
    /// position, -1 when there is none.
    SeqIndexOf,
    /// `seq.ElementAtOrDefault(index)`: `(seq, index, default)` → the element, or `default` (the
    /// element type's default, pushed by the compiler) out of range.
    SeqElementAtOrDefault,
    /// `seq.DefaultIfEmpty([value])`: `(seq, default)` → the items, or `[default]` when empty.
    SeqDefaultIfEmpty,
    /// `a & b`, `a | b`, `a ^ b` on integers (bitwise) or on bools (logical, both sides evaluated).
    BitAnd,
    BitOr,
    BitXor,
    /// `~a` on an integer.
    BitNot,
    /// `a << n` and `a >> n` (arithmetic): a value within `int`'s range shifts as a C# `int`
    /// (32 bits, the count taken mod 32, wrapping), a larger one as a `long` (the count mod 64).
    ShiftLeft,
    ShiftRight,
    /// `(short)x`, `(byte)x`, `Convert.ToByte(x)` ...: `(int, kind)` with a kind of
    /// [`NARROW_KINDS`], plus [`NARROW_CHECKED`] to fail on a value out of range (`Convert`)
    /// rather than keep its low bits (a cast).
    IntNarrow,
    /// `BitConverter.ToInt32(bytes, start)`: four bytes, little-endian, as a signed `int`.
    BitConverterToInt32,
    /// `new byte[] { a, b }` of computed items: `(array of ints)` → `byte[]` (each item 0..=255).
    BytesFromArray,
}

/// The integer types [`Builtin::IntNarrow`] narrows to (the kind is the index).
pub const NARROW_KINDS: [&str; 5] = ["sbyte", "byte", "short", "ushort", "uint"];
/// Added to a [`Builtin::IntNarrow`] kind: an out-of-range value fails (`OverflowException`).
pub const NARROW_CHECKED: i64 = 8;

/// `JTokenType` member names in Newtonsoft's numbering (the index is the value).
pub const JTOKEN_TYPES: [&str; 18] = [
    "None",
    "Object",
    "Array",
    "Constructor",
    "Property",
    "Comment",
    "Integer",
    "Float",
    "String",
    "Boolean",
    "Null",
    "Undefined",
    "Date",
    "Raw",
    "Bytes",
    "Guid",
    "Uri",
    "TimeSpan",
];

/// `Uri` members [`Builtin::UriPart`] reads (the index is the part number).
pub const URI_PARTS: [&str; 11] = [
    "AbsoluteUri",
    "Scheme",
    "Host",
    "Port",
    "AbsolutePath",
    "Query",
    "PathAndQuery",
    "Fragment",
    "Authority",
    "Segments",
    "OriginalString",
];

/// `try` statements one expression may nest (the VM's handler stack is this deep at most).
pub const TRY_DEPTH_MAX: usize = 16;

/// `StringComparison` values, as .NET numbers them (passed as an Int).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(i64)]
pub enum StringComparison {
    CurrentCulture = 0,
    CurrentCultureIgnoreCase = 1,
    InvariantCulture = 2,
    InvariantCultureIgnoreCase = 3,
    Ordinal = 4,
    OrdinalIgnoreCase = 5,
}

/// `RegexOptions` bits the VM honours (passed as an Int), as .NET numbers them.
pub const REGEX_IGNORE_CASE: i64 = 1;
pub const REGEX_MULTILINE: i64 = 2;
pub const REGEX_SINGLELINE: i64 = 16;
/// `StringSplitOptions.RemoveEmptyEntries`.
pub const SPLIT_REMOVE_EMPTY_ENTRIES: i64 = 1;

/// One instruction. "pops a, b" lists operands bottom to top (b was pushed last).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Op {
    // ---- values and locals
    /// Pushes `consts[i]`.
    Const(u32),
    Null,
    Bool(bool),
    /// Pushes a small integer without a constant-pool entry.
    Int(i32),
    Pop,
    Dup,
    LoadLocal(u16),
    StoreLocal(u16),
    /// Pushes the `context` object.
    Context,

    // ---- control flow (targets are op indices; `ops.len()` ends the program)
    Jump(u32),
    /// Pops a bool; jumps when it is false.
    JumpIfFalse(u32),
    /// Pops a bool; jumps when it is true.
    JumpIfTrue(u32),
    /// Peeks: jumps when the top is null (keeping it), for `?.`.
    JumpIfNull(u32),
    /// Peeks: jumps when the top is not null (keeping it), for `??`.
    JumpIfNotNull(u32),

    // ---- operators (C# semantics: `+` concatenates when either side is a string)
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Neg,
    /// Logical not on a bool.
    Not,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Pops n values, pushes their string concatenation (null concatenates as "").
    Concat(u16),
    /// Pops a value; pushes it if it has the type (or is null), else fails (`(T)x`).
    Cast(ValueType),
    /// Pops a value; pushes it if it has the type, else null (`x as T`).
    As(ValueType),

    // ---- objects
    /// Pops a receiver, pushes its member.
    Prop(Prop),
    /// Pops receiver, key; pushes `receiver[key]` (dictionaries by string, arrays and strings
    /// by int, JSON by string or int). A missing dictionary key fails (`KeyNotFoundException`);
    /// a missing JSON key is null, as Newtonsoft's indexer.
    Index,
    /// Pops argc values (receiver first for instance methods); pushes the result.
    Call(Builtin, u8),
    /// Pops n values; pushes an array of them (`new [] { ... }`, `new string[] { ... }`).
    MakeArray(u16),
    /// Pushes `context.Request.Headers.GetValueOrDefault(consts[name])` (edits applied, values
    /// comma-joined), or, when the request has no such header, `consts[default]` (null without
    /// one): the fused form of the five or six ops that expression compiles to.
    RequestHeader {
        name: u32,
        default: Option<u32>,
    },

    // ---- iteration (`foreach`, and LINQ lambdas, which the compiler lowers into loops)
    /// Pops an enumerable (array, list, JArray, JObject, string, dictionary: pairs with
    /// `Key`/`Value`), stores an iterator over it in the local.
    IterInit(u16),
    /// If the local's iterator is exhausted, jumps; else pushes its next element.
    IterNext(u16, u32),

    // ---- policy statements
    /// Marks the start of the policy statement `sites[i]` (for `LastError` and traces).
    Site(u32),
    /// Pops `values` values (each a string, or null to skip it); sets header `consts[name]`.
    SetHeader {
        side: Side,
        action: ExistsAction,
        name: u32,
        values: u16,
    },
    /// `SetHeader` of one constant string (`Const(value); SetHeader { values: 1 }` fused by the
    /// compiler): nothing goes through the stack. The verifier checks the value is a string a
    /// header can carry (no CR, LF or NUL), so the VM does not check it per request.
    SetHeaderConst {
        side: Side,
        action: ExistsAction,
        name: u32,
        value: u32,
    },
    /// `SetHeader` (`query`: `SetQueryParameter`) whose name an expression computes: pops the
    /// values, then the name (pushed first).
    SetNamedComputed {
        side: Side,
        query: bool,
        action: ExistsAction,
        values: u16,
    },
    /// As `SetHeader`, on the backend request's query string.
    SetQueryParameter {
        action: ExistsAction,
        name: u32,
        values: u16,
    },
    /// Pops a value; stores it as `context.Variables[consts[name]]`.
    SetVariable {
        name: u32,
    },
    /// Pops a method name.
    SetMethod,
    /// Pops a template (`/users/{id}?x={q}`); the `{name}` placeholders take the operation's
    /// matched parameters. `copy_unmatched`: copy query parameters the template does not use.
    RewriteUri {
        copy_unmatched: bool,
    },
    /// `RewriteUri` of the constant template `consts[template]` (fused `Const; RewriteUri`).
    RewriteUriConst {
        template: u32,
        copy_unmatched: bool,
    },
    /// Pops a base URL (`https://host[:port][/path]`).
    SetBackendUrl,
    /// Pops a named backend's id (`set-backend-service backend-id`); an unknown id fails the
    /// request when it is forwarded.
    SetBackendId,
    /// Pops a body value (string, bytes, JSON); replaces the side's body.
    SetBody {
        side: Side,
    },
    /// Pops code, reason (reason may be null).
    SetStatus {
        side: Side,
    },
    /// `set-body template="liquid"`: renders the template `consts[template]` (a
    /// [`Const::Liquid`]) with APIM's objects (`context`, and `body`: the body of message `body`
    /// parsed as JSON or XML; `None` when the template never names `body`) and replaces the
    /// side's body.
    SetBodyLiquid {
        side: Side,
        template: u32,
        body: Option<Side>,
    },
    /// `redirect-content-urls`: in the response body, the backend's base URL becomes the
    /// gateway's (the API's URL as the client called it); in the request body, the reverse.
    RedirectContentUrls {
        side: Side,
    },
    /// `validate-content`: checks the message by `content_validations[i]`; records what it
    /// finds in the errors variable and fails the section for a `prevent` finding.
    ValidateContent(u32),
    /// Pops from, to; replaces every occurrence in the side's body.
    FindAndReplace {
        side: Side,
    },
    /// `xml-to-json`: pops kind, apply, consider-accept-header, always-array-child-elements;
    /// converts the side's body from XML to JSON when `apply` and the `Accept` header say so.
    XmlToJson {
        side: Side,
    },
    /// `json-to-xml`: pops apply, consider-accept-header, namespace-separator, namespace-prefix,
    /// attribute-block-name (null: not set); `parse-date` is literal, as APIM documents.
    JsonToXml {
        side: Side,
        parse_date: bool,
    },
    /// `jsonp`: pops callback-parameter-name; wraps the response body in the call the request's
    /// query parameter of that name names.
    Jsonp {
        side: Side,
    },
    /// Pops status (int), message (string). Checks header `consts[name]` against the constant
    /// strings `consts[values_first..values_first + values]` (any value allowed when 0).
    CheckHeader {
        name: u32,
        values_first: u32,
        values: u16,
        ignore_case: bool,
    },
    /// `CheckHeader` whose status and message are constants (fused `Int; Const|Null;
    /// CheckHeader`): `status` in 100..=599, `message` a string constant or none.
    CheckHeaderConst {
        name: u32,
        values_first: u32,
        values: u16,
        ignore_case: bool,
        status: u16,
        message: Option<u32>,
    },
    /// Checks the caller's address against `ip_filters[i]`.
    IpFilter(u32),
    /// Applies `cors[i]`: answers preflight requests, marks the response for CORS headers.
    Cors(u32),
    /// Validates a JWT by `jwt[rule]`; with `token_on_stack` (`token-value`) it pops the token.
    ValidateJwt {
        rule: u32,
        token_on_stack: bool,
    },
    /// Pops username, password; sets the backend request's `Authorization: Basic ...`.
    AuthenticationBasic,
    /// Checks the connection's client certificate against `client_certificate_checks[i]`.
    ValidateClientCertificate(u32),
    /// Pops a string: the id (`by_thumbprint` false) or thumbprint of a named certificate with a
    /// key, which the backend connection presents (mTLS) instead of the configured identity.
    AuthenticationCertificate {
        by_thumbprint: bool,
    },
    /// Pops message; logs it with `consts[source]` to the access log.
    Trace {
        source: u32,
        severity: Severity,
    },
    /// `emit-metric`: pops `dimensions` dimension values (the last on top), then the value (a
    /// number); adds it to the custom metric `consts[namespace]`/`consts[name]` with the
    /// dimension names `consts[names_first..names_first + dimensions]`.
    EmitMetric {
        name: u32,
        namespace: u32,
        names_first: u32,
        dimensions: u8,
    },
    /// `llm-emit-token-metric` / `azure-openai-emit-token-metric`: pops `dimensions` dimension
    /// values (the last on top). Once the response's `usage` is read, its prompt, completion and
    /// total tokens are added to the custom metrics `consts[namespace]`/`consts[names_first]`,
    /// `consts[names_first + 1]` and `consts[names_first + 2]`, with the dimension names
    /// `consts[names_first + 3..names_first + 3 + dimensions]`.
    EmitTokenMetric {
        namespace: u32,
        names_first: u32,
        dimensions: u8,
    },
    /// `authentication-managed-identity`: pushes the current access token the data plane holds
    /// for the resource `consts[resource]` and the identity `consts[client_id]` (the
    /// system-assigned one without), as `Bearer <token>` when `bearer`. Without a current token
    /// it fails with APIM's error, or pushes null when `ignore_error`.
    ManagedIdentityToken {
        resource: u32,
        client_id: Option<u32>,
        bearer: bool,
        ignore_error: bool,
    },
    /// Starts a new response for `return-response` (status 200, no headers, empty body).
    BeginResponse,
    /// Starts `return-response` from the response stored in variable `consts[name]`.
    BeginResponseFrom {
        name: u32,
    },
    /// Ends the pipeline: the response built since `BeginResponse` goes to the client.
    Respond,
    /// Ends the pipeline with a mock response: `status`, `content_type` const, optional
    /// example body const.
    MockResponse {
        status: u16,
        content_type: u32,
        example: Option<u32>,
    },
    /// Pops a key (string); enters the concurrency limit `max` for it or fails with 429.
    LimitConcurrencyEnter {
        max: u32,
    },
    /// Leaves the innermost concurrency limit entered by this request.
    LimitConcurrencyExit,
    /// Pops increment-count (int or null: 1), increment-condition (bool or null: true),
    /// counter-key (string or null: the subscription), renewal-period and calls (int or null:
    /// the table's); checks `limits[limit]` and counts the request (or, with
    /// `count_after_response`, notes it for after the response), then jumps to `resume`: the ops
    /// in between are the deferred condition, run after the response, ending in `LimitCommit`.
    Limit {
        limit: u32,
        resume: u32,
    },
    /// Pops the deferred increment-condition (bool) of `limits[limit]`: moves its counter after
    /// the response and ends that run. Only reached through a deferred run, never in order.
    LimitCommit {
        limit: u32,
    },
    /// Calls the backend (the VM suspends; the proxy resumes it with the response).
    ForwardRequest {
        timeout_ms: u32,
        follow_redirects: bool,
        buffer_response: bool,
        fail_on_error_status: bool,
    },
    /// `forward-request` whose timeout, `follow-redirects` or `fail-on-error-status-code` is a
    /// policy expression: pops `fail_on_error_status` (bool), `follow_redirects` (bool) and
    /// `timeout_ms` (int, 0 to [`FORWARD_TIMEOUT_MS_MAX`]), then acts as `ForwardRequest`.
    ForwardRequestComputed {
        buffer_response: bool,
    },
    /// `cache-lookup`: pops `allow-private-response-caching` (bool), `must-revalidate` (bool),
    /// `downstream-caching-type` (string), `vary-by-developer-groups` (bool) and
    /// `vary-by-developer` (bool); the VM suspends and the proxy looks the response up. The
    /// headers and query parameters the key varies by are the string constants
    /// `consts[headers_first..headers_first + headers]` and likewise for `queries`.
    CacheLookup {
        caching: CachingType,
        headers_first: u32,
        headers: u16,
        queries_first: u32,
        queries: u16,
    },
    /// `cache-store`: pops `cache-response` (bool, or null when absent) and `duration` (int
    /// seconds); marks the response for storing under the key `cache-lookup` computed.
    CacheStore,
    /// `cache-lookup-value`: pops the default value (when `has_default`) and the key; the VM
    /// suspends, the proxy looks the value up and sets variable `consts[variable]`.
    CacheLookupValue {
        caching: CachingType,
        variable: u32,
        has_default: bool,
    },
    /// `cache-store-value`: pops duration (int seconds), value and key; the VM suspends while the
    /// proxy stores it.
    CacheStoreValue {
        caching: CachingType,
    },
    /// `cache-remove-value`: pops the key; the VM suspends while the proxy removes it.
    CacheRemoveValue {
        caching: CachingType,
    },
    /// Enters a `try`: a failing expression (`ExpressionValueEvaluationFailure`, not the step
    /// limit) until the matching [`Op::TryExit`] truncates the stack to its depth here, pushes
    /// the exception's message and jumps to `handler`. At most [`TRY_DEPTH_MAX`] nest.
    TryEnter {
        handler: u32,
    },
    /// Leaves the innermost `try`.
    TryExit,
    /// Pops a message (a string; null: a default one) and fails the expression with it (`throw`).
    Throw,
    /// Starts the request a `send-request` or `send-one-way-request` builds: empty (`GET`, no
    /// URL), or with `copy` the current request's method, URL, headers and (outside the outbound
    /// section) body. Its children edit it ([`Side::Outgoing`], [`Op::OutgoingUrl`],
    /// [`Op::OutgoingMethod`]) until [`Op::SendRequest`] sends it.
    BeginOutgoing {
        copy: bool,
    },
    /// Pops a URL (absolute `http://` or `https://`): where the built request goes.
    OutgoingUrl,
    /// Pops a method: the built request's method.
    OutgoingMethod,
    /// Sends the built request. Pops the timeout (int milliseconds); the VM suspends and the proxy
    /// makes the call, then stores the response (`IResponse`) in variable `consts[variable]`, or
    /// null when the call failed and `ignore_error` holds (else the section fails with
    /// `LastError` source `send-request`). `one_way` (`send-one-way-request`): the proxy hands the
    /// call off and resumes at once. `deferred` (inside `wait`): the proxy starts the call and
    /// resumes at once; the [`Op::Wait`] that follows collects it.
    SendRequest {
        variable: Option<u32>,
        ignore_error: bool,
        one_way: bool,
        deferred: bool,
    },
    /// `llm-token-limit` / `azure-openai-token-limit`: pops the counter-key (string); checks
    /// `token_limits[limit]` (with the prompt's estimated tokens when it estimates) or fails with
    /// 429 (tokens per minute) / 403 (quota); the response's `usage` is charged after the relay.
    TokenLimit {
        limit: u32,
    },
    /// `llm-content-safety`: starts the call of `content_safety[rule]` (`shield`: `text:shieldPrompt`,
    /// else `text:analyze`) with the request's prompt, as `BeginOutgoing` and its children would;
    /// a `SendRequest` follows. Without a prompt (no JSON body with messages, prompt or input) it
    /// jumps to `skip`.
    ContentSafetyCall {
        rule: u32,
        shield: bool,
        skip: u32,
    },
    /// Reads the call's response from variable `consts[variable]` and fails with 403 when it
    /// flags the prompt (or with 500 when the service did not answer 200 with a verdict).
    ContentSafetyVerdict {
        rule: u32,
        shield: bool,
        variable: u32,
    },
    /// `wait`: the VM suspends until every call started since the `wait` began completes (`any`:
    /// the first one; the others are abandoned).
    Wait {
        any: bool,
    },
    /// Sets the local (a retry's attempt counter) to 0.
    RetryInit(u16),
    /// After a retry body whose condition held: counts the attempt in the local; if fewer than
    /// `count` retries were made, waits (suspends) per the interval rules and jumps to
    /// `target`; otherwise falls through.
    RetryNext {
        local: u16,
        count: u32,
        interval_ms: u32,
        max_interval_ms: u32,
        delta_ms: u32,
        first_fast_retry: bool,
        target: u32,
    },
}

impl Op {
    /// (values popped, values pushed).
    pub fn stack_effect(&self) -> (u16, u16) {
        match *self {
            Op::Const(_) | Op::Null | Op::Bool(_) | Op::Int(_) | Op::LoadLocal(_) | Op::Context => (0, 1),
            Op::Pop | Op::StoreLocal(_) => (1, 0),
            Op::Dup => (1, 2),
            Op::Jump(_) => (0, 0),
            Op::JumpIfFalse(_) | Op::JumpIfTrue(_) => (1, 0),
            Op::JumpIfNull(_) | Op::JumpIfNotNull(_) => (1, 1),
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Rem => (2, 1),
            Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => (2, 1),
            Op::Neg | Op::Not | Op::Cast(_) | Op::As(_) | Op::Prop(_) => (1, 1),
            Op::Concat(n) | Op::MakeArray(n) => (n, 1),
            Op::RequestHeader { .. } => (0, 1),
            Op::Index => (2, 1),
            Op::Call(_, argc) => (u16::from(argc), 1),
            Op::IterInit(_) => (1, 0),
            // The element is pushed only on the fall-through path; see `verify`.
            Op::IterNext(_, _) => (0, 1),
            Op::Site(_) | Op::SetHeaderConst { .. } | Op::RewriteUriConst { .. } | Op::CheckHeaderConst { .. } => {
                (0, 0)
            }
            Op::SetHeader { values, .. } | Op::SetQueryParameter { values, .. } => (values, 0),
            Op::SetNamedComputed { values, .. } => (values + 1, 0),
            Op::SetVariable { .. } | Op::SetMethod | Op::RewriteUri { .. } | Op::SetBackendUrl => (1, 0),
            Op::SetBackendId => (1, 0),
            Op::SetBody { .. } | Op::Trace { .. } | Op::LimitConcurrencyEnter { .. } => (1, 0),
            Op::SetStatus { .. } | Op::FindAndReplace { .. } | Op::CheckHeader { .. } => (2, 0),
            Op::XmlToJson { .. } => (4, 0),
            Op::JsonToXml { .. } => (5, 0),
            Op::Jsonp { .. } => (1, 0),
            Op::SetBodyLiquid { .. } | Op::ValidateContent(_) | Op::RedirectContentUrls { .. } => (0, 0),
            Op::AuthenticationBasic => (2, 0),
            Op::EmitMetric { dimensions, .. } => (1 + u16::from(dimensions), 0),
            Op::EmitTokenMetric { dimensions, .. } => (u16::from(dimensions), 0),
            Op::ManagedIdentityToken { .. } => (0, 1),
            Op::ValidateClientCertificate(_) => (0, 0),
            Op::AuthenticationCertificate { .. } => (1, 0),
            Op::ValidateJwt { token_on_stack, .. } => (u16::from(token_on_stack), 0),
            Op::IpFilter(_) | Op::Cors(_) | Op::BeginResponse | Op::BeginResponseFrom { .. } => (0, 0),
            Op::Respond | Op::MockResponse { .. } | Op::LimitConcurrencyExit => (0, 0),
            Op::ForwardRequest { .. } | Op::RetryInit(_) | Op::RetryNext { .. } => (0, 0),
            Op::ForwardRequestComputed { .. } => (3, 0),
            Op::CacheLookup { .. } => (5, 0),
            Op::CacheStore => (2, 0),
            Op::CacheLookupValue { has_default, .. } => (1 + u16::from(has_default), 0),
            Op::CacheStoreValue { .. } => (3, 0),
            Op::CacheRemoveValue { .. } => (1, 0),
            Op::Limit { .. } => (5, 0),
            Op::LimitCommit { .. } => (1, 0),
            Op::TokenLimit { .. } => (1, 0),
            Op::ContentSafetyCall { .. } | Op::ContentSafetyVerdict { .. } => (0, 0),
            Op::TryEnter { .. } | Op::TryExit => (0, 0),
            Op::Throw => (1, 0),
            Op::BeginOutgoing { .. } | Op::Wait { .. } => (0, 0),
            Op::OutgoingUrl | Op::OutgoingMethod | Op::SendRequest { .. } => (1, 0),
        }
    }

    /// Where this op may jump besides the next op.
    pub fn jump_target(&self) -> Option<u32> {
        match *self {
            Op::Jump(t)
            | Op::JumpIfFalse(t)
            | Op::JumpIfTrue(t)
            | Op::JumpIfNull(t)
            | Op::JumpIfNotNull(t)
            | Op::IterNext(_, t) => Some(t),
            Op::RetryNext { target, .. } => Some(target),
            Op::Limit { resume, .. } => Some(resume),
            Op::ContentSafetyCall { skip, .. } => Some(skip),
            Op::TryEnter { handler } => Some(handler),
            _ => None,
        }
    }

    /// Ops that suspend the VM (the proxy acts, then resumes it): their operands must be all
    /// that is on the stack, since a suspension keeps the locals, not the stack.
    pub fn suspends(&self) -> bool {
        matches!(
            self,
            Op::ForwardRequestComputed { .. }
                | Op::CacheLookup { .. }
                | Op::CacheLookupValue { .. }
                | Op::CacheStoreValue { .. }
                | Op::CacheRemoveValue { .. }
                | Op::SendRequest { .. }
                | Op::Wait { .. }
        )
    }

    /// Ops after which execution never reaches the next op.
    pub fn ends_flow(&self) -> bool {
        matches!(self, Op::Jump(_) | Op::Respond | Op::MockResponse { .. } | Op::Throw)
    }
}

/// Why a program was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("program has {0} ops, more than {PROGRAM_OPS_MAX}")]
    TooManyOps(usize),
    #[error("program has {0} constants, more than {PROGRAM_CONSTS_MAX}")]
    TooManyConsts(usize),
    #[error("program uses {0} locals, more than {LOCALS_MAX}")]
    TooManyLocals(u16),
    #[error("step limit {0} is 0 or above {STEPS_MAX}")]
    BadStepLimit(u32),
    #[error("op {at}: jump target {target} is past the end ({len} ops)")]
    JumpOutOfRange { at: usize, target: u32, len: usize },
    #[error("op {at}: constant {index} out of range ({len} constants)")]
    ConstOutOfRange { at: usize, index: u32, len: usize },
    #[error("op {at}: constant {index} has the wrong kind for this op")]
    ConstKind { at: usize, index: u32 },
    #[error("op {at}: local {index} out of range ({len} locals)")]
    LocalOutOfRange { at: usize, index: u16, len: u16 },
    #[error("op {at}: {what} {index} out of range ({len})")]
    TableOutOfRange { at: usize, what: &'static str, index: u32, len: usize },
    #[error("op {at}: stack underflow")]
    StackUnderflow { at: usize },
    #[error("op {at}: stack depth {depth} exceeds the declared maximum {max}")]
    StackOverflow { at: usize, depth: u32, max: u16 },
    #[error("op {at}: reached with stack depth {found} on one path and {expected} on another")]
    InconsistentStack { at: usize, found: u32, expected: u32 },
    #[error("op {at}: a statement boundary or the end is reached with {depth} values on the stack")]
    StackNotEmpty { at: usize, depth: u32 },
    #[error("op {at}: {what}")]
    Operand { at: usize, what: &'static str },
}

/// Checks every fact the VM relies on without re-checking per op (see the module docs).
/// Control runs it before a program enters a snapshot; the data plane again when it loads one.
pub fn verify(program: &Program) -> Result<(), VerifyError> {
    let len = program.ops.len();
    if len > PROGRAM_OPS_MAX {
        return Err(VerifyError::TooManyOps(len));
    }
    if program.consts.len() > PROGRAM_CONSTS_MAX {
        return Err(VerifyError::TooManyConsts(program.consts.len()));
    }
    if program.locals > LOCALS_MAX {
        return Err(VerifyError::TooManyLocals(program.locals));
    }
    if program.step_limit == 0 || program.step_limit > STEPS_MAX {
        return Err(VerifyError::BadStepLimit(program.step_limit));
    }
    if program.max_stack > STACK_DEPTH_MAX {
        return Err(VerifyError::StackOverflow { at: 0, depth: u32::from(program.max_stack), max: STACK_DEPTH_MAX });
    }
    for (at, op) in program.ops.iter().enumerate() {
        check_operands(program, at, op)?;
    }
    let deepest = stack_depth_max(&program.ops)?;
    if deepest > u32::from(program.max_stack) {
        return Err(VerifyError::StackOverflow { at: 0, depth: deepest, max: program.max_stack });
    }
    Ok(())
}

fn check_operands(program: &Program, at: usize, op: &Op) -> Result<(), VerifyError> {
    let len = program.ops.len();
    if let Some(target) = op.jump_target() {
        if target as usize > len {
            return Err(VerifyError::JumpOutOfRange { at, target, len });
        }
    }
    let string_const = |index: u32| -> Result<(), VerifyError> {
        match program.consts.get(index as usize) {
            None => Err(VerifyError::ConstOutOfRange { at, index, len: program.consts.len() }),
            Some(Const::Str(_)) => Ok(()),
            Some(_) => Err(VerifyError::ConstKind { at, index }),
        }
    };
    let local = |index: u16| -> Result<(), VerifyError> {
        if index < program.locals {
            Ok(())
        } else {
            Err(VerifyError::LocalOutOfRange { at, index, len: program.locals })
        }
    };
    let table = |what: &'static str, index: u32, len: usize| -> Result<(), VerifyError> {
        if (index as usize) < len { Ok(()) } else { Err(VerifyError::TableOutOfRange { at, what, index, len }) }
    };
    match *op {
        Op::Const(index) if index as usize >= program.consts.len() => {
            return Err(VerifyError::ConstOutOfRange { at, index, len: program.consts.len() });
        }
        Op::LoadLocal(i) | Op::StoreLocal(i) | Op::IterInit(i) | Op::IterNext(i, _) | Op::RetryInit(i) => local(i)?,
        Op::RetryNext { local: i, count, .. } => {
            local(i)?;
            if count == 0 || count > RETRY_COUNT_MAX {
                return Err(VerifyError::Operand { at, what: "retry count must be 1 to 50" });
            }
        }
        Op::Site(i) => table("site", i, program.sites.len())?,
        Op::IpFilter(i) => table("ip-filter", i, program.ip_filters.len())?,
        Op::Cors(i) => table("cors", i, program.cors.len())?,
        Op::ValidateContent(i) => {
            table("validate-content", i, program.content_validations.len())?;
            let rule = &program.content_validations[i as usize];
            if rule.contents.len() > CONTENT_RULES_MAX
                || rule.contents.iter().any(|c| c.schema.as_ref().is_some_and(|s| s.len() > CONTENT_SCHEMA_BYTES_MAX))
            {
                return Err(VerifyError::Operand {
                    at,
                    what: "validate-content has too many rules or too large a schema",
                });
            }
            if matches!(rule.side, Side::Returned | Side::Outgoing) {
                return Err(VerifyError::Operand { at, what: "validate-content checks the request or the response" });
            }
        }
        Op::ValidateClientCertificate(i) => {
            table("validate-client-certificate", i, program.client_certificate_checks.len())?;
            if program
                .client_certificate_checks
                .get(i as usize)
                .is_some_and(|c| c.identities.len() > CERTIFICATE_IDENTITIES_MAX)
            {
                return Err(VerifyError::Operand { at, what: "too many client certificate identities" });
            }
        }
        Op::ValidateJwt { rule, .. } => table("jwt", rule, program.jwt.len())?,
        Op::SetHeader { name, values, .. } | Op::SetQueryParameter { name, values, .. } => {
            string_const(name)?;
            if values > VALUES_PER_POLICY_MAX {
                return Err(VerifyError::Operand { at, what: "too many values" });
            }
        }
        Op::SetNamedComputed { values, .. } if values > VALUES_PER_POLICY_MAX => {
            return Err(VerifyError::Operand { at, what: "too many values" });
        }
        Op::SetHeaderConst { name, value, .. } => {
            string_const(name)?;
            string_const(value)?;
            if let Some(Const::Str(text)) = program.consts.get(value as usize) {
                if !is_header_value(text) {
                    return Err(VerifyError::Operand { at, what: "a header value constant holds CR, LF or NUL" });
                }
            }
        }
        Op::SetVariable { name }
        | Op::BeginResponseFrom { name }
        | Op::Trace { source: name, .. }
        | Op::RewriteUriConst { template: name, .. } => string_const(name)?,
        Op::EmitMetric { name, namespace, names_first, dimensions } => {
            string_const(name)?;
            string_const(namespace)?;
            if usize::from(dimensions) > EMIT_METRIC_DIMENSIONS_MAX {
                return Err(VerifyError::Operand { at, what: "too many emit-metric dimensions" });
            }
            for index in names_first..names_first.saturating_add(u32::from(dimensions)) {
                string_const(index)?;
            }
        }
        Op::EmitTokenMetric { namespace, names_first, dimensions } => {
            string_const(namespace)?;
            if usize::from(dimensions) > EMIT_METRIC_DIMENSIONS_MAX {
                return Err(VerifyError::Operand { at, what: "too many token metric dimensions" });
            }
            for index in names_first..names_first.saturating_add(3 + u32::from(dimensions)) {
                string_const(index)?;
            }
        }
        Op::ManagedIdentityToken { resource, client_id, .. } => {
            string_const(resource)?;
            if let Some(client_id) = client_id {
                string_const(client_id)?;
            }
        }
        Op::RequestHeader { name, default } => {
            string_const(name)?;
            if let Some(index) = default {
                if index as usize >= program.consts.len() {
                    return Err(VerifyError::ConstOutOfRange { at, index, len: program.consts.len() });
                }
            }
        }
        Op::CheckHeaderConst { name, values_first, values, status, message, .. } => {
            string_const(name)?;
            if values > VALUES_PER_POLICY_MAX {
                return Err(VerifyError::Operand { at, what: "too many values" });
            }
            for index in values_first..values_first.saturating_add(u32::from(values)) {
                string_const(index)?;
            }
            if !(100..=599).contains(&status) {
                return Err(VerifyError::Operand { at, what: "status code out of 100..=599" });
            }
            if let Some(message) = message {
                string_const(message)?;
            }
        }
        Op::CheckHeader { name, values_first, values, .. } => {
            string_const(name)?;
            if values > VALUES_PER_POLICY_MAX {
                return Err(VerifyError::Operand { at, what: "too many values" });
            }
            for index in values_first..values_first.saturating_add(u32::from(values)) {
                string_const(index)?;
            }
        }
        Op::MockResponse { status, content_type, example } => {
            if !(100..=599).contains(&status) {
                return Err(VerifyError::Operand { at, what: "status code out of 100..=599" });
            }
            string_const(content_type)?;
            if let Some(example) = example {
                string_const(example)?;
            }
        }
        Op::CacheLookup { headers_first, headers, queries_first, queries, .. } => {
            if headers > CACHE_VARY_BY_MAX || queries > CACHE_VARY_BY_MAX {
                return Err(VerifyError::Operand { at, what: "too many vary-by elements" });
            }
            for index in headers_first..headers_first.saturating_add(u32::from(headers)) {
                string_const(index)?;
            }
            for index in queries_first..queries_first.saturating_add(u32::from(queries)) {
                string_const(index)?;
            }
        }
        Op::CacheLookupValue { variable, .. } => string_const(variable)?,
        Op::SetBodyLiquid { template, .. } => match program.consts.get(template as usize) {
            None => return Err(VerifyError::ConstOutOfRange { at, index: template, len: program.consts.len() }),
            Some(Const::Liquid(_)) => {}
            Some(_) => return Err(VerifyError::ConstKind { at, index: template }),
        },
        Op::SendRequest { variable: Some(variable), .. } => string_const(variable)?,
        Op::Limit { limit, .. } | Op::LimitCommit { limit } => {
            table("limit", limit, program.limits.len())?;
            check_limit(program, at, &program.limits[limit as usize])?;
        }
        Op::TokenLimit { limit } => {
            table("token limit", limit, program.token_limits.len())?;
            let token_limit = &program.token_limits[limit as usize];
            for index in token_limit.names().into_iter().flatten() {
                string_const(index)?;
            }
            if token_limit.tokens_per_minute.is_none() && token_limit.quota.is_none() {
                return Err(VerifyError::Operand { at, what: "a token limit needs tokens-per-minute or token-quota" });
            }
        }
        Op::ContentSafetyCall { rule, .. } => table("content safety", rule, program.content_safety.len())?,
        Op::ContentSafetyVerdict { rule, variable, .. } => {
            table("content safety", rule, program.content_safety.len())?;
            string_const(variable)?;
        }
        Op::LimitConcurrencyEnter { max: 0 } => {
            return Err(VerifyError::Operand { at, what: "limit-concurrency max-count must be at least 1" });
        }
        _ => {}
    }
    Ok(())
}

/// A limit's names are string constants; its windows are in APIM's bounds.
fn check_limit(program: &Program, at: usize, limit: &Limit) -> Result<(), VerifyError> {
    let names = [
        limit.retry_after_header,
        limit.retry_after_variable,
        limit.remaining_calls_header,
        limit.remaining_calls_variable,
        limit.total_calls_header,
        limit.remaining_bandwidth_header,
        limit.remaining_bandwidth_variable,
    ];
    for index in names.into_iter().flatten() {
        match program.consts.get(index as usize) {
            Some(Const::Str(_)) => {}
            Some(_) => return Err(VerifyError::ConstKind { at, index }),
            None => return Err(VerifyError::ConstOutOfRange { at, index, len: program.consts.len() }),
        }
    }
    let periods = std::iter::once(limit.period_seconds).chain(limit.scopes.iter().map(|scope| scope.period_seconds));
    for period in periods {
        if limit.kind == LimitKind::RateLimit && !(1..=RATE_LIMIT_PERIOD_SECONDS_MAX).contains(&period) {
            return Err(VerifyError::Operand { at, what: "a rate-limit renewal-period is 1 to 300 seconds" });
        }
    }
    if limit.scopes.len() > LIMIT_SCOPES_MAX {
        return Err(VerifyError::Operand { at, what: "too many <api>/<operation> limits" });
    }
    Ok(())
}

/// Whether `text` may be a header field value: no CR, LF or NUL (RFC 9110 §5.5). The VM checks
/// computed values per request; constants are checked once, here.
pub fn is_header_value(text: &str) -> bool {
    !text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// The deepest stack `ops` reach, by abstract interpretation of the depth over every path;
/// fails on underflow, on paths that disagree, on a non-empty stack at a statement boundary or
/// at the end, and past [`STACK_DEPTH_MAX`]. The compiler uses it to fill [`Program::max_stack`].
pub fn stack_depth_max(ops: &[Op]) -> Result<u32, VerifyError> {
    let len = ops.len();
    // depth[i]: the stack depth on entry to op i (index len: at the end).
    let mut depth: Vec<Option<u32>> = vec![None; len + 1];
    let mut work: Vec<usize> = vec![0];
    depth[0] = Some(0);
    let max = u32::from(STACK_DEPTH_MAX);
    let mut deepest = 0;
    let reach =
        |depth: &mut Vec<Option<u32>>, work: &mut Vec<usize>, at: usize, target: usize, d: u32| match depth[target] {
            None => {
                depth[target] = Some(d);
                work.push(target);
                Ok(())
            }
            Some(expected) if expected == d => Ok(()),
            Some(expected) => Err(VerifyError::InconsistentStack { at: target.max(at), found: d, expected }),
        };
    while let Some(at) = work.pop() {
        let Some(entry) = depth[at] else { continue };
        if at == len {
            if entry != 0 {
                return Err(VerifyError::StackNotEmpty { at, depth: entry });
            }
            continue;
        }
        let op = ops[at];
        if matches!(op, Op::Site(_) | Op::Respond | Op::MockResponse { .. } | Op::ForwardRequest { .. }) && entry != 0 {
            return Err(VerifyError::StackNotEmpty { at, depth: entry });
        }
        let (pops, pushes) = op.stack_effect();
        let after_pop = entry.checked_sub(u32::from(pops)).ok_or(VerifyError::StackUnderflow { at })?;
        // A suspension keeps the locals, not the stack: nothing may be left under its operands.
        if op.suspends() && after_pop != 0 {
            return Err(VerifyError::StackNotEmpty { at, depth: entry });
        }
        let after = after_pop + u32::from(pushes);
        if after > max {
            return Err(VerifyError::StackOverflow { at, depth: after, max: STACK_DEPTH_MAX });
        }
        deepest = deepest.max(after);
        if let Some(target) = op.jump_target() {
            if target as usize > len {
                return Err(VerifyError::JumpOutOfRange { at, target, len });
            }
            // IterNext jumps without pushing; JumpIfNull/NotNull jump keeping the value; a
            // try's handler starts with the exception's message on the try's stack.
            let on_jump = match op {
                Op::IterNext(..) => entry,
                Op::TryEnter { .. } => entry + 1,
                _ => after,
            };
            if on_jump > max {
                return Err(VerifyError::StackOverflow { at, depth: on_jump, max: STACK_DEPTH_MAX });
            }
            deepest = deepest.max(on_jump);
            reach(&mut depth, &mut work, at, target as usize, on_jump)?;
        }
        if !op.ends_flow() {
            reach(&mut depth, &mut work, at, at + 1, after)?;
        }
    }
    Ok(deepest)
}

#[cfg(test)]
mod tests;
