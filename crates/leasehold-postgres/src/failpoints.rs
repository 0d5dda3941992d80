//! The PostgreSQL backend's failpoints (issue #7): real server-side faults
//! caused on the transaction's own connection, so that the driver's error,
//! the transaction's abort and the pool's retry all run for real. Built on
//! [`leasehold_core::failpoint`]; compiled out (every hook folds to nothing)
//! unless the `failpoints` feature is on.
//!
//! Points (evaluated in `pool.rs`, where every statement of a write goes out):
//! - `pg::statement`: before every statement a write transaction sends
//!   (`Tx::query`, `Tx::query_pair` counts as one, `Tx::query_commit`), so
//!   `N*off->1*return(serialization)` hits the N+1-th statement of the next
//!   write.
//! - `pg::before_commit`: the write's last statement and COMMIT are about to
//!   go out (or the lone COMMIT after a body that wrote nothing).
//! - `pg::after_commit`: COMMIT succeeded, the caller has no answer yet (only
//!   `return(abort)` makes sense here).
//!
//! There is no point "between the task write and its history write": the
//! backend writes a task and its history entry in ONE statement (see
//! `docs/benchmarks.md`, "PostgreSQL backend"), so no such moment exists.
//!
//! Payloads, each sent as a statement on the transaction's connection:
//! `serialization` → a `DO` block raising SQLSTATE 40001, `deadlock` → 40P01
//! (both abort the transaction; the pool runs it again), `disconnect` →
//! `pg_terminate_backend(pg_backend_pid())` (the session ends, the pool
//! reconnects and runs the write again once, or answers `unavailable`).
//! `abort` aborts the process. Other payloads are ignored.

/// The statement that causes the fault `payload`, if it names one.
pub(crate) fn fault_sql(payload: &str) -> Option<&'static str> {
    Some(match payload {
        "serialization" => {
            "DO $$ BEGIN RAISE EXCEPTION 'failpoint: injected serialization failure' \
             USING ERRCODE = '40001'; END $$"
        }
        "deadlock" => {
            "DO $$ BEGIN RAISE EXCEPTION 'failpoint: injected deadlock' \
             USING ERRCODE = '40P01'; END $$"
        }
        "disconnect" => "SELECT pg_terminate_backend(pg_backend_pid())",
        _ => return None,
    })
}

/// Evaluate the point `name`: the statement to send, if it fires with a
/// fault payload (`abort` does not return).
#[inline(always)]
pub(crate) fn fault(name: &str) -> Option<&'static str> {
    leasehold_core::failpoint::eval(name).and_then(|p| fault_sql(&p))
}
