//! Encoding tasks and history entries to rows and decoding them back.
//!
//! Decoding is strict: an unknown enum text, malformed JSON, an out-of-range
//! integer or timestamp, or a task that breaks
//! [`leasehold_core::validate::check_invariants`] is `internal` (corruption),
//! never a panic and never silently repaired. Every task this crate reads goes
//! through [`RawTask::decode`], including the ones it is about to change, so a
//! corrupt row can never be fed to the state machine.

use std::str::FromStr;

use leasehold_core::validate;
use leasehold_core::{Error, HistoryEntry, HistoryKind, Result, Task, TaskState, Timestamp};
use rusqlite::types::Value;
use rusqlite::Row;

use crate::errors::corrupt;

/// A task row as SQLite returns it, before any interpretation.
pub struct RawTask {
    seq: Value,
    cols: Vec<Value>,
}

/// A history row as SQLite returns it.
pub struct RawHistory {
    cols: Vec<Value>,
}

fn read_values(row: &Row<'_>, n: usize) -> rusqlite::Result<Vec<Value>> {
    (0..n).map(|i| row.get::<_, Value>(i)).collect()
}

impl RawTask {
    /// Read the task columns (`crate::queries`) of one row; never fails on content.
    pub fn read(row: &Row<'_>) -> rusqlite::Result<RawTask> {
        let mut cols = read_values(row, 22)?;
        let seq = cols.remove(0);
        Ok(RawTask { seq, cols })
    }

    /// Interpret the row: `(seq, task)`, or `internal` naming the task and the defect.
    pub fn decode(self) -> Result<(u64, Task)> {
        let mut c = Cols::new(self.cols);
        let task_id = c.text("task_id", "?")?;
        let tid = task_id.clone();
        let tid = tid.as_str();
        let seq = match self.seq {
            Value::Integer(s) if s > 0 => s as u64,
            other => {
                return Err(corrupt(
                    tid,
                    format!("seq {other:?} is not a positive integer"),
                ))
            }
        };
        let saga_id = c.text("saga_id", tid)?;
        let state = TaskState::from_str(&c.text("state", tid)?).map_err(|e| corrupt(tid, e))?;
        let queue = c.text("queue", tid)?;
        let priority = i32::try_from(c.int("priority", tid)?)
            .map_err(|_| corrupt(tid, "priority is outside the i32 range"))?;
        let issue = c.opt_int("issue", tid)?;
        let branch = c.opt_text("branch", tid)?;
        let worktree = c.opt_text("worktree", tid)?;
        let metadata: serde_json::Value = c.json("metadata", tid)?;
        let compensations = c.json("compensations", tid)?;
        let notes = c.json("notes", tid)?;
        let lease_owner = c.opt_text("lease_owner", tid)?;
        let lease_token = c.unsigned("lease_token", tid)?;
        let lease_acquired_at = c.opt_time("lease_acquired_at", tid)?;
        let lease_expires_at = c.opt_time("lease_expires_at", tid)?;
        let last_heartbeat_at = c.opt_time("last_heartbeat_at", tid)?;
        let attempts = u32::try_from(c.int("attempts", tid)?)
            .map_err(|_| corrupt(tid, "attempts is outside the u32 range"))?;
        let terminal_reason = c.opt_text("terminal_reason", tid)?;
        let version = c.unsigned("version", tid)?;
        let created_at = c.time("created_at", tid)?;
        let updated_at = c.time("updated_at", tid)?;
        let task = Task {
            task_id,
            saga_id,
            state,
            queue,
            priority,
            issue,
            branch,
            worktree,
            metadata,
            compensations,
            notes,
            lease_owner,
            lease_token,
            lease_acquired_at,
            lease_expires_at,
            last_heartbeat_at,
            attempts,
            terminal_reason,
            version,
            created_at,
            updated_at,
        };
        // Always on, not only in debug builds: the state machine's correctness
        // rests on these invariants, and the check is cheap next to the I/O.
        validate::check_invariants(&task).map_err(|e| corrupt(tid, e))?;
        Ok((seq, task))
    }
}

impl RawHistory {
    /// Read the history columns (`crate::queries`) of one row.
    pub fn read(row: &Row<'_>) -> rusqlite::Result<RawHistory> {
        Ok(RawHistory {
            cols: read_values(row, 8)?,
        })
    }

    /// Interpret the row, or `internal` naming the task.
    pub fn decode(self) -> Result<HistoryEntry> {
        let mut c = Cols::new(self.cols);
        let task_id = c.text("history task_id", "?")?;
        let tid = task_id.clone();
        let tid = tid.as_str();
        let kind_text = c.text("history kind", tid)?;
        let kind = HistoryKind::parse(&kind_text)
            .ok_or_else(|| corrupt(tid, format!("unknown history kind {kind_text:?}")))?;
        let at = c.time("history at", tid)?;
        let actor = c.text("history actor", tid)?;
        let from_state = c
            .opt_text("history from_state", tid)?
            .map(|s| TaskState::from_str(&s).map_err(|e| corrupt(tid, e)))
            .transpose()?;
        let to_state =
            TaskState::from_str(&c.text("history to_state", tid)?).map_err(|e| corrupt(tid, e))?;
        let lease_token = c.unsigned("history lease_token", tid)?;
        let detail = c.opt_text("history detail", tid)?;
        Ok(HistoryEntry {
            task_id,
            kind,
            at,
            actor,
            from_state,
            to_state,
            lease_token,
            detail,
        })
    }
}

/// Sequential, typed access to a row's values.
struct Cols(std::vec::IntoIter<Value>);

impl Cols {
    fn new(v: Vec<Value>) -> Cols {
        Cols(v.into_iter())
    }

    fn next(&mut self, name: &str, tid: &str) -> Result<Value> {
        self.0
            .next()
            .ok_or_else(|| corrupt(tid, format!("column {name} is missing")))
    }

    fn opt_text(&mut self, name: &str, tid: &str) -> Result<Option<String>> {
        match self.next(name, tid)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s)),
            other => Err(corrupt(tid, format!("{name} is {other:?}, expected text"))),
        }
    }

    fn text(&mut self, name: &str, tid: &str) -> Result<String> {
        self.opt_text(name, tid)?
            .ok_or_else(|| corrupt(tid, format!("{name} is NULL, expected text")))
    }

    fn opt_int(&mut self, name: &str, tid: &str) -> Result<Option<i64>> {
        match self.next(name, tid)? {
            Value::Null => Ok(None),
            Value::Integer(i) => Ok(Some(i)),
            other => Err(corrupt(
                tid,
                format!("{name} is {other:?}, expected an integer"),
            )),
        }
    }

    fn int(&mut self, name: &str, tid: &str) -> Result<i64> {
        self.opt_int(name, tid)?
            .ok_or_else(|| corrupt(tid, format!("{name} is NULL, expected an integer")))
    }

    fn unsigned(&mut self, name: &str, tid: &str) -> Result<u64> {
        let i = self.int(name, tid)?;
        u64::try_from(i).map_err(|_| corrupt(tid, format!("{name} is negative ({i})")))
    }

    fn opt_time(&mut self, name: &str, tid: &str) -> Result<Option<Timestamp>> {
        self.opt_int(name, tid)?
            .map(|m| {
                Timestamp::from_micros(m).ok_or_else(|| {
                    corrupt(
                        tid,
                        format!("{name} {m} is not a timestamp in years 1 to 9999"),
                    )
                })
            })
            .transpose()
    }

    fn time(&mut self, name: &str, tid: &str) -> Result<Timestamp> {
        self.opt_time(name, tid)?
            .ok_or_else(|| corrupt(tid, format!("{name} is NULL, expected a timestamp")))
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self, name: &str, tid: &str) -> Result<T> {
        let text = self.text(name, tid)?;
        serde_json::from_str(&text)
            .map_err(|e| corrupt(tid, format!("{name} is not valid JSON: {e}")))
    }
}

/// A task's values in column order, without `seq`, ready to bind.
pub fn task_values(t: &Task) -> Result<Vec<Value>> {
    let tid = &t.task_id;
    let json = |name: &str, r: serde_json::Result<String>| {
        r.map(Value::Text)
            .map_err(|e| Error::Internal(format!("cannot serialise {name} of task {tid:?}: {e}")))
    };
    let big = |name: &str, v: u64| {
        i64::try_from(v).map(Value::Integer).map_err(|_| {
            Error::InvalidInput(format!(
                "{name} of task {tid:?} is {v}; the SQLite backend stores at most {}",
                i64::MAX
            ))
        })
    };
    let text = |s: &str| Value::Text(s.to_string());
    let opt_text = |s: &Option<String>| s.as_deref().map_or(Value::Null, text);
    let opt_time = |s: Option<Timestamp>| s.map_or(Value::Null, |t| Value::Integer(t.as_micros()));
    Ok(vec![
        text(&t.task_id),
        text(&t.saga_id),
        text(t.state.as_str()),
        text(&t.queue),
        Value::Integer(t.priority.into()),
        t.issue.map_or(Value::Null, Value::Integer),
        opt_text(&t.branch),
        opt_text(&t.worktree),
        json("metadata", serde_json::to_string(&t.metadata))?,
        json("compensations", serde_json::to_string(&t.compensations))?,
        json("notes", serde_json::to_string(&t.notes))?,
        opt_text(&t.lease_owner),
        big("lease_token", t.lease_token)?,
        opt_time(t.lease_acquired_at),
        opt_time(t.lease_expires_at),
        opt_time(t.last_heartbeat_at),
        Value::Integer(t.attempts.into()),
        opt_text(&t.terminal_reason),
        big("version", t.version)?,
        Value::Integer(t.created_at.as_micros()),
        Value::Integer(t.updated_at.as_micros()),
    ])
}

/// A history entry's values in column order, ready to bind.
pub fn history_values(h: &HistoryEntry) -> Result<Vec<Value>> {
    let token = i64::try_from(h.lease_token).map_err(|_| {
        Error::InvalidInput(format!(
            "lease_token of task {:?} is {}; the SQLite backend stores at most {}",
            h.task_id,
            h.lease_token,
            i64::MAX
        ))
    })?;
    Ok(vec![
        Value::Text(h.task_id.clone()),
        Value::Text(h.kind.as_str().to_string()),
        Value::Integer(h.at.as_micros()),
        Value::Text(h.actor.clone()),
        h.from_state
            .map_or(Value::Null, |s| Value::Text(s.as_str().to_string())),
        Value::Text(h.to_state.as_str().to_string()),
        Value::Integer(token),
        h.detail.clone().map_or(Value::Null, Value::Text),
    ])
}
