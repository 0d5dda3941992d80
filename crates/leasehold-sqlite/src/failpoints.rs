//! The SQLite backend's failpoints (issue #7): where the reliability battery
//! makes a write fail from inside, through the backend's own error mapping
//! and rollback. Built on [`leasehold_core::failpoint`]; compiled out (every
//! hook folds to nothing) unless the `failpoints` feature is on.
//!
//! Points:
//! - `sqlite::statement`: before every SQL statement a write operation runs
//!   on the writer connection (its loads, uniqueness checks, candidate and
//!   stale queries, the task row's INSERT/UPDATE, the history INSERT), so
//!   that `N*off->1*return(busy)` fails exactly the N+1-th statement of the
//!   next operation. Reads on the read connections are not counted.
//! - `sqlite::between_task_and_history`: after the task row was written,
//!   before its history entry is inserted.
//! - `sqlite::before_commit`: the group-commit batch is about to COMMIT.
//! - `sqlite::after_commit`: the batch committed, no caller has its answer
//!   yet (only `return(abort)` makes sense here).
//!
//! Payloads become real SQLite error values (`rusqlite::Error::SqliteFailure`
//! with the primary result code): `busy` → `SQLITE_BUSY`, `ioerr` →
//! `SQLITE_IOERR`, `full` → `SQLITE_FULL`; anything else → `SQLITE_IOERR`.
//! `abort` aborts the process (see [`leasehold_core::failpoint::eval`]).

use std::cell::Cell;

use rusqlite::ffi;

thread_local! {
    /// Set while a write operation runs (see [`WriteScope`]).
    static IN_WRITE: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as running a write operation, so that
/// [`statement`] counts its statements (and not those of reads).
pub(crate) struct WriteScope(bool);

impl WriteScope {
    /// Enter a write operation on this thread until the scope is dropped.
    #[inline(always)]
    pub(crate) fn enter() -> WriteScope {
        WriteScope(leasehold_core::failpoint::ENABLED && !IN_WRITE.with(|w| w.replace(true)))
    }
}

impl Drop for WriteScope {
    #[inline(always)]
    fn drop(&mut self) {
        if self.0 {
            IN_WRITE.with(|w| w.set(false));
        }
    }
}

/// The SQLite error a payload stands for.
fn error(name: &str, payload: &str) -> rusqlite::Error {
    let code = match payload {
        "busy" => ffi::SQLITE_BUSY,
        "full" => ffi::SQLITE_FULL,
        _ => ffi::SQLITE_IOERR,
    };
    rusqlite::Error::SqliteFailure(
        ffi::Error::new(code),
        Some(format!("failpoint {name} injected {payload:?}")),
    )
}

/// Evaluate the point `name`: `Err` with the SQLite error it injects.
#[inline(always)]
pub(crate) fn point(name: &str) -> rusqlite::Result<()> {
    match leasehold_core::failpoint::eval(name) {
        None => Ok(()),
        Some(payload) => Err(error(name, &payload)),
    }
}

/// The `sqlite::statement` point, evaluated before each statement of a
/// write operation (a no-op outside one).
#[inline(always)]
pub(crate) fn statement() -> rusqlite::Result<()> {
    if leasehold_core::failpoint::ENABLED && IN_WRITE.with(Cell::get) {
        point("sqlite::statement")
    } else {
        Ok(())
    }
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use super::*;
    use leasehold_core::ErrorCode;

    #[test]
    fn payloads_become_sqlite_errors_that_the_mapping_calls_unavailable() {
        for (p, code) in [
            ("busy", rusqlite::ErrorCode::DatabaseBusy),
            ("ioerr", rusqlite::ErrorCode::SystemIoFailure),
            ("full", rusqlite::ErrorCode::DiskFull),
        ] {
            let e = error("x", p);
            assert_eq!(e.sqlite_error_code(), Some(code), "{p}");
            let mapped = crate::errors::map(e, "write");
            assert_eq!(mapped.code(), ErrorCode::Unavailable, "{p}: {mapped}");
        }
    }

    #[test]
    fn statements_outside_a_write_scope_are_not_counted() {
        let _s = leasehold_core::failpoint::Scenario::setup();
        let h = leasehold_core::failpoint::hits("sqlite::statement");
        statement().unwrap();
        assert_eq!(leasehold_core::failpoint::hits("sqlite::statement"), h);
        {
            let _w = WriteScope::enter();
            statement().unwrap();
        }
        assert_eq!(leasehold_core::failpoint::hits("sqlite::statement"), h + 1);
    }
}
