//! # leasehold-postgres
//!
//! Leasehold's PostgreSQL backend: all atomicity in the database, for fleets
//! that outgrow one machine. Any number of Leasehold processes (servers, CLIs,
//! libraries) may share one database; they coordinate only through it.
//!
//! ## Design
//!
//! The rules live in [`leasehold_core::machine`]; this crate only makes each
//! read-decide-write step atomic, in one short transaction per operation:
//!
//! 1. load the task with `SELECT … FOR UPDATE` (its row is now ours until
//!    commit; a concurrent writer of the same task waits, then reads the
//!    committed result),
//! 2. call the pure state machine,
//! 3. write the new task with `UPDATE … WHERE seq = $ AND version = $` (a
//!    conditional write: a row that changed anyway makes the whole operation
//!    run again) and its history entry in the same transaction.
//!
//! `BEGIN` is sent together with step 1 and `COMMIT` together with step 3
//! (pipelined on the connection: two round trips per operation), so the
//! write statement is all-or-nothing by itself: a history entry is inserted
//! only `FROM` the update's result, and the several-row form fails as a whole
//! (SQLSTATE 21000, then the operation runs again) unless every row matched.
//!
//! Under concurrency, operations are **group-committed** (see `group.rs`):
//! a leader runs every queued `create`, `apply` and `claim` as one such
//! transaction — one `SELECT … FOR UPDATE` loading every named task, the
//! claims' candidate walks, the machine deciding each operation in queue
//! order in Rust, one write statement with `COMMIT` — and answers each
//! caller after the commit. Each operation still succeeds or fails on its
//! own; a batch of one is exactly the single-operation path above.
//!
//! `claim` and `reclaim` select their candidates with
//! `FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait on each other
//! and never take the same task; every candidate still goes through the state
//! machine. Fencing tokens come from the locked row (`max + 1`), so they never
//! repeat or go backwards, also across processes; a trigger in the database
//! refuses any update that would move a token backwards or take a task out of
//! a terminal state, whoever issues it. Timestamps are BIGINT microseconds
//! (UTC) and every expiry comparison happens in SQL against the caller's
//! `Context.at`. See [`schema`] for the tables and migrations.
//!
//! ## Behaviour
//!
//! [`PgStore`] mirrors [`leasehold_core::memory::MemoryStore`] exactly:
//! orders, errors, and which error wins (the conformance and model tests
//! compare the two step by step). Driver failures are normalised (see
//! `error.rs`): connection failures, shutdowns and overload are `unavailable`;
//! serialization failures and deadlocks are retried inside the backend (a
//! few times, with backoff) and then reported as `unavailable`; unique
//! violations are `already_exists` naming the id; everything else `internal`.
//!
//! ## Connection pool
//!
//! A small pool of our own (`pool.rs`) rather than r2d2: r2d2 answers a call
//! made during an outage only after its whole checkout timeout, while its
//! background threads retry, and it cannot carry a per-connection cache of
//! prepared statements. Ours opens connections in the caller's thread (a
//! refused connection fails the call at once with `unavailable`), drops a
//! connection whose socket broke together with every idle one (a server
//! restart kills them all), and runs an operation whose connection broke
//! before the commit once more on a fresh connection, so the first call after
//! a restart succeeds without recreating the store. A commit whose connection
//! broke in flight is reported as `unavailable` saying the outcome is unknown.
//!
//! Main types: [`PgStore`], [`PgOptions`], [`PoolStats`], [`GroupStats`].

pub mod schema;

mod error;
mod failpoints;
mod group;
mod pool;
mod rows;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use leasehold_core::machine::{self, Command, Context, Transition};
use leasehold_core::memory::check_max_attempts;
use leasehold_core::store::{
    check_batch_len, decode_cursor, empty_counts, encode_cursor, list_limit, BatchItem, QueueCounts,
};
use leasehold_core::{
    ClaimRequest, Counts, Error, ErrorCode, HistoryEntry, ListFilter, NewTask, Page, Result, Store,
    Task, TaskState, Timestamp,
};
use postgres::error::SqlState;

pub use group::{GroupStats, GROUP_COMMIT_BATCH_MAX};
pub use pool::PoolStats;
use pool::{Committed, Fail, Pool, PoolConfig, Tx};
use rows::{
    history_from_row, insert_params, task_from_row, FirstEntry, Queries, TaskParams, WriteBatch,
};

/// The schema used when neither the URL (`?schema=`) nor [`PgOptions`] name one.
pub const DEFAULT_SCHEMA: &str = "leasehold";

/// Settings for [`PgStore::connect_with`]. Build with struct update syntax:
/// `PgOptions { schema: "team_a".into(), ..PgOptions::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Schema holding Leasehold's tables (created if missing). A `schema`
    /// query parameter in the URL takes precedence. Default `leasehold`.
    pub schema: String,
    /// Most connections this store opens, 1..=1000. Default 16.
    pub pool_size: u32,
    /// How long to wait for a TCP connection to the server. Default 5 s.
    pub connect_timeout: Duration,
    /// How long a call waits for a free connection when all `pool_size` are
    /// busy, before failing with `unavailable`. Default 10 s.
    pub checkout_timeout: Duration,
    /// How many times a transaction that hit a serialization failure or a
    /// deadlock is run again before the call fails with `unavailable`. Default 5.
    pub retries: u32,
    /// Server-side limit on one statement, lock waits included, so that a
    /// stuck call fails with `unavailable` instead of hanging. `None` keeps the
    /// server's setting. Default 30 s.
    pub statement_timeout: Option<Duration>,
    /// Set `synchronous_commit = on` for every connection, so that an
    /// acknowledged operation survives a crash of the database server (with
    /// `fsync` on). `false` keeps the server's setting. Default `true`.
    pub synchronous_commit: bool,
    /// `application_name` shown in `pg_stat_activity`, unless the URL sets one.
    /// Default `leasehold`.
    pub application_name: String,
    /// Group commit: how many batches of concurrent callers' writes may run
    /// at once, each one transaction on its own connection (see the crate
    /// docs). 0 turns group commit off: every write is its own
    /// transaction. At most `pool_size` are used. Default 1: one batch at a
    /// time gave the largest batches and the best throughput in the
    /// benchmark (see `docs/benchmarks.md`).
    pub group_commit: u32,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            schema: DEFAULT_SCHEMA.to_string(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            checkout_timeout: Duration::from_secs(10),
            retries: 5,
            statement_timeout: Some(Duration::from_secs(30)),
            synchronous_commit: true,
            application_name: "leasehold".to_string(),
            group_commit: 1,
        }
    }
}

/// Most connections one store may open.
pub const POOL_SIZE_MAX: u32 = 1000;

/// A Leasehold store in a PostgreSQL database. Cheap to share (`Arc` inside);
/// every clone uses the same pool.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    group: group::Group,
    q: Queries,
    schema: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

/// Split a `schema` parameter out of a connection string: the query string of
/// a `postgres://` / `postgresql://` URL, or a `schema=NAME` word of a
/// key-value string. Returns the string without it, and the schema if given.
pub fn split_schema_param(url: &str) -> (String, Option<String>) {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if is_url {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), None);
        };
        let mut schema = None;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| match kv.strip_prefix("schema=") {
                Some(v) => {
                    schema = Some(v.to_string());
                    false
                }
                None => !kv.is_empty(),
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        (rest, schema)
    } else {
        let mut schema = None;
        let kept: Vec<&str> = url
            .split_whitespace()
            .filter(|kv| match kv.strip_prefix("schema=") {
                Some(v) => {
                    schema = Some(v.trim_matches('\'').to_string());
                    false
                }
                None => true,
            })
            .collect();
        (kept.join(" "), schema)
    }
}

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl PgStore {
    /// Connect with default [`PgOptions`] (schema from `?schema=` or
    /// `leasehold`), creating or migrating the schema if needed.
    pub fn connect(url: &str) -> Result<PgStore> {
        PgStore::connect_with(url, PgOptions::default())
    }

    /// Connect with explicit options. The URL's `?schema=` wins over
    /// `opts.schema`. Fails with `invalid_input` on a malformed URL or schema
    /// name, `unavailable` when the server cannot be reached, and `internal`
    /// when the schema was migrated by a newer Leasehold or the database is
    /// not UTF-8.
    pub fn connect_with(url: &str, opts: PgOptions) -> Result<PgStore> {
        let (url, from_url) = split_schema_param(url);
        let schema = from_url.unwrap_or_else(|| opts.schema.clone());
        schema::check_schema_name(&schema)?;
        if opts.pool_size == 0 || opts.pool_size > POOL_SIZE_MAX {
            return Err(Error::InvalidInput(format!(
                "pool_size must be from 1 to {POOL_SIZE_MAX}, got {}",
                opts.pool_size
            )));
        }
        let mut pg = tokio_postgres::Config::from_str(&url).map_err(|e| {
            Error::InvalidInput(format!(
                "invalid PostgreSQL connection string (expected postgres://user@host:port/db): {e}"
            ))
        })?;
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(opts.connect_timeout);
        }
        if pg.get_application_name().is_none() {
            pg.application_name(&opts.application_name);
        }
        let mut options = pg.get_options().unwrap_or("").to_string();
        if opts.synchronous_commit {
            options.push_str(" -c synchronous_commit=on");
        }
        if let Some(t) = opts.statement_timeout {
            options.push_str(&format!(" -c statement_timeout={}", t.as_millis().max(1)));
        }
        let options = options.trim().to_string();
        if !options.is_empty() {
            pg.options(&options);
        }
        {
            // Migrations use a plain blocking client of their own, once.
            let mut client = postgres::Config::from(pg.clone())
                .connect(postgres::NoTls)
                .map_err(|e| pool::connect_error(&e))?;
            let client = &mut client;
            let enc: String = client
                .query_one("SHOW server_encoding", &[])
                .map_err(|e| error::to_error(&e, "checking the server encoding"))?
                .get(0);
            if enc != "UTF8" {
                return Err(Error::Internal(format!(
                    "database encoding is {enc}; Leasehold needs a UTF8 database"
                )));
            }
            schema::migrate(client, &schema)?;
        }
        let pool = Pool::new(PoolConfig {
            pg,
            size: opts.pool_size,
            checkout_timeout: opts.checkout_timeout,
            retries: opts.retries,
        });
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                group: group::Group::new(opts.group_commit.min(opts.pool_size)),
                q: Queries::new(&schema),
                schema,
            }),
        })
    }

    /// The schema this store uses.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Pool and retry counters since the store was created.
    pub fn stats(&self) -> PoolStats {
        self.inner.pool.stats()
    }

    /// How much group commit has batched on this store so far.
    pub fn group_stats(&self) -> GroupStats {
        self.inner.group.stats()
    }

    /// Run write operations through group commit; answers in order.
    fn submit(&self, ops: Vec<group::Op>) -> Vec<Result<group::Answer>> {
        self.inner.group.submit(&self.inner, ops)
    }

    fn submit_one(&self, op: group::Op) -> Result<group::Answer> {
        self.submit(vec![op]).pop().unwrap_or_else(|| {
            Err(Error::Internal(
                "group commit returned no answer for a write".into(),
            ))
        })
    }
}

fn unique_to_exists(e: postgres::Error, task: &Task) -> Fail {
    if e.code() != Some(&SqlState::UNIQUE_VIOLATION) {
        return Fail::Pg(e);
    }
    match error::constraint(&e) {
        Some("tasks_saga_id_unique") => Fail::Domain(Error::AlreadyExists(format!(
            "saga {:?} is already used by another task",
            task.saga_id
        ))),
        _ => Fail::Domain(Error::AlreadyExists(format!(
            "task {:?} already exists",
            task.task_id
        ))),
    }
}

impl Inner {
    /// Write transitions of tasks read (and locked) in this transaction, each
    /// given as (seq, version read, transition): every changed row only at
    /// the version read, with its history entry, in one statement. A row
    /// that changed anyway makes the whole operation run again.
    fn persist(&self, tx: &mut Tx<'_>, items: &[(i64, u64, Transition)]) -> Result<(), Fail> {
        let mut batch = WriteBatch::default();
        for (seq, old_version, t) in items {
            batch.add(*seq, *old_version, t)?;
        }
        let (rows, entries) = batch.counts();
        if rows == 0 && entries == 0 {
            return Ok(());
        }
        // The write goes out with COMMIT (one round trip). The statement
        // itself refuses (SQLSTATE 21000, see `Queries::write_batch`) to
        // write anything unless every row matched its version and every
        // history entry went in, so nothing partial can be committed.
        let sent = if rows == 1 && entries <= 1 {
            tx.query_commit(&self.q.write_one, &batch.params_one())?
        } else {
            tx.query_commit(&self.q.write_batch, &batch.params())?
        };
        let row = match sent {
            Committed::Done(row) => row,
            Committed::RolledBack(e) if e.code() == Some(&SqlState::CARDINALITY_VIOLATION) => {
                return Err(Fail::Again("a task changed between read and write"))
            }
            // Only `put` can change a unique column (the saga id) of a row.
            Committed::RolledBack(e) if items.len() == 1 => {
                return Err(unique_to_exists(e, &items[0].2.task))
            }
            Committed::RolledBack(e) => return Err(Fail::Pg(e)),
        };
        let (updated, inserted): (i64, i64) = (row[0].get(0), row[0].get(1));
        if rows == 1 && updated == 0 && inserted == 0 {
            // `write_one` wrote nothing (the row's version moved, which the
            // row lock should make impossible): run the operation again.
            return Err(Fail::Again("a task changed between read and write"));
        }
        if updated as usize != rows || inserted as usize != entries {
            return Err(Fail::Domain(Error::Internal(format!(
                "committed {updated} rows and {inserted} history entries, expected {rows} and \
                 {entries} (the write statement's own check failed)"
            ))));
        }
        Ok(())
    }

    /// Insert a new task and its first history entry. A unique violation
    /// comes back as the driver error, for the caller to interpret.
    fn insert(&self, tx: &mut Tx<'_>, t: &Transition) -> Result<Result<(), postgres::Error>, Fail> {
        let p = TaskParams::new(&t.task)?;
        let h = t.history.as_ref().ok_or_else(|| {
            Error::Internal(format!(
                "insert of task {:?} without a history entry",
                t.task.task_id
            ))
        })?;
        let h = FirstEntry::new(h)?;
        // Sent with COMMIT: the insert is the transaction's last statement.
        match tx.query_commit(&self.q.insert_task, &insert_params(&p, &h))? {
            Committed::Done(rows) if rows.len() == 1 => Ok(Ok(())),
            Committed::Done(rows) => Err(Fail::Domain(Error::Internal(format!(
                "insert of task {:?} wrote {} history entries",
                t.task.task_id,
                rows.len()
            )))),
            Committed::RolledBack(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(Err(e)),
            Committed::RolledBack(e) => Err(Fail::Pg(e)),
        }
    }

    /// `create` in a transaction of its own.
    fn create_alone(&self, t: Transition) -> Result<Task> {
        let me = self;
        me.pool.write("create", |tx| {
            // Checked first (in the model's order) so that a duplicate does
            // not consume a creation sequence number.
            let row = tx.query(&me.q.taken, &[&t.task.task_id, &t.task.saga_id])?;
            let (id_taken, saga_owner): (bool, Option<String>) = (row[0].get(0), row[0].get(1));
            if id_taken {
                return Err(Fail::Domain(Error::AlreadyExists(format!(
                    "task {:?} already exists",
                    t.task.task_id
                ))));
            }
            if let Some(other) = saga_owner {
                return Err(Fail::Domain(Error::AlreadyExists(format!(
                    "saga {:?} is already used by task {other:?}",
                    t.task.saga_id
                ))));
            }
            me.insert(tx, &t)?.map_err(|e| unique_to_exists(e, &t.task))
        })?;
        Ok(t.task)
    }

    /// `apply` in a transaction of its own.
    fn apply_alone(&self, task_id: &str, cmd: &Command, ctx: &Context) -> Result<Task> {
        let me = self;
        me.pool.write(cmd.name(), |tx| {
            let rows = tx.query(&me.q.get_for_update, &[&task_id])?;
            let Some(row) = rows.first() else {
                return Err(Fail::Domain(Error::task_not_found(task_id)));
            };
            let (seq, old) = task_from_row(row)?;
            let t = machine::apply(&old, cmd, ctx)?;
            let items = [(seq, old.version, t)];
            me.persist(tx, &items)?;
            let [(_, _, t)] = items;
            Ok(t.task)
        })
    }

    /// `claim` (request already checked) in a transaction of its own.
    fn claim_alone(
        &self,
        queues: &[String],
        cmd: &Command,
        limit: usize,
        max_attempts: Option<u32>,
        ctx: &Context,
    ) -> Result<Vec<Task>> {
        let now = ctx.at.as_micros();
        let limit_sql = limit as i64;
        let max_sql = rows::attempts_bound(max_attempts);
        let me = self;
        me.pool.write("claim", |tx| {
            // BEGIN and both candidate queries in one round trip.
            let (ready, expired) = if let [queue] = queues {
                let p: [&(dyn postgres::types::ToSql + Sync); 4] =
                    [queue, &now, &limit_sql, &max_sql];
                tx.query_pair((&me.q.claim_one[0], &p[..3]), (&me.q.claim_one[1], &p))?
            } else {
                let p: [&(dyn postgres::types::ToSql + Sync); 4] =
                    [&queues, &now, &limit_sql, &max_sql];
                tx.query_pair((&me.q.claim_many[0], &p[..3]), (&me.q.claim_many[1], &p))?
            };
            let mut candidates = Vec::with_capacity(ready.len() + expired.len());
            for row in ready.iter().chain(&expired) {
                candidates.push(task_from_row(row)?);
            }
            // The model's order: priority descending, then creation order.
            candidates.sort_by_key(|(seq, t)| (std::cmp::Reverse(t.priority), *seq));
            candidates.truncate(limit);
            let mut items = Vec::with_capacity(candidates.len());
            for (seq, old) in candidates {
                match machine::apply(&old, cmd, ctx) {
                    Ok(t) => items.push((seq, old.version, t)),
                    Err(e) if skippable(&e) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            me.persist(tx, &items)?;
            Ok(items.into_iter().map(|(_, _, t)| t.task).collect())
        })
    }

    fn saga_taken(&self, tx: &mut Tx<'_>, task: &Task) -> Result<(), Fail> {
        let rows = tx.query(&self.q.saga_owner, &[&task.saga_id, &task.task_id])?;
        if let Some(row) = rows.first() {
            let other: String = row.get(0);
            return Err(Fail::Domain(Error::AlreadyExists(format!(
                "saga {:?} is already used by task {other:?}",
                task.saga_id
            ))));
        }
        Ok(())
    }

    fn tasks(rows: &[postgres::Row]) -> Result<Vec<Task>, Fail> {
        rows.iter()
            .map(|r| task_from_row(r).map(|(_, t)| t).map_err(Fail::Domain))
            .collect()
    }
}

/// Whether a machine error means "this candidate is not claimable after
/// all" (it changed between the candidate query and the lock): skip it.
fn skippable(e: &Error) -> bool {
    matches!(e.code(), ErrorCode::LeaseConflict | ErrorCode::Terminal)
}

impl Store for PgStore {
    fn create(&self, new: NewTask, ctx: &Context) -> Result<Task> {
        let t = machine::create(new, ctx)?;
        self.submit_one(group::Op::Create(Box::new(t)))
            .and_then(group::Answer::one)
    }

    fn put(&self, task: Task, expected_version: Option<u64>, ctx: &Context) -> Result<Task> {
        let me = &self.inner;
        me.pool.write("put", |tx| {
            let rows = tx.query(&me.q.get_for_update, &[&task.task_id])?;
            let stored = rows.first().map(task_from_row).transpose()?;
            let t = machine::put(
                stored.as_ref().map(|(_, s)| s),
                task.clone(),
                expected_version,
                ctx,
            )?;
            me.saga_taken(tx, &t.task)?;
            match stored {
                Some((seq, old)) => {
                    let items = [(seq, old.version, t)];
                    me.persist(tx, &items)?;
                    let [(_, _, t)] = items;
                    Ok(t.task)
                }
                None => {
                    if let Err(e) = me.insert(tx, &t)? {
                        if error::constraint(&e) == Some("tasks_task_id_unique") {
                            // Another put inserted the same id meanwhile: run
                            // again, now as an update of the row it wrote.
                            return Err(Fail::Again("a concurrent put inserted the same task"));
                        }
                        return Err(unique_to_exists(e, &t.task));
                    }
                    Ok(t.task)
                }
            }
        })
    }

    fn apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task> {
        self.submit_one(group::Op::Apply {
            task_id: task_id.to_string(),
            cmd,
            ctx: ctx.clone(),
        })
        .and_then(group::Answer::one)
    }

    fn apply_many(&self, items: Vec<BatchItem>, ctx: &Context) -> Result<Vec<Result<Task>>> {
        check_batch_len(items.len())?;
        let ops = items
            .into_iter()
            .map(|i| group::Op::Apply {
                task_id: i.task_id,
                cmd: i.command,
                ctx: ctx.clone(),
            })
            .collect();
        Ok(self
            .submit(ops)
            .into_iter()
            .map(|r| r.and_then(group::Answer::one))
            .collect())
    }

    fn claim(&self, req: &ClaimRequest, ctx: &Context) -> Result<Vec<Task>> {
        let (queues, expires_at) = req.check(ctx.at)?;
        let cmd = Command::Acquire {
            owner: req.owner.clone(),
            expires_at,
        };
        self.submit_one(group::Op::Claim {
            queues,
            cmd,
            limit: req.limit as usize,
            max_attempts: req.max_attempts,
            ctx: ctx.clone(),
        })
        .and_then(group::Answer::many)
    }

    fn reclaim(&self, max_attempts: u32, ctx: &Context) -> Result<Vec<Task>> {
        check_max_attempts(max_attempts)?;
        let cmd = Command::Reclaim { max_attempts };
        let now = ctx.at.as_micros();
        let batch = i64::from(leasehold_core::limits::RECLAIM_BATCH_MAX);
        let me = &self.inner;
        me.pool.write("reclaim", |tx| {
            let rows = tx.query(&me.q.reclaim, &[&now, &batch])?;
            let mut items = Vec::with_capacity(rows.len());
            for row in &rows {
                let (seq, old) = task_from_row(row)?;
                match machine::apply(&old, &cmd, ctx) {
                    Ok(t) => items.push((seq, old.version, t)),
                    Err(e) if skippable(&e) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            me.persist(tx, &items)?;
            Ok(items.into_iter().map(|(_, _, t)| t.task).collect())
        })
    }

    fn get(&self, task_id: &str) -> Result<Option<Task>> {
        let me = &self.inner;
        me.pool.read("get", |c| {
            let rows = c.query(&me.q.get, &[&task_id])?;
            Ok(rows.first().map(task_from_row).transpose()?.map(|(_, t)| t))
        })
    }

    fn list(&self, filter: &ListFilter, cursor: Option<&str>, limit: Option<u32>) -> Result<Page> {
        let limit = list_limit(limit)?;
        let after = i64::try_from(decode_cursor(cursor)?).unwrap_or(i64::MAX);
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        let stale_at = filter.stale_at.map(Timestamp::as_micros);
        let fetch = i64::from(limit) + 1;
        let me = &self.inner;
        let mut rows: Vec<(i64, Task)> = me.pool.read("list", |c| {
            let rows = c.query(
                &me.q.list,
                &[
                    &after,
                    &states,
                    &filter.queue,
                    &filter.owner,
                    &stale_at,
                    &fetch,
                ],
            )?;
            Ok(rows.iter().map(task_from_row).collect::<Result<Vec<_>>>()?)
        })?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|(s, _)| encode_cursor(*s as u64))
        } else {
            None
        };
        Ok(Page {
            tasks: rows.into_iter().map(|(_, t)| t).collect(),
            next_cursor,
        })
    }

    fn list_in_flight(&self) -> Result<Vec<Task>> {
        let me = &self.inner;
        me.pool.read("list_in_flight", |c| {
            Inner::tasks(&c.query(&me.q.in_flight, &[])?)
        })
    }

    fn list_stale(&self, now: Timestamp) -> Result<Vec<Task>> {
        let me = &self.inner;
        let now = now.as_micros();
        me.pool.read("list_stale", |c| {
            Inner::tasks(&c.query(&me.q.stale, &[&now])?)
        })
    }

    fn counts(&self) -> Result<Counts> {
        let me = &self.inner;
        me.pool.read("counts", |c| {
            let mut counts = empty_counts();
            for row in c.query(&me.q.counts, &[])? {
                let state: String = row.get(0);
                let n: i64 = row.get(1);
                let state: TaskState = state
                    .parse()
                    .map_err(|e: Error| Error::Internal(format!("corrupt row in postgres: {e}")))?;
                counts.insert(state, n as u64);
            }
            Ok(counts)
        })
    }

    fn queue_counts(&self) -> Result<QueueCounts> {
        let me = &self.inner;
        me.pool.read("queue_counts", |c| {
            let mut out = QueueCounts::new();
            for row in c.query(&me.q.queue_counts, &[])? {
                let (queue, state, n): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
                let state: TaskState = state
                    .parse()
                    .map_err(|e: Error| Error::Internal(format!("corrupt row in postgres: {e}")))?;
                out.insert((queue, state), n as u64);
            }
            Ok(out)
        })
    }

    fn history(&self, task_id: &str) -> Result<Vec<HistoryEntry>> {
        let me = &self.inner;
        me.pool.read("history", |c| {
            let rows = c.query(&me.q.history, &[&task_id])?;
            if rows.is_empty() {
                return Err(Fail::Domain(Error::task_not_found(task_id)));
            }
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let kind: Option<String> = row.get(1);
                if kind.is_some() {
                    out.push(history_from_row(row)?);
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_param_is_split_from_urls() {
        let (u, s) = split_schema_param("postgres://u@h:5/db?schema=team_a&sslmode=disable");
        assert_eq!(u, "postgres://u@h:5/db?sslmode=disable");
        assert_eq!(s.as_deref(), Some("team_a"));
        let (u, s) = split_schema_param("postgresql://u@h/db?schema=x");
        assert_eq!(u, "postgresql://u@h/db");
        assert_eq!(s.as_deref(), Some("x"));
        let (u, s) = split_schema_param("postgres://u@h/db");
        assert_eq!(u, "postgres://u@h/db");
        assert_eq!(s, None);
        let (u, s) = split_schema_param("host=/tmp port=5 schema=y user=u");
        assert_eq!(u, "host=/tmp port=5 user=u");
        assert_eq!(s.as_deref(), Some("y"));
    }

    /// The write statements go out together with COMMIT, so they must write
    /// all or nothing by themselves: a row whose version is not the one
    /// read must leave every row and every history entry as it was, and the
    /// operation must run again (here until it gives up).
    #[test]
    fn a_write_at_a_stale_version_commits_nothing_in_either_statement() {
        use leasehold_conformance::support::{at, ctx};
        let Some(cl) = testing::shared() else { return };
        let store = cl.fresh_store();
        for id in ["a", "b"] {
            store
                .create(NewTask::new(id, format!("saga-{id}")), &ctx(0))
                .unwrap();
        }
        let me = &store.inner;
        let cmd = Command::Acquire {
            owner: "w".into(),
            expires_at: at(60),
        };
        // One task (`write_one`), then two tasks of which one is stale
        // (`write_batch`).
        for ids in [&["a"][..], &["a", "b"][..]] {
            let mut calls = 0;
            let e = me
                .pool
                .write("test", |tx| {
                    calls += 1;
                    let mut items = Vec::new();
                    for (i, id) in ids.iter().enumerate() {
                        let rows = tx.query(&me.q.get_for_update, &[id])?;
                        let (seq, old) = task_from_row(&rows[0])?;
                        let t = machine::apply(&old, &cmd, &ctx(0))?;
                        // Only the last task's version is wrong.
                        let skew = if i + 1 == ids.len() { 7 } else { 0 };
                        items.push((seq, old.version + skew, t));
                    }
                    me.persist(tx, &items)
                })
                .unwrap_err();
            assert_eq!(e.code(), ErrorCode::Unavailable, "{e}");
            assert!(e.message().contains("lost a race"), "{e}");
            assert!(calls > 1, "the operation never ran again");
            for id in ["a", "b"] {
                let t = store.get(id).unwrap().unwrap();
                assert_eq!((t.version, t.lease_owner.as_deref()), (1, None), "{id}");
                assert_eq!(store.history(id).unwrap().len(), 1, "{id}");
            }
        }
        // And the same writes at the right versions do go in.
        let t = store.apply("a", cmd.clone(), &ctx(0)).unwrap();
        assert_eq!((t.version, store.history("a").unwrap().len()), (2, 2));
    }

    /// `queue_counts` (one GROUP BY) gives the model's counts per queue and
    /// state, zero pairs absent.
    #[test]
    fn queue_counts_match_the_model() {
        use leasehold_conformance::support::{ctx, task};
        use leasehold_core::memory::MemoryStore;
        let Some(cl) = testing::shared() else { return };
        let pg = cl.fresh_store();
        let m = MemoryStore::new();
        assert!(pg.queue_counts().unwrap().is_empty());
        for (i, q) in ["a", "a", "b", "b", "b", "c"].iter().enumerate() {
            let n = task(&format!("t{i}")).queue(q).build();
            pg.create(n.clone(), &ctx(0)).unwrap();
            m.create(n, &ctx(0)).unwrap();
        }
        let cmds = [
            ("t0", Command::Dispatch),
            ("t2", Command::Dispatch),
            (
                "t3",
                Command::Quarantine {
                    reason: "r".into(),
                    fence: None,
                },
            ),
            (
                "t4",
                Command::Complete {
                    reason: None,
                    fence: None,
                },
            ),
        ];
        for (id, cmd) in cmds {
            pg.apply(id, cmd.clone(), &ctx(1)).unwrap();
            m.apply(id, cmd, &ctx(1)).unwrap();
        }
        let got = pg.queue_counts().unwrap();
        assert_eq!(got, m.queue_counts().unwrap());
        assert_eq!(got.len(), 6, "{got:?}");
    }

    #[test]
    fn bad_urls_and_options_are_invalid_input() {
        let e = PgStore::connect("postgres://u@h/db?schema=Bad-Name").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert!(e.message().contains("Bad-Name"), "{e}");
        let e = PgStore::connect("postgres://u@h:notaport/db").unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        let e = PgStore::connect_with(
            "postgres://u@127.0.0.1/db",
            PgOptions {
                pool_size: 0,
                ..PgOptions::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
    }
}
