//! `validate-client-certificate` and `authentication-certificate`.
//!
//! APIM does not document the messages of a failed `validate-client-certificate`; the reasons
//! follow the names used for these checks in the wild, the status is 401 (docs/policies.md).

use portcullis_contract::program::CertificateIdentity;

use super::{Flow, Machine, internal};
use crate::policy::error::Fault;
use crate::tls::{ClientCertificate, ClientTrust};

/// Status of a failed `validate-client-certificate`.
const CLIENT_CERTIFICATE_FAILED_STATUS: u16 = 401;

impl Machine<'_, '_> {
    pub(super) fn validate_client_certificate(&mut self, index: u32) -> Result<Flow, Fault> {
        let program = self.program.program();
        let check =
            program.client_certificate_checks.get(index as usize).ok_or_else(|| internal("certificate check"))?;
        let failure = match self.view.client_certificate {
            None => Some(("ClientCertificateNotFound", "Client certificate is not present.")),
            Some(certificate) => first_failure(check, certificate, self.view.client_trust, self.view.now),
        };
        match failure {
            Some(_) if check.ignore_error => Ok(Flow::Next),
            Some((reason, message)) => Err(Fault::policy(CLIENT_CERTIFICATE_FAILED_STATUS, reason, message)),
            None => Ok(Flow::Next),
        }
    }

    pub(super) fn authentication_certificate(&mut self, by_thumbprint: bool) -> Result<Flow, Fault> {
        let name = self.pop_text("authentication-certificate")?;
        let trust = self.view.client_trust;
        let found =
            if by_thumbprint { trust.named_by_thumbprint(name.as_str()) } else { trust.named_by_id(name.as_str()) };
        match found {
            Some((index, true)) => {
                // Inside `send-request` (its request is being built) it is the call's certificate.
                match self.state.outgoing.as_deref_mut() {
                    Some(outgoing) => outgoing.certificate = Some(index),
                    None => self.state.backend_certificate = Some(index),
                }
                Ok(Flow::Next)
            }
            Some((_, false)) => Err(Fault::eval(format!(
                "Certificate '{}' has no private key to present to the backend.",
                name.as_str()
            ))),
            None => Err(Fault::eval(format!("Certificate '{}' was not found.", name.as_str()))),
        }
    }
}

/// The first rule `certificate` breaks, as (reason, message); the rules in APIM's order.
fn first_failure(
    check: &portcullis_contract::program::ClientCertificateCheck,
    certificate: &ClientCertificate,
    trust: &ClientTrust,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<(&'static str, &'static str)> {
    if check.validate_not_before && now < certificate.not_before {
        return Some(("ClientCertificateNotYetValid", "Client certificate is not valid yet."));
    }
    if check.validate_not_after && now > certificate.not_after {
        return Some(("ClientCertificateExpired", "Client certificate has expired."));
    }
    if check.validate_trust || check.validate_revocation {
        let verdict = trust.verdict(certificate);
        if check.validate_trust && !verdict.trusted {
            return Some(("ClientCertificateNotTrusted", "Client certificate is not trusted."));
        }
        if check.validate_revocation && verdict.revoked {
            return Some(("ClientCertificateRevoked", "Client certificate has been revoked."));
        }
    }
    let matches = |identity: &CertificateIdentity| identity_matches(identity, certificate, trust);
    if !check.identities.is_empty() && !check.identities.iter().any(matches) {
        return Some((
            "ClientCertificateIdentityNotMatched",
            "Client certificate does not match any of the allowed identities.",
        ));
    }
    None
}

/// Whether `certificate` has every claim `identity` gives: thumbprints and serial numbers
/// without regard to case, DNS names among the subject alternative names without regard to case,
/// names exactly (in .NET's `CN=a, O=b` form).
fn identity_matches(identity: &CertificateIdentity, certificate: &ClientCertificate, trust: &ClientTrust) -> bool {
    let same = |want: &Option<String>, have: &str| want.as_ref().is_none_or(|want| want == have);
    let same_hex = |want: &Option<String>, have: &str| want.as_ref().is_none_or(|want| want.eq_ignore_ascii_case(have));
    if !(same_hex(&identity.thumbprint, &certificate.thumbprint)
        && same_hex(&identity.serial_number, &certificate.serial_number)
        && same(&identity.subject, &certificate.subject)
        && same(&identity.issuer_subject, &certificate.issuer))
    {
        return false;
    }
    if let Some(want) = &identity.common_name {
        if certificate.common_name.as_deref() != Some(want.as_str()) {
            return false;
        }
    }
    if let Some(want) = &identity.dns_name {
        if !certificate.dns_names.iter().any(|name| name.eq_ignore_ascii_case(want)) {
            return false;
        }
    }
    if identity.issuer_thumbprint.is_none() && identity.issuer_certificate_id.is_none() {
        return true;
    }
    let Some(issuer) = trust.issuer_thumbprint(certificate) else { return false };
    let named = identity
        .issuer_certificate_id
        .as_deref()
        .map(|id| trust.named_by_id(id).and_then(|(index, _)| trust.thumbprint(index)));
    same_hex(&identity.issuer_thumbprint, &issuer)
        && named.is_none_or(|thumbprint| thumbprint.is_some_and(|thumbprint| thumbprint.eq_ignore_ascii_case(&issuer)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "a failed step fails the test")]

    use portcullis_contract::program::{CertificateIdentity, ClientCertificateCheck};

    use super::first_failure;
    use crate::tls::client_trust::tests::{Pki, trust};

    fn check(identities: Vec<CertificateIdentity>) -> ClientCertificateCheck {
        ClientCertificateCheck {
            validate_revocation: true,
            validate_trust: true,
            validate_not_before: true,
            validate_not_after: true,
            ignore_error: false,
            identities,
        }
    }

    #[test]
    fn rules_fail_in_order_with_their_reasons() {
        let pki = Pki::new("CA one");
        let trust = trust(&pki, vec![pki.crl(&[9])]);
        let now = chrono::Utc::now();
        let reason = |certificate: &crate::tls::ClientCertificate, check: &ClientCertificateCheck| {
            first_failure(check, certificate, &trust, now).map(|(reason, _)| reason)
        };
        let all = check(Vec::new());
        assert_eq!(reason(&pki.issue("client", 1, (-1, 30)), &all), None);
        assert_eq!(reason(&pki.issue("new", 2, (1, 30)), &all), Some("ClientCertificateNotYetValid"));
        assert_eq!(reason(&pki.issue("old", 3, (-30, -1)), &all), Some("ClientCertificateExpired"));
        let stranger = Pki::new("CA one").issue("client", 4, (-1, 30));
        assert_eq!(reason(&stranger, &all), Some("ClientCertificateNotTrusted"));
        assert_eq!(reason(&pki.issue("revoked", 9, (-1, 30)), &all), Some("ClientCertificateRevoked"));
        let lenient = ClientCertificateCheck { validate_trust: false, validate_not_after: false, ..all.clone() };
        assert_eq!(reason(&stranger, &lenient), None);
        assert_eq!(reason(&pki.issue("old", 3, (-30, -1)), &lenient), None);
    }

    #[test]
    fn a_certificate_must_match_every_claim_of_one_identity() {
        let pki = Pki::new("CA one");
        let trust = trust(&pki, Vec::new());
        let client = pki.issue("client", 1, (-1, 30));
        let matches = |identities: Vec<CertificateIdentity>| {
            first_failure(&check(identities), &client, &trust, chrono::Utc::now()).is_none()
        };
        let identity = |f: fn(&mut CertificateIdentity)| {
            let mut identity = CertificateIdentity::default();
            f(&mut identity);
            identity
        };
        assert!(matches(vec![identity(|i| i.subject = Some("CN=client".into()))]));
        assert!(matches(vec![identity(|i| i.common_name = Some("client".into()))]));
        assert!(matches(vec![identity(|i| i.dns_name = Some("CLIENT.test".into()))]));
        assert!(matches(vec![identity(|i| i.serial_number = Some("01".into()))]));
        assert!(matches(vec![identity(|i| i.issuer_subject = Some("CN=CA one".into()))]));
        assert!(matches(vec![identity(|i| i.issuer_certificate_id = Some("ca".into()))]));
        let mut exact = identity(|i| i.subject = Some("CN=client".into()));
        exact.thumbprint = Some(client.thumbprint.to_lowercase());
        assert!(matches(vec![exact.clone()]));
        exact.issuer_subject = Some("CN=CA two".into());
        assert!(!matches(vec![exact.clone()]), "one claim off");
        assert!(matches(vec![exact, identity(|i| i.common_name = Some("client".into()))]), "another identity fits");
        assert!(!matches(vec![identity(|i| i.issuer_thumbprint = Some("00".into()))]));
        assert!(!matches(vec![identity(|i| i.issuer_certificate_id = Some("unknown".into()))]));
    }
}
