//! Stale-lease maintenance: `stale` lists, `reclaim` recovers. Both read
//! `--at` as "now", so a test (or an operator replaying an incident) can ask
//! what was stale at any instant.

use leasehold_core::limits::RECLAIM_MAX_ATTEMPTS_DEFAULT;
use leasehold_core::{Result, Store};

use super::context;
use crate::args::ReclaimArgs;
use crate::config::Config;
use crate::output::Reply;

/// `stale`: non-terminal tasks whose lease expired at or before `--at`, oldest expiry first.
pub fn stale(store: &dyn Store, cfg: &Config) -> Result<Reply> {
    store.list_stale(cfg.at).map(Reply::Tasks)
}

/// `reclaim`: every stale task back to `dispatched`, or `quarantined` once it
/// has had `--max-attempts` leases. Prints the tasks as they are afterwards.
pub fn reclaim(store: &dyn Store, cfg: &Config, a: ReclaimArgs) -> Result<Reply> {
    let max = a.max_attempts.unwrap_or(RECLAIM_MAX_ATTEMPTS_DEFAULT);
    store.reclaim(max, &context(cfg)).map(Reply::Tasks)
}
