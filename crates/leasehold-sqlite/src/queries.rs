//! Every SQL statement the store runs, in one place, so that the query-plan
//! test (below) checks exactly the text the store executes.
//!
//! Statements on hot paths must be served by an index (never `SCAN tasks`):
//! `get` by the UNIQUE index on `task_id`, `claim` by `tasks_claim` and
//! `tasks_stale`, `list_stale` and `reclaim` by `tasks_stale`, `history` by
//! `history_task`. `counts` reads the small `task_counts` table. A filtered
//! `list` walks the index of its filter (`tasks_state`, `tasks_queue`,
//! `tasks_owner`, `tasks_stale`); an unfiltered one and `list_in_flight`
//! walk the rowid in creation order.
//!
//! The stale and claim queries name their index with `INDEXED BY`: without
//! statistics the planner prefers `tasks_state (state=?)` for
//! `state = 'running' AND lease_expires_at <= ?`, which reads every running
//! task. `INDEXED BY` makes SQLite refuse to prepare the statement rather than
//! silently fall back to another plan, so a schema change that breaks the
//! index fails loudly (and the plan test below says why).

use leasehold_core::store::ListFilter;
use rusqlite::types::Value;

/// The task columns, in the order `RawTask::read` expects.
macro_rules! task_columns {
    () => {
        "seq, task_id, saga_id, state, queue, priority, issue, branch, worktree, metadata, \
         compensations, notes, lease_owner, lease_token, lease_acquired_at, lease_expires_at, \
         last_heartbeat_at, attempts, terminal_reason, version, created_at, updated_at"
    };
}

/// The history columns, in the order `RawHistory::read` expects.
macro_rules! history_columns {
    () => {
        "task_id, kind, at, actor, from_state, to_state, lease_token, detail"
    };
}

/// One task by id (UNIQUE index on `task_id`).
pub const GET_BY_ID: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE task_id = ?1");

/// One task by creation sequence (rowid).
pub const GET_BY_SEQ: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE seq = ?1");

/// The sequence number of a task (UNIQUE index on `task_id`).
pub const SEQ_BY_ID: &str = "SELECT seq FROM tasks WHERE task_id = ?1";

/// The task using a saga id (UNIQUE index on `saga_id`).
pub const TASK_BY_SAGA: &str = "SELECT task_id FROM tasks WHERE saga_id = ?1";

/// Insert a task; `?1..?21` are the columns after `seq`.
pub const INSERT_TASK: &str = "INSERT INTO tasks (task_id, saga_id, state, queue, priority, issue, \
     branch, worktree, metadata, compensations, notes, lease_owner, lease_token, lease_acquired_at, \
     lease_expires_at, last_heartbeat_at, attempts, terminal_reason, version, created_at, updated_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)";

/// Conditional update: `?1..?21` the columns after `seq`, `?22` the seq and
/// `?23` the version that was read. Changes one row or none.
pub const UPDATE_TASK: &str =
    "UPDATE tasks SET task_id = ?1, saga_id = ?2, state = ?3, queue = ?4, \
     priority = ?5, issue = ?6, branch = ?7, worktree = ?8, metadata = ?9, compensations = ?10, \
     notes = ?11, lease_owner = ?12, lease_token = ?13, lease_acquired_at = ?14, \
     lease_expires_at = ?15, last_heartbeat_at = ?16, attempts = ?17, terminal_reason = ?18, \
     version = ?19, created_at = ?20, updated_at = ?21 WHERE seq = ?22 AND version = ?23";

/// Conditional update of the columns a lease or state transition may
/// change, with the same parameters as [`UPDATE_TASK`] (`?1, ?2, ?4…?9, ?20`
/// are bound but unused: the caller checked they equal the stored values).
pub const UPDATE_TASK_LEASE: &str = "UPDATE tasks SET state = ?3, compensations = ?10, \
     notes = ?11, lease_owner = ?12, lease_token = ?13, lease_acquired_at = ?14, \
     lease_expires_at = ?15, last_heartbeat_at = ?16, attempts = ?17, terminal_reason = ?18, \
     version = ?19, updated_at = ?21 WHERE seq = ?22 AND version = ?23";

/// Append a history row: `?1` the task's seq, then the history columns.
pub const INSERT_HISTORY: &str = concat!(
    "INSERT INTO history (task_seq, ",
    history_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
);

/// One task's history, oldest first (`history_task`).
pub const HISTORY: &str = concat!(
    "SELECT ",
    history_columns!(),
    " FROM history WHERE task_seq = ?1 ORDER BY id"
);

/// Seqs of tasks stale at `?1`, oldest expiry first, at most `?2` (`tasks_stale`).
/// Non-terminal tasks with a lease are exactly the running ones (invariant).
pub const STALE_SEQS: &str = "SELECT seq FROM tasks INDEXED BY tasks_stale \
     WHERE state = 'running' AND lease_expires_at <= ?1 \
     ORDER BY lease_expires_at, seq LIMIT ?2";

/// Tasks stale at `?1`, oldest expiry first (`tasks_stale`).
pub const LIST_STALE: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks INDEXED BY tasks_stale \
     WHERE state = 'running' AND lease_expires_at <= ?1 ORDER BY lease_expires_at, seq"
);

/// Non-terminal tasks in creation order.
pub const LIST_IN_FLIGHT: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE state IN ('planned', 'dispatched', 'running') ORDER BY seq"
);

/// The start of a filtered `list`; the store appends `WHERE …`.
pub const LIST_PREFIX: &str = concat!("SELECT ", task_columns!(), " FROM tasks");

/// A filtered `list` page: tasks after seq `after`, in creation order, at
/// most `limit`; returns the SQL text and its parameters.
///
/// Each filter is served by an index that is in `seq` order for one value
/// (SQLite indexes end in the rowid): `state = ?` by `tasks_state`, `queue`
/// by `tasks_queue`, `owner` by `tasks_owner`, `stale_at` by `tasks_stale`
/// (non-terminal tasks with a lease are exactly the running ones). Several
/// states become one sub-select per state, each reading at most `limit`
/// rows from its index, merged by `seq`: O(states × limit), never a scan of
/// every task in those states.
pub fn list_query(filter: &ListFilter, after: i64, limit: i64) -> (String, Vec<Value>) {
    let mut params = vec![Value::Integer(after), Value::Integer(limit)];
    fn next(v: Value, params: &mut Vec<Value>) -> String {
        params.push(v);
        format!("?{}", params.len())
    }
    // Conditions shared by every arm.
    let mut conds = vec!["seq > ?1".to_string()];
    let mut index: Option<&str> = None;
    if let Some(q) = &filter.queue {
        conds.push(format!(
            "queue = {}",
            next(Value::Text(q.clone()), &mut params)
        ));
        index = Some("tasks_queue");
    }
    if let Some(o) = &filter.owner {
        conds.push(format!(
            "lease_owner = {}",
            next(Value::Text(o.clone()), &mut params)
        ));
        index = Some("tasks_owner");
    }
    if let Some(now) = filter.stale_at {
        conds.push(format!(
            "state = 'running' AND lease_expires_at <= {}",
            next(Value::Integer(now.as_micros()), &mut params)
        ));
        index = Some("tasks_stale");
    }
    let mut states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
    states.sort_unstable();
    states.dedup();
    if states.len() == 1 {
        conds.push(format!(
            "state = {}",
            next(Value::Text(states[0].to_string()), &mut params)
        ));
        index = index.or(Some("tasks_state"));
    }
    if states.len() <= 1 {
        let by = index.map_or(String::new(), |i| format!(" INDEXED BY {i}"));
        let sql = format!(
            "{LIST_PREFIX}{by} WHERE {} ORDER BY seq LIMIT ?2",
            conds.join(" AND ")
        );
        return (sql, params);
    }
    let arms: Vec<String> = states
        .into_iter()
        .map(|st| {
            let p = next(Value::Text(st.to_string()), &mut params);
            // With no other filter, the state index serves the arm; with one,
            // that filter's index (the planner would guess without stats).
            let by = index.map_or(String::new(), |i| format!(" INDEXED BY {i}"));
            format!(
                "SELECT * FROM (SELECT {} FROM tasks{by} WHERE state = {p} AND {} ORDER BY seq LIMIT ?2)",
                task_columns!(),
                conds.join(" AND ")
            )
        })
        .collect();
    let sql = format!("{} ORDER BY seq LIMIT ?2", arms.join(" UNION ALL "));
    (sql, params)
}

/// Unleased claimable tasks of queue `?1`, best first, at most `?2` (`tasks_claim`).
pub const CLAIM_UNLEASED: &str = "SELECT priority, seq FROM tasks INDEXED BY tasks_claim \
     WHERE state IN ('planned', 'dispatched') AND queue = ?1 \
     ORDER BY priority DESC, seq LIMIT ?2";

/// Expired running tasks at `?1` of the queues `?3…`, best first, at most `?2`
/// (`tasks_stale`, then a sort of the expired rows of those queues). With
/// `max_attempts`, leases that used up their attempts are left out (they are
/// `reclaim`'s to quarantine).
pub fn claim_expired(n_queues: usize, max_attempts: Option<u32>) -> String {
    let qs: Vec<String> = (0..n_queues).map(|i| format!("?{}", i + 3)).collect();
    let attempts = max_attempts
        .map(|m| format!(" AND attempts < {m}"))
        .unwrap_or_default();
    format!(
        "SELECT priority, seq FROM tasks INDEXED BY tasks_stale \
         WHERE state = 'running' AND lease_expires_at <= ?1 AND queue IN ({}){attempts} \
         ORDER BY priority DESC, seq LIMIT ?2",
        qs.join(", ")
    )
}

/// Tasks per state, from the trigger-maintained `task_counts` table
/// (states × queues rows, independent of the number of tasks).
pub const COUNTS: &str = "SELECT state, SUM(n) FROM task_counts GROUP BY state";

/// Tasks per queue and state, non-zero pairs only (`task_counts`).
pub const QUEUE_COUNTS: &str = "SELECT queue, state, n FROM task_counts WHERE n > 0";

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::store::Store;
    use leasehold_core::{Context, NewTask, Timestamp};

    /// The `detail` column of `EXPLAIN QUERY PLAN`, one step per line.
    fn plan(conn: &rusqlite::Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Value::Null; stmt.parameter_count()];
        let rows = stmt
            .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        rows.join("\n")
    }

    fn assert_uses(conn: &rusqlite::Connection, name: &str, sql: &str, index: &str, sort_ok: bool) {
        let p = plan(conn, sql);
        assert!(p.contains(index), "{name} does not use {index}:\n{p}");
        // A plain table scan reads every row; scanning a covering index is
        // reported as `SCAN tasks USING COVERING INDEX` and is checked by `index`.
        assert!(
            !p.lines().any(|l| l.trim() == "SCAN tasks"),
            "{name} scans the table:\n{p}"
        );
        if !sort_ok {
            assert!(
                !p.contains("TEMP B-TREE"),
                "{name} sorts instead of walking the index:\n{p}"
            );
        }
    }

    #[test]
    fn hot_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(dir.path().join("plans.db")).unwrap();
        // Some rows in several states, so the planner sees a real table.
        let t0 = Timestamp::parse("2026-06-03T10:00:00Z").unwrap();
        let ctx = Context::new(t0, "test");
        for i in 0..200 {
            let mut n = NewTask::new(format!("t{i}"), format!("s{i}"));
            n.queue = Some(format!("q{}", i % 3));
            n.priority = Some(i % 5);
            store.create(n, &ctx).unwrap();
            if i % 4 == 0 {
                let exp = t0.checked_add_micros(1_000_000 * (i as i64 + 1)).unwrap();
                store
                    .acquire_lease(&format!("t{i}"), "w", exp, &ctx)
                    .unwrap();
            }
        }
        let conn = store.writer.lock().unwrap();
        assert_uses(
            &conn,
            "get",
            GET_BY_ID,
            "USING INDEX sqlite_autoindex_tasks_1 (task_id=?)",
            false,
        );
        assert_uses(
            &conn,
            "seq of id",
            SEQ_BY_ID,
            "sqlite_autoindex_tasks_1 (task_id=?)",
            false,
        );
        assert_uses(
            &conn,
            "saga lookup",
            TASK_BY_SAGA,
            "sqlite_autoindex_tasks_2 (saga_id=?)",
            false,
        );
        assert_uses(
            &conn,
            "get by seq",
            GET_BY_SEQ,
            "USING INTEGER PRIMARY KEY (rowid=?)",
            false,
        );
        assert_uses(
            &conn,
            "reclaim",
            STALE_SEQS,
            "tasks_stale (lease_expires_at<?)",
            false,
        );
        assert_uses(
            &conn,
            "list_stale",
            LIST_STALE,
            "tasks_stale (lease_expires_at<?)",
            false,
        );
        assert_uses(
            &conn,
            "claim unleased",
            CLAIM_UNLEASED,
            "tasks_claim (queue=?)",
            false,
        );
        for n in [1, 3, 64] {
            assert_uses(
                &conn,
                "claim expired",
                &claim_expired(n, Some(5)),
                "tasks_stale (lease_expires_at<?)",
                true,
            );
        }
        assert_uses(
            &conn,
            "history",
            HISTORY,
            "USING INDEX history_task (task_seq=?)",
            false,
        );
    }

    #[test]
    fn filtered_lists_and_counts_never_scan_the_tasks() {
        use leasehold_core::TaskState::*;
        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(dir.path().join("lists.db")).unwrap();
        let conn = store.writer.lock().unwrap();
        let now = Timestamp::parse("2026-06-03T10:00:00Z").unwrap();
        let filters = [
            (
                "one state",
                ListFilter {
                    states: vec![Running],
                    ..Default::default()
                },
                "tasks_state (state=? AND rowid>?)",
            ),
            (
                "two states",
                ListFilter {
                    states: vec![Planned, Completed],
                    ..Default::default()
                },
                "tasks_state (state=? AND rowid>?)",
            ),
            (
                "queue",
                ListFilter {
                    queue: Some("q".into()),
                    ..Default::default()
                },
                "tasks_queue (queue=? AND rowid>?)",
            ),
            (
                "owner",
                ListFilter {
                    owner: Some("w".into()),
                    ..Default::default()
                },
                "tasks_owner (lease_owner=? AND rowid>?)",
            ),
            (
                "stale",
                ListFilter {
                    stale_at: Some(now),
                    ..Default::default()
                },
                "tasks_stale (lease_expires_at<?)",
            ),
            (
                "state and queue",
                ListFilter {
                    states: vec![Planned, Dispatched],
                    queue: Some("q".into()),
                    ..Default::default()
                },
                "tasks_queue (queue=? AND rowid>?)",
            ),
        ];
        for (name, f, index) in filters {
            let (sql, params) = list_query(&f, 0, 101);
            assert_eq!(
                conn.prepare(&sql).unwrap().parameter_count(),
                params.len(),
                "{name}: parameters"
            );
            // Sorting is fine only where it sorts at most `limit` rows per
            // arm (the UNION merge) or the stale rows (stale filter).
            assert_uses(&conn, name, &sql, index, true);
            if f.stale_at.is_none() && f.states.len() < 2 {
                assert!(!plan(&conn, &sql).contains("TEMP B-TREE"), "{name} sorts");
            }
        }
        let p = plan(&conn, COUNTS);
        assert!(
            p.contains("task_counts") && !p.contains("tasks"),
            "counts: {p}"
        );
    }

    #[test]
    fn column_lists_match_the_schema() {
        let cols: Vec<&str> = task_columns!().split(", ").collect();
        assert_eq!(cols.len(), 22);
        for c in &cols {
            assert!(
                crate::migrations::V1_INITIAL.contains(&format!("    {c} ")),
                "{c}"
            );
        }
    }
}
