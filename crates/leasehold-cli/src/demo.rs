//! `leasehold demo`: the whole lifecycle in under a minute, for newcomers.
//!
//! Starts `leasehold serve` (API, reaper, console at `/`) on loopback over a
//! fresh SQLite database in a temporary directory (or `--db` if given), and
//! a fleet of simulated workers — threads calling the same `Store` the server
//! uses, with the wall clock — that claim tasks, heartbeat, and sometimes
//! crash, hang past their lease (and are fenced out when they come back), fail
//! with a compensation, or release. A planner keeps work coming; a few
//! "poison" tasks crash every worker that takes them, so the reaper
//! quarantines them after `--max-attempts` leases. It prints the console URL
//! and runs until Ctrl-C (or `--duration`).
//!
//! Everything is seeded (`--seed`): the same seed makes the same choices,
//! though thread timing still varies run to run.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use leasehold_core::{
    ClaimRequest, CompensationStatus, Context, Error, Fence, NewCompensation, NewTask, Result,
    Store, TaskState, Timestamp,
};
use leasehold_server::{AppState, SystemClock, TokenStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::args::{Cli, Command};
use crate::config::{parse_duration, Config};

/// Queues the demo uses.
const QUEUES: [&str; 3] = ["default", "payments", "docs"];
/// Reaper interval: short, so that an expired lease is usually reclaimed
/// (and a poison task quarantined at max attempts) before another worker's
/// `claim` takes the expired lease directly (claim does not count attempts).
const REAPER_INTERVAL: Duration = Duration::from_millis(250);
/// Tasks the planner keeps in flight.
const IN_FLIGHT_TARGET: u64 = 12;

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to listen on (loopback only: the demo has no tokens). Port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:7878", value_name = "ADDR")]
    pub listen: String,
    /// Simulated workers (threads).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub workers: u32,
    /// Tasks created at start (the planner adds more as they finish).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub tasks: u32,
    /// Lease time to live; workers heartbeat every third of it.
    #[arg(long, default_value = "6s", value_name = "DURATION")]
    pub ttl: String,
    /// Leases after which the reaper quarantines a stale task.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub max_attempts: u32,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Seed for the workers' choices.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Resolved demo settings.
#[derive(Debug)]
struct Plan {
    listen: SocketAddr,
    workers: u32,
    tasks: u32,
    ttl: Duration,
    max_attempts: u32,
    duration: Option<Duration>,
    seed: u64,
}

fn plan(args: &DemoArgs) -> Result<Plan> {
    let listen: SocketAddr = args.listen.trim().parse().map_err(|e| {
        Error::InvalidInput(format!(
            "--listen {:?} is not IP:PORT (e.g. 127.0.0.1:7878): {e}",
            args.listen
        ))
    })?;
    if !listen.ip().is_loopback() {
        return Err(Error::InvalidInput(format!(
            "--listen {listen}: the demo has no tokens, so it only listens on loopback (127.0.0.1)"
        )));
    }
    if !(1..=64).contains(&args.workers) {
        return Err(Error::InvalidInput(format!(
            "--workers must be from 1 to 64, got {}",
            args.workers
        )));
    }
    if args.tasks > 10_000 {
        return Err(Error::InvalidInput(format!(
            "--tasks must be at most 10000, got {}",
            args.tasks
        )));
    }
    let ttl = parse_duration("--ttl", &args.ttl)?;
    if ttl < Duration::from_millis(300) {
        return Err(Error::InvalidInput(format!(
            "--ttl must be at least 300ms, got {ttl:?}"
        )));
    }
    if args.max_attempts == 0 {
        return Err(Error::InvalidInput(
            "--max-attempts must be at least 1".into(),
        ));
    }
    let duration = args
        .duration
        .as_deref()
        .map(|d| parse_duration("--duration", d))
        .transpose()?;
    Ok(Plan {
        listen,
        workers: args.workers,
        tasks: args.tasks,
        ttl,
        max_attempts: args.max_attempts,
        duration,
        seed: args.seed,
    })
}

/// Run `demo` (main hands it over, like `serve`).
pub fn main(cli: Cli) -> ExitCode {
    let json = cli.json;
    let result = match &cli.command {
        Command::Demo(args) => plan(args).and_then(|p| run(&cli, p)),
        _ => Err(Error::Internal("demo::main got another command".into())),
    };
    match result {
        Ok(text) => crate::write_stdout(&text),
        Err(e) => crate::report(&e, json),
    }
}

fn run(cli: &Cli, plan: Plan) -> Result<String> {
    // A fresh database unless the user chose one: the demo's crashes and
    // quarantines should not land in the working directory's leasehold.db.
    let db: String = match &cli.db {
        Some(db) => db.clone(),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "leasehold-demo-{}-{}",
                std::process::id(),
                Timestamp::now().as_micros()
            ));
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
            dir.join("leasehold.db").to_string_lossy().into_owned()
        }
    };
    let cfg = Config {
        backend: crate::config::backend_from(Some(&db))?,
        json: cli.json,
        at: Timestamp::now(),
        actor: "demo".into(),
    };
    let raw_store = crate::backend::open_store(&cfg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(plan.listen))
        .map_err(|e| {
            Error::Unavailable(format!(
                "cannot listen on {}: {e} (another server running? try --listen 127.0.0.1:0)",
                plan.listen
            ))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("listener address: {e}")))?;
    let mut state = AppState::new(
        raw_store,
        Arc::new(SystemClock),
        Arc::new(TokenStore::open()),
    );
    state.max_attempts = plan.max_attempts;
    // The state's store records every write for the console's chart; the
    // workers use it too so that their operations are counted.
    let store = state.store.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(0));
    for _ in 0..plan.tasks {
        plan_task(store.as_ref(), &seq, plan.seed)?;
    }

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(leasehold_server::serve_listener(
        listener,
        state,
        Some(REAPER_INTERVAL),
        async move {
            let _ = rx.await;
        },
    ));
    let url = format!("http://{addr}/");
    println!("Leasehold demo: console at {url}");
    println!(
        "  {} workers, lease ttl {:?}, reaper every {:?}, quarantine after {} attempts",
        plan.workers, plan.ttl, REAPER_INTERVAL, plan.max_attempts
    );
    println!("  database: {db}");
    println!(
        "  {}",
        match plan.duration {
            Some(d) => format!("stops after {d:?}"),
            None => "Ctrl-C stops".to_string(),
        }
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let mut threads = Vec::new();
    for w in 1..=plan.workers {
        let store = store.clone();
        let stop = stop.clone();
        let (ttl, max_attempts) = (plan.ttl, plan.max_attempts);
        let seed = plan.seed ^ u64::from(w).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        threads.push(
            std::thread::Builder::new()
                .name(format!("demo-worker-{w}"))
                .spawn(move || {
                    let owner = format!("worker-{w}");
                    worker(&owner, store.as_ref(), (ttl, max_attempts), seed, &stop)
                })
                .map_err(|e| Error::Internal(format!("cannot start a worker thread: {e}")))?,
        );
    }
    {
        let store = store.clone();
        let stop = stop.clone();
        let seq = seq.clone();
        let seed = plan.seed;
        threads.push(
            std::thread::Builder::new()
                .name("demo-planner".into())
                .spawn(move || planner(store.as_ref(), &seq, seed, &stop))
                .map_err(|e| Error::Internal(format!("cannot start the planner thread: {e}")))?,
        );
    }

    let deadline = plan.duration.map(|d| Instant::now() + d);
    runtime.block_on(async {
        match deadline {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    });
    eprintln!("demo: stopping workers and server");
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    let _ = tx.send(());
    let _ = runtime.block_on(server);
    let counts = store.counts()?;
    let summary: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    Ok(format!(
        "demo finished: {}\ndatabase kept at {db} (inspect with: leasehold --db {db} list)\n",
        summary.join(", ")
    ))
}

/// Create the next task (some owe a compensation, one in seven is poison).
fn plan_task(store: &dyn Store, seq: &AtomicU64, seed: u64) -> Result<()> {
    let n = seq.fetch_add(1, Ordering::SeqCst) + 1;
    let mut rng = StdRng::seed_from_u64(seed ^ n);
    let queue = QUEUES[rng.gen_range(0..QUEUES.len())];
    let id = format!("{queue}-{n:04}");
    let mut t = NewTask::new(&id, format!("saga-{id}"));
    t.queue = Some(queue.to_string());
    t.priority = Some(rng.gen_range(0..3));
    t.issue = Some(1000 + i64::try_from(n).unwrap_or(0));
    t.branch = Some(format!("agent/{id}"));
    t.worktree = Some(format!("worktrees/{id}"));
    let poison = n % 7 == 3;
    t.metadata = Some(serde_json::json!({ "demo": true, "poison": poison }));
    if rng.gen_bool(0.4) {
        t.compensations = vec![NewCompensation::new(
            "delete_branch",
            format!("agent/{id}"),
            "the branch is pushed when work starts",
        )];
    }
    let ctx = Context::new(Timestamp::now(), "planner");
    store.create(t, &ctx)?;
    if rng.gen_bool(0.7) {
        store.dispatch(&id, &ctx)?;
    }
    Ok(())
}

/// Keep about [`IN_FLIGHT_TARGET`] tasks in flight until stopped.
fn planner(store: &dyn Store, seq: &AtomicU64, seed: u64, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let in_flight: u64 = match store.counts() {
            Ok(c) => c
                .iter()
                .filter(|(s, _)| !s.is_terminal())
                .map(|(_, n)| *n)
                .sum(),
            Err(e) => {
                eprintln!("planner: counts failed: {e}");
                0
            }
        };
        if in_flight < IN_FLIGHT_TARGET {
            if let Err(e) = plan_task(store, seq, seed) {
                eprintln!("planner: {e}");
            }
        }
        nap(Duration::from_millis(700), stop);
    }
}

/// Sleep in small steps so that a stop request is seen quickly.
fn nap(total: Duration, stop: &AtomicBool) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(
            Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())),
        );
    }
}

fn expiry(ttl: Duration) -> Result<(Timestamp, Timestamp)> {
    let now = Timestamp::now();
    let exp = now
        .checked_add(ttl)
        .ok_or_else(|| Error::InvalidInput("ttl too large".into()))?;
    Ok((now, exp))
}

/// Work on `task_id` for `work`, heartbeating every third of the ttl.
/// Returns false if the lease was lost.
fn work_with_heartbeats(
    store: &dyn Store,
    task_id: &str,
    fence: &Fence,
    ttl: Duration,
    work: Duration,
    stop: &AtomicBool,
) -> bool {
    let until = Instant::now() + work;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        nap(
            (ttl / 3).min(until.saturating_duration_since(Instant::now())),
            stop,
        );
        let Ok((now, exp)) = expiry(ttl) else {
            return false;
        };
        if let Err(e) = store.heartbeat(task_id, fence, exp, &Context::new(now, &fence.owner)) {
            eprintln!("{}: lost the lease on {task_id}: {e}", fence.owner);
            return false;
        }
    }
    true
}

/// One simulated worker: claim, then behave as the dice say.
/// Claims like the server's own workers do: a poison task that used up
/// `max_attempts` is left for the reaper to quarantine.
fn worker(
    owner: &str,
    store: &dyn Store,
    (ttl, max_attempts): (Duration, u32),
    seed: u64,
    stop: &AtomicBool,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let queues: Vec<String> = QUEUES.iter().map(|q| q.to_string()).collect();
    while !stop.load(Ordering::SeqCst) {
        let req = ClaimRequest {
            owner: owner.to_string(),
            queues: queues.clone(),
            ttl,
            limit: 1,
            max_attempts: Some(max_attempts),
        };
        let claimed = match store.claim(&req, &Context::new(Timestamp::now(), owner)) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("{owner}: claim failed: {e}");
                nap(Duration::from_secs(1), stop);
                continue;
            }
        };
        let Some(task) = claimed.into_iter().next() else {
            nap(Duration::from_millis(400), stop);
            continue;
        };
        let id = task.task_id.clone();
        let fence = Fence::new(owner, task.lease_token);
        let poison = task.metadata.get("poison") == Some(&serde_json::Value::Bool(true));
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(4);
        let work = Duration::from_millis(rng.gen_range(ttl_ms / 4..ttl_ms * 3 / 2));
        let roll: u32 = if poison { 60 } else { rng.gen_range(0..100) };
        let ctx = || Context::new(Timestamp::now(), owner);
        match roll {
            // Crash: stop heartbeating and walk away; the lease goes stale.
            60..=69 => {
                eprintln!(
                    "{owner}: crashed holding {id} (token {}, attempt {}){}",
                    task.lease_token,
                    task.attempts,
                    if poison { " — poison task" } else { "" }
                );
                nap(ttl / 2, stop);
            }
            // Hang: no heartbeat past the ttl, then try to finish with the old fence.
            70..=77 => {
                nap(ttl + Duration::from_millis(1500), stop);
                match store.complete(&id, Some("finished late"), Some(&fence), &ctx()) {
                    Ok(_) => eprintln!("{owner}: hung on {id} but nobody took it; completed late"),
                    Err(e) => eprintln!(
                        "{owner}: came back from a hang on {id} and was fenced out: {}",
                        e.code()
                    ),
                }
            }
            // Fail with a compensation, then run the cleanup and record it.
            78..=89 => {
                if !work_with_heartbeats(store, &id, &fence, ttl, work / 2, stop) {
                    continue;
                }
                let comp = NewCompensation::new(
                    "delete_branch",
                    format!("agent/{id}"),
                    "tests failed; undo the pushed branch",
                );
                match store.fail(&id, "tests failed", Some(comp), Some(&fence), &ctx()) {
                    Ok(t) => {
                        let last = t.compensations.len().saturating_sub(1);
                        let (status, detail) = if rng.gen_bool(0.75) {
                            (CompensationStatus::Applied, "branch deleted")
                        } else {
                            (CompensationStatus::Failed, "remote refused the delete")
                        };
                        let _ = store.record_compensation(&id, last, status, Some(detail), &ctx());
                        eprintln!("{owner}: failed {id}; compensation {status}");
                    }
                    Err(e) => eprintln!("{owner}: could not fail {id}: {e}"),
                }
            }
            // Release: give the task back (e.g. shutting down).
            90..=94 => {
                if let Err(e) = store.release(&id, &fence, &ctx()) {
                    eprintln!("{owner}: release of {id} failed: {e}");
                }
            }
            // Work, heartbeat, complete.
            _ => {
                if work_with_heartbeats(store, &id, &fence, ttl, work, stop) {
                    if let Err(e) = store.complete(&id, Some("done"), Some(&fence), &ctx()) {
                        eprintln!("{owner}: could not complete {id}: {e}");
                    }
                }
            }
        }
    }
    // A clean shutdown gives back what it still holds.
    let mut f = leasehold_core::ListFilter {
        states: vec![TaskState::Running],
        ..Default::default()
    };
    f.owner = Some(owner.to_string());
    if let Ok(page) = store.list(&f, None, Some(100)) {
        for t in page.tasks {
            let _ = store.release(
                &t.task_id,
                &Fence::new(owner, t.lease_token),
                &Context::new(Timestamp::now(), owner),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DemoArgs {
        DemoArgs {
            listen: "127.0.0.1:0".into(),
            workers: 4,
            tasks: 20,
            ttl: "6s".into(),
            max_attempts: 3,
            duration: Some("1m".into()),
            seed: 7,
        }
    }

    #[test]
    fn demo_flags_are_checked_before_anything_starts() {
        assert!(plan(&args()).is_ok());
        let code = |a: DemoArgs| plan(&a).unwrap_err().code().as_str();
        assert_eq!(
            code(DemoArgs {
                listen: "0.0.0.0:7878".into(),
                ..args()
            }),
            "invalid_input"
        );
        assert_eq!(
            code(DemoArgs {
                workers: 0,
                ..args()
            }),
            "invalid_input"
        );
        assert_eq!(
            code(DemoArgs {
                ttl: "10ms".into(),
                ..args()
            }),
            "invalid_input"
        );
        assert_eq!(
            code(DemoArgs {
                ttl: "soon".into(),
                ..args()
            }),
            "invalid_input"
        );
        assert_eq!(
            code(DemoArgs {
                max_attempts: 0,
                ..args()
            }),
            "invalid_input"
        );
    }
}
