//! The API's one error type and its RFC 9457 `application/problem+json` shape.
//!
//! Every failure, from the store, the auth layer, or a rejected request body,
//! becomes an [`ApiError`] carrying a SPEC code. The code decides the status
//! (`ErrorCode::http_status`), except for the transport-level `413` and `415`,
//! which keep the code `invalid_input`. Internal details are logged with the
//! request and never sent: a client sees a generic message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use leasehold_core::{Error, ErrorCode};
use serde::{Deserialize, Serialize};

/// Content type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Seconds a client should wait before retrying an `unavailable` answer.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The domain error (code and message).
    pub error: Error,
    /// A status overriding the code's own (413, 415), if any.
    pub status: Option<StatusCode>,
}

/// The RFC 9457 body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: `urn:leasehold:error:CODE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, naming the task and what was expected.
    pub detail: String,
    /// The stable SPEC code, e.g. `lease_conflict`.
    pub code: String,
}

impl ApiError {
    /// An error with the status its code implies.
    pub fn new(error: Error) -> ApiError {
        ApiError {
            error,
            status: None,
        }
    }

    /// `invalid_input` with an explicit status (413, 415).
    pub fn invalid_with_status(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            error: Error::InvalidInput(message.into()),
            status: Some(status),
        }
    }

    /// `invalid_input` (422).
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(Error::InvalidInput(message.into()))
    }

    /// `forbidden` (403).
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(Error::Forbidden(message.into()))
    }

    /// `unauthorized` (401).
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(Error::Unauthorized(message.into()))
    }

    /// `internal` (500); the message is logged, never sent.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(Error::Internal(message.into()))
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.error.code()
    }

    /// The status sent.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.code().http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        })
    }

    /// The problem body as sent (internal details replaced).
    pub fn problem(&self) -> Problem {
        let code = self.code();
        let detail = match code {
            ErrorCode::Internal => {
                "internal error; the server logged the details with this request's id".to_string()
            }
            _ => self.error.message().to_string(),
        };
        Problem {
            kind: format!("urn:leasehold:error:{}", code.as_str()),
            title: title(code).to_string(),
            status: self.status().as_u16(),
            detail,
            code: code.as_str().to_string(),
        }
    }
}

fn title(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::NotFound => "not found",
        ErrorCode::AlreadyExists => "already exists",
        ErrorCode::LeaseConflict => "lease conflict",
        ErrorCode::Terminal => "task is terminal",
        ErrorCode::VersionConflict => "version conflict",
        ErrorCode::InvalidInput => "invalid input",
        ErrorCode::Unauthorized => "unauthorized",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::Unavailable => "unavailable",
        _ => "internal error",
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError::new(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        match code {
            ErrorCode::Internal => {
                tracing::error!(code = code.as_str(), error = %self.error, "internal error")
            }
            ErrorCode::Unavailable => {
                tracing::warn!(code = code.as_str(), error = %self.error, "store unavailable")
            }
            _ => tracing::debug!(code = code.as_str(), error = %self.error, "request rejected"),
        }
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).expect("problem serialises");
        let mut resp = (self.status(), body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if code == ErrorCode::Unavailable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if code == ErrorCode::Unauthorized {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"leasehold\""),
            );
        }
        // The code travels in a header too, for logs and metrics layers.
        resp.extensions_mut().insert(code);
        resp
    }
}

/// The answer of the catch-panic layer: `internal`, details logged only.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("panic");
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}
