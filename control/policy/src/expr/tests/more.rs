//! The constructs real-world documents use that came later: `try`/`catch`/`finally`, `throw`,
//! `switch`, `const`, anonymous objects, sized arrays, initializers and the added members.

use portcullis_contract::program::{Builtin, Op};

use super::{err, ok, ops, ty};
use crate::expr::StaticType;

#[test]
fn try_catch_finally_and_throw_compile_to_handlers() {
    let source =
        r#"@{ try { return JObject.Parse("x").ToString(); } catch (JsonReaderException ex) { return ex.Message; } }"#;
    let (program, t) = ok(source);
    assert_eq!(t, StaticType::String);
    assert_eq!(program.ops.iter().filter(|op| matches!(op, Op::TryEnter { .. })).count(), 1);
    // The `return` inside the try leaves it first.
    let exits = program.ops.iter().filter(|op| **op == Op::TryExit).count();
    assert_eq!(exits, 2, "{:?}", program.ops);
    // With a finally: two handlers, the finally inlined on the normal path, the return path and
    // the exceptional one.
    let source = r#"@{ var log = ""; try { log += "t"; if (log == "x") { return "early"; } } catch (Exception) { log += "c"; throw; } finally { log += "f"; } return log; }"#;
    let (program, _) = ok(source);
    assert_eq!(program.ops.iter().filter(|op| matches!(op, Op::TryEnter { .. })).count(), 2);
    assert!(program.ops.contains(&Op::Throw));
    // `throw` as an expression and as a statement.
    assert_eq!(
        ty(r#"@(context.Variables.GetValueOrDefault<string>("a") ?? throw new ArgumentException("no a"))"#),
        StaticType::String
    );
    assert!(ops(r#"@{ if (true) { throw new InvalidOperationException("x"); } return 1; }"#).contains(&Op::Throw));
    // A block ending in a try whose branches all return (or throw) returns on every path.
    ok(r#"@{ try { return 1; } catch { throw; } }"#);
    ok(r#"@{ try { } finally { } return 1; }"#);
    // break and continue inside a try inside a loop leave it.
    let (program, _) = ok(
        r#"@{ var n = 0; foreach (var x in new [] {1, 2, 3}) { try { if (x == 2) { continue; } if (x == 3) { break; } n += x; } catch { } } return n; }"#,
    );
    assert!(program.ops.iter().filter(|op| **op == Op::TryExit).count() >= 3);
}

#[test]
fn switch_compiles_to_equality_tests_and_breaks() {
    let source = r#"@{ string r; switch (context.Request.Method) { case "GET": case "HEAD": r = "read"; break; case "DELETE": return "gone"; default: r = "write"; break; } return r; }"#;
    let (program, t) = ok(source);
    assert_eq!(t, StaticType::String);
    assert_eq!(program.ops.iter().filter(|op| **op == Op::Eq).count(), 3);
    // A switch with a default whose sections all return ends the block.
    ok(r#"@{ switch (1 + 1) { case 1: return "one"; case 2: return "two"; default: return "many"; } }"#);
    // continue inside a switch inside a loop goes to the loop.
    ok(
        r#"@{ var n = 0; for (var i = 0; i < 3; i++) { switch (i) { case 1: continue; default: n += i; break; } } return n; }"#,
    );
    assert!(err(r#"@{ switch (1) { case 1: continue; } return 1; }"#).message.contains("inside a loop"));
}

#[test]
fn const_locals_and_anonymous_objects() {
    assert_eq!(ty(r#"@{ const int limit = 5; const string name = "x"; return name + limit; }"#), StaticType::String);
    let (program, t) = ok(r#"@(new { id = 1, name = "a", context.Request.Method })"#);
    assert!(matches!(t, StaticType::Anonymous(ref members) if members.len() == 3 && members[2].0 == "Method"));
    assert_eq!(program.ops.iter().filter(|op| **op == Op::Call(Builtin::JSet, 3)).count(), 3);
    assert_eq!(ty(r#"@(new { a = "x" }.a.ToUpper())"#), StaticType::String);
    assert_eq!(ty(r#"@(JsonConvert.SerializeObject(new { ok = true, items = new [] { 1, 2 } }))"#), StaticType::String);
    assert_eq!(ty(r#"@(JObject.FromObject(new { a = 1 }))"#), StaticType::JObject);
    assert!(err(r#"@(new { a = 1 }.b)"#).message.contains("has no member `b`"));
}

#[test]
fn sized_arrays_element_assignment_and_dictionary_initializers() {
    assert_eq!(ty(r#"@(new string[3])"#), StaticType::array_of(StaticType::String));
    assert!(ops(r#"@{ var a = new int[2]; a[1] = 5; return a[1]; }"#).contains(&Op::Call(Builtin::ElementSet, 3)));
    let source = r#"@{ var d = new Dictionary<string, string> { { "a", "1" }, ["b"] = "2" }; d["c"] = "3"; d.Add("e", "4"); return d["b"]; }"#;
    assert_eq!(ty(source), StaticType::String);
    assert_eq!(ops(source).iter().filter(|op| **op == Op::Call(Builtin::ElementSet, 3)).count(), 4);
}

#[test]
fn added_members_and_types() {
    for (source, expected) in [
        (r#"@(new DateTime(2024, 1, 2))"#, StaticType::DateTime),
        (r#"@(new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc))"#, StaticType::DateTime),
        (r#"@(new DateTimeOffset(2024, 1, 2, 3, 4, 5, TimeSpan.Zero))"#, StaticType::DateTime),
        (r#"@(DateTime.MinValue < DateTime.MaxValue)"#, StaticType::Bool),
        (r#"@(new TimeSpan(1, 2, 3).TotalSeconds)"#, StaticType::Double),
        (r#"@(Guid.NewGuid().ToByteArray())"#, StaticType::Bytes),
        (r#"@(Math.Abs(Guid.NewGuid().GetHashCode()) % 100)"#, StaticType::Int),
        (r#"@(new [] {1, 2}.Single())"#, StaticType::Int),
        (r#"@(new [] {1, 2}.SingleOrDefault(x => x > 1))"#, StaticType::Int),
        (r#"@(new [] {1, 2}.Max())"#, StaticType::Int),
        (r#"@(new [] {"a", "bb"}.Max(x => x.Length))"#, StaticType::Int),
        (r#"@(new [] {1, 2}.Average())"#, StaticType::Double),
        (
            r#"@("a b  c".Split(new [] {' '}, 2, StringSplitOptions.RemoveEmptyEntries))"#,
            StaticType::array_of(StaticType::String),
        ),
        (r#"@(JObject.Parse("{}").Type == JTokenType.Object)"#, StaticType::Bool),
        (r#"@(((JToken)JObject.Parse("{}")).HasValues)"#, StaticType::Bool),
        (r#"@(new Uri("https://a.example/x?y=1").Host)"#, StaticType::String),
        (r#"@(new Uri(context.Request.Url.ToString()).Port)"#, StaticType::Int),
        (r#"@(new StringBuilder().Append("a").Append(1).AppendLine().ToString())"#, StaticType::String),
        (r#"@(new StringBuilder("x").AppendFormat("{0}-{1}", 1, 2).Length)"#, StaticType::Int),
        (r#"@(new Random().Next(1, 7))"#, StaticType::Int),
        (r#"@(new Random(42).NextDouble())"#, StaticType::Double),
        (r#"@{ try { return 1; } catch (Exception e) { return e.Message.Length; } }"#, StaticType::Int),
    ] {
        assert_eq!(ty(source), expected, "{source}");
    }
    assert!(err(r#"@(new Uri("https://a.example").Nope)"#).message.contains("no supported member"));
    assert!(err(r#"@(new StringBuilder().Clear())"#).message.contains("no supported method"));
}

#[test]
fn order_by_a_key_try_parse_of_other_types_and_token_type_names() {
    let (program, t) = ok(r#"@(new [] {"bb", "a", "ccc"}.OrderByDescending(x => x.Length))"#);
    assert_eq!(t, StaticType::array_of(StaticType::String));
    assert!(program.ops.contains(&Op::Call(Builtin::SeqOrderByKeys, 2)));
    assert!(err(r#"@(new [] {"a"}.OrderBy(x => new JObject()))"#).message.contains("can be ordered"));
    for source in [
        r#"@(double.TryParse("1.5", out var d) ? d : 0.0)"#,
        r#"@(bool.TryParse("x", out bool b) && b)"#,
        r#"@(DateTime.TryParse("2024-01-01", out var when) ? when.Year : 0)"#,
        r#"@(Guid.TryParse("x", out var g) ? g.ToString() : "none")"#,
    ] {
        let (program, _) = ok(source);
        assert!(program.ops.iter().any(|op| matches!(op, Op::TryEnter { .. })), "{source}");
    }
    assert_eq!(ty(r#"@(JObject.Parse("{}").Type.ToString())"#), StaticType::String);
}

#[test]
fn local_functions_are_inlined_where_called() {
    let source = r#"@{
        string Normalize(string s) { if (s == null) { return ""; } return s.Trim().ToLower(); }
        int Twice(int n) => n * 2;
        void Nothing() { return; }
        Nothing();
        var s = "kept";
        return Normalize(" A ") + Twice(21) + Normalize(s) + s;
    }"#;
    let (program, t) = ok(source);
    assert_eq!(t, StaticType::String);
    // Normalize's body is there twice, once per call.
    assert_eq!(program.ops.iter().filter(|op| **op == Op::Call(Builtin::StrTrim, 1)).count(), 2);
    // Called before its declaration, from another local function.
    ok(r#"@{ int A(int x) => B(x) + 1; int B(int y) => y * 3; return A(1); }"#);
    assert!(err(r#"@{ int F(int x) => F(x); return F(1); }"#).message.contains("recursive"));
    assert!(
        err(r#"@{ int F(int x) { if (x > 0) { return 1; } } return F(1); }"#).message.contains("not all code paths")
    );
    assert!(err(r#"@{ int F(int x) => x; return F("a"); }"#).message.contains("takes int here, not string"));
    assert!(err(r#"@{ int F(int x) => x; return F(); }"#).message.contains("takes 1 argument"));
    assert!(err(r#"@{ int F(int x) => "s"; return F(1); }"#).message.contains("returns int"));
}

#[test]
fn apim_encrypt_and_decrypt_extensions() {
    for source in [
        r#"@(Encoding.UTF8.GetBytes("x").Encrypt("Aes", Convert.FromBase64String("a"), Convert.FromBase64String("b")))"#,
        r#"@(Convert.FromBase64String("x").Decrypt(Aes.Create(), new byte[] { 1 }, new byte[] { 2 }))"#,
        r#"@{ var aes = new AesManaged(); return Encoding.UTF8.GetBytes("x").Encrypt(aes, new byte[] { 1 }, new byte[] { 2 }); }"#,
    ] {
        let (program, t) = ok(source);
        assert_eq!(t, StaticType::Bytes, "{source}");
        assert!(
            program.ops.iter().any(|op| matches!(op, Op::Call(Builtin::BytesEncrypt | Builtin::BytesDecrypt, 4))),
            "{source}"
        );
    }
}

#[test]
fn json_children() {
    assert_eq!(ty(r#"@(JObject.Parse("{}").Children())"#), StaticType::array_of(StaticType::JProperty));
    assert_eq!(ty(r#"@(JArray.Parse("[1]").Children().Count())"#), StaticType::Int);
}

#[test]
fn byte_arrays_of_constants_are_byte_values() {
    assert_eq!(ty("@(new byte[16])"), StaticType::Bytes);
    assert_eq!(ty("@(new byte[] { 1, 2, 255 })"), StaticType::Bytes);
    assert_eq!(ops("@(new byte[] { 1, 2, 255 })"), [Op::Const(0), Op::Call(Builtin::ConvertFromBase64String, 1)]);
    assert!(err("@(new byte[] { 256 })").message.contains("does not fit in a byte"));
    assert_eq!(ty(r#"@(Encoding.UTF8.GetBytes("x").Encrypt("Aes", new byte[16], new byte[16]))"#), StaticType::Bytes);
}

#[test]
fn try_nesting_is_bounded_by_the_vm_handler_stack() {
    let nested = |depth: usize| {
        let mut source = String::from("@{ ");
        for _ in 0..depth {
            source.push_str("try { ");
        }
        source.push_str("return 1; ");
        for _ in 0..depth {
            source.push_str("} catch { return 2; } finally { } ");
        }
        source.push('}');
        source
    };
    ok(&nested(portcullis_contract::program::TRY_DEPTH_MAX / 2));
    assert!(err(&nested(portcullis_contract::program::TRY_DEPTH_MAX / 2 + 1)).message.contains("nest too deeply"));
}
