//! # leasehold-conformance
//!
//! One body of tests, run against every backend (in-memory, SQLite,
//! PostgreSQL, and the HTTP client against a running server). A backend's
//! test file provides a [`Harness`] and invokes [`conformance_tests!`] and
//! [`model_tests!`]; it never forks the tests.

use leasehold_core::Store;

/// How the suite gets stores from a backend.
pub trait Harness: Send + Sync + 'static {
    /// The backend under test.
    type S: Store + 'static;

    /// A fresh, empty, isolated store (its own file, schema or database).
    fn fresh(&self) -> Self::S;

    /// Close `store` and open the same data again, as after a process restart.
    /// The in-memory backend returns the store it was given.
    fn reopen(&self, store: Self::S) -> Self::S;

    /// Another handle on the same data as `store` (own connection), for
    /// concurrency tests with real threads.
    fn another(&self, store: &Self::S) -> Self::S;
}
