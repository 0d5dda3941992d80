//! The batch routes: `POST /v1/heartbeats` and `POST /v1/completions`.
//!
//! A fleet worker holding many leases extends or completes all of them in
//! one request instead of one request each. Each item is judged on its own,
//! exactly as the single routes (`/v1/tasks/{id}/heartbeat`, `/complete`)
//! would judge it, and gets its own answer in the reply, in order: a
//! rejected item (wrong fence, terminal, missing, or forbidden to this
//! worker) changes nothing and does not affect the others, and is not an
//! HTTP error. Only the batch itself can fail the request: more than
//! [`leasehold_core::limits::BATCH_ITEMS_MAX`] items or a bad TTL (422,
//! nothing applied), a reader token (403), or a store failure.
//!
//! Authorisation is per item and uses the single routes' rules: a worker
//! token may present only its own name as owner ([`Caller::owner`]) and may
//! write only to tasks not leased by another owner
//! ([`crate::api::worker_may_write_task`]); operators may present any owner.
//! The store call is [`Store::heartbeat_many`] / [`Store::complete_many`]
//! over the items that passed (SQLite writes them through group commit,
//! each as its own operation). Metrics count every item under the op
//! `heartbeat_many` or `complete_many` with its outcome.

use axum::extract::State;
use axum::Json;
use leasehold_core::{store, validate, Error, ErrorCode, Fence, Store, Task, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::{expiry, worker_may_write_task};
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::schema::TaskDoc;
use crate::AppState;

/// One lease named in a batch: the task and the fence that holds it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchLease {
    /// The task.
    pub task_id: String,
    /// Lease owner; default the token's name. A worker can only be itself.
    #[serde(default)]
    pub owner: Option<String>,
    /// The fencing token of the lease.
    pub token: u64,
}

/// `POST /v1/heartbeats`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatsBody {
    /// The leases to extend, at most 1,000.
    pub leases: Vec<BatchLease>,
    /// New time to live from now for every lease, 100 to 86,400,000 ms.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// Absolute expiry instead of `ttl_ms`; only with `trust_client_clock` (tests).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Timestamp>,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionsBody {
    /// The leased tasks to complete, at most 1,000.
    pub leases: Vec<BatchLease>,
    /// Terminal reason recorded on every task.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Why one item of a batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ItemError {
    /// The stable SPEC code, e.g. `lease_conflict`.
    pub code: String,
    /// What went wrong, naming the task and what was expected.
    pub message: String,
}

impl ItemError {
    fn of(e: &Error) -> ItemError {
        let code = e.code();
        let message = if code == ErrorCode::Internal {
            // As for whole requests: details are logged, never sent.
            tracing::error!(error = %e, "internal error in a batch item");
            "internal error; the server logged the details with this request's id".to_string()
        } else {
            e.message().to_string()
        };
        ItemError {
            code: code.as_str().to_string(),
            message,
        }
    }
}

/// One item's answer: the task after the change, or the error.
#[derive(Debug, Clone, Serialize)]
pub enum ItemResult {
    /// The item applied; the task as stored now.
    #[serde(rename = "task")]
    Task(Box<Task>),
    /// The item was rejected and changed nothing.
    #[serde(rename = "error")]
    Error(ItemError),
}

/// Documentation shape of [`ItemResult`]: exactly one member is present.
#[derive(Debug, Clone, ToSchema)]
#[schema(as = BatchItemResult)]
#[allow(dead_code)]
pub struct ItemResultDoc {
    /// Present when the item applied.
    pub task: Option<TaskDoc>,
    /// Present when the item was rejected (nothing changed for it).
    pub error: Option<ItemError>,
}

/// The reply of a batch route: one result per item, in the request's order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchReply {
    /// One entry per item, in order.
    #[schema(value_type = Vec<ItemResultDoc>)]
    pub results: Vec<ItemResult>,
}

impl BatchReply {
    fn from_results(results: Vec<Result<Task, Error>>) -> BatchReply {
        BatchReply {
            results: results
                .into_iter()
                .map(|r| match r {
                    Ok(t) => ItemResult::Task(Box::new(t)),
                    Err(e) => ItemResult::Error(ItemError::of(&e)),
                })
                .collect(),
        }
    }
}

/// The checks that need no store: the item's id and the owner the caller
/// may present (the single routes' `TaskId` extractor and `Caller::owner`).
fn check_item(caller: &Caller, item: BatchLease) -> Result<(String, Fence), Error> {
    if let Err(e) = validate::id("task_id", &item.task_id) {
        // Text that is not a valid id names no task, as on the single routes.
        return Err(Error::NotFound(format!(
            "no task has id {:?}: {}",
            item.task_id.chars().take(160).collect::<String>(),
            e.message()
        )));
    }
    let owner = caller.owner(item.owner).map_err(|e| e.error)?;
    Ok((item.task_id, Fence::new(owner, item.token)))
}

type BatchCall = dyn FnOnce(&dyn Store, &[(String, Fence)]) -> leasehold_core::Result<Vec<Result<Task, Error>>>
    + Send;

/// Judge every item, run `call` on the blocking pool over the items that
/// passed, and merge the answers back into the request's order.
async fn run_batch(
    state: &AppState,
    op: &'static str,
    caller: Caller,
    items: Vec<BatchLease>,
    call: Box<BatchCall>,
) -> Result<Vec<Result<Task, Error>>, ApiError> {
    let n = items.len();
    let prechecked: Vec<Result<(String, Fence), Error>> =
        items.into_iter().map(|i| check_item(&caller, i)).collect();
    let store = state.store.clone();
    let joined = tokio::task::spawn_blocking(move || {
        // The worker rule needs the task: one read per item (reads only).
        let judged: Vec<Result<(String, Fence), Error>> = prechecked
            .into_iter()
            .map(|r| {
                let (id, fence) = r?;
                if caller.is_worker() {
                    let task = store.require(&id)?;
                    worker_may_write_task(&caller, &task).map_err(|e| e.error)?;
                }
                Ok((id, fence))
            })
            .collect();
        let allowed: Vec<(String, Fence)> = judged.iter().flatten().cloned().collect();
        let mut answers = if allowed.is_empty() {
            Vec::new()
        } else {
            crate::failpoint::hit("before_store_call")?;
            let answers = call(&*store, &allowed)?;
            if answers.iter().any(Result::is_ok) {
                // The store committed; the response has not been sent yet.
                crate::failpoint::hit("after_commit_before_response")?;
            }
            answers
        }
        .into_iter();
        if answers.len() != allowed.len() {
            return Err(Error::Internal(format!(
                "{op}: the store answered {} items for {} sent",
                answers.len(),
                allowed.len()
            )));
        }
        Ok(judged
            .into_iter()
            .map(|j| match j {
                Ok(_) => answers.next().expect("one answer per allowed item"),
                Err(e) => Err(e),
            })
            .collect::<Vec<_>>())
    })
    .await;
    let result = match joined {
        Ok(r) => r,
        Err(join) => Err(Error::Internal(format!("store call {op} failed: {join}"))),
    };
    match &result {
        Ok(results) => {
            for r in results {
                state
                    .metrics
                    .operation(op, r.as_ref().err().map(Error::code));
            }
        }
        Err(e) => {
            // Nothing was answered item by item: every item failed with it.
            for _ in 0..n {
                state.metrics.operation(op, Some(e.code()));
            }
        }
    }
    result.map_err(ApiError::from)
}

/// Extend many leases in one request: `expires_at = now + ttl_ms` for each.
#[utoipa::path(post, path = "/v1/heartbeats", tag = "leases", request_body = HeartbeatsBody,
    responses((status = 200, description = "one result per lease, in order; a rejected lease is an `error` entry and changed nothing", body = BatchReply),
              (status = 403, description = "forbidden (reader token)", body = Problem),
              (status = 422, description = "invalid_input: more than 1,000 leases or a bad ttl_ms; nothing applied", body = Problem)),
    security(("bearer" = [])))]
pub async fn heartbeats(
    State(state): State<AppState>,
    caller: Caller,
    crate::extract::ApiJson(body): crate::extract::ApiJson<HeartbeatsBody>,
) -> Result<Json<BatchReply>, ApiError> {
    store::check_batch_len(body.leases.len())?;
    let expires = expiry(&state, &caller, "heartbeats", body.ttl_ms, body.expires_at)?;
    let ctx = caller.ctx.clone();
    let results = run_batch(
        &state,
        "heartbeat_many",
        caller,
        body.leases,
        Box::new(move |s, leases| s.heartbeat_many(leases, expires, &ctx)),
    )
    .await?;
    Ok(Json(BatchReply::from_results(results)))
}

/// Complete many leased tasks in one request, each under its own fence.
#[utoipa::path(post, path = "/v1/completions", tag = "terminal", request_body = CompletionsBody,
    responses((status = 200, description = "one result per lease, in order; a rejected lease is an `error` entry and changed nothing", body = BatchReply),
              (status = 403, description = "forbidden (reader token)", body = Problem),
              (status = 422, description = "invalid_input: more than 1,000 leases; nothing applied", body = Problem)),
    security(("bearer" = [])))]
pub async fn completions(
    State(state): State<AppState>,
    caller: Caller,
    crate::extract::ApiJson(body): crate::extract::ApiJson<CompletionsBody>,
) -> Result<Json<BatchReply>, ApiError> {
    store::check_batch_len(body.leases.len())?;
    let ctx = caller.ctx.clone();
    let reason = body.reason;
    let results = run_batch(
        &state,
        "complete_many",
        caller,
        body.leases,
        Box::new(move |s, leases| s.complete_many(leases, reason.as_deref(), &ctx)),
    )
    .await?;
    Ok(Json(BatchReply::from_results(results)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_serialise_as_task_or_error_members() {
        let e = Error::LeaseConflict("task \"t\" is leased with token 2, not 1".into());
        let reply = BatchReply::from_results(vec![Err(e), Err(Error::Internal("secret".into()))]);
        let v = serde_json::to_value(&reply).unwrap();
        assert_eq!(v["results"][0]["error"]["code"], "lease_conflict");
        assert!(v["results"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("token 2"));
        assert_eq!(v["results"][1]["error"]["code"], "internal");
        assert!(!v.to_string().contains("secret"), "internal details leaked");
    }
}
