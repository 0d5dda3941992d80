//! Group commit: concurrent callers' write operations share one
//! transaction, and each is answered only after that transaction commits.
//!
//! One operation per transaction costs PostgreSQL a `BEGIN`, a `COMMIT`
//! (a WAL flush), two round trips and the per-statement overhead of a load
//! and a write, whatever the operation. Under concurrency the callers wait
//! anyway, so a caller (the *leader*) takes every operation queued so far and
//! runs them as one batch, in one transaction of two round trips:
//!
//! 1. `BEGIN`, then — pipelined — one `SELECT … WHERE task_id = ANY(…)
//!    ORDER BY task_id FOR UPDATE` loading and locking every task the batch
//!    names (in id order, so that concurrent batches lock rows in one order),
//!    one lookup of the ids and saga ids the batch creates, and per distinct
//!    queue set of the batch's claims the two candidate walks
//!    (`FOR UPDATE SKIP LOCKED`, as an unbatched claim);
//! 2. in Rust, [`leasehold_core::machine`] decides every operation in queue
//!    order on the batch's own copy of the rows, so a later operation sees
//!    the earlier ones' effects exactly as if they had run one after the
//!    other; a rejection (`lease_conflict`, `not_found`, …) is that
//!    operation's answer and never touches the transaction;
//! 3. one statement writes every changed row at the version read, every
//!    history entry and every new task (`ON CONFLICT DO NOTHING`), sent with
//!    `COMMIT`.
//!
//! **Each operation stands alone.** A decision is per operation. A database
//! error that aborts the batch (a NUL byte in a reason, a constraint, a
//! trigger, the lock timeout below) makes every operation of the batch run
//! again on its own, unbatched, so one bad operation cannot fail the others. A new task
//! whose id or saga id another transaction took meanwhile is skipped by the
//! insert and answered by an unbatched create after the commit. An operation
//! on a task created earlier in the same batch, and a claim that might need
//! a candidate beyond the rows its walks returned, are likewise run on their
//! own after the commit (they are concurrent with the whole batch, so being
//! ordered after it is a valid order). A commit whose connection broke in
//! flight answers every operation it carried `unavailable` ("may or may not
//! have been applied"), as an unbatched write would.
//!
//! **Several processes.** Nothing here is process-local state: rows are
//! locked, written only at the version read, guarded by the trigger, and
//! claims skip rows other transactions hold, exactly as unbatched writes.
//!
//! **Leaders.** A caller enqueues its operations as one unit (never split
//! between batches, so a caller's own operations keep their order); if fewer
//! than the configured number of leaders are active it becomes one,
//! otherwise it sleeps on its own channel. A leader drains the queue (at
//! most [`GROUP_COMMIT_BATCH_MAX`] operations, whole units), runs the
//! batch, answers every caller in it and repeats until its own unit is
//! answered; then it hands its place to the oldest waiting caller. Several
//! leaders may run batches at once (`PgOptions::group_commit`, default 1),
//! each a transaction on its own connection. No background
//! thread; a store with no traffic has none. A batch of one operation runs
//! the unbatched code path unchanged, in the leader (so a lone caller sees
//! no difference).
//!
//! **Stalls behind a lock.** A batch waits at most 500 ms for a row lock
//! (`lock_timeout`, local to its transaction), then rolls back; its
//! operations, like deferred ones, then run on their own in their callers'
//! threads, never in a leader, so a row lock held elsewhere for long stalls
//! the queue for at most that long. A batch of one operation, however,
//! runs in the leader with the session's settings: if it waits for a row
//! lock held elsewhere, every writer queued behind it waits too (up to
//! `statement_timeout`). Leasehold's own transactions hold row locks for
//! milliseconds; a long foreign lock (an open `psql` transaction holding
//! `FOR UPDATE`) would stall this process's writes.
//!
//! `put` and `reclaim` are not batched (rare, and `reclaim` is a batch
//! already); reads never go through here.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};

use leasehold_core::machine::{self, Command, Context, Transition};
use leasehold_core::{Error, HistoryEntry, Result, Task};
use postgres::error::SqlState;
use postgres::types::ToSql;

use crate::pool::{Committed, Fail, Tx};
use crate::rows::{self, task_from_row, WriteBatch};
use crate::{skippable, Inner};

/// Most operations one group-commit transaction carries (a caller's unit of
/// more operations is never split, so a batch may exceed it by one unit).
pub const GROUP_COMMIT_BATCH_MAX: usize = 256;

/// The batch's transaction waits at most this long for a row lock.
const LOCK_TIMEOUT: &str = "SELECT set_config('lock_timeout', '500ms', true)";

/// One write operation, as queued.
pub(crate) enum Op {
    /// Insert a task (the transition decided by `machine::create`).
    Create(Box<Transition>),
    /// Apply a command to one task.
    Apply {
        task_id: String,
        cmd: Command,
        ctx: Context,
    },
    /// Lease up to `limit` claimable tasks of `queues` (already checked).
    Claim {
        queues: Vec<String>,
        cmd: Command,
        limit: usize,
        max_attempts: Option<u32>,
        ctx: Context,
    },
}

/// The answer to one [`Op`] (short-lived: moved once to its caller).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer {
    /// A create's or an apply's task.
    One(Task),
    /// A claim's leased tasks.
    Many(Vec<Task>),
}

impl Answer {
    /// The task of a create or an apply.
    pub(crate) fn one(self) -> Result<Task> {
        match self {
            Answer::One(t) => Ok(t),
            Answer::Many(_) => Err(Error::Internal(
                "group commit answered a one-task write with a claim's answer".into(),
            )),
        }
    }

    /// The tasks of a claim.
    pub(crate) fn many(self) -> Result<Vec<Task>> {
        match self {
            Answer::Many(t) => Ok(t),
            Answer::One(_) => Err(Error::Internal(
                "group commit answered a claim with a one-task answer".into(),
            )),
        }
    }
}

/// Counters for tests and the bench: how much batching happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Batches of two or more operations run in one transaction.
    pub batches: u64,
    /// Operations carried by those batches.
    pub ops: u64,
    /// Largest batch so far.
    pub largest: u64,
    /// Operations run on their own after their batch (created in the same
    /// batch, a claim that needed more candidates, a create that lost a race).
    pub deferred: u64,
    /// Batches that hit a database error, so that every operation of them
    /// ran again on its own.
    pub fallbacks: u64,
}

/// What a caller gets back for one of its operations.
enum Reply {
    /// Its answer (after the commit).
    Answered(Result<Answer>),
    /// Not decided by a batch: the caller runs it on its own, in its own
    /// thread, once it no longer leads (so an operation waiting on a row
    /// lock never holds up the queue).
    Alone(Op),
}

enum Msg {
    /// The replies to the caller's unit, in order.
    Done(Vec<Reply>),
    /// You are a leader now: run batches.
    Lead,
}

struct Unit {
    ops: Vec<Op>,
    reply: mpsc::Sender<Msg>,
}

#[derive(Default)]
struct Queue {
    units: VecDeque<Unit>,
    /// Leaders active (or told to lead).
    leaders: u32,
}

/// The group-commit queue of one store.
pub(crate) struct Group {
    queue: Mutex<Queue>,
    max_leaders: u32,
    stats: Mutex<GroupStats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Group {
    /// A queue allowing `max_leaders` concurrent batches (0: no batching,
    /// every operation runs on its own).
    pub(crate) fn new(max_leaders: u32) -> Group {
        Group {
            queue: Mutex::new(Queue::default()),
            max_leaders,
            stats: Mutex::new(GroupStats::default()),
        }
    }

    pub(crate) fn stats(&self) -> GroupStats {
        *lock(&self.stats)
    }

    /// Run `ops` (in order) in group-commit transactions; their answers,
    /// in order, once the transactions holding them have committed.
    pub(crate) fn submit(&self, me: &Inner, ops: Vec<Op>) -> Vec<Result<Answer>> {
        if ops.is_empty() {
            return Vec::new();
        }
        if self.max_leaders == 0 {
            return ops.into_iter().map(|op| alone(me, op)).collect();
        }
        let n = ops.len();
        let (tx, rx) = mpsc::channel();
        let mut slots = {
            let mut q = lock(&self.queue);
            q.units.push_back(Unit { ops, reply: tx });
            if q.leaders < self.max_leaders {
                q.leaders += 1;
                1
            } else {
                0
            }
        };
        let mut answer = None;
        loop {
            if slots == 0 {
                match rx.recv() {
                    Ok(Msg::Done(a)) => {
                        answer = Some(a);
                        break;
                    }
                    Ok(Msg::Lead) => slots += 1,
                    Err(_) => break,
                }
                continue;
            }
            let batch = self.take();
            if batch.is_empty() {
                // Our unit is in another leader's batch: wait for it.
                self.hand_off(slots);
                slots = 0;
                continue;
            }
            self.run(me, batch);
            let mut done = false;
            while let Ok(msg) = rx.try_recv() {
                match msg {
                    Msg::Done(a) => {
                        answer = Some(a);
                        done = true;
                    }
                    Msg::Lead => slots += 1,
                }
            }
            if done {
                break;
            }
        }
        if slots > 0 {
            self.hand_off(slots);
        }
        match answer {
            // In order: a unit's operations run alone only after a batch
            // failed as a whole (then all of them do, in turn).
            Some(replies) => replies
                .into_iter()
                .map(|r| match r {
                    Reply::Answered(a) => a,
                    Reply::Alone(op) => alone(me, op),
                })
                .collect(),
            None => (0..n)
                .map(|_| {
                    Err(Error::Internal(
                        "the group-commit leader went away without answering".into(),
                    ))
                })
                .collect(),
        }
    }

    /// Whole units from the front of the queue, up to the batch size.
    fn take(&self) -> Vec<Unit> {
        let mut q = lock(&self.queue);
        let mut n = 0;
        let mut out = Vec::new();
        while let Some(u) = q.units.front() {
            if n > 0 && n + u.ops.len() > GROUP_COMMIT_BATCH_MAX {
                break;
            }
            n += u.ops.len();
            out.extend(q.units.pop_front());
        }
        out
    }

    /// Give `slots` leader places to the oldest waiting callers, or end them.
    fn hand_off(&self, slots: u32) {
        let mut q = lock(&self.queue);
        let mut i = 0;
        for _ in 0..slots {
            loop {
                match q.units.get(i) {
                    None => {
                        q.leaders -= 1;
                        break;
                    }
                    Some(u) => {
                        if u.reply.send(Msg::Lead).is_ok() {
                            i += 1;
                            break;
                        }
                        // Its caller is gone (cannot happen: callers wait).
                        q.units.remove(i);
                    }
                }
            }
        }
    }

    /// Run one batch and answer every unit of it.
    fn run(&self, me: &Inner, units: Vec<Unit>) {
        let mut shape = Vec::with_capacity(units.len());
        let mut ops = Vec::new();
        let mut replies = Vec::with_capacity(units.len());
        for u in units {
            shape.push(u.ops.len());
            ops.extend(u.ops);
            replies.push(u.reply);
        }
        let total = ops.len();
        let answers =
            catch_unwind(AssertUnwindSafe(|| self.run_ops(me, ops))).unwrap_or_else(|p| {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                (0..total)
                    .map(|_| {
                        Reply::Answered(Err(Error::Internal(format!(
                            "a group-commit batch panicked (nothing of it was committed unless \
                             its commit had returned): {what}"
                        ))))
                    })
                    .collect()
            });
        let mut answers = answers.into_iter();
        for (k, reply) in shape.into_iter().zip(replies) {
            let mine: Vec<_> = answers.by_ref().take(k).collect();
            // A caller always waits for its answer.
            let _ = reply.send(Msg::Done(mine));
        }
    }

    fn run_ops(&self, me: &Inner, ops: Vec<Op>) -> Vec<Reply> {
        if ops.len() == 1 {
            // Nothing to batch: exactly the unbatched path, in the leader
            // (handing a lone operation back to its caller measured 2x
            // slower: it puts several transactions in flight at once).
            return ops
                .into_iter()
                .map(|op| Reply::Answered(alone(me, op)))
                .collect();
        }
        let unknown = Cell::new(false);
        let decided = me.pool.write("a group-commit batch", |tx| {
            unknown.set(false);
            batch(me, tx, &ops, &unknown)
        });
        let mut s = lock(&self.stats);
        s.batches += 1;
        s.ops += ops.len() as u64;
        s.largest = s.largest.max(ops.len() as u64);
        match decided {
            Ok(outcomes) => {
                let deferred = outcomes
                    .iter()
                    .filter(|o| matches!(o, Outcome::Deferred))
                    .count();
                s.deferred += deferred as u64;
                drop(s);
                ops.into_iter()
                    .zip(outcomes)
                    .map(|(op, o)| match o {
                        Outcome::Done(r) => Reply::Answered(r),
                        Outcome::Deferred => Reply::Alone(op),
                    })
                    .collect()
            }
            Err(e) if unknown.get() => {
                // The commit was in flight when the connection broke: each
                // operation may or may not have been applied, so none may
                // run again.
                drop(s);
                ops.iter()
                    .map(|_| Reply::Answered(Err(e.clone())))
                    .collect()
            }
            Err(_) => {
                // Nothing was committed: every operation on its own (each
                // in its caller's thread), so the one that failed the
                // batch fails alone.
                s.fallbacks += 1;
                drop(s);
                ops.into_iter().map(Reply::Alone).collect()
            }
        }
    }
}

/// Run one operation unbatched, in its own transaction.
fn alone(me: &Inner, op: Op) -> Result<Answer> {
    match op {
        Op::Create(t) => me.create_alone(*t).map(Answer::One),
        Op::Apply { task_id, cmd, ctx } => me.apply_alone(&task_id, &cmd, &ctx).map(Answer::One),
        Op::Claim {
            queues,
            cmd,
            limit,
            max_attempts,
            ctx,
        } => me
            .claim_alone(&queues, &cmd, limit, max_attempts, &ctx)
            .map(Answer::Many),
    }
}

/// What the batch decided for one operation.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    /// Its answer, valid once the batch commits.
    Done(Result<Answer>),
    /// Run it on its own after the batch.
    Deferred,
}

/// A task the batch loaded (and locked): its row, the version read, and its
/// state after the operations decided so far.
struct Slot {
    seq: i64,
    read_version: u64,
    task: Task,
    changed: bool,
}

/// A claim candidate walk's result: whether it returned as many rows as
/// asked (so more may exist beyond its last row), and that last row's key.
struct Walk {
    full: bool,
    last: Option<(std::cmp::Reverse<i32>, i64)>,
}

/// The body of a batch's transaction: load, decide, write with COMMIT.
fn batch(
    me: &Inner,
    tx: &mut Tx<'_>,
    ops: &[Op],
    unknown: &Cell<bool>,
) -> Result<Vec<Outcome>, Fail> {
    // What to load.
    let mut ids: Vec<&str> = Vec::new();
    // Distinct queue sets of the claims: (queues, latest time, claims' total
    // limit, the `attempts < $4` bound of their max_attempts).
    let mut sets: Vec<(&[String], i64, i64, i64)> = Vec::new();
    for op in ops {
        match op {
            Op::Apply { task_id, .. } => {
                ids.push(task_id);
            }
            Op::Create(_) => {}
            Op::Claim {
                queues,
                limit,
                max_attempts,
                ctx,
                ..
            } => {
                let now = ctx.at.as_micros();
                let bound = rows::attempts_bound(*max_attempts);
                match sets
                    .iter_mut()
                    .find(|(q, _, _, b)| *q == queues.as_slice() && *b == bound)
                {
                    Some(s) => {
                        s.1 = s.1.max(now);
                        s.2 += *limit as i64;
                    }
                    None => sets.push((queues, now, *limit as i64, bound)),
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    // Each walk is long enough for all the batch's claims of its queues
    // (rows it locks but leases to nobody are skipped by other claimers
    // until the batch commits); a claim that needs more is deferred (see
    // `claim_in_batch`).
    for s in &mut sets {
        s.2 =
            s.2.min(i64::from(leasehold_core::limits::CLAIM_LIMIT_MAX) * 4);
    }

    // One round trip: BEGIN and every read.
    let mut stmts: Vec<(&str, Vec<&(dyn ToSql + Sync)>)> = Vec::new();
    // A batch waits for a row lock at most this long (transaction-local),
    // then fails and each of its operations runs on its own in its
    // caller's thread: a lock held by someone else for long stalls only
    // the operations that need it, not the whole queue behind the leader.
    stmts.push((LOCK_TIMEOUT, Vec::new()));
    if !ids.is_empty() {
        stmts.push((&me.q.get_many_for_update, vec![&ids]));
    }
    let one: Vec<Option<&str>> = sets
        .iter()
        .map(|(q, _, _, _)| {
            if q.len() == 1 {
                Some(q[0].as_str())
            } else {
                None
            }
        })
        .collect();
    for (i, (queues, now, limit, bound)) in sets.iter().enumerate() {
        let q: &(dyn ToSql + Sync) = match &one[i] {
            Some(queue) => queue,
            None => queues,
        };
        let [ready, expired] = if one[i].is_some() {
            &me.q.claim_one
        } else {
            &me.q.claim_many
        };
        stmts.push((ready, vec![q, now, limit]));
        stmts.push((expired, vec![q, now, limit, bound]));
    }
    // A batch of creates only reads nothing: its one statement then goes
    // out alone, atomic without BEGIN (see `Tx::query_commit`).
    let results = if stmts.len() == 1 {
        Vec::new()
    } else {
        tx.query_many(&stmts).map_err(lock_timeout)?
    };
    let mut results = results.into_iter().skip(1);

    // The batch's copy of every row it locked, by task id.
    let mut slots: HashMap<String, Slot> = HashMap::new();
    let mut load = |row: &postgres::Row| -> Result<(), Fail> {
        let (seq, task) = task_from_row(row)?;
        slots.entry(task.task_id.clone()).or_insert(Slot {
            seq,
            read_version: task.version,
            task,
            changed: false,
        });
        Ok(())
    };
    if !ids.is_empty() {
        for row in &results.next().unwrap_or_default() {
            load(row)?;
        }
    }
    let mut walks: Vec<[Walk; 2]> = Vec::with_capacity(sets.len());
    for (_, _, limit, _) in &sets {
        let mut pair = Vec::with_capacity(2);
        for _ in 0..2 {
            let rows = results.next().unwrap_or_default();
            let mut last = None;
            for row in &rows {
                let (seq, task) = task_from_row(row)?;
                last = Some((std::cmp::Reverse(task.priority), seq));
                load(row)?;
            }
            pair.push(Walk {
                full: rows.len() as i64 >= *limit,
                last,
            });
        }
        let expired = pair.pop().expect("two walks");
        let ready = pair.pop().expect("two walks");
        walks.push([ready, expired]);
    }

    // Decide, in queue order.
    let mut outcomes = Vec::with_capacity(ops.len());
    let mut history: Vec<HistoryEntry> = Vec::new();
    // New tasks, in order: (index into ops).
    let mut created: Vec<usize> = Vec::new();
    // Ids and saga ids of the batch's new tasks. Whether the database
    // already holds them is left to the insert (`ON CONFLICT DO NOTHING`):
    // a create it skips runs again on its own, which names what is taken.
    let mut created_ids: HashMap<&str, ()> = HashMap::new();
    let mut created_sagas: HashMap<&str, ()> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let outcome = match op {
            Op::Apply { task_id, cmd, ctx } => match slots.get_mut(task_id.as_str()) {
                None if created_ids.contains_key(task_id.as_str()) => Outcome::Deferred,
                None => Outcome::Done(Err(Error::task_not_found(task_id))),
                Some(slot) => match machine::apply(&slot.task, cmd, ctx) {
                    Ok(t) => {
                        if t.changed {
                            slot.task = t.task.clone();
                            slot.changed = true;
                        }
                        history.extend(t.history);
                        Outcome::Done(Ok(Answer::One(t.task)))
                    }
                    Err(e) => Outcome::Done(Err(e)),
                },
            },
            Op::Create(t) => {
                let task = &t.task;
                if slots.contains_key(&task.task_id)
                    || created_ids.contains_key(task.task_id.as_str())
                {
                    Outcome::Done(Err(Error::AlreadyExists(format!(
                        "task {:?} already exists",
                        task.task_id
                    ))))
                } else if created_sagas.contains_key(task.saga_id.as_str()) {
                    // Its saga is taken by an earlier create of the batch,
                    // but its id may be taken in the database, which the
                    // model reports first: decided on its own afterwards.
                    Outcome::Deferred
                } else {
                    created_ids.insert(&task.task_id, ());
                    created_sagas.insert(&task.saga_id, ());
                    created.push(i);
                    Outcome::Done(Ok(Answer::One(task.clone())))
                }
            }
            Op::Claim {
                queues,
                cmd,
                limit,
                max_attempts,
                ctx,
            } => {
                let bound = rows::attempts_bound(*max_attempts);
                let k = sets
                    .iter()
                    .position(|(q, _, _, b)| *q == queues.as_slice() && *b == bound)
                    .expect("every claim's queue set was walked");
                claim_in_batch(
                    &mut slots,
                    &walks[k],
                    queues,
                    cmd,
                    (*limit, *max_attempts),
                    ctx,
                    &mut history,
                )
            }
        };
        outcomes.push(outcome);
    }

    // Write every changed row, every entry and every new task, with COMMIT.
    let mut w = WriteBatch::default();
    let mut order: Vec<&Slot> = slots.values().filter(|s| s.changed).collect();
    order.sort_by_key(|s| s.seq);
    for s in &order {
        w.add_row(s.seq, s.read_version, &s.task)?;
    }
    for h in &history {
        w.add_history(h, false)?;
    }
    for &i in &created {
        let Op::Create(t) = &ops[i] else {
            unreachable!("created holds creates")
        };
        let h = t.history.as_ref().ok_or_else(|| {
            Error::Internal(format!(
                "insert of task {:?} without a history entry",
                t.task.task_id
            ))
        })?;
        w.add_new(&t.task, h)?;
    }
    let (rows, entries) = w.counts();
    let news = w.new_count();
    if rows == 0 && entries == 0 {
        // Nothing to write: the pool commits (releasing the locks).
        return Ok(outcomes);
    }
    let sent = if news > 0 {
        tx.query_commit(&me.q.write_group, &w.params_group())
    } else if rows == 1 && entries <= 1 {
        tx.query_commit(&me.q.write_one, &w.params_one())
    } else {
        tx.query_commit(&me.q.write_batch, &w.params())
    };
    let sent = match sent {
        Err(Fail::Commit(e)) if e.code().is_none() => {
            unknown.set(true);
            return Err(Fail::Commit(e));
        }
        other => other?,
    };
    let row = match sent {
        Committed::Done(row) => row,
        Committed::RolledBack(e) if e.code() == Some(&SqlState::CARDINALITY_VIOLATION) => {
            return Err(Fail::Again("a task changed between read and write"))
        }
        Committed::RolledBack(e) => return Err(lock_timeout(e)),
    };
    let (updated, inserted): (i64, i64) = (row[0].get(0), row[0].get(1));
    if rows == 1 && news == 0 && updated == 0 && inserted == 0 {
        return Err(Fail::Again("a task changed between read and write"));
    }
    if news > 0 {
        // A new task another transaction's id or saga beat: answered on
        // its own after the commit (it will say which is taken).
        let went_in: Vec<String> = row[0].get(2);
        for &i in &created {
            let Op::Create(t) = &ops[i] else {
                unreachable!("created holds creates")
            };
            if !went_in.contains(&t.task.task_id) {
                outcomes[i] = Outcome::Deferred;
            }
        }
        if updated as usize != rows {
            return Err(Fail::Domain(Error::Internal(format!(
                "committed {updated} rows, expected {rows} (the write statement's own check failed)"
            ))));
        }
    } else if updated as usize != rows || inserted as usize != entries {
        return Err(Fail::Domain(Error::Internal(format!(
            "committed {updated} rows and {inserted} history entries, expected {rows} and \
             {entries} (the write statement's own check failed)"
        ))));
    }
    Ok(outcomes)
}

/// A batch that gave up waiting for a row lock is not a broken connection:
/// roll back (keeping the connection) and let every operation run alone.
fn lock_timeout(e: postgres::Error) -> Fail {
    if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
        return Fail::Domain(Error::Unavailable(format!(
            "a group-commit batch waited too long for a row lock: {e}"
        )));
    }
    Fail::Pg(e)
}

/// Decide one claim of the batch on the batch's rows: the best claimable
/// tasks of its queues (priority descending, then creation order), each
/// through the state machine. Its candidate walks returned at most their
/// limit each; when a walk came back full, rows beyond its last one may
/// exist, so the claim may only take candidates that rank before that row;
/// if it needs more than that, it is deferred (run on its own after the
/// batch) rather than answered from an incomplete picture.
fn claim_in_batch(
    slots: &mut HashMap<String, Slot>,
    walks: &[Walk; 2],
    queues: &[String],
    cmd: &Command,
    (limit, max_attempts): (usize, Option<u32>),
    ctx: &Context,
    history: &mut Vec<HistoryEntry>,
) -> Outcome {
    let horizon = walks.iter().filter(|w| w.full).filter_map(|w| w.last).min();
    let mut candidates: Vec<(std::cmp::Reverse<i32>, i64, &str)> = slots
        .values()
        .filter(|s| {
            queues.contains(&s.task.queue) && s.task.is_claimable_within(ctx.at, max_attempts)
        })
        .map(|s| {
            (
                std::cmp::Reverse(s.task.priority),
                s.seq,
                s.task.task_id.as_str(),
            )
        })
        .collect();
    candidates.sort_unstable();
    let mut picked: Vec<(String, Transition)> = Vec::new();
    let mut short = true;
    for (prio, seq, id) in candidates {
        if picked.len() == limit {
            short = false;
            break;
        }
        if horizon.is_some_and(|h| (prio, seq) > h) {
            break;
        }
        let slot = &slots[id];
        match machine::apply(&slot.task, cmd, ctx) {
            Ok(t) => picked.push((id.to_string(), t)),
            Err(e) if skippable(&e) => continue,
            Err(e) => return Outcome::Done(Err(e)),
        }
    }
    if picked.len() == limit {
        short = false;
    }
    if short && horizon.is_some() {
        // Candidates beyond the walks' rows may exist: decide it alone.
        return Outcome::Deferred;
    }
    let mut out = Vec::with_capacity(picked.len());
    for (id, t) in picked {
        let slot = slots.get_mut(&id).expect("picked from the slots");
        if t.changed {
            slot.task = t.task.clone();
            slot.changed = true;
        }
        history.extend(t.history);
        out.push(t.task);
    }
    Outcome::Done(Ok(Answer::Many(out)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use leasehold_conformance::support::{at, ctx, fence, task};
    use leasehold_core::memory::MemoryStore;
    use leasehold_core::{ClaimRequest, ErrorCode, NewTask, Store};

    use super::*;
    use crate::{testing, PgStore};

    /// An operation given to both the model (called in turn) and one
    /// group-commit unit of the PostgreSQL store.
    #[derive(Clone)]
    enum T {
        Create(NewTask, i64),
        Apply(&'static str, Command, i64),
        Claim(&'static str, u32, i64),
    }

    fn req(owner: &str, limit: u32) -> ClaimRequest {
        ClaimRequest {
            owner: owner.into(),
            queues: vec!["q".into()],
            ttl: Duration::from_secs(60),
            limit,
            max_attempts: None,
        }
    }

    fn acquire(owner: &str, secs: i64) -> Command {
        Command::Acquire {
            owner: owner.into(),
            expires_at: at(secs),
        }
    }

    fn on_model(m: &MemoryStore, op: &T) -> Result<Answer> {
        match op.clone() {
            T::Create(n, s) => m.create(n, &ctx(s)).map(Answer::One),
            T::Apply(id, cmd, s) => m.apply(id, cmd, &ctx(s)).map(Answer::One),
            T::Claim(owner, limit, s) => m.claim(&req(owner, limit), &ctx(s)).map(Answer::Many),
        }
    }

    fn to_op(op: &T) -> Op {
        match op.clone() {
            T::Create(n, s) => Op::Create(Box::new(machine::create(n, &ctx(s)).unwrap())),
            T::Apply(id, cmd, s) => Op::Apply {
                task_id: id.into(),
                cmd,
                ctx: ctx(s),
            },
            T::Claim(owner, limit, s) => {
                let r = req(owner, limit);
                let (queues, expires_at) = r.check(at(s)).unwrap();
                Op::Claim {
                    queues,
                    cmd: acquire(owner, 0).with_expiry(expires_at),
                    limit: limit as usize,
                    max_attempts: r.max_attempts,
                    ctx: ctx(s),
                }
            }
        }
    }

    trait WithExpiry {
        fn with_expiry(self, e: leasehold_core::Timestamp) -> Command;
    }
    impl WithExpiry for Command {
        fn with_expiry(self, e: leasehold_core::Timestamp) -> Command {
            match self {
                Command::Acquire { owner, .. } => Command::Acquire {
                    owner,
                    expires_at: e,
                },
                c => c,
            }
        }
    }

    fn same(a: &Result<Answer>, b: &Result<Answer>) -> bool {
        match (a, b) {
            (Ok(Answer::One(x)), Ok(Answer::One(y))) => x == y,
            (Ok(Answer::Many(x)), Ok(Answer::Many(y))) => x == y,
            (Err(x), Err(y)) => x.code() == y.code(),
            _ => false,
        }
    }

    /// Set up `setup` (one operation at a time) on both, then run `batch` as
    /// one unit on PostgreSQL and in turn on the model: every answer and
    /// every task afterwards must be the model's.
    fn check(setup: &[T], batch: &[T]) -> (PgStore, GroupStats) {
        let cl = testing::shared().expect("PostgreSQL binaries (run with CI=true)");
        let pg = cl.fresh_store();
        let m = MemoryStore::new();
        for op in setup {
            let (a, b) = (on_model(&m, op), pg.submit_one(to_op(op)));
            assert!(same(&a, &b), "setup: model {a:?}, postgres {b:?}");
        }
        let before = pg.group_stats();
        let got = pg.submit(batch.iter().map(to_op).collect());
        let stats = pg.group_stats();
        assert_eq!(stats.batches, before.batches + 1, "ran as one batch");
        for (i, (op, b)) in batch.iter().zip(&got).enumerate() {
            let a = on_model(&m, op);
            assert!(same(&a, b), "op {i}: model {a:?}, postgres {b:?}");
        }
        let page = m.list(&Default::default(), None, Some(1000)).unwrap();
        for t in &page.tasks {
            assert_eq!(pg.get(&t.task_id).unwrap().as_ref(), Some(t));
            assert_eq!(
                pg.history(&t.task_id).unwrap(),
                m.history(&t.task_id).unwrap()
            );
        }
        assert_eq!(pg.counts().unwrap(), m.counts().unwrap());
        (pg, stats)
    }

    fn new(id: &str, prio: i32) -> NewTask {
        task(id).queue("q").priority(prio).build()
    }

    /// Later operations of a batch see the earlier ones' effects: two
    /// acquisitions of one task (the second loses), a heartbeat and a
    /// release by the winner, then claims that must see the released task,
    /// and a note on an unknown task.
    #[test]
    fn a_batch_answers_exactly_as_the_model_does_in_turn() {
        let setup = [
            T::Create(new("a", 5), 0),
            T::Create(new("b", 1), 0),
            T::Create(new("c", 3), 0),
            T::Create(new("d", 0), 0),
        ];
        let batch = [
            T::Apply("a", acquire("w1", 60), 1),
            T::Apply("a", acquire("w2", 60), 1),
            T::Apply(
                "a",
                Command::Heartbeat {
                    fence: fence("w1", 1),
                    expires_at: at(90),
                },
                2,
            ),
            T::Claim("w3", 1, 3),
            T::Apply(
                "a",
                Command::Release {
                    fence: fence("w1", 1),
                },
                4,
            ),
            T::Claim("w4", 2, 5),
            T::Apply(
                "zz",
                Command::Annotate {
                    author: "x".into(),
                    note: "y".into(),
                },
                5,
            ),
            T::Claim("w5", 5, 6),
            T::Claim("w6", 1, 6),
        ];
        let (_, stats) = check(&setup, &batch);
        assert_eq!((stats.fallbacks, stats.largest), (0, batch.len() as u64));
    }

    /// A claim whose walk came back full but whose rows an earlier
    /// operation of the batch took cannot tell whether better rows exist
    /// beyond: it runs on its own after the batch, and still gets the
    /// model's answer.
    #[test]
    fn a_claim_short_of_candidates_is_deferred_and_still_exact() {
        let setup = [
            T::Create(new("a", 9), 0),
            T::Create(new("b", 5), 0),
            T::Create(new("c", 1), 0),
        ];
        let batch = [T::Apply("a", acquire("w1", 60), 1), T::Claim("w2", 1, 1)];
        let (_, stats) = check(&setup, &batch);
        assert_eq!((stats.deferred, stats.fallbacks), (1, 0));
    }

    /// Creates in one batch: a duplicate id within the batch is refused in
    /// Rust, an id taken in the database is skipped by the insert and
    /// answered on its own, a saga taken earlier in the batch too; the
    /// others commit with their first history entry, once.
    #[test]
    fn creates_in_one_batch_duplicates_fail_alone() {
        let setup = [T::Create(new("old", 0), 0)];
        let batch = [
            T::Create(new("n1", 0), 1),
            T::Create(new("n1", 2), 1),
            T::Create(new("old", 0), 1),
            T::Create(task("n2").saga("saga-n1").build(), 1),
            T::Create(new("n3", 0), 1),
            T::Apply("n3", Command::Dispatch, 2),
        ];
        let (pg, stats) = check(&setup, &batch);
        // `old` (insert skipped), n2 (saga), and the dispatch of n3
        // (created in the same batch) ran on their own.
        assert_eq!((stats.deferred, stats.fallbacks), (3, 0));
        assert_eq!(pg.history("n1").unwrap().len(), 1);
    }

    /// A database error (PostgreSQL cannot store a NUL character) aborts
    /// the batch's transaction; every operation then runs on its own, so
    /// only the bad one fails and the others are applied.
    #[test]
    fn a_database_error_fails_only_its_own_operation() {
        let cl = testing::shared().expect("PostgreSQL binaries (run with CI=true)");
        let pg = cl.fresh_store();
        for id in ["a", "b", "c"] {
            pg.create(new(id, 0), &ctx(0)).unwrap();
        }
        let note = |n: &str| Command::Annotate {
            author: "x".into(),
            note: n.into(),
        };
        let got = pg.submit(vec![
            to_op(&T::Apply("a", note("fine"), 1)),
            to_op(&T::Apply("b", note("bad\0note"), 1)),
            to_op(&T::Apply("c", acquire("w", 60), 1)),
            to_op(&T::Create(new("d", 0), 1)),
        ]);
        let codes: Vec<_> = got
            .iter()
            .map(|r| r.as_ref().err().map(Error::code))
            .collect();
        assert_eq!(codes, [None, Some(ErrorCode::InvalidInput), None, None]);
        let s = pg.group_stats();
        assert_eq!((s.batches, s.fallbacks), (1, 1));
        assert_eq!(pg.get("a").unwrap().unwrap().notes.len(), 1);
        assert!(pg.get("b").unwrap().unwrap().notes.is_empty());
        assert_eq!(
            pg.get("c").unwrap().unwrap().lease_owner.as_deref(),
            Some("w")
        );
        assert!(pg.get("d").unwrap().is_some());
        assert_eq!(pg.history("b").unwrap().len(), 1);
    }

    /// A batch that waits for a row lock someone else holds gives up after
    /// its lock timeout; its operations then run on their own in their
    /// callers' threads, so other callers' writes go on while the lock is
    /// held (they would queue behind a stuck leader otherwise).
    #[test]
    fn a_row_lock_held_elsewhere_does_not_stall_other_writers() {
        let cl = testing::shared().expect("PostgreSQL binaries (run with CI=true)");
        let pg = cl.fresh_store();
        for id in ["a", "b", "c"] {
            pg.create(new(id, 0), &ctx(0)).unwrap();
        }
        let note = |n: &str| Command::Annotate {
            author: "x".into(),
            note: n.into(),
        };
        let mut raw = cl.client();
        let mut hold = raw.transaction().unwrap();
        hold.execute(
            &format!(
                "SELECT 1 FROM \"{}\".tasks WHERE task_id = 'a' FOR UPDATE",
                pg.schema()
            ),
            &[],
        )
        .unwrap();
        // One caller, two operations: a batch, which needs the held row.
        let blocked = {
            let pg = pg.clone();
            let ops = vec![
                to_op(&T::Apply("a", note("1"), 1)),
                to_op(&T::Apply("b", note("2"), 1)),
            ];
            std::thread::spawn(move || pg.submit(ops))
        };
        // Wait until that batch has given up (its lock timeout passed).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while pg.group_stats().fallbacks == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the batch never gave up"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Another caller's writes go through while the lock is still held.
        let (tx, rx) = mpsc::channel();
        {
            let pg = pg.clone();
            std::thread::spawn(move || {
                let c = pg.apply("c", note("3"), &ctx(2)).map(|t| t.notes.len());
                let d = pg.create(new("d", 0), &ctx(2)).map(|t| t.version);
                let _ = tx.send((c, d));
            });
        }
        let (c, d) = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("writes to other tasks stalled behind a held row lock");
        assert_eq!((c.unwrap(), d.unwrap()), (1, 1));
        hold.commit().unwrap();
        let got = blocked.join().unwrap();
        assert!(got.iter().all(|r| r.is_ok()), "{got:?}");
        assert_eq!(pg.get("a").unwrap().unwrap().notes.len(), 1);
        assert_eq!(pg.get("b").unwrap().unwrap().notes.len(), 1);
    }

    /// Many threads cycling tasks through one store: their operations are
    /// batched (fewer transactions than operations), and every task is
    /// leased once and completed once.
    #[test]
    fn concurrent_cycles_are_batched_and_every_task_cycles_once() {
        let cl = testing::shared().expect("PostgreSQL binaries (run with CI=true)");
        let pg = cl.fresh_store();
        let n = 600;
        let ops: Vec<Op> = (0..n)
            .map(|i| to_op(&T::Create(new(&format!("t{i}"), 0), 0)))
            .collect();
        assert!(pg.submit(ops).iter().all(|r| r.is_ok()));
        let threads: Vec<_> = (0..12)
            .map(|w| {
                let pg = pg.clone();
                std::thread::spawn(move || {
                    let owner = format!("w{w}");
                    let mut mine = 0;
                    while let Some(t) = pg.claim(&req(&owner, 1), &ctx(1)).unwrap().pop() {
                        let f = fence(&owner, t.lease_token);
                        pg.heartbeat(&t.task_id, &f, at(120), &ctx(2)).unwrap();
                        pg.complete(&t.task_id, None, Some(&f), &ctx(3)).unwrap();
                        mine += 1;
                    }
                    mine
                })
            })
            .collect();
        let total: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, n);
        let counts = pg.counts().unwrap();
        assert_eq!(counts[&leasehold_core::TaskState::Completed], u64::from(n));
        for i in (0..n).step_by(37) {
            let kinds: Vec<_> = pg
                .history(&format!("t{i}"))
                .unwrap()
                .iter()
                .map(|h| h.kind.as_str())
                .collect();
            assert_eq!(kinds, ["created", "leased", "completed"]);
        }
        let s = pg.group_stats();
        assert_eq!(s.fallbacks, 0);
        assert!(s.largest > 1, "nothing was batched: {s:?}");
        assert!(s.ops > s.batches, "{s:?}");
    }
}
