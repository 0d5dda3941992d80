//! [`HttpStore`]: the [`Store`] seam over HTTP, blocking.
//!
//! Everything a local backend does, `HttpStore` asks the server to do: the
//! server loads, decides with the same state machine and writes atomically.
//! This type only translates. Where the HTTP contract cannot say exactly what
//! a `Store` call says, it answers as the model would (see the crate docs'
//! "What HTTP cannot express").

use std::time::Duration;

use leasehold_core::machine::{self, Command, Context};
use leasehold_core::store::check_batch_len;
use leasehold_core::{
    BatchItem, ClaimRequest, Counts, Error, Fence, HistoryEntry, ListFilter, NewTask, Page, Result,
    Store, Task, TaskState, Timestamp,
};
use serde::de::DeserializeOwned;

use crate::wire::{self, Call, Method, Reply, Until};

/// Default time limit for one request.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Default time limit for opening a connection.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

/// A blocking [`Store`] that talks to a Leasehold server.
///
/// Do not call it from inside an async runtime (it runs its own); use
/// [`crate::Client`] there.
#[derive(Clone)]
pub struct HttpStore {
    http: reqwest::blocking::Client,
    base: reqwest::Url,
    token: Option<String>,
    exact_expiry: bool,
}

impl std::fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("HttpStore")
            .field("base", &self.base.as_str())
            .finish()
    }
}

impl HttpStore {
    /// A store for the server at `url` (e.g. `http://127.0.0.1:7878`),
    /// authenticating with bearer `token` (empty: no `Authorization` header).
    pub fn new(url: &str, token: &str) -> Result<HttpStore> {
        HttpStore::with_timeouts(url, token, REQUEST_TIMEOUT_DEFAULT, CONNECT_TIMEOUT_DEFAULT)
    }

    /// Like [`HttpStore::new`] with explicit request and connect timeouts.
    pub fn with_timeouts(
        url: &str,
        token: &str,
        request_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<HttpStore> {
        let base = wire::parse_base(url)?;
        let http = reqwest::blocking::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpStore {
            http,
            base,
            token: (!token.is_empty()).then(|| token.to_string()),
            exact_expiry: false,
        })
    }

    /// TEST ONLY: send lease expiries as the exact `expires_at` instant
    /// instead of a millisecond `ttl_ms`. Only a server in its
    /// `trust_client_clock` mode accepts that (others answer
    /// `invalid_input`); with it, `HttpStore` reproduces the model to the
    /// microsecond, which is what the conformance suite checks.
    pub fn with_exact_expiry(mut self) -> HttpStore {
        self.exact_expiry = true;
        self
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    fn send(&self, call: &Call, at: Option<Timestamp>, actor: Option<&str>) -> Result<Reply> {
        let url = call.url(&self.base)?;
        let mut req = match call.method {
            Method::Get => self.http.get(url),
            Method::Post => self.http.post(url),
            Method::Put => self.http.put(url),
        };
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(at) = call.at.or(at) {
            req = req.header(wire::HEADER_AT, at.to_rfc3339());
        }
        if let Some(a) = actor {
            // Header values cannot carry every string; an actor that cannot
            // travel is simply not sent (the server then uses the token's name).
            if let Ok(v) = reqwest::header::HeaderValue::from_str(a) {
                req = req.header(wire::HEADER_ACTOR, v);
            }
        }
        if let Some(b) = &call.body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .map_err(|e| wire::transport_error(call, &self.base, &e))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .map_err(|e| wire::transport_error(call, &self.base, &e))?
            .to_vec();
        Ok(Reply { status, body })
    }

    fn call<T: DeserializeOwned>(&self, call: Call, ctx: Option<&Context>) -> Result<T> {
        let reply = self.send(&call, ctx.map(|c| c.at), ctx.map(|c| c.actor.as_str()))?;
        wire::decode_some(&call, reply)
    }

    /// Answer a command that the wire cannot carry exactly (a lease expiry
    /// outside the server's TTL range) the way the model would: read the
    /// task and let the state machine judge it. A rejection is returned
    /// as the model's own error; a command the model would accept is
    /// `invalid_input` naming the range. Nothing is written either way.
    fn local_verdict(
        &self,
        task_id: &str,
        cmd: &Command,
        ctx: &Context,
        wire_err: Error,
    ) -> Result<Task> {
        let task = self
            .get(task_id)?
            .ok_or_else(|| Error::task_not_found(task_id))?;
        machine::apply(&task, cmd, ctx)?;
        Err(wire_err)
    }
}

impl Store for HttpStore {
    fn create(&self, new: NewTask, ctx: &Context) -> Result<Task> {
        self.call(wire::create(&new), Some(ctx))
    }

    fn put(&self, task: Task, expected_version: Option<u64>, ctx: &Context) -> Result<Task> {
        // The path carries the id, so a malformed id must not reach the
        // router (it would answer a bare 404); the model says invalid_input.
        leasehold_core::validate::id("task_id", &task.task_id)?;
        self.call(wire::put(&task, expected_version)?, Some(ctx))
    }

    fn apply(&self, task_id: &str, cmd: Command, ctx: &Context) -> Result<Task> {
        if task_id.is_empty() {
            return Err(Error::task_not_found(task_id));
        }
        let call = match &cmd {
            Command::Dispatch => wire::dispatch(task_id),
            Command::Acquire { owner, expires_at } if self.exact_expiry => {
                wire::lease_until(task_id, owner, Until::Instant(*expires_at))
            }
            Command::Heartbeat { fence, expires_at } if self.exact_expiry => {
                wire::heartbeat_until(task_id, fence, Until::Instant(*expires_at))
            }
            Command::Acquire { owner, expires_at } => {
                match wire::ttl_ms_between(ctx.at, *expires_at) {
                    Ok(ms) => wire::lease(task_id, owner, ms),
                    // The model loads the task first (`not_found`), then
                    // validates; `local_verdict` keeps that order.
                    Err(e) => return self.local_verdict(task_id, &cmd, ctx, e),
                }
            }
            Command::Heartbeat { fence, expires_at } => {
                match wire::ttl_ms_between(ctx.at, *expires_at) {
                    Ok(ms) => wire::heartbeat(task_id, fence, ms),
                    Err(e) => return self.local_verdict(task_id, &cmd, ctx, e),
                }
            }
            Command::Release { fence } => wire::release(task_id, fence),
            Command::Complete { reason, fence } => {
                wire::finish(task_id, false, reason.as_deref(), fence.as_ref())
            }
            Command::Compensate { reason, fence } => {
                wire::finish(task_id, true, reason.as_deref(), fence.as_ref())
            }
            Command::Fail {
                reason,
                compensation,
                fence,
            } => wire::fail(task_id, reason, compensation.as_ref(), fence.as_ref()),
            Command::Quarantine { reason, fence } => {
                wire::quarantine(task_id, reason, fence.as_ref())
            }
            Command::Annotate { author, note } => wire::annotate(task_id, author, note),
            Command::RecordCompensation {
                index,
                status,
                detail,
            } => wire::record_compensation(task_id, *index, *status, detail.as_deref()),
            Command::Reclaim { max_attempts } => {
                let call = wire::reclaim_one(task_id, *max_attempts);
                return match self.call::<Task>(call, Some(ctx)) {
                    Err(Error::NotFound(m)) if m.starts_with("no route") => {
                        Err(Error::InvalidInput(format!(
                            "reclaiming the single task {task_id:?} needs POST /v1/tasks/{{id}}/reclaim, which this server does not have; call reclaim, which reclaims every stale task"
                        )))
                    }
                    other => other,
                };
            }
            // `Command` may grow; a new command without a route is a client bug.
            #[allow(unreachable_patterns)]
            other => {
                return Err(Error::Internal(format!(
                    "command {} on task {task_id:?} has no HTTP route in this client",
                    other.name()
                )))
            }
        };
        self.call(call, Some(ctx))
    }

    fn claim(&self, req: &ClaimRequest, ctx: &Context) -> Result<Vec<Task>> {
        // Same validation, same messages as every other backend.
        let (_, expires_at) = req.check(ctx.at)?;
        let call = if self.exact_expiry {
            wire::claim_until(req, Until::Instant(expires_at))
        } else {
            wire::claim(req, wire::ttl_ms_of(req.ttl)?)
        };
        self.call(call, Some(ctx))
    }

    fn reclaim(&self, max_attempts: u32, ctx: &Context) -> Result<Vec<Task>> {
        leasehold_core::memory::check_max_attempts(max_attempts)?;
        self.call(wire::reclaim(max_attempts), Some(ctx))
    }

    fn get(&self, task_id: &str) -> Result<Option<Task>> {
        if task_id.is_empty() {
            return Ok(None);
        }
        let call = wire::get(task_id);
        let reply = self.send(&call, None, None)?;
        wire::decode(&call, reply)
    }

    fn list(&self, filter: &ListFilter, cursor: Option<&str>, limit: Option<u32>) -> Result<Page> {
        leasehold_core::store::list_limit(limit)?;
        // A `stale_at` filter sets the call's own time (see `wire::list`).
        self.call(wire::list(filter, cursor, limit), None)
    }

    fn list_in_flight(&self) -> Result<Vec<Task>> {
        // No route of its own: page through `list` filtered to the
        // non-terminal states. Pages follow the creation sequence, so the
        // order is the model's; under concurrent writes a task that changes
        // state between two pages may be missed or included (see crate docs).
        let filter = ListFilter {
            states: TaskState::ALL
                .into_iter()
                .filter(|s| !s.is_terminal())
                .collect(),
            ..ListFilter::default()
        };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.list(
                &filter,
                cursor.as_deref(),
                Some(leasehold_core::limits::LIST_LIMIT_MAX),
            )?;
            out.extend(page.tasks);
            match page.next_cursor {
                Some(c) if Some(&c) != cursor.as_ref() => cursor = Some(c),
                _ => return Ok(out),
            }
        }
    }

    fn list_stale(&self, now: Timestamp) -> Result<Vec<Task>> {
        // `now` travels as the operation time; a server that does not trust
        // client clocks answers for its own `now` instead.
        let call = wire::stale();
        let reply = self.send(&call, Some(now), None)?;
        wire::decode_some(&call, reply)
    }

    fn counts(&self) -> Result<Counts> {
        let got: Counts = self.call(wire::counts(), None)?;
        let mut all = leasehold_core::store::empty_counts();
        all.extend(got);
        Ok(all)
    }

    fn history(&self, task_id: &str) -> Result<Vec<HistoryEntry>> {
        if task_id.is_empty() {
            return Err(Error::task_not_found(task_id));
        }
        self.call(wire::history(task_id), None)
    }

    /// All-heartbeat batches with one expiry go to `POST /v1/heartbeats`,
    /// all-complete batches (fenced, one reason) to `POST /v1/completions`:
    /// one request each. Anything else is sent item by item, in order, which
    /// is what the contract says a batch means.
    fn apply_many(&self, items: Vec<BatchItem>, ctx: &Context) -> Result<Vec<Result<Task>>> {
        check_batch_len(items.len())?;
        if let Some((leases, expires_at)) = as_heartbeats(&items) {
            return self.heartbeat_many(&leases, expires_at, ctx);
        }
        if let Some((leases, reason)) = as_completions(&items) {
            return self.complete_many(&leases, reason.as_deref(), ctx);
        }
        Ok(items
            .into_iter()
            .map(|i| self.apply(&i.task_id, i.command, ctx))
            .collect())
    }

    /// One `POST /v1/heartbeats` for every lease (`ttl_ms = expires_at -
    /// ctx.at`, as the single heartbeat sends). An expiry outside the
    /// server's TTL range is judged per item locally, as `apply` does.
    fn heartbeat_many(
        &self,
        leases: &[(String, Fence)],
        expires_at: Timestamp,
        ctx: &Context,
    ) -> Result<Vec<Result<Task>>> {
        check_batch_len(leases.len())?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let until = if self.exact_expiry {
            Until::Instant(expires_at)
        } else {
            match wire::ttl_ms_between(ctx.at, expires_at) {
                Ok(ms) => Until::TtlMs(ms),
                Err(e) => {
                    return Ok(leases
                        .iter()
                        .map(|(id, fence)| {
                            let cmd = Command::Heartbeat {
                                fence: fence.clone(),
                                expires_at,
                            };
                            self.local_verdict(id, &cmd, ctx, e.clone())
                        })
                        .collect())
                }
            }
        };
        self.batch(wire::heartbeats(leases, until), leases.len(), ctx)
    }

    /// One `POST /v1/completions` for every lease.
    fn complete_many(
        &self,
        leases: &[(String, Fence)],
        reason: Option<&str>,
        ctx: &Context,
    ) -> Result<Vec<Result<Task>>> {
        check_batch_len(leases.len())?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        self.batch(wire::completions(leases, reason), leases.len(), ctx)
    }
}

impl HttpStore {
    fn batch(&self, call: Call, sent: usize, ctx: &Context) -> Result<Vec<Result<Task>>> {
        let reply = self.send(&call, Some(ctx.at), Some(ctx.actor.as_str()))?;
        wire::decode_batch(&call, reply, sent)
    }
}

/// The batch as `heartbeat_many`'s arguments, if every item is a heartbeat
/// to the same expiry (and there is at least one).
fn as_heartbeats(items: &[BatchItem]) -> Option<(Vec<(String, Fence)>, Timestamp)> {
    let mut expiry = None;
    let mut leases = Vec::with_capacity(items.len());
    for i in items {
        match &i.command {
            Command::Heartbeat { fence, expires_at } if expiry.is_none_or(|e| e == *expires_at) => {
                expiry = Some(*expires_at);
                leases.push((i.task_id.clone(), fence.clone()));
            }
            _ => return None,
        }
    }
    expiry.map(|e| (leases, e))
}

/// The batch as `complete_many`'s arguments, if every item is a fenced
/// complete with the same reason (and there is at least one).
#[allow(clippy::type_complexity)]
fn as_completions(items: &[BatchItem]) -> Option<(Vec<(String, Fence)>, Option<String>)> {
    let first_reason = match &items.first()?.command {
        Command::Complete { reason, .. } => reason.clone(),
        _ => return None,
    };
    let mut leases = Vec::with_capacity(items.len());
    for i in items {
        match &i.command {
            Command::Complete {
                reason,
                fence: Some(fence),
            } if *reason == first_reason => leases.push((i.task_id.clone(), fence.clone())),
            _ => return None,
        }
    }
    Some((leases, first_reason))
}
