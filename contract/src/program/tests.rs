use super::*;

fn program(ops: Vec<Op>, consts: Vec<Const>, max_stack: u16) -> Program {
    Program { ops, consts, locals: 2, max_stack, step_limit: 1000, ..Program::default() }
}

#[test]
fn accepts_a_well_formed_program() {
    // `@(x ?? "d")` consumed by set-variable, then a choose.
    let p = program(
        vec![
            Op::Null,
            Op::JumpIfNotNull(4),
            Op::Pop,
            Op::Const(0),
            Op::SetVariable { name: 0 },
            Op::Bool(true),
            Op::JumpIfFalse(8),
            Op::Jump(8),
        ],
        vec![Const::Str("d".into())],
        2,
    );
    assert_eq!(verify(&p), Ok(()));
}

#[test]
fn refuses_jumps_past_the_end() {
    let p = program(vec![Op::Jump(2)], vec![], 1);
    assert!(matches!(verify(&p), Err(VerifyError::JumpOutOfRange { target: 2, .. })));
}

#[test]
fn refuses_bad_operands() {
    let p = program(vec![Op::Const(3), Op::Pop], vec![], 1);
    assert!(matches!(verify(&p), Err(VerifyError::ConstOutOfRange { index: 3, .. })));
    let p = program(vec![Op::LoadLocal(9), Op::Pop], vec![], 1);
    assert!(matches!(verify(&p), Err(VerifyError::LocalOutOfRange { index: 9, .. })));
    let p = program(vec![Op::Int(1), Op::SetVariable { name: 0 }], vec![Const::Int(1)], 1);
    assert!(matches!(verify(&p), Err(VerifyError::ConstKind { .. })));
    let p = program(vec![Op::IpFilter(0)], vec![], 0);
    assert!(matches!(verify(&p), Err(VerifyError::TableOutOfRange { what: "ip-filter", .. })));
}

#[test]
fn refuses_bad_operands_of_fused_ops() {
    let set = |value| Op::SetHeaderConst { side: Side::Request, action: ExistsAction::Override, name: 0, value };
    let consts = || vec![Const::Str("X-A".into()), Const::Str("one\r\nX-Injected: two".into()), Const::Int(1)];
    assert_eq!(verify(&program(vec![set(0)], consts(), 0)), Ok(()));
    // A constant header value must be one a header can carry: the VM does not check it again.
    assert!(matches!(verify(&program(vec![set(1)], consts(), 0)), Err(VerifyError::Operand { .. })));
    assert!(matches!(verify(&program(vec![set(2)], consts(), 0)), Err(VerifyError::ConstKind { .. })));
    let check = |status, message| Op::CheckHeaderConst {
        name: 0,
        values_first: 0,
        values: 1,
        ignore_case: false,
        status,
        message,
    };
    assert_eq!(verify(&program(vec![check(403, Some(0))], consts(), 0)), Ok(()));
    assert!(matches!(verify(&program(vec![check(42, None)], consts(), 0)), Err(VerifyError::Operand { .. })));
    assert!(matches!(verify(&program(vec![check(403, Some(2))], consts(), 0)), Err(VerifyError::ConstKind { .. })));
    let read = |default| vec![Op::RequestHeader { name: 0, default }, Op::Pop];
    assert_eq!(verify(&program(read(Some(2)), consts(), 1)), Ok(()));
    assert!(matches!(verify(&program(read(Some(7)), consts(), 1)), Err(VerifyError::ConstOutOfRange { .. })));
    let rewrite = |template| vec![Op::RewriteUriConst { template, copy_unmatched: true }];
    assert!(matches!(verify(&program(rewrite(2), consts(), 0)), Err(VerifyError::ConstKind { .. })));
}

#[test]
fn a_computed_forward_request_leaves_nothing_under_its_operands() {
    let forward = Op::ForwardRequestComputed { buffer_response: true };
    let p = program(vec![Op::Int(1), Op::Bool(true), Op::Bool(false), forward], vec![], 3);
    assert_eq!(verify(&p), Ok(()));
    // A value under the three operands would be lost across the suspension.
    let p = program(vec![Op::Null, Op::Int(1), Op::Bool(true), Op::Bool(false), forward, Op::Pop], vec![], 4);
    assert!(matches!(verify(&p), Err(VerifyError::StackNotEmpty { .. })));
}

#[test]
fn refuses_underflow_overflow_and_leftovers() {
    assert!(matches!(verify(&program(vec![Op::Pop], vec![], 1)), Err(VerifyError::StackUnderflow { at: 0 })));
    assert!(matches!(
        verify(&program(vec![Op::Null, Op::Null, Op::Pop, Op::Pop], vec![], 1)),
        Err(VerifyError::StackOverflow { depth: 2, max: 1, .. })
    ));
    assert!(matches!(verify(&program(vec![Op::Null], vec![], 1)), Err(VerifyError::StackNotEmpty { .. })));
}

#[test]
fn refuses_paths_that_disagree_on_depth() {
    // One path pushes before the merge point, the other does not.
    let p = program(vec![Op::Bool(true), Op::JumpIfFalse(3), Op::Null, Op::Pop], vec![], 2);
    assert!(matches!(verify(&p), Err(VerifyError::InconsistentStack { .. })));
}

#[test]
fn loops_verify() {
    // foreach (var x in arr) { }  with arr = new [] { 1 }
    let p = program(
        vec![Op::Int(1), Op::MakeArray(1), Op::IterInit(0), Op::IterNext(0, 6), Op::StoreLocal(1), Op::Jump(3)],
        vec![],
        1,
    );
    assert_eq!(verify(&p), Ok(()));
}

#[test]
fn refuses_bad_limits() {
    let mut p = program(vec![], vec![], 0);
    p.step_limit = 0;
    assert_eq!(verify(&p), Err(VerifyError::BadStepLimit(0)));
    let p = program(
        vec![
            Op::RetryInit(0),
            Op::RetryNext {
                local: 0,
                count: 51,
                interval_ms: 0,
                max_interval_ms: 0,
                delta_ms: 0,
                first_fast_retry: false,
                target: 0,
            },
        ],
        vec![],
        0,
    );
    assert!(matches!(verify(&p), Err(VerifyError::Operand { .. })));
}

#[test]
fn a_try_handler_starts_with_the_exception_on_the_try_stack() {
    // `@{ try { return 1; } catch (Exception ex) { return ex.Message; } }` into set-variable:
    // TryEnter; Int 1; StoreLocal; TryExit; Jump end; handler: (message) StoreLocal; end.
    let p = program(
        vec![
            Op::TryEnter { handler: 5 },
            Op::Int(1),
            Op::StoreLocal(0),
            Op::TryExit,
            Op::Jump(6),
            Op::StoreLocal(0),
            Op::LoadLocal(0),
            Op::SetVariable { name: 0 },
        ],
        vec![Const::Str("v".into())],
        1,
    );
    assert_eq!(verify(&p), Ok(()));
    // A handler that does not consume the message leaves the stack unbalanced at the join.
    let mut bad = p.clone();
    bad.ops[5] = Op::Dup;
    assert!(verify(&bad).is_err());
    // `throw` never falls through: a Throw path needs no value at the join.
    let p = program(
        vec![Op::Null, Op::JumpIfNotNull(5), Op::Pop, Op::Const(0), Op::Throw, Op::SetVariable { name: 0 }],
        vec![Const::Str("v".into())],
        1,
    );
    assert_eq!(verify(&p), Ok(()));
}
