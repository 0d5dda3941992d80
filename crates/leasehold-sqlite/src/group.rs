//! Group commit: many callers' write operations share one transaction and
//! one fsync, and each is acknowledged only after that transaction commits.
//!
//! With `synchronous=FULL` a commit costs one fsync (≈ 0.25 ms here), which
//! caps one-transaction-per-operation at a few thousand operations per
//! second, however fast the rest is. Under concurrency the callers are
//! waiting anyway, so the store lets one of them (the *leader*) take every
//! operation queued so far, run them in one `BEGIN IMMEDIATE` transaction and
//! commit once. The guarantee does not change: nobody gets `Ok` before the
//! transaction holding its change is durable, and a failed commit fails every
//! operation of the batch (none of them was written).
//!
//! **Each operation stands alone.** Every operation runs inside its own
//! `SAVEPOINT`: a rejected one (`lease_conflict`, `terminal`, …) is rolled
//! back to its savepoint and answers its own error, while the operations
//! before and after it in the batch commit. Operations run in queue order
//! and each sees the previous ones' effects, exactly as if they had run one
//! after the other, so per-operation results are identical to the
//! unbatched store (the model test checks this step by step).
//!
//! **Leader hand-off, no background thread.** A caller enqueues its
//! operation; if no leader is active it becomes the leader, otherwise it
//! sleeps on its own channel. The leader drains the queue (at most
//! [`GROUP_COMMIT_BATCH_MAX`] operations per transaction), commits, answers
//! every caller of the batch, and repeats until its own operation is
//! answered. Then, if more operations are queued, it hands leadership to the
//! oldest waiting caller and returns. No caller leads forever, and no
//! thread of the group commit's own waits for work (the store's only
//! background thread is its WAL checkpointer). While a leader is committing, new callers
//! pile up in the queue: that is the next batch.
//!
//! Reads never go through here: they use the separate read connections and
//! WAL snapshots, so they never wait behind a batch.
//!
//! A panic inside an operation (a bug) is caught, rolls that operation back
//! to its savepoint and answers `internal`; the others are unaffected.
//!
//! **Nothing but the batch on the commit path.** The writer connection never
//! checkpoints (`wal_autocheckpoint = 0`); after a batch that changed rows
//! has been answered, the leader only nudges the store's background
//! checkpointer (see the `checkpoint` module). Each batch is timed
//! ([`GroupStats::batch_us_max`], [`GroupStats::slow_batches`]), and with
//! `LEASEHOLD_SQLITE_TRACE_MS=N` every batch of N ms or more is printed with
//! its split (begin, operations, commit).

use std::any::Any;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use leasehold_core::{Error, Result};
use rusqlite::{Connection, TransactionBehavior};

use crate::errors::map;
use crate::{busy, lock};

/// Most operations one group-commit transaction carries. Bounds the time a
/// batch holds SQLite's write lock (other processes wait on it) and the
/// memory of a batch.
pub const GROUP_COMMIT_BATCH_MAX: usize = 512;

/// The type-erased result of one operation; the caller downcasts it.
pub(crate) type Output = Box<dyn Any + Send>;

/// One queued write operation: runs against the batch's transaction.
pub(crate) type Op = Box<dyn FnOnce(&Connection) -> Result<Output> + Send>;

enum Msg {
    /// The final answer (after the commit) of the caller's operation number `.0`.
    Done(usize, Result<Output>),
    /// You are the leader now: run batches.
    Lead,
}

struct Job {
    op: Op,
    /// Position among its caller's operations.
    index: usize,
    reply: mpsc::Sender<Msg>,
}

impl Job {
    fn answer(&self, out: Result<Output>) {
        // A caller always waits for all its answers; a send can only fail
        // if it panicked meanwhile, and then nobody needs the answer.
        let _ = self.reply.send(Msg::Done(self.index, out));
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Some caller is running batches (or has been told to).
    leading: bool,
}

/// The group-commit queue of one store handle.
#[derive(Default)]
pub(crate) struct Group {
    queue: Mutex<Queue>,
}

/// Counters for tests, the bench and the soak: how much batching happened
/// and how long the writer was held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Transactions committed (or attempted) by group commit.
    pub batches: u64,
    /// Operations run in them.
    pub ops: u64,
    /// Largest batch so far.
    pub largest: u64,
    /// Longest batch so far, `BEGIN` to the end of `COMMIT`, in microseconds.
    pub batch_us_max: u64,
    /// Batches that took [`SLOW_BATCH`] or longer.
    pub slow_batches: u64,
}

/// A batch this long or longer counts in [`GroupStats::slow_batches`].
pub const SLOW_BATCH: Duration = Duration::from_millis(100);

/// Where one batch spent its time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BatchTiming {
    /// `BEGIN IMMEDIATE` (waits for other connections' write locks).
    begin: Duration,
    /// The operations.
    ops: Duration,
    /// `COMMIT`: the WAL append and its fsync (the writer never checkpoints).
    commit: Duration,
    /// The batch committed at least one changed row (the log grew).
    wrote: bool,
}

/// `LEASEHOLD_SQLITE_TRACE_MS=N`: print every batch (and background
/// checkpoint) that takes N ms or longer to stderr, with its breakdown. A
/// diagnostic for latency hunts; read once per process.
pub(crate) fn trace_threshold() -> Option<Duration> {
    static T: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        std::env::var("LEASEHOLD_SQLITE_TRACE_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
    })
}

/// Seconds since the epoch with microseconds, for trace lines that must be
/// correlated with other processes' logs.
pub(crate) fn wall() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Group {
    /// Run `ops` (in order, each in its own savepoint) in group-commit
    /// transactions on `writer`; return their answers, in order, once the
    /// transactions holding them have committed (or failed). `on_commit` is
    /// called after every batch that committed a change, once its callers
    /// have been answered (the store wakes its checkpointer with it).
    pub(crate) fn submit(
        &self,
        writer: &Mutex<Connection>,
        stats: &Mutex<GroupStats>,
        busy_timeout: Duration,
        ops: Vec<Op>,
        on_commit: &dyn Fn(),
    ) -> Vec<Result<Output>> {
        let n = ops.len();
        let mut answers: Vec<Option<Result<Output>>> = (0..n).map(|_| None).collect();
        if n == 0 {
            return Vec::new();
        }
        let (tx, rx) = mpsc::channel();
        let mut lead = {
            let mut q = lock(&self.queue);
            for (index, op) in ops.into_iter().enumerate() {
                q.jobs.push_back(Job {
                    op,
                    index,
                    reply: tx.clone(),
                });
            }
            !std::mem::replace(&mut q.leading, true)
        };
        drop(tx);
        let mut missing = n;
        while missing > 0 {
            if !lead {
                match rx.recv() {
                    Ok(Msg::Done(i, r)) => {
                        answers[i] = Some(r);
                        missing -= 1;
                    }
                    Ok(Msg::Lead) => lead = true,
                    Err(_) => break,
                }
                continue;
            }
            // Leader: run one batch, then collect whatever it answered us.
            let batch: Vec<Job> = {
                let mut q = lock(&self.queue);
                let k = q.jobs.len().min(GROUP_COMMIT_BATCH_MAX);
                q.jobs.drain(..k).collect()
            };
            if batch.is_empty() {
                // Our operations were queued before we led and batches are
                // FIFO, so they have all been answered; never spin.
                break;
            }
            {
                let k = batch.len() as u64;
                let started = Instant::now();
                let timing = run_batch(&mut lock(writer), busy_timeout, batch);
                let took = started.elapsed();
                let mut s = lock(stats);
                s.batches += 1;
                s.ops += k;
                s.largest = s.largest.max(k);
                s.batch_us_max = s.batch_us_max.max(took.as_micros() as u64);
                if took >= SLOW_BATCH {
                    s.slow_batches += 1;
                }
                drop(s);
                if timing.wrote {
                    on_commit();
                }
                if trace_threshold().is_some_and(|t| took >= t) {
                    eprintln!(
                        "leasehold-sqlite trace {:.6}: batch of {k} took {:.1} ms (begin {:.1}, ops {:.1}, commit {:.1})",
                        wall(),
                        took.as_secs_f64() * 1e3,
                        timing.begin.as_secs_f64() * 1e3,
                        timing.ops.as_secs_f64() * 1e3,
                        timing.commit.as_secs_f64() * 1e3,
                    );
                }
            }
            while let Ok(msg) = rx.try_recv() {
                if let Msg::Done(i, r) = msg {
                    answers[i] = Some(r);
                    missing -= 1;
                }
            }
        }
        if lead {
            self.hand_off();
        }
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| {
                    Err(Error::Internal(
                        "the group-commit leader went away without answering".into(),
                    ))
                })
            })
            .collect()
    }

    /// Give leadership to the oldest waiting caller, or end it.
    fn hand_off(&self) {
        let mut q = lock(&self.queue);
        loop {
            match q.jobs.front() {
                None => {
                    q.leading = false;
                    return;
                }
                Some(job) => {
                    if job.reply.send(Msg::Lead).is_ok() {
                        return;
                    }
                    // Its caller is gone (cannot happen: callers wait); drop it.
                    q.jobs.pop_front();
                }
            }
        }
    }
}

fn savepoint(conn: &Connection, sql_text: &str) -> Result<()> {
    conn.prepare_cached(sql_text)
        .and_then(|mut s| s.execute([]).map(drop))
        .map_err(|e| map(e, "manage a group-commit savepoint"))
}

/// One transaction for the whole batch, one savepoint per operation.
fn run_batch(conn: &mut Connection, busy_timeout: Duration, jobs: Vec<Job>) -> BatchTiming {
    let mut timing = BatchTiming::default();
    let fail_all = |jobs: Vec<Job>, e: Error| {
        for j in jobs {
            j.answer(Err(e.clone()));
        }
    };
    busy::set_timeout(busy_timeout);
    let changes = conn.total_changes();
    let t0 = Instant::now();
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            fail_all(jobs, map(e, "begin a write transaction"));
            return timing;
        }
    };
    timing.begin = t0.elapsed();
    let mut done: Vec<(Job, Result<Output>)> = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter();
    while let Some(mut job) = jobs.next() {
        if let Err(e) = savepoint(&tx, "SAVEPOINT leasehold_op") {
            // The transaction is unusable: nothing of the batch is written.
            drop(tx);
            let all = done.into_iter().map(|(j, _)| j);
            fail_all(all.chain(std::iter::once(job)).chain(jobs).collect(), e);
            return timing;
        }
        let op = std::mem::replace(&mut job.op, Box::new(|_| Ok(Box::new(()) as Output)));
        let out = catch_unwind(AssertUnwindSafe(|| op(&tx))).unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(Error::Internal(format!(
                "a write operation panicked and was rolled back: {what}"
            )))
        });
        let end = if out.is_ok() {
            savepoint(&tx, "RELEASE leasehold_op")
        } else {
            savepoint(&tx, "ROLLBACK TO leasehold_op")
                .and_then(|()| savepoint(&tx, "RELEASE leasehold_op"))
        };
        if let Err(e) = end {
            drop(tx);
            let all = done.into_iter().map(|(j, _)| j);
            fail_all(all.chain(std::iter::once(job)).chain(jobs).collect(), e);
            return timing;
        }
        done.push((job, out));
    }
    timing.ops = t0.elapsed() - timing.begin;
    let t1 = Instant::now();
    let committed = crate::failpoints::point("sqlite::before_commit").and_then(|()| tx.commit());
    timing.commit = t1.elapsed();
    timing.wrote = committed.is_ok() && conn.total_changes() != changes;
    match committed {
        Ok(()) => {
            // Committed, nobody answered yet (a failpoint may abort here).
            let _ = crate::failpoints::point("sqlite::after_commit");
            for (job, out) in done {
                job.answer(out);
            }
        }
        Err(e) => {
            // Nothing was written: successes become the commit error,
            // rejections keep their own answer (they changed nothing anyway).
            let e = map(e, "commit");
            for (job, out) in done {
                job.answer(out.and(Err(e.clone())));
            }
        }
    }
    timing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(id: i64, then: Result<()>) -> Op {
        Box::new(move |c: &Connection| {
            c.execute("INSERT INTO t (id) VALUES (?1)", [id])
                .map_err(|e| map(e, "insert"))?;
            then.map(|()| Box::new(id) as Output)
        })
    }

    /// An operation that wrote and then failed (or panicked) is rolled back
    /// to its savepoint; the ones around it in the same transaction commit.
    #[test]
    fn each_operation_is_rolled_back_on_its_own_within_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("g.db")).unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .unwrap();
        let writer = Mutex::new(conn);
        let stats = Mutex::new(GroupStats::default());
        let g = Group::default();
        let panics: Op = Box::new(|c: &Connection| {
            c.execute("INSERT INTO t (id) VALUES (4)", []).unwrap();
            panic!("boom")
        });
        let ops = vec![
            insert(1, Ok(())),
            insert(2, Err(Error::LeaseConflict("no".into()))),
            insert(3, Ok(())),
            panics,
            insert(1, Ok(())), // duplicate of op 0: a SQL error, its own answer
            insert(5, Ok(())),
        ];
        let commits = std::sync::atomic::AtomicUsize::new(0);
        let counted = || {
            commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        };
        let out = g.submit(&writer, &stats, Duration::from_secs(1), ops, &counted);
        let codes: Vec<_> = out
            .iter()
            .map(|r| r.as_ref().map_err(|e| e.code()).map(|_| ()))
            .collect();
        use leasehold_core::ErrorCode::*;
        assert_eq!(
            codes,
            vec![
                Ok(()),
                Err(LeaseConflict),
                Ok(()),
                Err(Internal),
                Err(Internal),
                Ok(())
            ]
        );
        assert!(out[3].as_ref().unwrap_err().message().contains("boom"));
        let ids: Vec<i64> = {
            let c = lock(&writer);
            let mut s = c.prepare("SELECT id FROM t ORDER BY id").unwrap();
            let rows = s.query_map([], |r| r.get(0)).unwrap();
            rows.collect::<rusqlite::Result<_>>().unwrap()
        };
        assert_eq!(ids, vec![1, 3, 5]);
        let st = *lock(&stats);
        assert_eq!((st.batches, st.ops, st.largest), (1, 6, 6));
        assert!(st.batch_us_max > 0, "the batch was timed: {st:?}");
        assert_eq!(commits.load(std::sync::atomic::Ordering::SeqCst), 1);
        // The queue is idle again: a later call leads and answers at once.
        let again = g.submit(
            &writer,
            &stats,
            Duration::from_secs(1),
            vec![insert(6, Ok(()))],
            &counted,
        );
        assert!(again[0].is_ok());
        assert_eq!(commits.load(std::sync::atomic::Ordering::SeqCst), 2);
        // A batch that changes nothing (every operation refused before it
        // wrote, like a fenced heartbeat) does not report a commit.
        let none = g.submit(
            &writer,
            &stats,
            Duration::from_secs(1),
            vec![Box::new(|_: &Connection| -> Result<Output> {
                Err(Error::LeaseConflict("no".into()))
            })],
            &counted,
        );
        assert!(none[0].is_err());
        assert_eq!(commits.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
