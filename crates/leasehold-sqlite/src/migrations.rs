//! The schema and its ordered migrations.
//!
//! Migration `n` (1-based) is `MIGRATIONS[n - 1]`, a const SQL script. The
//! current schema version lives in the one-row table `leasehold_schema`.
//! [`migrate`] runs inside a single `BEGIN IMMEDIATE` transaction: it reads the
//! version, refuses a database newer than this code, applies every missing
//! migration in order and records the new version, all or nothing. Opening an
//! up-to-date database changes nothing, so `open` is idempotent, and two
//! processes opening a fresh file at once cannot both migrate it (the second
//! waits for the write lock, then finds the work done).
//!
//! Never edit a released migration: append a new one.

use std::path::Path;

use leasehold_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::errors::sql;

/// Migration 1: tasks, history and the indexes the hot queries need.
///
/// - `seq` is the rowid (`AUTOINCREMENT`, so never reused): creation order,
///   list cursors and the claim tie-break.
/// - Timestamps are INTEGER microseconds UTC; JSON columns are TEXT.
/// - `tasks_claim` holds only unleased claimable rows, in claim order per queue.
/// - `tasks_stale` holds only running rows by lease expiry: the stale scan,
///   `reclaim`, and the expired half of `claim`. (Only running tasks carry a
///   lease among non-terminal ones; `check_invariants` enforces it on every
///   row this crate reads.)
/// - `tasks_state` serves `counts()` (a GROUP BY over the index).
pub const V1_INITIAL: &str = r#"
CREATE TABLE tasks (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id           TEXT    NOT NULL UNIQUE,
    saga_id           TEXT    NOT NULL UNIQUE,
    state             TEXT    NOT NULL,
    queue             TEXT    NOT NULL,
    priority          INTEGER NOT NULL,
    issue             INTEGER,
    branch            TEXT,
    worktree          TEXT,
    metadata          TEXT    NOT NULL,
    compensations     TEXT    NOT NULL,
    notes             TEXT    NOT NULL,
    lease_owner       TEXT,
    lease_token       INTEGER NOT NULL,
    lease_acquired_at INTEGER,
    lease_expires_at  INTEGER,
    last_heartbeat_at INTEGER,
    attempts          INTEGER NOT NULL,
    terminal_reason   TEXT,
    version           INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE INDEX tasks_claim ON tasks (queue, priority DESC, seq)
    WHERE state IN ('planned', 'dispatched');

CREATE INDEX tasks_stale ON tasks (lease_expires_at)
    WHERE state = 'running';

CREATE INDEX tasks_state ON tasks (state);

CREATE TABLE history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_seq    INTEGER NOT NULL REFERENCES tasks (seq),
    task_id     TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    from_state  TEXT,
    to_state    TEXT    NOT NULL,
    lease_token INTEGER NOT NULL,
    detail      TEXT
);

CREATE INDEX history_task ON history (task_seq, id);
"#;

/// Migration 2: cheap counts and indexed filtered lists at millions of tasks.
///
/// - `task_counts (state, queue) → n`, kept exact by triggers on `tasks`, so
///   every write path (create, put, import, claim, reclaim, …) updates it in
///   the same transaction as the row. `counts()` sums at most
///   states × queues rows instead of reading an index of every task. The
///   update trigger only does work when `state` or `queue` really changes
///   (a heartbeat pays one trigger check, no write).
/// - `tasks_queue (queue)` and `tasks_owner (lease_owner)` (the latter only
///   for leased rows): the `queue` and `owner` filters of `list`. Like every
///   SQLite index they end in the rowid, so they are already in creation
///   order (`seq`) within one value and serve `ORDER BY seq LIMIT n` after a
///   cursor without sorting. The state filter uses `tasks_state` the same way.
///
/// Upgrading a schema-1 file reads every task once (the counts and the two
/// indexes), inside the migration transaction: seconds at a million tasks.
pub const V2_COUNTS_AND_FILTERS: &str = r#"
CREATE TABLE task_counts (
    state TEXT    NOT NULL,
    queue TEXT    NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (state, queue)
) WITHOUT ROWID;

INSERT INTO task_counts (state, queue, n)
    SELECT state, queue, COUNT(*) FROM tasks GROUP BY state, queue;

CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks
BEGIN
    INSERT OR IGNORE INTO task_counts (state, queue, n) VALUES (NEW.state, NEW.queue, 0);
    UPDATE task_counts SET n = n + 1 WHERE state = NEW.state AND queue = NEW.queue;
END;

CREATE TRIGGER task_counts_update AFTER UPDATE OF state, queue ON tasks
    WHEN OLD.state IS NOT NEW.state OR OLD.queue IS NOT NEW.queue
BEGIN
    UPDATE task_counts SET n = n - 1 WHERE state = OLD.state AND queue = OLD.queue;
    INSERT OR IGNORE INTO task_counts (state, queue, n) VALUES (NEW.state, NEW.queue, 0);
    UPDATE task_counts SET n = n + 1 WHERE state = NEW.state AND queue = NEW.queue;
END;

CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks
BEGIN
    UPDATE task_counts SET n = n - 1 WHERE state = OLD.state AND queue = OLD.queue;
END;

CREATE INDEX tasks_queue ON tasks (queue);

CREATE INDEX tasks_owner ON tasks (lease_owner) WHERE lease_owner IS NOT NULL;
"#;

/// Every migration, oldest first. The schema version is the number applied.
pub const MIGRATIONS: &[&str] = &[V1_INITIAL, V2_COUNTS_AND_FILTERS];

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

const VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS leasehold_schema (version INTEGER NOT NULL)";

/// The schema version recorded in the database (0 for a fresh file).
pub fn current_version(conn: &Connection) -> Result<u32> {
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'leasehold_schema')",
            [],
            |r| r.get(0),
        )
        .map_err(sql("read the schema version"))?;
    if !exists {
        return Ok(0);
    }
    let v: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM leasehold_schema", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql("read the schema version"))?
        .flatten();
    let v = v.unwrap_or(0);
    u32::try_from(v).map_err(|_| {
        Error::Internal(format!(
            "schema version {v} in leasehold_schema is out of range"
        ))
    })
}

/// Bring the database at `path` (open as `conn`) up to [`SCHEMA_VERSION`],
/// in one transaction. Returns the version found before migrating.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<u32> {
    // Fast path without the write lock: an up-to-date database opens even
    // while another process holds a long write transaction.
    let seen = current_version(conn)?;
    if seen == SCHEMA_VERSION {
        return Ok(seen);
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("begin the migration transaction"))?;
    let found = current_version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(Error::InvalidInput(format!(
            "database {} has schema version {found}, newer than this leasehold understands ({SCHEMA_VERSION}); use a newer leasehold",
            path.display()
        )));
    }
    if found == SCHEMA_VERSION {
        // Nothing to do; the transaction rolls back on drop and wrote nothing.
        return Ok(found);
    }
    tx.execute_batch(VERSION_TABLE)
        .map_err(sql("create the schema version table"))?;
    for (i, script) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as u32 + 1;
        tx.execute_batch(script)
            .map_err(sql(&format!("apply migration {version}")))?;
    }
    tx.execute("DELETE FROM leasehold_schema", [])
        .map_err(sql("record the schema version"))?;
    tx.execute(
        "INSERT INTO leasehold_schema (version) VALUES (?1)",
        [SCHEMA_VERSION],
    )
    .map_err(sql("record the schema version"))?;
    tx.commit().map_err(sql("commit the migrations"))?;
    Ok(found)
}
