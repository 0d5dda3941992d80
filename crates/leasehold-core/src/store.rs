//! The `Store` seam: one method per storage operation, implemented by every
//! backend (in-memory, SQLite, PostgreSQL, and the HTTP client).
//!
//! The seam is synchronous and object-safe (`Arc<dyn Store>`): the CLI, tests
//! with real threads and the Python binding call it directly, and the server
//! runs it on its blocking pool. Every write takes a [`Context`] carrying the
//! operation's time and actor, so tests are exact and the server's clock is
//! the only one that decides expiry.
//!
//! Backends implement the required methods by loading the task, calling
//! [`crate::machine`], and persisting the [`crate::Transition`] atomically with
//! its history entry. The provided methods are thin, named wrappers around
//! [`Store::apply`] so that callers read like the SPEC.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits::{
    BATCH_ITEMS_MAX, CLAIM_LIMIT_MAX, CLAIM_QUEUES_MAX, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX,
};
use crate::machine::{Command, Context};
use crate::model::*;
use crate::time::Timestamp;
use crate::validate;

/// Filters for [`Store::list`]. All given filters must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListFilter {
    /// Any of these states (empty: all states).
    #[serde(default)]
    pub states: Vec<TaskState>,
    /// Only this queue.
    #[serde(default)]
    pub queue: Option<String>,
    /// Only tasks whose `lease_owner` is this.
    #[serde(default)]
    pub owner: Option<String>,
    /// Only tasks stale at this instant.
    #[serde(default)]
    pub stale_at: Option<Timestamp>,
}

/// One page of [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Tasks in creation order.
    pub tasks: Vec<Task>,
    /// Pass back as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Count of tasks per state; every state is present, zeros included.
pub type Counts = BTreeMap<TaskState, u64>;

/// Count of tasks per `(queue, state)`; only pairs with at least one task
/// are present.
pub type QueueCounts = BTreeMap<(String, TaskState), u64>;

/// A `claim` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// Who takes the leases.
    pub owner: String,
    /// Queues to claim from; empty means `default`.
    pub queues: Vec<String>,
    /// Lease time to live.
    pub ttl: Duration,
    /// Most tasks to lease, 1..=[`CLAIM_LIMIT_MAX`].
    pub limit: u32,
    /// The reaper's `max_attempts`, when the caller runs one: a task whose
    /// lease has expired after `attempts >= max_attempts` is then not
    /// claimable, so it stays stale until `reclaim` quarantines it. Without
    /// it (`None`) a poison task that crashes every worker could be claimed
    /// again before the reaper runs and exceed `max_attempts`. Tasks without
    /// a lease (never leased, released, reclaimed) are claimable either way.
    /// The server always sets its own reaper's value here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

impl ClaimRequest {
    /// Validate the request and compute the lease expiry at `at`.
    /// Returns the queues to use (`default` when none were given).
    pub fn check(&self, at: Timestamp) -> Result<(Vec<String>, Timestamp)> {
        validate::owner(&self.owner)?;
        if self.limit == 0 || self.limit > CLAIM_LIMIT_MAX {
            return Err(Error::InvalidInput(format!(
                "claim limit must be from 1 to {CLAIM_LIMIT_MAX}, got {}",
                self.limit
            )));
        }
        if self.queues.len() > CLAIM_QUEUES_MAX {
            return Err(Error::InvalidInput(format!(
                "claim names {} queues; at most {CLAIM_QUEUES_MAX} allowed",
                self.queues.len()
            )));
        }
        for q in &self.queues {
            validate::id("queue", q)?;
        }
        if self.max_attempts == Some(0) {
            return Err(Error::InvalidInput(
                "claim max_attempts must be at least 1".into(),
            ));
        }
        if self.ttl.is_zero() {
            return Err(Error::InvalidInput("claim ttl must be positive".into()));
        }
        let expires = at
            .checked_add(self.ttl)
            .ok_or_else(|| Error::InvalidInput(format!("claim ttl {:?} is too large", self.ttl)))?;
        if expires <= at {
            return Err(Error::InvalidInput(
                "claim ttl must be at least one microsecond".into(),
            ));
        }
        let mut queues = if self.queues.is_empty() {
            vec!["default".to_string()]
        } else {
            self.queues.clone()
        };
        queues.sort();
        queues.dedup();
        Ok((queues, expires))
    }
}

/// One item of a batch call ([`Store::apply_many`]): a command for one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    /// The task the command is for.
    pub task_id: String,
    /// What to do to it.
    pub command: Command,
}

/// Refuse a batch of more than [`BATCH_ITEMS_MAX`] items (an empty batch is fine).
pub fn check_batch_len(n: usize) -> Result<()> {
    if n > BATCH_ITEMS_MAX {
        return Err(Error::InvalidInput(format!(
            "a batch may carry at most {BATCH_ITEMS_MAX} items, got {n}"
        )));
    }
    Ok(())
}

/// Validate a list limit (0 or absent means the default) and return it.
pub fn list_limit(limit: Option<u32>) -> Result<u32> {
    match limit {
        None | Some(0) => Ok(LIST_LIMIT_DEFAULT),
        Some(n) if n <= LIST_LIMIT_MAX => Ok(n),
        Some(n) => Err(Error::InvalidInput(format!(
            "list limit must be at most {LIST_LIMIT_MAX}, got {n}"
        ))),
    }
}

/// Decode a list cursor: the creation sequence number of the last task seen.
pub fn decode_cursor(cursor: Option<&str>) -> Result<u64> {
    match cursor {
        None | Some("") => Ok(0),
        Some(c) => c
            .strip_prefix("s")
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| {
                Error::InvalidInput(format!("cursor {c:?} is not a cursor this store issued"))
            }),
    }
}

/// Encode a list cursor from the creation sequence number of the last task on a page.
pub fn encode_cursor(seq: u64) -> String {
    format!("s{seq}")
}

/// A storage backend. Implementations must make each method atomic: it fully
/// applies, or returns an error and changes nothing.
pub trait Store: Send + Sync {
    /// Insert a new task as `planned`, version 1. `already_exists` if its task
    /// id or saga id is taken (the existing task is unchanged).
    fn create(&self, new: NewTask, ctx: &Context) -> Result<Task>;

    /// Upsert a whole task; see [`crate::machine::put`] for the rules.
    fn put(&self, task: Task, expected_version: Option<u64>, ctx: &Context) -> Result<Task>;

    /// Apply a command to one task atomically; `not_found` if it does not exist.
    fn apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task>;

    /// Atomically lease up to `limit` claimable tasks from the given queues:
    /// priority descending, then creation order. Empty when none.
    fn claim(&self, req: &ClaimRequest, ctx: &Context) -> Result<Vec<Task>>;

    /// Reclaim every task stale at `ctx.at` (oldest expiry first): back to
    /// `dispatched`, or `quarantined` once `attempts >= max_attempts`.
    /// Returns the tasks as they are after the change.
    fn reclaim(&self, max_attempts: u32, ctx: &Context) -> Result<Vec<Task>>;

    /// One task, or `None`.
    fn get(&self, task_id: &str) -> Result<Option<Task>>;

    /// Tasks matching `filter` in creation order, after `cursor`, at most `limit`.
    fn list(&self, filter: &ListFilter, cursor: Option<&str>, limit: Option<u32>) -> Result<Page>;

    /// Every non-terminal task, in creation order.
    fn list_in_flight(&self) -> Result<Vec<Task>>;

    /// Non-terminal tasks with `lease_expires_at <= now`, oldest expiry first.
    fn list_stale(&self, now: Timestamp) -> Result<Vec<Task>>;

    /// Number of tasks per state (all states present).
    fn counts(&self) -> Result<Counts>;

    /// Every change to a task, oldest first; `not_found` if the task does not exist.
    fn history(&self, task_id: &str) -> Result<Vec<HistoryEntry>>;

    /// Number of tasks per queue and state (pairs with no task are absent),
    /// e.g. for per-queue gauges. This default pages through every task
    /// with [`Store::list`] (bounded memory, O(n) time); backends with a
    /// counter table override it (SQLite: O(queues × states)).
    fn queue_counts(&self) -> Result<QueueCounts> {
        let mut out = QueueCounts::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.list(
                &ListFilter::default(),
                cursor.as_deref(),
                Some(LIST_LIMIT_MAX),
            )?;
            for t in &page.tasks {
                *out.entry((t.queue.clone(), t.state)).or_default() += 1;
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Get a task or `not_found` naming it.
    fn require(&self, task_id: &str) -> Result<Task> {
        self.get(task_id)?
            .ok_or_else(|| Error::task_not_found(task_id))
    }

    /// `planned` → `dispatched`.
    fn dispatch(&self, task_id: &str, ctx: &Context) -> Result<Task> {
        self.apply(task_id, Command::Dispatch, ctx)
    }

    /// Take a lease until `expires_at`.
    fn acquire_lease(
        &self,
        task_id: &str,
        owner: &str,
        expires_at: Timestamp,
        ctx: &Context,
    ) -> Result<Task> {
        self.apply(
            task_id,
            Command::Acquire {
                owner: owner.to_string(),
                expires_at,
            },
            ctx,
        )
    }

    /// Extend a lease to `expires_at`.
    fn heartbeat(
        &self,
        task_id: &str,
        fence: &Fence,
        expires_at: Timestamp,
        ctx: &Context,
    ) -> Result<Task> {
        self.apply(
            task_id,
            Command::Heartbeat {
                fence: fence.clone(),
                expires_at,
            },
            ctx,
        )
    }

    /// Give a lease back.
    fn release(&self, task_id: &str, fence: &Fence, ctx: &Context) -> Result<Task> {
        self.apply(
            task_id,
            Command::Release {
                fence: fence.clone(),
            },
            ctx,
        )
    }

    /// → `completed`.
    fn complete(
        &self,
        task_id: &str,
        reason: Option<&str>,
        fence: Option<&Fence>,
        ctx: &Context,
    ) -> Result<Task> {
        self.apply(
            task_id,
            Command::Complete {
                reason: reason.map(str::to_string),
                fence: fence.cloned(),
            },
            ctx,
        )
    }

    /// → `compensated`.
    fn compensate(
        &self,
        task_id: &str,
        reason: Option<&str>,
        fence: Option<&Fence>,
        ctx: &Context,
    ) -> Result<Task> {
        self.apply(
            task_id,
            Command::Compensate {
                reason: reason.map(str::to_string),
                fence: fence.cloned(),
            },
            ctx,
        )
    }

    /// → `failed`, appending `compensation` if given.
    fn fail(
        &self,
        task_id: &str,
        reason: &str,
        compensation: Option<NewCompensation>,
        fence: Option<&Fence>,
        ctx: &Context,
    ) -> Result<Task> {
        self.apply(
            task_id,
            Command::Fail {
                reason: reason.to_string(),
                compensation,
                fence: fence.cloned(),
            },
            ctx,
        )
    }

    /// → `quarantined`.
    fn quarantine(
        &self,
        task_id: &str,
        reason: &str,
        fence: Option<&Fence>,
        ctx: &Context,
    ) -> Result<Task> {
        self.apply(
            task_id,
            Command::Quarantine {
                reason: reason.to_string(),
                fence: fence.cloned(),
            },
            ctx,
        )
    }

    /// Append a note.
    fn annotate(&self, task_id: &str, author: &str, note: &str, ctx: &Context) -> Result<Task> {
        self.apply(
            task_id,
            Command::Annotate {
                author: author.to_string(),
                note: note.to_string(),
            },
            ctx,
        )
    }

    /// Apply several commands, each to its own task and each judged on its
    /// own: one answer per item, in order, exactly as if [`Store::apply`] had
    /// been called for each item in turn. A rejected item (wrong fence,
    /// terminal, not found, …) changes nothing and does not affect the
    /// others. The outer error is only for the batch itself (more than
    /// [`BATCH_ITEMS_MAX`] items: nothing applied) or a store failure.
    ///
    /// This default calls `apply` per item; backends override it to write
    /// the whole batch in one transaction (one fsync) — SQLite does.
    fn apply_many(&self, items: Vec<BatchItem>, ctx: &Context) -> Result<Vec<Result<Task>>> {
        check_batch_len(items.len())?;
        Ok(items
            .into_iter()
            .map(|i| self.apply(&i.task_id, i.command, ctx))
            .collect())
    }

    /// Extend many leases to `expires_at` in one call (a fleet worker's
    /// periodic heartbeat), each fenced by its own `(task_id, fence)`.
    fn heartbeat_many(
        &self,
        leases: &[(String, Fence)],
        expires_at: Timestamp,
        ctx: &Context,
    ) -> Result<Vec<Result<Task>>> {
        let items = leases
            .iter()
            .map(|(id, fence)| BatchItem {
                task_id: id.clone(),
                command: Command::Heartbeat {
                    fence: fence.clone(),
                    expires_at,
                },
            })
            .collect();
        self.apply_many(items, ctx)
    }

    /// Complete many leased tasks in one call, each fenced by its own
    /// `(task_id, fence)`.
    fn complete_many(
        &self,
        leases: &[(String, Fence)],
        reason: Option<&str>,
        ctx: &Context,
    ) -> Result<Vec<Result<Task>>> {
        let items = leases
            .iter()
            .map(|(id, fence)| BatchItem {
                task_id: id.clone(),
                command: Command::Complete {
                    reason: reason.map(str::to_string),
                    fence: Some(fence.clone()),
                },
            })
            .collect();
        self.apply_many(items, ctx)
    }

    /// Set a compensation's outcome.
    fn record_compensation(
        &self,
        task_id: &str,
        index: usize,
        status: CompensationStatus,
        detail: Option<&str>,
        ctx: &Context,
    ) -> Result<Task> {
        self.apply(
            task_id,
            Command::RecordCompensation {
                index,
                status,
                detail: detail.map(str::to_string),
            },
            ctx,
        )
    }
}

/// Whether `task` matches `filter` (the model's definition; SQL backends
/// express the same predicate in their queries).
pub fn filter_matches(filter: &ListFilter, task: &Task) -> bool {
    (filter.states.is_empty() || filter.states.contains(&task.state))
        && filter.queue.as_ref().is_none_or(|q| *q == task.queue)
        && filter
            .owner
            .as_ref()
            .is_none_or(|o| task.lease_owner.as_ref() == Some(o))
        && filter.stale_at.is_none_or(|now| task.is_stale(now))
}

/// Counts with every state present at zero.
pub fn empty_counts() -> Counts {
    TaskState::ALL.into_iter().map(|s| (s, 0)).collect()
}

/// An `Arc` of a store is that store: every method, provided ones included,
/// goes to the shared store's own (so its batch and counter overrides are
/// kept when it is used through `Arc<dyn Store>`).
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    crate::delegate_store! {
        to **self;
    }
}
