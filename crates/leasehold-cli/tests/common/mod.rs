//! Test support: run the real `leasehold` binary against a database in a
//! fresh temporary directory, always at a fixed `--at` instant.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_leasehold");

/// Fixed instants used by the tests.
pub const T0: &str = "2026-06-03T10:00:00Z";
/// One minute after [`T0`].
pub const T1: &str = "2026-06-03T10:01:00Z";
/// Two minutes after [`T0`].
pub const T2: &str = "2026-06-03T10:02:00Z";
/// Five minutes after [`T0`] (a `5m` lease taken at T0 expires here).
pub const T5: &str = "2026-06-03T10:05:00Z";
/// Ten minutes after [`T0`].
pub const T10: &str = "2026-06-03T10:10:00Z";

/// The seed's Python store schema (table `task_sagas`), for import fixtures.
pub const SEED_SCHEMA: &str = "CREATE TABLE task_sagas (
    task_id TEXT PRIMARY KEY,
    saga_id TEXT NOT NULL,
    state TEXT NOT NULL,
    issue INTEGER,
    branch TEXT,
    worktree TEXT,
    compensations_json TEXT NOT NULL DEFAULT '[]',
    lease_owner TEXT,
    lease_expires_at TEXT,
    last_heartbeat_at TEXT,
    terminal_reason TEXT
)";

/// Create a seed database at `path` with [`SEED_SCHEMA`] and no rows.
pub fn new_seed_db(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open seed db");
    conn.execute_batch(SEED_SCHEMA).expect("seed schema");
    conn
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A temporary directory with one database.
pub struct Env {
    dir: tempfile::TempDir,
    db: PathBuf,
}

impl Env {
    /// A fresh, empty environment.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("leasehold.db");
        Env { dir, db }
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database path.
    pub fn db(&self) -> &Path {
        &self.db
    }

    /// A `Command` for the binary with a clean environment, in the temp dir.
    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.dir.path())
            .env_remove("LEASEHOLD_DB")
            .env_remove("LEASEHOLD_LOG")
            .env("LEASEHOLD_ACTOR", "tester")
            .stdin(Stdio::null());
        c
    }

    /// Run with exactly these arguments (no `--db`, no `--at` added).
    pub fn raw(&self, args: &[&str]) -> Run {
        Run::from(self.command().args(args).output().expect("spawn leasehold"))
    }

    /// Run `args` against this database at instant `at`.
    pub fn run(&self, at: &str, args: &[&str]) -> Run {
        let mut c = self.command();
        c.arg("--db").arg(&self.db).arg("--at").arg(at).args(args);
        Run::from(c.output().expect("spawn leasehold"))
    }

    /// Run with `--json`, expect exit 0, return the parsed output.
    pub fn ok(&self, at: &str, args: &[&str]) -> Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let r = self.run(at, &full);
        assert_eq!(r.code, 0, "leasehold {args:?} failed: {}", r.stderr);
        assert!(
            r.stderr.is_empty(),
            "stderr not empty for {args:?}: {}",
            r.stderr
        );
        r.json()
    }

    /// Run with `--json`, expect `exit` and the JSON error `code` on stderr;
    /// return the error message.
    pub fn err(&self, at: &str, args: &[&str], exit: i32, code: &str) -> String {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let r = self.run(at, &full);
        assert_eq!(
            r.code, exit,
            "leasehold {args:?}: expected exit {exit}, got {}; stdout {:?} stderr {:?}",
            r.code, r.stdout, r.stderr
        );
        assert!(
            r.stdout.is_empty(),
            "stdout not empty on error for {args:?}: {}",
            r.stdout
        );
        let e: Value = serde_json::from_str(r.stderr.trim())
            .unwrap_or_else(|err| panic!("stderr is not one JSON error ({err}): {:?}", r.stderr));
        assert_eq!(e["code"], code, "leasehold {args:?}: {}", r.stderr);
        e["message"].as_str().expect("message").to_string()
    }

    /// `get --json` of one task.
    pub fn get(&self, task_id: &str) -> Value {
        self.ok(T0, &["get", task_id])
    }

    /// Everything observable about the store: each task, its history, the counts.
    pub fn snapshot(&self) -> Value {
        let list = self.ok(T0, &["list", "--limit", "1000"]);
        let tasks = list["tasks"].as_array().expect("tasks").clone();
        let histories: Vec<Value> = tasks
            .iter()
            .map(|t| self.ok(T0, &["history", t["task_id"].as_str().expect("id")]))
            .collect();
        serde_json::json!({
            "tasks": tasks,
            "histories": histories,
            "counts": self.ok(T0, &["counts"]),
        })
    }
}
