//! Certificates a policy names by id: the `[[tls.named-certificate]]`s of `gateway.toml`
//! (APIM's certificate entities; `config/tls` reads and checks them). `validate-jwt`'s `<key
//! certificate-id>` takes the public key, in the form the JWT verifier takes;
//! `authentication-certificate` and `issuer-certificate-id` need only the id.

use portcullis_contract::jwt::{EcCurve, KeyMaterial};
use portcullis_contract::tls::NamedCertificate;
use portcullis_policy::compile::Certificates;
use x509_parser::prelude::{FromDer as _, X509Certificate};

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";

/// The named certificates by id, with their public keys. A certificate whose key a JWT cannot be
/// signed with (not RSA, P-256, P-384 or Ed25519) is still named, with an empty key that verifies
/// nothing.
pub(crate) fn read(named: &[NamedCertificate]) -> Certificates {
    named
        .iter()
        .filter_map(|certificate| {
            let key =
                certificate.chain.first().map(|der| public_key(der).unwrap_or(KeyMaterial::RsaDer(Vec::new())))?;
            Some((certificate.id.clone(), key))
        })
        .collect()
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
