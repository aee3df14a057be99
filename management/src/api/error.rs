//! The one place a management API error becomes a response: ARM's shape,
//! `{"error": {"code", "message", "details": [{"code", "target", "message"}]}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::service::{Problem, WriteError};

/// One entry of `details`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Detail {
    pub code: String,
    pub target: String,
    pub message: String,
}

/// An error response of the management API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Detail>,
    /// `Allow` of a 405.
    pub allow: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Vec::new(), allow: None }
    }

    /// 400 `ValidationError` with one detail naming `target` (a field, a header, a parameter).
    pub fn validation(target: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let detail = Detail { code: "ValidationError".into(), target: target.to_owned(), message: message.clone() };
        Self { details: vec![detail], ..Self::new(StatusCode::BAD_REQUEST, "ValidationError", message) }
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFound", format!("{path} was not found"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a valid token is required: Authorization: Bearer <token> (portcullis ctl token create)",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn method_not_allowed(allow: &[&str]) -> Self {
        let allow = allow.join(", ");
        let message = format!("the method is not allowed here (allowed: {allow})");
        Self { allow: Some(allow), ..Self::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message) }
    }

    pub fn too_large(bytes_max: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLarge",
            format!("the body is longer than {bytes_max} bytes"),
        )
    }

    /// 500 without the cause in the body (it may name store internals); the cause is logged.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "the management API failed a request");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "the management store failed; see the log")
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Owned { .. } => Self::conflict(error.to_string()),
            WriteError::Precondition { .. } => {
                Self::new(StatusCode::PRECONDITION_FAILED, "PreconditionFailed", error.to_string())
            }
            WriteError::Invalid(ref problems) => Self {
                details: problems.iter().map(detail).collect(),
                ..Self::new(StatusCode::BAD_REQUEST, "ValidationError", error.to_string())
            },
            WriteError::Store(ref cause) => Self::internal(cause),
        }
    }
}

fn detail(problem: &Problem) -> Detail {
    let message = match (problem.line, problem.column) {
        (Some(line), Some(column)) => format!("{line}:{column}: {}", problem.message),
        (Some(line), None) => format!("{line}: {}", problem.message),
        _ => problem.message.clone(),
    };
    Detail { code: "ValidationError".into(), target: problem.target.clone(), message }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(allow) = self.allow.and_then(|allow| HeaderValue::from_str(&allow).ok()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        response
    }
}
