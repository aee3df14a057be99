//! `validate-jwt` and `validate-azure-ad-token`: attributes and children to one [`JwtRule`].
//!
//! Everything but `token-value` is a literal: keys, audiences and issuers are facts of the
//! configuration, checked here once (a key that is not base64 is a compile error at its
//! position, not a 401 at run time).

use base64::Engine as _;
use portcullis_contract::jwt::{AzureRules, JWT_LIST_MAX, JwtKey, JwtRule, KeyMaterial, RequiredClaim, TokenSource};
use portcullis_contract::program::Op;

use super::{Place, SectionCompiler};
use crate::expr::Expect;
use crate::xml::Element;

/// Largest `clock-skew`: a day is already far beyond any clock drift.
const CLOCK_SKEW_MAX_S: u32 = 86_400;

pub(super) fn validate_jwt(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let Some(mut rule) = common(c, element, place) else { return };
    rule.require_expiration_time = c.literal_bool(element, "require-expiration-time", true, place);
    rule.require_signed_tokens = c.literal_bool(element, "require-signed-tokens", true, place);
    rule.clock_skew_s = match c.literal_parsed::<u32>(element, "clock-skew", "a number of seconds", place) {
        Some(Some(seconds)) if seconds <= CLOCK_SKEW_MAX_S => seconds,
        Some(Some(_)) => {
            let span = element.attr("clock-skew").map_or(element.name_span.clone(), |a| a.value_span.clone());
            c.error(place, span, format!("clock-skew is at most {CLOCK_SKEW_MAX_S} seconds"));
            0
        }
        _ => 0,
    };
    // A key source that failed to compile has its own error; no second one for its absence.
    let mut key_sources = 0;
    for child in element.elements() {
        match child.name.as_str() {
            "openid-config" => {
                key_sources += 1;
                openid_config(c, child, place, &mut rule);
            }
            "issuer-signing-keys" => {
                let keys = children(c, child, "key", place);
                key_sources += keys.len();
                for key in keys {
                    if let Some(key) = signing_key(c, key, place) {
                        rule.keys.push(key);
                    }
                }
            }
            "audiences" => rule.audiences = texts(c, child, "audience", place),
            "issuers" => rule.issuers = texts(c, child, "issuer", place),
            "required-claims" => rule.required_claims = required_claims(c, child, place),
            "decryption-keys" => decryption_keys(c, child, place),
            other => c.error(
                place,
                child.name_span.clone(),
                format!(
                    "<validate-jwt> holds openid-config, issuer-signing-keys, decryption-keys, audiences, issuers \
                     and required-claims, not <{other}>"
                ),
            ),
        }
    }
    if rule.require_signed_tokens && key_sources == 0 {
        c.error(
            place,
            element.name_span.clone(),
            "<validate-jwt> needs <issuer-signing-keys> or <openid-config url=\"...\"> to check signatures \
             (or require-signed-tokens=\"false\")",
        );
    }
    emit(c, element, place, rule);
}

pub(super) fn validate_azure_ad_token(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    let Some(mut rule) = common(c, element, place) else { return };
    let Some(tenant_id) = c.required_literal(element, "tenant-id", place) else { return };
    let mut azure = AzureRules {
        tenant_id: tenant_id.trim().to_owned(),
        backend_application_ids: Vec::new(),
        client_application_ids: Vec::new(),
    };
    for child in element.elements() {
        match child.name.as_str() {
            "audiences" => rule.audiences = texts(c, child, "audience", place),
            "backend-application-ids" => azure.backend_application_ids = texts(c, child, "application-id", place),
            "client-application-ids" => azure.client_application_ids = texts(c, child, "application-id", place),
            "required-claims" => rule.required_claims = required_claims(c, child, place),
            "decryption-keys" => decryption_keys(c, child, place),
            other => c.error(
                place,
                child.name_span.clone(),
                format!(
                    "<validate-azure-ad-token> holds audiences, backend-application-ids, client-application-ids, \
                     required-claims and decryption-keys, not <{other}>"
                ),
            ),
        }
    }
    // Entra's keys: the tenant's OpenID configuration under the configured authority, which
    // control resolves (`{authority}` stands for `[jwt] azure-authority`).
    rule.openid_urls.push(format!("{{authority}}/{}/v2.0/.well-known/openid-configuration", azure.tenant_id));
    rule.azure = Some(azure);
    emit(c, element, place, rule);
}

/// The token source and the attributes both policies share.
fn common(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) -> Option<JwtRule> {
    let source = token_source(c, element, place)?;
    let status = match c.literal_parsed::<u16>(element, "failed-validation-httpcode", "an HTTP status", place)? {
        Some(status) if (100..=599).contains(&status) => status,
        Some(status) => {
            let span = element.attr("failed-validation-httpcode").map(|a| a.value_span.clone());
            c.error(place, span.unwrap_or(element.name_span.clone()), format!("{status} is not an HTTP status"));
            return None;
        }
        None => portcullis_contract::jwt::FAILED_VALIDATION_STATUS_DEFAULT,
    };
    let message = match element.attr("failed-validation-error-message") {
        Some(attr) => Some(c.literal(attr, place)?),
        None => None,
    };
    let output_variable = match element.attr("output-token-variable-name") {
        Some(attr) => Some(c.literal(attr, place)?.trim().to_owned()),
        None => None,
    };
    Some(JwtRule { status, message, output_variable, ..JwtRule::new(element.name.clone(), source) })
}

/// Exactly one of `header-name`, `query-parameter-name` and `token-value`
/// (`validate-azure-ad-token`: `Authorization` when none is given).
fn token_source(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) -> Option<TokenSource> {
    let sources: Vec<&str> = ["header-name", "query-parameter-name", "token-value"]
        .into_iter()
        .filter(|name| element.attr(name).is_some())
        .collect();
    if sources.len() > 1 {
        c.error(
            place,
            element.name_span.clone(),
            format!("<{}> reads the token from one place: {} are exclusive", element.name, sources.join(" and ")),
        );
        return None;
    }
    match sources.first().copied() {
        Some("query-parameter-name") => {
            Some(TokenSource::Query(c.required_literal(element, "query-parameter-name", place)?))
        }
        Some("token-value") => Some(TokenSource::Value),
        Some(_) => {
            let name = header_name(c, element, place)?;
            header_source(c, element, place, name)
        }
        None if element.name == "validate-azure-ad-token" => {
            header_source(c, element, place, "Authorization".to_owned())
        }
        None => {
            c.error(
                place,
                element.name_span.clone(),
                "<validate-jwt> needs one of header-name, query-parameter-name or token-value",
            );
            None
        }
    }
}

fn header_name(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) -> Option<String> {
    let name = c.required_literal(element, "header-name", place)?;
    if !super::policies::is_token(&name) {
        let span = element.attr("header-name").map_or(element.name_span.clone(), |a| a.value_span.clone());
        c.error(place, span, format!("{name:?} is not a valid HTTP header name"));
        return None;
    }
    Some(name)
}

/// `require-scheme` applies to `Authorization` only (APIM ignores it on a custom header).
fn header_source(c: &mut SectionCompiler<'_>, element: &Element, place: &Place, name: String) -> Option<TokenSource> {
    let scheme = match element.attr("require-scheme") {
        Some(attr) => Some(c.literal(attr, place)?.trim().to_owned()).filter(|s| !s.is_empty()),
        None => None,
    };
    let scheme = scheme.filter(|_| name.eq_ignore_ascii_case("authorization"));
    Some(TokenSource::Header { name, scheme })
}

/// Emits the token expression (for `token-value`) and the op.
fn emit(c: &mut SectionCompiler<'_>, element: &Element, place: &Place, rule: JwtRule) {
    let token_on_stack = rule.source == TokenSource::Value;
    if token_on_stack {
        c.attr_value(element, "token-value", Expect::String, place);
    }
    let index = c.code.jwt(rule);
    c.code.emit(Op::ValidateJwt { rule: index, token_on_stack });
}

fn openid_config(c: &mut SectionCompiler<'_>, element: &Element, place: &Place, rule: &mut JwtRule) {
    let Some(url) = c.required_literal(element, "url", place) else { return };
    let url = url.trim();
    // An unknown named value (allowed and warned about): the URL is checked where it is defined.
    if !(url.starts_with("https://") || url.starts_with("http://") || c.unresolved(url)) {
        let span = element.attr("url").map_or(element.name_span.clone(), |a| a.value_span.clone());
        c.error(place, span, format!("openid-config url {url:?} is not an http(s) URL"));
        return;
    }
    rule.openid_urls.push(url.to_owned());
}

/// `<decryption-keys>`: encrypted tokens (JWE) need a JWE implementation, which `jsonwebtoken`
/// does not have; a policy that relies on them must not load as if it worked.
fn decryption_keys(c: &mut SectionCompiler<'_>, element: &Element, place: &Place) {
    c.error(
        place,
        element.name_span.clone(),
        "<decryption-keys> is not supported: encrypted tokens (JWE) need a JWE implementation, which the \
         gateway's JWT library (jsonwebtoken) does not provide",
    );
}

/// The children named `name` of a list element; others are errors.
fn children<'e>(c: &mut SectionCompiler<'_>, list: &'e Element, name: &str, place: &Place) -> Vec<&'e Element> {
    let mut found = Vec::new();
    for child in list.elements() {
        if child.name == name {
            found.push(child);
        } else {
            c.error(
                place,
                child.name_span.clone(),
                format!("<{}> holds <{name}> elements, not <{}>", list.name, child.name),
            );
        }
    }
    if found.len() > JWT_LIST_MAX {
        c.error(place, list.name_span.clone(), format!("at most {JWT_LIST_MAX} <{name}> elements"));
        found.truncate(JWT_LIST_MAX);
    }
    found
}

/// The non-empty texts of the children named `name`.
fn texts(c: &mut SectionCompiler<'_>, list: &Element, name: &str, place: &Place) -> Vec<String> {
    let mut out = Vec::new();
    for child in children(c, list, name, place) {
        match child.text() {
            Some((text, _)) if !text.trim().is_empty() => out.push(text.trim().to_owned()),
            _ => c.error(place, child.name_span.clone(), format!("<{name}> needs a value as its content")),
        }
    }
    out
}

fn required_claims(c: &mut SectionCompiler<'_>, list: &Element, place: &Place) -> Vec<RequiredClaim> {
    let mut claims = Vec::new();
    for claim in children(c, list, "claim", place) {
        let Some(name) = c.required_literal(claim, "name", place) else { continue };
        let match_all = match claim.attr("match") {
            None => true,
            Some(attr) => match attr.value.trim() {
                "all" => true,
                "any" => false,
                other => {
                    c.error(place, attr.value_span.clone(), format!("match {other:?}: expected all or any"));
                    continue;
                }
            },
        };
        let separator = match claim.attr("separator") {
            Some(attr) => c.literal(attr, place).filter(|s| !s.is_empty()),
            None => None,
        };
        let values = texts(c, claim, "value", place);
        claims.push(RequiredClaim { name: name.trim().to_owned(), match_all, separator, values });
    }
    claims
}

/// One `<key>`: a base64 symmetric key as content, or `n` + `e`, or `certificate-id`.
fn signing_key(c: &mut SectionCompiler<'_>, key: &Element, place: &Place) -> Option<JwtKey> {
    let id = match key.attr("id") {
        Some(attr) => Some(c.literal(attr, place)?),
        None => None,
    };
    let text = key.text();
    let forms =
        [text.is_some(), key.attr("n").is_some() || key.attr("e").is_some(), key.attr("certificate-id").is_some()];
    if forms.iter().filter(|&&form| form).count() != 1 {
        c.error(
            place,
            key.name_span.clone(),
            "<key> is one of: a base64 symmetric key as its content, n=\"...\" e=\"...\", or certificate-id=\"...\"",
        );
        return None;
    }
    let material = if let Some((text, span)) = text {
        let text = c.substitute(&text, &span, place)?;
        match base64_any(text.trim()) {
            Some(secret) if !secret.is_empty() => KeyMaterial::Symmetric(secret),
            _ => {
                c.error(place, span, "the symmetric key is not base64");
                return None;
            }
        }
    } else if let Some(certificate) = key.attr("certificate-id") {
        let certificate_id = c.literal(certificate, place)?;
        match c.env.certificates.get(certificate_id.trim()) {
            Some(material) => material.clone(),
            None if c.env.options.allow_unknown_references => {
                let message = format!("no certificate {:?} known here; the key is skipped", certificate_id.trim());
                c.warning(place, certificate.value_span.clone(), message);
                return None;
            }
            None => {
                c.error(
                    place,
                    certificate.value_span.clone(),
                    format!(
                        "no certificate {:?} (add a [[tls.named-certificate]] with this id to gateway.toml)",
                        certificate_id.trim()
                    ),
                );
                return None;
            }
        }
    } else {
        let n = rsa_component(c, key, "n", place)?;
        let e = rsa_component(c, key, "e", place)?;
        KeyMaterial::Rsa { n, e }
    };
    Some(JwtKey { id, material })
}

fn rsa_component(c: &mut SectionCompiler<'_>, key: &Element, name: &str, place: &Place) -> Option<Vec<u8>> {
    let text = c.required_literal(key, name, place)?;
    match base64_any(text.trim()) {
        Some(bytes) if !bytes.is_empty() => Some(bytes),
        _ => {
            let span = key.attr(name).map_or(key.name_span.clone(), |a| a.value_span.clone());
            c.error(place, span, format!("{name} is not base64url"));
            None
        }
    }
}

/// Base64 in either alphabet, padded or not (APIM documents base64 for keys and base64url for
/// `n`/`e`; both appear in the wild).
pub(crate) fn base64_any(text: &str) -> Option<Vec<u8>> {
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let standard = text.replace('-', "+").replace('_', "/");
    engine.decode(standard.as_bytes()).ok()
}
