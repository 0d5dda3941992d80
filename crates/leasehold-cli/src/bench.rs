//! `leasehold bench`: flags → [`leasehold_bench::Options`] → a run. All the
//! workload logic lives in the `leasehold-bench` crate; this module only
//! resolves flags and prints the report (one JSON object with `--json`).
//!
//! `leasehold bench postgres-cluster` is a helper for `bench/peers.sh`: it
//! starts a throwaway PostgreSQL (the PostgreSQL backend's test support),
//! prints its URL on stdout and keeps it running until stdin closes.

use std::io::{BufRead, Write};

use clap::Args;
use leasehold_bench::{Options, Target, Workload};
use leasehold_core::{Error, Result};
use leasehold_sqlite::Durability;

/// `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// create, cycle, heartbeat, stale-scan, reclaim, baseline-sqlite,
    /// baseline-postgres, or postgres-cluster (helper: start a throwaway
    /// PostgreSQL, print its URL, stop it when stdin closes).
    pub workload: String,
    /// Run through a Leasehold server at this URL (HTTP) instead of `--db`.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token for `--server`.
    #[arg(long = "server-token", env = "LEASEHOLD_TOKEN", value_name = "TOKEN")]
    pub server_token: Option<String>,
    /// Concurrent workers (threads).
    #[arg(long, default_value_t = 32)]
    pub workers: usize,
    /// Tasks (default 20,000; 1,000,000 for stale-scan).
    #[arg(long)]
    pub tasks: Option<u64>,
    /// SQLite durability: full or normal.
    #[arg(long, default_value = "full")]
    pub durability: String,
    /// baseline-sqlite: updates per transaction. cycle, heartbeat: tasks per
    /// claim and per heartbeat_many / complete_many call (up to 1,000).
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// stale-scan: list_stale calls.
    #[arg(long, default_value_t = 2_000)]
    pub calls: u64,
    /// baseline-sqlite: a bare four-column table instead of Leasehold's schema.
    #[arg(long)]
    pub bare: bool,
    /// With --server: drive it from --workers threads sharing one blocking
    /// HttpStore (the older driver) instead of async tasks on one thread.
    #[arg(long = "blocking-client")]
    pub blocking_client: bool,
}

/// Resolve the flags (no I/O).
pub fn options(args: &BenchArgs, db: Option<&str>) -> Result<Options> {
    let workload = Workload::parse(&args.workload)?;
    let durability = match args.durability.as_str() {
        "full" => Durability::Full,
        "normal" => Durability::Normal,
        other => {
            return Err(Error::InvalidInput(format!(
                "--durability must be full or normal, got {other:?}"
            )))
        }
    };
    Ok(Options {
        target: Target::from_flags(db, args.server.as_deref(), args.server_token.as_deref()),
        workers: args.workers,
        tasks: args.tasks.unwrap_or(workload.default_tasks()),
        durability,
        batch: args.batch,
        calls: args.calls,
        bare: args.bare,
        blocking_client: args.blocking_client,
        progress: true,
        ..Options::new(workload)
    })
}

/// Run the benchmark; the text to print on stdout.
pub fn run(args: &BenchArgs, db: Option<&str>, json: bool) -> Result<String> {
    if args.workload == "postgres-cluster" {
        return postgres_cluster();
    }
    let report = leasehold_bench::run(&options(args, db)?)?;
    Ok(if json {
        let mut s = serde_json::to_string(&report)
            .map_err(|e| Error::Internal(format!("cannot encode the report: {e}")))?;
        s.push('\n');
        s
    } else {
        report.human()
    })
}

fn postgres_cluster() -> Result<String> {
    let cluster = leasehold_bench::throwaway_postgres()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", cluster.url())
        .and_then(|()| out.flush())
        .map_err(|e| Error::Internal(format!("cannot write the URL: {e}")))?;
    drop(out);
    // Hold the cluster until whoever started us closes our stdin.
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    drop(cluster);
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::ErrorCode;

    fn args(workload: &str) -> BenchArgs {
        BenchArgs {
            workload: workload.into(),
            server: None,
            server_token: None,
            workers: 4,
            tasks: None,
            durability: "normal".into(),
            batch: 1,
            calls: 3,
            bare: false,
            blocking_client: false,
        }
    }

    #[test]
    fn flags_resolve_to_options() {
        let o = options(&args("stale-scan"), Some("x.db")).unwrap();
        assert_eq!(o.workload, Workload::StaleScan);
        assert_eq!(o.tasks, 1_000_000);
        assert_eq!(o.durability, Durability::Normal);
        assert_eq!(o.target, Target::Sqlite(Some("x.db".into())));
        let mut a = args("cycle");
        a.durability = "fast".into();
        let e = options(&a, None).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert!(e.message().contains("--durability"), "{e}");
        assert_eq!(
            options(&args("nope"), None).unwrap_err().code(),
            ErrorCode::InvalidInput
        );
    }

    #[test]
    fn a_tiny_run_prints_one_json_object() {
        let mut a = args("cycle");
        a.tasks = Some(12);
        let text = run(&a, None, true).unwrap();
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["workload"], "cycle");
        assert_eq!(v["ops"], 12);
        assert!(v["ops_per_sec"].as_f64().unwrap() > 0.0);
    }
}
