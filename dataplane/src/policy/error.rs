//! Policy failures: a [`Fault`] inside the VM, a [`PolicyError`] (with `context.LastError`) out of it.

use std::borrow::Cow;
use std::rc::Rc;

use portcullis_contract::program::{ScopeKind, Section, Site};

/// `LastError.Reason` of a failed expression (and of every runtime type mismatch).
pub(crate) const EXPRESSION_FAILURE: &str = "ExpressionValueEvaluationFailure";

/// A failure while running ops, before it is tied to a policy site. Boxed: every op returns a
/// `Result<_, Fault>`, and a failure is rare, so the common path moves one pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", .0.reason, .0.message)]
pub struct Fault(Box<FaultDetail>);

/// What a [`Fault`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultDetail {
    /// HTTP status of the error response.
    pub status: u16,
    /// `LastError.Reason`.
    pub reason: &'static str,
    /// `LastError.Message`, and the `message` of the APIM-shaped response body.
    pub message: Cow<'static, str>,
    /// The response body's message when it differs from `LastError.Message`
    /// (`check-header`'s `failed-check-error-message`).
    pub response_message: Option<Cow<'static, str>>,
    /// Headers of the error response besides its content headers (a rate limit's
    /// `Retry-After` and remaining calls).
    pub headers: Vec<(Rc<str>, Rc<str>)>,
}

impl std::ops::Deref for Fault {
    type Target = FaultDetail;

    fn deref(&self) -> &FaultDetail {
        &self.0
    }
}

impl std::ops::DerefMut for Fault {
    fn deref_mut(&mut self) -> &mut FaultDetail {
        &mut self.0
    }
}

impl Fault {
    /// An expression failed at run time (APIM: `ExpressionValueEvaluationFailure`, 500).
    pub fn eval(message: impl Into<Cow<'static, str>>) -> Self {
        Self::policy(500, EXPRESSION_FAILURE, message)
    }

    /// A builtin was given a value it cannot work on: names the builtin, as .NET's exception would.
    pub fn builtin(name: &str, what: &str) -> Self {
        Self::eval(format!("Expression evaluation failed. {name}: {what}"))
    }

    /// A policy refused the request (`check-header`, `ip-filter` ...).
    pub fn policy(status: u16, reason: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self(Box::new(FaultDetail {
            status,
            reason,
            message: message.into(),
            response_message: None,
            headers: Vec::new(),
        }))
    }
}

/// `context.LastError`: kept in the request state for the `on-error` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// The policy element that failed (`check-header`), or `configuration`/`backend` for the proxy's own errors.
    pub source: Rc<str>,
    pub reason: Rc<str>,
    pub message: Rc<str>,
    /// `global`, `product`, `api` or `operation` (empty when no policy ran).
    pub scope: &'static str,
    /// `inbound`, `backend`, `outbound` or `on-error`.
    pub section: &'static str,
    /// `choose[1]/when[2]/set-header[1]`.
    pub path: Rc<str>,
    pub policy_id: Option<Rc<str>>,
    /// The status the error response gets (the toolkit's `HttpErrorCode`).
    pub status: u16,
}

impl LastError {
    /// A proxy error (no policy site), e.g. `BackendConnectionFailure` from `backend`.
    pub fn new(source: &str, reason: &str, message: &str, section: Section, status: u16) -> Self {
        Self {
            source: source.into(),
            reason: reason.into(),
            message: message.into(),
            scope: "",
            section: section.as_str(),
            path: "".into(),
            policy_id: None,
            status,
        }
    }
}

/// A section ended in an error: the proxy records it, runs `on-error`, then answers with
/// [`PolicyError::status`] and an APIM-shaped body (see [`crate::policy::apply::write_error_response`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} at {}: {}", .last_error.reason, .last_error.path, .last_error.message)]
pub struct PolicyError {
    pub last_error: LastError,
    /// The response body's message, when it is not `LastError.Message`.
    pub response_message: Option<Rc<str>>,
    /// Headers of the error response besides its content headers (`Retry-After` ...).
    pub headers: Vec<(Rc<str>, Rc<str>)>,
}

impl PolicyError {
    /// Ties `fault` to the policy statement `site` (if any) of a program of `section`.
    pub(crate) fn at(fault: Fault, site: Option<&Site>, section: Section) -> Self {
        let (source, scope, path, policy_id) = match site {
            Some(site) => (
                Rc::from(site.policy.as_str()),
                site.scope.as_str(),
                Rc::from(site.path.as_str()),
                site.policy_id.as_deref().map(Rc::from),
            ),
            None => (Rc::from("policy"), ScopeKind::Global.as_str(), Rc::from(""), None),
        };
        Self {
            last_error: LastError {
                source,
                reason: fault.reason.into(),
                message: Rc::from(fault.message.as_ref()),
                scope,
                section: site.map_or(section, |site| site.section).as_str(),
                path,
                policy_id,
                status: fault.status,
            },
            response_message: fault.response_message.as_deref().map(Rc::from),
            headers: fault.headers.clone(),
        }
    }

    /// HTTP status of the error response.
    pub fn status(&self) -> u16 {
        self.last_error.status
    }

    /// The `message` of the error response body.
    pub fn body_message(&self) -> &str {
        self.response_message.as_deref().unwrap_or(&self.last_error.message)
    }
}
