//! The task saga and its parts, with the SPEC's field names (also on the wire).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::time::Timestamp;

/// Where a task is in its life. See `docs/state-machine.md` for every edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Created (by `create`, or `put`/`import`), not yet offered to workers.
    /// Claimable. Left by `dispatch`, `acquire_lease`/`claim`, or a terminal marker.
    Planned,
    /// Offered to workers: by `dispatch`, by `release`, or by `reclaim` of an
    /// expired lease. Claimable.
    Dispatched,
    /// Leased: a worker holds (or held, if expired) the lease named by
    /// `lease_owner` and `lease_token`. Entered by `acquire_lease`/`claim`; left
    /// by `release`, `reclaim` once the lease expired, or a terminal marker.
    /// Claimable again once the lease has expired.
    Running,
    /// Terminal: the work succeeded (`complete`).
    Completed,
    /// Terminal: the work failed; always carries at least one compensation (`fail`).
    Failed,
    /// Terminal: the saga's cleanup ran (`compensate`).
    Compensated,
    /// Terminal: set aside for a person (`quarantine`, or `reclaim` after too many attempts).
    Quarantined,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 7] = [
        TaskState::Planned,
        TaskState::Dispatched,
        TaskState::Running,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Compensated,
        TaskState::Quarantined,
    ];

    /// Terminal states never change again (except audit metadata).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed
                | TaskState::Failed
                | TaskState::Compensated
                | TaskState::Quarantined
        )
    }

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Planned => "planned",
            TaskState::Dispatched => "dispatched",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Compensated => "compensated",
            TaskState::Quarantined => "quarantined",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "unknown state {s:?}; expected one of planned, dispatched, running, completed, failed, compensated, quarantined"
                ))
            })
    }
}

/// The outcome of one compensation (cleanup) record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompensationStatus {
    /// Not yet run.
    Pending,
    /// Run successfully.
    Applied,
    /// Run and failed.
    Failed,
}

impl CompensationStatus {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CompensationStatus::Pending => "pending",
            CompensationStatus::Applied => "applied",
            CompensationStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for CompensationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CompensationStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(CompensationStatus::Pending),
            "applied" => Ok(CompensationStatus::Applied),
            "failed" => Ok(CompensationStatus::Failed),
            _ => Err(Error::InvalidInput(format!(
                "unknown compensation status {s:?}; expected pending, applied or failed"
            ))),
        }
    }
}

/// A cleanup the task owes if its saga is unwound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compensation {
    /// What kind of cleanup, e.g. `delete_branch`.
    pub kind: String,
    /// What it applies to, e.g. the branch name.
    pub target: String,
    /// Why it is needed.
    pub reason: String,
    /// Its outcome so far.
    pub status: CompensationStatus,
    /// Free text about the outcome.
    #[serde(default)]
    pub detail: Option<String>,
    /// When the record was added or its outcome last recorded.
    pub updated_at: Timestamp,
}

/// A compensation as a caller gives it: status starts `pending`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCompensation {
    /// What kind of cleanup.
    pub kind: String,
    /// What it applies to.
    pub target: String,
    /// Why it is needed.
    pub reason: String,
}

impl NewCompensation {
    /// Shorthand constructor.
    pub fn new(
        kind: impl Into<String>,
        target: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        NewCompensation {
            kind: kind.into(),
            target: target.into(),
            reason: reason.into(),
        }
    }

    /// The stored record, pending, stamped at `at`.
    pub fn into_record(self, at: Timestamp) -> Compensation {
        Compensation {
            kind: self.kind,
            target: self.target,
            reason: self.reason,
            status: CompensationStatus::Pending,
            detail: None,
            updated_at: at,
        }
    }
}

/// An operator's or worker's note on a task; allowed on terminal tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Who wrote it.
    pub author: String,
    /// The text.
    pub note: String,
    /// When.
    pub at: Timestamp,
}

/// A task saga as stored. Field names are the SPEC's, on the wire too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Unique id: 1–128 chars of `A-Z a-z 0-9 . _ : / -`.
    pub task_id: String,
    /// Unique across tasks; same charset.
    pub saga_id: String,
    /// Where the task is in its life.
    pub state: TaskState,
    /// Queue that `claim` takes it from.
    pub queue: String,
    /// Higher is claimed first.
    pub priority: i32,
    /// External reference (e.g. a tracker issue).
    pub issue: Option<i64>,
    /// E.g. the git branch the task works on.
    pub branch: Option<String>,
    /// E.g. the worktree path.
    pub worktree: Option<String>,
    /// Free JSON object, at most 64 KiB serialised.
    pub metadata: serde_json::Value,
    /// Ordered cleanup records.
    pub compensations: Vec<Compensation>,
    /// Notes, oldest first.
    #[serde(default)]
    pub notes: Vec<Note>,
    /// Owner of the current (or, on terminal tasks, last) lease.
    pub lease_owner: Option<String>,
    /// The fencing token: 0 before the first lease, then strictly increasing.
    pub lease_token: u64,
    /// When the current lease was acquired.
    pub lease_acquired_at: Option<Timestamp>,
    /// When the current lease expires.
    pub lease_expires_at: Option<Timestamp>,
    /// Last heartbeat (or acquisition) of the current lease.
    pub last_heartbeat_at: Option<Timestamp>,
    /// Number of lease acquisitions so far.
    pub attempts: u32,
    /// Why the task ended (or any reason given with the last transition).
    pub terminal_reason: Option<String>,
    /// Increases on every change; for compare-and-set.
    pub version: u64,
    /// When the task was created.
    pub created_at: Timestamp,
    /// When the task last changed.
    pub updated_at: Timestamp,
}

impl Task {
    /// Whether the task holds a lease that has not expired at `now`.
    pub fn has_active_lease(&self, now: Timestamp) -> bool {
        self.state == TaskState::Running
            && self.lease_owner.is_some()
            && self.lease_expires_at.is_some_and(|e| e > now)
    }

    /// Stale: not terminal and `lease_expires_at <= now`.
    pub fn is_stale(&self, now: Timestamp) -> bool {
        !self.state.is_terminal() && self.lease_expires_at.is_some_and(|e| e <= now)
    }

    /// Claimable: not terminal, and no lease or an expired one.
    pub fn is_claimable(&self, now: Timestamp) -> bool {
        !self.state.is_terminal() && !self.has_active_lease(now)
    }

    /// Whether `claim` with the reaper's `max_attempts` may lease the task:
    /// claimable, and not a stale lease that used up its attempts (that one
    /// is left for `reclaim` to quarantine).
    pub fn is_claimable_within(&self, now: Timestamp, max_attempts: Option<u32>) -> bool {
        self.is_claimable(now)
            && !(self.is_stale(now) && max_attempts.is_some_and(|max| self.attempts >= max))
    }

    /// Whether `fence` is current: running under that owner and that token,
    /// also past expiry, as long as nobody acquired, released or reclaimed since.
    pub fn fence_is_current(&self, fence: &Fence) -> bool {
        self.state == TaskState::Running
            && self.lease_owner.as_deref() == Some(fence.owner.as_str())
            && self.lease_token == fence.token
    }
}

/// What a caller gives to `create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    /// Unique id.
    pub task_id: String,
    /// Unique saga id.
    pub saga_id: String,
    /// Queue; `default` when absent.
    #[serde(default)]
    pub queue: Option<String>,
    /// Priority; 0 when absent.
    #[serde(default)]
    pub priority: Option<i32>,
    /// External reference.
    #[serde(default)]
    pub issue: Option<i64>,
    /// Branch.
    #[serde(default)]
    pub branch: Option<String>,
    /// Worktree.
    #[serde(default)]
    pub worktree: Option<String>,
    /// JSON object; `{}` when absent.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Initial compensation records (pending).
    #[serde(default)]
    pub compensations: Vec<NewCompensation>,
}

impl NewTask {
    /// A task with just its ids; everything else defaulted.
    pub fn new(task_id: impl Into<String>, saga_id: impl Into<String>) -> NewTask {
        NewTask {
            task_id: task_id.into(),
            saga_id: saga_id.into(),
            queue: None,
            priority: None,
            issue: None,
            branch: None,
            worktree: None,
            metadata: None,
            compensations: Vec::new(),
        }
    }
}

/// (owner, token) presented by a worker on every fenced write.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fence {
    /// The lease owner.
    pub owner: String,
    /// The fencing token issued with the lease.
    pub token: u64,
}

impl Fence {
    /// Shorthand constructor.
    pub fn new(owner: impl Into<String>, token: u64) -> Fence {
        Fence {
            owner: owner.into(),
            token,
        }
    }
}

/// What kind of change a history entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// `create`.
    Created,
    /// `import` from the seed's database, or `put` inserting a task.
    Imported,
    /// `put` updating a task.
    Updated,
    /// `dispatch`.
    Dispatched,
    /// `acquire_lease` or `claim`.
    Leased,
    /// `release`.
    Released,
    /// `reclaim` of an expired lease back to `dispatched`.
    Expired,
    /// `complete`.
    Completed,
    /// `fail`.
    Failed,
    /// `compensate`.
    Compensated,
    /// `quarantine`, or `reclaim` past max attempts.
    Quarantined,
    /// `annotate`.
    Annotated,
    /// `record_compensation`.
    CompensationRecorded,
}

impl HistoryKind {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryKind::Created => "created",
            HistoryKind::Imported => "imported",
            HistoryKind::Updated => "updated",
            HistoryKind::Dispatched => "dispatched",
            HistoryKind::Leased => "leased",
            HistoryKind::Released => "released",
            HistoryKind::Expired => "expired",
            HistoryKind::Completed => "completed",
            HistoryKind::Failed => "failed",
            HistoryKind::Compensated => "compensated",
            HistoryKind::Quarantined => "quarantined",
            HistoryKind::Annotated => "annotated",
            HistoryKind::CompensationRecorded => "compensation_recorded",
        }
    }

    /// Parse a stable name.
    pub fn parse(name: &str) -> Option<HistoryKind> {
        use HistoryKind::*;
        [
            Created,
            Imported,
            Updated,
            Dispatched,
            Leased,
            Released,
            Expired,
            Completed,
            Failed,
            Compensated,
            Quarantined,
            Annotated,
            CompensationRecorded,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

impl fmt::Display for HistoryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change to a task, written in the same transaction as the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The task changed.
    pub task_id: String,
    /// What happened.
    pub kind: HistoryKind,
    /// When (the operation's time).
    pub at: Timestamp,
    /// Who: the lease owner for worker writes, the note's author, `reaper`, or the operator.
    pub actor: String,
    /// State before (None for `created`/`imported`).
    pub from_state: Option<TaskState>,
    /// State after.
    pub to_state: TaskState,
    /// The task's fencing token after the change.
    pub lease_token: u64,
    /// Free text: the reason, the note, the compensation outcome.
    pub detail: Option<String>,
}
