//! Builtins that read the request: message bodies, `AsJwt`, `AsBasic`, `context.Trace`.

use std::rc::Rc;

use base64::Engine as _;
use portcullis_contract::program::{Builtin, Side, ValueType};

use super::Args;
use crate::http::url::{self, Coding};
use crate::policy::error::Fault;
use crate::policy::state::{BodyEdit, StoredText, TRACES_MAX, TraceEntry};
use crate::policy::value::{BasicAuth, Handle, Jwt, Message, Text, Value};
use crate::policy::vm::Machine;

/// Parses a JWT's header and claims (no signature check). `Bearer ` is stripped.
pub(crate) fn parse_jwt(token: &str) -> Option<Jwt> {
    let token = token.trim();
    let token = token.strip_prefix("Bearer ").or_else(|| token.strip_prefix("bearer ")).unwrap_or(token).trim();
    let mut parts = token.split('.');
    let (header, claims, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let decode = |part: &str| -> Option<serde_json::Map<String, serde_json::Value>> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
        match serde_json::from_slice(&bytes).ok()? {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        }
    };
    Some(Jwt { header: decode(header)?, claims: decode(claims)? })
}

/// Parses `Basic base64(user:password)`.
pub(crate) fn parse_basic(value: &str) -> Option<BasicAuth> {
    let value = value.trim();
    let encoded =
        value.get(..6).filter(|scheme| scheme.eq_ignore_ascii_case("basic ")).map_or(value, |_| &value[6..]).trim();
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some(BasicAuth { user_id: Rc::from(user), password: Rc::from(password) })
}

impl<'r, 'a> Machine<'r, 'a> {
    /// The body of `message` as the policies left it; consumes it unless `preserve`.
    fn read_body(&mut self, message: Message, preserve: bool) -> Result<Text<'a>, Fault> {
        let programs = self.view.programs;
        let (edit, original) = match message {
            Message::Request => (&mut self.state.request_body, self.view.request_body),
            Message::Response => (&mut self.state.response_body, self.view.response.and_then(|response| response.body)),
        };
        let text = match &*edit {
            BodyEdit::Replaced(body) => Text::from(String::from_utf8_lossy(body.bytes(programs)).into_owned()),
            BodyEdit::Consumed => Text::Borrowed(""),
            BodyEdit::Unchanged => match original {
                Some(bytes) => crate::policy::vm::members::wire_text(bytes),
                None => return Err(Fault::eval("Expression evaluation failed. The message body was not buffered.")),
            },
        };
        if !preserve {
            *edit = BodyEdit::Consumed;
        }
        Ok(text)
    }
}

/// `X509Certificate2.Verify()` and `VerifyNoRevocation()` on the client's certificate: within its
/// validity dates and chained to a CA of `[tls] client-ca-file`, and for `Verify()` not revoked by
/// a list of `client-crl-files` (lists are never fetched: docs/policies.md).
pub(super) fn verify_certificate<'a>(m: &mut Machine<'_, 'a>, a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    a.arity(&[1])?;
    if !matches!(a.receiver()?, Value::Handle(Handle::Certificate)) {
        return Err(a.fail("Verify is defined on X509Certificate2 only"));
    }
    let Some(certificate) = m.view.client_certificate else { return Ok(Value::Bool(false)) };
    let current = certificate.not_before <= m.view.now && m.view.now <= certificate.not_after;
    let verdict = m.view.client_trust.verdict(certificate);
    let revoked = a.builtin == Builtin::CertificateVerify && verdict.revoked;
    Ok(Value::Bool(current && verdict.trusted && !revoked))
}

pub(super) fn call<'a>(m: &mut Machine<'_, 'a>, mut a: Args<'_, 'a>) -> Result<Value<'a>, Fault> {
    use Builtin as B;
    match a.builtin {
        B::BodyAs | B::BodyAsForm => {
            a.arity(if a.builtin == B::BodyAs { &[3] } else { &[2] })?;
            let preserve = a.boolean(1)?;
            let body = match a.receiver()? {
                Value::Handle(Handle::Body(message)) => {
                    let message = *message;
                    m.read_body(message, preserve)?
                }
                // An `IResponse` body reads as often as it is asked for (docs/policies.md).
                Value::ResponseBody(response) => String::from_utf8_lossy(&response.body).into_owned().into(),
                other => return Err(a.fail(&format!("As<T> is not defined on {}", other.type_name()))),
            };
            if a.builtin == B::BodyAsForm {
                // A form body decodes as a query does.
                let entries = url::query_pairs(body.as_str().as_bytes())
                    .map(|(k, v)| {
                        let key: Rc<str> = url::percent_decode_str(k, Coding::Form).into();
                        let value = Value::string(url::percent_decode_str(v, Coding::Form).into_owned());
                        (key, value)
                    })
                    .collect();
                return Ok(Value::Dict(Rc::new(std::cell::RefCell::new(entries))));
            }
            match a.value_type(2)? {
                ValueType::String => Ok(Value::Str(body)),
                ValueType::Bytes => Ok(Value::Bytes(body.as_str().as_bytes().into())),
                ty @ (ValueType::JObject | ValueType::JArray | ValueType::JToken) => {
                    let token = super::json::parse(&a, body.as_str())?;
                    let value = super::json::token_value(token);
                    if ty != ValueType::JToken && !value.is_type(ty) {
                        return Err(a.fail("Unexpected JSON token type."));
                    }
                    Ok(value)
                }
                other => Err(a.fail(&format!("As<{other:?}> is not supported"))),
            }
        }
        B::AsJwt => {
            a.arity(&[1])?;
            Ok(a.opt_text(0)?.and_then(parse_jwt).map_or(Value::Null, |jwt| Value::Jwt(Rc::new(jwt))))
        }
        B::AsBasic => {
            a.arity(&[1])?;
            Ok(a.opt_text(0)?.and_then(parse_basic).map_or(Value::Null, |basic| Value::Basic(Rc::new(basic))))
        }
        B::ContextTrace => {
            let message = a.take(a.len().saturating_sub(1))?;
            let mut text = String::new();
            message.write_display(&mut text);
            if m.state.traces.len() < TRACES_MAX {
                m.state.traces.push(TraceEntry {
                    source: crate::policy::load::LitRef { program: m.program.index(), index: u32::MAX },
                    severity: portcullis_contract::program::Severity::Information,
                    message: StoredText::Owned(text.into()),
                });
            } else {
                m.state.traces_dropped += 1;
            }
            Ok(Value::Null)
        }
        B::VariablesSet => {
            a.arity(&[2])?;
            let name = a.text(0)?.to_owned();
            let value = a.take(1)?;
            let program = m.program;
            let stored = crate::policy::state::Stored::keep(&value, |regex| {
                program.consts().iter().enumerate().find_map(|(index, c)| match c {
                    crate::policy::load::LoadedConst::Regex(r) if std::ptr::eq(r, regex) => {
                        Some(crate::policy::load::LitRef { program: program.index(), index: index as u32 })
                    }
                    _ => None,
                })
            })?;
            let programs = m.view.programs;
            match m.state.variables.iter_mut().find(|(key, _)| key.resolve(programs) == name) {
                Some(slot) => slot.1 = stored,
                None => m.state.variables.push((StoredText::Owned(name.into()), stored)),
            }
            let _ = Side::Request;
            Ok(Value::Null)
        }
        _ => Err(a.fail("not a context method")),
    }
}
