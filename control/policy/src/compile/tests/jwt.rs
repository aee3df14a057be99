//! `validate-jwt` and `validate-azure-ad-token`: attributes to rules, and every compile error
//! at its position.

use portcullis_contract::jwt::{KeyMaterial, RequiredClaim, TokenSource};

use super::*;

fn inbound(policy: &str) -> String {
    format!("<policies><inbound>\n  {policy}\n</inbound></policies>")
}

fn rule(policy: &str) -> portcullis_contract::jwt::JwtRule {
    let compiled = compile(&inbound(policy));
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let program = compiled.programs[0].clone().unwrap();
    assert!(program.ops.iter().any(|op| matches!(op, Op::ValidateJwt { rule: 0, .. })));
    program.jwt[0].clone()
}

/// The first error, which must be at `line:col` of the policy document.
fn error_at(policy: &str, at: &str) -> String {
    let error = first_error(&inbound(policy));
    assert!(error.contains(&format!("api/policy.xml:{at}")), "{error}");
    error
}

#[test]
fn attributes_and_children_become_the_rule() {
    let rule = rule(
        r#"<validate-jwt header-name="Authorization" require-scheme="Bearer" failed-validation-httpcode="403" failed-validation-error-message="Unauthorized" require-expiration-time="false" require-signed-tokens="true" clock-skew="30" output-token-variable-name="jwt">
    <openid-config url="https://idp.test/.well-known/openid-configuration" />
    <issuer-signing-keys>
      <key id="k1">c2VjcmV0</key>
      <key n="AQAB" e="AQAB" />
      <key certificate-id="signer" />
    </issuer-signing-keys>
    <audiences><audience>api://a</audience><audience>api://b</audience></audiences>
    <issuers><issuer>https://idp.test</issuer></issuers>
    <required-claims>
      <claim name="roles" match="any" separator=","><value>reader</value><value>admin</value></claim>
      <claim name="tid" />
    </required-claims>
  </validate-jwt>"#,
    );
    assert_eq!(rule.source, TokenSource::Header { name: "Authorization".into(), scheme: Some("Bearer".into()) });
    assert_eq!((rule.status, rule.message.as_deref()), (403, Some("Unauthorized")));
    assert!(!rule.require_expiration_time && rule.require_signed_tokens);
    assert_eq!((rule.clock_skew_s, rule.output_variable.as_deref()), (30, Some("jwt")));
    assert_eq!(rule.openid_urls, ["https://idp.test/.well-known/openid-configuration"]);
    assert_eq!(rule.keys.len(), 3);
    assert_eq!(rule.keys[0].id.as_deref(), Some("k1"));
    assert_eq!(rule.keys[0].material, KeyMaterial::Symmetric(b"secret".to_vec()));
    assert_eq!(rule.keys[1].material, KeyMaterial::Rsa { n: vec![1, 0, 1], e: vec![1, 0, 1] });
    assert_eq!(rule.keys[2].material, KeyMaterial::RsaDer(vec![0x30, 0x00]));
    assert_eq!(rule.audiences, ["api://a", "api://b"]);
    assert_eq!(rule.issuers, ["https://idp.test"]);
    assert_eq!(
        rule.required_claims,
        [
            RequiredClaim {
                name: "roles".into(),
                match_all: false,
                separator: Some(",".into()),
                values: vec!["reader".into(), "admin".into()]
            },
            RequiredClaim { name: "tid".into(), match_all: true, separator: None, values: vec![] },
        ]
    );
}

#[test]
fn defaults_are_apims() {
    let rule = rule(
        r#"<validate-jwt query-parameter-name="access_token"><issuer-signing-keys><key>c2VjcmV0</key></issuer-signing-keys></validate-jwt>"#,
    );
    assert_eq!(rule.source, TokenSource::Query("access_token".into()));
    assert_eq!((rule.status, rule.message.as_deref()), (401, None));
    assert!(rule.require_expiration_time && rule.require_signed_tokens);
    assert_eq!(rule.clock_skew_s, 0);
    // require-scheme applies to Authorization only.
    let rule = rule_of_header(r#"header-name="X-Token" require-scheme="Bearer""#);
    assert_eq!(rule.source, TokenSource::Header { name: "X-Token".into(), scheme: None });
}

fn rule_of_header(attributes: &str) -> portcullis_contract::jwt::JwtRule {
    rule(&format!(
        r#"<validate-jwt {attributes}><issuer-signing-keys><key>c2VjcmV0</key></issuer-signing-keys></validate-jwt>"#
    ))
}

#[test]
fn token_value_is_an_expression_the_op_pops() {
    let compiled = compile(&inbound(
        r#"<validate-jwt token-value="@(context.Request.Headers.GetValueOrDefault("X-Jwt", ""))"><issuer-signing-keys><key>c2VjcmV0</key></issuer-signing-keys></validate-jwt>"#,
    ));
    assert!(compiled.report.errors.is_empty(), "{:?}", compiled.report.errors);
    let program = compiled.programs[0].as_ref().unwrap();
    assert!(program.ops.contains(&Op::ValidateJwt { rule: 0, token_on_stack: true }));
    assert_eq!(program.jwt[0].source, TokenSource::Value);
}

#[test]
fn validate_azure_ad_token_reads_authorization_and_the_tenants_keys() {
    let rule = rule(
        r#"<validate-azure-ad-token tenant-id="contoso-tenant">
    <client-application-ids><application-id>client-1</application-id></client-application-ids>
    <backend-application-ids><application-id>backend-1</application-id></backend-application-ids>
    <audiences><audience>api://orders</audience></audiences>
  </validate-azure-ad-token>"#,
    );
    assert_eq!(rule.policy, "validate-azure-ad-token");
    assert_eq!(rule.source, TokenSource::Header { name: "Authorization".into(), scheme: None });
    assert_eq!(rule.openid_urls, ["{authority}/contoso-tenant/v2.0/.well-known/openid-configuration"]);
    let azure = rule.azure.unwrap();
    assert_eq!(
        (azure.client_application_ids, azure.backend_application_ids),
        (vec!["client-1".to_owned()], vec!["backend-1".to_owned()])
    );
    assert_eq!(rule.audiences, ["api://orders"]);
}

#[test]
fn every_mistake_is_a_compile_error_at_its_place() {
    let keys = "<issuer-signing-keys><key>c2VjcmV0</key></issuer-signing-keys>";
    let error = error_at(r#"<validate-jwt header-name="A" token-value="x" />"#, "2:4");
    assert!(error.contains("header-name and token-value are exclusive"), "{error}");
    let error = error_at("<validate-jwt />", "2:4");
    assert!(error.contains("needs one of header-name, query-parameter-name or token-value"), "{error}");
    let error = error_at(r#"<validate-jwt header-name="Authorization" />"#, "2:4");
    assert!(error.contains("needs <issuer-signing-keys> or <openid-config"), "{error}");
    let error = error_at(r#"<validate-jwt header-name="Authorization"><issuer-signing-keys /></validate-jwt>"#, "2:4");
    assert!(error.contains("needs <issuer-signing-keys> or <openid-config"), "{error}");
    let error = error_at(&format!(r#"<validate-jwt header-name="A b">{keys}</validate-jwt>"#), "2:30");
    assert!(error.contains("not a valid HTTP header name"), "{error}");
    let error = error_at(
        &format!(r#"<validate-jwt header-name="A" failed-validation-httpcode="99">{keys}</validate-jwt>"#),
        "2:61",
    );
    assert!(error.contains("99 is not an HTTP status"), "{error}");
    let error = error_at(&format!(r#"<validate-jwt header-name="A" clock-skew="soon">{keys}</validate-jwt>"#), "2:45");
    assert!(error.contains("clock-skew: \"soon\" is not a number of seconds"), "{error}");
    let error = error_at(
        &format!(r#"<validate-jwt header-name="A" require-expiration-time="maybe">{keys}</validate-jwt>"#),
        "2:58",
    );
    assert!(error.contains("is not true or false"), "{error}");
    let error = error_at(
        r#"<validate-jwt header-name="A"><issuer-signing-keys><key>not base64!</key></issuer-signing-keys></validate-jwt>"#,
        "2:59",
    );
    assert!(error.contains("the symmetric key is not base64"), "{error}");
    let error = error_at(
        r#"<validate-jwt header-name="A"><issuer-signing-keys><key n="AQAB" /></issuer-signing-keys></validate-jwt>"#,
        "2:55",
    );
    assert!(error.contains("<key> needs e=\"...\""), "{error}");
    let error = error_at(
        r#"<validate-jwt header-name="A"><issuer-signing-keys><key certificate-id="nope" /></issuer-signing-keys></validate-jwt>"#,
        "2:75",
    );
    assert!(error.contains("no certificate \"nope\""), "{error}");
    let error = error_at(
        r#"<validate-jwt header-name="A"><issuer-signing-keys><key n="AQAB" e="AQAB">c2VjcmV0</key></issuer-signing-keys></validate-jwt>"#,
        "2:55",
    );
    assert!(error.contains("<key> is one of"), "{error}");
    let error = error_at(r#"<validate-jwt header-name="A"><openid-config url="ftp://x" /></validate-jwt>"#, "2:53");
    assert!(error.contains("is not an http(s) URL"), "{error}");
    let error = error_at(&format!(r#"<validate-jwt header-name="A">{keys}<decryption-keys /></validate-jwt>"#), "2:96");
    assert!(error.contains("<decryption-keys> is not supported"), "{error}");
    assert!(error.contains("jsonwebtoken"), "{error}");
    let error = error_at(
        &format!(r#"<validate-jwt header-name="A">{keys}<audiences><aud>x</aud></audiences></validate-jwt>"#),
        "2:107",
    );
    assert!(error.contains("<audiences> holds <audience> elements, not <aud>"), "{error}");
    let error = error_at(
        &format!(
            r#"<validate-jwt header-name="A">{keys}<required-claims><claim name="r" match="some" /></required-claims></validate-jwt>"#
        ),
        "2:135",
    );
    assert!(error.contains("match \"some\": expected all or any"), "{error}");
    let error = error_at(&format!(r#"<validate-jwt header-name="A">{keys}<scopes /></validate-jwt>"#), "2:96");
    assert!(error.contains("not <scopes>"), "{error}");
    let error = error_at(r#"<validate-jwt header-name="@(context.Api.Name)" />"#, "2:30");
    assert!(error.contains("does not accept policy expressions"), "{error}");
    let error = error_at("<validate-azure-ad-token />", "2:4");
    assert!(error.contains("needs tenant-id=\"...\""), "{error}");
    let error = first_error("<policies><outbound><validate-jwt header-name=\"A\" /></outbound></policies>");
    assert!(error.contains("not allowed in the outbound section"), "{error}");
}
