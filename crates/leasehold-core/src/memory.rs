//! The in-memory backend: the executable model.
//!
//! One mutex around plain collections. It is deliberately the simplest
//! faithful implementation of [`Store`]: the conformance suite runs against it
//! like any other backend, and the model-based property tests check every
//! other backend against it step for step.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::machine::{self, Command, Context, Transition};
use crate::model::*;
use crate::store::*;
use crate::time::Timestamp;

#[derive(Default)]
struct Inner {
    /// Tasks by creation sequence number (creation order).
    tasks: BTreeMap<u64, Task>,
    /// task_id → sequence number.
    by_id: HashMap<String, u64>,
    /// saga_id → task_id.
    sagas: HashMap<String, String>,
    /// History per task_id, oldest first.
    history: HashMap<String, Vec<HistoryEntry>>,
    next_seq: u64,
}

impl Inner {
    fn commit(&mut self, seq: u64, t: Transition) -> Task {
        if let Some(h) = t.history {
            self.history
                .entry(t.task.task_id.clone())
                .or_default()
                .push(h);
        }
        if t.changed {
            if let Some(old) = self.tasks.get(&seq) {
                if old.saga_id != t.task.saga_id {
                    self.sagas.remove(&old.saga_id);
                    self.sagas
                        .insert(t.task.saga_id.clone(), t.task.task_id.clone());
                }
            }
            self.tasks.insert(seq, t.task.clone());
        }
        t.task
    }

    fn insert(&mut self, t: Transition) -> Task {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.by_id.insert(t.task.task_id.clone(), seq);
        self.sagas
            .insert(t.task.saga_id.clone(), t.task.task_id.clone());
        self.commit(seq, t)
    }

    fn apply(&mut self, task_id: &str, cmd: &Command, ctx: &Context) -> Result<Task> {
        let seq = *self
            .by_id
            .get(task_id)
            .ok_or_else(|| Error::task_not_found(task_id))?;
        let t = machine::apply(&self.tasks[&seq], cmd, ctx)?;
        Ok(self.commit(seq, t))
    }

    fn stale(&self, now: Timestamp) -> Vec<(u64, &Task)> {
        let mut v: Vec<(u64, &Task)> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.is_stale(now))
            .map(|(s, t)| (*s, t))
            .collect();
        v.sort_by_key(|(s, t)| (t.lease_expires_at, *s));
        v
    }
}

/// The in-memory store. Cheap to create; lost when dropped.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied change:
        // every mutation is computed first and committed in one step.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn create(&self, new: NewTask, ctx: &Context) -> Result<Task> {
        let t = machine::create(new, ctx)?;
        let mut g = self.lock();
        if g.by_id.contains_key(&t.task.task_id) {
            return Err(Error::AlreadyExists(format!(
                "task {:?} already exists",
                t.task.task_id
            )));
        }
        if let Some(other) = g.sagas.get(&t.task.saga_id) {
            return Err(Error::AlreadyExists(format!(
                "cannot create task {:?}: saga {:?} is already used by task {other:?}",
                t.task.task_id, t.task.saga_id
            )));
        }
        Ok(g.insert(t))
    }

    fn put(&self, task: Task, expected_version: Option<u64>, ctx: &Context) -> Result<Task> {
        let mut g = self.lock();
        let seq = g.by_id.get(&task.task_id).copied();
        let stored = seq.map(|s| &g.tasks[&s]);
        let t = machine::put(stored, task, expected_version, ctx)?;
        if let Some(other) = g.sagas.get(&t.task.saga_id) {
            if *other != t.task.task_id {
                return Err(Error::AlreadyExists(format!(
                    "cannot put task {:?}: saga {:?} is already used by task {other:?}",
                    t.task.task_id, t.task.saga_id
                )));
            }
        }
        Ok(match seq {
            Some(seq) => g.commit(seq, t),
            None => g.insert(t),
        })
    }

    fn apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task> {
        self.lock().apply(task_id, &cmd, ctx)
    }

    fn claim(&self, req: &ClaimRequest, ctx: &Context) -> Result<Vec<Task>> {
        let (queues, expires_at) = req.check(ctx.at)?;
        let mut g = self.lock();
        let mut candidates: Vec<(i32, u64, String)> = g
            .tasks
            .iter()
            .filter(|(_, t)| {
                queues.contains(&t.queue) && t.is_claimable_within(ctx.at, req.max_attempts)
            })
            .map(|(s, t)| (t.priority, *s, t.task_id.clone()))
            .collect();
        candidates.sort_by_key(|(p, s, _)| (std::cmp::Reverse(*p), *s));
        let cmd = Command::Acquire {
            owner: req.owner.clone(),
            expires_at,
        };
        candidates
            .into_iter()
            .take(req.limit as usize)
            .map(|(_, _, id)| g.apply(&id, &cmd, ctx))
            .collect()
    }

    fn reclaim(&self, max_attempts: u32, ctx: &Context) -> Result<Vec<Task>> {
        check_max_attempts(max_attempts)?;
        let mut g = self.lock();
        let ids: Vec<String> = g
            .stale(ctx.at)
            .into_iter()
            .take(crate::limits::RECLAIM_BATCH_MAX as usize)
            .map(|(_, t)| t.task_id.clone())
            .collect();
        let cmd = Command::Reclaim { max_attempts };
        ids.iter().map(|id| g.apply(id, &cmd, ctx)).collect()
    }

    fn get(&self, task_id: &str) -> Result<Option<Task>> {
        let g = self.lock();
        Ok(g.by_id.get(task_id).map(|s| g.tasks[s].clone()))
    }

    fn list(&self, filter: &ListFilter, cursor: Option<&str>, limit: Option<u32>) -> Result<Page> {
        let limit = list_limit(limit)? as usize;
        let after = decode_cursor(cursor)?;
        let g = self.lock();
        let mut rows: Vec<(u64, Task)> = g
            .tasks
            .range(after + 1..)
            .filter(|(_, t)| filter_matches(filter, t))
            .take(limit + 1)
            .map(|(s, t)| (*s, t.clone()))
            .collect();
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
        let g = self.lock();
        Ok(g.tasks
            .values()
            .filter(|t| !t.state.is_terminal())
            .cloned()
            .collect())
    }

    fn list_stale(&self, now: Timestamp) -> Result<Vec<Task>> {
        let g = self.lock();
        Ok(g.stale(now).into_iter().map(|(_, t)| t.clone()).collect())
    }

    fn counts(&self) -> Result<Counts> {
        let g = self.lock();
        let mut c = empty_counts();
        for t in g.tasks.values() {
            *c.entry(t.state).or_default() += 1;
        }
        Ok(c)
    }

    fn history(&self, task_id: &str) -> Result<Vec<HistoryEntry>> {
        let g = self.lock();
        if !g.by_id.contains_key(task_id) {
            return Err(Error::task_not_found(task_id));
        }
        Ok(g.history.get(task_id).cloned().unwrap_or_default())
    }
}

/// Validate `reclaim`'s `max_attempts` (at least 1).
pub fn check_max_attempts(max_attempts: u32) -> Result<()> {
    if max_attempts == 0 {
        return Err(Error::InvalidInput(
            "max_attempts must be at least 1".into(),
        ));
    }
    Ok(())
}
