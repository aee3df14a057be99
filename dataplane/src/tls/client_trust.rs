//! What `validate-client-certificate` checks a client certificate against, per snapshot: the
//! client CAs (`[tls] client-ca-file`) as trust anchors, their revocation lists
//! (`client-crl-files`), and the thumbprints of known issuers (the CAs and the named
//! certificates) for `issuer-thumbprint` and `issuer-certificate-id`.
//!
//! Built on the channel thread with the snapshot. A worker evaluates a connection's certificate
//! against it at most once per snapshot generation (the verdict is kept with the certificate):
//! a chain verification costs a signature check or two, never I/O.

use portcullis_contract::tls::TlsSettings;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{CertRevocationList, EndEntityCert, KeyUsage, OwnedCertRevocationList};

use super::client_certificate::{ClientCertificate, upper_hex};

/// A client certificate's standing against one snapshot's trust material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// It chains to a client CA (checked at a time within its own validity, so that an expired
    /// certificate is reported as expired, not as untrusted).
    pub trusted: bool,
    /// A revocation list of its issuer lists its serial number.
    pub revoked: bool,
}

/// No trust material: nothing is trusted, revoked or named (views built outside a snapshot).
pub static NO_CLIENT_TRUST: ClientTrust =
    ClientTrust { generation: 0, anchors: Vec::new(), crls: Vec::new(), issuers: Vec::new(), named: Vec::new() };

/// One snapshot's trust material for client certificates.
#[derive(Debug, Default)]
pub struct ClientTrust {
    generation: u64,
    anchors: Vec<TrustAnchor<'static>>,
    crls: Vec<CertRevocationList<'static>>,
    /// (issuer subject as encoded, thumbprint) of every CA and named certificate.
    issuers: Vec<(Vec<u8>, String)>,
    /// (id, thumbprint, has a key) of the named certificates, in settings order.
    named: Vec<(String, String, bool)>,
}

impl ClientTrust {
    /// The trust material of `settings`; CAs or lists that do not parse are skipped (control
    /// checked them; a skipped CA trusts nothing, a skipped list revokes nothing).
    pub fn new(generation: u64, settings: &TlsSettings) -> Self {
        let anchors = settings
            .client_cas
            .iter()
            .filter_map(|der| {
                let der = CertificateDer::from(der.as_slice());
                webpki::anchor_from_trusted_cert(&der).ok().map(|anchor| anchor.to_owned())
            })
            .collect();
        let crls = settings
            .client_crls
            .iter()
            .filter_map(|der| OwnedCertRevocationList::from_der(der).ok())
            .map(CertRevocationList::from)
            .collect();
        let issuers = settings
            .client_cas
            .iter()
            .chain(settings.named.iter().filter_map(|named| named.chain.first()))
            .filter_map(|der| Some((subject_of(der)?, thumbprint(der))))
            .collect();
        let named = settings
            .named
            .iter()
            .map(|named| (named.id.clone(), named.thumbprint.clone(), named.key.is_some()))
            .collect();
        Self { generation, anchors, crls, issuers, named }
    }

    /// The index of named certificate `id`, and whether it has a key.
    pub fn named_by_id(&self, id: &str) -> Option<(u32, bool)> {
        let index = self.named.iter().position(|(named, _, _)| named == id)?;
        Some((index as u32, self.named[index].2))
    }

    /// The index of the named certificate whose thumbprint is `thumbprint` (either case), and
    /// whether it has a key.
    pub fn named_by_thumbprint(&self, thumbprint: &str) -> Option<(u32, bool)> {
        let index = self.named.iter().position(|(_, named, _)| named.eq_ignore_ascii_case(thumbprint))?;
        Some((index as u32, self.named[index].2))
    }

    /// The thumbprint of the named certificate at `index`.
    pub fn thumbprint(&self, index: u32) -> Option<&str> {
        self.named.get(index as usize).map(|(_, thumbprint, _)| thumbprint.as_str())
    }

    /// `certificate`'s verdict, worked out once per connection and snapshot.
    pub fn verdict(&self, certificate: &ClientCertificate) -> Verdict {
        if let Some((generation, verdict)) = certificate.verdict.get() {
            if generation == self.generation {
                return verdict;
            }
        }
        let verdict = Verdict { trusted: self.chains_to_anchor(certificate), revoked: self.revoked(certificate) };
        certificate.verdict.set(Some((self.generation, verdict)));
        verdict
    }

    /// The thumbprint of `certificate`'s issuer: the next certificate of the chain the client
    /// sent when it is the issuer, else a CA or named certificate with the issuer's subject.
    pub fn issuer_thumbprint(&self, certificate: &ClientCertificate) -> Option<String> {
        let issuer = issuer_of(certificate.chain.first()?)?;
        if let Some(next) = certificate.chain.get(1).filter(|next| subject_of(next).as_deref() == Some(&issuer[..])) {
            return Some(thumbprint(next));
        }
        self.issuers.iter().find(|(subject, _)| *subject == issuer).map(|(_, thumbprint)| thumbprint.clone())
    }

    fn chains_to_anchor(&self, certificate: &ClientCertificate) -> bool {
        let Some((end_entity, intermediates)) = certificate.chain.split_first() else { return false };
        let der = CertificateDer::from(end_entity.as_slice());
        let Ok(cert) = EndEntityCert::try_from(&der) else { return false };
        let intermediates: Vec<CertificateDer<'_>> =
            intermediates.iter().map(|der| CertificateDer::from(der.as_slice())).collect();
        // A moment inside the certificate's own validity: dates are checked on their own.
        let at = certificate.not_before.timestamp().max(0) as u64 + 1;
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(at)),
            KeyUsage::client_auth(),
            None,
            None,
        )
        .is_ok()
    }

    fn revoked(&self, certificate: &ClientCertificate) -> bool {
        let Some(end_entity) = certificate.chain.first() else { return false };
        let Some((issuer, serial)) = issuer_and_serial(end_entity) else { return false };
        self.crls.iter().filter(|crl| crl.issuer() == issuer.as_slice()).any(|crl| {
            // A list that cannot be searched revokes nothing (it parsed when loaded).
            crl.find_serial(&serial).ok().flatten().is_some()
        })
    }
}

fn thumbprint(der: &[u8]) -> String {
    use sha1::Digest as _;
    upper_hex(&sha1::Sha1::digest(der))
}

/// The subject name of `der` as encoded (the contents of the Name's SEQUENCE, as webpki
/// reports a list's issuer).
fn subject_of(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    Some(name_contents(certificate.subject().as_raw()))
}

fn issuer_of(der: &[u8]) -> Option<Vec<u8>> {
    issuer_and_serial(der).map(|(issuer, _)| issuer)
}

fn issuer_and_serial(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    Some((name_contents(certificate.issuer().as_raw()), certificate.raw_serial().to_vec()))
}

/// A DER Name without its SEQUENCE tag and length (webpki compares names that way).
fn name_contents(raw: &[u8]) -> Vec<u8> {
    let Some((&_tag, rest)) = raw.split_first() else { return Vec::new() };
    let Some((&first, rest)) = rest.split_first() else { return Vec::new() };
    let skip = if first & 0x80 == 0 { 0 } else { usize::from(first & 0x7f) };
    rest.get(skip..).unwrap_or_default().to_vec()
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

    use portcullis_contract::tls::{NamedCertificate, TlsSettings};
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, IsCa, Issuer, KeyIdMethod,
        KeyPair, RevokedCertParams, SerialNumber,
    };

    use super::*;

    /// A CA, certificates it issues and a revocation list of some of them.
    pub(crate) struct Pki {
        pub(crate) ca_der: Vec<u8>,
        issuer: Issuer<'static, KeyPair>,
    }

    impl Pki {
        pub(crate) fn new(name: &str) -> Self {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            let ca = params.self_signed(&key).unwrap();
            Self { ca_der: ca.der().to_vec(), issuer: Issuer::new(params, key) }
        }

        /// A client certificate for `name` with serial `serial`, valid from `days_from`
        /// to `days_to` days from now.
        pub(crate) fn issue(&self, name: &str, serial: u8, days: (i64, i64)) -> ClientCertificate {
            let mut params = CertificateParams::new(vec![format!("{name}.test")]).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.serial_number = Some(SerialNumber::from_slice(&[serial]));
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now + time::Duration::days(days.0);
            params.not_after = now + time::Duration::days(days.1);
            let cert = params.signed_by(&KeyPair::generate().unwrap(), &self.issuer).unwrap();
            ClientCertificate::parse_chain(&[cert.der().clone()]).unwrap()
        }

        pub(crate) fn crl(&self, revoked: &[u8]) -> Vec<u8> {
            let now = time::OffsetDateTime::now_utc();
            let params = CertificateRevocationListParams {
                this_update: now,
                next_update: now + time::Duration::days(7),
                crl_number: SerialNumber::from_slice(&[1]),
                issuing_distribution_point: None,
                revoked_certs: revoked
                    .iter()
                    .map(|serial| RevokedCertParams {
                        serial_number: SerialNumber::from_slice(&[*serial]),
                        revocation_time: now,
                        reason_code: None,
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: KeyIdMethod::Sha256,
            };
            params.signed_by(&self.issuer).unwrap().der().to_vec()
        }
    }

    pub(crate) fn trust(pki: &Pki, crls: Vec<Vec<u8>>) -> ClientTrust {
        let settings = TlsSettings {
            client_cas: vec![pki.ca_der.clone()],
            client_crls: crls,
            named: vec![NamedCertificate {
                id: "ca".into(),
                thumbprint: thumbprint(&pki.ca_der),
                source: "ca.pem".into(),
                chain: vec![pki.ca_der.clone()],
                key: None,
            }],
            ..TlsSettings::default()
        };
        ClientTrust::new(7, &settings)
    }

    #[test]
    fn certificates_of_the_ca_are_trusted_others_not() {
        let pki = Pki::new("CA one");
        let trust = trust(&pki, Vec::new());
        let client = pki.issue("client", 1, (-1, 30));
        assert_eq!(trust.verdict(&client), Verdict { trusted: true, revoked: false });
        let stranger = Pki::new("CA one").issue("client", 1, (-1, 30));
        assert!(!trust.verdict(&stranger).trusted, "same names, another key");
        // Expired or not yet valid, it still chains: dates are their own rules.
        assert!(trust.verdict(&pki.issue("old", 2, (-30, -1))).trusted);
        assert!(trust.verdict(&pki.issue("new", 3, (1, 30))).trusted);
        assert_eq!(trust.issuer_thumbprint(&client).as_deref(), Some(thumbprint(&pki.ca_der).as_str()));
        assert_eq!(trust.named_by_id("ca"), Some((0, false)));
        assert!(trust.named_by_thumbprint(&thumbprint(&pki.ca_der).to_lowercase()).is_some());
    }

    #[test]
    fn revocation_lists_name_revoked_serials_of_their_issuer_only() {
        let pki = Pki::new("CA one");
        let trust = trust(&pki, vec![pki.crl(&[9])]);
        assert!(trust.verdict(&pki.issue("revoked", 9, (-1, 30))).revoked);
        assert!(!trust.verdict(&pki.issue("fine", 8, (-1, 30))).revoked);
        let other = Pki::new("CA two");
        assert!(!trust.verdict(&other.issue("same-serial", 9, (-1, 30))).revoked, "another issuer's serial 9");
    }

    #[test]
    fn the_verdict_is_kept_per_snapshot_generation() {
        let pki = Pki::new("CA one");
        let client = pki.issue("client", 1, (-1, 30));
        assert!(trust(&pki, Vec::new()).verdict(&client).trusted);
        assert_eq!(client.verdict.get().map(|(generation, _)| generation), Some(7));
        let revoking = ClientTrust { generation: 8, ..trust(&pki, vec![pki.crl(&[1])]) };
        assert!(revoking.verdict(&client).revoked, "a new snapshot's lists are read again");
    }
}
