//! The physical limits Leasehold is measured against, on the same machine
//! in the same run: what the database itself does with the least work that
//! still means "a worker owns this task".
//!
//! - [`sqlite`]: a raw conditional `UPDATE` (WAL, the same `synchronous`
//!   setting), `--batch N` updates per transaction on one connection: SQLite
//!   has one writer, so this is its ceiling. By default the rows are
//!   Leasehold's own `tasks` table (same columns and indexes, built by the
//!   store's migrations) and the update is a heartbeat's (`lease_expires_at`,
//!   `version`, `updated_at` `WHERE seq = ? AND version = ?`): the cost of
//!   the same write with none of Leasehold's logic. `--bare` uses a
//!   four-column table without secondary indexes instead: SQLite's absolute
//!   ceiling. Each update's latency is its transaction's.
//! - [`postgres`]: a raw claim + complete loop on a bare table, the classic
//!   queue pattern: claim = `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP
//!   LOCKED LIMIT 1)` in its own transaction, complete = a fenced `UPDATE`.
//!   `--workers` connections, `synchronous_commit = on` like Leasehold's
//!   store. One op = one claim + complete.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use leasehold_core::{Error, Result};
use leasehold_sqlite::Durability;

use crate::report::Report;
use crate::workloads::report;
use crate::{progress, run_id, throwaway_postgres, Options, Target};

fn sq(what: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::Internal(format!("baseline-sqlite could not {what}: {e}"))
}

/// Raw conditional UPDATEs on SQLite, `opts.batch` per transaction.
pub fn sqlite(opts: &Options) -> Result<Report> {
    let dir = tempfile::Builder::new()
        .prefix("leasehold-baseline-")
        .tempdir()
        .map_err(|e| Error::Internal(format!("cannot create a temporary directory: {e}")))?;
    let path = match &opts.target {
        Target::Sqlite(Some(p)) => p.clone(),
        _ => dir.path().join("baseline.db"),
    };
    if path.exists() {
        return Err(Error::InvalidInput(format!(
            "{} exists; baseline-sqlite writes a fresh database",
            path.display()
        )));
    }
    let setup = Instant::now();
    if !opts.bare {
        // Leasehold's schema, built by the store's own migrations.
        drop(leasehold_sqlite::SqliteStore::open(&path)?);
    }
    let mut conn = rusqlite::Connection::open(&path).map_err(sq("open the database"))?;
    let sync = match opts.durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(sq("set WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Internal(format!(
            "baseline-sqlite: journal mode {mode}"
        )));
    }
    conn.execute_batch(&format!("PRAGMA synchronous = {sync};"))
        .map_err(sq("set synchronous"))?;
    let (insert, update) = if opts.bare {
        conn.execute_batch(
            "CREATE TABLE leases (id INTEGER PRIMARY KEY, owner TEXT, token INTEGER NOT NULL, expires INTEGER);",
        )
        .map_err(sq("create the table"))?;
        (
            "INSERT INTO leases (id, owner, token, expires) VALUES (?1 + 1, 'w', 0, 0)",
            "UPDATE leases SET token = token + 1, expires = ?1 WHERE id = ?2 AND token = ?3",
        )
    } else {
        (
            "INSERT INTO tasks (seq, task_id, saga_id, state, queue, priority, metadata, \
             compensations, notes, lease_owner, lease_token, lease_acquired_at, lease_expires_at, \
             last_heartbeat_at, attempts, version, created_at, updated_at) \
             VALUES (?1 + 1, 'task-' || ?1, 'saga-' || ?1, 'running', 'default', 0, '{}', '[]', '[]', \
             'w', 1, 0, 1, 0, 1, 0, 0, 0)",
            "UPDATE tasks SET lease_expires_at = ?1, last_heartbeat_at = ?1, version = version + 1, \
             updated_at = ?1 WHERE seq = ?2 AND version = ?3",
        )
    };
    {
        let tx = conn.transaction().map_err(sq("begin"))?;
        {
            let mut ins = tx.prepare(insert).map_err(sq("prepare the insert"))?;
            for id in 0..opts.tasks {
                ins.execute([id as i64]).map_err(sq("insert"))?;
            }
        }
        tx.commit().map_err(sq("commit the rows"))?;
    }
    let setup = setup.elapsed();
    let pb = progress(opts, opts.tasks, "baseline");
    let mut samples = Vec::with_capacity(opts.tasks as usize);
    let start = Instant::now();
    let mut id = 0u64;
    while id < opts.tasks {
        let t = Instant::now();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sq("begin"))?;
        let end = (id + opts.batch).min(opts.tasks);
        {
            let mut up = tx
                .prepare_cached(update)
                .map_err(sq("prepare the update"))?;
            for i in id..end {
                let n = up
                    .execute([i as i64 + 2, i as i64 + 1, 0])
                    .map_err(sq("update"))?;
                if n != 1 {
                    return Err(Error::Internal(format!(
                        "baseline-sqlite: update of row {i} changed {n} rows"
                    )));
                }
            }
        }
        tx.commit().map_err(sq("commit"))?;
        let us = t.elapsed().as_micros() as u64;
        samples.extend(std::iter::repeat_n(us, (end - id) as usize));
        pb.inc(end - id);
        id = end;
    }
    let elapsed = start.elapsed();
    pb.finish_and_clear();
    let mut o = opts.clone();
    o.workers = 1;
    Ok(report(&o, samples, elapsed, opts.tasks, setup, None))
}

fn pg(what: &'static str) -> impl Fn(postgres::Error) -> Error {
    move |e| Error::Unavailable(format!("baseline-postgres could not {what}: {e}"))
}

/// Raw SKIP LOCKED claim + complete on PostgreSQL with `opts.workers`
/// connections. Uses `--db postgres://…`, or starts a throwaway cluster.
pub fn postgres(opts: &Options) -> Result<Report> {
    let setup = Instant::now();
    let (_cluster, url) = match &opts.target {
        Target::Postgres(u) => (None, leasehold_postgres::split_schema_param(u).0),
        _ => {
            let c = throwaway_postgres()?;
            let u = c.url();
            (Some(c), u)
        }
    };
    let schema = format!("baseline_{}", run_id().replace('-', "_"));
    let connect = || -> Result<postgres::Client> {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).map_err(pg("connect"))?;
        c.batch_execute(&format!(
            "SET synchronous_commit = on; SET search_path = {schema}"
        ))
        .map_err(pg("configure the session"))?;
        Ok(c)
    };
    {
        let mut c = connect()?;
        c.batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.jobs (id bigserial PRIMARY KEY, state text NOT NULL,
                 owner text, token bigint NOT NULL DEFAULT 0);
             INSERT INTO {schema}.jobs (state) SELECT 'queued' FROM generate_series(1, {});
             CREATE INDEX jobs_queued ON {schema}.jobs (id) WHERE state = 'queued';
             ANALYZE {schema}.jobs;",
            opts.tasks
        ))
        .map_err(pg("create the table"))?;
    }
    let clients = (0..opts.workers)
        .map(|_| connect())
        .collect::<Result<Vec<_>>>()?;
    let setup = setup.elapsed();
    let done = Arc::new(AtomicU64::new(0));
    let pb = progress(opts, opts.tasks, "baseline");
    let start = Instant::now();
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(w, mut c)| {
            let (done, pb) = (Arc::clone(&done), pb.clone());
            thread::spawn(move || -> Result<Vec<u64>> {
                let owner = format!("w{w}");
                let claim = c
                    .prepare(
                        "UPDATE jobs SET state = 'running', owner = $1, token = token + 1 \
                         WHERE id = (SELECT id FROM jobs WHERE state = 'queued' ORDER BY id \
                         LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, token",
                    )
                    .map_err(pg("prepare the claim"))?;
                let complete = c
                    .prepare(
                        "UPDATE jobs SET state = 'done' WHERE id = $1 AND owner = $2 AND token = $3",
                    )
                    .map_err(pg("prepare the complete"))?;
                let mut samples = Vec::new();
                loop {
                    let t = Instant::now();
                    let mut tx = c.transaction().map_err(pg("begin"))?;
                    let row = tx.query_opt(&claim, &[&owner]).map_err(pg("claim"))?;
                    tx.commit().map_err(pg("commit the claim"))?;
                    let Some(row) = row else {
                        return Ok(samples);
                    };
                    let (id, token): (i64, i64) = (row.get(0), row.get(1));
                    let n = c
                        .execute(&complete, &[&id, &owner, &token])
                        .map_err(pg("complete"))?;
                    if n != 1 {
                        return Err(Error::Internal(format!(
                            "baseline-postgres: completing job {id} changed {n} rows"
                        )));
                    }
                    samples.push(t.elapsed().as_micros() as u64);
                    done.fetch_add(1, Ordering::Relaxed);
                    pb.inc(1);
                }
            })
        })
        .collect();
    let mut samples = Vec::new();
    for h in handles {
        samples.extend(
            h.join()
                .map_err(|_| Error::Internal("a baseline worker panicked".into()))??,
        );
    }
    let elapsed = start.elapsed();
    pb.finish_and_clear();
    let n = done.load(Ordering::Relaxed);
    if n != opts.tasks {
        return Err(Error::Internal(format!(
            "baseline-postgres completed {n} jobs, expected {}",
            opts.tasks
        )));
    }
    if let Ok(mut c) = connect() {
        let _ = c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"));
    }
    Ok(report(opts, samples, elapsed, n, setup, None))
}
