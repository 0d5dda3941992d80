//! The worker runtime against a real server on loopback.
//!
//! The server runs on a test clock ([`StepClock`]): every reading moves it one
//! millisecond, so successive heartbeats always extend the lease, and a test
//! "lets a lease expire" by jumping the clock, never by sleeping. Heartbeats
//! run every 20 ms of real time so that lease loss is noticed quickly; every
//! wait for an outcome is bounded.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use leasehold_client::{Client, Done, Failure, Job, Outcome, Worker, WorkerConfig, WorkerStats};
use leasehold_core::memory::MemoryStore;
use leasehold_core::{
    ErrorCode, HistoryKind, NewCompensation, NewTask, Task, TaskState, Timestamp,
};
use leasehold_server::testing::TestServer;
use leasehold_server::{Clock, Role};
use tokio::sync::{mpsc, Semaphore};

/// Longest any test waits for one event before failing.
const WAIT_MAX: Duration = Duration::from_secs(20);
/// Lease TTL the workers ask for (server-clock time).
const TTL: Duration = Duration::from_secs(30);

/// A server clock that advances 1 ms per reading and can jump.
struct StepClock {
    micros: AtomicI64,
}

impl StepClock {
    fn new() -> Arc<StepClock> {
        Arc::new(StepClock {
            micros: AtomicI64::new(
                Timestamp::parse("2026-06-03T10:00:00Z")
                    .unwrap()
                    .as_micros(),
            ),
        })
    }

    fn jump(&self, by: Duration) {
        self.micros
            .fetch_add(by.as_micros() as i64, Ordering::SeqCst);
    }
}

impl Clock for StepClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.micros.fetch_add(1000, Ordering::SeqCst)).unwrap()
    }
}

/// Fields drop in order: the runtime first (cancelling any worker still
/// running after a failed assertion), the server last, so a failing test
/// fails instead of hanging on the server's graceful shutdown.
struct Env {
    rt: tokio::runtime::Runtime,
    /// Operator client.
    op: Client,
    /// Client with the worker token of owner `w1`.
    worker: Client,
    clock: Arc<StepClock>,
    server: TestServer,
}

fn env() -> Env {
    let clock = StepClock::new();
    let server = TestServer::start_with_clock(Arc::new(MemoryStore::new()), false, clock.clone());
    let op = Client::new(&server.url(), &server.operator_token()).unwrap();
    let worker_token = server.add_token("w1", Role::Worker);
    let worker = Client::new(&server.url(), &worker_token).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Env {
        rt,
        op,
        worker,
        clock,
        server,
    }
}

fn config() -> WorkerConfig {
    let mut c = WorkerConfig::new("w1", vec!["q".into()], TTL);
    c.heartbeat_every = Some(Duration::from_millis(20));
    c.poll_every = Duration::from_millis(20);
    c
}

async fn create(op: &Client, id: &str) -> Task {
    let mut new = NewTask::new(id, format!("saga-{id}"));
    new.queue = Some("q".into());
    op.create(&new).await.unwrap()
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(WAIT_MAX, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("channel closed waiting for {what}"))
}

/// Await `f`, failing the test after [`WAIT_MAX`].
async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT_MAX, f)
        .await
        .expect("finished within the bounded wait")
}

fn kinds(history: &[leasehold_core::HistoryEntry]) -> Vec<HistoryKind> {
    history.iter().map(|h| h.kind).collect()
}

/// Sends on drop: proves the runtime dropped (cancelled) a handler future.
struct DropSignal(Option<mpsc::UnboundedSender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[test]
fn handler_success_completes_with_fence_after_heartbeating() {
    let e = env();
    e.rt.block_on(async {
        create(&e.op, "t-ok").await;
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        // The handler returns only once a background heartbeat has landed
        // (last_heartbeat_at moved past the acquisition), so this also
        // proves heartbeats run while the handler works.
        let handler = |job: Job| async move {
            for _ in 0..1000 {
                let t = job.client.get(&job.task.task_id).await.unwrap().unwrap();
                if t.last_heartbeat_at > t.lease_acquired_at {
                    return Ok(Done::because(format!("done by {}", job.fence.owner)));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(Failure::new("no heartbeat landed"))
        };
        let handle = Worker::new(e.worker.clone(), config(), handler)
            .unwrap()
            .with_outcomes(tx)
            .spawn();
        let Outcome::Completed(task) = next(&mut outcomes, "the outcome").await else {
            panic!("expected Completed")
        };
        assert_eq!(task.state, TaskState::Completed);
        assert_eq!(task.terminal_reason.as_deref(), Some("done by w1"));
        let stored = e.op.get("t-ok").await.unwrap().unwrap();
        assert_eq!(stored, task);
        let history = e.op.history("t-ok").await.unwrap();
        assert_eq!(
            kinds(&history),
            [
                HistoryKind::Created,
                HistoryKind::Leased,
                HistoryKind::Completed
            ]
        );
        let done = history.last().unwrap();
        assert_eq!(done.actor, "w1");
        assert_eq!(done.lease_token, 1);
        let stats = bounded(handle.shutdown()).await;
        assert_eq!(
            stats,
            WorkerStats {
                claimed: 1,
                completed: 1,
                ..WorkerStats::default()
            }
        );
    });
}

#[test]
fn handler_error_fails_with_its_compensation_or_the_default() {
    let e = env();
    e.rt.block_on(async {
        create(&e.op, "t-own").await;
        create(&e.op, "t-default").await;
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let handler = |job: Job| async move {
            if job.task.task_id == "t-own" {
                Err(
                    Failure::new("tests failed").with_compensation(NewCompensation::new(
                        "delete_branch",
                        "feature/x",
                        "the branch is half done",
                    )),
                )
            } else {
                Err(Failure::new("build broke"))
            }
        };
        let mut cfg = config();
        cfg.concurrency = 2;
        cfg.default_compensation = Some(NewCompensation::new(
            "remove_worktree",
            "wt-1",
            "worker default",
        ));
        let handle = Worker::new(e.worker.clone(), cfg, handler)
            .unwrap()
            .with_outcomes(tx)
            .spawn();
        for _ in 0..2 {
            let o = next(&mut outcomes, "an outcome").await;
            let Outcome::Failed(t) = o else {
                panic!("expected Failed, got {o:?}")
            };
            assert_eq!(t.state, TaskState::Failed);
            assert_eq!(t.compensations.len(), 1, "{t:?}");
            let c = &t.compensations[0];
            if t.task_id == "t-own" {
                assert_eq!(t.terminal_reason.as_deref(), Some("tests failed"));
                assert_eq!(
                    (c.kind.as_str(), c.target.as_str()),
                    ("delete_branch", "feature/x")
                );
            } else {
                assert_eq!(t.terminal_reason.as_deref(), Some("build broke"));
                assert_eq!(
                    (c.kind.as_str(), c.target.as_str()),
                    ("remove_worktree", "wt-1")
                );
            }
            let h = e.op.history(&t.task_id).await.unwrap();
            assert_eq!(h.last().unwrap().kind, HistoryKind::Failed);
            assert_eq!(h.last().unwrap().actor, "w1");
        }
        assert_eq!(bounded(handle.shutdown()).await.failed, 2);
    });
}

#[test]
fn failure_without_any_compensation_is_refused_and_reported() {
    let e = env();
    e.rt.block_on(async {
        create(&e.op, "t-bare").await;
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let handler = |_job: Job| async move { Err(Failure::new("no cleanup known")) };
        let handle = Worker::new(e.worker.clone(), config(), handler)
            .unwrap()
            .with_outcomes(tx)
            .spawn();
        let o = next(&mut outcomes, "the outcome").await;
        let Outcome::WriteRejected { task_id, error, .. } = o else {
            panic!("expected WriteRejected, got {o:?}")
        };
        assert_eq!(task_id, "t-bare");
        assert_eq!(error.code(), ErrorCode::LeaseConflict);
        assert!(error.message().contains("compensation"), "{error}");
        let t = e.op.get("t-bare").await.unwrap().unwrap();
        assert_eq!(
            t.state,
            TaskState::Running,
            "the refused fail changed nothing"
        );
        bounded(handle.shutdown()).await;
    });
}

#[test]
fn a_panicking_handler_fails_its_task_with_the_default_compensation() {
    let e = env();
    e.rt.block_on(async {
        create(&e.op, "t-panic").await;
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let handler = |job: Job| async move {
            if job.task.task_id == "t-panic" {
                panic!("bug in the handler");
            }
            Ok(Done::new())
        };
        let mut cfg = config();
        cfg.default_compensation = Some(NewCompensation::new("revert", "t-panic", "default"));
        let handle = Worker::new(e.worker.clone(), cfg, handler)
            .unwrap()
            .with_outcomes(tx)
            .spawn();
        let o = next(&mut outcomes, "the outcome").await;
        let Outcome::Failed(t) = o else {
            panic!("expected Failed, got {o:?}")
        };
        assert_eq!(
            t.terminal_reason.as_deref(),
            Some("handler panicked: bug in the handler")
        );
        assert_eq!(t.compensations[0].kind, "revert");
        let stats = bounded(handle.shutdown()).await;
        assert_eq!(stats.failed, 1, "{stats:?}");
    });
}

/// Runs a handler that never finishes on its own, then loses its lease by
/// `lose`; returns the outcome after checking the handler was dropped.
async fn lose_lease_mid_handler<F, Fut>(e: &Env, task_id: &str, lose: F) -> (Outcome, Task)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    create(&e.op, task_id).await;
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<()>();
    let (tx, mut outcomes) = mpsc::unbounded_channel();
    let handler = move |job: Job| {
        let started_tx = started_tx.clone();
        let dropped_tx = dropped_tx.clone();
        async move {
            let _guard = DropSignal(Some(dropped_tx));
            started_tx.send(()).unwrap();
            // Would complete the task if it were ever allowed to go on.
            job.cancel.cancelled().await;
            std::future::pending::<()>().await;
            Ok(Done::because("must never be written"))
        }
    };
    let handle = Worker::new(e.worker.clone(), config(), handler)
        .unwrap()
        .with_outcomes(tx)
        .spawn();
    next(&mut started, "the handler to start").await;
    // No new claims from here on: once the lease is lost the task is
    // claimable again, and this worker must not take it back mid-test.
    handle.stop();
    lose().await;
    next(&mut dropped, "the handler to be dropped").await;
    let outcome = next(&mut outcomes, "the outcome").await;
    let stats = tokio::time::timeout(WAIT_MAX, handle.join())
        .await
        .expect("worker ends");
    assert_eq!(stats.lease_lost, 1, "{stats:?}");
    assert_eq!(
        stats.completed + stats.failed + stats.write_rejected,
        0,
        "{stats:?}"
    );
    let stored = e.op.get(task_id).await.unwrap().unwrap();
    (outcome, stored)
}

#[test]
fn quarantine_mid_handler_cancels_it_and_nothing_is_written() {
    let e = env();
    e.rt.block_on(async {
        let op = e.op.clone();
        let (outcome, stored) = lose_lease_mid_handler(&e, "t-q", || async move {
            op.quarantine("t-q", "operator pulled it", None)
                .await
                .unwrap();
        })
        .await;
        let Outcome::LeaseLost { error, fence, .. } = outcome else {
            panic!("expected LeaseLost, got {outcome:?}")
        };
        assert_eq!(error.code(), ErrorCode::Terminal, "{error}");
        assert_eq!(fence.token, 1);
        assert_eq!(stored.state, TaskState::Quarantined);
        assert_eq!(
            stored.terminal_reason.as_deref(),
            Some("operator pulled it")
        );
        let h = e.op.history("t-q").await.unwrap();
        assert_eq!(
            kinds(&h),
            [
                HistoryKind::Created,
                HistoryKind::Leased,
                HistoryKind::Quarantined
            ]
        );
    });
}

#[test]
fn lease_expiring_on_the_server_clock_cancels_the_handler() {
    let e = env();
    e.rt.block_on(async {
        let clock = e.clock.clone();
        let (outcome, stored) = lose_lease_mid_handler(&e, "t-exp", || async move {
            clock.jump(TTL + Duration::from_secs(1));
        })
        .await;
        let Outcome::LeaseLost { error, .. } = outcome else {
            panic!("expected LeaseLost, got {outcome:?}")
        };
        assert_eq!(error.code(), ErrorCode::LeaseConflict, "{error}");
        assert!(error.message().contains("expired"), "{error}");
        // Still running under the expired lease: nobody wrote anything, and
        // the reaper (here: an explicit reclaim) hands it to the next worker.
        assert_eq!(stored.state, TaskState::Running);
        let h = e.op.history("t-exp").await.unwrap();
        assert_eq!(kinds(&h), [HistoryKind::Created, HistoryKind::Leased]);
        let reclaimed = e.op.reclaim(5).await.unwrap();
        assert_eq!(reclaimed.len(), 1);
        assert_eq!(reclaimed[0].state, TaskState::Dispatched);
    });
}

/// A loopback TCP proxy that forwards to `target` until frozen; once frozen
/// it accepts and reads but forwards nothing, like a hung network path.
struct FreezableProxy {
    url: String,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

impl FreezableProxy {
    fn start(target: &str) -> FreezableProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::AtomicBool;
        let target = target.trim_start_matches("http://").to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let frozen = Arc::new(AtomicBool::new(false));
        let pipe = |mut from: std::net::TcpStream,
                    mut to: std::net::TcpStream,
                    frozen: Arc<AtomicBool>| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if frozen.load(Ordering::SeqCst) {
                        continue; // swallow: the request never arrives
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        };
        let f = frozen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    return;
                };
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    f.clone(),
                );
                pipe(server, client, f.clone());
            }
        });
        FreezableProxy { url, frozen }
    }

    fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_hung_heartbeat_cancels_the_handler_once_the_lease_may_have_expired() {
    // The one test on real time: the lease's safety margin is measured on
    // this machine's clock. TTL 1 s; the wait is bounded by WAIT_MAX.
    let e = env();
    let proxy = FreezableProxy::start(&e.server.url());
    let token = e.server.add_token("w-hung", Role::Worker);
    let via_proxy = Client::new(&proxy.url, &token).unwrap();
    e.rt.block_on(async {
        create(&e.op, "t-hung").await;
        let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let handler = move |_job: Job| {
            let started_tx = started_tx.clone();
            async move {
                started_tx.send(()).unwrap();
                std::future::pending::<()>().await;
                Ok(Done::new())
            }
        };
        let mut cfg = WorkerConfig::new("w-hung", vec!["q".into()], Duration::from_secs(1));
        cfg.heartbeat_every = Some(Duration::from_millis(100));
        let handle = Worker::new(via_proxy, cfg, handler)
            .unwrap()
            .with_outcomes(tx)
            .spawn();
        next(&mut started, "the handler").await;
        handle.stop();
        proxy.freeze();
        let o = next(&mut outcomes, "the outcome").await;
        let Outcome::LeaseLost { error, .. } = o else {
            panic!("expected LeaseLost, got {o:?}")
        };
        assert_eq!(error.code(), ErrorCode::Unavailable, "{error}");
        assert!(error.message().contains("within the lease ttl"), "{error}");
        let stats = bounded(handle.join()).await;
        assert_eq!(stats.lease_lost, 1, "{stats:?}");
        // The server never heard of the loss: the task is still leased to
        // w-hung, and nothing was completed or failed.
        let t = e.op.get("t-hung").await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::Running);
    });
}

/// The server's `/metrics` text.
async fn metrics(e: &Env) -> String {
    reqwest::Client::new()
        .get(format!("{}/metrics", e.server.url()))
        .bearer_auth(e.server.operator_token())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The sum of the samples whose line starts with `prefix`.
fn sum(metrics: &str, prefix: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

const BATCH_REQUESTS: &str =
    "leasehold_http_requests_total{method=\"POST\",route=\"/v1/heartbeats\",";
const BATCH_ITEMS_OK: &str = "leasehold_operations_total{op=\"heartbeat_many\",outcome=\"ok\"}";
const SINGLE_REQUESTS: &str =
    "leasehold_http_requests_total{method=\"POST\",route=\"/v1/tasks/{id}/heartbeat\",";

/// Wait until a heartbeat for `task_id` lands after `after` (bounded).
async fn heartbeat_after(client: &Client, task_id: &str, after: Option<Timestamp>) -> bool {
    for _ in 0..2000 {
        let t = client.get(task_id).await.unwrap().unwrap();
        if t.last_heartbeat_at > after {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[test]
fn one_request_per_period_heartbeats_every_lease_the_worker_holds() {
    const N: u64 = 5;
    let e = env();
    e.rt.block_on(async {
        for i in 0..N {
            create(&e.op, &format!("t-{i}")).await;
        }
        let gate = Arc::new(Semaphore::new(0));
        let (beat_tx, mut beat) = mpsc::unbounded_channel::<bool>();
        let handler = {
            let gate = gate.clone();
            move |job: Job| {
                let (gate, beat_tx) = (gate.clone(), beat_tx.clone());
                async move {
                    let acquired = job.task.lease_acquired_at;
                    let landed = heartbeat_after(&job.client, &job.task.task_id, acquired).await;
                    beat_tx.send(landed).unwrap();
                    gate.acquire().await.unwrap().forget();
                    Ok(Done::new())
                }
            }
        };
        let mut cfg = config();
        cfg.concurrency = N as usize;
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let handle = Worker::new(e.worker.clone(), cfg, handler)
            .unwrap()
            .with_outcomes(tx)
            .spawn();
        for _ in 0..N {
            assert!(
                next(&mut beat, "a heartbeat on every lease").await,
                "no heartbeat landed"
            );
        }
        let m = metrics(&e).await;
        let (requests, items) = (sum(&m, BATCH_REQUESTS), sum(&m, BATCH_ITEMS_OK));
        assert_eq!(
            sum(&m, SINGLE_REQUESTS),
            0,
            "no heartbeat request per lease"
        );
        assert!(requests >= 1, "{m}");
        // Every request carried all N leases. A request may be in flight at
        // the scrape: its items are counted before the request is.
        assert!(
            items == N * requests || items == N * (requests + 1),
            "{items} leases heartbeated in {requests} requests"
        );
        gate.add_permits(N as usize);
        for _ in 0..N {
            let o = next(&mut outcomes, "an outcome").await;
            assert!(matches!(o, Outcome::Completed(_)), "{o:?}");
        }
        let stats = bounded(handle.shutdown()).await;
        assert_eq!((stats.completed, stats.lease_lost), (N, 0), "{stats:?}");
    });
}

#[test]
fn a_lease_lost_in_a_shared_heartbeat_cancels_only_its_own_handler() {
    let e = env();
    e.rt.block_on(async {
        create(&e.op, "t-keep").await;
        create(&e.op, "t-lose").await;
        let gate = Arc::new(Semaphore::new(0));
        let (started_tx, mut started) = mpsc::unbounded_channel::<String>();
        let handler = {
            let gate = gate.clone();
            move |job: Job| {
                let (gate, started_tx) = (gate.clone(), started_tx.clone());
                async move {
                    started_tx.send(job.task.task_id.clone()).unwrap();
                    gate.acquire().await.unwrap().forget();
                    Ok(Done::because("kept"))
                }
            }
        };
        let mut cfg = config();
        cfg.concurrency = 2;
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let handle = Worker::new(e.worker.clone(), cfg, handler)
            .unwrap()
            .with_outcomes(tx)
            .spawn();
        next(&mut started, "a handler").await;
        next(&mut started, "the other handler").await;
        handle.stop();
        e.op.quarantine("t-lose", "operator pulled it", None)
            .await
            .unwrap();
        let o = next(&mut outcomes, "the lost lease").await;
        let Outcome::LeaseLost { task_id, error, .. } = o else {
            panic!("expected LeaseLost, got {o:?}")
        };
        assert_eq!(task_id, "t-lose");
        assert_eq!(error.code(), ErrorCode::Terminal, "{error}");
        // The other lease of the same heartbeat requests is still extended.
        let before = e.op.get("t-keep").await.unwrap().unwrap().last_heartbeat_at;
        assert!(
            heartbeat_after(&e.op, "t-keep", before).await,
            "t-keep is no longer heartbeated"
        );
        gate.add_permits(1);
        let o = next(&mut outcomes, "the kept task").await;
        let Outcome::Completed(t) = o else {
            panic!("expected Completed, got {o:?}")
        };
        assert_eq!(
            (t.task_id.as_str(), t.terminal_reason.as_deref()),
            ("t-keep", Some("kept"))
        );
        let stats = bounded(handle.join()).await;
        assert_eq!((stats.completed, stats.lease_lost), (1, 1), "{stats:?}");
        let m = metrics(&e).await;
        assert_eq!(sum(&m, SINGLE_REQUESTS), 0);
        assert!(sum(&m, BATCH_REQUESTS) >= 2, "{m}");
    });
}

#[test]
fn concurrency_is_bounded_and_every_task_completes() {
    let e = env();
    e.rt.block_on(async {
        for i in 0..5 {
            create(&e.op, &format!("t-{i}")).await;
        }
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
        let handler = {
            let (in_flight, peak, gate) = (in_flight.clone(), peak.clone(), gate.clone());
            move |_job: Job| {
                let (in_flight, peak, gate) = (in_flight.clone(), peak.clone(), gate.clone());
                let started_tx = started_tx.clone();
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    started_tx.send(()).unwrap();
                    gate.acquire().await.unwrap().forget();
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    Ok(Done::new())
                }
            }
        };
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let mut cfg = config();
        cfg.concurrency = 2;
        let handle = Worker::new(e.worker.clone(), cfg, handler)
            .unwrap()
            .with_outcomes(tx)
            .spawn();
        next(&mut started, "handler 1").await;
        next(&mut started, "handler 2").await;
        // Both slots are held by blocked handlers: the worker cannot have
        // claimed a third task.
        let counts = e.op.counts().await.unwrap();
        assert_eq!(counts[&TaskState::Running], 2, "{counts:?}");
        assert_eq!(counts[&TaskState::Planned], 3, "{counts:?}");
        gate.add_permits(5);
        for _ in 0..5 {
            let o = next(&mut outcomes, "an outcome").await;
            assert!(matches!(o, Outcome::Completed(_)), "{o:?}");
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        let counts = e.op.counts().await.unwrap();
        assert_eq!(counts[&TaskState::Completed], 5, "{counts:?}");
        assert_eq!(bounded(handle.shutdown()).await.completed, 5);
    });
}

#[test]
fn graceful_shutdown_finishes_in_flight_work_and_claims_nothing_new() {
    let e = env();
    e.rt.block_on(async {
        create(&e.op, "t-first").await;
        create(&e.op, "t-second").await;
        let gate = Arc::new(Semaphore::new(0));
        let (started_tx, mut started) = mpsc::unbounded_channel::<String>();
        let handler = {
            let gate = gate.clone();
            move |job: Job| {
                let gate = gate.clone();
                let started_tx = started_tx.clone();
                async move {
                    started_tx.send(job.task.task_id.clone()).unwrap();
                    gate.acquire().await.unwrap().forget();
                    Ok(Done::new())
                }
            }
        };
        let handle = Worker::new(e.worker.clone(), config(), handler)
            .unwrap()
            .spawn();
        assert_eq!(next(&mut started, "the first handler").await, "t-first");
        // Stop first (synchronously, so it is in force before the slot frees
        // up), then wait like `shutdown` does while the handler finishes.
        handle.stop();
        let stopping = tokio::spawn(handle.join());
        gate.add_permits(10);
        let stats = tokio::time::timeout(WAIT_MAX, stopping)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stats.completed, 1, "{stats:?}");
        assert_eq!(stats.claimed, 1, "{stats:?}");
        let first = e.op.get("t-first").await.unwrap().unwrap();
        assert_eq!(first.state, TaskState::Completed);
        let second = e.op.get("t-second").await.unwrap().unwrap();
        assert_eq!(
            second.state,
            TaskState::Planned,
            "no new claim after shutdown"
        );
    });
}

#[test]
fn abort_cancels_the_handler_and_gives_the_lease_back() {
    abort_case(false);
}

#[test]
fn abort_signal_after_join_started_does_the_same() {
    abort_case(true);
}

fn abort_case(via_signal: bool) {
    let e = env();
    e.rt.block_on(async {
        create(&e.op, "t-abort").await;
        let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
        let (dropped_tx, mut dropped) = mpsc::unbounded_channel::<()>();
        let (tx, mut outcomes) = mpsc::unbounded_channel();
        let handler = move |_job: Job| {
            let started_tx = started_tx.clone();
            let dropped_tx = dropped_tx.clone();
            async move {
                let _guard = DropSignal(Some(dropped_tx));
                started_tx.send(()).unwrap();
                std::future::pending::<()>().await;
                Ok(Done::new())
            }
        };
        let handle = Worker::new(e.worker.clone(), config(), handler)
            .unwrap()
            .with_outcomes(tx)
            .spawn();
        next(&mut started, "the handler").await;
        let stats = if via_signal {
            handle.stop();
            let signal = handle.abort_signal();
            let joining = tokio::spawn(handle.join());
            signal.cancel();
            bounded(joining).await.unwrap()
        } else {
            bounded(handle.abort()).await
        };
        next(&mut dropped, "the handler to be dropped").await;
        assert_eq!(stats.released, 1, "{stats:?}");
        let o = next(&mut outcomes, "the outcome").await;
        let Outcome::Released(t) = o else {
            panic!("expected Released, got {o:?}")
        };
        assert_eq!(t.state, TaskState::Dispatched);
        assert_eq!(t.lease_owner, None);
        assert_eq!(t.lease_token, 1, "the token stays as the high-water mark");
    });
}

#[test]
fn bad_worker_configuration_is_refused_before_any_request() {
    // No server at all: the check must not need one.
    let client = Client::new("http://127.0.0.1:9", "").unwrap();
    let handler = |_job: Job| async move { Ok(Done::new()) };
    let cases: Vec<(WorkerConfig, &str)> = vec![
        (WorkerConfig::new("", vec![], TTL), "owner"),
        (
            WorkerConfig::new("w", vec![], Duration::from_millis(50)),
            "ttl",
        ),
        (
            WorkerConfig {
                concurrency: 0,
                ..WorkerConfig::new("w", vec![], TTL)
            },
            "concurrency",
        ),
        (
            WorkerConfig {
                heartbeat_every: Some(TTL),
                ..WorkerConfig::new("w", vec![], TTL)
            },
            "heartbeat",
        ),
        (
            WorkerConfig::new("w", vec!["bad queue".into()], TTL),
            "queue",
        ),
    ];
    for (cfg, needle) in cases {
        let err = Worker::new(client.clone(), cfg.clone(), handler)
            .err()
            .unwrap_or_else(|| panic!("config {cfg:?} should be refused"));
        assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");
        assert!(
            err.message().contains(needle),
            "{err} should mention {needle}"
        );
    }
}

#[test]
fn unreachable_server_is_unavailable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::new(&format!("http://127.0.0.1:{port}"), "t").unwrap();
    let err = rt.block_on(client.get("t1")).unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable, "{err}");
    assert!(err.is_retryable());
}
