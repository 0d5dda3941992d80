//! Reading tasks and writing their audit metadata: `create`, `get`, `list`,
//! `counts`, `history`, `annotate`, `compensation`.

use leasehold_core::{CompensationStatus, Error, ListFilter, NewTask, Result, Store, TaskState};

use super::{compensations, context};
use crate::args::{AnnotateArgs, CompensationArgs, CreateArgs, ListArgs};
use crate::config::Config;
use crate::output::Reply;

/// `create`: insert a planned task.
pub fn create(store: &dyn Store, cfg: &Config, a: CreateArgs) -> Result<Reply> {
    let metadata = match &a.metadata {
        None => None,
        Some(text) => Some(serde_json::from_str::<serde_json::Value>(text).map_err(|e| {
            Error::InvalidInput(format!(
                "--metadata of task {:?} is not valid JSON (expected an object like {{\"k\": 1}}): {e}",
                a.task_id
            ))
        })?),
    };
    let new = NewTask {
        task_id: a.task_id,
        saga_id: a.saga,
        queue: a.queue,
        priority: a.priority,
        issue: a.issue,
        branch: a.branch,
        worktree: a.worktree,
        metadata,
        compensations: compensations(&a.compensation)?,
    };
    store
        .create(new, &context(cfg))
        .map(|t| Reply::Task(Box::new(t)))
}

/// `get`: one task or `not_found`.
pub fn get(store: &dyn Store, task_id: &str) -> Result<Reply> {
    store.require(task_id).map(|t| Reply::Task(Box::new(t)))
}

/// `list`: one page in creation order.
pub fn list(store: &dyn Store, cfg: &Config, a: ListArgs) -> Result<Reply> {
    let states = a
        .states
        .iter()
        .map(|s| s.parse::<TaskState>())
        .collect::<Result<Vec<_>>>()
        .map_err(|e| Error::InvalidInput(format!("--state: {}", e.message())))?;
    let filter = ListFilter {
        states,
        queue: a.queue,
        owner: a.owner,
        stale_at: a.stale.then_some(cfg.at),
    };
    store
        .list(&filter, a.cursor.as_deref(), a.limit)
        .map(Reply::Page)
}

/// `counts`: tasks per state, every state present.
pub fn counts(store: &dyn Store) -> Result<Reply> {
    store.counts().map(Reply::Counts)
}

/// `history`: every change, oldest first; `not_found` for an unknown task.
pub fn history(store: &dyn Store, task_id: &str) -> Result<Reply> {
    store.history(task_id).map(Reply::History)
}

/// `annotate`: append a note (the author defaults to the actor).
pub fn annotate(store: &dyn Store, cfg: &Config, a: AnnotateArgs) -> Result<Reply> {
    let author = a.author.unwrap_or_else(|| cfg.actor.clone());
    store
        .annotate(&a.task_id, &author, &a.note, &context(cfg))
        .map(|t| Reply::Task(Box::new(t)))
}

/// `compensation`: record a compensation's outcome (`applied` or `failed`).
pub fn compensation(store: &dyn Store, cfg: &Config, a: CompensationArgs) -> Result<Reply> {
    let status = match a.status.as_str() {
        "applied" => CompensationStatus::Applied,
        "failed" => CompensationStatus::Failed,
        other => {
            return Err(Error::InvalidInput(format!(
                "--status {other:?} for compensation {} of task {:?}: expected applied or failed",
                a.index, a.task_id
            )))
        }
    };
    store
        .record_compensation(
            &a.task_id,
            a.index,
            status,
            a.detail.as_deref(),
            &context(cfg),
        )
        .map(|t| Reply::Task(Box::new(t)))
}
