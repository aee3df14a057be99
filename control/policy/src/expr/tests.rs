//! Tests of the expression compiler: emitted ops, verification, types and errors.

use portcullis_contract::program::{Builtin, Const, Op, Program, Prop, ValueType};

use super::*;

/// Compiles `source`, pops its value, and verifies the program.
fn program(source: &str, expect: Expect) -> Result<(Program, StaticType), ExprError> {
    let mut code = CodeBuilder::new();
    let ty = compile(&mut code, source, expect)?;
    code.emit(Op::Pop);
    let program = code.finish().unwrap_or_else(|e| panic!("{source}: does not verify: {e}"));
    Ok((program, ty))
}

fn ok(source: &str) -> (Program, StaticType) {
    program(source, Expect::Any)
        .unwrap_or_else(|e| panic!("{source}: {} at {}..{}", e.message, e.offset, e.offset + e.len))
}

fn ops(source: &str) -> Vec<Op> {
    let (mut program, _) = ok(source);
    program.ops.pop();
    program.ops
}

fn ty(source: &str) -> StaticType {
    ok(source).1
}

fn err(source: &str) -> ExprError {
    match program(source, Expect::Any) {
        Ok(_) => panic!("{source}: compiled, but an error was expected"),
        Err(e) => e,
    }
}

/// The error's offending text.
fn blamed(source: &str) -> (String, String) {
    let e = err(source);
    (source.get(e.offset..e.offset + e.len).unwrap_or("<out of range>").to_owned(), e.message)
}

const REPRESENTATIVE: &[&str] = &[
    r#"@(context.Request.Headers.GetValueOrDefault("X-Forwarded-For"))"#,
    r#"@(Regex.IsMatch(context.Request.OriginalUrl.Path, @"^\${apim_base_path}$", RegexOptions.IgnoreCase, TimeSpan.FromMilliseconds(500)))"#,
    r#"@(context.Request.Body.As<string>(preserveContent: true))"#,
    r#"@(context.Request.Headers.GetValueOrDefault("X-Environment", "").Equals("prod"))"#,
    r#"@(context.Request.Headers.GetValueOrDefault("deployment","").Contains("blue")?"/beta":"")"#,
    r#"@(context.Variables.GetValueOrDefault<string>("enable_wisp_dismantling_switch", "").Equals("true"))"#,
    r#"@(context.Request.Headers.GetValueOrDefault("Authorization", "").Replace("Bearer ",""))"#,
    r#"@(Array.Exists(context.Variables.GetValueOrDefault("paymentMethodsOperationId","").Split(','), operations => operations == context.Operation.Id))"#,
    r#"@(context.Request.MatchedParameters["creditorinstitutioncode"])"#,
    r#"@(context.Request.OriginalUrl.Query.GetValueOrDefault("recaptcha"))"#,
    r#"@(context.User == null || !context.User.Groups.Select(g => g.Id).Contains("ecommerce-methods-full-read"))"#,
    r#"@(context.Request.Headers.GetValueOrDefault("Authorization","").AsJwt()?.Subject)"#,
    r#"@(context.Response.StatusCode != 429)"#,
    r#"@((string)((IResponse)context.Variables["verifica"]).Body.As<string>(preserveContent: true))"#,
    r#"@(context.Deployment.Region.Equals("east us", System.StringComparison.InvariantCultureIgnoreCase))"#,
    r#"@("SAPPrincipal" + context.Request.Headers.GetValueOrDefault("Authorization","").AsJwt()?.Subject)"#,
    r#"@{ var response = context.Response.Body.As<JObject>();
       foreach (var key in new [] {"current", "minutely", "hourly", "daily", "alerts"}) { response.Property (key).Remove (); }
       return response.ToString(); }"#,
    r#"@(context.Response.StatusCode == 429 || context.Response.StatusCode == 503)"#,
    r#"@(context.Subscription.Id)"#,
    r#"@(((Jwt)context.Variables["jwt-token"]).Claims.GetValueOrDefault("email", "n/a"))"#,
];

#[test]
fn representative_expressions_compile_and_verify() {
    for source in REPRESENTATIVE {
        ok(source);
    }
}

/// Representative expression 15: XML is not in the instruction set yet (see the report).
#[test]
fn xml_bodies_are_refused_with_a_clear_message() {
    let (text, message) = blamed(
        r#"@{ XElement doc = context.Request.Body.As<XElement>(preserveContent: true); return doc.ToString(); }"#,
    );
    assert_eq!(text, "XElement");
    assert!(message.contains("XML (`XElement`) is not supported"), "{message}");
}

#[test]
fn representative_types() {
    let types: Vec<StaticType> = REPRESENTATIVE.iter().map(|s| ty(s)).collect();
    use StaticType as T;
    assert_eq!(
        types,
        [
            T::String,
            T::Bool,
            T::String,
            T::Bool,
            T::String,
            T::Bool,
            T::String,
            T::Bool,
            T::String,
            T::String,
            T::Bool,
            T::String,
            T::Bool,
            T::String,
            T::Bool,
            T::String,
            T::String,
            T::Bool,
            T::String,
            T::String,
        ]
    );
}

#[test]
fn is_expression_looks_at_the_trimmed_start() {
    assert!(is_expression("@(1)"));
    assert!(is_expression("  @{ return 1; }"));
    assert!(!is_expression("plain"));
    assert!(!is_expression("a@(1)"));
    assert!(!is_expression("@x"));
}

// ---- literals and the lexer

#[test]
fn literals() {
    assert_eq!(ops("@(null)"), [Op::Null]);
    assert_eq!(ops("@(true)"), [Op::Bool(true)]);
    assert_eq!(ops("@(42)"), [Op::Int(42)]);
    assert_eq!(ops("@(-42)"), [Op::Int(-42)]);
    assert_eq!(ops("@(0x10)"), [Op::Int(16)]);
    assert_eq!(ops("@(10_000L)"), [Op::Int(10_000)]);
    let (program, t) = ok("@(5000000000)");
    assert_eq!((program.consts, t), (vec![Const::Int(5_000_000_000)], StaticType::Int));
    for (source, value) in [("@(1.5)", 1.5), ("@(1e3)", 1000.0), ("@(2.5m)", 2.5), ("@(-0.25)", -0.25), ("@(3d)", 3.0)]
    {
        let (program, t) = ok(source);
        assert_eq!((program.consts, t), (vec![Const::Double(value)], StaticType::Double), "{source}");
    }
    let (program, t) = ok("@('x')");
    assert_eq!((program.consts, t), (vec![Const::Str("x".into())], StaticType::Char));
}

fn string_const(source: &str) -> String {
    match ok(source).0.consts.as_slice() {
        [Const::Str(s)] => s.clone(),
        other => panic!("{source}: {other:?}"),
    }
}

#[test]
fn string_escapes() {
    assert_eq!(string_const(r#"@("a\tb\u0041\"\\\x41\n")"#), "a\tbA\"\\A\n");
    assert_eq!(string_const(r#"@(@"C:\path ""quoted""")"#), "C:\\path \"quoted\"");
    assert_eq!(string_const(r#"@('\'')"#), "'");
    assert_eq!(string_const("@(\"é ✓\")"), "é ✓");
}

#[test]
fn comments_are_skipped() {
    assert_eq!(ty("@{ // a comment\n /* block\n comment */ return 1; }"), StaticType::Int);
}

#[test]
fn interpolated_strings_concatenate() {
    let (program, t) = ok(r#"@($"a{1}b{context.Request.Method}")"#);
    assert_eq!(t, StaticType::String);
    assert_eq!(
        program.ops[..program.ops.len() - 1],
        [
            Op::Const(0),
            Op::Int(1),
            Op::Const(1),
            Op::Context,
            Op::Prop(Prop::Request),
            Op::Prop(Prop::Method),
            Op::Concat(4)
        ]
    );
    assert_eq!(program.consts, [Const::Str("a".into()), Const::Str("b".into())]);
    assert_eq!(ops(r#"@($"plain")"#), [Op::Const(0)]);
    assert_eq!(ops(r#"@($"")"#), [Op::Const(0)]);
    assert_eq!(string_const(r#"@($"{{x}}")"#), "{x}");
    assert_eq!(string_const(r#"@($@"a""b{{")"#), "a\"b{");
    assert_eq!(string_const(r#"@(@$"\d")"#), "\\d");
}

#[test]
fn interpolation_holes_nest_and_take_formats() {
    let (program, _) = ok(r#"@($"{$"{1}"}-{context.Response.StatusCode:D4}")"#);
    assert_eq!(
        program.ops[..program.ops.len() - 1],
        [
            Op::Int(1),
            Op::Concat(1),
            Op::Const(0),
            Op::Context,
            Op::Prop(Prop::Response),
            Op::Prop(Prop::StatusCode),
            Op::Const(1),
            Op::Call(Builtin::ToStringFormat, 2),
            Op::Concat(3)
        ]
    );
    assert_eq!(program.consts, [Const::Str("-".into()), Const::Str("D4".into())]);
    // A string with braces inside a hole.
    ok(r#"@($"{("}" + "{")}")"#);
    // Conditionals must be parenthesized in holes, as in C#.
    ok(r#"@($"{(true ? "a" : "b")}")"#);
}

#[test]
fn lexer_errors_point_at_the_literal() {
    let (text, message) = blamed(r#"@("abc)"#);
    assert_eq!((text.as_str(), message.as_str()), (r#""abc)"#, "unterminated string literal"));
    assert!(blamed("@(@\"abc)").1.contains("unterminated verbatim"));
    assert!(blamed(r#"@($"a{b")"#).1.contains("unterminated"));
    let (text, message) = blamed(r#"@($"a}b")"#);
    assert_eq!(text, "}");
    assert!(message.contains("doubled"), "{message}");
    let (text, message) = blamed(r#"@("\q")"#);
    assert_eq!(text, r"\q");
    assert!(message.contains("unrecognized escape"));
    assert!(blamed("@('ab')").1.contains("character literal"));
    assert!(blamed("@(99999999999999999999)").1.contains("too large"));
    let (text, _) = blamed("@(1 # 2)");
    assert_eq!(text, "#");
    assert!(blamed("@{ return 1; /* open }").1.contains("unterminated comment"));
}

#[test]
fn framing_errors() {
    assert!(err("@()").message.contains("empty expression"));
    assert!(err("1 + 2").message.contains("starts with `@(`"));
    assert!(err("@(1 + 2").message.contains("missing its closing `)`"));
    assert!(err("@{ return 1;").message.contains("missing its closing `}`"));
    let (text, message) = blamed("@(1 + 2) + 3)");
    assert_eq!(text, "+ 3)");
    assert!(message.contains("must be the whole value"), "{message}");
    let (text, message) = blamed("@{ return 1; } x");
    assert_eq!(text, "x");
    assert!(message.contains("must be the whole value"), "{message}");
    assert!(err("@(f(1)").message.contains("missing its closing `)`"));
    assert!(err("@{ if (true) { return 1; }").message.contains("missing its closing `}`"));
    // Leading and trailing white space around the expression is fine.
    ok("  @(1)\n ");
}

// ---- operators

#[test]
fn arithmetic_precedence_and_types() {
    assert_eq!(ops("@(1 + 2 * 3)"), [Op::Int(1), Op::Int(2), Op::Int(3), Op::Mul, Op::Add]);
    assert_eq!(ops("@((1 + 2) * 3)"), [Op::Int(1), Op::Int(2), Op::Add, Op::Int(3), Op::Mul]);
    assert_eq!(ops("@(10 - 4 - 3)"), [Op::Int(10), Op::Int(4), Op::Sub, Op::Int(3), Op::Sub]);
    assert_eq!(ops("@(7 % 3 / 1)"), [Op::Int(7), Op::Int(3), Op::Rem, Op::Int(1), Op::Div]);
    assert_eq!(ty("@(1 + 2.5)"), StaticType::Double);
    assert_eq!(ty(r#"@("a" + 1)"#), StaticType::String);
    assert_eq!(ty(r#"@(context.Variables["x"] + 1)"#), StaticType::Object);
    assert_eq!(ty("@((DateTime.UtcNow - context.Timestamp).TotalSeconds)"), StaticType::Double);
    assert_eq!(ty("@(context.Timestamp + TimeSpan.FromSeconds(5))"), StaticType::DateTime);
    assert_eq!(ops("@(-context.Response.StatusCode)").last(), Some(&Op::Neg));
}

#[test]
fn comparisons_and_logic() {
    assert_eq!(ops("@(1 < 2)"), [Op::Int(1), Op::Int(2), Op::Lt]);
    assert_eq!(ops("@(1 >= 2)"), [Op::Int(1), Op::Int(2), Op::Ge]);
    assert_eq!(ops("@(!true)"), [Op::Bool(true), Op::Not]);
    assert_eq!(ops("@(true && false)"), [Op::Bool(true), Op::Dup, Op::JumpIfFalse(5), Op::Pop, Op::Bool(false)]);
    assert_eq!(ops("@(true || false)"), [Op::Bool(true), Op::Dup, Op::JumpIfTrue(5), Op::Pop, Op::Bool(false)]);
    // `&&` binds tighter than `||`.
    let nested = ops("@(true || false && true)");
    assert_eq!(nested.iter().filter(|op| matches!(op, Op::JumpIfFalse(_))).count(), 1);
    assert_eq!(ty(r#"@(context.Request.Method == "GET")"#), StaticType::Bool);
    assert_eq!(ty(r#"@(context.Variables["n"] > 3)"#), StaticType::Bool);
}

#[test]
fn operator_type_errors() {
    let (text, message) = blamed(r#"@("a" - 1)"#);
    assert_eq!(text, r#""a" - 1"#);
    assert_eq!(message, "operator `-` cannot be applied to string and int");
    assert!(err(r#"@("a" < "b")"#).message.contains("operator `<` cannot be applied to string and string"));
    assert!(err(r#"@("a" == 1)"#).message.contains("operator `==` cannot be applied to string and int"));
    let (text, message) = blamed(r#"@(!context.Request.Method)"#);
    assert_eq!(text, "context.Request.Method");
    assert!(message.contains("needs a bool"), "{message}");
    let (text, message) = blamed(r#"@(context.Request.Method && true)"#);
    assert_eq!(text, "context.Request.Method");
    assert!(message.contains("must be a bool"), "{message}");
    assert!(err(r#"@("a" ^ 1)"#).message.contains("operator `^` cannot be applied to string and int"));
    assert!(err(r#"@(~"a")"#).message.contains("operator `~` needs an integer"));
}

#[test]
fn conditional_and_coalesce() {
    assert_eq!(ops(r#"@(true ? 1 : 2)"#), [Op::Bool(true), Op::JumpIfFalse(4), Op::Int(1), Op::Jump(5), Op::Int(2)]);
    assert_eq!(ty(r#"@(true ? 1 : 2.5)"#), StaticType::Double);
    assert_eq!(ty(r#"@(true ? "a" : null)"#), StaticType::String);
    assert_eq!(ty(r#"@(true ? "a" : 1)"#), StaticType::Object);
    assert_eq!(
        ops(r#"@(context.Variables["x"] ?? "d")"#),
        [Op::Context, Op::Prop(Prop::Variables), Op::Const(0), Op::Index, Op::JumpIfNotNull(7), Op::Pop, Op::Const(1)]
    );
    assert_eq!(ty(r#"@((string)context.Variables["x"] ?? "d")"#), StaticType::String);
    let (text, message) = blamed("@(1 ? 2 : 3)");
    assert_eq!(text, "1");
    assert!(message.contains("a condition must be a bool"), "{message}");
}

#[test]
fn null_conditional_jumps_to_the_end_of_the_whole_chain() {
    assert_eq!(
        ops("@(context.Subscription?.Key.Length)"),
        [Op::Context, Op::Prop(Prop::Subscription), Op::JumpIfNull(5), Op::Prop(Prop::Key), Op::Prop(Prop::Length)]
    );
    assert_eq!(
        ops(r#"@(context.Subscription?.Key ?? "anonymous")"#),
        [
            Op::Context,
            Op::Prop(Prop::Subscription),
            Op::JumpIfNull(4),
            Op::Prop(Prop::Key),
            Op::JumpIfNotNull(7),
            Op::Pop,
            Op::Const(0)
        ]
    );
    // `?[` on an indexer; `?.` on a method call with arguments.
    assert_eq!(
        ops(r#"@(context.Request.Headers?["a"])"#),
        [Op::Context, Op::Prop(Prop::Request), Op::Prop(Prop::Headers), Op::JumpIfNull(6), Op::Const(0), Op::Index]
    );
    let chain = ops(r#"@(context.Request.Body?.As<JObject>()?["a"]?.ToString())"#);
    assert_eq!(chain.iter().filter(|op| matches!(op, Op::JumpIfNull(t) if *t as usize == chain.len())).count(), 3);
    // A chain inside an argument ends at the argument.
    let inner = ops(r#"@(string.IsNullOrEmpty(context.Subscription?.Id))"#);
    assert_eq!(inner[2], Op::JumpIfNull(4));
}

#[test]
fn casts_as_and_is() {
    assert_eq!(
        ops(r#"@((int)context.Variables["n"])"#),
        [Op::Context, Op::Prop(Prop::Variables), Op::Const(0), Op::Index, Op::Cast(ValueType::Int)]
    );
    for (source, vt) in [
        (r#"@((string)context.Variables["x"])"#, ValueType::String),
        (r#"@((bool)context.Variables["x"])"#, ValueType::Bool),
        (r#"@((JObject)context.Variables["x"])"#, ValueType::JObject),
        (r#"@((JArray)context.Variables["x"])"#, ValueType::JArray),
        (r#"@((IResponse)context.Variables["x"])"#, ValueType::Response),
        (r#"@((Jwt)context.Variables["x"])"#, ValueType::Jwt),
        (r#"@((string[])context.Variables["x"])"#, ValueType::Array),
        (r#"@((byte[])context.Variables["x"])"#, ValueType::Bytes),
        (r#"@((System.String)context.Variables["x"])"#, ValueType::String),
        (r#"@((long)1.5)"#, ValueType::Int),
        (r#"@((double)1)"#, ValueType::Double),
    ] {
        assert_eq!(ops(source).last(), Some(&Op::Cast(vt)), "{source}");
    }
    // A cast to the static type is free; JSON converts explicitly to primitives.
    assert_eq!(ops(r#"@((string)"a")"#), [Op::Const(0)]);
    assert_eq!(ty(r#"@((string)JObject.Parse("{}")["a"])"#), StaticType::String);
    assert_eq!(ops(r#"@(context.Variables["x"] as string)"#).last(), Some(&Op::As(ValueType::String)));
    assert_eq!(
        ops(r#"@(context.Variables["x"] is JObject)"#)[4..],
        [Op::Int(ValueType::JObject as i32), Op::Call(Builtin::IsType, 2)]
    );
    assert_eq!(ops(r#"@(context.Variables["x"] is null)"#)[4..], [Op::Null, Op::Eq]);
    assert_eq!(ty(r#"@{ if (context.Variables["x"] is string s) { return s.Length; } return 0; }"#), StaticType::Int);
}

#[test]
fn bad_casts_are_refused() {
    let (text, message) = blamed(r#"@((int)"abc")"#);
    assert_eq!(text, r#"(int)"abc""#);
    assert_eq!(message, "cannot convert string to int");
    assert!(err(r#"@((JObject)context.Response.StatusCode)"#).message.contains("cannot convert int to JObject"));
    let (text, message) = blamed(r#"@((Widget)context.Variables["x"])"#);
    assert_eq!(text, "Widget");
    assert!(message.contains("the type `Widget` is not supported"), "{message}");
    // A parenthesized name followed by an operator is not a cast.
    assert_eq!(ty("@{ var x = 1; return (x) + 1; }"), StaticType::Int);
}

// ---- the context object graph

#[test]
fn context_members_resolve_to_props() {
    for (source, last, t) in [
        ("@(context.Api.Id)", Prop::Id, StaticType::String),
        ("@(context.Api.ServiceUrl.Host)", Prop::Host, StaticType::String),
        ("@(context.Api.SubscriptionKeyParameterNames.Header)", Prop::HeaderName, StaticType::String),
        ("@(context.Deployment.GatewayId)", Prop::GatewayId, StaticType::String),
        ("@(context.Elapsed.TotalMilliseconds)", Prop::TotalMilliseconds, StaticType::Double),
        ("@(context.LastError.Path)", Prop::ErrorPath, StaticType::String),
        ("@(context.LastError.Reason)", Prop::Reason, StaticType::String),
        ("@(context.Operation.UrlTemplate)", Prop::UrlTemplate, StaticType::String),
        ("@(context.Product.Name)", Prop::Name, StaticType::String),
        ("@(context.Request.IpAddress)", Prop::IpAddress, StaticType::String),
        ("@(context.Request.Url.Port)", Prop::Port, StaticType::Int),
        ("@(context.Request.Url.QueryString)", Prop::QueryString, StaticType::String),
        ("@(context.RequestId)", Prop::RequestId, StaticType::Guid),
        ("@(context.Response.StatusReason)", Prop::StatusReason, StaticType::String),
        ("@(context.Subscription.PrimaryKey)", Prop::PrimaryKey, StaticType::String),
        ("@(context.Timestamp.Year)", Prop::Year, StaticType::Int),
        ("@(context.Tracing)", Prop::Tracing, StaticType::Bool),
        ("@(context.User.Email)", Prop::Email, StaticType::String),
        ("@(context.Request.Headers.Count)", Prop::Count, StaticType::Int),
    ] {
        let program_ops = ops(source);
        assert_eq!((program_ops.last(), ty(source)), (Some(&Op::Prop(last)), t), "{source}");
    }
    assert_eq!(ops("@(context.Request.Headers.Keys)").last(), Some(&Op::Call(Builtin::DictKeys, 1)));
    assert_eq!(ty("@(context.Request.Headers)"), StaticType::multi_value_dictionary());
    assert_eq!(ty(r#"@(context.Request.Headers["a"])"#), StaticType::array_of(StaticType::String));
}

#[test]
fn unknown_members_suggest_the_right_name() {
    let (text, message) = blamed(r#"@(context.Request.Hedaers.GetValueOrDefault("a"))"#);
    assert_eq!(text, "Hedaers");
    assert_eq!(message, "`context.Request.Hedaers`: IRequest has no member `Hedaers` (did you mean `Headers`?)");
    let (text, message) = blamed("@(context.Reqest.Method)");
    assert_eq!(text, "Reqest");
    assert!(message.contains("did you mean `Request`?"), "{message}");
    let (text, message) = blamed("@(contxt.Request.Method)");
    assert_eq!(text, "contxt");
    assert_eq!(message, "`contxt` does not exist in the current context (did you mean `context`?)");
    let (_, message) = blamed("@(context.Deployment.ServiceId)");
    assert!(message.contains("IDeployment.ServiceId is not supported yet"), "{message}");
    let (text, message) = blamed(r#"@(context.Request.Method.Lenght)"#);
    assert_eq!(text, "Lenght");
    assert!(message.contains("string has no member `Lenght` (did you mean `Length`?)"), "{message}");
    let (text, message) = blamed(r#"@("a".Conatins("b"))"#);
    assert_eq!(text, "Conatins");
    assert!(message.contains("did you mean `Contains`?"), "{message}");
    let (text, message) = blamed(r#"@(Regex.IsMach("a", "b"))"#);
    assert_eq!(text, "IsMach");
    assert!(message.contains("did you mean `IsMatch`?"), "{message}");
    let (text, message) = blamed(r#"@(Foo.Bar("a"))"#);
    assert_eq!(text, "Foo");
    assert!(message.contains("not available in policy expressions"), "{message}");
    assert!(err("@(undefinedName)").message.contains("does not exist"));
    assert!(err("@(string)").message.contains("is a type, not a value"));
}

#[test]
fn object_members_resolve_by_name_at_run_time() {
    assert_eq!(ops(r#"@(context.Variables["x"].Length)"#).last(), Some(&Op::Prop(Prop::Length)));
    assert_eq!(ty(r#"@(context.Variables["x"].Length)"#), StaticType::Object);
    assert!(err(r#"@(context.Variables["x"].Nope)"#).message.contains("no known type has a member `Nope`"));
    // Unambiguous methods resolve by name and arity; ambiguous ones ask for a cast.
    assert_eq!(ops(r#"@(context.Variables["x"].StartsWith("a"))"#).last(), Some(&Op::Call(Builtin::StrStartsWith, 2)));
    let (text, message) = blamed(r#"@(context.Variables["x"].Contains("a"))"#);
    assert_eq!(text, "Contains");
    assert!(message.contains("ambiguous; cast it first"), "{message}");
    assert_eq!(
        ops(r#"@(((string)context.Variables["x"]).Contains("a"))"#).last(),
        Some(&Op::Call(Builtin::StrContains, 2))
    );
}

// ---- methods

#[test]
fn string_methods() {
    for (source, builtin, argc) in [
        (r#"@("a".Contains("b"))"#, Builtin::StrContains, 2),
        (r#"@("a".Contains("b", StringComparison.OrdinalIgnoreCase))"#, Builtin::StrContainsComparison, 3),
        (r#"@("a".StartsWith("b"))"#, Builtin::StrStartsWith, 2),
        (r#"@("a".EndsWith("b", StringComparison.Ordinal))"#, Builtin::StrEndsWithComparison, 3),
        (r#"@("a".IndexOf('b'))"#, Builtin::StrIndexOf, 2),
        (r#"@("a".Substring(1))"#, Builtin::StrSubstring, 2),
        (r#"@("a".Substring(1, 2))"#, Builtin::StrSubstringLength, 3),
        (r#"@("a".ToLower())"#, Builtin::StrToLower, 1),
        (r#"@("a".ToUpperInvariant())"#, Builtin::StrToUpper, 1),
        (r#"@("a".Trim())"#, Builtin::StrTrim, 1),
        (r#"@("a".PadLeft(5, '0'))"#, Builtin::StrPadLeft, 3),
        (r#"@("a".Equals("b"))"#, Builtin::Equals, 2),
        (r#"@("a".ToString())"#, Builtin::ToString, 1),
        (r#"@(string.IsNullOrEmpty("a"))"#, Builtin::StrIsNullOrEmpty, 1),
        (r#"@(String.IsNullOrWhiteSpace("a"))"#, Builtin::StrIsNullOrWhiteSpace, 1),
        (r#"@(int.Parse("1"))"#, Builtin::IntParse, 1),
        (r#"@(Int32.Parse("1"))"#, Builtin::IntParse, 1),
        (r#"@(System.Int32.Parse("1"))"#, Builtin::IntParse, 1),
        (r#"@(5.ToString("D3"))"#, Builtin::ToStringFormat, 2),
        (r#"@("a".Trim(',', ' '))"#, Builtin::StrTrimChars, 2),
        (r#"@("a".TrimEnd('/'))"#, Builtin::StrTrimEnd, 2),
    ] {
        assert_eq!(ops(source).last(), Some(&Op::Call(builtin, argc)), "{source}");
    }
    assert_eq!(ty(r#"@("abc".Length)"#), StaticType::Int);
    assert_eq!(ty(r#"@("abc"[0])"#), StaticType::Char);
}

#[test]
fn split_packs_separators() {
    assert_eq!(
        ops(r#"@("a,b".Split(','))"#),
        [Op::Const(0), Op::Const(1), Op::MakeArray(1), Op::Call(Builtin::StrSplit, 2)]
    );
    assert_eq!(
        ops(r#"@("a".Split(',', ';'))"#)[1..],
        [Op::Const(1), Op::Const(2), Op::MakeArray(2), Op::Call(Builtin::StrSplit, 2)]
    );
    assert_eq!(
        ops(r#"@("a".Split(new[] {','}))"#)[1..],
        [Op::Const(1), Op::MakeArray(1), Op::Call(Builtin::StrSplit, 2)]
    );
    assert_eq!(
        ops(r#"@("a".Split(new string[] {", "}, StringSplitOptions.RemoveEmptyEntries))"#)[1..],
        [Op::Const(1), Op::MakeArray(1), Op::Int(1), Op::Call(Builtin::StrSplitOptions, 3)]
    );
    assert_eq!(ops(r#"@("a b".Split())"#)[1..], [Op::MakeArray(0), Op::Call(Builtin::StrSplit, 2)]);
    assert_eq!(ty(r#"@("a".Split(','))"#), StaticType::array_of(StaticType::String));
    assert_eq!(
        ops(r#"@("a,b,c".Split(',', 2))"#)[1..],
        [Op::Const(1), Op::MakeArray(1), Op::Int(2), Op::Int(0), Op::Call(Builtin::StrSplitCount, 4)]
    );
}

#[test]
fn method_arity_and_argument_errors() {
    let (text, message) = blamed(r#"@("a".Substring(1, 2, 3))"#);
    assert_eq!(text, r#""a".Substring(1, 2, 3)"#);
    assert_eq!(message, r#"`"a".Substring` takes 1 or 2 argument(s), not 3"#);
    let (text, message) = blamed(r#"@("a".StartsWith(1))"#);
    assert_eq!(text, "1");
    assert!(message.contains("expects string here, but `1` is int"), "{message}");
    assert!(err(r#"@(string.IsNullOrEmpty())"#).message.contains("takes 1 argument(s), not 0"));
    assert!(err(r#"@("a".ToUpper<string>())"#).message.contains("takes no type arguments"));
    assert!(err(r#"@("a".Contains(value: "b"))"#).message.contains("named arguments are not supported"));
    assert!(err(r#"@(Foo())"#).message.contains("is not a method"));
}

#[test]
fn dictionaries() {
    assert_eq!(
        ops(r#"@(context.Variables.ContainsKey("a"))"#),
        [Op::Context, Op::Prop(Prop::Variables), Op::Const(0), Op::Call(Builtin::ContainsKey, 2)]
    );
    // The default's type infers `T` on variables (APIM's generic GetValueOrDefault).
    assert_eq!(
        ops(r#"@(context.Variables.GetValueOrDefault("n", 0))"#)[2..],
        [Op::Const(0), Op::Int(0), Op::Int(ValueType::Int as i32), Op::Call(Builtin::GetValueOrDefaultTyped, 4)]
    );
    assert_eq!(ty(r#"@(context.Variables.GetValueOrDefault("n", 0))"#), StaticType::Int);
    assert_eq!(
        ops(r#"@(context.Variables.GetValueOrDefault<JObject>("n"))"#)[2..],
        [Op::Const(0), Op::Null, Op::Int(ValueType::JObject as i32), Op::Call(Builtin::GetValueOrDefaultTyped, 4)]
    );
    assert_eq!(ty(r#"@(context.Variables.GetValueOrDefault("n"))"#), StaticType::Object);
    assert_eq!(ty(r#"@(context.Request.MatchedParameters.GetValueOrDefault("id", ""))"#), StaticType::String);
    assert!(err(r#"@(context.Variables.GetValueOrDefault<int>("n", "x"))"#).message.contains("the default is string"));
}

#[test]
fn out_arguments_are_lowered() {
    let (program, t) = ok(r#"@{ if (context.Variables.TryGetValue("k", out var v)) { return v; } return "none"; }"#);
    assert_eq!(t, StaticType::Object);
    assert!(program.ops.contains(&Op::Call(Builtin::ContainsKey, 2)));
    assert!(program.ops.contains(&Op::Index));
    let (program, t) = ok(
        r#"@{ Jwt jwt; if (context.Request.Headers.GetValueOrDefault("Authorization", "").TryParseJwt(out jwt)) { return jwt.Subject; } return ""; }"#,
    );
    assert_eq!(t, StaticType::String);
    let at = program.ops.iter().position(|op| *op == Op::Call(Builtin::AsJwt, 1)).unwrap_or(0);
    assert_eq!(program.ops[at + 1..at + 5], [Op::Dup, Op::StoreLocal(1), Op::Null, Op::Ne]);
    assert_eq!(ty(r#"@(int.TryParse("1", out var n) ? n : -1)"#), StaticType::Int);
    assert!(ok(r#"@("x".TryParseBasic(out var c) ? c.UserId : "")"#).0.ops.contains(&Op::Call(Builtin::AsBasic, 1)));
    assert!(err(r#"@(int.TryParse("1", n))"#).message.contains("must be `out var name`"));
    assert!(err(r#"@(double.TryParse("1", d))"#).message.contains("must be `out var name`"));
}

#[test]
fn message_bodies() {
    for (source, t) in [
        ("@(context.Request.Body.As<JObject>())", StaticType::JObject),
        ("@(context.Request.Body.As<JArray>(true))", StaticType::JArray),
        ("@(context.Response.Body.As<byte[]>(preserveContent: false))", StaticType::Bytes),
    ] {
        assert_eq!(ty(source), t, "{source}");
    }
    assert_eq!(
        ops("@(context.Request.Body.AsFormUrlEncodedContent())")[3..],
        [Op::Bool(false), Op::Call(Builtin::BodyAsForm, 2)]
    );
    assert!(err("@(context.Request.Body.As())").message.contains("As needs one type argument"));
    assert!(err("@(context.Request.Body.As<int>())").message.contains("As<int>() is not supported"));
    assert!(err("@(context.Request.Body.As<string>(keep: true))").message.contains("`preserveContent: bool`"));
}

#[test]
fn json() {
    assert_eq!(ops(r#"@(JObject.Parse("{}"))"#), [Op::Const(0), Op::Call(Builtin::JObjectParse, 1)]);
    assert_eq!(ty(r#"@(JObject.Parse("{}"))"#), StaticType::JObject);
    assert_eq!(ty(r#"@(JObject.Parse("{}")["a"])"#), StaticType::JToken);
    assert_eq!(
        ops(r#"@(JObject.Parse("{}")["a"].Value<string>())"#)[4..],
        [Op::Int(ValueType::String as i32), Op::Call(Builtin::JToObject, 2)]
    );
    assert_eq!(
        ops(r#"@(JObject.Parse("{}").Value<int>("a"))"#)[2..],
        [Op::Const(1), Op::Int(ValueType::Int as i32), Op::Call(Builtin::JValueOf, 3)]
    );
    assert_eq!(
        ops(r#"@(JObject.Parse("{}").ToString(Formatting.None))"#)[2..],
        [Op::Call(Builtin::JToStringCompact, 1)]
    );
    assert_eq!(ops(r#"@(JsonConvert.SerializeObject(1))"#), [Op::Int(1), Op::Call(Builtin::JsonSerialize, 1)]);
    assert_eq!(
        ops(r#"@(JsonConvert.DeserializeObject<JObject>("{}"))"#)[1..],
        [Op::Call(Builtin::JsonDeserialize, 1), Op::Cast(ValueType::JObject)]
    );
    assert_eq!(ty(r#"@(JObject.Parse("{}").Property("a"))"#), StaticType::JProperty);
    assert_eq!(ty(r#"@(JObject.Parse("{}").SelectToken("$.a"))"#), StaticType::JToken);
    assert_eq!(ty(r#"@(((JArray)context.Variables["a"]).Count)"#), StaticType::Int);
}

#[test]
fn object_creation() {
    assert_eq!(ops("@(new JObject())"), [Op::Call(Builtin::JObjectNew, 0)]);
    assert_eq!(
        ops(r#"@(new JObject(new JProperty("a", 1)))"#),
        [
            Op::Call(Builtin::JObjectNew, 0),
            Op::StoreLocal(0),
            Op::LoadLocal(0),
            Op::Const(0),
            Op::Int(1),
            Op::Call(Builtin::JPropertyNew, 2),
            Op::Call(Builtin::JAdd, 2),
            Op::Pop,
            Op::LoadLocal(0)
        ]
    );
    assert_eq!(
        ops(r#"@(new JObject { { "a", 1 }, ["b"] = "c" })"#),
        [
            Op::Call(Builtin::JObjectNew, 0),
            Op::StoreLocal(0),
            Op::LoadLocal(0),
            Op::Const(0),
            Op::Int(1),
            Op::Call(Builtin::JAdd, 3),
            Op::Pop,
            Op::LoadLocal(0),
            Op::Const(1),
            Op::Const(2),
            Op::Call(Builtin::JSet, 3),
            Op::Pop,
            Op::LoadLocal(0)
        ]
    );
    assert_eq!(
        ops(r#"@(new List<string> { "a" })"#),
        [
            Op::Call(Builtin::ListNew, 0),
            Op::StoreLocal(0),
            Op::LoadLocal(0),
            Op::Const(0),
            Op::Call(Builtin::ListAdd, 2),
            Op::Pop,
            Op::LoadLocal(0)
        ]
    );
    assert_eq!(ty("@(new List<string>())"), StaticType::List(Box::new(StaticType::String)));
    assert_eq!(ty("@(new Dictionary<string, object>())"), StaticType::Dictionary(Box::new(StaticType::Object)));
    assert_eq!(ops(r#"@(new JValue(1))"#), [Op::Int(1), Op::Call(Builtin::JValueNew, 1)]);
    assert_eq!(ops(r#"@(new JArray(new[] {"a"}))"#)[2..], [Op::Call(Builtin::JArrayNew, 1)]);
    assert_eq!(ops(r#"@(new JArray { 1, 2 })"#).iter().filter(|op| **op == Op::Call(Builtin::JAdd, 2)).count(), 2);
    assert_eq!(ops(r#"@(new string[] {"a", "b"})"#), [Op::Const(0), Op::Const(1), Op::MakeArray(2)]);
    assert_eq!(ty(r#"@(new [] {1, 2})"#), StaticType::array_of(StaticType::Int));
    assert_eq!(ty(r#"@(new Guid("00000000-0000-0000-0000-000000000000"))"#), StaticType::Guid);
    assert!(err("@(new { a = 1, a = 2 })").message.contains("two members named `a`"));
    assert!(err("@(new Foo())").message.contains("the type `Foo` is not supported"));
    assert!(err("@(new byte[context.Request.Url.Port])").message.contains("constant size"));
    assert!(err(r#"@(new string[] { 1 })"#).message.contains("cannot put int into an array of string"));
    assert!(err(r#"@(new Dictionary<string, string> { { "a" } })"#).message.contains("`{ key, value }`"));
}

#[test]
fn static_library() {
    let utf8 = ops(r#"@(Encoding.UTF8.GetBytes("a"))"#);
    assert_eq!(utf8, [Op::Const(0), Op::Call(Builtin::Utf8GetBytes, 1)]);
    assert_eq!(ops(r#"@(System.Text.Encoding.UTF8.GetBytes("a"))"#), utf8);
    assert_eq!(
        ops(r#"@(Convert.ToBase64String(Encoding.UTF8.GetBytes("a")))"#).last(),
        Some(&Op::Call(Builtin::ConvertToBase64String, 1))
    );
    assert_eq!(ops(r#"@(System.Net.WebUtility.UrlEncode("a b"))"#)[1..], [Op::Call(Builtin::WebUtilityUrlEncode, 1)]);
    assert_eq!(ops(r#"@(Uri.EscapeDataString("a b"))"#)[1..], [Op::Call(Builtin::UriEscapeDataString, 1)]);
    assert_eq!(
        ops("@(Guid.NewGuid().ToString())"),
        [Op::Call(Builtin::GuidNewGuid, 0), Op::Call(Builtin::ToString, 1)]
    );
    assert_eq!(
        ops(r#"@(DateTime.UtcNow.ToString("o"))"#),
        [Op::Call(Builtin::DateTimeUtcNow, 0), Op::Const(0), Op::Call(Builtin::ToStringFormat, 2)]
    );
    assert_eq!(ops("@(DateTime.UtcNow.Year)"), [Op::Call(Builtin::DateTimeUtcNow, 0), Op::Prop(Prop::Year)]);
    assert_eq!(ty("@(DateTime.UtcNow.AddMinutes(5))"), StaticType::DateTime);
    assert_eq!(ops("@(Math.Max(1, 2))"), [Op::Int(1), Op::Int(2), Op::Call(Builtin::MathMax, 2)]);
    assert_eq!(ty("@(Math.Max(1, 2.5))"), StaticType::Double);
    assert_eq!(ops("@(int.MaxValue)"), [Op::Int(i32::MAX)]);
    assert_eq!(ops("@(string.Empty)"), [Op::Const(0)]);
    assert_eq!(ops("@(TimeSpan.Zero)"), [Op::Int(0), Op::Call(Builtin::TimeSpanFromSeconds, 1)]);
    assert_eq!(ops("@(StringComparison.OrdinalIgnoreCase)"), [Op::Int(5)]);
    assert_eq!(ty("@(StringComparison.OrdinalIgnoreCase)"), StaticType::Enum(EnumType::StringComparison));
    assert_eq!(ops("@(RegexOptions.IgnoreCase | RegexOptions.Multiline)"), [Op::Int(3)]);
    assert_eq!(
        ops(r#"@(string.Format("{0}-{1}", 1, "a"))"#),
        [Op::Const(0), Op::Int(1), Op::Const(1), Op::MakeArray(2), Op::Call(Builtin::StrFormat, 2)]
    );
    assert_eq!(
        ops(r#"@(string.Join(",", new[] {"a"}))"#),
        [Op::Const(0), Op::Const(1), Op::MakeArray(1), Op::Call(Builtin::StrJoin, 2)]
    );
    assert_eq!(
        ops(r#"@(string.Join(",", "a", "b"))"#),
        [Op::Const(0), Op::Const(1), Op::Const(2), Op::MakeArray(2), Op::Call(Builtin::StrJoin, 2)]
    );
    assert_eq!(ops(r#"@(string.Concat("a", 1))"#), [Op::Const(0), Op::Int(1), Op::Concat(2)]);
    assert_eq!(
        ops(r#"@(BitConverter.ToString(new byte[] {1}))"#).last(),
        Some(&Op::Call(Builtin::BitConverterToString, 1))
    );
}

#[test]
fn hashing() {
    assert_eq!(
        ops(r#"@(SHA256.Create().ComputeHash(Encoding.UTF8.GetBytes("a")))"#),
        [Op::Null, Op::Pop, Op::Const(0), Op::Call(Builtin::Utf8GetBytes, 1), Op::Call(Builtin::Sha256Hash, 1)]
    );
    assert_eq!(
        ops(r#"@(new HMACSHA256(Encoding.UTF8.GetBytes("k")).ComputeHash(Encoding.UTF8.GetBytes("a")))"#).last(),
        Some(&Op::Call(Builtin::HmacSha256, 2))
    );
    let block = r#"@{ using (var sha = System.Security.Cryptography.SHA1.Create()) { return Convert.ToBase64String(sha.ComputeHash(Encoding.UTF8.GetBytes("x"))); } }"#;
    assert!(ok(block).0.ops.contains(&Op::Call(Builtin::Sha1Hash, 1)));
    assert!(err(r#"@("a".ComputeHash(null))"#).message.contains("ComputeHash needs a hash algorithm"));
}

// ---- regular expressions

fn regex_const(source: &str) -> (String, bool) {
    let (program, _) = ok(source);
    program
        .consts
        .iter()
        .find_map(|c| match c {
            Const::Regex { pattern, ignore_case } => Some((pattern.clone(), *ignore_case)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{source}: no regex constant"))
}

#[test]
fn regex_literals_are_translated_and_checked() {
    assert_eq!(regex_const(r#"@(Regex.IsMatch("a", @"^\d+$"))"#), (r"^\d+$".to_owned(), false));
    assert_eq!(
        regex_const(
            r#"@(Regex.Match("a", @"(?<year>\d{4})-(?'m'\d{2})", RegexOptions.IgnoreCase | RegexOptions.Multiline))"#
        ),
        (r"(?m)(?P<year>\d{4})-(?P<m>\d{2})".to_owned(), true)
    );
    assert_eq!(regex_const(r#"@(Regex.IsMatch("a", "a{b}"))"#).0, r"a\{b\}");
    assert_eq!(regex_const(r#"@(Regex.IsMatch("a", "[[a&&b~~]"))"#).0, r"[\[a\&\&b\~\~]");
    assert_eq!(regex_const(r#"@(Regex.IsMatch("a", "[]a]"))"#).0, r"[\]a]");
    assert_eq!(regex_const(r#"@(Regex.IsMatch("a", @"a\Z"))"#).0, r"a\z");
    assert_eq!(regex_const(r#"@(Regex.IsMatch("a", "(a)(?#note)", RegexOptions.ExplicitCapture))"#).0, "(?:a)");
    assert_eq!(
        regex_const(r#"@(Regex.IsMatch("a", "a", RegexOptions.Singleline | RegexOptions.Compiled))"#).0,
        "(?s)a"
    );
    // The pattern constant is the second argument; options and the timeout are folded/dropped.
    assert_eq!(
        ops(r#"@(Regex.Replace("a", "b", "c", RegexOptions.None, TimeSpan.FromSeconds(1)))"#),
        [Op::Const(0), Op::Const(1), Op::Const(2), Op::Call(Builtin::RegexReplace, 3)]
    );
    assert_eq!(ty(r#"@(Regex.Match("a", "b").Groups["x"].Value)"#), StaticType::String);
    assert_eq!(ty(r#"@(Regex.Split("a", ","))"#), StaticType::array_of(StaticType::String));
    assert_eq!(ty(r#"@(Regex.Matches("a", ".").Count)"#), StaticType::Int);
}

#[test]
fn regex_values_and_run_time_patterns() {
    let source = r#"@(new Regex(@"^\w+$", RegexOptions.IgnoreCase).IsMatch("abc"))"#;
    assert_eq!(
        ops(source),
        [Op::Const(0), Op::StoreLocal(0), Op::Const(1), Op::LoadLocal(0), Op::Call(Builtin::RegexIsMatch, 2)]
    );
    assert_eq!(regex_const(source), (r"^\w+$".to_owned(), true));
    // A pattern only known at run time stays a string; run-time options are passed along.
    assert_eq!(
        ops(r#"@(Regex.IsMatch("a", context.Request.Method, (RegexOptions)context.Variables["o"]))"#).last(),
        Some(&Op::Call(Builtin::RegexIsMatch, 3))
    );
    assert_eq!(ops(r#"@(Regex.Escape("a.b"))"#), [Op::Const(0), Op::Call(Builtin::RegexEscape, 1)]);
}

#[test]
fn unsupported_regex_constructs_are_named() {
    for (pattern, what) in [
        ("(?=a)", "lookahead"),
        ("(?!a)", "lookahead"),
        ("(?<=a)b", "lookbehind"),
        ("(?<!a)b", "lookbehind"),
        (r"(a)\1", "backreferences"),
        (r"(?<n>a)\k<n>", "named backreferences"),
        ("(?>a)", "atomic groups"),
        ("(?(a)b|c)", "conditional"),
        ("(?<a-b>c)", "balancing groups"),
        ("[a-z-[aeiou]]", "subtraction"),
        ("(a", "invalid regular expression"),
        ("a{2,1}", "invalid regular expression"),
    ] {
        let source = format!(r#"@(Regex.IsMatch("x", @"{pattern}"))"#);
        let e = err(&source);
        assert!(e.message.contains(what), "{pattern}: {}", e.message);
        assert_eq!(source.get(e.offset..e.offset + e.len), Some(format!(r#"@"{pattern}""#).as_str()), "{pattern}");
    }
    assert!(err(r#"@(Regex.IsMatch("x", "a", RegexOptions.RightToLeft))"#).message.contains("RightToLeft"));
    // A literal pattern with run-time options: checked here, options passed to the VM.
    let source = r#"@(Regex.Replace("x", "a", "b", (RegexOptions)context.Variables["o"]))"#;
    assert_eq!(ops(source).last(), Some(&Op::Call(Builtin::RegexReplace, 4)));
    assert_eq!(regex_const(source), ("a".to_owned(), false));
    assert!(
        err(r#"@(Regex.IsMatch("x", "(?=a)", (RegexOptions)context.Variables["o"]))"#).message.contains("lookahead")
    );
    assert!(err(r#"@(Regex.IsMatch("x", "a", "i"))"#).message.contains("the RegexOptions must be RegexOptions"));
    assert!(
        err(r#"@(new Regex("a", (RegexOptions)context.Variables["o"]))"#).message.contains("constant RegexOptions")
    );
    assert!(err(r#"@(Regex.Replace("x", "a", m => "b"))"#).message.contains("MatchEvaluator"));
}

// ---- LINQ lambdas

#[test]
fn any_lowers_to_a_loop() {
    assert_eq!(
        ops(r#"@(new[] {1, 2}.Any(x => x > 1))"#),
        [
            Op::Int(1),
            Op::Int(2),
            Op::MakeArray(2),
            Op::IterInit(0),
            Op::IterNext(0, 11),
            Op::StoreLocal(1),
            Op::LoadLocal(1),
            Op::Int(1),
            Op::Gt,
            Op::JumpIfTrue(13),
            Op::Jump(4),
            Op::Bool(false),
            Op::Jump(14),
            Op::Bool(true)
        ]
    );
}

#[test]
fn linq_shapes_verify_and_type() {
    let seq = r#"context.Request.Headers["a"]"#;
    for (call, t) in [
        ("Any(x => x == \"a\")", StaticType::Bool),
        ("All(x => x.Length > 0)", StaticType::Bool),
        ("Where(x => x != \"\")", StaticType::List(Box::new(StaticType::String))),
        ("Select(x => x.Length)", StaticType::List(Box::new(StaticType::Int))),
        ("First(x => x.StartsWith(\"a\"))", StaticType::String),
        ("FirstOrDefault(x => x.StartsWith(\"a\"))", StaticType::String),
        ("LastOrDefault(x => true)", StaticType::String),
        ("Count(x => x.Contains(\"a\"))", StaticType::Int),
        ("Sum(x => x.Length)", StaticType::Int),
        ("OrderBy(x => x)", StaticType::array_of(StaticType::String)),
        ("OrderByDescending(s => s)", StaticType::array_of(StaticType::String)),
        ("Where(x => x != \"\").Select(x => x.ToUpper()).ToArray()", StaticType::array_of(StaticType::String)),
    ] {
        let source = format!("@({seq}.{call})");
        assert_eq!(ty(&source), t, "{source}");
    }
    assert_eq!(ty(r#"@(Array.Find(new[] {"a"}, x => x == "a"))"#), StaticType::String);
    assert_eq!(ty(r#"@(Array.FindAll(new[] {"a"}, x => x == "a"))"#), StaticType::array_of(StaticType::String));
    assert_eq!(ty(r#"@(JArray.Parse("[]").Any(t => (int)t > 1))"#), StaticType::Bool);
    assert_eq!(ty(r#"@(JObject.Parse("{}").Any(p => p.Key == "a"))"#), StaticType::Bool);
    assert_eq!(ty(r#"@(context.Request.Headers.Any(h => h.Key.StartsWith("x-")))"#), StaticType::Bool);
    // Nested lambdas, and a lambda using an outer parameter.
    assert_eq!(ty(r#"@(new[] {"a"}.Any(x => new[] {"b"}.Any(y => y == x)))"#), StaticType::Bool);
}

#[test]
fn linq_runs_at_any_stack_depth() {
    let mut code = CodeBuilder::new();
    code.push_str("below");
    compile(&mut code, r#"@(new[] {"a"}.Where(x => x == "a").Count())"#, Expect::Int).unwrap_or_else(|e| panic!("{e}"));
    code.emit(Op::Pop);
    code.emit(Op::Pop);
    let program = code.finish().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(program.max_stack, 3);
}

#[test]
fn linq_errors() {
    let (text, message) = blamed(r#"@(new[] {"a"}.Any(x => x))"#);
    assert_eq!(text, "x");
    assert!(message.contains("the lambda must return a bool"), "{message}");
    assert!(err(r#"@(new[] {"a"}.OrderBy((x, i) => x))"#).message.contains("one parameter"));
    assert!(err(r#"@(new[] {"a"}.Select((x, i, j) => x))"#).message.contains("one parameter"));
    assert!(err(r#"@(new[] {"a"}.OrderBy((x, i) => x))"#).message.contains("one parameter"));
    assert!(err(r#"@(new[] {"a"}.GroupBy(x => x))"#).message.contains("`GroupBy` with a lambda is not supported"));
    assert!(err(r#"@(context.Response.StatusCode.Any(x => true))"#).message.contains("not a sequence"));
    assert!(err(r#"@(new[] {"a"}.Any(x => { return true; }))"#).message.contains("block body"));
    let (text, message) = blamed("@(x => x)");
    assert_eq!(text, "x => x");
    assert!(message.contains("only supported as the argument of LINQ"), "{message}");
    // The parameter is scoped to the lambda.
    assert!(err(r#"@{ var b = new[] {"a"}.Any(x => true); return x; }"#).message.contains("`x` does not exist"));
}

// ---- blocks

#[test]
fn blocks_return_through_a_result_local() {
    // The block's `return` jumps to the op after it, which the fusion pass drops.
    assert_eq!(ops("@{ return 1; }"), [Op::Int(1), Op::StoreLocal(0), Op::LoadLocal(0)]);
    assert_eq!(ty(r#"@{ if (true) { return 1; } else { return 2.5; } }"#), StaticType::Double);
    assert_eq!(ty(r#"@{ if (true) return "a"; return null; }"#), StaticType::String);
}

#[test]
fn locals_and_assignments() {
    let source =
        r#"@{ var n = 1; int m = 2; n += m; n++; --m; n *= 2; string s = null; s ??= "x"; s += n; return s; }"#;
    assert_eq!(ty(source), StaticType::String);
    assert_eq!(
        ops("@{ var n = 1; n++; return n; }")[..6],
        [Op::Int(1), Op::StoreLocal(1), Op::LoadLocal(1), Op::Int(1), Op::Add, Op::StoreLocal(1)]
    );
    // As an expression, `x++` leaves the old value and `++x` the new one.
    assert_eq!(
        ops("@{ var n = 1; var m = n++; return m; }")[2..7],
        [Op::LoadLocal(1), Op::Dup, Op::Int(1), Op::Add, Op::StoreLocal(1)]
    );
    assert_eq!(
        ops("@{ var n = 1; var m = ++n; return m; }")[2..7],
        [Op::LoadLocal(1), Op::Int(1), Op::Add, Op::Dup, Op::StoreLocal(1)]
    );
    assert_eq!(ty("@{ int a = 1, b = 2; return a + b; }"), StaticType::Int);
    assert_eq!(ty("@{ var x = 1; var y = (x = 2); return y; }"), StaticType::Int);
}

#[test]
fn json_element_assignment() {
    let source = r#"@{ var o = new JObject(); o["a"] = 1; o["b"] = context.Request.Method; return o.ToString(Formatting.None); }"#;
    let (program, t) = ok(source);
    assert_eq!(t, StaticType::String);
    assert_eq!(program.ops.iter().filter(|op| **op == Op::Call(Builtin::JSet, 3)).count(), 2);
    assert!(err(r#"@{ context.Variables["a"] = 1; return 1; }"#).message.contains("read-only"));
    assert!(
        err(r#"@{ var l = new List<string>(); l[0] = 1; return 1; }"#)
            .message
            .contains("cannot assign int to an element of List<string>")
    );
    assert!(
        err(r#"@{ var d = context.Request.Headers; d[1] = null; return 1; }"#).message.contains("indexed by string")
    );
    assert!(err(r#"@{ context.Request.Method = "GET"; return 1; }"#).message.contains("properties cannot be assigned"));
    assert!(
        err(r#"@{ var o = new JObject(); var x = o["a"] = 1; return 1; }"#)
            .message
            .contains("only be used as a statement")
    );
}

#[test]
fn control_flow() {
    for source in [
        r#"@{ var s = 0; for (var i = 0; i < 3; i++) { if (i == 1) continue; s += i; } return s; }"#,
        r#"@{ var i = 0; while (i < 10) { i++; if (i > 5) break; } return i; }"#,
        r#"@{ var i = 0; do { i++; } while (i < 3); return i; }"#,
        r#"@{ var n = 0; foreach (var h in context.Request.Headers) { if (h.Key.StartsWith("x")) { n++; } } return n; }"#,
        r#"@{ foreach (string v in context.Request.Headers["a"]) { return v; } return ""; }"#,
        r#"@{ foreach (JProperty p in JObject.Parse("{}").Properties()) { if (p.Name == "a") return p.Value; } return null; }"#,
        r#"@{ var r = ""; foreach (var a in new[] {"x"}) foreach (var b in new[] {"y"}) r += a + b; return r; }"#,
        r#"@{ for (;;) { return 1; } }"#,
        r#"@{ while (true) { if (context.Tracing) return 1; } }"#,
        r#"@{ { var a = 1; } { var a = 2; return a; } }"#,
        r#"@{ context.Trace("hello"); return 1; }"#,
        r#"@{ ; return 1; }"#,
    ] {
        ok(source);
    }
    // foreach over a JSON array casts each element when the loop variable is typed.
    let (program, _) = ok(r#"@{ foreach (string v in JArray.Parse("[]")) { return v; } return ""; }"#);
    assert!(program.ops.contains(&Op::Cast(ValueType::String)));
}

#[test]
fn missing_returns_are_refused() {
    for source in [
        "@{ var a = 1; }",
        "@{ if (true) { return 1; } }",
        "@{ while (true) { break; } }",
        "@{ foreach (var x in new[] {1}) { return x; } }",
        "@{ for (var i = 0; i < 1; i++) { return 1; } }",
        "@{ }",
    ] {
        let e = err(source);
        assert!(e.message.contains("not all code paths return a value"), "{source}: {}", e.message);
        assert_eq!(source.get(e.offset..e.offset + e.len), Some("}"), "{source}");
    }
    assert!(err("@{ return; }").message.contains("must return a value"));
}

#[test]
fn statement_errors() {
    let (text, message) = blamed("@{ var a = 1; var a = 2; return a; }");
    assert_eq!(text, "a");
    assert!(message.contains("already defined"), "{message}");
    assert!(err("@{ var a = 1; { var a = 2; } return a; }").message.contains("already defined"));
    assert!(err("@{ var a; return 1; }").message.contains("must be initialized"));
    assert!(err("@{ var a = null; return 1; }").message.contains("cannot infer a type from `null`"));
    assert!(err("@{ int a = \"x\"; return a; }").message.contains("cannot assign string to a variable of type int"));
    assert!(err("@{ var a = 1; a = \"x\"; return a; }").message.contains("cannot assign string to `a`"));
    assert!(err("@{ break; return 1; }").message.contains("inside a loop"));
    let (text, message) = blamed("@{ 1 + 2; return 1; }");
    assert_eq!(text, "1 + 2");
    assert!(message.contains("can be used as a statement"), "{message}");
    let (text, message) = blamed("@{ catch { return 2; } }");
    assert_eq!(text, "catch");
    assert!(message.contains("must follow a `try`"), "{message}");
    assert!(err("@{ try { return 1; } }").message.contains("`catch` or `finally`"));
    assert!(
        err("@{ try { } finally { return 1; } return 2; }").message.contains("cannot leave the body of a `finally`")
    );
    assert!(err("@{ try { } catch (Exception e) when (true) { } return 1; }").message.contains("exception filters"));
    assert!(err("@{ try { } catch (string e) { } return 1; }").message.contains("exception type"));
    assert!(err("@{ throw; }").message.contains("inside a `catch`"));
    assert!(err("@{ throw 5; }").message.contains("needs an exception"));
    assert!(err(r#"@{ switch (1) { case "a": return 1; } return 2; }"#).message.contains("cannot match"));
    assert!(err("@{ switch (1) { case int n: return 1; } return 2; }").message.contains("pattern cases"));
    assert!(err("@{ if (1) { return 1; } return 2; }").message.contains("must be a bool"));
    assert!(err("@{ foreach (var c in 5) { } return 1; }").message.contains("foreach needs a sequence"));
    assert!(err("@{ return 1 }").message.contains("expected `;`"));
}

#[test]
fn unsupported_syntax_is_named() {
    assert!(err("@(typeof(string))").message.contains("`typeof` is not supported"));
    assert!(err("@(default(int))").message.contains("`default` is not supported"));
    assert!(err("@(this)").message.contains("`this` is not supported"));
    assert!(err("@(1 < < 2)").message.contains("expected an expression"));
    assert!(err(r#"@($"{1,5}")"#).message.contains("alignment"));
}

// ---- what the caller checks

#[test]
fn expected_types_are_checked() {
    let bool_of = |s: &str| program(s, Expect::Bool);
    assert!(bool_of("@(context.Response.StatusCode == 200)").is_ok());
    assert!(bool_of(r#"@(context.Variables["flag"])"#).is_ok());
    let e = bool_of("@(context.Request.Method)").err().unwrap_or_else(|| panic!("accepted"));
    assert_eq!(e.message, "this expression must produce a bool, but it produces string");
    assert_eq!((e.offset, e.len), (2, "context.Request.Method".len()));
    let e = program("@(context.Response.StatusCode)", Expect::String).err().unwrap_or_else(|| panic!("accepted"));
    assert!(e.message.contains("call `.ToString()`"), "{}", e.message);
    assert!(program("@(context.Response.StatusCode.ToString())", Expect::String).is_ok());
    assert!(program(r#"@(JObject.Parse("{}")["a"])"#, Expect::String).is_ok());
    assert!(program("@(context.Response.StatusCode)", Expect::Int).is_ok());
    assert!(program(r#"@("a")"#, Expect::Int).is_err());
    let e = program("@{ return 1; }", Expect::Bool).err().unwrap_or_else(|| panic!("accepted"));
    assert!(e.message.contains("must produce a bool"));
}

#[test]
fn error_offsets_inside_interpolation_holes_point_into_the_source() {
    let source = r#"@($"x{context.Request.Mehtod}y")"#;
    let e = err(source);
    assert_eq!(source.get(e.offset..e.offset + e.len), Some("Mehtod"));
}

#[test]
fn expressions_share_the_section_pool_and_locals() {
    let mut code = CodeBuilder::new();
    for source in [r#"@("a" + "b")"#, r#"@{ var x = "a"; return x; }"#] {
        compile(&mut code, source, Expect::String).unwrap_or_else(|e| panic!("{e}"));
        code.emit(Op::Pop);
    }
    let program = code.finish().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(program.consts, [Const::Str("a".into()), Const::Str("b".into())]);
    assert_eq!(program.locals, 2);
}

#[test]
fn static_string_equals_is_null_safe_equality() {
    assert_eq!(ops(r#"@(string.Equals("a", null))"#), [Op::Const(0), Op::Null, Op::Eq]);
    assert_eq!(
        ops(r#"@(String.Equals("a", "b", StringComparison.OrdinalIgnoreCase))"#).last(),
        Some(&Op::Call(Builtin::EqualsComparison, 3))
    );
}

#[test]
fn errors_at_the_end_point_at_the_end() {
    let source = "@(1 +)";
    let e = err(source);
    assert_eq!(e.message, "expected an expression, found `)`");
    assert_eq!(e.offset, 5);
    let (text, message) = blamed("@(new[] {1, 2}.Any(x => ))");
    assert_eq!(text, ")");
    assert!(message.contains("expected an expression"), "{message}");
}

/// Sources derived from the representative set by truncation and seeded byte mutations: the
/// compiler must return (a program or an error with an in-range offset), never panic.
#[test]
fn malformed_input_never_panics() {
    let mut sources: Vec<String> = Vec::new();
    for source in REPRESENTATIVE {
        for (end, _) in source.char_indices() {
            sources.push(source[..end].to_owned());
            sources.push(format!("{})", &source[..end]));
        }
    }
    // A small linear congruential generator: deterministic, no dependency.
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize
    };
    let alphabet: Vec<char> = "()[]{}<>.,;:?!=&|+-*/%\"'@$\\ ax0_=>?.??".chars().collect();
    for _ in 0..3000 {
        let base = REPRESENTATIVE[next() % REPRESENTATIVE.len()];
        let mut chars: Vec<char> = base.chars().collect();
        for _ in 0..1 + next() % 3 {
            let at = next() % chars.len();
            let c = alphabet[next() % alphabet.len()];
            match next() % 3 {
                0 => chars[at] = c,
                1 => chars.insert(at, c),
                _ => {
                    chars.remove(at);
                }
            }
        }
        sources.push(chars.into_iter().collect());
    }
    for source in &sources {
        let mut code = CodeBuilder::new();
        match compile(&mut code, source, Expect::Any) {
            Ok(_) => {
                code.emit(Op::Pop);
                if let Err(e) = code.finish() {
                    panic!("{source}: compiled but does not verify: {e}");
                }
            }
            Err(e) => {
                assert!(e.offset + e.len <= source.len().max(1) + 1, "{source}: {e:?}");
                assert!(!e.message.is_empty());
            }
        }
    }
}

#[test]
fn unix_times_compose_existing_ops() {
    assert_eq!(
        ops("@(DateTimeOffset.UtcNow.ToUnixTimeSeconds())"),
        [
            Op::Call(Builtin::DateTimeUtcNow, 0),
            Op::Const(0),
            Op::Call(Builtin::DateTimeParse, 1),
            Op::Sub,
            Op::Prop(Prop::TotalSeconds),
            Op::Cast(ValueType::Int)
        ]
    );
    assert_eq!(ty("@(DateTimeOffset.FromUnixTimeSeconds(1700000000))"), StaticType::DateTime);
    assert_eq!(ty("@(DateTime.UtcNow.ToUnixTimeMilliseconds())"), StaticType::Int);
}

#[test]
fn json_get_value_is_the_indexer() {
    assert_eq!(ops(r#"@(JObject.Parse("{}").GetValue("a"))"#)[2..], [Op::Const(1), Op::Index]);
}

#[test]
fn xml_classes_are_named() {
    let (text, message) = blamed(r#"@(XDocument.Parse("<a/>"))"#);
    assert_eq!(text, "XDocument");
    assert_eq!(message, "XML (`XDocument`) is not supported in policy expressions yet");
}

#[test]
fn nesting_is_bounded() {
    // Within the limit: fine, on a test thread's stack.
    let parens = format!("@({}1{})", "(".repeat(30), ")".repeat(30));
    assert_eq!(ty(&parens), StaticType::Int);
    let sum = format!("@({})", vec!["1"; 200].join(" + "));
    assert_eq!(ty(&sum), StaticType::Int);
    // Past it: an error, not a stack overflow.
    for source in [
        format!("@({}1{})", "(".repeat(5000), ")".repeat(5000)),
        format!("@({})", vec!["1"; 10_000].join(" + ")),
        format!("@({}true)", "!".repeat(5000)),
        format!("@(context{})", ".Request".repeat(5000)),
        format!("@(a{})", "[0]".repeat(5000)),
        format!("@{{ {} return 1; {} }}", "{".repeat(5000), "}".repeat(5000)),
        format!("@({}1{})", "$\"{".repeat(300), "}\"".repeat(300)),
        format!("@({}1{})", "new[] {".repeat(5000), "}".repeat(5000)),
        format!("@({}1)", "-".repeat(5000)),
        format!("@({}1)", "x ?? ".repeat(5000)),
        format!("@({}1)", "true ? 1 : ".repeat(5000)),
        format!("@({}1)", "(int)".repeat(5000)),
        format!("@({}true)", "x => ".repeat(5000)),
        format!("@({}1{})", "f(".repeat(5000), ")".repeat(5000)),
    ] {
        let e = err(&source);
        assert!(e.message.contains("nested too deeply"), "{}: {}", &source[..20], e.message);
    }
}

/// Deep but legal input on the smallest stack the compiler is meant to run on in debug builds.
#[test]
fn the_nesting_budget_fits_a_small_stack() {
    let sources = [
        format!("@({}1{})", "(".repeat(31), ")".repeat(31)),
        format!("@({})", vec!["1"; 255].join(" + ")),
        format!("@(context{})", ".Request".repeat(250)),
        format!("@({}1{})", "f(".repeat(31), ")".repeat(31)),
    ];
    for source in sources {
        let handle = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let mut code = CodeBuilder::new();
                let _ = compile(&mut code, &source, Expect::Any);
            })
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(handle.join().is_ok());
    }
}

#[test]
fn index_overloads_count_positions() {
    let (program, t) = ok(r#"@(new[] {"a", "b"}.Select((x, i) => x + i))"#);
    assert_eq!(t, StaticType::List(Box::new(StaticType::String)));
    // IterInit(0), counter local 1 starts at -1, the list in 2, the element in 3.
    let at = program.ops.iter().position(|op| *op == Op::StoreLocal(3)).unwrap_or(0);
    assert_eq!(program.ops[at + 1..at + 5], [Op::LoadLocal(1), Op::Int(1), Op::Add, Op::StoreLocal(1)]);
    assert_eq!(ty(r#"@(new[] {"a"}.Where((x, i) => i % 2 == 0).Count())"#), StaticType::Int);
}

#[test]
fn client_certificates_verify_as_x509certificate2_does() {
    let (program, t) = ok("@(context.Request.Certificate != null && context.Request.Certificate.Verify())");
    assert_eq!(t, StaticType::Bool);
    assert!(program.ops.contains(&Op::Call(Builtin::CertificateVerify, 1)));
    let (program, _) = ok("@(context.Request.Certificate.VerifyNoRevocation())");
    assert!(program.ops.contains(&Op::Call(Builtin::CertificateVerifyNoRevocation, 1)));
    assert!(err(r#"@("text".Verify())"#).message.contains("Verify"));
}

#[test]
fn user_product_and_subscription_members_compile_with_their_types() {
    assert_eq!(ty(r#"@(context.User.Email)"#), StaticType::String);
    assert_eq!(ty(r#"@(context.User.Groups.Select(g => g.Name).Contains("partners"))"#), StaticType::Bool);
    assert_eq!(ty(r#"@(context.User.Groups.Any(g => g.Id == "partners"))"#), StaticType::Bool);
    assert_eq!(ty(r#"@(context.User.Identities.First().Provider)"#), StaticType::String);
    assert_eq!(ty(r#"@(context.User.RegistrationDate)"#), StaticType::DateTime);
    assert_eq!(ty(r#"@(context.User.Note)"#), StaticType::String);
    assert_eq!(ty(r#"@(context.Product.ApprovalRequired || context.Product.SubscriptionRequired)"#), StaticType::Bool);
    assert_eq!(ty(r#"@(context.Product.SubscriptionLimit ?? 0)"#), StaticType::Int);
    assert_eq!(ty(r#"@(context.Product.State)"#), StaticType::String);
    assert_eq!(ty(r#"@(context.Subscription?.StartDate)"#), StaticType::DateTime);
    let (_, message) = blamed("@(context.Product.Apis)");
    assert!(message.contains("IProduct.Apis is not supported yet"), "{message}");
    let (text, message) = blamed("@(context.User.Emial)");
    assert_eq!(text, "Emial");
    assert!(message.contains("did you mean `Email`?"), "{message}");
}

mod more;
mod real_world;
