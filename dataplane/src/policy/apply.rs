//! Writing the heads the policies' edits describe: the request forwarded to the backend, the
//! response relayed to the client, a response built by `return-response` / `mock-response` /
//! a CORS preflight, and the APIM-shaped error response.
//!
//! Without edits, [`write_request_head`] and [`write_response_head`] write exactly what
//! [`crate::http::forward`] writes (a test holds them to it).

use std::io::Write as _;

use portcullis_contract::program::Side;

use crate::http::HeaderSpan;
use crate::http::forward::{
    ClientConnection, Forwarding, REPLACED_ON_REQUEST, TRACEPARENT, is_hop_by_hop, write_connection, write_header,
    write_proxy_headers,
};
use crate::http::request::RequestHead;
use crate::http::response::ResponseHead;
use crate::http::url::{self, Coding, Target, write_backend_target};
use crate::policy::error::PolicyError;
use crate::policy::load::Programs;
use crate::policy::state::{EditTarget, RequestState};

/// Response headers the gateway writes itself when a policy replaced the body.
const FRAMING: [&[u8]; 2] = [b"content-length", b"transfer-encoding"];

/// Writes (replacing `out`'s contents) the request head sent to the backend, with the request
/// edits applied: method, `rewrite-uri`, query edits, `set-backend-service` (base path and
/// `Host`), header edits, `authentication-basic`, and `Content-Length` of a replaced body.
pub fn write_request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    buf: &[u8],
    forwarding: &Forwarding<'_>,
    state: &RequestState,
    programs: &Programs,
) {
    out.clear();
    match &state.method {
        Some(method) => out.extend_from_slice(method.resolve(programs).as_bytes()),
        None => out.extend_from_slice(head.method(buf)),
    }
    out.push(b' ');
    let base_path = state.backend.as_ref().map_or(forwarding.base_path, |backend| backend.base_path.as_str());
    let target = head.target(buf);
    let rest: &[u8] = if state.rewrite {
        state.rewritten.as_bytes()
    } else {
        target.get(forwarding.remainder_start..).unwrap_or(&[])
    };
    if state.has_edits(EditTarget::Query) {
        let rest = Target::parse(rest);
        write_backend_target(out, base_path, rest.path());
        let mark = out.len();
        out.push(b'?');
        write_query(out, rest.query().unwrap_or_default(), state, programs);
        if out.len() == mark + 1 {
            out.truncate(mark);
        }
    } else {
        write_backend_target(out, base_path, rest);
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let body = state.request_body_replacement(programs);
    let headers = head.headers();
    let target = EditTarget::Header(Side::Request);
    // A policy that sets `traceparent` itself wins over the gateway's.
    let traceparent = forwarding.traceparent.filter(|_| !state.edits_name(target, TRACEPARENT, programs));
    for header in headers {
        let name = header.name.of(buf);
        if is_hop_by_hop(name, buf, headers)
            || REPLACED_ON_REQUEST.iter().any(|r| name.eq_ignore_ascii_case(r))
            || (traceparent.is_some() && name.eq_ignore_ascii_case(TRACEPARENT))
            || (state.authorization.is_some() && name.eq_ignore_ascii_case(b"authorization"))
            || (body.is_some() && FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)))
            || !keeps_originals(state, target, name, programs)
        {
            continue;
        }
        write_header(out, name, header.value.of(buf));
    }
    write_edited_headers(out, state, target, programs, |name| {
        headers.iter().any(|h| h.name.of(buf).eq_ignore_ascii_case(name))
    });
    if let Some(authorization) = &state.authorization {
        write_header(out, b"Authorization", authorization.resolve(programs).as_bytes());
    }
    if let Some(body) = body {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    let authority = state.backend.as_ref().map_or(forwarding.authority, |backend| backend.authority.as_str());
    write_proxy_headers(out, head, buf, authority, forwarding.client_ip, forwarding.tls, traceparent);
}

/// Writes (replacing `out`'s contents) the response head relayed to the client, with the
/// response edits applied: `set-status`, header edits, CORS headers, and `Content-Length` of a
/// replaced body (the proxy then sends [`RequestState::response_body_replacement`] instead of
/// the backend's body).
pub fn write_response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead,
    buf: &[u8],
    connection: ClientConnection,
    state: &RequestState,
    programs: &Programs,
) {
    out.clear();
    match &state.status {
        Some((status, reason)) => {
            let _ = write!(out, "HTTP/1.1 {status} ");
            let reason = reason.as_ref().map_or(reason_phrase(*status), |reason| reason.resolve(programs));
            out.extend_from_slice(reason.as_bytes());
        }
        None => {
            let _ = write!(out, "HTTP/1.1 {} ", head.status());
            out.extend_from_slice(head.reason(buf));
        }
    }
    out.extend_from_slice(b"\r\n");
    let body = state.response_body_replacement(programs);
    let headers = head.headers();
    let target = EditTarget::Header(Side::Response);
    for header in headers {
        let name = header.name.of(buf);
        if is_hop_by_hop(name, buf, headers)
            || (body.is_some() && FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f)))
            || !keeps_originals(state, target, name, programs)
        {
            continue;
        }
        write_header(out, name, header.value.of(buf));
    }
    write_edited_headers(out, state, target, programs, |name| has_header(headers, buf, name));
    write_cors(out, state, programs);
    if let Some(body) = body {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    write_connection(out, connection);
    out.extend_from_slice(b"\r\n");
}

/// Writes (replacing `out`'s contents) the whole response `return-response`, `mock-response`
/// or a CORS preflight built: status line, headers, `Content-Length`, body (none for `HEAD`).
/// Returns `false` (writing nothing) when no response was built.
pub fn write_built_response(
    out: &mut Vec<u8>,
    state: &RequestState,
    programs: &Programs,
    connection: ClientConnection,
    is_head: bool,
) -> bool {
    out.clear();
    let Some(response) = &state.returned else { return false };
    let reason = response.reason.as_ref().map_or(reason_phrase(response.status), |reason| reason.resolve(programs));
    let _ = write!(out, "HTTP/1.1 {} {reason}\r\n", response.status);
    let target = EditTarget::Header(Side::Returned);
    let mut skip_framing = |name: &[u8]| FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f));
    write_edited_headers_filtered(out, state, target, programs, &mut |_| false, &mut skip_framing);
    let body = response.body.as_ref().map_or(&[][..], |body| body.bytes(programs));
    let _ = write!(out, "Content-Length: {}\r\n", body.len());
    write_connection(out, connection);
    out.extend_from_slice(b"\r\n");
    if !is_head {
        out.extend_from_slice(body);
    }
    true
}

/// Writes (appending to `out`) the APIM-shaped error response for `error`:
/// `{ "statusCode": N, "message": "..." }`.
pub fn write_error_response(out: &mut Vec<u8>, error: &PolicyError, close: bool) {
    let status = error.status();
    crate::http::error_response::write_with_headers(
        out,
        status,
        reason_phrase(status),
        error.body_message(),
        &error.headers,
        close,
    );
}

/// Appends the query string (without `?`) `query` with the query edits applied: parameters are
/// matched by their names as `Url.Query` reads them ([`Coding::Form`]); the values the edits add are
/// written with [`Coding::Rfc3986`] (a space is `%20`).
pub fn write_query(out: &mut Vec<u8>, query: &[u8], state: &RequestState, programs: &Programs) {
    let mut first = true;
    let mut separator = |out: &mut Vec<u8>| {
        if !first {
            out.push(b'&');
        }
        first = false;
    };
    for (name, value) in url::query_pairs(query) {
        let decoded = url::percent_decode(name, Coding::Form);
        if !state.fold_edits(EditTarget::Query, &decoded, true, programs, |_| {}) {
            continue;
        }
        separator(out);
        out.extend_from_slice(name);
        if !value.is_empty() {
            out.push(b'=');
            out.extend_from_slice(value);
        }
    }
    for (at, edit) in state.edits.iter().enumerate() {
        if edit.target != EditTarget::Query || first_edit_of(state, at, programs) != at {
            continue;
        }
        let name = edit.name.resolve(programs);
        let present = url::query_pairs(query).any(|(key, _)| url::decodes_to(key, Coding::Form, name.as_bytes()));
        state.fold_edits(EditTarget::Query, name.as_bytes(), present, programs, |value| {
            separator(out);
            let name = url::percent_encode(name.as_bytes(), Coding::Rfc3986);
            let value = url::percent_encode(value.resolve(programs).as_bytes(), Coding::Rfc3986);
            let _ = write!(out, "{name}={value}");
        });
    }
}

/// The reason phrase of a status code (RFC 9110), or "" for unknown codes.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

fn has_header(headers: &[HeaderSpan], buf: &[u8], name: &[u8]) -> bool {
    headers.iter().any(|h| h.name.of(buf).eq_ignore_ascii_case(name))
}

/// Whether the original headers named `name` survive the edits.
fn keeps_originals(state: &RequestState, target: EditTarget, name: &[u8], programs: &Programs) -> bool {
    state.fold_edits(target, name, true, programs, |_| {})
}

/// Index of the first edit on `target` with the same name as edit `at`.
fn first_edit_of(state: &RequestState, at: usize, programs: &Programs) -> usize {
    let Some(edit) = state.edits.get(at) else { return at };
    let name = edit.name.resolve(programs);
    let same = |other: &crate::policy::state::Edit| {
        other.target == edit.target && other.name.resolve(programs).eq_ignore_ascii_case(name)
    };
    state.edits.iter().position(same).unwrap_or(at)
}

/// Writes the values the edits add, once per edited name, in the order names were first edited.
fn write_edited_headers(
    out: &mut Vec<u8>,
    state: &RequestState,
    target: EditTarget,
    programs: &Programs,
    mut present: impl FnMut(&[u8]) -> bool,
) {
    write_edited_headers_filtered(out, state, target, programs, &mut present, &mut |_| false);
}

fn write_edited_headers_filtered(
    out: &mut Vec<u8>,
    state: &RequestState,
    target: EditTarget,
    programs: &Programs,
    present: &mut dyn FnMut(&[u8]) -> bool,
    skip: &mut dyn FnMut(&[u8]) -> bool,
) {
    for (at, edit) in state.edits.iter().enumerate() {
        if edit.target != target || first_edit_of(state, at, programs) != at {
            continue;
        }
        let name = edit.name.resolve(programs).as_bytes();
        if skip(name) {
            continue;
        }
        state.fold_edits(target, name, present(name), programs, |value| {
            write_header(out, name, value.resolve(programs).as_bytes());
        });
    }
}

fn write_cors(out: &mut Vec<u8>, state: &RequestState, programs: &Programs) {
    let Some(cors) = &state.cors else { return };
    write_header(out, b"Access-Control-Allow-Origin", cors.allow_origin.as_bytes());
    if cors.allow_credentials {
        out.extend_from_slice(b"Access-Control-Allow-Credentials: true\r\n");
    }
    let rule = programs.get(cors.program).and_then(|program| program.program().cors.get(cors.rule as usize));
    if let Some(rule) = rule.filter(|rule| !rule.expose_headers.is_empty()) {
        write_header(out, b"Access-Control-Expose-Headers", rule.expose_headers.join(", ").as_bytes());
    }
    if &*cors.allow_origin != "*" {
        out.extend_from_slice(b"Vary: Origin\r\n");
    }
}
