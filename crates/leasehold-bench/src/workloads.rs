//! Leasehold workloads against any [`Store`]: create, cycle, heartbeat,
//! stale-scan and reclaim. Each checks its own outcome (every task cycled
//! exactly once, every scan found exactly the stale tasks, …) so that a
//! fast but wrong run is an error, not a figure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use leasehold_core::limits::RECLAIM_MAX_ATTEMPTS_DEFAULT;
use leasehold_core::{
    ClaimRequest, Context, Error, Fence, NewTask, Result, Store, Task, Timestamp,
};
use leasehold_sqlite::Durability;

use crate::report::{cpus, percentiles, Report};
use crate::{open, progress, run_id, Options, Target, Workload};
use crate::{STALE_SCAN_LEASED, STALE_SCAN_STALE};

/// Lease time to live of claimed tasks.
const TTL: Duration = Duration::from_secs(60);

fn now() -> Timestamp {
    Timestamp::now()
}

fn ctx() -> Context {
    Context::new(now(), "bench")
}

fn fence(t: &Task) -> Result<Fence> {
    Ok(Fence {
        owner: t
            .lease_owner
            .clone()
            .ok_or_else(|| Error::Internal(format!("claimed task {} has no owner", t.task_id)))?,
        token: t.lease_token,
    })
}

/// Run `per_worker(worker, samples)` on `workers` threads; return the
/// merged latency samples and the wall time.
fn parallel<F>(workers: usize, per_worker: F) -> Result<(Vec<u64>, Duration)>
where
    F: Fn(usize, &mut Vec<u64>) -> Result<()> + Send + Sync + 'static,
{
    let f = Arc::new(per_worker);
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let f = Arc::clone(&f);
            thread::spawn(move || {
                let mut samples = Vec::new();
                f(w, &mut samples).map(|()| samples)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => all.extend(s),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(Error::Internal("a bench worker panicked".into()));
            }
        }
    }
    let elapsed = start.elapsed();
    match first_err {
        Some(e) => Err(e),
        None => Ok((all, elapsed)),
    }
}

/// Time one call, pushing its latency in microseconds.
fn timed<T>(samples: &mut Vec<u64>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let t = Instant::now();
    let out = f();
    samples.push(t.elapsed().as_micros() as u64);
    out
}

/// Create `n` tasks `{prefix}-{i}` in `queue` with `workers` threads.
fn create_tasks(
    store: &Arc<dyn Store>,
    opts: &Options,
    prefix: &str,
    queue: &str,
    n: u64,
    what: &str,
) -> Result<(Vec<u64>, Duration)> {
    let next = Arc::new(AtomicU64::new(0));
    let pb = progress(opts, n, what);
    let (store, prefix, queue, pb2) = (
        Arc::clone(store),
        prefix.to_string(),
        queue.to_string(),
        pb.clone(),
    );
    let out = parallel(opts.workers, move |_, samples| loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            return Ok(());
        }
        let mut t = NewTask::new(format!("{prefix}-{i}"), format!("{prefix}-saga-{i}"));
        t.queue = Some(queue.clone());
        timed(samples, || store.create(t, &ctx()))?;
        pb2.inc(1);
    });
    pb.finish_and_clear();
    out
}

/// Run a Leasehold workload (not a baseline).
pub fn run(opts: &Options) -> Result<Report> {
    let opened = open(&opts.target, opts.durability)?;
    let store = Arc::clone(&opened.store);
    let id = run_id();
    let queue = format!("{id}-q");
    let setup_start = Instant::now();
    let tx_before;
    let txs = || opened.sqlite.as_ref().map(|s| s.group_stats().batches);
    let cpu_before;
    let (samples, elapsed, ops, setup) = match opts.workload {
        Workload::Create => {
            tx_before = txs().unwrap_or(0);
            cpu_before = process_cpu_seconds();
            let (s, e) = create_tasks(&store, opts, &id, &queue, opts.tasks, "create")?;
            (s, e, opts.tasks, Duration::ZERO)
        }
        Workload::Cycle => {
            create_tasks(&store, opts, &id, &queue, opts.tasks, "setup")?;
            let setup = setup_start.elapsed();
            tx_before = txs().unwrap_or(0);
            cpu_before = process_cpu_seconds();
            let (s, e, n) = cycle(&store, opts, &queue)?;
            (s, e, n, setup)
        }
        Workload::Heartbeat => {
            let held = opts.workers as u64 * opts.batch;
            create_tasks(&store, opts, &id, &queue, held, "setup")?;
            let setup = setup_start.elapsed();
            tx_before = txs().unwrap_or(0);
            cpu_before = process_cpu_seconds();
            let (s, e) = heartbeat(&store, opts, &queue)?;
            (s, e, opts.tasks, setup)
        }
        Workload::StaleScan => {
            let stale_at = stale_setup(&store, opts, &id, &queue)?;
            let setup = setup_start.elapsed();
            tx_before = txs().unwrap_or(0);
            cpu_before = process_cpu_seconds();
            let (s, e) = stale_scan(&store, opts, stale_at)?;
            (s, e, opts.calls, setup)
        }
        Workload::Reclaim => {
            let last_claim = reclaim_setup(&store, opts, &id, &queue)?;
            let setup = setup_start.elapsed();
            tx_before = txs().unwrap_or(0);
            cpu_before = process_cpu_seconds();
            let (s, e) = reclaim(&store, opts, last_claim)?;
            (s, e, opts.tasks, setup)
        }
        Workload::BaselineSqlite | Workload::BaselinePostgres => {
            return Err(Error::Internal("baselines are not store workloads".into()))
        }
    };
    let transactions = txs().map(|t| t - tx_before);
    let cpu = cpu_before.and_then(|b| process_cpu_seconds().map(|a| a - b));
    let mut r = report(opts, samples, elapsed, ops, setup, transactions);
    r.cpu_seconds = cpu;
    Ok(r)
}

/// CPU time (user + system) this process has used so far, in seconds, from
/// `/proc/self/stat`; `None` where that does not exist (not Linux).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) in ")".
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here,
    // in clock ticks of USER_HZ (100 on Linux).
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// Build the report of a timed part.
pub(crate) fn report(
    opts: &Options,
    samples: Vec<u64>,
    elapsed: Duration,
    ops: u64,
    setup: Duration,
    transactions: Option<u64>,
) -> Report {
    let (p50_us, p99_us) = percentiles(samples);
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let ops_per_sec = ops as f64 / seconds;
    let writes_per_op = opts.workload.writes_per_op();
    let sqlite_like =
        matches!(opts.target, Target::Sqlite(_)) || opts.workload == Workload::BaselineSqlite;
    Report {
        workload: opts.workload.as_str().to_string(),
        backend: match opts.workload {
            Workload::BaselineSqlite => "sqlite-raw".to_string(),
            Workload::BaselinePostgres => "postgres-raw".to_string(),
            _ => opts.target.kind().to_string(),
        },
        durability: if sqlite_like {
            match opts.durability {
                Durability::Full => "full",
                Durability::Normal => "normal",
            }
            .to_string()
        } else {
            "n/a".to_string()
        },
        workers: opts.workers,
        tasks: opts.tasks,
        batch: opts.batch,
        bare: opts.bare,
        ops,
        seconds,
        ops_per_sec,
        p50_us,
        p99_us,
        writes_per_op,
        writes_per_sec: ops_per_sec * writes_per_op as f64,
        setup_seconds: setup.as_secs_f64(),
        transactions,
        cpu_seconds: None,
        client: match (&opts.target, opts.workload) {
            (Target::Server { .. }, Workload::Cycle | Workload::Heartbeat)
                if !opts.blocking_client =>
            {
                Some("async".to_string())
            }
            // Every other workload drives a server through `HttpStore`.
            (Target::Server { .. }, _) => Some("blocking".to_string()),
            _ => None,
        },
        cpus: cpus(),
    }
}

/// Check that every item of a batch call was accepted.
fn all_ok(what: &str, got: Vec<Result<Task>>, sent: usize) -> Result<()> {
    if got.len() != sent {
        return Err(Error::Internal(format!(
            "{what} answered {} items for {sent}",
            got.len()
        )));
    }
    got.into_iter().try_for_each(|r| r.map(drop))
}

/// The ids cycled, checked to be exactly `tasks` distinct ones.
pub(crate) fn check_cycled(mut ids: Vec<String>, tasks: u64) -> Result<u64> {
    let n = ids.len() as u64;
    ids.sort_unstable();
    ids.dedup();
    if n != tasks || ids.len() as u64 != tasks {
        return Err(Error::Internal(format!(
            "cycle completed {n} tasks ({} distinct), expected {tasks} each exactly once",
            ids.len()
        )));
    }
    Ok(n)
}

/// claim → heartbeat → complete until the queue is empty; checks that every
/// task was cycled exactly once. `opts.batch` > 1: claims up to that many
/// tasks per round and extends and completes them with one `heartbeat_many`
/// and one `complete_many` call (one latency sample per round).
fn cycle(store: &Arc<dyn Store>, opts: &Options, queue: &str) -> Result<(Vec<u64>, Duration, u64)> {
    if let Target::Server { url, token } = &opts.target {
        if !opts.blocking_client {
            return crate::http::cycle(url, token, opts, queue);
        }
    }
    let pb = progress(opts, opts.tasks, "cycle");
    let (store2, queue, pb2) = (Arc::clone(store), queue.to_string(), pb.clone());
    let batch = opts.batch as u32;
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(
        opts.tasks as usize,
    )));
    let ids2 = Arc::clone(&ids);
    let (samples, elapsed) = parallel(opts.workers, move |w, samples| {
        let req = ClaimRequest {
            owner: format!("bench-worker-{w}"),
            queues: vec![queue.clone()],
            ttl: TTL,
            limit: batch,
            max_attempts: None,
        };
        let mut mine = Vec::new();
        loop {
            let start = Instant::now();
            let got = store2.claim(&req, &ctx())?;
            if got.is_empty() {
                break;
            }
            let c = ctx();
            let exp =
                c.at.checked_add(TTL * 2)
                    .ok_or_else(|| Error::Internal("clock overflow".into()))?;
            if batch == 1 {
                let t = &got[0];
                let f = fence(t)?;
                store2.heartbeat(&t.task_id, &f, exp, &c)?;
                store2.complete(&t.task_id, None, Some(&f), &ctx())?;
            } else {
                let leases = got
                    .iter()
                    .map(|t| Ok((t.task_id.clone(), fence(t)?)))
                    .collect::<Result<Vec<_>>>()?;
                all_ok(
                    "heartbeat_many",
                    store2.heartbeat_many(&leases, exp, &c)?,
                    leases.len(),
                )?;
                all_ok(
                    "complete_many",
                    store2.complete_many(&leases, None, &ctx())?,
                    leases.len(),
                )?;
            }
            samples.push(start.elapsed().as_micros() as u64);
            pb2.inc(got.len() as u64);
            mine.extend(got.into_iter().map(|t| t.task_id));
        }
        ids2.lock()
            .map_err(|_| Error::Internal("a bench worker panicked".into()))?
            .extend(mine);
        Ok(())
    })?;
    pb.finish_and_clear();
    let ids = std::mem::take(
        &mut *ids
            .lock()
            .map_err(|_| Error::Internal("a bench worker panicked".into()))?,
    );
    let n = check_cycled(ids, opts.tasks)?;
    Ok((samples, elapsed, n))
}

/// Heartbeats this worker sends in all: its share of `total`, the first
/// `total % workers` workers taking one more.
pub(crate) fn share(total: u64, workers: u64, w: u64) -> u64 {
    total / workers + u64::from(w < total % workers)
}

/// Each worker claims `opts.batch` tasks and heartbeats them (one
/// `heartbeat` call each, or one `heartbeat_many` per round when
/// `opts.batch` > 1); `opts.tasks` heartbeats in all.
fn heartbeat(store: &Arc<dyn Store>, opts: &Options, queue: &str) -> Result<(Vec<u64>, Duration)> {
    if let Target::Server { url, token } = &opts.target {
        if !opts.blocking_client {
            return crate::http::heartbeat(url, token, opts, queue);
        }
    }
    let total = opts.tasks;
    let workers = opts.workers as u64;
    let batch = opts.batch;
    let pb = progress(opts, total, "heartbeat");
    let (store2, queue, pb2) = (Arc::clone(store), queue.to_string(), pb.clone());
    let out = parallel(opts.workers, move |w, samples| {
        let req = ClaimRequest {
            owner: format!("bench-worker-{w}"),
            queues: vec![queue.clone()],
            ttl: TTL,
            limit: batch as u32,
            max_attempts: None,
        };
        let held = store2.claim(&req, &ctx())?;
        if held.len() as u64 != batch {
            return Err(Error::Internal(format!(
                "worker {w} leased {} tasks, expected {batch}",
                held.len()
            )));
        }
        let leases = held
            .iter()
            .map(|t| Ok((t.task_id.clone(), fence(t)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut left = share(total, workers, w as u64);
        let mut i = 0u64;
        while left > 0 {
            let n = left.min(batch);
            let c = ctx();
            // Strictly later every time, also through a server that adds the
            // TTL to its own clock: one more millisecond per call.
            let ttl = TTL * 2 + Duration::from_millis(i + 1);
            let exp =
                c.at.checked_add(ttl)
                    .ok_or_else(|| Error::Internal("clock overflow".into()))?;
            if batch == 1 {
                let (id, f) = &leases[0];
                timed(samples, || store2.heartbeat(id, f, exp, &c))?;
            } else {
                let part = &leases[..n as usize];
                let got = timed(samples, || store2.heartbeat_many(part, exp, &c))?;
                all_ok("heartbeat_many", got, part.len())?;
            }
            pb2.inc(n);
            left -= n;
            i += 1;
        }
        Ok(())
    });
    pb.finish_and_clear();
    out
}

/// `opts.tasks` tasks; [`STALE_SCAN_STALE`] leased with an expiry in the
/// past of the returned instant, [`STALE_SCAN_LEASED`] leased far beyond it.
fn stale_setup(store: &Arc<dyn Store>, opts: &Options, id: &str, queue: &str) -> Result<Timestamp> {
    create_tasks(store, opts, id, queue, opts.tasks, "setup")?;
    let leases = STALE_SCAN_STALE + STALE_SCAN_LEASED;
    let mut left = leases;
    let mut leased: Vec<Task> = Vec::new();
    while left > 0 {
        let req = ClaimRequest {
            owner: "bench-stale".into(),
            queues: vec![queue.to_string()],
            ttl: TTL,
            limit: left.min(1000) as u32,
            max_attempts: None,
        };
        let got = store.claim(&req, &ctx())?;
        if got.is_empty() {
            break;
        }
        left = left.saturating_sub(got.len() as u64);
        leased.extend(got);
    }
    if leased.len() as u64 != leases {
        return Err(Error::Internal(format!(
            "stale-scan leased {} tasks, expected {leases}",
            leased.len()
        )));
    }
    // All expire at now + TTL; heartbeat all but the first 100 far ahead.
    // Scanning at now + TTL then sees exactly the 100 as stale.
    let far = now()
        .checked_add(Duration::from_secs(365 * 24 * 3600))
        .ok_or_else(|| Error::Internal("clock overflow".into()))?;
    for t in &leased[STALE_SCAN_STALE as usize..] {
        store.heartbeat(&t.task_id, &fence(t)?, far, &ctx())?;
    }
    let latest = leased
        .iter()
        .take(STALE_SCAN_STALE as usize)
        .filter_map(|t| t.lease_expires_at)
        .max()
        .ok_or_else(|| Error::Internal("no stale task has an expiry".into()))?;
    Ok(latest)
}

/// `opts.calls` `list_stale` calls by the workers; each must return exactly
/// the stale tasks.
fn stale_scan(
    store: &Arc<dyn Store>,
    opts: &Options,
    at: Timestamp,
) -> Result<(Vec<u64>, Duration)> {
    let next = Arc::new(AtomicU64::new(0));
    let calls = opts.calls;
    let pb = progress(opts, calls, "stale-scan");
    let (store2, pb2) = (Arc::clone(store), pb.clone());
    let out = parallel(opts.workers, move |_, samples| loop {
        if next.fetch_add(1, Ordering::Relaxed) >= calls {
            return Ok(());
        }
        let stale = timed(samples, || store2.list_stale(at))?;
        if stale.len() as u64 != STALE_SCAN_STALE {
            return Err(Error::Internal(format!(
                "list_stale returned {} tasks, expected {STALE_SCAN_STALE}",
                stale.len()
            )));
        }
        pb2.inc(1);
    });
    pb.finish_and_clear();
    out
}

/// Create `opts.tasks` tasks and claim them all (a [`TTL`] lease); returns
/// the instant at which every one of those leases has expired.
fn reclaim_setup(
    store: &Arc<dyn Store>,
    opts: &Options,
    id: &str,
    queue: &str,
) -> Result<Timestamp> {
    create_tasks(store, opts, id, queue, opts.tasks, "setup")?;
    let mut claimed = 0;
    let mut last = now();
    // The leases outlive the setup, so no claim takes back an expired one.
    while claimed < opts.tasks {
        let req = ClaimRequest {
            owner: "bench-reclaim".into(),
            queues: vec![queue.to_string()],
            ttl: TTL,
            limit: (opts.tasks - claimed).min(1000) as u32,
            max_attempts: None,
        };
        let c = ctx();
        last = last.max(c.at);
        let got = store.claim(&req, &c)?;
        if got.is_empty() {
            break;
        }
        claimed += got.len() as u64;
    }
    if claimed != opts.tasks {
        return Err(Error::Internal(format!(
            "reclaim setup leased {claimed} tasks, expected {}",
            opts.tasks
        )));
    }
    last.checked_add(TTL)
        .ok_or_else(|| Error::Internal("clock overflow".into()))
}

/// `reclaim` at `at` (when every lease has expired) until every task is
/// back; one op = one reclaimed task, one latency sample per `reclaim` call.
fn reclaim(store: &Arc<dyn Store>, opts: &Options, at: Timestamp) -> Result<(Vec<u64>, Duration)> {
    let pb = progress(opts, opts.tasks, "reclaim");
    let mut samples = Vec::new();
    let mut back = 0u64;
    let start = Instant::now();
    let c = Context::new(at, "bench");
    while back < opts.tasks {
        let got = timed(&mut samples, || {
            store.reclaim(RECLAIM_MAX_ATTEMPTS_DEFAULT, &c)
        })?;
        if got.is_empty() {
            return Err(Error::Internal(format!(
                "reclaim found nothing more after {back} of {} tasks",
                opts.tasks
            )));
        }
        back += got.len() as u64;
        pb.inc(got.len() as u64);
    }
    pb.finish_and_clear();
    Ok((samples, start.elapsed()))
}
