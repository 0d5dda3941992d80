//! Helpers shared by this crate's integration tests: fixed instants, contexts
//! and child-process plumbing. Never the wall clock for domain time.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::{Command, Stdio};

use leasehold_core::{Context, Timestamp};

/// 2026-06-03T10:00:00Z plus `secs` seconds.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::parse("2026-06-03T10:00:00Z")
        .unwrap()
        .checked_add_micros(secs * 1_000_000)
        .unwrap()
}

/// An operator context at `at(secs)`.
pub fn ctx(secs: i64) -> Context {
    Context::new(at(secs), "operator")
}

/// Env var naming the role of a re-executed test binary.
pub const ROLE_ENV: &str = "LEASEHOLD_SQLITE_TEST_ROLE";
/// Env var carrying the database path to a child.
pub const DB_ENV: &str = "LEASEHOLD_SQLITE_TEST_DB";
/// Env var carrying a free argument (seed, child index) to a child.
pub const ARG_ENV: &str = "LEASEHOLD_SQLITE_TEST_ARG";

/// A command that re-executes this test binary running only the ignored test
/// `test_name`, with its role, the database path and an argument in the env.
pub fn child(test_name: &str, role: &str, db: &Path, arg: &str) -> Command {
    let exe = std::env::current_exe().expect("current test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        test_name,
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(ROLE_ENV, role)
    .env(DB_ENV, db)
    .env(ARG_ENV, arg)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// In a child: `(role, db path, argument)` if this process was started by
/// [`child`] for `role`; `None` when the test runs on its own (then it must
/// do nothing, so `--run-ignored` stays harmless).
pub fn child_role(role: &str) -> Option<(std::path::PathBuf, String)> {
    if std::env::var(ROLE_ENV).ok()?.as_str() != role {
        return None;
    }
    let db = std::env::var_os(DB_ENV)?.into();
    let arg = std::env::var(ARG_ENV).unwrap_or_default();
    Some((db, arg))
}
