//! The SQL this backend runs, and the mapping between rows and model types.
//!
//! Statements are built once per store with the schema name spliced in (it is
//! validated and quoted), then prepared once per connection.

use leasehold_core::{
    validate, Compensation, Error, HistoryEntry, HistoryKind, Note, Task, TaskState, Timestamp,
    Transition,
};
use postgres::types::{Json, ToSql};
use postgres::Row;

/// Columns of `tasks`, in the order [`task_from_row`] reads them.
const TASK_COLS: &str = "seq, task_id, saga_id, state, queue, priority, issue, branch, worktree, \
    metadata, compensations, notes, lease_owner, lease_token, lease_acquired_at, lease_expires_at, \
    last_heartbeat_at, attempts, terminal_reason, version, created_at, updated_at";

/// Non-terminal states, as an SQL list.
const LIVE: &str = "('planned', 'dispatched', 'running')";

/// Every statement, for one schema.
pub(crate) struct Queries {
    pub(crate) get_for_update: String,
    pub(crate) get: String,
    /// Whether a task id exists, and which other task holds a saga id.
    pub(crate) taken: String,
    pub(crate) saga_owner: String,
    /// Insert a task and its first history entry in one statement.
    pub(crate) insert_task: String,
    /// Write many transitions (rows and history) in one statement.
    pub(crate) write_batch: String,
    /// Write one transition (row and history) in one statement, with scalar
    /// parameters: a plan that stays an index lookup when cached.
    pub(crate) write_one: String,
    /// Lock and load several tasks by id (`$1` text[]), in id order so that
    /// concurrent batches lock rows in one order.
    pub(crate) get_many_for_update: String,
    /// A group-commit batch's write: `write_batch`'s updates and history,
    /// plus new tasks inserted unless their id or saga is taken (`ON
    /// CONFLICT DO NOTHING`; their first entries only with them). Returns
    /// the rows updated, entries inserted and the ids of the tasks inserted.
    pub(crate) write_group: String,
    pub(crate) queue_counts: String,
    /// Claim candidates from one queue (`$1` text): ready, then expired.
    pub(crate) claim_one: [String; 2],
    /// Claim candidates from several queues (`$1` text[]): ready, then expired.
    pub(crate) claim_many: [String; 2],
    pub(crate) reclaim: String,
    pub(crate) list: String,
    pub(crate) in_flight: String,
    pub(crate) stale: String,
    pub(crate) counts: String,
    pub(crate) history: String,
}

impl Queries {
    pub(crate) fn new(schema: &str) -> Queries {
        let t = format!("\"{schema}\".tasks");
        let h = format!("\"{schema}\".task_history");
        Queries {
            get_for_update: format!("SELECT {TASK_COLS} FROM {t} WHERE task_id = $1 FOR UPDATE"),
            get: format!("SELECT {TASK_COLS} FROM {t} WHERE task_id = $1"),
            taken: format!(
                "SELECT EXISTS (SELECT 1 FROM {t} WHERE task_id = $1), \
                 (SELECT task_id FROM {t} WHERE saga_id = $2 AND task_id <> $1 LIMIT 1)"
            ),
            saga_owner: format!("SELECT task_id FROM {t} WHERE saga_id = $1 AND task_id <> $2"),
            insert_task: format!(
                "WITH ins AS (INSERT INTO {t} (task_id, saga_id, state, queue, priority, issue, \
                 branch, worktree, metadata, compensations, notes, lease_owner, lease_token, \
                 lease_acquired_at, lease_expires_at, last_heartbeat_at, attempts, terminal_reason, \
                 version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) RETURNING task_id) \
                 INSERT INTO {h} (task_id, kind, at, actor, from_state, to_state, lease_token, detail) \
                 SELECT ins.task_id, $22::text, $23::int8, $24::text, $25::text, $26::text, $27::int8, \
                 $28::text FROM ins RETURNING 1"
            ),
            // Conditional writes of many transitions in one statement: each
            // row is replaced only at the version that was read (and locked),
            // and the history entries go in with it. The caller compares the
            // two counts with what it sent. The COMMIT is sent with this
            // statement, so it must not succeed partly: unless every row
            // matched its version and every entry went in, the scalar
            // subquery returns two rows and the statement fails with
            // SQLSTATE 21000 (cardinality_violation), which nothing else
            // here raises; the whole statement, and so the transaction,
            // rolls back and the operation runs again.
            write_batch: format!(
                "WITH {upd}, \
                 ins AS (INSERT INTO {h} (task_id, kind, at, actor, from_state, to_state, \
                   lease_token, detail) \
                 SELECT * FROM unnest($22::text[], $23::text[], $24::int8[], $25::text[], \
                   $26::text[], $27::text[], $28::int8[], $29::text[]) RETURNING 1), \
                 n AS (SELECT (SELECT count(*) FROM upd) AS updated, \
                   (SELECT count(*) FROM ins) AS inserted) \
                 SELECT CASE WHEN updated = cardinality($1::int8[]) \
                   AND inserted = cardinality($22::text[]) THEN updated \
                   ELSE (SELECT g FROM generate_series(1, 2) g) END, inserted FROM n",
                upd = update_arrays(&t)
            ),
            // As `write_batch`, and the batch's new tasks: inserted with
            // ON CONFLICT DO NOTHING (a task id or saga id taken meanwhile
            // by another transaction skips that task instead of failing the
            // batch; the caller answers it on its own), each first history
            // entry only if its task went in. Entries are inserted in the
            // order given. The same 21000 rule as `write_batch` holds for
            // the updated rows and their entries.
            write_group: format!(
                "WITH {upd}, \
                 newt AS (INSERT INTO {t} (task_id, saga_id, state, queue, priority, issue, \
                   branch, worktree, metadata, compensations, notes, lease_owner, lease_token, \
                   lease_acquired_at, lease_expires_at, last_heartbeat_at, attempts, \
                   terminal_reason, version, created_at, updated_at) \
                 SELECT * FROM unnest($30::text[], $31::text[], $32::text[], $33::text[], \
                   $34::int4[], $35::int8[], $36::text[], $37::text[], $38::json[], $39::json[], \
                   $40::json[], $41::text[], $42::int8[], $43::int8[], $44::int8[], $45::int8[], \
                   $46::int8[], $47::text[], $48::int8[], $49::int8[], $50::int8[]) \
                 ON CONFLICT DO NOTHING RETURNING task_id), \
                 ins AS (INSERT INTO {h} (task_id, kind, at, actor, from_state, to_state, \
                   lease_token, detail) \
                 SELECT e.task_id, e.kind, e.at, e.actor, e.from_state, e.to_state, \
                   e.lease_token, e.detail \
                 FROM unnest($22::text[], $23::text[], $24::int8[], $25::text[], $26::text[], \
                   $27::text[], $28::int8[], $29::text[], $51::bool[]) WITH ORDINALITY \
                   AS e(task_id, kind, at, actor, from_state, to_state, lease_token, detail, \
                   is_new, ord) \
                 WHERE NOT e.is_new OR e.task_id IN (SELECT task_id FROM newt) \
                 ORDER BY e.ord RETURNING 1), \
                 n AS (SELECT (SELECT count(*) FROM upd) AS updated, \
                   (SELECT count(*) FROM ins) AS inserted, \
                   (SELECT count(*) FROM newt) AS created, \
                   (SELECT count(*) FROM unnest($51::bool[]) AS x(is_new) WHERE NOT is_new) AS old) \
                 SELECT CASE WHEN updated = cardinality($1::int8[]) \
                   AND inserted = old + created THEN updated \
                   ELSE (SELECT g FROM generate_series(1, 2) g) END, inserted, \
                   ARRAY(SELECT task_id FROM newt) FROM n",
                upd = update_arrays(&t)
            ),
            get_many_for_update: format!(
                "SELECT {TASK_COLS} FROM {t} WHERE task_id = ANY($1) ORDER BY task_id FOR UPDATE"
            ),
            queue_counts: format!("SELECT queue, state, count(*) FROM {t} GROUP BY queue, state"),
            // The history entry is selected FROM upd: it goes in only if the
            // row matched its version, so the statement (sent with COMMIT)
            // writes both or neither.
            write_one: format!(
                "WITH upd AS (UPDATE {t} SET saga_id = $3, state = $4, queue = $5, \
                   priority = $6, issue = $7, branch = $8, worktree = $9, metadata = $10, \
                   compensations = $11, notes = $12, lease_owner = $13, lease_token = $14, \
                   lease_acquired_at = $15, lease_expires_at = $16, last_heartbeat_at = $17, \
                   attempts = $18, terminal_reason = $19, version = $20, updated_at = $21 \
                 WHERE seq = $1 AND version = $2 RETURNING seq), \
                 ins AS (INSERT INTO {h} (task_id, kind, at, actor, from_state, to_state, \
                   lease_token, detail) \
                 SELECT $22::text, $23::text, $24::int8, $25::text, $26::text, $27::text, \
                   $28::int8, $29::text FROM upd WHERE $23::text IS NOT NULL RETURNING 1) \
                 SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM ins)"
            ),
            claim_one: [
                claim_sql(&t, "queue = $1", false),
                claim_sql(&t, "queue = $1", true),
            ],
            claim_many: [
                claim_sql(&t, "queue = ANY($1)", false),
                claim_sql(&t, "queue = ANY($1)", true),
            ],
            reclaim: format!(
                "SELECT {TASK_COLS} FROM {t} WHERE state IN {LIVE} AND lease_expires_at IS NOT NULL \
                 AND lease_expires_at <= $1 ORDER BY lease_expires_at, seq LIMIT $2 \
                 FOR UPDATE SKIP LOCKED"
            ),
            list: format!(
                "SELECT {TASK_COLS} FROM {t} WHERE seq > $1 \
                 AND (cardinality($2::text[]) = 0 OR state = ANY($2)) \
                 AND ($3::text IS NULL OR queue = $3) \
                 AND ($4::text IS NULL OR lease_owner = $4) \
                 AND ($5::bigint IS NULL OR (state IN {LIVE} AND lease_expires_at <= $5)) \
                 ORDER BY seq LIMIT $6"
            ),
            in_flight: format!("SELECT {TASK_COLS} FROM {t} WHERE state IN {LIVE} ORDER BY seq"),
            stale: format!(
                "SELECT {TASK_COLS} FROM {t} WHERE state IN {LIVE} AND lease_expires_at IS NOT NULL \
                 AND lease_expires_at <= $1 ORDER BY lease_expires_at, seq"
            ),
            counts: format!("SELECT state, count(*) FROM {t} GROUP BY state"),
            history: format!(
                "SELECT t.task_id, h.kind, h.at, h.actor, h.from_state, h.to_state, h.lease_token, \
                 h.detail FROM {t} t LEFT JOIN {h} h ON h.task_id = t.task_id \
                 WHERE t.task_id = $1 ORDER BY h.id"
            ),
        }
    }
}

/// The `upd` CTE of the array-form writes: each row `$1` (seq) replaced
/// only at version `$2`, columns `$3`..`$21`.
fn update_arrays(t: &str) -> String {
    format!(
        "upd AS (UPDATE {t} AS t SET saga_id = u.saga_id, state = u.state, \
           queue = u.queue, priority = u.priority, issue = u.issue, branch = u.branch, \
           worktree = u.worktree, metadata = u.metadata, compensations = u.compensations, \
           notes = u.notes, lease_owner = u.lease_owner, lease_token = u.lease_token, \
           lease_acquired_at = u.lease_acquired_at, lease_expires_at = u.lease_expires_at, \
           last_heartbeat_at = u.last_heartbeat_at, attempts = u.attempts, \
           terminal_reason = u.terminal_reason, version = u.version, updated_at = u.updated_at \
         FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int4[], \
           $7::int8[], $8::text[], $9::text[], $10::json[], $11::json[], $12::json[], \
           $13::text[], $14::int8[], $15::int8[], $16::int8[], $17::int8[], $18::int8[], \
           $19::text[], $20::int8[], $21::int8[]) \
           AS u(seq, old_version, saga_id, state, queue, priority, issue, branch, worktree, \
           metadata, compensations, notes, lease_owner, lease_token, lease_acquired_at, \
           lease_expires_at, last_heartbeat_at, attempts, terminal_reason, version, updated_at) \
         WHERE t.seq = u.seq AND t.version = u.old_version RETURNING t.seq)"
    )
}

/// Claimable = ready (planned/dispatched) or running with an expired lease.
/// The two sets are selected by two statements (PostgreSQL allows no row
/// locks over a UNION), each walking its own index in claim order, locking
/// its rows and skipping rows another transaction holds; the caller merges
/// them and cuts to the limit. Rows locked but cut stay locked until the
/// claim commits (other claimers skip them meanwhile): the price of not
/// sorting every claimable row on each call. `$1` queue(s), `$2` now, `$3` limit;
/// the expired walk also `$4`, the claim's `max_attempts` (a stale lease that
/// used up its attempts is `reclaim`'s to quarantine, not claimable).
/// The `$4` of the expired claim walk: `attempts < $4` leaves out stale
/// leases that used up the claim's `max_attempts` (none given: no bound).
pub(crate) fn attempts_bound(max_attempts: Option<u32>) -> i64 {
    max_attempts.map_or(i64::MAX, i64::from)
}

fn claim_sql(t: &str, queue: &str, expired: bool) -> String {
    let which = if expired {
        "state = 'running' AND lease_expires_at IS NOT NULL AND lease_expires_at <= $2 \
         AND attempts < $4"
    } else {
        "state IN ('planned', 'dispatched') AND $2::bigint IS NOT NULL"
    };
    format!(
        "SELECT {TASK_COLS} FROM {t} WHERE {queue} AND {which} \
         ORDER BY priority DESC, seq LIMIT $3 FOR UPDATE SKIP LOCKED"
    )
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Internal(format!("corrupt row in postgres: {what}: {detail}"))
}

fn ts(row: &Row, idx: usize, task_id: &str, field: &str) -> Result<Option<Timestamp>, Error> {
    let v: Option<i64> = row
        .try_get(idx)
        .map_err(|e| corrupt(&format!("task {task_id:?} {field}"), e))?;
    v.map(|m| {
        Timestamp::from_micros(m).ok_or_else(|| {
            corrupt(
                &format!("task {task_id:?} {field}"),
                format!("{m} out of range"),
            )
        })
    })
    .transpose()
}

fn req_ts(row: &Row, idx: usize, task_id: &str, field: &str) -> Result<Timestamp, Error> {
    ts(row, idx, task_id, field)?
        .ok_or_else(|| corrupt(&format!("task {task_id:?} {field}"), "null"))
}

fn get<'a, T: postgres::types::FromSql<'a>>(
    row: &'a Row,
    idx: usize,
    task_id: &str,
) -> Result<T, Error> {
    row.try_get(idx).map_err(|e| {
        corrupt(
            &format!("task {task_id:?} column {}", row.columns()[idx].name()),
            e,
        )
    })
}

/// Decode a `tasks` row (selected with the task columns) into its creation
/// sequence number and the task, checking the task's invariants.
pub(crate) fn task_from_row(row: &Row) -> Result<(i64, Task), Error> {
    let seq: i64 = row.try_get(0).map_err(|e| corrupt("seq", e))?;
    let task_id: String = row.try_get(1).map_err(|e| corrupt("task_id", e))?;
    let tid = task_id.as_str();
    let state: String = get(row, 3, tid)?;
    let state: TaskState = state.parse().map_err(|e: Error| corrupt(tid, e))?;
    let Json(metadata): Json<serde_json::Value> = get(row, 9, tid)?;
    let Json(compensations): Json<Vec<Compensation>> = get(row, 10, tid)?;
    let Json(notes): Json<Vec<Note>> = get(row, 11, tid)?;
    let token: i64 = get(row, 13, tid)?;
    let attempts: i64 = get(row, 17, tid)?;
    let version: i64 = get(row, 19, tid)?;
    let task = Task {
        saga_id: get(row, 2, tid)?,
        state,
        queue: get(row, 4, tid)?,
        priority: get(row, 5, tid)?,
        issue: get(row, 6, tid)?,
        branch: get(row, 7, tid)?,
        worktree: get(row, 8, tid)?,
        metadata,
        compensations,
        notes,
        lease_owner: get(row, 12, tid)?,
        lease_token: u64::try_from(token).map_err(|e| corrupt(tid, e))?,
        lease_acquired_at: ts(row, 14, tid, "lease_acquired_at")?,
        lease_expires_at: ts(row, 15, tid, "lease_expires_at")?,
        last_heartbeat_at: ts(row, 16, tid, "last_heartbeat_at")?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt(tid, e))?,
        terminal_reason: get(row, 18, tid)?,
        version: u64::try_from(version).map_err(|e| corrupt(tid, e))?,
        created_at: req_ts(row, 20, tid, "created_at")?,
        updated_at: req_ts(row, 21, tid, "updated_at")?,
        task_id,
    };
    validate::check_invariants(&task).map_err(|e| corrupt(&task.task_id, e))?;
    Ok((seq, task))
}

/// A task's column values, ready to bind.
pub(crate) struct TaskParams<'a> {
    task: &'a Task,
    state: &'static str,
    metadata: Json<&'a serde_json::Value>,
    compensations: Json<&'a Vec<Compensation>>,
    notes: Json<&'a Vec<Note>>,
    lease_token: i64,
    lease_acquired_at: Option<i64>,
    lease_expires_at: Option<i64>,
    last_heartbeat_at: Option<i64>,
    attempts: i64,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

fn to_bigint(task_id: &str, field: &str, v: u64) -> Result<i64, Error> {
    i64::try_from(v).map_err(|_| {
        Error::InvalidInput(format!(
            "task {task_id:?} has {field} {v}; the PostgreSQL backend stores at most {} (BIGINT)",
            i64::MAX
        ))
    })
}

impl<'a> TaskParams<'a> {
    pub(crate) fn new(task: &'a Task) -> Result<TaskParams<'a>, Error> {
        let tid = task.task_id.as_str();
        Ok(TaskParams {
            task,
            state: task.state.as_str(),
            metadata: Json(&task.metadata),
            compensations: Json(&task.compensations),
            notes: Json(&task.notes),
            lease_token: to_bigint(tid, "lease_token", task.lease_token)?,
            lease_acquired_at: task.lease_acquired_at.map(Timestamp::as_micros),
            lease_expires_at: task.lease_expires_at.map(Timestamp::as_micros),
            last_heartbeat_at: task.last_heartbeat_at.map(Timestamp::as_micros),
            attempts: i64::from(task.attempts),
            version: to_bigint(tid, "version", task.version)?,
            created_at: task.created_at.as_micros(),
            updated_at: task.updated_at.as_micros(),
        })
    }

    /// Parameters of `insert_task`.
    pub(crate) fn insert(&self) -> [&(dyn ToSql + Sync); 21] {
        let t = self.task;
        [
            &t.task_id,
            &t.saga_id,
            &self.state,
            &t.queue,
            &t.priority,
            &t.issue,
            &t.branch,
            &t.worktree,
            &self.metadata,
            &self.compensations,
            &self.notes,
            &t.lease_owner,
            &self.lease_token,
            &self.lease_acquired_at,
            &self.lease_expires_at,
            &self.last_heartbeat_at,
            &self.attempts,
            &t.terminal_reason,
            &self.version,
            &self.created_at,
            &self.updated_at,
        ]
    }
}

/// Column arrays of task rows, one entry per task: what an updated row and
/// an inserted one both write (from [`TaskParams`], so the conversions and
/// their range checks live in one place).
#[derive(Default)]
struct TaskColumns<'a> {
    saga_id: Vec<&'a str>,
    state: Vec<&'static str>,
    queue: Vec<&'a str>,
    priority: Vec<i32>,
    issue: Vec<Option<i64>>,
    branch: Vec<Option<&'a str>>,
    worktree: Vec<Option<&'a str>>,
    metadata: Vec<Json<&'a serde_json::Value>>,
    compensations: Vec<Json<&'a Vec<Compensation>>>,
    notes: Vec<Json<&'a Vec<Note>>>,
    lease_owner: Vec<Option<&'a str>>,
    lease_token: Vec<i64>,
    lease_acquired_at: Vec<Option<i64>>,
    lease_expires_at: Vec<Option<i64>>,
    last_heartbeat_at: Vec<Option<i64>>,
    attempts: Vec<i64>,
    terminal_reason: Vec<Option<&'a str>>,
    version: Vec<i64>,
    updated_at: Vec<i64>,
}

impl<'a> TaskColumns<'a> {
    fn push(&mut self, p: TaskParams<'a>) {
        let t = p.task;
        self.saga_id.push(&t.saga_id);
        self.state.push(p.state);
        self.queue.push(&t.queue);
        self.priority.push(t.priority);
        self.issue.push(t.issue);
        self.branch.push(t.branch.as_deref());
        self.worktree.push(t.worktree.as_deref());
        self.metadata.push(p.metadata);
        self.compensations.push(p.compensations);
        self.notes.push(p.notes);
        self.lease_owner.push(t.lease_owner.as_deref());
        self.lease_token.push(p.lease_token);
        self.lease_acquired_at.push(p.lease_acquired_at);
        self.lease_expires_at.push(p.lease_expires_at);
        self.last_heartbeat_at.push(p.last_heartbeat_at);
        self.attempts.push(p.attempts);
        self.terminal_reason.push(t.terminal_reason.as_deref());
        self.version.push(p.version);
        self.updated_at.push(p.updated_at);
    }
}

/// Column arrays for [`Queries::write_batch`]: the transitions of many
/// tasks, written by one statement.
#[derive(Default)]
pub(crate) struct WriteBatch<'a> {
    seq: Vec<i64>,
    old_version: Vec<i64>,
    /// The rows' new column values.
    row: TaskColumns<'a>,
    h_task_id: Vec<&'a str>,
    h_kind: Vec<&'static str>,
    h_at: Vec<i64>,
    h_actor: Vec<&'a str>,
    h_from: Vec<Option<&'static str>>,
    h_to: Vec<&'static str>,
    h_token: Vec<i64>,
    h_detail: Vec<Option<&'a str>>,
    /// Per history entry: the first entry of a task created in the batch.
    h_new: Vec<bool>,
    /// Tasks to insert ([`Queries::write_group`]).
    new: NewRows<'a>,
    /// Typed NULLs for [`WriteBatch::params_one`] without a history entry.
    no_text: Option<&'a str>,
    no_int8: Option<i64>,
}

impl<'a> WriteBatch<'a> {
    /// Add the transition of the task stored at `seq`, read at `old_version`.
    pub(crate) fn add(
        &mut self,
        seq: i64,
        old_version: u64,
        tr: &'a Transition,
    ) -> Result<(), Error> {
        if tr.changed {
            self.add_row(seq, old_version, &tr.task)?;
        }
        if let Some(h) = &tr.history {
            self.add_history(h, false)?;
        }
        Ok(())
    }

    /// Add the new state of the task stored at `seq`, read at `old_version`
    /// (written only if the row is still at that version).
    pub(crate) fn add_row(&mut self, seq: i64, old_version: u64, t: &'a Task) -> Result<(), Error> {
        let old_version = to_bigint(&t.task_id, "version", old_version)?;
        self.row.push(TaskParams::new(t)?);
        self.seq.push(seq);
        self.old_version.push(old_version);
        Ok(())
    }

    /// Add a history entry. `new`: the first entry of a task inserted by
    /// the same statement ([`Queries::write_group`]), which goes in only
    /// if that task does.
    pub(crate) fn add_history(&mut self, h: &'a HistoryEntry, new: bool) -> Result<(), Error> {
        self.h_task_id.push(&h.task_id);
        self.h_kind.push(h.kind.as_str());
        self.h_at.push(h.at.as_micros());
        self.h_actor.push(&h.actor);
        self.h_from.push(h.from_state.map(TaskState::as_str));
        self.h_to.push(h.to_state.as_str());
        self.h_token
            .push(to_bigint(&h.task_id, "lease_token", h.lease_token)?);
        self.h_detail.push(h.detail.as_deref());
        self.h_new.push(new);
        Ok(())
    }

    /// Add a new task and its first history entry, to be inserted unless
    /// its task id or saga id is taken by then ([`Queries::write_group`]).
    pub(crate) fn add_new(&mut self, t: &'a Task, h: &'a HistoryEntry) -> Result<(), Error> {
        let p = TaskParams::new(t)?;
        self.new.created_at.push(p.created_at);
        self.new.task_id.push(&t.task_id);
        self.new.cols.push(p);
        self.add_history(h, true)
    }

    /// Tasks to insert.
    pub(crate) fn new_count(&self) -> usize {
        self.new.task_id.len()
    }

    /// Parameters of [`Queries::write_group`]: those of `write_batch`, the
    /// new tasks' columns, and which history entries belong to new tasks.
    pub(crate) fn params_group(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut v = self.params().to_vec();
        let n = &self.new;
        v.extend_from_slice(&[
            &n.task_id as &(dyn ToSql + Sync),
            &n.cols.saga_id,
            &n.cols.state,
            &n.cols.queue,
            &n.cols.priority,
            &n.cols.issue,
            &n.cols.branch,
            &n.cols.worktree,
            &n.cols.metadata,
            &n.cols.compensations,
            &n.cols.notes,
            &n.cols.lease_owner,
            &n.cols.lease_token,
            &n.cols.lease_acquired_at,
            &n.cols.lease_expires_at,
            &n.cols.last_heartbeat_at,
            &n.cols.attempts,
            &n.cols.terminal_reason,
            &n.cols.version,
            &n.created_at,
            &n.cols.updated_at,
            &self.h_new,
        ]);
        v
    }

    /// Rows to update and history entries to insert.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.seq.len(), self.h_task_id.len())
    }

    /// Parameters of [`Queries::write_one`]: the batch's only row (there
    /// must be exactly one) and its history entry, if any, as scalars.
    pub(crate) fn params_one(&self) -> [&(dyn ToSql + Sync); 29] {
        debug_assert!(self.seq.len() == 1 && self.h_task_id.len() <= 1);
        let h = !self.h_task_id.is_empty();
        [
            &self.seq[0],
            &self.old_version[0],
            &self.row.saga_id[0],
            &self.row.state[0],
            &self.row.queue[0],
            &self.row.priority[0],
            &self.row.issue[0],
            &self.row.branch[0],
            &self.row.worktree[0],
            &self.row.metadata[0],
            &self.row.compensations[0],
            &self.row.notes[0],
            &self.row.lease_owner[0],
            &self.row.lease_token[0],
            &self.row.lease_acquired_at[0],
            &self.row.lease_expires_at[0],
            &self.row.last_heartbeat_at[0],
            &self.row.attempts[0],
            &self.row.terminal_reason[0],
            &self.row.version[0],
            &self.row.updated_at[0],
            if h { &self.h_task_id[0] } else { &self.no_text },
            if h { &self.h_kind[0] } else { &self.no_text },
            if h { &self.h_at[0] } else { &self.no_int8 },
            if h { &self.h_actor[0] } else { &self.no_text },
            if h { &self.h_from[0] } else { &self.no_text },
            if h { &self.h_to[0] } else { &self.no_text },
            if h { &self.h_token[0] } else { &self.no_int8 },
            if h { &self.h_detail[0] } else { &self.no_text },
        ]
    }

    /// Parameters of [`Queries::write_batch`].
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 29] {
        [
            &self.seq,
            &self.old_version,
            &self.row.saga_id,
            &self.row.state,
            &self.row.queue,
            &self.row.priority,
            &self.row.issue,
            &self.row.branch,
            &self.row.worktree,
            &self.row.metadata,
            &self.row.compensations,
            &self.row.notes,
            &self.row.lease_owner,
            &self.row.lease_token,
            &self.row.lease_acquired_at,
            &self.row.lease_expires_at,
            &self.row.last_heartbeat_at,
            &self.row.attempts,
            &self.row.terminal_reason,
            &self.row.version,
            &self.row.updated_at,
            &self.h_task_id,
            &self.h_kind,
            &self.h_at,
            &self.h_actor,
            &self.h_from,
            &self.h_to,
            &self.h_token,
            &self.h_detail,
        ]
    }
}

/// Column arrays of the tasks a group-commit batch inserts.
#[derive(Default)]
struct NewRows<'a> {
    task_id: Vec<&'a str>,
    cols: TaskColumns<'a>,
    created_at: Vec<i64>,
}

/// The history columns of an inserted task's first entry, for `insert_task`.
pub(crate) struct FirstEntry<'a> {
    h: &'a HistoryEntry,
    kind: &'static str,
    at: i64,
    from_state: Option<&'static str>,
    to_state: &'static str,
    lease_token: i64,
}

impl<'a> FirstEntry<'a> {
    pub(crate) fn new(h: &'a HistoryEntry) -> Result<FirstEntry<'a>, Error> {
        Ok(FirstEntry {
            h,
            kind: h.kind.as_str(),
            at: h.at.as_micros(),
            from_state: h.from_state.map(TaskState::as_str),
            to_state: h.to_state.as_str(),
            lease_token: to_bigint(&h.task_id, "lease_token", h.lease_token)?,
        })
    }
}

/// Parameters of [`Queries::insert_task`].
pub(crate) fn insert_params<'a>(
    p: &'a TaskParams<'a>,
    h: &'a FirstEntry<'a>,
) -> Vec<&'a (dyn ToSql + Sync)> {
    let mut v: Vec<&(dyn ToSql + Sync)> = p.insert().to_vec();
    v.extend_from_slice(&[
        &h.kind as &(dyn ToSql + Sync),
        &h.at,
        &h.h.actor,
        &h.from_state,
        &h.to_state,
        &h.lease_token,
        &h.h.detail,
    ]);
    v
}

/// Decode a history row (from the `history` query; the caller skips the
/// all-null row of a task without history).
pub(crate) fn history_from_row(row: &Row) -> Result<HistoryEntry, Error> {
    let task_id: String = row.try_get(0).map_err(|e| corrupt("history task_id", e))?;
    let tid = task_id.as_str();
    let kind: String = get(row, 1, tid)?;
    let kind = HistoryKind::parse(&kind)
        .ok_or_else(|| corrupt(&format!("history of {tid:?}"), format!("kind {kind:?}")))?;
    let at: i64 = get(row, 2, tid)?;
    let from: Option<String> = get(row, 4, tid)?;
    let to: String = get(row, 5, tid)?;
    let token: i64 = get(row, 6, tid)?;
    Ok(HistoryEntry {
        kind,
        at: Timestamp::from_micros(at)
            .ok_or_else(|| corrupt(&format!("history of {tid:?}"), format!("at {at}")))?,
        actor: get(row, 3, tid)?,
        from_state: from
            .map(|s| s.parse::<TaskState>())
            .transpose()
            .map_err(|e| corrupt(tid, e))?,
        to_state: to.parse().map_err(|e: Error| corrupt(tid, e))?,
        lease_token: u64::try_from(token).map_err(|e| corrupt(tid, e))?,
        detail: get(row, 7, tid)?,
        task_id,
    })
}
