//! `[tls]`: PEM parsing, key/certificate pairing, validity dates and names, and the diagnostics a
//! config directory gets.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

use std::path::PathBuf;

use super::*;
use crate::config::NamedValues;

struct Pair {
    cert_pem: String,
    key_pem: String,
}

fn pair(names: &[&str]) -> Pair {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

#[test]
fn parses_chains_and_keys_or_says_what_is_expected() {
    let pair = pair(&["api.test"]);
    assert_eq!(parse_chain(pair.cert_pem.as_bytes()).unwrap().len(), 1);
    assert!(parse_chain(b"").unwrap_err().contains("-----BEGIN CERTIFICATE-----"));
    assert!(parse_chain(pair.key_pem.as_bytes()).unwrap_err().contains("no -----BEGIN CERTIFICATE"));
    assert!(matches!(parse_key(pair.key_pem.as_bytes()).unwrap(), PrivateKeyDer::Pkcs8(_)));
    assert!(parse_key(pair.cert_pem.as_bytes()).unwrap_err().contains("no private key found"));
    let broken = pair.key_pem.replace("PRIVATE KEY-----\n", "PRIVATE KEY-----\n!!!!");
    assert!(parse_key(broken.as_bytes()).is_err());
}

#[test]
fn a_key_must_belong_to_its_certificate() {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let (first, second) = (pair(&["api.test"]), pair(&["api.test"]));
    let chain = parse_chain(first.cert_pem.as_bytes()).unwrap();
    assert!(check_pair(&chain, &parse_key(first.key_pem.as_bytes()).unwrap(), &provider).is_ok());
    let error = check_pair(&chain, &parse_key(second.key_pem.as_bytes()).unwrap(), &provider).unwrap_err();
    assert!(error.contains("not the certificate's key"), "{error}");
}

#[test]
fn names_and_validity() {
    let der = parse_chain(pair(&["API.test", "*.svc.test"]).cert_pem.as_bytes()).unwrap().remove(0);
    let not_after = {
        use x509_parser::prelude::{FromDer as _, X509Certificate};
        X509Certificate::from_der(der.as_ref()).unwrap().1.validity().not_after.timestamp()
    };
    let inspected = inspect(&der, 1_700_000_000).unwrap();
    assert_eq!(inspected.names, ["api.test", "*.svc.test"]);
    assert!(inspected.warnings.is_empty(), "{:?}", inspected.warnings);
    let soon = inspect(&der, not_after - 86_400).unwrap();
    assert!(soon.warnings.iter().any(|w| w.contains("expires in 1 days")), "{:?}", soon.warnings);
    assert!(inspect(&der, not_after + 1).unwrap_err().contains("expired"));
    assert!(inspect(&der, -100_000_000_000).unwrap().warnings.iter().any(|w| w.contains("not valid before")));
    let nameless = parse_chain(pair(&[]).cert_pem.as_bytes()).unwrap().remove(0);
    assert!(inspect(&nameless, 1_700_000_000).unwrap().warnings[0].contains("no DNS subject alternative name"));
}

/// A config directory with one API, the given `gateway.toml` and files.
struct Dir(PathBuf);

impl Dir {
    fn new(gateway: &str, files: &[(&str, &str)]) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let next = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("portcullis-tls-test-{}-{next}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("apis/echo")).unwrap();
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        std::fs::write(
            dir.join("apis/echo/api.toml"),
            "name = \"E\"\npath = \"echo\"\nbackend-url = \"http://127.0.0.1:9/\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("gateway.toml"), gateway).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Self(dir)
    }

    fn load(&self) -> Result<portcullis_contract::model::Config, Vec<String>> {
        crate::config::load_seeded(&self.0, &NamedValues::default(), [1, 2]).map_err(|diagnostics| {
            diagnostics
                .items
                .iter()
                .map(|d| {
                    let at = d.location.map(|l| format!(":{}:{}", l.line, l.column)).unwrap_or_default();
                    format!("{}{at}: {}", d.file.file_name().unwrap().to_string_lossy(), d.message)
                })
                .collect()
        })
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const TWO_CERTIFICATES: &str = "[[tls.certificate]]\ncert-file = \"certs/a.pem\"\nkey-file = \"certs/a.key\"\n\
[[tls.certificate]]\ncert-file = \"certs/b.pem\"\nkey-file = \"certs/b.key\"\n\
[tls]\nclient-auth = \"optional\"\nclient-ca-file = \"certs/ca.pem\"\n";

#[test]
fn compiles_certificates_in_order_with_client_auth() {
    let (a, b, ca) = (pair(&["a.test"]), pair(&["b.test"]), pair(&[]));
    let dir = Dir::new(
        TWO_CERTIFICATES,
        &[
            ("certs/a.pem", &a.cert_pem),
            ("certs/a.key", &a.key_pem),
            ("certs/b.pem", &b.cert_pem),
            ("certs/b.key", &b.key_pem),
            ("certs/ca.pem", &ca.cert_pem),
        ],
    );
    let tls = dir.load().unwrap().tls;
    assert_eq!(tls.certificates.len(), 2);
    assert_eq!(tls.certificates[0].names, ["a.test"]);
    assert_eq!(tls.certificates[1].names, ["b.test"]);
    assert_eq!(tls.certificates[0].key.format, KeyFormat::Pkcs8);
    assert!(tls.certificates[0].source.ends_with("certs/a.pem"));
    assert_eq!(tls.client_auth, ClientAuth::Optional);
    assert_eq!(tls.client_cas.len(), 1);
}

#[test]
fn every_problem_names_the_file_and_its_line() {
    let (a, b) = (pair(&["a.test"]), pair(&["b.test"]));
    let dir = Dir::new(
        TWO_CERTIFICATES,
        &[("certs/a.pem", &a.cert_pem), ("certs/a.key", &b.key_pem), ("certs/b.pem", "junk"), ("certs/ca.pem", "")],
    );
    let errors = dir.load().unwrap_err();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(
        errors[0].starts_with("gateway.toml:3:12: ") && errors[0].contains("certs/a.key does not go with"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("gateway.toml:5:13: ") && errors[1].contains("certs/b.pem: no -----BEGIN"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].starts_with("gateway.toml:6:12: ") && errors[2].contains("certs/b.key: cannot read"),
        "{}",
        errors[2]
    );
    assert!(errors[3].starts_with("gateway.toml:9:18: ") && errors[3].contains("certs/ca.pem"), "{}", errors[3]);
}

#[test]
fn client_auth_needs_a_ca_and_a_ca_needs_client_auth() {
    let errors = Dir::new("[tls]\nclient-auth = \"required\"\n", &[]).load().unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("gateway.toml:2:15: ") && e.contains("add client-ca-file")),
        "{errors:?}"
    );
    let errors = Dir::new("[tls]\nclient-ca-file = \"certs/ca.pem\"\n", &[]).load().unwrap_err();
    assert!(errors[0].contains("client-auth is \"none\""), "{errors:?}");
    let errors = Dir::new("[tls]\nclient-auth = \"sometimes\"\n", &[]).load().unwrap_err();
    assert!(errors[0].contains("sometimes"), "{errors:?}");
}

#[test]
fn client_auth_per_certificate() {
    let (a, b, ca) = (pair(&["a.test"]), pair(&["b.test"]), pair(&[]));
    let files = [
        ("certs/a.pem", a.cert_pem.as_str()),
        ("certs/a.key", a.key_pem.as_str()),
        ("certs/b.pem", b.cert_pem.as_str()),
        ("certs/b.key", b.key_pem.as_str()),
        ("certs/ca.pem", ca.cert_pem.as_str()),
    ];
    let strict_b = "[[tls.certificate]]\ncert-file = \"certs/a.pem\"\nkey-file = \"certs/a.key\"\n\
[[tls.certificate]]\ncert-file = \"certs/b.pem\"\nkey-file = \"certs/b.key\"\nclient-auth = \"required\"\n";
    // A certificate of its own asks for client certificates: the CA is needed, and is not
    // "set without client-auth" although [tls] says none.
    let tls = Dir::new(&format!("{strict_b}[tls]\nclient-ca-file = \"certs/ca.pem\"\n"), &files).load().unwrap().tls;
    assert_eq!(tls.client_auth, ClientAuth::None);
    assert_eq!(tls.certificates[0].client_auth, None, "the default: [tls]'s");
    assert_eq!(tls.certificates[1].client_auth, Some(ClientAuth::Required));
    assert_eq!(tls.client_cas.len(), 1);
    let errors = Dir::new(strict_b, &files).load().unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("gateway.toml:7:15: ") && e.contains("add client-ca-file")),
        "{errors:?}"
    );
}

#[test]
fn no_tls_table_means_no_certificates() {
    let tls = Dir::new("", &[]).load().unwrap().tls;
    assert!(tls.certificates.is_empty());
    assert_eq!(tls.client_auth, ClientAuth::None);
}

#[test]
fn backend_ca_file_is_read_and_checked() {
    let ca = pair(&[]);
    let tls =
        Dir::new("[tls]\nbackend-ca-file = \"certs/ca.pem\"\n", &[("certs/ca.pem", &ca.cert_pem)]).load().unwrap().tls;
    assert_eq!(tls.backend_cas.len(), 1);
    let errors = Dir::new("[tls]\nbackend-ca-file = \"certs/missing.pem\"\n", &[]).load().unwrap_err();
    assert!(errors[0].starts_with("gateway.toml:2:19: ") && errors[0].contains("cannot read"), "{errors:?}");
}

#[test]
fn the_backend_client_identity_is_read_and_checked() {
    let client = pair(&[]);
    let other = pair(&[]);
    let files = [("certs/client.pem", client.cert_pem.as_str()), ("certs/client.key", client.key_pem.as_str())];
    let table =
        "[tls]\nbackend-client-cert-file = \"certs/client.pem\"\nbackend-client-key-file = \"certs/client.key\"\n";
    let tls = Dir::new(table, &files).load().unwrap().tls;
    let identity = tls.backend_client.expect("the backend client identity");
    assert_eq!(identity.chain.len(), 1);
    assert!(identity.names.is_empty(), "a client identity serves no name");
    // A key that is not the certificate's, or one file without the other, is refused where written.
    let files = [("certs/client.pem", client.cert_pem.as_str()), ("certs/client.key", other.key_pem.as_str())];
    let errors = Dir::new(table, &files).load().unwrap_err();
    assert!(errors[0].starts_with("gateway.toml:3:27: ") && errors[0].contains("does not go with"), "{errors:?}");
    let errors = Dir::new("[tls]\nbackend-client-cert-file = \"certs/client.pem\"\n", &files).load().unwrap_err();
    assert!(errors[0].contains("add backend-client-key-file"), "{errors:?}");
    let errors = Dir::new("[tls]\nbackend-client-key-file = \"certs/client.key\"\n", &files).load().unwrap_err();
    assert!(errors[0].contains("add backend-client-cert-file"), "{errors:?}");
}

#[test]
fn named_certificates_negotiate_and_revocation_lists() {
    let (server, ca, client) = (pair(&["a.test"]), pair(&[]), pair(&["client.test"]));
    let gateway = "[[tls.certificate]]\ncert-file = \"certs/a.pem\"\nkey-file = \"certs/a.key\"\n\
        [tls]\nclient-auth = \"negotiate\"\n\
        [[tls.named-certificate]]\nid = \"ca\"\ncert-file = \"certs/ca.pem\"\n\
        [[tls.named-certificate]]\nid = \"client\"\ncert-file = \"certs/client.pem\"\nkey-file = \"certs/client.key\"\n";
    let files = [
        ("certs/a.pem", server.cert_pem.as_str()),
        ("certs/a.key", &server.key_pem),
        ("certs/ca.pem", &ca.cert_pem),
        ("certs/client.pem", &client.cert_pem),
        ("certs/client.key", &client.key_pem),
    ];
    let tls = Dir::new(gateway, &files).load().unwrap().tls;
    assert_eq!(tls.client_auth, ClientAuth::Negotiate, "negotiate needs no client-ca-file");
    assert_eq!(tls.named.len(), 2);
    assert_eq!((tls.named[0].id.as_str(), tls.named[0].key.is_some()), ("ca", false));
    assert_eq!((tls.named[1].id.as_str(), tls.named[1].key.is_some()), ("client", true));
    assert_eq!(tls.named[0].thumbprint, super::thumbprint(&tls.named[0].chain[0]));
    assert_eq!(tls.named[0].thumbprint.len(), 40);

    let twice = gateway.replace("id = \"client\"", "id = \"ca\"");
    let errors = Dir::new(&twice, &files).load().unwrap_err();
    assert!(errors.iter().any(|e| e.starts_with("gateway.toml:10:6: ") && e.contains("already used")), "{errors:?}");
    let wrong_key = gateway.replace("certs/client.key", "certs/a.key");
    let errors = Dir::new(&wrong_key, &files).load().unwrap_err();
    assert!(errors.iter().any(|e| e.contains("is not the certificate's key")), "{errors:?}");

    let crl_line = gateway.replace(
        "client-auth = \"negotiate\"\n",
        "client-auth = \"negotiate\"\nclient-crl-files = [\"certs/ca.crl\"]\n",
    );
    let errors =
        Dir::new(&crl_line, &[files.as_slice(), &[("certs/ca.crl", "not a list")]].concat()).load().unwrap_err();
    assert!(errors.iter().any(|e| e.contains("not a certificate revocation list")), "{errors:?}");
}
