//! The worker runtime: claim tasks, run a handler, keep the lease alive, and
//! finish the task with its fence.
//!
//! For each claimed task the runtime spawns the handler. One heartbeat loop
//! per worker keeps every lease it holds alive: every `heartbeat_every`
//! (default: a third of the TTL) it sends **one** `POST /v1/heartbeats`
//! request naming all of them ([`Client::heartbeat_many`]; chunks of
//! [`BATCH_ITEMS_MAX`] beyond that), and fans each lease's own answer back
//! out. Each lease keeps its own deadline and its own fate: when a lease's
//! answer says it is gone (`lease_conflict`, `terminal`, `not_found`,
//! `forbidden`, …), or no heartbeat for it was acknowledged within a whole
//! TTL (the request failed, or hangs past that lease's deadline), that
//! handler's [`Job::cancel`] token fires and its future is dropped: nothing
//! is written for that task, because someone else owns it now. The other
//! leases of the same request are unaffected. Otherwise the handler's `Ok`
//! completes the task and its `Err` fails it, always presenting the lease's
//! fence, so a late worker can never overwrite a newer owner's work.
//!
//! The batch route needs a server that has it (`POST /v1/heartbeats`, since
//! the batch routes were added); an older server answers 404 for it, which
//! the runtime treats like any other rejection: every lease is lost.
//!
//! Concurrency is bounded by a semaphore: the worker never claims more tasks
//! than it has free slots. [`WorkerHandle::shutdown`] stops claiming and waits
//! for the handlers in flight; [`WorkerHandle::abort`] also cancels them and
//! gives their leases back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold_core::limits::BATCH_ITEMS_MAX;
use leasehold_core::{ClaimRequest, Error, ErrorCode, Fence, NewCompensation, Task, TaskState};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Client;

/// Most tasks one claim asks for, whatever the concurrency.
pub const CLAIM_BATCH_MAX: usize = 32;
/// How often an idle worker asks for work, by default.
pub const POLL_EVERY_DEFAULT: Duration = Duration::from_secs(1);
/// How many times a final write (complete, fail, release) is retried when the
/// server is unavailable.
pub const FINAL_WRITE_RETRIES_MAX: u32 = 3;

/// How a [`Worker`] claims and runs tasks.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The lease owner this worker claims as (unique per worker process).
    pub owner: String,
    /// Queues to claim from; empty means `default`.
    pub queues: Vec<String>,
    /// Lease TTL asked for on claim and on every heartbeat.
    pub ttl: Duration,
    /// Most handlers running at once (at least 1).
    pub concurrency: usize,
    /// Time between heartbeats; `None` means a third of `ttl`.
    pub heartbeat_every: Option<Duration>,
    /// Wait after a claim that found nothing (or failed) before the next one.
    pub poll_every: Duration,
    /// The compensation recorded when a handler fails without giving one.
    /// Without either, failing a task that has no compensation is refused by
    /// the server (`lease_conflict`) and the task stays leased until reclaimed.
    pub default_compensation: Option<NewCompensation>,
}

impl WorkerConfig {
    /// A configuration with defaults: concurrency 1, heartbeat every TTL/3,
    /// poll every [`POLL_EVERY_DEFAULT`], no default compensation.
    pub fn new(owner: impl Into<String>, queues: Vec<String>, ttl: Duration) -> WorkerConfig {
        WorkerConfig {
            owner: owner.into(),
            queues,
            ttl,
            concurrency: 1,
            heartbeat_every: None,
            poll_every: POLL_EVERY_DEFAULT,
            default_compensation: None,
        }
    }

    /// The heartbeat period in force.
    pub fn heartbeat_period(&self) -> Duration {
        self.heartbeat_every.unwrap_or(self.ttl / 3)
    }

    /// Check the configuration before any request is sent.
    pub fn check(&self) -> leasehold_core::Result<()> {
        leasehold_core::validate::owner(&self.owner)?;
        crate::wire::ttl_ms_of(self.ttl)?;
        if self.concurrency == 0 {
            return Err(Error::InvalidInput(
                "worker concurrency must be at least 1".into(),
            ));
        }
        let hb = self.heartbeat_period();
        if hb.is_zero() || hb >= self.ttl {
            return Err(Error::InvalidInput(format!(
                "worker heartbeat period {hb:?} must be positive and shorter than the lease ttl {:?}",
                self.ttl
            )));
        }
        if let Some(c) = &self.default_compensation {
            leasehold_core::validate::new_compensation(c)?;
        }
        ClaimRequest {
            owner: self.owner.clone(),
            queues: self.queues.clone(),
            ttl: self.ttl,
            limit: 1,
            max_attempts: None,
        }
        .check(leasehold_core::Timestamp::EPOCH)?;
        Ok(())
    }
}

/// One claimed task handed to a handler.
#[derive(Debug, Clone)]
pub struct Job {
    /// The task as claimed (state `running`, leased to this worker).
    pub task: Task,
    /// The lease's fence; the runtime presents it on every write.
    pub fence: Fence,
    /// Fires when the lease is lost or the worker aborts. The runtime drops
    /// the handler's future then; handlers that spawn their own work should
    /// watch this token too.
    pub cancel: CancellationToken,
    /// The worker's client, e.g. for notes (`annotate`) while working.
    pub client: Client,
}

/// A handler's success: the task is completed with this reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Done {
    /// The terminal reason recorded on the task.
    pub reason: Option<String>,
}

impl Done {
    /// Success without a reason.
    pub fn new() -> Done {
        Done::default()
    }

    /// Success with a reason.
    pub fn because(reason: impl Into<String>) -> Done {
        Done {
            reason: Some(reason.into()),
        }
    }
}

/// A handler's failure: the task is failed with this reason, recording the
/// compensation (or the worker's default one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why it failed (required, non-empty).
    pub reason: String,
    /// The cleanup the failure needs; `None` falls back to the configured default.
    pub compensation: Option<NewCompensation>,
}

impl Failure {
    /// A failure without its own compensation.
    pub fn new(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            compensation: None,
        }
    }

    /// Attach the compensation this failure needs.
    pub fn with_compensation(mut self, c: NewCompensation) -> Failure {
        self.compensation = Some(c);
        self
    }
}

/// What a handler returns.
pub type HandlerResult = std::result::Result<Done, Failure>;

/// The work a [`Worker`] does for each task. Any
/// `Fn(Job) -> impl Future<Output = HandlerResult>` closure is a handler.
pub trait Handler: Send + Sync + 'static {
    /// Do the task's work.
    fn handle(&self, job: Job) -> impl Future<Output = HandlerResult> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(Job) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn handle(&self, job: Job) -> impl Future<Output = HandlerResult> + Send {
        self(job)
    }
}

/// How one claimed task ended, as seen by the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler succeeded and the task is `completed`.
    Completed(Task),
    /// The handler failed and the task is `failed` with its compensation.
    Failed(Task),
    /// The lease was lost while the handler ran: the handler was cancelled
    /// and nothing was written.
    LeaseLost {
        /// The task.
        task_id: String,
        /// The lease that was lost.
        fence: Fence,
        /// What the heartbeat was told.
        error: Error,
    },
    /// The handler finished but the server refused the final write
    /// (complete, fail or release), e.g. the fence is no longer current.
    WriteRejected {
        /// The task.
        task_id: String,
        /// The fence presented.
        fence: Fence,
        /// The server's answer.
        error: Error,
    },
    /// The worker stopped before the task ran (or aborted it) and gave the
    /// lease back: the task is `dispatched` again.
    Released(Task),
}

impl Outcome {
    /// The task this outcome is about.
    pub fn task_id(&self) -> &str {
        match self {
            Outcome::Completed(t) | Outcome::Failed(t) | Outcome::Released(t) => &t.task_id,
            Outcome::LeaseLost { task_id, .. } | Outcome::WriteRejected { task_id, .. } => task_id,
        }
    }
}

/// Counts of what a worker did, returned when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks claimed.
    pub claimed: u64,
    /// Tasks completed.
    pub completed: u64,
    /// Tasks failed.
    pub failed: u64,
    /// Handlers cancelled because their lease was lost.
    pub lease_lost: u64,
    /// Final writes the server refused.
    pub write_rejected: u64,
    /// Leases given back.
    pub released: u64,
}

impl WorkerStats {
    fn count(&mut self, o: &Outcome) {
        match o {
            Outcome::Completed(_) => self.completed += 1,
            Outcome::Failed(_) => self.failed += 1,
            Outcome::LeaseLost { .. } => self.lease_lost += 1,
            Outcome::WriteRejected { .. } => self.write_rejected += 1,
            Outcome::Released(_) => self.released += 1,
        }
    }
}

/// Claims tasks and runs a [`Handler`] on each. See the module docs.
pub struct Worker<H: Handler> {
    client: Client,
    config: Arc<WorkerConfig>,
    handler: Arc<H>,
    outcomes: Option<mpsc::UnboundedSender<Outcome>>,
}

/// A running worker's controls.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: CancellationToken,
    abort: CancellationToken,
    join: tokio::task::JoinHandle<WorkerStats>,
}

impl WorkerHandle {
    /// Stop claiming new tasks; the handlers in flight go on. Returns at once.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// A token that aborts the worker when cancelled (as
    /// [`WorkerHandle::abort`] does), for use after the handle was moved
    /// into [`WorkerHandle::join`], e.g. on a second Ctrl-C.
    pub fn abort_signal(&self) -> CancellationToken {
        let (stop, abort) = (self.stop.clone(), self.abort.clone());
        let signal = CancellationToken::new();
        let watch = signal.clone();
        tokio::spawn(async move {
            watch.cancelled().await;
            stop.cancel();
            abort.cancel();
        });
        signal
    }

    /// Wait for the worker to end (after [`WorkerHandle::stop`] or
    /// [`WorkerHandle::abort`]) and return its counts.
    pub async fn join(self) -> WorkerStats {
        self.join.await.unwrap_or_default()
    }

    /// Stop claiming, wait for the handlers in flight to finish, return the counts.
    pub async fn shutdown(self) -> WorkerStats {
        self.stop();
        self.join().await
    }

    /// Stop claiming, cancel the handlers in flight and give their leases
    /// back, return the counts.
    pub async fn abort(self) -> WorkerStats {
        self.stop.cancel();
        self.abort.cancel();
        self.join.await.unwrap_or_default()
    }
}

impl<H: Handler> Worker<H> {
    /// A worker that claims with `client` as configured and runs `handler`.
    /// The configuration is checked here, before any request.
    pub fn new(
        client: Client,
        config: WorkerConfig,
        handler: H,
    ) -> leasehold_core::Result<Worker<H>> {
        config.check()?;
        Ok(Worker {
            client,
            config: Arc::new(config),
            handler: Arc::new(handler),
            outcomes: None,
        })
    }

    /// Also send every task's [`Outcome`] to `tx` (for tests and metrics).
    pub fn with_outcomes(mut self, tx: mpsc::UnboundedSender<Outcome>) -> Worker<H> {
        self.outcomes = Some(tx);
        self
    }

    /// Run on the current tokio runtime until stopped through the handle.
    pub fn spawn(self) -> WorkerHandle {
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let join = tokio::spawn(self.run(stop.clone(), abort.clone()));
        WorkerHandle { stop, abort, join }
    }

    /// Run until `stop` fires (then finish the handlers in flight), or
    /// `abort` fires (then cancel them and release their leases).
    pub async fn run(self, stop: CancellationToken, abort: CancellationToken) -> WorkerStats {
        let cfg = self.config.clone();
        // Aborting implies stopping: no new claims once handlers are being
        // cancelled.
        let abort_stops = {
            let (abort, stop) = (abort.clone(), stop.clone());
            tokio::spawn(async move {
                abort.cancelled().await;
                stop.cancel();
            })
        };
        let slots = Arc::new(Semaphore::new(cfg.concurrency));
        let mut running: JoinSet<Outcome> = JoinSet::new();
        // One heartbeat loop for every lease this worker holds.
        let leases = Arc::new(Leases::default());
        let hb_stop = CancellationToken::new();
        let heartbeats = tokio::spawn(heartbeat_loop(
            self.client.clone(),
            leases.clone(),
            cfg.ttl,
            cfg.heartbeat_period(),
            hb_stop.clone(),
        ));
        let mut stats = WorkerStats::default();
        let record = |stats: &mut WorkerStats, o: Outcome| {
            stats.count(&o);
            if let Some(tx) = &self.outcomes {
                let _ = tx.send(o);
            }
        };
        loop {
            while let Some(done) = running.try_join_next() {
                if let Ok(o) = done {
                    record(&mut stats, o);
                }
            }
            if stop.is_cancelled() {
                break;
            }
            // Biased: once stopped, never take another slot, even if one
            // freed up at the same moment.
            let first = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                p = slots.clone().acquire_owned() => p.expect("the slot semaphore is never closed"),
            };
            let mut permits = vec![first];
            while permits.len() < CLAIM_BATCH_MAX {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let req = ClaimRequest {
                owner: cfg.owner.clone(),
                queues: cfg.queues.clone(),
                ttl: cfg.ttl,
                limit: permits.len() as u32,
                max_attempts: None,
            };
            // Never drop a claim in flight: the server may already have
            // leased the tasks, and we must learn which to run or release.
            let claim_sent = Instant::now();
            let claimed = self.client.claim(&req).await;
            let idle = match claimed {
                Ok(tasks) => {
                    stats.claimed += tasks.len() as u64;
                    let idle = tasks.is_empty();
                    let mut to_run = Vec::with_capacity(tasks.len());
                    for task in tasks {
                        let fence = Fence::new(cfg.owner.clone(), task.lease_token);
                        if stop.is_cancelled() {
                            let o = release(&self.client, &task.task_id, &fence).await;
                            record(&mut stats, o);
                            continue;
                        }
                        let Some(permit) = permits.pop() else {
                            // More tasks than asked for: a misbehaving
                            // server. Never run beyond the bound; hand back.
                            tracing::error!(task_id = %task.task_id, limit = req.limit, "claim returned more tasks than its limit; releasing the extra one");
                            let o = release(&self.client, &task.task_id, &fence).await;
                            record(&mut stats, o);
                            continue;
                        };
                        to_run.push((task, fence, permit, abort.child_token()));
                    }
                    // Held from here on, all in one step: the next heartbeat
                    // round carries every lease of this claim, even before
                    // their runners start.
                    leases.hold_all(
                        to_run.iter().map(|(t, f, _, c)| (t.task_id.as_str(), f, c)),
                        claim_sent + cfg.ttl,
                    );
                    for (task, fence, permit, cancel) in to_run {
                        let run = run_one(
                            self.client.clone(),
                            cfg.clone(),
                            self.handler.clone(),
                            leases.clone(),
                            task,
                            fence,
                            cancel,
                        );
                        running.spawn(async move {
                            let o = run.await;
                            drop(permit);
                            o
                        });
                    }
                    idle
                }
                Err(e) => {
                    tracing::warn!(owner = %cfg.owner, error = %e, "claim failed");
                    true
                }
            };
            drop(permits);
            if idle {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(cfg.poll_every) => {}
                }
            }
        }
        while let Some(done) = running.join_next().await {
            match done {
                Ok(o) => record(&mut stats, o),
                Err(e) => tracing::error!(error = %e, "a task runner panicked"),
            }
        }
        hb_stop.cancel();
        let _ = heartbeats.await;
        abort_stops.abort();
        stats
    }
}

/// One lease a worker holds, as the heartbeat loop sees it.
#[derive(Debug)]
struct Held {
    fence: Fence,
    /// The lease surely lasts until then: one TTL from when the request that
    /// granted or last extended it was *sent* (the server started the TTL
    /// later than that). Past it, by this machine's clock, the lease may be
    /// someone else's.
    deadline: Instant,
    /// The handler's token: fired when the lease is lost.
    cancel: CancellationToken,
    /// Why the lease was lost, once it was.
    lost: Option<Error>,
    /// A heartbeat for it is on its way: the next round leaves it out, so a
    /// lease never has two heartbeats in flight (as with one loop per lease).
    in_flight: bool,
}

/// The leases a worker holds, keyed by task and token (a task lost and
/// claimed again is a new lease). Shared by the claim loop (which adds a
/// lease as soon as it is claimed), the runners (which take theirs out when
/// the handler is done) and the heartbeat loop.
#[derive(Debug, Default)]
struct Leases {
    held: Mutex<HashMap<(String, u64), Held>>,
}

impl Leases {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Held>> {
        // Nothing panics while holding the lock; recover the map if it did.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start heartbeating leases (task, fence, the handler's token) that
    /// last at least until `deadline`.
    fn hold_all<'a>(
        &self,
        leases: impl Iterator<Item = (&'a str, &'a Fence, &'a CancellationToken)>,
        deadline: Instant,
    ) {
        let mut map = self.map();
        for (task_id, fence, cancel) in leases {
            map.insert(
                (task_id.to_string(), fence.token),
                Held {
                    fence: fence.clone(),
                    deadline,
                    cancel: cancel.clone(),
                    lost: None,
                    in_flight: false,
                },
            );
        }
    }

    /// Stop heartbeating a lease; why it was lost, if it was.
    fn let_go(&self, task_id: &str, token: u64) -> Option<Error> {
        self.map()
            .remove(&(task_id.to_string(), token))
            .and_then(|h| h.lost)
    }

    /// The leases to extend now: every one held, not lost and without a
    /// heartbeat in flight; each is marked in flight.
    fn take_due(&self) -> Vec<(String, Fence)> {
        self.map()
            .iter_mut()
            .filter(|(_, h)| h.lost.is_none() && !h.in_flight)
            .map(|((id, _), h)| {
                h.in_flight = true;
                (id.clone(), h.fence.clone())
            })
            .collect()
    }

    /// The heartbeats of `leases` are settled: they may go out again.
    fn settled(&self, leases: &[(String, Fence)]) {
        let mut map = self.map();
        for (id, f) in leases {
            if let Some(h) = map.get_mut(&(id.clone(), f.token)) {
                h.in_flight = false;
            }
        }
    }

    /// The earliest deadline among `leases` still held and not lost.
    fn earliest(&self, leases: &[(String, Fence)]) -> Option<Instant> {
        let map = self.map();
        leases
            .iter()
            .filter_map(|(id, f)| map.get(&(id.clone(), f.token)))
            .filter(|h| h.lost.is_none())
            .map(|h| h.deadline)
            .min()
    }

    /// The lease is gone: remember why and cancel its handler.
    fn lose(&self, task_id: &str, fence: &Fence, e: Error) {
        if let Some(h) = self.map().get_mut(&(task_id.to_string(), fence.token)) {
            if h.lost.is_none() {
                tracing::info!(task_id = %task_id, token = fence.token, error = %e, "lease lost; cancelling the handler");
                h.lost = Some(e);
                h.cancel.cancel();
            }
        }
    }

    /// A heartbeat sent at `sent` was acknowledged.
    fn extended(&self, task_id: &str, fence: &Fence, sent: Instant, ttl: Duration) {
        if let Some(h) = self.map().get_mut(&(task_id.to_string(), fence.token)) {
            if h.lost.is_none() {
                h.deadline = h.deadline.max(sent + ttl);
            }
        }
    }

    /// A heartbeat was not acknowledged (`e` is retryable): the lease is
    /// lost once its deadline has passed, else the next round retries.
    fn unacknowledged(&self, task_id: &str, fence: &Fence, ttl: Duration, e: &Error) {
        let past = {
            let map = self.map();
            match map.get(&(task_id.to_string(), fence.token)) {
                Some(h) if h.lost.is_none() => Instant::now() >= h.deadline,
                _ => return,
            }
        };
        if past {
            let e = Error::Unavailable(format!(
                "no heartbeat for task {task_id:?} was acknowledged within the lease ttl {ttl:?}; the lease (token {}) may have expired: {e}",
                fence.token
            ));
            self.lose(task_id, fence, e);
        } else {
            tracing::warn!(task_id = %task_id, error = %e, "heartbeat failed; retrying");
        }
    }

    /// Every lease of `leases` whose deadline has passed while its heartbeat
    /// hangs is lost.
    fn overdue(&self, leases: &[(String, Fence)], ttl: Duration) {
        let now = Instant::now();
        let due: Vec<(String, Fence)> = {
            let map = self.map();
            leases
                .iter()
                .filter(|(id, f)| {
                    map.get(&(id.clone(), f.token))
                        .is_some_and(|h| h.lost.is_none() && h.deadline <= now)
                })
                .cloned()
                .collect()
        };
        for (id, f) in due {
            let e = Error::Unavailable(format!("heartbeat on task {id:?} got no answer in time"));
            self.unacknowledged(&id, &f, ttl, &e);
        }
    }
}

/// Whether a heartbeat error means the lease is gone for good.
fn lease_is_gone(e: &Error) -> bool {
    !matches!(e.code(), ErrorCode::Unavailable | ErrorCode::Internal)
}

/// Every `every` until `stop` fires, extend the leases in `leases` that
/// have no heartbeat in flight: one batch request per round (per
/// [`BATCH_ITEMS_MAX`] leases), each answered by [`heartbeat_round`]. A
/// round that hangs does not hold up the next one for leases claimed since.
async fn heartbeat_loop(
    client: Client,
    leases: Arc<Leases>,
    ttl: Duration,
    every: Duration,
    stop: CancellationToken,
) {
    // Dropped on return: rounds still waiting are cancelled with the loop.
    let mut rounds = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        while rounds.try_join_next().is_some() {}
        let due = leases.take_due();
        for chunk in due.chunks(BATCH_ITEMS_MAX) {
            rounds.spawn(heartbeat_round(
                client.clone(),
                leases.clone(),
                chunk.to_vec(),
                ttl,
            ));
        }
    }
}

/// One `POST /v1/heartbeats` for `chunk`, settling each lease by its own
/// answer: extended, lost (its handler cancelled), or retried next round
/// until its deadline passes.
async fn heartbeat_round(
    client: Client,
    leases: Arc<Leases>,
    chunk: Vec<(String, Fence)>,
    ttl: Duration,
) {
    let sent = Instant::now();
    let request = client.heartbeat_many(&chunk, ttl);
    tokio::pin!(request);
    // Wait for the answer, but not past a lease's deadline: a lease whose
    // heartbeat hangs that long is lost while the others wait on. Once
    // every lease of the chunk is lost or let go, stop waiting.
    let answer = loop {
        let Some(deadline) = leases.earliest(&chunk) else {
            break None;
        };
        tokio::select! {
            biased;
            r = &mut request => break Some(r),
            _ = tokio::time::sleep_until(deadline) => leases.overdue(&chunk, ttl),
        }
    };
    match answer {
        None => {}
        Some(Ok(results)) => {
            for ((id, fence), r) in chunk.iter().zip(results) {
                match r {
                    Ok(_) => leases.extended(id, fence, sent, ttl),
                    Err(e) if lease_is_gone(&e) => leases.lose(id, fence, e),
                    Err(e) => leases.unacknowledged(id, fence, ttl, &e),
                }
            }
        }
        // The whole request failed: the same answer for every lease.
        Some(Err(e)) => {
            for (id, fence) in &chunk {
                if lease_is_gone(&e) {
                    leases.lose(id, fence, e.clone());
                } else {
                    leases.unacknowledged(id, fence, ttl, &e);
                }
            }
        }
    }
    leases.settled(&chunk);
}

/// Run the handler on one claimed task (already in `leases`), then take
/// the lease out of the heartbeat rounds and finish the task.
async fn run_one<H: Handler>(
    client: Client,
    cfg: Arc<WorkerConfig>,
    handler: Arc<H>,
    leases: Arc<Leases>,
    task: Task,
    fence: Fence,
    cancel: CancellationToken,
) -> Outcome {
    let task_id = task.task_id.clone();
    // The handler's token fires on abort (it is a child of the worker's abort
    // token) and when the heartbeat loop finds the lease lost.
    let job_cancel = cancel;
    let job = Job {
        task,
        fence: fence.clone(),
        cancel: job_cancel.clone(),
        client: client.clone(),
    };
    // The handler runs as its own task so that a panic in it is caught
    // here (a `JoinError`) instead of killing this runner and leaving the
    // heartbeat loop to keep the lease alive forever.
    let mut work = tokio::spawn(async move { handler.handle(job).await });
    let result = tokio::select! {
        biased;
        _ = job_cancel.cancelled() => {
            work.abort();
            None
        }
        r = &mut work => Some(match r {
            Ok(r) => r,
            Err(e) => {
                let why = panic_message(e);
                tracing::error!(task_id = %task_id, error = %why, "handler panicked; failing the task");
                Err(Failure::new(format!("handler panicked: {why}")))
            }
        }),
    };
    // No more heartbeats for this lease; if it was lost meanwhile, say so.
    let lost_err = leases.let_go(&task_id, fence.token);
    if let Some(error) = lost_err {
        // Someone else may own the task now: write nothing.
        return Outcome::LeaseLost {
            task_id,
            fence,
            error,
        };
    }
    match result {
        None => release(&client, &task_id, &fence).await,
        Some(Ok(done)) => {
            let r = final_write(&client, &task_id, &fence, TaskState::Completed, || {
                client.complete(&task_id, done.reason.as_deref(), Some(&fence))
            })
            .await;
            match r {
                Ok(t) => Outcome::Completed(t),
                Err(error) => Outcome::WriteRejected {
                    task_id,
                    fence,
                    error,
                },
            }
        }
        Some(Err(failure)) => {
            let compensation = failure
                .compensation
                .or_else(|| cfg.default_compensation.clone());
            let r = final_write(&client, &task_id, &fence, TaskState::Failed, || {
                client.fail(
                    &task_id,
                    &failure.reason,
                    compensation.as_ref(),
                    Some(&fence),
                )
            })
            .await;
            match r {
                Ok(t) => Outcome::Failed(t),
                Err(error) => Outcome::WriteRejected {
                    task_id,
                    fence,
                    error,
                },
            }
        }
    }
}

/// What a handler task's `JoinError` says: the panic message if it panicked.
fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic".to_string()),
        Err(e) => e.to_string(),
    }
}

/// A fenced final write, retried while the server is unavailable. If a retry
/// finds the task already in `target` under our fence, the earlier attempt
/// landed and only its reply was lost: that is success.
async fn final_write<F, Fut>(
    client: &Client,
    task_id: &str,
    fence: &Fence,
    target: TaskState,
    write: F,
) -> leasehold_core::Result<Task>
where
    F: Fn() -> Fut,
    Fut: Future<Output = leasehold_core::Result<Task>>,
{
    let mut attempt = 0;
    loop {
        match write().await {
            Ok(t) => return Ok(t),
            Err(e) if e.is_retryable() && attempt < FINAL_WRITE_RETRIES_MAX => {
                attempt += 1;
                tracing::warn!(task_id, attempt, error = %e, "final write failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(e) if attempt > 0 && e.code() == ErrorCode::Terminal => {
                return match client.get(task_id).await {
                    Ok(Some(t))
                        if t.state == target
                            && t.lease_token == fence.token
                            && t.lease_owner.as_deref() == Some(fence.owner.as_str()) =>
                    {
                        Ok(t)
                    }
                    _ => Err(e),
                };
            }
            Err(e) => return Err(e),
        }
    }
}

async fn release(client: &Client, task_id: &str, fence: &Fence) -> Outcome {
    match final_write(client, task_id, fence, TaskState::Dispatched, || {
        client.release(task_id, fence)
    })
    .await
    {
        Ok(t) => Outcome::Released(t),
        Err(error) => Outcome::WriteRejected {
            task_id: task_id.to_string(),
            fence: fence.clone(),
            error,
        },
    }
}
