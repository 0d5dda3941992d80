//! # leasehold-sqlite
//!
//! The embedded default backend: [`SqliteStore`] implements
//! [`leasehold_core::Store`] on one SQLite file (bundled SQLite, WAL mode).
//!
//! ## Design
//!
//! **Rules live in the core.** Every write loads the task inside a
//! transaction, calls [`leasehold_core::machine`] and writes the resulting
//! [`leasehold_core::Transition`] back, with its history row in the same
//! transaction. This crate never re-implements a rule; it only makes the
//! read-decide-write step atomic and durable.
//!
//! **Single writer + `BEGIN IMMEDIATE`.** Each store handle has exactly one
//! writer connection behind a mutex, and every read-modify-write runs in a
//! `BEGIN IMMEDIATE` transaction. `IMMEDIATE` takes SQLite's write lock
//! *before* the task is read, so two handles (threads or processes) can never
//! both decide on the same snapshot: the second waits (up to `busy_timeout`)
//! and then reads the first one's result. A deferred transaction would instead
//! read first and fail on upgrade with `SQLITE_BUSY` that no busy handler can
//! resolve (its snapshot is stale), which is both slower and harder to reason
//! about. On top of that lock, the `UPDATE` is conditional (`WHERE seq = ? AND
//! version = ?`) and must change exactly one row, so even a broken lock could
//! not turn into last-writer-wins: it would surface as an `internal` error.
//! Within one process, writers queue in memory instead of spinning on the
//! file lock.
//!
//! **Group commit.** Concurrent writes on one handle share transactions:
//! one caller (the leader) runs every queued operation in one `BEGIN
//! IMMEDIATE` transaction, each inside its own `SAVEPOINT`, commits once and
//! only then answers each caller with its own result. A rejected operation
//! rolls back to its savepoint and does not affect the others; a failed
//! commit fails them all (none was written). With `synchronous=FULL` the
//! fsync is shared by the whole batch, so the durability guarantee stays
//! while its cost is divided (see the `group` module). Batch calls
//! ([`Store::apply_many`], `heartbeat_many`, `complete_many`) enter the queue
//! as one operation per item.
//! Across handles and processes, waiters poll the lock with a short jittered
//! busy handler instead of SQLite's default 100 ms backoff, which let waiters
//! starve past the timeout under contention (see the `busy` module).
//!
//! **Reads never wait for writers.** WAL lets readers see the last committed
//! snapshot while a writer is active, so reads (`get`, `list`, `counts`,
//! `history`, `list_stale`, …) use a small pool of separate read-only
//! connections, each read in its own snapshot transaction.
//!
//! **Schema.** Timestamps are INTEGER microseconds UTC (compared as numbers,
//! never as text); `metadata`, `compensations` and `notes` are JSON TEXT. Each
//! task row has an INTEGER creation sequence `seq` (the rowid, AUTOINCREMENT
//! so it is never reused) that gives creation order, list cursors
//! ([`leasehold_core::store::encode_cursor`]) and the claim tie-break. The
//! schema is versioned in `leasehold_schema` and built by ordered migrations
//! ([`migrations`]), applied in one transaction; opening is idempotent, and a
//! database newer than this code is refused with `invalid_input`.
//! New files get [`PAGE_BYTES`] (2 KiB) pages: every commit copies each page
//! it dirtied into the WAL, and a write dirties a few rows in many b-trees,
//! so smaller pages mean fewer bytes per commit (measured in
//! `docs/benchmarks.md`).
//!
//! **Indexes.** The hot paths are O(log n + k):
//! - `tasks_claim (queue, priority DESC, seq) WHERE state IN ('planned',
//!   'dispatched')`: the unleased claimable tasks, already in claim order per
//!   queue. `claim` reads at most `limit` of them per queue.
//! - `tasks_stale (lease_expires_at) WHERE state = 'running'`: leased tasks by
//!   expiry. Non-terminal tasks with a lease are exactly the running ones (an
//!   invariant checked on every row read), so `list_stale`, `reclaim` (oldest
//!   expiry first, at most [`leasehold_core::limits::RECLAIM_BATCH_MAX`]) and
//!   the expired half of `claim` are range scans of this index. `claim` merges
//!   the best `limit` unleased candidates with the best `limit` expired ones
//!   of the same queues, then leases the best `limit` of the union. (The
//!   expired half sorts the expired rows of those queues by priority; that is
//!   O(k log k) in the number of stale tasks, which the reaper keeps small.)
//! - `task_id` and `saga_id` are UNIQUE (their automatic indexes serve `get`
//!   and the uniqueness checks).
//! - `task_counts (state, queue) → n` (migration 2), maintained by triggers
//!   in the same transaction as every write: `counts()` reads states × queues
//!   rows, independent of the number of tasks.
//! - `tasks_state (state)`, `tasks_queue (queue)`, `tasks_owner
//!   (lease_owner)` and `tasks_stale`: the filters of `list`, each already in
//!   creation order within one value, so a page reads about `limit` rows per
//!   state asked for (see `queries::list_query`).
//! - `history_task (task_seq, id)`: one task's history in order.
//!
//! A unit test (`queries::tests`) asserts with `EXPLAIN QUERY PLAN` that these
//! queries use the indexes and never `SCAN tasks`.
//!
//! **Checkpoints off the commit path.** SQLite's default runs a WAL
//! checkpoint inside the commit that pushes the log past 1000 pages, while
//! the group-commit leader holds the writer and its batch waits: with
//! `synchronous=FULL` two more fsyncs and a page copy per checkpoint, and an
//! fsync on a busy disk can take hundreds of milliseconds. The writer runs
//! with `wal_autocheckpoint = 0` instead, and each store handle has a small
//! background checkpointer (PASSIVE checkpoints on its own connection, once
//! [`CHECKPOINT_MIN_COMMITS`] batches have committed since the last one or
//! the store has been idle for [`CHECKPOINT_INTERVAL`], a short catch-up
//! under the writer mutex when the log passes [`WAL_RESTART_FRAMES`] so it
//! starts over; see the `checkpoint` module). [`SqliteStore::group_stats`]
//! and [`SqliteStore::checkpoint_stats`] count batches, slow batches and
//! checkpoints; `LEASEHOLD_SQLITE_TRACE_MS=N` prints every batch or
//! checkpoint of N ms or more to stderr.
//!
//! **Reclaim in bounded chunks.** `reclaim` takes at most
//! [`RECLAIM_TRANSACTION_MAX`] stale tasks per transaction, so a burst of
//! expired leases does not hold the writer (and every heartbeat behind it)
//! for seconds.
//!
//! **Durability.** [`Durability::Full`] (the default) sets
//! `synchronous=FULL`: in WAL mode every commit is fsynced before it returns,
//! so an acknowledged operation survives a process kill *and* a power loss
//! (SPEC guarantee 6). [`Durability::Normal`] (`synchronous=NORMAL`) fsyncs
//! only at checkpoints: still safe against a process kill (the WAL is in the
//! OS page cache) and never corrupts the file, but the last commits may be
//! lost on power loss. Use it only for bulk loads or throwaway data.
//!
//! **Errors.** `SQLITE_BUSY`/`SQLITE_LOCKED` after `busy_timeout`, and
//! `SQLITE_IOERR`/`SQLITE_FULL`, → `unavailable` (retryable, nothing
//! changed: the operation rolled back); UNIQUE violations on
//! `task_id`/`saga_id` → `already_exists` naming the id; corrupt rows (bad
//! enum text, bad JSON, broken invariants) and other SQLite failures →
//! `internal`. Fencing tokens and versions are `u64` in the model but SQLite
//! integers are `i64`: a value above `i64::MAX` is refused with
//! `invalid_input` rather than wrapped.
//!
//! **Failpoints.** With the `failpoints` feature (tests only), the write path
//! can be made to fail at any statement, between a task row and its history
//! entry, and before or after COMMIT (see the `failpoints` module).

mod busy;
mod checkpoint;
mod errors;
mod failpoints;
mod group;
pub mod migrations;
mod queries;
mod row;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use leasehold_core::limits::RECLAIM_BATCH_MAX;
use leasehold_core::machine::{self, Command, Context, Transition};
use leasehold_core::memory::check_max_attempts;
use leasehold_core::store::{
    check_batch_len, decode_cursor, empty_counts, encode_cursor, list_limit, BatchItem,
    ClaimRequest, Counts, ListFilter, Page, QueueCounts, Store,
};
use leasehold_core::{Error, HistoryEntry, NewTask, Result, Task, TaskState, Timestamp};
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, OptionalExtension, Transaction, TransactionBehavior};

pub use crate::checkpoint::{
    CheckpointStats, CHECKPOINT_INTERVAL, CHECKPOINT_MIN_COMMITS, WAL_RESTART_FRAMES,
    WAL_SIZE_LIMIT_BYTES,
};
use crate::errors::{map, sql, write_task};
pub use crate::group::{GroupStats, GROUP_COMMIT_BATCH_MAX, SLOW_BATCH};
use crate::queries as q;
use crate::row::{history_values, task_values, RawHistory, RawTask};

/// How hard a commit works to survive a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: every commit is fsynced before it is acknowledged.
    /// Survives process kills and power loss. The default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: the WAL is fsynced only at checkpoints. Survives
    /// process kills; the last commits may be lost on power loss. Faster.
    Normal,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// Options for [`SqliteStore::open_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Commit durability; [`Durability::Full`] by default.
    pub durability: Durability,
    /// How long a write waits for another connection's write lock before
    /// failing with `unavailable`. Default [`BUSY_TIMEOUT_DEFAULT`].
    pub busy_timeout: Duration,
}

/// Default [`SqliteOptions::busy_timeout`]: 10 s. Write transactions are a few
/// milliseconds, so only a stuck or enormous writer makes callers wait this long.
pub const BUSY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Most stale tasks one reclaim transaction takes (a `reclaim` call runs as
/// many as it needs, up to [`RECLAIM_BATCH_MAX`] tasks): bounds how long a
/// reclaim holds the writer, so heartbeats are not starved by a burst of
/// expired leases.
pub const RECLAIM_TRANSACTION_MAX: usize = 100;

/// Page size of databases this crate creates, in bytes (existing files keep theirs).
pub const PAGE_BYTES: u32 = 2048;

/// Most idle read connections a store keeps for reuse. Each one costs
/// SQLite's page cache (at most 2 MiB) only once it has read that much.
pub const READ_CONNECTIONS_IDLE_MAX: usize = 8;

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::Full,
            busy_timeout: BUSY_TIMEOUT_DEFAULT,
        }
    }
}

/// A Leasehold store in one SQLite file. `Send + Sync`: share it with `Arc`.
///
/// Several handles (in one process or many) may open the same file; SQLite's
/// write lock, taken by `BEGIN IMMEDIATE`, serialises their writes.
pub struct SqliteStore {
    path: PathBuf,
    opts: SqliteOptions,
    writer: Arc<Mutex<Connection>>,
    readers: Mutex<Vec<Connection>>,
    group: group::Group,
    group_stats: Mutex<GroupStats>,
    checkpointer: checkpoint::Checkpointer,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the writer cannot leave a half-applied change: the
    // open transaction rolls back when it is dropped during unwinding.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn connect(path: &Path, opts: &SqliteOptions, reader: bool) -> Result<Connection> {
    let open_err = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::CannotOpen) | Some(rusqlite::ErrorCode::NotADatabase) => {
            Error::InvalidInput(format!(
                "cannot open a leasehold database at {}: {e}",
                path.display()
            ))
        }
        _ => map(e, &format!("open {}", path.display())),
    };
    let conn = Connection::open(path).map_err(open_err)?;
    // Our own busy handler instead of `busy_timeout`: same timeout, but waiters
    // poll often enough not to starve (see the `busy` module).
    busy::set_timeout(opts.busy_timeout);
    conn.busy_handler(Some(busy::handler))
        .map_err(sql("install the busy handler"))?;
    if !reader {
        // 2 KiB pages for new files (a no-op on an existing one): every
        // commit writes each page it dirtied to the WAL, and a cycle dirties
        // a few rows in many b-trees (row, 5 indexes, history, counts), so
        // half-size pages halve the bytes written per commit. Measured with
        // `leasehold bench cycle --workers 32`: +25% over 4 KiB pages
        // (see docs/benchmarks.md).
        conn.execute_batch(&format!("PRAGMA page_size = {PAGE_BYTES};"))
            .map_err(sql("set the page size"))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::InvalidInput(format!(
                "cannot use {} as a leasehold database: WAL journal mode is required, got {mode:?} (in-memory databases are not supported)",
                path.display()
            )));
        }
        // No checkpoint inside a commit: the store's background checkpointer
        // copies the log into the database file without holding the writer
        // (see the `checkpoint` module). A log file that grew in a burst is
        // cut back to the limit when the log starts over.
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES};"
        ))
        .map_err(sql("configure checkpoints"))?;
    }
    conn.execute_batch(&format!(
        // temp_store = MEMORY: group commit gives every operation a
        // savepoint, whose statement journal would otherwise be a temp file
        // written with a syscall per page.
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;{}",
        opts.durability.pragma(),
        if reader {
            " PRAGMA query_only = ON;"
        } else {
            ""
        }
    ))
    .map_err(sql("configure the connection"))?;
    Ok(conn)
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` with default options:
    /// WAL, `synchronous=FULL`, migrations applied.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        SqliteStore::open_with(path, SqliteOptions::default())
    }

    /// Open (creating if needed) the database at `path` with `opts`.
    /// Refuses a database whose schema is newer than this code (`invalid_input`).
    pub fn open_with(path: impl AsRef<Path>, opts: SqliteOptions) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let mut writer = connect(&path, &opts, false)?;
        migrations::migrate(&mut writer, &path)?;
        let reader = connect(&path, &opts, true)?;
        let writer = Arc::new(Mutex::new(writer));
        let checkpointer =
            checkpoint::Checkpointer::start(connect(&path, &opts, false)?, writer.clone())?;
        Ok(SqliteStore {
            path,
            opts,
            writer,
            readers: Mutex::new(vec![reader]),
            group: group::Group::default(),
            group_stats: Mutex::new(GroupStats::default()),
            checkpointer,
        })
    }

    /// The database file's path, as given to `open`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &SqliteOptions {
        &self.opts
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u32> {
        self.read(|tx| migrations::current_version(tx))
    }

    /// Run `PRAGMA integrity_check`; `"ok"` when the file is sound, otherwise
    /// SQLite's list of problems, one per line.
    pub fn integrity_check(&self) -> Result<String> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare("PRAGMA integrity_check")
                .map_err(sql("run integrity_check"))?;
            let lines = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(sql("run integrity_check"))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql("run integrity_check"))?;
            Ok(lines.join("\n"))
        })
    }

    /// Run `f` in a read snapshot on a pooled read connection.
    fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let pooled = lock(&self.readers).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => connect(&self.path, &self.opts, true)?,
        };
        busy::set_timeout(self.opts.busy_timeout);
        let out = (|| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Deferred)
                .map_err(sql("begin a read transaction"))?;
            f(&tx)
            // Dropping `tx` rolls back: a read transaction has nothing to keep.
        })();
        let mut pool = lock(&self.readers);
        if pool.len() < READ_CONNECTIONS_IDLE_MAX {
            pool.push(conn);
        }
        out
    }

    /// How much group commit has batched on this handle so far.
    pub fn group_stats(&self) -> GroupStats {
        *lock(&self.group_stats)
    }

    /// What this handle's background checkpointer has done so far.
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        self.checkpointer.stats()
    }

    /// Run `f` as one operation of a group-commit transaction (`BEGIN
    /// IMMEDIATE` on the writer connection, its own savepoint) and return its
    /// answer once the transaction has committed. On error nothing of `f` is
    /// written; other operations of the batch are unaffected (see [`group`]).
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write_many(vec![f]).pop().unwrap_or_else(|| {
            Err(Error::Internal(
                "group commit returned no answer for a write".into(),
            ))
        })
    }

    /// Run each of `fs` as its own operation (own savepoint, own answer) in
    /// group-commit transactions; answers in order.
    fn write_many<T: Send + 'static, F>(&self, fs: Vec<F>) -> Vec<Result<T>>
    where
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let ops: Vec<group::Op> = fs
            .into_iter()
            .map(|f| -> group::Op {
                Box::new(move |tx| {
                    let _w = failpoints::WriteScope::enter();
                    f(tx).map(|t| Box::new(t) as group::Output)
                })
            })
            .collect();
        self.group
            .submit(
                &self.writer,
                &self.group_stats,
                self.opts.busy_timeout,
                ops,
                &|| self.checkpointer.committed(),
            )
            .into_iter()
            .map(|out| {
                out?.downcast::<T>().map(|b| *b).map_err(|_| {
                    Error::Internal("group commit returned an answer of the wrong type".into())
                })
            })
            .collect()
    }
}

/// Load one task by id inside `tx`: `(seq, task)`.
fn load(tx: &Connection, task_id: &str) -> Result<Option<(u64, Task)>> {
    let raw = failpoints::statement()
        .and_then(|()| tx.prepare_cached(q::GET_BY_ID))
        .and_then(|mut s| s.query_row([task_id], RawTask::read).optional())
        .map_err(|e| map(e, &format!("load task {task_id:?}")))?;
    raw.map(RawTask::decode).transpose()
}

/// Load one task by sequence number inside `tx`.
fn load_seq(tx: &Connection, seq: u64) -> Result<(u64, Task)> {
    let raw = failpoints::statement()
        .and_then(|()| tx.prepare_cached(q::GET_BY_SEQ))
        .and_then(|mut s| s.query_row([seq as i64], RawTask::read).optional())
        .map_err(|e| map(e, &format!("load task #{seq}")))?
        .ok_or_else(|| {
            Error::Internal(format!("task #{seq} vanished inside a write transaction"))
        })?;
    raw.decode()
}

/// Run a query returning task rows and decode them all.
fn query_tasks(conn: &Connection, sql_text: &str, params: &[Value]) -> Result<Vec<(u64, Task)>> {
    let mut stmt = conn
        .prepare_cached(sql_text)
        .map_err(sql("prepare a task query"))?;
    let raws = stmt
        .query_map(params_from_iter(params.iter()), RawTask::read)
        .map_err(sql("query tasks"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql("read task rows"))?;
    raws.into_iter().map(RawTask::decode).collect()
}

fn insert_history(tx: &Connection, seq: u64, h: &HistoryEntry) -> Result<()> {
    let mut values = vec![Value::Integer(seq as i64)];
    values.extend(history_values(h)?);
    failpoints::statement()
        .and_then(|()| tx.prepare_cached(q::INSERT_HISTORY))
        .and_then(|mut s| s.execute(params_from_iter(values.iter())))
        .map_err(|e| map(e, &format!("append history of task {:?}", h.task_id)))?;
    Ok(())
}

/// Insert a new task row and its history entry; returns the stored task.
fn insert(tx: &Connection, t: Transition) -> Result<Task> {
    let values = task_values(&t.task)?;
    failpoints::statement()
        .and_then(|()| tx.prepare_cached(q::INSERT_TASK))
        .and_then(|mut s| s.execute(params_from_iter(values.iter())))
        .map_err(|e| write_task(e, &t.task.task_id, &t.task.saga_id))?;
    let seq = u64::try_from(tx.last_insert_rowid())
        .map_err(|_| Error::Internal("sqlite returned a negative rowid".into()))?;
    if let Some(h) = &t.history {
        failpoints::point("sqlite::between_task_and_history")
            .map_err(sql("append the history of a new task"))?;
        insert_history(tx, seq, h)?;
    }
    Ok(t.task)
}

/// Persist a transition of the task stored as `seq` at `old_version`: a
/// conditional update (skipped when nothing changed) plus its history entry.
fn commit(tx: &Connection, seq: u64, old: &Task, t: Transition) -> Result<Task> {
    let old_version = old.version;
    if t.changed {
        debug_assert_eq!(t.task.version, old_version + 1, "versions advance by one");
        let mut values = task_values(&t.task)?;
        values.push(Value::Integer(seq as i64));
        values.push(Value::Integer(i64::try_from(old_version).map_err(
            |_| Error::Internal(format!("version {old_version} out of range")),
        )?));
        // Lease and state transitions leave the identity and description
        // columns alone; not naming them in SET spares SQLite the upkeep of
        // the indexes on them (task_id, saga_id, queue) on every heartbeat.
        let n = &t.task;
        let same_identity = n.task_id == old.task_id
            && n.saga_id == old.saga_id
            && n.queue == old.queue
            && n.priority == old.priority
            && n.issue == old.issue
            && n.branch == old.branch
            && n.worktree == old.worktree
            && n.metadata == old.metadata
            && n.created_at == old.created_at;
        let sql_text = if same_identity {
            q::UPDATE_TASK_LEASE
        } else {
            q::UPDATE_TASK
        };
        let rows = failpoints::statement()
            .and_then(|()| tx.prepare_cached(sql_text))
            .and_then(|mut s| s.execute(params_from_iter(values.iter())))
            .map_err(|e| write_task(e, &t.task.task_id, &t.task.saga_id))?;
        if rows != 1 {
            // Impossible while we hold the write lock; refuse rather than
            // overwrite whatever changed the row.
            return Err(Error::Internal(format!(
                "task {:?} changed under the write lock (expected version {old_version}); nothing was written",
                t.task.task_id
            )));
        }
        if t.history.is_some() {
            failpoints::point("sqlite::between_task_and_history")
                .map_err(sql("append the history of an updated task"))?;
        }
    }
    if let Some(h) = &t.history {
        insert_history(tx, seq, h)?;
    }
    Ok(t.task)
}

/// Apply `cmd` to the task `task_id` inside `tx`; `not_found` if it does not exist.
fn apply_id(tx: &Connection, task_id: &str, cmd: &Command, ctx: &Context) -> Result<Task> {
    let (seq, task) = load(tx, task_id)?.ok_or_else(|| Error::task_not_found(task_id))?;
    let t = machine::apply(&task, cmd, ctx)?;
    commit(tx, seq, &task, t)
}

/// Apply `cmd` to the task stored as `seq` inside `tx`.
fn apply_seq(tx: &Connection, seq: u64, cmd: &Command, ctx: &Context) -> Result<Task> {
    let (seq, task) = load_seq(tx, seq)?;
    let t = machine::apply(&task, cmd, ctx)?;
    commit(tx, seq, &task, t)
}

fn stale_seqs(tx: &Connection, now: Timestamp, limit: i64) -> Result<Vec<u64>> {
    let mut stmt = failpoints::statement()
        .and_then(|()| tx.prepare_cached(q::STALE_SEQS))
        .map_err(sql("query stale tasks"))?;
    let seqs = stmt
        .query_map(rusqlite::params![now.as_micros(), limit], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(sql("query stale tasks"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql("query stale tasks"))?;
    Ok(seqs.into_iter().map(|s| s as u64).collect())
}

fn candidates(tx: &Connection, sql_text: &str, params: &[Value]) -> Result<Vec<(i32, u64)>> {
    let mut stmt = failpoints::statement()
        .and_then(|()| tx.prepare_cached(sql_text))
        .map_err(sql("query claim candidates"))?;
    let rows = stmt
        .query_map(params_from_iter(params.iter()), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(sql("query claim candidates"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql("query claim candidates"))?;
    rows.into_iter()
        .map(|(p, s)| {
            let p = i32::try_from(p)
                .map_err(|_| Error::Internal(format!("task #{s} has priority {p} outside i32")))?;
            Ok((p, s as u64))
        })
        .collect()
}

fn saga_owner(tx: &Connection, saga_id: &str) -> Result<Option<String>> {
    failpoints::statement()
        .and_then(|()| tx.prepare_cached(q::TASK_BY_SAGA))
        .and_then(|mut s| s.query_row([saga_id], |r| r.get::<_, String>(0)).optional())
        .map_err(|e| map(e, &format!("look up saga {saga_id:?}")))
}

impl Store for SqliteStore {
    fn create(&self, new: NewTask, ctx: &Context) -> Result<Task> {
        let t = machine::create(new, ctx)?;
        self.write(move |tx| {
            if load(tx, &t.task.task_id)?.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "task {:?} already exists",
                    t.task.task_id
                )));
            }
            if let Some(other) = saga_owner(tx, &t.task.saga_id)? {
                return Err(Error::AlreadyExists(format!(
                    "saga {:?} is already used by task {other:?}",
                    t.task.saga_id
                )));
            }
            insert(tx, t)
        })
    }

    fn put(&self, task: Task, expected_version: Option<u64>, ctx: &Context) -> Result<Task> {
        let ctx = ctx.clone();
        self.write(move |tx| {
            let stored = load(tx, &task.task_id)?;
            let t = machine::put(
                stored.as_ref().map(|(_, t)| t),
                task,
                expected_version,
                &ctx,
            )?;
            if let Some(other) = saga_owner(tx, &t.task.saga_id)? {
                if other != t.task.task_id {
                    return Err(Error::AlreadyExists(format!(
                        "saga {:?} is already used by task {other:?}",
                        t.task.saga_id
                    )));
                }
            }
            match stored {
                Some((seq, old)) => commit(tx, seq, &old, t),
                None => insert(tx, t),
            }
        })
    }

    fn apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task> {
        let (task_id, ctx) = (task_id.to_string(), ctx.clone());
        self.write(move |tx| apply_id(tx, &task_id, &cmd, &ctx))
    }

    /// Every item is its own operation of the group commit: its own
    /// savepoint and answer, so a rejected item does not affect the others,
    /// while the whole batch usually shares one transaction and one fsync.
    fn apply_many(&self, items: Vec<BatchItem>, ctx: &Context) -> Result<Vec<Result<Task>>> {
        check_batch_len(items.len())?;
        let fs: Vec<_> = items
            .into_iter()
            .map(|item| {
                let ctx = ctx.clone();
                move |tx: &Connection| apply_id(tx, &item.task_id, &item.command, &ctx)
            })
            .collect();
        Ok(self.write_many(fs))
    }

    fn claim(&self, req: &ClaimRequest, ctx: &Context) -> Result<Vec<Task>> {
        let (queues, expires_at) = req.check(ctx.at)?;
        let limit = i64::from(req.limit);
        let (owner, ctx, n) = (req.owner.clone(), ctx.clone(), req.limit as usize);
        let expired_sql = q::claim_expired(queues.len(), req.max_attempts);
        self.write(move |tx| {
            let mut best: Vec<(i32, u64)> = Vec::new();
            for q in &queues {
                best.extend(candidates(
                    tx,
                    q::CLAIM_UNLEASED,
                    &[Value::Text(q.clone()), Value::Integer(limit)],
                )?);
            }
            let mut params = vec![Value::Integer(ctx.at.as_micros()), Value::Integer(limit)];
            params.extend(queues.iter().map(|q| Value::Text(q.clone())));
            best.extend(candidates(tx, &expired_sql, &params)?);
            best.sort_by_key(|(p, s)| (std::cmp::Reverse(*p), *s));
            best.truncate(n);
            let cmd = Command::Acquire { owner, expires_at };
            best.into_iter()
                .map(|(_, seq)| apply_seq(tx, seq, &cmd, &ctx))
                .collect()
        })
    }

    /// Reclaims in chunks of at most [`RECLAIM_TRANSACTION_MAX`] tasks, each
    /// chunk its own group-commit operation, so that a burst of stale leases
    /// never holds the writer for long: heartbeats queued meanwhile commit
    /// between two chunks instead of waiting for the whole reclaim (and
    /// expiring in turn). Each task's reclaim is atomic, as before; the call
    /// as a whole is not. If a chunk after the first fails, the call answers
    /// what the earlier chunks reclaimed (committed) and the next pass picks
    /// up the rest; only a failure of the first chunk is the call's error, so
    /// an error still means nothing changed.
    fn reclaim(&self, max_attempts: u32, ctx: &Context) -> Result<Vec<Task>> {
        check_max_attempts(max_attempts)?;
        let max = RECLAIM_BATCH_MAX as usize;
        let mut all: Vec<Task> = Vec::new();
        loop {
            let n = (max - all.len()).min(RECLAIM_TRANSACTION_MAX);
            let ctx = ctx.clone();
            let chunk = self.write(move |tx| {
                let seqs = stale_seqs(tx, ctx.at, n as i64)?;
                let cmd = Command::Reclaim { max_attempts };
                seqs.into_iter()
                    .map(|seq| apply_seq(tx, seq, &cmd, &ctx))
                    .collect::<Result<Vec<Task>>>()
            });
            match chunk {
                Ok(tasks) => {
                    let last = tasks.len() < n;
                    all.extend(tasks);
                    if last || all.len() >= max {
                        return Ok(all);
                    }
                }
                Err(e) if all.is_empty() => return Err(e),
                Err(_) => return Ok(all),
            }
        }
    }

    fn get(&self, task_id: &str) -> Result<Option<Task>> {
        self.read(|tx| Ok(load(tx, task_id)?.map(|(_, t)| t)))
    }

    fn list(&self, filter: &ListFilter, cursor: Option<&str>, limit: Option<u32>) -> Result<Page> {
        let limit = list_limit(limit)? as usize;
        let after = decode_cursor(cursor)?;
        let Ok(after) = i64::try_from(after) else {
            // No row has a seq beyond i64::MAX: the page after it is empty.
            return Ok(Page {
                tasks: Vec::new(),
                next_cursor: None,
            });
        };
        let (sql_text, params) = q::list_query(filter, after, limit as i64 + 1);
        let mut rows = self.read(|tx| query_tasks(tx, &sql_text, &params))?;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|(s, _)| encode_cursor(*s))
        } else {
            None
        };
        Ok(Page {
            tasks: rows.into_iter().map(|(_, t)| t).collect(),
            next_cursor,
        })
    }

    fn list_in_flight(&self) -> Result<Vec<Task>> {
        let rows = self.read(|tx| query_tasks(tx, q::LIST_IN_FLIGHT, &[]))?;
        Ok(rows.into_iter().map(|(_, t)| t).collect())
    }

    fn list_stale(&self, now: Timestamp) -> Result<Vec<Task>> {
        let rows =
            self.read(|tx| query_tasks(tx, q::LIST_STALE, &[Value::Integer(now.as_micros())]))?;
        Ok(rows.into_iter().map(|(_, t)| t).collect())
    }

    fn counts(&self) -> Result<Counts> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(q::COUNTS).map_err(sql("count tasks"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(sql("count tasks"))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql("count tasks"))?;
            let mut c = empty_counts();
            for (state, n) in rows {
                let st: TaskState = state.parse().map_err(|_| {
                    Error::Internal(format!("{n} stored tasks have the unknown state {state:?}"))
                })?;
                c.insert(st, n as u64);
            }
            Ok(c)
        })
    }

    fn queue_counts(&self) -> Result<QueueCounts> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare_cached(q::QUEUE_COUNTS)
                .map_err(sql("count tasks per queue"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(sql("count tasks per queue"))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql("count tasks per queue"))?;
            let mut c = QueueCounts::new();
            for (queue, state, n) in rows {
                let st: TaskState = state.parse().map_err(|_| {
                    Error::Internal(format!(
                        "{n} stored tasks of queue {queue:?} have the unknown state {state:?}"
                    ))
                })?;
                c.insert((queue, st), n as u64);
            }
            Ok(c)
        })
    }

    fn history(&self, task_id: &str) -> Result<Vec<HistoryEntry>> {
        self.read(|tx| {
            let seq: i64 = tx
                .prepare_cached(q::SEQ_BY_ID)
                .and_then(|mut s| s.query_row([task_id], |r| r.get(0)).optional())
                .map_err(|e| map(e, &format!("look up task {task_id:?}")))?
                .ok_or_else(|| Error::task_not_found(task_id))?;
            let mut stmt = tx
                .prepare_cached(q::HISTORY)
                .map_err(sql("query history"))?;
            let raws = stmt
                .query_map([seq], RawHistory::read)
                .map_err(|e| map(e, &format!("read the history of task {task_id:?}")))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| map(e, &format!("read the history of task {task_id:?}")))?;
            raws.into_iter().map(RawHistory::decode).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma(store: &SqliteStore, name: &str) -> String {
        let conn = store.writer.lock().unwrap();
        conn.query_row(&format!("PRAGMA {name}"), [], |r| {
            r.get::<_, rusqlite::types::Value>(0)
        })
        .map(|v| format!("{v:?}"))
        .unwrap()
    }

    #[test]
    fn durability_sets_synchronous_full_by_default_and_normal_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let full = SqliteStore::open(dir.path().join("full.db")).unwrap();
        assert_eq!(full.options().durability, Durability::Full);
        assert_eq!(pragma(&full, "synchronous"), "Integer(2)", "FULL");
        assert_eq!(pragma(&full, "journal_mode"), "Text(\"wal\")");
        assert_eq!(pragma(&full, "page_size"), format!("Integer({PAGE_BYTES})"));
        let opts = SqliteOptions {
            durability: Durability::Normal,
            ..SqliteOptions::default()
        };
        let normal = SqliteStore::open_with(dir.path().join("normal.db"), opts).unwrap();
        assert_eq!(pragma(&normal, "synchronous"), "Integer(1)", "NORMAL");
        // Readers get the same setting (synchronous is per connection).
        let reader = normal.readers.lock().unwrap().pop().unwrap();
        let s: i64 = reader
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(s, 1);
        let q: i64 = reader
            .query_row("PRAGMA query_only", [], |r| r.get(0))
            .unwrap();
        assert_eq!(q, 1, "read connections cannot write");
    }

    /// Commits never checkpoint (the background checkpointer does), and a
    /// log file that grew in a burst is cut back when the log starts over.
    #[test]
    fn the_writer_leaves_checkpoints_to_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("c.db")).unwrap();
        assert_eq!(pragma(&store, "wal_autocheckpoint"), "Integer(0)");
        assert_eq!(
            pragma(&store, "journal_size_limit"),
            format!("Integer({WAL_SIZE_LIMIT_BYTES})")
        );
        assert_eq!(store.checkpoint_stats(), CheckpointStats::default());
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SqliteStore>();
    }
}
