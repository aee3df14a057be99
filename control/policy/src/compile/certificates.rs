//! Certificate policies: `validate-client-certificate` (the client's TLS certificate against
//! rules and identities) and `authentication-certificate` (the certificate presented to the
//! backend).

use portcullis_contract::program::{CERTIFICATE_IDENTITIES_MAX, CertificateIdentity, ClientCertificateCheck, Op};

use super::{Place, SectionCompiler};
use crate::expr::{self, Expect};
use crate::xml::Element;

/// The claims an `<identity>` may carry, in APIM's order.
const IDENTITY_CLAIMS: [&str; 8] = [
    "thumbprint",
    "serial-number",
    "common-name",
    "subject",
    "dns-name",
    "issuer-subject",
    "issuer-thumbprint",
    "issuer-certificate-id",
];

pub(super) fn validate_client_certificate(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let mut check = ClientCertificateCheck {
        validate_revocation: c.literal_bool(element, "validate-revocation", true, place),
        validate_trust: c.literal_bool(element, "validate-trust", true, place),
        validate_not_before: c.literal_bool(element, "validate-not-before", true, place),
        validate_not_after: c.literal_bool(element, "validate-not-after", true, place),
        ignore_error: c.literal_bool(element, "ignore-error", false, place),
        identities: Vec::new(),
    };
    for child in element.elements() {
        if child.name != "identities" {
            let message = format!("<validate-client-certificate> holds <identities>, not <{}>", child.name);
            c.error(place, child.name_span.clone(), message);
            continue;
        }
        for identity in child.elements() {
            if identity.name != "identity" {
                let message = format!("<identities> holds <identity> elements, not <{}>", identity.name);
                c.error(place, identity.name_span.clone(), message);
                continue;
            }
            if check.identities.len() == CERTIFICATE_IDENTITIES_MAX {
                let message = format!("at most {CERTIFICATE_IDENTITIES_MAX} <identity> elements (as APIM)");
                c.error(place, identity.name_span.clone(), message);
                break;
            }
            if let Some(parsed) = certificate_identity(c, identity, place) {
                check.identities.push(parsed);
            }
        }
    }
    let index = c.code.client_certificate_check(check);
    c.code.emit(Op::ValidateClientCertificate(index));
}

/// One `<identity>`: literal claims (named values substituted), at least one.
fn certificate_identity(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) -> Option<CertificateIdentity> {
    let mut identity = CertificateIdentity::default();
    for attr in &element.attrs {
        let Some(claim) = IDENTITY_CLAIMS.iter().find(|claim| **claim == attr.name) else {
            let message =
                format!("<identity> has no attribute {:?}; it takes {}", attr.name, IDENTITY_CLAIMS.join(", "));
            c.error(place, attr.name_span.clone(), message);
            continue;
        };
        let value = c.literal(attr, place)?.trim().to_owned();
        if *claim == "issuer-certificate-id" && !c.env.certificates.contains_key(&value) {
            let message = format!("unknown certificate {value:?} (add a [[tls.named-certificate]] with this id)");
            if c.env.options.allow_unknown_references {
                c.warning(place, attr.value_span.clone(), message);
            } else {
                c.error(place, attr.value_span.clone(), message);
                return None;
            }
        }
        let slot = match *claim {
            "thumbprint" => &mut identity.thumbprint,
            "serial-number" => &mut identity.serial_number,
            "common-name" => &mut identity.common_name,
            "subject" => &mut identity.subject,
            "dns-name" => &mut identity.dns_name,
            "issuer-subject" => &mut identity.issuer_subject,
            "issuer-thumbprint" => &mut identity.issuer_thumbprint,
            _ => &mut identity.issuer_certificate_id,
        };
        *slot = Some(value);
    }
    if identity == CertificateIdentity::default() {
        let message = format!("<identity> needs at least one of {}", IDENTITY_CLAIMS.join(", "));
        c.error(place, element.name_span.clone(), message);
        return None;
    }
    Some(identity)
}

pub(super) fn authentication_certificate(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    super::policies::no_children(c, element, place);
    let given: Vec<&str> =
        ["thumbprint", "certificate-id", "body"].into_iter().filter(|name| element.attr(name).is_some()).collect();
    match given.as_slice() {
        ["body"] => {
            let span = element.attr("body").map_or(element.name_span.clone(), |attr| attr.name_span.clone());
            c.error(
                place,
                span,
                "body (a PKCS#12 certificate computed per request) is not supported: add the certificate as a \
                 [[tls.named-certificate]] with its key-file and name it with certificate-id",
            );
        }
        [name] => {
            let by_thumbprint = *name == "thumbprint";
            let Some(attr) = element.attr(name) else { return };
            let literal = !expr::is_expression(attr.value.trim()) && !attr.value.contains("{{");
            if literal && !by_thumbprint && !c.env.certificates.contains_key(attr.value.trim()) {
                let message = format!(
                    "unknown certificate {:?} (add a [[tls.named-certificate]] with this id and its key-file)",
                    attr.value.trim()
                );
                if c.env.options.allow_unknown_references {
                    c.warning(place, attr.value_span.clone(), message);
                } else {
                    c.error(place, attr.value_span.clone(), message);
                    return;
                }
            }
            c.value(&attr.value, &attr.value_span, Expect::String, place);
            c.code.emit(Op::AuthenticationCertificate { by_thumbprint });
        }
        [] => c.error(
            place,
            element.name_span.clone(),
            "<authentication-certificate> needs certificate-id=\"...\" or thumbprint=\"...\"",
        ),
        _ => c.error(place, element.name_span.clone(), "give one of thumbprint, certificate-id and body, not several"),
    }
}
