//! Terminal markers: `complete`, `compensate`, `fail`, `quarantine`.
//! With `--owner O --token N` the write is fenced by that lease; without,
//! it is an operator's call recorded under the actor.

use leasehold_core::{Result, Store};

use super::{compensations, context, fence};
use crate::args::{FailArgs, FinishArgs, QuarantineArgs};
use crate::config::Config;
use crate::output::Reply;

/// `complete`: → `completed`.
pub fn complete(store: &dyn Store, cfg: &Config, a: FinishArgs) -> Result<Reply> {
    store
        .complete(
            &a.task_id,
            a.reason.as_deref(),
            fence(&a.fence).as_ref(),
            &context(cfg),
        )
        .map(|t| Reply::Task(Box::new(t)))
}

/// `compensate`: → `compensated`.
pub fn compensate(store: &dyn Store, cfg: &Config, a: FinishArgs) -> Result<Reply> {
    store
        .compensate(
            &a.task_id,
            a.reason.as_deref(),
            fence(&a.fence).as_ref(),
            &context(cfg),
        )
        .map(|t| Reply::Task(Box::new(t)))
}

/// `fail`: → `failed`, appending `--compensation` if given.
pub fn fail(store: &dyn Store, cfg: &Config, a: FailArgs) -> Result<Reply> {
    let compensation = match &a.compensation {
        Some(flat) => compensations(flat)?.into_iter().next(),
        None => None,
    };
    store
        .fail(
            &a.task_id,
            &a.reason,
            compensation,
            fence(&a.fence).as_ref(),
            &context(cfg),
        )
        .map(|t| Reply::Task(Box::new(t)))
}

/// `quarantine`: → `quarantined`; the reason is required.
pub fn quarantine(store: &dyn Store, cfg: &Config, a: QuarantineArgs) -> Result<Reply> {
    store
        .quarantine(
            &a.task_id,
            &a.reason,
            fence(&a.fence).as_ref(),
            &context(cfg),
        )
        .map(|t| Reply::Task(Box::new(t)))
}
