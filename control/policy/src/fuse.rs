//! Peephole fusion: op sequences whose operands are constants become one op that carries them.
//!
//! The statement and expression compilers emit a uniform stack code (a policy's values are
//! pushed, the policy op pops them). For the most common policies those values are literals,
//! and pushing them costs more per request than the policy itself. After the jumps are patched,
//! this pass rewrites:
//!
//! | sequence | fused op |
//! |---|---|
//! | `Const(s); SetHeader { values: 1 }` | `SetHeaderConst` (when `s` is a valid header value) |
//! | `Int(status); Const(m) \| Null; CheckHeader` | `CheckHeaderConst` (status in 100..=599) |
//! | `Const(t); RewriteUri` | `RewriteUriConst` |
//! | `Context; Prop(Request); Prop(Headers); Const(n); [Const(d);] Call(GetValueOrDefault[With])` | `RequestHeader` |
//! | `Jump` to the next op | nothing |
//!
//! A sequence is fused only when no jump lands inside it (a jump to its first op lands on the
//! fused op); every jump target is then renumbered. The fused ops do exactly what the sequence
//! did, so the pass changes no behaviour, only the op count (the typical inbound section of the
//! benchmarks goes from 30 ops to 17).

use portcullis_contract::program::{Builtin, Const, Op, Prop, is_header_value};

/// Fuses `ops` (whose constants are `consts`); returns the new op list.
pub(crate) fn fuse(ops: &[Op], consts: &[Const]) -> Vec<Op> {
    let len = ops.len();
    let mut targeted = vec![false; len + 1];
    for op in ops {
        if let Some(target) = op.jump_target() {
            if let Some(slot) = targeted.get_mut(target as usize) {
                *slot = true;
            }
        }
    }
    let string = |index: u32| match consts.get(index as usize) {
        Some(Const::Str(text)) => Some(text.as_str()),
        _ => None,
    };
    // renumbered[i]: the new index of old op i (ops inside a fused run map to the fused op).
    let mut renumbered = vec![0u32; len + 1];
    let mut out = Vec::with_capacity(len);
    let mut at = 0;
    while at < len {
        // A jump to the next op (the end of a `when` that is the last branch) does nothing.
        if ops[at] == Op::Jump(at as u32 + 1) {
            renumbered[at] = out.len() as u32;
            at += 1;
            continue;
        }
        let window = &ops[at..];
        let fused = fuse_at(window, &string).filter(|(_, width)| !targeted[at + 1..at + width].contains(&true));
        let (op, width) = fused.unwrap_or((ops[at], 1));
        renumbered[at..at + width].fill(out.len() as u32);
        out.push(op);
        at += width;
    }
    renumbered[len] = out.len() as u32;
    for op in &mut out {
        if let Some(target) = op.jump_target() {
            let new = renumbered.get(target as usize).copied().unwrap_or(u32::MAX);
            *op = crate::code::with_target(*op, new);
        }
    }
    out
}

/// The fused op for the sequence starting `window`, and how many ops it replaces.
fn fuse_at<'c>(window: &[Op], string: &impl Fn(u32) -> Option<&'c str>) -> Option<(Op, usize)> {
    match *window {
        [Op::Const(value), Op::SetHeader { side, action, name, values: 1 }, ..]
            if string(value).is_some_and(is_header_value) =>
        {
            Some((Op::SetHeaderConst { side, action, name, value }, 2))
        }
        [
            Op::Int(status),
            message @ (Op::Const(_) | Op::Null),
            Op::CheckHeader { name, values_first, values, ignore_case },
            ..,
        ] if (100..=599).contains(&status) => {
            let message = match message {
                Op::Const(index) => Some(string(index).map(|_| index)?),
                _ => None,
            };
            let status = status as u16;
            Some((Op::CheckHeaderConst { name, values_first, values, ignore_case, status, message }, 3))
        }
        [Op::Const(template), Op::RewriteUri { copy_unmatched }, ..] if string(template).is_some() => {
            Some((Op::RewriteUriConst { template, copy_unmatched }, 2))
        }
        [
            Op::Context,
            Op::Prop(Prop::Request),
            Op::Prop(Prop::Headers),
            Op::Const(name),
            Op::Call(Builtin::GetValueOrDefault, 2),
            ..,
        ] if string(name).is_some() => Some((Op::RequestHeader { name, default: None }, 5)),
        [
            Op::Context,
            Op::Prop(Prop::Request),
            Op::Prop(Prop::Headers),
            Op::Const(name),
            Op::Const(default),
            Op::Call(Builtin::GetValueOrDefaultWith, 3),
            ..,
        ] if string(name).is_some() => Some((Op::RequestHeader { name, default: Some(default) }, 6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use portcullis_contract::program::{ExistsAction, Side};

    use super::*;

    fn consts() -> Vec<Const> {
        vec![Const::Str("X-Env".into()), Const::Str("bad\r\nvalue".into()), Const::Str("ok".into()), Const::Int(7)]
    }

    #[test]
    fn a_literal_set_header_becomes_one_op() {
        let set = |values| Op::SetHeader { side: Side::Request, action: ExistsAction::Override, name: 0, values };
        let ops = [Op::Site(0), Op::Const(2), set(1)];
        assert_eq!(
            fuse(&ops, &consts()),
            [
                Op::Site(0),
                Op::SetHeaderConst { side: Side::Request, action: ExistsAction::Override, name: 0, value: 2 }
            ]
        );
        // A value the header cannot carry keeps the checked form (it fails per request, as before).
        let ops = [Op::Const(1), set(1)];
        assert_eq!(fuse(&ops, &consts()), ops);
        // Two values, or a value that is not a string constant, are not fused.
        let ops = [Op::Const(2), Op::Const(2), set(2)];
        assert_eq!(fuse(&ops, &consts()), ops);
        let ops = [Op::Const(3), set(1)];
        assert_eq!(fuse(&ops, &consts()), ops);
    }

    #[test]
    fn check_header_takes_its_status_and_message_as_constants() {
        let check = Op::CheckHeader { name: 0, values_first: 2, values: 1, ignore_case: false };
        let fused = |message| Op::CheckHeaderConst {
            name: 0,
            values_first: 2,
            values: 1,
            ignore_case: false,
            status: 403,
            message,
        };
        assert_eq!(fuse(&[Op::Int(403), Op::Const(2), check], &consts()), [fused(Some(2))]);
        assert_eq!(fuse(&[Op::Int(403), Op::Null, check], &consts()), [fused(None)]);
        // Out of range: the VM's fallback (401) stays the VM's.
        let ops = [Op::Int(42), Op::Null, check];
        assert_eq!(fuse(&ops, &consts()), ops);
    }

    #[test]
    fn a_literal_header_read_becomes_one_op() {
        let with = [
            Op::Context,
            Op::Prop(Prop::Request),
            Op::Prop(Prop::Headers),
            Op::Const(0),
            Op::Const(2),
            Op::Call(Builtin::GetValueOrDefaultWith, 3),
            Op::Pop,
        ];
        assert_eq!(fuse(&with, &consts()), [Op::RequestHeader { name: 0, default: Some(2) }, Op::Pop]);
        let without = [
            Op::Context,
            Op::Prop(Prop::Request),
            Op::Prop(Prop::Headers),
            Op::Const(0),
            Op::Call(Builtin::GetValueOrDefault, 2),
            Op::Pop,
        ];
        assert_eq!(fuse(&without, &consts()), [Op::RequestHeader { name: 0, default: None }, Op::Pop]);
        // The response's headers are not fused (they may be absent: the unfused ops fail then).
        let response = [
            Op::Context,
            Op::Prop(Prop::Response),
            Op::Prop(Prop::Headers),
            Op::Const(0),
            Op::Call(Builtin::GetValueOrDefault, 2),
            Op::Pop,
        ];
        assert_eq!(fuse(&response, &consts()), response);
    }

    #[test]
    fn jumps_are_renumbered_and_never_land_inside_a_fused_run() {
        let set = Op::SetHeader { side: Side::Request, action: ExistsAction::Append, name: 0, values: 1 };
        // 0 JumpIfFalse(3) needs a bool: shape only matters here, not stack types.
        let ops = [Op::Bool(true), Op::JumpIfFalse(4), Op::Const(2), set, Op::Jump(0), Op::Const(2), set];
        let fused = fuse(&ops, &consts());
        let set_const = Op::SetHeaderConst { side: Side::Request, action: ExistsAction::Append, name: 0, value: 2 };
        assert_eq!(fused, [Op::Bool(true), Op::JumpIfFalse(3), set_const, Op::Jump(0), set_const]);
        // A jump to the next op goes; jumps to it land on the op after it.
        let ops = [Op::Bool(true), Op::JumpIfFalse(3), Op::Jump(3), Op::Pop];
        assert_eq!(fuse(&ops, &consts()), [Op::Bool(true), Op::JumpIfFalse(2), Op::Pop]);
        // A jump into the middle of a sequence keeps it unfused.
        let ops = [Op::Bool(true), Op::JumpIfFalse(3), Op::Const(2), set, Op::Jump(0)];
        let fused = fuse(&ops, &consts());
        assert_eq!(fused, ops);
    }
}
