//! Constructs found in real APIM documents (issue 17's yardstick): `List<T>` mutators, the LINQ
//! element family, `IUrl.ToUri()`, `context.Deployment.Gateway`, extension methods called
//! through their class, property initializers, and the messages for what APIM refuses too.

use portcullis_contract::program::{Builtin, Op, Prop};

use super::{err, ok, ops, ty};
use crate::expr::StaticType;

#[test]
fn list_mutators_compile_to_list_builtins() {
    let source = r#"@{ var l = new List<int>(); l.Add(1); l.Insert(0, 2); l.AddRange(new [] {3, 4}); l.Remove(3); l.RemoveAt(0); var at = l.IndexOf(4); l.Clear(); return l.Count + at; }"#;
    let (program, t) = ok(source);
    assert_eq!(t, StaticType::Int);
    for (builtin, argc) in [
        (Builtin::ListInsert, 3),
        (Builtin::ListAddRange, 2),
        (Builtin::ListRemove, 2),
        (Builtin::ListRemoveAt, 2),
        (Builtin::SeqIndexOf, 2),
        (Builtin::ListClear, 1),
    ] {
        assert!(program.ops.contains(&Op::Call(builtin, argc)), "{builtin:?}: {:?}", program.ops);
    }
    assert_eq!(ty(r#"@(new List<string> { "a" }.Remove("a"))"#), StaticType::Bool);
    assert_eq!(ty(r#"@(Array.IndexOf(new [] { "a", "b" }, "b"))"#), StaticType::Int);
    // Argument types are checked; the mutators are List<T>'s, not arrays'.
    assert!(err(r#"@(new List<int>().RemoveAt("x"))"#).message.contains("expects int"));
    assert!(err(r#"@(new [] { 1 }.Clear())"#).message.contains("has no method `Clear`"));
}

#[test]
fn linq_element_family() {
    let (program, t) = ok(r#"@(context.Request.Url.Path.Split('/').ElementAtOrDefault(3))"#);
    assert_eq!(t, StaticType::String);
    // The element type's default is pushed: null for strings, 0 for ints.
    let tail = &program.ops[program.ops.len() - 3..program.ops.len() - 1];
    assert_eq!(tail, &[Op::Null, Op::Call(Builtin::SeqElementAtOrDefault, 3)], "{:?}", program.ops);
    let ops = ops(r#"@(new List<int> { 1 }.ElementAtOrDefault(5))"#);
    assert_eq!(&ops[ops.len() - 2..], &[Op::Int(0), Op::Call(Builtin::SeqElementAtOrDefault, 3)]);
    assert_eq!(ty(r#"@(new [] { 1, 2 }.ElementAt(1))"#), StaticType::Int);
    assert_eq!(ty(r#"@(new string[0].DefaultIfEmpty("none").First())"#), StaticType::String);
    assert_eq!(ty(r#"@(new [] { 1 }.DefaultIfEmpty())"#), StaticType::array_of(StaticType::Int));
    assert!(err(r#"@(new [] { 1 }.DefaultIfEmpty("x"))"#).message.contains("the default must be int"));
    assert_eq!(ty(r#"@(new [] { "a", "bb" }.LastOrDefault(s => s.Length > 1))"#), StaticType::String);
    assert_eq!(ty(r#"@(new [] { "a", "bb" }.SingleOrDefault(s => s.Length > 1))"#), StaticType::String);
    assert!(err(r#"@(5.ElementAtOrDefault(1))"#).message.contains("ElementAtOrDefault"));
}

#[test]
fn urls_convert_to_uris_and_strings() {
    let ops = ops(r#"@(context.Request.OriginalUrl.ToUri().Host)"#);
    assert!(ops.contains(&Op::Prop(Prop::AbsoluteUrl)), "{ops:?}");
    assert!(ops.contains(&Op::Call(Builtin::UriPart, 2)), "{ops:?}");
    assert_eq!(ty(r#"@(context.Request.Url.ToUri())"#), StaticType::Uri);
    let ops = super::ops(r#"@(context.Request.Url.ToString())"#);
    assert_eq!(ops.last(), Some(&Op::Prop(Prop::AbsoluteUrl)));
}

#[test]
fn deployment_gateway_members() {
    assert_eq!(ty(r#"@(context.Deployment.Gateway.IsManaged)"#), StaticType::Bool);
    assert_eq!(ty(r#"@(context.Deployment.Gateway.InstanceId)"#), StaticType::String);
    let ops = ops(r#"@(context.Deployment.Gateway.Id)"#);
    assert!(ops.ends_with(&[Op::Prop(Prop::Deployment), Op::Prop(Prop::Gateway), Op::Prop(Prop::Id)]), "{ops:?}");
    assert!(err(r#"@(context.Deployment.Gateway.Name)"#).message.contains("IGateway has no member `Name`"));
}

#[test]
fn extension_methods_through_their_class() {
    let source = r#"@{ Jwt jwt; ExpressionSyntaxExtensions.TryParseJwt((string)context.Variables["t"], out jwt); return jwt.Claims.GetValueOrDefault("tid", ""); }"#;
    assert_eq!(ty(source), StaticType::String);
    assert_eq!(ty(r#"@(ExpressionSyntaxExtensions.AsJwt("x"))"#), StaticType::Jwt);
    assert!(
        err(r#"@(ExpressionSyntaxExtensions.ToUpper("x"))"#).message.contains("not one of APIM's extension methods")
    );
    assert!(err(r#"@(ExpressionSyntaxExtensions.AsJwt())"#).message.contains("first argument"));
}

#[test]
fn property_initializers_set_an_hmac_key() {
    let source = r#"@{ var h = new System.Security.Cryptography.HMACSHA256 { Key = Convert.FromBase64String("AAAA") }; return Convert.ToBase64String(h.ComputeHash(Encoding.UTF8.GetBytes("x"))); }"#;
    let (program, t) = ok(source);
    assert_eq!(t, StaticType::String);
    assert!(program.ops.contains(&Op::Call(Builtin::HmacSha256, 2)), "{:?}", program.ops);
    let e = err(r#"@(new Uri("http://a") { Port = 8 })"#);
    assert!(e.message.contains("object initializers set only `Key`"), "{}", e.message);
    assert!(err(r#"@(new HMACSHA256 { IV = new byte[16] })"#).message.contains("only `Key`"));
}

#[test]
fn what_apim_refuses_too_gets_a_hint() {
    // A property called like a method (`MatchedParameters("id")`).
    let e = err(r#"@((string)context.Request.MatchedParameters("id"))"#);
    assert!(
        e.message.contains("is a property of type IReadOnlyDictionary<string, string>, not a method"),
        "{}",
        e.message
    );
    assert!(e.message.contains("GetValueOrDefault"), "{}", e.message);
    // Adjacent string literals.
    let e = err(r#"@(context.Request.Method.Equals("patch=""", StringComparison.OrdinalIgnoreCase))"#);
    assert!(e.message.contains("does not join adjacent string literals"), "{}", e.message);
    // XML escaped twice: `&amp;quot;` decodes to `&quot;`.
    let e = err(r#"@(context.Subscription?.Key ?? &quot;anonymous&quot;)"#);
    assert!(e.message.contains("escapes it twice"), "{}", e.message);
}

#[test]
fn bitwise_operators_and_shifts() {
    // Shifts bind between relational and additive operators, as in C#.
    let ops = ops(r#"@(1 << 2 + 1 < 100)"#);
    assert_eq!(
        ops,
        vec![Op::Int(1), Op::Int(2), Op::Int(1), Op::Add, Op::Call(Builtin::ShiftLeft, 2), Op::Int(100), Op::Lt]
    );
    assert_eq!(ty(r#"@(-1 << (32 - 8))"#), StaticType::Int);
    assert_eq!(ty(r#"@((context.Request.Url.Port >> 8) & 0xFF)"#), StaticType::Int);
    assert_eq!(ty(r#"@(~0x0F ^ 3 | 4)"#), StaticType::Int);
    // On bools, `&` `|` `^` are the non-short-circuit logical operators.
    assert_eq!(ty(r#"@(context.Request.Method == "GET" & context.Request.Url.Port == 80)"#), StaticType::Bool);
    // Enum flags still fold to a constant.
    assert_eq!(super::ops(r#"@(RegexOptions.IgnoreCase | RegexOptions.Multiline)"#).len(), 1);
    assert!(err(r#"@(1.5 & 2)"#).message.contains("cannot be applied to double and int"));
    assert!(err(r#"@(true << 1)"#).message.contains("cannot be applied to bool and int"));
    assert!(err(r#"@(~"a")"#).message.contains("needs an integer"));
    // `>` `>` apart is not a shift.
    assert!(super::program("@(1 > > 2)", crate::expr::Expect::Any).is_err());
    // Compound assignments.
    let (program, t) = ok(
        r#"@{ int flags = 1; flags |= 4; flags &= ~1; flags ^= 2; bool all = true; all &= flags > 0; return all ? flags : 0; }"#,
    );
    assert_eq!(t, StaticType::Int);
    for builtin in [Builtin::BitOr, Builtin::BitAnd, Builtin::BitXor, Builtin::BitNot] {
        assert!(program.ops.iter().any(|op| matches!(op, Op::Call(b, _) if *b == builtin)), "{builtin:?}");
    }
    assert!(err(r#"@{ string s = "a"; s |= 1; return s; }"#).message.contains("cannot be applied to string and int"));
    // Generic type arguments that end in `>>` still parse.
    assert_eq!(ty(r#"@(new List<List<int>>().Count)"#), StaticType::Int);
}

#[test]
fn narrowing_casts_and_conversions() {
    let ops = ops(r#"@((short)70000)"#);
    assert_eq!(ops, vec![Op::Int(70000), Op::Int(2), Op::Call(Builtin::IntNarrow, 2)]);
    assert_eq!(ty(r#"@((byte)(300 & 0xFF))"#), StaticType::Int);
    let ops = super::ops(r#"@(Convert.ToByte("12"))"#);
    assert!(ops.contains(&Op::Call(Builtin::ConvertToInt32, 1)), "{ops:?}");
    assert!(ops.ends_with(&[Op::Int(1 + 8), Op::Call(Builtin::IntNarrow, 2)]), "{ops:?}");
    // Computed bytes make a byte[]; BitConverter reads an int back.
    let source = r#"@{ var parts = "10.0.0.1".Split('.'); byte[] b = new byte[] { Convert.ToByte(int.Parse(parts[0])), Convert.ToByte(parts[1]), 0, 1 }; return BitConverter.ToInt32(b, 0); }"#;
    let (program, t) = ok(source);
    assert_eq!(t, StaticType::Int);
    assert!(program.ops.contains(&Op::Call(Builtin::BytesFromArray, 1)), "{:?}", program.ops);
    assert!(program.ops.contains(&Op::Call(Builtin::BitConverterToInt32, 2)), "{:?}", program.ops);
    assert!(err(r#"@((short)"a")"#).message.contains("cannot convert string to short"));
    // A char is a one-character string in the VM: refused rather than failing at run time.
    assert!(err(r#"@((byte)'a')"#).message.contains("cannot convert char to byte"));
    assert!(err(r#"@('a' & 1)"#).message.contains("cannot be applied to char and int"));
    assert!(err(r#"@(new byte[] { "a" + 1 })"#).message.contains("cannot put string into an array of byte"));
}
