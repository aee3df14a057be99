//! Building the server configuration from snapshot settings.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use portcullis_contract::tls::PrivateKey;

use super::*;

fn certificate(names: &[&str]) -> (TlsCertificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let certificate = TlsCertificate {
        source: "certs/test.pem".into(),
        chain: vec![cert.der().to_vec()],
        key: PrivateKey { format: KeyFormat::Pkcs8, der: key.serialize_der() },
        names: names.iter().map(|n| n.to_string()).collect(),
        client_auth: None,
    };
    (certificate, key)
}

#[test]
fn builds_with_alpn_resumption_and_certificates() {
    let (first, _) = certificate(&["a.test"]);
    let (second, _) = certificate(&["b.test"]);
    let settings = TlsSettings { certificates: vec![first, second], ..TlsSettings::default() };
    let tls = server_config(&settings).unwrap();
    assert!(!tls.by_name(), "one client-auth setting: one configuration for every handshake");
    let config = &tls.default;
    assert_eq!(config.alpn_protocols, vec![ALPN_HTTP_1_1.to_vec()]);
    assert!(config.ticketer.enabled(), "stateless tickets");
    // The resumption state is the process's, so it survives a new snapshot.
    let again = server_config(&settings).unwrap();
    assert!(Arc::ptr_eq(&config.ticketer, &again.default.ticketer));
}

#[test]
fn client_auth_per_certificate_picks_a_configuration_by_name() {
    let (default, _) = certificate(&["a.test"]);
    let (mut strict, _) = certificate(&["b.test", "*.b.test"]);
    strict.client_auth = Some(ClientAuth::Required);
    let (mut same, _) = certificate(&["c.test"]);
    same.client_auth = Some(ClientAuth::None);
    let (ca, _) = certificate(&[]);
    let settings = TlsSettings {
        certificates: vec![default, strict, same],
        client_cas: vec![ca.chain[0].clone()],
        ..TlsSettings::default()
    };
    let tls = server_config(&settings).unwrap();
    assert!(tls.by_name());
    // The default certificate's configuration for its names, no name and unknown names; the
    // strict one for its own (wildcard included); one configuration per setting.
    let is_default = |name: Option<&str>| Arc::ptr_eq(&tls.for_name(name), &tls.default);
    assert!(is_default(Some("a.test")) && is_default(Some("c.test")) && is_default(None));
    assert!(is_default(Some("other.test")));
    assert!(!is_default(Some("b.test")) && !is_default(Some("x.b.test")));
    assert!(Arc::ptr_eq(&tls.for_name(Some("b.test")), &tls.for_name(Some("x.b.test"))));
}

#[test]
fn builds_without_certificates() {
    assert!(server_config(&TlsSettings::default()).is_ok());
}

#[test]
fn refuses_a_key_that_is_not_the_certificates() {
    let (mut first, _) = certificate(&["a.test"]);
    let (_, other_key) = certificate(&["a.test"]);
    first.key.der = other_key.serialize_der();
    let settings = TlsSettings { certificates: vec![first], ..TlsSettings::default() };
    let error = server_config(&settings).unwrap_err();
    assert!(matches!(error, TlsConfigError::Certificate { .. }), "{error}");
}

#[test]
fn client_auth_needs_a_valid_ca() {
    let (server, _) = certificate(&["a.test"]);
    let (ca, _) = certificate(&[]);
    let mut settings = TlsSettings {
        certificates: vec![server],
        client_auth: ClientAuth::Required,
        client_cas: vec![ca.chain[0].clone()],
        backend_cas: Vec::new(),
        backend_client: None,
        client_crls: Vec::new(),
        named: Vec::new(),
    };
    assert!(server_config(&settings).is_ok());
    settings.client_auth = ClientAuth::Optional;
    assert!(server_config(&settings).is_ok());
    settings.client_cas = vec![b"not DER".to_vec()];
    assert!(server_config(&settings).is_err());
    settings.client_cas.clear();
    assert!(server_config(&settings).is_err(), "no trust anchor");
}

#[test]
fn backend_client_config_uses_the_configured_cas_or_the_system_roots() {
    let (ca, _) = certificate(&[]);
    let cas = vec![ca.chain[0].clone()];
    let backend = backend_client_config(&cas, None).unwrap();
    assert_eq!(backend.config.alpn_protocols, vec![ALPN_HTTP_1_1.to_vec()]);
    // The same CAs again (the next snapshot): the same configuration, so pooled connections stay.
    assert_eq!(backend_client_config(&cas, None).unwrap().id, backend.id);
    let system = backend_client_config(&[], None).expect("system roots (possibly none)");
    assert_ne!(system.id, backend.id, "other trust anchors, another identity");
    let broken = vec![b"not DER".to_vec()];
    assert!(matches!(backend_client_config(&broken, None), Err(TlsConfigError::BackendCa { index: 0, .. })));
    // A client identity (mTLS to backends) is part of what a configuration is: another id.
    let (client, _) = certificate(&[]);
    let identified = backend_client_config(&cas, Some(&client)).unwrap();
    assert!(identified.config.client_auth_cert_resolver.has_certs());
    assert_ne!(identified.id, backend.id);
    assert!(!backend.config.client_auth_cert_resolver.has_certs());
    // Another identity (a backend's own certificate) under the same CAs: another id again.
    let (other, _) = certificate(&[]);
    let other = backend_client_config(&cas, Some(&other)).unwrap();
    assert_ne!(other.id, identified.id);
    assert_eq!(backend_client_config(&cas, Some(&client)).unwrap().id, identified.id, "kept for reuse");
}
