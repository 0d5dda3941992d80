//! Lease commands: `dispatch`, `lease`, `claim`, `heartbeat`, `release`.
//! Worker writes present `--owner` and `--token`; history records the owner.

use leasehold_core::{ClaimRequest, Fence, Result, Store};

use super::context;
use crate::args::{ClaimArgs, FencedArgs, HeartbeatArgs, LeaseArgs};
use crate::config::{expiry, parse_duration, Config};
use crate::output::Reply;

/// `dispatch`: `planned` → `dispatched` (a no-op on a dispatched task).
pub fn dispatch(store: &dyn Store, cfg: &Config, task_id: &str) -> Result<Reply> {
    store
        .dispatch(task_id, &context(cfg))
        .map(|t| Reply::Task(Box::new(t)))
}

/// `lease`: take the lease on one task until `--at + --ttl` or `--expires-at`.
pub fn lease(store: &dyn Store, cfg: &Config, a: LeaseArgs) -> Result<Reply> {
    let expires_at = expiry(
        cfg.at,
        a.expiry.ttl.as_deref(),
        a.expiry.expires_at.as_deref(),
    )?;
    store
        .acquire_lease(&a.task_id, &a.owner, expires_at, &context(cfg))
        .map(|t| Reply::Task(Box::new(t)))
}

/// `claim`: lease up to `--limit` claimable tasks; an array, possibly empty.
pub fn claim(store: &dyn Store, cfg: &Config, a: ClaimArgs) -> Result<Reply> {
    let req = ClaimRequest {
        owner: a.owner,
        queues: a.queues,
        ttl: parse_duration("--ttl", &a.ttl)?,
        limit: a.limit,
        max_attempts: Some(
            a.max_attempts
                .unwrap_or(leasehold_core::limits::RECLAIM_MAX_ATTEMPTS_DEFAULT),
        ),
    };
    store.claim(&req, &context(cfg)).map(Reply::Tasks)
}

/// `heartbeat`: extend the lease named by the fence.
pub fn heartbeat(store: &dyn Store, cfg: &Config, a: HeartbeatArgs) -> Result<Reply> {
    let expires_at = expiry(
        cfg.at,
        a.expiry.ttl.as_deref(),
        a.expiry.expires_at.as_deref(),
    )?;
    let fence = Fence::new(a.owner, a.token);
    store
        .heartbeat(&a.task_id, &fence, expires_at, &context(cfg))
        .map(|t| Reply::Task(Box::new(t)))
}

/// `release`: give the lease back (→ `dispatched`).
pub fn release(store: &dyn Store, cfg: &Config, a: FencedArgs) -> Result<Reply> {
    let fence = Fence::new(a.owner, a.token);
    store
        .release(&a.task_id, &fence, &context(cfg))
        .map(|t| Reply::Task(Box::new(t)))
}
