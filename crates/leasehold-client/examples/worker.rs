//! An example worker: claims tasks from a queue and does some fake work.
//!
//! ```text
//! cargo run -p leasehold-client --example worker -- \
//!     --server http://127.0.0.1:7878 --token "$LEASEHOLD_TOKEN" --queue default --ttl 30s
//! ```
//!
//! Each task "works" for `--work` (default 2s) in small steps, noting its
//! progress on the task, while the runtime heartbeats in the background. A
//! task whose metadata has `"fail": true` fails, recording a compensation
//! that deletes its branch. Ctrl-C stops claiming and lets the tasks in
//! flight finish; a second Ctrl-C aborts them and gives their leases back.

use std::time::Duration;

use clap::Parser;
use leasehold_client::{Client, Done, Failure, Job, Worker, WorkerConfig};
use leasehold_core::NewCompensation;

/// Flags of the example worker.
#[derive(Debug, Parser)]
#[command(about = "An example Leasehold worker that does fake work")]
struct Args {
    /// Server base URL.
    #[arg(
        long,
        env = "LEASEHOLD_SERVER",
        default_value = "http://127.0.0.1:7878"
    )]
    server: String,
    /// Bearer token (a worker token's name is the lease owner).
    #[arg(
        long,
        env = "LEASEHOLD_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    token: String,
    /// Queue to claim from; repeat for several.
    #[arg(long = "queue", default_value = "default")]
    queues: Vec<String>,
    /// Lease TTL, e.g. 30s or 2m.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Lease owner; must be the worker token's name with a worker token.
    #[arg(long, env = "LEASEHOLD_OWNER")]
    owner: Option<String>,
    /// Tasks worked on at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// How long each fake task works.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    work: Duration,
}

async fn fake_work(job: Job, work: Duration) -> leasehold_client::HandlerResult {
    let id = job.task.task_id.clone();
    let steps = 4u32;
    for step in 1..=steps {
        // Cooperative: stop early if the lease is lost (the runtime drops
        // this future anyway; watching the token lets real work clean up).
        tokio::select! {
            _ = job.cancel.cancelled() => return Err(Failure::new("cancelled")),
            _ = tokio::time::sleep(work / steps) => {}
        }
        let note = format!("step {step}/{steps} done");
        if let Err(e) = job.client.annotate(&id, &job.fence.owner, &note).await {
            tracing::warn!(task_id = %id, error = %e, "could not note progress");
        }
    }
    if job.task.metadata.get("fail") == Some(&serde_json::Value::Bool(true)) {
        let branch = job
            .task
            .branch
            .clone()
            .unwrap_or_else(|| format!("work/{id}"));
        return Err(
            Failure::new("the fake work was asked to fail").with_compensation(
                NewCompensation::new("delete_branch", branch, "the work was abandoned"),
            ),
        );
    }
    Ok(Done::because(format!(
        "fake work done by {}",
        job.fence.owner
    )))
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let owner = args.owner.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let code = rt.block_on(async move {
        let client = match Client::new(&args.server, &args.token) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return e.code().exit_code();
            }
        };
        let mut cfg = WorkerConfig::new(owner.clone(), args.queues.clone(), args.ttl);
        cfg.concurrency = args.concurrency;
        let work = args.work;
        let worker = match Worker::new(client, cfg, move |job: Job| fake_work(job, work)) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("error: {e}");
                return e.code().exit_code();
            }
        };
        let (tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
        let handle = worker.with_outcomes(tx).spawn();
        tracing::info!(owner = %owner, queues = ?args.queues, ttl = ?args.ttl, "worker started; Ctrl-C to stop");
        let printer = tokio::spawn(async move {
            while let Some(o) = outcomes.recv().await {
                println!("{}: {o:?}", o.task_id());
            }
        });
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stopping: finishing the tasks in flight (Ctrl-C again to abort)");
        handle.stop();
        let abort = handle.abort_signal();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::warn!("aborting: tasks in flight are cancelled and their leases released");
            abort.cancel();
        });
        let stats = handle.join().await;
        printer.abort();
        eprintln!("{stats:?}");
        0
    });
    std::process::exit(code);
}
