//! The caching ops: what they ask of the proxy when they suspend, what `cache-store` marks, and
//! the section resuming with a looked-up value.

use std::sync::Arc;

use portcullis_contract::program::{CachingType, Op};

use super::{Fixture, GET, program, s};
use crate::policy::{CacheCall, CachedValue, DownstreamCaching, Exit, RequestState, resume};

#[test]
fn cache_lookup_suspends_with_its_evaluated_settings() {
    let ops = vec![
        Op::Bool(true),
        Op::Bool(false),
        Op::Const(0),
        Op::Bool(false),
        Op::Bool(true),
        Op::CacheLookup { caching: CachingType::Internal, headers_first: 1, headers: 1, queries_first: 2, queries: 0 },
    ];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("private"), s("accept")])]);
    let mut state = RequestState::new();
    let Exit::Cache(call) = fixture.run(&mut state) else { panic!("must suspend") };
    let CacheCall::LookupResponse(lookup) = *call else { panic!("a response lookup") };
    assert!(lookup.vary_by_developer && !lookup.vary_by_developer_groups && !lookup.must_revalidate);
    assert!(lookup.allow_private);
    assert_eq!((lookup.downstream, lookup.headers, lookup.headers_first), (DownstreamCaching::Private, 1, 1));
    assert!(state.is_suspended(portcullis_contract::program::Section::Inbound));
}

#[test]
fn a_bad_downstream_caching_type_is_an_expression_failure() {
    let ops = vec![
        Op::Bool(false),
        Op::Bool(false),
        Op::Const(0),
        Op::Bool(true),
        Op::Bool(false),
        Op::CacheLookup { caching: CachingType::Internal, headers_first: 0, headers: 0, queries_first: 0, queries: 0 },
    ];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("shared")])]);
    let Exit::Error(error) = fixture.run(&mut RequestState::new()) else { panic!("must fail") };
    assert_eq!(&*error.last_error.reason, "ExpressionValueEvaluationFailure");
}

#[test]
fn cache_store_marks_the_response() {
    let fixture = Fixture::new(GET, vec![program(vec![Op::Int(30), Op::Null, Op::CacheStore], vec![])]);
    let mut state = RequestState::new();
    assert_eq!(fixture.run(&mut state), Exit::Continue);
    let mark = state.cache_store().expect("marked");
    assert_eq!((mark.duration_s, mark.any_status), (30, false));
    let fixture = Fixture::new(GET, vec![program(vec![Op::Int(-5), Op::Bool(true), Op::CacheStore], vec![])]);
    assert!(matches!(fixture.run(&mut RequestState::new()), Exit::Error(_)), "a negative duration fails");
    state.reset();
    assert!(state.cache_store().is_none());
}

#[test]
fn a_value_lookup_resumes_with_the_variable_set() {
    let ops = vec![
        Op::Const(0),
        Op::Const(1),
        Op::CacheLookupValue { caching: CachingType::PreferExternal, variable: 2, has_default: true },
        Op::Const(2),
        Op::Pop,
    ];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("key-1"), s("fallback"), s("found")])]);
    let mut state = RequestState::new();
    let Exit::Cache(call) = fixture.run(&mut state) else { panic!("must suspend") };
    let CacheCall::LookupValue { caching, key, variable, default } = *call else { panic!("a value lookup") };
    assert_eq!((caching, key.as_str()), (CachingType::PreferExternal, "key-1"));
    assert_eq!(default, Some(CachedValue::Text(Arc::from("fallback"))));
    state.set_cached_variable(variable, CachedValue::Int(7).to_value(), &fixture.programs);
    let matched = [];
    let view = fixture.view(&matched);
    let program = fixture.programs.get(0).expect("program");
    assert_eq!(resume(portcullis_contract::program::Section::Inbound, program, &view, &mut state), Exit::Continue);
    let found = state.variable("found", &fixture.programs).expect("set");
    assert!(matches!(found, crate::policy::value::Value::Int(7)));
}

#[test]
fn value_stores_and_removals_carry_their_operands() {
    let ops = vec![Op::Const(0), Op::Bool(true), Op::Int(90), Op::CacheStoreValue { caching: CachingType::External }];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("k")])]);
    let Exit::Cache(call) = fixture.run(&mut RequestState::new()) else { panic!("must suspend") };
    assert_eq!(
        *call,
        CacheCall::StoreValue {
            caching: CachingType::External,
            key: "k".into(),
            value: CachedValue::Bool(true),
            duration_s: 90
        }
    );
    let ops = vec![Op::Const(0), Op::Null, Op::Int(90), Op::CacheStoreValue { caching: CachingType::External }];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("k")])]);
    assert!(matches!(fixture.run(&mut RequestState::new()), Exit::Error(_)), "a null value fails as in APIM");
    let ops = vec![Op::Const(0), Op::CacheRemoveValue { caching: CachingType::Internal }];
    let fixture = Fixture::new(GET, vec![program(ops, vec![s("gone")])]);
    let Exit::Cache(call) = fixture.run(&mut RequestState::new()) else { panic!("must suspend") };
    assert_eq!(*call, CacheCall::RemoveValue { caching: CachingType::Internal, key: "gone".into() });
}
