//! `validate-jwt` through the running gateway: keys written in the policy (symmetric, `n`+`e`,
//! `certificate-id`), every failure with APIM's exact body and `LastError`, the `Jwt` a policy
//! stores, and no token ever in a log line or an error body.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey};
use portcullis_tests::http;
use portcullis_tests::jwt::{self, now_s, sign};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins};
use serde_json::json;

/// The HS256 secret as the policy writes it (base64 of `SECRET`).
const SECRET_B64: &str = "c2VjcmV0LWZvci1qd3QtdGVzdHMtMDEyMzQ1Njc4OQ==";
const SECRET: &[u8] = b"secret-for-jwt-tests-0123456789";

fn api_policy() -> String {
    let rsa = jwt::jwk("rsa-a", "rsa");
    format!(
        r#"<policies>
  <inbound>
    <base />
    <validate-jwt header-name="Authorization" require-scheme="Bearer" output-token-variable-name="jwt">
      <issuer-signing-keys>
        <key id="rsa" n="{n}" e="{e}" />
        <key id="hmac">{SECRET_B64}</key>
        <key certificate-id="signer" />
      </issuer-signing-keys>
      <audiences><audience>api://orders</audience></audiences>
      <issuers><issuer>https://issuer.test</issuer></issuers>
      <required-claims>
        <claim name="roles" match="any"><value>reader</value><value>admin</value></claim>
      </required-claims>
    </validate-jwt>
    <set-header name="X-Subject" exists-action="override"><value>@(((Jwt)context.Variables["jwt"]).Subject)</value></set-header>
    <set-header name="X-Roles" exists-action="override"><value>@(((Jwt)context.Variables["jwt"]).Claims.GetValueOrDefault("roles", ""))</value></set-header>
    <set-header name="X-Issuer" exists-action="override"><value>@(context.Request.Headers.GetValueOrDefault("Authorization", "").AsJwt()?.Issuer)</value></set-header>
  </inbound>
  <on-error>
    <choose>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Explain", "") == "1")">
        <return-response>
          <set-status code="401" reason="Unauthorized" />
          <set-body>@(context.LastError.Source + "|" + context.LastError.Reason + "|" + context.LastError.Message)</set-body>
        </return-response>
      </when>
    </choose>
  </on-error>
</policies>"#,
        n = rsa["n"].as_str().unwrap(),
        e = rsa["e"].as_str().unwrap(),
    )
}

/// An operation that takes the token from the query and answers 403 with its own message.
const QUERY_POLICY: &str = r#"<policies>
  <inbound>
    <validate-jwt query-parameter-name="access_token" failed-validation-httpcode="403" failed-validation-error-message="Token required." require-expiration-time="false">
      <issuer-signing-keys><key>c2VjcmV0LWZvci1qd3QtdGVzdHMtMDEyMzQ1Njc4OQ==</key></issuer-signing-keys>
    </validate-jwt>
  </inbound>
</policies>"#;

fn config() -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    write(dir.path(), "apis/echo/policy.xml", &api_policy());
    write(dir.path(), "apis/echo/operations/other.toml", "method = \"*\"\nurl-template = \"/*\"\n");
    write(dir.path(), "apis/echo/operations/query.toml", "method = \"GET\"\nurl-template = \"/query\"\n");
    write(dir.path(), "apis/echo/operations/query.xml", QUERY_POLICY);
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    std::fs::copy(jwt::fixtures().join("signer.pem"), dir.path().join("certs/signer.pem")).unwrap();
    let gateway = dir.path().join("gateway.toml");
    let mut text = std::fs::read_to_string(&gateway).unwrap();
    text.push_str("\n[[tls.named-certificate]]\nid = \"signer\"\ncert-file = \"certs/signer.pem\"\n");
    std::fs::write(gateway, text).unwrap();
    dir
}

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn claims() -> serde_json::Value {
    json!({ "sub": "alice", "iss": "https://issuer.test", "aud": "api://orders", "exp": now_s() + 600, "roles": ["reader", "writer"] })
}

portcullis_tests::on_both_io_backends!(validate_jwt_accepts_and_refuses_as_apim);

fn validate_jwt_accepts_and_refuses_as_apim(io: &str) {
    let config = config();
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    let request = |path: &str, token: Option<&str>, explain: bool| {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let mut headers = vec![("Ocp-Apim-Subscription-Key", key.as_str())];
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer.as_str()));
        }
        if explain {
            headers.push(("X-Explain", "1"));
        }
        http::get(gateway.addr, path, &headers).unwrap()
    };
    let get = |path: &str, token: Option<&str>| request(path, token, false);
    let rsa_a = jwt::private_key("rsa-a");
    let mut tokens = Vec::new();

    // Each key of the policy verifies its tokens; the Jwt reaches expressions.
    for (algorithm, signer, kid) in [
        (Algorithm::RS256, &rsa_a, Some("rsa")),
        (Algorithm::PS512, &rsa_a, Some("rsa")),
        (Algorithm::RS384, &rsa_a, None),
        (Algorithm::HS256, &EncodingKey::from_secret(SECRET), Some("hmac")),
    ] {
        let token = sign(algorithm, signer, kid, &claims());
        let ok = get("/echo/hello", Some(&token));
        assert_eq!(ok.status, 200, "{algorithm:?}: {}", ok.text());
        let echoed = ok.json();
        assert_eq!(echoed["headers"]["x-subject"][0], "alice");
        assert_eq!(echoed["headers"]["x-roles"][0], "reader,writer");
        assert_eq!(echoed["headers"]["x-issuer"][0], "https://issuer.test");
        tokens.push(token);
    }

    // Every refusal: status, APIM's body byte for byte, LastError reason and message.
    let expect = |token: Option<&str>, reason: &str, message: &str, body: &str| {
        let refused = get("/echo/hello", token);
        assert_eq!(refused.status, 401, "{reason}: {}", refused.text());
        assert_eq!(refused.text(), format!(r#"{{ "statusCode": 401, "message": "{body}" }}"#));
        if let Some(token) = token {
            assert!(!refused.text().contains(token));
            assert!(refused.headers.iter().all(|(_, value)| !value.contains(token)));
        }
        let explained = request("/echo/hello", token, true);
        assert_eq!(explained.text(), format!("validate-jwt|{reason}|{message}"));
    };
    expect(None, "TokenNotPresent", "JWT not present.", "JWT not present.");
    let rsa_b = jwt::private_key("rsa-b");
    let forged = sign(Algorithm::RS256, &rsa_b, Some("rsa"), &claims());
    expect(
        Some(&forged),
        "TokenSignatureInvalid",
        "IDX10503: Signature validation failed. Access denied.",
        "Invalid JWT.",
    );
    // No key of the policy answers to the kid or could verify ES256 (a kid that matches no id
    // falls back to the keys without one, as IdentityModel tries them).
    let unknown = sign(Algorithm::ES256, &jwt::private_key("ec256"), Some("nobody"), &claims());
    expect(
        Some(&unknown),
        "TokenSignatureKeyNotFound",
        "IDX10501: Signature validation failed. Unable to match key. Access denied.",
        "Invalid JWT.",
    );
    let mut expired = claims();
    expired["exp"] = (now_s() - 60).into();
    let expired = sign(Algorithm::RS256, &rsa_a, Some("rsa"), &expired);
    expect(
        Some(&expired),
        "TokenExpired",
        "IDX10223: Lifetime validation failed. The token is expired. Access denied.",
        "Invalid JWT.",
    );
    let mut audience = claims();
    audience["aud"] = "api://billing".into();
    let audience = sign(Algorithm::RS256, &rsa_a, Some("rsa"), &audience);
    expect(
        Some(&audience),
        "TokenAudienceNotAllowed",
        "IDX10214: Audience validation failed. Access denied.",
        "Invalid JWT.",
    );
    let mut issuer = claims();
    issuer["iss"] = "https://evil.test".into();
    let issuer = sign(Algorithm::RS256, &rsa_a, Some("rsa"), &issuer);
    expect(
        Some(&issuer),
        "TokenIssuerNotAllowed",
        "IDX10205: Issuer validation failed. Access denied.",
        "Invalid JWT.",
    );
    let mut no_roles = claims();
    no_roles.as_object_mut().unwrap().remove("roles");
    let no_roles = sign(Algorithm::RS256, &rsa_a, Some("rsa"), &no_roles);
    expect(
        Some(&no_roles),
        "TokenClaimNotFound",
        "JWT token is missing the following claims: roles. Access denied.",
        "Invalid JWT.",
    );
    let mut guest = claims();
    guest["roles"] = json!(["guest"]);
    let guest = sign(Algorithm::RS256, &rsa_a, Some("rsa"), &guest);
    expect(
        Some(&guest),
        "TokenClaimValueNotAllowed",
        "Claim roles value of guest is not allowed. Access denied.",
        "Invalid JWT.",
    );
    expect(
        Some("not.a.token"),
        "JwtInvalid",
        "IDX12729: Unable to decode the header or payload as Base64Url encoded JSON.",
        "Invalid JWT.",
    );
    // A scheme other than the required one is no token at all.
    let basic = http::get(
        gateway.addr,
        "/echo/hello",
        &[("Ocp-Apim-Subscription-Key", key.as_str()), ("Authorization", "Basic YTpi")],
    )
    .unwrap();
    assert_eq!(basic.text(), r#"{ "statusCode": 401, "message": "JWT not present." }"#);

    // From the query, with the policy's own status and message.
    let hs = sign(Algorithm::HS512, &EncodingKey::from_secret(SECRET), None, &json!({ "sub": "q" }));
    let ok = http::get(
        gateway.addr,
        &format!("/echo/query?access_token={hs}"),
        &[("Ocp-Apim-Subscription-Key", key.as_str())],
    )
    .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let refused =
        http::get(gateway.addr, "/echo/query?access_token=x.y.z", &[("Ocp-Apim-Subscription-Key", key.as_str())])
            .unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(refused.text(), r#"{ "statusCode": 403, "message": "Token required." }"#);

    // The same token again is served from the worker's cache and still checked for its claims.
    for _ in 0..3 {
        assert_eq!(get("/echo/hello", Some(&tokens[0])).status, 200);
    }

    // Secrets: no token and no key ever reaches the log.
    let log = gateway.log();
    for token in tokens.iter().chain([&forged, &unknown, &expired, &audience, &issuer, &no_roles, &guest, &hs]) {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token reached the log:\n{log}");
    }
    assert!(!log.contains(SECRET_B64) && !log.contains("secret-for-jwt-tests"), "{log}");
}
