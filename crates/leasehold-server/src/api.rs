//! The `/v1` routes and the operational endpoints: one handler per route, each
//! annotated for the OpenAPI description, so the router and `/openapi.json`
//! come from the same registrations ([`build`]).
//!
//! Handlers never re-implement rules: they check the caller (worker
//! fine-grained rules), turn the body into a store call with the server's
//! [`leasehold_core::Context`], run it on the blocking pool, and map the
//! result. The store and the state machine decide everything else.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use leasehold_core::{
    store, validate, ClaimRequest, CompensationStatus, Error, Fence, HistoryEntry, ListFilter,
    NewCompensation, NewTask, Page, Store, Task, TaskState, Timestamp,
};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{ApiJson, RawTaskId, TaskId, TaskIdIndex};
use crate::schema::{HistoryEntryDoc, PageDoc, TaskDoc};
use crate::AppState;

/// Shortest lease a caller may ask for, in milliseconds.
pub const TTL_MS_MIN: u64 = 100;
/// Longest lease a caller may ask for, in milliseconds (one day).
pub const TTL_MS_MAX: u64 = 86_400_000;

type ApiResult<T> = Result<T, ApiError>;

// ---------------------------------------------------------------- wire types

/// A compensation as given by a caller.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompensationBody {
    /// What kind of cleanup, e.g. `delete_branch`.
    pub kind: String,
    /// What it applies to.
    pub target: String,
    /// Why it is needed.
    #[serde(default)]
    pub reason: String,
}

impl From<CompensationBody> for NewCompensation {
    fn from(c: CompensationBody) -> Self {
        NewCompensation::new(c.kind, c.target, c.reason)
    }
}

/// `POST /v1/tasks`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Unique id.
    pub task_id: String,
    /// Unique saga id.
    pub saga_id: String,
    /// Queue (default `default`).
    #[serde(default)]
    pub queue: Option<String>,
    /// Priority (default 0; higher is claimed first).
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
    /// JSON object, at most 64 KiB serialised.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Initial compensations (pending).
    #[serde(default)]
    pub compensations: Vec<CompensationBody>,
}

/// `POST /v1/tasks/{id}/lease`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseBody {
    /// Owner; default the token's name. A worker can only be itself.
    #[serde(default)]
    pub owner: Option<String>,
    /// Lease time to live, 100 to 86,400,000 ms, from the server's clock.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// Absolute expiry instead of `ttl_ms`; only with `trust_client_clock` (tests).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Timestamp>,
}

/// `POST /v1/claim`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    /// Owner; default the token's name. A worker can only be itself.
    #[serde(default)]
    pub owner: Option<String>,
    /// Queues to claim from (default `default`).
    #[serde(default)]
    pub queues: Vec<String>,
    /// Lease time to live, 100 to 86,400,000 ms.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// Absolute expiry instead of `ttl_ms`; only with `trust_client_clock` (tests).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Timestamp>,
    /// Most tasks to lease, 1 to 1,000 (default 1).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Leave out stale tasks whose lease expired after at least this many
    /// attempts (default: the server's `--max-attempts`, the reaper's limit),
    /// so a poison task is quarantined by the reaper instead of handed to
    /// the next worker.
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

/// `POST /v1/tasks/{id}/heartbeat`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// Lease owner; default the token's name.
    #[serde(default)]
    pub owner: Option<String>,
    /// The fencing token of the lease.
    pub token: u64,
    /// New time to live from now, 100 to 86,400,000 ms.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// Absolute expiry instead of `ttl_ms`; only with `trust_client_clock` (tests).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Timestamp>,
}

/// `POST /v1/tasks/{id}/release`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// Lease owner; default the token's name.
    #[serde(default)]
    pub owner: Option<String>,
    /// The fencing token of the lease.
    pub token: u64,
}

/// `POST /v1/tasks/{id}/complete` and `/compensate`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishBody {
    /// Optional reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// Lease owner of the fence; default the token's name.
    #[serde(default)]
    pub owner: Option<String>,
    /// Fencing token; required for workers, optional for operators.
    #[serde(default)]
    pub token: Option<u64>,
}

/// `POST /v1/tasks/{id}/fail`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    /// Why it failed.
    pub reason: String,
    /// A compensation to append.
    #[serde(default)]
    pub compensation: Option<CompensationBody>,
    /// Lease owner of the fence; default the token's name.
    #[serde(default)]
    pub owner: Option<String>,
    /// Fencing token; required for workers, optional for operators.
    #[serde(default)]
    pub token: Option<u64>,
}

/// `POST /v1/tasks/{id}/quarantine`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantineBody {
    /// Why (required).
    pub reason: String,
    /// Lease owner of the fence; default the token's name.
    #[serde(default)]
    pub owner: Option<String>,
    /// Fencing token; required for workers, optional for operators.
    #[serde(default)]
    pub token: Option<u64>,
}

/// `POST /v1/tasks/{id}/notes`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// The text.
    pub note: String,
    /// Author; operators only (default the token's name).
    #[serde(default)]
    pub author: Option<String>,
}

/// `POST /v1/tasks/{id}/compensations/{index}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordCompensationBody {
    /// `pending`, `applied` or `failed`.
    #[schema(value_type = String)]
    pub status: CompensationStatus,
    /// Free text about the outcome.
    #[serde(default)]
    pub detail: Option<String>,
}

/// `POST /v1/reclaim`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReclaimBody {
    /// Attempts after which a stale task is quarantined (default: the server's `--max-attempts`).
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

/// `/healthz` and `/readyz` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}

// ---------------------------------------------------------------- helpers

/// Run a store call on the blocking pool, counting its outcome.
pub(crate) async fn run<T, F>(state: &AppState, op: &'static str, f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> leasehold_core::Result<T> + Send + 'static,
{
    let store = state.store.clone();
    let result = match tokio::task::spawn_blocking(move || {
        crate::failpoint::hit("before_store_call")?;
        let r = f(&*store);
        if r.is_ok() {
            // The store committed; the response has not been sent yet.
            crate::failpoint::hit("after_commit_before_response")?;
        }
        r
    })
    .await
    {
        Ok(r) => r,
        Err(join) => Err(Error::Internal(format!("store call {op} failed: {join}"))),
    };
    state
        .metrics
        .operation(op, result.as_ref().err().map(|e| e.code()));
    result.map_err(ApiError::from)
}

/// Read a task for an authorisation decision (not counted as an operation).
async fn load(state: &AppState, id: &str) -> ApiResult<Task> {
    let store = state.store.clone();
    let id = id.to_string();
    match tokio::task::spawn_blocking(move || store.require(&id)).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(join) => Err(ApiError::internal(format!("store read failed: {join}"))),
    }
}

/// A worker may write only to tasks not leased by someone else.
async fn worker_may_write(state: &AppState, caller: &Caller, id: &str) -> ApiResult<()> {
    if !caller.is_worker() {
        return Ok(());
    }
    let task = load(state, id).await?;
    worker_may_write_task(caller, &task)
}

/// [`worker_may_write`]'s rule on an already loaded task (the batch routes
/// judge each item with it).
pub(crate) fn worker_may_write_task(caller: &Caller, task: &Task) -> ApiResult<()> {
    if !caller.is_worker() {
        return Ok(());
    }
    let id = &task.task_id;
    match &task.lease_owner {
        Some(o) if *o != caller.principal.name => Err(ApiError::forbidden(format!(
            "task {id:?} is leased by {o:?}; worker {:?} may write only to its own leases",
            caller.principal.name
        ))),
        _ => Ok(()),
    }
}

/// A worker may annotate or record compensations only on tasks whose (last) lease is its own.
async fn worker_owns(state: &AppState, caller: &Caller, id: &str) -> ApiResult<()> {
    if !caller.is_worker() {
        return Ok(());
    }
    let task = load(state, id).await?;
    if task.lease_owner.as_deref() == Some(caller.principal.name.as_str()) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "task {id:?} is not leased by worker {:?} (owner {:?})",
            caller.principal.name, task.lease_owner
        )))
    }
}

/// The fence a terminal marker presents. Workers must present one.
fn optional_fence(
    caller: &Caller,
    id: &str,
    owner: Option<String>,
    token: Option<u64>,
) -> ApiResult<Option<Fence>> {
    match token {
        Some(t) => Ok(Some(Fence::new(caller.owner(owner)?, t))),
        None if caller.is_worker() => Err(ApiError::forbidden(format!(
            "worker {:?} must present the fencing token of its lease on task {id:?}",
            caller.principal.name
        ))),
        None if owner.is_some() => Err(ApiError::invalid(format!(
            "owner given without token for task {id:?}; a fence is owner plus token"
        ))),
        None => Ok(None),
    }
}

fn check_ttl_ms(ms: u64) -> ApiResult<()> {
    if !(TTL_MS_MIN..=TTL_MS_MAX).contains(&ms) {
        return Err(ApiError::invalid(format!(
            "ttl_ms must be from {TTL_MS_MIN} to {TTL_MS_MAX}, got {ms}"
        )));
    }
    Ok(())
}

/// The lease expiry a request asks for, from the server's clock.
pub(crate) fn expiry(
    state: &AppState,
    caller: &Caller,
    what: &str,
    ttl_ms: Option<u64>,
    expires_at: Option<Timestamp>,
) -> ApiResult<Timestamp> {
    let at = caller.ctx.at;
    match (ttl_ms, expires_at) {
        (Some(ms), None) => {
            check_ttl_ms(ms)?;
            at.checked_add(Duration::from_millis(ms)).ok_or_else(|| {
                ApiError::invalid(format!("{what}: ttl_ms {ms} overflows the clock"))
            })
        }
        (None, Some(e)) if state.trust_client_clock => Ok(e),
        (None, Some(_)) => Err(ApiError::invalid(format!(
            "{what}: expires_at is accepted only by a test server (trust_client_clock); send ttl_ms"
        ))),
        (Some(_), Some(_)) => Err(ApiError::invalid(format!(
            "{what}: give ttl_ms or expires_at, not both"
        ))),
        (None, None) => Err(ApiError::invalid(format!(
            "{what}: ttl_ms is required ({TTL_MS_MIN} to {TTL_MS_MAX})"
        ))),
    }
}

fn parse_list_query(
    query: Option<&str>,
    now: Timestamp,
) -> ApiResult<(ListFilter, Option<String>, u32)> {
    let mut filter = ListFilter::default();
    let mut cursor = None;
    let mut limit = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "state" => {
                for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let st: TaskState = part.parse()?;
                    if !filter.states.contains(&st) {
                        filter.states.push(st);
                    }
                }
            }
            "queue" => {
                validate::id("queue", &value)?;
                filter.queue = Some(value.into_owned());
            }
            "owner" => {
                validate::owner(&value)?;
                filter.owner = Some(value.into_owned());
            }
            "stale" => match value.as_ref() {
                "true" | "1" => filter.stale_at = Some(now),
                "false" | "0" | "" => filter.stale_at = None,
                other => {
                    return Err(ApiError::invalid(format!(
                        "stale must be true or false, got {other:?}"
                    )))
                }
            },
            "limit" => {
                let n = value.parse::<u32>().map_err(|_| {
                    ApiError::invalid(format!("limit must be an integer from 1 to 1000, got {value:?}"))
                })?;
                limit = Some(n);
            }
            "cursor" => {
                store::decode_cursor(Some(&value))?;
                cursor = Some(value.into_owned());
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter {other:?}; expected state, queue, owner, stale, limit, cursor"
                )))
            }
        }
    }
    let limit = store::list_limit(limit)?;
    Ok((filter, cursor, limit))
}

/// Turn a `PUT` body into a task and the expected version (`version`, when present).
fn task_from_put(
    id: &str,
    body: serde_json::Value,
    at: Timestamp,
) -> ApiResult<(Task, Option<u64>)> {
    use serde_json::Value;
    let Value::Object(mut map) = body else {
        return Err(ApiError::invalid(format!(
            "PUT of task {id:?} needs a JSON object (the whole task)"
        )));
    };
    let expected = match map.remove("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            ApiError::invalid(format!(
                "version of task {id:?} must be a non-negative integer (the expected version), got {v}"
            ))
        })?),
    };
    match map.get("task_id") {
        None => {
            map.insert("task_id".into(), Value::String(id.to_string()));
        }
        Some(Value::String(s)) if s == id => {}
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "body task_id {other} does not match the path's task id {id:?}"
            )))
        }
    }
    // Store-owned fields: placeholders the store replaces.
    map.insert("version".into(), Value::from(1u64));
    let now = Value::String(at.to_rfc3339());
    map.entry("created_at").or_insert_with(|| now.clone());
    map.entry("updated_at").or_insert(now);
    map.entry("queue")
        .or_insert_with(|| Value::String("default".into()));
    map.entry("priority").or_insert_with(|| Value::from(0));
    map.entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    map.entry("compensations")
        .or_insert_with(|| Value::Array(vec![]));
    map.entry("lease_token").or_insert_with(|| Value::from(0));
    map.entry("attempts").or_insert_with(|| Value::from(0));
    let task: Task = serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::invalid(format!("PUT of task {id:?}: not a valid task: {e}")))?;
    Ok((task, expected))
}

// ---------------------------------------------------------------- handlers

/// Create a task (`planned`, version 1).
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", request_body = CreateBody,
    responses((status = 201, description = "created", body = TaskDoc),
              (status = 409, description = "already_exists", body = Problem),
              (status = 422, description = "invalid_input", body = Problem)),
    security(("bearer" = [])))]
pub async fn create_task(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult<(StatusCode, Json<Task>)> {
    let new = NewTask {
        task_id: body.task_id,
        saga_id: body.saga_id,
        queue: body.queue,
        priority: body.priority,
        issue: body.issue,
        branch: body.branch,
        worktree: body.worktree,
        metadata: body.metadata,
        compensations: body.compensations.into_iter().map(Into::into).collect(),
    };
    let ctx = caller.ctx;
    let task = run(&state, "create", move |s| s.create(new, &ctx)).await?;
    Ok((StatusCode::CREATED, Json(task)))
}

/// List tasks in creation order, filtered, paged.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks",
    params(("state" = Option<String>, Query, description = "state(s); repeat or comma-separate"),
           ("queue" = Option<String>, Query, description = "only this queue"),
           ("owner" = Option<String>, Query, description = "only this lease owner"),
           ("stale" = Option<bool>, Query, description = "only tasks stale now"),
           ("limit" = Option<u32>, Query, description = "page size, 1 to 1000 (default 100)"),
           ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "a page", body = PageDoc),
              (status = 422, description = "invalid_input", body = Problem)),
    security(("bearer" = [])))]
pub async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Page>> {
    let (filter, cursor, limit) = parse_list_query(query.as_deref(), caller.ctx.at)?;
    let page = run(&state, "list", move |s| {
        s.list(&filter, cursor.as_deref(), Some(limit))
    })
    .await?;
    Ok(Json(page))
}

/// One task.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "task id (encode / as %2F)")),
    responses((status = 200, description = "the task", body = TaskDoc),
              (status = 404, description = "not_found", body = Problem)),
    security(("bearer" = [])))]
pub async fn get_task(
    State(state): State<AppState>,
    _caller: Caller,
    TaskId(id): TaskId,
) -> ApiResult<Json<Task>> {
    Ok(Json(run(&state, "get", move |s| s.require(&id)).await?))
}

/// Upsert a whole task; `version` in the body, when present, is the expected version.
#[utoipa::path(put, path = "/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "task id")),
    request_body = TaskDoc,
    responses((status = 200, description = "updated", body = TaskDoc),
              (status = 201, description = "inserted", body = TaskDoc),
              (status = 409, description = "version_conflict, lease_conflict, terminal", body = Problem)),
    security(("bearer" = [])))]
pub async fn put_task(
    State(state): State<AppState>,
    caller: Caller,
    RawTaskId(id): RawTaskId,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<(StatusCode, Json<Task>)> {
    let ctx = caller.ctx;
    let (task, expected) = task_from_put(&id, body, ctx.at)?;
    let (inserted, task) = run(&state, "put", move |s| {
        let existed = s.get(&id)?.is_some();
        let task = s.put(task, expected, &ctx)?;
        Ok((!existed && task.version == 1, task))
    })
    .await?;
    let status = if inserted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(task)))
}

/// `planned` → `dispatched`.
#[utoipa::path(post, path = "/v1/tasks/{id}/dispatch", tag = "tasks",
    params(("id" = String, Path, description = "task id")),
    responses((status = 200, description = "the task", body = TaskDoc),
              (status = 409, description = "terminal or lease_conflict", body = Problem)),
    security(("bearer" = [])))]
pub async fn dispatch(
    State(state): State<AppState>,
    caller: Caller,
    TaskId(id): TaskId,
) -> ApiResult<Json<Task>> {
    let ctx = caller.ctx;
    Ok(Json(
        run(&state, "dispatch", move |s| s.dispatch(&id, &ctx)).await?,
    ))
}

/// Take a lease on one task for `ttl_ms`.
#[utoipa::path(post, path = "/v1/tasks/{id}/lease", tag = "leases",
    params(("id" = String, Path, description = "task id")),
    request_body = LeaseBody,
    responses((status = 200, description = "leased", body = TaskDoc),
              (status = 409, description = "lease_conflict or terminal", body = Problem)),
    security(("bearer" = [])))]
pub async fn lease(
    State(state): State<AppState>,
    caller: Caller,
    TaskId(id): TaskId,
    ApiJson(body): ApiJson<LeaseBody>,
) -> ApiResult<Json<Task>> {
    let owner = caller.owner(body.owner)?;
    let expires = expiry(&state, &caller, "lease", body.ttl_ms, body.expires_at)?;
    let ctx = caller.ctx;
    Ok(Json(
        run(&state, "acquire_lease", move |s| {
            s.acquire_lease(&id, &owner, expires, &ctx)
        })
        .await?,
    ))
}

/// Atomically lease up to `limit` claimable tasks.
#[utoipa::path(post, path = "/v1/claim", tag = "leases", request_body = ClaimBody,
    responses((status = 200, description = "the leased tasks (maybe none)", body = Vec<TaskDoc>),
              (status = 422, description = "invalid_input", body = Problem)),
    security(("bearer" = [])))]
pub async fn claim(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ClaimBody>,
) -> ApiResult<Json<Vec<Task>>> {
    let owner = caller.owner(body.owner)?;
    let at = caller.ctx.at;
    let expires = expiry(&state, &caller, "claim", body.ttl_ms, body.expires_at)?;
    let micros = expires.micros_since(at);
    if micros <= 0 {
        return Err(ApiError::invalid(format!(
            "claim: expires_at {expires} must be after the operation time {at}"
        )));
    }
    let limit = body.limit.unwrap_or(1);
    let req = ClaimRequest {
        owner,
        queues: body.queues,
        ttl: Duration::from_micros(micros as u64),
        limit,
        // By default the reaper's limit: a stale lease that used up its
        // attempts is left for the reaper to quarantine, never handed to
        // another worker before the reaper's next pass.
        max_attempts: Some(body.max_attempts.unwrap_or(state.max_attempts)),
    };
    req.check(at)?;
    let ctx = caller.ctx;
    Ok(Json(
        run(&state, "claim", move |s| s.claim(&req, &ctx)).await?,
    ))
}

/// Extend a lease: expires_at = now + ttl_ms.
#[utoipa::path(post, path = "/v1/tasks/{id}/heartbeat", tag = "leases",
    params(("id" = String, Path, description = "task id")),
    request_body = HeartbeatBody,
    responses((status = 200, description = "extended", body = TaskDoc),
              (status = 409, description = "lease_conflict", body = Problem)),
    security(("bearer" = [])))]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    TaskId(id): TaskId,
    ApiJson(body): ApiJson<HeartbeatBody>,
) -> ApiResult<Json<Task>> {
    let fence = Fence::new(caller.owner(body.owner)?, body.token);
    let expires = expiry(&state, &caller, "heartbeat", body.ttl_ms, body.expires_at)?;
    worker_may_write(&state, &caller, &id).await?;
    let ctx = caller.ctx;
    Ok(Json(
        run(&state, "heartbeat", move |s| {
            s.heartbeat(&id, &fence, expires, &ctx)
        })
        .await?,
    ))
}

/// Give a lease back (→ `dispatched`).
#[utoipa::path(post, path = "/v1/tasks/{id}/release", tag = "leases",
    params(("id" = String, Path, description = "task id")),
    request_body = ReleaseBody,
    responses((status = 200, description = "released", body = TaskDoc),
              (status = 409, description = "lease_conflict", body = Problem)),
    security(("bearer" = [])))]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    TaskId(id): TaskId,
    ApiJson(body): ApiJson<ReleaseBody>,
) -> ApiResult<Json<Task>> {
    let fence = Fence::new(caller.owner(body.owner)?, body.token);
    worker_may_write(&state, &caller, &id).await?;
    let ctx = caller.ctx;
    Ok(Json(
        run(&state, "release", move |s| s.release(&id, &fence, &ctx)).await?,
    ))
}

/// → `completed`.
#[utoipa::path(post, path = "/v1/tasks/{id}/complete", tag = "terminal",
    params(("id" = String, Path, description = "task id")),
    request_body = FinishBody,
    responses((status = 200, description = "completed", body = TaskDoc),
              (status = 409, description = "lease_conflict or terminal", body = Problem)),
    security(("bearer" = [])))]
pub async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    TaskId(id): TaskId,
    ApiJson(body): ApiJson<FinishBody>,
) -> ApiResult<Json<Task>> {
    let fence = optional_fence(&caller, &id, body.owner, body.token)?;
    worker_may_write(&state, &caller, &id).await?;
    let ctx = caller.ctx;
    let reason = body.reason;
    Ok(Json(
        run(&state, "complete", move |s| {
            s.complete(&id, reason.as_deref(), fence.as_ref(), &ctx)
        })
        .await?,
    ))
}

/// → `compensated`.
#[utoipa::path(post, path = "/v1/tasks/{id}/compensate", tag = "terminal",
    params(("id" = String, Path, description = "task id")),
    request_body = FinishBody,
    responses((status = 200, description = "compensated", body = TaskDoc),
              (status = 409, description = "lease_conflict or terminal", body = Problem)),
    security(("bearer" = [])))]
pub async fn compensate(
    State(state): State<AppState>,
    caller: Caller,
    TaskId(id): TaskId,
    ApiJson(body): ApiJson<FinishBody>,
) -> ApiResult<Json<Task>> {
    let fence = optional_fence(&caller, &id, body.owner, body.token)?;
    worker_may_write(&state, &caller, &id).await?;
    let ctx = caller.ctx;
    let reason = body.reason;
    Ok(Json(
        run(&state, "compensate", move |s| {
            s.compensate(&id, reason.as_deref(), fence.as_ref(), &ctx)
        })
        .await?,
    ))
}

/// → `failed` (needs a compensation, existing or given).
#[utoipa::path(post, path = "/v1/tasks/{id}/fail", tag = "terminal",
    params(("id" = String, Path, description = "task id")),
    request_body = FailBody,
    responses((status = 200, description = "failed", body = TaskDoc),
              (status = 409, description = "lease_conflict (e.g. no compensation) or terminal", body = Problem)),
    security(("bearer" = [])))]
pub async fn fail(
    State(state): State<AppState>,
    caller: Caller,
    TaskId(id): TaskId,
    ApiJson(body): ApiJson<FailBody>,
) -> ApiResult<Json<Task>> {
    let fence = optional_fence(&caller, &id, body.owner, body.token)?;
    worker_may_write(&state, &caller, &id).await?;
    let ctx = caller.ctx;
    let reason = body.reason;
    let comp = body.compensation.map(NewCompensation::from);
    Ok(Json(
        run(&state, "fail", move |s| {
            s.fail(&id, &reason, comp, fence.as_ref(), &ctx)
        })
        .await?,
    ))
}

/// → `quarantined` (reason required).
#[utoipa::path(post, path = "/v1/tasks/{id}/quarantine", tag = "terminal",
    params(("id" = String, Path, description = "task id")),
    request_body = QuarantineBody,
    responses((status = 200, description = "quarantined", body = TaskDoc),
              (status = 409, description = "lease_conflict or terminal", body = Problem)),
    security(("bearer" = [])))]
pub async fn quarantine(
    State(state): State<AppState>,
    caller: Caller,
    TaskId(id): TaskId,
    ApiJson(body): ApiJson<QuarantineBody>,
) -> ApiResult<Json<Task>> {
    let fence = optional_fence(&caller, &id, body.owner, body.token)?;
    worker_may_write(&state, &caller, &id).await?;
    let ctx = caller.ctx;
    let reason = body.reason;
    let task = run(&state, "quarantine", move |s| {
        s.quarantine(&id, &reason, fence.as_ref(), &ctx)
    })
    .await?;
    state.metrics.quarantined();
    Ok(Json(task))
}

/// Append a note (allowed on terminal tasks).
#[utoipa::path(post, path = "/v1/tasks/{id}/notes", tag = "audit",
    params(("id" = String, Path, description = "task id")),
    request_body = NoteBody,
    responses((status = 200, description = "annotated", body = TaskDoc),
              (status = 404, description = "not_found", body = Problem)),
    security(("bearer" = [])))]
pub async fn annotate(
    State(state): State<AppState>,
    caller: Caller,
    TaskId(id): TaskId,
    ApiJson(body): ApiJson<NoteBody>,
) -> ApiResult<Json<Task>> {
    let author = match body.author {
        Some(a) if caller.is_operator() => a,
        Some(a) if a == caller.principal.name => a,
        Some(a) => {
            return Err(ApiError::forbidden(format!(
                "only operators may set a note's author; token {:?} cannot write as {a:?}",
                caller.principal.name
            )))
        }
        None => caller.ctx.actor.clone(),
    };
    worker_owns(&state, &caller, &id).await?;
    let ctx = caller.ctx;
    let note = body.note;
    Ok(Json(
        run(&state, "annotate", move |s| {
            s.annotate(&id, &author, &note, &ctx)
        })
        .await?,
    ))
}

/// Set a compensation's outcome (allowed on terminal tasks).
#[utoipa::path(post, path = "/v1/tasks/{id}/compensations/{index}", tag = "audit",
    params(("id" = String, Path, description = "task id"),
           ("index" = usize, Path, description = "position in compensations")),
    request_body = RecordCompensationBody,
    responses((status = 200, description = "recorded", body = TaskDoc),
              (status = 422, description = "invalid_input (bad index)", body = Problem)),
    security(("bearer" = [])))]
pub async fn record_compensation(
    State(state): State<AppState>,
    caller: Caller,
    TaskIdIndex(id, index): TaskIdIndex,
    ApiJson(body): ApiJson<RecordCompensationBody>,
) -> ApiResult<Json<Task>> {
    worker_owns(&state, &caller, &id).await?;
    let ctx = caller.ctx;
    let detail = body.detail;
    let status = body.status;
    Ok(Json(
        run(&state, "record_compensation", move |s| {
            s.record_compensation(&id, index, status, detail.as_deref(), &ctx)
        })
        .await?,
    ))
}

/// Every change to a task, oldest first.
#[utoipa::path(get, path = "/v1/tasks/{id}/history", tag = "audit",
    params(("id" = String, Path, description = "task id")),
    responses((status = 200, description = "history entries", body = Vec<HistoryEntryDoc>),
              (status = 404, description = "not_found", body = Problem)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AppState>,
    _caller: Caller,
    TaskId(id): TaskId,
) -> ApiResult<Json<Vec<HistoryEntry>>> {
    Ok(Json(run(&state, "history", move |s| s.history(&id)).await?))
}

/// Tasks stale now (non-terminal, lease expired), oldest expiry first.
#[utoipa::path(get, path = "/v1/stale", tag = "leases",
    responses((status = 200, description = "stale tasks", body = Vec<TaskDoc>)),
    security(("bearer" = [])))]
pub async fn stale(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Task>>> {
    let at = caller.ctx.at;
    Ok(Json(
        run(&state, "list_stale", move |s| s.list_stale(at)).await?,
    ))
}

/// Reclaim every stale task now.
#[utoipa::path(post, path = "/v1/reclaim", tag = "leases", request_body = ReclaimBody,
    responses((status = 200, description = "the reclaimed tasks", body = Vec<TaskDoc>)),
    security(("bearer" = [])))]
pub async fn reclaim(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ReclaimBody>,
) -> ApiResult<Json<Vec<Task>>> {
    let max = body.max_attempts.unwrap_or(state.max_attempts);
    if max == 0 {
        return Err(ApiError::invalid("max_attempts must be at least 1"));
    }
    let ctx = caller.ctx;
    let tasks = run(&state, "reclaim", move |s| s.reclaim(max, &ctx)).await?;
    state.metrics.reclaimed(&tasks);
    Ok(Json(tasks))
}

/// Reclaim one stale task: back to `dispatched`, or `quarantined` once
/// `attempts >= max_attempts`; `lease_conflict` if it is not stale.
#[utoipa::path(post, path = "/v1/tasks/{id}/reclaim", tag = "leases",
    params(("id" = String, Path, description = "task id")),
    request_body = ReclaimBody,
    responses((status = 200, description = "the reclaimed task", body = TaskDoc),
              (status = 409, description = "lease_conflict (not stale) or terminal", body = Problem)),
    security(("bearer" = [])))]
pub async fn reclaim_task(
    State(state): State<AppState>,
    caller: Caller,
    TaskId(id): TaskId,
    ApiJson(body): ApiJson<ReclaimBody>,
) -> ApiResult<Json<Task>> {
    let max_attempts = body.max_attempts.unwrap_or(state.max_attempts);
    let ctx = caller.ctx;
    let task = run(&state, "reclaim", move |s| {
        s.apply(&id, leasehold_core::Command::Reclaim { max_attempts }, &ctx)
    })
    .await?;
    state.metrics.reclaimed(std::slice::from_ref(&task));
    Ok(Json(task))
}

/// Number of tasks per state.
#[utoipa::path(get, path = "/v1/counts", tag = "tasks",
    responses((status = 200, description = "state → count, every state present", body = BTreeMap<String, u64>)),
    security(("bearer" = [])))]
pub async fn counts(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<BTreeMap<TaskState, u64>>> {
    Ok(Json(run(&state, "counts", |s| s.counts()).await?))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the store answers `counts`.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, description = "ready", body = Health),
              (status = 503, description = "unavailable", body = Problem)))]
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    match run(&state, "counts", |s| s.counts()).await {
        Ok(_) => Ok(Json(Health {
            status: "ready".into(),
        })),
        Err(e) => Err(ApiError::new(Error::Unavailable(format!(
            "the store is not answering: {}",
            e.error.message()
        )))),
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "metrics", body = String, content_type = "text/plain")),
    security(("bearer" = [])))]
pub async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    let metrics = state.metrics.clone();
    let now = state.clock.now();
    let text = run(&state, "metrics", move |s| metrics.render(s, now)).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// This API's OpenAPI description.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_ref().clone(),
    )
        .into_response()
}

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Leasehold", description = "Durable control plane for task sagas: leases, fencing tokens, stale detection, compensations."),
    components(schemas(Problem)),
    modifiers(&SecurityAddon)
)]
struct ApiDoc;

/// Every route registered once: the axum router (without state) and the OpenAPI document.
pub fn build() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_task, list_tasks))
        .routes(routes!(get_task, put_task))
        .routes(routes!(dispatch))
        .routes(routes!(lease))
        .routes(routes!(claim))
        .routes(routes!(heartbeat))
        .routes(routes!(release))
        .routes(routes!(complete))
        .routes(routes!(compensate))
        .routes(routes!(fail))
        .routes(routes!(quarantine))
        .routes(routes!(annotate))
        .routes(routes!(record_compensation))
        .routes(routes!(history))
        .routes(routes!(stale))
        .routes(routes!(reclaim))
        .routes(routes!(reclaim_task))
        .routes(routes!(counts))
        .routes(routes!(crate::batch::heartbeats))
        .routes(routes!(crate::batch::completions))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .split_for_parts()
}
