//! The server's failpoints: named places in the request path where the
//! reliability battery makes the server abort (like `kill -9` at that exact
//! instant) or answer a store error.
//!
//! Built on the workspace's failpoint facility
//! ([`leasehold_core::failpoint`], tikv's fail-rs underneath) and compiled in
//! only with this crate's cargo feature `failpoints`; without it [`hit`] is an
//! empty inline function and release builds carry nothing. Server processes
//! are configured from the environment (fail-rs syntax), e.g.
//!
//! `FAILPOINTS='after_commit_before_response=7*off->return(abort)'`
//!
//! - names: `before_store_call` (before the store is called, so before any
//!   commit) and `after_commit_before_response` (the store call succeeded and
//!   committed; the HTTP answer is not yet written);
//! - payloads: `return(abort)` (the process aborts at once, no cleanup, no
//!   answer) or `return(error)` (the call answers `unavailable`, i.e. 503);
//! - counts: `N*off->` first lets N hits pass.
//!
//! The backends have points of their own inside their write paths (every
//! statement, between a task row and its history entry, before and after
//! COMMIT): see `docs/reliability.md`.

use leasehold_core::Error;

/// Evaluate the failpoint `name`: abort, fail with `unavailable`, or pass.
#[inline(always)]
pub fn hit(name: &str) -> leasehold_core::Result<()> {
    match leasehold_core::failpoint::eval(name) {
        // `abort` never comes back (the facility aborts the process).
        None => Ok(()),
        Some(payload) => Err(Error::Unavailable(format!(
            "failpoint {name} injected a store error ({payload:?})"
        ))),
    }
}
