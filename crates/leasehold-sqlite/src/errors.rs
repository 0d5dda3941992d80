//! Mapping SQLite failures onto Leasehold's stable error codes.
//!
//! - `SQLITE_BUSY` / `SQLITE_LOCKED` (another connection holds the write lock
//!   longer than `busy_timeout`) → `unavailable`: retryable, nothing changed.
//! - A UNIQUE violation on `task_id` / `saga_id` → `already_exists`, naming
//!   the id. The store checks uniqueness itself before writing (to give the
//!   same message as the model), so this is a second line of defence.
//! - `SQLITE_IOERR` and `SQLITE_FULL` → `unavailable`: the statement and its
//!   transaction were rolled back, so nothing changed and a retry may succeed.
//! - Everything else (corruption, misuse) → `internal`, saying what the
//!   store was doing.

use leasehold_core::Error;
use rusqlite::ErrorCode as Code;

/// Map a rusqlite error met while doing `what` (e.g. "load task \"a\"").
pub fn map(e: rusqlite::Error, what: &str) -> Error {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        match f.code {
            Code::DatabaseBusy | Code::DatabaseLocked => {
                return Error::Unavailable(format!(
                    "sqlite database is busy (could not {what} within the busy timeout): {e}; retry"
                ))
            }
            Code::DiskFull => {
                return Error::Unavailable(format!(
                    "sqlite could not {what}: the disk is full: {e}"
                ))
            }
            // An I/O error aborts the statement (SQLite rolls the transaction
            // back, so does the store): nothing changed, and a later try may
            // well succeed. Issue #7: only `unavailable` as a server error.
            Code::SystemIoFailure => {
                return Error::Unavailable(format!(
                    "sqlite could not {what}: I/O error: {e}; retry"
                ))
            }
            _ => {}
        }
    }
    Error::Internal(format!("sqlite failed to {what}: {e}"))
}

/// A `map_err` adapter: `.map_err(sql("load the task"))`.
pub fn sql(what: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |e| map(e, what)
}

/// Map an error from writing the row of task `task_id` with saga `saga_id`:
/// UNIQUE violations become `already_exists` naming the id.
pub fn write_task(e: rusqlite::Error, task_id: &str, saga_id: &str) -> Error {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        if f.code == Code::ConstraintViolation {
            let msg = msg.as_deref().unwrap_or("");
            if msg.contains("tasks.task_id") {
                return Error::AlreadyExists(format!("task {task_id:?} already exists"));
            }
            if msg.contains("tasks.saga_id") {
                return Error::AlreadyExists(format!(
                    "saga {saga_id:?} is already used by another task (writing task {task_id:?})"
                ));
            }
        }
    }
    map(e, &format!("write task {task_id:?}"))
}

/// A stored row that does not decode or breaks an invariant: `internal`.
pub fn corrupt(task_id: &str, what: impl std::fmt::Display) -> Error {
    Error::Internal(format!("stored row of task {task_id:?} is corrupt: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::ErrorCode;

    #[test]
    fn unique_violations_name_the_id_and_other_failures_are_internal() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(crate::migrations::V1_INITIAL).unwrap();
        let insert = |tid: &str, sid: &str| {
            c.execute(
                "INSERT INTO tasks (task_id, saga_id, state, queue, priority, metadata, compensations, \
                 notes, lease_token, attempts, version, created_at, updated_at) \
                 VALUES (?1, ?2, 'planned', 'default', 0, '{}', '[]', '[]', 0, 0, 1, 0, 0)",
                [tid, sid],
            )
        };
        insert("a", "sa").unwrap();
        let e = write_task(insert("a", "sb").unwrap_err(), "a", "sb");
        assert_eq!(e.code(), ErrorCode::AlreadyExists);
        assert!(e.message().contains("\"a\""), "{e}");
        let e = write_task(insert("b", "sa").unwrap_err(), "b", "sa");
        assert_eq!(e.code(), ErrorCode::AlreadyExists);
        assert!(e.message().contains("\"sa\""), "{e}");
        let e = map(c.execute("SELECT * FROM nowhere", []).unwrap_err(), "read");
        assert_eq!(e.code(), ErrorCode::Internal);
        assert!(e.message().contains("failed to read"), "{e}");
    }
}
