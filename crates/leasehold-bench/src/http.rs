//! The `--server` driver for `cycle` and `heartbeat`: `--workers` concurrent
//! tasks on one async [`Client`] (one keep-alive connection pool, so one
//! HTTP/1.1 connection per concurrent task) on a one-thread tokio runtime.
//!
//! Why not the blocking `HttpStore` with one thread per worker: blocking
//! reqwest hands every request to its own runtime thread and back (two
//! thread hand-offs per request), and 64 such threads share the machine's
//! cores with the server under test. Here every request is sent and
//! answered on the one driver thread. The requests are exactly those the
//! in-process workload makes calls: per cycle `POST /v1/claim` (limit 1),
//! `POST /v1/tasks/{id}/heartbeat`, `POST /v1/tasks/{id}/complete`; with
//! `--batch N` a claim of up to N, one `POST /v1/heartbeats` and one
//! `POST /v1/completions` per round. Every answer is checked (each item of
//! a batch must be accepted) and, for `cycle`, every task must have been
//! cycled exactly once.

use std::time::{Duration, Instant};

use leasehold_client::Client;
use leasehold_core::{ClaimRequest, Error, Fence, Result, Task};

use crate::workloads::{check_cycled, share};
use crate::{progress, Options};

/// Lease time to live of claimed tasks (as in-process).
const TTL: Duration = Duration::from_secs(60);

/// The driver's runtime: one thread, timers and I/O.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the bench's tokio runtime: {e}")))
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

fn all_ok(what: &str, got: Vec<Result<Task>>, sent: usize) -> Result<()> {
    if got.len() != sent {
        return Err(Error::Internal(format!(
            "{what} answered {} items for {sent}",
            got.len()
        )));
    }
    got.into_iter().try_for_each(|r| r.map(drop))
}

/// Run `per_worker(w)` for every worker as concurrent tasks on one runtime;
/// merge their latency samples and outputs, and time the whole.
fn concurrent<F, Fut, T>(workers: usize, per_worker: F) -> Result<(Vec<u64>, Vec<T>, Duration)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<u64>, Vec<T>)>> + Send + 'static,
    T: Send + 'static,
{
    let rt = runtime()?;
    let start = Instant::now();
    let results = rt.block_on(async {
        let handles: Vec<_> = (0..workers).map(|w| tokio::spawn(per_worker(w))).collect();
        let mut out = Vec::with_capacity(workers);
        for h in handles {
            out.push(h.await);
        }
        out
    });
    let elapsed = start.elapsed();
    let (mut samples, mut items) = (Vec::new(), Vec::new());
    let mut first_err = None;
    for r in results {
        match r {
            Ok(Ok((s, i))) => {
                samples.extend(s);
                items.extend(i);
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(Error::Internal("a bench task panicked".into()));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((samples, items, elapsed)),
    }
}

/// `cycle` through the server at `url`: claim → heartbeat → complete until
/// `queue` is empty; returns the samples (one per round), the wall time and
/// the tasks cycled (checked: each of `opts.tasks` exactly once).
pub fn cycle(
    url: &str,
    token: &str,
    opts: &Options,
    queue: &str,
) -> Result<(Vec<u64>, Duration, u64)> {
    let client = Client::new(url, token)?;
    let pb = progress(opts, opts.tasks, "cycle");
    let batch = opts.batch as u32;
    let (samples, ids, elapsed) = concurrent(opts.workers, |w| {
        let (client, pb) = (client.clone(), pb.clone());
        let req = ClaimRequest {
            owner: format!("bench-worker-{w}"),
            queues: vec![queue.to_string()],
            ttl: TTL,
            limit: batch,
            max_attempts: None,
        };
        async move {
            let (mut samples, mut ids) = (Vec::new(), Vec::new());
            loop {
                let start = Instant::now();
                let got = client.claim(&req).await?;
                if got.is_empty() {
                    return Ok((samples, ids));
                }
                if batch == 1 {
                    let t = &got[0];
                    let f = fence(t)?;
                    client.heartbeat(&t.task_id, &f, TTL * 2).await?;
                    client.complete(&t.task_id, None, Some(&f)).await?;
                } else {
                    let leases = got
                        .iter()
                        .map(|t| Ok((t.task_id.clone(), fence(t)?)))
                        .collect::<Result<Vec<_>>>()?;
                    let n = leases.len();
                    all_ok(
                        "heartbeat_many",
                        client.heartbeat_many(&leases, TTL * 2).await?,
                        n,
                    )?;
                    all_ok(
                        "complete_many",
                        client.complete_many(&leases, None).await?,
                        n,
                    )?;
                }
                samples.push(start.elapsed().as_micros() as u64);
                pb.inc(got.len() as u64);
                ids.extend(got.into_iter().map(|t| t.task_id));
            }
        }
    })?;
    pb.finish_and_clear();
    let n = check_cycled(ids, opts.tasks)?;
    Ok((samples, elapsed, n))
}

/// `heartbeat` through the server at `url`: each worker claims `opts.batch`
/// tasks, then sends its share of `opts.tasks` heartbeats (one request per
/// heartbeat, or one `POST /v1/heartbeats` per round of `opts.batch`).
pub fn heartbeat(
    url: &str,
    token: &str,
    opts: &Options,
    queue: &str,
) -> Result<(Vec<u64>, Duration)> {
    let client = Client::new(url, token)?;
    let pb = progress(opts, opts.tasks, "heartbeat");
    let (total, workers, batch) = (opts.tasks, opts.workers as u64, opts.batch);
    let (samples, _, elapsed) = concurrent(opts.workers, |w| {
        let (client, pb) = (client.clone(), pb.clone());
        let req = ClaimRequest {
            owner: format!("bench-worker-{w}"),
            queues: vec![queue.to_string()],
            ttl: TTL,
            limit: batch as u32,
            max_attempts: None,
        };
        async move {
            let held = client.claim(&req).await?;
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
            let mut samples = Vec::new();
            let mut left = share(total, workers, w as u64);
            let mut i = 0u64;
            while left > 0 {
                let n = left.min(batch);
                // The server adds the TTL to its own clock: one more
                // millisecond per call keeps every heartbeat extending.
                let ttl = TTL * 2 + Duration::from_millis(i + 1);
                let start = Instant::now();
                if batch == 1 {
                    let (id, f) = &leases[0];
                    client.heartbeat(id, f, ttl).await?;
                } else {
                    let part = &leases[..n as usize];
                    all_ok(
                        "heartbeat_many",
                        client.heartbeat_many(part, ttl).await?,
                        part.len(),
                    )?;
                }
                samples.push(start.elapsed().as_micros() as u64);
                pb.inc(n);
                left -= n;
                i += 1;
            }
            Ok((samples, Vec::<()>::new()))
        }
    })?;
    pb.finish_and_clear();
    Ok((samples, elapsed))
}
