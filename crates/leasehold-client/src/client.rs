//! [`Client`]: the same operations as [`crate::HttpStore`], async.
//!
//! Unlike the [`leasehold_core::Store`] seam, the async client speaks the
//! server's own terms: leases are asked for with a TTL (a [`Duration`]) and the
//! server's clock decides the expiry. Tests that run a server in its
//! test-only `trust_client_clock` mode can give the client a clock
//! ([`Client::with_clock`]); its time is then sent with every request.

use std::sync::Arc;
use std::time::Duration;

use leasehold_core::{
    ClaimRequest, CompensationStatus, Counts, Error, Fence, HistoryEntry, ListFilter,
    NewCompensation, NewTask, Page, Result, Task, Timestamp,
};
use serde::de::DeserializeOwned;

use crate::store::{CONNECT_TIMEOUT_DEFAULT, REQUEST_TIMEOUT_DEFAULT};
use crate::wire::{self, Call, Method, Reply};

/// A source of "now" for the `x-leasehold-at` header (tests only: a server
/// outside `trust_client_clock` mode ignores it).
pub type ClockFn = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// An async client for a Leasehold server. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    token: Option<String>,
    clock: Option<ClockFn>,
    actor: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("clock", &self.clock.is_some())
            .field("actor", &self.actor)
            .finish()
    }
}

impl Client {
    /// A client for the server at `url`, authenticating with bearer `token`
    /// (empty: no `Authorization` header).
    pub fn new(url: &str, token: &str) -> Result<Client> {
        Client::with_timeouts(url, token, REQUEST_TIMEOUT_DEFAULT, CONNECT_TIMEOUT_DEFAULT)
    }

    /// Like [`Client::new`] with explicit request and connect timeouts.
    pub fn with_timeouts(
        url: &str,
        token: &str,
        request_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Client> {
        let base = wire::parse_base(url)?;
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            token: (!token.is_empty()).then(|| token.to_string()),
            clock: None,
            actor: None,
        })
    }

    /// Send `clock()` as the operation time with every request. Only a
    /// server in its test-only `trust_client_clock` mode honours it.
    pub fn with_clock(mut self, clock: ClockFn) -> Client {
        self.clock = Some(clock);
        self
    }

    /// Send `actor` as the actor with every request (honoured only in
    /// `trust_client_clock` mode; otherwise the token's name is the actor).
    pub fn with_actor(mut self, actor: impl Into<String>) -> Client {
        self.actor = Some(actor.into());
        self
    }

    /// The server's base URL.
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    async fn send(&self, call: &Call) -> Result<Reply> {
        let url = call.url(&self.base)?;
        let mut req = match call.method {
            Method::Get => self.http.get(url),
            Method::Post => self.http.post(url),
            Method::Put => self.http.put(url),
        };
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(at) = call.at.or_else(|| self.clock.as_ref().map(|c| c())) {
            req = req.header(wire::HEADER_AT, at.to_rfc3339());
        }
        if let Some(a) = &self.actor {
            if let Ok(v) = reqwest::header::HeaderValue::from_str(a) {
                req = req.header(wire::HEADER_ACTOR, v);
            }
        }
        if let Some(b) = &call.body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| wire::transport_error(call, &self.base, &e))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| wire::transport_error(call, &self.base, &e))?
            .to_vec();
        Ok(Reply { status, body })
    }

    async fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let reply = self.send(&call).await?;
        wire::decode_some(&call, reply)
    }

    fn require_id(task_id: &str) -> Result<()> {
        if task_id.is_empty() {
            return Err(Error::task_not_found(task_id));
        }
        Ok(())
    }

    /// Create a task (`planned`, version 1).
    pub async fn create(&self, new: &NewTask) -> Result<Task> {
        self.call(wire::create(new)).await
    }

    /// Upsert a whole task; `expected_version` makes it a compare-and-set.
    pub async fn put(&self, task: &Task, expected_version: Option<u64>) -> Result<Task> {
        leasehold_core::validate::id("task_id", &task.task_id)?;
        self.call(wire::put(task, expected_version)?).await
    }

    /// One task, or `None` if it does not exist.
    pub async fn get(&self, task_id: &str) -> Result<Option<Task>> {
        if task_id.is_empty() {
            return Ok(None);
        }
        let call = wire::get(task_id);
        let reply = self.send(&call).await?;
        wire::decode(&call, reply)
    }

    /// One page of tasks matching `filter`, in creation order.
    pub async fn list(
        &self,
        filter: &ListFilter,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page> {
        leasehold_core::store::list_limit(limit)?;
        self.call(wire::list(filter, cursor, limit)).await
    }

    /// Tasks stale now (by the server's clock), oldest expiry first.
    pub async fn stale(&self) -> Result<Vec<Task>> {
        self.call(wire::stale()).await
    }

    /// Number of tasks per state (every state present).
    pub async fn counts(&self) -> Result<Counts> {
        let got: Counts = self.call(wire::counts()).await?;
        let mut all = leasehold_core::store::empty_counts();
        all.extend(got);
        Ok(all)
    }

    /// Every change to a task, oldest first.
    pub async fn history(&self, task_id: &str) -> Result<Vec<HistoryEntry>> {
        Client::require_id(task_id)?;
        self.call(wire::history(task_id)).await
    }

    /// `planned` → `dispatched`.
    pub async fn dispatch(&self, task_id: &str) -> Result<Task> {
        Client::require_id(task_id)?;
        self.call(wire::dispatch(task_id)).await
    }

    /// Take the lease of one task for `ttl`.
    pub async fn lease(&self, task_id: &str, owner: &str, ttl: Duration) -> Result<Task> {
        Client::require_id(task_id)?;
        let ms = wire::ttl_ms_of(ttl)?;
        self.call(wire::lease(task_id, owner, ms)).await
    }

    /// Lease up to `req.limit` claimable tasks from `req.queues`.
    pub async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Task>> {
        // `check` needs an instant only to compute an expiry we do not send.
        req.check(Timestamp::EPOCH)?;
        let ms = wire::ttl_ms_of(req.ttl)?;
        self.call(wire::claim(req, ms)).await
    }

    /// Extend the lease named by `fence` to `ttl` from now (server time).
    pub async fn heartbeat(&self, task_id: &str, fence: &Fence, ttl: Duration) -> Result<Task> {
        Client::require_id(task_id)?;
        let ms = wire::ttl_ms_of(ttl)?;
        self.call(wire::heartbeat(task_id, fence, ms)).await
    }

    /// Extend many leases to `ttl` from now (server time) in one request
    /// (`POST /v1/heartbeats`). One answer per lease, in order: a rejected
    /// lease is an `Err` item and changed nothing. The outer error is for the
    /// whole call (more than 1,000 leases, a bad `ttl`, transport, auth).
    pub async fn heartbeat_many(
        &self,
        leases: &[(String, Fence)],
        ttl: Duration,
    ) -> Result<Vec<Result<Task>>> {
        leasehold_core::store::check_batch_len(leases.len())?;
        let ms = wire::ttl_ms_of(ttl)?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let call = wire::heartbeats(leases, wire::Until::TtlMs(ms));
        let reply = self.send(&call).await?;
        wire::decode_batch(&call, reply, leases.len())
    }

    /// Complete many leased tasks in one request (`POST /v1/completions`),
    /// each under its own fence. One answer per lease, in order.
    pub async fn complete_many(
        &self,
        leases: &[(String, Fence)],
        reason: Option<&str>,
    ) -> Result<Vec<Result<Task>>> {
        leasehold_core::store::check_batch_len(leases.len())?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let call = wire::completions(leases, reason);
        let reply = self.send(&call).await?;
        wire::decode_batch(&call, reply, leases.len())
    }

    /// Give the lease back (→ `dispatched`).
    pub async fn release(&self, task_id: &str, fence: &Fence) -> Result<Task> {
        Client::require_id(task_id)?;
        self.call(wire::release(task_id, fence)).await
    }

    /// → `completed`, fenced when `fence` is given.
    pub async fn complete(
        &self,
        task_id: &str,
        reason: Option<&str>,
        fence: Option<&Fence>,
    ) -> Result<Task> {
        Client::require_id(task_id)?;
        self.call(wire::finish(task_id, false, reason, fence)).await
    }

    /// → `compensated`, fenced when `fence` is given.
    pub async fn compensate(
        &self,
        task_id: &str,
        reason: Option<&str>,
        fence: Option<&Fence>,
    ) -> Result<Task> {
        Client::require_id(task_id)?;
        self.call(wire::finish(task_id, true, reason, fence)).await
    }

    /// → `failed`, appending `compensation` if given.
    pub async fn fail(
        &self,
        task_id: &str,
        reason: &str,
        compensation: Option<&NewCompensation>,
        fence: Option<&Fence>,
    ) -> Result<Task> {
        Client::require_id(task_id)?;
        self.call(wire::fail(task_id, reason, compensation, fence))
            .await
    }

    /// → `quarantined`.
    pub async fn quarantine(
        &self,
        task_id: &str,
        reason: &str,
        fence: Option<&Fence>,
    ) -> Result<Task> {
        Client::require_id(task_id)?;
        self.call(wire::quarantine(task_id, reason, fence)).await
    }

    /// Append a note (allowed on terminal tasks).
    pub async fn annotate(&self, task_id: &str, author: &str, note: &str) -> Result<Task> {
        Client::require_id(task_id)?;
        self.call(wire::annotate(task_id, author, note)).await
    }

    /// Set the outcome of compensation `index`.
    pub async fn record_compensation(
        &self,
        task_id: &str,
        index: usize,
        status: CompensationStatus,
        detail: Option<&str>,
    ) -> Result<Task> {
        Client::require_id(task_id)?;
        self.call(wire::record_compensation(task_id, index, status, detail))
            .await
    }

    /// Reclaim every stale task (operators).
    pub async fn reclaim(&self, max_attempts: u32) -> Result<Vec<Task>> {
        leasehold_core::memory::check_max_attempts(max_attempts)?;
        self.call(wire::reclaim(max_attempts)).await
    }
}
