//! Certificates a policy names by id (`validate-jwt`'s `<key certificate-id="...">`): the
//! file `certs/<id>.pem` (or `.crt`/`.cer`) of the config directory, the same directory `[tls]`
//! reads. Only the public key is kept, in the form the JWT verifier takes.

use std::path::Path;

use portcullis_contract::jwt::{EcCurve, KeyMaterial};
use portcullis_policy::compile::Certificates;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::{Diagnostic, Diagnostics};

/// Certificate files read per load: far beyond any real config directory.
pub(crate) const CERTIFICATES_MAX: usize = 1024;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// The public keys of `dir/certs/*.{pem,crt,cer}` by file stem. A PEM file that holds no
/// certificate (a private key beside its certificate) is not an entry; a certificate that cannot
/// be read or whose key is not RSA, P-256, P-384 or Ed25519 is a diagnostic.
pub(crate) fn read(dir: &Path, diagnostics: &mut Diagnostics) -> Certificates {
    let mut certificates = Certificates::new();
    let Ok(entries) = std::fs::read_dir(dir.join(super::tls::CERTS_DIR)) else { return certificates };
    let mut paths: Vec<_> = entries.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect();
    paths.sort();
    for path in paths.into_iter().take(CERTIFICATES_MAX) {
        let is_certificate = path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| matches!(ext.to_ascii_lowercase().as_str(), "pem" | "crt" | "cer"));
        let Some(id) = path.file_stem().and_then(|stem| stem.to_str()) else { continue };
        if !is_certificate {
            continue;
        }
        let Ok(der) = CertificateDer::from_pem_file(&path) else { continue };
        match public_key(&der) {
            Ok(material) => {
                certificates.insert(id.to_owned(), material);
            }
            Err(reason) => diagnostics.push(Diagnostic::at_path(&path, format!("certificate {id:?}: {reason}"))),
        }
    }
    certificates
}

/// The certificate's public key as [`KeyMaterial`].
pub(crate) fn public_key(der: &[u8]) -> Result<KeyMaterial, String> {
    let (_, certificate) =
        X509Certificate::from_der(der).map_err(|error| format!("not an X.509 certificate: {error}"))?;
    let spki = certificate.public_key();
    let key = spki.subject_public_key.data.to_vec();
    let algorithm = spki.algorithm.algorithm.to_id_string();
    match algorithm.as_str() {
        OID_RSA => Ok(KeyMaterial::RsaDer(key)),
        OID_ED25519 => Ok(KeyMaterial::Ed25519(key)),
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|parameters| parameters.as_oid().ok())
                .map(|oid| oid.to_id_string());
            match curve.as_deref() {
                Some(OID_P256) => Ok(KeyMaterial::Ec { curve: EcCurve::P256, point: key }),
                Some(OID_P384) => Ok(KeyMaterial::Ec { curve: EcCurve::P384, point: key }),
                other => Err(format!("EC curve {} is not P-256 or P-384", other.unwrap_or("(none)"))),
            }
        }
        other => Err(format!("public key algorithm {other} is not RSA, EC or Ed25519")),
    }
}
