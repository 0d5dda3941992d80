//! The reaper: a background task that runs `reclaim(max_attempts)` every
//! interval with actor `reaper`, so stale leases go back to `dispatched` (or
//! to `quarantined` after too many attempts) without an operator.
//!
//! Several servers may run reapers against one PostgreSQL database: each
//! reclaim is atomic in the store, so a task is reclaimed once, and a reaper
//! that loses a race simply finds nothing stale.
//!
//! A pass never holds the store's writer for long, even over a large backlog
//! of expired leases (which is exactly when live workers' heartbeats must
//! keep getting through): SQLite reclaims at most
//! `leasehold_sqlite::RECLAIM_TRANSACTION_MAX` (100) tasks per transaction,
//! so heartbeats commit between two chunks; PostgreSQL locks only the rows it
//! reclaims (`SKIP LOCKED`), so heartbeats on other tasks never wait for it.
//! Each store call is also bounded to [`RECLAIM_BATCH_MAX`] tasks, and the
//! pass repeats while calls come back full.

use std::time::Duration;

use leasehold_core::limits::RECLAIM_BATCH_MAX;
use leasehold_core::{Context, Task};
use tokio::sync::watch;

use crate::api::run;
use crate::error::ApiError;
use crate::AppState;

/// The actor name the reaper's history entries carry.
pub const REAPER_ACTOR: &str = "reaper";

/// One reaper pass at the server clock's now: reclaim until nothing stale is left
/// (in batches of at most [`RECLAIM_BATCH_MAX`]). Returns the reclaimed tasks.
pub async fn run_once(state: &AppState) -> Result<Vec<Task>, ApiError> {
    let mut all = Vec::new();
    loop {
        let ctx = Context::new(state.clock.now(), REAPER_ACTOR);
        let max = state.max_attempts;
        let batch = run(state, "reclaim", move |s| s.reclaim(max, &ctx)).await?;
        state.metrics.reclaimed(&batch);
        let full = batch.len() as u64 >= u64::from(RECLAIM_BATCH_MAX);
        all.extend(batch);
        if !full {
            return Ok(all);
        }
    }
}

/// Run passes every `interval` until `stop` turns true. Errors are logged and
/// the next pass tries again (a store that is down comes back).
pub async fn run_loop(state: AppState, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match run_once(&state).await {
                    Ok(tasks) if !tasks.is_empty() => {
                        tracing::info!(reclaimed = tasks.len(), "reaper reclaimed stale tasks");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(code = e.code().as_str(), error = %e.error, "reaper pass failed"),
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}
