//! A client's certificate as policies read it (`context.Request.Certificate`, .NET's
//! `X509Certificate2`): parsed once per connection, right after the handshake. Whether it chains
//! to a trusted CA and whether it is revoked is worked out only when a `validate-client-certificate`
//! asks, once per connection and snapshot ([`super::client_trust`]).

use chrono::{DateTime, Utc};
use sha1::{Digest as _, Sha1};
use x509_parser::prelude::{FromDer as _, X509Certificate, X509Name};

/// The members of `context.Request.Certificate`, in .NET's formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// SHA-1 of the DER, upper-case hex (`Thumbprint`).
    pub thumbprint: String,
    /// Distinguished name, most specific first: `CN=client, O=Example, C=NL` (`Subject`).
    pub subject: String,
    /// The issuer's distinguished name, same format (`Issuer`).
    pub issuer: String,
    /// Serial number, upper-case hex, big-endian as encoded (`SerialNumber`).
    pub serial_number: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// The subject's common name (`GetNameInfo(X509NameType.SimpleName)`), if it has one.
    pub common_name: Option<String>,
    /// The DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// The chain as the client sent it (DER), end entity first.
    pub chain: Vec<Vec<u8>>,
    /// The trust verdict for the snapshot generation that asked last (`Cell`: a connection lives
    /// on one worker).
    pub(crate) verdict: std::cell::Cell<Option<(u64, super::client_trust::Verdict)>>,
}

impl ClientCertificate {
    /// Reads the end entity of `chain` (DER, as the client sent it); `None` if it is not X.509.
    pub fn parse_chain(chain: &[rustls::pki_types::CertificateDer<'_>]) -> Option<Self> {
        let mut parsed = Self::parse(chain.first()?)?;
        parsed.chain = chain.iter().map(|der| der.as_ref().to_vec()).collect();
        Some(parsed)
    }

    /// Reads `der`, a certificate without its chain; `None` if it is not X.509.
    pub fn parse(der: &[u8]) -> Option<Self> {
        let (_, certificate) = X509Certificate::from_der(der).ok()?;
        let validity = certificate.validity();
        let common_name =
            certificate.subject().iter_common_name().next().and_then(|name| name.as_str().ok()).map(str::to_owned);
        let dns_names = certificate
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|name| match name {
                        x509_parser::extensions::GeneralName::DNSName(name) => Some((*name).to_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            thumbprint: upper_hex(&Sha1::digest(der)),
            subject: dotnet_name(certificate.subject()),
            issuer: dotnet_name(certificate.issuer()),
            serial_number: upper_hex(certificate.raw_serial()),
            not_before: DateTime::from_timestamp(validity.not_before.timestamp(), 0)?,
            not_after: DateTime::from_timestamp(validity.not_after.timestamp(), 0)?,
            common_name,
            dns_names,
            chain: vec![der.to_vec()],
            verdict: std::cell::Cell::new(None),
        })
    }
}

pub(crate) fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02X}")).collect()
}

/// .NET's `X500DistinguishedName.Name`: relative names in reverse order of encoding, `, `
/// between them, .NET's short names (`S` for a state, `E` for an e-mail address).
pub(crate) fn dotnet_name(name: &X509Name<'_>) -> String {
    let mut parts = Vec::new();
    for rdn in name.iter().collect::<Vec<_>>().into_iter().rev() {
        for attribute in rdn.iter() {
            let oid = attribute.attr_type().to_id_string();
            let key = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "2.5.4.6" => "C",
                "2.5.4.7" => "L",
                "2.5.4.8" => "S",
                "2.5.4.9" => "STREET",
                "2.5.4.5" => "SERIALNUMBER",
                "0.9.2342.19200300.100.1.25" => "DC",
                "1.2.840.113549.1.9.1" => "E",
                _ => "",
            };
            let key = if key.is_empty() { format!("OID.{oid}") } else { key.to_owned() };
            let value = attribute.as_str().map_or_else(|_| String::from("#"), str::to_owned);
            parts.push(format!("{key}={value}"));
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

    use super::*;

    #[test]
    fn reads_what_policies_see() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CountryName, "NL");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Example");
        params.distinguished_name.push(rcgen::DnType::CommonName, "client");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0xAB]));
        let certificate = params.self_signed(&key).unwrap();
        let parsed = ClientCertificate::parse(certificate.der()).unwrap();
        assert_eq!(parsed.subject, "CN=client, O=Example, C=NL");
        assert_eq!(parsed.issuer, parsed.subject, "self-signed");
        assert_eq!(parsed.serial_number, "01AB");
        assert_eq!(parsed.thumbprint, upper_hex(&Sha1::digest(certificate.der())));
        assert_eq!(parsed.thumbprint.len(), 40);
        assert!(parsed.not_before < parsed.not_after);
        assert!(ClientCertificate::parse(b"not a certificate").is_none());
    }
}
