//! Micro-benchmarks of the policy engine, on policy XML compiled by the real compiler (`portcullis-policy`):
//!
//! - `policy_compile`: a 100-statement document (`benches/policies/compile-100.xml`) from XML
//!   text to verified programs: parse, scope merge and compile of all four sections (the compiler,
//!   off the hot path).
//! - `policy_load`: the data plane loading those programs (verified again, regexes compiled;
//!   the snapshot thread, off the hot path).
//! - `policy_vm`: VM time per request. `inbound_typical` (`inbound-typical.xml`: check-header,
//!   three literal set-header, a literal rewrite-uri, a choose on a header) is issue 4's target,
//!   ≤ 300 ns; `inbound_expressions` (`inbound-expressions.xml`: AsJwt and claims, Regex.IsMatch,
//!   string interpolation) is for context; `inbound_limits` (`inbound-limits.xml`: a
//!   `rate-limit-by-key` and a `quota-by-key` on one key, three literal set-header) is the
//!   policy-set scenario's section, its counters in the shared store. Each iteration resets one reused request state and
//!   runs the inbound section against a parsed 10-header request, as a worker does.
//! - `policy_head`: writing the forwarded request head with the typical section's edits, against
//!   the same writer with no edits and the writer requests without policies use; and reset, run
//!   and write together (the typical section's whole cost on the inbound path).
//!
//! Run with `cargo xtask bench-micro` (every bench of the crate) or
//! `cargo bench -p portcullis-benches --bench policy`; figures are in docs/benchmarks.md.

#![allow(clippy::expect_used, reason = "benchmark fixtures are built from constants; a failure is a bug in the bench")]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{TimeZone as _, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis_contract::model::{Api, Deployment, Operation, Policies};
use portcullis_contract::program::{Program, ScopeKind, Section};
use portcullis_dataplane::http::forward::{self, Forwarding};
use portcullis_dataplane::http::request::{self, RequestHead};
use portcullis_dataplane::policy::{self, ConcurrencyLimits, Exit, MatchedParam, Programs, RequestState, View};
use portcullis_policy::compile::{self, Environment, Options, Report};
use portcullis_policy::scope::{self, Document, Fragments};
use portcullis_policy::{NamedValues, SourceFile};

/// Both binaries (control and data plane) allocate with mimalloc; so does this bench.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// 100 policy statements over the four sections.
const DOCUMENT_100: &str = include_str!("../policies/compile-100.xml");
const STATEMENTS_IN_DOCUMENT_100: usize = 100;
/// The typical inbound section of the VM target.
const INBOUND_TYPICAL: &str = include_str!("../policies/inbound-typical.xml");
/// AsJwt with claims, Regex.IsMatch, string interpolation.
const INBOUND_EXPRESSIONS: &str = include_str!("../policies/inbound-expressions.xml");
const INBOUND_LIMITS: &str = include_str!("../policies/inbound-limits.xml");

/// Section index in `Section::ALL` (and so in the compiled program list).
const INBOUND: u32 = 0;

/// A bearer token (RS256, 256-byte signature; never validated here): header
/// `{"alg":"RS256","typ":"JWT","kid":"k1"}`, payload `{"iss":"https://login.example.com/",
/// "sub":"user-42","aud":"api://orders","tid":"contoso","scope":"orders.read orders.write",
/// "exp":1893456000,"iat":1700000000}`.
const JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.\
eyJpc3MiOiJodHRwczovL2xvZ2luLmV4YW1wbGUuY29tLyIsInN1YiI6InVzZXItNDIiLCJhdWQiOiJhcGk6Ly9vcmRlcnMiLCJ0aWQiOiJjb250b3NvIiwic2NvcGUiOiJvcmRlcnMucmVhZCBvcmRlcnMud3JpdGUiLCJleHAiOjE4OTM0NTYwMDAsImlhdCI6MTcwMDAwMDAwMH0.\
pKvURIxJVi2CgRXROh_M6pJ_UrTVRZKX-LQ-QtqJI4vBNibkPcs43bCCSIkn7JBPtCBXRDmD6IWFF51QVRr-YqSr1ESMSVYtgoEV0TofzOqSf1K01UWSl_i0PkLaiSOLwTYm5D3LON2wgkiJJ-yQT7QgV0Q5g-iFhRedUFUa_mKkq9REjElWLYKBFdE6H8zqkn9StNVFkpf4tD5C2okji8E2JuQ9yzjdsIJIiSfskE-0IFdEOYPohYUXnVBVGv5ipKvURIxJVi2CgRXROh_M6pJ_UrTVRZKX-LQ-QtqJI4vBNibkPcs43bCCSIkn7JBPtCBXRDmD6IWFF51QVRr-Yg";

/// A typical API client request: 10 headers, a bearer token, a subscription key, a query.
fn request_text() -> String {
    format!(
        "GET /echo/users/42?page=2&status=open HTTP/1.1\r\n\
         Host: api.example.com\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\r\n\
         Accept: application/json\r\n\
         Accept-Encoding: gzip, deflate, br\r\n\
         Authorization: Bearer {JWT}\r\n\
         Ocp-Apim-Subscription-Key: 0123456789abcdef0123456789abcdef\r\n\
         X-Request-Id: 8d7f0a4e-3b8c-4c55-a1de-5f3a2b9c7e10\r\n\
         X-Env: prod\r\n\
         Connection: keep-alive\r\n\
         Cookie: session=abc123; theme=dark\r\n\r\n"
    )
}

/// Parses, merges and compiles the four sections of one API-scope document, as the config
/// loader does (no named values, no fragments): XML text to verified programs.
fn compile_document(path: &str, text: &str) -> Result<Vec<Program>, String> {
    let file = Arc::new(SourceFile::new(path, text));
    let document = Document::parse(file, ScopeKind::Api).map_err(|errors| render(&errors))?;
    let named_values = NamedValues::default();
    let fragments = Fragments::default();
    let backends = std::collections::BTreeSet::new();
    let env = Environment {
        named_values: &named_values,
        fragments: &fragments,
        backends: &backends,
        responses: &[],
        options: Options::default(),
        certificates: &Default::default(),
    };
    let mut report = Report::default();
    let mut programs = Vec::with_capacity(Section::ALL.len());
    for section in Section::ALL {
        let statements = scope::merge(&[&document], section).map_err(|errors| render(&errors))?;
        match compile::compile_section(&statements, section, env, &mut report) {
            Some(program) => programs.push(program),
            None => return Err(render(&report.errors)),
        }
    }
    Ok(programs)
}

fn render(diagnostics: &[impl ToString]) -> String {
    diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// Compiles `text` and loads its programs as the data plane does.
fn load(path: &str, text: &str) -> Programs {
    let programs = compile_document(path, text).unwrap_or_else(|errors| panic!("{path} does not compile:\n{errors}"));
    Programs::load(&programs).expect("compiled programs load")
}

/// Everything a [`View`] borrows: what the proxy owns while it runs a section.
struct Fixture {
    programs: Programs,
    buf: Vec<u8>,
    head: RequestHead,
    api: Api,
    operation: Operation,
    deployment: Deployment,
    limits: Arc<ConcurrencyLimits>,
    rate_limits: Arc<portcullis_dataplane::policy::RateLimits>,
    peer: IpAddr,
}

/// Where the path after the API prefix (`/echo`) starts in the request target.
const REMAINDER_START: usize = 5;

impl Fixture {
    fn new(programs: Programs) -> Self {
        let buf = request_text().into_bytes();
        let head = request::parse(&buf).expect("valid request").expect("complete request");
        Self {
            programs,
            buf,
            head,
            api: portcullis_dataplane::policy::sample::api(),
            operation: portcullis_dataplane::policy::sample::operation(Policies::all(INBOUND)),
            deployment: Deployment { gateway_id: "gw".into(), region: "east us".into(), service_name: "svc".into() },
            limits: ConcurrencyLimits::new(),
            rate_limits: portcullis_dataplane::policy::RateLimits::new(),
            peer: "10.1.2.3".parse().expect("ip"),
        }
    }

    fn view<'a>(&'a self, matched: &'a [MatchedParam<'a>]) -> View<'a> {
        let arrived = Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).single().expect("date");
        View {
            programs: &self.programs,
            request: &self.head,
            request_buf: &self.buf,
            remainder_start: REMAINDER_START,
            peer: self.peer,
            client_certificate: None,
            client_trust: &portcullis_dataplane::tls::NO_CLIENT_TRUST,
            api: &self.api,
            operation: &self.operation,
            subscription: None,
            subscription_key: None,
            caller: Default::default(),
            product: None,
            deployment: &self.deployment,
            matched,
            request_id: 0x1234,
            timestamp: arrived,
            now: arrived,
            request_body: None,
            response: None,
            concurrency: &self.limits,
            limits: &self.rate_limits,
            tracing: false,
            traceparent: None,
        }
    }

    fn forwarding(&self) -> Forwarding<'_> {
        Forwarding {
            base_path: &self.api.backend.base_path,
            authority: &self.api.backend.authority,
            remainder_start: REMAINDER_START,
            client_ip: self.peer,
            tls: false,
            traceparent: None,
        }
    }

    /// Runs the inbound section on a fresh state, checks it continued, and returns the
    /// forwarded head it describes.
    fn forwarded_head(&self, state: &mut RequestState) -> String {
        let matched = [MatchedParam { name: "id", value: "42" }];
        let view = self.view(&matched);
        let program = self.programs.get(INBOUND).expect("inbound program");
        state.reset();
        match policy::run(Section::Inbound, program, &view, state) {
            Exit::Continue => {}
            other => panic!("the inbound section did not continue: {other:?}"),
        }
        let mut out = Vec::new();
        policy::apply::write_request_head(&mut out, &self.head, &self.buf, &self.forwarding(), state, &self.programs);
        String::from_utf8(out).expect("ASCII head")
    }
}

fn compile_100(c: &mut Criterion) {
    let programs = compile_document("api/policy.xml", DOCUMENT_100).unwrap_or_else(|errors| panic!("{errors}"));
    let statements: usize = programs.iter().map(|program| program.sites.len()).sum();
    assert_eq!(statements, STATEMENTS_IN_DOCUMENT_100, "statements in compile-100.xml");

    let mut group = c.benchmark_group("policy_compile");
    group.bench_function("100_statements_4_sections", |b| {
        b.iter_with_large_drop(|| compile_document("api/policy.xml", black_box(DOCUMENT_100)))
    });
    group.finish();

    let mut group = c.benchmark_group("policy_load");
    group.bench_function("100_statements_4_sections", |b| {
        b.iter_with_large_drop(|| Programs::load(black_box(&programs)))
    });
    group.finish();
}

fn vm(c: &mut Criterion) {
    let matched = [MatchedParam { name: "id", value: "42" }];
    let mut group = c.benchmark_group("policy_vm");

    let typical = Fixture::new(load("inbound-typical.xml", INBOUND_TYPICAL));
    let mut state = RequestState::new();
    let head = typical.forwarded_head(&mut state);
    assert!(head.starts_with("GET /api/v2/users/42?page=2&status=open HTTP/1.1\r\n"), "{head}");
    for edit in ["X-Gateway: portcullis\r\n", "X-Tier: gold\r\n", "X-Trace: on\r\n", "X-Prod: yes\r\n"] {
        assert!(head.contains(edit), "{edit:?} missing from {head}");
    }
    let view = typical.view(&matched);
    let program = typical.programs.get(INBOUND).expect("inbound program");
    group.bench_function("inbound_typical", |b| {
        b.iter(|| {
            state.reset();
            policy::run(Section::Inbound, program, black_box(&view), &mut state)
        })
    });

    let expressions = Fixture::new(load("inbound-expressions.xml", INBOUND_EXPRESSIONS));
    let head = expressions.forwarded_head(&mut state);
    for edit in ["X-User: user-42@contoso\r\n", "X-Can-Write: yes\r\n"] {
        assert!(head.contains(edit), "{edit:?} missing from {head}");
    }
    let view = expressions.view(&matched);
    let program = expressions.programs.get(INBOUND).expect("inbound program");
    group.bench_function("inbound_expressions", |b| {
        b.iter(|| {
            state.reset();
            policy::run(Section::Inbound, program, black_box(&view), &mut state)
        })
    });

    let limits = Fixture::new(load("inbound-limits.xml", INBOUND_LIMITS));
    limits.rate_limits.allocate();
    let view = limits.view(&matched);
    let program = limits.programs.get(INBOUND).expect("inbound program");
    state.reset();
    assert_eq!(policy::run(Section::Inbound, program, &view, &mut state), Exit::Continue);
    group.bench_function("inbound_limits", |b| {
        b.iter(|| {
            state.reset();
            policy::run(Section::Inbound, program, black_box(&view), &mut state)
        })
    });
    group.finish();
}

fn forwarded_head(c: &mut Criterion) {
    let typical = Fixture::new(load("inbound-typical.xml", INBOUND_TYPICAL));
    let forwarding = typical.forwarding();
    let mut out = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("policy_head");

    // The state the typical section left: four header edits and a rewrite.
    let mut edited = RequestState::new();
    let _ = typical.forwarded_head(&mut edited);
    group.bench_function("write_request_head_typical_edits", |b| {
        b.iter(|| {
            policy::apply::write_request_head(
                &mut out,
                &typical.head,
                &typical.buf,
                black_box(&forwarding),
                &edited,
                &typical.programs,
            );
            out.len()
        })
    });

    // The same writer with no edits, and the writer requests without policies use.
    let untouched = RequestState::new();
    group.bench_function("write_request_head_no_edits", |b| {
        b.iter(|| {
            policy::apply::write_request_head(
                &mut out,
                &typical.head,
                &typical.buf,
                black_box(&forwarding),
                &untouched,
                &typical.programs,
            );
            out.len()
        })
    });
    group.bench_function("forward_write_request_head_no_policy", |b| {
        b.iter(|| {
            forward::write_request_head(&mut out, &typical.head, &typical.buf, black_box(&forwarding));
            out.len()
        })
    });

    // What the inbound path costs per request: reset, run, write the head.
    let matched = [MatchedParam { name: "id", value: "42" }];
    let view = typical.view(&matched);
    let program = typical.programs.get(INBOUND).expect("inbound program");
    let mut state = RequestState::new();
    group.bench_function("run_and_write_typical", |b| {
        b.iter(|| {
            state.reset();
            let exit = policy::run(Section::Inbound, program, black_box(&view), &mut state);
            policy::apply::write_request_head(
                &mut out,
                &typical.head,
                &typical.buf,
                &forwarding,
                &state,
                &typical.programs,
            );
            (exit, out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, compile_100, vm, forwarded_head);
criterion_main!(benches);
