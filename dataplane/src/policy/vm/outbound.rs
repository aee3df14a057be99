//! `send-request`, `send-one-way-request` and `wait` in the VM: building the request (its
//! children's edits), then suspending for the proxy to make the call; and `IResponse` values.

use std::rc::Rc;

use portcullis_contract::program::{ExistsAction, Side};

use super::{Exit, Flow, Machine, internal};
use crate::policy::error::Fault;
use crate::policy::send_call::{
    CallMode, OutgoingRequest, SEND_TIMEOUT_MS_MAX, SEND_TIMEOUT_MS_MIN, SendCall, SentResponse,
};
use crate::policy::state::{EditTarget, Stored};
use crate::policy::value::{Message, Text, UrlKind, Value};

/// Request headers `mode="copy"` leaves out: the connection's own and the body's framing, which
/// the call writes for itself.
const NOT_COPIED: &[&str] =
    &["host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "upgrade", "expect"];

/// Longest URL a call accepts.
pub(crate) const SEND_URL_BYTES_MAX: usize = 8192;

impl<'r, 'a> Machine<'r, 'a> {
    /// `BeginOutgoing`: a new request to build, or a copy of the current one.
    pub(super) fn begin_outgoing(&mut self, copy: bool) -> Result<Flow, Fault> {
        self.state.edits.retain(|edit| edit.target != EditTarget::Header(Side::Outgoing));
        let request = if copy { self.copied_request()? } else { OutgoingRequest::new() };
        self.state.outgoing = Some(Box::new(request));
        Ok(Flow::Next)
    }

    /// The current request as `mode="copy"` starts from: method, URL, headers (edits applied)
    /// and, outside the outbound section, body.
    fn copied_request(&self) -> Result<OutgoingRequest, Fault> {
        let request = Value::Handle(crate::policy::value::Handle::Request);
        let method = match self.member(request, portcullis_contract::program::Prop::Method) {
            Ok(Value::Str(text)) => text.as_str().to_owned(),
            _ => "GET".to_owned(),
        };
        let url = self.current_url();
        let mut headers = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let (spans, buf) = (self.view.request.headers(), self.view.request_buf);
        for span in spans {
            let name = String::from_utf8_lossy(span.name.of(buf)).into_owned();
            if !names.iter().any(|seen| seen.eq_ignore_ascii_case(&name)) {
                names.push(name);
            }
        }
        let programs = self.view.programs;
        for edit in &self.state.edits {
            if edit.target == EditTarget::Header(Side::Request) {
                let name = edit.name.resolve(programs);
                if !names.iter().any(|seen| seen.eq_ignore_ascii_case(name)) {
                    names.push(name.to_owned());
                }
            }
        }
        for name in names {
            if NOT_COPIED.iter().any(|skipped| skipped.eq_ignore_ascii_case(&name)) {
                continue;
            }
            if let Some(value) = self.header_value(Message::Request, &name) {
                headers.push((name, value.as_str().to_owned()));
            }
        }
        let body = if self.section == portcullis_contract::program::Section::Outbound {
            None
        } else {
            match &self.state.request_body {
                crate::policy::state::BodyEdit::Replaced(body) => Some(Rc::from(body.bytes(programs))),
                crate::policy::state::BodyEdit::Consumed => None,
                crate::policy::state::BodyEdit::Unchanged => {
                    self.view.request_body.filter(|body| !body.is_empty()).map(Rc::from)
                }
            }
        };
        Ok(OutgoingRequest { method, url, headers, body, certificate: None, backend: None })
    }

    /// `context.Request.Url` as an absolute URL.
    fn current_url(&self) -> String {
        self.url_string(UrlKind::Current)
    }

    /// An `IUrl` as an absolute URL (what its `ToString()` gives).
    pub(super) fn url_string(&self, kind: UrlKind) -> String {
        let part = |prop| self.member(Value::Handle(crate::policy::value::Handle::Url(kind)), prop);
        use portcullis_contract::program::Prop;
        let text = |value: Result<Value<'a>, Fault>| match value {
            Ok(value) => {
                let mut out = String::new();
                value.write_display(&mut out);
                out
            }
            Err(_) => String::new(),
        };
        let scheme = text(part(Prop::Scheme));
        let host = text(part(Prop::Host));
        let port = text(part(Prop::Port));
        let path = text(part(Prop::Path));
        let query = text(part(Prop::QueryString));
        let default_port = (scheme == "http" && port == "80") || (scheme == "https" && port == "443");
        let host = if host.contains(':') { format!("[{host}]") } else { host };
        if default_port {
            format!("{scheme}://{host}{path}{query}")
        } else {
            format!("{scheme}://{host}:{port}{path}{query}")
        }
    }

    fn outgoing(&mut self) -> Result<&mut OutgoingRequest, Fault> {
        self.state.outgoing.as_deref_mut().ok_or_else(|| internal("no request being built"))
    }

    /// `set-url` inside a call.
    pub(super) fn outgoing_url(&mut self) -> Result<Flow, Fault> {
        let url = self.pop_text("set-url")?;
        let url = url.as_str().trim();
        if url.len() > SEND_URL_BYTES_MAX || !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Fault::eval("Expression evaluation failed. set-url: the URL is not a valid URI."));
        }
        self.outgoing()?.url = url.to_owned();
        Ok(Flow::Next)
    }

    /// `set-method` inside a call.
    pub(super) fn outgoing_method(&mut self) -> Result<Flow, Fault> {
        let method = self.pop_text("set-method")?;
        if method.as_str().is_empty() || !method.as_str().bytes().all(crate::http::is_tchar) {
            return Err(Fault::eval(format!("Expression evaluation failed. Invalid method '{}'.", method.as_str())));
        }
        self.outgoing()?.method = method.as_str().to_owned();
        Ok(Flow::Next)
    }

    /// `SendRequest`: applies the children's header edits to the built request and suspends for
    /// the proxy to make the call.
    pub(super) fn send_request(
        &mut self,
        variable: Option<u32>,
        ignore_error: bool,
        one_way: bool,
        deferred: bool,
    ) -> Result<Flow, Fault> {
        let timeout_ms = match self.pop()? {
            Value::Int(ms) => (ms.max(0) as u64).clamp(SEND_TIMEOUT_MS_MIN, SEND_TIMEOUT_MS_MAX),
            other => {
                return Err(Fault::eval(format!(
                    "Expression evaluation failed. send-request timeout: '{}' is not a number of seconds.",
                    other.type_name()
                )));
            }
        };
        let mut request = *self.state.outgoing.take().ok_or_else(|| internal("no request being built"))?;
        self.apply_outgoing_edits(&mut request);
        let variable = variable.map(|index| self.literal(index)).transpose()?;
        let mode = match (one_way, deferred) {
            (true, _) => CallMode::OneWay,
            (false, true) => CallMode::Deferred,
            (false, false) => CallMode::Now,
        };
        let call = SendCall { request, timeout_ms, variable, ignore_error, mode, site: self.site };
        Ok(Flow::Suspend(None, Exit::Send(Box::new(call))))
    }

    /// Folds the `set-header`s of the call (edits on [`Side::Outgoing`], in order) into its
    /// headers, and forgets them.
    fn apply_outgoing_edits(&mut self, request: &mut OutgoingRequest) {
        let programs = self.view.programs;
        let target = EditTarget::Header(Side::Outgoing);
        for edit in self.state.edits.iter().filter(|edit| edit.target == target) {
            let name = edit.name.resolve(programs);
            let values = self.state.edit_values(edit).iter().map(|value| value.resolve(programs).to_owned());
            let present = request.headers.iter().any(|(field, _)| field.eq_ignore_ascii_case(name));
            match edit.action {
                ExistsAction::Override => {
                    request.headers.retain(|(field, _)| !field.eq_ignore_ascii_case(name));
                    request.headers.extend(values.map(|value| (name.to_owned(), value)));
                }
                ExistsAction::Skip if present => {}
                ExistsAction::Skip | ExistsAction::Append => {
                    request.headers.extend(values.map(|value| (name.to_owned(), value)));
                }
                ExistsAction::Delete => request.headers.retain(|(field, _)| !field.eq_ignore_ascii_case(name)),
            }
        }
        self.state.edits.retain(|edit| edit.target != target);
    }

    /// `return-response response-variable-name`: starts the response from the `IResponse` in the
    /// variable (status, reason, headers, body); the children edit it from there.
    pub(super) fn begin_response_from(&mut self, name: u32) -> Result<Flow, Fault> {
        let key = self.program.const_str(name).ok_or_else(|| internal("variable name"))?.as_str();
        let response = match self.variable(key) {
            Some(Value::Response(response)) => response,
            Some(other) => {
                return Err(Fault::eval(format!(
                    "Expression evaluation failed. return-response: variable '{key}' holds {}, not an IResponse.",
                    other.type_name()
                )));
            }
            None => {
                return Err(Fault::eval(format!(
                    "Expression evaluation failed. The given key '{key}' was not present in the dictionary."
                )));
            }
        };
        self.begin_response(response.status);
        let mut pushed = Ok(());
        for name in response.header_names() {
            if is_framing(name) {
                continue;
            }
            let values = response
                .headers
                .iter()
                .filter(|(field, _)| field.eq_ignore_ascii_case(name))
                .map(|(_, value)| crate::policy::state::StoredText::Owned(Rc::from(value.as_str())));
            let stored = crate::policy::state::StoredText::Owned(Rc::from(name));
            pushed = pushed.and(self.state.push_edit(
                EditTarget::Header(Side::Returned),
                ExistsAction::Append,
                stored,
                values,
            ));
        }
        pushed?;
        if let Some(returned) = self.state.returned.as_mut() {
            returned.reason = Some(crate::policy::state::StoredText::Owned(Rc::from(response.reason.as_str())));
            returned.body = Some(crate::policy::state::StoredBody::Bytes(response.body.clone()));
        }
        Ok(Flow::Next)
    }
}

/// Headers of a stored response the gateway writes itself when it sends it on.
fn is_framing(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection", "keep-alive"]
        .iter()
        .any(|framing| framing.eq_ignore_ascii_case(name))
}

/// `IResponse.<member>`.
pub(crate) fn response_member<'a>(
    response: &Rc<SentResponse>,
    prop: portcullis_contract::program::Prop,
) -> Option<Value<'a>> {
    use portcullis_contract::program::Prop;
    Some(match prop {
        Prop::StatusCode => Value::Int(i64::from(response.status)),
        Prop::StatusReason => Value::Str(Text::Shared(Rc::from(response.reason.as_str()))),
        Prop::Headers => Value::ResponseHeaders(response.clone()),
        Prop::Body => Value::ResponseBody(response.clone()),
        _ => return None,
    })
}

/// A call's outcome as a variable value: the response, or null (a failure `ignore-error` let through).
pub(crate) fn stored_response(response: Option<SentResponse>) -> Stored {
    Stored::Value(response.map_or(Value::Null, |response| Value::Response(Rc::new(response))))
}
