//! `List<T>` mutators, the LINQ element family and the `IUrl`/`IGateway` members that real
//! documents use (issue 17's yardstick).

use portcullis_contract::program::{Builtin, Const, Op, Prop};

use super::*;

/// `string.Join(",", list)` after `ops` ran on the list `[1, 2, 3]` in local 0 (each op's result
/// is popped; `ops` start with the list on the stack).
fn after(steps: &[&[Op]]) -> Result<String, Box<PolicyError>> {
    let mut ops = vec![Op::Int(1), Op::Int(2), Op::Int(3), Op::MakeArray(3), Op::StoreLocal(0)];
    for step in steps {
        ops.push(Op::LoadLocal(0));
        ops.extend_from_slice(step);
        ops.push(Op::Pop);
    }
    ops.extend([Op::Const(0), Op::LoadLocal(0), Op::Call(Builtin::StrJoin, 2)]);
    eval(ops, vec![s(",")])
}

#[test]
fn list_mutators_change_the_list_in_place() {
    assert_eq!(after(&[&[Op::Call(Builtin::ListClear, 1)]]).expect("ok"), "");
    assert_eq!(after(&[&[Op::Int(2), Op::Call(Builtin::ListRemove, 2)]]).expect("ok"), "1,3");
    // Remove of an absent value changes nothing; RemoveAt takes a position.
    assert_eq!(after(&[&[Op::Int(9), Op::Call(Builtin::ListRemove, 2)]]).expect("ok"), "1,2,3");
    assert_eq!(after(&[&[Op::Int(0), Op::Call(Builtin::ListRemoveAt, 2)]]).expect("ok"), "2,3");
    assert_eq!(after(&[&[Op::Int(3), Op::Int(4), Op::Call(Builtin::ListInsert, 3)]]).expect("ok"), "1,2,3,4");
    assert_eq!(after(&[&[Op::Int(0), Op::Int(0), Op::Call(Builtin::ListInsert, 3)]]).expect("ok"), "0,1,2,3");
    let range = [Op::Int(7), Op::Int(8), Op::MakeArray(2), Op::Call(Builtin::ListAddRange, 2)];
    assert_eq!(after(&[&range]).expect("ok"), "1,2,3,7,8");
    // Clear, then Add: the advanced-load-balancing sample's pattern.
    assert_eq!(
        after(&[&[Op::Call(Builtin::ListClear, 1)], &[Op::Int(5), Op::Call(Builtin::ListAdd, 2)]]).expect("ok"),
        "5"
    );
    // Out of range fails as .NET's ArgumentOutOfRangeException does.
    for step in [[Op::Int(3), Op::Call(Builtin::ListRemoveAt, 2)], [Op::Int(-1), Op::Call(Builtin::ListRemoveAt, 2)]] {
        let error = after(&[&step]).expect_err("out of range");
        assert!(error.last_error.message.contains("Index was out of range"), "{}", error.last_error.message);
    }
    let error = after(&[&[Op::Int(4), Op::Int(0), Op::Call(Builtin::ListInsert, 3)]]).expect_err("past the end");
    assert!(error.last_error.message.contains("Index was out of range"), "{}", error.last_error.message);
    // A null list fails as a NullReferenceException.
    let error = eval(vec![Op::Null, Op::Call(Builtin::ListClear, 1)], vec![]).expect_err("null");
    assert!(error.last_error.message.contains("Object reference not set"), "{}", error.last_error.message);
}

#[test]
fn remove_returns_whether_it_removed() {
    let remove = |value: i32| {
        eval(vec![Op::Int(1), Op::Int(2), Op::MakeArray(2), Op::Int(value), Op::Call(Builtin::ListRemove, 2)], vec![])
    };
    assert_eq!(remove(2).expect("ok"), "Boolean:True");
    assert_eq!(remove(5).expect("ok"), "Boolean:False");
}

#[test]
fn index_of_and_the_element_family() {
    let seq = |tail: &[Op]| {
        let mut ops = vec![Op::Const(0), Op::Const(1), Op::MakeArray(2)];
        ops.extend_from_slice(tail);
        eval(ops, vec![s("a"), s("b"), s("fallback")])
    };
    assert_eq!(seq(&[Op::Const(1), Op::Call(Builtin::SeqIndexOf, 2)]).expect("ok"), "Int32:1");
    assert_eq!(seq(&[Op::Const(2), Op::Call(Builtin::SeqIndexOf, 2)]).expect("ok"), "Int32:-1");
    assert_eq!(seq(&[Op::Int(1), Op::Null, Op::Call(Builtin::SeqElementAtOrDefault, 3)]).expect("ok"), "b");
    assert_eq!(seq(&[Op::Int(2), Op::Null, Op::Call(Builtin::SeqElementAtOrDefault, 3)]).expect("ok"), "null");
    assert_eq!(seq(&[Op::Int(-1), Op::Const(2), Op::Call(Builtin::SeqElementAtOrDefault, 3)]).expect("ok"), "fallback");
    // DefaultIfEmpty: the items when there are any, else one default.
    let join = [Op::StoreLocal(0), Op::Const(3), Op::LoadLocal(0), Op::Call(Builtin::StrJoin, 2)];
    let mut ops =
        vec![Op::Const(0), Op::Const(1), Op::MakeArray(2), Op::Const(2), Op::Call(Builtin::SeqDefaultIfEmpty, 2)];
    ops.extend_from_slice(&join);
    assert_eq!(eval(ops, vec![s("a"), s("b"), s("fallback"), s("|")]).expect("ok"), "a|b");
    let mut ops = vec![Op::MakeArray(0), Op::Const(2), Op::Call(Builtin::SeqDefaultIfEmpty, 2)];
    ops.extend_from_slice(&join);
    assert_eq!(eval(ops, vec![s("a"), s("b"), s("fallback"), s("|")]).expect("ok"), "fallback");
    // Strings are sequences of chars.
    let ops = vec![Op::Const(0), Op::Int(1), Op::Null, Op::Call(Builtin::SeqElementAtOrDefault, 3)];
    assert_eq!(eval(ops, vec![s("xyz")]).expect("ok"), "y");
}

#[test]
fn urls_read_as_absolute_urls() {
    let read = |props: &[Prop]| {
        let mut ops = vec![Op::Context];
        ops.extend(props.iter().map(|p| Op::Prop(*p)));
        eval(ops, vec![])
    };
    assert_eq!(
        read(&[Prop::Request, Prop::OriginalUrl, Prop::AbsoluteUrl]).expect("ok"),
        "http://gw.example/echo/users/42?x=1&y=two"
    );
    let current = read(&[Prop::Request, Prop::Url, Prop::AbsoluteUrl]).expect("ok");
    assert!(current.contains("://backend") && current.ends_with("/api/users/42?x=1&y=two"), "{current}");
    // `OriginalUrl.ToUri().Host`: the Uri's parts are read from that string.
    let ops = vec![
        Op::Context,
        Op::Prop(Prop::Request),
        Op::Prop(Prop::OriginalUrl),
        Op::Prop(Prop::AbsoluteUrl),
        Op::Int(2),
        Op::Call(Builtin::UriPart, 2),
    ];
    assert_eq!(eval(ops, vec![]).expect("ok"), "gw.example");
}

#[test]
fn the_gateway_is_self_hosted_with_one_instance_id() {
    let read = |prop: Prop| {
        eval(vec![Op::Context, Op::Prop(Prop::Deployment), Op::Prop(Prop::Gateway), Op::Prop(prop)], vec![])
    };
    assert_eq!(read(Prop::Id).expect("ok"), "gw");
    assert_eq!(read(Prop::IsManaged).expect("ok"), "Boolean:False");
    let first = read(Prop::InstanceId).expect("ok");
    assert_eq!(first.len(), 36, "{first}");
    assert_eq!(first.as_bytes()[14], b'4', "a version 4 GUID: {first}");
    assert_eq!(read(Prop::InstanceId).expect("ok"), first, "one id per process");
}

fn binary(builtin: Builtin, x: i32, y: i32) -> Result<String, Box<PolicyError>> {
    eval(vec![Op::Int(x), Op::Int(y), Op::Call(builtin, 2)], vec![])
}

#[test]
fn bitwise_operators_and_shifts_follow_csharp_int() {
    assert_eq!(binary(Builtin::BitAnd, 0x0F0F, 0x00FF).expect("ok"), "Int32:15");
    assert_eq!(binary(Builtin::BitOr, 0x0F00, 0x00F0).expect("ok"), "Int32:4080");
    assert_eq!(binary(Builtin::BitXor, 6, 3).expect("ok"), "Int32:5");
    assert_eq!(eval(vec![Op::Int(0), Op::Call(Builtin::BitNot, 1)], vec![]).expect("ok"), "Int32:-1");
    // An int shifts in 32 bits: the count is taken mod 32 and the bits past 31 are lost.
    assert_eq!(binary(Builtin::ShiftLeft, -1, 24).expect("ok"), "Int32:-16777216");
    assert_eq!(binary(Builtin::ShiftLeft, -1, 32).expect("ok"), "Int32:-1");
    assert_eq!(binary(Builtin::ShiftLeft, 1, 31).expect("ok"), "Int32:-2147483648");
    assert_eq!(binary(Builtin::ShiftRight, -256, 8).expect("ok"), "Int32:-1");
    assert_eq!(binary(Builtin::ShiftRight, 0x7FFF_0000, 16).expect("ok"), "Int32:32767");
    // A value beyond int's range is a long: 64 bits.
    let long = eval(vec![Op::Const(0), Op::Int(4), Op::Call(Builtin::ShiftLeft, 2)], vec![Const::Int(1 << 40)]);
    assert_eq!(long.expect("ok"), "Int32:17592186044416");
    // Bools: the logical operators, both sides evaluated.
    let logical = |builtin| eval(vec![Op::Bool(true), Op::Bool(false), Op::Call(builtin, 2)], vec![]);
    assert_eq!(logical(Builtin::BitAnd).expect("ok"), "Boolean:False");
    assert_eq!(logical(Builtin::BitOr).expect("ok"), "Boolean:True");
    assert_eq!(logical(Builtin::BitXor).expect("ok"), "Boolean:True");
    assert!(eval(vec![Op::Bool(true), Op::Int(1), Op::Call(Builtin::ShiftLeft, 2)], vec![]).is_err());
}

#[test]
fn narrowing_keeps_the_low_bits_or_fails_when_checked() {
    let narrow = |x: i32, kind: i32| binary(Builtin::IntNarrow, x, kind);
    assert_eq!(narrow(0xF0FF, 2).expect("ok"), "Int32:-3841", "(short)0xF0FF");
    assert_eq!(narrow(-1, 3).expect("ok"), "Int32:65535", "(ushort)-1");
    assert_eq!(narrow(300, 1).expect("ok"), "Int32:44", "(byte)300");
    assert_eq!(narrow(200, 0).expect("ok"), "Int32:-56", "(sbyte)200");
    assert_eq!(narrow(-1, 4).expect("ok"), "Int32:4294967295", "(uint)-1");
    // Convert.ToByte: in range passes, out of range is an OverflowException.
    assert_eq!(narrow(255, 1 + 8).expect("ok"), "Int32:255");
    let error = narrow(256, 1 + 8).expect_err("overflow");
    assert!(
        error.last_error.message.contains("too large or too small for an unsigned byte"),
        "{}",
        error.last_error.message
    );
    assert!(narrow(1, 7).is_err(), "an unknown kind");
}

#[test]
fn computed_bytes_and_bit_converter() {
    let bytes = |items: &[i32]| {
        let mut ops: Vec<Op> = items.iter().map(|v| Op::Int(*v)).collect();
        ops.push(Op::MakeArray(items.len() as u16));
        ops.push(Op::Call(Builtin::BytesFromArray, 1));
        ops
    };
    let mut ops = bytes(&[10, 0, 0, 200]);
    ops.extend([Op::Int(0), Op::Call(Builtin::BitConverterToInt32, 2)]);
    // Little-endian, signed: 0xC800000A.
    assert_eq!(eval(ops, vec![]).expect("ok"), "Int32:-939524086");
    let mut ops = bytes(&[1, 2, 3, 4]);
    ops.extend([Op::Int(1), Op::Call(Builtin::BitConverterToInt32, 2)]);
    assert!(eval(ops, vec![]).is_err(), "past the end");
    assert!(eval(bytes(&[256]), vec![]).is_err(), "not a byte");
}
