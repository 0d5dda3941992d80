//! Errors with stable codes.
//!
//! One enum, shared by the library, the HTTP API and the CLI. Each variant is
//! one of the SPEC's stable codes and carries a message that names the task
//! and what was expected. The code decides the HTTP status and the CLI exit
//! code; the message is for people and may change.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Result with Leasehold's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A Leasehold error: a stable [`ErrorCode`] plus a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task (or another named thing) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A task with that task id or saga id exists already; it was left unchanged.
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller does not hold the task's current lease, the lease is active
    /// for someone else, or the rule about compensations was broken.
    #[error("{0}")]
    LeaseConflict(String),
    /// The task is terminal and cannot change (except audit metadata).
    #[error("{0}")]
    Terminal(String),
    /// A compare-and-set gave a version that is not the task's current one.
    #[error("{0}")]
    VersionConflict(String),
    /// The input is malformed or out of range; nothing was changed.
    #[error("{0}")]
    InvalidInput(String),
    /// No credentials, or credentials that are not recognised.
    #[error("{0}")]
    Unauthorized(String),
    /// The credentials are valid but do not allow this call.
    #[error("{0}")]
    Forbidden(String),
    /// The store is unreachable or busy; the call may be retried.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected store failure.
    #[error("{0}")]
    Internal(String),
}

/// The stable codes of the SPEC. Scripts and clients match on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// `not_found`: HTTP 404, CLI exit 4.
    NotFound,
    /// `already_exists`: HTTP 409, CLI exit 5.
    AlreadyExists,
    /// `lease_conflict`: HTTP 409, CLI exit 6.
    LeaseConflict,
    /// `terminal`: HTTP 409, CLI exit 7.
    Terminal,
    /// `version_conflict`: HTTP 409, CLI exit 8.
    VersionConflict,
    /// `invalid_input`: HTTP 422, CLI exit 3.
    InvalidInput,
    /// `unauthorized`: HTTP 401, CLI exit 9.
    Unauthorized,
    /// `forbidden`: HTTP 403, CLI exit 9.
    Forbidden,
    /// `unavailable`: HTTP 503, CLI exit 10. Retryable.
    Unavailable,
    /// `internal`: HTTP 500, CLI exit 1.
    Internal,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::LeaseConflict,
        ErrorCode::Terminal,
        ErrorCode::VersionConflict,
        ErrorCode::InvalidInput,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The stable snake_case name, e.g. `lease_conflict`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::LeaseConflict => "lease_conflict",
            ErrorCode::Terminal => "terminal",
            ErrorCode::VersionConflict => "version_conflict",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// Parse a stable name back into a code.
    pub fn parse(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The HTTP status the API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadyExists
            | ErrorCode::LeaseConflict
            | ErrorCode::Terminal
            | ErrorCode::VersionConflict => 409,
            ErrorCode::InvalidInput => 422,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The documented CLI exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::InvalidInput => 3,
            ErrorCode::NotFound => 4,
            ErrorCode::AlreadyExists => 5,
            ErrorCode::LeaseConflict => 6,
            ErrorCode::Terminal => 7,
            ErrorCode::VersionConflict => 8,
            ErrorCode::Unauthorized | ErrorCode::Forbidden => 9,
            ErrorCode::Unavailable => 10,
            ErrorCode::Internal => 1,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// Build an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        let m = message.into();
        match code {
            ErrorCode::NotFound => Error::NotFound(m),
            ErrorCode::AlreadyExists => Error::AlreadyExists(m),
            ErrorCode::LeaseConflict => Error::LeaseConflict(m),
            ErrorCode::Terminal => Error::Terminal(m),
            ErrorCode::VersionConflict => Error::VersionConflict(m),
            ErrorCode::InvalidInput => Error::InvalidInput(m),
            ErrorCode::Unauthorized => Error::Unauthorized(m),
            ErrorCode::Forbidden => Error::Forbidden(m),
            ErrorCode::Unavailable => Error::Unavailable(m),
            ErrorCode::Internal => Error::Internal(m),
        }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::LeaseConflict(_) => ErrorCode::LeaseConflict,
            Error::Terminal(_) => ErrorCode::Terminal,
            Error::VersionConflict(_) => ErrorCode::VersionConflict,
            Error::InvalidInput(_) => ErrorCode::InvalidInput,
            Error::Unauthorized(_) => ErrorCode::Unauthorized,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The human message.
    pub fn message(&self) -> &str {
        match self {
            Error::NotFound(m)
            | Error::AlreadyExists(m)
            | Error::LeaseConflict(m)
            | Error::Terminal(m)
            | Error::VersionConflict(m)
            | Error::InvalidInput(m)
            | Error::Unauthorized(m)
            | Error::Forbidden(m)
            | Error::Unavailable(m)
            | Error::Internal(m) => m,
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.code() == ErrorCode::Unavailable
    }

    /// The `not_found` error for a task id.
    pub fn task_not_found(task_id: &str) -> Error {
        Error::NotFound(format!("task {task_id:?} not found"))
    }
}
