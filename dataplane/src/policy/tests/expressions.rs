//! `try`/`catch`/`throw` in the VM and the builtins added for real-world documents.

use portcullis_contract::program::{Builtin, Const, Op};

use super::*;

fn call(builtin: Builtin, args: &[Const]) -> Result<String, Box<PolicyError>> {
    let ops = (0..args.len() as u32).map(Op::Const).chain([Op::Call(builtin, args.len() as u8)]).collect();
    eval(ops, args.to_vec())
}

#[test]
fn a_failure_inside_a_try_goes_to_its_handler_with_the_message() {
    // try { int.Parse("x") } catch (e) { e } — the handler is the final SetVariable.
    let ops = vec![
        Op::Const(1),
        Op::TryEnter { handler: 6 },
        Op::Const(0),
        Op::Call(Builtin::IntParse, 1),
        Op::TryExit,
        Op::Jump(6),
        Op::Concat(2),
    ];
    // The value under the try ("caught: ") stays; what the try pushed is dropped.
    let caught = eval(ops.clone(), vec![s("x"), s("caught: ")]).expect("caught");
    assert!(caught.starts_with("caught: "), "{caught}");
    assert!(!caught.contains("Expression evaluation failed."), "{caught}");
    // Nothing fails: the handler is never entered.
    let fine = eval(ops, vec![s("42"), s("ok: ")]).expect("ok");
    assert_eq!(fine, "ok: 42");
}

#[test]
fn throw_fails_the_expression_unless_caught() {
    let error = eval(vec![Op::Const(0), Op::Throw], vec![s("boom")]).expect_err("thrown");
    assert_eq!(&*error.last_error.message, "Expression evaluation failed. boom");
    assert_eq!(&*error.last_error.reason, "ExpressionValueEvaluationFailure");
    let error = eval(vec![Op::Null, Op::Throw], vec![]).expect_err("thrown");
    assert!(error.last_error.message.contains("System.Exception"), "{}", error.last_error.message);
    // Caught by the inner try; the outer one is left normally.
    let ops = vec![
        Op::TryEnter { handler: 7 },
        Op::TryEnter { handler: 4 },
        Op::Const(0),
        Op::Throw,
        Op::TryExit,
        Op::Jump(7),
        Op::Null,
    ];
    assert_eq!(eval(ops, vec![s("inner")]).expect("caught"), "inner");
    // After TryExit a failure is not caught any more.
    let ops = vec![Op::TryEnter { handler: 4 }, Op::TryExit, Op::Const(0), Op::Throw];
    assert!(eval(ops, vec![s("late")]).is_err());
}

#[test]
fn the_step_limit_is_not_an_exception() {
    // try { while (true) {} } catch { "caught" }: the limit ends the run anyway.
    let ops = vec![Op::TryEnter { handler: 3 }, Op::Jump(1), Op::Null, Op::Pop, Op::Const(0)];
    let error = eval(ops, vec![s("caught")]).expect_err("over the limit");
    assert!(error.last_error.message.contains("limit"), "{}", error.last_error.message);
}

#[test]
fn dates_guids_and_sequences() {
    let date = |parts: [i64; 7]| call(Builtin::DateTimeNew, &parts.map(Const::Int));
    assert_eq!(date([2024, 2, 29, 13, 4, 5, 6]).expect("ok"), "DateTime:02/29/2024 13:04:05");
    assert!(date([2023, 2, 29, 0, 0, 0, 0]).is_err());
    assert!(date([0, 1, 1, 0, 0, 0, 0]).is_err());
    assert!(date([2024, 1, 1, 24, 0, 0, 0]).is_err());
    let bytes = eval(
        vec![
            Op::Const(0),
            Op::Call(Builtin::GuidParse, 1),
            Op::Call(Builtin::GuidToByteArray, 1),
            Op::Call(Builtin::BitConverterToString, 1),
        ],
        vec![s("00112233-4455-6677-8899-aabbccddeeff")],
    );
    assert_eq!(bytes.expect("ok"), "33-22-11-00-55-44-77-66-88-99-AA-BB-CC-DD-EE-FF");
    let seq = |builtin: Builtin, items: &[i64]| {
        let mut ops: Vec<Op> = items.iter().map(|i| Op::Int(*i as i32)).collect();
        ops.push(Op::MakeArray(items.len() as u16));
        ops.push(Op::Call(builtin, 1));
        eval(ops, vec![])
    };
    assert_eq!(seq(Builtin::SeqSingle, &[7]).expect("ok"), "Int32:7");
    assert!(seq(Builtin::SeqSingle, &[]).is_err());
    assert!(seq(Builtin::SeqSingle, &[1, 2]).is_err());
    assert_eq!(seq(Builtin::SeqSingleOrDefault, &[]).expect("ok"), "null");
    assert!(seq(Builtin::SeqSingleOrDefault, &[1, 2]).is_err());
    assert_eq!(seq(Builtin::SeqMax, &[3, 9, 2]).expect("ok"), "Int32:9");
    assert_eq!(seq(Builtin::SeqMin, &[3, 9, 2]).expect("ok"), "Int32:2");
    assert_eq!(seq(Builtin::SeqAverage, &[1, 2]).expect("ok"), "Double:1.5");
    assert!(seq(Builtin::SeqMax, &[]).is_err());
}

#[test]
fn split_with_a_count() {
    let second = |text: &str, count: i64, options: i64| {
        eval(
            vec![
                Op::Const(0),
                Op::Const(1),
                Op::MakeArray(1),
                Op::Const(2),
                Op::Const(3),
                Op::Call(Builtin::StrSplitCount, 4),
                Op::Int(1),
                Op::Index,
            ],
            vec![s(text), s("|"), Const::Int(count), Const::Int(options)],
        )
    };
    // The last part holds the rest, separators included.
    assert_eq!(second("a|b|c", 2, 0).expect("ok"), "b|c");
    assert_eq!(second("||a||b", 2, 1).expect("ok"), "|b");
    let count = |text: &str, count: i64, options: i64| {
        eval(
            vec![
                Op::Const(0),
                Op::Const(1),
                Op::MakeArray(1),
                Op::Const(2),
                Op::Const(3),
                Op::Call(Builtin::StrSplitCount, 4),
                Op::Prop(portcullis_contract::program::Prop::Length),
            ],
            vec![s(text), s("|"), Const::Int(count), Const::Int(options)],
        )
    };
    assert_eq!(count("a|b|c", 2, 0).expect("ok"), "Int32:2");
    assert_eq!(count("a|b|c", 1, 0).expect("ok"), "Int32:1");
    assert_eq!(count("a|b|c", 0, 0).expect("ok"), "Int32:0");
    assert_eq!(count("||a||b", 2, 1).expect("ok"), "Int32:2");
    assert!(count("a", -1, 0).is_err());
}

#[test]
fn json_token_type_and_has_values() {
    let token = |json: &str, builtin: Builtin| {
        eval(vec![Op::Const(0), Op::Call(Builtin::JTokenParse, 1), Op::Call(builtin, 1)], vec![s(json)])
    };
    assert_eq!(token("{\"a\":1}", Builtin::JTokenType).expect("ok"), "Int32:1");
    assert_eq!(token("[1]", Builtin::JTokenType).expect("ok"), "Int32:2");
    assert_eq!(token("\"s\"", Builtin::JTokenType).expect("ok"), "Int32:8");
    assert_eq!(token("1.5", Builtin::JTokenType).expect("ok"), "Int32:7");
    assert_eq!(token("{}", Builtin::JTokenHasValues).expect("ok"), "Boolean:False");
    assert_eq!(token("[0]", Builtin::JTokenHasValues).expect("ok"), "Boolean:True");
}

#[test]
fn uris() {
    let part = |uri: &str, name: &str| {
        let at = portcullis_contract::program::URI_PARTS.iter().position(|p| *p == name).expect("a part") as i64;
        call(Builtin::UriPart, &[s(uri), Const::Int(at)])
    };
    let uri = "HTTPS://Api.Example.com:8443/v1/users/42?x=1#top";
    assert_eq!(part(uri, "Host").expect("ok"), "api.example.com");
    assert_eq!(part(uri, "Scheme").expect("ok"), "https");
    assert_eq!(part(uri, "Port").expect("ok"), "Int32:8443");
    assert_eq!(part(uri, "AbsolutePath").expect("ok"), "/v1/users/42");
    assert_eq!(part(uri, "Query").expect("ok"), "?x=1");
    assert_eq!(part(uri, "PathAndQuery").expect("ok"), "/v1/users/42?x=1");
    assert_eq!(part(uri, "Fragment").expect("ok"), "#top");
    assert_eq!(part(uri, "Authority").expect("ok"), "api.example.com:8443");
    assert_eq!(part("http://a.example", "Port").expect("ok"), "Int32:80");
    assert_eq!(part("http://a.example", "AbsoluteUri").expect("ok"), "http://a.example/");
    assert_eq!(call(Builtin::UriNew, &[s("https://a.example:443/p")]).expect("ok"), "https://a.example/p");
    assert!(call(Builtin::UriNew, &[s("x")]).is_err());
    assert!(call(Builtin::UriNew, &[s("/relative/path")]).is_err());
}

#[test]
fn random_arrays_elements_and_builders() {
    for _ in 0..20 {
        let n = call(Builtin::RandomNext, &[Const::Int(1), Const::Int(3)]).expect("ok");
        assert!(n == "Int32:1" || n == "Int32:2", "{n}");
    }
    assert_eq!(call(Builtin::RandomNext, &[Const::Int(5), Const::Int(5)]).expect("ok"), "Int32:5");
    assert!(call(Builtin::RandomNext, &[Const::Int(5), Const::Int(1)]).is_err());
    let d = eval(vec![Op::Call(Builtin::RandomNextDouble, 0)], vec![]).expect("ok");
    let d: f64 = d.trim_start_matches("Double:").parse().expect("a number");
    assert!((0.0..1.0).contains(&d));
    // var a = new int[3]; a[1] = 5; string.Join(",", a)
    let ops = vec![
        Op::Int(3),
        Op::Int(0),
        Op::Call(Builtin::ArrayNew, 2),
        Op::StoreLocal(0),
        Op::LoadLocal(0),
        Op::Int(1),
        Op::Int(5),
        Op::Call(Builtin::ElementSet, 3),
        Op::Pop,
        Op::Const(0),
        Op::LoadLocal(0),
        Op::Call(Builtin::StrJoin, 2),
    ];
    assert_eq!(eval(ops, vec![s(",")]).expect("ok"), "0,5,0");
    assert!(call(Builtin::ArrayNew, &[Const::Int(-1), Const::Int(0)]).is_err());
    assert!(call(Builtin::ArrayNew, &[Const::Int(1 << 40), Const::Int(0)]).is_err());
    // A dictionary: set, overwrite, read.
    let ops = vec![
        Op::Call(Builtin::DictionaryNew, 0),
        Op::StoreLocal(0),
        Op::LoadLocal(0),
        Op::Const(0),
        Op::Int(1),
        Op::Call(Builtin::ElementSet, 3),
        Op::Pop,
        Op::LoadLocal(0),
        Op::Const(0),
        Op::Int(2),
        Op::Call(Builtin::ElementSet, 3),
        Op::Pop,
        Op::LoadLocal(0),
        Op::Const(0),
        Op::Index,
    ];
    assert_eq!(eval(ops, vec![s("k")]).expect("ok"), "Int32:2");
    // new StringBuilder().Append("a").Append(1).Append(true).ToString()
    let ops = vec![
        Op::Call(Builtin::ListNew, 0),
        Op::Const(0),
        Op::Call(Builtin::BuilderAppend, 2),
        Op::Int(1),
        Op::Call(Builtin::BuilderAppend, 2),
        Op::Bool(true),
        Op::Call(Builtin::BuilderAppend, 2),
        Op::Call(Builtin::StrConcat, 1),
    ];
    assert_eq!(eval(ops, vec![s("a")]).expect("ok"), "a1True");
}

#[test]
fn order_by_keys_sorts_the_items_stably_by_their_keys() {
    // new [] {"bb", "a", "cc"}.OrderBy(x => x.Length): keys [2, 1, 2].
    let ops = vec![
        Op::Const(0),
        Op::Const(1),
        Op::Const(2),
        Op::MakeArray(3),
        Op::Int(2),
        Op::Int(1),
        Op::Int(2),
        Op::MakeArray(3),
        Op::Call(Builtin::SeqOrderByKeys, 2),
        Op::StoreLocal(0),
        Op::Const(3),
        Op::LoadLocal(0),
        Op::Call(Builtin::StrJoin, 2),
    ];
    assert_eq!(eval(ops, vec![s("bb"), s("a"), s("cc"), s(",")]).expect("ok"), "a,bb,cc");
}

#[test]
fn try_parse_through_a_handler_gives_the_default_and_false() {
    // double.TryParse(s, out d) as the compiler lowers it, then `parsed + ":" + d`.
    let lowered = |input: &str| {
        let ops = vec![
            Op::TryEnter { handler: 7 },
            Op::Const(0),
            Op::Call(Builtin::DoubleParse, 1),
            Op::StoreLocal(0),
            Op::TryExit,
            Op::Bool(true),
            Op::Jump(11),
            Op::Pop,
            Op::Const(1),
            Op::StoreLocal(0),
            Op::Bool(false),
            Op::Const(2),
            Op::LoadLocal(0),
            Op::Concat(3),
        ];
        eval(ops, vec![s(input), Const::Double(0.0), s(":")])
    };
    assert_eq!(lowered("1.5").expect("ok"), "True:1.5");
    assert_eq!(lowered("x").expect("ok"), "False:0");
}

#[test]
fn aes_cbc_encrypt_and_decrypt_as_dotnet() {
    // NIST SP 800-38A F.2.1 (AES-128-CBC), first block; PKCS#7 adds a second.
    let bytes = |at: u32| [Op::Const(at), Op::Call(Builtin::ConvertFromBase64String, 1)];
    let mut encrypt: Vec<Op> = Vec::new();
    encrypt.extend(bytes(0));
    encrypt.push(Op::Const(3));
    encrypt.extend(bytes(1));
    encrypt.extend(bytes(2));
    encrypt.push(Op::Call(Builtin::BytesEncrypt, 4));
    let consts =
        vec![s("a8G+4i5An5bpPX4Rc5MXKg=="), s("K34VFiiu0qar9xWICc9PPA=="), s("AAECAwQFBgcICQoLDA0ODw=="), s("Aes")];
    let mut hex = encrypt.clone();
    hex.push(Op::Call(Builtin::BitConverterToString, 1));
    let cipher = eval(hex, consts.clone()).expect("encrypted");
    assert!(cipher.starts_with("76-49-AB-AC-81-19-B2-46-CE-E9-8E-9B-12-E9-19-7D-"), "{cipher}");
    assert_eq!(cipher.len(), 32 * 3 - 1);
    // Decrypt(Encrypt(x)) == x.
    let mut round = encrypt;
    round.push(Op::Const(3));
    round.extend(bytes(1));
    round.extend(bytes(2));
    round.push(Op::Call(Builtin::BytesDecrypt, 4));
    round.push(Op::Call(Builtin::ConvertToBase64String, 1));
    assert_eq!(eval(round, consts.clone()).expect("decrypted"), "a8G+4i5An5bpPX4Rc5MXKg==");
    // A wrong key size, an unknown algorithm, bad padding.
    let mut bad = bytes(0).to_vec();
    bad.push(Op::Const(3));
    bad.extend(bytes(0));
    bad.extend(bytes(2));
    bad.push(Op::Call(Builtin::BytesDecrypt, 4));
    assert!(eval(bad, consts.clone()).is_err());
    let mut des = bytes(0).to_vec();
    des.push(Op::Const(4));
    des.extend(bytes(1));
    des.extend(bytes(2));
    des.push(Op::Call(Builtin::BytesEncrypt, 4));
    let mut with_des = consts;
    with_des.push(s("TripleDES"));
    assert!(eval(des, with_des).is_err());
}

#[test]
fn guid_hash_code_is_dotnets() {
    // The four little-endian words of ToByteArray() XORed: 0x00112233 ^ 0x66774455 ^ 0xBBAA9988 ^
    // 0xFFEEDDCC, as an Int32.
    let hash = eval(
        vec![Op::Const(0), Op::Call(Builtin::GuidParse, 1), Op::Call(Builtin::GuidHashCode, 1)],
        vec![s("00112233-4455-6677-8899-aabbccddeeff")],
    );
    let expected = 0x0011_2233u32 ^ 0x6677_4455 ^ 0xBBAA_9988 ^ 0xFFEE_DDCC;
    assert_eq!(hash.expect("ok"), format!("Int32:{}", expected as i32));
}
