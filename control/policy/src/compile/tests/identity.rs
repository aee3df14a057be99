//! `authentication-managed-identity` and the token metric policies' compiler.

use portcullis_contract::program::{Const, ExistsAction, Op};

use super::{compile, first_error, inbound_const};

fn inbound_ops(text: &str) -> (Vec<Op>, Vec<Const>) {
    let compiled = compile(text);
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let inbound = compiled.programs[0].as_ref().expect("inbound");
    (inbound.ops.clone(), inbound.consts.clone())
}

#[test]
fn managed_identity_sets_the_authorization_header_unless_a_token_is_missing() {
    let text = r#"<policies><inbound><authentication-managed-identity resource="https://cognitiveservices.azure.com" /></inbound></policies>"#;
    let compiled = compile(text);
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let inbound = compiled.programs[0].as_ref().expect("inbound");
    let resource = inbound_const(inbound, "https://cognitiveservices.azure.com");
    let authorization = inbound_const(inbound, "Authorization");
    let at = inbound.ops.iter().position(|op| matches!(op, Op::ManagedIdentityToken { .. })).expect("the op");
    assert_eq!(
        inbound.ops[at],
        Op::ManagedIdentityToken { resource, client_id: None, bearer: true, ignore_error: false }
    );
    assert!(matches!(inbound.ops[at + 1], Op::JumpIfNull(_)));
    assert_eq!(
        inbound.ops[at + 2],
        Op::SetHeader {
            side: portcullis_contract::program::Side::Request,
            action: ExistsAction::Override,
            name: authorization,
            values: 1
        }
    );
}

#[test]
fn managed_identity_can_store_the_token_in_a_variable() {
    let (ops, consts) = inbound_ops(
        r#"<policies><inbound><authentication-managed-identity resource="api://backend" client-id="1234" output-token-variable-name="msi-token" ignore-error="true" /></inbound></policies>"#,
    );
    let op = ops.iter().find(|op| matches!(op, Op::ManagedIdentityToken { .. })).expect("the op");
    let Op::ManagedIdentityToken { client_id: Some(client_id), bearer: false, ignore_error: true, .. } = *op else {
        panic!("{op:?}")
    };
    assert_eq!(consts[client_id as usize], Const::Str("1234".into()));
    assert!(ops.iter().any(|op| matches!(op, Op::SetVariable { .. })));
    assert!(!ops.iter().any(|op| matches!(op, Op::SetHeader { .. })));
}

#[test]
fn managed_identity_refuses_what_it_cannot_prefetch() {
    let error = first_error(
        "<policies><inbound>\n  <authentication-managed-identity resource=\"@(context.Variables[&quot;r&quot;])\" /></inbound></policies>",
    );
    assert!(error.contains("resource computed by a policy expression is not supported"), "{error}");
    assert!(error.contains("api/policy.xml:2:"), "{error}");
    let error = first_error("<policies><inbound><authentication-managed-identity /></inbound></policies>");
    assert!(error.contains("needs resource"), "{error}");
    let error =
        first_error("<policies><outbound><authentication-managed-identity resource=\"x\" /></outbound></policies>");
    assert!(error.contains("authentication-managed-identity"), "{error}");
}

#[test]
fn get_authorization_context_is_refused_with_its_reason() {
    let error = first_error(
        "<policies><inbound><get-authorization-context provider-id=\"github\" authorization-id=\"a\" context-variable-name=\"c\" /></inbound></policies>",
    );
    assert!(error.contains("credential manager"), "{error}");
}

#[test]
fn token_metrics_name_the_three_counts_then_the_dimensions() {
    for policy in ["llm-emit-token-metric", "azure-openai-emit-token-metric"] {
        let (ops, consts) = inbound_ops(&format!(
            r#"<policies><inbound><{policy} namespace="openai"><dimension name="API ID" /><dimension name="Client IP" /><dimension name="Model" value="gpt" /></{policy}></inbound></policies>"#
        ));
        let op = ops.iter().find(|op| matches!(op, Op::EmitTokenMetric { .. })).expect("the op");
        let Op::EmitTokenMetric { namespace, names_first, dimensions } = *op else { unreachable!() };
        assert_eq!(dimensions, 3);
        assert_eq!(consts[namespace as usize], Const::Str("openai".into()));
        let names: Vec<&Const> = consts[names_first as usize..names_first as usize + 6].iter().collect();
        let expected = ["Prompt Tokens", "Completion Tokens", "Total Tokens", "API ID", "Client IP", "Model"];
        for (name, expected) in names.iter().zip(expected) {
            assert_eq!(**name, Const::Str(expected.into()));
        }
    }
    let error = first_error(
        "<policies><inbound><llm-emit-token-metric><dimension name=\"Custom\" /></llm-emit-token-metric></inbound></policies>",
    );
    assert!(error.contains("needs a value"), "{error}");
}

#[test]
fn managed_identity_inside_send_request_authorizes_the_call() {
    // In the outbound section too: the token goes on the request send-request builds.
    let text = r#"<policies><outbound><send-request mode="new" response-variable-name="secret"><set-url>https://vault.example/secrets/s</set-url><authentication-managed-identity resource="https://vault.azure.net" /></send-request></outbound></policies>"#;
    let compiled = compile(text);
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let outbound = compiled.programs[2].as_ref().expect("outbound");
    let begin = outbound.ops.iter().position(|op| matches!(op, Op::BeginOutgoing { .. })).expect("begin");
    let token = outbound.ops.iter().position(|op| matches!(op, Op::ManagedIdentityToken { .. })).expect("token");
    let send = outbound.ops.iter().position(|op| matches!(op, Op::SendRequest { .. })).expect("send");
    assert!(begin < token && token < send, "{:?}", outbound.ops);
    let authorization = inbound_const(outbound, "Authorization");
    assert!(outbound.ops[token..send].contains(&Op::SetHeader {
        side: portcullis_contract::program::Side::Outgoing,
        action: ExistsAction::Override,
        name: authorization,
        values: 1
    }));
    // Its attributes are checked as at the top level.
    let error = first_error(
        r#"<policies><inbound><send-request mode="new" response-variable-name="r"><set-url>https://a.example/</set-url><authentication-managed-identity /></send-request></inbound></policies>"#,
    );
    assert!(error.contains("needs resource="), "{error}");
}
