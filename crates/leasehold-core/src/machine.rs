//! The task state machine: pure functions from (task, command, context) to a
//! [`Transition`] — the new task and the history entry recording it — or a
//! domain [`Error`]. No I/O, no clock: time arrives in the [`Context`].
//!
//! Backends load the task under a lock (or inside a transaction), call
//! [`apply`], and write the result back only if the task's `version` is still
//! the one they read. A rejected command changes nothing.
//!
//! Checks run in a fixed order so that every backend answers the same error
//! for the same input: input validation, then `terminal`, then fence and
//! lease checks.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits::{COMPENSATIONS_MAX, NOTES_MAX};
use crate::model::*;
use crate::time::Timestamp;
use crate::validate;

/// When an operation happens and who asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// The operation's time. The server fills it from its own clock.
    pub at: Timestamp,
    /// Who asks: an operator's token name, `cli`, `reaper`… Worker writes are
    /// recorded under the fence's owner instead.
    pub actor: String,
}

impl Context {
    /// A context at `at` for `actor`.
    pub fn new(at: Timestamp, actor: impl Into<String>) -> Context {
        Context {
            at,
            actor: actor.into(),
        }
    }
}

/// A change to an existing task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// `planned` → `dispatched`.
    Dispatch,
    /// Take a lease: → `running` with a new token.
    Acquire {
        /// Who takes the lease.
        owner: String,
        /// When it expires; must be after the context's time.
        expires_at: Timestamp,
    },
    /// Extend the current lease.
    Heartbeat {
        /// The lease being extended.
        fence: Fence,
        /// The new expiry; must be later than the current one.
        expires_at: Timestamp,
    },
    /// Give the lease back: → `dispatched`.
    Release {
        /// The lease being released.
        fence: Fence,
    },
    /// → `completed`.
    Complete {
        /// Optional reason.
        reason: Option<String>,
        /// The worker's fence; operators may omit it.
        fence: Option<Fence>,
    },
    /// → `compensated`.
    Compensate {
        /// Optional reason.
        reason: Option<String>,
        /// The worker's fence; operators may omit it.
        fence: Option<Fence>,
    },
    /// → `failed`; needs a compensation, existing or given here.
    Fail {
        /// Why it failed.
        reason: String,
        /// A compensation to append.
        compensation: Option<NewCompensation>,
        /// The worker's fence; operators may omit it.
        fence: Option<Fence>,
    },
    /// → `quarantined`; reason required.
    Quarantine {
        /// Why.
        reason: String,
        /// The worker's fence; operators may omit it.
        fence: Option<Fence>,
    },
    /// Stale task → `dispatched`, or `quarantined` once `attempts >= max_attempts`.
    Reclaim {
        /// Attempts after which the task is quarantined instead.
        max_attempts: u32,
    },
    /// Append a note; allowed on terminal tasks.
    Annotate {
        /// Who writes it.
        author: String,
        /// The text.
        note: String,
    },
    /// Set a compensation's outcome; allowed on terminal tasks.
    RecordCompensation {
        /// Position in `compensations`.
        index: usize,
        /// The outcome.
        status: CompensationStatus,
        /// Free text.
        detail: Option<String>,
    },
}

impl Command {
    /// A short name for logs and metrics, e.g. `heartbeat`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Dispatch => "dispatch",
            Command::Acquire { .. } => "acquire_lease",
            Command::Heartbeat { .. } => "heartbeat",
            Command::Release { .. } => "release",
            Command::Complete { .. } => "complete",
            Command::Compensate { .. } => "compensate",
            Command::Fail { .. } => "fail",
            Command::Quarantine { .. } => "quarantine",
            Command::Reclaim { .. } => "reclaim",
            Command::Annotate { .. } => "annotate",
            Command::RecordCompensation { .. } => "record_compensation",
        }
    }

    /// The fence this command presents, if any.
    pub fn fence(&self) -> Option<&Fence> {
        match self {
            Command::Heartbeat { fence, .. } | Command::Release { fence } => Some(fence),
            Command::Complete { fence, .. }
            | Command::Compensate { fence, .. }
            | Command::Fail { fence, .. }
            | Command::Quarantine { fence, .. } => fence.as_ref(),
            _ => None,
        }
    }
}

/// The outcome of a command: the task to store and the history entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The new task (version and `updated_at` already advanced when changed).
    pub task: Task,
    /// The history entry; `None` for heartbeats and for no-op commands.
    pub history: Option<HistoryEntry>,
    /// False when the command was accepted but changed nothing (e.g. dispatching
    /// a dispatched task): nothing needs to be written.
    pub changed: bool,
}

fn entry(
    before: &Task,
    after: &Task,
    kind: HistoryKind,
    ctx: &Context,
    actor: &str,
    detail: Option<String>,
) -> HistoryEntry {
    HistoryEntry {
        task_id: after.task_id.clone(),
        kind,
        at: ctx.at,
        actor: actor.to_string(),
        from_state: Some(before.state),
        to_state: after.state,
        lease_token: after.lease_token,
        detail,
    }
}

/// Build the stored task for `create` (version 1, `planned`, no lease) and its
/// `created` history entry. Uniqueness is the backend's job.
pub fn create(new: NewTask, ctx: &Context) -> Result<Transition> {
    validate::new_task(&new)?;
    let task = Task {
        task_id: new.task_id,
        saga_id: new.saga_id,
        state: TaskState::Planned,
        queue: new.queue.unwrap_or_else(|| "default".to_string()),
        priority: new.priority.unwrap_or(0),
        issue: new.issue,
        branch: new.branch,
        worktree: new.worktree,
        metadata: new
            .metadata
            .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
        compensations: new
            .compensations
            .into_iter()
            .map(|c| c.into_record(ctx.at))
            .collect(),
        notes: Vec::new(),
        lease_owner: None,
        lease_token: 0,
        lease_acquired_at: None,
        lease_expires_at: None,
        last_heartbeat_at: None,
        attempts: 0,
        terminal_reason: None,
        version: 1,
        created_at: ctx.at,
        updated_at: ctx.at,
    };
    let history = HistoryEntry {
        task_id: task.task_id.clone(),
        kind: HistoryKind::Created,
        at: ctx.at,
        actor: ctx.actor.clone(),
        from_state: None,
        to_state: task.state,
        lease_token: 0,
        detail: None,
    };
    Ok(Transition {
        task,
        history: Some(history),
        changed: true,
    })
}

/// Whether two tasks differ in their lease fields.
fn lease_fields_differ(a: &Task, b: &Task) -> bool {
    a.lease_owner != b.lease_owner
        || a.lease_token != b.lease_token
        || a.lease_acquired_at != b.lease_acquired_at
        || a.lease_expires_at != b.lease_expires_at
        || a.last_heartbeat_at != b.last_heartbeat_at
        || a.attempts != b.attempts
}

/// Decide a `put` (whole-task upsert).
///
/// - Insert (`stored` is `None`): the task is validated like `create` and
///   against [`validate::check_invariants`]; any state is allowed, a lease only
///   on a running or terminal task. Stored at version 1, created now.
/// - Update: a terminal task may change only its `terminal_reason`
///   (`terminal` otherwise); `expected_version`, when given, must be current
///   (`version_conflict`); lease fields (owner, token, times, attempts) are
///   managed by the lease operations and must be passed back unchanged, and
///   a task with an active lease cannot change state (`lease_conflict`: a
///   stale copy never clears a live lease); a `failed` task needs a
///   compensation. `created_at` is kept; version advances by one.
pub fn put(
    stored: Option<&Task>,
    mut task: Task,
    expected_version: Option<u64>,
    ctx: &Context,
) -> Result<Transition> {
    let Some(old) = stored else {
        if let Some(v) = expected_version {
            if v != 0 {
                return Err(Error::VersionConflict(format!(
                    "task {:?} does not exist, so version {v} cannot be current (use 0 or omit it to insert)",
                    task.task_id
                )));
            }
        }
        task.version = 1;
        task.created_at = ctx.at;
        task.updated_at = ctx.at;
        validate::check_invariants(&task)?;
        let history = HistoryEntry {
            task_id: task.task_id.clone(),
            kind: HistoryKind::Imported,
            at: ctx.at,
            actor: ctx.actor.clone(),
            from_state: None,
            to_state: task.state,
            lease_token: task.lease_token,
            detail: Some("inserted by put".to_string()),
        };
        return Ok(Transition {
            task,
            history: Some(history),
            changed: true,
        });
    };
    let tid = old.task_id.clone();
    if task.task_id != old.task_id {
        return Err(Error::InvalidInput(format!(
            "put of task {:?} cannot change its id to {:?}",
            old.task_id, task.task_id
        )));
    }
    // Fields the store owns are taken from the stored task before comparing.
    task.version = old.version;
    task.created_at = old.created_at;
    task.updated_at = old.updated_at;
    if old.state.is_terminal() {
        let mut only_reason = task.clone();
        only_reason.terminal_reason = old.terminal_reason.clone();
        if only_reason != *old {
            return Err(Error::Terminal(format!(
                "task {tid:?} is {}; only its terminal_reason, notes and compensation results may change",
                old.state
            )));
        }
    }
    if let Some(v) = expected_version {
        if v != old.version {
            return Err(Error::VersionConflict(format!(
                "task {tid:?} is at version {}, not {v}",
                old.version
            )));
        }
    }
    if lease_fields_differ(old, &task) {
        return Err(Error::LeaseConflict(format!(
            "put cannot change the lease of task {tid:?} (owner {:?}, token {}); use acquire_lease, heartbeat or release",
            old.lease_owner, old.lease_token
        )));
    }
    if old.has_active_lease(ctx.at) && task.state != old.state {
        return Err(Error::LeaseConflict(format!(
            "task {tid:?} is leased by {:?} until {}; put cannot move it to {}",
            old.lease_owner.as_deref().unwrap_or(""),
            old.lease_expires_at
                .map(|t| t.to_string())
                .unwrap_or_default(),
            task.state
        )));
    }
    if old.state == TaskState::Running
        && task.state != TaskState::Running
        && !task.state.is_terminal()
    {
        return Err(Error::LeaseConflict(format!(
            "task {tid:?} holds an expired lease of {:?}; release or reclaim it before moving it to {}",
            old.lease_owner.as_deref().unwrap_or(""),
            task.state
        )));
    }
    validate::check_invariants(&task)?;
    if task == *old {
        return Ok(Transition {
            task,
            history: None,
            changed: false,
        });
    }
    task.version = old.version + 1;
    task.updated_at = ctx.at;
    let history = entry(old, &task, HistoryKind::Updated, ctx, &ctx.actor, None);
    Ok(Transition {
        task,
        history: Some(history),
        changed: true,
    })
}

fn require_mutable(task: &Task, what: &str) -> Result<()> {
    if task.state.is_terminal() {
        return Err(Error::Terminal(format!(
            "task {:?} is {} and cannot {what}",
            task.task_id, task.state
        )));
    }
    Ok(())
}

fn check_fence(task: &Task, fence: &Fence, what: &str) -> Result<()> {
    let tid = &task.task_id;
    match (&task.lease_owner, task.state) {
        (Some(owner), TaskState::Running) => {
            if *owner != fence.owner {
                Err(Error::LeaseConflict(format!(
                    "cannot {what} task {tid:?}: it is leased by {owner:?}, not {:?}",
                    fence.owner
                )))
            } else if task.lease_token != fence.token {
                Err(Error::LeaseConflict(format!(
                    "cannot {what} task {tid:?}: token {} is stale; the current token is {}",
                    fence.token, task.lease_token
                )))
            } else {
                Ok(())
            }
        }
        _ => Err(Error::LeaseConflict(format!(
            "cannot {what} task {tid:?}: it has no active lease (state {}); expected a lease held by {:?} with token {}",
            task.state, fence.owner, fence.token
        ))),
    }
}

fn check_fenced_unexpired(task: &Task, fence: &Fence, at: Timestamp, what: &str) -> Result<()> {
    check_fence(task, fence, what)?;
    let expires = task.lease_expires_at.expect("running task has an expiry");
    if at >= expires {
        return Err(Error::LeaseConflict(format!(
            "cannot {what} task {:?}: the lease of {:?} (token {}) expired at {expires}",
            task.task_id, fence.owner, fence.token
        )));
    }
    Ok(())
}

fn optional_reason(reason: &Option<String>) -> Result<()> {
    if let Some(r) = reason {
        validate::text("reason", r)?;
    }
    Ok(())
}

/// Apply `cmd` to `task` at `ctx`. Pure: the caller persists the result.
pub fn apply(task: &Task, cmd: &Command, ctx: &Context) -> Result<Transition> {
    let at = ctx.at;
    let tid = task.task_id.as_str();
    let mut next = task.clone();
    let kind;
    let mut actor = ctx.actor.clone();
    let mut detail = None;
    match cmd {
        Command::Dispatch => {
            require_mutable(task, "be dispatched")?;
            match task.state {
                TaskState::Planned => {}
                TaskState::Dispatched => {
                    return Ok(Transition {
                        task: next,
                        history: None,
                        changed: false,
                    })
                }
                _ => {
                    return Err(Error::LeaseConflict(format!(
                        "task {tid:?} is leased by {:?} (token {}); release or reclaim it before dispatching",
                        task.lease_owner.as_deref().unwrap_or(""),
                        task.lease_token
                    )))
                }
            }
            next.state = TaskState::Dispatched;
            kind = HistoryKind::Dispatched;
        }
        Command::Acquire { owner, expires_at } => {
            validate::owner(owner)?;
            if *expires_at <= at {
                return Err(Error::InvalidInput(format!(
                    "lease on task {tid:?} must expire after its acquisition at {at}, got {expires_at}"
                )));
            }
            require_mutable(task, "be leased")?;
            if task.has_active_lease(at) {
                return Err(Error::LeaseConflict(format!(
                    "task {tid:?} is already leased by {:?} until {}",
                    task.lease_owner.as_deref().unwrap_or(""),
                    task.lease_expires_at
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                )));
            }
            next.state = TaskState::Running;
            next.lease_owner = Some(owner.clone());
            next.lease_token = task
                .lease_token
                .checked_add(1)
                .ok_or_else(|| Error::Internal(format!("task {tid:?}: fencing token overflow")))?;
            next.attempts = task.attempts.saturating_add(1);
            next.lease_acquired_at = Some(at);
            next.last_heartbeat_at = Some(at);
            next.lease_expires_at = Some(*expires_at);
            kind = HistoryKind::Leased;
            actor = owner.clone();
            detail = Some(format!("until {expires_at}"));
        }
        Command::Heartbeat { fence, expires_at } => {
            require_mutable(task, "be heartbeated")?;
            check_fenced_unexpired(task, fence, at, "heartbeat")?;
            let current = task.lease_expires_at.expect("checked");
            if *expires_at <= current {
                return Err(Error::LeaseConflict(format!(
                    "heartbeat on task {tid:?} must extend the lease past {current}, got {expires_at}"
                )));
            }
            next.lease_expires_at = Some(*expires_at);
            next.last_heartbeat_at = Some(at);
            next.version = task.version + 1;
            next.updated_at = at;
            return Ok(Transition {
                task: next,
                history: None,
                changed: true,
            });
        }
        Command::Release { fence } => {
            require_mutable(task, "be released")?;
            check_fenced_unexpired(task, fence, at, "release")?;
            next.state = TaskState::Dispatched;
            next.lease_owner = None;
            next.lease_acquired_at = None;
            next.lease_expires_at = None;
            kind = HistoryKind::Released;
            actor = fence.owner.clone();
        }
        Command::Complete { reason, fence } | Command::Compensate { reason, fence } => {
            optional_reason(reason)?;
            let (state, name) = if matches!(cmd, Command::Complete { .. }) {
                (TaskState::Completed, "be completed")
            } else {
                (TaskState::Compensated, "be compensated")
            };
            require_mutable(task, name)?;
            if let Some(f) = fence {
                check_fence(task, f, name.trim_start_matches("be "))?;
                actor = f.owner.clone();
            }
            next.state = state;
            next.terminal_reason = reason.clone();
            kind = if state == TaskState::Completed {
                HistoryKind::Completed
            } else {
                HistoryKind::Compensated
            };
            detail = reason.clone();
        }
        Command::Fail {
            reason,
            compensation,
            fence,
        } => {
            validate::required_text("reason", reason)?;
            if let Some(c) = compensation {
                validate::new_compensation(c)?;
            }
            require_mutable(task, "be failed")?;
            if let Some(f) = fence {
                check_fence(task, f, "fail")?;
                actor = f.owner.clone();
            }
            if let Some(c) = compensation {
                if task.compensations.len() >= COMPENSATIONS_MAX {
                    return Err(Error::InvalidInput(format!(
                        "task {tid:?} already has {COMPENSATIONS_MAX} compensations"
                    )));
                }
                next.compensations.push(c.clone().into_record(at));
            }
            if next.compensations.is_empty() {
                return Err(Error::LeaseConflict(format!(
                    "task {tid:?} cannot be failed without a compensation record; give one with the call"
                )));
            }
            next.state = TaskState::Failed;
            next.terminal_reason = Some(reason.clone());
            kind = HistoryKind::Failed;
            detail = Some(reason.clone());
        }
        Command::Quarantine { reason, fence } => {
            validate::required_text("quarantine reason", reason)?;
            require_mutable(task, "be quarantined")?;
            if let Some(f) = fence {
                check_fence(task, f, "quarantine")?;
                actor = f.owner.clone();
            }
            next.state = TaskState::Quarantined;
            next.terminal_reason = Some(reason.clone());
            kind = HistoryKind::Quarantined;
            detail = Some(reason.clone());
        }
        Command::Reclaim { max_attempts } => {
            require_mutable(task, "be reclaimed")?;
            if !task.is_stale(at) {
                return Err(Error::LeaseConflict(format!(
                    "task {tid:?} is not stale at {at} (lease expires {})",
                    task.lease_expires_at
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "never: no lease".into())
                )));
            }
            let last_owner = task.lease_owner.clone().unwrap_or_default();
            if task.attempts >= *max_attempts {
                let reason = format!(
                    "lease expired after {} attempts (max {max_attempts}); last owner {last_owner:?}",
                    task.attempts
                );
                next.state = TaskState::Quarantined;
                next.terminal_reason = Some(reason.clone());
                kind = HistoryKind::Quarantined;
                detail = Some(reason);
            } else {
                next.state = TaskState::Dispatched;
                next.lease_owner = None;
                next.lease_acquired_at = None;
                next.lease_expires_at = None;
                kind = HistoryKind::Expired;
                detail = Some(format!(
                    "lease of {last_owner:?} (token {}) expired at {}; attempt {} of {max_attempts}",
                    task.lease_token,
                    task.lease_expires_at.map(|t| t.to_string()).unwrap_or_default(),
                    task.attempts
                ));
            }
        }
        Command::Annotate { author, note } => {
            validate::required_text("author", author)?;
            validate::required_text("note", note)?;
            if task.notes.len() >= NOTES_MAX {
                return Err(Error::InvalidInput(format!(
                    "task {tid:?} already has {NOTES_MAX} notes"
                )));
            }
            next.notes.push(Note {
                author: author.clone(),
                note: note.clone(),
                at,
            });
            kind = HistoryKind::Annotated;
            actor = author.clone();
            detail = Some(note.clone());
        }
        Command::RecordCompensation {
            index,
            status,
            detail: d,
        } => {
            if let Some(d) = d {
                validate::text("detail", d)?;
            }
            let n = task.compensations.len();
            let Some(c) = next.compensations.get_mut(*index) else {
                return Err(Error::InvalidInput(format!(
                    "task {tid:?} has {n} compensations; index {index} is out of range"
                )));
            };
            c.status = *status;
            c.detail = d.clone();
            c.updated_at = at;
            kind = HistoryKind::CompensationRecorded;
            detail = Some(match d {
                Some(d) => format!(
                    "compensation {index} ({} {}): {status}: {d}",
                    c.kind, c.target
                ),
                None => format!("compensation {index} ({} {}): {status}", c.kind, c.target),
            });
        }
    }
    next.version = task.version + 1;
    next.updated_at = at;
    debug_assert!(validate::check_invariants(&next).is_ok(), "{next:?}");
    let history = entry(task, &next, kind, ctx, &actor, detail);
    Ok(Transition {
        task: next,
        history: Some(history),
        changed: true,
    })
}
