//! A snapshot's programs made ready to run: verified again, regexes compiled, facts derived.
//!
//! Loading runs on the snapshot thread, never on a worker: the data plane never trusts control,
//! so every program is verified again here and a bad regular expression refuses the snapshot.

use crate::policy::vm::Forward;
use portcullis_contract::program::{self, Const, Op, Program, Prop, Side, VerifyError};

/// Compiled size of one regular expression: bounds memory per pattern (the `regex` crate's
/// default is 10 MiB; policy patterns are short).
pub const REGEX_SIZE_MAX_BYTES: usize = 1024 * 1024;

/// Why a program was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("program {index}: {error}")]
    Verify { index: usize, error: VerifyError },
    #[error("program {index}, constant {constant}: bad regular expression: {error}")]
    Regex { index: usize, constant: usize, error: String },
    #[error("program {index}, constant {constant}: bad liquid template: {error}")]
    Liquid { index: usize, constant: usize, error: String },
    #[error("program {index}, validate-content {rule}: bad JSON schema: {error}")]
    Schema { index: usize, rule: usize, error: String },
    #[error("{0} programs, more than fit a u32 index")]
    TooMany(usize),
}

/// Where a string constant lives: program and constant index. Request state keeps these
/// instead of copies, and resolves them against the request's snapshot when it applies edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LitRef {
    pub program: u32,
    pub index: u32,
}

/// A string constant and where it lives (so a borrow of it can be stored by reference).
#[derive(Debug)]
pub struct ConstStr {
    text: Box<str>,
    origin: LitRef,
}

impl ConstStr {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn origin(&self) -> LitRef {
        self.origin
    }
}

/// A constant-pool entry, ready for the VM.
#[derive(Debug)]
pub enum LoadedConst {
    Str(ConstStr),
    Int(i64),
    Double(f64),
    Regex(regex::Regex),
    /// A `set-body template="liquid"` template, parsed once here.
    Liquid(LiquidTemplate),
}

/// A parsed Liquid template (the `liquid` crate's type has no `Debug`).
pub struct LiquidTemplate(liquid::Template);

impl LiquidTemplate {
    /// Parses `source` in APIM's dialect (as the snapshot loader does).
    pub fn parse(source: &str) -> Result<Self, String> {
        portcullis_contract::liquid::parse(source).map(Self)
    }

    pub fn render(&self, globals: &dyn liquid::ObjectView) -> Result<String, liquid::Error> {
        self.0.render(globals)
    }
}

impl std::fmt::Debug for LiquidTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiquidTemplate")
    }
}

/// Which bodies a program touches: the proxy buffers a body only when a program reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyUse {
    /// Reads the request body (`context.Request.Body`, `find-and-replace` on the request).
    pub reads_request: bool,
    /// Reads the response body.
    pub reads_response: bool,
    /// May replace the request body (`set-body`, `find-and-replace`).
    pub replaces_request: bool,
    /// May replace the response body.
    pub replaces_response: bool,
    /// May send the request to the backend more than once (a `retry` around `forward-request`,
    /// or `follow-redirects="true"`): the proxy buffers the request body so it can send it again.
    pub replays_request: bool,
}

/// One verified program with its constants compiled.
#[derive(Debug)]
pub struct LoadedProgram {
    index: u32,
    program: Program,
    consts: Vec<LoadedConst>,
    bodies: BodyUse,
    /// Per `validate-content` rule, per `<content>`: its compiled JSON Schema, if it has one.
    content_schemas: Vec<Vec<Option<jsonschema::Validator>>>,
    /// The program is only `forward-request` (the backend section of most operations).
    plain_forward: Option<Forward>,
}

impl LoadedProgram {
    /// Verifies `program` and compiles its constants; `index` is its place in the snapshot.
    pub fn load(index: u32, program: Program) -> Result<Self, LoadError> {
        let at = index as usize;
        program::verify(&program).map_err(|error| LoadError::Verify { index: at, error })?;
        let mut consts = Vec::with_capacity(program.consts.len());
        for (constant, value) in program.consts.iter().enumerate() {
            consts.push(match value {
                Const::Str(text) => LoadedConst::Str(ConstStr {
                    text: text.as_str().into(),
                    origin: LitRef { program: index, index: constant as u32 },
                }),
                Const::Int(value) => LoadedConst::Int(*value),
                Const::Double(value) => LoadedConst::Double(*value),
                Const::Regex { pattern, ignore_case } => LoadedConst::Regex(
                    regex::RegexBuilder::new(pattern)
                        .case_insensitive(*ignore_case)
                        .size_limit(REGEX_SIZE_MAX_BYTES)
                        .build()
                        .map_err(|error| LoadError::Regex { index: at, constant, error: error.to_string() })?,
                ),
                Const::Liquid(source) => LoadedConst::Liquid(LiquidTemplate(
                    portcullis_contract::liquid::parse(source).map_err(|error| LoadError::Liquid {
                        index: at,
                        constant,
                        error,
                    })?,
                )),
            });
        }
        let mut bodies = body_use(&program.ops, &program.content_validations);
        // A token limit that estimates the prompt counts it from the request body.
        bodies.reads_request |= program.token_limits.iter().any(|limit| limit.estimate_prompt_tokens);
        // Content safety sends the prompt.
        bodies.reads_request |= !program.content_safety.is_empty();
        let plain_forward = plain_forward(&program.ops);
        let content_schemas =
            content_schemas(&program).map_err(|(rule, error)| LoadError::Schema { index: at, rule, error })?;
        Ok(Self { index, program, consts, bodies, content_schemas, plain_forward })
    }

    /// Place in the snapshot's program list.
    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    pub fn consts(&self) -> &[LoadedConst] {
        &self.consts
    }

    /// The program does nothing: the proxy may skip it.
    pub fn is_empty(&self) -> bool {
        self.program.ops.is_empty()
    }

    pub fn bodies(&self) -> BodyUse {
        self.bodies
    }

    /// `Some` when the program does nothing but `forward-request` with these settings: the
    /// proxy then calls the backend without running the VM (nothing it could observe differs).
    pub fn plain_forward(&self) -> Option<Forward> {
        self.plain_forward
    }

    /// The compiled schema of `<content>` `content` of `validate-content` rule `rule`.
    pub fn content_schema(&self, rule: u32, content: usize) -> Option<&jsonschema::Validator> {
        self.content_schemas.get(rule as usize)?.get(content)?.as_ref()
    }

    /// The string constant `index`, if it is one.
    pub fn const_str(&self, index: u32) -> Option<&ConstStr> {
        match self.consts.get(index as usize) {
            Some(LoadedConst::Str(text)) => Some(text),
            _ => None,
        }
    }
}

/// Every `validate-content` schema of `program` compiled (`allow-additional-properties`
/// applied); the error names the rule.
fn content_schemas(program: &Program) -> Result<Vec<Vec<Option<jsonschema::Validator>>>, (usize, String)> {
    program
        .content_validations
        .iter()
        .enumerate()
        .map(|(at, rule)| {
            rule.contents
                .iter()
                .map(|content| {
                    let Some(source) = &content.schema else { return Ok(None) };
                    let mut schema: serde_json::Value =
                        serde_json::from_str(source).map_err(|error| (at, error.to_string()))?;
                    if let Some(allow) = content.allow_additional_properties {
                        set_additional_properties(&mut schema, allow);
                    }
                    jsonschema::validator_for(&schema).map(Some).map_err(|error| (at, error.to_string()))
                })
                .collect()
        })
        .collect()
}

/// `allow-additional-properties`: every object schema (one with `properties`) allows or
/// refuses properties it does not list, whatever the schema said.
fn set_additional_properties(schema: &mut serde_json::Value, allow: bool) {
    match schema {
        serde_json::Value::Object(map) => {
            if map.contains_key("properties") {
                map.insert("additionalProperties".into(), serde_json::Value::Bool(allow));
            }
            for value in map.values_mut() {
                set_additional_properties(value, allow);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|item| set_additional_properties(item, allow)),
        _ => {}
    }
}

/// Which bodies `ops` touch. `Prop(Body)` belongs to the message read just before it; when
/// that is not visible (a body kept in a local), both sides count.
fn body_use(ops: &[Op], validations: &[program::ContentValidation]) -> BodyUse {
    let mut bodies = BodyUse::default();
    let mut previous = None;
    for op in ops {
        match *op {
            Op::Prop(Prop::Body) => match previous {
                Some(Op::Prop(Prop::Request)) => bodies.reads_request = true,
                Some(Op::Prop(Prop::Response)) => bodies.reads_response = true,
                _ => {
                    bodies.reads_request = true;
                    bodies.reads_response = true;
                }
            },
            Op::SetBody { side } => match side {
                Side::Request => bodies.replaces_request = true,
                Side::Response => bodies.replaces_response = true,
                Side::Returned | Side::Outgoing => {}
            },
            Op::SetBodyLiquid { side, body, .. } => {
                match side {
                    Side::Request => bodies.replaces_request = true,
                    Side::Response => bodies.replaces_response = true,
                    Side::Returned | Side::Outgoing => {}
                }
                match body {
                    Some(Side::Request) => bodies.reads_request = true,
                    Some(Side::Response) => bodies.reads_response = true,
                    _ => {}
                }
            }
            Op::ValidateContent(index) => match validations.get(index as usize).map(|rule| rule.side) {
                Some(Side::Request) => bodies.reads_request = true,
                Some(Side::Response) => bodies.reads_response = true,
                _ => {}
            },
            // A copy of the request carries its body.
            Op::BeginOutgoing { copy: true } => bodies.reads_request = true,
            Op::FindAndReplace { side }
            | Op::XmlToJson { side }
            | Op::JsonToXml { side, .. }
            | Op::Jsonp { side }
            | Op::RedirectContentUrls { side } => match side {
                Side::Request => {
                    bodies.reads_request = true;
                    bodies.replaces_request = true;
                }
                Side::Response => {
                    bodies.reads_response = true;
                    bodies.replaces_response = true;
                }
                Side::Returned | Side::Outgoing => {}
            },
            _ => {}
        }
        previous = Some(*op);
    }
    bodies.replays_request = replays_request(ops);
    bodies
}

/// Whether `ops` may call the backend more than once: a `forward-request` that follows
/// redirects, or one inside a `retry` (between the jump target of a `RetryNext` and itself).
fn replays_request(ops: &[Op]) -> bool {
    let forwards = || {
        ops.iter().enumerate().filter_map(|(at, op)| match op {
            Op::ForwardRequest { follow_redirects, .. } => Some((at, *follow_redirects)),
            // Computed per request: it may follow redirects.
            Op::ForwardRequestComputed { .. } => Some((at, true)),
            _ => None,
        })
    };
    forwards().any(|(_, follows)| follows)
        || ops.iter().enumerate().any(|(at, op)| match *op {
            Op::RetryNext { target, .. } => forwards().any(|(forward, _)| (target as usize) <= forward && forward < at),
            _ => false,
        })
}

/// Every program of one snapshot, in `Config::programs` order.
#[derive(Debug, Default)]
pub struct Programs {
    programs: Vec<LoadedProgram>,
    jwt: JwtKeys,
}

/// The key rings of a snapshot's `validate-jwt` rules (built here, on the channel thread).
#[derive(Debug, Default)]
pub struct JwtKeys {
    rings: crate::jwt::keys::Rings,
    /// Per program, per rule: the index of its ring.
    rule_rings: Vec<Vec<u32>>,
    /// The snapshot generation: cached verifications of another epoch are stale.
    epoch: u64,
    /// `[jwt] token-cache`.
    token_cache: bool,
}

impl JwtKeys {
    fn build(programs: &[Program], settings: &portcullis_contract::jwt::JwtSettings, epoch: u64) -> Self {
        let rules = programs.iter().flat_map(|program| program.jwt.iter());
        let (rings, flat) = crate::jwt::keys::Rings::build(rules, &settings.openid);
        let mut flat = flat.into_iter();
        let rule_rings = programs.iter().map(|program| flat.by_ref().take(program.jwt.len()).collect()).collect();
        Self { rings, rule_rings, epoch, token_cache: settings.token_cache }
    }
}

impl Programs {
    /// Loads every program; one bad program refuses them all (and so the snapshot).
    pub fn load(programs: &[Program]) -> Result<Self, LoadError> {
        Self::load_with_keys(programs, &portcullis_contract::jwt::JwtSettings::default(), 0)
    }

    /// As [`Programs::load`], with the `validate-jwt` keys (`[jwt]` and the fetched OpenID keys)
    /// of the snapshot of generation `epoch`.
    pub fn load_with_keys(
        programs: &[Program],
        jwt: &portcullis_contract::jwt::JwtSettings,
        epoch: u64,
    ) -> Result<Self, LoadError> {
        if u32::try_from(programs.len()).is_err() {
            return Err(LoadError::TooMany(programs.len()));
        }
        let jwt = JwtKeys::build(programs, jwt, epoch);
        let programs = programs
            .iter()
            .enumerate()
            .map(|(index, program)| LoadedProgram::load(index as u32, program.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { programs, jwt })
    }

    /// From already loaded programs (tests, benches); their indices must be their positions.
    pub fn from_loaded(programs: Vec<LoadedProgram>) -> Self {
        let sources: Vec<Program> = programs.iter().map(|program| program.program().clone()).collect();
        let jwt = JwtKeys::build(&sources, &portcullis_contract::jwt::JwtSettings::default(), 0);
        Self { programs, jwt }
    }

    /// The key ring (and its index) of rule `rule` of program `program`.
    pub fn jwt_ring(&self, program: u32, rule: u32) -> Option<(u32, &crate::jwt::keys::KeyRing)> {
        let index = *self.jwt.rule_rings.get(program as usize)?.get(rule as usize)?;
        Some((index, self.jwt.rings.rings.get(index as usize)?))
    }

    /// The generation the key rings belong to (the verified-token cache's epoch).
    pub fn jwt_epoch(&self) -> u64 {
        self.jwt.epoch
    }

    /// Whether workers may use the verified-token cache.
    pub fn token_cache(&self) -> bool {
        self.jwt.token_cache
    }

    /// Every `<openid-config url>` of the snapshot, in the order [`crate::jwt::KEY_MISSES`]'s bits use.
    pub fn openid_urls(&self) -> &[String] {
        &self.jwt.rings.openid_urls
    }

    pub fn get(&self, index: u32) -> Option<&LoadedProgram> {
        self.programs.get(index as usize)
    }

    /// The string a stored literal refers to ("" if the reference is stale, which the proxy
    /// prevents by keeping a request on the snapshot it started with).
    pub fn literal(&self, origin: LitRef) -> &str {
        self.get(origin.program).and_then(|program| program.const_str(origin.index)).map_or("", ConstStr::as_str)
    }

    pub fn len(&self) -> usize {
        self.programs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.programs.is_empty()
    }
}

/// The settings of a program that is `forward-request` alone (sites aside).
fn plain_forward(ops: &[Op]) -> Option<Forward> {
    let mut statements = ops.iter().filter(|op| !matches!(op, Op::Site(_)));
    match (statements.next(), statements.next()) {
        (Some(&Op::ForwardRequest { timeout_ms, follow_redirects, buffer_response, fail_on_error_status }), None) => {
            Some(Forward { timeout_ms, follow_redirects, buffer_response, fail_on_error_status })
        }
        _ => None,
    }
}
