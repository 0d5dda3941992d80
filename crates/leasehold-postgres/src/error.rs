//! How PostgreSQL failures become Leasehold errors.
//!
//! Every driver error is sorted into one [`Class`] by its SQLSTATE (or, when
//! the server never answered, by the I/O failure behind it). The class decides
//! what the backend does: retry the transaction (serialization failure,
//! deadlock), retry on a fresh connection (the connection broke before the
//! commit was sent), or give up with a stable [`ErrorCode`]:
//!
//! | what happened | code |
//! |---|---|
//! | connection refused / closed / reset, admin or crash shutdown, startup in progress, too many connections, read-only standby, statement or lock timeout | `unavailable` |
//! | serialization failure / deadlock, after the configured retries | `unavailable` |
//! | unique violation | `already_exists` (operations name the id) |
//! | a string PostgreSQL cannot store (NUL character) | `invalid_input` |
//! | anything else (including the schema guard trigger) | `internal` |

use leasehold_core::{Error, ErrorCode};
use postgres::error::SqlState;

/// What kind of failure a driver error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Serialization failure or deadlock: the transaction was rolled back and
    /// may simply be run again.
    Retry,
    /// The connection is gone or the server refuses work for now.
    Unavailable,
    /// A unique constraint fired.
    Unique,
    /// The input cannot be stored (e.g. a NUL character in text).
    BadInput,
    /// Anything else: a bug, a corrupt schema, a permission problem.
    Internal,
}

/// Sort a driver error into a [`Class`].
pub(crate) fn classify(e: &postgres::Error) -> Class {
    if let Some(code) = e.code() {
        return classify_state(code);
    }
    // No SQLSTATE: the server never answered (I/O error, closed socket,
    // connect timeout) or the driver failed locally (config, conversion).
    if e.is_closed() || has_io_source(e) {
        return Class::Unavailable;
    }
    let text = e.to_string();
    if text.contains("timeout") || text.contains("connection") {
        return Class::Unavailable;
    }
    Class::Internal
}

fn has_io_source(e: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Sort a SQLSTATE into a [`Class`].
pub(crate) fn classify_state(code: &SqlState) -> Class {
    let c = code.code();
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        return Class::Retry;
    }
    if *code == SqlState::UNIQUE_VIOLATION {
        return Class::Unique;
    }
    if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
        || *code == SqlState::UNTRANSLATABLE_CHARACTER
        || *code == SqlState::NUMERIC_VALUE_OUT_OF_RANGE
    {
        return Class::BadInput;
    }
    // Class 08: connection exception; 57P0x: shutdown / cannot connect now;
    // 53300: too many connections; 25006: read-only (a standby);
    // 57014: statement timeout; 55P03: lock timeout.
    if c.starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        || *code == SqlState::QUERY_CANCELED
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::IDLE_SESSION_TIMEOUT
        || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
    {
        return Class::Unavailable;
    }
    Class::Internal
}

/// The Leasehold error for a driver error, `what` naming the operation.
pub(crate) fn to_error(e: &postgres::Error, what: &str) -> Error {
    let detail = describe(e);
    match classify(e) {
        Class::Unavailable => Error::Unavailable(format!(
            "postgres unavailable during {what}: {detail}; retry later"
        )),
        Class::Retry => Error::Unavailable(format!(
            "{what} kept conflicting with concurrent transactions ({detail}); retry later"
        )),
        Class::Unique => Error::new(
            ErrorCode::AlreadyExists,
            format!("{what}: a row with the same key already exists ({detail})"),
        ),
        Class::BadInput => Error::InvalidInput(format!(
            "{what}: PostgreSQL cannot store this value ({detail})"
        )),
        Class::Internal => Error::Internal(format!("postgres error during {what}: {detail}")),
    }
}

/// A one-line description: the server's message and SQLSTATE when there is
/// one, the driver's text otherwise. Never contains the connection password
/// (the driver does not echo it).
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {detail} (SQLSTATE {})", db.message(), db.code().code()),
            None => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        },
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let s_text = s.to_string();
                if !text.contains(&s_text) {
                    text.push_str(": ");
                    text.push_str(&s_text);
                }
                source = s.source();
            }
            text
        }
    }
}

/// The constraint a unique violation names, if any.
pub(crate) fn constraint(e: &postgres::Error) -> Option<&str> {
    e.as_db_error().and_then(|d| d.constraint())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_the_documented_classes() {
        assert_eq!(
            classify_state(&SqlState::T_R_SERIALIZATION_FAILURE),
            Class::Retry
        );
        assert_eq!(
            classify_state(&SqlState::T_R_DEADLOCK_DETECTED),
            Class::Retry
        );
        assert_eq!(classify_state(&SqlState::UNIQUE_VIOLATION), Class::Unique);
        assert_eq!(
            classify_state(&SqlState::ADMIN_SHUTDOWN),
            Class::Unavailable
        );
        assert_eq!(
            classify_state(&SqlState::CANNOT_CONNECT_NOW),
            Class::Unavailable
        );
        assert_eq!(
            classify_state(&SqlState::TOO_MANY_CONNECTIONS),
            Class::Unavailable
        );
        assert_eq!(
            classify_state(&SqlState::CONNECTION_FAILURE),
            Class::Unavailable
        );
        assert_eq!(
            classify_state(&SqlState::CONNECTION_EXCEPTION),
            Class::Unavailable
        );
        assert_eq!(classify_state(&SqlState::SYNTAX_ERROR), Class::Internal);
        assert_eq!(classify_state(&SqlState::UNDEFINED_TABLE), Class::Internal);
        assert_eq!(
            classify_state(&SqlState::CHARACTER_NOT_IN_REPERTOIRE),
            Class::BadInput
        );
    }
}
