//! `[jwt]`, `[[tls.named-certificate]]` for `<key certificate-id>`, and the Entra authority.

use portcullis_contract::jwt::{EcCurve, KeyMaterial};

use super::*;

fn fixture(name: &str) -> String {
    let path = format!("{}/../tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

const POLICY: &str = r#"<policies><inbound><base />
  <validate-jwt header-name="Authorization">
    <issuer-signing-keys><key certificate-id="rsa-signer" /><key certificate-id="ec-signer" /></issuer-signing-keys>
  </validate-jwt>
  <validate-azure-ad-token tenant-id="t1" />
</inbound></policies>"#;

#[test]
fn certificates_jwt_settings_and_the_azure_authority_reach_the_config() {
    let config = TempConfig::valid();
    config
        .write("certs/rsa-signer.pem", &fixture("signer.pem"))
        .write("certs/ec-signer.pem", &fixture("signer-ec256.pem"))
        .write("apis/echo/policy.xml", POLICY)
        .write(
            "gateway.toml",
            "[[tls.named-certificate]]\nid = \"rsa-signer\"\ncert-file = \"certs/rsa-signer.pem\"\n\
             [[tls.named-certificate]]\nid = \"ec-signer\"\ncert-file = \"certs/ec-signer.pem\"\n\
             [jwt]\ntoken-cache = false\nazure-authority = \"http://127.0.0.1:1/\"\nopenid-refresh-s = 60\nopenid-refetch-min-s = 5\n",
        );
    let loaded = config.load().unwrap();
    assert!(!loaded.jwt.token_cache);
    assert_eq!((loaded.jwt.openid_refresh_s, loaded.jwt.openid_refetch_min_s), (60, 5));
    let rules: Vec<_> = loaded.programs.iter().flat_map(|program| program.jwt.iter()).collect();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(matches!(rules[0].keys[0].material, KeyMaterial::RsaDer(_)));
    assert!(matches!(&rules[0].keys[1].material, KeyMaterial::Ec { curve: EcCurve::P256, point } if point.len() == 65));
    assert_eq!(rules[1].openid_urls, ["http://127.0.0.1:1/t1/v2.0/.well-known/openid-configuration"]);
}

#[test]
fn defaults_and_a_missing_certificate() {
    let config = TempConfig::valid();
    config.write(
        "apis/echo/policy.xml",
        r#"<policies><inbound><validate-azure-ad-token tenant-id="t1" /></inbound></policies>"#,
    );
    let loaded = config.load().unwrap();
    assert!(loaded.jwt.token_cache);
    assert_eq!((loaded.jwt.openid_refresh_s, loaded.jwt.openid_refetch_min_s), (3600, 300));
    let rule = &loaded.programs.iter().flat_map(|program| program.jwt.iter()).next().unwrap();
    assert_eq!(rule.openid_urls, ["https://login.microsoftonline.com/t1/v2.0/.well-known/openid-configuration"]);

    let config = TempConfig::valid();
    config.write(
        "apis/echo/policy.xml",
        r#"<policies><inbound><validate-jwt header-name="A"><issuer-signing-keys><key certificate-id="gone" /></issuer-signing-keys></validate-jwt></inbound></policies>"#,
    );
    let (message, at) = config.error();
    assert!(message.contains("no certificate \"gone\""), "{message}");
    assert_eq!(at, "apis/echo/policy.xml:1:92");
}
