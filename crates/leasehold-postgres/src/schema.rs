//! The schema Leasehold owns inside PostgreSQL, and its versioned migrations.
//!
//! Everything lives in one schema (default `leasehold`), so one database can
//! host several installations side by side. Migrations are numbered and
//! recorded in `<schema>.schema_migrations`; they run inside one transaction
//! that first takes a transaction-scoped advisory lock derived from the schema
//! name (`pg_advisory_xact_lock`), so that many processes starting at once
//! migrate exactly once and the others wait, then find nothing to do. A
//! database already migrated by a newer Leasehold is refused rather than
//! guessed at.
//!
//! Tables:
//! - `tasks`: one row per task. `seq` (an identity column) is the creation
//!   order and the list cursor. Timestamps are BIGINT microseconds since the
//!   Unix epoch (UTC), so comparisons happen in the database on integers.
//!   Metadata, compensations and notes are `json` (not `jsonb`), which keeps
//!   the exact text and so reads back exactly what was written.
//! - `task_history`: one row per change, written in the same statement as
//!   its task. No foreign key since migration 2 (tasks are never deleted
//!   and entries are only written with their task's row; the key cost every
//!   insert a lookup and a row lock).
//! - a `BEFORE UPDATE` trigger that refuses, inside the database, an update
//!   that would move a fencing token backwards, not advance the version,
//!   change an id, or take a terminal task out of its state.

use leasehold_core::Error;

use crate::error::{describe, to_error};

/// The highest migration this build knows.
pub const SCHEMA_VERSION: i32 = 2;

/// One migration: its number, a name, and SQL with `{s}` standing for the
/// quoted schema name.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tasks, history, guard trigger",
        sql: r#"
CREATE TABLE {s}.tasks (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id           TEXT NOT NULL,
    saga_id           TEXT NOT NULL,
    state             TEXT NOT NULL,
    queue             TEXT NOT NULL,
    priority          INTEGER NOT NULL,
    issue             BIGINT,
    branch            TEXT,
    worktree          TEXT,
    metadata          JSON NOT NULL,
    compensations     JSON NOT NULL,
    notes             JSON NOT NULL,
    lease_owner       TEXT,
    lease_token       BIGINT NOT NULL CHECK (lease_token >= 0),
    lease_acquired_at BIGINT,
    lease_expires_at  BIGINT,
    last_heartbeat_at BIGINT,
    attempts          BIGINT NOT NULL CHECK (attempts >= 0),
    terminal_reason   TEXT,
    version           BIGINT NOT NULL CHECK (version >= 1),
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    CONSTRAINT tasks_task_id_unique UNIQUE (task_id),
    CONSTRAINT tasks_saga_id_unique UNIQUE (saga_id),
    CONSTRAINT tasks_state_known CHECK (state IN
        ('planned','dispatched','running','completed','failed','compensated','quarantined')),
    CONSTRAINT tasks_running_has_lease CHECK (state <> 'running' OR
        (lease_owner IS NOT NULL AND lease_acquired_at IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- claim: ready tasks in claim order.
CREATE INDEX tasks_ready_idx ON {s}.tasks (queue, priority DESC, seq)
    WHERE state IN ('planned', 'dispatched');
-- claim of expired leases, list_stale and reclaim: non-terminal by expiry.
CREATE INDEX tasks_expiry_idx ON {s}.tasks (lease_expires_at, seq)
    WHERE state IN ('planned', 'dispatched', 'running') AND lease_expires_at IS NOT NULL;
-- list_in_flight and list filtered by state.
CREATE INDEX tasks_state_idx ON {s}.tasks (state, seq);

CREATE TABLE {s}.task_history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES {s}.tasks (task_id),
    kind        TEXT NOT NULL,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    lease_token BIGINT NOT NULL,
    detail      TEXT
);
CREATE INDEX task_history_task_idx ON {s}.task_history (task_id, id);

CREATE FUNCTION {s}.tasks_guard() RETURNS trigger LANGUAGE plpgsql AS $guard$
BEGIN
    IF NEW.seq <> OLD.seq OR NEW.task_id <> OLD.task_id OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'leasehold guard: task % cannot change its id, sequence or creation time', OLD.task_id
            USING ERRCODE = 'LH001';
    END IF;
    IF NEW.lease_token < OLD.lease_token THEN
        RAISE EXCEPTION 'leasehold guard: fencing token of task % cannot go back from % to %',
            OLD.task_id, OLD.lease_token, NEW.lease_token
            USING ERRCODE = 'LH001';
    END IF;
    IF NEW.version <= OLD.version THEN
        RAISE EXCEPTION 'leasehold guard: version of task % must advance past %, got %',
            OLD.task_id, OLD.version, NEW.version
            USING ERRCODE = 'LH001';
    END IF;
    IF OLD.state IN ('completed', 'failed', 'compensated', 'quarantined') AND NEW.state <> OLD.state THEN
        RAISE EXCEPTION 'leasehold guard: task % is % and terminal; it cannot become %',
            OLD.task_id, OLD.state, NEW.state
            USING ERRCODE = 'LH001';
    END IF;
    RETURN NEW;
END
$guard$;

CREATE TRIGGER tasks_guard BEFORE UPDATE ON {s}.tasks
    FOR EACH ROW EXECUTE FUNCTION {s}.tasks_guard();
"#,
    },
    Migration {
        version: 2,
        name: "history without a foreign key",
        // The foreign key cost every history insert a lookup and a row lock
        // on its task (about a quarter of a write statement's time, and a
        // third of a batch of creates'). It checked nothing the write path
        // does not already make impossible: tasks are never deleted, and an
        // entry is only ever inserted by the statement that updates (at the
        // version it read, under its row lock) or inserts its task, and only
        // if that row was written.
        sql: r#"
ALTER TABLE {s}.task_history DROP CONSTRAINT IF EXISTS task_history_task_id_fkey;
"#,
    },
];

/// Check a schema name: a plain lowercase SQL identifier, so that it never
/// needs escaping tricks and reads the same in `psql`.
pub fn check_schema_name(name: &str) -> Result<(), Error> {
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok_start || !ok_rest || name.len() > 63 {
        return Err(Error::InvalidInput(format!(
            "schema name {name:?} must be 1 to 63 characters of a-z, 0-9 and _, not starting with a digit"
        )));
    }
    if name.starts_with("pg_") || name == "information_schema" || name == "public" {
        return Err(Error::InvalidInput(format!(
            "schema name {name:?} is reserved by PostgreSQL; choose another (default: leasehold)"
        )));
    }
    Ok(())
}

/// The advisory lock key for migrating `schema`: FNV-1a of a fixed prefix and
/// the name, so that it is stable across versions and processes.
pub fn migration_lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "leasehold-migrate:".bytes().chain(schema.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// Bring `schema` up to [`SCHEMA_VERSION`] under the advisory lock. Returns
/// the migrations this call applied (0 when another process did them).
pub(crate) fn migrate(client: &mut postgres::Client, schema: &str) -> Result<u32, Error> {
    let q = format!("\"{schema}\"");
    let pg = |e: postgres::Error| to_error(&e, &format!("migrating schema {schema:?}"));
    let mut tx = client.transaction().map_err(pg)?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&migration_lock_key(schema)],
    )
    .map_err(pg)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {q};
         CREATE TABLE IF NOT EXISTS {q}.schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );"
    ))
    .map_err(pg)?;
    let current: i32 = tx
        .query_one(
            &format!("SELECT COALESCE(max(version), 0) FROM {q}.schema_migrations"),
            &[],
        )
        .map_err(pg)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(Error::Internal(format!(
            "schema {schema:?} is at version {current}, newer than this build of Leasehold knows \
             ({SCHEMA_VERSION}); upgrade Leasehold before pointing it at this database"
        )));
    }
    let mut applied = 0;
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(&m.sql.replace("{s}", &q)).map_err(|e| {
            Error::Internal(format!(
                "migration {} ({}) of schema {schema:?} failed: {}",
                m.version,
                m.name,
                describe(&e)
            ))
        })?;
        tx.execute(
            &format!("INSERT INTO {q}.schema_migrations (version, name) VALUES ($1, $2)"),
            &[&m.version, &m.name],
        )
        .map_err(pg)?;
        applied += 1;
    }
    tx.commit().map_err(pg)?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        assert!(check_schema_name("leasehold").is_ok());
        assert!(check_schema_name("_t_12").is_ok());
        assert!(check_schema_name("").is_err());
        assert!(check_schema_name("1abc").is_err());
        assert!(check_schema_name("Upper").is_err());
        assert!(check_schema_name("a\"b").is_err());
        assert!(check_schema_name("pg_catalog").is_err());
        assert!(check_schema_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn lock_keys_differ_per_schema_and_are_stable() {
        assert_ne!(migration_lock_key("a"), migration_lock_key("b"));
        assert_eq!(
            migration_lock_key("leasehold"),
            migration_lock_key("leasehold")
        );
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i32 + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(SCHEMA_VERSION));
    }
}
