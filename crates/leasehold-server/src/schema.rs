//! Documentation-only schemas for `/openapi.json`: the core's wire types
//! (task, compensation, note, history entry) described field by field. The
//! core crate stays free of OpenAPI dependencies; `tests/openapi.rs` checks
//! that these schemas name exactly the fields the core serialises.
#![allow(dead_code)]

use std::collections::BTreeMap;

use utoipa::ToSchema;

/// A task saga, with the SPEC's field names.
#[derive(Debug, Clone, ToSchema)]
#[schema(as = Task)]
pub struct TaskDoc {
    /// Unique id: 1–128 chars of `A-Z a-z 0-9 . _ : / -`.
    pub task_id: String,
    /// Unique across tasks; same charset.
    pub saga_id: String,
    /// `planned`, `dispatched`, `running`, `completed`, `failed`, `compensated` or `quarantined`.
    pub state: String,
    /// Queue that `claim` takes it from.
    pub queue: String,
    /// Higher is claimed first.
    pub priority: i32,
    /// External reference (e.g. a tracker issue).
    pub issue: Option<i64>,
    /// E.g. the git branch.
    pub branch: Option<String>,
    /// E.g. the worktree path.
    pub worktree: Option<String>,
    /// Free JSON object, at most 64 KiB serialised.
    #[schema(value_type = Object)]
    pub metadata: BTreeMap<String, String>,
    /// Ordered cleanup records.
    pub compensations: Vec<CompensationDoc>,
    /// Notes, oldest first.
    pub notes: Vec<NoteDoc>,
    /// Owner of the current (or, on terminal tasks, last) lease.
    pub lease_owner: Option<String>,
    /// The fencing token: 0 before the first lease, then strictly increasing.
    pub lease_token: u64,
    /// RFC 3339 UTC.
    pub lease_acquired_at: Option<String>,
    /// RFC 3339 UTC.
    pub lease_expires_at: Option<String>,
    /// RFC 3339 UTC.
    pub last_heartbeat_at: Option<String>,
    /// Number of lease acquisitions so far.
    pub attempts: u32,
    /// Why the task ended (or the last transition's reason).
    pub terminal_reason: Option<String>,
    /// Increases on every change; send it back in `PUT` for compare-and-set.
    pub version: u64,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// A cleanup record.
#[derive(Debug, Clone, ToSchema)]
#[schema(as = Compensation)]
pub struct CompensationDoc {
    /// What kind of cleanup.
    pub kind: String,
    /// What it applies to.
    pub target: String,
    /// Why it is needed.
    pub reason: String,
    /// `pending`, `applied` or `failed`.
    pub status: String,
    /// Free text about the outcome.
    pub detail: Option<String>,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// A note on a task.
#[derive(Debug, Clone, ToSchema)]
#[schema(as = Note)]
pub struct NoteDoc {
    /// Who wrote it.
    pub author: String,
    /// The text.
    pub note: String,
    /// RFC 3339 UTC.
    pub at: String,
}

/// One change to a task.
#[derive(Debug, Clone, ToSchema)]
#[schema(as = HistoryEntry)]
pub struct HistoryEntryDoc {
    /// The task changed.
    pub task_id: String,
    /// `created`, `imported`, `updated`, `dispatched`, `leased`, `released`, `expired`,
    /// `completed`, `failed`, `compensated`, `quarantined`, `annotated`, `compensation_recorded`.
    pub kind: String,
    /// RFC 3339 UTC.
    pub at: String,
    /// Who: the lease owner for worker writes, the author, `reaper`, or the operator.
    pub actor: String,
    /// State before (null for `created`/`imported`).
    pub from_state: Option<String>,
    /// State after.
    pub to_state: String,
    /// The fencing token after the change.
    pub lease_token: u64,
    /// The reason, the note, the compensation outcome.
    pub detail: Option<String>,
}

/// One page of `GET /v1/tasks`.
#[derive(Debug, Clone, ToSchema)]
#[schema(as = Page)]
pub struct PageDoc {
    /// Tasks in creation order.
    pub tasks: Vec<TaskDoc>,
    /// Pass back as `cursor`; null on the last page.
    pub next_cursor: Option<String>,
}
