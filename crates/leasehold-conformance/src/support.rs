//! Test support shared by every scenario: fixed instants, a task factory with
//! all-optional fields, and assertions (`expect_err`, `assert_unchanged`).
//!
//! Scenarios never read the wall clock: every instant is an offset in seconds
//! from [`T0`] (2026-06-03T10:00:00Z), so a failure replays exactly.

use std::fmt::Debug;

use leasehold_core::{
    Context, Error, ErrorCode, Fence, HistoryEntry, NewCompensation, NewTask, Result, Store, Task,
    Timestamp,
};

/// The suite's epoch: every scenario's time is an offset from this instant.
pub const T0: &str = "2026-06-03T10:00:00Z";

/// The actor recorded for operator calls in the suite.
pub const OPERATOR: &str = "operator";

/// [`T0`] plus `secs` seconds.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::parse(T0)
        .expect("T0 parses")
        .checked_add_micros(secs * 1_000_000)
        .expect("instant in range")
}

/// [`T0`] plus `secs` seconds plus `micros` microseconds.
pub fn at_micros(secs: i64, micros: i64) -> Timestamp {
    at(secs)
        .checked_add_micros(micros)
        .expect("instant in range")
}

/// An operator context at `T0 + secs`.
pub fn ctx(secs: i64) -> Context {
    Context::new(at(secs), OPERATOR)
}

/// A context at `T0 + secs` for `actor`.
pub fn ctx_as(secs: i64, actor: &str) -> Context {
    Context::new(at(secs), actor)
}

/// A pending compensation `delete_branch` on `target`.
pub fn comp(target: &str) -> NewCompensation {
    NewCompensation::new("delete_branch", target, "undo the branch")
}

/// A fence shorthand.
pub fn fence(owner: &str, token: u64) -> Fence {
    Fence::new(owner, token)
}

/// A task factory with all-optional fields; defaults: saga `saga-<id>`,
/// queue and priority left to the store's defaults, no compensations.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    new: NewTask,
}

/// Start a [`TaskSpec`] for `task_id`.
pub fn task(task_id: &str) -> TaskSpec {
    TaskSpec {
        new: NewTask::new(task_id, format!("saga-{task_id}")),
    }
}

impl TaskSpec {
    /// Use this saga id.
    pub fn saga(mut self, saga_id: &str) -> Self {
        self.new.saga_id = saga_id.to_string();
        self
    }
    /// Use this queue.
    pub fn queue(mut self, queue: &str) -> Self {
        self.new.queue = Some(queue.to_string());
        self
    }
    /// Use this priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.new.priority = Some(priority);
        self
    }
    /// Use this issue number.
    pub fn issue(mut self, issue: i64) -> Self {
        self.new.issue = Some(issue);
        self
    }
    /// Use this branch.
    pub fn branch(mut self, branch: &str) -> Self {
        self.new.branch = Some(branch.to_string());
        self
    }
    /// Use this worktree.
    pub fn worktree(mut self, worktree: &str) -> Self {
        self.new.worktree = Some(worktree.to_string());
        self
    }
    /// Use this metadata.
    pub fn metadata(mut self, metadata: serde_json::Value) -> Self {
        self.new.metadata = Some(metadata);
        self
    }
    /// Add a pending compensation on `target`.
    pub fn compensation(mut self, target: &str) -> Self {
        self.new.compensations.push(comp(target));
        self
    }
    /// The `NewTask` to pass to `create`.
    pub fn build(self) -> NewTask {
        self.new
    }
    /// Create it in `store` at `T0 + secs`, asserting success.
    pub fn create<S: Store + ?Sized>(self, store: &S, secs: i64) -> Task {
        let id = self.new.task_id.clone();
        store
            .create(self.new, &ctx(secs))
            .unwrap_or_else(|e| panic!("creating task {id:?} failed: {e} ({})", e.code()))
    }
}

/// Create a plain task `task_id` at `T0 + secs`.
pub fn create<S: Store + ?Sized>(store: &S, task_id: &str, secs: i64) -> Task {
    task(task_id).create(store, secs)
}

/// Create `task_id` at `T0` and lease it to `owner` at `T0 + secs` until
/// `T0 + secs + ttl_secs`; returns the leased task.
pub fn leased<S: Store + ?Sized>(
    store: &S,
    task_id: &str,
    owner: &str,
    secs: i64,
    ttl_secs: i64,
) -> Task {
    if store.get(task_id).unwrap().is_none() {
        create(store, task_id, 0);
    }
    store
        .acquire_lease(task_id, owner, at(secs + ttl_secs), &ctx(secs))
        .unwrap_or_else(|e| panic!("leasing {task_id:?} to {owner:?} failed: {e}"))
}

/// The current stored task, which must exist.
pub fn get<S: Store + ?Sized>(store: &S, task_id: &str) -> Task {
    store
        .get(task_id)
        .unwrap_or_else(|e| panic!("get {task_id:?} failed: {e}"))
        .unwrap_or_else(|| panic!("task {task_id:?} should exist"))
}

/// The task's history, which must be readable.
pub fn history<S: Store + ?Sized>(store: &S, task_id: &str) -> Vec<HistoryEntry> {
    store
        .history(task_id)
        .unwrap_or_else(|e| panic!("history of {task_id:?} failed: {e}"))
}

/// Assert that `result` is an error with `code` whose message contains every
/// needle (case-insensitive). Returns the error.
#[track_caller]
pub fn expect_err<T: Debug>(result: Result<T>, code: ErrorCode, needles: &[&str]) -> Error {
    let err = match result {
        Ok(v) => panic!("expected {code} error, got Ok({v:#?})"),
        Err(e) => e,
    };
    assert_eq!(
        err.code(),
        code,
        "expected {code}, got {} with message {:?}",
        err.code(),
        err.message()
    );
    let lower = err.message().to_lowercase();
    for needle in needles {
        assert!(
            lower.contains(&needle.to_lowercase()),
            "{code} message {:?} should mention {needle:?}",
            err.message()
        );
    }
    err
}

/// A task and its history as stored at one moment, for [`assert_unchanged`].
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The task id.
    pub task_id: String,
    /// The stored task (None if missing).
    pub task: Option<Task>,
    /// Its serialised form, compared byte for byte.
    pub bytes: Vec<u8>,
    /// The history (empty if missing).
    pub history: Vec<HistoryEntry>,
}

/// Take a [`Snapshot`] of `task_id`.
pub fn snapshot<S: Store + ?Sized>(store: &S, task_id: &str) -> Snapshot {
    let task = store.get(task_id).unwrap();
    let history = if task.is_some() {
        history(store, task_id)
    } else {
        Vec::new()
    };
    Snapshot {
        task_id: task_id.to_string(),
        bytes: serde_json::to_vec(&task).unwrap(),
        task,
        history,
    }
}

/// Assert that the stored task is byte-for-byte what `before` recorded and no
/// history entry was added (SPEC guarantee 5: a rejected operation changes nothing).
#[track_caller]
pub fn assert_unchanged<S: Store + ?Sized>(store: &S, before: &Snapshot) {
    let now = snapshot(store, &before.task_id);
    assert_eq!(
        now.task, before.task,
        "task {:?} changed although the operation was rejected",
        before.task_id
    );
    assert_eq!(
        now.bytes, before.bytes,
        "task {:?} is not byte-for-byte unchanged",
        before.task_id
    );
    assert_eq!(
        now.history, before.history,
        "history of {:?} changed although the operation was rejected",
        before.task_id
    );
}

/// Run `op` and assert it is rejected with `code` (message containing every
/// needle) and that `task_id` is unchanged afterwards.
#[track_caller]
pub fn rejected<S: Store + ?Sized, T: Debug>(
    store: &S,
    task_id: &str,
    code: ErrorCode,
    needles: &[&str],
    op: impl FnOnce(&S) -> Result<T>,
) -> Error {
    let before = snapshot(store, task_id);
    let err = expect_err(op(store), code, needles);
    assert_unchanged(store, &before);
    err
}

/// The ids of `tasks`, in order.
pub fn ids(tasks: &[Task]) -> Vec<String> {
    tasks.iter().map(|t| t.task_id.clone()).collect()
}
