//! `<openid-config>` and `validate-azure-ad-token` against a real OpenID provider on loopback
//! (discovery document and JWKS over HTTP): control fetches the keys, a rotation is picked up
//! when the data plane reports the new `kid`, the verified-token cache forgets tokens of retired
//! keys, and a provider that fails leaves the last good keys serving (and `ctl status` says so).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::Path;

use jsonwebtoken::Algorithm;
use portcullis_tests::jwt::{self, Issuer, now_s, sign};
use portcullis_tests::tempdir::copy_tree;
use portcullis_tests::{Gateway, GatewayOptions, TempDir, bins, eventually, http};
use serde_json::json;

const TENANT: &str = "tenant-1";

fn config(issuer: &Issuer, entra: &Issuer) -> TempDir {
    let dir = TempDir::new("config");
    copy_tree(&bins::repo_root().join("examples/quickstart"), dir.path()).unwrap();
    let gateway_toml = std::fs::read_to_string(dir.path().join("gateway.toml")).unwrap();
    let authority = format!("http://{}", entra.backend.addr);
    write(
        dir.path(),
        "gateway.toml",
        &format!("{gateway_toml}\n[jwt]\nopenid-refetch-min-s = 1\nazure-authority = \"{authority}\"\n"),
    );
    let explain = r#"<on-error>
    <choose>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Explain", "") == "1")">
        <return-response>
          <set-status code="401" reason="Unauthorized" />
          <set-body>@(context.LastError.Reason + "|" + context.LastError.Message)</set-body>
        </return-response>
      </when>
    </choose>
  </on-error>"#;
    write(
        dir.path(),
        "apis/echo/policy.xml",
        &format!(
            r#"<policies>
  <inbound>
    <base />
    <validate-jwt header-name="Authorization" require-scheme="Bearer">
      <openid-config url="{url}" />
      <issuers><issuer>{iss}</issuer></issuers>
    </validate-jwt>
  </inbound>
  {explain}
</policies>"#,
            url = issuer.url(),
            iss = issuer.issuer(),
        ),
    );
    write(dir.path(), "apis/echo/operations/other.toml", "method = \"*\"\nurl-template = \"/*\"\n");
    write(dir.path(), "apis/echo/operations/entra.toml", "method = \"GET\"\nurl-template = \"/entra\"\n");
    write(
        dir.path(),
        "apis/echo/operations/entra.xml",
        &format!(
            r#"<policies>
  <inbound>
    <validate-azure-ad-token tenant-id="{TENANT}" output-token-variable-name="jwt">
      <client-application-ids><application-id>client-app</application-id></client-application-ids>
      <backend-application-ids><application-id>backend-app</application-id></backend-application-ids>
    </validate-azure-ad-token>
    <set-header name="X-Caller" exists-action="override"><value>@(((Jwt)context.Variables["jwt"]).Claims.GetValueOrDefault("azp", ""))</value></set-header>
  </inbound>
  {explain}
</policies>"#
        ),
    );
    dir
}

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

portcullis_tests::on_both_io_backends!(openid_keys_come_from_control_and_follow_rotation);

fn openid_keys_come_from_control_and_follow_rotation(io: &str) {
    let issuer = Issuer::start("", vec![jwt::jwk("rsa-a", "k1"), jwt::jwk("ec256", "e1")]);
    let entra = Issuer::start(&format!("/{TENANT}/v2.0"), vec![jwt::jwk("ec384", "entra-1")]);
    let config = config(&issuer, &entra);
    let gateway = Gateway::start(GatewayOptions::new(io).config(config.path()));
    let key = gateway.demo_key.clone().expect("demo key");
    let call = |path: &str, token: &str, explain: bool| {
        let bearer = format!("Bearer {token}");
        let mut headers = vec![("Ocp-Apim-Subscription-Key", key.as_str()), ("Authorization", bearer.as_str())];
        if explain {
            headers.push(("X-Explain", "1"));
        }
        http::get(gateway.addr, path, &headers).unwrap()
    };
    let claims = json!({ "sub": "s", "iss": issuer.issuer(), "exp": now_s() + 600 });
    let (rsa_a, rsa_b) = (jwt::private_key("rsa-a"), jwt::private_key("rsa-b"));

    // Keys fetched at load: both of the provider's keys verify from the first request.
    let old = sign(Algorithm::RS256, &rsa_a, Some("k1"), &claims);
    assert_eq!(call("/echo/a", &old, false).status, 200);
    let ec = sign(Algorithm::ES256, &jwt::private_key("ec256"), Some("e1"), &claims);
    assert_eq!(call("/echo/a", &ec, false).status, 200);
    assert_eq!(issuer.key_fetches(), 1, "fetched once at load");

    // Rotation: the provider publishes k2 only. The first k2 token names an unknown kid; the
    // data plane reports it, control re-fetches, and k2 tokens pass.
    issuer.rotate(vec![jwt::jwk("rsa-b", "k2")]);
    let new = sign(Algorithm::RS256, &rsa_b, Some("k2"), &claims);
    let refused = call("/echo/a", &new, true);
    assert_eq!(
        refused.text(),
        "TokenSignatureKeyNotFound|IDX10501: Signature validation failed. Unable to match key. Access denied."
    );
    eventually("the rotated key is fetched and published", || call("/echo/a", &new, false).status == 200);
    assert!(issuer.key_fetches() >= 2);
    // The retired key's token was verified (and cached) before: new keys mean a new epoch, so
    // it is checked again and refused.
    let retired = call("/echo/a", &old, false);
    assert_eq!(retired.text(), r#"{ "statusCode": 401, "message": "Invalid JWT." }"#);

    // Fail static: the provider goes down; an unknown kid makes control try again, the fetch
    // fails, the last good keys keep serving, and ctl status says so.
    issuer.fail(true);
    let fetches = issuer.backend.requests().len();
    let stranger = sign(Algorithm::RS256, &rsa_a, Some("k3"), &claims);
    assert_eq!(call("/echo/a", &stranger, false).status, 401);
    eventually("control tries the failing provider", || issuer.backend.requests().len() > fetches);
    let entry = || {
        let status = gateway.status();
        let entries = status["openid"].as_array().cloned().unwrap_or_default();
        entries.into_iter().find(|entry| entry["url"] == issuer.url()).expect("the provider's status")
    };
    eventually("ctl status reports the failure", || {
        entry()["last_error"].as_str().is_some_and(|error| error.contains("status 503"))
    });
    assert_eq!(entry()["keys"], 1, "the last good key set (k2) is kept");
    let table = String::from_utf8(gateway.ctl(&["status"]).stdout).unwrap();
    assert!(table.contains("LAST FETCH FAILED (serving the last good keys)"), "{table}");
    assert_eq!(call("/echo/a", &new, false).status, 200);

    // validate-azure-ad-token: the tenant's keys under the configured authority, its issuer,
    // the backend application as audience and the client application as azp.
    let entra_key = jwt::private_key("ec384");
    let entra_claims = |azp: &str| json!({ "iss": entra.issuer(), "aud": "api://backend-app", "azp": azp, "tid": TENANT, "exp": now_s() + 600 });
    let ok =
        call("/echo/entra", &sign(Algorithm::ES384, &entra_key, Some("entra-1"), &entra_claims("client-app")), false);
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["headers"]["x-caller"][0], "client-app");
    let intruder = sign(Algorithm::ES384, &entra_key, Some("entra-1"), &entra_claims("intruder"));
    assert_eq!(call("/echo/entra", &intruder, false).text(), r#"{ "statusCode": 401, "message": "Invalid JWT." }"#);
    assert_eq!(
        call("/echo/entra", &intruder, true).text(),
        "TokenClaimValueNotAllowed|Claim azp value of intruder is not allowed. Access denied."
    );
    let mut other_tenant = entra_claims("client-app");
    other_tenant["iss"] = "https://sts.windows.net/tenant-2/".into();
    let other_tenant = sign(Algorithm::ES384, &entra_key, Some("entra-1"), &other_tenant);
    assert_eq!(
        call("/echo/entra", &other_tenant, true).text(),
        "TokenIssuerNotAllowed|IDX10205: Issuer validation failed. Access denied."
    );

    // No token reaches the log.
    let log = gateway.log();
    for token in [&old, &ec, &new, &stranger, &intruder] {
        assert!(!log.contains(token.rsplit('.').next().unwrap()), "{log}");
    }
}
