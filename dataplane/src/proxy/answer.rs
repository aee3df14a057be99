//! What the client is answered after an error: the one place errors become responses (the gateway's
//! APIM-shaped JSON from [`ProxyError::response`], a policy's error, or the response a policy
//! built), written by the on-error phase.

use crate::http::error_response::{self, ErrorResponse};
use crate::http::forward::ClientConnection;
use crate::io::Stream;
use crate::policy::apply;
use crate::proxy::{Connection, ProxyError, RequestCtx};

/// What the client is answered after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Nothing: close the connection.
    None,
    /// One of the gateway's fixed APIM responses.
    Static(ErrorResponse),
    /// A policy's error (status).
    Policy(u16),
    /// The response a policy built (`return-response`, mock-response, CORS preflight).
    Built,
}

impl Answer {
    /// The answer to `error` before any on-error policy ran.
    pub(crate) fn of(error: &ProxyError) -> Self {
        match error {
            ProxyError::PolicyResponse => Answer::Built,
            ProxyError::Policy(failed) => Answer::Policy(failed.status()),
            other => other.response().map_or(Answer::None, Answer::Static),
        }
    }
}

impl<S: Stream> Connection<S> {
    /// Writes `answer` to `error` into `out` (with `Connection: close` when `close`); returns its
    /// status (0 for [`Answer::None`], which writes nothing).
    pub(crate) fn write_answer(&mut self, ctx: &RequestCtx, answer: Answer, error: &ProxyError, close: bool) -> u16 {
        self.out.clear();
        match (answer, error) {
            (Answer::Built, _) => self.write_built(ctx, close),
            (Answer::Policy(_), ProxyError::Policy(failed)) => {
                apply::write_error_response(&mut self.out, failed, close);
                failed.status()
            }
            (Answer::Policy(status), _) => {
                // The on-error section itself failed: APIM answers with its error.
                let message = self.policy.last_error().map_or("Internal server error", |e| &*e.message).to_owned();
                error_response::write(&mut self.out, status, "Error", &message, close);
                status
            }
            (Answer::Static(response), _) => {
                response.write(&mut self.out, close);
                response.status
            }
            (Answer::None, _) => 0,
        }
    }

    /// The response a policy built, or a 500 when it cannot be written.
    fn write_built(&mut self, ctx: &RequestCtx, close: bool) -> u16 {
        let connection = if close { ClientConnection::Close } else { ClientConnection::KeepAlive };
        let programs = ctx.snapshot.as_deref().map(|snapshot| &snapshot.programs);
        match programs {
            Some(programs)
                if apply::write_built_response(&mut self.out, &self.policy, programs, connection, ctx.is_head) =>
            {
                self.policy.built_status().unwrap_or(200)
            }
            _ => {
                error_response::INTERNAL_ERROR.write(&mut self.out, close);
                error_response::INTERNAL_ERROR.status
            }
        }
    }
}
