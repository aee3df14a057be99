//! Builtins and operators with .NET semantics.

use portcullis_contract::program::{Builtin, Const, Op, Prop, ValueType};

use super::*;

fn call(builtin: Builtin, args: &[Const]) -> Result<String, Box<PolicyError>> {
    let ops = (0..args.len() as u32).map(Op::Const).chain([Op::Call(builtin, args.len() as u8)]).collect();
    eval(ops, args.to_vec())
}

fn ty(t: ValueType) -> Const {
    Const::Int(match t {
        ValueType::String => 0,
        ValueType::Int => 1,
        ValueType::JObject => 4,
        ValueType::Bytes => 12,
        _ => 14,
    })
}

#[test]
fn operators_follow_csharp() {
    assert_eq!(eval(vec![Op::Const(0), Op::Int(1), Op::Add], vec![s("a")]).expect("ok"), "a1");
    assert_eq!(eval(vec![Op::Null, Op::Const(0), Op::Add], vec![s("a")]).expect("ok"), "a");
    assert_eq!(eval(vec![Op::Bool(true), Op::Const(0), Op::Concat(2)], vec![s("!")]).expect("ok"), "True!");
    assert_eq!(eval(vec![Op::Int(7), Op::Int(2), Op::Div], vec![]).expect("ok"), "Int32:3");
    assert_eq!(eval(vec![Op::Const(0), Op::Int(2), Op::Mul], vec![Const::Double(1.25)]).expect("ok"), "Double:2.5");
    assert_eq!(eval(vec![Op::Int(1), Op::Const(0), Op::Eq], vec![Const::Double(1.0)]).expect("ok"), "Boolean:True");
    assert!(eval(vec![Op::Const(0), Op::Int(1), Op::Add], vec![Const::Int(i64::MAX)]).is_err());
    assert_eq!(eval(vec![Op::Const(0), Op::Const(0), Op::Add], vec![Const::Double(1e20)]).expect("ok"), "Double:2E+20");
}

#[test]
fn strings() {
    assert_eq!(call(Builtin::StrReplace, &[s("Bearer abc"), s("Bearer "), s("")]).expect("ok"), "abc");
    assert_eq!(call(Builtin::StrSubstringLength, &[s("hello"), Const::Int(1), Const::Int(3)]).expect("ok"), "ell");
    assert!(call(Builtin::StrSubstring, &[s("hi"), Const::Int(3)]).is_err());
    assert_eq!(call(Builtin::StrToUpper, &[s("abc")]).expect("ok"), "ABC");
    assert_eq!(call(Builtin::StrTrim, &[s("  x ")]).expect("ok"), "x");
    assert_eq!(call(Builtin::StrIndexOf, &[s("abcabc"), s("c")]).expect("ok"), "Int32:2");
    assert_eq!(
        call(Builtin::EqualsComparison, &[s("East US"), s("east us"), Const::Int(3)]).expect("ok"),
        "Boolean:True"
    );
    assert_eq!(call(Builtin::StrContains, &[s("blue-green"), s("blue")]).expect("ok"), "Boolean:True");
    let split = eval(
        vec![Op::Const(0), Op::Const(1), Op::Call(Builtin::StrSplit, 2), Op::Int(1), Op::Index],
        vec![s("a,b,c"), s(",")],
    );
    assert_eq!(split.expect("ok"), "b");
    let format = eval(
        vec![Op::Const(0), Op::Const(1), Op::Int(7), Op::MakeArray(2), Op::Call(Builtin::StrFormat, 2)],
        vec![s("{0}-{1:D3}"), s("x")],
    );
    assert_eq!(format.expect("ok"), "x-007");
    assert_eq!(call(Builtin::StrIsNullOrEmpty, &[s("")]).expect("ok"), "Boolean:True");
    assert_eq!(call(Builtin::ToString, &[Const::Double(0.1)]).expect("ok"), "0.1");
}

#[test]
fn parsing_encoding_and_hashes() {
    assert_eq!(call(Builtin::IntParse, &[s(" 42 ")]).expect("ok"), "Int32:42");
    assert!(call(Builtin::IntParse, &[s("4x")]).is_err());
    let b64 = eval(
        vec![Op::Const(0), Op::Call(Builtin::Utf8GetBytes, 1), Op::Call(Builtin::ConvertToBase64String, 1)],
        vec![s("hi")],
    );
    assert_eq!(b64.expect("ok"), "aGk=");
    let sha = eval(
        vec![
            Op::Const(0),
            Op::Call(Builtin::Utf8GetBytes, 1),
            Op::Call(Builtin::Sha256Hash, 1),
            Op::Call(Builtin::BitConverterToString, 1),
        ],
        vec![s("abc")],
    );
    assert!(sha.expect("ok").starts_with("BA-78-16-BF"));
    let hmac = eval(
        vec![
            Op::Const(0),
            Op::Call(Builtin::Utf8GetBytes, 1),
            Op::Const(1),
            Op::Call(Builtin::Utf8GetBytes, 1),
            Op::Call(Builtin::HmacSha256, 2),
            Op::Call(Builtin::ConvertToBase64String, 1),
        ],
        vec![s("key"), s("The quick brown fox jumps over the lazy dog")],
    );
    assert_eq!(hmac.expect("ok"), "97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=");
    assert_eq!(call(Builtin::WebUtilityUrlEncode, &[s("a b&c")]).expect("ok"), "a+b%26c");
    assert_eq!(call(Builtin::UriEscapeDataString, &[s("a b")]).expect("ok"), "a%20b");
}

/// The URL builtins follow http::url: `WebUtility` is the form coding, `Uri` RFC 3986's, and
/// malformed escapes are kept as written by both (`%+F` was decoded as `%0F` before the URL module).
#[test]
fn url_builtins_keep_malformed_escapes() {
    let malformed = "%+F%G1%-1+a%2b%1";
    assert_eq!(call(Builtin::WebUtilityUrlDecode, &[s(malformed)]).expect("ok"), "% F%G1%-1 a+%1");
    assert_eq!(call(Builtin::UriUnescapeDataString, &[s(malformed)]).expect("ok"), "%+F%G1%-1+a+%1");
    assert_eq!(call(Builtin::WebUtilityUrlDecode, &[s("%")]).expect("ok"), "%");
    // WebUtility.UrlEncode escapes `~` (RFC 1738's safe set, as .NET); it was kept before the URL module.
    assert_eq!(call(Builtin::WebUtilityUrlEncode, &[s("~!*()")]).expect("ok"), "%7E!*()");
    assert_eq!(call(Builtin::UriEscapeDataString, &[s("~!*()")]).expect("ok"), "~%21%2A%28%29");
}

/// `Url.Query` decodes names and values as forms do, malformed escapes kept; a `?` in the fragment
/// starts no query.
#[test]
fn url_query_decodes_as_forms() {
    let query = |name: &str| {
        eval_with(
            |fixture| {
                let request = "GET /echo/q?k=%+F%G1+a&k%2B=b&x%20y=z&x+y=w#&f=1 HTTP/1.1\r\nHost: g\r\n\r\n";
                fixture.buf = request.as_bytes().to_vec();
                fixture.head = request::parse(&fixture.buf).expect("valid").expect("complete");
            },
            vec![
                Op::Context,
                Op::Prop(Prop::Request),
                Op::Prop(Prop::OriginalUrl),
                Op::Prop(Prop::Query),
                Op::Const(0),
                Op::Call(Builtin::GetValueOrDefault, 2),
            ],
            vec![s(name)],
        )
        .expect("ok")
    };
    assert_eq!(query("k"), "% F%G1 a");
    assert_eq!(query("k+"), "b");
    assert_eq!(query("x y"), "z,w");
    assert_eq!(query("f"), "null");
}

#[test]
fn json_shared_mutation() {
    // var o = JObject.Parse(...); o.Property("a").Remove(); o["n"]["x"] = 2; result = o.ToString(Formatting.None)
    let ops = vec![
        Op::Const(0),
        Op::Call(Builtin::JObjectParse, 1),
        Op::StoreLocal(0),
        Op::LoadLocal(0),
        Op::Const(1),
        Op::Call(Builtin::JObjectProperty, 2),
        Op::Call(Builtin::JTokenRemove, 1),
        Op::Pop,
        Op::LoadLocal(0),
        Op::Const(2),
        Op::Index,
        Op::Const(3),
        Op::Int(2),
        Op::Call(Builtin::JSet, 3),
        Op::Pop,
        Op::LoadLocal(0),
        Op::Call(Builtin::JToStringCompact, 1),
    ];
    let out = eval(ops, vec![s(r#"{"a":1,"n":{"x":1},"z":true}"#), s("a"), s("n"), s("x")]).expect("ok");
    assert_eq!(out, r#"{"n":{"x":2},"z":true}"#);
    assert!(call(Builtin::JObjectParse, &[s("[1]")]).is_err());
}

#[test]
fn regex_and_dates() {
    assert_eq!(
        call(Builtin::RegexIsMatch, &[s("/api/v1"), Const::Regex { pattern: "^/API".into(), ignore_case: true }])
            .expect("ok"),
        "Boolean:True"
    );
    let group = eval(
        vec![
            Op::Const(0),
            Op::Const(1),
            Op::Call(Builtin::RegexMatch, 2),
            Op::Prop(Prop::Groups_),
            Op::Const(2),
            Op::Index,
            Op::Prop(Prop::Value),
        ],
        vec![s("id=42;"), s(r"id=(?P<id>\d+)"), s("id")],
    );
    assert_eq!(group.expect("ok"), "42");
    assert_eq!(call(Builtin::RegexReplace, &[s("a1b22"), s(r"(\d+)"), s("<$1>")]).expect("ok"), "a<1>b<22>");
    let date = eval(
        vec![Op::Context, Op::Prop(Prop::Timestamp), Op::Const(0), Op::Call(Builtin::ToStringFormat, 2)],
        vec![s("yyyy-MM-ddTHH:mm:ssZ")],
    );
    assert_eq!(date.expect("ok"), "2024-05-06T07:08:09Z");
    // The round-trip format: seven fraction digits (found by the policy_compile fuzz target:
    // it panicked, since chrono has no `%.7f`).
    for format in ["o", "O"] {
        let date = eval(
            vec![Op::Context, Op::Prop(Prop::Timestamp), Op::Const(0), Op::Call(Builtin::ToStringFormat, 2)],
            vec![s(format)],
        );
        assert_eq!(date.expect("ok"), "2024-05-06T07:08:09.0000000Z");
    }
    let fraction = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("date");
    let format_datetime = crate::policy::builtins::time::format_datetime;
    assert_eq!(format_datetime(&fraction, "o"), "2023-11-14T22:13:20.1234567Z");
    assert_eq!(format_datetime(&fraction, "HH:mm:ss.fffffff"), "22:13:20.1234567");
    let leap_second = chrono::DateTime::from_timestamp(1_700_000_039, 1_500_000_000).expect("date");
    // chrono's leap-second nanoseconds (1e9 and above) still give seven fraction digits.
    let leap = format_datetime(&leap_second, "o");
    assert!(leap.starts_with("2023-11-14T22:13:") && leap.ends_with(".9999999Z") && leap.len() == 28, "{leap}");
    let elapsed = eval(vec![Op::Context, Op::Prop(Prop::Elapsed), Op::Prop(Prop::TotalMilliseconds)], vec![]);
    assert_eq!(elapsed.expect("ok"), "Double:1000");
}

#[test]
fn context_members_and_typed_variables() {
    let read = |props: &[Prop]| {
        let mut ops = vec![Op::Context];
        ops.extend(props.iter().map(|p| Op::Prop(*p)));
        eval(ops, vec![])
    };
    assert_eq!(read(&[Prop::Request, Prop::OriginalUrl, Prop::Path]).expect("ok"), "/echo/users/42");
    assert_eq!(read(&[Prop::Request, Prop::Url, Prop::Path]).expect("ok"), "/api/users/42");
    assert_eq!(read(&[Prop::Request, Prop::Url, Prop::Host]).expect("ok"), "backend");
    assert_eq!(read(&[Prop::Request, Prop::OriginalUrl, Prop::QueryString]).expect("ok"), "?x=1&y=two");
    assert_eq!(read(&[Prop::Request, Prop::IpAddress]).expect("ok"), "10.1.2.3");
    assert_eq!(read(&[Prop::Operation, Prop::Id]).expect("ok"), "get-user");
    assert_eq!(read(&[Prop::Deployment, Prop::Region]).expect("ok"), "east us");
    assert_eq!(read(&[Prop::Subscription]).expect("ok"), "null");
    let matched = eval(
        vec![Op::Context, Op::Prop(Prop::Request), Op::Prop(Prop::MatchedParameters), Op::Const(0), Op::Index],
        vec![s("id")],
    );
    assert_eq!(matched.expect("ok"), "42");
    let query = eval(
        vec![
            Op::Context,
            Op::Prop(Prop::Request),
            Op::Prop(Prop::OriginalUrl),
            Op::Prop(Prop::Query),
            Op::Const(0),
            Op::Call(Builtin::GetValueOrDefault, 2),
        ],
        vec![s("y")],
    );
    assert_eq!(query.expect("ok"), "two");
    // set-variable n = "text"; GetValueOrDefault<int>("n", 0) fails; <string> works.
    let typed = |t: ValueType| {
        eval(
            vec![
                Op::Const(1),
                Op::SetVariable { name: 0 },
                Op::Context,
                Op::Prop(Prop::Variables),
                Op::Const(0),
                Op::Int(0),
                Op::Const(2),
                Op::Call(Builtin::GetValueOrDefaultTyped, 4),
            ],
            vec![s("n"), s("text"), ty(t)],
        )
    };
    assert!(typed(ValueType::Int).is_err());
    assert_eq!(typed(ValueType::String).expect("ok"), "text");
}

#[test]
fn jwt_and_basic_credentials() {
    use base64::Engine as _;
    let part = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let token = format!(
        "Bearer {}.{}.sig",
        part(r#"{"alg":"HS256"}"#),
        part(r#"{"sub":"alice","aud":["a","b"],"exp":1700000000}"#)
    );
    let sub = eval(vec![Op::Const(0), Op::Call(Builtin::AsJwt, 1), Op::Prop(Prop::Subject)], vec![s(&token)]);
    assert_eq!(sub.expect("ok"), "alice");
    let aud = eval(
        vec![
            Op::Const(0),
            Op::Call(Builtin::AsJwt, 1),
            Op::Prop(Prop::Claims),
            Op::Const(1),
            Op::Const(2),
            Op::Call(Builtin::GetValueOrDefaultWith, 3),
        ],
        vec![s(&token), s("aud"), s("n/a")],
    );
    assert_eq!(aud.expect("ok"), "a,b");
    assert_eq!(call(Builtin::AsJwt, &[s("not a token")]).expect("ok"), "null");
    let user = eval(
        vec![Op::Const(0), Op::Call(Builtin::AsBasic, 1), Op::Prop(Prop::UserId)],
        vec![s("Basic dXNlcjpwYTpzcw==")],
    );
    assert_eq!(user.expect("ok"), "user");
}

#[test]
fn foreach_over_an_array_counts_elements() {
    // n = 0; foreach (var x in new[]{"a","b","c"}) n = n + 1;
    let ops = vec![
        Op::Int(0),
        Op::StoreLocal(1),
        Op::Const(0),
        Op::Const(0),
        Op::Const(0),
        Op::MakeArray(3),
        Op::IterInit(0),
        Op::IterNext(0, 13),
        Op::Pop,
        Op::LoadLocal(1),
        Op::Int(1),
        Op::Add,
        Op::StoreLocal(1),
        Op::Jump(7),
        Op::LoadLocal(1),
    ];
    // Fix the jump: IterNext exits to op 14 (LoadLocal 1).
    let mut ops = ops;
    ops[7] = Op::IterNext(0, 14);
    ops[13] = Op::Jump(7);
    assert_eq!(eval(ops, vec![s("x")]).expect("ok"), "Int32:3");
}

#[test]
fn jobject_add_takes_properties_once() {
    // var o = new JObject(); o.Add(new JProperty("a", 1)); o.Add(new JProperty("b", "x")); o.ToString(Formatting.None)
    let add = |name: u32| {
        [
            Op::LoadLocal(0),
            Op::Const(name),
            Op::Int(1),
            Op::Call(Builtin::JPropertyNew, 2),
            Op::Call(Builtin::JAdd, 2),
            Op::Pop,
        ]
    };
    let mut ops = vec![Op::Call(Builtin::JObjectNew, 0), Op::StoreLocal(0)];
    ops.extend(add(0));
    ops.extend(add(1));
    ops.extend([Op::LoadLocal(0), Op::Call(Builtin::JToStringCompact, 1)]);
    assert_eq!(eval(ops, vec![s("a"), s("b")]).expect("ok"), r#"{"a":1,"b":1}"#);
    // The same name twice fails, as Newtonsoft's JObject.Add does.
    let mut twice = vec![Op::Call(Builtin::JObjectNew, 0), Op::StoreLocal(0)];
    twice.extend(add(0));
    twice.extend(add(0));
    twice.extend([Op::LoadLocal(0), Op::Call(Builtin::JToStringCompact, 1)]);
    let error = eval(twice, vec![s("a")]).expect_err("duplicate");
    assert!(error.last_error.message.contains("same name"), "{}", error.last_error.message);
}

#[test]
fn request_certificate_is_null_without_mtls_and_has_its_members_with() {
    let read = |certificate: Option<crate::tls::ClientCertificate>, prop: Option<Prop>| {
        let mut ops = vec![Op::Context, Op::Prop(Prop::Request), Op::Prop(Prop::Certificate)];
        ops.extend(prop.map(Op::Prop));
        eval_with(|fixture| fixture.client_certificate = certificate, ops, vec![])
    };
    assert_eq!(read(None, None).expect("ok"), "null");
    let certificate = crate::tls::ClientCertificate {
        thumbprint: "AB12".into(),
        subject: "CN=client".into(),
        issuer: "CN=ca".into(),
        serial_number: "01".into(),
        not_before: chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("date"),
        not_after: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("date"),
        common_name: Some("client".into()),
        dns_names: Vec::new(),
        chain: Vec::new(),
        verdict: std::cell::Cell::new(None),
    };
    let member = |prop| read(Some(certificate.clone()), Some(prop)).expect("ok");
    assert_eq!(member(Prop::Thumbprint), "AB12");
    assert_eq!(member(Prop::Subject), "CN=client");
    assert_eq!(member(Prop::Issuer), "CN=ca");
    assert_eq!(member(Prop::SerialNumber), "01");
    assert!(member(Prop::NotAfter).starts_with("DateTime:"), "{}", member(Prop::NotAfter));
    // Reading a member of a missing certificate fails as a null dereference does in APIM.
    assert!(read(None, Some(Prop::Thumbprint)).is_err());
}

#[test]
fn request_certificate_verify_checks_dates_trust_and_revocation() {
    use crate::tls::client_trust::tests::{Pki, trust};
    let pki = Pki::new("CA one");
    let verify = |certificate: crate::tls::ClientCertificate, builtin: Builtin| {
        let ops = vec![Op::Context, Op::Prop(Prop::Request), Op::Prop(Prop::Certificate), Op::Call(builtin, 1)];
        let trust = trust(&pki, vec![pki.crl(&[9])]);
        eval_with(
            |fixture| {
                fixture.client_certificate = Some(certificate);
                fixture.client_trust = trust;
            },
            ops,
            vec![],
        )
        .expect("ok")
    };
    // The fixture's clock is 2024-05-06: certificates valid from ten years back cover it.
    let good = pki.issue("client", 1, (-3650, 30));
    assert_eq!(verify(good.clone(), Builtin::CertificateVerify), "Boolean:True");
    assert_eq!(verify(good, Builtin::CertificateVerifyNoRevocation), "Boolean:True");
    let revoked = pki.issue("revoked", 9, (-3650, 30));
    assert_eq!(verify(revoked.clone(), Builtin::CertificateVerify), "Boolean:False");
    assert_eq!(verify(revoked, Builtin::CertificateVerifyNoRevocation), "Boolean:True");
    let stranger = Pki::new("CA one").issue("client", 1, (-3650, 30));
    assert_eq!(verify(stranger, Builtin::CertificateVerifyNoRevocation), "Boolean:False");
    let expired_then = pki.issue("new", 2, (-1, 30));
    assert_eq!(
        verify(expired_then, Builtin::CertificateVerifyNoRevocation),
        "Boolean:False",
        "not valid on the fixture's date"
    );
}
